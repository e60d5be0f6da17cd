//! Label and field selectors with Kubernetes' exact syntax, semantics and error messages.
//!
//! Pure: parsing and matching over `serde_json::Value`, no I/O. Follows
//! `k8s.io/apimachinery/pkg/labels` (lexer, parser, `NewRequirement` validation,
//! `LabelSelectorAsSelector`) and `pkg/fields` (term splitting, `\` escaping), plus the
//! per-resource field tables of kube-apiserver's registries (`GetAttrs`/`ToSelectableFields`).
//!
//! - [`LabelSelector::parse`] reads `?labelSelector=`: `a=b`, `a==b`, `a!=b`,
//!   `a in (x,y)`, `a notin (x)`, `a`, `!a`, `a>1`, `a<1`, comma = AND.
//! - [`LabelSelector::from_json`] reads a `metav1.LabelSelector` (`matchLabels` +
//!   `matchExpressions`) as found in Deployment/ReplicaSet/Service-like specs.
//! - [`FieldSelector::parse`] reads `?fieldSelector=`; [`FieldSelector::check_supported`]
//!   refuses fields a resource does not index (`field label not supported: foo`, a 400), and
//!   [`FieldSelector::matches`] evaluates it against an object.
//!
//! Every error is a [`SelectorError`]; the server answers all of them with 400 BadRequest.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::validation::{go_quote, is_qualified_name, is_valid_label_value};

/// Why a selector was refused. `Display` is kube's text; all map to HTTP 400 BadRequest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A label selector string that does not parse or validate, e.g.
    /// `unable to parse requirement: found '', expected: identifier`.
    #[error("{message}")]
    InvalidLabelSelector { message: String },
    /// A `matchExpressions` operator other than In/NotIn/Exists/DoesNotExist.
    #[error("{} is not a valid label selector operator", go_quote(operator))]
    InvalidOperator { operator: String },
    /// A field selector term with no `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    InvalidFieldTerm { selector: String, term: String },
    /// A `\` followed by anything but `\`, `,` or `=` in a field selector value.
    #[error("invalid field selector: invalid escape sequence: {sequence}")]
    InvalidEscapeSequence { sequence: String },
    /// An unescaped `,` or `=` in a field selector value; Go prints the rune as a number.
    #[error("invalid field selector: unescaped character in value: {}", *.character as u32)]
    UnescapedCharacter { character: char },
    /// A field the resource cannot be filtered by.
    #[error("field label not supported: {field}")]
    FieldNotSupported { field: String },
}

pub type Result<T, E = SelectorError> = std::result::Result<T, E>;

fn invalid(message: impl Into<String>) -> SelectorError {
    SelectorError::InvalidLabelSelector { message: message.into() }
}

// =======================================================================================
// Label selectors

/// A label requirement operator (kube's `selection.Operator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `a=b`
    Equals,
    /// `a==b`
    DoubleEquals,
    /// `a!=b` (also true when `a` is absent)
    NotEquals,
    /// `a in (x,y)`
    In,
    /// `a notin (x,y)` (also true when `a` is absent)
    NotIn,
    /// `a`
    Exists,
    /// `!a`
    DoesNotExist,
    /// `a>1` (integers; false when `a` is absent or not an integer)
    GreaterThan,
    /// `a<1`
    LessThan,
}

impl Operator {
    /// kube's string for the operator (`=`, `in`, `exists`, `gt`, …) as used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

/// One term of a label selector: `key <operator> values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    /// Sorted and without duplicates (kube keeps a set).
    values: Vec<String>,
}

