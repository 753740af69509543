#!/usr/bin/env bash
# Connector throughput on the embedded broker (a `sluice broker` process over TCP):
#  1. the file source on the bench corpus (.jsonl.zst, decompressed and every line checked by the connector) next
#     to `kcat -P` fed the same lines (zstd -dc | kcat), alternating, into 32-partition topics (the mock keeps
#     5 MiB per partition and drops the oldest: both only write); records/s and MB/s of uncompressed input from
#     wall time, peak RSS, and the median of the pairwise ratios; unkeyed and keyed by id.
#  2. the HTTP source under `wrk` with 64 connections: requests/s and latency percentiles, with one record per
#     request and with batches of 10.
#
# Usage: Benchmarks/connect.sh [runs]     (release build: make release; needs kcat, zstd, wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
SLUICE=${SLUICE:-.build/release/sluice}
CORPUS=${CORPUS:-../shared/bench/corpus.jsonl.zst}
WORK=$(mktemp -d)
trap 'kill $BROKER ${HTTP:-} 2>/dev/null || true; rm -rf "$WORK"' EXIT

LINES=$(zstd -dcq "$CORPUS" | wc -l)
BYTES=$(zstd -dcq "$CORPUS" | wc -c)
"$SLUICE" broker --topic bench.file:32 --topic bench.kcat:32 --topic bench.http:32 --topic sluice.dlq:3 \
    --bootstrap-file "$WORK/bootstrap" < /dev/null > /dev/null 2> "$WORK/broker.err" &
BROKER=$!
for _ in $(seq 50); do [ -s "$WORK/bootstrap" ] && break; sleep 0.1; done
BOOTSTRAP=$(cat "$WORK/bootstrap")

# Unkeyed: the connector and kcat both let the partitioner spread the lines. Keyed: the connector keys by the
# envelope's id (its default), kcat gets the same keys precomputed (id<TAB>line), so it extracts nothing.
for mode in unkeyed keyed; do
    cat > "$WORK/file-$mode.yaml" <<YAML
name: bench-file
type: file
topic: bench.file
path: $(realpath "$CORPUS")
format: jsonl
state_dir: $WORK/state
key_field: $([ "$mode" = keyed ] && echo id || echo null)
kafka:
  message.max.bytes: 16000000
YAML
done
zstd -dcq "$CORPUS" | python3 -c '
import sys, json
out = sys.stdout.buffer
for raw in sys.stdin.buffer:
    line = raw.rstrip(b"\n")
    key = b""
    try:
        o = json.loads(line.decode("utf-8"))
        if isinstance(o, dict) and isinstance(o.get("id"), str): key = o["id"].encode()
    except Exception: pass
    out.write(key + b"\t" + line + b"\n")' | zstd -q -f -o "$WORK/keyed.jsonl.zst"

now() { date +%s.%N; }
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
for mode in unkeyed keyed; do
    rm -f "$WORK/kcat" "$WORK/file" "$WORK/ratio" "$WORK/rss"
    for run in $(seq "$RUNS"); do
        start=$(now)
        if [ "$mode" = keyed ]; then
            zstd -dcq "$WORK/keyed.jsonl.zst" | kcat -P -K $'\t' -b "$BOOTSTRAP" -t bench.kcat -X message.max.bytes=16000000
        else
            zstd -dcq "$CORPUS" | kcat -P -b "$BOOTSTRAP" -t bench.kcat -X message.max.bytes=16000000
        fi
        kcat_s=$(echo "$(now) - $start" | bc -l)
        rm -rf "$WORK/state"
        start=$(now)
        /usr/bin/time -f "%M" -o "$WORK/rss1" "$SLUICE" connect --once --bootstrap "$BOOTSTRAP" --log-level error "$WORK/file-$mode.yaml" > "$WORK/summary"
        file_s=$(echo "$(now) - $start" | bc -l)
        echo "$mode run $run: kcat ${kcat_s} s, sluice file source ${file_s} s, peak $(cat "$WORK/rss1") KiB; $(tail -1 "$WORK/summary")"
        echo "$kcat_s" >> "$WORK/kcat"
        echo "$file_s" >> "$WORK/file"
        cat "$WORK/rss1" >> "$WORK/rss"
        echo "$kcat_s / $file_s" | bc -l >> "$WORK/ratio"
    done
    k=$(median < "$WORK/kcat"); f=$(median < "$WORK/file"); r=$(median < "$WORK/ratio")
    printf "%s file source: median %.2f s = %.0f records/s, %.1f MB/s, peak RSS %d MiB; kcat -P: median %.2f s = %.0f records/s, %.1f MB/s; sluice/kcat throughput ratio (median of pairs) %.2f\n" \
        "$mode" "$f" "$(echo "$LINES / $f" | bc -l)" "$(echo "$BYTES / $f / 1000000" | bc -l)" "$(( $(median < "$WORK/rss") / 1024 ))" \
        "$k" "$(echo "$LINES / $k" | bc -l)" "$(echo "$BYTES / $k / 1000000" | bc -l)" "$r"
done

# HTTP ingest under wrk.
PORT=${PORT:-18188}
cat > "$WORK/http.yaml" <<YAML
name: bench-http
type: http
topic: bench.{source}
port: $PORT
tokens: [bench-token]
YAML
"$SLUICE" connect --bootstrap "$BOOTSTRAP" --log-level error "$WORK/http.yaml" > /dev/null 2> "$WORK/http.err" &
HTTP=$!
for _ in $(seq 100); do grep -q "listening" "$WORK/http.err" 2>/dev/null && break; sleep 0.1; done
{ zstd -dcq "$CORPUS" || true; } | head -2000 | python3 -c '
import json, sys
ok = []
for raw in sys.stdin.buffer.read().splitlines():
    try:
        l = raw.decode("utf-8")
        o = json.loads(l)
        if isinstance(o.get("text"), str) and len(l) < 3000: ok.append(l)
    except Exception: pass
json.dump({"one": ok[0], "ten": "\n".join(ok[:10])}, open(sys.argv[1], "w"))' "$WORK/bodies.json"
for size in one ten; do
    python3 -c '
import json, sys
body = json.load(open(sys.argv[1]))[sys.argv[2]]
print("wrk.method = \"POST\"\nwrk.headers[\"Authorization\"] = \"Bearer bench-token\"\nwrk.headers[\"Content-Type\"] = \"application/x-ndjson\"\nwrk.body = [==[" + body + "]==]")' "$WORK/bodies.json" "$size" > "$WORK/$size.lua"
    echo "HTTP, $size record(s) per request, 64 connections, 2 threads, 15 s:"
    wrk -t2 -c64 -d15s --latency -s "$WORK/$size.lua" "http://127.0.0.1:$PORT/ingest/http" | grep -E "Requests/sec|Latency|50%|99%|Non-2xx|requests in"
done
