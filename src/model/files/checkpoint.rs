//! Model files: the weights as safetensors, with the spec, input shape, class names and pixel
//! scaling in the safetensors metadata (JSON strings), so a file alone rebuilds the model.
//! A fine-tuned model also records its frozen layers (`frozen`, 0-based layer indices) and, while
//! it has LoRA adapters, their settings and layers (`lora`); the adapters are stored as the
//! extra tensors `l<i>.lora_a` and `l<i>.lora_b`. Files without these keys load as before.
//! A checkpoint (see [`crate::model::files::resume`]) is a model file with `train.` tensors and a `train`
//! entry besides, which loading a model ignores.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};

use crate::data::PixelScaling;
use crate::model::architecture::lora::LoraConfig;
use crate::model::architecture::network::Network;
use crate::model::architecture::spec::ModelSpec;
use crate::model::error::{ModelError, Result};

/// The value of the `format` metadata key of the files this version writes.
pub const FORMAT: &str = "mnistlab-model/1";

/// The prefix of the tensors a training checkpoint (`model::files::resume`) adds to a model file;
/// loading a model leaves them out.
pub const TRAIN_PREFIX: &str = "train.";

/// What a model file says besides its weights.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelMeta {
    /// The architecture.
    pub spec: ModelSpec,
    /// Input shape: (channels, height, width).
    pub input: (usize, usize, usize),
    /// Class names; their count is the number of outputs.
    pub classes: Vec<String>,
    /// How pixel bytes were scaled in training (apply the same to new images).
    pub scaling: PixelScaling,
    /// Free-form entries given to [`save_model`] (e.g. dataset name, epochs, test accuracy).
    pub extra: BTreeMap<String, String>,
    /// The layers marked frozen (0-based, in summary order).
    pub frozen: Vec<usize>,
    /// The LoRA adapters, when the model was saved with them.
    pub lora: Option<LoraMeta>,
}

/// The LoRA adapters of a saved model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraMeta {
    /// Rank and alpha.
    pub config: LoraConfig,
    /// The adapted layers (0-based, in summary order).
    pub layers: Vec<usize>,
}

const EXTRA_PREFIX: &str = "extra.";

/// Writes `net` to `path` with its metadata, atomically (a temporary file in the same
/// directory, then a rename): a failed save never leaves a half-written model behind.
pub fn save_model(
    path: &Path,
    net: &Network,
    classes: &[String],
    scaling: PixelScaling,
    extra: &BTreeMap<String, String>,
) -> Result<()> {
    let bytes = model_bytes(net, classes, scaling, extra)?;
    crate::write::write_file(path, &bytes, crate::write::Place::OutsideCache)?;
    Ok(())
}

/// The bytes [`save_model`] writes for `net`.
pub fn model_bytes(
    net: &Network,
    classes: &[String],
    scaling: PixelScaling,
    extra: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let meta = model_metadata(net, classes, scaling, extra)?;
    let weights = net.snapshot()?;
    encode(&weights, meta).map_err(|e| ModelError::Weights(format!("cannot encode the weights: {e}")))
}

/// `tensors` and `meta` as safetensors bytes, the same bytes for the same model: safetensors
/// writes its metadata in `HashMap` order (one model saved twice gave two files), so the header
/// is written again with its keys sorted; the tensor data, addressed from the header's end, stay
/// as they are.
pub(crate) fn encode(
    tensors: &[(String, Tensor)],
    meta: HashMap<String, String>,
) -> std::result::Result<Vec<u8>, String> {
    let bytes =
        safetensors::serialize(tensors.iter().map(|(k, t)| (k.as_str(), t)), Some(meta)).map_err(|e| e.to_string())?;
    let len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header = &bytes[8..8 + len];
    let bad = |e: serde_json::Error| format!("safetensors wrote a header it cannot have: {e}");
    let mut top: BTreeMap<String, serde_json::Value> = serde_json::from_slice(header).map_err(bad)?;
    if let Some(meta) = top.get_mut("__metadata__") {
        let sorted: BTreeMap<String, String> = serde_json::from_value(meta.take()).map_err(bad)?;
        *meta = serde_json::to_value(sorted).map_err(bad)?;
    }
    let mut text = serde_json::to_string(&top).map_err(bad)?;
    // safetensors keeps the data 8-byte aligned: the header is padded with spaces.
    while text.len() % 8 != 0 {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - len);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + len..]);
    Ok(out)
}

