//! Per-kind defaulting on create and update: the subset of kube's `SetDefaults_*` that
//! clients visibly rely on (`kubectl get` columns, `scale`, Service ports), applied to the
//! JSON before it is stored. Fields the client set are never overwritten.

use serde_json::{json, Map, Value};

fn set_if_absent(obj: &mut Map<String, Value>, key: &str, value: Value) {
    if obj.get(key).map(Value::is_null).unwrap_or(true) {
        obj.insert(key.to_string(), value);
    }
}

fn object_at<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    v.get_mut(key).and_then(Value::as_object_mut)
}

/// Applies the defaults of `group/kind` to `obj`.
pub fn apply(group: &str, kind: &str, obj: &mut Value) {
    match (group, kind) {
        ("", "Pod") => {
            if let Some(spec) = object_at(obj, "spec") {
                default_pod_spec(spec);
            }
        }
        ("", "Service") => default_service(obj),
        ("", "Secret") => default_secret(obj),
        ("", "Namespace") => {
            let name = crate::objects::name(obj).to_string();
            let labels = crate::objects::metadata_mut(obj).entry("labels").or_insert_with(|| json!({}));
            if let Some(labels) = labels.as_object_mut() {
                // kube-apiserver labels every namespace with its own name.
                labels.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
            let spec = obj.as_object_mut().map(|o| o.entry("spec").or_insert_with(|| json!({})));
            if let Some(spec) = spec.and_then(Value::as_object_mut) {
                set_if_absent(spec, "finalizers", json!(["kubernetes"]));
            }
        }
        ("apps", "Deployment") => {
            if let Some(spec) = object_at(obj, "spec") {
                set_if_absent(spec, "replicas", json!(1));
                set_if_absent(spec, "revisionHistoryLimit", json!(10));
                set_if_absent(spec, "progressDeadlineSeconds", json!(600));
                set_if_absent(
                    spec,
                    "strategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
                );
            }
            default_template(obj);
        }
        ("apps", "ReplicaSet") | ("apps", "StatefulSet") => {
            if let Some(spec) = object_at(obj, "spec") {
                set_if_absent(spec, "replicas", json!(1));
            }
            default_template(obj);
        }
        ("apps", "DaemonSet") | ("batch", "Job") => default_template(obj),
        _ => {}
    }
}

/// kube's v1 → internal Secret conversion and defaults: `stringData` is write-only, each of
/// its entries overwrites `data` base64-encoded; `type` defaults to `Opaque`.
fn default_secret(obj: &mut Value) {
    use base64::Engine;
    let Some(secret) = obj.as_object_mut() else { return };
    if let Some(Value::Object(string_data)) = secret.remove("stringData") {
        let data = secret.entry("data").or_insert_with(|| json!({}));
        if data.is_null() {
            *data = json!({});
        }
        if let Some(data) = data.as_object_mut() {
            for (key, value) in string_data {
                let text = value.as_str().unwrap_or_default();
                data.insert(key, json!(base64::engine::general_purpose::STANDARD.encode(text)));
            }
        }
    }
    match secret.get("type") {
        Some(Value::String(t)) if !t.is_empty() => {}
        _ => {
            secret.insert("type".into(), json!("Opaque"));
        }
    }
}

fn default_template(obj: &mut Value) {
    if let Some(spec) = obj.pointer_mut("/spec/template/spec").and_then(Value::as_object_mut) {
        default_pod_spec(spec);
    }
}

fn default_pod_spec(spec: &mut Map<String, Value>) {
    set_if_absent(spec, "restartPolicy", json!("Always"));
    set_if_absent(spec, "terminationGracePeriodSeconds", json!(30));
    set_if_absent(spec, "dnsPolicy", json!("ClusterFirst"));
    set_if_absent(spec, "schedulerName", json!("default-scheduler"));
    set_if_absent(spec, "securityContext", json!({}));
    for list in ["containers", "initContainers"] {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in containers.iter_mut().filter_map(Value::as_object_mut) {
                let image = c.get("image").and_then(Value::as_str).unwrap_or("").to_string();
                set_if_absent(c, "imagePullPolicy", json!(image_pull_policy(&image)));
                set_if_absent(c, "terminationMessagePath", json!("/dev/termination-log"));
                set_if_absent(c, "terminationMessagePolicy", json!("File"));
                set_if_absent(c, "resources", json!({}));
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        set_if_absent(p, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

/// `Always` for `:latest` or untagged images, else `IfNotPresent` (kube's rule).
pub fn image_pull_policy(image: &str) -> &'static str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    match last.split_once(':') {
        None => "Always",
        Some((_, "latest")) => "Always",
        Some(_) if image.contains('@') => "IfNotPresent",
        Some(_) => "IfNotPresent",
    }
}

fn default_service(obj: &mut Value) {
    let Some(spec) = object_at(obj, "spec") else { return };
    set_if_absent(spec, "type", json!("ClusterIP"));
    set_if_absent(spec, "sessionAffinity", json!("None"));
    let is_external_name = spec.get("type").and_then(Value::as_str) == Some("ExternalName");
    if !is_external_name {
        set_if_absent(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_if_absent(p, "protocol", json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                set_if_absent(p, "targetPort", port);
            }
        }
    }
}

/// kube's QoS class of a pod spec: BestEffort (no requests or limits anywhere),
/// Guaranteed (every container limits cpu and memory, requests equal to limits), else
/// Burstable.
pub fn qos_class(spec: &Value) -> &'static str {
    let containers = spec.get("containers").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in &containers {
        let requests = c.pointer("/resources/requests").and_then(Value::as_object);
        let limits = c.pointer("/resources/limits").and_then(Value::as_object);
        if requests.map(|r| !r.is_empty()).unwrap_or(false) || limits.map(|l| !l.is_empty()).unwrap_or(false) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let limit = limits.and_then(|l| l.get(res));
            let request = requests.and_then(|r| r.get(res)).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy() {
        assert_eq!(image_pull_policy("nginx"), "Always");
        assert_eq!(image_pull_policy("nginx:latest"), "Always");
        assert_eq!(image_pull_policy("nginx:1.25"), "IfNotPresent");
        assert_eq!(image_pull_policy("localhost:5000/nginx"), "Always");
    }

    #[test]
    fn service_target_port_defaults_to_port() {
        let mut svc = json!({"spec": {"ports": [{"port": 80}]}});
        apply("", "Service", &mut svc);
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(svc["spec"]["type"], "ClusterIP");
    }

    #[test]
    fn secret_string_data_is_folded_into_data_and_type_defaults_to_opaque() {
        let mut secret = json!({"data": {"a": "b2xk", "keep": "eA=="}, "stringData": {"a": "new", "s": "p@ss"}});
        apply("", "Secret", &mut secret);
        assert_eq!(secret, json!({"data": {"a": "bmV3", "keep": "eA==", "s": "cEBzcw=="}, "type": "Opaque"}));
        let mut tls = json!({"type": "kubernetes.io/tls", "stringData": {"tls.crt": "c"}, "data": null});
        apply("", "Secret", &mut tls);
        assert_eq!(tls, json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "Yw=="}}));
    }

    #[test]
    fn qos() {
        assert_eq!(qos_class(&json!({"containers": [{"name": "a"}]})), "BestEffort");
        let g = json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = json!({"containers": [{"resources": {"requests": {"cpu": "1"}}}]});
        assert_eq!(qos_class(&b), "Burstable");
    }
}
