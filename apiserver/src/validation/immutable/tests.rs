//! Table tests: per kind, allowed updates give no errors and forbidden ones kube's
//! messages.

use serde_json::{json, Value};

use super::*;

fn messages(group: &str, kind: &str, new: &Value, old: &Value) -> Vec<String> {
    validate_immutable_fields(group, kind, new, old).iter().map(ToString::to_string).collect()
}

/// `(description, new object, expected messages)` against one old object.
type Case = (&'static str, Value, Vec<String>);

fn check(group: &str, kind: &str, old: &Value, cases: Vec<Case>) {
    for (what, new, want) in cases {
        assert_eq!(messages(group, kind, &new, old), want, "{kind}: {what}");
    }
}

/// `base` with the JSON pointer `path` set to `value` (`null` removes it).
fn set(base: &Value, path: &str, value: Value) -> Value {
    let mut v = base.clone();
    let (parent, key) = path.rsplit_once('/').expect("pointer");
    let key = &key.replace("~1", "/").replace("~0", "~");
    let target = v.pointer_mut(parent).unwrap_or_else(|| panic!("{parent} missing"));
    if value.is_null() {
        target.as_object_mut().expect("object").remove(key);
    } else if let Ok(i) = key.parse::<usize>() {
        target[i] = value;
    } else {
        target[key] = value;
    }
    v
}

fn s(text: &str) -> String {
    text.to_string()
}

#[test]
fn workload_selectors_are_immutable() {
    let old = json!({"spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}}}});
    for kind in ["Deployment", "ReplicaSet", "DaemonSet"] {
        check("apps", kind, &old, vec![
            ("replicas and template change", set(&set(&old, "/spec/replicas", json!(3)), "/spec/template/metadata/labels/x", json!("y")), vec![]),
            ("empty expressions equal absent", set(&old, "/spec/selector/matchExpressions", json!([])), vec![]),
            ("selector change", set(&old, "/spec/selector/matchLabels/app", json!("api")), vec![
                s("spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"api\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"),
            ]),
            ("selector with an expression", set(&old, "/spec/selector/matchExpressions", json!([{"key": "tier", "operator": "In", "values": ["a", "b"]}])), vec![
                s("spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\"}, MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:\"tier\", Operator:\"In\", Values:[]string{\"a\", \"b\"}}}}: field is immutable"),
            ]),
            ("selector removed", set(&old, "/spec/selector", Value::Null), vec![s("spec.selector: Invalid value: null: field is immutable")]),
        ]);
    }
}

#[test]
fn stateful_sets_allow_only_kubes_list() {
    let old = json!({"spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": {"metadata": {"labels": {"app": "db"}}},
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": "1Gi"}}}}]}});
    let forbidden = vec![format!("spec: Forbidden: {STATEFUL_SET_UPDATE_FORBIDDEN}")];
    check("apps", "StatefulSet", &old, vec![
        ("replicas, template, strategy, minReadySeconds", {
            let v = set(&old, "/spec/replicas", json!(5));
            let v = set(&v, "/spec/template/metadata/labels/v", json!("2"));
            let v = set(&v, "/spec/updateStrategy", json!({"type": "OnDelete"}));
            let v = set(&v, "/spec/revisionHistoryLimit", json!(3));
            set(&v, "/spec/minReadySeconds", json!(10))
        }, vec![]),
        ("serviceName", set(&old, "/spec/serviceName", json!("other")), forbidden.clone()),
        ("volumeClaimTemplates", set(&old, "/spec/volumeClaimTemplates/0/spec/resources/requests/storage", json!("2Gi")), forbidden.clone()),
        ("selector", set(&old, "/spec/selector/matchLabels/app", json!("x")), forbidden),
    ]);
}

#[test]
fn jobs() {
    let old = json!({"spec": {"completions": 3, "parallelism": 1, "backoffLimit": 6,
        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
        "template": {"metadata": {"labels": {"job": "pi"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}},
        "status": {"startTime": "2026-01-01T00:00:00Z"}});
    check("batch", "Job", &old, vec![
        ("parallelism and backoffLimit", set(&set(&old, "/spec/parallelism", json!(2)), "/spec/backoffLimit", json!(1)), vec![]),
        ("completions", set(&old, "/spec/completions", json!(4)), vec![s("spec.completions: Invalid value: 4: field is immutable")]),
        ("selector", set(&old, "/spec/selector/matchLabels/batch.kubernetes.io~1controller-uid", json!("u2")), vec![
            s("spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"batch.kubernetes.io/controller-uid\":\"u2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"),
        ]),
        ("template image", set(&old, "/spec/template/spec/containers/0/image", json!("python")), vec![
            s(r#"spec.template: Invalid value: {"metadata":{"labels":{"job":"pi"}},"spec":{"containers":[{"image":"python","name":"pi"}],"restartPolicy":"Never"}}: field is immutable"#),
        ]),
    ]);
    // A suspended Job that never started may move its pods (node selector, labels) only.
    let suspended = set(&set(&old, "/status", json!({})), "/spec/suspend", json!(true));
    check("batch", "Job", &suspended, vec![
        ("node selector", set(&suspended, "/spec/template/spec/nodeSelector", json!({"disk": "ssd"})), vec![]),
        ("image", set(&suspended, "/spec/template/spec/containers/0/image", json!("python")), vec![
            s(r#"spec.template: Invalid value: {"metadata":{"labels":{"job":"pi"}},"spec":{"containers":[{"image":"python","name":"pi"}],"restartPolicy":"Never"}}: field is immutable"#),
        ]),
    ]);
}

#[test]
fn pods() {
    let old = json!({"spec": {"containers": [{"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80, "protocol": "TCP"}]}],
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "activeDeadlineSeconds": 100,
        "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}]}});
    let forbidden = vec![format!("spec: Forbidden: pod updates may not change fields other than {POD_UPDATABLE_FIELDS}")];
    check("", "Pod", &old, vec![
        ("image", set(&old, "/spec/containers/0/image", json!("nginx:1.26")), vec![]),
        ("lower deadline", set(&old, "/spec/activeDeadlineSeconds", json!(50)), vec![]),
        ("added toleration, changed seconds", set(&old, "/spec/tolerations", json!([
            {"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}, {"key": "new", "operator": "Exists"}])), vec![]),
        ("port", set(&old, "/spec/containers/0/ports/0/containerPort", json!(8080)), forbidden.clone()),
        ("restartPolicy", set(&old, "/spec/restartPolicy", json!("Never")), forbidden.clone()),
        ("nodeName", set(&old, "/spec/nodeName", json!("n1")), forbidden),
        ("added container", set(&old, "/spec/containers", json!([old["spec"]["containers"][0].clone(), {"name": "b", "image": "x"}])), vec![s("spec.containers: Forbidden: pod updates may not add or remove containers")]),
        ("raised deadline", set(&old, "/spec/activeDeadlineSeconds", json!(200)), vec![
            s("spec.activeDeadlineSeconds: Invalid value: 200: must be less than or equal to previous value"),
        ]),
        ("removed deadline", set(&old, "/spec/activeDeadlineSeconds", Value::Null), vec![
            s("spec.activeDeadlineSeconds: Invalid value: null: must not update from a positive integer to nil value"),
        ]),
        ("removed toleration", set(&old, "/spec/tolerations", json!([])), vec![
            s("spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"),
        ]),
    ]);
    let negative = set(&old, "/spec/terminationGracePeriodSeconds", json!(-1));
    check("", "Pod", &negative, vec![("grace -1 → 1", set(&negative, "/spec/terminationGracePeriodSeconds", json!(1)), vec![])]);
}

#[test]
fn persistent_volume_claims() {
    let unbound = json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}, "status": {"phase": "Pending"}});
    let bound = set(&set(&unbound, "/status/phase", json!("Bound")), "/spec/volumeName", json!("pv-1"));
    let immutable = vec![format!("spec: Forbidden: {PVC_SPEC_IMMUTABLE}")];
    check("", "PersistentVolumeClaim", &unbound, vec![
        ("binding sets volumeName", set(&unbound, "/spec/volumeName", json!("pv-1")), vec![]),
        ("resize of an unbound claim", set(&unbound, "/spec/resources/requests/storage", json!("2Gi")), immutable.clone()),
        ("access modes", set(&unbound, "/spec/accessModes", json!(["ReadWriteMany"])), immutable.clone()),
    ]);
    check("", "PersistentVolumeClaim", &bound, vec![
        ("grow", set(&bound, "/spec/resources/requests/storage", json!("2Gi")), vec![]),
        ("same size, other unit", set(&bound, "/spec/resources/requests/storage", json!("1024Mi")), vec![]),
        ("shrink", set(&bound, "/spec/resources/requests/storage", json!("500Mi")), vec![
            s("spec.resources.requests.storage: Forbidden: field can not be less than previous value"),
        ]),
        ("volumeName once set", set(&bound, "/spec/volumeName", json!("pv-2")), immutable),
    ]);
    assert_eq!(parse_quantity("1Gi"), Some(1073741824.0));
    assert_eq!(parse_quantity("1.5k"), Some(1500.0));
    assert_eq!(parse_quantity("250m"), Some(0.25));
    assert_eq!(parse_quantity("1e3"), Some(1000.0));
    assert_eq!(parse_quantity("12 parsecs"), None);
}

#[test]
fn secrets_and_config_maps() {
    let cm = json!({"data": {"a": "1"}, "immutable": true});
    let forbidden = |f: &str| format!("{f}: Forbidden: field is immutable when `immutable` is set");
    check("", "ConfigMap", &cm, vec![
        ("labels only", set(&cm, "/metadata", json!({"labels": {"x": "y"}})), vec![]),
        ("data", set(&cm, "/data/a", json!("2")), vec![forbidden("data")]),
        ("binaryData", set(&cm, "/binaryData", json!({"b": "dg=="})), vec![forbidden("binaryData")]),
        ("immutable unset", set(&cm, "/immutable", json!(false)), vec![forbidden("immutable")]),
    ]);
    let mutable = set(&cm, "/immutable", Value::Null);
    check("", "ConfigMap", &mutable, vec![("data of a mutable map", set(&mutable, "/data/a", json!("2")), vec![])]);
    let secret = json!({"type": "Opaque", "data": {"k": "dg=="}, "immutable": true});
    check("", "Secret", &secret, vec![
        ("same data again", secret.clone(), vec![]),
        ("stringData folding to the same value", set(&set(&secret, "/data", Value::Null), "/stringData", json!({"k": "v"})), vec![]),
        ("stringData", set(&secret, "/stringData", json!({"k": "w"})), vec![forbidden("data")]),
        ("type", set(&secret, "/type", json!("kubernetes.io/tls")), vec![
            s("type: Invalid value: \"kubernetes.io/tls\": field is immutable"),
        ]),
    ]);
}
