use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

/// 2024-01-01T00:00:00Z plus `secs`.
fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_704_067_200 + secs)
}

fn must_apply(live: Option<&Value>, config: &Value, manager: &str, kind: &str) -> Value {
    let group = if config["apiVersion"].as_str().unwrap_or("").contains('/') { "apps" } else { "" };
    apply(live, config, manager, false, group, kind, at(0)).unwrap_or_else(|e| panic!("apply by {manager}: {e}"))
}

fn entries(obj: &Value) -> Vec<Value> {
    obj["metadata"]["managedFields"].as_array().cloned().unwrap_or_default()
}

fn fields_of(obj: &Value, manager: &str, operation: &str) -> Value {
    entries(obj)
        .into_iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
        .map(|e| e["fieldsV1"].clone())
        .unwrap_or(Value::Null)
}

fn deployment(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "nginx-deployment", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "nginx"}},
            "replicas": replicas,
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": image}]}
            }
        }
    })
}

// ---------------------------------------------------------------------------------------
// Creating, FieldsV1 encoding.

#[test]
fn apply_creates_the_object_and_records_kube_docs_configmap_entry() {
    // The ConfigMap of kube's server-side apply documentation.
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "test-cm", "namespace": "default", "labels": {"test-label": "test"}},
        "data": {"key": "some value"}
    });
    let out = apply(None, &cm, "kubectl", false, "", "ConfigMap", at(0)).unwrap();
    let mut expected = cm.clone();
    expected["metadata"]["managedFields"] = json!([{
        "manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": "2024-01-01T00:00:00Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": {"f:labels": {"f:test-label": {}}}, "f:data": {"f:key": {}}}
    }]);
    assert_eq!(out, expected);
}

#[test]
fn deployment_fields_v1_matches_kube() {
    let out = must_apply(None, &deployment(3, "nginx:1.14.2"), "kubectl", "Deployment");
    // What `kubectl apply --server-side` records: the label selector is an atomic struct,
    // containers are keyed by name and own themselves (".").
    let expected = json!({
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}
            }
        }
    });
    assert_eq!(fields_of(&out, "kubectl", "Apply"), expected);
    assert_eq!(entries(&out)[0]["apiVersion"], "apps/v1");
    // The encoding is byte-for-byte kube's key syntax.
    let text = serde_json::to_string(&fields_of(&out, "kubectl", "Apply")).unwrap();
    assert!(text.contains(r#""k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:name":{}}"#), "{text}");
}

#[test]
fn container_ports_are_keyed_by_port_and_protocol_with_tcp_default() {
    let mut d = deployment(1, "nginx");
    d["spec"]["template"]["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}]);
    let out = must_apply(None, &d, "m", "Deployment");
    let c = &fields_of(&out, "m", "Apply")["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"];
    assert_eq!(
        c["f:ports"],
        json!({
            "k:{\"containerPort\":53,\"protocol\":\"UDP\"}": {".": {}, "f:containerPort": {}, "f:protocol": {}},
            "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}
        })
    );
}

#[test]
fn service_ports_keyed_by_port_and_protocol_and_finalizers_as_set() {
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "s", "finalizers": ["a.example/x"]},
        "spec": {"ports": [{"port": 443, "targetPort": 8443}], "selector": {"app": "x"}}
    });
    let out = must_apply(None, &svc, "m", "Service");
    assert_eq!(
        fields_of(&out, "m", "Apply"),
        json!({
            "f:metadata": {"f:finalizers": {"v:\"a.example/x\"": {}}},
            "f:spec": {
                "f:ports": {"k:{\"port\":443,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:targetPort": {}}},
                "f:selector": {}
            }
        })
    );
}

// ---------------------------------------------------------------------------------------
// Re-applying, removing, sharing, conflicts, force.

#[test]
fn reapply_same_config_changes_nothing_not_even_the_time() {
    let d = deployment(3, "nginx:1");
    let first = must_apply(None, &d, "kubectl", "Deployment");
    let again = apply(Some(&first), &d, "kubectl", false, "apps", "Deployment", at(3600)).unwrap();
    assert_eq!(again, first);
}

