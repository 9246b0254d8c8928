//! Network architectures as data: a list of layers, its shapes and parameter counts.
//!
//! ReLU follows every convolution and every hidden dense layer (Keras `activation='relu'`).
//! A flatten is implied before the first dense layer, and the output layer (`Dense(classes)`,
//! logits) is appended when the network is built: a spec describes the hidden layers only.

use serde::{Deserialize, Serialize};

pub use crate::model::architecture::layers::OutputStyle;
use crate::model::architecture::layers::{Activation, Conv, Kind, Node, Output};
pub use crate::model::architecture::layers::{Layer, Shape};
use crate::model::error::{ModelError, Result};

/// The hidden layers of a network, in order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Hidden layers; the output layer is implied.
    pub layers: Vec<Layer>,
    /// How the output layer is built (a bias and no batch norm unless said).
    #[serde(default, skip_serializing_if = "OutputStyle::is_default")]
    pub output: OutputStyle,
}

/// Where a built layer comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerSource {
    /// The spec's hidden layer at this 0-based position.
    Spec(usize),
    /// A flatten implied before the first dense layer (or the output layer).
    Flatten,
    /// The output layer: a dense layer with one unit per class and no ReLU (logits).
    Output,
}

/// One built layer: its name, where it comes from, the shapes it takes and gives and its
/// parameter count.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerInfo {
    /// Display name, e.g. `conv32`, `flatten`, `output`.
    pub name: String,
    /// Keras class name, e.g. `Conv2D`.
    pub kind: &'static str,
    /// The spec's layer, an implied flatten or the output layer.
    pub source: LayerSource,
    /// Input shape.
    pub input: Shape,
    /// Output shape.
    pub output: Shape,
    /// Number of parameters (batch norm counts its moving mean and variance, like Keras).
    pub params: usize,
    /// The layer itself.
    pub node: Node,
}

impl LayerInfo {
    /// `node` from `source` on `input`, or why it cannot apply.
    fn new(node: Node, source: LayerSource, input: Shape) -> std::result::Result<LayerInfo, String> {
        let kind = node.kind();
        let (output, params) = kind.infer(input)?;
        Ok(LayerInfo { name: kind.label(), kind: kind.keras(), source, input, output, params, node })
    }
}

/// One row of a Keras-style summary table.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    /// `conv2d_1 (Conv2D)`-style layer name.
    pub layer: String,
    /// `(None, 26, 26, 32)`-style output shape.
    pub output_shape: String,
    /// Parameter count (the layer's own, adapters excluded).
    pub params: usize,
    /// Whether the optimizer updates the layer's own parameters; `None` for a layer without any.
    pub trainable: Option<bool>,
    /// Parameters of LoRA adapters attached to the layer (0 when none).
    pub adapter_params: usize,
}

/// A Keras-style summary: one row per layer and the total parameter count.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The rows, input to output.
    pub rows: Vec<SummaryRow>,
    /// Sum of every row's parameters.
    pub total_params: usize,
    /// Parameters updated by the optimizer (total less batch-norm moving statistics).
    pub trainable_params: usize,
}

/// Names of the built-in architectures, for help texts.
pub const PRESETS: [&str; 6] = ["seed-small", "seed-cnn", "lenet5", "strong", "an-m5", "deotte"];

