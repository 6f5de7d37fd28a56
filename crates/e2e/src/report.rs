//! One run's figures and checks, from the files `scripts/e2e-test` wrote into its folder.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use chrono::DateTime;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::{self, Crash};
use crate::percentile;

/// `meta.json`, written by the script.
#[derive(Debug, Clone, Deserialize)]
pub struct Meta {
    pub name: String,
    /// `load` (Locust until replicas are OOM-killed), `preventive` (the same load with
    /// PREVENTIVE_RECYCLE=on: replicas recycled before their OOM kill) or `reference` (one
    /// replica killed by hand).
    pub kind: String,
    /// `alert` (Docker events off) or `events`.
    pub path: String,
    /// `llm` or `runbook`.
    pub decider: String,
    pub service: String,
    /// Window of the run, seconds since the epoch.
    pub from: f64,
    pub to: f64,
    #[serde(default)]
    pub note: String,
    #[serde(default)]
    pub replicas_serving: Option<u64>,
    /// Locust users of a load run: at a fixed rate per user, two runs' request counts differ
    /// by at most one per user (where each user stands at the start and the stop).
    #[serde(default)]
    pub users: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    pub name: String,
    pub kind: String,
    pub path: String,
    pub decider: String,
    pub note: String,
    pub crashes: usize,
    pub oom_kills: usize,
    pub healed: usize,
    /// Replicas recycled by the agent (incidents `recycled`), and their time from SIGTERM to
    /// healthy.
    pub recycles: usize,
    pub recycle_p50_s: Option<f64>,
    pub recycle_p95_s: Option<f64>,
    /// Replicas serving (healthy) when the run ended (written by the script).
    pub replicas_serving: Option<u64>,
    /// Per crash: from the death until every replica is healthy again (the definition).
    pub recovery_p50_s: Option<f64>,
    pub recovery_p95_s: Option<f64>,
    pub recovery_max_s: Option<f64>,
    /// Per crash: from the death until that replica is healthy again.
    pub replica_recovery_p50_s: Option<f64>,
    pub replica_recovery_max_s: Option<f64>,
    /// The agent's own `mttr_seconds` of its healed incidents.
    pub incident_mttr_p50_s: Option<f64>,
    /// Per incident: from the first death it healed until the agent's run started.
    pub detection_p50_s: Option<f64>,
    pub restarts_outside_service: usize,
    pub incidents: usize,
    pub incidents_by_mode: BTreeMap<String, usize>,
    pub incidents_by_outcome: BTreeMap<String, usize>,
    pub requests: Option<u64>,
    pub failed_requests: Option<u64>,
    /// Requests answered without failure: what the users got.
    pub served_requests: Option<u64>,
    pub users: Option<u64>,
    pub failed_share_pct: Option<f64>,
    pub llm_turns_avg: Option<f64>,
    pub llm_prompt_tokens_avg: Option<f64>,
    pub llm_output_tokens_avg: Option<f64>,
    /// The agent's own time per healing run, minus the model's latency.
    pub agent_added_p50_s: Option<f64>,
    pub recoveries_s: Vec<f64>,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

fn ts(v: &Value) -> Option<f64> {
    let t = DateTime::parse_from_rfc3339(v.as_str()?).ok()?;
    Some(t.timestamp_micros() as f64 / 1e6)
}

/// Restarts the incident's timeline shows as done (`restart_container` with result ok and a real action).
fn restarts_in(incident: &Value) -> Vec<(String, f64)> {
    incident["timeline"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter(|a| a["action"] == "restart_container" && a["result"] == "ok")
                .filter(|a| {
                    matches!(
                        a["detail"]["action"].as_str(),
                        Some("start" | "restart" | "unpause")
                    )
                })
                .filter_map(|a| Some((a["target"].as_str()?.to_string(), ts(&a["at"])?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Sum of a metric's samples whose label set contains every `labels` pair.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .sum()
}

/// The "Aggregated" row of Locust's `_stats.csv`: (requests, failures).
pub fn locust_totals(csv: &str) -> Option<(u64, u64)> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines
        .next()?
        .split(',')
        .map(|h| h.trim_matches('"'))
        .collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (name_i, req_i, fail_i) = (col("Name")?, col("Request Count")?, col("Failure Count")?);
    lines
        .map(|l| {
            l.split(',')
                .map(|c| c.trim_matches('"'))
                .collect::<Vec<_>>()
        })
        .find_map(|row| {
            (row.get(name_i)? == &"Aggregated").then(|| {
                Some((
                    row.get(req_i)?.parse().ok()?,
                    row.get(fail_i)?.parse().ok()?,
                ))
            })?
        })
}

pub fn analyse(dir: &Path) -> Result<Figures> {
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .with_context(|| format!("reading {}", dir.join(f).display()))
    };
    let meta: Meta = serde_json::from_str(&read("meta.json")?).context("meta.json")?;
    let events = events::parse(&read("events.jsonl")?);
    let incidents: Vec<Value> =
        serde_json::from_str(&read("incidents.json")?).context("incidents.json")?;
    let metrics = read("metrics.txt")?;
    let locust = read("locust_stats.csv")
        .ok()
        .and_then(|c| locust_totals(&c));

    // A `docker restart` of an unhealthy replica by the agent also shows up as a death: not a crash.
    let own_restarts: Vec<(String, f64)> = incidents
        .iter()
        .flat_map(|inc| inc["timeline"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["detail"]["action"] == "restart")
        .filter_map(|a| Some((a["target"].as_str()?.to_string(), ts(&a["at"])?)))
        .collect();
    // Nor is a recycle's graceful stop (the incident's `stop` step, SIGTERM to exit).
    let recycled: Vec<&Value> = incidents
        .iter()
        .filter(|i| i["recycle"].is_object())
        .collect();
    let own_stops: Vec<(String, f64)> = recycled
        .iter()
        .filter_map(|i| {
            let began = ts(&i["run_started_at"])?;
            let t = i["recycle"]["stop_seconds"].as_f64().unwrap_or(0.0);
            Some((i["recycle"]["replica"].as_str()?.to_string(), began + t))
        })
        .collect();
    let crashes: Vec<Crash> = events::crashes(&events, &meta.service, meta.from, meta.to)
        .into_iter()
        .filter(|c| {
            !own_restarts
                .iter()
                .any(|(n, t)| *n == c.name && c.died_at >= *t - 0.5 && c.died_at <= *t + 15.0)
        })
        .filter(|c| {
            !own_stops
                .iter()
                .any(|(n, t)| *n == c.name && (c.died_at - *t).abs() <= 2.0)
        })
        .collect();
    let recycle_times: Vec<f64> = recycled
        .iter()
        .filter(|i| i["outcome"] == "recycled")
        .filter_map(|i| i["recycle"]["healthy_after_seconds"].as_f64())
        .collect();
    let foreign = events::foreign_starts(&events, &meta.service, meta.from, meta.to);
    let replica_recoveries: Vec<f64> = crashes.iter().filter_map(Crash::recovery_seconds).collect();
    let recoveries: Vec<f64> = events::all_healthy_after(&events, &meta.service, &crashes)
        .iter()
        .zip(&crashes)
        .filter_map(|(t, c)| t.map(|t| t - c.died_at))
        .collect();
    let incident_mttrs: Vec<f64> = incidents
        .iter()
        .filter(|i| i["outcome"] == "healed")
        .filter_map(|i| i["mttr_seconds"].as_f64())
        .collect();

    // Which incident restarted each crashed replica (the first restart of it after the death).
    let restarts: Vec<(usize, String, f64)> = incidents
        .iter()
        .enumerate()
        .flat_map(|(i, inc)| restarts_in(inc).into_iter().map(move |(n, t)| (i, n, t)))
        .collect();
    let mut covering: Vec<Option<usize>> = Vec::new();
    let mut detection = Vec::new();
    for c in &crashes {
        let next_death = crashes
            .iter()
            .filter(|o| o.name == c.name && o.died_at > c.died_at)
            .map(|o| o.died_at)
            .fold(f64::INFINITY, f64::min);
        let hit = restarts
            .iter()
            .filter(|(_, n, t)| *n == c.name && *t >= c.died_at - 0.5 && *t < next_death)
            .min_by(|a, b| a.2.total_cmp(&b.2));
        covering.push(hit.map(|h| h.0));
    }
    // Detection per incident: from the first death it healed until its run started. (Per crash
    // would flatter the alert path: later deaths of a burst join a run already under way.)
    for (i, inc) in incidents.iter().enumerate() {
        let first_death = crashes
            .iter()
            .zip(&covering)
            .filter(|(_, cov)| **cov == Some(i))
            .map(|(c, _)| c.died_at)
            .fold(f64::INFINITY, f64::min);
        if let (true, Some(run)) = (first_death.is_finite(), ts(&inc["run_started_at"])) {
            detection.push((run - first_death).max(0.0));
        }
    }
    let restart_actions = restarts.len();

    let mut by_mode = BTreeMap::new();
    let mut by_outcome = BTreeMap::new();
    for inc in &incidents {
        *by_mode
            .entry(inc["mode"].as_str().unwrap_or("?").to_string())
            .or_insert(0) += 1;
        *by_outcome
            .entry(inc["outcome"].as_str().unwrap_or("?").to_string())
            .or_insert(0) += 1;
    }
    let acting: Vec<&Value> = incidents
        .iter()
        .filter(|i| !restarts_in(i).is_empty())
        .collect();
    let llm: Vec<&Value> = acting
        .iter()
        .copied()
        .filter(|i| i["llm"].is_object())
        .collect();
    let avg = |f: &dyn Fn(&Value) -> Option<f64>| -> Option<f64> {
        let v: Vec<f64> = llm.iter().filter_map(|i| f(i)).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let added: Vec<f64> = acting
        .iter()
        .filter_map(|i| {
            Some(i["run_seconds"].as_f64()? - i["llm"]["model_seconds"].as_f64().unwrap_or(0.0))
        })
        .collect();

    let mut checks = Vec::new();
    let mut check = |what: &str, ok: bool, detail: String| {
        checks.push(Check {
            what: what.into(),
            ok,
            detail,
        })
    };
    if meta.kind == "preventive" {
        let ooms = crashes.iter().filter(|c| c.oom_killed).count();
        check(
            "preventive: no replica OOM-killed",
            ooms == 0,
            format!("{ooms} OOM kills, {} crashes", crashes.len()),
        );
        let n = recycled
            .iter()
            .filter(|i| i["outcome"] == "recycled")
            .count();
        check(
            "preventive: replicas recycled",
            n > 0,
            format!("{n} recycles"),
        );
        let failed = locust.map(|l| l.1);
        check(
            "preventive: no failed request at nginx",
            failed == Some(0),
            format!("{failed:?} failed of {:?}", locust.map(|l| l.0)),
        );
        let m = metric_sum(
            &metrics,
            "healing_recycles_total",
            &[("service", &meta.service)],
        ) - metric_sum(
            &metrics,
            "healing_recycles_total",
            &[("service", &meta.service), ("result", "failed")],
        );
        check(
            "agent metrics agree: recycles",
            m as usize == n,
            format!("metric {m} vs incidents {n}"),
        );
    } else if meta.kind == "load" {
        let ooms = crashes
            .iter()
            .filter(|c| c.oom_killed && c.exit_code == Some(137))
            .count();
        check(
            "load OOM-killed replicas (exit 137 with an oom event)",
            ooms > 0,
            format!("{ooms} of {} crashes", crashes.len()),
        );
    } else {
        check(
            "the killed replica died",
            !crashes.is_empty(),
            format!("{} crashes", crashes.len()),
        );
    }
    let unhealed: Vec<&str> = crashes
        .iter()
        .filter(|c| c.healthy_at.is_none())
        .map(|c| c.name.as_str())
        .collect();
    check(
        "every crash healed and healthy again",
        unhealed.is_empty(),
        format!("unhealed: {unhealed:?}"),
    );
    check(
        "no container outside the service restarted",
        foreign.is_empty(),
        foreign
            .iter()
            .map(|e| format!("{} {}", e.action, e.name))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let uncovered = covering.iter().filter(|c| c.is_none()).count();
    check(
        "every crash has an incident that restarted it",
        uncovered == 0,
        format!("{uncovered} crashes without one"),
    );
    let healed_without_mttr = incidents
        .iter()
        .filter(|i| i["outcome"] == "healed" && i["mttr_seconds"].as_f64().is_none())
        .count();
    check(
        "healed incidents carry their MTTR",
        healed_without_mttr == 0,
        format!("{healed_without_mttr} without"),
    );
    let mut over: Vec<String> = Vec::new();
    for name in restarts
        .iter()
        .map(|r| &r.1)
        .collect::<std::collections::BTreeSet<_>>()
    {
        let starts = incidents
            .iter()
            .flat_map(|inc| inc["timeline"].as_array().cloned().unwrap_or_default())
            .filter(|a| {
                a["target"] == name.as_str()
                    && a["result"] == "ok"
                    && a["detail"]["action"] == "start"
            })
            .count();
        let died = crashes.iter().filter(|c| &c.name == name).count();
        if starts > died {
            over.push(format!("{name}: {starts} starts for {died} crashes"));
        }
    }
    check(
        "no replica started more often than it crashed",
        over.is_empty(),
        over.join("; "),
    );
    let m_restarts = metric_sum(
        &metrics,
        "healing_restarts_total",
        &[("service", &meta.service), ("result", "ok")],
    );
    check(
        "agent metrics agree: restarts",
        m_restarts as usize == restart_actions,
        format!("metric {m_restarts} vs incidents {restart_actions}"),
    );
    let m_incidents = metric_sum(&metrics, "healing_incidents_total", &[]);
    check(
        "agent metrics agree: incidents",
        m_incidents as usize == incidents.len(),
        format!("metric {m_incidents} vs log {}", incidents.len()),
    );
    if meta.decider == "llm" {
        let n = by_mode.get("llm").copied().unwrap_or(0);
        check(
            "the model made the decisions",
            n > 0,
            format!("incidents by mode: {by_mode:?}"),
        );
    } else {
        let n = by_mode.get("runbook").copied().unwrap_or(0);
        check(
            "the runbook made the decisions",
            n > 0 && !by_mode.contains_key("llm"),
            format!("{by_mode:?}"),
        );
    }
    // The path under test must have healed (alerts, or Docker events), and with events off no
    // incident may come from an event. The agent's own resync and retries may help either way.
    let by = |kind: &str| acting.iter().filter(|i| i["trigger"] == kind).count();
    let triggers: BTreeMap<String, usize> = acting.iter().fold(BTreeMap::new(), |mut m, i| {
        *m.entry(i["trigger"].as_str().unwrap_or("?").to_string())
            .or_insert(0) += 1;
        m
    });
    let ok = if meta.path == "alert" {
        by("alert") > 0 && by("event") == 0
    } else {
        by("event") > 0
    };
    // A preventive run heals only what the recycles missed (ideally nothing).
    if meta.kind != "preventive" {
        check(
            &format!("healed through the {} path", meta.path),
            ok,
            format!("acting incidents by trigger: {triggers:?}"),
        );
    }

    Ok(Figures {
        name: meta.name,
        kind: meta.kind,
        path: meta.path,
        decider: meta.decider,
        note: meta.note,
        crashes: crashes.len(),
        oom_kills: crashes.iter().filter(|c| c.oom_killed).count(),
        healed: crashes.len() - unhealed.len(),
        recycles: recycle_times.len(),
        recycle_p50_s: percentile(&recycle_times, 50.0),
        recycle_p95_s: percentile(&recycle_times, 95.0),
        replicas_serving: meta.replicas_serving,
        recovery_p50_s: percentile(&recoveries, 50.0),
        recovery_p95_s: percentile(&recoveries, 95.0),
        recovery_max_s: percentile(&recoveries, 100.0),
        replica_recovery_p50_s: percentile(&replica_recoveries, 50.0),
        replica_recovery_max_s: percentile(&replica_recoveries, 100.0),
        incident_mttr_p50_s: percentile(&incident_mttrs, 50.0),
        detection_p50_s: percentile(&detection, 50.0),
        restarts_outside_service: foreign.len(),
        incidents: incidents.len(),
        incidents_by_mode: by_mode,
        incidents_by_outcome: by_outcome,
        requests: locust.map(|l| l.0),
        failed_requests: locust.map(|l| l.1),
        served_requests: locust.map(|(r, f)| r.saturating_sub(f)),
        users: meta.users,
        failed_share_pct: locust
            .filter(|l| l.0 > 0)
            .map(|(r, f)| 100.0 * f as f64 / r as f64),
        llm_turns_avg: avg(&|i| i["llm"]["turns"].as_f64()),
        llm_prompt_tokens_avg: avg(&|i| i["llm"]["prompt_tokens"].as_f64()),
        llm_output_tokens_avg: avg(&|i| i["llm"]["output_tokens"].as_f64()),
        agent_added_p50_s: percentile(&added, 50.0),
        recoveries_s: recoveries,
        checks,
    })
}

/// Across runs: each preventive run served at least as many requests as each reactive (`load`)
/// run of the same report. The load is a fixed rate per user, so a run that failed requests,
/// or slowed down, served fewer; the one allowance is a request per user, where each user
/// stands when the swarm starts and stops.
pub fn compare_served(runs: &[Figures]) -> Vec<Check> {
    let mut checks = Vec::new();
    for p in runs.iter().filter(|r| r.kind == "preventive") {
        for l in runs.iter().filter(|r| r.kind == "load") {
            let (Some(ps), Some(ls)) = (p.served_requests, l.served_requests) else {
                checks.push(Check {
                    what: format!("{} served at least as many requests as {}", p.name, l.name),
                    ok: false,
                    detail: "no Locust figures".into(),
                });
                continue;
            };
            let slack = p.users.or(l.users).unwrap_or(0);
            checks.push(Check {
                what: format!("{} served at least as many requests as {}", p.name, l.name),
                ok: ps + slack >= ls,
                detail: format!(
                    "{ps} against {ls} ({:+}; allowance {slack}, a request per user)",
                    ps as i64 - ls as i64
                ),
            });
        }
    }
    checks
}

fn f(v: Option<f64>, unit: &str) -> String {
    v.map(|x| format!("{x:.2}{unit}"))
        .unwrap_or_else(|| "-".into())
}

/// How one row of the table reads a run.
type Cell = Box<dyn Fn(&Figures) -> String>;

/// The printed table: one column per run.
pub fn table(runs: &[Figures]) -> String {
    let rows: Vec<(&str, Cell)> = vec![
        (
            "path / decider",
            Box::new(|r| format!("{} / {}", r.path, r.decider)),
        ),
        (
            "crashes seen (OOM)",
            Box::new(|r| format!("{} ({})", r.crashes, r.oom_kills)),
        ),
        ("crashes healed", Box::new(|r| r.healed.to_string())),
        (
            "recycles (p50/p95 healthy)",
            Box::new(|r| {
                if r.recycles == 0 {
                    return "0".into();
                }
                format!(
                    "{} ({} / {})",
                    r.recycles,
                    f(r.recycle_p50_s, " s"),
                    f(r.recycle_p95_s, " s")
                )
            }),
        ),
        (
            "replicas serving at the end",
            Box::new(|r| {
                r.replicas_serving
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into())
            }),
        ),
        (
            "recovery p50 (all healthy)",
            Box::new(|r| f(r.recovery_p50_s, " s")),
        ),
        (
            "recovery p95 (all healthy)",
            Box::new(|r| f(r.recovery_p95_s, " s")),
        ),
        (
            "recovery max (all healthy)",
            Box::new(|r| f(r.recovery_max_s, " s")),
        ),
        (
            "replica recovery p50 / max",
            Box::new(|r| {
                let (p, m) = (
                    f(r.replica_recovery_p50_s, " s"),
                    f(r.replica_recovery_max_s, " s"),
                );
                format!("{p} / {m}")
            }),
        ),
        (
            "agent's incident MTTR p50",
            Box::new(|r| f(r.incident_mttr_p50_s, " s")),
        ),
        (
            "detection p50 (per incident)",
            Box::new(|r| f(r.detection_p50_s, " s")),
        ),
        (
            "restarts outside service",
            Box::new(|r| r.restarts_outside_service.to_string()),
        ),
        (
            "incidents",
            Box::new(|r| format!("{} {:?}", r.incidents, r.incidents_by_outcome)),
        ),
        (
            "failed requests",
            Box::new(|r| match (r.failed_requests, r.requests) {
                (Some(f), Some(n)) => {
                    format!("{f}/{n} ({:.2}%)", r.failed_share_pct.unwrap_or(0.0))
                }
                _ => "-".into(),
            }),
        ),
        (
            "requests served",
            Box::new(|r| {
                r.served_requests
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into())
            }),
        ),
        (
            "model turns / incident",
            Box::new(|r| f(r.llm_turns_avg, "")),
        ),
        (
            "tokens in/out / incident",
            Box::new(
                |r| match (r.llm_prompt_tokens_avg, r.llm_output_tokens_avg) {
                    (Some(p), Some(o)) => format!("{p:.0}/{o:.0}"),
                    _ => "-".into(),
                },
            ),
        ),
        (
            "agent time/run excl. model",
            Box::new(|r| f(r.agent_added_p50_s, " s")),
        ),
        (
            "checks",
            Box::new(|r| {
                let bad = r.checks.iter().filter(|c| !c.ok).count();
                if bad == 0 {
                    "all passed".into()
                } else {
                    format!("{bad} FAILED")
                }
            }),
        ),
    ];
    let width = 28;
    let col = 26;
    let mut out = format!("{:width$}", "");
    for r in runs {
        out.push_str(&format!(" | {:col$}", r.name));
    }
    out.push('\n');
    out.push_str(&"-".repeat(width + runs.len() * (col + 3)));
    out.push('\n');
    for (label, get) in rows {
        out.push_str(&format!("{label:width$}"));
        for r in runs {
            out.push_str(&format!(" | {:col$}", get(r)));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, kind: &str, requests: u64, failed: u64) -> Figures {
        Figures {
            name: name.into(),
            kind: kind.into(),
            requests: Some(requests),
            failed_requests: Some(failed),
            served_requests: Some(requests - failed),
            users: Some(5),
            ..Figures::default()
        }
    }

    #[test]
    fn preventive_runs_are_compared_by_requests_served_with_a_request_per_user_allowed() {
        let verdicts = |p: Figures| -> Vec<bool> {
            let runs = [
                run("alert", "load", 4000, 90),
                run("events", "load", 4001, 0),
                p,
            ];
            compare_served(&runs).iter().map(|c| c.ok).collect()
        };
        // Failures at the reactive run count against it, not for it.
        assert_eq!(
            verdicts(run("preventive", "preventive", 3996, 0)),
            [true, true]
        );
        // Beyond a request per user short: a slower run, whatever its failures.
        assert_eq!(
            verdicts(run("preventive", "preventive", 3990, 0)),
            [true, false]
        );
        assert_eq!(
            verdicts(run("preventive", "preventive", 3904, 0)),
            [false, false]
        );
        let mut blind = run("preventive", "preventive", 0, 0);
        blind.served_requests = None;
        assert_eq!(verdicts(blind), [false, false]);
    }

    #[test]
    fn locust_aggregated_row() {
        let csv = "Type,Name,Request Count,Failure Count,Median Response Time\nGET,/,100,2,5\n,Aggregated,120,3,5\n";
        assert_eq!(locust_totals(csv), Some((120, 3)));
        assert_eq!(locust_totals("Type,Name\n"), None);
    }

    #[test]
    fn metric_sums_match_labels() {
        let m = "# HELP x\nhealing_restarts_total{result=\"ok\",service=\"webapp\"} 4\nhealing_restarts_total{result=\"error\",service=\"webapp\"} 1\nhealing_incidents_total{mode=\"llm\",outcome=\"healed\"} 2\nhealing_incidents_total{mode=\"runbook\",outcome=\"no_action\"} 3\n";
        assert_eq!(
            metric_sum(
                m,
                "healing_restarts_total",
                &[("service", "webapp"), ("result", "ok")]
            ),
            4.0
        );
        assert_eq!(metric_sum(m, "healing_incidents_total", &[]), 5.0);
    }
}
