//! The in-memory dataset: images stay `u8` until an operation needs floats.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A named split of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitKind {
    /// The training split.
    Train,
    /// The validation split.
    Val,
    /// The test split.
    Test,
}

impl SplitKind {
    /// Every split, in canonical order.
    pub const ALL: [SplitKind; 3] = [SplitKind::Train, SplitKind::Val, SplitKind::Test];

    /// The lowercase name, as used in file names.
    pub fn as_str(self) -> &'static str {
        match self {
            SplitKind::Train => "train",
            SplitKind::Val => "val",
            SplitKind::Test => "test",
        }
    }
}

impl fmt::Display for SplitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Images of one split with their labels: `count × rows × cols` bytes, row-major.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Split {
    /// Pixel bytes, `count * rows * cols` of them.
    pub pixels: Vec<u8>,
    /// One class index per image.
    pub labels: Vec<u8>,
}

impl Split {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i`, given the image size in pixels.
    pub fn image(&self, i: usize, image_len: usize) -> &[u8] {
        &self.pixels[i * image_len..(i + 1) * image_len]
    }

    /// Images per class, for `classes` classes.
    pub fn class_counts(&self, classes: usize) -> Vec<usize> {
        let mut counts = vec![0; classes];
        for &l in &self.labels {
            if (l as usize) < classes {
                counts[l as usize] += 1;
            }
        }
        counts
    }

    /// A new split holding the images at `indices`, in that order.
    pub fn select(&self, indices: &[usize], image_len: usize) -> Split {
        let mut pixels = Vec::with_capacity(indices.len() * image_len);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            pixels.extend_from_slice(self.image(i, image_len));
            labels.push(self.labels[i]);
        }
        Split { pixels, labels }
    }

    /// Appends every image of `other`.
    pub fn extend(&mut self, other: &Split) {
        self.pixels.extend_from_slice(&other.pixels);
        self.labels.extend_from_slice(&other.labels);
    }
}

/// How raw bytes become the floats a model sees: `value = byte * scale + offset`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PixelScaling {
    /// Raw bytes, 0 to 255.
    Raw,
    /// Bytes / 255, 0 to 1.
    Unit,
    /// Bytes / 127.5 - 1, -1 to 1.
    Symmetric,
    /// (bytes / 255 - mean) / std, with mean and std of the train split (in the 0..1 scale).
    Standard {
        /// Mean pixel of the train split, in the 0..1 scale.
        mean: f32,
        /// Standard deviation of the train split's pixels, in the 0..1 scale.
        std: f32,
    },
}

impl PixelScaling {
    /// `(scale, offset)` such that `value = byte * scale + offset`.
    pub fn affine(self) -> (f32, f32) {
        match self {
            PixelScaling::Raw => (1.0, 0.0),
            PixelScaling::Unit => (1.0 / 255.0, 0.0),
            PixelScaling::Symmetric => (2.0 / 255.0, -1.0),
            PixelScaling::Standard { mean, std } => (1.0 / (255.0 * std), -mean / std),
        }
    }

    /// The float a model sees for `byte`.
    pub fn apply(self, byte: u8) -> f32 {
        let (scale, offset) = self.affine();
        byte as f32 * scale + offset
    }

    /// A short description for tables.
    pub fn describe(self) -> String {
        match self {
            PixelScaling::Raw => "raw bytes 0..255".into(),
            PixelScaling::Unit => "x/255, 0..1".into(),
            PixelScaling::Symmetric => "x/127.5-1, -1..1".into(),
            PixelScaling::Standard { mean, std } => format!("(x/255-{mean:.4})/{std:.4}"),
        }
    }
}

/// The size of a dataset's images and how their bytes become the floats a model sees: what
/// turns a split's bytes into model input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageFormat {
    /// Image height in pixels.
    pub rows: usize,
    /// Image width in pixels.
    pub cols: usize,
    /// How bytes become model inputs.
    pub scaling: PixelScaling,
}

impl ImageFormat {
    /// Pixels per image.
    pub fn image_len(&self) -> usize {
        self.rows * self.cols
    }
}

/// A borrowed run of equally sized images: `rows × cols` bytes each, row-major, one after
/// another (a split's pixels, or one image).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Images<'a> {
    /// The bytes, a whole number of images.
    pub pixels: &'a [u8],
    /// Image height in pixels.
    pub rows: usize,
    /// Image width in pixels.
    pub cols: usize,
}

impl<'a> Images<'a> {
    /// A view of `pixels` as `rows × cols` images.
    pub fn new(pixels: &'a [u8], rows: usize, cols: usize) -> Images<'a> {
        Images { pixels, rows, cols }
    }

    /// Pixels per image.
    pub fn image_len(&self) -> usize {
        self.rows * self.cols
    }

    /// Number of whole images (0 for a zero-sized image).
    pub fn count(&self) -> usize {
        self.pixels.len().checked_div(self.image_len()).unwrap_or(0)
    }

    /// The bytes of image `i`.
    pub fn image(&self, i: usize) -> &'a [u8] {
        let len = self.image_len();
        &self.pixels[i * len..(i + 1) * len]
    }

    /// Image `i` alone, as a view of one image.
    pub fn single(&self, i: usize) -> Images<'a> {
        Images { pixels: self.image(i), ..*self }
    }
}

/// Where the data came from: a description and the SHA-256 of each source file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Provenance {
    /// What was loaded, e.g. `mnist (official IDX files)`.
    pub description: String,
    /// Source file name → SHA-256 (hex) of its bytes as read.
    pub files: BTreeMap<String, String>,
}

/// A dataset of equally sized grayscale images in up to three splits.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Short name, e.g. `mnist`.
    pub name: String,
    /// Class names; a label is an index into this list.
    pub classes: Vec<String>,
    /// Image height in pixels.
    pub rows: usize,
    /// Image width in pixels.
    pub cols: usize,
    /// The splits present.
    pub splits: BTreeMap<SplitKind, Split>,
    /// How bytes become model inputs.
    pub scaling: PixelScaling,
    /// Whether labels are one-hot encoded for saving and for the loss.
    pub onehot: bool,
    /// Where the data came from.
    pub provenance: Provenance,
}

/// The class names of MNIST: the digits.
pub fn digit_classes() -> Vec<String> {
    (0..10).map(|d| d.to_string()).collect()
}

/// The class names of Fashion-MNIST.
pub fn fashion_classes() -> Vec<String> {
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

impl Dataset {
    /// A dataset with the given splits, raw scaling and labels as indices.
    pub fn new(name: &str, classes: Vec<String>, rows: usize, cols: usize) -> Dataset {
        Dataset {
            name: name.to_string(),
            classes,
            rows,
            cols,
            splits: BTreeMap::new(),
            scaling: PixelScaling::Raw,
            onehot: false,
            provenance: Provenance::default(),
        }
    }

    /// Pixels per image.
    pub fn image_len(&self) -> usize {
        self.rows * self.cols
    }

    /// The images' size and scaling.
    pub fn format(&self) -> ImageFormat {
        ImageFormat { rows: self.rows, cols: self.cols, scaling: self.scaling }
    }

    /// The images of `split` as a view.
    pub fn images<'a>(&self, split: &'a Split) -> Images<'a> {
        Images::new(&split.pixels, self.rows, self.cols)
    }

    /// Total number of images over every split.
    pub fn len(&self) -> usize {
        self.splits.values().map(Split::len).sum()
    }

    /// True when no split holds an image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The split, if present.
    pub fn split(&self, kind: SplitKind) -> Option<&Split> {
        self.splits.get(&kind)
    }

    /// Checks that every split's pixel count matches its label count and that labels name
    /// classes; the first problem found is the error.
    pub fn validate(&self) -> Result<(), Inconsistency> {
        for (&split, images) in &self.splits {
            let expected = images.labels.len() * self.image_len();
            if images.pixels.len() != expected {
                return Err(Inconsistency::PixelCount {
                    split,
                    labels: images.labels.len(),
                    bytes: images.pixels.len(),
                    expected,
                });
            }
            if let Some(&label) = images.labels.iter().find(|&&l| l as usize >= self.classes.len()) {
                return Err(Inconsistency::Label { split, label, classes: self.classes.len() });
            }
        }
        Ok(())
    }
}

/// What [`Dataset::validate`] finds wrong: a split that does not fit the image size or the
/// classes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Inconsistency {
    /// The pixel bytes are not `labels × rows × cols`.
    #[error("{split} split has {labels} labels but {bytes} bytes of pixels (expected {expected})")]
    PixelCount {
        /// The split.
        split: SplitKind,
        /// Its number of labels.
        labels: usize,
        /// Its number of pixel bytes.
        bytes: usize,
        /// The bytes its labels call for.
        expected: usize,
    },
    /// A label is not a class index.
    #[error("{split} split has label {label}, but there are {classes} classes")]
    Label {
        /// The split.
        split: SplitKind,
        /// The first label out of range.
        label: u8,
        /// The number of classes.
        classes: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_first_inconsistency() {
        let mut d = Dataset::new("toy", digit_classes(), 2, 2);
        d.splits.insert(SplitKind::Train, Split { pixels: vec![0; 8], labels: vec![1, 9] });
        assert_eq!(d.validate(), Ok(()));
        d.splits.insert(SplitKind::Test, Split { pixels: vec![0; 7], labels: vec![1, 2] });
        let problem = d.validate().unwrap_err();
        assert_eq!(problem, Inconsistency::PixelCount { split: SplitKind::Test, labels: 2, bytes: 7, expected: 8 });
        assert_eq!(problem.to_string(), "test split has 2 labels but 7 bytes of pixels (expected 8)");
        d.splits.get_mut(&SplitKind::Test).unwrap().pixels.push(0);
        d.splits.get_mut(&SplitKind::Train).unwrap().labels[1] = 10;
        let problem = d.validate().unwrap_err();
        assert_eq!(problem, Inconsistency::Label { split: SplitKind::Train, label: 10, classes: 10 });
        assert_eq!(problem.to_string(), "train split has label 10, but there are 10 classes");
    }

    #[test]
    fn images_views_cut_whole_images() {
        let pixels: Vec<u8> = (0..12).collect();
        let images = Images::new(&pixels, 2, 3);
        assert_eq!((images.image_len(), images.count()), (6, 2));
        assert_eq!(images.image(1), &pixels[6..]);
        let one = images.single(1);
        assert_eq!((one.pixels, one.rows, one.cols, one.count()), (&pixels[6..], 2, 3, 1));
        assert_eq!(Images::new(&pixels, 0, 3).count(), 0);
    }
}
