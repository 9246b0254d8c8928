//! `load mnist` speed: the 70,000 official images read from the gzip IDX files (as shipped by
//! the mirrors) and from the raw IDX files of the cache. Goal: ≤ 0.5 s from gzip on 2 cores.
//!
//! Run with `cargo bench --bench load` after `mnistlab fetch mnist`.

use std::time::Instant;

use mnistlab::data::{dataset::digit_classes, fetch, idx, load};

fn best_of(runs: usize, mut f: impl FnMut() -> usize) -> (f64, usize) {
    let mut best = f64::INFINITY;
    let mut images = 0;
    for _ in 0..runs {
        let start = Instant::now();
        images = f();
        best = best.min(start.elapsed().as_secs_f64());
    }
    (best, images)
}

fn main() {
    let cache = fetch::cache_dir().join("mnist");
    if !cache.join("t10k-labels-idx1-ubyte").is_file() {
        eprintln!("no MNIST in {}: run `mnistlab fetch mnist` first", cache.display());
        std::process::exit(1);
    }
    // The gzip files as the mirrors ship them (recompressed here from the verified raw files).
    let gz_dir = tempfile::tempdir().expect("a temporary folder");
    for name in fetch::IDX_NAMES {
        let array = idx::read(&cache.join(name)).expect("cached IDX file");
        std::fs::write(gz_dir.path().join(format!("{name}.gz")), idx::encode_gz(&array.dims, &array.data))
            .expect("write gz");
    }
    let load =
        |dir: &std::path::Path| load::load_official(dir, "mnist", digit_classes(), "bench").expect("loads").len();
    let (gz, n) = best_of(5, || load(gz_dir.path()));
    let (raw, _) = best_of(5, || load(&cache));
    println!("load mnist from gzip IDX: {n} images in {gz:.3} s (best of 5; goal ≤ 0.5 s)");
    println!("load mnist from the raw IDX cache: {n} images in {raw:.3} s (best of 5)");
}
