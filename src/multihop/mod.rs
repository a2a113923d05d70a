//! Multi-hop rules across channel types (docs/multihop.md): the expiry deltas a forwarding node
//! needs between an incoming and an outgoing HTLC, derived from each channel type's on-chain
//! resolution time, and the forwarding checks that use them.
//!
//! With reorg depth `R`, grace `G` and `S` blocks to get a transaction confirmed, a node that
//! receives over a channel of type X and forwards over type Y needs
//! `cltv_expiry_delta >= 3R + 2G + F_out(Y) + E_in(X)`, where `F_out` is the time it needs, once it
//! gives up on the downstream peer, until the outgoing HTLC is resolved on chain, and `E_in` the time
//! it needs to get the incoming HTLC claimed on chain. With Lightning on both sides this is BOLT #2's
//! `3R + 2G + 2S` (34 blocks for R=2, G=2, S=12).
//!
//! | channel type | `F_out` | `E_in` | final hop minimum |
//! |---|---|---|---|
//! | Lightning | `S` | `S` | `2R + G + S` |
//! | duplex leaf | `D + T_r + 2S` | `D + 2S` | `2R + G + D + 2S` |
//! | Spilman (expiry `X`) | until `X + S`: the outgoing HTLC can outlive any delta | `2S` | `2R + G + 2S` |
//!
//! `D` is the duplex channel's worst-case time to get its leaf confirmed and `T_r` its leaf
//! refund delay. The duplex `F_out` counts `S` twice after `T_r`: the offerer's refund, valid at
//! `leaf + T_r`, may wait `S` blocks to confirm, and until it does the payee's payment (with the
//! HTLC output) can confirm instead; the offerer's timeout claim of that output needs another `S`. Over Spilman, only the payee can publish payment transactions, so a payer that
//! forwards is safe only if its incoming HTLC outlives the channel's refund: the requirement is an
//! absolute height, not a delta.
//!
//! # Forwarding
//! [`Forwarder`] is the sans-I/O forwarding node built on these rules: it holds an incoming and an
//! outgoing channel of any of the three types behind the one [`HtlcChannel`] trait, forwards an
//! HTLC once the incoming one is irrevocably committed and passes every check above, fulfils
//! upstream as soon as it learns the preimage (message or witness), fails upstream only once the
//! downstream failure is irrevocable, and goes on chain when an HTLC's deadline comes.

mod adapters;
mod channel;
mod forward;
mod state;

pub use channel::{HtlcChannel, HtlcError, HtlcSignal, RefusedHtlc};
pub use forward::{
    ForwardEvent, ForwardState, Forwarder, ForwarderConfig, NodeEffects, RefuseReason, Route, Tracked,
    MAX_OUTGOING_EXPIRY_DELTA,
};

use core::fmt;

use crate::core::units::{BlockHeight, MilliSats};

/// The chain assumptions every delta is derived from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SafetyMargins {
    /// `R`: the deepest reorg to survive.
    pub reorg_depth: u32,
    /// `G`: blocks of grace before going on chain.
    pub grace: u32,
    /// `S`: blocks to get a transaction confirmed (with fee bumping).
    pub confirm: u32,
}

impl Default for SafetyMargins {
    /// BOLT #2's example: `R = 2`, `G = 2`, `S = 12`.
    fn default() -> Self {
        SafetyMargins { reorg_depth: 2, grace: 2, confirm: 12 }
    }
}

/// The type of the channel on one side of a hop.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HopKind {
    /// A Poon–Dryja channel.
    Lightning,
    /// A duplex channel: `tree_delay` is its worst-case time to get the leaf confirmed from the
    /// decision to close (`D_tree_max`, docs/duplex.md §3), `refund_delay` its leaf `T_r`.
    Duplex {
        /// `D_tree_max` in blocks.
        tree_delay: u32,
        /// `T_r` in blocks.
        refund_delay: u32,
    },
    /// A Spilman channel refundable from `expiry`.
    Spilman {
        /// The channel's refund height.
        expiry: BlockHeight,
    },
}

