//! The agent started as an unprivileged user on a Docker socket it may not open (the real binary,
//! a real unix socket with the host's usual `root:<group> 0660`): it must stop at once with the
//! cause (permission denied, its uid, the socket's group) and the compose line that fixes it, not
//! after ten retries with "client error (Connect)".

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

/// uid and gid the agent's image runs as.
const AGENT_ID: u32 = 10001;

#[test]
fn a_socket_the_agent_may_not_open_is_named_with_its_fix() {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        eprintln!("SKIPPED: running the agent as another user (uid {AGENT_ID}) needs root");
        return;
    }
    let dir = std::env::temp_dir().join(format!("socket-access-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.join("docker.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660)).unwrap();
    let gid = std::fs::metadata(&path).unwrap().gid();

    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_webhook-receiver"))
        .env_clear()
        .env("DOCKER_HOST", format!("unix://{}", path.display()))
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("INCIDENT_LOG", "")
        .env("WEBHOOK_TOKEN", "t")
        .current_dir(&dir)
        .uid(AGENT_ID)
        // Without explicit groups, std drops root's supplementary groups (setgroups(0)).
        .gid(AGENT_ID)
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    std::fs::remove_dir_all(&dir).ok();

    assert!(!out.status.success(), "the agent must not start: {stderr}");
    assert!(
        stderr.contains("permission denied on the Docker socket"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("uid {AGENT_ID}")), "{stderr}");
    assert!(
        stderr.contains(&format!("group_add: [\"{gid}\"]")),
        "{stderr}"
    );
    assert!(!stderr.contains("client error (Connect)"), "{stderr}");
    assert!(
        took < Duration::from_secs(5),
        "a refused socket is not retried: {took:?}"
    );
}
