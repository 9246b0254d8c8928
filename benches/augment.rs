//! Augmentation throughput on the MNIST training images, against Keras' ImageDataGenerator.
//!
//! Reads `$MNISTLAB_DATA/mnist/train-images-idx3-ubyte` (or `~/.cache/mnistlab/mnist/...`),
//! times `rotate 10 shift 0.1` and `elastic 34 4` over all of them (best of a few passes), then
//! runs `bench/run_keras_augment.sh` on the same file, unless `MNISTLAB_SKIP_KERAS` is set, and
//! prints the ratio. Run with `cargo bench --bench augment`; `MNISTLAB_BENCH_LIMIT=N` keeps
//! the first N images.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use mnistlab::data::augment::{Key, Op, Pipeline};
use mnistlab::data::idx;
use mnistlab::data::{Images, PixelScaling};

const SEED: u64 = 2024;

/// The first existing MNIST training image file among the cache locations.
fn find_images() -> Result<PathBuf, Vec<PathBuf>> {
    let mut roots = Vec::new();
    if let Some(dir) = std::env::var_os("MNISTLAB_DATA") {
        roots.push(PathBuf::from(dir));
    }
    if let Some(cache) = dirs::cache_dir() {
        roots.push(cache.join("mnistlab"));
    }
    let mut tried = Vec::new();
    for root in roots {
        for name in ["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"] {
            let path = root.join("mnist").join(name);
            if path.is_file() {
                return Ok(path);
            }
            tried.push(path);
        }
    }
    Err(tried)
}

/// Best images/s of `runs` passes of `f` over `count` images.
fn best_rate(count: usize, runs: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up: page in the images and the output buffer
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            count as f64 / start.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

/// Runs the Keras peer; its images/s, or why it could not run.
fn keras_rate(images: &Path) -> Result<f64, String> {
    if std::env::var_os("MNISTLAB_SKIP_KERAS").is_some() {
        return Err("skipped: MNISTLAB_SKIP_KERAS is set".into());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/run_keras_augment.sh");
    if !script.is_file() {
        return Err(format!("{} is missing", script.display()));
    }
    let output =
        Command::new("bash").arg(&script).arg(images).output().map_err(|e| format!("{}: {e}", script.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines().filter(|l| l.starts_with("keras run")) {
        println!("  {line}");
    }
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!("{} failed ({}):\n    {}", script.display(), output.status, tail.join("\n    ")));
    }
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("keras_images_per_sec="))
        .ok_or_else(|| "the peer printed no keras_images_per_sec= line".to_string())?
        .trim()
        .parse()
        .map_err(|e| format!("bad keras_images_per_sec value: {e}"))
}

fn main() {
    let path = match find_images() {
        Ok(path) => path,
        Err(tried) => {
            println!("augment bench skipped: no MNIST training images; looked for:");
            for p in tried {
                println!("  {}", p.display());
            }
            println!("set MNISTLAB_DATA to a directory holding mnist/train-images-idx3-ubyte");
            return;
        }
    };
    let array = match idx::read(&path) {
        Ok(a) if a.dims.len() == 3 => a,
        Ok(a) => {
            eprintln!("{}: expected 3 dimensions, found {:?}", path.display(), a.dims);
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let (mut count, rows, cols) = (array.dims[0], array.dims[1], array.dims[2]);
    // MNISTLAB_BENCH_LIMIT=N keeps the first N images (for profiling runs).
    if let Some(limit) = std::env::var("MNISTLAB_BENCH_LIMIT").ok().and_then(|v| v.parse().ok()) {
        count = count.min(limit);
    }
    let mut src = array.data;
    src.truncate(count * rows * cols);
    let indices: Vec<usize> = (0..count).collect();
    let mut bytes = vec![0u8; src.len()];
    let mut floats = vec![0f32; src.len()];
    println!(
        "augment bench: {count} images of {rows}×{cols} from {}, {} rayon threads",
        path.display(),
        rayon::current_num_threads()
    );

    let affine = Pipeline::new(vec![Op::rotate(10.0), Op::shift(0.1)]).expect("valid pipeline");
    let elastic = Pipeline::new(vec![Op::elastic(34.0, 4.0)]).expect("valid pipeline");
    let mut epoch = 0;
    let mut run_bytes = |p: &Pipeline| {
        epoch += 1;
        p.augment_batch(Images::new(&src, rows, cols), &indices, Key::new(SEED, epoch), &mut bytes).expect("augment");
    };
    let rotate_shift = best_rate(count, 5, || run_bytes(&affine));
    println!("mnistlab rotate 10 shift 0.1 (u8):  {rotate_shift:>12.0} images/s");
    let elastic_rate = best_rate(count, 3, || run_bytes(&elastic));
    println!("mnistlab elastic 34 4 (u8):         {elastic_rate:>12.0} images/s");
    let mut epoch = 0;
    let rotate_shift_f32 = best_rate(count, 5, || {
        epoch += 1;
        let (images, key) = (Images::new(&src, rows, cols), Key::new(SEED, epoch));
        affine.augment_batch_f32(images, &indices, key, PixelScaling::Unit, &mut floats).expect("augment");
    });
    println!("mnistlab rotate 10 shift 0.1 (f32): {rotate_shift_f32:>12.0} images/s");
    println!("mnistlab_images_per_sec={rotate_shift:.1}");

    match keras_rate(&path) {
        Ok(keras) => {
            println!("keras ImageDataGenerator rotate 10 shift 0.1: {keras:>12.0} images/s");
            println!("keras_images_per_sec={keras:.1}");
            println!("ratio mnistlab/keras: {:.1}x", rotate_shift / keras);
        }
        Err(why) => println!("keras peer not run: {why}"),
    }
}
