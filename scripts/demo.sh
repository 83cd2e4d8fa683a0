#!/usr/bin/env bash
# The main job end to end on this machine: an admin's four phases of a
# migration, against a throwaway Dovecot (implicit TLS on 127.0.0.1) that
# plays both the old host and Microsoft 365:
#   source  alice, bob            seeded from fixtures/demo (the "Rackspace" side)
#   target  alice-365, bob-365    empty mailboxes (the "Microsoft 365" side)
# and a throwaway DNS server (dnsmasq on 127.0.0.1) for the MX records.
#
#   1. prepare      preflight (go/no-go per account)
#   2. connect and  mirror, plan, upload, status --summary
#      initial sync
#   3. incremental  a new message arrives; sync moves only it
#   4. cutover      MX switched to Microsoft 365; cutover --check-mx, then
#                   status, verify, verify --target, report --html
#
# Installs what it needs (Dovecot, openssl, dnsmasq) with apt-get when
# missing. Everything it writes stays in /tmp/mailferry-demo.*; the path is
# printed at the end. Exit code 0 when every step ended as expected.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-dovecot.sh
# dnsmasq lives in /usr/sbin, outside a normal user's PATH.
export PATH="$PATH:/usr/sbin:/sbin"
ensure_packages dnsmasq=dnsmasq-base

started=$SECONDS
cargo build --release --locked
# Where cargo put it (CARGO_TARGET_DIR, relative to here, or target/).
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$PWD/$target ;; esac
bin=$target/release/mailferry

work=$(mktemp -d /tmp/mailferry-demo.XXXXXX)
port=$(free_port)
dns_port=$(free_port)
while [ "$dns_port" = "$port" ]; do dns_port=$(free_port); done

