//! A candle network built from a [`ModelSpec`], with Keras-like initialization, and its
//! fine-tuning: frozen layers, a fresh output layer (head), LoRA adapters.
//!
//! Every parameter lives in one [`VarMap`] under a stable name (`l<i>.weight`, `l<i>.bias`,
//! `l<i>.running_mean`, ..., `out.weight`, `out.bias`), so checkpoints and weight snapshots are
//! plain maps from names to tensors. Initial weights come from a seeded ChaCha8 generator
//! (candle's CPU generator cannot be seeded) and dropout masks from a counter-based hash of the
//! seed, so a seed fixes a run.
//!
//! Layers are numbered as a summary lists them (0-based here): the spec's layers, the implied
//! flattens and the output layer last. A frozen layer computes with detached parameters, so no
//! gradient reaches them and the optimizer never sees them; a frozen batch norm runs in
//! inference mode. While LoRA adapters (see [`crate::model::architecture::lora`]) exist every base parameter of the
//! body is frozen and only the adapters and the output layer train (the output layer too can
//! be frozen); merging them folds them into the weights.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::kernels::{self, Precision};
use crate::model::architecture::layers::batch_norm::{update_moving_stats, BN_EPS};
use crate::model::architecture::layers::init::{put, Init};
use crate::model::architecture::layers::{Ctx, Layer, Mode, Node, Output, Params, Role};
use crate::model::architecture::lora::{Adapter, LoraConfig};
use crate::model::architecture::plan::{Plan, PlanLayer, Step};
use crate::model::architecture::spec::{LayerSource, ModelSpec, Shape, Summary};
use crate::model::error::{ModelError, Result};

/// Every stored tensor of a network by name, as [`Network::snapshot`] returns them.
pub type Weights = Vec<(String, Tensor)>;

/// A network built from a spec, holding its parameters in a [`VarMap`].
pub struct Network {
    spec: ModelSpec,
    input: (usize, usize, usize),
    classes: usize,
    device: Device,
    varmap: VarMap,
    /// Built layers in summary order: the spec's, the implied flattens, the output layer.
    layers: Vec<Node>,
    /// Each built layer's input shape.
    inputs: Vec<Shape>,
    /// Each built layer's parameters (empty for a layer without any).
    params: Vec<Params>,
    /// The forward pass's plans: inference, then training (see [`Network::plan`]).
    plans: [Plan; 2],
    /// Parameter-name prefix of each built layer (`l3`, `out`); `None` for a layer without any.
    prefixes: Vec<Option<String>>,
    /// Frozen flag of each built layer (see [`Network::is_frozen`]).
    frozen: Vec<bool>,
    /// LoRA adapter of each built layer, if any.
    adapters: Vec<Option<Adapter>>,
    /// The LoRA settings while adapters exist.
    lora: Option<LoraConfig>,
    /// Dropout masks: the seed they are keyed by, and the calls drawn so far.
    dropout_seed: AtomicU64,
    dropout_calls: AtomicU64,
    /// What the fused kernels' products compute in (f32 unless set).
    precision: Precision,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("spec", &self.spec.describe())
            .field("input", &self.input)
            .field("classes", &self.classes)
            .finish()
    }
}

impl Network {
    /// Builds the network for images of `input` = (channels, height, width) and `classes`
    /// outputs, initializing weights from `seed` (Glorot uniform kernels, zero biases, like Keras).
    pub fn new(
        spec: &ModelSpec,
        input: (usize, usize, usize),
        classes: usize,
        device: &Device,
        seed: u64,
    ) -> Result<Network> {
        let infos = spec.output_shapes(input, classes)?;
        let varmap = VarMap::new();
        let mut init = Init::new(&varmap, device, seed);
        let (mut params, mut prefixes) = (Vec::with_capacity(infos.len()), Vec::with_capacity(infos.len()));
        for info in &infos {
            let name = match info.source {
                LayerSource::Spec(i) => format!("l{i}"),
                LayerSource::Flatten => "flatten".to_string(),
                LayerSource::Output => "out".to_string(),
            };
            let made = info.node.kind().init(&mut init, info.input, &name)?;
            prefixes.push((!made.is_empty()).then_some(name));
            params.push(made);
        }
        let count = infos.len();
        let mut network = Network {
            spec: spec.clone(),
            input,
            classes,
            device: device.clone(),
            varmap,
            layers: infos.iter().map(|i| i.node.clone()).collect(),
            inputs: infos.iter().map(|i| i.input).collect(),
            params,
            plans: Default::default(),
            prefixes,
            frozen: vec![false; count],
            adapters: (0..count).map(|_| None).collect(),
            lora: None,
            dropout_seed: AtomicU64::new(seed.wrapping_add(0x9E37_79B9_7F4A_7C15)),
            precision: Precision::F32,
            dropout_calls: AtomicU64::new(0),
        };
        network.replan();
        Ok(network)
    }

