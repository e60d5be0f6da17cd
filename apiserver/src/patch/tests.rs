use super::*;
use proptest::prelude::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------
// RFC 6902, Appendix A (cases written from the RFC's text).

fn jp(doc: Value, patch: Value) -> Result<Value> {
    apply_json_patch(&doc, &patch)
}

#[test]
fn rfc6902_examples() {
    // A.1 add an object member
    assert_eq!(jp(json!({"foo": "bar"}), json!([{"op": "add", "path": "/baz", "value": "qux"}])).unwrap(), json!({"baz": "qux", "foo": "bar"}));
    // A.2 add an array element
    assert_eq!(
        jp(json!({"foo": ["bar", "baz"]}), json!([{"op": "add", "path": "/foo/1", "value": "qux"}])).unwrap(),
        json!({"foo": ["bar", "qux", "baz"]})
    );
    // A.3 remove an object member
    assert_eq!(jp(json!({"baz": "qux", "foo": "bar"}), json!([{"op": "remove", "path": "/baz"}])).unwrap(), json!({"foo": "bar"}));
    // A.4 remove an array element
    assert_eq!(
        jp(json!({"foo": ["bar", "qux", "baz"]}), json!([{"op": "remove", "path": "/foo/1"}])).unwrap(),
        json!({"foo": ["bar", "baz"]})
    );
    // A.5 replace a value
    assert_eq!(
        jp(json!({"baz": "qux", "foo": "bar"}), json!([{"op": "replace", "path": "/baz", "value": "boo"}])).unwrap(),
        json!({"baz": "boo", "foo": "bar"})
    );
    // A.6 move a value
    assert_eq!(
        jp(
            json!({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}),
            json!([{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}])
        )
        .unwrap(),
        json!({"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}})
    );
    // A.7 move an array element
    assert_eq!(
        jp(json!({"foo": ["all", "grass", "cows", "eat"]}), json!([{"op": "move", "from": "/foo/1", "path": "/foo/3"}])).unwrap(),
        json!({"foo": ["all", "cows", "eat", "grass"]})
    );
    // A.8 test success
    let doc = json!({"baz": "qux", "foo": ["a", 2, "c"]});
    assert_eq!(
        jp(doc.clone(), json!([{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}])).unwrap(),
        doc
    );
    // A.9 test failure
    assert_eq!(
        jp(json!({"baz": "qux"}), json!([{"op": "test", "path": "/baz", "value": "bar"}])).unwrap_err(),
        PatchError::JsonPatchFailed("testing value /baz failed: test failed".into())
    );
    // A.10 add a nested member object
    assert_eq!(
        jp(json!({"foo": "bar"}), json!([{"op": "add", "path": "/child", "value": {"grandchild": {}}}])).unwrap(),
        json!({"foo": "bar", "child": {"grandchild": {}}})
    );
    // A.11 unrecognized members are ignored
    assert_eq!(
        jp(json!({"foo": "bar"}), json!([{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}])).unwrap(),
        json!({"foo": "bar", "baz": "qux"})
    );
    // A.12 add to a nonexistent target
    let err = jp(json!({"foo": "bar"}), json!([{"op": "add", "path": "/baz/bat", "value": "qux"}])).unwrap_err();
    assert_eq!(err.to_string(), "add operation does not apply: doc is missing path: \"/baz/bat\": missing value");
    assert_eq!(err.status_code(), 422);
    // A.14 ~ escape ordering
    let doc = json!({"/": 9, "~1": 10});
    assert!(jp(doc.clone(), json!([{"op": "test", "path": "/~01", "value": 10}])).is_ok());
    // A.15 comparing strings and numbers
    assert!(jp(doc, json!([{"op": "test", "path": "/~01", "value": "10"}])).is_err());
    // A.16 adding an array value
    assert_eq!(
        jp(json!({"foo": ["bar"]}), json!([{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}])).unwrap(),
        json!({"foo": ["bar", ["abc", "def"]]})
    );
}

#[test]
fn json_patch_edge_cases() {
    // Pointer escaping: ~1 is '/', ~0 is '~'.
    assert_eq!(decode_pointer("/a~1b/c~0d/~01").unwrap(), vec!["a/b", "c~d", "~1"]);
    assert_eq!(decode_pointer("").unwrap(), Vec::<String>::new());
    assert!(decode_pointer("a").is_none());
    let labels = json!({"metadata": {"labels": {"app.kubernetes.io/name": "web"}}});
    assert_eq!(
        jp(labels, json!([{"op": "remove", "path": "/metadata/labels/app.kubernetes.io~1name"}])).unwrap(),
        json!({"metadata": {"labels": {}}})
    );
    // Whole-document replace and add.
    assert_eq!(jp(json!({"a": 1}), json!([{"op": "replace", "path": "", "value": [1]}])).unwrap(), json!([1]));
    assert_eq!(jp(json!({"a": 1}), json!([{"op": "add", "path": "", "value": {"b": 2}}])).unwrap(), json!({"b": 2}));
    // Index rules: leading zeros and out-of-range indexes are refused.
    assert!(jp(json!({"a": [1, 2]}), json!([{"op": "add", "path": "/a/01", "value": 0}])).is_err());
    assert_eq!(
        jp(json!({"a": [1, 2]}), json!([{"op": "add", "path": "/a/3", "value": 0}])).unwrap_err().to_string(),
        "Unable to access invalid index: 3: invalid index referenced"
    );
    assert_eq!(jp(json!({"a": [1, 2]}), json!([{"op": "add", "path": "/a/2", "value": 0}])).unwrap(), json!({"a": [1, 2, 0]}));
    assert!(jp(json!({"a": [1]}), json!([{"op": "remove", "path": "/a/1"}])).is_err());
    // Missing targets.
    assert_eq!(
        jp(json!({}), json!([{"op": "remove", "path": "/x"}])).unwrap_err().to_string(),
        "Unable to remove nonexistent key: x: missing value"
    );
    assert_eq!(
        jp(json!({}), json!([{"op": "replace", "path": "/x", "value": 1}])).unwrap_err().to_string(),
        "replace operation does not apply: doc is missing key: /x: missing value"
    );
    assert_eq!(
        jp(json!({}), json!([{"op": "copy", "from": "/x", "path": "/y"}])).unwrap_err().to_string(),
        "copy operation does not apply: doc is missing from path: /x: missing value"
    );
    assert!(jp(json!({"a": {"b": 1}}), json!([{"op": "move", "from": "/a", "path": "/a/b/c"}])).is_err());
    assert_eq!(jp(json!({"a": 1}), json!([{"op": "copy", "from": "/a", "path": "/b"}])).unwrap(), json!({"a": 1, "b": 1}));
    // Numbers compare by value.
    assert!(jp(json!({"a": 1}), json!([{"op": "test", "path": "/a", "value": 1.0}])).is_ok());
    // Atomic: a failing later operation leaves nothing applied (the input is untouched).
    let doc = json!({"a": 1});
    assert!(jp(doc.clone(), json!([{"op": "add", "path": "/b", "value": 2}, {"op": "test", "path": "/a", "value": 2}])).is_err());
    // Malformed documents are 400s.
    let err = jp(json!({}), json!({"op": "add"})).unwrap_err();
    assert_eq!(err.to_string(), "json: cannot unmarshal object into Go value of type jsonpatch.Patch");
    assert_eq!(err.status_code(), 400);
    assert_eq!(jp(json!({}), json!([{"op": "frob", "path": "/a"}])).unwrap_err().to_string(), "Unexpected kind: frob");
    let many: Vec<Value> = (0..=JSON_PATCH_OPERATIONS_MAX).map(|_| json!({"op": "test", "path": "", "value": {}})).collect();
    let err = jp(json!({}), Value::Array(many)).unwrap_err();
    assert_eq!(err.status_code(), 413);
    assert_eq!(err.to_string(), "The allowed maximum operations in a JSON patch is 10000, got 10001");
}

// ---------------------------------------------------------------------------------------
// RFC 7386, Appendix A.

#[test]
fn rfc7386_examples() {
    let cases = [
        (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
        (json!({"a": "b"}), json!({"b": "c"}), json!({"a": "b", "b": "c"})),
        (json!({"a": "b"}), json!({"a": null}), json!({})),
        (json!({"a": "b", "b": "c"}), json!({"a": null}), json!({"b": "c"})),
        (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
        (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
        (json!({"a": {"b": "c"}}), json!({"a": {"b": "d", "c": null}}), json!({"a": {"b": "d"}})),
        (json!({"a": [{"b": "c"}]}), json!({"a": [1]}), json!({"a": [1]})),
        (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
        (json!({"a": "b"}), json!(["c"]), json!(["c"])),
        (json!({"a": "foo"}), json!(null), json!(null)),
        (json!({"a": "foo"}), json!("bar"), json!("bar")),
        (json!({"e": null}), json!({"a": 1}), json!({"e": null, "a": 1})),
        (json!([1, 2]), json!({"a": "b", "c": null}), json!({"a": "b"})),
        (json!({}), json!({"a": {"bb": {"ccc": null}}}), json!({"a": {"bb": {}}})),
    ];
    for (doc, patch, want) in cases {
        assert_eq!(apply_merge_patch(&doc, &patch), want, "{doc} + {patch}");
    }
    // The RFC's section 3 example.
    let doc = json!({"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"},
        "tags": ["example", "sample"], "content": "This will be unchanged"});
    let patch = json!({"title": "Hello!", "phoneNumber": "+01-123-456-7890", "author": {"familyName": null}, "tags": ["example"]});
    assert_eq!(
        apply_merge_patch(&doc, &patch),
        json!({"title": "Hello!", "author": {"givenName": "John"}, "tags": ["example"],
            "content": "This will be unchanged", "phoneNumber": "+01-123-456-7890"})
    );
}

#[test]
fn create_merge_patch_examples() {
    let a = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 1}});
    let b = json!({"metadata": {"labels": {"a": "1", "c": "3"}}, "spec": {"replicas": 1}});
    assert_eq!(create_merge_patch(&a, &b), json!({"metadata": {"labels": {"b": null, "c": "3"}}}));
}

// ---------------------------------------------------------------------------------------
// Strategic merge patch.

fn smp(doc: Value, patch: Value, kind: &str) -> Result<Value> {
    let group = match kind {
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => "apps",
        "Job" | "CronJob" => "batch",
        _ => "",
    };
    apply_strategic_merge_patch(&doc, &patch, group, kind)
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
            "containers": [
                {"name": "app", "image": "nginx:1.25", "env": [{"name": "A", "value": "a"}],
                 "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                {"name": "sidecar", "image": "busybox"}
            ],
            "tolerations": [{"key": "k1", "operator": "Exists"}]
        }}}
    })
}

