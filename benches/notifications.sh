# Notifications (issue 18): send_notification fanning out to 3 channels (push, sms, email), with
# preferences (quiet hours and a muted type on one channel) and a dedupe key, against plain SQL
# that inserts the same rows (one notification, its dedupe key and three deliveries, in one
# statement) without reading any preference: the floor of what a fan-out writes.
# pgbench, 1 and 8 clients; notifications per second.
bsql -q <<'SQL' >/dev/null
SELECT set_notification_preference(('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'push', true,
                                   '22:00', '07:00', 'Africa/Kigali')
  FROM generate_series(1, 1000) g;
SELECT set_notification_preference(('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'email', true,
                                   p_muted_types => ARRAY['promo'])
  FROM generate_series(1, 1000) g;
VACUUM ANALYZE;
SQL
tmp=$(mktemp -d)
user="('00000000-0000-4000-8000-' || lpad(:u::text, 12, '0'))::uuid"
pick=$'\\set u random(1, 1000)\n\\set k random(1, 9000000000000000000)'
printf '%s\nSELECT send_notification(%s, %s, %s, %s, %s, %s, 5, %s);\n' "$pick" "$user" "'receipt'" "'Receipt'" \
    "'You paid 1500 RWF'" "'{\"ride\": 42}'" "ARRAY['push', 'sms', 'email']" "'n-' || :k" > "$tmp/native.sql"
cat > "$tmp/sql.sql" <<SQL
$pick
WITH n AS (INSERT INTO notifications (user_id, type, title, body, data, priority, dedupe_key)
           VALUES ($user, 'receipt', 'Receipt', 'You paid 1500 RWF', '{"ride": 42}', 5, 's-' || :k) RETURNING id, user_id),
     k AS (INSERT INTO notification_dedupe_keys (user_id, dedupe_key, notification_id, expires_at)
           SELECT user_id, 's-' || :k, id, now() + interval '1 day' FROM n)
INSERT INTO notification_deliveries (notification_id, user_id, channel, priority)
SELECT n.id, n.user_id, c, 5 FROM n, unnest(ARRAY['push', 'sms', 'email']) c;
SQL
for clients in 1 8; do
    nn=(); ns=()
    for round in 1 2 3; do
        nn+=("$(pgbench_tps "$tmp/native.sql" "$clients" 5)")
        ns+=("$(pgbench_tps "$tmp/sql.sql" "$clients" 5)")
    done
    nn=$(median "${nn[@]}"); ns=$(median "${ns[@]}")
    result notifications "$clients client(s), 3-channel fan-out/s: send_notification / plain INSERTs" "$nn/$ns" ""
    result notifications "$clients client(s), send_notification / plain INSERTs" "$(ratio "$nn" "$ns")" "(noted)"
done
rm -rf "$tmp"
