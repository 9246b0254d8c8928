//! mnistlab from Rust without statements: the README's "From Rust" example, run by
//! `cargo run --example from_rust` and by tests/from_rust.rs.

// readme:start
use std::sync::atomic::AtomicBool;

use mnistlab::candle::Device;
use mnistlab::data::{dataset::digit_classes, fetch, load, split, PixelScaling, SplitKind};
use mnistlab::model::{evaluate, fit, preset, Evaluation, History, Network, TrainConfig, TrainData};

/// Trains the article's CNN on a small part of MNIST; returns its history and test score.
pub fn train() -> Result<(History, Evaluation), Box<dyn std::error::Error>> {
    let dir = fetch::fetch(fetch::Named::Mnist, &mut |line| eprintln!("{line}"))?;
    let mut mnist = load::load_official(&dir, "mnist", digit_classes(), "MNIST")?;
    split::split_percent(&mut mnist, [70, 15, 15], 0)?; // stratified 70/15/15 of all 70,000
    split::subset_per_class(&mut mnist, 100, 0)?; // 100 train images per class, to be quick
    mnist.scaling = PixelScaling::Unit; // `normalize`
    let [train, val, test] = [SplitKind::Train, SplitKind::Val, SplitKind::Test].map(|k| mnist.split(k));
    let (train, test) = (train.ok_or("no train split")?, test.ok_or("no test split")?);
    let net = Network::new(&preset("seed-cnn").ok_or("no preset")?, (1, 28, 28), 10, &Device::Cpu, 0)?;
    let config = TrainConfig { epochs: 3, ..TrainConfig::default() };
    let history = fit(&net, TrainData::new(train, val, mnist.format()), &config, &AtomicBool::new(false), &mut |_| {})?;
    let score = evaluate(&net, test, mnist.format(), 256)?;
    Ok((history, score))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (history, score) = train()?;
    for e in &history.epochs {
        println!("epoch {}: loss {:.4}, val accuracy {:.4}", e.epoch, e.loss, e.val_accuracy.unwrap_or(f32::NAN));
    }
    println!("test accuracy {:.4}", score.accuracy);
    Ok(())
}
// readme:end
