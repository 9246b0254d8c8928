//! Training, evaluation and prediction.
//!
//! `fit` shuffles with a seeded ChaCha8 generator every epoch, reports progress through a
//! callback, keeps the weights of the best validation epoch, stops early, on an interrupt flag
//! or on a non-finite loss, and always leaves a usable model behind.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{Tensor, D};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::{ImageFormat, PixelScaling, Split};
use crate::model::architecture::network::{Network, Weights};
use crate::model::error::{ModelError, Result};
use crate::model::training::ema::Ema;
use crate::model::training::optim::{GroupState, Optimizer, ParamGroups};

/// A batch filler for augmented training: given train-split indices and the 0-based epoch, it
/// writes `indices.len() × rows × cols` model-ready (already scaled) floats.
pub type Augment<'a> = &'a (dyn Fn(&[usize], u64, &mut [f32]) + Sync);

/// How the learning rate changes over training.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub enum Schedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Warm up from base/25 to base over the first 30% of steps, then anneal (cosine) to base/10⁴.
    OneCycle,
    /// Cosine decay from base to 0 over all steps.
    Cosine,
    /// Multiply by `gamma` every `every` epochs.
    Step {
        /// Epochs between decays.
        every: usize,
        /// Decay factor.
        gamma: f64,
    },
}

/// As the `schedule` statement writes it: `constant`, `onecycle`, `cosine`,
/// `step every 3 factor 0.5`.
impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Schedule::Constant => f.write_str("constant"),
            Schedule::OneCycle => f.write_str("onecycle"),
            Schedule::Cosine => f.write_str("cosine"),
            Schedule::Step { every, gamma } => write!(f, "step every {every} factor {gamma}"),
        }
    }
}

impl Schedule {
    /// The rate at `step` (0-based) of `total` steps, during `epoch` (0-based).
    pub fn lr(&self, base: f64, step: usize, total: usize, epoch: usize) -> f64 {
        use std::f64::consts::PI;
        let total = total.max(1) as f64;
        let t = step as f64;
        match *self {
            Schedule::Constant => base,
            Schedule::Cosine => base * 0.5 * (1.0 + (PI * t / total).cos()),
            Schedule::OneCycle => {
                let warm = (0.3 * total).max(1.0);
                if t < warm {
                    let low = base / 25.0;
                    low + (base - low) * 0.5 * (1.0 - (PI * t / warm).cos())
                } else {
                    let end = base / 1e4;
                    let frac = ((t - warm) / (total - warm).max(1.0)).min(1.0);
                    end + (base - end) * 0.5 * (1.0 + (PI * frac).cos())
                }
            }
            Schedule::Step { every, gamma } => base * gamma.powi((epoch / every.max(1)) as i32),
        }
    }
}

/// Which validation metric picks the best epoch and drives early stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Monitor {
    /// Lowest validation loss (the Keras default).
    #[default]
    ValLoss,
    /// Highest validation accuracy.
    ValAccuracy,
}

/// Which network output each dataset label stands for: the identity, or a table from label
/// (an index into the dataset's classes) to output. A model whose head was made for some of a
/// dataset's classes (after `filter classes 5-9`, outputs 0..4 are classes 5..9) trains and
/// is scored through such a table; a label with no output is rejected.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LabelMap {
    table: Option<Vec<Option<u32>>>,
}

impl LabelMap {
    /// Label `l` is output `l`.
    pub fn identity() -> LabelMap {
        LabelMap { table: None }
    }

    /// Label `l` is output `table[l]`; labels past the table or mapped to `None` have none.
    pub fn new(table: Vec<Option<u32>>) -> LabelMap {
        LabelMap { table: Some(table) }
    }

    /// The output of dataset label `label`, if it has one.
    pub fn output(&self, label: u8) -> Option<u32> {
        match &self.table {
            None => Some(label as u32),
            Some(t) => t.get(label as usize).copied().flatten(),
        }
    }

    /// The outputs of the images at `indices` of `split` (checked by `check_split`).
    pub(crate) fn outputs(&self, split: &Split, indices: &[usize]) -> Vec<u32> {
        indices.iter().map(|&i| self.output(split.labels[i]).unwrap_or(0)).collect()
    }
}

/// Training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the training split.
    pub epochs: usize,
    /// Images per gradient step (32, as in Keras).
    pub batch_size: usize,
    /// Optimizer and base learning rate.
    pub optimizer: Optimizer,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Label smoothing ε in [0, 1): targets become (1-ε)·one-hot + ε/classes.
    pub label_smoothing: f32,
    /// Stop after this many epochs without improvement of the monitored metric.
    pub patience: Option<usize>,
    /// Metric choosing the best epoch.
    pub monitor: Monitor,
    /// Seed of the shuffling and dropout generators.
    pub seed: u64,
    /// Base learning rate of every layer but the output layer (a second optimizer group,
    /// following the same schedule); `None` for one rate throughout.
    pub body_lr: Option<f64>,
    /// Which output each dataset label trains (and validates) against.
    pub labels: LabelMap,
    /// Decay of the moving average of the weights (see [`crate::model::training::ema`]), which
    /// validation, the kept epoch and the weights `fit` leaves behind use; `None` for none.
    #[serde(default)]
    pub ema: Option<f64>,
}

impl Default for TrainConfig {
    fn default() -> TrainConfig {
        TrainConfig {
            epochs: 10,
            batch_size: 32,
            optimizer: Optimizer::default(),
            schedule: Schedule::Constant,
            label_smoothing: 0.0,
            patience: None,
            monitor: Monitor::ValLoss,
            seed: 0,
            body_lr: None,
            labels: LabelMap::identity(),
            ema: None,
        }
    }
}

/// Metrics of one finished epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (training mode, with smoothing).
    pub loss: f32,
    /// Training accuracy over the epoch (training mode).
    pub accuracy: f32,
    /// Validation cross-entropy, when a validation split was given.
    pub val_loss: Option<f32>,
    /// Validation accuracy, when a validation split was given.
    pub val_accuracy: Option<f32>,
    /// Learning rate at the epoch's last step.
    pub lr: f64,
    /// Wall time of the epoch, validation included.
    pub seconds: f64,
    /// Training images per second (validation excluded).
    pub images_per_sec: f64,
}

/// Progress reported while training.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent {
    /// Every few batches: batches done in this epoch, of `total`, the running mean loss and
    /// accuracy, the images trained on and the time taken so far.
    Batch {
        /// 1-based epoch number.
        epoch: usize,
        /// Batches done in this epoch.
        done: usize,
        /// Batches per epoch.
        total: usize,
        /// Mean loss of the epoch so far.
        loss: f32,
        /// Training accuracy of the epoch so far (the batches' predictions before their steps).
        accuracy: f32,
        /// Images trained on in this epoch so far.
        images: usize,
        /// Seconds since the epoch started.
        seconds: f64,
    },
    /// An epoch finished.
    Epoch(EpochStats),
}