#[test]
fn apply_removes_a_field_it_no_longer_sets() {
    let mut d = deployment(3, "nginx:1");
    d["metadata"]["labels"] = json!({"a": "1", "b": "2"});
    let first = must_apply(None, &d, "kubectl", "Deployment");
    d["metadata"]["labels"] = json!({"a": "1"});
    let second = apply(Some(&first), &d, "kubectl", false, "apps", "Deployment", at(60)).unwrap();
    assert_eq!(second["metadata"]["labels"], json!({"a": "1"}));
    assert_eq!(fields_of(&second, "kubectl", "Apply")["f:metadata"], json!({"f:labels": {"f:a": {}}}));
    assert_eq!(entries(&second)[0]["time"], "2024-01-01T00:01:00Z");
    // Dropping every label drops the map too.
    d["metadata"].as_object_mut().unwrap().remove("labels");
    let third = apply(Some(&second), &d, "kubectl", false, "apps", "Deployment", at(120)).unwrap();
    assert!(third["metadata"].get("labels").is_none(), "{third}");
}

#[test]
fn a_field_dropped_by_one_applier_stays_while_another_owns_it() {
    let mut a = deployment(3, "nginx:1");
    a["metadata"]["labels"] = json!({"shared": "x"});
    let first = must_apply(None, &a, "alice", "Deployment");
    let bob = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx-deployment", "labels": {"shared": "x"}}});
    let second = must_apply(Some(&first), &bob, "bob", "Deployment");
    a["metadata"].as_object_mut().unwrap().remove("labels");
    let third = must_apply(Some(&second), &a, "alice", "Deployment");
    assert_eq!(third["metadata"]["labels"], json!({"shared": "x"}));
    assert_eq!(fields_of(&third, "bob", "Apply"), json!({"f:metadata": {"f:labels": {"f:shared": {}}}}));
    assert!(fields_of(&third, "alice", "Apply").get("f:metadata").is_none());
}

#[test]
fn two_managers_applying_the_same_value_share_the_field() {
    let first = must_apply(None, &deployment(3, "nginx:1"), "alice", "Deployment");
    let bob = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx-deployment"}, "spec": {"replicas": 3}});
    let second = must_apply(Some(&first), &bob, "bob", "Deployment");
    assert_eq!(fields_of(&second, "bob", "Apply"), json!({"f:spec": {"f:replicas": {}}}));
    assert_eq!(fields_of(&second, "alice", "Apply")["f:spec"]["f:replicas"], json!({}));
    // Neither can now change it alone.
    let err = apply(Some(&second), &deployment(5, "nginx:1"), "alice", false, "apps", "Deployment", at(1)).unwrap_err();
    assert_eq!(err.to_string(), "Apply failed with 1 conflict: conflict with \"bob\": .spec.replicas");
}

/// A Deployment created by `kubectl apply` (client-side): an Update entry by
/// `kubectl-client-side-apply` owning everything it set.
fn client_side_applied() -> Value {
    let d = deployment(3, "nginx:1");
    update_managed_fields(None, &d, "kubectl-client-side-apply", "Update", "apps/v1", None, "apps", "Deployment", at(0))
}

#[test]
fn conflict_with_an_updater_has_kubes_exact_message_and_status() {
    let live = client_side_applied();
    let err = apply(Some(&live), &deployment(5, "nginx:1"), "kubectl", false, "apps", "Deployment", at(10)).unwrap_err();
    let msg = "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas";
    assert_eq!(err.to_string(), msg);
    assert_eq!(err.status_code(), 409);
    let ApplyError::Conflicts(cs) = &err else { panic!("{err:?}") };
    assert_eq!((cs[0].manager.as_str(), cs[0].field.as_str()), ("kubectl-client-side-apply", ".spec.replicas"));
    assert_eq!(
        conflict_status("apps", "Deployment", "nginx-deployment", &err),
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": msg, "reason": "Conflict",
            "details": {"causes": [{"reason": "FieldManagerConflict", "message": "conflict with \"kubectl-client-side-apply\" using apps/v1", "field": ".spec.replicas"}]},
            "code": 409
        })
    );
}

