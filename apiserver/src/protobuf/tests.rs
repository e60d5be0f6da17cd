use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

/// A protobuf message built field by field (the encoder side, written for the tests).
#[derive(Default, Clone)]
struct Pb(Vec<u8>);

impl Pb {
    fn new() -> Pb {
        Pb::default()
    }

    fn raw_varint(mut self, mut v: u64) -> Pb {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
        self
    }

    fn key(self, tag: u32, wire: u8) -> Pb {
        self.raw_varint(((tag as u64) << 3) | wire as u64)
    }

    fn varint(self, tag: u32, v: u64) -> Pb {
        self.key(tag, 0).raw_varint(v)
    }

    fn bytes(self, tag: u32, b: &[u8]) -> Pb {
        let mut p = self.key(tag, 2).raw_varint(b.len() as u64);
        p.0.extend_from_slice(b);
        p
    }

    fn str(self, tag: u32, s: &str) -> Pb {
        self.bytes(tag, s.as_bytes())
    }

    fn msg(self, tag: u32, m: Pb) -> Pb {
        self.bytes(tag, &m.0)
    }

    /// A map<string, string> entry.
    fn entry(self, tag: u32, k: &str, v: &str) -> Pb {
        self.msg(tag, Pb::new().str(1, k).str(2, v))
    }
}

/// `k8s\0` + runtime.Unknown{typeMeta, raw, contentEncoding: "", contentType: ""}, as Go writes it.
fn unknown(api_version: &str, kind: &str, raw: Pb) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend(Pb::new().msg(1, Pb::new().str(1, api_version).str(2, kind)).msg(2, raw).str(3, "").str(4, "").0);
    out
}

/// ObjectMeta as Go writes it: every value field, zero or not.
fn meta(name: &str) -> Pb {
    Pb::new().str(1, name).str(2, "").str(3, "").str(4, "").str(5, "").str(6, "").varint(7, 0).msg(8, Pb::new())
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

fn decode(body: &[u8]) -> Value {
    decode_request(body, "", "").unwrap_or_else(|e| panic!("decode failed: {e}"))
}

// Bodies captured from kubectl 1.32.4 (`kubectl create ...` against a recording server).
/// `kubectl create namespace foo`
const KUBECTL_NAMESPACE: &str = "6b3873000a0f0a02763112094e616d657370616365121b0a130a03666f6f12001a0022002a0032003800420012001a020a001a002200";
/// `kubectl create secret generic s --from-literal=a=b`
const KUBECTL_SECRET: &str = "6b3873000a0c0a0276311206536563726574121d0a110a017312001a0022002a0032003800420012060a01611201621a001a002200";
/// `kubectl create deployment d --image=nginx --replicas=0`
const KUBECTL_DEPLOYMENT: &str = "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412a3010a1b0a016412001a0022002a003200380042005a080a0361707012016412760800120a0a080a036170701201641a5e0a1a0a0012001a0022002a003200380042005a080a03617070120164124012220a056e67696e7812056e67696e782a0042006a007200800100880100900100a201001a00320042004a0052005800600068008201008a01009a0100c2010022020a00280038001a0c0800100018002000280038001a002200";
/// `kubectl create service clusterip svc --tcp=80:8080`
const KUBECTL_SERVICE: &str = "6b3873000a0d0a02763112075365727669636512690a1f0a0373766312001a0022002a003200380042005a0a0a03617070120373766312420a1b0a0738302d38303830120354435018502207080010903f1a002800120a0a0361707012037376631a002209436c757374657249503a00420052005a00600068001a020a001a002200";
/// `kubectl create job j --image=busybox -- echo hi`
const KUBECTL_JOB: &str = "6b3873000a0f0a0862617463682f763112034a6f621282010a110a016a12001a0022002a00320038004200126332610a100a0012001a0022002a00320038004200124d122a0a016a120762757379626f781a046563686f1a0268692a0042006a007200800100880100900100a201001a054e65766572320042004a0052005800600068008201008a01009a0100c201001a082000280030003a001a002200";

/// kubectl's own `--dry-run=client -o json` of the same commands, minus
/// `creationTimestamp: null` (Go's JSON for the zero time, which is dropped here).
#[test]
fn kubectl_bodies_decode_to_kubectls_json() {
    let cases: &[(&str, Value)] = &[
        (KUBECTL_NAMESPACE, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "foo"}, "spec": {}, "status": {}})),
        (KUBECTL_SECRET, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "Yg=="}})),
        (
            KUBECTL_DEPLOYMENT,
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "d", "labels": {"app": "d"}},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": {"app": "d"}},
                    "template": {
                        "metadata": {"labels": {"app": "d"}},
                        "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}]}
                    },
                    "strategy": {}
                },
                "status": {}
            }),
        ),
        (
            KUBECTL_SERVICE,
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "svc", "labels": {"app": "svc"}},
                "spec": {
                    "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                    "selector": {"app": "svc"},
                    "type": "ClusterIP"
                },
                "status": {"loadBalancer": {}}
            }),
        ),
        (
            KUBECTL_JOB,
            json!({
                "apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": "j"},
                "spec": {"template": {
                    "metadata": {},
                    "spec": {
                        "containers": [{"name": "j", "image": "busybox", "command": ["echo", "hi"], "resources": {}}],
                        "restartPolicy": "Never"
                    }
                }},
                "status": {}
            }),
        ),
    ];
    for (body, want) in cases {
        assert_eq!(&decode(&hex(body)), want);
    }
}

