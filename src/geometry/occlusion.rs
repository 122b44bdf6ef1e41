//! Which sides of an object's box border something in front of it.
//!
//! Where the pixels just outside one side of an object's box are nearer the camera than the object, and rise above
//! the object's base, something stands in front of the object along that side, and the object may go on behind it:
//! its measured extent is then only a lower bound (a chair whose right half is behind a nearer chair, a cabinet
//! whose foot is behind a table). Floor or a table top in front of an object's foot is nearer too, but it does not
//! rise above the object's base, so it does not count. The measure is taken on the host from the depth image, the
//! object's box and its scene record, the same on every backend; [`crate::qa`] decides what it rules out
//! (`margins.occluded_fraction`).
//!
//! Not seen: something in front of the middle of an object (inside its box), and an object behind a surface at
//! the height of its own lowest visible point (a chair behind a table shows its back above the table top, and the
//! table top looks like its support; [`crate::qa::Margins::floor_standing`] catches those of furniture and people).

use serde::{Deserialize, Serialize};

use super::canonical::CanonicalFrame;
use super::unproject::{ray_factor, DepthData, DepthImage};
use super::Intrinsics;

/// Pixels next to the box that are skipped (a box edge, and depth against colour, are uncertain by a pixel or two).
pub const RING_GAP_PX: u32 = 2;
/// The width of the band sampled beyond the gap, pixels.
pub const RING_BAND_PX: u32 = 4;
/// A pixel is in front of the object when it is nearer than the object's median depth by this much...
pub const NEARER_M: f32 = 0.10;
/// ...or by this share of the median depth, whichever is more.
pub const NEARER_SHARE: f32 = 0.05;
/// And when it rises this high above the object's base (or twice the object's position uncertainty, if more).
pub const ABOVE_BASE_M: f32 = 0.05;
/// A side with fewer valid depth pixels in its band has no fraction.
pub const MIN_SAMPLES: u32 = 16;

/// A column or row at the border of a depth image is in its [`depth_frame`] when at least this share of its pixels
/// has depth.
pub const FRAME_MIN_SHARE: f32 = 0.02;

/// The rectangle of a depth image that holds depth, `[x0, y0, x1, y1]` (pixels, `x1`/`y1` exclusive): the columns
/// and rows at its border with less than [`FRAME_MIN_SHARE`] of their pixels valid are cut away: columns (over the
/// image's height) on the left and right, then rows (over the columns kept) at the top and bottom. A depth sensor
/// registered to a wider colour camera leaves such margins (up to 43 pixels a side in the sample's Kinect
/// frames): an object whose box reaches into one has no points there, as if cut off by the frame. `None` when no
/// column, or then no row, holds that much depth. Reads only the margins and one line beyond each.
pub fn depth_frame(depth: &DepthImage) -> Option<[u32; 4]> {
    let (w, h) = (depth.width, depth.height);
    if w == 0 || h == 0 {
        return None;
    }
    let valid = |u: u32, v: u32| depth.depth_m(v as usize * w as usize + u as usize).is_some();
    let column = |u: u32, v0: u32, v1: u32| (v0..v1).filter(|&v| valid(u, v)).count() as f32;
    let row = |v: u32, u0: u32, u1: u32| (u0..u1).filter(|&u| valid(u, v)).count() as f32;
    // Columns over the image's height; rows over the columns kept.
    let hf = h as f32;
    let x0 = (0..w).find(|&u| column(u, 0, h) >= FRAME_MIN_SHARE * hf)?;
    let x1 = (x0..w).rev().find(|&u| column(u, 0, h) >= FRAME_MIN_SHARE * hf).map_or(x0 + 1, |u| u + 1);
    let wf = (x1 - x0) as f32;
    let y0 = (0..h).find(|&v| row(v, x0, x1) >= FRAME_MIN_SHARE * wf)?;
    let y1 = (y0..h).rev().find(|&v| row(v, x0, x1) >= FRAME_MIN_SHARE * wf).map_or(y0 + 1, |v| v + 1);
    Some([x0, y0, x1, y1])
}

/// For each side of an object's box, the fraction of the valid depth pixels in a band just outside it that are in
/// front of the object; `null` for a side without enough of them (off the image, or no depth there).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Occlusion {
    pub left: Option<f32>,
    pub top: Option<f32>,
    pub right: Option<f32>,
    pub bottom: Option<f32>,
}

impl Occlusion {
    /// The four sides' fractions: left, top, right, bottom.
    pub fn sides(&self) -> [Option<f32>; 4] {
        [self.left, self.top, self.right, self.bottom]
    }

    /// Whether any side's fraction reaches `fraction`.
    pub fn any_side_reaches(&self, fraction: f32) -> bool {
        self.sides().into_iter().flatten().any(|f| f >= fraction)
    }
}

