//! skiff-apiserver (not built yet): the Kubernetes API server that real `kubectl` drives.
//!
//! Will own: the REST API (`/api/v1`, `/apis/<group>/<version>`), storage of objects under
//! `/registry/…` through the etcd v3 API only (so it runs against real etcd too), watch
//! caches, discovery and OpenAPI, defaulting/validation, patch and server-side apply,
//! authentication. Its issue: "apiserver/: a Kubernetes API server that real kubectl drives".
