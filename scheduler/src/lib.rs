//! skiff-scheduler (not built yet): assigns pending pods to nodes.
//!
//! Will own: the scheduling queue with backoff, filter and score plugins, and binding through
//! the pods `binding` subresource. Talks only to the apiserver's HTTP API (`kube` client).
