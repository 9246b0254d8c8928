//! The 2-D convolution with bias and ReLU (Keras `Conv2D(filters, kernel, activation='relu')`).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::init::Init;
use super::kind::{Ctx, Help, Kind, Mode, Params, Role};
use super::shape::Shape;
use crate::kernels;
use crate::model::architecture::plan::PlanKind;
use crate::model::error::Result;
use crate::model::files::onnx::{ints, Graph};

/// Its words on a `model` line, for `help`.
pub const HELP: Help = Help {
    words: &["conv", "convn", "convnk5"],
    text: "convN: a convolution of N filters, 3×3 and unpadded, followed by ReLU; convNk5 for 5×5; `same` after it pads so that the image keeps its size.",
};

/// The words of `same`, for `help`.
pub const SAME_HELP: Help =
    Help { words: &["same"], text: "same, after convN: pad the convolution so that the image keeps its size." };

/// A 2-D convolution followed by ReLU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conv {
    /// Number of output channels.
    pub filters: usize,
    /// Kernel side: 3 or 5.
    pub kernel: usize,
    /// Keras `padding='same'` when true, `'valid'` when false.
    pub same_padding: bool,
}

impl Default for Conv {
    /// `conv32`: 32 filters, 3 × 3, unpadded (Keras' `'valid'`).
    fn default() -> Conv {
        Conv { filters: 32, kernel: 3, same_padding: false }
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
        if extra.is_empty() {
            format!("conv{}", self.filters)
        } else {
            format!("conv{}({})", self.filters, extra.join(","))
        }
    }

    fn words(&self) -> String {
        let kernel = if self.kernel == 3 { String::new() } else { format!("k{}", self.kernel) };
        format!("conv{}{kernel}{}", self.filters, if self.same_padding { " same" } else { "" })
    }

    fn help(&self) -> &'static [Help] {
        &[HELP, SAME_HELP]
    }

    fn keras(&self) -> &'static str {
        "Conv2D"
    }

    fn infer(&self, input: Shape) -> std::result::Result<(Shape, usize), String> {
        let Conv { filters, kernel, same_padding } = *self;
        let Shape::Image(c, h, w) = input else {
            return Err("a convolution cannot follow a dense or global pooling layer".into());
        };
        if kernel != 3 && kernel != 5 {
            return Err(format!("kernel size {kernel} is not supported (3 or 5)"));
        }
        if filters == 0 {
            return Err("a convolution needs at least one filter".into());
        }
        let (oh, ow) = if same_padding {
            (h, w)
        } else {
            if h < kernel || w < kernel {
                return Err(format!("input {h}×{w} is smaller than the {kernel}×{kernel} kernel"));
            }
            (h - kernel + 1, w - kernel + 1)
        };
        let params = (kernel * kernel).saturating_mul(c).saturating_mul(filters).saturating_add(filters);
        Ok((Shape::Image(filters, oh, ow), params))
    }

    fn scratch(&self, input: Shape, output: Shape) -> u64 {
        let Shape::Image(_, h, w) = output else { return 0 };
        crate::budget::product(&[(self.kernel * self.kernel) as u64, input.features() as u64, (h * w) as u64])
    }

    fn init(&self, init: &mut Init, input: Shape, name: &str) -> Result<Params> {
        let (c, k, f) = (input.features(), self.kernel, self.filters);
        let weight = init.glorot(&format!("{name}.weight"), &[f, c, k, k], c * k * k, f * k * k)?;
        let bias = init.constant(&format!("{name}.bias"), &[f], 0.0)?;
        Ok(Params(vec![("weight", weight), ("bias", bias)]))
    }

    fn plan(&self, _input: Shape) -> PlanKind {
        PlanKind::Conv { padding: self.padding() }
    }

    fn kernel(&self, _mode: Mode) -> &'static str {
        "conv2d"
    }

    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        let (weight, bias) = (ctx.param("weight")?, ctx.param("bias")?);
        Ok(kernels::conv2d(x, &weight, Some(&bias), self.padding(), 1, true)?)
    }

    fn onnx(&self, graph: &mut Graph, prefix: &str, x: String) -> Result<String> {
        let (k, p) = (self.kernel as i64, self.padding() as i64);
        let inputs = vec![x, graph.stored(&format!("{prefix}.weight"))?, graph.stored(&format!("{prefix}.bias"))?];
        let attrs = vec![ints("kernel_shape", &[k, k]), ints("pads", &[p, p, p, p]), ints("strides", &[1, 1])];
        let y = graph.node("Conv", inputs, attrs);
        Ok(graph.node("Relu", vec![y], vec![]))
    }

    fn role(&self) -> Role {
        Role::Features
    }
}
