//! Why a client tool could not run, with a message for the user that names the flag or
//! file at fault.

use session_crypto_client::FlowError;

/// Why `client` or `bench` failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag is invalid, or flags contradict each other (the message names them).
    #[error("{0}")]
    Config(String),
    /// A flow failed.
    #[error(transparent)]
    Flow(#[from] FlowError),
    /// The tool could not do its work (a task, the report file, a failed run).
    #[error("{0}")]
    Runtime(String),
}

/// Flags are checked with messages built as text; they are configuration errors.
impl From<String> for Error {
    fn from(message: String) -> Self {
        Self::Config(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Self::Config(message.to_owned())
    }
}
