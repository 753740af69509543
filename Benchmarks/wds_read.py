#!/usr/bin/env python3
"""Read a Sluice dataset with Python WebDataset and print what it saw.

usage: wds_read.py DIR [--keys]

Iterates every shard listed in DIR/wids.json in order: `.tar` files directly, `.tar.zst` through
`pipe:zstd -dc FILE`. Prints one JSON object: samples, text bytes, seconds, samples/s, MB/s; with --keys also the
sorted list of sample keys (for comparison with the index).
"""
import json
import os
import sys
import time

import webdataset as wds


def main():
    directory = sys.argv[1]
    with open(os.path.join(directory, "wids.json"), encoding="utf-8") as f:
        shards = [s["url"] for s in json.load(f)["shardlist"]]
    urls = [
        f"pipe:zstd -dc {os.path.join(directory, name)}" if name.endswith(".zst") else os.path.join(directory, name)
        for name in shards
    ]
    start = time.perf_counter()
    keys, text_bytes = [], 0
    for sample in wds.WebDataset(urls, shardshuffle=False):
        keys.append(sample["__key__"])
        text_bytes += len(sample["txt"])
        json.loads(sample["json"])
    seconds = time.perf_counter() - start
    out = {"samples": len(keys), "text_bytes": text_bytes, "seconds": round(seconds, 3),
           "samples_per_s": round(len(keys) / seconds), "mb_per_s": round(text_bytes / seconds / 1e6, 2)}
    if "--keys" in sys.argv:
        out["keys"] = sorted(keys)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
