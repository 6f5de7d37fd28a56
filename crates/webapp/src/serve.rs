//! The HTTP/1.1 server loop: what `axum::serve` does, plus the drain a replica behind nginx needs
//! when it is stopped (`docker stop`: SIGTERM, SIGKILL after the stop timeout).
//!
//! On shutdown:
//! 1. Connections the kernel has already completed are accepted and served: nginx counts a
//!    request written to such a connection as sent, and would not pass a non-idempotent one to
//!    another replica if it were reset. (`axum::serve` drops its listener with them in the queue.)
//! 2. The listener closes: new connections are refused at once, before nginx sends anything, so
//!    nginx passes the request to another replica (`proxy_next_upstream error`). Refusing beats
//!    serving on: Docker's DNS lists the container until it exits, whatever it answers, so a
//!    replica that kept accepting would only keep receiving.
//! 3. Each connection shuts down gracefully: an idle keep-alive connection is closed at once; a
//!    request in progress is answered (with `connection: close`); a connection accepted but whose
//!    request has not been read yet waits for it and answers it. (`axum::serve`, and hyper's
//!    graceful shutdown by itself, close those unanswered; nginx then logs "upstream prematurely
//!    closed connection" and cannot pass a non-idempotent request on.)
//! 4. After `drain_timeout` whatever is left is cut, so the process exits before Docker's stop
//!    timeout would SIGKILL it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// After a failed `accept` (e.g. out of file descriptors), before the next: long enough not to
/// spin, short enough not to matter.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// How a drain went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Connections open when the listener closed (accepted late ones included).
    pub open: usize,
    /// Of those, the ones still open when `drain_timeout` passed, and so cut.
    pub cut: usize,
    pub took: Duration,
}

/// Serves `router` on `listener` until `shutdown` completes, then drains (see the module docs)
/// for at most `drain_timeout`.
pub async fn serve<F>(
    listener: TcpListener,
    router: Router,
    shutdown: F,
    drain_timeout: Duration,
) -> io::Result<Drained>
where
    F: Future<Output = ()>,
{
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let spawn = |connections: &mut JoinSet<()>, stream: TcpStream| {
        connections.spawn(connection(stream, router.clone(), closing_rx.clone()));
    };

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            // Shutdown first: a stopped replica accepts nothing new through this loop.
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => spawn(&mut connections, stream),
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            // Reap finished connections, so the set holds only open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }

    let started = Instant::now();
    // Ask the kernel directly (tokio's readiness cache may not have seen the newest ones yet).
    let listener = listener.into_std()?;
    loop {
        match listener.accept() {
            Ok((stream, _peer)) => {
                stream.set_nonblocking(true)?;
                spawn(&mut connections, TcpStream::from_std(stream)?);
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
            Err(error) => {
                tracing::warn!(%error, "cannot accept a queued connection while draining");
                break;
            }
        }
    }
    drop(listener);
    let open = connections.len();
    let _ = closing_tx.send(true);

    let deadline = tokio::time::Instant::now() + drain_timeout;
    while !connections.is_empty() {
        if tokio::time::timeout_at(deadline, connections.join_next())
            .await
            .is_err()
        {
            break;
        }
    }
    let cut = connections.len();
    connections.abort_all();
    Ok(Drained {
        open,
        cut,
        took: started.elapsed(),
    })
}

/// One HTTP/1.1 connection until it ends, shutting down gracefully once `closing` says so.
async fn connection(stream: TcpStream, router: Router, mut closing: watch::Receiver<bool>) {
    // Responses are small and written at once: Nagle would only delay them.
    let _ = stream.set_nodelay(true);
    let (read_tx, mut read_rx) = watch::channel(false);
    let io = FirstRead {
        stream,
        seen: read_tx,
    };
    let conn = http1::Builder::new()
        // The timer lets hyper enforce its header read timeout (30 s by default), so a client
        // that never finishes its request does not hold a connection forever.
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(router));
    tokio::pin!(conn);
    // `wait_for` hands back a read guard, which must not live across the awaits below.
    let closed = async move {
        let _ = closing.wait_for(|closing| *closing).await.map(|_| ());
    };
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = closed => {
            // hyper's graceful shutdown closes, unanswered, a connection on which it has read
            // nothing yet, although the request may already sit in the socket: nginx writes it
            // right after connecting. So wait for the first bytes (or the end of the
            // connection, or the drain timeout) before asking it to finish.
            let first_bytes = async move {
                let _ = read_rx.wait_for(|seen| *seen).await.map(|_| ());
            };
            tokio::select! {
                result = conn.as_mut() => result,
                () = first_bytes => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            }
        }
    };
    if let Err(error) = result {
        // A client that hangs up mid-request is its business, not an error of this replica.
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// A TCP stream that says (once) when the first bytes were read from it.
struct FirstRead {
    stream: TcpStream,
    seen: watch::Sender<bool>,
}

impl AsyncRead for FirstRead {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before && !*self.seen.borrow() {
            self.seen.send_replace(true);
        }
        polled
    }
}

impl AsyncWrite for FirstRead {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
