#!/usr/bin/env bash
# A no-op re-mirror of a server without CONDSTORE (issue 9, defect 7):
# mailferry beside mbsync against a real Courier-IMAP, both through the same
# counting relay (tests/it/support: Meter), which counts bytes each way and
# round trips (each time the client speaks after the server did, TLS
# handshakes included). Also mailferry --quick. Release build.
#
#   scripts/bench-noop-courier.sh [FOLDERS] [MESSAGES_PER_FOLDER]
#
# Needs what scripts/test.sh installs (Courier's parts, isync). The test it
# runs also asserts mailferry costs no more round trips and bytes than
# mbsync and still sees a flag change and an expunge.
set -euo pipefail
cd "$(dirname "$0")/.."
folders=${1:-200}
messages=${2:-20}
MAILFERRY_NOOP_FOLDERS=$folders MAILFERRY_NOOP_MESSAGES=$messages \
    cargo test --release --locked --test it servers::courier_no_op_mirror_costs_no_more_than_mbsync \
    -- --nocapture 2>&1 | grep '^BENCH' || { echo "the benchmark test failed" >&2; exit 1; }
