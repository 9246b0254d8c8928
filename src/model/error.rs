//! The model layer's error: every one names the layer, tensor or file and what is wrong.

use std::path::{Path, PathBuf};

/// An error while building, training, saving or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A target the write path refused or could not write.
    #[error(transparent)]
    Write(#[from] crate::write::WriteError),
    /// The spec cannot be built for this input shape or number of classes.
    #[error("{0}")]
    Spec(String),
    /// A layer of the spec cannot apply to what reaches it.
    #[error("layer {layer} ({label}): {message}")]
    Layer {
        /// 1-based position in the spec.
        layer: usize,
        /// The layer's label, e.g. `conv32`.
        label: String,
        /// What is wrong, in words.
        message: String,
    },
    /// Tensors that do not fit the network's (the message names the tensor).
    #[error("{0}")]
    Weights(String),
    /// The compute device cannot be opened (the message says why and what to do).
    #[error("{0}")]
    Device(String),
    /// The worker threads cannot be set up.
    #[error("{0}")]
    Threads(String),
    /// The data does not fit the model or the operation.
    #[error("{0}")]
    Data(String),
    /// A tensor operation failed.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A size beyond the memory budget, or a file that is not a regular file within it.
    #[error(transparent)]
    Budget(#[from] crate::budget::BudgetError),
    /// A file's contents are not what a model file requires.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, in words.
        message: String,
    },
}

impl ModelError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> ModelError {
        ModelError::Io { path: path.to_path_buf(), source }
    }

    /// A format error in `path`.
    pub fn format(path: &Path, message: impl Into<String>) -> ModelError {
        ModelError::Format { path: path.to_path_buf(), message: message.into() }
    }
}

/// Result of model operations.
pub type Result<T> = std::result::Result<T, ModelError>;
