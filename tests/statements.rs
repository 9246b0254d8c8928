//! Session-level tests of the augmentation and training statements on real MNIST.

use std::path::Path;

use mnistlab::data::SplitKind;
use mnistlab::session::{Event, Session, Task};

mod common;
use common::{error, run, tables, texts};

/// The accuracy printed by `evaluate`: `test: loss L - accuracy A (...)`.
fn accuracy(events: &[Event]) -> f64 {
    let line = texts(events).into_iter().rev().find(|t| t.contains(" - accuracy ")).expect("an evaluation line");
    line.split(" - accuracy ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap()
}

fn png_size(png: &[u8]) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let reader = decoder.read_info().unwrap();
    (reader.info().width, reader.info().height)
}

#[test]
fn augment_preview_expand_and_flip_warning() {
    let mut session = Session::new();
    run(&mut session, "seed 3\nload mnist\nsplit val 10 seed 3");
    let events = run(&mut session, "augment rotate 10 shift 0.1\naugment preview 16");
    let image = events
        .iter()
        .find_map(|e| match e {
            Event::Image(i) => Some(i.clone()),
            _ => None,
        })
        .expect("a preview image");
    // 16 originals beside 16 augmented versions, 8 tiles a row: 4 rows, under a title of two
    // lines (what the images are, and the augmentation).
    keep(&image);
    let captions: Vec<String> = (0..32).map(|i| if i % 2 == 0 { "0".into() } else { "0 aug".into() }).collect();
    let title = "16 train images of mnist, each beside its augmented version (seed 3)\naugment rotate 10 shift 0.1";
    let expected = mnistlab::plot::titled_grid_size(title, &captions, 28, 28, 8);
    assert_eq!(png_size(&image.png), expected);
    assert_eq!(expected.1, mnistlab::plot::image_grid_size(32, 28, 28, 8).1 + 40);

    let before: Vec<usize> = SplitKind::ALL.iter().map(|k| session.dataset().unwrap().splits[k].len()).collect();
    run(&mut session, "expand 2x");
    let after: Vec<usize> = SplitKind::ALL.iter().map(|k| session.dataset().unwrap().splits[k].len()).collect();
    assert_eq!(after, vec![2 * before[0], before[1], before[2]]);

    let mut errors = Vec::new();
    let e = session.run_source("augment flip h", None, &mut |e| errors.push(e)).unwrap_err().to_string();
    assert!(e.contains("flipping digits changes what they mean") && e.contains("force"), "{e}");
    let events = run(&mut session, "augment flip h force");
    assert!(events.iter().any(|e| matches!(e, Event::Warning(w) if w.contains("mirrored 2"))));
    let shown = texts(&run(&mut session, "augment"));
    assert!(shown[0].contains("flip"), "{shown:?}");
    run(&mut session, "augment off");
    let e = session.run_source("expand 2x", None, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("expand needs an augmentation"), "{e}");
}

#[test]
fn small_model_one_epoch_on_10k_reaches_95_percent_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = dir.path().join("small.safetensors");
    let mut session = Session::new();
    run(&mut session, "seed 1\nload mnist\nnormalize\nsubset 1000 per class seed 1\nmodel seed-cnn\nfit 1");
    let events = run(&mut session, "evaluate test");
    let acc = accuracy(&events);
    assert!(acc >= 0.95, "test accuracy {acc}");
    run(&mut session, &format!("save model \"{}\"", model_path.display()));

    // Five test digits written as PNG files, predicted from the folder.
    let digits = dir.path().join("digits");
    std::fs::create_dir(&digits).unwrap();
    let test = &session.dataset().unwrap().splits[&SplitKind::Test];
    let mut labels = Vec::new();
    for i in 0..5 {
        let file = std::fs::File::create(digits.join(format!("{i}.png"))).unwrap();
        let mut encoder = png::Encoder::new(file, 28, 28);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.write_header().unwrap().write_image_data(test.image(i, 784)).unwrap();
        labels.push(test.labels[i].to_string());
    }
    let predicted = |events: &[Event]| -> Vec<String> {
        let table = events
            .iter()
            .find_map(|e| match e {
                Event::Table(t) if t.title.as_deref() == Some("predictions (top 3)") => Some(t.clone()),
                _ => None,
            })
            .expect("a predictions table");
        table.rows.iter().map(|r| r[1].split(' ').next().unwrap().to_string()).collect()
    };
    let first = predicted(&run(&mut session, &format!("predict \"{}\"", digits.display())));
    let right = first.iter().zip(&labels).filter(|(p, l)| p == l).count();
    assert!(right >= 4, "predicted {first:?} for {labels:?}");

    // The saved model, loaded in a fresh session, predicts the same and scores the same.
    let mut fresh = Session::new();
    run(&mut fresh, &format!("load mnist\nnormalize\nload model \"{}\"", model_path.display()));
    let second = predicted(&run(&mut fresh, &format!("predict \"{}\"", digits.display())));
    assert_eq!(first, second);
    assert_eq!(accuracy(&run(&mut fresh, "evaluate test")), acc);
}

