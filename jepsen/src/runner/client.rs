//! What a client error proves. An operation whose request may have reached a member may
//! have taken effect even though the client saw an error (a timeout after the proposal, a
//! connection cut after the commit): it is recorded as `info`. Only errors that a member
//! returns *before* it proposes anything, and connections that were never made, prove the
//! operation did not happen and make it a `fail`.

use etcd_client::Error;
use tonic::Code;

/// Whether a failed operation certainly did not take effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Certainty {
    /// It did not happen: record `fail`.
    DidNotHappen,
    /// It may have happened: record `info`.
    Unknown,
}

/// What an error from the etcd client proves about a state-changing operation.
///
/// Definite:
/// - gRPC codes that etcd (and skiff, whose codes match etcd's) returns while validating
///   or admitting a request, before the raft proposal: `InvalidArgument` (bad request,
///   too large), `ResourceExhausted` ("too many requests", "database space exceeded"),
///   `FailedPrecondition`, `OutOfRange`, `NotFound`, `AlreadyExists`, `PermissionDenied`,
///   `Unauthenticated`, `Unimplemented`;
/// - a TCP connection that was refused: the request was never sent.
///
/// Everything else is unknown, notably `Unavailable` ("request timed out", "leader
/// changed", "server stopped", a connection reset mid-request), `DeadlineExceeded`,
/// `Cancelled`, `Internal` and `Unknown`.
pub fn certainty(error: &Error) -> Certainty {
    match error {
        Error::GRpcStatus(status) => match status.code() {
            Code::InvalidArgument
            | Code::ResourceExhausted
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::Unimplemented => Certainty::DidNotHappen,
            _ if never_connected(status.message()) || never_connected(&format!("{status:?}")) => {
                Certainty::DidNotHappen
            }
            _ => Certainty::Unknown,
        },
        Error::InvalidArgs(_) | Error::InvalidUri(_) => Certainty::DidNotHappen,
        Error::TransportError(e) if never_connected(&format!("{e:?}")) => Certainty::DidNotHappen,
        _ => Certainty::Unknown,
    }
}

/// "Connection refused" can only come from a connect, never from a request in flight.
fn never_connected(text: &str) -> bool {
    text.contains("Connection refused") || text.contains("ConnectionRefused")
}

/// A short, stable description of an error, for the error counts in the summary.
pub fn describe(error: &Error) -> String {
    match error {
        Error::GRpcStatus(status) => {
            let message = status.message();
            let message = message.lines().next().unwrap_or_default();
            let message: String = message.chars().take(120).collect();
            format!("{:?}: {message}", status.code())
        }
        other => {
            let text = other.to_string();
            text.chars().take(120).collect()
        }
    }
}

/// The description of an operation cut by the runner's `--op-timeout`.
pub const TIMEOUT: &str = "timed out (--op-timeout)";

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: Code, message: &str) -> Error {
        Error::GRpcStatus(tonic::Status::new(code, message))
    }

    #[test]
    fn only_pre_proposal_errors_and_refused_connections_are_definite() {
        use Certainty::*;
        assert_eq!(
            certainty(&status(
                Code::InvalidArgument,
                "etcdserver: request is too large"
            )),
            DidNotHappen
        );
        assert_eq!(
            certainty(&status(
                Code::ResourceExhausted,
                "etcdserver: too many requests"
            )),
            DidNotHappen
        );
        assert_eq!(
            certainty(&status(Code::Unavailable, "etcdserver: request timed out")),
            Unknown
        );
        assert_eq!(
            certainty(&status(Code::Unavailable, "etcdserver: leader changed")),
            Unknown
        );
        assert_eq!(
            certainty(&status(
                Code::Unavailable,
                "error trying to connect: tcp connect error: Connection refused (os error 111)"
            )),
            DidNotHappen
        );
        assert_eq!(
            certainty(&status(
                Code::Unknown,
                "h2 protocol error: connection reset"
            )),
            Unknown
        );
        assert_eq!(certainty(&status(Code::DeadlineExceeded, "")), Unknown);
    }

    #[test]
    fn descriptions_are_one_short_line() {
        let d = describe(&status(
            Code::Unavailable,
            "etcdserver: request timed out\nmore",
        ));
        assert_eq!(d, "Unavailable: etcdserver: request timed out");
    }
}
