use super::*;
use serde_json::json;
use std::time::{Duration, UNIX_EPOCH};

const NOW: &str = "2024-06-01T12:00:00Z";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(parse_rfc3339(NOW).unwrap() as u64)
}

/// An RFC 3339 timestamp `ago_secs` before NOW.
fn ago(ago_secs: i64) -> String {
    format_rfc3339((parse_rfc3339(NOW).unwrap() / 1_000_000_000) as i64 - ago_secs)
}

fn headers(group: &str, kind: &str) -> Vec<String> {
    column_definitions(group, kind).into_iter().map(|c| c.name).collect()
}

fn wide(group: &str, kind: &str) -> Vec<String> {
    column_definitions(group, kind).into_iter().filter(|c| c.priority == 1).map(|c| c.name).collect()
}

fn cells(group: &str, kind: &str, obj: Value) -> Vec<Value> {
    let c = row_cells(group, kind, &obj, now());
    assert_eq!(c.len(), column_definitions(group, kind).len(), "one cell per column for {kind}");
    c
}

#[test]
fn human_duration_follows_kube() {
    let s = 1_000_000_000i64;
    let cases = [
        (-3 * s, "<invalid>"),
        (-2 * s, "<invalid>"),
        (-s, "0s"),
        (-s / 2, "0s"),
        (0, "0s"),
        (5 * s, "5s"),
        (119 * s, "119s"),
        (120 * s, "2m"),
        (182 * s, "3m2s"),
        (599 * s, "9m59s"),
        (600 * s, "10m"),
        (179 * 60 * s, "179m"),
        (3 * 3600 * s, "3h"),
        ((4 * 3600 + 5 * 60) * s, "4h5m"),
        (8 * 3600 * s, "8h"),
        (47 * 3600 * s, "47h"),
        (48 * 3600 * s, "2d"),
        (51 * 3600 * s, "2d3h"),
        (8 * 24 * 3600 * s, "8d"),
        (45 * 24 * 3600 * s, "45d"),
        (729 * 24 * 3600 * s, "729d"),
        (730 * 24 * 3600 * s, "2y"),
        (760 * 24 * 3600 * s, "2y30d"),
        (8 * 365 * 24 * 3600 * s, "8y"),
        (9 * 365 * 24 * 3600 * s + 3600 * s, "9y"),
    ];
    for (d, want) in cases {
        assert_eq!(human_duration(d), want, "{d}ns");
    }
}

#[test]
fn rfc3339_round_trip_and_offsets() {
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
    assert_eq!(parse_rfc3339("1970-01-01T02:00:00+02:00"), Some(0));
    assert_eq!(parse_rfc3339("2024-02-29T23:59:59Z").map(|n| format_rfc3339((n / 1_000_000_000) as i64)), Some("2024-02-29T23:59:59Z".into()));
    assert_eq!(format_rfc3339(-62135596800), "0001-01-01T00:00:00Z");
    assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), None);
    assert_eq!(parse_rfc3339("yesterday"), None);
}

#[test]
fn pods() {
    assert_eq!(headers("", "Pod"), ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"]);
    assert_eq!(wide("", "Pod"), ["IP", "Node", "Nominated Node", "Readiness Gates"]);
    let running = json!({
        "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": ago(5)},
        "spec": {"nodeName": "node-a", "containers": [{"name": "app"}, {"name": "log"}],
                 "readinessGates": [{"conditionType": "example.com/lb"}]},
        "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}],
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "example.com/lb", "status": "True"}],
            "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 2, "state": {"running": {}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(62)}}},
                {"name": "log", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ]}
    });
    assert_eq!(
        cells("", "Pod", running),
        vec![json!("web-1"), json!("1/2"), json!("CrashLoopBackOff"), json!("2 (62s ago)"), json!("5s"),
             json!("10.0.0.5"), json!("node-a"), json!("<none>"), json!("1/1")]
    );
    let pending = json!({"metadata": {"name": "p", "creationTimestamp": ago(3 * 60 + 2)},
        "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Pending"}});
    assert_eq!(
        cells("", "Pod", pending),
        vec![json!("p"), json!("0/1"), json!("Pending"), json!("0"), json!("3m2s"), json!("<none>"), json!("<none>"), json!("<none>"), json!("<none>")]
    );
}

