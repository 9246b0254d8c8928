//! The checklist of a layer kind (ARCHITECTURE.md, "To add a layer"), checked for every kind
//! `Layer::iter()` gives (one layer of each, with its settings' defaults) and for the implied
//! flatten and output layers: its fused forward pass and gradients match candle's own
//! operations, its words parse back to it, `help` knows them, and the onnxruntime test holds it.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use mnistlab::kernels::Precision;
use mnistlab::lang::{docs, parse_line, ModelChoice, StatementKind};
use mnistlab::model::architecture::layers::init::Init;
use mnistlab::model::architecture::layers::{Ctx, Flatten, Kind, Mode, Node, Output, OutputStyle, Params, Shape};
use mnistlab::model::Layer;
use strum::IntoEnumIterator;

/// Layers with settings other than their defaults.
fn other_settings() -> Vec<Layer> {
    use mnistlab::model::architecture::layers::{Activation, Conv, Dense};
    let conv = |kernel, same_padding, stride, bias, relu| Conv { filters: 4, kernel, same_padding, stride, bias, relu };
    vec![
        Layer::Conv(conv(5, true, 2, false, false)),
        Layer::Conv(conv(4, false, 1, false, true)),
        Layer::Conv(conv(1, false, 1, true, false)),
        Layer::Conv(conv(7, true, 3, true, true)),
        Layer::Dense(Dense { units: 6, bias: false, relu: false }),
        Layer::Dense(Dense { units: 6, bias: true, relu: false }),
        Layer::Activation(Activation::Tanh),
        Layer::Activation(Activation::Silu),
    ]
}

/// Every node kind a network can hold.
fn every_node() -> Vec<Node> {
    let mut nodes: Vec<Node> = Layer::iter().chain(other_settings()).map(Node::Hidden).collect();
    nodes.push(Node::Flatten);
    nodes.push(Node::Output(Output::plain(5)));
    for (bias, batch_norm) in [(false, true), (true, true), (false, false)] {
        nodes.push(Node::Output(Output { classes: 5, style: OutputStyle { bias, batch_norm } }));
    }
    nodes
}

/// Deterministic values in [-1, 1) for `len` elements.
fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len as u32)
        .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) % 2000) as f32 / 1000.0 - 1.0)
        .collect()
}

/// The layer's output and the gradients of a weighted sum of it (by the input, then by each
/// parameter in order), run in `dtype` with the fused kernels (`fast`, their products in
/// `precision`) or candle's own ops.
fn run(
    kind: &dyn Kind,
    x: &Tensor,
    params: &Params,
    dtype: DType,
    (fast, precision): (bool, Precision),
) -> (Tensor, Vec<Tensor>) {
    let x = Var::from_tensor(&x.to_dtype(dtype).unwrap()).unwrap();
    let params = Params(
        params.0.iter().map(|(name, var)| (*name, Var::from_tensor(&var.to_dtype(dtype).unwrap()).unwrap())).collect(),
    );
    let key = || 0x5EED_u64;
    let ctx = Ctx { params: &params, mode: Mode { train: true, fast, frozen: false }, dropout_key: &key, precision };
    let y = kind.forward(x.as_tensor(), &ctx).unwrap();
    let weights = Tensor::from_vec(values(y.elem_count(), 7), y.shape(), &Device::Cpu).unwrap();
    let loss = (y.clone() * weights.to_dtype(dtype).unwrap()).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let mut out = vec![grads.get(x.as_tensor()).expect("a gradient reaches the input").clone()];
    for (name, var) in &params.0 {
        if name.starts_with("running_") {
            continue;
        }
        out.push(
            grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{}: no gradient for {name}", kind.label())).clone(),
        );
    }
    (y, out)
}

