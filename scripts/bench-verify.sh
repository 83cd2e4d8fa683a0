#!/usr/bin/env bash
# verify benchmark: mailferry verify beside a sha256sum + zstd -d pipeline
# over the same objects, in one run.
#
#   scripts/bench-verify.sh [STORE]     (default: the mirror benchmark's store)
#
# Run scripts/bench-mirror.sh first to have a store of 20,000 blobs. The
# pipeline checks each blob as a shell would: `zstd -dc FILE | sha256sum`,
# as many at a time as there are cores. Reads come from the page cache for
# both (a warm-up pass reads every object first).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-dovecot.sh
ensure_packages zstd=zstd /usr/bin/time=time
store=${1:-${BENCH_DIR:-/tmp/mailferry-bench}/store}
bench=$(mktemp -d /tmp/mailferry-bench-verify.XXXXXX)
trap 'rm -rf "$bench"' EXIT
[ -f "$store/index.sqlite" ] || { echo "no store at $store: run scripts/bench-mirror.sh first" >&2; exit 2; }
cargo build --release --locked --bin mailferry >/dev/null 2>&1
# Where cargo put it (CARGO_TARGET_DIR, relative to here, or target/).
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$PWD/$target ;; esac
bin=$target/release/mailferry

find "$store/objects" -type f -exec cat {} + >/dev/null
count=$(find "$store/objects" -type f | wc -l)
bytes=$(du -sb "$store/objects" | cut -f1)

measure mf "$bin" --store "$store" --quiet verify
cat > "$bench/check.sh" <<'SH'
#!/bin/sh
# Each argument is objects/ab/cdef...: its name is the sha256 of its bytes.
for f; do
    want=$(basename "$(dirname "$f")")$(basename "$f")
    got=$(zstd -dcq "$f" | sha256sum | cut -d' ' -f1)
    [ "$got" = "$want" ] || echo "corrupt: $f"
done
SH
chmod +x "$bench/check.sh"
measure pipeline sh -c "find '$store/objects' -type f -print0 | xargs -0 -P $(nproc) -n 200 '$bench/check.sh'"

mb=$((bytes / 1048576))
cat <<TABLE

$count blobs, $mb MiB compressed, $(nproc) cores

| run | wall s | MiB/s (compressed) | peak RSS MB |
| --- | ---: | ---: | ---: |
| mailferry verify | $secs_mf | $(awk -v b="$mb" -v s="$secs_mf" 'BEGIN { printf "%.0f", b / s }') | $((rss_mf / 1024)) |
| zstd -dc \| sha256sum per blob | $secs_pipeline | $(awk -v b="$mb" -v s="$secs_pipeline" 'BEGIN { printf "%.0f", b / s }') | $((rss_pipeline / 1024)) |

- verify throughput / pipeline throughput: $(ratio "$secs_pipeline" "$secs_mf") (target >= 0.8)
TABLE
