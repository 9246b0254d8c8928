//! ONNX export: a network as an ONNX model (opset [`OPSET`]) for deployment with onnxruntime
//! and other runtimes.
//!
//! The graph takes `image`, float32 `N×C×H×W` already scaled as in training (`value = byte ·
//! pixel_scale + pixel_offset`, both in the metadata), and gives `logits` and `probabilities`
//! (their softmax). Each layer becomes the operators that compute what [`Network::forward`]
//! computes in inference mode: a convolution `Conv` (pads `k/2` for `same`) then `Relu`,
//! pooling `MaxPool`/`AveragePool` (2×2, stride 2, the odd row and column dropped), batch norm
//! `BatchNormalization` with its moving statistics and the network's epsilon, the implied
//! flatten `Flatten` (channel-major, as the network flattens `N×C×H×W`), global average
//! pooling `GlobalAveragePool` then `Flatten`, dense layers `Gemm` (`transB`) then `Relu` but
//! for the output layer. Dropout is left out (it is the identity in inference); LoRA adapters
//! are merged into their layer's weights (`W + (alpha/rank)·B·A`, as `merge` does).
//!
//! The protobuf messages are declared in [`proto`] with prost's derive, only the fields used,
//! with the tags of `onnx.proto`.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::data::PixelScaling;
use crate::model::architecture::network::Network;
use crate::model::architecture::spec::LayerSource;
use crate::model::error::{ModelError, Result};

/// The ONNX operator set the graph uses.
pub const OPSET: i64 = 13;
/// The ONNX IR version written (7: the one of opset 13's release).
pub const IR_VERSION: i64 = 7;
/// The graph's input name.
pub const INPUT: &str = "image";
/// The graph's output of raw scores.
pub const LOGITS: &str = "logits";
/// The graph's output of softmax probabilities.
pub const PROBABILITIES: &str = "probabilities";

