//! Templating: scene graphs to question-answer pairs.
//!
//! For each frame: name the objects unambiguously ([`refer`]), draw question types by the mix and objects at
//! random among those the type may be asked of ([`FrameFacts::may_answer`]; from the seed and the frame's name only), skip the questions that the objects' names answer, keep only
//! questions whose answer the measurement supports ([`facts`]), balance yes and no, and phrase them from the template bank ([`templates`]) with human numbers
//! ([`numbers`]). Every pair carries its provenance: frame, objects, question type, value, margin.
//!
//! ```no_run
//! use spatialsynth::qa::{generate_frame, QaOptions, TemplateBank};
//! # fn main() -> Result<(), spatialsynth::Error> {
//! let bank = TemplateBank::builtin()?;
//! let options = QaOptions::default();
//! # let graph: spatialsynth::scene::SceneGraph = unimplemented!();
//! for qa in generate_frame(&graph, bank, &options)? {
//!     println!("{} -> {}", qa.question, qa.answer);
//! }
//! # Ok(()) }
//! ```

mod exhaust;
pub mod facts;
pub mod numbers;
pub mod refer;
pub mod templates;
pub mod types;

use serde::{Deserialize, Serialize};

pub use facts::{evaluate, Fact, FrameFacts, Margins};
pub use numbers::{UnitSystem, Units};
pub use refer::{described, references, Basis, Reference, ReferenceRule};
pub use templates::TemplateBank;
pub use types::{Category, Form, QuestionType, Relation};

use crate::error::{Error, Result};
use crate::scene::SceneGraph;
use templates::{Slot, SLOTS};

/// Relative weights of the question types: a category weight shared among its types, or a type's own weight.
/// Serialised as a map from question-type name to weight (types not listed weigh 0).
#[derive(Clone, Debug, PartialEq)]
pub struct TypeMix {
    /// Weight of each type, indexed by [`QuestionType::index`].
    weights: Vec<f64>,
}

impl Serialize for TypeMix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let map: std::collections::BTreeMap<&str, f64> =
            QuestionType::ALL.iter().map(|t| (t.name(), self.weight(*t))).collect();
        map.serialize(s)
    }
}

impl<'de> Deserialize<'de> for TypeMix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let map = std::collections::BTreeMap::<String, f64>::deserialize(d)?;
        let mut weights = vec![0.0; QuestionType::ALL.len()];
        for (name, w) in map {
            let t = QuestionType::from_name(&name)
                .ok_or_else(|| D::Error::custom(format!("unknown question type {name:?}")))?;
            if !(w.is_finite() && w >= 0.0) {
                return Err(D::Error::custom(format!("weight of {name} must be zero or positive, got {w}")));
            }
            weights[t.index()] = w;
        }
        if weights.iter().all(|w| *w == 0.0) {
            return Err(D::Error::custom("every question type has weight 0"));
        }
        Ok(TypeMix { weights })
    }
}

impl Default for TypeMix {
    fn default() -> Self {
        TypeMix::from_spec("qualitative=1,quantitative=1,reasoning=0.5").unwrap_or(TypeMix { weights: vec![1.0; 36] })
    }
}

