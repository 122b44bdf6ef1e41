#!/usr/bin/env python3
"""Writes a manifest of the sample frames topped up with grid boxes, the workload of `bench --kernels`' end-to-end
figure as a file (for runs that cannot use that benchmark, such as the CUDA emulator's counts in BENCHMARKS.md).

usage: grid-box-manifest.py MANIFEST OBJECTS REPEATS [--masked] > OUT.json

Frames with instance masks are left out (a frame gives boxes or instances, not both). Every other frame is repeated
REPEATS times (ids suffixed _0, _1, ...) and topped up to OBJECTS boxes exactly as `spatialsynth::bench::with_grid_boxes`
does (a 4 x 3 grid over the image, each box shrunk by a tenth of a cell, in a fixed order, labelled "grid box k");
tests/sample.rs checks the two against each other. File paths are made absolute.

With --masked, the other way round: only the frames with instance masks, repeated REPEATS times, as they are (OBJECTS
is ignored): a workload whose instance labels go to the device (BENCHMARKS.md, the CUDA emulator's labelled run).
"""
import json
import os
import sys

ORDER = [(1, 1), (2, 1), (0, 1), (3, 1), (1, 0), (2, 2), (0, 2), (3, 0), (1, 2), (2, 0), (0, 0), (3, 2)]


def grid_boxes(width, height, have, objects):
    cw, ch = width // 4, height // 3
    if cw < 5 or ch < 5:
        return []
    boxes = []
    for k in range(max(0, objects - have)):
        col, row = ORDER[k % len(ORDER)]
        shift = k // len(ORDER)
        dx, dy = (shift * cw // 4) % cw, (shift * ch // 4) % ch
        x0 = min(col * cw + cw // 10 + dx, width - 1)
        y0 = min(row * ch + ch // 10 + dy, height - 1)
        boxes.append({"label": f"grid box {k}", "xyxy": [x0, y0, min(x0 + cw - cw // 5, width), min(y0 + ch - ch // 5, height)]})
    return boxes


def main():
    if len(sys.argv) not in (4, 5) or sys.argv[4:] not in ([], ["--masked"]):
        sys.exit("usage: grid-box-manifest.py MANIFEST OBJECTS REPEATS [--masked] > OUT.json")
    path, objects, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    masked = sys.argv[4:] == ["--masked"]
    manifest = json.load(open(path))
    base = os.path.dirname(os.path.abspath(path))
    frames = []
    for rep in range(repeats):
        for f in manifest["frames"]:
            if ("instances" in f) != masked:
                continue
            f = json.loads(json.dumps(f))
            f["id"] = f"{f['id']}_{rep}"
            for key in ("color", "depth", "instances", "labels"):
                if key in f:
                    f[key] = os.path.join(base, f[key])
            if masked:
                frames.append(f)
                continue
            k = f["intrinsics"]
            f["boxes"] = f.get("boxes", []) + grid_boxes(k["width"], k["height"], len(f.get("boxes", [])), objects)
            frames.append(f)
    manifest["frames"] = frames
    json.dump(manifest, sys.stdout, indent=1)


main()