/// The ONNX protobuf messages, as in `onnx.proto` (proto2), with only the fields the export
/// writes. Repeated scalars that `onnx.proto` does not mark packed are written unpacked.
pub mod proto {
    /// `onnx.ModelProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelProto {
        /// The IR version.
        #[prost(int64, optional, tag = "1")]
        pub ir_version: Option<i64>,
        /// The operator sets imported.
        #[prost(message, repeated, tag = "8")]
        pub opset_import: Vec<OperatorSetIdProto>,
        /// The tool that wrote the model.
        #[prost(string, optional, tag = "2")]
        pub producer_name: Option<String>,
        /// Its version.
        #[prost(string, optional, tag = "3")]
        pub producer_version: Option<String>,
        /// A description.
        #[prost(string, optional, tag = "6")]
        pub doc_string: Option<String>,
        /// The graph.
        #[prost(message, optional, tag = "7")]
        pub graph: Option<GraphProto>,
        /// Named metadata values.
        #[prost(message, repeated, tag = "14")]
        pub metadata_props: Vec<StringStringEntryProto>,
    }

    /// `onnx.OperatorSetIdProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OperatorSetIdProto {
        /// The domain; empty for the standard operators.
        #[prost(string, optional, tag = "1")]
        pub domain: Option<String>,
        /// The operator set version.
        #[prost(int64, optional, tag = "2")]
        pub version: Option<i64>,
    }

    /// `onnx.StringStringEntryProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StringStringEntryProto {
        /// The key.
        #[prost(string, optional, tag = "1")]
        pub key: Option<String>,
        /// The value.
        #[prost(string, optional, tag = "2")]
        pub value: Option<String>,
    }

    /// `onnx.GraphProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GraphProto {
        /// The nodes, in topological order.
        #[prost(message, repeated, tag = "1")]
        pub node: Vec<NodeProto>,
        /// The graph's name.
        #[prost(string, optional, tag = "2")]
        pub name: Option<String>,
        /// The constant tensors (weights).
        #[prost(message, repeated, tag = "5")]
        pub initializer: Vec<TensorProto>,
        /// A description.
        #[prost(string, optional, tag = "10")]
        pub doc_string: Option<String>,
        /// The graph's inputs.
        #[prost(message, repeated, tag = "11")]
        pub input: Vec<ValueInfoProto>,
        /// The graph's outputs.
        #[prost(message, repeated, tag = "12")]
        pub output: Vec<ValueInfoProto>,
    }

    /// `onnx.NodeProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeProto {
        /// Input value names.
        #[prost(string, repeated, tag = "1")]
        pub input: Vec<String>,
        /// Output value names.
        #[prost(string, repeated, tag = "2")]
        pub output: Vec<String>,
        /// The node's name.
        #[prost(string, optional, tag = "3")]
        pub name: Option<String>,
        /// The operator, e.g. `Conv`.
        #[prost(string, optional, tag = "4")]
        pub op_type: Option<String>,
        /// The operator's attributes.
        #[prost(message, repeated, tag = "5")]
        pub attribute: Vec<AttributeProto>,
    }

    /// `onnx.AttributeProto` (float, int and ints attributes).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AttributeProto {
        /// The attribute's name.
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        /// `AttributeType`: 1 float, 2 int, 7 ints.
        #[prost(int32, optional, tag = "20")]
        pub r#type: Option<i32>,
        /// A float value.
        #[prost(float, optional, tag = "2")]
        pub f: Option<f32>,
        /// An integer value.
        #[prost(int64, optional, tag = "3")]
        pub i: Option<i64>,
        /// A list of integers.
        #[prost(int64, repeated, packed = "false", tag = "8")]
        pub ints: Vec<i64>,
    }

    /// `onnx.TensorProto` (float tensors).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        /// The shape.
        #[prost(int64, repeated, packed = "false", tag = "1")]
        pub dims: Vec<i64>,
        /// `DataType`: 1 is FLOAT.
        #[prost(int32, optional, tag = "2")]
        pub data_type: Option<i32>,
        /// The values, row-major.
        #[prost(float, repeated, tag = "4")]
        pub float_data: Vec<f32>,
        /// The tensor's name.
        #[prost(string, optional, tag = "8")]
        pub name: Option<String>,
    }

    /// `onnx.ValueInfoProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueInfoProto {
        /// The value's name.
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        /// Its type.
        #[prost(message, optional, tag = "2")]
        pub r#type: Option<TypeProto>,
        /// A description.
        #[prost(string, optional, tag = "3")]
        pub doc_string: Option<String>,
    }

    /// `onnx.TypeProto` (the `tensor_type` case of its oneof).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeProto {
        /// A tensor type.
        #[prost(message, optional, tag = "1")]
        pub tensor_type: Option<TensorTypeProto>,
    }

    /// `onnx.TypeProto.Tensor`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorTypeProto {
        /// The element type (`DataType`).
        #[prost(int32, optional, tag = "1")]
        pub elem_type: Option<i32>,
        /// The shape.
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    /// `onnx.TensorShapeProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorShapeProto {
        /// The dimensions.
        #[prost(message, repeated, tag = "1")]
        pub dim: Vec<Dimension>,
    }

    /// `onnx.TensorShapeProto.Dimension`: a size or a symbolic name (its oneof's two cases).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        /// A fixed size.
        #[prost(int64, optional, tag = "1")]
        pub dim_value: Option<i64>,
        /// A symbolic size, e.g. `N`.
        #[prost(string, optional, tag = "2")]
        pub dim_param: Option<String>,
    }
}

use proto::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto};

/// `TensorProto.DataType.FLOAT`.
const FLOAT: i32 = 1;

/// What an export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxSummary {
    /// The graph's operators, in order (`Conv`, `Relu`, ...).
    pub ops: Vec<String>,
    /// Values stored in the initializers (weights, biases, moving statistics).
    pub values: usize,
    /// Size of the file in bytes.
    pub bytes: usize,
}

/// The ONNX model of `net`: its graph in inference mode, `classes` (one name per output) and
/// the pixel `scaling` it was trained with in the metadata.
pub fn onnx_model(net: &Network, classes: &[String], scaling: PixelScaling) -> Result<ModelProto> {
    onnx_ensemble(&[net], classes, scaling)
}

