//! What a network is written to and read from: model files, checkpoints that resume, the ONNX
//! export, histories (CSV, JSON) and TensorBoard runs.

pub mod checkpoint;
pub mod ensemble;
pub mod history_file;
pub mod onnx;
pub mod resume;
pub mod tensorboard;
