//! Facts: what a question type says about given objects of a scene graph, with its margin, or nothing when the
//! measurement cannot support an answer (a near-tie, a missing quantity).
//!
//! Every binary answer needs its margin to clear a threshold built from the measurement's uncertainty: the
//! combined position uncertainty `sigma_m` of the two objects (depth noise grows with distance) times `k_sigma`,
//! never less than `min_margin_m`; size comparisons also need a relative difference of `min_size_ratio`, volume
//! comparisons a ratio of `min_volume_ratio`, clock directions an angle clear of the hour boundary. An object partly
//! hidden (cut off by the image's border, behind something along one side, a piece of furniture or a person whose
//! base is out of view, or one reaching below a ground that is a raised surface) has only lower bounds for its
//! sizes and an upper bound for its gaps: they are not asked, a size comparison is asked only when it is the larger
//! one, and a robot's passing beside it only when the answer is no. Where an object cut off by the frame is, is not
//! asked either (unless `cut_off_positions`): its part out of view may lie anywhere beyond that edge of the view.

use serde::{Deserialize, Serialize};

use super::types::{Form, QuestionType, Relation};
use crate::scene::{SceneGraph, SceneObject, SceneRelation};

/// When a measured difference is clear enough to answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Margins {
    /// Standard deviations of the combined position uncertainty a margin must clear.
    pub k_sigma: f32,
    /// The smallest margin ever answered (metres).
    pub min_margin_m: f32,
    /// Taller/wider: the difference must also reach this share of the larger size.
    pub min_size_ratio: f32,
    /// Bigger/smaller: the volume ratio must reach this.
    pub min_volume_ratio: f32,
    /// Clock directions: the bearing must be this far (degrees) from a boundary between hours, and further when
    /// the objects are close together (`k_sigma` times the bearing's uncertainty).
    pub min_clock_margin_deg: f32,
    /// Passing between two objects is only asked when both stand on the ground (bottom within this); an object of a
    /// `floor_standing` class whose bottom is further up than this shows no base.
    pub ground_contact_m: f32,
    /// Sizes below this are not asked as quantities; distances and gaps must also exceed the pair's uncertainty
    /// (`k_sigma` · `sigma_m`, at least `min_margin_m`).
    pub min_quantity_m: f32,
    /// An object whose box (`bbox_px`) comes within this many pixels of an image edge, or goes past it, or reaches
    /// into a margin of the depth image without depth ([`SceneGraph::depth_frame_px`]) by more than this and
    /// [`DEPTH_MARGIN_CUT_SHARE`] of its size, is cut off by the frame: its measured sizes are only lower bounds (a chair seen from its seat down is not 10 cm
    /// tall), and its closest surfaces may be out of view. Its width, height and depth are not asked, nor a height
    /// difference or a gap with it, a size comparison only when it is the larger one, and whether a robot passes
    /// beside it only when the answer is no. It is not named by its size when that could be wrong
    /// ([`super::refer::described`]), and its position is not asked (`cut_off_positions`). `None` (`null`) turns
    /// this rule off; with `occluded_fraction` also `None` and `floor_standing` empty, every object is taken as
    /// whole.
    pub cut_off_px: Option<f32>,
    /// An object one side of whose box borders something in front of it, over at least this share of the side's
    /// depth pixels ([`SceneObject::occlusion`]), may go on behind it: its sizes and gaps are treated as those of
    /// one cut off (above); its position is asked, as its hidden part adjoins the part in view. The share, not any
    /// pixel, because box edges and depth edges are uncertain by a pixel or two. `None` (`null`) ignores what stands
    /// in front of objects.
    pub occluded_fraction: Option<f32>,
    /// Classes that stand on the floor, by the last word of their label ("office chair", "dining table"). One whose
    /// lowest visible point is more than `ground_contact_m` above a found ground shows no base: its lower part is
    /// behind something (a chair behind a table shows its back above the table top, a table its top above the
    /// chairs in front), below the frame, or lost by the segmentation (thin legs), and its sizes and gaps are
    /// treated as those of one cut off (above); its position is asked. So is one no higher than `ground_contact_m`
    /// above the ground: no such thing is that low, so it lies in the ground plane, which is its top (a table top
    /// RANSAC took for the ground, its legs out of view below). Empty (or `null`): no class is. The ground
    /// RANSAC finds may be a table top in a table-top frame: a chair or person below it is then not caught by this
    /// rule (its bottom is below that ground), but by `below_ground_share`; one sitting behind it is not.
    #[serde(deserialize_with = "null_as_empty")]
    pub floor_standing: Vec<String>,
    /// An object more than this share of whose region's points lie well below the ground
    /// ([`SceneObject::points_below_ground`]) reaches below the ground plane, which is then not its floor but a
    /// raised surface (the table top RANSAC takes as the ground of a table-top frame, a chair beneath it), and its
    /// part down there was left out with the ground's points: its bottom is hidden, and its sizes and gaps are
    /// treated as those of one cut off (above); its position is asked. A box's region may also reach past the
    /// surface's edge to the floor beyond (a cup near the table's edge): it is then treated alike, as the box
    /// cannot tell. On real floors the share stays under 0.002 in the data we have, from 0.014 to 0.64 where the
    /// ground is a table top. `None` (`null`) ignores it.
    pub below_ground_share: Option<f32>,
    /// Whether the position of an object cut off by the frame (`cut_off_px`) is asked: left, right, above, below,
    /// in front, behind, distances, clock directions, which of two is closer, its distance from the camera. Its
    /// part out of view lies beyond that side of the view's frustum, which reaches nearer and farther, to either
    /// side and up and down: the centroid of what shows can be off by metres, and in any direction (a curtain along
    /// a side wall, cut by the image's left edge, 1.2 m too far; a bed cut by the bottom edge, 0.4 m too far left).
    /// `false` (the default) asks none of these about it; an object behind something (`occluded_fraction`) or
    /// without its base in view (`floor_standing`) hides a part next to the part in view, and is asked.
    pub cut_off_positions: bool,
}

