//! Training-step speed of the article's CNN (conv32 pool conv64 pool conv64 dense64 dense10,
//! 3×3 valid convolutions, ReLU, 28×28×1 input), built once from candle's own operations and
//! once from `mnistlab::model::fast`, on random MNIST-shaped data.
//!
//! `cargo bench --bench train_step [-- [candle|fast] [BATCH...]]`: prints images/s of a full
//! training step (forward, loss, backward, AdamW step) and of the forward pass alone.

use std::time::{Duration, Instant};

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{AdamW, Conv2d, Linear, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use mnistlab::model::fast;
use rand::{Rng, SeedableRng};

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
            let conv = |x: &Tensor, c: &Conv2d| fast::conv2d(x, c.weight(), c.bias(), 0, 1, true);
            let x = fast::max_pool2d(&conv(x, &self.c1)?, 2)?;
            let x = fast::max_pool2d(&conv(&x, &self.c2)?, 2)?;
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

/// Images per second of `step` run on batches of `batch` images.
fn images_per_s(batch: usize, mut step: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..3 {
        step()?;
    }
    let start = Instant::now();
    let mut steps = 0usize;
    while start.elapsed() < MEASURE {
        step()?;
        steps += 1;
    }
    Ok((steps * batch) as f64 / start.elapsed().as_secs_f64())
}

/// (training step, forward only) images/s of one model at one batch size.
fn measure(fast: bool, batch: usize) -> Result<(f64, f64)> {
    let dev = Device::Cpu;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let pixels: Vec<f32> = (0..batch * 784).map(|_| rng.random()).collect();
    let labels: Vec<u32> = (0..batch).map(|_| rng.random_range(0..10)).collect();
    let x = Tensor::from_vec(pixels, (batch, 1, 28, 28), &dev)?;
    let y = Tensor::from_vec(labels, batch, &dev)?;
    let varmap = VarMap::new();
    let net = Net::new(VarBuilder::from_varmap(&varmap, DType::F32, &dev), fast)?;
    let params = ParamsAdamW {
        lr: 1e-3,
        weight_decay: 0.0,
        ..Default::default()
    };
    let mut opt = AdamW::new(varmap.all_vars(), params)?;
    let train = images_per_s(batch, || {
        let loss = candle_nn::loss::cross_entropy(&net.forward(&x)?, &y)?;
        opt.backward_step(&loss)
    })?;
    let forward = images_per_s(batch, || net.forward(&x).map(|_| ()))?;
    Ok((train, forward))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let only = args
        .iter()
        .find(|a| *a == "candle" || *a == "fast")
        .cloned();
    let mut batches: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if batches.is_empty() {
        batches = vec![32, 128];
    }
    println!(
        "article CNN, {} rayon threads; images/s (train step = forward + loss + backward + AdamW)",
        rayon::current_num_threads()
    );
    for batch in batches {
        let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
        let candle = if run("candle") {
            Some(measure(false, batch)?)
        } else {
            None
        };
        let fast = if run("fast") {
            Some(measure(true, batch)?)
        } else {
            None
        };
        for (name, r) in [("candle", candle), ("fast", fast)] {
            if let Some((train, fwd)) = r {
                println!("batch {batch:4} {name:6}: train {train:8.0}  forward {fwd:8.0}");
            }
        }
        if let (Some(c), Some(f)) = (candle, fast) {
            println!(
                "batch {batch:4} speedup: train {:.1}x  forward {:.1}x",
                f.0 / c.0,
                f.1 / c.1
            );
        }
    }
    Ok(())
}
