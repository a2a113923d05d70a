//! Resets (docs/duplex.md §5): net both leaf channels into new balances and sign a new branch from
//! the level the counter advances at.
//!
//! ```text
//! proposer                                             responder
//!   | persist reserved = D'                               |
//!   |--- (1) ResetPropose: D', numbers, removed HTLCs, --->|  checks everything, persists
//!   |        values, sigs N_d' … N_{i+1}' [, base sig]     |  reserved = D', pending branch
//!   |<-- (2) ResetAccept: sigs N_d' … N_{i+1}', N_i' ------|
//!   |        [, base sig]                                  |
//!   | commit (holds the whole new branch)                  |
//!   |--- (3) ResetFinish: sig N_i' ----------------------->|  commit
//! ```
//!
//! **Signing order rule.** Nobody releases a signature on `N_i'`, the node that invalidates the
//! old subtree, before holding the counterparty's signatures on every node below it (and on the
//! new leaf's first payments, when HTLCs are carried). **Lock rule.** Every proposal's counter
//! value is strictly above any value a signature was ever released for (`reserved`, persisted
//! before the release), or equal to it with the identical leaf: so no two different transactions
//! with the same lock ever spend the same parent.
//!
//! Between (2) and (3) only the proposer can enforce the new branch, whose netting moves only HTLCs
//! the responder agreed to remove. The responder keeps its old leaf payments and the pending branch (fully signed below
//! `N_i'`, with the proposer's signature on its new first payment), so it follows whichever of the
//! two appears on chain. It accepts no payment and no other proposal until (3): a proposer that
//! holds the pending branch could otherwise make it forget that branch, then publish it.

use alloc::vec::Vec;

use bitcoin::hashes::Hash as _;
use bitcoin::{ecdsa, Amount, Transaction, Txid};

use super::channel::{BuiltBranch, Channel};
use super::leaf::{self, HtlcStatus, NettingError};
use super::msgs::{AcceptedTerms, HtlcRemoval, Msg, Removal, ResetAccept, ResetFinish, ResetPropose};
use super::tree::{self, Digits};
use super::{peer_error, CommandError, Effects, Event, Misbehaviour, PeerError, Role};
use crate::core::sign::Signer;
use crate::core::units::BlockHeight;
use crate::driving::ChainTip;
use crate::spilman::payment::{PaymentHtlc, PaymentState, UpdateError};
use crate::spilman::Payment;

/// A reset in the making: the new counter value, the level that changes, what is netted, and the
/// new leaf.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct Proposal {
    pub digits: Digits,
    /// The level `i` (1-based) whose node invalidates the old subtree.
    pub level: usize,
    /// Payment numbers netted, by payer role.
    pub numbers: [u64; 2],
    pub removed: Vec<HtlcRemoval>,
    /// New leaf channel values, by payer role.
    pub values: [Amount; 2],
    /// First payment state of each new leaf channel, by payer role.
    pub bases: [PaymentState; 2],
}

/// Where a reset stands.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum ResetState {
    Idle,
    /// We proposed (step 1 sent); waiting for step 2.
    Proposed(Proposal),
    /// We accepted (step 2 sent, including our signature on `N_i'`); waiting for step 3. Holds the
    /// counterparty's signatures on `N_{i+1}' … N_d'` (level order) and on our new first payment.
    AwaitingFinish {
        proposal: Proposal,
        node_sigs: Vec<ecdsa::Signature>,
        base_sig: Option<ecdsa::Signature>,
    },
}

impl ResetState {
    pub fn proposal(&self) -> Option<&Proposal> {
        match self {
            ResetState::Idle => None,
            ResetState::Proposed(p) | ResetState::AwaitingFinish { proposal: p, .. } => Some(p),
        }
    }

    pub fn pending_htlc(&self, payer: Role, id: u64) -> Option<PaymentHtlc> {
        self.proposal()?.bases[payer.index()].htlcs.iter().find(|h| h.id == id).copied()
    }
}

fn netting_error(e: NettingError) -> CommandError {
    match e {
        NettingError::UnknownHtlc => CommandError::UnknownHtlc,
        _ => CommandError::Netting,
    }
}

impl Channel {
    /// The highest counter value used so far (committed or reserved).
    pub(super) fn counter_floor(&self) -> &[u16] {
        match &self.reserved {
            Some((r, _)) if tree::compare(r, &self.digits).is_gt() => r,
            _ => &self.digits,
        }
    }

