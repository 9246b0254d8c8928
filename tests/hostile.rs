//! Hostile input through the session: huge and zero numbers, numbers at their limits, endless
//! and special files, recursion, odd Unicode, forced panics. Each gives a clear error (or the
//! documented result), nothing aborts, memory stays bounded, and the next statement runs.
//!
//! The memory budget is one value per process, so these tests run one at a time (`LOCK`).

use std::path::Path;
use std::sync::Mutex;

use mnistlab::session::{Event, RunError, Session};

mod common;
use common::{run, texts};

static LOCK: Mutex<()> = Mutex::new(());

/// Holds the lock and sets a 4 GiB budget, so results do not depend on the machine's memory.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    let guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    mnistlab::budget::set_limit(4 << 30);
    guard
}

/// The error of `source`, which must fail; then checks that the session still runs a statement.
fn refused(session: &mut Session, source: &str) -> String {
    let error = session.run_source(source, None, &mut |_| {}).expect_err(source).to_string();
    let events = run(session, "print \"still here\"");
    assert_eq!(texts(&events), vec!["still here".to_string()], "after {source}");
    error
}

/// Asserts `source` fails with a message holding every one of `parts`.
fn refused_with(session: &mut Session, source: &str, parts: &[&str]) {
    let error = refused(session, source);
    for part in parts {
        assert!(error.contains(part), "{source}: expected {part:?} in\n{error}");
    }
}

#[test]
fn huge_models_are_refused_by_the_parser_or_the_budget() {
    let _g = serial();
    let mut s = Session::new();
    refused_with(&mut s, "model dense1000000000", &["dense layer's units", "from 1 to 1000000", "1:7"]);
    refused_with(&mut s, "model conv100000 conv100000 dense10", &["filter count", "from 1 to 4096"]);
    refused_with(&mut s, "model dense100000 dense100000", &["would need", "memory budget of 4.0 GiB", "dense100000"]);
    refused_with(&mut s, "model dense1000000 dense1000000", &["would need", "memory budget"]);
    refused_with(&mut s, "model conv4096 same conv4096 same dense10", &["would need", "memory budget"]);
    refused_with(&mut s, "model conv0", &["filter count", "from 1"]);
    refused_with(&mut s, "model dense0", &["units", "from 1"]);
    refused_with(&mut s, "model conv32k8", &["kernel size from 1 to 7"]);
    refused_with(&mut s, "model conv32k0", &["kernel size from 1 to 7"]);
    refused_with(&mut s, "model conv32k4 same", &["`same` needs an odd kernel"]);
    refused_with(&mut s, "model conv32 stride 5", &["stride", "from 1 to 4"]);
    refused_with(&mut s, "model conv8k7 conv8k7 conv8k7 conv8k7 conv8k7", &["layer 5", "smaller than the 7×7 kernel"]);
    refused_with(&mut s, "model conv32 dropout 1", &["dropout rate", "below 1"]);
    refused_with(&mut s, "model conv32 dropout -0.1", &["dropout rate"]);
    // The largest widths parse; the budget decides.
    let events = run(&mut s, "model conv32 pool dense128");
    assert!(texts(&events)[0].contains("parameters"), "{:?}", texts(&events));
}

#[test]
fn batch_sizes_are_checked_at_parse_time_and_against_the_model() {
    let _g = serial();
    let mut s = Session::new();
    refused_with(&mut s, "batch 1000000000", &["a batch size (a whole number from 1 to 65536)", "1:7"]);
    refused_with(&mut s, "batch 0", &["from 1 to 65536"]);
    refused_with(&mut s, "batch 99999999999999999999999999", &["from 1 to 65536"]);
    refused_with(&mut s, "batch 12.5", &["whole number"]);
    run(&mut s, "model conv64 same conv64 same dense128");
    refused_with(
        &mut s,
        "batch 65536",
        &["training `conv64(same) conv64(same) dense128`", "at batch 65536", "would need"],
    );
    // The refused size was not kept: a normal batch still works.
    let events = run(&mut s, "batch 64");
    assert_eq!(texts(&events), vec!["batch size 64".to_string()]);
}