fn containers(v: &Value) -> &Value {
    &v["spec"]["template"]["spec"]["containers"]
}

#[test]
fn smp_changes_a_container_image_by_name() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.26"}]}}}});
    let out = smp(deployment(), patch, "Deployment").unwrap();
    assert_eq!(containers(&out)[0]["image"], "nginx:1.26");
    assert_eq!(containers(&out)[0]["env"], json!([{"name": "A", "value": "a"}]), "other fields kept");
    assert_eq!(containers(&out)[1], json!({"name": "sidecar", "image": "busybox"}));
    assert_eq!(out["spec"]["replicas"], 2);
}

#[test]
fn smp_adds_an_env_var_before_existing_ones_like_kube() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "env": [{"name": "B", "value": "b"}]}]}}}});
    let out = smp(deployment(), patch, "Deployment").unwrap();
    assert_eq!(containers(&out)[0]["env"], json!([{"name": "B", "value": "b"}, {"name": "A", "value": "a"}]));
    // Changing an existing one merges in place.
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "env": [{"name": "A", "value": "z"}]}]}}}});
    let out = smp(deployment(), patch, "Deployment").unwrap();
    assert_eq!(containers(&out)[0]["env"], json!([{"name": "A", "value": "z"}]));
}

#[test]
fn smp_adds_a_container_and_orders_with_set_element_order() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}, {"name": "new"}],
        "containers": [{"name": "new", "image": "redis"}]
    }}}});
    let out = smp(deployment(), patch, "Deployment").unwrap();
    let names: Vec<&str> = containers(&out).as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["app", "sidecar", "new"]);
    assert!(out["spec"]["template"]["spec"].get("$setElementOrder/containers").is_none());

    // Without the directive the new item leads (kube's mergeSortedSlice).
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "new", "image": "redis"}]}}}});
    let out = smp(deployment(), patch, "Deployment").unwrap();
    let names: Vec<&str> = containers(&out).as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["new", "app", "sidecar"]);
}

