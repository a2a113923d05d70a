//! Tree parameters and what they imply (docs/duplex.md §3), and the channel terms both parties
//! agree on when the channel opens.
//!
//! A user picks the tree shape before opening: depth `d`, radix `k_j` per level (locks per
//! level), step `Δ` blocks and leaf refund delay `T_r`. [`Params`] checks them and answers the
//! questions that decide the choice: how many states ([`Params::states`]), how many resets
//! ([`Params::resets`]), how many transactions a unilateral close puts on chain
//! ([`Params::unilateral_close_txs`]), and how long it takes in the worst case
//! ([`Params::max_close_delay`]).
//!
//! ```
//! use paychan::duplex::Params;
//! # fn main() -> Result<(), paychan::duplex::ParamsError> {
//! let p = Params::uniform(3, 4, 144, 144)?;
//! assert_eq!(p.states(), 64);
//! assert_eq!(p.resets(), 63);
//! assert_eq!(p.unilateral_close_txs(0), 1 + 3 + 2);
//! // (d+1)·S + d·(k-1)·Δ with S = 6 blocks to confirm a transaction.
//! assert_eq!(p.max_close_delay(6), 4 * 6 + 3 * 3 * 144);
//! # Ok(()) }
//! ```

use alloc::vec::Vec;
use core::fmt;

use bitcoin::Amount;

/// The largest tree depth accepted.
pub const MAX_DEPTH: usize = 32;

/// Why tree parameters were refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum ParamsError {
    /// The tree needs at least one level.
    NoLevels,
    /// More than [`MAX_DEPTH`] levels.
    TooDeep,
    /// A level has radix 0 (it needs at least one lock value).
    ZeroRadix {
        /// The level (1-based).
        level: usize,
    },
    /// `(k_j - 1)·Δ` exceeds 65535 blocks, the largest BIP-0068 block lock.
    LockTooLong {
        /// The level (1-based).
        level: usize,
    },
    /// `Δ` is zero: siblings would not be ordered.
    ZeroStep,
    /// `T_r` is zero: the payer could refund in the leaf's own block, racing the payee.
    ZeroRefundDelay,
    /// `Π k_j` does not fit in 64 bits.
    TooManyStates,
}

impl fmt::Display for ParamsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamsError::NoLevels => f.write_str("the tree needs at least one level"),
            ParamsError::TooDeep => write!(f, "more than {MAX_DEPTH} levels"),
            ParamsError::ZeroRadix { level } => write!(f, "level {level} has radix 0"),
            ParamsError::LockTooLong { level } => write!(f, "level {level}: (k-1)·Δ exceeds 65535 blocks"),
            ParamsError::ZeroStep => f.write_str("step Δ is zero"),
            ParamsError::ZeroRefundDelay => f.write_str("refund delay T_r is zero"),
            ParamsError::TooManyStates => f.write_str("number of states overflows 64 bits"),
        }
    }
}

impl core::error::Error for ParamsError {}

/// The shape of an invalidation tree: radix per level, step `Δ` and leaf refund delay `T_r`,
/// all in blocks. Valid by construction.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Params {
    radix: Vec<u32>,
    step: u16,
    refund_delay: u16,
}

impl Params {
    /// A tree with `radix[j-1]` locks at level `j` (`radix.len()` = depth `d`), step `step`
    /// (`Δ`) and leaf refund delay `refund_delay` (`T_r`).
    ///
    /// # Errors
    /// [`ParamsError`] if the depth is 0 or above [`MAX_DEPTH`], a radix is 0, some
    /// `(k_j - 1)·Δ > 65535`, `Δ` or `T_r` is 0, or `Π k_j` overflows.
    pub fn new(radix: Vec<u32>, step: u16, refund_delay: u16) -> Result<Self, ParamsError> {
        if radix.is_empty() {
            return Err(ParamsError::NoLevels);
        }
        if radix.len() > MAX_DEPTH {
            return Err(ParamsError::TooDeep);
        }
        if step == 0 {
            return Err(ParamsError::ZeroStep);
        }
        if refund_delay == 0 {
            return Err(ParamsError::ZeroRefundDelay);
        }
        let mut states: u64 = 1;
        for (i, &k) in radix.iter().enumerate() {
            let level = i + 1;
            if k == 0 {
                return Err(ParamsError::ZeroRadix { level });
            }
            let max = u64::from(k - 1) * u64::from(step);
            if max > u64::from(u16::MAX) {
                return Err(ParamsError::LockTooLong { level });
            }
            states = states.checked_mul(u64::from(k)).ok_or(ParamsError::TooManyStates)?;
        }
        Ok(Params { radix, step, refund_delay })
    }

