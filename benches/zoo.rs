//! Training speed of a zoo of models, every layer kind the language has, through `model::fit`
//! on real MNIST, in both precisions, side by side with the same models in Keras/TensorFlow-CPU
//! and PyTorch on the CPU, each in f32 and in its mixed precision.
//!
//! `cargo bench --bench zoo [-- [images N] [batch B]... [only I]... [model TEXT]... [rounds R]
//! [no-keras] [no-torch] [fp32]]`, after `mnistlab fetch mnist`. For each model (or only the
//! 1-based model numbers given, or the models given as `model` statements' layers in place of
//! the zoo's, `model "conv32 bn dense64"`) and batch size, mnistlab trains a fresh network 20
//! untimed steps, then one timed epoch over the first N training images (default 10,000), in
//! fp32 and, where the CPU has bf16 units, in `precision bf16` (`fp32` skips it); then the Keras
//! peer (`bench/run_keras_zoo.sh`, policies float32 and mixed_bfloat16) and the PyTorch peer
//! (`bench/run_torch_zoo.sh`, fp32 and bf16 autocast), both in the peers' virtual environment,
//! do the same with the same model, Adam 1e-3 and data. They take turns model by model for R
//! rounds (default 1), each keeping its best.
//!
//! Printed first: the CPU's bf16 units, numpy's and candle's sgemm rates and mnistlab's own bf16
//! product rate. Per model and batch: images/s of each, the share of the machine's sgemm rate
//! mnistlab's fp32 reaches (counting 3× the forward pass's multiply-adds of the convolutions
//! and dense layers per image), and three ratios: mnistlab bf16 / the faster peer in mixed
//! precision, mnistlab fp32 / PyTorch fp32, mnistlab bf16 / mnistlab fp32. At the end the
//! geometric mean and lowest of each ratio, and this process's peak memory.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use candle_core::{Device, Tensor};
use mnistlab::data::{dataset::digit_classes, fetch, load, ImageFormat, PixelScaling, Split, SplitKind};
use mnistlab::kernels::{self, Precision};
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

/// The shortest of 5 timed runs of `round`, in seconds, after an untimed one.
fn best_seconds(round: impl Fn()) -> f64 {
    round();
    (0..5)
        .map(|_| {
            let t = Instant::now();
            round();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
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
    let best = best_seconds(round);
    2.0 * (threads * n * n * n) as f64 / best / 1e9
}

/// GFLOP/s of mnistlab's bf16 product (`kernels::matmul` in `precision bf16`) over all rayon
/// threads: one 1024×1024 product per thread at once, best of 5.
fn bf16_product_gflops() -> f64 {
    use rayon::prelude::*;
    let n = 1024;
    let threads = rayon::current_num_threads();
    let a: Vec<f32> = (0..n * n).map(|i| (i % 17) as f32 / 17.0 - 0.5).collect();
    let round = || {
        (0..threads).into_par_iter().for_each(|_| {
            let mut c = vec![0f32; n * n];
            kernels::matmul(Precision::Bf16, (n, n, n), (&mut c, n, 1), (&a, n, 1), (&a, n, 1));
        })
    };
    let best = best_seconds(round);
    2.0 * (threads * n * n * n) as f64 / best / 1e9
}

/// mnistlab's rate for `spec` at `batch` in `precision`: a fresh network, warm-up steps, one
/// timed epoch.
fn mnistlab_rate(spec: &ModelSpec, train: &Split, batch: usize, precision: Precision) -> Rate {
    let mut net = Network::new(spec, (1, 28, 28), 10, &Device::Cpu, 0).expect("zoo models build");
    net.set_precision(precision);
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

/// Runs the peer script `bench/<script>` with `args`, returning its standard output.
fn run_peer(script: &str, args: &[String]) -> Result<String, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench").join(script);
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

/// The value of `key=` in each `prefix` line of the peer's output.
fn field(text: &str, prefix: &str, key: &str) -> Vec<f64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|l| l.split(' ').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok()))
        .collect()
}

