//! Differential tests: run one etcdctl script against a fresh reference etcd and a fresh
//! skiff store, normalize what legitimately differs, and compare the transcripts.
//!
//! # Script format (`tests/it/scripts/*.txt`)
//!
//! One etcdctl invocation per line, without `etcdctl` and without `--endpoints` (the
//! harness adds them). Blank lines and lines starting with `#` are skipped. Words split
//! like a shell would: `'single'` and `"double"` quotes, `\` escapes outside single quotes.
//!
//! - `txn <<EOF` ... `EOF`: the lines in between are etcdctl's stdin, verbatim. Inside, a
//!   line `@repeat N <text>` stands for N lines with `{i}` replaced by 0..N.
//! - `@watch-for 1.5s watch --rev=1 foo`: run the command for that long, then kill it; the
//!   output printed until then is the result (etcdctl prints each event as it arrives).
//! - `$LEASE1`, `$LEASE2`, ...: the hex ID of the 1st, 2nd, ... lease granted by a
//!   `lease grant` earlier in the script, on that server.
//! - `$TMP`: a scratch directory of the server under test.
//!
//! # Normalizations (see [`Normalizer`])
//!
//! Both sides are rewritten before comparison, so each rule must be stable etcd-vs-etcd
//! (`etcd_vs_etcd_is_stable`) and must not hide a real difference:
//!
//! - cluster ID and member ID (learned from `member list -w json` at startup), in decimal
//!   and hex, become `<CLUSTER_ID>` / `<MEMBER_ID>`;
//! - lease IDs become `<LEASE1>`, `<LEASE2>`, ... in order of grant (decimal and hex);
//! - `127.0.0.1:<port>` becomes `<CLIENT_ADDR>` / `<PEER_ADDR>`; the scratch dir `<TMP>`;
//! - raft term, raft index, applied index, db sizes, server version, hashes, and the
//!   remaining TTL of a lease become placeholders; revisions are *not* normalized;
//! - the keys attached to a lease (`lease timetolive --keys`) are sorted: etcd's order is
//!   a Go map's;
//! - etcdctl's own JSON log lines on stderr keep only `level`, `msg` and `error` (timestamps,
//!   client UUIDs, durations and sizes go).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use regex::Regex;

use crate::harness::{scripts_dir, Output, RunningServer, Server};

/// Every script in `tests/it/scripts/`, each with its own `skiff_matches_etcd_<name>` test.
/// `etcd_vs_etcd_is_stable` fails if a script file is missing from this list.
const SCRIPTS: &[&str] = &[
    "kv",
    "get_flags",
    "txn",
    "lease",
    "watch",
    "maintenance",
    "errors",
];

/// Longest `@watch-for` a script may ask for: scripts stay quick.
const WATCH_FOR_MAX: Duration = Duration::from_secs(10);
/// Largest `@repeat` count, to keep a typo from generating a huge stdin.
const REPEAT_MAX: usize = 10_000;
/// Mismatching commands shown in full in a failure message.
const MISMATCHES_SHOWN_MAX: usize = 20;
/// Scripts running at once in this process (each runs two servers and etcdctl). `@watch-for`
/// bounds are wall-clock, so an overloaded machine could cut a watch short; the test
/// machines have 2 cores.
const CONCURRENT_SCRIPTS_MAX: usize = 2;

static RUNNING_SCRIPTS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// A slot among [`CONCURRENT_SCRIPTS_MAX`], released on drop.
struct ScriptPermit;

impl ScriptPermit {
    fn acquire() -> ScriptPermit {
        let (count, freed) = &RUNNING_SCRIPTS;
        let mut running = count.lock().unwrap_or_else(|e| e.into_inner());
        while *running >= CONCURRENT_SCRIPTS_MAX {
            running = freed.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        *running += 1;
        ScriptPermit
    }
}

impl Drop for ScriptPermit {
    fn drop(&mut self) {
        let (count, freed) = &RUNNING_SCRIPTS;
        *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        freed.notify_one();
    }
}

// ---- script parsing ----

#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// An etcdctl run that is expected to exit by itself.
    Run {
        line: usize,
        source: String,
        stdin: Option<String>,
    },
    /// An etcdctl run killed after `duration`.
    RunFor {
        line: usize,
        source: String,
        duration: Duration,
    },
}

impl Step {
    fn source(&self) -> &str {
        match self {
            Step::Run { source, .. } | Step::RunFor { source, .. } => source,
        }
    }
    fn line(&self) -> usize {
        match self {
            Step::Run { line, .. } | Step::RunFor { line, .. } => *line,
        }
    }
}