#[test]
fn pod_status_reasons() {
    let status = |pod: Value| cells("", "Pod", pod)[2].clone();
    let init = json!({"metadata": {"name": "p"}, "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]},
        "status": {"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "state": {"terminated": {"exitCode": 0}}},
            {"name": "i2", "state": {"running": {}}}]}});
    assert_eq!(status(init), "Init:1/2");
    let init_failed = json!({"metadata": {"name": "p"}, "spec": {"initContainers": [{"name": "i1"}], "containers": [{"name": "a"}]},
        "status": {"phase": "Pending", "initContainerStatuses": [{"name": "i1", "state": {"terminated": {"exitCode": 3}}}]}});
    assert_eq!(status(init_failed), "Init:ExitCode:3");
    let init_waiting = json!({"metadata": {"name": "p"}, "spec": {"initContainers": [{"name": "i1"}], "containers": [{"name": "a"}]},
        "status": {"phase": "Pending", "initContainerStatuses": [{"name": "i1", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}});
    assert_eq!(status(init_waiting), "Init:ImagePullBackOff");
    let done = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]},
        "status": {"phase": "Succeeded", "containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}});
    let row = table_row("", "Pod", &done, IncludeObject::None, now());
    assert_eq!(row["cells"][2], "Completed");
    assert_eq!(row["conditions"], json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]));
    let killed = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}});
    assert_eq!(status(killed), "Signal:9");
    let deleting = json!({"metadata": {"name": "p", "deletionTimestamp": ago(1)}, "spec": {"containers": [{"name": "a"}]},
        "status": {"phase": "Running"}});
    assert_eq!(status(deleting), "Terminating");
    let gated = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}});
    assert_eq!(status(gated), "SchedulingGated");
    // A sidecar (restartable init container) counts towards READY.
    let sidecar = json!({"metadata": {"name": "p"},
        "spec": {"initContainers": [{"name": "proxy", "restartPolicy": "Always"}], "containers": [{"name": "a"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true, "state": {"running": {}}}],
            "containerStatuses": [{"name": "a", "ready": true, "state": {"running": {}}}]}});
    let c = cells("", "Pod", sidecar);
    assert_eq!((c[1].clone(), c[2].clone()), (json!("2/2"), json!("Running")));
}

