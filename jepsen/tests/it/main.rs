//! skiff-jepsen's integration tests: one binary (see the house style).

mod sim;
mod netns;
mod lazyfs;
