//! Helpers shared by the benches.
#![allow(dead_code)]

/// CPU seconds (user + system, all threads) this process has used, from /proc/self/stat.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ').skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // Linux reports these in clock ticks of 1/100 s.
    Some((utime + stime) / 100.0)
}

/// Images per second of wall time and per CPU-second.
#[derive(Clone, Copy, Default)]
pub struct Rate {
    /// Images per second of wall time.
    pub wall: f64,
    /// Images per CPU-second (all threads).
    pub cpu: f64,
}

impl Rate {
    /// The better of two rates, field by field.
    pub fn best(self, other: Rate) -> Rate {
        Rate { wall: self.wall.max(other.wall), cpu: self.cpu.max(other.cpu) }
    }
}

/// Peak resident memory in kB of process `pid` (`self` for this one), from /proc.
pub fn vm_hwm_kb(pid: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
