//! The protobuf encoding of the OpenAPI v2 document
//! (`application/com.github.proto-openapi.spec.v2.v1.0+protobuf`): gnostic's
//! `openapi.v2.Document`, the only form client-go's `OpenAPISchema()` reads (kubectl's
//! `explain --output=plaintext-openapiv2`, and its client-side schema checks against a
//! server without `fieldValidation`).
//!
//! Encoded by hand from the JSON document (field numbers from gnostic's
//! `openapiv2/OpenAPIv2.proto`): `swagger`, `info` and `definitions`, every schema with
//! its vendor extensions (`x-kubernetes-group-version-kind`, patch strategies, …) as
//! `Any{yaml}` — JSON text, which is YAML. Paths are left out: the clients of this
//! encoding read definitions only (the JSON document has the paths).

use serde_json::{Map, Value};

/// The media type of this encoding, as responses name it. Clients ask for it by the older
/// spelling `…spec.v2@v1.0+protobuf` too, but `@` is not valid in a media type, and
/// client-go refuses a response labelled with it.
pub const MEDIA_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

// Field numbers (gnostic openapi.v2).
const DOCUMENT_SWAGGER: u32 = 1;
const DOCUMENT_INFO: u32 = 2;
const DOCUMENT_DEFINITIONS: u32 = 9;
const INFO_TITLE: u32 = 1;
const INFO_VERSION: u32 = 2;
const DEFINITIONS_ADDITIONAL_PROPERTIES: u32 = 1;
const NAMED_NAME: u32 = 1;
const NAMED_VALUE: u32 = 2;
const ANY_YAML: u32 = 2;
const ADDITIONAL_PROPERTIES_SCHEMA: u32 = 1;
const ADDITIONAL_PROPERTIES_BOOLEAN: u32 = 2;
const ITEMS_SCHEMA: u32 = 1;
const TYPE_VALUE: u32 = 1;
const PROPERTIES_ADDITIONAL_PROPERTIES: u32 = 1;

const SCHEMA_REF: u32 = 1;
const SCHEMA_FORMAT: u32 = 2;
const SCHEMA_TITLE: u32 = 3;
const SCHEMA_DESCRIPTION: u32 = 4;
const SCHEMA_DEFAULT: u32 = 5;
const SCHEMA_MULTIPLE_OF: u32 = 6;
const SCHEMA_MAXIMUM: u32 = 7;
const SCHEMA_EXCLUSIVE_MAXIMUM: u32 = 8;
const SCHEMA_MINIMUM: u32 = 9;
const SCHEMA_EXCLUSIVE_MINIMUM: u32 = 10;
const SCHEMA_MAX_LENGTH: u32 = 11;
const SCHEMA_MIN_LENGTH: u32 = 12;
const SCHEMA_PATTERN: u32 = 13;
const SCHEMA_MAX_ITEMS: u32 = 14;
const SCHEMA_MIN_ITEMS: u32 = 15;
const SCHEMA_UNIQUE_ITEMS: u32 = 16;
const SCHEMA_MAX_PROPERTIES: u32 = 17;
const SCHEMA_MIN_PROPERTIES: u32 = 18;
const SCHEMA_REQUIRED: u32 = 19;
const SCHEMA_ENUM: u32 = 20;
const SCHEMA_ADDITIONAL_PROPERTIES: u32 = 21;
const SCHEMA_TYPE: u32 = 22;
const SCHEMA_ITEMS: u32 = 23;
const SCHEMA_ALL_OF: u32 = 24;
const SCHEMA_PROPERTIES: u32 = 25;
const SCHEMA_READ_ONLY: u32 = 27;
const SCHEMA_EXAMPLE: u32 = 30;
const SCHEMA_VENDOR_EXTENSION: u32 = 31;

const WIRE_VARINT: u32 = 0;
const WIRE_FIXED64: u32 = 1;
const WIRE_LEN: u32 = 2;

