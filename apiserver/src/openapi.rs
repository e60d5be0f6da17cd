//! OpenAPI v3 documents, as kube-apiserver serves them at `/openapi/v3` (an index of
//! group-versions) and `/openapi/v3/apis/<group>/<version>` (one document per
//! group-version): what `kubectl explain` reads, and what kubectl checks for the
//! `fieldValidation` parameter before it relies on server-side validation
//! (`kubectl apply --validate=strict`).
//!
//! Schemas come from `k8s-openapi`'s schemars implementations (descriptions included), put
//! under `components.schemas` by their Kubernetes names (`io.k8s.api.core.v1.Pod`). Each
//! kind's schema carries `x-kubernetes-group-version-kind`, which is how kubectl finds it.
//! A `$ref` with siblings (a field's own description) is wrapped in `allOf`, as kube does:
//! OpenAPI 3.0 ignores siblings of a `$ref`. Custom resources get the `openAPIV3Schema` of
//! their CustomResourceDefinition, when it has one.
//!
//! Paths list every operation with kube's operation parameters, so a client can see which
//! query parameters (dryRun, fieldManager, fieldValidation, …) each accepts.
//!
//! The OpenAPI v2 document (`/openapi/v2`) is translated from these: [`v2`] (JSON) and
//! [`v2_proto`] (gnostic protobuf).

use std::collections::BTreeMap;

use schemars::gen::{SchemaGenerator, SchemaSettings};
use serde_json::{json, Map, Value};

use crate::resources::ResourceInfo;

pub mod v2;
pub mod v2_proto;

/// Where schemas live inside a document; `$ref`s point here.
const SCHEMAS_PATH: &str = "#/components/schemas/";

/// Generates `T`'s schema into `gen` if `(group, version, kind)` is `T`'s, returning the
/// schema's name.
fn schema_of<T: k8s_openapi::Resource + schemars::JsonSchema>(
    gen: &mut SchemaGenerator,
    group: &str,
    version: &str,
    kind: &str,
) -> Option<String> {
    if T::GROUP == group && T::VERSION == version && T::KIND == kind {
        gen.subschema_for::<T>();
        Some(T::schema_name())
    } else {
        None
    }
}

macro_rules! typed_schema {
    ($gen:expr, $g:expr, $v:expr, $k:expr, [$($ty:ty),* $(,)?]) => {{
        let mut found = None;
        $(
            if found.is_none() {
                found = schema_of::<$ty>($gen, $g, $v, $k);
            }
        )*
        found
    }};
}

/// The built-in kind's schema name, generated into `gen`; `None` for a kind k8s-openapi
/// does not know (a custom resource).
fn builtin_schema(gen: &mut SchemaGenerator, group: &str, version: &str, kind: &str) -> Option<String> {
    use k8s_openapi::api::{apps, batch, coordination, core, discovery, networking, policy, rbac};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
    typed_schema!(gen, group, version, kind, [
        core::v1::Namespace,
        core::v1::Pod,
        core::v1::Service,
        core::v1::Endpoints,
        core::v1::ConfigMap,
        core::v1::Secret,
        core::v1::Node,
        core::v1::Event,
        core::v1::ServiceAccount,
        core::v1::PersistentVolume,
        core::v1::PersistentVolumeClaim,
        core::v1::LimitRange,
        core::v1::ResourceQuota,
        core::v1::ReplicationController,
        core::v1::PodTemplate,
        apps::v1::Deployment,
        apps::v1::ReplicaSet,
        apps::v1::DaemonSet,
        apps::v1::StatefulSet,
        apps::v1::ControllerRevision,
        batch::v1::Job,
        batch::v1::CronJob,
        coordination::v1::Lease,
        discovery::v1::EndpointSlice,
        networking::v1::Ingress,
        networking::v1::IngressClass,
        networking::v1::NetworkPolicy,
        rbac::v1::Role,
        rbac::v1::RoleBinding,
        rbac::v1::ClusterRole,
        rbac::v1::ClusterRoleBinding,
        policy::v1::PodDisruptionBudget,
        apiextensions::v1::CustomResourceDefinition,
        k8s_openapi::api::events::v1::Event,
        k8s_openapi::api::autoscaling::v1::Scale,
    ])
}

