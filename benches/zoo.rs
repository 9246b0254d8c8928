//! Training speed of a zoo of models, every layer kind the language has, through `model::fit`
//! on real MNIST, side by side with the same models in Keras/TensorFlow-CPU.
//!
//! `cargo bench --bench zoo [-- [images N] [batch B]... [only I]... [model TEXT]... [rounds R] [no-keras]]`,
//! after `mnistlab fetch mnist`. For each model (or only the 1-based model numbers given, or the
//! models given as `model` statements' layers in place of the zoo's, `model "conv32 bn dense64"`) and batch
//! size, mnistlab trains a fresh network 20 untimed steps, then one timed epoch over the first
//! N training images (default 10,000); then the Keras peer (`bench/run_keras_zoo.sh`, its own
//! virtual environment) does the same with the same model, Adam 1e-3 and data. The two take
//! turns model by model for R rounds (default 1), each keeping its best. Printed per model and
//! batch: images/s of both, the ratio, and the share of the machine's sgemm rate each reaches
//! (the better of numpy's sgemm, measured by the peer, and candle's CPU matmul on every thread,
//! measured here),
//! counting 3× the forward pass's multiply-adds of the convolutions and dense layers per image;
//! at the end the geometric mean of the ratios and this process's peak memory.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use candle_core::{Device, Tensor};
use mnistlab::data::{dataset::digit_classes, fetch, load, ImageFormat, PixelScaling, Split, SplitKind};
use mnistlab::lang::{parse_line, ModelChoice, StatementKind};
use mnistlab::model::architecture::layers::Node;
use mnistlab::model::architecture::spec::Shape;
use mnistlab::model::{fit, Layer, ModelSpec, Network, Optimizer, TrainConfig, TrainData};

mod common;
use common::{cpu_seconds, vm_hwm_kb, Rate};

/// The zoo: the models of issue 12's table, as a user types them.
const MODELS: [&str; 9] = [
    "conv32 pool dense128",
    "conv32 pool conv64 pool conv64 dense64",
    "conv32 bn pool conv64 bn pool dense128",
    "conv32 conv64 pool dropout 0.25 dense128 dropout 0.5",
    "conv32k5 pool conv64k5 pool dense128",
    "conv32 same conv32 same pool conv64 same conv64 same pool dense256",
    "dense512 dense512",
    "conv6k5 same avgpool conv16k5 avgpool dense120 dense84",
    "conv32 conv64 pool conv128 gap",
];

/// Untimed steps before the timed epoch (allocator, threads and, in Keras, tracing warm up).
const WARMUP_STEPS: usize = 20;

/// The spec of `text` (`model` statement syntax without the keyword).
fn spec_of(text: &str) -> ModelSpec {
    match parse_line(&format!("model {text}"), 1).map(|s| s.map(|s| s.kind)) {
        Ok(Some(StatementKind::Model(ModelChoice::Layers(spec)))) => spec,
        other => panic!("zoo model `{text}` does not parse as layers: {other:?}"),
    }
}

/// Multiply-adds × 2 of one image's forward pass through the convolutions and dense layers.
fn forward_flops(spec: &ModelSpec) -> f64 {
    let infos = spec.output_shapes((1, 28, 28), 10).expect("zoo models build");
    let mut flops = 0.0;
    for info in &infos {
        flops += match (&info.node, info.input, info.output) {
            (Node::Hidden(Layer::Conv(conv)), Shape::Image(cin, _, _), Shape::Image(cout, oh, ow)) => {
                2.0 * (conv.kernel * conv.kernel * cin * cout * oh * ow) as f64
            }
            (Node::Hidden(Layer::Dense(_)) | Node::Output(_), input, Shape::Flat(units)) => {
                2.0 * (input.size() * units) as f64
            }
            _ => 0.0,
        };
    }
    flops
}

