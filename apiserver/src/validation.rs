//! Name, label and object-metadata validation with Kubernetes' exact messages.
//!
//! Pure functions over strings and `serde_json::Value`; no I/O. The wording follows
//! `k8s.io/apimachinery` v0.32 (`pkg/util/validation`, `pkg/util/validation/field`,
//! `pkg/api/validation/objectmeta.go`), because kubectl users and tests read these
//! strings verbatim.
//!
//! Two layers:
//! - `is_*` checks return the list of problems with a value as plain strings (empty = valid),
//!   exactly like kube's `validation.Is*` functions;
//! - [`FieldError`] is kube's `field.Error`: the `is_*` strings placed at a field path, with a
//!   `Display` matching `field.Error.Error()`. [`invalid_status`] turns a list of them into the
//!   `Status` body of a 422 `Invalid` response.
//!
//! Example: a Pod named `Foo` fails [`validate_object_meta`] with
//! `metadata.name: Invalid value: "Foo": a lowercase RFC 1123 subdomain must consist of …`,
//! and [`invalid_status`] renders `Pod "Foo" is invalid: metadata.name: Invalid value: …`.
//!
//! Per-kind rules (`k8s.io/kubernetes/pkg/apis/*/validation` v1.32): what each kind's
//! spec must hold on create and update in `validation/kinds.rs` ([`validate_kind`]), and
//! what an update may not change in `validation/immutable.rs`
//! ([`validate_immutable_fields`]).

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{json, Map, Value};

/// Longest DNS-1123 label (and DNS-1035 label, label value, qualified-name part), in bytes.
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Longest DNS-1123 subdomain, in bytes.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Longest DNS-1035 label, in bytes.
pub const DNS1035_LABEL_MAX_LENGTH: usize = 63;
/// Longest label value, in bytes.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
/// Longest name part of a qualified name (label or annotation key), in bytes.
pub const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
/// Limit on the sum of the lengths of all annotation keys and values (kube's
/// `TotalAnnotationSizeLimitB`, 256 KiB).
pub const TOTAL_ANNOTATION_SIZE_LIMIT_BYTES: usize = 256 * 1024;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// kube's `FieldImmutableErrorMsg`.
pub const FIELD_IMMUTABLE_ERROR_MSG: &str = "field is immutable";

// ---------------------------------------------------------------------------------------
// Message helpers (kube's MaxLenError, RegexError, EmptyError).

/// `must be no more than N characters`.
pub fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// kube's `RegexError`: the message, examples and the regex used.
pub fn regex_error(msg: &str, re: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{re}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push('\'');
        out.push_str(example);
        out.push_str("', ");
    }
    out.push_str("regex used for validation is '");
    out.push_str(re);
    out.push_str("')");
    out
}

/// `must be non-empty`.
pub fn empty_error() -> String {
    "must be non-empty".to_string()
}

// ---------------------------------------------------------------------------------------
// Hand-written matchers for kube's regexes (anchored at both ends).

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn matches_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && is_lower_alnum(b[0])
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
}

/// `label(\.label)*`
fn matches_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(matches_dns1123_label)
}

/// `[a-z]([-a-z0-9]*[a-z0-9])?`
fn matches_dns1035_label(s: &str) -> bool {
    matches_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn matches_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

// ---------------------------------------------------------------------------------------
// kube's validation.Is* functions.

/// DNS-1123 label (RFC 1123): at most 63 bytes of `[a-z0-9-]`, alphanumeric at both ends.
/// Namespaces' names and many other names use it.
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(value) {
        if matches_dns1123_subdomain(value) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(DNS1123_LABEL_ERR_MSG, DNS1123_LABEL_FMT, &["my-name", "123-abc"]));
        }
    }
    errs
}

/// DNS-1123 subdomain: at most 253 bytes of dot-separated DNS-1123 labels. The rule for
/// most object names (pods, configmaps, deployments, …).
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_error(DNS1123_SUBDOMAIN_ERR_MSG, DNS1123_SUBDOMAIN_FMT, &["example.com"]));
    }
    errs
}

