//! The 2-D convolution with bias and ReLU (Keras `Conv2D(filters, kernel, activation='relu')`).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::init::Init;
use super::kind::{Ctx, Help, Kind, Mode, Params, Role};
use super::shape::Shape;
use crate::kernels;
use crate::model::architecture::plan::{ConvPlan, PlanKind};
use crate::model::error::Result;
use crate::model::files::onnx::{ints, Graph};

/// Its words on a `model` line, for `help`.
pub const HELP: Help = Help {
    words: &["conv", "convn", "convnk5", "stride", "nobias", "norelu"],
    text: "convN: a convolution of N filters, 3×3 and unpadded, with bias, followed by ReLU; convNkK for a K×K kernel (1 to 7); after it, `same` pads so that the image keeps its size (divided by the stride), `stride S` steps S pixels (2 halves the image, a learned pooling), `nobias` leaves the bias out and `norelu` the ReLU (for conv nobias norelu, bn, relu).",
};

/// The words of `same`, for `help`.
pub const SAME_HELP: Help =
    Help { words: &["same"], text: "same, after convN: pad the convolution so that the image keeps its size." };

/// A 2-D convolution with bias, followed by ReLU (either can be left out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conv {
    /// Number of output channels.
    pub filters: usize,
    /// Kernel side: 1 to 7.
    pub kernel: usize,
    /// Keras `padding='same'` when true (`kernel / 2` zeros on every side), `'valid'` when false.
    pub same_padding: bool,
    /// The step between windows, in both directions.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub stride: usize,
    /// Whether a bias is added (PyTorch's `bias=True`).
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub bias: bool,
    /// Whether ReLU follows.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub relu: bool,
}

/// A stride of 1: what a saved spec without one means (so specs saved before strides existed
/// read as they were written, and a default layer is saved as it always was).
fn one() -> usize {
    1
}

/// Whether `n` is the default stride.
fn is_one(n: &usize) -> bool {
    *n == 1
}

/// Bias and ReLU on: what a saved spec without them means.
pub(super) fn yes() -> bool {
    true
}

/// The words that leave out a layer's bias and ReLU, each after a space (` nobias norelu`),
/// for the switches that are off.
pub(super) fn switch_words(bias: bool, relu: bool) -> String {
    [(!bias, " nobias"), (!relu, " norelu")].iter().filter(|(off, _)| *off).map(|(_, w)| *w).collect()
}

/// The label parts of the switches that are off: `no bias`, `no relu`.
pub(super) fn switch_labels(bias: bool, relu: bool) -> impl Iterator<Item = &'static str> {
    [(!bias, "no bias"), (!relu, "no relu")].into_iter().filter(|(off, _)| *off).map(|(_, w)| w)
}

/// Whether a switch is at its default, on.
pub(super) fn is_yes(b: &bool) -> bool {
    *b
}

impl Default for Conv {
    /// `conv32`: 32 filters, 3 × 3, unpadded (Keras' `'valid'`), stride 1, bias and ReLU.
    fn default() -> Conv {
        Conv { filters: 32, kernel: 3, same_padding: false, stride: 1, bias: true, relu: true }
    }
}

impl Conv {
    /// The padding on each side: half the kernel with `same`, none without.
    pub fn padding(&self) -> usize {
        if self.same_padding {
            self.kernel / 2
        } else {
            0
        }
    }
}

impl Kind for Conv {
    fn label(&self) -> String {
        let mut extra = Vec::new();
        if self.kernel != 3 {
            extra.push(format!("{0}×{0}", self.kernel));
        }
        if self.same_padding {
            extra.push("same".to_string());
        }
        if self.stride != 1 {
            extra.push(format!("stride {}", self.stride));
        }
        extra.extend(switch_labels(self.bias, self.relu).map(str::to_string));
        if extra.is_empty() {
            format!("conv{}", self.filters)
        } else {
            format!("conv{}({})", self.filters, extra.join(","))
        }
    }

