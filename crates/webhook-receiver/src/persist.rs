//! State on disk that survives anything (the restart budgets, the stops the agent saw): a small
//! JSON snapshot written by one writer thread, never on the async runtime's threads. Each write
//! is a unique temporary file, fsync, rename over the old file, fsync of the directory, as
//! Prometheus and etcd write their snapshots, so the file is always the old or the new whole
//! one. Writes coalesce: a burst of changes is one write of the latest state. Reading skips what
//! it cannot parse, entry by entry, with a warning: a damaged file costs at most what it held,
//! never the agent's start. A file that cannot be written is a fault the owner reports (on
//! `/healthz`), never a reason to stop: the state works in memory, the fault is found at start
//! (not at the first change) and clears with the first write that succeeds.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use serde::Serialize;
use serde_json::{Map, Value};

/// Largest state file read at start (a few hundred bytes per replica; anything near this is not ours).
const MAX_FILE: u64 = 16 << 20;

/// The writer thread of one state file, and what it shares with its owner.
pub struct Persister {
    signal: Arc<Signal>,
    written: tokio::sync::watch::Sender<u64>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Why the file cannot be written right now, if it cannot.
    fault: Arc<Mutex<Option<String>>>,
}

#[derive(Default)]
struct Signal {
    state: Mutex<WriterState>,
    wake: Condvar,
}

#[derive(Default)]
struct WriterState {
    /// Changes made so far; the writer catches up to the latest with one write.
    wanted: u64,
    stop: bool,
}

impl Persister {
    /// Starts the writer of `path`, which snapshots `state` whenever [`Persister::schedule`] is
    /// called. `what` names the file in logs ("restart budgets").
    pub fn start<T: Serialize + Send + 'static>(
        path: PathBuf,
        state: Arc<Mutex<T>>,
        what: &'static str,
    ) -> Self {
        let signal = Arc::new(Signal::default());
        let (written, _) = tokio::sync::watch::channel(0u64);
        let fault = Arc::new(Mutex::new(probe_writable(&path).err().map(|e| {
            let why = format!("cannot write the {what} file {}: {e}", path.display());
            tracing::error!("{why}; kept in memory only and retried with each change");
            why
        })));
        let thread = {
            let (signal, written, fault) = (signal.clone(), written.clone(), fault.clone());
            std::thread::Builder::new()
                .name("state-writer".into())
                .spawn(move || writer(path, state, signal, written, what, fault))
                .map_err(|e| tracing::error!(error = %e, what, "cannot start a state writer; the state stays in memory"))
                .ok()
        };
        Persister {
            signal,
            written,
            thread,
            fault,
        }
    }

    /// Why the file cannot be written right now (`None` while writes succeed).
    pub fn fault(&self) -> Option<String> {
        lock(&self.fault).clone()
    }

    /// The state changed: write it (soon, in the background).
    pub fn schedule(&self) {
        lock(&self.signal.state).wanted += 1;
        self.signal.wake.notify_one();
    }

    /// Waits until every change scheduled before this call is on disk (or its write failed and
    /// was logged).
    pub async fn flush(&self) {
        if self.thread.is_none() {
            return;
        }
        let target = lock(&self.signal.state).wanted;
        let mut rx = self.written.subscribe();
        let _ = rx.wait_for(|w| *w >= target).await;
    }
}

impl Drop for Persister {
    fn drop(&mut self) {
        lock(&self.signal.state).stop = true;
        self.signal.wake.notify_one();
        // The writer finishes the change in hand (a small file) and ends.
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A poisoned lock only means another thread panicked while holding it; the data is still whole.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn writer<T: Serialize>(
    path: PathBuf,
    state: Arc<Mutex<T>>,
    signal: Arc<Signal>,
    written: tokio::sync::watch::Sender<u64>,
    what: &'static str,
    fault: Arc<Mutex<Option<String>>>,
) {
    let mut done = 0u64;
    loop {
        let target = {
            let mut s = lock(&signal.state);
            while s.wanted == done && !s.stop {
                s = signal.wake.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            if s.wanted == done {
                return;
            }
            s.wanted
        };
        let snapshot = serde_json::to_vec(&*lock(&state));
        let result = snapshot
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_atomically(&path, &bytes));
        match result {
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, what, "could not persist state (kept in memory; retried with the next change)");
                *lock(&fault) = Some(format!(
                    "cannot write the {what} file {}: {e}",
                    path.display()
                ));
            }
            Ok(()) => {
                if lock(&fault).take().is_some() {
                    tracing::info!(path = %path.display(), what, "state file writable again");
                }
            }
        }
        done = target;
        written.send_replace(done);
    }
}

/// Whether a file can be created next to `path` (a unique temporary file, removed again).
fn probe_writable(path: &Path) -> std::io::Result<()> {
    let dir = dir_of(path).unwrap_or(Path::new("."));
    let probe = dir.join(format!(
        ".{}.probe.{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

/// A unique temporary file next to `path`, written and synced, renamed over `path`, and the
/// directory synced, so `path` is always either the old or the new whole file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = dir_of(path).unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the state path names no file"))?;
    let tmp = dir.join(format!(
        "{}.tmp.{}.{}",
        name.to_string_lossy(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            // Not every filesystem can sync a directory; the rename is done either way.
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The JSON object in `path` (blocking: call it off the async runtime), after removing the
/// temporary files a crashed writer left behind. Missing, unreadable, too large or not an
/// object: empty, with a warning (but for a missing file, which is a first start).
pub fn read_object(path: &Path, what: &'static str) -> Map<String, Value> {
    remove_stale_temporaries(path);
    let bytes = match std::fs::metadata(path) {
        Ok(m) if m.len() > MAX_FILE => {
            tracing::warn!(path = %path.display(), bytes = m.len(), what, "state file is too large to be ours; starting empty");
            return Map::new();
        }
        Ok(_) => std::fs::read(path),
        Err(e) => Err(e),
    };
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Map::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, what, "cannot read state file; starting empty");
            return Map::new();
        }
    };
    match serde_json::from_slice::<Map<String, Value>>(&bytes) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, what, "state file unreadable; starting empty");
            Map::new()
        }
    }
}

/// Temporary files a crash left behind (`<name>.tmp.*`).
fn remove_stale_temporaries(path: &Path) {
    let (Some(dir), Some(name)) = (dir_of(path), path.file_name()) else {
        return;
    };
    let prefix = format!("{}.tmp.", name.to_string_lossy());
    let Ok(list) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in list.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn dir_of(path: &Path) -> Option<&Path> {
    match path.parent() {
        Some(d) if d.as_os_str().is_empty() => Some(Path::new(".")),
        other => other,
    }
}
