//! K1: unproject valid depth pixels to points in the camera frame, for the whole frame and grouped per object.
//!
//! Output order is stable (row-major pixel order; objects in their given order), so every backend can produce
//! byte-comparable buffers with prefix sums instead of atomic counters.

use rayon::prelude::*;

use super::{Intrinsics, Point3, SharedSlice};

/// A depth map in its stored representation. 16-bit depth stays 16-bit (half the bytes to move).
#[derive(Clone, Debug)]
pub enum DepthData {
    /// Integer depth: metres = value / `units_per_meter`. 0 is always invalid, and so is `invalid_value` if set.
    U16 { values: Vec<u16>, units_per_meter: f32, invalid_value: Option<u16> },
    /// Float depth in metres; non-finite and non-positive values are invalid.
    F32 { values: Vec<f32> },
}

/// A depth map of `width × height` pixels, row-major.
#[derive(Clone, Debug)]
pub struct DepthImage {
    pub width: u32,
    pub height: u32,
    pub data: DepthData,
}

impl DepthImage {
    /// Number of pixels.
    pub fn len(&self) -> usize {
        self.width as usize * self.height as usize
    }

    /// True when the image has no pixels.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Depth of pixel `index` in metres, or `None` when the pixel is invalid.
    #[inline]
    pub fn depth_m(&self, index: usize) -> Option<f32> {
        match &self.data {
            DepthData::U16 { values, units_per_meter, invalid_value } => {
                let v = values[index];
                (v != 0 && Some(v) != *invalid_value).then(|| f32::from(v) / units_per_meter)
            }
            DepthData::F32 { values } => {
                let v = values[index];
                (v.is_finite() && v > 0.0).then_some(v)
            }
        }
    }

    /// Whether any pixel is valid (stops at the first).
    pub fn any_valid(&self) -> bool {
        (0..self.len()).into_par_iter().with_min_len(1 << 14).any(|i| self.depth_m(i).is_some())
    }

    /// Counts the valid pixels.
    pub fn count_valid(&self) -> usize {
        (0..self.len()).into_par_iter().with_min_len(1 << 14).filter(|&i| self.depth_m(i).is_some()).count()
    }
}

/// Points with the pixel each came from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PointCloud {
    pub points_in_camera: Vec<Point3>,
    /// Pixel index `v * width + u` of each point.
    pub pixels: Vec<u32>,
}

impl PointCloud {
    pub fn len(&self) -> usize {
        self.points_in_camera.len()
    }
    pub fn is_empty(&self) -> bool {
        self.points_in_camera.is_empty()
    }
}

/// Per-column and per-row ray factors: `x = z * ray_x[u]`, `y = z * ray_y[v]`.
struct Rays {
    ray_x: Vec<f32>,
    ray_y: Vec<f32>,
}

/// The per-column and per-row ray factors `(ray_x, ray_y)` of K1 (f64 arithmetic, rounded once to f32), shared
/// with the GPU backends so that every backend multiplies by the very same factors.
pub fn ray_factors(k: &Intrinsics) -> (Vec<f32>, Vec<f32>) {
    let ray_x = (0..k.width).map(|u| ray_factor(u, k.cx, k.fx)).collect();
    let ray_y = (0..k.height).map(|v| ray_factor(v, k.cy, k.fy)).collect();
    (ray_x, ray_y)
}

/// One of K1's ray factors: `(pixel − centre) / focal`, in f64, rounded once to f32.
#[inline]
pub fn ray_factor(pixel: u32, centre: f64, focal: f64) -> f32 {
    ((f64::from(pixel) - centre) / focal) as f32
}

impl Rays {
    fn new(k: &Intrinsics) -> Self {
        let (ray_x, ray_y) = ray_factors(k);
        Rays { ray_x, ray_y }
    }

    #[inline]
    fn point(&self, u: usize, v: usize, z: f32) -> Point3 {
        [z * self.ray_x[u], z * self.ray_y[v], z]
    }
}

