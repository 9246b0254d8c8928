//! Session arms of `tune` (a seeded random search, [`crate::model::training::tune`]) and `tune apply`.
//!
//! Each trial is a fresh model from the session's seed with the drawn settings (the others as
//! the session has them), trained on the train split without augmentation and scored on the
//! validation split after every epoch; the test split is never read. Trials run one after
//! another, each with all the session's threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::classes::label_map;
use super::runs::{data_name, tuning, RunRecord};
use super::{Event, Image, Session, SessionError, Table, Task};
use crate::data::{ImageFormat, Split, SplitKind};
use crate::model::training::tune::{self, Halving, Search, SearchSpace, Trial, TrialResult, Values, Verdict};
use crate::model::{self, ModelSpec, Network, Optimizer, StopReason, TrainConfig, TrainEvent};
use crate::plot::{self, SettingColumn, SettingValue};

/// The best trial of the last `tune`, as `tune apply` applies it.
pub(super) struct Tuned {
    /// The statements that set its settings, in the order they are applied.
    pub(super) statements: Vec<String>,
}

/// What every trial of a search shares: the data, the frame of its models, the base settings.
struct Plan<'a> {
    train: &'a Split,
    val: &'a Split,
    format: ImageFormat,
    input: (usize, usize, usize),
    classes: usize,
    /// The session's training settings (the epochs of a trial, its label map).
    config: TrainConfig,
    /// The architecture of trials that draw none: the current model's.
    base_model: Option<ModelSpec>,
    /// The data, as `compare` names it.
    data: String,
    /// The `compare` number of the first trial.
    first_run: u64,
}

/// One trial's settings in full: the drawn ones over the session's.
struct Settings<'a> {
    optimizer: Optimizer,
    batch: usize,
    smoothing: f32,
    model: &'a ModelSpec,
}

impl Plan<'_> {
    fn settings<'s>(&'s self, trial: &Trial, space: &'s SearchSpace) -> Settings<'s> {
        let model = match trial.model {
            Some(i) => &space.models[i],
            None => self.base_model.as_ref().expect("checked by tune_plan"),
        };
        Settings {
            optimizer: trial.optimizer(self.config.optimizer),
            batch: trial.batch.unwrap_or(self.config.batch_size),
            smoothing: trial.smoothing.map_or(self.config.label_smoothing, |s| s as f32),
            model,
        }
    }
}

/// `adam`, `adamw` or `sgd`.
fn optimizer_name(o: Optimizer) -> &'static str {
    match o {
        Optimizer::Adam { .. } => "adam",
        Optimizer::AdamW { .. } => "adamw",
        Optimizer::Sgd { .. } => "sgd",
    }
}

/// The words of a model's layers, as `model` reads them.
fn model_words(spec: &ModelSpec) -> String {
    let statement = crate::lang::model_statement(spec);
    statement.strip_prefix("model ").unwrap_or(&statement).to_string()
}

/// The searched settings of `trial`, by name, as the table shows them.
fn drawn(trial: &Trial, space: &SearchSpace) -> Vec<(&'static str, String)> {
    let mut cells = Vec::new();
    if let Some(o) = trial.optimizer {
        cells.push(("optimizer", optimizer_name(o).to_string()));
    }
    if let Some(lr) = trial.lr {
        cells.push(("lr", format!("{lr}")));
    }
    if let Some(b) = trial.batch {
        cells.push(("batch", b.to_string()));
    }
    if let Some(s) = trial.smoothing {
        cells.push(("smoothing", format!("{s}")));
    }
    if let Some(m) = trial.model {
        cells.push(("model", model_words(&space.models[m])));
    }
    cells
}