/// DNS-1035 label: like a DNS-1123 label but must start with a letter (Services' names).
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1035_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1035_LABEL_MAX_LENGTH));
    }
    if !matches_dns1035_label(value) {
        errs.push(regex_error(DNS1035_LABEL_ERR_MSG, DNS1035_LABEL_FMT, &["my-name", "abc-123"]));
    }
    errs
}

/// Qualified name: label and annotation keys, finalizers. An optional DNS-1123 subdomain
/// prefix and `/`, then a name part of at most 63 bytes.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push(format!("prefix part {}", empty_error()));
            } else {
                errs.extend(is_dns1123_subdomain(prefix).into_iter().map(|m| format!("prefix part {m}")));
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_ERR_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push(format!("name part {}", empty_error()));
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!("name part {}", max_len_error(QUALIFIED_NAME_MAX_LENGTH)));
    }
    if !matches_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(QUALIFIED_NAME_ERR_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
        ));
    }
    errs
}

/// Label value: empty, or at most 63 bytes shaped like a qualified name's name part.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !matches_qualified_name_part(value) {
        errs.push(regex_error(LABEL_VALUE_ERR_MSG, LABEL_VALUE_FMT, &["MyValue", "my_value", "12345"]));
    }
    errs
}

/// Which rule an object's `metadata.name` follows (kube's `ValidateNameFunc`s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// `NameIsDNSSubdomain`: most kinds.
    DnsSubdomain,
    /// `NameIsDNSLabel`: namespaces, and others that become DNS labels.
    DnsLabel,
    /// `NameIsDNS1035Label`: services.
    Dns1035Label,
    /// Only "present" is required (kinds whose names are paths, e.g. RBAC roles, which kube
    /// checks with `ValidatePathSegmentName`); see [`is_valid_path_segment_name`].
    PathSegment,
}

impl NameRule {
    /// Problems with `name`; `prefix` is true when checking a `generateName`, whose trailing
    /// `-` is allowed (kube's `maskTrailingDash`).
    pub fn validate(self, name: &str, prefix: bool) -> Vec<String> {
        let masked;
        let name = if prefix && self != NameRule::PathSegment {
            masked = mask_trailing_dash(name);
            masked.as_str()
        } else {
            name
        };
        match self {
            NameRule::DnsSubdomain => is_dns1123_subdomain(name),
            NameRule::DnsLabel => is_dns1123_label(name),
            NameRule::Dns1035Label => is_dns1035_label(name),
            NameRule::PathSegment => is_valid_path_segment_name(name),
        }
    }
}

/// kube's `maskTrailingDash`, bug for bug: `"abc-"` is checked as `"aba"` (it drops two
/// bytes and appends `a`), which is harmless because only the shape matters.
fn mask_trailing_dash(name: &str) -> String {
    if name.len() > 1 && name.ends_with('-') {
        let mut s = name[..name.len() - 2].to_string();
        s.push('a');
        s
    } else {
        name.to_string()
    }
}

/// kube's `path.IsValidPathSegmentName`: names that end up as a URL path segment.
pub fn is_valid_path_segment_name(name: &str) -> Vec<String> {
    for illegal in [".", ".."] {
        if name == illegal {
            return vec![format!("may not be '{illegal}'")];
        }
    }
    let mut errs = Vec::new();
    for illegal in ["/", "%"] {
        if name.contains(illegal) {
            errs.push(format!("may not contain '{illegal}'"));
        }
    }
    errs
}

// ---------------------------------------------------------------------------------------
// field.Error

/// kube's `field.ErrorType`. [`ErrorType::reason`] is the wire value used as the cause's
/// `reason` in a `Status`; `Display` is the human text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    Internal,
}

