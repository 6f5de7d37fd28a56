#!/usr/bin/env python3
"""Checks of the Grafana provisioning that need no Grafana.

    check_grafana.py validate        parse the provisioning YAML and dashboard JSON, and lint
                                     what an SRE reading the dashboard would trip over (below)
    check_grafana.py query URL [--annotations[=NAME,...]]
                                     run every PromQL `expr` of the dashboards (panels,
                                     annotations, the link variables' label_values) against the
                                     Prometheus at URL; fail if a panel query returns no data
                                     (unless the panel shows a `noValue` for that), a variable
                                     has no value, or an annotation query fails (with
                                     --annotations: returns no data either)

The lint (validate): every panel uses the provisioned datasource; counters are shown as
increases or rates, windows are Grafana's ($__rate_interval, $__range, $__interval), a subquery
steps by the scrape interval; the datasource's timeInterval is the scrape interval; every stat
panel has coloured thresholds; no `or vector(0)` after a grouping (an unlabelled series whose
legend is the whole expression); per-replica series are named by replica ({{replica}}, from the
agent's healing_replica_info), never by address ({{instance}}); every histogram_quantile drops
NaN (`>= 0`), so no stat shows NaN before the first event; counts per bar are whole events per
interval (round, [$__interval], an interval of at least 10 s); restarts are point annotations
(useValueForTime); alert panels leave out the always-firing Watchdog; links are built from the
published ports (variables over the stack-urls series), never localhost or a fixed port.

Standard library only, plus PyYAML for `validate` (Debian: python3-yaml).
"""

import json
import pathlib
import re
import sys
import time
import urllib.parse
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"

PROMETHEUS_YML = ROOT / "prometheus" / "prometheus.yml"
VIEW_SECONDS = 15 * 60
MAX_POINTS = 1000


def seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", str(text).strip())
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def time_interval():
    """The datasource's timeInterval, in seconds (read without PyYAML)."""
    for path in sorted((GRAFANA / "provisioning" / "datasources").glob("*.y*ml")):
        m = re.search(r"^\s*timeInterval:\s*(\S+)", path.read_text(), re.M)
        if m:
            return seconds(m.group(1))
    return 15


def grafana_vars(panel_interval=None):
    """Grafana's built-in variables for a 15-minute view, as Grafana computes them: $__interval
    = range / points, at least the panel's min interval or the datasource's timeInterval;
    $__rate_interval = max($__interval + timeInterval, 4 * timeInterval)."""
    scrape = time_interval()
    step = max(VIEW_SECONDS / MAX_POINTS, seconds(panel_interval) if panel_interval else scrape, scrape)
    rate = max(step + scrape, 4 * scrape)
    return {
        "$__rate_interval": f"{int(rate)}s",
        "$__interval": f"{int(step)}s",
        "$__range": f"{VIEW_SECONDS // 60}m",
    }


GRAFANA_VARS = grafana_vars()

# A counter (or a histogram's parts) is only meaningful as an increase or a rate: its raw value
# depends on when the process started.
COUNTER = re.compile(r"\b([a-z_:][a-z0-9_:]*_(?:total|count|sum|bucket))\b(\{[^}]*\})?(\s*\[[^\]]*\])?")
RANGE = re.compile(r"\[([^\]]*)\]")
WINDOWS = {"$__rate_interval", "$__range", "$__interval"}


def substitute(expr, variables=None):
    variables = variables or GRAFANA_VARS
    # Longest names first: $__range must not eat $__range_s and the like.
    for var in sorted(variables, key=len, reverse=True):
        expr = expr.replace(var, variables[var])
    return expr


def dashboards():
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        yield path, json.loads(path.read_text())


def panels(items):
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def exprs():
    for path, dash in dashboards():
        for panel in panels(dash.get("panels", [])):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    yield path.name, panel, target["expr"]


def annotation_exprs():
    for path, dash in dashboards():
        for ann in dash.get("annotations", {}).get("list", []):
            if ann.get("expr"):
                yield path.name, f"annotation {ann.get('name', '?')!r}", ann["expr"]


