//! Session arms of the model statements: model, summary, optimizer, schedule, batch, loss,
//! fit, evaluate, plot, show mistakes, save/load model, export onnx, predict, device, threads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;

use super::classes::{label_map, present_classes};
use super::ensemble::{Ensemble, Scorer};
use super::runs::{data_name, history_facts, kept_epoch, pct, tuning, RunRecord};
use super::{Event, Image, Progress, Session, SessionError, Table, Task};
use crate::data::{self, Dataset, ImageFormat, PixelScaling, Split, SplitKind};
use crate::kernels::{self, Precision};
use crate::lang::{self, ModelChoice, OptimizerSpec, PlotKind};
use crate::model::{
    self, DeviceKind, Evaluation, History, ModelSpec, Network, Optimizer, Schedule, TrainConfig, TrainEvent,
};
use crate::plot;

/// A built (and perhaps trained) model with what the session knows about it.
pub(super) struct ModelState {
    pub(super) net: Network,
    /// The class each output stands for, in output order.
    pub(super) classes: Vec<String>,
    /// The scaling the model was trained with, when it came from a file.
    pub(super) scaling: Option<PixelScaling>,
    pub(super) history: Option<History>,
    pub(super) evaluation: Option<(SplitKind, Evaluation)>,
    /// Where the model came from, for `compare`: its layers or file, then each new head.
    pub(super) origin: String,
    /// The data of the model's last `fit` (name and classes), until it gets a new head.
    pub(super) trained_on: Option<String>,
    /// The `compare` record of the model's last `fit`, while the model is unchanged since.
    pub(super) run: Option<usize>,
}

impl ModelState {
    pub(super) fn new(net: Network, classes: Vec<String>, scaling: Option<PixelScaling>, origin: String) -> ModelState {
        ModelState { net, classes, scaling, history: None, evaluation: None, origin, trained_on: None, run: None }
    }
}

/// Training settings, the model and the record of training runs.
pub(super) struct TrainingState {
    pub(super) model: Option<ModelState>,
    pub(super) optimizer: Optimizer,
    body_lr: Option<f64>,
    schedule: Schedule,
    batch: usize,
    smoothing: f32,
    /// `ema D`: the decay of the moving average of the weights `fit` keeps.
    ema: Option<f64>,
    /// `tta on`: test-time augmentation for evaluation and prediction.
    pub(super) tta: bool,
    pub(super) device: Device,
    /// `precision`: what the products of every model of the session compute in.
    pub(super) precision: Precision,
    pub(super) pool: Option<Arc<rayon::ThreadPool>>,
    /// Every finished `fit` of the session, for `compare`.
    pub(super) runs: Vec<RunRecord>,
    /// `ensemble`: the models collected, and whether evaluation uses them.
    pub(super) ensemble: Ensemble,
}

impl Default for TrainingState {
    fn default() -> Self {
        TrainingState {
            model: None,
            optimizer: Optimizer::default(),
            body_lr: None,
            schedule: Schedule::Constant,
            batch: 32,
            smoothing: 0.0,
            ema: None,
            tta: false,
            device: Device::Cpu,
            precision: Precision::F32,
            pool: None,
            runs: Vec::new(),
            ensemble: Ensemble::default(),
        }
    }
}

fn spec_from_words(choice: &ModelChoice) -> Result<ModelSpec, SessionError> {
    match choice {
        ModelChoice::Preset(name) => model::preset(name).ok_or_else(|| {
            SessionError::Usage(format!(
                "no preset `{name}` (presets: {})",
                model::architecture::spec::PRESETS.join(", ")
            ))
        }),
        ModelChoice::Layers(spec) => Ok(spec.clone()),
    }
}

impl Session {
    /// The current model's network, if a model was built or loaded.
    pub fn network(&self) -> Option<&Network> {
        self.training.model.as_ref().map(|s| &s.net)
    }

