//! GPU checks, run by `scripts/cuda test` on a machine with an NVIDIA GPU. This target is built
//! only with `--features cuda` (its `required-features` in Cargo.toml), so the CPU suite neither
//! builds nor skips it; here no test passes without a GPU: each opens the CUDA device first.

mod common;

use std::sync::atomic::AtomicBool;

use candle_core::{DType, Device, Tensor};
use common::{run, texts};
use mnistlab::data::SplitKind;
use mnistlab::kernels;
use mnistlab::model::training::optim::GroupState;
use mnistlab::model::{
    self, DeviceKind, EpochEnd, FitHooks, Layer, ModelSpec, Network, RunState, TrainConfig, TrainData,
};
use mnistlab::session::Session;
use rand::{Rng, SeedableRng};

const PREPARE: &str = "seed 3
load mnist
normalize
split val 10 seed 3
subset 100 per class seed 3
";

fn gpu() -> Device {
    model::device(DeviceKind::Cuda).expect("these tests need an NVIDIA GPU with its driver")
}

fn saved(session: &mut Session, dir: &std::path::Path, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    run(session, &format!("save model {}", path.display()));
    std::fs::read(path).unwrap()
}

#[test]
fn device_cuda_moves_a_built_model_and_back_and_saving_gives_the_same_file() {
    let _ = gpu();
    let dir = tempfile::tempdir().unwrap();
    let mut session = Session::new();
    run(&mut session, &format!("{PREPARE}model conv8 bn pool dropout 0.2 dense16\nfit 1"));
    let on_cpu = saved(&mut session, dir.path(), "cpu.safetensors");
    let said = texts(&run(&mut session, "device cuda"));
    assert!(said.iter().any(|t| t.contains("moved")), "{said:?}");
    assert!(session.network_copy().unwrap().device().is_cuda());
    assert_eq!(saved(&mut session, dir.path(), "cuda.safetensors"), on_cpu);
    // Training goes on there, and the model comes back.
    run(&mut session, "fit 1\nevaluate val");
    run(&mut session, "device cpu");
    assert!(session.network_copy().unwrap().device().is_cpu());
    let back = saved(&mut session, dir.path(), "back.safetensors");
    run(&mut session, "device cuda");
    assert_eq!(saved(&mut session, dir.path(), "again.safetensors"), back);
}

#[test]
fn a_cuda_fit_learns_and_checkpoints_its_adam_moments() {
    let _ = gpu();
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let mut session = Session::new();
    let events = run(
        &mut session,
        &format!("device cuda\n{PREPARE}model seed-cnn\nfit 2 checkpoint {}\nevaluate val", ck.display()),
    );
    let accuracy = session.evaluation().expect("evaluated").1.accuracy;
    assert!(accuracy > 0.8, "1,000 images, 2 epochs: val accuracy {accuracy}; {:?}", texts(&events));
    // The checkpoint holds Adam's moments, read back from the GPU.
    let (_, _, checkpoint) = model::load_checkpoint(&ck.join("last.safetensors"), &Device::Cpu).unwrap();
    let steps = 2 * 1000usize.div_ceil(32) as i32;
    match &checkpoint.state.optimizer[..] {
        [GroupState::Adam { step, m, v }] => {
            assert_eq!(*step, steps);
            assert!(m.iter().flatten().any(|&x| x != 0.0) && v.iter().flatten().any(|&x| x > 0.0));
        }
        other => panic!("one Adam group expected, got {other:?}"),
    }
}

/// PREPARE's train split (1,000 images), and its format.
fn mnist_train() -> (mnistlab::data::Split, mnistlab::data::ImageFormat) {
    let mut session = Session::new();
    run(&mut session, PREPARE);
    (session.split_copy(SplitKind::Train).unwrap(), session.dataset().unwrap().format())
}

