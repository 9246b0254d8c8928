//! Optimizers: Keras-style SGD with momentum, Adam and AdamW, each a [`candle_nn::Optimizer`],
//! the [`Optimizer`] settings that choose one, and the parameter groups of a training run.
//!
//! Adam and AdamW update each f32 CPU variable in place in one pass over its values, with the
//! moments in plain vectors (candle's `AdamW` runs a dozen tensor operations, each allocating,
//! per variable and step); with a variable of another dtype or device (CUDA) they run the same
//! update as tensor operations on that device ([`TensorAdam`]), whose moments a checkpoint can
//! read like the fused ones.

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use candle_nn::{Optimizer as _, ParamsAdamW};

use crate::kernels::{self, AdamStep};
use serde::{Deserialize, Serialize};

/// Adam's β1, as in Keras.
const BETA1: f64 = 0.9;
/// Adam's β2, as in Keras.
const BETA2: f64 = 0.999;
/// Adam's ε, as in Keras.
const EPS: f64 = 1e-7;

/// The optimizer and its base learning rate: the user-facing setting.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Optimizer {
    /// Adam (β1 0.9, β2 0.999, ε 1e-7 as in Keras).
    Adam {
        /// Learning rate.
        lr: f64,
    },
    /// Adam with decoupled weight decay.
    AdamW {
        /// Learning rate.
        lr: f64,
        /// Weight decay factor (multiplied by the learning rate each step).
        weight_decay: f64,
    },
    /// Stochastic gradient descent with (Keras-style) momentum.
    Sgd {
        /// Learning rate.
        lr: f64,
        /// Momentum, 0 for plain SGD.
        momentum: f64,
    },
}

impl Default for Optimizer {
    fn default() -> Optimizer {
        Optimizer::Adam { lr: 1e-3 }
    }
}

/// As the `optimizer` statement writes it: `adam lr 0.001`, `adamw lr 0.001 decay 0.01`,
/// `sgd lr 0.01 momentum 0.9` (plain SGD without `momentum`).
impl std::fmt::Display for Optimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Optimizer::Adam { lr } => write!(f, "adam lr {lr}"),
            Optimizer::AdamW { lr, weight_decay } => write!(f, "adamw lr {lr} decay {weight_decay}"),
            Optimizer::Sgd { lr, momentum: 0.0 } => write!(f, "sgd lr {lr}"),
            Optimizer::Sgd { lr, momentum } => write!(f, "sgd lr {lr} momentum {momentum}"),
        }
    }
}

impl Optimizer {
    /// The base learning rate.
    pub fn lr(&self) -> f64 {
        match *self {
            Optimizer::Adam { lr } | Optimizer::AdamW { lr, .. } | Optimizer::Sgd { lr, .. } => lr,
        }
    }
}

/// Settings of [`Sgd`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f64,
    /// Momentum, 0 for plain SGD.
    pub momentum: f64,
}

/// Keras-style SGD with momentum: `v = m·v - lr·g; w = w + v`.
pub struct Sgd {
    /// Each variable with its velocity.
    vars: Vec<(Var, Var)>,
    config: SgdConfig,
}

impl candle_nn::Optimizer for Sgd {
    type Config = SgdConfig;

    fn new(vars: Vec<Var>, config: SgdConfig) -> candle_core::Result<Sgd> {
        let vars = vars
            .into_iter()
            .map(|v| {
                let velocity = Var::zeros(v.shape(), v.dtype(), v.device())?;
                Ok((v, velocity))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Sgd { vars, config })
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        let SgdConfig { lr, momentum } = self.config;
        for (var, velocity) in &self.vars {
            if let Some(g) = grads.get(var) {
                let v = ((velocity.as_tensor() * momentum)? - (g * lr)?)?;
                var.set(&(var.as_tensor() + &v)?)?;
                velocity.set(&v)?;
            }
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.config.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.config.lr = lr;
    }
}

/// Settings of [`Adam`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the root of the second moment.
    pub eps: f64,
}

impl Default for AdamConfig {
    /// Keras' defaults: learning rate 1e-3, β1 0.9, β2 0.999, ε 1e-7.
    fn default() -> AdamConfig {
        AdamConfig { lr: 1e-3, beta1: BETA1, beta2: BETA2, eps: EPS }
    }
}

/// Adam: [`AdamW`] without weight decay.
pub struct Adam(AdamW);

impl candle_nn::Optimizer for Adam {
    type Config = AdamConfig;