impl TypeMix {
    /// Parses `name=weight,...` where a name is a category (`qualitative`, `quantitative`, `reasoning`: the weight
    /// is shared equally among its types) or a question type (its own weight, replacing the category's share).
    /// Categories not named keep weight 1; `all=0` first switches everything off.
    pub fn from_spec(spec: &str) -> std::result::Result<TypeMix, String> {
        let mut category = [1.0f64; 3];
        let mut explicit: Vec<(QuestionType, f64)> = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, weight) = item.split_once('=').ok_or_else(|| format!("mix item {item:?} is not name=weight"))?;
            let w: f64 = weight.trim().parse().map_err(|_| format!("mix item {item:?}: {weight:?} is not a number"))?;
            if !(w.is_finite() && w >= 0.0) {
                return Err(format!("mix item {item:?}: weights must be zero or positive"));
            }
            match name.trim() {
                "all" => category = [w; 3],
                n => match (Category::ALL.iter().position(|c| c.name() == n), QuestionType::from_name(n)) {
                    (Some(c), _) => category[c] = w,
                    (None, Some(t)) => explicit.push((t, w)),
                    (None, None) => return Err(format!("mix: unknown category or question type {n:?}")),
                },
            }
        }
        let mut weights = vec![0.0; QuestionType::ALL.len()];
        for (c, cat) in Category::ALL.iter().enumerate() {
            let members: Vec<&QuestionType> = QuestionType::ALL.iter().filter(|t| t.category() == *cat).collect();
            for t in &members {
                weights[t.index()] = category[c] / members.len() as f64;
            }
        }
        for (t, w) in explicit {
            weights[t.index()] = w;
        }
        if weights.iter().all(|w| *w == 0.0) {
            return Err("mix: every question type has weight 0".into());
        }
        Ok(TypeMix { weights })
    }

    pub fn weight(&self, t: QuestionType) -> f64 {
        self.weights.get(t.index()).copied().unwrap_or(0.0)
    }
}

/// Everything that shapes the generated questions. Written to the dataset's `dataset.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QaOptions {
    /// Same scene graphs + same seed + same options = byte-identical output.
    pub seed: u64,
    /// Questions per image (fewer when the scene cannot support that many distinct ones).
    pub qa_per_image: usize,
    pub units: Units,
    pub mix: TypeMix,
    pub margins: Margins,
    pub references: ReferenceRule,
    /// Robot widths (metres) drawn for pass-between questions.
    pub robot_widths_m: Vec<f64>,
    /// Classes of people, by the last word of the label: a question naming one is not phrased with "object",
    /// "item" or "thing" ("Which object is taller, the person or the chair?"); single lowercase words. Empty (or
    /// `null`): no class is; a `--qa-config` without it gets the default.
    #[serde(deserialize_with = "facts::null_as_empty")]
    pub people: Vec<String>,
}

/// The default [`QaOptions::people`].
pub const PEOPLE: &[&str] = &[
    "person",
    "people",
    "human",
    "adult",
    "man",
    "men",
    "woman",
    "women",
    "child",
    "children",
    "kid",
    "kids",
    "baby",
    "boy",
    "girl",
    "pedestrian",
    "rider",
    "cyclist",
];

impl Default for QaOptions {
    fn default() -> Self {
        QaOptions {
            seed: 0,
            qa_per_image: 16,
            units: Units::Metric,
            mix: TypeMix::default(),
            margins: Margins::default(),
            references: ReferenceRule::default(),
            robot_widths_m: vec![0.3, 0.4, 0.5, 0.6, 0.8, 1.0],
            people: PEOPLE.iter().map(|c| c.to_string()).collect(),
        }
    }
}

impl QaOptions {
    pub fn validate(&self) -> Result<()> {
        let err = |message: String| Error::Config { message };
        self.margins.validate().map_err(err)?;
        if self.qa_per_image == 0 {
            return Err(err("qa_per_image must be at least 1".into()));
        }
        if self.robot_widths_m.iter().any(|w| !(w.is_finite() && *w > 0.0)) {
            return Err(err(format!("robot_widths_m must be positive, got {:?}", self.robot_widths_m)));
        }
        if !facts::single_lowercase_words(&self.people) {
            return Err(err(format!("people must hold single lowercase words, got {:?}", self.people)));
        }
        Ok(())
    }
}

