//! Pixel statistics and normalization. Normalization only records a [`PixelScaling`]:
//! images stay bytes, and batches are scaled when they are made.

use super::dataset::{Dataset, PixelScaling, Split, SplitKind};
use super::error::{DataError, Result};

/// Summary statistics of pixel values (after scaling).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelStats {
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Mean value.
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
}

/// How many pixels of each byte value the split holds.
pub fn byte_histogram(pixels: &[u8]) -> [u64; 256] {
    // Four partial histograms avoid store-to-load stalls on runs of equal bytes.
    let mut parts = [[0u64; 256]; 4];
    let mut chunks = pixels.chunks_exact(4);
    for c in &mut chunks {
        parts[0][c[0] as usize] += 1;
        parts[1][c[1] as usize] += 1;
        parts[2][c[2] as usize] += 1;
        parts[3][c[3] as usize] += 1;
    }
    for &b in chunks.remainder() {
        parts[0][b as usize] += 1;
    }
    let mut hist = [0u64; 256];
    for part in &parts {
        for (h, p) in hist.iter_mut().zip(part) {
            *h += p;
        }
    }
    hist
}

/// Statistics of the split's pixels as the model sees them under `scaling`; `None` when empty.
pub fn pixel_stats(split: &Split, scaling: PixelScaling) -> Option<PixelStats> {
    stats_from_histogram(&byte_histogram(&split.pixels), scaling)
}

fn stats_from_histogram(hist: &[u64; 256], scaling: PixelScaling) -> Option<PixelStats> {
    let n: u64 = hist.iter().sum();
    if n == 0 {
        return None;
    }
    let (scale, offset) = scaling.affine();
    let value = |b: usize| b as f64 * scale as f64 + offset as f64;
    let lo = hist.iter().position(|&c| c > 0)?;
    let hi = hist.iter().rposition(|&c| c > 0)?;
    let mean = hist.iter().enumerate().map(|(b, &c)| value(b) * c as f64).sum::<f64>() / n as f64;
    let var = hist.iter().enumerate().map(|(b, &c)| (value(b) - mean).powi(2) * c as f64).sum::<f64>() / n as f64;
    let (min, max) = if scale >= 0.0 { (value(lo), value(hi)) } else { (value(hi), value(lo)) };
    Some(PixelStats { min, max, mean, std: var.sqrt() })
}

/// The standardizing scaling from the train split's pixels (mean and std in the 0..1 scale).
pub fn standard_scaling(dataset: &Dataset) -> Result<PixelScaling> {
    let train = dataset
        .split(SplitKind::Train)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| DataError::Invalid("standardize needs a non-empty train split".into()))?;
    let stats = pixel_stats(train, PixelScaling::Unit).expect("non-empty split has stats");
    if stats.std == 0.0 {
        return Err(DataError::Invalid("every train pixel has the same value: the std is 0".into()));
    }
    Ok(PixelScaling::Standard { mean: stats.mean as f32, std: stats.std as f32 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_under_each_scaling() {
        let split = Split { pixels: vec![0, 255, 0, 255], labels: vec![0] };
        let raw = pixel_stats(&split, PixelScaling::Raw).unwrap();
        assert_eq!((raw.min, raw.max, raw.mean, raw.std), (0.0, 255.0, 127.5, 127.5));
        let unit = pixel_stats(&split, PixelScaling::Unit).unwrap();
        assert!((unit.max - 1.0).abs() < 1e-6 && (unit.mean - 0.5).abs() < 1e-6);
        let sym = pixel_stats(&split, PixelScaling::Symmetric).unwrap();
        assert!((sym.min + 1.0).abs() < 1e-6 && (sym.max - 1.0).abs() < 1e-6 && sym.mean.abs() < 1e-6);
        let std = PixelScaling::Standard { mean: 0.5, std: 0.5 };
        let s = pixel_stats(&split, std).unwrap();
        assert!(s.mean.abs() < 1e-6 && (s.std - 1.0).abs() < 1e-5, "{s:?}");
    }

    #[test]
    fn histogram_counts_every_byte() {
        let pixels: Vec<u8> = (0..1003u32).map(|i| (i % 7) as u8).collect();
        let h = byte_histogram(&pixels);
        assert_eq!(h.iter().sum::<u64>(), 1003);
        assert_eq!(h[0], 144);
    }
}