/// `null` as an empty list (the other rules turn off with `null` too).
pub(crate) fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// The default [`Margins::floor_standing`]: furniture and people, which stand on the floor. Not cabinets, shelves or
/// lamps, which may hang on a wall or stand on other things.
pub const FLOOR_STANDING: &[&str] = &[
    "person",
    "chair",
    "armchair",
    "stool",
    "sofa",
    "couch",
    "bench",
    "bed",
    "table",
    "desk",
    "wardrobe",
    "dresser",
    "bookcase",
    "refrigerator",
    "fridge",
    "toilet",
    "bathtub",
    "piano",
];

impl Default for Margins {
    fn default() -> Self {
        Margins {
            k_sigma: 2.0,
            min_margin_m: 0.03,
            min_size_ratio: 0.10,
            min_volume_ratio: 1.5,
            min_clock_margin_deg: 5.0,
            ground_contact_m: 0.15,
            min_quantity_m: 0.02,
            cut_off_px: Some(2.0),
            occluded_fraction: Some(0.5),
            floor_standing: FLOOR_STANDING.iter().map(|c| c.to_string()).collect(),
            below_ground_share: Some(0.01),
            cut_off_positions: false,
        }
    }
}

impl Margins {
    pub fn validate(&self) -> std::result::Result<(), String> {
        let checks = [
            ("k_sigma", self.k_sigma),
            ("min_margin_m", self.min_margin_m),
            ("min_size_ratio", self.min_size_ratio),
            ("min_clock_margin_deg", self.min_clock_margin_deg),
            ("ground_contact_m", self.ground_contact_m),
            ("min_quantity_m", self.min_quantity_m),
            ("cut_off_px", self.cut_off_px.unwrap_or(0.0)),
        ];
        for (name, v) in checks {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("margins.{name} must be zero or positive, got {v}"));
            }
        }
        if !(self.min_volume_ratio.is_finite() && self.min_volume_ratio >= 1.0) {
            return Err(format!("margins.min_volume_ratio must be at least 1, got {}", self.min_volume_ratio));
        }
        if let Some(f) = self.occluded_fraction {
            if !(f > 0.0 && f <= 1.0) {
                return Err(format!("margins.occluded_fraction must be above 0 and at most 1, got {f}"));
            }
        }
        if let Some(f) = self.below_ground_share {
            if !(0.0..1.0).contains(&f) {
                return Err(format!("margins.below_ground_share must be at least 0 and below 1, got {f}"));
            }
        }
        if !single_lowercase_words(&self.floor_standing) {
            return Err(format!(
                "margins.floor_standing must hold single lowercase words, got {:?}",
                self.floor_standing
            ));
        }
        if self.min_clock_margin_deg > 15.0 {
            return Err(format!("margins.min_clock_margin_deg must be at most 15, got {}", self.min_clock_margin_deg));
        }
        Ok(())
    }
}