#[test]
fn expand_beyond_the_budget_is_refused_before_allocating() {
    let _g = serial();
    let mut s = Session::new();
    run(&mut s, "load mnist\naugment rotate 10");
    refused_with(&mut s, "expand 1000x", &["expand 1000x of 60000 train images", "would need", "memory budget"]);
    refused_with(&mut s, "expand 1001x", &["an expansion factor", "from 1 to 1000"]);
    refused_with(&mut s, "expand 0x", &["from 1 to 1000"]);
    assert_eq!(s.dataset().unwrap().splits[&mnistlab::data::SplitKind::Train].len(), 60_000);
}

#[test]
fn pictures_beyond_the_budget_are_refused_before_decoding() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path().join("mine/a");
    std::fs::create_dir_all(&class).unwrap();
    // 1100×1000 pixels of white: a few KB of PNG, 17.6 MB while preprocessed.
    image::GrayImage::from_pixel(1100, 1000, image::Luma([255])).save(class.join("big.png")).unwrap();
    std::fs::create_dir_all(dir.path().join("mine/b")).unwrap();
    image::GrayImage::from_pixel(1100, 1000, image::Luma([255])).save(dir.path().join("mine/b/big2.png")).unwrap();
    let mut s = Session::new();
    run(
        &mut s,
        "memory 16M
model conv8 pool dense16",
    );
    let folder = dir.path().join("mine");
    let parts = ["big.png", "decoding a 1100×1000 picture", "would need 16.8 MiB", "memory budget of 16.0 MiB"];
    refused_with(&mut s, &format!("load folder {}", folder.display()), &parts);
    refused_with(&mut s, &format!("predict {}", class.display()), &parts);
    // Within the budget it decodes, and the blank picture is refused for what it is.
    run(&mut s, "memory 64M");
    refused_with(&mut s, &format!("load folder {}", folder.display()), &["big.png", "no digit found"]);
}

#[test]
fn split_percentages_cannot_wrap() {
    let _g = serial();
    let mut s = Session::new();
    refused_with(&mut s, "split 4294967295/101/0", &["a percentage (a whole number from 0 to 100)", "1:7"]);
    refused_with(&mut s, "split 99999999999999999999/0/0", &["from 0 to 100"]);
    refused_with(&mut s, "split 60/30/20", &["add up to 100", "110"]);
    refused_with(&mut s, "split 0/50/50", &["train share above 0"]);
    refused_with(&mut s, "split val 100", &["from 1 to 99"]);
    refused_with(&mut s, "split val 0", &["from 1 to 99"]);
    refused_with(&mut s, "split 70/15/15 seed 18446744073709551616", &["a seed", "2^64-1"]);
}

#[test]
fn every_count_has_its_limits() {
    let _g = serial();
    let mut s = Session::new();
    for (source, part) in [
        ("show samples 0", "from 1 to 1024"),
        ("show samples 1025", "from 1 to 1024"),
        ("show samples 4 class 256", "a class number"),
        ("show mistakes 100000", "from 1 to 1024"),
        ("filter classes 0-4294967295", "a class number (a whole number from 0 to 255)"),
        ("filter classes 3,300", "from 0 to 255"),
        ("subset 0 per class", "images per class"),
        ("subset 1000001 per class", "from 1 to 1000000"),
        ("seed 18446744073709551616", "2^64-1"),
        ("fit 0", "how many epochs"),
        ("fit 10001", "from 1 to 10000"),
        ("fit 3 patience 0", "a patience"),
        ("threads 0", "a thread count"),
        ("threads 100000", "from 1 to 256"),
        ("head 1", "from 2 to 256"),
        ("head 100000", "from 2 to 256"),
        ("freeze 0..2", "a layer number"),
        ("freeze 1..99999999999999999999", "a layer number"),
        ("adapt lora rank 0", "the adapters' rank"),
        ("adapt lora rank 4 alpha 0", "above 0"),
        ("augment preview 0", "how many images to preview"),
        ("memory 1K", "a memory budget"),
        ("memory lots", "a memory budget"),
        ("memory 1000T", "more than this machine's memory"),
        ("memory 2000T", "a memory budget"),
    ] {
        refused_with(&mut s, source, &[part]);
    }
    // The largest seed is a seed.
    assert_eq!(texts(&run(&mut s, "seed 18446744073709551615")), vec!["seed 18446744073709551615".to_string()]);
}

