#!/usr/bin/env bash
# Shards benchmark (issue 14): one batch mirrored into a store in object
# storage (Azurite, Microsoft's Azure Storage emulator) by one worker, and by
# four shard workers at once, on the same corpus and the same Dovecot.
#
#   scripts/bench-shards.sh             MESSAGES=24000 ACCOUNTS=96 scripts/bench-shards.sh
#
# The corpus: MESSAGES (default 12,000) in ACCOUNTS (default 48) accounts of
# 3 folders, served by a fresh, warmed-up Dovecot (scripts/lib-dovecot.sh).
# Each run starts from an empty container:
#   - 1 worker:  `mirror` of the whole batch, 4 accounts at once;
#   - 4 workers: `mirror --shard I/4` for I = 0..3 at once, 1 account at
#     once each (4 in all, as the one worker), each with its own working
#     directory;
# then for each: wall time, the blobs and their bytes in the store (from
# `verify --json`: each content once), and the requests each run made of
# the object store (what mailferry says: blobs, leases, snapshots,
# listings) per message. Azurite runs on this machine: the figures say
# what sharding costs, not what a second machine gains (that is the link,
# the disk and the source's per-IP limits: docs/scale-out.md).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-dovecot.sh
ensure_packages /usr/bin/time=time curl=curl

messages=${MESSAGES:-12000}
accounts=${ACCOUNTS:-48}
bench=${BENCH_DIR:-/tmp/mailferry-bench-shards}
azurite=${MAILFERRY_AZURITE_DIR:-$HOME/.cache/mailferry-test/azurite}
if [ ! -x "$azurite/node_modules/.bin/azurite-blob" ]; then
    command -v npm >/dev/null 2>&1 || ensure_packages npm=npm
    mkdir -p "$azurite"
    (cd "$azurite" && npm install --no-audit --no-fund --silent azurite@3.35.0)
fi
cargo build --release --locked --bin mailferry --example gen-corpus >/dev/null 2>&1 || {
    cargo build --release --locked --bin mailferry --example gen-corpus; exit 1; }
bin=$(release_path mailferry)

mkdir -p "$bench"
az_pid=""
trap 'dovecot_stop "$bench/dovecot"; [ -z "$az_pid" ] || kill "$az_pid" 2>/dev/null; trash_empty' EXIT

users=""
for ((i = 1; i <= accounts; i++)); do users+="user$i:pw$i "; done
port=$(free_port)
bench_dovecot "$bench" "$bench/dovecot" "$port" "$messages" "$users" "--accounts $accounts --folders 3"
csv=$bench/accounts.csv ca=$bench/dovecot/ca.pem
accounts_csv "$csv" "$accounts"

account=devstoreaccount1
key="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
export AZURE_STORAGE_ACCOUNT_NAME=$account AZURE_STORAGE_ACCOUNT_KEY=$key AZURE_ALLOW_HTTP=true

# A fresh Azurite (in memory) for each run, so that every run meets an
# empty emulator: its metadata grows slower with every blob it holds.
start_azurite() {
    az_port=$(free_port)
    "$azurite/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$az_port" \
        --inMemoryPersistence --silent --disableTelemetry --skipApiVersionCheck \
        > "$bench/azurite.log" 2>&1 &
    az_pid=$!
    for _ in $(seq 1 100); do
        grep -q "listens on" "$bench/azurite.log" && break
        sleep 0.1
    done
    export AZURE_STORAGE_ENDPOINT=http://127.0.0.1:$az_port/$account
    container batch
}
stop_azurite() { kill "$az_pid"; wait "$az_pid" 2>/dev/null || true; az_pid=""; }
# CPU seconds the emulator has used (user + system).
azurite_cpu() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / t }' "/proc/$az_pid/stat"; }

