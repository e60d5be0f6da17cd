//! What server-side apply needs to know about a field: is its list atomic, a set, or an
//! associative list (and keyed by which fields), is its struct atomic, and is it a Go
//! non-pointer struct (always present in a typed object, so never "added" by itself).
//!
//! Built-in kinds: the `x-kubernetes-list-type` / `x-kubernetes-list-map-keys` /
//! `x-kubernetes-map-type` / `+structType=atomic` markers of `k8s.io/api` v0.32. Most
//! keyed lists coincide with the strategic-merge `patchMergeKey`
//! ([`crate::patch::field_meta`]), so that table is the fallback and only the
//! differences are listed here: container ports keyed by `containerPort`+`protocol`,
//! service ports by `port`+`protocol`, topology spread constraints by
//! `topologyKey`+`whenUnsatisfiable`, atomic label selectors and object references.
//!
//! Custom resources (no schema at hand): lists atomic, objects granular, `metadata`
//! typed as `ObjectMeta`.

use serde_json::Value;

use super::fieldpath::{OrdValue, PathElement};
use crate::patch::{field_meta, strategic_merge_patch_supported, PatchStrategy};

/// The type of a value being walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    /// Inside a built-in kind: the Go type name when known (`None` = untyped below).
    Builtin { ty: Option<&'static str>, root: bool },
    /// The top level of a custom resource.
    CustomRoot,
    /// Inside a custom resource.
    Custom,
}

/// One key field of an associative list, with the default kube's schema gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyField {
    pub name: &'static str,
    pub default: Option<&'static str>,
}

/// How a list field merges and is owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListKind {
    /// `x-kubernetes-list-type: atomic`: replaced and owned whole.
    Atomic,
    /// `set`: scalars, each owned as `v:<value>`.
    Set,
    /// `map`: items owned as `k:{keys}`.
    Map(Vec<KeyField>),
}

/// The schema of one field.
#[derive(Debug, Clone)]
pub(crate) struct FieldSchema {
    pub ty: Ty,
    pub list: ListKind,
    /// `+structType=atomic` / `+mapType=atomic`: owned and replaced whole.
    pub atomic: bool,
    /// A Go non-pointer struct, or a list without `omitempty`: a typed object always has
    /// it (empty or `null`), so it is never added or removed by itself.
    pub non_pointer: bool,
}

/// The type at the top of an object of `group`/`kind`.
pub(crate) fn root(group: &str, kind: &str) -> Ty {
    if strategic_merge_patch_supported(group, kind) {
        Ty::Builtin { ty: Some(leak_kind(kind)), root: true }
    } else {
        Ty::CustomRoot
    }
}

/// Built-in kind names as `'static` (the tables are keyed by Go type names).
fn leak_kind(kind: &str) -> &'static str {
    const KINDS: &[&str] = &[
        "Binding", "ComponentStatus", "ConfigMap", "Endpoints", "Event", "LimitRange", "Namespace", "Node",
        "PersistentVolume", "PersistentVolumeClaim", "Pod", "PodTemplate", "ReplicationController", "ResourceQuota",
        "Secret", "Service", "ServiceAccount", "ControllerRevision", "DaemonSet", "Deployment", "ReplicaSet",
        "StatefulSet", "Scale", "CronJob", "Job", "Lease", "EndpointSlice", "Ingress", "IngressClass",
        "NetworkPolicy", "PodDisruptionBudget", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
        "CustomResourceDefinition", "APIService", "PriorityClass", "StorageClass", "CertificateSigningRequest",
    ];
    KINDS.iter().copied().find(|k| *k == kind).unwrap_or("Unknown")
}

fn key(name: &'static str) -> KeyField {
    KeyField { name, default: None }
}

/// Go types marked `+structType=atomic` that appear in the served kinds.
fn atomic_type(ty: &str) -> bool {
    matches!(
        ty,
        "LabelSelector" | "OwnerReference" | "LocalObjectReference" | "ConfigMapKeySelector" | "SecretKeySelector"
            | "ObjectFieldSelector" | "ResourceFieldSelector" | "NodeSelector"
    )
}

