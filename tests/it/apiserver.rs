//! The Kubernetes API server driven by real `kubectl`, on a skiff store and on the
//! reference etcd: the same scenario against both (`skiff apiserver --etcd-servers ...`).
//!
//! Outputs are compared exactly where they are stable (names, jsonpath values, error
//! messages) and by pattern where they hold times or generated values.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::harness::{must_find_binary, run_bounded, Output, RunningServer, Server};

/// How long the API server may take from spawn to answering `/readyz`.
const APISERVER_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on one kubectl run.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a watch may take to show an event.
const WATCH_EVENT_TIMEOUT: Duration = Duration::from_secs(20);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// An API server process on a store, with its data dir (PKI, kubeconfig); killed on drop.
pub(crate) struct Apiserver {
    pub(crate) store: RunningServer,
    child: Child,
    dir: tempfile::TempDir,
    pub(crate) port: u16,
}

impl Drop for Apiserver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Apiserver {
    pub(crate) fn start(kind: Server) -> anyhow::Result<Apiserver> {
        must_find_binary("kubectl")?;
        let store = kind.start()?;
        let dir = tempfile::Builder::new().prefix(&format!("skiff-apiserver-{}-", kind.name())).tempdir()?;
        let port = free_port()?;
        let log = std::fs::File::create(dir.path().join("apiserver.log"))?;
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("apiserver")
            .arg("--etcd-servers")
            .arg(store.client_url())
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--secure-port")
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning skiff apiserver")?;
        let mut server = Apiserver { store, child, dir, port };
        server.wait_ready().with_context(|| format!("apiserver log:\n{}", server.log()))?;
        Ok(server)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("apiserver.log")).unwrap_or_default()
    }

    pub(crate) fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("data/kubeconfig")
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + APISERVER_READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("apiserver exited during startup with {status}");
            }
            if self.kubeconfig().is_file() {
                let out = self.kubectl(&["get", "--raw", "/readyz"])?;
                if out.code == Some(0) && out.stdout == "ok" {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("apiserver not ready after {APISERVER_READY_TIMEOUT:?}");
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn command(&self, kubeconfig: &Path) -> Command {
        let mut cmd = Command::new("kubectl");
        // Own discovery cache per server: ports are reused across tests.
        cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--cache-dir={}", self.dir.path().join("kube-cache").display()))
            .env_remove("KUBECONFIG");
        cmd
    }

    pub(crate) fn kubectl_with(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<Output> {
        let mut cmd = self.command(&self.kubeconfig());
        cmd.args(args);
        run_bounded(cmd, stdin, KUBECTL_TIMEOUT)
    }

    pub(crate) fn kubectl(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.kubectl_with(args, None)
    }

    /// Runs kubectl and requires success; returns stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        self.ok_with(args, None)
    }

    pub(crate) fn ok_with(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        let out = self.kubectl_with(args, stdin)?;
        if out.code != Some(0) {
            bail!("kubectl {args:?} failed ({:?}):\nstdout: {}\nstderr: {}\napiserver log tail: {}", out.code, out.stdout, out.stderr, tail(&self.log()));
        }
        Ok(out.stdout)
    }

    /// Runs kubectl and requires failure; returns stderr.
    pub(crate) fn fails(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        let out = self.kubectl_with(args, stdin)?;
        if out.code == Some(0) {
            bail!("kubectl {args:?} succeeded but should fail:\n{}", out.stdout);
        }
        Ok(out.stderr)
    }

    /// Writes `contents` under the server's temp dir and returns the path.
    pub(crate) fn file(&self, name: &str, contents: &str) -> anyhow::Result<String> {
        let p = self.dir.path().join(name);
        std::fs::write(&p, contents)?;
        Ok(p.display().to_string())
    }
}

pub(crate) fn tail(s: &str) -> &str {
    let mut cut = s.len().saturating_sub(3000);
    while !s.is_char_boundary(cut) {
        cut += 1;
    }
    &s[cut..]
}

pub(crate) fn assert_eq_text(what: &str, got: &str, want: &str) -> anyhow::Result<()> {
    if got != want {
        bail!("{what}: got\n{got}\nwant\n{want}");
    }
    Ok(())
}

pub(crate) fn assert_contains(what: &str, got: &str, want: &str) -> anyhow::Result<()> {
    if !got.contains(want) {
        bail!("{what}: {:?} does not contain {want:?}", tail(got));
    }
    Ok(())
}

pub(crate) const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web-1
  labels: {app: web, tier: frontend}
spec:
  containers:
  - name: nginx
    image: nginx:1.25
";

pub(crate) const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
";

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
";

const CONFIGMAP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  color: blue
";

const NAMESPACE: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: team-a
";

fn discovery(s: &Apiserver) -> anyhow::Result<()> {
    let resources = s.ok(&["api-resources", "--no-headers", "-o", "name"])?;
    for want in ["pods", "services", "namespaces", "deployments.apps", "customresourcedefinitions.apiextensions.k8s.io", "leases.coordination.k8s.io", "poddisruptionbudgets.policy", "endpointslices.discovery.k8s.io", "clusterroles.rbac.authorization.k8s.io", "cronjobs.batch"] {
        if !resources.lines().any(|l| l == want) {
            bail!("api-resources lacks {want}:\n{resources}");
        }
    }
    assert_eq!(resources.lines().count(), 31, "{resources}");
    let wide = s.ok(&["api-resources", "--api-group=apps", "--no-headers"])?;
    let deploy_line = wide.lines().find(|l| l.starts_with("deployments")).unwrap_or_default();
    let cols: Vec<&str> = deploy_line.split_whitespace().collect();
    assert_eq!(cols, ["deployments", "deploy", "apps/v1", "true", "Deployment"]);
    let versions = s.ok(&["api-versions"])?;
    assert_eq_text(
        "api-versions",
        &versions,
        "apiextensions.k8s.io/v1\napps/v1\nbatch/v1\ncoordination.k8s.io/v1\ndiscovery.k8s.io/v1\nnetworking.k8s.io/v1\npolicy/v1\nrbac.authorization.k8s.io/v1\nv1\n",
    )?;
    let explain = s.ok(&["explain", "deployment.spec.replicas"])?;
    assert_contains("explain", &explain, "FIELD: replicas <integer>")?;
    let version = s.ok(&["version", "-o", "json"])?;
    assert_contains("version", &version, "\"gitVersion\": \"v1.32.0-skiff\"")?;
    Ok(())
}

fn bootstrap(s: &Apiserver) -> anyhow::Result<()> {
    let ns = s.ok(&["get", "ns", "-o", "name"])?;
    assert_eq_text("namespaces", &ns, "namespace/default\nnamespace/kube-node-lease\nnamespace/kube-public\nnamespace/kube-system\n")?;
    let ip = s.ok(&["get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP} {.spec.ports[0].port} {.spec.ports[0].targetPort}"])?;
    assert_eq_text("kubernetes service", &ip, &format!("10.96.0.1 443 {}", s.port))?;
    Ok(())
}

fn create_and_get(s: &Apiserver) -> anyhow::Result<()> {
    let pod = s.file("pod.yaml", POD)?;
    let deploy = s.file("deploy.yaml", DEPLOYMENT)?;
    let svc = s.file("svc.yaml", SERVICE)?;
    let cm = s.file("cm.yaml", CONFIGMAP)?;
    let ns = s.file("ns.yaml", NAMESPACE)?;
    assert_eq_text("create pod", &s.ok(&["create", "-f", &pod])?, "pod/web-1 created\n")?;
    assert_eq_text("create deploy", &s.ok(&["create", "-f", &deploy])?, "deployment.apps/web created\n")?;
    assert_eq_text("create svc", &s.ok(&["create", "-f", &svc])?, "service/web created\n")?;
    assert_eq_text("create cm", &s.ok(&["create", "-f", &cm])?, "configmap/settings created\n")?;
    assert_eq_text("create ns", &s.ok(&["create", "-f", &ns])?, "namespace/team-a created\n")?;

    let err = s.fails(&["create", "-f", &pod], None)?;
    assert_contains("duplicate create", &err, "Error from server (AlreadyExists): error when creating")?;
    assert_contains("duplicate create", &err, "pods \"web-1\" already exists")?;

    // JSON: server-set fields.
    let json: serde_json::Value = serde_json::from_str(&s.ok(&["get", "pod", "web-1", "-o", "json"])?)?;
    assert_eq!(json["kind"], "Pod");
    assert_eq!(json["metadata"]["namespace"], "default");
    assert_eq!(json["status"]["phase"], "Pending");
    assert_eq!(json["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
    let uid = json["metadata"]["uid"].as_str().unwrap_or_default();
    assert!(regex::Regex::new("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")?.is_match(uid), "uid {uid}");
    assert!(json["metadata"]["resourceVersion"].as_str().unwrap_or("").parse::<i64>()? > 0);
    let ts = json["metadata"]["creationTimestamp"].as_str().unwrap_or_default();
    assert!(regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")?.is_match(ts), "creationTimestamp {ts}");

    let yaml = s.ok(&["get", "cm", "settings", "-o", "yaml"])?;
    assert_contains("yaml", &yaml, "data:\n  color: blue\n")?;
    assert_contains("yaml", &yaml, "kind: ConfigMap\n")?;
    assert_eq_text("-o name", &s.ok(&["get", "deploy", "-o", "name"])?, "deployment.apps/web\n")?;
    assert_eq_text(
        "jsonpath",
        &s.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas} {.metadata.generation} {.spec.strategy.type}"])?,
        "2 1 RollingUpdate",
    )?;
    assert_eq_text(
        "custom-columns",
        &s.ok(&["get", "pods", "-o", "custom-columns=NAME:.metadata.name,PHASE:.status.phase,APP:.metadata.labels.app"])?,
        "NAME    PHASE     APP\nweb-1   Pending   web\n",
    )?;
    // Tables: kube's columns per kind.
    let table = s.ok(&["get", "pods"])?;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.first().copied(), Some("NAME    READY   STATUS    RESTARTS   AGE"), "{table}");
    assert!(regex::Regex::new(r"^web-1   0/1     Pending   0          \d+s$")?.is_match(lines.get(1).unwrap_or(&"")), "{table}");
    let wide = s.ok(&["get", "pods", "-o", "wide"])?;
    assert!(wide.starts_with("NAME    READY   STATUS    RESTARTS   AGE   IP       NODE     NOMINATED NODE   READINESS GATES\n"), "{wide}");
    let deploy_table = s.ok(&["get", "deploy"])?;
    assert!(regex::Regex::new(r"^NAME   READY   UP-TO-DATE   AVAILABLE   AGE\nweb    0/2     0            0           \d+s\n$")?.is_match(&deploy_table), "{deploy_table}");

    // Service: a ClusterIP from the default range, not the `kubernetes` one.
    let ip = s.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"])?;
    let octets: Vec<u32> = ip.split('.').map(|o| o.parse().unwrap_or(999)).collect();
    assert!(octets.len() == 4 && octets[0] == 10 && (96..112).contains(&octets[1]) && ip != "10.96.0.1", "cluster IP {ip}");
    assert_eq_text("svc target port", &s.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.ports[0].targetPort} {.spec.type}"])?, "8080 ClusterIP")?;

    // NodePort: allocated from 30000-32767, kept across apply, released when the type changes.
    let np = SERVICE.replace("name: web", "name: np").replace("spec:\n", "spec:\n  type: NodePort\n");
    let npf = s.file("np.yaml", &np)?;
    assert_eq_text("apply np", &s.ok(&["apply", "-f", &npf])?, "service/np created\n")?;
    assert_eq_text("apply np again", &s.ok(&["apply", "-f", &npf])?, "service/np unchanged\n")?;
    let port: u32 = s.ok(&["get", "svc", "np", "-o", "jsonpath={.spec.ports[0].nodePort}"])?.parse()?;
    assert!((30000..=32767).contains(&port), "nodePort {port}");
    s.file("np.yaml", &np.replace("type: NodePort", "type: ClusterIP"))?;
    assert_eq_text("np to ClusterIP", &s.ok(&["apply", "-f", &npf])?, "service/np configured\n")?;
    assert_eq_text("nodePort released", &s.ok(&["get", "svc", "np", "-o", "jsonpath={.spec.type}/{.spec.ports[0].nodePort}"])?, "ClusterIP/")?;
    let keys = s.store.etcdctl(&["get", "--prefix", "/registry/skiff.io/servicenodeports/", "--keys-only"], None)?;
    assert_eq_text("no node port reservation left", keys.stdout.trim(), "")?;
    s.ok(&["delete", "svc", "np"])?;

    // Stored as kube-apiserver does: its key layout, JSON, no resourceVersion inside.
    let keys = s.store.etcdctl(&["get", "--prefix", "/registry/", "--keys-only"], None)?;
    for want in ["/registry/pods/default/web-1", "/registry/deployments/default/web", "/registry/services/specs/default/web", "/registry/services/specs/default/kubernetes", "/registry/services/endpoints/default/kubernetes", "/registry/configmaps/default/settings", "/registry/namespaces/team-a"] {
        assert!(keys.stdout.lines().any(|l| l == want), "{want} not in etcd:\n{}", keys.stdout);
    }
    let stored = s.store.etcdctl(&["get", "/registry/deployments/default/web", "--print-value-only"], None)?;
    let stored: serde_json::Value = serde_json::from_str(stored.stdout.trim())?;
    assert_eq!(stored["kind"], "Deployment");
    assert!(stored["metadata"].get("resourceVersion").is_none(), "{stored}");

    // generateName.
    let gen = s.ok_with(&["create", "-f", "-", "-o", "name"], Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: gen-\n"))?;
    assert!(regex::Regex::new(r"^configmap/gen-[a-z0-9]{5}\n$")?.is_match(&gen), "generated name {gen:?}");
    Ok(())
}

fn selectors_and_paging(s: &Apiserver) -> anyhow::Result<()> {
    for i in 2..=5 {
        let tier = if i % 2 == 0 { "backend" } else { "frontend" };
        let pod = POD.replace("web-1", &format!("web-{i}")).replace("tier: frontend", &format!("tier: {tier}"));
        s.ok_with(&["create", "-f", "-"], Some(&pod))?;
    }
    assert_eq_text("-l", &s.ok(&["get", "pods", "-l", "tier=backend", "-o", "name"])?, "pod/web-2\npod/web-4\n")?;
    assert_eq_text("-l in", &s.ok(&["get", "pods", "-l", "tier in (frontend),app", "-o", "name"])?, "pod/web-1\npod/web-3\npod/web-5\n")?;
    assert_eq_text("-l !=", &s.ok(&["get", "pods", "-l", "tier!=frontend", "-o", "name"])?, "pod/web-2\npod/web-4\n")?;
    assert_eq_text(
        "--field-selector",
        &s.ok(&["get", "pods", "--field-selector", "metadata.name=web-3", "-o", "name"])?,
        "pod/web-3\n",
    )?;
    assert_eq_text(
        "--field-selector status.phase",
        &s.ok(&["get", "pods", "--field-selector", "status.phase=Running", "-o", "name"])?,
        "",
    )?;
    let err = s.fails(&["get", "cm", "--field-selector", "spec.nodeName=x"], None)?;
    assert_contains("unsupported field", &err, "field label not supported: spec.nodeName")?;
    // Paging: every page request must succeed and the union must be the whole list.
    let out = s.kubectl(&["get", "pods", "--chunk-size=2", "-o", "name", "-v=6"])?;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq_text("--chunk-size", &out.stdout, "pod/web-1\npod/web-2\npod/web-3\npod/web-4\npod/web-5\n")?;
    let pages = out.stderr.matches("limit=2").count();
    assert!(pages >= 3, "expected 3 paged requests, saw {pages}:\n{}", out.stderr);
    // Raw list with a limit: continue token and remaining count.
    let page: serde_json::Value = serde_json::from_str(&s.ok(&["get", "--raw", "/api/v1/namespaces/default/pods?limit=2"])?)?;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["metadata"]["remainingItemCount"], 3);
    let token = page["metadata"]["continue"].as_str().unwrap_or_default().to_string();
    let next: serde_json::Value = serde_json::from_str(&s.ok(&["get", "--raw", &format!("/api/v1/namespaces/default/pods?limit=2&continue={token}")])?)?;
    assert_eq!(next["items"][0]["metadata"]["name"], "web-3");
    assert_eq!(next["metadata"]["resourceVersion"], page["metadata"]["resourceVersion"], "pages share one revision");
    Ok(())
}

fn apply_label_annotate_patch(s: &Apiserver) -> anyhow::Result<()> {
    let cm = CONFIGMAP.replace("settings", "applied");
    let f = s.file("applied.yaml", &cm)?;
    assert_eq_text("apply 1", &s.ok(&["apply", "-f", &f])?, "configmap/applied created\n")?;
    let rv1 = s.ok(&["get", "cm", "applied", "-o", "jsonpath={.metadata.resourceVersion}"])?;
    assert_eq_text("apply 2", &s.ok(&["apply", "-f", &f])?, "configmap/applied unchanged\n")?;
    let rv2 = s.ok(&["get", "cm", "applied", "-o", "jsonpath={.metadata.resourceVersion}"])?;
    assert_eq!(rv1, rv2, "an unchanged apply must not write");
    s.file("applied.yaml", &cm.replace("color: blue", "color: green"))?;
    assert_eq_text("apply 3", &s.ok(&["apply", "-f", &f])?, "configmap/applied configured\n")?;
    assert_eq_text("applied value", &s.ok(&["get", "cm", "applied", "-o", "jsonpath={.data.color}"])?, "green")?;

    // apply of a Deployment twice, then changed (strategic merge patch on the template).
    let d = s.file("apply-deploy.yaml", &DEPLOYMENT.replace("name: web\n", "name: api\n"))?;
    assert_eq_text("apply deploy", &s.ok(&["apply", "-f", &d])?, "deployment.apps/api created\n")?;
    assert_eq_text("apply deploy again", &s.ok(&["apply", "-f", &d])?, "deployment.apps/api unchanged\n")?;
    s.file("apply-deploy.yaml", &DEPLOYMENT.replace("name: web\n", "name: api\n").replace("nginx:1.25", "nginx:1.26"))?;
    assert_eq_text("apply deploy changed", &s.ok(&["apply", "-f", &d])?, "deployment.apps/api configured\n")?;
    assert_eq_text(
        "deploy image and generation",
        &s.ok(&["get", "deploy", "api", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.metadata.generation}"])?,
        "nginx:1.26 2",
    )?;

    // Server-side apply: create, re-apply, a conflict with another manager, then forced.
    let ssa = DEPLOYMENT.replace("name: web\n", "name: ssa\n");
    let ssa_file = s.file("ssa.yaml", &ssa)?;
    assert_eq_text("ssa create", &s.ok(&["apply", "--server-side", "-f", &ssa_file])?, "deployment.apps/ssa serverside-applied\n")?;
    assert_eq_text("ssa again", &s.ok(&["apply", "--server-side", "-f", &ssa_file])?, "deployment.apps/ssa serverside-applied\n")?;
    assert_eq_text(
        "ssa managed fields",
        &s.ok(&["get", "deploy", "ssa", "--show-managed-fields", "-o", "jsonpath={.metadata.managedFields[0].manager} {.metadata.managedFields[0].operation}"])?,
        "kubectl Apply",
    )?;
    s.file("ssa.yaml", &ssa.replace("replicas: 2", "replicas: 5"))?;
    let err = s.fails(&["apply", "--server-side", "--field-manager=other", "-f", &ssa_file], None)?;
    assert_contains("ssa conflict", &err, "error: Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas")?;
    assert_eq_text("ssa force", &s.ok(&["apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", &ssa_file])?, "deployment.apps/ssa serverside-applied\n")?;
    assert_eq_text("ssa result", &s.ok(&["get", "deploy", "ssa", "-o", "jsonpath={.spec.replicas}"])?, "5")?;
    // A non-apply write owns what it changed: scale, then apply other replicas → conflict.
    s.ok(&["scale", "deploy", "ssa", "--replicas=7"])?;
    let err = s.fails(&["apply", "--server-side", "--field-manager=other", "-f", &ssa_file], None)?;
    assert_contains("ssa conflict with scale", &err, "Apply failed with 1 conflict: conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas")?;
    s.ok(&["delete", "deploy", "ssa"])?;

    assert_eq_text("label", &s.ok(&["label", "pod", "web-1", "env=prod"])?, "pod/web-1 labeled\n")?;
    assert_eq_text("label value", &s.ok(&["get", "pod", "web-1", "-o", "jsonpath={.metadata.labels.env}"])?, "prod")?;
    assert_eq_text("label remove", &s.ok(&["label", "pod", "web-1", "env-"])?, "pod/web-1 unlabeled\n")?;
    assert_eq_text("annotate", &s.ok(&["annotate", "pod", "web-1", "note=hello"])?, "pod/web-1 annotated\n")?;
    assert_eq_text("annotation", &s.ok(&["get", "pod", "web-1", "-o", "jsonpath={.metadata.annotations.note}"])?, "hello")?;

    assert_eq_text("patch merge", &s.ok(&["patch", "cm", "settings", "--type", "merge", "-p", r#"{"data":{"size":"xl"}}"#])?, "configmap/settings patched\n")?;
    assert_eq_text(
        "patch json",
        &s.ok(&["patch", "cm", "settings", "--type", "json", "-p", r#"[{"op":"replace","path":"/data/color","value":"red"}]"#])?,
        "configmap/settings patched\n",
    )?;
    assert_eq_text(
        "patch strategic",
        &s.ok(&["patch", "deploy", "web", "--type", "strategic", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.27"}]}}}}"#])?,
        "deployment.apps/web patched\n",
    )?;
    assert_eq_text("patched cm", &s.ok(&["get", "cm", "settings", "-o", "jsonpath={.data.color} {.data.size}"])?, "red xl")?;
    assert_eq_text(
        "patched deploy",
        &s.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].name} {.metadata.generation}"])?,
        "nginx:1.27 nginx 2",
    )?;
    let err = s.fails(&["patch", "cm", "settings", "--type", "json", "-p", r#"[{"op":"test","path":"/data/color","value":"blue"}]"#], None)?;
    assert_contains("failed json patch test", &err, "testing value /data/color failed")?;
    Ok(())
}

fn replace_scale_conflict(s: &Apiserver) -> anyhow::Result<()> {
    // replace with the current resourceVersion works; with a stale one it is a 409.
    let current = s.ok(&["get", "cm", "settings", "-o", "json"])?;
    let mut obj: serde_json::Value = serde_json::from_str(&current)?;
    obj["data"]["color"] = serde_json::json!("purple");
    let fresh = serde_json::to_string(&obj)?;
    assert_eq_text("replace", &s.ok_with(&["replace", "-f", "-"], Some(&fresh))?, "configmap/settings replaced\n")?;
    let err = s.fails(&["replace", "-f", "-"], Some(&fresh))?;
    assert_contains(
        "stale replace",
        &err,
        "Error from server (Conflict): error when replacing \"STDIN\": Operation cannot be fulfilled on configmaps \"settings\": the object has been modified; please apply your changes to the latest version and try again",
    )?;
    // replace without a resourceVersion is unconditional.
    let file = s.file("deploy-replace.yaml", &DEPLOYMENT.replace("replicas: 2", "replicas: 4"))?;
    assert_eq_text("replace deploy", &s.ok(&["replace", "-f", &file])?, "deployment.apps/web replaced\n")?;
    assert_eq_text("scale", &s.ok(&["scale", "deploy", "web", "--replicas=3"])?, "deployment.apps/web scaled\n")?;
    assert_eq_text("scaled", &s.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])?, "3")?;
    let scale: serde_json::Value = serde_json::from_str(&s.ok(&["get", "--raw", "/apis/apps/v1/namespaces/default/deployments/web/scale"])?)?;
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "app=web");
    Ok(())
}

fn errors(s: &Apiserver) -> anyhow::Result<()> {
    let err = s.fails(&["get", "pod", "nope"], None)?;
    assert_eq_text("404", &err, "Error from server (NotFound): pods \"nope\" not found\n")?;
    let err = s.fails(&["get", "deploy", "nope"], None)?;
    assert_eq_text("404 group", &err, "Error from server (NotFound): deployments.apps \"nope\" not found\n")?;
    let err = s.fails(&["create", "-n", "missing", "-f", "-"], Some(CONFIGMAP))?;
    assert_contains("namespace not found", &err, "namespaces \"missing\" not found")?;
    let err = s.fails(&["create", "-f", "-"], Some(&POD.replace("name: web-1", "name: Bad_Name")))?;
    assert_contains("invalid name", &err, "The Pod \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain")?;
    let err = s.fails(&["create", "-f", "-"], Some(&POD.replace("web-1", "strict").replace("    image: nginx:1.25\n", "    image: nginx:1.25\n    colour: red\n")))?;
    assert_contains("strict", &err, "strict decoding error: unknown field \"spec.containers[0].colour\"")?;
    // Bad credentials → 401. (With none at all kubectl would prompt for a password.)
    let ca_only = s.dir.path().join("anonymous.kubeconfig");
    let kc = std::fs::read_to_string(s.kubeconfig())?;
    let anonymous: String = kc.lines().filter(|l| !l.contains("client-certificate-data") && !l.contains("client-key-data")).map(|l| format!("{l}\n")).collect();
    let anonymous = anonymous.replace("  user:\n", "  user: {}\n");
    std::fs::write(&ca_only, anonymous)?;
    let mut cmd = s.command(&ca_only);
    cmd.args(["--token", "not-the-token", "get", "ns"]);
    let out = run_bounded(cmd, None, KUBECTL_TIMEOUT)?;
    assert_ne!(out.code, Some(0));
    assert_eq_text("401", &out.stderr, "error: You must be logged in to the server (Unauthorized)\n")?;
    // The admin token works instead of the certificate.
    let token = std::fs::read_to_string(s.dir.path().join("data/pki/admin.token"))?;
    let mut cmd = s.command(&ca_only);
    cmd.args(["--token", token.trim(), "get", "ns", "default", "-o", "name"]);
    let out = run_bounded(cmd, None, KUBECTL_TIMEOUT)?;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq_text("token auth", &out.stdout, "namespace/default\n")?;
    Ok(())
}

fn watch(s: &Apiserver) -> anyhow::Result<()> {
    let out_path = s.dir.path().join("watch.out");
    let out = std::fs::File::create(&out_path)?;
    let mut cmd = s.command(&s.kubeconfig());
    cmd.args(["get", "pods", "-w", "-o", "name", "-l", "app=watched"]).stdin(Stdio::null()).stdout(out).stderr(Stdio::null());
    let mut child = cmd.spawn()?;
    let result = (|| -> anyhow::Result<()> {
        // The watch starts after kubectl's initial (empty) list; create until it is seen.
        let pod = POD.replace("web-1", "watched").replace("app: web", "app: watched");
        s.ok_with(&["create", "-f", "-"], Some(&pod))?;
        let deadline = Instant::now() + WATCH_EVENT_TIMEOUT;
        loop {
            let seen = std::fs::read_to_string(&out_path)?;
            if seen.contains("pod/watched") {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("kubectl get -w never showed pod/watched; output: {seen:?}");
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    })();
    let _ = child.kill();
    let _ = child.wait();
    result?;
    // A raw watch from a resourceVersion sees exactly the later events.
    let rv = s.ok(&["get", "pod", "watched", "-o", "jsonpath={.metadata.resourceVersion}"])?;
    s.ok(&["label", "pod", "watched", "step=2"])?;
    let raw = s.ok(&["get", "--raw", &format!("/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}&timeoutSeconds=1")])?;
    let events: Vec<serde_json::Value> = raw.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(events.len(), 1, "{raw}");
    assert_eq!(events[0]["type"], "MODIFIED");
    assert_eq!(events[0]["object"]["metadata"]["labels"]["step"], "2");
    // Streaming list: initial ADDED events, then a BOOKMARK marking their end.
    let raw = s.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&labelSelector=app%3Dwatched&timeoutSeconds=1",
    ])?;
    let events: Vec<serde_json::Value> = raw.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(events.len(), 2, "{raw}");
    assert_eq!((events[0]["type"].as_str(), events[0]["object"]["metadata"]["name"].as_str()), (Some("ADDED"), Some("watched")));
    assert_eq!(events[1]["type"], "BOOKMARK");
    assert_eq!(events[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
    Ok(())
}

fn resource_versions(s: &Apiserver) -> anyhow::Result<()> {
    let old = s.ok(&["get", "cm", "settings", "-o", "jsonpath={.metadata.resourceVersion}"])?;
    // An exact list at a revision that still exists.
    let exact: serde_json::Value = serde_json::from_str(&s.ok(&["get", "--raw", &format!("/api/v1/namespaces/default/configmaps?resourceVersion={old}&resourceVersionMatch=Exact")])?)?;
    assert_eq!(exact["metadata"]["resourceVersion"], old.as_str());
    s.ok(&["label", "cm", "settings", "rv=1"])?;
    let newer = s.ok(&["get", "cm", "settings", "-o", "jsonpath={.metadata.resourceVersion}"])?;
    assert!(newer.parse::<i64>()? > old.parse::<i64>()?);
    // Compact the store past `old`: reads and watches from it are 410 Expired.
    let out = s.store.etcdctl(&["compact", &newer], None)?;
    assert_eq!(out.code, Some(0), "etcdctl compact: {}", out.stderr);
    let err = s.fails(&["get", "--raw", &format!("/api/v1/namespaces/default/configmaps?resourceVersion={old}&resourceVersionMatch=Exact")], None)?;
    assert_eq_text("410 list", &err, "Error from server (Expired): The resourceVersion for the provided list is too old.\n")?;
    let raw = s.ok(&["get", "--raw", &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={old}&timeoutSeconds=5")])?;
    let event: serde_json::Value = serde_json::from_str(raw.lines().next().unwrap_or("null"))?;
    assert_eq!(event["type"], "ERROR", "{raw}");
    assert_eq!(event["object"]["code"], 410);
    assert_eq!(event["object"]["reason"], "Expired");
    // A resourceVersion from the future.
    let future = newer.parse::<i64>()? + 1000;
    let err = s.fails(&["get", "--raw", &format!("/api/v1/namespaces/default/configmaps?resourceVersion={future}")], None)?;
    assert_contains("504", &err, &format!("Too large resource version: {future}"))?;
    // Health and metrics.
    assert_eq_text("livez", &s.ok(&["get", "--raw", "/livez"])?, "ok")?;
    let metrics = s.ok(&["get", "--raw", "/metrics"])?;
    assert!(
        metrics.lines().any(|l| l.starts_with("apiserver_request_total{") && l.contains("code=\"201\"") && l.contains("resource=\"pods\"") && l.contains("verb=\"POST\"")),
        "no apiserver_request_total for pod creates"
    );
    assert_contains("metrics", &metrics, "apiserver_request_duration_seconds_bucket{")?;
    // The watches so far: kubectl's `get -w`, the raw one from a recent revision and the
    // streaming list came from the shared watch cache; the one from a compacted revision
    // from etcd (its 410).
    assert_contains("watch cache used", &metrics, "skiff_apiserver_watch_source_total{source=\"cache\"} 3")?;
    assert_contains("etcd fallback used", &metrics, "skiff_apiserver_watch_source_total{source=\"etcd\"} 1")?;
    Ok(())
}

const CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
";

fn custom_resources(s: &Apiserver) -> anyhow::Result<()> {
    assert_eq_text("create crd", &s.ok_with(&["create", "-f", "-"], Some(CRD))?, "customresourcedefinition.apiextensions.k8s.io/widgets.example.com created\n")?;
    let widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3}\n";
    assert_eq_text("create cr", &s.ok_with(&["create", "-f", "-"], Some(widget))?, "widget.example.com/w1 created\n")?;
    assert_eq_text("get cr by short name", &s.ok(&["get", "wd", "-o", "name"])?, "widget.example.com/w1\n")?;
    assert_eq_text("patch cr", &s.ok(&["patch", "widget", "w1", "--type", "merge", "-p", r#"{"spec":{"size":4}}"#])?, "widget.example.com/w1 patched\n")?;
    assert_eq_text("cr value", &s.ok(&["get", "widgets.example.com", "w1", "-o", "jsonpath={.spec.size} {.metadata.generation}"])?, "4 2")?;
    let err = s.fails(&["patch", "widget", "w1", "--type", "strategic", "-p", r#"{"spec":{"size":5}}"#], None)?;
    assert_eq_text(
        "smp on cr",
        &err,
        "error: application/strategic-merge-patch+json is not supported by example.com/v1, Kind=Widget: the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml\n",
    )?;
    assert_eq_text("delete crd", &s.ok(&["delete", "crd", "widgets.example.com"])?, "customresourcedefinition.apiextensions.k8s.io \"widgets.example.com\" deleted\n")?;
    let err = s.fails(&["get", "--raw", "/apis/example.com/v1/namespaces/default/widgets"], None)?;
    assert_contains("cr gone with its crd", &err, "NotFound")?;
    Ok(())
}

/// `kubectl describe` (the object, plus the events kubectl looks up for it) and `kubectl
/// diff` (a server-side dry-run patch; exit 0 without differences, 1 with them, and the
/// live object untouched).
fn describe_and_diff(s: &Apiserver) -> anyhow::Result<()> {
    let out = s.ok(&["describe", "deployment", "api"])?;
    for want in ["Name:                   api", "Namespace:              default", "Selector:               app=web", "Replicas:", "StrategyType:           RollingUpdate", "Pod Template:"] {
        assert_contains("describe deployment", &out, want)?;
    }
    let out = s.ok(&["describe", "namespace", "team-a"])?;
    assert_contains("describe namespace", &out, "Status:       Active")?;
    let cm = CONFIGMAP.replace("name: settings", "name: diffme");
    s.ok_with(&["create", "-f", "-"], Some(&cm))?;
    let out = s.ok(&["describe", "configmap", "diffme"])?;
    assert_contains("describe configmap", &out, "color:\n----\nblue")?;
    let same = s.kubectl_with(&["diff", "-f", "-"], Some(&cm))?;
    assert_eq!((same.code, same.stdout.as_str()), (Some(0), ""), "diff of an unchanged object: {}", same.stderr);
    let changed = s.kubectl_with(&["diff", "-f", "-"], Some(&cm.replace("color: blue", "color: green")))?;
    assert_eq!(changed.code, Some(1), "diff of a changed object exits 1: {}", changed.stderr);
    assert_contains("diff shows the old value", &changed.stdout, "-  color: blue")?;
    assert_contains("diff shows the new value", &changed.stdout, "+  color: green")?;
    assert_eq_text("diff is a dry run", &s.ok(&["get", "cm", "diffme", "-o", "jsonpath={.data.color}"])?, "blue")?;
    Ok(())
}

fn delete(s: &Apiserver) -> anyhow::Result<()> {
    assert_eq_text("delete", &s.ok(&["delete", "pod", "web-5"])?, "pod \"web-5\" deleted\n")?;
    assert_eq_text("delete grace", &s.ok(&["delete", "pod", "web-4", "--grace-period=0", "--force"])?.replace("Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely.\n", ""), "pod \"web-4\" force deleted\n")?;
    assert_eq_text("delete cascade", &s.ok(&["delete", "deploy", "api", "--cascade=orphan"])?, "deployment.apps \"api\" deleted\n")?;
    // The Service's address is released: it can be taken explicitly again.
    let ip = s.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"])?;
    s.ok(&["delete", "svc", "web"])?;
    let again = SERVICE.replace("  selector:", &format!("  clusterIP: {ip}\n  selector:"));
    assert_eq_text("reuse released IP", &s.ok_with(&["create", "-f", "-"], Some(&again))?, "service/web created\n")?;
    let taken = SERVICE.replace("name: web", "name: other").replace("  selector:", &format!("  clusterIP: {ip}\n  selector:"));
    let err = s.fails(&["create", "-f", "-"], Some(&taken))?;
    assert_contains("IP in use", &err, "Error from server")?;
    // Finalizers hold a deleted object (with deletionTimestamp) until they are removed.
    let held = CONFIGMAP.replace("name: settings", "name: held\n  finalizers: [example.com/hold]");
    s.ok_with(&["create", "-f", "-"], Some(&held))?;
    assert_eq_text("delete held", &s.ok(&["delete", "cm", "held", "--wait=false"])?, "configmap \"held\" deleted\n")?;
    let ts = s.ok(&["get", "cm", "held", "-o", "jsonpath={.metadata.deletionTimestamp}"])?;
    assert!(!ts.is_empty(), "deletionTimestamp must be set while finalizers remain");
    s.ok(&["patch", "cm", "held", "--type", "merge", "-p", r#"{"metadata":{"finalizers":null}}"#])?;
    let err = s.fails(&["get", "cm", "held"], None)?;
    assert_contains("finalized", &err, "configmaps \"held\" not found")?;
    // Server-side dry run: validated and answered, not stored.
    let dry = CONFIGMAP.replace("name: settings", "name: dry");
    assert_eq_text("dry run", &s.ok_with(&["create", "--dry-run=server", "-f", "-"], Some(&dry))?, "configmap/dry created (server dry run)\n")?;
    assert_contains("dry run not stored", &s.fails(&["get", "cm", "dry"], None)?, "not found")?;
    // Label-selected delete.
    assert_eq_text("delete -l", &s.ok(&["delete", "pods", "-l", "tier=frontend"])?, "pod \"watched\" deleted\npod \"web-1\" deleted\npod \"web-3\" deleted\n")?;
    // Namespace: contents go with it.
    s.ok_with(&["create", "-n", "team-a", "-f", "-"], Some(CONFIGMAP))?;
    assert_eq_text("delete ns", &s.ok(&["delete", "ns", "team-a"])?, "namespace \"team-a\" deleted\n")?;
    let err = s.fails(&["get", "ns", "team-a"], None)?;
    assert_contains("namespace gone", &err, "namespaces \"team-a\" not found")?;
    let keys = s.ok(&["get", "cm", "-n", "team-a", "-o", "name"])?;
    assert_eq_text("namespace contents gone", &keys, "")?;
    Ok(())
}

/// One named step of the scenario.
type Step = (&'static str, fn(&Apiserver) -> anyhow::Result<()>);

fn scenario(kind: Server) -> anyhow::Result<()> {
    let s = Apiserver::start(kind)?;
    let steps: [Step; 12] = [
        ("discovery", discovery),
        ("bootstrap", bootstrap),
        ("create_and_get", create_and_get),
        ("selectors_and_paging", selectors_and_paging),
        ("apply_label_annotate_patch", apply_label_annotate_patch),
        ("replace_scale_conflict", replace_scale_conflict),
        ("errors", errors),
        ("watch", watch),
        ("resource_versions", resource_versions),
        ("custom_resources", custom_resources),
        ("describe_and_diff", describe_and_diff),
        ("delete", delete),
    ];
    for (name, step) in steps {
        step(&s).with_context(|| format!("step {name} on {}", kind.name()))?;
    }
    Ok(())
}

#[test]
fn apiserver_kubectl_scenario_on_skiff_store() -> anyhow::Result<()> {
    scenario(Server::Skiff)
}

#[test]
fn apiserver_kubectl_scenario_on_etcd() -> anyhow::Result<()> {
    scenario(Server::Etcd)
}

/// `skiff up`: a store member in-process and the API server on it; the kubeconfig it
/// writes works, and a restart reuses the PKI and the data.
#[test]
fn apiserver_skiff_up_runs_store_and_apiserver() -> anyhow::Result<()> {
    must_find_binary("kubectl")?;
    let dir = tempfile::Builder::new().prefix("skiff-up-").tempdir()?;
    let data = dir.path().join("data");
    let (api_port, client_port, peer_port) = (free_port()?, free_port()?, free_port()?);
    let start = || -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.path().join("up.log"))?;
        Ok(Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("up")
            .arg("--data-dir")
            .arg(&data)
            .arg(format!("--secure-port={api_port}"))
            .arg(format!("--store-client-url=http://127.0.0.1:{client_port}"))
            .arg(format!("--store-peer-url=http://127.0.0.1:{peer_port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?)
    };
    let kubectl = |args: &[&str]| -> anyhow::Result<Output> {
        let mut cmd = Command::new("kubectl");
        cmd.arg(format!("--kubeconfig={}", data.join("kubeconfig").display()))
            .arg(format!("--cache-dir={}", dir.path().join("cache").display()))
            .args(args);
        run_bounded(cmd, None, KUBECTL_TIMEOUT)
    };
    let wait_for = |want: &str, args: &[&str]| -> anyhow::Result<()> {
        let deadline = Instant::now() + APISERVER_READY_TIMEOUT;
        loop {
            if data.join("kubeconfig").is_file() {
                let out = kubectl(args)?;
                if out.code == Some(0) && out.stdout == want {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("skiff up never answered {want:?}; log:\n{}", std::fs::read_to_string(dir.path().join("up.log")).unwrap_or_default());
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    };
    let mut child = start()?;
    let first = wait_for("namespace/default\n", &["get", "ns", "default", "-o", "name"])
        .and_then(|_| kubectl(&["create", "configmap", "kept", "--dry-run=client", "-o", "json"]))
        .and_then(|out| {
            let mut cmd = Command::new("kubectl");
            cmd.arg(format!("--kubeconfig={}", data.join("kubeconfig").display())).args(["create", "-f", "-"]);
            run_bounded(cmd, Some(&out.stdout), KUBECTL_TIMEOUT)
        });
    let _ = child.kill();
    let _ = child.wait();
    let created = first?;
    assert_eq!(created.code, Some(0), "{}", created.stderr);
    let ca = std::fs::read_to_string(data.join("pki/ca.crt"))?;
    let mut child = start()?;
    let second = wait_for("configmap/kept\n", &["get", "cm", "kept", "-o", "name"]);
    let _ = child.kill();
    let _ = child.wait();
    second?;
    assert_eq!(std::fs::read_to_string(data.join("pki/ca.crt"))?, ca, "the CA is reused across restarts");
    Ok(())
}
