#!/usr/bin/env bash
# Runs every flowwarden test. Installs what the tests need first, only when missing:
# - tansu, the Kafka-protocol broker the Kafka tests start on loopback (cargo install, ~15 min once);
# - Debian's chromium, for the report screenshot test (skipped with a message when absent).
# Tests that read ../shared/data skip with a message when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-tansu.sh
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
            || echo "chromium could not be installed: the report screenshot test will skip"
    else
        echo "chromium not installed: the report screenshot test will skip"
    fi
fi
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
cargo test --locked --no-fail-fast
