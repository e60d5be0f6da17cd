//! The HTTPS server: TLS (rustls, HTTP/2 and HTTP/1.1 by ALPN), authentication (a client
//! certificate signed by the cluster CA, or the admin bearer token), and dispatch of each
//! request to discovery, health, metrics or the resource handlers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};

use crate::allocator::Allocator;
use crate::config::Config;
use crate::error::ApiError;
use crate::handlers::{self, AppState, Reply, State, NAMESPACE_QUEUE_MAX, REQUEST_BODY_BYTES_MAX};
use crate::metrics::RequestLabels;
use crate::pki::Pki;
use crate::resources::Registry;
use crate::routing::{self, Target};
use crate::storage::Storage;

/// Most concurrent client connections; further connections wait to be accepted.
pub const CONNECTIONS_MAX: usize = 4096;
/// Pause after a failed accept (e.g. EMFILE) before the next.
pub const ACCEPT_ERROR_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);
/// How long a TLS handshake may take.
pub const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Who made a request (set per connection after the TLS handshake).
#[derive(Clone, Debug)]
struct PeerIdentity {
    /// The client presented a certificate the cluster CA signed.
    client_cert: bool,
}

pub struct RunningApiserver {
    pub addr: SocketAddr,
    pub kubeconfig: std::path::PathBuf,
    pub state: State,
    task: tokio::task::JoinHandle<()>,
}

impl RunningApiserver {
    pub fn stop(self) {
        self.task.abort();
    }
}

fn tls_config(pki: &Pki) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pki.ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let chain: Vec<_> = rustls_pemfile::certs(&mut pki.serving_cert_pem.as_bytes()).collect::<Result<_, _>>()?;
    let key = rustls_pemfile::private_key(&mut pki.serving_key_pem.as_bytes())?.context("serving key missing")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Connects to etcd, bootstraps, and serves HTTPS until the returned handle is stopped.
pub async fn start(config: Config) -> anyhow::Result<RunningApiserver> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let pki = Pki::load_or_generate(&config.data_dir, config.bind_address)?;
    let storage = Storage::connect(&config.etcd_servers).await.context("connecting to etcd")?;
    let (ns_tx, ns_rx) = mpsc::channel(NAMESPACE_QUEUE_MAX);
    let state: State = Arc::new(AppState {
        storage,
        registry: Registry::builtin(),
        allocator: Allocator { cidr: config.service_cidr, node_port_first: config.node_port_first, node_port_last: config.node_port_last },
        metrics: crate::metrics::Metrics::new(),
        admin_token: pki.admin_token.clone(),
        namespace_queue: ns_tx,
        watch_caches: Default::default(),
    });
    let listener = TcpListener::bind((config.bind_address, config.secure_port))
        .await
        .with_context(|| format!("binding {}:{}", config.bind_address, config.secure_port))?;
    let addr = listener.local_addr()?;
    let advertise = if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
    crate::bootstrap::run(&state, &advertise, addr.port()).await?;
    crate::bootstrap::load_crds(&state).await?;
    tokio::spawn(crate::bootstrap::namespace_finalizer(state.clone(), ns_rx));
    let host = if addr.ip().is_ipv6() { format!("[{}]", addr.ip()) } else { advertise.clone() };
    let server_url = format!("https://{host}:{}", addr.port());
    let kubeconfig = pki.write_kubeconfig(&config.data_dir, &server_url)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(&pki)?));
    let server_address = format!("{advertise}:{}", addr.port());
    let task = tokio::spawn(accept_loop(listener, acceptor, state.clone(), server_address));
    tracing::info!(%addr, kubeconfig = %kubeconfig.display(), "apiserver serving");
    Ok(RunningApiserver { addr, kubeconfig, state, task })
}

