//! The question types: 24 qualitative (12 relations × yes/no and "which of A or B"), 9 quantitative and 3
//! multi-step reasoning types.

use serde::{Deserialize, Serialize};

/// A binary spatial relation "A ⟨relation⟩ B", each the mirror of another (left/right, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    Left,
    Right,
    Above,
    Below,
    Front,
    Behind,
    Taller,
    Shorter,
    Wider,
    Thinner,
    Bigger,
    Smaller,
}

impl Relation {
    pub const ALL: [Relation; 12] = [
        Relation::Left,
        Relation::Right,
        Relation::Above,
        Relation::Below,
        Relation::Front,
        Relation::Behind,
        Relation::Taller,
        Relation::Shorter,
        Relation::Wider,
        Relation::Thinner,
        Relation::Bigger,
        Relation::Smaller,
    ];

    /// Whether the relation compares positions (left, right, above, below, in front, behind), not sizes.
    pub fn is_position(self) -> bool {
        matches!(
            self,
            Relation::Left | Relation::Right | Relation::Above | Relation::Below | Relation::Front | Relation::Behind
        )
    }
}

/// What a question asks for, which decides its templates' placeholders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// "Is A left of B?": `yes`/`no` answers over {A}, {B}.
    Predicate(Relation),
    /// "Which is more to the left, A or B?": answers name the winner {X} (and {Y}).
    Choice(Relation),
    /// A measured quantity of a pair (`{value}`).
    PairValue,
    /// A measured quantity of one object (`{value}`).
    ObjectValue,
    /// A clock direction (`{hour}`).
    Direction,
    /// The height difference with both heights (`{X}` taller, `{value}`, `{x_value}`, `{y_value}`).
    HeightDifference,
    /// Which of two candidates is closer to an anchor, and by how much.
    CloserTo,
    /// Whether a robot of some width passes between two objects (`yes`/`no` with `{value}` and `{robot}`).
    PassBetween,
}

/// The broad kind of a question, for mixing and reporting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Qualitative,
    Quantitative,
    Reasoning,
}

impl Category {
    pub const ALL: [Category; 3] = [Category::Qualitative, Category::Quantitative, Category::Reasoning];

    pub fn name(self) -> &'static str {
        match self {
            Category::Qualitative => "qualitative",
            Category::Quantitative => "quantitative",
            Category::Reasoning => "reasoning",
        }
    }
}

macro_rules! question_types {
    ($($variant:ident = $name:literal, $category:ident, $form:expr;)*) => {
        /// One question type; its name is its table in the template bank and its `question_type` in the output.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum QuestionType { $($variant),* }

        impl QuestionType {
            /// Every type, in template-bank order.
            pub const ALL: &'static [QuestionType] = &[$(QuestionType::$variant),*];

            /// The snake_case name (template table, output field).
            pub fn name(self) -> &'static str {
                match self { $(QuestionType::$variant => $name),* }
            }

            pub fn category(self) -> Category {
                match self { $(QuestionType::$variant => Category::$category),* }
            }

            pub fn form(self) -> Form {
                use Relation::*;
                match self { $(QuestionType::$variant => $form),* }
            }
        }
    };
}

question_types! {
    LeftPredicate = "left_predicate", Qualitative, Form::Predicate(Left);
    LeftChoice = "left_choice", Qualitative, Form::Choice(Left);
    RightPredicate = "right_predicate", Qualitative, Form::Predicate(Right);
    RightChoice = "right_choice", Qualitative, Form::Choice(Right);
    AbovePredicate = "above_predicate", Qualitative, Form::Predicate(Above);
    AboveChoice = "above_choice", Qualitative, Form::Choice(Above);
    BelowPredicate = "below_predicate", Qualitative, Form::Predicate(Below);
    BelowChoice = "below_choice", Qualitative, Form::Choice(Below);
    FrontPredicate = "front_predicate", Qualitative, Form::Predicate(Front);
    FrontChoice = "front_choice", Qualitative, Form::Choice(Front);
    BehindPredicate = "behind_predicate", Qualitative, Form::Predicate(Behind);
    BehindChoice = "behind_choice", Qualitative, Form::Choice(Behind);
    TallerPredicate = "taller_predicate", Qualitative, Form::Predicate(Taller);
    TallerChoice = "taller_choice", Qualitative, Form::Choice(Taller);
    ShorterPredicate = "shorter_predicate", Qualitative, Form::Predicate(Shorter);
    ShorterChoice = "shorter_choice", Qualitative, Form::Choice(Shorter);
    WiderPredicate = "wider_predicate", Qualitative, Form::Predicate(Wider);
    WiderChoice = "wider_choice", Qualitative, Form::Choice(Wider);
    ThinnerPredicate = "thinner_predicate", Qualitative, Form::Predicate(Thinner);
    ThinnerChoice = "thinner_choice", Qualitative, Form::Choice(Thinner);
    BiggerPredicate = "bigger_predicate", Qualitative, Form::Predicate(Bigger);
    BiggerChoice = "bigger_choice", Qualitative, Form::Choice(Bigger);
    SmallerPredicate = "smaller_predicate", Qualitative, Form::Predicate(Smaller);
    SmallerChoice = "smaller_choice", Qualitative, Form::Choice(Smaller);
    Distance = "distance", Quantitative, Form::PairValue;
    HorizontalDistance = "horizontal_distance", Quantitative, Form::PairValue;
    VerticalDistance = "vertical_distance", Quantitative, Form::PairValue;
    Gap = "gap", Quantitative, Form::PairValue;
    Width = "width", Quantitative, Form::ObjectValue;
    Height = "height", Quantitative, Form::ObjectValue;
    Depth = "depth", Quantitative, Form::ObjectValue;
    DistanceToCamera = "distance_to_camera", Quantitative, Form::ObjectValue;
    Direction = "direction", Quantitative, Form::Direction;
    HeightDifference = "height_difference", Reasoning, Form::HeightDifference;
    CloserTo = "closer_to", Reasoning, Form::CloserTo;
    PassBetween = "pass_between", Reasoning, Form::PassBetween;
}

impl QuestionType {
    /// How many objects the question is about.
    pub fn arity(self) -> usize {
        match self.form() {
            Form::ObjectValue => 1,
            Form::CloserTo => 3,
            _ => 2,
        }
    }

    /// Looks a type up by its name.
    pub fn from_name(name: &str) -> Option<QuestionType> {
        QuestionType::ALL.iter().copied().find(|t| t.name() == name)
    }

    /// Position in [`QuestionType::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// True for yes/no questions.
    pub fn is_binary(self) -> bool {
        matches!(self.form(), Form::Predicate(_) | Form::PassBetween)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_indexed_in_order_and_named_uniquely() {
        assert_eq!(QuestionType::ALL.len(), 36);
        for (i, t) in QuestionType::ALL.iter().enumerate() {
            assert_eq!(t.index(), i);
            assert_eq!(QuestionType::from_name(t.name()), Some(*t));
            assert_eq!(serde_json::to_value(t).unwrap(), serde_json::Value::String(t.name().into()));
        }
    }
}
