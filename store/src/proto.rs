//! etcd wire types (generated).
