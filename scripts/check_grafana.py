#!/usr/bin/env python3
"""Checks of the Grafana provisioning that need no Grafana.

    check_grafana.py validate        parse the provisioning YAML and dashboard JSON, check
                                     that every panel uses the provisioned datasource, that
                                     counters are shown as increases or rates and windows
                                     are Grafana's ($__rate_interval, $__range), and that
                                     every stat panel has coloured thresholds
    check_grafana.py query URL [--annotations[=NAME,...]]
                                     run every PromQL `expr` of the dashboards (panels and
                                     annotations) against the Prometheus at URL; fail if a
                                     panel query returns no data, or an annotation query
                                     fails (with --annotations: returns no data either)

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

# Grafana's built-in variables, replaced the way Grafana would for a 15-minute view of a
# datasource with timeInterval 2s ($__rate_interval = max($__interval + 2s, 4 * 2s)).
GRAFANA_VARS = {
    "$__rate_interval": "8s",
    "$__interval": "2s",
    "$__range": "15m",
}

# A counter (or a histogram's parts) is only meaningful as an increase or a rate: its raw value
# depends on when the process started.
COUNTER = re.compile(r"\b([a-z_:][a-z0-9_:]*_(?:total|count|sum|bucket))\b(\{[^}]*\})?(\s*\[[^\]]*\])?")
RANGE = re.compile(r"\[([^\]]*)\]")
WINDOWS = {"$__rate_interval", "$__range", "$__interval"}


def substitute(expr, variables=GRAFANA_VARS):
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
                    yield path.name, panel.get("title", "?"), target["expr"]


def annotation_exprs():
    for path, dash in dashboards():
        for ann in dash.get("annotations", {}).get("list", []):
            if ann.get("expr"):
                yield path.name, f"annotation {ann.get('name', '?')!r}", ann["expr"]


def lint_expr(where, expr):
    errors = []
    for m in COUNTER.finditer(expr):
        if not m.group(3):
            errors.append(f"{where}: counter {m.group(1)} used raw in {expr!r}: show it as increase() or rate()")
    for window in RANGE.findall(expr):
        if window not in WINDOWS:
            errors.append(f"{where}: fixed window [{window}] in {expr!r}: use [$__rate_interval] or [$__range]")
    return errors


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
            if panel.get("type") == "stat":
                steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
                if len(steps) < 2:
                    errors.append(f"{path}: stat panel {panel.get('title')!r} has no thresholds to colour it")
            count += len(panel.get("targets", []))
        for name, where, expr in annotation_exprs():
            errors += lint_expr(f"{name}: {where}", expr)
        print(f"ok  {path.relative_to(ROOT)} ({count} queries, {len(list(annotation_exprs()))} annotation queries)")
    return errors


def query(base, require_annotations=False):
    """require_annotations: False, True (every annotation must have data), or a set of names."""
    errors = []
    n = 0
    for name, title, expr in list(exprs()) + [(a, t, e) for a, t, e in annotation_exprs()]:
        n += 1
        is_annotation = title.startswith("annotation ")
        promql = substitute(expr)
        if is_annotation:
            # Grafana draws an annotation wherever its query has a value within the view: ask
            # over the last 15 minutes, as Grafana's default view would.
            now = time.time()
            params = {"query": promql, "start": now - 900, "end": now, "step": 2}
            url = base.rstrip("/") + "/api/v1/query_range?" + urllib.parse.urlencode(params)
        else:
            url = base.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.load(resp)
        except Exception as exc:  # HTTP 400 for a bad query lands here too
            detail = exc.read().decode() if hasattr(exc, "read") else str(exc)
            errors.append(f"{title}: {expr}\n      error: {detail}")
            continue
        result = body.get("data", {}).get("result", [])
        if body.get("status") != "success":
            errors.append(f"{title}: {expr}\n      {body}")
        elif not result and is_annotation and not (
            require_annotations is True
            or (isinstance(require_annotations, set) and title[len("annotation "):].strip("'") in require_annotations)
        ):
            print(f"ok    0 series  {title} (none yet): {expr}")
        elif not result:
            errors.append(f"{title}: {expr}\n      no data")
        else:
            print(f"ok  {len(result):3d} series  {title}: {expr}")
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
