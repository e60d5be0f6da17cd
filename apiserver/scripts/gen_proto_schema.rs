//! Generates `apiserver/src/protobuf/schema.rs`, the table the protobuf request decoder
//! ([`skiff_apiserver::protobuf`]) walks. Not run by CI or the build: its output is
//! committed, and this is run again by hand when the served kinds or the API version change.
//!
//! Three inputs, each for what it is the authority on:
//! - the `k8s-pb` crate's source (prost-generated structs, parsed with `syn`): every field's
//!   tag, wire type, and message type;
//! - the Go sources of `k8s.io/api` and `k8s.io/apimachinery` (the `types.go` struct tags):
//!   every field's JSON name, `omitempty`, whether the Go field is a pointer, and `inline`.
//!   Needed because Go's protobuf encoder writes every non-pointer field, zero or not: a zero
//!   of a non-pointer `omitempty` field means "unset" and must not reach the JSON, while a
//!   zero of a pointer field (`replicas: 0`, `runAsUser: 0`) is a value;
//! - the served OpenAPI schemas (k8s-openapi's, through `openapi::v3_document`): a field is
//!   emitted only if the served API version knows it (k8s-pb and the Go tree are newer).
//!
//! Usage (from the workspace root; the output goes to stdout):
//! ```text
//! git clone -b v0.35.0 https://github.com/kubernetes/api /tmp/gosrc/api
//! git clone -b v0.35.0 https://github.com/kubernetes/apimachinery /tmp/gosrc/apimachinery
//! scripts/cargo run -p skiff-apiserver --features gen-proto-schema --example gen-proto-schema -- \
//!     ~/.cargo/registry/src/index.crates.io-*/k8s-pb-0.9.0 /tmp/gosrc/api /tmp/gosrc/apimachinery \
//!     > apiserver/src/protobuf/schema.rs
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde_json::Value;

/// A module of k8s-pb, as path segments: `["api", "core", "v1"]`.
type ModPath = Vec<String>;

/// One prost field.
#[derive(Debug, Clone)]
struct PbField {
    rust_name: String,
    tag: u32,
    /// `string`, `int32`, `message`, `btree_map`, ...
    kind: String,
    /// `btree_map = "string, message"`: the key and value kinds.
    map_kinds: Option<(String, String)>,
    repeated: bool,
    /// The message type (of a message field or a map's message values).
    message: Option<(ModPath, String)>,
}

/// One Go struct field with a protobuf tag.
#[derive(Debug, Clone)]
struct GoField {
    json: String,
    omitempty: bool,
    pointer: bool,
    inline: bool,
}

