//! Training speed of the article's CNN (`seed-cnn`) through `model::fit` on real MNIST, in fp32
//! and (where the CPU has bf16 units) in `precision bf16`, side by side with the same model,
//! optimizer (Adam 1e-3) and data in Keras/TensorFlow-CPU, and the time of a whole script from
//! `load mnist` to 99% official-test accuracy, in both precisions.
//!
//! `cargo bench --bench train [-- [steps N] [rounds R] [batch B]... [no-keras] [no-script]]`, after
//! `mnistlab fetch mnist`. The Keras peer runs through `bench/run_keras_train.sh`, which sets up
//! its own virtual environment; when it cannot run, mnistlab's numbers are printed alone. The
//! two take turns for R rounds (default 3), one warm-up and one timed run each per round, and
//! the best round of each counts. The
//! script is `examples/fast99.lab`, run for seeds 1-4 in turns with the script it replaced
//! (`benches/fast99_before.lab`) and with itself after `precision bf16`, by the release binary under `/usr/bin/time -v` when present
//! (peak memory from it), else with the peak read from `/proc`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use candle_core::Device;
use mnistlab::data::{dataset::digit_classes, fetch, load, ImageFormat, PixelScaling, Split, SplitKind};
use mnistlab::kernels::{self, Precision};
use mnistlab::model::{fit, preset, Network, Optimizer, TrainConfig, TrainData};

mod common;
use common::{cpu_seconds, vm_hwm_kb, Rate};

/// The 1-minute load average, from /proc/loadavg.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split(' ').next()?.parse().ok()
}

/// Trains a fresh `seed-cnn` for `steps` steps of `batch` images (one epoch over the first
/// `steps × batch` training images) through `fit` in `precision`, once untimed (allocator and
/// threads warm up) and once timed.
fn mnistlab_rate(train: &Split, batch: usize, steps: usize, precision: Precision) -> Rate {
    let n = (steps * batch).min(train.len());
    let subset = Split { pixels: train.pixels[..n * 784].to_vec(), labels: train.labels[..n].to_vec() };
    let spec = preset("seed-cnn").expect("seed-cnn is a preset");
    let config =
        TrainConfig { epochs: 1, batch_size: batch, optimizer: Optimizer::Adam { lr: 1e-3 }, ..TrainConfig::default() };
    let stop = AtomicBool::new(false);
    let fresh_net = || {
        let mut net = Network::new(&spec, (1, 28, 28), 10, &Device::Cpu, 0).expect("builds seed-cnn");
        net.set_precision(precision);
        net
    };
    let fit_once = |net: &Network| {
        let format = ImageFormat { rows: 28, cols: 28, scaling: PixelScaling::Unit };
        fit(net, TrainData::new(&subset, None, format), &config, &stop, &mut |_| {}).expect("trains")
    };
    fit_once(&fresh_net());
    let net = fresh_net();
    let (wall0, cpu0) = (Instant::now(), cpu_seconds());
    fit_once(&net);
    let wall = wall0.elapsed().as_secs_f64();
    let cpu = cpu_seconds().zip(cpu0).map_or(f64::NAN, |(b, a)| b - a);
    Rate { wall: n as f64 / wall, cpu: n as f64 / cpu }
}

/// Keras rates by batch size from `bench/run_keras_train.sh`, or why there are none.
fn keras_rates(mnist: &Path, batches: &[usize], steps: usize) -> Result<Vec<(usize, Rate)>, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/run_keras_train.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).arg(mnist).args(["--steps", &steps.to_string(), "--runs", "1"]);
    for b in batches {
        cmd.args(["--batch", &b.to_string()]);
    }
    let out = cmd.stderr(Stdio::inherit()).output().map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("{} failed ({}): {}", script.display(), out.status, text.trim()));
    }
    let mut rates = Vec::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("keras_images_per_sec ")) {
        let field =
            |name: &str| line.split(' ').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse::<f64>().ok());
        if let (Some(b), Some(wall), Some(cpu)) = (field("batch"), field("wall"), field("cpu")) {
            rates.push((b as usize, Rate { wall, cpu }));
        }
    }
    if rates.is_empty() {
        return Err(format!("no `keras_images_per_sec` lines in the output of {}", script.display()));
    }
    Ok(rates)
}

/// What running the end-to-end script gave.
struct ScriptRun {
    seconds: f64,
    accuracy: Option<f64>,
    peak_rss_mb: Option<f64>,
    ok: bool,
}

/// The accuracy `evaluate test` printed (`test: loss 0.0301 - accuracy 0.9912 (...)`).
fn test_accuracy(output: &str) -> Option<f64> {
    let line = output.lines().rev().find(|l| l.trim_start().starts_with("test: loss"))?;
    line.split("accuracy ").nth(1)?.split(' ').next()?.parse().ok()
}

