//! The logits mnistlab computes for the official MNIST test images, to hold an exported ONNX
//! model against the model it came from (`tests/onnx` runs it).
//!
//! `cargo run --example onnx_logits -- MODEL.safetensors OUT_DIR` loads a model written by
//! `save model`, reads the official test set from the cache (`mnistlab fetch mnist` gets it),
//! scales each pixel as the model was trained and runs the network in inference mode (what
//! `evaluate` and `predict` run). It writes `OUT_DIR/images.u8` (N×H×W pixel bytes, as in the
//! IDX file), `OUT_DIR/labels.u8` (N bytes) and `OUT_DIR/logits.f32` (N×classes float32,
//! little-endian, row-major), and prints `N classes`.

use std::error::Error;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use mnistlab::data::fetch::{fetch, Named};
use mnistlab::data::idx;
use mnistlab::model::load_model;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, out] = args.as_slice() else {
        return Err("usage: onnx_logits MODEL.safetensors OUT_DIR".into());
    };
    let (net, meta) = load_model(&PathBuf::from(model), &Device::Cpu)?;
    let dir = fetch(Named::Mnist, &mut |_| {})?;
    let images = idx::read(&dir.join("t10k-images-idx3-ubyte"))?;
    let labels = idx::read(&dir.join("t10k-labels-idx1-ubyte"))?;
    let (c, h, w) = net.input();
    if images.dims[1..] != [h, w] || c != 1 {
        return Err(format!("the model takes {c}×{h}×{w} images, MNIST's are {:?}", &images.dims[1..]).into());
    }
    let (scale, offset) = meta.scaling.affine();
    let mut logits: Vec<u8> = Vec::new();
    for chunk in images.data.chunks(256 * h * w) {
        let xs: Vec<f32> = chunk.iter().map(|&p| p as f32 * scale + offset).collect();
        let xs = Tensor::from_vec(xs, (chunk.len() / (h * w), c, h, w), &Device::Cpu)?;
        for v in net.forward(&xs, false)?.flatten_all()?.to_vec1::<f32>()? {
            logits.extend_from_slice(&v.to_le_bytes());
        }
    }
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("images.u8"), &images.data)?;
    std::fs::write(out.join("labels.u8"), &labels.data)?;
    std::fs::write(out.join("logits.f32"), &logits)?;
    println!("{} {}", images.dims[0], net.classes());
    Ok(())
}
