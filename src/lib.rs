//! mnistlab: a small language, a REPL and a Jupyter kernel for preparing MNIST-family datasets
//! and training small networks on them with candle.
//!
//! Layers, each ignorant of the ones above it: [`budget`], [`guard`] and [`write`] (the ground:
//! the memory budget, the panic catcher, the one write path), [`data`] / [`model`] / [`plot`]
//! (operations), [`lang`] (syntax, holding the operation layers' plain values), [`session`]
//! (the interpreter, which emits [`session::Event`]s), and the front ends in [`front`] (REPL,
//! script runner, Jupyter kernel).

#![warn(missing_docs)]

pub mod budget;
pub mod data;
pub mod front;
pub mod guard;
pub mod kernels;
pub mod lang;
pub mod model;
pub mod plot;
pub mod session;
#[doc(hidden)]
pub mod testdata;
pub mod write;

/// candle's core crate, the version mnistlab is built with: use `mnistlab::candle::Tensor` so a
/// notebook's tensors and mnistlab's are the same type (a separate `candle-core` dependency
/// may resolve to another version).
pub use candle_core as candle;
/// candle's neural-network crate, the version mnistlab is built with.
pub use candle_nn;
