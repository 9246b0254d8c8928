//! TensorBoard event files: scalars, histograms, images and text, as TensorBoard's own readers
//! take them.
//!
//! A file is a sequence of TFRecords (a little-endian u64 length, its masked CRC-32C, the
//! data, the data's masked CRC-32C), each holding one `Event` protocol buffer (TensorBoard's
//! `event.proto`, `summary.proto`, `histogram.proto`, `tensor.proto`: only the fields written
//! here, derived with `prost`). The first record is the `brain.Event:2` file-version event.
//! Records are appended and flushed as they come, so TensorBoard can follow a run live; a
//! reader stops cleanly at a record cut short.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message;

use crate::model::error::{ModelError, Result};

/// The protocol buffers of TensorBoard's event files (field numbers as in its `.proto` files).
pub mod proto {
    /// `tensorboard.Event`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Event {
        /// Seconds since the Unix epoch.
        #[prost(double, tag = "1")]
        pub wall_time: f64,
        /// The global step.
        #[prost(int64, tag = "2")]
        pub step: i64,
        /// What the event holds.
        #[prost(oneof = "What", tags = "3, 5")]
        pub what: Option<What>,
    }

    /// `Event.what`: the members written here.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum What {
        /// The file's version, `brain.Event:2`.
        #[prost(string, tag = "3")]
        FileVersion(String),
        /// Summary values.
        #[prost(message, tag = "5")]
        Summary(Summary),
    }

    /// `tensorboard.Summary`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Summary {
        /// The values.
        #[prost(message, repeated, tag = "1")]
        pub value: Vec<Value>,
    }

    /// `tensorboard.Summary.Value`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Value {
        /// The series' name.
        #[prost(string, tag = "1")]
        pub tag: String,
        /// Which plugin reads it (text summaries need it).
        #[prost(message, optional, tag = "9")]
        pub metadata: Option<SummaryMetadata>,
        /// The value.
        #[prost(oneof = "Kind", tags = "2, 4, 5, 8")]
        pub value: Option<Kind>,
    }

    /// `Summary.Value.value`: the members written here.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        /// A scalar.
        #[prost(float, tag = "2")]
        SimpleValue(f32),
        /// An encoded image.
        #[prost(message, tag = "4")]
        Image(Image),
        /// A histogram.
        #[prost(message, tag = "5")]
        Histo(HistogramProto),
        /// A tensor (text summaries: strings).
        #[prost(message, tag = "8")]
        Tensor(TensorProto),
    }

    /// `tensorboard.SummaryMetadata`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SummaryMetadata {
        /// The plugin.
        #[prost(message, optional, tag = "1")]
        pub plugin_data: Option<PluginData>,
    }

    /// `tensorboard.SummaryMetadata.PluginData`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PluginData {
        /// The plugin's name (`text`).
        #[prost(string, tag = "1")]
        pub plugin_name: String,
    }

    /// `tensorboard.Summary.Image`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Image {
        /// Height in pixels.
        #[prost(int32, tag = "1")]
        pub height: i32,
        /// Width in pixels.
        #[prost(int32, tag = "2")]
        pub width: i32,
        /// Channels: 1 gray, 2 gray and alpha, 3 RGB, 4 RGBA.
        #[prost(int32, tag = "3")]
        pub colorspace: i32,
        /// The PNG.
        #[prost(bytes = "vec", tag = "4")]
        pub encoded_image_string: Vec<u8>,
    }

    /// `tensorboard.HistogramProto`: bucket `i` counts the values from `bucket_limit[i-1]`
    /// (or -DBL_MAX) up to `bucket_limit[i]`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HistogramProto {
        /// Lowest value.
        #[prost(double, tag = "1")]
        pub min: f64,
        /// Highest value.
        #[prost(double, tag = "2")]
        pub max: f64,
        /// How many values.
        #[prost(double, tag = "3")]
        pub num: f64,
        /// Their sum.
        #[prost(double, tag = "4")]
        pub sum: f64,
        /// The sum of their squares.
        #[prost(double, tag = "5")]
        pub sum_squares: f64,
        /// Each bucket's upper edge.
        #[prost(double, repeated, tag = "6")]
        pub bucket_limit: Vec<f64>,
        /// Each bucket's count.
        #[prost(double, repeated, tag = "7")]
        pub bucket: Vec<f64>,
    }

    /// `tensorboard.TensorProto`: the members a string tensor needs.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        /// `DataType`: 7 is `DT_STRING`.
        #[prost(int32, tag = "1")]
        pub dtype: i32,
        /// The shape.
        #[prost(message, optional, tag = "2")]
        pub tensor_shape: Option<TensorShapeProto>,
        /// The strings.
        #[prost(bytes = "vec", repeated, tag = "8")]
        pub string_val: Vec<Vec<u8>>,
    }

    /// `tensorboard.TensorShapeProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorShapeProto {
        /// The dimensions.
        #[prost(message, repeated, tag = "2")]
        pub dim: Vec<Dim>,
    }

    /// `tensorboard.TensorShapeProto.Dim`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dim {
        /// The size.
        #[prost(int64, tag = "1")]
        pub size: i64,
    }
}

