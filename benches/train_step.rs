//! Training-step speed of the article's CNN (conv32 pool conv64 pool conv64 dense64 dense10,
//! 3×3 valid convolutions, ReLU, 28×28×1 input), built once from candle's own operations and
//! once from `mnistlab::kernels`, on random MNIST-shaped data.
//!
//! `cargo bench --bench train_step [-- [candle|fast] [BATCH...]]`: prints images/s of a full
//! training step (forward, loss, backward, AdamW step) and of the forward pass alone.

use std::time::{Duration, Instant};

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{AdamW, Conv2d, Linear, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use mnistlab::kernels::{self, Precision};
use rand::{Rng, SeedableRng};

mod common;
use common::cpu_seconds;

/// How long each measurement runs, after warming up.
const MEASURE: Duration = Duration::from_secs(3);

/// The article's CNN.
struct Net {
    c1: Conv2d,
    c2: Conv2d,
    c3: Conv2d,
    d1: Linear,
    d2: Linear,
    fast: bool,
}

impl Net {
    fn new(vb: VarBuilder, fast: bool) -> Result<Self> {
        let cfg = Default::default();
        Ok(Self {
            c1: candle_nn::conv2d(1, 32, 3, cfg, vb.pp("c1"))?,
            c2: candle_nn::conv2d(32, 64, 3, cfg, vb.pp("c2"))?,
            c3: candle_nn::conv2d(64, 64, 3, cfg, vb.pp("c3"))?,
            d1: candle_nn::linear(576, 64, vb.pp("d1"))?,
            d2: candle_nn::linear(64, 10, vb.pp("d2"))?,
            fast,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = if self.fast {
            let conv = |x: &Tensor, c: &Conv2d| kernels::conv2d(x, c.weight(), c.bias(), (0, 1, true), Precision::F32);
            let x = kernels::max_pool2d(&conv(x, &self.c1)?, 2)?;
            let x = kernels::max_pool2d(&conv(&x, &self.c2)?, 2)?;
            conv(&x, &self.c3)?
        } else {
            let x = x.apply(&self.c1)?.relu()?.max_pool2d(2)?;
            let x = x.apply(&self.c2)?.relu()?.max_pool2d(2)?;
            x.apply(&self.c3)?.relu()?
        };
        let x = self.d1.forward(&x.flatten_from(1)?)?.relu()?;
        self.d2.forward(&x)
    }
}

/// Images per second of `step` run on batches of `batch` images: (median step, fastest step).
/// The machine is shared, so the fastest step shows the speed with both cores free.
fn images_per_s(batch: usize, mut step: impl FnMut() -> Result<()>) -> Result<Speed> {
    for _ in 0..3 {
        step()?;
    }
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    let mut times = Vec::new();
    while start.elapsed() < MEASURE || times.len() < 5 {
        let t = Instant::now();
        step()?;
        times.push(t.elapsed().as_secs_f64());
    }
    let cpu = cpu_seconds().zip(cpu_start).map(|(end, start)| end - start);
    let per_cpu_s = cpu.map_or(f64::NAN, |c| (times.len() * batch) as f64 / c);
    times.sort_by(f64::total_cmp);
    let rate = |t: f64| batch as f64 / t;
    Ok(Speed { median: rate(times[times.len() / 2]), best: rate(times[0]), per_cpu_s })
}

/// Images per second.
#[derive(Clone, Copy)]
struct Speed {
    median: f64,
    best: f64,
    /// Images per CPU-second: unlike wall-clock rates, not lowered by other processes.
    per_cpu_s: f64,
}

impl std::fmt::Display for Speed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:6.0} (best {:6.0}, {:6.0}/cpu-s)", self.median, self.best, self.per_cpu_s)
    }
}

/// (training step, forward only) images/s of one model at one batch size.
fn measure(fast: bool, batch: usize) -> Result<(Speed, Speed)> {
    let dev = Device::Cpu;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let pixels: Vec<f32> = (0..batch * 784).map(|_| rng.random()).collect();
    let labels: Vec<u32> = (0..batch).map(|_| rng.random_range(0..10)).collect();
    let x = Tensor::from_vec(pixels, (batch, 1, 28, 28), &dev)?;
    let y = Tensor::from_vec(labels, batch, &dev)?;
    let varmap = VarMap::new();
    let net = Net::new(VarBuilder::from_varmap(&varmap, DType::F32, &dev), fast)?;
    let params = ParamsAdamW { lr: 1e-3, weight_decay: 0.0, ..Default::default() };
    let mut opt = AdamW::new(varmap.all_vars(), params)?;
    // Time spent in forward + loss, backward and the optimizer step.
    let mut phases = [Duration::ZERO; 3];
    let train = images_per_s(batch, || {
        let t0 = Instant::now();
        let loss = candle_nn::loss::cross_entropy(&net.forward(&x)?, &y)?;
        let t1 = Instant::now();
        let grads = loss.backward()?;
        let t2 = Instant::now();
        opt.step(&grads)?;
        for (p, d) in phases.iter_mut().zip([t1 - t0, t2 - t1, t2.elapsed()]) {
            *p += d;
        }
        Ok(())
    })?;
    let total: Duration = phases.iter().sum();
    let pct = |d: Duration| 100.0 * d.as_secs_f64() / total.as_secs_f64();
    println!(
        "batch {batch:4} {:6}: time in forward+loss {:.0}%, backward {:.0}%, optimizer {:.0}%",
        if fast { "fast" } else { "candle" },
        pct(phases[0]),
        pct(phases[1]),
        pct(phases[2])
    );
    let forward = images_per_s(batch, || net.forward(&x).map(|_| ()))?;
    Ok((train, forward))
}