#[test]
fn smp_deletes_a_container_with_patch_delete() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}});
    let out = smp(deployment(), patch, "Deployment").unwrap();
    assert_eq!(containers(&out).as_array().unwrap().len(), 1);
    assert_eq!(containers(&out)[0]["name"], "app");
}

#[test]
fn smp_replaces_a_list_with_patch_replace() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "x"}]}}}});
    let out = smp(deployment(), patch, "Deployment").unwrap();
    assert_eq!(containers(&out), &json!([{"name": "only", "image": "x"}]));
}

#[test]
fn smp_replaces_a_map_with_patch_replace_and_deletes_with_patch_delete() {
    let patch = json!({"metadata": {"labels": {"$patch": "replace", "tier": "fe"}}});
    let out = smp(deployment(), patch, "Deployment").unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"tier": "fe"}));
    let patch = json!({"metadata": {"labels": {"$patch": "delete"}}});
    let out = smp(deployment(), patch, "Deployment").unwrap();
    assert_eq!(out["metadata"]["labels"], json!({}));
}

#[test]
fn smp_adds_and_removes_labels() {
    let patch = json!({"metadata": {"labels": {"tier": "fe", "app": null}}});
    let out = smp(deployment(), patch, "Deployment").unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"tier": "fe"}));
}

