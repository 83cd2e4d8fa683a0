#!/bin/sh
# Issue 12's benchmark: 10 mailboxes, 10,000 contacts and 10,000 events
# (1,000 recurring), imported and uploaded through the Graph emulator at
# Graph's documented limits (4 in flight, 10,000 requests per 10 minutes
# per mailbox). Prints one "BENCH graph:" line; record it in
# docs/BENCHMARKS.md.
set -eu
cd "$(dirname "$0")/.."
cargo test --release --locked --test it graph::benchmark -- --ignored --nocapture 2>&1 \
    | grep -E "BENCH|test result|panicked|FAILED"
