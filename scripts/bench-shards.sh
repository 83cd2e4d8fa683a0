#!/usr/bin/env bash
# Shards benchmark (issue 14): one batch mirrored into a store in object
# storage (Azurite, Microsoft's Azure Storage emulator) and uploaded from it
# into Dovecot by one worker, and by four shard workers at once, on the same
# corpus and the same Dovecot.
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
# then the same workers upload the batch into target mailboxes of their own
# (`upload --target-kind imap`, into the same Dovecot). For each: wall time,
# peak RSS of a worker, the blobs and their bytes in the store (from
# `verify --json`: each content once), and the requests each run made of
# the object store (what mailferry says: blobs, leases, snapshots, intents,
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
cargo build --release --locked --bin mailferry --example gen-corpus --example slowlink >/dev/null 2>&1 || {
    cargo build --release --locked --bin mailferry --example gen-corpus --example slowlink; exit 1; }
bin=${MAILFERRY_BIN:-$(release_path mailferry)}
slowlink=$(dirname "$(release_path mailferry)")/examples/slowlink
# AZURE_RTT_MS: the emulator behind a line of that round trip (a userspace
# proxy, fixtures/slowlink.rs), as a cloud store is from a worker.
rtt=${AZURE_RTT_MS:-0}
# SHARD_RUNS=one: the one-worker run only.
shard_runs=${SHARD_RUNS:-all}

mkdir -p "$bench"
az_pid="" link_pid=""
trap 'dovecot_stop "$bench/dovecot"; [ -z "$az_pid" ] || kill "$az_pid" 2>/dev/null; [ -z "$link_pid" ] || kill "$link_pid" 2>/dev/null; trash_empty' EXIT

users=""
for ((i = 1; i <= accounts; i++)); do users+="user$i:pw$i one$i:pw$i four$i:pw$i fourx4$i:pw$i dir$i:pw$i "; done
port=$(free_port)
bench_dovecot "$bench" "$bench/dovecot" "$port" "$messages" "$users" "--accounts $accounts --folders 3"
ca=$bench/dovecot/ca.pem
# Each run uploads into mailboxes of its own: LABEL1..LABELn.
targets_csv() {
    local file=$1 label=$2 i
    {
        printf 'EmailAddress,UserName,Password,TargetAddress,TargetPassword\n'
        for ((i = 1; i <= accounts; i++)); do
            printf 'user%s@example.com,user%s,pw%s,%s%s,pw%s\n' $i $i $i "$label" $i $i
        done
    } > "$file"
}

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
    if [ "$rtt" -gt 0 ]; then
        "$slowlink" --listen 127.0.0.1:0 --to "127.0.0.1:$az_port" --delay-ms $((rtt / 2)) \
            > "$bench/link.port" 2> "$bench/link.err" &
        link_pid=$!
        for _ in $(seq 1 100); do [ -s "$bench/link.port" ] && break; sleep 0.05; done
        az_port=$(head -1 "$bench/link.port")
    fi
    export AZURE_STORAGE_ENDPOINT=http://127.0.0.1:$az_port/$account
    container batch
}
stop_azurite() {
    [ -z "$link_pid" ] || { kill "$link_pid"; wait "$link_pid" 2>/dev/null || true; link_pid=""; }
    kill "$az_pid"; wait "$az_pid" 2>/dev/null || true; az_pid=""
}
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

work=$bench/work
trash "$work"
# Four workers as one timed command: bash -c "$four" NAME AT_ONCE ARGS...
export MF_BIN=$bin MF_WORK=$work MF_BENCH=$bench
four='name=$1 at_once=$2 stage=$3; shift 3
for s in 0 1 2 3; do
    "$MF_BIN" --store az://batch/b --work-dir "$MF_WORK/$name-$s" --quiet "$@" \
        --accounts-at-once "$at_once" --shard "$s/4" > "$MF_BENCH/out.$stage-$s" 2> "$MF_BENCH/err.$stage-$s" &
done
fail=0
for p in $(jobs -p); do wait "$p" || fail=1; done
exit $fail'

requests() { grep -ho 'object storage: [0-9]*' "$@" | grep -o '[0-9]*$' | awk '{ n += $1 } END { print n + 0 }'; }
# The totals of each summary (the last KEY of each file).
total() { local key=$1 f; shift; for f; do grep -o "\"$key\": [0-9]*" "$f" | tail -1 | grep -o '[0-9]*$'; done | awk '{ n += $1 } END { print n + 0 }'; }
per() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) printf "n/a"; else printf "%.2f", a / b }'; }

