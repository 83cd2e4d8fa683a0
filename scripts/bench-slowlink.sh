#!/usr/bin/env bash
# Slow-link benchmark (issue 13): mailferry beside mbsync through an emulated
# WAN line (fixtures/slowlink.rs, a userspace TCP proxy: the kernel here has
# no netem), against one Dovecot, in one run.
#
#   scripts/bench-slowlink.sh
#
# First checks the emulated line (round trip, rate), then:
#   a. first mirror over 100 ms RTT at 20 Mbit/s: a ~47 MB corpus (gen-corpus
#      600 messages, its largest left out), mailferry (default --compress auto,
#      which does not compress for a server on this machine, then --compress
#      always, as auto does over a real line) and mbsync (which compresses
#      when the server offers it) each through a fresh line; the link floor is
#      the corpus's bytes / rate;
#   b. upload of the same corpus over 100 ms RTT without a cap: mailferry from
#      its store (mirrored directly first, not timed) into up1..3; mbsync
#      IMAP-to-IMAP into mb1..3, its source direct and only its target through
#      the line; beside them mailferry's upload with no line at all (lo1..3)
#      and the line's ceiling, one plain stream of as many bytes; and
#      mailferry's upload through a line capped at RATE too (cap1..3);
#   c. one ~100 MB message through a line that drops every 20 MB (no delay):
#      mailferry mirror re-run until the message is stored (at most 10 runs).
# Prints Markdown tables with the ratios.
#
# Environment: BENCH_DIR (default /tmp/mailferry-bench-slow) keeps the corpora
# between runs; SLOW_MESSAGES (600) and SLOW_CORPUS_MB (47) shape corpus a/b;
# DELAY_MS (50, one way), RATE (2500000 bytes/s), CUT_EVERY (20000000),
# BIG_MB (100), RUNS (10), RUN_TIMEOUT (120 s per run in c) and C_BUDGET (180 s
# for all of c's runs: a run that hangs must not stall the script); MF_EXTRA adds
# options to mailferry's mirrors in a (e.g. MF_EXTRA="--connections 8").
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-dovecot.sh
ensure_packages mbsync=isync /usr/bin/time=time python3=python3 timeout=coreutils

bench=${BENCH_DIR:-/tmp/mailferry-bench-slow}
messages=${SLOW_MESSAGES:-600}
corpus_mb=${SLOW_CORPUS_MB:-47}
delay=${DELAY_MS:-50}
rate=${RATE:-2500000}
cut_every=${CUT_EVERY:-20000000}
big_mb=${BIG_MB:-100}
runs=${RUNS:-10}
run_timeout=${RUN_TIMEOUT:-120}
c_budget=${C_BUDGET:-180}

cargo build --release --locked --bin mailferry --example gen-corpus --example slowlink >/dev/null 2>&1
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$PWD/$target ;; esac
bin=$target/release/mailferry
slowlink=$target/release/examples/slowlink
mkdir -p "$bench"
bench=$(cd "$bench" && pwd)

# ---- helpers -------------------------------------------------------------

# A sink, an echo server and a client that times a push or round trips, to
# check the line and measure its ceiling.
cat > "$bench/net.py" <<'PY'
import socket, sys, time
mode = sys.argv[1]
if mode in ("sink", "echo"):  # prints its port; reads each connection to EOF
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    print(s.getsockname()[1], flush=True)
    while True:
        c, _ = s.accept()
        while True:
            d = c.recv(1 << 20)
            if not d:
                break
            if mode == "echo":
                c.sendall(d)
        c.close()
port, n = int(sys.argv[2]), int(sys.argv[3])
c = socket.create_connection(("127.0.0.1", port))
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
if mode == "push":  # seconds to send N bytes and see them all taken
    buf = b"x" * (1 << 20)
    t = time.time()
    while n > 0:
        c.sendall(buf[: min(n, len(buf))])
        n -= len(buf)
    c.shutdown(socket.SHUT_WR)
    while c.recv(65536):
        pass
    print("%.3f" % (time.time() - t))
