//! Which process opened a loopback TCP connection: the peer proxy's way to tell which
//! member is dialing, although every member dials the same advertised address.
//!
//! The proxy sees the connection's source port. `/proc/net/tcp` maps (local port, remote
//! port) to the socket's inode, and `/proc/<pid>/fd/*` links to `socket:[<inode>]` for
//! every socket a process holds, so the member whose fd table holds that inode is the one
//! that dialed. Linux only; every member must be a process this runner can inspect (its
//! own children are).

use std::path::Path;

/// The inode of the IPv4 TCP socket whose local port is `local_port` and remote port is
/// `remote_port`, from the text of `/proc/net/tcp`.
pub fn find_socket_inode(proc_net_tcp: &str, local_port: u16, remote_port: u16) -> Option<u64> {
    for line in proc_net_tcp.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
        if fields.len() < 10 {
            continue;
        }
        let port = |field: &str| {
            field
                .rsplit_once(':')
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok())
        };
        if port(fields[1]) == Some(local_port) && port(fields[2]) == Some(remote_port) {
            if let Ok(inode) = fields[9].parse::<u64>() {
                // inode 0: a socket in TIME_WAIT, owned by no one any more.
                if inode != 0 {
                    return Some(inode);
                }
            }
        }
    }
    None
}

/// Whether process `pid` holds the socket with `inode` among its file descriptors.
pub fn process_holds_socket(proc_root: &Path, pid: u32, inode: u64) -> bool {
    let Ok(entries) = std::fs::read_dir(proc_root.join(pid.to_string()).join("fd")) else {
        return false;
    };
    let wanted = format!("socket:[{inode}]");
    entries.flatten().any(|entry| {
        std::fs::read_link(entry.path()).is_ok_and(|target| target.as_os_str() == wanted.as_str())
    })
}

/// Of `candidates` (index, pid), the one whose process dialed from `source_port` to
/// `dialed_port` on loopback; `None` if no candidate holds that socket (it closed, or
/// another process dialed).
pub fn dialing_process(
    source_port: u16,
    dialed_port: u16,
    candidates: &[(usize, u32)],
) -> Option<usize> {
    let proc_root = Path::new("/proc");
    let tcp = std::fs::read_to_string(proc_root.join("net/tcp")).ok()?;
    let inode = find_socket_inode(&tcp, source_port, dialed_port)?;
    candidates
        .iter()
        .find(|(_, pid)| process_holds_socket(proc_root, *pid, inode))
        .map(|(index, _)| *index)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:D431 0100007F:0CEA 01 00000000:00000000 00:00000000 00000000     0        0 2222 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:0CEA 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 3333 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:D432 0100007F:0CEA 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0000000000000000
";

    #[test]
    fn finds_the_dialing_side_of_a_loopback_connection() {
        // 0x0CEA = 3306, 0xD431 = 54321.
        assert_eq!(find_socket_inode(SAMPLE, 54321, 3306), Some(2222));
        assert_eq!(find_socket_inode(SAMPLE, 3306, 54321), Some(3333));
        assert_eq!(
            find_socket_inode(SAMPLE, 54322, 3306),
            None,
            "TIME_WAIT has no owner"
        );
        assert_eq!(find_socket_inode(SAMPLE, 1, 2), None);
    }

    #[test]
    fn identifies_this_process_as_the_dialer_of_a_real_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dialed = listener.local_addr().unwrap().port();
        let stream = std::net::TcpStream::connect(("127.0.0.1", dialed)).unwrap();
        let source = stream.local_addr().unwrap().port();
        let me = std::process::id();
        assert_eq!(
            dialing_process(source, dialed, &[(7, u32::MAX - 1), (3, me)]),
            Some(3)
        );
        assert_eq!(dialing_process(source, dialed, &[(7, u32::MAX - 1)]), None);
    }
}
