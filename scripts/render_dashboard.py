#!/usr/bin/env python3
"""Render the dashboard's own time series over a window into one picture.

    render_dashboard.py PROMETHEUS_URL FROM TO OUT.png [--title TEXT]

FROM and TO are Unix times. The panels and their queries are read from
grafana/dashboards/healstack.json (one source for Grafana and this picture); Grafana's
variables are replaced the way Grafana would for that window. The dashboard's annotation
queries mark the agent's restarts (vertical lines) and the firing alerts (shaded spans).

Needs matplotlib (Debian: python3-matplotlib); standard library otherwise.
"""

import argparse
import json
import math
import pathlib
import re
import sys
import urllib.parse
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "grafana" / "dashboards" / "healstack.json"

# The panels drawn, top to bottom (by title), with the unit of their y axis.
PANELS = [
    ("Replicas up", None),
    ("Memory per replica vs limit", "MiB"),
    ("Requests through nginx (as users see them)", "req/s"),
    ("Failed requests at nginx (as users see them)", "req/s"),
]
RESTARTS = "Restarts by the agent"
ALERTS = "Alerts"
# The datasource's timeInterval (grafana/provisioning/datasources/prometheus.yaml).
SCRAPE = 2.0
POINTS = 600


def grafana_vars(start, end):
    # Grafana: $__interval = range / max data points, at least the datasource's timeInterval;
    # $__rate_interval = max($__interval + timeInterval, 4 * timeInterval).
    step = max(math.ceil((end - start) / POINTS), SCRAPE)
    rate = max(step + SCRAPE, 4 * SCRAPE)
    return step, {
        "$__rate_interval": f"{int(rate)}s",
        "$__interval": f"{int(step)}s",
        "$__range": f"{int(end - start)}s",
    }


def substitute(expr, variables):
    for var in sorted(variables, key=len, reverse=True):
        expr = expr.replace(var, variables[var])
    return expr


def query_range(base, expr, start, end, step):
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{base.rstrip('/')}/api/v1/query_range?{params}", timeout=30) as resp:
        body = json.load(resp)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def legend(fmt, labels):
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt or "").strip() or "value"


def fixed_colours(panel):
    # The panel's own "override by name -> fixed colour" rules, so the picture uses
    # Grafana's colours (red, orange, green, ... are matplotlib names too).
    colours = {}
    for rule in panel.get("fieldConfig", {}).get("overrides", []):
        if rule.get("matcher", {}).get("id") != "byName":
            continue
        for prop in rule.get("properties", []):
            if prop.get("id") == "color" and prop.get("value", {}).get("fixedColor"):
                colours[rule["matcher"]["options"]] = prop["value"]["fixedColor"]
    return colours


def panel_by_title(dash, title):
    for panel in dash["panels"]:
        if panel.get("title") == title and panel.get("type") == "timeseries":
            return panel
    raise SystemExit(f"render_dashboard: no time-series panel {title!r} in {DASHBOARD}")


def annotation(dash, name):
    for ann in dash.get("annotations", {}).get("list", []):
        if ann.get("name") == name and ann.get("expr"):
            return ann
    raise SystemExit(f"render_dashboard: no annotation {name!r} in {DASHBOARD}")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prometheus")
    parser.add_argument("start", type=float)
    parser.add_argument("end", type=float)
    parser.add_argument("out")
    parser.add_argument("--title", default="Self-healing stack")
    args = parser.parse_args(argv[1:])

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dash = json.loads(DASHBOARD.read_text())
    start, end = args.start, args.end
    step, variables = grafana_vars(start, end)
    rel = lambda t: t - start  # noqa: E731  seconds since the window began

    # Restart markers: every point where the annotation query has a value.
    restarts = set()
    for series in query_range(args.prometheus, substitute(annotation(dash, RESTARTS)["expr"], variables), start, end, step):
        for t, v in series["values"]:
            if float(v) > 0:
                restarts.add(float(t))
    # Merge consecutive points into one marker at the first (one per restart burst).
    markers, last = [], None
    for t in sorted(restarts):
        if last is None or t - last > 3 * step:
            markers.append(t)
        last = t
    # Alert spans: consecutive firing points of each alert.
    spans = []
    for series in query_range(args.prometheus, substitute(annotation(dash, ALERTS)["expr"], variables), start, end, step):
        name = series["metric"].get("alertname", "alert")
        times = [float(t) for t, _ in series["values"]]
        begin = prev = None
        for t in times + [None]:
            if begin is None:
                begin = prev = t
            elif t is None or t - prev > 2 * step:
                spans.append((name, begin, prev + step))
                begin = prev = t
            else:
                prev = t

    fig, axes = plt.subplots(len(PANELS), 1, figsize=(12, 3.1 * len(PANELS)), sharex=True)
    fig.suptitle(args.title, fontsize=13, x=0.01, ha="left")
    plotted = 0
    for ax, (title, unit) in zip(axes, PANELS):
        panel = panel_by_title(dash, title)
        colours = fixed_colours(panel)
        for target in panel["targets"]:
            for series in query_range(args.prometheus, substitute(target["expr"], variables), start, end, step):
                # The `or vector(0)` fallback (nothing counted at that time) has no labels:
                # Grafana shows an unnamed zero line; here it is a thin grey "(none)".
                fallback = not series["metric"] and "{{" in (target.get("legendFormat") or "")
                xs = [rel(float(t)) for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                if unit == "MiB":
                    ys = [y / 2**20 for y in ys]
                label = "(none)" if fallback else legend(target.get("legendFormat"), series["metric"])
                style = {"drawstyle": "steps-post"} if title == "Replicas up" else {}
                if fallback:
                    style.update(color="lightgray", linewidth=0.8)
                if label in ("limit", "expected (most in 10 min)"):
                    style.update(linestyle="--")
                if label in colours:
                    style["color"] = colours[label]
                style.setdefault("linewidth", 1.2)
                ax.plot(xs, ys, label=label, **style)
                plotted += 1
        for t in markers:
            ax.axvline(rel(t), color="darkorange", linewidth=0.8, alpha=0.7)
        ax.set_title(title, fontsize=10, loc="left")
        if unit:
            ax.set_ylabel(unit)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if len(labels) > 8:  # per-replica series: too many to name
            handles, labels = handles[:1] + handles[-1:], ["per replica"] + labels[-1:]
        if handles:
            ax.legend(handles, labels, fontsize=7, loc="upper right", ncol=2)
    top = axes[0]
    colours = {}
    for name, begin, finish in spans:
        colour = colours.setdefault(name, f"C{3 + len(colours)}")
        top.axvspan(rel(begin), rel(finish), color=colour, alpha=0.12, label=None)
    for name, colour in colours.items():
        top.plot([], [], color=colour, alpha=0.4, linewidth=6, label=f"alert {name}")
    if colours:
        top.legend(fontsize=7, loc="lower right", ncol=2)
    axes[-1].set_xlabel(
        f"seconds since the run began; orange lines: the agent's restarts ({len(markers)} bursts); "
        f"shaded: firing alerts ({len(spans)} spans)"
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"render_dashboard: {args.out}: {plotted} series, {len(markers)} restart markers, {len(spans)} alert spans")
    return 0 if plotted else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
