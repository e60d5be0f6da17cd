//! WAL