    fn words(&self) -> String {
        let mut words = format!("conv{}", self.filters);
        if self.kernel != 3 {
            words.push_str(&format!("k{}", self.kernel));
        }
        if self.same_padding {
            words.push_str(" same");
        }
        if self.stride != 1 {
            words.push_str(&format!(" stride {}", self.stride));
        }
        words + &switch_words(self.bias, self.relu)
    }

    fn help(&self) -> &'static [Help] {
        &[HELP, SAME_HELP]
    }

    fn keras(&self) -> &'static str {
        "Conv2D"
    }

    fn ends_with_relu(&self) -> bool {
        self.relu
    }

    fn infer(&self, input: Shape) -> std::result::Result<(Shape, usize), String> {
        let Conv { filters, kernel, stride, .. } = *self;
        let Shape::Image(c, h, w) = input else {
            return Err("a convolution cannot follow a dense or global pooling layer".into());
        };
        if !(1..=7).contains(&kernel) {
            return Err(format!("kernel size {kernel} is not supported (1 to 7)"));
        }
        if !(1..=4).contains(&stride) {
            return Err(format!("stride {stride} is not supported (1 to 4)"));
        }
        if filters == 0 {
            return Err("a convolution needs at least one filter".into());
        }
        if self.same_padding && kernel % 2 == 0 {
            return Err(format!("`same` needs an odd kernel: {kernel}×{kernel} cannot keep the size"));
        }
        let pad = self.padding();
        if h + 2 * pad < kernel || w + 2 * pad < kernel {
            return Err(format!("input {h}×{w} is smaller than the {kernel}×{kernel} kernel"));
        }
        let (oh, ow) = ((h + 2 * pad - kernel) / stride + 1, (w + 2 * pad - kernel) / stride + 1);
        let weights = (kernel * kernel).saturating_mul(c).saturating_mul(filters);
        Ok((Shape::Image(filters, oh, ow), weights.saturating_add(if self.bias { filters } else { 0 })))
    }

    fn scratch(&self, input: Shape, output: Shape) -> u64 {
        let Shape::Image(_, h, w) = output else { return 0 };
        crate::budget::product(&[(self.kernel * self.kernel) as u64, input.features() as u64, (h * w) as u64])
    }

    fn init(&self, init: &mut Init, input: Shape, name: &str) -> Result<Params> {
        let (c, k, f) = (input.features(), self.kernel, self.filters);
        let weight = init.glorot(&format!("{name}.weight"), &[f, c, k, k], c * k * k, f * k * k)?;
        let mut params = vec![("weight", weight)];
        if self.bias {
            params.push(("bias", init.constant(&format!("{name}.bias"), &[f], 0.0)?));
        }
        Ok(Params(params))
    }

    fn plan(&self, _input: Shape) -> PlanKind {
        let Conv { stride, bias, relu, .. } = *self;
        PlanKind::Conv(ConvPlan { padding: self.padding(), stride, bias, relu })
    }

    fn kernel(&self, _mode: Mode) -> &'static str {
        "conv2d"
    }

    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        let bias = if self.bias { Some(ctx.param("bias")?) } else { None };
        Ok(kernels::conv2d(
            x,
            &ctx.param("weight")?,
            bias.as_ref(),
            (self.padding(), self.stride, self.relu),
            ctx.precision,
        )?)
    }

    fn onnx(&self, graph: &mut Graph, prefix: &str, x: String) -> Result<String> {
        let (k, p, s) = (self.kernel as i64, self.padding() as i64, self.stride as i64);
        let mut inputs = vec![x, graph.stored(&format!("{prefix}.weight"))?];
        if self.bias {
            inputs.push(graph.stored(&format!("{prefix}.bias"))?);
        }
        let attrs = vec![ints("kernel_shape", &[k, k]), ints("pads", &[p, p, p, p]), ints("strides", &[s, s])];
        let y = graph.node("Conv", inputs, attrs);
        Ok(if self.relu { graph.node("Relu", vec![y], vec![]) } else { y })
    }

    fn role(&self) -> Role {
        Role::Features
    }
}