/// How long after the incoming HTLC's expiry... the outgoing one must expire, as a requirement.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Requirement {
    /// The incoming expiry must exceed the outgoing one by at least this many blocks.
    Delta(u32),
    /// The incoming expiry must be at least this height (whatever the outgoing one).
    AtLeast(BlockHeight),
}

/// `E_in`: blocks needed to get an incoming HTLC of this channel type claimed on chain.
pub fn e_in(kind: HopKind, m: SafetyMargins) -> u32 {
    match kind {
        HopKind::Lightning => m.confirm,
        HopKind::Duplex { tree_delay, .. } => tree_delay.saturating_add(m.confirm.saturating_mul(2)),
        HopKind::Spilman { .. } => m.confirm.saturating_mul(2),
    }
}

/// `F_out`: blocks needed, once the downstream peer is given up on, until an outgoing HTLC of this
/// channel type is resolved on chain. For Spilman it is not bounded by the HTLC's expiry: see
/// [`min_cltv_expiry_delta`].
pub fn f_out(kind: HopKind, m: SafetyMargins) -> Option<u32> {
    match kind {
        HopKind::Lightning => Some(m.confirm),
        HopKind::Duplex { tree_delay, refund_delay } => {
            Some(tree_delay.saturating_add(refund_delay).saturating_add(m.confirm.saturating_mul(2)))
        }
        HopKind::Spilman { .. } => None,
    }
}

/// The smallest `cltv_expiry_delta` a node receiving over `incoming` and forwarding over
/// `outgoing` may use: `3R + 2G + F_out(outgoing) + E_in(incoming)`; for a Spilman outgoing channel,
/// an absolute floor on the incoming expiry: the channel's refund height plus `S` plus the
/// incoming side's own needs.
pub fn min_cltv_expiry_delta(incoming: HopKind, outgoing: HopKind, m: SafetyMargins) -> Requirement {
    let base =
        m.reorg_depth.saturating_mul(3).saturating_add(m.grace.saturating_mul(2)).saturating_add(e_in(incoming, m));
    match (f_out(outgoing, m), outgoing) {
        (Some(f), _) => Requirement::Delta(base.saturating_add(f)),
        (None, HopKind::Spilman { expiry }) => Requirement::AtLeast(
            expiry.checked_add(m.confirm.saturating_add(base)).unwrap_or(BlockHeight::MAX_LOCKTIME),
        ),
        (None, _) => Requirement::Delta(u32::MAX),
    }
}

/// The smallest `min_final_cltv_expiry_delta` a final node receiving over `kind` may accept.
pub fn min_final_cltv_expiry_delta(kind: HopKind, m: SafetyMargins) -> u32 {
    m.reorg_depth.saturating_mul(2).saturating_add(m.grace).saturating_add(e_in(kind, m))
}

/// A forwarding node's fee policy for one outgoing channel.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FeePolicy {
    /// Base fee.
    pub base: MilliSats,
    /// Proportional fee in millionths.
    pub proportional_millionths: u32,
}

impl FeePolicy {
    /// `base + amount · proportional / 10^6`, or `None` on overflow.
    pub fn fee(&self, amount: MilliSats) -> Option<MilliSats> {
        let prop = u128::from(amount.to_msat()) * u128::from(self.proportional_millionths) / 1_000_000;
        self.base.checked_add(MilliSats::from_msat(u64::try_from(prop).ok()?))
    }
}

/// Why an HTLC may not be forwarded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum ForwardError {
    /// The incoming amount does not cover the outgoing amount plus the fee.
    FeeInsufficient,
    /// The incoming expiry leaves less than the required delta (or absolute floor).
    IncorrectCltvExpiry,
    /// The incoming HTLC expires too soon to be claimed on chain.
    ExpiryTooSoon,
}

impl fmt::Display for ForwardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl core::error::Error for ForwardError {}

/// An HTLC's amount and expiry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HtlcTerms {
    /// Amount.
    pub amount: MilliSats,
    /// Absolute expiry height.
    pub expiry: BlockHeight,
}