    /// The HTLCs a reset proposed now removes, as the holder sees them: fulfilled ones folded,
    /// failed or expired ones dropped.
    fn removals(&self, tip: BlockHeight) -> Vec<HtlcRemoval> {
        let mut out = Vec::new();
        for offerer in [Role::Initiator, Role::Acceptor] {
            let ch = &self.channels[offerer.index()];
            for h in &ch.state.htlcs {
                let how = match ch.status_of(h.id) {
                    Some(HtlcStatus::Fulfilled(_)) => Removal::Folded,
                    Some(HtlcStatus::Failed) => Removal::Dropped,
                    _ if leaf::expired(h, tip) => Removal::Dropped,
                    _ => continue,
                };
                out.push(HtlcRemoval { offerer, id: h.id, how });
            }
        }
        out
    }

    /// The payer's signature on the first payment of its new leaf channel, if it carries HTLCs.
    fn sign_base<S: Signer + ?Sized>(
        &self,
        signer: &S,
        leaf_txid: Txid,
        values: [Amount; 2],
        base: &PaymentState,
    ) -> Result<Option<ecdsa::Signature>, CommandError> {
        if base.htlcs.is_empty() {
            return Ok(None);
        }
        let keys = self.keys.as_ref().ok_or(CommandError::WrongPhase)?;
        let t = leaf::leaf_template(&self.terms, keys, self.role, leaf_txid, values).ok_or(CommandError::Netting)?;
        let built = t.build(base).map_err(|_| CommandError::Netting)?;
        Ok(Some(t.sign(signer, &built)?))
    }

    /// Checks the counterparty's signature on the first payment of its new leaf channel.
    fn verify_base(
        &self,
        leaf_txid: Txid,
        values: [Amount; 2],
        base: &PaymentState,
        sig: Option<&ecdsa::Signature>,
    ) -> Result<(), PeerError> {
        let bad = || peer_error(Misbehaviour::BasePaymentSignature);
        match (base.htlcs.is_empty(), sig) {
            (true, None) => Ok(()),
            (false, Some(sig)) => {
                let keys = self.keys.as_ref().ok_or_else(bad)?;
                let t = leaf::leaf_template(&self.terms, keys, !self.role, leaf_txid, values).ok_or_else(bad)?;
                let built = t.build(base).map_err(|_| bad())?;
                let _valid = t.verify(&self.secp, &built, sig).map_err(|_| bad())?;
                Ok(())
            }
            _ => Err(bad()),
        }
    }

    /// The holder's signatures on the nodes of `path` at `levels`, deepest first.
    fn sign_nodes<S: Signer + ?Sized>(
        &self,
        signer: &S,
        path: &[Transaction],
        levels: core::ops::RangeInclusive<usize>,
    ) -> Result<Vec<ecdsa::Signature>, CommandError> {
        let mut sigs = Vec::new();
        for level in levels.rev() {
            let tx = path.get(level).ok_or(CommandError::WrongPhase)?;
            sigs.push(self.sign_tree(signer, tx, level)?);
        }
        Ok(sigs)
    }

    /// Verifies the counterparty's signatures (deepest first) on `path` at `levels`; returns them
    /// in level order.
    fn verify_nodes(
        &self,
        path: &[Transaction],
        levels: core::ops::RangeInclusive<usize>,
        sigs: &[ecdsa::Signature],
    ) -> Result<Vec<ecdsa::Signature>, PeerError> {
        if sigs.len() != levels.clone().count() {
            return Err(peer_error(Misbehaviour::SignatureCount));
        }
        for (level, sig) in levels.rev().zip(sigs) {
            let tx = path.get(level).ok_or(peer_error(Misbehaviour::SignatureCount))?;
            self.verify_tree(tx, level, sig)?;
        }
        Ok(sigs.iter().rev().copied().collect())
    }