/// What one question says about its objects.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fact {
    pub question_type: QuestionType,
    /// The objects in question order (A, B, C); `len` of them are used.
    pub objects: [u32; 3],
    pub len: usize,
    /// The answer of a yes/no question.
    pub truth: Option<bool>,
    /// The object the answer names ({X}): the winner of a choice, the taller, the closer candidate.
    pub winner: Option<u32>,
    /// The measured quantity: metres, or the clock hour for directions.
    pub value: Option<f64>,
    /// The values of {X} and {Y} (heights, distances), metres.
    pub values: Option<(f64, f64)>,
    /// Signed margin (metres; log volume ratio for bigger/smaller; degrees for directions) and the threshold it
    /// cleared.
    pub margin: Option<f64>,
    pub threshold: Option<f64>,
    /// The robot width of a pass-between question, metres.
    pub robot_m: Option<f64>,
    /// Whether [`Self::value`] is only an upper bound: the gap of a pass-between question to a partly hidden object,
    /// whose closest surface may lie out of view (only "no" is answered then).
    pub value_at_most: bool,
}

impl Fact {
    fn new(t: QuestionType, objects: &[u32]) -> Fact {
        let mut o = [0; 3];
        o[..objects.len()].copy_from_slice(objects);
        Fact {
            question_type: t,
            objects: o,
            len: objects.len(),
            truth: None,
            winner: None,
            value: None,
            values: None,
            margin: None,
            threshold: None,
            robot_m: None,
            value_at_most: false,
        }
    }

    pub fn objects(&self) -> &[u32] {
        &self.objects[..self.len]
    }
}

/// The relation record of the ordered pair `(a, b)`: rows are a-major over every ordered pair.
pub fn relation(graph: &SceneGraph, a: u32, b: u32) -> Option<&SceneRelation> {
    let n = graph.objects.len();
    let (ai, bi) = (a as usize, b as usize);
    if ai == bi || ai >= n || bi >= n {
        return None;
    }
    let k = ai * (n - 1) + if bi < ai { bi } else { bi - 1 };
    match graph.relations.get(k) {
        Some(r) if r.a == a && r.b == b => Some(r),
        _ => graph.relations.iter().find(|r| r.a == a && r.b == b),
    }
}

fn size(o: &SceneObject, rel: Relation) -> f32 {
    match rel {
        Relation::Taller | Relation::Shorter => o.height_m,
        _ => o.width_m,
    }
}

/// Whether `o` is cut off by the border of what the frame shows in 3D (see [`Margins::cut_off_px`]): the image's,
/// or that of its depth where the depth image has margins without depth ([`SceneGraph::depth_frame_px`]). An
/// object without a box (an empty `bbox_px`, as from [`crate::pipeline::scene_from_points`] without one) is taken
/// as whole.
pub fn cut_off(graph: &SceneGraph, o: &SceneObject, m: &Margins) -> bool {
    cut_edges(o.bbox_px, graph, m.cut_off_px).contains(&true)
}

/// Whether every entry of a class list is one lowercase word, as [`class_in`] compares them.
pub(crate) fn single_lowercase_words(classes: &[String]) -> bool {
    classes.iter().all(|c| {
        !c.is_empty() && !c.contains(|ch: char| ch.is_whitespace() || ch == '_' || ch == '-') && c.to_lowercase() == *c
    })
}

/// Whether `o` stands on the floor by its class but shows no base (see [`Margins::floor_standing`]): its lowest
/// point is more than `ground_contact_m` above the ground, or its highest point is not (it lies in the ground plane:
/// a table whose top RANSAC took for the ground). Only with a ground found by RANSAC: the gravity prior's ground is
/// a guess.
pub fn base_hidden(graph: &SceneGraph, o: &SceneObject, m: &Margins) -> bool {
    graph.ground.found
        && (o.bottom_m > m.ground_contact_m || o.top_m <= m.ground_contact_m)
        && class_in(&o.label, &m.floor_standing)
}

/// Whether `o` reaches below the ground (see [`Margins::below_ground_share`]): its bottom is hidden.
pub fn reaches_below_ground(o: &SceneObject, m: &Margins) -> bool {
    m.below_ground_share.is_some_and(|s| o.points_below_ground as f32 > s * o.points_in_region as f32)
}

/// Whether the last word of `label` (as [`super::refer::noun`] writes it: `_` and `-` split words, any case) is one
/// of `classes`. No allocation for an ASCII label: it runs for every size question drawn.
pub(crate) fn class_in(label: &str, classes: &[String]) -> bool {
    let head = label.trim().rsplit([' ', '_', '-']).next().unwrap_or_default();
    if head.is_ascii() {
        classes.iter().any(|c| c.eq_ignore_ascii_case(head))
    } else {
        let head = head.to_lowercase();
        classes.contains(&head)
    }
}