/// The metadata entries of a model file for `net` (see [`save_model`]).
pub(crate) fn model_metadata(
    net: &Network,
    classes: &[String],
    scaling: PixelScaling,
    extra: &BTreeMap<String, String>,
) -> Result<HashMap<String, String>> {
    if classes.len() != net.classes() {
        return Err(ModelError::Data(format!(
            "{} class names for a model with {} outputs",
            classes.len(),
            net.classes()
        )));
    }
    let json = |v: serde_json::Result<String>| v.expect("plain data always serializes");
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("spec".to_string(), json(serde_json::to_string(net.spec())));
    let (c, h, w) = net.input();
    meta.insert("input".to_string(), json(serde_json::to_string(&[c, h, w])));
    meta.insert("classes".to_string(), json(serde_json::to_string(classes)));
    meta.insert("scaling".to_string(), json(serde_json::to_string(&scaling)));
    meta.insert("frozen".to_string(), json(serde_json::to_string(&net.frozen_layers())));
    if let Some(config) = net.lora() {
        let lora = LoraMeta { config, layers: net.adapted_layers() };
        meta.insert("lora".to_string(), json(serde_json::to_string(&lora)));
    }
    for (k, v) in extra {
        meta.insert(format!("{EXTRA_PREFIX}{k}"), v.clone());
    }
    Ok(meta)
}

/// Reads the metadata of a model file held in memory; errors name `path`.
fn read_meta(path: &Path, bytes: &[u8]) -> Result<ModelMeta> {
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| ModelError::format(path, format!("not a safetensors model file: {e}")))?;
    let Some(meta) = header.metadata() else {
        return Err(ModelError::format(path, "no mnistlab metadata: this safetensors file was not saved by mnistlab"));
    };
    let get =
        |key: &str| meta.get(key).ok_or_else(|| ModelError::format(path, format!("the metadata has no `{key}` entry")));
    let format = get("format")?;
    if format != FORMAT {
        return Err(ModelError::format(path, format!("unsupported model format `{format}` (expected `{FORMAT}`)")));
    }
    fn parse<T: serde::de::DeserializeOwned>(path: &Path, key: &str, text: &str) -> Result<T> {
        serde_json::from_str(text).map_err(|e| ModelError::format(path, format!("bad `{key}` metadata: {e}")))
    }
    let input: [usize; 3] = parse(path, "input", get("input")?)?;
    let extra =
        meta.iter().filter_map(|(k, v)| k.strip_prefix(EXTRA_PREFIX).map(|k| (k.to_string(), v.clone()))).collect();
    let frozen = match meta.get("frozen") {
        Some(text) => parse(path, "frozen", text)?,
        None => Vec::new(),
    };
    let lora = match meta.get("lora") {
        Some(text) => Some(parse(path, "lora", text)?),
        None => None,
    };
    Ok(ModelMeta {
        spec: parse(path, "spec", get("spec")?)?,
        input: (input[0], input[1], input[2]),
        classes: parse(path, "classes", get("classes")?)?,
        scaling: parse(path, "scaling", get("scaling")?)?,
        extra,
        frozen,
        lora,
    })
}

/// Loads a model saved by [`save_model`] onto `device`. Whether its classes suit a dataset is
/// the caller's check (compare `meta.classes`).
pub fn load_model(path: &Path, device: &Device) -> Result<(Network, ModelMeta)> {
    let bytes = crate::budget::read_file(path)?;
    load_model_bytes(path, &bytes, device)
}

