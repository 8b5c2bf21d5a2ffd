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
# the real-lm experiment's tools (experiments.real_lm.TOOLS) and a train task of airline-mini
TOOLS=get_user_details,get_reservation_details,list_all_airports,cancel_reservation,update_reservation_baggages,send_certificate,transfer_to_human_agents
DEMO_TASK=${DEMO_TASK:-airline-mini/2}
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

step "5/6 train two GRPO steps (LoRA) from the shipped warm start with the calibrated spec"
# data/warmstart: SmolLM2-135M after `calib sft` on oracle demonstrations (the SFT stage of
# `calib experiment real-lm`; scripts/make_warmstart.py rebuilds it). On the task below it sometimes
# succeeds and sometimes fails, so its GRPO groups are informative and the advantages are not 0.
# The warm start's view of the conversation: a one-line system prompt and minimal schemas of the
# experiment's seven tools (the full policy and 14 schemas are ~3.3k prompt tokens: slow on 2 cores).
"$CALIB" train --spec "$OUT/analysis/reward_spec.yaml" --model data/warmstart --domain airline-mini --user scripted \
  --tasks "$DEMO_TASK" --samples-per-task 4 --batch-size 4 --max-turns 6 --max-new-tokens 48 \
  --system-prompt "You are an airline agent. Use the tools." --tool-detail minimal --visible-tools "$TOOLS" \
  --threads 2 --output-dir "$OUT/train" --store "$STORE" --run-id demo-train --max-steps 2 --save-steps 1

step "6/6 where everything is"
echo "store:           $STORE"
echo "analysis:        $OUT/analysis/analysis.json"
echo "calibrated spec: $OUT/analysis/reward_spec.yaml"
echo "HTML report:     $OUT/analysis/report.html"
echo "checkpoints:     $OUT/train"
test -s "$OUT/analysis/report.html"