#[test]
fn a_run_stopped_on_cuda_resumes_on_the_cpu() {
    let gpu = gpu();
    let (train, format) = mnist_train();
    let spec = model::preset("seed-cnn").unwrap();
    let config = TrainConfig { epochs: 2, ..TrainConfig::default() };
    let stop = AtomicBool::new(false);
    let on_gpu = Network::new(&spec, (1, 28, 28), 10, &gpu, 1).unwrap();
    let mut after_first: Option<(RunState, Vec<(String, Tensor)>)> = None;
    let mut hook = |end: &EpochEnd<'_>| {
        if after_first.is_none() {
            after_first = Some((end.state.clone(), on_gpu.snapshot()?));
        }
        Ok(())
    };
    let hooks = FitHooks { on_epoch: Some(&mut hook), ..FitHooks::default() };
    let whole =
        model::fit_with(&on_gpu, TrainData::new(&train, None, format), &config, &stop, &mut |_| {}, hooks).unwrap();
    let (state, weights) = after_first.expect("the hook saw epoch 1");
    let on_cpu = Network::new(&spec, (1, 28, 28), 10, &Device::Cpu, 1).unwrap();
    on_cpu.restore(&weights).unwrap();
    let hooks = FitHooks { resume: Some(state), ..FitHooks::default() };
    let resumed =
        model::fit_with(&on_cpu, TrainData::new(&train, None, format), &config, &stop, &mut |_| {}, hooks).unwrap();
    assert_eq!(resumed.epochs.len(), 2);
    assert_eq!(resumed.epochs[0].loss, whole.epochs[0].loss, "epoch 1 comes from the GPU run's state");
    let (a, b) = (whole.epochs[1].loss, resumed.epochs[1].loss);
    assert!((a - b).abs() <= 0.02 * a.abs(), "epoch 2 loss: {a} on CUDA, {b} resumed on the CPU");
}

/// A tensor of uniform values in [-1, 1) from a fixed seed, on the CPU.
fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

#[test]
fn the_networks_forward_pass_on_cuda_matches_the_fused_cpu_ops() {
    let gpu = gpu();
    let spec = ModelSpec::new(vec![
        Layer::conv(16),
        Layer::BatchNorm,
        Layer::MaxPool,
        Layer::conv(32),
        Layer::AvgPool,
        Layer::dense(32),
    ]);
    let cpu_net = Network::new(&spec, (1, 28, 28), 10, &Device::Cpu, 5).unwrap();
    let gpu_net = cpu_net.copy_to(&gpu).unwrap();
    let xs = random(&[9, 1, 28, 28], 2);
    for train in [false, true] {
        let want = cpu_net.forward(&xs, train).unwrap();
        let got = gpu_net.forward(&xs.to_device(&gpu).unwrap(), train).unwrap().to_device(&Device::Cpu).unwrap();
        let diff = (&got - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff <= 1e-4 * scale, "train {train}: max difference {diff}, scale {scale}");
    }
    // In bf16 (candle's bf16 tensors on the GPU) the same pass within bf16's rounding, in f32.
    let mut gpu_net = gpu_net;
    gpu_net.set_precision(kernels::Precision::Bf16);
    let want = cpu_net.forward(&xs, false).unwrap();
    let got = gpu_net.forward(&xs.to_device(&gpu).unwrap(), false).unwrap();
    assert_eq!(got.dtype(), DType::F32);
    let got = got.to_device(&Device::Cpu).unwrap();
    let diff = (&got - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(diff > 0.0 && diff <= 3e-2 * scale, "bf16: max difference {diff}, scale {scale}");
}

#[test]
fn dropout_on_cuda_is_drawn_there_and_repeats_with_its_key() {
    let gpu = gpu();
    let x = Tensor::ones((64, 1000), DType::F32, &gpu).unwrap();
    let a = kernels::dropout(&x, 0.25, 7).unwrap();
    let b = kernels::dropout(&x, 0.25, 7).unwrap();
    let c = kernels::dropout(&x, 0.25, 8).unwrap();
    let host = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let (a, b, c) = (host(&a), host(&b), host(&c));
    assert_eq!(a, b, "the same key draws the same mask");
    assert_ne!(a, c, "another key another mask");
    let kept = a.iter().filter(|&&v| v != 0.0).count() as f64 / a.len() as f64;
    assert!((kept - 0.75).abs() < 0.01, "kept {kept}");
    assert!(a.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6), "kept values are scaled by 1/(1-p)");
}
