use super::*;
use proptest::prelude::*;
use serde_json::json;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn parse_err(s: &str) -> String {
    LabelSelector::parse(s).expect_err(s).to_string()
}

#[test]
fn parses_every_operator() {
    let cases = [
        ("", ""),
        ("x=a", "x=a"),
        ("x==a", "x==a"),
        ("x!=a", "x!=a"),
        ("x = a", "x=a"),
        ("  x  ", "x"),
        ("!x", "!x"),
        ("! x", "!x"),
        ("x in (b,a)", "x in (a,b)"),
        ("x in(a)", "x in (a)"),
        ("x notin (a, b ,c)", "x notin (a,b,c)"),
        ("x in ()", "x in ()"),
        ("x in (,a)", "x in (,a)"),
        ("x in (a,,b)", "x in (,a,b)"),
        ("x>1", "x>1"),
        ("x<10", "x<10"),
        ("x=", "x="),
        ("x=,y=b", "x=,y=b"),
        ("z=a,x in (a),!y", "x in (a),!y,z=a"),
        ("example.com/x=a", "example.com/x=a"),
        ("x=in", "x=in"),
        ("x in (in,notin)", "x in (in,notin)"),
    ];
    for (input, want) in cases {
        let sel = LabelSelector::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(sel.to_string(), want, "{input}");
    }
}

#[test]
fn parse_errors_have_kube_messages() {
    let cases = [
        ("x=a,", "found '', expected: identifier after ','"),
        (",x=a", "found ',', expected: !, identifier, or 'end of string'"),
        ("x=a b", "found 'b', expected: ',' or 'end of string'"),
        ("x in a", "unable to parse requirement: found 'a' expected: '('"),
        ("x in (a", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("x in (a b)", "unable to parse requirement: found 'b', expected: ',' or ')'"),
        ("x in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
        ("x notin", "unable to parse requirement: found '' expected: '('"),
        ("x=(a)", "unable to parse requirement: found '(', expected: identifier"),
        ("x y", "unable to parse requirement: found 'y', expected: in, notin, =, ==, !=, gt, lt"),
        ("!", "unable to parse requirement: found '', expected: identifier"),
        ("x=>a", "unable to parse requirement: found '>', expected: identifier"),
        ("x=!a", "unable to parse requirement: found '!', expected: identifier"),
        ("x!!a", "unable to parse requirement: found '!', expected: in, notin, =, ==, !=, gt, lt"),
        ("x>a", "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer"),
        ("x=-a", "unable to parse requirement: values[0][x]: Invalid value: \"-a\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"),
        ("a/b/c", "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"),
    ];
    for (input, want) in cases {
        assert_eq!(parse_err(input), want, "{input}");
    }
}

#[test]
fn matching_semantics() {
    let l = labels(&[("app", "web"), ("tier", "fe"), ("n", "5")]);
    let t = |s: &str| LabelSelector::parse(s).unwrap().matches(&l);
    assert!(t(""));
    assert!(t("app=web"));
    assert!(t("app==web"));
    assert!(!t("app=db"));
    assert!(t("app!=db"));
    assert!(t("missing!=x"), "!= matches an absent label");
    assert!(t("app in (db,web)"));
    assert!(!t("missing in (x)"));
    assert!(t("missing notin (x)"), "notin matches an absent label");
    assert!(!t("tier notin (fe)"));
    assert!(t("app"));
    assert!(!t("missing"));
    assert!(t("!missing"));
    assert!(!t("!app"));
    assert!(t("n>4"));
    assert!(!t("n>5"));
    assert!(t("n<6"));
    assert!(!t("app>1"), "non-integer label never compares");
    assert!(!t("missing<100"));
    assert!(t("app=web,tier=fe,n"));
    assert!(!t("app=web,tier=be"));
    assert!(LabelSelector::parse("x=").unwrap().matches(&labels(&[("x", "")])));
    assert!(!LabelSelector::parse("x=").unwrap().matches(&labels(&[])));
}

#[test]
fn matches_object_reads_metadata_labels() {
    let sel = LabelSelector::parse("app=web").unwrap();
    assert!(sel.matches_object(&json!({"metadata": {"labels": {"app": "web"}}})));
    assert!(!sel.matches_object(&json!({"metadata": {}})));
    assert!(LabelSelector::parse("!app").unwrap().matches_object(&json!({})));
}

#[test]
fn from_json_label_selector() {
    let sel = LabelSelector::from_json(&json!({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["fe", "be"]},
            {"key": "env", "operator": "NotIn", "values": ["prod"]},
            {"key": "team", "operator": "Exists"},
            {"key": "canary", "operator": "DoesNotExist"}
        ]
    }))
    .unwrap();
    assert_eq!(sel.to_string(), "app=web,!canary,env notin (prod),team,tier in (be,fe)");
    assert!(sel.matches(&labels(&[("app", "web"), ("tier", "fe"), ("team", "a")])));
    assert!(!sel.matches(&labels(&[("app", "web"), ("tier", "fe"), ("team", "a"), ("canary", "1")])));
    assert!(!sel.matches(&labels(&[("app", "web"), ("tier", "fe"), ("team", "a"), ("env", "prod")])));

    assert!(LabelSelector::from_json(&json!({})).unwrap().matches(&labels(&[])));
    assert!(!LabelSelector::from_json(&Value::Null).unwrap().matches(&labels(&[])));

    let bad_op = LabelSelector::from_json(&json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}));
    assert_eq!(bad_op.unwrap_err().to_string(), "\"Gt\" is not a valid label selector operator");
    let empty_in = LabelSelector::from_json(&json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}));
    assert_eq!(
        empty_in.unwrap_err().to_string(),
        "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty"
    );
    let exists_values = LabelSelector::from_json(&json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}));
    assert_eq!(
        exists_values.unwrap_err().to_string(),
        "values: Invalid value: []string{\"x\"}: values set must be empty for exists and does not exist"
    );
    let bad_key = LabelSelector::from_json(&json!({"matchLabels": {"-a": "b"}}));
    assert!(bad_key.unwrap_err().to_string().starts_with("key: Invalid value: \"-a\": name part must consist of"));
}