/// K1 for the whole frame: every valid depth pixel, in row-major order.
///
/// The depth image and intrinsics must agree in size (the frame loader checks this and reports it as an error).
pub fn unproject_depth(depth: &DepthImage, k: &Intrinsics) -> PointCloud {
    debug_assert_eq!((depth.width, depth.height), (k.width, k.height));
    let rays = Rays::new(k);
    let w = depth.width as usize;
    const ROWS_PER_TASK: usize = 16;
    let chunks: Vec<(Vec<Point3>, Vec<u32>)> = (0..depth.height as usize)
        .into_par_iter()
        .step_by(ROWS_PER_TASK)
        .map(|v0| {
            let v1 = (v0 + ROWS_PER_TASK).min(depth.height as usize);
            let mut pts = Vec::with_capacity((v1 - v0) * w);
            let mut pix = Vec::with_capacity((v1 - v0) * w);
            for v in v0..v1 {
                for u in 0..w {
                    let i = v * w + u;
                    if let Some(z) = depth.depth_m(i) {
                        pts.push(rays.point(u, v, z));
                        pix.push(i as u32);
                    }
                }
            }
            (pts, pix)
        })
        .collect();
    let n: usize = chunks.iter().map(|c| c.0.len()).sum();
    let mut cloud = PointCloud { points_in_camera: Vec::with_capacity(n), pixels: Vec::with_capacity(n) };
    for (p, i) in chunks {
        cloud.points_in_camera.extend_from_slice(&p);
        cloud.pixels.extend_from_slice(&i);
    }
    cloud
}

/// Surface normals of the points of `cloud` listed in `indices` (all points when `None`); `cloud` must come from
/// `depth` through [`unproject_depth`]. From the organized depth image: the cross product of the horizontal and vertical differences between the nearest valid
/// pixels 2 to `max_step_px` pixels away on each side. A normal is `[0, 0, 0]` (unknown) when a side has no valid
/// pixel in reach or a neighbour's depth differs by more than 10% (a depth edge). Normals are unit length, with
/// an arbitrary sign.
pub fn estimate_normals(
    depth: &DepthImage,
    k: &Intrinsics,
    cloud: &PointCloud,
    indices: Option<&[u32]>,
    max_step_px: u32,
) -> Vec<Point3> {
    let rays = Rays::new(k);
    let (w, h) = (depth.width as i64, depth.height as i64);
    let max_step = i64::from(max_step_px.max(2));
    let neighbour = |u: i64, v: i64, du: i64, dv: i64, z0: f32| -> Option<Point3> {
        for s in 2..=max_step {
            let (x, y) = (u + du * s, v + dv * s);
            if x < 0 || y < 0 || x >= w || y >= h {
                return None;
            }
            if let Some(z) = depth.depth_m((y * w + x) as usize) {
                return ((z - z0).abs() <= 0.1 * z0).then(|| rays.point(x as usize, y as usize, z));
            }
        }
        None
    };
    let normal_of = |i: usize| -> Point3 {
        let (pix, p) = (cloud.pixels[i], cloud.points_in_camera[i]);
        let (u, v) = (i64::from(pix) % w, i64::from(pix) / w);
        let z = p[2];
        let sides =
            (neighbour(u, v, 1, 0, z), neighbour(u, v, -1, 0, z), neighbour(u, v, 0, 1, z), neighbour(u, v, 0, -1, z));
        let (Some(r), Some(l), Some(d), Some(t)) = sides else { return [0.0; 3] };
        let a = [r[0] - l[0], r[1] - l[1], r[2] - l[2]];
        let b = [d[0] - t[0], d[1] - t[1], d[2] - t[2]];
        let n = [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
        let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
        if len > 0.0 && len.is_finite() {
            [n[0] / len, n[1] / len, n[2] / len]
        } else {
            [0.0; 3]
        }
    };
    match indices {
        Some(idx) => idx.par_iter().with_min_len(1 << 10).map(|&i| normal_of(i as usize)).collect(),
        None => (0..cloud.len()).into_par_iter().with_min_len(1 << 12).map(normal_of).collect(),
    }
}

/// Which pixels belong to an object.
#[derive(Clone, Debug, PartialEq)]
pub enum ObjectRegion {
    /// Pixels whose value in the instance-label image equals `instance_id`.
    Instance { instance_id: u32 },
    /// Pixels whose centre lies inside the box `[x0, y0, x1, y1)` (pixel units, already clipped to the image).
    Box { x0: u32, y0: u32, x1: u32, y1: u32 },
}

/// Points of all objects of a frame, flat, with prefix-sum offsets: object `i` owns
/// `points_in_camera[offsets[i]..offsets[i + 1]]`. An object's points are taken out as a view of the frame's buffer,
/// without a copy ([`GroupedPoints::object_points_shared`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupedPoints {
    pub points_in_camera: SharedSlice<Point3>,
    pub pixels: SharedSlice<u32>,
    pub offsets: Vec<u32>,
}

