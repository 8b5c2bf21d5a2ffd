#!/usr/bin/env bash
# Regenerate the example report from airline-mini rollouts (the oracle policy with seeded mistakes,
# the scripted user): about a minute on 2 CPU cores, no network.
# Usage: reports/example/make.sh   (from anywhere; writes next to this script)
set -euo pipefail
cd "$(dirname "$0")/../.."
CALIB=${CALIB:-.venv/bin/calib}
PYTHON=${PYTHON:-.venv/bin/python}
OUT=reports/example
STORE=$(mktemp -d)/store
LABEL=example-store  # what the committed files call the temporary store, instead of its /tmp path
trap 'rm -rf "$(dirname "$STORE")"' EXIT
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1767225600}  # pins the "generated" time shown on the page

"$CALIB" rollout --domain airline-mini --policy oracle --user scripted --samples 8 --mistake-rate 0.12 \
  --seed 7 --run-id oracle-mistakes --store "$STORE"
"$CALIB" analyze --store "$STORE" --store-label "$LABEL" --out "$OUT" --name airline-mini-example
"$CALIB" report --store "$STORE" --store-label "$LABEL" --analysis "$OUT/analysis.json" --spec "$OUT/reward_spec.yaml" \
  --out "$OUT/index.html" --max-episodes 60 --title "calib example: airline-mini, oracle with mistakes" \
  --screenshot "$(dirname "$STORE")/full.png"
rm -f "$OUT/analysis.parquet"
# docs/img/report.png: the top of the page (summary, signal table, forest plot)
mkdir -p docs/img
"$PYTHON" -c "import sys; from PIL import Image; im = Image.open(sys.argv[1]); \
im.crop((0, 0, im.width, min(im.height, 1750))).save(sys.argv[2], optimize=True)" \
  "$(dirname "$STORE")/full.png" docs/img/report.png