#[test]
fn deployments() {
    assert_eq!(headers("apps", "Deployment"), ["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"]);
    let d = json!({"metadata": {"name": "web", "creationTimestamp": ago(51 * 3600)},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.25"}, {"name": "log", "image": "busybox"}]}}},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
    assert_eq!(
        cells("apps", "Deployment", d),
        vec![json!("web"), json!("2/3"), json!(3), json!(2), json!("2d3h"), json!("app,log"), json!("nginx:1.25,busybox"), json!("app=web")]
    );
}

#[test]
fn services() {
    assert_eq!(headers("", "Service"), ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"]);
    let svc = json!({"metadata": {"name": "kubernetes", "creationTimestamp": ago(45 * 86400)},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
                 "ports": [{"port": 443, "protocol": "TCP", "targetPort": 6443}]}});
    assert_eq!(
        cells("", "Service", svc),
        vec![json!("kubernetes"), json!("ClusterIP"), json!("10.96.0.1"), json!("<none>"), json!("443/TCP"), json!("45d"), json!("<none>")]
    );
    let np = json!({"metadata": {"name": "web", "creationTimestamp": ago(10)},
        "spec": {"type": "NodePort", "clusterIPs": ["10.96.3.4"], "selector": {"tier": "fe", "app": "web"},
                 "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}});
    assert_eq!(
        cells("", "Service", np),
        vec![json!("web"), json!("NodePort"), json!("10.96.3.4"), json!("<none>"), json!("80:30080/TCP,53/UDP"), json!("10s"), json!("app=web,tier=fe")]
    );
    let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.9", "ports": []}});
    assert_eq!(cells("", "Service", lb)[3], "<pending>");
    let ext = json!({"metadata": {"name": "x"}, "spec": {"type": "ExternalName", "externalName": "db.example.com"}});
    let c = cells("", "Service", ext);
    assert_eq!((c[2].clone(), c[3].clone(), c[5].clone()), (json!("<none>"), json!("db.example.com"), json!("<unknown>")));
}

#[test]
fn namespaces_configmaps_secrets_serviceaccounts() {
    assert_eq!(headers("", "Namespace"), ["Name", "Status", "Age"]);
    assert_eq!(
        cells("", "Namespace", json!({"metadata": {"name": "default", "creationTimestamp": ago(4 * 3600)}, "status": {"phase": "Active"}})),
        vec![json!("default"), json!("Active"), json!("4h")]
    );
    assert_eq!(headers("", "ConfigMap"), ["Name", "Data", "Age"]);
    assert_eq!(
        cells("", "ConfigMap", json!({"metadata": {"name": "c", "creationTimestamp": ago(90)}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}})),
        vec![json!("c"), json!(3), json!("90s")]
    );
    assert_eq!(headers("", "Secret"), ["Name", "Type", "Data", "Age"]);
    assert_eq!(
        cells("", "Secret", json!({"metadata": {"name": "s", "creationTimestamp": ago(60)}, "type": "Opaque", "data": {"k": "dg=="}})),
        vec![json!("s"), json!("Opaque"), json!(1), json!("60s")]
    );
    assert_eq!(headers("", "ServiceAccount"), ["Name", "Secrets", "Age"]);
    assert_eq!(
        cells("", "ServiceAccount", json!({"metadata": {"name": "default", "creationTimestamp": ago(600)}})),
        vec![json!("default"), json!(0), json!("10m")]
    );
}

#[test]
fn nodes() {
    assert_eq!(headers("", "Node"), ["Name", "Status", "Roles", "Age", "Version", "Internal-IP", "External-IP", "OS-Image", "Kernel-Version", "Container-Runtime"]);
    let node = json!({"metadata": {"name": "n1", "creationTimestamp": ago(8 * 86400),
            "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": "", "kubernetes.io/role": "edge"}},
        "spec": {"unschedulable": true},
        "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "n1"}],
            "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0", "containerRuntimeVersion": "containerd://1.7.0"}}});
    assert_eq!(
        cells("", "Node", node),
        vec![json!("n1"), json!("Ready,SchedulingDisabled"), json!("control-plane,edge,worker"), json!("8d"), json!("v1.32.0"),
             json!("192.168.1.10"), json!("<none>"), json!("Debian GNU/Linux 12 (bookworm)"), json!("6.1.0"), json!("containerd://1.7.0")]
    );
    let bare = json!({"metadata": {"name": "n2"}});
    let c = cells("", "Node", bare);
    assert_eq!((c[1].clone(), c[2].clone(), c[7].clone()), (json!("Unknown"), json!("<none>"), json!("<unknown>")));
}

#[test]
fn workloads() {
    assert_eq!(headers("apps", "ReplicaSet"), ["Name", "Desired", "Current", "Ready", "Age", "Containers", "Images", "Selector"]);
    let rs = json!({"metadata": {"name": "web-7d4b9", "creationTimestamp": ago(30)},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "7d4b9"}},
                 "template": {"spec": {"containers": [{"name": "app", "image": "nginx"}]}}},
        "status": {"replicas": 3, "readyReplicas": 1}});
    assert_eq!(
        cells("apps", "ReplicaSet", rs),
        vec![json!("web-7d4b9"), json!(3), json!(3), json!(1), json!("30s"), json!("app"), json!("nginx"), json!("app=web,pod-template-hash=7d4b9")]
    );
    assert_eq!(headers("apps", "StatefulSet"), ["Name", "Ready", "Age", "Containers", "Images"]);
    let sts = json!({"metadata": {"name": "db", "creationTimestamp": ago(7200)}, "spec": {"replicas": 3,
        "template": {"spec": {"containers": [{"name": "pg", "image": "postgres:16"}]}}}, "status": {"readyReplicas": 3}});
    assert_eq!(cells("apps", "StatefulSet", sts), vec![json!("db"), json!("3/3"), json!("120m"), json!("pg"), json!("postgres:16")]);
    assert_eq!(
        headers("apps", "DaemonSet"),
        ["Name", "Desired", "Current", "Ready", "Up-to-date", "Available", "Node Selector", "Age", "Containers", "Images", "Selector"]
    );
    let ds = json!({"metadata": {"name": "proxy", "creationTimestamp": ago(5)},
        "spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["proxy"]}]},
                 "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [{"name": "p", "image": "kube-proxy"}]}}},
        "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1, "updatedNumberScheduled": 2, "numberAvailable": 1}});
    assert_eq!(
        cells("apps", "DaemonSet", ds),
        vec![json!("proxy"), json!(2), json!(2), json!(1), json!(2), json!(1), json!("kubernetes.io/os=linux"), json!("5s"),
             json!("p"), json!("kube-proxy"), json!("app in (proxy)")]
    );
}

#[test]
fn jobs_and_cronjobs() {
    assert_eq!(headers("batch", "Job"), ["Name", "Status", "Completions", "Duration", "Age", "Containers", "Images", "Selector"]);
    let job = json!({"metadata": {"name": "pi", "creationTimestamp": ago(300)},
        "spec": {"completions": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
                 "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
        "status": {"succeeded": 1, "startTime": ago(300), "completionTime": ago(250), "conditions": [{"type": "Complete", "status": "True"}]}});
    assert_eq!(
        cells("batch", "Job", job),
        vec![json!("pi"), json!("Complete"), json!("1/1"), json!("50s"), json!("5m"), json!("pi"), json!("perl"), json!("batch.kubernetes.io/controller-uid=u1")]
    );
    let running = json!({"metadata": {"name": "w", "creationTimestamp": ago(30)}, "spec": {"parallelism": 3},
        "status": {"startTime": ago(20)}});
    let c = cells("batch", "Job", running);
    assert_eq!((c[1].clone(), c[2].clone(), c[3].clone()), (json!("Running"), json!("0/1 of 3"), json!("20s")));
    let not_started = json!({"metadata": {"name": "w"}, "spec": {"completions": 2}});
    assert_eq!(cells("batch", "Job", not_started)[3], "");

    assert_eq!(
        headers("batch", "CronJob"),
        ["Name", "Schedule", "Timezone", "Suspend", "Active", "Last Schedule", "Age", "Containers", "Images", "Selector"]
    );
    let cj = json!({"metadata": {"name": "hello", "creationTimestamp": ago(3600)},
        "spec": {"schedule": "*/5 * * * *", "suspend": false,
                 "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "hello", "image": "busybox"}]}}}}},
        "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": ago(65)}});
    assert_eq!(
        cells("batch", "CronJob", cj),
        vec![json!("hello"), json!("*/5 * * * *"), json!("<none>"), json!("False"), json!(1), json!("65s"), json!("60m"),
             json!("hello"), json!("busybox"), json!("<none>")]
    );
}

#[test]
fn events() {
    assert_eq!(
        headers("", "Event"),
        ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message", "First Seen", "Count", "Name"]
    );
    assert_eq!(wide("", "Event"), ["Subobject", "Source", "First Seen", "Count", "Name"]);
    let ev = json!({"metadata": {"name": "web-1.17a", "creationTimestamp": ago(100)},
        "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{app}"},
        "reason": "Pulled", "type": "Normal", "message": " Successfully pulled image \n",
        "source": {"component": "kubelet", "host": "node-a"},
        "firstTimestamp": ago(100), "lastTimestamp": ago(40), "count": 3});
    assert_eq!(
        cells("", "Event", ev),
        vec![json!("40s"), json!("Normal"), json!("Pulled"), json!("pod/web-1"), json!("spec.containers{app}"), json!("kubelet, node-a"),
             json!("Successfully pulled image"), json!("100s"), json!(3), json!("web-1.17a")]
    );
    let new_api = json!({"metadata": {"name": "e2"}, "involvedObject": {"kind": "Node"},
        "eventTime": "2024-06-01T11:59:50.000000Z", "reportingComponent": "scheduler", "reportingInstance": "s-1"});
    let c = cells("", "Event", new_api);
    assert_eq!((c[0].clone(), c[3].clone(), c[5].clone(), c[8].clone()), (json!("10s"), json!("node"), json!("scheduler, s-1"), json!(1)));
}

#[test]
fn endpoints_and_slices() {
    assert_eq!(headers("", "Endpoints"), ["Name", "Endpoints", "Age"]);
    let ep = json!({"metadata": {"name": "web"}, "subsets": [{
        "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.3"}, {"ip": "10.0.0.4"}],
        "ports": [{"port": 80}]}]});
    assert_eq!(cells("", "Endpoints", ep)[1], "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 1 more...");
    assert_eq!(cells("", "Endpoints", json!({"metadata": {"name": "x"}}))[1], "<none>");
    assert_eq!(headers("discovery.k8s.io", "EndpointSlice"), ["Name", "AddressType", "Ports", "Endpoints", "Age"]);
    let slice = json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4", "ports": [{"port": 80}, {"name": "x"}],
        "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]});
    let c = cells("discovery.k8s.io", "EndpointSlice", slice);
    assert_eq!((c[1].clone(), c[2].clone(), c[3].clone()), (json!("IPv4"), json!("80,x"), json!("10.0.0.1,10.0.0.2")));
    let empty = json!({"metadata": {"name": "e"}, "addressType": "IPv4"});
    assert_eq!(cells("discovery.k8s.io", "EndpointSlice", empty)[3], "<unset>");
}