impl ErrorType {
    /// The `CauseType` string: `FieldValueInvalid`, `FieldValueRequired`, ….
    pub fn reason(self) -> &'static str {
        match self {
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::Internal => "InternalError",
        }
    }
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorType::NotFound => "Not found",
            ErrorType::Required => "Required value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Invalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::Internal => "Internal error",
        })
    }
}

/// The offending value of a [`FieldError`], kept in the shape Go prints it in.
#[derive(Debug, Clone, PartialEq)]
pub enum BadValue {
    /// Not shown (`<value omitted>`; Required, Forbidden, TooLong never show values).
    Omitted,
    /// Printed Go-quoted: `"Foo"`.
    Str(String),
    /// Printed bare: `-1`.
    Int(i64),
    /// Printed bare: `true`.
    Bool(bool),
    /// Printed as Go prints a `[]string` with `%#v`: `[]string{"a", "b"}`.
    StrList(Vec<String>),
    /// Printed as Go prints a `map[string]string` with `%#v`: `map[string]string{"a":"b"}`.
    StrMap(std::collections::BTreeMap<String, String>),
    /// Any other value, printed as compact JSON.
    Json(Value),
    /// Already in Go's `%#v` form (e.g. `v1.LabelSelector{…}`, see [`go_label_selector`]).
    GoSyntax(String),
}

impl From<&str> for BadValue {
    fn from(s: &str) -> Self {
        BadValue::Str(s.to_string())
    }
}
impl From<String> for BadValue {
    fn from(s: String) -> Self {
        BadValue::Str(s)
    }
}
impl From<i64> for BadValue {
    fn from(v: i64) -> Self {
        BadValue::Int(v)
    }
}
impl From<bool> for BadValue {
    fn from(v: bool) -> Self {
        BadValue::Bool(v)
    }
}
impl From<Vec<String>> for BadValue {
    fn from(v: Vec<String>) -> Self {
        BadValue::StrList(v)
    }
}
impl From<Value> for BadValue {
    /// Strings, integers and booleans keep their natural printing; the rest is JSON.
    fn from(v: Value) -> Self {
        match v {
            Value::String(s) => BadValue::Str(s),
            Value::Bool(b) => BadValue::Bool(b),
            Value::Number(ref n) if n.is_i64() => BadValue::Int(n.as_i64().unwrap_or_default()),
            other => BadValue::Json(other),
        }
    }
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadValue::Omitted => f.write_str("<value omitted>"),
            BadValue::Str(s) => f.write_str(&go_quote(s)),
            BadValue::Int(i) => write!(f, "{i}"),
            BadValue::Bool(b) => write!(f, "{b}"),
            BadValue::StrList(items) => {
                let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
                write!(f, "[]string{{{}}}", quoted.join(", "))
            }
            BadValue::StrMap(m) => {
                let pairs: Vec<String> = m.iter().map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v))).collect();
                write!(f, "map[string]string{{{}}}", pairs.join(", "))
            }
            BadValue::Json(v) => write!(f, "{v}"),
            BadValue::GoSyntax(s) => f.write_str(s),
        }
    }
}

/// Go's `strconv.Quote` for the characters that occur in practice: escapes `"`, `\` and
/// control characters; printable Unicode is kept as is.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One validation failure: kube's `field.Error`.
///
/// `Display` is `field.Error.Error()`: `<field>: <body>`, e.g.
/// `metadata.labels: Invalid value: "-x": name part must consist of …`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub type_: ErrorType,
    /// The field path as kube prints it: `metadata.labels`, `spec.containers[0].name`.
    pub field: String,
    pub value: BadValue,
    pub detail: String,
}