#[test]
fn requires_exact_match() {
    let sel = LabelSelector::parse("a=1,b in (2),c in (3,4),d!=5").unwrap();
    assert_eq!(sel.requires_exact_match("a"), Some("1"));
    assert_eq!(sel.requires_exact_match("b"), Some("2"));
    assert_eq!(sel.requires_exact_match("c"), None);
    assert_eq!(sel.requires_exact_match("d"), None);
    assert_eq!(sel.requires_exact_match("z"), None);
}

// ---------------------------------------------------------------------------------------
// Field selectors

fn pod() -> Value {
    json!({
        "metadata": {"name": "web-1", "namespace": "default"},
        "spec": {"nodeName": "node-a", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                 "serviceAccountName": "default"},
        "status": {"phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}]}
    })
}

fn fmatch(sel: &str, obj: &Value, resource: &str) -> bool {
    FieldSelector::parse(sel).unwrap().matches(obj, resource).unwrap()
}

#[test]
fn field_selector_parse_and_display() {
    let sel = FieldSelector::parse("status.phase!=Failed,metadata.name==a,spec.nodeName=").unwrap();
    assert_eq!(sel.to_string(), "metadata.name=a,spec.nodeName=,status.phase!=Failed");
    assert_eq!(FieldSelector::parse("").unwrap(), FieldSelector::default());
    assert_eq!(FieldSelector::parse(",,").unwrap(), FieldSelector::default());
    let esc = FieldSelector::parse(r"metadata.name=a\,b\=c\\d").unwrap();
    assert_eq!(esc.terms()[0].value, r"a,b=c\d");
    assert_eq!(esc.to_string(), r"metadata.name=a\,b\=c\\d");
    assert_eq!(esc.requires_exact_match("metadata.name"), Some(r"a,b=c\d"));
}

#[test]
fn field_selector_errors() {
    let e = |s: &str| FieldSelector::parse(s).unwrap_err().to_string();
    assert_eq!(e("metadata.name"), "invalid selector: 'metadata.name'; can't understand 'metadata.name'");
    assert_eq!(e("a=b,c"), "invalid selector: 'a=b,c'; can't understand 'c'");
    assert_eq!(e(r"a=b\x"), r"invalid field selector: invalid escape sequence: \x");
    assert_eq!(e(r"a=b\"), r"invalid field selector: invalid escape sequence: \");
    assert_eq!(e("a=b=c"), "invalid field selector: unescaped character in value: 61");
    let unsupported = FieldSelector::parse("foo=bar").unwrap().matches(&pod(), "pods").unwrap_err();
    assert_eq!(unsupported.to_string(), "field label not supported: foo");
    assert_eq!(
        FieldSelector::parse("spec.nodeName=a").unwrap().check_supported("configmaps").unwrap_err(),
        SelectorError::FieldNotSupported { field: "spec.nodeName".into() }
    );
}

#[test]
fn pod_fields() {
    let p = pod();
    assert!(fmatch("spec.nodeName=node-a", &p, "pods"));
    assert!(!fmatch("spec.nodeName=node-b", &p, "pods"));
    assert!(fmatch("spec.nodeName!=node-b", &p, "pods"));
    assert!(fmatch("status.phase=Running,metadata.namespace=default", &p, "pods"));
    assert!(fmatch("status.podIP=10.0.0.5", &p, "pods"));
    assert!(fmatch("spec.hostNetwork=false", &p, "pods"));
    assert!(fmatch("spec.restartPolicy=Always,spec.schedulerName=default-scheduler", &p, "pods"));
    assert!(fmatch("spec.serviceAccountName=default", &p, "pods"));
    assert!(fmatch("status.nominatedNodeName=", &p, "pods"), "absent compares as empty");
    let unscheduled = json!({"metadata": {"name": "x", "namespace": "d"}, "spec": {}});
    assert!(fmatch("spec.nodeName=", &unscheduled, "pods"));
    assert!(!fmatch("spec.nodeName!=", &unscheduled, "pods"));
    let host = json!({"metadata": {"name": "x"}, "spec": {"hostNetwork": true}});
    assert!(fmatch("spec.hostNetwork=true", &host, "pods"));
}

#[test]
fn other_resource_fields() {
    let ev = json!({
        "metadata": {"name": "e1", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default", "uid": "u1",
                           "apiVersion": "v1", "resourceVersion": "7", "fieldPath": "spec.containers{app}"},
        "reason": "Scheduled", "type": "Normal", "source": {"component": "default-scheduler"},
        "reportingComponent": "kubelet"
    });
    assert!(fmatch("involvedObject.kind=Pod,involvedObject.name=web-1,involvedObject.uid=u1", &ev, "events"));
    assert!(fmatch("involvedObject.fieldPath=spec.containers{app}", &ev, "events"));
    assert!(fmatch("reason=Scheduled,type=Normal,source=default-scheduler,reportingComponent=kubelet", &ev, "events"));
    assert!(fmatch("involvedObject.apiVersion=v1,involvedObject.resourceVersion=7,involvedObject.namespace=default", &ev, "events"));

    let secret = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls"});
    assert!(fmatch("type=kubernetes.io/tls", &secret, "secrets"));
    let ns = json!({"metadata": {"name": "ns"}, "status": {"phase": "Active"}});
    assert!(fmatch("status.phase=Active,metadata.name=ns", &ns, "namespaces"));
    let node = json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true}});
    assert!(fmatch("spec.unschedulable=true", &node, "nodes"));
    assert!(fmatch("spec.unschedulable=false", &json!({"metadata": {"name": "n"}}), "nodes"));
    let rs = json!({"metadata": {"name": "r"}, "status": {"replicas": 3}});
    assert!(fmatch("status.replicas=3", &rs, "replicasets"));
    assert!(fmatch("status.replicas=0", &json!({}), "replicationcontrollers"));
    let job = json!({"metadata": {"name": "j"}, "status": {"successful": 1}});
    assert!(fmatch("status.successful=1", &job, "jobs"));
    let csr = json!({"metadata": {"name": "c"}, "spec": {"signerName": "kubernetes.io/kubelet-serving"}});
    assert!(fmatch("spec.signerName=kubernetes.io/kubelet-serving", &csr, "certificatesigningrequests"));
    let cm = json!({"metadata": {"name": "c", "namespace": "d"}});
    assert!(fmatch("metadata.name=c,metadata.namespace=d", &cm, "configmaps"));
    assert!(fmatch("metadata.namespace=", &json!({"metadata": {"name": "w"}}), "widgets.example.com"));
}