#[test]
fn smp_replaces_atomic_lists() {
    let patch = json!({"spec": {"template": {"spec": {"tolerations": [{"key": "k2", "operator": "Exists"}]}}}});
    let out = smp(deployment(), patch, "Deployment").unwrap();
    assert_eq!(out["spec"]["template"]["spec"]["tolerations"], json!([{"key": "k2", "operator": "Exists"}]));
    assert_eq!(field_meta_for_path("Pod", "spec.tolerations"), None);
}

#[test]
fn smp_merges_ports_by_number_keys() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "ports": [
        {"containerPort": 80, "name": "http"}, {"containerPort": 443}
    ]}]}}}});
    let out = smp(deployment(), patch, "Deployment").unwrap();
    assert_eq!(
        containers(&out)[0]["ports"],
        json!([{"containerPort": 80, "protocol": "TCP", "name": "http"}, {"containerPort": 443}])
    );
    let svc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
    let out = smp(svc, json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}), "Service").unwrap();
    assert_eq!(out["spec"]["ports"], json!([{"port": 80, "targetPort": 9090}, {"port": 443}]));
}

#[test]
fn smp_finalizers_merge_as_a_set_and_delete_from_primitive_list() {
    let obj = json!({"metadata": {"finalizers": ["a", "b"]}});
    let out = smp(obj.clone(), json!({"metadata": {"finalizers": ["b", "c"]}}), "ConfigMap").unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
    let out = smp(obj.clone(), json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}), "ConfigMap").unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    // Kube's order rule: patch items in patch order, interleaved by the server's order.
    let obj = json!({"metadata": {"finalizers": ["x", "y", "z"]}});
    let out = smp(obj, json!({"metadata": {"finalizers": ["z", "x"]}}), "ConfigMap").unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["y", "z", "x"]));
    let err = smp(json!({}), json!({"$deleteFromPrimitiveListfinalizers": ["a"]}), "ConfigMap").unwrap_err();
    assert_eq!(err, PatchError::BadRequest("invalid patch format of primitive list".into()));
}

#[test]
fn smp_owner_references_and_conditions() {
    let obj = json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}, {"uid": "2", "name": "b"}]},
        "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}});
    let patch = json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b2"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let out = smp(obj, patch, "Pod").unwrap();
    assert_eq!(out["metadata"]["ownerReferences"], json!([{"uid": "1", "name": "a"}, {"uid": "2", "name": "b2"}]));
    assert_eq!(out["status"]["conditions"], json!([{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]));
}

#[test]
fn smp_retain_keys_clears_other_strategy_fields() {
    let d = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
    let out = smp(d.clone(), patch, "Deployment").unwrap();
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    let bad = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}});
    assert_eq!(smp(d, bad, "Deployment").unwrap_err(), PatchError::BadRequest("invalid patch format of retainKeys".into()));
    // A new map keeps no directive keys.
    let out = smp(json!({}), json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}), "Deployment").unwrap();
    assert_eq!(out, json!({"spec": {"strategy": {"type": "Recreate"}}}));
}

#[test]
fn smp_set_element_order_with_items_missing_from_the_list() {
    // The order names an item ("c") that is in neither list: it is ignored.
    let obj = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
    let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "c"}, {"name": "a"}],
        "containers": [{"name": "b", "image": "x"}]}});
    let out = smp(obj, patch, "Pod").unwrap();
    assert_eq!(out["spec"]["containers"], json!([{"name": "b", "image": "x"}, {"name": "a"}]));
    // Reordering scalars.
    let obj = json!({"metadata": {"finalizers": ["a", "b"]}});
    let out = smp(obj, json!({"metadata": {"$setElementOrder/finalizers": ["b", "a"]}}), "Pod").unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["b", "a"]));
}

