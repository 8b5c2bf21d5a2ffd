#!/usr/bin/env bash
# Regenerate the testbed sections of docs/results.md: the misalignment experiment in its three settings
# (10 seeds each; about 1-2 minutes per setting on 2 cores), then the online arms under the joint rule
# (outputs in reports/experiment-joint-*, summarised by hand in results.md). The installed
# `calib experiment` writes results.md only when given --results-md; this script is the one that does.
set -euo pipefail
cd "$(dirname "$0")/.."
CALIB=${CALIB:-.venv/bin/calib}
for setting in default bounded sparse; do
  out=reports/experiment; [ "$setting" != default ] && out=reports/experiment-$setting
  rm -rf "$out"
  "$CALIB" experiment misalignment --seeds 10 --setting "$setting" --out "$out" --results-md docs/results.md
done
for setting in default bounded sparse; do
  rm -rf "reports/experiment-joint-$setting"
  "$CALIB" experiment misalignment --seeds 10 --setting "$setting" --recalibration-rule joint \
    --arms grpo,online_mt_grpo,online_gtpo_hybrid,online_zero_gtpo_hybrid,gold_only_gtpo_hybrid \
    --out "reports/experiment-joint-$setting"
done