    /// A tree of `depth` levels with `k` locks each.
    ///
    /// # Errors
    /// As [`Params::new`].
    pub fn uniform(depth: usize, k: u32, step: u16, refund_delay: u16) -> Result<Self, ParamsError> {
        if depth > MAX_DEPTH {
            return Err(ParamsError::TooDeep);
        }
        Self::new(alloc::vec![k; depth], step, refund_delay)
    }

    /// The depth `d` (number of timelocked levels; the deepest is the leaf).
    pub fn depth(&self) -> usize {
        self.radix.len()
    }

    /// The radix `k_j` of every level, level 1 first.
    pub fn radix(&self) -> &[u32] {
        &self.radix
    }

    /// The step `Δ` in blocks.
    pub fn step(&self) -> u16 {
        self.step
    }

    /// The leaf refund delay `T_r` in blocks.
    pub fn refund_delay(&self) -> u16 {
        self.refund_delay
    }

    /// Number of states `Π k_j` (`k^d`).
    pub fn states(&self) -> u64 {
        self.radix.iter().fold(1u64, |acc, &k| acc.saturating_mul(u64::from(k)))
    }

    /// Resets available over the channel's life: `Π k_j − 1`. Payments inside a leaf consume
    /// none.
    pub fn resets(&self) -> u64 {
        self.states() - 1
    }

    /// The BIP-0068 lock of level `level` (1-based) at counter digit `digit`:
    /// `s_j = (k_j − 1 − v_j)·Δ`. `None` if the level or digit is out of range.
    pub fn lock(&self, level: usize, digit: u32) -> Option<u16> {
        let k = *self.radix.get(level.checked_sub(1)?)?;
        let remaining = k.checked_sub(1)?.checked_sub(digit)?;
        u16::try_from(remaining * u32::from(self.step)).ok()
    }

    /// The longest lock of level `level` (1-based): `(k_j − 1)·Δ`.
    pub fn max_lock(&self, level: usize) -> Option<u16> {
        self.lock(level, 0)
    }

    /// `Σ_j (k_j − 1)·Δ`: the sum of the longest locks, in blocks.
    pub fn max_lock_sum(&self) -> u32 {
        self.radix.iter().map(|&k| (k - 1) * u32::from(self.step)).sum()
    }

    /// Transactions a unilateral close puts on chain (excluding the funding transaction): the
    /// kickoff, `d` nodes, at most one payment or refund per leaf direction, and one claim per
    /// HTLC output: `1 + d + 2 + htlcs`. A cooperative close is one transaction.
    pub fn unilateral_close_txs(&self, htlcs: usize) -> usize {
        1 + self.depth() + 2 + htlcs
    }

    /// Worst-case blocks from "decide to close unilaterally" until the leaf confirms, with
    /// `confirm_blocks` (`S`) blocks to get a transaction confirmed:
    /// `D_tree_max = (d + 1)·S + Σ_j (k_j − 1)·Δ` (a fresh or just-carried counter).
    pub fn max_close_delay(&self, confirm_blocks: u32) -> u32 {
        let s = confirm_blocks.saturating_mul(self.depth() as u32 + 1);
        s.saturating_add(self.max_lock_sum())
    }

    /// Blocks until the leaf confirms from the state with these counter digits:
    /// `D_tree(state) = S + Σ_j (s_j + S)`. `None` if the digits do not fit the tree.
    pub fn close_delay(&self, digits: &[u16], confirm_blocks: u32) -> Option<u32> {
        if digits.len() != self.depth() {
            return None;
        }
        let mut total = confirm_blocks;
        for (j, &v) in digits.iter().enumerate() {
            total = total.saturating_add(u32::from(self.lock(j + 1, u32::from(v))?)).saturating_add(confirm_blocks);
        }
        Some(total)
    }

    /// Worst case until the payee side of a leaf has its funds: `D_tree_max + S`.
    pub fn payee_funds_delay(&self, confirm_blocks: u32) -> u32 {
        self.max_close_delay(confirm_blocks).saturating_add(confirm_blocks)
    }

    /// Worst case until the payer side has its funds if the counterparty never publishes its
    /// payment: `D_tree_max + T_r + S`.
    pub fn payer_funds_delay(&self, confirm_blocks: u32) -> u32 {
        self.payee_funds_delay(confirm_blocks).saturating_add(u32::from(self.refund_delay))
    }