struct Sources {
    k8s_pb: PathBuf,
    go_api: PathBuf,
    go_apimachinery: PathBuf,
    pb_modules: HashMap<ModPath, BTreeMap<String, Vec<PbField>>>,
    go_packages: HashMap<ModPath, HashMap<String, BTreeMap<u32, GoField>>>,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [k8s_pb, go_api, go_apimachinery] = args.as_slice() else {
        bail!("usage: gen-proto-schema <k8s-pb source dir> <k8s.io/api dir> <k8s.io/apimachinery dir>");
    };
    let mut src = Sources {
        k8s_pb: k8s_pb.into(),
        go_api: go_api.into(),
        go_apimachinery: go_apimachinery.into(),
        pb_modules: HashMap::new(),
        go_packages: HashMap::new(),
    };
    let served = served_properties();
    let roots = roots();
    // Breadth-first over the messages reachable from the roots. `owner`: the OpenAPI
    // definition whose properties a message's fields must be in (an inlined message has
    // none of its own: its fields are its parent's).
    let mut queue: VecDeque<(ModPath, String, Option<String>)> = VecDeque::new();
    for (_, _, m, name) in &roots {
        queue.push_back((m.clone(), name.clone(), None));
    }
    // prost's struct name → the Go (and OpenAPI) one: prost camel-cases acronyms (`PodDnsConfig`).
    let mut names: BTreeMap<(ModPath, String), String> = BTreeMap::new();
    let mut messages: BTreeMap<String, Vec<(PbField, GoField)>> = BTreeMap::new();
    while let Some((module, pb_name, owner)) = queue.pop_front() {
        if special_of(&definition_name(&module, &pb_name)).is_some() {
            // The decoder knows these few messages' fields itself.
            names.insert((module.clone(), pb_name.clone()), pb_name.clone());
            messages.insert(definition_name(&module, &pb_name), Vec::new());
            continue;
        }
        let (go_name, go) = src.go_struct(&module, &pb_name)?;
        let full = definition_name(&module, &go_name);
        names.insert((module.clone(), pb_name.clone()), go_name.clone());
        if messages.contains_key(&full) {
            continue;
        }
        let pb = src.pb_message(&module, &pb_name)?;
        let owner = owner.unwrap_or_else(|| full.clone());
        let Some(props) = served.get(&owner) else { bail!("{full}: no served OpenAPI definition {owner}") };
        let mut fields = Vec::new();
        for f in pb {
            let g = go.get(&f.tag).with_context(|| format!("{full}.{}: no Go field with protobuf tag {}", f.rust_name, f.tag))?;
            if !g.inline && !props.contains(&g.json) {
                eprintln!("skipped {full}.{} (not in the served API version)", g.json);
                continue;
            }
            if !g.inline && normalize(&g.json) != normalize(&f.rust_name) {
                bail!("{full}: Go JSON name {:?} does not match prost's {:?}", g.json, f.rust_name);
            }
            if let Some((m, n)) = &f.message {
                queue.push_back((m.clone(), n.clone(), g.inline.then(|| owner.clone())));
            }
            fields.push((f, g.clone()));
        }
        messages.insert(full, fields);
    }
    // Message references by Go name from here on.
    for fields in messages.values_mut() {
        for (f, _) in fields.iter_mut() {
            if let Some((m, n)) = &mut f.message {
                *n = names.get(&(m.clone(), n.clone())).cloned().with_context(|| format!("unresolved message {n}"))?;
            }
        }
    }
    let roots: Vec<_> = roots.into_iter().map(|(av, k, m, n)| {
        let go = names.get(&(m.clone(), n.clone())).cloned().unwrap_or(n);
        (av, k, m, go)
    }).collect();
    print!("{}", render(&roots, &messages)?);
    Ok(())
}

/// (apiVersion, kind, module, message) of every kind a protobuf body may carry: the served
/// built-in kinds, the bodies of the `scale` and `binding` subresources, and DeleteOptions.
fn roots() -> Vec<(String, String, ModPath, String)> {
    let mut out = Vec::new();
    for r in skiff_apiserver::resources::Registry::builtin().all() {
        if r.custom || r.group == "apiextensions.k8s.io" {
            // CRDs: not in k8s.io/api (apiextensions-apiserver's own module); kubectl sends
            // them as JSON.
            continue;
        }
        let short = if r.group.is_empty() { "core" } else { r.group.split('.').next().unwrap_or_default() };
        out.push((r.api_version(), r.kind.clone(), vec!["api".into(), short.into(), r.version.clone()], r.kind.clone()));
    }
    out.push(("autoscaling/v1".into(), "Scale".into(), vec!["api".into(), "autoscaling".into(), "v1".into()], "Scale".into()));
    out.push(("v1".into(), "Binding".into(), vec!["api".into(), "core".into(), "v1".into()], "Binding".into()));
    // A DELETE's body; kube registers it in every group-version (the decoder accepts any).
    let meta: ModPath = ["apimachinery", "pkg", "apis", "meta", "v1"].iter().map(|s| s.to_string()).collect();
    out.push(("meta.k8s.io/v1".into(), "DeleteOptions".into(), meta, "DeleteOptions".into()));
    out
}

