//! The incident log: an append-only JSON-lines file, rotated by size, replayed at start, with the
//! newest incidents kept in memory for `GET /incidents`.
//!
//! It survives anything it can: a torn or non-UTF-8 line is skipped with a warning (never a
//! refusal to start), replay streams the files line by line and reads rotated files only as far
//! as the memory window needs, and a failed append (full disk, EIO) keeps the incident in memory,
//! counts and logs the failure, and retries the record with the next append. File I/O runs on
//! tokio's blocking pool, never on the async runtime's threads.

mod file;
mod replay;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus::IntCounter;

use super::Incident;
use file::LogFile;

/// How many incidents `/incidents` can return; older ones stay in the files.
pub const KEEP_IN_MEMORY: usize = 2000;

/// Rotation and error accounting of the log (`INCIDENT_LOG_MAX_BYTES`, `INCIDENT_LOG_KEEP`).
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Rotate when an append would take the file past this size.
    pub max_bytes: u64,
    /// Rotated files kept: `incidents.jsonl.1` (newest) to `.keep`.
    pub keep: usize,
    /// Counts appends that did not reach the disk (`healing_incident_log_errors_total{op="append"}`).
    pub write_errors: IntCounter,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            max_bytes: 10 << 20,
            keep: 3,
            write_errors: IntCounter::new("incident_log_write_errors", "unregistered")
                .expect("valid counter"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open incident log {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write incident log ({pending} incidents wait for the next append): {source}")]
    Write {
        pending: usize,
        source: std::io::Error,
    },
}

pub struct IncidentStore {
    path: Option<PathBuf>,
    recent: Mutex<VecDeque<Incident>>,
    /// Held across an append so that memory and file see incidents in the same order.
    order: tokio::sync::Mutex<()>,
    file: Option<Arc<Mutex<LogFile>>>,
    write_errors: IntCounter,
}

impl IncidentStore {
    /// Opens (creating) the log at `path` with the default rotation and replays it; `None` keeps
    /// incidents in memory only.
    pub async fn open(path: Option<PathBuf>) -> Result<Self, StoreError> {
        Self::open_with(path, LogOptions::default()).await
    }

    /// Opens the log and replays the newest [`KEEP_IN_MEMORY`] incidents from it and, when it
    /// holds fewer, from its rotated files. Unreadable lines are skipped with a warning; only a
    /// log that cannot be opened at all (permissions, not a file) is an error.
    pub async fn open_with(path: Option<PathBuf>, options: LogOptions) -> Result<Self, StoreError> {
        let (recent, file) = match &path {
            None => (VecDeque::new(), None),
            Some(p) => {
                let (p, opts) = (p.clone(), options.clone());
                let opened = tokio::task::spawn_blocking(move || open_and_replay(&p, &opts))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
                match opened {
                    Ok((recent, file)) => (recent, Some(Arc::new(Mutex::new(file)))),
                    Err(source) => {
                        let path = path.as_deref().map(|p| p.display().to_string());
                        return Err(StoreError::Open {
                            path: path.unwrap_or_default(),
                            source,
                        });
                    }
                }
            }
        };
        Ok(IncidentStore {
            path,
            recent: Mutex::new(recent),
            order: tokio::sync::Mutex::new(()),
            file,
            write_errors: options.write_errors,
        })
    }

    pub fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }

    /// Keeps the incident for `/incidents` at once, then appends it to the log (one line, synced).
    /// An error means it is not on disk yet: it stays in memory, is counted and logged, and is
    /// written with the next append that succeeds. The caller needs to do nothing about it.
    pub async fn append(&self, incident: Incident) -> Result<(), StoreError> {
        let _order = self.order.lock().await;
        let line = serde_json::to_vec(&incident);
        let id = incident.id.clone();
        {
            let mut recent = lock(&self.recent);
            recent.push_back(incident);
            if recent.len() > KEEP_IN_MEMORY {
                recent.pop_front();
            }
        }
        let Some(file) = &self.file else {
            return Ok(());
        };
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                // Not reachable with the record's types; counted rather than trusted.
                self.write_errors.inc();
                tracing::error!(incident = %id, error = %e, "cannot serialise the incident; kept in memory only");
                return Ok(());
            }
        };
        let file = file.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut log = lock(&file);
            let result = log.append(line);
            (result, log.pending())
        })
        .await;
        let (result, pending) = match result {
            Ok(r) => r,
            Err(e) => (Err(std::io::Error::other(e.to_string())), 0),
        };
        match result {
            Ok(done) => {
                if done.caught_up > 0 {
                    tracing::info!(
                        written = done.caught_up,
                        "incident log writable again: earlier incidents written"
                    );
                }
                if done.dropped > 0 {
                    self.write_errors.inc_by(done.dropped);
                    tracing::error!(dropped = done.dropped, "incident log backlog was full: the oldest unwritten incidents are in memory only");
                }
                Ok(())
            }
            Err(source) => {
                self.write_errors.inc();
                tracing::error!(incident = %id, pending, error = %source, "cannot write the incident log; the incident is kept in memory and written with the next append");
                Err(StoreError::Write { pending, source })
            }
        }
    }

    /// Newest first.
    pub fn recent(&self, limit: usize) -> Vec<Incident> {
        lock(&self.recent)
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }

    /// Incidents held in memory (at most [`KEEP_IN_MEMORY`]).
    pub fn len(&self) -> usize {
        lock(&self.recent).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends that did not reach the disk since start.
    pub fn write_errors(&self) -> u64 {
        self.write_errors.get()
    }
}

/// A poisoned lock only means another thread panicked while holding it; the data is still whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn open_and_replay(
    path: &std::path::Path,
    options: &LogOptions,
) -> std::io::Result<(VecDeque<Incident>, LogFile)> {
    let log = LogFile::open(path, options.max_bytes, options.keep)?;
    let mut recent = VecDeque::new();
    // The current file, then older ones only as far as the memory window still has room.
    let files = std::iter::once(path.to_path_buf())
        .chain((1..=options.keep).map(|n| file::rotated(path, n)));
    for file in files {
        if recent.len() >= KEEP_IN_MEMORY {
            break;
        }
        match replay::replay(&file, KEEP_IN_MEMORY - recent.len()) {
            Ok(r) => {
                for incident in r.incidents.into_iter().rev() {
                    recent.push_front(incident);
                }
            }
            // Whatever the disk does, the agent starts: it heals first and records what it can.
            Err(e) => {
                tracing::warn!(path = %file.display(), error = %e, "cannot read an incident log file; skipped");
            }
        }
    }
    tracing::info!(path = %path.display(), incidents = recent.len(), "incident log replayed");
    Ok((recent, log))
}

#[cfg(test)]
mod tests;
