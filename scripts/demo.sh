#!/usr/bin/env bash
# The main job end to end on this machine: builds mailferry, starts a
# throwaway Dovecot (implicit TLS on 127.0.0.1) seeded from fixtures/demo,
# mirrors both accounts into a fresh store, adds a message at the source,
# mirrors again (only the new message moves), and prints `status`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-dovecot.sh
ensure_packages

cargo build --release --locked
bin=target/release/mailferry

work=$(mktemp -d /tmp/mailferry-demo.XXXXXX)
port=$(free_port)
trap 'dovecot_stop "$work"' EXIT
dovecot_setup "$work" "$port" "alice:alice-secret bob:bob-secret"
for user in alice bob; do
    mkdir -p "$work/mail/$user"
    cp -r fixtures/demo/$user/INBOX/. "$work/mail/$user/"
    for folder in fixtures/demo/$user/.[!.]*; do
        cp -r "$folder" "$work/mail/$user/"
    done
    find "$work/mail/$user" -type d -name cur -execdir mkdir -p new tmp \;
done
chown -R "$(dovecot_mail_owner)" "$work/mail"
dovecot_start "$work" "$port"

cat > "$work/accounts.csv" <<CSV
EmailAddress,UserName,Password
alice@example.com,alice,alice-secret
bob@example.com,bob,bob-secret
CSV

echo "== first mirror (Dovecot on localhost:$port, store $work/store)"
"$bin" --store "$work/store" mirror --accounts "$work/accounts.csv" \
    --host localhost --port "$port" --ca-file "$work/ca.pem"

echo
echo "== a new message arrives for alice; mirror again"
printf 'From: carol@example.net\r\nTo: alice@example.com\r\nSubject: Late arrival\r\nMessage-ID: <late@example.net>\r\n\r\nJust in time.\r\n' \
    > "$work/mail/alice/new/1700000099.late"
chown "$(dovecot_mail_owner)" "$work/mail/alice/new/1700000099.late"
"$bin" --store "$work/store" mirror --accounts "$work/accounts.csv" \
    --host localhost --port "$port" --ca-file "$work/ca.pem"

echo
echo "== status"
"$bin" --store "$work/store" status
echo
echo "The store is in $work/store (blobs in objects/, index in index.sqlite)."
