//! The Keras `mnist.npz` format: a zip of `.npy` arrays named `x_train`, `y_train`, `x_test`,
//! `y_test` (and optionally `x_val`, `y_val`).
//!
//! Images are `uint8` arrays `(n, rows, cols)`. Labels are integers `(n,)` of any width, or
//! one-hot floats `(n, classes)` as written by [`write_npz`] for a one-hot dataset.

use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Cursor, Read, Seek, Write};
use std::path::Path;

use npyz::{DType, NpyFile, NpyHeader, Order, TypeChar, WriteOptions, WriterBuilder};
use zip::read::ZipFile;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use super::checksum::sha256_hex;
use super::dataset::{Dataset, Provenance, Split, SplitKind};
use super::error::{DataError, Result};
use super::idx::read_file_bytes;

/// The largest expansion a deflate stream can achieve; bounds what an entry can hold.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// The longest `.npy` header read (numpy writes a few hundred bytes; version 1 allows 65535).
const MAX_NPY_HEADER: u64 = 65_535;

/// The array names of a split: `(images, labels)`.
fn keys(kind: SplitKind) -> (String, String) {
    (format!("x_{kind}"), format!("y_{kind}"))
}

/// Human name of a numpy dtype, e.g. `float64 (<f8)`.
fn dtype_text(dtype: &DType) -> String {
    match dtype {
        DType::Plain(ts) => {
            let kind = match ts.type_char() {
                TypeChar::Bool => return format!("bool ({ts})"),
                TypeChar::Int => "int",
                TypeChar::Uint => "uint",
                TypeChar::Float => "float",
                TypeChar::Complex => "complex",
                _ => return ts.to_string(),
            };
            format!("{kind}{} ({ts})", ts.size_field() * 8)
        }
        other => other.descr(),
    }
}

/// Reads an MNIST-style `.npz` file: Train and Test splits, and Val when `x_val`/`y_val` exist.
pub fn read_mnist_npz(path: &Path, name: &str, classes: Vec<String>) -> Result<Dataset> {
    let bytes = read_file_bytes(path)?;
    let mut dataset = parse_mnist_npz(path, &bytes, name, classes)?;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dataset.provenance = Provenance {
        description: format!("{name} (npz file {file_name})"),
        files: BTreeMap::from([(file_name, sha256_hex(&bytes))]),
    };
    Ok(dataset)
}

/// Parses `.npz` bytes held in memory, naming `path` in errors. Provenance is left empty.
pub fn parse_mnist_npz(path: &Path, bytes: &[u8], name: &str, classes: Vec<String>) -> Result<Dataset> {
    let mut archive = ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| DataError::codec(path, "not an npz file (an npz file is a zip archive of .npy arrays)", e))?;
    let mut found = Vec::new();
    for name in archive.file_names() {
        let name = name.map_err(|e| DataError::codec(path, "corrupt zip archive", e))?;
        found.push(name.strip_suffix(".npy").unwrap_or(&name).to_string());
    }
    found.sort();
    let has = |key: &str| found.iter().any(|k| k == key);
    let missing: Vec<&str> = ["x_train", "y_train", "x_test", "y_test"].into_iter().filter(|k| !has(k)).collect();
    let val_pair = has("x_val") as u8 + has("y_val") as u8;
    if !missing.is_empty() || val_pair == 1 {
        let mut what = missing.join(", ");
        if val_pair == 1 {
            let lone = if has("x_val") { "y_val" } else { "x_val" };
            what = if what.is_empty() { lone.to_string() } else { format!("{what}, {lone}") };
        }
        return Err(DataError::format(
            path,
            format!(
                "missing array(s) {what}; found keys: {}; expected x_train, y_train, x_test, y_test \
                 (and optionally x_val, y_val)",
                if found.is_empty() { "none".to_string() } else { found.join(", ") }
            ),
        ));
    }

    let mut dataset = Dataset::new(name, classes, 0, 0);
    let mut shape: Option<(usize, usize)> = None;
    let mut any_onehot = false;
    for kind in SplitKind::ALL {
        let (xk, yk) = keys(kind);
        if !has(&xk) {
            continue;
        }
        let (n, rows, cols, pixels) = read_images(path, &mut archive, &xk)?;
        match shape {
            None => shape = Some((rows, cols)),
            Some((r, c)) if (r, c) != (rows, cols) => {
                return Err(DataError::format(
                    path,
                    format!("{xk} holds {rows}×{cols} images, but the first split holds {r}×{c}"),
                ))
            }
            Some(_) => {}
        }
        let (labels, onehot) = read_labels(path, &mut archive, &yk, dataset.classes.len())?;
        any_onehot |= onehot;
        if labels.len() != n {
            return Err(DataError::format(
                path,
                format!("{yk} holds {} labels for the {n} images of {xk}", labels.len()),
            ));
        }
        dataset.splits.insert(kind, Split { pixels, labels });
    }
    let (rows, cols) = shape.unwrap_or((0, 0));
    dataset.rows = rows;
    dataset.cols = cols;
    dataset.onehot = any_onehot;
    Ok(dataset)
}

