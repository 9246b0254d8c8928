//! Session arms of the fine-tuning statements: freeze, unfreeze, head, adapt lora, merge,
//! compare; and what they share with `fit` and `evaluate`: the classes present in the data,
//! the label map from dataset labels to the model's outputs, and the record of training runs.

use super::train::ModelState;
use super::{Event, Session, SessionError, Table};
use crate::data::Dataset;
use crate::lang::LayerSelection;
use crate::model::{LabelMap, LoraConfig, Network};

/// One training run, as `compare` lists it.
#[derive(Debug, Clone)]
pub(super) struct RunRecord {
    /// Where the model came from (its layers or file, and the heads it got).
    pub(super) model: String,
    /// The data it was trained on: name, classes, train images.
    pub(super) data: String,
    /// What trained: every layer, the head only, LoRA..., and a body learning rate.
    pub(super) tuning: String,
    /// Parameters the optimizer updated.
    pub(super) trainable: usize,
    /// Epochs run.
    pub(super) epochs: usize,
    /// Wall time of `fit` (validation included, the final test evaluation excluded).
    pub(super) seconds: f64,
    /// Best validation accuracy over the epochs.
    pub(super) best_val: Option<f32>,
    /// Test accuracy after the run (or of the last `evaluate test` of this model).
    pub(super) test: Option<f32>,
}

/// The classes that have at least one image in some split, in order; every class when the
/// dataset is empty.
pub(super) fn present_classes(dataset: &Dataset) -> Vec<usize> {
    let mut seen = vec![false; dataset.classes.len()];
    for split in dataset.splits.values() {
        for &l in &split.labels {
            if let Some(s) = seen.get_mut(l as usize) {
                *s = true;
            }
        }
    }
    let present: Vec<usize> = (0..seen.len()).filter(|&c| seen[c]).collect();
    if present.is_empty() {
        (0..dataset.classes.len()).collect()
    } else {
        present
    }
}

/// `0-4`, `1,3,5`, `0-2,7`: indices (plus `offset`) with runs collapsed.
pub(super) fn ranges(indices: &[usize], offset: usize) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let mut j = i;
        while j + 1 < indices.len() && indices[j + 1] == indices[j] + 1 {
            j += 1;
        }
        parts.push(if j > i {
            format!("{}-{}", indices[i] + offset, indices[j] + offset)
        } else {
            (indices[i] + offset).to_string()
        });
        i = j + 1;
    }
    parts.join(",")
}

/// `mnist`, or `mnist 5-9` when only some classes are present.
pub(super) fn data_name(dataset: &Dataset) -> String {
    let present = present_classes(dataset);
    if present.len() == dataset.classes.len() {
        dataset.name.clone()
    } else {
        format!("{} {}", dataset.name, ranges(&present, 0))
    }
}

/// Dataset label → model output, matching class names: output k stands for the model's k-th
/// class. Every class present in the data must be one of the model's.
pub(super) fn label_map(state: &ModelState, dataset: &Dataset) -> Result<LabelMap, SessionError> {
    if state.classes == dataset.classes {
        return Ok(LabelMap::identity());
    }
    let present = present_classes(dataset);
    let mut table = vec![None; dataset.classes.len()];
    let mut missing = Vec::new();
    for &c in &present {
        match state.classes.iter().position(|name| *name == dataset.classes[c]) {
            Some(k) => table[c] = Some(k as u32),
            None => missing.push(dataset.classes[c].clone()),
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "the model's classes are {}; the data's {} {} not among them: `head {}` gives the model a fresh output layer for the data's {} classes, or build a new model",
            state.classes.join(", "),
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" },
            present.len(),
            present.len()
        ).into());
    }
    Ok(LabelMap::new(table))
}

/// What trains, in words: `all layers`, `head only`, `frozen conv`, `frozen 1-3`,
/// `LoRA r4 α8 (layer 5) + head`, with `, body lr X` when the body has its own rate.
pub(super) fn tuning(net: &Network, body_lr: Option<f64>) -> String {
    let with_params: Vec<usize> = (0..net.layer_count()).filter(|&i| net.has_params(i)).collect();
    let head = net.head_index();
    let mut text = if let Some(lora) = net.lora() {
        let head_note = if net.is_frozen(head) { ", head frozen" } else { " + head" };
        let layers = net.adapted_layers();
        let noun = if layers.len() == 1 { "layer" } else { "layers" };
        format!("LoRA r{} α{} ({noun} {}){head_note}", lora.rank, lora.alpha, ranges(&layers, 1))
    } else {
        let frozen = net.frozen_layers();
        let body: Vec<usize> = with_params.iter().copied().filter(|&i| i != head).collect();
        let conv: Vec<usize> = net.conv_layers();
        if frozen.is_empty() {
            "all layers".to_string()
        } else if frozen == body {
            "head only".to_string()
        } else if frozen == with_params {
            "nothing (all frozen)".to_string()
        } else if frozen == conv {
            "frozen conv".to_string()
        } else {
            format!("frozen {}", ranges(&frozen, 1))
        }
    };
    let body_trains = net.lora().is_some() || (0..head).any(|i| net.has_params(i) && !net.is_frozen(i));
    if let (Some(lr), true) = (body_lr, body_trains) {
        text.push_str(&format!(", body lr {lr}"));
    }
    text
}