/// The ONNX model of an ensemble: each member's graph on the one input, its weights named
/// `m<k>.*` (k from 1), `probabilities` the mean of the members' softmaxes and `logits` their
/// log (so that their softmax is the probabilities again). One network gives [`onnx_model`]'s
/// graph, its weights named as in the network.
pub fn onnx_ensemble(nets: &[&Network], classes: &[String], scaling: PixelScaling) -> Result<ModelProto> {
    crate::model::training::ensemble::check_members(nets)?;
    let first = nets[0];
    if classes.len() != first.classes() {
        return Err(ModelError::Data(format!(
            "{} class names for a model with {} outputs",
            classes.len(),
            first.classes()
        )));
    }
    let mut graph = Graph::default();
    let mut softmaxes = Vec::with_capacity(nets.len());
    for (k, net) in nets.iter().enumerate() {
        let member = if nets.len() == 1 { String::new() } else { format!("m{}.", k + 1) };
        graph.enter(net, member)?;
        let infos = net.spec().output_shapes(net.input(), net.classes())?;
        let mut x = INPUT.to_string();
        for info in &infos {
            let prefix = match info.source {
                LayerSource::Spec(i) => format!("l{i}"),
                LayerSource::Flatten => String::new(),
                LayerSource::Output => "out".to_string(),
            };
            x = info.node.kind().onnx(&mut graph, &prefix, x)?;
        }
        if nets.len() == 1 {
            x = graph.rename_last(LOGITS);
        }
        softmaxes.push(graph.node("Softmax", vec![x], vec![int("axis", 1)]));
    }
    if nets.len() == 1 {
        graph.rename_last(PROBABILITIES);
    } else {
        graph.node("Mean", softmaxes, vec![]);
        let probabilities = graph.rename_last(PROBABILITIES);
        graph.node("Log", vec![probabilities], vec![]);
        graph.rename_last(LOGITS);
    }
    let (c, h, w) = first.input();
    let k = classes.len() as i64;
    let description = describe(nets);
    let logits_doc = match nets.len() {
        1 => "raw class scores, one per name in `classes`",
        _ => "log of the mean probabilities, one per name in `classes`",
    };
    let graph = GraphProto {
        node: graph.nodes,
        name: Some("mnistlab".into()),
        initializer: graph.initializers,
        doc_string: Some(description.clone()),
        input: vec![value_info(
            INPUT,
            &[c as i64, h as i64, w as i64],
            "images scaled as in training: see pixel_scale and pixel_offset in the metadata",
        )],
        output: vec![
            value_info(LOGITS, &[k], logits_doc),
            value_info(
                PROBABILITIES,
                &[k],
                if nets.len() == 1 { "softmax of the logits" } else { "mean of the members' softmaxes" },
            ),
        ],
    };
    Ok(ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![proto::OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) }],
        producer_name: Some("mnistlab".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(format!("mnistlab model {description}")),
        graph: Some(graph),
        metadata_props: metadata(nets, classes, scaling),
    })
}

/// The layers of `nets`: one network's `describe`, or `ensemble of N: A | B | ...`.
fn describe(nets: &[&Network]) -> String {
    let layers: Vec<String> = nets.iter().map(|n| n.spec().describe()).collect();
    match nets.len() {
        1 => layers.join(""),
        n => format!("ensemble of {n}: {}", layers.join(" | ")),
    }
}

/// [`onnx_model`] encoded as protobuf bytes.
pub fn onnx_bytes(net: &Network, classes: &[String], scaling: PixelScaling) -> Result<Vec<u8>> {
    Ok(prost::Message::encode_to_vec(&onnx_model(net, classes, scaling)?))
}

/// Writes [`onnx_ensemble`] of `nets` (one network: [`onnx_model`]) to `path` atomically (a
/// temporary file beside it, then a rename).
pub fn export_onnx(path: &Path, nets: &[&Network], classes: &[String], scaling: PixelScaling) -> Result<OnnxSummary> {
    let model = onnx_ensemble(nets, classes, scaling)?;
    let bytes = prost::Message::encode_to_vec(&model);
    crate::write::write_file(path, &bytes, crate::write::Place::OutsideCache)?;
    let graph = model.graph.as_ref().expect("onnx_model always sets the graph");
    Ok(OnnxSummary {
        ops: graph.node.iter().map(|n| n.op_type.clone().unwrap_or_default()).collect(),
        values: graph.initializer.iter().map(|t| t.float_data.len()).sum(),
        bytes: bytes.len(),
    })
}

