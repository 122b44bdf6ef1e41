//! The template bank: question and answer phrasings per question type, as data (`templates/en.toml`).
//!
//! Each table of the bank is named after a [`QuestionType`] and holds `questions` plus either `yes` and `no`
//! (yes/no types) or `answers`; `pass_between` may add `no_at_most`, the "no" answers whose gap is only an upper
//! bound (one of the two objects is partly hidden; without the list such questions are not asked). Placeholders
//! in braces are filled with object references and formatted values; a placeholder that begins a sentence is
//! capitalised. The bank is checked when it is loaded: every type present,
//! at least [`MIN_QUESTIONS`] questions and [`MIN_ANSWERS`] answers per list, only the placeholders a type
//! provides, the required ones in every phrasing, no duplicates, no unknown tables or keys.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::types::{Form, QuestionType};
use crate::error::{Error, Result};

/// The built-in English bank.
pub const BUILTIN_TEMPLATES: &str = include_str!("../../templates/en.toml");

/// At least this many question phrasings per type.
pub const MIN_QUESTIONS: usize = 20;
/// At least this many answer phrasings per list (each of `yes` and `no` for yes/no types).
pub const MIN_ANSWERS: usize = 10;

/// A value a template can refer to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    A = 0,
    B,
    C,
    X,
    Y,
    Value,
    XValue,
    YValue,
    Hour,
    Robot,
}

/// Number of [`Slot`]s.
pub const SLOTS: usize = 10;

impl Slot {
    const ALL: [Slot; SLOTS] =
        [Slot::A, Slot::B, Slot::C, Slot::X, Slot::Y, Slot::Value, Slot::XValue, Slot::YValue, Slot::Hour, Slot::Robot];

    fn name(self) -> &'static str {
        ["A", "B", "C", "X", "Y", "value", "x_value", "y_value", "hour", "robot"][self as usize]
    }

    fn from_name(name: &str) -> Option<Slot> {
        Slot::ALL.into_iter().find(|s| s.name() == name)
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(Box<str>),
    Slot { slot: Slot, capitalize: bool },
}

/// One phrasing, split into text and placeholders when the bank is loaded.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
    source: Box<str>,
    /// Whether its own words call the objects things ("object", "items", ...) or treat them as things ("placed"):
    /// not for a question about a person.
    calls_things: bool,
}

impl Template {
    fn parse(text: &str) -> std::result::Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut literal = String::new();
        while let Some(open) = rest.find(['{', '}']) {
            if rest.as_bytes()[open] == b'}' {
                return Err(format!("unmatched '}}' in {text:?}"));
            }
            literal.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or_else(|| format!("unclosed '{{' in {text:?}"))?;
            let name = &after[..close];
            let slot = Slot::from_name(name).ok_or_else(|| format!("unknown placeholder {{{name}}} in {text:?}"))?;
            let before = literal.trim_end();
            let capitalize = before.is_empty() || before.ends_with(['.', '?', '!']);
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal).into_boxed_str()));
            }
            parts.push(Part::Slot { slot, capitalize });
            rest = &after[close + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal.into_boxed_str()));
        }
        let calls_things = parts.iter().any(|p| match p {
            Part::Text(t) => t.split(|c: char| !c.is_alphabetic()).any(|w| {
                ["object", "objects", "item", "items", "thing", "things", "placed"].contains(&w.to_lowercase().as_str())
            }),
            Part::Slot { .. } => false,
        });
        Ok(Template { parts, source: text.into(), calls_things })
    }

    fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Slot { slot, .. } => Some(*slot),
            Part::Text(_) => None,
        })
    }

    /// Whether its own words call the objects things ("Which object is taller, {A} or {B}?") or treat them as
    /// things ("Is {A} placed to the left of {B}?"): such a phrasing is not used for a question about a person.
    pub fn calls_things(&self) -> bool {
        self.calls_things
    }

    /// The phrasing as written in the bank.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Appends the phrasing with its placeholders filled from `values` (indexed by [`Slot`]).
    pub fn render_into(&self, out: &mut String, values: &[&str; SLOTS]) {
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Slot { slot, capitalize } => {
                    let v = values[*slot as usize];
                    let mut chars = v.chars();
                    match (capitalize, chars.next()) {
                        (true, Some(first)) => {
                            out.extend(first.to_uppercase());
                            out.push_str(chars.as_str());
                        }
                        _ => out.push_str(v),
                    }
                }
            }
        }
    }
}