impl GroupedPoints {
    /// Number of objects.
    pub fn objects(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Points of object `i`.
    pub fn object_points(&self, i: usize) -> &[Point3] {
        &self.points_in_camera[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Pixel indices of object `i`.
    pub fn object_pixels(&self, i: usize) -> &[u32] {
        &self.pixels[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Points of object `i`, sharing this frame's buffer (no copy; the view keeps the whole buffer alive); `None`
    /// when the offsets do not fit the points.
    pub fn object_points_shared(&self, i: usize) -> Option<SharedSlice<Point3>> {
        let (a, b) = (*self.offsets.get(i)?, *self.offsets.get(i + 1)?);
        self.points_in_camera.slice(a as usize..b as usize)
    }

    /// Whether the offsets describe `objects` objects over the points and pixels of an image of `image_pixels`
    /// pixels: `objects + 1` offsets from 0, not decreasing, the last one the number of points and of pixels, and
    /// every pixel index in the image. `Err` says what does not fit.
    pub fn check(&self, objects: usize, image_pixels: usize) -> Result<(), String> {
        let o = &self.offsets;
        let (points, pixels) = (self.points_in_camera.len(), self.pixels.len());
        if o.len() != objects + 1 || o[0] != 0 || o.windows(2).any(|w| w[0] > w[1]) {
            return Err(format!("the grouping's {} offsets do not describe {objects} objects", o.len()));
        }
        if o[objects] as usize != points || points != pixels {
            let last = o[objects];
            return Err(format!("the grouping ends at point {last} but holds {points} points and {pixels} pixels"));
        }
        if let Some(p) = self.pixels.iter().find(|&&p| p as usize >= image_pixels) {
            return Err(format!("the grouping holds pixel {p}, outside the image's {image_pixels} pixels"));
        }
        Ok(())
    }
}

/// K1 per object: the valid depth pixels of each region, unprojected, in row-major order per object.
///
/// `instance_labels` is the instance-label image (row-major, same size as the depth) and is required when any
/// region is an [`ObjectRegion::Instance`]; a pixel may belong to several boxes, and then to each of them.
pub fn unproject_objects(
    depth: &DepthImage,
    k: &Intrinsics,
    instance_labels: Option<&[u32]>,
    regions: &[ObjectRegion],
) -> GroupedPoints {
    let rays = Rays::new(k);
    let w = depth.width as usize;
    // Instance pixels of every region in one pass over the label image (ids can repeat across regions).
    let mut instance_pixels: Vec<Vec<u32>> = vec![Vec::new(); regions.len()];
    if let Some(labels) = instance_labels {
        let mut regions_of: rustc_hash::FxHashMap<u32, Vec<usize>> = rustc_hash::FxHashMap::default();
        for (r, region) in regions.iter().enumerate() {
            if let ObjectRegion::Instance { instance_id } = region {
                regions_of.entry(*instance_id).or_default().push(r);
            }
        }
        if !regions_of.is_empty() {
            for (i, &l) in labels.iter().enumerate() {
                if l == 0 {
                    continue;
                }
                if let Some(rs) = regions_of.get(&l) {
                    for &r in rs {
                        instance_pixels[r].push(i as u32);
                    }
                }
            }
        }
    }
    let per_object: Vec<(Vec<Point3>, Vec<u32>)> = regions
        .par_iter()
        .zip(&instance_pixels)
        .map(|(region, pixels)| {
            let mut pts = Vec::new();
            let mut pix = Vec::new();
            let mut push = |u: usize, v: usize| {
                let i = v * w + u;
                if let Some(z) = depth.depth_m(i) {
                    pts.push(rays.point(u, v, z));
                    pix.push(i as u32);
                }
            };
            match *region {
                ObjectRegion::Instance { .. } => {
                    for &i in pixels {
                        push(i as usize % w, i as usize / w);
                    }
                }
                ObjectRegion::Box { x0, y0, x1, y1 } => {
                    for v in y0 as usize..(y1 as usize).min(depth.height as usize) {
                        for u in x0 as usize..(x1 as usize).min(w) {
                            push(u, v);
                        }
                    }
                }
            }
            (pts, pix)
        })
        .collect();
    let total = per_object.iter().map(|(p, _)| p.len()).sum();
    let (mut points, mut pixels) = (Vec::with_capacity(total), Vec::with_capacity(total));
    let mut offsets = Vec::with_capacity(regions.len() + 1);
    offsets.push(0);
    for (p, i) in per_object {
        points.extend_from_slice(&p);
        pixels.extend_from_slice(&i);
        offsets.push(points.len() as u32);
    }
    GroupedPoints { points_in_camera: points.into(), pixels: pixels.into(), offsets }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grouping_is_checked_against_its_objects() {
        let grouped = |offsets: Vec<u32>, points: usize, pixels: usize| GroupedPoints {
            points_in_camera: vec![[0.0; 3]; points].into(),
            pixels: vec![0; pixels].into(),
            offsets,
        };
        assert_eq!(grouped(vec![0, 2, 2, 5], 5, 5).check(3, 1), Ok(()));
        assert_eq!(grouped(vec![0], 0, 0).check(0, 0), Ok(()));
        let g = grouped(vec![0, 2, 2, 5], 5, 5);
        assert_eq!(g.object_points_shared(2).map(|p| p.len()), Some(3));
        assert!(g.object_points_shared(3).is_none());
        for (g, objects) in [
            (grouped(vec![0, 2, 2, 5], 5, 5), 2), // an object too many
            (grouped(vec![1, 2, 5], 5, 5), 2),    // not from 0
            (grouped(vec![0, 3, 2, 5], 5, 5), 3), // decreasing
            (grouped(vec![0, 2, 6], 5, 5), 2),    // past the points
            (grouped(vec![0, 2, 4], 5, 5), 2),    // short of them
            (grouped(vec![0, 2, 5], 5, 4), 2),    // pixels short
            (grouped(Vec::new(), 0, 0), 0),       // no offsets
        ] {
            assert!(g.check(objects, 1).is_err(), "{g:?} for {objects} objects");
        }
        // A pixel index outside the image (pixel 0 of a 0-pixel image).
        let err = grouped(vec![0, 2, 5], 5, 5).check(2, 0).unwrap_err();
        assert!(err.contains("pixel 0, outside the image's 0 pixels"), "{err}");
    }

    #[test]
    fn objects_group_their_pixels_in_row_major_order() {
        // 4x3 image, depth 1 m except one invalid pixel; ids: 1 on the left column pair, 2 on the right.
        let k = Intrinsics { fx: 2.0, fy: 2.0, cx: 1.5, cy: 1.0, width: 4, height: 3 };
        let mut values = vec![1000u16; 12];
        values[5] = 0;
        let depth = DepthImage {
            width: 4,
            height: 3,
            data: DepthData::U16 { values, units_per_meter: 1000.0, invalid_value: None },
        };
        let labels: Vec<u32> = (0..12).map(|i| if i % 4 < 2 { 1 } else { 2 }).collect();
        let regions = [
            ObjectRegion::Instance { instance_id: 2 },
            ObjectRegion::Instance { instance_id: 1 },
            ObjectRegion::Box { x0: 1, y0: 1, x1: 3, y1: 3 },
            ObjectRegion::Instance { instance_id: 7 },
        ];
        let g = unproject_objects(&depth, &k, Some(&labels), &regions);
        assert_eq!(g.objects(), 4);
        assert_eq!(g.object_pixels(0), [2, 3, 6, 7, 10, 11]);
        assert_eq!(g.object_pixels(1), [0, 1, 4, 8, 9]); // pixel 5 has no depth
        assert_eq!(g.object_pixels(2), [6, 9, 10]); // a pixel may belong to a box and a mask
        assert!(g.object_pixels(3).is_empty());
        assert_eq!(g.offsets, [0, 6, 11, 14, 14]);
        // Points are the unprojection of their pixels.
        let p = g.object_points(0)[0];
        assert_eq!(p, [(2.0 - 1.5) / 2.0, (0.0 - 1.0) / 2.0, 1.0]);
    }
}