    /// Runs `f` in the session's thread pool (`threads N`), or the global one.
    pub(super) fn in_pool<R: Send>(pool: &Option<Arc<rayon::ThreadPool>>, f: impl FnOnce() -> R + Send) -> R {
        match pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    /// Runs `work` in the session's thread pool while this thread passes on the events it emits.
    pub(super) fn in_pool_with_events<R: Send>(
        pool: &Option<Arc<rayon::ThreadPool>>,
        out: &mut dyn FnMut(Event),
        work: impl FnOnce(&mut dyn FnMut(Event)) -> R + Send,
    ) -> R {
        let Some(pool) = pool else {
            return work(out);
        };
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            let worker = scope.spawn(move || {
                pool.install(move || {
                    work(&mut |event| {
                        let _ = sender.send(event);
                    })
                })
            });
            for event in receiver {
                out(event);
            }
            worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    pub(super) fn model_for(&self, what: &str) -> Result<&ModelState, SessionError> {
        self.training
            .model
            .as_ref()
            .ok_or_else(|| SessionError::Usage(format!("{what} needs a model: run e.g. `model seed-cnn` first")))
    }

    /// The input shape and classes a new model gets: the dataset's (the classes present in it,
    /// so that after `filter classes 0-4` a model has 5 outputs), else MNIST's.
    pub(super) fn model_frame(&self) -> ((usize, usize, usize), Vec<String>) {
        match &self.dataset {
            Some(d) => ((1, d.rows, d.cols), present_classes(d).into_iter().map(|c| d.classes[c].clone()).collect()),
            None => ((1, 28, 28), crate::data::dataset::digit_classes()),
        }
    }

    /// Refuses a spec whose training at `batch` would not fit the memory budget.
    pub(super) fn check_training_memory(
        spec: &ModelSpec,
        input: (usize, usize, usize),
        classes: usize,
        batch: usize,
    ) -> Result<(), SessionError> {
        let need = spec.training_bytes(input, classes, batch)?;
        crate::budget::check(
            || {
                let params: usize =
                    spec.output_shapes(input, classes).map(|v| v.iter().map(|i| i.params).sum()).unwrap_or(0);
                format!("training `{}` ({params} parameters) at batch {batch}", spec.describe())
            },
            need,
        )?;
        Ok(())
    }

    /// The batch size evaluation runs at: at least 256 images for speed, as long as a quarter of
    /// the memory budget holds it; else the training batch (which `fit` checked).
    pub(super) fn eval_batch(&self, net: &Network) -> usize {
        let wide = self.training.batch.max(256);
        let fits =
            net.spec().training_bytes(net.input(), net.classes(), wide).is_ok_and(|b| b <= crate::budget::limit() / 4);
        if fits {
            wide
        } else {
            self.training.batch
        }
    }

    pub(super) fn model(&mut self, choice: &ModelChoice, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let spec = spec_from_words(choice)?;
        let (input, classes) = self.model_frame();
        Self::check_training_memory(&spec, input, classes.len(), self.training.batch)?;
        let net = self.in_precision(Network::new(&spec, input, classes.len(), &self.training.device, self.seed)?);
        out(Event::Text(format!(
            "model: {} → {} classes, {} parameters (seed {})",
            spec.describe(),
            classes.len(),
            net.param_count(),
            self.seed
        )));
        for i in spec.idle_relus() {
            out(Event::Text(format!(
                "note: {} applies ReLU already, so the `relu` after it changes nothing (`norelu` after a convolution or dense layer leaves its own out)",
                spec.layers[i - 1].label()
            )));
        }
        self.training.model = Some(ModelState::new(net, classes, None, spec.describe()));
        Ok(())
    }

    pub(super) fn summary(&mut self, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let state = self.model_for("summary")?;
        let summary = state.net.summary()?;
        let mut table = Table::new(
            Some(format!("model: {} → {}", state.net.spec().describe(), state.classes.join(", "))),
            &["#", "layer (type)", "output shape", "params", "trainable", "fit runs it in", "evaluate runs it in"],
        );
        // Which step of the plan runs each layer: layers with the same step run as one kernel.
        let steps = |train: bool| state.net.plan(train).by_layer(summary.rows.len());
        let (fit_steps, eval_steps) = (steps(true), steps(false));
        let step_text = |s: Option<(usize, model::architecture::plan::Step)>| {
            s.map_or_else(|| "— (off)".to_string(), |(n, step)| format!("step {n} {}", step.kernel()))
        };
        for (i, row) in summary.rows.iter().enumerate() {
            let mut trainable = match row.trainable {
                Some(true) => "yes".to_string(),
                Some(false) => "no (frozen)".to_string(),
                None => String::new(),
            };
            if row.adapter_params > 0 {
                trainable.push_str(&format!(" + LoRA {} trainable", row.adapter_params));
            }
            table.row(vec![
                (i + 1).to_string(),
                row.layer.clone(),
                row.output_shape.clone(),
                row.params.to_string(),
                trainable,
                step_text(fit_steps[i]),
                step_text(eval_steps[i]),
            ]);
        }
        out(Event::Table(table));
        out(Event::Text(format!(
            "total params: {}, trainable: {}, non-trainable: {}",
            summary.total_params,
            summary.trainable_params,
            summary.total_params - summary.trainable_params
        )));
        out(Event::Text(
            "layers with the same step run as one kernel call (a fused op); `fit` and `evaluate` differ where \
             training needs more (batch statistics, dropout masks)"
                .into(),
        ));
        let on_cpu = state.net.device().is_cpu();
        out(Event::Text(describe_precision(state.net.precision(), kernels::bf16::units(), on_cpu)));
        Ok(())
    }

    pub(super) fn optimizer(&mut self, spec: &OptimizerSpec, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        self.training.optimizer = spec.optimizer;
        if let Some(body) = spec.body_lr {
            if body <= 0.0 {
                return Err("the body learning rate must be above 0".into());
            }
        }
        self.training.body_lr = spec.body_lr;
        let body =
            spec.body_lr.map(|b| format!(", body (every layer before the output layer) lr {b}")).unwrap_or_default();
        out(Event::Text(format!("optimizer: {}{body}", self.training.optimizer)));
        Ok(())
    }

    pub(super) fn schedule(&mut self, schedule: Schedule, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        self.training.schedule = schedule;
        out(Event::Text(format!("schedule: {}", self.training.schedule)));
        Ok(())
    }

    pub(super) fn batch(&mut self, size: usize, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        if size == 0 {
            return Err("the batch size must be at least 1".into());
        }
        if let Some(state) = &self.training.model {
            let (c, h, w) = state.net.input();
            Self::check_training_memory(state.net.spec(), (c, h, w), state.classes.len(), size)?;
        }
        self.training.batch = size;
        out(Event::Text(format!("batch size {size}")));
        Ok(())
    }

    pub(super) fn loss(&mut self, smoothing: Option<f64>, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let smoothing = smoothing.unwrap_or(0.0);
        if !(0.0..1.0).contains(&smoothing) {
            return Err("label smoothing must be in [0, 1)".into());
        }
        self.training.smoothing = smoothing as f32;
        out(Event::Text(format!("loss: cross-entropy, label smoothing {smoothing}")));
        Ok(())
    }

    /// `tta on|off`: test-time augmentation for `evaluate`, `predict`, `predictions` and
    /// `show mistakes`.
    pub(super) fn tta(&mut self, on: bool, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        self.training.tta = on;
        out(Event::Text(if on {
            "test-time augmentation on: evaluate, predict, predictions and show mistakes average the softmax over each image and its 1-pixel shifts (5 views)".to_string()
        } else {
            "test-time augmentation off".to_string()
        }));
        Ok(())
    }

    /// Class probabilities of `pixels` by `scorer` (the mean over an ensemble's members), with
    /// test-time augmentation when it is on.
    fn class_probs(
        &self,
        scorer: &Scorer<'_>,
        pixels: &[u8],
        scaling: PixelScaling,
    ) -> Result<Vec<Vec<f32>>, SessionError> {
        let tta = self.training.tta;
        let nets = &scorer.nets;
        Ok(Self::in_pool(&self.training.pool, || model::training::ensemble::mean_probs(nets, pixels, scaling, tta))?)
    }

    /// `ema D|off`: the moving average of the weights that `fit` keeps, or none.
    pub(super) fn ema(&mut self, decay: Option<f64>, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        self.training.ema = decay;
        out(Event::Text(match decay {
            Some(d) => format!(
                "weights: a moving average with decay {d}, kept during `fit` (validation, the kept epoch and the final weights use it)"
            ),
            None => "weights: no moving average".to_string(),
        }));
        Ok(())
    }

    pub(super) fn fit(
        &mut self,
        epochs: usize,
        patience: Option<usize>,
        checkpoint: Option<&Path>,
        out: &mut dyn FnMut(Event),
    ) -> Result<(), SessionError> {
        if epochs == 0 {
            return Err("fit needs at least 1 epoch".into());
        }
        let labels = self.training_inputs("fit")?.labels;
        let config = self.train_config(epochs, patience, labels);
        self.train_run(config, None, checkpoint, out)
    }

    /// Runs `fit` with `config`: from the start, or continuing `resume`; writing checkpoints
    /// into `checkpoint` and a TensorBoard run when `log tensorboard` is on.
    pub(super) fn train_run(
        &mut self,
        config: TrainConfig,
        resume: Option<model::Checkpoint>,
        checkpoint: Option<&Path>,
        out: &mut dyn FnMut(Event),
    ) -> Result<(), SessionError> {
        if let Some(dir) = checkpoint {
            super::track::check_checkpoint_dir(dir)?;
        }
        let TrainingInputs { dataset, state, labels, train } = self.training_inputs("fit")?;
        let val = dataset.split(SplitKind::Val).filter(|s| !s.is_empty());
        let epochs = config.epochs;
        let (trained, trainable) = announce_training(&state.net, self.training.body_lr, &config, out);
        if val.is_none() {
            out(Event::Warning(
                "no validation split: the last epoch's weights are kept (`split val 10` makes one)".into(),
            ));
        }
        let (rows, cols, scaling) = (dataset.rows, dataset.cols, dataset.scaling);
        let format = dataset.format();
        if scaling == PixelScaling::Raw {
            out(Event::Warning("pixels are raw bytes 0..255; `normalize` usually trains better".into()));
        }
        let seed = config.seed;
        let pipeline = self.augmentation.as_ref().map(|a| &a.pipeline);
        let fill = move |indices: &[usize], epoch: u64, batch: &mut [f32]| {
            if let Some(p) = pipeline {
                // Errors here mean a malformed split, which `fit` has already checked.
                let images = crate::data::Images::new(&train.pixels, rows, cols);
                let key = crate::data::augment::Key::new(seed, epoch);
                let _ = p.augment_batch_f32(images, indices, key, scaling, batch);
            }
        };
        let augment: Option<model::Augment<'_>> = pipeline.map(|_| &fill as model::Augment<'_>);
        let data = model::TrainData { train, val, format, augment };
        let mut tracker = self.tracker(&config, &data, checkpoint, out)?;
        let total_batches = train.len().div_ceil(config.batch_size);
        let interrupt = Arc::clone(&self.interrupt);
        let net = &state.net;
        let started = std::time::Instant::now();
        let run = self.training.runs.len() as u64 + 1;
        let history = Self::in_pool_with_events(&self.training.pool, out, |out| {
            let out = std::cell::RefCell::new(out);
            let tracker = std::cell::RefCell::new(&mut tracker);
            let mut emit = |event: TrainEvent| {
                tracker.borrow_mut().on_event(&event);
                emit_train_event(event, run, epochs, total_batches, train.len(), *out.borrow_mut())
            };
            let mut hook = |end: &model::EpochEnd<'_>| tracker.borrow_mut().on_epoch(net, end);
            let hooks = model::FitHooks {
                resume: resume.map(|c| c.state),
                last_grads: tracker.borrow().wants_grads(),
                on_epoch: Some(&mut hook),
                fill_ahead: None,
            };
            model::fit_with(net, data, &config, &interrupt, &mut emit, hooks)
        });
        let history = history?;
        let seconds = started.elapsed().as_secs_f64();
        let evaluation = self.score_test(net, format, &labels)?;
        report_run(&history, evaluation.as_ref(), out);
        tracker.finish(self, history.epochs.len(), evaluation.as_ref(), out);
        let augmented = if self.augmentation.is_some() { ", augmented" } else { "" };
        let record = RunRecord {
            model: state.origin.clone(),
            data: format!("{}, {} train{augmented}", data_name(dataset), train.len()),
            tuning: format!("{trained}{}", trained_extras(&config, net.precision())),
            trainable,
            epochs: history.epochs.len(),
            seconds,
            best_val: history.epochs.iter().filter_map(|e| e.val_accuracy).reduce(f32::max),
            test: evaluation.as_ref().map(|e| e.accuracy),
        };
        let trained_on = data_name(dataset);
        self.keep_run(record, (history, evaluation), scaling, trained_on);
        Ok(())
    }

    /// Records a finished run for `compare` and keeps its history, test evaluation, pixel
    /// scaling and data name with the model.
    fn keep_run(
        &mut self,
        record: RunRecord,
        (history, evaluation): (History, Option<Evaluation>),
        scaling: PixelScaling,
        trained_on: String,
    ) {
        let run = self.record_run(record);
        let state = self.training.model.as_mut().expect("a run trains the session's model");
        state.history = Some(history);
        state.scaling = Some(scaling);
        state.evaluation = evaluation.map(|e| (SplitKind::Test, e));
        state.trained_on = Some(trained_on);
        state.run = Some(run);
    }

    /// What a statement that trains (`what`: `fit`, `find lr`) needs, or why it cannot run: the
    /// data, the model, the label map between them, a non-empty train split, and memory for a
    /// training batch.
    pub(super) fn training_inputs(&self, what: &str) -> Result<TrainingInputs<'_>, SessionError> {
        let dataset = self.dataset.as_ref().ok_or_else(|| format!("{what} needs data: run `load mnist` first"))?;
        let state = self.model_for(what)?;
        let labels = label_map(&state.classes, dataset)?;
        Self::check_training_memory(state.net.spec(), state.net.input(), state.classes.len(), self.training.batch)?;
        let train = dataset
            .split(SplitKind::Train)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("{what} needs a non-empty train split"))?;
        Ok(TrainingInputs { dataset, state, labels, train })
    }

    /// `find lr A..B steps N`: the learning-rate range test on the train split; the model's
    /// weights are as before afterwards.
    pub(super) fn find_lr(
        &mut self,
        start: f64,
        end: f64,
        steps: usize,
        out: &mut dyn FnMut(Event),
    ) -> Result<(), SessionError> {
        let TrainingInputs { dataset, state, labels, train } = self.training_inputs("find lr")?;
        let config = model::LrFindConfig {
            start,
            end,
            steps,
            batch_size: self.training.batch,
            optimizer: self.training.optimizer,
            label_smoothing: self.training.smoothing,
            seed: self.seed,
            labels,
        };
        let (net, format, interrupt) = (&state.net, dataset.format(), Arc::clone(&self.interrupt));
        let found = Self::in_pool_with_events(&self.training.pool, out, |out| {
            let mut progress = |step: model::LrStep| {
                out(Event::Progress(Progress {
                    task: Task::FindLr,
                    done: step.done as u64,
                    total: step.steps as u64,
                    message: format!("rate: {:.2e} - smoothed loss: {:.4}", step.rate, step.smoothed),
                    elapsed: std::time::Duration::try_from_secs_f64(step.seconds).unwrap_or_default(),
                    images: step.images as u64,
                    finished: step.done == step.steps,
                }))
            };
            model::lr_find(net, model::TrainData::new(train, None, format), &config, &interrupt, &mut progress)
        })?;
        let taken = found.rates.len();
        let ended = match (found.diverged, found.interrupted) {
            (true, _) => format!(", stopped at rate {:.3e}: the loss diverged", found.stopped_at.unwrap_or(end)),
            (_, true) => ", interrupted".to_string(),
            _ => String::new(),
        };
        out(Event::Text(format!(
            "find lr: {taken} batches of {} from {start:.1e} to {end:.1e}{ended}; the model's weights are restored",
            self.training.batch
        )));
        let mut marks = Vec::new();
        // The rates the test took: a suggestion outside them is named but not drawn (it would
        // sit on the axis's edge, at a rate it is not).
        let tried =
            found.rates.iter().fold(f64::MAX, |a, &r| a.min(r))..=found.rates.iter().fold(0.0, |a, &r| a.max(r));
        for (rate, what) in [(found.steepest, "steepest descent"), (found.min_over_10, "lowest loss ÷ 10")] {
            match rate {
                Some(r) if tried.contains(&r) => {
                    out(Event::Text(format!("suggested ({what}): {r:.2e}")));
                    marks.push((r, format!("{what}: {r:.2e}")));
                }
                Some(r) => out(Event::Text(format!(
                    "suggested ({what}): {r:.2e}, below the rates tried (not drawn): the loss was lowest at the \
                     first rate tried, so this rule gives no usable rate here (a model already trained often does \
                     this); take the steepest descent"
                ))),
                None => out(Event::Text(format!("suggested ({what}): none (too few batches)"))),
            }
        }
        if taken >= 2 {
            let state = self.model_for("find lr")?;
            let title = format!(
                "learning-rate range test of {}\n{taken} batches of {} from {start:.1e} to {end:.1e}{ended}",
                self.model_title(state).trim_start_matches("model "),
                self.training.batch
            );
            let png = plot::lr_curve_png(&found.rates, &found.smoothed, &marks, &title)?;
            let svg = plot::lr_curve_svg(&found.rates, &found.smoothed, &marks, &title).ok();
            let title = "smoothed training loss against the learning rate".to_string();
            out(Event::Image(Image { name: "lr-find".into(), title, png, svg }));
        }
        Ok(())
    }

    /// The trainer's settings for `fit EPOCHS [patience N]` from the session's settings.
    pub(super) fn train_config(&self, epochs: usize, patience: Option<usize>, labels: model::LabelMap) -> TrainConfig {
        TrainConfig {
            epochs,
            batch_size: self.training.batch,
            optimizer: self.training.optimizer,
            schedule: self.training.schedule,
            label_smoothing: self.training.smoothing,
            patience,
            seed: self.seed,
            body_lr: self.training.body_lr,
            labels,
            ema: self.training.ema,
            ..TrainConfig::default()
        }
    }

    /// The test split, scored at the end of every run for `compare` (none without a test split).
    fn score_test(
        &self,
        net: &Network,
        format: ImageFormat,
        labels: &model::LabelMap,
    ) -> Result<Option<Evaluation>, SessionError> {
        let Some(dataset) = self.dataset.as_ref() else { return Ok(None) };
        let Some(test) = dataset.split(SplitKind::Test).filter(|s| !s.is_empty()) else { return Ok(None) };
        let batch = self.eval_batch(net);
        let evaluation =
            Self::in_pool(&self.training.pool, || model::evaluate_mapped(net, test, format, batch, labels))?;
        Ok(Some(evaluation))
    }

    /// Evaluates the model on `kind`, or on its first `first` images: the evaluation, the
    /// split's size and the number of images evaluated.
    fn evaluate_split(
        &self,
        kind: SplitKind,
        first: Option<usize>,
    ) -> Result<(Evaluation, usize, usize), SessionError> {
        let dataset = self.dataset.as_ref().ok_or("evaluate needs data: run `load mnist` first")?;
        let scorer = self.scorer("evaluate")?;
        let labels = label_map(scorer.classes, dataset)?;
        let split = dataset
            .split(kind)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("there is no {kind} split (`split` makes train/val/test)"))?;
        let total = split.len();
        let part;
        let split = match first {
            Some(n) if n < total => {
                part = split.select(&(0..n).collect::<Vec<_>>(), dataset.image_len());
                &part
            }
            _ => split,
        };
        let batch = self.eval_batch(scorer.nets[0]);
        let format = dataset.format();
        let (nets, tta) = (&scorer.nets, self.training.tta);
        let evaluation = Self::in_pool(&self.training.pool, || {
            model::training::ensemble::evaluate(nets, split, format, (batch, tta), &labels)
        })?;
        Ok((evaluation, total, split.len()))
    }

    /// `evaluate [SPLIT] [N]`: loss, accuracy and per-class accuracy on the split or its first N
    /// images. Only an evaluation of a whole split is kept (for `plot confusion`, `compare`
    /// and `save model`).
    pub(super) fn evaluate(
        &mut self,
        split: Option<SplitKind>,
        first: Option<usize>,
        out: &mut dyn FnMut(Event),
    ) -> Result<(), SessionError> {
        let kind = split.unwrap_or(SplitKind::Test);
        let (evaluation, total, n) = self.evaluate_split(kind, first)?;
        let whole = n == total;
        let what = if whole { kind.to_string() } else { format!("{kind}, first {n} of {total} images") };
        if first.is_some_and(|f| f > total) {
            out(Event::Text(format!("the {kind} split holds {total} images: all of them are evaluated")));
        }
        let scorer = self.scorer("evaluate")?;
        let (classes, ensemble) = (scorer.classes, scorer.ensemble);
        let who = if ensemble { format!("{}, ", scorer.name) } else { String::new() };
        out(Event::Text(format!(
            "{who}{what}: loss {:.4} - accuracy {:.4} ({} of {n} images right)",
            evaluation.loss,
            evaluation.accuracy,
            (evaluation.accuracy as f64 * n as f64).round() as usize,
        )));
        let mut table = Table::new(Some(format!("per-class accuracy on {what}")), &["class", "images", "accuracy"]);
        for (c, acc) in evaluation.per_class_accuracy.iter().enumerate() {
            if let Some(acc) = acc {
                let n: usize = evaluation.confusion[c].iter().sum();
                table.row(vec![classes[c].clone(), n.to_string(), pct(*acc)]);
            }
        }
        out(Event::Table(table));
        if !whole {
            out(Event::Text(format!(
                "an evaluation of part of a split is not kept: `plot confusion`, `compare` and `save model` use \
                 the last evaluation of a whole split (`evaluate {kind}`)"
            )));
            return Ok(());
        }
        let tta = self.training.tta;
        if ensemble {
            self.training.ensemble.keep(kind, evaluation, tta);
            return Ok(());
        }
        let state = self.training.model.as_mut().expect("evaluated");
        // `compare` lists accuracies without test-time augmentation, as `fit` records them.
        if let (SplitKind::Test, Some(run), false) = (kind, state.run, tta) {
            self.training.runs[run].test = Some(evaluation.accuracy);
        }
        state.evaluation = Some((kind, evaluation));
        Ok(())
    }

    /// `predictions [SPLIT] [N]`: the split's `count` images of highest loss, worst first (as
    /// fastai's `top_losses`), with their true and predicted classes and probabilities.
    pub(super) fn predictions(
        &mut self,
        split: Option<SplitKind>,
        count: usize,
        out: &mut dyn FnMut(Event),
    ) -> Result<(), SessionError> {
        let kind = split.unwrap_or(SplitKind::Test);
        let dataset = self.dataset.as_ref().ok_or("predictions needs data: run `load mnist` first")?;
        let scorer = self.scorer("predictions")?;
        let labels = label_map(scorer.classes, dataset)?;
        let data = dataset
            .split(kind)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("there is no {kind} split (`split` makes train/val/test)"))?;
        let probs = self.class_probs(&scorer, &data.pixels, dataset.scaling)?;
        let mut rows: Vec<(usize, usize, usize, f32, f64)> = probs
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let truth = labels.output(data.labels[i])? as usize;
                let predicted = argmax(p);
                let loss = -(p[truth].max(f32::MIN_POSITIVE) as f64).ln();
                Some((i, truth, predicted, p[truth], loss))
            })
            .collect();
        let wrong = rows.iter().filter(|r| r.1 != r.2).count();
        let scored = rows.len();
        rows.sort_by(|a, b| b.4.total_cmp(&a.4).then(a.0.cmp(&b.0)));
        rows.truncate(count);
        let mut table = Table::new(
            Some(format!(
                "{kind}: the {} images of highest loss, worst first ({wrong} of {scored} predicted wrong)",
                rows.len()
            )),
            &["image", "true", "predicted", "probability", "p(true)", "loss"],
        );
        for &(i, truth, predicted, p_true, loss) in &rows {
            table.row(vec![
                i.to_string(),
                scorer.classes[truth].clone(),
                scorer.classes[predicted].clone(),
                format!("{:.1}%", 100.0 * probs[i][predicted]),
                format!("{:.1}%", 100.0 * p_true),
                format!("{loss:.4}"),
            ]);
        }
        out(Event::Table(table));
        Ok(())
    }

    pub(super) fn plot(&mut self, kind: PlotKind, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        match kind {
            PlotKind::History => {
                let state = self.model_for("plot history")?;
                let history = state.history.as_ref().ok_or("there is no training history: run `fit N` first")?;
                if history.epochs.is_empty() {
                    return Err("the last `fit` stopped during its first epoch, before any epoch finished: there \
                                is no per-epoch history to plot (`compare` lists that run with 0 epochs); run \
                                `fit N` again to get one"
                        .into());
                }
                let (epochs, accuracy, val_accuracy, loss, val_loss) = history.series();
                let evaluation = state.evaluation.as_ref().map(|(kind, e)| (*kind, e.accuracy));
                let title = format!("{}\n{}", self.model_title(state), history_facts(history, evaluation));
                let kept = kept_epoch(history);
                let series = plot::HistorySeries { epochs, accuracy, val_accuracy, loss, val_loss, kept, title };
                let png = plot::history_png(&series)?;
                let svg = plot::history_svg(&series).ok();
                out(Event::Image(Image { name: "history".into(), title: "training history".into(), png, svg }));
            }
            PlotKind::Confusion if self.training.ensemble.on => {
                let scorer = self.scorer("plot confusion")?;
                let Some((kind, evaluation)) = self.training.ensemble.evaluation.as_ref() else {
                    return Err("plot confusion draws the last evaluation, and the ensemble has none since it \
                                changed: run `evaluate` (the test split) or `evaluate val` first"
                        .into());
                };
                let title = format!(
                    "{}\nconfusion matrix on {kind}: accuracy {} ({} images)",
                    scorer.name,
                    pct(evaluation.accuracy),
                    evaluation.predictions.len()
                );
                let png = plot::confusion_png(&evaluation.confusion, scorer.classes, &title)?;
                out(Event::Image(Image {
                    name: "confusion".into(),
                    title: format!("confusion matrix of the ensemble on {kind}"),
                    png,
                    svg: None,
                }));
            }
            PlotKind::Confusion => {
                let state = self.model_for("plot confusion")?;
                let Some((kind, evaluation)) = state.evaluation.as_ref() else {
                    // Scoring the model here would draw an untrained model's guesses, or a
                    // split the user did not choose: say what to run instead.
                    return Err(if state.history.is_none() && state.scaling.is_none() {
                        "plot confusion draws the last evaluation, and this model has not been trained: \
                         run `fit N` first (it evaluates the test split), or `evaluate` to score it as it is"
                    } else {
                        "plot confusion draws the model's last evaluation, and there is none since it was \
                         loaded, trained without a test split or changed: run `evaluate` (the test split) or \
                         `evaluate val` first"
                    }
                    .into());
                };
                let title = format!(
                    "{}\nconfusion matrix on {kind}: accuracy {} ({} images)",
                    self.model_title(state),
                    pct(evaluation.accuracy),
                    evaluation.predictions.len()
                );
                let png = plot::confusion_png(&evaluation.confusion, &state.classes, &title)?;
                out(Event::Image(Image {
                    name: "confusion".into(),
                    title: format!("confusion matrix on {kind}"),
                    png,
                    svg: None,
                }));
            }
        }
        Ok(())
    }

    pub(super) fn show_mistakes(&mut self, count: usize, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        match self.mistakes_png(count)? {
            None => out(Event::Text("no mistakes on the test split".into())),
            Some((png, shown)) => out(Event::Image(Image {
                name: "mistakes".into(),
                title: format!("{shown} worst test mistakes (true→predicted)"),
                png,
                svg: None,
            })),
        }
        Ok(())
    }

    /// A grid of the `count` test images the model gets most wrong (the lowest probability
    /// given to the true class), captioned true→predicted, and how many it shows; `None`
    /// without mistakes.
    pub(super) fn mistakes_png(&self, count: usize) -> Result<Option<(Vec<u8>, usize)>, SessionError> {
        let dataset = self.dataset.as_ref().ok_or("show mistakes needs data: run `load mnist` first")?;
        let scorer = self.scorer("show mistakes")?;
        let labels = label_map(scorer.classes, dataset)?;
        let test = dataset.split(SplitKind::Test).filter(|s| !s.is_empty()).ok_or("there is no test split")?;
        let probs = self.class_probs(&scorer, &test.pixels, dataset.scaling)?;
        let mut wrong: Vec<(usize, usize, f32)> = probs
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let predicted = argmax(p);
                let truth = labels.output(test.labels[i]).unwrap_or(0) as usize;
                (predicted != truth).then_some((i, predicted, p[truth]))
            })
            .collect();
        if wrong.is_empty() {
            return Ok(None);
        }
        let mistakes = wrong.len();
        wrong.sort_by(|a, b| a.2.total_cmp(&b.2));
        wrong.truncate(count.max(1));
        let image_len = dataset.image_len();
        let images: Vec<&[u8]> = wrong.iter().map(|&(i, _, _)| test.image(i, image_len)).collect();
        let captions: Vec<String> = wrong
            .iter()
            .map(|&(i, p, _)| format!("{}→{}", dataset.classes[test.labels[i] as usize], scorer.classes[p]))
            .collect();
        let columns = (images.len() as f64).sqrt().ceil() as usize;
        let title =
            format!("{}\nthe {} worst of {} test mistakes (true→predicted)", scorer.name, images.len(), mistakes);
        let png = plot::titled_grid_png(&title, &images, (dataset.rows, dataset.cols), &captions, columns)?;
        Ok(Some((png, images.len())))
    }

    pub(super) fn save_model(&mut self, path: &Path, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let state = self.model_for("save model")?;
        crate::write::file_target(path, crate::write::Place::OutsideCache)?;
        let scaling = state.scaling.or(self.dataset.as_ref().map(|d| d.scaling)).unwrap_or(PixelScaling::Unit);
        let mut extra = BTreeMap::new();
        if let Some(d) = &self.dataset {
            extra.insert("dataset".to_string(), d.name.clone());
        }
        if let Some(h) = &state.history {
            extra.insert("epochs".to_string(), h.epochs.len().to_string());
        }
        if let Some((kind, e)) = &state.evaluation {
            extra.insert(format!("{kind}_accuracy"), format!("{:.4}", e.accuracy));
        }
        model::files::checkpoint::save_model(path, &state.net, &state.classes, scaling, &extra)?;
        out(Event::Text(format!("saved model to {}", path.display())));
        Ok(())
    }

    /// `save history PATH.csv|json`: the last run's per-epoch history, for other trackers.
    pub(super) fn save_history(&mut self, path: &Path, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let state = self.model_for("save history")?;
        let history = state.history.as_ref().ok_or("save history needs a training run: run e.g. `fit 5` first")?;
        crate::write::file_target(path, crate::write::Place::OutsideCache)?;
        let format = model::save_history(history, path)?;
        let name = if format == model::HistoryFormat::Csv { "CSV" } else { "JSON" };
        out(Event::Text(format!(
            "saved the history of {} epochs to {} ({name})",
            history.epochs.len(),
            path.display()
        )));
        Ok(())
    }

    /// `export onnx PATH`: the model as an ONNX file, with its classes and pixel scaling.
    pub(super) fn export_onnx(&mut self, path: &Path, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let scorer = self.scorer("export onnx")?;
        crate::write::file_target(path, crate::write::Place::OutsideCache)?;
        let scaling = scorer.scaling.or(self.dataset.as_ref().map(|d| d.scaling)).unwrap_or(PixelScaling::Unit);
        let summary = model::files::onnx::export_onnx(path, &scorer.nets, scorer.classes, scaling)?;
        let (c, h, w) = scorer.nets[0].input();
        let what =
            if scorer.ensemble { format!("{} (the mean of their probabilities)", scorer.name) } else { "model".into() };
        out(Event::Text(format!(
            "exported ONNX {what} (opset {}, {} operators, {} values, {} bytes) to {}: input `{}` float32 N×{c}×{h}×{w} \
             scaled as {}, outputs `{}` and `{}`",
            model::files::onnx::OPSET,
            summary.ops.len(),
            summary.values,
            summary.bytes,
            path.display(),
            model::files::onnx::INPUT,
            scaling.describe(),
            model::files::onnx::LOGITS,
            model::files::onnx::PROBABILITIES,
        )));
        Ok(())
    }

    pub(super) fn load_model(&mut self, path: &Path, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let (net, meta) = model::files::checkpoint::load_model(path, &self.training.device)?;
        let net = self.in_precision(net);
        out(Event::Text(format!(
            "loaded model {}: {} → {} classes, {} parameters, inputs scaled as {}",
            path.display(),
            meta.spec.describe(),
            meta.classes.len(),
            net.param_count(),
            meta.scaling.describe()
        )));
        if !meta.frozen.is_empty() || meta.lora.is_some() {
            out(Event::Text(format!("fine-tuning state: {}", tuning(&net, None))));
        }
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        let state = ModelState::new(net, meta.classes, Some(meta.scaling), name);
        if let Some(d) = &self.dataset {
            if let Err(e) = label_map(&state.classes, d) {
                out(Event::Warning(format!("fit and evaluate will refuse this data: {e}")));
            }
        }
        self.training.model = Some(state);
        Ok(())
    }

    /// `predict PATH`: a picture, or every picture under a folder (its subfolders too, hidden
    /// ones skipped): a table of each file's top 3 classes and a grid of the model's inputs.
    pub(super) fn predict(&mut self, path: &Path, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let scorer = self.scorer("predict")?;
        let files: Vec<PathBuf> = if path.is_dir() {
            let (files, others) = data::folder::files_under(path)?;
            if files.is_empty() {
                return Err(
                    format!("{} holds no .png, .jpg or .jpeg file, in it or its subfolders", path.display()).into()
                );
            }
            if !others.is_empty() {
                out(Event::Text(format!(
                    "skipped {} file{} that {} not .png, .jpg or .jpeg (the first: {})",
                    others.len(),
                    if others.len() == 1 { "" } else { "s" },
                    if others.len() == 1 { "is" } else { "are" },
                    others[0].strip_prefix(path).unwrap_or(&others[0]).display()
                )));
            }
            let most = lang::ranges::GRID_COUNT.max as usize;
            if files.len() > most {
                return Err(format!(
                    "{} holds {} pictures (its subfolders included); `predict` takes at most {most} at once (they \
                     are shown in one grid): predict its subfolders one by one, or `load folder` it and use \
                     `predictions`",
                    path.display(),
                    files.len()
                )
                .into());
            }
            files
        } else {
            vec![path.to_path_buf()]
        };
        for net in &scorer.nets {
            Self::check_training_memory(net.spec(), net.input(), scorer.classes.len(), files.len())?;
        }
        let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        let prepared = Self::in_pool(&self.training.pool, || data::folder::prepare_files(&paths, &|| false))?;
        let pixels: Vec<u8> = prepared.iter().flat_map(|p| p.pixels.iter().copied()).collect();
        let scaling = scorer.scaling.or(self.dataset.as_ref().map(|d| d.scaling)).unwrap_or(PixelScaling::Unit);
        let probs = self.class_probs(&scorer, &pixels, scaling)?;
        let mut table = Table::new(Some("predictions (top 3)".into()), &["file", "1st", "2nd", "3rd", "input"]);
        let mut captions = Vec::new();
        for ((file, p), input) in files.iter().zip(&probs).zip(&prepared) {
            let mut order: Vec<usize> = (0..p.len()).collect();
            order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
            let name = match file.strip_prefix(path) {
                Ok(relative) if !relative.as_os_str().is_empty() => relative.display().to_string(),
                _ => file.file_name().map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().into_owned()),
            };
            let mut row = vec![name];
            for c in 0..3 {
                row.push(order.get(c).map_or("-".into(), |&c| format!("{} ({:.1}%)", scorer.classes[c], 100.0 * p[c])));
            }
            let (w, h) = input.size;
            row.push(if input.as_is { "28×28, taken as is".into() } else { format!("{w}×{h}, preprocessed") });
            captions.push(scorer.classes[order[0]].clone());
            table.row(row);
        }
        out(Event::Table(table));
        let images: Vec<&[u8]> = pixels.chunks_exact(784).collect();
        let columns = (images.len() as f64).sqrt().ceil() as usize;
        let png = plot::image_grid_png(&images, 28, 28, &captions, columns)?;
        out(Event::Image(Image {
            name: "predict".into(),
            title: "inputs after MNIST-style preprocessing, with the predicted class".into(),
            png,
            svg: None,
        }));
        Ok(())
    }

    /// `device cpu|cuda`: where the model computes, from now on. A model already built or
    /// loaded moves there (weights, moving statistics, adapters); the optimizer state of a
    /// `fit` is made on the model's device, and each batch goes there once per step.
    pub(super) fn device(&mut self, kind: DeviceKind, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let device = model::device(kind)?;
        if device.is_cpu() && self.training.precision == Precision::Bf16 && kernels::bf16::units().is_none() {
            return Err(
                "precision bf16 needs bf16 units, which this CPU lacks: say `precision fp32` before `device cpu`"
                    .into(),
            );
        }
        let moved = match self.training.model.as_mut() {
            Some(state) if !state.net.device().same_device(&device) => {
                state.net = state.net.copy_to(&device)?;
                true
            }
            _ => false,
        };
        self.training.device = device;
        out(Event::Text(if moved {
            format!("device {kind}: the model moved there")
        } else {
            format!("device {kind}")
        }));
        Ok(())
    }

    /// `precision [fp32|bf16]`: what the products of the model, and of every model built or
    /// loaded after, compute in; alone, shows it.
    pub(super) fn precision(
        &mut self,
        wanted: Option<Precision>,
        out: &mut dyn FnMut(Event),
    ) -> Result<(), SessionError> {
        let units = kernels::bf16::units();
        let Some(wanted) = wanted else {
            out(Event::Text(describe_precision(self.training.precision, units, self.training.device.is_cpu())));
            return Ok(());
        };
        let on_cpu = self.training.device.is_cpu();
        if wanted == Precision::Bf16 && on_cpu && units.is_none() {
            return Err("this CPU has no bf16 units faster than its f32 ones (AMX, or AVX512-BF16 on a CPU other than Intel's): bf16 would be slower than fp32 here, so the precision stays fp32".into());
        }
        if let Some(state) = self.training.model.as_mut() {
            state.net.set_precision(wanted);
        }
        for member in &mut self.training.ensemble.members {
            member.net.set_precision(wanted);
        }
        self.training.precision = wanted;
        out(Event::Text(describe_precision(wanted, units, on_cpu)));
        Ok(())
    }

    /// `net` set to the session's precision.
    pub(super) fn in_precision(&self, mut net: Network) -> Network {
        net.set_precision(self.training.precision);
        net
    }

    /// `memory [SIZE]`: sets the budget (never above the machine's memory) and shows it.
    pub(super) fn memory(&mut self, size: Option<u64>, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        use crate::budget;
        if let (Some(size), Some(total)) = (size, budget::total_memory()) {
            if size > total {
                return Err(format!(
                    "a budget of {} is more than this machine's memory ({})",
                    budget::bytes(size),
                    budget::bytes(total)
                )
                .into());
            }
        }
        let bytes = size.map_or_else(budget::limit, budget::set_limit);
        let available = budget::available_memory().map(|a| format!(" ({} available now)", budget::bytes(a)));
        out(Event::Text(format!("memory budget {}{}", budget::bytes(bytes), available.unwrap_or_default())));
        Ok(())
    }

    /// `threads N`: the worker threads training and augmentation run on.
    pub(super) fn threads(&mut self, n: usize, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let pool = model::thread_pool(n)?;
        self.training.pool = Some(Arc::new(pool));
        out(Event::Text(format!("{n} worker threads for training and augmentation")));
        Ok(())
    }
}

