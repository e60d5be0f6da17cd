//! The cells of each printer's rows, in the order of [`super::columns`]. Values come
//! straight from the object's JSON; absent fields print as kube prints Go zero values.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::columns::Printer;
use super::time::{age_since, clamp_i64, format_rfc3339, human_duration, parse_rfc3339};
use crate::selectors::LabelSelector;

// Helpers over JSON.

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn i(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn arr<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn len_of(v: &Value, pointer: &str) -> i64 {
    match v.pointer(pointer) {
        Some(Value::Object(m)) => m.len() as i64,
        Some(Value::Array(a)) => a.len() as i64,
        _ => 0,
    }
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.into()
    }
}

fn name(obj: &Value) -> Value {
    json!(s(obj, "/metadata/name"))
}

fn age(obj: &Value, now: i128) -> Value {
    json!(age_since(obj.pointer("/metadata/creationTimestamp").and_then(Value::as_str), now))
}

fn since(obj: &Value, pointer: &str, now: i128) -> String {
    age_since(obj.pointer(pointer).and_then(Value::as_str), now)
}

/// kube's `labels.FormatLabels`: `k=v` sorted and comma-joined, `<none>` when empty.
fn format_labels(v: Option<&Value>) -> String {
    let pairs: Vec<String> = v
        .and_then(Value::as_object)
        .map(|m| {
            let mut p: Vec<String> = m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect();
            p.sort();
            p
        })
        .unwrap_or_default();
    if pairs.is_empty() {
        "<none>".into()
    } else {
        pairs.join(",")
    }
}

/// kube's `metav1.FormatLabelSelector`.
fn format_label_selector(v: Option<&Value>) -> String {
    match LabelSelector::from_json(v.unwrap_or(&Value::Null)) {
        Ok(sel) => or_none(&sel.to_string()),
        Err(_) => "<error>".into(),
    }
}

/// kube's `layoutContainerCells`: container names and images, comma-joined.
fn container_cells(spec: &Value) -> (Value, Value) {
    let containers = spec.get("containers").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let names: Vec<&str> = containers.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| s(c, "/image")).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

fn template_cells(obj: &Value, spec_pointer: &str, selector_pointer: Option<&str>) -> Vec<Value> {
    let null = Value::Null;
    let (names, images) = container_cells(obj.pointer(spec_pointer).unwrap_or(&null));
    let mut cells = vec![names, images];
    if let Some(p) = selector_pointer {
        cells.push(json!(format_label_selector(obj.pointer(p))));
    }
    cells
}

fn has_condition(obj: &Value, pointer: &str, type_: &str) -> bool {
    arr(obj, pointer).iter().any(|c| s(c, "/type") == type_ && s(c, "/status") == "True")
}

/// A load balancer status' ingress points: IPs, else hostnames, comma-joined.
fn load_balancer_ingress(status: Option<&Value>) -> String {
    let ingress = status.and_then(|s| s.get("ingress")).and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let points: Vec<&str> = ingress
        .iter()
        .filter_map(|i| {
            let ip = s(i, "/ip");
            let host = s(i, "/hostname");
            if !ip.is_empty() {
                Some(ip)
            } else if !host.is_empty() {
                Some(host)
            } else {
                None
            }
        })
        .collect();
    points.join(",")
}

fn list_with_more(list: &[String], more: bool, count: usize, max: usize) -> String {
    let ret = list.join(",");
    if more {
        return format!("{ret} + {} more...", count - max);
    }
    if ret.is_empty() {
        "<unset>".into()
    } else {
        ret
    }
}

// ---------------------------------------------------------------------------------------
// Cells per kind.