#[test]
fn volumes() {
    assert_eq!(
        headers("", "PersistentVolume"),
        ["Name", "Capacity", "Access Modes", "Reclaim Policy", "Status", "Claim", "StorageClass", "VolumeAttributesClass", "Reason", "Age", "VolumeMode"]
    );
    let pv = json!({"metadata": {"name": "pv1", "creationTimestamp": ago(5)},
        "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain",
                 "claimRef": {"namespace": "default", "name": "data"}, "storageClassName": "standard", "volumeMode": "Filesystem"},
        "status": {"phase": "Bound"}});
    assert_eq!(
        cells("", "PersistentVolume", pv),
        vec![json!("pv1"), json!("10Gi"), json!("RWO,RWX"), json!("Retain"), json!("Bound"), json!("default/data"), json!("standard"),
             json!("<unset>"), json!(""), json!("5s"), json!("Filesystem")]
    );
    assert_eq!(
        headers("", "PersistentVolumeClaim"),
        ["Name", "Status", "Volume", "Capacity", "Access Modes", "StorageClass", "VolumeAttributesClass", "Age", "VolumeMode"]
    );
    let pvc = json!({"metadata": {"name": "data", "creationTimestamp": ago(5)},
        "spec": {"volumeName": "pv1", "storageClassName": "standard", "volumeMode": "Filesystem"},
        "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"]}});
    assert_eq!(
        cells("", "PersistentVolumeClaim", pvc),
        vec![json!("data"), json!("Bound"), json!("pv1"), json!("10Gi"), json!("RWO"), json!("standard"), json!("<unset>"), json!("5s"), json!("Filesystem")]
    );
    let pending = json!({"metadata": {"name": "p"}, "spec": {}, "status": {"phase": "Pending"}});
    let c = cells("", "PersistentVolumeClaim", pending);
    assert_eq!((c[2].clone(), c[3].clone(), c[8].clone()), (json!(""), json!(""), json!("<unset>")));
}

