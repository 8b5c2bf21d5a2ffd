#!/usr/bin/env bash
# The calib tour on embedded defaults: no network, no ../shared, a few minutes on 2 cores.
# Usage: scripts/demo.sh [OUT_DIR]   (make demo calls it with reports/demo)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-reports/demo}
CALIB=${CALIB:-.venv/bin/calib}
STORE="$OUT/store"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
rm -rf "$OUT"
mkdir -p "$OUT"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1/5 ingest the shipped sample dump (data/sample_rollouts.jsonl: airline-mini, noisy oracle)"
"$CALIB" ingest data/sample_rollouts.jsonl --store "$STORE"

step "2/5 fresh rollouts: airline-mini, oracle with 30% of each mistake kind, scripted customer, 4 per task"
"$CALIB" rollout --domain airline-mini --policy oracle --user scripted --samples 4 --mistake-rate 0.3 \
  --seed 1 --run-id demo-oracle --store "$STORE"
"$CALIB" eval --store "$STORE" --run demo-oracle

step "3/5 analyze: per-turn signals, discriminative metrics, verdicts, calibrated spec + HTML report"
"$CALIB" analyze --store "$STORE" --runs demo-oracle --out "$OUT/analysis" --name airline-mini-demo --html

step "4/5 the store"
"$CALIB" store info --store "$STORE"

step "5/5 where everything is"
echo "store:           $STORE"
echo "analysis:        $OUT/analysis/analysis.json"
echo "calibrated spec: $OUT/analysis/reward_spec.yaml"
echo "HTML report:     $OUT/analysis/report.html"
test -s "$OUT/analysis/report.html"
