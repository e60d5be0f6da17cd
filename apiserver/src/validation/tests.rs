use super::*;
use proptest::prelude::*;
use serde_json::json;

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

#[test]
fn dns1123_subdomain_accepts_and_rejects() {
    for ok in ["a", "a.b", "0-9", "my-app.example.com", &"a".repeat(253)] {
        assert!(is_dns1123_subdomain(ok).is_empty(), "{ok}");
    }
    for bad in ["", "A", "-a", "a-", "a..b", ".a", "a.", "a_b", "é"] {
        assert_eq!(is_dns1123_subdomain(bad), vec![SUBDOMAIN_MSG.to_string()], "{bad}");
    }
    assert_eq!(
        is_dns1123_subdomain(&"a".repeat(254)),
        vec!["must be no more than 253 characters".to_string()]
    );
}

#[test]
fn dns1123_label_messages() {
    assert!(is_dns1123_label("kube-system").is_empty());
    assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots".to_string()]);
    assert_eq!(
        is_dns1123_label("Kube"),
        vec!["a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".to_string()]
    );
    assert_eq!(is_dns1123_label(&"a".repeat(64)), vec!["must be no more than 63 characters".to_string()]);
}

#[test]
fn dns1035_label_requires_leading_letter() {
    assert!(is_dns1035_label("web").is_empty());
    assert_eq!(
        is_dns1035_label("1web"),
        vec!["a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".to_string()]
    );
}

#[test]
fn qualified_names() {
    for ok in ["app", "App_1.x", "example.com/app", "k8s.io/Name", "a"] {
        assert!(is_qualified_name(ok).is_empty(), "{ok}");
    }
    assert_eq!(is_qualified_name("/a"), vec!["prefix part must be non-empty".to_string()]);
    assert_eq!(
        is_qualified_name("Example.com/a"),
        vec![format!("prefix part {SUBDOMAIN_MSG}")]
    );
    assert_eq!(
        is_qualified_name("a/"),
        vec![
            "name part must be non-empty".to_string(),
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".to_string()
        ]
    );
    assert_eq!(
        is_qualified_name("a/b/c"),
        vec!["a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".to_string()]
    );
    assert_eq!(is_qualified_name(&"a".repeat(64)), vec!["name part must be no more than 63 characters".to_string()]);
}

#[test]
fn label_values() {
    for ok in ["", "v1", "my_value", "A.b-c"] {
        assert!(is_valid_label_value(ok).is_empty(), "{ok}");
    }
    assert_eq!(
        is_valid_label_value("-x"),
        vec!["a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".to_string()]
    );
    assert_eq!(is_valid_label_value(&"a".repeat(64)), vec!["must be no more than 63 characters".to_string()]);
}

#[test]
fn field_error_display_matches_kube() {
    let e = FieldError::invalid("metadata.name", "Foo", is_dns1123_subdomain("Foo").remove(0));
    assert_eq!(e.to_string(), format!("metadata.name: Invalid value: \"Foo\": {SUBDOMAIN_MSG}"));
    assert_eq!(
        FieldError::required("metadata.name", "name or generateName is required").to_string(),
        "metadata.name: Required value: name or generateName is required"
    );
    assert_eq!(FieldError::required("metadata.namespace", "").to_string(), "metadata.namespace: Required value");
    assert_eq!(
        FieldError::forbidden("metadata.namespace", "not allowed on this type").to_string(),
        "metadata.namespace: Forbidden: not allowed on this type"
    );
    assert_eq!(
        FieldError::too_long("metadata.annotations", TOTAL_ANNOTATION_SIZE_LIMIT_BYTES).to_string(),
        "metadata.annotations: Too long: may not be more than 262144 bytes"
    );
    assert_eq!(
        FieldError::not_supported("spec.restartPolicy", "Sometimes", &["Always", "OnFailure", "Never"]).to_string(),
        "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
    );
    assert_eq!(FieldError::duplicate("spec.ports[1]", json!(80)).to_string(), "spec.ports[1]: Duplicate value: 80");
    assert_eq!(
        FieldError::invalid("values", vec!["a".to_string(), "b".to_string()], "x").to_string(),
        "values: Invalid value: []string{\"a\", \"b\"}: x"
    );
    assert_eq!(FieldError::invalid("f", "a\"b\n", "").to_string(), "f: Invalid value: \"a\\\"b\\n\"");
}