    /// The spec this network was built from.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Input shape: (channels, height, width).
    pub fn input(&self) -> (usize, usize, usize) {
        self.input
    }

    /// Number of outputs (classes).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The device holding the parameters.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// What the fused kernels' products compute in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Runs the products of the forward and backward passes in `precision` from here on (the
    /// weights stay f32): on the CPU in the fused kernels, elsewhere (CUDA) through candle's
    /// bf16 tensors.
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
    }

    /// The parameter store.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// Re-seeds the dropout masks: from here on they are keyed by `seed` and a fresh call count.
    pub fn reseed_dropout(&self, seed: u64) {
        self.dropout_seed.store(seed, Ordering::Relaxed);
        self.dropout_calls.store(0, Ordering::Relaxed);
    }

    /// The dropout masks' position: the seed they are keyed by and the calls drawn so far.
    pub fn dropout_state(&self) -> (u64, u64) {
        (self.dropout_seed.load(Ordering::Relaxed), self.dropout_calls.load(Ordering::Relaxed))
    }

    /// Sets the dropout masks' position from [`Network::dropout_state`].
    pub fn set_dropout_state(&self, (seed, calls): (u64, u64)) {
        self.dropout_seed.store(seed, Ordering::Relaxed);
        self.dropout_calls.store(calls, Ordering::Relaxed);
    }

    /// The trainable parameters by name, sorted by name (as [`Network::trainable_vars`]).
    pub fn trainable_named(&self) -> Vec<(String, Var)> {
        let data = self.varmap.data().lock().expect("the VarMap lock is never poisoned");
        let mut named: Vec<(String, Var)> =
            data.iter().filter(|(k, _)| self.updates(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named
    }

    /// The parameters the optimizer updates, sorted by name: every weight and bias of the layers
    /// that are not frozen (see [`Network::is_frozen`]) and every LoRA adapter; never the
    /// batch-norm moving statistics.
    pub fn trainable_vars(&self) -> Vec<Var> {
        let (mut head, body) = self.trainable_groups();
        head.extend(body);
        head
    }

    /// The trainable parameters in two optimizer groups, each sorted by name: the output layer's
    /// (the head) and the others' (the body, LoRA adapters included).
    pub fn trainable_groups(&self) -> (Vec<Var>, Vec<Var>) {
        let data = self.varmap.data().lock().expect("the VarMap lock is never poisoned");
        let mut named: Vec<(&String, &Var)> = data.iter().filter(|(k, _)| self.updates(k)).collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        let head = self.prefixes.last().cloned().flatten();
        let (mut heads, mut body) = (Vec::new(), Vec::new());
        for (name, var) in named {
            let prefix = name.split_once('.').map_or(name.as_str(), |(p, _)| p);
            if Some(prefix) == head.as_deref() {
                heads.push(var.clone());
            } else {
                body.push(var.clone());
            }
        }
        (heads, body)
    }

    /// Whether the optimizer updates the stored tensor `name`.
    fn updates(&self, name: &str) -> bool {
        if is_statistic(name) {
            return false;
        }
        let Some((prefix, kind)) = name.split_once('.') else {
            return true;
        };
        if kind.starts_with("lora_") {
            return true;
        }
        match self.prefixes.iter().position(|p| p.as_deref() == Some(prefix)) {
            Some(layer) => !self.is_frozen(layer),
            None => true,
        }
    }

    /// Total number of stored values (parameters and moving statistics).
    pub fn param_count(&self) -> usize {
        let data = self.varmap.data().lock().expect("the VarMap lock is never poisoned");
        data.values().map(|v| v.elem_count()).sum()
    }

    /// A copy of every stored tensor, sorted by name (weights, biases, moving statistics).
    pub fn snapshot(&self) -> Result<Weights> {
        let data = self.varmap.data().lock().expect("the VarMap lock is never poisoned");
        let mut out = Vec::with_capacity(data.len());
        for (name, var) in data.iter() {
            out.push((name.clone(), var.as_tensor().copy()?));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Sets every stored tensor from `tensors`, which must hold exactly this network's names
    /// with the same shapes; on a mismatch nothing is changed and the error names the tensor.
    pub fn set_weights(&self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        let data = self.varmap.data().lock().expect("the VarMap lock is never poisoned");
        for (name, var) in data.iter() {
            let Some(t) = tensors.get(name) else {
                return Err(ModelError::Weights(format!("tensor `{name}` is missing")));
            };
            if t.dims() != var.dims() {
                return Err(ModelError::Weights(format!(
                    "tensor `{name}` has shape {:?}, the model expects {:?}",
                    t.dims(),
                    var.dims()
                )));
            }
        }
        if let Some(extra) = tensors.keys().find(|k| !data.contains_key(*k)) {
            return Err(ModelError::Weights(format!("unexpected tensor `{extra}` for this architecture")));
        }
        for (name, var) in data.iter() {
            let t = tensors[name].to_dtype(DType::F32).and_then(|t| t.to_device(&self.device));
            t.and_then(|t| var.set(&t)).map_err(|e| ModelError::Weights(format!("tensor `{name}`: {e}")))?;
        }
        Ok(())
    }

    /// An independent copy: the same architecture, frozen marks, adapters and dropout stream,
    /// and a copy of every tensor, so training one leaves the other as it was.
    pub fn try_clone(&self) -> Result<Network> {
        self.copy_to(&self.device)
    }

    /// A [`try_clone`](Network::try_clone) whose tensors live on `device`: how `device cuda`
    /// and `device cpu` move a model (its moving statistics and adapters too).
    pub fn copy_to(&self, device: &Device) -> Result<Network> {
        let mut copy = Network::new(&self.spec, self.input, self.classes, device, 0)?;
        if let Some(config) = self.lora {
            copy.add_lora_at(&self.adapted_layers(), config, 0)?;
        }
        copy.set_frozen(&self.frozen_layers(), true)?;
        copy.restore(&self.snapshot()?)?;
        copy.dropout_seed.store(self.dropout_seed.load(Ordering::SeqCst), Ordering::SeqCst);
        copy.dropout_calls.store(self.dropout_calls.load(Ordering::SeqCst), Ordering::SeqCst);
        copy.precision = self.precision;
        Ok(copy)
    }

    /// Restores a [`snapshot`](Network::snapshot).
    pub fn restore(&self, snapshot: &[(String, Tensor)]) -> Result<()> {
        let map: HashMap<String, Tensor> = snapshot.iter().cloned().collect();
        self.set_weights(&map)
    }

    /// Logits `[N, classes]` for images `xs` of shape `[N, C, H, W]`. In training mode dropout is
    /// active and batch norm uses (and updates) batch statistics; in eval mode neither.
    pub fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let (c, h, w) = self.input;
        match xs.dims() {
            [_, xc, xh, xw] if (*xc, *xh, *xw) == (c, h, w) => {}
            dims => {
                return Err(ModelError::Data(format!(
                    "the model expects images of shape [N, {c}, {h}, {w}], got {dims:?}"
                )))
            }
        }
        if xs.dtype() != DType::F32 {
            return Err(ModelError::Data(format!("the model expects float32 images, got {:?}", xs.dtype())));
        }
        let mut x = xs.clone();
        for &step in &self.plan(train).steps {
            x = self.run(step, &x, train)?;
        }
        Ok(x)
    }

    /// The plan [`Network::forward`] runs in training (`train`) or inference: which layers run
    /// together as one kernel call (see [`crate::model::architecture::plan`]).
    pub fn plan(&self, train: bool) -> &Plan {
        &self.plans[usize::from(train)]
    }

    /// Rebuilds both plans from the layers, their frozen marks and adapters, and the device:
    /// called whenever one of those changes.
    fn replan(&mut self) {
        let fast = matches!(self.device, Device::Cpu);
        let plan = |train: bool| {
            let layers: Vec<PlanLayer> = (0..self.layers.len())
                .map(|i| {
                    let (kind, frozen) = (self.layers[i].kind(), self.is_frozen(i));
                    PlanLayer {
                        kind: kind.plan(self.inputs[i]),
                        kernel: kind.kernel(Mode { train, fast, frozen }),
                        frozen,
                        adapted: self.adapters[i].is_some(),
                    }
                })
                .collect();
            Plan::build(&layers, train, fast)
        };
        self.plans = [plan(false), plan(true)];
    }

    /// What layer `i`'s kernels run with in training (`train`) or inference.
    fn ctx<'a>(&'a self, i: usize, train: bool, dropout_key: &'a dyn Fn() -> u64) -> Ctx<'a> {
        let mode = Mode { train, fast: matches!(self.device, Device::Cpu), frozen: self.is_frozen(i) };
        Ctx { params: &self.params[i], mode, dropout_key, precision: self.precision }
    }

    /// Runs one step of the plan on `x`.
    fn run(&self, step: Step, x: &Tensor, train: bool) -> Result<Tensor> {
        let key = || self.dropout_key();
        let ctx = |i: usize| self.ctx(i, train, &key);
        Ok(match step {
            Step::Alone { layer, .. } => self.layers[layer].kind().forward(x, &ctx(layer))?,
            Step::ConvPool { conv, settings, .. } => {
                let c = ctx(conv);
                let bias = if settings.bias { Some(c.param("bias")?) } else { None };
                let (weight, padding, stride) = (c.param("weight")?, settings.padding, settings.stride);
                kernels::conv2d_pool(x, &weight, bias.as_ref(), (padding, stride, settings.relu), 2, self.precision)?
            }
            Step::ConvBatchNorm { conv, padding, bn, pool } => {
                let (c, b) = (ctx(conv), ctx(bn));
                let conv = (&c.param("weight")?, &c.param("bias")?);
                let norm = (&b.param("weight")?, &b.param("bias")?);
                let pool = pool.map(|_| 2);
                let (y, stats) =
                    kernels::conv2d_relu_batch_norm_train(x, conv, norm, padding, BN_EPS, pool, self.precision)?;
                update_moving_stats(b.params, stats.get().expect("the forward pass sets the statistics"), x.device())?;
                y
            }
            Step::BatchNormPool { bn, .. } => {
                let b = ctx(bn);
                let (y, stats) = kernels::batch_norm_pool_train(x, &b.param("weight")?, &b.param("bias")?, BN_EPS, 2)?;
                update_moving_stats(b.params, stats.get().expect("the forward pass sets the statistics"), x.device())?;
                y
            }
            Step::Dense { dense, relu, dropout, .. } => {
                let d = ctx(dense);
                let (weight, bias) = (d.param("weight")?, d.bias()?);
                // Flatten, bias and ReLU (and the dropout before it) run inside the fused op.
                match dropout {
                    Some((_, rate)) => {
                        let drop = (rate, self.dropout_key());
                        kernels::dropout_linear(x, drop, &weight, bias.as_ref(), relu, self.precision)?
                    }
                    None => kernels::linear(x, &weight, bias.as_ref(), relu, self.precision)?,
                }
            }
            Step::DenseAdapted { dense, relu } => {
                let d = ctx(dense);
                let adapter = self.adapters[dense].as_ref().expect("the plan names an adapted layer");
                let plain = kernels::linear(x, &d.param("weight")?, d.bias()?.as_ref(), false, self.precision)?;
                let y = (plain + adapter.forward(x)?)?;
                if relu {
                    y.relu()?
                } else {
                    y
                }
            }
        })
    }

    /// The mask key of the next dropout: the network's dropout seed mixed with the call count
    /// (see [`kernels::dropout`]).
    fn dropout_key(&self) -> u64 {
        let call = self.dropout_calls.fetch_add(1, Ordering::Relaxed);
        kernels::mix64(self.dropout_seed.load(Ordering::Relaxed) ^ kernels::mix64(call))
    }
}

/// True for batch-norm moving statistics, which the optimizer must not update.
fn is_statistic(name: &str) -> bool {
    name.ends_with(".running_mean") || name.ends_with(".running_var")
}

/// Fine-tuning: frozen layers, a fresh output layer, LoRA adapters.
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
            match layer.kind().role() {
                Role::Features => out.push(i),
                Role::End => break,
                Role::Between => {}
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
        self.replan();
        Ok(set)
    }

    /// Replaces the output layer with a fresh one for `classes` outputs, built as the old one
    /// was (Glorot-uniform weights from `seed`, zero bias, a fresh batch norm if it had one),
    /// trainable; every other layer keeps its parameters.
    pub fn replace_head(&mut self, classes: usize, seed: u64) -> Result<()> {
        if classes < 2 {
            return Err(ModelError::Data(format!("a classifier needs at least 2 classes, got {classes}")));
        }
        let head = self.head_index();
        let input = self.inputs[head];
        {
            let mut data = self.varmap.data().lock().expect("the VarMap lock is never poisoned");
            data.retain(|name, _| !name.starts_with("out."));
        }
        let output = Node::Output(Output { classes, style: self.spec.output });
        self.params[head] = output.kind().init(&mut Init::new(&self.varmap, &self.device, seed), input, "out")?;
        self.layers[head] = output;
        self.frozen[head] = false;
        self.classes = classes;
        self.replan();
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
        (0..head).filter(|&i| matches!(self.layers[i], Node::Hidden(Layer::Dense(_)))).collect()
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
        config.check()?;
        let mut shapes = Vec::new();
        for &i in layers {
            let Some(Node::Hidden(Layer::Dense(_)) | Node::Output(_)) = self.layers.get(i) else {
                return Err(ModelError::Data(format!("layer {} is not a dense layer, LoRA cannot adapt it", i + 1)));
            };
            let (outputs, inputs) = self.params[i].var("weight")?.dims2()?;
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
            let a = config.initial_a(&mut rng, inputs);
            put(&self.varmap, &format!("{prefix}.lora_a"), &[config.rank, inputs], a, &self.device)?;
            put(
                &self.varmap,
                &format!("{prefix}.lora_b"),
                &[outputs, config.rank],
                vec![0.0; outputs * config.rank],
                &self.device,
            )?;
            let data = self.varmap.data().lock().expect("the VarMap lock is never poisoned");
            let a = data[&format!("{prefix}.lora_a")].as_tensor().clone();
            let b = data[&format!("{prefix}.lora_b")].as_tensor().clone();
            self.adapters[i] = Some(Adapter::new(a, b, config.scale()));
        }
        self.lora = Some(config);
        self.replan();
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
            weight.set(&(weight.as_tensor() + adapter.delta()?)?)?;
            data.remove(&format!("{prefix}.lora_a"));
            data.remove(&format!("{prefix}.lora_b"));
        }
        self.lora = None;
        self.replan();
        Ok(())
    }

    /// The network's summary: the spec's rows with each layer's trainable mark and adapter
    /// parameters, and totals counted from the stored tensors (adapters included).
    pub fn summary(&self) -> Result<Summary> {
        let mut summary = self.spec.summary_rows(self.input, self.classes)?;
        for (i, row) in summary.rows.iter_mut().enumerate() {
            row.trainable = self.has_params(i).then(|| !self.is_frozen(i));
            row.adapter_params = self.adapters[i].as_ref().map_or(0, Adapter::param_count);
        }
        summary.total_params = self.param_count();
        summary.trainable_params = self.trainable_vars().iter().map(|v| v.elem_count()).sum();
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::architecture::spec::preset;

    #[test]
    fn forward_gives_logits_per_class() {
        let dev = Device::Cpu;
        for name in crate::model::architecture::spec::PRESETS {
            let net = Network::new(&preset(name).unwrap(), (1, 28, 28), 10, &dev, 1).unwrap();
            let xs = Tensor::zeros((3, 1, 28, 28), DType::F32, &dev).unwrap();
            assert_eq!(net.forward(&xs, false).unwrap().dims(), &[3, 10], "{name}");
            assert_eq!(net.forward(&xs, true).unwrap().dims(), &[3, 10], "{name}");
            let infos = preset(name).unwrap().output_shapes((1, 28, 28), 10).unwrap();
            assert_eq!(net.param_count(), infos.iter().map(|i| i.params).sum::<usize>(), "{name}");
        }
        let net = Network::new(&preset("seed-small").unwrap(), (1, 28, 28), 5, &dev, 1).unwrap();
        let bad = Tensor::zeros((2, 1, 20, 20), DType::F32, &dev).unwrap();
        let e = net.forward(&bad, false).unwrap_err().to_string();
        assert!(e.contains("[N, 1, 28, 28]"), "{e}");
    }

    #[test]
    fn a_new_head_is_built_as_the_old_one_was() {
        use crate::model::architecture::spec::OutputStyle;
        let dev = Device::Cpu;
        let style = OutputStyle { bias: false, batch_norm: true };
        let spec = ModelSpec { layers: vec![Layer::dense(8)], output: style };
        let mut net = Network::new(&spec, (1, 4, 4), 3, &dev, 1).unwrap();
        net.replace_head(5, 2).unwrap();
        let names: Vec<String> =
            net.snapshot().unwrap().into_iter().map(|(n, _)| n).filter(|n| n.starts_with("out.")).collect();
        assert_eq!(names, ["out.norm_bias", "out.norm_weight", "out.running_mean", "out.running_var", "out.weight"]);
        let xs = Tensor::zeros((2, 1, 4, 4), DType::F32, &dev).unwrap();
        assert_eq!(net.forward(&xs, true).unwrap().dims(), &[2, 5]);
        // Batch norm's moving statistics do not train; its scale and shift do.
        assert_eq!(net.trainable_vars().iter().map(|v| v.elem_count()).sum::<usize>(), 16 * 8 + 8 + 8 * 5 + 2 * 5);
    }

    #[test]
    fn network_can_move_to_a_training_thread() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Network>();
    }

    #[test]
    fn init_is_glorot_uniform_and_seeded() {
        let dev = Device::Cpu;
        let spec = preset("seed-cnn").unwrap();
        let a = Network::new(&spec, (1, 28, 28), 10, &dev, 7).unwrap().snapshot().unwrap();
        let b = Network::new(&spec, (1, 28, 28), 10, &dev, 7).unwrap().snapshot().unwrap();
        let c = Network::new(&spec, (1, 28, 28), 10, &dev, 8).unwrap().snapshot().unwrap();
        let values = |s: &[(String, Tensor)], n: &str| {
            s.iter().find(|(k, _)| k == n).unwrap().1.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        assert_eq!(values(&a, "l0.weight"), values(&b, "l0.weight"));
        assert_ne!(values(&a, "l0.weight"), values(&c, "l0.weight"));
        // conv32 3×3 on 1 channel: limit sqrt(6 / (9 + 288)).
        let limit = (6.0f32 / 297.0).sqrt();
        let w = values(&a, "l0.weight");
        assert!(w.iter().all(|v| v.abs() <= limit));
        assert!(w.iter().any(|v| v.abs() > 0.8 * limit));
        assert!(values(&a, "l0.bias").iter().all(|&v| v == 0.0));
    }

    #[test]
    fn set_weights_rejects_wrong_names_and_shapes() {
        let dev = Device::Cpu;
        let net = Network::new(&preset("seed-small").unwrap(), (1, 28, 28), 10, &dev, 1).unwrap();
        let mut map: HashMap<String, Tensor> = net.snapshot().unwrap().into_iter().collect();
        map.insert("out.bias".into(), Tensor::zeros(5, DType::F32, &dev).unwrap());
        let e = net.set_weights(&map).unwrap_err();
        assert!(matches!(e, ModelError::Weights(_)), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("out.bias") && e.contains("[5]"), "{e}");
        map.remove("out.bias");
        assert!(net.set_weights(&map).unwrap_err().to_string().contains("missing"));
        map.insert("extra".into(), Tensor::zeros(1, DType::F32, &dev).unwrap());
        map.insert("out.bias".into(), Tensor::zeros(10, DType::F32, &dev).unwrap());
        let e = net.set_weights(&map).unwrap_err().to_string();
        assert_eq!(e, "unexpected tensor `extra` for this architecture");
    }
}
