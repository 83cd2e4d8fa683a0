#!/usr/bin/env bash
# Mirror benchmark, mailferry beside mbsync against the same Dovecot in one run.
#
#   scripts/bench-mirror.sh [MESSAGES]      (default 20000, about 1 GB)
#
# Generates a synthetic corpus straight into Dovecot's Maildirs (3 accounts,
# 30 folders, 2 KB to 20 MB), warms Dovecot's indexes and the page cache,
# then times: the plain fetcher (fixtures/plain_fetch.rs: one connection per
# account, all 3 at once, one `UID FETCH 1:* BODY.PEEK[]` per folder, bytes
# discarded: the server's serving limit), mailferry's first mirror, its no-op
# re-run, mbsync's first sync into a Maildir, and mbsync's no-op re-run, with
# peak RSS from GNU time. Prints a Markdown table with the ratios. BENCH_DIR (default
# /tmp/mailferry-bench) keeps the corpus between runs; delete it to regenerate.
# CONNECTIONS (default 4) sets mailferry's connections per account;
# MF_EXTRA adds mailferry options (e.g. MF_EXTRA="--compress always").
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-dovecot.sh
ensure_packages mbsync=isync /usr/bin/time=time

messages=${1:-20000}
connections=${CONNECTIONS:-4}
bench=${BENCH_DIR:-/tmp/mailferry-bench}
cargo build --release --locked --bin mailferry --example gen-corpus --example plain-fetch >/dev/null 2>&1
bin=$(release_path mailferry)

mkdir -p "$bench"
port=$(free_port)
trap 'dovecot_stop "$bench/dovecot"; trash_empty' EXIT
bench_dovecot "$bench" "$bench/dovecot" "$port" "$messages" "user1:pw1 user2:pw2 user3:pw3"
largest=$(find "$bench/dovecot/mail" -type f -path '*/cur/*' -printf '%s\n' | sort -n | tail -1)

printf 'EmailAddress,UserName,Password\n' > "$bench/accounts.csv"
for i in 1 2 3; do printf 'user%s@example.com,user%s,pw%s\n' $i $i $i >> "$bench/accounts.csv"; done


measure plain "$(release_path examples/plain-fetch)" --host localhost --port "$port" \
    --ca-file "$bench/dovecot/ca.pem" --accounts "$bench/accounts.csv"

trash "$bench/store"
mf=("$bin" --store "$bench/store" --quiet mirror --accounts "$bench/accounts.csv" --host localhost
    --port "$port" --ca-file "$bench/dovecot/ca.pem" --connections "$connections" --json ${MF_EXTRA:-})
measure mf_first "${mf[@]}"
measure mf_noop "${mf[@]}"

trash "$bench/mbsync"
mkdir -p "$bench/mbsync"
mbsync_rc "$bench/mbsyncrc" "$port" "$bench/dovecot/ca.pem" "$bench/mbsync" 3
measure mbsync_first mbsync -q -c "$bench/mbsyncrc" -a
measure mbsync_noop mbsync -q -c "$bench/mbsyncrc" -a

fetched=$(grep -o '"bodies_fetched": [0-9]*' "$bench/out.mf_first" | tail -1 | grep -o '[0-9]*$')
noop_fetched=$(grep -o '"bodies_fetched": [0-9]*' "$bench/out.mf_noop" | tail -1 | grep -o '[0-9]*$')
noop_trips=$(grep -o '"round_trips": [0-9]*' "$bench/out.mf_noop" | tail -1 | grep -o '[0-9]*$')
plain_count=$(grep -o '[0-9]* messages' "$bench/out.plain" | grep -o '^[0-9]*')
mb_count=$(find "$bench/mbsync" -type f -path '*/cur/*' -o -type f -path '*/new/*' | wc -l)
budget_mb=$(( 200 + largest * connections / 1048576 ))

cat <<TABLE

$(cat "$bench_corpus_txt"); $(nproc) cores; mailferry connections per account: $connections ${MF_EXTRA:-}

| run | wall s | peak RSS MB | notes |
| --- | ---: | ---: | --- |
| plain fetch (the server's limit) | $secs_plain | $((rss_plain / 1024)) | $plain_count messages, one connection per account |
| mailferry first mirror | $secs_mf_first | $((rss_mf_first / 1024)) | $fetched bodies fetched |
| mailferry no-op re-run | $secs_mf_noop | $((rss_mf_noop / 1024)) | $noop_fetched bodies, $noop_trips round trips |
| mbsync first sync | $secs_mbsync_first | $((rss_mbsync_first / 1024)) | $mb_count messages in its Maildir |
| mbsync no-op re-run | $secs_mbsync_noop | $((rss_mbsync_noop / 1024)) | |

- first mirror / mbsync first sync: $(ratio "$secs_mf_first" "$secs_mbsync_first") (target <= 0.7)
- first mirror / plain fetch: $(ratio "$secs_mf_first" "$secs_plain"); fraction of the limit (plain fetch / first mirror): $(ratio "$secs_plain" "$secs_mf_first") (target >= 0.8)
- no-op re-run / mbsync no-op: $(ratio "$secs_mf_noop" "$secs_mbsync_noop") (target <= 0.5)
- mailferry peak RSS $((rss_mf_first / 1024)) MB; budget 200 MB + largest message ($((largest / 1048576)) MB) x $connections connections = $budget_mb MB
TABLE
