//! Every error the store returns to clients, with etcd's exact gRPC code and message.
//!
//! Clients (etcdctl, client-go's `rpctypes`, the Rust `etcd-client`) match these messages
//! byte for byte to tell, for example, a compacted revision from a lost leader, so this is
//! the one place where they are written. Internal errors from other modules are converted
//! here (`From` impls) and nowhere else.

use tonic::{Code, Status};

/// A store error as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExist,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: watch canceled")]
    WatchCanceled,
    #[error("etcdserver: member ID already exist")]
    MemberExist,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExist,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    MemberNotEnoughStarted,
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    #[error("etcdserver: request timed out, possibly due to previous leader failure")]
    TimeoutDueToLeaderFail,
    #[error("etcdserver: request timed out, leader transfer took too long")]
    TimeoutLeaderTransfer,
    #[error("etcdserver: the member has been permanently removed from the cluster")]
    MemberRemoved,
    #[error("etcdserver: rpc not supported for learner")]
    NotSupportedForLearner,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    /// An RPC that exists in etcd's API but that Skiff does not serve yet. Never a silent
    /// success: the client learns exactly what is missing.
    #[error("skiff: {0} is not implemented yet")]
    Unimplemented(&'static str),
    /// A storage or invariant failure inside the server; the message says what failed.
    #[error("etcdserver: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// etcd's gRPC status code for this error (`api/v3rpc/rpctypes/error.go`).
    pub fn code(&self) -> Code {
        use Error::*;
        match self {
            EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey
            | InvalidSortOption | RequestTooLarge => Code::InvalidArgument,
            Compacted | FutureRev | LeaseTtlTooLarge => Code::OutOfRange,
            NoSpace | TooManyRequests => Code::ResourceExhausted,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            LeaseExist | NotLeader | BadLeaderTransferee | AuthNotEnabled | MemberExist | PeerUrlExist
            | MemberNotEnoughStarted | MemberNotLearner | LearnerNotReady | TooManyLearners | MemberRemoved => {
                Code::FailedPrecondition
            }
            MemberBadUrls => Code::InvalidArgument,
            Unhealthy | TimeoutDueToLeaderFail | TimeoutLeaderTransfer | NotSupportedForLearner => Code::Unavailable,
            WatchCanceled => Code::Cancelled,
            NoLeader | LeaderChanged | Stopped | Timeout => Code::Unavailable,
            Corrupt => Code::DataLoss,
            Unimplemented(_) => Code::Unimplemented,
            Internal(_) => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

impl From<crate::mvcc::Error> for Error {
    fn from(e: crate::mvcc::Error) -> Error {
        match e {
            crate::mvcc::Error::Compacted => Error::Compacted,
            crate::mvcc::Error::FutureRev => Error::FutureRev,
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<skiff_raft::node::Error> for Error {
    fn from(e: skiff_raft::node::Error) -> Error {
        use skiff_raft::node::Error as R;
        match e {
            R::NoLeader => Error::NoLeader,
            R::NotLeader(_) => Error::NotLeader,
            // etcd's raft drops a second pending change silently; the client sees a timeout.
            // Refusing at once with etcd's retryable "unhealthy" answer is kinder.
            R::ConfChangePending => Error::Unhealthy,
            R::ProposalDropped => Error::LeaderChanged,
            R::Stopped => Error::Stopped,
            R::Storage(m) | R::Raft(m) => Error::Internal(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The strings clients match on; a change here breaks etcdctl and client-go.
    #[test]
    fn codes_and_messages_match_etcd() {
        let cases = [
            (Error::EmptyKey, Code::InvalidArgument, "etcdserver: key is not provided"),
            (Error::Compacted, Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
            (Error::FutureRev, Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
            (Error::NoSpace, Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded"),
            (Error::LeaseNotFound, Code::NotFound, "etcdserver: requested lease not found"),
            (Error::DuplicateKey, Code::InvalidArgument, "etcdserver: duplicate key given in txn request"),
            (Error::TooManyOps, Code::InvalidArgument, "etcdserver: too many operations in txn request"),
            (Error::RequestTooLarge, Code::InvalidArgument, "etcdserver: request is too large"),
            (Error::Timeout, Code::Unavailable, "etcdserver: request timed out"),
            (Error::NoLeader, Code::Unavailable, "etcdserver: no leader"),
            (Error::LeaderChanged, Code::Unavailable, "etcdserver: leader changed"),
        ];
        for (err, code, msg) in cases {
            let status = Status::from(err);
            assert_eq!(status.code(), code, "{msg}");
            assert_eq!(status.message(), msg);
        }
    }
}
