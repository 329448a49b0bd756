//! The crate-wide error: a positive errno value plus a message that names the
//! cause and the fix. Every fallible internal function returns `Result<T>`;
//! the C boundary turns an `Error` into `-errno` and stores the message in the
//! calling thread's last-error slot.

use std::borrow::Cow;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Positive errno value (EINVAL, ENODEV, ...).
    pub errno: i32,
    /// Human-readable detail: what failed, why, and what to change. A fixed
    /// message is borrowed, so a routine error (EAGAIN in a polling loop)
    /// allocates nothing.
    pub msg: Cow<'static, str>,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(errno: i32, msg: impl Into<Cow<'static, str>>) -> Self {
        Error { errno, msg: msg.into() }
    }

    /// `EINVAL`: a bad argument or a bad configuration value.
    pub fn inval(msg: impl Into<Cow<'static, str>>) -> Self {
        Self::new(libc::EINVAL, msg)
    }

    /// Prefix the message with context, keeping the errno.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.msg = format!("{what}: {}", self.msg).into();
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.msg, crate::errno_name(self.errno))
    }
}

impl std::error::Error for Error {}
