#!/usr/bin/env python3
"""Writes the tiny ONNX models the tests use for the metric-depth and image-filter paths (no real model of either
kind is small enough to ship). Needs `onnx`. Run from the repository root:

    python3 tests/python/make_tiny_models.py

- tests/models/tiny_depth.onnx: x [N,3,H,W] -> Conv 1x1 (each channel weight 10/3, no bias) -> depth [N,1,H,W].
  With the card's input scale 1/255, a grey pixel p gives 10 * p / 255: a "depth model" whose answer is written
  in the image, so a test can render a scene of known geometry into a PNG.
- tests/models/tiny_embed.onnx: x [N,3,8,8] -> GlobalAveragePool -> Flatten -> embedding [N,3]: the mean colour.
"""
import onnx
from onnx import TensorProto, helper, numpy_helper
import numpy as np


def save(model, path):
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    print(path, len(model.SerializeToString()), "bytes")


def tiny_depth():
    w = numpy_helper.from_array(np.full((1, 3, 1, 1), 10.0 / 3.0, dtype=np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["depth"])
    graph = helper.make_graph(
        [node], "tiny_depth",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 120, 160])],
        [helper.make_tensor_value_info("depth", TensorProto.FLOAT, ["N", 1, 120, 160])],
        [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="spatialsynth-tests")


def tiny_embed():
    pool = helper.make_node("GlobalAveragePool", ["x"], ["p"])
    flat = helper.make_node("Flatten", ["p"], ["embedding"], axis=1)
    graph = helper.make_graph(
        [pool, flat], "tiny_embed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="spatialsynth-tests")


if __name__ == "__main__":
    save(tiny_depth(), "tests/models/tiny_depth.onnx")
    save(tiny_embed(), "tests/models/tiny_embed.onnx")
