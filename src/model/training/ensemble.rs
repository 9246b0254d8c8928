//! Ensembles: several networks of the same inputs and classes classify an image by the mean
//! of their class probabilities (softmaxes), as An et al. and Deotte average their MNIST
//! models. One network is an ensemble of one, evaluated exactly as on its own.

use crate::data::{ImageFormat, PixelScaling, Split};
use crate::model::architecture::network::Network;
use crate::model::error::{ModelError, Result};
use crate::model::training::train::{check_split, evaluate_mapped, predict_probs, Evaluation, LabelMap};
use crate::model::training::tta;

/// Refuses members that do not take the same images or give the same number of classes,
/// naming the first that differs (1-based).
pub fn check_members(nets: &[&Network]) -> Result<()> {
    let Some(first) = nets.first() else {
        return Err(ModelError::Data("an ensemble needs at least one model".into()));
    };
    for (i, net) in nets.iter().enumerate().skip(1) {
        if net.input() != first.input() || net.classes() != first.classes() {
            let ((c, h, w), (c1, h1, w1)) = (net.input(), first.input());
            return Err(ModelError::Data(format!(
                "member {} takes {c}×{h}×{w} images and gives {} classes, member 1 {c1}×{h1}×{w1} and {}",
                i + 1,
                net.classes(),
                first.classes()
            )));
        }
    }
    Ok(())
}

/// The mean over `nets` of each image's class probabilities (with test-time augmentation
/// when `tta`: each member's own five-view mean, see [`tta::mean_probs`]).
pub fn mean_probs(nets: &[&Network], images: &[u8], scaling: PixelScaling, tta: bool) -> Result<Vec<Vec<f32>>> {
    check_members(nets)?;
    let probs =
        |net: &Network| if tta { tta::mean_probs(net, images, scaling) } else { predict_probs(net, images, scaling) };
    let mut sum = probs(nets[0])?;
    if nets.len() == 1 {
        return Ok(sum);
    }
    for net in &nets[1..] {
        for (total, p) in sum.iter_mut().zip(probs(net)?) {
            total.iter_mut().zip(p).for_each(|(t, v)| *t += v);
        }
    }
    let n = nets.len() as f32;
    sum.iter_mut().for_each(|p| p.iter_mut().for_each(|v| *v /= n));
    Ok(sum)
}

/// Loss, accuracy and confusion of `nets` on `split`: for one network without `tta` exactly
/// [`evaluate_mapped`] at `batch`; else predictions are the argmax of [`mean_probs`] and the
/// loss is the mean negative log of the probability given to the true class.
pub fn evaluate(
    nets: &[&Network],
    split: &Split,
    format: ImageFormat,
    (batch, tta): (usize, bool),
    labels: &LabelMap,
) -> Result<Evaluation> {
    check_members(nets)?;
    if let ([net], false) = (nets, tta) {
        return evaluate_mapped(net, split, format, batch, labels);
    }
    for net in nets {
        check_split(net, split, format, labels, "evaluated")?;
    }
    let probs = mean_probs(nets, &split.pixels, format.scaling, tta)?;
    let truth = labels.outputs(split, &(0..split.len()).collect::<Vec<_>>());
    Ok(Evaluation::from_probs(&probs, &truth, nets[0].classes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::architecture::spec::preset;
    use crate::model::training::train::tests::{mnist, mnist_format};
    use candle_core::Device;

    #[test]
    fn the_ensemble_averages_its_members_probabilities() {
        let spec = preset("seed-small").unwrap();
        let a = Network::new(&spec, (1, 28, 28), 10, &Device::Cpu, 1).unwrap();
        let b = Network::new(&spec, (1, 28, 28), 10, &Device::Cpu, 2).unwrap();
        let test = mnist(false, 30);
        let scaling = PixelScaling::Unit;
        let (pa, pb) =
            (predict_probs(&a, &test.pixels, scaling).unwrap(), predict_probs(&b, &test.pixels, scaling).unwrap());
        let both = mean_probs(&[&a, &b], &test.pixels, scaling, false).unwrap();
        for ((m, x), y) in both.iter().zip(&pa).zip(&pb) {
            for c in 0..10 {
                assert!((m[c] - (x[c] + y[c]) / 2.0).abs() < 1e-6);
            }
        }
        // The evaluation scores those means; one member alone is scored as on its own.
        let labels = LabelMap::identity();
        let e = evaluate(&[&a, &b], &test, mnist_format(scaling), (32, false), &labels).unwrap();
        let truth = labels.outputs(&test, &(0..test.len()).collect::<Vec<_>>());
        let right =
            both.iter().zip(&truth).filter(|(p, &t)| crate::model::training::train::argmax(p) == t as usize).count();
        assert_eq!(e.accuracy, right as f32 / test.len() as f32);
        let alone = evaluate(&[&a], &test, mnist_format(scaling), (32, false), &labels).unwrap();
        assert_eq!(alone.accuracy, evaluate_mapped(&a, &test, mnist_format(scaling), 32, &labels).unwrap().accuracy);
        // Members must agree on inputs and classes.
        let five = Network::new(&spec, (1, 28, 28), 5, &Device::Cpu, 3).unwrap();
        let e = check_members(&[&a, &five]).unwrap_err().to_string();
        assert!(e.contains("member 2") && e.contains("5 classes"), "{e}");
    }
}
