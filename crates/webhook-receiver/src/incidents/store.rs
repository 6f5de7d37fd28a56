//! The incident log: an append-only JSON-lines file, rotated by size, replayed at start, with the
//! newest incidents kept in memory for `GET /incidents`.
//!
//! It survives anything it can: a torn or non-UTF-8 line is skipped with a warning (never a
//! refusal to start), replay streams the files line by line and reads rotated files only as far
//! as the memory window needs, and a failed append (full disk, EIO) keeps the incident in memory,
//! counts and logs the failure, and retries the record with the next append. File I/O runs on
//! tokio's blocking pool, never on the async runtime's threads.
//!
//! In memory each incident is kept as its JSON line (shared, immutable): `/incidents` copies
//! pointers under the lock and joins the lines, serialising and cloning nothing. Records of
//! alerts about other services (noise that anyone can send) have a room of their own
//! ([`KEEP_NOISE`]) and never push real incidents out.

mod file;
mod replay;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use prometheus::IntCounter;

use super::Incident;
use file::LogFile;

/// How many incidents `/incidents` can return; older ones stay in the files.
pub const KEEP_IN_MEMORY: usize = 2000;
/// Of those, at most this many out-of-scope alert records (the oldest go first).
pub const KEEP_NOISE: usize = 100;

/// One incident as kept in memory: its JSON line, and whether it is only noise.
#[derive(Clone)]
struct Kept {
    id: String,
    json: Arc<[u8]>,
    noise: bool,
}

impl Kept {
    fn of(incident: &Incident) -> Option<Self> {
        let json = serde_json::to_vec(incident).ok()?;
        Some(Kept {
            id: incident.id.clone(),
            json: json.into(),
            noise: is_noise(incident),
        })
    }
}

/// An alert about something else, recorded so its sender knows: not a real incident.
fn is_noise(i: &Incident) -> bool {
    i.class == super::FailureClass::OutOfScope
        && i.outcome == super::Outcome::NoAction
        && i.escalation.is_none()
}