#[test]
fn real_numbers_must_be_finite_and_in_range() {
    let _g = serial();
    let mut s = Session::new();
    for (source, part) in [
        ("augment rotate 1e999", "a rotation in degrees"),
        ("augment rotate 181", "from 0 to 180"),
        ("augment shift 2", "a shift as a fraction"),
        ("augment shift 300px", "a shift in pixels"),
        ("augment scale 0..2", "a zoom factor"),
        ("augment shear 90", "a shear angle"),
        ("augment crop 4294967296", "a padding in pixels (a whole number from 0 to 64)"),
        ("augment elastic 34 0", "the elastic smoothing"),
        ("augment elastic 34 1e308", "from 0.5 to 50"),
        ("augment noise -1", "a noise standard deviation"),
        ("augment erase 2", "an erasing probability"),
        ("optimizer adam lr 0", "a learning rate (a number above 0 and at most 10)"),
        ("optimizer adam lr 1e400", "a learning rate"),
        ("optimizer sgd momentum 1", "a momentum"),
        ("loss crossentropy smoothing 1", "a label smoothing factor"),
        ("schedule step factor 0", "a decay factor"),
        ("schedule step every 0", "epochs between decays"),
    ] {
        refused_with(&mut s, source, &[part]);
    }
}

#[test]
fn options_that_do_not_apply_are_refused() {
    let _g = serial();
    let mut s = Session::new();
    refused_with(&mut s, "optimizer adam momentum 0.9", &["`momentum` applies to sgd only, not adam"]);
    refused_with(&mut s, "optimizer sgd decay 0.1", &["`decay` applies to adamw only, not sgd"]);
    refused_with(&mut s, "optimizer adam decay 0.1", &["`decay` applies to adamw only, not adam"]);
    // Each setting shown as the statement writes it.
    assert_eq!(texts(&run(&mut s, "optimizer sgd lr 0.1 momentum 0.9"))[0], "optimizer: sgd lr 0.1 momentum 0.9");
    assert_eq!(texts(&run(&mut s, "optimizer adamw lr 0.001 decay 0.05"))[0], "optimizer: adamw lr 0.001 decay 0.05");
    assert_eq!(texts(&run(&mut s, "schedule step every 2 factor 0.1"))[0], "schedule: step every 2 factor 0.1");
    assert_eq!(texts(&run(&mut s, "schedule step"))[0], "schedule: step every 3 factor 0.5");
}

