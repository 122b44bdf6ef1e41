//! K2: ground-plane RANSAC with an up-direction prior, counter-based hypotheses and least-squares refinement.
//!
//! Hypothesis `h` of a frame is the plane through the points with indices
//! `draw_index(seed, frame_key, h, d, n)` for `d = 0, 1, 2` (see [`super::rng`]). It is *admissible* when the
//! three points are distinct and not collinear, and when its normal, oriented towards the camera, is within
//! `max_tilt_deg` of the up prior (default: the camera's −y, i.e. "up" in the image). Walls and ceilings fail the
//! prior; floors and table tops pass it. Each admissible hypothesis is scored by the number of inliers among a
//! fixed, evenly strided subsample of `score_samples` points (all points when the frame has fewer; see
//! [`score_sample_indices`]). When surface normals of the subsample are given (estimated from the organized depth
//! image in K1), an inlier must also have a normal within `normal_agreement_deg` of the plane's (either sign);
//! points of unknown normal then do not count. This keeps a plane that slices through cabinets and chair backs from
//! collecting their edges as support. The winner is the highest score, ties going to the lowest hypothesis index.
//! It is then refined by total least squares (the smallest eigenvector of the covariance) over the subsample
//! points that pass the same tests **and** belong to the largest spatially connected piece of that support
//! (voxels of `connect_voxel_m`, 26-neighbourhood): a ±2 cm band also catches the tops of distant objects that
//! happen to lie on the plane's extension, and their long lever arm would tilt the fit. The final inlier count is
//! taken over all points by distance alone (the figure the workload compares).

use nalgebra::{Matrix3, SymmetricEigen};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use rustc_hash::FxHashMap;

use super::radix::floor_i32;
use super::rng::draw_index;
use super::union_find::UnionFind;
use super::{cross, dot, normalize, sub, to_f64, Plane, Point3};

/// Parameters of the ground-plane search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RansacParams {
    /// Number of hypotheses drawn.
    pub hypotheses: u32,
    /// Inlier band half-width in metres.
    pub inlier_threshold_m: f32,
    /// Size of the strided subsample used to score hypotheses (0 = score on all points).
    pub score_samples: u32,
    /// Up direction expected in the camera frame (unit vector). OpenCV camera: up is −y.
    pub up_prior: [f32; 3],
    /// Largest admissible angle between the plane normal and the up prior, in degrees.
    pub max_tilt_deg: f32,
    /// With normals: largest angle between a point's normal and the plane's for it to count as support.
    pub normal_agreement_deg: f32,
    /// Voxel size for the connectivity of the support used in refinement (0 = no connectivity test).
    pub connect_voxel_m: f32,
    /// Least-squares refinement rounds over all points.
    pub refine_iterations: u32,
    /// The ground counts as found only with at least this share of all points as inliers...
    pub min_inlier_fraction: f32,
    /// ...at least this many inliers...
    pub min_inliers: u32,
    /// ...and support spread over an area, not along a line: the refined fit's tilt uncertainty (see
    /// [`PlaneFit::tilt_uncertainty_deg`]) at most this many degrees. A plane slicing a wall collects a strip.
    pub max_tilt_uncertainty_deg: f32,
    /// Seed of the counter-based RNG.
    pub seed: u32,
}

impl Default for RansacParams {
    fn default() -> Self {
        RansacParams {
            hypotheses: 1000,
            inlier_threshold_m: 0.02,
            score_samples: 16_384,
            up_prior: [0.0, -1.0, 0.0],
            max_tilt_deg: 60.0,
            normal_agreement_deg: 30.0,
            connect_voxel_m: 0.2,
            refine_iterations: 3,
            min_inlier_fraction: 0.03,
            min_inliers: 300,
            max_tilt_uncertainty_deg: 10.0,
            seed: 0,
        }
    }
}

