//! Session arms of the fine-tuning statements: freeze, unfreeze, head, adapt lora, merge.

use super::classes::present_classes;
use super::runs::ranges;
use super::train::ModelState;
use super::{Event, Session, SessionError};
use crate::lang::LayerSelection;
use crate::model::{LoraConfig, Network};

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
}