/// Runs `mnistlab run <script>` with the release binary, timing it and measuring peak memory.
fn run_script(script: &Path) -> Result<ScriptRun, String> {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_mnistlab"));
    let gnu_time = Path::new("/usr/bin/time");
    let mut cmd = if gnu_time.is_file() {
        let mut c = Command::new(gnu_time);
        c.arg("-v").arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.arg("run").arg(script).current_dir(std::env::temp_dir());
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    let pid = child.id();
    // Without GNU time, sample the child's peak until it exits (its last sample counts).
    let mut sampled = None;
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err_reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if !gnu_time.is_file() {
            sampled = vm_hwm_kb(&pid.to_string()).or(sampled);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let seconds = started.elapsed().as_secs_f64();
    let (out, err) = (out_reader.join().unwrap_or_default(), err_reader.join().unwrap_or_default());
    let from_time = err.lines().find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes): "));
    let peak_kb = from_time.and_then(|v| v.trim().parse::<f64>().ok()).or(sampled);
    if !status.success() {
        eprintln!("{out}\n{err}");
    }
    Ok(ScriptRun {
        seconds,
        accuracy: test_accuracy(&out),
        peak_rss_mb: peak_kb.map(|kb| kb / 1024.0),
        ok: status.success(),
    })
}

fn main() {
    // As the `mnistlab` command does.
    mnistlab::kernels::keep_candle_pool_single_threaded();
    mnistlab::kernels::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let value_after = |key: &str| -> Vec<usize> {
        args.windows(2).filter(|w| w[0] == key).filter_map(|w| w[1].parse().ok()).collect()
    };
    let steps = value_after("steps").first().copied().unwrap_or(300);
    let rounds = value_after("rounds").first().copied().unwrap_or(3).max(1);
    let mut batches = value_after("batch");
    if batches.is_empty() {
        batches = vec![32, 128];
    }
    let mnist = fetch::cache_dir().join("mnist");
    let data = match load::load_official(&mnist, "mnist", digit_classes(), "bench") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot load MNIST from {}: {e} (run `mnistlab fetch mnist` first)", mnist.display());
            std::process::exit(1);
        }
    };
    let train = data.split(SplitKind::Train).expect("MNIST has a train split").clone();
    println!(
        "seed-cnn training through model::fit, Adam 1e-3, {steps} steps per batch size, {} rayon threads, load average {:.1}",
        rayon::current_num_threads(),
        load_average().unwrap_or(f64::NAN)
    );
    // Other processes on a small machine only ever slow a run down, and by different amounts
    // from one minute to the next: the two trainers take turns, round by round, and each
    // keeps its best round.
    let keras_wanted = !args.iter().any(|a| a == "no-keras");
    let mut ours: Vec<(usize, Rate)> = batches.iter().map(|&b| (b, Rate::default())).collect();
    let bf16 = kernels::bf16::units();
    let mut ours_bf16: Vec<(usize, Rate)> = ours.clone();
    let mut keras: Vec<(usize, Rate)> = Vec::new();
    let mut round_ratios: Vec<(usize, f64)> = Vec::new();
    for round in 1..=rounds {
        let mut this_round = Vec::new();
        for ((batch, best), (_, best_bf16)) in ours.iter_mut().zip(ours_bf16.iter_mut()) {
            let r = mnistlab_rate(&train, *batch, steps, Precision::F32);
            println!("round {round} mnistlab batch {batch:4}: {:7.0} images/s, {:7.0} images/CPU-s", r.wall, r.cpu);
            *best = best.best(r);
            this_round.push((*batch, r));
            if bf16.is_some() {
                let r = mnistlab_rate(&train, *batch, steps, Precision::Bf16);
                println!("round {round} bf16     batch {batch:4}: {:7.0} images/s, {:7.0} images/CPU-s", r.wall, r.cpu);
                *best_bf16 = best_bf16.best(r);
            }
        }
        if !keras_wanted {
            continue;
        }
        match keras_rates(&mnist, &batches, steps) {
            Ok(rates) => {
                for (batch, k) in rates {
                    println!(
                        "round {round} keras    batch {batch:4}: {:7.0} images/s, {:7.0} images/CPU-s",
                        k.wall, k.cpu
                    );
                    if let Some((_, m)) = this_round.iter().find(|(b, _)| *b == batch) {
                        round_ratios.push((batch, m.wall / k.wall));
                    }
                    match keras.iter_mut().find(|(b, _)| *b == batch) {
                        Some((_, best)) => *best = best.best(k),
                        None => keras.push((batch, k)),
                    }
                }
            }
            Err(why) => {
                println!("keras peer did not run: {why}");
                break;
            }
        }
    }
    println!("best of {rounds} round(s):");
    for ((batch, m), (_, h)) in ours.iter().zip(&ours_bf16) {
        println!("mnistlab batch {batch:4}: {:7.0} images/s, {:7.0} images/CPU-s", m.wall, m.cpu);
        if let Some(units) = bf16 {
            println!(
                "bf16     batch {batch:4}: {:7.0} images/s, {:7.0} images/CPU-s ({units}): {:.2}x fp32",
                h.wall,
                h.cpu,
                h.wall / m.wall
            );
        }
        if let Some((_, k)) = keras.iter().find(|(b, _)| b == batch) {
            println!("keras    batch {batch:4}: {:7.0} images/s, {:7.0} images/CPU-s", k.wall, k.cpu);
            let mut per_round: Vec<f64> = round_ratios.iter().filter(|(b, _)| b == batch).map(|(_, r)| *r).collect();
            per_round.sort_by(f64::total_cmp);
            let median = per_round.get(per_round.len() / 2).copied().unwrap_or(f64::NAN);
            println!(
                "ratio mnistlab/keras batch {batch:4}: {:.2}x wall, {:.2}x per CPU-second (best against best); median of the rounds {median:.2}x wall",
                m.wall / k.wall,
                m.cpu / k.cpu
            );
        }
    }
    if !args.iter().any(|a| a == "no-script") {
        end_to_end();
    }
}