/// What `precision` says of `precision`, with the CPU's bf16 `units`, for a model on the CPU
/// (`on_cpu`) or on CUDA.
fn describe_precision(precision: Precision, units: Option<kernels::bf16::Units>, on_cpu: bool) -> String {
    let units_text = units.map_or_else(|| "none".to_string(), |u| u.to_string());
    let kept = "weights, optimizer, batch norm, softmax and loss stay f32";
    match (precision, units, on_cpu) {
        (Precision::Bf16, _, false) => format!(
            "precision bf16: convolutions and dense layers cast their operands to candle's bf16 tensors on the GPU, the results back to f32; {kept}"
        ),
        (Precision::Bf16, Some(u), true) => format!(
            "precision bf16: convolutions and dense layers multiply bf16 operands on {u}, summing in f32; {kept}"
        ),
        (Precision::Bf16, None, true) => {
            "precision bf16, but this CPU has no bf16 units: the products run in f32".to_string()
        }
        (Precision::F32, ..) => format!("precision fp32: f32 throughout (this CPU's bf16 units: {units_text})"),
    }
}

/// What [`Session::training_inputs`] gathers for a statement that trains.
pub(super) struct TrainingInputs<'a> {
    dataset: &'a Dataset,
    pub(super) state: &'a ModelState,
    labels: model::LabelMap,
    train: &'a Split,
}

