//! The flatten implied before the first layer that takes a flat vector (Keras `Flatten()`).

use candle_core::Tensor;

use super::init::Init;
use super::kind::{Ctx, Help, Kind, Mode, Params, Role};
use super::shape::Shape;
use crate::model::architecture::plan::PlanKind;
use crate::model::error::Result;
use crate::model::files::onnx::{int, Graph};

/// An image made a flat vector: never written on a `model` line, always implied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flatten;

impl Kind for Flatten {
    fn label(&self) -> String {
        "flatten".into()
    }

    fn words(&self) -> String {
        "flatten".into()
    }

    fn help(&self) -> &'static [Help] {
        &[]
    }

    fn keras(&self) -> &'static str {
        "Flatten"
    }

    fn infer(&self, input: Shape) -> std::result::Result<(Shape, usize), String> {
        Ok((Shape::Flat(input.size()), 0))
    }

    fn init(&self, _init: &mut Init, _input: Shape, _name: &str) -> Result<Params> {
        Ok(Params::default())
    }

    fn plan(&self, _input: Shape) -> PlanKind {
        PlanKind::Flatten
    }

    fn kernel(&self, _mode: Mode) -> &'static str {
        "flatten"
    }

    fn forward(&self, x: &Tensor, _ctx: &Ctx) -> Result<Tensor> {
        Ok(x.flatten_from(1)?)
    }

    fn onnx(&self, graph: &mut Graph, _prefix: &str, x: String) -> Result<String> {
        Ok(graph.node("Flatten", vec![x], vec![int("axis", 1)]))
    }

    fn role(&self) -> Role {
        Role::End
    }
}