/// Whether `o` is partly hidden: any of its [`hidden_sides`] ([`cut_off`] by the image's border, behind something
/// in front of one side, standing on the floor with its base out of view ([`base_hidden`]) or reaching below the
/// ground ([`reaches_below_ground`])). Its measured sizes
/// are then lower bounds, and its gaps upper bounds.
pub fn partly_hidden(graph: &SceneGraph, o: &SceneObject, m: &Margins) -> bool {
    hidden_sides(graph, o, m).contains(&true)
}

/// A box reaching this share of its width (height) into a margin of the depth image without depth, or
/// [`Margins::cut_off_px`] if more, is cut off there.
pub const DEPTH_MARGIN_CUT_SHARE: f32 = 0.05;

/// Which sides of `graph`'s view a box comes within `px` of, or goes past, `[left, top, right, bottom]`; none
/// for an empty box or image, or without `px`. See [`cut_edge_flags`].
fn cut_edges(bbox: [f32; 4], graph: &SceneGraph, px: Option<f32>) -> [bool; 4] {
    cut_edge_flags(bbox, [graph.intrinsics.width, graph.intrinsics.height], graph.depth_frame_px, px)
}

/// Which sides of a `width` × `height` image a box `[x0, y0, x1, y1]` (pixels, `x1`/`y1` exclusive) is cut off
/// at, `[left, top, right, bottom]`: it comes within `px` of the image's edge, or goes past it (what lies beyond is
/// unknown), or it reaches past the edge of `depth_frame` ([`SceneGraph::depth_frame_px`], the part of the image
/// with depth) by more than `px` and more than [`DEPTH_MARGIN_CUT_SHARE`] of its size (the box shows how much of
/// the object lies in the margin, where it has no points). A depth frame that is not inside the image is ignored.
fn cut_edge_flags(
    [x0, y0, x1, y1]: [f32; 4],
    [width, height]: [u32; 2],
    depth_frame: Option<[u32; 4]>,
    px: Option<f32>,
) -> [bool; 4] {
    let (w, h) = (width as f32, height as f32);
    let Some(e) = px.filter(|_| x1 > x0 && y1 > y0 && w > 0.0 && h > 0.0) else { return [false; 4] };
    let mut cut = [x0 <= e, y0 <= e, x1 >= w - e, y1 >= h - e];
    if let Some([l, t, r, b]) = depth_frame.filter(|&[l, t, r, b]| l < r && t < b && r <= width && b <= height) {
        let [l, t, r, b] = [l, t, r, b].map(|v| v as f32);
        let (sx, sy) = (e.max(DEPTH_MARGIN_CUT_SHARE * (x1 - x0)), e.max(DEPTH_MARGIN_CUT_SHARE * (y1 - y0)));
        let beyond = [x0 < l - sx, y0 < t - sy, x1 > r + sx, y1 > b + sy];
        cut = [0, 1, 2, 3].map(|i| cut[i] || beyond[i]);
    }
    cut
}

/// Sides of a box, in [`hidden_sides`] order (that of [`crate::geometry::occlusion::Occlusion::sides`]).
const LEFT: usize = 0;
const TOP: usize = 1;
const RIGHT: usize = 2;
const BOTTOM: usize = 3;

/// Which sides of `o` may hide a part of it, `[left, top, right, bottom]`: the side's image edge within
/// `cut_off_px`, the side occluded ([`Margins::occluded_fraction`]; an object without an occlusion measure, from a
/// scene made from points, is not), and the bottom of an object with no base in view ([`base_hidden`]) or
/// reaching below the ground ([`reaches_below_ground`]). The
/// centroid of what shows is off towards the other side.
pub fn hidden_sides(graph: &SceneGraph, o: &SceneObject, m: &Margins) -> [bool; 4] {
    let edges = cut_edges(o.bbox_px, graph, m.cut_off_px);
    let occluded = match (m.occluded_fraction, &o.occlusion) {
        (Some(f), Some(occlusion)) => occlusion.sides().map(|s| s.is_some_and(|s| s >= f)),
        _ => [false; 4],
    };
    let mut sides = [0, 1, 2, 3].map(|i| edges[i] || occluded[i]);
    sides[BOTTOM] |= base_hidden(graph, o, m) || reaches_below_ground(o, m);
    sides
}

