#!/usr/bin/env python3
"""Compares two datasets written by `spatialsynth generate` from the same frames on two backends (the CPU reference
and a GPU, say): the same frames, questions and answers word for word, integers equal, and every other number of the
QA records and the scene graphs within the tolerance of tests/parity.rs's scene-graph test: angles in degrees within
1e-3 (bearings come from atan2, approximate on GPUs; a clock margin or a direction question's value and margin is a
difference of bearings), anything else within 1e-5 x max(|x|, 1). GPU arithmetic may differ from the CPU's in the last
bits of a float. Prints what differs and the largest relative difference; exits 1 if the texts or the structure differ
or a number is outside its tolerance.

usage: scripts/compare-datasets.py A B
"""
import argparse
import json
import math
import sys


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class Diff:
    def __init__(self):
        self.numbers = 0
        self.unequal = 0
        self.worst = 0.0
        self.problems = []

    def compare(self, a, b, where, angle=False):
        if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None or isinstance(a, str):
            if a != b:
                self.problems.append(f"{where}: {a!r} != {b!r}")
            return
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            self.numbers += 1
            if a == b:
                return
            self.unequal += 1
            if isinstance(a, int) or isinstance(b, int):
                self.problems.append(f"{where}: {a!r} != {b!r} (integers)")
                return
            d = abs(a - b)
            rel = d / max(abs(a), abs(b))
            if not math.isfinite(rel):
                rel = math.inf
            self.worst = max(self.worst, rel)
            tolerance = 1e-3 if angle else 1e-5 * max(abs(a), 1.0)
            if not d <= tolerance:
                self.problems.append(f"{where}: {a!r} vs {b!r} (difference {d:.2e}, tolerance {tolerance:.1e})")
            return
        if isinstance(a, dict) and isinstance(b, dict):
            if a.keys() != b.keys():
                self.problems.append(f"{where}: keys {sorted(a)} != {sorted(b)}")
                return
            clock = a.get("unit") == "clock_hour"
            # A bearing within the bearings' tolerance of the boundary between two clock hours (a margin below 1e-3
            # degrees on both sides) may fall on either side of it on a GPU: the neighbouring hour is the same fact.
            ha, hb = a.get("clock_hour"), b.get("clock_hour")
            ma, mb = a.get("clock_margin_deg"), b.get("clock_margin_deg")
            flipped = (
                isinstance(ha, int) and isinstance(hb, int) and ha != hb
                and isinstance(ma, (int, float)) and isinstance(mb, (int, float))
                and abs(ma) < 1e-3 and abs(mb) < 1e-3
                and ((ha + 1) % 12 == hb % 12 or (hb + 1) % 12 == ha % 12)
            )
            for k in a:
                if flipped and k == "clock_hour":
                    self.numbers += 1
                    self.unequal += 1
                    continue
                angle = k.endswith("_deg") or (clock and k in ("value", "margin", "threshold"))
                self.compare(a[k], b[k], f"{where}.{k}", angle)
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
    args = ap.parse_args()
    diff = Diff()
    for name in ["llava.jsonl", "scene_graphs.jsonl", "failures.jsonl"]:
        a, b = load(f"{args.a}/{name}"), load(f"{args.b}/{name}")
        diff.compare(a, b, name)
    pairs = sum(len(r.get("qa", [])) for r in load(f"{args.a}/llava.jsonl"))
    print(
        f"{pairs} QA pairs; {diff.numbers} numbers compared, {diff.unequal} not bit-equal, largest relative difference "
        f"{diff.worst:.2e}; {len(diff.problems)} outside the tolerance or different"
    )
    for p in diff.problems[:20]:
        print("  " + p)
    return 1 if diff.problems else 0


if __name__ == "__main__":
    sys.exit(main())
