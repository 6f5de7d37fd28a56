"""Load for the leaky webapp, through nginx.

UI (the stack's `locust` service): open http://localhost:8089 and start a swarm.
Headless, from the shell (stack running):
    docker compose exec -T locust locust -f /mnt/locust/locustfile.py -H http://nginx \
        --headless -u 20 -r 10 -t 2m --only-summary
Every `/` request leaks LEAK_BYTES_PER_REQUEST bytes in the replica that serves it, so
sustained load gets replicas OOM-killed: that is the point of the demo.
"""

from locust import FastHttpUser, between, task


class WebappUser(FastHttpUser):
    wait_time = between(0.05, 0.2)

    @task(10)
    def index(self):
        self.client.get("/", name="/")

    @task(1)
    def health(self):
        self.client.get("/health", name="/health")
