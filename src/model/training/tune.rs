//! Hyperparameter search: the search space (number ranges, optionally log-uniform, and
//! choice lists of batch sizes, optimizers and architectures), the seeded random sampler, and
//! successive halving in the ASHA way (Li et al. 2018; Optuna's `SuccessiveHalvingPruner`).
//!
//! Trials run one after another. Rungs stand at 1, 3, 9… epochs (below the search's epoch
//! budget); a trial that reaches a rung goes on only if its validation accuracy there is in the
//! top third of the trials that have reached that rung so far, itself included (with fewer than
//! three there, only the best goes on). This is the asynchronous rule, decided at once from the
//! trials seen so far, not a synchronous bracket that waits for every trial.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::model::architecture::spec::ModelSpec;
use crate::model::training::optim::Optimizer;

/// The reduction factor η: rungs stand at powers of it, and the top 1/η of a rung goes on.
pub const ETA: usize = 3;

/// The values one number setting may take.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Uniform between `low` and `high` (inclusive), or log-uniform when `log`.
    Range {
        /// The smallest value.
        low: f64,
        /// The largest value.
        high: f64,
        /// Whether to draw the logarithm uniformly (for rates spanning decades).
        log: bool,
    },
    /// One of these, each as likely.
    List(Vec<f64>),
}

impl Values {
    /// One value drawn from `rng`.
    /// Drawn numbers are rounded to three significant digits (kept within the range), so that
    /// the statements printed for a trial give back exactly its values.
    pub fn sample(&self, rng: &mut impl Rng) -> f64 {
        let (low, high, x) = match self {
            Values::Range { low, high, log: false } => (*low, *high, low + (high - low) * rng.random::<f64>()),
            Values::Range { low, high, log: true } => {
                let (a, b) = (low.ln(), high.ln());
                (*low, *high, (a + (b - a) * rng.random::<f64>()).exp())
            }
            Values::List(values) => return values[rng.random_range(0..values.len())],
        };
        let rounded = significant(x, 3);
        if (low..=high).contains(&rounded) {
            rounded
        } else {
            x.clamp(low, high)
        }
    }

    /// Why these values cannot be searched, if they cannot: an empty list, a range whose end
    /// is below its start or not finite, a log range that reaches 0.
    pub fn problem(&self) -> Option<String> {
        match self {
            Values::List(v) if v.is_empty() => Some("an empty list of values".into()),
            Values::List(v) if v.iter().any(|x| !x.is_finite()) => Some("a value that is not finite".into()),
            Values::List(_) => None,
            Values::Range { low, high, .. } if !(low.is_finite() && high.is_finite()) => {
                Some("a range whose ends are not finite".into())
            }
            Values::Range { low, high, .. } if high < low => Some(format!("a range {low}..{high} that goes down")),
            Values::Range { low, log: true, .. } if *low <= 0.0 => {
                Some(format!("a log range must stay above 0, and {low} does not"))
            }
            Values::Range { .. } => None,
        }
    }
}

/// `x` rounded to `digits` significant digits (0 and non-finite numbers as they are).
pub fn significant(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let k = digits - 1 - x.abs().log10().floor() as i32;
    if k >= 0 {
        let scale = 10f64.powi(k);
        (x * scale).round() / scale
    } else {
        let scale = 10f64.powi(-k);
        (x / scale).round() * scale
    }
}

/// What a search may vary; a setting left out stays as the session has it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchSpace {
    /// The learning rate.
    pub lr: Option<Values>,
    /// Batch sizes to choose from (empty: not searched).
    pub batch: Vec<usize>,
    /// Optimizers to choose from, each with its own default settings (empty: not searched).
    pub optimizer: Vec<Optimizer>,
    /// The label smoothing.
    pub smoothing: Option<Values>,
    /// Architectures to choose from (empty: not searched).
    pub models: Vec<ModelSpec>,
}

/// A whole search: the space, how many trials, the epoch budget of each, pruning, seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    /// What may vary.
    pub space: SearchSpace,
    /// How many trials to draw.
    pub trials: usize,
    /// Epochs of a trial that is not pruned.
    pub epochs: usize,
    /// Whether to prune by successive halving.
    pub prune: bool,
    /// The sampler's seed (`None`: the session's).
    pub seed: Option<u64>,
}