#[test]
fn smp_kubectl_apply_three_way_patch() {
    // What `kubectl apply` sends after an env var was removed from the manifest and a port
    // added: order directives, a delete directive, and the new port.
    let live = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "nginx", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
        {"name": "injected", "image": "proxy"}
    ]}}}});
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "app"}],
        "containers": [{
            "name": "app",
            "$setElementOrder/env": [{"name": "A"}],
            "env": [{"$patch": "delete", "name": "B"}],
            "ports": [{"containerPort": 8080}]
        }]
    }}}});
    let out = smp(live, patch, "Deployment").unwrap();
    assert_eq!(
        containers(&out),
        &json!([
            {"name": "app", "image": "nginx", "env": [{"name": "A", "value": "1"}], "ports": [{"containerPort": 8080}]},
            {"name": "injected", "image": "proxy"}
        ])
    );
}

#[test]
fn smp_volume_source_switch_with_retain_keys() {
    let pod = json!({"spec": {"volumes": [{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]}});
    let patch = json!({"spec": {"volumes": [{"$retainKeys": ["configMap", "name"], "name": "data", "configMap": {"name": "cfg"}}]}});
    let out = smp(pod, patch, "Pod").unwrap();
    assert_eq!(out["spec"]["volumes"], json!([{"name": "data", "configMap": {"name": "cfg"}}, {"name": "tmp", "emptyDir": {}}]));
}

#[test]
fn smp_null_removes_fields_and_new_maps_drop_nulls() {
    let obj = json!({"metadata": {"annotations": {"a": "1"}}, "spec": {"replicas": 3, "paused": true}});
    let patch = json!({"spec": {"paused": null, "strategy": {"type": "Recreate", "rollingUpdate": null}}, "metadata": {"annotations": null}});
    let out = smp(obj, patch, "Deployment").unwrap();
    assert_eq!(out, json!({"metadata": {}, "spec": {"replicas": 3, "strategy": {"type": "Recreate"}}}));
}

#[test]
fn smp_errors() {
    let err = smp(json!({}), json!({}), "Widget").unwrap_err();
    assert_eq!(err, PatchError::StrategicMergePatchUnsupported);
    assert_eq!(err.status_code(), 415);
    assert_eq!(
        err.to_string(),
        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    );
    assert!(!strategic_merge_patch_supported("example.com", "Widget"));
    assert!(strategic_merge_patch_supported("apps", "Deployment"));
    assert!(!strategic_merge_patch_supported("", "Deployment"));

    let err = smp(deployment(), json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}), "Deployment").unwrap_err();
    assert_eq!(err.to_string(), "map: map[image:x] does not contain declared merge key: name");
    assert_eq!(err.status_code(), 500);
    let err = smp(deployment(), json!({"metadata": {"labels": {"$patch": "frob"}}}), "Deployment").unwrap_err();
    assert_eq!(err.to_string(), "unknown patch type: frob in map: map[$patch:frob]");
    let err = smp(json!({"spec": {"containers": [["a"]]}}), json!({"spec": {"containers": [["b"]]}}), "Pod").unwrap_err();
    assert_eq!(err, PatchError::Unprocessable("lists of lists are not supported".into()));
    assert_eq!(smp(json!({}), json!([1]), "Pod").unwrap_err().status_code(), 400);
}

