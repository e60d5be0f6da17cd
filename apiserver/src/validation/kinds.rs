//! Per-kind spec validation (kube's `ValidatePod`, `ValidateService`,
//! `ValidateDeployment`, …, v1.32), run on every create and on every update of the main
//! resource after defaulting, with kube's field paths and messages.
//!
//! The rules kept are the ones a user meets in practice (required fields, enums, port
//! ranges, selector/template agreement, key syntax, size limits); each function lists
//! them in kube's order so a multi-error message reads the same. Values the typed decoding
//! ([`crate::typed`]) already rejected (a string where a number belongs) never get here.

use std::collections::BTreeSet;

use base64::Engine;
use serde_json::Value;

use super::{is_dns1123_label, is_dns1123_subdomain, max_len_error, regex_error, validate_labels, validate_workload_selector, FieldError};

/// kube's `MaxSecretSize`: the most bytes of data one Secret or ConfigMap may hold (1 MiB).
pub const MAX_SECRET_SIZE_BYTES: usize = 1024 * 1024;
/// Longest port name (an IANA service name).
pub const PORT_NAME_MAX_LENGTH: usize = 15;

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const SESSION_AFFINITIES: &[&str] = &["ClientIP", "None"];
const ACCESS_MODES: &[&str] = &["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"];

/// The spec rules of `group/kind` for `obj` (an object being created, or the new state of
/// an update). Kinds without rules here (and custom resources) give no errors.
pub fn validate_kind(group: &str, kind: &str, obj: &Value) -> Vec<FieldError> {
    let null = Value::Null;
    let spec = obj.get("spec").unwrap_or(&null);
    match (group, kind) {
        ("", "Pod") => validate_pod_spec(spec, "spec"),
        ("", "Service") => validate_service_spec(spec),
        ("", "ConfigMap") => validate_config_map(obj),
        ("", "Secret") => validate_secret(obj),
        ("", "PersistentVolumeClaim") => validate_pvc_spec(spec),
        ("apps", "Deployment") => validate_deployment_spec(spec),
        ("apps", "ReplicaSet") => validate_replicated_spec(spec, "deployment", "ReplicaSet"),
        ("apps", "StatefulSet") => validate_stateful_set_spec(spec),
        ("apps", "DaemonSet") => validate_daemon_set_spec(spec),
        ("batch", "Job") => validate_job_spec(spec, "spec"),
        ("batch", "CronJob") => validate_cron_job_spec(spec),
        _ => Vec::new(),
    }
}

/// An update: the new object's spec rules, then what may not change
/// ([`super::validate_immutable_fields`]), in kube's order.
pub fn validate_kind_update(group: &str, kind: &str, new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_kind(group, kind, new);
    errs.extend(super::validate_immutable_fields(group, kind, new, old));
    errs
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn array_at<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map_or(&[][..], Vec::as_slice)
}

/// kube's `ValidateNonnegativeField`.
fn non_negative(v: &Value, key: &str, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(n) = v.get(key).and_then(Value::as_i64) {
        if n < 0 {
            errs.push(FieldError::invalid(format!("{path}.{key}"), n, "must be greater than or equal to 0"));
        }
    }
}

/// An enum field that may be absent (kube defaults it) but, when set, must be known.
fn one_of(v: &Value, key: &str, path: &str, valid: &[&str], errs: &mut Vec<FieldError>) {
    if let Some(s) = str_at(v, key) {
        if !valid.contains(&s) {
            errs.push(FieldError::not_supported(format!("{path}.{key}"), s, valid));
        }
    }
}

/// kube's `IsValidPortNum`.
pub fn is_valid_port_num(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec!["must be between 1 and 65535, inclusive".to_string()]
    }
}

