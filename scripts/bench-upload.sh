#!/usr/bin/env bash
# Upload benchmark, mailferry beside mbsync, in one run on one machine.
#
#   scripts/bench-upload.sh [MESSAGES]      (default 20000, about 1 GB)
#
# Uses the mirror benchmark's corpus (see scripts/bench-mirror.sh) in a
# Dovecot with three source accounts and two sets of empty target accounts.
# mailferry mirrors the sources into a store (not timed), then its upload
# into the first set is timed, and its no-op re-run; mbsync syncs the same
# source accounts IMAP-to-IMAP into the second set, timed, and its no-op
# re-run. Peak RSS from GNU time. Prints a Markdown table with the ratios.
# CONNECTIONS (default 4) sets mailferry's connections per target mailbox.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-dovecot.sh
ensure_packages mbsync=isync /usr/bin/time=time

messages=${1:-20000}
connections=${CONNECTIONS:-4}
bench=${BENCH_DIR:-/tmp/mailferry-bench}
cargo build --release --locked --bin mailferry --example gen-corpus >/dev/null 2>&1 || {
    cargo build --release --locked --bin mailferry --example gen-corpus; exit 1; }
bin=$(release_path mailferry)

mkdir -p "$bench"
port=$(free_port)
dir="$bench/dovecot-upload"
trap 'dovecot_stop "$dir"' EXIT
bench_dovecot "$bench" "$dir" "$port" "$messages" "user1:pw1 user2:pw2 user3:pw3 up1:pw1 up2:pw2 up3:pw3 mb1:pw1 mb2:pw2 mb3:pw3"

printf 'EmailAddress,UserName,Password,TargetAddress,TargetPassword\n' > "$bench/upload.csv"
for i in 1 2 3; do printf 'user%s@example.com,user%s,pw%s,up%s,pw%s\n' $i $i $i $i $i >> "$bench/upload.csv"; done


rm -rf "$bench/upload-store"
"$bin" --store "$bench/upload-store" --quiet mirror --accounts "$bench/upload.csv" \
    --host localhost --port "$port" --ca-file "$dir/ca.pem" >/dev/null
up=("$bin" --store "$bench/upload-store" --quiet upload --accounts "$bench/upload.csv"
    --target-kind imap --target-host localhost --target-port "$port"
    --target-ca-file "$dir/ca.pem" --target-connections "$connections" --json)
measure mf_upload "${up[@]}"
measure mf_noop "${up[@]}"

: > "$bench/mbsyncrc-upload"
for i in 1 2 3; do
    cat >> "$bench/mbsyncrc-upload" <<RC
IMAPAccount src$i
Host localhost
Port $port
User user$i
Pass pw$i
SSLType IMAPS
CertificateFile $dir/ca.pem

IMAPStore src$i
Account src$i

IMAPAccount dst$i
Host localhost
Port $port
User mb$i
Pass pw$i
SSLType IMAPS
CertificateFile $dir/ca.pem

IMAPStore dst$i
Account dst$i

Channel ch$i
Far :src$i:
Near :dst$i:
Patterns *
Create Near
Sync Pull
SyncState $bench/mbsync-state/ch$i/

RC
    rm -rf "$bench/mbsync-state/ch$i"; mkdir -p "$bench/mbsync-state/ch$i"
done
measure mbsync_upload mbsync -q -c "$bench/mbsyncrc-upload" -a
measure mbsync_noop mbsync -q -c "$bench/mbsyncrc-upload" -a

appended=$(grep -o '"appended": [0-9]*' "$bench/out.mf_upload" | tail -1 | grep -o '[0-9]*$')
noop_appended=$(grep -o '"appended": [0-9]*' "$bench/out.mf_noop" | tail -1 | grep -o '[0-9]*$')
noop_trips=$(grep -o '"round_trips": [0-9]*' "$bench/out.mf_noop" | tail -1 | grep -o '[0-9]*$')
mb_count=0
for i in 1 2 3; do
    n=$(doveadm -c "$dir/dovecot.conf" mailbox status -u "mb$i" messages '*' | awk -F= '{s+=$2} END {print s+0}')
    mb_count=$((mb_count + n))
done
cat <<TABLE

$(cat "$bench/corpus.txt"); $(nproc) cores; mailferry connections per target mailbox: $connections

| run | wall s | peak RSS MB | notes |
| --- | ---: | ---: | --- |
| mailferry upload (from its store) | $secs_mf_upload | $((rss_mf_upload / 1024)) | $appended appended |
| mailferry no-op re-run | $secs_mf_noop | $((rss_mf_noop / 1024)) | $noop_appended appended, $noop_trips round trips |
| mbsync IMAP to IMAP | $secs_mbsync_upload | $((rss_mbsync_upload / 1024)) | $mb_count messages at its target |
| mbsync no-op re-run | $secs_mbsync_noop | $((rss_mbsync_noop / 1024)) | |

- upload / mbsync: $(ratio "$secs_mf_upload" "$secs_mbsync_upload") (target <= 0.7)
- no-op re-run / mbsync no-op: $(ratio "$secs_mf_noop" "$secs_mbsync_noop") (target <= 0.3)
TABLE
