//! When a frame's draws are spent: the questions a frame can still give, kept for a frame with few objects once its
//! draws run long, so that the draw loop ([`super::generate_frame_counting_draws`]) stops as soon as no draw can
//! give one.
//!
//! A frame with few answerable facts (five people in a corridor, four of them cut off by the frame) would otherwise
//! spend every one of its `qa_per_image × 24` draws. The stop is exact: a draw is turned down only for reasons that
//! hold for every later draw of the same objects (the names give the answer away, the fact is a near-tie or not
//! asked of such an object, the question was asked, the numbers as written contradict the answer), and the loop
//! stops only when every draw left would be turned down. The questions are the same as without the stop.

use super::facts::FrameFacts;
use super::refer::Reference;
use super::types::{Form, QuestionType};
use super::{dedup_key, family, names_give_away, Pools, QaOptions};

/// Candidates at most (type × ordered objects × robot width, repeats included) for a frame to be tracked.
pub(super) const MAX_CANDIDATES: usize = 8192;

/// The candidates of one frame and which of them can still give a question.
pub(super) struct Exhaustion {
    /// Per entry of the loop's types: its first candidate, pool length, arity and robot widths (1 unless
    /// `pass_between` with widths).
    slots: Vec<Slot>,
    /// Per candidate: bit 0 set when it gives no question while the loop wants a "no", bit 1 while it wants a "yes"
    /// (types without a yes/no answer have both or neither).
    dead: Vec<u8>,
    /// Candidates with the bit clear, per wanted answer.
    live: [usize; 2],
}

struct Slot {
    t: QuestionType,
    first: usize,
    pool: usize,
    arity: usize,
    robots: usize,
}

impl Slot {
    /// Candidates per robot width: `pool^arity`.
    fn per_robot(&self) -> usize {
        self.pool.pow(self.arity as u32)
    }
}

/// The robot width a draw of type `t` uses for robot index `r` (as the draw loop picks it).
pub(super) fn robot_width(t: QuestionType, options: &QaOptions, r: usize) -> f64 {
    match t {
        QuestionType::PassBetween if !options.robot_widths_m.is_empty() => options.robot_widths_m[r],
        _ => 0.0,
    }
}

/// Robot widths a draw of type `t` picks among.
pub(super) fn robots(t: QuestionType, options: &QaOptions) -> usize {
    match t {
        QuestionType::PassBetween => options.robot_widths_m.len().max(1),
        _ => 1,
    }
}

impl Exhaustion {
    /// Works out which candidates can give a question, with the questions `asked` so far taken; `None` when the
    /// frame has more than [`MAX_CANDIDATES`] or more than `budget` candidates to evaluate.
    pub(super) fn new(
        types: &[(QuestionType, f64)],
        pools: &Pools,
        facts: &FrameFacts,
        described: &[Option<Reference>],
        options: &QaOptions,
        asked: &[(u32, [u32; 3])],
        budget: usize,
    ) -> Option<Exhaustion> {
        let mut slots = Vec::with_capacity(types.len());
        let (mut first, mut evaluations) = (0usize, 0usize);
        for &(t, _) in types {
            let (pool, arity) = (pools.get(t).len(), t.arity());
            let slot = Slot { t, first, pool, arity, robots: robots(t, options) };
            let distinct = (0..arity).try_fold(1usize, |n, k| n.checked_mul(pool.saturating_sub(k)))?;
            first = first.checked_add(pool.checked_pow(arity as u32)?.checked_mul(slot.robots)?)?;
            evaluations = evaluations.checked_add(distinct.checked_mul(slot.robots)?)?;
            if first > MAX_CANDIDATES || evaluations > budget {
                return None;
            }
            slots.push(slot);
        }
        let mut ex = Exhaustion { slots, dead: vec![3; first], live: [0, 0] };
        // Each candidate's answer (`None`: no question; `Some(None)`: one without yes/no), then which answer each
        // can give: a yes/no question is asked the other way round when its answer is not the one wanted, so a
        // candidate of two objects gives what it or its swapped candidate answers (not for pass_between).
        let mut answer: Vec<Option<Option<bool>>> = Vec::new();
        let mut given_away: Vec<bool> = Vec::new();
        let mut objects = [0u32; 3];
        for s in 0..ex.slots.len() {
            let (t, pool) = (ex.slots[s].t, pools.get(ex.slots[s].t));
            let (arity, per_robot, robots) = (ex.slots[s].arity, ex.slots[s].per_robot(), ex.slots[s].robots);
            answer.clear();
            answer.resize(per_robot * robots, None);
            given_away.clear();
            given_away.resize(per_robot, false);
            for within in 0..per_robot {
                // The pool positions of this candidate, first object most significant.
                let mut rest = within;
                for k in (0..arity).rev() {
                    objects[k] = pool[rest % pool.len()];
                    rest /= pool.len();
                }
                let objs = &objects[..arity];
                if (1..arity).any(|k| objs[..k].contains(&objs[k])) {
                    continue;
                }
                // Evaluated even when the names give the answer away: the swapped candidate may need it.
                given_away[within] = names_give_away(t, objs, described);
                for r in 0..robots {
                    answer[r * per_robot + within] =
                        facts.evaluate(t, objs, robot_width(t, options, r)).map(|f| f.truth);
                }
            }
            let swaps = arity == 2 && t != QuestionType::PassBetween;
            for (c, &a) in answer.iter().enumerate() {
                let bits = match a {
                    _ if given_away[c % per_robot] => 3,
                    None => 3,
                    Some(None) => 0,
                    Some(Some(truth)) => {
                        let (within, r) = (c % per_robot, c / per_robot);
                        let swapped = if swaps {
                            let (j0, j1) = (within / pool.len(), within % pool.len());
                            answer[r * per_robot + j1 * pool.len() + j0].flatten()
                        } else {
                            None
                        };
                        let gives = |want: bool| truth == want || swapped == Some(want);
                        u8::from(!gives(false)) | (u8::from(!gives(true)) << 1)
                    }
                };
                ex.dead[ex.slots[s].first + c] = bits;
                for want in 0..2 {
                    ex.live[want] += usize::from(bits & (1 << want) == 0);
                }
            }
        }
        for &(f, key) in asked {
            ex.asked(pools, f, key);
        }
        Some(ex)
    }

