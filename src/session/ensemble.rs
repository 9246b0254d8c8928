//! Session arm of `ensemble`: the members collected so far, whether evaluation uses them, and
//! what classifies for `evaluate`, `predict`, `predictions`, `show mistakes` and `export onnx`.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::classes::label_map;
use super::runs::pct;
use super::{Event, Session, SessionError, Table};
use crate::data::{PixelScaling, SplitKind};
use crate::lang::{EnsembleAction, ModelChoice};
use crate::model::files::ensemble::MemberRef;
use crate::model::{self, Evaluation, Network};

/// One model of the ensemble: a copy, with what `compare` says of it.
pub(super) struct Member {
    pub(super) net: Network,
    pub(super) classes: Vec<String>,
    pub(super) scaling: PixelScaling,
    /// Its layers or file, as `compare` names models.
    pub(super) origin: String,
    /// The `compare` run that trained it, when it joined right after its `fit`.
    pub(super) run: Option<usize>,
}

/// The ensemble: its members, whether it is on, its last evaluation of a whole split and
/// its accuracy on the validation and test splits, since its members last changed.
#[derive(Default)]
pub(super) struct Ensemble {
    pub(super) members: Vec<Member>,
    pub(super) on: bool,
    pub(super) evaluation: Option<(SplitKind, Evaluation)>,
    pub(super) val: Option<f32>,
    pub(super) test: Option<f32>,
}

impl Ensemble {
    /// Keeps `evaluation` of the whole split `kind` for `plot confusion`, and its accuracy
    /// for `compare` unless it was made with test-time augmentation (`tta`): `compare` lists
    /// accuracies without it, as `fit` records them.
    pub(super) fn keep(&mut self, kind: SplitKind, evaluation: Evaluation, tta: bool) {
        match (kind, tta) {
            (SplitKind::Val, false) => self.val = Some(evaluation.accuracy),
            (SplitKind::Test, false) => self.test = Some(evaluation.accuracy),
            _ => {}
        }
        self.evaluation = Some((kind, evaluation));
    }
}

/// What classifies: the ensemble's members when it is on, else the current model alone.
pub(super) struct Scorer<'a> {
    /// The networks whose mean probabilities classify (one for the current model).
    pub(super) nets: Vec<&'a Network>,
    /// The class each output stands for.
    pub(super) classes: &'a [String],
    /// The pixel scaling the networks were trained with, when known.
    pub(super) scaling: Option<PixelScaling>,
    /// How figures and lines name it: `ensemble of 3`, or the current model's run or origin.
    pub(super) name: String,
    /// Whether it is the ensemble.
    pub(super) ensemble: bool,
}

