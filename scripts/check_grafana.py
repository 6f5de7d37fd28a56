#!/usr/bin/env python3
"""Checks of the Grafana provisioning that need no Grafana.

    check_grafana.py validate        parse the provisioning YAML and dashboard JSON, check
                                     that every panel uses the provisioned datasource
    check_grafana.py query URL       run every PromQL `expr` of the dashboards against the
                                     Prometheus at URL; fail if any returns no data

Standard library only, plus PyYAML for `validate` (Debian: python3-yaml).
"""

import json
import pathlib
import sys
import urllib.parse
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"

# Grafana's built-in variables, replaced the way Grafana would for a 15-minute view.
GRAFANA_VARS = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "15m",
}


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
            count += len(panel.get("targets", []))
        print(f"ok  {path.relative_to(ROOT)} ({count} queries)")
    return errors


def query(base):
    errors = []
    n = 0
    for name, title, expr in exprs():
        n += 1
        promql = expr
        for var, value in GRAFANA_VARS.items():
            promql = promql.replace(var, value)
        url = base.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.load(resp)
        except Exception as exc:  # HTTP 400 for a bad query lands here too
            detail = exc.read().decode() if hasattr(exc, "read") else str(exc)
            errors.append(f"{title}: {expr}\n      error: {detail}")
            continue
        result = body.get("data", {}).get("result", [])
        if body.get("status") != "success" or not result:
            errors.append(f"{title}: {expr}\n      no data")
        else:
            print(f"ok  {len(result):3d} series  {title}: {expr}")
    print(f"{n} dashboard queries run, {len(errors)} without data")
    return errors


def main(argv):
    if len(argv) >= 2 and argv[1] == "validate":
        errors = validate()
    elif len(argv) == 3 and argv[1] == "query":
        errors = query(argv[2])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for err in errors:
        print(f"FAIL {err}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
