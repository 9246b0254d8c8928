//! Global average pooling: the mean over each channel (Keras `GlobalAveragePooling2D()`).

use candle_core::Tensor;

use super::init::Init;
use super::kind::{Ctx, Help, Kind, Mode, Params, Role};
use super::shape::Shape;
use crate::kernels;
use crate::model::architecture::plan::PlanKind;
use crate::model::error::Result;
use crate::model::files::onnx::{int, Graph};

/// Its words on a `model` line, for `help`.
pub const HELP: Help = Help { words: &["gap"], text: "gap: global average pooling, one value per channel." };

/// The mean over the spatial dimensions: `C×H×W` becomes `C` features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalAvgPool;

impl Kind for GlobalAvgPool {
    fn label(&self) -> String {
        "globalavgpool".into()
    }

    fn words(&self) -> String {
        "gap".into()
    }

    fn help(&self) -> &'static [Help] {
        &[HELP]
    }

    fn keras(&self) -> &'static str {
        "GlobalAveragePooling2D"
    }

    fn infer(&self, input: Shape) -> std::result::Result<(Shape, usize), String> {
        let Shape::Image(c, _, _) = input else {
            return Err("global pooling needs an image input, not a flat vector".into());
        };
        Ok((Shape::Flat(c), 0))
    }

    fn init(&self, _init: &mut Init, _input: Shape, _name: &str) -> Result<Params> {
        Ok(Params::default())
    }

    fn plan(&self, _input: Shape) -> PlanKind {
        PlanKind::Alone
    }

    fn kernel(&self, _mode: Mode) -> &'static str {
        "global_avg_pool"
    }

    fn forward(&self, x: &Tensor, _ctx: &Ctx) -> Result<Tensor> {
        Ok(kernels::global_avg_pool(x)?)
    }

    fn onnx(&self, graph: &mut Graph, _prefix: &str, x: String) -> Result<String> {
        let y = graph.node("GlobalAveragePool", vec![x], vec![]);
        Ok(graph.node("Flatten", vec![y], vec![int("axis", 1)]))
    }

    fn role(&self) -> Role {
        Role::End
    }
}
