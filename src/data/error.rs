//! Errors of the data layer: every one names the file (or source) and what is wrong.

use std::path::{Path, PathBuf};

use super::dataset::Inconsistency;

/// An error while reading, writing, fetching or transforming data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A target the write path refused or could not write.
    #[error(transparent)]
    Write(#[from] crate::write::WriteError),
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
    /// The library that reads or writes the file's format (gzip, zip, npy, CSV, PNG, JSON)
    /// failed: what was being done, and its error.
    #[error("{}: {doing}: {source}", path.display())]
    Codec {
        /// The file.
        path: PathBuf,
        /// What was being done, e.g. `corrupt gzip data` or `cannot decode PNG`.
        doing: String,
        /// The library's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A helper program could not be started.
    #[error("could not run {command}: {source}")]
    Spawn {
        /// The command line, e.g. `python3 -m pip`.
        command: &'static str,
        /// Why it did not start.
        source: std::io::Error,
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
    #[error(
        "could not get {dataset}:\n{}{}",
        attempts.iter().map(|a| format!("  - {a}")).collect::<Vec<_>>().join("\n"),
        if hint.is_empty() { String::new() } else { format!("\n{hint}") }
    )]
    Unavailable {
        /// The dataset asked for.
        dataset: String,
        /// One line per source tried.
        attempts: Vec<String>,
        /// What to do instead (empty when nothing is known).
        hint: String,
    },
    /// A dataset whose splits do not fit its image size or its classes, read from `path` (or
    /// to be written there).
    #[error("{}: {problem}", path.display())]
    Inconsistent {
        /// The file or folder.
        path: PathBuf,
        /// What does not fit.
        problem: Inconsistency,
    },
    /// A dataset that cannot be saved into `dir` because its splits do not fit its image size
    /// or its classes.
    #[error("cannot save {}: {problem}", dir.display())]
    Unsaveable {
        /// The folder asked for.
        dir: PathBuf,
        /// What does not fit.
        problem: Inconsistency,
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
    /// [`Dataset::validate`]'s `problem`, with `path` (the file or folder the dataset was read
    /// from or is written to) named in the error.
    ///
    /// [`Dataset::validate`]: crate::data::Dataset::validate
    pub fn inconsistent(path: &Path, problem: Inconsistency) -> DataError {
        DataError::Inconsistent { path: path.to_path_buf(), problem }
    }

    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> DataError {
        DataError::Io { path: path.to_path_buf(), source }
    }

    /// A format error in `path`.
    pub fn format(path: &Path, message: impl Into<String>) -> DataError {
        DataError::Format { path: path.to_path_buf(), message: message.into() }
    }

    /// A format library's error on `path` while `doing` something.
    pub fn codec(
        path: &Path,
        doing: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> DataError {
        DataError::Codec { path: path.to_path_buf(), doing: doing.into(), source: source.into() }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Dataset, Split, SplitKind};

    #[test]
    fn an_inconsistency_names_its_path() {
        let mut d = Dataset::new("toy", vec!["a".into(), "b".into()], 2, 2);
        d.splits.insert(SplitKind::Train, Split { pixels: vec![0; 4], labels: vec![2] });
        let e = DataError::inconsistent(Path::new("some/dir"), d.validate().unwrap_err());
        assert!(matches!(e, DataError::Inconsistent { ref path, .. } if path == Path::new("some/dir")), "{e:?}");
        assert_eq!(e.to_string(), "some/dir: train split has label 2, but there are 2 classes");
    }
}
