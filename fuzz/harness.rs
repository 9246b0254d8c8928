//! The bodies of the fuzz targets, one function per target. `fuzz/fuzz_targets/*.rs` call them
//! under libFuzzer and `tests/fuzz_regressions.rs` includes this file by path and replays the
//! seeds and the crash regressions through them on stable, so both run exactly the same code.
//!
//! Each function feeds the bytes to the library's in-memory entry point and returns the
//! reader's error message (`Err`) or `Ok`; it panics only where the library broke a promise
//! (a panic inside the reader, or an `Ok` result that contradicts itself).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mnistlab::data::dataset::digit_classes;
use mnistlab::data::Dataset;

/// What a reader made of one input: `Ok`, or its error message.
pub type Outcome = Result<(), String>;

/// Every split of a dataset holds whole images and one label per image, each a valid class.
fn check_dataset(ds: &Dataset) {
    let image_len = ds.image_len();
    for (kind, split) in &ds.splits {
        assert_eq!(split.pixels.len(), split.labels.len() * image_len, "{kind:?}: pixels are not whole images");
        assert!(
            split.labels.iter().all(|&l| (l as usize) < ds.classes.len()),
            "{kind:?}: a label is outside the {} classes",
            ds.classes.len()
        );
    }
}

/// `parser`: UTF-8 text through `parse_program`, and each of its lines through `parse_line`.
pub fn parser(data: &[u8]) -> Outcome {
    let text = std::str::from_utf8(data).map_err(|e| format!("not UTF-8: {e}"))?;
    for (i, line) in text.lines().enumerate() {
        let _ = mnistlab::lang::parse_line(line, i + 1);
    }
    mnistlab::lang::parse_program(text).map(|_| ()).map_err(|e| e.to_string())
}

/// `idx`: an IDX file, plain or gzip.
pub fn idx(data: &[u8]) -> Outcome {
    let array = mnistlab::data::idx::parse(Path::new("fuzz-idx3-ubyte"), data).map_err(|e| e.to_string())?;
    assert_eq!(array.data.len(), array.dims.iter().product::<usize>(), "data length differs from the header");
    Ok(())
}

/// `npz`: an MNIST-style `.npz` archive.
pub fn npz(data: &[u8]) -> Outcome {
    let ds = mnistlab::data::npz::parse_mnist_npz(Path::new("fuzz.npz"), data, "fuzz", digit_classes())
        .map_err(|e| e.to_string())?;
    check_dataset(&ds);
    Ok(())
}

/// `pickle`: the deeplearning.net `mnist.pkl.gz` (gzip or plain pickle).
pub fn pickle(data: &[u8]) -> Outcome {
    let ds =
        mnistlab::data::pickle::parse_mnist_pkl(Path::new("fuzz.pkl.gz"), data.to_vec()).map_err(|e| e.to_string())?;
    check_dataset(&ds);
    Ok(())
}

/// The `(classes, image_len)` the `csv` target's first byte picks: the real MNIST shape, small
/// shapes that fuzzed files can fill, and the degenerate ones a manifest can claim.
pub const CSV_SHAPES: [(usize, usize); 6] = [(10, 784), (10, 4), (2, 1), (10, 0), (0, 784), (1, 2)];

/// `csv`: the first byte picks a shape from [`CSV_SHAPES`], the rest is the CSV file.
pub fn csv(data: &[u8]) -> Outcome {
    let Some((&pick, bytes)) = data.split_first() else { return Err("empty input".into()) };
    let (classes, image_len) = CSV_SHAPES[pick as usize % CSV_SHAPES.len()];
    let split =
        mnistlab::data::csv::parse_csv(Path::new("fuzz.csv"), bytes, classes, image_len).map_err(|e| e.to_string())?;
    assert_eq!(split.pixels.len(), split.labels.len() * image_len, "pixels are not whole images");
    assert!(split.labels.iter().all(|&l| (l as usize) < classes), "a label is outside the classes");
    Ok(())
}