/// Whether the position relation `rel` (left, right, above, below) between `a` and `b`, with signed margin `margin`
/// (positive when "A ⟨rel⟩ B" holds), stands whatever their hidden parts hold: the object measured on the `rel` side
/// must not hide its part towards the other (its centroid could lie further that way: a chair with its base behind a
/// table is lower than its back), nor the other its part away from it. True for the other relations.
fn positions_stand(frame: &FrameFacts, rel: Relation, margin: f64, a: u32, b: u32) -> bool {
    let (first_side, second_side) = match rel {
        Relation::Left => (RIGHT, LEFT),
        Relation::Right => (LEFT, RIGHT),
        Relation::Above => (BOTTOM, TOP),
        Relation::Below => (TOP, BOTTOM),
        _ => return true,
    };
    let (first, second) = if margin > 0.0 { (a, b) } else { (b, a) };
    !frame.hidden_sides(first)[first_side] && !frame.hidden_sides(second)[second_side]
}

/// Whether the size relation `rel` between `a` and `b`, with signed margin `margin` (positive when "A ⟨rel⟩ B"
/// holds), is measured on the smaller object's whole size: the one measured smaller must not be partly hidden (a
/// partly hidden object may be larger than it looks; one that looks larger than a whole one is larger). True for the
/// relations that are not sizes.
fn smaller_is_whole(frame: &FrameFacts, rel: Relation, margin: f64, a: u32, b: u32) -> bool {
    let a_larger = match rel {
        Relation::Taller | Relation::Wider | Relation::Bigger => margin > 0.0,
        Relation::Shorter | Relation::Thinner | Relation::Smaller => margin < 0.0,
        _ => return true,
    };
    !frame.partly_hidden(if a_larger { b } else { a })
}

/// The signed margin of "A ⟨rel⟩ B" (positive when it holds) and the threshold it must clear.
pub fn relation_margin(graph: &SceneGraph, rel: Relation, a: u32, b: u32, m: &Margins) -> Option<(f64, f64)> {
    let r = relation(graph, a, b)?;
    let (oa, ob) = (graph.objects.get(a as usize)?, graph.objects.get(b as usize)?);
    let position = m.min_margin_m.max(m.k_sigma * r.sigma_m);
    let (value, threshold) = match rel {
        Relation::Left => (r.left_m, position),
        Relation::Right => (-r.left_m, position),
        Relation::Above => (r.above_m, position),
        Relation::Below => (-r.above_m, position),
        Relation::Front => (r.front_m, position),
        Relation::Behind => (-r.front_m, position),
        Relation::Taller | Relation::Shorter | Relation::Wider | Relation::Thinner => {
            let d = match rel {
                Relation::Taller => r.taller_m,
                Relation::Shorter => -r.taller_m,
                Relation::Wider => r.wider_m,
                _ => -r.wider_m,
            };
            (d, position.max(m.min_size_ratio * size(oa, rel).max(size(ob, rel))))
        }
        Relation::Bigger => (r.bigger_log_ratio, m.min_volume_ratio.ln()),
        Relation::Smaller => (-r.bigger_log_ratio, m.min_volume_ratio.ln()),
    };
    (value.is_finite() && threshold.is_finite()).then_some((f64::from(value), f64::from(threshold)))
}

/// What question type `t` says about `objects` (A, B[, C]) of `graph`, or `None` when it cannot be answered with
/// confidence. `robot_m` is the robot width of [`QuestionType::PassBetween`] (ignored otherwise).
///
/// It works out which objects are partly hidden on every call; for many questions on one graph,
/// [`FrameFacts::evaluate`] does that once.
pub fn evaluate(graph: &SceneGraph, t: QuestionType, objects: &[u32], robot_m: f64, m: &Margins) -> Option<Fact> {
    FrameFacts::new(graph, m).evaluate(t, objects, robot_m)
}

/// A scene graph with its margins and the [`hidden_sides`] of each of its objects, worked out once for the many
/// questions drawn on one frame ([`super::generate_frame`] draws a few hundred).
#[derive(Clone, Debug)]
pub struct FrameFacts<'a> {
    graph: &'a SceneGraph,
    margins: &'a Margins,
    /// [`hidden_sides`] of each object, indexed like `graph.objects`.
    hidden: Vec<[bool; 4]>,
    /// Whether each object's position is not asked ([`Margins::cut_off_positions`]).
    placeless: Vec<bool>,
}

