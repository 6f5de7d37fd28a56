# Images for the Rust binaries (webapp, webhook-receiver, ...), one per BIN, for machines
# with a container registry: compose builds it with `args: {BIN: ...}`.
# Without a registry use docker/prebuilt.Dockerfile (scripts/stack-up-offline does).
#
# The result is FROM scratch: a static glibc binary at /app and a CA bundle (the agent calls
# HTTPS LLM APIs). Healthchecks run `/app healthcheck`, so no shell or curl is needed.
ARG RUST_IMAGE=rust:1.95-slim-bookworm

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# Every binary of the workspace in one layer that does not depend on BIN: the images of all
# binaries share it, so the workspace is compiled once.
RUN RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked --target x86_64-unknown-linux-gnu --workspace --bins \
 && mkdir -p /dist \
 && find target/x86_64-unknown-linux-gnu/release -maxdepth 1 -type f -executable -exec cp {} /dist/ \;
ARG BIN
RUN test -n "${BIN}" || { echo "build arg BIN is required (e.g. --build-arg BIN=webapp)" >&2; exit 1; } \
 && cp "/dist/${BIN}" /app

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /app /app
ENTRYPOINT ["/app"]
