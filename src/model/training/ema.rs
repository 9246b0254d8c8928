//! The exponential moving average of a network's trainable weights (`ema D`), as An et al.'s
//! MnistSimpleCNN and TensorFlow's `ExponentialMovingAverage` keep it: after every optimizer
//! step each trainable weight's average moves toward it, `avg = d·avg + (1 − d)·w`, with
//! `d = min(D, (1 + n) / (10 + n))` after step `n` (so the first steps are not dominated by the
//! initial weights). Batch-norm moving statistics are not averaged (they are no trainable
//! weights; the source keeps them as they are), and frozen layers are left out.

use candle_core::{Tensor, Var};

use crate::model::architecture::network::{Network, Weights};
use crate::model::error::{ModelError, Result};

/// The moving average of a network's trainable weights, by name.
pub struct Ema {
    decay: f64,
    average: Weights,
    /// The weights averaged, in the order of `average` (taken once: the trainable set does not
    /// change during a run).
    vars: Vec<Var>,
}

impl Ema {
    /// An average starting at `net`'s trainable weights, with decay `decay` in (0, 1).
    pub fn new(net: &Network, decay: f64) -> Result<Ema> {
        let named = net.trainable_named();
        let average = named.iter().map(|(name, var)| Ok((name.clone(), var.as_tensor().copy()?)));
        let average = average.collect::<Result<Weights>>()?;
        Ok(Ema { decay, average, vars: named.into_iter().map(|(_, var)| var).collect() })
    }

    /// An average taken up again from a checkpoint: `average` must name exactly `net`'s
    /// trainable weights.
    pub fn resume(net: &Network, decay: f64, average: Weights) -> Result<Ema> {
        let (names, vars): (Vec<String>, Vec<Var>) = net.trainable_named().into_iter().unzip();
        if names != average.iter().map(|(name, _)| name.clone()).collect::<Vec<_>>() {
            return Err(ModelError::Data("the checkpoint's moving average does not fit the model's weights".into()));
        }
        Ok(Ema { decay, average, vars })
    }

    /// The averaged weights, sorted by name.
    pub fn weights(&self) -> &Weights {
        &self.average
    }

    /// Moves the average toward the network's weights after optimizer step `step` (1-based).
    pub fn update(&mut self, step: usize) -> Result<()> {
        let d = self.decay.min((1.0 + step as f64) / (10.0 + step as f64));
        for ((_, avg), var) in self.average.iter_mut().zip(&self.vars) {
            *avg = ((&*avg * d)? + (var.as_tensor() * (1.0 - d))?)?;
        }
        Ok(())
    }

    /// Exchanges the average and the network's trainable weights: the network then computes
    /// with the average, and a second call puts its own weights back.
    pub fn swap(&mut self) -> Result<()> {
        for ((_, avg), var) in self.average.iter_mut().zip(&self.vars) {
            let live: Tensor = var.as_tensor().copy()?;
            var.set(avg)?;
            *avg = live;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::architecture::spec::{Layer, ModelSpec};
    use candle_core::Device;

    fn values(net: &Network) -> Vec<Vec<f32>> {
        net.trainable_named().iter().map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap()).collect()
    }

    #[test]
    fn the_average_moves_toward_the_weights_and_swaps_with_them() {
        let net = Network::new(&ModelSpec::new(vec![Layer::dense(4)]), (1, 4, 4), 3, &Device::Cpu, 1).unwrap();
        let start = values(&net);
        let mut ema = Ema::new(&net, 0.5).unwrap();
        // Every weight one higher; at step 1000 the decay is min(0.5, 1001/1010) = 0.5.
        for (_, var) in net.trainable_named() {
            var.set(&(var.as_tensor() + 1.0).unwrap()).unwrap();
        }
        ema.update(1000).unwrap();
        let moved: Vec<Vec<f32>> =
            ema.weights().iter().map(|(_, t)| t.flatten_all().unwrap().to_vec1().unwrap()).collect();
        for (m, s) in moved.iter().zip(&start) {
            for (a, b) in m.iter().zip(s) {
                assert!((a - (b + 0.5)).abs() < 1e-6, "{a} vs {b} + 0.5");
            }
        }
        // At step 1 the warm-up decay (2/11) moves it most of the way.
        let live = values(&net);
        ema.update(1).unwrap();
        let (a, w) = (ema.weights()[0].1.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0], live[0][0]);
        assert!((a - (2.0 / 11.0 * moved[0][0] + 9.0 / 11.0 * w)).abs() < 1e-6);
        // Swapping twice changes nothing; once, the network holds the average.
        let average: Vec<Vec<f32>> =
            ema.weights().iter().map(|(_, t)| t.flatten_all().unwrap().to_vec1().unwrap()).collect();
        ema.swap().unwrap();
        assert_eq!(values(&net), average);
        ema.swap().unwrap();
        assert_eq!(values(&net), live);
        assert!(Ema::resume(&net, 0.5, Vec::new()).is_err());
    }
}
