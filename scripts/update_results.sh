#!/usr/bin/env bash
# Regenerate the testbed sections of docs/results.md: the misalignment experiment in its three settings
# (10 seeds each; a few minutes per setting on 2 cores), then the online arms again under the auc rule
# next to grpo and gold_only (reports/experiment-auc-*), and the summary section that compares them
# (scripts/online_summary.py). The installed `calib experiment` writes results.md only when given
# --results-md; this script is the one that does.
set -euo pipefail
cd "$(dirname "$0")/.."
CALIB=${CALIB:-.venv/bin/calib}
for setting in default bounded sparse; do
  out=reports/experiment; [ "$setting" != default ] && out=reports/experiment-$setting
  rm -rf "$out"
  "$CALIB" experiment misalignment --seeds 10 --setting "$setting" --out "$out" --results-md docs/results.md
done
for setting in default bounded sparse; do
  rm -rf "reports/experiment-auc-$setting"
  "$CALIB" experiment misalignment --seeds 10 --setting "$setting" --recalibration-rule auc \
    --arms grpo,online_mt_grpo,online_gtpo_hybrid,online_zero_gtpo_hybrid,gold_only_gtpo_hybrid \
    --out "reports/experiment-auc-$setting"
done
"${PYTHON:-.venv/bin/python}" scripts/online_summary.py --results-md docs/results.md --other-rule auc > /dev/null
