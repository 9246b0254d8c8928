//! The model layer: architectures, candle networks, training, evaluation, checkpoints and ONNX export.
//! Knows nothing of the language.

pub mod checkpoint;
pub mod device;
pub mod fast;
pub mod history_file;
pub mod lora;
pub mod lr_find;
pub mod network;
pub mod onnx;
pub mod optim;
pub mod preprocess;
pub mod resume;
pub mod spec;
pub mod tensorboard;
pub mod tensors;
pub mod train;
pub mod tune;

use std::path::{Path, PathBuf};

pub use checkpoint::{load_model, save_model, ModelMeta};
pub use device::{device, thread_pool, DeviceKind};
pub use history_file::{save_history, HistoryFormat};
pub use lora::LoraConfig;
pub use lr_find::{lr_find, LrFind, LrFindConfig, LrStep};
pub use network::{Network, Weights};
pub use optim::Optimizer;
pub use preprocess::{preprocess_file, preprocess_gray, preprocess_image};
pub use resume::{load_checkpoint, Checkpoint, RunInfo};
pub use spec::{preset, Layer, LayerInfo, ModelSpec, Summary, SummaryRow};
pub use tensors::split_tensors;
pub use train::{
    evaluate, evaluate_mapped, fit, fit_with, predict_probs, Augment, EpochEnd, EpochStats, Evaluation, FitHooks,
    History, LabelMap, Monitor, RunState, Schedule, StopReason, TrainConfig, TrainData, TrainEvent,
};

/// Writes `bytes` to `path` atomically: into a temporary file beside it (the folder made if
/// missing), synced, then renamed over `path`, so a reader sees the old file or the whole new
/// one, never a part.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(|e| ModelError::io(path, e))?;
    tmp.write_all(bytes).map_err(|e| ModelError::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| ModelError::io(path, e))?;
    tmp.persist(path).map_err(|e| ModelError::io(path, e.error))?;
    Ok(())
}

/// An error while building, training, saving or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
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