/// OpenAPI definition name → its property names, over every served group-version.
fn served_properties() -> HashMap<String, BTreeSet<String>> {
    let resources: Vec<_> = skiff_apiserver::resources::Registry::builtin().all().iter().map(|r| (**r).clone()).collect();
    let mut gvs = BTreeSet::new();
    for r in &resources {
        gvs.insert((r.group.clone(), r.version.clone()));
    }
    let mut out = HashMap::new();
    // The binding subresource's body, which no served document lists.
    let mut gen = schemars::gen::SchemaGenerator::new(schemars::gen::SchemaSettings::openapi3());
    gen.subschema_for::<k8s_openapi::api::core::v1::Binding>();
    for (name, schema) in gen.definitions() {
        let schema = serde_json::to_value(schema).unwrap_or_default();
        let props = schema.get("properties").and_then(Value::as_object).map(|p| p.keys().cloned().collect()).unwrap_or_default();
        out.insert(name.clone(), props);
    }
    for (g, v) in gvs {
        let doc = skiff_apiserver::openapi::v3_document(&resources, &BTreeMap::new(), &g, &v);
        if let Some(Value::Object(schemas)) = doc.pointer("/components/schemas") {
            for (name, schema) in schemas {
                let props = schema.get("properties").and_then(Value::as_object).map(|p| p.keys().cloned().collect()).unwrap_or_default();
                out.insert(name.clone(), props);
            }
        }
    }
    out
}

/// `io.k8s.api.core.v1.Pod`, the name k8s-openapi (and kube's OpenAPI) gives the type.
fn definition_name(module: &ModPath, name: &str) -> String {
    format!("io.k8s.{}.{name}", module.join("."))
}

/// The decoder's special cases: types whose JSON is not their protobuf message's shape.
fn special_of(full: &str) -> Option<&'static str> {
    Some(match full {
        "io.k8s.apimachinery.pkg.apis.meta.v1.Time" => "Time",
        "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime" => "MicroTime",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Duration" => "Duration",
        "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1" => "FieldsV1",
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => "Quantity",
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => "IntOrString",
        "io.k8s.apimachinery.pkg.runtime.RawExtension" => "RawExtension",
        _ => return None,
    })
}

