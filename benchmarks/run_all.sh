#!/usr/bin/env bash
# Run every benchmark once, in sequence, so that their figures come from one
# commit and one machine state. Each script waits until the 1-minute load
# average is below $MAX_LOAD (at most $MAX_WAIT seconds) before measuring.
# Results go to results/benchmarks/*.json; the tables go to stdout.
#
# Usage, from the repository root:
#     benchmarks/run_all.sh
#     MAX_LOAD=2.5 PEER_IMAGES=50 benchmarks/run_all.sh
set -euo pipefail

cd "$(dirname "$0")/.."
python=.venv/bin/python
max_load=${MAX_LOAD:-1.5}
max_wait=${MAX_WAIT:-300}
peer_images=${PEER_IMAGES:-50}
common=(--max-load "$max_load" --max-wait "$max_wait")

echo "== commit $(git rev-parse --short HEAD), $(date -u '+%Y-%m-%d %H:%M UTC')"

echo "== latency, default exact search"
"$python" benchmarks/latency.py "${common[@]}"

echo "== latency, ivfflat search"
"$python" benchmarks/latency.py "${common[@]}" --config '{"index_type": "ivfflat"}' \
    --output results/benchmarks/latency_ivfflat.json

echo "== fit cost and scaling"
"$python" benchmarks/fit_scaling.py "${common[@]}"

echo "== service throughput"
"$python" benchmarks/service_throughput.py "${common[@]}"

echo "== anomalib PatchCore side by side ($peer_images training images)"
"$python" benchmarks/peer_anomalib.py "${common[@]}" --train-images "$peer_images"
