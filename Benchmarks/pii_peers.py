#!/usr/bin/env python3
"""Score PII redaction of peer tools on the bench corpus with the same rules as `sluice eval pii`.

usage:
  pii_peers.py datatrove CORPUS TRUTH            run datatrove's PIIFormatter (emails, public IPv4) over every
                                                 valid record on one core, time it, and score it
  pii_peers.py score-tar OUTDIR CORPUS TRUTH     score the WebDataset shards a peer runner wrote (run_presidio.py)

Rules (as in `sluice eval pii`): a labelled value counts as found when it no longer appears in the output text
of its record; a decoy counts as a false positive when the output no longer contains it. CORPUS and TRUTH may be
.jsonl or .jsonl.zst. Needs the peers' venv (../shared/bench/peers/setup.sh) and PEERS_DIR pointing at
../shared/bench/peers when run from elsewhere.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from collections import defaultdict

PEERS_DIR = os.environ.get("PEERS_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "bench", "peers"))
sys.path.insert(0, PEERS_DIR)
import peers_common as pc  # noqa: E402


def read_lines(path: str):
    if path.endswith(".zst"):
        data = subprocess.run(["zstd", "-dc", path], check=True, capture_output=True).stdout
        return data.split(b"\n")
    with open(path, "rb") as f:
        return f.read().split(b"\n")


def load_truth(path: str) -> dict[int, dict]:
    truth = {}
    for raw in read_lines(path):
        if raw.strip():
            t = json.loads(raw)
            truth[t["line"]] = t
    return truth


def score(outputs: dict[int, str], inputs: dict[int, str], truth: dict[int, dict]) -> dict:
    recall = defaultdict(lambda: [0, 0])
    decoys = defaultdict(lambda: [0, 0])
    for line, out in outputs.items():
        t = truth.get(line, {})
        for p in t.get("pii") or []:
            recall[p["type"]][0] += 1
            if p["value"] not in out:
                recall[p["type"]][1] += 1
        for d in t.get("decoys") or []:
            if d["value"] not in inputs[line]:
                continue
            decoys[d["type"]][0] += 1
            if d["value"] not in out:
                decoys[d["type"]][1] += 1
    return {"recall": dict(recall), "decoys": dict(decoys)}


def print_score(name: str, s: dict):
    print(f"\n{name}: recall per labelled type (found = no longer in the output)")
    tot = [0, 0]
    for k, (n, f) in sorted(s["recall"].items()):
        print(f"  {k:16s} {n:6d} {f:6d} {100 * f / n:7.2f}%")
        tot[0] += n
        tot[1] += f
    if tot[0]:
        print(f"  {'all':16s} {tot[0]:6d} {tot[1]:6d} {100 * tot[1] / tot[0]:7.2f}%")
    print(f"{name}: decoys preserved")
    for k, (n, a) in sorted(s["decoys"].items()):
        print(f"  {k:20s} {n:6d} altered {a:6d} preserved {100 * (n - a) / n:7.2f}%")


def run_datatrove(corpus: str, truth_path: str):
    from datatrove.pipeline.formatters import PIIFormatter

    formatter = PIIFormatter()
    path, cleanup = pc.materialize_corpus(corpus)
    records = [(rec["_line"], rec["text"]) for rec, rej in pc.read_corpus(path) if not rej]
    cleanup()
    text_bytes = sum(len(t.encode("utf-8")) for _, t in records)
    start = time.perf_counter()
    cpu = time.process_time()
    outputs = {line: formatter.format(text) for line, text in records}
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu
    print(f"datatrove PIIFormatter, one core: {len(records)} docs, {text_bytes / 1e6:.1f} MB of text, "
          f"{wall:.2f} s wall ({cpu:.2f} s CPU): {text_bytes / wall / 1e6:.2f} MB/s, {len(records) / wall:.0f} docs/s")
    print_score("datatrove PIIFormatter", score(outputs, dict(records), load_truth(truth_path)))


def score_tar(outdir: str, corpus: str, truth_path: str):
    outputs = {}
    for name in sorted(os.listdir(outdir)):
        if not name.endswith(".tar"):
            continue
        with tarfile.open(os.path.join(outdir, name)) as tar:
            for member in tar:
                if member.name.endswith(".txt"):
                    outputs[int(member.name.split(".")[0])] = tar.extractfile(member).read().decode("utf-8")
    path, cleanup = pc.materialize_corpus(corpus)
    inputs = {rec["_line"]: rec["text"] for rec, rej in pc.read_corpus(path) if not rej}
    cleanup()
    print_score(os.path.basename(outdir.rstrip("/")), score(outputs, inputs, load_truth(truth_path)))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "datatrove":
        run_datatrove(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 5 and sys.argv[1] == "score-tar":
        score_tar(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