#[test]
fn several_conflicts_are_listed_one_a_line_grouped_by_manager() {
    let live = client_side_applied();
    let err = apply(Some(&live), &deployment(5, "nginx:2"), "kubectl", false, "apps", "Deployment", at(10)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n\
         - .spec.replicas\n\
         - .spec.template.spec.containers[name=\"nginx\"].image"
    );
}

#[test]
fn force_takes_ownership_from_the_other_manager() {
    let live = client_side_applied();
    let out = apply(Some(&live), &deployment(5, "nginx:1"), "kubectl", true, "apps", "Deployment", at(10)).unwrap();
    assert_eq!(out["spec"]["replicas"], 5);
    assert_eq!(fields_of(&out, "kubectl", "Apply")["f:spec"]["f:replicas"], json!({}));
    let csa = fields_of(&out, "kubectl-client-side-apply", "Update");
    assert!(csa["f:spec"].get("f:replicas").is_none(), "{csa}");
    // Fields applied with the same value are shared, not taken.
    assert_eq!(csa["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"]["f:image"], json!({}));
    // Apply entries come first.
    assert_eq!(entries(&out)[0]["operation"], "Apply");
}

#[test]
fn a_scale_update_takes_replicas_from_the_applier() {
    let applied = must_apply(None, &deployment(3, "nginx:1"), "kubectl", "Deployment");
    let mut scaled = applied.clone();
    scaled["spec"]["replicas"] = json!(10);
    let out = update_managed_fields(Some(&applied), &scaled, "kubectl", "Update", "apps/v1", Some("scale"), "apps", "Deployment", at(30));
    assert_eq!(out["spec"]["replicas"], 10);
    let scale = entries(&out).into_iter().find(|e| e["subresource"] == "scale").expect("scale entry");
    assert_eq!(
        scale,
        json!({"manager": "kubectl", "operation": "Update", "apiVersion": "apps/v1", "time": "2024-01-01T00:00:30Z",
               "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}, "subresource": "scale"})
    );
    assert!(fields_of(&out, "kubectl", "Apply")["f:spec"].get("f:replicas").is_none());
    // Re-applying replicas: 3 now conflicts with the scaler.
    let err = apply(Some(&out), &deployment(3, "nginx:1"), "kubectl", false, "apps", "Deployment", at(40)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas"
    );
}

// ---------------------------------------------------------------------------------------
// Lists.

#[test]
fn containers_merge_by_name_and_dropped_ones_go() {
    let mut d = deployment(1, "nginx:1");
    d["spec"]["template"]["spec"]["containers"] = json!([{"name": "nginx", "image": "nginx:1"}, {"name": "log", "image": "busybox"}]);
    let first = must_apply(None, &d, "m", "Deployment");
    // Someone else adds a sidecar, which the applier must leave alone.
    let mut edited = first.clone();
    edited["spec"]["template"]["spec"]["containers"].as_array_mut().unwrap().push(json!({"name": "proxy", "image": "envoy"}));
    let edited = update_managed_fields(Some(&first), &edited, "kubectl-edit", "Update", "apps/v1", None, "apps", "Deployment", at(5));
    d["spec"]["template"]["spec"]["containers"] = json!([{"name": "nginx", "image": "nginx:2"}]);
    let out = apply(Some(&edited), &d, "m", false, "apps", "Deployment", at(10)).unwrap();
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name": "nginx", "image": "nginx:2"}, {"name": "proxy", "image": "envoy"}])
    );
    assert_eq!(
        fields_of(&out, "m", "Apply")["f:spec"]["f:template"]["f:spec"]["f:containers"],
        json!({"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}})
    );
    assert_eq!(
        fields_of(&out, "kubectl-edit", "Update")["f:spec"]["f:template"]["f:spec"]["f:containers"],
        json!({"k:{\"name\":\"proxy\"}": {".": {}, "f:image": {}, "f:name": {}}})
    );
}

#[test]
fn a_new_list_item_goes_where_the_configuration_puts_it() {
    let mut d = deployment(1, "a");
    d["spec"]["template"]["spec"]["containers"] = json!([{"name": "a", "image": "a"}, {"name": "c", "image": "c"}]);
    let first = must_apply(None, &d, "m", "Deployment");
    d["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}, {"name": "c", "image": "c"}]);
    let out = must_apply(Some(&first), &d, "m", "Deployment");
    let names: Vec<&str> =
        out["spec"]["template"]["spec"]["containers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[test]
fn an_atomic_list_is_replaced_and_owned_whole() {
    let mut d = deployment(1, "nginx");
    d["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["--a", "--b"]);
    d["spec"]["template"]["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists"}]);
    let first = must_apply(None, &d, "m", "Deployment");
    let tmpl = &fields_of(&first, "m", "Apply")["f:spec"]["f:template"]["f:spec"];
    assert_eq!(tmpl["f:tolerations"], json!({}));
    assert_eq!(tmpl["f:containers"]["k:{\"name\":\"nginx\"}"]["f:args"], json!({}));
    d["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["--c"]);
    let out = must_apply(Some(&first), &d, "m", "Deployment");
    assert_eq!(out["spec"]["template"]["spec"]["containers"][0]["args"], json!(["--c"]));
    // Another manager's different atomic list conflicts as one field.
    d["spec"]["template"]["spec"]["tolerations"] = json!([{"key": "other", "operator": "Exists"}]);
    let err = apply(Some(&out), &d, "n", false, "apps", "Deployment", at(1)).unwrap_err();
    assert!(err.to_string().ends_with(".spec.template.spec.tolerations"), "{err}");
}

#[test]
fn custom_resources_treat_lists_as_atomic_and_objects_as_fields() {
    let cr = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
                    "spec": {"items": [{"name": "a"}], "size": {"cpu": 1}}});
    let out = apply(None, &cr, "m", false, "example.com", "Widget", at(0)).unwrap();
    assert_eq!(fields_of(&out, "m", "Apply"), json!({"f:spec": {"f:items": {}, "f:size": {"f:cpu": {}}}}));
}

#[test]
fn duplicate_keys_and_missing_keys_are_refused() {
    let mut d = deployment(1, "nginx");
    d["spec"]["template"]["spec"]["containers"] = json!([{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]);
    let err = apply(None, &d, "m", false, "apps", "Deployment", at(0)).unwrap_err();
    assert_eq!(err.status_code(), 500);
    assert_eq!(
        err.to_string(),
        "failed to create typed patch object (apps/v1, Kind=Deployment): .spec.template.spec.containers: duplicate entries for key [name=\"a\"]"
    );
    d["spec"]["template"]["spec"]["containers"] = json!([{"image": "x"}]);
    let err = apply(None, &d, "m", false, "apps", "Deployment", at(0)).unwrap_err();
    assert!(err.to_string().ends_with(
        ".spec.template.spec.containers: element 0: associative list with keys has an element that omits key field \"name\" (and doesn't have default value)"
    ), "{err}");
}

// ---------------------------------------------------------------------------------------
// Updates.

#[test]
fn create_by_update_owns_new_maps_with_dot_as_kube_records() {
    let out = client_side_applied();
    assert_eq!(
        fields_of(&out, "kubectl-client-side-apply", "Update"),
        json!({
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}
                }
            }
        })
    );
}

#[test]
fn update_moves_changed_fields_and_drops_emptied_entries() {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
    let first = apply(None, &cm, "app", false, "", "ConfigMap", at(0)).unwrap();
    let mut edited = first.clone();
    edited["data"] = json!({"a": "2", "b": "3"});
    let out = update_managed_fields(Some(&first), &edited, "kubectl-edit", "Update", "v1", None, "", "ConfigMap", at(9));
    assert_eq!(
        entries(&out),
        vec![json!({"manager": "kubectl-edit", "operation": "Update", "apiVersion": "v1", "time": "2024-01-01T00:00:09Z",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}, "f:b": {}}}})]
    );
    // A second edit by the same manager merges into its entry; removing a field takes
    // it from its owner.
    let mut again = out.clone();
    again["data"] = json!({"a": "2"});
    let out2 = update_managed_fields(Some(&out), &again, "kubectl-edit", "Update", "v1", None, "", "ConfigMap", at(20));
    assert_eq!(fields_of(&out2, "kubectl-edit", "Update"), json!({"f:data": {"f:a": {}}}));
    // A no-op write keeps the entry's time.
    let out3 = update_managed_fields(Some(&out2), &out2, "kubectl-edit", "Update", "v1", None, "", "ConfigMap", at(99));
    assert_eq!(out3, out2);
}

