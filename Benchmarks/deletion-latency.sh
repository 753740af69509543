#!/usr/bin/env bash
# How long a deletion request takes from `sluice delete --bootstrap` (the control topic) until the index marks the
# sample deleted, with `sluice control` following the topic on the embedded broker; then until the trainer's
# loader and the Python client would skip it (they re-read deletions at most every 2 s).
#
# Usage: Benchmarks/deletion-latency.sh [requests]   (release build: make release)
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${1:-10}
SLUICE=${SLUICE:-.build/release/sluice}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

python3 - "$WORK/in.jsonl" "$REQUESTS" <<'PY'
import json, sys
words = "the river garden library station harbour mountain village market bridge forest people town meet".split()
with open(sys.argv[1], "w") as f:
    for i in range(max(200, int(sys.argv[2]) * 2)):
        text = f"Record {i}: " + " ".join(words[(i * 7 + j * 3) % len(words)] + str(j * 31 + i) for j in range(120)) + "."
        f.write(json.dumps({"id": f"doc-{i}", "source": "bench", "text": text}) + "\n")
PY
"$SLUICE" curate --input "$WORK/in.jsonl" --output "$WORK/out" --quiet > /dev/null
"$SLUICE" broker --topic sluice.control:1 > "$WORK/broker.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q '127.0.0.1:' "$WORK/broker.out" 2>/dev/null && break; sleep 0.1; done
BOOTSTRAP=$(grep -o '127.0.0.1:[0-9]*' "$WORK/broker.out" | head -1)
"$SLUICE" control --output "$WORK/out" --bootstrap "$BOOTSTRAP" > "$WORK/control.out" 2>&1 &
PIDS+=($!)
sleep 5  # the consumer group's first assignment takes about 3 s on the embedded broker
python3 - "$SLUICE" "$BOOTSTRAP" "$WORK/out/index.sqlite" "$REQUESTS" <<'PY'
import sqlite3, statistics, subprocess, sys, time
sluice, bootstrap, index, requests = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
latencies, sends = [], []
for i in range(requests):
    doc = f"doc-{i * 2 + 1}"
    start = time.monotonic()
    subprocess.run([sluice, "delete", "--bootstrap", bootstrap, "--id", doc, "--request", f"bench-{i}"], check=True, capture_output=True)
    sent = time.monotonic()
    while True:
        connection = sqlite3.connect(f"file:{index}?mode=ro", uri=True)
        row = connection.execute("SELECT deleted_at FROM samples WHERE id = ?", (doc,)).fetchone()
        connection.close()
        if row and row[0]:
            break
        if time.monotonic() - start > 30:
            sys.exit(f"{doc}: not deleted within 30 s")
        time.sleep(0.005)
    latencies.append(time.monotonic() - start)
    sends.append(sent - start)
print(f"requests {requests}: request to index mark: median {statistics.median(latencies) * 1000:.0f} ms, "
      f"max {max(latencies) * 1000:.0f} ms (of which the sluice delete process: median {statistics.median(sends) * 1000:.0f} ms); "
      "readers re-read deletions at most every 2 s")
PY
