#!/usr/bin/env bash
# Produce and consume throughput through the embedded broker: `sluice produce` / `sluice consume` next to kcat,
# on the same broker, in the same run, alternating runs. Reports median whole-process wall time, records/s and
# the ratio sluice/kcat (records/s; above 1.0 means sluice is faster).
#
# Usage: Benchmarks/kafka-throughput.sh      (after `swift build -c release`; `make bench` does both)
# Environment: RUNS (default 5), N_SMALL (records of 100 B, default 1000000), N_LARGE (records of 2 KB, default 150000)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
N_SMALL=${N_SMALL:-1000000}
N_LARGE=${N_LARGE:-150000}
SLUICE=${SLUICE:-.build/release/sluice}
command -v kcat >/dev/null || { echo "kcat is missing: run make deps" >&2; exit 1; }
[ -x "$SLUICE" ] || { echo "$SLUICE is missing: run swift build -c release" >&2; exit 1; }

work=$(mktemp -d)
broker_pid=""
cleanup() { [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# Keys spread records over partitions: the embedded broker keeps at most 5 MiB per partition.
python3 - "$work" "$N_SMALL" "$N_LARGE" <<'PY'
import sys, random
work, n_small, n_large = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(7)
alphabet = "abcdefghijklmnopqrstuvwxyz      "
for name, n, size in (("p100", n_small, 100), ("p2k", n_large, 2048)):
    with open(f"{work}/{name}.txt", "w") as out:
        for i in range(n):
            value = "".join(rnd.choice(alphabet) for _ in range(size))
            out.write(f"k{i}\t{value}\n")
PY

mkfifo "$work/broker.in"
"$SLUICE" broker --bootstrap-file "$work/bootstrap" \
    --topic p100.produce:64 --topic p2k.produce:96 --topic p100.consume:64 --topic p2k.consume:96 \
    < "$work/broker.in" > "$work/broker.out" 2> "$work/broker.err" &
broker_pid=$!
exec 3> "$work/broker.in"   # keeps the broker's standard input open
for _ in $(seq 100); do [ -s "$work/bootstrap" ] && break; sleep 0.05; done
B=$(cat "$work/bootstrap")
echo "embedded broker at $B; $RUNS runs each; $N_SMALL x 100 B and $N_LARGE x 2 KB records"

now() { date +%s.%N; }
timeit() { local t0 t1; t0=$(now); "$@" >/dev/null 2>>"$work/errors"; t1=$(now); echo "$t0 $t1" | awk '{printf "%.4f\n", $2-$1}'; }

declare -A times
run_pair() {  # label kcat-command -- sluice-command
    local label=$1; shift
    local kcat_cmd=$1 sluice_cmd=$2
    for r in $(seq "$RUNS"); do
        times[$label.kcat]+="$(timeit bash -c "$kcat_cmd") "
        times[$label.sluice]+="$(timeit bash -c "$sluice_cmd") "
    done
}

# Warm-up: the first produce to a topic can wait for a metadata refresh.
echo "warm" | kcat -P -b "$B" -t p100.produce -K '\t' 2>/dev/null || true
head -n 10 "$work/p100.txt" | "$SLUICE" produce --bootstrap "$B" --topic p100.produce --key-delimiter $'\t' 2>/dev/null

run_pair produce.100B \
    "kcat -P -b $B -t p100.produce -K '\t' < $work/p100.txt" \
    "$SLUICE produce --bootstrap $B --topic p100.produce --key-delimiter \$'\t' < $work/p100.txt"
run_pair produce.2KB \
    "kcat -P -b $B -t p2k.produce -K '\t' < $work/p2k.txt" \
    "$SLUICE produce --bootstrap $B --topic p2k.produce --key-delimiter \$'\t' < $work/p2k.txt"

kcat -P -b "$B" -t p100.consume -K $'\t' < "$work/p100.txt"
kcat -P -b "$B" -t p2k.consume -K $'\t' < "$work/p2k.txt"
run_pair consume.100B \
    "kcat -C -b $B -t p100.consume -o beginning -c $N_SMALL -q" \
    "$SLUICE consume --bootstrap $B --topic p100.consume --from beginning --count $N_SMALL --format value"
run_pair consume.2KB \
    "kcat -C -b $B -t p2k.consume -o beginning -c $N_LARGE -q" \
    "$SLUICE consume --bootstrap $B --topic p2k.consume --from beginning --count $N_LARGE --format value"

[ -n "${VERBOSE:-}" ] && for k in "${!times[@]}"; do echo "$k: ${times[$k]}"; done
python3 - "$N_SMALL" "$N_LARGE" <<PY
import statistics, sys
n_small, n_large = int(sys.argv[1]), int(sys.argv[2])
times = {
$(for k in "${!times[@]}"; do echo "    '$k': [${times[$k]// /, }],"; done)
}
print(f"{'benchmark':<14} {'kcat s':>8} {'sluice s':>9} {'kcat rec/s':>12} {'sluice rec/s':>13} {'ratio':>6}")
for label in ("produce.100B", "produce.2KB", "consume.100B", "consume.2KB"):
    n = n_small if label.endswith("100B") else n_large
    k = statistics.median(times[label + ".kcat"])
    s = statistics.median(times[label + ".sluice"])
    print(f"{label:<14} {k:>8.3f} {s:>9.3f} {n / k:>12,.0f} {n / s:>13,.0f} {k / s:>6.2f}")
PY
if [ -s "$work/errors" ]; then echo "stderr of the measured commands:"; sort "$work/errors" | uniq -c | head; fi