#[test]
fn run_cycles_and_deep_chains_are_refused_naming_the_files() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let me = dir.path().join("me.lab");
    std::fs::write(&me, format!("print \"once\"\nrun {}\n", me.display())).unwrap();
    let mut s = Session::new();
    let error = refused(&mut s, &format!("run {}", me.display()));
    assert!(error.contains("`run` cycle") && error.contains("me.lab → "), "{error}");
    // a → b → a
    let (a, b) = (dir.path().join("a.lab"), dir.path().join("b.lab"));
    std::fs::write(&a, format!("run {}\n", b.display())).unwrap();
    std::fs::write(&b, format!("run {}\n", a.display())).unwrap();
    let error = refused(&mut s, &format!("run {}", a.display()));
    assert!(error.contains("a.lab → ") && error.contains("b.lab → ") && error.contains("cycle"), "{error}");
    // A chain of 20 distinct files is deeper than the limit.
    for i in 0..20 {
        let next = if i < 19 {
            format!("run {}\n", dir.path().join(format!("c{}.lab", i + 1)).display())
        } else {
            "print \"bottom\"\n".into()
        };
        std::fs::write(dir.path().join(format!("c{i}.lab")), next).unwrap();
    }
    let error = refused(&mut s, &format!("run {}", dir.path().join("c0.lab").display()));
    assert!(error.contains("nested deeper than 16 files") && error.contains("c0.lab → "), "{error}");
    assert!(error.contains("c15.lab → ") && error.ends_with("c16.lab"), "{error}");
    // Within the limit a chain runs.
    let events = run(&mut s, &format!("run {}", dir.path().join("c10.lab").display()));
    assert_eq!(texts(&events), vec!["bottom".to_string()]);
}

#[test]
fn special_endless_and_missing_files_are_refused_without_hanging() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let mut s = Session::new();
    refused_with(&mut s, "load idx /dev/zero /dev/zero", &["/dev/zero: is a character device, not a regular file"]);
    refused_with(&mut s, &format!("load csv {}", fifo.display()), &["is a FIFO, not a regular file"]);
    refused_with(&mut s, &format!("load npz {}", fifo.display()), &["FIFO"]);
    refused_with(&mut s, &format!("load pkl {}", fifo.display()), &["FIFO"]);
    refused_with(&mut s, &format!("run {}", fifo.display()), &["FIFO"]);
    refused_with(&mut s, "run /dev/zero", &["character device"]);
    refused_with(&mut s, &format!("load npz {}", dir.path().display()), &["is a folder"]);
    refused_with(&mut s, &format!("load csv {}/missing.csv", dir.path().display()), &["missing.csv", "No such file"]);
    run(&mut s, "model conv8 pool dense16");
    refused_with(&mut s, &format!("predict {}", fifo.display()), &["FIFO"]);
    refused_with(&mut s, "predict /dev/zero", &["character device"]);
    refused_with(&mut s, &format!("load model {}", fifo.display()), &["FIFO"]);
}

#[test]
fn files_beyond_the_budget_are_refused_and_the_budget_can_grow_again() {
    let _g = serial();
    let mut s = Session::new();
    assert_eq!(texts(&run(&mut s, "memory 16M"))[0].split(" (").next().unwrap(), "memory budget 16.0 MiB");
    // The cached train images are 47 MB: more than the budget.
    refused_with(&mut s, "load mnist", &["train-images-idx3-ubyte", "more than the memory budget of 16.0 MiB"]);
    run(&mut s, "memory 4G\nload mnist");
    assert_eq!(s.dataset().unwrap().len(), 70_000);
}

#[test]
fn a_crowded_predict_folder_is_refused_before_decoding() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    for i in 0..1025 {
        std::fs::write(dir.path().join(format!("{i:04}.png")), b"not a png").unwrap();
    }
    let mut s = Session::new();
    run(&mut s, "model conv8 pool dense16");
    refused_with(&mut s, &format!("predict {}", dir.path().display()), &["holds 1025 pictures", "at most 1024"]);
    std::fs::remove_file(dir.path().join("1024.png")).unwrap();
    refused_with(&mut s, &format!("predict {}", dir.path().display()), &["0000.png", "cannot decode the picture"]);
}

#[test]
fn scripts_that_are_not_utf8_name_the_byte() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.lab");
    std::fs::write(&path, b"print \"ok\"\nprint \"caf\xe9\"\n").unwrap();
    let mut s = Session::new();
    refused_with(&mut s, &format!("run {}", path.display()), &["not UTF-8", "0xe9 at byte offset 21 (line 2)"]);
}