impl FieldError {
    /// `Required value` (kube's `field.Required`).
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { type_: ErrorType::Required, field: field.into(), value: BadValue::Str(String::new()), detail: detail.into() }
    }
    /// `Invalid value: <value>` (kube's `field.Invalid`).
    pub fn invalid(field: impl Into<String>, value: impl Into<BadValue>, detail: impl Into<String>) -> Self {
        Self { type_: ErrorType::Invalid, field: field.into(), value: value.into(), detail: detail.into() }
    }
    /// `Duplicate value: <value>` (kube's `field.Duplicate`).
    pub fn duplicate(field: impl Into<String>, value: impl Into<BadValue>) -> Self {
        Self { type_: ErrorType::Duplicate, field: field.into(), value: value.into(), detail: String::new() }
    }
    /// `Not found: <value>` (kube's `field.NotFound`).
    pub fn not_found(field: impl Into<String>, value: impl Into<BadValue>) -> Self {
        Self { type_: ErrorType::NotFound, field: field.into(), value: value.into(), detail: String::new() }
    }
    /// `Unsupported value: <value>: supported values: "a", "b"` (kube's `field.NotSupported`).
    pub fn not_supported(field: impl Into<String>, value: impl Into<BadValue>, valid: &[&str]) -> Self {
        let detail = if valid.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = valid.iter().map(|v| go_quote(v)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self { type_: ErrorType::NotSupported, field: field.into(), value: value.into(), detail }
    }
    /// `Forbidden: <detail>` (kube's `field.Forbidden`).
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { type_: ErrorType::Forbidden, field: field.into(), value: BadValue::Str(String::new()), detail: detail.into() }
    }
    /// `Too long: may not be more than N bytes` (kube's `field.TooLong`).
    pub fn too_long(field: impl Into<String>, max_bytes: usize) -> Self {
        Self {
            type_: ErrorType::TooLong,
            field: field.into(),
            value: BadValue::Omitted,
            detail: format!("may not be more than {max_bytes} bytes"),
        }
    }
    /// `Internal error: <detail>`.
    pub fn internal(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { type_: ErrorType::Internal, field: field.into(), value: BadValue::Omitted, detail: detail.into() }
    }

    /// kube's `ErrorBody()`: the message without the field, as used in a `Status` cause.
    pub fn body(&self) -> String {
        let mut s = match self.type_ {
            ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong | ErrorType::Internal => {
                self.type_.to_string()
            }
            _ if self.value == BadValue::Omitted => self.type_.to_string(),
            _ => format!("{}: {}", self.type_, self.value),
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

impl std::error::Error for FieldError {}

/// kube's `ErrorList.ToAggregate().Error()`: duplicate messages dropped, one error printed
/// alone, several as `[e1, e2]`. `None` for an empty list.
pub fn aggregate_message(errs: &[FieldError]) -> Option<String> {
    let mut seen = BTreeSet::new();
    let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).filter(|m| seen.insert(m.clone())).collect();
    match msgs.len() {
        0 => None,
        1 => msgs.into_iter().next(),
        _ => Some(format!("[{}]", msgs.join(", "))),
    }
}

/// The `Status` body of a 422 `Invalid` response (kube's `errors.NewInvalid`).
///
/// `group` is the API group (`""` for core), `kind` the kind (`Pod`), `name` the object's
/// name. The message reads `Pod "foo" is invalid: <aggregate>`; for non-core groups the kind
/// is qualified: `Deployment.apps "web" is invalid: …`.
pub fn invalid_status(group: &str, kind: &str, name: &str, errs: &[FieldError]) -> Value {
    let qualified_kind = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
    let message = match aggregate_message(errs) {
        None => format!("{qualified_kind} {} is invalid", go_quote(name)),
        Some(agg) => format!("{qualified_kind} {} is invalid: {agg}", go_quote(name)),
    };
    let causes: Vec<Value> = errs
        .iter()
        .map(|e| json!({"reason": e.type_.reason(), "message": e.body(), "field": e.field}))
        .collect();
    let mut details = Map::new();
    if !name.is_empty() {
        details.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        details.insert("group".into(), json!(group));
    }
    if !kind.is_empty() {
        details.insert("kind".into(), json!(kind));
    }
    details.insert("causes".into(), Value::Array(causes));
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Invalid",
        "details": Value::Object(details),
        "code": 422,
    })
}

