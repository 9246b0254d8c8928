//! The model layer, in three parts: [`architecture`] (layer kinds, specs, networks on candle,
//! their forward plans, LoRA), [`training`] (the training loop, evaluation, optimizers, the
//! learning-rate test, tuning, devices) and [`files`] (model files, checkpoints, ONNX,
//! histories, TensorBoard); [`ModelError`] in `error.rs`. Knows nothing of the language.

pub mod architecture;
mod error;
pub mod files;
pub mod training;

pub use architecture::layers::Layer;
pub use architecture::lora::LoraConfig;
pub use architecture::network::{Network, Weights};
pub use architecture::spec::{preset, LayerInfo, ModelSpec, Summary, SummaryRow};
pub use error::{ModelError, Result};
pub use files::checkpoint::{load_model, save_model, ModelMeta};
pub use files::history_file::{save_history, HistoryFormat};
pub use files::resume::{load_checkpoint, Checkpoint, RunInfo};
pub use training::device::{device, thread_pool, DeviceKind};
pub use training::lr_find::{lr_find, LrFind, LrFindConfig, LrStep};
pub use training::optim::Optimizer;
pub use training::tensors::split_tensors;
pub use training::train::{
    evaluate, evaluate_mapped, fit, fit_with, predict_probs, Augment, EpochEnd, EpochStats, Evaluation, FitHooks,
    History, LabelMap, Monitor, RunState, Schedule, StopReason, TrainConfig, TrainData, TrainEvent,
};
