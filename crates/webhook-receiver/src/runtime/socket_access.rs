//! Why the agent cannot use a Docker unix socket, in words that name the fix.
//!
//! Run as an unprivileged user (the image's uid 10001) with the host's socket mounted, the agent
//! meets `root:docker 0660`: the connection fails with EACCES, which hyper reports as "client error
//! (Connect)". This module finds that cause in the error chain and says what it is: the agent's uid
//! and groups, the socket's owner, group and mode, and the compose line that fixes it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The socket a Docker client connects to: `unix://PATH` or a bare path (unset: `DOCKER_HOST`,
/// else the default socket); `None` for TCP.
pub fn socket_path(host: Option<&str>) -> Option<String> {
    let host = match host {
        Some(h) => h.to_string(),
        None => std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".into()),
    };
    match host.strip_prefix("unix://") {
        Some(path) => Some(path.to_string()),
        None => host.starts_with('/').then_some(host),
    }
}

/// The first permission or not-found I/O error in `e`'s chain. `io::Error::source` skips the
/// error it wraps, so wrapped errors are opened with `get_ref`.
fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    use std::io::ErrorKind::{NotFound, PermissionDenied};
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if matches!(io.kind(), PermissionDenied | NotFound) {
                return Some(io.kind());
            }
            if let Some(inner) = io.get_ref() {
                current = Some(inner);
                continue;
            }
        }
        current = err.source();
    }
    None
}

/// A message naming the cause and the fix when `e` is a refused or missing unix socket.
pub fn explain(e: &(dyn std::error::Error + 'static), socket: &str) -> Option<String> {
    match io_kind(e)? {
        std::io::ErrorKind::PermissionDenied => Some(permission_denied(socket, &own_ids())),
        std::io::ErrorKind::NotFound => Some(format!(
            "the Docker socket {socket} does not exist in this container: mount it \
             (volumes: [\"/var/run/docker.sock:{socket}\"]) or set DOCKER_HOST to a socket proxy"
        )),
        _ => None,
    }
}

/// The process' uid and supplementary groups, from /proc (no libc needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub uid: Option<u32>,
    pub groups: Vec<u32>,
}

fn own_ids() -> Ids {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    parse_status(&status)
}

fn parse_status(status: &str) -> Ids {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| {
                v.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .unwrap_or_default()
    };
    Ids {
        uid: field("Uid:").first().copied(),
        groups: {
            let mut g = field("Gid:").into_iter().take(1).collect::<Vec<_>>();
            g.extend(field("Groups:"));
            g.sort_unstable();
            g.dedup();
            g
        },
    }
}

fn permission_denied(socket: &str, ids: &Ids) -> String {
    let who = format!(
        "the agent runs as uid {} (groups {})",
        ids.uid.map_or("?".to_string(), |u| u.to_string()),
        if ids.groups.is_empty() {
            "?".to_string()
        } else {
            ids.groups
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    match std::fs::metadata(Path::new(socket)) {
        Ok(m) => format!(
            "permission denied on the Docker socket {socket}: {who}, and the socket belongs to uid \
             {}, gid {} with mode {:o}. Add the socket's group to the agent's service in your compose \
             file: `group_add: [\"{}\"]` (or put the socket proxy in front of it; README, \"Drop the \
             agent into your own stack\")",
            m.uid(),
            m.gid(),
            m.mode() & 0o777,
            m.gid()
        ),
        Err(_) => format!(
            "permission denied on the Docker socket {socket}: {who}. Add the socket's group to the \
             agent's service: `group_add: [\"<gid of {socket} on the host>\"]`"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_proc_status() {
        let ids = parse_status("Name:\tx\nUid:\t10001\t10001\t10001\t10001\nGid:\t10001\t10001\t10001\t10001\nGroups:\t999 4 \n");
        assert_eq!(ids.uid, Some(10001));
        assert_eq!(ids.groups, vec![4, 999, 10001]);
    }

    #[test]
    fn socket_paths() {
        assert_eq!(
            socket_path(Some("unix:///run/user/1000/docker.sock")).as_deref(),
            Some("/run/user/1000/docker.sock")
        );
        assert_eq!(socket_path(Some("tcp://socket-proxy:2375")), None);
    }

    #[test]
    fn a_denied_socket_names_uid_group_and_the_line_to_add() {
        let dir = std::env::temp_dir().join(format!("socket-access-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("docker.sock");
        std::fs::write(&sock, "").unwrap();
        let gid = std::fs::metadata(&sock).unwrap().gid();
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let wrapped = std::io::Error::other(denied);
        let msg = explain(&wrapped, sock.to_str().unwrap()).unwrap();
        assert!(msg.contains("permission denied"), "{msg}");
        assert!(msg.contains(&format!("group_add: [\"{gid}\"]")), "{msg}");
        assert!(msg.contains("runs as uid"), "{msg}");
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert!(explain(&missing, "/nope.sock")
            .unwrap()
            .contains("does not exist"));
        let other = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(explain(&other, "/x.sock").is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
