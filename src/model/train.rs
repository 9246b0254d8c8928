//! Training, evaluation and prediction.
//!
//! `fit` shuffles with a seeded ChaCha8 generator every epoch, reports progress through a
//! callback, keeps the weights of the best validation epoch, stops early, on an interrupt flag
//! or on a non-finite loss, and always leaves a usable model behind.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{Tensor, D};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::network::{Network, Weights};
use super::optim::{Optimizer, ParamGroups};
use super::{ModelError, Result};
use crate::data::{PixelScaling, Split};

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
    fn outputs(&self, split: &Split, indices: &[usize]) -> Vec<u32> {
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
    /// Every few batches: batches done in this epoch, of `total`, and the running mean loss.
    Batch {
        /// 1-based epoch number.
        epoch: usize,
        /// Batches done in this epoch.
        done: usize,
        /// Batches per epoch.
        total: usize,
        /// Mean loss of the epoch so far.
        loss: f32,
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
fn param_groups(net: &Network, optimizer: Optimizer, body_lr: Option<f64>) -> Result<ParamGroups> {
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
fn loss_fn(logits: &Tensor, labels: &Tensor, eps: f32) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let nll = candle_nn::loss::nll(&logp, labels)?;
    if eps <= 0.0 {
        return Ok(nll);
    }
    let uniform = logp.mean(D::Minus1)?.mean_all()?.neg()?;
    Ok(((nll * (1.0 - eps as f64))? + (uniform * eps as f64)?)?)
}

/// Checks that a split fits the network: sizes, labels and image shape.
fn check_split(net: &Network, split: &Split, rows: usize, cols: usize, labels: &LabelMap, what: &str) -> Result<()> {
    let (c, h, w) = net.input();
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

/// Fills `out` with the scaled pixels of the images at `indices`.
fn fill_batch(split: &Split, indices: &[usize], image_len: usize, scaling: PixelScaling, out: &mut [f32]) {
    let (scale, offset) = scaling.affine();
    for (slot, &i) in out.chunks_exact_mut(image_len).zip(indices) {
        for (o, &p) in slot.iter_mut().zip(split.image(i, image_len)) {
            *o = p as f32 * scale + offset;
        }
    }
}

/// Trains `net` on `train` (images `rows × cols`), validating on `val` after each epoch.
///
/// `augment`, when given, fills a batch for the train indices given and the 0-based epoch with
/// model-ready (already scaled) floats; otherwise batches are the pixels scaled by `scaling`.
/// Raising `interrupt` stops training after the current batch. With a validation split the
/// weights of the best epoch (by `config.monitor`) are restored at the end. Errors only for
/// bad inputs or tensor failures; a non-finite loss stops training with the weights of the
/// last finished epoch and is reported in [`History::stop`].
#[allow(clippy::too_many_arguments)]
pub fn fit(
    net: &Network,
    train: &Split,
    val: Option<&Split>,
    rows: usize,
    cols: usize,
    scaling: PixelScaling,
    config: &TrainConfig,
    augment: Option<Augment<'_>>,
    interrupt: &AtomicBool,
    progress: &mut dyn FnMut(TrainEvent),
) -> Result<History> {
    check_split(net, train, rows, cols, &config.labels, "training")?;
    if let Some(val) = val {
        check_split(net, val, rows, cols, &config.labels, "validation")?;
    }
    if let Some(body) = config.body_lr {
        if !(body.is_finite() && body > 0.0) {
            return Err(ModelError::Data(format!("the body learning rate must be above 0, got {body}")));
        }
    }
    if train.is_empty() {
        return Err(ModelError::Data("the training split is empty".into()));
    }
    if config.batch_size == 0 {
        return Err(ModelError::Data("the batch size must be at least 1".into()));
    }
    if !(0.0..1.0).contains(&config.label_smoothing) {
        return Err(ModelError::Data(format!("label smoothing {} is outside [0, 1)", config.label_smoothing)));
    }
    let image_len = rows * cols;
    let n = train.len();
    let steps_per_epoch = n.div_ceil(config.batch_size);
    let total_steps = steps_per_epoch * config.epochs;
    let report_every = (steps_per_epoch / 40).max(1);
    let device = net.device().clone();

    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    net.reseed_dropout(config.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1));
    let mut opt = param_groups(net, config.optimizer, config.body_lr)?;
    let mut order: Vec<usize> = (0..n).collect();
    let mut buf = vec![0f32; config.batch_size * image_len];
    let mut last_good = net.snapshot()?;
    let mut best: Option<(f32, usize, Weights)> = None;
    let mut history = History {
        epochs: Vec::new(),
        stop: StopReason::Completed,
        best_epoch: None,
        restored_best: false,
        notes: Vec::new(),
    };
    let mut step = 0;

    'epochs: for epoch in 0..config.epochs {
        let started = Instant::now();
        order.shuffle(&mut rng);
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0usize, 0usize);
        let mut lr = config.optimizer.lr();
        for (b, chunk) in order.chunks(config.batch_size).enumerate() {
            lr = config.schedule.lr(config.optimizer.lr(), step, total_steps, epoch);
            opt.set_rates(|base| config.schedule.lr(base, step, total_steps, epoch));
            let m = chunk.len();
            let batch = &mut buf[..m * image_len];
            match augment {
                Some(hook) => hook(chunk, epoch as u64, batch),
                None => fill_batch(train, chunk, image_len, scaling, batch),
            }
            let xs = Tensor::from_slice(batch, (m, 1, rows, cols), &device)?;
            let labels = config.labels.outputs(train, chunk);
            let ys = Tensor::from_vec(labels.clone(), m, &device)?;
            let logits = net.forward(&xs, true)?;
            let loss = loss_fn(&logits, &ys, config.label_smoothing)?;
            let loss_value = loss.to_scalar::<f32>()?;
            if !loss_value.is_finite() {
                net.restore(&last_good)?;
                history.stop = StopReason::NonFiniteLoss { epoch: epoch + 1, batch: b + 1 };
                history.notes.push(format!(
                    "the loss became {loss_value} at epoch {}, batch {}: training stopped and the weights of {} were restored (try a lower learning rate)",
                    epoch + 1,
                    b + 1,
                    if epoch == 0 { "the initial model".to_string() } else { format!("epoch {epoch}") }
                ));
                break 'epochs;
            }
            opt.backward_step(&loss)?;
            step += 1;
            let predicted = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
            correct += predicted.iter().zip(&labels).filter(|(p, l)| p == l).count();
            loss_sum += loss_value as f64 * m as f64;
            seen += m;
            if (b + 1) % report_every == 0 || b + 1 == steps_per_epoch {
                progress(TrainEvent::Batch {
                    epoch: epoch + 1,
                    done: b + 1,
                    total: steps_per_epoch,
                    loss: (loss_sum / seen as f64) as f32,
                });
            }
            if interrupt.load(Ordering::Relaxed) && b + 1 < steps_per_epoch {
                if (b + 1) % report_every != 0 {
                    // The last progress report names the batch the interrupt stopped at.
                    progress(TrainEvent::Batch {
                        epoch: epoch + 1,
                        done: b + 1,
                        total: steps_per_epoch,
                        loss: (loss_sum / seen as f64) as f32,
                    });
                }
                history.stop = StopReason::Interrupted { epoch: epoch + 1, batch: b + 1 };
                history.notes.push(format!(
                    "interrupted during epoch {} after {} of {steps_per_epoch} batches",
                    epoch + 1,
                    b + 1
                ));
                break 'epochs;
            }
        }
        let train_seconds = started.elapsed().as_secs_f64();
        let (val_loss, val_accuracy) = match val {
            Some(val) if !val.is_empty() => {
                let e = evaluate_mapped(net, val, rows, cols, scaling, 256, &config.labels)?;
                (Some(e.loss), Some(e.accuracy))
            }
            _ => (None, None),
        };
        let stats = EpochStats {
            epoch: epoch + 1,
            loss: (loss_sum / seen as f64) as f32,
            accuracy: correct as f32 / seen as f32,
            val_loss,
            val_accuracy,
            lr,
            seconds: started.elapsed().as_secs_f64(),
            images_per_sec: seen as f64 / train_seconds.max(1e-9),
        };
        progress(TrainEvent::Epoch(stats.clone()));
        history.epochs.push(stats);
        last_good = net.snapshot()?;
        if let (Some(vl), Some(va)) = (val_loss, val_accuracy) {
            let score = match config.monitor {
                Monitor::ValLoss => vl,
                Monitor::ValAccuracy => -va,
            };
            if best.as_ref().is_none_or(|(s, _, _)| score < *s) {
                best = Some((score, epoch + 1, last_good.clone()));
            }
            let best_epoch = best.as_ref().map_or(epoch + 1, |b| b.1);
            if let Some(patience) = config.patience {
                let since_best = epoch + 1 - best_epoch;
                if since_best > 0 && since_best >= patience && epoch + 1 < config.epochs {
                    history.stop = StopReason::EarlyStopped { epoch: epoch + 1 };
                    history
                        .notes
                        .push(format!("stopped early after epoch {}: no improvement for {patience} epochs", epoch + 1));
                    break 'epochs;
                }
            }
            if interrupt.load(Ordering::Relaxed) {
                history.stop = StopReason::Interrupted { epoch: epoch + 1, batch: steps_per_epoch };
                history.notes.push(format!("interrupted at the end of epoch {}", epoch + 1));
                break 'epochs;
            }
        } else if interrupt.load(Ordering::Relaxed) {
            history.stop = StopReason::Interrupted { epoch: epoch + 1, batch: steps_per_epoch };
            history.notes.push(format!("interrupted at the end of epoch {}", epoch + 1));
            break 'epochs;
        }
    }

    if let Some((_, best_epoch, weights)) = best {
        history.best_epoch = Some(best_epoch);
        let last_epoch = history.epochs.last().map_or(0, |e| e.epoch);
        let mid_epoch = matches!(history.stop, StopReason::Interrupted { batch, .. } if batch < steps_per_epoch);
        if best_epoch != last_epoch || mid_epoch {
            net.restore(&weights)?;
            history.restored_best = true;
            let metric = match config.monitor {
                Monitor::ValLoss => "validation loss",
                Monitor::ValAccuracy => "validation accuracy",
            };
            history.notes.push(format!("restored the weights of epoch {best_epoch}, the best by {metric}"));
        }
    }
    if matches!(history.stop, StopReason::Interrupted { .. }) && !history.restored_best {
        history.notes.push("the model keeps the weights reached when it was interrupted".into());
    }
    Ok(history)
}

