//! Colour names for object references ("the red chair"): each pixel gets one of eleven basic colour names from
//! its hue, saturation and value; an object's colour is the name most of its kept pixels share.

/// The basic colour names, in the order of [`color_name`]'s bins.
pub const COLOR_NAMES: [&str; 11] =
    ["black", "white", "gray", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown"];

/// An object has a dominant colour when at least this share of its pixels carry the same name.
pub const DOMINANT_SHARE: f32 = 0.45;

/// `c / 255` for every byte: the channel values [`color_name`]'s thresholds apply to.
const UNIT: [f32; 256] = {
    let mut t = [0.0f32; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = c as f32 / 255.0;
        c += 1;
    }
    t
};

/// [`ACHROMATIC`]'s entry for a pixel whose name depends on its hue.
const CHROMATIC: u8 = u8::MAX;

/// For every pair (brightest channel, darkest channel) of a pixel, `max << 8 | min`: the pixel's name when the pair
/// settles it (dark, or too little colour for a hue), else [`CHROMATIC`]. Those decisions read only the value, the
/// chroma and the saturation, which the pair determines.
static ACHROMATIC: std::sync::LazyLock<Box<[u8]>> = std::sync::LazyLock::new(|| {
    (0..=u16::MAX)
        .map(|i| {
            let (max, min) = (UNIT[usize::from(i >> 8)], UNIT[usize::from(i & 0xff)]);
            match max >= min {
                true => achromatic(max, max - min).map_or(CHROMATIC, |n| n as u8),
                false => CHROMATIC,
            }
        })
        .collect()
});

/// The name of a pixel with value (brightest channel) `v` and chroma `chroma` when these settle it.
fn achromatic(v: f32, chroma: f32) -> Option<usize> {
    let s = if v > 0.0 { chroma / v } else { 0.0 };
    // Very dark pixels are black unless strongly saturated (a navy mug is blue, not black).
    if v < 0.12 || (v < 0.2 && s < 0.5) {
        return Some(0);
    }
    if s < 0.18 || chroma < 0.08 {
        return Some(if v > 0.78 {
            1
        } else if v < 0.35 {
            0
        } else {
            2
        });
    }
    None
}

/// The name of a colourful pixel from its hue `h` (degrees) and value `v`.
fn hue_name(h: f32, v: f32) -> usize {
    match h {
        // Dark red is how wood (mahogany, cherry) usually looks: brown.
        h if !(15.0..345.0).contains(&h) => {
            if v < 0.4 {
                10
            } else {
                3
            }
        }
        h if h < 45.0 => {
            if v < 0.6 {
                10
            } else {
                4
            }
        }
        h if h < 70.0 => {
            if v < 0.5 {
                10
            } else {
                5
            }
        }
        h if h < 165.0 => 6,
        h if h < 255.0 => 7,
        h if h < 290.0 => 8,
        _ => {
            if v < 0.5 {
                8
            } else {
                9
            }
        }
    }
}

/// Index into [`COLOR_NAMES`] of one sRGB pixel: black when very dark (unless strongly saturated), white, gray or
/// black when it has too little colour, else the name of its hue (dark reds, oranges and yellows are brown).
///
/// The channels are `c / 255` in `f32`; the value is the brightest, the chroma the brightest less the darkest, the
/// saturation their ratio and the hue the usual hexcone angle, all in `f32`. The value and chroma decisions come
/// from a table of the (brightest, darkest) pairs, so only colourful pixels compute a hue; the test
/// `table_matches_the_formula_on_every_colour` checks every one of the 2^24 colours against the formula.
pub fn color_name(rgb: [u8; 3]) -> usize {
    let [r, g, b] = rgb;
    let (max, min) = (r.max(g).max(b), r.min(g).min(b));
    let class = ACHROMATIC[usize::from(max) << 8 | usize::from(min)];
    if class != CHROMATIC {
        return usize::from(class);
    }
    let [rf, gf, bf] = [UNIT[usize::from(r)], UNIT[usize::from(g)], UNIT[usize::from(b)]];
    let v = UNIT[usize::from(max)];
    let chroma = v - UNIT[usize::from(min)];
    let h = if max == r {
        // ((g - b) / chroma).rem_euclid(6.0): the quotient lies in [-1, 1], so the remainder is the quotient and the
        // Euclidean one adds 6 to a negative quotient.
        let x = (gf - bf) / chroma;
        60.0 * if x < 0.0 { x + 6.0 } else { x }
    } else if max == g {
        60.0 * ((bf - rf) / chroma + 2.0)
    } else {
        60.0 * ((rf - gf) / chroma + 4.0)
    };
    hue_name(h, v)
}

/// The name most pixels share, when at least [`DOMINANT_SHARE`] of them do (`None` for multicoloured objects or
/// no pixels).
pub fn dominant_color(pixels: impl Iterator<Item = [u8; 3]>) -> Option<String> {
    let mut counts = [0u32; COLOR_NAMES.len()];
    let mut n = 0u32;
    for p in pixels {
        counts[color_name(p)] += 1;
        n += 1;
    }
    let (best, &count) = counts.iter().enumerate().max_by_key(|(i, &c)| (c, std::cmp::Reverse(*i)))?;
    (n > 0 && count as f32 >= DOMINANT_SHARE * n as f32).then(|| COLOR_NAMES[best].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    /// The original formula of [`color_name`], every step in `f32` (the hue's bins, [`hue_name`], unchanged).
    fn color_name_formula(rgb: [u8; 3]) -> usize {
        let [r, g, b] = rgb.map(|c| f32::from(c) / 255.0);
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
        let (v, chroma) = (max, max - min);
        let s = if max > 0.0 { chroma / max } else { 0.0 };
        if v < 0.12 || (v < 0.2 && s < 0.5) {
            return 0;
        }
        if s < 0.18 || chroma < 0.08 {
            return if v > 0.78 {
                1
            } else if v < 0.35 {
                0
            } else {
                2
            };
        }
        let h = if max == r {
            60.0 * ((g - b) / chroma).rem_euclid(6.0)
        } else if max == g {
            60.0 * ((b - r) / chroma + 2.0)
        } else {
            60.0 * ((r - g) / chroma + 4.0)
        };
        hue_name(h, v)
    }

    #[test]
    fn table_matches_the_formula_on_every_colour() {
        let mismatches: Vec<[u8; 3]> = (0..1u32 << 24)
            .into_par_iter()
            .map(|i| [(i >> 16) as u8, (i >> 8) as u8, i as u8])
            .filter(|&rgb| color_name(rgb) != color_name_formula(rgb))
            .collect();
        assert!(
            mismatches.is_empty(),
            "{} colours differ, e.g. {:?}",
            mismatches.len(),
            &mismatches[..mismatches.len().min(8)]
        );
    }

    #[test]
    fn basic_colours_are_named() {
        let name = |rgb| COLOR_NAMES[color_name(rgb)];
        assert_eq!(name([200, 30, 30]), "red");
        assert_eq!(name([30, 160, 40]), "green");
        assert_eq!(name([30, 60, 200]), "blue");
        assert_eq!(name([240, 240, 235]), "white");
        assert_eq!(name([10, 10, 12]), "black");
        assert_eq!(name([128, 128, 128]), "gray");
        assert_eq!(name([240, 220, 40]), "yellow");
        assert_eq!(name([250, 140, 20]), "orange");
        assert_eq!(name([110, 70, 30]), "brown");
        assert_eq!(name([86, 18, 12]), "brown");
        assert_eq!(name([8, 17, 35]), "blue");
        assert_eq!(name([140, 40, 180]), "purple");
        assert_eq!(name([250, 120, 200]), "pink");
    }

    #[test]
    fn dominance_needs_a_clear_majority() {
        let red = [200, 30, 30];
        let blue = [30, 60, 200];
        let green = [30, 160, 40];
        assert_eq!(dominant_color([red, red, blue].into_iter()).as_deref(), Some("red"));
        assert_eq!(dominant_color([red, blue, green].into_iter()), None);
        assert_eq!(dominant_color(std::iter::empty()), None);
    }
}