/// The progress event of one training event for `task`: the batches done of the epoch's, the
/// running loss and accuracy, the images and the time so far; an epoch's end is its last event
/// (all `total_batches`, on `images` training images).
pub(super) fn train_progress(event: &TrainEvent, task: Task, total_batches: usize, images: usize) -> Progress {
    let (done, loss, accuracy, images, seconds, finished) = match event {
        TrainEvent::Batch { done, loss, accuracy, images, seconds, .. } => {
            (*done, *loss, *accuracy, *images, *seconds, false)
        }
        TrainEvent::Epoch(s) => (total_batches, s.loss, s.accuracy, images, s.seconds, true),
    };
    Progress {
        task,
        done: done as u64,
        total: total_batches as u64,
        message: format!("loss: {loss:.4} - accuracy: {accuracy:.4}"),
        elapsed: std::time::Duration::try_from_secs_f64(seconds).unwrap_or_default(),
        images: images as u64,
        finished,
    }
}

/// Renders one training event as session events: a progress update per batch; at an epoch's
/// end the finished bar and the Keras-style epoch line.
fn emit_train_event(
    event: TrainEvent,
    run: u64,
    epochs: usize,
    total_batches: usize,
    images: usize,
    out: &mut dyn FnMut(Event),
) {
    let epoch = match &event {
        TrainEvent::Batch { epoch, .. } => *epoch,
        TrainEvent::Epoch(s) => s.epoch,
    };
    let task = Task::FitEpoch { run, epoch: epoch as u64, epochs: epochs as u64 };
    out(Event::Progress(train_progress(&event, task, total_batches, images)));
    match event {
        TrainEvent::Batch { .. } => {}
        TrainEvent::Epoch(s) => {
            let val = match (s.val_loss, s.val_accuracy) {
                (Some(l), Some(a)) => format!(" - val_loss: {l:.4} - val_accuracy: {a:.4}"),
                _ => String::new(),
            };
            out(Event::Text(format!(
                "Epoch {}/{epochs} - {total_batches}/{total_batches} - {:.1}s - loss: {:.4} - accuracy: {:.4}{val} - {:.0} images/s",
                s.epoch, s.seconds, s.loss, s.accuracy, s.images_per_sec
            )));
        }
    }
}

