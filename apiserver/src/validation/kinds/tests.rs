//! Table tests: per kind, valid objects give no errors and each invalid one gives
//! exactly kube's messages (as `field.Error.Error()` prints them).

use serde_json::{json, Value};

use super::*;

fn messages(group: &str, kind: &str, obj: &Value) -> Vec<String> {
    let mut o = obj.clone();
    // Validation runs after defaulting, as in the handlers.
    crate::defaults::apply(group, kind, &mut o);
    validate_kind(group, kind, &o).iter().map(ToString::to_string).collect()
}

/// `(description, object, expected messages)`; empty = valid.
type Case = (&'static str, Value, Vec<&'static str>);

fn check(group: &str, kind: &str, cases: Vec<Case>) {
    for (what, obj, want) in cases {
        assert_eq!(messages(group, kind, &obj), want, "{kind}: {what}");
    }
}

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": spec})
}

#[test]
fn pods() {
    let c = |name: &str, image: &str| json!({"name": name, "image": image});
    check("", "Pod", vec![
        ("minimal", pod(json!({"containers": [c("web", "nginx")]})), vec![]),
        ("two containers with ports", pod(json!({"containers": [
            {"name": "web", "image": "nginx", "ports": [{"name": "http", "containerPort": 80}, {"containerPort": 443, "protocol": "TCP"}]},
            c("sidecar", "busybox")], "restartPolicy": "OnFailure"})), vec![]),
        ("no containers", pod(json!({})), vec!["spec.containers: Required value"]),
        ("empty containers", pod(json!({"containers": []})), vec!["spec.containers: Required value"]),
        ("no name, no image", pod(json!({"containers": [{}]})), vec![
            "spec.containers[0].name: Required value",
            "spec.containers[0].image: Required value",
        ]),
        ("duplicate names across init and regular", pod(json!({"containers": [c("a", "x")], "initContainers": [c("a", "y")]})), vec![
            "spec.initContainers[0].name: Duplicate value: \"a\"",
        ]),
        ("duplicate names", pod(json!({"containers": [c("a", "x"), c("a", "y")]})), vec![
            "spec.containers[1].name: Duplicate value: \"a\"",
        ]),
        ("bad container name", pod(json!({"containers": [c("Web", "x")]})), vec![
            "spec.containers[0].name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        ]),
        ("image with spaces", pod(json!({"containers": [c("a", " nginx")]})), vec![
            "spec.containers[0].image: Invalid value: \" nginx\": must not have leading or trailing whitespace",
        ]),
        ("port ranges", pod(json!({"containers": [{"name": "a", "image": "x", "ports": [
            {"containerPort": 0}, {"containerPort": 70000}, {"containerPort": 80, "hostPort": -1}, {"containerPort": 81, "protocol": "ICMP"}]}]})), vec![
            "spec.containers[0].ports[0].containerPort: Required value",
            "spec.containers[0].ports[1].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.containers[0].ports[2].hostPort: Invalid value: -1: must be between 1 and 65535, inclusive",
            "spec.containers[0].ports[3].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
        ]),
        ("port names", pod(json!({"containers": [{"name": "a", "image": "x", "ports": [
            {"name": "http", "containerPort": 80}, {"name": "http", "containerPort": 81}, {"name": "a--b", "containerPort": 82}, {"name": "123", "containerPort": 83}]}]})), vec![
            "spec.containers[0].ports[1].name: Duplicate value: \"http\"",
            "spec.containers[0].ports[2].name: Invalid value: \"a--b\": must not contain consecutive hyphens",
            "spec.containers[0].ports[3].name: Invalid value: \"123\": must contain at least one letter (a-z)",
        ]),
        ("restartPolicy", pod(json!({"containers": [c("a", "x")], "restartPolicy": "Sometimes"})), vec![
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
        ]),
        ("pull and dns policy", pod(json!({"containers": [{"name": "a", "image": "x", "imagePullPolicy": "Maybe"}], "dnsPolicy": "Google"})), vec![
            "spec.containers[0].imagePullPolicy: Unsupported value: \"Maybe\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
            "spec.dnsPolicy: Unsupported value: \"Google\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"",
        ]),
    ]);
}

fn svc(spec: Value) -> Value {
    json!({"metadata": {"name": "s", "namespace": "default"}, "spec": spec})
}

#[test]
fn services() {
    check("", "Service", vec![
        ("one port", svc(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]})), vec![]),
        ("named target port", svc(json!({"ports": [{"name": "http", "port": 80, "targetPort": "http"}, {"name": "https", "port": 443}], "type": "NodePort"})), vec![]),
        ("headless without ports", svc(json!({"clusterIP": "None"})), vec![]),
        ("external name", svc(json!({"type": "ExternalName", "externalName": "example.com"})), vec![]),
        ("no ports", svc(json!({"selector": {"app": "web"}})), vec!["spec.ports: Required value"]),
        ("type", svc(json!({"type": "Magic", "ports": [{"port": 80}]})), vec![
            "spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
        ]),
        ("external name missing", svc(json!({"type": "ExternalName"})), vec!["spec.externalName: Required value"]),
        ("ports", svc(json!({"ports": [{"port": 0}, {"name": "b", "port": 70000, "protocol": "HTTP", "targetPort": 0}, {"name": "b", "port": 81, "targetPort": "Bad_Name", "nodePort": 99999}]})), vec![
            "spec.ports[0].name: Required value",
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            // Defaulted from port, as in kube.
            "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ports[1].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.ports[1].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            "spec.ports[1].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ports[2].name: Duplicate value: \"b\"",
            "spec.ports[2].targetPort: Invalid value: \"Bad_Name\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
            "spec.ports[2].nodePort: Invalid value: 99999: must be between 1 and 65535, inclusive",
        ]),
        ("selector and affinity", svc(json!({"ports": [{"port": 80}], "selector": {"app": "-x"}, "sessionAffinity": "Sticky"})), vec![
            "spec.selector: Invalid value: \"-x\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            "spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"",
        ]),
    ]);
}

