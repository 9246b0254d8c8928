//! The layer kinds of a model, one file each: its label, words, Keras class, shape rule and
//! parameter count, how its parameters are made, its ONNX nodes, and the kernel that runs it
//! alone (the [`Kind`] trait). [`Layer`] is a spec's hidden layer; [`Node`] is any layer of a
//! built network, the implied flattens and the output layer included.
//!
//! To add a layer kind: a file here implementing [`Kind`], its variant in [`Layer`] and its line
//! in [`Layer::kind`], its word in `lang::statements::training`, and its kernel in
//! `crate::kernels` (ARCHITECTURE.md has the list; `tests/layers.rs` checks it).

pub mod activation;
pub mod avg_pool;
pub mod batch_norm;
pub mod conv;
pub mod dense;
pub mod dropout;
pub mod flatten;
pub mod global_avg_pool;
pub mod init;
pub mod kind;
pub mod max_pool;
pub mod shape;

use serde::{Deserialize, Serialize};
use strum::EnumIter;

pub use activation::Activation;
pub use avg_pool::AvgPool;
pub use batch_norm::BatchNorm;
pub use conv::Conv;
pub use dense::{Dense, Output, OutputStyle};
pub use dropout::Dropout;
pub use flatten::Flatten;
pub use global_avg_pool::GlobalAvgPool;
pub use kind::{Ctx, Help, Kind, Mode, Params, Role};
pub use max_pool::MaxPool;
pub use shape::Shape;

/// One hidden layer of a model spec. `Layer::iter()` gives one layer of each kind, with its
/// settings' defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, EnumIter)]
pub enum Layer {
    /// 2-D convolution followed by ReLU.
    Conv(Conv),
    /// 2×2 max pooling, stride 2.
    MaxPool,
    /// 2×2 average pooling, stride 2.
    AvgPool,
    /// Batch normalization over channels (or features after flattening).
    BatchNorm,
    /// Dropout, active in training only.
    Dropout(Dropout),
    /// Fully connected layer followed by ReLU.
    Dense(Dense),
    /// Mean over the spatial dimensions: `C×H×W` becomes `C` features.
    GlobalAvgPool,
    /// An activation on its own.
    Activation(Activation),
}

impl Layer {
    /// Everything about the layer's kind.
    pub fn kind(&self) -> &dyn Kind {
        match self {
            Layer::Conv(conv) => conv,
            Layer::MaxPool => &MaxPool,
            Layer::AvgPool => &AvgPool,
            Layer::BatchNorm => &BatchNorm,
            Layer::Dropout(dropout) => dropout,
            Layer::Dense(dense) => dense,
            Layer::GlobalAvgPool => &GlobalAvgPool,
            Layer::Activation(activation) => activation,
        }
    }

    /// A 3×3 convolution of `filters` filters, unpadded (Keras' default `'valid'`).
    pub fn conv(filters: usize) -> Layer {
        Layer::Conv(Conv { filters, ..Conv::default() })
    }

    /// A dense layer of `units` units with ReLU.
    pub fn dense(units: usize) -> Layer {
        Layer::Dense(Dense { units, ..Dense::default() })
    }

    /// A dropout of `rate`.
    pub fn dropout(rate: f32) -> Layer {
        Layer::Dropout(Dropout { rate })
    }

    /// A short label such as `conv32`, `conv6(5×5,same)`, `maxpool`, `dropout0.25`, `dense128`.
    pub fn label(&self) -> String {
        self.kind().label()
    }
}

/// One layer of a built network: the spec's, an implied flatten, or the output layer.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// The spec's hidden layer.
    Hidden(Layer),
    /// A flatten implied before a layer that takes a flat vector.
    Flatten,
    /// The output layer.
    Output(Output),
}

impl Node {
    /// Everything about the node's kind.
    pub fn kind(&self) -> &dyn Kind {
        match self {
            Node::Hidden(layer) => layer.kind(),
            Node::Flatten => &Flatten,
            Node::Output(output) => output,
        }
    }
}
