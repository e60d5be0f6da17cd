//! Aggregated discovery (`apidiscovery.k8s.io/v2`, and `v2beta1` for older clients): `GET
//! /api` and `GET /apis` answer one `APIGroupDiscoveryList` holding every group, version
//! and resource, so a client learns the whole API in two requests instead of one per
//! group-version.
//!
//! Negotiated by `Accept`, the first acceptable entry winning, as kube-apiserver does.
//! kubectl 1.32 sends
//! `application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json`
//! and recognises the aggregated answer by its `Content-Type` (the same parameters), so
//! the response names the exact version served and carries `Vary: Accept` for caches.
//!
//! Shape, per kube's installer: each version lists its resources sorted by name, each
//! with `responseKind` (empty group and version for a built-in kind, the full
//! group-version for a custom resource and for subresources of another group, e.g.
//! `scale` → `autoscaling/v1 Scale`), `scope` `Cluster` or `Namespaced`, and its
//! subresources; every version is `freshness: Current` (nothing is aggregated from
//! another server, so nothing can be stale).

use serde_json::{json, Value};

use crate::error::ApiError;
use crate::resources::{Registry, ResourceInfo};

/// Which discovery document a request for `/api` or `/apis` gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryFormat {
    /// `APIVersions` / `APIGroupList` (plain `application/json`).
    Legacy,
    /// `APIGroupDiscoveryList` in `apidiscovery.k8s.io/v2`.
    V2,
    /// `APIGroupDiscoveryList` in `apidiscovery.k8s.io/v2beta1` (clients before 1.30).
    V2Beta1,
}

const GROUP: &str = "apidiscovery.k8s.io";
const LIST_KIND: &str = "APIGroupDiscoveryList";

impl DiscoveryFormat {
    /// The `Content-Type` of the response.
    pub fn content_type(self) -> &'static str {
        match self {
            DiscoveryFormat::Legacy => "application/json",
            DiscoveryFormat::V2 => "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
            DiscoveryFormat::V2Beta1 => "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
        }
    }

    fn api_version(self) -> Option<&'static str> {
        match self {
            DiscoveryFormat::Legacy => None,
            DiscoveryFormat::V2 => Some("apidiscovery.k8s.io/v2"),
            DiscoveryFormat::V2Beta1 => Some("apidiscovery.k8s.io/v2beta1"),
        }
    }
}

/// Picks the discovery format from `Accept`. Protobuf and unknown `as=` types are skipped
/// (the client's next choice is tried); nothing acceptable at all → 406.
pub fn negotiate(accept: Option<&str>) -> Result<DiscoveryFormat, ApiError> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else { return Ok(DiscoveryFormat::Legacy) };
    for media in accept.split(',') {
        let mut parts = media.split(';').map(str::trim);
        let mime = parts.next().unwrap_or("").to_ascii_lowercase();
        let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).map(|(k, v)| (k.trim(), v.trim())).collect();
        let param = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        if !matches!(mime.as_str(), "application/json" | "application/*" | "*/*") {
            continue;
        }
        match (param("g"), param("v"), param("as")) {
            (None, None, None) => return Ok(DiscoveryFormat::Legacy),
            (Some(GROUP), Some("v2"), Some(LIST_KIND)) => return Ok(DiscoveryFormat::V2),
            (Some(GROUP), Some("v2beta1"), Some(LIST_KIND)) => return Ok(DiscoveryFormat::V2Beta1),
            _ => continue,
        }
    }
    Err(ApiError::not_acceptable(&format!(
        "application/json, {}, {}",
        DiscoveryFormat::V2.content_type(),
        DiscoveryFormat::V2Beta1.content_type()
    )))
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

/// What a resource's endpoint returns: kube leaves group and version empty for a
/// built-in kind (its own group-version) and fills them in for custom resources.
fn response_kind(r: &ResourceInfo) -> Value {
    if r.custom {
        gvk(&r.group, &r.version, &r.kind)
    } else {
        gvk("", "", &r.kind)
    }
}

fn subresource(r: &ResourceInfo, name: &str) -> Option<Value> {
    let verbs = json!(["get", "patch", "update"]);
    let (kind, verbs) = match name {
        "status" => (response_kind(r), verbs),
        "scale" => (gvk("autoscaling", "v1", "Scale"), verbs),
        "binding" => (gvk("", "", "Binding"), json!(["create"])),
        _ => return None,
    };
    Some(json!({"subresource": name, "responseKind": kind, "verbs": verbs}))
}

