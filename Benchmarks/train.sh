#!/usr/bin/env bash
# Training speed of Sluice's reference GPT next to PyTorch on CPU, same model, batch and threads, alternating
# runs in one session (the machine is shared and noisy: compare ratios, not absolute numbers):
#  - 4 layers, d=128, 4 heads, context 128, batch 16 and 6 layers, d=256, 8 heads: 1 and 2 threads;
#  - Sluice also with activation recomputation (memory against time);
#  - Sluice reports the share of time inside cblas_sgemm, the GFLOP/s it reached there, and the sgemm peak of
#    this machine (M=2048, K=N=512) on the same threads.
#
# Usage: Benchmarks/train.sh [runs]   (release build: make release; PyTorch CPU from $TORCH_PYTHON, or a venv in
#        .build/bench-venv with torch==2.13.0+cpu installed on first use)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
SLUICE=${SLUICE:-.build/release/sluice}
if [ -z "${TORCH_PYTHON:-}" ]; then
    TORCH_PYTHON=.build/bench-venv/bin/python
    if ! "$TORCH_PYTHON" -c 'import torch' 2>/dev/null; then
        python3 -m venv .build/bench-venv
        .build/bench-venv/bin/pip install -q 'torch==2.13.0+cpu' numpy --extra-index-url https://download.pytorch.org/whl/cpu
    fi
fi
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT

run() {  # name threads layers dim heads steps [extra]
    local name=$1 threads=$2 layers=$3 dim=$4 heads=$5 steps=$6 extra=${7:-}
    for _ in $(seq "$RUNS"); do
        "$SLUICE" eval train-speed --threads "$threads" --layers "$layers" --dim "$dim" --heads "$heads" --steps "$steps" $extra \
            | sed "s/^{/{\"run\":\"sluice$name\",/" >> "$OUT"
        if [ -z "$extra" ]; then
            "$TORCH_PYTHON" Benchmarks/train/gpt_torch.py bench --threads "$threads" --layers "$layers" --dim "$dim" \
                --heads "$heads" --steps "$steps" | sed "s/^{/{\"run\":\"pytorch\",/" >> "$OUT"
        fi
    done
}
for threads in 1 2; do
    run "" "$threads" 4 128 4 20
    run "" "$threads" 6 256 8 6
done
run " recompute" 2 4 128 4 20 --recompute
run " recompute" 2 6 256 8 6 --recompute

python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
def median(run, threads, layers, key, dim=None):
    values = [r[key] for r in rows if r["run"] == run and r["threads"] == threads and r["layers"] == layers]
    return statistics.median(values) if values else None
print(f"{'model':<16}{'threads':>8}{'sluice tok/s':>14}{'pytorch tok/s':>15}{'ratio':>8}{'sgemm share':>13}{'sgemm GF/s':>12}{'peak GF/s':>11}{'act MiB':>9}")
for layers, dim in ((4, 128), (6, 256)):
    for threads in (1, 2):
        s = median("sluice", threads, layers, "tokens_per_second"); p = median("pytorch", threads, layers, "tokens_per_second")
        print(f"{f'{layers}L d={dim}':<16}{threads:>8}{s:>14.0f}{p:>15.0f}{s / p:>8.2f}{median('sluice', threads, layers, 'sgemm_share'):>13.2f}"
              f"{median('sluice', threads, layers, 'sgemm_gflops'):>12.0f}{median('sluice', threads, layers, 'sgemm_peak_gflops'):>11.0f}"
              f"{median('sluice', threads, layers, 'activation_mib'):>9.0f}")
    r = median("sluice recompute", 2, layers, "tokens_per_second")
    if r:
        print(f"{f'{layers}L d={dim}':<16}{'2 (rec)':>8}{r:>14.0f}{'':>15}{r / median('sluice', 2, layers, 'tokens_per_second'):>8.2f}"
              f"{'':>13}{'':>12}{'':>11}{median('sluice recompute', 2, layers, 'activation_mib'):>9.0f}")
PY
