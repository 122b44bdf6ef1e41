#!/usr/bin/env python3
"""Transfers by kernel from the CUDA emulator's trace (SPATIALSYNTH_CUDA_EMU_TRACE, kernels/emu/driver.cpp).

Each host-to-device copy is charged to the next kernel launched by the same host thread (what it was uploaded for),
each device-to-host copy to the last kernel that thread launched (what it reads back).
usage: scripts/emulator-transfers.py TRACE FRAMES
"""
import sys
from collections import defaultdict


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    frames = int(sys.argv[2])
    pending = defaultdict(list)
    last = {}
    up = defaultdict(lambda: [0, 0])
    down = defaultdict(lambda: [0, 0])
    with open(sys.argv[1]) as f:
        for line in f:
            parts = line.split()
            thread, kind, size = parts[0], parts[1], int(parts[2])
            if kind == "htod":
                pending[thread].append(size)
            elif kind == "launch":
                for n in pending.pop(thread, []):
                    up[parts[3]][0] += n
                    up[parts[3]][1] += 1
                last[thread] = parts[3]
            elif kind == "dtoh":
                down[last.get(thread, "(before any launch)")][0] += size
                down[last.get(thread, "(before any launch)")][1] += 1
    for sizes in pending.values():
        for n in sizes:
            up["(no launch after)"][0] += n
            up["(no launch after)"][1] += 1
    for title, table in (("host to device, by the next launch", up), ("device to host, by the last launch", down)):
        total = sum(v[0] for v in table.values())
        print(f"{title}: {total / frames / 1e6:.3f} MB a frame ({frames} frames)")
        for name, (size, copies) in sorted(table.items(), key=lambda kv: -kv[1][0]):
            print(f"  {name:24s} {size / frames / 1e6:8.3f} MB a frame  {copies:5d} copies")


if __name__ == "__main__":
    main()