    /// `E_in` of a duplex channel (docs/multihop.md §2): blocks the receiver of an HTLC needs to get it
    /// claimed on chain, `D_tree_max + 2S`. An incoming HTLC must expire at least
    /// `E_in + R` blocks after it is accepted.
    pub fn htlc_receive_blocks(&self, confirm_blocks: u32) -> u32 {
        self.max_close_delay(confirm_blocks).saturating_add(confirm_blocks.saturating_mul(2))
    }

    /// `F_out` of a duplex channel (docs/multihop.md §2): blocks the offerer of an HTLC needs, once it gives
    /// up on the peer, until the HTLC is resolved on chain, `D_tree_max + T_r + 2S`: the tree,
    /// then the refund, valid at `leaf + T_r`, can take `S` blocks to confirm, during which the
    /// payee's payment (carrying the HTLC output) can still win the race; the offerer's timeout
    /// claim of that output then needs another `S`.
    pub fn htlc_offer_blocks(&self, confirm_blocks: u32) -> u32 {
        self.payer_funds_delay(confirm_blocks).saturating_add(confirm_blocks)
    }

    /// The smallest final-hop expiry delta (docs/multihop.md §2) for a payee on this channel:
    /// `2R + G + E_in = 2R + G + D_tree_max + 2S` (the payee's side of the race: its payment,
    /// then its claim; the offerer's `F_out` does not enter it).
    pub fn min_final_expiry_delta(&self, confirm_blocks: u32, reorg_blocks: u32, grace_blocks: u32) -> u32 {
        reorg_blocks
            .saturating_mul(2)
            .saturating_add(grace_blocks)
            .saturating_add(self.htlc_receive_blocks(confirm_blocks))
    }

    /// The `cltv_expiry_delta` (docs/multihop.md §2) a node must advertise to forward from a channel whose
    /// receiver needs `incoming_receive_blocks` (`E_in` of the incoming channel type) out over this
    /// duplex channel: `3R + 2G + F_out + E_in` with `F_out = D_tree_max + T_r + 2S`
    /// ([`Params::htlc_offer_blocks`]).
    pub fn forward_expiry_delta(
        &self,
        confirm_blocks: u32,
        reorg_blocks: u32,
        grace_blocks: u32,
        incoming_receive_blocks: u32,
    ) -> u32 {
        reorg_blocks
            .saturating_mul(3)
            .saturating_add(grace_blocks.saturating_mul(2))
            .saturating_add(self.htlc_offer_blocks(confirm_blocks))
            .saturating_add(incoming_receive_blocks)
    }
}

/// Why channel terms were refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum TermsError {
    /// The tree parameters are invalid.
    Params(ParamsError),
    /// The capacity is zero or below the dust limit, or exceeds 21 million bitcoin.
    Capacity,
    /// The push amount exceeds the channel value, or leaves one side with a non-zero amount below
    /// dust.
    Push,
    /// A fee leaves no room above the dust limit (payment, refund or claim fee too large).
    Fees,
    /// `T_r` is not longer than `S + R`: the payee could not get its payment confirmed before the
    /// payer's refund becomes valid.
    RefundDelayTooShort,
    /// The HTLC expiry window is empty (`max_htlc_expiry_delta` is below the minimum §4 demands).
    HtlcWindow,
    /// `S` is zero: no transaction confirms in zero blocks, and every other margin is derived from
    /// it.
    ZeroConfirmBlocks,
    /// The step `Δ` is not longer than `S + R` (docs/duplex.md §3, §7): once a node's parent confirmed
    /// at `h`, an older sibling (lock at least `Δ` longer) could be mined before the honest
    /// party gets the current node confirmed and buried `R` deep, and the stale branch's
    /// balances would win. A current node with lock 0 can only be broadcast once its parent is
    /// seen at `h`, and confirms at `h + S` at worst, so `Δ` must exceed `S + R`, as `T_r` must.
    StepTooShort,
    /// The funding depth is not above `R` ([`Terms::min_funding_depth`]): a reorg the terms
    /// tolerate could remove the funding transaction after payments were counted in it, and a
    /// hostile funder could then double-spend its inputs (docs/duplex.md §3).
    FundingDepthTooSmall,
}