/// The cells of one row and its conditions (`Completed` for finished pods).
pub(crate) fn cells(printer: Printer, obj: &Value, now: i128) -> (Vec<Value>, Option<Value>) {
    use Printer::*;
    let cells = match printer {
        Pod => return pod_cells(obj, now),
        PodTemplate => {
            let (names, images) = container_cells(obj.pointer("/template/spec").unwrap_or(&Value::Null));
            vec![name(obj), names, images, json!(format_labels(obj.pointer("/template/metadata/labels")))]
        }
        PodDisruptionBudget => {
            let or_na = |p: &str| match obj.pointer(p) {
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::String(s)) => s.clone(),
                _ => "N/A".into(),
            };
            vec![
                name(obj),
                json!(or_na("/spec/minAvailable")),
                json!(or_na("/spec/maxUnavailable")),
                json!(i(obj, "/status/disruptionsAllowed")),
                age(obj, now),
            ]
        }
        ReplicationController | ReplicaSet => {
            let mut c = vec![
                name(obj),
                json!(i(obj, "/spec/replicas")),
                json!(i(obj, "/status/replicas")),
                json!(i(obj, "/status/readyReplicas")),
                age(obj, now),
            ];
            if printer == ReplicationController {
                let (names, images) = container_cells(obj.pointer("/spec/template/spec").unwrap_or(&Value::Null));
                c.extend([names, images, json!(format_labels(obj.pointer("/spec/selector")))]);
            } else {
                c.extend(template_cells(obj, "/spec/template/spec", Some("/spec/selector")));
            }
            c
        }
        DaemonSet => {
            let mut c = vec![
                name(obj),
                json!(i(obj, "/status/desiredNumberScheduled")),
                json!(i(obj, "/status/currentNumberScheduled")),
                json!(i(obj, "/status/numberReady")),
                json!(i(obj, "/status/updatedNumberScheduled")),
                json!(i(obj, "/status/numberAvailable")),
                json!(format_labels(obj.pointer("/spec/template/spec/nodeSelector"))),
                age(obj, now),
            ];
            c.extend(template_cells(obj, "/spec/template/spec", Some("/spec/selector")));
            c
        }
        Job => {
            let mut c = vec![name(obj), json!(job_status(obj)), json!(job_completions(obj)), json!(job_duration(obj, now)), age(obj, now)];
            c.extend(template_cells(obj, "/spec/template/spec", Some("/spec/selector")));
            c
        }
        CronJob => {
            let last = match obj.pointer("/status/lastScheduleTime").and_then(Value::as_str) {
                Some(t) => age_since(Some(t), now),
                None => "<none>".into(),
            };
            let suspend = match obj.pointer("/spec/suspend").and_then(Value::as_bool) {
                Some(true) => "True",
                Some(false) => "False",
                None => "<unset>",
            };
            let mut c = vec![
                name(obj),
                json!(s(obj, "/spec/schedule")),
                json!(or_none(s(obj, "/spec/timeZone"))),
                json!(suspend),
                json!(len_of(obj, "/status/active")),
                json!(last),
                age(obj, now),
            ];
            c.extend(template_cells(obj, "/spec/jobTemplate/spec/template/spec", Some("/spec/jobTemplate/spec/selector")));
            c
        }
        Service => service_cells(obj, now),
        Ingress => {
            let rules = arr(obj, "/spec/rules");
            let hosts: Vec<String> =
                rules.iter().map(|r| s(r, "/host").to_string()).filter(|h| !h.is_empty()).take(3).collect();
            let hosts = if hosts.is_empty() {
                "*".to_string()
            } else if rules.len() > 3 {
                format!("{} + {} more...", hosts.join(","), rules.len() - 3)
            } else {
                hosts.join(",")
            };
            let ports = if arr(obj, "/spec/tls").is_empty() { "80" } else { "80, 443" };
            vec![
                name(obj),
                json!(or_none(s(obj, "/spec/ingressClassName"))),
                json!(hosts),
                json!(load_balancer_ingress(obj.pointer("/status/loadBalancer"))),
                json!(ports),
                age(obj, now),
            ]
        }
        IngressClass => {
            let params = match obj.pointer("/spec/parameters") {
                Some(p) if p.is_object() => {
                    let group = s(p, "/apiGroup");
                    if group.is_empty() {
                        format!("{}/{}", s(p, "/kind"), s(p, "/name"))
                    } else {
                        format!("{}.{group}/{}", s(p, "/kind"), s(p, "/name"))
                    }
                }
                _ => "<none>".into(),
            };
            vec![name(obj), json!(s(obj, "/spec/controller")), json!(params), age(obj, now)]
        }
        StatefulSet => {
            let mut c = vec![
                name(obj),
                json!(format!("{}/{}", i(obj, "/status/readyReplicas"), i(obj, "/spec/replicas"))),
                age(obj, now),
            ];
            c.extend(template_cells(obj, "/spec/template/spec", None));
            c
        }
        Endpoints => vec![name(obj), json!(format_endpoints(obj)), age(obj, now)],
        EndpointSlice => {
            let (mut ports, mut count) = (Vec::new(), 0);
            for p in arr(obj, "/ports") {
                if ports.len() < 3 {
                    ports.push(match (p.get("port").and_then(Value::as_i64), p.get("name").and_then(Value::as_str)) {
                        (Some(n), _) => n.to_string(),
                        (None, Some(n)) => n.to_string(),
                        _ => "*".into(),
                    });
                }
                count += 1;
            }
            let ports = list_with_more(&ports, count > 3, count, 3);
            let (mut addrs, mut n) = (Vec::new(), 0);
            for e in arr(obj, "/endpoints") {
                for a in arr(e, "/addresses") {
                    if addrs.len() < 3 {
                        addrs.push(a.as_str().unwrap_or("").to_string());
                    }
                    n += 1;
                }
            }
            let endpoints = list_with_more(&addrs, n > 3, n, 3);
            vec![name(obj), json!(s(obj, "/addressType")), json!(ports), json!(endpoints), age(obj, now)]
        }
        Node => node_cells(obj, now),
        Event => return (event_cells(obj, now), None),
        Namespace => vec![name(obj), json!(s(obj, "/status/phase")), age(obj, now)],
        Secret => vec![name(obj), json!(s(obj, "/type")), json!(len_of(obj, "/data")), age(obj, now)],
        ServiceAccount => vec![name(obj), json!(len_of(obj, "/secrets")), age(obj, now)],
        PersistentVolume => {
            let claim = match obj.pointer("/spec/claimRef") {
                Some(c) if c.is_object() => format!("{}/{}", s(c, "/namespace"), s(c, "/name")),
                _ => String::new(),
            };
            vec![
                name(obj),
                json!(s(obj, "/spec/capacity/storage")),
                json!(access_modes(arr(obj, "/spec/accessModes"))),
                json!(s(obj, "/spec/persistentVolumeReclaimPolicy")),
                json!(s(obj, "/status/phase")),
                json!(claim),
                json!(storage_class(obj)),
                json!(unset_if_empty(s(obj, "/spec/volumeAttributesClassName"))),
                json!(s(obj, "/status/reason")),
                age(obj, now),
                json!(unset_if_empty(s(obj, "/spec/volumeMode"))),
            ]
        }
        PersistentVolumeClaim => {
            let phase = if obj.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
                "Terminating"
            } else {
                s(obj, "/status/phase")
            };
            let bound = !s(obj, "/spec/volumeName").is_empty();
            let (capacity, modes) = if bound {
                (s(obj, "/status/capacity/storage").to_string(), access_modes(arr(obj, "/status/accessModes")))
            } else {
                (String::new(), String::new())
            };
            vec![
                name(obj),
                json!(phase),
                json!(s(obj, "/spec/volumeName")),
                json!(capacity),
                json!(modes),
                json!(storage_class(obj)),
                json!(unset_if_empty(s(obj, "/spec/volumeAttributesClassName"))),
                age(obj, now),
                json!(unset_if_empty(s(obj, "/spec/volumeMode"))),
            ]
        }
        Deployment => {
            let mut c = vec![
                name(obj),
                json!(format!("{}/{}", i(obj, "/status/readyReplicas"), i(obj, "/spec/replicas"))),
                json!(i(obj, "/status/updatedReplicas")),
                json!(i(obj, "/status/availableReplicas")),
                age(obj, now),
            ];
            c.extend(template_cells(obj, "/spec/template/spec", Some("/spec/selector")));
            c
        }
        ConfigMap => vec![name(obj), json!(len_of(obj, "/data") + len_of(obj, "/binaryData")), age(obj, now)],
        NetworkPolicy => vec![name(obj), json!(format_label_selector(obj.pointer("/spec/podSelector"))), age(obj, now)],
        RoleBinding | ClusterRoleBinding => {
            let mut users = Vec::new();
            let mut groups = Vec::new();
            let mut sas = Vec::new();
            for subject in arr(obj, "/subjects") {
                match s(subject, "/kind") {
                    "User" => users.push(s(subject, "/name").to_string()),
                    "Group" => groups.push(s(subject, "/name").to_string()),
                    "ServiceAccount" => sas.push(format!("{}/{}", s(subject, "/namespace"), s(subject, "/name"))),
                    _ => {}
                }
            }
            vec![
                name(obj),
                json!(format!("{}/{}", s(obj, "/roleRef/kind"), s(obj, "/roleRef/name"))),
                age(obj, now),
                json!(users.join(", ")),
                json!(groups.join(", ")),
                json!(sas.join(", ")),
            ]
        }
        Lease => vec![name(obj), json!(s(obj, "/spec/holderIdentity")), age(obj, now)],
        ControllerRevision => {
            let controller = arr(obj, "/metadata/ownerReferences")
                .iter()
                .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
                .map(|r| {
                    let group = s(r, "/apiVersion").rsplit_once('/').map_or("", |(g, _)| g);
                    let kind = if group.is_empty() { s(r, "/kind").to_string() } else { format!("{}.{group}", s(r, "/kind")) };
                    format!("{}/{}", kind.to_lowercase(), s(r, "/name"))
                })
                .unwrap_or_else(|| "<none>".into());
            vec![name(obj), json!(controller), json!(i(obj, "/revision")), age(obj, now)]
        }
        CreatedAt => {
            let created = obj
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .and_then(parse_rfc3339)
                .map_or_else(|| "0001-01-01T00:00:00Z".to_string(), |t| format_rfc3339((t / 1_000_000_000) as i64));
            vec![name(obj), json!(created)]
        }
        Age => vec![name(obj), age(obj, now)],
    };
    (cells, None)
}

