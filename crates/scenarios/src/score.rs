//! Scoring one case: the agent's actions (from Docker) against the expected ones, the end state,
//! and checks on what the agent recorded and notified.
//!
//! A case's actions are *correct* when nothing was done that was not due (no *wrong* action:
//! an action where none was due, on the wrong container, or more times than due) and nothing
//! due was left undone (no *missed* action, every replica that must serve serves at the end).
//! Record checks (incident class, escalation, notification, recorded once, scope note) are
//! scored apart, so "acted right but recorded it badly" stays visible. Checks marked `harness`
//! say whether the fault was injected as intended; when one fails the case is `invalid` and left
//! out of the rates.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::{ActionKind, AgentAction};

/// Which action an expectation accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Want {
    Start,
    Restart,
    /// A paused replica: unpause, or restart (which unpauses too).
    UnpauseOrRestart,
}

impl Want {
    fn accepts(self, kind: &ActionKind) -> bool {
        matches!(
            (self, kind),
            (Want::Start, ActionKind::Start)
                | (Want::Restart, ActionKind::Restart)
                | (
                    Want::UnpauseOrRestart,
                    ActionKind::Unpause | ActionKind::Restart
                )
        )
    }
}

/// `want` of `container`, between `min` and `max` times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expect {
    pub container: String,
    pub want: Want,
    pub min: usize,
    pub max: usize,
}

impl Expect {
    pub fn once(container: &str, want: Want) -> Expect {
        Expect::times(container, want, 1, 1)
    }

    pub fn times(container: &str, want: Want, min: usize, max: usize) -> Expect {
        Expect {
            container: container.to_string(),
            want,
            min,
            max,
        }
    }

    pub fn describe(&self) -> String {
        let n = if self.min == self.max {
            format!("{}x", self.min)
        } else {
            format!("{}-{}x", self.min, self.max)
        };
        format!("{:?} {} {n}", self.want, self.container).to_lowercase()
    }
}

/// The outcome of matching actions to expectations.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ActionScore {
    pub wrong: Vec<String>,
    pub missed: Vec<String>,
}

/// Matches each action (in time order) to an expectation for its container and kind; actions
/// that match none, or exceed an expectation's `max`, are wrong; expectations under `min` are
/// missed, and so is every `must_serve` replica that does not serve at the end.
pub fn score_actions(
    actions: &[AgentAction],
    expect: &[Expect],
    not_serving_at_end: &[String],
    fault_at: f64,
) -> ActionScore {
    let mut counts = vec![0usize; expect.len()];
    let mut score = ActionScore::default();
    for a in actions {
        let at = a.time - fault_at;
        match expect
            .iter()
            .position(|e| e.container == a.container && e.want.accepts(&a.kind))
        {
            Some(i) => {
                counts[i] += 1;
                if counts[i] > expect[i].max {
                    score.wrong.push(format!(
                        "{} of {} at {at:+.1}s: {} times, at most {} due",
                        a.kind.label(),
                        a.container,
                        counts[i],
                        expect[i].max
                    ));
                }
            }
            None => score.wrong.push(format!(
                "{} of {} ({}/{}) at {at:+.1}s where none was due",
                a.kind.label(),
                a.container,
                a.project,
                a.service
            )),
        }
    }
    for (e, n) in expect.iter().zip(&counts) {
        if *n < e.min {
            score
                .missed
                .push(format!("expected {}, saw {n}", e.describe()));
        }
    }
    for name in not_serving_at_end {
        score
            .missed
            .push(format!("{name} does not serve at the end"));
    }
    score
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub what: String,
    pub ok: bool,
    pub detail: String,
    /// About the harness (was the fault injected as intended?), not about the agent.
    pub harness: bool,
}

impl CheckResult {
    pub fn agent(what: impl Into<String>, ok: bool, detail: impl Into<String>) -> Self {
        CheckResult {
            what: what.into(),
            ok,
            detail: detail.into(),
            harness: false,
        }
    }

    pub fn harness(what: impl Into<String>, ok: bool, detail: impl Into<String>) -> Self {
        CheckResult {
            harness: true,
            ..CheckResult::agent(what, ok, detail)
        }
    }
}

/// What a case's record checks look at: the incidents the case added, all incidents (newest
/// first), and the notifications received during the case.
pub struct Records<'a> {
    pub new: &'a [Value],
    pub all: &'a [Value],
    pub notifications: &'a [Value],
}