impl Requirement {
    /// kube's `NewRequirement`: checks the key is a qualified name, the number of values
    /// fits the operator, integers for `gt`/`lt`, and each value is a label value.
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self> {
        let mut errs: Vec<String> = Vec::new();
        let key_errs = is_qualified_name(key);
        if !key_errs.is_empty() {
            errs.push(format!("key: Invalid value: {}: {}", go_quote(key), key_errs.join("; ")));
        }
        let values_repr = || {
            let quoted: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
            format!("[]string{{{}}}", quoted.join(", "))
        };
        match operator {
            Operator::In | Operator::NotIn => {
                if values.is_empty() {
                    errs.push(format!(
                        "values: Invalid value: {}: for 'in', 'notin' operators, values set can't be empty",
                        values_repr()
                    ));
                }
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals => {
                if values.len() != 1 {
                    errs.push(format!(
                        "values: Invalid value: {}: exact-match compatibility requires one single value",
                        values_repr()
                    ));
                }
            }
            Operator::Exists | Operator::DoesNotExist => {
                if !values.is_empty() {
                    errs.push(format!(
                        "values: Invalid value: {}: values set must be empty for exists and does not exist",
                        values_repr()
                    ));
                }
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(format!(
                        "values: Invalid value: {}: for 'Gt', 'Lt' operators, exactly one value is required",
                        values_repr()
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(format!(
                            "values[{i}]: Invalid value: {}: for 'Gt', 'Lt' operators, the value must be an integer",
                            go_quote(v)
                        ));
                    }
                }
            }
        }
        for (i, v) in values.iter().enumerate() {
            let value_errs = is_valid_label_value(v);
            if !value_errs.is_empty() {
                errs.push(format!("values[{i}][{key}]: Invalid value: {}: {}", go_quote(v), value_errs.join("; ")));
            }
        }
        if !errs.is_empty() {
            return Err(invalid(aggregate(errs)));
        }
        let mut values = values;
        values.sort();
        values.dedup();
        Ok(Self { key: key.to_string(), operator, values })
    }

    pub fn key(&self) -> &str {
        &self.key
    }
    pub fn operator(&self) -> Operator {
        self.operator
    }
    /// The values, sorted and deduplicated.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// kube's `Requirement.Matches`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        let has = |v: &String| self.values.binary_search(v).is_ok();
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => value.is_some_and(has),
            Operator::NotIn | Operator::NotEquals => !value.is_some_and(has),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(actual) = value.and_then(|v| v.parse::<i64>().ok()) else { return false };
                let [wanted] = self.values.as_slice() else { return false };
                let Ok(wanted) = wanted.parse::<i64>() else { return false };
                match self.operator {
                    Operator::GreaterThan => actual > wanted,
                    _ => actual < wanted,
                }
            }
        }
    }
}

/// kube's `Requirement.String()`; parsing it gives the requirement back.
impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
        };
        f.write_str(op)?;
        let parens = matches!(self.operator, Operator::In | Operator::NotIn);
        if parens {
            f.write_str("(")?;
        }
        f.write_str(&self.values.join(","))?;
        if parens {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A label selector: the AND of its requirements, kept sorted by key.
///
/// `LabelSelector::default()` (also the parse of `""`) matches everything;
/// [`LabelSelector::nothing`] (a `null` `metav1.LabelSelector`) matches nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// The selector that matches no object (what kube makes of a nil `*LabelSelector`).
    pub fn nothing() -> Self {
        Self { requirements: Vec::new(), nothing: true }
    }

    /// A selector from requirements (sorted by key, stably).
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Self { requirements, nothing: false }
    }

    /// `k1=v1,k2=v2` from a map, validated (kube's `ValidatedSelectorFromSet`).
    pub fn from_set(set: &BTreeMap<String, String>) -> Result<Self> {
        let reqs = set
            .iter()
            .map(|(k, v)| Requirement::new(k, Operator::Equals, vec![v.clone()]))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self::from_requirements(reqs))
    }

    /// Parses kube's selector syntax (kube's `labels.Parse`).
    ///
    /// ```
    /// # use skiff_apiserver::selectors::LabelSelector;
    /// let sel = LabelSelector::parse("app=web, tier in (fe,be), !canary").unwrap();
    /// assert_eq!(sel.to_string(), "app=web,!canary,tier in (be,fe)");
    /// ```
    pub fn parse(selector: &str) -> Result<Self> {
        let tokens = lex(selector);
        let reqs = Parser { tokens, pos: 0 }.parse()?;
        Ok(Self::from_requirements(reqs))
    }

    /// Builds the selector of a `metav1.LabelSelector` JSON (kube's
    /// `LabelSelectorAsSelector`): `null` matches nothing, `{}` everything; `matchLabels`
    /// entries become `k=v`, `matchExpressions` use `In`, `NotIn`, `Exists`, `DoesNotExist`.
    pub fn from_json(selector: &Value) -> Result<Self> {
        let Some(obj) = selector.as_object() else {
            return Ok(Self::nothing());
        };
        let mut reqs = Vec::new();
        if let Some(labels) = obj.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in labels {
                let v = v.as_str().unwrap_or_default().to_string();
                reqs.push(Requirement::new(k, Operator::Equals, vec![v])?);
            }
        }
        if let Some(exprs) = obj.get("matchExpressions").and_then(Value::as_array) {
            for expr in exprs {
                let key = expr.get("key").and_then(Value::as_str).unwrap_or_default();
                let operator = expr.get("operator").and_then(Value::as_str).unwrap_or_default();
                let op = match operator {
                    "In" => Operator::In,
                    "NotIn" => Operator::NotIn,
                    "Exists" => Operator::Exists,
                    "DoesNotExist" => Operator::DoesNotExist,
                    other => return Err(SelectorError::InvalidOperator { operator: other.to_string() }),
                };
                let values: Vec<String> = expr
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|vs| vs.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect())
                    .unwrap_or_default();
                reqs.push(Requirement::new(key, op, values)?);
            }
        }
        Ok(Self::from_requirements(reqs))
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// True for the match-everything selector.
    pub fn is_everything(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// Whether a label set satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// [`LabelSelector::matches`] on an object's `metadata.labels` (absent = no labels).
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.matches(&object_labels(obj))
    }

    /// The value `label` must have for any match, when the selector pins it (kube's
    /// `RequiresExactMatch`): lets the server narrow a list, e.g. by namespace.
    pub fn requires_exact_match(&self, label: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == label)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [v]) => Some(v),
            _ => None,
        }
    }
}