impl RansacParams {
    /// Checks that the parameters make sense (a zero up prior or a negative band would silently find nothing).
    pub fn validate(&self) -> std::result::Result<(), String> {
        let up = self.up_prior;
        let up_len = (up[0] * up[0] + up[1] * up[1] + up[2] * up[2]).sqrt();
        if !(up_len.is_finite() && up_len > 0.0) {
            return Err(format!("ransac.up_prior must be a non-zero vector, got {up:?}"));
        }
        let positive = [
            ("ransac.inlier_threshold_m", self.inlier_threshold_m),
            ("ransac.connect_voxel_m", self.connect_voxel_m.max(f32::MIN_POSITIVE)),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{name} must be positive, got {v}"));
            }
        }
        for (name, v) in [
            ("ransac.max_tilt_deg", self.max_tilt_deg),
            ("ransac.normal_agreement_deg", self.normal_agreement_deg),
            ("ransac.max_tilt_uncertainty_deg", self.max_tilt_uncertainty_deg),
        ] {
            if !(0.0..=90.0).contains(&v) {
                return Err(format!("{name} must be within 0..=90 degrees, got {v}"));
            }
        }
        if !(0.0..=1.0).contains(&self.min_inlier_fraction) {
            return Err(format!("ransac.min_inlier_fraction must be within 0..=1, got {}", self.min_inlier_fraction));
        }
        Ok(())
    }
}

/// The result of the plane search.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlaneFit {
    /// The refined plane, normal oriented towards the camera.
    pub plane: Plane,
    /// Index of the winning hypothesis.
    pub hypothesis: u32,
    /// Its score (inliers in the subsample).
    pub score: u32,
    /// Inliers of the refined plane among all points.
    pub inliers: u32,
    /// Whether the fit was refined and passes the support tests (otherwise it is reported but not used as
    /// ground).
    pub accepted: bool,
    /// Standard deviations of the supporting points along the normal, the plane's minor and its major axis
    /// (from the last refinement; zeros when no refinement ran).
    pub spread_m: [f64; 3],
}

impl PlaneFit {
    /// How well the support pins the normal down: `atan(thickness / minor spread)` in degrees. A floor seen over
    /// metres is a fraction of a degree; a table seen as a narrow strip at the image edge can be several degrees.
    pub fn tilt_uncertainty_deg(&self) -> f64 {
        if self.spread_m[1] > 0.0 {
            self.spread_m[0].atan2(self.spread_m[1]).to_degrees()
        } else {
            90.0
        }
    }
}

/// The indices of the three points of hypothesis `h` among `n` points (the counter-based draws of
/// [`super::rng`]; `shaders/rng.wgsl` draws the very same ones on the device).
pub fn hypothesis_indices(n: u32, frame_key: u32, h: u32, params: &RansacParams) -> [u32; 3] {
    [0, 1, 2].map(|d| draw_index(params.seed, frame_key, h, d, n))
}

/// The plane of hypothesis `h`, oriented towards the camera, or `None` when it is degenerate or fails the prior.
pub fn hypothesis_plane(points: &[Point3], frame_key: u32, h: u32, params: &RansacParams) -> Option<Plane> {
    let n = u32::try_from(points.len()).ok()?;
    if n < 3 {
        return None;
    }
    let idx = hypothesis_indices(n, frame_key, h, params);
    plane_through(idx, idx.map(|i| points[i as usize]), params)
}

/// The plane through the points `corners` (drawn as the points `indices`), oriented towards the camera, or `None`
/// when two indices coincide, the triangle is degenerate or the plane fails the prior. Built in f64 on the host
/// for every backend, so all of them test the very same planes.
pub fn plane_through(indices: [u32; 3], corners: [Point3; 3], params: &RansacParams) -> Option<Plane> {
    let [i0, i1, i2] = indices;
    if i0 == i1 || i1 == i2 || i0 == i2 {
        return None;
    }
    let [p0, p1, p2] = corners.map(to_f64);
    let normal = cross(sub(p1, p0), sub(p2, p0));
    // Reject near-collinear triples: the normal of a sliver triangle is noise.
    let area2 = dot(normal, normal);
    let scale = dot(sub(p1, p0), sub(p1, p0)).max(dot(sub(p2, p0), sub(p2, p0)));
    // Written to also reject NaN.
    if area2.is_nan() || area2 <= 1e-12 * scale * scale {
        return None;
    }
    let normal = normalize(normal)?;
    oriented_with_prior(normal, -dot(normal, p0), params)
}