    fn new(vars: Vec<Var>, c: AdamConfig) -> candle_core::Result<Adam> {
        let params = ParamsAdamW { lr: c.lr, beta1: c.beta1, beta2: c.beta2, eps: c.eps, weight_decay: 0.0 };
        Ok(Adam(AdamW::new(vars, params)?))
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.0.step(grads)
    }

    fn learning_rate(&self) -> f64 {
        self.0.learning_rate()
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.0.set_learning_rate(lr);
    }
}

/// Adam with decoupled weight decay (as candle's `AdamW`): `w = w·(1 - lr·λ) - lr·m̂/(√v̂ + ε)`.
/// Fused in-place updates when every variable is f32 on the CPU, tensor operations otherwise.
pub enum AdamW {
    /// The one-pass CPU update.
    Fused(FusedAdam),
    /// The tensor-operation update, on the variables' device.
    Tensors(TensorAdam),
}

impl candle_nn::Optimizer for AdamW {
    type Config = ParamsAdamW;

    fn new(vars: Vec<Var>, params: ParamsAdamW) -> candle_core::Result<AdamW> {
        Ok(match FusedAdam::new(vars.clone(), params.clone()) {
            Some(fused) => AdamW::Fused(fused),
            None => AdamW::Tensors(TensorAdam::new(vars, params)?),
        })
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        match self {
            AdamW::Fused(o) => o.step(grads),
            AdamW::Tensors(o) => o.step(grads),
        }
    }

    fn learning_rate(&self) -> f64 {
        match self {
            AdamW::Fused(o) => o.params.lr,
            AdamW::Tensors(o) => o.params.lr,
        }
    }

    fn set_learning_rate(&mut self, lr: f64) {
        match self {
            AdamW::Fused(o) => o.params.lr = lr,
            AdamW::Tensors(o) => o.params.lr = lr,
        }
    }
}

/// Adam(W) over f32 CPU variables, each updated in place in one pass over its values.
pub struct FusedAdam {
    /// Each variable with its first and second moments.
    vars: Vec<(Var, Vec<f32>, Vec<f32>)>,
    params: ParamsAdamW,
    step_t: i32,
}

impl FusedAdam {
    /// The optimizer, or `None` when a variable is not f32 on the CPU.
    pub fn new(vars: Vec<Var>, params: ParamsAdamW) -> Option<FusedAdam> {
        let fits = |v: &Var| v.dtype() == DType::F32 && v.device().is_cpu();
        if !vars.iter().all(fits) {
            return None;
        }
        let vars = vars
            .into_iter()
            .map(|v| {
                let n = v.elem_count();
                (v, vec![0f32; n], vec![0f32; n])
            })
            .collect();
        Some(FusedAdam { vars, params, step_t: 0 })
    }

    /// One step for every variable with a gradient in `grads`.
    pub fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.step_t += 1;
        let p = &self.params;
        let coef = AdamStep {
            beta1: p.beta1 as f32,
            beta2: p.beta2 as f32,
            scale_m: (1.0 / (1.0 - p.beta1.powi(self.step_t))) as f32,
            scale_v: (1.0 / (1.0 - p.beta2.powi(self.step_t))) as f32,
            decay: (1.0 - p.lr * p.weight_decay) as f32,
            lr: p.lr as f32,
            eps: p.eps as f32,
        };
        for (var, m, v) in &mut self.vars {
            if let Some(g) = grads.get(var) {
                kernels::adam_update(var.as_tensor(), &g.contiguous()?, (m, v), coef)?;
            }
        }
        Ok(())
    }
}

impl FusedAdam {
    /// The step count and each variable's moments, for a checkpoint.
    fn state(&self) -> GroupState {
        let (m, v) = self.vars.iter().map(|(_, m, v)| (m.clone(), v.clone())).unzip();
        GroupState::Adam { step: self.step_t, m, v }
    }

    /// Sets the step count and the moments from a [`FusedAdam::state`].
    fn set_state(&mut self, step: i32, m: &[Vec<f32>], v: &[Vec<f32>]) -> candle_core::Result<()> {
        check_adam_state(self.vars.iter().map(|(var, _, _)| var), m, v)?;
        for ((_, mine_m, mine_v), (m, v)) in self.vars.iter_mut().zip(m.iter().zip(v)) {
            mine_m.clone_from(m);
            mine_v.clone_from(v);
        }
        self.step_t = step;
        Ok(())
    }
}