/// One trial's settings: the drawn value of each searched setting (`None`: not searched).
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    /// The optimizer (with its default settings), if searched.
    pub optimizer: Option<Optimizer>,
    /// The learning rate, if searched.
    pub lr: Option<f64>,
    /// The batch size, if searched.
    pub batch: Option<usize>,
    /// The label smoothing, if searched.
    pub smoothing: Option<f64>,
    /// The index of the architecture in [`SearchSpace::models`], if searched.
    pub model: Option<usize>,
}

impl Trial {
    /// `base` with this trial's optimizer and learning rate put in (the rate of `base`, or of
    /// the drawn optimizer's defaults, where no rate is drawn).
    pub fn optimizer(&self, base: Optimizer) -> Optimizer {
        let chosen = self.optimizer.unwrap_or(base);
        match self.lr {
            Some(lr) => with_lr(chosen, lr),
            None => chosen,
        }
    }
}

/// `optimizer` at learning rate `lr`, its other settings kept.
pub fn with_lr(optimizer: Optimizer, lr: f64) -> Optimizer {
    match optimizer {
        Optimizer::Adam { .. } => Optimizer::Adam { lr },
        Optimizer::AdamW { weight_decay, .. } => Optimizer::AdamW { lr, weight_decay },
        Optimizer::Sgd { momentum, .. } => Optimizer::Sgd { lr, momentum },
    }
}

impl SearchSpace {
    /// Whether nothing is searched.
    pub fn is_empty(&self) -> bool {
        self.lr.is_none()
            && self.batch.is_empty()
            && self.optimizer.is_empty()
            && self.smoothing.is_none()
            && self.models.is_empty()
    }

    /// Why the space cannot be searched, if it cannot (naming the setting).
    pub fn problem(&self) -> Option<String> {
        if self.is_empty() {
            return Some("nothing to search: give lr, batch, optimizer, smoothing or model".into());
        }
        let ranges = [("lr", &self.lr), ("smoothing", &self.smoothing)];
        ranges.iter().find_map(|(name, v)| v.as_ref().and_then(Values::problem).map(|p| format!("{name}: {p}")))
    }

    /// `trials` trials drawn at random from `seed`: the same seed gives the same trials.
    /// Settings are drawn in a fixed order, each from its own stream, so adding a setting to a
    /// search leaves the values drawn for the others as they were.
    pub fn sample(&self, trials: usize, seed: u64) -> Vec<Trial> {
        let stream = |k: u64| ChaCha8Rng::seed_from_u64(seed ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let (mut r_opt, mut r_lr, mut r_batch, mut r_smooth, mut r_model) =
            (stream(1), stream(2), stream(3), stream(4), stream(5));
        (0..trials)
            .map(|_| Trial {
                optimizer: pick(&self.optimizer, &mut r_opt).copied(),
                lr: self.lr.as_ref().map(|v| v.sample(&mut r_lr)),
                batch: pick(&self.batch, &mut r_batch).copied(),
                smoothing: self.smoothing.as_ref().map(|v| v.sample(&mut r_smooth)),
                model: (!self.models.is_empty()).then(|| r_model.random_range(0..self.models.len())),
            })
            .collect()
    }
}

fn pick<'a, T>(options: &'a [T], rng: &mut ChaCha8Rng) -> Option<&'a T> {
    (!options.is_empty()).then(|| &options[rng.random_range(0..options.len())])
}

/// The rungs of a search of `epochs` epochs: 1, 3, 9… below `epochs` (the last epoch is no
/// rung: nothing is saved by stopping there).
pub fn rungs(epochs: usize) -> Vec<usize> {
    std::iter::successors(Some(1usize), |r| r.checked_mul(ETA)).take_while(|&r| r < epochs).collect()
}

/// Whether a trial goes on after a rung.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// In the top third at the rung (or no rung here): go on.
    Continue,
    /// Below the top third at the rung: stop.
    Prune,
}

/// Successive halving over trials that run one after another.
#[derive(Debug, Clone, PartialEq)]
pub struct Halving {
    rungs: Vec<usize>,
    /// The scores reported at each rung so far.
    scores: Vec<Vec<f32>>,
}

impl Halving {
    /// Rungs for trials of `epochs` epochs.
    pub fn new(epochs: usize) -> Halving {
        let rungs = rungs(epochs);
        let scores = vec![Vec::new(); rungs.len()];
        Halving { rungs, scores }
    }

    /// The rungs, in epochs.
    pub fn rungs(&self) -> &[usize] {
        &self.rungs
    }

