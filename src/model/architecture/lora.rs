//! LoRA adapters (Hu et al. 2021): a dense layer's `W·x` plus `(alpha/rank)·B·A·x`, with `A`
//! (rank × inputs) drawn Kaiming-uniform (bound 1/√inputs, as PEFT does) and `B`
//! (outputs × rank) zero, so a fresh adapter changes nothing. Merging folds
//! `W + (alpha/rank)·B·A` into the weights.
//!
//! This module knows tensors only; the network decides where adapters go.

use candle_core::Tensor;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::model::error::{ModelError, Result};

/// LoRA settings: the adapters' rank and scaling numerator.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Rank R of every adapter.
    pub rank: usize,
    /// Alpha: the adapter's output is scaled by alpha / rank.
    pub alpha: f64,
}

impl LoraConfig {
    /// The factor applied to `B·A·x`: alpha / rank.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Refuses a rank of 0 and an alpha that is not above 0.
    pub fn check(&self) -> Result<()> {
        if self.rank == 0 {
            return Err(ModelError::Data("the LoRA rank must be at least 1".into()));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(ModelError::Data(format!("the LoRA alpha must be above 0, got {}", self.alpha)));
        }
        Ok(())
    }

    /// Initial values of `A` for a layer with `inputs` inputs: `rank × inputs` values drawn
    /// uniformly within ±1/√inputs.
    pub fn initial_a(&self, rng: &mut ChaCha8Rng, inputs: usize) -> Vec<f32> {
        let bound = 1.0 / (inputs as f32).sqrt();
        (0..self.rank * inputs).map(|_| rng.random_range(-bound..=bound)).collect()
    }
}

/// One LoRA adapter: `A` is `[rank, inputs]`, `B` is `[outputs, rank]` (tensors of the
/// network's variables, so training and loading weights update them in place).
#[derive(Debug, Clone)]
pub struct Adapter {
    a: Tensor,
    b: Tensor,
    scale: f64,
}

impl Adapter {
    /// An adapter over the tensors `a` (`[rank, inputs]`) and `b` (`[outputs, rank]`), its
    /// output scaled by `scale`.
    pub fn new(a: Tensor, b: Tensor, scale: f64) -> Adapter {
        Adapter { a, b, scale }
    }

    /// `scale · (x Aᵀ) Bᵀ` for `x` of shape `[N, inputs]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.matmul(&self.a.t()?)?.matmul(&self.b.t()?)? * self.scale
    }

    /// What merging adds to the layer's weight: `scale · B·A`, `[outputs, inputs]`.
    pub fn delta(&self) -> candle_core::Result<Tensor> {
        self.b.matmul(&self.a)? * self.scale
    }

    /// Number of values in `A` and `B`.
    pub fn param_count(&self) -> usize {
        self.a.elem_count() + self.b.elem_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rand::SeedableRng;

    #[test]
    fn an_adapter_adds_the_scaled_low_rank_product() {
        let dev = Device::Cpu;
        let config = LoraConfig { rank: 1, alpha: 2.0 };
        assert_eq!(config.scale(), 2.0);
        // A = [1, 2], B = [[3], [4]]: B·A = [[3, 6], [4, 8]].
        let a = Tensor::new(&[[1f32, 2.0]], &dev).unwrap();
        let b = Tensor::new(&[[3f32], [4.0]], &dev).unwrap();
        let adapter = Adapter::new(a, b, config.scale());
        assert_eq!(adapter.param_count(), 4);
        assert_eq!(adapter.delta().unwrap().to_vec2::<f32>().unwrap(), vec![vec![6.0, 12.0], vec![8.0, 16.0]]);
        let x = Tensor::new(&[[1f32, 1.0]], &dev).unwrap();
        // scale · B·A·x = 2 · [9, 12].
        assert_eq!(adapter.forward(&x).unwrap().to_vec2::<f32>().unwrap(), vec![vec![18.0, 24.0]]);
    }

    #[test]
    fn settings_are_checked_and_a_is_drawn_within_its_bound() {
        assert!(LoraConfig { rank: 0, alpha: 1.0 }.check().unwrap_err().to_string().contains("at least 1"));
        assert!(LoraConfig { rank: 2, alpha: 0.0 }.check().unwrap_err().to_string().contains("above 0"));
        let config = LoraConfig { rank: 2, alpha: 4.0 };
        config.check().unwrap();
        let a = config.initial_a(&mut ChaCha8Rng::seed_from_u64(1), 16);
        assert_eq!(a.len(), 32);
        assert!(a.iter().all(|v| v.abs() <= 0.25) && a.iter().any(|v| v.abs() > 0.2));
    }
}
