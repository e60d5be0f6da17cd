//! What kube-apiserver does on its own: the bootstrap namespaces and the `kubernetes`
//! Service, the namespace finalizer (deleting a terminating namespace's contents, then the
//! namespace), and serving the custom resources CRDs define.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::handlers::{self, AppState, DeleteOptions, State};
use crate::objects;
use crate::resources::ResourceInfo;

/// Namespaces kube-apiserver creates at start.
pub const BOOTSTRAP_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];
/// How often terminating namespaces are rescanned (contents held by finalizers, a full
/// queue, or a restart in the middle of a namespace deletion).
pub const NAMESPACE_RESCAN_INTERVAL: Duration = Duration::from_secs(2);

fn builtin(state: &AppState, group: &str, plural: &str) -> std::sync::Arc<ResourceInfo> {
    state.registry.by_plural(group, plural).expect("built-in resource")
}

/// Creates an object unless it exists (bootstrap is idempotent across restarts).
async fn ensure(state: &AppState, res: &ResourceInfo, namespace: Option<&str>, mut obj: Value) -> anyhow::Result<()> {
    let name = objects::name(&obj).to_string();
    if state.storage.get(&res.key(namespace, &name)).await?.is_some() {
        return Ok(());
    }
    obj["apiVersion"] = json!(res.api_version());
    obj["kind"] = json!(res.kind);
    let meta = objects::metadata_mut(&mut obj);
    meta.insert("uid".into(), json!(objects::new_uid()));
    meta.insert("creationTimestamp".into(), json!(objects::now_rfc3339()));
    if let Some(ns) = namespace {
        meta.insert("namespace".into(), json!(ns));
    }
    crate::defaults::apply(&res.group, &res.kind, &mut obj);
    match handlers::create_object(state, res, namespace, obj, false).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(anyhow::anyhow!("bootstrap {}/{name}: {e}", res.plural)),
    }
}

/// Creates the bootstrap namespaces, the `kubernetes` Service (first address of the
/// service range, port 443 → the secure port) and its Endpoints.
pub async fn run(state: &AppState, advertise_ip: &str, secure_port: u16) -> anyhow::Result<()> {
    let ns = builtin(state, "", "namespaces");
    for name in BOOTSTRAP_NAMESPACES {
        ensure(state, &ns, None, json!({"metadata": {"name": name}, "status": {"phase": "Active"}})).await?;
    }
    let svc = builtin(state, "", "services");
    let ip = state.allocator.first_ip().to_string();
    ensure(
        state,
        &svc,
        Some("default"),
        json!({
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": ip, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": secure_port}], "type": "ClusterIP", "sessionAffinity": "None"},
            "status": {"loadBalancer": {}},
        }),
    )
    .await?;
    let ep = builtin(state, "", "endpoints");
    ensure(
        state,
        &ep,
        Some("default"),
        json!({
            "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": advertise_ip}], "ports": [{"name": "https", "port": secure_port, "protocol": "TCP"}]}],
        }),
    )
    .await?;
    Ok(())
}

