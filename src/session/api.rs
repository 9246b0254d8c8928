//! The session's typed side, for Rust programs and notebooks: owned copies of its values out
//! (a notebook cell can keep them), datasets and networks built in Rust in. Statements remain
//! the way to change everything else.

use candle_core::Tensor;

use super::train::ModelState;
use super::{Session, SessionError};
use crate::data::{Dataset, Split, SplitKind};
use crate::model::{self, Evaluation, History, Network};

impl Session {
    /// The statements that ran successfully, in order, as a replayable script.
    pub fn statements(&self) -> &[String] {
        &self.history
    }

    /// A copy of one split of the loaded dataset, if both exist.
    pub fn split_copy(&self, kind: SplitKind) -> Option<Split> {
        self.dataset.as_ref().and_then(|d| d.split(kind)).cloned()
    }

    /// One split as candle tensors: images `[N, 1, rows, cols]` f32 scaled as the session scales
    /// them for `fit` (the dataset's `normalize`/`standardize` setting), labels `[N]` u32, on
    /// the session's device.
    pub fn tensors(&self, kind: SplitKind) -> Result<(Tensor, Tensor), SessionError> {
        let dataset =
            self.dataset.as_ref().ok_or_else(|| SessionError::Usage("no data: run `load mnist` first".into()))?;
        let split = dataset
            .split(kind)
            .ok_or_else(|| SessionError::Usage(format!("the data has no {kind} split: run `split` first")))?;
        Ok(model::split_tensors(split, dataset.format(), &self.training.device)?)
    }

    /// Puts a dataset built in Rust into the session in place of the loaded one, after checking
    /// that its splits are consistent (pixels per label, labels per class). The lineage that
    /// `save` records starts again from a comment naming it.
    pub fn set_dataset(&mut self, dataset: Dataset) -> Result<(), SessionError> {
        dataset.validate().map_err(|e| SessionError::Usage(format!("dataset `{}`: {e}", dataset.name)))?;
        self.lineage = vec![format!("# dataset `{}` set from Rust (Session::set_dataset)", dataset.name)];
        self.subset_since_load = false;
        self.dataset = Some(dataset);
        Ok(())
    }

    /// An independent copy of the current network (training the session's model afterwards
    /// leaves it as it is).
    pub fn network_copy(&self) -> Result<Network, SessionError> {
        let state =
            self.training.model.as_ref().ok_or_else(|| SessionError::Usage("no model: run `model` first".into()))?;
        Ok(state.net.try_clone()?)
    }

    /// Makes a network built in Rust the session's model; `classes` names its outputs in order.
    pub fn set_network(&mut self, net: Network, classes: Vec<String>) -> Result<(), SessionError> {
        if classes.len() != net.classes() {
            return Err(SessionError::Usage(format!(
                "the network has {} outputs but {} class names were given",
                net.classes(),
                classes.len()
            )));
        }
        let origin = format!("{} (set from Rust)", net.spec().describe());
        let net = self.in_precision(net);
        self.training.model = Some(ModelState::new(net, classes, None, origin));
        Ok(())
    }

    /// The record of the current model's last `fit`: per-epoch metrics, why it stopped, the best epoch.
    pub fn history(&self) -> Option<History> {
        self.training.model.as_ref().and_then(|m| m.history.clone())
    }

    /// The current model's last `evaluate`: the split it ran on and its results.
    pub fn evaluation(&self) -> Option<(SplitKind, Evaluation)> {
        self.training.model.as_ref().and_then(|m| m.evaluation.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session_with_data() -> Session {
        let mut lab = Session::new();
        let source = format!(
            "load pkl \"{}\"\nsplit 70/15/15\nsubset 40 per class\nnormalize",
            crate::testdata::mnist_pkl().display()
        );
        lab.run_source(&source, None, &mut |_| {}).unwrap();
        lab
    }

    #[test]
    fn values_come_out_owned_and_typed() {
        let mut lab = session_with_data();
        let (x, y) = lab.tensors(SplitKind::Train).unwrap();
        let train = lab.split_copy(SplitKind::Train).unwrap();
        assert_eq!(x.dims(), &[train.len(), 1, 28, 28]);
        assert_eq!(y.dims(), &[train.len()]);
        let max = x.max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(max <= 1.0 && max > 0.5, "normalized pixels, max {max}");
        assert!(lab.history().is_none());
        lab.run_source("model conv8 pool dense16\nfit 2\nevaluate", None, &mut |_| {}).unwrap();
        let history = lab.history().unwrap();
        assert_eq!(history.epochs.len(), 2);
        let (split, evaluation) = lab.evaluation().unwrap();
        assert_eq!(split, SplitKind::Test);
        assert!(evaluation.accuracy > 0.1, "{evaluation:?}");
        assert_eq!(lab.statements().last().map(String::as_str), Some("evaluate"));
    }

    #[test]
    fn a_network_copy_is_independent_and_goes_back_in() {
        let mut lab = session_with_data();
        lab.run_source("model conv8 pool dense16", None, &mut |_| {}).unwrap();
        let copy = lab.network_copy().unwrap();
        let before = copy.snapshot().unwrap();
        lab.run_source("fit 1", None, &mut |_| {}).unwrap();
        let after_fit = copy.snapshot().unwrap();
        for ((name, a), (_, b)) in before.iter().zip(&after_fit) {
            let diff = (a - b).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert_eq!(diff, 0.0, "{name} changed in the copy");
        }
        let classes: Vec<String> = (0..10).map(|d| d.to_string()).collect();
        lab.set_network(copy, classes[..9].to_vec()).unwrap_err();
        lab.set_network(lab.network_copy().unwrap(), classes).unwrap();
        lab.run_source("evaluate", None, &mut |_| {}).unwrap();
    }

    #[test]
    fn a_dataset_from_rust_is_checked_then_used() {
        let mut lab = session_with_data();
        let mut dataset = lab.dataset().unwrap().clone();
        dataset.name = "mine".into();
        let mut broken = dataset.clone();
        broken.splits.get_mut(&SplitKind::Train).unwrap().labels.push(3);
        let err = lab.set_dataset(broken).unwrap_err().to_string();
        assert!(err.contains("dataset `mine`"), "{err}");
        lab.set_dataset(dataset).unwrap();
        let mut text = String::new();
        lab.run_source("info", None, &mut |e| {
            if let crate::session::Event::Table(t) = e {
                text.push_str(&t.title.unwrap_or_default())
            }
        })
        .unwrap();
        assert!(text.starts_with("mine"), "{text}");
    }
}
