//! The IDX format of the MNIST distribution, plain or gzip-compressed.
//!
//! Header: two zero bytes, a dtype byte, the number of dimensions, then one big-endian `u32`
//! per dimension. mnistlab reads and writes unsigned-byte (`0x08`) arrays only.

use std::io::{Read, Write};
use std::path::Path;

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use super::error::{DataError, Result};

/// The largest expansion a deflate stream can achieve; bounds what a gzip file can hold.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// An unsigned-byte IDX array: its dimensions and its data, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    /// Size of each dimension.
    pub dims: Vec<usize>,
    /// `dims.product()` bytes.
    pub data: Vec<u8>,
}

fn dtype_name(byte: u8) -> Option<&'static str> {
    match byte {
        0x08 => Some("unsigned byte"),
        0x09 => Some("signed byte"),
        0x0B => Some("16-bit integer"),
        0x0C => Some("32-bit integer"),
        0x0D => Some("32-bit float"),
        0x0E => Some("64-bit float"),
        _ => None,
    }
}

/// True when `bytes` start with the gzip magic number.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Parses an IDX array from a reader. `limit` is the most data bytes the source can hold;
/// a header that promises more is rejected before anything is allocated.
fn read_array(path: &Path, mut reader: impl Read, limit: u64, gz: bool) -> Result<IdxArray> {
    let fail = |message: String| DataError::format(path, message);
    let read_err = |e: std::io::Error| {
        if gz && e.kind() != std::io::ErrorKind::UnexpectedEof {
            DataError::codec(path, "corrupt gzip data", e)
        } else if e.kind() == std::io::ErrorKind::UnexpectedEof {
            fail("truncated: the file ends inside the IDX header".into())
        } else {
            DataError::io(path, e)
        }
    };
    let mut magic = [0u8; 4];
    reader.read_exact(&mut magic).map_err(read_err)?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(fail(format!(
            "bad magic number {:02x} {:02x} {:02x} {:02x}: an IDX file starts with two zero bytes",
            magic[0], magic[1], magic[2], magic[3]
        )));
    }
    match dtype_name(magic[2]) {
        None => return Err(fail(format!("bad dtype byte 0x{:02x} in the IDX header", magic[2]))),
        Some(name) if magic[2] != 0x08 => {
            return Err(fail(format!(
                "dtype 0x{:02x} ({name}) is not supported: mnistlab reads unsigned-byte (0x08) IDX files",
                magic[2]
            )))
        }
        Some(_) => {}
    }
    let ndims = magic[3] as usize;
    if ndims == 0 || ndims > 4 {
        return Err(fail(format!("{ndims} dimensions in the IDX header; expected 1 to 4")));
    }
    let mut dims = Vec::with_capacity(ndims);
    let mut total: u64 = 1;
    for _ in 0..ndims {
        let mut d = [0u8; 4];
        reader.read_exact(&mut d).map_err(read_err)?;
        let d = u32::from_be_bytes(d) as u64;
        total = total.checked_mul(d).ok_or_else(|| fail("the header's dimensions overflow".into()))?;
        dims.push(d as usize);
    }
    let header_len = 4 + 4 * ndims as u64;
    let room = limit.saturating_sub(header_len);
    if total > room {
        let dims_text = dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×");
        return Err(fail(if gz {
            format!("header promises {dims_text} = {total} bytes, more than this gzip file can hold")
        } else {
            format!("truncated: header promises {dims_text} = {total} bytes of data, the file holds {room}")
        }));
    }
    crate::budget::check(|| format!("{}: an IDX array of {total} bytes", path.display()), total)?;
    let mut data = Vec::with_capacity(total as usize);
    reader.by_ref().take(total).read_to_end(&mut data).map_err(read_err)?;
    if (data.len() as u64) < total {
        return Err(fail(format!("truncated: header promises {total} bytes of data, the file holds {}", data.len())));
    }
    Ok(IdxArray { dims, data })
}

/// Parses an IDX array held in memory (plain or gzip), naming `path` in errors.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<IdxArray> {
    if is_gzip(bytes) {
        let limit = (bytes.len() as u64).saturating_mul(MAX_DEFLATE_RATIO);
        read_array(path, GzDecoder::new(bytes), limit, true)
    } else {
        read_array(path, bytes, bytes.len() as u64, false)
    }
}

/// Reads the whole file at `path`: a regular file no larger than the memory budget.
pub fn read_file_bytes(path: &Path) -> Result<Vec<u8>> {
    Ok(crate::budget::read_file(path)?)
}

/// Reads an IDX file (plain or gzip).
pub fn read(path: &Path) -> Result<IdxArray> {
    parse(path, &read_file_bytes(path)?)
}

