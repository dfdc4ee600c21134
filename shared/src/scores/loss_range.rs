//! Reference losses that cannot be a per-token cross-entropy in nats, as a
//! set rewritten by another tool may hold: negative (beyond rounding), or
//! above [`LossRange::CAP_TIMES_LN_VOCAB`] times ln(vocabulary), far past
//! any loss a model scores (a loss in bits, or summed, would be). Counted
//! over a set; the first is named. The trainer checks every set before its
//! first step, `scorer verify` every shard.

use std::path::Path;

use crate::error::{Error, Result};

pub struct LossRange {
    cap: f32,
    count: u64,
    first: Option<String>,
}

impl LossRange {
    pub const CAP_TIMES_LN_VOCAB: f32 = 10.0;
    /// How far below 0 rounding may take a loss written by another tool.
    const ROUNDING: f32 = 1e-3;

    pub fn new(vocab: usize) -> Self {
        LossRange {
            cap: Self::CAP_TIMES_LN_VOCAB * (vocab.max(2) as f32).ln(),
            count: 0,
            first: None,
        }
    }

    /// Counts the out-of-range values of `rl` (NaN, where nothing is
    /// predicted, is not counted); `file` and `row(i)` name the first.
    pub fn add(&mut self, rl: &[f32], file: impl Fn() -> String, row: impl Fn(usize) -> usize) {
        for (i, &x) in rl.iter().enumerate() {
            if x < -Self::ROUNDING || x > self.cap {
                self.count += 1;
                if self.first.is_none() {
                    self.first = Some(format!("{}: row {}: ref_loss {x}", file(), row(i)));
                }
            }
        }
    }

    /// An error naming `dir`, the count and the first, if any was out of range.
    pub fn check(&self, dir: &Path) -> Result<()> {
        match &self.first {
            None => Ok(()),
            Some(first) => Err(Error::Invalid(format!(
                "{}: {} reference losses are not a per-token loss in nats (below 0 or above {:.1}, 10 x ln(vocabulary)); the first: {first}",
                dir.display(),
                self.count,
                self.cap
            ))),
        }
    }
}