/// A check on what the agent recorded or notified.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "check")]
pub enum Check {
    /// An incident of the case diagnoses `replica` (or, without a replica, the incident) as
    /// one of `classes`.
    Class {
        replica: Option<String>,
        classes: Vec<String>,
    },
    /// An incident of the case carries an `escalation` (with one of `reasons`, if given) whose
    /// text mentions each of `mentions`.
    Escalation {
        reasons: Vec<String>,
        mentions: Vec<String>,
    },
    /// Between `min` and `max` incidents of the case carry an `escalation` (with one of
    /// `reasons`, if given): escalated once means once, not once per resync.
    Escalations {
        reasons: Vec<String>,
        min: usize,
        max: usize,
    },
    /// An incident of the case ended with one of `outcomes`.
    Outcome { outcomes: Vec<String> },
    /// No incident of the case ended with `outcome` (e.g. never `gave_up`).
    NoOutcome { outcome: String },
    /// Between `min` and `max` notifications arrived during the case.
    Notifications { min: usize, max: usize },
    /// A notification with one of `events` arrived during the case.
    Notified { events: Vec<String> },
    /// Every incident of the case that gave up or escalated was notified (by incident id).
    EscalationsNotified,
    /// Between `min` and `max` incidents were recorded during the case.
    Recorded { min: usize, max: usize },
    /// Every incident of the case is a no-op, and the newest incident overall is one.
    RecordedAsNoOp,
    /// An incident of the case says whose problem it is (class `out_of_scope`, a `scope_note`
    /// mentioning one of `mentions` if given).
    ScopeNote { mentions: Vec<String> },
    /// `text` appears in an incident of the case (the injection kept as data).
    Contains { text: String },
}

const NO_OP: &[&str] = &["no_action", "notified"];