// ---------------------------------------------------------------------------------------
// ObjectMeta

/// The `orphan` finalizer (kube's `metav1.FinalizerOrphanDependents`).
pub const FINALIZER_ORPHAN_DEPENDENTS: &str = "orphan";
/// The `foregroundDeletion` finalizer (kube's `metav1.FinalizerDeleteDependents`).
pub const FINALIZER_DELETE_DEPENDENTS: &str = "foregroundDeletion";

fn str_field<'a>(meta: &'a Value, key: &str) -> &'a str {
    meta.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Labels: every key a qualified name, every value a label value (kube's
/// `v1validation.ValidateLabels`). `field` is the path of the map, e.g. `metadata.labels`.
pub fn validate_labels(labels: &Value, field: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(map) = labels.as_object() else {
        if !labels.is_null() {
            errs.push(FieldError::invalid(field, labels.clone(), "must be a map of string keys to string values"));
        }
        return errs;
    };
    for (k, v) in map {
        for msg in is_qualified_name(k) {
            errs.push(FieldError::invalid(field, k.as_str(), msg));
        }
        match v.as_str() {
            Some(v) => {
                for msg in is_valid_label_value(v) {
                    errs.push(FieldError::invalid(field, v, msg));
                }
            }
            None => errs.push(FieldError::invalid(field, v.clone(), "must be a string")),
        }
    }
    errs
}

/// Annotations: keys are qualified names (checked lower-cased, as kube does) and the total
/// size of keys and values is at most 256 KiB (kube's `ValidateAnnotations`).
pub fn validate_annotations(annotations: &Value, field: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(map) = annotations.as_object() else {
        if !annotations.is_null() {
            errs.push(FieldError::invalid(field, annotations.clone(), "must be a map of string keys to string values"));
        }
        return errs;
    };
    let mut total_bytes = 0usize;
    for (k, v) in map {
        for msg in is_qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(field, k.as_str(), msg));
        }
        total_bytes += k.len() + v.as_str().map_or(0, str::len);
        if !v.is_string() {
            errs.push(FieldError::invalid(format!("{field}[{k}]"), v.clone(), "must be a string"));
        }
    }
    if total_bytes > TOTAL_ANNOTATION_SIZE_LIMIT_BYTES {
        errs.push(FieldError::too_long(field, TOTAL_ANNOTATION_SIZE_LIMIT_BYTES));
    }
    errs
}

/// ownerReferences (kube's `ValidateOwnerReferences`): apiVersion with a version, kind,
/// name and uid present, no Event owners, at most one controller.
pub fn validate_owner_references(refs: &Value, field: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(list) = refs.as_array() else { return errs };
    let mut first_controller: Option<String> = None;
    for r in list {
        let api_version = str_field(r, "apiVersion");
        let kind = str_field(r, "kind");
        let name = str_field(r, "name");
        let uid = str_field(r, "uid");
        let (group, version) = match api_version.rsplit_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        if version.is_empty() {
            errs.push(FieldError::invalid(format!("{field}.apiVersion"), api_version, "version must not be empty"));
        }
        if kind.is_empty() {
            errs.push(FieldError::invalid(format!("{field}.kind"), kind, "kind must not be empty"));
        }
        if name.is_empty() {
            errs.push(FieldError::invalid(format!("{field}.name"), name, "name must not be empty"));
        }
        if uid.is_empty() {
            errs.push(FieldError::invalid(format!("{field}.uid"), uid, "uid must not be empty"));
        }
        if group.is_empty() && version == "v1" && kind == "Event" {
            errs.push(FieldError::invalid(field, r.clone(), "/v1, Kind=Event is disallowed from being an owner"));
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            let current = format!("{kind}/{name}");
            match &first_controller {
                Some(first) => errs.push(FieldError::invalid(
                    field,
                    refs.clone(),
                    format!("Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"),
                )),
                None => first_controller = Some(current),
            }
        }
    }
    errs
}

