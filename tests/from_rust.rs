//! The README's "From Rust" example runs, and the README shows it as it is.

#[path = "../examples/from_rust.rs"]
#[allow(dead_code)] // its `main` is for `cargo run --example from_rust`
mod example;

#[test]
fn the_typed_example_trains_and_evaluates() {
    let (history, score) = example::train().unwrap();
    assert_eq!(history.epochs.len(), 3);
    assert!(history.epochs.iter().all(|e| e.val_accuracy.is_some()), "validated every epoch");
    // 1,000 training images and three epochs: well above chance (10%), well below a full run.
    assert!(score.accuracy > 0.6, "test accuracy {}", score.accuracy);
    assert_eq!(score.predictions.len(), 10_500, "15% of 70,000 images");
}

#[test]
fn the_readme_shows_the_example_as_it_is() {
    let source = include_str!("../examples/from_rust.rs");
    let start = source.find("// readme:start\n").unwrap() + "// readme:start\n".len();
    let end = source.find("// readme:end").unwrap();
    let readme = include_str!("../README.md");
    assert!(readme.contains(&source[start..end]), "README's From Rust example differs from examples/from_rust.rs");
}
