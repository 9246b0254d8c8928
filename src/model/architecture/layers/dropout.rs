//! Dropout, active in training only (Keras `Dropout(rate)`).

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
pub const HELP: Help =
    Help { words: &["dropout"], text: "dropout P: drops a share P of the values, in training only." };

/// Drops a share `rate` of the values in training (and scales the rest up); does nothing in
/// inference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Dropout {
    /// The share dropped, in [0, 1).
    pub rate: f32,
}

impl Default for Dropout {
    /// A rate of 0.5, PyTorch's default.
    fn default() -> Dropout {
        Dropout { rate: 0.5 }
    }
}

impl Kind for Dropout {
    fn label(&self) -> String {
        format!("dropout{}", self.rate)
    }

    fn words(&self) -> String {
        format!("dropout {}", self.rate)
    }

    fn help(&self) -> &'static [Help] {
        &[HELP]
    }

    fn keras(&self) -> &'static str {
        "Dropout"
    }

    fn infer(&self, input: Shape) -> std::result::Result<(Shape, usize), String> {
        if !(0.0..1.0).contains(&self.rate) {
            return Err(format!("dropout rate {} is outside [0, 1)", self.rate));
        }
        Ok((input, 0))
    }

    fn init(&self, _init: &mut Init, _input: Shape, _name: &str) -> Result<Params> {
        Ok(Params::default())
    }

    fn plan(&self, _input: Shape) -> PlanKind {
        PlanKind::Dropout(self.rate)
    }

    fn kernel(&self, _mode: Mode) -> &'static str {
        "dropout"
    }

    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        Ok(kernels::dropout(x, self.rate, (ctx.dropout_key)())?)
    }

    fn onnx(&self, _graph: &mut Graph, _prefix: &str, x: String) -> Result<String> {
        Ok(x)
    }

    fn role(&self) -> Role {
        Role::Between
    }
}