/// A `metav1.LabelSelector` in an object (kube's `ValidateLabelSelector`): `matchLabels`
/// like labels, each `matchExpressions[i]` with a known operator, values present exactly
/// for `In`/`NotIn`, a qualified-name key and label values. `field` is the selector's path,
/// e.g. `spec.selector`. `null` is valid (callers decide whether it is required).
pub fn validate_label_selector(selector: &Value, field: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if selector.is_null() {
        return errs;
    }
    errs.extend(validate_labels(selector.get("matchLabels").unwrap_or(&Value::Null), &format!("{field}.matchLabels")));
    let exprs = selector.get("matchExpressions").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    for (i, expr) in exprs.iter().enumerate() {
        let path = format!("{field}.matchExpressions[{i}]");
        let values = expr.get("values").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        match str_field(expr, "operator") {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        format!("{path}.values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        format!("{path}.values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errs.push(FieldError::invalid(format!("{path}.operator"), other, "not a valid selector operator")),
        }
        let key = str_field(expr, "key");
        for msg in is_qualified_name(key) {
            errs.push(FieldError::invalid(format!("{path}.key"), key, msg));
        }
        for (j, v) in values.iter().enumerate() {
            let v = v.as_str().unwrap_or("");
            for msg in is_valid_label_value(v) {
                errs.push(FieldError::invalid(format!("{path}.values[{j}]"), v, msg));
            }
        }
    }
    errs
}

/// The selector rules of a Deployment, ReplicaSet, DaemonSet or StatefulSet spec (kube's
/// apps validation): `selector` required, valid and non-empty, and matching
/// `template.metadata.labels`. `spec_field` is the spec's path (`spec`); `kind_word` the
/// lower-case word kube puts in the message (`deployment`, `daemonset`, …).
pub fn validate_workload_selector(spec: &Value, spec_field: &str, kind_word: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let selector_field = format!("{spec_field}.selector");
    let selector = spec.get("selector").unwrap_or(&Value::Null);
    if selector.is_null() {
        errs.push(FieldError::required(selector_field.as_str(), ""));
    } else {
        errs.extend(validate_label_selector(selector, &selector_field));
        let count = |k: &str| match selector.get(k) {
            Some(Value::Object(m)) => m.len(),
            Some(Value::Array(a)) => a.len(),
            _ => 0,
        };
        if count("matchLabels") + count("matchExpressions") == 0 {
            errs.push(FieldError::invalid(
                selector_field.as_str(),
                go_label_selector(selector),
                format!("empty selector is invalid for {kind_word}"),
            ));
        }
    }
    let parsed = crate::selectors::LabelSelector::from_json(selector);
    match parsed {
        Err(_) => errs.push(FieldError::invalid(selector_field.as_str(), go_label_selector(selector), "invalid label selector")),
        // A missing selector selects nothing, so kube also reports the template mismatch.
        Ok(sel) if !sel.is_everything() => {
            let labels: std::collections::BTreeMap<String, String> = spec
                .pointer("/template/metadata/labels")
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
                .unwrap_or_default();
            if !sel.matches(&labels) {
                errs.push(FieldError::invalid(
                    format!("{spec_field}.template.metadata.labels"),
                    BadValue::StrMap(labels),
                    "`selector` does not match template `labels`",
                ));
            }
        }
        Ok(_) => {}
    }
    errs
}

/// A `metav1.LabelSelector` as Go's `%#v` prints it, which is how kube shows a selector
/// in a field error: `v1.LabelSelector{MatchLabels:map[string]string{"app":"web"},
/// MatchExpressions:[]v1.LabelSelectorRequirement(nil)}`; `null` for no selector.
pub fn go_label_selector(selector: &Value) -> BadValue {
    if selector.is_null() {
        return BadValue::GoSyntax("null".into());
    }
    let labels = match selector.get("matchLabels") {
        // Go's fmt prints map keys sorted.
        Some(Value::Object(m)) => {
            let sorted: std::collections::BTreeMap<&String, &Value> = m.iter().collect();
            let pairs: Vec<String> = sorted.iter().map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v.as_str().unwrap_or("")))).collect();
            format!("map[string]string{{{}}}", pairs.join(", "))
        }
        _ => "map[string]string(nil)".to_string(),
    };
    let strings = |v: Option<&Value>| match v {
        Some(Value::Array(a)) => {
            let quoted: Vec<String> = a.iter().map(|s| go_quote(s.as_str().unwrap_or(""))).collect();
            format!("[]string{{{}}}", quoted.join(", "))
        }
        _ => "[]string(nil)".to_string(),
    };
    let exprs = match selector.get("matchExpressions") {
        Some(Value::Array(a)) => {
            let items: Vec<String> = a
                .iter()
                .map(|e| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        go_quote(str_field(e, "key")),
                        go_quote(str_field(e, "operator")),
                        strings(e.get("values"))
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
        _ => "[]v1.LabelSelectorRequirement(nil)".to_string(),
    };
    BadValue::GoSyntax(format!("v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{exprs}}}"))
}

/// Finalizers (kube's `ValidateFinalizers`): qualified names, and not both `orphan` and
/// `foregroundDeletion`.
pub fn validate_finalizers(finalizers: &Value, field: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(list) = finalizers.as_array() else { return errs };
    let names: Vec<String> = list.iter().map(|f| f.as_str().unwrap_or("").to_string()).collect();
    for name in &names {
        for msg in is_qualified_name(name) {
            errs.push(FieldError::invalid(field, name.as_str(), msg));
        }
    }
    if names.iter().any(|n| n == FINALIZER_ORPHAN_DEPENDENTS) && names.iter().any(|n| n == FINALIZER_DELETE_DEPENDENTS) {
        errs.push(FieldError::invalid(
            field,
            names.clone(),
            format!("finalizer {FINALIZER_ORPHAN_DEPENDENTS} and {FINALIZER_DELETE_DEPENDENTS} cannot be both set"),
        ));
    }
    errs
}

/// kube's `ValidateObjectMeta` on an object's JSON (`obj["metadata"]`), in kube's order:
/// generateName, name (required unless generateName is set; a generated name should be
/// validated too), namespace (required and a
/// DNS label when `namespaced`, forbidden otherwise), generation ≥ 0, labels, annotations,
/// ownerReferences, finalizers. Paths are rooted at `metadata`.
pub fn validate_object_meta(obj: &Value, namespaced: bool, name_rule: NameRule) -> Vec<FieldError> {
    let null = Value::Null;
    let meta = obj.get("metadata").unwrap_or(&null);
    let mut errs = Vec::new();
    let generate_name = str_field(meta, "generateName");
    if !generate_name.is_empty() {
        for msg in name_rule.validate(generate_name, true) {
            errs.push(FieldError::invalid("metadata.generateName", generate_name, msg));
        }
    }
    let name = str_field(meta, "name");
    if name.is_empty() {
        // kube generates the name (BeforeCreate) before validating, so it never sees this
        // case; accepting it here lets callers validate before or after generating.
        if generate_name.is_empty() {
            errs.push(FieldError::required("metadata.name", "name or generateName is required"));
        }
    } else {
        for msg in name_rule.validate(name, false) {
            errs.push(FieldError::invalid("metadata.name", name, msg));
        }
    }
    let namespace = str_field(meta, "namespace");
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        } else {
            for msg in NameRule::DnsLabel.validate(namespace, false) {
                errs.push(FieldError::invalid("metadata.namespace", namespace, msg));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden("metadata.namespace", "not allowed on this type"));
    }
    if let Some(generation) = meta.get("generation").and_then(Value::as_i64) {
        if generation < 0 {
            errs.push(FieldError::invalid("metadata.generation", generation, "must be greater than or equal to 0"));
        }
    }
    errs.extend(validate_labels(meta.get("labels").unwrap_or(&null), "metadata.labels"));
    errs.extend(validate_annotations(meta.get("annotations").unwrap_or(&null), "metadata.annotations"));
    errs.extend(validate_owner_references(meta.get("ownerReferences").unwrap_or(&null), "metadata.ownerReferences"));
    errs.extend(validate_finalizers(meta.get("finalizers").unwrap_or(&null), "metadata.finalizers"));
    errs
}