/// A peer: its script, the option naming a precision and its two names for them (f32, mixed),
/// and the prefix of its result lines.
struct Peer {
    name: &'static str,
    script: &'static str,
    option: &'static str,
    modes: [&'static str; 2],
    prefix: &'static str,
}

const KERAS: Peer = Peer {
    name: "keras",
    script: "run_keras_zoo.sh",
    option: "--policy",
    modes: ["float32", "mixed_bfloat16"],
    prefix: "keras_images_per_sec ",
};

const TORCH: Peer = Peer {
    name: "torch",
    script: "run_torch_zoo.sh",
    option: "--precision",
    modes: ["fp32", "bf16"],
    prefix: "torch_images_per_sec ",
};

/// A peer's rates for `spec`, by precision (f32, mixed) then batch size.
fn peer_rates(
    peer: &Peer,
    mnist: &Path,
    spec: &ModelSpec,
    batches: &[usize],
    images: usize,
) -> Result<[Vec<Rate>; 2], String> {
    let json = serde_json::to_string(&spec.layers).expect("a spec serializes");
    let mut args = vec![mnist.display().to_string(), "--spec".into(), json, "--images".into(), images.to_string()];
    args.extend(["--warmup".to_string(), WARMUP_STEPS.to_string()]);
    for b in batches {
        args.extend(["--batch".to_string(), b.to_string()]);
    }
    for mode in peer.modes {
        args.extend([peer.option.to_string(), mode.to_string()]);
    }
    let text = run_peer(peer.script, &args)?;
    // Lines hold `<mode key>=<name> batch=<int> wall=<float> cpu=<float>`.
    let key = peer.option.trim_start_matches('-');
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(peer.prefix)).collect();
    let rate = |mode: &str, b: usize| -> Result<Rate, String> {
        let line = lines
            .iter()
            .find(|l| l.contains(&format!(" {key}={mode} ")) && field(l, peer.prefix, "batch") == [b as f64])
            .ok_or(format!("no {} rate for {mode} at batch {b}: {text}", peer.name))?;
        let (wall, cpu) = (field(line, peer.prefix, "wall"), field(line, peer.prefix, "cpu"));
        Ok(Rate { wall: wall[0], cpu: cpu[0] })
    };
    let by_batch = |mode: &str| batches.iter().map(|&b| rate(mode, b)).collect::<Result<Vec<_>, String>>();
    Ok([by_batch(peer.modes[0])?, by_batch(peer.modes[1])?])
}

