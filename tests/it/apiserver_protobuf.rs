//! kubectl's typed commands (`kubectl create namespace|configmap|secret|deployment|...`)
//! send their bodies as Kubernetes protobuf. Each object is created twice: once that way,
//! and once from kubectl's own JSON for the same command (`--dry-run=client -o json |
//! kubectl create -f -`), in another namespace; the two stored objects must be the same
//! apart from what the server generates. Then the fields that protobuf's zeros and special
//! types could get wrong are checked one by one, and malformed or custom-resource protobuf
//! bodies must be refused with a Status.

use std::path::Path;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::apiserver::Apiserver;
use crate::harness::{run_bounded, Server};

/// Bound on one curl run.
const CURL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// The namespaces the two copies of every object go to.
const NS_PROTOBUF: &str = "via-protobuf";
const NS_JSON: &str = "via-json";

/// `kubectl create` arguments (after `create`, before `-n`) of every object compared.
const OBJECTS: &[(&str, &[&str])] = &[
    ("configmap/cm", &["configmap", "cm", "--from-literal=color=blue", "--from-file=blob=@BLOB@"]),
    ("secret/s", &["secret", "generic", "s", "--from-literal=user=admin"]),
    ("deployment/d", &["deployment", "d", "--image=nginx", "--replicas=0", "--port=80"]),
    ("service/s", &["service", "clusterip", "s", "--tcp=80:8080"]),
    ("job/j", &["job", "j", "--image=busybox", "--", "echo", "hi"]),
    ("cronjob/cj", &["cronjob", "cj", "--image=busybox", "--schedule=*/5 * * * *"]),
    ("serviceaccount/sa", &["serviceaccount", "sa"]),
    ("role/r", &["role", "r", "--verb=get,list", "--resource=pods,configmaps"]),
    ("rolebinding/rb", &["rolebinding", "rb", "--role=r", "--user=bob"]),
    ("poddisruptionbudget/pdb", &["poddisruptionbudget", "pdb", "--selector=app=d", "--min-available=1"]),
    ("resourcequota/q", &["quota", "q", "--hard=pods=10,cpu=1500m,memory=1Gi"]),
    ("ingress/ing", &["ingress", "ing", "--rule=example.com/api*=s:80"]),
];

