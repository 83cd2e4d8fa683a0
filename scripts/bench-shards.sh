#!/usr/bin/env bash
# Shards benchmark (issue 14): one batch mirrored into a store in object
# storage (Azurite, Microsoft's Azure Storage emulator) by one worker, and by
# four shard workers at once, on the same corpus and the same Dovecot.
#
#   scripts/bench-shards.sh             MESSAGES=24000 ACCOUNTS=12 scripts/bench-shards.sh
#
# The corpus: MESSAGES (default 12,000) in ACCOUNTS (default 12) accounts of
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
accounts=${ACCOUNTS:-12}
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

# Azurite on a free port, its data set aside at exit.
trash "$bench/azurite"
mkdir -p "$bench/azurite"
az_port=$(free_port)
"$azurite/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$az_port" \
    --location "$bench/azurite" --silent --disableTelemetry --skipApiVersionCheck \
    > "$bench/azurite.log" 2>&1 &
az_pid=$!
for _ in $(seq 1 100); do
    grep -q "listens on" "$bench/azurite.log" && break
    sleep 0.1
done
account=devstoreaccount1
key="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
export AZURE_STORAGE_ACCOUNT_NAME=$account AZURE_STORAGE_ACCOUNT_KEY=$key
export AZURE_STORAGE_ENDPOINT=http://127.0.0.1:$az_port/$account AZURE_ALLOW_HTTP=true

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
container one
container four

mirror_args=(mirror --accounts "$csv" --host localhost --port "$port" --ca-file "$ca" --json)
work=$bench/work
trash "$work"

measure one "$bin" --store az://one/batch --work-dir "$work/one" --quiet \
    "${mirror_args[@]}" --accounts-at-once 4

four() {
    local s pids=()
    for s in 0 1 2 3; do
        "$bin" --store az://four/batch --work-dir "$work/four-$s" --quiet \
            "${mirror_args[@]}" --accounts-at-once 1 --shard "$s/4" \
            > "$bench/out.four-$s" 2> "$bench/err.four-$s" &
        pids+=($!)
    done
    for s in "${pids[@]}"; do wait "$s"; done
}
measure four four

requests() { grep -ho 'object storage: [0-9]*' "$@" | grep -o '[0-9]*$' | awk '{ n += $1 } END { print n + 0 }'; }
fetched() { grep -ho '"bodies_fetched": [0-9]*' "$@" | grep -o '[0-9]*$' | awk '{ n += $1 } END { print n + 0 }'; }
r_one=$(requests "$bench/err.one")
r_four=$(requests "$bench"/err.four-?)
f_one=$(fetched "$bench/out.one")
f_four=$(fetched "$bench"/out.four-?)
"$bin" --store az://one/batch --work-dir "$work/v" --quiet verify --json > "$bench/verify-one.json"
"$bin" --store az://four/batch --work-dir "$work/v" --quiet verify --json > "$bench/verify-four.json"
blobs_one=$(json_number "$bench/verify-one.json" blobs_checked)
blobs_four=$(json_number "$bench/verify-four.json" blobs_checked)
bytes_one=$(json_number "$bench/verify-one.json" bytes_checked)
bytes_four=$(json_number "$bench/verify-four.json" bytes_checked)
per() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) printf "n/a"; else printf "%.2f", a / b }'; }

tee "$bench/results.md" <<TABLE

### One worker against four shard workers, store in Azurite

$(cat "$bench_corpus_txt"); $(nproc) cores; Dovecot, Azurite and every worker on this machine

| run | wall s | peak RSS MB | bodies fetched | blobs in the store | stored MB | requests to the object store | requests per message |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| 1 worker, 4 accounts at once | $secs_one | $((rss_one / 1024)) | $f_one | $blobs_one | $((bytes_one / 1048576)) | $r_one | $(per "$r_one" "$f_one") |
| 4 shard workers at once, 1 account each | $secs_four | – | $f_four | $blobs_four | $((bytes_four / 1048576)) | $r_four | $(per "$r_four" "$f_four") |

4 workers / 1 worker, wall: **$(ratio "$secs_four" "$secs_one")**
TABLE
