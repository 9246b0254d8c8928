//! The learning-rate range test (Smith 2015; fastai's `lr_find`): train with a rate that grows
//! exponentially batch by batch, watch the smoothed loss, and suggest a rate from its curve.
//! The network's weights are restored afterwards.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::Tensor;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::model::architecture::network::Network;
use crate::model::error::{ModelError, Result};
use crate::model::training::optim::Optimizer;
use crate::model::training::train::{check_fit, fill_batch, loss_fn, param_groups, LabelMap, TrainConfig, TrainData};

/// Weight of the running average in the smoothed loss (fastai's 0.98).
const SMOOTHING: f64 = 0.98;

/// The test stops once the smoothed loss exceeds this multiple of its lowest value.
const DIVERGENCE: f32 = 4.0;

/// Settings of a range test.
#[derive(Debug, Clone)]
pub struct LrFindConfig {
    /// The first rate.
    pub start: f64,
    /// The last rate (reached at the last step unless the loss diverges first).
    pub end: f64,
    /// Batches to train, one rate each.
    pub steps: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// The optimizer; its own rate is replaced by the test's.
    pub optimizer: Optimizer,
    /// Label smoothing of the loss.
    pub label_smoothing: f32,
    /// Seeds the order of the images and the dropout masks.
    pub seed: u64,
    /// Dataset labels to model outputs.
    pub labels: LabelMap,
}

/// Progress of a range test, reported after each step.
#[derive(Debug, Clone, PartialEq)]
pub struct LrStep {
    /// Steps taken.
    pub done: usize,
    /// Steps the test asked for.
    pub steps: usize,
    /// The rate of the last step.
    pub rate: f64,
    /// The smoothed loss at the last step.
    pub smoothed: f32,
    /// Images trained on so far.
    pub images: usize,
    /// Seconds since the test started.
    pub seconds: f64,
}

/// What a range test found.
#[derive(Debug, Clone, PartialEq)]
pub struct LrFind {
    /// The rate of each step taken.
    pub rates: Vec<f64>,
    /// The loss of each step's batch.
    pub losses: Vec<f32>,
    /// The bias-corrected exponential moving average of the losses.
    pub smoothed: Vec<f32>,
    /// The rate where the smoothed loss falls fastest against the log of the rate.
    pub steepest: Option<f64>,
    /// The rate of the lowest smoothed loss, divided by 10.
    pub min_over_10: Option<f64>,
    /// Whether the test stopped early because the loss diverged (or stopped being finite).
    pub diverged: bool,
    /// The rate of the step at which the loss diverged (not in `rates`), if it did.
    pub stopped_at: Option<f64>,
    /// Whether the test was interrupted.
    pub interrupted: bool,
}

/// The rate of step `i` of `steps`: `start` at the first, `end` at the last, exponential between.
pub fn rate_at(start: f64, end: f64, i: usize, steps: usize) -> f64 {
    if steps <= 1 {
        return start;
    }
    start * (end / start).powf(i as f64 / (steps - 1) as f64)
}

/// Runs the range test on `net` with `data.train` (validation and augmentation are not used),
/// then restores every stored tensor of `net` (weights, biases, moving statistics) to what it
/// was. Raising `interrupt` stops after the current batch; what was measured is returned.
/// `progress` hears of each step taken.
pub fn lr_find(
    net: &Network,
    data: TrainData<'_>,
    config: &LrFindConfig,
    interrupt: &AtomicBool,
    progress: &mut dyn FnMut(LrStep),
) -> Result<LrFind> {
    let fit_like = TrainConfig {
        batch_size: config.batch_size,
        label_smoothing: config.label_smoothing,
        labels: config.labels.clone(),
        ..TrainConfig::default()
    };
    check_fit(net, &TrainData { val: None, ..data }, &fit_like)?;
    if !(config.start > 0.0 && config.end > config.start && config.end.is_finite()) {
        return Err(ModelError::Data(format!(
            "the rates must grow from above 0: {}..{} does not",
            config.start, config.end
        )));
    }
    if config.steps < 2 {
        return Err(ModelError::Data("the range test needs at least 2 steps".into()));
    }
    let saved = net.snapshot()?;
    let outcome = run(net, data, config, interrupt, progress);
    net.restore(&saved)?;
    outcome
}

