//! Network architectures as data: a list of layers, its shapes and parameter counts.
//!
//! ReLU follows every convolution and every hidden dense layer (Keras `activation='relu'`).
//! A flatten is implied before the first dense layer, and the output layer (`Dense(classes)`,
//! logits) is appended when the network is built: a spec describes the hidden layers only.

use serde::{Deserialize, Serialize};

use super::error::{ModelError, Result};

/// One hidden layer of a model spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Layer {
    /// 2-D convolution followed by ReLU.
    Conv {
        /// Number of output channels.
        filters: usize,
        /// Kernel side: 3 or 5.
        kernel: usize,
        /// Keras `padding='same'` when true, `'valid'` when false.
        same_padding: bool,
    },
    /// 2×2 max pooling, stride 2.
    MaxPool,
    /// 2×2 average pooling, stride 2.
    AvgPool,
    /// Batch normalization over channels (or features after flattening).
    BatchNorm,
    /// Dropout with this rate, active in training only.
    Dropout(f32),
    /// Fully connected layer with this many units, followed by ReLU.
    Dense(usize),
    /// Mean over the spatial dimensions: `C×H×W` becomes `C` features.
    GlobalAvgPool,
}

impl Layer {
    /// A convolution with a 3×3 kernel and no padding (Keras' default `'valid'`).
    pub fn conv(filters: usize) -> Layer {
        Layer::Conv { filters, kernel: 3, same_padding: false }
    }

    /// A short label such as `conv32`, `conv6(5×5,same)`, `maxpool`, `dropout0.25`, `dense128`.
    pub fn label(&self) -> String {
        match self {
            Layer::Conv { filters, kernel, same_padding } => {
                let mut extra = Vec::new();
                if *kernel != 3 {
                    extra.push(format!("{kernel}×{kernel}"));
                }
                if *same_padding {
                    extra.push("same".to_string());
                }
                if extra.is_empty() {
                    format!("conv{filters}")
                } else {
                    format!("conv{filters}({})", extra.join(","))
                }
            }
            Layer::MaxPool => "maxpool".into(),
            Layer::AvgPool => "avgpool".into(),
            Layer::BatchNorm => "batchnorm".into(),
            Layer::Dropout(rate) => format!("dropout{rate}"),
            Layer::Dense(units) => format!("dense{units}"),
            Layer::GlobalAvgPool => "globalavgpool".into(),
        }
    }
}

/// The hidden layers of a network, in order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Hidden layers; the output layer is implied.
    pub layers: Vec<Layer>,
}

/// The shape of the data flowing between layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Channels × height × width.
    Image(usize, usize, usize),
    /// A flat feature vector.
    Flat(usize),
}

impl Shape {
    /// Keras-style text, channels last: `(None, 26, 26, 32)` or `(None, 128)`.
    pub fn keras(&self) -> String {
        match self {
            Shape::Image(c, h, w) => format!("(None, {h}, {w}, {c})"),
            Shape::Flat(n) => format!("(None, {n})"),
        }
    }

    /// Number of values per example.
    pub fn size(&self) -> usize {
        match self {
            Shape::Image(c, h, w) => c.saturating_mul(*h).saturating_mul(*w),
            Shape::Flat(n) => *n,
        }
    }

    /// What batch normalization normalizes over: the channels of an image, the values of a vector.
    pub fn features(&self) -> usize {
        match *self {
            Shape::Image(c, _, _) => c,
            Shape::Flat(n) => n,
        }
    }
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
}