#[test]
fn training_statements_in_the_wrong_order_say_what_is_missing() {
    let mut session = Session::new();
    let err = |session: &mut Session, src: &str| session.run_source(src, None, &mut |_| {}).unwrap_err().to_string();
    assert!(err(&mut session, "fit 1").contains("fit needs data"));
    run(&mut session, "load mnist");
    assert!(err(&mut session, "fit 1").contains("fit needs a model"));
    assert!(err(&mut session, "plot history").contains("needs a model"));
    let e = err(&mut session, "model conv32 pool conv32 pool conv32 pool conv32");
    assert!(e.contains("layer") && e.contains("conv32"), "{e}");
    run(&mut session, "model seed-small");
    assert!(err(&mut session, "plot history").contains("fit N"));
    run(&mut session, "filter classes 0-4");
    assert!(err(&mut session, "load model /nonexistent/m.safetensors").contains("/nonexistent/m.safetensors"));
    let missing = Path::new("/nonexistent");
    assert!(!missing.exists());
}

#[test]
fn device_keeps_a_model_on_its_device_and_a_refused_device_changes_nothing() {
    // The moves between devices run in tests/cuda.rs on a GPU; here, the CPU side of them.
    let dir = tempfile::tempdir().unwrap();
    let save = |session: &mut Session, name: &str| {
        let path = dir.path().join(name);
        run(session, &format!("save model {}", path.display()));
        std::fs::read(path).unwrap()
    };
    let mut session = Session::new();
    run(&mut session, "seed 2\nload mnist\nnormalize\nsubset 20 per class seed 2\nmodel conv4 bn pool dense8\nfit 1");
    let before = save(&mut session, "before.safetensors");
    assert_eq!(texts(&run(&mut session, "device cpu")), vec!["device cpu".to_string()], "already there: no move");
    assert_eq!(save(&mut session, "cpu.safetensors"), before);
    if mnistlab::model::device(mnistlab::model::DeviceKind::Cuda).is_err() {
        let e = error(&mut session, "device cuda");
        assert!(e.contains("no CUDA device") && !e.contains('\n'), "{e}");
        assert!(session.network_copy().unwrap().device().is_cpu(), "the model stays where it was");
        assert_eq!(save(&mut session, "after.safetensors"), before);
        run(&mut session, "fit 1");
    }
}

