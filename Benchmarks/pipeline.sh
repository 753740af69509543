#!/usr/bin/env bash
# End-to-end streaming throughput: the bench corpus is produced into a raw topic on the embedded broker (48
# partitions, keyed by line number so each stays well under the mock's 5 MiB per partition), then
# `sluice pipeline --exit-at-end` curates it; `sluice curate` runs on the same corpus in the same run.
# Prints each run's JSON summary and peak RSS, then the medians and the ratio.
#
# Usage: Benchmarks/pipeline.sh [runs]     (release build: make release)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
SLUICE=${SLUICE:-.build/release/sluice}
CORPUS=${CORPUS:-../shared/bench/corpus.jsonl.zst}
WORK=$(mktemp -d)
trap 'kill $BROKER 2>/dev/null || true; rm -rf "$WORK"' EXIT

zstd -dcq "$CORPUS" > "$WORK/corpus.jsonl"
awk '{ printf "%d|%s\n", NR, $0 }' "$WORK/corpus.jsonl" > "$WORK/keyed.jsonl"
LINES=$(wc -l < "$WORK/corpus.jsonl")

"$SLUICE" broker --topic raw.bench:48 --topic sluice.shards:1 --topic sluice.rejected:3 --topic sluice.dlq:3 \
    --bootstrap-file "$WORK/bootstrap" < /dev/null > /dev/null 2> "$WORK/broker.err" &
BROKER=$!
for _ in $(seq 50); do [ -s "$WORK/bootstrap" ] && break; sleep 0.1; done
BOOTSTRAP=$(cat "$WORK/bootstrap")
"$SLUICE" produce --bootstrap "$BOOTSTRAP" --topic raw.bench --key-delimiter '|' -X message.max.bytes=16000000 < "$WORK/keyed.jsonl" 2>&1 | tail -1

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }

for run in $(seq "$RUNS"); do
    out="$WORK/stream$run"
    /usr/bin/time -f "%M" -o "$WORK/rss" "$SLUICE" pipeline --bootstrap "$BOOTSTRAP" --topic raw.bench --group "bench$run" \
        --output "$out" --exit-at-end --log-level error ${PIPELINE_CONFIG:+--config "$PIPELINE_CONFIG"} > "$WORK/summary"
    records=$(field records < "$WORK/summary")
    if [ "$records" != "$LINES" ]; then echo "pipeline run $run saw $records of $LINES records" >&2; exit 1; fi
    echo "pipeline $run: $(tail -1 "$WORK/summary") peak_rss_kib=$(cat "$WORK/rss")"
    field mb_per_s < "$WORK/summary" >> "$WORK/stream.mbs"
    cat "$WORK/rss" >> "$WORK/stream.rss"
    rm -rf "$out"

    /usr/bin/time -f "%M" -o "$WORK/rss" "$SLUICE" curate --input "$CORPUS" --output "$WORK/curate$run" --quiet > "$WORK/summary"
    echo "curate $run: $(tail -1 "$WORK/summary") peak_rss_kib=$(cat "$WORK/rss")"
    field mb_per_s < "$WORK/summary" >> "$WORK/curate.mbs"
    cat "$WORK/rss" >> "$WORK/curate.rss"
    rm -rf "$WORK/curate$run"
done

stream=$(median < "$WORK/stream.mbs")
curate=$(median < "$WORK/curate.mbs")
echo "median MB/s: pipeline $stream, curate $curate, ratio $(python3 -c "print(round($stream / $curate, 3))")"
echo "median peak RSS KiB: pipeline $(median < "$WORK/stream.rss"), curate $(median < "$WORK/curate.rss")"