/// Evaluates `net` on `split` in eval mode, `batch` images at a time (label `l` is output `l`).
pub fn evaluate(
    net: &Network,
    split: &Split,
    rows: usize,
    cols: usize,
    scaling: PixelScaling,
    batch: usize,
) -> Result<Evaluation> {
    evaluate_mapped(net, split, rows, cols, scaling, batch, &LabelMap::identity())
}

/// Evaluates `net` on `split` with labels read through `labels`: the confusion matrix, the
/// per-class accuracies and the predictions are indexed by output.
pub fn evaluate_mapped(
    net: &Network,
    split: &Split,
    rows: usize,
    cols: usize,
    scaling: PixelScaling,
    batch: usize,
    labels: &LabelMap,
) -> Result<Evaluation> {
    check_split(net, split, rows, cols, labels, "evaluated")?;
    let label_map = labels;
    let classes = net.classes();
    let image_len = rows * cols;
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
        fill_batch(split, chunk, image_len, scaling, slot);
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
    let n = split.len();
    let correct: usize = (0..classes).map(|c| confusion[c][c]).sum();
    let per_class_accuracy = confusion
        .iter()
        .enumerate()
        .map(|(c, row)| {
            let total: usize = row.iter().sum();
            (total > 0).then(|| row[c] as f32 / total as f32)
        })
        .collect();
    Ok(Evaluation {
        loss: if n == 0 { 0.0 } else { (loss_sum / n as f64) as f32 },
        accuracy: if n == 0 { 0.0 } else { correct as f32 / n as f32 },
        per_class_accuracy,
        confusion,
        predictions,
    })
}