/// Lowercase without separators: `podIP` and `pod_ip` agree.
fn normalize(s: &str) -> String {
    s.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

impl Sources {
    fn pb_message(&mut self, module: &ModPath, name: &str) -> anyhow::Result<Vec<PbField>> {
        if !self.pb_modules.contains_key(module) {
            let parsed = parse_pb_module(&self.k8s_pb, module)?;
            self.pb_modules.insert(module.clone(), parsed);
        }
        self.pb_modules[module].get(name).cloned().ok_or_else(|| anyhow!("k8s-pb {}: no struct {name}", module.join("::")))
    }

    /// The Go struct whose name is prost's `name` ignoring case: (its Go name, its fields).
    fn go_struct(&mut self, module: &ModPath, name: &str) -> anyhow::Result<(String, BTreeMap<u32, GoField>)> {
        if !self.go_packages.contains_key(module) {
            let dir = match module.first().map(String::as_str) {
                Some("api") => self.go_api.join(module[1..].join("/")),
                Some("apimachinery") => self.go_apimachinery.join(module[1..].join("/")),
                _ => bail!("no Go source for module {}", module.join("::")),
            };
            let parsed = parse_go_package(&dir)?;
            self.go_packages.insert(module.clone(), parsed);
        }
        let mut found = self.go_packages[module].iter().filter(|(go, _)| go.eq_ignore_ascii_case(name));
        match (found.next(), found.next()) {
            (Some((go, fields)), None) => Ok((go.clone(), fields.clone())),
            (None, _) => bail!("Go package {}: no struct {name}", module.join("/")),
            (Some(_), Some(_)) => bail!("Go package {}: two structs named {name} ignoring case", module.join("/")),
        }
    }
}

fn parse_pb_module(root: &Path, module: &ModPath) -> anyhow::Result<BTreeMap<String, Vec<PbField>>> {
    let path = root.join("src").join(module.join("/")).join("mod.rs");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let file = syn::parse_file(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut out = BTreeMap::new();
    for item in file.items {
        let syn::Item::Struct(s) = item else { continue };
        let syn::Fields::Named(named) = &s.fields else { continue };
        let mut fields = Vec::new();
        for f in &named.named {
            let Some(attr) = f.attrs.iter().find(|a| a.path().is_ident("prost")) else { continue };
            let rust_name = syn::ext::IdentExt::unraw(f.ident.as_ref().expect("named field")).to_string();
            let mut field = PbField { rust_name, tag: 0, kind: String::new(), map_kinds: None, repeated: false, message: None };
            attr.parse_nested_meta(|meta| {
                let key = meta.path.get_ident().map(ToString::to_string).unwrap_or_default();
                let value = if meta.input.peek(syn::Token![=]) { Some(meta.value()?.parse::<syn::LitStr>()?.value()) } else { None };
                match (key.as_str(), value) {
                    ("tag", Some(v)) => field.tag = v.parse().map_err(|_| meta.error("bad tag"))?,
                    ("optional" | "required", None) => {}
                    // The decoder reads packed and unpacked repeated scalars alike.
                    ("packed", Some(_)) => {}
                    ("repeated", None) => field.repeated = true,
                    ("btree_map" | "map" | "hash_map", Some(v)) => {
                        let (k, val) = v.split_once(',').ok_or_else(|| meta.error("bad map"))?;
                        field.kind = "map".into();
                        field.map_kinds = Some((k.trim().into(), val.trim().into()));
                    }
                    ("bytes", _) => field.kind = "bytes".into(),
                    (k, None) => field.kind = k.into(),
                    (k, Some(_)) => return Err(meta.error(format!("unexpected prost attribute {k}"))),
                }
                Ok(())
            })?;
            let wants_message = field.kind == "message" || field.map_kinds.as_ref().is_some_and(|(_, v)| v == "message");
            if wants_message {
                field.message = Some(message_type(module, &f.ty).with_context(|| format!("{}.{}", s.ident, field.rust_name))?);
            }
            fields.push(field);
        }
        out.insert(s.ident.to_string(), fields);
    }
    Ok(out)
}

/// The message type inside `Option<T>`, `Vec<T>` or `BTreeMap<String, T>`, resolved from
/// `super::super::...::T` against the field's module.
fn message_type(module: &ModPath, ty: &syn::Type) -> anyhow::Result<(ModPath, String)> {
    let syn::Type::Path(p) = ty else { bail!("not a path type") };
    let last = p.path.segments.last().context("empty path")?;
    let last_name = last.ident.to_string();
    if matches!(last_name.as_str(), "Option" | "Vec" | "BTreeMap" | "HashMap") {
        let syn::PathArguments::AngleBracketed(args) = &last.arguments else { bail!("{last_name} without arguments") };
        let inner = args.args.iter().filter_map(|a| if let syn::GenericArgument::Type(t) = a { Some(t) } else { None }).last();
        return message_type(module, inner.context("no type argument")?);
    }
    let mut resolved = module.clone();
    let segs: Vec<String> = p.path.segments.iter().map(|s| s.ident.to_string()).collect();
    for s in &segs[..segs.len() - 1] {
        if s == "super" {
            resolved.pop().context("super above the crate root")?;
        } else {
            resolved.push(s.clone());
        }
    }
    Ok((resolved, last_name))
}

/// Go struct name → protobuf tag → field, over the package's hand-written `.go` files.
fn parse_go_package(dir: &Path) -> anyhow::Result<HashMap<String, BTreeMap<u32, GoField>>> {
    let mut out = HashMap::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().to_string();
        let generated = name.starts_with("zz_generated") || name.contains("generated") || name.ends_with("_test.go");
        if !name.ends_with(".go") || generated {
            continue;
        }
        let text = std::fs::read_to_string(e.path())?;
        parse_go_structs(&text, &mut out);
    }
    Ok(out)
}

fn parse_go_structs(text: &str, out: &mut HashMap<String, BTreeMap<u32, GoField>>) {
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("type ") {
            if let Some(name) = rest.strip_suffix(" struct {") {
                current = Some(name.trim().to_string());
                continue;
            }
        }
        if line.starts_with('}') {
            current = None;
            continue;
        }
        let Some(struct_name) = &current else { continue };
        let trimmed = line.trim();
        if trimmed.starts_with("//") {
            continue;
        }
        let Some((decl, tags)) = trimmed.split_once('`') else { continue };
        let Some(pb) = tag_value(tags, "protobuf") else { continue };
        let Some(tag) = pb.split(',').nth(1).and_then(|t| t.parse::<u32>().ok()) else { continue };
        let json = tag_value(tags, "json").unwrap_or_default();
        let mut parts = json.split(',');
        let json_name = parts.next().unwrap_or_default().to_string();
        let opts: Vec<&str> = parts.collect();
        let words: Vec<&str> = decl.split_whitespace().collect();
        let ty = if words.len() >= 2 { words[1] } else { words.first().copied().unwrap_or_default() };
        let field = GoField {
            inline: json_name.is_empty() && opts.contains(&"inline"),
            json: json_name,
            omitempty: opts.contains(&"omitempty") || opts.contains(&"omitzero"),
            pointer: ty.starts_with('*'),
        };
        out.entry(struct_name.clone()).or_default().insert(tag, field);
    }
}

