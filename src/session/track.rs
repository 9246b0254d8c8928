//! Session arms of tracking: the checkpoints of `fit N checkpoint DIR`, `resume DIR`, and
//! `log tensorboard DIR` / `log off`; the [`Tracker`] a training run reports to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::classes::label_map;
use super::train::ModelState;
use super::{Event, Session, SessionError};
use crate::data::{PixelScaling, SplitKind};
use crate::model::files::resume;
use crate::model::files::tensorboard::EventWriter;
use crate::model::{self, Evaluation, Network, RunInfo, TrainConfig, TrainData, TrainEvent};
use crate::plot;
use crate::write::Place;

/// What a training run reports to: its checkpoints and its TensorBoard run, each if asked for.
pub(super) struct Tracker {
    checkpoint: Option<Checkpointing>,
    board: Option<Board>,
}

/// Where and what a run checkpoints.
struct Checkpointing {
    dir: PathBuf,
    classes: Vec<String>,
    scaling: PixelScaling,
    info: RunInfo,
}

/// A TensorBoard run being written.
struct Board {
    writer: EventWriter,
    /// The first error writing the run, reported when training ends (logging never stops a
    /// run).
    error: Option<String>,
}

impl Board {
    /// Keeps the first error of `result`.
    fn note(&mut self, result: model::Result<()>) {
        if let Err(e) = result {
            self.error.get_or_insert(e.to_string());
        }
    }

    /// The epoch's scalars, and histograms of every stored tensor and of each gradient of the
    /// epoch's last step, at the epoch's number.
    fn epoch(&mut self, net: &Network, end: &model::EpochEnd<'_>) -> model::Result<()> {
        let Some(stats) = end.state.history.epochs.last() else { return Ok(()) };
        let step = stats.epoch as i64;
        let w = &mut self.writer;
        w.scalar("loss", step, stats.loss)?;
        w.scalar("accuracy", step, stats.accuracy)?;
        if let (Some(loss), Some(accuracy)) = (stats.val_loss, stats.val_accuracy) {
            w.scalar("val_loss", step, loss)?;
            w.scalar("val_accuracy", step, accuracy)?;
        }
        w.scalar("learning_rate", step, stats.lr as f32)?;
        w.scalar("images_per_sec", step, stats.images_per_sec as f32)?;
        for (name, t) in net.snapshot()? {
            w.histogram(&format!("weights/{name}"), step, &t.flatten_all()?.to_vec1::<f32>()?)?;
        }
        for (name, g) in end.grads.into_iter().flatten() {
            w.histogram(&format!("gradients/{name}"), step, &g.flatten_all()?.to_vec1::<f32>()?)?;
        }
        Ok(())
    }
}

impl Tracker {
    /// Whether the run must keep each epoch's last gradients (for the histograms).
    pub(super) fn wants_grads(&self) -> bool {
        self.board.is_some()
    }

    /// A training event: each progress report's running loss, at the run's batch number.
    pub(super) fn on_event(&mut self, event: &TrainEvent) {
        if let (Some(board), TrainEvent::Batch { epoch, done, total, loss, .. }) = (&mut self.board, event) {
            let step = ((epoch - 1) * total + done) as i64;
            let result = board.writer.scalar("batch/loss", step, *loss);
            board.note(result);
        }
    }

    /// A finished epoch: its TensorBoard records and its checkpoint (whose failure ends the run).
    pub(super) fn on_epoch(&mut self, net: &Network, end: &model::EpochEnd<'_>) -> model::Result<()> {
        if let Some(board) = &mut self.board {
            let result = board.epoch(net, end);
            board.note(result);
        }
        if let Some(c) = &self.checkpoint {
            let parts = (c.classes.as_slice(), c.scaling, &BTreeMap::new());
            resume::write_checkpoint(&c.dir, net, parts, (&c.info, end.state), end.kept)?;
        }
        Ok(())
    }

    /// The end of the run after `epochs` epochs: the test confusion matrix and worst mistakes
    /// in the TensorBoard run, and a warning if any of it could not be written.
    pub(super) fn finish(
        self,
        session: &Session,
        epochs: usize,
        test: Option<&Evaluation>,
        out: &mut dyn FnMut(Event),
    ) {
        let Some(mut board) = self.board else { return };
        let step = epochs as i64;
        if let (Some(e), Ok(state)) = (test, session.model_for("fit")) {
            let title = format!(
                "{}\nconfusion matrix on test after epoch {epochs}: accuracy {:.2}%",
                session.model_title(state),
                100.0 * e.accuracy
            );
            let result = plot::confusion_png(&e.confusion, &state.classes, &title)
                .map_err(|e| model::ModelError::Data(e.to_string()))
                .and_then(|png| board.writer.image("test/confusion", step, &png));
            board.note(result);
            match session.mistakes_png(16) {
                Ok(Some((png, _))) => {
                    let result = board.writer.image("test/mistakes", step, &png);
                    board.note(result);
                }
                Ok(None) => {}
                Err(e) => board.note(Err(model::ModelError::Data(e.to_string()))),
            }
        }
        if let Some(e) = board.error {
            out(Event::Warning(format!("TensorBoard run {} is incomplete: {e}", board.writer.path().display())));
        }
    }
}

