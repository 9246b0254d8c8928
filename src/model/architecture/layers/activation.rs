//! An activation as a layer of its own (Keras `Activation('relu')`, `Activation('tanh')`,
//! `Activation('silu')`): what follows a convolution or dense layer written without its ReLU,
//! for example after a batch norm (`conv32 nobias norelu bn relu`).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::init::Init;
use super::kind::{Ctx, Help, Kind, Mode, Params, Role};
use super::shape::Shape;
use crate::kernels::{self, Function};
use crate::model::architecture::plan::PlanKind;
use crate::model::error::Result;
use crate::model::files::onnx::Graph;

/// Its words on a `model` line, for `help`.
pub const HELP: Help = Help {
    words: &["relu", "tanh", "silu", "swish"],
    text: "relu, tanh, silu: an activation as a layer of its own (ReLU, the hyperbolic tangent of LeNet-5, SiLU alias swish, x·sigmoid(x)), for a convolution or dense layer written with `norelu`, e.g. `conv32 nobias norelu bn relu`.",
};

/// The function applied to every value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// max(x, 0).
    #[default]
    Relu,
    /// The hyperbolic tangent.
    Tanh,
    /// x · sigmoid(x) (Keras' `silu`, also called swish).
    Silu,
}

impl Activation {
    /// Its word on a `model` line.
    pub fn word(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Silu => "silu",
        }
    }
}

impl Kind for Activation {
    fn label(&self) -> String {
        self.word().into()
    }

    fn words(&self) -> String {
        self.word().into()
    }

    fn help(&self) -> &'static [Help] {
        &[HELP]
    }

    fn keras(&self) -> &'static str {
        "Activation"
    }

    fn ends_with_relu(&self) -> bool {
        *self == Activation::Relu
    }

    fn infer(&self, input: Shape) -> std::result::Result<(Shape, usize), String> {
        Ok((input, 0))
    }

    fn init(&self, _init: &mut Init, _input: Shape, _name: &str) -> Result<Params> {
        Ok(Params::default())
    }

    fn plan(&self, _input: Shape) -> PlanKind {
        PlanKind::Alone
    }

    fn kernel(&self, _mode: Mode) -> &'static str {
        self.word()
    }

    fn forward(&self, x: &Tensor, _ctx: &Ctx) -> Result<Tensor> {
        let f = match self {
            Activation::Relu => Function::Relu,
            Activation::Tanh => Function::Tanh,
            Activation::Silu => Function::Silu,
        };
        Ok(kernels::activation(x, f)?)
    }

    fn onnx(&self, graph: &mut Graph, _prefix: &str, x: String) -> Result<String> {
        Ok(match self {
            Activation::Relu => graph.node("Relu", vec![x], vec![]),
            Activation::Tanh => graph.node("Tanh", vec![x], vec![]),
            Activation::Silu => {
                let sigmoid = graph.node("Sigmoid", vec![x.clone()], vec![]);
                graph.node("Mul", vec![x, sigmoid], vec![])
            }
        })
    }

    fn role(&self) -> Role {
        Role::Between
    }
}
