#!/usr/bin/env bash
# Scale benchmark (issue 13): many small messages in many accounts and
# folders, mailferry beside mbsync and the plain fetcher against the same
# Dovecot in one run.
#
#   scripts/bench-scale.sh              SCALE=10000 scripts/bench-scale.sh
#
# Two corpora of SCALE messages (default 100,000), mostly small mail (about
# 11 KB on average, none over 1 MB; gen-corpus --small), spread evenly:
#   50x20   50 accounts x 20 folders (1,000 folders)
#   500x5   500 accounts x 5 folders (200 messages per account at 100,000)
# Each is generated once into BENCH_DIR (default /tmp/mailferry-bench-scale),
# served by a fresh, warmed-up Dovecot (scripts/lib-dovecot.sh), and then,
# with AT_ONCE (default 4) accounts at once for every tool, timed with GNU
# time (wall, peak RSS):
#   - the plain fetcher (fixtures/plain_fetch.rs, `--at-once 4`): one
#     connection per account, `UID FETCH 1:* BODY.PEEK[]` per folder, bytes
#     discarded: the server's serving limit;
#   - mailferry's first mirror into a fresh store (`--accounts-at-once 4`,
#     other settings default);
#   - mbsync's first sync into Maildirs: one mbsync per account (channel),
#     4 at once (`xargs -P4`), same mbsyncrc as scripts/bench-mirror.sh;
#   - the no-op re-run of each (mailferry's round trips from its --json);
#   - the floor of any no-op: the plain fetcher with `--login-only` (TLS,
#     LOGIN and LOGOUT per account, 4 at once), whatever a tool then asks;
#   - mailferry status, report --html, verify and export --format maildir.
# Prints Markdown tables with the ratios to mbsync (also kept in
# BENCH_DIR/results-SHAPE.md). SHAPES (default "50x20 500x5") picks the
# corpora, as ACCOUNTSxFOLDERS; MF_EXTRA adds options to mailferry's mirror.
# The memory figures (one 7,000- vs one 70,000-message account) are
# scripts/bench-memory.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-dovecot.sh
ensure_packages mbsync=isync /usr/bin/time=time

scale=${SCALE:-100000}
at_once=${AT_ONCE:-4}
shapes=${SHAPES:-50x20 500x5}
bench=${BENCH_DIR:-/tmp/mailferry-bench-scale}
cargo build --release --locked --bin mailferry --example gen-corpus --example plain-fetch >/dev/null 2>&1 || {
    cargo build --release --locked --bin mailferry --example gen-corpus --example plain-fetch; exit 1; }
bin=$(release_path mailferry)
plain=$(release_path examples/plain-fetch)

mkdir -p "$bench"
trap 'dovecot_stop "$bench/dovecot"; trash_empty' EXIT

mb() { echo $(($1 / 1024)); }

