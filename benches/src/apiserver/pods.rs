//! The bench's pod: what a Deployment's pod looks like once the controllers and admission
//! have filled it in (owner reference, labels, env, probes, resources, volumes,
//! tolerations), about 2 KiB of JSON.

use serde_json::{json, Value};

/// Annotation carrying the microseconds since the run's epoch at which a write started.
pub const STAMP_ANNOTATION: &str = "bench.skiff.io/stamp-us";
/// Annotation carrying the sequence number of a watched write (watchers count them).
pub const SEQ_ANNOTATION: &str = "bench.skiff.io/seq";

pub fn pod_name(prefix: &str, index: u64) -> String {
    format!("{prefix}-{index:06}")
}

/// A pod object for `POST`/`PUT`; `stamp` adds the two bench annotations.
pub fn pod(namespace: &str, name: &str, stamp: Option<(u64, u64)>) -> Value {
    let mut annotations = json!({
        "kubectl.kubernetes.io/restartedAt": "2026-11-24T21:00:00Z",
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9102",
    });
    if let Some((stamp_us, seq)) = stamp {
        annotations[STAMP_ANNOTATION] = json!(stamp_us.to_string());
        annotations[SEQ_ANNOTATION] = json!(seq.to_string());
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": "frontend", "tier": "web", "pod-template-hash": "7d9c6b8f5d", "version": "v1.27.3"},
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "frontend-7d9c6b8f5d",
                "uid": "6f1c2a7e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", "controller": true, "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "containers": [{
                "name": "frontend",
                "image": "registry.example.com/shop/frontend:1.27.3",
                "imagePullPolicy": "IfNotPresent",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                    {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}},
                    {"name": "BACKEND_URL", "value": "http://backend.shop.svc.cluster.local:8080"}
                ],
                "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
                "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/frontend", "readOnly": true},
                    {"name": "kube-api-access-x7k2p", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}
                ],
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File"
            }],
            "volumes": [
                {"name": "config", "configMap": {"name": "frontend-config", "defaultMode": 420}},
                {"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}
                ]}}
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "schedulerName": "default-scheduler",
            "priority": 0,
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ]
        }
    })
}

/// Reads the bench annotations from a raw watch event line without parsing the JSON.
pub fn stamp_of(line: &[u8]) -> Option<(u64, u64)> {
    Some((annotation_u64(line, STAMP_ANNOTATION)?, annotation_u64(line, SEQ_ANNOTATION)?))
}

fn annotation_u64(line: &[u8], name: &str) -> Option<u64> {
    let needle = format!("\"{name}\":\"");
    let at = line.windows(needle.len()).position(|w| w == needle.as_bytes())? + needle.len();
    let digits = line[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&line[at..at + digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_is_about_two_kib_and_stamps_read_back() {
        let p = pod("bench", &pod_name("pod", 42), Some((123_456, 7)));
        let bytes = serde_json::to_vec(&p).unwrap();
        assert!((1900..=2300).contains(&bytes.len()), "{} bytes", bytes.len());
        let line = serde_json::to_vec(&json!({"type": "MODIFIED", "object": p})).unwrap();
        assert_eq!(stamp_of(&line), Some((123_456, 7)));
        assert_eq!(stamp_of(&serde_json::to_vec(&pod("b", "x", None)).unwrap()), None);
    }
}
