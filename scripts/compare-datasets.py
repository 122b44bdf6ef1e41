#!/usr/bin/env python3
"""Compares two datasets written by `spatialsynth generate` from the same frames on two backends (the CPU reference
and a GPU, say): the same frames, questions and answers word for word, and every number of the QA records and the
scene graphs within a relative tolerance (GPU arithmetic may differ from the CPU's in the last bits of a float; the
parity tests hold the geometry to the same kind of tolerance). Prints what differs and the largest relative difference;
exits 1 if the texts or the structure differ or a number is outside the tolerance.

usage: scripts/compare-datasets.py A B [--rel 1e-4] [--abs 1e-6]
"""
import argparse
import json
import math
import sys


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class Diff:
    def __init__(self, rel, abs_):
        self.rel, self.abs = rel, abs_
        self.numbers = 0
        self.unequal = 0
        self.worst = 0.0
        self.problems = []

    def compare(self, a, b, where):
        if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None or isinstance(a, str):
            if a != b:
                self.problems.append(f"{where}: {a!r} != {b!r}")
            return
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            self.numbers += 1
            if a == b:
                return
            self.unequal += 1
            d = abs(a - b)
            rel = d / max(abs(a), abs(b))
            if not math.isfinite(rel):
                rel = math.inf
            self.worst = max(self.worst, rel)
            if d > self.abs and rel > self.rel:
                self.problems.append(f"{where}: {a!r} vs {b!r} (relative {rel:.2e})")
            return
        if isinstance(a, dict) and isinstance(b, dict):
            if a.keys() != b.keys():
                self.problems.append(f"{where}: keys {sorted(a)} != {sorted(b)}")
                return
            for k in a:
                self.compare(a[k], b[k], f"{where}.{k}")
            return
        if isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                self.problems.append(f"{where}: {len(a)} items != {len(b)}")
                return
            for i, (x, y) in enumerate(zip(a, b)):
                self.compare(x, y, f"{where}[{i}]")
            return
        self.problems.append(f"{where}: {type(a).__name__} != {type(b).__name__}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rel", type=float, default=1e-4)
    ap.add_argument("--abs", type=float, default=1e-6)
    args = ap.parse_args()
    diff = Diff(args.rel, args.abs)
    for name in ["llava.jsonl", "scene_graphs.jsonl", "failures.jsonl"]:
        a, b = load(f"{args.a}/{name}"), load(f"{args.b}/{name}")
        diff.compare(a, b, name)
    pairs = sum(len(r.get("qa", [])) for r in load(f"{args.a}/llava.jsonl"))
    print(
        f"{pairs} QA pairs; {diff.numbers} numbers compared, {diff.unequal} not bit-equal, largest relative difference "
        f"{diff.worst:.2e} (tolerance {args.rel:g} relative or {args.abs:g} absolute); {len(diff.problems)} problems"
    )
    for p in diff.problems[:20]:
        print("  " + p)
    return 1 if diff.problems else 0


if __name__ == "__main__":
    sys.exit(main())
