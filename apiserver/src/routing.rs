//! Request parsing: which resource a path names, its query parameters, and the response
//! media type the client accepts. Pure functions, no IO.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::ApiError;
use crate::resources::{Registry, ResourceInfo};

/// Longest query string accepted (selectors and continue tokens fit with room to spare).
pub const QUERY_BYTES_MAX: usize = 64 * 1024;

/// A path under `/api/v1` or `/apis/<group>/<version>` that names a resource.
#[derive(Debug, Clone)]
pub struct Route {
    pub resource: Arc<ResourceInfo>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The legacy `/watch/` path prefix was used.
    pub watch_path: bool,
}

/// What a path asks for.
#[derive(Debug, Clone)]
pub enum Target {
    Resource(Route),
    /// `/api/v1`, `/apis/<g>/<v>`: the resource list of a group version.
    ResourceList { group: String, version: String },
    /// `/apis/<g>`.
    Group(String),
}

fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// Resolves an API path (`/api/v1/namespaces/default/pods/x/status`). `None`: not an API
/// resource path (the caller answers 404).
pub fn parse_path(registry: &Registry, path: &str) -> Option<Target> {
    let segs = segments(path);
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group] => return registry.groups().iter().any(|(g, _)| g == group).then(|| Target::Group(group.to_string())),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    if rest.is_empty() {
        let known = registry.all().iter().any(|r| r.group == group && r.version == version);
        return known.then(|| Target::ResourceList { group: group.into(), version: version.into() });
    }
    let (watch_path, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    let lookup = |plural: &str| registry.lookup(group, version, plural);
    let route = |resource: Arc<ResourceInfo>, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| Route {
        resource,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        subresource: sub.map(str::to_string),
        watch_path,
    };
    let r = match rest {
        // /namespaces/<ns>/<resource>[/<name>[/<sub>]]
        ["namespaces", ns, plural, tail @ ..] if lookup(plural).map(|r| r.namespaced).unwrap_or(false) => {
            let res = lookup(plural)?;
            match tail {
                [] => route(res, Some(ns), None, None),
                [name] => route(res, Some(ns), Some(name), None),
                [name, sub] => route(res, Some(ns), Some(name), Some(sub)),
                _ => return None,
            }
        }
        // A namespace itself (and its subresources).
        ["namespaces", ns] if group.is_empty() => route(lookup("namespaces")?, None, Some(ns), None),
        ["namespaces", ns, sub] if group.is_empty() => route(lookup("namespaces")?, None, Some(ns), Some(sub)),
        // Cluster-scoped resources, or a namespaced resource across all namespaces.
        [plural] => route(lookup(plural)?, None, None, None),
        [plural, name] => {
            let res = lookup(plural)?;
            if res.namespaced {
                return None;
            }
            route(res, None, Some(name), None)
        }
        [plural, name, sub] => {
            let res = lookup(plural)?;
            if res.namespaced {
                return None;
            }
            route(res, None, Some(name), Some(sub))
        }
        _ => return None,
    };
    if let Some(sub) = &r.subresource {
        if !r.resource.subresources().contains(&sub.as_str()) {
            return None;
        }
    }
    Some(Target::Resource(r))
}

/// Decodes `%XX` and `+` in a query component; invalid escapes are kept as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters (the last value wins for a repeated key).
pub fn parse_query(query: Option<&str>) -> Result<HashMap<String, String>, ApiError> {
    let mut out = HashMap::new();
    let Some(q) = query else { return Ok(out) };
    if q.len() > QUERY_BYTES_MAX {
        return Err(ApiError::bad_request(format!("query string longer than {QUERY_BYTES_MAX} bytes")));
    }
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(percent_decode(k), percent_decode(v));
    }
    Ok(out)
}

/// How the response body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    /// `application/json;as=Table;v=v1;g=meta.k8s.io`.
    Table,
}

/// Picks the response encoding from `Accept`: the first acceptable media type wins, as in
/// kube's negotiation. Only JSON is served (no protobuf, no YAML): anything else → 406.
pub fn negotiate(accept: Option<&str>) -> Result<Encoding, ApiError> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else { return Ok(Encoding::Json) };
    for media in accept.split(',') {
        let mut parts = media.split(';').map(str::trim);
        let mime = parts.next().unwrap_or("");
        let params: HashMap<&str, &str> = parts.filter_map(|p| p.split_once('=')).collect();
        if !matches!(mime, "application/json" | "*/*" | "application/*") {
            continue;
        }
        match params.get("as") {
            None => return Ok(Encoding::Json),
            Some(&"Table") if matches!(params.get("g"), Some(&"meta.k8s.io")) && matches!(params.get("v"), Some(&"v1")) => {
                return Ok(Encoding::Table)
            }
            // v1beta1 Tables and PartialObjectMetadata are not served (aggregated discovery
            // only at `/api` and `/apis`): fall through to the client's next choice.
            _ => continue,
        }
    }
    Err(ApiError::not_acceptable("application/json, application/json;as=Table;v=v1;g=meta.k8s.io"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str) -> Route {
        match parse_path(&Registry::builtin(), path) {
            Some(Target::Resource(r)) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn paths() {
        let r = route("/api/v1/namespaces/default/pods/x/status");
        assert_eq!((r.resource.plural.as_str(), r.namespace.as_deref(), r.name.as_deref(), r.subresource.as_deref()), ("pods", Some("default"), Some("x"), Some("status")));
        let r = route("/api/v1/namespaces/kube-system");
        assert_eq!((r.resource.plural.as_str(), r.name.as_deref()), ("namespaces", Some("kube-system")));
        let r = route("/apis/apps/v1/watch/namespaces/a/deployments");
        assert!(r.watch_path);
        let r = route("/api/v1/pods");
        assert_eq!((r.namespace.as_deref(), r.name.as_deref()), (None, None));
        let r = route("/api/v1/nodes/n1");
        assert_eq!(r.name.as_deref(), Some("n1"));
        let reg = Registry::builtin();
        assert!(parse_path(&reg, "/api/v1/pods/x").is_none(), "namespaced item without namespace");
        assert!(parse_path(&reg, "/api/v1/namespaces/a/configmaps/x/scale").is_none());
        assert!(parse_path(&reg, "/apis/nope/v1/things").is_none());
        assert!(matches!(parse_path(&reg, "/apis/apps"), Some(Target::Group(_))));
        assert!(matches!(parse_path(&reg, "/api/v1"), Some(Target::ResourceList { .. })));
    }

    #[test]
    fn query_decoding() {
        let q = parse_query(Some("labelSelector=app%3Dweb%2Ctier+in+(a)&limit=5&watch")).unwrap();
        assert_eq!(q["labelSelector"], "app=web,tier in (a)");
        assert_eq!(q["limit"], "5");
        assert_eq!(q["watch"], "");
        assert_eq!(parse_query(Some("a=%zz%4")).unwrap()["a"], "%zz%4");
    }

    #[test]
    fn negotiation() {
        let kubectl_get = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(Some(kubectl_get)).unwrap(), Encoding::Table);
        let discovery = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
        assert_eq!(negotiate(Some(discovery)).unwrap(), Encoding::Json);
        assert_eq!(negotiate(Some("application/vnd.kubernetes.protobuf, */*")).unwrap(), Encoding::Json);
        assert_eq!(negotiate(Some("application/vnd.kubernetes.protobuf")).unwrap_err().code, 406);
        assert_eq!(negotiate(None).unwrap(), Encoding::Json);
    }
}