#[test]
fn ingresses_leases_rbac_and_others() {
    assert_eq!(headers("networking.k8s.io", "Ingress"), ["Name", "Class", "Hosts", "Address", "Ports", "Age"]);
    let ing = json!({"metadata": {"name": "web", "creationTimestamp": ago(5)},
        "spec": {"ingressClassName": "nginx", "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}], "tls": [{"hosts": ["a.example.com"]}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}});
    assert_eq!(
        cells("networking.k8s.io", "Ingress", ing),
        vec![json!("web"), json!("nginx"), json!("a.example.com,b.example.com"), json!("203.0.113.7"), json!("80, 443"), json!("5s")]
    );
    let any_host = json!({"metadata": {"name": "x"}, "spec": {"rules": [{}]}});
    let c = cells("networking.k8s.io", "Ingress", any_host);
    assert_eq!((c[1].clone(), c[2].clone(), c[4].clone()), (json!("<none>"), json!("*"), json!("80")));

    assert_eq!(headers("coordination.k8s.io", "Lease"), ["Name", "Holder", "Age"]);
    assert_eq!(
        cells("coordination.k8s.io", "Lease", json!({"metadata": {"name": "n1", "creationTimestamp": ago(5)}, "spec": {"holderIdentity": "n1"}})),
        vec![json!("n1"), json!("n1"), json!("5s")]
    );

    assert_eq!(headers("rbac.authorization.k8s.io", "RoleBinding"), ["Name", "Role", "Age", "Users", "Groups", "ServiceAccounts"]);
    let rb = json!({"metadata": {"name": "rb", "creationTimestamp": ago(5)}, "roleRef": {"kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "name": "jane"}, {"kind": "ServiceAccount", "namespace": "ci", "name": "bot"}, {"kind": "User", "name": "joe"}]});
    assert_eq!(
        cells("rbac.authorization.k8s.io", "RoleBinding", rb),
        vec![json!("rb"), json!("ClusterRole/view"), json!("5s"), json!("jane, joe"), json!(""), json!("ci/bot")]
    );

    assert_eq!(headers("policy", "PodDisruptionBudget"), ["Name", "Min Available", "Max Unavailable", "Allowed Disruptions", "Age"]);
    let pdb = json!({"metadata": {"name": "p"}, "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
    assert_eq!(cells("policy", "PodDisruptionBudget", pdb)[1..4], [json!("50%"), json!("N/A"), json!(1)]);

    assert_eq!(headers("apps", "ControllerRevision"), ["Name", "Controller", "Revision", "Age"]);
    let cr = json!({"metadata": {"name": "ds-1", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "proxy", "controller": true}]}, "revision": 2});
    assert_eq!(cells("apps", "ControllerRevision", cr)[1..3], [json!("daemonset.apps/proxy"), json!(2)]);

    assert_eq!(headers("networking.k8s.io", "NetworkPolicy"), ["Name", "Pod-Selector", "Age"]);
    let np = json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {}}});
    assert_eq!(cells("networking.k8s.io", "NetworkPolicy", np)[1], "<none>");

    assert_eq!(headers("networking.k8s.io", "IngressClass"), ["Name", "Controller", "Parameters", "Age"]);
    assert_eq!(headers("", "ServiceAccount"), ["Name", "Secrets", "Age"]);
}

#[test]
fn defaults_for_crds_and_custom_resources() {
    assert_eq!(headers("apiextensions.k8s.io", "CustomResourceDefinition"), ["Name", "Created At"]);
    assert_eq!(headers("rbac.authorization.k8s.io", "ClusterRole"), ["Name", "Created At"]);
    let defs = column_definitions("apiextensions.k8s.io", "CustomResourceDefinition");
    assert_eq!((defs[0].format.as_str(), defs[1].type_.as_str()), ("name", "date"));
    let crd = json!({"metadata": {"name": "widgets.example.com", "creationTimestamp": "2024-05-01T10:00:00Z"}});
    assert_eq!(cells("apiextensions.k8s.io", "CustomResourceDefinition", crd), vec![json!("widgets.example.com"), json!("2024-05-01T10:00:00Z")]);
    assert_eq!(headers("example.com", "Widget"), ["Name", "Age"]);
    let w = json!({"metadata": {"name": "w1", "creationTimestamp": ago(2 * 86400)}});
    assert_eq!(cells("example.com", "Widget", w), vec![json!("w1"), json!("2d")]);
}

#[test]
fn whole_table_shape_and_include_object() {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "creationTimestamp": ago(5), "resourceVersion": "9"}, "data": {}});
    let t = to_table("", "ConfigMap", std::slice::from_ref(&cm), &json!({"resourceVersion": "10"}), IncludeObject::Metadata, now());
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(t["metadata"], json!({"resourceVersion": "10"}));
    assert_eq!(
        t["columnDefinitions"][0],
        json!({"name": "Name", "type": "string", "format": "name", "description": NAME_DESCRIPTION, "priority": 0})
    );
    assert_eq!(t["columnDefinitions"][2]["description"], CREATION_TIMESTAMP_DESCRIPTION);
    assert_eq!(
        t["rows"][0],
        json!({"cells": ["c", 0, "5s"], "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": cm["metadata"]}})
    );
    let full = to_table("", "ConfigMap", std::slice::from_ref(&cm), &json!({}), IncludeObject::Object, now());
    assert_eq!(full["rows"][0]["object"], cm);
    let none = to_table("", "ConfigMap", &[cm], &Value::Null, IncludeObject::None, now());
    assert!(none["rows"][0].get("object").is_none());
    assert_eq!(none["metadata"], json!({}));
    assert_eq!(to_table("", "Pod", &[], &json!({}), IncludeObject::None, now())["rows"], json!([]));

    assert_eq!(IncludeObject::parse(None), Ok(IncludeObject::Metadata));
    assert_eq!(IncludeObject::parse(Some("None")), Ok(IncludeObject::None));
    assert_eq!(IncludeObject::parse(Some("Object")), Ok(IncludeObject::Object));
    assert!(IncludeObject::parse(Some("All")).unwrap_err().contains("Unsupported value: \"All\""));
}