/// A protobuf message being written.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u32) {
        self.varint(u64::from(field << 3 | wire));
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, WIRE_LEN);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    /// A proto3 string: empty is the default and is not written.
    fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    fn message(&mut self, field: u32, m: Msg) {
        self.bytes(field, &m.0);
    }

    fn boolean(&mut self, field: u32, b: bool) {
        if b {
            self.key(field, WIRE_VARINT);
            self.varint(1);
        }
    }

    fn int64(&mut self, field: u32, v: i64) {
        if v != 0 {
            self.key(field, WIRE_VARINT);
            self.varint(v as u64);
        }
    }

    fn double(&mut self, field: u32, v: f64) {
        if v != 0.0 {
            self.key(field, WIRE_FIXED64);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// gnostic `Any` holding a value as YAML (JSON text is YAML).
fn any(v: &Value) -> Msg {
    let mut m = Msg::default();
    m.string(ANY_YAML, &v.to_string());
    m
}

fn named(name: &str, value: Msg) -> Msg {
    let mut m = Msg::default();
    m.string(NAMED_NAME, name);
    m.message(NAMED_VALUE, value);
    m
}

fn schema(s: &Map<String, Value>) -> Msg {
    let mut m = Msg::default();
    let str_of = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("");
    m.string(SCHEMA_REF, str_of("$ref"));
    m.string(SCHEMA_FORMAT, str_of("format"));
    m.string(SCHEMA_TITLE, str_of("title"));
    m.string(SCHEMA_DESCRIPTION, str_of("description"));
    if let Some(d) = s.get("default") {
        m.message(SCHEMA_DEFAULT, any(d));
    }
    let f = |k: &str| s.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let i = |k: &str| s.get(k).and_then(Value::as_i64).unwrap_or(0);
    let b = |k: &str| s.get(k).and_then(Value::as_bool).unwrap_or(false);
    m.double(SCHEMA_MULTIPLE_OF, f("multipleOf"));
    m.double(SCHEMA_MAXIMUM, f("maximum"));
    m.boolean(SCHEMA_EXCLUSIVE_MAXIMUM, b("exclusiveMaximum"));
    m.double(SCHEMA_MINIMUM, f("minimum"));
    m.boolean(SCHEMA_EXCLUSIVE_MINIMUM, b("exclusiveMinimum"));
    m.int64(SCHEMA_MAX_LENGTH, i("maxLength"));
    m.int64(SCHEMA_MIN_LENGTH, i("minLength"));
    m.string(SCHEMA_PATTERN, str_of("pattern"));
    m.int64(SCHEMA_MAX_ITEMS, i("maxItems"));
    m.int64(SCHEMA_MIN_ITEMS, i("minItems"));
    m.boolean(SCHEMA_UNIQUE_ITEMS, b("uniqueItems"));
    m.int64(SCHEMA_MAX_PROPERTIES, i("maxProperties"));
    m.int64(SCHEMA_MIN_PROPERTIES, i("minProperties"));
    for r in s.get("required").and_then(Value::as_array).into_iter().flatten() {
        m.string(SCHEMA_REQUIRED, r.as_str().unwrap_or(""));
    }
    for e in s.get("enum").and_then(Value::as_array).into_iter().flatten() {
        m.message(SCHEMA_ENUM, any(e));
    }
    match s.get("additionalProperties") {
        Some(Value::Object(inner)) => {
            let mut a = Msg::default();
            a.message(ADDITIONAL_PROPERTIES_SCHEMA, schema(inner));
            m.message(SCHEMA_ADDITIONAL_PROPERTIES, a);
        }
        Some(Value::Bool(v)) => {
            let mut a = Msg::default();
            // A oneof member is written even when false.
            a.key(ADDITIONAL_PROPERTIES_BOOLEAN, WIRE_VARINT);
            a.varint(u64::from(*v));
            m.message(SCHEMA_ADDITIONAL_PROPERTIES, a);
        }
        _ => {}
    }
    let types: Vec<&str> = match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() {
        let mut t = Msg::default();
        for ty in types {
            t.bytes(TYPE_VALUE, ty.as_bytes());
        }
        m.message(SCHEMA_TYPE, t);
    }
    let items: Vec<&Map<String, Value>> = match s.get("items") {
        Some(Value::Object(o)) => vec![o],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_object).collect(),
        _ => Vec::new(),
    };
    if !items.is_empty() {
        let mut it = Msg::default();
        for item in items {
            it.message(ITEMS_SCHEMA, schema(item));
        }
        m.message(SCHEMA_ITEMS, it);
    }
    for sub in s.get("allOf").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_object) {
        m.message(SCHEMA_ALL_OF, schema(sub));
    }
    if let Some(Value::Object(props)) = s.get("properties") {
        let mut p = Msg::default();
        for (name, prop) in props {
            if let Value::Object(prop) = prop {
                p.message(PROPERTIES_ADDITIONAL_PROPERTIES, named(name, schema(prop)));
            }
        }
        m.message(SCHEMA_PROPERTIES, p);
    }
    m.boolean(SCHEMA_READ_ONLY, b("readOnly"));
    if let Some(e) = s.get("example") {
        m.message(SCHEMA_EXAMPLE, any(e));
    }
    for (k, v) in s.iter().filter(|(k, _)| k.starts_with("x-")) {
        m.message(SCHEMA_VENDOR_EXTENSION, named(k, any(v)));
    }
    m
}

