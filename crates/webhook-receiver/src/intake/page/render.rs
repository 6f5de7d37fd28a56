//! The two pages, server-rendered: the login form, and the agent's page (replicas, open
//! escalations, recent incidents with their timelines). Plain HTML and inline CSS, no script; it
//! reloads itself every few seconds.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::html::Html;
use super::view::{OpenEscalation, PageData, ServiceView};
use crate::incidents::{ActionRecord, Incident, ReplicaDiagnosis};

/// Seconds between reloads of the agent's page.
pub const REFRESH_SECS: u32 = 5;
/// Characters of a tool call's arguments or result shown.
const JSON_SHOWN: usize = 400;

const STYLE: &str = "<style>\
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:0 16px 40px;color:#1d2330;background:#f6f7f9}\
h1{font-size:22px;margin:18px 0 4px}h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid #d5d9e0;padding-bottom:4px}\
h3{font-size:14px;margin:14px 0 6px}h4{font-size:13px;margin:12px 0 4px;color:#4a5263}\
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}\
th,td{border:1px solid #e0e3e8;padding:4px 6px;text-align:left;vertical-align:top}td code{overflow-wrap:anywhere}th{background:#eef0f4}\
code,pre{font:12px/1.4 ui-monospace,monospace}pre{background:#fff;border:1px solid #e0e3e8;padding:6px;white-space:pre-wrap;word-break:break-all;margin:4px 0}\
.meta{color:#4a5263;margin:0}.warn{background:#fff4d6;border:1px solid #e8c766;padding:6px 10px;margin:10px 0}\
.badge{display:inline-block;white-space:nowrap;border-radius:3px;padding:0 6px;font-size:12px;font-weight:600;color:#fff;background:#6b7385}\
.ok,.healed,.true{background:#2f8f4e}.bad,.gave_up,.failed,.false,.interrupted{background:#c0392b}.warned,.notified,.dry_run{background:#c77c12}\
details{background:#fff;border:1px solid #d5d9e0;margin:8px 0;padding:6px 10px}summary{cursor:pointer}\
blockquote{margin:4px 0;padding:4px 10px;border-left:3px solid #6b7385;background:#fff}\
form.inline{display:inline;float:right;margin-top:22px}button{font:inherit;padding:3px 10px}\
.login{max-width:420px;margin:80px auto;background:#fff;border:1px solid #d5d9e0;padding:20px}\
.login input{width:100%;box-sizing:border-box;font:inherit;padding:6px;margin:8px 0}.err{color:#c0392b}\
</style>";

