//! No Rust `{:?}` output reaches the user: a realistic session's every text, warning, table
//! and image title is checked for the shapes Debug output takes.

use mnistlab::session::{Event, Session};

mod common;
use common::run;

/// Keras' layer names (which `summary` prints, as Keras does) and product names: CamelCase
/// that is meant.
const MEANT: &[&str] = &[
    "MaxPooling2D",
    "AveragePooling2D",
    "BatchNormalization",
    "GlobalAveragePooling2D",
    "TensorBoard",
    "InputLayer",
    "AdamW",
    "OneCycleLR",
    "PyTorch",
    "JupyterLab",
    "ReLU",
    "LoRA",
    "GiB",
    "MiB",
    "KiB",
];

/// Why `text` looks like Debug output, if it does: `Name { field: …`, `[1, 2]`, `Some(…)`,
/// a CamelCase word (an enum variant), or a quoted path `"…"` with escapes.
fn debug_shape(text: &str) -> Option<String> {
    let words: Vec<&str> = text.split(|c: char| !(c.is_alphanumeric() || c == '_')).collect();
    for w in &words {
        let caps = w.chars().filter(char::is_ascii_uppercase).count();
        let camel = caps >= 2
            && w.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && w.chars().any(|c| c.is_ascii_lowercase())
            && w.chars().zip(w.chars().skip(1)).any(|(a, b)| a.is_ascii_lowercase() && b.is_ascii_uppercase());
        if camel && !MEANT.contains(w) {
            return Some(format!("the CamelCase word `{w}`"));
        }
    }
    // `Name { field:`
    for (i, _) in text.match_indices(" { ") {
        let before = text[..i].chars().last().is_some_and(char::is_alphanumeric);
        let after = text[i + 3..].split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or("");
        if before && !after.is_empty() && text[i + 3 + after.len()..].starts_with(':') {
            return Some("a struct `Name { field: … }`".into());
        }
    }
    // `[1, 2, 3]`: a Vec of numbers (not the intervals `[0, 1]` and `[-1, 1]`).
    for (i, _) in text.match_indices('[') {
        let inside = text[i + 1..].split(']').next().unwrap_or("");
        if text[i + 1..].contains(']')
            && !matches!(inside, "0, 1" | "-1, 1")
            && !inside.is_empty()
            && inside.split(", ").all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit() || c == '.'))
        {
            return Some(format!("a list `[{inside}]`"));
        }
    }
    for marker in ["Some(", "None)", "Ok(", "Err("] {
        if text.contains(marker) {
            return Some(format!("`{marker}`"));
        }
    }
    None
}

/// Every piece of text among `events`.
fn all_text(events: &[Event]) -> Vec<String> {
    let mut out = Vec::new();
    for e in events {
        match e {
            Event::Text(t) | Event::Warning(t) => out.push(t.clone()),
            Event::Table(table) => {
                out.extend(table.title.clone());
                out.extend(table.header.iter().cloned());
                out.extend(table.rows.iter().flatten().cloned());
            }
            Event::Image(image) => out.push(image.title.clone()),
            _ => {}
        }
    }
    out
}

#[test]
fn the_shapes_of_debug_output_are_recognized() {
    assert!(debug_shape("optimizer: Adam { lr: 0.001 }").is_some());
    assert!(debug_shape("schedule: OneCycle").is_some());
    assert!(debug_shape("pruning at epochs [1]").is_some());
    assert!(debug_shape("pruning at epochs [1, 3]").is_some());
    assert!(debug_shape("from Some(3)").is_some());
    assert!(debug_shape("optimizer: adam lr 0.001").is_none());
    assert!(debug_shape("max_pooling2d (MaxPooling2D)  (None, 13, 13, 32)").is_none());
}

#[test]
fn no_statement_prints_rust_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("saved");
    let script = format!(
        "seed 1
load mnist
subset 20 per class
info
normalize
split val 10 seed 1
info
show samples 4
augment rotate 10 shift 0.1
augment
augment off
model conv8 pool dense16
summary
optimizer adam lr 0.001
optimizer adamw lr 0.002 decay 0.05
optimizer sgd lr 0.01 momentum 0.9
optimizer sgd lr 0.01
optimizer adam body 0.0001
schedule onecycle
schedule cosine
schedule step every 2 factor 0.5
schedule constant
loss crossentropy smoothing 0.1
batch 32
memory
fit 1
evaluate test
evaluate val
plot history
plot confusion
tune trials 2 epochs 3 lr 1e-4..1e-2 log batch 32,64 optimizer adam,sgd prune seed 2
compare
save {}
save {} as png
help
help fit",
        out.display(),
        dir.path().join("pngs").display()
    );
    let mut session = Session::new();
    let mut found = Vec::new();
    for line in script.lines() {
        let events = run(&mut session, line);
        for text in all_text(&events) {
            if let Some(why) = debug_shape(&text) {
                found.push(format!("`{line}` printed {why}:\n{text}"));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n\n"));
}