impl Session {
    /// What classifies for `what` (`evaluate`, `predict`, ...): the ensemble when it is on,
    /// else the current model.
    pub(super) fn scorer(&self, what: &str) -> Result<Scorer<'_>, SessionError> {
        let ensemble = &self.training.ensemble;
        if ensemble.on {
            let first = ensemble.members.first().ok_or("the ensemble is on but has no members")?;
            return Ok(Scorer {
                nets: ensemble.members.iter().map(|m| &m.net).collect(),
                classes: &first.classes,
                scaling: Some(first.scaling),
                name: format!("ensemble of {}", ensemble.members.len()),
                ensemble: true,
            });
        }
        let state = self.model_for(what)?;
        Ok(Scorer {
            nets: vec![&state.net],
            classes: &state.classes,
            scaling: state.scaling,
            name: self.model_title(state),
            ensemble: false,
        })
    }

    /// `ensemble ...`.
    pub(super) fn ensemble(&mut self, action: &EnsembleAction, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        match action {
            EnsembleAction::Show => self.ensemble_show(out),
            EnsembleAction::Add => self.ensemble_add(out),
            EnsembleAction::Fit { members, epochs, patience } => self.ensemble_fit(*members, *epochs, *patience, out),
            EnsembleAction::Use(on) => {
                if *on && self.training.ensemble.members.is_empty() {
                    return Err("the ensemble has no members: `ensemble add` adds the current model, \
                                `ensemble fit K N` trains K of them"
                        .into());
                }
                self.training.ensemble.on = *on;
                out(Event::Text(if *on {
                    format!(
                        "ensemble on: evaluate, predict, predictions, show mistakes and export onnx use the mean of {} models' probabilities",
                        self.training.ensemble.members.len()
                    )
                } else {
                    "ensemble off: evaluate, predict and export use the current model".to_string()
                }));
                Ok(())
            }
            EnsembleAction::Clear => {
                self.training.ensemble = Ensemble::default();
                out(Event::Text("ensemble: no members".into()));
                Ok(())
            }
            EnsembleAction::Save(dir) => self.ensemble_save(dir, out),
            EnsembleAction::Load(dir) => self.ensemble_load(dir, out),
        }
    }

    /// Adds `member`, refusing one that does not take the same images, give the same classes
    /// or scale pixels the same way as the members already in.
    fn join(&mut self, member: Member) -> Result<(), SessionError> {
        let ensemble = &mut self.training.ensemble;
        if let Some(first) = ensemble.members.first() {
            model::training::ensemble::check_members(&[&first.net, &member.net])?;
            if first.classes != member.classes {
                return Err(format!(
                    "this model's classes ({}) are not the ensemble's ({})",
                    member.classes.join(", "),
                    first.classes.join(", ")
                )
                .into());
            }
            if first.scaling != member.scaling {
                return Err(format!(
                    "this model was trained on pixels scaled as {}, the ensemble's members as {}",
                    member.scaling.describe(),
                    first.scaling.describe()
                )
                .into());
            }
        }
        ensemble.members.push(member);
        (ensemble.evaluation, ensemble.val, ensemble.test) = (None, None, None);
        Ok(())
    }

    /// `ensemble fit K N [patience P]`: K fresh models of the current model's layers, seeds S,
    /// S+1, ..., trained in turn and added; then the ensemble is on and scored on the test split.
    fn ensemble_fit(
        &mut self,
        members: usize,
        epochs: usize,
        patience: Option<usize>,
        out: &mut dyn FnMut(Event),
    ) -> Result<(), SessionError> {
        // Refused before the current model is replaced: without data, or with a spec that does
        // not fit the memory budget at this batch size.
        let spec = self.training_inputs("ensemble fit")?.state.net.spec().clone();
        let base = self.seed;
        let mut trained = 0;
        for k in 0..members {
            out(Event::Text(format!("ensemble member {} of {members}, seed {}", k + 1, base.wrapping_add(k as u64))));
            self.seed = base.wrapping_add(k as u64);
            let result = self
                .model(&ModelChoice::Layers(spec.clone()), out)
                .and_then(|()| self.fit(epochs, patience, None, out));
            self.seed = base;
            result?;
            self.ensemble_add(out)?;
            trained += 1;
            if self.interrupt.load(Ordering::SeqCst) {
                out(Event::Warning(format!("interrupted: {trained} of {members} members trained and added")));
                break;
            }
        }
        self.training.ensemble.on = true;
        self.evaluate(Some(SplitKind::Test), None, out)
    }

    /// `ensemble add`: a copy of the current model joins.
    fn ensemble_add(&mut self, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let state = self.model_for("ensemble add")?;
        let scaling = state.scaling.or(self.dataset.as_ref().map(|d| d.scaling)).unwrap_or(PixelScaling::Unit);
        let member = Member {
            net: state.net.try_clone()?,
            classes: state.classes.clone(),
            scaling,
            origin: state.origin.clone(),
            run: state.run,
        };
        self.join(member)?;
        let ensemble = &self.training.ensemble;
        out(Event::Text(format!(
            "ensemble: {} member{}{}",
            ensemble.members.len(),
            if ensemble.members.len() == 1 { "" } else { "s" },
            if ensemble.on { "" } else { " (`ensemble on` makes evaluate, predict and export use it)" }
        )));
        Ok(())
    }

    /// `ensemble`: each member with its run's accuracies, and the ensemble's on the validation
    /// split (the test split is not read here).
    fn ensemble_show(&mut self, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let ensemble = &self.training.ensemble;
        if ensemble.members.is_empty() {
            out(Event::Text("the ensemble has no members (`ensemble add`, `ensemble fit K N`)".into()));
            return Ok(());
        }
        let on = if ensemble.on { "on" } else { "off" };
        let table = self.member_table(format!("ensemble of {} ({on})", ensemble.members.len()));
        out(Event::Table(table));
        let Some(dataset) = self.dataset.as_ref() else { return Ok(()) };
        let Some(val) = dataset.split(SplitKind::Val).filter(|s| !s.is_empty()) else {
            out(Event::Text("no validation split to score the ensemble on (`split val 10` makes one)".into()));
            return Ok(());
        };
        let nets: Vec<&Network> = ensemble.members.iter().map(|m| &m.net).collect();
        let labels = label_map(&ensemble.members[0].classes, dataset)?;
        let (format, tta, batch) = (dataset.format(), self.training.tta, self.eval_batch(nets[0]));
        let e = Self::in_pool(&self.training.pool, || {
            model::training::ensemble::evaluate(&nets, val, format, (batch, tta), &labels)
        })?;
        out(Event::Text(format!("the ensemble on val: loss {:.4} - accuracy {}", e.loss, pct(e.accuracy))));
        if !tta {
            self.training.ensemble.val = Some(e.accuracy);
        }
        Ok(())
    }

    /// `ensemble save DIR`: each member as a model file and their list, all written or none
    /// (see [`model::files::ensemble`]).
    fn ensemble_save(&mut self, dir: &Path, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let members = &self.training.ensemble.members;
        if members.is_empty() {
            return Err("the ensemble has no members to save (`ensemble add`, `ensemble fit K N`)".into());
        }
        let refs: Vec<MemberRef<'_>> = members
            .iter()
            .map(|m| MemberRef { net: &m.net, classes: &m.classes, scaling: m.scaling, origin: &m.origin })
            .collect();
        let dir = model::files::ensemble::save_ensemble(dir, &refs)?;
        out(Event::Text(format!("saved the ensemble of {} to {}", members.len(), dir.display())));
        Ok(())
    }

    /// `ensemble load DIR`: the members `ensemble save` wrote, replacing the ensemble's; on.
    /// Nothing changes when a member cannot be read or join.
    fn ensemble_load(&mut self, dir: &Path, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let loaded = model::files::ensemble::load_ensemble(dir, &self.training.device)?;
        let count = loaded.len();
        let old = std::mem::take(&mut self.training.ensemble);
        for (net, meta, origin) in loaded {
            let net = self.in_precision(net);
            if let Err(e) = self.join(Member { net, classes: meta.classes, scaling: meta.scaling, origin, run: None }) {
                self.training.ensemble = old;
                return Err(e);
            }
        }
        self.training.ensemble.on = true;
        let first = &self.training.ensemble.members[0];
        out(Event::Text(format!(
            "loaded an ensemble of {} from {} ({} classes, inputs scaled as {}); ensemble on",
            count,
            dir.display(),
            first.classes.len(),
            first.scaling.describe()
        )));
        if let Some(d) = &self.dataset {
            if let Err(e) = label_map(&first.classes, d) {
                out(Event::Warning(format!("evaluate will refuse this data: {e}")));
            }
        }
        Ok(())
    }

    /// The rows `compare` adds for the ensemble: each member and the ensemble's own last
    /// evaluation; none without members.
    pub(super) fn ensemble_rows(&self) -> Option<Table> {
        let ensemble = &self.training.ensemble;
        if ensemble.members.is_empty() {
            return None;
        }
        let mut table = self.member_table("the ensemble: its members and the mean of their probabilities".into());
        let (val, test) = (ensemble.val.map_or("-".into(), pct), ensemble.test.map_or("-".into(), pct));
        table.row(vec!["ensemble".into(), format!("mean of {}", ensemble.members.len()), "-".into(), val, test]);
        Some(table)
    }
}

impl Session {
    /// A table titled `title` of the members: model, the run that trained each (as `compare`
    /// numbers runs) and that run's accuracies.
    fn member_table(&self, title: String) -> Table {
        let mut table = Table::new(Some(title), &["member", "model", "run", "best val acc", "test acc"]);
        for (i, m) in self.training.ensemble.members.iter().enumerate() {
            let run = m.run.and_then(|r| self.training.runs.get(r).map(|rec| (r, rec)));
            table.row(vec![
                (i + 1).to_string(),
                m.origin.clone(),
                run.map_or("-".into(), |(r, _)| (r + 1).to_string()),
                run.and_then(|(_, rec)| rec.best_val).map_or("-".into(), pct),
                run.and_then(|(_, rec)| rec.test).map_or("-".into(), pct),
            ]);
        }
        table
    }
}