#[test]
fn configmap_with_binary_data() {
    let raw = Pb::new()
        .msg(1, meta("cfg").entry(11, "app", "web"))
        .entry(2, "color", "blue")
        .msg(3, Pb::new().str(1, "blob").bytes(2, &[0, 1, 2, 255]))
        .varint(4, 1);
    let got = decode(&unknown("v1", "ConfigMap", raw));
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cfg", "labels": {"app": "web"}},
            "data": {"color": "blue"},
            "binaryData": {"blob": "AAEC/w=="},
            "immutable": true
        })
    );
}

#[test]
fn secret_bytes_and_string_data() {
    let raw = Pb::new()
        .msg(1, meta("s"))
        .msg(2, Pb::new().str(1, "password").bytes(2, b"hunter2"))
        .str(3, "Opaque")
        .entry(4, "user", "admin");
    let got = decode(&unknown("v1", "Secret", raw));
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s"},
            "data": {"password": "aHVudGVyMg=="},
            "type": "Opaque",
            "stringData": {"user": "admin"}
        })
    );
}

#[test]
fn deployment_with_int_or_string_quantity_and_time() {
    let int_or_string_str = |s: &str| Pb::new().varint(1, 1).varint(2, 0).str(3, s);
    let int_or_string_int = |i: u64| Pb::new().varint(1, 0).varint(2, i).str(3, "");
    let container = Pb::new()
        .str(1, "web")
        .str(2, "nginx:1.25")
        .msg(6, Pb::new().str(1, "").varint(2, 0).varint(3, 8080).str(4, "TCP").str(5, ""))
        .msg(8, Pb::new().msg(1, Pb::new().str(1, "cpu").msg(2, Pb::new().str(1, "500m"))).msg(2, Pb::new().str(1, "memory").msg(2, Pb::new().str(1, "64Mi"))));
    let template = Pb::new().msg(1, meta("").entry(11, "app", "web")).msg(2, Pb::new().msg(2, container));
    let strategy = Pb::new()
        .str(1, "RollingUpdate")
        .msg(2, Pb::new().msg(1, int_or_string_int(0)).msg(2, int_or_string_str("25%")));
    let spec = Pb::new()
        .varint(1, 3)
        .msg(2, Pb::new().entry(1, "app", "web"))
        .msg(3, template)
        .msg(4, strategy)
        .varint(5, 0)
        .varint(6, 10)
        .varint(9, 600);
    let created = Pb::new().varint(1, 1_704_164_645).varint(2, 0);
    let status_condition = Pb::new()
        .str(1, "Available")
        .str(2, "True")
        .msg(6, Pb::new().varint(1, 1_704_164_646))
        .msg(7, Pb::new().varint(1, 1_704_164_647).varint(2, 500_000_000))
        .str(4, "MinimumReplicasAvailable")
        .str(5, "");
    let raw = Pb::new()
        .msg(1, Pb::new().str(1, "web").str(2, "").str(3, "default").varint(7, 4).msg(8, created))
        .msg(2, spec)
        .msg(3, Pb::new().varint(1, 7).varint(2, 3).varint(3, 3).msg(6, status_condition));
    let got = decode(&unknown("apps/v1", "Deployment", raw));
    assert_eq!(
        got,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "generation": 4, "creationTimestamp": "2024-01-02T03:04:05Z"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "web",
                        "image": "nginx:1.25",
                        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                        "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "64Mi"}}
                    }]}
                },
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600
            },
            "status": {
                "observedGeneration": 7,
                "replicas": 3,
                "updatedReplicas": 3,
                "conditions": [{
                    "type": "Available",
                    "status": "True",
                    "lastUpdateTime": "2024-01-02T03:04:06Z",
                    "lastTransitionTime": "2024-01-02T03:04:07Z",
                    "reason": "MinimumReplicasAvailable"
                }]
            }
        })
    );
}