// ---------------------------------------------------------------------------------------
// Properties

fn key_strategy() -> impl Strategy<Value = String> {
    ("(example\\.com/)?[a-z][a-z0-9]{0,5}").prop_map(|s| s)
}
fn value_strategy() -> impl Strategy<Value = String> {
    "([A-Za-z0-9]([-A-Za-z0-9_.]{0,4}[A-Za-z0-9])?)?"
}

fn requirement_strategy() -> impl Strategy<Value = Requirement> {
    let op = prop_oneof![
        Just(Operator::Equals),
        Just(Operator::DoubleEquals),
        Just(Operator::NotEquals),
        Just(Operator::In),
        Just(Operator::NotIn),
        Just(Operator::Exists),
        Just(Operator::DoesNotExist),
        Just(Operator::GreaterThan),
        Just(Operator::LessThan),
    ];
    (key_strategy(), op, proptest::collection::vec(value_strategy(), 1..4), -50i64..50).prop_map(|(k, op, vals, n)| {
        let values = match op {
            Operator::Exists | Operator::DoesNotExist => vec![],
            Operator::GreaterThan | Operator::LessThan => vec![n.abs().to_string()],
            Operator::In | Operator::NotIn => vals,
            _ => vec![vals[0].clone()],
        };
        Requirement::new(&k, op, values).expect("generated requirement is valid")
    })
}

