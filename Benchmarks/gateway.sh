#!/usr/bin/env bash
# The inference gateway under load, with wrk on 127.0.0.1 (release build: make release; wrk from apt):
#  - GET /healthz on `sluice serve` against a bare Hummingbird route (`sluice eval http-baseline`), alternating;
#  - POST /v1/score at 64 clients with dynamic batching on (--score-batch 64) and off (--score-batch 1), for a
#    4-layer d=128 and an 8-layer d=512 model, with one-word texts (6 bytes) and sentences (about 40 bytes);
#    next to it, what PyTorch's forward pass gains from batch 32/64 over batch 1 with the same shapes and one thread;
#  - POST /v1/completions (greedy, 64 new tokens) at 1, 8 and 32 concurrent clients: tokens/s, p50 and p99.
# Models are untrained (one step): speed does not depend on the weights.
#
# Usage: Benchmarks/gateway.sh [seconds per run]   (PyTorch CPU from $TORCH_PYTHON, or .build/bench-venv as in
#        Benchmarks/train.sh; without it the PyTorch lines are skipped)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-8}
SLUICE=${SLUICE:-.build/release/sluice}
TORCH_PYTHON=${TORCH_PYTHON:-.build/bench-venv/bin/python}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
WORK=$(mktemp -d)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

# A small curated directory and two untrained models.
python3 - "$WORK/in.jsonl" <<'EOF'
import json, sys
words = ["river", "garden", "library", "station", "harbour", "mountain", "village", "market", "bridge", "forest"]
with open(sys.argv[1], "w") as f:
    for i in range(400):
        text = f"The {words[i % 10]} {i} is where the people of the town meet. " + " ".join(
            words[(j * 7 + i) % 10] + str(j * 13 + i) for j in range(60)) + "."
        f.write(json.dumps({"id": f"doc-{i}", "text": text}) + "\n")
EOF
"$SLUICE" curate --input "$WORK/in.jsonl" --output "$WORK/curated" --quiet >/dev/null
model() {  # name layers dim heads
    "$SLUICE" train --shards "$WORK/curated" --output "$WORK/$1" --steps 1 --batch 1 --layers "$2" --dim "$3" --heads "$4" \
        --context 128 --holdout 0 >/dev/null 2>&1
    echo "$WORK/$1/checkpoints/step-00000001"
}
D128=$(model d128 4 128 4)
D512=$(model d512 8 512 8)

start() {  # command…: starts a server, waits for its address, sets PID and PORT
    "$@" > "$WORK/server.out" 2>/dev/null &
    PID=$!
    for _ in $(seq 100); do grep -q '^http' "$WORK/server.out" 2>/dev/null && break; sleep 0.1; done
    PORT=$(grep -m1 '^http' "$WORK/server.out" | sed 's/.*://')
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""; }
measure() {  # label connections [lua]: one wrk run, one line "label req/s p50 p99"
    local label=$1 connections=$2 script=${3:-}
    local out
    out=$(wrk -t"$(( connections < 2 ? 1 : 2 ))" -c"$connections" -d"${SECONDS_PER_RUN}s" --latency ${script:+-s "$script"} "http://127.0.0.1:$PORT/healthz")
    printf '%-44s %10s req/s   p50 %9s   p99 %9s\n' "$label" "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" \
        "$(echo "$out" | awk '$1 == "50%" {print $2}')" "$(echo "$out" | awk '$1 == "99%" {print $2}')"
}

echo "== GET /healthz, 64 connections (alternating)"
for _ in 1 2; do
    start "$SLUICE" eval http-baseline --port 0; measure "bare Hummingbird route" 64; stop
    start "$SLUICE" serve --model "$D128" --port 0; measure "sluice serve /healthz" 64; stop
done

for words in short sentence; do
    if [ "$words" = short ]; then texts='"river", "garden", "market", "bridge", "forest", "harbour", "village", "station"'
    else texts='"The river runs through the old town.", "People meet at the market on Sundays.", "A short note about the weather today.", "The library opens at nine every day."'; fi
    cat > "$WORK/score-$words.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local texts = { $texts }
local i = 0
request = function()
  i = i + 1
  return wrk.format(nil, "/v1/score", nil, '{"input":"' .. texts[(i % #texts) + 1] .. '"}')
end
EOF
done
echo "== POST /v1/score, 64 clients: dynamic batching on (64) and off (1)"
for name in d128 d512; do
    path=$([ $name = d128 ] && echo "$D128" || echo "$D512")
    for words in short sentence; do
        for batch in 64 1; do
            start "$SLUICE" serve --model "$path" --port 0 --score-batch "$batch"
            measure "$name $words texts, --score-batch $batch" 64 "$WORK/score-$words.lua"
            stop
        done
    done
done
if "$TORCH_PYTHON" -c 'import torch' 2>/dev/null; then
    echo "== PyTorch forward (1 thread), tokens/s at batch 1 and 64: its own gain from batching, same shapes"
    for shape in "4 128 4" "8 512 8"; do
        set -- $shape
        for context in 8 40; do
            for batch in 1 64; do
                printf 'layers %s dim %s context %-3s ' "$1" "$2" "$context"
                "$TORCH_PYTHON" Benchmarks/train/gpt_torch.py score --threads 1 --layers "$1" --dim "$2" --heads "$3" \
                    --context "$context" --batch "$batch" --steps $((batch == 1 ? 200 : 10))
            done
        done
    done
fi

echo "== POST /v1/completions, greedy, 64 new tokens (tokens/s = req/s × 64)"
cat > "$WORK/complete.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"prompt":"The river runs","max_tokens":64,"temperature":0}'
wrk.path = "/v1/completions"
request = function() return wrk.format(nil, "/v1/completions") end
EOF
start "$SLUICE" serve --model "$D128" --port 0
for clients in 1 8 32; do measure "d128 completions, $clients clients" "$clients" "$WORK/complete.lua"; done
stop