impl fmt::Display for TermsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TermsError::Params(e) => write!(f, "tree parameters: {e}"),
            TermsError::Capacity => f.write_str("capacity below dust or above 21 million bitcoin"),
            TermsError::Push => f.write_str("push amount leaves a side below dust"),
            TermsError::Fees => f.write_str("a fee leaves no room above dust"),
            TermsError::RefundDelayTooShort => f.write_str("refund delay not longer than S + R"),
            TermsError::HtlcWindow => f.write_str("HTLC expiry window is empty"),
            TermsError::ZeroConfirmBlocks => f.write_str("confirmation time S is zero"),
            TermsError::StepTooShort => f.write_str("step Δ not longer than S + R"),
            TermsError::FundingDepthTooSmall => f.write_str("funding depth not above R"),
        }
    }
}

impl core::error::Error for TermsError {}

impl From<ParamsError> for TermsError {
    fn from(e: ParamsError) -> Self {
        TermsError::Params(e)
    }
}

/// Everything both parties agree on when the channel opens. The initiator proposes them in
/// [`Open`](super::Open); the acceptor's embedder inspects them before calling
/// [`Channel::accept`](super::Channel::accept).
///
/// The pre-signed transactions that spend the funding output or a tree output — the kickoff,
/// the nodes, the leaf and the cooperative close — pay **no fee**: each is version 3 (TRUC) with
/// one zero-value pay-to-anchor output ([`p2a_output`](crate::core::script::p2a_output)), and
/// whoever publishes it pays the fee the chain asks for then, by a child spending that anchor
/// (CPFP, in a one-parent-one-child package). So the leaf carries the whole capacity
/// ([`Terms::channel_value`]), and every close pays both parties their balances to the satoshi.
/// Only the leaf channels' own transactions (payments, refunds, HTLC claims) pay the fixed fees
/// below, as in Spilman.
///
/// (Encoding version 1 of these terms also carried a `tree_fee`, the fixed fee of each tree
/// transaction; its messages and snapshots are refused with
/// [`DecodeError::UnknownVersion`](crate::core::encode::DecodeError::UnknownVersion)`(1)`,
/// since their signatures cover the old transactions.)
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Terms {
    /// The tree shape.
    pub params: Params,
    /// Value of the funding output (funded by the initiator's wallet).
    pub capacity: Amount,
    /// Initial balance of the acceptor.
    pub push: Amount,
    /// Fee of each leaf payment transaction (paid by its payee, as in Spilman).
    pub payment_fee: Amount,
    /// Fee of a leaf refund transaction (paid by its payer).
    pub refund_fee: Amount,
    /// Fee of an on-chain HTLC claim.
    pub claim_fee: Amount,
    /// No output may be below this.
    pub dust_limit: Amount,
    /// `S`: blocks to get a transaction confirmed (with fee bumping).
    pub confirm_blocks: u16,
    /// `R`: reorg depth to tolerate.
    pub reorg_blocks: u16,
    /// `G`: an offerer goes on chain this many blocks after an unresolved HTLC of its own expired.
    pub htlc_grace_blocks: u16,
    /// New HTLCs must expire at most this many blocks after the tip.
    pub max_htlc_expiry_delta: u32,
    /// Report [`Event::ResetsRunningLow`](super::Event::ResetsRunningLow) once this few resets
    /// remain.
    pub reset_warning: u64,
    /// `n`: confirmations of the funding transaction before payments count (docs/duplex.md §3,
    /// "Funding depth"). A party refuses every incoming payment and HTLC until the funding has
    /// `n` confirmations on its own view of the chain, and sends none before it sees `n + 1`
    /// (one block of slack, so two honest parties whose tips differ by a block never refuse each
    /// other). Negotiated, not local: the sender must know what the receiver demands. At least
    /// [`Terms::min_funding_depth`] (`R + 1`).
    pub funding_depth: u16,
}

impl Terms {
    /// The value the leaf carries, and the 2-of-2 output of every tree transaction: the whole
    /// capacity (tree transactions pay no fee).
    pub fn channel_value(&self) -> Amount {
        self.capacity
    }

    /// The smallest valid amount to the payee of a leaf payment: its fee plus the dust limit.
    pub(crate) fn min_to_payee(&self) -> Option<Amount> {
        self.payment_fee.checked_add(self.dust_limit)
    }

    /// The earliest expiry a new HTLC may have at `tip`: `tip + E_in + R` (docs/duplex.md §3).
    pub fn min_htlc_expiry_delta(&self) -> u32 {
        self.params.htlc_receive_blocks(u32::from(self.confirm_blocks)).saturating_add(u32::from(self.reorg_blocks))
    }

    /// The smallest [`Terms::funding_depth`] accepted: `R + 1`. A funding transaction with `R + 1`
    /// confirmations survives every reorg of at most `R` blocks, the reorgs the channel is
    /// built to tolerate. Also the depth assumed for terms encoded before the field existed.
    pub fn min_funding_depth(&self) -> u16 {
        self.reorg_blocks.saturating_add(1)
    }

