//! `skiff apiserver` / `skiff up` configuration: kube-apiserver's flag names where they exist.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use clap::Args;

/// kube-apiserver's default `--service-cluster-ip-range`.
pub const SERVICE_CLUSTER_IP_RANGE_DEFAULT: &str = "10.96.0.0/12";
/// kube-apiserver's default `--service-node-port-range`.
pub const SERVICE_NODE_PORT_RANGE_DEFAULT: &str = "30000-32767";

#[derive(Args, Debug, Clone)]
pub struct ApiserverArgs {
    /// etcd endpoints (comma separated), e.g. http://127.0.0.1:2379.
    #[arg(long)]
    pub etcd_servers: Option<String>,
    /// Directory for the PKI (CA, serving and admin certificates) and the kubeconfig.
    #[arg(long, default_value = "skiff-data")]
    pub data_dir: PathBuf,
    /// The port to serve HTTPS on.
    #[arg(long, default_value_t = 6443)]
    pub secure_port: u16,
    /// The IP address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_address: IpAddr,
    /// CIDR from which Service ClusterIPs are allocated.
    #[arg(long, default_value = SERVICE_CLUSTER_IP_RANGE_DEFAULT)]
    pub service_cluster_ip_range: String,
    /// Port range reserved for NodePort Services (inclusive).
    #[arg(long, default_value = SERVICE_NODE_PORT_RANGE_DEFAULT)]
    pub service_node_port_range: String,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub etcd_servers: Vec<String>,
    pub data_dir: PathBuf,
    pub secure_port: u16,
    pub bind_address: IpAddr,
    pub service_cidr: Ipv4Cidr,
    pub node_port_first: u16,
    pub node_port_last: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub network: Ipv4Addr,
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    pub fn parse(s: &str) -> Result<Ipv4Cidr, String> {
        let (addr, len) = s.split_once('/').ok_or_else(|| format!("{s:?} is not a CIDR (want a.b.c.d/n)"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| format!("{s:?}: {addr:?} is not an IPv4 address (IPv6 ranges are not supported yet)"))?;
        let prefix_len: u8 = len.parse().map_err(|_| format!("{s:?}: bad prefix length"))?;
        // At least 4 addresses (network, broadcast, the `kubernetes` service, one more);
        // at most a /12 as kube-apiserver (a larger range needs its newer allocator).
        if !(12..=30).contains(&prefix_len) {
            return Err(format!("{s:?}: prefix length must be between 12 and 30"));
        }
        let mask = u32::MAX << (32 - prefix_len);
        Ok(Ipv4Cidr { network: Ipv4Addr::from(u32::from(addr) & mask), prefix_len })
    }

    /// Number of addresses in the range, network and broadcast included.
    pub fn size(&self) -> u32 {
        1u32 << (32 - self.prefix_len)
    }

    /// The address at `offset` from the network address.
    pub fn nth(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + offset)
    }

    /// Offset of `ip` in the range, when it is in it.
    pub fn offset_of(&self, ip: Ipv4Addr) -> Option<u32> {
        let off = u32::from(ip).wrapping_sub(u32::from(self.network));
        (u32::from(ip) >= u32::from(self.network) && off < self.size()).then_some(off)
    }
}

impl ApiserverArgs {
    pub fn into_config(self) -> Result<Config, String> {
        let etcd_servers: Vec<String> = self
            .etcd_servers
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if etcd_servers.is_empty() {
            return Err("--etcd-servers must name at least one etcd endpoint".into());
        }
        let service_cidr = Ipv4Cidr::parse(&self.service_cluster_ip_range)?;
        let (first, last) = self
            .service_node_port_range
            .split_once('-')
            .ok_or_else(|| format!("--service-node-port-range {:?}: want FIRST-LAST", self.service_node_port_range))?;
        let node_port_first: u16 = first.trim().parse().map_err(|_| "--service-node-port-range: bad first port".to_string())?;
        let node_port_last: u16 = last.trim().parse().map_err(|_| "--service-node-port-range: bad last port".to_string())?;
        if node_port_first == 0 || node_port_first > node_port_last {
            return Err("--service-node-port-range: FIRST must be >= 1 and <= LAST".into());
        }
        Ok(Config {
            etcd_servers,
            data_dir: self.data_dir,
            secure_port: self.secure_port,
            bind_address: self.bind_address,
            service_cidr,
            node_port_first,
            node_port_last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr() {
        let c = Ipv4Cidr::parse("10.96.0.0/12").unwrap();
        assert_eq!(c.nth(1), Ipv4Addr::new(10, 96, 0, 1));
        assert_eq!(c.size(), 1 << 20);
        assert_eq!(c.offset_of(Ipv4Addr::new(10, 96, 0, 10)), Some(10));
        assert_eq!(c.offset_of(Ipv4Addr::new(10, 112, 0, 0)), None);
        assert!(Ipv4Cidr::parse("10.0.0.0/8").is_err());
        assert!(Ipv4Cidr::parse("fd00::/108").is_err());
        assert_eq!(Ipv4Cidr::parse("10.96.1.7/24").unwrap().network, Ipv4Addr::new(10, 96, 1, 0));
    }
}
