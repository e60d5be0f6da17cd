//! The resource table: every kind this server serves, with what discovery says about it
//! (group, version, kind, plural, singular, short names, scope, verbs, categories,
//! subresources) and where kube-apiserver keeps it in etcd.
//!
//! Key layout (kube-apiserver's, so a skiff-written etcd reads like a kube-written one):
//! `/registry/<prefix>/<namespace>/<name>` for namespaced kinds, `/registry/<prefix>/<name>`
//! otherwise. `<prefix>` is the plural, except kube's historical special cases:
//! services → `services/specs`, endpoints → `services/endpoints`, nodes → `minions`,
//! ingresses → `ingress`, CRDs → `apiextensions.k8s.io/customresourcedefinitions`, and
//! custom resources → `<group>/<plural>`.

use std::sync::Arc;

use parking_lot::RwLock;

/// The verbs of an ordinary resource, as discovery lists them.
pub const VERBS_ALL: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
/// Namespaces have no deletecollection (as in kube).
pub const VERBS_NO_DELETECOLLECTION: &[&str] = &["create", "delete", "get", "list", "patch", "update", "watch"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub namespaced: bool,
    pub verbs: Vec<String>,
    pub categories: Vec<String>,
    /// Path under `/registry/` (see the module doc).
    pub storage_prefix: String,
    /// Has a `status` subresource: the main resource ignores status changes.
    pub has_status: bool,
    /// Has a `scale` subresource (autoscaling/v1 Scale over `spec.replicas`).
    pub has_scale: bool,
    /// `metadata.generation` is bumped when `spec` changes.
    pub tracks_generation: bool,
    /// Served generically from a CustomResourceDefinition (no typed decoding).
    pub custom: bool,
}

impl ResourceInfo {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `/registry/<prefix>/` — every object of this resource lives under it.
    pub fn key_prefix(&self) -> String {
        format!("/registry/{}/", self.storage_prefix)
    }

    /// Prefix of one namespace's objects (or of all objects for cluster-scoped kinds).
    pub fn namespace_prefix(&self, namespace: Option<&str>) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("/registry/{}/{}/", self.storage_prefix, ns),
            _ => self.key_prefix(),
        }
    }

    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("/registry/{}/{}/{}", self.storage_prefix, ns, name),
            _ => format!("/registry/{}/{}", self.storage_prefix, name),
        }
    }

    /// The URL path of a collection (for `selfLink`-free messages and tests).
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let base = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{base}/namespaces/{ns}/{}", self.plural),
            _ => format!("{base}/{}", self.plural),
        }
    }

    pub fn subresources(&self) -> Vec<&'static str> {
        let mut subs = Vec::new();
        if self.has_status {
            subs.push("status");
        }
        if self.has_scale {
            subs.push("scale");
        }
        if self.group.is_empty() && self.plural == "pods" {
            subs.push("binding");
        }
        subs
    }
}

/// One row of the built-in table, in a compact form.
struct Row {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    namespaced: bool,
    all: bool,
    status: bool,
    scale: bool,
    generation: bool,
    prefix: Option<&'static str>,
}

const fn row(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    namespaced: bool,
) -> Row {
    Row { group, version, kind, plural, short, namespaced, all: false, status: false, scale: false, generation: false, prefix: None }
}

impl Row {
    const fn all(mut self) -> Self {
        self.all = true;
        self
    }
    const fn status(mut self) -> Self {
        self.status = true;
        self
    }
    const fn scale(mut self) -> Self {
        self.scale = true;
        self
    }
    const fn generation(mut self) -> Self {
        self.generation = true;
        self
    }
    const fn prefix(mut self, p: &'static str) -> Self {
        self.prefix = Some(p);
        self
    }
}

const NS: bool = true;
const CLUSTER: bool = false;

/// Built-in resources (issue 6's list), with kube's short names and categories.
fn builtin_rows() -> Vec<Row> {
    vec![
        row("", "v1", "Namespace", "namespaces", &["ns"], CLUSTER).status(),
        row("", "v1", "Pod", "pods", &["po"], NS).all().status(),
        row("", "v1", "Service", "services", &["svc"], NS).all().status().prefix("services/specs"),
        row("", "v1", "Endpoints", "endpoints", &["ep"], NS).prefix("services/endpoints"),
        row("", "v1", "ConfigMap", "configmaps", &["cm"], NS),
        row("", "v1", "Secret", "secrets", &[], NS),
        row("", "v1", "Node", "nodes", &["no"], CLUSTER).status().prefix("minions"),
        row("", "v1", "Event", "events", &["ev"], NS),
        row("", "v1", "ServiceAccount", "serviceaccounts", &["sa"], NS),
        row("", "v1", "PersistentVolume", "persistentvolumes", &["pv"], CLUSTER).status(),
        row("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", &["pvc"], NS).status(),
        row("", "v1", "LimitRange", "limitranges", &["limits"], NS),
        row("", "v1", "ResourceQuota", "resourcequotas", &["quota"], NS).status(),
        row("apps", "v1", "Deployment", "deployments", &["deploy"], NS).all().status().scale().generation(),
        row("apps", "v1", "ReplicaSet", "replicasets", &["rs"], NS).all().status().scale().generation(),
        row("apps", "v1", "DaemonSet", "daemonsets", &["ds"], NS).all().status().generation(),
        row("apps", "v1", "StatefulSet", "statefulsets", &["sts"], NS).all().status().scale().generation(),
        row("apps", "v1", "ControllerRevision", "controllerrevisions", &[], NS),
        row("batch", "v1", "Job", "jobs", &[], NS).all().status().generation(),
        row("batch", "v1", "CronJob", "cronjobs", &["cj"], NS).all().status().generation(),
        row("coordination.k8s.io", "v1", "Lease", "leases", &[], NS),
        row("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", &[], NS),
        row("networking.k8s.io", "v1", "Ingress", "ingresses", &["ing"], NS).status().generation().prefix("ingress"),
        row("networking.k8s.io", "v1", "IngressClass", "ingressclasses", &[], CLUSTER),
        row("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", &["netpol"], NS).generation(),
        row("rbac.authorization.k8s.io", "v1", "Role", "roles", &[], NS),
        row("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", &[], NS),
        row("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", &[], CLUSTER),
        row("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", &[], CLUSTER),
        row("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", &["pdb"], NS).status().generation(),
        row("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", &["crd", "crds"], CLUSTER)
            .status()
            .generation()
            .prefix("apiextensions.k8s.io/customresourcedefinitions"),
    ]
}

