//! Colour names for object references ("the red chair"): each pixel gets one of eleven basic colour names from
//! its hue, saturation and value; an object's colour is the name most of its kept pixels share.

/// The basic colour names, in the order of [`color_name`]'s bins.
pub const COLOR_NAMES: [&str; 11] =
    ["black", "white", "gray", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown"];

/// An object has a dominant colour when at least this share of its pixels carry the same name.
pub const DOMINANT_SHARE: f32 = 0.45;

/// Index into [`COLOR_NAMES`] of one sRGB pixel.
pub fn color_name(rgb: [u8; 3]) -> usize {
    let [r, g, b] = rgb.map(|c| f32::from(c) / 255.0);
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let (v, chroma) = (max, max - min);
    let s = if max > 0.0 { chroma / max } else { 0.0 };
    // Very dark pixels are black unless strongly saturated (a navy mug is blue, not black).
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
