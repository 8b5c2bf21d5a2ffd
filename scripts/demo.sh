#!/usr/bin/env bash
# The calib tour on embedded defaults: no network, no ../shared, a few minutes on 2 cores.
# Usage: scripts/demo.sh [OUT_DIR]   (make demo calls it with reports/demo)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-reports/demo}
CALIB=${CALIB:-.venv/bin/calib}
STORE="$OUT/store"
rm -rf "$OUT"
mkdir -p "$OUT"

echo "== 1. ingest the shipped sample dump (data/sample_rollouts.jsonl)"
"$CALIB" ingest data/sample_rollouts.jsonl --store "$STORE"

echo "== 2. what the store holds"
"$CALIB" store info --store "$STORE"

echo
echo "Demo finished. Store: $STORE"