fn parse_script(text: &str) -> anyhow::Result<Vec<Step>> {
    let mut steps = Vec::new();
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    while let Some((line, raw)) = lines.next() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("@watch-for ") {
            let (duration, command) = rest
                .trim()
                .split_once(' ')
                .context("@watch-for needs a duration and a command")?;
            let duration = humantime::parse_duration(duration)
                .with_context(|| format!("line {line}: bad duration"))?;
            if duration > WATCH_FOR_MAX {
                bail!("line {line}: @watch-for {duration:?} exceeds {WATCH_FOR_MAX:?}");
            }
            steps.push(Step::RunFor {
                line,
                source: command.trim().to_string(),
                duration,
            });
        } else if trimmed.starts_with('@') {
            bail!("line {line}: unknown directive {trimmed:?}");
        } else if let Some(command) = trimmed.strip_suffix("<<EOF") {
            let mut stdin = String::new();
            loop {
                let (_, body) = lines
                    .next()
                    .with_context(|| format!("line {line}: heredoc without EOF"))?;
                if body.trim() == "EOF" {
                    break;
                }
                expand_heredoc_line(body, &mut stdin)
                    .with_context(|| format!("heredoc of line {line}"))?;
            }
            steps.push(Step::Run {
                line,
                source: command.trim().to_string(),
                stdin: Some(stdin),
            });
        } else {
            steps.push(Step::Run {
                line,
                source: trimmed.to_string(),
                stdin: None,
            });
        }
    }
    Ok(steps)
}

fn expand_heredoc_line(body: &str, stdin: &mut String) -> anyhow::Result<()> {
    if let Some(rest) = body.trim().strip_prefix("@repeat ") {
        let (count, template) = rest
            .split_once(' ')
            .context("@repeat needs a count and a line")?;
        let count: usize = count.parse().context("@repeat count")?;
        if count > REPEAT_MAX {
            bail!("@repeat {count} exceeds {REPEAT_MAX}");
        }
        for i in 0..count {
            stdin.push_str(&template.replace("{i}", &i.to_string()));
            stdin.push('\n');
        }
    } else {
        stdin.push_str(body);
        stdin.push('\n');
    }
    Ok(())
}

/// Splits a command line into words like a POSIX shell (quotes and backslashes only).
fn split_words(line: &str) -> anyhow::Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => bail!("unterminated ' in {line:?}"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => word.push(chars.next().context("trailing \\")?),
                        Some(c) => word.push(c),
                        None => bail!("unterminated \" in {line:?}"),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next().context("trailing \\")?);
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

// ---- normalization ----

