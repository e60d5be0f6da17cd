//! skiff-jepsen
