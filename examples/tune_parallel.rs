//! Measures what `tune` chose: trials one after another, each with all threads, against two
//! trials at once, each with half the threads.
//!
//! `MNISTLAB_DATA=~/.cache/mnistlab cargo run --release --example tune_parallel -- [trials] [epochs] [train images] [preset]`
//! (defaults 4 trials, 1 epoch, 6000 images, seed-cnn) reads the raw IDX files from
//! `$MNISTLAB_DATA/mnist/`, trains the same trials (Adam at four rates, batch 32, validation on
//! 1000 test images) both ways and prints both wall times, in alternating order (sequential
//! first, then parallel, then again) so that a change in the machine's load hits both.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use candle_core::Device;
use mnistlab::data::{idx, ImageFormat, PixelScaling, Split};
use mnistlab::model::{fit, preset, thread_pool, ModelSpec, Network, Optimizer, TrainConfig, TrainData};

fn split(dir: &Path, images: &str, labels: &str, n: usize) -> Split {
    let images = idx::read(&dir.join(images)).unwrap_or_else(|e| panic!("{e}"));
    let labels = idx::read(&dir.join(labels)).unwrap_or_else(|e| panic!("{e}"));
    let n = n.min(labels.dims[0]);
    Split { pixels: images.data[..n * 784].to_vec(), labels: labels.data[..n].to_vec() }
}

/// Trains trial `i` (Adam at rate 1e-4 · 3^i) and returns its last validation accuracy.
fn trial(i: usize, spec: &ModelSpec, train: &Split, val: &Split, epochs: usize) -> f32 {
    let format = ImageFormat { rows: 28, cols: 28, scaling: PixelScaling::Unit };
    let net = Network::new(spec, (1, 28, 28), 10, &Device::Cpu, 0).unwrap();
    let lr = 1e-4 * 3f64.powi(i as i32 % 5);
    let config = TrainConfig { epochs, optimizer: Optimizer::Adam { lr }, ..TrainConfig::default() };
    let history = fit(&net, TrainData::new(train, Some(val), format), &config, &AtomicBool::new(false), &mut |_| {})
        .unwrap_or_else(|e| panic!("{e}"));
    history.epochs.last().and_then(|e| e.val_accuracy).unwrap_or(f32::NAN)
}

fn main() {
    mnistlab::kernels::keep_candle_pool_single_threaded();
    mnistlab::kernels::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let trials: usize = args.get(1).map_or(4, |s| s.parse().expect("trials"));
    let epochs: usize = args.get(2).map_or(1, |s| s.parse().expect("epochs"));
    let n: usize = args.get(3).map_or(6000, |s| s.parse().expect("train images"));
    let spec = preset(args.get(4).map_or("seed-cnn", String::as_str)).expect("unknown preset");
    let root = std::env::var_os("MNISTLAB_DATA").map(PathBuf::from).expect("set MNISTLAB_DATA");
    let dir = root.join("mnist");
    let train = split(&dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", n);
    let val = split(&dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 1000);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let half = (threads / 2).max(1);
    println!("{trials} trials of {epochs} epoch(s) on {n} images, {}, {threads} threads", spec.describe());
    let all = thread_pool(threads).unwrap();
    let sequential = || {
        let started = Instant::now();
        let acc: Vec<f32> = all.install(|| (0..trials).map(|i| trial(i, &spec, &train, &val, epochs)).collect());
        (started.elapsed().as_secs_f64(), acc)
    };
    let parallel = || {
        let started = Instant::now();
        let pools = [thread_pool(half).unwrap(), thread_pool(half).unwrap()];
        let mut acc = vec![f32::NAN; trials];
        std::thread::scope(|scope| {
            let lanes: Vec<_> = pools
                .iter()
                .enumerate()
                .map(|(lane, pool)| {
                    let (spec, train, val) = (&spec, &train, &val);
                    scope.spawn(move || {
                        pool.install(|| {
                            (lane..trials)
                                .step_by(2)
                                .map(|i| (i, trial(i, spec, train, val, epochs)))
                                .collect::<Vec<_>>()
                        })
                    })
                })
                .collect();
            for lane in lanes {
                for (i, a) in lane.join().expect("a trial thread") {
                    acc[i] = a;
                }
            }
        });
        (started.elapsed().as_secs_f64(), acc)
    };
    for round in 1..=2 {
        let (s, acc_s) = sequential();
        println!("round {round}: one after another, {threads} threads each: {s:.1} s (val acc {acc_s:?})");
        let (p, acc_p) = parallel();
        println!("round {round}: two at once, {half} thread(s) each: {p:.1} s (val acc {acc_p:?})");
        println!("round {round}: two at once / one after another = {:.2}", p / s);
    }
}
