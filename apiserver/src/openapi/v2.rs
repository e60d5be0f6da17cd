//! The OpenAPI v2 (Swagger 2.0) document kube-apiserver serves at `/openapi/v2`: one
//! document for every group-version, schemas under `definitions` by their Kubernetes
//! names (`io.k8s.api.core.v1.Pod`), referenced as `#/definitions/…`.
//!
//! Built from the per-group-version v3 documents (so both versions always describe the
//! same schemas and operations), translated to Swagger 2.0:
//! - `#/components/schemas/X` → `#/definitions/X`;
//! - `{"allOf": [{"$ref": X}], …siblings}` → `{"$ref": X, …siblings}`: Swagger 2.0 as kube
//!   writes it keeps a field's description beside its `$ref`;
//! - `requestBody` → a `body` parameter plus `consumes`; response `content` → `schema`
//!   plus `produces`; a query parameter's `schema.type` moves onto the parameter.
//!
//! Served as JSON or, when asked, in gnostic's protobuf encoding ([`super::v2_proto`]:
//! the only type client-go's `OpenAPISchema()` asks for). kubectl 1.32 mostly reads the v3
//! documents (`explain`, the `fieldValidation` check behind `apply --validate=strict`,
//! strategic-merge metadata); v2 is for `explain --output=plaintext-openapiv2` and older
//! clients.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::resources::ResourceInfo;

const V3_PREFIX: &str = "#/components/schemas/";
const V2_PREFIX: &str = "#/definitions/";

/// `GET /openapi/v2` as JSON.
pub fn v2_document(resources: &[ResourceInfo], custom_schemas: &BTreeMap<(String, String, String), Value>) -> Value {
    let gvs: BTreeSet<(String, String)> = resources.iter().map(|r| (r.group.clone(), r.version.clone())).collect();
    let mut definitions = Map::new();
    let mut paths = Map::new();
    for (group, version) in &gvs {
        let v3 = super::v3_document(resources, custom_schemas, group, version);
        if let Some(Value::Object(schemas)) = v3.pointer("/components/schemas") {
            for (name, schema) in schemas {
                let mut s = schema.clone();
                to_v2_schema(&mut s);
                definitions.entry(name.clone()).or_insert(s);
            }
        }
        if let Some(Value::Object(ps)) = v3.get("paths") {
            for (path, item) in ps {
                paths.insert(path.clone(), path_item(path, item));
            }
        }
    }
    json!({
        "swagger": "2.0",
        "info": { "title": "Kubernetes", "version": "v1.32.0" },
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": { "BearerToken": { "type": "apiKey", "name": "authorization", "in": "header", "description": "Bearer Token authentication" } },
        "security": [{ "BearerToken": [] }],
    })
}

/// How the v2 document is encoded for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    /// [`super::v2_proto::MEDIA_TYPE`].
    Protobuf,
}

impl Encoding {
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Json => "application/json",
            Encoding::Protobuf => super::v2_proto::MEDIA_TYPE,
        }
    }
}

/// The encoding `Accept` asks for, the first acceptable entry winning; 406 if none is.
pub fn negotiate(accept: Option<&str>) -> Result<Encoding, ApiError> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else { return Ok(Encoding::Json) };
    for media in accept.split(',') {
        let mime = media.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match mime.as_str() {
            "application/json" | "application/*" | "*/*" => return Ok(Encoding::Json),
            // The `.` spelling is kube-openapi's older alias of the same type.
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
            | "application/com.github.proto-openapi.spec.v2.v1.0+protobuf" => return Ok(Encoding::Protobuf),
            _ => {}
        }
    }
    Err(ApiError::not_acceptable(&format!("application/json, {}", super::v2_proto::MEDIA_TYPE)))
}

/// A strong ETag of the document (its content hash, quoted).
pub fn etag(doc: &Value) -> String {
    format!("\"{}\"", super::hash_of(doc))
}