/// GFLOP/s of candle's CPU float32 matmul over all rayon threads: one 1024×1024 product per
/// thread at once (candle's own pool is kept to one thread, as in training), best of 5.
fn candle_sgemm_gflops() -> f64 {
    use rayon::prelude::*;
    let n = 1024;
    let threads = rayon::current_num_threads();
    let pairs: Vec<(Tensor, Tensor)> = (0..threads)
        .map(|_| {
            let m = || Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu).expect("randn");
            (m(), m())
        })
        .collect();
    let round = || pairs.par_iter().for_each(|(a, b)| drop(a.matmul(b).expect("matmul")));
    round();
    let best = (0..5)
        .map(|_| {
            let t = Instant::now();
            round();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    2.0 * (threads * n * n * n) as f64 / best / 1e9
}

/// mnistlab's rate for `spec` at `batch`: a fresh network, warm-up steps, one timed epoch.
fn mnistlab_rate(spec: &ModelSpec, train: &Split, batch: usize) -> Rate {
    let net = Network::new(spec, (1, 28, 28), 10, &Device::Cpu, 0).expect("zoo models build");
    let format = ImageFormat { rows: 28, cols: 28, scaling: PixelScaling::Unit };
    let stop = AtomicBool::new(false);
    let config =
        TrainConfig { epochs: 1, batch_size: batch, optimizer: Optimizer::Adam { lr: 1e-3 }, ..TrainConfig::default() };
    let warm = (WARMUP_STEPS * batch).min(train.len());
    let warm = Split { pixels: train.pixels[..warm * 784].to_vec(), labels: train.labels[..warm].to_vec() };
    fit(&net, TrainData::new(&warm, None, format), &config, &stop, &mut |_| {}).expect("trains");
    let (wall0, cpu0) = (Instant::now(), cpu_seconds());
    fit(&net, TrainData::new(train, None, format), &config, &stop, &mut |_| {}).expect("trains");
    let wall = wall0.elapsed().as_secs_f64();
    let cpu = cpu_seconds().zip(cpu0).map_or(f64::NAN, |(b, a)| b - a);
    Rate { wall: train.len() as f64 / wall, cpu: train.len() as f64 / cpu }
}

/// Runs the Keras peer script with `args`, returning its standard output.
fn run_peer(args: &[String]) -> Result<String, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/run_keras_zoo.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("{} failed ({}): {}", script.display(), out.status, text.trim()));
    }
    Ok(text)
}

/// The value of `key=` in a `prefix` line of the peer's output.
fn field(text: &str, prefix: &str, key: &str) -> Vec<f64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|l| l.split(' ').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok()))
        .collect()
}

/// Keras rates by batch size for `spec`.
fn keras_rates(mnist: &Path, spec: &ModelSpec, batches: &[usize], images: usize) -> Result<Vec<Rate>, String> {
    let json = serde_json::to_string(&spec.layers).expect("a spec serializes");
    let mut args = vec![mnist.display().to_string(), "--spec".into(), json, "--images".into(), images.to_string()];
    args.extend(["--warmup".to_string(), WARMUP_STEPS.to_string()]);
    for b in batches {
        args.extend(["--batch".to_string(), b.to_string()]);
    }
    let text = run_peer(&args)?;
    let prefix = "keras_images_per_sec ";
    let (bs, walls, cpus) = (field(&text, prefix, "batch"), field(&text, prefix, "wall"), field(&text, prefix, "cpu"));
    batches
        .iter()
        .map(|&b| {
            let i = bs.iter().position(|&x| x as usize == b).ok_or(format!("no Keras rate for batch {b}: {text}"))?;
            Ok(Rate { wall: walls[i], cpu: cpus[i] })
        })
        .collect()
}

/// The bench's settings, from its command line.
struct Args {
    images: usize,
    batches: Vec<usize>,
    only: Vec<usize>,
    models: Vec<String>,
    rounds: usize,
    keras: bool,
}

impl Args {
    fn parse() -> Args {
        let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
        let after = |key: &str| -> Vec<usize> {
            args.windows(2).filter(|w| w[0] == key).filter_map(|w| w[1].parse().ok()).collect()
        };
        let batches = after("batch");
        Args {
            images: after("images").first().copied().unwrap_or(10_000).max(1),
            batches: if batches.is_empty() { vec![32, 128] } else { batches },
            only: after("only"),
            models: args.windows(2).filter(|w| w[0] == "model").map(|w| w[1].clone()).collect(),
            rounds: after("rounds").first().copied().unwrap_or(1).max(1),
            keras: !args.iter().any(|a| a == "no-keras"),
        }
    }
}

