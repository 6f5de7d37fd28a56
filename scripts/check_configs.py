#!/usr/bin/env python3
"""Checks of the stack's configuration files that no tool of their own makes.

    check_configs.py        run every check below; exit 1 on the first report of failures

- .env.example: no active assignment (a value written out there would freeze today's default
  in every .env copied from it); every commented assignment is exactly `#NAME=value`, so
  uncommenting it gives that value and nothing else (a trailing remark would become part of
  the value, e.g. of an API key); and it lists exactly the variables docker-compose.yaml
  reads (interpolated `${NAME...}` or passed through as `NAME:`), so none is undocumented.
- Alert rules: every alert has a `runbook_url` pointing at its own section of docs/runbook.md
  (which must exist) and a `dashboard` link built from the published Grafana port (the
  stack-urls series, never a literal localhost:3000); webapp alerts carry `service: webapp`
  (the agent heals the service an alert names), the agent's own carry `component:
  healing-agent`; severities say who acts (`critical` pages a person, so it waits at least a
  minute; webapp alerts, which the agent heals, are never critical; `none` for the Watchdog),
  and a `Watchdog` alert always fires (`vector(1)`).

Standard library plus PyYAML (Debian: python3-yaml).
"""

import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Read by Compose itself, not by the compose file.
COMPOSE_OWN = {"COMPOSE_PROJECT_NAME", "COMPOSE_FILE"}
NAME = r"[A-Z][A-Z0-9_]*"


def env_example():
    errors, listed = [], {}
    path = ROOT / ".env.example"
    for n, line in enumerate(path.read_text().splitlines(), 1):
        where = f".env.example:{n}"
        if not line.strip():
            continue
        if not line.startswith("#"):
            errors.append(f"{where}: active line {line!r}: comment it out, so the default applies")
            continue
        body = line[1:]
        m = re.match(rf"^\s*({NAME})\s*=(.*)$", body)
        if not m:
            continue  # prose
        name, value = m.groups()
        if body != f"{name}={value}":
            errors.append(f"{where}: write `#{name}=...` (no space around the name): uncommented it must be NAME=value")
        if re.search(r"\s", value) or "#" in value:
            errors.append(f"{where}: {name}'s value {value!r} has text after it: uncommented, it would all be the value")
        if name in listed:
            errors.append(f"{where}: {name} listed twice (also line {listed[name]})")
        listed[name] = n
    return errors, set(listed)


def compose_variables():
    text = (ROOT / "docker-compose.yaml").read_text()
    names = set(re.findall(rf"\$\{{({NAME})", text))
    doc = yaml.safe_load(text)
    for service in doc["services"].values():
        # Passed through from the caller's environment when written without a value: the
        # container's environment, and build arguments.
        build = service.get("build") if isinstance(service.get("build"), dict) else {}
        for env in (service.get("environment") or {}, build.get("args") or {}):
            if isinstance(env, dict):
                names |= {k for k, v in env.items() if v is None}
            else:
                names |= {e for e in env if "=" not in e}
    return names


def check_env():
    errors, listed = env_example()
    used = compose_variables()
    for name in sorted(used - listed):
        errors.append(f".env.example does not list {name}, which docker-compose.yaml reads")
    for name in sorted(listed - used - COMPOSE_OWN):
        errors.append(f".env.example lists {name}, which docker-compose.yaml never reads (it would have no effect)")
    if not errors:
        print(f"ok  .env.example: {len(listed)} variables, all commented out, each exactly NAME=value, matching docker-compose.yaml")
    return errors


def anchors(markdown):
    # GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes.
    out = set()
    for line in markdown.splitlines():
        m = re.match(r"^#+\s+(.*)$", line)
        if m:
            title = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
            out.add(title.replace(" ", "-"))
    return out


SEVERITIES = {"critical", "warning", "info", "none"}
DASHBOARD = re.compile(
    r'^\{\{ with query "up\{job=\\"stack-urls\\"\}" \}\}'
    r'\{\{ \. \| first \| label "grafana_url" \}\}\{\{ end \}\}/d/healstack/'
)


def seconds(duration):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", duration or "0s")
    if not m:
        return 0
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def check_alerts():
    errors = []
    watchdog = False
    runbook = ROOT / "docs" / "runbook.md"
    if not runbook.exists():
        return ["docs/runbook.md is missing (every alert's runbook_url points there)"]
    sections = anchors(runbook.read_text())
    count = 0
    for path in sorted((ROOT / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                count += 1
                name, labels, ann = rule["alert"], rule.get("labels", {}), rule.get("annotations", {})
                where = f"{path.relative_to(ROOT)}: {name}"
                url = ann.get("runbook_url", "")
                m = re.match(r"^\{\{ \$externalURL \}\}/user/runbook\.md#([\w-]+)$", url)
                if not m:
                    errors.append(f"{where}: runbook_url {url!r} is not {{{{ $externalURL }}}}/user/runbook.md#<section>")
                elif m.group(1) not in sections:
                    errors.append(f"{where}: docs/runbook.md has no section #{m.group(1)}")
                elif m.group(1) != name.lower():
                    errors.append(f"{where}: its runbook section should be #{name.lower()}, not #{m.group(1)}")
                if not DASHBOARD.match(ann.get("dashboard", "")):
                    errors.append(
                        f"{where}: the dashboard link must be built from the stack-urls series' "
                        f"grafana_url (the published port), not {ann.get('dashboard')!r}"
                    )
                severity = labels.get("severity")
                if severity not in SEVERITIES:
                    errors.append(f"{where}: severity {severity!r} is not one of {sorted(SEVERITIES)}")
                if severity == "critical" and seconds(rule.get("for")) < 60:
                    errors.append(
                        f"{where}: critical pages a person: wait at least 1m (for: {rule.get('for', '0s')}), "
                        "so a restart of seconds pages nobody"
                    )
                if name.startswith("Webapp") and severity == "critical":
                    errors.append(f"{where}: the agent heals webapp alerts; critical is for what a person must fix")
                if name == "Watchdog":
                    watchdog = str(rule.get("expr", "")).strip() == "vector(1)" and severity == "none"
                if name.startswith("Webapp") and labels.get("service") != "webapp":
                    errors.append(f"{where}: a webapp alert must carry service: webapp (the agent heals what it names)")
                if name.startswith("Healing") and labels.get("component") != "healing-agent":
                    errors.append(f"{where}: an alert on the agent must carry component: healing-agent (routed to people)")
    if not watchdog:
        errors.append("no Watchdog alert (expr: vector(1), severity: none): nothing proves the alert path")
    if not errors:
        print(
            f"ok  {count} alerts: each with its runbook section, a dashboard link from the published port, "
            "labels as routed, severities by who acts; Watchdog always fires"
        )
    return errors


def main():
    errors = check_env() + check_alerts()
    for err in errors:
        print(f"FAIL {err}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