/// Class probabilities (softmax, eval mode) for `images`: `n × (height·width)` bytes.
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
    use crate::model::spec::{preset, Layer, ModelSpec};
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

    fn quiet() -> impl FnMut(TrainEvent) {
        |_| {}
    }

    #[test]
    fn tiny_training_run_learns() {
        let train = mnist(true, 1000);
        let test = mnist(false, 500);
        let net = Network::new(&preset("seed-small").unwrap(), (1, 28, 28), 10, &Device::Cpu, 3).unwrap();
        let before = evaluate(&net, &test, 28, 28, PixelScaling::Unit, 128).unwrap();
        let config = TrainConfig { epochs: 2, seed: 3, ..TrainConfig::default() };
        let mut batches = 0;
        let mut epochs = 0;
        let mut progress = |e: TrainEvent| match e {
            TrainEvent::Batch { .. } => batches += 1,
            TrainEvent::Epoch(_) => epochs += 1,
        };
        let stop = AtomicBool::new(false);
        let h =
            fit(&net, &train, Some(&test), 28, 28, PixelScaling::Unit, &config, None, &stop, &mut progress).unwrap();
        assert_eq!(h.stop, StopReason::Completed);
        assert_eq!(h.epochs.len(), 2);
        assert_eq!(epochs, 2);
        assert!(batches >= 2);
        let after = evaluate(&net, &test, 28, 28, PixelScaling::Unit, 256).unwrap();
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

    fn small_spec() -> ModelSpec {
        ModelSpec::new(vec![Layer::conv(8), Layer::BatchNorm, Layer::MaxPool, Layer::Dropout(0.25), Layer::Dense(16)])
    }

    #[test]
    fn same_seed_gives_identical_history() {
        let train = mnist(true, 256);
        let val = mnist(false, 100);
        let run = |seed: u64| {
            let net = Network::new(&small_spec(), (1, 28, 28), 10, &Device::Cpu, seed).unwrap();
            let config = TrainConfig { epochs: 2, seed, label_smoothing: 0.1, ..TrainConfig::default() };
            let stop = AtomicBool::new(false);
            let h =
                fit(&net, &train, Some(&val), 28, 28, PixelScaling::Unit, &config, None, &stop, &mut quiet()).unwrap();
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
    fn augment_hook_fills_the_batches() {
        let train = mnist(true, 100);
        let config = TrainConfig { epochs: 2, batch_size: 32, ..TrainConfig::default() };
        let stop = AtomicBool::new(false);
        let plain = Network::new(&small_spec(), (1, 28, 28), 10, &Device::Cpu, 4).unwrap();
        let h_plain =
            fit(&plain, &train, None, 28, 28, PixelScaling::Unit, &config, None, &stop, &mut quiet()).unwrap();
        // A hook that scales the same pixels gives the same run; it sees every epoch and index.
        let calls = std::sync::Mutex::new(Vec::new());
        let hook = |indices: &[usize], epoch: u64, out: &mut [f32]| {
            calls.lock().unwrap().push((epoch, indices.len()));
            fill_batch(&train, indices, 784, PixelScaling::Unit, out);
        };
        let hooked = Network::new(&small_spec(), (1, 28, 28), 10, &Device::Cpu, 4).unwrap();
        let h_hooked =
            fit(&hooked, &train, None, 28, 28, PixelScaling::Unit, &config, Some(&hook), &stop, &mut quiet()).unwrap();
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
        let h = fit(&net, &train, None, 28, 28, PixelScaling::Unit, &config, None, &stop, &mut progress).unwrap();
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
        let h = fit(&net, &train, None, 28, 28, PixelScaling::Raw, &config, None, &stop, &mut quiet()).unwrap();
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
        let e = fit(&net, &split, None, 28, 28, PixelScaling::Unit, &TrainConfig::default(), None, &stop, &mut quiet())
            .unwrap_err()
            .to_string();
        assert!(e.contains("label 7") && e.contains("5 classes"), "{e}");
        let e = evaluate(&net, &split, 20, 20, PixelScaling::Unit, 8).unwrap_err().to_string();
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
