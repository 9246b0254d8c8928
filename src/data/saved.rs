//! A dataset folder written by `save DIR [as idx|npz|csv|png]` and read back by `load DIR`.
//!
//! The folder holds the data files of one format plus `manifest.json`, which records what was
//! saved (classes, image size, scaling, provenance, the statements that made it) and the SHA-256
//! of every data file, so that `load` can tell when a file changed after it was saved.
//!
//! Saving is atomic: everything is written into a temporary folder beside `DIR`, which is renamed
//! into place only when complete. An earlier save in `DIR` is replaced; any other non-empty
//! folder is left alone.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Component, Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::checksum::sha256_hex;
use super::dataset::{Dataset, PixelScaling, Provenance, Split, SplitKind};
use super::error::{DataError, Result};
use super::{csv, idx, npz};

/// The name of the manifest inside a saved folder.
pub const MANIFEST: &str = "manifest.json";

/// The file format of a saved dataset folder, as written after `save DIR as`; IDX when none
/// is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SaveFormat {
    /// `{split}-images-idx3-ubyte.gz` and `{split}-labels-idx1-ubyte.gz`, gzip-compressed like
    /// the official distribution.
    #[default]
    Idx,
    /// One `dataset.npz` with `x_{split}` and `y_{split}` arrays.
    Npz,
    /// One Kaggle-style `{split}.csv` per split.
    Csv,
    /// One grayscale PNG per image: `{split}/{class_index}/{image_index:06}.png`.
    Png,
}

impl SaveFormat {
    /// Every format, in the order they are listed.
    pub const ALL: [SaveFormat; 4] = [SaveFormat::Idx, SaveFormat::Npz, SaveFormat::Csv, SaveFormat::Png];

    /// The lowercase name, as written after `as`.
    pub fn as_str(self) -> &'static str {
        match self {
            SaveFormat::Idx => "idx",
            SaveFormat::Npz => "npz",
            SaveFormat::Csv => "csv",
            SaveFormat::Png => "png",
        }
    }

    /// The format of a name as written after `as` (lowercase); `None` for anything else.
    pub fn from_name(name: &str) -> Option<SaveFormat> {
        SaveFormat::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

impl fmt::Display for SaveFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the caller knows about how the dataset was made, recorded in the manifest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManifestInput {
    /// The statements that produced the dataset, in order.
    pub statements: Vec<String>,
    /// The random seed in force, if any.
    pub seed: Option<u64>,
}

/// Size and class balance of one saved split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitSummary {
    /// Number of images.
    pub count: usize,
    /// Images per class, indexed like `classes`.
    pub class_counts: Vec<usize>,
}

/// The contents of `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The mnistlab version that wrote the folder.
    pub mnistlab_version: String,
    /// The format of the data files.
    pub format: SaveFormat,
    /// The dataset's name.
    pub dataset: String,
    /// Class names; a label is an index into this list.
    pub classes: Vec<String>,
    /// Image height in pixels.
    pub rows: usize,
    /// Image width in pixels.
    pub cols: usize,
    /// Where the data originally came from.
    pub source: Provenance,
    /// The statements that produced the dataset.
    pub statements: Vec<String>,
    /// The random seed in force, if any.
    pub seed: Option<u64>,
    /// How bytes become model inputs, with normalization statistics.
    pub scaling: PixelScaling,
    /// Whether labels are one-hot encoded.
    pub onehot: bool,
    /// Each saved split's size and class counts.
    pub splits: BTreeMap<SplitKind, SplitSummary>,
    /// Every data file, as a path relative to the folder → SHA-256 (hex) of its bytes.
    pub files: BTreeMap<String, String>,
}

/// Saves `dataset` into the folder `dir` (see [`save_dataset_interruptible`]).
pub fn save_dataset(dir: &Path, dataset: &Dataset, format: SaveFormat, input: &ManifestInput) -> Result<Manifest> {
    save_dataset_interruptible(dir, dataset, format, input, &|| false)
}