/// Loads a model file held in memory (see [`load_model`]), naming `path` in errors.
pub fn load_model_bytes(path: &Path, bytes: &[u8], device: &Device) -> Result<(Network, ModelMeta)> {
    let meta = read_meta(path, bytes)?;
    // Every parameter is stored, so a file holding fewer values than the architecture has
    // parameters is refused before the network is built: a small file must not make the lab
    // allocate (and randomly initialize) a huge one.
    let params: u64 = meta
        .spec
        .output_shapes(meta.input, meta.classes.len())
        .map_err(|e| ModelError::format(path, format!("the stored architecture cannot be built: {e}")))?
        .iter()
        .fold(0, |acc, layer| acc.saturating_add(layer.params as u64));
    let stored: u64 = SafeTensors::deserialize(bytes)
        .map_err(|e| ModelError::format(path, format!("cannot read the weights: {e}")))?
        .tensors()
        .iter()
        .fold(0, |acc, (_, t)| {
            acc.saturating_add(crate::budget::product(&t.shape().iter().map(|&d| d as u64).collect::<Vec<_>>()))
        });
    if params > stored {
        return Err(ModelError::format(
            path,
            format!(
                "the stored model `{}` has {params} parameters, but the file holds only {stored} values",
                meta.spec.describe()
            ),
        ));
    }
    let need = meta
        .spec
        .training_bytes(meta.input, meta.classes.len(), 1)
        .map_err(|e| ModelError::format(path, format!("the stored architecture cannot be built: {e}")))?;
    crate::budget::check(|| format!("{}: the stored model `{}`", path.display(), meta.spec.describe()), need)?;
    let mut net = Network::new(&meta.spec, meta.input, meta.classes.len(), device, 0)
        .map_err(|e| ModelError::format(path, format!("the stored architecture cannot be built: {e}")))?;
    if let Some(lora) = &meta.lora {
        net.add_lora_at(&lora.layers, lora.config, 0)
            .map_err(|e| ModelError::format(path, format!("bad `lora` metadata: {e}")))?;
    }
    net.set_frozen(&meta.frozen, true).map_err(|e| ModelError::format(path, format!("bad `frozen` metadata: {e}")))?;
    let mut tensors: HashMap<String, Tensor> = candle_core::safetensors::load_buffer(bytes, device)
        .map_err(|e| ModelError::format(path, format!("cannot read the weights: {e}")))?;
    // A checkpoint's training state (see `crate::model::files::resume`) is not part of the model.
    tensors.retain(|name, _| !name.starts_with(TRAIN_PREFIX));
    net.set_weights(&tensors).map_err(|e| ModelError::format(path, e.to_string()))?;
    Ok((net, meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::architecture::spec::preset;
    use crate::model::training::train::tests::{mnist, mnist_format};
    use crate::model::training::train::{fit, predict_probs, TrainConfig, TrainData};
    use std::sync::atomic::AtomicBool;

    #[test]
    fn round_trip_gives_identical_predictions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let train = mnist(true, 128);
        let scaling = PixelScaling::Standard { mean: 0.1307, std: 0.3081 };
        // Batch norm included: its moving statistics must travel with the weights.
        let spec = crate::model::architecture::spec::ModelSpec::new(vec![
            crate::model::architecture::layers::Layer::conv(4),
            crate::model::architecture::layers::Layer::BatchNorm,
            crate::model::architecture::layers::Layer::MaxPool,
            crate::model::architecture::layers::Layer::dense(8),
        ]);
        let net = Network::new(&spec, (1, 28, 28), 10, &Device::Cpu, 9).unwrap();
        let config = TrainConfig { epochs: 1, ..TrainConfig::default() };
        fit(&net, TrainData::new(&train, None, mnist_format(scaling)), &config, &AtomicBool::new(false), &mut |_| {})
            .unwrap();
        let classes = crate::data::dataset::digit_classes();
        let extra = BTreeMap::from([("dataset".to_string(), "mnist".to_string())]);
        save_model(&path, &net, &classes, scaling, &extra).unwrap();
        let (back, meta) = load_model(&path, &Device::Cpu).unwrap();
        assert_eq!(
            meta,
            ModelMeta { spec, input: (1, 28, 28), classes, scaling, extra, frozen: Vec::new(), lora: None }
        );
        let images = &train.pixels[..20 * 784];
        assert_eq!(predict_probs(&net, images, scaling).unwrap(), predict_probs(&back, images, scaling).unwrap());
        // Only the model file is left in the directory (the temporary file was renamed).
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn bad_files_are_rejected_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.safetensors");
        std::fs::write(&path, b"not a model").unwrap();
        let e = load_model(&path, &Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("bad.safetensors") && e.contains("not a safetensors model file"), "{e}");
        // A plain safetensors file without mnistlab metadata.
        let t = Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap();
        candle_core::safetensors::save(&HashMap::from([("x", t)]), &path).unwrap();
        let e = load_model(&path, &Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("no mnistlab metadata"), "{e}");
        let missing = dir.path().join("missing.safetensors");
        let e = load_model(&missing, &Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("missing.safetensors"), "{e}");
        // Wrong class count for the network.
        let net = Network::new(&preset("seed-small").unwrap(), (1, 28, 28), 10, &Device::Cpu, 0).unwrap();
        let e = save_model(&path, &net, &["a".into()], PixelScaling::Unit, &BTreeMap::new()).unwrap_err().to_string();
        assert!(e.contains("1 class names") && e.contains("10 outputs"), "{e}");
    }
}
