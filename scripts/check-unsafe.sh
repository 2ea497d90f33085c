#!/usr/bin/env bash
# Fails when unsafe code appears outside the one layer that owns every touch of Postgres
# internals (src/postgres): each domain module must carry #![forbid(unsafe_code)] (which also
# covers its submodules), so a new module that forgets it is caught here, not in review.
set -euo pipefail
cd "$(dirname "$0")/../src"
status=0
for f in *.rs */mod.rs; do
    case "$f" in lib.rs|postgres/mod.rs) continue ;; esac
    grep -q '^#!\[forbid(unsafe_code)\]' "$f" || { echo "src/$f: a domain module without #![forbid(unsafe_code)]"; status=1; }
done
# Modules in a folder without a mod.rs of their own would escape the rule above.
for d in */; do
    d="${d%/}"
    [ "$d" = postgres ] || [ "$d" = bin ] || [ -f "$d/mod.rs" ] || { echo "src/$d: a domain folder without mod.rs"; status=1; }
done
if grep -rnE '\bunsafe *(\{|fn|impl|extern)' --include='*.rs' . | grep -vE '^\./postgres/'; then
    echo "unsafe code outside src/postgres (above)"; status=1
fi
[ "$status" -eq 0 ] && echo "unsafe code: only in src/postgres"
exit "$status"
