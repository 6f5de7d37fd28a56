# Stand-in for the official rust image (rust:<version>-slim-bookworm) made from this machine's
# toolchain, for machines without a registry: scripts/offline-images copies the toolchain
# (rustc, cargo, std; no docs) and the rustup binary into the build context, laid out as in
# the official image: RUSTUP_HOME=/usr/local/rustup, CARGO_HOME=/usr/local/cargo, the rustup
# proxies (cargo, rustc, ...) in /usr/local/cargo/bin on PATH, gcc and libc6-dev for linking.
# Crates come from crates.io at build time, as with the official image (ca-certificates
# includes the host's extra CAs, see scripts/offline-images).
ARG BASE=local/debian:bookworm-slim
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
ARG RUST_VERSION
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    RUST_VERSION=${RUST_VERSION}
COPY rustup /usr/local/rustup
COPY cargo /usr/local/cargo
RUN rustup --version && cargo --version && rustc --version