/// The metadata: class names, pixel scaling (as `scale`/`offset` and as mnistlab's JSON),
/// the layers (each member's, for an ensemble) and the input's description.
fn metadata(nets: &[&Network], classes: &[String], scaling: PixelScaling) -> Vec<proto::StringStringEntryProto> {
    let (scale, offset) = scaling.affine();
    let (c, h, w) = nets[0].input();
    let json = |v: serde_json::Result<String>| v.expect("plain data always serializes");
    let outputs = match nets.len() {
        1 => format!("{LOGITS}: N×{} raw scores; {PROBABILITIES}: their softmax", classes.len()),
        n => format!("{PROBABILITIES}: N×{} mean of the softmaxes of {n} models; {LOGITS}: its log", classes.len()),
    };
    let mut entries = vec![
        ("classes", json(serde_json::to_string(classes))),
        ("pixel_scale", scale.to_string()),
        ("pixel_offset", offset.to_string()),
        ("pixel_scaling", json(serde_json::to_string(&scaling))),
        ("pixel_scaling_text", scaling.describe()),
        (
            "input",
            format!("{INPUT}: float32 N×{c}×{h}×{w}, each value = pixel byte (0-255) × pixel_scale + pixel_offset"),
        ),
        ("outputs", outputs),
        ("layers", describe(nets)),
    ];
    if let [net] = nets {
        entries.push(("spec", json(serde_json::to_string(net.spec()))));
    } else {
        let specs: Vec<_> = nets.iter().map(|n| n.spec()).collect();
        entries.push(("members", json(serde_json::to_string(&specs))));
    }
    entries
        .into_iter()
        .map(|(k, v)| proto::StringStringEntryProto { key: Some(k.to_string()), value: Some(v) })
        .collect()
}

/// An input or output of the graph: float32 `N × dims`, `N` symbolic.
fn value_info(name: &str, dims: &[i64], doc: &str) -> ValueInfoProto {
    let mut dim = vec![proto::Dimension { dim_value: None, dim_param: Some("N".into()) }];
    dim.extend(dims.iter().map(|&d| proto::Dimension { dim_value: Some(d), dim_param: None }));
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(proto::TypeProto {
            tensor_type: Some(proto::TensorTypeProto {
                elem_type: Some(FLOAT),
                shape: Some(proto::TensorShapeProto { dim }),
            }),
        }),
        doc_string: Some(doc.to_string()),
    }
}

/// An integer attribute.
pub fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(2), i: Some(value), ..Default::default() }
}

/// A list-of-integers attribute.
pub fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(7), ints: values.to_vec(), ..Default::default() }
}

/// A float attribute.
pub fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(1), f: Some(value), ..Default::default() }
}

/// The graph being built: nodes, initializers, and the tensors by name of the network whose
/// nodes are being added.
#[derive(Default)]
pub struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    weights: HashMap<String, Tensor>,
    /// The LoRA scale (alpha / rank) while the network has adapters.
    lora_scale: Option<f64>,
    /// What the network's initializer names start with (`m2.` for an ensemble's second member).
    member: String,
}

impl Graph {
    /// Adds the nodes of `net` from now on: over a copy of its tensors, their initializers
    /// named `member` then the tensor's name.
    fn enter(&mut self, net: &Network, member: String) -> Result<()> {
        self.weights = net.snapshot()?.into_iter().collect();
        self.lora_scale = net.lora().map(|c| c.scale());
        self.member = member;
        Ok(())
    }

    /// Adds a node of `op` on `inputs`; returns its output's name.
    pub fn node(&mut self, op: &str, inputs: Vec<String>, attribute: Vec<AttributeProto>) -> String {
        let name = format!("{}_{}", op.to_ascii_lowercase(), self.nodes.len());
        self.nodes.push(NodeProto {
            input: inputs,
            output: vec![name.clone()],
            name: Some(name.clone()),
            op_type: Some(op.to_string()),
            attribute,
        });
        name
    }

    /// Renames the last node's output (for the graph's outputs); returns the new name.
    fn rename_last(&mut self, output: &str) -> String {
        let last = self.nodes.last_mut().expect("a node was added");
        last.output = vec![output.to_string()];
        output.to_string()
    }

    /// The network's tensor `name`.
    fn tensor(&self, name: &str) -> Result<Tensor> {
        let t = self.weights.get(name).ok_or_else(|| ModelError::Weights(format!("tensor `{name}` is missing")))?;
        Ok(t.to_device(&Device::Cpu)?)
    }

    /// Stores `tensor` as the initializer `name` (after the member's prefix); returns its name.
    fn initializer(&mut self, name: &str, tensor: &Tensor) -> Result<String> {
        let float_data = tensor.flatten_all()?.to_vec1::<f32>()?;
        let name = format!("{}{name}", self.member);
        self.initializers.push(TensorProto {
            dims: tensor.dims().iter().map(|&d| d as i64).collect(),
            data_type: Some(FLOAT),
            float_data,
            name: Some(name.clone()),
        });
        Ok(name)
    }