/// v3 schema → v2 schema, in place (see the module doc).
fn to_v2_schema(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let lone_ref = match m.get("allOf") {
                Some(Value::Array(all)) if all.len() == 1 => match &all[0] {
                    Value::Object(inner) if inner.len() == 1 => inner.get("$ref").and_then(Value::as_str).map(str::to_string),
                    _ => None,
                },
                _ => None,
            };
            if let Some(r) = lone_ref {
                m.remove("allOf");
                m.insert("$ref".into(), json!(r));
            }
            // Only a string `$ref` is a reference (JSONSchemaProps has a property named `$ref`).
            if let Some(Value::String(r)) = m.get_mut("$ref") {
                if let Some(name) = r.strip_prefix(V3_PREFIX) {
                    *r = format!("{V2_PREFIX}{name}");
                }
            }
            m.values_mut().for_each(to_v2_schema);
        }
        Value::Array(a) => a.iter_mut().for_each(to_v2_schema),
        _ => {}
    }
}

/// `{name}` and `{namespace}` of a path template, as path parameters.
fn path_parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|p| {
            let description = match p {
                "namespace" => "object name and auth scope, such as for teams and projects",
                _ => "name of the object",
            };
            json!({"name": p, "in": "path", "required": true, "type": "string", "uniqueItems": true, "description": description})
        })
        .collect()
}

fn path_item(path: &str, item: &Value) -> Value {
    let mut out = Map::new();
    if let Value::Object(ops) = item {
        for (method, op) in ops {
            out.insert(method.clone(), operation(op));
        }
    }
    let params = path_parameters(path);
    if !params.is_empty() {
        out.insert("parameters".into(), Value::Array(params));
    }
    Value::Object(out)
}