#[test]
fn update_may_reset_managed_fields() {
    let first = client_side_applied();
    let mut reset = first.clone();
    reset["metadata"]["managedFields"] = json!([{}]);
    let out = update_managed_fields(Some(&first), &reset, "x", "Update", "apps/v1", None, "apps", "Deployment", at(1));
    assert!(out["metadata"].get("managedFields").is_none(), "{out}");
}

#[test]
fn entries_sort_apply_first_then_oldest() {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
    let mut obj = update_managed_fields(None, &cm, "zeta", "Update", "v1", None, "", "ConfigMap", at(0));
    let mut next = obj.clone();
    next["data"]["b"] = json!("2");
    obj = update_managed_fields(Some(&obj), &next, "alpha", "Update", "v1", None, "", "ConfigMap", at(5));
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"c": "3"}});
    obj = apply(Some(&obj), &applied, "kubectl", false, "", "ConfigMap", at(10)).unwrap();
    let order: Vec<(String, String)> = entries(&obj)
        .iter()
        .map(|e| (e["manager"].as_str().unwrap().to_string(), e["operation"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(order, [("kubectl".into(), "Apply".into()), ("zeta".into(), "Update".into()), ("alpha".into(), "Update".into())]);
}

// ---------------------------------------------------------------------------------------
// Request checks.

#[test]
fn patch_options_and_body_checks_answer_as_kube() {
    let err = validate_patch_options(true, None, false).unwrap_err();
    assert_eq!(err.status_code(), 422);
    assert_eq!(err.to_string(), "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch");
    let status = conflict_status("apps", "Deployment", "d", &err);
    assert_eq!(status["details"]["causes"][0], json!({"reason": "FieldValueRequired", "message": "Required value: is required for apply patch", "field": "fieldManager"}));
    let err = validate_patch_options(false, Some("x"), true).unwrap_err();
    assert_eq!(err.to_string(), "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch");
    assert!(validate_patch_options(true, Some(&"m".repeat(129)), false).is_err());
    assert!(validate_patch_options(true, Some("kubectl"), true).is_ok());

    let d = deployment(1, "x");
    assert!(validate_apply_body(&d, "apps/v1", "Deployment", "nginx-deployment").is_ok());
    assert_eq!(
        validate_apply_body(&d, "apps/v1", "Deployment", "other").unwrap_err().to_string(),
        "the name of the object (nginx-deployment) does not match the name on the URL (other)"
    );
    assert_eq!(
        validate_apply_body(&d, "apps/v1beta1", "Deployment", "nginx-deployment").unwrap_err().to_string(),
        "Incorrect version specified in apply patch. Specified patch version: apps/v1, expected: apps/v1beta1"
    );
    let mut with_mf = d.clone();
    with_mf["metadata"]["managedFields"] = json!([]);
    assert_eq!(validate_apply_body(&with_mf, "apps/v1", "Deployment", "nginx-deployment").unwrap_err().to_string(), "metadata.managedFields must be nil");
}

#[test]
fn apply_bodies_parse_as_yaml_or_json() {
    let yaml = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"1\"\n  n: 2\n";
    assert_eq!(
        parse_apply_body(yaml).unwrap(),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "n": 2}})
    );
    assert_eq!(parse_apply_body(br#"{"kind":"ConfigMap","data":{"a":"1"}}"#).unwrap(), json!({"kind": "ConfigMap", "data": {"a": "1"}}));
    assert!(parse_apply_body(b"kind: [unclosed").unwrap_err().starts_with("error decoding YAML: "));
    assert!(parse_apply_body(b"- a\n- b\n").is_err());
}

// ---------------------------------------------------------------------------------------
// FieldsV1.

#[test]
fn fields_v1_decodes_kube_update_entries_and_prints_paths() {
    let v = json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                   "f:spec": {"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}}},
                   "f:finalizers": {"v:\"x\"": {}}, "f:list": {"i:0": {}}});
    let set = FieldSet::from_fields_v1(&v).unwrap();
    assert_eq!(set.to_fields_v1(), v);
    let paths: Vec<String> = set.paths().iter().map(ToString::to_string).collect();
    assert_eq!(
        paths,
        [
            ".finalizers[=\"x\"]",
            ".list[0]",
            ".metadata.labels",
            ".metadata.labels.app",
            ".spec.ports[port=80,protocol=\"TCP\"]",
            ".spec.ports[port=80,protocol=\"TCP\"].port"
        ]
    );
    assert!(FieldSet::from_fields_v1(&json!({"x:y": {}})).is_err());
}