fn unset_if_empty(s: &str) -> String {
    if s.is_empty() {
        "<unset>".into()
    } else {
        s.into()
    }
}

/// kube's `GetAccessModesAsString`: RWO, ROX, RWX, RWOP in that order, deduplicated.
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    let mut out = Vec::new();
    for (mode, short) in [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")] {
        if has(mode) {
            out.push(short);
        }
    }
    out.join(",")
}

/// `spec.storageClassName`, else the legacy beta annotation.
fn storage_class(obj: &Value) -> String {
    let class = s(obj, "/spec/storageClassName");
    if !class.is_empty() {
        return class.into();
    }
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get("volume.beta.kubernetes.io/storage-class"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .into()
}

fn job_status(obj: &Value) -> &'static str {
    let c = "/status/conditions";
    if has_condition(obj, c, "Complete") {
        "Complete"
    } else if has_condition(obj, c, "Failed") {
        "Failed"
    } else if obj.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
        "Terminating"
    } else if has_condition(obj, c, "Suspended") {
        "Suspended"
    } else if has_condition(obj, c, "FailureTarget") {
        "FailureTarget"
    } else if has_condition(obj, c, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

fn job_completions(obj: &Value) -> String {
    let succeeded = i(obj, "/status/succeeded");
    match obj.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(completions) => format!("{succeeded}/{completions}"),
        None => {
            let parallelism = i(obj, "/spec/parallelism");
            if parallelism > 1 {
                format!("{succeeded}/1 of {parallelism}")
            } else {
                format!("{succeeded}/1")
            }
        }
    }
}

