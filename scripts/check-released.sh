#!/usr/bin/env bash
# Fails when a released file (see sql/RELEASED) was edited or is not listed there: a released
# version's install script is sql/releases/easymo--V.sql, and an upgrade script is released when
# the version it leads to is.
set -euo pipefail
cd "$(dirname "$0")/../sql"
status=0
while read -r sum file; do
    case "$sum" in ''|\#*) continue ;; esac
    if [ ! -f "$file" ]; then
        echo "released file $file is missing"; status=1
    elif [ "$(sha256sum "$file" | cut -d' ' -f1)" != "$sum" ]; then
        echo "released file $file was edited (its checksum differs from sql/RELEASED): ship the change as a new version"; status=1
    fi
done < RELEASED
# The list itself is checked against its history: a released file edited together with its line
# here still differs from the checksum the line had when it was first added (paradedb checks
# released files against git the same way). Without git history (an exported tree) only the
# list is checked.
if git -C .. rev-parse --git-dir >/dev/null 2>&1; then
    for commit in $(git -C .. rev-list --reverse HEAD -- sql/RELEASED); do
        git -C .. show "$commit:sql/RELEASED" | while read -r sum file; do
            case "$sum" in ''|\#*) continue ;; esac
            printf '%s %s\n' "$file" "$sum"
        done
    done | awk '!seen[$1]++' > "${TMPDIR:-/tmp}/easymo-released.$$"
    while read -r file first; do
        now=$(awk -v f="$file" '$2 == f {print $1}' RELEASED)
        if [ -n "$now" ] && [ "$now" != "$first" ]; then
            echo "the line of released file $file in sql/RELEASED was changed (first released as $first): ship the change as a new version"; status=1
        fi
    done < "${TMPDIR:-/tmp}/easymo-released.$$"
    rm -f "${TMPDIR:-/tmp}/easymo-released.$$"
fi
released_versions=$(ls releases | sed -n 's/^easymo--\(.*\)\.sql$/\1/p')
for v in $released_versions; do
    for file in "releases/easymo--$v.sql" $(ls upgrades | grep -- "--$v\.sql$" | sed 's|^|upgrades/|'); do
        grep -q " $file\$" RELEASED || { echo "$file belongs to released version $v but is not listed in sql/RELEASED"; status=1; }
    done
done
[ "$status" -eq 0 ] && echo "released files: $(grep -c '^[0-9a-f]' RELEASED) unchanged"
exit "$status"