// ---------------------------------------------------------------------------------------
// Properties.

fn arb_config() -> impl Strategy<Value = Value> {
    let labels = proptest::collection::btree_map("[a-c]", "[xy]", 0..3);
    let containers = proptest::collection::btree_map("[a-d]", ("[12]", proptest::option::of(proptest::collection::vec("--[a-b]", 0..3))), 0..4);
    let finalizers = proptest::collection::btree_set("f[1-3]", 0..3);
    (labels, containers, finalizers, proptest::option::of(0i64..4)).prop_map(|(labels, containers, finalizers, replicas)| {
        let containers: Vec<Value> = containers
            .into_iter()
            .map(|(name, (image, args))| {
                let mut c = json!({"name": name, "image": format!("img:{image}")});
                if let Some(args) = args {
                    c["args"] = json!(args);
                }
                c
            })
            .collect();
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                           "spec": {"template": {"spec": {"containers": containers}}}});
        if !labels.is_empty() {
            d["metadata"]["labels"] = json!(labels);
        }
        if !finalizers.is_empty() {
            d["metadata"]["finalizers"] = json!(finalizers);
        }
        if let Some(r) = replicas {
            d["spec"]["replicas"] = json!(r);
        }
        d
    })
}

proptest! {
    #[test]
    fn applying_twice_is_applying_once(base in arb_config(), config in arb_config()) {
        let live = apply(None, &base, "other", false, "apps", "Deployment", at(0)).unwrap();
        let once = apply(Some(&live), &config, "me", true, "apps", "Deployment", at(10)).unwrap();
        let twice = apply(Some(&once), &config, "me", false, "apps", "Deployment", at(20)).unwrap();
        prop_assert_eq!(twice, once);
    }

    #[test]
    fn field_sets_round_trip_through_fields_v1(config in arb_config()) {
        let out = apply(None, &config, "me", false, "apps", "Deployment", at(0)).unwrap();
        for e in decode_managed_fields(&out) {
            let encoded = e.fields.to_fields_v1();
            prop_assert_eq!(FieldSet::from_fields_v1(&encoded).unwrap(), e.fields.clone());
        }
        let set = typed::to_field_set(&config, schema::root("apps", "Deployment")).unwrap();
        prop_assert_eq!(FieldSet::from_fields_v1(&set.to_fields_v1()).unwrap(), set);
    }

    #[test]
    fn every_applied_field_is_in_the_result(base in arb_config(), config in arb_config()) {
        let live = apply(None, &base, "other", false, "apps", "Deployment", at(0)).unwrap();
        let out = apply(Some(&live), &config, "me", true, "apps", "Deployment", at(10)).unwrap();
        // The result, merged again with the configuration, is unchanged.
        let stripped = without_managed_fields(&out);
        let root = typed::root_schema(schema::root("apps", "Deployment"));
        let remerged = typed::merge(Some(&stripped), &config, &root, &mut Vec::new()).unwrap();
        prop_assert!(json_eq(&remerged, &stripped), "{} vs {}", remerged, stripped);
    }
}