/// The phrasings of one question type.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TypeTemplates {
    pub questions: Vec<Template>,
    /// Answers of yes/no types when the statement holds / does not hold.
    pub yes: Vec<Template>,
    pub no: Vec<Template>,
    /// "No" answers of `pass_between` when the gap is only an upper bound (a partly hidden object's closest
    /// surface may lie out of view): "at most about {value}". Empty when the bank has none; such questions are
    /// then not asked.
    pub no_at_most: Vec<Template>,
    /// Answers of the other types.
    pub answers: Vec<Template>,
}

/// Every question type's phrasings.
#[derive(Clone, Debug, PartialEq)]
pub struct TemplateBank {
    /// Indexed by [`QuestionType::index`].
    types: Vec<TypeTemplates>,
    /// Where the bank came from (`builtin:templates/en.toml` for the built-in one).
    pub source: String,
}

/// Which placeholders a list may use and which every phrasing of it must use.
struct SlotRule {
    allowed: &'static [Slot],
    required: &'static [Slot],
}

fn rules(form: Form) -> (SlotRule, Option<(SlotRule, SlotRule)>, Option<SlotRule>) {
    use Slot::*;
    let q = |allowed: &'static [Slot]| SlotRule { allowed, required: allowed };
    match form {
        Form::Predicate(_) => (
            q(&[A, B]),
            Some((SlotRule { allowed: &[A, B], required: &[] }, SlotRule { allowed: &[A, B], required: &[] })),
            None,
        ),
        Form::Choice(_) => (q(&[A, B]), None, Some(SlotRule { allowed: &[X, Y], required: &[X] })),
        Form::PairValue => (q(&[A, B]), None, Some(SlotRule { allowed: &[A, B, Value], required: &[Value] })),
        Form::ObjectValue => (q(&[A]), None, Some(SlotRule { allowed: &[A, Value], required: &[Value] })),
        Form::Direction => (q(&[A, B]), None, Some(SlotRule { allowed: &[A, B, Hour], required: &[Hour] })),
        Form::HeightDifference => (
            q(&[A, B]),
            None,
            Some(SlotRule { allowed: &[X, Y, Value, XValue, YValue], required: &[X, Y, Value, XValue, YValue] }),
        ),
        Form::CloserTo => (
            q(&[A, B, C]),
            None,
            Some(SlotRule { allowed: &[A, X, Y, Value, XValue, YValue], required: &[A, X, Value] }),
        ),
        Form::PassBetween => {
            let answer = || SlotRule { allowed: &[A, B, Value, Robot], required: &[Value, Robot] };
            (q(&[A, B, Robot]), Some((answer(), answer())), None)
        }
    }
}

