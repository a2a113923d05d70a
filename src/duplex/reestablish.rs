//! Reconnection: both parties send a [`Reestablish`] first on every new connection, then each
//! sends again what the other missed, and each learns from the other's message whether it lost
//! data itself.
//!
//! What is compared:
//!
//! * **The committed counter.** A counterparty that committed a newer one completed a reset with
//!   us; unless we are waiting for that very reset's step (3), our data is older than what we
//!   signed: we lost state ([`Event::LostState`]). We believe it only with proof: the message
//!   carries the newer branch's leaf values and our signatures on it, and our signature on the
//!   node that replaced our branch must verify ([`Misbehaviour::UnprovenReestablish`] otherwise,
//!   nothing changed). A counterparty with an older one lost state
//!   ([`Event::CounterpartyLostState`]), unless it is waiting for the step (3) of the reset we
//!   committed: we send it again.
//! * **The reset in progress.** A proposal the counterparty has not accepted is proposed again; an
//!   acceptance the proposer has not received is sent again. Signatures are deterministic, so
//!   these are the same bytes as the first time, and the lock rule still holds. A responder keeps
//!   the branch it accepted until that reset completes, whatever the proposer does: when the
//!   proposer no longer holds the proposal (cancelled after the acceptance left, or lost), the
//!   responder's message carries the proposal's terms, and the proposer takes it up again if it is
//!   exactly one it could make now (its numbers, fair removals, the netting, a counter value not
//!   below any it released a signature for); the acceptance sent again completes it.
//! * **Payments.** The payer sends its newest payment again if the payee holds an older one (the
//!   payee keeps the best); a payer whose counterparty holds a newer payment of it than it
//!   remembers signing lost state, once its own signature on that payment (carried in the
//!   message) verifies. A payee that already holds the payer's newest payment counts as its
//!   acknowledgement. A payer whose newest payment carries HTLCs that the payee does not hold
//!   and would refuse now (their expiry left the window) withdraws them and sends its newest
//!   state without them instead (the payee's message carries the payment it holds, checked
//!   against our signature); the withdrawn HTLCs stay at risk, and out of what we may pay,
//!   until the leaf is superseded. A payee shown to hold withdrawn HTLCs after all (an earlier
//!   message of its hid them) gets them back in our next state, and a payment of ours it holds
//!   numbered above our own that carries them is recognised as ours, not as lost state.
//! * **HTLC resolutions.** The receiver sends again the fulfilments and failures of HTLCs still in
//!   the offerer's leaf channel that the offerer does not list as resolved.
//!
//! A channel that lost state takes no more commands that sign or commit anything new (it could
//! sign over an old state); it keeps following the chain. Its counterparty is told by the
//! `Reestablish` that follows, and should close.

use super::channel::{Channel, Phase};
use super::leaf::HtlcStatus;
use super::msgs::{AcceptedTerms, Msg, PendingReset, Reestablish, ResetFinish};
use super::reset::ResetState;
use super::tree;
use super::{peer_error, CommandError, Effects, Event, Misbehaviour, PeerError, Role};
use crate::core::sign::Signer;
use crate::core::units::BlockHeight;
use crate::driving::ChainTip;
use crate::spilman::payment::{PaymentHtlc, PaymentState};
use crate::spilman::Payment;

use alloc::vec::Vec;
use bitcoin::hashes::Hash as _;
use bitcoin::{Amount, Txid};

impl Channel {
    /// The [`Msg::Reestablish`] to send first on a new connection (then handle the
    /// counterparty's with [`Channel::handle_message`]).
    pub fn reestablish(&self) -> Msg {
        let pending = match &self.reset {
            ResetState::Idle => None,
            ResetState::Proposed(p) => Some(PendingReset::Proposed(p.digits.clone())),
            ResetState::AwaitingFinish { proposal, .. } => Some(PendingReset::Accepted(proposal.digits.clone())),
        };
        let accepted_terms = match &self.reset {
            ResetState::AwaitingFinish { proposal, .. } => Some(AcceptedTerms {
                numbers: proposal.numbers,
                removed: proposal.removed.clone(),
                values: proposal.values,
            }),
            _ => None,
        };
        let own = &self.channels[self.role.index()];
        let resolved = own.status.iter().filter(|(_, s)| !matches!(s, HtlcStatus::Live)).map(|(id, _)| *id).collect();
        let theirs = &self.channels[(!self.role).index()];
        let your_payment = theirs.signature.map(|signature| Payment {
            number: theirs.number,
            to_payee: theirs.state.to_payee,
            htlcs: theirs.state.htlcs.clone(),
            signature,
        });
        Msg::Reestablish(Reestablish {
            digits: self.digits.clone(),
            numbers: [self.channels[0].number, self.channels[1].number],
            pending,
            resolved,
            branch_values: self.values,
            your_branch_sigs: self.node_sigs.clone(),
            your_payment,
            accepted_terms,
        })
    }

