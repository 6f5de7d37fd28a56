# Stand-in for locustio/locust: Debian's Python 3.11 and Locust from PyPI in a venv, with
# `locust` on PATH as in the official image.
ARG BASE=local/debian:bookworm-slim
FROM ${BASE}
ARG LOCUST_VERSION=2.47.0
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# The venv's pip carries its own CA list: point it at the system one, which includes any CA
# the host added (see scripts/offline-images).
RUN python3 -m venv /opt/locust \
 && PIP_CERT=/etc/ssl/certs/ca-certificates.crt /opt/locust/bin/pip install --no-cache-dir --disable-pip-version-check \
      "locust==${LOCUST_VERSION}" \
 && ln -s /opt/locust/bin/locust /usr/local/bin/locust \
 && find /opt/locust -name '__pycache__' -prune -exec rm -rf {} + \
 && locust --version
USER nobody
WORKDIR /tmp
EXPOSE 8089
ENTRYPOINT ["locust"]