fn parse_list(
    table: &toml::Table,
    key: &str,
    minimum: usize,
    rule: &SlotRule,
) -> std::result::Result<Vec<Template>, String> {
    let list = table.get(key).ok_or_else(|| format!("missing `{key}`"))?;
    let items = list.as_array().ok_or_else(|| format!("`{key}` must be an array of strings"))?;
    let mut out: Vec<Template> = Vec::with_capacity(items.len());
    for item in items {
        let text = item.as_str().ok_or_else(|| format!("`{key}` must be an array of strings"))?;
        if text.trim().is_empty() {
            return Err(format!("`{key}` has an empty phrasing"));
        }
        let t = Template::parse(text).map_err(|m| format!("`{key}`: {m}"))?;
        for slot in t.slots() {
            if !rule.allowed.contains(&slot) {
                return Err(format!("`{key}`: placeholder {{{}}} is not available here in {text:?}", slot.name()));
            }
        }
        for slot in rule.required {
            if !t.slots().any(|s| s == *slot) {
                return Err(format!("`{key}`: {text:?} lacks the placeholder {{{}}}", slot.name()));
            }
        }
        if out.iter().any(|o| o.source() == text) {
            return Err(format!("`{key}`: duplicate phrasing {text:?}"));
        }
        out.push(t);
    }
    if out.len() < minimum {
        return Err(format!("`{key}` has {} phrasings, at least {minimum} are required", out.len()));
    }
    Ok(out)
}