    /// Whether a [`Msg::Reestablish`] showed that this channel's data is older than what it
    /// signed ([`Event::LostState`]).
    pub fn has_lost_state(&self) -> bool {
        self.lost_state
    }

    /// Marks our data as lost: persisted, reported, and every later command refused.
    fn lost(&mut self) -> Effects {
        self.lost_state = true;
        let mut fx = self.persist();
        fx.events.push(Event::LostState);
        fx
    }

    pub(super) fn on_reestablish<S: Signer + ?Sized>(
        &mut self,
        r: Reestablish,
        signer: &S,
        tip: ChainTip,
    ) -> Result<Effects, PeerError> {
        if !matches!(self.phase, Phase::Open | Phase::CoopClosing) {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        }
        let params = &self.terms.params;
        let pending_digits = match &r.pending {
            None => None,
            Some(PendingReset::Proposed(d) | PendingReset::Accepted(d)) => Some(d),
        };
        if !tree::is_valid(params, &r.digits) || pending_digits.is_some_and(|d| !tree::is_valid(params, d)) {
            return Err(peer_error(Misbehaviour::BadDigits));
        }
        if self.lost_state {
            return Ok(Effects::none());
        }
        match tree::compare(&r.digits, &self.digits) {
            core::cmp::Ordering::Greater => {
                let awaiting_it = matches!(&self.reset,
                    ResetState::AwaitingFinish { proposal, .. } if proposal.digits == r.digits);
                if awaiting_it {
                    // The proposer committed; its step (3) follows.
                    Ok(Effects::none())
                } else {
                    self.check_branch_proof(&r)?;
                    Ok(self.lost())
                }
            }
            core::cmp::Ordering::Less => {
                let waits_for_ours = matches!(&r.pending, Some(PendingReset::Accepted(d)) if *d == self.digits);
                if !waits_for_ours || matches!(self.reset, ResetState::AwaitingFinish { .. }) {
                    let mut fx = Effects::none();
                    fx.events.push(Event::CounterpartyLostState);
                    return Ok(fx);
                }
                // We committed the reset it accepted: step (3) again, then what followed it (its
                // numbers move on by one when it commits), and our next proposal if we made one.
                let level =
                    tree::first_difference(&r.digits, &self.digits).ok_or(peer_error(Misbehaviour::BadDigits))?;
                let tx = self.derived.branch.txs.get(level).ok_or(peer_error(Misbehaviour::BadDigits))?;
                let node_sig = self.sign_tree(signer, tx, level).map_err(|e| peer_error(Misbehaviour::Signer(e)))?;
                let after = [r.numbers[0].saturating_add(1), r.numbers[1].saturating_add(1)];
                let mut fx = Effects::none();
                fx.send.push(Msg::ResetFinish(ResetFinish { node_sig }));
                let changed = self.sync_payments(after, &r.resolved, None, signer, &mut fx).map_err(refused)?;
                if let ResetState::Proposed(p) = &self.reset {
                    // We proposed again since: it follows the step (3) and what came with it.
                    let (msg, _) = self.propose_msg(p, signer).map_err(refused)?;
                    fx.send.push(Msg::ResetPropose(msg));
                }
                Ok(self.persist_if(changed, fx))
            }
            core::cmp::Ordering::Equal => self.on_same_branch(&r, signer, tip.height),
        }
    }

    /// Both parties hold the same committed branch: resume the reset in progress, then the
    /// payments and HTLC resolutions.
    fn on_same_branch<S: Signer + ?Sized>(
        &mut self,
        r: &Reestablish,
        signer: &S,
        tip: BlockHeight,
    ) -> Result<Effects, PeerError> {
        let me = self.role.index();
        if r.numbers[me] > self.channels[me].number {
            // The counterparty holds a payment of ours newer than any we remember signing.
            self.check_payment_proof(r)?;
            if !self.explained_by_withdrawal(r) {
                return Ok(self.lost());
            }
            // Or one we withdrew HTLCs from and went back behind (an earlier `Reestablish` of
            // its hid it): we signed it, and put them back below.
        }
        self.resync(r, signer, tip).map_err(refused)
    }