impl<'a> FrameFacts<'a> {
    pub fn new(graph: &'a SceneGraph, margins: &'a Margins) -> FrameFacts<'a> {
        let hidden = graph.objects.iter().map(|o| hidden_sides(graph, o, margins)).collect();
        let placeless =
            graph.objects.iter().map(|o| !margins.cut_off_positions && cut_off(graph, o, margins)).collect();
        FrameFacts { graph, margins, hidden, placeless }
    }

    pub fn graph(&self) -> &'a SceneGraph {
        self.graph
    }

    /// [`hidden_sides`] of object `o`; every side for an id not in the graph.
    pub fn hidden_sides(&self, o: u32) -> [bool; 4] {
        self.hidden.get(o as usize).copied().unwrap_or([true; 4])
    }

    /// [`partly_hidden`] of object `o`; true for an id not in the graph.
    pub fn partly_hidden(&self, o: u32) -> bool {
        self.hidden_sides(o).contains(&true)
    }

    /// Whether any of `objects` is [`partly_hidden`].
    fn any_hidden(&self, objects: &[u32]) -> bool {
        objects.iter().any(|&o| self.partly_hidden(o))
    }

    /// Whether the position of object `o` is asked: not for one [`cut_off`] by the frame, unless
    /// [`Margins::cut_off_positions`]; not for an id not in the graph.
    pub fn placed(&self, o: u32) -> bool {
        self.placeless.get(o as usize).is_some_and(|p| !p)
    }

    /// Whether object `o` may be one of the objects of a question of type `t` at all, whatever the others: the
    /// object-level part of [`Self::evaluate`], which turns down every question where this is false. Not the sizes,
    /// gaps and height differences of a partly hidden object (lower and upper bounds), nor a vertical distance of
    /// one hidden at its top or bottom (its centroid's height is off), nor where an object cut off by the frame is.
    /// A draw skips those objects and wastes no attempt. False for an id not in the graph.
    pub fn may_answer(&self, t: QuestionType, o: u32) -> bool {
        let whole = || !self.partly_hidden(o);
        let sides = self.hidden_sides(o);
        match t.form() {
            Form::Predicate(rel) | Form::Choice(rel) if rel.is_position() => self.placed(o),
            // The closest surfaces of a partly hidden object may lie out of view: its gap is only an upper bound.
            Form::PairValue if t == QuestionType::Gap => whole(),
            // The height between centroids of an object whose top or bottom is hidden is off by an unknown amount.
            Form::PairValue if t == QuestionType::VerticalDistance => self.placed(o) && !(sides[TOP] || sides[BOTTOM]),
            Form::PairValue | Form::Direction | Form::CloserTo => self.placed(o),
            Form::ObjectValue if t == QuestionType::DistanceToCamera => self.placed(o),
            Form::ObjectValue | Form::HeightDifference => whole(),
            Form::Predicate(_) | Form::Choice(_) | Form::PassBetween => (o as usize) < self.hidden.len(),
        }
    }

    /// As [`evaluate`], with the hidden sides worked out by [`FrameFacts::new`].
    pub fn evaluate(&self, t: QuestionType, objects: &[u32], robot_m: f64) -> Option<Fact> {
        let (graph, m) = (self.graph, self.margins);
        if objects.len() != t.arity() {
            return None;
        }
        let n = graph.objects.len() as u32;
        for (i, &o) in objects.iter().enumerate() {
            if o >= n || objects[..i].contains(&o) || !self.may_answer(t, o) {
                return None;
            }
        }
        let mut fact = Fact::new(t, objects);
        let position = |r: &SceneRelation| f64::from(m.min_margin_m.max(m.k_sigma * r.sigma_m));
        match t.form() {
            Form::Predicate(rel) | Form::Choice(rel) => {
                let (margin, threshold) = relation_margin(graph, rel, objects[0], objects[1], m)?;
                if margin.abs() <= threshold
                    || !smaller_is_whole(self, rel, margin, objects[0], objects[1])
                    || !positions_stand(self, rel, margin, objects[0], objects[1])
                {
                    return None;
                }
                if matches!(t.form(), Form::Predicate(_)) {
                    fact.truth = Some(margin > 0.0);
                } else {
                    fact.winner = Some(if margin > 0.0 { objects[0] } else { objects[1] });
                }
                fact.margin = Some(margin);
                fact.threshold = Some(threshold);
            }
            Form::PairValue => {
                let r = relation(graph, objects[0], objects[1])?;
                let v = match t {
                    QuestionType::Distance => r.distance_m,
                    QuestionType::HorizontalDistance => r.horizontal_distance_m,
                    QuestionType::VerticalDistance => r.vertical_distance_m,
                    _ => r.gap_m,
                };
                // A separation within the measurement's uncertainty ("3 cm apart vertically" for two objects at the
                // same height) is noise, not an answer.
                let threshold = f64::from(m.min_quantity_m).max(position(r));
                if !(v.is_finite() && f64::from(v) > threshold) {
                    return None;
                }
                fact.value = Some(f64::from(v));
                fact.threshold = Some(threshold);
            }
            Form::ObjectValue => {
                let o = &graph.objects[objects[0] as usize];
                let v = match t {
                    QuestionType::Width => o.width_m,
                    QuestionType::Height => o.height_m,
                    QuestionType::Depth => o.depth_m,
                    _ => o.distance_to_camera_m,
                };
                if !(v.is_finite() && v >= m.min_quantity_m) {
                    return None;
                }
                fact.value = Some(f64::from(v));
            }
            Form::Direction => {
                let r = relation(graph, objects[0], objects[1])?;
                let h = f64::from(r.horizontal_distance_m);
                if !(h.is_finite() && h > position(r)) {
                    return None;
                }
                // The bearing's uncertainty (degrees) from the positions' uncertainty across the line between them.
                let spread = (f64::from(r.sigma_m) / h).atan().to_degrees();
                let threshold = f64::from(m.min_clock_margin_deg).max(f64::from(m.k_sigma) * spread);
                let margin = f64::from(r.clock_margin_deg);
                if margin.is_nan() || margin <= threshold || !(1..=12).contains(&r.clock_hour) {
                    return None;
                }
                fact.value = Some(f64::from(r.clock_hour));
                fact.margin = Some(margin);
                fact.threshold = Some(threshold);
            }
            Form::HeightDifference => {
                let (margin, threshold) = relation_margin(graph, Relation::Taller, objects[0], objects[1], m)?;
                // Both heights are whole (`may_answer`): the difference is asked.
                if margin.abs() <= threshold {
                    return None;
                }
                let (x, y) = if margin > 0.0 { (objects[0], objects[1]) } else { (objects[1], objects[0]) };
                let h = |i: u32| f64::from(graph.objects[i as usize].height_m);
                fact.winner = Some(x);
                fact.value = Some(margin.abs());
                fact.values = Some((h(x), h(y)));
                fact.margin = Some(margin);
                fact.threshold = Some(threshold);
            }
            Form::CloserTo => {
                let (rb, rc) = (relation(graph, objects[0], objects[1])?, relation(graph, objects[0], objects[2])?);
                let (db, dc) = (f64::from(rb.distance_m), f64::from(rc.distance_m));
                let threshold = position(rb).max(position(rc));
                let margin = dc - db;
                if margin.is_nan() || margin.abs() <= threshold {
                    return None;
                }
                let (x, dx, dy) = if margin > 0.0 { (objects[1], db, dc) } else { (objects[2], dc, db) };
                fact.winner = Some(x);
                fact.value = Some(margin.abs());
                fact.values = Some((dx, dy));
                fact.margin = Some(margin);
                fact.threshold = Some(threshold);
            }
            Form::PassBetween => {
                let r = relation(graph, objects[0], objects[1])?;
                let grounded = |i: u32| graph.objects[i as usize].bottom_m.abs() <= m.ground_contact_m;
                let gap = f64::from(r.gap_m);
                if !(grounded(objects[0]) && grounded(objects[1]) && gap.is_finite() && robot_m > 0.0) {
                    return None;
                }
                let threshold = position(r);
                let margin = gap - robot_m;
                if margin.is_nan() || margin.abs() <= threshold {
                    return None;
                }
                // The gap to a partly hidden object is an upper bound: "no" holds, "yes" may not.
                let bounded = self.any_hidden(objects);
                if margin > 0.0 && bounded {
                    return None;
                }
                fact.value_at_most = bounded;
                fact.truth = Some(margin > 0.0);
                fact.value = Some(gap);
                fact.margin = Some(margin);
                fact.threshold = Some(threshold);
                fact.robot_m = Some(robot_m);
            }
        }
        Some(fact)
    }
}

