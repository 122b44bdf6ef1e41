#!/usr/bin/env python3
"""Writes a JSON Lines manifest of N frames: the annotated sample frames (data/sample/frames.json) repeated with
unique ids and absolute paths, for memory and throughput runs of many frames (BENCHMARKS.md).

Usage: scripts/repeat-sample.py N OUT.jsonl
"""
import json
import os
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    n, out = int(sys.argv[1]), sys.argv[2]
    sample = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "sample")
    sample = os.path.normpath(sample)
    with open(os.path.join(sample, "frames.json"), encoding="utf-8") as f:
        frames = json.load(f)["frames"]
    with open(out, "w", encoding="utf-8") as o:
        for i in range(n):
            frame = dict(frames[i % len(frames)])
            for key in ("color", "depth", "instances", "labels"):
                if isinstance(frame.get(key), str):
                    frame[key] = os.path.join(sample, frame[key])
            frame["id"] = f"{frame['id']}_{i:06d}"
            o.write(json.dumps(frame) + "\n")


if __name__ == "__main__":
    main()
