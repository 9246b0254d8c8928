//! A split as candle tensors, for Rust programs and notebooks that go on in candle themselves.

use candle_core::{Device, Tensor};

use crate::data::{ImageFormat, Split};
use crate::model::error::Result;

/// The images of `split` as an `[N, 1, rows, cols]` f32 tensor, scaled by `format.scaling` as
/// `fit` scales them, and its labels as an `[N]` u32 tensor, both on `device`. Fails when the
/// split's bytes are not whole images of `format`'s size, or the floats would pass the memory
/// budget (`memory` statement, `MNISTLAB_MEMORY`).
pub fn split_tensors(split: &Split, format: ImageFormat, device: &Device) -> Result<(Tensor, Tensor)> {
    let image_len = format.image_len();
    let n = split.len();
    if image_len == 0 || split.pixels.len() != n * image_len {
        return Err(crate::model::error::ModelError::Data(format!(
            "the split holds {} pixel bytes for {n} labels, not {n} images of {}×{}",
            split.pixels.len(),
            format.rows,
            format.cols
        )));
    }
    crate::budget::check(
        || format!("{n} images of {}×{} as f32", format.rows, format.cols),
        crate::budget::product(&[n as u64, image_len as u64, 4]),
    )?;
    let mut floats = vec![0f32; n * image_len];
    let all: Vec<usize> = (0..n).collect();
    crate::model::training::train::fill_batch(split, &all, format, &mut floats);
    let images = Tensor::from_vec(floats, (n, 1, format.rows, format.cols), device)?;
    let labels: Vec<u32> = split.labels.iter().map(|&l| l as u32).collect();
    let labels = Tensor::from_vec(labels, n, device)?;
    Ok((images, labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::PixelScaling;

    #[test]
    fn pixels_are_scaled_and_shaped_as_fit_sees_them() {
        let split = Split { pixels: vec![0, 255, 51, 102, 255, 0, 0, 0], labels: vec![3, 7] };
        let format = ImageFormat { rows: 2, cols: 2, scaling: PixelScaling::Unit };
        let (x, y) = split_tensors(&split, format, &Device::Cpu).unwrap();
        assert_eq!(x.dims(), &[2, 1, 2, 2]);
        let got: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        let want: Vec<f32> = split.pixels.iter().map(|&b| PixelScaling::Unit.apply(b)).collect();
        assert_eq!(got, want);
        assert_eq!(y.to_vec1::<u32>().unwrap(), vec![3, 7]);
    }

    #[test]
    fn a_ragged_split_is_an_error() {
        let split = Split { pixels: vec![0; 7], labels: vec![1, 2] };
        let format = ImageFormat { rows: 2, cols: 2, scaling: PixelScaling::Raw };
        let err = split_tensors(&split, format, &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("7 pixel bytes for 2 labels"), "{err}");
    }
}