/// CPU milliseconds per call of `f` (all threads, so not inflated by waiting for other
/// processes): the least of five windows of at least 0.3 s each, as other processes on the
/// machine only ever slow a window down.
fn millis(mut f: impl FnMut() -> Result<Tensor>) -> Result<f64> {
    f()?;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let (start, cpu_start) = (Instant::now(), cpu_seconds());
        let mut calls = 0;
        while start.elapsed() < Duration::from_millis(300) || calls < 5 {
            f()?;
            calls += 1;
        }
        let cpu = cpu_seconds().zip(cpu_start).map(|(end, start)| end - start);
        best = best.min(cpu.map_or(f64::NAN, |c| c * 1e3 / calls as f64));
    }
    Ok(best)
}

/// Forward and forward + backward time of each layer of the fast model. The weights are
/// variables; the input of conv1 is data (no input gradient), the others are variables.
fn layer_times(batch: usize) -> Result<()> {
    let dev = Device::Cpu;
    let r = |shape: &[usize]| Tensor::rand(-1f32, 1f32, shape, &dev);
    let v = |shape: &[usize]| -> Result<Tensor> { Ok(candle_core::Var::from_tensor(&r(shape)?)?.as_tensor().clone()) };
    let x1 = r(&[batch, 1, 28, 28])?;
    let (x2, x3) = (v(&[batch, 32, 13, 13])?, v(&[batch, 64, 5, 5])?);
    let (p1, p2) = (v(&[batch, 32, 26, 26])?, v(&[batch, 64, 11, 11])?);
    let (w1, b1) = (v(&[32, 1, 3, 3])?, v(&[32])?);
    let (w2, b2) = (v(&[64, 32, 3, 3])?, v(&[64])?);
    let (w3, b3) = (v(&[64, 64, 3, 3])?, v(&[64])?);
    println!("batch {batch}: CPU ms per layer (fast ops): forward, forward + backward");
    let layers: [(&str, &dyn Fn() -> Result<Tensor>); 8] = [
        // candle's autograd bookkeeping alone on a conv1-sized activation, for comparison.
        ("copy1", &|| p1.affine(1.0, 0.0)),
        ("conv1", &|| kernels::conv2d(&x1, &w1, Some(&b1), (0, 1, true), Precision::F32)),
        ("pool1", &|| kernels::max_pool2d(&p1, 2)),
        ("conv2", &|| kernels::conv2d(&x2, &w2, Some(&b2), (0, 1, true), Precision::F32)),
        ("pool2", &|| kernels::max_pool2d(&p2, 2)),
        ("conv3", &|| kernels::conv2d(&x3, &w3, Some(&b3), (0, 1, true), Precision::F32)),
        // The fused convolution + ReLU + pooling the networks use.
        ("conv1+pool", &|| kernels::conv2d_pool(&x1, &w1, Some(&b1), (0, 1, true), 2, Precision::F32)),
        ("conv2+pool", &|| kernels::conv2d_pool(&x2, &w2, Some(&b2), (0, 1, true), 2, Precision::F32)),
    ];
    for (name, f) in layers {
        let fwd = millis(f)?;
        let grad_out = r(f()?.dims())?;
        let both = millis(|| {
            let y = f()?;
            (&y * &grad_out)?.sum_all()?.backward()?;
            Ok(y)
        })?;
        println!("  {name:10} {fwd:7.3} {both:7.3}");
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let only = args.iter().find(|a| *a == "candle" || *a == "fast").cloned();
    let mut batches: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if batches.is_empty() {
        batches = vec![32, 128];
    }
    if args.iter().any(|a| a == "layers") {
        for &batch in &batches {
            layer_times(batch)?;
        }
        return Ok(());
    }
    println!(
        "article CNN, {} rayon threads; images/s, median step (fastest step); train step = forward + loss + backward + AdamW",
        rayon::current_num_threads()
    );
    for batch in batches {
        let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
        let candle = if run("candle") { Some(measure(false, batch)?) } else { None };
        let fast = if run("fast") { Some(measure(true, batch)?) } else { None };
        for (name, r) in [("candle", candle), ("fast", fast)] {
            if let Some((train, fwd)) = r {
                println!("batch {batch:4} {name:6}: train {train}  forward {fwd}");
            }
        }
        if let (Some(c), Some(f)) = (candle, fast) {
            println!(
                "batch {batch:4} speedup (median): train {:.1}x  forward {:.1}x",
                f.0.median / c.0.median,
                f.1.median / c.1.median
            );
        }
    }
    Ok(())
}
