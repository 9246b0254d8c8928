//! Replays the fuzz corpora on stable, through the very code the fuzz targets run
//! (`fuzz/harness.rs`, included by path): every seed under `fuzz/seeds/<target>/` and every crash
//! regression under `tests/fuzz_regressions/<target>/`. Nothing may panic; each regression must
//! give the outcome recorded for it in [`REGRESSIONS`]; the real files among the seeds must load.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use harness::Outcome;

const TARGETS: [&str; 9] = ["parser", "idx", "npz", "pickle", "csv", "manifest", "checkpoint", "image", "wire"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the fuzz target `target` on `data`; a panic becomes `Err` with its message.
fn run(target: &str, data: &[u8]) -> Result<Outcome, String> {
    let fixtures = root().join("fuzz/fixtures/saved");
    catch_unwind(AssertUnwindSafe(|| match target {
        "parser" => harness::parser(data),
        "idx" => harness::idx(data),
        "npz" => harness::npz(data),
        "pickle" => harness::pickle(data),
        "csv" => harness::csv(data),
        "manifest" => harness::manifest(data, &fixtures),
        "checkpoint" => harness::checkpoint(data),
        "image" => harness::image(data),
        "wire" => harness::wire(data),
        other => panic!("no fuzz target {other}"),
    }))
    .map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

/// The files of `dir` (recursively), sorted; none when it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(files(&path));
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// What replaying a crash regression must give.
enum Expect {
    /// An error whose message contains every one of these.
    Err(&'static [&'static str]),
    /// A clean load.
    Ok,
}

/// Every file under `tests/fuzz_regressions/`: (target, file name, expected outcome). Each was a
/// crash, abort, hang or huge allocation found by the fuzz target of that name, since fixed.
const REGRESSIONS: &[(&str, &str, Expect)] = &[
    // Floats that serde_json's default (not round-trip exact) parser read 1 ULP off, so a
    // message came back changed from `to_frames` then `parse`: fixed by `float_roundtrip`.
    ("wire", "float-1ulp-29c8770f", Expect::Ok),
    ("wire", "float-1ulp-cd799eec", Expect::Ok),
    ("wire", "float-1ulp-f59efc53", Expect::Ok),
    // 883 bytes of JPEG whose header claims 16384×16384 pixels: preprocessing allocated 1 GiB
    // at once (2 GB in all) before MAX_PIXELS.
    ("image", "claims-16384x16384.jpg", Expect::Err(&["16384×16384", "at most 64 megapixels"])),
    // An .npy header (version 2) whose length field claims 4 GiB: npyz allocated it before
    // reading a byte of it.
    ("npz", "npy-v2-header-claims-4GiB.npz", Expect::Err(&["x_train", "claims 4294967280 bytes"])),
    // Shape (0, 2^32, 2^32): npyz multiplied the dimensions unchecked (a panic with overflow
    // checks, a wrapped size without).
    ("npz", "shape-overflows-u64.npz", Expect::Err(&["x_train", "(0, 4294967296, 4294967296)", "64 bits"])),
    // rows = cols = 2^40 in a manifest: rows × cols overflowed in `Dataset::image_len`.
    ("manifest", "rows-cols-overflow.json", Expect::Err(&["manifest.json", "1099511627776×1099511627776"])),
    // A 1.3 KB model file whose spec says dense300000: the lab built (and initialized) 940 MB of
    // weights before finding that the file holds none of them.
    (
        "checkpoint",
        "dense300000-without-its-weights.safetensors",
        Expect::Err(&["238500010 parameters", "the file holds only"]),
    ),
];

#[test]
fn seeds_replay_without_panics_and_the_real_files_load() {
    let mut panics = Vec::new();
    for target in TARGETS {
        let seeds = files(&root().join("fuzz/seeds").join(target));
        assert!(!seeds.is_empty(), "fuzz/seeds/{target} holds no seeds");
        let mut loaded = 0;
        for path in &seeds {
            match run(target, &std::fs::read(path).unwrap()) {
                Ok(Ok(())) => loaded += 1,
                Ok(Err(message)) => assert!(!message.is_empty(), "{}: an empty error message", path.display()),
                Err(panic) => panics.push(format!("{}: panicked: {panic}", path.display())),
            }
        }
        // Each corpus holds some whole real files (besides truncated ones), and they must load.
        assert!(loaded > 0, "no seed of {target} loads: the corpus or the reader is broken");
    }
    assert!(panics.is_empty(), "{}", panics.join("\n"));
}

#[test]
fn crash_regressions_give_their_recorded_outcome() {
    let dir = root().join("tests/fuzz_regressions");
    let on_disk: Vec<PathBuf> = files(&dir);
    for path in &on_disk {
        let rel = path.strip_prefix(&dir).unwrap();
        let target = rel.components().next().unwrap().as_os_str().to_str().unwrap();
        let name = rel.file_name().unwrap().to_str().unwrap();
        assert!(
            REGRESSIONS.iter().any(|(t, n, _)| *t == target && *n == name),
            "{}: not listed in REGRESSIONS",
            path.display()
        );
    }
    for (target, name, expect) in REGRESSIONS {
        let path = dir.join(target).join(name);
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcome = run(target, &data).unwrap_or_else(|panic| panic!("{}: panicked: {panic}", path.display()));
        match (expect, outcome) {
            (Expect::Ok, Ok(())) => {}
            (Expect::Ok, Err(message)) => panic!("{}: expected to load, got: {message}", path.display()),
            (Expect::Err(words), Err(message)) => {
                for word in *words {
                    assert!(message.contains(word), "{}: the error {message:?} does not say {word:?}", path.display());
                }
            }
            (Expect::Err(_), Ok(())) => panic!("{}: expected an error, it loaded", path.display()),
        }
    }
}