fn from_row(r: Row) -> ResourceInfo {
    let verbs = if r.plural == "namespaces" { VERBS_NO_DELETECOLLECTION } else { VERBS_ALL };
    ResourceInfo {
        group: r.group.into(),
        version: r.version.into(),
        kind: r.kind.into(),
        plural: r.plural.into(),
        singular: r.kind.to_lowercase(),
        short_names: r.short.iter().map(|s| s.to_string()).collect(),
        namespaced: r.namespaced,
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        categories: if r.all { vec!["all".into()] } else { Vec::new() },
        storage_prefix: r.prefix.unwrap_or(r.plural).into(),
        has_status: r.status,
        has_scale: r.scale,
        tracks_generation: r.generation,
        custom: false,
    }
}

/// The set of served resources. Built-ins are fixed; the lock is for custom resources
/// added and removed as CRDs come and go (no other lock is taken while it is held).
pub struct Registry {
    resources: RwLock<Vec<Arc<ResourceInfo>>>,
}

impl Registry {
    pub fn builtin() -> Registry {
        Registry { resources: RwLock::new(builtin_rows().into_iter().map(|r| Arc::new(from_row(r))).collect()) }
    }

    pub fn all(&self) -> Vec<Arc<ResourceInfo>> {
        self.resources.read().clone()
    }

    pub fn by_plural(&self, group: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.resources.read().iter().find(|r| r.group == group && r.plural == plural).cloned()
    }

    /// The resource served at `group/version` with this plural.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.resources
            .read()
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    /// Groups in discovery order (built-ins first, in table order), each with its versions.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for r in self.resources.read().iter() {
            if r.group.is_empty() {
                continue;
            }
            match out.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) => {
                    if !versions.contains(&r.version) {
                        versions.push(r.version.clone());
                    }
                }
                None => out.push((r.group.clone(), vec![r.version.clone()])),
            }
        }
        out
    }

    /// Adds (or replaces) a custom resource.
    pub fn upsert_custom(&self, info: ResourceInfo) {
        let mut all = self.resources.write();
        all.retain(|r| !(r.custom && r.group == info.group && r.plural == info.plural && r.version == info.version));
        all.push(Arc::new(info));
    }

    /// Removes every version of a custom resource.
    pub fn remove_custom(&self, group: &str, plural: &str) {
        self.resources.write().retain(|r| !(r.custom && r.group == group && r.plural == plural));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_kube_layout() {
        let reg = Registry::builtin();
        let check = |group: &str, plural: &str, ns: Option<&str>, want: &str| {
            let r = reg.by_plural(group, plural).unwrap();
            assert_eq!(r.key(ns, "x"), want, "{group}/{plural}");
        };
        check("", "pods", Some("default"), "/registry/pods/default/x");
        check("", "services", Some("default"), "/registry/services/specs/default/x");
        check("", "endpoints", Some("default"), "/registry/services/endpoints/default/x");
        check("", "nodes", None, "/registry/minions/x");
        check("", "namespaces", None, "/registry/namespaces/x");
        check("apps", "deployments", Some("a"), "/registry/deployments/a/x");
        check("networking.k8s.io", "ingresses", Some("a"), "/registry/ingress/a/x");
        check("policy", "poddisruptionbudgets", Some("a"), "/registry/poddisruptionbudgets/a/x");
        check("apiextensions.k8s.io", "customresourcedefinitions", None, "/registry/apiextensions.k8s.io/customresourcedefinitions/x");
        check("coordination.k8s.io", "leases", Some("kube-node-lease"), "/registry/leases/kube-node-lease/x");
        check("rbac.authorization.k8s.io", "clusterroles", None, "/registry/clusterroles/x");
    }

    #[test]
    fn every_issue_resource_is_served() {
        let reg = Registry::builtin();
        assert_eq!(reg.all().len(), 31);
        assert_eq!(reg.by_plural("apps", "deployments").unwrap().short_names, vec!["deploy"]);
        assert!(reg.by_plural("", "pods").unwrap().categories.contains(&"all".to_string()));
        assert!(!reg.by_plural("", "namespaces").unwrap().verbs.contains(&"deletecollection".to_string()));
    }
}