/// Checks that saved Adam moments `m` and `v` fit the variables `vars`, one vector each of the
/// variable's size, before anything is set.
fn check_adam_state<'a>(
    vars: impl ExactSizeIterator<Item = &'a Var>,
    m: &[Vec<f32>],
    v: &[Vec<f32>],
) -> candle_core::Result<()> {
    if m.len() != vars.len() || v.len() != vars.len() {
        candle_core::bail!("the saved Adam state has {} variables, the optimizer {}", m.len(), vars.len());
    }
    for (var, (m, v)) in vars.zip(m.iter().zip(v)) {
        if m.len() != var.elem_count() || v.len() != var.elem_count() {
            candle_core::bail!("the saved Adam moments do not fit a variable of shape {:?}", var.dims());
        }
    }
    Ok(())
}

/// The state of one optimizer group, as a checkpoint stores it: per variable (in the group's
/// order) Adam's moments and step count, or SGD's velocities.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupState {
    /// Adam or AdamW (the fused CPU update).
    Adam {
        /// Steps taken.
        step: i32,
        /// First moments.
        m: Vec<Vec<f32>>,
        /// Second moments.
        v: Vec<Vec<f32>>,
    },
    /// SGD with momentum.
    Sgd {
        /// Velocities.
        velocity: Vec<Vec<f32>>,
    },
}

impl AnyOptimizer {
    /// This optimizer's state, read back to the host from any device.
    fn state(&self) -> candle_core::Result<GroupState> {
        match self {
            AnyOptimizer::Adam(Adam(AdamW::Fused(o))) | AnyOptimizer::AdamW(AdamW::Fused(o)) => Ok(o.state()),
            AnyOptimizer::Adam(Adam(AdamW::Tensors(o))) | AnyOptimizer::AdamW(AdamW::Tensors(o)) => o.state(),
            AnyOptimizer::Sgd(o) => {
                let velocity = o
                    .vars
                    .iter()
                    .map(|(_, v)| v.flatten_all()?.to_vec1::<f32>())
                    .collect::<candle_core::Result<_>>()?;
                Ok(GroupState::Sgd { velocity })
            }
        }
    }

    /// Sets this optimizer's state from [`AnyOptimizer::state`].
    fn set_state(&mut self, state: &GroupState) -> candle_core::Result<()> {
        match (self, state) {
            (
                AnyOptimizer::Adam(Adam(AdamW::Fused(o))) | AnyOptimizer::AdamW(AdamW::Fused(o)),
                GroupState::Adam { step, m, v },
            ) => o.set_state(*step, m, v),
            (
                AnyOptimizer::Adam(Adam(AdamW::Tensors(o))) | AnyOptimizer::AdamW(AdamW::Tensors(o)),
                GroupState::Adam { step, m, v },
            ) => o.set_state(*step, m, v),
            (AnyOptimizer::Sgd(o), GroupState::Sgd { velocity }) => {
                if velocity.len() != o.vars.len() {
                    candle_core::bail!(
                        "the saved SGD state has {} variables, the optimizer {}",
                        velocity.len(),
                        o.vars.len()
                    );
                }
                for ((_, v), saved) in o.vars.iter().zip(velocity) {
                    if saved.len() != v.elem_count() {
                        candle_core::bail!("the saved SGD velocity does not fit a variable of shape {:?}", v.dims());
                    }
                    v.set(&Tensor::from_slice(saved, v.shape(), v.device())?.to_dtype(v.dtype())?)?;
                }
                Ok(())
            }
            _ => candle_core::bail!("the saved optimizer state is for another optimizer"),
        }
    }
}

/// Adam(W) as tensor operations on the variables' own device and dtype (CUDA, or f64): the
/// update [`FusedAdam`] makes in one pass, with the moments in variables beside the weights.
pub struct TensorAdam {
    /// Each variable with its first and second moments.
    vars: Vec<(Var, Var, Var)>,
    params: ParamsAdamW,
    step_t: i32,
}