/// kube's `ValidateObjectMetaUpdate`: the checks of an update against the stored object.
/// No new finalizers once deleting, resourceVersion present, generation not decremented,
/// and name, namespace, uid, creationTimestamp, deletionTimestamp (once set),
/// deletionGracePeriodSeconds (once set) immutable; then labels, annotations,
/// ownerReferences and finalizers of the new object.
pub fn validate_object_meta_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let null = Value::Null;
    let new_meta = new.get("metadata").unwrap_or(&null);
    let old_meta = old.get("metadata").unwrap_or(&null);
    let mut errs = Vec::new();
    if !old_meta.get("deletionTimestamp").unwrap_or(&null).is_null() {
        let strings = |m: &Value| -> BTreeSet<String> {
            m.get("finalizers")
                .and_then(Value::as_array)
                .map(|l| l.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
                .unwrap_or_default()
        };
        let extra: Vec<String> = strings(new_meta).difference(&strings(old_meta)).cloned().collect();
        if !extra.is_empty() {
            let quoted: Vec<String> = extra.iter().map(|s| go_quote(s)).collect();
            errs.push(FieldError::forbidden(
                "metadata.finalizers",
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    quoted.join(", ")
                ),
            ));
        }
    }
    let rv = str_field(new_meta, "resourceVersion");
    if rv.is_empty() {
        errs.push(FieldError::invalid("metadata.resourceVersion", rv, "must be specified for an update"));
    }
    let generation = |m: &Value| m.get("generation").and_then(Value::as_i64).unwrap_or(0);
    if generation(new_meta) < generation(old_meta) {
        errs.push(FieldError::invalid("metadata.generation", generation(new_meta), "must not be decremented"));
    }
    for key in ["name", "namespace", "uid", "creationTimestamp"] {
        let n = new_meta.get(key).unwrap_or(&null);
        let o = old_meta.get(key).unwrap_or(&null);
        if !same_scalar(n, o) {
            errs.push(FieldError::invalid(format!("metadata.{key}"), n.clone(), FIELD_IMMUTABLE_ERROR_MSG));
        }
    }
    for key in ["deletionTimestamp", "deletionGracePeriodSeconds"] {
        let o = old_meta.get(key).unwrap_or(&null);
        let n = new_meta.get(key).unwrap_or(&null);
        if !o.is_null() && !same_scalar(n, o) {
            errs.push(FieldError::invalid(format!("metadata.{key}"), n.clone(), FIELD_IMMUTABLE_ERROR_MSG));
        }
    }
    errs.extend(validate_labels(new_meta.get("labels").unwrap_or(&null), "metadata.labels"));
    errs.extend(validate_annotations(new_meta.get("annotations").unwrap_or(&null), "metadata.annotations"));
    errs.extend(validate_owner_references(new_meta.get("ownerReferences").unwrap_or(&null), "metadata.ownerReferences"));
    errs.extend(validate_finalizers(new_meta.get("finalizers").unwrap_or(&null), "metadata.finalizers"));
    errs
}

/// Equality where an absent value and the empty string are the same (Go's zero values).
fn same_scalar(a: &Value, b: &Value) -> bool {
    let norm = |v: &Value| -> Value {
        match v {
            Value::String(s) if s.is_empty() => Value::Null,
            other => other.clone(),
        }
    };
    norm(a) == norm(b)
}

mod immutable;
mod kinds;
pub use immutable::validate_immutable_fields;
pub use kinds::{validate_kind, validate_kind_update};

#[cfg(test)]
mod tests;