#[test]
fn find_lr_suggests_rates_plots_them_and_leaves_the_weights_as_they_were() {
    let mut session = Session::new();
    run(&mut session, "load mnist\nsubset 200 per class seed 1\nnormalize\nmodel seed-small");
    let weights = |s: &Session| -> Vec<Vec<u32>> {
        let snapshot = s.network().expect("a model").snapshot().unwrap();
        snapshot
            .iter()
            .map(|(_, t)| t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect())
            .collect()
    };
    let before = weights(&session);
    let events = run(&mut session, "find lr 1e-6..1 steps 40");
    assert_eq!(weights(&session), before, "the range test restores every weight bit for bit");
    let lines = texts(&events);
    assert!(lines[0].starts_with("find lr: 40 batches of 32 from 1.0e-6 to 1.0e0"), "{lines:?}");
    for what in ["steepest descent", "lowest loss ÷ 10"] {
        let line = lines.iter().find(|l| l.contains(what)).unwrap_or_else(|| panic!("{what}: {lines:?}"));
        let rate: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((1e-7..1.0).contains(&rate), "{line}");
    }
    let image = events.iter().find_map(|e| match e {
        Event::Image(i) => Some(i.clone()),
        _ => None,
    });
    let image = image.expect("the loss curve");
    keep(&image);
    assert_eq!(png_size(&image.png), mnistlab::plot::LR_CURVE_SIZE);
    // Its title names the model and the test; the rate axis is labelled at true values.
    let texts = svg_texts(image.svg.as_deref().expect("the loss curve as SVG"));
    let all: Vec<&str> = texts.iter().map(|t| t.1.as_str()).collect();
    assert!(all.contains(&"learning-rate range test of conv32 maxpool dense128"), "{all:?}");
    assert!(all.contains(&"40 batches of 32 from 1.0e-6 to 1.0e0"), "{all:?}");
    let ticks: Vec<&str> =
        texts.iter().filter(|(a, t)| a == "middle" && t.parse::<f64>().is_ok()).map(|t| t.1.as_str()).collect();
    assert!(ticks.len() >= 4, "{texts:?}");
    assert_eq!(ticks[..4], ["1e-6", "1e-5", "1e-4", "0.001"], "{texts:?}");
    // Training afterwards starts from the untouched weights and works as before.
    run(&mut session, "fit 1");
}

#[test]
fn find_lr_in_the_wrong_order_or_with_a_bad_range_says_why() {
    let mut session = Session::new();
    let error = |s: &mut Session, source: &str| s.run_source(source, None, &mut |_| {}).expect_err(source).to_string();
    assert!(error(&mut session, "find lr").contains("find lr needs data"));
    run(&mut session, "load mnist\nsubset 10 per class seed 1");
    assert!(error(&mut session, "find lr").contains("find lr needs a model"));
    run(&mut session, "model seed-small");
    assert!(error(&mut session, "find lr 1..1").contains("must grow"));
    assert!(error(&mut session, "find lr 5..1").contains("not below its start"));
    assert!(error(&mut session, "find lr steps 1").contains("from 2 to 100000"));
}

#[test]
fn save_history_writes_the_epochs_fit_printed_as_csv_and_json() {
    let mut session = Session::new();
    let dir = tempfile::tempdir().unwrap();
    run(&mut session, "load mnist\nsubset 100 per class seed 1\nsplit val 20 seed 1\nnormalize\nmodel seed-small");
    let early = session.run_source("save history h.csv", None, &mut |_| {}).expect_err("no run yet").to_string();
    assert!(early.contains("save history needs a training run"), "{early}");
    let printed: Vec<String> =
        texts(&run(&mut session, "fit 2")).into_iter().filter(|t| t.starts_with("Epoch ")).collect();
    let csv_path = dir.path().join("runs/history.csv");
    let json_path = dir.path().join("history.json");
    let said = texts(&run(
        &mut session,
        &format!("save history {}\nsave history {}", csv_path.display(), json_path.display()),
    ));
    assert!(said[0].starts_with("saved the history of 2 epochs to ") && said[0].ends_with("(CSV)"), "{said:?}");
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows[0], ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds", "images_per_sec"]);
    assert_eq!(rows.len(), 3);
    for (row, line) in rows[1..].iter().zip(&printed) {
        // The epoch line prints each value to 4 places: the CSV holds the same numbers in full.
        for (i, name) in [(1, "loss"), (2, "accuracy"), (3, "val_loss"), (4, "val_accuracy")] {
            let full: f32 = row[i].parse().unwrap();
            let shown = line.split(&format!(" - {name}: ")).nth(1).unwrap().split(' ').next().unwrap();
            assert_eq!(format!("{full:.4}"), shown, "{name} in {line}");
        }
    }
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(json["epochs"].as_array().unwrap().len(), 2);
    let wrong = session.run_source("save history h.txt", None, &mut |_| {}).expect_err("not csv or json").to_string();
    assert!(wrong.contains(".csv or .json"), "{wrong}");
    assert!(!Path::new("h.txt").exists());
}