proptest! {
    #[test]
    fn label_selector_string_round_trips(reqs in proptest::collection::vec(requirement_strategy(), 0..5)) {
        let mut seen = std::collections::BTreeSet::new();
        let reqs: Vec<Requirement> = reqs.into_iter().filter(|r| seen.insert(r.key().to_string())).collect();
        let sel = LabelSelector::from_requirements(reqs);
        let text = sel.to_string();
        let back = LabelSelector::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(back, sel);
    }

    #[test]
    fn match_labels_selects_exactly_supersets(
        wanted in proptest::collection::btree_map(key_strategy(), value_strategy(), 0..4),
        other in proptest::collection::btree_map(key_strategy(), value_strategy(), 0..6),
    ) {
        let sel = LabelSelector::from_json(&json!({"matchLabels": wanted})).unwrap();
        let model = wanted.iter().all(|(k, v)| other.get(k) == Some(v));
        prop_assert_eq!(sel.matches(&other), model);
        let mut merged = other.clone();
        merged.extend(wanted.clone());
        prop_assert!(sel.matches(&merged));
        // The string form selects the same sets.
        let reparsed = LabelSelector::parse(&sel.to_string()).unwrap();
        prop_assert_eq!(reparsed.matches(&other), model);
    }

    #[test]
    fn field_selector_round_trips(terms in proptest::collection::vec(("[a-z]{1,3}(\\.[a-z]{1,3})?", any::<bool>(), "[a-z=,\\\\!]{0,5}"), 0..4)) {
        let sel = FieldSelector {
            terms: terms.into_iter().map(|(field, eq, value)| FieldTerm {
                field,
                operator: if eq { FieldOperator::Equals } else { FieldOperator::NotEquals },
                value,
            }).collect(),
        };
        let back = FieldSelector::parse(&sel.to_string()).unwrap();
        let mut want = sel.terms.clone();
        let mut got = back.terms.clone();
        let key = |t: &FieldTerm| (t.field.clone(), t.operator == FieldOperator::Equals, t.value.clone());
        want.sort_by_key(key);
        got.sort_by_key(key);
        prop_assert_eq!(got, want);
    }
}