fn main() {
    // As the `mnistlab` command does.
    mnistlab::kernels::keep_candle_pool_single_threaded();
    mnistlab::kernels::keep_freed_memory();
    let args = Args::parse();
    let mnist = fetch::cache_dir().join("mnist");
    let data = load::load_official(&mnist, "mnist", digit_classes(), "bench").unwrap_or_else(|e| {
        eprintln!("cannot load MNIST from {}: {e} (run `mnistlab fetch mnist` first)", mnist.display());
        std::process::exit(1);
    });
    let full = data.split(SplitKind::Train).expect("MNIST has a train split");
    let n = args.images.min(full.len());
    let train = Split { pixels: full.pixels[..n * 784].to_vec(), labels: full.labels[..n].to_vec() };
    let mut keras_ok = args.keras;
    let numpy = if keras_ok {
        match run_peer(&["--sgemm".into()]) {
            Ok(text) => field(&text, "", "sgemm_gflops").first().copied(),
            Err(why) => {
                println!("keras peer did not run: {why}");
                keras_ok = false;
                None
            }
        }
    } else {
        None
    };
    let candle = candle_sgemm_gflops();
    let sgemm = numpy.unwrap_or(0.0).max(candle);
    let numpy_text = numpy.map_or("not measured".to_string(), |g| format!("{g:.0} GFLOP/s"));
    println!(
        "zoo: {n} images, batch {:?}, {} rayon threads; sgemm numpy {numpy_text}, candle {candle:.0} GFLOP/s",
        args.batches,
        rayon::current_num_threads()
    );
    let given: Vec<&str> = args.models.iter().map(String::as_str).collect();
    let chosen: Vec<(usize, &str)> = (if given.is_empty() { &MODELS[..] } else { &given[..] })
        .iter()
        .enumerate()
        .filter(|(i, _)| args.only.is_empty() || args.only.contains(&(i + 1)))
        .map(|(i, m)| (i + 1, *m))
        .collect();
    let mut rows = Vec::new();
    for &(number, text) in &chosen {
        let spec = spec_of(text);
        let flops = 3.0 * forward_flops(&spec);
        let mut ours = vec![Rate::default(); args.batches.len()];
        let mut theirs: Option<Vec<Rate>> = None;
        for _ in 0..args.rounds {
            for (best, &batch) in ours.iter_mut().zip(&args.batches) {
                *best = best.best(mnistlab_rate(&spec, &train, batch));
            }
            if keras_ok {
                match keras_rates(&mnist, &spec, &args.batches, n) {
                    Ok(rates) => {
                        let prev = theirs.take().unwrap_or_else(|| vec![Rate::default(); rates.len()]);
                        theirs = Some(prev.into_iter().zip(rates).map(|(a, b)| a.best(b)).collect());
                    }
                    Err(why) => {
                        println!("keras peer did not run: {why}");
                        keras_ok = false;
                    }
                }
            }
        }
        for (i, &batch) in args.batches.iter().enumerate() {
            let (m, k) = (ours[i], theirs.as_ref().map(|t| t[i]));
            let share = |r: f64| 100.0 * r * flops / 1e9 / sgemm;
            let keras_text = k.map_or("        -".to_string(), |k| format!("{:9.0}", k.wall));
            let ratio = k.map(|k| m.wall / k.wall);
            let ratio_text = ratio.map_or("    -".to_string(), |r| format!("{r:4.2}x"));
            let keras_share = k.map_or("   -".to_string(), |k| format!("{:3.0}%", share(k.wall)));
            println!(
                "{number} {text:<66} batch {batch:3}: mnistlab {:7.0} ({:3.0}% sgemm), keras {keras_text} ({keras_share}), ratio {ratio_text}",
                m.wall,
                share(m.wall)
            );
            rows.push(ratio);
        }
    }
    let ratios: Vec<f64> = rows.iter().flatten().copied().collect();
    if !ratios.is_empty() {
        let geo = (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp();
        let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        println!("ratio mnistlab/keras over {} runs: geometric mean {geo:.2}x, lowest {min:.2}x", ratios.len());
    }
    if let Some(kb) = vm_hwm_kb("self") {
        println!("peak memory of this process: {:.0} MB", kb / 1024.0);
    }
}
