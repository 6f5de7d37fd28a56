//! A Docker API proxy that lets the healing agent make exactly the calls it makes, on the
//! replicas of one compose project's healable services, and nothing else.
//!
//! It decides on what dockerd will receive, not on what the client sent: a request is parsed
//! (HTTP/1.0 and 1.1 only, one request per connection), checked against the allow-list in its
//! parsed form, and then a new request is built from that form (method, canonical path,
//! re-encoded allow-listed query parameters, fixed headers, never a body) and sent to dockerd
//! over its Unix socket. Nothing of the client's bytes or headers is copied upstream, so a body
//! in a framing a filter cannot see (HTTP/2 DATA frames, chunked, pipelined bytes) has nowhere to
//! go. A stock filtering proxy (HAProxy, which docker-socket-proxy is) decides on the headers it
//! sees and forwards the request it received; that is how an HTTP/2 `start` with a HostConfig
//! body once reached the daemon through this stack's proxy.
//!
//! - [`config`]: flags and environment (`HEAL_PROJECT`, `HEAL_SERVICES`, ...), validated.
//! - [`scope`]: the project and its healable services; which container names are theirs.
//! - [`rules`]: the allow-list. A request's method, target and headers in, one [`rules::Call`]
//!   or a [`Refusal`] out; pure, so every rule is unit-tested without a socket.
//! - [`query`]: query parameters: strict parsing, the value rule of each allowed parameter,
//!   re-encoding, and the project filter added to list and events.
//! - [`refusal`]: why a request was refused, answered as Docker answers errors (JSON `message`).
//! - [`upstream`]: dockerd over its Unix socket: the rebuilt request, and the label check (the
//!   proxy's own inspect) that resolves a replica's name to its id.
//! - [`server`]: the HTTP/1 listener, the handler and the access log.
//! - [`healthcheck`]: `socket-proxy healthcheck`, for an image without a shell.

pub mod config;
pub mod healthcheck;
pub mod query;
pub mod refusal;
pub mod rules;
pub mod scope;
pub mod server;
pub mod upstream;

pub use config::Config;
pub use refusal::Refusal;
pub use scope::Scope;
pub use server::{run, Proxy};