/// Saves `dataset` into the folder `dir` in `format`, with a `manifest.json`, atomically.
///
/// `should_stop` is asked between files; when it answers true the save stops with
/// [`DataError::Interrupted`] and nothing is left behind. An earlier save in `dir` is replaced;
/// a non-empty `dir` without a manifest is refused, and so is a `dir` that the write path refuses
/// ([`crate::write::folder_target`]: a file, a device, the data cache); a link to a folder is
/// followed and stays.
pub fn save_dataset_interruptible(
    dir: &Path,
    dataset: &Dataset,
    format: SaveFormat,
    input: &ManifestInput,
    should_stop: &(dyn Fn() -> bool + Sync),
) -> Result<Manifest> {
    dataset.validate().map_err(|problem| DataError::Unsaveable { dir: dir.to_path_buf(), problem })?;
    if dataset.classes.len() > 256 {
        return Err(DataError::Invalid(format!(
            "cannot save {}: {} classes, but labels are stored as bytes (at most 256)",
            dir.display(),
            dataset.classes.len()
        )));
    }
    let dir = &crate::write::folder_target(dir, crate::write::Place::OutsideCache)?;
    let replacing = check_target(dir)?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|e| DataError::io(&parent, e))?;
    let base = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "dataset".into());
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{base}.saving-"))
        .tempdir_in(&parent)
        .map_err(|e| DataError::io(&parent, e))?;

    let files = write_data(tmp.path(), dataset, format, should_stop)?;
    let manifest = Manifest {
        mnistlab_version: env!("CARGO_PKG_VERSION").to_string(),
        format,
        dataset: dataset.name.clone(),
        classes: dataset.classes.clone(),
        rows: dataset.rows,
        cols: dataset.cols,
        source: dataset.provenance.clone(),
        statements: input.statements.clone(),
        seed: input.seed,
        scaling: dataset.scaling,
        onehot: dataset.onehot,
        splits: dataset
            .splits
            .iter()
            .map(|(&k, s)| (k, SplitSummary { count: s.len(), class_counts: s.class_counts(dataset.classes.len()) }))
            .collect(),
        files,
    };
    let json = serde_json::to_string_pretty(&manifest)
        .map_err(|e| DataError::Invalid(format!("cannot encode {MANIFEST}: {e}")))?;
    let manifest_path = tmp.path().join(MANIFEST);
    fs::write(&manifest_path, json + "\n").map_err(|e| DataError::io(&manifest_path, e))?;
    if should_stop() {
        return Err(DataError::Interrupted);
    }
    install(tmp, dir, &parent, &base, replacing)?;
    Ok(manifest)
}

/// Checks that `dir` may be written: returns true when it holds an earlier save (or is an empty
/// folder) to be replaced, false when it does not exist.
fn check_target(dir: &Path) -> Result<bool> {
    let meta = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(DataError::io(dir, e)),
    };
    if !meta.is_dir() {
        return Err(DataError::format(dir, "exists and is not a folder; refusing to replace it with a saved dataset"));
    }
    if dir.join(MANIFEST).is_file() {
        return Ok(true);
    }
    let mut entries = fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    if entries.next().is_some() {
        return Err(DataError::format(
            dir,
            format!(
                "exists, is not empty and is not a mnistlab save (no {MANIFEST}); refusing to overwrite it: \
                 choose another folder or empty this one"
            ),
        ));
    }
    Ok(true)
}

/// Renames the finished temporary folder to `dir`, moving an earlier save out of the way first
/// and deleting it once the new one is in place.
fn install(tmp: tempfile::TempDir, dir: &Path, parent: &Path, base: &str, replacing: bool) -> Result<()> {
    let old_holder = if replacing {
        let holder = tempfile::Builder::new()
            .prefix(&format!(".{base}.replaced-"))
            .tempdir_in(parent)
            .map_err(|e| DataError::io(parent, e))?;
        let old = holder.path().join("previous");
        fs::rename(dir, &old).map_err(|e| DataError::io(dir, e))?;
        Some((holder, old))
    } else {
        None
    };
    if let Err(e) = fs::rename(tmp.path(), dir) {
        if let Some((_, old)) = &old_holder {
            // Put the earlier save back; the new one is deleted with `tmp`.
            let _ = fs::rename(old, dir);
        }
        return Err(DataError::io(dir, e));
    }
    let _ = tmp.keep();
    // Dropping the holder deletes the earlier save.
    drop(old_holder);
    Ok(())
}

