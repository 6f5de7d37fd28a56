//! The one decision behind preventive recycling: which replica of a service, if any, to replace
//! now, before the kernel's OOM killer does. Pure over [`RecycleFacts`], gathered once per look
//! by the memory watcher ([`crate::engine`]); the recycle itself (a graceful stop, a start, the
//! wait for the healthcheck) and its record live there.
//!
//! The rules (docs/agent.md, "Preventive recycling"):
//! - Capacity first: at most one replica of a service is recycled at a time, and only while every
//!   replica serves, so that never fewer than N-1 serve. A service of one replica is never
//!   recycled (that would leave none).
//! - Earliest deadline first: replicas are ordered by their predicted time to the memory limit
//!   (from the recent trend); the k-th of them (0-based) is reached only after k recycles, so a
//!   recycle starts now when any k-th replica's time to the limit is within (k+1) slowest
//!   recycles (with a margin, plus two looks' lag). The one recycled is always the closest.
//! - A replica past [`HIGH_WATER`] of its limit is recycled whatever its trend says.
//! - Behind: when even the closest cannot be recycled before its predicted OOM at the slowest
//!   recycle measured so far (the leak outpaces recycling), the recycle still goes ahead (a
//!   draining replica takes no new requests, so it stops leaking), and the decision says so,
//!   with the numbers, for one escalation; what the recycles miss, reactive healing repairs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Share of the limit at which a replica is recycled whatever its trend.
pub const HIGH_WATER: f64 = 0.90;
/// A recycle is planned this much longer than the slowest one measured (the others leak faster
/// while one is out, and a due replica may wait for the recycle in flight to end).
pub const MARGIN: f64 = 1.5;
/// Looks a decision may come late by: the reading is up to one look old when it arrives (Docker
/// answers at its next collection), and the next look is one more away.
pub const LAG_LOOKS: f64 = 2.0;

/// One replica's memory as the watcher last saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaMemory {
    pub name: String,
    /// Running and healthy (or without a healthcheck).
    pub serving: bool,
    pub usage: Option<u64>,
    pub limit: Option<u64>,
    /// Bytes per second over the recent samples of this life; `None` until there are enough.
    pub trend: Option<f64>,
}

impl ReplicaMemory {
    /// Seconds until the limit at the current trend; `None` when it is not growing or unknown.
    pub fn seconds_to_limit(&self) -> Option<f64> {
        let (usage, limit, trend) = (self.usage?, self.limit?, self.trend?);
        (trend > 0.0).then(|| limit.saturating_sub(usage) as f64 / trend)
    }

    fn fill(&self) -> Option<f64> {
        Some(self.usage? as f64 / self.limit.filter(|l| *l > 0)? as f64)
    }
}

/// Everything one decision for one service needs.
#[derive(Debug, Clone)]
pub struct RecycleFacts<'a> {
    pub replicas: &'a [ReplicaMemory],
    /// A recycle of this service is in flight.
    pub busy: bool,
    /// The slowest recycle (SIGTERM to healthy) measured so far, or the prior.
    pub slowest: Duration,
    /// How often the watcher looks: a decision may come this late.
    pub every: Duration,
}

/// The memory figures that led to a recycle, as the incident records them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryFigures {
    pub usage_bytes: u64,
    pub limit_bytes: u64,
    /// Bytes per second over the recent samples (0 when unknown).
    pub trend_bytes_per_second: f64,
    /// At that trend (absent when memory is not growing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_to_limit: Option<f64>,
    /// The slowest recycle measured so far, the time the plan allowed for this one.
    pub slowest_recycle_seconds: f64,
}

/// Recycling cannot keep up: the numbers people need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Behind {
    /// The replica that cannot be recycled in time, and how far behind.
    pub replica: String,
    pub seconds_to_limit: f64,
    /// What it needed: its place in the queue times the slowest recycle.
    pub seconds_needed: f64,
    /// The mean leak of the service's replicas, bytes per second.
    pub leak_bytes_per_second: f64,
    pub replicas: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RecycleDecision {
    /// Nothing close to its limit.
    Idle,
    /// One is due, but capacity forbids it now (the reason says why).
    Hold(String),
    /// Recycle `name` now; `behind` when the plan cannot keep up (escalate once).
    Recycle {
        name: String,
        figures: MemoryFigures,
        behind: Option<Behind>,
    },
}

