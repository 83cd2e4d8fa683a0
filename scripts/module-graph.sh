#!/usr/bin/env bash
# Lists who calls whom between the library's top-level modules (from
# `crate::…` paths in src/, comments left out; the binary's main.rs and
# cli/ are not the library's) and fails when the graph has a cycle or when
# one stage (mirror, upload) reaches into the other.
# Usage: scripts/module-graph.sh [--edges]
set -euo pipefail
cd "$(dirname "$0")/../src"
edges=$(
    for f in $(find . -name '*.rs' ! -name lib.rs ! -name main.rs ! -path './cli/*' | sort); do
        from=${f#./}
        from=${from%%/*}
        from=${from%.rs}
        # `crate::x` and `crate::{x, y::z}`; comment lines do not count.
        { grep -v '^\s*//' "$f" | grep -oE 'crate::([a-z_][a-z_0-9]*|\{[^}]*\})' || true; } |
            sed -E 's/^crate:://; s/[{}]//g' | tr ',' '\n' | sed -E 's/^ *//; s/::.*//' |
            { grep -E '^[a-z_][a-z_0-9]*$' || true; } | sort -u |
            while read -r to; do
                if [ "$to" != "$from" ]; then echo "$from $to"; fi
            done
    done | sort -u
)
if [ "${1:-}" = --edges ]; then
    echo "$edges" | awk '{to[$1] = to[$1] " " $2} END {for (m in to) print m " ->" to[m]}' | sort
fi
status=0
# tsort names the modules of each loop on stderr.
if ! out=$(echo "$edges" | tsort 2>&1 >/dev/null) || [ -n "$out" ]; then
    echo "module cycles:" >&2
    echo "$out" | grep -v '^tsort: -: input contains a loop:$' | sed 's/^tsort: /  /' >&2
    status=1
fi
if crossing=$(echo "$edges" | grep -E '^(mirror upload|upload mirror)$'); then
    echo "one stage imports the other: $crossing" >&2
    status=1
fi
if [ $status = 0 ]; then
    echo "no module cycles, the stages apart ($(echo "$edges" | wc -l) edges)"
fi
exit $status
