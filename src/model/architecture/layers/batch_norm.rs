//! Batch normalization over the channels of an image or the values of a vector (Keras
//! `BatchNormalization()`, with PyTorch's momentum so that short runs get usable moving
//! statistics).

use candle_core::{Device, ModuleT, Tensor};

use super::init::Init;
use super::kind::{Ctx, Help, Kind, Mode, Params, Role};
use super::shape::Shape;
use crate::kernels;
use crate::model::architecture::plan::PlanKind;
use crate::model::error::Result;
use crate::model::files::onnx::{float, Graph};

/// Its words on a `model` line, for `help`.
pub const HELP: Help =
    Help { words: &["bn"], text: "bn: batch normalization over the channels (or the values after flattening)." };

/// Batch-norm momentum in candle's convention (weight of the new batch statistic): 0.1, as
/// in PyTorch.
pub const BN_MOMENTUM: f64 = 0.1;
/// Batch-norm epsilon, as in Keras.
pub const BN_EPS: f64 = 1e-3;

/// Batch normalization; in training it normalizes by the batch's statistics and updates the
/// moving ones, in inference (or frozen) it uses the moving ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchNorm;

impl Kind for BatchNorm {
    fn label(&self) -> String {
        "batchnorm".into()
    }

    fn words(&self) -> String {
        "bn".into()
    }

    fn help(&self) -> &'static [Help] {
        &[HELP]
    }

    fn keras(&self) -> &'static str {
        "BatchNormalization"
    }

    fn infer(&self, input: Shape) -> std::result::Result<(Shape, usize), String> {
        Ok((input, input.features().saturating_mul(4)))
    }

    fn statistics(&self, params: usize) -> usize {
        params / 2
    }

    fn init(&self, init: &mut Init, input: Shape, name: &str) -> Result<Params> {
        let n = [input.features()];
        Ok(Params(vec![
            ("weight", init.constant(&format!("{name}.weight"), &n, 1.0)?),
            ("bias", init.constant(&format!("{name}.bias"), &n, 0.0)?),
            ("running_mean", init.constant(&format!("{name}.running_mean"), &n, 0.0)?),
            ("running_var", init.constant(&format!("{name}.running_var"), &n, 1.0)?),
        ]))
    }

    fn plan(&self, input: Shape) -> PlanKind {
        PlanKind::BatchNorm { image: matches!(input, Shape::Image(..)) }
    }

    fn kernel(&self, mode: Mode) -> &'static str {
        match Run::of(mode) {
            Run::Batch => "batch_norm_train",
            Run::Fixed => "batch_norm_fixed",
            Run::Frozen => "batch_norm (candle, frozen)",
            Run::Candle => "batch_norm (candle)",
        }
    }

    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        let p = ctx.params;
        let (gamma, beta) = (p.var("weight")?.as_tensor(), p.var("bias")?.as_tensor());
        match Run::of(ctx.mode) {
            Run::Batch => {
                let (y, stats) = kernels::batch_norm_train(x, gamma, beta, BN_EPS)?;
                update_moving_stats(p, stats.get().expect("the forward pass sets the statistics"), x.device())?;
                Ok(y)
            }
            Run::Fixed => fixed(p, x),
            Run::Frozen => frozen(p, x),
            Run::Candle => {
                let (mean, var) = (p.var("running_mean")?.as_tensor(), p.var("running_var")?.as_tensor());
                let (n, eps, momentum) = (gamma.dim(0)?, BN_EPS, BN_MOMENTUM);
                let (mean, var, gamma, beta) = (mean.clone(), var.clone(), gamma.clone(), beta.clone());
                let bn = candle_nn::BatchNorm::new_with_momentum(n, mean, var, gamma, beta, eps, momentum)?;
                Ok(bn.forward_t(x, ctx.mode.train)?)
            }
        }
    }

    fn onnx(&self, graph: &mut Graph, prefix: &str, x: String) -> Result<String> {
        let mut inputs = vec![x];
        for part in ["weight", "bias", "running_mean", "running_var"] {
            inputs.push(graph.stored(&format!("{prefix}.{part}"))?);
        }
        Ok(graph.node("BatchNormalization", inputs, vec![float("epsilon", BN_EPS as f32)]))
    }

    fn role(&self) -> Role {
        Role::Features
    }
}

/// How a batch norm runs in a mode.
enum Run {
    /// Batch statistics through the fused CPU op, moving statistics updated (training).
    Batch,
    /// Moving statistics through the fused CPU op (inference, or frozen).
    Fixed,
    /// Moving statistics with candle's ops and detached parameters (frozen, training, off the
    /// fused path).
    Frozen,
    /// candle's own batch norm (off the fused path).
    Candle,
}

impl Run {
    /// The way to run in `mode`. A frozen batch norm runs in inference mode (as in Keras):
    /// moving statistics neither used from the batch nor updated.
    fn of(mode: Mode) -> Run {
        match (mode.train, mode.frozen, mode.fast) {
            (true, false, true) => Run::Batch,
            (_, _, true) => Run::Fixed,
            (true, true, false) => Run::Frozen,
            _ => Run::Candle,
        }
    }
}

/// candle's moving-average update of a batch norm's statistics from one batch's (momentum
/// [`BN_MOMENTUM`], the variance made unbiased as candle does).
pub fn update_moving_stats(params: &Params, stats: &kernels::BatchStats, device: &Device) -> Result<()> {
    let unbias = if stats.count > 1 { stats.count as f64 / (stats.count - 1) as f64 } else { 1.0 };
    for (part, batch, factor) in [("running_mean", &stats.mean, 1.0), ("running_var", &stats.var, unbias)] {
        let var = params.var(part)?;
        let old: Vec<f32> = var.as_tensor().to_vec1()?;
        let new: Vec<f32> = old
            .iter()
            .zip(batch)
            .map(|(&r, &b)| ((1.0 - BN_MOMENTUM) * r as f64 + BN_MOMENTUM * factor * b as f64) as f32)
            .collect();
        var.set(&Tensor::from_vec(new, old.len(), device)?)?;
    }
    Ok(())
}

/// Batch norm with the moving statistics (inference, or a frozen layer) through the fused op;
/// no gradient reaches its parameters.
fn fixed(p: &Params, x: &Tensor) -> Result<Tensor> {
    let v = |part: &str| -> Result<Vec<f32>> { Ok(p.var(part)?.as_tensor().to_vec1::<f32>()?) };
    let (gamma, beta, mean, var) = (v("weight")?, v("bias")?, v("running_mean")?, v("running_var")?);
    Ok(kernels::batch_norm_fixed(x, &gamma, &beta, &mean, &var, BN_EPS)?)
}

/// Batch norm in inference mode with detached parameters: the same operations as candle's
/// evaluation path, so a frozen layer gives the outputs it gives in eval mode.
fn frozen(p: &Params, x: &Tensor) -> Result<Tensor> {
    let shape: Vec<usize> = x.dims().iter().enumerate().map(|(i, &d)| if i == 1 { d } else { 1 }).collect();
    let t = |part: &str| -> Result<Tensor> { Ok(p.var(part)?.as_tensor().detach().reshape(shape.as_slice())?) };
    let x = x.broadcast_sub(&t("running_mean")?)?.broadcast_div(&(t("running_var")? + BN_EPS)?.sqrt()?)?;
    Ok(x.broadcast_mul(&t("weight")?)?.broadcast_add(&t("bias")?)?)
}
