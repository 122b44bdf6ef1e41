//! Statistical outlier removal (optional K3 step): a point is kept when its mean distance to its `k` nearest
//! neighbours is at most `mean + std_ratio · std` of that quantity over the object (PCL/Open3D semantics, the
//! point itself not counted as a neighbour).

use std::num::NonZeroUsize;

use kiddo::{ImmutableKdTree, SquaredEuclidean};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::Point3;

/// Parameters of statistical outlier removal.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutlierParams {
    pub neighbours: u32,
    pub std_ratio: f32,
}

impl Default for OutlierParams {
    fn default() -> Self {
        OutlierParams { neighbours: 10, std_ratio: 1.2 }
    }
}

/// Keep-mask of statistical outlier removal. Clouds with no more than `neighbours` points are kept whole.
pub fn statistical_outlier_mask(points: &[Point3], params: &OutlierParams) -> Vec<bool> {
    let k = params.neighbours as usize;
    if points.len() <= k || k == 0 {
        return vec![true; points.len()];
    }
    // kiddo only refuses inputs beyond u32 indices; keeping everything is the safe answer then.
    let Ok(tree) = ImmutableKdTree::<f32, 3>::new_from_slice(points) else { return vec![true; points.len()] };
    let Some(k1) = NonZeroUsize::new(k + 1) else { return vec![true; points.len()] };
    let mean_dist: Vec<f64> = points
        .par_iter()
        .map(|p| {
            let found = tree.query(p).nearest_n::<SquaredEuclidean<f32>>(k1).execute();
            // The nearest hit is the point itself (distance 0); duplicates of it count as neighbours at 0 m.
            let sum: f64 = found.iter().skip(1).map(|r| f64::from(r.distance).sqrt()).sum();
            sum / k as f64
        })
        .collect();
    let n = mean_dist.len() as f64;
    let mean = mean_dist.iter().sum::<f64>() / n;
    let var = mean_dist.iter().map(|d| (d - mean) * (d - mean)).sum::<f64>() / (n - 1.0).max(1.0);
    let limit = mean + f64::from(params.std_ratio) * var.sqrt();
    mean_dist.iter().map(|&d| d <= limit).collect()
}