/// The schema of field `name` inside a value of type `parent`.
pub(crate) fn field(parent: Ty, name: &str) -> FieldSchema {
    let plain = |ty| FieldSchema { ty, list: ListKind::Atomic, atomic: false, non_pointer: false };
    match parent {
        Ty::CustomRoot if name == "metadata" => plain(Ty::Builtin { ty: Some("ObjectMeta"), root: false }),
        Ty::CustomRoot | Ty::Custom => plain(Ty::Custom),
        Ty::Builtin { ty: None, .. } => plain(Ty::Builtin { ty: None, root: false }),
        Ty::Builtin { ty: Some(ty), root } => builtin_field(ty, root, name),
    }
}

fn builtin_field(ty: &'static str, root: bool, name: &str) -> FieldSchema {
    let typed = |t: Option<&'static str>| Ty::Builtin { ty: t, root: false };
    let mut out = FieldSchema { ty: typed(None), list: ListKind::Atomic, atomic: false, non_pointer: false };
    // Overrides: where SSA's markers differ from (or go beyond) the patch metadata.
    let over: Option<(Option<&'static str>, Option<ListKind>)> = match (ty, name) {
        ("Container", "ports") => Some((None, Some(ListKind::Map(vec![key("containerPort"), KeyField { name: "protocol", default: Some("TCP") }])))),
        ("ServiceSpec", "ports") => Some((None, Some(ListKind::Map(vec![key("port"), KeyField { name: "protocol", default: Some("TCP") }])))),
        ("PodSpec", "topologySpreadConstraints") => Some((None, Some(ListKind::Map(vec![key("topologyKey"), key("whenUnsatisfiable")])))),
        ("PodSpec", "imagePullSecrets") => Some((Some("LocalObjectReference"), Some(ListKind::Map(vec![key("name")])))),
        ("ObjectMeta", "ownerReferences") => Some((Some("OwnerReference"), Some(ListKind::Map(vec![key("uid")])))),
        ("Container", "env") => Some((Some("EnvVar"), Some(ListKind::Map(vec![key("name")])))),
        ("EnvVar", "valueFrom") => Some((Some("EnvVarSource"), None)),
        ("EnvVarSource", "configMapKeyRef") => Some((Some("ConfigMapKeySelector"), None)),
        ("EnvVarSource", "secretKeyRef") => Some((Some("SecretKeySelector"), None)),
        ("EnvVarSource", "fieldRef") => Some((Some("ObjectFieldSelector"), None)),
        ("EnvVarSource", "resourceFieldRef") => Some((Some("ResourceFieldSelector"), None)),
        ("Container", "resources") => Some((Some("ResourceRequirements"), None)),
        ("ResourceRequirements", "claims") => Some((None, Some(ListKind::Map(vec![key("name")])))),
        ("PodSpec", "affinity") => Some((Some("Affinity"), None)),
        ("Affinity", "nodeAffinity") => Some((Some("NodeAffinity"), None)),
        ("NodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution") => Some((Some("NodeSelector"), None)),
        ("NetworkPolicy", "spec") => Some((Some("NetworkPolicySpec"), None)),
        ("NetworkPolicySpec", "podSelector") => Some((Some("LabelSelector"), None)),
        (
            "DeploymentSpec" | "ReplicaSetSpec" | "DaemonSetSpec" | "StatefulSetSpec" | "JobSpec" | "PodDisruptionBudgetSpec",
            "selector",
        ) => Some((Some("LabelSelector"), None)),
        ("ServiceSpec" | "ReplicationControllerSpec", "selector") => {
            out.atomic = true;
            Some((None, None))
        }
        _ => None,
    };
    match over {
        Some((elem, list)) => {
            out.ty = typed(elem);
            if let Some(list) = list {
                out.list = list;
            }
        }
        None => {
            if let Some(meta) = field_meta(ty, name) {
                out.ty = typed(meta.ty);
                out.list = match (meta.strategy, meta.merge_key) {
                    (PatchStrategy::Merge, Some(k)) => ListKind::Map(vec![key(k)]),
                    (PatchStrategy::Merge, None) => ListKind::Set,
                    _ => ListKind::Atomic,
                };
            }
        }
    }
    if let Ty::Builtin { ty: Some(t), .. } = out.ty {
        out.atomic |= atomic_type(t);
    }
    out.non_pointer = match (ty, name) {
        (_, "metadata") => true,
        ("PodTemplateSpec" | "JobTemplateSpec", "spec") => true,
        (_, "spec" | "status") => root,
        ("DeploymentSpec" | "ReplicaSetSpec" | "DaemonSetSpec" | "StatefulSetSpec" | "JobSpec", "template") => true,
        ("DeploymentSpec", "strategy") | ("DaemonSetSpec" | "StatefulSetSpec", "updateStrategy") => true,
        ("CronJobSpec", "jobTemplate") | ("Container", "resources") => true,
        // Lists without `omitempty`: a typed object has them as `null`.
        ("PodSpec", "containers") | ("Role" | "ClusterRole", "rules") | ("EndpointSlice", "endpoints") => true,
        _ => false,
    };
    out
}