#[test]
fn lease_micro_time_and_pointer_zeros() {
    let spec = Pb::new()
        .str(1, "holder")
        .varint(2, 0)
        .msg(3, Pb::new().varint(1, 1_704_164_645).varint(2, 123_456_789))
        .varint(5, 0);
    let got = decode(&unknown("coordination.k8s.io/v1", "Lease", Pb::new().msg(1, meta("l")).msg(2, spec)));
    assert_eq!(
        got,
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "l"},
            // Pointer fields: their zeros are values.
            "spec": {"holderIdentity": "holder", "leaseDurationSeconds": 0, "acquireTime": "2024-01-02T03:04:05.123456Z", "leaseTransitions": 0}
        })
    );
}

#[test]
fn controller_revision_raw_extension_and_managed_fields() {
    let managed = Pb::new()
        .str(1, "kubectl")
        .str(2, "Update")
        .str(3, "apps/v1")
        .msg(4, Pb::new().varint(1, 0))
        .str(6, "FieldsV1")
        .msg(7, Pb::new().bytes(1, br#"{"f:data":{}}"#))
        .str(8, "");
    let raw = Pb::new()
        .msg(1, meta("rev").msg(17, managed))
        .msg(2, Pb::new().bytes(1, br#"{"spec":{"template":{"x":[1,2]}}}"#))
        .varint(3, 2);
    let got = decode(&unknown("apps/v1", "ControllerRevision", raw));
    assert_eq!(
        got,
        json!({
            "apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": "rev", "managedFields": [{
                "manager": "kubectl", "operation": "Update", "apiVersion": "apps/v1",
                "time": "1970-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}}
            }]},
            "data": {"spec": {"template": {"x": [1, 2]}}},
            "revision": 2
        })
    );
}

#[test]
fn pod_volume_source_is_inlined() {
    let volume = Pb::new().str(1, "cache").msg(2, Pb::new().msg(2, Pb::new().str(1, "Memory")));
    let raw = Pb::new().msg(1, meta("p")).msg(2, Pb::new().msg(1, volume).msg(2, Pb::new().str(1, "c").str(2, "busybox")));
    let got = decode(&unknown("v1", "Pod", raw));
    assert_eq!(got["spec"]["volumes"], json!([{"name": "cache", "emptyDir": {"medium": "Memory"}}]));
}

#[test]
fn type_meta_falls_back_to_the_request() {
    let mut body = MAGIC.to_vec();
    body.extend(Pb::new().msg(2, Pb::new().msg(1, meta("x"))).0);
    assert_eq!(decode_request(&body, "v1", "ServiceAccount"), Ok(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x"}})));
}

#[test]
fn delete_options_in_any_group_version() {
    let raw = Pb::new().varint(1, 0).msg(2, Pb::new().str(1, "uid-1")).str(4, "Orphan").str(5, "All");
    for av in ["v1", "apps/v1", "meta.k8s.io/v1"] {
        let got = decode_request(&unknown(av, "DeleteOptions", raw.clone()), "meta.k8s.io/v1", DELETE_OPTIONS_KIND);
        assert_eq!(
            got,
            Ok(json!({
                "apiVersion": av, "kind": "DeleteOptions",
                // A pointer: 0 is "now", not "unset".
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": "uid-1"},
                "propagationPolicy": "Orphan",
                "dryRun": ["All"]
            }))
        );
    }
}

#[test]
fn errors() {
    let ns = hex(KUBECTL_NAMESPACE);
    assert_eq!(decode_request(b"{\"kind\":\"Namespace\"}", "", ""), Err(Error::NoMagic));
    assert!(matches!(decode_request(&unknown("v1", "Frobnicator", Pb::new()), "", ""), Err(Error::UnknownKind { .. })));
    let mut gz = MAGIC.to_vec();
    gz.extend(Pb::new().msg(1, Pb::new().str(1, "v1").str(2, "Namespace")).msg(2, meta("x")).str(3, "gzip").0);
    assert_eq!(decode_request(&gz, "", ""), Err(Error::ContentEncoding("gzip".into())));
    // A string field sent as a varint.
    let bad_wire = unknown("v1", "Namespace", Pb::new().msg(1, Pb::new().varint(1, 5)));
    assert!(matches!(decode_request(&bad_wire, "", ""), Err(Error::Malformed { .. })));
    // An 11-byte varint.
    let mut long = MAGIC.to_vec();
    long.extend([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    assert!(matches!(decode_request(&long, "", ""), Err(Error::Malformed { .. })));
    // A group (wire type 3).
    let mut group = MAGIC.to_vec();
    group.push(0x0b);
    assert!(matches!(decode_request(&group, "", ""), Err(Error::Malformed { .. })));
    let huge = vec![0u8; BODY_BYTES_MAX + 1];
    assert!(matches!(decode_request(&huge, "", ""), Err(Error::TooLarge { .. })));
    let bad_time = unknown("v1", "Namespace", Pb::new().msg(1, Pb::new().msg(8, Pb::new().varint(1, u64::MAX >> 1))));
    assert!(matches!(decode_request(&bad_time, "", ""), Err(Error::InvalidValue { .. })));
    let bad_json = unknown("apps/v1", "ControllerRevision", Pb::new().msg(2, Pb::new().bytes(1, b"{nope")));
    assert!(matches!(decode_request(&bad_json, "", ""), Err(Error::InvalidValue { .. })));
    // Every truncation of a valid body fails cleanly (or, cut at a field boundary, decodes).
    for cut in 0..ns.len() {
        let _ = decode_request(&ns[..cut], "", "");
    }
    let truncated = &ns[..ns.len() - 3];
    assert!(decode_request(truncated, "", "").is_err());
}

#[test]
fn nesting_is_bounded() {
    // ControllerRevision.data holds a nested protobuf object, which holds another...
    let mut body = unknown("apps/v1", "ControllerRevision", Pb::new().msg(1, meta("leaf")));
    for _ in 0..NESTING_DEPTH_MAX {
        body = unknown("apps/v1", "ControllerRevision", Pb::new().msg(2, Pb::new().bytes(1, &body)));
    }
    assert_eq!(decode_request(&body, "", ""), Err(Error::TooDeep));
    let shallow = unknown("apps/v1", "ControllerRevision", Pb::new().msg(2, Pb::new().bytes(1, &hex(KUBECTL_NAMESPACE))));
    assert_eq!(decode(&shallow)["data"]["metadata"], json!({"name": "foo"}));
}

#[test]
fn go_formats() {
    assert_eq!(rfc3339(0, None).unwrap(), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_704_164_645, None).unwrap(), "2024-01-02T03:04:05Z");
    assert_eq!(rfc3339(951_782_400, None).unwrap(), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(-1, Some(5)).unwrap(), "1969-12-31T23:59:59.000005Z");
    assert_eq!(rfc3339(-62_167_219_200, None).unwrap(), "0000-01-01T00:00:00Z");
    assert_eq!(rfc3339(253_402_300_799, None).unwrap(), "9999-12-31T23:59:59Z");
    assert!(rfc3339(253_402_300_800, None).is_err());
    let cases: &[(i64, &str)] = &[
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (2_000_000, "2ms"),
        (1_500_000_000, "1.5s"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (3_723_500_000_000, "1h2m3.5s"),
        (-90_000_000_000, "-1m30s"),
        (i64::MIN, "-2562047h47m16.854775808s"),
    ];
    for (ns, want) in cases {
        assert_eq!(go_duration(*ns), *want, "{ns}ns");
    }
}

/// Every served built-in kind has a message; every field's JSON name is a property of the
/// served OpenAPI schema of its type (inlined messages: of the parent), with the same type
/// where it is a message; and every property is a field. Checks the generated table
/// against k8s-openapi, which the generator only used to filter.
#[test]
fn schema_matches_the_served_openapi() {
    let resources: Vec<_> = crate::resources::Registry::builtin().all().iter().map(|r| (**r).clone()).collect();
    let mut defs: BTreeMap<String, Value> = BTreeMap::new();
    let gvs: BTreeSet<(String, String)> = resources.iter().map(|r| (r.group.clone(), r.version.clone())).collect();
    // The binding subresource's body, which no served document lists.
    let mut gen = schemars::gen::SchemaGenerator::new(schemars::gen::SchemaSettings::openapi3());
    gen.subschema_for::<k8s_openapi::api::core::v1::Binding>();
    for (name, schema) in gen.definitions() {
        defs.insert(name.clone(), serde_json::to_value(schema).expect("a schema serializes"));
    }
    for (g, v) in &gvs {
        let doc = crate::openapi::v3_document(&resources, &BTreeMap::new(), g, v);
        for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
            defs.insert(name.clone(), schema.clone());
        }
    }
    for r in &resources {
        if r.group == "apiextensions.k8s.io" {
            // CRDs are decoded as JSON only (kubectl sends them so); see the generator.
            assert!(message_of(&r.api_version(), &r.kind).is_none());
            continue;
        }
        assert!(message_of(&r.api_version(), &r.kind).is_some(), "no protobuf message for {} {}", r.api_version(), r.kind);
    }
    let mut checked = 0;
    for (i, msg) in schema::MESSAGES.iter().enumerate() {
        if msg.special != Special::None {
            assert!(defs.contains_key(msg.name), "special {} is not a served definition", msg.name);
            continue;
        }
        let Some(def) = defs.get(msg.name) else {
            // Only inlined messages have no definition of their own.
            let inlined = schema::MESSAGES.iter().flat_map(|m| m.fields).any(|f| f.mode == Mode::Inline && f.ty == Ty::Message(i as u16));
            assert!(inlined, "{} has no OpenAPI definition and is not inlined", msg.name);
            continue;
        };
        let props: BTreeSet<String> = def["properties"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default();
        let mut covered = BTreeSet::new();
        let mut stack = vec![msg];
        while let Some(m) = stack.pop() {
            for f in m.fields {
                if f.mode == Mode::Inline {
                    let Ty::Message(j) = f.ty else { panic!("{}.{}: inline non-message", m.name, f.json) };
                    stack.push(&schema::MESSAGES[j as usize]);
                    continue;
                }
                assert!(props.contains(f.json), "{}: field {} is not in the OpenAPI schema", msg.name, f.json);
                assert!(covered.insert(f.json.to_string()), "{}: field {} twice", msg.name, f.json);
                let target = match f.ty {
                    Ty::Message(j) | Ty::Map(_, MapValue::Message(j)) => Some(schema::MESSAGES[j as usize].name),
                    _ => None,
                };
                let prop = def["properties"][f.json].to_string();
                if let Some(t) = target {
                    assert!(prop.contains(&format!("/{t}\"")), "{}.{}: OpenAPI type {prop} is not {t}", msg.name, f.json);
                } else {
                    assert!(!prop.contains("$ref"), "{}.{}: scalar in protobuf, {prop} in OpenAPI", msg.name, f.json);
                }
                checked += 1;
            }
        }
        let missing: Vec<_> = props.iter().filter(|p| !covered.contains(*p) && *p != "apiVersion" && *p != "kind").collect();
        assert!(missing.is_empty(), "{}: OpenAPI properties without a protobuf field: {missing:?}", msg.name);
    }
    assert!(checked > 500, "only {checked} fields checked");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Random bytes after the prefix: an error or a value, never a panic.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut body = MAGIC.to_vec();
        body.extend(bytes);
        let _ = decode_request(&body, "apps/v1", "Deployment");
    }

    /// A valid body with bytes flipped: still never a panic.
    #[test]
    fn mutated_bodies_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut body = hex(KUBECTL_DEPLOYMENT);
        for (i, b) in flips {
            let at = i.index(body.len());
            body[at] = b;
        }
        let _ = decode_request(&body, "", "");
    }
}
