#!/usr/bin/env bash
# Runs every test of mailferry on a fresh Debian machine: installs what the
# tests need (Dovecot, Cyrus and Courier, openssl, chromium for the HTML
# report, mbsync for the benchmarks), then fmt, clippy and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
need=()
command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] || need+=(dovecot-imapd dovecot-core)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v chromium >/dev/null 2>&1 || need+=(chromium fonts-dejavu-core)
# Cyrus and Courier conflict with dovecot-imapd (all provide imap-server):
# their non-conflicting parts come from apt, their IMAP daemons are
# downloaded and unpacked by the tests (tests/it/support/mod.rs).
[ -x /usr/lib/cyrus/bin/master ] || need+=(cyrus-common cyrus-admin)
command -v saslpasswd2 >/dev/null 2>&1 || need+=(sasl2-bin)
[ -x /usr/sbin/couriertcpd ] || need+=(courier-base)
[ -x /usr/lib/courier/courier-authlib/authdaemond ] || need+=(courier-authlib courier-authdaemon)
command -v makeuserdb >/dev/null 2>&1 || [ -x /usr/sbin/makeuserdb ] || need+=(courier-authlib-userdb)
[ -x /usr/libexec/gam_server ] || need+=(gamin)
command -v mbsync >/dev/null 2>&1 || need+=(isync)
# Azurite (Microsoft's Azure Storage emulator) for the store in object storage.
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
servers=${MAILFERRY_TEST_SERVERS:-/var/tmp/mailferry-test-servers}
missing_debs=()
for pkg in cyrus-imapd courier-imap; do
    ls "$servers/${pkg}_"*.deb >/dev/null 2>&1 || missing_debs+=("$pkg")
done
if [ ${#need[@]} -gt 0 ] || [ ${#missing_debs[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
fi
if [ ${#need[@]} -gt 0 ]; then
    # dma: the mail transfer agent Cyrus and Courier want, without a daemon.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" dma >/dev/null
fi
if [ ${#missing_debs[@]} -gt 0 ]; then
    $SUDO mkdir -p "$servers"
    (cd "$servers" && $SUDO apt-get download -qq "${missing_debs[@]}")
fi

azurite=${MAILFERRY_AZURITE_DIR:-$HOME/.cache/mailferry-test/azurite}
if [ ! -x "$azurite/node_modules/.bin/azurite-blob" ]; then
    mkdir -p "$azurite"
    (cd "$azurite" && npm install --no-audit --no-fund --silent azurite@3.35.0)
fi
export MAILFERRY_AZURITE="$azurite/node_modules/.bin/azurite-blob"
# moto's S3 server stands in for Amazon S3 (tests/it/support/moto.rs).
python3 -c 'import moto.server' >/dev/null 2>&1 \
    || python3 -m pip install -q --disable-pip-version-check 'moto[server]==5.2.1'
# The Kubernetes manifests are checked against Kubernetes' OpenAPI schema.
python3 -m kubernetes_validate --version >/dev/null 2>&1 \
    || python3 -m pip install -q --disable-pip-version-check kubernetes-validate==1.37.0

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# The shape of the house: no module cycles in the library, neither stage
# importing the other, and no terminal in the library: it builds without
# the binary's crates (clap, indicatif: the `cli` feature), and depends on
# none of them then.
scripts/module-graph.sh
cargo check --locked --lib --no-default-features
if cargo tree --locked -e normal --no-default-features --prefix none | grep -E '^(clap|indicatif) '; then
    echo "the mailferry library depends on the crates above; they belong to the binary" >&2
    exit 1
fi
cargo test --locked --all-targets