#[test]
fn export_onnx_from_a_script_writes_the_model_with_its_classes_and_scaling() {
    use mnistlab::model::files::onnx::proto::ModelProto;
    use prost::Message;
    let mut session = Session::new();
    let dir = tempfile::tempdir().unwrap();
    let early = common::error(&mut session, "export onnx early.onnx");
    assert!(early.contains("export onnx needs a model: run e.g. `model seed-cnn` first"), "{early}");
    assert!(!Path::new("early.onnx").exists());
    let path = dir.path().join("out/fashion.onnx");
    let script = dir.path().join("export.lab");
    std::fs::write(
        &script,
        format!(
            "load fashion-mnist\nfilter classes 5-9\nsubset 20 per class seed 1\nstandardize\n\
             model conv8 pool bn dense16 dropout 0.5\nfit 1\nexport onnx {}\n",
            path.display()
        ),
    )
    .unwrap();
    let said = texts(&run(&mut session, &format!("run {}", script.display())));
    let line = said.iter().find(|t| t.starts_with("exported ONNX model (opset 13, ")).expect("the export line");
    assert!(line.contains("input `image` float32 N×1×28×28 scaled as (x/255-"), "{line}");
    let model = ModelProto::decode(std::fs::read(&path).unwrap().as_slice()).unwrap();
    let meta: std::collections::HashMap<String, String> =
        model.metadata_props.iter().map(|e| (e.key.clone().unwrap(), e.value.clone().unwrap())).collect();
    let classes: Vec<String> = serde_json::from_str(&meta["classes"]).unwrap();
    let dataset = session.dataset().unwrap();
    assert_eq!(classes, dataset.classes[5..10].to_vec());
    let scaling: mnistlab::data::PixelScaling = serde_json::from_str(&meta["pixel_scaling"]).unwrap();
    assert_eq!(scaling, dataset.scaling);
    let graph = model.graph.unwrap();
    let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_deref().unwrap()).collect();
    assert_eq!(ops, ["Conv", "Relu", "MaxPool", "BatchNormalization", "Flatten", "Gemm", "Relu", "Gemm", "Softmax"]);
    let out_dims = graph.output[0].r#type.as_ref().unwrap().tensor_type.as_ref().unwrap().shape.as_ref().unwrap();
    assert_eq!(out_dims.dim[1].dim_value, Some(5));
    // A file that cannot be written is an error naming it; the session goes on.
    let bad = common::error(&mut session, "export onnx /proc/no/such.onnx");
    assert!(bad.contains("/proc/no"), "{bad}");
    assert!(session.network().is_some());
    run(&mut session, "summary");
}

/// The trial lines of a `tune` without their wall times (`…, 3 epochs, 1.2 s, done`).
fn trial_lines(events: &[Event]) -> Vec<String> {
    let strip = |l: &str| {
        let (head, tail) = l.rsplit_once(" epochs, ").unwrap();
        let status = tail.split_once(" s, ").unwrap().1;
        format!("{head} epochs, {status}")
    };
    texts(events).iter().filter(|l| l.starts_with("trial ")).map(|l| strip(l)).collect()
}