/// kube's `Selector.String()`: requirements joined with `,` (`""` for everything/nothing).
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// An object's `metadata.labels` as a map (non-string values are skipped).
pub fn object_labels(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

fn aggregate(errs: Vec<String>) -> String {
    let mut seen = std::collections::BTreeSet::new();
    let errs: Vec<String> = errs.into_iter().filter(|e| seen.insert(e.clone())).collect();
    if errs.len() == 1 {
        errs.into_iter().next().unwrap_or_default()
    } else {
        format!("[{}]", errs.join(", "))
    }
}

// ---------------------------------------------------------------------------------------
// Lexer and parser: a transcription of kube's state machine, so that odd inputs fail
// (or succeed) exactly as they do against kube-apiserver.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Error,
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn keyword(s: &[u8]) -> Option<Token> {
    Some(match s {
        b")" => Token::ClosedPar,
        b"," => Token::Comma,
        b"!" => Token::DoesNotExist,
        b"==" => Token::DoubleEquals,
        b"=" => Token::Equals,
        b">" => Token::GreaterThan,
        b"in" => Token::In,
        b"<" => Token::LessThan,
        b"!=" => Token::NotEquals,
        b"notin" => Token::NotIn,
        b"(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special_symbol(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits the whole input into tokens, ending with `EndOfString` (kube's `Parser.scan`).
/// Kube reads a NUL byte as the end of the input; so do we.
fn lex(s: &str) -> Vec<(Token, String)> {
    let b = s.as_bytes();
    let mut pos = 0;
    let mut out = Vec::new();
    let at = |pos: usize| if pos < b.len() { b[pos] } else { 0 };
    loop {
        while is_whitespace(at(pos)) {
            pos += 1;
        }
        let ch = at(pos);
        if ch == 0 {
            out.push((Token::EndOfString, String::new()));
            return out;
        }
        let start = pos;
        if is_special_symbol(ch) {
            // Longest run of special symbols that is still a keyword.
            let mut last: Option<(Token, usize)> = None;
            while pos < b.len() && is_special_symbol(b[pos]) {
                pos += 1;
                if let Some(tok) = keyword(&b[start..pos]) {
                    last = Some((tok, pos));
                } else if last.is_some() {
                    pos -= 1;
                    break;
                }
            }
            match last {
                Some((tok, end)) => {
                    pos = end;
                    out.push((tok, s[start..end].to_string()));
                }
                None => {
                    out.push((Token::Error, format!("error expected: keyword found '{}'", &s[start..pos])));
                }
            }
        } else {
            while pos < b.len() && b[pos] != 0 && !is_special_symbol(b[pos]) && !is_whitespace(b[pos]) {
                pos += 1;
            }
            let lit = &s[start..pos];
            let tok = keyword(lit.as_bytes()).unwrap_or(Token::Identifier);
            out.push((tok, lit.to_string()));
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser {
    tokens: Vec<(Token, String)>,
    pos: usize,
}

impl Parser {
    fn item(&self, pos: usize, ctx: Context) -> (Token, String) {
        // Past the end behaves as end of string (kube would index out of range instead,
        // but its grammar never gets there).
        let (tok, lit) = self.tokens.get(pos).cloned().unwrap_or((Token::EndOfString, String::new()));
        let tok = match (ctx, tok) {
            (Context::Values, Token::In | Token::NotIn) => Token::Identifier,
            (_, t) => t,
        };
        (tok, lit)
    }
    fn lookahead(&self, ctx: Context) -> (Token, String) {
        self.item(self.pos, ctx)
    }
    fn consume(&mut self, ctx: Context) -> (Token, String) {
        self.pos += 1;
        self.item(self.pos - 1, ctx)
    }

    fn parse(&mut self) -> Result<Vec<Requirement>> {
        let mut reqs = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Context::Values);
            match tok {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self
                        .parse_requirement()
                        .map_err(|e| invalid(format!("unable to parse requirement: {e}")))?;
                    reqs.push(r);
                    let (t, l) = self.consume(Context::Values);
                    match t {
                        Token::EndOfString => return Ok(reqs),
                        Token::Comma => {
                            let (t2, l2) = self.lookahead(Context::Values);
                            if t2 != Token::Identifier && t2 != Token::DoesNotExist {
                                return Err(invalid(format!("found '{l2}', expected: identifier after ','")));
                            }
                        }
                        _ => return Err(invalid(format!("found '{l}', expected: ',' or 'end of string'"))),
                    }
                }
                Token::EndOfString => return Ok(reqs),
                _ => return Err(invalid(format!("found '{lit}', expected: !, identifier, or 'end of string'"))),
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement> {
        let (key, op) = self.parse_key_and_infer_operator()?;
        if let Some(op) = op {
            return Requirement::new(&key, op, Vec::new());
        }
        let op = self.parse_operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(&key, op, values)
    }

    /// The key, and `Exists`/`DoesNotExist` when no binary operator follows.
    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>)> {
        let mut op = None;
        let (mut tok, mut lit) = self.consume(Context::Values);
        if tok == Token::DoesNotExist {
            op = Some(Operator::DoesNotExist);
            (tok, lit) = self.consume(Context::Values);
        }
        if tok != Token::Identifier {
            return Err(invalid(format!("found '{lit}', expected: identifier")));
        }
        let key_errs = is_qualified_name(&lit);
        if !key_errs.is_empty() {
            return Err(invalid(format!("<nil>: Invalid value: {}: {}", go_quote(&lit), key_errs.join("; "))));
        }
        let (next, _) = self.lookahead(Context::Values);
        if (next == Token::EndOfString || next == Token::Comma) && op.is_none() {
            op = Some(Operator::Exists);
        }
        Ok((lit, op))
    }

    fn parse_operator(&mut self) -> Result<Operator> {
        let (tok, lit) = self.consume(Context::KeyAndOperator);
        Ok(match tok {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => return Err(invalid(format!("found '{lit}', expected: in, notin, =, ==, !=, gt, lt"))),
        })
    }

    fn parse_values(&mut self) -> Result<Vec<String>> {
        let (tok, lit) = self.consume(Context::Values);
        if tok != Token::OpenPar {
            return Err(invalid(format!("found '{lit}' expected: '('")));
        }
        let (tok, lit) = self.lookahead(Context::Values);
        match tok {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                let (closing, _) = self.consume(Context::Values);
                if closing != Token::ClosedPar {
                    // kube reports the literal seen after '(' here, not the offending one.
                    return Err(invalid(format!("found '{lit}', expected: ')'")));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(invalid(format!("found '{lit}', expected: ',', ')' or identifier"))),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<Vec<String>> {
        let mut values: Vec<String> = Vec::new();
        loop {
            let (tok, lit) = self.consume(Context::Values);
            match tok {
                Token::Identifier => {
                    values.push(lit);
                    let (tok2, lit2) = self.lookahead(Context::Values);
                    match tok2 {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(values),
                        _ => return Err(invalid(format!("found '{lit2}', expected: ',' or ')'"))),
                    }
                }
                Token::Comma => {
                    // `(,a`, `a,)` and `a,,b` each contribute an empty value.
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    let (tok2, _) = self.lookahead(Context::Values);
                    if tok2 == Token::ClosedPar {
                        values.push(String::new());
                        return Ok(values);
                    }
                    if tok2 == Token::Comma {
                        values.push(String::new());
                    }
                }
                _ => return Err(invalid(format!("found '{lit}', expected: ',', or identifier"))),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>> {
        let (tok, _) = self.lookahead(Context::Values);
        if tok == Token::EndOfString || tok == Token::Comma {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.consume(Context::Values);
        if tok == Token::Identifier {
            return Ok(vec![lit]);
        }
        Err(invalid(format!("found '{lit}', expected: identifier")))
    }
}

// =======================================================================================
// Field selectors

/// A field selector term's operator. `=` and `==` mean the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOperator {
    Equals,
    NotEquals,
}

/// One `field=value` / `field!=value` term, with the value unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldTerm {
    pub field: String,
    pub operator: FieldOperator,
    pub value: String,
}

/// A field selector: the AND of its terms. The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    /// Parses kube's field selector syntax (kube's `fields.ParseSelector`): terms split on
    /// unescaped `,`, each `field=value`, `field==value` or `field!=value` at the first
    /// operator; in values `\\`, `\,` and `\=` stand for `\`, `,` and `=`. No whitespace is
    /// trimmed. Terms are kept sorted by their text, as kube does.
    pub fn parse(selector: &str) -> Result<Self> {
        let mut parts = split_terms(selector);
        parts.sort_unstable();
        let mut terms = Vec::new();
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((field, operator, raw)) = split_term(part) else {
                return Err(SelectorError::InvalidFieldTerm { selector: selector.to_string(), term: part.to_string() });
            };
            terms.push(FieldTerm { field: field.to_string(), operator, value: unescape_value(raw)? });
        }
        Ok(Self { terms })
    }

    /// A one-term `field=value` selector.
    pub fn equals(field: &str, value: &str) -> Self {
        Self { terms: vec![FieldTerm { field: field.into(), operator: FieldOperator::Equals, value: value.into() }] }
    }

    pub fn terms(&self) -> &[FieldTerm] {
        &self.terms
    }

    pub fn is_everything(&self) -> bool {
        self.terms.is_empty()
    }

    /// The value `field` must equal for any match, if a term pins it (e.g.
    /// `metadata.name`, to turn a list into a get).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == field && t.operator == FieldOperator::Equals)
            .map(|t| t.value.as_str())
    }

    /// Refuses a selector naming a field `resource` (plural, e.g. `pods`) does not support,
    /// with `field label not supported: <field>` (first such term, in sorted order).
    pub fn check_supported(&self, resource: &str) -> Result<()> {
        let fields = supported_fields(resource);
        match self.terms.iter().find(|t| !fields.contains(&t.field.as_str())) {
            Some(t) => Err(SelectorError::FieldNotSupported { field: t.field.clone() }),
            None => Ok(()),
        }
    }

    /// Whether `obj`, an object of `resource`, satisfies every term. Fields absent from the
    /// object compare as `""`. Fails like [`FieldSelector::check_supported`].
    pub fn matches(&self, obj: &Value, resource: &str) -> Result<bool> {
        self.check_supported(resource)?;
        Ok(self.terms.iter().all(|t| {
            let actual = field_value(obj, resource, &t.field).unwrap_or_default();
            match t.operator {
                FieldOperator::Equals => actual == t.value,
                FieldOperator::NotEquals => actual != t.value,
            }
        }))
    }
}

/// kube's `Selector.String()`: `field=value` / `field!=value` with values escaped, joined
/// with `,`.
impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match t.operator {
                FieldOperator::Equals => "=",
                FieldOperator::NotEquals => "!=",
            };
            write!(f, "{}{op}{}", t.field, escape_value(&t.value))?;
        }
        Ok(())
    }
}

/// Escapes `\`, `,` and `=` in a field selector value (kube's `fields.EscapeValue`).
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// kube's `fields.UnescapeValue`.
pub fn unescape_value(value: &str) -> Result<String> {
    if !value.contains(['\\', ',', '=']) {
        return Ok(value.to_string());
    }
    let mut out = String::with_capacity(value.len());
    let mut in_slash = false;
    for c in value.chars() {
        if in_slash {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(SelectorError::InvalidEscapeSequence { sequence: format!("\\{c}") });
            }
            out.push(c);
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return Err(SelectorError::UnescapedCharacter { character: c }),
            c => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError::InvalidEscapeSequence { sequence: "\\".into() });
    }
    Ok(out)
}

/// Splits on commas not preceded by a backslash escape.
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in selector.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Finds the first position where `!=`, `==` or `=` starts.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, kind) in [("!=", FieldOperator::NotEquals), ("==", FieldOperator::Equals), ("=", FieldOperator::Equals)] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], kind, value));
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------------------
// Per-resource selectable fields (kube-apiserver's registries' GetAttrs).