    /// The candidate index of a draw: the slot (index into the loop's types), the pool positions and robot index.
    pub(super) fn index(&self, slot: usize, positions: &[usize], robot: usize) -> usize {
        let s = &self.slots[slot];
        let within = positions.iter().fold(0, |acc, &j| acc * s.pool + j);
        s.first + robot * s.per_robot() + within
    }

    /// Whether no candidate can give a question while the loop wants the answer `want_yes` (types without a yes/no
    /// answer count for both): then no draw ever will, as the wanted answer changes only with a question given.
    pub(super) fn spent(&self, want_yes: bool) -> bool {
        self.live[usize::from(want_yes)] == 0
    }

    /// Candidate `i` gives no question while the loop wants `want` (both when `None`).
    pub(super) fn kill(&mut self, i: usize, want: Option<bool>) {
        let bits = match want {
            None => 3,
            Some(w) => 1u8 << u8::from(w),
        };
        for w in 0..2 {
            if bits & (1 << w) != 0 && self.dead[i] & (1 << w) == 0 {
                self.dead[i] |= 1 << w;
                self.live[w] -= 1;
            }
        }
    }

    /// A question of family `f` about the objects of `key` was asked: every candidate asking it again is dead.
    pub(super) fn asked(&mut self, pools: &Pools, f: u32, key: [u32; 3]) {
        for s in 0..self.slots.len() {
            let (t, arity, robots) = (self.slots[s].t, self.slots[s].arity, self.slots[s].robots);
            if family(t) != f {
                continue;
            }
            let pool = pools.get(t);
            let orders: [[u32; 3]; 2] = match arity {
                1 => [[key[0], 0, 0], [key[0], 0, 0]],
                2 => [[key[0], key[1], 0], [key[1], key[0], 0]],
                _ => [[key[0], key[1], key[2]], [key[0], key[2], key[1]]],
            };
            for objects in orders {
                let objs = &objects[..arity];
                if dedup_key(t, objs) != key {
                    continue;
                }
                let mut positions = [0usize; 3];
                let mut found = true;
                for (k, o) in objs.iter().enumerate() {
                    match pool.binary_search(o) {
                        Ok(j) => positions[k] = j,
                        Err(_) => found = false,
                    }
                }
                if !found {
                    continue;
                }
                for r in 0..robots {
                    let i = self.index(s, &positions[..arity], r);
                    self.kill(i, None);
                }
            }
        }
    }

    /// Whether a question the numbers of which contradict its answer would do so at every later draw of the same
    /// candidate: the units do not change between draws and the fact is the same (no coin decides its order).
    pub(super) fn render_failure_lasts(t: QuestionType, options: &QaOptions) -> bool {
        options.units != super::Units::Mixed && !matches!(t.form(), Form::Choice(_) | Form::HeightDifference)
    }
}
