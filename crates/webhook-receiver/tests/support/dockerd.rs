//! A private dockerd for the tests that stop and start Docker itself: its own socket, data root
//! and bridge, so the shared daemon and everyone else's tests are not disturbed. (Not
//! `--bridge none`: that makes dockerd delete the host's docker0.) Needs root, and runs only
//! where [`private_dockerd_refused`] allows.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::docker_on;

pub struct PrivateDockerd {
    dir: std::path::PathBuf,
    pub host: String,
    bridge: String,
    child: Option<Child>,
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Why this machine may not get a private dockerd, or `None` when it may. It starts a second
/// dockerd and adds a network bridge to the host: only on a machine that is the tests' (CI) or
/// when asked for, and only as root.
pub fn private_dockerd_refused() -> Option<String> {
    let asked = |var: &str, yes: &[&str]| {
        std::env::var(var).is_ok_and(|v| yes.contains(&v.trim().to_ascii_lowercase().as_str()))
    };
    if !(asked("CI", &["true", "1"]) || asked("HEALSTACK_PRIVATE_DOCKERD", &["1", "true", "yes"])) {
        return Some(
            "it starts a second dockerd and adds a network bridge to this host; set CI=true \
             (a machine for the tests) or HEALSTACK_PRIVATE_DOCKERD=1 to run it"
                .into(),
        );
    }
    (!is_root()).then(|| "a private dockerd (its own bridge and mounts) needs root".into())
}

fn ip(args: &[&str]) {
    let ok = Command::new("ip")
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "ip {} failed (iproute2 needed)", args.join(" "));
}

impl PrivateDockerd {
    pub fn new() -> Self {
        // Short paths: unix socket paths are limited to 108 bytes.
        let dir = std::path::PathBuf::from(format!("/tmp/hd{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let host = format!("unix://{}/d.sock", dir.display());
        // A bridge of its own, with a link-local address: nothing routes to or from it.
        let bridge = format!("hdbr{}", std::process::id() % 100_000);
        let _ = Command::new("ip").args(["link", "del", &bridge]).status();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        // Link-local, and a subnet per process, so two such tests never share one.
        let subnet = format!("169.254.{}.1/24", 20 + std::process::id() % 200);
        ip(&["addr", "add", &subnet, "dev", &bridge]);
        PrivateDockerd {
            dir,
            host,
            bridge,
            child: None,
        }
    }

    pub fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .arg("--host")
            .arg(&self.host)
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("exec"))
            .arg("--pidfile")
            .arg(self.dir.join("d.pid"))
            .args([
                "--bridge",
                &self.bridge,
                "--iptables=false",
                "--ip-masq=false",
                "--ip-forward=false",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd is installed (scripts/test installs docker.io)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while docker_on(Some(&self.host), &["info"]).is_err() {
            assert!(
                Instant::now() < deadline,
                "private dockerd did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM, so dockerd shuts down cleanly (its containers stop with it).
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }
}

impl Drop for PrivateDockerd {
    fn drop(&mut self) {
        self.stop();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "umount -R {0}/exec {0}/data 2>/dev/null; rm -rf {0}",
                self.dir.display()
            ))
            .status();
    }
}
