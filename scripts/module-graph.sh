#!/usr/bin/env bash
# Lists who calls whom between the library's top-level modules (from
# `crate::…` paths in src/) and fails when the graph has a cycle.
# Usage: scripts/module-graph.sh [--edges]
set -euo pipefail
cd "$(dirname "$0")/../src"
edges=$(
    for f in $(find . -name '*.rs' ! -name lib.rs ! -name main.rs | sort); do
        from=${f#./}
        from=${from%%/*}
        from=${from%.rs}
        { grep -o 'crate::[a-z_][a-z_0-9]*' "$f" || true; } | sed 's/crate:://' | sort -u |
            while read -r to; do
                if [ "$to" != "$from" ]; then echo "$from $to"; fi
            done
    done | sort -u
)
if [ "${1:-}" = --edges ]; then
    echo "$edges"
fi
# tsort names the modules of each loop on stderr.
if ! out=$(echo "$edges" | tsort 2>&1 >/dev/null) || [ -n "$out" ]; then
    echo "module cycles:" >&2
    echo "$out" | grep -v '^tsort: -: input contains a loop:$' | sed 's/^tsort: /  /' >&2
    exit 1
fi
echo "no module cycles ($(echo "$edges" | wc -l) edges)"