/// Opens entry `key` (with or without `.npy`) and parses its npy header.
fn open_entry<'a, R: Read + Seek>(
    path: &Path,
    archive: &'a mut ZipArchive<R>,
    key: &str,
) -> Result<(NpyHeader, u64, BufReader<ZipFile<'a, R>>)> {
    let entry_name =
        if archive.index_for_name(&format!("{key}.npy")).is_some() { format!("{key}.npy") } else { key.to_string() };
    let entry = archive
        .by_name(&entry_name)
        .map_err(|e| DataError::codec(path, format!("cannot open {entry_name} in the zip archive"), e))?;
    let limit = match entry.compression() {
        CompressionMethod::Stored => entry.compressed_size(),
        _ => entry.compressed_size().saturating_mul(MAX_DEFLATE_RATIO),
    };
    let mut reader = BufReader::new(entry);
    let raw = read_npy_header(path, key, &mut reader)?;
    let header = NpyHeader::from_reader(&mut Cursor::new(raw))
        .map_err(|e| DataError::codec(path, format!("{key} is not a valid .npy array"), e))?;
    if header.order() == Order::Fortran && header.shape().len() > 1 {
        return Err(DataError::format(
            path,
            format!("{key} is stored in Fortran order; mnistlab reads C-order arrays"),
        ));
    }
    Ok((header, limit, reader))
}

/// Reads the whole `.npy` header of `key` (magic, version, length, dict) for npyz, refusing first
/// what npyz would mishandle: a header length over [`MAX_NPY_HEADER`] (npyz allocates it before
/// reading) and a shape whose dimensions multiply past 64 bits (npyz multiplies them unchecked).
fn read_npy_header(path: &Path, key: &str, reader: &mut impl Read) -> Result<Vec<u8>> {
    let fail = |message: String| DataError::format(path, format!("{key} is not a valid .npy array: {message}"));
    let short = |e: std::io::Error| fail(format!("the header is truncated ({e})"));
    let mut raw = vec![0u8; 8];
    reader.read_exact(&mut raw).map_err(short)?;
    if !raw.starts_with(b"\x93NUMPY") {
        return Err(fail("no .npy magic number".into()));
    }
    let len_size = match raw[6] {
        1 => 2,
        2 | 3 => 4,
        v => return Err(fail(format!("unsupported .npy format version {v}"))),
    };
    let mut len = [0u8; 4];
    reader.read_exact(&mut len[..len_size]).map_err(short)?;
    raw.extend_from_slice(&len[..len_size]);
    let header_len = u32::from_le_bytes(len) as u64;
    if header_len > MAX_NPY_HEADER {
        return Err(fail(format!("its header claims {header_len} bytes; at most {MAX_NPY_HEADER} are read")));
    }
    let start = raw.len();
    raw.resize(start + header_len as usize, 0);
    reader.read_exact(&mut raw[start..]).map_err(short)?;
    // Every `shape: (...)` in the dict (a decoy inside a string included) must fit; a zero
    // dimension does not excuse the others, as npyz multiplies them in order.
    let text = String::from_utf8_lossy(&raw[start..]);
    for (at, _) in text.match_indices("shape") {
        let rest = text[at + 5..].trim_start_matches(['\'', '"', ' ']);
        let Some(tuple) = rest.strip_prefix(':').map(str::trim_start).and_then(|r| r.strip_prefix('(')) else {
            continue;
        };
        let Some(end) = tuple.find(')') else { continue };
        let dims: Vec<u64> = tuple[..end].split(',').filter_map(|d| d.trim().parse().ok()).collect();
        if dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d.max(1))).is_none() {
            return Err(fail(format!("shape {} has more elements than 64 bits count", shape_text(&dims))));
        }
    }
    Ok(raw)
}

