#!/usr/bin/env python3
"""Sorts the samples of `perf script -F comm,tid,ip,sym,dso` (a `perf record --call-graph dwarf` of a run through the
emulated CUDA backend) into the emulator's and the host's, and the host's by owner: the innermost frame of each
sample's call chain whose symbol names one of OWNERS (else "other"), with how many of its samples end in the kernel
(page faults, mostly), in libc or in user code. A sample is the emulator's when any frame of its chain is in
libcuda.so or libnvrtc, names an emulated module or is one of the emulator's inlined fibre and TLS helpers.
Then the same samples by step of the run (STEPS), and, with --containing=A,B,..., how many of the host's samples
hold each of those names anywhere in their stack (a name A&B: samples whose stack holds both).
usage: perf script -i perf.data -F comm,tid,ip,sym,dso | scripts/host-profile.py [FRAMES] [--containing=A,B]
(FRAMES: divide the host's samples by it, for samples a frame)."""
import collections
import sys

OWNERS = ["png::", "fdeflate", "image::", "denoise_input", "frame_start", "scenes_from_ground", "group_batch",
          "clusterings_by_job", "ground_batch", "estimate_normals", "summarize_kept", "summarize_chunk",
          "closest_gaps_resident", "gaps_of_chunk", "relate_batch", "dbscan_device", "dbscan_batch", "GapPack",
          "DepthBatch", "unproject_device", "color::", "write_", "parquet", "arrow", "serde", "ground_info_of",
          "hull", "canonical", "io::", "run::", "pipeline::"]
# The steps of a run, each named by a function its samples' stacks hold (the first listed that a stack holds, from
# its innermost frame out, owns the sample): BENCHMARKS.md's "where it goes" table.
STEPS = [("load_frame", "loading and decoding"), ("AtomicFile", "writing"), ("serialize_line", "writing"),
         ("serde", "writing"),
         ("frames_geometry", "inside the K1+K2 call"), ("frame_start", "frame inputs"),
         ("denoise_input", "K3's host steps before DBSCAN"),
         ("dbscan_batch", "inside the K3 call"), ("denoise_output", "K3's host steps after DBSCAN"),
         ("summarize_kept", "inside the K4 call"), ("closest_gaps", "inside the gaps call"),
         ("relate_batch", "inside the K5 call"), ("scene_object", "objects"), ("color::", "objects"),
         ("scenes_from_ground", "the rest of the scene stage"), ("release_free_memory", "releasing memory"),
         ("compile_module", "compiling the kernels"), ("nvrtc", "compiling the kernels"),
         ("load_module", "compiling the kernels")]
EMULATOR = ("libcuda.so", "emu_module", "libnvrtc", "run_block", "resume (inlined)", "initial_sp",
            "release (inlined)", "__tls_get_addr")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--containing=")]
    containing = [n for a in sys.argv[1:] if a.startswith("--containing=") for n in a.split("=", 1)[1].split(",")]
    frames = float(args[0]) if args else None
    owners, kinds = collections.Counter(), collections.Counter()
    totals, steps, holding = collections.Counter(), collections.Counter(), collections.Counter()

    def flush(stack):
        if not stack:
            return
        totals["all"] += 1
        if any(any(e in f for e in EMULATOR) for f in stack):
            totals["emulator"] += 1
            return
        steps[next((step for f in stack for key, step in STEPS if key in f), "not traced to a step")] += 1
        for name in containing:
            holding[name] += all(any(part in f for f in stack) for part in name.split("&"))
        owner = next((o for f in stack for o in OWNERS if o in f), "other")
        leaf = stack[0]
        kind = "kernel" if "kernel.kallsyms" in leaf else "libc" if "libc.so" in leaf else "user"
        owners[owner] += 1
        kinds[(owner, kind)] += 1

    stack = []
    for line in sys.stdin:
        if line and not line[0].isspace():
            flush(stack)
            stack = []
        elif line.strip():
            stack.append(line.strip())
    flush(stack)
    host = totals["all"] - totals["emulator"]
    print(f"samples: {totals['all']}, the emulator's {totals['emulator']}, the host's {host}"
          + (f" ({host / frames:.1f} a frame)" if frames else ""))
    print(f"{'owner':24s} {'samples':>8s} {'kernel':>7s} {'libc':>5s} {'user':>5s}")
    for owner, n in owners.most_common():
        k = {kind: kinds[(owner, kind)] for kind in ("kernel", "libc", "user")}
        print(f"{owner:24s} {n:8d} {k['kernel']:7d} {k['libc']:5d} {k['user']:5d}")
    print(f"\n{'step':36s} {'samples':>8s}" + (" a frame" if frames else ""))
    for step, n in steps.most_common():
        print(f"{step:36s} {n:8d}" + (f" {n / frames:7.2f}" if frames else ""))
    for name in containing:
        print(f"samples whose stack holds {name}: {holding[name]}")


if __name__ == "__main__":
    main()