#[test]
fn unicode_spaces_separate_words_and_carets_count_characters() {
    let _g = serial();
    let mut s = Session::new();
    // U+3000 (Chinese input methods), a no-break space, an em space.
    let events = run(&mut s, "print\u{3000}\"中文\u{3000}ok\"\nseed\u{a0}7\n\u{3000}seed\u{2003}8");
    assert_eq!(texts(&events), vec!["中文\u{3000}ok".to_string(), "seed 7".into(), "seed 8".into()]);
    // An escaped quote does not end the string: the space after it stays as typed.
    let events = run(&mut s, "print \"a\\\"\u{3000}b\"\u{3000}# note");
    assert_eq!(texts(&events), vec!["a\"\u{3000}b".to_string()]);
    let events = run(&mut s, "print \"x\\\" #1\" # a comment");
    assert_eq!(texts(&events), vec!["x\" #1".to_string()]);
    // The caret stands under the bad number, after wide and combining characters.
    let source = "print \"数字\" x";
    let error = match s.run_source(source, None, &mut |_| {}) {
        Err(RunError::Parse { error, .. }) => error,
        other => panic!("{other:?}"),
    };
    assert_eq!(error.col, 12);
    let shown = error.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    // `print "数字" ` is 13 terminal columns wide: the two ideographs take two each.
    assert!(lines[2].ends_with(&format!("|{}^", " ".repeat(14))), "{shown}");
    let error = refused(&mut s, "lo\u{301}ad mnist");
    assert!(error.contains("a statement"), "{error}");
    let error = refused(&mut s, "\u{3000}\u{3000}batch\u{3000}0");
    assert!(error.contains("1:9: expected a batch size"), "{error}");
}

#[test]
fn very_long_and_binary_lines_are_parse_errors() {
    let _g = serial();
    let mut s = Session::new();
    let long = format!("print \"{}", "x".repeat(1 << 20));
    assert!(refused(&mut s, &long).contains("closing"));
    let long_number = format!("batch {}", "9".repeat(100_000));
    assert!(refused(&mut s, &long_number).contains("from 1 to 65536"));
    assert!(refused(&mut s, "\u{0}\u{1}\u{7f}load").contains("a statement"));
    assert!(refused(&mut s, "load \u{feff}mnist").contains("1:"));
}

#[test]
fn a_panicking_statement_is_an_internal_error_and_the_session_goes_on() {
    let _g = serial();
    // Only this test uses `compare`, so the hook touches no other test of this binary.
    std::env::set_var("MNISTLAB_DEBUG_PANIC", "compare");
    let mut s = Session::new();
    run(&mut s, "seed 5");
    let result = s.run_source("print \"before\"\ncompare\nprint \"after\"", None, &mut |_| {});
    std::env::remove_var("MNISTLAB_DEBUG_PANIC");
    match result {
        Err(RunError::Internal { error, .. }) => {
            assert_eq!(error.text, "compare");
            assert!(error.message.starts_with("internal error: MNISTLAB_DEBUG_PANIC=compare"), "{}", error.message);
            assert!(error.message.contains("Please report it"), "{}", error.message);
        }
        other => panic!("expected an internal error, got {other:?}"),
    }
    // The session is intact and keeps its state; without the hook `compare` answers as usual.
    match s.run_source("compare", None, &mut |_| {}) {
        Err(RunError::Statement { error, .. }) => {
            assert!(error.message.contains("no training run"), "{}", error.message)
        }
        other => panic!("expected compare's own error, got {other:?}"),
    }
    let events = run(&mut s, "print \"after\"");
    assert!(events.iter().any(|e| matches!(e, Event::Text(t) if t == "after")));
    assert_eq!(s.statements().first().map(String::as_str), Some("seed 5"));
}

