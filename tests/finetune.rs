//! Fine-tuning on real MNIST: frozen layers, new heads, LoRA adapters, their checkpoints, the
//! class-name mapping after `filter classes`, and `compare`. Small subsets, one epoch each.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use mnistlab::data::{PixelScaling, SplitKind};
use mnistlab::lang::{parse_line, LayerSelection, StatementKind};
use mnistlab::model::Network;
use mnistlab::session::Session;

mod common;
use common::{error, run, tables, texts};

/// Every stored tensor of the session's model, flattened, by name.
fn weights(session: &Session) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let net = session.network().expect("a model");
    net.snapshot()
        .unwrap()
        .into_iter()
        .map(|(name, t)| (name, (t.dims().to_vec(), t.flatten_all().unwrap().to_vec1::<f32>().unwrap())))
        .collect()
}

/// Logits of the first `n` test images, in eval mode.
fn logits(session: &Session, n: usize) -> Vec<Vec<f32>> {
    let data = session.dataset().unwrap();
    let test = &data.splits[&SplitKind::Test];
    let (scale, offset) = data.scaling.affine();
    let xs: Vec<f32> = test.pixels[..n * 784].iter().map(|&p| p as f32 * scale + offset).collect();
    let xs = Tensor::from_vec(xs, (n, 1, 28, 28), &Device::Cpu).unwrap();
    session.network().unwrap().forward(&xs, false).unwrap().to_vec2().unwrap()
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

const PREPARE: &str = "seed 5\nload mnist\nnormalize\nsplit val 10 seed 5\nsubset 60 per class seed 5";

#[test]
fn fine_tuning_statements_parse() {
    let parse = |line: &str| parse_line(line, 1).unwrap().unwrap().kind;
    assert_eq!(parse("freeze conv"), StatementKind::Freeze(LayerSelection::Conv));
    assert_eq!(parse("freeze 1..3"), StatementKind::Freeze(LayerSelection::Range(1, 3)));
    assert_eq!(parse("freeze 2"), StatementKind::Freeze(LayerSelection::Range(2, 2)));
    assert_eq!(parse("freeze all but head"), StatementKind::Freeze(LayerSelection::AllButHead));
    assert_eq!(parse("unfreeze"), StatementKind::Unfreeze(LayerSelection::All));
    assert_eq!(parse("unfreeze all"), StatementKind::Unfreeze(LayerSelection::All));
    assert_eq!(parse("head 5"), StatementKind::Head(5));
    assert_eq!(parse("adapt lora rank 4"), StatementKind::AdaptLora { rank: 4, alpha: None });
    assert_eq!(parse("adapt lora rank 8 alpha 16"), StatementKind::AdaptLora { rank: 8, alpha: Some(16.0) });
    assert_eq!(parse("merge"), StatementKind::Merge);
    assert_eq!(parse("compare"), StatementKind::Compare);
    let bad = |line: &str| parse_line(line, 1).unwrap_err();
    assert!(bad("freeze 3..1").expected.contains("not below its start"));
    assert!(bad("freeze 0").expected.contains("from 1"));
    assert_eq!(bad("freeze all but hed").suggestion.as_deref(), Some("head"));
    assert!(bad("adapt lora rank 0").expected.contains("the adapters' rank (a whole number from 1 to 4096)"));
    assert_eq!(bad("adapt lroa rank 4").suggestion.as_deref(), Some("lora"));
    assert!(bad("head").expected.contains("the new output layer's classes"));
}

#[test]
fn frozen_parameters_are_bit_identical_after_fit() {
    let mut session = Session::new();
    run(&mut session, PREPARE);
    // conv, its batch norm (whose moving statistics must not move either), pool, dense, output.
    run(&mut session, "model conv8 bn pool dense32\nfit 1");
    let before = weights(&session);
    let events = run(&mut session, "freeze conv\nsummary");
    let summary = &tables(&events)[0];
    let trainable: Vec<&str> = summary.rows.iter().map(|r| r[4].as_str()).collect();
    assert_eq!(trainable, ["no (frozen)", "no (frozen)", "", "", "yes", "yes"], "{summary:?}");
    // conv8: 80, batch norm: 32 (16 of them moving statistics), dense: 1352·32+32, output: 330.
    let totals = texts(&events).into_iter().find(|t| t.starts_with("total params")).unwrap();
    assert_eq!(totals, "total params: 43738, trainable: 43626, non-trainable: 112");
    run(&mut session, "fit 1");
    let after = weights(&session);
    for name in ["l0.weight", "l0.bias", "l1.weight", "l1.bias", "l1.running_mean", "l1.running_var"] {
        assert_eq!(before[name], after[name], "{name} changed although frozen");
    }
    for name in ["l3.weight", "out.weight"] {
        assert_ne!(before[name], after[name], "{name} did not train");
    }

    // Layers by number, then everything but the head.
    run(&mut session, "unfreeze\nfreeze 4..5\nfit 1");
    let third = weights(&session);
    assert_eq!(after["l3.weight"], third["l3.weight"]);
    assert_ne!(after["l0.weight"], third["l0.weight"]);
    run(&mut session, "unfreeze\nfreeze all but head\nfit 1");
    let fourth = weights(&session);
    for (name, value) in &third {
        if name.starts_with("out.") {
            assert_ne!(*value, fourth[name], "{name}");
        } else {
            assert_eq!(*value, fourth[name], "{name}");
        }
    }
    let e = error(&mut session, "freeze 7");
    assert!(e.contains("6 layers") && e.contains("no layer 7"), "{e}");
}

#[test]
fn head_swaps_the_output_layer_and_names_the_kept_classes() {
    let dir = tempfile::tempdir().unwrap();
    let mut session = Session::new();
    run(&mut session, PREPARE);
    run(&mut session, "filter classes 0-4\nmodel conv8 pool dense32\nfit 2");
    let before = weights(&session);
    assert_eq!(before["out.weight"].0, [5, 32]);

    // A new task: digits 5..9, whose labels stay 5..9 in the data.
    run(&mut session, &format!("{PREPARE}\nfilter classes 5-9"));
    let e = error(&mut session, "fit 1");
    assert!(e.contains("head 5") && e.contains("5, 6, 7, 8, 9"), "{e}");
    assert!(error(&mut session, "head 3").contains("`head 5`"));
    run(&mut session, "head 5");
    let after = weights(&session);
    assert_eq!(after["out.weight"].0, [5, 32]);
    assert_ne!(before["out.weight"].1, after["out.weight"].1, "the head was not replaced");
    for (name, value) in &before {
        if !name.starts_with("out.") {
            assert_eq!(*value, after[name], "{name} changed with the head");
        }
    }

    run(&mut session, "freeze all but head\noptimizer adam lr 0.01\nfit 4");
    let events = run(&mut session, "evaluate test");
    let per_class = &tables(&events)[0];
    let names: Vec<&str> = per_class.rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["5", "6", "7", "8", "9"]);
    let line = texts(&events).into_iter().find(|t| t.starts_with("test: ")).unwrap();
    let accuracy: f64 = line.split(" - accuracy ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    // Mapped wrongly (output k scored as class k), every answer would be wrong.
    assert!(accuracy > 0.5, "{line}");

    // Predictions name the classes: the first test images of 5..9, written as PNG files.
    let test = &session.dataset().unwrap().splits[&SplitKind::Test];
    let digits = dir.path().join("digits");
    std::fs::create_dir(&digits).unwrap();
    let mut truth = Vec::new();
    for i in 0..8 {
        let file = std::fs::File::create(digits.join(format!("{i}.png"))).unwrap();
        let mut encoder = png::Encoder::new(file, 28, 28);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.write_header().unwrap().write_image_data(test.image(i, 784)).unwrap();
        truth.push(test.labels[i].to_string());
    }
    let events = run(&mut session, &format!("predict \"{}\"", digits.display()));
    let predicted: Vec<String> =
        tables(&events)[0].rows.iter().map(|r| r[1].split(' ').next().unwrap().to_string()).collect();
    assert!(predicted.iter().all(|p| ["5", "6", "7", "8", "9"].contains(&p.as_str())), "{predicted:?}");
    let right = predicted.iter().zip(&truth).filter(|(p, t)| p == t).count();
    assert!(right >= 4, "predicted {predicted:?} for {truth:?}");
}

#[test]
fn lora_starts_at_the_base_model_and_merges_to_the_same_outputs() {
    let mut session = Session::new();
    run(&mut session, PREPARE);
    run(&mut session, "model conv8 pool dense32 dense16\nfit 1");
    let base = logits(&session, 64);
    let base_weights = weights(&session);
    let events = run(&mut session, "adapt lora rank 4 alpha 8\nsummary");
    // Adapters on both hidden dense layers: 4·(1352+32) + 4·(32+16).
    let summary = &tables(&events)[0];
    assert_eq!(summary.rows[3][4], "no (frozen) + LoRA 5536 trainable");
    assert_eq!(summary.rows[4][4], "no (frozen) + LoRA 192 trainable");
    assert_eq!(summary.rows[5][4], "yes");
    // B is zero: exactly the base outputs.
    assert_eq!(logits(&session, 64), base);

    run(&mut session, "fit 1");
    let tuned = weights(&session);
    for (name, value) in &base_weights {
        if !name.starts_with("out.") {
            assert_eq!(*value, tuned[name], "{name} changed under LoRA");
        }
    }
    assert!(tuned["l3.lora_b"].1.iter().any(|&v| v != 0.0), "the adapters did not train");
    let unmerged = logits(&session, 64);
    assert_ne!(unmerged, base);
    run(&mut session, "merge");
    let merged = logits(&session, 64);
    let diff = max_abs_diff(&merged, &unmerged);
    assert!(diff < 1e-5, "merged and unmerged outputs differ by {diff}");
    assert!(!weights(&session).contains_key("l3.lora_a"));
    assert!(error(&mut session, "merge").contains("no LoRA adapters"));
    assert!(error(&mut session, "model conv8 pool\nadapt lora rank 2").contains("no hidden dense layer"));
}

#[test]
fn fine_tuned_model_round_trips_with_identical_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tuned.safetensors");
    let mut session = Session::new();
    run(&mut session, PREPARE);
    run(&mut session, "model conv8 bn pool dense32\nfit 1\nfreeze conv\nadapt lora rank 2\nfit 1");
    let summary_before = tables(&run(&mut session, "summary"))[0].clone();
    run(&mut session, &format!("save model \"{}\"", path.display()));

    let mut fresh = Session::new();
    run(&mut fresh, PREPARE);
    let events = run(&mut fresh, &format!("load model \"{}\"", path.display()));
    assert!(texts(&events).iter().any(|t| t.contains("LoRA r2")), "{:?}", texts(&events));
    assert_eq!(weights(&fresh), weights(&session));
    assert_eq!(logits(&fresh, 100), logits(&session, 100));
    assert_eq!(tables(&run(&mut fresh, "summary"))[0], summary_before);
    let net: &Network = fresh.network().unwrap();
    assert_eq!(net.frozen_layers(), [0, 1]);
    assert_eq!(net.adapted_layers(), [4]);
    // The loaded model goes on training where it stopped: frozen layers stay as they are.
    let before = weights(&fresh);
    run(&mut fresh, "fit 1");
    assert_eq!(before["l0.weight"], weights(&fresh)["l0.weight"]);
    // Merged, it saves and loads as a plain model that remembers only the frozen marks.
    run(&mut fresh, &format!("merge\nsave model \"{}\"", path.display()));
    let (back, meta) = mnistlab::model::load_model(&path, &Device::Cpu).unwrap();
    assert_eq!(meta.lora, None);
    assert_eq!(meta.frozen, [0, 1]);
    let images = &fresh.dataset().unwrap().splits[&SplitKind::Test].pixels[..20 * 784];
    let scaling = PixelScaling::Unit;
    assert_eq!(
        mnistlab::model::predict_probs(&back, images, scaling).unwrap(),
        mnistlab::model::predict_probs(fresh.network().unwrap(), images, scaling).unwrap()
    );
}