/// Why training stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StopReason {
    /// Every epoch ran.
    Completed,
    /// The monitored metric did not improve for `patience` epochs.
    EarlyStopped {
        /// The epoch after which training stopped (1-based).
        epoch: usize,
    },
    /// The interrupt flag was raised; training stopped after a batch of this epoch.
    Interrupted {
        /// 1-based epoch in progress.
        epoch: usize,
        /// Batches done in that epoch.
        batch: usize,
    },
    /// The loss became NaN or infinite; the weights of the last finished epoch were restored.
    NonFiniteLoss {
        /// 1-based epoch in progress.
        epoch: usize,
        /// 1-based batch whose loss was not finite.
        batch: usize,
    },
}

/// The record of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Finished epochs, in order.
    pub epochs: Vec<EpochStats>,
    /// Why training stopped.
    pub stop: StopReason,
    /// The best epoch by the monitored validation metric (1-based), if validated.
    pub best_epoch: Option<usize>,
    /// True when the best epoch's weights were restored at the end (it was not the last one).
    pub restored_best: bool,
    /// Plain-language notes on what happened (stops, restorations).
    pub notes: Vec<String>,
}

impl History {
    /// Columns for plotting: (epoch numbers, accuracy, val accuracy, loss, val loss);
    /// the validation columns are empty when there was no validation split.
    #[allow(clippy::type_complexity)]
    pub fn series(&self) -> (Vec<usize>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let e = &self.epochs;
        (
            e.iter().map(|s| s.epoch).collect(),
            e.iter().map(|s| s.accuracy).collect(),
            e.iter().filter_map(|s| s.val_accuracy).collect(),
            e.iter().map(|s| s.loss).collect(),
            e.iter().filter_map(|s| s.val_loss).collect(),
        )
    }
}

/// Results of evaluating a model on a split.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f32,
    /// Fraction of correct predictions.
    pub accuracy: f32,
    /// Accuracy per true class; `None` for a class with no image.
    pub per_class_accuracy: Vec<Option<f32>>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
    /// Predicted class of every image, in order.
    pub predictions: Vec<usize>,
}

/// The optimizer groups of a run: every trainable parameter at the base rate, or the head at
/// the base rate and the body at its own, each group with its own state.
pub(crate) fn param_groups(net: &Network, optimizer: Optimizer, body_lr: Option<f64>) -> Result<ParamGroups> {
    let base = optimizer.lr();
    let groups = match body_lr {
        None => vec![(net.trainable_vars(), base)],
        Some(body) => {
            let (head, rest) = net.trainable_groups();
            vec![(head, base), (rest, body)]
        }
    };
    Ok(ParamGroups::new(groups, optimizer)?)
}

/// Mean cross-entropy of `logits` against `labels` (u32), with label smoothing `eps`.
pub(crate) fn loss_fn(logits: &Tensor, labels: &Tensor, eps: f32) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let nll = candle_nn::loss::nll(&logp, labels)?;
    if eps <= 0.0 {
        return Ok(nll);
    }
    let uniform = logp.mean(D::Minus1)?.mean_all()?.neg()?;
    Ok(((nll * (1.0 - eps as f64))? + (uniform * eps as f64)?)?)
}

/// Checks that a split fits the network: sizes, labels and image shape.
pub(crate) fn check_split(
    net: &Network,
    split: &Split,
    format: ImageFormat,
    labels: &LabelMap,
    what: &str,
) -> Result<()> {
    let (c, h, w) = net.input();
    let ImageFormat { rows, cols, .. } = format;
    if (c, h, w) != (1, rows, cols) {
        return Err(ModelError::Data(format!(
            "the model expects {c}×{h}×{w} images, the {what} split has 1×{rows}×{cols}"
        )));
    }
    if split.pixels.len() != split.len() * rows * cols {
        return Err(ModelError::Data(format!(
            "the {what} split has {} labels but {} bytes of pixels",
            split.len(),
            split.pixels.len()
        )));
    }
    let outside = |&&l: &&u8| labels.output(l).is_none_or(|o| o as usize >= net.classes());
    if let Some(bad) = split.labels.iter().find(outside) {
        return Err(ModelError::Data(match labels.output(*bad) {
            None => format!("the {what} split has label {bad}, which none of the model's outputs stands for"),
            Some(_) => format!("the {what} split has label {bad}, but the model has {} classes", net.classes()),
        }));
    }
    Ok(())
}

/// Fills `out` with the images at `chunk` of `data`'s training split, through its batch filler
/// when it augments.
fn fill_into(data: TrainData<'_>, epoch: usize, chunk: &[usize], out: &mut [f32]) {
    match data.augment {
        Some(hook) => hook(chunk, epoch as u64, out),
        None => fill_batch(data.train, chunk, data.format, out),
    }
}

/// Fills `out` with the pixels of the images at `indices`, scaled as `format` says.
pub(crate) fn fill_batch(split: &Split, indices: &[usize], format: ImageFormat, out: &mut [f32]) {
    let image_len = format.image_len();
    let (scale, offset) = format.scaling.affine();
    for (slot, &i) in out.chunks_exact_mut(image_len).zip(indices) {
        for (o, &p) in slot.iter_mut().zip(split.image(i, image_len)) {
            *o = p as f32 * scale + offset;
        }
    }
}

/// What [`fit`] trains on: the training split, an optional validation split, the size and
/// scaling of their images, and an optional batch filler for augmented training.
#[derive(Clone, Copy)]
pub struct TrainData<'a> {
    /// The training split.
    pub train: &'a Split,
    /// The validation split, scored after every epoch.
    pub val: Option<&'a Split>,
    /// The images' size and how their bytes become model inputs.
    pub format: ImageFormat,
    /// Fills the training batches in place of the scaled pixels (see [`Augment`]).
    pub augment: Option<Augment<'a>>,
}

impl<'a> TrainData<'a> {
    /// `train` and `val` in `format`, batches made of the scaled pixels (no augmentation).
    pub fn new(train: &'a Split, val: Option<&'a Split>, format: ImageFormat) -> TrainData<'a> {
        TrainData { train, val, format, augment: None }
    }
}

/// Checks the splits and the settings of a run before anything changes.
pub(crate) fn check_fit(net: &Network, data: &TrainData<'_>, config: &TrainConfig) -> Result<()> {
    check_split(net, data.train, data.format, &config.labels, "training")?;
    if let Some(val) = data.val {
        check_split(net, val, data.format, &config.labels, "validation")?;
    }
    if let Some(body) = config.body_lr {
        if !(body.is_finite() && body > 0.0) {
            return Err(ModelError::Data(format!("the body learning rate must be above 0, got {body}")));
        }
    }
    if data.train.is_empty() {
        return Err(ModelError::Data("the training split is empty".into()));
    }
    if config.batch_size == 0 {
        return Err(ModelError::Data("the batch size must be at least 1".into()));
    }
    if !(0.0..1.0).contains(&config.label_smoothing) {
        return Err(ModelError::Data(format!("label smoothing {} is outside [0, 1)", config.label_smoothing)));
    }
    Ok(())
}

/// The position of a ChaCha8 generator: its seed, stream and word position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    /// The 32-byte seed, as hex.
    pub seed: String,
    /// The stream number.
    pub stream: u64,
    /// The word position (a u128, as decimal text).
    pub word_pos: String,
}