    /// Our signature on the node of the counterparty's newer branch that replaced ours: proof
    /// that we completed (or accepted) that reset and lost it.
    fn check_branch_proof(&self, r: &Reestablish) -> Result<(), PeerError> {
        let unproven = || peer_error(Misbehaviour::UnprovenReestablish);
        let level = tree::first_difference(&self.digits, &r.digits).ok_or_else(unproven)?;
        let path = self.build_path(&r.digits, r.branch_values).ok_or_else(unproven)?;
        let tx = path.txs.get(level).ok_or_else(unproven)?;
        let sig = level.checked_sub(1).and_then(|i| r.your_branch_sigs.get(i)).ok_or_else(unproven)?;
        self.verify_tree_by(tx, level, sig, Some(self.holder_keys.funding)).map_err(|_| unproven())
    }

    /// Whether the (signed) payment the counterparty shows as our newest, numbered above ours,
    /// is one we withdrew HTLCs from: it pays no more than our state and carries only HTLCs we
    /// hold or withdrew.
    fn explained_by_withdrawal(&self, r: &Reestablish) -> bool {
        let own = &self.channels[self.role.index()].state;
        r.your_payment.as_ref().is_some_and(|p| {
            p.to_payee <= own.to_payee
                && p.htlcs.iter().all(|h| own.htlcs.contains(h) || self.withdrawn.contains(h))
                && p.htlcs.iter().any(|h| self.withdrawn.contains(h))
        })
    }

    /// Our signature on the payment the counterparty says is our newest.
    fn check_payment_proof(&self, r: &Reestablish) -> Result<(), PeerError> {
        let p = r.your_payment.as_ref().filter(|p| p.number == r.numbers[self.role.index()]);
        match (p, self.template(self.role)) {
            (Some(p), Some(t)) if t.is_signed(&self.secp, p) => Ok(()),
            _ => Err(peer_error(Misbehaviour::UnprovenReestablish)),
        }
    }

    /// Resumes the reset in progress, then the payments and HTLC resolutions.
    fn resync<S: Signer + ?Sized>(
        &mut self,
        r: &Reestablish,
        signer: &S,
        tip: BlockHeight,
    ) -> Result<Effects, CommandError> {
        let mut fx = Effects::none();
        let mut changed = false;
        let them = (!self.role).index();
        if r.numbers[them] < self.channels[them].number {
            // It signed a payment it no longer remembers.
            fx.events.push(Event::CounterpartyLostState);
        }
        let resumed = match (&self.reset, &r.pending, &r.accepted_terms) {
            (ResetState::Idle, Some(PendingReset::Accepted(d)), Some(t)) => self.resumable(d, t, tip),
            _ => None,
        };
        match (&self.reset, &r.pending) {
            (ResetState::Proposed(p), Some(PendingReset::Accepted(d))) if *d == p.digits => {
                // It accepted; its step (2) follows.
            }
            (ResetState::Proposed(p), _) if r.numbers == p.numbers => {
                let (msg, _) = self.propose_msg(p, signer)?;
                fx.send.push(Msg::ResetPropose(msg));
            }
            (ResetState::Proposed(_), _) => {
                // It paid since: its payment follows, and abandons the proposal.
            }
            (ResetState::AwaitingFinish { proposal, .. }, Some(PendingReset::Proposed(d))) if *d == proposal.digits => {
                let path = self.build_path(&proposal.digits, proposal.values).ok_or(CommandError::Netting)?;
                fx.send.push(Msg::ResetAccept(self.accept_msg(proposal, &path, signer)?));
            }
            (ResetState::AwaitingFinish { proposal, .. }, None) => {
                // The proposer no longer holds its proposal (it cancelled it after our answer
                // left, or lost it). We keep the branch we signed until that reset completes (we
                // take no other proposal); our Reestablish carries its terms, so the proposer can
                // take it up again: step (2) again, for it to finish.
                let path = self.build_path(&proposal.digits, proposal.values).ok_or(CommandError::Netting)?;
                fx.send.push(Msg::ResetAccept(self.accept_msg(proposal, &path, signer)?));
            }
            (ResetState::Idle, Some(PendingReset::Accepted(d))) if resumed.is_some() => {
                // It accepted a proposal of ours that we no longer hold, and it is exactly one we
                // could make now: take it up again; its step (2), sent again, completes it.
                if let Some((proposal, leaf_txid)) = resumed {
                    self.reserved = Some((d.clone(), leaf_txid));
                    self.reset = ResetState::Proposed(proposal);
                    fx.events.extend(self.withdraw_close());
                    changed = true;
                }
            }
            (ResetState::Idle, Some(PendingReset::Accepted(d)))
                if tree::successor(&self.terms.params, self.counter_floor()).is_some_and(|(next, _)| next == *d) =>
            {
                // It accepted a proposal of ours that we no longer have (a lost write, before we
                // released anything that invalidates a node): never propose those locks again.
                // Only the counter value our next proposal would take can be such a proposal, so
                // a false claim costs at most that one value.
                self.reserved = Some((d.clone(), Txid::all_zeros()));
                changed = true;
            }
            _ => {}
        }
        if !self.is_resetting() {
            let held = Held { payment: r.your_payment.as_ref(), tip };
            changed |= self.sync_payments(r.numbers, &r.resolved, Some(held), signer, &mut fx)?;
        }
        Ok(self.persist_if(changed, fx))
    }