fn pct(x: f32) -> String {
    format!("{:.2}%", 100.0 * x)
}

/// `98.12% (97.90–98.30)` over several values.
fn mean_range(values: &[f32]) -> String {
    if values.is_empty() {
        return "-".into();
    }
    let mean = values.iter().sum::<f32>() / values.len() as f32;
    let min = values.iter().copied().fold(f32::INFINITY, f32::min);
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    format!("{} ({:.2}–{:.2})", pct(mean), 100.0 * min, 100.0 * max)
}

impl Session {
    fn model_mut(&mut self, what: &str) -> Result<&mut ModelState, SessionError> {
        self.training
            .model
            .as_mut()
            .ok_or_else(|| SessionError::Usage(format!("{what} needs a model: run e.g. `model seed-cnn` first")))
    }

    /// The 0-based layers a selection names.
    fn selected_layers(net: &Network, selection: LayerSelection) -> Result<Vec<usize>, SessionError> {
        let count = net.layer_count();
        Ok(match selection {
            LayerSelection::All => (0..count).collect(),
            LayerSelection::AllButHead => (0..net.head_index()).collect(),
            LayerSelection::Conv => {
                let conv = net.conv_layers();
                if conv.is_empty() {
                    return Err("the model has no convolution to freeze".into());
                }
                conv
            }
            LayerSelection::Range(first, last) => {
                if last > count {
                    return Err(
                        format!("the model has {count} layers (see `summary`), there is no layer {last}").into()
                    );
                }
                (first - 1..last).collect()
            }
        })
    }

    /// `freeze ...` (`frozen` true) and `unfreeze ...`.
    pub(super) fn freeze(
        &mut self,
        selection: LayerSelection,
        frozen: bool,
        out: &mut dyn FnMut(Event),
    ) -> Result<(), SessionError> {
        let what = if frozen { "freeze" } else { "unfreeze" };
        let state = self.model_mut(what)?;
        let layers = Self::selected_layers(&state.net, selection)?;
        let set = state.net.set_frozen(&layers, frozen)?;
        let summary = state.net.summary()?;
        let names: Vec<String> = set.iter().map(|&i| format!("{} {}", i + 1, summary.rows[i].layer)).collect();
        if set.is_empty() {
            out(Event::Text(format!("no layer with parameters among those: nothing to {what}")));
        } else {
            out(Event::Text(format!("{}: {}", if frozen { "frozen" } else { "trainable" }, names.join(", "))));
        }
        if !frozen && state.net.lora().is_some() {
            out(Event::Warning(
                "the body's own weights stay frozen while LoRA adapters exist (`merge` folds them in)".into(),
            ));
        }
        out(Event::Text(format!("trainable params: {} of {}", summary.trainable_params, summary.total_params)));
        state.run = None;
        Ok(())
    }

    pub(super) fn head(&mut self, classes: usize, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let names: Vec<String> = match &self.dataset {
            Some(d) => {
                let present = present_classes(d);
                if present.len() != classes {
                    return Err(format!(
                        "the data has {} classes ({}): `head {}` makes an output layer for them",
                        present.len(),
                        present.iter().map(|&c| d.classes[c].as_str()).collect::<Vec<_>>().join(", "),
                        present.len()
                    )
                    .into());
                }
                present.iter().map(|&c| d.classes[c].clone()).collect()
            }
            None => (0..classes).map(|c| c.to_string()).collect(),
        };
        let seed = self.seed;
        let trained_on = self.training.model.as_ref().and_then(|s| s.trained_on.clone());
        let state = self.model_mut("head")?;
        state.net.replace_head(classes, seed)?;
        let params = state.net.summary()?.rows.last().map_or(0, |r| r.params);
        state.origin = match trained_on {
            Some(data) => format!("{} → {data} → head {classes}", state.origin),
            None => format!("{} → head {classes}", state.origin),
        };
        state.trained_on = None;
        state.classes = names;
        state.evaluation = None;
        state.run = None;
        out(Event::Text(format!(
            "head: a fresh output layer for {classes} classes ({}), {params} parameters (seed {seed}); every other layer keeps its weights",
            state.classes.join(", ")
        )));
        Ok(())
    }