/// A folder name for a TensorBoard run of `spec` started now: the layers (letters, digits,
/// `.` and `-`; spaces as `_`) and the UTC time.
fn run_name(spec: &str) -> String {
    let layers: String = spec
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
        .take(60)
        .collect();
    format!("{layers}-{}", chrono::Utc::now().format("%Y%m%d-%H%M%S"))
}

/// The run's `statements` text: the session's statements so far, as a Markdown code block.
fn statements_markdown(statements: &[String], current: &str) -> String {
    let mut text = String::from("```\n");
    for s in statements.iter().map(String::as_str).chain([current]) {
        text.push_str(s);
        text.push('\n');
    }
    text.push_str("```");
    text
}

/// Refuses a checkpoint folder the write path would refuse (or a checkpoint file in it), so a
/// run stops before it starts rather than after its first epoch.
pub(super) fn check_checkpoint_dir(dir: &Path) -> Result<(), SessionError> {
    crate::write::folder_target(dir, Place::OutsideCache)?;
    for name in [resume::LAST, resume::BEST] {
        crate::write::file_target(&dir.join(name), Place::OutsideCache)?;
    }
    Ok(())
}

impl Session {
    /// `log tensorboard DIR` (`Some`) or `log off` (`None`).
    pub(super) fn log(&mut self, dir: Option<&Path>, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        match dir {
            Some(dir) => {
                crate::write::create_folder(dir, Place::OutsideCache)?;
                out(Event::Text(format!(
                    "TensorBoard: each fit writes a run into {} (view with `tensorboard --logdir {}`)",
                    dir.display(),
                    dir.display()
                )));
                self.log_dir = Some(dir.to_path_buf());
            }
            None => {
                out(Event::Text("TensorBoard logging off".into()));
                self.log_dir = None;
            }
        }
        Ok(())
    }

    /// What a run records of the session besides its settings: the augmentation, and the
    /// worker threads (results are bit-identical only on the same count).
    fn run_settings(&self) -> BTreeMap<String, String> {
        let augment = self.augmentation.as_ref().map_or("none".to_string(), |a| a.pipeline.describe());
        let threads = self.training.pool.as_ref().map_or_else(rayon::current_num_threads, |p| p.current_num_threads());
        BTreeMap::from([
            ("augment".to_string(), augment),
            ("threads".to_string(), threads.to_string()),
            ("precision".to_string(), self.training.precision.to_string()),
        ])
    }

    /// The tracker of a run of `config` on `data`: checkpoints into `checkpoint`, a
    /// TensorBoard run when `log tensorboard` is on.
    pub(super) fn tracker(
        &self,
        config: &TrainConfig,
        data: &TrainData<'_>,
        checkpoint: Option<&Path>,
        out: &mut dyn FnMut(Event),
    ) -> Result<Tracker, SessionError> {
        let state = self.model_for("fit")?;
        let checkpoint = match checkpoint {
            None => None,
            Some(dir) => {
                check_checkpoint_dir(dir)?;
                let info = RunInfo {
                    config: config.clone(),
                    data: resume::data_fingerprint(data),
                    settings: self.run_settings(),
                };
                out(Event::Text(format!(
                    "checkpoints after every epoch: {}, and {} for the epoch whose weights fit keeps",
                    dir.join(resume::LAST).display(),
                    dir.join(resume::BEST).display()
                )));
                let (classes, scaling) = (state.classes.clone(), data.format.scaling);
                Some(Checkpointing { dir: dir.to_path_buf(), classes, scaling, info })
            }
        };
        let board = match &self.log_dir {
            Some(dir) => Some(self.open_board(dir, state, data, out)?),
            None => None,
        };
        Ok(Tracker { checkpoint, board })
    }