fn shape_text(shape: &[u64]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    if parts.len() == 1 {
        format!("({},)", parts[0])
    } else {
        format!("({})", parts.join(", "))
    }
}

/// Reads a `uint8 (n, rows, cols)` array: `(n, rows, cols, bytes)`.
fn read_images<R: Read + Seek>(
    path: &Path,
    archive: &mut ZipArchive<R>,
    key: &str,
) -> Result<(usize, usize, usize, Vec<u8>)> {
    let (header, limit, mut reader) = open_entry(path, archive, key)?;
    let dtype = header.dtype();
    let is_u8 = matches!(&dtype, DType::Plain(ts) if ts.type_char() == TypeChar::Uint && ts.size_field() == 1);
    if !is_u8 {
        return Err(DataError::format(path, format!("{key} has dtype {}; images must be uint8", dtype_text(&dtype))));
    }
    let shape = header.shape();
    if shape.len() != 3 {
        return Err(DataError::format(
            path,
            format!("{key} has shape {}; images must have 3 dimensions (count, rows, cols)", shape_text(shape)),
        ));
    }
    let total = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
    let total = match total {
        Some(t) if t <= limit => t,
        _ => {
            return Err(DataError::format(
                path,
                format!("{key} has shape {}, more data than its zip entry can hold", shape_text(shape)),
            ))
        }
    };
    crate::budget::check(|| format!("{}: {key} of {total} bytes", path.display()), total)?;
    let mut pixels = Vec::with_capacity(total as usize);
    reader
        .by_ref()
        .take(total)
        .read_to_end(&mut pixels)
        .map_err(|e| DataError::codec(path, format!("cannot read {key}"), e))?;
    if (pixels.len() as u64) < total {
        return Err(DataError::format(
            path,
            format!("{key} is truncated: shape {} needs {total} bytes, found {}", shape_text(shape), pixels.len()),
        ));
    }
    Ok((shape[0] as usize, shape[1] as usize, shape[2] as usize, pixels))
}

/// Reads every element of an npy array as `T`, then widens it.
fn read_all<T, R>(path: &Path, key: &str, header: NpyHeader, reader: R) -> Result<Vec<T>>
where
    T: npyz::Deserialize,
    R: Read,
{
    NpyFile::with_header(header, reader)
        .into_vec::<T>()
        .map_err(|e| DataError::codec(path, format!("cannot read {key}"), e))
}