/// `text` with its `seed` line set to `seed`, written to a file in the temporary folder.
fn seeded(text: &str, name: &str, seed: u64) -> PathBuf {
    let lines: Vec<String> =
        text.lines().map(|l| if l.starts_with("seed ") { format!("seed {seed}") } else { l.to_string() }).collect();
    let path = std::env::temp_dir().join(format!("mnistlab-bench-{name}-{seed}.lab"));
    std::fs::write(&path, lines.join("\n") + "\n").expect("the temporary folder is writable");
    path
}

/// `examples/fast99.lab`, the script it replaced (`benches/fast99_before.lab`) and, where the
/// CPU has bf16 units, fast99 after `precision bf16`, for seeds 1-4, taking turns after an
/// untimed run of each: each run's wall time, test accuracy and peak memory, and the ratios of
/// the summed times.
fn end_to_end() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut scripts =
        vec![("fast99", root.join("examples/fast99.lab")), ("before", root.join("benches/fast99_before.lab"))];
    if kernels::bf16::units().is_some() {
        scripts.push(("bf16", root.join("examples/fast99.lab")));
    }
    println!(
        "end to end: {} against {}, seeds 1-4 in turns (load average {:.1})",
        scripts[0].1.display(),
        scripts[1].1.display(),
        load_average().unwrap_or(f64::NAN)
    );
    let texts: Vec<String> = scripts
        .iter()
        .map(|(name, path)| {
            let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if *name == "bf16" {
                format!("precision bf16\n{text}")
            } else {
                text
            }
        })
        .collect();
    // One untimed run of each first: the first run of a binary on a cold page cache is slower.
    for ((name, _), text) in scripts.iter().zip(&texts) {
        let _ = run_script(&seeded(text, name, 1));
    }
    let mut totals = vec![0.0f64; scripts.len()];
    for seed in 1..=4 {
        for (i, ((name, _), text)) in scripts.iter().zip(&texts).enumerate() {
            match run_script(&seeded(text, name, seed)) {
                Ok(run) => {
                    totals[i] += run.seconds;
                    let acc = run.accuracy.map_or("not printed".to_string(), |a| format!("{:.2}%", 100.0 * a));
                    let mem = run.peak_rss_mb.map_or("unknown".to_string(), |m| format!("{m:.0} MB"));
                    println!(
                        "end to end: {name:6} seed {seed}: {:.2} s wall, test accuracy {acc}, peak memory {mem}{}",
                        run.seconds,
                        if run.ok { "" } else { ", the script FAILED" }
                    );
                }
                Err(why) => println!("end to end: {name} seed {seed}: {why}"),
            }
        }
    }
    println!(
        "end to end: fast99 {:.1} s, before {:.1} s for seeds 1-4: {:.2}x the time (goals: ≤ 0.5x, ≥ 99.00% on every seed)",
        totals[0],
        totals[1],
        totals[0] / totals[1]
    );
    if let Some(bf16) = totals.get(2) {
        println!("end to end: fast99 in bf16 {bf16:.1} s for seeds 1-4: {:.2}x the time of fp32", bf16 / totals[0]);
    }
}