/// Writes the data files of `dataset` into `root`; returns relative path → SHA-256.
fn write_data(
    root: &Path,
    dataset: &Dataset,
    format: SaveFormat,
    should_stop: &(dyn Fn() -> bool + Sync),
) -> Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    let mut put = |rel: String, bytes: &[u8]| -> Result<()> {
        if should_stop() {
            return Err(DataError::Interrupted);
        }
        let path = root.join(&rel);
        fs::write(&path, bytes).map_err(|e| DataError::io(&path, e))?;
        files.insert(rel, sha256_hex(bytes));
        Ok(())
    };
    let image_len = dataset.image_len();
    match format {
        SaveFormat::Idx => {
            for (kind, split) in &dataset.splits {
                let images = idx::encode_gz(&[split.len(), dataset.rows, dataset.cols], &split.pixels);
                put(format!("{kind}-images-idx3-ubyte.gz"), &images)?;
                let labels = idx::encode_gz(&[split.len()], &split.labels);
                put(format!("{kind}-labels-idx1-ubyte.gz"), &labels)?;
            }
        }
        SaveFormat::Npz => {
            if should_stop() {
                return Err(DataError::Interrupted);
            }
            let bytes = npz::encode_npz(dataset)?;
            put("dataset.npz".into(), &bytes)?;
        }
        SaveFormat::Csv => {
            for (kind, split) in &dataset.splits {
                let mut bytes = Vec::new();
                csv::write_csv(&mut bytes, split, image_len)?;
                put(format!("{kind}.csv"), &bytes)?;
            }
        }
        SaveFormat::Png => {
            for (kind, split) in &dataset.splits {
                files.extend(write_pngs(root, *kind, split, dataset, should_stop)?);
            }
        }
    }
    Ok(files)
}

/// The relative path of image `index` of class `label` in a PNG save.
fn png_name(kind: SplitKind, label: u8, index: usize) -> String {
    format!("{kind}/{label}/{index:06}.png")
}

/// Encodes and writes every image of `split` as PNG, in parallel.
fn write_pngs(
    root: &Path,
    kind: SplitKind,
    split: &Split,
    dataset: &Dataset,
    should_stop: &(dyn Fn() -> bool + Sync),
) -> Result<Vec<(String, String)>> {
    let split_dir = root.join(kind.as_str());
    fs::create_dir_all(&split_dir).map_err(|e| DataError::io(&split_dir, e))?;
    let mut present = split.labels.clone();
    present.sort_unstable();
    present.dedup();
    for label in present {
        let class_dir = split_dir.join(label.to_string());
        fs::create_dir_all(&class_dir).map_err(|e| DataError::io(&class_dir, e))?;
    }
    let image_len = dataset.image_len();
    (0..split.len())
        .into_par_iter()
        .map(|i| {
            if should_stop() {
                return Err(DataError::Interrupted);
            }
            let rel = png_name(kind, split.labels[i], i);
            let path = root.join(&rel);
            let bytes = encode_png(&path, split.image(i, image_len), dataset.rows, dataset.cols)?;
            fs::write(&path, &bytes).map_err(|e| DataError::io(&path, e))?;
            Ok((rel, sha256_hex(&bytes)))
        })
        .collect()
}

/// Encodes one 8-bit grayscale image as PNG.
fn encode_png(path: &Path, pixels: &[u8], rows: usize, cols: usize) -> Result<Vec<u8>> {
    let err = |e: png::EncodingError| DataError::codec(path, "cannot encode PNG", e);
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, cols as u32, rows as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(err)?;
    writer.write_image_data(pixels).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(out)
}

/// Decodes one 8-bit grayscale PNG of `rows × cols`.
fn decode_png(path: &Path, bytes: &[u8], rows: usize, cols: usize) -> Result<Vec<u8>> {
    let err = |e: png::DecodingError| DataError::codec(path, "cannot decode PNG", e);
    let mut reader = png::Decoder::new(bytes).read_info().map_err(err)?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).map_err(err)?;
    if info.color_type != png::ColorType::Grayscale || info.bit_depth != png::BitDepth::Eight {
        return Err(DataError::format(
            path,
            format!("is {:?} {:?}-bit; expected 8-bit grayscale", info.color_type, info.bit_depth),
        ));
    }
    if (info.height as usize, info.width as usize) != (rows, cols) {
        return Err(DataError::format(
            path,
            format!("is {}×{}; the manifest says {rows}×{cols}", info.height, info.width),
        ));
    }
    buf.truncate(rows * cols);
    Ok(buf)
}

/// Reads `manifest.json` of the folder `dir`.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    if !dir.is_dir() {
        return Err(DataError::format(dir, "no such folder"));
    }
    let path = dir.join(MANIFEST);
    if !path.is_file() {
        return Err(DataError::format(
            dir,
            format!(
                "not a mnistlab dataset folder (no {MANIFEST}) and no class subfolders: `load` accepts a \
                 folder written by `save`, or one subfolder of pictures per class (`load folder DIR`)"
            ),
        ));
    }
    let text = crate::budget::read_text(&path)?;
    parse_manifest(&path, &text)
}

/// Parses the text of a `manifest.json`, naming `path` in errors.
pub fn parse_manifest(path: &Path, text: &str) -> Result<Manifest> {
    serde_json::from_str(text).map_err(|e| DataError::codec(path, "not a valid manifest", e))
}