    pub(super) fn adapt_lora(
        &mut self,
        rank: usize,
        alpha: Option<f64>,
        out: &mut dyn FnMut(Event),
    ) -> Result<(), SessionError> {
        let seed = self.seed;
        let state = self.model_mut("adapt")?;
        let config = LoraConfig { rank, alpha: alpha.unwrap_or(rank as f64) };
        let layers = state.net.add_lora(config, seed)?;
        let summary = state.net.summary()?;
        let adapter: usize = summary.rows.iter().map(|r| r.adapter_params).sum();
        let names: Vec<String> = layers.iter().map(|&i| format!("{} {}", i + 1, summary.rows[i].layer)).collect();
        out(Event::Text(format!(
            "LoRA rank {rank}, alpha {} (scale {}) on {}: {adapter} adapter parameters; the body's own weights are frozen, trainable params {} of {}",
            config.alpha,
            config.scale(),
            names.join(", "),
            summary.trainable_params,
            summary.total_params
        )));
        state.run = None;
        Ok(())
    }

    pub(super) fn merge(&mut self, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let state = self.model_mut("merge")?;
        let layers = state.net.adapted_layers();
        state.net.merge_lora()?;
        state.origin = format!("{} → LoRA merged", state.origin);
        state.run = None;
        out(Event::Text(format!(
            "merged the LoRA adapters into layers {}; {} parameters",
            ranges(&layers, 1),
            state.net.param_count()
        )));
        Ok(())
    }

    pub(super) fn compare(&mut self, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let runs = &self.training.runs;
        if runs.is_empty() {
            return Err("there is no training run to compare yet: run `fit N` first".into());
        }
        let header =
            ["#", "model", "data", "trained", "trainable params", "epochs", "seconds", "best val acc", "test acc"];
        let mut table = Table::new(Some("training runs of this session".into()), &header);
        for (i, r) in runs.iter().enumerate() {
            table.row(vec![
                (i + 1).to_string(),
                r.model.clone(),
                r.data.clone(),
                r.tuning.clone(),
                r.trainable.to_string(),
                r.epochs.to_string(),
                format!("{:.1}", r.seconds),
                r.best_val.map_or("-".into(), pct),
                r.test.map_or("-".into(), pct),
            ]);
        }
        out(Event::Table(table));
        // Runs that differ only by seed: mean (min–max).
        let mut groups: Vec<(&RunRecord, Vec<&RunRecord>)> = Vec::new();
        for r in runs {
            let same = |g: &RunRecord| {
                (&g.model, &g.data, &g.tuning, g.epochs, g.trainable)
                    == (&r.model, &r.data, &r.tuning, r.epochs, r.trainable)
            };
            match groups.iter_mut().find(|(g, _)| same(g)) {
                Some((_, members)) => members.push(r),
                None => groups.push((r, vec![r])),
            }
        }
        if groups.iter().any(|(_, m)| m.len() > 1) {
            let header =
                ["model", "data", "trained", "runs", "trainable params", "seconds", "best val acc", "test acc"];
            let mut table = Table::new(Some("runs that differ only by seed: mean (min–max)".into()), &header);
            for (first, members) in &groups {
                let seconds: Vec<f64> = members.iter().map(|r| r.seconds).collect();
                let (lo, hi) =
                    seconds.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &s| (a.min(s), b.max(s)));
                let val: Vec<f32> = members.iter().filter_map(|r| r.best_val).collect();
                let test: Vec<f32> = members.iter().filter_map(|r| r.test).collect();
                table.row(vec![
                    first.model.clone(),
                    first.data.clone(),
                    first.tuning.clone(),
                    members.len().to_string(),
                    first.trainable.to_string(),
                    format!("{:.1} ({lo:.1}–{hi:.1})", seconds.iter().sum::<f64>() / seconds.len() as f64),
                    mean_range(&val),
                    mean_range(&test),
                ]);
            }
            out(Event::Table(table));
        }
        Ok(())
    }

    /// Records a finished `fit` for `compare`; returns the record's index.
    pub(super) fn record_run(&mut self, record: RunRecord) -> usize {
        self.training.runs.push(record);
        self.training.runs.len() - 1
    }
}