/// The bench's settings, from its command line.
struct Args {
    images: usize,
    batches: Vec<usize>,
    only: Vec<usize>,
    models: Vec<String>,
    rounds: usize,
    keras: bool,
    torch: bool,
    bf16: bool,
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
            torch: !args.iter().any(|a| a == "no-torch"),
            bf16: !args.iter().any(|a| a == "fp32") && kernels::bf16::units().is_some(),
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
    let numpy = if args.keras {
        match run_peer(KERAS.script, &["--sgemm".into()]) {
            Ok(text) => field(&text, "", "sgemm_gflops").first().copied(),
            Err(why) => {
                println!("numpy's sgemm not measured: {why}");
                None
            }
        }
    } else {
        None
    };
    let candle = candle_sgemm_gflops();
    let sgemm = numpy.unwrap_or(0.0).max(candle);
    let numpy_text = numpy.map_or("not measured".to_string(), |g| format!("{g:.0} GFLOP/s"));
    let units = kernels::bf16::units();
    let units_text = match units {
        Some(u) => format!("{u}, mnistlab's bf16 product {:.0} GFLOP/s", bf16_product_gflops()),
        None => "none (bf16 not run)".to_string(),
    };
    println!(
        "zoo: {n} images, batch {:?}, {} rayon threads; bf16 units: {units_text}; sgemm numpy {numpy_text}, candle {candle:.0} GFLOP/s",
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
    let mut peers: Vec<&Peer> = Vec::new();
    if args.keras {
        peers.push(&KERAS);
    }
    if args.torch {
        peers.push(&TORCH);
    }
    let mut precisions = vec![Precision::F32];
    if args.bf16 {
        precisions.push(Precision::Bf16);
    }
    // Ratios: bf16 / the faster peer's mixed precision, fp32 / PyTorch fp32, bf16 / own fp32.
    let mut ratios: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for &(number, text) in &chosen {
        let spec = spec_of(text);
        let flops = 3.0 * forward_flops(&spec);
        // ours[precision][batch]; theirs[peer][mode][batch].
        let mut ours = vec![vec![Rate::default(); args.batches.len()]; precisions.len()];
        let mut theirs: Vec<Option<[Vec<Rate>; 2]>> = vec![None; peers.len()];
        for _ in 0..args.rounds {
            for (p, &precision) in precisions.iter().enumerate() {
                for (best, &batch) in ours[p].iter_mut().zip(&args.batches) {
                    *best = best.best(mnistlab_rate(&spec, &train, batch, precision));
                }
            }
            for (slot, peer) in theirs.iter_mut().zip(&peers) {
                match peer_rates(peer, &mnist, &spec, &args.batches, n) {
                    Ok(rates) => {
                        let best =
                            |prev: &Vec<Rate>, new: &Vec<Rate>| prev.iter().zip(new).map(|(a, b)| a.best(*b)).collect();
                        *slot = Some(match slot.take() {
                            Some(prev) => [best(&prev[0], &rates[0]), best(&prev[1], &rates[1])],
                            None => rates,
                        });
                    }
                    Err(why) => println!("{} peer did not run: {why}", peer.name),
                }
            }
        }
        for (i, &batch) in args.batches.iter().enumerate() {
            let share = |r: f64| 100.0 * r * flops / 1e9 / sgemm;
            let fp32 = ours[0][i].wall;
            let bf16 = ours.get(1).map(|o| o[i].wall);
            let mut line =
                format!("{number} {text:<66} batch {batch:3}: mnistlab fp32 {fp32:6.0} ({:3.0}% sgemm)", share(fp32));
            if let Some(b) = bf16 {
                line.push_str(&format!(" bf16 {b:6.0}"));
            }
            let mut best_mixed: Option<f64> = None;
            let mut torch_fp32: Option<f64> = None;
            for (peer, rates) in peers.iter().zip(&theirs) {
                match rates {
                    Some([f, m]) => {
                        line.push_str(&format!(" | {} {:6.0} {:6.0}", peer.name, f[i].wall, m[i].wall));
                        best_mixed = Some(best_mixed.unwrap_or(0.0).max(m[i].wall));
                        if peer.name == "torch" {
                            torch_fp32 = Some(f[i].wall);
                        }
                    }
                    None => line.push_str(&format!(" | {} -", peer.name)),
                }
            }
            let mut ratio = |slot: usize, label: &str, r: Option<f64>| {
                if let Some(r) = r {
                    line.push_str(&format!(" | {label} {r:.2}x"));
                    ratios[slot].push(r);
                }
            };
            ratio(0, "bf16/peers' mixed", bf16.zip(best_mixed).map(|(a, b)| a / b));
            ratio(1, "fp32/torch fp32", torch_fp32.map(|t| fp32 / t));
            ratio(2, "bf16/fp32", bf16.map(|b| b / fp32));
            println!("{line}");
        }
    }
    let names = [
        "mnistlab bf16 / faster peer in mixed precision",
        "mnistlab fp32 / PyTorch fp32",
        "mnistlab bf16 / mnistlab fp32",
    ];
    for (name, rs) in names.iter().zip(&ratios) {
        if !rs.is_empty() {
            let geo = (rs.iter().map(|r| r.ln()).sum::<f64>() / rs.len() as f64).exp();
            let min = rs.iter().copied().fold(f64::INFINITY, f64::min);
            println!("{name} over {} runs: geometric mean {geo:.2}x, lowest {min:.2}x", rs.len());
        }
    }
    if let Some(kb) = vm_hwm_kb("self") {
        println!("peak memory of this process: {:.0} MB", kb / 1024.0);
    }
}