use proto::{Event, HistogramProto, Kind, Summary, Value, What};

/// `DT_STRING` in TensorFlow's `DataType`.
const DT_STRING: i32 = 7;

/// Buckets of a histogram.
const BUCKETS: usize = 30;

/// The masked CRC-32C of TFRecords: the CRC rotated right by 15 bits plus 0xa282ead8.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// `data` framed as one TFRecord.
pub fn tfrecord(data: &[u8]) -> Vec<u8> {
    let length = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&length);
    out.extend_from_slice(&masked_crc32c(&length).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// A histogram of `values` in 30 (`BUCKETS`) equal buckets from their lowest to their highest
/// (one bucket when they are all equal); the non-finite values are left out.
pub fn histogram(values: &[f32]) -> HistogramProto {
    let finite: Vec<f64> = values.iter().filter(|v| v.is_finite()).map(|&v| v as f64).collect();
    let (min, max) = finite.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if finite.is_empty() {
        return HistogramProto::default();
    }
    let buckets = if max > min { BUCKETS } else { 1 };
    let width = (max - min) / buckets as f64;
    let mut limits: Vec<f64> = (1..=buckets).map(|i| min + width * i as f64).collect();
    limits[buckets - 1] = max;
    let mut counts = vec![0f64; buckets];
    for &v in &finite {
        let i = if width > 0.0 { (((v - min) / width) as usize).min(buckets - 1) } else { 0 };
        counts[i] += 1.0;
    }
    HistogramProto {
        min,
        max,
        num: finite.len() as f64,
        sum: finite.iter().sum(),
        sum_squares: finite.iter().map(|v| v * v).sum(),
        bucket_limit: limits,
        bucket: counts,
    }
}

/// The width, height and channel count of a PNG.
fn png_shape(png: &[u8]) -> Result<(u32, u32, i32)> {
    let reader = png::Decoder::new(png)
        .read_info()
        .map_err(|e| ModelError::Data(format!("not a PNG image for TensorBoard: {e}")))?;
    let info = reader.info();
    Ok((info.width, info.height, info.color_type.samples() as i32))
}

/// This machine's name, for the event file's name (`localhost` when it cannot be read).
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if ok && !name.is_empty() => name.to_string(),
        _ => "localhost".to_string(),
    }
}

/// Seconds since the Unix epoch.
fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Appends events to one TensorBoard event file.
pub struct EventWriter {
    file: File,
    path: PathBuf,
}

impl EventWriter {
    /// Creates `dir` (and its parents) and in it the new file
    /// `events.out.tfevents.<seconds>.<host>` (never an existing one: see
    /// [`crate::write::create_new_file`]), starting with the file-version event.
    pub fn create(dir: &Path) -> Result<EventWriter> {
        let wall_time = now();
        let path = dir.join(format!("events.out.tfevents.{}.{}", wall_time as u64, hostname()));
        let file = crate::write::create_new_file(&path, crate::write::Place::OutsideCache)?;
        let mut writer = EventWriter { file, path };
        let first = Event { wall_time, step: 0, what: Some(What::FileVersion("brain.Event:2".into())) };
        writer.write(&first)?;
        Ok(writer)
    }

    /// The event file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `event` as one record and flushes it to the file.
    fn write(&mut self, event: &Event) -> Result<()> {
        let record = tfrecord(&event.encode_to_vec());
        self.file.write_all(&record).and_then(|_| self.file.flush()).map_err(|e| ModelError::io(&self.path, e))
    }

    /// Appends one summary value at `step`.
    fn value(&mut self, step: i64, value: Value) -> Result<()> {
        let summary = Summary { value: vec![value] };
        self.write(&Event { wall_time: now(), step, what: Some(What::Summary(summary)) })
    }

    /// A scalar `tag` at `step`.
    pub fn scalar(&mut self, tag: &str, step: i64, value: f32) -> Result<()> {
        self.value(step, Value { tag: tag.into(), metadata: None, value: Some(Kind::SimpleValue(value)) })
    }

    /// A histogram of `values` (see [`histogram`]) as `tag` at `step`.
    pub fn histogram(&mut self, tag: &str, step: i64, values: &[f32]) -> Result<()> {
        self.value(step, Value { tag: tag.into(), metadata: None, value: Some(Kind::Histo(histogram(values))) })
    }

    /// A PNG image as `tag` at `step`.
    pub fn image(&mut self, tag: &str, step: i64, png: &[u8]) -> Result<()> {
        let (width, height, colorspace) = png_shape(png)?;
        let image =
            proto::Image { height: height as i32, width: width as i32, colorspace, encoded_image_string: png.to_vec() };
        self.value(step, Value { tag: tag.into(), metadata: None, value: Some(Kind::Image(image)) })
    }

