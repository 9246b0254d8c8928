//! Test-time augmentation (`tta on`): each image is classified as itself and shifted by one
//! pixel left, right, up and down (the border it uncovers black, as MNIST's background), and
//! its class probabilities are the mean of the five softmaxes. The views are fixed, so the
//! results repeat exactly; nothing is drawn at random.

use crate::data::PixelScaling;
use crate::model::architecture::network::Network;
use crate::model::error::Result;
use crate::model::training::train::predict_probs;

/// The views: the image itself, then shifted by (columns, rows).
pub const SHIFTS: [(i32, i32); 5] = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)];

/// `image` (`rows` × `cols` bytes, one channel) moved by `dx` columns and `dy` rows, the
/// uncovered pixels 0.
pub fn shift(image: &[u8], (rows, cols): (usize, usize), (dx, dy): (i32, i32)) -> Vec<u8> {
    let mut out = vec![0u8; image.len()];
    for r in 0..rows as i32 {
        for c in 0..cols as i32 {
            let (sr, sc) = (r - dy, c - dx);
            if (0..rows as i32).contains(&sr) && (0..cols as i32).contains(&sc) {
                out[(r as usize) * cols + c as usize] = image[(sr as usize) * cols + sc as usize];
            }
        }
    }
    out
}

/// The mean of the class probabilities over the [`SHIFTS`] of each image of `images` (as
/// [`predict_probs`] takes them).
pub fn mean_probs(net: &Network, images: &[u8], scaling: PixelScaling) -> Result<Vec<Vec<f32>>> {
    let (c, h, w) = net.input();
    let image_len = c * h * w;
    let mut sum = predict_probs(net, images, scaling)?;
    for &view in &SHIFTS[1..] {
        let moved: Vec<u8> = images
            .chunks(image_len)
            .flat_map(|image| image.chunks(h * w).flat_map(|plane| shift(plane, (h, w), view)).collect::<Vec<_>>())
            .collect();
        for (total, p) in sum.iter_mut().zip(predict_probs(net, &moved, scaling)?) {
            total.iter_mut().zip(p).for_each(|(t, v)| *t += v);
        }
    }
    let views = SHIFTS.len() as f32;
    sum.iter_mut().for_each(|p| p.iter_mut().for_each(|v| *v /= views));
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::architecture::spec::preset;
    use crate::model::training::train::tests::{mnist, mnist_format};
    use crate::model::training::train::LabelMap;
    use candle_core::Device;

    #[test]
    fn evaluation_averages_the_five_views() {
        let net = Network::new(&preset("seed-small").unwrap(), (1, 28, 28), 10, &Device::Cpu, 4).unwrap();
        let test = mnist(false, 40);
        let scaling = PixelScaling::Unit;
        let probs = mean_probs(&net, &test.pixels, scaling).unwrap();
        // The mean of the five views, each computed on its own.
        let views: Vec<Vec<Vec<f32>>> = SHIFTS
            .iter()
            .map(|&v| {
                let moved: Vec<u8> = test.pixels.chunks(784).flat_map(|i| shift(i, (28, 28), v)).collect();
                predict_probs(&net, &moved, scaling).unwrap()
            })
            .collect();
        for (i, p) in probs.iter().enumerate() {
            for (k, &v) in p.iter().enumerate() {
                let want = views.iter().map(|view| view[i][k]).sum::<f32>() / 5.0;
                assert!((v - want).abs() < 1e-6);
            }
        }
        // Evaluated with test-time augmentation (a network alone is an ensemble of one).
        let format = mnist_format(scaling);
        let e = crate::model::training::ensemble::evaluate(&[&net], &test, format, (32, true), &LabelMap::identity())
            .unwrap();
        assert_eq!(e.predictions.len(), 40);
        for (p, &predicted) in probs.iter().zip(&e.predictions) {
            assert!(p.iter().all(|&v| v <= p[predicted]));
        }
        let loss: f64 = probs.iter().zip(&test.labels).map(|(p, &l)| -(p[l as usize] as f64).ln()).sum::<f64>() / 40.0;
        assert!((e.loss as f64 - loss).abs() < 1e-5);
    }

    #[test]
    fn a_shift_moves_the_pixels_and_blanks_the_border() {
        let image: Vec<u8> = (1..=9).collect();
        assert_eq!(shift(&image, (3, 3), (1, 0)), [0, 1, 2, 0, 4, 5, 0, 7, 8]);
        assert_eq!(shift(&image, (3, 3), (0, -1)), [4, 5, 6, 7, 8, 9, 0, 0, 0]);
        assert_eq!(shift(&image, (3, 3), (0, 0)), image);
    }
}
