use std::path::{Path, PathBuf};

use chrono::Utc;

use super::*;

use crate::incidents::sample_incident as incident;

fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "incidents-{tag}-{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ids(store: &IncidentStore) -> Vec<String> {
    let mut ids: Vec<String> = store.recent(usize::MAX).into_iter().map(|i| i.id).collect();
    ids.reverse();
    ids
}

/// Every non-empty line of `path` is one whole record.
fn file_ids(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice::<Incident>(l)
                .unwrap_or_else(|e| {
                    panic!(
                        "{}: a line is not one record ({e}): {}",
                        path.display(),
                        String::from_utf8_lossy(l)
                    )
                })
                .id
        })
        .collect()
}

fn options(max_bytes: u64, keep: usize) -> LogOptions {
    LogOptions {
        max_bytes,
        keep,
        ..LogOptions::default()
    }
}

#[tokio::test]
async fn a_torn_tail_is_skipped_and_never_glued_to_the_next_record() {
    let dir = tempdir("torn");
    let path = dir.join("sub/incidents.jsonl");
    {
        let store = IncidentStore::open(Some(path.clone())).await.unwrap();
        store.append(incident("a")).await.unwrap();
        store.append(incident("b")).await.unwrap();
    }
    // A crash in the middle of a write: half a record, no newline.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"id\": \"torn\", \"serv").unwrap();
    drop(f);

    let store = IncidentStore::open(Some(path.clone())).await.unwrap();
    assert_eq!(ids(&store), ["a", "b"]);
    store.append(incident("c")).await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("\"serv\n{\"id\":\"c\""),
        "the next record starts on a line of its own: {text}"
    );
    let store = IncidentStore::open(Some(path)).await.unwrap();
    assert_eq!(ids(&store), ["a", "b", "c"]);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn invalid_utf8_and_garbage_lines_are_skipped_not_fatal() {
    let dir = tempdir("utf8");
    let path = dir.join("incidents.jsonl");
    let a = serde_json::to_vec(&incident("a")).unwrap();
    let b = serde_json::to_vec(&incident("b")).unwrap();
    let mut bytes = a.clone();
    bytes.extend_from_slice(b"\n\xff\xfe\x00garbage\n");
    // Valid JSON shape with an invalid UTF-8 byte inside a string.
    let mut bad = serde_json::to_vec(&incident("x")).unwrap();
    let pos = bad.windows(3).position(|w| w == b"\"x\"").unwrap() + 1;
    bad[pos] = 0xff;
    bytes.extend_from_slice(&bad);
    bytes.extend_from_slice(b"\n   \n[1,2,3]\n");
    bytes.extend_from_slice(&b);
    bytes.push(b'\n');
    std::fs::write(&path, &bytes).unwrap();

    let store = IncidentStore::open(Some(path.clone())).await.unwrap();
    assert_eq!(ids(&store), ["a", "b"]);
    store.append(incident("c")).await.unwrap();
    assert_eq!(
        ids(&IncidentStore::open(Some(path)).await.unwrap()),
        ["a", "b", "c"]
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn the_log_rotates_by_size_and_keeps_n_files() {
    let dir = tempdir("rotate");
    let path = dir.join("incidents.jsonl");
    let one = serde_json::to_vec(&incident("i00")).unwrap().len() as u64 + 1;
    // Three records per file.
    let store = IncidentStore::open_with(Some(path.clone()), options(one * 3, 2))
        .await
        .unwrap();
    let all: Vec<String> = (0..20).map(|n| format!("i{n:02}")).collect();
    for id in &all {
        store.append(incident(id)).await.unwrap();
    }
    let current = file_ids(&path);
    let first = file_ids(&file::rotated(&path, 1));
    let second = file_ids(&file::rotated(&path, 2));
    assert!(
        !file::rotated(&path, 3).exists(),
        "only 2 rotated files kept"
    );
    for p in [
        path.clone(),
        file::rotated(&path, 1),
        file::rotated(&path, 2),
    ] {
        let len = std::fs::metadata(&p).unwrap().len();
        assert!(len <= one * 3, "{} is {len} bytes", p.display());
    }
    let on_disk: Vec<String> = [second, first, current].concat();
    assert_eq!(
        on_disk,
        all[all.len() - on_disk.len()..],
        "newest, in order"
    );
    assert!(on_disk.len() >= 7, "{on_disk:?}");

    // Replay reads the rotated files too, oldest first.
    let reopened = IncidentStore::open_with(Some(path), options(one * 3, 2))
        .await
        .unwrap();
    assert_eq!(ids(&reopened), on_disk);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn memory_holds_the_newest_2000_across_rotated_files() {
    let dir = tempdir("window");
    let path = dir.join("incidents.jsonl");
    let one = serde_json::to_vec(&incident("i0000")).unwrap().len() as u64 + 1;
    let opts = options(one * 900, 3);
    let store = IncidentStore::open_with(Some(path.clone()), opts.clone())
        .await
        .unwrap();
    for n in 0..2500 {
        store.append(incident(&format!("i{n:04}"))).await.unwrap();
    }
    assert_eq!(store.len(), KEEP_IN_MEMORY);
    let expected: Vec<String> = (500..2500).map(|n| format!("i{n:04}")).collect();
    assert_eq!(ids(&store), expected);
    let reopened = IncidentStore::open_with(Some(path), opts).await.unwrap();
    assert_eq!(ids(&reopened), expected);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn concurrent_appends_are_whole_lines() {
    let dir = tempdir("concurrent");
    let path = dir.join("incidents.jsonl");
    let store = Arc::new(IncidentStore::open(Some(path.clone())).await.unwrap());
    let tasks: Vec<_> = (0..64)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.append(incident(&format!("c{n}"))).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let mut on_disk = file_ids(&path);
    let mut in_memory = ids(&store);
    assert_eq!(on_disk, in_memory, "file and memory in the same order");
    on_disk.sort();
    in_memory.sort();
    assert_eq!(on_disk.len(), 64);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_write_error_keeps_the_incident_in_memory_and_counts() {
    // /dev/full refuses every write with ENOSPC, as a full disk does.
    let store = IncidentStore::open(Some(PathBuf::from("/dev/full")))
        .await
        .unwrap();
    let err = store.append(incident("a")).await.unwrap_err();
    assert!(err.to_string().contains("No space left"), "{err}");
    assert!(matches!(err, StoreError::Write { pending: 1, .. }));
    assert!(store.append(incident("b")).await.is_err());
    assert_eq!(ids(&store), ["a", "b"], "nothing lost from memory");
    assert_eq!(store.write_errors(), 2);
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2))
                == Some("0")
        })
        .unwrap_or(false)
}

/// A real full disk: a 64 KiB tmpfs. The failed append is kept in memory, counted, and written
/// once space returns; no line on disk is ever two records.
#[tokio::test]
#[ignore = "needs root to mount a tmpfs"]
async fn a_full_disk_loses_nothing_and_appends_resume_when_space_returns() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to mount a tmpfs (scripts/test runs ignored tests as root)");
        return;
    }
    let dir = tempdir("fulldisk");
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&dir)
        .status()
        .expect("run mount");
    assert!(status.success(), "mount -t tmpfs failed");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _unmount = Unmount(dir.clone());

    let path = dir.join("incidents.jsonl");
    let filler = dir.join("filler");
    std::fs::write(&filler, vec![0u8; 48 * 1024]).unwrap();
    let store = IncidentStore::open(Some(path.clone())).await.unwrap();
    let mut written = Vec::new();
    let mut failed = None;
    for n in 0..200 {
        let id = format!("full-{n:03}");
        match store.append(incident(&id)).await {
            Ok(()) => written.push(id),
            Err(e) => {
                failed = Some((id, e));
                break;
            }
        }
    }
    let (failed_id, err) = failed.expect("the 64 KiB disk filled up");
    eprintln!("disk full after {} incidents: {err}", written.len());
    assert!(
        err.to_string().contains("No space left") || err.to_string().contains("short write"),
        "{err}"
    );
    assert_eq!(store.write_errors(), 1);
    assert_eq!(file_ids(&path), written, "whole records only, nothing torn");
    assert_eq!(store.recent(1)[0].id, failed_id, "kept in memory");

    // Space returns: the next append writes the one that failed, then itself.
    std::fs::remove_file(&filler).unwrap();
    store.append(incident("after")).await.unwrap();
    let mut expected = written.clone();
    expected.push(failed_id);
    expected.push("after".into());
    assert_eq!(file_ids(&path), expected);
    drop(store);
    let reopened = IncidentStore::open(Some(path)).await.unwrap();
    assert_eq!(ids(&reopened), expected);
}

