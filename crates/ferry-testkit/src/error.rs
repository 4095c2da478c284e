//! The test kit's error type.
//!
//! Every variant that concerns a running server carries the tail of that
//! server's log, so a failed start or a timed-out wait explains itself in the
//! test output without digging through temp dirs.

use std::path::PathBuf;

use crate::Flavor;

/// Everything that can go wrong while finding, starting, driving or dumping a
/// test server.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// A server or client binary could not be found or does not run.
    #[error("{what} not found: {detail}\n  hint: {hint}")]
    BinaryNotFound {
        /// What was looked for, e.g. "Valkey 9 server".
        what: String,
        /// Where it was looked for and what was wrong.
        detail: String,
        /// How to install it.
        hint: String,
    },
    /// A binary was found but reports another version than the flavor needs.
    #[error("{path} reports {reported:?}, but {flavor} needs a {expected} binary\n  hint: {hint}")]
    WrongVersion {
        /// The flavor that was asked for.
        flavor: Flavor,
        /// The binary that was run.
        path: PathBuf,
        /// Its `--version` output.
        reported: String,
        /// The version prefix the flavor expects, e.g. "v=7.0.".
        expected: &'static str,
        /// How to fix it.
        hint: String,
    },
    /// The requested configuration is not supported by this flavor.
    #[error("{flavor} does not support {what}")]
    Unsupported {
        /// The flavor.
        flavor: Flavor,
        /// The unsupported feature.
        what: &'static str,
    },
    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A server process exited or never became ready.
    #[error(
        "{flavor} server on port {port} failed to start: {reason}\n--- server log tail ---\n{log_tail}"
    )]
    StartFailed {
        /// The flavor.
        flavor: Flavor,
        /// The port it was told to listen on.
        port: u16,
        /// Why it is considered failed.
        reason: String,
        /// The last lines of its log (and of its stdout/stderr).
        log_tail: String,
    },
    /// A bounded wait ran out.
    #[error("timed out after {seconds:.1}s waiting for {what}\n--- log tail ---\n{log_tail}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long it waited.
        seconds: f64,
        /// The relevant server log tail(s).
        log_tail: String,
    },
    /// A helper program (redis-cli, a check tool) failed.
    #[error("`{command}` failed ({status}):\n{output}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// Its exit status, or "killed after timeout".
        status: String,
        /// Its combined stdout and stderr (tail).
        output: String,
    },
    /// A Redis command sent by the kit failed.
    #[error("{context}: {source}")]
    Redis {
        /// What was being done, with the server address.
        context: String,
        /// The client error.
        #[source]
        source: redis::RedisError,
    },
}

/// Shorthand used across the kit.
pub type Result<T, E = TestkitError> = std::result::Result<T, E>;

/// Adds context to `std::io::Error`s.
pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestkitError {
    let context = context.into();
    move |source| TestkitError::Io { context, source }
}
