//! Gravity-aligned oriented boxes: the minimum-area rectangle of an object's horizontal footprint (convex hull +
//! rotating edges), extruded between its lowest and highest point.

/// A rectangle in the ground plane.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect2 {
    pub center: [f64; 2],
    /// Angle of the rectangle's first axis from the canonical x axis, in radians, normalised to (−π/4, π/4].
    pub yaw_rad: f64,
    /// Full extent along the first axis (near x) and the second axis (near y).
    pub extent: [f64; 2],
}

fn cross2(o: [f64; 2], a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
}

/// Convex hull (Andrew's monotone chain), counter-clockwise, without collinear points. `points` is sorted in place.
pub fn convex_hull(points: &mut [[f64; 2]]) -> Vec<[f64; 2]> {
    points.sort_unstable_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    let mut unique: Vec<[f64; 2]> = Vec::with_capacity(points.len());
    for p in points.iter() {
        if unique.last() != Some(p) {
            unique.push(*p);
        }
    }
    if unique.len() < 3 {
        return unique;
    }
    let mut hull: Vec<[f64; 2]> = Vec::with_capacity(2 * unique.len());
    for pass in 0..2 {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &[f64; 2]>> =
            if pass == 0 { Box::new(unique.iter()) } else { Box::new(unique.iter().rev()) };
        for &p in iter {
            while hull.len() >= start + 2 && cross2(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0 {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    hull
}

/// The directions of the quadrilateral that [`hull_candidates`] filters with first, counter-clockwise: the extreme
/// points in x + y and x − y.
pub const QUAD_DIRECTIONS: [[f64; 2]; 4] = [[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]];

/// The directions of the 16-gon that [`hull_candidates`] filters with second, counter-clockwise from −y: small
/// integer vectors, so each key `a·x + b·y` of f32 coordinates is exact in f64 (and cheap on a GPU).
pub const POLYGON_DIRECTIONS: [[f64; 2]; 16] = [
    [0.0, -1.0],
    [1.0, -2.0],
    [1.0, -1.0],
    [2.0, -1.0],
    [1.0, 0.0],
    [2.0, 1.0],
    [1.0, 1.0],
    [1.0, 2.0],
    [0.0, 1.0],
    [-1.0, 2.0],
    [-1.0, 1.0],
    [-2.0, 1.0],
    [-1.0, 0.0],
    [-2.0, -1.0],
    [-1.0, -1.0],
    [-1.0, -2.0],
];

/// Relative margin of the filter: a point is dropped only when it is inside every edge by more than
/// `HULL_MARGIN · scale²` (scale: the points' largest |Δx| + |Δy|), about 10⁶ times the f64 rounding of the cross
/// products, so a point it drops is strictly inside in exact arithmetic too and no hull vertex is ever lost.
pub const HULL_MARGIN: f64 = 1e-9;

/// Keeps only points that can be on the hull (Akl–Toussaint, twice): drops the points strictly inside the
/// quadrilateral of the extreme points in x + y and x − y, then those strictly inside the 16-gon of the extreme
/// points in [`POLYGON_DIRECTIONS`] among the rest (by [`HULL_MARGIN`]). On the sample frames' objects (about 10,000
/// points, hulls of about 20 vertices) the quadrilateral keeps about 35% of the points and the 16-gon about 3%.
///
/// Any closed chain of the points would do as the polygon: a point strictly left of each of its edges is strictly
/// inside the points' hull (the chain winds around it), so it is no hull vertex. Ties pick the first point.
pub fn hull_candidates(points: &[[f64; 2]]) -> Vec<[f64; 2]> {
    if points.len() < 16 {
        return points.to_vec();
    }
    let kept = drop_inside(points, &QUAD_DIRECTIONS);
    if kept.len() < 32 {
        return kept;
    }
    drop_inside(&kept, &POLYGON_DIRECTIONS)
}

/// The points of `points` (non-empty) that are not inside, by the margin, the polygon of their extreme points in
/// `directions` (counter-clockwise, including ±(1, 1) and ±(1, −1)).
fn drop_inside<const N: usize>(points: &[[f64; 2]], directions: &[[f64; 2]; N]) -> Vec<[f64; 2]> {
    let key = |d: &[f64; 2], p: &[f64; 2]| d[0] * p[0] + d[1] * p[1];
    // The largest key in each direction (a branch-free pass), then the first point that has it.
    let mut top = [f64::NEG_INFINITY; N];
    for p in points {
        for (t, d) in top.iter_mut().zip(directions) {
            let k = key(d, p);
            *t = if k > *t { k } else { *t };
        }
    }
    let mut polygon: Vec<[f64; 2]> = Vec::with_capacity(N);
    for (d, &t) in directions.iter().zip(&top) {
        let Some(p) = points.iter().find(|p| key(d, p) == t) else {
            return points.to_vec(); // no finite key: keep everything
        };
        if polygon.last() != Some(p) {
            polygon.push(*p);
        }
    }
    while polygon.len() > 1 && polygon.first() == polygon.last() {
        polygon.pop();
    }
    // The largest |Δx| + |Δy| between two points is the larger spread of x + y and x − y.
    let spread = |d: [f64; 2]| {
        let at = |d: [f64; 2]| directions.iter().position(|&e| e == d).map(|i| top[i]);
        match (at(d), at([-d[0], -d[1]])) {
            (Some(a), Some(b)) => a + b,
            _ => f64::INFINITY,
        }
    };
    let scale = spread([1.0, 1.0]).max(spread([1.0, -1.0]));
    let margin = HULL_MARGIN * scale * scale;
    if polygon.len() < 3 || !margin.is_finite() {
        return points.to_vec();
    }
    // cross2(a, b, p) with b − a computed once (the same operations, so the same bits), N edges whatever the
    // polygon's length (the first edge repeated: a test made twice changes nothing), so the test below unrolls.
    let edges: [([f64; 2], [f64; 2]); N] = std::array::from_fn(|i| {
        let i = if i < polygon.len() { i } else { 0 };
        let (a, b) = (polygon[i], polygon[(i + 1) % polygon.len()]);
        (a, [b[0] - a[0], b[1] - a[1]])
    });
    let mut kept = Vec::new();
    for chunk in points.chunks(64) {
        let mut keep = 0u64;
        for (j, p) in chunk.iter().enumerate() {
            let inside = edges
                .iter()
                .fold(true, |inside, (a, e)| inside & (e[0] * (p[1] - a[1]) - e[1] * (p[0] - a[0]) > margin));
            keep |= u64::from(!inside) << j;
        }
        while keep != 0 {
            kept.push(chunk[keep.trailing_zeros() as usize]);
            keep &= keep - 1;
        }
    }
    kept
}

/// The minimum-area enclosing rectangle of `points` (ties: the first hull edge found). Empty input gives a
/// zero rectangle at the origin.
pub fn min_area_rect(points: &[[f64; 2]]) -> Rect2 {
    let mut cand = hull_candidates(points);
    let hull = convex_hull(&mut cand);
    match hull.len() {
        0 => return Rect2 { center: [0.0, 0.0], yaw_rad: 0.0, extent: [0.0, 0.0] },
        1 => return Rect2 { center: hull[0], yaw_rad: 0.0, extent: [0.0, 0.0] },
        _ => {}
    }
    struct Candidate {
        area: f64,
        angle: f64,
        u: [f64; 2],
        v: [f64; 2],
        axis: [f64; 2],
    }
    let mut best: Option<Candidate> = None;
    for i in 0..hull.len() {
        let a = hull[i];
        let b = hull[(i + 1) % hull.len()];
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let len = (dx * dx + dy * dy).sqrt();
        if len == 0.0 {
            continue;
        }
        let (ux, uy) = (dx / len, dy / len);
        let (mut u0, mut u1, mut v0, mut v1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
        for p in &hull {
            let u = p[0] * ux + p[1] * uy;
            let v = -p[0] * uy + p[1] * ux;
            u0 = u0.min(u);
            u1 = u1.max(u);
            v0 = v0.min(v);
            v1 = v1.max(v);
        }
        let area = (u1 - u0) * (v1 - v0);
        if best.as_ref().is_none_or(|b| area < b.area - 1e-15) {
            best = Some(Candidate { area, angle: uy.atan2(ux), u: [u0, u1], v: [v0, v1], axis: [ux, uy] });
        }
    }
    let Some(Candidate { angle, u: ur, v: vr, axis: [ux, uy], .. }) = best else {
        return Rect2 { center: hull[0], yaw_rad: 0.0, extent: [0.0, 0.0] };
    };
    let (uc, vc) = ((ur[0] + ur[1]) / 2.0, (vr[0] + vr[1]) / 2.0);
    let center = [uc * ux - vc * uy, uc * uy + vc * ux];
    let (mut yaw, mut extent) = (angle, [ur[1] - ur[0], vr[1] - vr[0]]);
    // Bring the first axis within 45° of x: each quarter turn swaps the extents.
    let quarter = std::f64::consts::FRAC_PI_2;
    while yaw > quarter / 2.0 {
        yaw -= quarter;
        extent.swap(0, 1);
    }
    while yaw <= -quarter / 2.0 {
        yaw += quarter;
        extent.swap(0, 1);
    }
    Rect2 { center, yaw_rad: yaw, extent }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_rectangle_is_recovered() {
        let (w, d, yaw) = (2.0f64, 0.5f64, 0.3f64);
        let mut pts = Vec::new();
        for i in 0..=40 {
            for j in 0..=10 {
                let (u, v) = (w * (f64::from(i) / 40.0 - 0.5), d * (f64::from(j) / 10.0 - 0.5));
                pts.push([1.0 + u * yaw.cos() - v * yaw.sin(), -2.0 + u * yaw.sin() + v * yaw.cos()]);
            }
        }
        let r = min_area_rect(&pts);
        assert!((r.yaw_rad - yaw).abs() < 1e-9, "{r:?}");
        assert!((r.extent[0] - w).abs() < 1e-9 && (r.extent[1] - d).abs() < 1e-9, "{r:?}");
        assert!((r.center[0] - 1.0).abs() < 1e-9 && (r.center[1] + 2.0).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn yaw_is_normalised_and_extents_swap() {
        // A box rotated by 80° is the same as one rotated by −10° with its extents swapped.
        let yaw = 80f64.to_radians();
        let corners = [[-1.0, -0.25], [1.0, -0.25], [1.0, 0.25], [-1.0, 0.25]];
        let pts: Vec<[f64; 2]> =
            corners.iter().map(|[u, v]| [u * yaw.cos() - v * yaw.sin(), u * yaw.sin() + v * yaw.cos()]).collect();
        let r = min_area_rect(&pts);
        assert!((r.yaw_rad - (-10f64).to_radians()).abs() < 1e-9, "{r:?}");
        assert!((r.extent[0] - 0.5).abs() < 1e-9 && (r.extent[1] - 2.0).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn degenerate_inputs() {
        assert_eq!(min_area_rect(&[]).extent, [0.0, 0.0]);
        assert_eq!(min_area_rect(&[[1.0, 2.0], [1.0, 2.0]]).center, [1.0, 2.0]);
        let seg = min_area_rect(&[[0.0, 0.0], [3.0, 0.0], [1.0, 0.0]]);
        assert!((seg.extent[0] - 3.0).abs() < 1e-12 && seg.extent[1].abs() < 1e-12, "{seg:?}");
    }

    #[test]
    fn hull_candidates_keep_the_hull() {
        let mut pts = Vec::new();
        for i in 0..50 {
            for j in 0..50 {
                pts.push([f64::from(i) * 0.1, f64::from(j) * 0.07 + f64::from(i) * 0.01]);
            }
        }
        let mut all = pts.clone();
        let mut cand = hull_candidates(&pts);
        assert!(cand.len() < pts.len() / 10, "{} of {}", cand.len(), pts.len());
        assert_eq!(convex_hull(&mut all), convex_hull(&mut cand));
    }

    #[test]
    fn hull_candidates_keep_every_vertex_of_round_and_noisy_footprints() {
        // Discs and ellipses of random points (the quadrilateral alone keeps about a third of a disc), at
        // several rotations and offsets, with the hull of every point as the truth.
        let mut state = 0x9e37_79b9u32;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            f64::from(state) / f64::from(u32::MAX)
        };
        for case in 0..24 {
            let (a, b, yaw) = (0.2 + 0.05 * f64::from(case % 5), 0.1 + 0.1 * f64::from(case % 3), f64::from(case));
            let centre = [f64::from(case) * 1.7 - 10.0, 3.0 - f64::from(case) * 0.9];
            let pts: Vec<[f64; 2]> = (0..4000)
                .map(|_| {
                    let (r, t) = (next().sqrt(), next() * std::f64::consts::TAU);
                    let (u, v) = (a * r * t.cos(), b * r * t.sin());
                    let p = [centre[0] + u * yaw.cos() - v * yaw.sin(), centre[1] + u * yaw.sin() + v * yaw.cos()];
                    // As the canonical footprints are: f32 values.
                    p.map(|c| f64::from(c as f32))
                })
                .collect();
            let mut all = pts.clone();
            let mut cand = hull_candidates(&pts);
            assert_eq!(convex_hull(&mut all), convex_hull(&mut cand), "case {case}");
            // Thin ellipses keep the most (their ends fall between the 16 directions).
            assert!(cand.len() < pts.len() / 5, "case {case}: {} of {}", cand.len(), pts.len());
        }
    }

    #[test]
    fn polygon_directions_turn_counter_clockwise_as_the_kernels_compute_them() {
        // kernels/stats.cu and shaders/stats.wgsl (`direction`): the first four turned by d / 4 quarter turns.
        for (d, dir) in POLYGON_DIRECTIONS.iter().enumerate() {
            let [a, b] = POLYGON_DIRECTIONS[d % 4];
            let turned = match d / 4 {
                0 => [a, b],
                1 => [-b, a],
                2 => [-a, -b],
                _ => [b, -a],
            };
            assert_eq!(*dir, turned, "direction {d}");
            let next = POLYGON_DIRECTIONS[(d + 1) % POLYGON_DIRECTIONS.len()];
            assert!(dir[0] * next[1] - dir[1] * next[0] > 0.0, "direction {d} is not before the next one");
        }
    }
}