/// A built-in architecture by name.
///
/// - `seed-small`: conv32 maxpool dense128 (a small first CNN).
/// - `seed-cnn`: conv32 maxpool conv64 maxpool conv64 dense64 (the classic Keras MNIST CNN).
/// - `lenet5`: conv6(5×5,same) avgpool conv16(5×5) avgpool dense120 dense84.
/// - `strong`: two double-conv blocks with dropout, then dense256 with dropout: 99.55% on the
///   official MNIST test set with augmentation and one-cycle Adam (`examples/strong.lab`).
/// - `an-m5`: An et al. 2020's M5 (ansh941/MnistSimpleCNN, `code/models/modelM5.py`): five 5×5
///   convolutions of 32, 64, 96, 128 and 160 filters, each without bias, then batch norm, then
///   ReLU; no pooling; an output layer without bias and a batch norm on the logits.
/// - `deotte`: the CNN of Chris Deotte's Kaggle notebook "25 million images! [0.99757] MNIST":
///   conv → ReLU → batch norm stacks, stride-2 5×5 convolutions in place of pooling, a 4×4
///   convolution and dropout 0.4.
pub fn preset(name: &str) -> Option<ModelSpec> {
    let conv = Layer::conv;
    let conv5 = |filters, same_padding| Layer::Conv(Conv { filters, kernel: 5, same_padding, ..Conv::default() });
    let (dense, dropout, pool, bn) = (Layer::dense, Layer::dropout, Layer::MaxPool, Layer::BatchNorm);
    let mut output = OutputStyle::default();
    let layers = match name {
        "seed-small" => vec![conv(32), pool, dense(128)],
        "seed-cnn" => vec![conv(32), pool.clone(), conv(64), pool, conv(64), dense(64)],
        "lenet5" => vec![conv5(6, true), Layer::AvgPool, conv5(16, false), Layer::AvgPool, dense(120), dense(84)],
        "strong" => vec![
            conv(32),
            conv(32),
            pool.clone(),
            dropout(0.25),
            conv(64),
            conv(64),
            pool,
            dropout(0.25),
            dense(256),
            dropout(0.5),
        ],
        "an-m5" => {
            output = OutputStyle { bias: false, batch_norm: true };
            let block = |filters| {
                let conv = Conv { filters, kernel: 5, bias: false, relu: false, ..Conv::default() };
                [Layer::Conv(conv), bn.clone(), Layer::Activation(Activation::Relu)]
            };
            [32, 64, 96, 128, 160].into_iter().flat_map(block).collect()
        }
        "deotte" => {
            let stride2 =
                |filters| Layer::Conv(Conv { filters, kernel: 5, same_padding: true, stride: 2, ..Conv::default() });
            let conv4 = Layer::Conv(Conv { filters: 128, kernel: 4, ..Conv::default() });
            vec![
                conv(32),
                bn.clone(),
                conv(32),
                bn.clone(),
                stride2(32),
                bn.clone(),
                dropout(0.4),
                conv(64),
                bn.clone(),
                conv(64),
                bn.clone(),
                stride2(64),
                bn.clone(),
                dropout(0.4),
                conv4,
                bn,
                dropout(0.4),
            ]
        }
        _ => return None,
    };
    Some(ModelSpec { layers, output })
}

impl ModelSpec {
    /// A spec with these hidden layers and the plain output layer.
    pub fn new(layers: Vec<Layer>) -> ModelSpec {
        ModelSpec { layers, output: OutputStyle::default() }
    }

    /// The 0-based positions of the `relu` layers that follow a layer whose output has just
    /// been through a ReLU already (a convolution or dense layer with its own, or a `relu`):
    /// they change nothing.
    pub fn idle_relus(&self) -> Vec<usize> {
        let relu = Layer::Activation(Activation::Relu);
        (1..self.layers.len())
            .filter(|&i| self.layers[i] == relu && self.layers[i - 1].kind().ends_with_relu())
            .collect()
    }

    /// The spec's layers as labels separated by spaces, e.g. `conv32 maxpool dense128`, and
    /// the output layer's when it is not the plain one (`output(nobias,bn)`).
    pub fn describe(&self) -> String {
        let mut labels: Vec<String> = self.layers.iter().map(Layer::label).collect();
        if !self.output.is_default() {
            labels.push(Output { classes: 0, style: self.output }.label());
        }
        labels.join(" ")
    }

