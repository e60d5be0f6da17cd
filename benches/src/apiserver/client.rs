//! A minimal Kubernetes HTTPS client for the bench: the kubeconfig's first cluster and user
//! (CA, client certificate or bearer token), one HTTP/1.1 connection per task, JSON bodies.
//! Only the wire protocol: it works against any apiserver, skiff's or kube's.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Time allowed for TCP connect plus TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the bench needs from a kubeconfig.
#[derive(Clone, Debug, Default)]
pub struct KubeConfig {
    pub server: String,
    pub ca_pem: Vec<u8>,
    pub client_cert_pem: Vec<u8>,
    pub client_key_pem: Vec<u8>,
    pub token: Option<String>,
}

impl KubeConfig {
    /// Reads the first `server`, `certificate-authority-data`, `client-certificate-data`,
    /// `client-key-data` and `token` of a kubeconfig (the shape `skiff up` writes; no
    /// contexts, exec plugins or file references).
    pub fn load(path: &Path) -> anyhow::Result<KubeConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> anyhow::Result<KubeConfig> {
        let mut kc = KubeConfig::default();
        let b64 = |v: &str| base64::engine::general_purpose::STANDARD.decode(v.trim()).context("kubeconfig base64 field");
        for line in text.lines() {
            let Some((key, value)) = line.trim().trim_start_matches("- ").split_once(':') else { continue };
            let value = value.trim();
            match key.trim() {
                "server" if kc.server.is_empty() => kc.server = value.to_string(),
                "certificate-authority-data" if kc.ca_pem.is_empty() => kc.ca_pem = b64(value)?,
                "client-certificate-data" if kc.client_cert_pem.is_empty() => kc.client_cert_pem = b64(value)?,
                "client-key-data" if kc.client_key_pem.is_empty() => kc.client_key_pem = b64(value)?,
                "token" if kc.token.is_none() => kc.token = Some(value.trim_matches('"').to_string()),
                _ => {}
            }
        }
        if kc.server.is_empty() {
            bail!("kubeconfig has no cluster server");
        }
        Ok(kc)
    }
}

/// Connects to one apiserver; cheap to clone, each [`Client::connect`] is a new connection.
#[derive(Clone)]
pub struct Client {
    connector: TlsConnector,
    host: String,
    port: u16,
    server_name: rustls::pki_types::ServerName<'static>,
    authorization: Option<String>,
}

impl Client {
    pub fn new(config: &KubeConfig, server: Option<&str>) -> anyhow::Result<Client> {
        let server = server.unwrap_or(&config.server);
        let rest = server.strip_prefix("https://").with_context(|| format!("server {server:?} is not https://"))?;
        let authority = rest.split('/').next().unwrap_or(rest);
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h.to_string(), p.parse().context("server port")?),
            _ => (authority.to_string(), 443),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut config.ca_pem.as_slice()) {
            roots.add(cert.context("kubeconfig CA")?)?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?.with_root_certificates(roots);
        let mut tls = if config.client_cert_pem.is_empty() {
            builder.with_no_client_auth()
        } else {
            let chain = rustls_pemfile::certs(&mut config.client_cert_pem.as_slice()).collect::<Result<Vec<_>, _>>()?;
            let key = rustls_pemfile::private_key(&mut config.client_key_pem.as_slice())?.context("kubeconfig client key")?;
            builder.with_client_auth_cert(chain, key)?
        };
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let server_name = rustls::pki_types::ServerName::try_from(host.clone())?;
        Ok(Client {
            connector: TlsConnector::from(Arc::new(tls)),
            host,
            port,
            server_name,
            authorization: config.token.as_ref().map(|t| format!("Bearer {t}")),
        })
    }

    pub async fn connect(&self) -> anyhow::Result<Conn> {
        let connect = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
            tcp.set_nodelay(true)?;
            let tls = self.connector.connect(self.server_name.clone(), tcp).await?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
            tokio::spawn(connection);
            anyhow::Ok(sender)
        };
        let sender = tokio::time::timeout(CONNECT_TIMEOUT, connect).await.context("connect timed out")??;
        Ok(Conn { sender, authorization: self.authorization.clone(), host: format!("{}:{}", self.host, self.port) })
    }
}

/// One HTTP/1.1 connection: one request at a time.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    authorization: Option<String>,
    host: String,
}

impl Conn {
    /// Sends a request and returns the response with its body unread (watches stream it).
    pub async fn send(&mut self, method: Method, path: &str, body: Option<Vec<u8>>) -> anyhow::Result<Response<Incoming>> {
        self.sender.ready().await?;
        let mut req = Request::builder().method(method).uri(path).header("host", &self.host).header("accept", "application/json");
        if let Some(a) = &self.authorization {
            req = req.header("authorization", a);
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        Ok(self.sender.send_request(req).await?)
    }

    /// Sends a request and reads the whole body; a non-2xx answer is an error carrying
    /// the status and the Status message.
    pub async fn call(&mut self, method: Method, path: &str, body: Option<Vec<u8>>) -> anyhow::Result<(StatusCode, Bytes)> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["message"].as_str().map(String::from))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned());
            bail!("{} {}", status.as_u16(), message);
        }
        Ok((status, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_fields() {
        let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let text = format!(
            "apiVersion: v1\nclusters:\n- name: skiff\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority-data: {}\nusers:\n- name: a\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
            b("CA"),
            b("CERT"),
            b("KEY")
        );
        let kc = KubeConfig::parse(&text).unwrap();
        assert_eq!(kc.server, "https://127.0.0.1:6443");
        assert_eq!((kc.ca_pem.as_slice(), kc.client_cert_pem.as_slice(), kc.client_key_pem.as_slice()), (&b"CA"[..], &b"CERT"[..], &b"KEY"[..]));
        assert!(kc.token.is_none());
        let kc = KubeConfig::parse("clusters:\n- cluster:\n    server: https://h:1\nusers:\n- user:\n    token: abc\n").unwrap();
        assert_eq!(kc.token.as_deref(), Some("abc"));
        assert!(KubeConfig::parse("users: []\n").is_err());
    }
}