#[test]
fn tune_is_seeded_prunes_records_every_trial_and_applies_the_best() {
    let setup =
        "seed 2\nload mnist\nnormalize\nsubset 40 per class seed 2\nsplit val 25 seed 2\nmodel conv8 pool dense32";
    let search = "tune trials 5 epochs 4 lr 1e-4..3e-2 log batch 16,64 optimizer adam,sgd prune";
    let mut session = Session::new();
    run(&mut session, setup);
    let events = run(&mut session, search);
    let lines = trial_lines(&events);
    assert_eq!(lines.len(), 5, "{lines:?}");
    // Same seed, same trials and same results, in a fresh session.
    let mut again = Session::new();
    run(&mut again, setup);
    assert_eq!(trial_lines(&run(&mut again, search)), lines);

    // Rungs at 1 and 3 of 4 epochs: the first trial always goes on, some later one is pruned.
    assert!(lines[0].ends_with("4 epochs, done"), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("pruned at 1") || l.contains("pruned at 3")), "{lines:?}");
    let table = &tables(&events)[0];
    assert_eq!(table.rows.len(), 5);
    let best = |row: &Vec<String>| -> f64 { row[table.header.len() - 4].trim_end_matches('%').parse().unwrap() };
    assert!(table.rows.windows(2).all(|w| best(&w[0]) >= best(&w[1])), "sorted by best val accuracy: {table:?}");
    let summary = texts(&events).into_iter().find(|l| l.contains("saved by pruning")).expect("the saving");
    let epochs_run: usize = table.rows.iter().map(|r| r[table.header.len() - 3].parse::<usize>().unwrap()).sum();
    assert!(summary.contains(&format!("{epochs_run} of 20 epochs run")), "{summary}");
    let image = events.iter().find_map(|e| match e {
        Event::Image(i) => Some(i.clone()),
        _ => None,
    });
    let image = image.expect("the tune plot");
    keep(&image);
    assert_eq!(png_size(&image.png), mnistlab::plot::tune_size(3));
    // The title names the search and its best trial; every number on the lr axis is one of
    // 1, 2, 5 × 10^k (the log axis is labelled at true values).
    let svg = svg_texts(image.svg.as_deref().expect("the tune plot as SVG"));
    let all: Vec<&str> = svg.iter().map(|t| t.1.as_str()).collect();
    assert!(all.iter().any(|t| t.starts_with("tune: 5 trials of 4 epochs")), "{all:?}");
    assert!(all.iter().any(|t| t.starts_with("best: trial ") && t.contains("val accuracy")), "{all:?}");
    let lr_panel = all.iter().position(|t| *t == "val accuracy vs lr").expect("the lr panel");
    let lr_end = all.iter().position(|t| *t == "val accuracy vs batch").expect("the batch panel");
    let lr_ticks: Vec<f64> =
        svg[lr_panel..lr_end].iter().filter(|(a, _)| a == "middle").filter_map(|t| t.1.parse().ok()).collect();
    assert!(!lr_ticks.is_empty(), "{svg:?}");
    for v in lr_ticks {
        let mantissa = v / 10f64.powf(v.log10().floor());
        assert!([1.0, 2.0, 5.0].iter().any(|m| (mantissa - m).abs() < 1e-9), "lr tick {v}");
    }

    // Every trial is in `compare`, with no test accuracy: the search never reads the test split.
    let compare = tables(&run(&mut session, "compare"));
    let trials: Vec<&Vec<String>> = compare[0].rows.iter().filter(|r| r[3].contains("tune trial")).collect();
    assert_eq!(trials.len(), 5);
    assert!(trials.iter().all(|r| r[8] == "-"), "{trials:?}");

    // `tune apply` then `fit 4` repeats the best trial: the same validation accuracies.
    let best_trial: usize = table.rows[0][1].parse().unwrap();
    let applied = texts(&run(&mut session, "tune apply"));
    assert!(applied.iter().any(|l| l.starts_with("tune apply: optimizer ")), "{applied:?}");
    assert!(applied.iter().any(|l| l == "tune apply: model conv8 pool dense32"), "{applied:?}");
    let fit = texts(&run(&mut session, "fit 4"));
    let vals: Vec<String> = fit
        .iter()
        .filter_map(|l| l.split("val_accuracy: ").nth(1))
        .map(|v| format!("{:.2}%", 100.0 * v.split_whitespace().next().unwrap().parse::<f64>().unwrap()))
        .collect();
    let line = &lines[best_trial - 1];
    assert!(line.contains(&format!("by epoch {} |", vals.join(" "))), "{line} vs {vals:?}");
}

#[test]
fn tune_searches_architectures_and_needs_a_validation_split() {
    let mut session = Session::new();
    run(&mut session, "seed 4\nload mnist\nnormalize\nsubset 20 per class seed 4");
    let e = error(&mut session, "tune trials 2 epochs 1 model \"dense16\" | \"conv4 pool dense8\"");
    assert!(e.contains("validation split") && e.contains("split val 10"), "{e}");
    run(&mut session, "split val 20 seed 4");
    let e = error(&mut session, "tune trials 2 lr 1e-3..1e-2");
    assert!(e.contains("tune needs an architecture"), "{e}");
    let events = run(&mut session, "tune trials 3 epochs 1 model \"dense16\" | \"conv4 pool dense8\" seed 9");
    let lines = trial_lines(&events);
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l.contains("model dense16") || l.contains("model conv4 pool dense8")), "{lines:?}");
    let best = texts(&events).into_iter().find(|l| l.starts_with("best: trial")).expect("the best settings");
    assert!(best.contains("  model ") && best.contains("  batch 32") && best.contains("optimizer adam lr 0.001"));
}

