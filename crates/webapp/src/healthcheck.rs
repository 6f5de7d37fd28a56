//! `webapp healthcheck`: the Docker HEALTHCHECK of a FROM-scratch image (no shell,
//! no curl). A plain HTTP/1.1 GET over a TcpStream; localhost needs no TLS.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Docker's own default HEALTHCHECK timeout is 30 s; answer well before that.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The status line is all we read; anything longer is not an HTTP server we know.
const MAX_HEAD: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    #[error("cannot reach {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("talking to {addr} failed: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("{addr} did not answer with an HTTP status line: {line:?}")]
    BadResponse { addr: SocketAddr, line: String },
    #[error("{addr}/health answered {status}, want 200")]
    Unhealthy { addr: SocketAddr, status: u16 },
}

/// `GET /health` on `addr`; `Ok` only for a 200 within `timeout`.
pub async fn check(addr: SocketAddr, timeout: Duration) -> Result<(), HealthcheckError> {
    tokio::time::timeout(timeout, get_health_status(addr))
        .await
        .map_err(|_| HealthcheckError::Timeout { addr, timeout })
        .and_then(|result| result)
        .and_then(|status| match status {
            200 => Ok(()),
            status => Err(HealthcheckError::Unhealthy { addr, status }),
        })
}

async fn get_health_status(addr: SocketAddr) -> Result<u16, HealthcheckError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|source| HealthcheckError::Connect { addr, source })?;
    let io = |source| HealthcheckError::Io { addr, source };
    let request =
        format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: webapp-healthcheck\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(io)?;

    let mut head = Vec::with_capacity(128);
    let mut chunk = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < MAX_HEAD {
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or_default();
    parse_status_line(line).ok_or_else(|| HealthcheckError::BadResponse {
        addr,
        line: line.to_owned(),
    })
}

/// `HTTP/1.1 200 OK` → 200.
fn parse_status_line(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn parses_status_lines() {
        assert_eq!(parse_status_line("HTTP/1.1 200 OK"), Some(200));
        assert_eq!(
            parse_status_line("HTTP/1.0 503 Service Unavailable"),
            Some(503)
        );
        assert_eq!(parse_status_line("SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status_line(""), None);
    }

    /// A server that answers every connection with `reply`, or never answers.
    async fn fake_server(reply: Option<&'static str>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = stream.read(&mut buf).await;
                    match reply {
                        Some(reply) => {
                            let _ = stream.write_all(reply.as_bytes()).await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn ok_on_200() {
        let addr = fake_server(Some("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")).await;
        check(addr, DEFAULT_TIMEOUT).await.unwrap();
    }

    #[tokio::test]
    async fn fails_on_503() {
        let addr = fake_server(Some("HTTP/1.1 503 Service Unavailable\r\n\r\n")).await;
        let err = check(addr, DEFAULT_TIMEOUT).await.unwrap_err();
        assert!(
            matches!(err, HealthcheckError::Unhealthy { status: 503, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn fails_on_garbage() {
        let addr = fake_server(Some("hello\n")).await;
        let err = check(addr, DEFAULT_TIMEOUT).await.unwrap_err();
        assert!(matches!(err, HealthcheckError::BadResponse { .. }), "{err}");
    }

    #[tokio::test]
    async fn times_out_when_the_server_hangs() {
        let addr = fake_server(None).await;
        let err = check(addr, Duration::from_millis(200)).await.unwrap_err();
        assert!(matches!(err, HealthcheckError::Timeout { .. }), "{err}");
    }
}