/// The test itself; [`lr_find`] checks its inputs and restores the weights around it.
fn run(
    net: &Network,
    data: TrainData<'_>,
    config: &LrFindConfig,
    interrupt: &AtomicBool,
    progress: &mut dyn FnMut(LrStep),
) -> Result<LrFind> {
    let started = Instant::now();
    let mut images = 0;
    net.reseed_dropout(config.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(3));
    let mut opt = param_groups(net, config.optimizer, None)?;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut order: Vec<usize> = (0..data.train.len()).collect();
    let (rows, cols) = (data.format.rows, data.format.cols);
    let mut buf = vec![0f32; config.batch_size * rows * cols];
    let mut found = LrFind {
        rates: Vec::new(),
        losses: Vec::new(),
        smoothed: Vec::new(),
        steepest: None,
        min_over_10: None,
        diverged: false,
        stopped_at: None,
        interrupted: false,
    };
    let (mut average, mut lowest) = (0f64, f32::INFINITY);
    let per_pass = order.len().div_ceil(config.batch_size);
    for step in 0..config.steps {
        // A fresh shuffle each time the images run out.
        if step % per_pass == 0 {
            order.shuffle(&mut rng);
        }
        let first = (step % per_pass) * config.batch_size;
        let chunk = &order[first..(first + config.batch_size).min(order.len())];
        let rate = rate_at(config.start, config.end, step, config.steps);
        opt.set_rates(|_| rate);
        let batch = &mut buf[..chunk.len() * rows * cols];
        fill_batch(data.train, chunk, data.format, batch);
        let xs = Tensor::from_slice(batch, (chunk.len(), 1, rows, cols), net.device())?;
        let ys = Tensor::from_vec(config.labels.outputs(data.train, chunk), chunk.len(), net.device())?;
        let loss = loss_fn(&net.forward(&xs, true)?, &ys, config.label_smoothing)?;
        let value = loss.to_scalar::<f32>()?;
        average = SMOOTHING * average + (1.0 - SMOOTHING) * value as f64;
        let smooth = (average / (1.0 - SMOOTHING.powi(step as i32 + 1))) as f32;
        if !smooth.is_finite() || smooth > DIVERGENCE * lowest {
            found.diverged = true;
            found.stopped_at = Some(rate);
            break;
        }
        opt.backward_step(&loss)?;
        lowest = lowest.min(smooth);
        found.rates.push(rate);
        found.losses.push(value);
        found.smoothed.push(smooth);
        images += chunk.len();
        let seconds = started.elapsed().as_secs_f64();
        progress(LrStep { done: step + 1, steps: config.steps, rate, smoothed: smooth, images, seconds });
        if interrupt.load(Ordering::Relaxed) {
            found.interrupted = true;
            break;
        }
    }
    (found.steepest, found.min_over_10) = suggestions(&found.rates, &found.smoothed);
    Ok(found)
}

