//! How a network learns: the training loop and evaluation, optimizers and schedules, the
//! moving average of the weights, test-time augmentation, the learning-rate range test, hyperparameter search, the
//! device and thread pool, and the conversion of splits to tensors.

pub mod device;
pub mod ema;
pub mod ensemble;
pub mod lr_find;
pub mod optim;
pub mod tensors;
pub mod train;
pub mod tta;
pub mod tune;
