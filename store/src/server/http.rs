//! The client port's router: etcd's gRPC services and, on the same port, the HTTP
//! endpoints etcd serves there (`/metrics`, `/health`, `/version`).

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::cluster::ClusterService;
use super::kv::KvService;
use super::lease::LeaseService;
use super::maintenance::MaintenanceService;
use super::election::ElectionService;
use super::lock::LockService;
use super::unimplemented::AuthService;
use super::{EtcdServer, CLUSTER_VERSION, ETCD_VERSION};
use crate::config::GRPC_OVERHEAD_BYTES;
use crate::proto::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
    maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use crate::proto::v3electionpb::election_server::ElectionServer;
use crate::proto::v3lockpb::lock_server::LockServer;
use crate::watch::{WatchService, WatchServiceConfig};

/// Builds the router; `grpc` false gives the HTTP endpoints only (`--listen-metrics-urls`).
pub fn router(server: Arc<EtcdServer>, grpc: bool) -> Router {
    let http = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/readyz", get(health))
        .route("/livez", get(health))
        .route("/version", get(version))
        .with_state(server.clone());
    if !grpc {
        return http;
    }
    // gRPC messages may exceed the request limit by etcd's framing allowance; the request
    // limit itself is enforced on the proposal (`etcdserver: request is too large`).
    let max = server.config.max_request_bytes + GRPC_OVERHEAD_BYTES;
    let routes = tonic::service::Routes::new(KvServer::new(KvService { server: server.clone() }).max_decoding_message_size(max))
        .add_service(WatchServer::new(WatchService::new(server.hub.clone(), header_fn(&server), watch_config(&server))).max_decoding_message_size(max))
        .add_service(LeaseServer::new(LeaseService { server: server.clone() }).max_decoding_message_size(max))
        .add_service(ClusterServer::new(ClusterService { server: server.clone() }).max_decoding_message_size(max))
        .add_service(
            MaintenanceServer::new(MaintenanceService { server: server.clone() }).max_decoding_message_size(max),
        )
        .add_service(AuthServer::new(AuthService).max_decoding_message_size(max))
        .add_service(
            LockServer::new(LockService { server: server.clone(), channel: Default::default() })
                .max_decoding_message_size(max),
        )
        .add_service(
            ElectionServer::new(ElectionService { server: server.clone(), channel: Default::default() })
                .max_decoding_message_size(max),
        );
    let learner_gate = axum::middleware::from_fn_with_state(server.clone(), refuse_on_learner);
    routes.into_axum_router().layer(learner_gate).merge(http)
}

/// etcd serves only `Status` and serializable `Range` on a learner; every other RPC gets
/// `etcdserver: rpc not supported for learner` (`Unavailable`, so clients try another
/// member). `Range` checks `serializable` itself (it needs the decoded request).
async fn refuse_on_learner(
    axum::extract::State(server): axum::extract::State<Arc<EtcdServer>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path();
    if server.node.status().is_learner
        && path != "/etcdserverpb.Maintenance/Status"
        && path != "/etcdserverpb.KV/Range"
    {
        let status: tonic::Status = crate::error::Error::NotSupportedForLearner.into();
        return status.into_http();
    }
    next.run(request).await
}

fn watch_config(server: &EtcdServer) -> WatchServiceConfig {
    WatchServiceConfig {
        progress_notify_interval: server.config.watch_progress_notify_interval,
        ..Default::default()
    }
    .with_request_bytes_max(server.config.max_request_bytes)
}

fn header_fn(server: &Arc<EtcdServer>) -> crate::watch::HeaderFn {
    let s = Arc::downgrade(server);
    Arc::new(move |rev| s.upgrade().and_then(|s| s.header(rev)).unwrap_or_default())
}

async fn metrics(axum::extract::State(server): axum::extract::State<Arc<EtcdServer>>) -> impl IntoResponse {
    server.metrics.refresh(&server);
    match server.metrics.render() {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

async fn health(axum::extract::State(server): axum::extract::State<Arc<EtcdServer>>) -> impl IntoResponse {
    let st = server.node.status();
    let (code, health, reason) = if st.leader_id == 0 {
        (StatusCode::SERVICE_UNAVAILABLE, "false", "RAFT NO LEADER")
    } else if !server.alarms.list().is_empty() {
        (StatusCode::SERVICE_UNAVAILABLE, "false", "ALARM ACTIVE")
    } else {
        (StatusCode::OK, "true", "")
    };
    (code, axum::Json(serde_json::json!({ "health": health, "reason": reason })))
}

async fn version() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "etcdserver": ETCD_VERSION, "etcdcluster": CLUSTER_VERSION }))
}
