//! The memory budget: statements whose memory grows with a number the user typed check the
//! size against it before allocating, and file readers refuse files larger than it.
//!
//! The budget is one value per process (sessions in one process share it). It starts as
//! `MNISTLAB_MEMORY` when set (`4G`, `512M`, a byte count), else three quarters of the
//! memory the machine has available; the `memory SIZE` statement changes it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that sets the budget at start (`4G`, `512M`, `1.5GB`, bytes).
pub const MEMORY_VAR: &str = "MNISTLAB_MEMORY";
/// The smallest budget that can be set: 16 MiB.
pub const MIN_BUDGET: u64 = 16 << 20;
/// The budget when the machine's available memory cannot be read: 2 GiB.
const FALLBACK_BUDGET: u64 = 2 << 30;

/// 0 until the budget is first asked for or set.
static BUDGET: AtomicU64 = AtomicU64::new(0);

/// Something too large for the budget, or a file that cannot be read within it.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// An operation would need more memory than the budget allows.
    #[error("{what} would need {}, more than the memory budget of {} (set a larger one with `memory SIZE` or {MEMORY_VAR}, if the machine has it)", bytes(*need), bytes(*limit))]
    TooLarge {
        /// What would be allocated, naming the number the user typed.
        what: String,
        /// Bytes it would need.
        need: u64,
        /// The budget in bytes.
        limit: u64,
    },
    /// A file is larger than the budget.
    #[error("{}: the file holds {}, more than the memory budget of {} (`memory SIZE` or {MEMORY_VAR} sets it)", path.display(), bytes(*size), bytes(*limit))]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The budget in bytes.
        limit: u64,
    },
    /// The path is a FIFO, a device or a socket: such inputs can be endless or block forever.
    #[error("{}: is a {kind}, not a regular file; mnistlab reads only regular files", path.display())]
    NotRegular {
        /// The path.
        path: PathBuf,
        /// What it is instead ([`crate::write::file_kind`]: `FIFO`, `character device`, ...).
        kind: &'static str,
    },
    /// A folder where a file was expected.
    #[error("{}: is a folder, not a file", path.display())]
    IsDir {
        /// The path.
        path: PathBuf,
    },
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A text file (a script) that is not UTF-8.
    #[error("{}: not UTF-8 text: invalid byte 0x{byte:02x} at byte offset {offset} (line {line})", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Offset of the first invalid byte.
        offset: usize,
        /// The byte there.
        byte: u8,
        /// Its 1-based line.
        line: usize,
    },
}

/// Bytes as a short human size: `1.5 GiB`, `512 MiB`, `640 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else if value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Parses a size: a byte count, or a number with K, M, G or T (powers of 1024; `B`, `iB` may follow).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let t = t.strip_suffix("iB").or_else(|| t.strip_suffix('B')).unwrap_or(t);
    let (number, shift) = match t.chars().last()? {
        'k' | 'K' => (&t[..t.len() - 1], 10),
        'm' | 'M' => (&t[..t.len() - 1], 20),
        'g' | 'G' => (&t[..t.len() - 1], 30),
        't' | 'T' => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let value: f64 = number.trim().parse().ok()?;
    let size = value * (1u64 << shift) as f64;
    (value.is_finite() && value >= 0.0 && size < u64::MAX as f64).then_some(size as u64)
}

