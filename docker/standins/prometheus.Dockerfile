# Stand-in for prom/prometheus built from Debian's package (Prometheus 2.42), with the
# official image's layout: /bin/prometheus, /etc/prometheus/prometheus.yml, data in /prometheus;
# promtool (scripts/check-configs runs it from here) and wget (the compose healthcheck).
ARG BASE=local/debian:bookworm-slim
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus wget \
 && rm -rf /var/lib/apt/lists/* /usr/share/javascript/moment-timezone/data \
 && mkdir -p /prometheus && chown nobody:nogroup /prometheus \
 && /bin/prometheus --version
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
