//! skiff-kubelet (not built yet): the node agent.
//!
//! Will own: node registration and lease heartbeats, pod workers, probes, volumes, logs and
//! exec, running containers through CRI (containerd). Talks only to the apiserver's HTTP API.
