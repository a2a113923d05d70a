//! The fee schedule: pure functions from the blocks left, the estimates and the previous attempt
//! to the fee of the next one.
//!
//! The target: confirm with half the remaining blocks to spare. With `n` blocks left before the
//! deadline the schedule pays the estimate for confirming within `max(1, n / 2)` blocks, so a
//! request far from its deadline pays the cheap long-target rate, and the rate rises towards the
//! next-block estimate as the deadline nears. Each block the request is still unconfirmed, the
//! schedule is asked again with one block fewer: a fee market that spikes is followed within a
//! block, and a replacement is made only when the new rate is higher (replacements must pay more
//! under Bitcoin Core's rules anyway).
//!
//! ```
//! use paychan::core::commitment::FeeratePerKw;
//! use paychan::core::feebump::{schedule, FeeEstimates};
//!
//! let est = FeeEstimates::new(&[(1, FeeratePerKw(10_000)), (6, FeeratePerKw(2_500)), (72, FeeratePerKw(500))]);
//! assert_eq!(schedule::confirm_target(144), 72);
//! assert_eq!(schedule::target_feerate(&est, 144), FeeratePerKw(500));
//! assert_eq!(schedule::target_feerate(&est, 12), FeeratePerKw(2_500));
//! assert_eq!(schedule::target_feerate(&est, 2), FeeratePerKw(10_000));
//! assert_eq!(schedule::target_feerate(&est, 0), FeeratePerKw(10_000)); // late: next block
//! ```

use bitcoin::Amount;

use super::FeeEstimates;
use crate::core::commitment::FeeratePerKw;

/// Bitcoin Core's incremental relay feerate (1 sat/vB = 250 sat per 1000 weight units): what a
/// replacement must add, per virtual byte of its own size, to the fee of what it replaces.
pub const INCREMENTAL_RELAY: FeeratePerKw = FeeratePerKw(250);

/// The number of blocks within which the schedule aims to confirm, with `blocks_left` before
/// the deadline: half of them, at least one.
pub const fn confirm_target(blocks_left: u32) -> u32 {
    let half = blocks_left / 2;
    if half == 0 {
        1
    } else {
        half
    }
}

/// The feerate the schedule pays with `blocks_left` before the deadline.
pub fn target_feerate(estimates: &FeeEstimates, blocks_left: u32) -> FeeratePerKw {
    estimates.within(confirm_target(blocks_left))
}

/// Virtual size of `weight` weight units, rounded up.
pub const fn vsize(weight: u64) -> u64 {
    weight.div_ceil(4)
}

/// The fee `feerate` asks of a transaction of `weight` as Bitcoin Core counts it: on its
/// virtual size (weight / 4, rounded up), rounded up to the satoshi. Paying
/// `feerate.fee_for_weight(weight)` instead can fall a satoshi or a few short of a node's or a
/// block's minimum, which is checked on the virtual size.
///
/// ```
/// use bitcoin::Amount;
/// use paychan::core::commitment::FeeratePerKw;
/// use paychan::core::feebump::schedule::fee_for_vsize;
///
/// // 100 sat/vB on 1,253 weight units: 314 vB, not 313.25.
/// assert_eq!(fee_for_vsize(FeeratePerKw(25_000), 1_253), Amount::from_sat(31_400));
/// assert_eq!(FeeratePerKw(25_000).fee_for_weight(1_253), Amount::from_sat(31_325));
/// ```
pub fn fee_for_vsize(feerate: FeeratePerKw, weight: u64) -> Amount {
    let per_kvb = u128::from(feerate.0) * 4;
    let fee = (per_kvb * u128::from(vsize(weight))).div_ceil(1000);
    Amount::from_sat(u64::try_from(fee).unwrap_or(u64::MAX))
}

/// `fee · weight / base_weight` (the fee at the same feerate for another weight), rounded down;
/// `fee` itself for a zero `base_weight`.
fn scale(fee: Amount, weight: u64, base_weight: u64) -> Amount {
    let scaled = (u128::from(fee.to_sat()) * u128::from(weight)).checked_div(u128::from(base_weight));
    scaled.map_or(fee, |v| Amount::from_sat(u64::try_from(v).unwrap_or(u64::MAX)))
}

/// The smallest fee a transaction of `weight` replacing one that paid `previous_fee` at
/// `previous_weight` may pay under Bitcoin Core's rules: more than `previous_fee` by the
/// incremental relay fee for its own virtual size, and a higher feerate than the previous one.
pub fn replacement_floor(previous_fee: Amount, previous_weight: u64, weight: u64) -> Amount {
    let by_increment =
        previous_fee.to_sat().saturating_add(vsize(weight) * (u64::from(INCREMENTAL_RELAY.0) * 4 / 1000));
    // A strictly higher feerate: fee / weight > previous_fee / previous_weight.
    let by_rate = scale(previous_fee, weight, previous_weight).to_sat().saturating_add(1);
    Amount::from_sat(by_increment.max(by_rate))
}

/// The fee of the next attempt of `weight`, when the schedule wants `wanted`, given the previous
/// attempt's fee and weight (if any), capped at `cap`: `None` when the previous attempt already
/// pays at least as much for its size (nothing to replace: re-broadcast it), otherwise the larger
/// of `wanted` and the replacement floor, and whether the cap cut it.
pub fn next_fee(wanted: Amount, weight: u64, previous: Option<(Amount, u64)>, cap: Amount) -> Option<(Amount, bool)> {
    let fee = match previous {
        Some((prev_fee, prev_weight)) => {
            // The previous attempt's rate, over the new weight.
            let prev_rate_fee = scale(prev_fee, weight, prev_weight);
            if wanted <= prev_rate_fee {
                return None;
            }
            wanted.max(replacement_floor(prev_fee, prev_weight, weight))
        }
        None => wanted,
    };
    if fee > cap {
        Some((cap, true))
    } else {
        Some((fee, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacement_floor_follows_core() {
        // 1 sat/vB more for a 200 vB replacement of a 1,000 sat / 800 wu transaction.
        assert_eq!(replacement_floor(Amount::from_sat(1_000), 800, 800), Amount::from_sat(1_200));
        // A bigger replacement must also beat the old feerate.
        assert_eq!(replacement_floor(Amount::from_sat(100_000), 400, 800), Amount::from_sat(200_001));
    }

    #[test]
    fn next_fee_never_lowers_and_respects_cap() {
        let w = 1_000;
        let at = |rate: u32| FeeratePerKw(rate).fee_for_weight(w);
        assert_eq!(next_fee(at(1_000), w, None, Amount::MAX), Some((Amount::from_sat(1_000), false)));
        assert_eq!(next_fee(at(1_000), w, Some((Amount::from_sat(1_000), w)), Amount::MAX), None);
        // 10 % more is wanted; Core needs 1 sat/vB (250 sat for 250 vB) more.
        assert_eq!(
            next_fee(at(1_100), w, Some((Amount::from_sat(1_000), w)), Amount::MAX),
            Some((Amount::from_sat(1_250), false))
        );
        assert_eq!(
            next_fee(at(50_000), w, Some((Amount::from_sat(1_000), w)), Amount::from_sat(9_000)),
            Some((Amount::from_sat(9_000), true))
        );
    }

    #[test]
    fn targets_shrink_with_the_deadline() {
        assert_eq!(confirm_target(0), 1);
        assert_eq!(confirm_target(1), 1);
        assert_eq!(confirm_target(3), 1);
        assert_eq!(confirm_target(4), 2);
        assert_eq!(confirm_target(288), 144);
    }
}
