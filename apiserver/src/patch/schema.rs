//! Patch metadata of the built-in kinds: which lists strategic merge patch merges, and by
//! which key. Transcribed from the `patchStrategy` / `patchMergeKey` struct tags of
//! `k8s.io/api` v0.32 and `k8s.io/apimachinery` (ObjectMeta).
//!
//! Types are named by their Go type name; [`field_meta`] maps (type, JSON field) to the
//! field's strategy and the type of its value (or of its list elements). A field not listed
//! behaves as kube's default: maps merge, lists are replaced whole.

/// How strategic merge patch combines a field's original and patch values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchStrategy {
    /// No tag: maps merge key by key, lists and scalars are replaced.
    Default,
    /// `patchStrategy:"merge"`: lists merge (by `merge_key` for lists of maps, as a set for
    /// lists of scalars).
    Merge,
    /// `patchStrategy:"replace"`: a map is replaced whole.
    Replace,
}

/// The patch metadata of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldMeta {
    pub strategy: PatchStrategy,
    /// `patchMergeKey`: the key identifying an element of a merged list of maps.
    pub merge_key: Option<&'static str>,
    /// `retainKeys` is part of the strategy (only matters to patch *generation*; the
    /// `$retainKeys` directive is honoured wherever it appears).
    pub retain_keys: bool,
    /// Go type of the value (for a list: of its elements), to look up nested fields.
    pub ty: Option<&'static str>,
}

const fn typed(ty: &'static str) -> FieldMeta {
    FieldMeta { strategy: PatchStrategy::Default, merge_key: None, retain_keys: false, ty: Some(ty) }
}

const fn merge_by(key: &'static str, ty: Option<&'static str>) -> FieldMeta {
    FieldMeta { strategy: PatchStrategy::Merge, merge_key: Some(key), retain_keys: false, ty }
}

const fn merge_by_retain(key: &'static str, ty: Option<&'static str>) -> FieldMeta {
    FieldMeta { strategy: PatchStrategy::Merge, merge_key: Some(key), retain_keys: true, ty }
}

const MERGE_SCALARS: FieldMeta = FieldMeta { strategy: PatchStrategy::Merge, merge_key: None, retain_keys: false, ty: None };

/// The patch metadata of `field` inside a value of Go type `ty`; `None` = default
/// behaviour, untyped below.
pub fn field_meta(ty: &str, field: &str) -> Option<FieldMeta> {
    let conditions = merge_by("type", None);
    Some(match (ty, field) {
        (_, "metadata") if ty != "ObjectMeta" => typed("ObjectMeta"),
        ("ObjectMeta", "ownerReferences") => merge_by("uid", None),
        ("ObjectMeta", "finalizers") => MERGE_SCALARS,

        ("PodTemplateSpec", "spec") | ("Pod", "spec") => typed("PodSpec"),
        ("Pod", "status") => typed("PodStatus"),
        ("PodTemplate", "template") => typed("PodTemplateSpec"),
        ("PodSpec", "containers" | "initContainers" | "ephemeralContainers") => merge_by("name", Some("Container")),
        ("PodSpec", "volumes") => merge_by_retain("name", None),
        ("PodSpec", "imagePullSecrets" | "schedulingGates") => merge_by("name", None),
        ("PodSpec", "resourceClaims") => merge_by_retain("name", None),
        ("PodSpec", "hostAliases") => merge_by("ip", None),
        ("PodSpec", "topologySpreadConstraints") => merge_by("topologyKey", None),
        ("Container", "ports") => merge_by("containerPort", None),
        ("Container", "env") => merge_by("name", None),
        ("Container", "volumeMounts") => merge_by("mountPath", None),
        ("Container", "volumeDevices") => merge_by("devicePath", None),
        ("PodStatus", "conditions") => conditions,
        ("PodStatus", "podIPs" | "hostIPs") => merge_by("ip", None),
        ("PodStatus", "resourceClaimStatuses") => merge_by_retain("name", None),
        ("PodStatus", "containerStatuses" | "initContainerStatuses" | "ephemeralContainerStatuses") => typed("ContainerStatus"),
        ("ContainerStatus", "volumeMounts") => merge_by("mountPath", None),
        ("ContainerStatus", "allocatedResourcesStatus") => merge_by("name", None),

        ("Service", "spec") => typed("ServiceSpec"),
        ("Service", "status") => typed("ServiceStatus"),
        ("ServiceSpec", "ports") => merge_by("port", None),
        ("ServiceAccount", "secrets") => merge_by("name", None),
        ("Node", "spec") => typed("NodeSpec"),
        ("Node", "status") => typed("NodeStatus"),
        ("NodeSpec", "podCIDRs") => MERGE_SCALARS,
        ("NodeStatus", "addresses") => merge_by("type", None),
        ("Namespace", "status") => typed("NamespaceStatus"),
        ("PersistentVolumeClaim", "status") => typed("PersistentVolumeClaimStatus"),
        ("ReplicationController", "spec") => typed("ReplicationControllerSpec"),
        ("ReplicationController", "status") => typed("ReplicationControllerStatus"),
        ("ReplicationControllerSpec", "template") => typed("PodTemplateSpec"),
        ("ComponentStatus", "conditions") => conditions,

        ("Deployment", "spec") => typed("DeploymentSpec"),
        ("Deployment", "status") => typed("DeploymentStatus"),
        ("DeploymentSpec", "template") => typed("PodTemplateSpec"),
        ("DeploymentSpec", "strategy") => FieldMeta { retain_keys: true, ..typed("DeploymentStrategy") },
        ("ReplicaSet", "spec") => typed("ReplicaSetSpec"),
        ("ReplicaSet", "status") => typed("ReplicaSetStatus"),
        ("ReplicaSetSpec" | "DaemonSetSpec" | "StatefulSetSpec" | "JobSpec", "template") => typed("PodTemplateSpec"),
        ("DaemonSet", "spec") => typed("DaemonSetSpec"),
        ("DaemonSet", "status") => typed("DaemonSetStatus"),
        ("StatefulSet", "spec") => typed("StatefulSetSpec"),
        ("StatefulSet", "status") => typed("StatefulSetStatus"),
        ("Job", "spec") => typed("JobSpec"),
        ("Job", "status") => typed("JobStatus"),
        ("CronJob", "spec") => typed("CronJobSpec"),
        ("CronJobSpec", "jobTemplate") => typed("JobTemplateSpec"),
        ("JobTemplateSpec", "spec") => typed("JobSpec"),

        ("PodDisruptionBudget", "spec") => typed("PodDisruptionBudgetSpec"),
        ("PodDisruptionBudget", "status") => typed("PodDisruptionBudgetStatus"),
        ("PodDisruptionBudgetSpec", "selector") => FieldMeta { strategy: PatchStrategy::Replace, ..typed("LabelSelector") },

        (
            "NamespaceStatus" | "PersistentVolumeClaimStatus" | "ReplicationControllerStatus" | "ServiceStatus"
            | "NodeStatus" | "DeploymentStatus" | "ReplicaSetStatus" | "DaemonSetStatus" | "StatefulSetStatus"
            | "JobStatus" | "PodDisruptionBudgetStatus",
            "conditions",
        ) => conditions,
        _ => return None,
    })
}

