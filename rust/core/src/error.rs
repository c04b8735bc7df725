//! One error type for the whole core. Every variant that concerns a file names it, and where it
//! makes sense the line or byte offset, so the Python side can show a message a user can act on.

use std::path::{Path, PathBuf};

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system error on a file (missing, unreadable, disk full, ...).
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Bytes that are not valid UTF-8, with the byte offset of the first bad byte.
    #[error("{path}: invalid UTF-8 at byte offset {offset} (use --on-invalid-utf8 replace or skip to continue)")]
    InvalidUtf8 { path: PathBuf, offset: u64 },
    /// A malformed input record (e.g. a JSONL line that is not an object with the text field).
    #[error("{path}:{line}: {message}")]
    Input { path: PathBuf, line: u64, message: String },
    /// A file whose content is not what it should be (vocab without [CLS], corrupt shard, ...).
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    /// The inputs hold no document at all.
    #[error("no documents found in the inputs ({0})")]
    NoDocuments(String),
    /// Invalid options or options that contradict each other.
    #[error("{0}")]
    Config(String),
    /// The output directory already holds something we refuse to overwrite.
    #[error("{path}: {message}")]
    Exists { path: PathBuf, message: String },
    /// The caller asked to stop (Ctrl-C).
    #[error("interrupted")]
    Cancelled,
}

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), source }
    }
    pub fn format(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Format { path: path.as_ref().to_path_buf(), message: message.into() }
    }
    pub fn input(path: impl AsRef<Path>, line: u64, message: impl Into<String>) -> Self {
        Error::Input { path: path.as_ref().to_path_buf(), line, message: message.into() }
    }
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config(message.into())
    }
}

/// Attach a path to `std::io::Result`s: `File::open(p).at(p)?`.
pub trait IoContext<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