#[test]
fn body_rate_and_compare_table() {
    let mut session = Session::new();
    run(&mut session, PREPARE);
    run(&mut session, "model conv8 pool dense32\nfit 1");
    let before = weights(&session);
    // A body rate a million times below the head's: the body barely moves, the head does.
    let events = run(&mut session, "optimizer adam lr 0.001 body 1e-9\nfit 1");
    assert!(texts(&events).iter().any(|t| t.contains("all layers, body lr 0.000000001")), "{:?}", texts(&events));
    let after = weights(&session);
    let moved =
        |name: &str| before[name].1.iter().zip(&after[name].1).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(moved("l2.weight") < 1e-6, "body moved {}", moved("l2.weight"));
    assert!(moved("out.weight") > 1e-4, "head moved {}", moved("out.weight"));

    // The first run again under two more seeds: one summary row over the three.
    run(
        &mut session,
        "optimizer adam\nseed 1\nmodel conv8 pool dense32\nfit 1\nseed 2\nmodel conv8 pool dense32\nfit 1",
    );
    let events = run(&mut session, "compare");
    let tables = tables(&events);
    assert_eq!(tables[0].rows.len(), 4);
    assert_eq!(tables[0].rows[1][3], "all layers, body lr 0.000000001");
    assert_eq!(tables[0].rows[2][1], "conv8 maxpool dense32");
    assert_eq!(tables[0].rows[2][2], "mnist, 600 train");
    assert!(tables[0].rows.iter().all(|r| r[8].ends_with('%')), "every run has a test accuracy");
    let grouped = &tables[1];
    let pair = grouped.rows.iter().find(|r| r[3] == "3").expect("a row over the three seeds");
    assert!(pair[7].contains('(') && pair[7].contains('–'), "{pair:?}");
}
