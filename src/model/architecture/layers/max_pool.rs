//! 2 × 2 max pooling, stride 2 (Keras `MaxPooling2D()`).

use candle_core::Tensor;

use super::init::Init;
use super::kind::{Ctx, Help, Kind, Mode, Params, Role};
use super::shape::Shape;
use crate::kernels;
use crate::model::architecture::plan::PlanKind;
use crate::model::error::Result;
use crate::model::files::onnx::{ints, Graph};

/// Its words on a `model` line, for `help`.
pub const HELP: Help = Help { words: &["pool", "maxpool"], text: "pool: 2×2 max pooling, stride 2." };

/// 2 × 2 max pooling, stride 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool;

/// The 2 × 2 window's output shape on `input`, or why it cannot apply (shared with
/// [`super::avg_pool`]).
pub(super) fn pooled(input: Shape) -> std::result::Result<(Shape, usize), String> {
    let Shape::Image(c, h, w) = input else {
        return Err("pooling cannot follow a dense or global pooling layer".into());
    };
    if h < 2 || w < 2 {
        return Err(format!("input {h}×{w} is smaller than the 2×2 pooling window"));
    }
    Ok((Shape::Image(c, h / 2, w / 2), 0))
}

impl Kind for MaxPool {
    fn label(&self) -> String {
        "maxpool".into()
    }

    fn words(&self) -> String {
        "pool".into()
    }

    fn help(&self) -> &'static [Help] {
        &[HELP]
    }

    fn keras(&self) -> &'static str {
        "MaxPooling2D"
    }

    fn infer(&self, input: Shape) -> std::result::Result<(Shape, usize), String> {
        pooled(input)
    }

    fn init(&self, _init: &mut Init, _input: Shape, _name: &str) -> Result<Params> {
        Ok(Params::default())
    }

    fn plan(&self, _input: Shape) -> PlanKind {
        PlanKind::MaxPool
    }

    fn kernel(&self, _mode: Mode) -> &'static str {
        "max_pool2d"
    }

    fn forward(&self, x: &Tensor, _ctx: &Ctx) -> Result<Tensor> {
        Ok(kernels::max_pool2d(x, 2)?)
    }

    fn onnx(&self, graph: &mut Graph, _prefix: &str, x: String) -> Result<String> {
        Ok(graph.node("MaxPool", vec![x], vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])]))
    }

    fn role(&self) -> Role {
        Role::Between
    }
}