/// Orients `normal · p + offset = 0` so the camera (origin) is on the positive side and applies the tilt prior.
fn oriented_with_prior(normal: [f64; 3], offset: f64, params: &RansacParams) -> Option<Plane> {
    let (normal, offset) =
        if offset < 0.0 { ([-normal[0], -normal[1], -normal[2]], -offset) } else { (normal, offset) };
    let up = normalize(to_f64(params.up_prior))?;
    let cos_tilt = dot(normal, up);
    let min_cos = f64::from(params.max_tilt_deg).to_radians().cos();
    (cos_tilt >= min_cos).then_some(Plane { normal, offset })
}

/// Indices of the scoring subsample: evenly strided over the point list.
pub fn score_sample_indices(n_points: usize, params: &RansacParams) -> Vec<u32> {
    let s = if params.score_samples == 0 { n_points } else { (params.score_samples as usize).min(n_points) };
    (0..s).map(|i| ((i as u64 * n_points as u64) / s as u64) as u32).collect()
}

/// Whether a point (with its normal, if normals are used) supports a plane: the test every backend applies, in
/// f32, with the plane rounded from f64 once. Keep in sync with `supports` in `shaders/ransac.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Support {
    /// `[a, b, c]` of `a·x + b·y + c·z + d = 0`.
    pub n: [f32; 3],
    pub d: f32,
    /// Inlier band half-width, metres.
    pub threshold: f32,
    /// Cosine of the normal agreement angle, or `None` to ignore normals.
    pub min_cos: Option<f32>,
}

impl Support {
    /// Distance to the plane only.
    pub fn band(plane: &Plane, threshold: f32) -> Self {
        Support { n: plane.normal.map(|v| v as f32), d: plane.offset as f32, threshold, min_cos: None }
    }

    /// The band and, `with_normals`, the normal agreement of `params`.
    pub fn new(plane: &Plane, threshold: f32, params: &RansacParams, with_normals: bool) -> Self {
        let min_cos = with_normals.then(|| params.normal_agreement_deg.to_radians().cos());
        Support { n: plane.normal.map(|v| v as f32), d: plane.offset as f32, threshold, min_cos }
    }

    /// Whether `p` (with `normal`, when normals are tested) supports the plane.
    #[inline]
    pub fn test(&self, p: &Point3, normal: Option<&Point3>) -> bool {
        let [a, b, c] = self.n;
        if (a * p[0] + b * p[1] + c * p[2] + self.d).abs() > self.threshold {
            return false;
        }
        match (self.min_cos, normal) {
            (Some(min_cos), Some(m)) => (a * m[0] + b * m[1] + c * m[2]).abs() >= min_cos,
            _ => true,
        }
    }
}

/// The scoring subsample of a frame: its points and (if given) their normals.
struct Sample {
    points: Vec<Point3>,
    normals: Option<Vec<Point3>>,
}

impl Sample {
    fn new(points: &[Point3], sample_normals: Option<&[Point3]>, params: &RansacParams) -> Self {
        let idx = score_sample_indices(points.len(), params);
        let normals = sample_normals.filter(|n| n.len() == idx.len()).map(<[Point3]>::to_vec);
        Sample { points: idx.iter().map(|&i| points[i as usize]).collect(), normals }
    }

    fn count(&self, s: &Support) -> u32 {
        match &self.normals {
            Some(n) => self.points.iter().zip(n).filter(|(p, m)| s.test(p, Some(m))).count() as u32,
            None => self.points.iter().filter(|p| s.test(p, None)).count() as u32,
        }
    }
}

/// Scores of every hypothesis (0 for inadmissible ones). Exposed so GPU backends can be checked hypothesis by
/// hypothesis against it. `sample_normals`, when given, holds the normal of each point of the scoring subsample
/// ([`score_sample_indices`]), `[0, 0, 0]` for unknown.
pub fn score_hypotheses(
    points: &[Point3],
    sample_normals: Option<&[Point3]>,
    frame_key: u32,
    params: &RansacParams,
) -> Vec<u32> {
    let sample = Sample::new(points, sample_normals, params);
    score_sample(points, &sample, frame_key, params)
}

fn score_sample(points: &[Point3], sample: &Sample, frame_key: u32, params: &RansacParams) -> Vec<u32> {
    (0..params.hypotheses)
        .into_par_iter()
        .with_min_len(8)
        .map(|h| match hypothesis_plane(points, frame_key, h, params) {
            None => 0,
            Some(plane) => {
                sample.count(&Support::new(&plane, params.inlier_threshold_m, params, sample.normals.is_some()))
            }
        })
        .collect()
}

