//! Fine-tuning a built network: frozen layers, a fresh output layer (head), LoRA adapters.
//!
//! Layers are numbered as a summary lists them (0-based here): the spec's layers, the implied
//! flattens and the output layer last. A frozen layer computes with detached parameters, so no
//! gradient reaches them and the optimizer never sees them; a frozen batch norm runs in
//! inference mode. LoRA (Hu et al. 2021) adds `(alpha/rank)·B·A·x` to a hidden dense layer's
//! `W·x`, with `A` (rank × inputs) drawn Kaiming-uniform (bound 1/√inputs, as PEFT does) and `B`
//! (outputs × rank) zero, so a fresh adapter changes nothing. While adapters exist every base
//! parameter of the body is frozen and only the adapters and the output layer train (the
//! output layer too can be frozen); `merge` folds `W + (alpha/rank)·B·A` into the weights.

use candle_core::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::network::{put, Built, Init, Network};
use super::{ModelError, Result};

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
}

/// One LoRA adapter: `A` is `[rank, inputs]`, `B` is `[outputs, rank]` (tensors of the
/// network's variables, so training and `set_weights` update them in place).
pub(super) struct Adapter {
    a: Tensor,
    b: Tensor,
    scale: f64,
}

impl Adapter {
    /// `scale · (x Aᵀ) Bᵀ` for `x` of shape `[N, inputs]`.
    pub(super) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.matmul(&self.a.t()?)?.matmul(&self.b.t()?)? * self.scale
    }
}

impl Network {
    /// Number of built layers (the rows of a summary).
    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    /// Index of the output layer (the head): the last one.
    pub fn head_index(&self) -> usize {
        self.layers.len() - 1
    }

    /// Whether layer `i` has parameters of its own.
    pub fn has_params(&self, i: usize) -> bool {
        self.prefixes.get(i).is_some_and(Option::is_some)
    }