    /// Checks the terms for internal consistency and safety (docs/duplex.md §3, §7): the tree
    /// parameters, the amounts and fees against the dust limit, `S ≥ 1`, the step `Δ > S + R` (a watching party gets the current node
    /// confirmed, `R` deep, before any older sibling matures), the refund delay `T_r > S + R` (the
    /// payee's payment confirms before the payer's refund is valid), a non-empty HTLC expiry
    /// window, and a funding depth `n > R` (the funding survives every tolerated reorg).
    ///
    /// # Errors
    /// [`TermsError`] naming the first problem.
    pub fn validate(&self) -> Result<(), TermsError> {
        let p = &self.params;
        // Re-check the parameters (they may come from a peer's message).
        Params::new(p.radix.clone(), p.step, p.refund_delay)?;
        if self.capacity > Amount::MAX_MONEY {
            return Err(TermsError::Capacity);
        }
        let value = self.channel_value();
        if value < self.dust_limit || value == Amount::ZERO {
            return Err(TermsError::Capacity);
        }
        let rest = value.checked_sub(self.push).ok_or(TermsError::Push)?;
        let fine = |a: Amount| a == Amount::ZERO || a >= self.dust_limit;
        if !fine(rest) || !fine(self.push) {
            return Err(TermsError::Push);
        }
        let min_payee = self.min_to_payee().ok_or(TermsError::Fees)?;
        if min_payee > value
            || self.refund_fee.checked_add(self.dust_limit).is_none_or(|m| m > value)
            || self.claim_fee.checked_add(self.dust_limit).is_none()
        {
            return Err(TermsError::Fees);
        }
        if self.confirm_blocks == 0 {
            return Err(TermsError::ZeroConfirmBlocks);
        }
        let margin = u32::from(self.confirm_blocks) + u32::from(self.reorg_blocks);
        if u32::from(p.step) <= margin {
            return Err(TermsError::StepTooShort);
        }
        if u32::from(p.refund_delay) <= margin {
            return Err(TermsError::RefundDelayTooShort);
        }
        if self.max_htlc_expiry_delta < self.min_htlc_expiry_delta() {
            return Err(TermsError::HtlcWindow);
        }
        if u32::from(self.funding_depth) <= u32::from(self.reorg_blocks) {
            return Err(TermsError::FundingDepthTooSmall);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_formulas() {
        let p = Params::uniform(3, 3, 6, 20).unwrap();
        assert_eq!(p.states(), 27);
        assert_eq!(p.resets(), 26);
        assert_eq!(p.lock(1, 0), Some(12));
        assert_eq!(p.lock(3, 2), Some(0));
        assert_eq!(p.lock(3, 3), None);
        assert_eq!(p.lock(4, 0), None);
        assert_eq!(p.max_close_delay(2), 4 * 2 + 3 * 12);
        assert_eq!(p.close_delay(&[2, 2, 2], 2), Some(8));
        assert_eq!(p.close_delay(&[0, 0, 0], 2), Some(p.max_close_delay(2)));
        assert_eq!(p.unilateral_close_txs(2), 8);
        // sidepool v1: radix (4,4,4,4,4,2), Δ=144: 2048 states, max lock sum 2304.
        let s = Params::new(alloc::vec![4, 4, 4, 4, 4, 2], 144, 144).unwrap();
        assert_eq!(s.states(), 2048);
        assert_eq!(s.max_lock_sum(), 2304);
    }

    #[test]
    fn validation() {
        assert_eq!(Params::new(alloc::vec![], 1, 1), Err(ParamsError::NoLevels));
        assert_eq!(Params::new(alloc::vec![2, 0], 1, 1), Err(ParamsError::ZeroRadix { level: 2 }));
        assert_eq!(Params::new(alloc::vec![65_537], 1, 1), Err(ParamsError::LockTooLong { level: 1 }));
        assert!(Params::new(alloc::vec![65_536], 1, 1).is_ok());
        assert_eq!(Params::new(alloc::vec![2], 0, 1), Err(ParamsError::ZeroStep));
        assert_eq!(Params::new(alloc::vec![2], 1, 0), Err(ParamsError::ZeroRefundDelay));
        assert_eq!(Params::new(alloc::vec![65_536; 5], 1, 1), Err(ParamsError::TooManyStates));
        assert_eq!(Params::uniform(33, 2, 1, 1), Err(ParamsError::TooDeep));
    }
}
