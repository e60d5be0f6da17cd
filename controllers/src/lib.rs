//! skiff-controllers (not built yet): the controller manager.
//!
//! Will own: deployment, replicaset, daemonset, statefulset, job, cronjob, endpoints and
//! endpointslice, namespace, serviceaccount, node lifecycle and garbage-collection
//! controllers. Talks only to the apiserver's HTTP API (`kube` client).