const COMMON_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];
const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];
const EVENT_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];
const SECRET_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "type"];
const NAMESPACE_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "status.phase"];
const NODE_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "spec.unschedulable"];
const REPLICAS_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "status.replicas"];
const JOB_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "status.successful"];
const CSR_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "spec.signerName"];

/// The fields a field selector may name for `resource` (plural, lower-case: `pods`).
/// Every resource, custom ones included, supports `metadata.name` and `metadata.namespace`.
pub fn supported_fields(resource: &str) -> &'static [&'static str] {
    match resource {
        "pods" => POD_FIELDS,
        "events" => EVENT_FIELDS,
        "secrets" => SECRET_FIELDS,
        "namespaces" => NAMESPACE_FIELDS,
        "nodes" => NODE_FIELDS,
        "replicasets" | "replicationcontrollers" => REPLICAS_FIELDS,
        "jobs" => JOB_FIELDS,
        "certificatesigningrequests" => CSR_FIELDS,
        _ => COMMON_FIELDS,
    }
}

/// The value a field selector compares for `field` of `obj`, rendered as kube renders it
/// (`true`/`false` for booleans, decimal integers); `None` when the object lacks it.
/// Assumes `field` is supported for `resource`.
pub fn field_value(obj: &Value, resource: &str, field: &str) -> Option<String> {
    let pointer = match (resource, field) {
        (_, "metadata.name") => "/metadata/name",
        (_, "metadata.namespace") => "/metadata/namespace",
        // A pod's IP is its first podIPs entry, which kube keeps in status.podIP.
        ("pods", "status.podIP") => {
            return obj
                .pointer("/status/podIP")
                .or_else(|| obj.pointer("/status/podIPs/0/ip"))
                .and_then(render_scalar)
        }
        ("pods", "spec.hostNetwork") | ("nodes", "spec.unschedulable") => {
            // Booleans default to false: an absent flag matches `=false`.
            let p = format!("/{}", field.replace('.', "/"));
            return Some(obj.pointer(&p).and_then(Value::as_bool).unwrap_or(false).to_string());
        }
        ("replicasets" | "replicationcontrollers", "status.replicas") | ("jobs", "status.successful") => {
            let p = format!("/{}", field.replace('.', "/"));
            return Some(obj.pointer(&p).and_then(Value::as_i64).unwrap_or(0).to_string());
        }
        ("events", "source") => "/source/component",
        ("events", "reportingComponent") => "/reportingComponent",
        _ => {
            let p = format!("/{}", field.replace('.', "/"));
            return obj.pointer(&p).and_then(render_scalar);
        }
    };
    obj.pointer(pointer).and_then(render_scalar)
}

fn render_scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
