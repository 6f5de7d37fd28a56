#!/usr/bin/env python3
"""Render the dashboard's own time series over a window into one picture.

    render_dashboard.py PROMETHEUS_URL FROM TO OUT.png [--title TEXT]

FROM and TO are Unix times. The panels and their queries are read from
grafana/dashboards/healstack.json (one source for Grafana and this picture); Grafana's
variables are replaced the way Grafana would for that window. The dashboard's annotation
queries mark the agent's restarts (orange lines), its preventive recycles (dashed lines in the
annotation's colour: a replaced replica is not a crash) and the firing alerts (shaded spans).
Prints what it drew, read back from the figure (render_dashboard_test.py checks it).

Needs matplotlib (Debian: python3-matplotlib); standard library otherwise.
"""

import argparse
import json
import math
import pathlib
import re
import sys
import textwrap
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
RECYCLES = "Recycles by the agent"
ALERTS = "Alerts"


def _time_interval():
    # The datasource's timeInterval (grafana/provisioning/datasources/prometheus.yaml).
    for path in sorted((ROOT / "grafana" / "provisioning" / "datasources").glob("*.y*ml")):
        m = re.search(r"^\s*timeInterval:\s*(\d+)s\s*$", path.read_text(), re.M)
        if m:
            return float(m.group(1))
    return 15.0


SCRAPE = _time_interval()
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


def annotation_times(base, ann, variables, start, end, step):
    # Every point where the annotation query has a value; with useValueForTime (as Grafana
    # draws it) the value is the event's time in milliseconds.
    times = set()
    for series in query_range(base, substitute(ann["expr"], variables), start, end, step):
        for t, v in series["values"]:
            if ann.get("useValueForTime"):
                times.add(float(v) / 1000)
            elif float(v) > 0:
                times.add(float(t))
    return sorted(times)


def render(base, start, end, out, title):
    """Draw the picture to OUT; return what was drawn, read back from the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    dash = json.loads(DASHBOARD.read_text())
    step, variables = grafana_vars(start, end)
    rel = lambda t: t - start  # noqa: E731  seconds since the window began

    # Restarts: consecutive points merged into one marker at the first (one per restart burst).
    markers, last = [], None
    for t in annotation_times(base, annotation(dash, RESTARTS), variables, start, end, step):
        if last is None or t - last > 3 * step:
            markers.append(t)
        last = t
    # Recycles: one marker per recycle, not merged: the agent recycles one replica at a time,
    # a few seconds apart, and each is an event of its own. Dashed, in the annotation's own
    # colour (Grafana's iconColor), so that a replaced replica does not read as a crash.
    recycle_annotation = annotation(dash, RECYCLES)
    recycles = annotation_times(base, recycle_annotation, variables, start, end, step)
    mark_styles = {
        "restart": dict(color="darkorange", linewidth=0.8, alpha=0.7),
        "recycle": dict(color=recycle_annotation.get("iconColor", "green"), linestyle="--", linewidth=1.0, alpha=0.8),
    }
    # Alert spans: consecutive firing points of each alert.
    spans = []
    for series in query_range(base, substitute(annotation(dash, ALERTS)["expr"], variables), start, end, step):
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
    heading = textwrap.fill(title, 110)  # a long title wraps instead of running off the picture
    fig.suptitle(heading, fontsize=13, x=0.01, ha="left")
    plotted = 0
    for ax, (title, unit) in zip(axes, PANELS):
        panel = panel_by_title(dash, title)
        colours = fixed_colours(panel)
        for target in panel["targets"]:
            for series in query_range(base, substitute(target["expr"], variables), start, end, step):
                # The `or vector(0)` fallback (nothing counted at that time) has no labels:
                # Grafana shows an unnamed zero line; here it is a thin grey "(none)".
                fallback = not series["metric"] and "{{" in (target.get("legendFormat") or "")
                xs, ys = [], []
                for t, v in series["values"]:
                    # A gap (a replica down, or a name back on a new container) stays a gap,
                    # as Grafana draws it (spanNulls off): no line across it.
                    if xs and rel(float(t)) - xs[-1] > 2 * step:
                        xs.append(xs[-1] + step)
                        ys.append(float("nan"))
                    xs.append(rel(float(t)))
                    ys.append(float(v))
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
            ax.axvline(rel(t), gid="restart", **mark_styles["restart"])
        for t in recycles:
            ax.axvline(rel(t), gid="recycle", **mark_styles["recycle"])
        ax.set_title(title, fontsize=10, loc="left")
        if unit:
            ax.set_ylabel(unit)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if len(labels) > 8:  # per-replica series: too many to name
            handles, labels = handles[:1] + handles[-1:], ["per replica"] + labels[-1:]
        if handles and ax is not axes[0]:
            ax.legend(handles, labels, fontsize=7, loc="upper right", ncol=2)
    # The top panel's legend also names the markers and the alerts.
    top = axes[0]
    colours = {}
    for name, begin, finish in spans:
        colour = colours.setdefault(name, f"C{3 + len(colours)}")
        top.axvspan(rel(begin), rel(finish), color=colour, alpha=0.12, label=None)
    handles, labels = top.get_legend_handles_labels()
    for name, colour in colours.items():
        handles.append(Line2D([], [], color=colour, alpha=0.4, linewidth=6))
        labels.append(f"alert {name}")
    named = {"restart": (markers, f"agent restarts ({len(markers)} bursts)"), "recycle": (recycles, f"agent recycles ({len(recycles)})")}
    for kind, (times, label) in named.items():
        if times:
            handles.append(Line2D([], [], **mark_styles[kind]))
            labels.append(label)
    if handles:
        top.legend(handles, labels, fontsize=7, loc="lower right", ncol=2)
    axes[-1].set_xlabel(
        f"seconds since the run began; orange lines: the agent's restarts ({len(markers)} bursts); "
        f"{mark_styles['recycle']['color']} dashed: its preventive recycles ({len(recycles)}); "
        f"shaded: firing alerts ({len(spans)} spans)"
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97 - 0.015 * heading.count("\n")))
    pathlib.Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    box = top.get_legend()
    drawn = {"series": plotted, "alert spans": len(spans), "legend": [t.get_text() for t in box.get_texts()] if box else []}
    for kind in mark_styles:
        # Per panel, the x of every marker of this kind: each panel must carry the same ones.
        drawn[kind] = [sorted(line.get_xdata()[0] for line in ax.lines if line.get_gid() == kind) for ax in axes]
    plt.close(fig)
    return drawn


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prometheus")
    parser.add_argument("start", type=float)
    parser.add_argument("end", type=float)
    parser.add_argument("out")
    parser.add_argument("--title", default="Self-healing stack")
    args = parser.parse_args(argv[1:])
    drawn = render(args.prometheus, args.start, args.end, args.out, args.title)
    print(
        f"render_dashboard: {args.out}: {drawn['series']} series, {len(drawn['restart'][0])} restart markers, "
        f"{len(drawn['recycle'][0])} recycle markers, {drawn['alert spans']} alert spans"
    )
    for kind in ("restart", "recycle"):
        if drawn[kind][0]:
            print(f"render_dashboard: {kind} markers at s " + " ".join(f"{x:.1f}" for x in drawn[kind][0]))
    return 0 if drawn["series"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