impl RngState {
    /// The position of `rng`.
    pub fn of(rng: &ChaCha8Rng) -> RngState {
        RngState {
            seed: hex::encode(rng.get_seed()),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos().to_string(),
        }
    }

    /// A generator at this position.
    pub fn to_rng(&self) -> ChaCha8Rng {
        let mut seed = [0u8; 32];
        if let Ok(bytes) = hex::decode(&self.seed) {
            if bytes.len() == 32 {
                seed.copy_from_slice(&bytes);
            }
        }
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(self.word_pos.parse().unwrap_or(0));
        rng
    }

    /// Whether the text fields are well formed (checked when a checkpoint is read).
    pub(crate) fn is_valid(&self) -> bool {
        hex::decode(&self.seed).is_ok_and(|b| b.len() == 32) && self.word_pos.parse::<u128>().is_ok()
    }
}

/// The best epoch so far: its score (lower is better), number and weights.
#[derive(Debug, Clone)]
pub struct BestState {
    /// The monitored metric, lower is better (validation accuracy negated).
    pub score: f32,
    /// 1-based epoch.
    pub epoch: usize,
    /// Its weights.
    pub weights: Weights,
}

/// Everything a [`fit`] run needs to continue after a finished epoch, besides the
/// network's weights and its settings.
#[derive(Debug, Clone)]
pub struct RunState {
    /// Epochs finished.
    pub epochs_done: usize,
    /// Optimizer steps taken (the schedule's position).
    pub step: usize,
    /// The shuffling generator.
    pub rng: RngState,
    /// The dropout masks' seed and calls drawn (see [`Network::dropout_state`]).
    pub dropout: (u64, u64),
    /// The training order after the last shuffle (each epoch shuffles the previous order).
    pub order: Vec<u32>,
    /// Each optimizer group's state.
    pub optimizer: Vec<GroupState>,
    /// The best epoch so far, when validated.
    pub best: Option<BestState>,
    /// The history so far.
    pub history: History,
    /// The moving average of the weights, when the run keeps one.
    pub ema: Option<Weights>,
}

/// Trains `net` on `data.train`, validating on `data.val` after each epoch.
///
/// `data.augment`, when given, fills a batch for the train indices given and the 0-based epoch
/// with model-ready (already scaled) floats; otherwise batches are the pixels scaled by
/// `data.format`. Raising `interrupt` stops training after the current batch. With a validation
/// split the weights of the best epoch (by `config.monitor`) are restored at the end. Errors
/// only for bad inputs or tensor failures; a non-finite loss stops training with the weights of
/// the last finished epoch and is reported in [`History::stop`].
pub fn fit(
    net: &Network,
    data: TrainData<'_>,
    config: &TrainConfig,
    interrupt: &AtomicBool,
    progress: &mut dyn FnMut(TrainEvent),
) -> Result<History> {
    fit_with(net, data, config, interrupt, progress, FitHooks::default())
}

/// What a finished epoch hands [`FitHooks::on_epoch`].
pub struct EpochEnd<'a> {
    /// Everything a resumed run needs to continue from here (see [`RunState`]).
    pub state: &'a RunState,
    /// Whether this epoch's weights are those `fit` would keep if it ended now: the best by the
    /// monitored metric, or, without validation, the latest.
    pub kept: bool,
    /// The gradients of the epoch's last step by parameter name, when
    /// [`FitHooks::last_grads`] asked for them.
    pub grads: Option<&'a Weights>,
}

/// The epoch hook of [`fit_with`].
pub type OnEpoch<'a> = &'a mut dyn FnMut(&EpochEnd<'_>) -> Result<()>;

/// Extras of [`fit_with`]: where a run starts, and a hook after every epoch.
#[derive(Default)]
pub struct FitHooks<'a> {
    /// Continue this run (read back from a checkpoint) instead of starting afresh.
    pub resume: Option<RunState>,
    /// Called after every finished epoch, after its validation and patience check and before
    /// its interrupt check (so a run interrupted there has this epoch's state); an error ends
    /// training and is returned.
    pub on_epoch: Option<OnEpoch<'a>>,
    /// Keep the gradients of each epoch's last step for `on_epoch`.
    pub last_grads: bool,
    /// Fill (augment) the next batch on the CPU while a step runs; `None` does so off the CPU
    /// only, where the step waits on the device (on the CPU the step keeps every core busy).
    pub fill_ahead: Option<bool>,
}

/// [`fit`] with [`FitHooks`]: a resumed run continues exactly where its state was taken (the
/// same weights, optimizer state, shuffling and dropout position, best epoch and history), so
/// on the same device and thread count it ends bit-identical to an uninterrupted one.
pub fn fit_with(
    net: &Network,
    data: TrainData<'_>,
    config: &TrainConfig,
    interrupt: &AtomicBool,
    progress: &mut dyn FnMut(TrainEvent),
    hooks: FitHooks<'_>,
) -> Result<History> {
    check_fit(net, &data, config)?;
    let mut run = Run::new(net, data, config, interrupt)?;
    run.overlap = hooks.fill_ahead.unwrap_or(!net.device().is_cpu());
    run.keep_grads = hooks.last_grads;
    run.on_epoch = hooks.on_epoch;
    let first = match hooks.resume {
        Some(state) => run.resume(state)?,
        None => 0,
    };
    for epoch in first..config.epochs {
        if run.epoch(epoch, progress)?.is_break() {
            break;
        }
    }
    run.restore_best()?;
    run.keep_average()?;
    Ok(run.finish())
}

/// The weights of the best epoch so far by the monitored metric.
struct Best {
    /// The metric, lower is better.
    score: f32,
    /// 1-based epoch.
    epoch: usize,
    weights: Weights,
}

/// Running sums over an epoch's batches.
struct Totals {
    loss_sum: f64,
    correct: usize,
    seen: usize,
    /// The learning rate of the latest step.
    lr: f64,
}

impl Totals {
    fn mean_loss(&self) -> f32 {
        (self.loss_sum / self.seen as f64) as f32
    }
}

/// The state of one [`fit`] run.
struct Run<'a, 'h> {
    net: &'a Network,
    data: TrainData<'a>,
    config: &'a TrainConfig,
    interrupt: &'a AtomicBool,
    device: candle_core::Device,
    steps_per_epoch: usize,
    total_steps: usize,
    /// Batches between two progress reports.
    report_every: usize,
    /// Shuffles the training order.
    rng: ChaCha8Rng,
    opt: ParamGroups,
    /// The batch being filled, `batch_size` images long.
    buf: Vec<f32>,
    /// The weights after the last finished epoch (before the first, the initial ones).
    last_good: Weights,
    best: Option<Best>,
    /// Steps taken in the whole run.
    step: usize,
    history: History,
    /// The training order, shuffled afresh (from its last order) every epoch.
    order: Vec<usize>,
    /// The epoch hook and whether it wants the last step's gradients (kept in `grads`).
    on_epoch: Option<OnEpoch<'h>>,
    keep_grads: bool,
    grads: Option<Weights>,
    /// Fill the next batch while the device computes a step (off the CPU).
    overlap: bool,
    /// The moving average of the weights, when `config.ema` asks for one.
    ema: Option<Ema>,
}