/// `api/v1` or `apis/apps/v1`: the key of a group-version in the index.
pub fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A short content hash, for `serverRelativeURL`'s `?hash=` (clients cache by it).
fn hash_of(doc: &Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in doc.to_string().bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016X}")
}

/// `GET /openapi/v3`: `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=…"}}}`.
/// `custom_schemas` maps (group, version, kind) of custom resources to their CRD schema.
pub fn v3_index(resources: &[ResourceInfo], custom_schemas: &BTreeMap<(String, String, String), Value>) -> Value {
    let mut gvs: BTreeMap<(String, String), ()> = BTreeMap::new();
    for r in resources {
        gvs.insert((r.group.clone(), r.version.clone()), ());
    }
    let mut paths = Map::new();
    for (group, version) in gvs.keys() {
        let path = group_version_path(group, version);
        let doc = v3_document(resources, custom_schemas, group, version);
        paths.insert(
            path.clone(),
            json!({ "serverRelativeURL": format!("/openapi/v3/{path}?hash={}", hash_of(&doc)) }),
        );
    }
    json!({ "paths": paths })
}

fn settings() -> SchemaSettings {
    let mut s = SchemaSettings::openapi3();
    s.definitions_path = SCHEMAS_PATH.to_string();
    s
}

/// `GET /openapi/v3/apis/<group>/<version>`: the document of one group-version.
pub fn v3_document(
    resources: &[ResourceInfo],
    custom_schemas: &BTreeMap<(String, String, String), Value>,
    group: &str,
    version: &str,
) -> Value {
    let mut gen = SchemaGenerator::new(settings());
    gen.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>();
    gen.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions>();
    let mut kinds: Vec<(String, &ResourceInfo)> = Vec::new();
    let mut custom: Vec<(String, Value, &ResourceInfo)> = Vec::new();
    for r in resources.iter().filter(|r| r.group == group && r.version == version) {
        if let Some(name) = builtin_schema(&mut gen, &r.group, &r.version, &r.kind) {
            kinds.push((name, r));
        } else {
            let name = custom_schema_name(r);
            let schema = custom_schemas
                .get(&(r.group.clone(), r.version.clone(), r.kind.clone()))
                .cloned()
                // No schema in the CRD: any object (kube's x-kubernetes-preserve-unknown-fields).
                .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
            custom.push((name, schema, r));
        }
    }
    let mut schemas: Map<String, Value> = Map::new();
    for (name, schema) in gen.definitions() {
        let mut v = serde_json::to_value(schema).unwrap_or(Value::Null);
        wrap_refs(&mut v);
        schemas.insert(name.clone(), v);
    }
    if group == "apps" || group.is_empty() {
        // The scale subresource's type lives in autoscaling/v1.
        let mut g = SchemaGenerator::new(settings());
        g.subschema_for::<k8s_openapi::api::autoscaling::v1::Scale>();
        for (name, schema) in g.definitions() {
            let mut v = serde_json::to_value(schema).unwrap_or(Value::Null);
            wrap_refs(&mut v);
            schemas.entry(name.clone()).or_insert(v);
        }
    }
    for (name, schema) in schemas.iter_mut() {
        add_patch_extensions(name, schema);
    }
    for (name, r) in &kinds {
        if let Some(Value::Object(s)) = schemas.get_mut(name) {
            s.insert("x-kubernetes-group-version-kind".into(), gvk(r));
        }
    }
    for (name, mut schema, r) in custom {
        if let Value::Object(s) = &mut schema {
            s.insert("x-kubernetes-group-version-kind".into(), gvk(r));
            let props = s.entry("properties").or_insert_with(|| json!({}));
            if let Value::Object(p) = props {
                p.entry("apiVersion").or_insert_with(|| json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
                p.entry("kind").or_insert_with(|| json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
                p.entry("metadata").or_insert_with(|| {
                    json!({"allOf": [{"$ref": format!("{SCHEMAS_PATH}io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")}],
                           "description": "Standard object's metadata."})
                });
            }
        }
        schemas.insert(name, schema);
    }
    if !schemas.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta") {
        let mut g = SchemaGenerator::new(settings());
        g.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>();
        for (name, schema) in g.definitions() {
            let mut v = serde_json::to_value(schema).unwrap_or(Value::Null);
            wrap_refs(&mut v);
            schemas.entry(name.clone()).or_insert(v);
        }
    }

    let mut paths = Map::new();
    for (name, r) in kinds.iter().map(|(n, r)| (n.clone(), *r)).chain(
        resources
            .iter()
            .filter(|r| r.group == group && r.version == version && r.custom)
            .map(|r| (custom_schema_name(r), r)),
    ) {
        add_paths(&mut paths, r, &name);
    }
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": "v1.32.0" },
        "paths": paths,
        "components": { "schemas": schemas },
    })
}

