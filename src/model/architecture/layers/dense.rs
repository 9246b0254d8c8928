//! The fully connected layer: a hidden one with ReLU (Keras `Dense(units, activation='relu')`)
//! and the output layer, one unit per class and no activation (the logits), with a bias or
//! without, and optionally a batch norm on the logits (An et al.'s M-models).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::batch_norm::BatchNorm;
use super::conv::{is_yes, switch_labels, switch_words, yes};
use super::init::Init;
use super::kind::{Ctx, Help, Kind, Mode, Params, Role};
use super::shape::Shape;
use crate::kernels;
use crate::model::architecture::plan::PlanKind;
use crate::model::error::Result;
use crate::model::files::onnx::{float, Graph};

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

/// Its options' words at the end of a `model` line, for `help`.
pub const OUTPUT_HELP: Help = Help {
    words: &["output"],
    text: "output [nobias] [bn]: at the end of a `model` line, how the output layer (one unit per class, no activation) is built: `nobias` leaves its bias out, `bn` puts a batch norm on the logits (as An et al.'s M-models do); without it the output layer has a bias and no batch norm.",
};

/// The output layer: one unit per class, no activation (logits), appended to every network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    /// The number of classes.
    pub classes: usize,
    /// How it is built.
    pub style: OutputStyle,
}

/// How the output layer is built: with a bias or without, with a batch norm on the logits or
/// without.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputStyle {
    /// Whether a bias is added.
    #[serde(default = "yes")]
    pub bias: bool,
    /// Whether a batch norm follows (its parameters `out.norm_weight`, `out.norm_bias` and
    /// moving statistics `out.running_mean`, `out.running_var`).
    #[serde(default)]
    pub batch_norm: bool,
}

impl Default for OutputStyle {
    /// A bias and no batch norm, like Keras' `Dense(classes)`.
    fn default() -> OutputStyle {
        OutputStyle { bias: true, batch_norm: false }
    }
}

impl OutputStyle {
    /// Whether it is the default (a bias, no batch norm).
    pub fn is_default(&self) -> bool {
        *self == OutputStyle::default()
    }

    /// Its words after `output` (` nobias bn`), empty for the default.
    fn words(&self) -> String {
        let mut out = String::new();
        if !self.bias {
            out.push_str(" nobias");
        }
        if self.batch_norm {
            out.push_str(" bn");
        }
        out
    }
}

impl Output {
    /// The output layer for `classes` classes, with a bias and no batch norm.
    pub fn plain(classes: usize) -> Output {
        Output { classes, style: OutputStyle::default() }
    }

    /// Its batch norm's parameters under the names [`BatchNorm`] reads (`weight`, `bias`,
    /// `running_mean`, `running_var`), sharing storage with `params`.
    fn norm_params(params: &Params) -> Result<Params> {
        let mut out = Vec::with_capacity(4);
        for (part, own) in [
            ("weight", "norm_weight"),
            ("bias", "norm_bias"),
            ("running_mean", "running_mean"),
            ("running_var", "running_var"),
        ] {
            out.push((part, params.var(own)?.clone()));
        }
        Ok(Params(out))
    }
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
    Ok(kernels::linear(x, &ctx.param("weight")?, ctx.bias()?.as_ref(), relu, ctx.precision)?)
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
        let mut extra = Vec::new();
        if !self.style.bias {
            extra.push("nobias");
        }
        if self.style.batch_norm {
            extra.push("bn");
        }
        if extra.is_empty() {
            "output".into()
        } else {
            format!("output({})", extra.join(","))
        }
    }

    fn words(&self) -> String {
        format!("output{}", self.style.words())
    }

    fn help(&self) -> &'static [Help] {
        &[OUTPUT_HELP]
    }

    fn keras(&self) -> &'static str {
        "Dense"
    }

    fn takes_flat(&self) -> bool {
        true
    }

    fn infer(&self, input: Shape) -> std::result::Result<(Shape, usize), String> {
        let (shape, params) = infer(self.classes, self.style.bias, input)?;
        let norm = if self.style.batch_norm { self.classes.saturating_mul(4) } else { 0 };
        Ok((shape, params.saturating_add(norm)))
    }

    fn statistics(&self, _params: usize) -> usize {
        if self.style.batch_norm {
            self.classes * 2
        } else {
            0
        }
    }

    fn init(&self, init: &mut Init, input: Shape, name: &str) -> Result<Params> {
        let mut params = self::init(init, input.size(), (self.classes, self.style.bias), name)?;
        if self.style.batch_norm {
            let n = [self.classes];
            for (part, value) in [("norm_weight", 1.0), ("norm_bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)]
            {
                params.0.push((part, init.constant(&format!("{name}.{part}"), &n, value)?));
            }
        }
        Ok(params)
    }

    fn plan(&self, _input: Shape) -> PlanKind {
        if self.style.batch_norm {
            PlanKind::Alone
        } else {
            PlanKind::Dense { relu: false }
        }
    }

    fn kernel(&self, mode: Mode) -> &'static str {
        if !self.style.batch_norm {
            return "linear";
        }
        match (mode.fast, mode.train && !mode.frozen) {
            (true, true) => "linear, batch_norm_train",
            (true, false) => "linear, batch_norm_fixed",
            (false, _) => "linear, batch_norm (candle)",
        }
    }

    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        let y = forward(x, ctx, false)?;
        if !self.style.batch_norm {
            return Ok(y);
        }
        let norm = Output::norm_params(ctx.params)?;
        BatchNorm
            .forward(&y, &Ctx { params: &norm, mode: ctx.mode, dropout_key: ctx.dropout_key, precision: ctx.precision })
    }

    fn onnx(&self, graph: &mut Graph, prefix: &str, x: String) -> Result<String> {
        let y = graph.dense(prefix, x)?;
        if !self.style.batch_norm {
            return Ok(y);
        }
        let mut inputs = vec![y];
        for part in ["norm_weight", "norm_bias", "running_mean", "running_var"] {
            inputs.push(graph.stored(&format!("{prefix}.{part}"))?);
        }
        let eps = super::batch_norm::BN_EPS as f32;
        Ok(graph.node("BatchNormalization", inputs, vec![float("epsilon", eps)]))
    }

    fn role(&self) -> Role {
        Role::End
    }
}