#[test]
fn an_interrupted_tune_keeps_its_finished_trials() {
    let mut session = Session::new();
    let setup =
        "seed 3\nload mnist\nnormalize\nsubset 20 per class seed 3\nsplit val 25 seed 3\nmodel conv4 pool dense16";
    run(&mut session, setup);
    let flag = session.interrupt_flag();
    let mut events = Vec::new();
    let mut out = |e: Event| {
        // The stop button, pressed during the second trial's first epoch.
        if matches!(&e, Event::Progress(p) if matches!(p.task, Task::TrialEpoch { trial: 2, trials: 3, .. })) {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        events.push(e);
    };
    session.run_source("tune trials 3 epochs 2 lr 1e-3..1e-2", None, &mut out).unwrap();
    let lines = trial_lines(&events);
    assert_eq!(lines.len(), 2, "the third trial never starts: {lines:?}");
    assert!(lines[0].ends_with("2 epochs, done") && lines[1].ends_with("interrupted"), "{lines:?}");
    assert_eq!(tables(&events)[0].rows.len(), 2);
    assert!(texts(&events).iter().any(|l| l.starts_with("best: trial 1 ")), "an interrupted trial is never the best");
    run(&mut session, "tune apply");
    let compare = tables(&run(&mut session, "compare"));
    assert_eq!(compare[0].rows.iter().filter(|r| r[3].contains("tune trial")).count(), 2);
}

/// The `(text-anchor, text)` of every `<text>` element of an SVG, in order.
fn svg_texts(svg: &str) -> Vec<(String, String)> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let (attributes, rest) = t.split_once('>')?;
            let anchor = attributes.split("text-anchor=\"").nth(1).and_then(|a| a.split('"').next()).unwrap_or("");
            Some((anchor.to_string(), rest.split_once("</text>")?.0.trim().to_string()))
        })
        .collect()
}

/// Writes an image to `$MNISTLAB_PLOT_DIR/NAME.png` when that variable is set, to look at.
fn keep(image: &mnistlab::session::Image) {
    if let Some(dir) = std::env::var_os("MNISTLAB_PLOT_DIR") {
        std::fs::write(Path::new(&dir).join(format!("{}.png", image.name)), &image.png).unwrap();
    }
}

#[test]
fn plots_name_their_run_tick_whole_epochs_and_refuse_an_untrained_confusion_matrix() {
    let mut session = Session::new();
    let setup =
        "seed 1\nload mnist\nsubset 30 per class seed 1\nnormalize\nsplit val 20 seed 1\nmodel conv8 pool dense32";
    run(&mut session, setup);
    // No evaluation yet: the matrix would be an untrained model's guesses, so it is refused
    // with what to run.
    let e = error(&mut session, "plot confusion");
    assert!(e.contains("has not been trained") && e.contains("`fit N`"), "{e}");
    run(&mut session, "fit 2");
    let events = run(&mut session, "plot history");
    let image = events
        .iter()
        .find_map(|e| match e {
            Event::Image(i) => Some(i.clone()),
            _ => None,
        })
        .expect("the history");
    keep(&image);
    let svg = image.svg.expect("the history as SVG");
    let texts = svg_texts(&svg);
    let all: Vec<&str> = texts.iter().map(|t| t.1.as_str()).collect();
    assert!(all.iter().any(|t| t.starts_with("run 1: conv8 maxpool dense32 on mnist")), "{all:?}");
    let facts = all.iter().find(|t| t.starts_with("best val accuracy ")).expect("the accuracies");
    assert!(facts.contains("kept") && facts.contains("test accuracy "), "{facts}");
    // The x axes (centred numbers): 1 and 2 once each a panel, nothing else.
    let ticks: Vec<&str> =
        texts.iter().filter(|(a, t)| a == "middle" && t.parse::<f64>().is_ok()).map(|t| t.1.as_str()).collect();
    assert_eq!(ticks, ["1", "2", "1", "2"], "{texts:?}");
    let kept = all.iter().filter(|t| t.starts_with("kept: epoch ")).count();
    assert_eq!(kept, 2, "{all:?}");
    // After `fit` the test split was scored: the matrix is drawn.
    let events = run(&mut session, "plot confusion");
    let image = events.iter().find_map(|e| match e {
        Event::Image(i) => Some(i.clone()),
        _ => None,
    });
    assert_eq!(image.as_ref().map(|i| i.name.as_str()), Some("confusion"));
    keep(&image.expect("the matrix"));
    // The worst mistakes, under a title naming the run.
    let events = run(&mut session, "show mistakes 8");
    let image = events.iter().find_map(|e| match e {
        Event::Image(i) => Some(i.clone()),
        _ => None,
    });
    keep(&image.expect("the mistakes"));
    // A loaded model has no evaluation yet: refused, naming `evaluate`.
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("m.safetensors");
    run(&mut session, &format!("save model \"{}\"", saved.display()));
    run(&mut session, &format!("load model \"{}\"", saved.display()));
    let e = error(&mut session, "plot confusion");
    assert!(e.contains("there is none since it was loaded") && e.contains("run `evaluate`"), "{e}");
    // A new model has no evaluation: refused again.
    run(&mut session, "model dense16");
    let e = error(&mut session, "plot confusion");
    assert!(e.contains("has not been trained"), "{e}");
}