elif mode == "ping":  # mean ms of N sequential one-byte round trips
    c.sendall(b"x"); c.recv(1)  # the first also pays for the handshake
    t = time.time()
    for _ in range(n):
        c.sendall(b"x"); c.recv(1)
    print("%.1f" % ((time.time() - t) * 1000 / n))
PY

helpers=()
# Starts a helper server of net.py; sets helper_port.
start_helper() {
    python3 "$bench/net.py" "$1" > "$bench/helper.$1.port" &
    helpers+=($!)
    wait_for_line "$bench/helper.$1.port"
    helper_port=$(head -1 "$bench/helper.$1.port")
}

wait_for_line() {
    for _ in $(seq 1 100); do
        [ -s "$1" ] && return 0
        sleep 0.05
    done
    echo "no port in $1" >&2
    exit 1
}

# start_link NAME SLOWLINK-ARGS...: a fresh line to Dovecot; sets link_port.
# Its counters end in $bench/link.NAME.stats.
start_link() {
    local name=$1
    shift
    rm -f "$bench/link.$name".*
    "$slowlink" --listen 127.0.0.1:0 --stats "$bench/link.$name.stats" "$@" \
        > "$bench/link.$name.port" 2> "$bench/link.$name.err" &
    echo $! > "$bench/link.$name.pid"
    wait_for_line "$bench/link.$name.port"
    link_port=$(head -1 "$bench/link.$name.port")
}

# Stops a line; its stats file then holds the final counts.
stop_link() {
    local pid
    pid=$(cat "$bench/link.$1.pid" 2>/dev/null) || return 0
    kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    rm -f "$bench/link.$1.pid"
}

# link_stat NAME KEY: bytes_down, bytes_up, connections or cuts.
link_stat() { awk -v k="$2" '$1 == k { print $2 }' "$bench/link.$1.stats"; }

cleanup() {
    for f in "$bench"/link.*.pid; do
        [ -e "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null
    done
    for pid in "${helpers[@]}"; do kill "$pid" 2>/dev/null; done
    dovecot_stop "$dir"
    # (what bench_dovecot set aside, in versions of lib-dovecot.sh that do)
    if declare -F trash_empty >/dev/null; then trash_empty; fi
}

# json_total FILE KEY: a figure of a mailferry --json summary's totals.
json_total() {
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["totals"].get(sys.argv[2], 0))' "$1" "$2"
}

# vsize USER...: bytes of their mail as the server sends it.
vsize() {
    local total=0 n
    for u in "$@"; do
        n=$(doveadm -c "$dir/dovecot.conf" mailbox status -u "$u" vsize '*' | awk -F'vsize=' '{s+=$2} END {print s+0}')
        total=$((total + n))
    done
    echo "$total"
}

mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f %%", 100 * a / b }'; }
group() { echo "$1" | sed -e ':a' -e 's/\B[0-9]\{3\}\>/,&/' -e 'ta'; }

# ---- corpora -------------------------------------------------------------

# Corpus a/b: gen-corpus's mix without most of its 20 very large messages
# (5-21 MB each, 250 MB at 600 messages), which would make this a benchmark
# of a few big transfers: the largest files go until it fits SLOW_CORPUS_MB.
marker="$bench/corpus.slow.$messages.$corpus_mb"
if [ ! -f "$marker" ] || [ ! -f "$bench/corpus.done.$messages" ]; then
    rm -rf "$bench/corpus" "$bench"/corpus.done.* "$bench"/corpus.slow.*
    echo "generating $messages messages..." >&2
    "$target/release/examples/gen-corpus" "$bench/corpus" "$messages" >/dev/null
    find "$bench/corpus" -type f -path '*/cur/*' -printf '%s %p\n' | sort -n |
        awk -v cap="$((corpus_mb * 1000000))" '{ s += $1; if (s > cap) print $2 }' | xargs -r rm -f
    read -r kept bytes < <(find "$bench/corpus" -type f -path '*/cur/*' -printf '%s\n' | awk '{ n++; s += $1 } END { print n, s }')
    echo "$kept messages, $(mb "$bytes") MB (gen-corpus $messages, largest left out to stay under $corpus_mb MB), 3 accounts" > "$bench/corpus.txt"
    touch "$bench/corpus.done.$messages" "$marker"
fi