    /// Stores the network's tensor `name` as an initializer of the same name.
    pub fn stored(&mut self, name: &str) -> Result<String> {
        let t = self.tensor(name)?;
        self.initializer(name, &t)
    }

    /// A `Gemm` with the dense layer `prefix`'s weights (its LoRA adapter merged in) and bias,
    /// if it has one, on `x`.
    pub fn dense(&mut self, prefix: &str, x: String) -> Result<String> {
        let mut weight = self.tensor(&format!("{prefix}.weight"))?;
        if let (Some(scale), Some(a)) = (self.lora_scale, self.weights.get(&format!("{prefix}.lora_a"))) {
            let a = a.to_device(&Device::Cpu)?;
            let b = self.tensor(&format!("{prefix}.lora_b"))?;
            weight = (weight + (b.matmul(&a)? * scale)?)?;
        }
        let mut inputs = vec![x, self.initializer(&format!("{prefix}.weight"), &weight)?];
        if self.weights.contains_key(&format!("{prefix}.bias")) {
            inputs.push(self.stored(&format!("{prefix}.bias"))?);
        }
        Ok(self.node("Gemm", inputs, vec![int("transB", 1)]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::architecture::lora::LoraConfig;
    use crate::model::architecture::spec::{preset, Layer, ModelSpec};
    use prost::Message;

    fn digits() -> Vec<String> {
        (0..10).map(|d| d.to_string()).collect()
    }

    fn ops(model: &ModelProto) -> Vec<String> {
        model.graph.as_ref().unwrap().node.iter().map(|n| n.op_type.clone().unwrap()).collect()
    }

    #[test]
    fn seed_cnn_decodes_to_the_expected_graph() {
        let net = Network::new(&preset("seed-cnn").unwrap(), (1, 28, 28), 10, &Device::Cpu, 1).unwrap();
        let bytes = onnx_bytes(&net, &digits(), PixelScaling::Unit).unwrap();
        let model = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!(model.ir_version, Some(IR_VERSION));
        assert_eq!(model.opset_import[0].version, Some(OPSET));
        let want = [
            "Conv", "Relu", "MaxPool", "Conv", "Relu", "MaxPool", "Conv", "Relu", "Flatten", "Gemm", "Relu", "Gemm",
            "Softmax",
        ];
        assert_eq!(ops(&model), want);
        let graph = model.graph.as_ref().unwrap();
        assert_eq!(graph.input[0].name.as_deref(), Some(INPUT));
        let outputs: Vec<_> = graph.output.iter().map(|o| o.name.clone().unwrap()).collect();
        assert_eq!(outputs, [LOGITS, PROBABILITIES]);
        assert_eq!(graph.node[11].output, [LOGITS]);
        assert_eq!(graph.node[12].input, [LOGITS]);
        // Every stored value is in the initializers, with its shape.
        let values: usize = graph.initializer.iter().map(|t| t.float_data.len()).sum();
        assert_eq!(values, net.param_count());
        let conv = graph.initializer.iter().find(|t| t.name.as_deref() == Some("l0.weight")).unwrap();
        assert_eq!(conv.dims, [32, 1, 3, 3]);
        let snapshot: HashMap<String, Tensor> = net.snapshot().unwrap().into_iter().collect();
        assert_eq!(conv.float_data, snapshot["l0.weight"].flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let meta: HashMap<_, _> =
            model.metadata_props.iter().map(|e| (e.key.clone().unwrap(), e.value.clone().unwrap())).collect();
        assert_eq!(meta["classes"], r#"["0","1","2","3","4","5","6","7","8","9"]"#);
        assert_eq!(meta["pixel_scale"].parse::<f32>().unwrap(), 1.0 / 255.0);
        assert_eq!(meta["pixel_offset"], "0");
    }

    #[test]
    fn every_layer_kind_maps_to_its_operators() {
        use Layer::*;
        let spec = ModelSpec::new(vec![
            Conv(crate::model::architecture::layers::Conv {
                filters: 4,
                kernel: 3,
                same_padding: true,
                ..Default::default()
            }),
            BatchNorm,
            Conv(crate::model::architecture::layers::Conv {
                filters: 4,
                kernel: 5,
                same_padding: false,
                ..Default::default()
            }),
            AvgPool,
            Layer::dropout(0.25),
            GlobalAvgPool,
            Layer::dense(8),
            BatchNorm,
        ]);
        let net = Network::new(&spec, (1, 28, 28), 3, &Device::Cpu, 2).unwrap();
        let classes = vec!["a".to_string(), "b".into(), "c".into()];
        let scaling = PixelScaling::Standard { mean: 0.13, std: 0.31 };
        let model = onnx_model(&net, &classes, scaling).unwrap();
        let want = [
            "Conv",
            "Relu",
            "BatchNormalization",
            "Conv",
            "Relu",
            "AveragePool",
            "GlobalAveragePool",
            "Flatten",
            "Gemm",
            "Relu",
            "BatchNormalization",
            "Gemm",
            "Softmax",
        ];
        assert_eq!(ops(&model), want);
        let graph = model.graph.unwrap();
        let pads =
            |i: usize| graph.node[i].attribute.iter().find(|a| a.name.as_deref() == Some("pads")).unwrap().ints.clone();
        assert_eq!(pads(0), [1, 1, 1, 1]);
        assert_eq!(pads(3), [0, 0, 0, 0]);
        let eps = graph.node[2].attribute[0].f.unwrap();
        assert_eq!(eps, crate::model::architecture::layers::batch_norm::BN_EPS as f32);
        assert_eq!(graph.node[2].input[3], "l1.running_mean");
        let meta: HashMap<_, _> =
            model.metadata_props.iter().map(|e| (e.key.clone().unwrap(), e.value.clone().unwrap())).collect();
        let (scale, offset) = scaling.affine();
        assert_eq!(meta["pixel_scale"].parse::<f32>().unwrap(), scale);
        assert_eq!(meta["pixel_offset"].parse::<f32>().unwrap(), offset);
        assert_eq!(serde_json::from_str::<PixelScaling>(&meta["pixel_scaling"]).unwrap(), scaling);
        assert_eq!(meta["classes"], r#"["a","b","c"]"#);
    }

    #[test]
    fn lora_adapters_are_merged_into_the_weights() {
        let spec = ModelSpec::new(vec![Layer::dense(16)]);
        let mut net = Network::new(&spec, (1, 28, 28), 10, &Device::Cpu, 3).unwrap();
        net.add_lora(LoraConfig { rank: 2, alpha: 4.0 }, 5).unwrap();
        // Make B non-zero so the adapter changes the weights.
        let b = Tensor::ones((16, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        net.varmap().data().lock().unwrap()["l0.lora_b"].set(&b).unwrap();
        let exported = onnx_model(&net, &digits(), PixelScaling::Unit).unwrap().graph.unwrap();
        assert!(exported.initializer.iter().all(|t| !t.name.as_deref().unwrap().contains("lora")));
        let weight = |g: &GraphProto| {
            g.initializer.iter().find(|t| t.name.as_deref() == Some("l0.weight")).unwrap().float_data.clone()
        };
        net.merge_lora().unwrap();
        let merged = onnx_model(&net, &digits(), PixelScaling::Unit).unwrap().graph.unwrap();
        assert_eq!(weight(&exported), weight(&merged));
        let before: Vec<f32> = {
            let fresh = Network::new(&spec, (1, 28, 28), 10, &Device::Cpu, 3).unwrap();
            let g = onnx_model(&fresh, &digits(), PixelScaling::Unit).unwrap().graph.unwrap();
            weight(&g)
        };
        assert_ne!(weight(&exported), before);
    }

    #[test]
    fn class_names_must_match_the_outputs_and_the_file_is_written_whole() {
        let net = Network::new(&preset("seed-small").unwrap(), (1, 28, 28), 10, &Device::Cpu, 1).unwrap();
        let e = onnx_model(&net, &digits()[..9], PixelScaling::Unit).unwrap_err();
        assert_eq!(e.to_string(), "9 class names for a model with 10 outputs");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/m.onnx");
        let summary = export_onnx(&path, &[&net], &digits(), PixelScaling::Unit).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), summary.bytes);
        assert_eq!(summary.values, net.param_count());
        assert_eq!(summary.ops, ["Conv", "Relu", "MaxPool", "Flatten", "Gemm", "Relu", "Gemm", "Softmax"]);
        assert_eq!(
            ModelProto::decode(bytes.as_slice()).unwrap(),
            onnx_model(&net, &digits(), PixelScaling::Unit).unwrap()
        );
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "no temporary file left");
    }
}
