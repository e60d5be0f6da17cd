//! skiff-proxy (not built yet): Service → endpoints forwarding on each node.
//!
//! Will own: watching Services and EndpointSlices and programming nftables rules so
//! ClusterIP and NodePort traffic reaches ready endpoints. Talks only to the apiserver's HTTP API.