def lint_expr(where, expr, annotation=False):
    errors = []
    for m in COUNTER.finditer(expr):
        if m.group(3):
            continue
        # A restart marker compares a counter with itself a scrape ago: exactly one point per
        # increment, no extrapolation (annotations only).
        if annotation and re.search(re.escape(m.group(0)) + r"\s*>\s*" + re.escape(m.group(1)), expr):
            continue
        if annotation and re.search(r">\s*" + re.escape(m.group(0)) + r"\s+offset\s", expr):
            continue
        errors.append(f"{where}: counter {m.group(1)} used raw in {expr!r}: show it as increase() or rate()")
    scrape = f"{int(time_interval())}s"
    # Windows are outside string literals (a regex like "[0-9]+" is not a window).
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    for window in RANGE.findall(bare):
        window, _, resolution = window.partition(":")
        if window not in WINDOWS:
            errors.append(f"{where}: fixed window [{window}] in {expr!r}: use [$__rate_interval], [$__interval] or [$__range]")
        if resolution and resolution != scrape:
            errors.append(f"{where}: a subquery steps by the scrape interval ({scrape}), not {resolution!r}, in {expr!r}")
    if re.search(r"\bby\s*\(", expr) and re.search(r"\bor\s+vector\(", expr):
        errors.append(f"{where}: `or vector(0)` after a grouping adds an unlabelled series named after the whole expression: set the panel's noValue instead")
    if "histogram_quantile" in expr and not re.search(r">=\s*0\s*$", expr):
        errors.append(f"{where}: histogram_quantile gives NaN without events: end the query with `>= 0`")
    if "ALERTS" in expr and 'alertname!="Watchdog"' not in expr:
        errors.append(f"{where}: leave out the always-firing Watchdog (alertname!=\"Watchdog\")")
    return errors


def lint_panel(where, panel):
    errors = []
    custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {})
    for target in panel.get("targets", []):
        expr, legend = target.get("expr", ""), target.get("legendFormat", "")
        if 'job="webapp"' in expr and "{{instance}}" in legend:
            errors.append(f"{where}: per-replica series named by address ({{{{instance}}}} changes with every restart): join healing_replica_info and show {{{{replica}}}}")
        if "{{replica}}" in legend and "healing_replica_info" not in expr:
            errors.append(f"{where}: {{{{replica}}}} needs the join with healing_replica_info")
        if custom.get("drawStyle") == "bars" and "increase(" in expr:
            if "[$__interval]" not in expr or not expr.startswith("round(") or seconds(panel.get("interval", "0s")) < 10:
                errors.append(f"{where}: counts per bar are whole events per interval: round(increase(...[$__interval])) with a panel interval of at least 10s")
    return errors


def lint_links(path, dash):
    errors = []
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    for link in dash.get("links", []):
        url = link.get("url", "")
        if re.search(r"localhost|127\.0\.0\.1|:\d{2,5}\b", url):
            errors.append(f"{path.name}: link {link.get('title')!r} hard-codes a host or port ({url}): use the published ports (a variable over the stack-urls series)")
        for name in re.findall(r"\$\{?(\w+)", url):
            query = str(variables.get(name, {}).get("query", ""))
            if 'up{job="stack-urls"}' not in query:
                errors.append(f"{path.name}: link {link.get('title')!r} uses ${name}, which is not a variable over up{{job=\"stack-urls\"}}")
    return errors


def lint_intervals():
    import yaml

    scrape = yaml.safe_load(PROMETHEUS_YML.read_text())["global"]["scrape_interval"]
    if seconds(scrape) != time_interval():
        return [f"the datasource's timeInterval ({time_interval()}s) is not Prometheus' scrape_interval ({scrape}): $__rate_interval would be wrong"]
    return []


def validate():
    import yaml  # only here: `query` must run without PyYAML

    errors = []
    uids = set()
    for path in sorted((GRAFANA / "provisioning").rglob("*.y*ml")):
        doc = yaml.safe_load(path.read_text())
        if not isinstance(doc, dict) or doc.get("apiVersion") != 1:
            errors.append(f"{path}: not a provisioning file (apiVersion 1)")
            continue
        for ds in doc.get("datasources", []):
            for key in ("name", "type", "url", "uid"):
                if not ds.get(key):
                    errors.append(f"{path}: datasource without {key}")
            uids.add(ds.get("uid"))
        for prov in doc.get("providers", []):
            if prov.get("type") != "file" or not prov.get("options", {}).get("path"):
                errors.append(f"{path}: dashboard provider needs type file and options.path")
        print(f"ok  {path.relative_to(ROOT)}")
    if not uids:
        errors.append("no datasource is provisioned")
    errors += lint_intervals()
    count = 0
    for path, dash in dashboards():
        if not dash.get("uid") or not dash.get("title"):
            errors.append(f"{path}: dashboard needs uid and title")
        for panel in panels(dash.get("panels", [])):
            if panel.get("type") == "row":
                continue
            ds = panel.get("datasource") or {}
            if ds.get("uid") not in uids:
                errors.append(f"{path}: panel {panel.get('title')!r} uses datasource {ds!r}, not one of {sorted(uids)}")
            if not panel.get("targets"):
                errors.append(f"{path}: panel {panel.get('title')!r} has no query")
            for target in panel.get("targets", []):
                errors += lint_expr(f"{path.name}: {panel.get('title')!r}", target.get("expr", ""))
            errors += lint_panel(f"{path.name}: {panel.get('title')!r}", panel)
            if panel.get("type") == "stat":
                steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
                if len(steps) < 2:
                    errors.append(f"{path}: stat panel {panel.get('title')!r} has no thresholds to colour it")
            count += len(panel.get("targets", []))
        for name, where, expr in annotation_exprs():
            errors += lint_expr(f"{name}: {where}", expr, annotation=True)
        for ann in dash.get("annotations", {}).get("list", []):
            if "restart" in ann.get("name", "").lower() and not ann.get("useValueForTime"):
                errors.append(f"{path.name}: annotation {ann.get('name')!r}: restarts are points (useValueForTime, the value is the restart's time)")
        errors += lint_links(path, dash)
        print(f"ok  {path.relative_to(ROOT)} ({count} queries, {len(list(annotation_exprs()))} annotation queries)")
    return errors


