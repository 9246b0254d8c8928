//! What every layer kind defines, in its own file: the [`Kind`] trait, and the context its
//! forward pass runs in.

use candle_core::{Tensor, Var};

use super::init::Init;
use super::shape::Shape;
use crate::kernels::Precision;
use crate::model::architecture::plan::PlanKind;
use crate::model::error::{ModelError, Result};
use crate::model::files::onnx::Graph;

/// One layer kind: everything about it except its kernel (in `crate::kernels`) and the words
/// that parse it (in `lang::statements::training`).
pub trait Kind {
    /// A short label such as `conv32`, `conv6(5×5,same)`, `maxpool`, `dropout0.25`, `dense128`.
    fn label(&self) -> String;
    /// The words of a `model` line that build it, such as `conv32k5 same` (the inverse of the parser).
    fn words(&self) -> String;
    /// Its words for `help`: what `help WORD` answers for each.
    fn help(&self) -> &'static [Help];
    /// Its Keras class, such as `Conv2D`.
    fn keras(&self) -> &'static str;
    /// Whether it takes a flat vector: a flatten is implied before it when an image comes in.
    fn takes_flat(&self) -> bool {
        false
    }
    /// Its output shape and parameter count on `input` (flattened already when it
    /// [takes a flat vector](Kind::takes_flat)), or why it cannot apply.
    fn infer(&self, input: Shape) -> std::result::Result<(Shape, usize), String>;
    /// Whether its output has just been through a ReLU (so a `relu` after it changes nothing).
    fn ends_with_relu(&self) -> bool {
        false
    }
    /// Of its `params`, how many the optimizer never updates (batch norm's moving statistics).
    fn statistics(&self, _params: usize) -> usize {
        0
    }
    /// Bytes per image that training needs beyond its output and gradient (a convolution's
    /// im2col matrix), for the memory estimate.
    fn scratch(&self, _input: Shape, _output: Shape) -> u64 {
        0
    }
    /// Creates its parameters, named `name.part`, for `input`; returns them.
    fn init(&self, init: &mut Init, input: Shape, name: &str) -> Result<Params>;
    /// What the plan's fusion rules need of it, on `input`.
    fn plan(&self, input: Shape) -> PlanKind;
    /// The kernel [`Kind::forward`] calls in `ctx`'s mode, by name (as `summary` shows it).
    fn kernel(&self, mode: Mode) -> &'static str;
    /// Runs it on its own on `x`.
    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor>;
    /// Its ONNX nodes on `x`, with its parameters `prefix.*`; returns the output's name.
    fn onnx(&self, graph: &mut Graph, prefix: &str, x: String) -> Result<String>;
    /// Where `freeze conv` stands at it.
    fn role(&self) -> Role;
}

/// A layer's place in the feature extractor that `freeze conv` freezes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Part of it (a convolution, a batch norm between convolutions).
    Features,
    /// Passed over (a pooling, a dropout).
    Between,
    /// Where it ends (a flatten, a global pooling, a dense layer).
    End,
}

/// How a pass runs, as far as a layer's kernel is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    /// Training (dropout active, batch statistics) rather than inference.
    pub train: bool,
    /// The fused CPU kernels apply (f32 on the CPU).
    pub fast: bool,
    /// The layer's own parameters are frozen.
    pub frozen: bool,
}

/// A built layer's tensors by part name (`weight`, `bias`, `running_mean`, ...), sharing
/// storage with the network's parameter store.
#[derive(Clone, Default)]
pub struct Params(pub Vec<(&'static str, Var)>);

impl Params {
    /// The variable `part`.
    pub fn var(&self, part: &str) -> Result<&Var> {
        self.0
            .iter()
            .find_map(|(name, var)| (*name == part).then_some(var))
            .ok_or_else(|| ModelError::Weights(format!("the layer has no `{part}`")))
    }

    /// Whether it holds any tensor.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a layer's [`Kind::forward`] runs with: its parameters, the mode, and the network's
/// dropout masks.
pub struct Ctx<'a> {
    /// The layer's parameters.
    pub params: &'a Params,
    /// Training or inference, fused kernels or not, frozen or not.
    pub mode: Mode,
    /// The mask key of the next dropout (each call draws a new one).
    pub dropout_key: &'a dyn Fn() -> u64,
    /// What the fused kernels' products compute in.
    pub precision: Precision,
}

impl Ctx<'_> {
    /// The parameter `part`, detached when the layer is frozen (so no gradient reaches it).
    pub fn param(&self, part: &str) -> Result<Tensor> {
        let t = self.params.var(part)?.as_tensor();
        Ok(if self.mode.frozen { t.detach() } else { t.clone() })
    }

    /// The bias, as [`Ctx::param`], or `None` for a layer built without one.
    pub fn bias(&self) -> Result<Option<Tensor>> {
        if self.params.0.iter().any(|(name, _)| *name == "bias") {
            self.param("bias").map(Some)
        } else {
            Ok(None)
        }
    }
}

/// A layer kind's words on a `model` line and what they build, for `help`.
#[derive(Clone, Copy, Debug)]
pub struct Help {
    /// The words `help WORD` answers to (lower case).
    pub words: &'static [&'static str],
    /// What the layer does, starting with its synopsis.
    pub text: &'static str,
}