    /// Proposes a reset (step 1): advances the counter past every value used so far, nets both
    /// leaf channels (folding fulfilled HTLCs, dropping failed or expired ones, carrying the
    /// rest) and signs the new branch below the node that invalidates the old subtree.
    ///
    /// # Errors
    /// [`CommandError::Exhausted`] when no counter value is left (close cooperatively);
    /// [`CommandError::NotQuiescent`] if our last payment is not acknowledged;
    /// [`CommandError::ResetInProgress`]; [`CommandError::Netting`] if the new leaf would have an
    /// output below dust or cannot carry the pending HTLCs; [`CommandError::InvalidAmount`] if a
    /// payment number has no successor left; [`CommandError::Signer`];
    /// [`CommandError::WrongSigner`] if `signer` is not the channel's
    /// ([`Channel::check_signer`](super::Channel::check_signer)).
    pub fn reset<S: Signer + ?Sized>(&mut self, signer: &S, tip: ChainTip) -> Result<Effects, CommandError> {
        self.check_signer(signer)?;
        if self.lost_state {
            return Err(CommandError::LostState);
        }
        if self.phase != super::Phase::Open || self.coop.is_some() {
            return Err(CommandError::WrongPhase);
        }
        if self.is_resetting() {
            return Err(CommandError::ResetInProgress);
        }
        let me = self.role.index();
        if self.channels[me].acked != self.channels[me].number {
            return Err(CommandError::NotQuiescent);
        }
        if self.channels.iter().any(|c| c.number.checked_add(1).is_none()) {
            return Err(CommandError::InvalidAmount);
        }
        let params = &self.terms.params;
        let (digits, _) = tree::successor(params, self.counter_floor()).ok_or(CommandError::Exhausted)?;
        let level = tree::first_difference(&self.digits, &digits).ok_or(CommandError::Exhausted)?;
        let removed = self.removals(tip.height);
        let netted = leaf::net(&self.terms, self.values, [&self.channels[0].state, &self.channels[1].state], &removed)
            .map_err(netting_error)?;
        let proposal = Proposal {
            digits: digits.clone(),
            level,
            numbers: [self.channels[0].number, self.channels[1].number],
            removed,
            values: netted.values,
            bases: netted.bases,
        };
        let (msg, leaf_txid) = self.propose_msg(&proposal, signer)?;
        self.reserved = Some((digits, leaf_txid));
        self.reset = ResetState::Proposed(proposal);
        let mut fx = self.persist();
        fx.send.push(Msg::ResetPropose(msg));
        Ok(fx)
    }

    /// Step (1) for `proposal`, and the new leaf's txid. Signing is deterministic, so sending it
    /// again on reconnection repeats the same bytes.
    pub(super) fn propose_msg<S: Signer + ?Sized>(
        &self,
        proposal: &Proposal,
        signer: &S,
    ) -> Result<(ResetPropose, Txid), CommandError> {
        let path = self.build_path(&proposal.digits, proposal.values).ok_or(CommandError::Netting)?;
        let leaf_txid = path.leaf_txid().ok_or(CommandError::Netting)?;
        let base_sig = self.sign_base(signer, leaf_txid, proposal.values, &proposal.bases[self.role.index()])?;
        let d = self.terms.params.depth();
        let node_sigs = self.sign_nodes(signer, &path.txs, proposal.level + 1..=d)?;
        let msg = ResetPropose {
            digits: proposal.digits.clone(),
            numbers: proposal.numbers,
            removed: proposal.removed.clone(),
            values: proposal.values,
            base_sig,
            node_sigs,
        };
        Ok((msg, leaf_txid))
    }

    /// Step (2) for `proposal`, whose new branch is `path` (deterministic, as
    /// [`Channel::propose_msg`]).
    pub(super) fn accept_msg<S: Signer + ?Sized>(
        &self,
        proposal: &Proposal,
        path: &BuiltBranch,
        signer: &S,
    ) -> Result<ResetAccept, CommandError> {
        let leaf_txid = path.leaf_txid().ok_or(CommandError::Netting)?;
        let d = self.terms.params.depth();
        let node_sigs = self.sign_nodes(signer, &path.txs, proposal.level..=d)?;
        let base_sig = self.sign_base(signer, leaf_txid, proposal.values, &proposal.bases[self.role.index()])?;
        Ok(ResetAccept { node_sigs, base_sig })
    }

    /// Abandons a reset we proposed and that the counterparty has not answered. Its counter value
    /// stays used. If the counterparty did answer (its step (2) crossed the cancellation), it keeps
    /// waiting for step (3) and refuses other proposals: the channel then needs a close.
    ///
    /// # Errors
    /// [`CommandError::WrongPhase`] unless a proposal of ours is pending.
    pub fn cancel_reset(&mut self) -> Result<Effects, CommandError> {
        if !matches!(self.reset, ResetState::Proposed(_)) {
            return Err(CommandError::WrongPhase);
        }
        self.reset = ResetState::Idle;
        let mut fx = self.persist();
        fx.events.push(Event::ResetAbandoned);
        Ok(fx)
    }