def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.load(resp), None
    except Exception as exc:  # HTTP 400 for a bad query lands here too
        return None, exc.read().decode() if hasattr(exc, "read") else str(exc)


def query(base, require_annotations=False):
    """require_annotations: False, True (every annotation must have data), or a set of names."""
    errors = []
    n = 0
    base = base.rstrip("/")
    # The link variables: label_values(EXPR, LABEL) must give a value.
    for path, dash in dashboards():
        for var in dash.get("templating", {}).get("list", []):
            m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", str(var.get("query", "")).strip())
            if not m:
                continue
            n += 1
            body, err = fetch(base + "/api/v1/query?" + urllib.parse.urlencode({"query": m.group(1)}))
            values = sorted({r["metric"].get(m.group(2)) for r in (body or {}).get("data", {}).get("result", [])} - {None})
            if err or not values:
                errors.append(f"variable ${var.get('name')}: {var.get('query')}\n      {err or 'no value'}")
            else:
                print(f"ok  variable ${var.get('name')} = {', '.join(values)}")
    for name, panel, expr in exprs():
        n += 1
        title = panel.get("title", "?")
        promql = substitute(expr, grafana_vars(panel.get("interval")))
        body, err = fetch(base + "/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        if err:
            errors.append(f"{title}: {expr}\n      error: {err}")
            continue
        result = body.get("data", {}).get("result", [])
        no_value = panel.get("fieldConfig", {}).get("defaults", {}).get("noValue")
        if body.get("status") != "success":
            errors.append(f"{title}: {expr}\n      {body}")
        elif not result and no_value is not None:
            print(f"ok    0 series  {title} (shows {no_value!r}): {expr}")
        elif not result:
            errors.append(f"{title}: {expr}\n      no data")
        elif any(str(r.get("value", [0, "0"])[1]).lower() == "nan" for r in result):
            errors.append(f"{title}: {expr}\n      NaN")
        else:
            print(f"ok  {len(result):3d} series  {title}: {expr}")
    for path, dash in dashboards():
        for ann in dash.get("annotations", {}).get("list", []):
            if not ann.get("expr"):
                continue
            n += 1
            title = f"annotation {ann.get('name', '?')!r}"
            # Grafana draws an annotation wherever its query has a value within the view: ask
            # over the last 15 minutes, as Grafana's default view would.
            now = time.time()
            step = seconds(ann.get("step", "1s"))
            promql = substitute(ann["expr"], grafana_vars(ann.get("step")))
            params = {"query": promql, "start": now - VIEW_SECONDS, "end": now, "step": step}
            body, err = fetch(base + "/api/v1/query_range?" + urllib.parse.urlencode(params))
            if err or body.get("status") != "success":
                errors.append(f"{title}: {ann['expr']}\n      error: {err or body}")
                continue
            result = body.get("data", {}).get("result", [])
            required = require_annotations is True or (
                isinstance(require_annotations, set) and ann.get("name") in require_annotations
            )
            if ann.get("useValueForTime"):
                # The value is the event's time in ms: it must fall inside the view.
                bad = [v for r in result for _, v in r["values"] if not (now - VIEW_SECONDS - 60) * 1000 <= float(v) <= (now + 60) * 1000]
                if bad:
                    errors.append(f"{title}: values are not times in the view (ms): {bad[:3]}")
                    continue
                events = sorted({float(v) for r in result for _, v in r["values"]})
                detail = f"{len(events)} points"
            else:
                detail = f"{len(result)} series"
            if not result and required:
                errors.append(f"{title}: {ann['expr']}\n      no data")
            elif not result:
                print(f"ok    0 series  {title} (none yet): {ann['expr']}")
            else:
                print(f"ok  {detail}  {title}: {ann['expr']}")
    print(f"{n} dashboard queries run, {len(errors)} failed or without data")
    return errors


def main(argv):
    if len(argv) >= 2 and argv[1] == "validate":
        errors = validate()
    elif len(argv) in (3, 4) and argv[1] == "query" and (
        argv[3:] in ([], ["--annotations"]) or argv[3].startswith("--annotations=")
    ):
        required = argv[3:] == ["--annotations"] or (
            set(argv[3].split("=", 1)[1].split(",")) if argv[3:] else False
        )
        errors = query(argv[2], require_annotations=required)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for err in errors:
        print(f"FAIL {err}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