/// The checks a forwarding node makes before offering `outgoing` for `incoming`: the fee, the
/// expiry delta (or Spilman floor), and that the incoming HTLC can still be claimed on chain
/// (`incoming.expiry - tip >= E_in + R`).
///
/// # Errors
/// [`ForwardError`] naming the first failed check.
#[allow(clippy::too_many_arguments)]
pub fn check_forward(
    incoming: HtlcTerms,
    incoming_kind: HopKind,
    outgoing: HtlcTerms,
    outgoing_kind: HopKind,
    fee: FeePolicy,
    configured_delta: u32,
    tip: BlockHeight,
    m: SafetyMargins,
) -> Result<(), ForwardError> {
    let needed = outgoing.amount.checked_add(fee.fee(outgoing.amount).ok_or(ForwardError::FeeInsufficient)?);
    if needed.is_none_or(|n| incoming.amount < n) {
        return Err(ForwardError::FeeInsufficient);
    }
    let delta_ok = match min_cltv_expiry_delta(incoming_kind, outgoing_kind, m) {
        Requirement::Delta(min) => {
            let delta = configured_delta.max(min);
            outgoing.expiry.checked_add(delta).is_some_and(|e| incoming.expiry >= e)
        }
        Requirement::AtLeast(h) => incoming.expiry >= h && incoming.expiry > outgoing.expiry,
    };
    if !delta_ok {
        return Err(ForwardError::IncorrectCltvExpiry);
    }
    let claim_window = e_in(incoming_kind, m).saturating_add(m.reorg_depth);
    if tip.checked_add(claim_window).is_none_or(|h| incoming.expiry < h) {
        return Err(ForwardError::ExpiryTooSoon);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lightning_only_collapses_to_bolt2() {
        let m = SafetyMargins::default();
        assert_eq!(min_cltv_expiry_delta(HopKind::Lightning, HopKind::Lightning, m), Requirement::Delta(34));
        assert_eq!(min_final_cltv_expiry_delta(HopKind::Lightning, m), 18);
    }

    #[test]
    fn duplex_and_spilman_need_more() {
        let m = SafetyMargins::default();
        let dmc = HopKind::Duplex { tree_delay: 1_000, refund_delay: 144 };
        assert_eq!(min_cltv_expiry_delta(HopKind::Lightning, dmc, m), Requirement::Delta(10 + 12 + 1_000 + 144 + 24));
        assert_eq!(min_cltv_expiry_delta(dmc, HopKind::Lightning, m), Requirement::Delta(10 + 1_024 + 12));
        assert_eq!(min_final_cltv_expiry_delta(dmc, m), 6 + 1_024);
        let sp = HopKind::Spilman { expiry: BlockHeight(900_000) };
        assert_eq!(
            min_cltv_expiry_delta(HopKind::Lightning, sp, m),
            Requirement::AtLeast(BlockHeight(900_000 + 12 + 22))
        );
    }

    #[test]
    fn forwarding_checks() {
        let m = SafetyMargins::default();
        let fee = FeePolicy { base: MilliSats::from_msat(1_000), proportional_millionths: 100 };
        let out = HtlcTerms { amount: MilliSats::from_msat(1_000_000), expiry: BlockHeight(1_000) };
        let good = HtlcTerms { amount: MilliSats::from_msat(1_001_100), expiry: BlockHeight(1_040) };
        let ln = HopKind::Lightning;
        assert_eq!(check_forward(good, ln, out, ln, fee, 40, BlockHeight(900), m), Ok(()));
        let cheap = HtlcTerms { amount: MilliSats::from_msat(1_001_099), ..good };
        assert_eq!(check_forward(cheap, ln, out, ln, fee, 40, BlockHeight(900), m), Err(ForwardError::FeeInsufficient));
        let short = HtlcTerms { expiry: BlockHeight(1_033), ..good };
        assert_eq!(
            check_forward(short, ln, out, ln, fee, 0, BlockHeight(900), m),
            Err(ForwardError::IncorrectCltvExpiry)
        );
        assert_eq!(check_forward(good, ln, out, ln, fee, 40, BlockHeight(1_030), m), Err(ForwardError::ExpiryTooSoon));
    }
}
