//! Aggregated discovery, OpenAPI and per-kind validation, driven by real kubectl 1.32:
//! what kubectl fetches (`-v=8` shows every request and its headers), what it prints, and
//! kube's exact error messages for invalid objects and immutable fields.

use std::collections::BTreeSet;

use anyhow::{bail, Context};
use serde_json::Value;

use crate::apiserver::{assert_contains, assert_eq_text, Apiserver, DEPLOYMENT, POD};
use crate::harness::Server;

const AGGREGATED_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

const CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget, shortNames: [gd], categories: [all]}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
";

/// The paths of the requests a `kubectl -v=6` (or higher) run logged, in order, without
/// query strings: client-go logs every request's URL, whatever its log format.
fn requested_paths(stderr: &str, port: u16) -> Vec<String> {
    let base = format!("https://127.0.0.1:{port}");
    let mut out = Vec::new();
    for line in stderr.lines().filter(|l| l.contains("GET")) {
        let Some(at) = line.find(&base) else { continue };
        let rest = &line[at + base.len()..];
        let end = rest.find(['?', '"', ' ']).unwrap_or(rest.len());
        out.push(rest[..end].to_string());
    }
    out
}

/// kubectl with a discovery cache of its own (so it must fetch discovery), at `-v=8`.
fn kubectl_fresh_cache(s: &Apiserver, cache: &str, args: &[&str]) -> anyhow::Result<crate::harness::Output> {
    let mut all = vec!["-v=8".to_string(), format!("--cache-dir={cache}")];
    all.extend(args.iter().map(|a| a.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    s.kubectl(&refs)
}

fn aggregated_discovery(s: &Apiserver) -> anyhow::Result<()> {
    // A cache directory of this run's own, beside the server's files.
    let marker = s.file("discovery-cache-marker", "")?;
    let cache = std::path::Path::new(&marker).with_file_name("discovery-cache").display().to_string();
    let out = kubectl_fresh_cache(s, &cache, &["api-resources", "--no-headers", "-o", "name"])?;
    if out.code != Some(0) {
        bail!("kubectl api-resources failed: {}\n{}", out.stderr, s.log());
    }
    // kubectl asked for aggregated discovery first and got it (the Content-Type it
    // recognises), so it fetched /api and /apis and nothing per group-version.
    assert_contains("kubectl's Accept", &out.stderr, &format!("{AGGREGATED_V2},application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"))?;
    let content_types: Vec<&str> = out.stderr.lines().filter(|l| l.contains("Content-Type") && l.contains("apidiscovery")).collect();
    if content_types.len() < 2 || !content_types.iter().all(|l| l.contains(AGGREGATED_V2)) {
        bail!("expected two aggregated v2 responses, got Content-Type lines {content_types:?}\n{}", out.stderr);
    }
    let paths = requested_paths(&out.stderr, s.port);
    let fetched: BTreeSet<&str> = paths.iter().map(String::as_str).collect();
    if fetched != BTreeSet::from(["/api", "/apis"]) {
        bail!("kubectl fetched {paths:?}; aggregated discovery needs only /api and /apis\n{}", out.stderr);
    }
    let names: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(names.len(), 31, "{}", out.stdout);
    for want in ["pods", "namespaces", "deployments.apps", "cronjobs.batch", "leases.coordination.k8s.io", "customresourcedefinitions.apiextensions.k8s.io"] {
        if !names.contains(&want) {
            bail!("api-resources lacks {want}: {names:?}");
        }
    }
    let apps = s.ok(&["api-resources", "--api-group=apps", "--no-headers"])?;
    let deploy: Vec<&str> = apps.lines().find(|l| l.starts_with("deployments")).unwrap_or_default().split_whitespace().collect();
    assert_eq!(deploy, ["deployments", "deploy", "apps/v1", "true", "Deployment"]);
    let wide = s.ok(&["api-resources", "--no-headers", "-o", "wide", "--api-group="])?;
    let pods: Vec<&str> = wide.lines().find(|l| l.starts_with("pods ")).unwrap_or_default().split_whitespace().collect();
    assert_eq!(pods, ["pods", "po", "v1", "true", "Pod", "create,delete,deletecollection,get,list,patch,update,watch", "all"]);
    // Custom resources appear in aggregated discovery as soon as their CRD exists.
    s.ok_with(&["create", "-f", "-"], Some(CRD))?;
    let cache2 = format!("{cache}-2");
    let out = kubectl_fresh_cache(s, &cache2, &["api-resources", "--api-group=example.com", "--no-headers"])?;
    let gadget: Vec<&str> = out.stdout.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(gadget, ["gadgets", "gd", "example.com/v1", "true", "Gadget"], "{}", out.stderr);
    let fetched: BTreeSet<String> = requested_paths(&out.stderr, s.port).into_iter().collect();
    assert_eq!(fetched, BTreeSet::from(["/api".to_string(), "/apis".to_string()]));
    assert_eq_text("get by category", &s.ok(&["get", "all", "-o", "name"])?, "service/kubernetes\n")?;
    // Plain JSON clients still get the legacy documents.
    let legacy: Value = serde_json::from_str(&s.ok(&["get", "--raw", "/apis"])?)?;
    assert_eq!(legacy["kind"], "APIGroupList");
    assert!(legacy["groups"].as_array().is_some_and(|g| g.iter().any(|g| g["name"] == "example.com")));
    Ok(())
}

fn openapi(s: &Apiserver) -> anyhow::Result<()> {
    // kubectl 1.32 explains from the OpenAPI v3 document of the kind's group-version.
    let out = s.kubectl(&["-v=6", "explain", "deployment.spec.selector"])?;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_contains("explain", &out.stdout, "FIELD: selector <LabelSelector>")?;
    assert_contains("explain", &out.stdout, "matchLabels\t<map[string]string>")?;
    let paths = requested_paths(&out.stderr, s.port);
    assert!(paths.iter().any(|p| p == "/openapi/v3/apis/apps/v1"), "{paths:?}");
    // The v2 form kubectl can be asked for reads /openapi/v2 in its protobuf encoding.
    let out = s.kubectl(&["-v=6", "explain", "deployment.spec.selector", "--output=plaintext-openapiv2"])?;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_contains("explain v2", &out.stdout, "RESOURCE: selector <Object>")?;
    assert_contains("explain v2", &out.stdout, "matchLabels\t<map[string]string>")?;
    assert!(requested_paths(&out.stderr, s.port).iter().any(|p| p == "/openapi/v2"), "{}", out.stderr);
    let v2: Value = serde_json::from_str(&s.ok(&["get", "--raw", "/openapi/v2"])?).context("openapi v2 is JSON")?;
    assert_eq!(v2["swagger"], "2.0");
    let deploy = &v2["definitions"]["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(deploy["x-kubernetes-group-version-kind"][0]["kind"], "Deployment");
    assert_eq!(deploy["properties"]["spec"]["$ref"], "#/definitions/io.k8s.api.apps.v1.DeploymentSpec");
    assert!(v2["definitions"]["com.example.v1.Gadget"].is_object(), "CRD schemas are in v2 too");
    let post = &v2["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"];
    assert_eq!(post["x-kubernetes-action"], "post");
    // --validate=strict: kubectl checks the server supports fieldValidation and sends
    // Strict; the unknown field is refused with kube's strict decoding error.
    let typo = DEPLOYMENT.replace("name: web\n", "name: typo\n").replace("  replicas: 2\n", "  replicas: 2\n  replicass: 3\n");
    let out = s.kubectl_with(&["-v=6", "apply", "--validate=strict", "-f", "-"], Some(&typo))?;
    assert_ne!(out.code, Some(0), "{}", out.stdout);
    assert_contains("strict apply", &out.stderr, "strict decoding error: unknown field \"spec.replicass\"")?;
    assert_contains("strict apply sent Strict", &out.stderr, "fieldValidation=Strict")?;
    let paths = requested_paths(&out.stderr, s.port);
    assert!(!paths.iter().any(|p| p == "/openapi/v2"), "kubectl needed no OpenAPI v2: {paths:?}");
    assert_contains("not created", &s.fails(&["get", "deploy", "typo"], None)?, "not found")?;
    Ok(())
}

fn validation(s: &Apiserver) -> anyhow::Result<()> {
    s.ok_with(&["apply", "-f", "-"], Some(DEPLOYMENT))?;
    // A changed selector (with matching template labels) is refused as immutable.
    let moved = DEPLOYMENT.replace("app: web", "app: web2");
    let err = s.fails(&["apply", "-f", "-"], Some(&moved))?;
    assert_eq_text(
        "immutable selector",
        &err,
        "The Deployment \"web\" is invalid: spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable\n",
    )?;
    // Replicas and images may change.
    let scaled = DEPLOYMENT.replace("replicas: 2", "replicas: 3").replace("nginx:1.25", "nginx:1.26");
    assert_eq_text("allowed update", &s.ok_with(&["apply", "-f", "-"], Some(&scaled))?, "deployment.apps/web configured\n")?;
    // A selector that does not match the template.
    let mismatch = DEPLOYMENT.replace("name: web\n", "name: other\n").replace("metadata: {labels: {app: web}}", "metadata: {labels: {app: db}}");
    let err = s.fails(&["create", "-f", "-"], Some(&mismatch))?;
    assert_eq_text(
        "selector mismatch",
        &err,
        "The Deployment \"other\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"db\"}: `selector` does not match template `labels`\n",
    )?;
    // Pods: containers required, then the spec is immutable except images.
    let empty = "apiVersion: v1\nkind: Pod\nmetadata: {name: empty}\nspec:\n  containers: []\n";
    let err = s.fails(&["create", "-f", "-"], Some(empty))?;
    assert_eq_text("no containers", &err, "The Pod \"empty\" is invalid: spec.containers: Required value\n")?;
    let bad_port = POD.replace("web-1", "bad-port").replace("    image: nginx:1.25\n", "    image: nginx:1.25\n    ports: [{containerPort: 70000}]\n");
    let err = s.fails(&["create", "-f", "-"], Some(&bad_port))?;
    assert_eq_text("port range", &err, "The Pod \"bad-port\" is invalid: spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive\n")?;
    s.ok_with(&["apply", "-f", "-"], Some(POD))?;
    let new_image = POD.replace("nginx:1.25", "nginx:1.26");
    assert_eq_text("pod image update", &s.ok_with(&["apply", "-f", "-"], Some(&new_image))?, "pod/web-1 configured\n")?;
    let never = new_image.replace("  containers:\n", "  restartPolicy: Never\n  containers:\n");
    let err = s.fails(&["apply", "-f", "-"], Some(&never))?;
    assert_contains("pod spec immutable", &err, "The Pod \"web-1\" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`")?;
    let job = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: pi}\nspec:\n  template:\n    spec:\n      containers: [{name: pi, image: perl}]\n";
    let err = s.fails(&["create", "-f", "-"], Some(job))?;
    assert_eq_text("job restartPolicy", &err, "The Job \"pi\" is invalid: spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"\n")?;
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: team.a}\n";
    let err = s.fails(&["create", "-f", "-"], Some(ns))?;
    assert_eq_text("namespace name", &err, "The Namespace \"team.a\" is invalid: metadata.name: Invalid value: \"team.a\": must not contain dots\n")?;
    // Immutable ConfigMaps.
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: frozen}\nimmutable: true\ndata: {a: \"1\"}\n";
    s.ok_with(&["create", "-f", "-"], Some(cm))?;
    let err = s.fails(&["apply", "-f", "-"], Some(&cm.replace("\"1\"", "\"2\"")))?;
    assert_contains("immutable configmap", &err, "The ConfigMap \"frozen\" is invalid: data: Forbidden: field is immutable when `immutable` is set")?;
    Ok(())
}

#[test]
fn apiserver_discovery_openapi_and_validation_with_kubectl() -> anyhow::Result<()> {
    let s = Apiserver::start(Server::Skiff)?;
    aggregated_discovery(&s).context("aggregated discovery")?;
    openapi(&s).context("openapi")?;
    validation(&s).context("validation")?;
    Ok(())
}