impl TensorAdam {
    /// The optimizer, with zero moments.
    pub fn new(vars: Vec<Var>, params: ParamsAdamW) -> candle_core::Result<TensorAdam> {
        let zeros = |var: &Var| Var::zeros(var.shape(), var.dtype(), var.device());
        let vars = vars
            .into_iter()
            .map(|var| {
                let (m, v) = (zeros(&var)?, zeros(&var)?);
                Ok((var, m, v))
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(TensorAdam { vars, params, step_t: 0 })
    }

    /// One step for every variable with a gradient in `grads`.
    pub fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.step_t += 1;
        let p = &self.params;
        let scale_m = 1.0 / (1.0 - p.beta1.powi(self.step_t));
        let scale_v = 1.0 / (1.0 - p.beta2.powi(self.step_t));
        for (var, m, v) in &self.vars {
            let Some(g) = grads.get(var) else { continue };
            let next_m = ((m.as_tensor() * p.beta1)? + (g * (1.0 - p.beta1))?)?;
            let next_v = ((v.as_tensor() * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
            let step = ((&next_m * scale_m)? / ((&next_v * scale_v)?.sqrt()? + p.eps)?)?;
            let next_w = ((var.as_tensor() * (1.0 - p.lr * p.weight_decay))? - (step * p.lr)?)?;
            m.set(&next_m)?;
            v.set(&next_v)?;
            var.set(&next_w)?;
        }
        Ok(())
    }

    /// The step count and each variable's moments as f32 on the host, for a checkpoint.
    fn state(&self) -> candle_core::Result<GroupState> {
        let host = |t: &Var| t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>();
        let (mut m, mut v) = (Vec::with_capacity(self.vars.len()), Vec::with_capacity(self.vars.len()));
        for (_, mi, vi) in &self.vars {
            m.push(host(mi)?);
            v.push(host(vi)?);
        }
        Ok(GroupState::Adam { step: self.step_t, m, v })
    }

    /// Sets the step count and the moments from a [`TensorAdam::state`] or a
    /// [`FusedAdam`]'s, moving them to the variables' device.
    fn set_state(&mut self, step: i32, m: &[Vec<f32>], v: &[Vec<f32>]) -> candle_core::Result<()> {
        check_adam_state(self.vars.iter().map(|(var, _, _)| var), m, v)?;
        for ((w, mine_m, mine_v), (m, v)) in self.vars.iter().zip(m.iter().zip(v)) {
            mine_m.set(&Tensor::from_slice(m, w.shape(), w.device())?.to_dtype(w.dtype())?)?;
            mine_v.set(&Tensor::from_slice(v, w.shape(), w.device())?.to_dtype(w.dtype())?)?;
        }
        self.step_t = step;
        Ok(())
    }
}

/// The optimizer an [`Optimizer`] setting names, as one type.
pub enum AnyOptimizer {
    /// [`Optimizer::Adam`].
    Adam(Adam),
    /// [`Optimizer::AdamW`].
    AdamW(AdamW),
    /// [`Optimizer::Sgd`].
    Sgd(Sgd),
}

impl candle_nn::Optimizer for AnyOptimizer {
    type Config = Optimizer;

    fn new(vars: Vec<Var>, setting: Optimizer) -> candle_core::Result<AnyOptimizer> {
        Ok(match setting {
            Optimizer::Adam { lr } => AnyOptimizer::Adam(Adam::new(vars, AdamConfig { lr, ..AdamConfig::default() })?),
            Optimizer::AdamW { lr, weight_decay } => {
                let params = ParamsAdamW { lr, beta1: BETA1, beta2: BETA2, eps: EPS, weight_decay };
                AnyOptimizer::AdamW(AdamW::new(vars, params)?)
            }
            Optimizer::Sgd { lr, momentum } => AnyOptimizer::Sgd(Sgd::new(vars, SgdConfig { lr, momentum })?),
        })
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        match self {
            AnyOptimizer::Adam(o) => o.step(grads),
            AnyOptimizer::AdamW(o) => o.step(grads),
            AnyOptimizer::Sgd(o) => o.step(grads),
        }
    }

    fn learning_rate(&self) -> f64 {
        match self {
            AnyOptimizer::Adam(o) => o.learning_rate(),
            AnyOptimizer::AdamW(o) => o.learning_rate(),
            AnyOptimizer::Sgd(o) => o.learning_rate(),
        }
    }

    fn set_learning_rate(&mut self, lr: f64) {
        match self {
            AnyOptimizer::Adam(o) => o.set_learning_rate(lr),
            AnyOptimizer::AdamW(o) => o.set_learning_rate(lr),
            AnyOptimizer::Sgd(o) => o.set_learning_rate(lr),
        }
    }
}

/// The optimizer groups of a run, each with its own state and base learning rate (the output
/// layer at one rate and the body at another, say).
pub struct ParamGroups {
    /// (group, its base learning rate).
    groups: Vec<(AnyOptimizer, f64)>,
}

impl ParamGroups {
    /// One optimizer of `setting` per group of `(variables, base learning rate)`.
    pub fn new(groups: Vec<(Vec<Var>, f64)>, setting: Optimizer) -> candle_core::Result<ParamGroups> {
        let groups = groups
            .into_iter()
            .map(|(vars, base)| Ok((AnyOptimizer::new(vars, setting)?, base)))
            .collect::<candle_core::Result<_>>()?;
        Ok(ParamGroups { groups })
    }

    /// Sets each group's rate for the next step: `rate` applied to the group's base rate.
    pub fn set_rates(&mut self, rate: impl Fn(f64) -> f64) {
        for (opt, base) in &mut self.groups {
            opt.set_learning_rate(rate(*base));
        }
    }

    /// Back-propagates `loss` and steps every group.
    pub fn backward_step(&mut self, loss: &Tensor) -> candle_core::Result<()> {
        self.backward_step_grads(loss).map(|_| ())
    }

    /// Back-propagates `loss`, steps every group and returns the gradients.
    pub fn backward_step_grads(&mut self, loss: &Tensor) -> candle_core::Result<GradStore> {
        let grads = loss.backward()?;
        for (opt, _) in &mut self.groups {
            opt.step(&grads)?;
        }
        Ok(grads)
    }

    /// Every group's state, in group order (see [`GroupState`]).
    pub fn state(&self) -> candle_core::Result<Vec<GroupState>> {
        self.groups.iter().map(|(opt, _)| opt.state()).collect()
    }

    /// Sets every group's state from [`ParamGroups::state`] of a run with the same groups.
    pub fn set_state(&mut self, states: &[GroupState]) -> candle_core::Result<()> {
        if states.len() != self.groups.len() {
            candle_core::bail!("the saved optimizer has {} groups, this run {}", states.len(), self.groups.len());
        }
        self.groups.iter_mut().zip(states).try_for_each(|((opt, _), state)| opt.set_state(state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    const W0: [f64; 3] = [1.0, -2.0, 0.5];

    /// A variable holding [`W0`] in `dtype` on the CPU.
    fn var(dtype: DType) -> Var {
        Var::from_tensor(&Tensor::new(&W0, &Device::Cpu).unwrap().to_dtype(dtype).unwrap()).unwrap()
    }

    /// The gradients of `loss = Σ w³`, `g = 3w²`, a gradient that changes with the weights.
    fn grads(var: &Var) -> GradStore {
        var.as_tensor().powf(3.0).unwrap().sum_all().unwrap().backward().unwrap()
    }

    fn values(var: &Var) -> Vec<f64> {
        var.as_tensor().to_dtype(DType::F64).unwrap().to_vec1().unwrap()
    }

    fn assert_close(got: &[f64], want: &[f64]) {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "got {got:?}, want {want:?}");
        }
    }

    /// Two Adam(W) steps by the formulas: `m = β1·m + (1-β1)·g`, `v = β2·v + (1-β2)·g²`,
    /// `w = w·(1 - lr·λ) - lr·(m/(1-β1ᵗ)) / (√(v/(1-β2ᵗ)) + ε)`.
    fn adam_by_hand(lr: f64, decay: f64) -> Vec<f64> {
        let (mut w, mut m, mut v) = (W0.to_vec(), [0.0; 3], [0.0; 3]);
        for t in 1..=2 {
            for i in 0..3 {
                let g = 3.0 * w[i] * w[i];
                m[i] = BETA1 * m[i] + (1.0 - BETA1) * g;
                v[i] = BETA2 * v[i] + (1.0 - BETA2) * g * g;
                let m_hat = m[i] / (1.0 - BETA1.powi(t));
                let v_hat = v[i] / (1.0 - BETA2.powi(t));
                w[i] = w[i] * (1.0 - lr * decay) - lr * m_hat / (v_hat.sqrt() + EPS);
            }
        }
        w
    }

    fn two_steps<O: candle_nn::Optimizer>(dtype: DType, config: O::Config) -> (O, Vec<f64>) {
        let var = var(dtype);
        let mut opt = O::new(vec![var.clone()], config).unwrap();
        for _ in 0..2 {
            opt.step(&grads(&var)).unwrap();
        }
        let got = values(&var);
        (opt, got)
    }

    #[test]
    fn adam_takes_the_hand_computed_steps() {
        // A small rate keeps the fused path's f32 rounding (1 - β2 is 1.3e-5 off in f32, the
        // step 6.4e-6 off relative) under the tolerance; the weights still move by 0.02.
        let config = AdamConfig { lr: 0.01, ..AdamConfig::default() };
        let want = adam_by_hand(0.01, 0.0);
        assert!(want.iter().zip(W0).all(|(w, w0)| (w - w0).abs() > 0.015), "{want:?}");
        // f32 on the CPU runs the fused update, f64 the tensor one (as CUDA does).
        let (opt, fused) = two_steps::<Adam>(DType::F32, config);
        assert!(matches!(opt.0, AdamW::Fused(_)));
        assert_close(&fused, &want);
        let (opt, plain) = two_steps::<Adam>(DType::F64, config);
        assert!(matches!(opt.0, AdamW::Tensors(_)));
        assert_close(&plain, &want);
        assert_eq!(opt.learning_rate(), 0.01);
    }

    #[test]
    fn adamw_decays_the_weights_as_computed_by_hand() {
        let params = ParamsAdamW { lr: 0.01, beta1: BETA1, beta2: BETA2, eps: EPS, weight_decay: 0.5 };
        let want = adam_by_hand(0.01, 0.5);
        assert!((want[1] - adam_by_hand(0.01, 0.0)[1]).abs() > 0.01, "the decay must show");
        for dtype in [DType::F32, DType::F64] {
            let (_, got) = two_steps::<AdamW>(dtype, params.clone());
            assert_close(&got, &want);
        }
    }

    #[test]
    fn sgd_with_momentum_takes_the_hand_computed_steps() {
        let (lr, momentum) = (0.01, 0.9);
        // v = m·v - lr·g; w = w + v, with g = 3w².
        let (mut w, mut v) = (W0.to_vec(), [0.0; 3]);
        for _ in 0..2 {
            for i in 0..3 {
                v[i] = momentum * v[i] - lr * 3.0 * w[i] * w[i];
                w[i] += v[i];
            }
        }
        let (opt, got) = two_steps::<Sgd>(DType::F32, SgdConfig { lr, momentum });
        assert_close(&got, &w);
        assert_eq!(opt.learning_rate(), lr);
    }

    #[test]
    fn the_learning_rate_can_change_between_steps() {
        let var = var(DType::F32);
        let mut opt = AnyOptimizer::new(vec![var.clone()], Optimizer::Sgd { lr: 0.01, momentum: 0.0 }).unwrap();
        opt.set_learning_rate(0.0);
        assert_eq!(opt.learning_rate(), 0.0);
        opt.step(&grads(&var)).unwrap();
        assert_eq!(values(&var), W0);
        opt.set_learning_rate(0.01);
        opt.step(&grads(&var)).unwrap();
        let want: Vec<f64> = W0.iter().map(|w| w - 0.01 * 3.0 * w * w).collect();
        assert_close(&values(&var), &want);
    }

    #[test]
    fn settings_choose_the_optimizer() {
        let vars = || vec![var(DType::F32)];
        let adam = AnyOptimizer::new(vars(), Optimizer::Adam { lr: 0.1 }).unwrap();
        assert!(matches!(adam, AnyOptimizer::Adam(_)) && adam.learning_rate() == 0.1);
        let adamw = AnyOptimizer::new(vars(), Optimizer::AdamW { lr: 0.2, weight_decay: 0.1 }).unwrap();
        assert!(matches!(adamw, AnyOptimizer::AdamW(AdamW::Fused(_))) && adamw.learning_rate() == 0.2);
        let sgd = AnyOptimizer::new(vars(), Optimizer::Sgd { lr: 0.3, momentum: 0.9 }).unwrap();
        assert!(matches!(sgd, AnyOptimizer::Sgd(_)) && sgd.learning_rate() == 0.3);
    }

    #[test]
    fn groups_follow_the_rate_from_their_own_base() {
        let (head, body) = (var(DType::F32), var(DType::F32));
        let setting = Optimizer::Sgd { lr: 0.01, momentum: 0.0 };
        let mut groups =
            ParamGroups::new(vec![(vec![head.clone()], 0.01), (vec![body.clone()], 0.0)], setting).unwrap();
        groups.set_rates(|base| base * 0.5);
        assert_eq!(groups.groups[0].0.learning_rate(), 0.005);
        let loss = (head.as_tensor().powf(3.0).unwrap().sum_all().unwrap()
            + body.as_tensor().powf(3.0).unwrap().sum_all().unwrap())
        .unwrap();
        groups.backward_step(&loss).unwrap();
        let want: Vec<f64> = W0.iter().map(|w| w - 0.005 * 3.0 * w * w).collect();
        assert_close(&values(&head), &want);
        assert_eq!(values(&body), W0);
    }

    #[test]
    fn fused_and_tensor_adam_match_candles_adamw() {
        let dev = Device::Cpu;
        // More values than two parallel pieces of the fused update, the last one partial.
        let init: Vec<f32> =
            (0..2 * crate::kernels::ADAM_PIECE as i32 + 300).map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0).collect();
        let params = ParamsAdamW { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-7, weight_decay: 0.1 };
        // A loss whose gradient changes with the weights: sum(w³).
        let grads = |var: &Var| var.as_tensor().powf(3.0).unwrap().sum_all().unwrap().backward().unwrap();
        let run = |kind: usize| -> Vec<f32> {
            let var = Var::from_vec(init.clone(), (init.len() / 4, 4), &dev).unwrap();
            let mut fused = FusedAdam::new(vec![var.clone()], params.clone()).unwrap();
            let mut tensors = TensorAdam::new(vec![var.clone()], params.clone()).unwrap();
            let mut plain = candle_nn::AdamW::new(vec![var.clone()], params.clone()).unwrap();
            for _ in 0..5 {
                let g = grads(&var);
                match kind {
                    0 => fused.step(&g).unwrap(),
                    1 => tensors.step(&g).unwrap(),
                    _ => plain.step(&g).unwrap(),
                }
            }
            var.as_tensor().flatten_all().unwrap().to_vec1().unwrap()
        };
        let want = run(2);
        assert_ne!(want, init, "the weights did not move");
        for got in [run(0), run(1)] {
            for (x, y) in got.iter().zip(&want) {
                assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "ours {x} vs candle {y}");
            }
        }
    }

    #[test]
    fn tensor_adam_state_carries_over_to_the_fused_one() {
        // A checkpoint taken on CUDA (the tensor update) resumes on the CPU (the fused one).
        let dev = Device::Cpu;
        let params = ParamsAdamW { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-7, weight_decay: 0.0 };
        let init: Vec<f32> = (0..40).map(|i| (i as f32 - 20.0) / 15.0).collect();
        let grads = |var: &Var| var.as_tensor().powf(3.0).unwrap().sum_all().unwrap().backward().unwrap();
        let a = Var::from_vec(init.clone(), 40, &dev).unwrap();
        let mut tensors = TensorAdam::new(vec![a.clone()], params.clone()).unwrap();
        for _ in 0..3 {
            tensors.step(&grads(&a)).unwrap();
        }
        let GroupState::Adam { step, m, v } = tensors.state().unwrap() else { panic!("Adam's state") };
        assert_eq!(step, 3);
        assert!(m[0].iter().any(|&x| x != 0.0) && v[0].iter().any(|&x| x != 0.0));
        let b = Var::from_vec(a.as_tensor().to_vec1::<f32>().unwrap(), 40, &dev).unwrap();
        let mut fused = FusedAdam::new(vec![b.clone()], params).unwrap();
        fused.set_state(step, &m, &v).unwrap();
        tensors.step(&grads(&a)).unwrap();
        fused.step(&grads(&b)).unwrap();
        let (x, y): (Vec<f32>, Vec<f32>) = (a.as_tensor().to_vec1().unwrap(), b.as_tensor().to_vec1().unwrap());
        for (x, y) in x.iter().zip(&y) {
            assert!((x - y).abs() <= 1e-6 * (1.0 + y.abs()), "tensor {x} vs fused {y}");
        }
        assert!(fused.set_state(step, &m[..0], &v[..0]).is_err(), "a state of another size is refused");
    }
}