/// Reads labels: integers `(n,)` or one-hot floats `(n, classes)`. Returns the indices and
/// whether they were one-hot.
fn read_labels<R: Read + Seek>(
    path: &Path,
    archive: &mut ZipArchive<R>,
    key: &str,
    classes: usize,
) -> Result<(Vec<u8>, bool)> {
    let (header, limit, reader) = open_entry(path, archive, key)?;
    let dtype = header.dtype();
    let shape = header.shape().to_vec();
    let bad_dtype = || {
        DataError::format(
            path,
            format!("{key} has dtype {}; labels must be integers, or one-hot floats", dtype_text(&dtype)),
        )
    };
    let DType::Plain(ts) = &dtype else {
        return Err(bad_dtype());
    };
    let size = ts.size_field();
    let elements = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
    if !matches!(elements, Some(e) if e.saturating_mul(size) <= limit) {
        return Err(DataError::format(
            path,
            format!("{key} has shape {}, more data than its zip entry can hold", shape_text(&shape)),
        ));
    }
    match ts.type_char() {
        TypeChar::Int | TypeChar::Uint => {
            if shape.len() != 1 {
                return Err(DataError::format(
                    path,
                    format!("{key} has shape {}; integer labels must have 1 dimension (count,)", shape_text(&shape)),
                ));
            }
            let values: Vec<i128> = match (ts.type_char(), size) {
                (TypeChar::Uint, 1) => widen(read_all::<u8, _>(path, key, header, reader)?),
                (TypeChar::Uint, 2) => widen(read_all::<u16, _>(path, key, header, reader)?),
                (TypeChar::Uint, 4) => widen(read_all::<u32, _>(path, key, header, reader)?),
                (TypeChar::Uint, 8) => widen(read_all::<u64, _>(path, key, header, reader)?),
                (TypeChar::Int, 1) => widen(read_all::<i8, _>(path, key, header, reader)?),
                (TypeChar::Int, 2) => widen(read_all::<i16, _>(path, key, header, reader)?),
                (TypeChar::Int, 4) => widen(read_all::<i32, _>(path, key, header, reader)?),
                (TypeChar::Int, 8) => widen(read_all::<i64, _>(path, key, header, reader)?),
                _ => return Err(bad_dtype()),
            };
            Ok((class_indices(path, key, values, classes)?, false))
        }
        TypeChar::Float => {
            if shape.len() != 2 || shape[1] != classes as u64 {
                return Err(DataError::format(
                    path,
                    format!(
                        "{key} has dtype {} and shape {}; float labels must be one-hot (count, {classes})",
                        dtype_text(&dtype),
                        shape_text(&shape)
                    ),
                ));
            }
            let values: Vec<f64> = match size {
                4 => read_all::<f32, _>(path, key, header, reader)?.into_iter().map(f64::from).collect(),
                8 => read_all::<f64, _>(path, key, header, reader)?,
                _ => return Err(bad_dtype()),
            };
            Ok((one_hot_indices(path, key, &values, classes)?, true))
        }
        _ => Err(bad_dtype()),
    }
}

/// Integer labels `values` of `key` as class indices, each checked to be below `classes`.
fn class_indices(path: &Path, key: &str, values: Vec<i128>, classes: usize) -> Result<Vec<u8>> {
    let mut labels = Vec::with_capacity(values.len());
    for (i, v) in values.into_iter().enumerate() {
        if v < 0 || v >= classes as i128 || v > u8::MAX as i128 {
            return Err(DataError::format(
                path,
                format!("{key}[{i}] = {v} is not a class index: there are {classes} classes"),
            ));
        }
        labels.push(v as u8);
    }
    Ok(labels)
}

/// One-hot rows `values` (`classes` floats each) of `key` as class indices, each row checked to
/// hold exactly one 1.0.
fn one_hot_indices(path: &Path, key: &str, values: &[f64], classes: usize) -> Result<Vec<u8>> {
    let mut labels = Vec::with_capacity(values.len() / classes.max(1));
    for (i, row) in values.chunks(classes.max(1)).enumerate() {
        let hot: Vec<usize> = row.iter().enumerate().filter(|(_, &v)| v != 0.0).map(|(j, _)| j).collect();
        match hot.as_slice() {
            [j] if row[*j] == 1.0 && *j <= u8::MAX as usize => labels.push(*j as u8),
            _ => {
                return Err(DataError::format(
                    path,
                    format!("{key} row {i} is not one-hot (exactly one 1.0, the rest 0.0)"),
                ))
            }
        }
    }
    Ok(labels)
}

