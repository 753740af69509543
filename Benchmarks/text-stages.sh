#!/usr/bin/env bash
# Text stages on the shared bench corpus: decode + clean + desensitize speed and PII quality of `sluice eval`,
# next to datatrove's PIIFormatter and Presidio's pattern recognizers on the same corpus, in the same run.
#
# Usage: Benchmarks/text-stages.sh      (after `swift build -c release`)
# Environment: BENCH (default ../shared/bench), PEERS_VENV (a venv made by $BENCH/peers/setup.sh; without it only
# Sluice runs), PRESIDIO=1 to run Presidio as well (about 5 minutes: 0.3 MB/s), WORK (default: a temp folder).
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${BENCH:-../shared/bench}
SLUICE=${SLUICE:-.build/release/sluice}
[ -x "$SLUICE" ] || { echo "$SLUICE is missing: run swift build -c release" >&2; exit 1; }
[ -f "$BENCH/corpus.jsonl.zst" ] || { echo "no bench corpus at $BENCH" >&2; exit 1; }
WORK=${WORK:-$(mktemp -d)}
zstd -dqf "$BENCH/corpus.jsonl.zst" -o "$WORK/corpus.jsonl"
zstd -dqf "$BENCH/truth.jsonl.zst" -o "$WORK/truth.jsonl"

echo "== sluice eval decode"
"$SLUICE" eval decode --corpus "$WORK/corpus.jsonl" | tail -1
echo "== sluice eval clean"
"$SLUICE" eval clean --corpus "$WORK/corpus.jsonl" --truth "$WORK/truth.jsonl"
echo "== sluice eval pii"
"$SLUICE" eval pii --corpus "$WORK/corpus.jsonl" --truth "$WORK/truth.jsonl"

if [ -n "${PEERS_VENV:-}" ]; then
    export PEERS_DIR="$BENCH/peers"
    echo "== datatrove PIIFormatter"
    "$PEERS_VENV/bin/python" Benchmarks/pii_peers.py datatrove "$WORK/corpus.jsonl" "$WORK/truth.jsonl"
    if [ "${PRESIDIO:-0}" = 1 ]; then
        echo "== Presidio (pattern recognizers, one worker)"
        "$PEERS_VENV/bin/python" "$BENCH/peers/run_presidio.py" "$WORK/corpus.jsonl" "$WORK/presidio" --nlp none \
            --workers 1 --overwrite | tail -1
        "$PEERS_VENV/bin/python" Benchmarks/pii_peers.py score-tar "$WORK/presidio" "$WORK/corpus.jsonl" "$WORK/truth.jsonl"
    fi
fi
