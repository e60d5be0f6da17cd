//! Sequential specifications that the linearizability checker replays operations against.
//!
//! A model is a pure function from (state, operation) to the next state, or `None` when
//! the operation could not have happened in that state (a read that saw another value, a
//! cas whose expected value differs). States are values: the checker clones, hashes and
//! compares them to memoize configurations, so keep them small.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;

use crate::history::{Function, Key, Operation, Value};

/// A sequential object.
pub trait Model {
    type State: Clone + Eq + Hash + Debug;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Applies a successful (or possibly-applied) operation; `None` if it is impossible here.
    /// Called only with operations whose outcome is `ok` or `info`: a `fail` never happened.
    fn step(&self, state: &Self::State, op: &Operation) -> Option<Self::State>;

    /// Operations with different partition keys commute and never observe each other, so
    /// each partition's sub-history can be checked on its own. `None` (the default): one
    /// partition for everything.
    fn partition_key(&self, _op: &Operation) -> Option<Key> {
        None
    }
}

/// One register holding an integer, initially empty (`nil`): read, write, compare-and-set.
/// Keys in the operations are ignored.
#[derive(Clone, Copy, Debug, Default)]
pub struct Register;

/// The register's content: `None` until the first write.
pub type RegisterState = Option<i64>;

fn register_step(state: RegisterState, op: &Operation) -> Option<RegisterState> {
    match (op.f, op.value) {
        (Function::Read, Value::Nil) => (state.is_none()).then_some(state),
        (Function::Read, Value::Int(seen)) => (state == Some(seen)).then_some(state),
        (Function::Write, Value::Int(new)) => Some(Some(new)),
        (Function::Cas, Value::Pair(expected, new)) => {
            (state == Some(expected)).then_some(Some(new))
        }
        // A malformed operation can never be linearized; the evidence will name it.
        _ => None,
    }
}

impl Model for Register {
    type State = RegisterState;

    fn init(&self) -> RegisterState {
        None
    }

    fn step(&self, state: &RegisterState, op: &Operation) -> Option<RegisterState> {
        register_step(*state, op)
    }
}

/// A map of independent registers, one per key (an operation without a key uses the key
/// `""`). Partitioned by key, so the checker looks at one key's sub-history at a time and
/// the state it memoizes holds a single entry.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvRegister;

impl Model for KvRegister {
    /// Only keys that were written appear; an absent key reads as `nil`.
    type State = BTreeMap<Key, i64>;

    fn init(&self) -> Self::State {
        BTreeMap::new()
    }

    fn step(&self, state: &Self::State, op: &Operation) -> Option<Self::State> {
        let key = op.key.as_deref().unwrap_or("");
        let current = state.get(key).copied();
        let next = register_step(current, op)?;
        if next == current {
            return Some(state.clone());
        }
        let mut state = state.clone();
        match next {
            Some(value) => state.insert(key.to_owned(), value),
            None => state.remove(key),
        };
        Some(state)
    }

    fn partition_key(&self, op: &Operation) -> Option<Key> {
        Some(op.key.clone().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::OpKind;

    fn op(f: Function, key: Option<&str>, value: Value) -> Operation {
        Operation {
            id: 0,
            process: 0,
            f,
            key: key.map(str::to_owned),
            value,
            outcome: OpKind::Ok,
            invoke_index: 0,
            complete_index: Some(1),
        }
    }

    #[test]
    fn register_reads_writes_and_cas() {
        let r = Register;
        let s = r.init();
        assert_eq!(
            r.step(&s, &op(Function::Read, None, Value::Nil)),
            Some(None)
        );
        assert_eq!(r.step(&s, &op(Function::Read, None, Value::Int(1))), None);
        let s = r
            .step(&s, &op(Function::Write, None, Value::Int(1)))
            .unwrap();
        assert_eq!(s, Some(1));
        assert_eq!(
            r.step(&s, &op(Function::Cas, None, Value::Pair(2, 3))),
            None
        );
        assert_eq!(
            r.step(&s, &op(Function::Cas, None, Value::Pair(1, 3))),
            Some(Some(3))
        );
        assert_eq!(
            r.step(&s, &op(Function::Write, None, Value::Pair(1, 3))),
            None,
            "malformed"
        );
    }

    #[test]
    fn kv_register_keeps_keys_apart() {
        let m = KvRegister;
        let s = m
            .step(&m.init(), &op(Function::Write, Some("a"), Value::Int(1)))
            .unwrap();
        assert_eq!(
            m.step(&s, &op(Function::Read, Some("b"), Value::Nil)),
            Some(s.clone())
        );
        assert_eq!(
            m.step(&s, &op(Function::Read, Some("a"), Value::Int(1))),
            Some(s.clone())
        );
        assert_eq!(
            m.step(&s, &op(Function::Read, Some("b"), Value::Int(1))),
            None
        );
        assert_eq!(
            m.partition_key(&op(Function::Read, Some("b"), Value::Nil)),
            Some("b".to_owned())
        );
    }
}