/// Adds `k` to the memory window: noise past its own room drops the oldest noise, anything past
/// the window drops the oldest record.
fn keep(recent: &mut VecDeque<Kept>, k: Kept) {
    if k.noise && recent.iter().filter(|x| x.noise).count() >= KEEP_NOISE {
        if let Some(i) = recent.iter().position(|x| x.noise) {
            recent.remove(i);
        }
    }
    recent.push_back(k);
    if recent.len() > KEEP_IN_MEMORY {
        recent.pop_front();
    }
}

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
    recent: Mutex<VecDeque<Kept>>,
    /// Held across an append so that memory and file see incidents in the same order.
    order: tokio::sync::Mutex<()>,
    /// Set at start, or later by an append once a log that could not be opened can be.
    file: OnceLock<Arc<Mutex<LogFile>>>,
    /// Rotation settings, for a log opened late.
    options: LogOptions,
    write_errors: IntCounter,
    /// Why incidents are not reaching the disk right now (for `/healthz`); cleared by the next
    /// append that succeeds.
    fault: Mutex<Option<String>>,
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
        let cell = OnceLock::new();
        if let Some(f) = file {
            let _ = cell.set(f);
        }
        Ok(IncidentStore {
            path,
            recent: Mutex::new(recent),
            order: tokio::sync::Mutex::new(()),
            file: cell,
            write_errors: options.write_errors.clone(),
            options,
            fault: Mutex::new(None),
        })
    }

    /// [`IncidentStore::open_with`], but a log that cannot be opened (a read-only or missing
    /// directory, a path the user cannot write) is a fault, not a reason to stop healing: it is
    /// logged loudly, reported by [`IncidentStore::fault`], incidents are kept in memory (and
    /// served by `/incidents`), and every append tries the file again, writing what it missed.
    pub async fn open_or_degrade(path: Option<PathBuf>, options: LogOptions) -> Self {
        match Self::open_with(path.clone(), options.clone()).await {
            Ok(store) => store,
            Err(e) => {
                tracing::error!(error = %e, "THE INCIDENT LOG CANNOT BE WRITTEN: incidents are kept in memory only (GET /incidents) and the agent keeps healing; fix the path or its permissions (INCIDENT_LOG)");
                options.write_errors.inc();
                IncidentStore {
                    path,
                    recent: Mutex::new(VecDeque::new()),
                    order: tokio::sync::Mutex::new(()),
                    file: OnceLock::new(),
                    write_errors: options.write_errors.clone(),
                    options,
                    fault: Mutex::new(Some(e.to_string())),
                }
            }
        }
    }

    /// Why incidents are not on disk right now, if they are not.
    pub fn fault(&self) -> Option<String> {
        lock(&self.fault).clone()
    }

    /// The log file, opening it now if it could not be opened before (with the incidents it
    /// missed, which are exactly those in memory: nothing was replayed). `None`: memory only.
    async fn file(&self, current: &str) -> Result<Option<Arc<Mutex<LogFile>>>, StoreError> {
        if let Some(f) = self.file.get() {
            return Ok(Some(f.clone()));
        }
        let Some(path) = self.path.clone() else {
            return Ok(None);
        };
        let missed: Vec<Vec<u8>> = lock(&self.recent)
            .iter()
            .filter(|k| k.id != current)
            .map(|k| k.json.to_vec())
            .collect();
        let opts = self.options.clone();
        let opened = tokio::task::spawn_blocking(move || {
            let mut log = LogFile::open(&path, opts.max_bytes, opts.keep)?;
            for line in missed {
                log.append(line)?;
            }
            Ok::<_, std::io::Error>(log)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        match opened {
            Ok(log) => {
                tracing::info!(path = ?self.path, "incident log writable again: the incidents kept in memory are written");
                Ok(Some(
                    self.file.get_or_init(|| Arc::new(Mutex::new(log))).clone(),
                ))
            }
            Err(source) => Err(StoreError::Open {
                path: self
                    .path
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                source,
            }),
        }
    }

    pub fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }

    /// Keeps the incident for `/incidents` at once, then appends it to the log (one line, synced).
    /// An error means it is not on disk yet: it stays in memory, is counted and logged, and is
    /// written with the next append that succeeds. The caller needs to do nothing about it.
    pub async fn append(&self, incident: Incident) -> Result<(), StoreError> {
        let _order = self.order.lock().await;
        let id = incident.id.clone();
        let Some(kept) = Kept::of(&incident) else {
            // Not reachable with the record's types; counted rather than trusted.
            self.write_errors.inc();
            tracing::error!(incident = %id, "cannot serialise the incident; not kept");
            return Ok(());
        };
        let line = kept.json.to_vec();
        keep(&mut lock(&self.recent), kept);
        let file = match self.file(&id).await {
            Ok(Some(file)) => file,
            Ok(None) => return Ok(()),
            Err(e) => {
                self.write_errors.inc();
                tracing::error!(incident = %id, error = %e, "the incident log still cannot be written; the incident is kept in memory");
                *lock(&self.fault) = Some(e.to_string());
                return Err(e);
            }
        };
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
                *lock(&self.fault) = None;
                Ok(())
            }
            Err(source) => {
                self.write_errors.inc();
                tracing::error!(incident = %id, pending, error = %source, "cannot write the incident log; the incident is kept in memory and written with the next append");
                let e = StoreError::Write { pending, source };
                *lock(&self.fault) = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// The newest `limit` incidents' JSON lines, newest first (pointers copied under the lock).
    fn newest(&self, limit: usize) -> Vec<Arc<[u8]>> {
        lock(&self.recent)
            .iter()
            .rev()
            .take(limit)
            .map(|k| k.json.clone())
            .collect()
    }

    /// Newest first, as a JSON array (what `/incidents` serves).
    pub fn recent_json(&self, limit: usize) -> Vec<u8> {
        let lines = self.newest(limit);
        let mut out = Vec::with_capacity(2 + lines.iter().map(|l| l.len() + 1).sum::<usize>());
        out.push(b'[');
        for (i, l) in lines.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(l);
        }
        out.push(b']');
        out
    }

    /// Newest first, parsed again (tests and pages; `/incidents` uses [`Self::recent_json`]).
    pub fn recent(&self, limit: usize) -> Vec<Incident> {
        self.newest(limit)
            .iter()
            .filter_map(|l| serde_json::from_slice(l).ok())
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
) -> std::io::Result<(VecDeque<Kept>, LogFile)> {
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
    let mut kept = VecDeque::with_capacity(recent.len());
    for i in recent {
        if let Some(k) = Kept::of(&i) {
            keep(&mut kept, k);
        }
    }
    Ok((kept, log))
}

#[cfg(test)]
mod tests;