async fn accept_loop(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor, state: State, server_address: String) {
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let server_address = Arc::new(server_address);
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let (tcp, _peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // E.g. out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let state = state.clone();
        let server_address = server_address.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(t)) => t,
                _ => return,
            };
            let identity = PeerIdentity { client_cert: tls.get_ref().1.peer_certificates().map(|c| !c.is_empty()).unwrap_or(false) };
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let state = state.clone();
                let identity = identity.clone();
                let server_address = server_address.clone();
                async move {
                    let req = req.map(Body::new);
                    let resp = handle(state, identity, server_address, req).await;
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await;
        });
    }
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    let mut resp = (status, serde_json::to_vec(v).unwrap_or_default()).into_response();
    resp.headers_mut().insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn text_response(status: StatusCode, text: String) -> Response {
    let mut resp = (status, text).into_response();
    resp.headers_mut().insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

fn authenticated(state: &AppState, identity: &PeerIdentity, req: &Request<Body>) -> bool {
    if identity.client_cert {
        return true;
    }
    let auth = req.headers().get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    match auth.strip_prefix("Bearer ") {
        // Constant-time enough for a 64-char token compared once per request: compare all bytes.
        Some(token) => {
            let a = token.trim().as_bytes();
            let b = state.admin_token.as_bytes();
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
        }
        None => false,
    }
}

/// kube's verb for metrics: GET/LIST/WATCH/POST/PUT/PATCH/DELETE/DELETECOLLECTION.
fn metric_verb(method: &Method, is_collection: bool, is_watch: bool) -> &'static str {
    match (method.as_str(), is_collection, is_watch) {
        (_, _, true) => "WATCH",
        ("GET", true, _) => "LIST",
        ("GET", false, _) => "GET",
        ("POST", _, _) => "POST",
        ("PUT", _, _) => "PUT",
        ("PATCH", _, _) => "PATCH",
        ("DELETE", true, _) => "DELETECOLLECTION",
        ("DELETE", false, _) => "DELETE",
        _ => "OTHER",
    }
}

async fn handle(state: State, identity: PeerIdentity, server_address: Arc<String>, req: Request<Body>) -> Response {
    let path = req.uri().path().to_string();
    // Health endpoints answer without credentials, as kube's default RBAC allows them.
    match path.as_str() {
        "/healthz" | "/livez" | "/readyz" => {
            if path == "/readyz" {
                return match state.storage.current_revision().await {
                    Ok(_) => text_response(StatusCode::OK, "ok".into()),
                    Err(e) => text_response(StatusCode::INTERNAL_SERVER_ERROR, format!("[-]etcd failed: {e}\nreadyz check failed\n")),
                };
            }
            return text_response(StatusCode::OK, "ok".into());
        }
        _ => {}
    }
    if !authenticated(&state, &identity, &req) {
        return ApiError::unauthorized().into_response();
    }
    match path.as_str() {
        "/metrics" => return text_response(StatusCode::OK, state.metrics.render()),
        "/version" => return json_response(StatusCode::OK, &crate::discovery::version()),
        "/api" | "/apis" => return discovery_root(&state, &server_address, &req),
        "/openapi/v2" => {
            let (accept, if_none_match) = (header_string(&req, axum::http::header::ACCEPT), header_string(&req, axum::http::header::IF_NONE_MATCH));
            return openapi_v2(&state, accept.as_deref(), if_none_match.as_deref()).await;
        }
        "/openapi/v3" => {
            let (resources, schemas) = openapi_inputs(&state).await;
            return json_response(StatusCode::OK, &crate::openapi::v3_index(&resources, &schemas));
        }
        _ => {}
    }
    if let Some(gv) = path.strip_prefix("/openapi/v3/") {
        let segs: Vec<&str> = gv.split('/').collect();
        let (g, v) = match segs.as_slice() {
            ["api", v] => ("", *v),
            ["apis", g, v] => (*g, *v),
            _ => return ApiError::path_not_found().into_response(),
        };
        if !state.registry.all().iter().any(|r| r.group == g && r.version == v) {
            return ApiError::path_not_found().into_response();
        }
        let (resources, schemas) = openapi_inputs(&state).await;
        let doc = crate::openapi::v3_document(&resources, &schemas, g, v);
        return json_response(StatusCode::OK, &doc);
    }
    let Some(target) = routing::parse_path(&state.registry, &path) else {
        return ApiError::path_not_found().into_response();
    };
    match target {
        Target::Group(g) => match crate::discovery::api_group(&state.registry, &g) {
            Some(v) => json_response(StatusCode::OK, &v),
            None => ApiError::path_not_found().into_response(),
        },
        Target::ResourceList { group, version } => {
            json_response(StatusCode::OK, &crate::discovery::api_resource_list(&state.registry, &group, &version))
        }
        Target::Resource(route) => serve_resource(state, route, req).await,
    }
}

