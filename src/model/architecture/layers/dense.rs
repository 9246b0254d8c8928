//! The fully connected layer: a hidden one with ReLU (Keras `Dense(units, activation='relu')`)
//! and the output layer, one unit per class and no activation (the logits).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::conv::{is_yes, switch_labels, switch_words, yes};
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
    text: "denseN: a fully connected layer of N units with bias, followed by ReLU; flatten is implied before the first one, and the output layer (one unit per class) follows the last; `nobias` after it leaves the bias out, `norelu` the ReLU.",
};

/// A hidden fully connected layer of `units` units with bias, followed by ReLU (either can be
/// left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Saved", into = "Saved")]
pub struct Dense {
    /// The number of units.
    pub units: usize,
    /// Whether a bias is added.
    pub bias: bool,
    /// Whether ReLU follows.
    pub relu: bool,
}

/// How a dense layer is saved: its units alone when bias and ReLU are on (as every spec saved
/// before they could be left out), else all three.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Saved {
    /// Units, with bias and ReLU.
    Units(usize),
    /// Every setting.
    Full {
        /// The number of units.
        units: usize,
        /// Whether a bias is added.
        #[serde(default = "yes", skip_serializing_if = "is_yes")]
        bias: bool,
        /// Whether ReLU follows.
        #[serde(default = "yes", skip_serializing_if = "is_yes")]
        relu: bool,
    },
}

impl From<Saved> for Dense {
    fn from(saved: Saved) -> Dense {
        match saved {
            Saved::Units(units) => Dense { units, bias: true, relu: true },
            Saved::Full { units, bias, relu } => Dense { units, bias, relu },
        }
    }
}

impl From<Dense> for Saved {
    fn from(dense: Dense) -> Saved {
        let Dense { units, bias, relu } = dense;
        if bias && relu {
            Saved::Units(units)
        } else {
            Saved::Full { units, bias, relu }
        }
    }
}

/// The output layer: one unit per class, no activation (logits), appended to every network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    /// The number of classes.
    pub classes: usize,
}

impl Default for Dense {
    /// 128 units, bias and ReLU.
    fn default() -> Dense {
        Dense { units: 128, bias: true, relu: true }
    }
}

/// Output shape and parameter count of `units` units (with a bias when `bias`) on `input`.
fn infer(units: usize, bias: bool, input: Shape) -> std::result::Result<(Shape, usize), String> {
    if units == 0 {
        return Err("a dense layer needs at least one unit".into());
    }
    let weights = input.size().saturating_mul(units);
    Ok((Shape::Flat(units), weights.saturating_add(if bias { units } else { 0 })))
}

/// A Glorot-uniform weight `[units, inputs]` and (when `bias`) a zero bias, named `name.*`.
pub fn init(init: &mut Init, inputs: usize, (units, bias): (usize, bool), name: &str) -> Result<Params> {
    let weight = init.glorot(&format!("{name}.weight"), &[units, inputs], inputs, units)?;
    let mut params = vec![("weight", weight)];
    if bias {
        params.push(("bias", init.constant(&format!("{name}.bias"), &[units], 0.0)?));
    }
    Ok(Params(params))
}

/// The product, bias and (with `relu`) ReLU through the fused op.
fn forward(x: &Tensor, ctx: &Ctx, relu: bool) -> Result<Tensor> {
    Ok(kernels::linear(x, &ctx.param("weight")?, ctx.bias()?.as_ref(), relu)?)
}

impl Kind for Dense {
    fn label(&self) -> String {
        let extra: Vec<&str> = switch_labels(self.bias, self.relu).collect();
        if extra.is_empty() {
            format!("dense{}", self.units)
        } else {
            format!("dense{}({})", self.units, extra.join(","))
        }
    }

    fn words(&self) -> String {
        format!("dense{}{}", self.units, switch_words(self.bias, self.relu))
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

    fn ends_with_relu(&self) -> bool {
        self.relu
    }

    fn infer(&self, input: Shape) -> std::result::Result<(Shape, usize), String> {
        infer(self.units, self.bias, input)
    }

    fn init(&self, init: &mut Init, input: Shape, name: &str) -> Result<Params> {
        self::init(init, input.size(), (self.units, self.bias), name)
    }

    fn plan(&self, _input: Shape) -> PlanKind {
        PlanKind::Dense { relu: self.relu }
    }

    fn kernel(&self, _mode: Mode) -> &'static str {
        "linear"
    }

    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        forward(x, ctx, self.relu)
    }

    fn onnx(&self, graph: &mut Graph, prefix: &str, x: String) -> Result<String> {
        let y = graph.dense(prefix, x)?;
        Ok(if self.relu { graph.node("Relu", vec![y], vec![]) } else { y })
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
        infer(self.classes, true, input)
    }

    fn init(&self, init: &mut Init, input: Shape, name: &str) -> Result<Params> {
        self::init(init, input.size(), (self.classes, true), name)
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
