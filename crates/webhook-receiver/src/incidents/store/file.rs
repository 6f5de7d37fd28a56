//! The incident log file itself (blocking I/O: the store calls it from `spawn_blocking`).
//!
//! Appends can never merge two records: each record is one `write` of the whole line, and when the
//! file does not end in `\n` (a torn write before a crash, a short write on a full disk that could
//! not be cut back) the next record starts with one. Records that could not be written (full disk,
//! EIO) wait in a bounded backlog and go out, in order, with the next append that succeeds.
//! Rotation by size keeps `keep` older files: `incidents.jsonl.1` (newest) ... `.keep`.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Records kept for a later retry when the disk refuses them; past this the oldest is dropped.
const MAX_BACKLOG: usize = 1000;

pub(super) struct LogFile {
    path: PathBuf,
    /// `None` after the file could not be reopened (rotation); reopened on the next append.
    file: Option<File>,
    size: u64,
    /// The file does not end in `\n`: the next record starts with one.
    needs_newline: bool,
    max_bytes: u64,
    keep: usize,
    backlog: VecDeque<Vec<u8>>,
    /// Records dropped from a full backlog since the last report.
    dropped: u64,
}

/// What an append did.
#[derive(Debug)]
pub(super) struct Appended {
    /// Records of the backlog written before this one.
    pub caught_up: usize,
    /// Records dropped because the backlog was full (they stay in memory only).
    pub dropped: u64,
}

impl LogFile {
    /// Opens (creating) the log for appending and finds out whether it ends in a newline.
    pub(super) fn open(path: &Path, max_bytes: u64, keep: usize) -> io::Result<LogFile> {
        if let Some(dir) = parent(path) {
            std::fs::create_dir_all(dir)?;
        }
        let mut log = LogFile {
            path: path.to_path_buf(),
            file: None,
            size: 0,
            needs_newline: false,
            max_bytes,
            keep,
            backlog: VecDeque::new(),
            dropped: 0,
        };
        log.reopen()?;
        Ok(log)
    }

    pub(super) fn pending(&self) -> usize {
        self.backlog.len()
    }

    /// Writes the backlog, then `record` (one JSON line without its newline). On failure the
    /// record joins the backlog and the error is returned; nothing already written is touched.
    pub(super) fn append(&mut self, record: Vec<u8>) -> io::Result<Appended> {
        self.backlog.push_back(record);
        let mut dropped = 0;
        while self.backlog.len() > MAX_BACKLOG {
            self.backlog.pop_front();
            self.dropped += 1;
        }
        dropped += std::mem::take(&mut self.dropped);
        let mut written = 0;
        while let Some(len) = self.backlog.front().map(|r| r.len() as u64 + 1) {
            if self.size > 0 && self.size.saturating_add(len) > self.max_bytes {
                if let Err(e) = self.rotate() {
                    tracing::error!(path = %self.path.display(), error = %e, "cannot rotate the incident log; appending to it as it is");
                    if self.file.is_none() {
                        self.reopen()?;
                    }
                }
            }
            let next = self.backlog.front().map(Vec::as_slice).unwrap_or_default();
            let mut line = Vec::with_capacity(next.len() + 2);
            if self.needs_newline {
                line.push(b'\n');
            }
            line.extend_from_slice(next);
            line.push(b'\n');
            self.write_line(&line)?;
            self.backlog.pop_front();
            written += 1;
        }
        Ok(Appended {
            caught_up: written - 1,
            dropped,
        })
    }

    /// One `write` of the whole line, then `fdatasync`. A short or failed write is cut back off
    /// the file so that what is there stays whole lines; if that fails too, the next line starts
    /// on a fresh one.
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            self.reopen()?;
        }
        let before = self.size;
        let file = self.file.as_mut().expect("reopened above");
        let result = match file.write(line) {
            Ok(n) if n == line.len() => file.sync_data(),
            Ok(n) => Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write: {n} of {} bytes (disk full?)", line.len()),
            )),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                self.size = before + line.len() as u64;
                self.needs_newline = false;
                Ok(())
            }
            Err(e) => {
                // Whatever reached the file of this line is cut off again.
                if file.set_len(before).is_ok() && file.sync_data().is_ok() {
                    self.size = before;
                } else {
                    self.needs_newline = true;
                    self.size = file.metadata().map(|m| m.len()).unwrap_or(before);
                }
                Err(e)
            }
        }
    }

    /// `incidents.jsonl` -> `.1` -> `.2` ... -> `.keep` (dropped past it), then a fresh file.
    fn rotate(&mut self) -> io::Result<()> {
        if let Some(f) = self.file.take() {
            f.sync_all()?;
        }
        if self.keep == 0 {
            remove_if_present(&self.path)?;
        } else {
            remove_if_present(&rotated(&self.path, self.keep))?;
            for n in (1..self.keep).rev() {
                rename_if_present(&rotated(&self.path, n), &rotated(&self.path, n + 1))?;
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        self.reopen()?;
        tracing::info!(path = %self.path.display(), keep = self.keep, "incident log rotated");
        Ok(())
    }

    fn reopen(&mut self) -> io::Result<()> {
        let existed = self.path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.path)?;
        let size = file.metadata()?.len();
        self.needs_newline = size > 0 && last_byte(&mut file)? != b'\n';
        self.size = size;
        self.file = Some(file);
        if !existed {
            sync_dir(&self.path);
        }
        Ok(())
    }
}

/// `incidents.jsonl.N`.
pub(super) fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn parent(path: &Path) -> Option<&Path> {
    path.parent().filter(|d| !d.as_os_str().is_empty())
}

fn last_byte(file: &mut File) -> io::Result<u8> {
    file.seek(SeekFrom::End(-1))?;
    let mut b = [0u8; 1];
    file.read_exact(&mut b)?;
    Ok(b[0])
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_present(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Makes a created or renamed entry durable (best effort: not every filesystem allows it).
fn sync_dir(path: &Path) {
    let dir = parent(path).unwrap_or(Path::new("."));
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}