/// The statements that give a session `settings`.
fn statements(settings: &Settings<'_>) -> Vec<String> {
    let optimizer = match settings.optimizer {
        Optimizer::Adam { lr } => format!("optimizer adam lr {lr}"),
        Optimizer::AdamW { lr, weight_decay } => format!("optimizer adamw lr {lr} decay {weight_decay}"),
        Optimizer::Sgd { lr, momentum } => format!("optimizer sgd lr {lr} momentum {momentum}"),
    };
    vec![
        optimizer,
        format!("loss crossentropy smoothing {}", settings.smoothing),
        format!("batch {}", settings.batch),
        crate::lang::model_statement(settings.model),
    ]
}

/// `98.12%`, or `-` for a missing value.
fn pct(x: Option<f32>) -> String {
    x.filter(|x| x.is_finite()).map_or("-".into(), |x| format!("{:.2}%", 100.0 * x))
}

/// How a trial ended, in words.
fn status(result: &TrialResult, stop: &StopReason, epochs: usize) -> String {
    match (result.pruned_at, stop) {
        (Some(rung), _) => format!("pruned at {rung}"),
        (None, StopReason::NonFiniteLoss { epoch, .. }) => format!("loss diverged in epoch {epoch}"),
        _ if result.interrupted => "interrupted".into(),
        _ if result.val_accuracy.len() == epochs => "done".into(),
        _ => "stopped".into(),
    }
}

