#!/usr/bin/env bash
# Evaluates detection on the IoT-23 conversion (real traffic): builds the release binary and runs
# `flowwarden eval` on ../shared/data/iot23.jsonl with its labels (episodes derived from the labels).
# Writes target/eval-iot23.json (the full report) and target/eval-iot23.alerts.jsonl.
# Usage: scripts/eval-iot23.sh [extra eval args, e.g. --config F --threads N]
# FLOWWARDEN_DATA_DIR overrides the data directory (default: ../shared/data next to the crate).
set -euo pipefail
crate="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="${FLOWWARDEN_DATA_DIR:-$crate/../shared/data}"
input="$data/iot23.jsonl"
labels="$data/iot23.labels.csv"
if [[ ! -f "$input" || ! -f "$labels" ]]; then
    echo "eval-iot23: $input or $labels not present; skipping" >&2
    exit 0
fi
cd "$crate"
cargo build --release --quiet
target="${CARGO_TARGET_DIR:-$crate/target}"
"$target/release/flowwarden" eval \
    --input "$input" \
    --labels "$labels" \
    --json "$target/eval-iot23.json" \
    --alerts "$target/eval-iot23.alerts.jsonl" \
    "$@"
echo "eval-iot23: report in $target/eval-iot23.json" >&2