/// `json:"name,omitempty"` → `name,omitempty`.
fn tag_value<'a>(tags: &'a str, key: &str) -> Option<&'a str> {
    let start = tags.find(&format!("{key}:\""))? + key.len() + 2;
    let len = tags[start..].find('"')?;
    Some(&tags[start..start + len])
}

fn scalar(kind: &str) -> anyhow::Result<&'static str> {
    Ok(match kind {
        "string" => "String",
        "bytes" => "Bytes",
        "bool" => "Bool",
        "int32" => "Int32",
        "int64" => "Int64",
        "uint32" => "Uint32",
        "uint64" => "Uint64",
        "sint32" => "Sint32",
        "sint64" => "Sint64",
        "fixed32" => "Fixed32",
        "fixed64" => "Fixed64",
        "sfixed32" => "Sfixed32",
        "sfixed64" => "Sfixed64",
        "float" => "Float",
        "double" => "Double",
        other => bail!("unknown scalar kind {other}"),
    })
}

fn render(roots: &[(String, String, ModPath, String)], messages: &BTreeMap<String, Vec<(PbField, GoField)>>) -> anyhow::Result<String> {
    let index: HashMap<&str, usize> = messages.keys().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
    let msg_index = |f: &PbField| -> anyhow::Result<usize> {
        let (m, n) = f.message.as_ref().context("message field without a type")?;
        index.get(definition_name(m, n).as_str()).copied().context("message not generated")
    };
    let mut s = String::new();
    s.push_str(
        "//! @generated by `apiserver/scripts/gen_proto_schema.rs` (see there for how to run it) from\n\
         //! k8s-pb 0.9.0 (tags and wire types), k8s.io/api and k8s.io/apimachinery v0.35.0 (JSON\n\
         //! names, pointer, omitempty, inline) and the served OpenAPI schemas (k8s-openapi v1_32:\n\
         //! which fields exist). Do not edit by hand.\n\n\
         use super::{Field, MapValue as V, Message, Mode as M, Scalar as S, Special, Ty as T};\n\n",
    );
    s.push_str("/// (apiVersion, kind) → index into [`MESSAGES`] of the kind's message.\n");
    s.push_str("pub(super) static KINDS: &[(&str, &str, u16)] = &[\n");
    let mut sorted_roots: Vec<_> = roots.iter().collect();
    sorted_roots.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    for (av, kind, m, n) in sorted_roots {
        writeln!(s, "    ({av:?}, {kind:?}, {}),", index[definition_name(m, n).as_str()])?;
    }
    s.push_str("];\n\n");
    s.push_str("pub(super) static MESSAGES: &[Message] = &[\n");
    for (i, (name, fields)) in messages.iter().enumerate() {
        let special = special_of(name).unwrap_or("None");
        writeln!(s, "    // {i}")?;
        writeln!(s, "    Message {{ name: {name:?}, special: Special::{special}, fields: &[")?;
        for (f, g) in fields {
            let ty = match (f.kind.as_str(), &f.map_kinds) {
                ("map", Some((k, v))) if v == "message" => format!("T::Map(S::{}, V::Message({}))", scalar(k)?, msg_index(f)?),
                ("map", Some((k, v))) => format!("T::Map(S::{}, V::Scalar(S::{}))", scalar(k)?, scalar(v)?),
                ("message", _) => format!("T::Message({})", msg_index(f)?),
                (k, _) => format!("T::Scalar(S::{})", scalar(k)?),
            };
            let mode = if g.inline {
                "M::Inline"
            } else if f.repeated || f.kind == "map" {
                "M::Repeated"
            } else if g.omitempty && !g.pointer {
                "M::OmitZero"
            } else {
                "M::One"
            };
            writeln!(s, "        Field {{ tag: {}, json: {:?}, ty: {ty}, mode: {mode} }},", f.tag, g.json)?;
        }
        s.push_str("    ] },\n");
    }
    s.push_str("];\n");
    Ok(s)
}