/// A field of /proc/meminfo in bytes (`MemAvailable`, `MemTotal`), if it can be read.
fn meminfo(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.split(':').next() == Some(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The machine's available memory (`MemAvailable` of /proc/meminfo), if it can be read.
pub fn available_memory() -> Option<u64> {
    meminfo("MemAvailable")
}

/// The machine's memory (`MemTotal` of /proc/meminfo), if it can be read.
pub fn total_memory() -> Option<u64> {
    meminfo("MemTotal")
}

/// The default budget: `MNISTLAB_MEMORY` when set and valid (at most the machine's memory),
/// else ¾ of the available memory.
pub fn default_budget() -> u64 {
    if let Some(size) = std::env::var(MEMORY_VAR).ok().and_then(|v| parse_size(&v)) {
        return size.min(total_memory().unwrap_or(u64::MAX)).max(MIN_BUDGET);
    }
    available_memory().map_or(FALLBACK_BUDGET, |a| (a / 4 * 3).max(MIN_BUDGET))
}

/// The budget in bytes now.
pub fn limit() -> u64 {
    match BUDGET.load(Ordering::Relaxed) {
        0 => {
            let budget = default_budget();
            let _ = BUDGET.compare_exchange(0, budget, Ordering::Relaxed, Ordering::Relaxed);
            BUDGET.load(Ordering::Relaxed)
        }
        b => b,
    }
}

/// Sets the budget (at least [`MIN_BUDGET`]); returns the value set.
pub fn set_limit(bytes: u64) -> u64 {
    let bytes = bytes.max(MIN_BUDGET);
    BUDGET.store(bytes, Ordering::Relaxed);
    bytes
}

/// Refuses `need` bytes above the budget, naming `what` (say `dense1000000 after 784 inputs`).
pub fn check(what: impl FnOnce() -> String, need: u64) -> Result<(), BudgetError> {
    let limit = limit();
    if need > limit {
        return Err(BudgetError::TooLarge { what: what(), need, limit });
    }
    Ok(())
}

/// `a × b × …` in bytes, saturating (a size too large to count is too large for any budget).
pub fn product(factors: &[u64]) -> u64 {
    factors.iter().fold(1u64, |acc, &f| acc.saturating_mul(f))
}

/// Checks that `path` is a regular file no larger than `limit` bytes; returns its size.
pub fn check_file(path: &Path, limit: u64) -> Result<u64, BudgetError> {
    let meta = std::fs::metadata(path).map_err(|source| BudgetError::Io { path: path.into(), source })?;
    let ft = meta.file_type();
    if ft.is_dir() {
        return Err(BudgetError::IsDir { path: path.into() });
    }
    if !ft.is_file() {
        return Err(BudgetError::NotRegular { path: path.into(), kind: crate::write::file_kind(ft) });
    }
    if meta.len() > limit {
        return Err(BudgetError::FileTooLarge { path: path.into(), size: meta.len(), limit });
    }
    Ok(meta.len())
}

/// Reads a whole regular file of at most the budget's size (a file that grows while it is read
/// stops at that size too).
pub fn read_file(path: &Path) -> Result<Vec<u8>, BudgetError> {
    let limit = limit();
    let size = check_file(path, limit)?;
    let io = |source| BudgetError::Io { path: path.into(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut data = Vec::with_capacity(size as usize);
    file.take(limit.saturating_add(1)).read_to_end(&mut data).map_err(io)?;
    if data.len() as u64 > limit {
        return Err(BudgetError::FileTooLarge { path: path.into(), size: data.len() as u64, limit });
    }
    Ok(data)
}

/// Reads a UTF-8 text file (a script) within the budget; invalid UTF-8 is an error naming the
/// byte offset and line.
pub fn read_text(path: &Path) -> Result<String, BudgetError> {
    let data = read_file(path)?;
    String::from_utf8(data).map_err(|e| {
        let bytes = e.as_bytes();
        let offset = e.utf8_error().valid_up_to();
        let line = bytes[..offset].iter().filter(|&&b| b == b'\n').count() + 1;
        BudgetError::NotUtf8 { path: path.into(), offset, byte: bytes[offset], line }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_reports_its_memory() {
        let (total, available) = (total_memory().unwrap(), available_memory().unwrap());
        assert!(available > 0 && available <= total, "{available} of {total}");
    }

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("4G"), Some(4 << 30));
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("1.5GB"), Some(3 << 29));
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("-1G"), None);
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("1e30T"), None);
        assert_eq!(bytes(640), "640 B");
        assert_eq!(bytes(3 << 29), "1.5 GiB");
        assert_eq!(bytes(u64::MAX), "16384 PiB");
    }

    #[test]
    fn special_files_are_refused_without_blocking() {
        let err = read_file(Path::new("/dev/zero")).unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let err = read_file(&fifo).unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");
        let err = read_file(dir.path()).unwrap_err();
        assert!(err.to_string().contains("is a folder"), "{err}");
    }

    #[test]
    fn invalid_utf8_names_offset_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.lab");
        std::fs::write(&path, b"info\nprint \"a\xff\"\n").unwrap();
        let err = read_text(&path).unwrap_err().to_string();
        assert!(err.contains("0xff at byte offset 13 (line 2)"), "{err}");
    }

    #[test]
    fn check_names_the_need_and_the_limit() {
        let err = check(|| "dense1000000".into(), u64::MAX).unwrap_err().to_string();
        assert!(err.starts_with("dense1000000 would need"), "{err}");
        assert!(err.contains("memory budget of"), "{err}");
        assert!(check(|| unreachable!(), 1).is_ok());
    }
}
