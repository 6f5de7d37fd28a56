# Images for the Rust binaries (webapp, webhook-receiver, fake-gemini), one per BIN: compose
# builds it with `args: {BIN: ...}`. Every binary comes out of one cached compile, so the
# images of all binaries share it.
#
# - Any platform: builds for the architecture it runs on (x86_64 or arm64: a laptop, a
#   server, `docker buildx build --platform`), as a static glibc binary.
# - Cached: the dependencies compile in a layer of their own, from the manifests alone, and
#   are rebuilt only when Cargo.toml or Cargo.lock change. A layer, not RUN --mount caches:
#   those need BuildKit, and Docker's legacy builder must build this too.
# - The result is FROM scratch: /app, a CA bundle (the agent calls HTTPS LLM APIs), and
#   /data and /share owned by the unprivileged user it runs as (uid 10001), so fresh named
#   volumes mounted there are writable (the agent's state; the token it shares with
#   Alertmanager). Healthchecks run `/app healthcheck`: no shell needed.
#
# Without a registry, scripts/offline-images makes a local stand-in of RUST_IMAGE from this
# machine's toolchain.
ARG RUST_IMAGE=rust:1.95-slim-bookworm

# Planner: the manifests with stub sources (docker/cargo-skeleton.sh). COPY --from below is
# cached by content, so a source change does not invalidate the dependency layer.
FROM ${RUST_IMAGE} AS planner
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY docker/cargo-skeleton.sh /usr/local/bin/cargo-skeleton
RUN cargo-skeleton /src /skeleton

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# The Rust target of the platform this build runs on: static glibc needs an explicit target
# (else build scripts and proc macros would be linked statically too).
RUN case "$(uname -m)" in \
        x86_64 | amd64) echo x86_64-unknown-linux-gnu ;; \
        aarch64 | arm64) echo aarch64-unknown-linux-gnu ;; \
        *) echo "unsupported architecture $(uname -m): build on x86_64 or arm64" >&2; exit 1 ;; \
    esac >/rust-target \
 && mkdir -p /dist /data /share
ENV RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_TERM_PROGRESS_WHEN=never
# The packages with binaries in the stack; the same list in both builds, so features unify alike.
ENV CARGO_PACKAGES="-p webapp -p webhook-receiver -p fake-llm -p socket-proxy"
COPY --from=planner /skeleton/ ./
RUN cargo build --release --locked --target "$(cat /rust-target)" $CARGO_PACKAGES
COPY Cargo.toml Cargo.lock ./
COPY crates crates
# The stubs were built after the real sources were last modified: make cargo see them as new.
RUN find crates -name '*.rs' -exec touch {} + \
 && cargo build --release --locked --target "$(cat /rust-target)" $CARGO_PACKAGES \
 && find "target/$(cat /rust-target)/release" -maxdepth 1 -type f -executable -exec cp {} /dist/ \; \
 && ls -l /dist
# One binary per image.
FROM build AS pick
ARG BIN
RUN test -n "${BIN}" || { echo "build arg BIN is required (e.g. --build-arg BIN=webapp)" >&2; exit 1; } \
 && cp "/dist/${BIN}" /app

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build --chown=10001:10001 /data /data
COPY --from=build --chown=10001:10001 /share /share
COPY --from=pick /app /app
USER 10001:10001
ENTRYPOINT ["/app"]
