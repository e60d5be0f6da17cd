//! MVCC state machine on RocksDB.
pub mod types;
pub use types::*;