    /// `fx`, with the state persisted first if it changed or anything is sent (every send
    /// follows a persisted update, as everywhere in the crate).
    fn persist_if(&mut self, changed: bool, fx: Effects) -> Effects {
        if !changed && fx.send.is_empty() {
            return fx;
        }
        let mut persisted = self.persist();
        persisted.merge(fx);
        persisted
    }

    /// Sends our newest payment again if the counterparty holds an older one (or counts its
    /// holding ours as the acknowledgement), and the resolutions of its HTLCs it has not
    /// received. `theirs` are the counterparty's payment numbers, by payer role. Returns whether
    /// the state changed.
    fn sync_payments<S: Signer + ?Sized>(
        &mut self,
        theirs: [u64; 2],
        resolved: &[u64],
        held: Option<Held<'_>>,
        signer: &S,
        fx: &mut Effects,
    ) -> Result<bool, CommandError> {
        let me = self.role.index();
        let own = &self.channels[me];
        let mut changed = false;
        // The state the counterparty holds of our channel, when its message shows it and it is
        // not newer than ours.
        let held_state = held.and_then(|h| Some((self.held_state(theirs[me], h.payment)?, h.tip)));
        let rebase = held_state.as_ref().and_then(|(state, tip)| self.offers_to_rebase(state, *tip));
        if held_state.as_ref().is_some_and(|(state, _)| *state == own.state) {
            // It holds our newest state (perhaps under another number, after a withdrawal):
            // that is its acknowledgement, and we take its number (the next payment follows it).
            if own.acked < own.number || own.number != theirs[me] {
                let number = theirs[me];
                let ch = &mut self.channels[me];
                ch.number = number;
                ch.acked = number;
                fx.events.push(Event::PaymentAcknowledged { number });
                changed = true;
            }
        } else if let (Some((state, _)), Some((gone, back))) = (held_state, rebase) {
            changed = true;
            if let Some(payment) = self.rebase_offers(theirs[me], state, &gone, &back, signer, fx)? {
                fx.send.push(Msg::Payment(payment));
            }
        } else if theirs[me] < own.number {
            if let Some(payment) = self.resend_own(signer)? {
                fx.send.push(Msg::Payment(payment));
            }
        } else if theirs[me] == own.number && own.acked < own.number {
            let number = own.number;
            self.channels[me].acked = number;
            fx.events.push(Event::PaymentAcknowledged { number });
            changed = true;
        }
        let payer: Role = !self.role;
        for (id, status) in &self.channels[payer.index()].status {
            if resolved.contains(id) {
                continue;
            }
            match status {
                HtlcStatus::Fulfilled(preimage) => fx.send.push(Msg::Fulfill { id: *id, preimage: *preimage }),
                HtlcStatus::Failed => fx.send.push(Msg::Fail { id: *id }),
                HtlcStatus::Live => {}
            }
        }
        Ok(changed)
    }

    /// The state of our own leaf channel that the counterparty holds (its [`Reestablish`] says
    /// number `number`, and carries the payment, which must bear our signature; none: the
    /// leaf's empty state). `None` if it does not check out (we then only send ours again).
    fn held_state(&self, number: u64, payment: Option<&Payment>) -> Option<PaymentState> {
        match payment {
            None => Some(PaymentState::default()),
            Some(p) if p.number == number => {
                let template = self.template(self.role)?;
                template.is_signed(&self.secp, p).then(|| PaymentState { to_payee: p.to_payee, htlcs: p.htlcs.clone() })
            }
            Some(_) => None,
        }
    }

    /// What our newest payment must change for the counterparty, which holds `held`, to take
    /// it: the HTLCs it does not hold and would refuse now (their expiry left the window it
    /// accepts at `tip`, [`Channel::htlc_expiry_window`], because blocks passed since we offered
    /// them), to withdraw; and HTLCs we withdrew that it does hold after all (an earlier
    /// `Reestablish` hid them: it would refuse a payment dropping them), to put back. `None` if
    /// neither (sending our newest payment again will do).
    fn offers_to_rebase(&self, held: &PaymentState, tip: BlockHeight) -> Option<(Vec<PaymentHtlc>, Vec<PaymentHtlc>)> {
        let back: Vec<PaymentHtlc> =
            self.withdrawn.iter().filter(|w| held.htlcs.iter().any(|h| h == *w)).copied().collect();
        let gone = self.expired_offers(held, tip);
        (!gone.is_empty() || !back.is_empty()).then_some((gone, back))
    }

