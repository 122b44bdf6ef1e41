#!/usr/bin/env python3
"""Independent reference for spatialsynth's YOLOX path: onnxruntime + numpy + Pillow, no spatialsynth code.

Usage: yolox_reference.py MODEL.onnx IMAGE [--score 0.3] [--nms 0.45] [--same-object 0.85]
Prints one JSON line per detection: {"class_id", "score", "xyxy"} in frame pixels, highest score first.

Preprocessing follows the card (models/yolox_nano.toml): letterbox to 416x416 at the top-left with
r = min(416/w, 416/h), content int(w*r) x int(h*r) resized bilinearly (Pillow), pad 114, BGR, 0..255, NCHW.
Decoding follows the model's documentation: rows are the 52x52, 26x26 and 13x13 grids (strides 8, 16, 32) in
row-major order; centre = (o[0:2] + grid) * stride, size = exp(o[2:4]) * stride, score = o[4] * max(o[5:]) with
that class; per-class greedy NMS at IoU 0.45, and a box of any class overlapping a kept one beyond IoU 0.85 is
the same object named twice (the card's `same_object_iou`), dropped.
"""
import argparse
import json

import numpy as np
import onnxruntime as ort
from PIL import Image


def letterbox(img, size=416, pad=114.0):
    w, h = img.size
    r = min(size / w, size / h)
    nw, nh = int(w * r), int(h * r)
    resized = np.asarray(img.resize((nw, nh), Image.BILINEAR), dtype=np.float32)
    out = np.full((size, size, 3), pad, dtype=np.float32)
    out[:nh, :nw] = resized
    return out, r


def decode(out, size=416, strides=(8, 16, 32)):
    grids, expanded = [], []
    for s in strides:
        g = size // s
        ys, xs = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
        grids.append(np.stack([xs, ys], axis=-1).reshape(-1, 2))
        expanded.append(np.full((g * g, 1), s))
    grids = np.concatenate(grids).astype(np.float32)
    strides = np.concatenate(expanded).astype(np.float32)
    xy = (out[:, :2] + grids) * strides
    wh = np.exp(out[:, 2:4]) * strides
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1)
    cls = out[:, 5:].argmax(axis=1)
    score = out[:, 4] * out[np.arange(len(out)), 5 + cls]
    return boxes, cls, score


def iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("image")
    ap.add_argument("--score", type=float, default=0.3)
    ap.add_argument("--nms", type=float, default=0.45)
    ap.add_argument("--same-object", type=float, default=0.85)
    args = ap.parse_args()
    img = Image.open(args.image).convert("RGB")
    w, h = img.size
    x, r = letterbox(img)
    x = x[:, :, ::-1].transpose(2, 0, 1)[None].copy()  # RGB -> BGR, HWC -> NCHW
    sess = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x})[0][0]
    boxes, cls, score = decode(out)
    order = [i for i in np.argsort(-score, kind="stable") if score[i] >= args.score]
    kept = []
    for i in order:
        overlaps = [(cls[k] == cls[i], iou(boxes[k], boxes[i])) for k in kept]
        if all(not ((same and o > args.nms) or o > args.same_object) for same, o in overlaps):
            kept.append(i)
    for i in kept[:100]:
        b = boxes[i] / r
        b = [min(max(float(b[0]), 0.0), w), min(max(float(b[1]), 0.0), h),
             min(max(float(b[2]), 0.0), w), min(max(float(b[3]), 0.0), h)]
        print(json.dumps({"class_id": int(cls[i]), "score": float(score[i]), "xyxy": b}))


if __name__ == "__main__":
    main()
