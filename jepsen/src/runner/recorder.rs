//! The recorder: every client's invocations and completions go through one lock that
//! stamps them with the next history index and a monotonic time, appends them to the
//! in-memory [`History`] and streams them to `history.jsonl` (so an aborted run still
//! leaves the history up to that point on disk).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;

use crate::history::{Function, History, Op, OpKind, ProcessId, Value};

/// Distinct error messages remembered for the summary; past this, errors are counted
/// under one "other" line so a run that fails in a million ways stays bounded.
const ERROR_KINDS_MAX: usize = 64;

/// Live counts for the progress bar.
#[derive(Debug, Default)]
pub struct Counters {
    pub ok: AtomicU64,
    pub fail: AtomicU64,
    pub info: AtomicU64,
}

struct Inner {
    history: History,
    out: Option<BufWriter<File>>,
    /// Error message (as recorded by the client) → how many completions carried it.
    errors: BTreeMap<String, u64>,
}

pub struct Recorder {
    start: Instant,
    inner: Mutex<Inner>,
    pub counters: Counters,
}

impl Recorder {
    /// A recorder whose times count from `start`; with `path`, it streams `history.jsonl`.
    pub fn new(start: Instant, path: Option<&Path>) -> anyhow::Result<Recorder> {
        let out = match path {
            Some(p) => Some(BufWriter::new(
                File::create(p).with_context(|| format!("creating {}", p.display()))?,
            )),
            None => None,
        };
        Ok(Recorder {
            start,
            inner: Mutex::new(Inner {
                history: History::new(),
                out,
                errors: BTreeMap::new(),
            }),
            counters: Counters::default(),
        })
    }

    /// Nanoseconds since the start of the run (the history's clock).
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub fn invoke(&self, process: ProcessId, f: Function, key: Option<&str>, value: Value) {
        self.record(process, OpKind::Invoke, f, key, value, None);
    }

    /// Records a completion; `error` is the client's error, if any (kept for the summary).
    pub fn complete(
        &self,
        process: ProcessId,
        kind: OpKind,
        f: Function,
        key: Option<&str>,
        value: Value,
        error: Option<&str>,
    ) {
        let counter = match kind {
            OpKind::Ok => &self.counters.ok,
            OpKind::Fail => &self.counters.fail,
            OpKind::Info | OpKind::Invoke => &self.counters.info,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.record(process, kind, f, key, value, error);
    }

    fn record(
        &self,
        process: ProcessId,
        kind: OpKind,
        f: Function,
        key: Option<&str>,
        value: Value,
        error: Option<&str>,
    ) {
        let mut inner = self.inner.lock().expect("recorder lock poisoned");
        // Taken under the lock: times follow the line order, as the history requires.
        let time_ns = self.now_ns();
        let op = Op {
            index: inner.history.len(),
            process,
            kind,
            f,
            key: key.map(str::to_owned),
            value,
            time_ns,
        };
        if let Some(out) = inner.out.as_mut() {
            // A write error loses only the streamed copy; the history in memory is whole
            // and is written again at the end.
            let _ = serde_json::to_writer(&mut *out, &op).map_err(std::io::Error::from);
            let _ = out.write_all(b"\n");
        }
        inner
            .history
            .push(op)
            .expect("the recorder assigns consecutive indices and monotonic times");
        if let Some(message) = error {
            count_error(&mut inner.errors, message);
        }
    }

    /// Counts a client error of an operation recorded elsewhere (the append workload's
    /// transaction history), for the summary's error counts.
    pub fn note_error(&self, message: &str) {
        let mut inner = self.inner.lock().expect("recorder lock poisoned");
        count_error(&mut inner.errors, message);
    }

    /// Ends the recording: flushes the stream and hands back the history and error counts.
    pub fn finish(&self) -> anyhow::Result<(History, BTreeMap<String, u64>)> {
        let mut inner = self.inner.lock().expect("recorder lock poisoned");
        if let Some(mut out) = inner.out.take() {
            out.flush().context("flushing history.jsonl")?;
        }
        Ok((
            std::mem::take(&mut inner.history),
            std::mem::take(&mut inner.errors),
        ))
    }
}

fn count_error(errors: &mut BTreeMap<String, u64>, message: &str) {
    let known = errors.len();
    let slot = if known < ERROR_KINDS_MAX || errors.contains_key(message) {
        message.to_owned()
    } else {
        "(other errors)".to_owned()
    };
    *errors.entry(slot).or_default() += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_the_same_history_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let recorder = Recorder::new(Instant::now(), Some(&path)).unwrap();
        recorder.invoke(0, Function::Write, Some("k"), Value::Int(1));
        recorder.invoke(1, Function::Read, Some("k"), Value::Nil);
        recorder.complete(
            0,
            OpKind::Info,
            Function::Write,
            Some("k"),
            Value::Int(1),
            Some("timeout"),
        );
        recorder.complete(
            1,
            OpKind::Ok,
            Function::Read,
            Some("k"),
            Value::Int(1),
            None,
        );
        let (history, errors) = recorder.finish().unwrap();
        assert_eq!(history.len(), 4);
        assert_eq!(errors.get("timeout"), Some(&1));
        assert_eq!(recorder.counters.info.load(Ordering::Relaxed), 1);
        let on_disk =
            History::read_jsonl(std::io::BufReader::new(File::open(&path).unwrap())).unwrap();
        assert_eq!(on_disk, history);
    }
}
