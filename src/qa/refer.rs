//! Unambiguous references: how each object of a scene is named in a question ("the chair", "the red chair",
//! "the leftmost chair", "the nearer bottle"), or `None` when a reader could not tell it from the others of its
//! class (it is then left out of every question).

use crate::scene::SceneGraph;

/// What separates objects of one class enough to name them apart.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReferenceRule {
    /// Position and distance references need the object to lead the next one of its class by at least this
    /// (metres) and by `k_sigma` combined standard deviations.
    pub min_margin_m: f32,
    pub k_sigma: f32,
    /// Size references need the volume ratio to the next one to reach this.
    pub min_volume_ratio: f32,
}

impl Default for ReferenceRule {
    fn default() -> Self {
        ReferenceRule { min_margin_m: 0.10, k_sigma: 2.0, min_volume_ratio: 2.0 }
    }
}

/// The class noun of a label: `dining_table` → `dining table`.
pub fn noun(label: &str) -> String {
    label.trim().replace(['_', '-'], " ").to_lowercase()
}

/// Whether a reader could take an object called `other` for one called `mine`: the same noun, or `mine` is the
/// bare head of `other` ("box" and "cardboard box": "the box" could mean either).
fn same_kind(mine: &str, other: &str) -> bool {
    other == mine
        || (other.len() > mine.len() && other.ends_with(mine) && other[..other.len() - mine.len()].ends_with(' '))
}

/// The reference of every object of `graph` (indexed like `graph.objects`).
///
/// A class noun alone names an object when it is the only one of its class. Otherwise the first attribute that
/// singles it out is used: its dominant colour (when every other object of the class has a different one), its
/// position (leftmost/rightmost), its distance from the camera (nearest/farthest), its size (largest/smallest).
/// A class with an annotated or detected object that did not make it into the scene (`dropped_objects`) cannot be
/// referred to at all, since the reader sees that object in the image too.
pub fn references(graph: &SceneGraph, rule: &ReferenceRule) -> Vec<Option<String>> {
    let nouns: Vec<String> = graph.objects.iter().map(|o| noun(&o.label)).collect();
    let dropped: Vec<String> = graph.dropped_objects.iter().map(|d| noun(&d.label)).collect();
    let mut out = vec![None; nouns.len()];
    for i in 0..nouns.len() {
        if nouns[i].is_empty() {
            continue;
        }
        if dropped.iter().any(|d| same_kind(&nouns[i], d)) {
            continue;
        }
        let members: Vec<usize> = (0..nouns.len()).filter(|&j| same_kind(&nouns[i], &nouns[j])).collect();
        if members.len() == 1 {
            out[i] = Some(format!("the {}", nouns[i]));
            continue;
        }
        out[i] = distinguish(graph, i, &members, &nouns[i], rule);
    }
    out
}

fn distinguish(graph: &SceneGraph, i: usize, members: &[usize], noun: &str, rule: &ReferenceRule) -> Option<String> {
    let objects = &graph.objects;
    let me = &objects[i];
    let others = || members.iter().filter(move |&&j| j != i).map(|&j| &objects[j]);
    let pair = members.len() == 2;
    if let Some(c) = &me.color {
        if others().all(|o| o.color.as_ref().is_some_and(|oc| oc != c)) {
            return Some(format!("the {c} {noun}"));
        }
    }
    // Leads every other member on `key` by a clear margin (positive direction).
    let leads = |key: &dyn Fn(&crate::scene::SceneObject) -> f32| {
        others().all(|o| {
            let sigma = (me.sigma_m * me.sigma_m + o.sigma_m * o.sigma_m).sqrt();
            key(me) - key(o) > rule.min_margin_m.max(rule.k_sigma * sigma)
        })
    };
    let name = |superlative: &str, comparative: &str, suffix: bool| match (pair, suffix) {
        (true, true) => format!("the {noun} {comparative}"),
        (true, false) => format!("the {comparative} {noun}"),
        (false, _) => format!("the {superlative} {noun}"),
    };
    if leads(&|o| -o.centroid_m[0]) {
        return Some(name("leftmost", "on the left", true));
    }
    if leads(&|o| o.centroid_m[0]) {
        return Some(name("rightmost", "on the right", true));
    }
    if leads(&|o| -o.distance_to_camera_m) {
        return Some(name("nearest", "nearer", false));
    }
    if leads(&|o| o.distance_to_camera_m) {
        return Some(name("farthest", "farther", false));
    }
    let ratio = rule.min_volume_ratio.max(1.0).ln();
    let log_volume = |o: &crate::scene::SceneObject| o.volume_m3.max(1e-9).ln();
    if others().all(|o| log_volume(me) - log_volume(o) >= ratio) {
        return Some(name("largest", "larger", false));
    }
    if others().all(|o| log_volume(o) - log_volume(me) >= ratio) {
        return Some(name("smallest", "smaller", false));
    }
    None
}
