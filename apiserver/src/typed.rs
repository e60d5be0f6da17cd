//! Typed decoding checks with `k8s-openapi`: an object must decode into its kind's type,
//! and with `fieldValidation=Strict` it must not carry fields the type does not have.
//!
//! Storage stays generic (`serde_json::Value`); this module only answers "does this JSON
//! decode as a Pod, and which of its fields would a Pod drop?". The unknown fields are found
//! by decoding into the type, encoding back, and walking the input for keys the round trip
//! lost (`k8s-openapi` ignores unknown fields when decoding, as Go's non-strict decoder).

use k8s_openapi::api::{apps, batch, coordination, core, discovery, networking, policy, rbac};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// Most unknown fields reported in one error (kube reports all; this bounds the message).
pub const UNKNOWN_FIELDS_REPORTED_MAX: usize = 20;

fn round_trip<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

/// Decodes `obj` as `group/kind` and encodes it back. `None`: no typed check for this kind
/// (custom resources).
pub fn decode(group: &str, kind: &str, obj: &Value) -> Option<Result<Value, String>> {
    let r = match (group, kind) {
        ("", "Namespace") => round_trip::<core::v1::Namespace>(obj),
        ("", "Pod") => round_trip::<core::v1::Pod>(obj),
        ("", "Service") => round_trip::<core::v1::Service>(obj),
        ("", "Endpoints") => round_trip::<core::v1::Endpoints>(obj),
        ("", "ConfigMap") => round_trip::<core::v1::ConfigMap>(obj),
        ("", "Secret") => round_trip::<core::v1::Secret>(obj),
        ("", "Node") => round_trip::<core::v1::Node>(obj),
        ("", "Event") => round_trip::<core::v1::Event>(obj),
        ("", "ServiceAccount") => round_trip::<core::v1::ServiceAccount>(obj),
        ("", "PersistentVolume") => round_trip::<core::v1::PersistentVolume>(obj),
        ("", "PersistentVolumeClaim") => round_trip::<core::v1::PersistentVolumeClaim>(obj),
        ("", "LimitRange") => round_trip::<core::v1::LimitRange>(obj),
        ("", "ResourceQuota") => round_trip::<core::v1::ResourceQuota>(obj),
        ("", "Binding") => round_trip::<core::v1::Binding>(obj),
        ("apps", "Deployment") => round_trip::<apps::v1::Deployment>(obj),
        ("apps", "ReplicaSet") => round_trip::<apps::v1::ReplicaSet>(obj),
        ("apps", "DaemonSet") => round_trip::<apps::v1::DaemonSet>(obj),
        ("apps", "StatefulSet") => round_trip::<apps::v1::StatefulSet>(obj),
        ("apps", "ControllerRevision") => round_trip::<apps::v1::ControllerRevision>(obj),
        ("batch", "Job") => round_trip::<batch::v1::Job>(obj),
        ("batch", "CronJob") => round_trip::<batch::v1::CronJob>(obj),
        ("coordination.k8s.io", "Lease") => round_trip::<coordination::v1::Lease>(obj),
        ("discovery.k8s.io", "EndpointSlice") => round_trip::<discovery::v1::EndpointSlice>(obj),
        ("networking.k8s.io", "Ingress") => round_trip::<networking::v1::Ingress>(obj),
        ("networking.k8s.io", "IngressClass") => round_trip::<networking::v1::IngressClass>(obj),
        ("networking.k8s.io", "NetworkPolicy") => round_trip::<networking::v1::NetworkPolicy>(obj),
        ("rbac.authorization.k8s.io", "Role") => round_trip::<rbac::v1::Role>(obj),
        ("rbac.authorization.k8s.io", "RoleBinding") => round_trip::<rbac::v1::RoleBinding>(obj),
        ("rbac.authorization.k8s.io", "ClusterRole") => round_trip::<rbac::v1::ClusterRole>(obj),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => round_trip::<rbac::v1::ClusterRoleBinding>(obj),
        ("policy", "PodDisruptionBudget") => round_trip::<policy::v1::PodDisruptionBudget>(obj),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => round_trip::<apiextensions::CustomResourceDefinition>(obj),
        ("autoscaling", "Scale") => round_trip::<k8s_openapi::api::autoscaling::v1::Scale>(obj),
        _ => return None,
    };
    Some(r)
}

/// Paths (`spec.containers[0].foo`) of fields in `input` that `decoded` lacks. Null values
/// are not fields (Go decodes `null` as the zero value and so does the round trip).
pub fn unknown_fields(input: &Value, decoded: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(input, decoded, String::new(), &mut out);
    out
}

fn walk(input: &Value, decoded: &Value, path: String, out: &mut Vec<String>) {
    if out.len() >= UNKNOWN_FIELDS_REPORTED_MAX {
        return;
    }
    match (input, decoded) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                if v.is_null() {
                    continue;
                }
                let child = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match b.get(k) {
                    Some(d) => walk(v, d, child, out),
                    None => {
                        // An empty object or list the type serializes away is not unknown.
                        let empty = matches!(v, Value::Object(m) if m.is_empty()) || matches!(v, Value::Array(a) if a.is_empty());
                        if !empty {
                            out.push(child);
                        }
                    }
                }
                if out.len() >= UNKNOWN_FIELDS_REPORTED_MAX {
                    return;
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (va, vb)) in a.iter().zip(b.iter()).enumerate() {
                walk(va, vb, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_unknown_fields_by_path() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "creationTimestamp": null},
            "spec": {"foo": 1, "containers": [{"name": "c", "image": "i", "bar": true}]}});
        let decoded = decode("", "Pod", &pod).unwrap().unwrap();
        assert_eq!(unknown_fields(&pod, &decoded), vec!["spec.containers[0].bar", "spec.foo"]);
    }

    #[test]
    fn type_errors_are_reported() {
        let bad = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": "three"}});
        assert!(decode("apps", "Deployment", &bad).unwrap().is_err());
        assert!(decode("example.com", "Widget", &bad).is_none());
    }
}