#[test]
fn apiserver_kubectl_protobuf_bodies_on_skiff_store() -> anyhow::Result<()> {
    let s = Apiserver::start(Server::Skiff)?;
    let blob_dir = tempfile::tempdir()?;
    let blob = blob_dir.path().join("blob");
    // Not UTF-8: kubectl puts it in binaryData.
    std::fs::write(&blob, [0xff, 0x00, 0x01, 0xfe])?;

    // kubectl really sends protobuf, and accepts the JSON answer.
    let out = s.kubectl(&["create", "namespace", NS_PROTOBUF, "-v=8"])?;
    if out.code != Some(0) {
        bail!("kubectl create namespace failed: {}", out.stderr);
    }
    if !out.stderr.contains("Content-Type: application/vnd.kubernetes.protobuf") {
        bail!("kubectl did not send protobuf:\n{}", out.stderr);
    }
    assert_eq!(out.stdout, format!("namespace/{NS_PROTOBUF} created\n"));
    s.ok(&["create", "namespace", NS_JSON])?;
    let ns = get(&s, &["namespace", NS_PROTOBUF])?;
    assert_eq!(ns["metadata"]["name"], NS_PROTOBUF);
    assert_eq!(ns["status"]["phase"], "Active");
    for key in ["generateName", "namespace", "selfLink", "deletionTimestamp"] {
        assert!(ns["metadata"].get(key).is_none(), "namespace metadata has {key}: {ns}");
    }

    for (name, args) in OBJECTS {
        let args: Vec<String> = args.iter().map(|a| a.replace("@BLOB@", &blob.display().to_string())).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // Flags first: the job's command follows `--`.
        let mut via_protobuf = vec!["create", "-n", NS_PROTOBUF];
        via_protobuf.extend(&args);
        let created = s.ok(&via_protobuf).with_context(|| format!("creating {name} from protobuf"))?;
        assert!(created.ends_with(" created\n"), "{name}: {created}");
        let mut dry = vec!["create", "-n", NS_JSON, "--dry-run=client", "-o", "json"];
        dry.extend(&args);
        let json_body = s.ok(&dry)?;
        s.ok_with(&["create", "-f", "-", "-n", NS_JSON], Some(&json_body)).with_context(|| format!("creating {name} from JSON"))?;
        let a = normalized(get(&s, &[name, "-n", NS_PROTOBUF])?);
        let b = normalized(get(&s, &[name, "-n", NS_JSON])?);
        if a != b {
            bail!("{name} differs:\nfrom protobuf: {a:#}\nfrom JSON: {b:#}");
        }
    }

    // The fields protobuf could get wrong, one by one.
    let at = |name: &str| get(&s, &[name, "-n", NS_PROTOBUF]);
    let cm = at("configmap/cm")?;
    assert_eq!(cm["data"], json!({"color": "blue"}));
    assert_eq!(cm["binaryData"], json!({"blob": "/wAB/g=="}));
    let secret = at("secret/s")?;
    assert_eq!(secret["data"], json!({"user": "YWRtaW4="}));
    let deploy = at("deployment/d")?;
    // A pointer field's zero is a value: not dropped, not defaulted to 1.
    assert_eq!(deploy["spec"]["replicas"], 0);
    assert_eq!(deploy["spec"]["selector"], json!({"matchLabels": {"app": "d"}}));
    let container = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["name"], "nginx");
    assert_eq!(container["image"], "nginx");
    assert_eq!(container["ports"], json!([{"containerPort": 80, "protocol": "TCP"}]));
    for key in ["stdin", "tty", "workingDir"] {
        assert!(container.get(key).is_none(), "container has Go's zero {key}: {container}");
    }
    let svc = at("service/s")?;
    assert_eq!(svc["spec"]["ports"], json!([{"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080}]));
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    let job = at("job/j")?;
    assert_eq!(job["spec"]["template"]["spec"]["containers"][0]["command"], json!(["echo", "hi"]));
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    let cj = at("cronjob/cj")?;
    assert_eq!(cj["spec"]["schedule"], "*/5 * * * *");
    let role = at("role/r")?;
    assert_eq!(role["rules"], json!([{"apiGroups": [""], "resources": ["pods", "configmaps"], "verbs": ["get", "list"]}]));
    let rb = at("rolebinding/rb")?;
    assert_eq!(rb["roleRef"], json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}));
    assert_eq!(rb["subjects"], json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}]));
    let pdb = at("poddisruptionbudget/pdb")?;
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    let quota = at("resourcequota/q")?;
    assert_eq!(quota["spec"]["hard"], json!({"pods": "10", "cpu": "1500m", "memory": "1Gi"}));
    let ing = at("ingress/ing")?;
    assert_eq!(ing["spec"]["rules"][0]["host"], "example.com");
    assert_eq!(ing["spec"]["rules"][0]["http"]["paths"][0]["pathType"], "Prefix");
    assert_eq!(ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"], json!({"name": "s", "port": {"number": 80}}));

    refusals(&s)
}

/// `kubectl get -o json`.
fn get(s: &Apiserver, what: &[&str]) -> anyhow::Result<Value> {
    let mut args = vec!["get"];
    args.extend(what);
    args.extend(["-o", "json"]);
    Ok(serde_json::from_str(&s.ok(&args)?)?)
}