/// Deletes what is left in namespace `name`; when nothing is, deletes the namespace.
/// Returns true when the namespace is gone.
async fn finalize_namespace(state: &AppState, name: &str) -> Result<bool, crate::error::ApiError> {
    let mut remaining = 0usize;
    for res in state.registry.all().into_iter().filter(|r| r.namespaced) {
        let keys = state.storage.keys(&res.namespace_prefix(Some(name))).await.map_err(handlers::storage_error)?;
        for key in keys {
            let obj_name = key.rsplit('/').next().unwrap_or("").to_string();
            match handlers::delete_object(state, &res, Some(name), &obj_name, &DeleteOptions::default()).await {
                Ok((_, true)) => {}
                Ok((_, false)) => remaining += 1,
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
    if remaining > 0 {
        return Ok(false);
    }
    // Empty: drop the `kubernetes` finalizer; with no metadata finalizers left the update
    // removes the namespace.
    let ns = builtin(state, "", "namespaces");
    let r = handlers::guaranteed_update(state, &ns, None, name, None, false, None, |existing| {
        let mut new = existing.clone();
        new["spec"]["finalizers"] = json!([]);
        objects::metadata_mut(&mut new).remove("resourceVersion");
        Ok(handlers::Transformed::Write(new))
    })
    .await;
    match r {
        Ok(obj) => Ok(objects::finalizers(&obj).is_empty()),
        Err(e) if e.code == 404 => Ok(true),
        Err(e) => Err(e),
    }
}

/// Names of namespaces marked for deletion.
async fn terminating_namespaces(state: &AppState) -> Vec<String> {
    let ns = builtin(state, "", "namespaces");
    let q = Default::default();
    match handlers::list_objects(state, &ns, None, &crate::filter::Filter::default(), &q).await {
        Ok(l) => l
            .items
            .iter()
            .filter(|o| o.pointer("/metadata/deletionTimestamp").map(|v| !v.is_null()).unwrap_or(false))
            .map(|o| objects::name(o).to_string())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The namespace finalizer: a single task, fed by deletes and by a periodic rescan.
pub async fn namespace_finalizer(state: State, mut queue: mpsc::Receiver<String>) {
    let mut rescan = tokio::time::interval(NAMESPACE_RESCAN_INTERVAL);
    loop {
        let names = tokio::select! {
            n = queue.recv() => match n {
                Some(n) => vec![n],
                None => return,
            },
            _ = rescan.tick() => terminating_namespaces(&state).await,
        };
        for name in names {
            if let Err(e) = finalize_namespace(&state, &name).await {
                tracing::warn!(namespace = %name, error = %e, "namespace finalizer: will retry");
            }
        }
    }
}

/// The resources a CRD defines (one per served version).
fn crd_resources(crd: &Value) -> Vec<ResourceInfo> {
    let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
    let group = spec.get("group").and_then(Value::as_str).unwrap_or("").to_string();
    let names = spec.get("names").cloned().unwrap_or(Value::Null);
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let list = |v: &Value, k: &str| -> Vec<String> {
        v.get(k).and_then(Value::as_array).map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default()
    };
    let plural = s(&names, "plural");
    let kind = s(&names, "kind");
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return Vec::new();
    }
    let singular = Some(s(&names, "singular")).filter(|x| !x.is_empty()).unwrap_or_else(|| kind.to_lowercase());
    let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
    let versions = spec.get("versions").and_then(Value::as_array).cloned().unwrap_or_default();
    versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool).unwrap_or(false))
        .map(|v| ResourceInfo {
            group: group.clone(),
            version: s(v, "name"),
            kind: kind.clone(),
            plural: plural.clone(),
            singular: singular.clone(),
            short_names: list(&names, "shortNames"),
            namespaced,
            verbs: crate::resources::VERBS_ALL.iter().map(|x| x.to_string()).collect(),
            categories: list(&names, "categories"),
            storage_prefix: format!("{group}/{plural}"),
            has_status: v.pointer("/subresources/status").is_some(),
            has_scale: v.pointer("/subresources/scale").is_some(),
            tracks_generation: true,
            custom: true,
        })
        .collect()
}

/// The status kube gives an accepted CRD (names accepted, established).
pub fn crd_status(crd: &Value) -> Value {
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let storage: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| vs.iter().filter(|v| v.get("storage").and_then(Value::as_bool).unwrap_or(false)).filter_map(|v| v.get("name").cloned()).collect())
        .unwrap_or_default();
    let now = objects::now_rfc3339();
    json!({
        "acceptedNames": names,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
        ],
        "storedVersions": storage,
    })
}

/// `/registry/<group>/<plural>/`: where a CRD's custom resources are stored.
pub fn crd_key_prefix(crd: &Value) -> Option<String> {
    crd_resources(crd).first().map(|r| r.key_prefix())
}

pub fn register_crd(state: &AppState, crd: &Value) {
    for r in crd_resources(crd) {
        state.registry.upsert_custom(r);
    }
}

pub fn unregister_crd(state: &AppState, crd: &Value) {
    if let Some(r) = crd_resources(crd).first() {
        state.registry.remove_custom(&r.group, &r.plural);
    }
}

/// Registers the custom resources of every stored CRD (at start).
pub async fn load_crds(state: &AppState) -> anyhow::Result<()> {
    let crd = builtin(state, "apiextensions.k8s.io", "customresourcedefinitions");
    let q = Default::default();
    let listed = handlers::list_objects(state, &crd, None, &crate::filter::Filter::default(), &q)
        .await
        .map_err(|e| anyhow::anyhow!("listing CRDs: {e}"))?;
    for c in &listed.items {
        register_crd(state, c);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_defines_served_versions() {
        let crd = json!({"spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}}, {"name": "v0", "served": false, "storage": false}]}});
        let rs = crd_resources(&crd);
        assert_eq!(rs.len(), 1);
        assert_eq!(rs[0].key(Some("default"), "w"), "/registry/example.com/widgets/default/w");
        assert!(rs[0].has_status);
        assert_eq!(crd_status(&crd)["storedVersions"], json!(["v1"]));
    }
}