    /// A trial's `score` (higher is better) after `epoch`: pruned when the epoch is a rung and
    /// the score is below the best ⌊n/η⌋ (at least one) of the n scores reported there so
    /// far, itself included. Ties go on.
    pub fn report(&mut self, epoch: usize, score: f32) -> Verdict {
        let Some(rung) = self.rungs.iter().position(|&r| r == epoch) else {
            return Verdict::Continue;
        };
        let scores = &mut self.scores[rung];
        scores.push(if score.is_nan() { f32::NEG_INFINITY } else { score });
        let keep = (scores.len() / ETA).max(1);
        let mut sorted = scores.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        if scores.last().expect("just pushed") >= &sorted[keep - 1] {
            Verdict::Continue
        } else {
            Verdict::Prune
        }
    }
}

/// The outcome of one trial.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialResult {
    /// Its settings.
    pub trial: Trial,
    /// Validation accuracy after each epoch run.
    pub val_accuracy: Vec<f32>,
    /// The rung it was pruned at, if it was.
    pub pruned_at: Option<usize>,
    /// Whether the search was interrupted during it.
    pub interrupted: bool,
    /// Wall time of its training, validation included.
    pub seconds: f64,
}

impl TrialResult {
    /// Its best validation accuracy, if it finished an epoch.
    pub fn best(&self) -> Option<f32> {
        self.val_accuracy.iter().copied().filter(|x| !x.is_nan()).reduce(f32::max)
    }
}

/// The order of `results` by best validation accuracy, highest first (ties: the earlier
/// trial first; trials without an epoch last).
pub fn ranking(results: &[TrialResult]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..results.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (results[a].best().unwrap_or(f32::NEG_INFINITY), results[b].best().unwrap_or(f32::NEG_INFINITY));
        y.total_cmp(&x).then(a.cmp(&b))
    });
    order
}

/// The best trial that was not interrupted, by best validation accuracy.
pub fn best(results: &[TrialResult]) -> Option<usize> {
    ranking(results).into_iter().find(|&i| !results[i].interrupted && results[i].best().is_some())
}

