//! Property tests of the CPU reference (the specification the GPU kernels will have to match).

use proptest::prelude::*;
use spatialsynth::geometry::dbscan::{dbscan, Clustering, NOISE};
use spatialsynth::geometry::ransac::{fit_ground_plane, largest_connected, RansacParams};
use spatialsynth::geometry::relations::relate;
use spatialsynth::geometry::stats::ObjectSummary;
use spatialsynth::geometry::unproject::{unproject_depth, DepthData, DepthImage};
use spatialsynth::geometry::{Intrinsics, Point3};
use spatialsynth::io::objects::ObjectKind;
use spatialsynth::pipeline::{scene_from_points, ObjectInput, SceneConfig};

// ---------------------------------------------------------------------------------------------------------------
// K1: unproject / project round trip

fn intrinsics() -> impl Strategy<Value = Intrinsics> {
    (64u32..1500, 48u32..1200, 0.4f64..2.5, 0.9f64..1.1, -0.2f64..0.2, -0.2f64..0.2).prop_map(
        |(w, h, f, aspect, dx, dy)| {
            let fx = f * f64::from(w);
            Intrinsics {
                fx,
                fy: fx * aspect,
                cx: f64::from(w) * (0.5 + dx),
                cy: f64::from(h) * (0.5 + dy),
                width: w,
                height: h,
            }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn unproject_then_project_returns_the_pixel(k in intrinsics(), fu in 0.0f64..1.0, fv in 0.0f64..1.0, z in 0.05f64..80.0) {
        let (u, v) = ((fu * f64::from(k.width - 1)).floor(), (fv * f64::from(k.height - 1)).floor());
        // Through the library's K1 on a one-pixel depth image (f32 path), and through the f64 helpers.
        let mut values = vec![0f32; (k.width * k.height) as usize];
        let index = (v as usize) * k.width as usize + u as usize;
        values[index] = z as f32;
        let depth = DepthImage { width: k.width, height: k.height, data: DepthData::F32 { values } };
        let cloud = unproject_depth(&depth, &k);
        prop_assert_eq!(cloud.len(), 1);
        prop_assert_eq!(cloud.pixels[0] as usize, index);
        let p = cloud.points_in_camera[0];
        let uv = k.project([f64::from(p[0]), f64::from(p[1]), f64::from(p[2])]).unwrap();
        // f32 points: a relative error of ~1e-7 of the coordinate, i.e. far below a thousandth of a pixel.
        prop_assert!((uv[0] - u).abs() < 1e-3 && (uv[1] - v).abs() < 1e-3, "{uv:?} vs ({u}, {v})");
        let back = k.project(k.unproject(u, v, z)).unwrap();
        prop_assert!((back[0] - u).abs() < 1e-9 && (back[1] - v).abs() < 1e-9);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// K2: RANSAC recovers a known plane under noise and 50% outliers

/// Deterministic pseudo-random numbers for building clouds inside a proptest case.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
    fn gauss(&mut self) -> f64 {
        let (u1, u2) = (self.next().max(1e-12), self.next());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

fn unit(v: [f64; 3]) -> [f64; 3] {
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    [v[0] / n, v[1] / n, v[2] / n]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn ransac_recovers_a_known_plane(
        tilt_deg in 0.0f64..40.0, azimuth in 0.0f64..std::f64::consts::TAU, height in 0.3f64..2.5,
        seed in any::<u64>(), frame in any::<u32>(), noise_m in 0.0f64..0.006,
    ) {
        let mut rng = Lcg(seed);
        // Ground normal (pointing to the camera side) tilted from the camera's −y.
        let (t, a) = (tilt_deg.to_radians(), azimuth);
        let n = unit([t.sin() * a.cos(), -t.cos(), t.sin() * a.sin()]);
        let e1 = unit(cross(n, [0.0, 0.0, 1.0]));
        let e2 = cross(n, e1);
        let foot = [-n[0] * height, -n[1] * height, -n[2] * height];
        let total = 20_000;
        let mut pts: Vec<Point3> = Vec::with_capacity(total);
        for i in 0..total {
            let p = if i % 2 == 0 {
                // On the plane, 0.5..6 m around the camera's foot, with Gaussian noise along the normal.
                let (s, r) = (rng.range(-3.0, 3.0), rng.range(0.5, 6.0));
                let off = rng.gauss() * noise_m;
                [0, 1, 2].map(|k| foot[k] + s * e1[k] + r * e2[k] + off * n[k])
            } else {
                // Outliers: uniform in a 6 m box in front of the camera.
                [rng.range(-3.0, 3.0), rng.range(-2.5, 2.5), rng.range(0.3, 6.0)]
            };
            pts.push(p.map(|v| v as f32));
        }
        let fit = fit_ground_plane(&pts, None, frame, &RansacParams::default()).expect("a plane");
        prop_assert!(fit.accepted);
        let dotn = fit.plane.normal.iter().zip(&n).map(|(a, b)| a * b).sum::<f64>().clamp(-1.0, 1.0);
        let angle = dotn.acos().to_degrees();
        prop_assert!(angle < 1.0, "normal off by {angle} deg");
        prop_assert!((fit.plane.offset - height).abs() < 0.01, "height {} vs {height}", fit.plane.offset);
    }
}

#[test]
fn ransac_is_deterministic_and_seeded() {
    let mut rng = Lcg(3);
    let pts: Vec<Point3> = (0..5000)
        .map(|i| {
            if i % 3 == 0 {
                [rng.range(-2.0, 2.0), rng.range(-1.0, 1.0), rng.range(1.0, 4.0)].map(|v| v as f32)
            } else {
                [rng.range(-2.0, 2.0), 1.2, rng.range(1.0, 4.0)].map(|v| v as f32)
            }
        })
        .collect();
    let p = RansacParams::default();
    let a = fit_ground_plane(&pts, None, 42, &p).unwrap();
    assert_eq!(a, fit_ground_plane(&pts, None, 42, &p).unwrap());
    let other_seed = fit_ground_plane(&pts, None, 42, &RansacParams { seed: 9, ..p.clone() }).unwrap();
    // A different seed draws different hypotheses (but finds the same plane).
    assert_ne!(a.hypothesis, other_seed.hypothesis);
    assert!((a.plane.offset - other_seed.plane.offset).abs() < 1e-3);
}

#[test]
fn ransac_rejects_walls_by_the_up_prior() {
    // A big wall (normal along z, facing the camera) and a smaller floor: the floor must win.
    let mut rng = Lcg(5);
    let mut pts: Vec<Point3> = Vec::new();
    for _ in 0..30_000 {
        pts.push([rng.range(-3.0, 3.0), rng.range(-2.0, 1.4), 4.0].map(|v| v as f32));
    }
    for _ in 0..8_000 {
        pts.push([rng.range(-3.0, 3.0), 1.4, rng.range(0.5, 4.0)].map(|v| v as f32));
    }
    let fit = fit_ground_plane(&pts, None, 1, &RansacParams::default()).unwrap();
    assert!(fit.accepted);
    assert!((fit.plane.normal[1] + 1.0).abs() < 1e-3, "{fit:?}");
    assert!((fit.plane.offset - 1.4).abs() < 1e-3, "{fit:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// K3: grid DBSCAN equals a brute-force DBSCAN oracle

/// The textbook O(n²) DBSCAN with the library's documented tie rules (border → nearest core point, ties to the
/// lower index; clusters numbered by their smallest core index).
/// The ground's connected support as plainly as it can be written: voxels touch when no coordinate differs by more
/// than one; pieces by flood fill over every pair; the largest piece's points, ties to the piece holding the lowest
/// index.
fn oracle_largest_connected(points: &[Point3], subset: &[u32], voxel_m: f32) -> Vec<u32> {
    let inv = 1.0 / voxel_m;
    let cell = |i: u32| points[i as usize].map(|v| (v * inv).floor() as i32);
    let touch = |a: [i32; 3], b: [i32; 3]| (0..3).all(|k| (a[k] - b[k]).abs() <= 1);
    let mut piece = vec![usize::MAX; subset.len()];
    let mut sizes = Vec::new();
    for start in 0..subset.len() {
        if piece[start] != usize::MAX {
            continue;
        }
        let id = sizes.len();
        let (mut stack, mut size) = (vec![start], 0);
        piece[start] = id;
        while let Some(a) = stack.pop() {
            size += 1;
            for b in 0..subset.len() {
                if piece[b] == usize::MAX && touch(cell(subset[a]), cell(subset[b])) {
                    piece[b] = id;
                    stack.push(b);
                }
            }
        }
        sizes.push(size);
    }
    // Pieces are numbered by their lowest position in `subset` (ascending indices): the first largest wins a tie.
    let best = (0..sizes.len()).max_by_key(|&p| (sizes[p], std::cmp::Reverse(p)));
    subset.iter().zip(&piece).filter(|&(_, &p)| Some(p) == best).map(|(&i, _)| i).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_largest_connected_support_equals_a_search_of_every_pair(
        points in prop::collection::vec((-6i32..6, -6i32..6, -2i32..2, 0.0f32..1.0), 0..120),
        keep_every in 1usize..4,
    ) {
        // Points in voxels of 0.1 m on a small lattice (many touching, some apart), at random places inside them.
        let points: Vec<Point3> =
            points.iter().map(|&(x, y, z, f)| [(x as f32 + f) * 0.1, (y as f32 + 0.5) * 0.1, (z as f32 + f) * 0.1]).collect();
        let subset: Vec<u32> = (0..points.len() as u32).filter(|i| (*i as usize).is_multiple_of(keep_every)).collect();
        let want = oracle_largest_connected(&points, &subset, 0.1);
        prop_assert_eq!(largest_connected(&points, subset.clone(), 0.1), want);
    }
}

fn oracle_dbscan(pts: &[Point3], eps: f32, min_points: u32) -> (Vec<i32>, Vec<bool>) {
    let n = pts.len();
    let d2 = |a: &Point3, b: &Point3| {
        let (dx, dy, dz) = (a[0] - b[0], a[1] - b[1], a[2] - b[2]);
        dx * dx + dy * dy + dz * dz
    };
    let eps2 = eps * eps;
    let core: Vec<bool> =
        (0..n).map(|i| (0..n).filter(|&j| d2(&pts[i], &pts[j]) <= eps2).count() >= min_points as usize).collect();
    let mut comp = vec![-1i32; n];
    let mut next = 0;
    for s in 0..n {
        if !core[s] || comp[s] >= 0 {
            continue;
        }
        // Flood fill over core points in index order: the seed is the smallest index of its component.
        let mut stack = vec![s];
        comp[s] = next;
        while let Some(i) = stack.pop() {
            for j in 0..n {
                if core[j] && comp[j] < 0 && d2(&pts[i], &pts[j]) <= eps2 {
                    comp[j] = next;
                    stack.push(j);
                }
            }
        }
        next += 1;
    }
    let labels = (0..n)
        .map(|i| {
            if core[i] {
                return comp[i];
            }
            let mut best: Option<(f32, usize)> = None;
            for j in (0..n).filter(|&j| core[j]) {
                let d = d2(&pts[i], &pts[j]);
                if d <= eps2 && best.is_none_or(|b| (d, j) < b) {
                    best = Some((d, j));
                }
            }
            best.map_or(NOISE, |(_, j)| comp[j])
        })
        .collect();
    (labels, core)
}

fn cloud() -> impl Strategy<Value = (Vec<Point3>, f32, u32)> {
    (any::<u64>(), 1usize..8, 0usize..500, 0.01f32..0.3, 1u32..14, 0.0f64..1.0).prop_map(
        |(seed, blobs, n, eps, min_points, dup_share)| {
            let mut rng = Lcg(seed);
            let centres: Vec<[f64; 3]> =
                (0..blobs).map(|_| [rng.range(-1.0, 1.0), rng.range(-1.0, 1.0), rng.range(-1.0, 1.0)]).collect();
            let mut pts: Vec<Point3> = Vec::with_capacity(n);
            for i in 0..n {
                let p = if !pts.is_empty() && rng.next() < 0.1 * dup_share {
                    // Exact duplicates exercise ties.
                    pts[i % pts.len()]
                } else if rng.next() < 0.2 {
                    [rng.range(-1.5, 1.5), rng.range(-1.5, 1.5), rng.range(-1.5, 1.5)].map(|v| v as f32)
                } else {
                    let c = centres[i % blobs];
                    let s = rng.range(0.01, 0.3);
                    [c[0] + rng.gauss() * s, c[1] + rng.gauss() * s, c[2] + rng.gauss() * s].map(|v| v as f32)
                };
                pts.push(p);
            }
            (pts, eps, min_points)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn grid_dbscan_equals_the_brute_force_oracle((pts, eps, min_points) in cloud()) {
        let got = dbscan(&pts, eps, min_points).unwrap();
        let (labels, core) = oracle_dbscan(&pts, eps, min_points);
        prop_assert_eq!(&got.core, &core);
        // Same cluster numbering rule on both sides, so the partitions must be equal label for label.
        prop_assert_eq!(&got.labels, &labels);
        prop_assert_eq!(got.clusters as i32, labels.iter().copied().max().unwrap_or(-1) + 1);
    }

    /// `Clustering::sizes` (four partial counts a cluster) counts each cluster's points, noise left out, whatever
    /// the number of points mod 4; and `largest` is the first cluster with the most (`None` without clusters; the
    /// first cluster when all have none, which DBSCAN's clusterings never do).
    #[test]
    fn cluster_sizes_count_each_clusters_points(
        (clusters, labels) in
            (0u32..6).prop_flat_map(|c| (Just(c), prop::collection::vec(-1i32..c as i32, 0..40)))
    ) {
        let core = vec![false; labels.len()];
        let clustering = Clustering { labels: labels.clone(), core, clusters };
        let want: Vec<u32> = (0..clusters as i32).map(|c| labels.iter().filter(|&&l| l == c).count() as u32).collect();
        prop_assert_eq!(clustering.sizes(), want.clone());
        let most = want.iter().copied().max().unwrap_or(0);
        let largest = want.iter().position(|&s| s == most).map(|c| c as u32);
        prop_assert_eq!(clustering.largest(), largest);
    }
}

#[test]
fn dbscan_on_a_lattice_with_exact_eps_distances() {
    // Points exactly eps apart on a lattice: every boundary case is a tie between <= and <.
    let eps = 0.25f32;
    let pts: Vec<Point3> = (0..6)
        .flat_map(|i| (0..6).flat_map(move |j| (0..3).map(move |k| [i as f32 * eps, j as f32 * eps, k as f32 * eps])))
        .collect();
    for min_points in [1, 3, 5, 7, 8] {
        let got = dbscan(&pts, eps, min_points).unwrap();
        let (labels, core) = oracle_dbscan(&pts, eps, min_points);
        assert_eq!(got.core, core, "min_points {min_points}");
        assert_eq!(got.labels, labels, "min_points {min_points}");
    }
}

#[test]
fn dbscan_border_ties_go_to_the_lower_index() {
    // A border point exactly eps from a core point of each of two clusters: it joins the cluster of the core
    // point with the lower original index, whichever cluster that is and in whatever order the grid scans.
    let blob = |x: f32| vec![[x, 0.0, 0.0], [x, 0.1, 0.0], [x, -0.1, 0.0], [x, 0.0, 0.1]];
    for (first, second) in [(2.0f32, 0.0f32), (0.0, 2.0)] {
        let mut pts = blob(first);
        pts.extend(blob(second));
        pts.push([1.0, 0.0, 0.0]);
        let got = dbscan(&pts, 1.0, 5).unwrap();
        assert_eq!(got.clusters, 2);
        assert!(!got.core[8]);
        assert_eq!(got.labels[8], 0, "{first} {second}: {:?}", got.labels);
        assert_eq!(oracle_dbscan(&pts, 1.0, 5).0, got.labels);
    }
}

#[test]
fn dbscan_rejects_bad_input() {
    assert!(dbscan(&[[0.0, 0.0, 0.0]], 0.0, 3).is_err());
    assert!(dbscan(&[[0.0, f32::NAN, 0.0]], 0.1, 3).is_err());
    assert!(dbscan(&[[0.0, 0.0, 0.0], [1e9, 0.0, 0.0]], 0.01, 1).is_err());
    assert_eq!(dbscan(&[], 0.1, 3).unwrap().clusters, 0);
}

// ---------------------------------------------------------------------------------------------------------------
// K5: antisymmetry

fn summary() -> impl Strategy<Value = ObjectSummary> {
    (prop::array::uniform3(-5.0f32..5.0), prop::array::uniform3(0.01f32..2.0), 0.001f32..0.1).prop_map(
        |(c, size, sigma)| ObjectSummary {
            centroid_m: c,
            sigma_m: sigma,
            aabb_min_m: [c[0] - size[0] / 2.0, c[1] - size[1] / 2.0, c[2] - size[2] / 2.0],
            aabb_max_m: [c[0] + size[0] / 2.0, c[1] + size[1] / 2.0, c[2] + size[2] / 2.0],
            volume_m3: size[0] * size[1] * size[2],
            size_m: size,
            obb_center_m: c,
            points: 100,
            ..ObjectSummary::default()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn relations_are_antisymmetric(a in summary(), b in summary()) {
        let ab = relate(0, &a, 1, &b);
        let ba = relate(1, &b, 0, &a);
        // left(A, B) iff right(B, A), and the same for above/below, front/behind, taller, wider, bigger.
        prop_assert_eq!(ab.left_m, -ba.left_m);
        prop_assert_eq!(ab.above_m, -ba.above_m);
        prop_assert_eq!(ab.front_m, -ba.front_m);
        prop_assert_eq!(ab.taller_m, -ba.taller_m);
        prop_assert_eq!(ab.wider_m, -ba.wider_m);
        prop_assert_eq!(ab.bigger_log_ratio, -ba.bigger_log_ratio);
        prop_assert_eq!(ab.left_m > 0.0, ba.left_m < 0.0);
        // Symmetric quantities are bit-identical.
        prop_assert_eq!(ab.distance_m, ba.distance_m);
        prop_assert_eq!(ab.horizontal_distance_m, ba.horizontal_distance_m);
        prop_assert_eq!(ab.vertical_distance_m, ba.vertical_distance_m);
        prop_assert_eq!(ab.sigma_m, ba.sigma_m);
        // Gaps: "A entirely left of B" is "B entirely right of A".
        prop_assert!(ab.left_gap_m <= ab.left_m + (a.size_m[0] + b.size_m[0]) / 2.0 + 1e-5);
        // Bearings point opposite ways; clock hours are 6 apart where the bearing is not on an hour boundary.
        let diff = (ab.bearing_deg - ba.bearing_deg).rem_euclid(360.0);
        prop_assert!((diff - 180.0).abs() < 1e-3, "{} {}", ab.bearing_deg, ba.bearing_deg);
        if ab.clock_margin_deg > 1e-3 && ab.horizontal_distance_m > 1e-3 {
            prop_assert_eq!((ab.clock_hour + 6 - 1) % 12 + 1, ba.clock_hour);
        }
        prop_assert!((1..=12).contains(&ab.clock_hour));
        prop_assert!((0.0..=15.0).contains(&ab.clock_margin_deg));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// K2–K5 end to end: relations do not depend on where the camera is or how it is tilted

/// A world with a floor (z = 0) and box-shaped objects, as points (z up).
fn world(seed: u64) -> (Vec<[f64; 3]>, Vec<Vec<[f64; 3]>>) {
    let mut rng = Lcg(seed);
    let mut floor = Vec::new();
    for i in 0..120 {
        for j in 0..120 {
            floor.push([-3.0 + 0.05 * f64::from(i), 0.5 + 0.05 * f64::from(j), 0.0]);
        }
    }
    let mut objects = Vec::new();
    for _ in 0..4 {
        let (cx, cy) = (rng.range(-2.0, 2.0), rng.range(1.5, 5.0));
        let (sx, sy, sz) = (rng.range(0.2, 0.8), rng.range(0.2, 0.8), rng.range(0.2, 1.2));
        let base = if rng.next() < 0.3 { rng.range(0.3, 1.0) } else { 0.05 };
        let yaw = rng.range(0.0, std::f64::consts::PI);
        let mut pts = Vec::new();
        // Dense surface samples of the box (1 cm spacing is enough for DBSCAN's 5 cm to keep it whole).
        let steps = |s: f64| (s / 0.02).ceil() as usize + 1;
        for a in 0..steps(sx) {
            for b in 0..steps(sy) {
                for c in 0..steps(sz) {
                    let on_face =
                        a == 0 || b == 0 || c == 0 || a == steps(sx) - 1 || b == steps(sy) - 1 || c == steps(sz) - 1;
                    if !on_face {
                        continue;
                    }
                    let u = -sx / 2.0 + sx * a as f64 / (steps(sx) - 1) as f64;
                    let v = -sy / 2.0 + sy * b as f64 / (steps(sy) - 1) as f64;
                    let w = base + sz * c as f64 / (steps(sz) - 1) as f64;
                    pts.push([cx + u * yaw.cos() - v * yaw.sin(), cy + u * yaw.sin() + v * yaw.cos(), w]);
                }
            }
        }
        objects.push(pts);
    }
    (floor, objects)
}

/// Camera-to-world rotation of an OpenCV camera at heading `yaw` (about world z), pitched by `pitch` about its x
/// axis and rolled by `roll` about its optical axis.
fn camera_rotation(yaw: f64, pitch: f64, roll: f64) -> [[f64; 3]; 3] {
    type M = [[f64; 3]; 3];
    let mul = |a: M, b: M| {
        let mut c = [[0.0; 3]; 3];
        for i in 0..3 {
            for j in 0..3 {
                c[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
            }
        }
        c
    };
    let rz = |t: f64| [[t.cos(), -t.sin(), 0.0], [t.sin(), t.cos(), 0.0], [0.0, 0.0, 1.0]];
    let rx = |t: f64| [[1.0, 0.0, 0.0], [0.0, t.cos(), -t.sin()], [0.0, t.sin(), t.cos()]];
    // Level camera facing world +y: camera x = world x, camera y = world −z, camera z = world y.
    let base = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]];
    mul(mul(mul(rz(yaw), base), rx(pitch)), rz(roll))
}

fn to_camera(p: [f64; 3], r: &[[f64; 3]; 3], t: [f64; 3]) -> Point3 {
    let d = [p[0] - t[0], p[1] - t[1], p[2] - t[2]];
    // R^T d
    [0, 1, 2].map(|j| (r[0][j] * d[0] + r[1][j] * d[1] + r[2][j] * d[2]) as f32)
}

fn scene_for_camera(
    seed: u64,
    yaw: f64,
    pitch: f64,
    roll: f64,
    position: [f64; 3],
) -> spatialsynth::pipeline::SceneGeometry {
    let (floor, objects) = world(seed);
    let r = camera_rotation(yaw, pitch, roll);
    let mut all: Vec<Point3> = floor.iter().map(|p| to_camera(*p, &r, position)).collect();
    let inputs: Vec<ObjectInput> = objects
        .iter()
        .enumerate()
        .map(|(i, pts)| {
            let cam: Vec<Point3> = pts.iter().map(|p| to_camera(*p, &r, position)).collect();
            all.extend_from_slice(&cam);
            ObjectInput {
                label: format!("object {i}"),
                kind: ObjectKind::Instance,
                instance_id: Some(i as u32 + 1),
                bbox_px: [0.0; 4],
                points_in_camera: cam.into(),
                in_box_core: Vec::new(),
                score: None,
                colors: Vec::new(),
            }
        })
        .collect();
    // A huge focal length keeps the object DBSCAN radius at its fixed 5 cm whatever the distance.
    scene_from_points("synthetic/world", &all, None, &inputs, 1e9, None, &SceneConfig::default()).unwrap()
}

fn close(a: f32, b: f32, tol: f32) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn relations_are_invariant_to_camera_motion(
        seed in any::<u64>(), yaw in -3.0f64..3.0,
        pitch1 in -0.5f64..0.5, roll1 in -0.35f64..0.35, h1 in 0.8f64..2.0,
        pitch2 in -0.5f64..0.5, roll2 in -0.35f64..0.35, h2 in 0.8f64..2.0,
        dx in -1.0f64..1.0, dy in -1.0f64..1.0, yaw2 in -3.0f64..3.0,
    ) {
        // Same heading, different tilt, height and position: every relation is the same.
        let a = scene_for_camera(seed, yaw, pitch1, roll1, [0.0, 0.0, h1]);
        let fwd = [-(yaw.sin()), yaw.cos()];
        let b = scene_for_camera(seed, yaw, pitch2, roll2, [dx - 2.0 * fwd[0], dy - 2.0 * fwd[1], h2]);
        prop_assert!(a.ground.found && b.ground.found);
        prop_assert!((a.ground.camera_height_m - h1).abs() < 1e-3 && (b.ground.camera_height_m - h2).abs() < 1e-3);
        prop_assert_eq!(a.relations.len(), 12);
        prop_assert_eq!(b.relations.len(), 12);
        let tol = 2e-3;
        for (ra, rb) in a.relations.iter().zip(&b.relations) {
            prop_assert_eq!((ra.a, ra.b), (rb.a, rb.b));
            for (name, x, y) in [
                ("left", ra.left_m, rb.left_m), ("left_gap", ra.left_gap_m, rb.left_gap_m),
                ("above", ra.above_m, rb.above_m), ("above_gap", ra.above_gap_m, rb.above_gap_m),
                ("front", ra.front_m, rb.front_m), ("front_gap", ra.front_gap_m, rb.front_gap_m),
                ("taller", ra.taller_m, rb.taller_m), ("wider", ra.wider_m, rb.wider_m),
                ("bigger", ra.bigger_log_ratio, rb.bigger_log_ratio), ("distance", ra.distance_m, rb.distance_m),
                ("horizontal", ra.horizontal_distance_m, rb.horizontal_distance_m),
                ("vertical", ra.vertical_distance_m, rb.vertical_distance_m), ("gap", ra.gap_m, rb.gap_m),
            ] {
                prop_assert!(close(x, y, tol), "{name}: {x} vs {y} for pair ({}, {})", ra.a, ra.b);
            }
            let db = (ra.bearing_deg - rb.bearing_deg + 180.0).rem_euclid(360.0) - 180.0;
            prop_assert!(db.abs() < 0.2, "bearing {} vs {}", ra.bearing_deg, rb.bearing_deg);
        }
        // Any rigid motion, heading included: metric relations stay the same.
        let c = scene_for_camera(seed, yaw2, pitch2, roll1, [dy, dx, h2]);
        for (ra, rc) in a.relations.iter().zip(&c.relations) {
            for (name, x, y) in [
                ("above", ra.above_m, rc.above_m), ("taller", ra.taller_m, rc.taller_m),
                ("bigger", ra.bigger_log_ratio, rc.bigger_log_ratio), ("distance", ra.distance_m, rc.distance_m),
                ("horizontal", ra.horizontal_distance_m, rc.horizontal_distance_m),
                ("vertical", ra.vertical_distance_m, rc.vertical_distance_m), ("gap", ra.gap_m, rc.gap_m),
            ] {
                prop_assert!(close(x, y, tol), "{name}: {x} vs {y}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// K5 closest-surface distance: exact, against brute force

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn closest_surface_distance_is_exact(seed in any::<u64>(), na in 1usize..400, nb in 1usize..400,
                                         offset in 0.0f64..1.5, spread in 0.01f64..0.6, voxel in 0.005f32..0.3) {
        let mut rng = Lcg(seed);
        let blob = |rng: &mut Lcg, n: usize, cx: f64| -> Vec<Point3> {
            (0..n).map(|_| [cx + rng.gauss() * spread, rng.gauss() * spread, rng.range(-0.3, 0.3)].map(|v| v as f32)).collect()
        };
        let a = blob(&mut rng, na, 0.0);
        let b = blob(&mut rng, nb, offset);
        let m = spatialsynth::geometry::relations::closest_surface_matrix(&[&a, &b], voxel);
        let brute = a.iter().flat_map(|p| b.iter().map(move |q| {
            let d = [p[0] - q[0], p[1] - q[1], p[2] - q[2]];
            d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
        })).fold(f32::INFINITY, f32::min).sqrt();
        prop_assert_eq!(m[1], m[2]);
        prop_assert_eq!(m[1], brute, "voxel {}", voxel);
    }
}

#[test]
fn statistical_outlier_removal_drops_isolated_points() {
    use spatialsynth::geometry::outlier::{statistical_outlier_mask, OutlierParams};
    let mut rng = Lcg(11);
    let mut pts: Vec<Point3> =
        (0..2000).map(|_| [rng.range(0.0, 0.3), rng.range(0.0, 0.3), rng.range(1.0, 1.01)].map(|v| v as f32)).collect();
    let outliers = [[1.0f32, 1.0, 1.5], [-0.5, 0.2, 2.0], [0.15, 0.15, 1.4]];
    pts.extend_from_slice(&outliers);
    let keep = statistical_outlier_mask(&pts, &OutlierParams::default());
    assert!(keep[2000..].iter().all(|k| !k), "outliers kept");
    let kept = keep[..2000].iter().filter(|k| **k).count();
    assert!(kept > 1900, "only {kept} of 2000 surface points kept");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The height alone (K3's ground band on the host) is the canonical transform's third coordinate, bit for bit.
    #[test]
    fn canonical_height_is_the_transforms_z(nx in -1.0f64..1.0, ny in -1.0f64..-0.05, nz in -1.0f64..1.0,
                                            offset in -3.0f64..3.0, p in prop::array::uniform3(-20.0f32..20.0)) {
        use spatialsynth::geometry::canonical::{CanonicalFrame, GroundSource};
        let n = unit([nx, ny, nz]);
        let plane = spatialsynth::geometry::Plane { normal: n, offset };
        let frame = CanonicalFrame::from_ground_plane(&plane, GroundSource::Ransac).expect("a canonical frame");
        prop_assert_eq!(frame.height_f32(p).to_bits(), frame.apply_f32(p)[2].to_bits());
    }
}