impl Check {
    pub fn evaluate(&self, r: &Records) -> CheckResult {
        match self {
            Check::Class { replica, classes } => {
                let mut seen = Vec::new();
                for inc in r.new {
                    match replica {
                        Some(name) => {
                            for d in inc["diagnosis"].as_array().into_iter().flatten() {
                                if d["name"] == name.as_str() {
                                    seen.push(
                                        d["class"]
                                            .as_str()
                                            .unwrap_or("(no class field)")
                                            .to_string(),
                                    );
                                }
                            }
                        }
                        None => seen.push(
                            inc["class"]
                                .as_str()
                                .unwrap_or("(no class field)")
                                .to_string(),
                        ),
                    }
                }
                let ok = seen.iter().any(|c| classes.contains(c));
                CheckResult::agent(
                    format!(
                        "diagnosed {} as {}",
                        replica.as_deref().unwrap_or("the incident"),
                        classes.join(" or ")
                    ),
                    ok,
                    if seen.is_empty() {
                        "no incident of the case diagnoses it".to_string()
                    } else {
                        format!("classes seen: {}", dedup(seen).join(", "))
                    },
                )
            }
            Check::Escalation { reasons, mentions } => {
                let found: Vec<&Value> = r
                    .new
                    .iter()
                    .map(|i| &i["escalation"])
                    .filter(|e| !e.is_null())
                    .collect();
                let good = found.iter().find(|e| {
                    let text = e.to_string().to_lowercase();
                    (reasons.is_empty()
                        || e["reason"]
                            .as_str()
                            .is_some_and(|x| reasons.iter().any(|r| r == x)))
                        && mentions.iter().all(|m| text.contains(&m.to_lowercase()))
                });
                CheckResult::agent(
                    format!(
                        "escalated{}{}",
                        if reasons.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", reasons.join("|"))
                        },
                        if mentions.is_empty() {
                            String::new()
                        } else {
                            format!(", mentioning {}", mentions.join(" and "))
                        }
                    ),
                    good.is_some(),
                    match (good, found.first()) {
                        (Some(e), _) => short(e),
                        (None, Some(e)) => format!("escalation does not match: {}", short(e)),
                        (None, None) => "no incident of the case carries an escalation".into(),
                    },
                )
            }
            Check::Escalations { reasons, min, max } => {
                let found: Vec<String> = r
                    .new
                    .iter()
                    .filter(|i| !i["escalation"].is_null())
                    .filter(|i| {
                        reasons.is_empty()
                            || i["escalation"]["reason"]
                                .as_str()
                                .is_some_and(|x| reasons.iter().any(|r| r == x))
                    })
                    .map(|i| {
                        format!(
                            "{} ({})",
                            str_of(&i["id"]),
                            str_of(&i["escalation"]["reason"])
                        )
                    })
                    .collect();
                let n = found.len();
                CheckResult::agent(
                    format!(
                        "escalated{} {}",
                        if reasons.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", reasons.join("|"))
                        },
                        times(*min, *max)
                    ),
                    n >= *min && n <= *max,
                    format!(
                        "{n}: {}; incidents: {}",
                        list_or_none(&found),
                        summarize(r.new)
                    ),
                )
            }
            Check::NoOutcome { outcome } => {
                let hits: Vec<String> = r
                    .new
                    .iter()
                    .filter(|i| i["outcome"] == outcome.as_str())
                    .map(|i| str_of(&i["id"]))
                    .collect();
                CheckResult::agent(
                    format!("never {outcome}"),
                    hits.is_empty(),
                    format!(
                        "{outcome}: {}; incidents: {}",
                        list_or_none(&hits),
                        summarize(r.new)
                    ),
                )
            }
            Check::Notifications { min, max } => {
                let seen: Vec<String> = r.notifications.iter().map(notification_event).collect();
                let n = seen.len();
                CheckResult::agent(
                    format!("notified {}", times(*min, *max)),
                    n >= *min && n <= *max,
                    format!("{n}: {}", list_or_none(&seen)),
                )
            }
            Check::Outcome { outcomes } => {
                let seen: Vec<String> = r.new.iter().map(|i| str_of(&i["outcome"])).collect();
                CheckResult::agent(
                    format!("outcome {}", outcomes.join(" or ")),
                    seen.iter().any(|o| outcomes.contains(o)),
                    format!("outcomes: {}", list_or_none(&seen)),
                )
            }
            Check::Notified { events } => {
                let seen: Vec<String> = r.notifications.iter().map(notification_event).collect();
                CheckResult::agent(
                    format!("notified ({})", events.join(" or ")),
                    seen.iter().any(|e| events.contains(e)),
                    format!("notifications: {}", list_or_none(&seen)),
                )
            }
            Check::EscalationsNotified => {
                let due: Vec<String> = r
                    .new
                    .iter()
                    .filter(|i| i["outcome"] == "gave_up" || !i["escalation"].is_null())
                    .map(|i| str_of(&i["id"]))
                    .collect();
                let missing: Vec<&String> = due
                    .iter()
                    .filter(|id| {
                        !r.notifications.iter().any(|n| {
                            n["body"]["incident_id"].as_str() == Some(id.as_str())
                                || n["body"]["text"]
                                    .as_str()
                                    .is_some_and(|t| t.contains(id.as_str()))
                        })
                    })
                    .collect();
                CheckResult::agent(
                    "every gave_up/escalation notified",
                    missing.is_empty(),
                    if due.is_empty() {
                        "none due".to_string()
                    } else if missing.is_empty() {
                        format!("{} notified", due.len())
                    } else {
                        format!(
                            "not notified: {}",
                            missing
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    },
                )
            }
            Check::Recorded { min, max } => {
                let n = r.new.len();
                CheckResult::agent(
                    if min == max {
                        format!("recorded {min} incident(s)")
                    } else {
                        format!("recorded {min}-{max} incident(s)")
                    },
                    n >= *min && n <= *max,
                    format!("{n} new: {}", summarize(r.new)),
                )
            }
            Check::RecordedAsNoOp => {
                let acting: Vec<String> = r
                    .new
                    .iter()
                    .filter(|i| !NO_OP.contains(&i["outcome"].as_str().unwrap_or("")))
                    .map(|i| format!("{} {}", str_of(&i["id"]), str_of(&i["outcome"])))
                    .collect();
                let latest = r
                    .all
                    .first()
                    .map(|i| str_of(&i["outcome"]))
                    .unwrap_or_default();
                CheckResult::agent(
                    "recorded as a no-op",
                    acting.is_empty() && NO_OP.contains(&latest.as_str()),
                    format!(
                        "newest incident: {}; not no-ops: {}",
                        if latest.is_empty() {
                            "none".to_string()
                        } else {
                            latest
                        },
                        list_or_none(&acting)
                    ),
                )
            }
            Check::ScopeNote { mentions } => {
                let notes: Vec<String> = r
                    .new
                    .iter()
                    .filter(|i| i["class"] == "out_of_scope" || !i["scope_note"].is_null())
                    .map(|i| format!("{} ({})", str_of(&i["scope_note"]), str_of(&i["class"])))
                    .collect();
                let ok = r.new.iter().any(|i| {
                    let note = i["scope_note"].as_str().unwrap_or("").to_lowercase();
                    i["class"] == "out_of_scope"
                        && !note.trim().is_empty()
                        && (mentions.is_empty()
                            || mentions.iter().any(|m| note.contains(&m.to_lowercase())))
                });
                CheckResult::agent(
                    format!(
                        "says whose problem it is (out_of_scope{})",
                        if mentions.is_empty() {
                            String::new()
                        } else {
                            format!(", naming {}", mentions.join(" or "))
                        }
                    ),
                    ok,
                    if notes.is_empty() {
                        format!("no out_of_scope incident; incidents: {}", summarize(r.new))
                    } else {
                        notes.join("; ")
                    },
                )
            }
            Check::Contains { text } => {
                let hit = r.new.iter().any(|i| i.to_string().contains(text.as_str()));
                CheckResult::agent(
                    format!("kept {text:?} as data in the incident"),
                    hit,
                    if hit {
                        "found".to_string()
                    } else {
                        format!("not in any of {} new incident(s)", r.new.len())
                    },
                )
            }
        }
    }
}