/// Counts the points within the inlier band of `plane`.
pub fn count_inliers(points: &[Point3], plane: &Plane, threshold_m: f32) -> u32 {
    let s = Support::band(plane, threshold_m);
    points.par_iter().with_min_len(1 << 14).filter(|p| s.test(p, None)).count() as u32
}

/// Inlier mask of `plane` over all points.
pub fn inlier_mask(points: &[Point3], plane: &Plane, threshold_m: f32) -> Vec<bool> {
    let s = Support::band(plane, threshold_m);
    points.par_iter().with_min_len(1 << 14).map(|p| s.test(p, None)).collect()
}

/// Chunk length of deterministic parallel float reductions.
pub(crate) const REDUCE_CHUNK: usize = 8192;

/// Sum, sum of outer products and count of the inliers of a plane (f64 accumulation).
#[derive(Clone, Copy, Default)]
struct Moments {
    n: f64,
    s: [f64; 3],
    ss: [f64; 6], // xx, xy, xz, yy, yz, zz
}

impl Moments {
    fn add(mut self, p: [f64; 3]) -> Self {
        self.n += 1.0;
        for (s, v) in self.s.iter_mut().zip(p) {
            *s += v;
        }
        self.ss[0] += p[0] * p[0];
        self.ss[1] += p[0] * p[1];
        self.ss[2] += p[0] * p[2];
        self.ss[3] += p[1] * p[1];
        self.ss[4] += p[1] * p[2];
        self.ss[5] += p[2] * p[2];
        self
    }
    fn merge(mut self, o: Self) -> Self {
        self.n += o.n;
        for k in 0..3 {
            self.s[k] += o.s[k];
        }
        for k in 0..6 {
            self.ss[k] += o.ss[k];
        }
        self
    }
}

/// Total-least-squares plane through the points that support `plane` (within the band and, with normals, of
/// agreeing normal) and form its largest connected piece, with their standard deviations along the new normal and
/// the plane's minor and major axes; `None` when fewer than 3. `normals`, if given, has one entry per point.
pub fn refine_plane(
    points: &[Point3],
    normals: Option<&[Point3]>,
    plane: &Plane,
    threshold_m: f32,
    params: &RansacParams,
) -> Option<(Plane, [f64; 3])> {
    let normals = normals.filter(|n| n.len() == points.len());
    let s = Support::new(plane, threshold_m, params, normals.is_some());
    refine_from_support(points, support_indices(points, normals, &s), plane, params)
}

/// Indices (ascending) of the points that pass `test` (`normals`, if given, has one entry per point).
pub fn support_indices(points: &[Point3], normals: Option<&[Point3]>, test: &Support) -> Vec<u32> {
    (0..points.len() as u32)
        .into_par_iter()
        .with_min_len(1 << 14)
        .filter(|&i| test.test(&points[i as usize], normals.map(|n| &n[i as usize])))
        .collect()
}

/// [`refine_plane`] from the support already found (indices into `points`, ascending; a device backend finds it):
/// its largest connected piece, then the total-least-squares fit.
pub fn refine_from_support(
    points: &[Point3],
    support: Vec<u32>,
    plane: &Plane,
    params: &RansacParams,
) -> Option<(Plane, [f64; 3])> {
    let support = largest_connected(points, support, params.connect_voxel_m);
    // Centre coordinates on the current plane's foot point to keep the covariance well conditioned.
    let o = [-plane.normal[0] * plane.offset, -plane.normal[1] * plane.offset, -plane.normal[2] * plane.offset];
    // Fixed chunks summed in order: the same bits whatever the thread count.
    let m = support
        .par_chunks(REDUCE_CHUNK)
        .map(|c| c.iter().fold(Moments::default(), |m, &i| m.add(sub(to_f64(points[i as usize]), o))))
        .collect::<Vec<_>>()
        .into_iter()
        .fold(Moments::default(), Moments::merge);
    if m.n < 3.0 {
        return None;
    }
    let mean = [m.s[0] / m.n, m.s[1] / m.n, m.s[2] / m.n];
    let cov = |i: usize, j: usize, k: usize| m.ss[k] / m.n - mean[i] * mean[j];
    let c = Matrix3::new(
        cov(0, 0, 0),
        cov(0, 1, 1),
        cov(0, 2, 2),
        cov(0, 1, 1),
        cov(1, 1, 3),
        cov(1, 2, 4),
        cov(0, 2, 2),
        cov(1, 2, 4),
        cov(2, 2, 5),
    );
    let eig = SymmetricEigen::new(c);
    let mut order = [0usize, 1, 2];
    order.sort_by(|&i, &j| eig.eigenvalues[i].total_cmp(&eig.eigenvalues[j]));
    let spread = order.map(|i| eig.eigenvalues[i].max(0.0).sqrt());
    let k = order[0];
    let v = eig.eigenvectors.column(k);
    let mut normal = normalize([v[0], v[1], v[2]])?;
    // Keep the orientation of the plane being refined.
    if dot(normal, plane.normal) < 0.0 {
        normal = [-normal[0], -normal[1], -normal[2]];
    }
    let centroid = [mean[0] + o[0], mean[1] + o[1], mean[2] + o[2]];
    oriented_with_prior(normal, -dot(normal, centroid), params).map(|p| (p, spread))
}