#[cfg(test)]
mod tests {
    use super::{class_in, cut_edge_flags, Margins};

    fn box_cut_off(b: [f32; 4], width: u32, height: u32, px: Option<f32>) -> bool {
        cut_edge_flags(b, [width, height], None, px).contains(&true)
    }

    #[test]
    fn floor_standing_classes_are_found_by_the_last_word_of_the_label() {
        let classes = Margins::default().floor_standing;
        for label in ["chair", "office chair", "Dining_Table", "coffee-table", "person", " sofa "] {
            assert!(class_in(label, &classes), "{label}");
        }
        for label in ["chair cushion", "table lamp", "cabinet", "tablet", "cup", ""] {
            assert!(!class_in(label, &classes), "{label}");
        }
        assert!(!class_in("chair", &[]));
        for bad in ["office chair", "dining_table", "coffee-table", "chair\t", "", "Chair"] {
            let m = Margins { floor_standing: vec![bad.into()], ..Margins::default() };
            assert!(m.validate().is_err(), "{bad:?}");
        }
        assert!(class_in("Стул", &["стул".to_string()]) && !class_in("Стол", &["стул".to_string()]));
        let m: Margins = serde_json::from_str(r#"{"floor_standing": null}"#).unwrap();
        assert!(m.floor_standing.is_empty());
        let m: Margins = serde_json::from_str("{}").unwrap();
        assert_eq!(m, Margins::default());
        assert!(Margins::default().validate().is_ok());
    }

    #[test]
    fn boxes_within_the_margin_of_any_edge_are_cut_off() {
        let cut = |b: [f32; 4]| box_cut_off(b, 640, 480, Some(2.0));
        assert!(!cut([100.0, 100.0, 200.0, 200.0]));
        // Each edge, at the margin (cut off) and one pixel inside it (whole); x1 and y1 are exclusive.
        assert_eq!(cut_edge_flags([100.0, 2.0, 638.0, 200.0], [640, 480], None, Some(2.0)), [false, true, true, false]);
        assert!(cut([2.0, 100.0, 200.0, 200.0]) && !cut([3.0, 100.0, 200.0, 200.0]));
        assert!(cut([100.0, 2.0, 200.0, 200.0]) && !cut([100.0, 3.0, 200.0, 200.0]));
        assert!(cut([100.0, 100.0, 638.0, 200.0]) && !cut([100.0, 100.0, 637.0, 200.0]));
        assert!(cut([100.0, 100.0, 200.0, 478.0]) && !cut([100.0, 100.0, 200.0, 477.0]));
        // Past the image (an annotated box may be), and the whole image.
        assert!(cut([-30.0, 100.0, 200.0, 200.0]) && cut([100.0, 100.0, 700.0, 200.0]));
        assert!(cut([0.0, 0.0, 640.0, 480.0]));
        // No box, no image, no rule.
        assert!(!cut([0.0; 4]) && !cut([50.0, 50.0, 50.0, 80.0]));
        assert!(!box_cut_off([0.0, 0.0, 10.0, 10.0], 0, 0, Some(2.0)));
        assert!(!box_cut_off([0.0, 0.0, 640.0, 480.0], 640, 480, None));
        // A margin of 0 still takes a box at the edge as cut off.
        assert!(box_cut_off([0.0, 10.0, 20.0, 30.0], 640, 480, Some(0.0)));
        // A box reaching into the margins without depth by more than 5% of its size (and 2 px) is cut off there;
        // one touching the depth's edge, or reaching in by less, is not (the box shows where the object ends).
        let cut = |b: [f32; 4]| cut_edge_flags(b, [640, 480], Some([38, 45, 606, 472]), Some(2.0));
        assert_eq!(cut([235.0, 205.0, 635.0, 470.0]), [false, false, true, false]);
        assert_eq!(cut([502.0, 170.0, 606.0, 250.0]), [false; 4]);
        assert_eq!(cut([18.0, 62.0, 156.0, 480.0]), [true, false, false, true]);
        assert_eq!(cut([30.0, 62.0, 190.0, 480.0]), [false, false, false, true]);
        // 5% of a 100-px box is 5 px: 33 is in, 32.9 past; of a 20-px box, the 2 px margin counts.
        assert!(!cut([33.0, 100.0, 133.0, 200.0])[0]);
        assert!(cut([32.9, 100.0, 132.9, 200.0])[0]);
        assert!(!cut([100.0, 43.0, 120.0, 63.0])[1] && cut([100.0, 42.9, 120.0, 62.9])[1]);
        // A depth frame that is not inside the image is ignored.
        let odd = |d| cut_edge_flags([100.0, 100.0, 200.0, 200.0], [640, 480], Some(d), Some(2.0));
        assert_eq!(odd([700, 500, 900, 600]), [false; 4]);
        assert_eq!(odd([10, 10, 10, 400]), [false; 4]);
    }
}