    /// Starts a TensorBoard run in `dir` for `state`'s model: the model and the statements as
    /// text, and a grid of the first 16 training images.
    fn open_board(
        &self,
        dir: &Path,
        state: &ModelState,
        data: &TrainData<'_>,
        out: &mut dyn FnMut(Event),
    ) -> Result<Board, SessionError> {
        let base = run_name(&state.net.spec().describe());
        let mut name = base.clone();
        for n in 2.. {
            if !dir.join(&name).exists() {
                break;
            }
            name = format!("{base}-{n}");
        }
        let mut writer = EventWriter::create(&dir.join(&name))?;
        let summary = state.net.summary()?;
        let mut model_text = format!(
            "`{}` → {} classes\n\n| layer | output shape | params |\n|---|---|---|\n",
            state.net.spec().describe(),
            state.classes.len()
        );
        for row in &summary.rows {
            model_text.push_str(&format!("| {} | {} | {} |\n", row.layer, row.output_shape, row.params));
        }
        writer.text("model", 0, &model_text)?;
        writer.text("statements", 0, &statements_markdown(self.statements(), &self.current_statement))?;
        let train = data.train;
        let (rows, cols) = (data.format.rows, data.format.cols);
        let shown: Vec<usize> = (0..train.len().min(16)).collect();
        let images: Vec<&[u8]> = shown.iter().map(|&i| train.image(i, rows * cols)).collect();
        let classes = self.dataset.as_ref().map(|d| d.classes.clone()).unwrap_or_default();
        let captions: Vec<String> = shown
            .iter()
            .map(|&i| classes.get(train.labels[i] as usize).cloned().unwrap_or_else(|| train.labels[i].to_string()))
            .collect();
        let png = plot::image_grid_png(&images, rows, cols, &captions, 4)?;
        writer.image("train/samples", 0, &png)?;
        out(Event::Text(format!("TensorBoard run {name}: {}", writer.path().display())));
        Ok(Board { writer, error: None })
    }

    /// `resume DIR`: continues the run checkpointed in DIR on the session's data.
    pub(super) fn resume(&mut self, dir: &Path, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let path = dir.join(resume::LAST);
        let dataset = self.dataset.as_ref().ok_or("resume needs the run's data: load and prepare it as before")?;
        let (net, meta, ck) = model::load_checkpoint(&path, &self.training.device)?;
        let net = self.in_precision(net);
        let labels = label_map(&meta.classes, dataset)?;
        if labels != ck.info.config.labels {
            return Err(format!(
                "the model's classes map to the data's differently than in the run in {}",
                dir.display()
            )
            .into());
        }
        let train = dataset.split(SplitKind::Train).filter(|s| !s.is_empty()).ok_or("resume needs a train split")?;
        let val = dataset.split(SplitKind::Val).filter(|s| !s.is_empty());
        let data = resume::data_fingerprint(&TrainData::new(train, val, dataset.format()));
        let now = RunInfo { config: ck.info.config.clone(), data, settings: self.run_settings() };
        same_run(&ck.info, &now, dir)?;
        let threads = |i: &RunInfo| i.settings.get("threads").cloned().unwrap_or_default();
        if threads(&ck.info) != threads(&now) {
            out(Event::Warning(format!(
                "the run trained on {} worker threads, this session has {}: it resumes, but not bit-identically (`threads N` sets them)",
                threads(&ck.info),
                threads(&now)
            )));
        }
        let (done, epochs) = (ck.state.epochs_done, ck.info.config.epochs);
        let stopped_early = matches!(ck.state.history.stop, model::StopReason::EarlyStopped { .. });
        if done >= epochs || stopped_early {
            out(Event::Text(format!(
                "nothing to resume: the run in {} finished ({done} of {epochs} epochs); `load model {}` gives the weights it kept",
                dir.display(),
                dir.join(resume::BEST).display()
            )));
            return Ok(());
        }
        out(Event::Text(format!("resuming {}: {done} of {epochs} epochs done", path.display())));
        let origin = format!("resumed {}", dir.display());
        self.training.model = Some(ModelState::new(net, meta.classes, Some(meta.scaling), origin));
        let config = ck.info.config.clone();
        self.train_run(config, Some(ck), Some(dir), out)
    }
}

/// Refuses to resume the run `saved` (in `dir`) as `now` unless its data and settings match.
fn same_run(saved: &RunInfo, now: &RunInfo, dir: &Path) -> Result<(), SessionError> {
    if saved.data != now.data {
        return Err(format!(
            "the data differ from those of the run in {}: load and prepare the same data (the same statements, seed and split) before `resume`",
            dir.display()
        )
        .into());
    }
    let show = |s: &BTreeMap<String, String>| s.get("augment").cloned().unwrap_or_default();
    if show(&saved.settings) != show(&now.settings) {
        return Err(format!(
            "the run in {} trained with augmentation `{}`, the session has `{}`: set the same `augment` before `resume`",
            dir.display(),
            show(&saved.settings),
            show(&now.settings)
        )
        .into());
    }
    // Checkpoints written before `precision` existed trained in fp32.
    let precision = |s: &BTreeMap<String, String>| s.get("precision").cloned().unwrap_or_else(|| "fp32".into());
    if precision(&saved.settings) != precision(&now.settings) {
        return Err(format!(
            "the run in {} trained in precision {}, the session has {}: say `precision {}` before `resume`",
            dir.display(),
            precision(&saved.settings),
            precision(&now.settings),
            precision(&saved.settings)
        )
        .into());
    }
    Ok(())
}