/// The points (given by index, ascending) of the largest piece of `subset` whose voxels of side `voxel_m` touch
/// (26-neighbourhood); ties go to the piece holding the lowest index. `voxel_m <= 0` keeps everything.
pub fn largest_connected(points: &[Point3], subset: Vec<u32>, voxel_m: f32) -> Vec<u32> {
    if voxel_m.is_nan() || voxel_m <= 0.0 || subset.len() < 2 {
        return subset;
    }
    let inv = 1.0 / voxel_m;
    let keys: Vec<[i32; 3]> =
        subset.par_iter().with_min_len(1 << 14).map(|&i| points[i as usize].map(|v| floor_i32(v * inv))).collect();
    let mut cell_of_key: FxHashMap<[i32; 3], u32> = FxHashMap::default();
    let mut cell_count: Vec<u32> = Vec::new();
    let mut last: Option<([i32; 3], u32)> = None;
    let cells: Vec<u32> = keys
        .iter()
        .map(|k| {
            let next = cell_count.len() as u32;
            // Consecutive points (row-major pixels) usually share a cell: skip the hash lookup then.
            let c = match last {
                Some((lk, c)) if lk == *k => c,
                _ => *cell_of_key.entry(*k).or_insert(next),
            };
            last = Some((*k, c));
            if c == next {
                cell_count.push(0);
            }
            cell_count[c as usize] += 1;
            c
        })
        .collect();
    // A cell's root is its smallest index, i.e. the cell of the lowest point index.
    let mut sets = UnionFind::new(cell_count.len());
    for (key, &c) in &cell_of_key {
        for dx in -1..=1 {
            for dy in -1..=1 {
                for dz in -1..=1 {
                    if let Some(&d) = cell_of_key.get(&[key[0] + dx, key[1] + dy, key[2] + dz]) {
                        sets.union(c, d);
                    }
                }
            }
        }
    }
    let mut size = vec![0u32; cell_count.len()];
    for c in 0..cell_count.len() as u32 {
        size[sets.find(c) as usize] += cell_count[c as usize];
    }
    let best = (0..size.len()).max_by_key(|&r| (size[r], std::cmp::Reverse(r))).map_or(0, |r| r as u32);
    subset.into_iter().zip(cells).filter(|&(_, c)| sets.find(c) == best).map(|(i, _)| i).collect()
}

/// K2: finds the ground plane of a frame. `sample_normals` are the normals of the scoring subsample
/// ([`score_sample_indices`]; `[0, 0, 0]` = unknown), optional. Returns `None` when no admissible hypothesis
/// exists; a fit with too little support comes back with `accepted == false`.
pub fn fit_ground_plane(
    points: &[Point3],
    sample_normals: Option<&[Point3]>,
    frame_key: u32,
    params: &RansacParams,
) -> Option<PlaneFit> {
    let sample = Sample::new(points, sample_normals, params);
    let scores = score_sample(points, &sample, frame_key, params);
    fit_from_scores(points, &sample, frame_key, params, &scores)
}

