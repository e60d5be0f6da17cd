//! What `compare` and `failover` share around their measurements: the results dir's JSON
//! (measured, or read back with `--render-only`), the settings line of their tables, and
//! the tables' place in a markdown file between two markers (`--update-doc`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// How the results JSON is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonStyle {
    /// One line: for results made mostly of plot points.
    Compact,
    Pretty,
}

/// Creates `out`; with `render_only` reads `out/name` back, else measures and writes it.
pub fn load_or_measure<T: Serialize + DeserializeOwned>(
    out: &Path,
    name: &str,
    render_only: bool,
    style: JsonStyle,
    measure: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let json_path = out.join(name);
    if render_only {
        let text = std::fs::read_to_string(&json_path)
            .with_context(|| format!("reading {}", json_path.display()))?;
        return serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", json_path.display()));
    }
    let results = measure()?;
    let text = match style {
        JsonStyle::Compact => serde_json::to_string(&results)?,
        JsonStyle::Pretty => serde_json::to_string_pretty(&results)?,
    };
    std::fs::write(&json_path, text + "\n")?;
    Ok(results)
}

/// The settings of a run, by name.
pub fn settings<const N: usize>(pairs: [(&str, String); N]) -> BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// `Settings: k=v, k=v.` and a blank line, the first line of every table.
pub fn settings_line(settings: &BTreeMap<String, String>) -> String {
    let settings: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("Settings: {}.\n\n", settings.join(", "))
}

/// Replaces the text between `begin` and `end` in `doc` with `markdown`.
pub fn update_doc(doc: &Path, begin: &str, end: &str, markdown: &str) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(doc).with_context(|| format!("reading {}", doc.display()))?;
    let replaced = replace_between(&text, begin, end, markdown)
        .with_context(|| format!("{} has no {begin} … {end} markers", doc.display()))?;
    std::fs::write(doc, replaced).with_context(|| format!("writing {}", doc.display()))
}

fn replace_between(text: &str, begin: &str, end: &str, body: &str) -> Option<String> {
    let body_start = text.find(begin)? + begin.len();
    let body_end = body_start + text[body_start..].find(end)?;
    Some(format!(
        "{}\n{}\n{}",
        &text[..body_start],
        body.trim_end(),
        &text[body_end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_tables_are_replaced_between_markers() {
        let (begin, end) = ("<!-- x:begin -->", "<!-- x:end -->");
        let doc = format!("# B\n{begin}\nold\n{end}\ntail\n");
        assert_eq!(
            replace_between(&doc, begin, end, "new table\n").unwrap(),
            format!("# B\n{begin}\nnew table\n{end}\ntail\n")
        );
        assert!(replace_between("no markers", begin, end, "x").is_none());
    }

    #[test]
    fn settings_are_listed_in_name_order() {
        let s = settings([("b", "2".to_string()), ("a", "1".to_string())]);
        assert_eq!(settings_line(&s), "Settings: a=1, b=2.\n\n");
    }
}