use crate::model::training::train::argmax;

/// The line that opens a `fit` of `net` under `config`: which layers train, how many parameters
/// of all, and whether their moving average is what validation sees and `fit` keeps; returns
/// what trains and the trainable count, for the run's record.
fn announce_training(
    net: &Network,
    body_lr: Option<f64>,
    config: &TrainConfig,
    out: &mut dyn FnMut(Event),
) -> (String, usize) {
    let trained = tuning(net, body_lr);
    let trainable: usize = net.trainable_vars().iter().map(|v| v.elem_count()).sum();
    let average =
        config.ema.map_or(String::new(), |d| format!("; their moving average (ema {d}) is validated and kept"));
    out(Event::Text(format!("training {trained}: {trainable} of {} parameters{average}", net.param_count())));
    if net.precision() != Precision::F32 {
        out(Event::Text(describe_precision(net.precision(), kernels::bf16::units(), net.device().is_cpu())));
    }
    (trained, trainable)
}

/// What `compare`'s trained column adds to the layers trained: `, ema D` when the weights were
/// averaged, `, bf16` when the products ran in bf16.
fn trained_extras(config: &TrainConfig, precision: Precision) -> String {
    let averaged = config.ema.map_or(String::new(), |d| format!(", ema {d}"));
    match precision {
        Precision::F32 => averaged,
        other => format!("{averaged}, {other}"),
    }
}

/// What `fit` says when it ends: the run's notes, then the test accuracy recorded for `compare`.
fn report_run(history: &History, evaluation: Option<&Evaluation>, out: &mut dyn FnMut(Event)) {
    for note in &history.notes {
        out(Event::Text(note.clone()));
    }
    if let Some(e) = evaluation {
        out(Event::Text(format!("test accuracy after fit: {:.4} (recorded for `compare`)", e.accuracy)));
    }
}
