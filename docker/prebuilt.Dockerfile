# Images for the Rust binaries on machines without a container registry: no build stage,
# only the static binaries that scripts/offline-images put in target/dist/.
# Same result as ../Dockerfile: FROM scratch, /app and a CA bundle.
FROM scratch
ARG BIN
COPY target/dist/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY target/dist/${BIN} /app
ENTRYPOINT ["/app"]