impl<'a, 'h> Run<'a, 'h> {
    fn new(
        net: &'a Network,
        data: TrainData<'a>,
        config: &'a TrainConfig,
        interrupt: &'a AtomicBool,
    ) -> Result<Run<'a, 'h>> {
        let steps_per_epoch = data.train.len().div_ceil(config.batch_size);
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        net.reseed_dropout(config.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1));
        let opt = param_groups(net, config.optimizer, config.body_lr)?;
        Ok(Run {
            net,
            data,
            config,
            interrupt,
            device: net.device().clone(),
            steps_per_epoch,
            total_steps: steps_per_epoch * config.epochs,
            report_every: (steps_per_epoch / 40).max(1),
            rng,
            opt,
            buf: vec![0f32; config.batch_size * data.format.image_len()],
            last_good: net.snapshot()?,
            best: None,
            step: 0,
            history: History {
                epochs: Vec::new(),
                stop: StopReason::Completed,
                best_epoch: None,
                restored_best: false,
                notes: Vec::new(),
            },
            order: (0..data.train.len()).collect(),
            on_epoch: None,
            keep_grads: false,
            grads: None,
            overlap: false,
            ema: config.ema.map(|decay| Ema::new(net, decay)).transpose()?,
        })
    }

    /// Takes up `state` (see [`fit_with`]); the 0-based epoch to run next.
    fn resume(&mut self, state: RunState) -> Result<usize> {
        let bad = |what: String| Err(ModelError::Data(format!("cannot resume this run: {what}")));
        if state.order.len() != self.order.len() {
            return bad(format!(
                "it shuffled {} training images, the split has {}",
                state.order.len(),
                self.order.len()
            ));
        }
        if state.epochs_done > self.config.epochs || state.step != state.epochs_done * self.steps_per_epoch {
            return bad(format!("{} epochs and {} steps done do not fit this run", state.epochs_done, state.step));
        }
        if state.order.iter().any(|&i| i as usize >= self.order.len()) {
            return bad("its training order names images past the split".into());
        }
        self.opt.set_state(&state.optimizer)?;
        self.order = state.order.iter().map(|&i| i as usize).collect();
        self.rng = state.rng.to_rng();
        self.net.set_dropout_state(state.dropout);
        self.step = state.step;
        self.best = state.best.map(|b| Best { score: b.score, epoch: b.epoch, weights: b.weights });
        self.ema = match (self.config.ema, state.ema) {
            (Some(decay), Some(average)) => Some(Ema::resume(self.net, decay, average)?),
            (None, None) => None,
            (Some(_), None) => return bad("it kept no moving average of the weights, and this run keeps one".into()),
            (None, Some(_)) => return bad("it kept a moving average of the weights, and this run keeps none".into()),
        };
        let done = matches!(state.history.stop, StopReason::EarlyStopped { .. });
        self.history = state.history;
        Ok(if done { self.config.epochs } else { state.epochs_done })
    }

    /// The run's state after `epochs_done` epochs.
    fn state(&self, epochs_done: usize) -> Result<RunState> {
        Ok(RunState {
            epochs_done,
            step: self.step,
            rng: RngState::of(&self.rng),
            dropout: self.net.dropout_state(),
            order: self.order.iter().map(|&i| i as u32).collect(),
            optimizer: self.opt.state()?,
            best: self.best.as_ref().map(|b| BestState { score: b.score, epoch: b.epoch, weights: b.weights.clone() }),
            history: self.history.clone(),
            ema: self.ema.as_ref().map(|e| e.weights().clone()),
        })
    }

    /// Calls the epoch hook, if any, after `epoch`; `kept` as [`EpochEnd::kept`].
    fn call_hook(&mut self, epoch: usize, kept: bool) -> Result<()> {
        if self.on_epoch.is_none() {
            return Ok(());
        }
        let state = self.state(epoch + 1)?;
        let grads = self.grads.take();
        let end = EpochEnd { state: &state, kept, grads: grads.as_ref() };
        match self.on_epoch.as_mut() {
            Some(hook) => hook(&end),
            None => Ok(()),
        }
    }

    /// Runs epoch `epoch` (0-based) over `order`, shuffled first; `Break` when training stops.
    fn epoch(&mut self, epoch: usize, progress: &mut dyn FnMut(TrainEvent)) -> Result<ControlFlow<()>> {
        let started = Instant::now();
        let mut order = std::mem::take(&mut self.order);
        order.shuffle(&mut self.rng);
        let mut totals = Totals { loss_sum: 0.0, correct: 0, seen: 0, lr: self.config.optimizer.lr() };
        let chunks: Vec<&[usize]> = order.chunks(self.config.batch_size).collect();
        // Off the CPU the step waits on the device: the next batch is filled (augmented) on
        // the CPU meanwhile. On the CPU the step keeps every core busy, so batches are filled
        // in turn.
        if self.overlap {
            if let Some(first) = chunks.first() {
                self.fill(epoch, first);
            }
        }
        for (b, chunk) in chunks.iter().enumerate() {
            let next = if self.overlap { chunks.get(b + 1).copied() } else { None };
            let stop = match self.batch(epoch, b, chunk, next, &mut totals) {
                Ok(flow) => flow.is_break() || self.after_batch(epoch, b, started, &totals, progress).is_break(),
                Err(e) => {
                    self.order = order;
                    return Err(e);
                }
            };
            if stop {
                self.order = order;
                return Ok(ControlFlow::Break(()));
            }
        }
        self.order = order;
        self.end_epoch(epoch, started, &totals, progress)
    }

    /// Fills `self.buf` with the images at `chunk`, augmented when the run augments.
    fn fill(&mut self, epoch: usize, chunk: &[usize]) {
        let len = chunk.len() * self.data.format.image_len();
        fill_into(self.data, epoch, chunk, &mut self.buf[..len]);
    }

    /// One training step on the images at `chunk`, batch `b` of `epoch` (already in the batch
    /// buffer when the run overlaps), filling the buffer with `next`'s images during the step
    /// when given; `Break` when the loss is not finite (see [`Run::stop_non_finite`]).
    fn batch(
        &mut self,
        epoch: usize,
        b: usize,
        chunk: &[usize],
        next: Option<&[usize]>,
        totals: &mut Totals,
    ) -> Result<ControlFlow<()>> {
        let (config, step, total) = (self.config, self.step, self.total_steps);
        totals.lr = config.schedule.lr(config.optimizer.lr(), step, total, epoch);
        self.opt.set_rates(|base| config.schedule.lr(base, step, total, epoch));
        let ImageFormat { rows, cols, .. } = self.data.format;
        let m = chunk.len();
        if !self.overlap {
            self.fill(epoch, chunk);
        }
        // The batch is copied to the device here, so the buffer is free for the next one.
        let xs = Tensor::from_slice(&self.buf[..m * rows * cols], (m, 1, rows, cols), &self.device)?;
        let Some(next) = next else { return self.step(epoch, b, chunk, &xs, totals) };
        let (data, mut buf) = (self.data, std::mem::take(&mut self.buf));
        let mut result = None;
        rayon::in_place_scope(|scope| {
            let len = next.len() * data.format.image_len();
            let slot = &mut buf[..len];
            scope.spawn(move |_| fill_into(data, epoch, next, slot));
            result = Some(self.step(epoch, b, chunk, &xs, totals));
        });
        self.buf = buf;
        result.expect("the scope ran the step")
    }

    /// The forward and backward pass and the optimizer step on the batch `xs` (the images at
    /// `chunk`), and its loss and accuracy added to `totals`.
    fn step(
        &mut self,
        epoch: usize,
        b: usize,
        chunk: &[usize],
        xs: &Tensor,
        totals: &mut Totals,
    ) -> Result<ControlFlow<()>> {
        let (config, m) = (self.config, chunk.len());
        let labels = config.labels.outputs(self.data.train, chunk);
        let ys = Tensor::from_vec(labels.clone(), m, &self.device)?;
        let logits = self.net.forward(xs, true)?;
        let loss = loss_fn(&logits, &ys, config.label_smoothing)?;
        let loss_value = loss.to_scalar::<f32>()?;
        if !loss_value.is_finite() {
            self.stop_non_finite(loss_value, epoch, b)?;
            return Ok(ControlFlow::Break(()));
        }
        if self.keep_grads && b + 1 == self.steps_per_epoch {
            let grads = self.opt.backward_step_grads(&loss)?;
            let named = self.net.trainable_named();
            let kept = named.into_iter().filter_map(|(name, var)| grads.get(&var).map(|g| (name, g.clone())));
            self.grads = Some(kept.collect());
        } else {
            self.opt.backward_step(&loss)?;
        }
        self.step += 1;
        if let Some(ema) = self.ema.as_mut() {
            ema.update(self.step)?;
        }
        let predicted = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
        totals.correct += predicted.iter().zip(&labels).filter(|(p, l)| p == l).count();
        totals.loss_sum += loss_value as f64 * m as f64;
        totals.seen += m;
        Ok(ControlFlow::Continue(()))
    }

    /// Stop check: the loss became `loss` at batch `b` of `epoch`; restores the weights of the
    /// last finished epoch.
    fn stop_non_finite(&mut self, loss: f32, epoch: usize, b: usize) -> Result<()> {
        self.net.restore(&self.last_good)?;
        self.history.stop = StopReason::NonFiniteLoss { epoch: epoch + 1, batch: b + 1 };
        self.history.notes.push(format!(
            "the loss became {loss} at epoch {}, batch {}: training stopped and the weights of {} were restored (try a lower learning rate)",
            epoch + 1,
            b + 1,
            if epoch == 0 { "the initial model".to_string() } else { format!("epoch {epoch}") }
        ));
        Ok(())
    }

    /// After batch `b` of `epoch` (started at `started`): a progress report every few batches, and the interrupt
    /// check within the epoch (`Break` when raised before its last batch, whose progress is
    /// then reported).
    fn after_batch(
        &mut self,
        epoch: usize,
        b: usize,
        started: Instant,
        totals: &Totals,
        progress: &mut dyn FnMut(TrainEvent),
    ) -> ControlFlow<()> {
        let (done, total) = (b + 1, self.steps_per_epoch);
        let report = TrainEvent::Batch {
            epoch: epoch + 1,
            done,
            total,
            loss: totals.mean_loss(),
            accuracy: totals.correct as f32 / totals.seen.max(1) as f32,
            images: totals.seen,
            seconds: started.elapsed().as_secs_f64(),
        };
        let reported = done % self.report_every == 0 || done == total;
        if reported {
            progress(report.clone());
        }
        if !(self.interrupt.load(Ordering::Relaxed) && done < total) {
            return ControlFlow::Continue(());
        }
        if !reported {
            // The last progress report names the batch the interrupt stopped at.
            progress(report);
        }
        self.history.stop = StopReason::Interrupted { epoch: epoch + 1, batch: done };
        self.history.notes.push(format!("interrupted during epoch {} after {done} of {total} batches", epoch + 1));
        ControlFlow::Break(())
    }

    /// The end of `epoch`: validation, the epoch's statistics, the best weights and the stop
    /// checks between epochs (patience, interrupt).
    fn end_epoch(
        &mut self,
        epoch: usize,
        started: Instant,
        totals: &Totals,
        progress: &mut dyn FnMut(TrainEvent),
    ) -> Result<ControlFlow<()>> {
        let train_seconds = started.elapsed().as_secs_f64();
        // With a moving average, the epoch is validated and kept with the averaged weights.
        if let Some(ema) = self.ema.as_mut() {
            ema.swap()?;
        }
        let (val_loss, val_accuracy) = match self.data.val {
            Some(val) if !val.is_empty() => {
                let e = evaluate_mapped(self.net, val, self.data.format, 256, &self.config.labels)?;
                (Some(e.loss), Some(e.accuracy))
            }
            _ => (None, None),
        };
        let stats = EpochStats {
            epoch: epoch + 1,
            loss: totals.mean_loss(),
            accuracy: totals.correct as f32 / totals.seen as f32,
            val_loss,
            val_accuracy,
            lr: totals.lr,
            seconds: started.elapsed().as_secs_f64(),
            images_per_sec: totals.seen as f64 / train_seconds.max(1e-9),
        };
        progress(TrainEvent::Epoch(stats.clone()));
        self.history.epochs.push(stats);
        self.last_good = self.net.snapshot()?;
        let (mut kept, mut patience) = (true, ControlFlow::Continue(()));
        if let (Some(loss), Some(accuracy)) = (val_loss, val_accuracy) {
            kept = self.track_best(epoch, loss, accuracy);
            patience = self.stop_for_patience(epoch);
        }
        if let Some(ema) = self.ema.as_mut() {
            ema.swap()?;
        }
        self.call_hook(epoch, kept)?;
        if patience.is_break() {
            return Ok(ControlFlow::Break(()));
        }
        Ok(self.stop_if_interrupted(epoch))
    }

    /// Keeps the weights just finished (`last_good`) when `epoch` is the best so far; whether
    /// it was.
    fn track_best(&mut self, epoch: usize, val_loss: f32, val_accuracy: f32) -> bool {
        let score = match self.config.monitor {
            Monitor::ValLoss => val_loss,
            Monitor::ValAccuracy => -val_accuracy,
        };
        let better = self.best.as_ref().is_none_or(|b| score < b.score);
        if better {
            self.best = Some(Best { score, epoch: epoch + 1, weights: self.last_good.clone() });
        }
        better
    }

    /// Stop check after `epoch`: `patience` epochs without improvement, unless it was the last.
    fn stop_for_patience(&mut self, epoch: usize) -> ControlFlow<()> {
        let best_epoch = self.best.as_ref().map_or(epoch + 1, |b| b.epoch);
        let Some(patience) = self.config.patience else {
            return ControlFlow::Continue(());
        };
        let since_best = epoch + 1 - best_epoch;
        if since_best > 0 && since_best >= patience && epoch + 1 < self.config.epochs {
            self.history.stop = StopReason::EarlyStopped { epoch: epoch + 1 };
            let note = format!("stopped early after epoch {}: no improvement for {patience} epochs", epoch + 1);
            self.history.notes.push(note);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    /// Stop check after `epoch`: the interrupt flag.
    fn stop_if_interrupted(&mut self, epoch: usize) -> ControlFlow<()> {
        if !self.interrupt.load(Ordering::Relaxed) {
            return ControlFlow::Continue(());
        }
        self.history.stop = StopReason::Interrupted { epoch: epoch + 1, batch: self.steps_per_epoch };
        self.history.notes.push(format!("interrupted at the end of epoch {}", epoch + 1));
        ControlFlow::Break(())
    }

    /// Restores the best epoch's weights unless the model holds them already (training ended
    /// with that epoch).
    fn restore_best(&mut self) -> Result<()> {
        let Some(best) = self.best.take() else {
            return Ok(());
        };
        self.history.best_epoch = Some(best.epoch);
        let last_epoch = self.history.epochs.last().map_or(0, |e| e.epoch);
        let steps = self.steps_per_epoch;
        let mid_epoch = matches!(self.history.stop, StopReason::Interrupted { batch, .. } if batch < steps);
        if best.epoch != last_epoch || mid_epoch {
            self.net.restore(&best.weights)?;
            self.history.restored_best = true;
            let metric = match self.config.monitor {
                Monitor::ValLoss => "validation loss",
                Monitor::ValAccuracy => "validation accuracy",
            };
            self.history.notes.push(format!("restored the weights of epoch {}, the best by {metric}", best.epoch));
        }
        Ok(())
    }

    /// With a moving average, leaves the averaged weights in the network unless the best epoch's
    /// (averaged already) were restored, as Keras' `use_ema` does at the end of `fit`.
    fn keep_average(&mut self) -> Result<()> {
        let Some(ema) = self.ema.as_mut() else { return Ok(()) };
        if !self.history.restored_best && !matches!(self.history.stop, StopReason::NonFiniteLoss { .. }) {
            ema.swap()?;
            self.history.notes.push(format!(
                "the model holds the moving average of its weights (ema {})",
                self.config.ema.unwrap_or_default()
            ));
        }
        Ok(())
    }

    /// The run's history, with a note when an interrupted run keeps its latest weights.
    fn finish(mut self) -> History {
        if matches!(self.history.stop, StopReason::Interrupted { .. }) && !self.history.restored_best {
            self.history.notes.push("the model keeps the weights reached when it was interrupted".into());
        }
        self.history
    }
}

/// Evaluates `net` on `split` in eval mode, `batch` images at a time (label `l` is output `l`).
pub fn evaluate(net: &Network, split: &Split, format: ImageFormat, batch: usize) -> Result<Evaluation> {
    evaluate_mapped(net, split, format, batch, &LabelMap::identity())
}

/// Evaluates `net` on `split` with labels read through `labels`: the confusion matrix, the
/// per-class accuracies and the predictions are indexed by output.
pub fn evaluate_mapped(
    net: &Network,
    split: &Split,
    format: ImageFormat,
    batch: usize,
    labels: &LabelMap,
) -> Result<Evaluation> {
    check_split(net, split, format, labels, "evaluated")?;
    let label_map = labels;
    let classes = net.classes();
    let ImageFormat { rows, cols, .. } = format;
    let image_len = format.image_len();
    let batch = batch.max(1);
    let device = net.device().clone();
    let mut buf = vec![0f32; batch * image_len];
    let mut confusion = vec![vec![0usize; classes]; classes];
    let mut predictions = Vec::with_capacity(split.len());
    let mut loss_sum = 0f64;
    let indices: Vec<usize> = (0..split.len()).collect();
    for chunk in indices.chunks(batch) {
        let m = chunk.len();
        let slot = &mut buf[..m * image_len];
        fill_batch(split, chunk, format, slot);
        let xs = Tensor::from_slice(slot, (m, 1, rows, cols), &device)?;
        let labels = label_map.outputs(split, chunk);
        let ys = Tensor::from_vec(labels.clone(), m, &device)?;
        let logits = net.forward(&xs, false)?;
        loss_sum += loss_fn(&logits, &ys, 0.0)?.to_scalar::<f32>()? as f64 * m as f64;
        for (p, &l) in logits.argmax(D::Minus1)?.to_vec1::<u32>()?.into_iter().zip(&labels) {
            confusion[l as usize][p as usize] += 1;
            predictions.push(p as usize);
        }
    }
    Ok(Evaluation::new(confusion, predictions, loss_sum))
}

impl Evaluation {
    /// The evaluation of `predictions` with these `confusion` counts and summed loss.
    pub(crate) fn new(confusion: Vec<Vec<usize>>, predictions: Vec<usize>, loss_sum: f64) -> Evaluation {
        let n = predictions.len();
        let correct: usize = (0..confusion.len()).map(|c| confusion[c][c]).sum();
        let per_class_accuracy = confusion
            .iter()
            .enumerate()
            .map(|(c, row)| {
                let total: usize = row.iter().sum();
                (total > 0).then(|| row[c] as f32 / total as f32)
            })
            .collect();
        Evaluation {
            loss: if n == 0 { 0.0 } else { (loss_sum / n as f64) as f32 },
            accuracy: if n == 0 { 0.0 } else { correct as f32 / n as f32 },
            per_class_accuracy,
            confusion,
            predictions,
        }
    }
}

impl Evaluation {
    /// The evaluation of class probabilities `probs` against the true outputs `truth`: each
    /// prediction the [`argmax`], the loss the mean negative log of the true class's probability.
    pub fn from_probs(probs: &[Vec<f32>], truth: &[u32], classes: usize) -> Evaluation {
        let mut confusion = vec![vec![0usize; classes]; classes];
        let (mut predictions, mut loss_sum) = (Vec::with_capacity(probs.len()), 0f64);
        for (p, &t) in probs.iter().zip(truth) {
            let predicted = argmax(p);
            confusion[t as usize][predicted] += 1;
            predictions.push(predicted);
            loss_sum -= (p[t as usize].max(f32::MIN_POSITIVE) as f64).ln();
        }
        Evaluation::new(confusion, predictions, loss_sum)
    }
}

/// The index of the largest value (the last of equal largest ones); 0 for an empty slice.
pub fn argmax(p: &[f32]) -> usize {
    p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)
}