impl LayerInfo {
    /// The implied flatten of an image of `shape`.
    fn flatten(shape: Shape) -> LayerInfo {
        let output = Shape::Flat(shape.size());
        LayerInfo {
            name: "flatten".into(),
            kind: "Flatten",
            source: LayerSource::Flatten,
            input: shape,
            output,
            params: 0,
        }
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
pub const PRESETS: [&str; 4] = ["seed-small", "seed-cnn", "lenet5", "strong"];

/// A built-in architecture by name.
///
/// - `seed-small`: conv32 maxpool dense128 (a small first CNN).
/// - `seed-cnn`: conv32 maxpool conv64 maxpool conv64 dense64 (the classic Keras MNIST CNN).
/// - `lenet5`: conv6(5×5,same) avgpool conv16(5×5) avgpool dense120 dense84.
/// - `strong`: two double-conv blocks with dropout, then dense256 with dropout: 99.55% on the
///   official MNIST test set with augmentation and one-cycle Adam (`examples/strong.lab`).
pub fn preset(name: &str) -> Option<ModelSpec> {
    use Layer::*;
    let layers = match name {
        "seed-small" => vec![Layer::conv(32), MaxPool, Dense(128)],
        "seed-cnn" => vec![Layer::conv(32), MaxPool, Layer::conv(64), MaxPool, Layer::conv(64), Dense(64)],
        "lenet5" => vec![
            Conv { filters: 6, kernel: 5, same_padding: true },
            AvgPool,
            Conv { filters: 16, kernel: 5, same_padding: false },
            AvgPool,
            Dense(120),
            Dense(84),
        ],
        "strong" => vec![
            Layer::conv(32),
            Layer::conv(32),
            MaxPool,
            Dropout(0.25),
            Layer::conv(64),
            Layer::conv(64),
            MaxPool,
            Dropout(0.25),
            Dense(256),
            Dropout(0.5),
        ],
        _ => return None,
    };
    Some(ModelSpec { layers })
}

impl ModelSpec {
    /// A spec with these hidden layers.
    pub fn new(layers: Vec<Layer>) -> ModelSpec {
        ModelSpec { layers }
    }

    /// The spec's layers as labels separated by spaces, e.g. `conv32 maxpool dense128`.
    pub fn describe(&self) -> String {
        self.layers.iter().map(Layer::label).collect::<Vec<_>>().join(" ")
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
        for (i, layer) in self.layers.iter().enumerate() {
            if let (Layer::Dense(_), Shape::Image(..)) = (layer, shape) {
                out.push(LayerInfo::flatten(shape));
                shape = Shape::Flat(shape.size());
            }
            let (kind, output, params) = infer(layer, shape).map_err(|message| ModelError::Layer {
                layer: i + 1,
                label: layer.label(),
                message,
            })?;
            out.push(LayerInfo {
                name: layer.label(),
                kind,
                source: LayerSource::Spec(i),
                input: shape,
                output,
                params,
            });
            shape = output;
        }
        if let Shape::Image(..) = shape {
            out.push(LayerInfo::flatten(shape));
            shape = Shape::Flat(shape.size());
        }
        out.push(LayerInfo {
            name: "output".into(),
            kind: "Dense",
            source: LayerSource::Output,
            input: shape,
            output: Shape::Flat(classes),
            params: shape.size().saturating_mul(classes).saturating_add(classes),
        });
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
            // Output, its gradient and the temporaries around them (ReLU masks, pooling indices).
            per_image = per_image.saturating_add(out.saturating_mul(4));
            let layer = match info.source {
                LayerSource::Spec(i) => Some(&self.layers[i]),
                LayerSource::Flatten | LayerSource::Output => None,
            };
            if let (Some(Layer::Conv { kernel, .. }), Shape::Image(..), Shape::Image(_, h, w)) =
                (layer, info.input, info.output)
            {
                let channels_in = info.input.features() as u64;
                let im2col = crate::budget::product(&[(kernel * kernel) as u64, channels_in, (h * w) as u64]);
                per_image = per_image.saturating_add(im2col);
            }
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
            if info.kind == "BatchNormalization" {
                frozen += info.params / 2;
            }
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

/// The Keras class, output shape and parameter count of `layer` applied to `shape` (flattened
/// already before a dense layer), or why it cannot apply.
fn infer(layer: &Layer, shape: Shape) -> std::result::Result<(&'static str, Shape, usize), String> {
    match *layer {
        Layer::Conv { filters, kernel, same_padding } => conv_shape(filters, kernel, same_padding, shape),
        Layer::MaxPool | Layer::AvgPool => {
            let Shape::Image(c, h, w) = shape else {
                return Err("pooling cannot follow a dense or global pooling layer".into());
            };
            if h < 2 || w < 2 {
                return Err(format!("input {h}×{w} is smaller than the 2×2 pooling window"));
            }
            let kind = if *layer == Layer::MaxPool { "MaxPooling2D" } else { "AveragePooling2D" };
            Ok((kind, Shape::Image(c, h / 2, w / 2), 0))
        }
        Layer::GlobalAvgPool => {
            let Shape::Image(c, _, _) = shape else {
                return Err("global pooling needs an image input, not a flat vector".into());
            };
            Ok(("GlobalAveragePooling2D", Shape::Flat(c), 0))
        }
        Layer::BatchNorm => Ok(("BatchNormalization", shape, shape.features().saturating_mul(4))),
        Layer::Dropout(rate) => {
            if !(0.0..1.0).contains(&rate) {
                return Err(format!("dropout rate {rate} is outside [0, 1)"));
            }
            Ok(("Dropout", shape, 0))
        }
        Layer::Dense(units) => {
            if units == 0 {
                return Err("a dense layer needs at least one unit".into());
            }
            Ok(("Dense", Shape::Flat(units), shape.size().saturating_mul(units).saturating_add(units)))
        }
    }
}

/// [`infer`] for a convolution.
fn conv_shape(
    filters: usize,
    kernel: usize,
    same_padding: bool,
    shape: Shape,
) -> std::result::Result<(&'static str, Shape, usize), String> {
    let Shape::Image(c, h, w) = shape else {
        return Err("a convolution cannot follow a dense or global pooling layer".into());
    };
    if kernel != 3 && kernel != 5 {
        return Err(format!("kernel size {kernel} is not supported (3 or 5)"));
    }
    if filters == 0 {
        return Err("a convolution needs at least one filter".into());
    }
    let (oh, ow) = if same_padding {
        (h, w)
    } else {
        if h < kernel || w < kernel {
            return Err(format!("input {h}×{w} is smaller than the {kernel}×{kernel} kernel"));
        }
        (h - kernel + 1, w - kernel + 1)
    };
    let params = (kernel * kernel).saturating_mul(c).saturating_mul(filters).saturating_add(filters);
    Ok(("Conv2D", Shape::Image(filters, oh, ow), params))
}

/// Keras' automatic layer name for a layer class, e.g. `Conv2D` → `conv2d`.
fn keras_snake(kind: &str) -> &'static str {
    match kind {
        "Conv2D" => "conv2d",
        "MaxPooling2D" => "max_pooling2d",
        "AveragePooling2D" => "average_pooling2d",
        "GlobalAveragePooling2D" => "global_average_pooling2d",
        "BatchNormalization" => "batch_normalization",
        "Dropout" => "dropout",
        "Flatten" => "flatten",
        _ => "dense",
    }
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
            Dense(256),
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
        let spec = ModelSpec::new(vec![Layer::Dense(10), Layer::conv(8)]);
        let e = spec.output_shapes((1, 28, 28), 10).unwrap_err().to_string();
        assert!(e.starts_with("layer 2 (conv8): a convolution cannot follow"), "{e}");
        let e = ModelSpec::new(vec![Layer::Dropout(1.5)]).output_shapes((1, 28, 28), 10).unwrap_err().to_string();
        assert!(e.contains("layer 1 (dropout1.5)"), "{e}");
        let e = ModelSpec::new(vec![]).output_shapes((1, 28, 28), 1).unwrap_err();
        assert!(matches!(e, ModelError::Spec(_)), "{e:?}");
        assert_eq!(e.to_string(), "a classifier needs at least 2 classes, got 1");
    }

    #[test]
    fn training_bytes_grow_with_width_and_batch() {
        let small = ModelSpec::new(vec![Layer::Dense(128)]).training_bytes((1, 28, 28), 10, 32).unwrap();
        // 101,770 parameters × 4 bytes × 5, plus activations.
        assert!(small > 101_770 * 20 && small < 101_770 * 20 + 32 * 4 * 10_000, "{small}");
        let huge = ModelSpec::new(vec![Layer::Dense(1_000_000), Layer::Dense(1_000_000)])
            .training_bytes((1, 28, 28), 10, 32)
            .unwrap();
        assert!(huge > 1_000_000_000_000 * 20, "{huge}");
        let conv = ModelSpec::new(vec![Layer::conv(32)]);
        assert!(conv.training_bytes((1, 28, 28), 10, 128).unwrap() > conv.training_bytes((1, 28, 28), 10, 32).unwrap());
    }

    #[test]
    fn spec_serializes_round_trip() {
        let spec = preset("strong").unwrap();
        let json = serde_json::to_string(&spec).unwrap();
        let back: ModelSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
    }
}
