//! Alerts about something this agent does not heal (another service, another project, no
//! service at all): recorded so that whoever reads `/incidents` knows whose problem it is, never
//! acted on. Handled inline by the webhook, without a task per alert, and bounded three ways: the
//! alerts of one payload are grouped by what they are about (one record per group, at most
//! [`MAX_PER_PAYLOAD`], the last one folding the rest), a group recorded in the last hour is not
//! recorded again, and at most [`RATE_PER_MINUTE`] records a minute go out. A flood of a megabyte of alerts is a handful of
//! records, and the incident store keeps such records apart from real incidents' room.

use std::collections::hash_map::DefaultHasher;
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};

use chrono::{DateTime, Utc};

use super::run::Draft;
use super::Engine;
use crate::incidents::{FailureClass, Mode, Outcome, TriggerRecord};

/// Records one payload may produce; the rest are counted as dropped.
pub const MAX_PER_PAYLOAD: usize = 4;
/// Records per minute, all payloads together.
pub const RATE_PER_MINUTE: usize = 20;
/// Alerts named in one record.
const MAX_ALERTS_PER_RECORD: usize = 10;
/// Groups remembered (the oldest are forgotten first).
const MAX_SEEN: usize = 256;

/// One alert outside the scope: the service it names, why it is not ours, the alert itself.
#[derive(Debug, Clone)]
pub struct OutOfScopeAlert {
    pub named: String,
    pub why: String,
    pub trigger: TriggerRecord,
}

/// Groups recorded lately, and the records of the last minute.
#[derive(Default)]
pub(super) struct Seen {
    groups: VecDeque<(u64, DateTime<Utc>)>,
    recent: VecDeque<DateTime<Utc>>,
}

/// Alerts of one payload about one thing (or the folded rest of a large payload).
struct Group {
    key: u64,
    named: String,
    why: String,
    triggers: Vec<TriggerRecord>,
    count: usize,
}

impl Group {
    /// One more alert of the group.
    fn add(&mut self, t: TriggerRecord) {
        self.count += 1;
        self.name(t);
    }

    /// Names the alert in the record (a bounded few, each once).
    fn name(&mut self, t: TriggerRecord) {
        if self.triggers.len() < MAX_ALERTS_PER_RECORD
            && !self.triggers.iter().any(|x| x.name == t.name)
        {
            self.triggers.push(t);
        }
    }
}

fn key(what: &[(&str, &str)]) -> u64 {
    let mut h = DefaultHasher::new();
    what.hash(&mut h);
    h.finish()
}

impl Engine {
    /// Records the out-of-scope alerts of one webhook payload (see the module's bounds).
    pub async fn out_of_scope(&self, alerts: Vec<OutOfScopeAlert>) {
        let mut groups: Vec<Group> = Vec::new();
        for a in alerts {
            match groups
                .iter_mut()
                .find(|g| g.named == a.named && g.why == a.why)
            {
                Some(g) => g.add(a.trigger),
                None => groups.push(Group {
                    key: key(&[(&a.named, &a.why)]),
                    named: a.named,
                    why: a.why,
                    triggers: vec![a.trigger],
                    count: 1,
                }),
            }
        }
        if groups.len() > MAX_PER_PAYLOAD {
            // The rest of a large payload is one record, known by the set it names.
            let rest = groups.split_off(MAX_PER_PAYLOAD - 1);
            let names: Vec<&str> = rest.iter().map(|g| g.named.as_str()).collect();
            let mut folded = Group {
                key: key(&rest
                    .iter()
                    .map(|g| (g.named.as_str(), g.why.as_str()))
                    .collect::<Vec<_>>()),
                named: format!("({} other services)", rest.len()),
                why: format!(
                    "the alerts are about {} other services ({}{})",
                    rest.len(),
                    names.iter().take(5).copied().collect::<Vec<_>>().join(", "),
                    if names.len() > 5 { ", ..." } else { "" }
                ),
                triggers: Vec::new(),
                count: 0,
            };
            for g in rest {
                folded.count += g.count;
                for t in g.triggers {
                    folded.name(t);
                }
            }
            groups.push(folded);
        }
        let now = self.inner.ctx.clock.now();
        let m = &self.inner.metrics.out_of_scope;
        let mut todo = Vec::new();
        {
            let mut state = self.state();
            if !state.accepting {
                return;
            }
            let seen = &mut state.out_of_scope;
            let hour = now - chrono::Duration::hours(1);
            let minute = now - chrono::Duration::minutes(1);
            seen.groups.retain(|(_, t)| *t > hour);
            seen.recent.retain(|t| *t > minute);
            for g in groups {
                if seen.groups.iter().any(|(x, _)| *x == g.key) {
                    m.with_label_values(&["deduplicated"]).inc();
                    continue;
                }
                if seen.recent.len() >= RATE_PER_MINUTE {
                    m.with_label_values(&["dropped"]).inc();
                    continue;
                }
                if seen.groups.len() >= MAX_SEEN {
                    seen.groups.pop_front();
                }
                seen.groups.push_back((g.key, now));
                seen.recent.push_back(now);
                todo.push(g);
            }
        }
        for g in todo {
            m.with_label_values(&["recorded"]).inc();
            self.record_out_of_scope(&g.named, &g.why, g.triggers, g.count)
                .await;
        }
    }

    async fn record_out_of_scope(
        &self,
        named: &str,
        why: &str,
        triggers: Vec<TriggerRecord>,
        count: usize,
    ) {
        let id = self.next_id("out-of-scope");
        let project = self.inner.scope.project().to_string();
        let alerts = if count > 1 {
            format!("{count} alerts; ")
        } else {
            String::new()
        };
        let note = format!(
            "{alerts}{why}; this agent heals only {} in project {project:?}: route this alert to the owner of {named:?}",
            self.inner.scope.services().collect::<Vec<_>>().join(", ")
        );
        let draft = Draft::new(
            &id,
            named,
            &project,
            triggers,
            Mode::Runbook,
            self.inner.ctx.clock.now(),
        );
        let incident = draft.close(
            Outcome::NoAction,
            FailureClass::OutOfScope,
            None,
            format!("out of scope: {named:?} is not healed by this agent; nothing touched"),
            Vec::new(),
            None,
            Some(note),
        );
        self.record(incident, false).await;
    }
}
