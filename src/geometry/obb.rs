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

/// Keeps only points that can be on the hull: drops those strictly inside the quadrilateral of the extreme points
/// in x + y and x − y (Akl–Toussaint). Cheap, and it makes the hull of a dense object nearly free.
pub fn hull_candidates(points: &[[f64; 2]]) -> Vec<[f64; 2]> {
    if points.len() < 16 {
        return points.to_vec();
    }
    let key = |f: fn(&[f64; 2]) -> f64| {
        let mut lo = points[0];
        let mut hi = points[0];
        for p in points {
            if f(p) < f(&lo) {
                lo = *p;
            }
            if f(p) > f(&hi) {
                hi = *p;
            }
        }
        (lo, hi)
    };
    let (a_lo, a_hi) = key(|p| p[0] + p[1]);
    let (b_lo, b_hi) = key(|p| p[0] - p[1]);
    // Quadrilateral in counter-clockwise order: min(x+y), max(x−y), max(x+y), min(x−y).
    let quad = [a_lo, b_hi, a_hi, b_lo];
    let strictly_inside = |p: &[f64; 2]| (0..4).all(|i| cross2(quad[i], quad[(i + 1) % 4], *p) > 0.0);
    points.iter().filter(|p| !strictly_inside(p)).copied().collect()
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
        assert!(cand.len() < pts.len() / 2);
        assert_eq!(convex_hull(&mut all), convex_hull(&mut cand));
    }
}