/// Drops what the server generates per object (and the namespace each copy is in), and
/// nulls: kubectl's JSON writes a zero time as `creationTimestamp: null`, which Go decodes
/// exactly as an absent field (the protobuf path leaves it out).
fn normalized(mut v: Value) -> Value {
    drop_nulls(&mut v);
    if let Some(m) = v["metadata"].as_object_mut() {
        for key in ["uid", "resourceVersion", "creationTimestamp", "namespace", "managedFields"] {
            m.remove(key);
        }
    }
    if let Some(spec) = v["spec"].as_object_mut() {
        // Allocated addresses.
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    v
}

fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// A malformed protobuf body is a 400 Status; a custom resource's protobuf body a 415.
fn refusals(s: &Apiserver) -> anyhow::Result<()> {
    let crd = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
";
    s.ok_with(&["create", "-f", "-"], Some(crd))?;
    // A well-formed envelope around an empty object: `k8s\0` + Unknown{typeMeta{v1, Gadget}}.
    let type_meta = [len_field(1, b"example.com/v1"), len_field(2, b"Gadget")].concat();
    let body = [&b"k8s\0"[..], &len_field(1, &type_meta)].concat();
    let (code, status) = post_protobuf(s, "/apis/example.com/v1/namespaces/default/gadgets", &body)?;
    assert_eq!(code, 415, "{status}");
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "UnsupportedMediaType");
    assert_eq!(status["code"], 415);

    // DELETE with a protobuf DeleteOptions (as client-go's typed clients send it): a wrong
    // UID precondition refuses, the right one deletes.
    let uid = s.ok(&["get", "configmap", "cm", "-n", NS_PROTOBUF, "-o", "jsonpath={.metadata.uid}"])?;
    let path = format!("/api/v1/namespaces/{NS_PROTOBUF}/configmaps/cm");
    let (code, status) = send_protobuf(s, "DELETE", &path, &delete_options("v1", "not-the-uid"))?;
    assert_eq!(code, 409, "{status}");
    assert_eq!(status["reason"], "Conflict");
    s.ok(&["get", "configmap", "cm", "-n", NS_PROTOBUF])?;
    let (code, status) = send_protobuf(s, "DELETE", &path, &delete_options("v1", &uid))?;
    assert_eq!(code, 200, "{status}");
    let err = s.fails(&["get", "configmap", "cm", "-n", NS_PROTOBUF], None)?;
    assert!(err.contains("NotFound"), "{err}");

    // Truncated: the raw field claims 100 bytes and has none.
    let (code, status) = post_protobuf(s, "/api/v1/namespaces/default/configmaps", b"k8s\0\x12\x64")?;
    assert_eq!(code, 400, "{status}");
    assert_eq!(status["reason"], "BadRequest");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.contains("could not be decoded as protobuf"), "{status}");
    // Not protobuf at all.
    let (code, status) = post_protobuf(s, "/api/v1/namespaces/default/configmaps", br#"{"kind":"ConfigMap"}"#)?;
    assert_eq!(code, 400, "{status}");
    Ok(())
}

/// A length-delimited protobuf field (short values only).
fn len_field(tag: u8, value: &[u8]) -> Vec<u8> {
    assert!(value.len() < 128 && tag < 16, "one-byte keys and lengths only");
    [&[tag << 3 | 2, value.len() as u8][..], value].concat()
}

/// `k8s\0` + Unknown{typeMeta{apiVersion, DeleteOptions}, raw: DeleteOptions{gracePeriodSeconds: 0,
/// preconditions{uid}}}.
fn delete_options(api_version: &str, uid: &str) -> Vec<u8> {
    let type_meta = [len_field(1, api_version.as_bytes()), len_field(2, b"DeleteOptions")].concat();
    let raw = [&[0x08, 0x00][..], &len_field(2, &len_field(1, uid.as_bytes()))].concat();
    [&b"k8s\0"[..], &len_field(1, &type_meta), &len_field(2, &raw)].concat()
}

fn post_protobuf(s: &Apiserver, path: &str, body: &[u8]) -> anyhow::Result<(u16, Value)> {
    send_protobuf(s, "POST", path, body)
}

/// Sends `body` as protobuf with the admin client certificate; (HTTP code, the JSON answer).
fn send_protobuf(s: &Apiserver, method: &str, path: &str, body: &[u8]) -> anyhow::Result<(u16, Value)> {
    let server = s.ok(&["config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"])?;
    let pki = s.kubeconfig().parent().context("kubeconfig dir")?.join("pki");
    let dir = tempfile::tempdir()?;
    let body_file = dir.path().join("body");
    std::fs::write(&body_file, body)?;
    let mut cmd = std::process::Command::new("curl");
    let file = |p: &Path| p.display().to_string();
    cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method])
        .args(["--cacert", &file(&pki.join("ca.crt")), "--cert", &file(&pki.join("admin.crt")), "--key", &file(&pki.join("admin.key"))])
        .args(["-H", "Content-Type: application/vnd.kubernetes.protobuf", "-H", "Accept: application/json"])
        .arg("--data-binary")
        .arg(format!("@{}", file(&body_file)))
        .arg(format!("{server}{path}"));
    let out = run_bounded(cmd, None, CURL_TIMEOUT)?;
    if out.code != Some(0) {
        bail!("curl failed: {}", out.stderr);
    }
    let (json_text, code) = out.stdout.rsplit_once('\n').context("no status line")?;
    let status: Value = serde_json::from_str(json_text).with_context(|| format!("answer {json_text:?}"))?;
    Ok((code.trim().parse()?, status))
}