    /// A proposal of ours at `digits` with `terms` that the counterparty accepted (its
    /// [`Reestablish`](super::Reestablish) says so) while we no longer hold it, if it is exactly one
    /// we could propose now: it nets our current numbers, its removals are fair to us, its values
    /// are the netting, and its counter value is the one we reserved last (with the same leaf, or
    /// the unknown leaf a lost proposal left) or the next one. Returns it with its new leaf's
    /// txid.
    pub(super) fn resumable(
        &self,
        digits: &[u16],
        terms: &AcceptedTerms,
        tip: BlockHeight,
    ) -> Option<(Proposal, Txid)> {
        // Our own unsigned close proposal gives way (it is withdrawn when the reset is taken up).
        let closing = self.coop.is_some_and(|k| k.complete);
        if self.lost_state || self.phase != super::Phase::Open || closing || self.is_resetting() {
            return None;
        }
        let me = &self.channels[self.role.index()];
        if me.acked != me.number || terms.numbers != [self.channels[0].number, self.channels[1].number] {
            return None;
        }
        if self.channels.iter().any(|c| c.number.checked_add(1).is_none()) {
            return None;
        }
        if !tree::is_valid(&self.terms.params, digits) || !tree::compare(digits, &self.digits).is_gt() {
            return None;
        }
        // Only a value we proposed ourselves can be ours: the one we reserved last, or (a lost
        // proposal) the next one. A false claim costs at most that value, as with
        // `PendingReset::Accepted` alone.
        let ours = self.reserved.as_ref().is_some_and(|(r, _)| r.as_slice() == digits)
            || tree::successor(&self.terms.params, self.counter_floor()).is_some_and(|(next, _)| next == digits);
        if !ours {
            return None;
        }
        let level = tree::first_difference(&self.digits, digits)?;
        self.check_removals(&terms.removed, tip).ok()?;
        let states = [&self.channels[0].state, &self.channels[1].state];
        let netted = leaf::net(&self.terms, self.values, states, &terms.removed).ok()?;
        if netted.values != terms.values {
            return None;
        }
        let leaf_txid = self.build_path(digits, netted.values)?.leaf_txid()?;
        if let Some((r, r_leaf)) = &self.reserved {
            let ok = match tree::compare(digits, r) {
                core::cmp::Ordering::Greater => true,
                core::cmp::Ordering::Equal => *r_leaf == leaf_txid || *r_leaf == Txid::all_zeros(),
                core::cmp::Ordering::Less => false,
            };
            if !ok {
                return None;
            }
        }
        let proposal = Proposal {
            digits: digits.to_vec(),
            level,
            numbers: terms.numbers,
            removed: terms.removed.clone(),
            values: netted.values,
            bases: netted.bases,
        };
        Some((proposal, leaf_txid))
    }

    /// Checks that the removals of a proposal are fair to the holder.
    fn check_removals(&self, removed: &[HtlcRemoval], tip: BlockHeight) -> Result<(), PeerError> {
        for (n, r) in removed.iter().enumerate() {
            if removed.iter().skip(n + 1).any(|o| o.offerer == r.offerer && o.id == r.id) {
                return Err(peer_error(Misbehaviour::HtlcRemovedUnfairly));
            }
            let ch = &self.channels[r.offerer.index()];
            let htlc = ch.htlc(r.id).ok_or(peer_error(Misbehaviour::UnknownHtlc))?;
            let status = ch.status_of(r.id);
            let fulfilled = matches!(status, Some(HtlcStatus::Fulfilled(_)));
            let fair = match (r.offerer == self.role, r.how) {
                // Folding ours pays the counterparty: only with the preimage.
                (true, Removal::Folded) => fulfilled,
                // Dropping one offered to us: only if we gave it up or it expired, never after
                // we revealed its preimage.
                (false, Removal::Dropped) => {
                    !fulfilled && (status == Some(HtlcStatus::Failed) || leaf::expired(htlc, tip))
                }
                _ => true,
            };
            if !fair {
                return Err(peer_error(Misbehaviour::HtlcRemovedUnfairly));
            }
        }
        Ok(())
    }