pub fn decide(f: &RecycleFacts<'_>) -> RecycleDecision {
    let slowest = f.slowest.as_secs_f64();
    let lag = LAG_LOOKS * f.every.as_secs_f64();
    let mut order: Vec<&ReplicaMemory> = f.replicas.iter().filter(|r| r.serving).collect();
    // Closest to the limit first: the soonest predicted OOM, then the fullest.
    order.sort_by(|a, b| {
        let ta = a.seconds_to_limit().unwrap_or(f64::INFINITY);
        let tb = b.seconds_to_limit().unwrap_or(f64::INFINITY);
        ta.total_cmp(&tb)
            .then(b.fill().unwrap_or(0.0).total_cmp(&a.fill().unwrap_or(0.0)))
    });
    let Some(first) = order.first() else {
        return RecycleDecision::Idle;
    };
    let high = first.fill().is_some_and(|x| x >= HIGH_WATER);
    let due = high
        || order.iter().enumerate().any(|(k, r)| {
            r.seconds_to_limit()
                .is_some_and(|t| t <= (k + 1) as f64 * slowest * MARGIN + lag)
        });
    if !due {
        return RecycleDecision::Idle;
    }
    if f.replicas.len() < 2 {
        return RecycleDecision::Hold(format!(
            "{} is the service's only replica: recycling it would leave none serving",
            first.name
        ));
    }
    if f.busy {
        return RecycleDecision::Hold(
            "another replica of the service is being recycled (one at a time)".into(),
        );
    }
    let serving = order.len();
    if serving < f.replicas.len() {
        return RecycleDecision::Hold(format!(
            "{serving} of {} replicas serve: a recycle now would leave fewer than N-1",
            f.replicas.len()
        ));
    }
    let behind = order.iter().enumerate().find_map(|(k, r)| {
        let t = r.seconds_to_limit()?;
        let needed = (k + 1) as f64 * slowest;
        (t < needed).then(|| {
            let trends: Vec<f64> = order.iter().filter_map(|r| r.trend).collect();
            Behind {
                replica: r.name.clone(),
                seconds_to_limit: round(t),
                seconds_needed: round(needed),
                leak_bytes_per_second: round(
                    trends.iter().sum::<f64>() / trends.len().max(1) as f64,
                ),
                replicas: f.replicas.len(),
            }
        })
    });
    RecycleDecision::Recycle {
        name: first.name.clone(),
        figures: MemoryFigures {
            usage_bytes: first.usage.unwrap_or(0),
            limit_bytes: first.limit.unwrap_or(0),
            trend_bytes_per_second: round(first.trend.unwrap_or(0.0)),
            seconds_to_limit: first.seconds_to_limit().map(round),
            slowest_recycle_seconds: round(slowest),
        },
        behind,
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;
    const LIMIT: u64 = 256 * MIB;

    fn r(name: &str, usage_mib: u64, trend_mib: f64) -> ReplicaMemory {
        ReplicaMemory {
            name: name.into(),
            serving: true,
            usage: Some(usage_mib * MIB),
            limit: Some(LIMIT),
            trend: Some(trend_mib * MIB as f64),
        }
    }

    fn facts(replicas: &[ReplicaMemory]) -> RecycleFacts<'_> {
        RecycleFacts {
            replicas,
            busy: false,
            slowest: Duration::from_secs(3),
            every: Duration::from_secs(1),
        }
    }

    fn recycled(d: &RecycleDecision) -> Option<&str> {
        match d {
            RecycleDecision::Recycle { name, .. } => Some(name),
            _ => None,
        }
    }

    #[test]
    fn far_from_the_limit_nothing_happens() {
        // 100 s to the limit each: far beyond 3 recycles of 3 s.
        let rs = [r("a", 56, 2.0), r("b", 56, 2.0), r("c", 56, 2.0)];
        assert_eq!(decide(&facts(&rs)), RecycleDecision::Idle);
        // Not growing at all, even rather full.
        let rs = [r("a", 200, 0.0), r("b", 10, -1.0)];
        assert_eq!(decide(&facts(&rs)), RecycleDecision::Idle);
    }

    #[test]
    fn the_closest_to_its_limit_goes_first_and_early_enough() {
        // At 8 MiB/s: a 14 s to go, b 7 s, c 25 s. The first in line needs 3*1.5+2 = 6.5 s, the
        // second 11 s, the third 15.5 s: nobody is due yet.
        let rs = [r("a", 144, 8.0), r("b", 200, 8.0), r("c", 56, 8.0)];
        assert_eq!(decide(&facts(&rs)), RecycleDecision::Idle);
        // b at 6 s: due (first in line); b goes, though a was listed first.
        let rs = [r("a", 144, 8.0), r("b", 208, 8.0), r("c", 56, 8.0)];
        assert_eq!(recycled(&decide(&facts(&rs))), Some("b"));
        // Three replicas filling together, 15 s each: the third in line is due, so the first
        // goes now (a queue of three must start three recycles early).
        let rs = [r("a", 136, 8.0), r("b", 136, 8.0), r("c", 136, 8.0)];
        assert_eq!(recycled(&decide(&facts(&rs))), Some("a"));
        // ... but not at 17 s.
        let rs = [r("a", 120, 8.0), r("b", 120, 8.0), r("c", 120, 8.0)];
        assert_eq!(decide(&facts(&rs)), RecycleDecision::Idle);
    }

    #[test]
    fn past_the_high_water_mark_whatever_the_trend() {
        let mut a = r("a", 240, 0.0);
        a.trend = None;
        let rs = [a, r("b", 10, 0.0)];
        match decide(&facts(&rs)) {
            RecycleDecision::Recycle {
                name,
                figures,
                behind,
            } => {
                assert_eq!(name, "a");
                assert_eq!(figures.usage_bytes, 240 * MIB);
                assert_eq!(figures.seconds_to_limit, None);
                assert_eq!(behind, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn never_fewer_than_n_minus_one_serving() {
        let mut rs = vec![r("a", 250, 2.0), r("b", 100, 2.0), r("c", 100, 2.0)];
        rs[2].serving = false;
        assert!(matches!(decide(&facts(&rs)), RecycleDecision::Hold(m) if m.contains("2 of 3")));
        let rs = [r("a", 250, 2.0), r("b", 100, 2.0)];
        let mut f = facts(&rs);
        f.busy = true;
        assert!(matches!(decide(&f), RecycleDecision::Hold(m) if m.contains("one at a time")));
        let rs = [r("a", 250, 2.0)];
        assert!(
            matches!(decide(&facts(&rs)), RecycleDecision::Hold(m) if m.contains("only replica"))
        );
    }

    #[test]
    fn behind_when_the_leak_outpaces_recycling_with_the_numbers() {
        // 2 s to the limit at 20 MiB/s, a recycle takes 3 s: recycled all the same, and behind.
        let rs = [r("a", 216, 20.0), r("b", 100, 20.0), r("c", 100, 20.0)];
        match decide(&facts(&rs)) {
            RecycleDecision::Recycle {
                name,
                behind: Some(b),
                figures,
            } => {
                assert_eq!(name, "a");
                assert_eq!(b.replica, "a");
                assert_eq!(b.seconds_to_limit, 2.0);
                assert_eq!(b.seconds_needed, 3.0);
                assert_eq!(b.leak_bytes_per_second, 20.0 * MIB as f64);
                assert_eq!(b.replicas, 3);
                assert_eq!(figures.slowest_recycle_seconds, 3.0);
            }
            other => panic!("{other:?}"),
        }
        // The second in line cannot make it either: 5 s to go, 6 s needed.
        let rs = [r("a", 196, 20.0), r("b", 156, 20.0), r("c", 10, 1.0)];
        match decide(&facts(&rs)) {
            RecycleDecision::Recycle {
                behind: Some(b), ..
            } => assert_eq!(b.replica, "b"),
            other => panic!("{other:?}"),
        }
        // On time: no escalation.
        let rs = [r("a", 236, 2.0), r("b", 100, 2.0)];
        assert!(matches!(
            decide(&facts(&rs)),
            RecycleDecision::Recycle { behind: None, .. }
        ));
    }
}
