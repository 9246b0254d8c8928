//! `fit N checkpoint DIR` and `resume DIR` through the binary on real MNIST: a run killed
//! (SIGKILL) and resumed ends bit-identical to an uninterrupted one, and a kill at any moment,
//! during a checkpoint write included, leaves the previous checkpoint loadable.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use candle_core::Device;
use mnistlab::session::Session;

mod common;
use common::{error, run};

/// The data and model of every run here: a 500-image subset of MNIST's train split with a
/// validation split, augmentation drawn per batch, and a model with batch norm and dropout.
const PREPARE: &str = "load mnist
normalize
split val 10 seed 4
subset 50 per class seed 4
augment rotate 10 shift 0.1
model conv8 bn pool dropout 0.25 dense32
optimizer adam lr 0.002
schedule onecycle
";

/// Starts the binary on `script` (written to `dir/NAME.lab`) in `dir`, stdout piped.
fn start(dir: &Path, name: &str, script: &str) -> Child {
    let path = dir.join(format!("{name}.lab"));
    std::fs::write(&path, script).unwrap();
    Command::new(env!("CARGO_BIN_EXE_mnistlab"))
        .arg("run")
        .arg(&path)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mnistlab runs")
}

/// Runs `script` to its end; its output.
fn finish(dir: &Path, name: &str, script: &str) -> String {
    let out = start(dir, name, script).wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{name}: {stdout}");
    stdout
}

/// Every tensor of a model file, by name.
fn weights(path: &Path) -> Vec<(String, Vec<f32>)> {
    let (net, _) = mnistlab::model::load_model(path, &Device::Cpu).unwrap();
    let snap = net.snapshot().unwrap();
    snap.into_iter().map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1().unwrap())).collect()
}

/// A history file's epochs without their times, with the rest of the record.
fn history(path: &Path) -> serde_json::Value {
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for epoch in json["epochs"].as_array_mut().unwrap() {
        epoch["seconds"] = 0.into();
        epoch["images_per_sec"] = 0.into();
    }
    json
}

/// The epochs done in `dir/last.safetensors`, which must load both as a checkpoint and as a
/// model (and `best.safetensors`, when there, as a model).
fn epochs_done(dir: &Path) -> usize {
    let (_, _, ck) = mnistlab::model::load_checkpoint(&dir.join("last.safetensors"), &Device::Cpu).unwrap();
    mnistlab::model::load_model(&dir.join("last.safetensors"), &Device::Cpu).unwrap();
    if dir.join("best.safetensors").exists() {
        mnistlab::model::load_model(&dir.join("best.safetensors"), &Device::Cpu).unwrap();
    }
    ck.state.epochs_done
}

/// The temporary files in `dir` (a checkpoint being written, or one whose write was cut short).
fn temporary_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().starts_with(".tmp"))).count()
}

const SAVE: &str = "save model final.safetensors\nsave history final.json\n";

#[test]
fn a_run_killed_after_epoch_2_resumes_to_the_uninterrupted_weights_and_history() {
    let whole = tempfile::tempdir().unwrap();
    finish(whole.path(), "whole", &format!("{PREPARE}fit 4 checkpoint ck\n{SAVE}"));

    let cut = tempfile::tempdir().unwrap();
    let mut child = start(cut.path(), "cut", &format!("{PREPARE}fit 4 checkpoint ck\n{SAVE}"));
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Epoch 2's checkpoint is written before epoch 3 starts, so it is there once epoch 3 ends.
    for line in lines {
        if line.unwrap().starts_with("Epoch 3/4") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!cut.path().join("final.json").exists(), "the run was killed before it ended");
    let done = epochs_done(&cut.path().join("ck"));
    assert!((2..=3).contains(&done), "the checkpoint holds {done} epochs");

    let out = finish(cut.path(), "resume", &format!("{PREPARE}resume ck\n{SAVE}"));
    assert!(out.contains(&format!("resuming ck/last.safetensors: {done} of 4 epochs done")), "{out}");
    let printed = out.lines().filter(|l| l.starts_with("Epoch ")).count();
    assert_eq!(printed, 4 - done, "{out}");
    assert_eq!(weights(&cut.path().join("final.safetensors")), weights(&whole.path().join("final.safetensors")));
    assert_eq!(history(&cut.path().join("final.json")), history(&whole.path().join("final.json")));
    // The last checkpoints of both runs hold the same weights.
    let last = |d: &Path| weights(&d.join("ck/last.safetensors"));
    assert_eq!(last(cut.path()), last(whole.path()));
}