/// Loads a folder written by [`save_dataset`]: checks every file against the manifest's SHA-256,
/// then restores the dataset exactly as it was saved.
pub fn load_saved(dir: &Path) -> Result<Dataset> {
    let manifest = read_manifest(dir)?;
    let contents = read_listed_files(dir, &manifest)?;
    let manifest_path = dir.join(MANIFEST);
    let bad = |message: String| DataError::format(&manifest_path, message);
    if manifest.rows.checked_mul(manifest.cols).is_none() {
        return Err(bad(format!("claims {}×{} images: more pixels than 64 bits count", manifest.rows, manifest.cols)));
    }
    let mut dataset = Dataset::new(&manifest.dataset, manifest.classes.clone(), manifest.rows, manifest.cols);
    dataset.scaling = manifest.scaling;
    dataset.onehot = manifest.onehot;
    dataset.provenance = manifest.source.clone();
    dataset.splits = read_splits(dir, &manifest, &contents)?;
    for (kind, summary) in &manifest.splits {
        let count = dataset.splits.get(kind).map_or(0, Split::len);
        if count != summary.count {
            return Err(bad(format!("says the {kind} split has {} images; its files hold {count}", summary.count)));
        }
    }
    if let Some(kind) = dataset.splits.keys().find(|k| !manifest.splits.contains_key(k)) {
        return Err(bad(format!("does not list the {kind} split found in the data files")));
    }
    dataset.validate().map_err(|p| DataError::inconsistent(dir, p))?;
    Ok(dataset)
}

/// Reads every file the manifest lists (in parallel: a PNG save has one file per image) and
/// checks it against its SHA-256; refuses a listed path that leaves the folder. Keyed by the
/// path as listed.
fn read_listed_files<'m>(dir: &Path, manifest: &'m Manifest) -> Result<BTreeMap<&'m str, Vec<u8>>> {
    for rel in manifest.files.keys() {
        let safe = Path::new(rel).components().all(|c| matches!(c, Component::Normal(_)));
        if !safe {
            return Err(DataError::format(
                &dir.join(MANIFEST),
                format!("lists the file {rel:?}, which is outside the folder"),
            ));
        }
    }
    manifest
        .files
        .par_iter()
        .map(|(rel, expected)| {
            let path = dir.join(rel);
            let bytes = crate::budget::read_file(&path).map_err(|e| match e {
                crate::budget::BudgetError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                    DataError::format(&path, format!("is listed in {MANIFEST} but missing"))
                }
                other => other.into(),
            })?;
            let actual = sha256_hex(&bytes);
            if &actual != expected {
                return Err(DataError::format(
                    &path,
                    format!("changed since it was saved (SHA-256 {actual}, {MANIFEST} records {expected})"),
                ));
            }
            Ok((rel.as_str(), bytes))
        })
        .collect()
}

/// Parses the verified `contents` of a saved folder into its splits, per the manifest's format.
fn read_splits(
    dir: &Path,
    manifest: &Manifest,
    contents: &BTreeMap<&str, Vec<u8>>,
) -> Result<BTreeMap<SplitKind, Split>> {
    let file = |rel: String| -> Result<(PathBuf, &Vec<u8>)> {
        let bytes = contents
            .get(rel.as_str())
            .ok_or_else(|| DataError::format(&dir.join(MANIFEST), format!("does not list {rel}")))?;
        Ok((dir.join(&rel), bytes))
    };
    let mut splits = BTreeMap::new();
    match manifest.format {
        SaveFormat::Idx => {
            for &kind in manifest.splits.keys() {
                let (ip, ib) = file(format!("{kind}-images-idx3-ubyte.gz"))?;
                let (lp, lb) = file(format!("{kind}-labels-idx1-ubyte.gz"))?;
                let images = idx::parse(&ip, ib)?;
                let labels = idx::parse(&lp, lb)?;
                let (rows, cols) = idx::check_pair(&ip, &images, &lp, &labels)?;
                if (rows, cols) != (manifest.rows, manifest.cols) {
                    return Err(DataError::format(
                        &ip,
                        format!("holds {rows}×{cols} images; {MANIFEST} says {}×{}", manifest.rows, manifest.cols),
                    ));
                }
                splits.insert(kind, Split { pixels: images.data, labels: labels.data });
            }
        }
        SaveFormat::Npz => {
            let (path, bytes) = file("dataset.npz".into())?;
            let loaded = npz::parse_mnist_npz(&path, bytes, &manifest.dataset, manifest.classes.clone())?;
            if loaded.splits.values().any(|s| !s.is_empty())
                && (loaded.rows, loaded.cols) != (manifest.rows, manifest.cols)
            {
                return Err(DataError::format(
                    &path,
                    format!(
                        "holds {}×{} images; {MANIFEST} says {}×{}",
                        loaded.rows, loaded.cols, manifest.rows, manifest.cols
                    ),
                ));
            }
            splits = loaded.splits;
        }
        SaveFormat::Csv => {
            for &kind in manifest.splits.keys() {
                let (path, bytes) = file(format!("{kind}.csv"))?;
                let split = csv::parse_csv(&path, bytes, manifest.classes.len(), manifest.rows * manifest.cols)?;
                splits.insert(kind, split);
            }
        }
        SaveFormat::Png => {
            for (&kind, summary) in &manifest.splits {
                splits.insert(kind, load_pngs(dir, kind, summary.count, manifest, contents)?);
            }
        }
    }
    Ok(splits)
}

