//! Units: millisatoshi amounts and block heights, with checked arithmetic.
//!
//! On-chain values use [`bitcoin::Amount`] (satoshi). Off-chain Lightning balances use
//! [`MilliSats`]; conversion to satoshi always rounds down, as BOLT #3 requires.

use core::fmt;

use bitcoin::Amount;

/// An amount in millisatoshi (1/1000 satoshi). All arithmetic is checked.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MilliSats(u64);

impl MilliSats {
    /// Zero millisatoshi.
    pub const ZERO: MilliSats = MilliSats(0);

    /// Creates an amount from a number of millisatoshi.
    pub const fn from_msat(msat: u64) -> Self {
        MilliSats(msat)
    }

    /// Creates an amount from whole satoshi, or `None` on overflow.
    pub const fn from_sat(sat: u64) -> Option<Self> {
        match sat.checked_mul(1000) {
            Some(m) => Some(MilliSats(m)),
            None => None,
        }
    }

    /// Converts an on-chain amount, or `None` on overflow.
    pub fn from_amount(a: Amount) -> Option<Self> {
        Self::from_sat(a.to_sat())
    }

    /// The number of millisatoshi.
    pub const fn to_msat(self) -> u64 {
        self.0
    }

    /// Whole satoshi, rounding down (BOLT #3 "rounded down").
    pub const fn to_sat_floor(self) -> u64 {
        self.0 / 1000
    }

    /// The on-chain amount, rounding down to whole satoshi.
    pub const fn to_amount_floor(self) -> Amount {
        Amount::from_sat(self.0 / 1000)
    }

    /// `self + rhs`, or `None` on overflow.
    #[must_use]
    pub const fn checked_add(self, rhs: Self) -> Option<Self> {
        match self.0.checked_add(rhs.0) {
            Some(v) => Some(MilliSats(v)),
            None => None,
        }
    }

    /// `self - rhs`, or `None` if it would go below zero.
    #[must_use]
    pub const fn checked_sub(self, rhs: Self) -> Option<Self> {
        match self.0.checked_sub(rhs.0) {
            Some(v) => Some(MilliSats(v)),
            None => None,
        }
    }

    /// `self - rhs`, clamped at zero.
    #[must_use]
    pub const fn saturating_sub(self, rhs: Self) -> Self {
        MilliSats(self.0.saturating_sub(rhs.0))
    }

    /// `self + rhs`, clamped at the maximum.
    #[must_use]
    pub const fn saturating_add(self, rhs: Self) -> Self {
        MilliSats(self.0.saturating_add(rhs.0))
    }
}

impl fmt::Debug for MilliSats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} msat", self.0)
    }
}

impl fmt::Display for MilliSats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} msat", self.0)
    }
}

/// A block height. Heights, never times, are used for every absolute lock in this crate
/// (BIP-0065 compares times against median-time-past, which the embedder would have to track).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct BlockHeight(pub u32);

impl BlockHeight {
    /// The largest height usable as an `nLockTime`/`OP_CHECKLOCKTIMEVERIFY` height
    /// (values from 500,000,000 on are interpreted as Unix times).
    pub const MAX_LOCKTIME: BlockHeight = BlockHeight(499_999_999);

    /// The height as a `u32`.
    pub const fn to_u32(self) -> u32 {
        self.0
    }

    /// `self + blocks`, or `None` on overflow.
    #[must_use]
    pub const fn checked_add(self, blocks: u32) -> Option<Self> {
        match self.0.checked_add(blocks) {
            Some(h) => Some(BlockHeight(h)),
            None => None,
        }
    }

    /// `self - blocks`, clamped at zero.
    #[must_use]
    pub const fn saturating_sub(self, blocks: u32) -> Self {
        BlockHeight(self.0.saturating_sub(blocks))
    }

    /// The absolute lock time for this height, or `None` if the height is not a valid
    /// block-height lock time (≥ 500,000,000).
    pub fn to_locktime(self) -> Option<bitcoin::absolute::LockTime> {
        bitcoin::absolute::LockTime::from_height(self.0).ok()
    }
}

impl fmt::Display for BlockHeight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "height {}", self.0)
    }
}

/// Adds amounts, returning `None` on overflow.
pub fn checked_sum<I: IntoIterator<Item = Amount>>(it: I) -> Option<Amount> {
    it.into_iter().try_fold(Amount::ZERO, |acc, a| acc.checked_add(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msat_rounds_down_and_checks_overflow() {
        assert_eq!(MilliSats::from_msat(5_000_999).to_sat_floor(), 5_000);
        assert_eq!(MilliSats::from_sat(u64::MAX), None);
        assert_eq!(MilliSats::from_msat(1).checked_sub(MilliSats::from_msat(2)), None);
        assert_eq!(MilliSats::from_msat(u64::MAX).checked_add(MilliSats::from_msat(1)), None);
    }

    #[test]
    fn heights_convert_to_locktimes() {
        assert!(BlockHeight(500_000_000).to_locktime().is_none());
        assert!(BlockHeight::MAX_LOCKTIME.to_locktime().is_some());
    }
}
