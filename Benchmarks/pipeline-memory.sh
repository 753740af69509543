#!/usr/bin/env bash
# Peak memory of one `sluice pipeline` over 1,000,000 records, fed in chunks: each round produces the bench
# corpus again (100,000 records) once the pipeline has read the previous round, so the embedded broker's 5 MiB
# per partition never overflows. Rounds after the first change the text (letters of words of 5+ characters and
# CJK characters shifted by the round number), so the copies are new documents, not duplicates, and the dedup
# index grows as it would on fresh data. Prints the peak RSS, the summary and the dedup index size.
#
# Usage: Benchmarks/pipeline-memory.sh [rounds]     (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-10}
SLUICE=${SLUICE:-.build/release/sluice}
CORPUS=${CORPUS:-../shared/bench/corpus.jsonl.zst}
PORT=${PORT:-9471}
WORK=$(mktemp -d)
trap 'pkill -P $PIPELINE 2>/dev/null; kill $BROKER 2>/dev/null || true; rm -rf "$WORK"' EXIT
PIPELINE=

zstd -dcq "$CORPUS" > "$WORK/corpus.jsonl"
"$SLUICE" broker --topic raw.mem:48 --topic sluice.shards:1 --topic sluice.rejected:3 --topic sluice.dlq:3 \
    --bootstrap-file "$WORK/bootstrap" < /dev/null > /dev/null 2> "$WORK/broker.err" &
BROKER=$!
for _ in $(seq 50); do [ -s "$WORK/bootstrap" ] && break; sleep 0.1; done
BOOTSTRAP=$(cat "$WORK/bootstrap")

if curl -s "localhost:$PORT/healthz" > /dev/null; then echo "port $PORT is in use (PORT=… to choose another)" >&2; exit 1; fi
/usr/bin/time -f "%M" -o "$WORK/rss" "$SLUICE" pipeline --bootstrap "$BOOTSTRAP" --topic raw.mem --group mem \
    --output "$WORK/out" --seal-after 10 --metrics-port "$PORT" --log-level error > "$WORK/summary" 2> "$WORK/pipeline.err" &
PIPELINE=$!
metric() { curl -s "localhost:$PORT/metrics" | awk -v name="$1" '$1 == name { print int($2) }'; }
until curl -s "localhost:$PORT/healthz" > /dev/null; do sleep 0.2; done

cat > "$WORK/round.py" <<'PY'
import json, sys
r = int(sys.argv[1]) - 1
def shift(text):
    out, word = [], []
    def flush():
        out.extend(chr((ord(c) - 97 + r) % 26 + 97) if len(word) >= 5 and 'a' <= c <= 'z' else c for c in word)
        word.clear()
    for c in text:
        if 'a' <= c <= 'z' or 'A' <= c <= 'Z':
            word.append(c)
            continue
        flush()
        out.append(chr(0x4E00 + (ord(c) - 0x4E00 + 97 * r) % 0x5000) if 0x4E00 <= ord(c) < 0x9E00 else c)
    flush()
    return ''.join(out)
for number, line in enumerate(sys.stdin, 1):
    line = line.rstrip('\n')
    if r:
        try:
            record = json.loads(line)
            record['id'] = f"r{r}-{record.get('id')}"
            record['text'] = shift(record['text'])
            mutated = json.dumps(record, ensure_ascii=False)
            mutated.encode('utf-8')
            line = mutated
        except Exception:
            pass  # the corpus's undecodable lines stay as they are
    sys.stdout.write(f"{r}-{number}|{line}\n")
PY
started=$(date +%s)
for round in $(seq "$ROUNDS"); do
    python3 "$WORK/round.py" "$round" < "$WORK/corpus.jsonl" > "$WORK/round.jsonl"
    "$SLUICE" produce --bootstrap "$BOOTSTRAP" --topic raw.mem --key-delimiter '|' -X message.max.bytes=16000000 \
        < "$WORK/round.jsonl" 2>&1 | tail -1
    target=$((round * 100000))
    until [ "$(metric sluice_records_in_total)" -ge "$target" ] 2>/dev/null; do sleep 0.5; done
    echo "round $round: $(metric sluice_records_in_total) records in, $(metric sluice_records_out_total) kept, dedup index $(metric sluice_dedup_index_documents) documents, pipeline RSS now $(ps -o rss= -p "$(pgrep -f "^$SLUICE pipeline")") KiB"
done
echo "1M records in $(( $(date +%s) - started )) s (feeding included)"
sleep 11  # the last age seal
index_bytes=$(metric sluice_dedup_index_bytes)
pkill -TERM -P $PIPELINE  # the pipeline itself, not /usr/bin/time
wait $PIPELINE || true
echo "summary: $(cat "$WORK/summary")"
echo "peak RSS: $(cat "$WORK/rss") KiB; dedup index: $index_bytes bytes"
