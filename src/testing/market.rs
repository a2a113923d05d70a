//! A fee market for the simulated [`Chain`](super::chain::Chain): each block has a minimum
//! feerate, given by a [`FeeCurve`] of the block's height, and mines a mempool transaction only
//! when the feerate of its ancestor package (the transaction with its unconfirmed ancestors, so
//! a child pays for its parent) reaches that minimum. The rest wait. The market also answers
//! what an embedder's fee estimator would say ([`FeeMarket::estimate`]).
//!
//! Switched on with [`Chain::with_market`](super::chain::Chain::with_market); without it every
//! valid transaction is mined in the next block, as before.
//!
//! ```
//! use bitcoin::FeeRate;
//! use paychan::testing::market::{Estimator, FeeCurve, FeeMarket};
//!
//! let base = FeeRate::from_sat_per_kwu(500);
//! // From block 1_010 the minimum rises 100-fold within 3 blocks, stays 20 blocks, falls back.
//! let curve = FeeCurve::spike(base, 100, 1_010, 3, 20);
//! assert_eq!(curve.rate_at(1_009), base);
//! assert_eq!(curve.rate_at(1_012), FeeRate::from_sat_per_kwu(50_000));
//! assert_eq!(curve.rate_at(1_033), base);
//!
//! // Knowing the curve: to confirm within 40 blocks from 1_011, wait for the spike to pass.
//! let market = FeeMarket::new(curve);
//! assert_eq!(market.estimate(1_011, 40), base);
//! // A trailing estimator only sees the past blocks: it is late on the way up.
//! let trailing = market.clone().with_estimator(Estimator::Trailing { window: 6 });
//! assert!(trailing.estimate(1_010, 1) < market.estimate(1_010, 1));
//! ```

use std::vec::Vec;

use bitcoin::FeeRate;

/// A block's minimum feerate as a step function of its height: `base` below the first step,
/// then the rate of the last step at or below the height.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeeCurve {
    base: FeeRate,
    /// `(from_height, rate)`, sorted by height, one entry a height.
    steps: Vec<(u32, FeeRate)>,
}

impl FeeCurve {
    /// The same minimum at every height.
    pub fn flat(rate: FeeRate) -> Self {
        FeeCurve { base: rate, steps: Vec::new() }
    }

    /// `base` until the first step, then each `(from_height, rate)` from its height on (any
    /// order; for one height the last given wins). Any curve can be tabulated this way.
    pub fn steps(base: FeeRate, steps: impl IntoIterator<Item = (u32, FeeRate)>) -> Self {
        let mut curve = FeeCurve::flat(base);
        for (h, r) in steps {
            curve.set(h, r);
        }
        curve
    }

    fn set(&mut self, from: u32, rate: FeeRate) {
        match self.steps.binary_search_by_key(&from, |(h, _)| *h) {
            Ok(i) => self.steps[i].1 = rate,
            Err(i) => self.steps.insert(i, (from, rate)),
        }
    }

    /// A spike: `base` until `start`, then a geometric rise over `rise` blocks to `base ×
    /// factor` (reached at block `start + rise - 1`; `rise` 0 or 1 jumps at once), held there
    /// until block `start + rise + hold - 1`, then `base` again. `hold` of `u32::MAX` never
    /// comes down. `factor` 10 or 100 within a few blocks are the spikes mainnet has seen.
    pub fn spike(base: FeeRate, factor: u64, start: u32, rise: u32, hold: u32) -> Self {
        let mut curve = FeeCurve::flat(base);
        let base_kwu = base.to_sat_per_kwu();
        let peak = base_kwu.saturating_mul(factor.max(1));
        let rise = rise.max(1);
        for i in 0..rise {
            // base × factor^((i+1)/rise), computed in floating point and rounded up; the last
            // step is the exact peak.
            let rate = if i + 1 == rise {
                peak
            } else {
                let f = (factor.max(1) as f64).powf(f64::from(i + 1) / f64::from(rise));
                ((base_kwu as f64) * f).ceil() as u64
            };
            curve.set(start.saturating_add(i), FeeRate::from_sat_per_kwu(rate));
        }
        if hold != u32::MAX {
            curve.set(start.saturating_add(rise).saturating_add(hold), base);
        }
        curve
    }

    /// The minimum feerate of the block at `height`.
    pub fn rate_at(&self, height: u32) -> FeeRate {
        match self.steps.partition_point(|(h, _)| *h <= height) {
            0 => self.base,
            i => self.steps[i - 1].1,
        }
    }

    /// The lowest feerate that confirms in one of the blocks `from..=to` (the smallest
    /// minimum among them), or the rate at `from` if the range is empty.
    pub fn lowest_in(&self, from: u32, to: u32) -> FeeRate {
        let mut lowest = self.rate_at(from);
        // The curve only changes at its steps: check them instead of every height.
        for (h, r) in &self.steps {
            if *h > from && *h <= to && *r < lowest {
                lowest = *r;
            }
        }
        lowest
    }
}

/// How [`FeeMarket::estimate`] answers "the feerate to confirm within N blocks".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Estimator {
    /// The exact answer from the curve: the lowest minimum among the next N blocks. An
    /// estimator that knows the future; bumping to it always confirms in time.
    #[default]
    Foresight,
    /// What a backward-looking estimator (such as Core's `estimatesmartfee`) sees: the highest,
    /// over the start heights of the last `window` blocks, of what confirming within N blocks
    /// cost from there. It lags a rise by up to N blocks and a fall by up to `window`. With a
    /// window shorter than N it answers the current block's minimum.
    Trailing {
        /// How many past blocks it remembers.
        window: u32,
    },
}

/// A fee curve and the estimator embedders see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeeMarket {
    /// Each block's minimum feerate by height.
    pub curve: FeeCurve,
    /// How estimates are made.
    pub estimator: Estimator,
}

impl FeeMarket {
    /// A market following `curve`, estimated with [`Estimator::Foresight`].
    pub fn new(curve: FeeCurve) -> Self {
        FeeMarket { curve, estimator: Estimator::Foresight }
    }

    /// A flat market at `rate`.
    pub fn flat(rate: FeeRate) -> Self {
        FeeMarket::new(FeeCurve::flat(rate))
    }

    /// The same market estimated by `estimator`.
    #[must_use]
    pub fn with_estimator(mut self, estimator: Estimator) -> Self {
        self.estimator = estimator;
        self
    }

    /// The minimum package feerate of the block at `height`.
    pub fn min_feerate(&self, height: u32) -> FeeRate {
        self.curve.rate_at(height)
    }

    /// The feerate an embedder's estimator gives, with the tip at `tip`, for confirming within
    /// `target` blocks (`target` 0 is read as 1): a transaction paying it, if the estimate is
    /// right, confirms in one of the blocks `tip + 1 ..= tip + target`.
    pub fn estimate(&self, tip: u32, target: u32) -> FeeRate {
        let target = target.max(1);
        match self.estimator {
            Estimator::Foresight => self.curve.lowest_in(tip.saturating_add(1), tip.saturating_add(target)),
            Estimator::Trailing { window } => {
                // Start heights s whose whole target range is in the past: s + target <= tip.
                let Some(last_start) = tip.checked_sub(target) else {
                    return self.curve.rate_at(tip);
                };
                let first_start = tip.saturating_sub(window);
                if first_start > last_start {
                    return self.curve.rate_at(tip);
                }
                (first_start..=last_start)
                    .map(|s| self.curve.lowest_in(s + 1, s + target))
                    .max()
                    .unwrap_or_else(|| self.curve.rate_at(tip))
            }
        }
    }
}