/// The steepest-descent rate and the lowest-loss rate ÷ 10 of a smoothed loss curve.
fn suggestions(rates: &[f64], smoothed: &[f32]) -> (Option<f64>, Option<f64>) {
    let lowest = smoothed.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| rates[i] / 10.0);
    // The slope of the loss against ln(rate) between neighbouring steps; the rate at the start
    // of the steepest fall.
    let steepest = (1..smoothed.len())
        .map(|i| (i - 1, (smoothed[i] - smoothed[i - 1]) as f64 / (rates[i] / rates[i - 1]).ln()))
        .filter(|(_, slope)| slope.is_finite())
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .filter(|(_, slope)| *slope < 0.0)
        .map(|(i, _)| rates[i]);
    (steepest, lowest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{ImageFormat, PixelScaling, SplitKind};
    use crate::model::architecture::spec::ModelSpec;
    use candle_core::Device;

    fn setup() -> (Network, crate::data::Split) {
        let mnist = crate::testdata::mnist_dir();
        let data = crate::data::load::load_official(&mnist, "mnist", crate::data::dataset::digit_classes(), "t")
            .expect("MNIST loads");
        let train = data.split(SplitKind::Train).expect("train split");
        let n = 2048;
        let subset =
            crate::data::Split { pixels: train.pixels[..n * 784].to_vec(), labels: train.labels[..n].to_vec() };
        let spec = ModelSpec::new(vec![
            crate::model::architecture::layers::Layer::conv(8),
            crate::model::architecture::layers::Layer::MaxPool,
        ]);
        (Network::new(&spec, (1, 28, 28), 10, &Device::Cpu, 1).expect("builds"), subset)
    }

    fn config(steps: usize) -> LrFindConfig {
        LrFindConfig {
            start: 1e-6,
            end: 10.0,
            steps,
            batch_size: 32,
            optimizer: Optimizer::Adam { lr: 1e-3 },
            label_smoothing: 0.0,
            seed: 0,
            labels: LabelMap::identity(),
        }
    }

    const FORMAT: ImageFormat = ImageFormat { rows: 28, cols: 28, scaling: PixelScaling::Unit };

    #[test]
    fn rates_grow_exponentially_from_start_to_end() {
        assert_eq!(rate_at(1e-7, 10.0, 0, 100), 1e-7);
        assert!((rate_at(1e-7, 10.0, 99, 100) - 10.0).abs() < 1e-9);
        let ratios: Vec<f64> = (1..5).map(|i| rate_at(1e-3, 1.0, i, 5) / rate_at(1e-3, 1.0, i - 1, 5)).collect();
        assert!(ratios.windows(2).all(|w| (w[0] - w[1]).abs() < 1e-9), "{ratios:?}");
    }

    #[test]
    fn the_test_finds_a_rate_and_restores_the_weights_bit_for_bit() {
        let (net, train) = setup();
        let before = net.snapshot().unwrap();
        let stop = AtomicBool::new(false);
        let found = lr_find(&net, TrainData::new(&train, None, FORMAT), &config(120), &stop, &mut |_| {}).unwrap();
        let after = net.snapshot().unwrap();
        for ((name, a), (_, b)) in before.iter().zip(&after) {
            let (a, b) = (
                a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "{name} changed");
        }
        assert!(found.rates.len() > 10 && found.rates.len() <= 120, "{}", found.rates.len());
        assert!(!found.interrupted);
        let (steepest, low) = (found.steepest.unwrap(), found.min_over_10.unwrap());
        assert!((1e-6..10.0).contains(&steepest) && (1e-7..1.0).contains(&low), "{steepest} {low}");
        // The loss fell somewhere along the way: the lowest smoothed loss is below the first.
        let min = found.smoothed.iter().copied().fold(f32::INFINITY, f32::min);
        assert!(min < found.smoothed[0] * 0.9, "{:?}", found.smoothed);
    }

    #[test]
    fn a_diverging_loss_stops_the_test() {
        let (net, train) = setup();
        let stop = AtomicBool::new(false);
        let mut c = config(60);
        (c.start, c.end, c.optimizer) = (1e-2, 1e4, Optimizer::Sgd { lr: 1.0, momentum: 0.0 });
        let found = lr_find(&net, TrainData::new(&train, None, FORMAT), &c, &stop, &mut |_| {}).unwrap();
        assert!(found.diverged, "{found:?}");
        assert!(found.rates.len() < 60);
        let next = rate_at(c.start, c.end, found.rates.len(), c.steps);
        assert_eq!(found.stopped_at, Some(next), "the rate of the step that diverged");
    }

    #[test]
    fn an_interrupt_stops_after_one_batch() {
        let (net, train) = setup();
        let stop = AtomicBool::new(true);
        let found = lr_find(&net, TrainData::new(&train, None, FORMAT), &config(50), &stop, &mut |_| {}).unwrap();
        assert!(found.interrupted);
        assert_eq!(found.rates.len(), 1);
    }

    #[test]
    fn bad_settings_are_refused() {
        let (net, train) = setup();
        let stop = AtomicBool::new(false);
        let data = TrainData::new(&train, None, FORMAT);
        let mut c = config(10);
        c.start = 1.0;
        c.end = 0.1;
        assert!(lr_find(&net, data, &c, &stop, &mut |_| {}).unwrap_err().to_string().contains("must grow"));
        let c = config(1);
        assert!(lr_find(&net, data, &c, &stop, &mut |_| {}).unwrap_err().to_string().contains("at least 2 steps"));
    }

    #[test]
    fn suggestions_follow_the_curve() {
        let rates = [1e-4, 1e-3, 1e-2, 1e-1, 1.0];
        let smoothed = [2.0, 1.9, 1.0, 0.8, 3.0];
        let (steepest, low) = suggestions(&rates, &smoothed);
        assert_eq!(steepest, Some(1e-3));
        assert_eq!(low, Some(1e-2));
        assert_eq!(suggestions(&[1.0], &[1.0]), (None, Some(0.1)));
    }
}
