//! The fault benchmark (issues 8, 9, 15 and 16): scenarios on the real stack, each injecting one fault
//! on real containers, waiting for the agent to settle, and scoring what it did against what a
//! careful SRE would do. The agent's actions are read from Docker's own event stream (minus what
//! the harness itself did) and cross-checked with its incidents and metrics.
//!
//! - [`docker`]: the harness's Docker operations, each recorded with its time window;
//! - [`dockerd`]: stopping and starting the Docker daemon itself (the daemon-restart cases);
//! - [`events`]: Docker's event stream, and the agent's actions read from it;
//! - [`clients`]: the agent, the notification sink, Prometheus and Alertmanager over HTTP;
//! - [`locust`]: the stack's Locust, driven through its UI's API;
//! - [`proxylog`]: the agent's Docker calls as the socket proxy logged them;
//! - [`stack`]: the stack's settings, its replicas' live state, the baseline between cases;
//! - [`scenarios`]: the cases: how each fault is injected and what is expected;
//! - [`runner`]: one case from baseline to result;
//! - [`load`]: the sustained load, the agent against Docker's restart policy in two legs;
//! - [`preventive`]: preventive recycling under load (the walkthrough's users, a faster leak,
//!   replicas that will not drain), legs of [`load`] with the agent recreated for them;
//! - [`score`]: actions against expectations, and the record checks;
//! - [`report`]: rates per scenario and mode, the table, summary.json.

pub mod clients;
pub mod docker;
pub mod dockerd;
pub mod events;
pub mod load;
pub mod locust;
pub mod preventive;
pub mod proxylog;
pub mod report;
pub mod runner;
pub mod scenarios;
pub mod score;
pub mod stack;

/// Nearest-rank percentile of `values` (`p` in 0..=100); `None` when empty.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    Some(v[rank.min(v.len()) - 1])
}