fn header_string(req: &Request<Body>, name: axum::http::header::HeaderName) -> Option<String> {
    req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// `/openapi/v2` as JSON or protobuf, with an ETag so an unchanged document is a 304.
async fn openapi_v2(state: &AppState, accept: Option<&str>, if_none_match: Option<&str>) -> Response {
    use crate::openapi::v2::{self, Encoding};
    let encoding = match v2::negotiate(accept) {
        Ok(e) => e,
        Err(e) => return e.into_response(),
    };
    let (resources, schemas) = openapi_inputs(state).await;
    let doc = v2::v2_document(&resources, &schemas);
    // One tag per document and encoding (as kube-openapi's).
    let etag = match encoding {
        Encoding::Json => v2::etag(&doc),
        Encoding::Protobuf => format!("{}-pb\"", v2::etag(&doc).trim_end_matches('"')),
    };
    let mut resp = if if_none_match.unwrap_or("").split(',').any(|t| t.trim() == etag || t.trim() == "*") {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let body = match encoding {
            Encoding::Json => serde_json::to_vec(&doc).unwrap_or_default(),
            Encoding::Protobuf => crate::openapi::v2_proto::encode(&doc),
        };
        let mut r = (StatusCode::OK, body).into_response();
        r.headers_mut().insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static(encoding.content_type()));
        r
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(axum::http::header::ETAG, v);
    }
    resp.headers_mut().insert(axum::http::header::VARY, HeaderValue::from_static("Accept"));
    resp
}

