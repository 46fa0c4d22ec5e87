//! Errors for people: the whole chain of what went wrong, a hint of what to do, and the exit
//! code (2 for bad usage, 1 for everything else).

use std::fmt;

/// A mistake in how reel was called (exit code 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// An `anyhow::Error` for a usage mistake.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// The error and its causes, outermost first.
pub fn describe(err: &anyhow::Error) -> String {
    format!("{err:#}")
}

/// The exit code for this error.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.downcast_ref::<UsageError>().is_some() {
        2
    } else {
        1
    }
}

/// What the user can do about it, when reel knows.
pub fn hint(err: &anyhow::Error) -> Option<String> {
    for cause in err.chain() {
        if let Some(h) = crate::cmd::hint_for(cause) {
            return Some(h);
        }
    }
    None
}
