//! Counts the work of the device's closest-surface search (`kernels/gaps.cu`, `shaders/gaps.wgsl`) on the sample
//! frames' object regions, each frame topped up to 10 objects with grid boxes (the kernel benchmark's end-to-end
//! frames): the pixel-order, one-level search the kernels ran before, the same on points in the device's spatial
//! order, and the two-level search they run now. Static bounds (a device's threads also lower theirs as they go),
//! serial: a measure of work, not of time. BENCHMARKS.md quotes it.
//!
//! `cargo run --release --example gap_work`

use spatialsynth::backend::pack::gap_grid_bits;
use spatialsynth::geometry::relations::{GAP_CHUNK, GAP_SUPER};
use spatialsynth::geometry::Point3;

type Box3 = (Point3, Point3);

fn bbox(points: &[Point3]) -> Box3 {
    points.iter().fold(([f32::INFINITY; 3], [f32::NEG_INFINITY; 3]), |(lo, hi), p| {
        ([0, 1, 2].map(|k| lo[k].min(p[k])), [0, 1, 2].map(|k| hi[k].max(p[k])))
    })
}

fn box_dist2(a: &Box3, b: &Box3) -> f32 {
    let g = [0, 1, 2].map(|k| (b.0[k] - a.1[k]).max(a.0[k] - b.1[k]).max(0.0));
    g[0] * g[0] + g[1] * g[1] + g[2] * g[2]
}

