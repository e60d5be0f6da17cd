//! skiff-apiserver: the Kubernetes API server that real `kubectl` drives.
//!
//! Owns the REST API (`/api/v1`, `/apis/<group>/<version>`), storage of objects under
//! `/registry/…` through the etcd v3 API only (so it runs unchanged against real etcd),
//! discovery, Table output, watch streams, the bootstrap objects kube-apiserver creates on
//! its own (namespaces, the `kubernetes` Service, ClusterIP and NodePort allocation), and
//! TLS with client-certificate and bearer-token authentication.
//!
//! Must never: reach storage other than through `etcd-client` (no skiff-store types), hold
//! an object in memory as the source of truth (etcd is), or answer a request it cannot
//! serve with a silent success (unbuilt features answer a `Status` error).
//!
//! Where new code goes:
//! - a new built-in resource: a row in [`resources`];
//! - a new verb or query parameter: [`handlers`] (one function per verb; deletes in
//!   `handlers/delete.rs`, server-side apply in `handlers/apply_patch.rs`), watches in
//!   [`watch`] and [`watch_cache`] (lists served from it: [`cached_list`]), storage
//!   access in [`storage`] (the only module that
//!   talks to etcd);
//! - a new error reason: [`error`] (every failure reaches the wire through its `ApiError`;
//!   [`validation`] and [`apply`] word their own kube messages, converted there);
//! - per-kind defaulting: [`defaults`]; typed decoding checks: [`typed`]; per-kind spec
//!   rules and immutable fields: [`validation`] (`validation/kinds.rs`,
//!   `validation/immutable.rs`);
//! - discovery documents: [`discovery`] (aggregated discovery in `discovery/aggregated.rs`);
//!   OpenAPI: [`openapi`] (v3; v2 JSON and protobuf in `openapi/v2.rs`, `openapi/v2_proto.rs`);
//! - protobuf request bodies: [`protobuf`] (a new built-in kind needs its `schema.rs`
//!   regenerated: `apiserver/scripts/gen_proto_schema.rs`);
//! - what kube-apiserver does on its own (bootstrap, allocators, namespace deletion):
//!   [`bootstrap`] and [`allocator`].

pub mod allocator;
pub mod apply;
pub mod bootstrap;
pub mod cached_list;
pub mod config;
pub mod defaults;
pub mod discovery;
pub mod error;
pub mod filter;
pub mod handlers;
pub mod metrics;
pub mod objects;
pub mod openapi;
pub mod patch;
pub mod patching;
pub mod pki;
pub mod protobuf;
pub mod resources;
pub mod routing;
pub mod selectors;
pub mod server;
pub mod storage;
pub mod table;
pub mod table_response;
pub mod typed;
pub mod validation;
pub mod watch;
pub mod watch_cache;

pub use config::{ApiserverArgs, Config};
pub use server::{start, RunningApiserver};
