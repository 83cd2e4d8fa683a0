#!/usr/bin/env bash
# Runs every test of mailferry on a fresh Debian machine: installs what the
# tests need (Dovecot, openssl, chromium for the HTML report), then fmt, clippy
# and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] || need+=(dovecot-imapd dovecot-core)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v chromium >/dev/null 2>&1 || need+=(chromium fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked --all-targets