    /// Every built layer with its output shape and parameter count, for `input` = (channels,
    /// height, width) and `classes` outputs. The implied flatten and output layers are included.
    /// A layer that cannot apply (an image shrunk below its kernel, a convolution after a dense
    /// layer, a bad hyper-parameter) is rejected, naming the layer by its 1-based position.
    pub fn output_shapes(&self, input: (usize, usize, usize), classes: usize) -> Result<Vec<LayerInfo>> {
        let (c, h, w) = input;
        if c == 0 || h == 0 || w == 0 {
            return Err(ModelError::Spec(format!("input shape {c}×{h}×{w} has an empty dimension")));
        }
        if classes < 2 {
            return Err(ModelError::Spec(format!("a classifier needs at least 2 classes, got {classes}")));
        }
        let mut shape = Shape::Image(c, h, w);
        let mut out = Vec::with_capacity(self.layers.len() + 2);
        let flatten =
            |shape| LayerInfo::new(Node::Flatten, LayerSource::Flatten, shape).expect("a flatten always applies");
        for (i, layer) in self.layers.iter().enumerate() {
            if let (true, Shape::Image(..)) = (layer.kind().takes_flat(), shape) {
                out.push(flatten(shape));
                shape = Shape::Flat(shape.size());
            }
            let info = LayerInfo::new(Node::Hidden(layer.clone()), LayerSource::Spec(i), shape)
                .map_err(|message| ModelError::Layer { layer: i + 1, label: layer.label(), message })?;
            shape = info.output;
            out.push(info);
        }
        if let Shape::Image(..) = shape {
            out.push(flatten(shape));
            shape = Shape::Flat(shape.size());
        }
        let output = LayerInfo::new(Node::Output(Output { classes, style: self.output }), LayerSource::Output, shape);
        out.push(output.map_err(ModelError::Spec)?);
        Ok(out)
    }

    /// Bytes that training this spec needs, about: each parameter four times over (weights,
    /// gradients and Adam's two moments) plus a copy of the best weights, and for each image of
    /// a `batch` every layer's output, gradient and temporaries (four copies) and each convolution's
    /// im2col matrix.
    /// Checked against the memory budget before a network is built or trained.
    pub fn training_bytes(&self, input: (usize, usize, usize), classes: usize, batch: usize) -> Result<u64> {
        let infos = self.output_shapes(input, classes)?;
        let params: u64 = infos.iter().map(|i| i.params as u64).fold(0, u64::saturating_add);
        let mut per_image: u64 = 0;
        for info in &infos {
            let out = info.output.size() as u64;
            // Output, its gradient and the temporaries around them (ReLU masks, pooling
            // indices), and the layer's own scratch (a convolution's im2col matrix).
            per_image = per_image.saturating_add(out.saturating_mul(4));
            per_image = per_image.saturating_add(info.node.kind().scratch(info.input, info.output));
        }
        let weights = crate::budget::product(&[params, 4, 5]);
        let activations = crate::budget::product(&[per_image, batch as u64, 4]);
        Ok(weights.saturating_add(activations))
    }

    /// A Keras-style summary (`conv2d (Conv2D)`, `conv2d_1 (Conv2D)`, ...) for `input` and `classes`.
    pub fn summary_rows(&self, input: (usize, usize, usize), classes: usize) -> Result<Summary> {
        let infos = self.output_shapes(input, classes)?;
        let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        let mut rows = Vec::with_capacity(infos.len());
        let mut frozen = 0;
        for info in &infos {
            let base = keras_snake(info.kind);
            let n = seen.entry(info.kind).or_insert(0);
            let layer = if *n == 0 { format!("{base} ({})", info.kind) } else { format!("{base}_{n} ({})", info.kind) };
            *n += 1;
            frozen += info.node.kind().statistics(info.params);
            rows.push(SummaryRow {
                layer,
                output_shape: info.output.keras(),
                params: info.params,
                trainable: (info.params > 0).then_some(true),
                adapter_params: 0,
            });
        }
        let total_params = infos.iter().map(|i| i.params).sum();
        Ok(Summary { rows, total_params, trainable_params: total_params - frozen })
    }
}