/// One question-answer pair with its provenance (a row of the Parquet file; an entry of `qa` in the JSON Lines).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QaRecord {
    /// `frame#k`, unique in a dataset.
    pub id: String,
    pub frame: String,
    /// The colour image, as the scene graph names it.
    pub image: Option<String>,
    pub question_type: QuestionType,
    pub category: Category,
    pub question: String,
    pub answer: String,
    /// Object ids of the scene graph, in question order (A, B, C).
    pub objects: Vec<u32>,
    pub labels: Vec<String>,
    /// How the question names each object.
    pub references: Vec<String>,
    /// The answer of a yes/no question.
    pub answer_bool: Option<bool>,
    /// The object the answer names (winner of a choice, the taller, the closer).
    pub answer_object: Option<u32>,
    /// The measured quantity behind the answer (exact, before rounding).
    pub value: Option<f64>,
    /// `m` for lengths, `clock_hour` for directions.
    pub unit: Option<String>,
    /// The signed margin of the fact and the threshold it cleared (see [`Fact`]).
    pub margin: Option<f64>,
    pub threshold: Option<f64>,
    pub robot_width_m: Option<f64>,
    /// Whether `value` is only an upper bound: the gap of a pass-between "no" to a partly hidden object, whose
    /// closest surface may lie out of view (the answer says "at most").
    pub value_at_most: bool,
    /// The unit system of the answer's numbers (`null` when it has none).
    pub unit_system: Option<UnitSystem>,
    /// Indices of the phrasings used (question; answer within its list).
    pub question_template: u32,
    pub answer_template: u32,
}

/// SplitMix64: a small, fast generator; each frame gets its own stream from the seed and its name.
struct Rng(u64);

