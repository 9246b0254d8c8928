//! mnistlab: a small language, a REPL and a Jupyter kernel for preparing MNIST-family datasets
//! and training small networks on them with candle.
//!
//! Layers, each ignorant of the ones above it: [`lang`] (syntax), [`data`] / [`plot`]
//! (operations), [`session`] (the interpreter, which emits [`session::Event`]s), and the
//! front ends in [`front`] (REPL, script runner, Jupyter kernel).

pub mod budget;
pub mod data;
pub mod front;
pub mod guard;
pub mod lang;
pub mod model;
pub mod plot;
pub mod session;
#[doc(hidden)]
pub mod testdata;
