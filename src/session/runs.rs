//! The record of this session's training runs, and `compare`, which tabulates them.

use super::classes::present_classes;
use super::train::ModelState;
use super::{Event, Session, SessionError, Table};
use crate::data::{Dataset, SplitKind};
use crate::model::{History, Network, StopReason};

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

/// `x` as a percentage with two decimals: `99.12%`.
pub(super) fn pct(x: f32) -> String {
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

/// The epoch whose weights the model kept after `history`'s run: the best by validation when
/// validated, else the last; `None` when it keeps weights reached within an unfinished epoch
/// (interrupted without validation).
pub(super) fn kept_epoch(history: &History) -> Option<usize> {
    let last = history.epochs.last()?.epoch;
    match history.stop {
        StopReason::Interrupted { epoch, .. } if epoch > last && !history.restored_best => None,
        _ => Some(history.best_epoch.unwrap_or(last)),
    }
}

/// The accuracies a history figure's title gives: the best validation accuracy and its epoch
/// (or the last training accuracy without validation), the kept epoch, and the model's last
/// evaluation (`split`, accuracy) when there is one.
pub(super) fn history_facts(history: &History, evaluation: Option<(SplitKind, f32)>) -> String {
    let mut facts = Vec::new();
    let best = history
        .epochs
        .iter()
        .filter_map(|e| e.val_accuracy.map(|a| (e.epoch, a)))
        .fold(None, |b: Option<(usize, f32)>, (e, a)| if b.is_some_and(|b| b.1 >= a) { b } else { Some((e, a)) });
    match (best, history.epochs.last()) {
        (Some((epoch, acc)), _) => facts.push(format!("best val accuracy {} (epoch {epoch})", pct(acc))),
        (None, Some(last)) => {
            facts.push(format!("train accuracy {} at epoch {} (no validation split)", pct(last.accuracy), last.epoch))
        }
        (None, None) => {}
    }
    match kept_epoch(history) {
        Some(k) => facts.push(format!("weights of epoch {k} kept")),
        None => facts.push("weights reached when interrupted kept".into()),
    }
    if let Some((split, acc)) = evaluation {
        facts.push(format!("{split} accuracy {}", pct(acc)));
    }
    facts.join(" · ")
}

impl Session {
    /// The first line of a figure's title: the run as `compare` numbers it, its model and data,
    /// while the model is unchanged since that `fit`; else the model's origin.
    pub(super) fn model_title(&self, state: &ModelState) -> String {
        match state.run.and_then(|i| self.training.runs.get(i).map(|r| (i, r))) {
            Some((i, r)) => format!("run {}: {} on {}", i + 1, r.model, r.data),
            None => format!("model {}", state.origin),
        }
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
        if let Some(table) = self.ensemble_rows() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EpochStats;

    fn history(val: &[Option<f32>], stop: StopReason, best_epoch: Option<usize>, restored_best: bool) -> History {
        let epochs = val
            .iter()
            .enumerate()
            .map(|(i, &v)| EpochStats {
                epoch: i + 1,
                loss: 0.5,
                accuracy: 0.9,
                val_loss: v.map(|a| 1.0 - a),
                val_accuracy: v,
                lr: 1e-3,
                seconds: 1.0,
                images_per_sec: 1.0,
            })
            .collect();
        History { epochs, stop, best_epoch, restored_best, notes: Vec::new() }
    }

    #[test]
    fn the_kept_epoch_is_the_best_or_the_last() {
        let h = history(&[Some(0.9), Some(0.95), Some(0.93)], StopReason::Completed, Some(2), true);
        assert_eq!(kept_epoch(&h), Some(2));
        assert_eq!(
            history_facts(&h, Some((SplitKind::Test, 0.9412))),
            "best val accuracy 95.00% (epoch 2) · weights of epoch 2 kept · test accuracy 94.12%"
        );
        let h = history(&[None, None], StopReason::Completed, None, false);
        assert_eq!(kept_epoch(&h), Some(2));
        assert_eq!(
            history_facts(&h, None),
            "train accuracy 90.00% at epoch 2 (no validation split) · weights of epoch 2 kept"
        );
        // Interrupted within epoch 3 without validation: no finished epoch's weights.
        let h = history(&[None, None], StopReason::Interrupted { epoch: 3, batch: 5 }, None, false);
        assert_eq!(kept_epoch(&h), None);
        assert!(history_facts(&h, None).ends_with("weights reached when interrupted kept"));
        // Interrupted within epoch 3 with validation: the best epoch was restored.
        let h = history(&[Some(0.9), Some(0.8)], StopReason::Interrupted { epoch: 3, batch: 5 }, Some(1), true);
        assert_eq!(kept_epoch(&h), Some(1));
    }
}
