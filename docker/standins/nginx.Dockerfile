# Stand-in for the official nginx image built from Debian's package (nginx 1.22): same
# binary name on PATH, config at /etc/nginx/nginx.conf, logs to the container's output,
# curl for the compose healthcheck (the official Debian-based image has it too).
ARG BASE=local/debian:bookworm-slim
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx curl \
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/* \
 && ln -sf /dev/stdout /var/log/nginx/access.log \
 && ln -sf /dev/stderr /var/log/nginx/error.log \
 && nginx -v
EXPOSE 80
STOPSIGNAL SIGQUIT
ENTRYPOINT ["nginx", "-g", "daemon off;"]