# A container, made with a SharedKey-signed REST request (the emulator's
# published key; object-storage clients do not make containers).
container() {
    local c=$1 date hexkey sig
    date=$(LC_ALL=C TZ=GMT date '+%a, %d %b %Y %H:%M:%S GMT')
    hexkey=$(printf '%s' "$key" | base64 -d | od -An -tx1 | tr -d ' \n')
    sig=$(printf 'PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:%s\nx-ms-version:2023-11-03\n/%s/%s/%s\nrestype:container' \
        "$date" "$account" "$account" "$c" \
        | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$hexkey" -binary | base64)
    curl -sf -X PUT -H "x-ms-date: $date" -H "x-ms-version: 2023-11-03" \
        -H "Authorization: SharedKey $account:$sig" -H "Content-Length: 0" \
        "http://127.0.0.1:$az_port/$account/$c?restype=container" >/dev/null
}

mirror_args=(mirror --accounts "$csv" --host localhost --port "$port" --ca-file "$ca" --json)
work=$bench/work
trash "$work"
# Four workers as one timed command: bash -c "$four" NAME AT_ONCE ARGS...
export MF_BIN=$bin MF_WORK=$work MF_BENCH=$bench
four='name=$1 at_once=$2; shift 2
for s in 0 1 2 3; do
    "$MF_BIN" --store az://batch/b --work-dir "$MF_WORK/$name-$s" --quiet "$@" \
        --accounts-at-once "$at_once" --shard "$s/4" > "$MF_BENCH/out.$name-$s" 2> "$MF_BENCH/err.$name-$s" &
done
fail=0
for p in $(jobs -p); do wait "$p" || fail=1; done
exit $fail'

requests() { grep -ho 'object storage: [0-9]*' "$@" | grep -o '[0-9]*$' | awk '{ n += $1 } END { print n + 0 }'; }
# The totals of each summary (the last bodies_fetched of each file).
fetched() { local f; for f; do grep -o '"bodies_fetched": [0-9]*' "$f" | tail -1 | grep -o '[0-9]*$'; done | awk '{ n += $1 } END { print n + 0 }'; }
per() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) printf "n/a"; else printf "%.2f", a / b }'; }

# run LABEL COMMAND...: on a fresh emulator; then its figures as a row.
rows=""
run() {
    local label=$1 outs errs blobs bytes cpu
    shift
    start_azurite
    measure "$label" "$@"
    cpu=$(azurite_cpu)
    "$bin" --store az://batch/b --work-dir "$work/v-$label" --quiet verify --json > "$bench/verify-$label.json"
    stop_azurite
    blobs=$(json_number "$bench/verify-$label.json" blobs_checked)
    bytes=$(json_number "$bench/verify-$label.json" bytes_checked)
    if [ "$label" = one ]; then outs=("$bench/out.one"); errs=("$bench/err.one")
    else outs=("$bench/out.$label"-?); errs=("$bench/err.$label"-?); fi
    local f r
    f=$(fetched "${outs[@]}")
    r=$(requests "${errs[@]}")
    eval "local secs=\$secs_$label"
    rows+="| $title | $secs | $cpu | $f | $blobs | $((bytes / 1048576)) | $r | $(per "$r" "$f") |"$'\n'
}

trash "$bench/dir-store"
measure dir "$bin" --store "$bench/dir-store" --quiet "${mirror_args[@]}" --accounts-at-once 4
title="1 worker, 4 accounts at once"
run one "$bin" --store az://batch/b --work-dir "$work/one" --quiet "${mirror_args[@]}" --accounts-at-once 4
title="4 shard workers at once, 1 account at once each"
run four bash -c "$four" x four 1 "${mirror_args[@]}"
title="4 shard workers at once, 4 accounts at once each (as on 4 machines)"
run fourx4 bash -c "$four" x fourx4 4 "${mirror_args[@]}"
split=""
for s in 0 1 2 3; do
    split+="$(grep -c '"account":' "$bench/out.four-$s") accounts; "
done

tee "$bench/results.md" <<TABLE

### One worker against four shard workers, store in Azurite

$(cat "$bench_corpus_txt"); $(nproc) cores; Dovecot, Azurite (a fresh one per run, in memory) and every worker on this machine

| run | wall s | Azurite CPU s | bodies fetched | blobs in the store | stored MB | requests to the object store | requests per message |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
${rows%$'\n'}

4 workers / 1 worker, wall: **$(ratio "$secs_four" "$secs_one")** (1 account at once each), **$(ratio "$secs_fourx4" "$secs_one")** (4 each). Accounts per shard: ${split%; }. For scale, the same mirror into a directory store: ${secs_dir} s.
TABLE
