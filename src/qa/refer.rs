//! Unambiguous references: how each object of a scene is named in a question ("the chair", "the red chair",
//! "the leftmost chair", "the nearer bottle"), or `None` when a reader could not tell it from the others of its
//! class (it is then left out of every question).

use super::facts::{FrameFacts, Margins};
use super::types::Relation;
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

/// What a reference singles its object out by, among the objects of its class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis {
    /// The only one of its class: "the chair".
    Class,
    /// Its dominant colour: "the red chair".
    Color,
    /// Its position: "the leftmost chair", "the chair on the right".
    Left,
    Right,
    /// Its distance from the camera: "the nearest bottle", "the farther bottle".
    Nearest,
    Farthest,
    /// Its size: "the largest box", "the smaller box".
    Largest,
    Smallest,
}

impl Basis {
    /// Whether a reference on this basis already answers `rel` between its object and another of its class: "the
    /// leftmost chair" is left of every other chair and "the largest box" bigger than every other box. The
    /// nearer of two bottles is in front of the other unless they stand far apart sideways (front/behind is
    /// measured along the ground's forward axis, nearness from the camera), and then a "yes" to "Is the nearer
    /// bottle behind the farther one?" would read as a contradiction: either way the question teaches nothing.
    pub fn decides(self, rel: Relation) -> bool {
        use Relation::*;
        match self {
            Basis::Left | Basis::Right => matches!(rel, Left | Right),
            Basis::Nearest | Basis::Farthest => matches!(rel, Front | Behind),
            Basis::Largest | Basis::Smallest => matches!(rel, Bigger | Smaller),
            Basis::Class | Basis::Color => false,
        }
    }
}

/// How a question names an object, and why that name singles it out.
#[derive(Clone, Debug, PartialEq)]
pub struct Reference {
    /// The words: "the leftmost chair".
    pub text: String,
    pub basis: Basis,
    /// The class noun ("chair"): the objects it is told apart from are those of the same kind.
    pub noun: String,
}

impl Reference {
    /// Whether asking `rel` about the objects named `self` and `other` would give its answer away in the names:
    /// both are of one class and one of them is named by where it stands on that very relation ("Is the chair on
    /// the left to the left of the chair on the right?", "Which is bigger, the largest box or the white box?").
    pub fn gives_away(&self, other: &Reference, rel: Relation) -> bool {
        (self.basis.decides(rel) && same_kind(&self.noun, &other.noun))
            || (other.basis.decides(rel) && same_kind(&other.noun, &self.noun))
    }
}

/// The reference of every object of `graph` (indexed like `graph.objects`): the words of [`described`], with the
/// default margins' rule for partly hidden objects.
pub fn references(graph: &SceneGraph, rule: &ReferenceRule) -> Vec<Option<String>> {
    described(graph, rule, &Margins::default()).into_iter().map(|r| r.map(|r| r.text)).collect()
}

/// The reference of every object of `graph` (indexed like `graph.objects`), with what singles it out.
///
/// A class noun alone names an object when it is the only one of its class. Otherwise the first attribute that
/// singles it out is used: its dominant colour (when every other object of the class has a different one), its
/// position (leftmost/rightmost), its distance from the camera (nearest/farthest), its size (largest/smallest).
/// A class with an annotated or detected object that did not make it into the scene (`dropped_objects`) cannot be
/// referred to at all, since the reader sees that object in the image too. An object partly hidden (by the frame,
/// by something in front of it, or with its base out of view: [`super::facts::partly_hidden`] with `margins`) may
/// be larger than it looks: it is not named the smallest, and no other is named the largest beside it.
pub fn described(graph: &SceneGraph, rule: &ReferenceRule, margins: &Margins) -> Vec<Option<Reference>> {
    described_in(&FrameFacts::new(graph, margins), rule)
}

/// As [`described`], with the hidden sides `frame` worked out.
pub(crate) fn described_in(frame: &FrameFacts, rule: &ReferenceRule) -> Vec<Option<Reference>> {
    let graph = frame.graph();
    let nouns: Vec<String> = graph.objects.iter().map(|o| noun(&o.label)).collect();
    let whole: Vec<bool> = (0..graph.objects.len() as u32).map(|o| !frame.partly_hidden(o)).collect();
    let dropped: Vec<String> = graph.dropped_objects.iter().map(|d| noun(&d.label)).collect();
    let named: Vec<Option<(String, Basis)>> = (0..nouns.len())
        .map(|i| {
            if nouns[i].is_empty() || dropped.iter().any(|d| same_kind(&nouns[i], d)) {
                return None;
            }
            let members: Vec<usize> = (0..nouns.len()).filter(|&j| same_kind(&nouns[i], &nouns[j])).collect();
            match members.len() {
                1 => Some((format!("the {}", nouns[i]), Basis::Class)),
                _ => distinguish(graph, i, &members, &nouns[i], rule, &whole),
            }
        })
        .collect();
    named.into_iter().zip(nouns).map(|(n, noun)| n.map(|(text, basis)| Reference { text, basis, noun })).collect()
}

