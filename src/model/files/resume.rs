//! Checkpoints that resume: the state of a [`fit`](crate::model::training::train::fit) run after an epoch, and the
//! checkpoint file that holds it beside the model.
//!
//! A checkpoint is a model file (see [`crate::model::files::checkpoint`]: `load model` reads it as one) with
//! more: the tensors `train.order` (the shuffled training order, u32), `train.opt.<g>.<i>.m`,
//! `.v` (Adam's moments) or `.velocity` (SGD's) for variable `i` of optimizer group `g`, and
//! `train.best.<name>` (the best epoch's weights), plus a `train` metadata entry (JSON): the
//! training settings, epochs and steps done, the shuffling generator's position, the dropout
//! position, the optimizer's step count, the best epoch and score, the history, a SHA-256
//! fingerprint of the data and the caller's own settings. In a run with a moving average of
//! the weights (`ema`), the model's tensors are the average (what validation scored, what
//! `load model` reads) and `train.live.<name>` holds each trainable weight as trained.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::PixelScaling;
use crate::model::architecture::network::{Network, Weights};
use crate::model::error::{ModelError, Result};
use crate::model::files::checkpoint::{load_model_bytes, model_metadata, ModelMeta, TRAIN_PREFIX};
use crate::model::training::optim::GroupState;
use crate::model::training::train::{BestState, History, RngState, RunState, TrainConfig, TrainData};

/// The value of the `format` field of the `train` entry this version writes.
pub const CHECKPOINT_FORMAT: &str = "mnistlab-checkpoint/1";

/// The `train` metadata entry of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainEntry {
    format: String,
    config: TrainConfig,
    epochs_done: usize,
    step: usize,
    rng: RngState,
    dropout: (u64, u64),
    /// Per optimizer group: `adam` with its step count, or `sgd`; and its variable count.
    optimizer: Vec<(String, i32, usize)>,
    best: Option<(f32, usize)>,
    history: History,
    data: String,
    settings: BTreeMap<String, String>,
}

/// What a run is, as its checkpoints record it: its settings, its data and the caller's own
/// settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// The training settings of the run (epochs included).
    pub config: TrainConfig,
    /// The data fingerprint ([`data_fingerprint`]) of the run's data.
    pub data: String,
    /// Free-form settings of the caller (the session's augmentation, say).
    pub settings: BTreeMap<String, String>,
}

/// What a checkpoint says besides the model: the run and where it stands.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The run.
    pub info: RunInfo,
    /// Where it stands.
    pub state: RunState,
}

/// A SHA-256 fingerprint of what a run trains on: the train and validation splits' pixels and
/// labels and the images' size and scaling (not the augmentation, which is a function).
pub fn data_fingerprint(data: &TrainData<'_>) -> String {
    let mut hash = Sha256::new();
    for split in [Some(data.train), data.val] {
        match split {
            Some(s) => {
                hash.update((s.labels.len() as u64).to_le_bytes());
                hash.update(&s.pixels);
                hash.update(&s.labels);
            }
            None => hash.update(u64::MAX.to_le_bytes()),
        }
    }
    let f = data.format;
    hash.update(format!("{}x{} {:?}", f.rows, f.cols, f.scaling).as_bytes());
    hex::encode(hash.finalize())
}

/// The tensors of a checkpoint, model weights first.
fn checkpoint_tensors(net: &Network, state: &RunState) -> Result<Vec<(String, Tensor)>> {
    let device = Device::Cpu;
    let mut tensors = net.snapshot()?;
    // With a moving average, the model's tensors are the average (what validation scored, what
    // `fit` keeps and `load model` reads) and the weights as trained are `train.live.<name>`.
    let mut live = Vec::new();
    for (name, average) in state.ema.iter().flatten() {
        if let Some(slot) = tensors.iter_mut().find(|(n, _)| n == name) {
            live.push((format!("{TRAIN_PREFIX}live.{name}"), std::mem::replace(&mut slot.1, average.clone())));
        }
    }
    tensors.extend(live);
    let order = Tensor::from_slice(&state.order, state.order.len(), &device)?;
    tensors.push((format!("{TRAIN_PREFIX}order"), order));
    let vector = |v: &[f32]| Tensor::from_slice(v, v.len(), &device);
    for (g, group) in state.optimizer.iter().enumerate() {
        let mut put = |kind: &str, values: &[Vec<f32>]| -> Result<()> {
            for (i, v) in values.iter().enumerate() {
                tensors.push((format!("{TRAIN_PREFIX}opt.{g}.{i}.{kind}"), vector(v)?));
            }
            Ok(())
        };
        match group {
            GroupState::Adam { m, v, .. } => {
                put("m", m)?;
                put("v", v)?;
            }
            GroupState::Sgd { velocity } => put("velocity", velocity)?,
        }
    }
    if let Some(best) = &state.best {
        for (name, t) in &best.weights {
            tensors.push((format!("{TRAIN_PREFIX}best.{name}"), t.clone()));
        }
    }
    Ok(tensors)
}

