//! The Kaggle digit-recognizer CSV format: a header `label,pixel0,...,pixelN`, then one image per
//! line, its class index followed by its pixel bytes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use super::checksum::sha256_hex;
use super::dataset::{Dataset, Provenance, Split, SplitKind};
use super::error::{DataError, Result};
use super::idx::read_file_bytes;

/// Reads a Kaggle-style CSV of `rows × cols` images into one Train split.
pub fn read_kaggle_csv(path: &Path, name: &str, classes: Vec<String>, rows: usize, cols: usize) -> Result<Dataset> {
    let bytes = read_file_bytes(path)?;
    let split = parse_csv(path, &bytes, classes.len(), rows * cols)?;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut dataset = Dataset::new(name, classes, rows, cols);
    dataset.splits.insert(SplitKind::Train, split);
    dataset.provenance = Provenance {
        description: format!("{name} (Kaggle CSV {file_name})"),
        files: BTreeMap::from([(file_name, sha256_hex(&bytes))]),
    };
    Ok(dataset)
}

/// Parses CSV bytes (header, then `label` and `image_len` pixels per line), naming `path` in errors.
pub fn parse_csv(path: &Path, bytes: &[u8], classes: usize, image_len: usize) -> Result<Split> {
    let fail = |message: String| DataError::format(path, message);
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).trim(csv::Trim::All).from_reader(bytes);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| DataError::codec(path, "line 1: cannot read the CSV header", e))?
        .iter()
        .map(str::to_string)
        .collect();
    let label_col = header.iter().position(|h| h == "label").ok_or_else(|| {
        let shown: Vec<&str> = header.iter().take(4).map(String::as_str).collect();
        fail(format!(
            "line 1: the header has no `label` column (it starts {}{}); an unlabelled file \
             (such as Kaggle's test.csv) cannot be loaded",
            shown.join(","),
            if header.len() > 4 { ",..." } else { "" }
        ))
    })?;
    let width = image_len + 1;
    if header.len() != width {
        return Err(fail(format!(
            "line 1: the header has {} columns, expected {width} (label and {image_len} pixels)",
            header.len()
        )));
    }

    let mut split = Split::default();
    let mut record = csv::ByteRecord::new();
    loop {
        let more = reader.read_byte_record(&mut record).map_err(|e| {
            let line = e.position().map(|p| format!("line {}: ", p.line())).unwrap_or_default();
            DataError::codec(path, format!("{line}malformed CSV"), e)
        })?;
        if !more {
            break;
        }
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != width {
            return Err(fail(format!("line {line}: {} fields, expected {width}", record.len())));
        }
        for (col, field) in record.iter().enumerate() {
            let text = String::from_utf8_lossy(field);
            let value: u64 = text
                .parse()
                .map_err(|_| fail(format!("line {line}, column {}: {text:?} is not a number", header[col])))?;
            if col == label_col {
                if value >= classes as u64 || value > u8::MAX as u64 {
                    return Err(fail(format!(
                        "line {line}: label {value} is not a class index: there are {classes} classes"
                    )));
                }
                split.labels.push(value as u8);
            } else {
                if value > u8::MAX as u64 {
                    return Err(fail(format!("line {line}, column {}: {value} is not a byte (0-255)", header[col])));
                }
                split.pixels.push(value as u8);
            }
        }
    }
    Ok(split)
}

/// Writes `split` as Kaggle-style CSV: a header `label,pixel0,...`, then one line per image.
pub fn write_csv<W: Write>(writer: W, split: &Split, image_len: usize) -> Result<()> {
    write_csv_named(Path::new("CSV output"), writer, split, image_len)
}

/// Writes `split` as a Kaggle-style CSV file at `path`, whole or not at all through the write
/// path ([`crate::write::write_file`]).
pub fn write_csv_file(path: &Path, split: &Split, image_len: usize) -> Result<()> {
    let mut bytes = Vec::new();
    write_csv_named(path, &mut bytes, split, image_len)?;
    crate::write::write_file(path, &bytes, crate::write::Place::OutsideCache)?;
    Ok(())
}