dns_stop() {
    local pid
    pid=$(cat "$work/dnsmasq.pid" 2>/dev/null) || return 0
    rm -f "$work/dnsmasq.pid"
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.05
    done
}
# dns_start MX-HOST...: serves those MX records for example.com (preference
# 10, 20, ...) and nothing else.
dns_start() {
    local mx=() pref=10 host
    for host in "$@"; do
        mx+=("--mx-host=example.com,$host,$pref")
        pref=$((pref + 10))
    done
    dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
        --listen-address=127.0.0.1 --bind-interfaces --port="$dns_port" \
        --user="$(id -un)" --pid-file= --log-facility="$work/dnsmasq.log" \
        "${mx[@]}" </dev/null >>"$work/dnsmasq.out" 2>&1 &
    echo $! > "$work/dnsmasq.pid"
    for _ in $(seq 1 100); do
        # dnsmasq answers TCP as well; an open port means it is serving.
        if (exec 3<>"/dev/tcp/127.0.0.1/$dns_port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "dnsmasq did not start:" >&2
    cat "$work/dnsmasq.out" >&2
    return 1
}
trap 'dns_stop; dovecot_stop "$work"' EXIT

dovecot_setup "$work" "$port" \
    "alice:alice-secret bob:bob-secret alice-365:alice-365-secret bob-365:bob-365-secret"
for user in alice bob; do
    mkdir -p "$work/mail/$user"
    cp -r fixtures/demo/$user/INBOX/. "$work/mail/$user/"
    for folder in fixtures/demo/$user/.[!.]*; do
        [ -e "$folder" ] || continue
        cp -r "$folder" "$work/mail/$user/"
    done
    find "$work/mail/$user" -type d -name cur -execdir mkdir -p new tmp \;
done
chown -R "$(dovecot_mail_owner)" "$work/mail"
dovecot_start "$work" "$port"
# Before the cutover, example.com's mail still goes to the old host
# (Rackspace's inbound servers).
dns_start mx1.emailsrvr.com mx2.emailsrvr.com

# The Microsoft 365 migration CSV, with two columns Microsoft's format does
# not have: the target mailbox and its password (a real Microsoft 365 target
# needs neither: the target is the EmailAddress, and the app's OAuth token
# logs in).
cat > "$work/accounts.csv" <<CSV
EmailAddress,UserName,Password,TargetAddress,TargetPassword
alice@example.com,alice,alice-secret,alice-365,alice-365-secret
bob@example.com,bob,bob-secret,bob-365,bob-365-secret
CSV

# The flags that point mailferry at this Dovecot instead of Rackspace and
# Microsoft 365 (see docs/user-guide.md for the real ones).
source_flags=(--host localhost --port "$port" --ca-file "$work/ca.pem")
target_flags=(--target-kind imap --target-host localhost --target-port "$port"
    --target-ca-file "$work/ca.pem")
accounts=(--accounts "$work/accounts.csv")

unexpected=()
# step EXIT-CODE LABEL ARGS...: runs mailferry ARGS, prints its exit code,
# and notes it when it is not the expected one. Exit code 1 (incomplete,
# no-go) does not stop the demo; 2 (could not run) does.
step() {
    local want=$1 label=$2 rc=0
    shift 2
    echo
    echo "\$ mailferry $label"
    "$bin" --store "$work/store" "$@" || rc=$?
    echo "(exit code $rc)"
    if [ "$rc" != "$want" ]; then
        unexpected+=("$label: exit code $rc, expected $want")
        if [ "$rc" -ge 2 ]; then
            echo "mailferry could not run; stopping the demo" >&2
            exit "$rc"
        fi
    fi
}
phase() {
    echo
    echo "=================================================================="
    echo "== $*"
    echo "=================================================================="
}

phase "1. prepare: log in on both sides, count, go or no-go"
echo "Dovecot on localhost:$port plays both sides; the store is $work/store"
step 0 "preflight" preflight "${accounts[@]}" "${source_flags[@]}" "${target_flags[@]}"

phase "2. connect and initial sync: mirror into the store, map, upload"
step 0 "mirror" mirror "${accounts[@]}" "${source_flags[@]}"
step 0 "plan" plan "${accounts[@]}" --target-kind imap
step 0 "upload" upload "${accounts[@]}" "${target_flags[@]}"
step 0 "status --summary" status --summary "${accounts[@]}"

phase "3. incremental sync: a new message arrives at the source"
printf 'From: carol@example.net\r\nTo: alice@example.com\r\nSubject: Late arrival\r\nDate: Thu, 16 Nov 2023 10:00:00 +0000\r\nMessage-ID: <late@example.net>\r\n\r\nJust in time.\r\n' \
    > "$work/mail/alice/new/1700000099.late"
chown "$(dovecot_mail_owner)" "$work/mail/alice/new/1700000099.late"
step 0 "sync (only the new message moves)" sync "${accounts[@]}" "${source_flags[@]}" "${target_flags[@]}"

phase "4. cutover: MX records switched to Microsoft 365, final pass"
echo "Before the switch, --require-mx refuses to start (exit code 1, nothing changed):"
step 1 "cutover --check-mx --require-mx" cutover "${accounts[@]}" "${source_flags[@]}" \
    "${target_flags[@]}" --check-mx --require-mx --resolver "127.0.0.1:$dns_port"
echo
echo "The MX records of example.com now point to Microsoft 365; one more message"
echo "reached the old host during the switch."
dns_stop
dns_start example-com.mail.protection.outlook.com
printf 'From: dave@example.net\r\nTo: bob@example.com\r\nSubject: Sent during the MX switch\r\nDate: Thu, 16 Nov 2023 11:00:00 +0000\r\nMessage-ID: <switch@example.net>\r\n\r\nStill delivered to the old host.\r\n' \
    > "$work/mail/bob/new/1700000100.switch"
chown "$(dovecot_mail_owner)" "$work/mail/bob/new/1700000100.switch"
step 0 "cutover --check-mx" cutover "${accounts[@]}" "${source_flags[@]}" "${target_flags[@]}" \
    --check-mx --resolver "127.0.0.1:$dns_port"
step 0 "cutover --check-mx (again: harmless)" cutover "${accounts[@]}" "${source_flags[@]}" \
    "${target_flags[@]}" --check-mx --resolver "127.0.0.1:$dns_port"
step 0 "status" status "${accounts[@]}"
step 0 "verify" verify
step 0 "verify --target" verify --target "${accounts[@]}" "${target_flags[@]}"
step 0 "report --html $work/report.html" report --html "$work/report.html" "${accounts[@]}"

echo
echo "The store is in $work/store (blobs in objects/, index in index.sqlite)."
echo "The customer's report: $work/report.html"
echo "Demo took $((SECONDS - started))s (build included)."
if [ ${#unexpected[@]} -gt 0 ]; then
    echo
    echo "NOT as expected:" >&2
    printf '  %s\n' "${unexpected[@]}" >&2
    exit 1
fi
echo "Every step ended as expected."
