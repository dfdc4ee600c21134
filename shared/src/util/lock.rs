//! A directory claimed by one process at a time: an advisory `flock` on a
//! file in it, holding who took it (pid, host, time). A second process is
//! refused with the holder's name; the kernel drops the lock when its holder
//! dies, so a killed process never leaves it stuck. The file stays behind
//! (deleting it would let two processes lock two different files).

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Held while the value lives.
pub struct DirLock {
    _file: File,
}

/// `pid 123 on host h since 2026-12-07T10:00:00Z`: who holds a lock.
fn holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into());
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "pid {} on host {host}, since {}",
        std::process::id(),
        utc(secs)
    )
}

/// `YYYY-MM-DD HH:MM:SS UTC` of a Unix time (the proleptic Gregorian
/// calendar, by days since 1970: H. Hinnant's `civil_from_days`).
fn utc(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl DirLock {
    /// Takes `dir/name`, or fails naming the process that holds it; `what`
    /// says what the holder is doing ("a trainer is running").
    pub fn acquire(dir: &Path, name: &str, what: &str) -> Result<Self> {
        let path: PathBuf = dir.join(name);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {
                let io = |e| Error::io(&path, e);
                file.set_len(0).map_err(io)?;
                file.rewind().map_err(io)?;
                writeln!(file, "{}", holder()).map_err(io)?;
                file.flush().map_err(io)?;
                Ok(DirLock { _file: file })
            }
            Err(TryLockError::WouldBlock) => {
                let mut who = String::new();
                let _ = file.read_to_string(&mut who);
                let who = who.trim();
                let who = if who.is_empty() {
                    "another process"
                } else {
                    who
                };
                Err(Error::Invalid(format!(
                    "{what} in {} ({who}; lock {}): wait for it to finish or stop it; a killed process releases the lock",
                    dir.display(),
                    path.display()
                )))
            }
            Err(TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_642_103), "2026-12-07 11:15:03 UTC");
    }

    #[test]
    fn a_second_holder_is_refused_by_name_and_a_released_lock_is_free() {
        let dir = std::env::temp_dir().join(format!("rho1-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = DirLock::acquire(&dir, ".lock", "a job is running").unwrap();
        // flock locks belong to the open file: a second open in this process
        // conflicts as another process's would.
        let err = DirLock::acquire(&dir, ".lock", "a job is running")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("a job is running in"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        DirLock::acquire(&dir, ".lock", "a job is running").unwrap();
    }
}