    /// The convolutions and the batch norms between them (those before the first flatten or
    /// global pooling): what `freeze conv` freezes.
    pub fn conv_layers(&self) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            match layer {
                Built::Conv { .. } | Built::BatchNorm(_) => out.push(i),
                Built::Flatten | Built::GlobalAvgPool | Built::Dense { .. } => break,
                _ => {}
            }
        }
        out
    }

    /// Whether layer `i`'s own parameters are frozen: marked frozen, or in the body while LoRA
    /// adapters exist. Adapters themselves always train.
    pub fn is_frozen(&self, i: usize) -> bool {
        self.frozen.get(i).copied().unwrap_or(false) || (self.lora.is_some() && i != self.head_index())
    }

    /// The layers marked frozen (0-based), whatever the adapters.
    pub fn frozen_layers(&self) -> Vec<usize> {
        (0..self.layers.len()).filter(|&i| self.frozen[i]).collect()
    }

    /// Marks `layers` (0-based) frozen or trainable; layers without parameters are skipped.
    /// Returns the layers whose mark was set. An index past the last layer is an error.
    pub fn set_frozen(&mut self, layers: &[usize], frozen: bool) -> Result<Vec<usize>> {
        let count = self.layers.len();
        if let Some(bad) = layers.iter().find(|&&i| i >= count) {
            return Err(ModelError::Data(format!("there is no layer {} (the model has {count} layers)", bad + 1)));
        }
        let mut set = Vec::new();
        for &i in layers {
            if self.has_params(i) {
                self.frozen[i] = frozen;
                set.push(i);
            }
        }
        set.sort_unstable();
        set.dedup();
        Ok(set)
    }

    /// Replaces the output layer with a fresh one for `classes` outputs (Glorot-uniform weights
    /// from `seed`, zero bias), trainable; every other layer keeps its parameters.
    pub fn replace_head(&mut self, classes: usize, seed: u64) -> Result<()> {
        if classes < 2 {
            return Err(ModelError::Data(format!("a classifier needs at least 2 classes, got {classes}")));
        }
        let head = self.head_index();
        let inputs = match &self.layers[head] {
            Built::Dense { linear, .. } => linear.weight().dim(1)?,
            _ => unreachable!("the last layer is always the output layer"),
        };
        {
            let mut data = self.varmap.data().lock().expect("the VarMap lock is never poisoned");
            data.remove("out.weight");
            data.remove("out.bias");
        }
        let linear = Init::new(&self.varmap, &self.device, seed).dense("out", inputs, classes)?;
        self.layers[head] = Built::Dense { linear, relu: false };
        self.frozen[head] = false;
        self.classes = classes;
        Ok(())
    }

    /// The LoRA settings while adapters exist.
    pub fn lora(&self) -> Option<LoraConfig> {
        self.lora
    }

    /// The layers carrying a LoRA adapter (0-based).
    pub fn adapted_layers(&self) -> Vec<usize> {
        (0..self.layers.len()).filter(|&i| self.adapters[i].is_some()).collect()
    }

    /// The hidden dense layers, where `add_lora` puts adapters.
    pub fn hidden_dense_layers(&self) -> Vec<usize> {
        let head = self.head_index();
        (0..head).filter(|&i| matches!(self.layers[i], Built::Dense { .. })).collect()
    }

    /// Adds LoRA adapters of `config` to every hidden dense layer (`A` from `seed`, `B` zero).
    /// Returns the adapted layers. Fails when adapters exist already or there is no hidden
    /// dense layer.
    pub fn add_lora(&mut self, config: LoraConfig, seed: u64) -> Result<Vec<usize>> {
        let layers = self.hidden_dense_layers();
        if layers.is_empty() {
            return Err(ModelError::Data(
                "the model has no hidden dense layer to adapt (LoRA adapts dense layers before the output layer)"
                    .into(),
            ));
        }
        self.add_lora_at(&layers, config, seed)?;
        Ok(layers)
    }

    /// Adds LoRA adapters of `config` to the dense `layers` (0-based), as [`Network::add_lora`].
    pub fn add_lora_at(&mut self, layers: &[usize], config: LoraConfig, seed: u64) -> Result<()> {
        if let Some(existing) = self.lora {
            return Err(ModelError::Data(format!(
                "the model already has LoRA adapters (rank {}): `merge` them first",
                existing.rank
            )));
        }
        if config.rank == 0 {
            return Err(ModelError::Data("the LoRA rank must be at least 1".into()));
        }
        if !(config.alpha.is_finite() && config.alpha > 0.0) {
            return Err(ModelError::Data(format!("the LoRA alpha must be above 0, got {}", config.alpha)));
        }
        let mut shapes = Vec::new();
        for &i in layers {
            let Some(Built::Dense { linear, .. }) = self.layers.get(i) else {
                return Err(ModelError::Data(format!("layer {} is not a dense layer, LoRA cannot adapt it", i + 1)));
            };
            let (outputs, inputs) = linear.weight().dims2()?;
            if config.rank > inputs.min(outputs) {
                return Err(ModelError::Data(format!(
                    "LoRA rank {} is above the size of layer {} ({outputs}×{inputs})",
                    config.rank,
                    i + 1
                )));
            }
            shapes.push((i, outputs, inputs));
        }
        let params = shapes.iter().map(|&(_, o, i)| (config.rank as u64).saturating_mul((o + i) as u64)).sum::<u64>();
        crate::budget::check(
            || format!("LoRA rank {} adapters ({params} parameters)", config.rank),
            crate::budget::product(&[params, 4, 5]),
        )?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for (i, outputs, inputs) in shapes {
            let prefix = self.prefixes[i].clone().expect("dense layers have parameters");
            let bound = 1.0 / (inputs as f32).sqrt();
            let a: Vec<f32> = (0..config.rank * inputs).map(|_| rng.random_range(-bound..=bound)).collect();
            put(&self.varmap, format!("{prefix}.lora_a"), &[config.rank, inputs], a, &self.device)?;
            put(
                &self.varmap,
                format!("{prefix}.lora_b"),
                &[outputs, config.rank],
                vec![0.0; outputs * config.rank],
                &self.device,
            )?;
            let data = self.varmap.data().lock().expect("the VarMap lock is never poisoned");
            let a = data[&format!("{prefix}.lora_a")].as_tensor().clone();
            let b = data[&format!("{prefix}.lora_b")].as_tensor().clone();
            self.adapters[i] = Some(Adapter { a, b, scale: config.scale() });
        }
        self.lora = Some(config);
        Ok(())
    }

    /// Folds every adapter into its layer's weights (`W + (alpha/rank)·B·A`) and removes the
    /// adapters; the layers' frozen marks apply again. Fails when there is no adapter.
    pub fn merge_lora(&mut self) -> Result<()> {
        if self.lora.is_none() {
            return Err(ModelError::Data(
                "the model has no LoRA adapters to merge (`adapt lora rank R` adds them)".into(),
            ));
        }
        for i in 0..self.layers.len() {
            let Some(adapter) = self.adapters[i].take() else { continue };
            let prefix = self.prefixes[i].clone().expect("adapted layers have parameters");
            let mut data = self.varmap.data().lock().expect("the VarMap lock is never poisoned");
            let weight = &data[&format!("{prefix}.weight")];
            let delta = (adapter.b.matmul(&adapter.a)? * adapter.scale)?;
            weight.set(&(weight.as_tensor() + delta)?)?;
            data.remove(&format!("{prefix}.lora_a"));
            data.remove(&format!("{prefix}.lora_b"));
        }
        self.lora = None;
        Ok(())
    }

    /// The network's summary: the spec's rows with each layer's trainable mark and adapter
    /// parameters, and totals counted from the stored tensors (adapters included).
    pub fn summary(&self) -> Result<super::Summary> {
        let mut summary = self.spec.summary_rows(self.input, self.classes)?;
        for (i, row) in summary.rows.iter_mut().enumerate() {
            row.trainable = self.has_params(i).then(|| !self.is_frozen(i));
            row.adapter_params = self.adapters[i].as_ref().map_or(0, |a| a.a.elem_count() + a.b.elem_count());
        }
        summary.total_params = self.param_count();
        summary.trainable_params = self.trainable_vars().iter().map(|v| v.elem_count()).sum();
        Ok(summary)
    }
}
