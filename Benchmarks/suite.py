#!/usr/bin/env python3
"""Sluice's benchmark suite (`make bench`): every stage and the whole chain on the shared bench corpus, the peers on
the same input in the same run where they are installed, one table with the ratios, and a JSON file for tracking.

Peers come from a venv made by ../shared/bench/peers/setup.sh ($PEERS_VENV, default ../shared/bench/peers/.peers-venv;
without it only Sluice runs and the table says so), PyTorch from $TORCH_PYTHON (training; skipped without it), kcat
from the system. Environment: BENCH (default ../shared/bench), SLUICE (default .build/release/sluice), PEER_LINES
(lines of the corpus for datatrove's whole chain and the curate run compared with it; default 20000, about 40 s of
datatrove), RUNS (repeats of the short Sluice measurements, median taken; default 3), BENCH_OUT (default .build/bench).
Not part of `make test`.
"""
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.chdir(ROOT)
BENCH = os.environ.get("BENCH", "../shared/bench")
SLUICE = os.environ.get("SLUICE", ".build/release/sluice")
PEERS_VENV = os.environ.get("PEERS_VENV", os.path.join(BENCH, "peers/.peers-venv"))
PEER_PYTHON = os.path.join(PEERS_VENV, "bin/python")
TORCH_PYTHON = os.environ.get("TORCH_PYTHON", "")
PEER_LINES = int(os.environ.get("PEER_LINES", "20000"))
RUNS = int(os.environ.get("RUNS", "3"))
OUT = os.environ.get("BENCH_OUT", ".build/bench")

rows = []  # {"name", "unit", "sluice", "peer", "peer_value", "note"}


def log(message):
    print(message, file=sys.stderr, flush=True)


def run(arguments, env=None, timeout=1800):
    started = time.perf_counter()
    result = subprocess.run(arguments, capture_output=True, text=True, env=env, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout, time.perf_counter() - started


def number(pattern, text):
    match = re.search(pattern, text)
    if not match:
        raise RuntimeError(f"no match for {pattern!r} in:\n{text[:2000]}")
    return float(match.group(1).replace(",", ""))


def median_of(measure):
    return statistics.median(measure() for _ in range(RUNS))


def add(name, unit, sluice, peer=None, peer_value=None, note=""):
    rows.append({"name": name, "unit": unit, "sluice": sluice, "peer": peer, "peer_value": peer_value, "note": note})
    ratio = f" ({sluice / peer_value:.2f}x {peer})" if peer_value else ""
    log(f"  {name}: {sluice:,.2f} {unit}{ratio}")


def peer_result(arguments):
    """A peer runner's RESULT line."""
    env = dict(os.environ, PEERS_DIR=os.path.join(BENCH, "peers"))
    stdout, _ = run([PEER_PYTHON] + arguments, env=env)
    for line in stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"no RESULT line from {arguments}")


def head_lines(source_path, target_path, count):
    """Copies the first `count` lines (bytes as they are: the corpus holds invalid UTF-8 on purpose)."""
    with open(source_path, "rb") as source, open(target_path, "wb") as target:
        for index, line in enumerate(source):
            if index >= count:
                break
            target.write(line)
    return target_path