    pub(super) fn on_reset_propose<S: Signer + ?Sized>(
        &mut self,
        p: ResetPropose,
        signer: &S,
        tip: ChainTip,
    ) -> Result<Effects, PeerError> {
        // Our own unsigned close proposal gives way to a reset that crossed it (withdrawn
        // below, once the proposal is found acceptable): a reset moves no value.
        if self.phase != super::Phase::Open || self.coop.is_some_and(|k| k.complete) {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        }
        // Crossing proposals: the initiator's wins.
        if matches!(self.reset, ResetState::Proposed(_)) && self.role == Role::Initiator {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        }
        // We signed step (2) of a branch the proposer can publish: we keep it, and everything we
        // need to follow it on chain, until a newer branch is complete. A proposer that holds it
        // and proposes again (after restoring an older copy of its state and cancelling) would
        // otherwise make us forget a branch it can still publish.
        if matches!(self.reset, ResetState::AwaitingFinish { .. }) {
            return Err(peer_error(Misbehaviour::NotQuiescent));
        }
        let (me, them) = (self.role.index(), (!self.role).index());
        let mine = &self.channels[me];
        if mine.acked != mine.number || p.numbers[me] != mine.number || p.numbers[them] != self.channels[them].number {
            return Err(peer_error(Misbehaviour::NotQuiescent));
        }
        if self.channels.iter().any(|c| c.number.checked_add(1).is_none()) {
            return Err(peer_error(Misbehaviour::Payment(UpdateError::Exhausted)));
        }
        let params = &self.terms.params;
        if !tree::is_valid(params, &p.digits) {
            return Err(peer_error(Misbehaviour::BadDigits));
        }
        if !tree::compare(&p.digits, &self.digits).is_gt() {
            return Err(peer_error(Misbehaviour::LockReused));
        }
        let level = tree::first_difference(&self.digits, &p.digits).ok_or(peer_error(Misbehaviour::LockReused))?;
        self.check_removals(&p.removed, tip.height)?;
        let netted =
            leaf::net(&self.terms, self.values, [&self.channels[0].state, &self.channels[1].state], &p.removed)
                .map_err(|e| match e {
                    NettingError::UnknownHtlc => peer_error(Misbehaviour::UnknownHtlc),
                    _ => peer_error(Misbehaviour::WrongBalances),
                })?;
        if netted.values != p.values {
            return Err(peer_error(Misbehaviour::WrongBalances));
        }
        let path = self.build_path(&p.digits, netted.values).ok_or(peer_error(Misbehaviour::BadDigits))?;
        let leaf_txid = path.leaf_txid().ok_or(peer_error(Misbehaviour::BadDigits))?;
        if let Some((r, r_leaf)) = &self.reserved {
            let ok = match tree::compare(&p.digits, r) {
                core::cmp::Ordering::Greater => true,
                core::cmp::Ordering::Equal => *r_leaf == leaf_txid,
                core::cmp::Ordering::Less => false,
            };
            if !ok {
                return Err(peer_error(Misbehaviour::LockReused));
            }
        }
        let d = params.depth();
        let their_node_sigs = self.verify_nodes(&path.txs, level + 1..=d, &p.node_sigs)?;
        self.verify_base(leaf_txid, netted.values, &netted.bases[them], p.base_sig.as_ref())?;
        let signer_error = |e: CommandError| match e {
            CommandError::Signer(s) => peer_error(Misbehaviour::Signer(s)),
            _ => peer_error(Misbehaviour::WrongBalances),
        };
        let abandoned = matches!(self.reset, ResetState::Proposed(_));
        let proposal = Proposal {
            digits: p.digits.clone(),
            level,
            numbers: p.numbers,
            removed: p.removed,
            values: netted.values,
            bases: netted.bases,
        };
        let accept = self.accept_msg(&proposal, &path, signer).map_err(signer_error)?;
        let withdrawn = self.withdraw_close();
        self.reserved = Some((p.digits, leaf_txid));
        self.reset = ResetState::AwaitingFinish { proposal, node_sigs: their_node_sigs, base_sig: p.base_sig };
        let mut fx = self.persist();
        if abandoned {
            fx.events.push(Event::ResetAbandoned);
        }
        fx.events.extend(withdrawn);
        fx.send.push(Msg::ResetAccept(accept));
        Ok(fx)
    }

    pub(super) fn on_reset_accept<S: Signer + ?Sized>(
        &mut self,
        a: ResetAccept,
        signer: &S,
    ) -> Result<Effects, PeerError> {
        let ResetState::Proposed(proposal) = &self.reset else {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        };
        let proposal = proposal.clone();
        let path = self.build_path(&proposal.digits, proposal.values).ok_or(peer_error(Misbehaviour::BadDigits))?;
        let leaf_txid = path.leaf_txid().ok_or(peer_error(Misbehaviour::BadDigits))?;
        let d = self.terms.params.depth();
        let theirs = self.verify_nodes(&path.txs, proposal.level..=d, &a.node_sigs)?;
        let them = (!self.role).index();
        self.verify_base(leaf_txid, proposal.values, &proposal.bases[them], a.base_sig.as_ref())?;
        let tx = path.txs.get(proposal.level).ok_or(peer_error(Misbehaviour::BadDigits))?;
        let node_sig = self.sign_tree(signer, tx, proposal.level).map_err(|e| peer_error(Misbehaviour::Signer(e)))?;
        let (events, fold) = self.commit_reset(&proposal, path, theirs, a.base_sig, signer);
        let mut fx = self.persist();
        fx.send.push(Msg::ResetFinish(ResetFinish { node_sig }));
        if let Some(payment) = fold {
            fx.send.push(Msg::Payment(payment));
        }
        fx.events.extend(events);
        Ok(fx)
    }