# Corpus c: one message of BIG_MB, deterministic bytes (base64 lines, CRLF).
big_file="$bench/bigmail/cur/1700000000.M1P1.big:2,S"
if [ ! -f "$bench/bigmail.done.$big_mb" ]; then
    rm -rf "$bench/bigmail" "$bench"/bigmail.done.*
    mkdir -p "$bench/bigmail"/{cur,new,tmp}
    python3 - "$big_file" "$big_mb" <<'PY'
import base64, random, sys
path, size = sys.argv[1], int(sys.argv[2]) * 1000 * 1000
head = (b"From: Big Sender <big@example.org>\r\nTo: big@example.com\r\n"
        b"Subject: one very large message\r\nMessage-ID: <big.1@bench.example>\r\n"
        b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
rng = random.Random(13)
with open(path, "wb") as f:
    f.write(head)
    left = size - len(head)
    while left > 0:
        # 57 raw bytes make one 76-character line, 78 bytes with CRLF.
        lines = min(left // 78 + 1, 100000)
        raw = rng.randbytes(57 * lines)
        text = base64.encodebytes(raw).replace(b"\n", b"\r\n")
        f.write(text[:left])
        left -= min(len(text), left)
PY
    # A body cut mid-line is still a message; end it on a line break.
    printf '\r\n' >> "$big_file"
    touch "$bench/bigmail.done.$big_mb"
fi

# ---- the server ----------------------------------------------------------

port=$(free_port)
dir="$bench/dovecot"
unset CORPUS_SHAPE # the corpus above, not one of another shape
trap cleanup EXIT
users="user1:pw1 user2:pw2 user3:pw3 big:pwb"
for i in 1 2 3; do users+=" up$i:pw$i mb$i:pw$i lo$i:pw$i cap$i:pw$i"; done
bench_dovecot "$bench" "$dir" "$port" "$messages" "$users"
cp -al "$bench/bigmail" "$dir/mail/big" 2>/dev/null || cp -a "$bench/bigmail" "$dir/mail/big"
chown -R "$(dovecot_mail_owner)" "$dir/mail/big"
corpus_bytes=$(vsize user1 user2 user3)
big_bytes=$(vsize big)
cat "$dir/mail/big/cur/"* > /dev/null
ca="$dir/ca.pem"

printf 'EmailAddress,UserName,Password\n' > "$bench/accounts.csv"
printf 'EmailAddress,UserName,Password,TargetAddress,TargetPassword\n' > "$bench/upload.csv"
printf 'EmailAddress,UserName,Password,TargetAddress,TargetPassword\n' > "$bench/upload-direct.csv"
printf 'EmailAddress,UserName,Password,TargetAddress,TargetPassword\n' > "$bench/upload-capped.csv"
for i in 1 2 3; do
    printf 'user%s@example.com,user%s,pw%s\n' $i $i $i >> "$bench/accounts.csv"
    printf 'user%s@example.com,user%s,pw%s,up%s,pw%s\n' $i $i $i $i $i >> "$bench/upload.csv"
    printf 'user%s@example.com,user%s,pw%s,lo%s,pw%s\n' $i $i $i $i $i >> "$bench/upload-direct.csv"
    printf 'user%s@example.com,user%s,pw%s,cap%s,pw%s\n' $i $i $i $i $i >> "$bench/upload-capped.csv"
done
printf 'EmailAddress,UserName,Password\nbig@example.com,big,pwb\n' > "$bench/big.csv"

# mbsyncrc_account NAME USER PASSWORD PORT: an IMAPS account and its store.
mbsyncrc_account() {
    cat <<RC
IMAPAccount $1
Host localhost
Port $4
User $2
Pass $3
SSLType IMAPS
CertificateFile $ca

IMAPStore $1
Account $1

RC
}

# ---- the line itself -----------------------------------------------------

start_helper echo
start_link check-rtt --to "127.0.0.1:$helper_port" --delay-ms "$delay"
rtt_ms=$(python3 "$bench/net.py" ping "$link_port" 20)
stop_link check-rtt
start_helper sink
sink_port=$helper_port
check_bytes=$((rate * 4))
start_link check-rate --to "127.0.0.1:$sink_port" --delay-ms "$delay" --rate "$rate"
check_secs=$(python3 "$bench/net.py" push "$link_port" "$check_bytes")
stop_link check-rate

# ---- a. first mirror over the capped line --------------------------------

rm -rf "$bench/store"
start_link mf-mirror --to "127.0.0.1:$port" --delay-ms "$delay" --rate "$rate"
measure mf_mirror "$bin" --store "$bench/store" --quiet mirror --accounts "$bench/accounts.csv" \
    --host localhost --port "$link_port" --ca-file "$ca" --json ${MF_EXTRA:-}
stop_link mf-mirror

rm -rf "$bench/store-z"
start_link mf-mirror-z --to "127.0.0.1:$port" --delay-ms "$delay" --rate "$rate"
measure mf_mirror_z "$bin" --store "$bench/store-z" --quiet mirror --accounts "$bench/accounts.csv" \
    --host localhost --port "$link_port" --ca-file "$ca" --json --compress always ${MF_EXTRA:-}
stop_link mf-mirror-z

rm -rf "$bench/mbsync"
start_link mb-mirror --to "127.0.0.1:$port" --delay-ms "$delay" --rate "$rate"
mbsync_rc "$bench/mbsyncrc" "$link_port" "$ca" "$bench/mbsync" 3
measure mb_mirror mbsync -q -c "$bench/mbsyncrc" -a
stop_link mb-mirror

floor=$(awk -v b="$corpus_bytes" -v r="$rate" 'BEGIN { printf "%.2f", b / r }')
# mirror_row LABEL LINK RUN NOTES: a row of table a.
mirror_row() {
    local down secs rss
    down=$(link_stat "$2" bytes_down)
    eval "secs=\$secs_$3 rss=\$rss_$3"
    echo "| $1 | $secs | $floor | $(pct "$floor" "$secs") | $(group "$down") | $(awk -v b="$down" -v r="$rate" -v s="$secs" 'BEGIN { printf "%.0f %%", 100 * b / r / s }') | $(group "$(link_stat "$2" bytes_up)") | $(link_stat "$2" connections) | $((rss / 1024)) | $4 |"
}
mf_notes() { echo "$(json_total "$1" bodies_fetched) bodies, $(json_total "$1" round_trips) round trips"; }
mb_count=$(find "$bench/mbsync" -type f \( -path '*/cur/*' -o -path '*/new/*' \) | wc -l)

# ---- b. upload over 100 ms RTT, no cap -----------------------------------

rm -rf "$bench/upload-store" "$bench/upload-store-direct" "$bench/upload-store-capped"
"$bin" --store "$bench/upload-store" --quiet mirror --accounts "$bench/upload.csv" \
    --host localhost --port "$port" --ca-file "$ca" >/dev/null
# The ledger is per store: a copy for the upload that takes no line.
cp -a "$bench/upload-store" "$bench/upload-store-direct"
cp -a "$bench/upload-store" "$bench/upload-store-capped"

start_link mf-upload --to "127.0.0.1:$port" --delay-ms "$delay"
measure mf_upload "$bin" --store "$bench/upload-store" --quiet upload --accounts "$bench/upload.csv" \
    --target-kind imap --target-host localhost --target-port "$link_port" --target-ca-file "$ca" --json
stop_link mf-upload

measure mf_upload_direct "$bin" --store "$bench/upload-store-direct" --quiet upload \
    --accounts "$bench/upload-direct.csv" --target-kind imap --target-host localhost \
    --target-port "$port" --target-ca-file "$ca" --json

# The same upload through a line capped at the rate of a: what share of a
# line that bandwidth, not the round trip, bounds it takes.
start_link mf-upload-capped --to "127.0.0.1:$port" --delay-ms "$delay" --rate "$rate"
measure mf_upload_capped "$bin" --store "$bench/upload-store-capped" --quiet upload \
    --accounts "$bench/upload-capped.csv" --target-kind imap --target-host localhost \
    --target-port "$link_port" --target-ca-file "$ca" --json
stop_link mf-upload-capped

start_link mb-upload --to "127.0.0.1:$port" --delay-ms "$delay"
: > "$bench/mbsyncrc-upload"
for i in 1 2 3; do
    mbsyncrc_account "src$i" "user$i" "pw$i" "$port" >> "$bench/mbsyncrc-upload"
    mbsyncrc_account "dst$i" "mb$i" "pw$i" "$link_port" >> "$bench/mbsyncrc-upload"
    cat >> "$bench/mbsyncrc-upload" <<RC
Channel ch$i
Far :src$i:
Near :dst$i:
Patterns *
Create Near
Sync Pull
SyncState $bench/mbsync-state/ch$i/

RC
    rm -rf "$bench/mbsync-state/ch$i"
    mkdir -p "$bench/mbsync-state/ch$i"
done
measure mb_upload mbsync -q -c "$bench/mbsyncrc-upload" -a
stop_link mb-upload

mf_up_bytes=$(link_stat mf-upload bytes_up)
start_link ceiling --to "127.0.0.1:$sink_port" --delay-ms "$delay"
ceiling_secs=$(python3 "$bench/net.py" push "$link_port" "$mf_up_bytes")
stop_link ceiling

appended=$(json_total "$bench/out.mf_upload" appended)
appended_direct=$(json_total "$bench/out.mf_upload_direct" appended)
up_trips=$(json_total "$bench/out.mf_upload" round_trips)
mb_up_count=0
for i in 1 2 3; do
    n=$(doveadm -c "$dir/dovecot.conf" mailbox status -u "mb$i" messages '*' | awk -F= '{s+=$2} END {print s+0}')
    mb_up_count=$((mb_up_count + n))
done
rate_of() { awk -v b="$corpus_bytes" -v s="$1" 'BEGIN { printf "%.2f", b / s / 1e6 }'; }
ceiling_mbs=$(awk -v b="$mf_up_bytes" -v s="$ceiling_secs" 'BEGIN { printf "%.1f", b / s / 1e6 }')

# ---- c. one large message over a line that drops -------------------------

rm -rf "$bench/big-store"
start_link cut --to "127.0.0.1:$port" --cut-every "$cut_every"
big_runs=0 big_done=no exits="" fetched_runs="" out_of_time=""
big_start=$(date +%s.%N)
while [ "$big_runs" -lt "$runs" ]; do
    left=$((c_budget - $(date +%s) + ${big_start%.*}))
    if [ "$left" -le 0 ]; then out_of_time=" (its time budget of $c_budget s spent)"; break; fi
    big_runs=$((big_runs + 1))
    code=0
    timeout --kill-after=10 "$((left < run_timeout ? left : run_timeout))" "$bin" --store "$bench/big-store" --quiet mirror \
        --accounts "$bench/big.csv" --host localhost --port "$link_port" --ca-file "$ca" --json \
        > "$bench/out.big.$big_runs" 2> "$bench/err.big.$big_runs" || code=$?
    exits+="${exits:+ }$code"
    stored=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["totals"]["bodies_fetched"])' \
        "$bench/out.big.$big_runs" 2>/dev/null || echo 0)
    fetched_runs+="${fetched_runs:+ }$stored"
    echo "big run $big_runs: exit $code, $stored bodies fetched" >&2
    if [ "$code" = 0 ] && [ "$stored" -ge 1 ]; then big_done=yes; break; fi
done
big_secs=$(awk -v a="$big_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
stop_link cut
big_down=$(link_stat cut bytes_down)
big_cuts=$(link_stat cut cuts)
verified=""
if [ "$big_done" = yes ]; then
    "$bin" --store "$bench/big-store" --quiet verify > "$bench/out.big.verify" 2>&1 &&
        verified=", verify passed" || verified=", verify FAILED"
    big_result="completed in $big_runs run(s)$verified"
else
    big_result="**not completed after $big_runs runs**$out_of_time"
fi

# ---- the tables ----------------------------------------------------------

cat <<TABLE

$(cat "$bench/corpus.txt"): $(group "$corpus_bytes") bytes as served; $(nproc) cores; line: ${delay} ms each way, $rate bytes/s where capped.

The line itself: $rtt_ms ms per round trip (20 one-byte round trips, asked $((2 * delay)) ms); $(group "$check_bytes") bytes through the capped line in $check_secs s (bytes / rate = $(awk -v b="$check_bytes" -v r="$rate" 'BEGIN { printf "%.1f", b / r }') s, plus two round trips for the handshake and the close).

a. First mirror over $((2 * delay)) ms RTT and $(awk -v r="$rate" 'BEGIN { printf "%g", r * 8 / 1e6 }') Mbit/s

| run | wall s | link floor s | link used | bytes down | line busy | bytes up | connections | peak RSS MB | notes |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |
$(mirror_row "mailferry first mirror${MF_EXTRA:+ $MF_EXTRA}" mf-mirror mf_mirror "$(mf_notes "$bench/out.mf_mirror")")
$(mirror_row "mailferry first mirror, --compress always${MF_EXTRA:+ $MF_EXTRA}" mf-mirror-z mf_mirror_z "$(mf_notes "$bench/out.mf_mirror_z")")
$(mirror_row "mbsync first sync (compresses)" mb-mirror mb_mirror "$mb_count messages in its Maildir")

- mailferry / mbsync wall: $(ratio "$secs_mf_mirror" "$secs_mb_mirror"); with --compress always: $(ratio "$secs_mf_mirror_z" "$secs_mb_mirror")
- link floor = corpus bytes as served / rate; link used = floor / wall (target >= 95 %); line busy = the tool's own bytes down / rate / wall

b. Upload over $((2 * delay)) ms RTT, no bandwidth cap

| run | wall s | MB/s of mail | bytes up via the line | peak RSS MB | notes |
| --- | ---: | ---: | ---: | ---: | --- |
| mailferry upload (from its store), through the line | $secs_mf_upload | $(rate_of "$secs_mf_upload") | $(group "$mf_up_bytes") | $((rss_mf_upload / 1024)) | $appended appended, $up_trips round trips |
| mailferry upload through the line capped at $(awk -v r="$rate" 'BEGIN { printf "%g", r * 8 / 1e6 }') Mbit/s | $secs_mf_upload_capped | $(rate_of "$secs_mf_upload_capped") | $(group "$(link_stat mf-upload-capped bytes_up)") | $((rss_mf_upload_capped / 1024)) | $(json_total "$bench/out.mf_upload_capped" appended) appended; link used $(pct "$(awk -v b="$(link_stat mf-upload-capped bytes_up)" -v r="$rate" 'BEGIN { printf "%.2f", b / r }')" "$secs_mf_upload_capped") (its bytes up / rate / wall) |
| mailferry upload, no line (loopback) | $secs_mf_upload_direct | $(rate_of "$secs_mf_upload_direct") | – | $((rss_mf_upload_direct / 1024)) | $appended_direct appended |
| mbsync IMAP to IMAP, target through the line, source direct | $secs_mb_upload | $(rate_of "$secs_mb_upload") | $(group "$(link_stat mb-upload bytes_up)") | $((rss_mb_upload / 1024)) | $mb_up_count messages at its target |
| one plain TCP stream of as many bytes, through the line (its ceiling) | $ceiling_secs | $ceiling_mbs | $(group "$mf_up_bytes") | – | |

- mailferry / mbsync wall: $(ratio "$secs_mf_upload" "$secs_mb_upload")
- mailferry through the line / without it: $(pct "$secs_mf_upload_direct" "$secs_mf_upload") of its loopback speed kept at $((2 * delay)) ms RTT
- mailferry / the line's ceiling: $(pct "$ceiling_secs" "$secs_mf_upload") (target >= 90 %; the ceiling is one stream through the proxy, bound by its window of 4 MiB per connection and direction / ${delay} ms)

c. One message of $(group "$big_bytes") bytes through a line that drops every $(group "$cut_every") bytes (no delay, no cap)

| figure | value |
| --- | --- |
| mirror | $big_result |
| exit codes of the runs (124: killed by the per-run timeout) | $exits |
| bodies fetched, per run | $fetched_runs |
| bytes down through the line, all runs | $(group "$big_down") |
| bytes down / message size | $(ratio "$big_down" "$big_bytes")$([ "$big_done" = yes ] || echo ", the message not stored") (target <= 1.3, stored) |
| line drops / connections through the line | $big_cuts / $(link_stat cut connections) |
| wall, all runs | $big_secs s |
TABLE