# run_corpus ACCOUNTS FOLDERS: everything above for one corpus.
run_corpus() {
    local accounts=$1 folders=$2
    local l="c${accounts}x${folders}" shape="--accounts $accounts --folders $folders --small"
    local users="" i port
    for ((i = 1; i <= accounts; i++)); do users+="user$i:pw$i "; done
    port=$(free_port)
    bench_dovecot "$bench" "$bench/dovecot" "$port" "$scale" "$users" "$shape"
    local csv=$bench/accounts-$l.csv ca=$bench/dovecot/ca.pem store=$bench/store-$l
    local rc=$bench/mbsyncrc-$l maildir=$bench/mbsync-$l channels=$bench/channels-$l
    accounts_csv "$csv" "$accounts"
    seq -f 'user%g' 1 "$accounts" > "$channels"

    measure "${l}_plain" "$plain" --host localhost --port "$port" --ca-file "$ca" \
        --accounts "$csv" --at-once "$at_once"

    trash "$store"
    # shellcheck disable=SC2086 # MF_EXTRA is options, split on purpose
    local mf=("$bin" --store "$store" --quiet mirror --accounts "$csv" --host localhost
        --port "$port" --ca-file "$ca" --accounts-at-once "$at_once" --json ${MF_EXTRA:-})
    measure "${l}_mf_first" "${mf[@]}"

    trash "$maildir"
    mbsync_rc "$rc" "$port" "$ca" "$maildir" "$accounts"
    local mbsync=(xargs -a "$channels" -P "$at_once" -n 1 mbsync -q -c "$rc")
    measure "${l}_mbsync_first" "${mbsync[@]}"

    measure "${l}_mf_noop" "${mf[@]}"
    measure "${l}_mbsync_noop" "${mbsync[@]}"
    measure "${l}_logins" "$plain" --host localhost --port "$port" --ca-file "$ca" \
        --accounts "$csv" --at-once "$at_once" --login-only

    MEASURE_OK=1 measure "${l}_status" "$bin" --store "$store" --quiet status
    measure "${l}_report" "$bin" --store "$store" --quiet report --html "$bench/report-$l.html"
    measure "${l}_verify" "$bin" --store "$store" --quiet verify
    trash "$bench/export-$l"
    measure "${l}_export" "$bin" --store "$store" --quiet export --format maildir "$bench/export-$l"
    dovecot_stop "$bench/dovecot"

    local plain_count fetched first_trips noop_fetched noop_trips mb_count exported store_mb
    plain_count=$(grep -o '[0-9]* messages' "$bench/out.${l}_plain" | grep -o '^[0-9]*')
    fetched=$(json_number "$bench/out.${l}_mf_first" bodies_fetched)
    first_trips=$(json_number "$bench/out.${l}_mf_first" round_trips)
    noop_fetched=$(json_number "$bench/out.${l}_mf_noop" bodies_fetched)
    noop_trips=$(json_number "$bench/out.${l}_mf_noop" round_trips)
    mb_count=$(find "$maildir" -type f \( -path '*/cur/*' -o -path '*/new/*' \) | wc -l)
    exported=$(find "$bench/export-$l" -type f \( -path '*/cur/*' -o -path '*/new/*' \) | wc -l)
    store_mb=$(du -sm "$store" | cut -f1)
    trash "$bench/export-$l"

    eval "local s_plain=\$secs_${l}_plain r_plain=\$rss_${l}_plain"
    eval "local s_first=\$secs_${l}_mf_first r_first=\$rss_${l}_mf_first"
    eval "local s_mbf=\$secs_${l}_mbsync_first r_mbf=\$rss_${l}_mbsync_first"
    eval "local s_noop=\$secs_${l}_mf_noop r_noop=\$rss_${l}_mf_noop"
    eval "local s_mbn=\$secs_${l}_mbsync_noop r_mbn=\$rss_${l}_mbsync_noop"
    eval "local s_logins=\$secs_${l}_logins"
    eval "local s_status=\$secs_${l}_status r_status=\$rss_${l}_status"
    eval "local s_report=\$secs_${l}_report r_report=\$rss_${l}_report"
    eval "local s_verify=\$secs_${l}_verify r_verify=\$rss_${l}_verify"
    eval "local s_export=\$secs_${l}_export r_export=\$rss_${l}_export"
    local per_account r_first_mb r_noop_mb r_limit
    per_account=$(awk -v t="$noop_trips" -v a="$accounts" 'BEGIN { printf "%.1f", t / a }')
    r_first_mb=$(ratio "$s_first" "$s_mbf")
    r_noop_mb=$(ratio "$s_noop" "$s_mbn")
    r_limit=$(ratio "$s_plain" "$s_first")

    tee "$bench/results-${accounts}x${folders}.md" <<TABLE

### $accounts accounts x $folders folders

$(cat "$bench_corpus_txt"); $(nproc) cores; $at_once accounts at once for every tool ${MF_EXTRA:-}

| run | wall s | peak RSS MB | notes |
| --- | ---: | ---: | --- |
| plain fetch (the server's limit) | $s_plain | $(mb "$r_plain") | $plain_count messages, one connection per account |
| mailferry first mirror | $s_first | $(mb "$r_first") | $fetched bodies fetched ($(awk -v n="$fetched" -v s="$s_first" 'BEGIN { printf "%.0f", n / s }') msg/s), $first_trips round trips; store $store_mb MB |
| mbsync first sync | $s_mbf | $(mb "$r_mbf") | $mb_count messages in its Maildirs; RSS of the largest of its processes |
| mailferry no-op re-mirror | $s_noop | $(mb "$r_noop") | $noop_fetched bodies, $noop_trips round trips ($per_account per account) |
| mbsync no-op re-run | $s_mbn | $(mb "$r_mbn") | |
| bare logins, one per account (plain fetcher --login-only) | $s_logins | – | the floor of any no-op against this server |
| mailferry status | $s_status | $(mb "$r_status") | |
| mailferry report --html | $s_report | $(mb "$r_report") | $(du -k "$bench/report-$l.html" | cut -f1) KB page |
| mailferry verify | $s_verify | $(mb "$r_verify") | |
| mailferry export --format maildir | $s_export | $(mb "$r_export") | $exported files |

| ratio | measured | target |
| --- | ---: | ---: |
| first mirror / mbsync first sync | **$r_first_mb** | <= 0.3 $(met "$r_first_mb" "<=" 0.3) |
| fraction of the limit (plain fetch / first mirror) | **$r_limit** | >= 0.8 $(met "$r_limit" ">=" 0.8) |
| no-op re-mirror / mbsync no-op | **$r_noop_mb** | <= 0.1 $(met "$r_noop_mb" "<=" 0.1) |
| no-op re-mirror / bare logins | $(ratio "$s_noop" "$s_logins") | |
| bare logins / mbsync no-op (the lowest ratio a no-op can reach here) | $(ratio "$s_logins" "$s_mbn") | |
| no-op round trips per account | **$per_account** | <= 4 $(met "$per_account" "<=" 4) |
| report --html wall s | **$s_report** | <= 1 $(met "$s_report" "<=" 1) |
| first mirror peak RSS / mbsync's largest process | **$(ratio "$r_first" "$r_mbf")** | <= 2 $(met "$(ratio "$r_first" "$r_mbf")" "<=" 2) ($at_once mbsync processes ran at once) |
TABLE
}

for s in $shapes; do
    run_corpus "${s%x*}" "${s#*x}"
done
echo
echo "Tables also in $bench/results-*.md"