/// The form `GET /` shows until a valid login cookie comes with the request.
pub fn login(error: Option<&str>) -> String {
    let mut h = Html::new();
    h.raw("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>healstack agent: log in</title>")
        .raw(STYLE)
        .raw("</head><body><div class=\"login\"><h1>healstack agent</h1>")
        .raw("<p>The agent's page shows its replicas, escalations and incidents. Give the agent's token (<code>WEBHOOK_TOKEN</code>, the one Alertmanager sends) to see them.</p>");
    if let Some(error) = error {
        h.el("<p class=\"err\">", error, "</p>");
    }
    h.raw("<form method=\"post\" action=\"/login\"><label for=\"token\">Token</label>")
        .raw("<input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" autofocus required>")
        .raw("<button type=\"submit\">Log in</button></form>")
        .raw("<p class=\"meta\">The browser keeps a cookie that proves the login (never the token) for 12 hours.</p>")
        .raw("</div></body></html>");
    h.finish()
}

pub fn dashboard(d: &PageData) -> String {
    let mut h = Html::new();
    h.raw("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">")
        .raw("<meta http-equiv=\"refresh\" content=\"")
        .text(REFRESH_SECS)
        .raw("\"><title>healstack agent</title>")
        .raw(STYLE)
        .raw("</head><body>");
    h.raw("<form class=\"inline\" method=\"post\" action=\"/logout\"><button type=\"submit\">Log out</button></form>");
    header(&mut h, d);
    h.raw("<h2>Replicas</h2>");
    for s in &d.services {
        service(&mut h, s);
    }
    escalations(&mut h, d);
    h.raw("<h2>Recent incidents</h2>");
    if d.incidents.is_empty() {
        h.raw("<p class=\"meta\">None yet.</p>");
    }
    // Unfolded: the newest incident, and the newest in which the agent acted (what users come
    // to see); the others open on a click.
    let acted = d.incidents.iter().position(|i| !i.timeline.is_empty());
    for (i, incident) in d.incidents.iter().enumerate() {
        incident_block(&mut h, incident, i == 0 || Some(i) == acted);
    }
    h.raw("</body></html>");
    h.finish()
}

fn header(h: &mut Html, d: &PageData) {
    let a = &d.agent;
    h.raw("<h1>healstack agent</h1><p class=\"meta\">project <b>")
        .text(&a.project)
        .raw("</b> · decides with <b>")
        .text(&a.decider)
        .raw("</b> · Docker access <b>")
        .text(&a.docker_access)
        .raw("</b> · events ")
        .text(on_off(a.docker_events))
        .raw(" · dry run ")
        .text(on_off(a.dry_run))
        .raw(" · ")
        .text(if a.busy { "healing now" } else { "idle" })
        .raw(" · as of ")
        .text(d.now.format("%H:%M:%S UTC"))
        .raw(", reloads every ")
        .text(REFRESH_SECS)
        .raw(" s</p>");
    if a.webhook_open {
        h.raw("<p class=\"warn\">The webhook takes alerts without the token (<code>WEBHOOK_AUTH=none</code>): anyone who reaches this port can post alerts.</p>");
    }
    for w in &a.warnings {
        h.el("<p class=\"warn\">", w, "</p>");
    }
}

fn service(h: &mut Html, s: &ServiceView) {
    h.el("<h3>", &s.service, "</h3>");
    let rows = match &s.replicas {
        Ok(rows) => rows,
        Err(why) => {
            h.el("<p class=\"warn\">", why, "</p>");
            return;
        }
    };
    if rows.is_empty() {
        h.raw("<p class=\"meta\">No replica exists.</p>");
        return;
    }
    h.raw("<table><tr><th>replica</th><th>status</th><th>health</th><th>serving</th><th>class</th><th>why</th><th>exit code</th><th>restarts</th><th>up for</th></tr>");
    for r in rows {
        let d = &r.diagnosis;
        h.el("<tr><td>", &d.name, "</td>")
            .el("<td>", &d.status, "</td>")
            .el("<td>", d.health.as_deref().unwrap_or("-"), "</td>")
            .raw("<td>")
            .raw(if r.serving {
                "<span class=\"badge ok\">yes</span>"
            } else {
                "<span class=\"badge bad\">no</span>"
            })
            .raw("</td>")
            .el("<td>", d.class.as_str(), "</td>")
            .el("<td>", &d.reason, "</td>")
            .el("<td>", opt(d.exit_code), "</td>")
            .el("<td>", d.restart_count, "</td>")
            .el(
                "<td>",
                d.uptime_seconds.map_or("-".into(), secs),
                "</td></tr>",
            );
    }
    h.raw("</table>");
}

fn escalations(h: &mut Html, d: &PageData) {
    h.raw("<h2>Open escalations</h2>");
    if d.escalations.is_empty() {
        h.raw("<p class=\"meta\">None: nothing waits for a human.</p>");
        return;
    }
    h.raw("<p class=\"meta\">A give-up stands while its replica does not serve (after fixing the cause: <code>POST /reset?replica=NAME</code> with the token); other escalations for the escalation window (")
        .text(secs(d.window.as_secs_f64()))
        .raw(").</p><table><tr><th>since</th><th>reason</th><th>replicas (serving now?)</th><th>what the agent saw</th><th>count</th><th>incident</th></tr>");
    for e in &d.escalations {
        escalation_row(h, e);
    }
    h.raw("</table>");
}

fn escalation_row(h: &mut Html, e: &OpenEscalation) {
    h.el("<tr><td>", e.at.format("%Y-%m-%d %H:%M:%S UTC"), "</td>")
        .el(
            "<td><span class=\"badge bad\">",
            e.reason.as_str(),
            "</span></td><td>",
        );
    for (name, serving) in &e.replicas {
        let state = match serving {
            Some(true) => "serving",
            Some(false) => "down",
            None => "unknown",
        };
        h.text(name).raw(" (").text(state).raw(")<br>");
    }
    h.el("</td><td>", &e.detail, "</td>")
        .el("<td>", e.count, "</td>")
        .el("<td><code>", &e.incident, "</code></td></tr>");
}

fn incident_block(h: &mut Html, i: &Incident, open: bool) {
    h.raw(if open {
        "<details open><summary>"
    } else {
        "<details><summary>"
    })
    .text(i.started_at.format("%Y-%m-%d %H:%M:%S UTC"))
    .raw(" <span class=\"badge ")
    .text(i.outcome.as_str())
    .raw("\">")
    .text(i.outcome.as_str())
    .raw("</span> <b>")
    .text(i.class.as_str())
    .raw("</b> · ")
    .text(&i.service)
    .raw(" · by ")
    .text(i.mode.as_str())
    .raw(" · ");
    match i.mttr_seconds {
        Some(mttr) => h.raw("recovered in <b>").text(secs(mttr)).raw("</b> · "),
        None => h,
    };
    h.text(&i.summary).raw("</summary>");

    h.el("<p class=\"meta\">incident <code>", &i.id, "</code>")
        .raw(" · action level ")
        .text(i.action_level.as_str())
        .raw(" · the agent's run took ")
        .text(secs(i.run_seconds));
    if let Some(at) = i.resolved_at {
        h.raw(" · resolved at ").text(hms(at));
    }
    h.raw("</p>");

    h.raw("<h4>Triggers</h4><ul>");
    for t in &i.triggers {
        h.el("<li>", hms(t.at), " ")
            .el("<b>", t.kind.as_str(), "</b> ")
            .text(&t.name);
        if let Some(c) = &t.container {
            h.el(" on <code>", c, "</code>");
        }
        if let Some(s) = &t.summary {
            h.el(": ", s, "");
        }
        h.raw("</li>");
    }
    h.raw("</ul>");

    h.raw("<h4>Evidence</h4>");
    evidence(h, &i.diagnosis);
    model(h, i);
    timeline(h, &i.timeline);

    let verify: Vec<&ActionRecord> = i
        .timeline
        .iter()
        .filter(|a| a.action.starts_with("verify"))
        .collect();
    h.raw("<h4>Verification</h4>");
    if verify.is_empty() {
        h.raw("<p class=\"meta\">No verification step (nothing was acted on).</p>");
    }
    for v in verify {
        h.el("<p>", hms(v.at), ": ")
            .el("<b>", &v.result, "</b> ")
            .el("<code>", json_text(&v.detail), "</code></p>");
    }

    if let Some(e) = &i.escalation {
        h.el("<h4>Escalation: ", e.reason.as_str(), "</h4>")
            .el("<p>", &e.detail, "")
            .el(" (", e.count, " times; ")
            .text(e.replicas.join(", "))
            .raw(")</p>");
    }
    if let Some(note) = &i.scope_note {
        h.el("<p><b>Out of scope:</b> ", note, "</p>");
    }
    if !i.notifications.is_empty() {
        h.el(
            "<p class=\"meta\">notified: ",
            i.notifications.join(", "),
            "</p>",
        );
    }
    h.raw("</details>");
}

fn evidence(h: &mut Html, diagnosis: &[ReplicaDiagnosis]) {
    if diagnosis.is_empty() {
        h.raw("<p class=\"meta\">No replica was looked at.</p>");
        return;
    }
    h.raw("<table><tr><th>replica</th><th>status</th><th>exit</th><th>OOM-killed</th><th>health</th><th>class</th><th>action</th><th>why</th><th>probe</th></tr>");
    for d in diagnosis {
        h.el("<tr><td>", &d.name, "</td>")
            .el("<td>", &d.status, "</td>")
            .el("<td>", opt(d.exit_code), "</td>")
            .el("<td>", d.oom_killed, "</td>")
            .el("<td>", d.health.as_deref().unwrap_or("-"), "</td>")
            .el("<td>", d.class.as_str(), "</td>")
            .el("<td>", d.action.as_str(), "</td>")
            .el("<td>", &d.reason, "</td><td>");
        if let Some(p) = &d.probe {
            h.text(if p.ok { "ok" } else { "failed" })
                .raw(" ")
                .text(p.status.map(|s| s.to_string()).unwrap_or_default())
                .raw(" ")
                .text(p.error.as_deref().unwrap_or(""));
        }
        h.raw("</td></tr>");
    }
    h.raw("</table>");
    for d in diagnosis {
        if let Some(out) = &d.health_output {
            h.el(
                "<p class=\"meta\">last failing healthcheck of <code>",
                &d.name,
                "</code>:</p>",
            )
            .el("<pre>", out, "</pre>");
        }
        if !d.logs_tail.is_empty() {
            h.el(
                "<p class=\"meta\">last log lines of <code>",
                &d.name,
                "</code>:</p>",
            )
            .el("<pre>", d.logs_tail.join("\n"), "</pre>");
        }
    }
}

fn model(h: &mut Html, i: &Incident) {
    if let Some(llm) = &i.llm {
        h.raw("<h4>The model</h4><p>")
            .text(&llm.provider)
            .raw(" <code>")
            .text(&llm.model)
            .raw("</code>: ")
            .text(llm.turns)
            .raw(" turns, ")
            .text(llm.prompt_tokens)
            .raw(" tokens in, ")
            .text(llm.output_tokens)
            .raw(" out, ")
            .text(secs(llm.model_seconds))
            .raw(" waiting for it; ended: ")
            .text(&llm.ended)
            .raw("</p>");
        if let Some(answer) = &llm.summary {
            h.el(
                "<p class=\"meta\">its answer:</p><blockquote>",
                answer,
                "</blockquote>",
            );
        }
    }
    if let Some(why) = &i.fallback_reason {
        h.el("<p><b>Fell back to the runbook:</b> ", why, "</p>");
    }
}

fn timeline(h: &mut Html, steps: &[ActionRecord]) {
    h.raw("<h4>Timeline: tool calls and actions</h4>");
    if steps.is_empty() {
        h.raw("<p class=\"meta\">Nothing was called.</p>");
        return;
    }
    h.raw("<table><tr><th>at</th><th>by</th><th>call</th><th>target</th><th>result</th><th>arguments</th><th>answer</th></tr>");
    for s in steps {
        h.el("<tr><td>", hms(s.at), "</td>")
            .el("<td>", &s.by, "</td>")
            .el("<td><b>", &s.action, "</b></td>")
            .el("<td>", s.target.as_deref().unwrap_or("-"), "</td>")
            .raw("<td><span class=\"badge ")
            .text(if s.result == "ok" { "ok" } else { "warned" })
            .raw("\">")
            .text(&s.result)
            .raw("</span></td>")
            .el("<td><code>", json_text(&s.args), "</code></td>")
            .el("<td><code>", json_text(&s.detail), "</code></td></tr>");
    }
    h.raw("</table>");
}

fn json_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => crate::text::bounded(s, JSON_SHOWN),
        v => crate::text::bounded(&v.to_string(), JSON_SHOWN),
    }
}

fn hms(t: DateTime<Utc>) -> String {
    t.format("%H:%M:%S%.3f").to_string()
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// `0.85 s`, `12.3 s`, `4 min 5 s`, `2 h 3 min`.
fn secs(s: f64) -> String {
    if s < 60.0 {
        return format!("{s:.2} s").replace(".00 s", " s");
    }
    let whole = s.round() as u64;
    let (big, small, units) = match whole {
        ..=3599 => (whole / 60, whole % 60, ("min", "s")),
        _ => (whole / 3600, whole % 3600 / 60, ("h", "min")),
    };
    match small {
        0 => format!("{big} {}", units.0),
        _ => format!("{big} {} {small} {}", units.0, units.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(secs(0.851), "0.85 s");
        assert_eq!(secs(12.0), "12 s");
        assert_eq!(secs(245.0), "4 min 5 s");
        assert_eq!(secs(7380.0), "2 h 3 min");
        assert_eq!(secs(600.0), "10 min");
        assert_eq!(secs(7200.0), "2 h");
    }

    #[test]
    fn the_login_form_escapes_its_message() {
        let page = login(Some("<script>x</script>"));
        assert!(page.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(!page.contains("<script>"));
    }
}