#[test]
fn ema_and_tta_change_what_evaluate_sees() {
    let mut s = Session::new();
    run(&mut s, "seed 4\nload mnist\nsubset 100 per class\nnormalize\nsplit 80/10/10 seed 4\nmodel conv8 pool dense32");
    run(&mut s, "fit 1");
    let plain = accuracy(&run(&mut s, "evaluate test"));
    let shown = texts(&run(&mut s, "tta on"));
    assert!(shown[0].contains("5 views"), "{shown:?}");
    let augmented = run(&mut s, "evaluate test");
    assert!(accuracy(&augmented) > 0.0);
    run(&mut s, "tta off");
    assert_eq!(accuracy(&run(&mut s, "evaluate test")), plain);
    // The same run with a moving average ends on other weights, which the note names.
    run(&mut s, "model conv8 pool dense32\nema 0.9");
    let fitted = texts(&run(&mut s, "fit 1"));
    assert!(fitted.iter().any(|t| t.contains("moving average")), "{fitted:?}");
    run(&mut s, "ema off");
    assert!(error(&mut s, "ema 1").contains("below 1"));
    assert!(error(&mut s, "tta maybe").contains("one of `on`, `off`"));
    // A relu after a layer that applies it already is named as doing nothing.
    let shown = texts(&run(&mut s, "model conv8 relu pool dense32"));
    assert!(shown.iter().any(|t| t.contains("conv8 applies ReLU already")), "{shown:?}");
}

