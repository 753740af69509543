#!/usr/bin/env bash
# Latency from produce to announced shard with age-based sealing: a quiet topic gets one record at a time (kcat
# produces it); the time until its shard's event appears on sluice.shards is measured with kcat, for each
# --seal-after given. FETCH_WAIT_MS sets fetch.wait.max.ms of the pipeline and the watcher (the embedded broker
# holds empty fetches that long; a real cluster answers a long poll as soon as data arrives).
#
# Usage: Benchmarks/pipeline-latency.sh [samples] [seal-after…]     e.g. Benchmarks/pipeline-latency.sh 3 5 60
set -euo pipefail
cd "$(dirname "$0")/.."
SAMPLES=${1:-3}
shift || true
SEALS=${*:-5 60}
SLUICE=${SLUICE:-.build/release/sluice}
WORK=$(mktemp -d)
trap 'kill $BROKER $PIPELINE 2>/dev/null || true; rm -rf "$WORK"' EXIT
PIPELINE=

TOPICS=$(for seal in $SEALS; do printf -- '--topic lat%s.in:6 ' "$seal"; done)
# shellcheck disable=SC2086
"$SLUICE" broker $TOPICS --topic sluice.shards:1 --topic sluice.rejected:3 --topic sluice.dlq:3 \
    --bootstrap-file "$WORK/bootstrap" < /dev/null > /dev/null 2> "$WORK/broker.err" &
BROKER=$!
for _ in $(seq 50); do [ -s "$WORK/bootstrap" ] && break; sleep 0.1; done
BOOTSTRAP=$(cat "$WORK/bootstrap")
# A different English text per sample (the same one twice would be dropped as a duplicate and never sealed).
text() {
    python3 -c "
import random
random.seed($1)
words = 'the of and to that with have be river stone garden morning window letter market village teacher winter harbor engine careful quiet bright travel history kitchen season mountain forest signal station bridge library student question answer paper record music evening summer people family friend doctor farmer painter writer reader'.split()
print(' '.join((' '.join(random.choice(words) for _ in range(12)) + '.').capitalize() for _ in range(8)))"
}

for seal in $SEALS; do
    "$SLUICE" pipeline --bootstrap "$BOOTSTRAP" --topic "lat$seal.in" --group "lat$seal" --output "$WORK/out$seal" \
        --seal-after "$seal" -X fetch.wait.max.ms="${FETCH_WAIT_MS:-500}" --log-level info > /dev/null 2> "$WORK/pipeline.err" &
    PIPELINE=$!
    until grep -q "partition assigned" "$WORK/pipeline.err"; do sleep 0.2; done
    for sample in $(seq "$SAMPLES"); do
        kcat -b "$BOOTSTRAP" -X fetch.wait.max.ms="${FETCH_WAIT_MS:-500}" -C -t sluice.shards -o end -c 1 -q -f '%k\n' > "$WORK/announced" 2>/dev/null &
        WATCH=$!
        sleep 1  # the watcher is at the end before the record goes in
        printf '{"id":"lat-%s-%s","text":"%s"}' "$seal" "$sample" "$(text "$seal$sample")" > "$WORK/record"
        start=$(date +%s.%N)
        kcat -b "$BOOTSTRAP" -X linger.ms=0 -P -t "lat$seal.in" "$WORK/record"
        wait $WATCH
        end=$(date +%s.%N)
        echo "seal-after $seal s: produce → announced $(python3 -c "print(round($end - $start, 3))") s ($(cat "$WORK/announced"))"
    done
    kill -TERM $PIPELINE
    wait $PIPELINE || true
    [ -n "${VERBOSE:-}" ] && grep -E "sealed|assigned" "$WORK/pipeline.err" | tail -5
done
