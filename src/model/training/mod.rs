//! How a network learns: the training loop and evaluation, optimizers and schedules, the
//! learning-rate range test, hyperparameter search, the device and thread pool, and the
//! conversion of splits to tensors.

pub mod device;
pub mod lr_find;
pub mod optim;
pub mod tensors;
pub mod train;
pub mod tune;