fn workload(spec: Value) -> Value {
    json!({"metadata": {"name": "w", "namespace": "default"}, "spec": spec})
}

fn template(labels: Value) -> Value {
    json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
}

#[test]
fn deployments_and_replica_sets() {
    let good = json!({"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))});
    let with = |patch: Value| {
        let mut s = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            s[k] = v.clone();
        }
        workload(s)
    };
    let no_selector = {
        let mut s = good.clone();
        s.as_object_mut().unwrap().remove("selector");
        workload(s)
    };
    check("apps", "Deployment", vec![
        ("valid", workload(good.clone()), vec![]),
        ("replicas", with(json!({"replicas": -1})), vec!["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]),
        ("no selector", no_selector.clone(), vec![
            "spec.selector: Required value",
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
        ]),
        ("empty selector", with(json!({"selector": {}})), vec![
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment",
        ]),
        ("selector does not match", with(json!({"selector": {"matchLabels": {"app": "db"}}})), vec![
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
        ]),
        ("template restartPolicy", with(json!({"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}})), vec![
            "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
        ]),
        ("template without containers", with(json!({"template": {"metadata": {"labels": {"app": "web"}}, "spec": {}}})), vec![
            "spec.template.spec.containers: Required value",
        ]),
        ("template deadline", with(json!({"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"activeDeadlineSeconds": 5, "containers": [{"name": "c", "image": "x"}]}}})), vec![
            "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicaSet is not Supported",
        ]),
        ("strategy", with(json!({"strategy": {"type": "BlueGreen"}})), vec![
            "spec.strategy.type: Unsupported value: \"BlueGreen\": supported values: \"Recreate\", \"RollingUpdate\"",
        ]),
    ]);
    check("apps", "ReplicaSet", vec![
        ("valid", workload(good.clone()), vec![]),
        // kube's ReplicaSet message says "deployment" too.
        ("empty selector", with(json!({"selector": {"matchLabels": {}}})), vec![
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment",
        ]),
    ]);
    check("apps", "StatefulSet", vec![
        ("valid", workload(good.clone()), vec![]),
        ("policies", with(json!({"podManagementPolicy": "Random", "updateStrategy": {"type": "Now"}})), vec![
            "spec.podManagementPolicy: Unsupported value: \"Random\": supported values: \"OrderedReady\", \"Parallel\"",
            "spec.updateStrategy.type: Unsupported value: \"Now\": supported values: \"OnDelete\", \"RollingUpdate\"",
        ]),
        ("empty selector", with(json!({"selector": {}})), vec![
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for statefulset",
        ]),
    ]);
    check("apps", "DaemonSet", vec![
        ("valid", workload(json!({"selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))})), vec![]),
        ("expression selector that does not match", workload(json!({"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["db"]}]}, "template": template(json!({"app": "web"}))})), vec![
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
        ]),
    ]);
}

#[test]
fn jobs_and_cron_jobs() {
    let job = |restart: Option<&str>| {
        let mut t = template(json!({"job": "pi"}));
        if let Some(r) = restart {
            t["spec"]["restartPolicy"] = json!(r);
        }
        workload(json!({"template": t, "backoffLimit": 4}))
    };
    check("batch", "Job", vec![
        ("Never", job(Some("Never")), vec![]),
        ("OnFailure", job(Some("OnFailure")), vec![]),
        // Defaulting makes an unset policy Always, which a Job does not allow (as in kube).
        ("unset", job(None), vec!["spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""]),
        ("negative backoff", {
            let mut j = job(Some("Never"));
            j["spec"]["backoffLimit"] = json!(-1);
            j
        }, vec!["spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0"]),
    ]);
    check("batch", "CronJob", vec![
        ("valid", workload(json!({"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}}})), vec![]),
        ("no schedule, bad template", workload(json!({"jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never"}}}}})), vec![
            "spec.schedule: Required value",
            "spec.jobTemplate.spec.template.spec.containers: Required value",
        ]),
    ]);
}

#[test]
fn config_maps_and_secrets() {
    let cm = |data: Value| json!({"metadata": {"name": "c", "namespace": "default"}, "data": data});
    let big = "x".repeat(MAX_SECRET_SIZE_BYTES);
    check("", "ConfigMap", vec![
        ("valid keys", cm(json!({"a.b": "1", "KEY_NAME": "2", "key-name": "3"})), vec![]),
        ("dot-dot key", cm(json!({"..x": "2"})), vec!["data[..x]: Invalid value: \"..x\": must not start with '..'"]),
        ("bad key", cm(json!({"a b": "1"})), vec![
            "data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
        ]),
        ("key in both", json!({"metadata": {"name": "c"}, "data": {"k": "v"}, "binaryData": {"k": "dg=="}}), vec![
            "data[k]: Invalid value: \"k\": duplicate of key present in binaryData",
            "binaryData[k]: Invalid value: \"k\": duplicate of key present in data",
        ]),
        ("exactly 1 MiB", cm(json!({"k": big})), vec![]),
        ("over 1 MiB", cm(json!({"k": big, "l": "y"})), vec![": Too long: may not be more than 1048576 bytes"]),
    ]);
    let secret = |ty: &str, data: Value| json!({"metadata": {"name": "s", "namespace": "default"}, "type": ty, "data": data});
    let encoded = base64::engine::general_purpose::STANDARD.encode(vec![0u8; MAX_SECRET_SIZE_BYTES + 1]);
    check("", "Secret", vec![
        ("opaque", secret("Opaque", json!({"password": "cGFzcw=="})), vec![]),
        ("bad key", secret("Opaque", json!({"pass/word": "cGFzcw=="})), vec![
            "data[pass/word]: Invalid value: \"pass/word\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
        ]),
        ("too large (decoded bytes count)", secret("Opaque", json!({"k": encoded})), vec!["data: Too long: may not be more than 1048576 bytes"]),
        ("tls without key", secret("kubernetes.io/tls", json!({"tls.crt": "Y3J0"})), vec!["data[tls.key]: Required value"]),
        ("stringData keys", json!({"metadata": {"name": "s"}, "stringData": {"a b": "x"}}), vec![
            "data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
        ]),
    ]);
}

#[test]
fn persistent_volume_claims() {
    let pvc = |spec: Value| json!({"metadata": {"name": "c", "namespace": "default"}, "spec": spec});
    check("", "PersistentVolumeClaim", vec![
        ("valid", pvc(json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}})), vec![]),
        ("empty", pvc(json!({})), vec![
            "spec.accessModes: Required value: at least 1 access mode is required",
            "spec.resources[storage]: Required value",
        ]),
        ("mode", pvc(json!({"accessModes": ["ReadWriteSometimes"], "resources": {"requests": {"storage": "1Gi"}}})), vec![
            "spec.accessModes: Unsupported value: \"ReadWriteSometimes\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\"",
        ]),
    ]);
}

#[test]
fn kinds_without_rules_and_name_helpers() {
    assert!(validate_kind("", "Namespace", &json!({"metadata": {"name": "x"}})).is_empty());
    assert!(validate_kind("example.com", "Widget", &json!({"spec": {"anything": 1}})).is_empty());
    assert!(is_valid_port_name("http-2").is_empty());
    assert_eq!(is_valid_port_name("very-long-port-name"), vec!["must be no more than 15 characters"]);
    assert_eq!(is_valid_port_name("-a"), vec!["must not begin or end with a hyphen"]);
    assert_eq!(is_config_map_key("."), vec!["must not be '.'"]);
    assert_eq!(is_valid_port_num(65535), Vec::<String>::new());
}
