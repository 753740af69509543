#!/usr/bin/env python3
"""Score a run_datatrove.py output (OUTDIR/rejected.jsonl + shards) against the bench truth with the rules of
`sluice eval quality` and `sluice eval dedup`.

usage: datatrove_score.py OUTDIR TRUTH.jsonl[.zst]

Junk recall: junk records rejected by a quality step (extract, gopher_*, c4_quality, fineweb_quality).
Clean rejection: non-junk originals (no dup_of) rejected by those steps, per truth language, all and 200+
characters. Duplicates: near and exact duplicates dropped by the minhash step, out of those that reached it.
"""
import collections
import json
import os
import subprocess
import sys

QUALITY = {"extract", "gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality"}


def lines(path):
    if path.endswith(".zst"):
        return subprocess.run(["zstd", "-dc", path], check=True, capture_output=True).stdout.decode().splitlines()
    return open(path, encoding="utf-8").read().splitlines()


def main(outdir, truth_path, corpus_path=None):
    rejected = {}
    for line in open(os.path.join(outdir, "rejected.jsonl"), encoding="utf-8"):
        r = json.loads(line)
        rejected[r["line"]] = (r["stage"], r["reason"])
    lengths = {}
    if corpus_path:
        for n, raw in enumerate(open(corpus_path, "rb"), 1):
            try:
                lengths[n] = len(json.loads(raw)["text"])
            except Exception:
                pass
    junk = collections.Counter(); junk_total = collections.Counter()
    clean = collections.Counter(); clean_total = collections.Counter()
    long_clean = collections.Counter(); long_total = collections.Counter()
    reasons = collections.Counter()
    dup = collections.Counter(); dup_reached = collections.Counter()
    for raw in lines(truth_path):
        t = json.loads(raw)
        if t.get("bad_input"):
            continue
        stage, reason = rejected.get(t["line"], (None, None))
        quality_drop = stage in QUALITY
        if t.get("junk"):
            junk_total[t["junk_kind"]] += 1
            junk[t["junk_kind"]] += quality_drop
        elif t.get("dup_of") is None:
            lang = t["lang"]
            clean_total[lang] += 1
            clean[lang] += quality_drop
            if lengths.get(t["line"], 0) >= 200:
                long_total[lang] += 1
                long_clean[lang] += quality_drop
                if quality_drop:
                    reasons[(lang, reason)] += 1
        if t.get("dup_kind") and not quality_drop:
            dup_reached[t["dup_kind"]] += 1
            dup[t["dup_kind"]] += stage == "minhash"
    pct = lambda a, b: f"{100 * a / b:.1f}%" if b else "-"
    print(f"junk recall: {sum(junk.values())} of {sum(junk_total.values())} ({pct(sum(junk.values()), sum(junk_total.values()))})")
    for k in sorted(junk_total):
        print(f"  {k:18s} {junk[k]} of {junk_total[k]} ({pct(junk[k], junk_total[k])})")
    print("clean originals rejected by quality steps: all / 200+ characters")
    for k in sorted(clean_total):
        print(f"  {k:6s} {clean[k]} of {clean_total[k]} ({pct(clean[k], clean_total[k])})   {long_clean[k]} of {long_total[k]} ({pct(long_clean[k], long_total[k])})")
    print("top reasons for clean 200+ rejections:", reasons.most_common(8))
    for k in sorted(dup_reached):
        print(f"{k} duplicates dropped by minhash: {dup[k]} of {dup_reached[k]} that reached it ({pct(dup[k], dup_reached[k])})")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(*sys.argv[1:])