    /// The HTLCs of our newest payment that the counterparty does not hold (`held`) and would
    /// refuse now.
    fn expired_offers(&self, held: &PaymentState, tip: BlockHeight) -> Vec<PaymentHtlc> {
        let own = &self.channels[self.role.index()];
        let (earliest, latest) = self.htlc_expiry_window(ChainTip::at(tip.0));
        let gone: Vec<PaymentHtlc> = own
            .state
            .htlcs
            .iter()
            .filter(|h| !held.htlcs.iter().any(|k| k.id == h.id))
            .filter(|h| own.status_of(h.id) == Some(HtlcStatus::Live))
            .filter(|h| earliest.is_none_or(|e| h.expiry < e) || h.expiry > latest)
            .copied()
            .collect();
        gone
    }

    /// Withdraws the HTLCs `gone` from our unacknowledged payments and puts back the withdrawn
    /// ones `back` that the counterparty holds (it holds number `held_number`, state `held`): our
    /// newest state so changed replaces them, as the next payment (returned, to send), or, if
    /// that is exactly the state the counterparty holds, by taking its number. The
    /// counterparty may hold a payment carrying the withdrawn HTLCs after all (a hostile peer's
    /// `Reestablish` can hide it), so they are kept in `withdrawn` (their amount stays out of
    /// what we may pay, and their outputs are claimed back on chain) until the leaf is
    /// superseded; [`Event::HtlcFailed`] reports each now, and [`Event::HtlcFailIrrevocable`]
    /// then. One put back is live again (its failure was never final).
    fn rebase_offers<S: Signer + ?Sized>(
        &mut self,
        held_number: u64,
        held: PaymentState,
        gone: &[PaymentHtlc],
        back: &[PaymentHtlc],
        signer: &S,
        fx: &mut Effects,
    ) -> Result<Option<Payment>, CommandError> {
        let me = self.role.index();
        let own = &self.channels[me];
        let mut state = own.state.clone();
        state.htlcs.retain(|h| !gone.iter().any(|g| g.id == h.id));
        for b in back {
            if !state.htlcs.iter().any(|h| h.id == b.id) {
                state.htlcs.push(*b);
            }
        }
        state.htlcs.sort_by_key(|h| h.id);
        let mut next = self.clone();
        next.withdrawn.retain(|w| !back.contains(w));
        next.withdrawn.extend_from_slice(gone);
        let payment = if state == held {
            // It holds exactly that state: nothing to send; we take its number (a payment it
            // shows later numbered above it, hiding withdrawn HTLCs, is recognised as ours).
            let ch = &mut next.channels[me];
            ch.number = held_number;
            ch.acked = held_number;
            ch.state = state;
            ch.sync_status();
            None
        } else {
            let ch = &mut next.channels[me];
            ch.number = ch.number.max(held_number);
            let payment = next.sign_own(&state, Amount::ZERO, signer)?;
            let ch = &mut next.channels[me];
            ch.number = payment.number;
            ch.state = state;
            ch.sync_status();
            Some(payment)
        };
        *self = next;
        fx.events.extend(gone.iter().map(|h| Event::HtlcFailed { id: h.id }));
        Ok(payment)
    }

    /// Our newest payment, signed again (the same bytes: RFC6979), if it is a payment at all
    /// (a fresh leaf channel's empty state is not).
    fn resend_own<S: Signer + ?Sized>(&self, signer: &S) -> Result<Option<Payment>, CommandError> {
        let ch = &self.channels[self.role.index()];
        let Some(template) = self.template(self.role) else { return Ok(None) };
        Ok(template.resend(signer, ch.number, &ch.state)?)
    }
}

/// What the counterparty's [`Reestablish`] says it holds of our own leaf channel, and the tip
/// to judge our HTLCs' expiries at.
#[derive(Clone, Copy)]
struct Held<'a> {
    payment: Option<&'a Payment>,
    tip: BlockHeight,
}

/// A step of the resynchronisation that could not be made: the signer's refusal, or a claimed
/// state whose branch cannot be built.
fn refused(e: CommandError) -> PeerError {
    match e {
        CommandError::Signer(s) => peer_error(Misbehaviour::Signer(s)),
        _ => peer_error(Misbehaviour::BadDigits),
    }
}
