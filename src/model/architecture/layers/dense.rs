//! The fully connected layer: a hidden one with ReLU (Keras `Dense(units, activation='relu')`)
//! and the output layer, one unit per class and no activation (the logits).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::init::Init;
use super::kind::{Ctx, Help, Kind, Mode, Params, Role};
use super::shape::Shape;
use crate::kernels;
use crate::model::architecture::plan::PlanKind;
use crate::model::error::Result;
use crate::model::files::onnx::Graph;

/// Its words on a `model` line, for `help`.
pub const HELP: Help = Help {
    words: &["dense", "densen"],
    text: "denseN: a fully connected layer of N units, followed by ReLU; flatten is implied before the first one, and the output layer (one unit per class) follows the last.",
};

/// A hidden fully connected layer of `units` units, followed by ReLU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Dense {
    /// The number of units.
    pub units: usize,
}

/// The output layer: one unit per class, no activation (logits), appended to every network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    /// The number of classes.
    pub classes: usize,
}

impl Default for Dense {
    /// 128 units.
    fn default() -> Dense {
        Dense { units: 128 }
    }
}

/// Output shape and parameter count of `units` units on `input`.
fn infer(units: usize, input: Shape) -> std::result::Result<(Shape, usize), String> {
    if units == 0 {
        return Err("a dense layer needs at least one unit".into());
    }
    Ok((Shape::Flat(units), input.size().saturating_mul(units).saturating_add(units)))
}

/// A Glorot-uniform weight `[units, inputs]` and a zero bias, named `name.*`.
pub fn init(init: &mut Init, inputs: usize, units: usize, name: &str) -> Result<Params> {
    let weight = init.glorot(&format!("{name}.weight"), &[units, inputs], inputs, units)?;
    let bias = init.constant(&format!("{name}.bias"), &[units], 0.0)?;
    Ok(Params(vec![("weight", weight), ("bias", bias)]))
}

/// The product, bias and (with `relu`) ReLU through the fused op.
fn forward(x: &Tensor, ctx: &Ctx, relu: bool) -> Result<Tensor> {
    Ok(kernels::linear(x, &ctx.param("weight")?, &ctx.param("bias")?, relu)?)
}

impl Kind for Dense {
    fn label(&self) -> String {
        format!("dense{}", self.units)
    }

    fn words(&self) -> String {
        self.label()
    }

    fn help(&self) -> &'static [Help] {
        &[HELP]
    }

    fn keras(&self) -> &'static str {
        "Dense"
    }

    fn takes_flat(&self) -> bool {
        true
    }

    fn infer(&self, input: Shape) -> std::result::Result<(Shape, usize), String> {
        infer(self.units, input)
    }

    fn init(&self, init: &mut Init, input: Shape, name: &str) -> Result<Params> {
        self::init(init, input.size(), self.units, name)
    }

    fn plan(&self, _input: Shape) -> PlanKind {
        PlanKind::Dense { relu: true }
    }

    fn kernel(&self, _mode: Mode) -> &'static str {
        "linear"
    }

    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        forward(x, ctx, true)
    }

    fn onnx(&self, graph: &mut Graph, prefix: &str, x: String) -> Result<String> {
        let y = graph.dense(prefix, x)?;
        Ok(graph.node("Relu", vec![y], vec![]))
    }

    fn role(&self) -> Role {
        Role::End
    }
}

impl Kind for Output {
    fn label(&self) -> String {
        "output".into()
    }

    fn words(&self) -> String {
        "output".into()
    }

    fn help(&self) -> &'static [Help] {
        &[]
    }

    fn keras(&self) -> &'static str {
        "Dense"
    }

    fn takes_flat(&self) -> bool {
        true
    }

    fn infer(&self, input: Shape) -> std::result::Result<(Shape, usize), String> {
        infer(self.classes, input)
    }

    fn init(&self, init: &mut Init, input: Shape, name: &str) -> Result<Params> {
        self::init(init, input.size(), self.classes, name)
    }

    fn plan(&self, _input: Shape) -> PlanKind {
        PlanKind::Dense { relu: false }
    }

    fn kernel(&self, _mode: Mode) -> &'static str {
        "linear"
    }

    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        forward(x, ctx, false)
    }

    fn onnx(&self, graph: &mut Graph, prefix: &str, x: String) -> Result<String> {
        graph.dense(prefix, x)
    }

    fn role(&self) -> Role {
        Role::End
    }
}