/// The data-parallel parts of K2 after scoring (refinement support, final inlier count), which a GPU backend runs
/// on its device; [`fit_from_scores_on`] does the rest on the host.
pub trait GroundDevice {
    /// Indices (ascending) of the scoring-subsample points that pass `test` (with their normals when it uses them).
    fn sample_support(&self, test: &Support) -> Result<Vec<u32>, String>;
    /// How many of all the frame's points pass `test` (its band; normals are not used).
    fn count_inliers(&self, test: &Support) -> Result<u32, String>;
}

/// The CPU reference's [`GroundDevice`].
struct HostGround<'a> {
    points: &'a [Point3],
    sample: &'a Sample,
}

impl GroundDevice for HostGround<'_> {
    fn sample_support(&self, test: &Support) -> Result<Vec<u32>, String> {
        Ok(support_indices(&self.sample.points, self.sample.normals.as_deref(), test))
    }
    fn count_inliers(&self, test: &Support) -> Result<u32, String> {
        let s = Support { min_cos: None, ..*test };
        Ok(self.points.par_iter().with_min_len(1 << 14).filter(|p| s.test(p, None)).count() as u32)
    }
}

fn fit_from_scores(
    points: &[Point3],
    sample: &Sample,
    frame_key: u32,
    params: &RansacParams,
    scores: &[u32],
) -> Option<PlaneFit> {
    let device = HostGround { points, sample };
    let plane_of = |h| hypothesis_plane(points, frame_key, h, params);
    fit_from_scores_on(&device, plane_of, &sample.points, sample.normals.is_some(), points.len(), params, scores)
        .ok()
        .flatten()
}

/// The winner of `scores` (ties: the lowest hypothesis), its refinement and the acceptance tests, with the
/// data-parallel steps on `device`. `plane_of(h)` is hypothesis `h`'s plane, `sample_points` the scoring
/// subsample ([`score_sample_indices`]), `with_normals` whether the subsample has normals, `n_points` the frame's
/// point count. Every backend's K2 ends here (or in [`fit_from_scores_batch`], which this is for one frame), so they
/// agree on the winner and the acceptance rules.
pub fn fit_from_scores_on(
    device: &dyn GroundDevice,
    plane_of: impl Fn(u32) -> Option<Plane> + Sync,
    sample_points: &[Point3],
    with_normals: bool,
    n_points: usize,
    params: &RansacParams,
    scores: &[u32],
) -> Result<Option<PlaneFit>, String> {
    let frame = GroundFrame { plane_of: &plane_of, sample_points, with_normals, n_points, params, scores };
    let mut fits = fit_from_scores_batch(&OneFrame(device), &[frame])?;
    Ok(fits.pop().flatten())
}

/// One frame's K2 after scoring, for [`fit_from_scores_batch`] (the arguments of [`fit_from_scores_on`]).
pub struct GroundFrame<'a> {
    /// Hypothesis `h`'s plane (`None`: inadmissible).
    pub plane_of: &'a (dyn Fn(u32) -> Option<Plane> + Sync),
    /// The scoring subsample ([`score_sample_indices`]).
    pub sample_points: &'a [Point3],
    /// Whether the subsample has normals.
    pub with_normals: bool,
    /// The frame's point count.
    pub n_points: usize,
    pub params: &'a RansacParams,
    /// Every hypothesis' score.
    pub scores: &'a [u32],
}

/// The data-parallel parts of K2 after scoring for a batch of frames at once (a device backend answers each step
/// for every frame with one round trip). Each request names a frame (its index in the batch) and a test.
pub trait GroundBatchDevice {
    /// For each request, the indices (ascending) of that frame's scoring-subsample points that pass its test.
    fn sample_supports(&self, requests: &[(usize, Support)]) -> Result<Vec<Vec<u32>>, String>;
    /// For each request, how many of that frame's points pass its test's band (normals are not used).
    fn count_inliers(&self, requests: &[(usize, Support)]) -> Result<Vec<u32>, String>;
}

/// A one-frame [`GroundDevice`] as a batch device.
struct OneFrame<'a>(&'a dyn GroundDevice);

impl GroundBatchDevice for OneFrame<'_> {
    fn sample_supports(&self, requests: &[(usize, Support)]) -> Result<Vec<Vec<u32>>, String> {
        requests.iter().map(|(_, t)| self.0.sample_support(t)).collect()
    }
    fn count_inliers(&self, requests: &[(usize, Support)]) -> Result<Vec<u32>, String> {
        requests.iter().map(|(_, t)| self.0.count_inliers(t)).collect()
    }
}