fn widen<T: Into<i128>>(values: Vec<T>) -> Vec<i128> {
    values.into_iter().map(Into::into).collect()
}

/// Writes `dataset` as an `.npz` file at `path` (see [`write_npz_to`]), whole or not at all
/// through the write path ([`crate::write::write_file`]).
pub fn write_npz(path: &Path, dataset: &Dataset) -> Result<()> {
    let bytes = write_npz_to(path, Cursor::new(Vec::new()), dataset)?.into_inner();
    crate::write::write_file(path, &bytes, crate::write::Place::OutsideCache)?;
    Ok(())
}

/// Encodes `dataset` as `.npz` bytes in memory.
pub fn encode_npz(dataset: &Dataset) -> Result<Vec<u8>> {
    let cursor = write_npz_to(Path::new("dataset.npz"), Cursor::new(Vec::new()), dataset)?;
    Ok(cursor.into_inner())
}

/// Writes `dataset` as `.npz` to `writer`, naming `path` in errors: `x_{split}` as uint8
/// `(n, rows, cols)` and `y_{split}` as uint8 `(n,)`, or float32 `(n, classes)` one-hot when
/// `dataset.onehot` is set. Only the splits present are written. Returns the writer.
pub fn write_npz_to<W: Write + Seek>(path: &Path, writer: W, dataset: &Dataset) -> Result<W> {
    dataset.validate().map_err(|p| DataError::inconsistent(path, p))?;
    let zip_err = |e: zip::result::ZipError| DataError::codec(path, "cannot write the zip archive", e);
    let io_err = |e: std::io::Error| DataError::io(path, e);
    // Zip64 headers are needed for entries of 4 GiB or more.
    let options = |bytes: usize| {
        SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(4))
            .large_file(bytes as u64 >= u32::MAX as u64 - 4096)
    };
    let mut zip = ZipWriter::new(writer);
    for (&kind, split) in &dataset.splits {
        let (xk, yk) = keys(kind);
        let n = split.len() as u64;
        zip.start_file(format!("{xk}.npy"), options(split.pixels.len())).map_err(zip_err)?;
        {
            let mut out = BufWriter::new(&mut zip);
            let mut npy = WriteOptions::<u8>::new()
                .default_dtype()
                .shape(&[n, dataset.rows as u64, dataset.cols as u64])
                .writer(&mut out)
                .begin_nd()
                .map_err(io_err)?;
            npy.extend(split.pixels.iter().copied()).map_err(io_err)?;
            npy.finish().map_err(io_err)?;
            out.flush().map_err(io_err)?;
        }
        zip.start_file(format!("{yk}.npy"), options(split.len() * dataset.classes.len() * 4)).map_err(zip_err)?;
        {
            let mut out = BufWriter::new(&mut zip);
            if dataset.onehot {
                let classes = dataset.classes.len();
                let mut npy = WriteOptions::<f32>::new()
                    .default_dtype()
                    .shape(&[n, classes as u64])
                    .writer(&mut out)
                    .begin_nd()
                    .map_err(io_err)?;
                for &l in &split.labels {
                    npy.extend((0..classes).map(|c| if c == l as usize { 1.0f32 } else { 0.0 })).map_err(io_err)?;
                }
                npy.finish().map_err(io_err)?;
            } else {
                let mut npy = WriteOptions::<u8>::new()
                    .default_dtype()
                    .shape(&[n])
                    .writer(&mut out)
                    .begin_nd()
                    .map_err(io_err)?;
                npy.extend(split.labels.iter().copied()).map_err(io_err)?;
                npy.finish().map_err(io_err)?;
            }
            out.flush().map_err(io_err)?;
        }
    }
    zip.finish().map_err(zip_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::digit_classes;

    /// A small dataset: 2×3 images with distinct pixels, in three splits.
    fn sample(onehot: bool) -> Dataset {
        let mut d = Dataset::new("tiny", digit_classes(), 2, 3);
        for (k, (kind, n)) in
            [(SplitKind::Train, 5usize), (SplitKind::Val, 2), (SplitKind::Test, 3)].into_iter().enumerate()
        {
            let pixels = (0..n * 6).map(|i| (i * 7 + k * 50) as u8).collect();
            let labels = (0..n).map(|i| ((i * 3 + k) % 10) as u8).collect();
            d.splits.insert(kind, Split { pixels, labels });
        }
        d.onehot = onehot;
        d
    }

    fn p() -> &'static Path {
        Path::new("t.npz")
    }

    /// Builds an npz from `(name, npy bytes)` entries.
    fn zip_of(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        for (name, bytes) in entries {
            let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
            zip.start_file(name.to_string(), stored).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    fn npy<T: npyz::AutoSerialize + Copy>(shape: &[u64], data: &[T]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = WriteOptions::<T>::new().default_dtype().shape(shape).writer(&mut out).begin_nd().unwrap();
        w.extend(data.iter().copied()).unwrap();
        w.finish().unwrap();
        out
    }

    /// A valid 2-image train/test npz whose arrays can be swapped out one at a time.
    fn entries() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("x_train.npy", npy::<u8>(&[2, 2, 2], &[1, 2, 3, 4, 5, 6, 7, 8])),
            ("y_train.npy", npy::<u8>(&[2], &[3, 9])),
            ("x_test.npy", npy::<u8>(&[1, 2, 2], &[9, 8, 7, 6])),
            ("y_test.npy", npy::<u8>(&[1], &[0])),
        ]
    }

    fn replace(name: &'static str, bytes: Vec<u8>) -> Vec<u8> {
        let e: Vec<_> =
            entries().into_iter().map(|(n, b)| if n == name { (n, bytes.clone()) } else { (n, b) }).collect();
        zip_of(&e)
    }

    #[test]
    fn round_trip_three_splits() {
        let d = sample(false);
        let bytes = encode_npz(&d).unwrap();
        let back = parse_mnist_npz(p(), &bytes, "tiny", digit_classes()).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn round_trip_onehot() {
        let d = sample(true);
        let bytes = encode_npz(&d).unwrap();
        let mut archive = ZipArchive::new(Cursor::new(&bytes[..])).unwrap();
        let (header, _, _) = open_entry(p(), &mut archive, "y_train").unwrap();
        assert_eq!(header.shape(), &[5, 10]);
        assert_eq!(header.dtype().descr(), "'<f4'");
        let back = parse_mnist_npz(p(), &bytes, "tiny", digit_classes()).unwrap();
        assert!(back.onehot);
        assert_eq!(back, d);
    }

    #[test]
    fn write_and_read_file_with_provenance() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mnist.npz");
        let d = sample(false);
        write_npz(&path, &d).unwrap();
        let back = read_mnist_npz(&path, "tiny", digit_classes()).unwrap();
        assert_eq!(back.splits, d.splits);
        let sha = sha256_hex(&std::fs::read(&path).unwrap());
        assert_eq!(back.provenance.files.get("mnist.npz"), Some(&sha));
        assert!(back.provenance.description.contains("mnist.npz"), "{}", back.provenance.description);
    }

    #[test]
    fn int64_labels_accepted_without_val() {
        let bytes = replace("y_train.npy", npy::<i64>(&[2], &[3, 9]));
        let d = parse_mnist_npz(p(), &bytes, "t", digit_classes()).unwrap();
        assert_eq!(d.splits[&SplitKind::Train].labels, vec![3, 9]);
        assert_eq!(d.splits[&SplitKind::Test].pixels, vec![9, 8, 7, 6]);
        assert!(!d.splits.contains_key(&SplitKind::Val));
        assert_eq!((d.rows, d.cols), (2, 2));
    }

    #[test]
    fn label_out_of_range() {
        let bytes = replace("y_train.npy", npy::<i64>(&[2], &[3, 10]));
        let e = parse_mnist_npz(p(), &bytes, "t", digit_classes()).unwrap_err().to_string();
        assert!(e.contains("y_train[1] = 10") && e.contains("10 classes"), "{e}");
        let bytes = replace("y_train.npy", npy::<i32>(&[2], &[-1, 0]));
        let e = parse_mnist_npz(p(), &bytes, "t", digit_classes()).unwrap_err().to_string();
        assert!(e.contains("y_train[0] = -1"), "{e}");
    }

    #[test]
    fn wrong_keys_listed() {
        let bytes = zip_of(&[("images.npy", npy::<u8>(&[1, 1, 1], &[0])), ("labels.npy", npy::<u8>(&[1], &[0]))]);
        let e = parse_mnist_npz(p(), &bytes, "t", digit_classes()).unwrap_err().to_string();
        assert!(e.contains("t.npz") && e.contains("found keys: images, labels"), "{e}");
        assert!(e.contains("expected x_train, y_train, x_test, y_test"), "{e}");
        let mut e4 = entries();
        e4.pop();
        let e = parse_mnist_npz(p(), &zip_of(&e4), "t", digit_classes()).unwrap_err().to_string();
        assert!(e.contains("missing array(s) y_test") && e.contains("found keys: x_test, x_train, y_train"), "{e}");
    }

    #[test]
    fn float_images_rejected() {
        let bytes = replace("x_train.npy", npy::<f64>(&[2, 2, 2], &[0.0; 8]));
        let e = parse_mnist_npz(p(), &bytes, "t", digit_classes()).unwrap_err().to_string();
        assert!(e.contains("x_train has dtype float64 (<f8)") && e.contains("uint8"), "{e}");
    }

    #[test]
    fn two_dim_images_rejected() {
        let bytes = replace("x_train.npy", npy::<u8>(&[2, 4], &[0; 8]));
        let e = parse_mnist_npz(p(), &bytes, "t", digit_classes()).unwrap_err().to_string();
        assert!(e.contains("x_train has shape (2, 4)") && e.contains("3 dimensions"), "{e}");
    }

    #[test]
    fn count_mismatch() {
        let bytes = replace("y_train.npy", npy::<u8>(&[3], &[1, 2, 3]));
        let e = parse_mnist_npz(p(), &bytes, "t", digit_classes()).unwrap_err().to_string();
        assert!(e.contains("y_train holds 3 labels for the 2 images of x_train"), "{e}");
    }

    #[test]
    fn not_a_zip() {
        let e = parse_mnist_npz(p(), b"this is plain text, not a zip", "t", digit_classes()).unwrap_err().to_string();
        assert!(e.contains("t.npz") && e.contains("not an npz file"), "{e}");
    }

    #[test]
    fn not_an_npy_entry() {
        let bytes = replace("x_train.npy", b"garbage".to_vec());
        let e = parse_mnist_npz(p(), &bytes, "t", digit_classes()).unwrap_err().to_string();
        assert!(e.contains("x_train is not a valid .npy array"), "{e}");
    }

    #[test]
    fn truncated_images() {
        let mut x = npy::<u8>(&[2, 2, 2], &[1; 8]);
        x.truncate(x.len() - 3);
        let e = parse_mnist_npz(p(), &replace("x_train.npy", x), "t", digit_classes()).unwrap_err().to_string();
        assert!(e.contains("x_train is truncated") && e.contains("needs 8 bytes, found 5"), "{e}");
        // A header promising far more than the entry holds is rejected before allocating.
        // Same header length, so the npy header stays valid.
        let x = npy::<u8>(&[1, 1, 1], &[1]);
        let (from, to) = (&b"(1, 1, 1, )"[..], &b"(99999,9,9)"[..]);
        let at = x.windows(from.len()).position(|w| w == from).unwrap();
        let x = [&x[..at], to, &x[at + from.len()..]].concat();
        let e = parse_mnist_npz(p(), &replace("x_train.npy", x), "t", digit_classes()).unwrap_err().to_string();
        assert!(e.contains("x_train has shape (99999, 9, 9), more data than its zip entry can hold"), "{e}");
    }
}
