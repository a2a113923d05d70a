//! The [`BumpRequest`]s of a duplex channel's unilateral close (docs/duplex.md §9, see
//! [`core::feebump`](crate::core::feebump)).
//!
//! | transaction | how it is bumped | deadline (must confirm by) | at stake |
//! |---|---|---|---|
//! | the kickoff `K` | CPFP through its pay-to-anchor output | `S` blocks after the close starts | the holder's balance and HTLCs |
//! | a node `N_j` or the leaf of the followed branch | CPFP through its pay-to-anchor output | `h + s_j + S` (parent confirmed at `h`), and before `h + s_j + Δ − R` in any case (an older sibling may be mined from `h + s_j + Δ`) | as above |
//! | our best payment in the peer's leaf channel | CPFP through our payee output (the Spilman close) | `L + T_r − 1`, the block before the payer's refund can be mined | our output and the HTLCs we revealed |
//! | our leaf refund | RBF (we sign it alone; its CSV lock stays in every replacement) | `L + T_r + S` | the refund's value |
//! | HTLC claims | RBF, as Spilman's | as Spilman's | the HTLC |
//! | the cooperative close | CPFP through its pay-to-anchor output | `Δ` blocks after it is broadcast (a patience bound: nothing can be stolen while it waits) | what it pays the holder |
//!
//! Tree transactions pay no fee and are version 3 (TRUC): the child is version 3 too, spends only
//! the anchor (empty witness) and wallet coins, and each tree transaction is broadcast only once
//! its parent confirmed, so it is the child's only unconfirmed ancestor.

use bitcoin::{Amount, OutPoint, Transaction};

use super::params::Terms;
use crate::core::feebump::{BumpMethod, BumpRequest, InputTemplate, Protects};
use crate::core::script::is_p2a;
use crate::core::units::BlockHeight;

/// The deadline of a tree transaction first valid in block `valid_from` (the kickoff: the tip
/// when the close starts), broadcast with the chain at `tip`: `S` blocks after `valid_from`, and
/// before `valid_from + Δ − R` (an older sibling's lock is at least `Δ` longer); never before the
/// next block.
pub(super) fn tree_deadline(terms: &Terms, valid_from: BlockHeight, tip: BlockHeight) -> BlockHeight {
    let s = u32::from(terms.confirm_blocks);
    let race = u32::from(terms.params.step()).saturating_sub(u32::from(terms.reorg_blocks)).saturating_sub(1);
    let deadline = valid_from.0.saturating_add(s.min(race));
    BlockHeight(deadline.max(tip.0.saturating_add(1)))
}

/// The CPFP request of a zero-fee tree transaction `tx` through its pay-to-anchor output, or
/// `None` if it has none.
pub(super) fn tree_request(tx: &Transaction, deadline: BlockHeight, at_stake: Amount) -> Option<BumpRequest> {
    let vout = tx.output.iter().position(|o| is_p2a(&o.script_pubkey))?;
    let value = tx.output.get(vout)?.value;
    let anchor =
        InputTemplate::pay_to_anchor(OutPoint { txid: tx.compute_txid(), vout: u32::try_from(vout).ok()? }, value);
    Some(BumpRequest {
        tx: tx.clone(),
        deadline,
        at_stake,
        protects: Protects::DuplexBranch,
        // Tree transactions pay no fee: their outputs sum to their input.
        method: BumpMethod::Child { anchor, parent_fee: Amount::ZERO },
    })
}

/// The CPFP request of the zero-fee cooperative close `tx`, broadcast with the chain at `tip`,
/// for the party it pays `ours`.
///
/// The close is not time-critical: while it waits, the funding output (or the tree output it
/// spends) can only go to a kickoff or node of a branch, and then the unilateral close protects
/// both balances; the holder can also start one itself. Its deadline is therefore a patience
/// bound, `Δ` blocks after the broadcast (the channel's own unit of delay, at least `S + R`):
/// the schedule pays the estimate for confirming within `Δ / 2` blocks at first and the
/// next-block estimate at the end. What is at stake is what the close pays the holder: a party
/// left with nothing (a balance below dust goes to the anchor) asks for no bump, and no bump pays
/// more than the holder would receive.
pub(super) fn coop_request(terms: &Terms, tx: &Transaction, ours: Amount, tip: BlockHeight) -> Option<BumpRequest> {
    let deadline = BlockHeight(tip.0.saturating_add(u32::from(terms.params.step()).max(1)));
    tree_request(tx, deadline, ours).map(|r| BumpRequest { protects: Protects::CooperativeClose, ..r })
}

/// A leaf channel's request built by the Spilman helpers, marked as the duplex leaf's.
pub(super) fn leaf(request: Option<BumpRequest>) -> Option<BumpRequest> {
    request.map(|r| BumpRequest { protects: Protects::DuplexLeaf, ..r })
}