# run LABEL WORKERS AT_ONCE: mirror then upload on a fresh emulator, one
# worker (WORKERS=1) or four shard workers; then its figures as rows.
mirror_rows="" upload_rows=""
run() {
    local label=$1 workers=$2 at_once=$3 blobs bytes cpu mcsv="$bench/targets-$1.csv"
    targets_csv "$mcsv" "$label"
    local mirror_args=(mirror --accounts "$mcsv" --host localhost --port "$port" --ca-file "$ca" --json)
    local upload_args=(upload --accounts "$mcsv" --target-kind imap --target-host localhost
        --target-port "$port" --target-ca-file "$ca" --json)
    start_azurite
    if [ "$workers" = 1 ]; then
        measure "m_$label" "$bin" --store az://batch/b --work-dir "$work/$label" --quiet \
            "${mirror_args[@]}" --accounts-at-once "$at_once"
        measure "u_$label" "$bin" --store az://batch/b --work-dir "$work/$label" --quiet \
            "${upload_args[@]}" --accounts-at-once "$at_once"
    else
        measure "m_$label" bash -c "$four" x "$label" "$at_once" "m_$label" "${mirror_args[@]}"
        measure "u_$label" bash -c "$four" x "$label" "$at_once" "u_$label" "${upload_args[@]}"
    fi
    cpu=$(azurite_cpu)
    "$bin" --store az://batch/b --work-dir "$work/v-$label" --quiet verify --json > "$bench/verify-$label.json"
    stop_azurite
    blobs=$(json_number "$bench/verify-$label.json" blobs_checked)
    bytes=$(json_number "$bench/verify-$label.json" bytes_checked)
    local stage outs errs
    for stage in m u; do
        if [ "$workers" = 1 ]; then outs=("$bench/out.${stage}_$label"); errs=("$bench/err.${stage}_$label")
        else outs=("$bench/out.${stage}_$label"-?); errs=("$bench/err.${stage}_$label"-?); fi
        local r n
        r=$(requests "${errs[@]}")
        local secs rss
        eval "secs=\$secs_${stage}_$label rss=\$rss_${stage}_$label"
        if [ "$stage" = m ]; then
            n=$(total bodies_fetched "${outs[@]}")
            mirror_rows+="| $title | $secs | $((rss / 1024)) | $cpu | $n | $blobs | $((bytes / 1048576)) | $r | $(per "$r" "$n") |"$'\n'
        else
            n=$(total appended "${outs[@]}")
            upload_rows+="| $title | $secs | $((rss / 1024)) | $n | $r | $(per "$r" "$n") |"$'\n'
        fi
    done
}

trash "$bench/dir-store"
targets_csv "$bench/targets-dir.csv" dir
measure dir "$bin" --store "$bench/dir-store" --quiet mirror --accounts "$bench/targets-dir.csv" \
    --host localhost --port "$port" --ca-file "$ca" --json --accounts-at-once 4
measure udir "$bin" --store "$bench/dir-store" --quiet upload --accounts "$bench/targets-dir.csv" \
    --target-kind imap --target-host localhost --target-port "$port" --target-ca-file "$ca" \
    --json --accounts-at-once 4
title="1 worker, 4 accounts at once"
run one 1 4
split="" secs_m_four="" secs_m_fourx4="" secs_u_four="" secs_u_fourx4=""
if [ "$shard_runs" != one ]; then
    title="4 shard workers at once, 1 account at once each"
    run four 4 1
    title="4 shard workers at once, 4 accounts at once each (as on 4 machines)"
    run fourx4 4 4
    for s in 0 1 2 3; do
        split+="$(grep -c '"account":' "$bench/out.m_four-$s") accounts; "
    done
fi

ratios=""
if [ "$shard_runs" != one ]; then
    ratios="4 workers / 1 worker, wall: mirror **$(ratio "$secs_m_four" "$secs_m_one")** (1 account at once each), **$(ratio "$secs_m_fourx4" "$secs_m_one")** (4 each); upload **$(ratio "$secs_u_four" "$secs_u_one")**, **$(ratio "$secs_u_fourx4" "$secs_u_one")**. Accounts per shard: ${split%; }."
fi
tee "$bench/results.md" <<TABLE

### One worker against four shard workers, store in Azurite

$(cat "$bench_corpus_txt"); $(nproc) cores; Dovecot, Azurite (a fresh one per run, in memory; round trip to it ${rtt} ms added) and every worker on this machine; binary $bin

| mirror | wall s | peak RSS MB (a worker) | Azurite CPU s (mirror + upload) | bodies fetched | blobs in the store | stored MB | requests to the object store | requests per message |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
${mirror_rows%$'\n'}

| upload (into Dovecot) | wall s | peak RSS MB (a worker) | appended | requests to the object store | requests per message |
| --- | ---: | ---: | ---: | ---: | ---: |
${upload_rows%$'\n'}

${ratios}
For scale, the same batch with a directory store, 1 worker: mirror ${secs_dir} s ($((rss_dir / 1024)) MB), upload ${secs_udir} s ($((rss_udir / 1024)) MB).
TABLE