/// Epochs run against the epochs a search without pruning would have run (`trials × epochs`).
pub fn epochs_saved(results: &[TrialResult], epochs: usize) -> (usize, usize) {
    let run = results.iter().map(|r| r.val_accuracy.len()).sum();
    (run, results.len() * epochs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> SearchSpace {
        SearchSpace {
            lr: Some(Values::Range { low: 1e-4, high: 1e-2, log: true }),
            batch: vec![32, 64, 128],
            optimizer: vec![Optimizer::Adam { lr: 1e-3 }, Optimizer::AdamW { lr: 1e-3, weight_decay: 0.01 }],
            smoothing: Some(Values::Range { low: 0.0, high: 0.1, log: false }),
            models: Vec::new(),
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_trials_and_another_seed_others() {
        let s = space();
        assert_eq!(s.sample(16, 7), s.sample(16, 7));
        assert_ne!(s.sample(16, 7), s.sample(16, 8));
        // A longer search starts with the same trials.
        assert_eq!(s.sample(16, 7)[..8], s.sample(8, 7)[..]);
    }

    #[test]
    fn adding_a_setting_keeps_the_others_draws() {
        let s = space();
        let mut more = s.clone();
        more.models = vec![ModelSpec::new(vec![crate::model::architecture::layers::Layer::dense(8)])];
        let (a, b) = (s.sample(10, 3), more.sample(10, 3));
        assert!(a.iter().zip(&b).all(|(x, y)| x.lr == y.lr && x.batch == y.batch && x.optimizer == y.optimizer));
        assert!(b.iter().all(|t| t.model == Some(0)) && a.iter().all(|t| t.model.is_none()));
    }

    #[test]
    fn log_uniform_stays_in_range_and_spreads_over_the_decades() {
        let v = Values::Range { low: 1e-4, high: 1e-2, log: true };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let draws: Vec<f64> = (0..4000).map(|_| v.sample(&mut rng)).collect();
        assert!(draws.iter().all(|&x| (1e-4..=1e-2).contains(&x)));
        // Log-uniform: half below the geometric middle 1e-3 (uniform would put 9% there).
        let below = draws.iter().filter(|&&x| x < 1e-3).count() as f64 / draws.len() as f64;
        assert!((0.45..0.55).contains(&below), "{below}");
        let uniform = Values::Range { low: 1e-4, high: 1e-2, log: false };
        let below = (0..4000).filter(|_| uniform.sample(&mut rng) < 1e-3).count() as f64 / 4000.0;
        assert!((0.06..0.12).contains(&below), "{below}");
    }

    #[test]
    fn drawn_numbers_have_three_significant_digits() {
        assert_eq!(significant(0.0031234, 3), 0.00312);
        assert_eq!(significant(1234.5, 3), 1230.0);
        assert_eq!(significant(0.0, 3), 0.0);
        let v = Values::Range { low: 1e-4, high: 1e-2, log: true };
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for _ in 0..200 {
            let x = v.sample(&mut rng);
            let text = format!("{x:e}");
            assert!(text.split('e').next().unwrap().len() <= 4, "{text}");
            assert_eq!(text.parse::<f64>().unwrap(), x);
        }
    }

    #[test]
    fn bad_values_are_named() {
        assert!(Values::Range { low: 1e-2, high: 1e-4, log: true }.problem().unwrap().contains("goes down"));
        assert!(Values::Range { low: 0.0, high: 0.1, log: true }.problem().unwrap().contains("above 0"));
        assert!(Values::List(vec![]).problem().unwrap().contains("empty"));
        assert!(SearchSpace::default().problem().unwrap().contains("nothing to search"));
        let mut s = space();
        s.lr = Some(Values::Range { low: 1.0, high: f64::NAN, log: false });
        assert!(s.problem().unwrap().starts_with("lr:"));
    }

    #[test]
    fn rungs_are_powers_of_three_below_the_budget() {
        assert_eq!(rungs(1), Vec::<usize>::new());
        assert_eq!(rungs(2), vec![1]);
        assert_eq!(rungs(3), vec![1]);
        assert_eq!(rungs(4), vec![1, 3]);
        assert_eq!(rungs(9), vec![1, 3]);
        assert_eq!(rungs(27), vec![1, 3, 9]);
        assert_eq!(rungs(28), vec![1, 3, 9, 27]);
        assert_eq!(rungs(10_000).len(), 9);
    }

    #[test]
    fn only_the_top_third_of_a_rung_goes_on() {
        let mut h = Halving::new(9);
        // Epoch 2 is no rung: always on.
        assert_eq!(h.report(2, 0.0), Verdict::Continue);
        // Rung 1: the first trial is the best so far; the next two must beat the best.
        assert_eq!(h.report(1, 0.90), Verdict::Continue);
        assert_eq!(h.report(1, 0.80), Verdict::Prune);
        assert_eq!(h.report(1, 0.95), Verdict::Continue);
        // Six scores: the top two go on (0.95 and 0.92).
        assert_eq!(h.report(1, 0.70), Verdict::Prune);
        assert_eq!(h.report(1, 0.85), Verdict::Prune);
        assert_eq!(h.report(1, 0.92), Verdict::Continue);
        // A tie with the cut goes on; NaN never does (after one score).
        assert_eq!(h.report(1, 0.92), Verdict::Continue);
        assert_eq!(h.report(1, f32::NAN), Verdict::Prune);
        // Rungs keep their own scores.
        assert_eq!(h.report(3, 0.5), Verdict::Continue);
        assert_eq!(h.rungs(), &[1, 3]);
    }

    #[test]
    fn ranking_best_and_saving() {
        let trial = space().sample(1, 0).remove(0);
        let result = |val: Vec<f32>, interrupted| TrialResult {
            trial: trial.clone(),
            val_accuracy: val,
            pruned_at: None,
            interrupted,
            seconds: 1.0,
        };
        let results = vec![
            result(vec![0.9], false),
            result(vec![0.9, 0.97], false),
            result(vec![], true),
            result(vec![0.99], true),
        ];
        assert_eq!(ranking(&results), vec![3, 1, 0, 2]);
        assert_eq!(best(&results), Some(1), "an interrupted trial is never the best");
        assert_eq!(epochs_saved(&results, 3), (4, 12));
    }

    #[test]
    fn a_trial_puts_its_rate_into_its_optimizer() {
        let base = Optimizer::Sgd { lr: 0.01, momentum: 0.9 };
        let t = Trial { optimizer: None, lr: Some(0.5), batch: None, smoothing: None, model: None };
        assert_eq!(t.optimizer(base), Optimizer::Sgd { lr: 0.5, momentum: 0.9 });
        let t = Trial { optimizer: Some(Optimizer::AdamW { lr: 1e-3, weight_decay: 0.01 }), lr: None, ..t };
        assert_eq!(t.optimizer(base), Optimizer::AdamW { lr: 1e-3, weight_decay: 0.01 });
    }
}