/// kube's `IsValidPortName` (an IANA_SVC_NAME).
pub fn is_valid_port_name(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.len() > PORT_NAME_MAX_LENGTH {
        errs.push(max_len_error(PORT_NAME_MAX_LENGTH));
    }
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string());
    }
    if !port.bytes().any(|b| b.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

/// kube's `IsConfigMapKey`: data keys of ConfigMaps and Secrets.
pub fn is_config_map_key(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if key.len() > super::DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(super::DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        errs.push(regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            "[-._a-zA-Z0-9]+",
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    match key {
        "." => errs.push("must not be '.'".to_string()),
        ".." => errs.push("must not be '..'".to_string()),
        k if k.starts_with("..") => errs.push("must not start with '..'".to_string()),
        _ => {}
    }
    errs
}

// ---------------------------------------------------------------------------------------
// Pods and pod templates

fn validate_container_ports(ports: &[Value], path: &str, errs: &mut Vec<FieldError>) {
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if let Some(name) = str_at(port, "name").filter(|n| !n.is_empty()) {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                errs.extend(msgs.into_iter().map(|m| FieldError::invalid(format!("{p}.name"), name, m)));
            } else if !names.insert(name) {
                errs.push(FieldError::duplicate(format!("{p}.name"), name));
            }
        }
        match port.get("containerPort").and_then(Value::as_i64).unwrap_or(0) {
            0 => errs.push(FieldError::required(format!("{p}.containerPort"), "")),
            n => errs.extend(is_valid_port_num(n).into_iter().map(|m| FieldError::invalid(format!("{p}.containerPort"), n, m))),
        }
        if let Some(n) = port.get("hostPort").and_then(Value::as_i64).filter(|n| *n != 0) {
            errs.extend(is_valid_port_num(n).into_iter().map(|m| FieldError::invalid(format!("{p}.hostPort"), n, m)));
        }
        match str_at(port, "protocol").unwrap_or("") {
            "" => errs.push(FieldError::required(format!("{p}.protocol"), "")),
            proto if !PROTOCOLS.contains(&proto) => errs.push(FieldError::not_supported(format!("{p}.protocol"), proto, PROTOCOLS)),
            _ => {}
        }
    }
}

/// Containers (or init containers) at `path`: name (a DNS label, unique across both
/// lists: `names` carries the ones seen), image, ports, pull policy.
fn validate_containers(containers: &[Value], path: &str, names: &mut BTreeSet<String>, errs: &mut Vec<FieldError>) {
    for (i, c) in containers.iter().enumerate() {
        let p = format!("{path}[{i}]");
        match str_at(c, "name").unwrap_or("") {
            "" => errs.push(FieldError::required(format!("{p}.name"), "")),
            name => {
                errs.extend(is_dns1123_label(name).into_iter().map(|m| FieldError::invalid(format!("{p}.name"), name, m)));
                if !names.insert(name.to_string()) {
                    errs.push(FieldError::duplicate(format!("{p}.name"), name));
                }
            }
        }
        match str_at(c, "image").unwrap_or("") {
            "" => errs.push(FieldError::required(format!("{p}.image"), "")),
            image if image.trim() != image => {
                errs.push(FieldError::invalid(format!("{p}.image"), image, "must not have leading or trailing whitespace"))
            }
            _ => {}
        }
        validate_container_ports(array_at(c, "ports"), &format!("{p}.ports"), errs);
        one_of(c, "imagePullPolicy", &p, PULL_POLICIES, errs);
    }
}

/// kube's `ValidatePodSpec` (the parts above): containers required, then each container,
/// init containers, restartPolicy and dnsPolicy.
pub fn validate_pod_spec(spec: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    let containers = array_at(spec, "containers");
    if containers.is_empty() {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    validate_containers(containers, &format!("{path}.containers"), &mut names, &mut errs);
    validate_containers(array_at(spec, "initContainers"), &format!("{path}.initContainers"), &mut names, &mut errs);
    match str_at(spec, "restartPolicy") {
        None => {}
        Some("") => errs.push(FieldError::required(format!("{path}.restartPolicy"), "")),
        Some(p) if !RESTART_POLICIES.contains(&p) => {
            errs.push(FieldError::not_supported(format!("{path}.restartPolicy"), p, RESTART_POLICIES))
        }
        Some(_) => {}
    }
    one_of(spec, "dnsPolicy", path, DNS_POLICIES, &mut errs);
    non_negative(spec, "terminationGracePeriodSeconds", path, &mut errs);
    errs
}

/// A pod template at `path` (`spec.template`): its labels and annotations, its pod spec,
/// and (when given) the restart policies the owning kind allows.
fn validate_pod_template(template: &Value, path: &str, restart_policies: Option<&[&str]>) -> Vec<FieldError> {
    let null = Value::Null;
    let meta = template.get("metadata").unwrap_or(&null);
    let mut errs = validate_labels(meta.get("labels").unwrap_or(&null), &format!("{path}.metadata.labels"));
    errs.extend(super::validate_annotations(meta.get("annotations").unwrap_or(&null), &format!("{path}.metadata.annotations")));
    let spec = template.get("spec").unwrap_or(&null);
    errs.extend(validate_pod_spec(spec, &format!("{path}.spec")));
    if let Some(allowed) = restart_policies {
        let policy = str_at(spec, "restartPolicy").unwrap_or("");
        if !allowed.contains(&policy) {
            errs.push(FieldError::not_supported(format!("{path}.spec.restartPolicy"), policy, allowed));
        }
    }
    errs
}

// ---------------------------------------------------------------------------------------
// Workloads

/// The template of a long-running workload: restartPolicy Always and no
/// activeDeadlineSeconds (`owner` is the kind kube names in that message).
fn validate_long_running_template(spec: &Value, owner: &str) -> Vec<FieldError> {
    let null = Value::Null;
    let template = spec.get("template").unwrap_or(&null);
    let mut errs = validate_pod_template(template, "spec.template", Some(&["Always"]));
    if template.pointer("/spec/activeDeadlineSeconds").is_some_and(|v| !v.is_null()) {
        errs.push(FieldError::forbidden("spec.template.spec.activeDeadlineSeconds", format!("activeDeadlineSeconds in {owner} is not Supported")));
    }
    errs
}

/// ReplicaSet (and the common part of Deployment and StatefulSet): replicas, selector,
/// template, minReadySeconds. `kind_word` is what kube says in the empty selector message
/// (ReplicaSets say `deployment`, as kube does); `owner` the kind in the template message.
fn validate_replicated_spec(spec: &Value, kind_word: &str, owner: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    non_negative(spec, "replicas", "spec", &mut errs);
    errs.extend(validate_workload_selector(spec, "spec", kind_word));
    errs.extend(validate_long_running_template(spec, owner));
    non_negative(spec, "minReadySeconds", "spec", &mut errs);
    errs
}

fn validate_deployment_spec(spec: &Value) -> Vec<FieldError> {
    let mut errs = validate_replicated_spec(spec, "deployment", "ReplicaSet");
    if let Some(strategy) = spec.get("strategy") {
        one_of(strategy, "type", "spec.strategy", &["Recreate", "RollingUpdate"], &mut errs);
    }
    non_negative(spec, "revisionHistoryLimit", "spec", &mut errs);
    non_negative(spec, "progressDeadlineSeconds", "spec", &mut errs);
    errs
}

fn validate_stateful_set_spec(spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    one_of(spec, "podManagementPolicy", "spec", &["OrderedReady", "Parallel"], &mut errs);
    if let Some(strategy) = spec.get("updateStrategy") {
        one_of(strategy, "type", "spec.updateStrategy", &["OnDelete", "RollingUpdate"], &mut errs);
    }
    let mut rest = validate_replicated_spec(spec, "statefulset", "StatefulSet");
    errs.append(&mut rest);
    non_negative(spec, "revisionHistoryLimit", "spec", &mut errs);
    errs
}

fn validate_daemon_set_spec(spec: &Value) -> Vec<FieldError> {
    let mut errs = validate_workload_selector(spec, "spec", "daemonset");
    errs.extend(validate_long_running_template(spec, "DaemonSet"));
    if let Some(strategy) = spec.get("updateStrategy") {
        one_of(strategy, "type", "spec.updateStrategy", &["OnDelete", "RollingUpdate"], &mut errs);
    }
    non_negative(spec, "minReadySeconds", "spec", &mut errs);
    non_negative(spec, "revisionHistoryLimit", "spec", &mut errs);
    errs
}

/// A Job spec at `path` (`spec`, or a CronJob's `spec.jobTemplate.spec`). The selector is
/// checked when given (kube generates it; skiff's Jobs may go without).
fn validate_job_spec(spec: &Value, path: &str) -> Vec<FieldError> {
    let null = Value::Null;
    let mut errs = Vec::new();
    for key in ["parallelism", "completions", "activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished"] {
        non_negative(spec, key, path, &mut errs);
    }
    if spec.get("selector").is_some_and(|s| !s.is_null()) {
        errs.extend(validate_workload_selector(spec, path, "job").into_iter().filter(|e| !e.detail.starts_with("empty selector")));
    }
    errs.extend(validate_pod_template(spec.get("template").unwrap_or(&null), &format!("{path}.template"), Some(&["OnFailure", "Never"])));
    errs
}

fn validate_cron_job_spec(spec: &Value) -> Vec<FieldError> {
    let null = Value::Null;
    let mut errs = Vec::new();
    if str_at(spec, "schedule").unwrap_or("").is_empty() {
        errs.push(FieldError::required("spec.schedule", ""));
    }
    one_of(spec, "concurrencyPolicy", "spec", &["Allow", "Forbid", "Replace"], &mut errs);
    let job_spec = spec.pointer("/jobTemplate/spec").unwrap_or(&null);
    errs.extend(validate_job_spec(job_spec, "spec.jobTemplate.spec"));
    errs
}

// ---------------------------------------------------------------------------------------
// Services

fn validate_service_spec(spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let service_type = str_at(spec, "type").unwrap_or("ClusterIP");
    if !SERVICE_TYPES.contains(&service_type) {
        errs.push(FieldError::not_supported("spec.type", service_type, SERVICE_TYPES));
    }
    let headless = str_at(spec, "clusterIP") == Some("None");
    if service_type == "ExternalName" && str_at(spec, "externalName").unwrap_or("").is_empty() {
        errs.push(FieldError::required("spec.externalName", ""));
    }
    let ports = array_at(spec, "ports");
    if ports.is_empty() && !headless && service_type != "ExternalName" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = format!("spec.ports[{i}]");
        match str_at(port, "name").unwrap_or("") {
            "" if ports.len() > 1 => errs.push(FieldError::required(format!("{p}.name"), "")),
            "" => {}
            name => {
                errs.extend(is_dns1123_label(name).into_iter().map(|m| FieldError::invalid(format!("{p}.name"), name, m)));
                if !names.insert(name) {
                    errs.push(FieldError::duplicate(format!("{p}.name"), name));
                }
            }
        }
        let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
        errs.extend(is_valid_port_num(number).into_iter().map(|m| FieldError::invalid(format!("{p}.port"), number, m)));
        match str_at(port, "protocol").unwrap_or("") {
            "" => errs.push(FieldError::required(format!("{p}.protocol"), "")),
            proto if !PROTOCOLS.contains(&proto) => errs.push(FieldError::not_supported(format!("{p}.protocol"), proto, PROTOCOLS)),
            _ => {}
        }
        match port.get("targetPort") {
            Some(Value::Number(n)) => {
                let n = n.as_i64().unwrap_or(0);
                errs.extend(is_valid_port_num(n).into_iter().map(|m| FieldError::invalid(format!("{p}.targetPort"), n, m)));
            }
            Some(Value::String(s)) => {
                errs.extend(is_valid_port_name(s).into_iter().map(|m| FieldError::invalid(format!("{p}.targetPort"), s.as_str(), m)));
            }
            _ => {}
        }
        if let Some(n) = port.get("nodePort").and_then(Value::as_i64).filter(|n| *n != 0) {
            errs.extend(is_valid_port_num(n).into_iter().map(|m| FieldError::invalid(format!("{p}.nodePort"), n, m)));
        }
    }
    errs.extend(validate_labels(spec.get("selector").unwrap_or(&Value::Null), "spec.selector"));
    one_of(spec, "sessionAffinity", "spec", SESSION_AFFINITIES, &mut errs);
    errs
}

// ---------------------------------------------------------------------------------------
// ConfigMaps, Secrets, PersistentVolumeClaims

fn validate_config_map(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = serde_json::Map::new();
    let data = obj.get("data").and_then(Value::as_object).unwrap_or(&empty);
    let binary = obj.get("binaryData").and_then(Value::as_object).unwrap_or(&empty);
    let mut total_bytes = 0usize;
    for (key, value) in data {
        errs.extend(is_config_map_key(key).into_iter().map(|m| FieldError::invalid(format!("data[{key}]"), key.as_str(), m)));
        if binary.contains_key(key) {
            errs.push(FieldError::invalid(format!("data[{key}]"), key.as_str(), "duplicate of key present in binaryData"));
        }
        total_bytes += value.as_str().map_or(0, str::len);
    }
    for (key, value) in binary {
        errs.extend(is_config_map_key(key).into_iter().map(|m| FieldError::invalid(format!("binaryData[{key}]"), key.as_str(), m)));
        if data.contains_key(key) {
            errs.push(FieldError::invalid(format!("binaryData[{key}]"), key.as_str(), "duplicate of key present in data"));
        }
        total_bytes += decoded_len(value);
    }
    if total_bytes > MAX_SECRET_SIZE_BYTES {
        // kube reports this against the whole object: an empty field path.
        errs.push(FieldError::too_long("", MAX_SECRET_SIZE_BYTES));
    }
    errs
}

/// Bytes of a base64 value as stored (kube counts decoded bytes).
fn decoded_len(v: &Value) -> usize {
    let s = v.as_str().unwrap_or("");
    base64::engine::general_purpose::STANDARD.decode(s).map_or(s.len() / 4 * 3, |b| b.len())
}

fn validate_secret(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = serde_json::Map::new();
    let data = obj.get("data").and_then(Value::as_object).unwrap_or(&empty);
    let string_data = obj.get("stringData").and_then(Value::as_object).unwrap_or(&empty);
    let mut total_bytes = 0usize;
    for (key, value) in data {
        errs.extend(is_config_map_key(key).into_iter().map(|m| FieldError::invalid(format!("data[{key}]"), key.as_str(), m)));
        if !string_data.contains_key(key) {
            total_bytes += decoded_len(value);
        }
    }
    // kube folds stringData into data before validating; the same keys are checked here.
    for (key, value) in string_data {
        errs.extend(is_config_map_key(key).into_iter().map(|m| FieldError::invalid(format!("data[{key}]"), key.as_str(), m)));
        total_bytes += value.as_str().map_or(0, str::len);
    }
    if total_bytes > MAX_SECRET_SIZE_BYTES {
        errs.push(FieldError::too_long("data", MAX_SECRET_SIZE_BYTES));
    }
    let has = |k: &str| data.contains_key(k) || string_data.contains_key(k);
    match str_at(obj, "type").unwrap_or("Opaque") {
        "kubernetes.io/tls" => {
            for key in ["tls.key", "tls.crt"] {
                if !has(key) {
                    errs.push(FieldError::required(format!("data[{key}]"), ""));
                }
            }
        }
        "kubernetes.io/dockerconfigjson" if !has(".dockerconfigjson") => errs.push(FieldError::required("data[.dockerconfigjson]", "")),
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(FieldError::required("data[username]", ""));
            errs.push(FieldError::required("data[password]", ""));
        }
        "kubernetes.io/ssh-auth" if !has("ssh-privatekey") => errs.push(FieldError::required("data[ssh-privatekey]", "")),
        _ => {}
    }
    errs
}

fn validate_pvc_spec(spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let modes = array_at(spec, "accessModes");
    if modes.is_empty() {
        errs.push(FieldError::required("spec.accessModes", "at least 1 access mode is required"));
    }
    for mode in modes {
        let mode = mode.as_str().unwrap_or("");
        if !ACCESS_MODES.contains(&mode) {
            errs.push(FieldError::not_supported("spec.accessModes", mode, ACCESS_MODES));
        }
    }
    if spec.pointer("/resources/requests/storage").is_none() {
        errs.push(FieldError::required("spec.resources[storage]", ""));
    }
    if let Some(class) = str_at(spec, "storageClassName").filter(|c| !c.is_empty()) {
        errs.extend(is_dns1123_subdomain(class).into_iter().map(|m| FieldError::invalid("spec.storageClassName", class, m)));
    }
    errs
}

#[cfg(test)]
mod tests;