#[test]
fn kills_at_random_moments_leave_a_loadable_checkpoint_and_resuming_ends_where_one_run_does() {
    const EPOCHS: usize = 6;
    // A wider model: larger files, so that some kills land in the middle of a write.
    let prepare = PREPARE.replace("dense32", "dense512");
    let whole = tempfile::tempdir().unwrap();
    // The uninterrupted run, timed from the start of training to its last epoch line.
    let mut child = start(whole.path(), "whole", &format!("{prepare}fit {EPOCHS} checkpoint ck\n{SAVE}"));
    let mut started = Instant::now();
    let mut epoch = Duration::ZERO;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.starts_with("checkpoints after every epoch") {
            started = Instant::now();
        }
        if line.starts_with(&format!("Epoch {EPOCHS}/")) {
            epoch = started.elapsed() / EPOCHS as u32;
        }
    }
    assert!(child.wait().unwrap().success());
    assert!(epoch > Duration::ZERO);

    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    // A fixed xorshift sequence of delays: random moments, the same every time.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let (mut kills, mut done) = (0, 0);
    while done < EPOCHS && kills < 40 {
        let script = if ck.join("last.safetensors").exists() { "resume ck" } else { "fit 6 checkpoint ck" };
        let mut child = start(dir.path(), &format!("run{kills}"), &format!("{prepare}{script}\n{SAVE}"));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Wait for training to start, then kill after 0.2 to 2.2 epochs' time.
        for line in lines.by_ref() {
            if line.unwrap().starts_with("checkpoints after every epoch") {
                break;
            }
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let delay = epoch.mul_f64(0.2 + (x % 1000) as f64 / 500.0);
        let started = Instant::now();
        // Every other run is killed as soon as a checkpoint's temporary file appears: in the
        // middle of a write.
        let at_write = kills % 2 == 1;
        let before = temporary_files(&ck);
        while (at_write || started.elapsed() < delay) && child.try_wait().unwrap().is_none() {
            if at_write && temporary_files(&ck) > before {
                break;
            }
            std::thread::sleep(Duration::from_millis(if at_write { 1 } else { 5 }));
        }
        let _ = child.kill();
        child.wait().unwrap();
        drop(lines);
        kills += 1;
        if ck.join("last.safetensors").exists() {
            let now = epochs_done(&ck);
            assert!(now >= done, "the checkpoint went back from {done} to {now} epochs");
            done = now;
        }
    }
    assert_eq!(done, EPOCHS, "{kills} kills left {done} epochs done");
    // The interrupted writes left temporary files beside the checkpoints, never a broken one.
    let strays = temporary_files(&ck);
    eprintln!("{kills} kills ({:.2} s an epoch), {strays} writes cut short", epoch.as_secs_f64());
    assert!(strays > 0, "no kill landed during a write");
    assert_eq!(weights(&ck.join("last.safetensors")), weights(&whole.path().join("ck/last.safetensors")));
    assert_eq!(weights(&ck.join("best.safetensors")), weights(&whole.path().join("ck/best.safetensors")));
}

#[test]
fn resume_refuses_other_data_or_augmentation_and_a_plain_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let mut session = Session::new();
    run(&mut session, &format!("{PREPARE}fit 1 checkpoint {}", ck.display()));
    // Other data: another subset seed.
    let other = PREPARE.replace("subset 50 per class seed 4", "subset 50 per class seed 5");
    let mut session = Session::new();
    run(&mut session, &other);
    let e = error(&mut session, &format!("resume {}", ck.display()));
    assert!(e.contains("the data differ") && e.contains("before `resume`"), "{e}");
    // The same data with another augmentation.
    let mut session = Session::new();
    run(&mut session, &PREPARE.replace("augment rotate 10 shift 0.1", "augment rotate 20"));
    let e = error(&mut session, &format!("resume {}", ck.display()));
    assert!(e.contains("augmentation `rotate ±10°") && e.contains("set the same `augment`"), "{e}");
    // The same data in another precision, where the CPU has bf16 units (elsewhere `precision
    // bf16` itself is refused).
    let mut session = Session::new();
    run(&mut session, PREPARE);
    if mnistlab::kernels::bf16::units().is_some() {
        run(&mut session, "precision bf16");
        let e = error(&mut session, &format!("resume {}", ck.display()));
        assert!(e.contains("trained in precision fp32, the session has bf16: say `precision fp32`"), "{e}");
    } else {
        assert!(error(&mut session, "precision bf16").contains("no bf16 units"));
    }
    // A model file is a model, not a run; `load model` reads the checkpoint as a model.
    let model = dir.path().join("m.safetensors");
    run(&mut session, &format!("save model {}", model.display()));
    std::fs::create_dir_all(dir.path().join("plain")).unwrap();
    std::fs::copy(&model, dir.path().join("plain/last.safetensors")).unwrap();
    let e = error(&mut session, &format!("resume {}", dir.path().join("plain").display()));
    assert!(e.contains("without a training run"), "{e}");
    run(&mut session, &format!("load model {}", ck.join("last.safetensors").display()));
    // A finished run has nothing to resume; another thread count is said to lose bit-identity.
    let (_, _, saved) = mnistlab::model::load_checkpoint(&ck.join("last.safetensors"), &Device::Cpu).unwrap();
    let threads: usize = saved.info.settings["threads"].parse().unwrap();
    for (n, warned) in [(threads, false), (threads + 1, true)] {
        let mut session = Session::new();
        run(&mut session, &format!("threads {n}\n{PREPARE}"));
        let said = common::texts(&run(&mut session, &format!("resume {}", ck.display())));
        assert!(said.iter().any(|t| t.starts_with("nothing to resume")), "{said:?}");
        let warning = format!("the run trained on {threads} worker threads, this session has {n}");
        assert_eq!(said.iter().any(|t| t.starts_with(&warning)), warned, "{said:?}");
    }
}
