//! A small xorshift generator for the crate's unit tests (deterministic inputs without a dependency).

/// Marsaglia's 64-bit xorshift (13, 7, 17).
pub(crate) struct XorShift(pub u64);

impl XorShift {
    fn step(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (`n` > 0).
    pub(crate) fn below(&mut self, n: u32) -> u32 {
        (self.step() % u64::from(n)) as u32
    }

    /// A number in [0, 1), from the top 24 bits.
    pub(crate) fn unit_f32(&mut self) -> f32 {
        (self.step() >> 40) as f32 / (1u64 << 24) as f32
    }
}
