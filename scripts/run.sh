#!/usr/bin/env bash
# Builds and installs easymo, starts a private PostgreSQL 15 cluster (data under target/pg/run,
# port 28815, unix socket only), creates the database `easymo` with the extension in it, and
# shows it working. `scripts/run.sh stop` stops the cluster.
# On a fresh Debian 12 machine it first installs what is missing (see scripts/common.sh).
source "$(dirname "$0")/common.sh"
cd "$ROOT"

PORT="${EASYMO_PORT:-28815}"
if [ "${1:-}" = stop ]; then cluster_stop run; log "stopped"; exit 0; fi

ensure_toolchain
install_extension
log "starting the private cluster"
cluster_start run "$PORT"
# A fresh database each run, so the tour always starts from the same state.
cpsql -q -d postgres -c "DROP DATABASE IF EXISTS easymo WITH (FORCE)" -c "CREATE DATABASE easymo"
cpsql -q -d easymo -c "CREATE EXTENSION easymo"
log "a short tour"
cpsql -d easymo -f scripts/tour.sql

cat <<MSG

easymo is running. Connect with:
    psql -h $CLUSTER_SOCK -p $PORT -U postgres easymo
Stop the cluster with:
    scripts/run.sh stop
MSG