def main():
    if not os.access(SLUICE, os.X_OK):
        sys.exit(f"{SLUICE} is missing: run `make release` (make bench does)")
    have_peers = os.access(PEER_PYTHON, os.X_OK)
    have_torch = bool(TORCH_PYTHON) and subprocess.run([TORCH_PYTHON, "-c", "import torch"], capture_output=True).returncode == 0
    have_kcat = shutil.which("kcat") is not None
    work = tempfile.mkdtemp(prefix="sluice-bench-")
    try:
        corpus = os.path.join(work, "corpus.jsonl")
        truth = os.path.join(work, "truth.jsonl")
        subprocess.run(["zstd", "-dqf", os.path.join(BENCH, "corpus.jsonl.zst"), "-o", corpus], check=True)
        subprocess.run(["zstd", "-dqf", os.path.join(BENCH, "truth.jsonl.zst"), "-o", truth], check=True)
        subset = head_lines(corpus, os.path.join(work, f"corpus-{PEER_LINES}.jsonl"), PEER_LINES)
        lines = sum(1 for _ in open(corpus, "rb"))
        log(f"corpus: {lines} lines, {os.path.getsize(corpus) / 1e6:.1f} MB; peers: {'yes' if have_peers else 'no'} "
            f"({PEERS_VENV}); PyTorch: {'yes' if have_torch else 'no'}; kcat: {'yes' if have_kcat else 'no'}")

        log("stages, one core (sluice eval)")
        add("decode, 1 core", "MB/s input", median_of(lambda: number(r"([\d.]+) MB/s of input", run([SLUICE, "eval", "decode", "--corpus", corpus])[0])))
        add("decode+clean, 1 core", "MB/s text", median_of(lambda: number(r"one core: ([\d.]+) MB/s", run([SLUICE, "eval", "clean", "--corpus", corpus])[0])))

        pii = median_of(lambda: number(r"one core: ([\d.]+) MB/s", run([SLUICE, "eval", "pii", "--corpus", corpus, "--truth", truth])[0]))
        peer = None
        if have_peers:
            stdout, _ = run([PEER_PYTHON, "Benchmarks/pii_peers.py", "datatrove", corpus, truth], env=dict(os.environ, PEERS_DIR=os.path.join(BENCH, "peers")))
            peer = number(r"\): ([\d.]+) MB/s", stdout)
        add("decode+clean+desensitize (PII), 1 core", "MB/s text", pii, "datatrove PIIFormatter", peer, "the peer finds far fewer kinds (docs/benchmarks.md)")

        dedup_out = [run([SLUICE, "eval", "dedup", "--corpus", corpus, "--truth", truth])[0] for _ in range(RUNS)]
        shingling = statistics.median(number(r"\(([\d.]+) MB/s of the [\d.]+ MB of cleaned text", text) for text in dedup_out)
        for impl in (["datasketch", "rensa"] if have_peers else [None]):
            value = None
            if impl:
                result = peer_result([os.path.join(BENCH, "peers/run_minhash.py"), corpus, "--impl", impl, "--perms", "112", "--ngram", "5"])
                value = result["text_mb_per_s"]
            add("MinHash shingling + signatures, 1 core", "MB/s text", shingling, impl, value, "112 hashes, 5-grams")
        add("decode … dedup without quality, 1 core", "MB/s text", statistics.median(number(r"one core: ([\d.]+) MB/s", text) for text in dedup_out))
        add("whole chain (eval quality), 1 core", "MB/s text",
            median_of(lambda: number(r"one core: ([\d.]+) MB/s", run([SLUICE, "eval", "quality", "--corpus", corpus, "--truth", truth])[0])))

        log("sluice curate, both cores")
        def curate(path, name):
            output = os.path.join(work, name)
            stdout, _ = run([SLUICE, "curate", "--input", path, "--output", output, "--quiet", "--overwrite"])
            return json.loads(stdout.strip().splitlines()[-1])
        summaries = [curate(corpus, "curated") for _ in range(RUNS)]
        add("sluice curate, whole corpus, 2 cores", "MB/s text", statistics.median(s["mb_per_s"] for s in summaries), note=f"{summaries[0]['kept']} of {lines} kept")
        subset_mb = statistics.median(curate(subset, "curated-subset")["mb_per_s"] for _ in range(RUNS))
        value = None
        if have_peers:
            log(f"datatrove, whole chain, 2 workers, first {PEER_LINES} lines")
            value = peer_result([os.path.join(BENCH, "peers/run_datatrove.py"), subset, os.path.join(work, "datatrove"), "--workers", "2", "--overwrite"])["text_mb_per_s"]
        add(f"curate, first {PEER_LINES} lines, 2 cores", "MB/s text", subset_mb, "datatrove (2 workers)", value, "Trafilatura, Gopher, C4, FineWeb, PII, MinHash")

        log("reading the curated dataset")
        read = run([SLUICE, "eval", "read", os.path.join(work, "curated")])[0]
        value = None
        if have_peers:
            stdout, _ = run([PEER_PYTHON, "Benchmarks/wds_read.py", os.path.join(work, "curated")])
            value = json.loads(stdout.strip().splitlines()[-1])["samples_per_s"]
        add("sequential read (.tar.zst)", "samples/s", number(r"([\d.]+) samples/s", read), "Python webdataset" if value else None, value)
        add("random access by key, p50", "µs", number(r"p50 ([\d.]+) µs", read), note="lower is better")

        log("streaming pipeline (Benchmarks/pipeline.sh 1)")
        stdout, _ = run(["Benchmarks/pipeline.sh", "1"], timeout=1800)
        ratio = number(r"ratio ([\d.]+)", stdout)
        add("sluice pipeline, 48 partitions, 2 cores", "MB/s text", number(r"median MB/s: pipeline ([\d.]+)", stdout),
            note=f"{ratio:.2f}x curate in the same run")

        if have_kcat:
            log("Kafka layer against kcat (Benchmarks/kafka-throughput.sh, 3 runs)")
            env = dict(os.environ, RUNS="3")
            stdout, _ = run(["Benchmarks/kafka-throughput.sh"], env=env)
            for line in stdout.splitlines():
                parts = line.split()
                if parts and parts[0] in ("produce.100B", "produce.2KB", "consume.100B", "consume.2KB"):
                    add(f"{parts[0]} through the embedded broker", "records/s", float(parts[4].replace(",", "")), "kcat", float(parts[3].replace(",", "")))

        log("training speed")
        train = json.loads(run([SLUICE, "eval", "train-speed", "--threads", "2", "--steps", "10"])[0].strip().splitlines()[-1])
        value = None
        if have_torch:
            stdout, _ = run([TORCH_PYTHON, "Benchmarks/train/gpt_torch.py", "bench", "--threads", "2", "--layers", "4", "--dim", "128", "--heads", "4", "--steps", "10"])
            value = json.loads(stdout.strip().splitlines()[-1])["tokens_per_second"]
        add("training, GPT 4L d=128, 2 threads", "tokens/s", train["tokens_per_second"], "PyTorch" if value else None, value)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    # The table.
    print()
    print(f"{'benchmark':<46} {'sluice':>12} {'unit':<11} {'peer':<24} {'peer value':>11} {'ratio':>7}")
    print("-" * 116)
    for row in rows:
        peer = row["peer"] or "—"
        peer_value = f"{row['peer_value']:,.1f}" if row["peer_value"] else ("not installed" if row["peer"] else "")
        ratio = f"{row['sluice'] / row['peer_value']:.2f}x" if row["peer_value"] else ""
        print(f"{row['name']:<46} {row['sluice']:>12,.1f} {row['unit']:<11} {peer:<24} {peer_value:>11} {ratio:>7}")
    notes = [f"- {row['name']}: {row['note']}" for row in rows if row["note"]]
    if notes:
        print("\n" + "\n".join(notes))

    os.makedirs(OUT, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    record = {
        "time": stamp, "commit": commit, "machine": {"cpus": os.cpu_count(), "uname": " ".join(os.uname())},
        "corpus": os.path.join(BENCH, "corpus.jsonl.zst"), "peer_lines": PEER_LINES, "runs": RUNS,
        "results": [dict(row, ratio=(row["sluice"] / row["peer_value"] if row["peer_value"] else None)) for row in rows],
    }
    path = os.path.join(OUT, f"bench-{stamp}.json")
    with open(path, "w") as handle:
        json.dump(record, handle, indent=2)
    shutil.copyfile(path, os.path.join(OUT, "latest.json"))
    print(f"\nJSON: {path} (and {OUT}/latest.json)")


if __name__ == "__main__":
    main()