    pub(super) fn on_reset_finish<S: Signer + ?Sized>(
        &mut self,
        f: ResetFinish,
        signer: &S,
    ) -> Result<Effects, PeerError> {
        let ResetState::AwaitingFinish { proposal, node_sigs, base_sig } = &self.reset else {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        };
        let (proposal, below, base_sig) = (proposal.clone(), node_sigs.clone(), *base_sig);
        let path = self.build_path(&proposal.digits, proposal.values).ok_or(peer_error(Misbehaviour::BadDigits))?;
        let tx = path.txs.get(proposal.level).ok_or(peer_error(Misbehaviour::BadDigits))?;
        self.verify_tree(tx, proposal.level, &f.node_sig)?;
        let mut theirs = Vec::with_capacity(below.len() + 1);
        theirs.push(f.node_sig);
        theirs.extend(below);
        let (events, fold) = self.commit_reset(&proposal, path, theirs, base_sig, signer);
        let mut fx = self.persist();
        if let Some(payment) = fold {
            fx.send.push(Msg::Payment(payment));
        }
        fx.events.extend(events);
        Ok(fx)
    }

    /// Makes the proposal the current state. `theirs` are the counterparty's signatures on
    /// `N_i' … N_d'` in level order. Returns the events and, if HTLCs of ours were fulfilled during
    /// the reset, the payment folding them (already applied).
    fn commit_reset<S: Signer + ?Sized>(
        &mut self,
        proposal: &Proposal,
        path: BuiltBranch,
        theirs: Vec<ecdsa::Signature>,
        their_base_sig: Option<ecdsa::Signature>,
        signer: &S,
    ) -> (Vec<Event>, Option<Payment>) {
        let mut events = Vec::new();
        for r in &proposal.removed {
            match (r.offerer == self.role, r.how) {
                (true, Removal::Dropped) => events.push(Event::HtlcFailIrrevocable { id: r.id }),
                (false, Removal::Dropped) => events.push(Event::HtlcRemoved { id: r.id }),
                _ => {}
            }
        }
        for (k, sig) in theirs.into_iter().enumerate() {
            if let Some(slot) = self.node_sigs.get_mut(proposal.level - 1 + k) {
                *slot = sig;
            }
        }
        self.digits = proposal.digits.clone();
        self.values = proposal.values;
        self.derived.branch = path;
        for payer in [Role::Initiator, Role::Acceptor] {
            let ch = &mut self.channels[payer.index()];
            // Both parties checked that every number has a successor before signing.
            if let Some(next) = ch.number.checked_add(1) {
                ch.number = next;
            }
            ch.state = proposal.bases[payer.index()].clone();
            ch.signature = if payer == self.role { None } else { their_base_sig };
            if payer == self.role {
                ch.acked = ch.number;
            }
            ch.sync_status();
        }
        self.reset = ResetState::Idle;
        // The leaf a payment carrying our withdrawn HTLCs spends is superseded: we hold the
        // fully signed new branch, whose lock is shorter.
        events.extend(self.withdrawn.drain(..).map(|h| Event::HtlcFailIrrevocable { id: h.id }));
        // A branch we followed on chain as "pending" is now the current one.
        self.chain.on_pending = false;
        let left = self.resets_left();
        events.push(Event::ResetCompleted { level: proposal.level, resets_left: left });
        if left == 0 {
            events.push(Event::ResetsExhausted);
        } else if left <= self.terms.reset_warning {
            events.push(Event::ResetsRunningLow { left });
        }
        let fold = self.fold_payment(signer).ok().flatten();
        if let Some(p) = &fold {
            let ch = &mut self.channels[self.role.index()];
            ch.number = p.number;
            ch.state = PaymentState { to_payee: p.to_payee, htlcs: p.htlcs.clone() };
            ch.sync_status();
        }
        (events, fold)
    }
}
