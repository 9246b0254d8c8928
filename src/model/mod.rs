//! The model layer: architectures, candle networks, training, evaluation, checkpoints and ONNX export.
//! Knows nothing of the language.

pub mod checkpoint;
pub mod device;
mod error;
pub mod history_file;
pub mod layers;
pub mod lora;
pub mod lr_find;
pub mod network;
pub mod onnx;
pub mod optim;
pub mod plan;
pub mod resume;
pub mod spec;
pub mod tensorboard;
pub mod tensors;
pub mod train;
pub mod tune;

pub use checkpoint::{load_model, save_model, ModelMeta};
pub use device::{device, thread_pool, DeviceKind};
pub use error::{ModelError, Result};
pub use history_file::{save_history, HistoryFormat};
pub use lora::LoraConfig;
pub use lr_find::{lr_find, LrFind, LrFindConfig, LrStep};
pub use network::{Network, Weights};
pub use optim::Optimizer;
pub use resume::{load_checkpoint, Checkpoint, RunInfo};
pub use spec::{preset, Layer, LayerInfo, ModelSpec, Summary, SummaryRow};
pub use tensors::split_tensors;
pub use train::{
    evaluate, evaluate_mapped, fit, fit_with, predict_probs, Augment, EpochEnd, EpochStats, Evaluation, FitHooks,
    History, LabelMap, Monitor, RunState, Schedule, StopReason, TrainConfig, TrainData, TrainEvent,
};
