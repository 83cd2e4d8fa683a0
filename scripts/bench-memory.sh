#!/usr/bin/env bash
# Memory benchmark (issue 13): peak RSS of mailferry's first mirror at its
# default settings for one account of SMALL messages (default 7,000) and one
# of LARGE (default 70,000), the same mix (gen-corpus's default mix, one
# account: `--accounts 1`, 10 folders, 2 KB to 20 MB with 20 of 5-20 MB),
# beside mbsync's peak RSS pulling the same account in the same run.
#
#   scripts/bench-memory.sh [SMALL [LARGE]]
#
# Each corpus is generated once into BENCH_DIR (default
# /tmp/mailferry-bench-memory), served by a fresh, warmed-up Dovecot
# (scripts/lib-dovecot.sh); mailferry mirrors it into a fresh store
# (`mirror --accounts CSV --host --port --ca-file --json`, nothing else),
# mbsync (isync) pulls it into a fresh Maildir (`Sync Pull`, `Create Near`),
# both under GNU time, and the peaks of anonymous and file-backed resident
# memory sampled from /proc. Prints a Markdown table with the ratios mailferry /
# mbsync and LARGE / SMALL. MF_EXTRA adds options to mailferry's mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-dovecot.sh
ensure_packages mbsync=isync /usr/bin/time=time

small=${1:-7000}
large=${2:-70000}
bench=${BENCH_DIR:-/tmp/mailferry-bench-memory}
cargo build --release --locked --bin mailferry --example gen-corpus >/dev/null 2>&1 || {
    cargo build --release --locked --bin mailferry --example gen-corpus; exit 1; }
bin=$(release_path mailferry)

mkdir -p "$bench"
# Runs a command and writes the peaks of its anonymous and file-backed
# resident memory (RssAnon, RssFile in /proc, polled every 0.1 s) to FILE:
# GNU time's peak RSS is their sum, and file-backed pages (the binary, any
# mapped file) are not memory the process allocated.
cat > "$bench/sample-rss.sh" <<'SAMPLER'
#!/usr/bin/env bash
out=$1; shift
"$@" &
pid=$!
anon=0 file=0
while kill -0 "$pid" 2>/dev/null; do
    while read -r key value _; do
        case $key in
            RssAnon:) [ "$value" -gt "$anon" ] && anon=$value ;;
            RssFile:) [ "$value" -gt "$file" ] && file=$value ;;
        esac
    done < "/proc/$pid/status" 2>/dev/null
    sleep 0.1
done
wait "$pid"; status=$?
echo "$anon $file" > "$out"
exit "$status"
SAMPLER
chmod +x "$bench/sample-rss.sh"
trap 'dovecot_stop "$bench/dovecot"; trash_empty' EXIT
accounts_csv "$bench/accounts.csv" 1

# one_account LABEL MESSAGES: both tools on a one-account corpus.
one_account() {
    local l=$1 messages=$2 port
    port=$(free_port)
    # (a corpus directory per size, so that both are kept between runs)
    bench_dovecot "$bench/$l" "$bench/dovecot" "$port" "$messages" "user1:pw1" "--accounts 1"
    cp "$bench_corpus_txt" "$bench/corpus-$l.summary"
    trash "$bench/store-$l"
    # shellcheck disable=SC2086 # MF_EXTRA is options, split on purpose
    measure "mf_$l" "$bench/sample-rss.sh" "$bench/split.mf_$l" "$bin" --store "$bench/store-$l" --quiet mirror --accounts "$bench/accounts.csv" \
        --host localhost --port "$port" --ca-file "$bench/dovecot/ca.pem" --json ${MF_EXTRA:-}
    trash "$bench/mbsync-$l"
    mbsync_rc "$bench/mbsyncrc-$l" "$port" "$bench/dovecot/ca.pem" "$bench/mbsync-$l" 1
    measure "mbsync_$l" "$bench/sample-rss.sh" "$bench/split.mbsync_$l" mbsync -q -c "$bench/mbsyncrc-$l" -a
    dovecot_stop "$bench/dovecot"
    eval "fetched_$l=\$(json_number \"\$bench/out.mf_$l\" bodies_fetched)"
    eval "mbcount_$l=\$(find \"\$bench/mbsync-$l\" -type f \\( -path '*/cur/*' -o -path '*/new/*' \\) | wc -l)"
    # The copies are only counted (deleted at the end).
    trash "$bench/mbsync-$l" "$bench/store-$l"
}

one_account small "$small"
one_account large "$large"

mb() { echo $(($1 / 1024)); }
split() { read -r anon file < "$bench/split.$1"; echo "$((anon / 1024)) / $((file / 1024))"; }
cat <<TABLE

One account, gen-corpus's default mix; $(nproc) cores; mailferry at its default settings ${MF_EXTRA:-}
- small: $(cat "$bench/corpus-small.summary")
- large: $(cat "$bench/corpus-large.summary")

| account | mailferry wall s | mailferry peak RSS MB (anon / file) | mbsync wall s | mbsync peak RSS MB (anon / file) | mailferry / mbsync RSS | notes |
| --- | ---: | ---: | ---: | ---: | ---: | --- |
| $small messages | $secs_mf_small | $(mb "$rss_mf_small") ($(split mf_small)) | $secs_mbsync_small | $(mb "$rss_mbsync_small") ($(split mbsync_small)) | **$(ratio "$rss_mf_small" "$rss_mbsync_small")** | $fetched_small bodies fetched; mbsync $mbcount_small messages |
| $large messages | $secs_mf_large | $(mb "$rss_mf_large") ($(split mf_large)) | $secs_mbsync_large | $(mb "$rss_mbsync_large") ($(split mbsync_large)) | **$(ratio "$rss_mf_large" "$rss_mbsync_large")** | $fetched_large bodies fetched; mbsync $mbcount_large messages |

anon / file: the peaks of anonymous and file-backed resident memory, sampled every 0.1 s (file-backed: mostly the binary; mailferry's SQLite index is not mapped).

| ratio | measured | target |
| --- | ---: | ---: |
| mailferry peak RSS / mbsync's, $small messages | **$(ratio "$rss_mf_small" "$rss_mbsync_small")** | <= 2 $(met "$(ratio "$rss_mf_small" "$rss_mbsync_small")" "<=" 2) |
| mailferry peak RSS / mbsync's, $large messages | **$(ratio "$rss_mf_large" "$rss_mbsync_large")** | <= 2 $(met "$(ratio "$rss_mf_large" "$rss_mbsync_large")" "<=" 2) |
| mailferry peak RSS, $large / $small messages | **$(ratio "$rss_mf_large" "$rss_mf_small")** | <= 1.1 $(met "$(ratio "$rss_mf_large" "$rss_mf_small")" "<=" 1.1) |
| mbsync peak RSS, $large / $small messages | $(ratio "$rss_mbsync_large" "$rss_mbsync_small") | |
| first mirror wall / mbsync's, $small messages | $(ratio "$secs_mf_small" "$secs_mbsync_small") | |
| first mirror wall / mbsync's, $large messages | $(ratio "$secs_mf_large" "$secs_mbsync_large") | |
TABLE
