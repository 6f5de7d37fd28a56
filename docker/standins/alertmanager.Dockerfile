# Stand-in for prom/alertmanager built from Debian's package (Alertmanager 0.25), with the
# official image's layout: /bin/alertmanager, /etc/alertmanager/alertmanager.yml, data in /alertmanager;
# amtool (scripts/check-configs runs it from here) and wget (the compose healthcheck).
ARG BASE=local/debian:bookworm-slim
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus-alertmanager wget \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s prometheus-alertmanager /usr/bin/alertmanager \
 && mkdir -p /alertmanager && chown nobody:nogroup /alertmanager \
 && /bin/alertmanager --version
USER nobody
WORKDIR /alertmanager
EXPOSE 9093
ENTRYPOINT ["/bin/alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]
