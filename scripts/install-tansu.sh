#!/usr/bin/env bash
# Installs tansu (a Kafka-compatible broker in Rust, Apache-2.0) for the Kafka tests, only when it
# is missing: safe to run before every `cargo test` (CI), a no-op once installed.
# The dynostore feature gives the in-memory storage engine the tests use (memory://tansu/).
# Pinned: the tests were written against 0.6.0 (see tests/kafka_support: one record per batch).
set -euo pipefail
version="0.6.0"
bin="${CARGO_HOME:-$HOME/.cargo}/bin/tansu"
for candidate in "$(command -v tansu 2>/dev/null || true)" "$bin"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" --version >/dev/null 2>&1; then
        echo "tansu already installed: $("$candidate" --version)"
        exit 0
    fi
done
cargo install tansu --version "$version" --features dynostore --locked
