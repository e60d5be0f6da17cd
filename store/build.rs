//! Compiles etcd's v3 protos and Skiff's raft payload into prost messages and tonic
//! clients and servers. `protox` parses the .proto files in pure Rust, so no system
//! `protoc` is needed.

use std::path::PathBuf;

/// Every root file we generate code for, relative to `proto/` (the only include path).
/// Imports between them use these same relative paths.
const PROTO_FILES: &[&str] = &[
    "etcd/api/mvccpb/kv.proto",
    "etcd/api/authpb/auth.proto",
    "etcd/api/etcdserverpb/rpc.proto",
    "etcd/server/etcdserver/api/v3lock/v3lockpb/v3lock.proto",
    "etcd/server/etcdserver/api/v3election/v3electionpb/v3election.proto",
    "skiff/raftpb.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    // A directory here makes cargo re-run us when any file below it changes.
    println!("cargo:rerun-if-changed={}", proto_dir.display());

    let files: Vec<PathBuf> = PROTO_FILES.iter().map(|f| proto_dir.join(f)).collect();
    let fds = protox::compile(&files, [&proto_dir])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