#[test]
fn plot_history_after_a_fit_stopped_in_its_first_epoch_says_why() {
    let _g = serial();
    let mut s = Session::new();
    run(&mut s, "load mnist\nsubset 20 per class\nnormalize\nmodel conv8 pool dense16");
    // `execute` clears the flag when it starts; raise it from the first progress event.
    let flag = s.interrupt_flag();
    let stmt = mnistlab::lang::parse_line("fit 2", 1).unwrap().unwrap();
    let mut notes = Vec::new();
    s.execute(&stmt, &mut |e| {
        if let Event::Progress(_) = e {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        if let Event::Text(t) = e {
            notes.push(t);
        }
    })
    .unwrap();
    assert!(notes.iter().any(|n| n.starts_with("interrupted during epoch 1")), "{notes:?}");
    assert!(notes.iter().any(|n| n == "the model keeps the weights reached when it was interrupted"), "{notes:?}");
    let error = refused(&mut s, "plot history");
    assert!(error.contains("stopped during its first epoch"), "{error}");
    let events = run(&mut s, "compare");
    assert!(!common::tables(&events).is_empty());
}

#[test]
fn peak_memory_stays_bounded() {
    let _g = serial();
    let mut s = Session::new();
    run(&mut s, "model conv32 pool dense128");
    // Reset this process's peak RSS (Linux: 5 → clear_refs) so that only what follows counts.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    for source in ["model dense100000 dense100000", "model dense1000000 dense1000000", "batch 65536", "expand 1000x"] {
        assert!(s.run_source(source, None, &mut |_| {}).is_err(), "{source}");
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let peak_kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    // The refused statements allocated nothing of their size: the peak stays near where it was.
    assert!(peak_kib < 1 << 20, "peak RSS {peak_kib} KiB");
    assert!(Path::new("/proc/self/status").exists());
}

#[test]
fn odd_statements_in_any_order_never_panic() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let mut s = Session::new();
    run(&mut s, "load mnist\nsubset 2 per class seed 1\nnormalize");
    let statements = [
        "split val 99",
        "split 1/1/98",
        "filter classes 200",
        "filter classes 3,3,3",
        "load mnist\nsubset 3 per class",
        "augment crop 64",
        "augment preview 4",
        "augment elastic 1000 50",
        "augment preview 2",
        "augment scale 10..10 shear 80 rotate 180 noise 1 erase 1",
        "augment preview 256",
        "expand 3x",
        "model conv64 gap",
        "freeze 5..1000",
        "unfreeze 999",
        "head 256",
        "threads 256",
        "evaluate val",
        "show mistakes 1024",
        "plot confusion",
        "plot history",
        "merge",
        "adapt lora rank 4096",
        "model dense1 dense1",
        "adapt lora rank 1",
        "fit 1",
        "merge",
        "summary",
        "save /dev/full/x",
        "save model /proc/x.safetensors",
        &format!("save model {d}/m.safetensors"),
        &format!("load model {d}/m.safetensors"),
        &format!("save {d}/x as png"),
        &format!("load {d}/x"),
        &format!("save {d}/y as csv"),
        &format!("load csv {d}/y/train.csv"),
        &format!("save {d}/z as npz"),
        "predict /",
        "load /",
        "load idx /etc/passwd /etc/passwd",
        "load pkl /etc/passwd",
        "load npz /etc/passwd",
        "load csv /etc/passwd",
        "load model /etc/passwd",
        "run /etc/passwd",
        "show samples 1024 test class 255",
        "split 100/0/0",
        "fit 1 patience 1",
        "head 2",
        "evaluate train",
        "optimizer sgd lr 10 momentum 0.999",
        "fit 1",
        "device cuda",
        "info",
        "help memory",
        "memory",
    ];
    for source in statements {
        if let Err(e @ RunError::Internal { .. }) = s.run_source(source, None, &mut |_| {}) {
            panic!("{source}: {e}");
        }
        assert_eq!(texts(&run(&mut s, "print \"ok\"")), vec!["ok".to_string()], "after {source}");
    }
}

