//! Errors of the data layer: every one names the file (or source) and what is wrong.

use std::path::{Path, PathBuf};

/// An error while reading, writing, fetching or transforming data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file's contents are not what its format requires.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, in words.
        message: String,
    },
    /// Downloaded or cached bytes do not have the expected checksum.
    #[error("{what}: checksum mismatch: expected {algorithm} {expected}, got {actual}")]
    Checksum {
        /// The file or URL.
        what: String,
        /// `sha256` or `md5`.
        algorithm: &'static str,
        /// The published checksum.
        expected: String,
        /// The checksum of the bytes received.
        actual: String,
    },
    /// No source could provide the dataset; each attempt's failure is listed.
    #[error("could not get {dataset}:\n{}", attempts.iter().map(|a| format!("  - {a}")).collect::<Vec<_>>().join("\n"))]
    Unavailable {
        /// The dataset asked for.
        dataset: String,
        /// One line per source tried.
        attempts: Vec<String>,
    },
    /// The operation cannot run on this data (e.g. a split that would be empty).
    #[error("{0}")]
    Invalid(String),
    /// A file or a size beyond the memory budget, or a file that is not a regular file.
    #[error(transparent)]
    Budget(crate::budget::BudgetError),
    /// The operation was interrupted before it finished; nothing was written.
    #[error("interrupted")]
    Interrupted,
}

impl DataError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> DataError {
        DataError::Io { path: path.to_path_buf(), source }
    }

    /// A format error in `path`.
    pub fn format(path: &Path, message: impl Into<String>) -> DataError {
        DataError::Format { path: path.to_path_buf(), message: message.into() }
    }
}

impl From<crate::budget::BudgetError> for DataError {
    /// An I/O failure stays [`DataError::Io`]; the budget's own refusals become [`DataError::Budget`].
    fn from(e: crate::budget::BudgetError) -> DataError {
        match e {
            crate::budget::BudgetError::Io { path, source } => DataError::Io { path, source },
            other => DataError::Budget(other),
        }
    }
}

/// Result of data operations.
pub type Result<T> = std::result::Result<T, DataError>;
