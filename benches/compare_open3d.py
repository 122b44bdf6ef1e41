#!/usr/bin/env python3
"""Side-by-side W1-W3 timing: `spatialsynth bench` against the Open3D baseline, on the same frames, in one run.

Usage:
  python3 benches/compare_open3d.py DATA_DIR [--baseline ../shared/bench/open3d_baseline.py]
                                    [--spatialsynth target/release/spatialsynth] [--threads 2] [--rounds 1]

Needs `pip install open3d numpy` for the baseline (and on Debian `apt-get install libusb-1.0-0 libgomp1`).
The two programs run one after the other (never at the same time), `rounds` times each, alternating, with the
same thread count (OMP_NUM_THREADS for Open3D, --threads for spatialsynth). Prints a JSON summary: per stage the
median over frames of each system's ms/frame, the ratio of those medians, and the median of the per-frame ratios.
"""
import argparse, json, os, statistics, subprocess, sys


def run_lines(cmd, env):
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--baseline", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "bench", "open3d_baseline.py"))
    ap.add_argument("--spatialsynth", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "spatialsynth"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    ours, theirs = {}, {}
    for _ in range(a.rounds):
        for row in run_lines([sys.executable, a.baseline, a.data], env):
            if "frame" in row:
                # The baseline names frames by their folder path; keep "dataset/id".
                key = "/".join(row["frame"].split(os.sep)[-2:])
                theirs.setdefault(key, []).append(row)
        for row in run_lines([a.spatialsynth, "--threads", str(a.threads), "bench", a.data, "--repeats", "1"], env):
            if "frame" in row:
                ours.setdefault(row["frame"], []).append(row)
    frames = sorted(set(ours) & set(theirs))
    stages = {"unproject": ("ms_unproject", "s_unproject"), "ransac": ("ms_ransac", "s_ransac"), "dbscan": ("ms_dbscan", "s_dbscan")}
    def per_frame(rows, key, scale):
        return statistics.median(r[key] * scale for r in rows)
    summary = {"frames": len(frames), "threads": a.threads, "rounds": a.rounds, "stages": {}}
    tot_o, tot_t = [], []
    for name, (ko, kt) in stages.items():
        o = [per_frame(ours[f], ko, 1.0) for f in frames]
        t = [per_frame(theirs[f], kt, 1000.0) for f in frames]
        summary["stages"][name] = {
            "spatialsynth_median_ms": round(statistics.median(o), 3),
            "open3d_median_ms": round(statistics.median(t), 3),
            "speedup_of_medians": round(statistics.median(t) / statistics.median(o), 1),
            "median_per_frame_speedup": round(statistics.median(tt / oo for tt, oo in zip(t, o)), 1),
        }
        tot_o.append(o)
        tot_t.append(t)
    o_total = [sum(x) for x in zip(*tot_o)]
    t_total = [sum(x) for x in zip(*tot_t)]
    summary["total"] = {
        "spatialsynth_median_ms": round(statistics.median(o_total), 3),
        "open3d_median_ms": round(statistics.median(t_total), 3),
        "spatialsynth_mean_ms": round(statistics.mean(o_total), 3),
        "open3d_mean_ms": round(statistics.mean(t_total), 3),
        "speedup_of_medians": round(statistics.median(t_total) / statistics.median(o_total), 1),
        "speedup_of_means": round(statistics.mean(t_total) / statistics.mean(o_total), 1),
        "median_per_frame_speedup": round(statistics.median(t / o for t, o in zip(t_total, o_total)), 1),
        "min_per_frame_speedup": round(min(t / o for t, o in zip(t_total, o_total)), 1),
    }
    # Open3D's dominant plane against our ground: how many frames have it more than 30 degrees off (a wall).
    def angle(p, q):
        import math
        d = abs(sum(x * y for x, y in zip(p[:3], q[:3])))
        return math.degrees(math.acos(min(1.0, d / math.sqrt(sum(x * x for x in p[:3]) * sum(y * y for y in q[:3])))))
    summary["frames_where_open3d_plane_is_not_the_ground"] = sum(
        1 for f in frames if ours[f][0]["plane"] and angle(theirs[f][0]["plane"], ours[f][0]["plane"]) > 30)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