/// Checks that `images` is `n × rows × cols` and `labels` is `n`; returns `(rows, cols)`.
pub fn check_pair(
    images_path: &Path,
    images: &IdxArray,
    labels_path: &Path,
    labels: &IdxArray,
) -> Result<(usize, usize)> {
    if images.dims.len() != 3 {
        return Err(DataError::format(
            images_path,
            format!("expected images with 3 dimensions (count, rows, cols), found {}", images.dims.len()),
        ));
    }
    if labels.dims.len() != 1 {
        return Err(DataError::format(
            labels_path,
            format!("expected labels with 1 dimension, found {}", labels.dims.len()),
        ));
    }
    if images.dims[0] != labels.dims[0] {
        return Err(DataError::format(
            labels_path,
            format!("{} labels for {} images in {}", labels.dims[0], images.dims[0], images_path.display()),
        ));
    }
    Ok((images.dims[1], images.dims[2]))
}

/// Encodes an unsigned-byte IDX array (uncompressed).
pub fn encode(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend_from_slice(&[0, 0, 0x08, dims.len() as u8]);
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// Encodes an unsigned-byte IDX array, gzip-compressed.
pub fn encode_gz(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::with_capacity(data.len() / 4), Compression::new(4));
    enc.write_all(&encode(dims, data)).expect("writing to memory cannot fail");
    enc.finish().expect("writing to memory cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("t.idx")
    }

    #[test]
    fn round_trip_plain_and_gz() {
        let data: Vec<u8> = (0..24).collect();
        for bytes in [encode(&[2, 3, 4], &data), encode_gz(&[2, 3, 4], &data)] {
            let a = parse(p(), &bytes).unwrap();
            assert_eq!(a.dims, vec![2, 3, 4]);
            assert_eq!(a.data, data);
        }
    }

    #[test]
    fn bad_magic() {
        let e = parse(p(), &[1, 2, 8, 1, 0, 0, 0, 0]).unwrap_err().to_string();
        assert!(e.contains("t.idx") && e.contains("bad magic"), "{e}");
    }

    #[test]
    fn unknown_and_unsupported_dtype() {
        let e = parse(p(), &[0, 0, 0x07, 1, 0, 0, 0, 0]).unwrap_err().to_string();
        assert!(e.contains("bad dtype byte 0x07"), "{e}");
        let e = parse(p(), &[0, 0, 0x0D, 1, 0, 0, 0, 0]).unwrap_err().to_string();
        assert!(e.contains("32-bit float") && e.contains("not supported"), "{e}");
    }

    #[test]
    fn truncated_data() {
        let mut bytes = encode(&[10], &[7; 10]);
        bytes.truncate(bytes.len() - 3);
        let e = parse(p(), &bytes).unwrap_err().to_string();
        assert!(e.contains("truncated") && e.contains("the file holds 7"), "{e}");
        let e = parse(p(), &bytes[..6]).unwrap_err().to_string();
        assert!(e.contains("truncated") && e.contains("header"), "{e}");
    }

    #[test]
    fn header_past_file_size_or_memory() {
        // 60000 × 28 × 28 promised by a 16-byte file: rejected before allocating.
        let bytes = encode(&[60000, 28, 28], &[]);
        let e = parse(p(), &bytes).unwrap_err().to_string();
        assert!(e.contains("truncated") && e.contains("47040000"), "{e}");
        // Dimensions whose product overflows u64.
        let mut bytes = vec![0, 0, 8, 4];
        for _ in 0..4 {
            bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        }
        let e = parse(p(), &bytes).unwrap_err().to_string();
        assert!(e.contains("overflow"), "{e}");
        // A small gzip that claims 4 GB.
        let gz = encode_gz(&[u32::MAX as usize], &[]);
        let e = parse(p(), &gz).unwrap_err().to_string();
        assert!(e.contains("more than this gzip file can hold"), "{e}");
    }

    #[test]
    fn corrupt_gzip() {
        let mut gz = encode_gz(&[1000], &[3; 1000]);
        let n = gz.len();
        for b in &mut gz[12..n - 8] {
            *b ^= 0x5a;
        }
        let e = parse(p(), &gz).unwrap_err().to_string();
        assert!(e.contains("t.idx") && (e.contains("corrupt gzip") || e.contains("truncated")), "{e}");
    }

    #[test]
    fn pair_checks() {
        let images = IdxArray { dims: vec![3, 2, 2], data: vec![0; 12] };
        let labels = IdxArray { dims: vec![2], data: vec![0; 2] };
        let e = check_pair(p(), &images, Path::new("l.idx"), &labels).unwrap_err().to_string();
        assert!(e.contains("2 labels for 3 images"), "{e}");
    }
}