#[test]
fn object_meta_name_rules() {
    let pod = json!({"metadata": {"name": "Foo", "namespace": "default"}});
    let errs = validate_object_meta(&pod, true, NameRule::DnsSubdomain);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].field, "metadata.name");

    let anon = json!({"metadata": {"namespace": "default"}});
    assert_eq!(
        validate_object_meta(&anon, true, NameRule::DnsSubdomain)[0].to_string(),
        "metadata.name: Required value: name or generateName is required"
    );
    let gen_only = json!({"metadata": {"generateName": "web-", "namespace": "default"}});
    assert!(validate_object_meta(&gen_only, true, NameRule::DnsSubdomain).is_empty());
    let gen = json!({"metadata": {"generateName": "web-", "name": "web-x7k2p", "namespace": "default"}});
    assert!(validate_object_meta(&gen, true, NameRule::DnsSubdomain).is_empty());
    let bad_gen = json!({"metadata": {"generateName": "Web-", "name": "a", "namespace": "default"}});
    assert_eq!(validate_object_meta(&bad_gen, true, NameRule::DnsSubdomain)[0].field, "metadata.generateName");

    let svc = json!({"metadata": {"name": "1web", "namespace": "default"}});
    assert_eq!(validate_object_meta(&svc, true, NameRule::Dns1035Label).len(), 1);
    assert!(validate_object_meta(&svc, true, NameRule::DnsSubdomain).is_empty());

    let ns_missing = json!({"metadata": {"name": "a"}});
    assert_eq!(validate_object_meta(&ns_missing, true, NameRule::DnsSubdomain)[0].to_string(), "metadata.namespace: Required value");
    let cluster = json!({"metadata": {"name": "n1", "namespace": "default"}});
    assert_eq!(
        validate_object_meta(&cluster, false, NameRule::DnsSubdomain)[0].to_string(),
        "metadata.namespace: Forbidden: not allowed on this type"
    );
    let bad_ns = json!({"metadata": {"name": "a", "namespace": "a.b"}});
    assert_eq!(
        validate_object_meta(&bad_ns, true, NameRule::DnsSubdomain)[0].to_string(),
        "metadata.namespace: Invalid value: \"a.b\": must not contain dots"
    );
    let role = json!({"metadata": {"name": "system:controller:x", "namespace": "default"}});
    assert!(validate_object_meta(&role, true, NameRule::PathSegment).is_empty());
    let bad_role = json!({"metadata": {"name": "a/b", "namespace": "default"}});
    assert_eq!(
        validate_object_meta(&bad_role, true, NameRule::PathSegment)[0].to_string(),
        "metadata.name: Invalid value: \"a/b\": may not contain '/'"
    );
}

#[test]
fn object_meta_labels_annotations_finalizers_owners() {
    let obj = json!({"metadata": {
        "name": "a", "namespace": "default",
        "labels": {"ok": "v", "bad key!": "v", "k": "-bad"},
        "annotations": {"Example.com/Upper": "fine", "x//y": "z"},
        "finalizers": ["orphan", "foregroundDeletion"],
        "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "1", "controller": true},
            {"apiVersion": "v1", "kind": "Event", "name": "e", "uid": "2"},
            {"apiVersion": "apps/", "kind": "", "name": "", "uid": "", "controller": true}
        ]
    }});
    let errs = validate_object_meta(&obj, true, NameRule::DnsSubdomain);
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "metadata.labels",
            "metadata.labels",
            "metadata.annotations",
            "metadata.ownerReferences",
            "metadata.ownerReferences.apiVersion",
            "metadata.ownerReferences.kind",
            "metadata.ownerReferences.name",
            "metadata.ownerReferences.uid",
            "metadata.ownerReferences",
            "metadata.finalizers",
        ]
    );
    assert!(errs[3].detail.ends_with("/v1, Kind=Event is disallowed from being an owner"));
    assert_eq!(
        errs[8].detail,
        "Only one reference can have Controller set to true. Found \"true\" in references for ReplicaSet/rs and /"
    );
    assert_eq!(
        errs[9].to_string(),
        "metadata.finalizers: Invalid value: []string{\"orphan\", \"foregroundDeletion\"}: finalizer orphan and foregroundDeletion cannot be both set"
    );
}

#[test]
fn annotation_size_limit() {
    let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_BYTES - 1);
    let at_limit = json!({"metadata": {"name": "a", "annotations": {"k": big}}});
    assert!(validate_object_meta(&at_limit, false, NameRule::DnsSubdomain).is_empty());
    let over = json!({"metadata": {"name": "a", "annotations": {"k": big, "l": ""}}});
    assert_eq!(
        validate_object_meta(&over, false, NameRule::DnsSubdomain)[0].to_string(),
        "metadata.annotations: Too long: may not be more than 262144 bytes"
    );
}