fn resource(r: &ResourceInfo) -> Value {
    let mut v = json!({
        "resource": r.plural,
        "responseKind": response_kind(r),
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    let mut names = r.subresources();
    names.sort_unstable();
    let subs: Vec<Value> = names.into_iter().filter_map(|s| subresource(r, s)).collect();
    if !subs.is_empty() {
        v["subresources"] = Value::Array(subs);
    }
    v
}

/// One `APIGroupDiscovery`: the group's versions (in the registry's preference order),
/// each with its resources sorted by name.
fn group(registry_all: &[std::sync::Arc<ResourceInfo>], name: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|version| {
            let mut rs: Vec<&ResourceInfo> =
                registry_all.iter().map(|r| &**r).filter(|r| r.group == name && &r.version == version).collect();
            rs.sort_by(|a, b| a.plural.cmp(&b.plural));
            json!({"version": version, "resources": rs.into_iter().map(resource).collect::<Vec<_>>(), "freshness": "Current"})
        })
        .collect();
    let mut metadata = json!({"creationTimestamp": null});
    if !name.is_empty() {
        metadata["name"] = json!(name);
    }
    json!({"metadata": metadata, "versions": versions})
}

/// The `APIGroupDiscoveryList` of `/api` (`legacy_core`: the core group alone) or of
/// `/apis` (every named group, built-in and custom). `format` must not be `Legacy`.
pub fn group_discovery_list(registry: &Registry, legacy_core: bool, format: DiscoveryFormat) -> Value {
    let api_version = format.api_version().expect("an aggregated format");
    let all = registry.all();
    let items: Vec<Value> = if legacy_core {
        vec![group(&all, "", &["v1".to_string()])]
    } else {
        registry.groups().iter().map(|(g, vs)| group(&all, g, vs)).collect()
    };
    json!({"kind": LIST_KIND, "apiVersion": api_version, "metadata": {}, "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECTL_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

    #[test]
    fn negotiation_follows_the_clients_order() {
        let cases: &[(Option<&str>, Result<DiscoveryFormat, u16>)] = &[
            (None, Ok(DiscoveryFormat::Legacy)),
            (Some(""), Ok(DiscoveryFormat::Legacy)),
            (Some("application/json"), Ok(DiscoveryFormat::Legacy)),
            (Some("application/json, */*"), Ok(DiscoveryFormat::Legacy)),
            (Some(KUBECTL_ACCEPT), Ok(DiscoveryFormat::V2)),
            (Some("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"), Ok(DiscoveryFormat::V2Beta1)),
            // Parameter order does not matter; protobuf is skipped for the next choice.
            (Some("application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList, application/json; as=APIGroupDiscoveryList; v=v2; g=apidiscovery.k8s.io"), Ok(DiscoveryFormat::V2)),
            (Some("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList,application/json"), Ok(DiscoveryFormat::Legacy)),
            (Some("application/vnd.kubernetes.protobuf"), Err(406)),
            (Some("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList"), Err(406)),
        ];
        for (accept, want) in cases {
            assert_eq!(&negotiate(*accept).map_err(|e| e.code), want, "{accept:?}");
        }
    }

    #[test]
    fn core_group_document_shape() {
        let reg = Registry::builtin();
        let doc = group_discovery_list(&reg, true, DiscoveryFormat::V2);
        assert_eq!(doc["kind"], "APIGroupDiscoveryList");
        assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2");
        let items = doc["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert!(items[0]["metadata"].get("name").is_none(), "the core group has no name");
        let v1 = &items[0]["versions"][0];
        assert_eq!(v1["version"], "v1");
        assert_eq!(v1["freshness"], "Current");
        let resources = v1["resources"].as_array().unwrap();
        let names: Vec<&str> = resources.iter().map(|r| r["resource"].as_str().unwrap()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted, "resources are sorted by name");
        assert_eq!(names.len(), 13, "{names:?}");
        let pods = resources.iter().find(|r| r["resource"] == "pods").unwrap();
        assert_eq!(
            *pods,
            json!({
                "resource": "pods",
                "responseKind": {"group": "", "version": "", "kind": "Pod"},
                "scope": "Namespaced",
                "singularResource": "pod",
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                "shortNames": ["po"],
                "categories": ["all"],
                "subresources": [
                    {"subresource": "binding", "responseKind": {"group": "", "version": "", "kind": "Binding"}, "verbs": ["create"]},
                    {"subresource": "status", "responseKind": {"group": "", "version": "", "kind": "Pod"}, "verbs": ["get", "patch", "update"]},
                ],
            })
        );
        let ns = resources.iter().find(|r| r["resource"] == "namespaces").unwrap();
        assert_eq!(ns["scope"], "Cluster");
        assert!(ns.get("categories").is_none());
    }

    #[test]
    fn named_groups_with_scale_and_custom_resources() {
        let reg = Registry::builtin();
        let mut widget = (*reg.by_plural("", "configmaps").unwrap()).clone();
        widget.group = "example.com".into();
        widget.kind = "Widget".into();
        widget.plural = "widgets".into();
        widget.singular = "widget".into();
        widget.short_names = vec!["wd".into()];
        widget.custom = true;
        widget.has_status = true;
        reg.upsert_custom(widget);
        let doc = group_discovery_list(&reg, false, DiscoveryFormat::V2Beta1);
        assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2beta1");
        let items = doc["items"].as_array().unwrap();
        let names: Vec<&str> = items.iter().map(|g| g["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(names.len(), reg.groups().len());
        assert!(!names.contains(&""), "the core group is served at /api only");
        let apps = items.iter().find(|g| g["metadata"]["name"] == "apps").unwrap();
        let deploy = apps["versions"][0]["resources"].as_array().unwrap().iter().find(|r| r["resource"] == "deployments").unwrap();
        assert_eq!(deploy["shortNames"], json!(["deploy"]));
        assert_eq!(deploy["subresources"][0]["subresource"], "scale");
        assert_eq!(deploy["subresources"][0]["responseKind"], json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}));
        assert_eq!(deploy["subresources"][1]["subresource"], "status");
        let example = items.iter().find(|g| g["metadata"]["name"] == "example.com").expect("CRD groups are listed");
        let w = &example["versions"][0]["resources"][0];
        assert_eq!(w["responseKind"], json!({"group": "example.com", "version": "v1", "kind": "Widget"}));
        assert_eq!(w["subresources"][0]["responseKind"]["kind"], "Widget");
        // Every resource of every group is present (what kubectl builds its RESTMapper from).
        let listed: usize = items.iter().flat_map(|g| g["versions"].as_array().unwrap()).map(|v| v["resources"].as_array().unwrap().len()).sum();
        assert_eq!(listed, reg.all().iter().filter(|r| !r.group.is_empty()).count());
    }
}
