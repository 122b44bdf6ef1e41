//! Numbers the way people say them: "45 centimetres", "1.2 metres", "3 feet", "7 inches".
//!
//! Rounding follows the size of the value (about two significant figures, coarser steps where people use them),
//! since the measurement behind it is itself uncertain by a few per cent. The exact value in metres is kept in
//! each QA record's provenance.

use serde::{Deserialize, Serialize};

/// Which units the answers use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Units {
    /// Centimetres and metres.
    #[default]
    Metric,
    /// Inches and feet.
    Imperial,
    /// Each question picks metric or imperial at random (from the seed).
    Mixed,
}

/// The unit system one answer is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitSystem {
    Metric,
    Imperial,
}

impl UnitSystem {
    pub fn name(self) -> &'static str {
        match self {
            UnitSystem::Metric => "metric",
            UnitSystem::Imperial => "imperial",
        }
    }
}

const METRES_PER_INCH: f64 = 0.0254;

fn push_number(out: &mut String, v: f64, decimals: usize) {
    use std::fmt::Write;
    let _ = match decimals {
        0 => write!(out, "{}", v.round() as i64),
        _ => {
            let scaled = (v * 10f64.powi(decimals as i32)).round();
            if scaled % 10f64.powi(decimals as i32) == 0.0 {
                write!(out, "{}", (scaled / 10f64.powi(decimals as i32)) as i64)
            } else {
                write!(out, "{:.*}", decimals, scaled / 10f64.powi(decimals as i32))
            }
        }
    };
}

fn push_unit(out: &mut String, one: bool, singular: &str, plural: &str) {
    out.push(' ');
    out.push_str(if one { singular } else { plural });
}

/// The rounded value as it will be written, in the unit written (for tests and provenance): `(number, unit)`.
pub fn rounded_length(metres: f64, system: UnitSystem) -> (f64, &'static str) {
    let m = metres.max(0.0);
    match system {
        UnitSystem::Metric => {
            let cm = m * 100.0;
            if cm < 0.5 {
                (1.0, "centimetre")
            } else if cm < 49.5 {
                (cm.round(), "centimetre")
            } else if cm < 97.5 {
                ((cm / 5.0).round() * 5.0, "centimetre")
            } else if m < 9.95 {
                ((m * 10.0).round() / 10.0, "metre")
            } else {
                (m.round(), "metre")
            }
        }
        UnitSystem::Imperial => {
            let inches = m / METRES_PER_INCH;
            let feet = inches / 12.0;
            if inches < 0.5 {
                (1.0, "inch")
            } else if inches < 47.5 {
                (inches.round(), "inch")
            } else if feet < 9.75 {
                ((feet * 2.0).round() / 2.0, "foot")
            } else {
                (feet.round(), "foot")
            }
        }
    }
}

/// Appends a length in metres as people say it (without "about": templates add their own hedges).
pub fn push_length(out: &mut String, metres: f64, system: UnitSystem) {
    let (v, unit) = rounded_length(metres, system);
    let one = v == 1.0;
    match unit {
        "centimetre" => {
            push_number(out, v, 0);
            push_unit(out, one, "centimetre", "centimetres");
        }
        "metre" => {
            push_number(out, v, if v < 10.0 { 1 } else { 0 });
            push_unit(out, one, "metre", "metres");
        }
        "inch" => {
            push_number(out, v, 0);
            push_unit(out, one, "inch", "inches");
        }
        _ => {
            push_number(out, v, 1);
            push_unit(out, one, "foot", "feet");
        }
    }
}

/// A length as a new string.
pub fn format_length(metres: f64, system: UnitSystem) -> String {
    let mut s = String::new();
    push_length(&mut s, metres, system);
    s
}

/// Reads back a length written by [`push_length`] (for tests and dataset checks): metres.
pub fn parse_length(text: &str) -> Option<f64> {
    let mut words = text.split_whitespace();
    let v: f64 = words.next()?.parse().ok()?;
    let factor = match words.next()? {
        "centimetre" | "centimetres" => 0.01,
        "metre" | "metres" => 1.0,
        "inch" | "inches" => METRES_PER_INCH,
        "foot" | "feet" => 12.0 * METRES_PER_INCH,
        _ => return None,
    };
    Some(v * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_read_naturally() {
        let m = |v| format_length(v, UnitSystem::Metric);
        let i = |v| format_length(v, UnitSystem::Imperial);
        assert_eq!(m(0.003), "1 centimetre");
        assert_eq!(m(0.07), "7 centimetres");
        assert_eq!(m(0.452), "45 centimetres");
        assert_eq!(m(0.99), "1 metre");
        assert_eq!(m(1.234), "1.2 metres");
        assert_eq!(m(3.0), "3 metres");
        assert_eq!(m(12.4), "12 metres");
        assert_eq!(i(0.178), "7 inches");
        assert_eq!(i(0.3048), "12 inches");
        assert_eq!(i(0.0254), "1 inch");
        assert_eq!(i(0.914), "36 inches");
        assert_eq!(i(1.524), "5 feet");
        assert_eq!(i(1.37), "4.5 feet");
        assert_eq!(i(4.0), "13 feet");
    }

    #[test]
    fn rounding_stays_within_a_few_per_cent_and_reads_back() {
        for k in 4..4000 {
            let v = f64::from(k) * 0.005;
            for system in [UnitSystem::Metric, UnitSystem::Imperial] {
                let text = format_length(v, system);
                let back = parse_length(&text).unwrap();
                // At most 6.25% (half a foot at 4 feet), never less than half an inch.
                let tolerance = (0.0625 * v).max(0.0128);
                assert!((back - v).abs() <= tolerance, "{v} m written as {text} ({back} m)");
            }
        }
    }
}