/// kube's `x-kubernetes-patch-strategy` / `-merge-key` on the properties of a built-in
/// type, from the struct tags `patch::field_meta` knows: what kubectl reads to compute a
/// strategic merge patch (`kubectl apply`) from the server's schema.
fn add_patch_extensions(schema_name: &str, schema: &mut Value) {
    if !schema_name.starts_with("io.k8s.") {
        return;
    }
    let go_type = schema_name.rsplit('.').next().unwrap_or_default();
    let Some(Value::Object(props)) = schema.get_mut("properties") else { return };
    for (field, prop) in props.iter_mut() {
        let Some(meta) = crate::patch::field_meta(go_type, field) else { continue };
        let Value::Object(p) = prop else { continue };
        let mut strategy = match meta.strategy {
            crate::patch::PatchStrategy::Merge => vec!["merge"],
            crate::patch::PatchStrategy::Replace => vec!["replace"],
            crate::patch::PatchStrategy::Default => vec![],
        };
        if meta.retain_keys {
            strategy.push("retainKeys");
        }
        if !strategy.is_empty() {
            p.insert("x-kubernetes-patch-strategy".into(), json!(strategy.join(",")));
        }
        if let Some(key) = meta.merge_key {
            p.insert("x-kubernetes-patch-merge-key".into(), json!(key));
        }
    }
}

fn custom_schema_name(r: &ResourceInfo) -> String {
    // kube names a custom resource's schema by its reversed group, version and kind.
    let reversed: Vec<&str> = r.group.split('.').rev().collect();
    format!("{}.{}.{}", reversed.join("."), r.version, r.kind)
}

fn gvk(r: &ResourceInfo) -> Value {
    json!([{ "group": r.group, "version": r.version, "kind": r.kind }])
}

/// `{"$ref": X, "description": D}` → `{"allOf": [{"$ref": X}], "description": D}`, deeply.
fn wrap_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            // Only a string `$ref` is a reference: JSONSchemaProps has a *property* named
            // `$ref` (its value a schema), which must stay as it is.
            if m.len() > 1 && m.get("$ref").is_some_and(Value::is_string) {
                if let Some(r) = m.remove("$ref") {
                    m.insert("allOf".into(), json!([{ "$ref": r }]));
                }
            }
            for (_, child) in m.iter_mut() {
                wrap_refs(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(wrap_refs),
        _ => {}
    }
}

fn query_param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "query", "description": description, "schema": { "type": "string", "uniqueItems": true } })
}

fn write_params() -> Vec<Value> {
    vec![
        query_param("dryRun", "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed"),
        query_param("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."),
        query_param("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict"),
    ]
}

fn list_params() -> Vec<Value> {
    ["allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit", "resourceVersion", "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds", "watch"]
        .iter()
        .map(|p| query_param(p, p))
        .collect()
}

fn body(schema: &str, content_types: &[&str]) -> Value {
    let mut content = Map::new();
    for ct in content_types {
        content.insert(ct.to_string(), json!({ "schema": { "$ref": format!("{SCHEMAS_PATH}{schema}") } }));
    }
    json!({ "content": content, "required": true })
}

fn ok(schema: &str) -> Value {
    json!({ "200": { "description": "OK", "content": { "application/json": { "schema": { "$ref": format!("{SCHEMAS_PATH}{schema}") } } } } })
}

