#!/usr/bin/env bash
# What reading a target folder back costs when the ledger knows nothing of
# it (issue 8, point 1): a lost index, another store, or mail an earlier
# tool put there.
#
#   scripts/bench-readback.sh [MESSAGES]      (default 10000, in one folder)
#
# One Dovecot, a source mailbox with MESSAGES small messages in INBOX and an
# empty target. Timed, with GNU time:
#   1. the first upload (every message appended);
#   2. the no-op re-run (the ledger knows everything: no connection);
#   3. an upload after the index was lost and rebuilt by a mirror: every
#      message is read back and found, none appended.
# Prints a Markdown table and the ratio of (3) to (1).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-dovecot.sh
ensure_packages /usr/bin/time=time python3=python3

messages=${1:-10000}
bench=${BENCH_DIR:-/tmp/mailferry-bench}
cargo build --release --locked --bin mailferry >/dev/null 2>&1
# Where cargo put it (CARGO_TARGET_DIR, relative to here, or target/).
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$PWD/$target ;; esac
bin=$target/release/mailferry

mkdir -p "$bench"
port=$(free_port)
dir="$bench/dovecot-readback"
trap 'dovecot_stop "$dir"' EXIT
dovecot_stop "$dir" 2>/dev/null || true
rm -rf "$dir"
dovecot_setup "$dir" "$port" "src:pw tgt:pw"
python3 - "$dir/mail/src/cur" "$messages" <<'PY'
import os, sys
cur, n = sys.argv[1], int(sys.argv[2])
os.makedirs(cur, exist_ok=True)
for d in ("new", "tmp"):
    os.makedirs(os.path.join(os.path.dirname(cur), d), exist_ok=True)
for i in range(n):
    body = ("line %d of a short message\r\n" % i) * (5 + i % 40)
    msg = ("From: Sender %d <s%d@example.org>\r\nTo: src@example.com\r\n"
           "Subject: message %d\r\nMessage-ID: <m%d.bench@example.org>\r\n"
           "Date: Mon, 3 Mar 2025 10:%02d:%02d +0100\r\n\r\n%s") % (
        i % 97, i % 97, i, i, (i // 60) % 60, i % 60, body)
    data = msg.encode()
    name = "%d.M%dP1.bench,S=%d,W=%d:2,S" % (1700000000 + i, i, len(data), len(data))
    with open(os.path.join(cur, name), "wb") as f:
        f.write(data)
    os.utime(os.path.join(cur, name), (1740992400 + i, 1740992400 + i))
PY
chown -R "$(dovecot_mail_owner)" "$dir/mail"
dovecot_start "$dir" "$port"
doveadm -c "$dir/dovecot.conf" mailbox status -u src messages INBOX >/dev/null

printf 'EmailAddress,UserName,Password,TargetAddress,TargetPassword\nsrc@example.com,src,pw,tgt,pw\n' > "$bench/readback.csv"
store="$bench/readback-store"
rm -rf "$store"
mirror=("$bin" --store "$store" --quiet mirror --accounts "$bench/readback.csv"
        --host localhost --port "$port" --ca-file "$dir/ca.pem" --json)
up=("$bin" --store "$store" --quiet upload --accounts "$bench/readback.csv"
    --target-kind imap --target-host localhost --target-port "$port"
    --target-ca-file "$dir/ca.pem" --json)
"${mirror[@]}" >/dev/null
measure rb_first "${up[@]}"
measure rb_noop "${up[@]}"
rm -f "$store"/index.sqlite*
"${mirror[@]}" >/dev/null 2>&1
measure rb_readback "${up[@]}"

field() { grep -o "\"$2\": [0-9]*" "$bench/out.$1" | tail -1 | grep -o '[0-9]*$'; }
at_target=$(doveadm -c "$dir/dovecot.conf" mailbox status -u tgt messages INBOX | grep -o '[0-9]*$')
cat <<TABLE

$messages messages in one folder; $(nproc) cores; Dovecot on loopback over TLS

| run | wall s | peak RSS MB | appended | found at the target | round trips |
| --- | ---: | ---: | ---: | ---: | ---: |
| first upload | $secs_rb_first | $((rss_rb_first / 1024)) | $(field rb_first appended) | $(field rb_first found_at_target) | $(field rb_first round_trips) |
| no-op re-run | $secs_rb_noop | $((rss_rb_noop / 1024)) | $(field rb_noop appended) | $(field rb_noop found_at_target) | $(field rb_noop round_trips) |
| after the index was lost: read back | $secs_rb_readback | $((rss_rb_readback / 1024)) | $(field rb_readback appended) | $(field rb_readback found_at_target) | $(field rb_readback round_trips) |

- messages at the target afterwards: $at_target (want $messages)
- read back / first upload: $(ratio "$secs_rb_readback" "$secs_rb_first")
TABLE