/// `/api` or `/apis`: the legacy document or aggregated discovery, as `Accept` asks.
fn discovery_root(state: &AppState, server_address: &str, req: &Request<Body>) -> Response {
    use crate::discovery::{self, DiscoveryFormat};
    let accept = req.headers().get(axum::http::header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = match discovery::aggregated::negotiate(accept) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let core = req.uri().path() == "/api";
    let doc = match (format, core) {
        (DiscoveryFormat::Legacy, true) => discovery::api_versions(server_address),
        (DiscoveryFormat::Legacy, false) => discovery::api_group_list(&state.registry),
        (aggregated, core) => discovery::group_discovery_list(&state.registry, core, aggregated),
    };
    let mut resp = json_response(StatusCode::OK, &doc);
    resp.headers_mut().insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    resp.headers_mut().insert(axum::http::header::VARY, HeaderValue::from_static("Accept"));
    resp
}

/// The served resources and the `openAPIV3Schema` of each custom resource version (read
/// from the stored CRDs: OpenAPI documents are fetched rarely and cached by clients).
async fn openapi_inputs(state: &AppState) -> (Vec<crate::resources::ResourceInfo>, std::collections::BTreeMap<(String, String, String), Value>) {
    let resources: Vec<_> = state.registry.all().iter().map(|r| (**r).clone()).collect();
    let mut schemas = std::collections::BTreeMap::new();
    if let Some(crd) = state.registry.by_plural("apiextensions.k8s.io", "customresourcedefinitions") {
        let q = Default::default();
        if let Ok(listed) = handlers::list_objects(state, &crd, None, &crate::filter::Filter::default(), &q).await {
            for c in &listed.items {
                let group = c.pointer("/spec/group").and_then(Value::as_str).unwrap_or("").to_string();
                let kind = c.pointer("/spec/names/kind").and_then(Value::as_str).unwrap_or("").to_string();
                for v in c.pointer("/spec/versions").and_then(Value::as_array).cloned().unwrap_or_default() {
                    if let (Some(name), Some(schema)) = (v.get("name").and_then(Value::as_str), v.pointer("/schema/openAPIV3Schema")) {
                        schemas.insert((group.clone(), name.to_string(), kind.clone()), schema.clone());
                    }
                }
            }
        }
    }
    (resources, schemas)
}

async fn serve_resource(state: State, route: routing::Route, req: Request<Body>) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let query = match routing::parse_query(parts.uri.query()) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let is_collection = route.name.is_none();
    let is_watch = route.watch_path || matches!(query.get("watch").map(String::as_str), Some("true") | Some("1"));
    let res = route.resource.clone();
    let sub = route.subresource.clone().unwrap_or_default();
    let scope = match (res.namespaced, &route.namespace, is_collection) {
        (false, _, _) => "cluster",
        (true, Some(_), _) => if is_collection { "namespace" } else { "resource" },
        (true, None, _) => "cluster",
    };
    let is_apply = parts.headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| ct.starts_with("application/apply-patch"));
    let verb = if parts.method == Method::PATCH && is_apply { "APPLY" } else { metric_verb(&parts.method, is_collection, is_watch) };
    let dry_run = query.get("dryRun").map(|v| v == "All").unwrap_or(false);
    let resp = match dispatch(&state, route, parts, body, query, is_collection, is_watch).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    let labels = RequestLabels { verb, group: &res.group, version: &res.version, resource: &res.plural, subresource: &sub, scope };
    state.metrics.observe(&labels, dry_run, resp.status().as_u16(), started.elapsed().as_secs_f64());
    resp
}

async fn dispatch(
    state: &State,
    route: routing::Route,
    parts: axum::http::request::Parts,
    body: Body,
    query: std::collections::HashMap<String, String>,
    is_collection: bool,
    is_watch: bool,
) -> Result<Response, ApiError> {
    let accept = parts.headers.get(axum::http::header::ACCEPT).and_then(|v| v.to_str().ok()).map(str::to_string);
    let encoding = routing::negotiate(accept.as_deref())?;
    let body = axum::body::to_bytes(body, REQUEST_BODY_BYTES_MAX)
        .await
        .map_err(|_| ApiError::request_entity_too_large(REQUEST_BODY_BYTES_MAX))?;
    let method = parts.method.clone();
    let sub = route.subresource.clone();
    let request = handlers::Request { method: method.clone(), route, query, headers: parts.headers, body, encoding };
    if is_watch {
        if method != Method::GET || sub.is_some() {
            return Err(ApiError::method_not_allowed());
        }
        return crate::watch::serve(state.clone(), request).await;
    }
    if method == Method::GET && is_collection && sub.is_none() {
        // resourceVersion=0 / not-older-than JSON lists: from the watch cache's rendered bytes.
        if let Some(resp) = crate::cached_list::serve_json(state, &request).await? {
            return Ok(resp);
        }
    }
    let reply: Reply = match (method.as_str(), is_collection, sub.as_deref()) {
        ("GET", true, None) => handlers::list(state, &request).await?,
        ("POST", true, None) => handlers::create(state, &request).await?,
        ("DELETE", true, None) => handlers::delete_collection(state, &request).await?,
        ("GET", false, None | Some("status") | Some("scale")) => handlers::get(state, &request).await?,
        ("PUT", false, None | Some("status") | Some("scale")) => handlers::update(state, &request).await?,
        ("PATCH", false, None | Some("status") | Some("scale")) => handlers::patch(state, &request).await?,
        ("DELETE", false, None) => handlers::delete(state, &request).await?,
        ("POST", false, Some("binding")) => handlers::bind(state, &request).await?,
        _ => return Err(ApiError::method_not_allowed()),
    };
    Ok(reply.into_response())
}