/// The largest difference between `a` and `b`, relative to `b`'s largest magnitude (or to
/// 0.001 where that is smaller: a bias before a batch norm has a gradient of zero, give or
/// take rounding).
fn relative_difference(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let b = b.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
    a.iter().zip(&b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Whether the node applies a ReLU of its own after its product.
fn own_relu(node: &Node) -> bool {
    matches!(node, Node::Hidden(Layer::Conv(c)) if c.relu) || matches!(node, Node::Hidden(Layer::Dense(d)) if d.relu)
}

/// The root mean square of `a - b` relative to that of `b` (or to 0.001 where that is
/// smaller, as in [`relative_difference`]).
fn relative_rms(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let b = b.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    assert_eq!(a.len(), b.len());
    let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
    let diff = norm(&mut a.iter().zip(&b).map(|(x, y)| x - y));
    diff / norm(&mut b.iter().copied()).max(1e-3)
}

#[test]
fn every_kind_runs_its_kernel_and_its_gradients_match_candle() {
    let device = Device::Cpu;
    for node in every_node() {
        let kind = node.kind();
        let input = if kind.takes_flat() { Shape::Flat(20) } else { Shape::Image(3, 9, 9) };
        let (output, count) = kind.infer(input).unwrap_or_else(|e| panic!("{}: {e}", kind.label()));
        let varmap = VarMap::new();
        let params = kind.init(&mut Init::new(&varmap, &device, 3), input, "l0").unwrap();
        let stored: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
        assert_eq!(stored, count, "{}: the shape rule's parameter count", kind.label());
        let dims: Vec<usize> = match input {
            Shape::Image(c, h, w) => vec![4, c, h, w],
            Shape::Flat(n) => vec![4, n],
        };
        let x = Tensor::from_vec(values(dims.iter().product(), 1), dims, &device).unwrap();
        let (fast, fast_grads) = run(kind, &x, &params, DType::F32, (true, Precision::F32));
        let (reference, reference_grads) = run(kind, &x, &params, DType::F64, (false, Precision::F32));
        let want: Vec<usize> = match output {
            Shape::Image(c, h, w) => vec![4, c, h, w],
            Shape::Flat(n) => vec![4, n],
        };
        assert_eq!(fast.dims(), want, "{}: the shape rule's output", kind.label());
        assert!(relative_difference(&fast, &reference) < 1e-4, "{}: forward", kind.label());
        for (i, (a, b)) in fast_grads.iter().zip(&reference_grads).enumerate() {
            let d = relative_difference(a, b);
            assert!(d < 1e-4, "{}: gradient {i} differs by {d}", kind.label());
        }
        assert!(!kind.kernel(Mode { train: true, fast: true, frozen: false }).is_empty());
        // In bf16 the products round both operands to 8 significant bits (relative error
        // 2^-9 each) and sum in f32: values and gradients within 1% of the largest (0.3% seen).
        // Behind a layer's own ReLU, a gradient is compared as a whole (root mean square,
        // within 10%; 3-7% seen): where an output is within rounding of zero, bf16 and f64
        // fall on either side of the ReLU, and that value's gradient passes in one of them only.
        let (mixed, mixed_grads) = run(kind, &x, &params, DType::F32, (true, Precision::Bf16));
        let d = relative_difference(&mixed, &reference);
        assert!(d < 1e-2, "{}: bf16 forward differs by {d}", kind.label());
        for (i, (a, b)) in mixed_grads.iter().zip(&reference_grads).enumerate() {
            let (d, limit) =
                if own_relu(&node) { (relative_rms(a, b), 0.1) } else { (relative_difference(a, b), 1e-2) };
            assert!(d < limit, "{}: bf16 gradient {i} differs by {d}", kind.label());
        }
    }
}

#[test]
fn every_kind_parses_back_from_its_words_and_help_knows_them() {
    for layer in Layer::iter().chain(other_settings()) {
        let kind = layer.kind();
        let line = format!("model {}", kind.words());
        let statement = parse_line(&line, 1).unwrap_or_else(|e| panic!("{line}: {e}")).expect("a statement");
        match statement.kind {
            StatementKind::Model(ModelChoice::Layers(spec)) => assert_eq!(spec.layers, vec![layer.clone()], "{line}"),
            other => panic!("{line} parsed as {other:?}"),
        }
        assert!(!kind.help().is_empty(), "{}: no help", kind.label());
        for help in kind.help() {
            for word in help.words {
                assert!(docs::topic_help(word, 80).is_some(), "`help {word}` says nothing");
            }
        }
        let first = kind.words().split(' ').next().unwrap().to_string();
        assert!(docs::topic_help(&first, 80).is_some(), "`help {first}` says nothing");
    }
    // The implied layers have no words of their own.
    assert!(Flatten.help().is_empty());
}

#[test]
fn every_kind_is_in_a_model_of_the_onnxruntime_test() {
    let script = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/onnx/test_onnx.py")).unwrap();
    let (mut held, mut styles) = (Vec::new(), Vec::new());
    for piece in script.split("\"model ").skip(1) {
        let statement = format!("model {}", piece.split('"').next().unwrap());
        if let Ok(Some(parsed)) = parse_line(&statement, 1) {
            if let StatementKind::Model(ModelChoice::Layers(spec)) = parsed.kind {
                held.extend(spec.layers.iter().map(std::mem::discriminant));
                styles.push(spec.output);
            }
        }
    }
    for layer in Layer::iter() {
        assert!(
            held.contains(&std::mem::discriminant(&layer)),
            "no model of tests/onnx/test_onnx.py holds a {} layer",
            layer.kind().keras()
        );
    }
    let full = OutputStyle { bias: false, batch_norm: true };
    assert!(styles.contains(&full), "no model of tests/onnx/test_onnx.py ends with `output nobias bn`");
}
