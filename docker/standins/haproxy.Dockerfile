# Stand-in for the official haproxy image built from Debian's package (HAProxy 2.6), with the
# official image's layout: `haproxy` on PATH, config at /usr/local/etc/haproxy/haproxy.cfg.
# bash is there (as in the official Debian-based image) for the healthcheck.
ARG BASE=local/debian:bookworm-slim
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends haproxy \
 && rm -rf /var/lib/apt/lists/* /etc/haproxy/* \
 && mkdir -p /usr/local/etc/haproxy \
 && haproxy -v | head -n 1
EXPOSE 2375
STOPSIGNAL SIGUSR1
ENTRYPOINT ["haproxy"]
CMD ["-f", "/usr/local/etc/haproxy/haproxy.cfg"]