#[test]
fn update_checks() {
    let old = json!({"metadata": {"name": "a", "namespace": "d", "uid": "u1", "resourceVersion": "5",
        "generation": 3, "deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["x"]}});
    let new = json!({"metadata": {"name": "b", "namespace": "d", "uid": "u1", "resourceVersion": "",
        "generation": 2, "deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["x", "y"]}});
    let msgs: Vec<String> = validate_object_meta_update(&new, &old).iter().map(|e| e.to_string()).collect();
    assert_eq!(
        msgs,
        vec![
            "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"y\"}",
            "metadata.resourceVersion: Invalid value: \"\": must be specified for an update",
            "metadata.generation: Invalid value: 2: must not be decremented",
            "metadata.name: Invalid value: \"b\": field is immutable",
        ]
    );
}

#[test]
fn invalid_status_shape() {
    let errs = vec![
        FieldError::invalid("metadata.name", "Foo", "bad"),
        FieldError::invalid("metadata.name", "Foo", "bad"),
        FieldError::required("spec.containers", ""),
    ];
    let status = invalid_status("", "Pod", "Foo", &errs);
    assert_eq!(
        status["message"],
        "Pod \"Foo\" is invalid: [metadata.name: Invalid value: \"Foo\": bad, spec.containers: Required value]"
    );
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(status["code"], 422);
    assert_eq!(status["details"]["kind"], "Pod");
    assert!(status["details"].get("group").is_none());
    assert_eq!(status["details"]["causes"][0], json!({"reason": "FieldValueInvalid", "message": "Invalid value: \"Foo\": bad", "field": "metadata.name"}));
    assert_eq!(status["details"]["causes"][2]["reason"], "FieldValueRequired");

    let one = invalid_status("apps", "Deployment", "web", &errs[2..]);
    assert_eq!(one["message"], "Deployment.apps \"web\" is invalid: spec.containers: Required value");
    assert_eq!(one["details"]["group"], "apps");
}

#[test]
fn label_selectors_in_specs() {
    let sel = json!({"matchLabels": {"app": "-x"}, "matchExpressions": [
        {"key": "a", "operator": "In"},
        {"key": "b", "operator": "Exists", "values": ["v"]},
        {"key": "c/d/e", "operator": "Gt", "values": ["1", "-bad"]}
    ]});
    let msgs: Vec<String> = validate_label_selector(&sel, "spec.selector").iter().map(|e| e.to_string()).collect();
    assert_eq!(msgs.len(), 6, "{msgs:#?}");
    assert!(msgs[0].starts_with("spec.selector.matchLabels: Invalid value: \"-x\": a valid label must be"));
    assert_eq!(msgs[1], "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'");
    assert_eq!(msgs[2], "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'");
    assert_eq!(msgs[3], "spec.selector.matchExpressions[2].operator: Invalid value: \"Gt\": not a valid selector operator");
    assert!(msgs[4].starts_with("spec.selector.matchExpressions[2].key: Invalid value: \"c/d/e\": a qualified name"));
    assert!(msgs[5].starts_with("spec.selector.matchExpressions[2].values[1]: Invalid value: \"-bad\""));
    assert!(validate_label_selector(&Value::Null, "spec.selector").is_empty());
}

#[test]
fn workload_selectors() {
    let ok = json!({"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}}}});
    assert!(validate_workload_selector(&ok, "spec", "deployment").is_empty());
    let mismatch = json!({"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "db"}}}});
    assert_eq!(
        validate_workload_selector(&mismatch, "spec", "deployment")[0].to_string(),
        "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"db\"}: `selector` does not match template `labels`"
    );
    let missing = json!({"template": {}});
    let errs = validate_workload_selector(&missing, "spec", "deployment");
    assert_eq!(errs[0].to_string(), "spec.selector: Required value");
    assert_eq!(errs[1].field, "spec.template.metadata.labels");
    let empty = json!({"selector": {}, "template": {}});
    assert_eq!(
        validate_workload_selector(&empty, "spec", "daemonset")[0].detail,
        "empty selector is invalid for daemonset"
    );
}

fn label_char() -> impl Strategy<Value = char> {
    prop_oneof![Just('a'), Just('z'), Just('0'), Just('-'), Just('.'), Just('_'), Just('A')]
}

proptest! {
    /// The hand-written matchers agree with a direct reading of kube's regexes.
    #[test]
    fn subdomain_matcher_agrees_with_model(chars in proptest::collection::vec(label_char(), 0..12)) {
        let s: String = chars.into_iter().collect();
        let model = !s.is_empty() && s.split('.').all(|l| {
            !l.is_empty()
                && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !l.starts_with('-') && !l.ends_with('-')
        });
        prop_assert_eq!(is_dns1123_subdomain(&s).is_empty(), model);
    }

    #[test]
    fn label_value_matcher_agrees_with_model(chars in proptest::collection::vec(label_char(), 0..12)) {
        let s: String = chars.into_iter().collect();
        let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        let model = s.is_empty() || (alnum(s.chars().next()) && alnum(s.chars().last()));
        prop_assert_eq!(is_valid_label_value(&s).is_empty(), model);
    }
}
