#!/usr/bin/env bash
# Text stages on the shared bench corpus: speed and quality of decode, clean, desensitize, quality and dedup
# (`sluice eval …`), next to datasketch/rensa MinHash, datatrove's filters and PIIFormatter, and Presidio's
# pattern recognizers on the same corpus, in the same run.
#
# Usage: Benchmarks/text-stages.sh      (after `swift build -c release`)
# Environment: BENCH (default ../shared/bench), PEERS_VENV (a venv made by $BENCH/peers/setup.sh; without it only
# Sluice runs), PRESIDIO=1 to run Presidio as well (about 5 minutes: 0.3 MB/s), DATATROVE=1 to run datatrove's
# whole pipeline (about 5 minutes), INDEX_DOCUMENTS (default 1000000), WORK (default: a temp folder).
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
echo "== sluice eval quality (and the whole chain)"
"$SLUICE" eval quality --corpus "$WORK/corpus.jsonl" --truth "$WORK/truth.jsonl"
"$SLUICE" eval quality --corpus "$WORK/corpus.jsonl" --truth "$WORK/truth.jsonl" --preset datatrove | sed -n 1,20p
echo "== sluice eval dedup"
"$SLUICE" eval dedup --corpus "$WORK/corpus.jsonl" --truth "$WORK/truth.jsonl"
"$SLUICE" eval dedup --corpus "$WORK/corpus.jsonl" --truth "$WORK/truth.jsonl" --scheme permutations | sed -n 1,3p
echo "== sluice curate (both cores) and reading the dataset"
/usr/bin/time -v "$SLUICE" curate --input "$WORK/corpus.jsonl" --output "$WORK/dataset" --quiet --overwrite 2> "$WORK/curate.time"
grep -E "Maximum resident|Elapsed" "$WORK/curate.time"
"$SLUICE" eval read "$WORK/dataset"
[ -n "${PEERS_VENV:-}" ] && "$PEERS_VENV/bin/pip" install -q webdataset && "$PEERS_VENV/bin/python" Benchmarks/wds_read.py "$WORK/dataset"
echo "== sluice eval index"
"$SLUICE" eval index --documents "${INDEX_DOCUMENTS:-1000000}"

if [ -n "${PEERS_VENV:-}" ]; then
    export PEERS_DIR="$BENCH/peers"
    for impl in datasketch rensa rensa-cminhash; do
        echo "== MinHash: $impl (112 permutations, 5-grams)"
        "$PEERS_VENV/bin/python" "$BENCH/peers/run_minhash.py" "$WORK/corpus.jsonl" --impl "$impl" --perms 112 --ngram 5 | tail -1
    done
    if [ "${DATATROVE:-0}" = 1 ]; then
        echo "== datatrove: Trafilatura, Gopher, C4, FineWeb, PII, MinHash (one worker; about 5 minutes)"
        "$PEERS_VENV/bin/python" "$BENCH/peers/run_datatrove.py" "$WORK/corpus.jsonl" "$WORK/datatrove" --workers 1 \
            --overwrite | tail -1
        python3 Benchmarks/datatrove_score.py "$WORK/datatrove" "$WORK/truth.jsonl" "$WORK/corpus.jsonl"
    fi
    echo "== datatrove PIIFormatter"
    "$PEERS_VENV/bin/python" Benchmarks/pii_peers.py datatrove "$WORK/corpus.jsonl" "$WORK/truth.jsonl"
    if [ "${PRESIDIO:-0}" = 1 ]; then
        echo "== Presidio (pattern recognizers, one worker)"
        "$PEERS_VENV/bin/python" "$BENCH/peers/run_presidio.py" "$WORK/corpus.jsonl" "$WORK/presidio" --nlp none \
            --workers 1 --overwrite | tail -1
        "$PEERS_VENV/bin/python" Benchmarks/pii_peers.py score-tar "$WORK/presidio" "$WORK/corpus.jsonl" "$WORK/truth.jsonl"
    fi
fi