impl Session {
    /// `tune ...`: the search, a line per trial, the sorted table, the plot and the best settings.
    pub(super) fn tune(&mut self, search: &Search, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        if let Some(problem) = search.space.problem() {
            return Err(problem.into());
        }
        let plan = self.tune_plan(search)?;
        if self.augmentation.is_some() {
            out(Event::Warning("trials train without the augmentation (as `find lr` does); `fit` uses it".into()));
        }
        let seed = search.seed.unwrap_or(self.seed);
        let trials = search.space.sample(search.trials, seed);
        let rungs = tune::rungs(search.epochs);
        let pruning = match (search.prune, rungs.is_empty()) {
            (true, false) => {
                let rungs: Vec<String> = rungs.iter().map(|r| r.to_string()).collect();
                let epochs = if rungs.len() == 1 { "epoch" } else { "epochs" };
                format!("; pruning at {epochs} {} (the top third of each rung goes on)", rungs.join(", "))
            }
            (true, true) => "; no rung below the epoch budget, so nothing is pruned".into(),
            (false, _) => String::new(),
        };
        out(Event::Text(format!(
            "tune: {} trials of up to {} epochs, {} train and {} validation images, sampler seed {seed}, models from seed {}{pruning}",
            search.trials,
            search.epochs,
            plan.train.len(),
            plan.val.len(),
            self.seed
        )));
        let started = Instant::now();
        let mut halving = Halving::new(search.epochs);
        let (mut results, mut records, mut stops) = (Vec::new(), Vec::new(), Vec::new());
        for (i, trial) in trials.iter().enumerate() {
            if self.interrupt.load(Ordering::SeqCst) {
                break;
            }
            let (result, record, stop) = self.run_trial(&plan, search, i, trial, &mut halving, out)?;
            out(Event::Text(trial_line(i, search, &result, &stop)));
            let interrupted = result.interrupted;
            results.push(result);
            records.push(record);
            stops.push(stop);
            if interrupted {
                break;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let best = self.tune_report(&plan, search, &results, &stops, seconds, out)?;
        self.tuned = best.map(|statements| Tuned { statements });
        self.training.runs.extend(records);
        Ok(())
    }

    /// What every trial needs, or why the search cannot run: data with train and validation
    /// splits, an architecture for every trial, memory for each model at each batch size.
    fn tune_plan(&self, search: &Search) -> Result<Plan<'_>, SessionError> {
        let dataset = self.dataset.as_ref().ok_or("tune needs data: run `load mnist` first")?;
        let train =
            dataset.split(SplitKind::Train).filter(|s| !s.is_empty()).ok_or("tune needs a non-empty train split")?;
        let val = dataset.split(SplitKind::Val).filter(|s| !s.is_empty()).ok_or(
            "tune scores every trial on the validation split, and there is none: run `split val 10` (or \
             `split 70/15/15`) first (the test split is never used to choose)",
        )?;
        let (input, classes) = self.model_frame();
        let labels = label_map(&classes, dataset)?;
        let base_model = self.training.model.as_ref().map(|s| s.net.spec().clone());
        let space = &search.space;
        if space.models.is_empty() && base_model.is_none() {
            return Err("tune needs an architecture: build one first (e.g. `model seed-cnn`) or give \
                        `model \"conv32 pool dense128\" | \"seed-cnn\"`"
                .into());
        }
        let config = self.train_config(search.epochs, None, labels);
        let models: Vec<&ModelSpec> =
            if space.models.is_empty() { base_model.iter().collect() } else { space.models.iter().collect() };
        let batches = if space.batch.is_empty() { vec![config.batch_size] } else { space.batch.clone() };
        for spec in &models {
            for &batch in &batches {
                Self::check_training_memory(spec, input, classes.len(), batch)?;
            }
        }
        Ok(Plan {
            train,
            val,
            format: dataset.format(),
            input,
            classes: classes.len(),
            config,
            base_model,
            data: format!("{}, {} train", data_name(dataset), train.len()),
            first_run: self.training.runs.len() as u64 + 1,
        })
    }

    /// Trains trial `index` and scores it after every epoch; at a rung `halving` may stop it.
    fn run_trial(
        &self,
        plan: &Plan<'_>,
        search: &Search,
        index: usize,
        trial: &Trial,
        halving: &mut Halving,
        out: &mut dyn FnMut(Event),
    ) -> Result<(TrialResult, RunRecord, StopReason), SessionError> {
        let settings = plan.settings(trial, &search.space);
        let net = self.in_precision(Network::new(
            settings.model,
            plan.input,
            plan.classes,
            &self.training.device,
            self.seed,
        )?);
        let config = TrainConfig {
            optimizer: settings.optimizer,
            batch_size: settings.batch,
            label_smoothing: settings.smoothing,
            ..plan.config.clone()
        };
        let (stop, user_stop) = (AtomicBool::new(false), Arc::clone(&self.interrupt));
        let (mut val, mut pruned_at) = (Vec::new(), None);
        let (run, epochs, prune) = (plan.first_run + index as u64, search.epochs as u64, search.prune);
        let batches = plan.train.len().div_ceil(settings.batch);
        let data = model::TrainData::new(plan.train, Some(plan.val), plan.format);
        let started = Instant::now();
        let history = Self::in_pool_with_events(&self.training.pool, out, |out| {
            let mut on_event = |event: TrainEvent| {
                if user_stop.load(Ordering::Relaxed) {
                    stop.store(true, Ordering::Relaxed);
                }
                let epoch = match &event {
                    TrainEvent::Batch { epoch, .. } => *epoch,
                    TrainEvent::Epoch(s) => s.epoch,
                } as u64;
                let (trial, trials) = (index as u64 + 1, search.trials as u64);
                let task = Task::TrialEpoch { run, trial, trials, epoch, epochs };
                out(Event::Progress(super::train::train_progress(&event, task, batches, plan.train.len())));
                if let TrainEvent::Epoch(s) = event {
                    let accuracy = s.val_accuracy.unwrap_or(f32::NAN);
                    val.push(accuracy);
                    if prune && halving.report(s.epoch, accuracy) == Verdict::Prune {
                        pruned_at = Some(s.epoch);
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            };
            model::fit(&net, data, &config, &stop, &mut on_event)
        })?;
        let seconds = started.elapsed().as_secs_f64();
        let interrupted = pruned_at.is_none() && self.interrupt.load(Ordering::SeqCst) && val.len() < search.epochs;
        let result = TrialResult { trial: trial.clone(), val_accuracy: val, pruned_at, interrupted, seconds };
        let drawn: Vec<String> = drawn(trial, &search.space).into_iter().map(|(k, v)| format!("{k} {v}")).collect();
        let record = RunRecord {
            model: settings.model.describe(),
            data: plan.data.clone(),
            tuning: format!(
                "{}, tune trial {}/{}: {}",
                tuning(&net, config.body_lr),
                index + 1,
                search.trials,
                drawn.join(", ")
            ),
            trainable: net.trainable_vars().iter().map(|v| v.elem_count()).sum(),
            epochs: history.epochs.len(),
            seconds,
            best_val: result.best(),
            test: None,
        };
        Ok((result, record, history.stop))
    }

    /// The end of a search: the trials by validation accuracy, the compute pruning saved, the
    /// plot and the best trial's settings as statements (returned for `tune apply`).
    fn tune_report(
        &self,
        plan: &Plan<'_>,
        search: &Search,
        results: &[TrialResult],
        stops: &[StopReason],
        seconds: f64,
        out: &mut dyn FnMut(Event),
    ) -> Result<Option<Vec<String>>, SessionError> {
        if results.is_empty() {
            out(Event::Text("tune: interrupted before the first trial".into()));
            return Ok(None);
        }
        out(Event::Table(results_table(search, results, stops)));
        let (run, full) = tune::epochs_saved(results, search.epochs);
        let saved = if search.prune {
            format!(", {:.0}% saved by pruning", 100.0 * (1.0 - run as f64 / full as f64))
        } else {
            String::new()
        };
        out(Event::Text(format!(
            "tune: {} trials in {seconds:.1} s, {run} of {full} epochs run{saved}",
            results.len()
        )));
        let figure = figure(plan, search, results);
        if let Ok(png) = plot::tune_png(&figure) {
            let title = "validation accuracy against each searched setting, and the trials' curves".to_string();
            let svg = plot::tune_svg(&figure).ok();
            out(Event::Image(Image { name: "tune".into(), title, png, svg }));
        }
        let Some(best) = tune::best(results) else {
            out(Event::Text("no trial finished an epoch: there is nothing to apply".into()));
            return Ok(None);
        };
        let settings = plan.settings(&results[best].trial, &search.space);
        let statements = statements(&settings);
        out(Event::Text(format!(
            "best: trial {} (best val accuracy {}); its settings, which `tune apply` runs:\n{}",
            best + 1,
            pct(results[best].best()),
            statements.iter().map(|s| format!("  {s}")).collect::<Vec<_>>().join("\n")
        )));
        Ok(Some(statements))
    }

    /// `tune apply`: runs the best trial's statements in this session.
    pub(super) fn tune_apply(&mut self, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let statements = match &self.tuned {
            Some(t) => t.statements.clone(),
            None => return Err("there is no search to apply: run `tune ...` first (one that finished a trial)".into()),
        };
        for text in &statements {
            let statement = crate::lang::parse_line(text, 1)
                .map_err(|e| SessionError::Usage(format!("`{text}` does not parse: {e}")))?
                .ok_or_else(|| SessionError::Usage(format!("`{text}` is empty")))?;
            out(Event::Text(format!("tune apply: {text}")));
            self.dispatch(&statement.kind, out)?;
        }
        Ok(())
    }
}

/// The live line of one finished trial.
fn trial_line(index: usize, search: &Search, result: &TrialResult, stop: &StopReason) -> String {
    let drawn: Vec<String> = drawn(&result.trial, &search.space).into_iter().map(|(k, v)| format!("{k} {v}")).collect();
    let curve: Vec<String> = result.val_accuracy.iter().map(|&a| pct(Some(a))).collect();
    format!(
        "trial {}/{}: {} | val accuracy by epoch {} | {} epochs, {:.1} s, {}",
        index + 1,
        search.trials,
        drawn.join(", "),
        if curve.is_empty() { "-".to_string() } else { curve.join(" ") },
        result.val_accuracy.len(),
        result.seconds,
        status(result, stop, search.epochs)
    )
}

/// The epochs the table shows a validation accuracy at: the rungs and the last epoch.
fn checkpoints(epochs: usize) -> Vec<usize> {
    let mut at = tune::rungs(epochs);
    at.push(epochs);
    at
}

/// The trials, best first: settings, validation accuracy at each rung, epochs, seconds, status.
fn results_table(search: &Search, results: &[TrialResult], stops: &[StopReason]) -> Table {
    let names: Vec<&str> = drawn(&results[0].trial, &search.space).into_iter().map(|(k, _)| k).collect();
    let at = checkpoints(search.epochs);
    let mut header: Vec<String> = vec!["rank".into(), "trial".into()];
    header.extend(names.iter().map(|n| n.to_string()));
    header.extend(at.iter().map(|e| format!("val acc @{e}")));
    header.extend(["best val acc", "epochs", "seconds", "status"].map(String::from));
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let title = format!("tune: {} trials by best validation accuracy", results.len());
    let mut table = Table::new(Some(title), &header);
    for (rank, i) in tune::ranking(results).into_iter().enumerate() {
        let r = &results[i];
        let mut row = vec![(rank + 1).to_string(), (i + 1).to_string()];
        row.extend(drawn(&r.trial, &search.space).into_iter().map(|(_, v)| v));
        row.extend(at.iter().map(|&e| pct(r.val_accuracy.get(e - 1).copied())));
        row.push(pct(r.best()));
        row.push(r.val_accuracy.len().to_string());
        row.push(format!("{:.1}", r.seconds));
        row.push(status(r, &stops[i], search.epochs));
        table.row(row);
    }
    table
}

/// The plot's data: each searched setting's values and the trials' curves, under a title
/// naming the search, its model and data, and its best trial.
fn figure(plan: &Plan<'_>, search: &Search, results: &[TrialResult]) -> plot::TuneFigure {
    let space = &search.space;
    let mut settings: Vec<SettingColumn> = Vec::new();
    let column = |name: &str, log: bool, value: &dyn Fn(&Trial) -> SettingValue| SettingColumn {
        name: name.to_string(),
        values: results.iter().map(|r| value(&r.trial)).collect(),
        log,
    };
    let log = |v: &Option<Values>| matches!(v, Some(Values::Range { log: true, .. }));
    if !space.optimizer.is_empty() {
        let name = |t: &Trial| SettingValue::Choice(t.optimizer.map_or("", optimizer_name).to_string());
        settings.push(column("optimizer", false, &name));
    }
    if space.lr.is_some() {
        settings.push(column("lr", true, &|t| SettingValue::Number(t.lr.unwrap_or(f64::NAN))));
    }
    if !space.batch.is_empty() {
        settings.push(column("batch", false, &|t| SettingValue::Number(t.batch.unwrap_or(0) as f64)));
    }
    if space.smoothing.is_some() {
        let smoothing = |t: &Trial| SettingValue::Number(t.smoothing.unwrap_or(f64::NAN));
        settings.push(column("smoothing", log(&space.smoothing), &smoothing));
    }
    if !space.models.is_empty() {
        let model = |t: &Trial| SettingValue::Choice(t.model.map_or(String::new(), |m| model_words(&space.models[m])));
        settings.push(column("model", false, &model));
    }
    let model = match &plan.base_model {
        _ if !space.models.is_empty() => format!("{} architectures", space.models.len()),
        Some(spec) => spec.describe(),
        None => "the session's model".to_string(),
    };
    let best = tune::best(results);
    let pruned = results.iter().filter(|r| r.pruned_at.is_some()).count();
    let mut title = format!(
        "tune: {} trials of {} epochs ({pruned} pruned) of {model} on {}",
        results.len(),
        search.epochs,
        plan.data
    );
    match best {
        Some(b) => title.push_str(&format!(
            "\nbest: trial {}, val accuracy {} (orange); the test split was not read",
            b + 1,
            pct(results[b].best())
        )),
        None => title.push_str("\nno trial finished an epoch"),
    }
    plot::TuneFigure {
        title,
        settings,
        curves: results.iter().map(|r| r.val_accuracy.clone()).collect(),
        pruned: results.iter().map(|r| r.pruned_at.is_some()).collect(),
        best,
    }
}
