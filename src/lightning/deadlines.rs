//! HTLC deadlines (BOLT #2 "`cltv_expiry_delta` Selection"): the channel goes on chain by itself
//! when the peer leaves an HTLC in the commitments too long ([`HtlcDeadlines`]).
//!
//! * An HTLC we offered, still in either commitment `offered_grace` blocks past its expiry, is
//!   timed out on chain (the force close's HTLC-timeout, or the timeout path on the peer's
//!   commitment).
//! * An HTLC offered to us whose preimage we know, still in either commitment `claim_margin`
//!   blocks before its expiry, is claimed on chain with the preimage before the peer can time it
//!   out.
//!
//! [`HtlcDeadlines`]: super::HtlcDeadlines

use alloc::vec::Vec;

use super::channel::Channel;
use super::htlc::{Htlc, Side};
use super::{Effects, Event};
use crate::core::sign::Signer;
use crate::core::units::BlockHeight;

impl Channel {
    /// The height at which `h` makes the channel go on chain, if it has such a deadline.
    fn htlc_deadline(&self, h: &Htlc) -> Option<u32> {
        if !(h.in_commitment_of(Side::Holder) || h.in_commitment_of(Side::Counterparty)) {
            return None;
        }
        let d = self.config.htlc_deadlines;
        match h.offerer {
            // Fulfilled by the peer: we were paid, nothing of ours is at stake.
            Side::Holder => h.preimage().is_none().then(|| h.cltv_expiry.saturating_add(d.offered_grace)),
            Side::Counterparty => {
                let known = h.preimage().is_some()
                    || self.preimages.iter().any(|(o, i, _)| *o == Side::Counterparty && *i == h.id);
                // Fewer than `claim_margin` blocks left.
                known.then(|| h.cltv_expiry.saturating_add(1).saturating_sub(d.claim_margin))
            }
        }
    }

    /// The next height at which the channel must be given the tip ([`Channel::handle_chain`])
    /// to act on an HTLC deadline ([`HtlcDeadlines`](super::HtlcDeadlines)): the earliest of
    /// `cltv_expiry + offered_grace` over the HTLCs we offered and `cltv_expiry - claim_margin + 1`
    /// over those offered to us whose preimage we know, still in either commitment. `None` when
    /// there is none, or once the channel is on chain (or knows its state is stale and may not
    /// broadcast). It is in every [`Effects::next_deadline`](crate::driving::Effects::next_deadline)
    /// the channel returns.
    pub fn next_deadline(&self) -> Option<BlockHeight> {
        if self.is_off_chain_over() {
            return None;
        }
        self.htlcs.iter().filter_map(|h| self.htlc_deadline(h)).min().map(BlockHeight)
    }

    /// Whether an HTLC expiring at `cltv_expiry` is too close to `tip` to be settled off chain:
    /// fewer than `claim_margin` blocks are left.
    pub(crate) fn expires_too_soon(&self, cltv_expiry: u32, tip: BlockHeight) -> bool {
        u64::from(cltv_expiry) < u64::from(tip.0) + u64::from(self.config.htlc_deadlines.claim_margin)
    }

    /// Goes on chain if an HTLC deadline has come at the current tip: reports each HTLC due
    /// ([`Event::HtlcDeadline`]), then broadcasts our commitment ([`Channel::force_close`]);
    /// the on-chain resolution times out or claims the HTLCs as the chain goes on.
    pub(crate) fn check_htlc_deadlines<S: Signer + ?Sized>(&mut self, signer: &S) -> Effects {
        if self.is_off_chain_over() {
            return Effects::none();
        }
        let tip = self.tip.0;
        let due: Vec<Event> = self
            .htlcs
            .iter()
            .filter(|h| self.htlc_deadline(h).is_some_and(|d| tip >= d))
            .map(|h| Event::HtlcDeadline { offerer: h.offerer, id: h.id, cltv_expiry: h.cltv_expiry })
            .collect();
        if due.is_empty() {
            return Effects::none();
        }
        match self.force_close(signer) {
            Ok(close) => {
                let mut fx = Effects::none();
                fx.events = due;
                fx.merge(close);
                fx
            }
            // No commitment of ours signed yet: nothing can be broadcast (nor is at stake).
            Err(_) => Effects::none(),
        }
    }
}