fn dist2(a: &Point3, b: &Point3) -> f32 {
    let d = [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
    d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
}

/// The device's order: a stable counting sort by the Morton code of each point's cell (`GpuGapOrder`).
fn spatial_order(points: &[Point3]) -> Vec<Point3> {
    let bits = gap_grid_bits(points.len());
    let (lo, hi) = bbox(points);
    let extent = (0..3).map(|k| hi[k] - lo[k]).fold(0.0f32, f32::max);
    let inv = match (1u32 << bits) as f32 / extent {
        v if v.is_finite() => v,
        _ => 0.0,
    };
    let spread = |v: u32| (0..10).fold(0u32, |acc, b| acc | ((v >> b) & 1) << (3 * b));
    let key = |p: &Point3| {
        let c = [0, 1, 2].map(|k| (((p[k] - lo[k]) * inv).max(0.0) as u32).min((1 << bits) - 1));
        spread(c[0]) | spread(c[1]) << 1 | spread(c[2]) << 2
    };
    let mut sorted = points.to_vec();
    sorted.sort_by_key(key);
    sorted
}

#[derive(Default)]
struct Work {
    box_tests: u64,
    chunk_pairs_searched: u64,
    point_pairs: u64,
}

/// Chunk pairs `pairs` searched with bound `u`: their box tests, the pairs whose boxes are nearer, the point pairs.
fn search(
    a: &[Point3],
    b: &[Point3],
    ab: &[Box3],
    bb: &[Box3],
    u: f32,
    pairs: impl Iterator<Item = (usize, usize)>,
) -> Work {
    let mut w = Work::default();
    for (i, j) in pairs {
        w.box_tests += 1;
        if box_dist2(&ab[i], &bb[j]) < u {
            w.chunk_pairs_searched += 1;
            let cb = &b[j * GAP_CHUNK..((j + 1) * GAP_CHUNK).min(b.len())];
            for p in &a[i * GAP_CHUNK..((i + 1) * GAP_CHUNK).min(a.len())] {
                if box_dist2(&(*p, *p), &bb[j]) < u {
                    w.point_pairs += cb.len() as u64;
                }
            }
        }
    }
    w
}

fn first_points_min(a: &[Point3], b: &[Point3], step: usize) -> f32 {
    a.iter().step_by(step).flat_map(|p| b.iter().step_by(step).map(move |q| dist2(p, q))).fold(f32::INFINITY, f32::min)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample/frames.json");
    // [one level, pixel order], [one level, sorted], [two levels, sorted]; super pairs (one test a pass).
    let mut totals: [Work; 3] = Default::default();
    let (mut super_pairs, mut object_pairs, mut frames) = (0u64, 0u64, 0u64);
    for spec in spatialsynth::io::read_manifest(&manifest)? {
        let frame = spatialsynth::bench::with_grid_boxes(&spatialsynth::io::load_frame(&spec?)?, 10);
        let Some(pixel) = spatialsynth::bench::object_points(&frame) else { continue };
        frames += 1;
        let sorted: Vec<Vec<Point3>> = pixel.iter().map(|o| spatial_order(o)).collect();
        for (x, y) in (0..pixel.len()).flat_map(|x| (x + 1..pixel.len()).map(move |y| (x, y))) {
            if pixel[x].is_empty() || pixel[y].is_empty() {
                continue;
            }
            object_pairs += 1;
            for (k, objects) in [&pixel, &sorted].into_iter().enumerate() {
                let (a, b) = (&objects[x], &objects[y]);
                let (ab, bb): (Vec<Box3>, Vec<Box3>) =
                    (a.chunks(GAP_CHUNK).map(bbox).collect(), b.chunks(GAP_CHUNK).map(bbox).collect());
                let all = (0..ab.len()).flat_map(|i| (0..bb.len()).map(move |j| (i, j)));
                let w = search(a, b, &ab, &bb, first_points_min(a, b, GAP_CHUNK), all);
                // The one-level kernels tested every chunk pair twice: the bound, then the search.
                totals[k].box_tests += 2 * w.box_tests;
                totals[k].chunk_pairs_searched += w.chunk_pairs_searched;
                totals[k].point_pairs += w.point_pairs;
                if k == 1 {
                    let (sa, sb): (Vec<Box3>, Vec<Box3>) = (
                        a.chunks(GAP_CHUNK * GAP_SUPER).map(bbox).collect(),
                        b.chunks(GAP_CHUNK * GAP_SUPER).map(bbox).collect(),
                    );
                    super_pairs += (sa.len() * sb.len()) as u64;
                    let listed = |u: f32| -> Vec<(usize, usize)> {
                        (0..sa.len())
                            .flat_map(|i| (0..sb.len()).map(move |j| (i, j)))
                            .filter(|(i, j)| box_dist2(&sa[*i], &sb[*j]) < u)
                            .collect()
                    };
                    let (na, nb) = (ab.len(), bb.len());
                    let chunks_of = move |(i, j): (usize, usize)| {
                        (i * GAP_SUPER..((i + 1) * GAP_SUPER).min(na))
                            .flat_map(move |ci| (j * GAP_SUPER..((j + 1) * GAP_SUPER).min(nb)).map(move |cj| (ci, cj)))
                    };
                    let u1 = first_points_min(a, b, GAP_CHUNK * GAP_SUPER);
                    let refine: Vec<(usize, usize)> = listed(u1).into_iter().flat_map(chunks_of).collect();
                    let u2 =
                        refine.iter().map(|&(i, j)| dist2(&a[i * GAP_CHUNK], &b[j * GAP_CHUNK])).fold(u1, f32::min);
                    let w = search(a, b, &ab, &bb, u2, listed(u2).into_iter().flat_map(chunks_of));
                    totals[2].box_tests += refine.len() as u64 + w.box_tests;
                    totals[2].chunk_pairs_searched += w.chunk_pairs_searched;
                    totals[2].point_pairs += w.point_pairs;
                }
            }
        }
    }
    println!("{frames} frames, {object_pairs} pairs of objects");
    for (name, w) in ["pixel order, one level", "sorted, one level", "sorted, two levels"].iter().zip(&totals) {
        println!(
            "{name:24} chunk-pair box tests {:>12}  chunk pairs searched {:>10}  point pairs {:>12}",
            w.box_tests, w.chunk_pairs_searched, w.point_pairs
        );
    }
    println!("two levels: {super_pairs} super pairs, each tested once in each of the three passes");
    Ok(())
}