// ---------------------------------------------------------------------------------------
// Fields the kind's strategy resets.

#[test]
fn apply_on_the_main_resource_ignores_status() {
    let live = must_apply(None, &deployment(1, "x"), "kubectl", "Deployment");
    let mut with_status = live.clone();
    with_status["status"] = json!({"replicas": 1});
    let live = update_managed_fields(Some(&live), &with_status, "kube-controller-manager", "Update", "apps/v1", Some("status"), "apps", "Deployment", at(1));
    assert_eq!(
        fields_of(&live, "kube-controller-manager", "Update"),
        json!({"f:status": {"f:replicas": {}}})
    );
    // An exported manifest with another status: no conflict, status untouched, not owned.
    let mut manifest = deployment(1, "x");
    manifest["status"] = json!({"replicas": 7});
    let out = apply(Some(&live), &manifest, "kubectl", false, "apps", "Deployment", at(2)).unwrap();
    assert_eq!(out["status"], json!({"replicas": 1}));
    assert!(fields_of(&out, "kubectl", "Apply").get("f:status").is_none());
    // A custom resource's status is just another field.
    let cr = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "status": {"ok": true}});
    let out = apply(None, &cr, "m", false, "example.com", "Widget", at(0)).unwrap();
    assert_eq!(fields_of(&out, "m", "Apply"), json!({"f:status": {"f:ok": {}}}));
}

