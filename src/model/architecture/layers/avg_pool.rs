//! 2 × 2 average pooling, stride 2 (Keras `AveragePooling2D()`).

use candle_core::Tensor;

use super::init::Init;
use super::kind::{Ctx, Help, Kind, Mode, Params, Role};
use super::max_pool::pooled;
use super::shape::Shape;
use crate::kernels;
use crate::model::architecture::plan::PlanKind;
use crate::model::error::Result;
use crate::model::files::onnx::{ints, Graph};

/// Its words on a `model` line, for `help`.
pub const HELP: Help = Help { words: &["avgpool"], text: "avgpool: 2×2 average pooling, stride 2." };

/// 2 × 2 average pooling, stride 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvgPool;

impl Kind for AvgPool {
    fn label(&self) -> String {
        "avgpool".into()
    }

    fn words(&self) -> String {
        "avgpool".into()
    }

    fn help(&self) -> &'static [Help] {
        &[HELP]
    }

    fn keras(&self) -> &'static str {
        "AveragePooling2D"
    }

    fn infer(&self, input: Shape) -> std::result::Result<(Shape, usize), String> {
        pooled(input)
    }

    fn init(&self, _init: &mut Init, _input: Shape, _name: &str) -> Result<Params> {
        Ok(Params::default())
    }

    fn plan(&self, _input: Shape) -> PlanKind {
        PlanKind::Alone
    }

    fn kernel(&self, _mode: Mode) -> &'static str {
        "avg_pool2d"
    }

    fn forward(&self, x: &Tensor, _ctx: &Ctx) -> Result<Tensor> {
        Ok(kernels::avg_pool2d(x, 2)?)
    }

    fn onnx(&self, graph: &mut Graph, _prefix: &str, x: String) -> Result<String> {
        Ok(graph.node("AveragePool", vec![x], vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])]))
    }

    fn role(&self) -> Role {
        Role::Between
    }
}