fn operation(r: &ResourceInfo, action: &str, id: &str, params: Vec<Value>, request: Option<Value>, response: Value) -> Value {
    let mut op = json!({
        "operationId": id,
        "tags": [if r.group.is_empty() { format!("core_{}", r.version) } else { format!("{}_{}", r.group.replace('.', "_"), r.version) }],
        "parameters": params,
        "responses": response,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(r)[0].clone(),
    });
    if let Some(body) = request {
        op["requestBody"] = body;
    }
    op
}

fn add_paths(paths: &mut Map<String, Value>, r: &ResourceInfo, schema: &str) {
    let base = if r.group.is_empty() { format!("/api/{}", r.version) } else { format!("/apis/{}/{}", r.group, r.version) };
    let scope = if r.namespaced { format!("{base}/namespaces/{{namespace}}/{}", r.plural) } else { format!("{base}/{}", r.plural) };
    let item = format!("{scope}/{{name}}");
    let status = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
    let json_types = ["application/json"];
    let patch_types = [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ];
    let id = |verb: &str| format!("{verb}{}", r.kind);
    let mut collection = Map::new();
    collection.insert("get".into(), operation(r, "list", &id("list"), list_params(), None, ok(schema)));
    collection.insert(
        "post".into(),
        operation(r, "post", &id("create"), write_params(), Some(body(schema, &json_types)), ok(schema)),
    );
    collection.insert(
        "delete".into(),
        operation(r, "deletecollection", &id("deletecollection"), list_params(), None, ok(status)),
    );
    paths.insert(scope.clone(), Value::Object(collection));
    let mut one = Map::new();
    one.insert("get".into(), operation(r, "get", &id("read"), vec![], None, ok(schema)));
    one.insert(
        "put".into(),
        operation(r, "put", &id("replace"), write_params(), Some(body(schema, &json_types)), ok(schema)),
    );
    let mut patch_params = write_params();
    patch_params.push(query_param("force", "Force is going to \"force\" Apply requests."));
    one.insert(
        "patch".into(),
        operation(r, "patch", &id("patch"), patch_params, Some(body(schema, &patch_types)), ok(schema)),
    );
    one.insert(
        "delete".into(),
        operation(
            r,
            "delete",
            &id("delete"),
            vec![query_param("dryRun", "dryRun"), query_param("gracePeriodSeconds", "gracePeriodSeconds"), query_param("propagationPolicy", "propagationPolicy")],
            Some(body("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions", &json_types)),
            ok(status),
        ),
    );
    paths.insert(item.clone(), Value::Object(one));
    if r.has_status {
        let mut st = Map::new();
        st.insert("get".into(), operation(r, "get", &id("readStatus"), vec![], None, ok(schema)));
        st.insert("put".into(), operation(r, "put", &id("replaceStatus"), write_params(), Some(body(schema, &json_types)), ok(schema)));
        st.insert("patch".into(), operation(r, "patch", &id("patchStatus"), write_params(), Some(body(schema, &patch_types)), ok(schema)));
        paths.insert(format!("{item}/status"), Value::Object(st));
    }
    if r.has_scale {
        let scale = "io.k8s.api.autoscaling.v1.Scale";
        let mut sc = Map::new();
        sc.insert("get".into(), operation(r, "get", &id("readScale"), vec![], None, ok(scale)));
        sc.insert("put".into(), operation(r, "put", &id("replaceScale"), write_params(), Some(body(scale, &json_types)), ok(scale)));
        sc.insert("patch".into(), operation(r, "patch", &id("patchScale"), write_params(), Some(body(scale, &patch_types)), ok(scale)));
        paths.insert(format!("{item}/scale"), Value::Object(sc));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;

    fn builtin() -> Vec<ResourceInfo> {
        Registry::builtin().all().iter().map(|r| (**r).clone()).collect()
    }

    #[test]
    fn every_builtin_kind_has_a_schema_with_its_gvk() {
        let resources = builtin();
        let none = BTreeMap::new();
        let index = v3_index(&resources, &none);
        let paths = index["paths"].as_object().expect("paths");
        assert!(paths.contains_key("api/v1") && paths.contains_key("apis/apps/v1"), "{paths:?}");
        for r in resources.iter().filter(|r| !r.custom) {
            let doc = v3_document(&resources, &none, &r.group, &r.version);
            let schemas = doc["components"]["schemas"].as_object().expect("schemas");
            let found = schemas.values().any(|s| {
                s["x-kubernetes-group-version-kind"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|g| g["kind"] == r.kind.as_str() && g["group"] == r.group.as_str()))
            });
            assert!(found, "no schema carries the GVK of {}/{} {}", r.group, r.version, r.kind);
        }
    }

    #[test]
    fn refs_resolve_and_siblings_are_wrapped_in_all_of() {
        let resources = builtin();
        let doc = v3_document(&resources, &BTreeMap::new(), "apps", "v1");
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let deploy = &schemas["io.k8s.api.apps.v1.Deployment"];
        assert!(deploy["description"].as_str().is_some_and(|d| d.contains("Deployment")));
        // `spec` has its own description: the reference is inside allOf.
        let spec = &deploy["properties"]["spec"];
        let target = spec["allOf"][0]["$ref"].as_str().expect("allOf ref");
        assert_eq!(target, "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec");
        // Every reference in the document names a schema that is there.
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
        let mut all = Vec::new();
        refs(&doc, &mut all);
        for r in all {
            let name = r.strip_prefix(SCHEMAS_PATH).expect("local ref");
            assert!(schemas.contains_key(name), "dangling $ref {r}");
        }
    }

    #[test]
    fn lists_carry_kubes_patch_extensions() {
        let resources = builtin();
        let doc = v3_document(&resources, &BTreeMap::new(), "", "v1");
        let pod_spec = &doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"];
        assert_eq!(pod_spec["containers"]["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(pod_spec["containers"]["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(pod_spec["volumes"]["x-kubernetes-patch-strategy"], "merge,retainKeys");
        assert!(pod_spec["tolerations"].get("x-kubernetes-patch-strategy").is_none(), "tolerations are atomic");
        let container = &doc["components"]["schemas"]["io.k8s.api.core.v1.Container"]["properties"];
        assert_eq!(container["ports"]["x-kubernetes-patch-merge-key"], "containerPort");
    }

    #[test]
    fn write_operations_declare_field_validation() {
        let resources = builtin();
        let doc = v3_document(&resources, &BTreeMap::new(), "", "v1");
        let post = &doc["paths"]["/api/v1/namespaces/{namespace}/pods"]["post"];
        let names: Vec<&str> = post["parameters"].as_array().expect("params").iter().filter_map(|p| p["name"].as_str()).collect();
        assert!(names.contains(&"fieldValidation") && names.contains(&"dryRun"), "{names:?}");
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert!(patch["requestBody"]["content"]["application/strategic-merge-patch+json"].is_object());
        assert!(doc["paths"]["/api/v1/nodes/{name}"]["get"].is_object(), "cluster-scoped path");
    }

    #[test]
    fn a_custom_resource_gets_its_crd_schema() {
        let mut resources = builtin();
        let mut cr = resources[0].clone();
        cr.group = "stable.example.com".into();
        cr.version = "v1".into();
        cr.kind = "CronTab".into();
        cr.plural = "crontabs".into();
        cr.custom = true;
        cr.has_status = false;
        cr.has_scale = false;
        resources.push(cr);
        let mut custom = BTreeMap::new();
        custom.insert(
            ("stable.example.com".to_string(), "v1".to_string(), "CronTab".to_string()),
            json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"cronSpec": {"type": "string"}}}}}),
        );
        let doc = v3_document(&resources, &custom, "stable.example.com", "v1");
        let s = &doc["components"]["schemas"]["com.example.stable.v1.CronTab"];
        assert_eq!(s["properties"]["spec"]["properties"]["cronSpec"]["type"], "string");
        assert_eq!(s["x-kubernetes-group-version-kind"][0]["kind"], "CronTab");
        assert!(s["properties"]["metadata"]["allOf"].is_array());
        assert!(doc["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object());
    }
}
