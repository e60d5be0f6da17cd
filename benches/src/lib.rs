//! skiff-benches