#[test]
fn every_failure_names_its_kind() {
    let _g = serial();
    let mut s = Session::new();
    let kind = |s: &mut Session, source: &str| s.run_source(source, None, &mut |_| {}).expect_err(source).kind_name();
    assert_eq!(kind(&mut s, "fit 0"), "ParseError");
    assert_eq!(kind(&mut s, "evaluate"), "UsageError", "no model yet");
    assert_eq!(kind(&mut s, "load npz /no/such/file.npz"), "DataError");
    assert_eq!(kind(&mut s, "model dense100000 dense100000"), "BudgetError");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.safetensors");
    std::fs::write(&bad, b"not a model").unwrap();
    assert_eq!(kind(&mut s, &format!("load model {}", bad.display())), "ModelError");
}

#[test]
fn bad_searches_are_refused_and_the_session_goes_on() {
    let _g = serial();
    let mut s = Session::new();
    refused_with(&mut s, "tune apply", &["no search to apply", "run `tune"]);
    refused_with(&mut s, "tune lr 1e-2..1e-4", &["not below its start", "1:9"]);
    refused_with(&mut s, "tune lr 0..1e-2", &["a learning rate", "above 0"]);
    refused_with(&mut s, "tune lr 1e-4..1e-2 log batch 32 trials 0", &["how many trials", "from 1 to 1000"]);
    refused_with(&mut s, "tune trials 100000000000000000000000 lr 1e-3..1e-2", &["how many trials", "from 1 to 1000"]);
    refused_with(&mut s, "tune epochs 1001 lr 1e-3..1e-2", &["the epochs of a trial", "from 1 to 1000"]);
    refused_with(&mut s, "tune optimizer adam,rmsprop", &["one of adam, adamw, sgd", "1:21"]);
    refused_with(&mut s, "tune optimizer adan", &["one of adam, adamw, sgd", "adam"]);
    refused_with(&mut s, "tune optimizer", &["one of adam, adamw, sgd"]);
    refused_with(&mut s, "tune batch 32,0", &["a batch size", "1:15"]);
    refused_with(&mut s, "tune batch 32,", &["a batch size"]);
    refused_with(&mut s, "tune smoothing 0..1", &["label smoothing", "below 1"]);
    refused_with(&mut s, "tune smoothing 0..0.1 log", &["above 0 for `log`"]);
    refused_with(&mut s, "tune lr 1e-3 lr 1e-2", &["given twice"]);
    refused_with(&mut s, "tune prune seed 3", &["a setting to search"]);
    refused_with(&mut s, "tune", &["a setting to search"]);
    refused_with(&mut s, "tune model", &["a quoted model"]);
    refused_with(&mut s, "tune model \"\"", &["inside the quotes", "empty"]);
    refused_with(&mut s, "tune model \"   \" | \"dense8\"", &["inside the quotes"]);
    refused_with(&mut s, "tune model \"dense8\" |", &["a quoted model"]);
    // An error inside a quoted model points at its word.
    refused_with(&mut s, "tune model \"conv32 bogus\"", &["a layer", "1:20"]);
    refused_with(&mut s, "tune model \"dense8", &["closing"]);
    // Parsed, but refused by the session: no data, then no validation split.
    refused_with(&mut s, "tune lr 1e-3..1e-2", &["tune needs data"]);
    refused_with(&mut s, "tune model \"dense100000 dense100000\" | \"dense8\"", &["tune needs data"]);
    run(&mut s, "load mnist\nsubset 10 per class seed 1");
    refused_with(&mut s, "tune model \"dense8\"", &["validation split", "split val 10"]);
    run(&mut s, "split val 20 seed 1");
    refused_with(&mut s, "tune lr 1e-3..1e-2", &["tune needs an architecture"]);
    // Every architecture at every batch size is checked against the budget before any trial.
    refused_with(&mut s, "tune model \"dense8\" | \"dense100000 dense100000\"", &["would need", "memory budget"]);
    refused_with(&mut s, "tune apply", &["no search to apply"]);
}
