#!/usr/bin/env bash
# Many folders (issue 8, point 12): the first mirror and the no-op re-run of
# one account with FOLDERS folders (default 100000) on the scripted IMAP
# server of the tests (tests/it/support/hostile.rs; LIST-STATUS and CONDSTORE,
# so a no-op run is one LIST and opens no folder). Release build.
#
#   scripts/bench-folders.sh [FOLDERS]
#   OLD_BIN=/path/to/older/mailferry scripts/bench-folders.sh   # the same beside another build
#
# Prints the wall time of both runs; the test it runs also asserts that the
# no-op run opened no folder.
set -euo pipefail
cd "$(dirname "$0")/.."
folders=${1:-100000}
run() {
    MAILFERRY_FOLDERS=$folders MAILFERRY_BENCH_BIN=${1:-} \
        cargo test --release --locked --test it hostile::many_folders -- --nocapture 2>&1 |
        grep '^BENCH' || { echo "the many-folders test failed" >&2; exit 1; }
}
echo "this build:"
MAILFERRY_FOLDERS=$folders cargo test --release --locked --test it hostile::many_folders -- --nocapture 2>&1 |
    grep '^BENCH' || { echo "the many-folders test failed" >&2; exit 1; }
if [ -n "${OLD_BIN:-}" ]; then
    echo "$OLD_BIN:"
    run "$OLD_BIN"
fi
