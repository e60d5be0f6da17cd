//! skiff-scheduler
