//! Scores per scenario and overall, per mode: the table (text and Markdown) and summary.json.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::load::Leg;
use crate::percentile;
use crate::runner::CaseResult;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub mode: String,
    /// A scenario's name, or `all`.
    pub scenario: String,
    /// Cases scored (not `invalid`, not `error`).
    pub cases: usize,
    pub invalid: usize,
    pub errors: usize,
    pub correct_action_rate: Option<f64>,
    pub wrong_action_rate: Option<f64>,
    pub missed_rate: Option<f64>,
    /// Cases whose record checks (class, escalation, notification, ...) all passed.
    pub records_ok_rate: Option<f64>,
    /// Actions and records right.
    pub fully_correct_rate: Option<f64>,
    pub time_to_fix_p50_s: Option<f64>,
    pub time_to_fix_p95_s: Option<f64>,
    pub time_to_fix_samples: usize,
    /// Incidents with a model conversation, and their mean round trips and tokens.
    pub llm_incidents: usize,
    pub round_trips_per_incident: Option<f64>,
    pub tokens_per_incident: Option<f64>,
    pub fallback_incidents: usize,
    pub crosscheck_mismatches: usize,
}

fn rate(n: usize, of: usize) -> Option<f64> {
    (of > 0).then(|| n as f64 / of as f64)
}

pub fn row(mode: &str, scenario: &str, cases: &[&CaseResult]) -> Row {
    let scored: Vec<&&CaseResult> = cases
        .iter()
        .filter(|c| c.verdict != "invalid" && c.verdict != "error")
        .collect();
    let n = scored.len();
    let count = |f: &dyn Fn(&CaseResult) -> bool| scored.iter().filter(|c| f(c)).count();
    let ttf: Vec<f64> = scored
        .iter()
        .flat_map(|c| c.time_to_fix_s.iter().copied())
        .collect();
    let llm_incidents: usize = scored.iter().map(|c| c.llm_incidents).sum();
    let turns: u64 = scored.iter().map(|c| c.llm_turns).sum();
    let tokens: u64 = scored.iter().map(|c| c.llm_tokens).sum();
    Row {
        mode: mode.into(),
        scenario: scenario.into(),
        cases: n,
        invalid: cases.iter().filter(|c| c.verdict == "invalid").count(),
        errors: cases.iter().filter(|c| c.verdict == "error").count(),
        correct_action_rate: rate(count(&|c| c.correct_action), n),
        wrong_action_rate: rate(count(&|c| !c.wrong.is_empty()), n),
        missed_rate: rate(count(&|c| !c.missed.is_empty()), n),
        records_ok_rate: rate(count(&|c| c.records_ok), n),
        fully_correct_rate: rate(count(&|c| c.verdict == "correct"), n),
        time_to_fix_p50_s: percentile(&ttf, 50.0),
        time_to_fix_p95_s: percentile(&ttf, 95.0),
        time_to_fix_samples: ttf.len(),
        llm_incidents,
        round_trips_per_incident: rate(turns as usize, llm_incidents),
        tokens_per_incident: rate(tokens as usize, llm_incidents),
        fallback_incidents: scored.iter().map(|c| c.fallback_incidents).sum(),
        crosscheck_mismatches: scored.iter().map(|c| c.crosscheck.len()).sum(),
    }
}

/// One row per (mode, scenario) in suite order, then one `all` row per mode.
pub fn rows(results: &[CaseResult]) -> Vec<Row> {
    let mut modes: Vec<&str> = Vec::new();
    let mut scenarios: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in results {
        if !modes.contains(&r.mode.as_str()) {
            modes.push(&r.mode);
        }
        let s = scenarios.entry(&r.mode).or_default();
        if !s.contains(&r.scenario.as_str()) {
            s.push(&r.scenario);
        }
    }
    let mut out = Vec::new();
    for mode in &modes {
        for scenario in &scenarios[mode] {
            let cases: Vec<&CaseResult> = results
                .iter()
                .filter(|r| r.mode == *mode && r.scenario == *scenario)
                .collect();
            out.push(row(mode, scenario, &cases));
        }
        let all: Vec<&CaseResult> = results.iter().filter(|r| r.mode == *mode).collect();
        out.push(row(mode, "all", &all));
    }
    out
}

fn pct(x: Option<f64>) -> String {
    x.map(|x| format!("{:.0}%", x * 100.0))
        .unwrap_or_else(|| "-".into())
}

fn secs(x: Option<f64>) -> String {
    x.map(|x| format!("{x:.1} s")).unwrap_or_else(|| "-".into())
}