/// The classes, pixel scaling and free-form entries of a model file (see [`crate::model::files::checkpoint::save_model`]).
pub type ModelParts<'a> = (&'a [String], PixelScaling, &'a BTreeMap<String, String>);

/// The checkpoint file's bytes: `net` as a model file (see [`crate::model::files::checkpoint::save_model`]) with the run
/// `info` and its `state`.
pub fn checkpoint_bytes(net: &Network, model: ModelParts<'_>, info: &RunInfo, state: &RunState) -> Result<Vec<u8>> {
    let (classes, scaling, extra) = model;
    let mut meta = model_metadata(net, classes, scaling, extra)?;
    let optimizer = state
        .optimizer
        .iter()
        .map(|g| match g {
            GroupState::Adam { step, m, .. } => ("adam".to_string(), *step, m.len()),
            GroupState::Sgd { velocity } => ("sgd".to_string(), 0, velocity.len()),
        })
        .collect();
    let entry = TrainEntry {
        format: CHECKPOINT_FORMAT.to_string(),
        config: info.config.clone(),
        epochs_done: state.epochs_done,
        step: state.step,
        rng: state.rng.clone(),
        dropout: state.dropout,
        optimizer,
        best: state.best.as_ref().map(|b| (b.score, b.epoch)),
        history: state.history.clone(),
        data: info.data.clone(),
        settings: info.settings.clone(),
    };
    let json = serde_json::to_string(&entry)
        .map_err(|e| ModelError::Data(format!("cannot record the run in the checkpoint: {e}")))?;
    meta.insert("train".to_string(), json);
    let tensors = checkpoint_tensors(net, state)?;
    crate::model::files::checkpoint::encode(&tensors, meta)
        .map_err(|e| ModelError::Data(format!("cannot encode the checkpoint: {e}")))
}

/// Reads a checkpoint written with [`checkpoint_bytes`]: the network (on `device`), its model
/// metadata and the run. A model file without a run is refused, naming `path`.
pub fn load_checkpoint(path: &Path, device: &Device) -> Result<(Network, ModelMeta, Checkpoint)> {
    let bytes = crate::budget::read_file(path)?;
    let (net, meta) = load_model_bytes(path, &bytes, device)?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| ModelError::format(path, format!("not a safetensors file: {e}")))?;
    let text = header.metadata().as_ref().and_then(|m| m.get("train")).ok_or_else(|| {
        ModelError::format(path, "a model file without a training run: `load model` reads it, `resume` cannot")
    })?;
    let entry: TrainEntry =
        serde_json::from_str(text).map_err(|e| ModelError::format(path, format!("bad `train` metadata: {e}")))?;
    if entry.format != CHECKPOINT_FORMAT || !entry.rng.is_valid() {
        return Err(ModelError::format(path, format!("unsupported checkpoint `{}`", entry.format)));
    }
    let tensors: HashMap<String, Tensor> = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| ModelError::format(path, format!("cannot read the tensors: {e}")))?;
    let mut state = run_state(path, &entry, &tensors)?;
    // A run with a moving average: the model's tensors are the average and `train.live.*` the
    // weights as trained; the run continues from the latter, the average beside them.
    if let Some(live) = state.ema.take() {
        let mut weights: HashMap<String, Tensor> = net.snapshot()?.into_iter().collect();
        let mut average = Vec::with_capacity(live.len());
        for (name, t) in live {
            let Some(slot) = weights.get_mut(&name) else {
                return Err(ModelError::format(
                    path,
                    format!("`{TRAIN_PREFIX}live.{name}` names no weight of the model"),
                ));
            };
            average.push((name, std::mem::replace(slot, t)));
        }
        net.set_weights(&weights)?;
        state.ema = Some(average);
    }
    let info = RunInfo { config: entry.config, data: entry.data, settings: entry.settings };
    let checkpoint = Checkpoint { info, state };
    Ok((net, meta, checkpoint))
}