/// A log that cannot be opened at start does not stop the agent: incidents stay in memory, the
/// fault is reported, and once the path can be written the missed incidents go to disk first.
#[tokio::test]
async fn an_unopenable_log_degrades_to_memory_and_catches_up_later() {
    let dir = tempdir("degrade");
    let blocker = dir.join("data");
    std::fs::write(&blocker, "a file where a directory should be").unwrap();
    let path = blocker.join("incidents.jsonl");
    let store = IncidentStore::open_or_degrade(Some(path.clone()), LogOptions::default()).await;
    let fault = store.fault().expect("reported at start");
    assert!(fault.contains("cannot open incident log"), "{fault}");
    assert!(store.append(incident("a")).await.is_err());
    assert!(store.fault().is_some());
    assert_eq!(ids(&store), ["a"], "kept in memory");
    assert_eq!(store.write_errors(), 2, "the open and the append");

    std::fs::remove_file(&blocker).unwrap();
    store.append(incident("b")).await.unwrap();
    assert_eq!(store.fault(), None, "cleared by a write that succeeds");
    assert_eq!(file_ids(&path), ["a", "b"], "the missed incident first");
    store.append(incident("c")).await.unwrap();
    assert_eq!(file_ids(&path), ["a", "b", "c"]);
    std::fs::remove_dir_all(dir).ok();
}