#[test]
fn an_ensemble_trains_scores_saves_loads_and_compares_its_members() {
    let dir = tempfile::tempdir().unwrap();
    let mut session = Session::new();
    run(&mut session, "load mnist\nsubset 60 per class seed 4\nsplit val 10 seed 4\nnormalize\nseed 9");
    let e = error(&mut session, "ensemble on");
    assert!(e.contains("no members") && e.contains("ensemble fit K N"), "{e}");
    run(&mut session, "model conv8 pool dense16");
    let fitted = run(&mut session, "ensemble fit 3 1");
    let said = texts(&fitted);
    for (k, seed) in [(1, 9), (2, 10), (3, 11)] {
        assert!(said.iter().any(|t| t == &format!("ensemble member {k} of 3, seed {seed}")), "{said:?}");
    }
    let ensemble = accuracy(&fitted);
    assert!(said.iter().any(|t| t.starts_with("ensemble of 3, test:")), "{said:?}");
    // The last member alone scores otherwise (it is the current model).
    let alone = accuracy(&run(&mut session, "ensemble off\nevaluate"));
    assert_ne!(alone, ensemble);
    // compare lists each member's run and the ensemble's test accuracy.
    let compared = tables(&run(&mut session, "compare"));
    let members = compared.iter().find(|t| t.title.as_deref().is_some_and(|t| t.starts_with("the ensemble"))).unwrap();
    assert_eq!(members.rows.len(), 4);
    assert_eq!(members.rows[3][0], "ensemble");
    assert_eq!(members.rows[3][4], format!("{:.2}%", 100.0 * ensemble));
    assert_eq!(members.rows.iter().take(3).map(|r| r[2].as_str()).collect::<Vec<_>>(), ["1", "2", "3"]);
    // Saved and loaded, it scores the same.
    let folder = dir.path().join("ens");
    run(&mut session, &format!("ensemble save {}\nensemble clear", folder.display()));
    for k in 1..=3 {
        assert!(folder.join(format!("member-{k}.safetensors")).is_file());
    }
    let loaded = run(&mut session, &format!("ensemble load {}\nevaluate", folder.display()));
    assert_eq!(accuracy(&loaded), ensemble);
    // An evaluation with test-time augmentation is not what `compare` records.
    let with_tta = accuracy(&run(&mut session, "tta on\nevaluate\ntta off"));
    assert_ne!(with_tta, ensemble);
    let compared = tables(&run(&mut session, "compare"));
    let last = compared.last().unwrap().rows.last().unwrap().clone();
    assert_eq!(last[4], format!("{:.2}%", 100.0 * ensemble));
    // A model of other classes cannot join.
    run(&mut session, "filter classes 0-4\nmodel conv8 pool dense16");
    let e = error(&mut session, "ensemble add");
    assert!(e.contains("member 2") && e.contains("5 classes"), "{e}");
    // A folder without the list is refused, and the ensemble stays as it was.
    let e = error(&mut session, &format!("ensemble load {}", dir.path().display()));
    assert!(e.contains("ensemble.json"), "{e}");
    assert_eq!(tables(&run(&mut session, "ensemble"))[0].rows.len(), 3);
}

#[test]
fn precision_bf16_trains_like_fp32_repeats_bit_for_bit_and_says_where_it_runs() {
    let prepare = "seed 2\nload mnist\nsubset 100 per class\nnormalize\nsplit 80/10/10 seed 2\nmodel conv16 pool conv32 pool dense64\n";
    let mut s = Session::new();
    let shown = texts(&run(&mut s, "precision"));
    assert!(shown[0].starts_with("precision fp32: f32 throughout (this CPU's bf16 units: "), "{shown:?}");
    assert!(error(&mut s, "precision fp16").contains("one of `fp32`, `bf16`"));
    let Some(units) = mnistlab::kernels::bf16::units() else {
        // A CPU without bf16 units refuses it, and nothing changes.
        assert!(error(&mut s, "precision bf16").contains("no bf16 units"));
        assert!(texts(&run(&mut s, "precision"))[0].starts_with("precision fp32"));
        return;
    };
    run(&mut s, prepare);
    run(&mut s, "fit 2");
    let fp32 = accuracy(&run(&mut s, "evaluate test"));
    let dir = tempfile::tempdir().unwrap();
    let mut weights = Vec::new();
    let mut accuracies = Vec::new();
    for round in 0..2 {
        let set = texts(&run(&mut s, "precision bf16"));
        assert!(
            set[0].starts_with(&format!(
                "precision bf16: convolutions and dense layers multiply bf16 operands on {units}"
            )),
            "{set:?}"
        );
        let fitted = texts(&run(&mut s, &format!("{prepare}fit 2")));
        assert!(fitted.iter().any(|t| t.starts_with("precision bf16")), "the fit says its precision: {fitted:?}");
        accuracies.push(accuracy(&run(&mut s, "evaluate test")));
        let path = dir.path().join(format!("bf16-{round}.safetensors"));
        run(&mut s, &format!("save model {}", path.display()));
        weights.push(std::fs::read(&path).unwrap());
        run(&mut s, "precision fp32");
    }
    assert_eq!(accuracies[0], accuracies[1], "the same seed trains the same in bf16");
    assert!(weights[0] == weights[1], "the same seed saves the same weights in bf16");
    // 2 epochs on 800 images: bf16 within 3 points of fp32 on the 100 test images.
    assert!((accuracies[0] - fp32).abs() <= 0.03, "bf16 {} vs fp32 {fp32}", accuracies[0]);
    let compared = tables(&run(&mut s, "compare"));
    assert!(
        compared.iter().any(|t| t.rows.iter().any(|r| r.iter().any(|c| c.contains("bf16")))),
        "compare names the precision"
    );
}