/// The run's state from the `train` entry and the checkpoint's tensors.
fn run_state(path: &Path, entry: &TrainEntry, tensors: &HashMap<String, Tensor>) -> Result<RunState> {
    let missing = |name: &str| ModelError::format(path, format!("the checkpoint has no tensor `{name}`"));
    let get = |name: String| -> Result<Tensor> { tensors.get(&name).cloned().ok_or_else(|| missing(&name)) };
    let floats = |name: String| -> Result<Vec<f32>> { Ok(get(name)?.to_dtype(DType::F32)?.to_vec1::<f32>()?) };
    let order = get(format!("{TRAIN_PREFIX}order"))?.to_vec1::<u32>()?;
    let mut optimizer = Vec::new();
    for (g, (kind, step, count)) in entry.optimizer.iter().enumerate() {
        let all = |what: &str| -> Result<Vec<Vec<f32>>> {
            (0..*count).map(|i| floats(format!("{TRAIN_PREFIX}opt.{g}.{i}.{what}"))).collect()
        };
        optimizer.push(match kind.as_str() {
            "adam" => GroupState::Adam { step: *step, m: all("m")?, v: all("v")? },
            "sgd" => GroupState::Sgd { velocity: all("velocity")? },
            other => return Err(ModelError::format(path, format!("unknown optimizer state `{other}`"))),
        });
    }
    // The tensors named `train.<part>.<name>`, by name, sorted.
    let part = |part: &str| -> Weights {
        let prefix = format!("{TRAIN_PREFIX}{part}.");
        let mut weights: Weights = tensors
            .iter()
            .filter_map(|(k, t)| k.strip_prefix(&prefix).map(|name| (name.to_string(), t.clone())))
            .collect();
        weights.sort_by(|a, b| a.0.cmp(&b.0));
        weights
    };
    let best = entry.best.map(|(score, epoch)| BestState { score, epoch, weights: part("best") });
    let ema = entry.config.ema.map(|_| part("live"));
    Ok(RunState {
        epochs_done: entry.epochs_done,
        step: entry.step,
        rng: entry.rng.clone(),
        dropout: entry.dropout,
        order,
        optimizer,
        best,
        history: entry.history.clone(),
        ema,
    })
}

/// The file names a checkpoint folder holds.
pub const LAST: &str = "last.safetensors";
/// The checkpoint of the epoch whose weights `fit` keeps (see [`EpochEnd::kept`](crate::model::training::train::EpochEnd::kept)).
pub const BEST: &str = "best.safetensors";

