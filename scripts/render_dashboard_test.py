#!/usr/bin/env python3
"""Checks of render_dashboard.py against a fake Prometheus (no stack needed).

    render_dashboard_test.py [-v]

The fake answers the dashboard's own annotation queries with known restart and recycle times;
the picture must carry a marker for each, in every panel, at those times, named in the legend.
Needs matplotlib, as the renderer does; standard library otherwise.
"""

import http.server
import json
import pathlib
import tempfile
import threading
import unittest
import urllib.parse

import render_dashboard as rd

START = 1_800_000_000.0
END = START + 100
RESTARTS = [START + 10, START + 11]  # one burst: one marker at +10
RECYCLES = [START + 20, START + 24, START + 60]  # one marker each, even 4 s apart


class FakePrometheus(http.server.ThreadingHTTPServer):
    def __init__(self, restarts, recycles):
        super().__init__(("127.0.0.1", 0), Handler)
        self.restarts, self.recycles, self.queries = restarts, recycles, []

    def answer(self, query, start, end, step):
        self.queries.append(query)
        if "healing_restarts_total" in query or "healing_recycles_total" in query:
            # As the annotation query returns them: the event's time in ms, at the step points
            # within $__interval after it (the same value twice: one event, not two).
            events = self.restarts if "healing_restarts_total" in query else self.recycles
            values = [[t + d, str(t * 1000)] for t in events for d in (0, step)]
            return [{"metric": {"service": "webapp"}, "values": values}] if values else []
        if query.startswith("ALERTS"):
            return []
        points = int((end - start) // step) + 1
        return [{"metric": {"replica": "webapp-1"}, "values": [[start + i * step, "1"] for i in range(points)]}]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        url = urllib.parse.urlparse(self.path)
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        result = self.server.answer(q["query"], float(q["start"]), float(q["end"]), float(q["step"]))
        body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class RenderTest(unittest.TestCase):
    def render(self, restarts, recycles):
        server = FakePrometheus(restarts, recycles)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        out = pathlib.Path(tempfile.mkdtemp()) / "dashboard.png"
        drawn = rd.render(f"http://127.0.0.1:{server.server_port}", START, END, out, "test")
        self.assertGreater(out.stat().st_size, 10_000, "the picture was not written")
        return drawn, server.queries

    def test_recycles_and_restarts_are_marked_in_every_panel(self):
        drawn, queries = self.render(RESTARTS, RECYCLES)
        # The recycle markers come from the dashboard's own annotation query, not a copy of it.
        dash = json.loads(rd.DASHBOARD.read_text())
        _, variables = rd.grafana_vars(START, END)
        self.assertIn(rd.substitute(rd.annotation(dash, rd.RECYCLES)["expr"], variables), queries)
        panels = len(rd.PANELS)
        self.assertEqual(drawn["recycle"], [[20.0, 24.0, 60.0]] * panels)
        self.assertEqual(drawn["restart"], [[10.0]] * panels)
        self.assertIn("agent recycles (3)", drawn["legend"])
        self.assertIn("agent restarts (1 bursts)", drawn["legend"])

    def test_a_run_without_recycles_draws_no_recycle_marker(self):
        drawn, _ = self.render(RESTARTS, [])
        self.assertEqual(drawn["recycle"], [[]] * len(rd.PANELS))
        self.assertEqual(drawn["restart"], [[10.0]] * len(rd.PANELS))
        self.assertEqual([label for label in drawn["legend"] if "recycle" in label], [])


if __name__ == "__main__":
    unittest.main()