impl TemplateBank {
    /// Parses and checks a bank; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<TemplateBank> {
        let err = |message: String| Error::Template { path: path.to_path_buf(), message };
        let root: toml::Table = text.parse().map_err(|e: toml::de::Error| err(e.to_string()))?;
        for (key, value) in &root {
            match (key.as_str(), value) {
                ("version", toml::Value::Integer(1)) => {}
                ("version", v) => return Err(err(format!("unsupported version {v} (expected 1)"))),
                (name, _) if QuestionType::from_name(name).is_some() => {}
                (name, _) => return Err(err(format!("unknown table `{name}` (not a question type)"))),
            }
        }
        let mut types = Vec::with_capacity(QuestionType::ALL.len());
        for &t in QuestionType::ALL {
            let in_type = |m: String| err(format!("[{}] {m}", t.name()));
            let table = root
                .get(t.name())
                .ok_or_else(|| err(format!("missing table [{}]", t.name())))?
                .as_table()
                .ok_or_else(|| in_type("must be a table".into()))?;
            let (question_rule, yes_no, answer_rule) = rules(t.form());
            let known: &[&str] = match t.form() {
                Form::PassBetween => &["questions", "yes", "no", "no_at_most"],
                _ if yes_no.is_some() => &["questions", "yes", "no"],
                _ => &["questions", "answers"],
            };
            if let Some(k) = table.keys().find(|k| !known.contains(&k.as_str())) {
                return Err(in_type(format!("unknown key `{k}` (expected {})", known.join(", "))));
            }
            let mut tt = TypeTemplates {
                questions: parse_list(table, "questions", MIN_QUESTIONS, &question_rule).map_err(in_type)?,
                ..TypeTemplates::default()
            };
            if let Some((yes, no)) = yes_no {
                tt.yes = parse_list(table, "yes", MIN_ANSWERS, &yes).map_err(in_type)?;
                tt.no = parse_list(table, "no", MIN_ANSWERS, &no).map_err(in_type)?;
                if table.contains_key("no_at_most") {
                    tt.no_at_most = parse_list(table, "no_at_most", MIN_ANSWERS, &no).map_err(in_type)?;
                }
            }
            if let Some(rule) = answer_rule {
                tt.answers = parse_list(table, "answers", MIN_ANSWERS, &rule).map_err(in_type)?;
            }
            types.push(tt);
        }
        Ok(TemplateBank { types, source: path.display().to_string() })
    }

    /// Reads and checks a bank file.
    pub fn load(path: &Path) -> Result<TemplateBank> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Template { path: path.to_path_buf(), message: format!("cannot read: {e}") })?;
        TemplateBank::parse(&text, path)
    }

    /// The built-in English bank (parsed once).
    pub fn builtin() -> Result<&'static TemplateBank> {
        static BANK: OnceLock<std::result::Result<TemplateBank, String>> = OnceLock::new();
        let path = PathBuf::from("builtin:templates/en.toml");
        BANK.get_or_init(|| TemplateBank::parse(BUILTIN_TEMPLATES, &path).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|message| Error::Template { path, message: message.clone() })
    }

    /// The phrasings of one type.
    pub fn get(&self, t: QuestionType) -> &TypeTemplates {
        &self.types[t.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_split_and_capitalise_at_sentence_starts() {
        let t = Template::parse("{A} is left of {B}. {B} is right of {A}?").unwrap();
        let mut values = [""; SLOTS];
        values[Slot::A as usize] = "the red chair";
        values[Slot::B as usize] = "the table";
        let mut out = String::new();
        t.render_into(&mut out, &values);
        assert_eq!(out, "The red chair is left of the table. The table is right of the red chair?");
        assert!(Template::parse("{Z} is").is_err());
        assert!(Template::parse("{A is").is_err());
        assert!(Template::parse("A} is").is_err());
    }

    /// Objects may be people, so the built-in bank never calls an object "it" ("the rightmost person, because it
    /// is further right"): every "it" left is in an impersonal frame ("is it true that", "it is {X} that") or, in
    /// `pass_between`, the robot.
    #[test]
    fn builtin_phrasings_never_call_an_object_it() {
        const IMPERSONAL: &[&str] = &[
            "is it true that",
            "does it look like",
            "would it be correct to say",
            "no, it is {b} that",
            "it's the other way around",
            "it's {x}.",
            "it's {x}:",
            "it is {x} that",
            "how far would it be?",
            "how far is it from",
            "how far is it between",
            "what would it be?",
            "is it possible for",
            "it's roughly {value} from {a} to {b}",
        ];
        const ROBOT: &[&str] = &[
            "can it move",
            "can it pass",
            "can it get",
            "it can pass",
            "it should fit",
            "it won't fit",
            "make it through",
        ];
        let bank = TemplateBank::builtin().unwrap();
        let mut checked = 0;
        for &t in QuestionType::ALL {
            let tt = bank.get(t);
            let robot = if t == QuestionType::PassBetween { ROBOT } else { &[] };
            for phrasing in tt.questions.iter().chain(&tt.yes).chain(&tt.no).chain(&tt.no_at_most).chain(&tt.answers) {
                // Whole words only: the text and every allowed frame between spaces, punctuation split off.
                let spaced = |s: &str| {
                    let mut out = String::from(" ");
                    for c in s.to_lowercase().chars() {
                        match c {
                            ',' | '?' | '.' | ':' | ';' | '!' => out.extend([' ', c, ' ']),
                            _ => out.push(c),
                        }
                    }
                    out + " "
                };
                let mut text = spaced(phrasing.source());
                for allowed in IMPERSONAL.iter().chain(robot) {
                    text = text.replace(&spaced(allowed), " ");
                }
                for word in text.split_whitespace() {
                    let pronoun = word == "it" || word == "its" || word == "itself" || word.starts_with("it'");
                    assert!(!pronoun, "[{}] {:?} calls an object {word:?}", t.name(), phrasing.source());
                }
                checked += 1;
            }
        }
        assert!(checked > 1000, "{checked}");
    }

    #[test]
    fn builtin_bank_loads_and_meets_the_counts() {
        let bank = TemplateBank::builtin().unwrap();
        for &t in QuestionType::ALL {
            let tt = bank.get(t);
            assert!(tt.questions.len() >= MIN_QUESTIONS, "{}", t.name());
            // Questions about a person have nearly all the phrasings, and no answer calls the objects things.
            assert!(tt.questions.iter().filter(|q| q.calls_things()).count() <= 4, "{}", t.name());
            let answers = || tt.yes.iter().chain(&tt.no).chain(&tt.no_at_most).chain(&tt.answers);
            assert!(answers().all(|a| !a.calls_things()), "{}", t.name());
            if t.is_binary() {
                assert!(tt.yes.len() >= MIN_ANSWERS && tt.no.len() >= MIN_ANSWERS, "{}", t.name());
            } else {
                assert!(tt.answers.len() >= MIN_ANSWERS, "{}", t.name());
            }
        }
    }
}