/// Every path of `obj`: what a create would add (leaves and granular nodes).
fn universe(obj: &Value) -> FieldSet {
    let ty = schema::root("apps", "Deployment");
    typed::compare(&json!({}), &without_managed_fields(obj), ty).added
}

proptest! {
    #[test]
    fn managers_only_own_fields_the_object_has(
        a in arb_config(), b in arb_config(), c in arb_config(), force in any::<bool>(),
    ) {
        let mut obj = apply(None, &a, "alice", false, "apps", "Deployment", at(0)).unwrap();
        let mut edited = b.clone();
        edited["metadata"]["managedFields"] = obj["metadata"]["managedFields"].clone();
        obj = update_managed_fields(Some(&obj), &edited, "editor", "Update", "apps/v1", None, "apps", "Deployment", at(1));
        match apply(Some(&obj), &c, "alice", force, "apps", "Deployment", at(2)) {
            Ok(out) => obj = out,
            Err(ApplyError::Conflicts(cs)) => {
                prop_assert!(!force);
                prop_assert!(cs.iter().all(|c| c.manager == "editor"), "{:?}", cs);
            }
            Err(e) => prop_assert!(false, "{}", e),
        }
        let all = universe(&obj);
        for e in decode_managed_fields(&obj) {
            prop_assert!(!e.fields.is_empty());
            let stray = e.fields.difference(&all);
            prop_assert!(stray.is_empty(), "{} owns {:?} not in {}", e.manager, stray.paths(), obj);
        }
    }
}

/// Shrunk from `managers_only_own_fields_the_object_has`: an item another manager still
/// partly owns keeps its key when its applier drops it.
#[test]
fn a_dropped_item_kept_by_another_owner_keeps_its_key() {
    let mut d = deployment(1, "img");
    d["spec"]["template"]["spec"]["containers"] = json!([{"name": "a", "image": "img", "args": ["--x"]}]);
    let first = must_apply(None, &d, "alice", "Deployment");
    let mut edited = first.clone();
    edited["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["--y"]);
    let edited = update_managed_fields(Some(&first), &edited, "editor", "Update", "apps/v1", None, "apps", "Deployment", at(1));
    d["spec"]["template"]["spec"]["containers"] = json!([{"name": "b", "image": "img"}]);
    let out = must_apply(Some(&edited), &d, "alice", "Deployment");
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name": "a", "args": ["--y"]}, {"name": "b", "image": "img"}])
    );
}