/// What [`occlusion`] needs of an object: its box (pixels, `x1`/`y1` exclusive, as `bbox_px`) and its scene record's
/// median depth, base height above the ground and position uncertainty (metres).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ObjectExtent {
    pub bbox_px: [f32; 4],
    pub median_depth_m: f32,
    pub bottom_m: f32,
    pub sigma_m: f32,
}

/// The [`Occlusion`] of an object in a frame whose depth image is `depth`, camera `k` and canonical frame
/// `canonical`. A box that covers no pixel, or a depth image whose size is not the camera's, gives no fraction.
pub fn occlusion(depth: &DepthImage, k: &Intrinsics, canonical: &CanonicalFrame, o: &ObjectExtent) -> Occlusion {
    let (w, h) = (depth.width, depth.height);
    let (x0, y0, x1, y1) = crate::io::objects::box_pixels(o.bbox_px.map(f64::from), w, h);
    let finite = [o.median_depth_m, o.bottom_m, o.sigma_m].iter().all(|v| v.is_finite());
    if x0 >= x1 || y0 >= y1 || (k.width, k.height) != (w, h) || !finite {
        return Occlusion::default();
    }
    // The thresholds come from the backend's numbers, which may differ in their last bits between backends; they
    // are put where those bits cannot move a pixel across them. The depth one halfway between two steps of 16-bit
    // depth (the median of stored depths less 10 cm is itself a stored depth: a tie otherwise), the height one on a
    // whole millimetre.
    let nearer_than = o.median_depth_m - NEARER_M.max(NEARER_SHARE * o.median_depth_m);
    let nearer_than_stored = match &depth.data {
        DepthData::U16 { units_per_meter, .. } => (nearer_than * units_per_meter + 0.5).floor() - 0.5,
        DepthData::F32 { .. } => nearer_than,
    };
    let above = ((o.bottom_m + ABOVE_BASE_M.max(2.0 * o.sigma_m)) * 1000.0).round() / 1000.0;
    let is_nearer = |index: usize, z: f32| match &depth.data {
        DepthData::U16 { values, .. } => f32::from(values[index]) < nearer_than_stored,
        DepthData::F32 { .. } => z < nearer_than_stored,
    };
    // The band of one side: columns `us` and rows `vs`, both clipped to the image.
    let (gap, band) = (RING_GAP_PX as i64, RING_BAND_PX as i64);
    let clip = |from: i64, to: i64, end: u32| {
        let end = i64::from(end);
        (from.clamp(0, end) as u32, to.clamp(0, end) as u32)
    };
    let (x0, y0, x1, y1) = (i64::from(x0), i64::from(y0), i64::from(x1), i64::from(y1));
    let side = |(u0, u1): (u32, u32), (v0, v1): (u32, u32)| {
        let (mut valid, mut nearer) = (0u32, 0u32);
        for v in v0..v1 {
            let ray_y = ray_factor(v, k.cy, k.fy);
            for u in u0..u1 {
                let index = v as usize * w as usize + u as usize;
                let Some(z) = depth.depth_m(index) else { continue };
                valid += 1;
                if is_nearer(index, z) {
                    let ray_x = ray_factor(u, k.cx, k.fx);
                    nearer += u32::from(canonical.height_f32([z * ray_x, z * ray_y, z]) > above);
                }
            }
        }
        (valid >= MIN_SAMPLES).then(|| nearer as f32 / valid as f32)
    };
    Occlusion {
        left: side(clip(x0 - gap - band, x0 - gap, w), clip(y0, y1, h)),
        top: side(clip(x0, x1, w), clip(y0 - gap - band, y0 - gap, h)),
        right: side(clip(x1 + gap, x1 + gap + band, w), clip(y0, y1, h)),
        bottom: side(clip(x0, x1, w), clip(y1 + gap, y1 + gap + band, h)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A level camera 1.4 m above a floor, 200 × 240 pixels, f = 200 px, principal point (100, 80): a wall 4 m away,
    /// the floor in front of it; `paint` sets other depths (metres) by pixel.
    fn frame(paint: impl Fn(u32, u32) -> Option<f32>) -> (DepthImage, Intrinsics, CanonicalFrame) {
        let k = Intrinsics { fx: 200.0, fy: 200.0, cx: 100.0, cy: 80.0, width: 200, height: 240 };
        let canonical =
            CanonicalFrame { translation: [0.0, 0.0, 1.4], camera_height_m: 1.4, ..CanonicalFrame::level_camera() };
        let mut values = Vec::new();
        for v in 0..k.height {
            for u in 0..k.width {
                let z = paint(u, v).unwrap_or_else(|| floor_at(v, 1.4).min(4.0));
                values.push((z * 1000.0).round() as u16);
            }
        }
        let data = DepthData::U16 { values, units_per_meter: 1000.0, invalid_value: None };
        (DepthImage { width: k.width, height: k.height, data }, k, canonical)
    }

    /// The depth of a horizontal surface `below` metres under the camera at row `v` (infinite above the horizon).
    fn floor_at(v: u32, below: f64) -> f32 {
        let ray_y = (f64::from(v) - 80.0) / 200.0;
        if ray_y > 0.0 {
            (below / ray_y) as f32
        } else {
            f32::INFINITY
        }
    }

    #[test]
    fn the_depth_frame_leaves_out_the_margins_without_depth() {
        // Margins of 7 columns on the left, 3 on the right, 5 rows at the top and 2 at the bottom have no depth but
        // for a stray pixel or two (under 2% of a line); a hole inside (a window) and a sparse but valid line at the
        // new edge (every tenth pixel: 10%) stay in.
        let margin = |u: u32, v: u32| !(7..197).contains(&u) || !(5..238).contains(&v);
        let stray = |u: u32, v: u32| (u, v) == (2, 100) || (u, v) == (100, 1) || (u, v) == (198, 50);
        let hole = |u: u32, v: u32| (50..150).contains(&u) && (40..120).contains(&v);
        let sparse = |u: u32, v: u32| u == 7 && !v.is_multiple_of(10);
        let (depth, _, _) = frame(|u, v| (margin(u, v) && !stray(u, v) || hole(u, v) || sparse(u, v)).then_some(0.0));
        assert_eq!(depth_frame(&depth), Some([7, 5, 197, 238]));
        // A frame with depth everywhere is the whole image; one without any has none.
        let (full, _, _) = frame(|_, _| None);
        assert_eq!(depth_frame(&full), Some([0, 0, 200, 240]));
        let (empty, _, _) = frame(|_, _| Some(0.0));
        assert_eq!(depth_frame(&empty), None);
        // One column of depth: a frame one pixel wide.
        let (line, _, _) = frame(|u, _| (u != 40).then_some(0.0));
        assert_eq!(depth_frame(&line), Some([40, 0, 41, 240]));
    }

    #[test]
    fn a_nearer_thing_beside_an_object_occludes_that_side_and_the_floor_before_it_does_not() {
        // The front of an object 3 m away, standing on the floor (its foot at row 80 + 200 · 1.4 / 3 = 173.3), in
        // columns [60, 100) and rows [40, 174); its median depth is 3.3 m (it is deep). A post 1.5 m away fills the
        // columns right of it.
        let object = |u: u32, v: u32| ((60..100).contains(&u) && (40..174).contains(&v)).then_some(3.0);
        let post = |u: u32, from: u32| move |v: u32| ((100..130).contains(&u) && v >= from).then_some(1.5);
        let (depth, k, canonical) = frame(|u, v| object(u, v).or_else(|| post(u, 0)(v)));
        let o = ObjectExtent { bbox_px: [60.0, 40.0, 100.0, 174.0], median_depth_m: 3.3, bottom_m: 0.0, sigma_m: 0.01 };
        let occ = occlusion(&depth, &k, &canonical, &o);
        assert_eq!(occ.right, Some(1.0), "{occ:?}");
        // Left and above: the wall, further away, and the floor beside its foot.
        assert_eq!((occ.left, occ.top), (Some(0.0), Some(0.0)), "{occ:?}");
        // Below: the floor, 2.8–2.9 m away, nearer than the object, but not above its base.
        assert!(floor_at(176, 1.4) < 3.0 && floor_at(179, 1.4) > 2.7);
        assert_eq!(occ.bottom, Some(0.0), "{occ:?}");
        assert!(occ.any_side_reaches(0.5) && !Occlusion { right: Some(0.4), ..occ }.any_side_reaches(0.5));
        // Half of its right side behind the post: half of the right band is in front of it.
        let (depth, k, canonical) = frame(|u, v| object(u, v).or_else(|| post(u, 107)(v)));
        let half = occlusion(&depth, &k, &canonical, &o).right.unwrap();
        assert!((half - 0.5).abs() < 0.02, "{half}");
        // The object on a plinth 0.3 m high that reaches 0.5 m out in front of it (foot at row 153.3): the plinth's
        // top is nearer, at the object's base, so it is not in front of the object.
        let lifted = |u: u32, v: u32| ((60..100).contains(&u) && (40..154).contains(&v)).then_some(3.0);
        let plinth = |u: u32, v: u32| {
            let top = floor_at(v, 1.1);
            ((55..105).contains(&u) && v >= 154 && top > 2.5).then_some(top)
        };
        let (depth, k, canonical) = frame(|u, v| lifted(u, v).or_else(|| plinth(u, v)));
        let on_plinth = ObjectExtent { bbox_px: [60.0, 40.0, 100.0, 154.0], bottom_m: 0.3, ..o };
        let occ = occlusion(&depth, &k, &canonical, &on_plinth);
        assert!(floor_at(156, 1.1) < 3.0);
        assert_eq!(occ.bottom, Some(0.0), "{occ:?}");
    }

    #[test]
    fn each_band_lies_2_to_6_pixels_outside_its_side() {
        // The object of the test above; a post 1.5 m away painted on exactly the gap (2 pixels) next to one side,
        // then on exactly the band beyond it (4 pixels): 0, then 1, on that side only.
        let object = |u: u32, v: u32| ((60..100).contains(&u) && (40..174).contains(&v)).then_some(3.0);
        let o = ObjectExtent { bbox_px: [60.0, 40.0, 100.0, 174.0], median_depth_m: 3.3, bottom_m: 0.0, sigma_m: 0.01 };
        let along_rows = 40..174;
        let along_columns = 60..100;
        // Per side: the columns (left, right) or rows (top, bottom) of its gap and of its band.
        type Side = (&'static str, [std::ops::Range<u32>; 2], fn(&Occlusion) -> Option<f32>);
        let sides: [Side; 4] = [
            ("left", [58..60, 54..58], |o| o.left),
            ("top", [38..40, 34..38], |o| o.top),
            ("right", [100..102, 102..106], |o| o.right),
            ("bottom", [174..176, 176..180], |o| o.bottom),
        ];
        for (i, (name, [gap, band], side)) in sides.iter().enumerate() {
            for (strip, want) in [(gap, 0.0), (band, 1.0)] {
                let (depth, k, canonical) = frame(|u, v| {
                    let on = match i % 2 {
                        0 => strip.contains(&u) && along_rows.contains(&v),
                        _ => strip.contains(&v) && along_columns.contains(&u),
                    };
                    object(u, v).or(on.then_some(1.5))
                });
                let occ = occlusion(&depth, &k, &canonical, &o);
                assert_eq!(side(&occ), Some(want), "{name} {strip:?}: {occ:?}");
                let others = sides.iter().filter(|s| s.0 != *name).map(|s| s.2(&occ));
                assert!(others.into_iter().all(|f| f == Some(0.0)), "{name} {strip:?}: {occ:?}");
            }
        }
    }

    #[test]
    fn a_median_a_rounding_away_gives_the_same_fractions() {
        // A post exactly 10 cm nearer than the object's median, a tie with the stored depth: medians one or two f32
        // steps apart, as another backend may give them, see the same pixels.
        let object = |u: u32, v: u32| ((60..100).contains(&u) && (40..174).contains(&v)).then_some(2.0);
        let (depth, k, canonical) = frame(|u, v| object(u, v).or(((100..130).contains(&u)).then_some(1.9)));
        let o = ObjectExtent { bbox_px: [60.0, 40.0, 100.0, 174.0], median_depth_m: 2.0, bottom_m: 0.0, sigma_m: 0.01 };
        let step = |x: f32, by: i32| f32::from_bits((x.to_bits() as i32 + by) as u32);
        let want = occlusion(&depth, &k, &canonical, &o);
        assert_eq!(want.right, Some(0.0), "a tie is not nearer");
        for by in [-2, -1, 1, 2] {
            let moved = ObjectExtent { median_depth_m: step(2.0, by), ..o };
            assert_eq!(occlusion(&depth, &k, &canonical, &moved), want, "{by}");
        }
    }

    #[test]
    fn sides_off_the_image_or_without_depth_have_no_fraction() {
        let (depth, k, canonical) = frame(|u, _| (u < 20).then_some(0.0));
        let o = ObjectExtent { bbox_px: [1.0, 0.0, 60.0, 50.0], median_depth_m: 3.0, bottom_m: 0.0, sigma_m: 0.01 };
        let occ = occlusion(&depth, &k, &canonical, &o);
        // No column left of the box, no row above it; the right band has depth.
        assert_eq!((occ.left, occ.top), (None, None), "{occ:?}");
        assert_eq!(occ.right, Some(0.0));
        // The band below covers columns 1..60, of which 1..20 have no depth: still enough samples.
        assert_eq!(occ.bottom, Some(0.0));
        // Without a box, or with a box of no pixel, nothing is measured.
        let none = ObjectExtent { bbox_px: [0.0; 4], ..o };
        assert_eq!(occlusion(&depth, &k, &canonical, &none), Occlusion::default());
        // A box one pixel high: its left and right bands have 4 pixels, too few.
        let thin = ObjectExtent { bbox_px: [80.0, 60.0, 90.0, 61.0], ..o };
        let occ = occlusion(&depth, &k, &canonical, &thin);
        assert_eq!((occ.left, occ.right), (None, None), "{occ:?}");
        assert!(occ.top.is_some() && occ.bottom.is_some(), "{occ:?}");
    }
}
