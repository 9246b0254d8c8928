//! The plan of each zoo model (benches/zoo.rs) in training and in inference, as `summary` shows
//! it: which layers run together as one kernel call.

use mnistlab::session::{Event, Session};

mod common;
use common::run;

/// The steps of one column of `summary`'s table (`fit runs it in` or `evaluate runs it in`),
/// as `layers kernel` groups (1-based layer numbers), `|`-separated.
fn steps(session: &mut Session, column: &str) -> String {
    let events = run(session, "summary");
    let table = events
        .iter()
        .find_map(|e| match e {
            Event::Table(t) => Some(t.clone()),
            _ => None,
        })
        .expect("summary prints a table");
    let at = table.header.iter().position(|c| c == column).expect("the column");
    // Consecutive rows with the same step text are one step.
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for row in &table.rows {
        let Some(step) = row[at].strip_prefix("step ") else { continue };
        match groups.last_mut() {
            Some((last, layers)) if last == step => layers.push(row[0].clone()),
            _ => groups.push((step.to_string(), vec![row[0].clone()])),
        }
    }
    let text: Vec<String> = groups
        .iter()
        .map(|(step, layers)| format!("{} {}", layers.join("+"), step.split_once(' ').expect("step N kernel").1))
        .collect();
    text.join(" | ")
}

#[test]
fn each_zoo_model_has_its_plan_in_both_modes() {
    // (model, training plan, inference plan)
    let cases = [
        (
            "conv32 pool dense128",
            "1+2 conv2d_relu_pool | 3+4 linear | 5 linear",
            "1+2 conv2d_relu_pool | 3+4 linear | 5 linear",
        ),
        (
            "conv32 pool conv64 pool conv64 dense64",
            "1+2 conv2d_relu_pool | 3+4 conv2d_relu_pool | 5 conv2d | 6+7 linear | 8 linear",
            "1+2 conv2d_relu_pool | 3+4 conv2d_relu_pool | 5 conv2d | 6+7 linear | 8 linear",
        ),
        (
            "conv32 bn pool conv64 bn pool dense128",
            "1+2+3 conv2d_relu_batch_norm_train | 4+5+6 conv2d_relu_batch_norm_train | 7+8 linear | 9 linear",
            "1 conv2d | 2 batch_norm_fixed | 3 max_pool2d | 4 conv2d | 5 batch_norm_fixed | 6 max_pool2d \
             | 7+8 linear | 9 linear",
        ),
        (
            "conv32 conv64 pool dropout 0.25 dense128 dropout 0.5",
            "1 conv2d | 2+3 conv2d_relu_pool | 4+5+6 dropout_linear | 7+8 dropout_linear",
            "1 conv2d | 2+3 conv2d_relu_pool | 5+6 linear | 8 linear",
        ),
        (
            "conv32k5 pool conv64k5 pool dense128",
            "1+2 conv2d_relu_pool | 3+4 conv2d_relu_pool | 5+6 linear | 7 linear",
            "1+2 conv2d_relu_pool | 3+4 conv2d_relu_pool | 5+6 linear | 7 linear",
        ),
        (
            "conv32 same conv32 same pool conv64 same conv64 same pool dense256",
            "1 conv2d | 2+3 conv2d_relu_pool | 4 conv2d | 5+6 conv2d_relu_pool | 7+8 linear | 9 linear",
            "1 conv2d | 2+3 conv2d_relu_pool | 4 conv2d | 5+6 conv2d_relu_pool | 7+8 linear | 9 linear",
        ),
        ("dense512 dense512", "1+2 linear | 3 linear | 4 linear", "1+2 linear | 3 linear | 4 linear"),
        (
            "conv6k5 same avgpool conv16k5 avgpool dense120 dense84",
            "1 conv2d | 2 avg_pool2d | 3 conv2d | 4 avg_pool2d | 5+6 linear | 7 linear | 8 linear",
            "1 conv2d | 2 avg_pool2d | 3 conv2d | 4 avg_pool2d | 5+6 linear | 7 linear | 8 linear",
        ),
        (
            "conv32 conv64 pool conv128 gap",
            "1 conv2d | 2+3 conv2d_relu_pool | 4 conv2d | 5 global_avg_pool | 6 linear",
            "1 conv2d | 2+3 conv2d_relu_pool | 4 conv2d | 5 global_avg_pool | 6 linear",
        ),
    ];
    let mut session = Session::new();
    for (model, fit, evaluate) in cases {
        run(&mut session, &format!("model {model}"));
        assert_eq!(steps(&mut session, "fit runs it in"), fit, "{model} in training");
        assert_eq!(steps(&mut session, "evaluate runs it in"), evaluate, "{model} in inference");
    }
}

#[test]
fn freezing_and_adapters_rebuild_the_plan() {
    let mut session = Session::new();
    run(&mut session, "model conv32 bn pool dropout 0.5 dense64");
    let fused = "1+2+3 conv2d_relu_batch_norm_train | 4+5+6 dropout_linear | 7 linear";
    assert_eq!(steps(&mut session, "fit runs it in"), fused);
    // A frozen batch norm runs on its moving statistics, so the convolution runs alone.
    run(&mut session, "freeze 2");
    assert_eq!(
        steps(&mut session, "fit runs it in"),
        "1 conv2d | 2 batch_norm_fixed | 3 max_pool2d | 4+5+6 dropout_linear | 7 linear"
    );
    run(&mut session, "unfreeze all");
    assert_eq!(steps(&mut session, "fit runs it in"), fused);
    // LoRA freezes the body and runs the adapted dense layer with its adapter.
    run(&mut session, "adapt lora rank 2");
    assert_eq!(
        steps(&mut session, "fit runs it in"),
        "1 conv2d | 2 batch_norm_fixed | 3 max_pool2d | 4 dropout | 5 flatten | 6 linear + lora | 7 linear"
    );
    run(&mut session, "merge");
    assert_eq!(steps(&mut session, "fit runs it in"), fused);
}