/// Writes the checkpoint of a finished epoch into `dir`: `best.safetensors` when `kept` (the
/// epoch whose weights `fit` would keep), then `last.safetensors` always; each atomically, so a
/// run killed at any moment leaves the previous checkpoint whole.
///
/// The best file goes first. Killed between the two writes, the run resumes from the previous
/// `last`, trains the same epoch again to the same weights and writes the same best file; in
/// the other order `last` would already hold the kept epoch, and the resumed run would never
/// write its best file.
///
/// [`EpochEnd::kept`]: crate::model::training::train::EpochEnd::kept
pub fn write_checkpoint(
    dir: &Path,
    net: &Network,
    model: ModelParts<'_>,
    (info, state): (&RunInfo, &RunState),
    kept: bool,
) -> Result<()> {
    let bytes = checkpoint_bytes(net, model, info, state)?;
    if kept {
        crate::write::write_file(&dir.join(BEST), &bytes, crate::write::Place::OutsideCache)?;
    }
    crate::write::write_file(&dir.join(LAST), &bytes, crate::write::Place::OutsideCache)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::augment::{Key, Op, Pipeline};
    use crate::data::Images;
    use crate::model::architecture::spec::{Layer, ModelSpec};
    use crate::model::training::optim::Optimizer;
    use crate::model::training::train::tests::{mnist, mnist_format};
    use crate::model::training::train::{fit_with, EpochStats, FitHooks, Schedule};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn spec() -> ModelSpec {
        ModelSpec::new(vec![Layer::conv(6), Layer::BatchNorm, Layer::MaxPool, Layer::dropout(0.3), Layer::dense(16)])
    }

    /// Everything but the times of each epoch.
    fn metrics(h: &History) -> Vec<EpochStats> {
        h.epochs.iter().map(|e| EpochStats { seconds: 0.0, images_per_sec: 0.0, ..e.clone() }).collect()
    }

    fn values(net: &Network) -> Vec<(String, Vec<f32>)> {
        let snap = net.snapshot().unwrap();
        snap.into_iter().map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1().unwrap())).collect()
    }

    /// Trains `config` on real MNIST with rotation and shift drawn per batch, writing a
    /// checkpoint after every epoch into `dir` and raising the interrupt after `stop_after`
    /// epochs; resumes from `resume` when given. The network and history at the end.
    fn train(
        config: &TrainConfig,
        dir: &Path,
        stop_after: Option<usize>,
        resume: Option<(Network, Checkpoint)>,
    ) -> (Network, History) {
        let (train, val) = (mnist(true, 300), mnist(false, 100));
        let format = mnist_format(PixelScaling::Unit);
        let pipeline = Pipeline::new(vec![Op::rotate(10.0), Op::shift(0.1)]).unwrap();
        let fill = |indices: &[usize], epoch: u64, out: &mut [f32]| {
            let images = Images::new(&train.pixels, 28, 28);
            pipeline.augment_batch_f32(images, indices, Key::new(7, epoch), PixelScaling::Unit, out).unwrap();
        };
        let data = TrainData { augment: Some(&fill), ..TrainData::new(&train, Some(&val), format) };
        let (net, resume) = match resume {
            Some((net, ck)) => (net, Some(ck.state)),
            None => (Network::new(&spec(), (1, 28, 28), 10, &Device::Cpu, 5).unwrap(), None),
        };
        let stop = AtomicBool::new(false);
        let classes = crate::data::dataset::digit_classes();
        let fingerprint = data_fingerprint(&data);
        let info = RunInfo { config: config.clone(), data: fingerprint, settings: BTreeMap::new() };
        let mut hook = |end: &crate::model::training::train::EpochEnd<'_>| {
            write_checkpoint(
                dir,
                &net,
                (&classes, PixelScaling::Unit, &BTreeMap::new()),
                (&info, end.state),
                end.kept,
            )?;
            if Some(end.state.epochs_done) == stop_after {
                stop.store(true, Ordering::Relaxed);
            }
            Ok(())
        };
        let hooks = FitHooks { resume, on_epoch: Some(&mut hook), last_grads: false, fill_ahead: None };
        let h = fit_with(&net, data, config, &stop, &mut |_| {}, hooks).unwrap();
        (net, h)
    }

    fn resumes_bit_identically(config: TrainConfig) {
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (whole, whole_history) = train(&config, dirs.0.path(), None, None);
        let (_, cut) = train(&config, dirs.1.path(), Some(2), None);
        assert_eq!(cut.epochs.len(), 2);
        let (net, _, ck) = load_checkpoint(&dirs.1.path().join(LAST), &Device::Cpu).unwrap();
        assert_eq!((ck.state.epochs_done, &ck.info.config), (2, &config));
        let (resumed, history) = train(&config, dirs.1.path(), None, Some((net, ck)));
        assert_eq!(values(&resumed), values(&whole));
        assert_eq!(metrics(&history), metrics(&whole_history));
        assert_eq!(
            (history.best_epoch, history.restored_best),
            (whole_history.best_epoch, whole_history.restored_best)
        );
        assert_eq!(history.stop, whole_history.stop);
        // Both folders end with the same last checkpoint's weights, and best is a model file.
        let last =
            |d: &Path| values(&crate::model::files::checkpoint::load_model(&d.join(LAST), &Device::Cpu).unwrap().0);
        assert_eq!(last(dirs.0.path()), last(dirs.1.path()));
        let (best, _) = crate::model::files::checkpoint::load_model(&dirs.1.path().join(BEST), &Device::Cpu).unwrap();
        if whole_history.best_epoch.is_some() {
            assert_eq!(values(&best), values(&whole));
        }
    }

    #[test]
    fn adam_with_two_groups_and_a_schedule_resumes_bit_identically() {
        resumes_bit_identically(TrainConfig {
            epochs: 4,
            seed: 3,
            schedule: Schedule::OneCycle,
            body_lr: Some(3e-4),
            label_smoothing: 0.1,
            ..TrainConfig::default()
        });
    }

    #[test]
    fn a_run_with_a_moving_average_resumes_bit_identically() {
        resumes_bit_identically(TrainConfig { epochs: 4, seed: 4, ema: Some(0.9), ..TrainConfig::default() });
    }

    #[test]
    fn sgd_with_momentum_resumes_bit_identically() {
        let optimizer = Optimizer::Sgd { lr: 0.05, momentum: 0.9 };
        resumes_bit_identically(TrainConfig { epochs: 4, seed: 8, optimizer, ..TrainConfig::default() });
    }

    #[test]
    fn the_generator_position_round_trips() {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let mut order: Vec<u32> = (0..100).collect();
        rand::seq::SliceRandom::shuffle(&mut order[..], &mut rng);
        let mut back = RngState::of(&rng).to_rng();
        assert_eq!(rand::Rng::random::<u64>(&mut back), rand::Rng::random::<u64>(&mut rng));
    }

    #[test]
    fn a_model_file_is_not_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let net = Network::new(&spec(), (1, 28, 28), 10, &Device::Cpu, 1).unwrap();
        let classes = crate::data::dataset::digit_classes();
        crate::model::files::checkpoint::save_model(&path, &net, &classes, PixelScaling::Unit, &BTreeMap::new())
            .unwrap();
        let e = load_checkpoint(&path, &Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("m.safetensors") && e.contains("without a training run"), "{e}");
    }
}
