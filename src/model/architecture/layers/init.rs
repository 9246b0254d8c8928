//! Creating a network's parameters: Glorot-uniform kernels drawn in layer order from one
//! seeded generator (candle's CPU generator cannot be seeded), zero biases, batch-norm
//! statistics at zero mean and unit variance.

use candle_core::{Device, Var};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::model::error::Result;

/// Creates parameters in a network's [`VarMap`], drawing kernels from one seeded generator.
pub struct Init<'a> {
    varmap: &'a VarMap,
    rng: ChaCha8Rng,
    device: &'a Device,
}

impl<'a> Init<'a> {
    /// Parameters in `varmap` on `device`, drawn from `seed`.
    pub fn new(varmap: &'a VarMap, device: &'a Device, seed: u64) -> Init<'a> {
        Init { varmap, rng: ChaCha8Rng::seed_from_u64(seed), device }
    }

    /// A Glorot (Xavier) uniform kernel `name` of `dims` with the given fans, as Keras draws it.
    pub fn glorot(&mut self, name: &str, dims: &[usize], fan_in: usize, fan_out: usize) -> Result<Var> {
        let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
        let count = dims.iter().product();
        let values = (0..count).map(|_| self.rng.random_range(-limit..=limit)).collect();
        put(self.varmap, name, dims, values, self.device)
    }

    /// A tensor `name` of `dims` filled with `value`.
    pub fn constant(&mut self, name: &str, dims: &[usize], value: f32) -> Result<Var> {
        put(self.varmap, name, dims, vec![value; dims.iter().product()], self.device)
    }

    /// The generator, for parameters drawn otherwise (LoRA's `A`).
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }
}

/// Inserts a variable with these values under `name` in `varmap`; returns it.
pub fn put(varmap: &VarMap, name: &str, dims: &[usize], values: Vec<f32>, device: &Device) -> Result<Var> {
    let var = Var::from_vec(values, dims, device)?;
    varmap.data().lock().expect("the VarMap lock is never poisoned").insert(name.to_string(), var.clone());
    Ok(var)
}
