"""Load for the leaky webapp, through nginx.

UI (the stack's `locust` service): open http://localhost:8089 and start a swarm.
Headless, from the shell (stack running):
    docker compose exec -T locust locust -f /mnt/locust/locustfile.py -H http://nginx \
        --headless -u 20 -r 10 -t 2m --only-summary
Every `/` request leaks LEAK_BYTES_PER_REQUEST bytes in the replica that serves it, so
sustained load gets replicas OOM-killed: that is the point of the demo.

The UI also serves /metrics for Prometheus: every request as the users see it at nginx, by
status (502/504 when nginx found no live replica; "none" when no answer came at all). A
replica never answers 5xx itself, so this is where failures show. Counters live as long as
the process (a new swarm does not reset them).
"""

from locust import FastHttpUser, constant_throughput, events, task


class WebappUser(FastHttpUser):
    # Each user offers a fixed 8 requests a second (a task takes 1/8 s, waiting out what the
    # request did not use). A random wait would make the request count of two runs differ by
    # chance; at a fixed rate the offered load is the same in every run (users x 8 x seconds,
    # give or take a request per user at the start and the stop), so runs compare: a service
    # that slows down or fails serves fewer than were offered.
    wait_time = constant_throughput(8)

    @task(10)
    def index(self):
        self.client.get("/", name="/")

    @task(1)
    def health(self):
        self.client.get("/health", name="/health")


# (method, name, status, result) -> count. gevent runs request hooks and web handlers on one
# thread, so a plain dict needs no lock.
_REQUESTS = {}


@events.request.add_listener
def _count(request_type, name, response=None, exception=None, **_kwargs):
    code = getattr(response, "status_code", None) or 0
    status = str(code) if code else "none"
    result = "failed" if exception is not None else "ok"
    key = (request_type, name, status, result)
    _REQUESTS[key] = _REQUESTS.get(key, 0) + 1


def _label(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def _exposition(environment):
    lines = [
        "# HELP locust_requests_total Requests sent through nginx, by status and result.",
        "# TYPE locust_requests_total counter",
    ]
    for (method, name, status, result), count in sorted(_REQUESTS.items()):
        lines.append(
            f'locust_requests_total{{method="{_label(method)}",name="{_label(name)}",'
            f'status="{status}",result="{result}"}} {count}'
        )
    runner = environment.runner
    users = runner.user_count if runner is not None else 0
    lines += [
        "# HELP locust_users Simulated users running now.",
        "# TYPE locust_users gauge",
        f"locust_users {users}",
    ]
    return "\n".join(lines) + "\n"


@events.init.add_listener
def _serve_metrics(environment, **_kwargs):
    if environment.web_ui is None:  # headless: nobody scrapes it
        return
    from flask import Response

    @environment.web_ui.app.route("/metrics")
    def metrics():
        return Response(_exposition(environment), mimetype="text/plain; version=0.0.4")