#[test]
fn smp_merge_keys_by_path() {
    let key = |kind: &str, path: &str| field_meta_for_path(kind, path).and_then(|m| m.merge_key);
    assert_eq!(key("Pod", "spec.containers"), Some("name"));
    assert_eq!(key("Deployment", "spec.template.spec.initContainers"), Some("name"));
    assert_eq!(key("CronJob", "spec.jobTemplate.spec.template.spec.containers.env"), Some("name"));
    assert_eq!(key("StatefulSet", "spec.template.spec.containers.volumeMounts"), Some("mountPath"));
    assert_eq!(key("Pod", "spec.containers.ports"), Some("containerPort"));
    assert_eq!(key("Service", "spec.ports"), Some("port"));
    assert_eq!(key("Pod", "spec.volumes"), Some("name"));
    assert_eq!(key("Pod", "spec.imagePullSecrets"), Some("name"));
    assert_eq!(key("Pod", "spec.hostAliases"), Some("ip"));
    assert_eq!(key("Pod", "spec.topologySpreadConstraints"), Some("topologyKey"));
    assert_eq!(key("ConfigMap", "metadata.ownerReferences"), Some("uid"));
    assert_eq!(key("Node", "status.conditions"), Some("type"));
    assert_eq!(key("Node", "status.addresses"), Some("type"));
    let fin = field_meta_for_path("Secret", "metadata.finalizers").unwrap();
    assert_eq!((fin.strategy, fin.merge_key), (PatchStrategy::Merge, None));
    assert!(field_meta_for_path("Pod", "spec.volumes").unwrap().retain_keys);
    assert_eq!(field_meta_for_path("PodDisruptionBudget", "spec.selector").unwrap().strategy, PatchStrategy::Replace);
}

// ---------------------------------------------------------------------------------------
// Properties

/// JSON without nulls (merge patches cannot express them).
fn json_no_null() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::from),
        (-5i64..5).prop_map(Value::from),
        "[a-c]{0,2}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            proptest::collection::btree_map("[a-d]", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Objects nested in objects, no lists, no nulls: the shapes where SMP equals merge patch.
fn json_maps_only() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![(-5i64..5).prop_map(Value::from), "[a-c]{0,2}".prop_map(Value::from)];
    leaf.prop_recursive(3, 24, 4, |inner| {
        proptest::collection::btree_map("[a-d]", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect()))
    })
}

proptest! {
    #[test]
    fn merge_patch_of_diff_reaches_target(doc in json_no_null(), target in json_no_null()) {
        let patch = create_merge_patch(&doc, &target);
        prop_assert_eq!(apply_merge_patch(&doc, &patch), target);
    }

    #[test]
    fn json_patch_add_then_remove_restores(
        doc in proptest::collection::btree_map("[a-d]", json_no_null(), 0..4),
        key in "[e-h]{1,3}",
        value in json_no_null(),
    ) {
        let doc = Value::Object(doc.into_iter().collect());
        let path = format!("/{key}");
        let patch = json!([{"op": "add", "path": path, "value": value}, {"op": "remove", "path": path}]);
        prop_assert_eq!(apply_json_patch(&doc, &patch).unwrap(), doc);
    }

    #[test]
    fn json_patch_array_insert_then_remove_restores(
        items in proptest::collection::vec(json_no_null(), 0..5),
        at in 0usize..6,
        value in json_no_null(),
    ) {
        let at = at.min(items.len());
        let doc = json!({"list": items});
        let path = format!("/list/{at}");
        let patch = json!([{"op": "add", "path": path, "value": value}, {"op": "test", "path": path, "value": value}, {"op": "remove", "path": path}]);
        prop_assert_eq!(apply_json_patch(&doc, &patch).unwrap(), doc);
    }

    #[test]
    fn smp_without_lists_is_a_merge_patch(doc in json_maps_only(), patch in json_maps_only()) {
        prop_assume!(doc.is_object() && patch.is_object());
        let want = apply_merge_patch(&doc, &patch);
        prop_assert_eq!(apply_strategic_merge_patch(&doc, &patch, "", "ConfigMap").unwrap(), want);
    }

    #[test]
    fn smp_container_merge_keeps_every_name_once(
        old in proptest::collection::btree_set("[a-e]", 0..5),
        new in proptest::collection::btree_set("[a-e]", 0..5),
    ) {
        let list = |names: &std::collections::BTreeSet<String>, image: &str| -> Value {
            names.iter().map(|n| json!({"name": n, "image": image})).collect::<Vec<_>>().into()
        };
        let pod = json!({"spec": {"containers": list(&old, "old")}});
        let patch = json!({"spec": {"containers": list(&new, "new")}});
        let out = apply_strategic_merge_patch(&pod, &patch, "", "Pod").unwrap();
        let got = out["spec"]["containers"].as_array().unwrap();
        let union: std::collections::BTreeSet<String> = old.union(&new).cloned().collect();
        prop_assert_eq!(got.len(), union.len());
        for c in got {
            let name = c["name"].as_str().unwrap();
            let want = if new.contains(name) { "new" } else { "old" };
            prop_assert_eq!(c["image"].as_str().unwrap(), want);
        }
    }
}
