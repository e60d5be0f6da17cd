//! `--start`: `skiff up` (this same binary) in a temp dir, on loopback ports of its own,
//! stopped (SIGKILL, then reaped) when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use hyper::Method;

use super::client::{Client, KubeConfig};

/// How long `skiff up` may take to answer `/readyz` (a debug build, on a busy machine).
const UP_READY_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

pub struct Up {
    child: Child,
    dir: tempfile::TempDir,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Up {
    /// Starts `skiff up` (with its own store member, or on `etcd_servers`) and waits until
    /// its apiserver is ready.
    pub async fn start(etcd_servers: Option<&str>) -> anyhow::Result<Up> {
        let dir = tempfile::Builder::new().prefix("skiff-bench-apiserver-").tempdir()?;
        let log = std::fs::File::create(dir.path().join("up.log"))?;
        let mut cmd = Command::new(std::env::current_exe().context("this binary's path")?);
        cmd.arg("up").arg("--data-dir").arg(dir.path().join("data")).arg("--secure-port").arg(free_port()?.to_string());
        match etcd_servers {
            Some(e) => {
                cmd.arg("--etcd-servers").arg(e);
            }
            None => {
                cmd.arg(format!("--store-client-url=http://127.0.0.1:{}", free_port()?));
                cmd.arg(format!("--store-peer-url=http://127.0.0.1:{}", free_port()?));
            }
        }
        let child = cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).spawn().context("spawning skiff up")?;
        let mut up = Up { child, dir };
        up.wait_ready().await.with_context(|| format!("skiff up log:\n{}", std::fs::read_to_string(up.dir.path().join("up.log")).unwrap_or_default()))?;
        Ok(up)
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("data/kubeconfig")
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + UP_READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("skiff up exited with {status}");
            }
            if self.kubeconfig().is_file() {
                let ready = async {
                    let client = Client::new(&KubeConfig::load(&self.kubeconfig())?, None)?;
                    let (_, body) = client.connect().await?.call(Method::GET, "/readyz", None).await?;
                    anyhow::Ok(body.as_ref() == b"ok")
                };
                if let Ok(true) = ready.await {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("skiff up not ready after {UP_READY_TIMEOUT:?}");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