/// Rebuilds a split from its PNG files, each placed by the index in its file name.
fn load_pngs(
    dir: &Path,
    kind: SplitKind,
    count: usize,
    manifest: &Manifest,
    contents: &BTreeMap<&str, Vec<u8>>,
) -> Result<Split> {
    let prefix = format!("{kind}/");
    let image_len = manifest.rows * manifest.cols;
    let decoded: Vec<(usize, u8, Vec<u8>)> = contents
        .par_iter()
        .filter(|(rel, _)| rel.starts_with(&prefix))
        .map(|(rel, bytes)| {
            let path = dir.join(rel);
            let (label, index) = parse_png_name(&rel[prefix.len()..])
                .filter(|&(label, _)| (label as usize) < manifest.classes.len())
                .ok_or_else(|| {
                    DataError::format(&path, format!("is not named {kind}/CLASS/INDEX.png with CLASS a class index"))
                })?;
            let pixels = decode_png(&path, bytes, manifest.rows, manifest.cols)?;
            Ok((index, label, pixels))
        })
        .collect::<Result<_>>()?;
    let mut slots: Vec<Option<(u8, Vec<u8>)>> = vec![None; count];
    for (index, label, pixels) in decoded {
        let name = png_name(kind, label, index);
        match slots.get_mut(index) {
            None => {
                return Err(DataError::format(
                    &dir.join(name),
                    format!("has index {index}, but the {kind} split has {count} images"),
                ))
            }
            Some(Some(_)) => return Err(DataError::format(&dir.join(name), "repeats an image index")),
            Some(slot) => *slot = Some((label, pixels)),
        }
    }
    let mut split = Split { pixels: Vec::with_capacity(count * image_len), labels: Vec::with_capacity(count) };
    for (index, slot) in slots.into_iter().enumerate() {
        let (label, pixels) =
            slot.ok_or_else(|| DataError::format(dir, format!("the {kind} split has no PNG for image {index}")))?;
        split.labels.push(label);
        split.pixels.extend_from_slice(&pixels);
    }
    Ok(split)
}

