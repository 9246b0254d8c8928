//! Measures training speed and accuracy on real MNIST.
//!
//! `MNISTLAB_DATA=/tmp/mnist-cache cargo run --release --example train_mnist -- [preset] [epochs] [train images]`
//! reads the raw IDX files from `$MNISTLAB_DATA/mnist/`, trains with Adam (batch 32) and prints
//! images/s per epoch and the test accuracy after each epoch.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use candle_core::Device;
use mnistlab::data::{idx, ImageFormat, PixelScaling, Split};
use mnistlab::model::{evaluate, fit, preset, Network, TrainConfig, TrainData, TrainEvent};

fn split(dir: &std::path::Path, images: &str, labels: &str, n: usize) -> Split {
    let images = idx::read(&dir.join(images)).unwrap_or_else(|e| panic!("{e}"));
    let labels = idx::read(&dir.join(labels)).unwrap_or_else(|e| panic!("{e}"));
    let n = n.min(labels.dims[0]);
    Split { pixels: images.data[..n * 784].to_vec(), labels: labels.data[..n].to_vec() }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("seed-cnn", String::as_str);
    let epochs: usize = args.get(2).map_or(1, |s| s.parse().expect("epochs"));
    let n: usize = args.get(3).map_or(60_000, |s| s.parse().expect("train images"));
    let root = std::env::var_os("MNISTLAB_DATA").map(PathBuf::from).expect("set MNISTLAB_DATA");
    let dir = root.join("mnist");
    let train = split(&dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", n);
    let test = split(&dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10_000);
    let spec = preset(name).expect("unknown preset");
    let net = Network::new(&spec, (1, 28, 28), 10, &Device::Cpu, 0).unwrap();
    let config = TrainConfig { epochs, ..TrainConfig::default() };
    let stop = AtomicBool::new(false);
    let started = std::time::Instant::now();
    let mut progress = |e: TrainEvent| match e {
        TrainEvent::Batch { epoch, done, total, loss, .. } if done % 200 == 0 => {
            eprintln!("epoch {epoch} batch {done}/{total} loss {loss:.4} ({:.0}s)", started.elapsed().as_secs_f64())
        }
        TrainEvent::Epoch(s) => println!(
            "epoch {}: loss {:.4} acc {:.4} val_loss {:.4} val_acc {:.4} {:.1}s {:.0} img/s",
            s.epoch,
            s.loss,
            s.accuracy,
            s.val_loss.unwrap_or(f32::NAN),
            s.val_accuracy.unwrap_or(f32::NAN),
            s.seconds,
            s.images_per_sec
        ),
        _ => {}
    };
    // The test split doubles as validation so each epoch prints its test accuracy.
    let format = ImageFormat { rows: 28, cols: 28, scaling: PixelScaling::Unit };
    let h = fit(&net, TrainData::new(&train, Some(&test), format), &config, &stop, &mut progress).unwrap();
    let e = evaluate(&net, &test, format, 256).unwrap();
    println!("{name}: {} epochs, test accuracy {:.4}, loss {:.4}; {:?}", h.epochs.len(), e.accuracy, e.loss, h.notes);
}