/// Class probabilities (softmax) of each image of `images` (model-sized, bytes, scaled by
/// `scaling`), 256 at a time.
pub fn predict_probs(net: &Network, images: &[u8], scaling: PixelScaling) -> Result<Vec<Vec<f32>>> {
    let (c, h, w) = net.input();
    let image_len = c * h * w;
    if !images.len().is_multiple_of(image_len) {
        return Err(ModelError::Data(format!(
            "{} bytes of pixels are not a whole number of {c}×{h}×{w} images",
            images.len()
        )));
    }
    let (scale, offset) = scaling.affine();
    let mut out = Vec::with_capacity(images.len() / image_len);
    for chunk in images.chunks(256 * image_len) {
        let m = chunk.len() / image_len;
        let xs: Vec<f32> = chunk.iter().map(|&p| p as f32 * scale + offset).collect();
        let xs = Tensor::from_vec(xs, (m, c, h, w), net.device())?;
        let probs = candle_nn::ops::softmax(&net.forward(&xs, false)?, D::Minus1)?;
        out.extend(probs.to_vec2::<f32>()?);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::architecture::spec::{preset, Layer, ModelSpec};
    use candle_core::Device;

    /// The first `n` images of real MNIST's train or test split (raw IDX files in the cache).
    pub(crate) fn mnist(train: bool, n: usize) -> Split {
        let dir = crate::testdata::mnist_dir();
        let (images, labels) = if train {
            ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
        } else {
            ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
        };
        let read = |name: &str| {
            crate::data::idx::read(&dir.join(name)).unwrap_or_else(|e| {
                panic!("these tests need the real MNIST IDX files in {} (set MNISTLAB_DATA or run `mnistlab fetch mnist`): {e}", dir.display())
            })
        };
        let (images, labels) = (read(images), read(labels));
        let n = n.min(labels.dims[0]);
        Split { pixels: images.data[..n * 784].to_vec(), labels: labels.data[..n].to_vec() }
    }

    /// MNIST's 28×28 images, scaled by `scaling`.
    pub(crate) fn mnist_format(scaling: PixelScaling) -> ImageFormat {
        ImageFormat { rows: 28, cols: 28, scaling }
    }

    fn quiet() -> impl FnMut(TrainEvent) {
        |_| {}
    }

    #[test]
    fn tiny_training_run_learns() {
        let train = mnist(true, 1000);
        let test = mnist(false, 500);
        let net = Network::new(&preset("seed-small").unwrap(), (1, 28, 28), 10, &Device::Cpu, 3).unwrap();
        let before = evaluate(&net, &test, mnist_format(PixelScaling::Unit), 128).unwrap();
        let config = TrainConfig { epochs: 2, seed: 3, ..TrainConfig::default() };
        let mut batches = 0;
        let mut epochs = 0;
        let mut last_batch = None;
        let mut progress = |e: TrainEvent| match e {
            TrainEvent::Batch { .. } => {
                batches += 1;
                last_batch = Some(e);
            }
            TrainEvent::Epoch(_) => epochs += 1,
        };
        let stop = AtomicBool::new(false);
        let h = fit(
            &net,
            TrainData::new(&train, Some(&test), mnist_format(PixelScaling::Unit)),
            &config,
            &stop,
            &mut progress,
        )
        .unwrap();
        assert_eq!(h.stop, StopReason::Completed);
        assert_eq!(h.epochs.len(), 2);
        assert_eq!(epochs, 2);
        // The last report of an epoch: all its images, its running measures are the epoch's.
        let Some(TrainEvent::Batch { epoch: 2, done, total, loss, accuracy, images, seconds }) = last_batch else {
            panic!("the second epoch's last batch was reported: {last_batch:?}")
        };
        assert_eq!((done, total, images), (32, 32, 1000));
        assert_eq!((loss, accuracy), (h.epochs[1].loss, h.epochs[1].accuracy));
        assert!(seconds > 0.0);
        assert!(batches >= 2);
        let after = evaluate(&net, &test, mnist_format(PixelScaling::Unit), 256).unwrap();
        assert!(after.accuracy > 0.75, "accuracy after training: {}", after.accuracy);
        assert!(after.loss < before.loss);
        assert!(h.epochs[1].loss < h.epochs[0].loss);
        // The restored (or final) weights are those of the best epoch.
        let best = h.best_epoch.unwrap();
        assert_eq!(Some(after.loss), h.epochs[best - 1].val_loss);
        // Confusion matrix rows are the true classes.
        let counts = test.class_counts(10);
        for (c, row) in after.confusion.iter().enumerate() {
            assert_eq!(row.iter().sum::<usize>(), counts[c]);
        }
        assert_eq!(after.predictions.len(), 500);
        let probs = predict_probs(&net, &test.pixels[..3 * 784], PixelScaling::Unit).unwrap();
        assert_eq!(probs.len(), 3);
        for (i, p) in probs.iter().enumerate() {
            assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-4);
            let argmax = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
            assert_eq!(argmax, after.predictions[i]);
        }
    }

    #[test]
    fn a_moving_average_is_validated_kept_and_left_behind() {
        let (train, val) = (mnist(true, 600), mnist(false, 300));
        let format = mnist_format(PixelScaling::Unit);
        let run = |ema: Option<f64>, epochs: usize| {
            let net = Network::new(&small_spec(), (1, 28, 28), 10, &Device::Cpu, 5).unwrap();
            let config = TrainConfig { epochs, seed: 5, ema, ..TrainConfig::default() };
            let stop = AtomicBool::new(false);
            let h = fit(&net, TrainData::new(&train, Some(&val), format), &config, &stop, &mut quiet()).unwrap();
            (net, h)
        };
        let (plain, _) = run(None, 2);
        let (averaged, h) = run(Some(0.9), 2);
        // The same steps, but other weights in the end: the average.
        let differs = plain.snapshot().unwrap().iter().zip(averaged.snapshot().unwrap()).any(|((_, a), (_, b))| {
            a.flatten_all().unwrap().to_vec1::<f32>().unwrap() != b.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        });
        assert!(differs);
        // What validation scored for the kept epoch is what the network now holds.
        let best = h.best_epoch.unwrap();
        let after = evaluate(&averaged, &val, format, 256).unwrap();
        assert_eq!(Some(after.loss), h.epochs[best - 1].val_loss);
        if !h.restored_best {
            assert!(h.notes.iter().any(|n| n.contains("moving average of its weights (ema 0.9)")), "{:?}", h.notes);
        }
    }

    fn small_spec() -> ModelSpec {
        ModelSpec::new(vec![Layer::conv(8), Layer::BatchNorm, Layer::MaxPool, Layer::dropout(0.25), Layer::dense(16)])
    }

    #[test]
    fn same_seed_gives_identical_history() {
        let train = mnist(true, 256);
        let val = mnist(false, 100);
        let run = |seed: u64| {
            let net = Network::new(&small_spec(), (1, 28, 28), 10, &Device::Cpu, seed).unwrap();
            let config = TrainConfig { epochs: 2, seed, label_smoothing: 0.1, ..TrainConfig::default() };
            let stop = AtomicBool::new(false);
            let h = fit(
                &net,
                TrainData::new(&train, Some(&val), mnist_format(PixelScaling::Unit)),
                &config,
                &stop,
                &mut quiet(),
            )
            .unwrap();
            let metrics: Vec<_> = h.epochs.iter().map(|e| (e.loss, e.accuracy, e.val_loss, e.val_accuracy)).collect();
            let weights: Vec<Vec<f32>> =
                net.snapshot().unwrap().iter().map(|(_, t)| t.flatten_all().unwrap().to_vec1().unwrap()).collect();
            (metrics, weights)
        };
        let a = run(11);
        assert_eq!(a, run(11));
        assert_ne!(a.0, run(12).0);
    }

    #[test]
    fn filling_the_next_batch_during_the_step_changes_nothing() {
        // The overlapped filling a GPU run uses, forced on the CPU: the same weights and history.
        let train = mnist(true, 200);
        let config = TrainConfig { epochs: 2, batch_size: 48, ..TrainConfig::default() };
        let stop = AtomicBool::new(false);
        let hook = |indices: &[usize], epoch: u64, out: &mut [f32]| {
            fill_batch(&train, indices, mnist_format(PixelScaling::Unit), out);
            // An epoch-dependent change, as augmentation makes: the batch must be this epoch's.
            out.iter_mut().step_by(7).for_each(|x| *x = (*x + epoch as f32 * 0.25).min(1.0));
        };
        let data = TrainData { augment: Some(&hook), ..TrainData::new(&train, None, mnist_format(PixelScaling::Unit)) };
        let run = |overlap: bool| {
            let net = Network::new(&small_spec(), (1, 28, 28), 10, &Device::Cpu, 8).unwrap();
            let hooks = FitHooks { fill_ahead: Some(overlap), ..FitHooks::default() };
            let h = fit_with(&net, data, &config, &stop, &mut quiet(), hooks).unwrap();
            let losses: Vec<f32> = h.epochs.iter().map(|e| e.loss).collect();
            let weights: Vec<Vec<f32>> =
                net.snapshot().unwrap().iter().map(|(_, t)| t.flatten_all().unwrap().to_vec1().unwrap()).collect();
            (losses, weights)
        };
        let (inline, overlapped) = (run(false), run(true));
        assert_eq!(inline.0.len(), 2);
        assert_eq!(inline, overlapped);
    }

    #[test]
    fn augment_hook_fills_the_batches() {
        let train = mnist(true, 100);
        let config = TrainConfig { epochs: 2, batch_size: 32, ..TrainConfig::default() };
        let stop = AtomicBool::new(false);
        let plain = Network::new(&small_spec(), (1, 28, 28), 10, &Device::Cpu, 4).unwrap();
        let h_plain =
            fit(&plain, TrainData::new(&train, None, mnist_format(PixelScaling::Unit)), &config, &stop, &mut quiet())
                .unwrap();
        // A hook that scales the same pixels gives the same run; it sees every epoch and index.
        let calls = std::sync::Mutex::new(Vec::new());
        let hook = |indices: &[usize], epoch: u64, out: &mut [f32]| {
            calls.lock().unwrap().push((epoch, indices.len()));
            fill_batch(&train, indices, mnist_format(PixelScaling::Unit), out);
        };
        let hooked = Network::new(&small_spec(), (1, 28, 28), 10, &Device::Cpu, 4).unwrap();
        let h_hooked = fit(
            &hooked,
            TrainData { augment: Some(&hook), ..TrainData::new(&train, None, mnist_format(PixelScaling::Unit)) },
            &config,
            &stop,
            &mut quiet(),
        )
        .unwrap();
        let metrics = |h: &History| h.epochs.iter().map(|e| (e.loss, e.accuracy)).collect::<Vec<_>>();
        assert_eq!(metrics(&h_plain), metrics(&h_hooked));
        assert_eq!(*calls.lock().unwrap(), vec![(0, 32), (0, 32), (0, 32), (0, 4), (1, 32), (1, 32), (1, 32), (1, 4)]);
    }

    #[test]
    fn interrupt_stops_after_the_current_batch() {
        let train = mnist(true, 320);
        let net = Network::new(&small_spec(), (1, 28, 28), 10, &Device::Cpu, 1).unwrap();
        let stop = AtomicBool::new(true);
        let mut batches = Vec::new();
        let mut progress = |e: TrainEvent| {
            if let TrainEvent::Batch { done, .. } = e {
                batches.push(done)
            }
        };
        let config = TrainConfig { epochs: 3, ..TrainConfig::default() };
        let h =
            fit(&net, TrainData::new(&train, None, mnist_format(PixelScaling::Unit)), &config, &stop, &mut progress)
                .unwrap();
        assert_eq!(h.stop, StopReason::Interrupted { epoch: 1, batch: 1 });
        assert!(h.epochs.is_empty());
        assert!(batches.len() <= 1);
        let probs = predict_probs(&net, &train.pixels[..784], PixelScaling::Unit).unwrap();
        assert!(probs[0].iter().all(|p| p.is_finite()));
    }

    #[test]
    fn non_finite_loss_restores_the_last_good_weights() {
        let train = mnist(true, 256);
        let net = Network::new(&preset("seed-small").unwrap(), (1, 28, 28), 10, &Device::Cpu, 1).unwrap();
        let initial = net.snapshot().unwrap();
        // Raw 0..255 inputs with a huge SGD step blow the loss up within a few batches.
        let config =
            TrainConfig { epochs: 2, optimizer: Optimizer::Sgd { lr: 1e4, momentum: 0.9 }, ..TrainConfig::default() };
        let stop = AtomicBool::new(false);
        let h = fit(&net, TrainData::new(&train, None, mnist_format(PixelScaling::Raw)), &config, &stop, &mut quiet())
            .unwrap();
        assert!(matches!(h.stop, StopReason::NonFiniteLoss { epoch: 1, .. }), "{:?}", h.stop);
        assert!(h.notes[0].contains("initial model"), "{:?}", h.notes);
        for ((_, a), (_, b)) in initial.iter().zip(net.snapshot().unwrap().iter()) {
            assert_eq!(
                a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                b.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            );
        }
    }

    #[test]
    fn bad_inputs_are_rejected() {
        let net = Network::new(&preset("seed-small").unwrap(), (1, 28, 28), 5, &Device::Cpu, 1).unwrap();
        let split = Split { pixels: vec![0; 784 * 2], labels: vec![1, 7] };
        let stop = AtomicBool::new(false);
        let e = fit(
            &net,
            TrainData::new(&split, None, mnist_format(PixelScaling::Unit)),
            &TrainConfig::default(),
            &stop,
            &mut quiet(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("label 7") && e.contains("5 classes"), "{e}");
        let e = evaluate(&net, &split, ImageFormat { rows: 20, cols: 20, scaling: PixelScaling::Unit }, 8)
            .unwrap_err()
            .to_string();
        assert!(e.contains("1×28×28") && e.contains("1×20×20"), "{e}");
        assert!(predict_probs(&net, &[0; 100], PixelScaling::Unit).is_err());
    }

    #[test]
    fn schedules_have_the_documented_shape() {
        let s = Schedule::OneCycle;
        assert!((s.lr(1.0, 0, 100, 0) - 0.04).abs() < 1e-9);
        assert!((s.lr(1.0, 30, 100, 0) - 1.0).abs() < 1e-9);
        assert!(s.lr(1.0, 99, 100, 0) < 0.01);
        assert!((Schedule::Cosine.lr(2.0, 50, 100, 0) - 1.0).abs() < 1e-9);
        assert!((Schedule::Step { every: 2, gamma: 0.5 }.lr(1.0, 0, 10, 5) - 0.25).abs() < 1e-12);
    }
}