fn distinguish(
    graph: &SceneGraph,
    i: usize,
    members: &[usize],
    noun: &str,
    rule: &ReferenceRule,
    whole: &[bool],
) -> Option<(String, Basis)> {
    let objects = &graph.objects;
    let me = &objects[i];
    let others = || members.iter().filter(move |&&j| j != i).map(|&j| &objects[j]);
    let pair = members.len() == 2;
    if let Some(c) = &me.color {
        if others().all(|o| o.color.as_ref().is_some_and(|oc| oc != c)) {
            return Some((format!("the {c} {noun}"), Basis::Color));
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
        return Some((name("leftmost", "on the left", true), Basis::Left));
    }
    if leads(&|o| o.centroid_m[0]) {
        return Some((name("rightmost", "on the right", true), Basis::Right));
    }
    if leads(&|o| -o.distance_to_camera_m) {
        return Some((name("nearest", "nearer", false), Basis::Nearest));
    }
    if leads(&|o| o.distance_to_camera_m) {
        return Some((name("farthest", "farther", false), Basis::Farthest));
    }
    let ratio = rule.min_volume_ratio.max(1.0).ln();
    let log_volume = |o: &crate::scene::SceneObject| o.volume_m3.max(1e-9).ln();
    // Sizes: those measured smaller must be whole (a cut-off object may be larger than it looks).
    let others_whole = members.iter().all(|&j| j == i || whole[j]);
    if others_whole && others().all(|o| log_volume(me) - log_volume(o) >= ratio) {
        return Some((name("largest", "larger", false), Basis::Largest));
    }
    if whole[i] && others().all(|o| log_volume(o) - log_volume(me) >= ratio) {
        return Some((name("smallest", "smaller", false), Basis::Smallest));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(text: &str, basis: Basis, noun: &str) -> Reference {
        Reference { text: text.into(), basis, noun: noun.into() }
    }

    #[test]
    fn a_name_gives_away_only_its_own_relation_and_only_within_its_class() {
        let left = named("the chair on the left", Basis::Left, "chair");
        let right = named("the chair on the right", Basis::Right, "chair");
        let nearer = named("the nearer chair", Basis::Nearest, "chair");
        let larger = named("the larger chair", Basis::Largest, "chair");
        let red = named("the red chair", Basis::Color, "chair");
        let table = named("the table", Basis::Class, "table");
        for rel in Relation::ALL {
            let position = matches!(rel, Relation::Left | Relation::Right);
            let depth = matches!(rel, Relation::Front | Relation::Behind);
            let size = matches!(rel, Relation::Bigger | Relation::Smaller);
            assert_eq!(left.gives_away(&right, rel), position, "{rel:?}");
            // Either object's name can give it away, in either order.
            assert_eq!(red.gives_away(&left, rel), position, "{rel:?}");
            assert_eq!(left.gives_away(&red, rel), position, "{rel:?}");
            assert_eq!(nearer.gives_away(&red, rel), depth, "{rel:?}");
            assert_eq!(red.gives_away(&larger, rel), size, "{rel:?}");
            assert_eq!(nearer.gives_away(&larger, rel), depth || size, "{rel:?}");
            // Colour and class names decide nothing; nor does a position among chairs about a table.
            assert!(!red.gives_away(&named("the blue chair", Basis::Color, "chair"), rel), "{rel:?}");
            for chair in [&left, &right, &nearer, &larger, &red] {
                assert!(!chair.gives_away(&table, rel) && !table.gives_away(chair, rel), "{rel:?}");
            }
        }
        // "The box on the left" was told apart from the cardboard box too (a "box" could be either), so its name
        // answers left/right against it; "the cardboard box" alone decides nothing.
        let box_left = named("the box on the left", Basis::Left, "box");
        let cardboard = named("the cardboard box", Basis::Class, "cardboard box");
        assert!(box_left.gives_away(&cardboard, Relation::Right) && cardboard.gives_away(&box_left, Relation::Left));
        let cardboard_left = named("the cardboard box on the left", Basis::Left, "cardboard box");
        let plain_box = named("the box", Basis::Class, "box");
        assert!(!cardboard_left.gives_away(&plain_box, Relation::Left));
    }
}