/// Keras' automatic layer name for a layer class: snake case, a word starting at each capital
/// after a lower-case letter (`Conv2D` → `conv2d`, `MaxPooling2D` → `max_pooling2d`).
fn keras_snake(class: &str) -> String {
    let mut out = String::with_capacity(class.len() + 4);
    let mut previous_lower = false;
    for c in class.chars() {
        if c.is_uppercase() && previous_lower {
            out.push('_');
        }
        previous_lower = c.is_lowercase();
        out.extend(c.to_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_cnn_matches_keras_shapes_and_params() {
        let spec = preset("seed-cnn").unwrap();
        let infos = spec.output_shapes((1, 28, 28), 10).unwrap();
        let got: Vec<(Shape, usize)> = infos.iter().map(|i| (i.output, i.params)).collect();
        // Keras: conv 3·3·1·32+32, conv 3·3·32·64+64, conv 3·3·64·64+64, dense 576·64+64, 64·10+10.
        let want = vec![
            (Shape::Image(32, 26, 26), 3 * 3 * 32 + 32),
            (Shape::Image(32, 13, 13), 0),
            (Shape::Image(64, 11, 11), 3 * 3 * 32 * 64 + 64),
            (Shape::Image(64, 5, 5), 0),
            (Shape::Image(64, 3, 3), 3 * 3 * 64 * 64 + 64),
            (Shape::Flat(576), 0),
            (Shape::Flat(64), 576 * 64 + 64),
            (Shape::Flat(10), 64 * 10 + 10),
        ];
        assert_eq!(got, want);
        assert_eq!(infos[0].params, 320);
        let summary = spec.summary_rows((1, 28, 28), 10).unwrap();
        assert_eq!(summary.total_params, 93_322);
        assert_eq!(summary.trainable_params, 93_322);
        assert_eq!(summary.rows[0].layer, "conv2d (Conv2D)");
        assert_eq!(summary.rows[2].layer, "conv2d_1 (Conv2D)");
        assert_eq!(summary.rows[0].output_shape, "(None, 26, 26, 32)");
        assert_eq!(summary.rows.last().unwrap().layer, "dense_1 (Dense)");
    }

    #[test]
    fn seed_small_and_lenet_shapes() {
        let infos = preset("seed-small").unwrap().output_shapes((1, 28, 28), 10).unwrap();
        // 13·13·32 = 5408 inputs to dense128.
        assert_eq!(infos[2].output, Shape::Flat(5408));
        assert_eq!(infos[3].params, 5408 * 128 + 128);
        // Each layer takes what the one before gives; the flatten and output layers are implied.
        let sources: Vec<LayerSource> = infos.iter().map(|i| i.source).collect();
        use LayerSource::{Flatten, Output, Spec};
        assert_eq!(sources, vec![Spec(0), Spec(1), Flatten, Spec(2), Output]);
        assert_eq!(infos[0].input, Shape::Image(1, 28, 28));
        for pair in infos.windows(2) {
            assert_eq!(pair[1].input, pair[0].output, "{}", pair[1].name);
        }
        let infos = preset("lenet5").unwrap().output_shapes((1, 28, 28), 10).unwrap();
        assert_eq!(infos[0].output, Shape::Image(6, 28, 28));
        assert_eq!(infos[2].output, Shape::Image(16, 10, 10));
        assert_eq!(infos[3].output, Shape::Image(16, 5, 5));
        assert_eq!(infos[4].output, Shape::Flat(400));
    }

    #[test]
    fn batchnorm_statistics_count_as_non_trainable() {
        use Layer::*;
        let spec = ModelSpec::new(vec![
            Layer::conv(32),
            BatchNorm,
            Layer::conv(32),
            BatchNorm,
            MaxPool,
            Layer::conv(64),
            BatchNorm,
            Layer::conv(64),
            BatchNorm,
            MaxPool,
            Layer::dense(256),
            BatchNorm,
        ]);
        let s = spec.summary_rows((1, 28, 28), 10).unwrap();
        let bn: usize = s.rows.iter().filter(|r| r.layer.contains("BatchNormalization")).map(|r| r.params).sum();
        assert_eq!(bn, 4 * (32 + 32 + 64 + 64 + 256));
        assert_eq!(s.total_params - s.trainable_params, bn / 2);
    }

    #[test]
    fn too_small_spec_is_rejected_naming_the_layer() {
        let spec = ModelSpec::new(vec![
            Layer::conv(32),
            Layer::MaxPool,
            Layer::conv(64),
            Layer::MaxPool,
            Layer::conv(64),
            Layer::MaxPool,
            Layer::conv(64),
        ]);
        // 28 → 26 → 13 → 11 → 5 → 3 → 1: the last conv sees 1×1.
        let e = spec.output_shapes((1, 28, 28), 10).unwrap_err();
        assert!(matches!(&e, ModelError::Layer { layer: 7, label, .. } if label == "conv64"), "{e:?}");
        assert_eq!(e.to_string(), "layer 7 (conv64): input 1×1 is smaller than the 3×3 kernel");
        let spec = ModelSpec::new(vec![Layer::conv(8), Layer::conv(8), Layer::MaxPool, Layer::MaxPool, Layer::conv(8)]);
        // 28 → 26 → 24 → 12 → 6 → 4
        assert!(spec.output_shapes((1, 28, 28), 10).is_ok());
        let spec = ModelSpec::new(vec![Layer::dense(10), Layer::conv(8)]);
        let e = spec.output_shapes((1, 28, 28), 10).unwrap_err().to_string();
        assert!(e.starts_with("layer 2 (conv8): a convolution cannot follow"), "{e}");
        let e = ModelSpec::new(vec![Layer::dropout(1.5)]).output_shapes((1, 28, 28), 10).unwrap_err().to_string();
        assert!(e.contains("layer 1 (dropout1.5)"), "{e}");
        let e = ModelSpec::new(vec![]).output_shapes((1, 28, 28), 1).unwrap_err();
        assert!(matches!(e, ModelError::Spec(_)), "{e:?}");
        assert_eq!(e.to_string(), "a classifier needs at least 2 classes, got 1");
    }

    #[test]
    fn training_bytes_grow_with_width_and_batch() {
        let small = ModelSpec::new(vec![Layer::dense(128)]).training_bytes((1, 28, 28), 10, 32).unwrap();
        // 101,770 parameters × 4 bytes × 5, plus activations.
        assert!(small > 101_770 * 20 && small < 101_770 * 20 + 32 * 4 * 10_000, "{small}");
        let huge = ModelSpec::new(vec![Layer::dense(1_000_000), Layer::dense(1_000_000)])
            .training_bytes((1, 28, 28), 10, 32)
            .unwrap();
        assert!(huge > 1_000_000_000_000 * 20, "{huge}");
        let conv = ModelSpec::new(vec![Layer::conv(32)]);
        assert!(conv.training_bytes((1, 28, 28), 10, 128).unwrap() > conv.training_bytes((1, 28, 28), 10, 32).unwrap());
    }

    #[test]
    fn specs_saved_before_the_layer_options_read_and_save_as_they_were() {
        let old = r#"{"layers":[{"Conv":{"filters":32,"kernel":3,"same_padding":false}},"MaxPool",{"Dropout":0.25},{"Dense":128},"BatchNorm"]}"#;
        let spec: ModelSpec = serde_json::from_str(old).unwrap();
        let want = vec![Layer::conv(32), Layer::MaxPool, Layer::dropout(0.25), Layer::dense(128), Layer::BatchNorm];
        assert_eq!(spec.layers, want);
        assert_eq!(serde_json::to_string(&spec).unwrap(), old);
        // Settings other than the defaults are saved and read back.
        let options = ModelSpec::new(vec![
            Layer::Conv(Conv { kernel: 5, same_padding: true, stride: 2, bias: false, relu: false, ..Conv::default() }),
            Layer::Dense(crate::model::architecture::layers::Dense { units: 8, bias: false, relu: false }),
            Layer::Activation(crate::model::architecture::layers::Activation::Tanh),
        ]);
        let json = serde_json::to_string(&options).unwrap();
        assert_eq!(serde_json::from_str::<ModelSpec>(&json).unwrap(), options, "{json}");
    }

    #[test]
    fn record_presets_have_their_sources_shapes_and_parameter_counts() {
        // An et al.'s modelM5.py: Conv2d(c_in, c_out, 5, bias=False) for 1→32→64→96→128→160, each
        // with BatchNorm2d; Linear(10240, 10, bias=False) and BatchNorm1d(10). PyTorch counts
        // 1,128,180 parameters (weights, batch-norm scales and shifts) and 980 buffer values.
        let m5 = preset("an-m5").unwrap();
        let infos = m5.output_shapes((1, 28, 28), 10).unwrap();
        let flat = infos.iter().find(|i| i.source == LayerSource::Flatten).unwrap();
        assert_eq!(flat.output, Shape::Flat(10240));
        let s = m5.summary_rows((1, 28, 28), 10).unwrap();
        assert_eq!(s.trainable_params, 1_128_180);
        assert_eq!(s.total_params - s.trainable_params, 980);
        assert_eq!(m5.describe().split(' ').next_back(), Some("output(nobias,bn)"));
        // Deotte's Keras model: model.summary() counts 327,242 parameters, 832 of them the batch
        // norms' moving statistics; the 4×4 convolution leaves 1×1×128.
        let deotte = preset("deotte").unwrap();
        let infos = deotte.output_shapes((1, 28, 28), 10).unwrap();
        let shapes: Vec<Shape> = infos.iter().filter(|i| i.kind == "Conv2D").map(|i| i.output).collect();
        let want = [(32, 26), (32, 24), (32, 12), (64, 10), (64, 8), (64, 4), (128, 1)];
        assert_eq!(shapes, want.map(|(c, h)| Shape::Image(c, h, h)));
        let s = deotte.summary_rows((1, 28, 28), 10).unwrap();
        assert_eq!(s.total_params, 327_242);
        assert_eq!(s.total_params - s.trainable_params, 832);
    }

    #[test]
    fn an_output_style_is_saved_only_when_it_is_not_the_plain_one() {
        let plain = serde_json::to_string(&preset("seed-small").unwrap()).unwrap();
        assert!(!plain.contains("output"), "{plain}");
        let m5 = preset("an-m5").unwrap();
        let json = serde_json::to_string(&m5).unwrap();
        assert!(json.contains(r#""output":{"bias":false,"batch_norm":true}"#), "{json}");
        assert_eq!(serde_json::from_str::<ModelSpec>(&json).unwrap(), m5);
    }

    #[test]
    fn a_relu_after_a_relu_is_idle() {
        let relu = Layer::Activation(Activation::Relu);
        let bare = Layer::Conv(Conv { relu: false, ..Conv::default() });
        let spec = ModelSpec::new(vec![
            Layer::conv(8),
            relu.clone(),
            relu.clone(),
            bare,
            Layer::BatchNorm,
            relu.clone(),
            Layer::dense(8),
            relu,
        ]);
        assert_eq!(spec.idle_relus(), vec![1, 2, 7]);
    }

    #[test]
    fn spec_serializes_round_trip() {
        let spec = preset("strong").unwrap();
        let json = serde_json::to_string(&spec).unwrap();
        let back: ModelSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
    }
}
