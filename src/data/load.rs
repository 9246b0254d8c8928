//! Loading IDX files into a [`Dataset`]: a pair of files, or an official four-file folder.

use std::path::{Path, PathBuf};

use super::checksum::sha256_hex;
use super::dataset::{Dataset, Provenance, Split, SplitKind};
use super::error::{DataError, Result};
use super::idx;

/// One split read from an images file and a labels file (each plain or gzip).
pub struct IdxSplit {
    /// The images and labels.
    pub split: Split,
    /// Image height and width.
    pub shape: (usize, usize),
    /// File name → SHA-256 of the bytes read.
    pub checksums: Vec<(String, String)>,
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

/// Reads an images/labels pair; the two files are read and decoded in parallel.
pub fn read_idx_split(images: &Path, labels: &Path) -> Result<IdxSplit> {
    let read = |path: &Path| -> Result<(idx::IdxArray, String)> {
        let bytes = idx::read_file_bytes(path)?;
        let sum = sha256_hex(&bytes);
        Ok((idx::parse(path, &bytes)?, sum))
    };
    let (img, lab) = rayon::join(|| read(images), || read(labels));
    let ((img, img_sum), (lab, lab_sum)) = (img?, lab?);
    let shape = idx::check_pair(images, &img, labels, &lab)?;
    Ok(IdxSplit {
        split: Split { pixels: img.data, labels: lab.data },
        shape,
        checksums: vec![(file_name(images), img_sum), (file_name(labels), lab_sum)],
    })
}

/// A dataset of one train split from an images/labels pair.
pub fn load_idx_pair(images: &Path, labels: &Path, name: &str, classes: Vec<String>) -> Result<Dataset> {
    let part = read_idx_split(images, labels)?;
    let mut dataset = Dataset::new(name, classes, part.shape.0, part.shape.1);
    dataset.provenance = Provenance {
        description: format!("IDX files {} and {}", images.display(), labels.display()),
        files: part.checksums.into_iter().collect(),
    };
    dataset.splits.insert(SplitKind::Train, part.split);
    dataset.validate().map_err(|p| DataError::inconsistent(labels, p))?;
    Ok(dataset)
}

/// The first of `name` and `name.gz` that exists in `dir`.
fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    if plain.is_file() {
        Ok(plain)
    } else if gz.is_file() {
        Ok(gz)
    } else {
        Err(DataError::format(dir, format!("missing {name} (or {name}.gz)")))
    }
}

/// A dataset from a folder holding the official four files (`train-images-idx3-ubyte`,
/// `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each plain or `.gz`).
pub fn load_official(dir: &Path, name: &str, classes: Vec<String>, description: &str) -> Result<Dataset> {
    let paths = [
        find(dir, "train-images-idx3-ubyte")?,
        find(dir, "train-labels-idx1-ubyte")?,
        find(dir, "t10k-images-idx3-ubyte")?,
        find(dir, "t10k-labels-idx1-ubyte")?,
    ];
    let (train, test) = rayon::join(|| read_idx_split(&paths[0], &paths[1]), || read_idx_split(&paths[2], &paths[3]));
    let (train, test) = (train?, test?);
    if train.shape != test.shape {
        return Err(DataError::format(
            &paths[2],
            format!("test images are {:?}, train images {:?}", test.shape, train.shape),
        ));
    }
    let mut dataset = Dataset::new(name, classes, train.shape.0, train.shape.1);
    dataset.provenance = Provenance {
        description: description.to_string(),
        files: train.checksums.into_iter().chain(test.checksums).collect(),
    };
    dataset.splits.insert(SplitKind::Train, train.split);
    dataset.splits.insert(SplitKind::Test, test.split);
    dataset.validate().map_err(|p| DataError::inconsistent(dir, p))?;
    Ok(dataset)
}