/// Built-in kinds served with strategic merge patch, as `(group, kind)`. Custom resources
/// (and any kind not listed) have no patch metadata, so kube refuses SMP for them with 415.
const SMP_KINDS: &[(&str, &str)] = &[
    ("", "Binding"),
    ("", "ComponentStatus"),
    ("", "ConfigMap"),
    ("", "Endpoints"),
    ("", "Event"),
    ("", "LimitRange"),
    ("", "Namespace"),
    ("", "Node"),
    ("", "PersistentVolume"),
    ("", "PersistentVolumeClaim"),
    ("", "Pod"),
    ("", "PodTemplate"),
    ("", "ReplicationController"),
    ("", "ResourceQuota"),
    ("", "Secret"),
    ("", "Service"),
    ("", "ServiceAccount"),
    ("apps", "ControllerRevision"),
    ("apps", "DaemonSet"),
    ("apps", "Deployment"),
    ("apps", "ReplicaSet"),
    ("apps", "StatefulSet"),
    ("autoscaling", "Scale"),
    ("batch", "CronJob"),
    ("batch", "Job"),
    ("coordination.k8s.io", "Lease"),
    ("discovery.k8s.io", "EndpointSlice"),
    ("events.k8s.io", "Event"),
    ("networking.k8s.io", "Ingress"),
    ("networking.k8s.io", "IngressClass"),
    ("networking.k8s.io", "NetworkPolicy"),
    ("policy", "PodDisruptionBudget"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io", "Role"),
    ("rbac.authorization.k8s.io", "RoleBinding"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("apiregistration.k8s.io", "APIService"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("storage.k8s.io", "StorageClass"),
    ("certificates.k8s.io", "CertificateSigningRequest"),
];

/// Whether kube-apiserver accepts `application/strategic-merge-patch+json` for objects of
/// this group (`""` = core) and kind: built-in kinds yes, custom resources no.
pub fn strategic_merge_patch_supported(group: &str, kind: &str) -> bool {
    SMP_KINDS.iter().any(|&(g, k)| g == group && k == kind)
}

/// The patch metadata of a dotted field path (no indices) in an object of `kind`, e.g.
/// `("Deployment", "spec.template.spec.containers")` → merge by `name`;
/// `("Pod", "spec.containers.env")` → merge by `name`; `("Pod", "spec.tolerations")` →
/// `None` (atomic: replaced whole).
pub fn field_meta_for_path(kind: &str, path: &str) -> Option<FieldMeta> {
    let mut ty: &str = kind;
    let mut meta = None;
    for (i, field) in path.split('.').enumerate() {
        if i > 0 {
            ty = meta.and_then(|m: FieldMeta| m.ty)?;
        }
        meta = Some(field_meta(ty, field)?);
    }
    meta
}
