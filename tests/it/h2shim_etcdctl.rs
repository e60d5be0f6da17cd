//! etcdctl 3.4's per-endpoint maintenance calls (`endpoint status`, `defrag`, `endpoint
//! hashkv`, `move-leader`) send `:authority: http://host:port` (a grpc-go passthrough
//! target). h2 alone rejects that with RST_STREAM PROTOCOL_ERROR; the client port's
//! connection shim (`store/src/server/h2shim.rs`) repairs it. These run the real etcdctl
//! against a real `skiff store`, and check that plain HTTP/1.1 on the same port still works.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{ensure, Context};

use crate::harness::{Output, RunningServer, Server};

/// How long `watch` runs before the harness stops it.
const WATCH_FOR: Duration = Duration::from_secs(2);
/// Bound on the raw HTTP/1.1 exchange.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

fn ok(server: &RunningServer, args: &[&str]) -> anyhow::Result<Output> {
    let out = server.etcdctl(args, None)?;
    ensure!(
        out.code == Some(0),
        "etcdctl {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
        out.code,
        out.stdout,
        out.stderr
    );
    ensure!(
        !out.stderr.contains("PROTOCOL_ERROR"),
        "etcdctl {args:?}: {}",
        out.stderr
    );
    Ok(out)
}

#[test]
fn etcdctl_per_endpoint_maintenance_calls_succeed() -> anyhow::Result<()> {
    let server = Server::Skiff.start()?;
    let url = server.client_url();
    ok(&server, &["put", "shim-key", "shim-value"])?;

    let status = ok(&server, &["endpoint", "status", "-w", "json"])?;
    let json: serde_json::Value = serde_json::from_str(status.stdout.trim())
        .with_context(|| format!("endpoint status output: {}", status.stdout))?;
    ensure!(
        json[0]["Endpoint"] == url.as_str(),
        "endpoint status: {json}"
    );
    ensure!(
        json[0]["Status"]["header"]["revision"].as_i64() >= Some(2),
        "endpoint status: {json}"
    );

    let table = ok(&server, &["endpoint", "status"])?;
    ensure!(
        table.stdout.starts_with(&format!("{url}, ")),
        "endpoint status: {}",
        table.stdout
    );

    let defrag = ok(&server, &["defrag"])?;
    ensure!(
        defrag
            .stdout
            .contains(&format!("Finished defragmenting etcd member[{url}]")),
        "defrag: {}",
        defrag.stdout
    );

    let hashkv = ok(&server, &["endpoint", "hashkv", "-w", "json"])?;
    let json: serde_json::Value = serde_json::from_str(hashkv.stdout.trim())
        .with_context(|| format!("endpoint hashkv output: {}", hashkv.stdout))?;
    ensure!(
        json[0]["Endpoint"] == url.as_str(),
        "endpoint hashkv: {json}"
    );
    ensure!(
        json[0]["HashKV"]["hash"].is_u64(),
        "endpoint hashkv: {json}"
    );

    // move-leader first asks every endpoint for its status; with one member the transfer
    // itself is refused by the server, but never with a transport error.
    let moved = server.etcdctl(&["move-leader", "1234"], None)?;
    ensure!(
        !moved.stderr.contains("PROTOCOL_ERROR") && !moved.stderr.contains("RST_STREAM"),
        "move-leader: {}",
        moved.stderr
    );

    // The ordinary client paths keep working through the shim.
    let get = ok(&server, &["get", "shim-key"])?;
    ensure!(
        get.stdout == "shim-key\nshim-value\n",
        "get: {:?}",
        get.stdout
    );
    let watch = server.etcdctl_for(&["watch", "--rev=1", "shim-key"], WATCH_FOR)?;
    ensure!(
        watch.stdout.contains("PUT\nshim-key\nshim-value\n"),
        "watch: {:?} / {}",
        watch.stdout,
        watch.stderr
    );
    Ok(())
}

/// The client port multiplexes HTTP/1.1 (`/metrics`, `/version`) with gRPC: a connection
/// without the HTTP/2 preface passes through the shim untouched.
#[test]
fn http1_on_the_client_port_passes_through() -> anyhow::Result<()> {
    let server = Server::Skiff.start()?;
    for (path, needle) in [("/metrics", "# TYPE "), ("/version", "\"etcdserver\"")] {
        let reply = http1_get(server.client_port, path)?;
        ensure!(reply.starts_with("HTTP/1.1 200"), "GET {path}: {reply}");
        ensure!(reply.contains(needle), "GET {path}: {reply}");
    }
    Ok(())
}

fn http1_get(port: u16, path: &str) -> anyhow::Result<String> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}