impl Rng {
    fn for_frame(seed: u64, frame: &str) -> Rng {
        // FNV-1a of the name, mixed with the seed.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in frame.as_bytes() {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        let mut r = Rng(h ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        r.next();
        r
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn coin(&mut self) -> bool {
        self.next() >> 63 == 1
    }
}

/// Attempts per requested question before a frame gives up (scenes with few answerable facts).
const ATTEMPTS_PER_QUESTION: usize = 24;

/// After this many draws per requested question, a frame still short of questions works out which draws can still
/// give one, and stops when none can (when that costs at most half the draws left).
const EXHAUSTION_AFTER_QUESTIONS: usize = 2;

/// The questions of one frame, deterministic in (graph, seed, options).
pub fn generate_frame(graph: &SceneGraph, bank: &TemplateBank, options: &QaOptions) -> Result<Vec<QaRecord>> {
    let mut out = Vec::new();
    generate_frame_into(graph, bank, options, &mut out);
    Ok(out)
}

/// As [`generate_frame`], appending to `out` (lets a caller reuse its buffer).
pub fn generate_frame_into(graph: &SceneGraph, bank: &TemplateBank, options: &QaOptions, out: &mut Vec<QaRecord>) {
    generate_frame_counting_draws(graph, bank, options, out, true);
}

/// [`generate_frame_into`] with the stop for a frame whose questions have run out on or off (off: every draw is
/// spent, as before the stop), returning the draws made: for the test that the stop changes no question.
#[doc(hidden)]
pub fn generate_frame_counting_draws(
    graph: &SceneGraph,
    bank: &TemplateBank,
    options: &QaOptions,
    out: &mut Vec<QaRecord>,
    stop_when_spent: bool,
) -> usize {
    let facts = FrameFacts::new(graph, &options.margins);
    let described = refer::described_in(&facts, &options.references);
    let people: Vec<bool> = graph.objects.iter().map(|o| facts::class_in(&o.label, &options.people)).collect();
    let referable: Vec<u32> = (0..described.len() as u32).filter(|&i| described[i as usize].is_some()).collect();
    // Each type draws its objects from the referable ones it may be asked of (no draw is spent on the size of a
    // partly hidden object, or on where an object cut off by the frame is), and is left out with too few.
    let pools = Pools::new(&referable, |t, o| facts.may_answer(t, o));
    let types: Vec<(QuestionType, f64)> = QuestionType::ALL
        .iter()
        .map(|&t| (t, options.mix.weight(t)))
        .filter(|&(t, w)| w > 0.0 && t.arity() <= pools.get(t).len())
        .collect();
    let total: f64 = types.iter().map(|(_, w)| w).sum();
    if types.is_empty() || total <= 0.0 {
        return 0;
    }
    let mut rng = Rng::for_frame(options.seed, &graph.frame);
    let mut want_yes = rng.coin();
    let mut asked: Vec<(u32, [u32; 3])> = Vec::new();
    let first = out.len();
    let draws = options.qa_per_image * ATTEMPTS_PER_QUESTION;
    // Once a frame's draws run long, which of its candidates can still give a question (see `exhaust`).
    let mut spent: Option<exhaust::Exhaustion> = None;
    let mut made = 0;
    for d in 0..draws {
        if out.len() - first >= options.qa_per_image {
            break;
        }
        if stop_when_spent && d == EXHAUSTION_AFTER_QUESTIONS * options.qa_per_image {
            let budget = (draws - d) / 2;
            spent = exhaust::Exhaustion::new(&types, &pools, &facts, &described, options, &asked, budget);
        }
        if spent.as_ref().is_some_and(|e| e.spent(want_yes)) {
            break;
        }
        made += 1;
        let mut pick = rng.unit() * total;
        let mut slot = types.len() - 1;
        for (i, &(_, w)) in types.iter().enumerate() {
            if pick < w {
                slot = i;
                break;
            }
            pick -= w;
        }
        let t = types[slot].0;
        let pool = pools.get(t);
        let mut objects = [0u32; 3];
        let mut positions = [0usize; 3];
        for k in 0..t.arity() {
            loop {
                let j = rng.below(pool.len());
                let o = pool[j];
                if !objects[..k].contains(&o) {
                    objects[k] = o;
                    positions[k] = j;
                    break;
                }
            }
        }
        let objs = &mut objects[..t.arity()];
        if names_give_away(t, objs, &described) {
            continue;
        }
        let robot_index = match t {
            QuestionType::PassBetween if !options.robot_widths_m.is_empty() => rng.below(options.robot_widths_m.len()),
            _ => 0,
        };
        let robot = exhaust::robot_width(t, options, robot_index);
        let Some(mut fact) = facts.evaluate(t, objs, robot) else { continue };
        if let Some(truth) = fact.truth {
            if truth != want_yes {
                if t == QuestionType::PassBetween {
                    continue;
                }
                // Asking about (B, A) flips the answer of every relation (its margin is antisymmetric).
                objs.swap(0, 1);
                match facts.evaluate(t, objs, robot) {
                    Some(f) if f.truth == Some(want_yes) => fact = f,
                    _ => continue,
                }
            }
        } else if matches!(t.form(), Form::Choice(_) | Form::HeightDifference) && rng.coin() {
            // The winner comes first or second at random.
            objs.swap(0, 1);
            match facts.evaluate(t, objs, robot) {
                Some(f) => fact = f,
                None => continue,
            }
        }
        let key = (family(t), dedup_key(t, fact.objects()));
        if asked.contains(&key) {
            continue;
        }
        let Some(record) = render(graph, &described, &people, bank, options, &fact, &mut rng, out.len() - first) else {
            if let Some(e) = spent.as_mut().filter(|_| exhaust::Exhaustion::render_failure_lasts(t, options)) {
                let i = e.index(slot, &positions[..t.arity()], robot_index);
                e.kill(i, fact.truth.map(|_| want_yes));
            }
            continue;
        };
        if let Some(e) = spent.as_mut() {
            e.asked(&pools, key.0, key.1);
        }
        asked.push(key);
        if fact.truth.is_some() {
            want_yes = !want_yes;
        }
        out.push(record);
    }
    made
}

/// Whether `list` has a phrasing [`pick`] may use: any, or for a question about a person one that does not call
/// the objects things (none: a bank without `no_at_most`, or one whose every phrasing says "object").
fn usable(list: &[templates::Template], person: bool) -> bool {
    list.iter().any(|t| !(person && t.calls_things()))
}

/// A phrasing of a [`usable`] `list` at random, one draw; for a question about a person, among those that do not
/// call the objects things ("Which object is taller?").
fn pick(list: &[templates::Template], person: bool, rng: &mut Rng) -> usize {
    if !person {
        return rng.below(list.len());
    }
    let fit = list.iter().filter(|t| !t.calls_things()).count();
    list.iter().enumerate().filter(|(_, t)| !t.calls_things()).nth(rng.below(fit)).map_or(0, |(i, _)| i)
}

/// The objects each question type draws among, in one buffer (one allocation a frame, not one a type).
struct Pools {
    objects: Vec<u32>,
    /// Per [`QuestionType::index`], its range of `objects`; ascending ids.
    ranges: Vec<std::ops::Range<usize>>,
}

impl Pools {
    fn new(referable: &[u32], mut may: impl FnMut(QuestionType, u32) -> bool) -> Pools {
        let mut objects = Vec::with_capacity(referable.len() * QuestionType::ALL.len());
        let mut ranges = Vec::with_capacity(QuestionType::ALL.len());
        for &t in QuestionType::ALL {
            let start = objects.len();
            objects.extend(referable.iter().copied().filter(|&o| may(t, o)));
            ranges.push(start..objects.len());
        }
        Pools { objects, ranges }
    }