/// [`fit_from_scores_on`] for a batch of frames in lockstep: each refinement round asks `device` for the support of
/// every frame still refining at once, then refines them on the host in parallel; the final inlier counts of every
/// frame come in one request. Frame by frame, the same winners, planes and acceptance as one frame at a time.
pub fn fit_from_scores_batch(
    device: &dyn GroundBatchDevice,
    frames: &[GroundFrame<'_>],
) -> Result<Vec<Option<PlaneFit>>, String> {
    struct State {
        hypothesis: u32,
        score: u32,
        plane: Plane,
        spread_m: [f64; 3],
        refined: bool,
        refining: bool,
    }
    let mut states: Vec<Option<State>> = frames
        .par_iter()
        .map(|f| {
            let (best_h, best_score) =
                f.scores
                    .iter()
                    .enumerate()
                    .fold((None, 0u32), |(bh, bs), (h, &s)| if s > bs { (Some(h as u32), s) } else { (bh, bs) });
            let hypothesis = best_h?;
            let plane = (f.plane_of)(hypothesis)?;
            Some(State { hypothesis, score: best_score, plane, spread_m: [0.0; 3], refined: false, refining: true })
        })
        .collect();
    let rounds = frames.iter().map(|f| f.params.refine_iterations).max().unwrap_or(0);
    for round in 0..rounds {
        let requests: Vec<(usize, Support)> = states
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.as_ref().filter(|s| s.refining && round < frames[i].params.refine_iterations).map(|s| (i, s))
            })
            .map(|(i, s)| {
                let f = &frames[i];
                (i, Support::new(&s.plane, f.params.inlier_threshold_m, f.params, f.with_normals))
            })
            .collect();
        if requests.is_empty() {
            break;
        }
        let supports = device.sample_supports(&requests)?;
        if supports.len() != requests.len() {
            return Err(format!("{} supports for {} requests", supports.len(), requests.len()));
        }
        // Each request's frame and its refined plane and spreads (`None`: the frame stops refining).
        type Refined = (usize, Option<(Plane, [f64; 3])>);
        let refined: Vec<Refined> = requests
            .par_iter()
            .zip(supports)
            .map(|(&(i, _), support)| {
                let (f, plane) = (&frames[i], states[i].as_ref().map(|s| s.plane));
                (i, plane.and_then(|p| refine_from_support(f.sample_points, support, &p, f.params)))
            })
            .collect();
        for (i, outcome) in refined {
            if let Some(s) = states[i].as_mut() {
                match outcome {
                    Some((p, spread)) => (s.plane, s.spread_m, s.refined) = (p, spread, true),
                    None => s.refining = false,
                }
            }
        }
    }
    let requests: Vec<(usize, Support)> = states
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.as_ref().map(|s| (i, Support::band(&s.plane, frames[i].params.inlier_threshold_m))))
        .collect();
    // No winner in any frame: nothing to count (and no round trip).
    let counts = if requests.is_empty() { Vec::new() } else { device.count_inliers(&requests)? };
    if counts.len() != requests.len() {
        return Err(format!("{} inlier counts for {} requests", counts.len(), requests.len()));
    }
    let mut inliers = vec![0u32; frames.len()];
    for (&(i, _), c) in requests.iter().zip(counts) {
        inliers[i] = c;
    }
    Ok(states
        .into_iter()
        .zip(frames)
        .zip(inliers)
        .map(|((s, f), inliers)| {
            let s = s?;
            let params = f.params;
            let needed =
                (params.min_inlier_fraction as f64 * f.n_points as f64).ceil().max(f64::from(params.min_inliers));
            let mut fit = PlaneFit {
                plane: s.plane,
                hypothesis: s.hypothesis,
                score: s.score,
                inliers,
                accepted: false,
                spread_m: s.spread_m,
            };
            let refined_ok = s.refined || params.refine_iterations == 0;
            fit.accepted = refined_ok
                && f64::from(inliers) >= needed
                && (params.refine_iterations == 0
                    || fit.tilt_uncertainty_deg() <= f64::from(params.max_tilt_uncertainty_deg));
            Some(fit)
        })
        .collect())
}