/// The path element of one item of a non-atomic list; errors as structured-merge-diff
/// words them.
pub(crate) fn list_item_element(list: &ListKind, item: &Value) -> Result<PathElement, String> {
    match list {
        ListKind::Atomic => Err("atomic lists have no item paths".into()),
        ListKind::Set => Ok(PathElement::Value(OrdValue(item.clone()))),
        ListKind::Map(keys) => {
            let Value::Object(obj) = item else {
                return Err("associative list with keys may not have non-map elements".into());
            };
            let mut fields = Vec::with_capacity(keys.len());
            for k in keys {
                let v = match (obj.get(k.name), k.default) {
                    (Some(v), _) if !v.is_null() => v.clone(),
                    (_, Some(d)) => Value::String(d.to_string()),
                    _ => {
                        return Err(format!(
                            "associative list with keys has an element that omits key field {:?} (and doesn't have default value)",
                            k.name
                        ))
                    }
                };
                fields.push((k.name.to_string(), OrdValue(v)));
            }
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(PathElement::Key(fields))
        }
    }
}

/// Built-in kinds with a `status` subresource: their main-resource strategy resets
/// `status`, so kube's field manager ignores it there (`GetResetFields`).
const STATUS_RESET_KINDS: &[(&str, &str)] = &[
    ("", "Namespace"),
    ("", "Node"),
    ("", "PersistentVolume"),
    ("", "PersistentVolumeClaim"),
    ("", "Pod"),
    ("", "ReplicationController"),
    ("", "ResourceQuota"),
    ("", "Service"),
    ("apps", "DaemonSet"),
    ("apps", "Deployment"),
    ("apps", "ReplicaSet"),
    ("apps", "StatefulSet"),
    ("batch", "CronJob"),
    ("batch", "Job"),
    ("networking.k8s.io", "Ingress"),
    ("policy", "PodDisruptionBudget"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("apiregistration.k8s.io", "APIService"),
    ("certificates.k8s.io", "CertificateSigningRequest"),
];

/// Top-level fields a write to `subresource` (`""` = the main resource) of a built-in
/// kind cannot change, so nobody gains or loses them through it: `status` on the main
/// resource, `spec` on `status`.
pub(crate) fn reset_fields(group: &str, kind: &str, subresource: &str) -> &'static [&'static str] {
    if !STATUS_RESET_KINDS.iter().any(|&(g, k)| g == group && k == kind) {
        return &[];
    }
    match subresource {
        "" => &["status"],
        "status" => &["spec"],
        _ => &[],
    }
}