/// The protobuf bytes of a v2 document built by [`super::v2::v2_document`].
pub fn encode(doc: &Value) -> Vec<u8> {
    let mut d = Msg::default();
    d.string(DOCUMENT_SWAGGER, doc.get("swagger").and_then(Value::as_str).unwrap_or("2.0"));
    let mut info = Msg::default();
    info.string(INFO_TITLE, doc.pointer("/info/title").and_then(Value::as_str).unwrap_or(""));
    info.string(INFO_VERSION, doc.pointer("/info/version").and_then(Value::as_str).unwrap_or(""));
    d.message(DOCUMENT_INFO, info);
    let mut defs = Msg::default();
    for (name, s) in doc.get("definitions").and_then(Value::as_object).into_iter().flatten() {
        if let Value::Object(s) = s {
            defs.message(DEFINITIONS_ADDITIONAL_PROPERTIES, named(name, schema(s)));
        }
    }
    d.message(DOCUMENT_DEFINITIONS, defs);
    d.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A minimal protobuf reader for the test: (field, wire type, payload) of each field.
    fn fields(mut b: &[u8]) -> Vec<(u32, u32, Vec<u8>)> {
        fn varint(b: &mut &[u8]) -> u64 {
            let (mut v, mut shift) = (0u64, 0);
            loop {
                let byte = b[0];
                *b = &b[1..];
                v |= u64::from(byte & 0x7f) << shift;
                shift += 7;
                if byte < 0x80 {
                    return v;
                }
            }
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let key = varint(&mut b) as u32;
            let (field, wire) = (key >> 3, key & 7);
            let payload = match wire {
                0 => varint(&mut b).to_le_bytes().to_vec(),
                1 => {
                    let p = b[..8].to_vec();
                    b = &b[8..];
                    p
                }
                2 => {
                    let len = varint(&mut b) as usize;
                    let p = b[..len].to_vec();
                    b = &b[len..];
                    p
                }
                w => panic!("unexpected wire type {w}"),
            };
            out.push((field, wire, payload));
        }
        out
    }

    fn field(b: &[u8], n: u32) -> Vec<Vec<u8>> {
        fields(b).into_iter().filter(|(f, _, _)| *f == n).map(|(_, _, p)| p).collect()
    }

    #[test]
    fn document_fields_follow_gnostic_numbers() {
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.32.0"},
            "definitions": {
                "io.k8s.api.apps.v1.DeploymentSpec": {
                    "description": "spec",
                    "type": "object",
                    "required": ["selector", "template"],
                    "properties": {
                        "replicas": {"type": "integer", "format": "int32", "minimum": 0.5},
                        "selector": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector", "description": "sel"},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "ports": {"type": "array", "items": {"type": "integer"}, "x-kubernetes-patch-merge-key": "containerPort"},
                    },
                    "x-kubernetes-group-version-kind": [{"group": "apps", "kind": "Deployment", "version": "v1"}],
                }
            }
        });
        let bytes = encode(&doc);
        assert_eq!(field(&bytes, DOCUMENT_SWAGGER), vec![b"2.0".to_vec()]);
        let info = &field(&bytes, DOCUMENT_INFO)[0];
        assert_eq!(field(info, INFO_VERSION), vec![b"v1.32.0".to_vec()]);
        let defs = &field(&bytes, DOCUMENT_DEFINITIONS)[0];
        let named_schema = &field(defs, DEFINITIONS_ADDITIONAL_PROPERTIES)[0];
        assert_eq!(field(named_schema, NAMED_NAME), vec![b"io.k8s.api.apps.v1.DeploymentSpec".to_vec()]);
        let spec = &field(named_schema, NAMED_VALUE)[0];
        assert_eq!(field(spec, SCHEMA_REQUIRED), vec![b"selector".to_vec(), b"template".to_vec()]);
        assert_eq!(field(&field(spec, SCHEMA_TYPE)[0], TYPE_VALUE), vec![b"object".to_vec()]);
        let ext = &field(spec, SCHEMA_VENDOR_EXTENSION)[0];
        assert_eq!(field(ext, NAMED_NAME), vec![b"x-kubernetes-group-version-kind".to_vec()]);
        let yaml = &field(&field(ext, NAMED_VALUE)[0], ANY_YAML)[0];
        assert_eq!(serde_json::from_slice::<Value>(yaml).unwrap()[0]["kind"], "Deployment");
        let props = &field(spec, SCHEMA_PROPERTIES)[0];
        let by_name: Vec<(String, Vec<u8>)> = field(props, PROPERTIES_ADDITIONAL_PROPERTIES)
            .iter()
            .map(|n| (String::from_utf8(field(n, NAMED_NAME)[0].clone()).unwrap(), field(n, NAMED_VALUE)[0].clone()))
            .collect();
        let prop = |name: &str| by_name.iter().find(|(n, _)| n == name).map(|(_, s)| s.clone()).unwrap();
        let selector = prop("selector");
        assert_eq!(field(&selector, SCHEMA_REF), vec![b"#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector".to_vec()]);
        assert_eq!(field(&selector, SCHEMA_DESCRIPTION), vec![b"sel".to_vec()]);
        let replicas = prop("replicas");
        assert_eq!(field(&replicas, SCHEMA_FORMAT), vec![b"int32".to_vec()]);
        assert_eq!(field(&replicas, SCHEMA_MINIMUM), vec![0.5f64.to_le_bytes().to_vec()]);
        let labels = prop("labels");
        let additional = &field(&labels, SCHEMA_ADDITIONAL_PROPERTIES)[0];
        let inner = &field(additional, ADDITIONAL_PROPERTIES_SCHEMA)[0];
        assert_eq!(field(&field(inner, SCHEMA_TYPE)[0], TYPE_VALUE), vec![b"string".to_vec()]);
        let ports = prop("ports");
        let item = &field(&field(&ports, SCHEMA_ITEMS)[0], ITEMS_SCHEMA)[0];
        assert_eq!(field(&field(item, SCHEMA_TYPE)[0], TYPE_VALUE), vec![b"integer".to_vec()]);
    }

    #[test]
    fn varints_and_the_served_document() {
        let mut m = Msg::default();
        m.int64(1, 300);
        assert_eq!(m.0, [0x08, 0xac, 0x02]);
        let resources: Vec<_> = crate::resources::Registry::builtin().all().iter().map(|r| (**r).clone()).collect();
        let doc = super::super::v2::v2_document(&resources, &Default::default());
        let bytes = encode(&doc);
        let defs = &field(&bytes, DOCUMENT_DEFINITIONS)[0];
        assert_eq!(field(defs, DEFINITIONS_ADDITIONAL_PROPERTIES).len(), doc["definitions"].as_object().unwrap().len());
    }
}