fn write_csv_named<W: Write>(path: &Path, writer: W, split: &Split, image_len: usize) -> Result<()> {
    if split.pixels.len() != split.len() * image_len {
        return Err(DataError::Invalid(format!(
            "{}: {} labels but {} pixel bytes (expected {})",
            path.display(),
            split.len(),
            split.pixels.len(),
            split.len() * image_len
        )));
    }
    let err = |e: csv::Error| match e.into_kind() {
        csv::ErrorKind::Io(io) => DataError::io(path, io),
        other => DataError::format(path, format!("cannot write CSV: {other:?}")),
    };
    let mut out = csv::Writer::from_writer(writer);
    let mut header = vec!["label".to_string()];
    header.extend((0..image_len).map(|i| format!("pixel{i}")));
    out.write_record(&header).map_err(err)?;
    let mut row: Vec<String> = Vec::with_capacity(image_len + 1);
    for i in 0..split.len() {
        row.clear();
        row.push(split.labels[i].to_string());
        row.extend(split.image(i, image_len).iter().map(u8::to_string));
        out.write_record(&row).map_err(err)?;
    }
    out.flush().map_err(|e| DataError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::digit_classes;

    fn p() -> &'static Path {
        Path::new("train.csv")
    }

    /// A 2×2 CSV with the given data lines.
    fn csv_text(lines: &[&str]) -> Vec<u8> {
        let mut text = String::from("label,pixel0,pixel1,pixel2,pixel3\n");
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        text.into_bytes()
    }

    fn err(lines: &[&str]) -> String {
        parse_csv(p(), &csv_text(lines), 10, 4).unwrap_err().to_string()
    }

    #[test]
    fn round_trip() {
        let split = Split { pixels: (0..12).map(|i| (i * 23) as u8).collect(), labels: vec![7, 0, 9] };
        let mut out = Vec::new();
        write_csv(&mut out, &split, 4).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("label,pixel0,pixel1,pixel2,pixel3\n7,0,23,46,69\n"), "{text}");
        assert_eq!(parse_csv(p(), &out, 10, 4).unwrap(), split);
    }

    #[test]
    fn file_round_trip_with_provenance() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.csv");
        let split = Split { pixels: vec![255, 0, 1, 2, 3, 4, 5, 6], labels: vec![1, 2] };
        write_csv_file(&path, &split, 4).unwrap();
        let d = read_kaggle_csv(&path, "digits", digit_classes(), 2, 2).unwrap();
        assert_eq!(d.splits.len(), 1);
        assert_eq!(d.splits[&SplitKind::Train], split);
        assert_eq!((d.rows, d.cols), (2, 2));
        let sha = sha256_hex(&std::fs::read(&path).unwrap());
        assert_eq!(d.provenance.files.get("train.csv"), Some(&sha));
    }

    #[test]
    fn wrong_width_names_the_line() {
        let e = err(&["1,0,0,0,0", "2,0,0,0,0", "3,0,0,0"]);
        assert!(e.contains("train.csv") && e.contains("line 4: 4 fields, expected 5"), "{e}");
    }

    #[test]
    fn pixel_not_a_byte() {
        let e = err(&["1,0,0,0,0", "1,0,300,0,0"]);
        assert!(e.contains("line 3, column pixel1: 300 is not a byte (0-255)"), "{e}");
    }

    #[test]
    fn not_a_number() {
        let e = err(&["1,0,x7,0,0"]);
        assert!(e.contains("line 2, column pixel1: \"x7\" is not a number"), "{e}");
        let e = err(&["-1,0,0,0,0"]);
        assert!(e.contains("line 2, column label: \"-1\" is not a number"), "{e}");
    }

    #[test]
    fn label_out_of_range() {
        let e = err(&["10,0,0,0,0"]);
        assert!(e.contains("line 2: label 10 is not a class index: there are 10 classes"), "{e}");
    }

    #[test]
    fn header_without_label() {
        let bytes = b"pixel0,pixel1,pixel2,pixel3\n0,0,0,0\n";
        let e = parse_csv(p(), bytes, 10, 4).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("no `label` column") && e.contains("pixel0,pixel1"), "{e}");
    }

    #[test]
    fn header_of_wrong_width() {
        let e = parse_csv(p(), &csv_text(&[]), 10, 9).unwrap_err().to_string();
        assert!(e.contains("the header has 5 columns, expected 10"), "{e}");
    }

    #[test]
    fn label_column_anywhere_and_spaces_trimmed() {
        let bytes = b"pixel0,label,pixel1\n 4, 2 ,5\n";
        let split = parse_csv(p(), bytes, 10, 2).unwrap();
        assert_eq!(split, Split { pixels: vec![4, 5], labels: vec![2] });
    }
}