fn num(x: Option<f64>, digits: usize) -> String {
    x.map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

const HEADERS: [&str; 11] = [
    "mode",
    "scenario",
    "cases",
    "correct action",
    "wrong action",
    "missed",
    "records ok",
    "time to fix p50",
    "p95",
    "round trips / incident",
    "tokens / incident",
];

fn cells(r: &Row) -> [String; 11] {
    let extra = match (r.invalid, r.errors) {
        (0, 0) => String::new(),
        (i, 0) => format!(" (+{i} invalid)"),
        (0, e) => format!(" (+{e} error)"),
        (i, e) => format!(" (+{i} invalid, {e} error)"),
    };
    [
        r.mode.clone(),
        if r.scenario == "all" {
            "**all**".into()
        } else {
            r.scenario.clone()
        },
        format!("{}{extra}", r.cases),
        pct(r.correct_action_rate),
        pct(r.wrong_action_rate),
        pct(r.missed_rate),
        pct(r.records_ok_rate),
        secs(r.time_to_fix_p50_s),
        secs(r.time_to_fix_p95_s),
        num(r.round_trips_per_incident, 1),
        num(r.tokens_per_incident, 0),
    ]
}

pub fn markdown(rows: &[Row]) -> String {
    let mut s = format!("| {} |\n", HEADERS.join(" | "));
    s.push_str(&format!(
        "|{}\n",
        HEADERS
            .iter()
            .enumerate()
            .map(|(i, _)| if i < 2 { "---|" } else { "---:|" })
            .collect::<String>()
    ));
    for r in rows {
        s.push_str(&format!("| {} |\n", cells(r).join(" | ")));
    }
    s
}

pub fn text(rows: &[Row]) -> String {
    let table: Vec<[String; 11]> = rows
        .iter()
        .map(|r| {
            let mut c = cells(r);
            c[1] = c[1].replace("**", "");
            c
        })
        .collect();
    let mut widths: Vec<usize> = HEADERS.iter().map(|h| h.len()).collect();
    for c in &table {
        for (i, cell) in c.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |c: &[String]| {
        c.iter()
            .enumerate()
            .map(|(i, cell)| {
                if i < 2 {
                    format!("{cell:<w$}", w = widths[i])
                } else {
                    format!("{cell:>w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut s = line(&HEADERS.map(String::from));
    s.push('\n');
    for c in &table {
        s.push_str(&line(c));
        s.push('\n');
    }
    s
}

/// The legs of the sustained-load cases (agent and restart policy side by side), with the
/// case's mode, users, seconds and verdict.
pub struct LoadRow {
    pub mode: String,
    pub case: String,
    pub verdict: String,
    pub load_secs: u64,
    pub leg: Leg,
}

pub fn load_rows(results: &[CaseResult]) -> Vec<LoadRow> {
    let mut out = Vec::new();
    for r in results.iter().filter(|r| r.scenario == "sustained_load") {
        let legs: Vec<Leg> = r
            .figures
            .get("legs")
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .unwrap_or_default();
        let secs = r
            .figures
            .get("load_secs")
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        // The agent first, then the restart policy, whatever order they ran in.
        let mut legs = legs;
        legs.sort_by_key(|l| l.healer != crate::load::Healer::Agent);
        for leg in legs {
            out.push(LoadRow {
                mode: r.mode.clone(),
                case: r.case.clone(),
                verdict: r.verdict.clone(),
                load_secs: secs,
                leg,
            });
        }
    }
    out
}

const LOAD_HEADERS: [&str; 10] = [
    "load",
    "healed by",
    "requests served (2xx)",
    "seconds with no replica serving",
    "load end to 3/3 healthy",
    "deaths (OOM kills)",
    "restarts: agent / Docker",
    "agent incidents",
    "/healthz after",
    "verdict",
];

fn load_cells(r: &LoadRow) -> [String; 10] {
    let l = &r.leg;
    [
        format!("{} users, {} s", l.users, r.load_secs),
        l.healer.label().to_string(),
        match l.served_pct {
            Some(p) => format!("{p:.1} % of {:.0}", l.requests),
            None => "-".into(),
        },
        format!("{:.0} of {:.0}", l.no_replica_s, l.load_s),
        match l.healthy_after_s {
            Some(t) => format!("{t:.1} s"),
            None => format!("{}/3 after {:.0} s", l.healthy_at_end, l.recovery_waited_s),
        },
        format!("{} ({})", l.deaths, l.oom_kills),
        format!("{} / {}", l.starts_by_agent, l.starts_by_docker),
        if l.incidents.is_empty() {
            "-".into()
        } else {
            l.incidents
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        },
        l.healthz_status.clone().unwrap_or_else(|| "-".into()),
        if l.healer == crate::load::Healer::Agent {
            r.verdict.clone()
        } else {
            String::new()
        },
    ]
}

/// The side-by-side table, as text (empty without sustained-load cases).
pub fn load_text(results: &[CaseResult]) -> String {
    let rows = load_rows(results);
    if rows.is_empty() {
        return String::new();
    }
    let table: Vec<Vec<String>> = rows.iter().map(|r| load_cells(r).to_vec()).collect();
    text_table(
        "sustained load: the agent against Docker's restart policy",
        &LOAD_HEADERS,
        &table,
    )
}

/// A titled table with columns padded to their widest cell.
fn text_table(title: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for c in rows {
        for (i, cell) in c.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |c: &[String]| {
        c.iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut s = format!("{title}\n");
    s.push_str(&line(
        &headers.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
    ));
    s.push('\n');
    for c in rows {
        s.push_str(&line(c));
        s.push('\n');
    }
    s
}

/// A Markdown table whose first `left` columns are left-aligned and the rest right-aligned.
fn markdown_table(headers: &[&str], left: usize, rows: &[Vec<String>]) -> String {
    let mut s = format!("| {} |\n", headers.join(" | "));
    s.push_str(&format!(
        "|{}\n",
        (0..headers.len())
            .map(|i| if i < left { "---|" } else { "---:|" })
            .collect::<String>()
    ));
    for r in rows {
        s.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    s
}

/// The side-by-side table, as Markdown (empty without sustained-load cases).
pub fn load_markdown(results: &[CaseResult]) -> String {
    let rows = load_rows(results);
    if rows.is_empty() {
        return String::new();
    }
    let table: Vec<Vec<String>> = rows.iter().map(|r| load_cells(r).to_vec()).collect();
    markdown_table(&LOAD_HEADERS, 2, &table)
}

const PREVENTIVE_HEADERS: [&str; 9] = [
    "case",
    "healed by",
    "load",
    "requests",
    "failed",
    "served",
    "OOM kills",
    "recycles (drained / SIGKILL at the stop timeout / OOM kill during it)",
    "verdict",
];

/// The legs of the preventive cases, one row each: the figures the issue asks for (requests,
/// failed, OOM kills, recycles, served), and the `recycle_behind` escalations under the table.
fn preventive_rows(results: &[CaseResult]) -> (Vec<[String; 9]>, Vec<String>) {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for r in results.iter().filter(|r| r.scenario == "preventive") {
        let legs: Vec<Leg> = r
            .figures
            .get("legs")
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .unwrap_or_default();
        if legs.is_empty() {
            rows.push([
                r.case.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                r.verdict.clone(),
            ]);
        }
        for (k, l) in legs.iter().enumerate() {
            let preventive = l.healer == crate::load::Healer::Preventive;
            rows.push([
                r.case.clone(),
                l.healer.label().to_string(),
                format!("{} users, {:.0} s", l.users, l.load_s),
                format!("{:.0}", l.requests),
                format!("{:.0}", l.failed),
                l.served_pct
                    .map(|p| format!("{p:.2} %"))
                    .unwrap_or_else(|| "-".into()),
                l.oom_kills.to_string(),
                if preventive {
                    format!(
                        "{} ({} / {} / {})",
                        l.recycles, l.recycles_drained, l.recycles_killed, l.recycles_oom
                    )
                } else {
                    "-".into()
                },
                if k == 0 {
                    r.verdict.clone()
                } else {
                    String::new()
                },
            ]);
            for b in &l.behind {
                notes.push(format!("{}: recycle_behind: {b}", r.case));
            }
        }
    }
    (rows, notes)
}

/// The preventive cases as text (empty without them).
pub fn preventive_text(results: &[CaseResult]) -> String {
    let (rows, notes) = preventive_rows(results);
    if rows.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = rows.into_iter().map(|r| r.to_vec()).collect();
    let mut s = text_table(
        "preventive recycling under load",
        &PREVENTIVE_HEADERS,
        &rows,
    );
    for n in &notes {
        s.push_str(n);
        s.push('\n');
    }
    s
}

/// The preventive cases as Markdown (empty without them).
pub fn preventive_markdown(results: &[CaseResult]) -> String {
    let (rows, notes) = preventive_rows(results);
    if rows.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = rows.into_iter().map(|r| r.to_vec()).collect();
    let mut s = markdown_table(&PREVENTIVE_HEADERS, 3, &rows);
    for n in &notes {
        s.push_str(&format!("\n{n}\n"));
    }
    s
}

/// Every case that was not fully correct, with why: what the table cannot say.
pub fn failures(results: &[CaseResult]) -> String {
    let mut s = String::new();
    for r in results.iter().filter(|r| r.verdict != "correct") {
        s.push_str(&format!(
            "{} {}/{}: {}\n",
            r.mode, r.scenario, r.case, r.verdict
        ));
        if let Some(e) = &r.error {
            s.push_str(&format!("    error: {e}\n"));
        }
        for w in &r.wrong {
            s.push_str(&format!("    wrong: {w}\n"));
        }
        for m in &r.missed {
            s.push_str(&format!("    missed: {m}\n"));
        }
        for c in r.checks.iter().filter(|c| !c.ok) {
            s.push_str(&format!(
                "    {}failed: {}: {}\n",
                if c.harness { "harness " } else { "" },
                c.what,
                c.detail
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(mode: &str, scenario: &str, verdict: &str, ttf: &[f64]) -> CaseResult {
        let wrong = if verdict.contains("wrong") {
            vec!["x".to_string()]
        } else {
            vec![]
        };
        let missed = if verdict.contains("missed") {
            vec!["y".to_string()]
        } else {
            vec![]
        };
        CaseResult {
            mode: mode.into(),
            scenario: scenario.into(),
            case: "c".into(),
            about: String::new(),
            verdict: verdict.into(),
            correct_action: wrong.is_empty() && missed.is_empty() && verdict != "invalid",
            records_ok: verdict == "correct",
            expected: vec![],
            actions: vec![],
            wrong,
            missed,
            checks: vec![],
            time_to_fix_s: ttf.to_vec(),
            timed_out: false,
            incidents: vec![],
            notifications: vec![],
            llm_incidents: 2,
            llm_turns: 5,
            llm_tokens: 3000,
            fallback_incidents: 0,
            crosscheck: vec![],
            rss_before_bytes: None,
            rss_after_bytes: None,
            figures: Default::default(),
            duration_s: 1.0,
            error: None,
        }
    }

    #[test]
    fn rates_leave_invalid_cases_out() {
        let results = vec![
            case("runbook", "killed", "correct", &[1.0]),
            case("runbook", "killed", "wrong", &[3.0]),
            case("runbook", "hung", "records", &[2.0]),
            case("runbook", "hung", "invalid", &[]),
            case("llm", "killed", "wrong+missed", &[]),
        ];
        let rows = rows(&results);
        let names: Vec<_> = rows
            .iter()
            .map(|r| format!("{}/{}", r.mode, r.scenario))
            .collect();
        assert_eq!(
            names,
            [
                "runbook/killed",
                "runbook/hung",
                "runbook/all",
                "llm/killed",
                "llm/all"
            ]
        );
        let all = &rows[2];
        assert_eq!((all.cases, all.invalid), (3, 1));
        assert_eq!(all.correct_action_rate, Some(2.0 / 3.0));
        assert_eq!(all.wrong_action_rate, Some(1.0 / 3.0));
        assert_eq!(all.fully_correct_rate, Some(1.0 / 3.0));
        assert_eq!(all.time_to_fix_p50_s, Some(2.0));
        assert_eq!(all.round_trips_per_incident, Some(15.0 / 6.0));
        let llm = &rows[4];
        assert_eq!(
            (llm.wrong_action_rate, llm.missed_rate),
            (Some(1.0), Some(1.0))
        );
        let md = markdown(&rows);
        assert!(md.contains("| runbook | **all** | 3 (+1 invalid) | 67% | 33% | 0% | 33% | 2.0 s | 3.0 s | 2.5 | 1500 |"), "{md}");
        assert!(text(&rows).lines().count() == rows.len() + 1);
        assert!(failures(&results).contains("llm killed/c: wrong+missed"));
    }

    #[test]
    fn tables_pad_text_columns_and_align_markdown_numbers_right() {
        let rows = vec![
            vec!["users20".to_string(), "1".to_string()],
            vec!["a".to_string(), "12345".to_string()],
        ];
        let t = text_table("title", &["case", "n"], &rows);
        assert_eq!(t, "title\ncase     n    \nusers20  1    \na        12345\n");
        let md = markdown_table(&["case", "n"], 1, &rows);
        assert_eq!(
            md,
            "| case | n |\n|---|---:|\n| users20 | 1 |\n| a | 12345 |\n"
        );
    }
}
