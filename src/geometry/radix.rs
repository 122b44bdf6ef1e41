//! A stable least-significant-digit radix sort of integer keys, for the host's binning steps (the closest-surface
//! index of K5, the DBSCAN grid of the GPU backends): linear in the number of keys where a comparison sort of
//! tuples costs tens of nanoseconds a key.

/// Bits per pass.
const DIGIT: u32 = 11;

/// `(key, index)` for every key, sorted by key and then by index (a stable sort), over the low `bits` bits: the
/// keys must have no other bits set. `ceil(bits / 11)` passes; `bits` 0 keeps the input order.
pub fn radix_sorted(keys: &[u64], bits: u32) -> Vec<(u64, u32)> {
    debug_assert!(u32::try_from(keys.len()).is_ok());
    debug_assert!(bits >= 64 || keys.iter().all(|k| k >> bits == 0));
    let mut order: Vec<(u64, u32)> = keys.iter().copied().zip(0..).collect();
    let mut spare = vec![(0u64, 0u32); keys.len()];
    let mut start = vec![0usize; (1 << DIGIT) + 1];
    let mut shift = 0;
    while shift < bits.min(64) {
        let digit = |k: u64| ((k >> shift) & ((1 << DIGIT) - 1)) as usize;
        start.fill(0);
        for &(k, _) in &order {
            start[digit(k) + 1] += 1;
        }
        for d in 0..1 << DIGIT {
            start[d + 1] += start[d];
        }
        for &(k, i) in &order {
            let d = digit(k);
            spare[start[d]] = (k, i);
            start[d] += 1;
        }
        std::mem::swap(&mut order, &mut spare);
        shift += DIGIT;
    }
    order
}

/// The number of bits of `max_key` (0 for 0): what [`radix_sorted`] needs to sort keys up to it.
pub fn bits_of(max_key: u64) -> u32 {
    64 - max_key.leading_zeros()
}

/// `x.floor() as i32` (saturating; 0 for NaN) without a call to the C library's `floorf` (x86-64's baseline has
/// no rounding instruction): a cell coordinate.
pub fn floor_i32(x: f32) -> i32 {
    let t = x as i32;
    if (t as f32) > x {
        t.saturating_sub(1)
    } else {
        t
    }
}

/// `x.floor() as i64` (saturating; 0 for NaN) without a call to the C library's `floor`.
pub fn floor_i64(x: f64) -> i64 {
    let t = x as i64;
    if (t as f64) > x {
        t.saturating_sub(1)
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::rng::draw_u32;

    #[test]
    fn the_floors_are_floor() {
        let mut counter = 0;
        let mut next = || {
            counter += 1;
            u64::from(draw_u32(7, 0, counter, 0)) << 32 | u64::from(draw_u32(7, 0, counter, 1))
        };
        let edges = [
            0.0f64,
            -0.0,
            0.5,
            -0.5,
            1.0,
            -1.0,
            2.999_999_999,
            -2.999_999_999,
            1e-300,
            -1e-300,
            8_388_607.5,
            -8_388_607.5,
            4_503_599_627_370_495.5,
            -4_503_599_627_370_495.5,
            2_147_483_647.5,
            -2_147_483_648.5,
            3e9,
            -3e9,
            9.223_372_036_854_775e18,
            -9.223_372_036_854_776e18,
            1e19,
            -1e19,
            f64::MAX,
            f64::MIN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        for x in edges.into_iter().chain((0..20_000).map(|_| f64::from_bits(next()))) {
            assert_eq!(floor_i64(x), x.floor() as i64, "{x:e}");
            let y = x as f32;
            assert_eq!(floor_i32(y), y.floor() as i32, "{y:e}");
        }
        for _ in 0..20_000 {
            let y = f32::from_bits(next() as u32);
            assert_eq!(floor_i32(y), y.floor() as i32, "{y:e}");
        }
    }

    #[test]
    fn radix_sorted_is_a_stable_sort() {
        let mut counter = 0;
        let mut next = || {
            counter += 1;
            u64::from(draw_u32(11, 0, counter, 0)) << 32 | u64::from(draw_u32(11, 0, counter, 1))
        };
        for bits in [0u32, 1, 5, 11, 12, 22, 23, 40, 63, 64] {
            for n in [0usize, 1, 2, 100, 5000] {
                let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
                // Few distinct keys, so that equal keys are common.
                let keys: Vec<u64> = (0..n).map(|_| next() & mask & if n > 100 { !0xff } else { !0 }).collect();
                let mut expected: Vec<(u64, u32)> = keys.iter().copied().zip(0..).collect();
                expected.sort_unstable();
                assert_eq!(radix_sorted(&keys, bits), expected, "{bits} bits, {n} keys");
                assert!(keys.iter().all(|&k| bits_of(k) <= bits));
            }
        }
        assert_eq!((bits_of(0), bits_of(1), bits_of(2047), bits_of(2048), bits_of(u64::MAX)), (0, 1, 11, 12, 64));
    }
}