/// Parses `CLASS/INDEX.png` into `(class, index)`.
fn parse_png_name(name: &str) -> Option<(u8, usize)> {
    let (class, file) = name.split_once('/')?;
    let index = file.strip_suffix(".png")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(class) || !digits(index) {
        return None;
    }
    Some((class.parse().ok()?, index.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use super::*;
    use crate::data::dataset::{digit_classes, fashion_classes, Inconsistency};

    const FORMATS: [SaveFormat; 4] = [SaveFormat::Idx, SaveFormat::Npz, SaveFormat::Csv, SaveFormat::Png];

    /// Three splits of 3×2 images with distinct pixels and unsorted labels, standard scaling.
    fn sample() -> Dataset {
        let mut d = Dataset::new("tiny", digit_classes(), 3, 2);
        for (k, (kind, n)) in
            [(SplitKind::Train, 7usize), (SplitKind::Val, 3), (SplitKind::Test, 4)].into_iter().enumerate()
        {
            let pixels = (0..n * 6).map(|i| (i * 5 + k * 40) as u8).collect();
            let labels = (0..n).map(|i| ((i * 7 + k * 3) % 10) as u8).collect();
            d.splits.insert(kind, Split { pixels, labels });
        }
        d.scaling = PixelScaling::Standard { mean: 0.1307, std: 0.3081 };
        d.provenance = Provenance {
            description: "tiny (made in a test)".into(),
            files: BTreeMap::from([("tiny.bin".to_string(), "ab".repeat(32))]),
        };
        d
    }

    fn input() -> ManifestInput {
        ManifestInput { statements: vec!["load mnist".into(), "split 80/20".into()], seed: Some(42) }
    }

    /// Names in `parent`, sorted.
    fn entries(parent: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(parent).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    /// Every file under `dir`, relative, except the manifest.
    fn files_under(dir: &Path) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(root, &p, out);
                } else {
                    out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        let mut out = Vec::new();
        walk(dir, dir, &mut out);
        out.retain(|f| f != MANIFEST);
        out.sort();
        out
    }

    #[test]
    fn format_names() {
        assert_eq!(SaveFormat::ALL, FORMATS);
        assert_eq!(SaveFormat::ALL.map(SaveFormat::as_str), ["idx", "npz", "csv", "png"]);
        for format in FORMATS {
            assert_eq!(SaveFormat::from_name(format.as_str()), Some(format));
            assert_eq!(format.to_string(), format.as_str());
            let json = serde_json::to_string(&format).unwrap();
            assert_eq!(json, format!("\"{format}\""), "the manifest spells it the same");
        }
        for other in ["IDX", "zip", "", "pngs"] {
            assert_eq!(SaveFormat::from_name(other), None, "{other}");
        }
        assert_eq!(SaveFormat::default(), SaveFormat::Idx);
    }

    #[test]
    fn round_trip_every_format() {
        let tmp = tempfile::tempdir().unwrap();
        let d = sample();
        for format in FORMATS {
            let dir = tmp.path().join(format.as_str());
            let manifest = save_dataset(&dir, &d, format, &input()).unwrap();
            assert_eq!(load_saved(&dir).unwrap(), d, "{format}");
            // The manifest on disk is the one returned, and lists exactly the files written.
            assert_eq!(read_manifest(&dir).unwrap(), manifest);
            assert_eq!(manifest.files.keys().cloned().collect::<Vec<_>>(), files_under(&dir), "{format}");
            for (rel, sha) in &manifest.files {
                assert_eq!(&sha256_hex(&fs::read(dir.join(rel)).unwrap()), sha);
            }
        }
        assert_eq!(entries(tmp.path()), vec!["csv", "idx", "npz", "png"]);
    }

    #[test]
    fn file_layout_per_format() {
        let tmp = tempfile::tempdir().unwrap();
        let d = sample();
        let names = |format| save_dataset(&tmp.path().join("x"), &d, format, &input()).unwrap().files;
        let idx: Vec<String> = names(SaveFormat::Idx).into_keys().collect();
        assert_eq!(
            idx,
            [
                "test-images-idx3-ubyte.gz",
                "test-labels-idx1-ubyte.gz",
                "train-images-idx3-ubyte.gz",
                "train-labels-idx1-ubyte.gz",
                "val-images-idx3-ubyte.gz",
                "val-labels-idx1-ubyte.gz",
            ]
        );
        assert_eq!(names(SaveFormat::Npz).into_keys().collect::<Vec<_>>(), ["dataset.npz"]);
        assert_eq!(names(SaveFormat::Csv).into_keys().collect::<Vec<_>>(), ["test.csv", "train.csv", "val.csv"]);
        let png = names(SaveFormat::Png);
        assert_eq!(png.len(), d.len());
        // Train image 1 has label (1*7) % 10 = 7.
        assert!(png.contains_key("train/7/000001.png"), "{:?}", png.keys());
        let bytes = fs::read(tmp.path().join("x/train/7/000001.png")).unwrap();
        let pixels = decode_png(Path::new("p.png"), &bytes, 3, 2).unwrap();
        assert_eq!(pixels, d.splits[&SplitKind::Train].image(1, 6));
    }

    #[test]
    fn manifest_records_the_dataset() {
        let tmp = tempfile::tempdir().unwrap();
        let d = sample();
        let dir = tmp.path().join("m");
        save_dataset(&dir, &d, SaveFormat::Csv, &input()).unwrap();
        let json: serde_json::Value = serde_json::from_str(&fs::read_to_string(dir.join(MANIFEST)).unwrap()).unwrap();
        assert_eq!(json["mnistlab_version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(json["format"], "csv");
        assert_eq!(json["dataset"], "tiny");
        assert_eq!(json["rows"], 3);
        assert_eq!(json["cols"], 2);
        assert_eq!(json["seed"], 42);
        assert_eq!(json["statements"][1], "split 80/20");
        assert_eq!(json["scaling"]["kind"], "standard");
        assert_eq!(json["scaling"]["mean"].as_f64().unwrap() as f32, 0.1307);
        assert_eq!(json["source"]["description"], "tiny (made in a test)");
        assert_eq!(json["onehot"], false);
        let train = &d.splits[&SplitKind::Train];
        assert_eq!(json["splits"]["train"]["count"], train.len());
        let counts: Vec<usize> = serde_json::from_value(json["splits"]["train"]["class_counts"].clone()).unwrap();
        assert_eq!(counts, train.class_counts(10));
    }

    #[test]
    fn onehot_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let mut d = sample();
        d.onehot = true;
        d.scaling = PixelScaling::Unit;
        for format in FORMATS {
            let dir = tmp.path().join(format.as_str());
            save_dataset(&dir, &d, format, &input()).unwrap();
            assert_eq!(load_saved(&dir).unwrap(), d, "{format}");
        }
    }

    #[test]
    fn empty_split_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let mut d = sample();
        d.splits.insert(SplitKind::Val, Split::default());
        for format in FORMATS {
            let dir = tmp.path().join(format.as_str());
            save_dataset(&dir, &d, format, &input()).unwrap();
            assert_eq!(load_saved(&dir).unwrap(), d, "{format}");
        }
    }

    #[test]
    fn refuses_a_foreign_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("photos");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("holiday.jpg"), b"precious").unwrap();
        let e = save_dataset(&dir, &sample(), SaveFormat::Idx, &input()).unwrap_err().to_string();
        assert!(e.contains("photos") && e.contains("not a mnistlab save") && e.contains("refusing"), "{e}");
        assert_eq!(entries(&dir), vec!["holiday.jpg"]);
        assert_eq!(entries(tmp.path()), vec!["photos"]);
        let file = tmp.path().join("plain");
        fs::write(&file, b"x").unwrap();
        let e = save_dataset(&file, &sample(), SaveFormat::Idx, &input()).unwrap_err().to_string();
        assert!(e.contains("not a folder"), "{e}");
    }

    #[test]
    fn empty_folder_and_missing_parent_are_fine() {
        let tmp = tempfile::tempdir().unwrap();
        let empty = tmp.path().join("empty");
        fs::create_dir(&empty).unwrap();
        save_dataset(&empty, &sample(), SaveFormat::Npz, &input()).unwrap();
        assert_eq!(load_saved(&empty).unwrap(), sample());
        let nested = tmp.path().join("a/b/c");
        save_dataset(&nested, &sample(), SaveFormat::Csv, &input()).unwrap();
        assert_eq!(load_saved(&nested).unwrap(), sample());
        assert_eq!(entries(tmp.path()), vec!["a", "empty"]);
    }

    #[test]
    fn resave_replaces_the_earlier_save() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        save_dataset(&dir, &sample(), SaveFormat::Idx, &input()).unwrap();
        let mut d2 = sample();
        d2.name = "second".into();
        d2.splits.remove(&SplitKind::Val);
        save_dataset(&dir, &d2, SaveFormat::Npz, &input()).unwrap();
        assert_eq!(entries(&dir), vec!["dataset.npz", MANIFEST]);
        assert_eq!(load_saved(&dir).unwrap(), d2);
        assert_eq!(entries(tmp.path()), vec!["out"], "no temporary folder left");
    }

    #[test]
    fn interrupted_save_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        for format in [SaveFormat::Idx, SaveFormat::Png] {
            let asked = AtomicUsize::new(0);
            let stop_after_three = || asked.fetch_add(1, Ordering::SeqCst) >= 3;
            let dir = tmp.path().join("new");
            let e = save_dataset_interruptible(&dir, &sample(), format, &input(), &stop_after_three).unwrap_err();
            assert!(matches!(e, DataError::Interrupted), "{format}: {e}");
            assert!(asked.load(Ordering::SeqCst) > 3, "{format}: stopped part-way, after some files");
            assert!(entries(tmp.path()).is_empty(), "{format}: {:?}", entries(tmp.path()));
        }
        // Interrupting a re-save keeps the earlier save intact.
        let dir = tmp.path().join("kept");
        save_dataset(&dir, &sample(), SaveFormat::Csv, &input()).unwrap();
        let e = save_dataset_interruptible(&dir, &sample(), SaveFormat::Png, &input(), &|| true).unwrap_err();
        assert!(matches!(e, DataError::Interrupted), "{e}");
        assert_eq!(load_saved(&dir).unwrap(), sample());
        assert_eq!(entries(tmp.path()), vec!["kept"]);
    }

    #[test]
    fn failed_save_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("bad");
        // Zero-width images cannot be PNGs: the error comes after folders were made.
        let mut d = Dataset::new("flat", digit_classes(), 0, 0);
        d.splits.insert(SplitKind::Train, Split { pixels: vec![], labels: vec![1, 2] });
        let e = save_dataset(&dir, &d, SaveFormat::Png, &input()).unwrap_err();
        assert!(matches!(e, DataError::Codec { .. }) && std::error::Error::source(&e).is_some(), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("cannot encode PNG") && e.contains("bad"), "{e}");
        assert!(entries(tmp.path()).is_empty(), "{:?}", entries(tmp.path()));
        // An inconsistent dataset is refused before anything is written.
        let mut d = sample();
        d.splits.get_mut(&SplitKind::Test).unwrap().pixels.pop();
        let e = save_dataset(&dir, &d, SaveFormat::Idx, &input()).unwrap_err();
        let DataError::Unsaveable { problem: Inconsistency::PixelCount { split: SplitKind::Test, .. }, .. } = e else {
            panic!("{e:?}")
        };
        let e = e.to_string();
        assert!(e.starts_with(&format!("cannot save {}: test split has 4 labels", dir.display())), "{e}");
        assert!(entries(tmp.path()).is_empty());
    }

    #[test]
    fn tampered_or_missing_file_detected() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t");
        save_dataset(&dir, &sample(), SaveFormat::Csv, &input()).unwrap();
        let path = dir.join("val.csv");
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.replacen("\n3,", "\n4,", 1)).unwrap();
        let e = load_saved(&dir).unwrap_err().to_string();
        assert!(e.contains("val.csv") && e.contains("changed since it was saved"), "{e}");
        fs::remove_file(&path).unwrap();
        let e = load_saved(&dir).unwrap_err().to_string();
        assert!(e.contains("val.csv") && e.contains("missing"), "{e}");
    }

    #[test]
    fn tampered_png_detected() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p");
        save_dataset(&dir, &sample(), SaveFormat::Png, &input()).unwrap();
        let path = dir.join("test/6/000000.png");
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 20] ^= 1;
        fs::write(&path, bytes).unwrap();
        let e = load_saved(&dir).unwrap_err().to_string();
        assert!(e.contains("000000.png") && e.contains("changed since it was saved"), "{e}");
    }

    #[test]
    fn load_requires_a_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        let e = load_saved(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("not a mnistlab dataset folder") && e.contains("written by `save`"), "{e}");
        fs::write(tmp.path().join(MANIFEST), "{ \"format\": 3 }").unwrap();
        let e = load_saved(tmp.path()).unwrap_err().to_string();
        assert!(e.contains(MANIFEST) && e.contains("not a valid manifest"), "{e}");
        let e = load_saved(&tmp.path().join("nope")).unwrap_err().to_string();
        assert!(e.contains("no such folder"), "{e}");
    }

    #[test]
    fn manifest_paths_stay_inside_the_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let mut manifest = save_dataset(&dir, &sample(), SaveFormat::Npz, &input()).unwrap();
        manifest.files.insert("../secret".into(), "00".into());
        fs::write(dir.join(MANIFEST), serde_json::to_string(&manifest).unwrap()).unwrap();
        let e = load_saved(&dir).unwrap_err().to_string();
        assert!(e.contains("\"../secret\"") && e.contains("outside the folder"), "{e}");
    }

    /// Real Fashion-MNIST (70,000 images) through IDX → save as npz and idx → load, equal.
    #[test]
    fn fashion_mnist_round_trip() {
        let root = crate::testdata::fashion_dir();
        let start = Instant::now();
        let mut d = Dataset::new("fashion-mnist", fashion_classes(), 28, 28);
        for (kind, prefix) in [(SplitKind::Train, "train"), (SplitKind::Test, "t10k")] {
            let ip = root.join(format!("{prefix}-images-idx3-ubyte.gz"));
            let lp = root.join(format!("{prefix}-labels-idx1-ubyte.gz"));
            let (images, labels) = (idx::read(&ip).unwrap(), idx::read(&lp).unwrap());
            assert_eq!(idx::check_pair(&ip, &images, &lp, &labels).unwrap(), (28, 28));
            d.splits.insert(kind, Split { pixels: images.data, labels: labels.data });
        }
        d.provenance.description = "fashion-mnist (IDX files)".into();
        assert_eq!(d.len(), 70_000);
        let tmp = tempfile::tempdir().unwrap();
        for format in [SaveFormat::Npz, SaveFormat::Idx] {
            let dir = tmp.path().join(format.as_str());
            save_dataset(&dir, &d, format, &input()).unwrap();
            assert_eq!(load_saved(&dir).unwrap(), d, "{format}");
        }
        eprintln!("fashion-mnist read + npz/idx save/load: {:.2?}", start.elapsed());
    }
}