/// The event a notification reports (`event` of the JSON body, or the first known word of a
/// Slack text).
pub fn notification_event(n: &Value) -> String {
    if let Some(e) = n["body"]["event"].as_str() {
        return e.to_string();
    }
    let text = n["body"]["text"].as_str().unwrap_or("").to_lowercase();
    [
        "escalated",
        "gave_up",
        "gave up",
        "failed",
        "healed",
        "notified",
    ]
    .iter()
    .find(|w| text.contains(*w))
    .map(|w| w.replace(' ', "_"))
    .unwrap_or_else(|| "?".into())
}

/// "once", "1-2 times", "3 times".
fn times(min: usize, max: usize) -> String {
    match (min, max) {
        (1, 1) => "once".into(),
        (a, b) if a == b => format!("{a} times"),
        (a, b) => format!("{a}-{b} times"),
    }
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn short(v: &Value) -> String {
    crate::clients::bounded(&v.to_string())
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// `id outcome class` of each incident, for details.
pub fn summarize(incidents: &[Value]) -> String {
    let v: Vec<String> = incidents
        .iter()
        .map(|i| {
            format!(
                "{} {}{}",
                str_of(&i["id"]),
                str_of(&i["outcome"]),
                i["class"]
                    .as_str()
                    .map(|c| format!("/{c}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    list_or_none(&v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn act(t: f64, kind: ActionKind, c: &str) -> AgentAction {
        AgentAction {
            time: t,
            kind,
            container: c.into(),
            project: "p".into(),
            service: "webapp".into(),
        }
    }

    #[test]
    fn exact_actions_are_correct_extra_and_missing_ones_are_not() {
        let expect = [Expect::once("w1", Want::Start)];
        let ok = score_actions(&[act(1.0, ActionKind::Start, "w1")], &expect, &[], 0.0);
        assert_eq!(ok, ActionScore::default());

        let twice = score_actions(
            &[
                act(1.0, ActionKind::Start, "w1"),
                act(5.0, ActionKind::Start, "w1"),
            ],
            &expect,
            &[],
            0.0,
        );
        assert_eq!(twice.wrong.len(), 1, "{twice:?}");
        assert!(twice.wrong[0].contains("2 times, at most 1"));

        let wrong_target =
            score_actions(&[act(1.0, ActionKind::Restart, "nginx")], &expect, &[], 0.0);
        assert!(wrong_target.wrong[0].contains("where none was due"));
        assert!(wrong_target.missed[0].contains("expected start w1 1x, saw 0"));

        let not_serving = score_actions(
            &[act(1.0, ActionKind::Start, "w1")],
            &expect,
            &["w1".into()],
            0.0,
        );
        assert!(not_serving.missed[0].contains("does not serve"));
    }

    #[test]
    fn a_paused_replica_may_be_unpaused_or_restarted_not_started() {
        let expect = [Expect::once("w1", Want::UnpauseOrRestart)];
        for kind in [ActionKind::Unpause, ActionKind::Restart] {
            assert_eq!(
                score_actions(&[act(1.0, kind, "w1")], &expect, &[], 0.0),
                ActionScore::default()
            );
        }
        let s = score_actions(&[act(1.0, ActionKind::Start, "w1")], &expect, &[], 0.0);
        assert_eq!((s.wrong.len(), s.missed.len()), (1, 1));
    }

    #[test]
    fn record_checks_read_the_contract_fields() {
        let new = vec![json!({
            "id": "i-2", "outcome": "gave_up", "class": "crashed_on_start",
            "diagnosis": [{"name": "w9", "class": "crashed_on_start", "exit_code": 1}],
            "escalation": {"reason": "crash_on_start", "detail": "exit code 1; log: invalid PORT=\"notaport\"", "replicas": ["w9"], "count": 2}
        })];
        let notes = vec![
            json!({"body": {"source": "healstack", "event": "gave_up", "incident_id": "i-2"}}),
        ];
        let r = Records {
            new: &new,
            all: &new,
            notifications: &notes,
        };
        let ok = |c: Check| c.evaluate(&r).ok;
        assert!(ok(Check::Class {
            replica: Some("w9".into()),
            classes: vec!["crashed_on_start".into()]
        }));
        assert!(!ok(Check::Class {
            replica: Some("w9".into()),
            classes: vec!["killed".into()]
        }));
        assert!(ok(Check::Escalation {
            reasons: vec!["crash_on_start".into()],
            mentions: vec!["notaport".into()]
        }));
        assert!(!ok(Check::Escalation {
            reasons: vec!["recurrence".into()],
            mentions: vec![]
        }));
        assert!(ok(Check::Notified {
            events: vec!["gave_up".into(), "escalated".into()]
        }));
        assert!(ok(Check::EscalationsNotified));
        assert!(ok(Check::Recorded { min: 1, max: 1 }));
        assert!(!ok(Check::RecordedAsNoOp));
        assert!(!ok(Check::ScopeNote { mentions: vec![] }));
        assert!(ok(Check::Contains {
            text: "notaport".into()
        }));

        assert!(ok(Check::Escalations {
            reasons: vec![],
            min: 1,
            max: 1
        }));
        assert!(!ok(Check::Escalations {
            reasons: vec!["recurrence".into()],
            min: 1,
            max: 1
        }));
        assert!(!ok(Check::NoOutcome {
            outcome: "gave_up".into()
        }));
        assert!(ok(Check::NoOutcome {
            outcome: "failed".into()
        }));
        assert!(ok(Check::Notifications { min: 1, max: 1 }));
        assert!(!ok(Check::Notifications { min: 2, max: 5 }));

        // One escalation per resync is not "escalated once".
        let per_resync: Vec<Value> = (0..4)
            .map(|k| json!({"id": format!("i-{k}"), "outcome": "failed", "escalation": {"reason": "budget_spent"}}))
            .collect();
        let r4 = Records {
            new: &per_resync,
            all: &per_resync,
            notifications: &[],
        };
        let c = Check::Escalations {
            reasons: vec![],
            min: 1,
            max: 1,
        }
        .evaluate(&r4);
        assert!(!c.ok && c.detail.starts_with("4:"), "{c:?}");

        let unnotified = Records {
            new: &new,
            all: &new,
            notifications: &[],
        };
        assert!(!Check::EscalationsNotified.evaluate(&unnotified).ok);

        let scope = vec![
            json!({"id": "i-3", "outcome": "no_action", "class": "out_of_scope", "scope_note": "nginx is down: not webapp's problem"}),
        ];
        let r = Records {
            new: &scope,
            all: &scope,
            notifications: &[],
        };
        assert!(
            Check::ScopeNote {
                mentions: vec!["nginx".into()]
            }
            .evaluate(&r)
            .ok
        );
        assert!(Check::RecordedAsNoOp.evaluate(&r).ok);
        // An agent before the contract: no class field, and the check says so.
        let old = vec![json!({"id": "i-4", "outcome": "healed", "diagnosis": [{"name": "w1"}]})];
        let r = Records {
            new: &old,
            all: &old,
            notifications: &[],
        };
        let c = Check::Class {
            replica: Some("w1".into()),
            classes: vec!["killed".into()],
        }
        .evaluate(&r);
        assert!(!c.ok && c.detail.contains("no class field"), "{c:?}");
    }

    #[test]
    fn slack_notifications_are_read_by_their_text() {
        let n = json!({"body": {"text": ":rotating_light: *escalated* webapp: p-webapp-1 healed 3 times"}});
        assert_eq!(notification_event(&n), "escalated");
    }
}