    /// A text (Markdown) summary `tag` at `step`, for TensorBoard's text plugin.
    pub fn text(&mut self, tag: &str, step: i64, text: &str) -> Result<()> {
        let tensor = proto::TensorProto {
            dtype: DT_STRING,
            tensor_shape: Some(proto::TensorShapeProto { dim: vec![proto::Dim { size: 1 }] }),
            string_val: vec![text.as_bytes().to_vec()],
        };
        let plugin = proto::PluginData { plugin_name: "text".into() };
        let metadata = Some(proto::SummaryMetadata { plugin_data: Some(plugin) });
        self.value(step, Value { tag: tag.into(), metadata, value: Some(Kind::Tensor(tensor)) })
    }
}

/// The events of an event file's bytes, checking every record's framing and CRCs.
pub fn read_events(bytes: &[u8]) -> Result<Vec<Event>> {
    let bad = |what: &str| ModelError::Data(format!("not a TensorBoard event file: {what}"));
    let mut events = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.len() < 12 {
            return Err(bad("a record header cut short"));
        }
        let (header, body) = rest.split_at(12);
        let length_bytes = &header[..8];
        let crc = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        if crc != masked_crc32c(length_bytes) {
            return Err(bad("a record length fails its CRC"));
        }
        let length = u64::from_le_bytes(length_bytes.try_into().expect("8 bytes"));
        let length = usize::try_from(length).map_err(|_| bad("a record longer than memory"))?;
        if body.len() < length.saturating_add(4) {
            return Err(bad("a record cut short"));
        }
        let (data, after) = body.split_at(length);
        let crc = u32::from_le_bytes(after[..4].try_into().expect("4 bytes"));
        if crc != masked_crc32c(data) {
            return Err(bad("a record fails its CRC"));
        }
        events.push(Event::decode(data).map_err(|e| bad(&format!("an event does not decode: {e}")))?);
        rest = &after[4..];
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_published_check_values() {
        // The CRC-32C check value (RFC 3720's Castagnoli polynomial) and RFC 3720 B.4's
        // 32 zero bytes and 32 bytes of 0xff.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c::crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        // The mask: 0xe3069283 rotated right by 15 bits is 0x2507c60d, plus 0xa282ead8.
        assert_eq!(masked_crc32c(b"123456789"), 0xc78a_b0e5);
    }

    #[test]
    fn records_frame_length_data_and_both_crcs() {
        let record = tfrecord(b"abc");
        assert_eq!(record.len(), 8 + 4 + 3 + 4);
        assert_eq!(&record[..8], &3u64.to_le_bytes());
        assert_eq!(&record[8..12], &masked_crc32c(&3u64.to_le_bytes()).to_le_bytes());
        assert_eq!(&record[12..15], b"abc");
        assert_eq!(&record[15..], &masked_crc32c(b"abc").to_le_bytes());
    }

    #[test]
    fn a_written_file_reads_back_and_a_cut_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.scalar("loss", 3, 0.25).unwrap();
        w.histogram("w", 1, &[1.0, 2.0, 2.0, 4.0]).unwrap();
        w.text("spec", 0, "conv8 pool").unwrap();
        let name = w.path().file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.starts_with("events.out.tfevents."), "{name}");
        let bytes = std::fs::read(w.path()).unwrap();
        let events = read_events(&bytes).unwrap();
        assert_eq!(events.len(), 4);
        assert_eq!(events[0].what, Some(What::FileVersion("brain.Event:2".into())));
        let Some(What::Summary(s)) = &events[1].what else { panic!("{:?}", events[1]) };
        assert_eq!(
            (events[1].step, &s.value[0].tag, &s.value[0].value),
            (3, &"loss".to_string(), &Some(Kind::SimpleValue(0.25)))
        );
        let Some(What::Summary(s)) = &events[2].what else { panic!("{:?}", events[2]) };
        let Some(Kind::Histo(h)) = &s.value[0].value else { panic!("{s:?}") };
        assert_eq!((h.min, h.max, h.num, h.sum, h.sum_squares), (1.0, 4.0, 4.0, 9.0, 25.0));
        assert_eq!(h.bucket.iter().sum::<f64>(), 4.0);
        assert_eq!((h.bucket[0], h.bucket[BUCKETS - 1], *h.bucket_limit.last().unwrap()), (1.0, 1.0, 4.0));
        assert!(read_events(&bytes[..bytes.len() - 1]).is_err());
        let mut flipped = bytes.clone();
        let last = flipped.len() - 6;
        flipped[last] ^= 1;
        assert!(read_events(&flipped).unwrap_err().to_string().contains("CRC"));
    }
}
