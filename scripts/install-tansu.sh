#!/usr/bin/env bash
# Installs tansu (a Kafka-compatible broker in Rust, Apache-2.0) for the Kafka tests, unless present.
# The dynostore feature gives the in-memory storage engine the tests use (memory://tansu/).
set -euo pipefail
if command -v tansu >/dev/null 2>&1 || [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]; then
    echo "tansu already installed"
    exit 0
fi
cargo install tansu --features dynostore --locked