    fn get(&self, t: QuestionType) -> &[u32] {
        &self.objects[self.ranges[t.index()].clone()]
    }
}

/// Whether the names of a relation question's two objects already answer it ("Is the chair on the left to the left
/// of the chair on the right?"): see [`refer::Reference::gives_away`].
fn names_give_away(t: QuestionType, objects: &[u32], described: &[Option<refer::Reference>]) -> bool {
    let (Form::Predicate(rel) | Form::Choice(rel), &[a, b]) = (t.form(), objects) else { return false };
    match (&described[a as usize], &described[b as usize]) {
        (Some(ra), Some(rb)) => ra.gives_away(rb, rel),
        _ => false,
    }
}

/// Questions of one family about the same objects are asked once per image: in one conversation, "Is A left of
/// B?" would give away "Which is more to the right, A or B?", and a height comparison the height difference.
fn family(t: QuestionType) -> u32 {
    match t.form() {
        Form::Predicate(r) | Form::Choice(r) => match r {
            Relation::Left | Relation::Right => 100,
            Relation::Above | Relation::Below => 101,
            Relation::Front | Relation::Behind => 102,
            Relation::Taller | Relation::Shorter => 103,
            Relation::Wider | Relation::Thinner => 104,
            Relation::Bigger | Relation::Smaller => 105,
        },
        Form::HeightDifference => 103,
        _ => t.index() as u32,
    }
}

/// Questions about the same objects count once per type (A/B order aside, except for directions).
fn dedup_key(t: QuestionType, objects: &[u32]) -> [u32; 3] {
    match (t, objects) {
        (QuestionType::Direction, &[a, b]) => [a, b, u32::MAX],
        (_, &[a, b]) => [a.min(b), a.max(b), u32::MAX],
        (_, &[a, b, c]) => [a, b.min(c), b.max(c)],
        (_, &[a]) => [a, u32::MAX, u32::MAX],
        _ => [u32::MAX; 3],
    }
}

#[allow(clippy::too_many_arguments)]
fn render(
    graph: &SceneGraph,
    refs: &[Option<refer::Reference>],
    people: &[bool],
    bank: &TemplateBank,
    options: &QaOptions,
    fact: &Fact,
    rng: &mut Rng,
    k: usize,
) -> Option<QaRecord> {
    let t = fact.question_type;
    let tt = bank.get(t);
    let objects = fact.objects();
    let name = |o: u32| refs[o as usize].as_ref().map_or("", |r| r.text.as_str());
    let system = match options.units {
        Units::Metric => UnitSystem::Metric,
        Units::Imperial => UnitSystem::Imperial,
        Units::Mixed => {
            if rng.coin() {
                UnitSystem::Imperial
            } else {
                UnitSystem::Metric
            }
        }
    };
    let length = |v: Option<f64>| v.map(|v| numbers::format_length(v, system)).unwrap_or_default();
    let is_direction = t == QuestionType::Direction;
    let value = match (is_direction, fact.value) {
        (true, _) => String::new(),
        (false, v) => length(v),
    };
    let hour = match (is_direction, fact.value) {
        (true, Some(h)) => format!("{}", h as u32),
        _ => String::new(),
    };
    let (x_value, y_value) = match fact.values {
        Some((x, y)) => (length(Some(x)), length(Some(y))),
        None => (String::new(), String::new()),
    };
    let robot = length(fact.robot_m);
    // The numbers as written must tell the same story as the answer: two values that round to the same figure
    // (or the wrong way round) would read as a contradiction, so such a question is not asked.
    let read = |text: &str| numbers::parse_length(text).unwrap_or(f64::NAN);
    let consistent = match t.form() {
        Form::PassBetween => {
            let (gap, width) = (read(&value), read(&robot));
            if fact.truth == Some(true) {
                gap > width
            } else {
                gap < width
            }
        }
        Form::CloserTo => read(&x_value) < read(&y_value),
        Form::HeightDifference => read(&x_value) > read(&y_value),
        _ => true,
    };
    if !consistent {
        return None;
    }
    let winner = fact.winner;
    let loser = winner.and_then(|w| match t.form() {
        Form::CloserTo => objects[1..].iter().copied().find(|&o| o != w),
        _ => objects.iter().copied().find(|&o| o != w),
    });
    let mut values = [""; SLOTS];
    values[Slot::A as usize] = name(objects[0]);
    if objects.len() > 1 {
        values[Slot::B as usize] = name(objects[1]);
    }
    if objects.len() > 2 {
        values[Slot::C as usize] = name(objects[2]);
    }
    values[Slot::X as usize] = winner.map(name).unwrap_or("");
    values[Slot::Y as usize] = loser.map(name).unwrap_or("");
    values[Slot::Value as usize] = &value;
    values[Slot::XValue as usize] = &x_value;
    values[Slot::YValue as usize] = &y_value;
    values[Slot::Hour as usize] = &hour;
    values[Slot::Robot as usize] = &robot;

    let answers = match fact.truth {
        Some(true) => &tt.yes,
        Some(false) if fact.value_at_most => &tt.no_at_most,
        Some(false) => &tt.no,
        None => &tt.answers,
    };
    // People are not called objects or items. A list with no phrasing to use gives no question (checked before any
    // draw, so that the draws of the frame's later questions do not depend on it).
    let person = objects.iter().any(|&o| people[o as usize]);
    if !usable(&tt.questions, person) || !usable(answers, person) {
        return None;
    }
    let qi = pick(&tt.questions, person, rng);
    let ai = pick(answers, person, rng);
    let mut question = String::with_capacity(96);
    tt.questions[qi].render_into(&mut question, &values);
    let mut answer = String::with_capacity(96);
    answers[ai].render_into(&mut answer, &values);
    let has_number = fact.value.is_some() && !is_direction || fact.robot_m.is_some();
    Some(QaRecord {
        id: format!("{}#{k}", graph.frame),
        frame: graph.frame.clone(),
        image: graph.color.clone(),
        question_type: t,
        category: t.category(),
        question,
        answer,
        objects: objects.to_vec(),
        labels: objects.iter().map(|&o| graph.objects[o as usize].label.clone()).collect(),
        references: objects.iter().map(|&o| name(o).to_string()).collect(),
        answer_bool: fact.truth,
        answer_object: winner,
        value: fact.value,
        unit: fact.value.map(|_| if is_direction { "clock_hour".into() } else { "m".into() }),
        margin: fact.margin,
        threshold: fact.threshold,
        robot_width_m: fact.robot_m,
        value_at_most: fact.value_at_most,
        unit_system: has_number.then_some(system),
        question_template: qi as u32,
        answer_template: ai as u32,
    })
}