fn operation(op: &Value) -> Value {
    let Value::Object(v3) = op else { return op.clone() };
    let mut out = Map::new();
    for key in ["operationId", "tags", "description", "x-kubernetes-action", "x-kubernetes-group-version-kind"] {
        if let Some(v) = v3.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    let mut params: Vec<Value> = Vec::new();
    for p in v3.get("parameters").and_then(Value::as_array).into_iter().flatten() {
        let Value::Object(p) = p else { continue };
        let mut q = p.clone();
        if let Some(Value::Object(schema)) = q.remove("schema") {
            for (k, v) in schema {
                q.insert(k, v);
            }
        }
        params.push(Value::Object(q));
    }
    if let Some(Value::Object(content)) = v3.get("requestBody").and_then(|b| b.get("content")) {
        out.insert("consumes".into(), json!(content.keys().collect::<Vec<_>>()));
        if let Some(schema) = content.values().next().and_then(|c| c.get("schema")) {
            let mut schema = schema.clone();
            to_v2_schema(&mut schema);
            params.push(json!({"name": "body", "in": "body", "required": true, "schema": schema}));
        }
    }
    out.insert("parameters".into(), Value::Array(params));
    let mut responses = Map::new();
    for (code, resp) in v3.get("responses").and_then(Value::as_object).into_iter().flatten() {
        let mut r = json!({"description": resp.get("description").cloned().unwrap_or(json!("OK"))});
        if let Some(schema) = resp.pointer("/content/application~1json/schema") {
            let mut schema = schema.clone();
            to_v2_schema(&mut schema);
            r["schema"] = schema;
        }
        responses.insert(code.clone(), r);
    }
    out.insert("responses".into(), Value::Object(responses));
    out.insert("produces".into(), json!(["application/json"]));
    out.insert("schemes".into(), json!(["https"]));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;

    fn builtin() -> Vec<ResourceInfo> {
        Registry::builtin().all().iter().map(|r| (**r).clone()).collect()
    }

    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|c| refs(c, out));
            }
            Value::Array(a) => a.iter().for_each(|c| refs(c, out)),
            _ => {}
        }
    }

    #[test]
    fn every_served_kind_has_a_definition_and_every_ref_resolves() {
        let resources = builtin();
        let doc = v2_document(&resources, &BTreeMap::new());
        assert_eq!(doc["swagger"], "2.0");
        let defs = doc["definitions"].as_object().expect("definitions");
        for r in &resources {
            let found = defs.values().any(|s| {
                s["x-kubernetes-group-version-kind"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|g| g["kind"] == r.kind.as_str() && g["group"] == r.group.as_str() && g["version"] == r.version.as_str()))
            });
            assert!(found, "no definition carries the GVK of {}/{} {}", r.group, r.version, r.kind);
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.len() > 100, "{} refs", all.len());
        for r in all {
            let name = r.strip_prefix(V2_PREFIX).unwrap_or_else(|| panic!("{r} is not a v2 definitions ref"));
            assert!(defs.contains_key(name), "dangling $ref {r}");
        }
        fn lone_ref_all_of(v: &Value) -> bool {
            match v {
                Value::Object(m) => {
                    let wrapped = m.get("allOf").and_then(Value::as_array).is_some_and(|a| a.len() == 1 && a[0].get("$ref").is_some_and(Value::is_string));
                    wrapped || m.values().any(lone_ref_all_of)
                }
                Value::Array(a) => a.iter().any(lone_ref_all_of),
                _ => false,
            }
        }
        assert!(!lone_ref_all_of(&doc), "single-ref allOf wrappers are unwrapped");
        assert!(doc.get("components").is_none() && doc["paths"].to_string().find("requestBody").is_none(), "no v3 leftovers");
    }

    #[test]
    fn definitions_keep_descriptions_beside_refs_and_patch_extensions() {
        let doc = v2_document(&builtin(), &BTreeMap::new());
        let spec = &doc["definitions"]["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"];
        assert_eq!(spec["$ref"], "#/definitions/io.k8s.api.apps.v1.DeploymentSpec");
        assert!(spec["description"].is_string());
        let selector = &doc["definitions"]["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["selector"];
        assert_eq!(selector["$ref"], "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector");
        let containers = &doc["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    }

    #[test]
    fn paths_are_swagger_operations() {
        let doc = v2_document(&builtin(), &BTreeMap::new());
        let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
        let names: Vec<&str> = item["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["namespace", "name"]);
        let patch = &item["patch"];
        assert_eq!(patch["x-kubernetes-action"], "patch");
        assert_eq!(patch["x-kubernetes-group-version-kind"], json!({"group": "apps", "version": "v1", "kind": "Deployment"}));
        assert!(patch["consumes"].as_array().unwrap().contains(&json!("application/strategic-merge-patch+json")));
        let params = patch["parameters"].as_array().unwrap();
        let body = params.iter().find(|p| p["in"] == "body").expect("body parameter");
        assert_eq!(body["schema"]["$ref"], "#/definitions/io.k8s.api.apps.v1.Deployment");
        let fv = params.iter().find(|p| p["name"] == "fieldValidation").expect("fieldValidation");
        assert_eq!((fv["in"].as_str(), fv["type"].as_str()), (Some("query"), Some("string")));
        assert_eq!(patch["responses"]["200"]["schema"]["$ref"], "#/definitions/io.k8s.api.apps.v1.Deployment");
        let scale = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["get"];
        assert_eq!(scale["responses"]["200"]["schema"]["$ref"], "#/definitions/io.k8s.api.autoscaling.v1.Scale");
    }

    #[test]
    fn custom_resources_and_negotiation() {
        let mut resources = builtin();
        let mut cr = resources[0].clone();
        cr.group = "stable.example.com".into();
        cr.kind = "CronTab".into();
        cr.plural = "crontabs".into();
        cr.custom = true;
        resources.push(cr);
        let mut custom = BTreeMap::new();
        custom.insert(
            ("stable.example.com".to_string(), "v1".to_string(), "CronTab".to_string()),
            json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"cronSpec": {"type": "string"}}}}}),
        );
        let doc = v2_document(&resources, &custom);
        let s = &doc["definitions"]["com.example.stable.v1.CronTab"];
        assert_eq!(s["properties"]["spec"]["properties"]["cronSpec"]["type"], "string");
        assert_eq!(s["properties"]["metadata"]["$ref"], "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta");
        assert_eq!(negotiate(None).unwrap(), Encoding::Json);
        assert_eq!(negotiate(Some("application/json")).unwrap(), Encoding::Json);
        assert_eq!(negotiate(Some("application/com.github.proto-openapi.spec.v2@v1.0+protobuf, */*")).unwrap(), Encoding::Protobuf);
        assert_eq!(negotiate(Some("text/html, */*")).unwrap(), Encoding::Json);
        assert_eq!(negotiate(Some("application/vnd.kubernetes.protobuf")).unwrap_err().code, 406);
        assert_eq!(etag(&doc), etag(&doc.clone()));
        assert_ne!(etag(&doc), etag(&v2_document(&builtin(), &BTreeMap::new())));
    }
}
