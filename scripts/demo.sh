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

step "1/6 ingest the shipped sample dump (data/sample_rollouts.jsonl: airline-mini, noisy oracle)"
"$CALIB" ingest data/sample_rollouts.jsonl --store "$STORE"

step "2/6 fresh rollouts: airline-mini, oracle with 30% of each mistake kind, scripted customer, 4 per task"
"$CALIB" rollout --domain airline-mini --policy oracle --user scripted --samples 4 --mistake-rate 0.3 \
  --seed 1 --run-id demo-oracle --store "$STORE"
"$CALIB" eval --store "$STORE" --run demo-oracle

step "3/6 analyze: per-turn signals, discriminative metrics, verdicts, calibrated spec + HTML report"
"$CALIB" analyze --store "$STORE" --runs demo-oracle --out "$OUT/analysis" --name airline-mini-demo --html

step "4/6 the store"
"$CALIB" store info --store "$STORE"

step "5/6 train two GRPO steps (LoRA) on the tiny SmolLM2-135M with the calibrated spec"
# CPU budget: 2 tasks x 2 samples, 2 turns of 24 tokens, a one-line system prompt and two tools
# (the full policy and 14 tool schemas are ~3.3k prompt tokens: fine on a GPU, slow on 2 cores).
"$CALIB" train --spec "$OUT/analysis/reward_spec.yaml" --model tiny --domain airline-mini --user scripted \
  --tasks airline-mini/0,airline-mini/1 --samples-per-task 2 --max-turns 2 --max-new-tokens 24 \
  --system-prompt "You are an airline agent. Use the tools." --tool-detail compact \
  --visible-tools get_reservation_details,cancel_reservation --threads 2 --output-dir "$OUT/train" --store "$STORE" --run-id demo-train --max-steps 2 --save-steps 1

echo "(A 135M model rarely calls a tool at this budget, so most of its turn rewards and advantages are 0:"
echo " this step shows the machinery, checkpoints and logs; see docs/results.md for what training measures.)"

step "6/6 where everything is"
echo "store:           $STORE"
echo "analysis:        $OUT/analysis/analysis.json"
echo "calibrated spec: $OUT/analysis/reward_spec.yaml"
echo "HTML report:     $OUT/analysis/report.html"
echo "checkpoints:     $OUT/train"
test -s "$OUT/analysis/report.html"