/// A folder of this process holding copies of the fixture data files (the files of real saved
/// folders), in which `manifest` writes each input as `manifest.json`.
fn manifest_dir(fixtures: &Path) -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, dir) = DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("a temporary folder");
        let dir = tmp.path().join("saved");
        copy_tree(fixtures, &dir);
        (tmp, dir)
    });
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a fixture folder");
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.expect("a fixture entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a fixture file");
        }
    }
}

/// `manifest`: the text of a saved folder's `manifest.json`, parsed, then loaded with
/// `load_saved` from a folder that holds the fixture data files (idx, npz, csv and png saves
/// of a few images), so a manifest that lies about them reaches the format readers.
pub fn manifest(data: &[u8], fixtures: &Path) -> Outcome {
    let text = std::str::from_utf8(data).map_err(|e| format!("not UTF-8: {e}"))?;
    // One folder for the process: tests running in parallel take turns writing and loading it.
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = manifest_dir(fixtures);
    let path = dir.join(mnistlab::data::saved::MANIFEST);
    mnistlab::data::saved::parse_manifest(&path, text).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).expect("write manifest.json");
    let ds = mnistlab::data::saved::load_saved(dir).map_err(|e| e.to_string())?;
    check_dataset(&ds);
    Ok(())
}

/// `checkpoint`: a model file (safetensors with mnistlab metadata), loaded on the CPU; a model
/// that loads then predicts one blank image.
pub fn checkpoint(data: &[u8]) -> Outcome {
    let device = candle_core::Device::Cpu;
    let (net, meta) =
        mnistlab::model::files::checkpoint::load_model_bytes(Path::new("fuzz.safetensors"), data, &device)
            .map_err(|e| e.to_string())?;
    let (c, h, w) = net.input();
    let probs = mnistlab::model::training::train::predict_probs(&net, &vec![0; c * h * w], meta.scaling)
        .map_err(|e| format!("loaded, but cannot predict: {e}"))?;
    assert_eq!(probs.len(), 1, "one image, one prediction");
    assert_eq!(probs[0].len(), meta.classes.len(), "one probability per class");
    Ok(())
}

/// `image`: a PNG or JPEG for `predict`, decoded and preprocessed into a 28×28 field.
pub fn image(data: &[u8]) -> Outcome {
    let pixels =
        mnistlab::data::preprocess::preprocess_bytes(Path::new("fuzz.png"), data).map_err(|e| e.to_string())?;
    assert_eq!(pixels.len(), 28 * 28, "preprocessing gives 784 bytes");
    Ok(())
}

/// The key `wire` signs and verifies with.
pub const WIRE_KEY: &str = "fuzz-key";
/// The byte that separates frames in a `wire` input.
pub const FRAME_SEPARATOR: u8 = 0xff;

/// `wire`: the first byte picks the mode, the rest is split at 0xff bytes into ZeroMQ frames.
/// Mode 0 verifies with the fixed key as sent; mode 1 first replaces the signature frame by the
/// right one (so the JSON parts are reached); mode 2 uses an empty key (no signing, as Jupyter
/// allows). A message that parses must come back unchanged from `to_frames` and `parse`.
pub fn wire(data: &[u8]) -> Outcome {
    use mnistlab::front::kernel::wire::{Message, Signer};
    let Some((&mode, rest)) = data.split_first() else { return Err("empty input".into()) };
    let mut frames: Vec<Vec<u8>> = rest.split(|&b| b == FRAME_SEPARATOR).map(<[u8]>::to_vec).collect();
    let signer = Signer::new(if mode % 3 == 2 { "" } else { WIRE_KEY });
    if mode % 3 == 1 {
        if let Some(at) = frames.iter().position(|f| f == b"<IDS|MSG>") {
            if frames.len() >= at + 6 {
                let parts: Vec<&[u8]> = frames[at + 2..at + 6].iter().map(Vec::as_slice).collect();
                frames[at + 1] = signer.sign(&parts).into_bytes();
            }
        }
    }
    let message = Message::parse(&frames, &signer).map_err(|e| e.to_string())?;
    let again = Message::parse(&message.to_frames(&signer), &signer).expect("a message's own frames parse");
    assert_eq!(again, message, "to_frames then parse changed the message");
    Ok(())
}