/// Rewrites one server's output so that it can be compared with another server's.
struct Normalizer {
    /// Literal replacements, longest first so that no replacement eats part of another.
    literals: Vec<(String, String)>,
    /// Hex IDs of granted leases, in grant order (`$LEASE1` is `leases[0]`).
    leases: Vec<i64>,
    rules: Vec<(Regex, &'static str)>,
    /// Digits-only tokens (decimal IDs) -> placeholder; matched on whole numbers only.
    numbers: BTreeMap<String, String>,
    number_token: Regex,
    log_line: Regex,
    lease_keys_text: Regex,
    lease_keys_json: Regex,
}

impl Normalizer {
    fn new(server: &RunningServer) -> anyhow::Result<Normalizer> {
        let mut n = Normalizer {
            literals: Vec::new(),
            leases: Vec::new(),
            rules: Vec::new(),
            numbers: BTreeMap::new(),
            number_token: Regex::new(r"\b[0-9a-f]{1,20}\b")?,
            log_line: Regex::new(r#"^\{"level":"#)?,
            lease_keys_text: Regex::new(r"attached keys\(\[([^\]]*)\]\)")?,
            lease_keys_json: Regex::new(r#""keys":\[([^\]]*)\]"#)?,
        };
        n.add_literal(format!("127.0.0.1:{}", server.client_port), "<CLIENT_ADDR>");
        n.add_literal(format!("127.0.0.1:{}", server.peer_port), "<PEER_ADDR>");
        n.add_literal(server.scratch_dir().display().to_string(), "<TMP>");

        // Best effort: if the server cannot list members, IDs stay raw and the diff shows it.
        let out = server.etcdctl(&["member", "list", "-w", "json"], None)?;
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(&out.stdout) {
            if let Some(id) = json["header"]["cluster_id"].as_u64() {
                n.add_id(id, "<CLUSTER_ID>");
            }
            if let Some(id) = json["header"]["member_id"].as_u64() {
                n.add_id(id, "<MEMBER_ID>");
            }
        }

        let rules: &[(&str, &'static str)] = &[
            // Raft state: implementation detail of how many entries bootstrap takes.
            (r#""raft_term":\d+"#, r#""raft_term":<TERM>"#),
            (r#""raftTerm":\d+"#, r#""raftTerm":<TERM>"#),
            (r#""RaftTerm" : \d+"#, r#""RaftTerm" : <TERM>"#),
            (r#""raftIndex":\d+"#, r#""raftIndex":<INDEX>"#),
            (r#""raftAppliedIndex":\d+"#, r#""raftAppliedIndex":<INDEX>"#),
            // Backend sizes and server version.
            (r#""dbSize":\d+"#, r#""dbSize":<SIZE>"#),
            (r#""dbSizeInUse":\d+"#, r#""dbSizeInUse":<SIZE>"#),
            (r#""dbSizeQuota":\d+"#, r#""dbSizeQuota":<SIZE>"#),
            (r#""version":"[^"]*""#, r#""version":"<VERSION>""#),
            (
                r#""storageVersion":"[^"]*""#,
                r#""storageVersion":"<VERSION>""#,
            ),
            // Latencies.
            (r#""took":"[^"]*""#, r#""took":"<DURATION>""#),
            (r"took = \S+", "took = <DURATION>"),
            // Hashes depend on the backend's layout.
            (r#""hash":\d+"#, r#""hash":<HASH>"#),
            // Remaining TTL depends on when the second ticked; the granted TTL stays, and
            // so does -1 (expired or unknown lease), which is not a matter of timing.
            (r"remaining\(\d+s\)", "remaining(<TTL>s)"),
            (r#""ttl":\d+,"granted-ttl""#, r#""ttl":<TTL>,"granted-ttl""#),
        ];
        for (pattern, replacement) in rules {
            n.rules.push((Regex::new(pattern)?, replacement));
        }
        Ok(n)
    }

    fn add_literal(&mut self, from: String, to: &str) {
        self.literals.push((from, to.to_string()));
        self.literals
            .sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
    }

    /// An ID appears in decimal (JSON), `%016x` (leases) and `%x` (member list). Lease IDs
    /// are int64 on the wire but etcd keeps them positive, so one decimal form suffices.
    fn add_id(&mut self, id: u64, placeholder: &str) {
        self.numbers.insert(id.to_string(), placeholder.to_string());
        self.numbers
            .insert(format!("{id:016x}"), placeholder.to_string());
        self.numbers
            .insert(format!("{id:x}"), placeholder.to_string());
    }

    /// Learns lease IDs from the output of a `lease grant`.
    fn observe_grant(&mut self, stdout: &str) {
        let text_form = Regex::new(r"lease ([0-9a-f]+) granted").expect("static regex");
        let json_form = Regex::new(r#""ID":(-?\d+)"#).expect("static regex");
        let id = if let Some(c) = text_form.captures(stdout) {
            u64::from_str_radix(&c[1], 16).ok().map(|id| id as i64)
        } else {
            json_form
                .captures(stdout)
                .and_then(|c| c[1].parse::<i64>().ok())
        };
        if let Some(id) = id {
            self.leases.push(id);
            let placeholder = format!("<LEASE{}>", self.leases.len());
            self.add_id(id as u64, &placeholder);
        }
    }

    /// Substitutes `$LEASEn` and `$TMP` in a script line.
    fn expand(&self, source: &str, scratch: &str) -> String {
        let vars = Regex::new(r"\$(LEASE(\d+)|TMP)").expect("static regex");
        vars.replace_all(source, |c: &regex::Captures| {
            if &c[1] == "TMP" {
                return scratch.to_string();
            }
            let n: usize = c[2].parse().unwrap_or(0);
            match n.checked_sub(1).and_then(|i| self.leases.get(i)) {
                Some(id) => format!("{:x}", *id as u64),
                // Left as is: etcdctl rejects it, and the transcript shows why.
                None => c[0].to_string(),
            }
        })
        .into_owned()
    }

    fn line(&self, line: &str) -> String {
        let mut line = line.trim_end().to_string();
        // etcd keeps a lease's keys in a Go map: their order is unspecified, so sort them.
        line = self
            .lease_keys_text
            .replace_all(&line, |c: &regex::Captures| {
                let mut keys: Vec<&str> = c[1].split(' ').collect();
                keys.sort_unstable();
                format!("attached keys([{}])", keys.join(" "))
            })
            .into_owned();
        line = self
            .lease_keys_json
            .replace_all(&line, |c: &regex::Captures| {
                let mut keys: Vec<&str> = c[1].split(',').collect();
                keys.sort_unstable();
                format!(r#""keys":[{}]"#, keys.join(","))
            })
            .into_owned();
        for (from, to) in &self.literals {
            line = line.replace(from.as_str(), to);
        }
        for (re, to) in &self.rules {
            line = re.replace_all(&line, *to).into_owned();
        }
        // Replace whole decimal/hex tokens that are known IDs. Collisions with ordinary
        // numbers are implausible: IDs are 64-bit random-looking values.
        self.number_token
            .replace_all(&line, |c: &regex::Captures| {
                self.numbers
                    .get(&c[0])
                    .cloned()
                    .unwrap_or_else(|| c[0].to_string())
            })
            .into_owned()
    }

    /// etcdctl (3.4) logs through zap as JSON on stderr; keep what a user would act on.
    fn stderr_line(&self, line: &str) -> String {
        if self.log_line.is_match(line) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                let mut out = format!(
                    "log {}: {}",
                    v["level"].as_str().unwrap_or("?"),
                    v["msg"].as_str().unwrap_or("?")
                );
                if let Some(error) = v["error"].as_str() {
                    write!(out, " error={error}").expect("writing to a String");
                }
                return self.line(&out);
            }
        }
        self.line(line)
    }

    fn transcript(&self, source: &str, out: &Output) -> Vec<String> {
        let mut lines = vec![format!("$ {source}")];
        lines.extend(out.stdout.lines().map(|l| self.line(l)));
        lines.extend(
            out.stderr
                .lines()
                .map(|l| format!("[stderr] {}", self.stderr_line(l))),
        );
        lines.push(match out.code {
            Some(code) => format!("[exit {code}]"),
            None => "[killed]".to_string(),
        });
        lines
    }
}

// ---- running ----

/// One command's normalized transcript.
#[derive(Debug)]
struct Block {
    line: usize,
    lines: Vec<String>,
}

fn run_script(server: &RunningServer, steps: &[Step]) -> anyhow::Result<Vec<Block>> {
    let mut normalizer = Normalizer::new(server)?;
    let scratch = server.scratch_dir().display().to_string();
    let mut blocks = Vec::new();
    for step in steps {
        let expanded = normalizer.expand(step.source(), &scratch);
        let args =
            split_words(&expanded).with_context(|| format!("script line {}", step.line()))?;
        let out = match step {
            Step::Run { stdin, .. } => server.etcdctl(&args, stdin.as_deref())?,
            Step::RunFor { duration, .. } => server.etcdctl_for(&args, *duration)?,
        };
        if args.len() >= 2 && args[0] == "lease" && args[1] == "grant" {
            normalizer.observe_grant(&out.stdout);
        }
        blocks.push(Block {
            line: step.line(),
            lines: normalizer.transcript(step.source(), &out),
        });
    }
    Ok(blocks)
}

fn load_script(name: &str) -> anyhow::Result<Vec<Step>> {
    let path = scripts_dir().join(format!("{name}.txt"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_script(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Runs `script` on a fresh `left` and a fresh `right` server and fails with a readable
/// report of every command whose normalized output differs.
fn must_match(script: &str, left: Server, right: Server) -> anyhow::Result<()> {
    let steps = load_script(script)?;
    let _permit = ScriptPermit::acquire();
    // Start both first so they run concurrently, each from a fresh data dir.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| left.start());
        let b = s.spawn(|| right.start());
        (
            a.join().expect("start thread panicked"),
            b.join().expect("start thread panicked"),
        )
    });
    let (a, b) = (a?, b?);
    let (left_blocks, right_blocks) = std::thread::scope(|s| {
        let l = s.spawn(|| run_script(&a, &steps));
        let r = s.spawn(|| run_script(&b, &steps));
        (
            l.join().expect("script thread panicked"),
            r.join().expect("script thread panicked"),
        )
    });
    let (left_blocks, right_blocks) = (left_blocks?, right_blocks?);
    let transcripts = save_transcripts(script, [(left, &left_blocks), (right, &right_blocks)])?;

    let mut report = String::new();
    let mut mismatches = 0;
    for (l, r) in left_blocks.iter().zip(&right_blocks) {
        if l.lines == r.lines {
            continue;
        }
        mismatches += 1;
        if mismatches > MISMATCHES_SHOWN_MAX {
            continue;
        }
        let first = l
            .lines
            .iter()
            .zip(&r.lines)
            .position(|(x, y)| x != y)
            .unwrap_or(l.lines.len().min(r.lines.len()));
        writeln!(
            report,
            "\n--- scripts/{script}.txt:{} (first difference at output line {first})",
            l.line
        )?;
        writeln!(report, "  {}:", left.name())?;
        for line in &l.lines {
            writeln!(report, "    {line}")?;
        }
        writeln!(report, "  {}:", right.name())?;
        for line in &r.lines {
            writeln!(report, "    {line}")?;
        }
    }
    if mismatches > 0 {
        if mismatches > MISMATCHES_SHOWN_MAX {
            writeln!(
                report,
                "\n... and {} more",
                mismatches - MISMATCHES_SHOWN_MAX
            )?;
        }
        bail!(
            "{mismatches} of {} commands in scripts/{script}.txt differ between {} and {}:{report}\n\
             full transcripts: {}\n\n{} log tail:\n{}",
            steps.len(),
            left.name(),
            right.name(),
            transcripts.display(),
            right.name(),
            b.log_tail()
        );
    }
    Ok(())
}

/// Writes both normalized transcripts under the cargo target dir, for reading and for
/// `diff`ing by hand; returns the directory.
fn save_transcripts(
    script: &str,
    sides: [(Server, &[Block]); 2],
) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("etcdctl_diff");
    std::fs::create_dir_all(&dir)?;
    let [(left, _), (right, _)] = sides;
    for (side, (server, blocks)) in ["left", "right"].into_iter().zip(sides) {
        let text: String = blocks
            .iter()
            .flat_map(|b| b.lines.iter())
            .map(|l| format!("{l}\n"))
            .collect();
        let name = format!(
            "{script}.{}-vs-{}.{side}-{}.txt",
            left.name(),
            right.name(),
            server.name()
        );
        std::fs::write(dir.join(name), text)?;
    }
    Ok(dir)
}

/// Real etcd against itself: proves every normalization is stable (a rule that leaves
/// something random behind fails here, not as a false skiff mismatch). Also keeps
/// [`SCRIPTS`] in sync with the files on disk.
#[test]
fn etcd_vs_etcd_is_stable() -> anyhow::Result<()> {
    let mut on_disk: Vec<String> = std::fs::read_dir(scripts_dir())?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".txt")
                .map(str::to_string)
        })
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = SCRIPTS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "every script needs an entry in SCRIPTS (and a skiff_matches_etcd_* test)"
    );

    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = SCRIPTS
            .iter()
            .map(|name| s.spawn(move || must_match(name, Server::Etcd, Server::Etcd)))
            .collect();
        handles
            .into_iter()
            .zip(SCRIPTS)
            .filter_map(
                |(h, name)| match h.join().expect("script thread panicked") {
                    Ok(()) => None,
                    Err(e) => Some(format!("{name}: {e:?}")),
                },
            )
            .collect()
    });
    if !failures.is_empty() {
        bail!(
            "etcd is not stable against itself after normalization:\n{}",
            failures.join("\n\n")
        );
    }
    Ok(())
}

macro_rules! skiff_matches_etcd {
    ($($test:ident => $script:literal),* $(,)?) => {$(
        #[test]
        fn $test() -> anyhow::Result<()> {
            must_match($script, Server::Etcd, Server::Skiff)
        }
    )*};
}

skiff_matches_etcd! {
    skiff_matches_etcd_kv => "kv",
    skiff_matches_etcd_get_flags => "get_flags",
    skiff_matches_etcd_txn => "txn",
    skiff_matches_etcd_lease => "lease",
    skiff_matches_etcd_watch => "watch",
    skiff_matches_etcd_maintenance => "maintenance",
    skiff_matches_etcd_errors => "errors",
}

#[test]
fn split_words_handles_quotes_and_escapes() {
    assert_eq!(
        split_words(r#"put "a b" 'c "d"' e\ f """#).unwrap(),
        vec!["put", "a b", "c \"d\"", "e f", ""]
    );
    assert!(split_words("put 'x").is_err());
}

#[test]
fn parse_script_reads_heredocs_and_directives() {
    let steps = parse_script("# c\n\nput a 1\ntxn <<EOF\nput x y\n@repeat 2 put k{i} v\n\nEOF\n@watch-for 1.5s watch a\n").unwrap();
    assert_eq!(
        steps,
        vec![
            Step::Run {
                line: 3,
                source: "put a 1".into(),
                stdin: None
            },
            Step::Run {
                line: 4,
                source: "txn".into(),
                stdin: Some("put x y\nput k0 v\nput k1 v\n\n".into())
            },
            Step::RunFor {
                line: 9,
                source: "watch a".into(),
                duration: Duration::from_millis(1500)
            },
        ]
    );
    assert!(parse_script("@sleep 1s").is_err());
    assert!(parse_script("txn <<EOF\nput a b\n").is_err());
}
