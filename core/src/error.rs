//! The one error type of nuage: every failure knows its CNI error code.
//!
//! Codes follow the spec's table (`SPEC.md` §"Error"): 1-11 and 50/51 are the
//! well-known ones, 999 is "internal", and 100+ are ours (see [`Code`]).
//! The `cniVersion` of an error reply is attached only when it is printed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// CNI error codes, well-known ones first, then the plugin-specific ones that
/// nuage documents (100+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// 1: the config's version is not one the plugin supports.
    IncompatibleVersion,
    /// 2: a field's value is not supported (the message names key and value).
    UnsupportedField,
    /// 3: the container is unknown; no cleanup needed.
    UnknownContainer,
    /// 4: a `CNI_*` environment variable is missing or invalid.
    InvalidEnv,
    /// 5: reading stdin or a file failed.
    Io,
    /// 6: the JSON could not be decoded.
    Decode,
    /// 7: the network configuration is invalid.
    InvalidConfig,
    /// 8: `CNI_NETNS` is not a usable network namespace.
    InvalidNetns,
    /// 11: try again later (a lock held too long, a transient kernel error).
    TryAgain,
    /// 50: the plugin is not available (STATUS).
    NotAvailable,
    /// 51: not available, and existing containers may have limited connectivity.
    LimitedConnectivity,
    /// 110: an address range is exhausted (IPAM). Run GC or widen the range.
    RangeExhausted,
    /// 111: a requested address is taken or outside every range (IPAM).
    AddressUnavailable,
    /// 999: anything else.
    Internal,
    /// Any other code, as received from a delegated plugin.
    Other(u32),
}

impl Code {
    pub fn as_u32(self) -> u32 {
        match self {
            Code::IncompatibleVersion => 1,
            Code::UnsupportedField => 2,
            Code::UnknownContainer => 3,
            Code::InvalidEnv => 4,
            Code::Io => 5,
            Code::Decode => 6,
            Code::InvalidConfig => 7,
            Code::InvalidNetns => 8,
            Code::TryAgain => 11,
            Code::NotAvailable => 50,
            Code::LimitedConnectivity => 51,
            Code::RangeExhausted => 110,
            Code::AddressUnavailable => 111,
            Code::Internal => 999,
            Code::Other(c) => c,
        }
    }

    pub fn from_u32(code: u32) -> Code {
        match code {
            1 => Code::IncompatibleVersion,
            2 => Code::UnsupportedField,
            3 => Code::UnknownContainer,
            4 => Code::InvalidEnv,
            5 => Code::Io,
            6 => Code::Decode,
            7 => Code::InvalidConfig,
            8 => Code::InvalidNetns,
            11 => Code::TryAgain,
            50 => Code::NotAvailable,
            51 => Code::LimitedConnectivity,
            110 => Code::RangeExhausted,
            111 => Code::AddressUnavailable,
            999 => Code::Internal,
            c => Code::Other(c),
        }
    }
}

/// A CNI error: code, message, optional details, and the OS errno when the
/// failure came from the kernel (so callers can match on ENOENT/EEXIST).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: Code,
    pub msg: String,
    pub details: Option<String>,
    pub errno: Option<i32>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        Error {
            code,
            msg: msg.into(),
            details: None,
            errno: None,
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    pub fn incompatible(msg: impl Into<String>) -> Self {
        Self::new(Code::IncompatibleVersion, msg)
    }
    pub fn env(msg: impl Into<String>) -> Self {
        Self::new(Code::InvalidEnv, msg)
    }
    pub fn io(msg: impl Into<String>) -> Self {
        Self::new(Code::Io, msg)
    }
    pub fn decode(msg: impl Into<String>) -> Self {
        Self::new(Code::Decode, msg)
    }
    pub fn config(msg: impl Into<String>) -> Self {
        Self::new(Code::InvalidConfig, msg)
    }
    pub fn netns(msg: impl Into<String>) -> Self {
        Self::new(Code::InvalidNetns, msg)
    }
    pub fn unsupported(msg: impl Into<String>) -> Self {
        Self::new(Code::UnsupportedField, msg)
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(Code::Internal, msg)
    }
    pub fn not_available(msg: impl Into<String>) -> Self {
        Self::new(Code::NotAvailable, msg)
    }

    /// An OS-level failure (`what` names the operation and the object).
    pub fn os(what: impl fmt::Display, err: std::io::Error) -> Self {
        let mut e = Self::internal(format!("{what}: {err}"));
        e.errno = err.raw_os_error();
        e
    }

    /// Prepends context to the message, keeping code, details and errno.
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.msg = format!("{ctx}: {}", self.msg);
        self
    }

    pub fn errno(&self) -> Option<i32> {
        self.errno
    }
    /// The kernel said the object does not exist (ENOENT, ENODEV, ESRCH, EADDRNOTAVAIL).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno,
            Some(libc::ENOENT | libc::ENODEV | libc::ESRCH | libc::EADDRNOTAVAIL)
        )
    }
    /// The kernel said the object already exists.
    pub fn is_exists(&self) -> bool {
        self.errno == Some(libc::EEXIST)
    }

    /// The wire form (`{"code","msg","details"?}`), with `cniVersion` when given.
    pub fn to_reply(&self, cni_version: Option<&str>) -> ErrorReply {
        ErrorReply {
            cni_version: cni_version.map(str::to_string),
            code: self.code.as_u32(),
            msg: self.msg.clone(),
            details: self.details.clone(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.msg)?;
        if let Some(d) = &self.details {
            if !d.is_empty() {
                write!(f, " ({d})")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::decode(e.to_string())
    }
}

/// The error result as printed on stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    #[serde(
        rename = "cniVersion",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub cni_version: Option<String>,
    pub code: u32,
    /// Optional when read (Go's `types.Error` keeps a reply without it).
    #[serde(default)]
    pub msg: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub details: Option<String>,
}

impl From<ErrorReply> for Error {
    fn from(r: ErrorReply) -> Self {
        Error {
            code: Code::from_u32(r.code),
            msg: r.msg,
            details: r.details,
            errno: None,
        }
    }
}

/// Adds context to any `Result<_, Error>`.
pub trait ResultExt<T> {
    fn context(self, ctx: impl fmt::Display) -> Result<T>;
    fn with_context<D: fmt::Display>(self, f: impl FnOnce() -> D) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T> {
    fn context(self, ctx: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.context(ctx))
    }
    fn with_context<D: fmt::Display>(self, f: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| e.context(f()))
    }
}

/// Errors collected by a best-effort teardown (DEL, GC): every step runs, and
/// the first failure's code is reported with all messages joined.
#[derive(Debug, Default)]
pub struct Errors(Vec<Error>);

impl Errors {
    pub fn new() -> Self {
        Self::default()
    }
    /// Records the error of `r`, if any.
    pub fn collect<T>(&mut self, r: Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }
    pub fn push(&mut self, e: Error) {
        self.0.push(e);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn into_result(self) -> Result<()> {
        let mut errs = self.0.into_iter();
        match errs.next() {
            None => Ok(()),
            Some(mut first) => {
                for e in errs {
                    first.msg = format!("{}; {}", first.msg, e.msg);
                }
                Err(first)
            }
        }
    }
}
