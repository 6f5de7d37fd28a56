//! The incident log: an append-only JSON-lines file, replayed at start, with the newest incidents
//! kept in memory for `GET /incidents`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;

use tokio::io::AsyncWriteExt;

use super::Incident;

/// How many incidents `/incidents` can return; older ones stay in the file.
const KEEP_IN_MEMORY: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open incident log {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write incident log: {0}")]
    Write(#[from] std::io::Error),
}

pub struct IncidentStore {
    path: Option<PathBuf>,
    recent: Mutex<VecDeque<Incident>>,
    file: tokio::sync::Mutex<Option<tokio::fs::File>>,
}

impl IncidentStore {
    /// Opens (creating) the log at `path` and replays it; `None` keeps incidents in memory only.
    /// Lines that do not parse (e.g. a torn last write) are skipped with a warning, never fatal.
    pub async fn open(path: Option<PathBuf>) -> Result<Self, StoreError> {
        let mut recent = VecDeque::new();
        let mut file = None;
        if let Some(p) = &path {
            let open_err = |source| StoreError::Open {
                path: p.display().to_string(),
                source,
            };
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                tokio::fs::create_dir_all(dir).await.map_err(open_err)?;
            }
            match tokio::fs::read_to_string(p).await {
                Ok(text) => {
                    for (n, line) in text
                        .lines()
                        .enumerate()
                        .filter(|(_, l)| !l.trim().is_empty())
                    {
                        match serde_json::from_str::<Incident>(line) {
                            Ok(i) => {
                                recent.push_back(i);
                                if recent.len() > KEEP_IN_MEMORY {
                                    recent.pop_front();
                                }
                            }
                            Err(e) => {
                                tracing::warn!(line = n + 1, error = %e, "skipping unreadable incident log line")
                            }
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(open_err(e)),
            }
            let f = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .await
                .map_err(open_err)?;
            file = Some(f);
        }
        Ok(IncidentStore {
            path,
            recent: Mutex::new(recent),
            file: tokio::sync::Mutex::new(file),
        })
    }

    pub fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }

    /// Appends one incident (one line, flushed and synced) and keeps it for `/incidents`.
    pub async fn append(&self, incident: Incident) -> Result<(), StoreError> {
        let mut line = serde_json::to_vec(&incident).expect("incident serialises");
        line.push(b'\n');
        {
            let mut recent = self.recent.lock().expect("incident lock");
            recent.push_back(incident);
            if recent.len() > KEEP_IN_MEMORY {
                recent.pop_front();
            }
        }
        let mut file = self.file.lock().await;
        if let Some(f) = file.as_mut() {
            f.write_all(&line).await?;
            f.sync_data().await?;
        }
        Ok(())
    }

    /// Newest first.
    pub fn recent(&self, limit: usize) -> Vec<Incident> {
        let recent = self.recent.lock().expect("incident lock");
        recent.iter().rev().take(limit).cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.recent.lock().expect("incident lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(id: &str) -> Incident {
        Incident::sample(id)
    }

    #[tokio::test]
    async fn incidents_survive_a_restart_and_torn_lines_are_skipped() {
        let dir = std::env::temp_dir().join(format!("incidents-test-{}", std::process::id()));
        let path = dir.join("sub/incidents.jsonl");
        let _ = std::fs::remove_dir_all(&dir);
        {
            let store = IncidentStore::open(Some(path.clone())).await.unwrap();
            store.append(incident("a")).await.unwrap();
            store.append(incident("b")).await.unwrap();
        }
        // A torn write at the end must not lose what came before it.
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"id\": \"torn");
        std::fs::write(&path, text + "\n").unwrap();
        let store = IncidentStore::open(Some(path.clone())).await.unwrap();
        let ids: Vec<_> = store.recent(10).into_iter().map(|i| i.id).collect();
        assert_eq!(ids, ["b", "a"]);
        store.append(incident("c")).await.unwrap();
        assert_eq!(store.recent(1)[0].id, "c");
        std::fs::remove_dir_all(dir).ok();
    }
}