fn job_duration(obj: &Value, now: i128) -> String {
    let start = obj.pointer("/status/startTime").and_then(Value::as_str).and_then(parse_rfc3339);
    let end = obj.pointer("/status/completionTime").and_then(Value::as_str).and_then(parse_rfc3339);
    match (start, end) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(clamp_i64(now - start)),
        (Some(start), Some(end)) => human_duration(clamp_i64(end - start)),
    }
}

fn service_cells(obj: &Value, now: i128) -> Vec<Value> {
    let svc_type = s(obj, "/spec/type");
    let cluster_ip = arr(obj, "/spec/clusterIPs").first().and_then(Value::as_str).unwrap_or(s(obj, "/spec/clusterIP"));
    let external_ips: Vec<&str> = arr(obj, "/spec/externalIPs").iter().filter_map(Value::as_str).collect();
    let external = match svc_type {
        "ClusterIP" | "NodePort" | "" => or_none(&external_ips.join(",")),
        "LoadBalancer" => {
            let lb = load_balancer_ingress(obj.pointer("/status/loadBalancer"));
            let mut all: Vec<&str> = if lb.is_empty() { Vec::new() } else { lb.split(',').collect() };
            all.extend(&external_ips);
            if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => s(obj, "/spec/externalName").into(),
        _ => "<unknown>".into(),
    };
    let ports: Vec<String> = arr(obj, "/spec/ports")
        .iter()
        .map(|p| {
            let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            let port = i(p, "/port");
            match i(p, "/nodePort") {
                n if n > 0 => format!("{port}:{n}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    vec![
        name(obj),
        json!(svc_type),
        json!(or_none(cluster_ip)),
        json!(external),
        json!(or_none(&ports.join(","))),
        age(obj, now),
        json!(format_labels(obj.pointer("/spec/selector"))),
    ]
}

/// kube's `formatEndpoints` with all ports: up to three `ip:port`, then `+ N more...`.
fn format_endpoints(obj: &Value) -> String {
    let subsets = arr(obj, "/subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let (mut more, mut count) = (false, 0);
    for ss in subsets {
        let addresses = arr(ss, "/addresses");
        let ports = arr(ss, "/ports");
        if ports.is_empty() {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(s(a, "/ip").into());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                let ip = s(a, "/ip");
                let p = i(port, "/port");
                list.push(if ip.contains(':') { format!("[{ip}]:{p}") } else { format!("{ip}:{p}") });
            }
        }
    }
    let ret = list.join(",");
    if more {
        format!("{ret} + {} more...", count - MAX)
    } else {
        ret
    }
}

fn node_cells(obj: &Value, now: i128) -> Vec<Value> {
    let mut status: Vec<String> = Vec::new();
    if let Some(ready) = arr(obj, "/status/conditions").iter().rev().find(|c| s(c, "/type") == "Ready") {
        status.push(if s(ready, "/status") == "True" { "Ready".into() } else { "NotReady".into() });
    }
    if status.is_empty() {
        status.push("Unknown".into());
    }
    if obj.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled".into());
    }
    let mut roles = BTreeSet::new();
    if let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role.to_string());
                }
            } else if k == "kubernetes.io/role" {
                if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                    roles.insert(v.to_string());
                }
            }
        }
    }
    let roles: Vec<String> = roles.into_iter().collect();
    let address = |type_: &str| {
        arr(obj, "/status/addresses")
            .iter()
            .find(|a| s(a, "/type") == type_)
            .map_or_else(|| "<none>".to_string(), |a| s(a, "/address").to_string())
    };
    let unknown_if_empty = |p: &str| {
        let v = s(obj, p);
        if v.is_empty() {
            "<unknown>".to_string()
        } else {
            v.to_string()
        }
    };
    vec![
        name(obj),
        json!(status.join(",")),
        json!(or_none(&roles.join(","))),
        age(obj, now),
        json!(s(obj, "/status/nodeInfo/kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(unknown_if_empty("/status/nodeInfo/osImage")),
        json!(unknown_if_empty("/status/nodeInfo/kernelVersion")),
        json!(unknown_if_empty("/status/nodeInfo/containerRuntimeVersion")),
    ]
}

fn event_cells(obj: &Value, now: i128) -> Vec<Value> {
    let present = |p: &str| obj.pointer(p).and_then(Value::as_str).is_some_and(|t| parse_rfc3339(t).is_some());
    let first = if present("/firstTimestamp") { since(obj, "/firstTimestamp", now) } else { since(obj, "/eventTime", now) };
    let mut last = if present("/lastTimestamp") { since(obj, "/lastTimestamp", now) } else { first.clone() };
    let mut count = i(obj, "/count");
    if obj.get("series").is_some_and(Value::is_object) {
        last = since(obj, "/series/lastObservedTime", now);
        count = i(obj, "/series/count");
    } else if count == 0 {
        count = 1;
    }
    let kind = s(obj, "/involvedObject/kind").to_lowercase();
    let target_name = s(obj, "/involvedObject/name");
    let target = if target_name.is_empty() { kind } else { format!("{kind}/{target_name}") };
    let first_non_empty = |a: &str, b: &str| if a.is_empty() { b.to_string() } else { a.to_string() };
    let component = first_non_empty(s(obj, "/source/component"), s(obj, "/reportingComponent"));
    let instance = first_non_empty(s(obj, "/source/host"), s(obj, "/reportingInstance"));
    let source = if instance.is_empty() { component } else { format!("{component}, {instance}") };
    vec![
        json!(last),
        json!(s(obj, "/type")),
        json!(s(obj, "/reason")),
        json!(target),
        json!(s(obj, "/involvedObject/fieldPath")),
        json!(source),
        json!(s(obj, "/message").trim()),
        json!(first),
        json!(count),
        name(obj),
    ]
}

fn is_restartable_init_container(spec: &Value, container_name: &str) -> bool {
    arr(spec, "/initContainers")
        .iter()
        .any(|c| s(c, "/name") == container_name && s(c, "/restartPolicy") == "Always")
}

/// kube's `printPod`: READY is ready/total containers (restartable init containers count),
/// STATUS the most telling reason (init progress, a waiting or terminated reason,
/// `Terminating`, …), RESTARTS with the time of the last restart.
fn pod_cells(pod: &Value, now: i128) -> (Vec<Value>, Option<Value>) {
    let null = Value::Null;
    let spec = pod.get("spec").unwrap_or(&null);
    let phase = s(pod, "/status/phase");
    let mut reason = if s(pod, "/status/reason").is_empty() { phase.to_string() } else { s(pod, "/status/reason").to_string() };
    if arr(pod, "/status/conditions").iter().any(|c| s(c, "/type") == "PodScheduled" && s(c, "/reason") == "SchedulingGated") {
        reason = "SchedulingGated".into();
    }
    let conditions = match phase {
        "Succeeded" => Some(json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}])),
        "Failed" => Some(json!([{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}])),
        _ => None,
    };

    let init_containers = arr(spec, "/initContainers");
    let total = arr(spec, "/containers").len()
        + init_containers.iter().filter(|c| s(c, "/restartPolicy") == "Always").count();
    let mut ready = 0;
    let mut restarts = 0i64;
    let mut restartable_restarts = 0i64;
    let mut last_restart: Option<i128> = None;
    let mut last_restartable_restart: Option<i128> = None;
    let later = |a: Option<i128>, b: Option<i128>| match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let finished_at = |c: &Value| {
        c.pointer("/lastState/terminated/finishedAt").and_then(Value::as_str).and_then(parse_rfc3339)
    };

    let mut initializing = false;
    let init_statuses = arr(pod, "/status/initContainerStatuses");
    for (idx, c) in init_statuses.iter().enumerate() {
        restarts += i(c, "/restartCount");
        last_restart = later(last_restart, finished_at(c));
        let restartable = is_restartable_init_container(spec, s(c, "/name"));
        if restartable {
            restartable_restarts += i(c, "/restartCount");
            last_restartable_restart = later(last_restartable_restart, finished_at(c));
        }
        let terminated = c.pointer("/state/terminated").filter(|t| t.is_object());
        let waiting = c.pointer("/state/waiting").filter(|t| t.is_object());
        if terminated.is_some_and(|t| i(t, "/exitCode") == 0) {
            continue;
        }
        if restartable && c.get("started").and_then(Value::as_bool) == Some(true) {
            if c.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            reason = if !s(t, "/reason").is_empty() {
                format!("Init:{}", s(t, "/reason"))
            } else if i(t, "/signal") != 0 {
                format!("Init:Signal:{}", i(t, "/signal"))
            } else {
                format!("Init:ExitCode:{}", i(t, "/exitCode"))
            };
        } else if let Some(w) = waiting.filter(|w| !s(w, "/reason").is_empty() && s(w, "/reason") != "PodInitializing") {
            reason = format!("Init:{}", s(w, "/reason"));
        } else {
            reason = format!("Init:{idx}/{}", init_containers.len());
        }
        initializing = true;
        break;
    }

    let initialized = arr(pod, "/status/conditions").iter().any(|c| s(c, "/type") == "Initialized" && s(c, "/status") == "True");
    if !initializing || initialized {
        restarts = restartable_restarts;
        last_restart = last_restartable_restart;
        let mut has_running = false;
        for c in arr(pod, "/status/containerStatuses").iter().rev() {
            restarts += i(c, "/restartCount");
            last_restart = later(last_restart, finished_at(c));
            let terminated = c.pointer("/state/terminated").filter(|t| t.is_object());
            let waiting = c.pointer("/state/waiting").filter(|t| t.is_object());
            let running = c.pointer("/state/running").is_some_and(Value::is_object);
            if let Some(w) = waiting.filter(|w| !s(w, "/reason").is_empty()) {
                reason = s(w, "/reason").into();
            } else if let Some(t) = terminated {
                reason = if !s(t, "/reason").is_empty() {
                    s(t, "/reason").into()
                } else if i(t, "/signal") != 0 {
                    format!("Signal:{}", i(t, "/signal"))
                } else {
                    format!("ExitCode:{}", i(t, "/exitCode"))
                };
            } else if c.get("ready").and_then(Value::as_bool) == Some(true) && running {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = arr(pod, "/status/conditions").iter().any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True");
            reason = if pod_ready { "Running".into() } else { "NotReady".into() };
        }
    }

    let deleting = pod.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null());
    if deleting && s(pod, "/status/reason") == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }

    let restarts_cell = match last_restart {
        Some(t) => format!("{restarts} ({} ago)", human_duration(clamp_i64(now - t))),
        None => restarts.to_string(),
    };
    let pod_ip = arr(pod, "/status/podIPs").first().map(|p| s(p, "/ip")).filter(|ip| !ip.is_empty()).unwrap_or(s(pod, "/status/podIP"));
    let gates = arr(spec, "/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conds = arr(pod, "/status/conditions");
        let true_count = gates
            .iter()
            .filter(|g| {
                conds.iter().find(|c| s(c, "/type") == s(g, "/conditionType")).is_some_and(|c| s(c, "/status") == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };
    let cells = vec![
        name(pod),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        age(pod, now),
        json!(or_none(pod_ip)),
        json!(or_none(s(spec, "/nodeName"))),
        json!(or_none(s(pod, "/status/nominatedNodeName"))),
        json!(readiness_gates),
    ];
    (cells, conditions)
}
