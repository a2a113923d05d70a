//! Closing: cooperatively with one transaction, or unilaterally by publishing the tree; and the
//! chain events that drive both. Every transaction spending the funding output or a tree output
//! (the tree and the cooperative close) is a zero-fee version-3 transaction with a pay-to-anchor
//! output, confirmed by the publisher's CPFP child ([`tree`](super::tree)).
//!
//! **Unilateral close.** The kickoff first; then each node `N_j` of the current branch exactly when
//! its BIP-0068 lock matures: its parent confirmed at height `h`, so it can be mined from block
//! `h + s_j` on and is broadcast when the tip reaches `h + s_j − 1` ([`Channel::close_schedule`]).
//! Every older sibling has a lock at least `Δ` longer, so it cannot be mined before the current
//! node (docs/duplex.md §7). When the leaf confirms, the holder publishes its best payment in the
//! counterparty's leaf channel at once (it must confirm before `leaf + T_r`), claims the HTLCs it
//! knows preimages of, and refunds its own leaf channel at `leaf + T_r` if the counterparty has not
//! published a payment by then; HTLCs it offered are timed out from their expiry on.
//!
//! **Watching.** The same logic reacts when the counterparty publishes the kickoff (with a current
//! or a stale branch): the holder publishes its current branch, level by level, in time.

use alloc::vec::Vec;

use bitcoin::absolute::LockTime;
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::{ecdsa, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};

use super::channel::{BuiltBranch, Channel, Phase};
use super::fees;
use super::leaf::{self, HtlcStatus};
use super::msgs::{CloseProposal, CloseSigned, Msg};
use super::reset::ResetState;
use super::tree;
use super::{peer_error, CloseKind, CommandError, Effects, Event, ForceCloseReason, Misbehaviour, PeerError, Role};
use crate::core::feebump::BumpRequest;
use crate::core::hashlock::PaymentPreimage;
use crate::core::script;
use crate::core::sign::{self, KeyId, SignRequest, Signer, Tweak};
use crate::core::units::BlockHeight;
use crate::driving::{ChainEvent, Watch};
use crate::spilman::fees as spilman_fees;
use crate::spilman::payment::{PaymentHtlc, PaymentState, PaymentTemplate};

/// An HTLC claim due now: the HTLC id, the signed claim and its fee-bump request.
pub(super) type Claim = (u64, Transaction, Option<BumpRequest>);

/// A cooperative close in progress.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct CoopClose {
    /// 0: spends the funding output; `l ≥ 1`: output 0 of the tree transaction at level `l − 1`.
    pub spend: u8,
    /// The close transaction's txid.
    pub txid: Txid,
    /// Both signatures are known (it was broadcast).
    pub complete: bool,
}

/// An HTLC output of a confirmed leaf payment.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct OnChainHtlc {
    /// Who offered it (payer of its leaf channel).
    pub offerer: Role,
    pub htlc: PaymentHtlc,
    pub outpoint: OutPoint,
    pub preimage: Option<PaymentPreimage>,
    /// Our claim, once broadcast.
    pub claim: Option<Txid>,
    /// Spent on chain.
    pub resolved: bool,
}

/// What the holder knows about the channel's transactions on chain.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub(crate) struct OnChain {
    /// Confirmed tree transactions of the branch being published, by level (0 = kickoff).
    pub tree: Vec<(Txid, BlockHeight)>,
    /// The confirmed branch is the pending reset's (from the reset's level on).
    pub on_pending: bool,
    /// Number of tree levels we broadcast (0: none; `l + 1`: up to level `l`).
    pub broadcast: usize,
    /// A tree transaction of no branch we hold confirmed.
    pub stale: Option<(usize, Txid)>,
    /// The spender of each leaf channel output, by payer role.
    pub leaf_spent: [Option<Txid>; 2],
    /// Our best payment (as payee) was broadcast.
    pub payment_sent: bool,
    /// Our refund was broadcast.
    pub refund_sent: bool,
    /// HTLC outputs of confirmed leaf payments.
    pub htlcs: Vec<OnChainHtlc>,
}

impl OnChain {
    pub fn learn_preimage(&mut self, offerer: Role, id: u64, preimage: PaymentPreimage) {
        for h in self.htlcs.iter_mut().filter(|h| h.offerer == offerer && h.htlc.id == id) {
            h.preimage = Some(preimage);
        }
    }

    pub fn knows_preimage(&self, offerer: Role, id: u64) -> bool {
        self.htlcs.iter().any(|h| h.offerer == offerer && h.htlc.id == id && h.preimage.is_some())
    }

    pub fn htlc(&self, offerer: Role, id: u64) -> Option<PaymentHtlc> {
        self.htlcs.iter().find(|h| h.offerer == offerer && h.htlc.id == id).map(|h| h.htlc)
    }
}

/// One transaction of a unilateral close, as [`Channel::close_schedule`] reports it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ScheduledTx {
    /// Tree level (0 = kickoff, `d` = leaf).
    pub level: usize,
    /// Its txid.
    pub txid: Txid,
    /// Its BIP-0068 relative lock in blocks.
    pub lock: u16,
    /// The first block that may include it (parent's height + lock), once its parent confirmed.
    pub valid_from: Option<BlockHeight>,
    /// The height it confirmed at.
    pub confirmed: Option<BlockHeight>,
}

/// The current branch and, while a reset awaits its last signature, the pending one with the
/// level it changes.
struct Branches {
    current: Option<BuiltBranch>,
    pending: Option<(BuiltBranch, usize)>,
}

/// The leaf that confirmed (or would): its txid, channel values and the payment states with the
/// counterparty's signature on ours-to-publish.
struct LeafView {
    txid: Txid,
    values: [Amount; 2],
    states: [PaymentState; 2],
    /// The payer's signature on the state of the channel the holder is payee of.
    their_sig: Option<ecdsa::Signature>,
}

impl Channel {
    // ------------------------------------------------------------------ cooperative close

    fn coop_allowed(&self) -> bool {
        let tree_ok = self.phase == Phase::ForceClosing
            && self.chain.tree.len() < self.terms.params.depth()
            && !self.chain.on_pending
            && self.chain.stale.is_none();
        self.phase == Phase::Open || tree_ok
    }

    fn htlcs_pending(&self) -> bool {
        self.channels.iter().any(|c| !c.state.htlcs.is_empty())
    }

    /// The unsigned cooperative close spending `spend` (see [`CloseProposal::spend`]).
    fn coop_tx(&self, spend: u8) -> Option<(Transaction, Amount)> {
        let d = self.terms.params.depth();
        let (outpoint, value) = if spend == 0 {
            (self.funding?, self.terms.capacity)
        } else {
            let level = usize::from(spend) - 1;
            if level >= d {
                return None;
            }
            let txid = *self.derived.branch.txids.get(level)?;
            (OutPoint { txid, vout: 0 }, self.terms.channel_value())
        };
        let keys = self.keys.as_ref()?;
        let raw = leaf::balances(self.values, [&self.channels[0].state, &self.channels[1].state])?;
        let mut output = Vec::with_capacity(2);
        for role in [Role::Initiator, Role::Acceptor] {
            let v = raw.own[role.index()];
            if v >= self.terms.dust_limit {
                output.push(TxOut { value: v, script_pubkey: keys[role.index()].payout.clone() });
            }
        }
        // Zero fee, like the tree: a balance below dust is left out and its value goes to the
        // anchor, which whoever wants the close confirmed spends by CPFP.
        let paid = output.iter().try_fold(Amount::ZERO, |acc, o| acc.checked_add(o.value))?;
        output.push(TxOut { value: value.checked_sub(paid)?, ..script::p2a_output() });
        let tx = Transaction {
            version: script::TRUC_VERSION,
            lock_time: LockTime::ZERO,
            input: alloc::vec![TxIn {
                previous_output: outpoint,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            }],
            output,
        };
        Some((tx, value))
    }

    /// The fee-bump request of the signed cooperative close `tx` (both parties make one: either
    /// child confirms it; see [`fees::coop_request`]).
    fn coop_bump(&self, tx: &Transaction) -> Option<BumpRequest> {
        let payout = &self.keys.as_ref()?[self.role.index()].payout;
        let ours = tx.output.iter().filter(|o| o.script_pubkey == *payout).map(|o| o.value).sum();
        fees::coop_request(&self.terms, tx, ours, self.tip)
    }

    /// What a cooperative close of the current state pays the holder (its balance, or nothing
    /// below dust, as `coop_tx` builds it).
    fn coop_payout(&self) -> Amount {
        let raw = leaf::balances(self.values, [&self.channels[0].state, &self.channels[1].state]);
        raw.map(|b| b.own[self.role.index()]).filter(|v| *v >= self.terms.dust_limit).unwrap_or(Amount::ZERO)
    }

    fn sign_coop<S: Signer + ?Sized>(
        &self,
        signer: &S,
        tx: &Transaction,
        value: Amount,
    ) -> Result<ecdsa::Signature, CommandError> {
        let ws = self.node_script().ok_or(CommandError::WrongPhase)?;
        Ok(signer.sign(&SignRequest {
            tx,
            input: 0,
            script_code: ws.as_script(),
            p2wpkh: false,
            value,
            sighash_type: EcdsaSighashType::All,
            key: KeyId::Funding,
            tweak: Tweak::None,
        })?)
    }

    fn verify_coop(&self, tx: &Transaction, value: Amount, sig: &ecdsa::Signature) -> Result<(), PeerError> {
        let bad = || peer_error(Misbehaviour::BadClose);
        let ws = self.node_script().ok_or_else(bad)?;
        let key = self.counterparty_keys().ok_or_else(bad)?.funding;
        let msg = sign::p2wsh_sighash(tx, 0, ws.as_script(), value, EcdsaSighashType::All).map_err(|_| bad())?;
        let _valid = sign::verify(&self.secp, &msg, sig, &key, EcdsaSighashType::All).map_err(|_| bad())?;
        Ok(())
    }

    /// Proposes a cooperative close: one transaction paying both balances, spending the funding
    /// output, or output 0 of the deepest confirmed tree transaction if the tree is being
    /// published. It pays no fee (version 3, a pay-to-anchor output last, which also takes any
    /// balance below dust): both parties receive their balances to the satoshi, and whoever
    /// wants it confirmed pays the fee by a child spending the anchor (CPFP).
    ///
    /// # Errors
    /// [`CommandError::HtlcsPending`] while HTLCs are pending (resolve them, and reset to drop
    /// failed ones); [`CommandError::ResetInProgress`]; [`CommandError::NotQuiescent`] if our last
    /// payment is unacknowledged; [`CommandError::WrongPhase`] once the leaf confirmed;
    /// [`CommandError::WrongSigner`] if `signer` is not the channel's ([`Channel::check_signer`]).
    pub fn close<S: Signer + ?Sized>(&mut self, signer: &S) -> Result<Effects, CommandError> {
        self.check_signer(signer)?;
        if self.lost_state {
            return Err(CommandError::LostState);
        }
        if !self.coop_allowed() || self.coop.is_some() {
            return Err(CommandError::WrongPhase);
        }
        if self.is_resetting() {
            return Err(CommandError::ResetInProgress);
        }
        if self.htlcs_pending() {
            return Err(CommandError::HtlcsPending);
        }
        let me = &self.channels[self.role.index()];
        if me.acked != me.number {
            return Err(CommandError::NotQuiescent);
        }
        let spend = u8::try_from(self.chain.tree.len()).map_err(|_| CommandError::WrongPhase)?;
        let (tx, value) = self.coop_tx(spend).ok_or(CommandError::WrongPhase)?;
        let signature = self.sign_coop(signer, &tx, value)?;
        let ours = self.coop_payout();
        self.coop = Some(CoopClose { spend, txid: tx.compute_txid(), complete: false });
        self.close_released = Some(self.close_released.map_or(ours, |floor| floor.min(ours)));
        let mut fx = self.persist();
        fx.send.push(Msg::CloseProposal(CloseProposal { spend, signature }));
        Ok(fx)
    }

    pub(super) fn on_close_proposal<S: Signer + ?Sized>(
        &mut self,
        c: CloseProposal,
        signer: &S,
    ) -> Result<Effects, PeerError> {
        if !self.coop_allowed() || self.coop.is_some_and(|k| k.complete) {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        }
        let me = &self.channels[self.role.index()];
        if self.is_resetting() || self.htlcs_pending() || me.acked != me.number {
            return Err(peer_error(Misbehaviour::CloseNotAllowed));
        }
        let (tx, value) = self.coop_tx(c.spend).ok_or(peer_error(Misbehaviour::BadClose))?;
        self.verify_coop(&tx, value, &c.signature)?;
        let ours = self.sign_coop(signer, &tx, value).map_err(|e| match e {
            CommandError::Signer(s) => peer_error(Misbehaviour::Signer(s)),
            _ => peer_error(Misbehaviour::BadClose),
        })?;
        let txid = tx.compute_txid();
        let signed = self.complete_2of2(tx, &ours, &c.signature);
        self.coop = Some(CoopClose { spend: c.spend, txid, complete: true });
        if self.phase == Phase::Open {
            self.phase = Phase::CoopClosing;
        }
        let mut fx = self.persist();
        fx.send.push(Msg::CloseSigned(CloseSigned { signature: ours }));
        fx.bumps.extend(self.coop_bump(&signed));
        fx.watch.push(Watch::Tx(txid));
        fx.broadcast.push(signed);
        fx.events.push(Event::CloseBroadcast { txid });
        Ok(fx)
    }

    pub(super) fn on_close_signed<S: Signer + ?Sized>(
        &mut self,
        c: CloseSigned,
        signer: &S,
    ) -> Result<Effects, PeerError> {
        let Some(coop) = self.coop.filter(|k| !k.complete) else {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        };
        let (tx, value) = self.coop_tx(coop.spend).ok_or(peer_error(Misbehaviour::BadClose))?;
        self.verify_coop(&tx, value, &c.signature)?;
        let ours = self.sign_coop(signer, &tx, value).map_err(|e| match e {
            CommandError::Signer(s) => peer_error(Misbehaviour::Signer(s)),
            _ => peer_error(Misbehaviour::BadClose),
        })?;
        let signed = self.complete_2of2(tx, &ours, &c.signature);
        self.coop = Some(CoopClose { complete: true, ..coop });
        if self.phase == Phase::Open {
            self.phase = Phase::CoopClosing;
        }
        let mut fx = self.persist();
        fx.bumps.extend(self.coop_bump(&signed));
        fx.watch.push(Watch::Tx(coop.txid));
        fx.broadcast.push(signed);
        fx.events.push(Event::CloseBroadcast { txid: coop.txid });
        Ok(fx)
    }

    // ------------------------------------------------------------------ unilateral close

    /// Starts a unilateral close: broadcasts the kickoff now; every node follows when its lock
    /// matures (drive [`Channel::handle_chain`] with every new tip). Does nothing once closing.
    ///
    /// With a signer that is not the channel's nothing changes, and the effects carry only
    /// [`Event::WrongSigner`].
    pub fn force_close<S: Signer + ?Sized>(&mut self, signer: &S) -> Effects {
        if let Err(e) = self.check_signer(signer) {
            return Effects::only_event(Event::WrongSigner(e), self.next_deadline());
        }
        self.start_force_close(ForceCloseReason::Requested, signer).unwrap_or_default()
    }

    fn start_force_close<S: Signer + ?Sized>(&mut self, reason: ForceCloseReason, signer: &S) -> Option<Effects> {
        if !matches!(self.phase, Phase::Open | Phase::CoopClosing) {
            return None;
        }
        self.kickoff_sig?;
        self.phase = Phase::ForceClosing;
        let mut fx = Effects::none();
        fx.events.push(Event::ForceClosing { reason });
        self.tip_actions(signer, &mut fx);
        let mut persisted = self.persist();
        persisted.merge(fx);
        Some(persisted)
    }

    /// The branches a confirmed tree transaction may belong to: the current one, and (while we
    /// await a reset's last signature) the pending one with its level.
    fn branches(&self) -> Branches {
        let current = (!self.derived.branch.txs.is_empty()).then(|| self.derived.branch.clone());
        let pending = match &self.reset {
            ResetState::AwaitingFinish { proposal, .. } => {
                self.build_path(&proposal.digits, proposal.values).map(|p| (p, proposal.level))
            }
            _ => None,
        };
        Branches { current, pending }
    }

    /// The branch being published and the counterparty's signature source for each level: the
    /// current branch, or the pending one once its changed level confirmed.
    fn followed_branch(&self) -> Option<BuiltBranch> {
        let Branches { current, pending } = self.branches();
        if self.chain.on_pending {
            pending.map(|(p, _)| p)
        } else {
            current
        }
    }

    /// The counterparty's signature on the tree transaction at `level` of the followed branch.
    fn their_tree_sig(&self, level: usize) -> Option<ecdsa::Signature> {
        if level == 0 {
            return self.kickoff_sig;
        }
        if self.chain.on_pending {
            if let ResetState::AwaitingFinish { proposal, node_sigs, .. } = &self.reset {
                // node_sigs covers levels proposal.level + 1 ..= d.
                return node_sigs.get(level.checked_sub(proposal.level + 1)?).copied();
            }
            return None;
        }
        self.node_sigs.get(level - 1).copied()
    }

    /// The lock of the tree transaction at `level` in the followed branch.
    fn followed_lock(&self, level: usize) -> Option<u16> {
        if level == 0 {
            return Some(0);
        }
        let digits = match (&self.reset, self.chain.on_pending) {
            (ResetState::AwaitingFinish { proposal, .. }, true) => &proposal.digits,
            _ => &self.digits,
        };
        self.terms.params.lock(level, u32::from(*digits.get(level - 1)?))
    }

    /// The unilateral close, level by level: what is published, its lock, from which block it is
    /// valid (once its parent confirmed), and when it confirmed.
    pub fn close_schedule(&self) -> Vec<ScheduledTx> {
        let Some(path) = self.followed_branch() else { return Vec::new() };
        let mut out = Vec::with_capacity(path.txids.len());
        for (level, txid) in path.txids.iter().enumerate() {
            let lock = self.followed_lock(level).unwrap_or(0);
            let parent_height =
                if level == 0 { self.funding_height } else { self.chain.tree.get(level - 1).map(|t| t.1) };
            out.push(ScheduledTx {
                level,
                txid: *txid,
                lock,
                valid_from: parent_height.and_then(|h| h.checked_add(u32::from(lock))),
                confirmed: self.chain.tree.get(level).map(|t| t.1),
            });
        }
        out
    }

    /// The leaf that confirmed (or, before, the one the followed branch ends in).
    fn leaf_view(&self) -> Option<LeafView> {
        let txid = self.followed_branch()?.leaf_txid()?;
        let them = (!self.role).index();
        if self.chain.on_pending {
            if let ResetState::AwaitingFinish { proposal, base_sig, .. } = &self.reset {
                return Some(LeafView {
                    txid,
                    values: proposal.values,
                    states: proposal.bases.clone(),
                    their_sig: *base_sig,
                });
            }
            return None;
        }
        Some(LeafView {
            txid,
            values: self.values,
            states: [self.channels[0].state.clone(), self.channels[1].state.clone()],
            their_sig: self.channels[them].signature,
        })
    }

    fn leaf_confirmed(&self) -> Option<BlockHeight> {
        self.chain.tree.get(self.terms.params.depth()).map(|t| t.1)
    }

    fn leaf_template_of(&self, view: &LeafView, payer: Role) -> Option<PaymentTemplate> {
        leaf::leaf_template(&self.terms, self.keys.as_ref()?, payer, view.txid, view.values)
    }

    /// The height from which the holder's refund of its own leaf channel is valid, once the leaf
    /// confirmed: `leaf + T_r`.
    pub fn refund_valid_from(&self) -> Option<BlockHeight> {
        self.leaf_confirmed()?.checked_add(u32::from(self.terms.params.refund_delay()))
    }

    /// Does whatever the tip makes due while closing; records it in the state. Returns whether
    /// anything changed.
    fn tip_actions<S: Signer + ?Sized>(&mut self, signer: &S, fx: &mut Effects) -> bool {
        let mut changed = false;
        if self.phase == Phase::ForceClosing && self.chain.stale.is_none() {
            changed |= self.broadcast_tree(signer, fx);
        }
        if let Some(leaf_height) = self.leaf_confirmed() {
            changed |= self.leaf_actions(leaf_height, signer, fx);
        }
        let claims = self.due_claims(signer);
        changed |= !claims.is_empty();
        Self::emit_claims(fx, claims);
        changed
    }

    fn broadcast_tree<S: Signer + ?Sized>(&mut self, signer: &S, fx: &mut Effects) -> bool {
        let d = self.terms.params.depth();
        let level = self.chain.tree.len();
        if level > d || self.chain.broadcast > level {
            return false;
        }
        let valid_from = if level == 0 {
            Some(self.tip)
        } else {
            let lock = self.followed_lock(level).unwrap_or(u16::MAX);
            self.chain.tree.get(level - 1).and_then(|t| t.1.checked_add(u32::from(lock)))
        };
        let Some(valid_from) = valid_from else { return false };
        if self.tip.0.saturating_add(1) < valid_from.0 {
            return false;
        }
        let Some(tx) = self.followed_branch().and_then(|p| p.txs.into_iter().nth(level)) else { return false };
        let (Some(theirs), Ok(ours)) = (self.their_tree_sig(level), self.sign_tree(signer, &tx, level)) else {
            return false;
        };
        let signed = self.complete_2of2(tx, &ours, &theirs);
        let txid = signed.compute_txid();
        self.chain.broadcast = level + 1;
        let deadline = fees::tree_deadline(&self.terms, valid_from, self.tip);
        fx.bumps.extend(fees::tree_request(&signed, deadline, self.at_stake()));
        fx.events.push(Event::TreeTxBroadcast { level, txid });
        fx.watch.push(Watch::Tx(txid));
        fx.broadcast.push(signed);
        true
    }

    /// What the holder has in the channel (the fee-bump cap of its tree transactions): its
    /// balance and every HTLC (those it offered come back to it, those offered to it it may
    /// claim).
    fn at_stake(&self) -> Amount {
        let b = self.balances();
        b.holder.checked_add(b.offered).and_then(|v| v.checked_add(b.received)).unwrap_or(Amount::MAX_MONEY)
    }

    /// After the leaf confirmed: publish our best payment at once, refund at `leaf + T_r`.
    fn leaf_actions<S: Signer + ?Sized>(&mut self, leaf_height: BlockHeight, signer: &S, fx: &mut Effects) -> bool {
        let Some(view) = self.leaf_view() else { return false };
        let mut changed = false;
        let them = !self.role;
        if !self.chain.payment_sent && self.chain.leaf_spent[them.index()].is_none() {
            if let (Some(sig), Some(t)) = (view.their_sig, self.leaf_template_of(&view, them)) {
                let state = &view.states[them.index()];
                if let Some(tx) = t.build(state).ok().and_then(|b| t.complete(signer, &b, &sig).ok()) {
                    let txid = tx.compute_txid();
                    self.chain.payment_sent = true;
                    // Must confirm before the payer's refund can be mined, at `L + T_r`.
                    let deadline = leaf_height
                        .checked_add(u32::from(self.terms.params.refund_delay()))
                        .map_or(leaf_height, |h| h.saturating_sub(1));
                    let theirs = &self.channels[them.index()];
                    let revealed = state
                        .htlcs
                        .iter()
                        .filter(|h| matches!(theirs.status_of(h.id), Some(HtlcStatus::Fulfilled(_))))
                        .fold(Amount::ZERO, |a, h| a.checked_add(h.amount).unwrap_or(a));
                    fx.bumps.extend(fees::leaf(spilman_fees::close_request(
                        &t,
                        &tx,
                        state.to_payee,
                        deadline,
                        revealed,
                    )));
                    fx.events.push(Event::LeafTxBroadcast { txid });
                    fx.watch.push(Watch::Tx(txid));
                    fx.broadcast.push(tx);
                    changed = true;
                }
            }
        }
        let me = self.role;
        let refund_from = leaf_height.checked_add(u32::from(self.terms.params.refund_delay()));
        let due = refund_from.is_some_and(|h| self.tip.0.saturating_add(1) >= h.0);
        if due && !self.chain.refund_sent && self.chain.leaf_spent[me.index()].is_none() {
            if let Some(t) = self.leaf_template_of(&view, me) {
                let refund = t.refund_tx(self.terms.refund_fee, BlockHeight(0));
                let signed = refund.and_then(|r| {
                    let sig = t.sign_refund(signer, &r).ok()?;
                    t.complete_refund(r, &sig, None)
                });
                if let Some(tx) = signed {
                    let txid = tx.compute_txid();
                    self.chain.refund_sent = true;
                    let deadline = refund_from
                        .map_or(self.tip, |h| BlockHeight(h.0.saturating_add(u32::from(self.terms.confirm_blocks))))
                        .max(BlockHeight(self.tip.0.saturating_add(1)));
                    let value = tx.output.first().map_or(Amount::ZERO, |o| o.value);
                    fx.bumps.extend(fees::leaf(spilman_fees::refund_request_by(
                        &t,
                        &tx,
                        self.terms.refund_fee,
                        value,
                        deadline,
                    )));
                    fx.events.push(Event::LeafTxBroadcast { txid });
                    fx.watch.push(Watch::Tx(txid));
                    fx.broadcast.push(tx);
                    changed = true;
                }
            }
        }
        changed
    }

    /// HTLC claims due now (recorded in the state): with a preimage at once, timeouts of our own
    /// from their expiry on.
    pub(super) fn due_claims<S: Signer + ?Sized>(&mut self, signer: &S) -> Vec<Claim> {
        let mut out = Vec::new();
        for i in 0..self.chain.htlcs.len() {
            let Some(h) = self.chain.htlcs.get(i).copied() else { continue };
            if h.resolved || h.claim.is_some() {
                continue;
            }
            let Some(tx) = self.htlc_claim(&h, signer) else { continue };
            if let Some(entry) = self.chain.htlcs.get_mut(i) {
                entry.claim = Some(tx.compute_txid());
            }
            let bump = self.claim_bump(&h, &tx);
            out.push((h.htlc.id, tx, bump));
        }
        out
    }

    /// Our HTLC claims already broadcast whose output is still unspent on chain, built again
    /// (the same transactions): on each new block they are broadcast again, since a conflicting
    /// spend the peer replaced in turn may have evicted them (replacement cycling).
    fn claims_again<S: Signer + ?Sized>(&self, signer: &S) -> Vec<Transaction> {
        self.chain
            .htlcs
            .iter()
            .filter(|h| !h.resolved && h.claim.is_some())
            .filter_map(|h| self.htlc_claim(h, signer).filter(|tx| Some(tx.compute_txid()) == h.claim))
            .collect()
    }

    /// The fee-bump request of our claim `claim` of the on-chain HTLC `h` (as Spilman's).
    fn claim_bump(&self, h: &OnChainHtlc, claim: &Transaction) -> Option<BumpRequest> {
        let keys = self.keys.as_ref()?;
        let t = leaf::template(&self.terms, keys, h.offerer, h.outpoint, Amount::ZERO);
        let by_payee = h.offerer != self.role;
        let preimage = h.preimage.as_ref().filter(|_| by_payee);
        let dest = keys[self.role.index()].payout.clone();
        spilman_fees::claim_request(&t, claim, h.outpoint, &h.htlc, preimage, dest)
    }

    /// Our claim of the on-chain HTLC `h` if one is valid now: with its preimage if it was
    /// offered to us; back to us from its expiry on if we offered it (even if we learnt its
    /// preimage: the output is still ours to take if the peer never claimed it).
    fn htlc_claim<S: Signer + ?Sized>(&self, h: &OnChainHtlc, signer: &S) -> Option<Transaction> {
        let keys = self.keys.as_ref()?;
        let mine = h.offerer == self.role;
        let by_payee = match (mine, h.preimage) {
            (false, Some(_)) => true,
            (true, _) if self.tip >= h.htlc.expiry => false,
            _ => return None,
        };
        // The HTLC script depends only on keys, hash and expiry: any template of the channel.
        let t = leaf::template(&self.terms, keys, h.offerer, h.outpoint, Amount::ZERO);
        let dest = keys[self.role.index()].payout.clone();
        let claim = t.htlc_claim_tx(h.outpoint.txid, h.outpoint.vout, &h.htlc, by_payee, dest, self.terms.claim_fee)?;
        t.complete_htlc_claim(signer, claim, &h.htlc, h.preimage.as_ref().filter(|_| by_payee)).ok()
    }

    /// An unconfirmed spend of an on-chain HTLC output ([`ChainEvent::Seen`]): the preimage of
    /// one we offered, if its witness reveals it, is learnt at once ([`Event::HtlcFulfilled`]);
    /// nothing is taken as spent.
    fn on_seen(&mut self, tx: &Transaction) -> Effects {
        let mut events = Vec::new();
        for input in &tx.input {
            let role = self.role;
            let Some(entry) = self
                .chain
                .htlcs
                .iter_mut()
                .find(|h| h.outpoint == input.previous_output && !h.resolved && h.offerer == role)
            else {
                continue;
            };
            if entry.preimage.is_some() {
                continue;
            }
            if let Some(preimage) = entry.htlc.payment_hash.find_preimage_in(&input.witness) {
                entry.preimage = Some(preimage);
                let htlc = entry.htlc;
                events.push(Event::HtlcFulfilled { id: htlc.id, payment_hash: htlc.payment_hash, preimage });
            }
        }
        if events.is_empty() {
            return Effects::none();
        }
        let mut fx = self.persist();
        fx.events = events;
        fx
    }

    pub(super) fn emit_claims(fx: &mut Effects, claims: Vec<Claim>) {
        for (id, tx, bump) in claims {
            fx.bumps.extend(bump);
            let txid = tx.compute_txid();
            fx.events.push(Event::HtlcClaimBroadcast { id, txid });
            fx.watch.push(Watch::Tx(txid));
            fx.broadcast.push(tx);
        }
    }

    // ------------------------------------------------------------------ chain events

    /// Handles a chain event. Idempotent; unrelated or garbage transactions change nothing.
    ///
    /// Deliver every new tip, the funding transaction's confirmation, and every transaction that
    /// spends a watched outpoint (in block order).
    ///
    /// With a signer that is not the channel's the event is refused: nothing changes, and the
    /// effects carry only [`Event::WrongSigner`] (deliver the event again with the right signer).
    pub fn handle_chain<S: Signer + ?Sized>(&mut self, event: ChainEvent<'_>, signer: &S) -> Effects {
        if let Err(e) = self.check_signer(signer) {
            return Effects::only_event(Event::WrongSigner(e), self.next_deadline());
        }
        match event {
            ChainEvent::Tip(tip) => self.on_tip(tip.height, signer),
            ChainEvent::Confirmed { tx, height } => self.on_confirmed(tx, height, signer),
            ChainEvent::Unconfirmed(txid) => self.on_unconfirmed(txid, signer),
            ChainEvent::Seen { tx } => self.on_seen(tx),
        }
    }

    fn finish_chain<S: Signer + ?Sized>(&mut self, changed: bool, mut fx: Effects, signer: &S) -> Effects {
        let acted = self.tip_actions(signer, &mut fx);
        if !(changed || acted) {
            return fx;
        }
        let mut persisted = self.persist();
        persisted.merge(fx);
        persisted
    }

    fn on_tip<S: Signer + ?Sized>(&mut self, height: BlockHeight, signer: &S) -> Effects {
        let changed = height > self.tip;
        self.tip = self.tip.max(height);
        if self.phase == Phase::Open {
            if let Some(reason) = self.htlc_force_reason() {
                if let Some(fx) = self.start_force_close(reason, signer) {
                    return fx;
                }
            }
        }
        let mut fx = Effects::none();
        if changed {
            fx.broadcast.extend(self.claims_again(signer));
        }
        self.finish_chain(changed, fx, signer)
    }

    /// Whether an HTLC deadline forces a unilateral close now (docs/duplex.md §6).
    fn htlc_force_reason(&self) -> Option<ForceCloseReason> {
        let s = u32::from(self.terms.confirm_blocks);
        let e_in = self.terms.params.htlc_receive_blocks(s);
        let grace = u32::from(self.terms.htlc_grace_blocks);
        let theirs = &self.channels[(!self.role).index()];
        for h in &theirs.state.htlcs {
            if matches!(theirs.status_of(h.id), Some(HtlcStatus::Fulfilled(_)))
                && self.tip >= h.expiry.saturating_sub(e_in)
            {
                return Some(ForceCloseReason::HtlcPreimageDeadline);
            }
        }
        let mine = &self.channels[self.role.index()];
        for h in &mine.state.htlcs {
            let unresolved = !matches!(mine.status_of(h.id), Some(HtlcStatus::Fulfilled(_)));
            if unresolved && h.expiry.checked_add(grace).is_some_and(|d| self.tip >= d) {
                return Some(ForceCloseReason::HtlcExpired);
            }
        }
        None
    }

    /// When to call [`Channel::handle_chain`] next, at the latest.
    pub fn next_deadline(&self) -> Option<BlockHeight> {
        let mut best: Option<BlockHeight> = None;
        let mut consider = |h: Option<BlockHeight>| {
            if let Some(h) = h {
                best = Some(best.map_or(h, |b| b.min(h)));
            }
        };
        let s = u32::from(self.terms.confirm_blocks);
        let e_in = self.terms.params.htlc_receive_blocks(s);
        match self.phase {
            Phase::Open | Phase::CoopClosing => {
                let theirs = &self.channels[(!self.role).index()];
                for h in &theirs.state.htlcs {
                    if matches!(theirs.status_of(h.id), Some(HtlcStatus::Fulfilled(_))) {
                        consider(Some(h.expiry.saturating_sub(e_in)));
                    }
                }
                let mine = &self.channels[self.role.index()];
                for h in &mine.state.htlcs {
                    if !matches!(mine.status_of(h.id), Some(HtlcStatus::Fulfilled(_))) {
                        consider(h.expiry.checked_add(u32::from(self.terms.htlc_grace_blocks)));
                    }
                }
            }
            Phase::ForceClosing => {
                let level = self.chain.tree.len();
                if level >= 1 && level <= self.terms.params.depth() {
                    let parent = self.chain.tree.get(level - 1).map(|t| t.1);
                    let lock = self.followed_lock(level);
                    consider(
                        parent.zip(lock).and_then(|(p, l)| p.checked_add(u32::from(l))).map(|h| h.saturating_sub(1)),
                    );
                }
                if !self.chain.refund_sent && self.chain.leaf_spent[self.role.index()].is_none() {
                    consider(self.refund_valid_from().map(|h| h.saturating_sub(1)));
                }
            }
            _ => {}
        }
        for h in &self.chain.htlcs {
            if h.offerer == self.role && !h.resolved && h.claim.is_none() {
                consider(Some(h.htlc.expiry));
            }
        }
        best
    }

    fn on_confirmed<S: Signer + ?Sized>(&mut self, tx: &Transaction, height: BlockHeight, signer: &S) -> Effects {
        let Some(funding) = self.funding else { return Effects::none() };
        let txid = tx.compute_txid();
        let mut fx = Effects::none();
        if txid == funding.txid {
            if tx.output.get(funding.vout as usize) != self.funding_output().as_ref() {
                if self.phase == Phase::Closed {
                    return Effects::none();
                }
                // The agreed txid, but its output at the agreed index does not pay exactly the
                // 2-of-2 and the capacity (CVE-2019-12999/13000 class): every signature of the
                // tree commits to that script and value, so nothing we hold spends anything
                // that exists. The channel is failed and never used again.
                self.phase = Phase::Closed;
                fx.events.push(Event::InvalidFunding { txid });
                let mut persisted = self.persist();
                persisted.merge(fx);
                return persisted;
            }
            if self.funding_height == Some(height) {
                return Effects::none();
            }
            self.funding_height = Some(height);
            fx.events.push(Event::FundingConfirmed { height });
            return self.finish_chain(true, fx, signer);
        }
        if let Some(&(spend, _)) = self.withdrawn_closes.iter().find(|(_, t)| *t == txid) {
            if self.coop.is_none_or(|c| c.txid != txid) {
                // The counterparty completed a close we had withdrawn: it pays no HTLC, so ours
                // are returned to us by it, irrevocably.
                let mine = &self.channels[self.role.index()].state.htlcs;
                fx.events.extend(mine.iter().map(|h| Event::HtlcFailIrrevocable { id: h.id }));
                self.coop = Some(CoopClose { spend, txid, complete: true });
            }
        }
        if self.coop.is_some_and(|c| c.txid == txid) {
            if self.phase == Phase::Closed {
                return Effects::none();
            }
            self.phase = Phase::Closed;
            // The leaf that a payment carrying our withdrawn HTLCs spends can never confirm now.
            fx.events.extend(self.withdrawn.drain(..).map(|h| Event::HtlcFailIrrevocable { id: h.id }));
            fx.events.push(Event::Closed { kind: CloseKind::Cooperative });
            return self.finish_chain(true, fx, signer);
        }
        let changed = self.on_tree_tx(tx, txid, height, &mut fx)
            || self.on_leaf_spend(tx, txid, &mut fx)
            || self.on_htlc_spend(tx, &mut fx);
        if !changed {
            return Effects::none();
        }
        self.finish_chain(true, fx, signer)
    }

    /// A transaction spending the output the next tree level spends.
    fn on_tree_tx(&mut self, tx: &Transaction, txid: Txid, height: BlockHeight, fx: &mut Effects) -> bool {
        let d = self.terms.params.depth();
        let level = self.chain.tree.len();
        if level > d || self.chain.stale.is_some() {
            return false;
        }
        let parent = match self.chain.tree.last() {
            None => match self.funding {
                Some(f) => f,
                None => return false,
            },
            Some((p, _)) => OutPoint { txid: *p, vout: 0 },
        };
        if !tx.input.iter().any(|i| i.previous_output == parent) {
            return false;
        }
        let Branches { current, pending } = self.branches();
        let on_current = !self.chain.on_pending && current.is_some_and(|c| c.txids.get(level) == Some(&txid));
        let on_pending = match &pending {
            Some((p, lvl)) if level >= *lvl && (self.chain.on_pending || level == *lvl) => {
                p.txids.get(level) == Some(&txid)
            }
            _ => false,
        };
        if !(on_current || on_pending) {
            self.chain.stale = Some((level, txid));
            fx.events.push(Event::StaleBranchConfirmed { level, txid });
            if self.phase == Phase::Open || self.phase == Phase::CoopClosing {
                self.phase = Phase::ForceClosing;
            }
            return true;
        }
        if on_pending && !on_current {
            self.chain.on_pending = true;
        }
        self.chain.tree.push((txid, height));
        fx.watch.push(Watch::Spend(tree::out0(tx)));
        if matches!(self.phase, Phase::Open | Phase::CoopClosing) {
            self.phase = Phase::ForceClosing;
            fx.events.push(Event::ForceClosing { reason: ForceCloseReason::CounterpartyKickoff });
        }
        if level == d {
            if let Some(view) = self.leaf_view() {
                for vout in tree::leaf_vouts(view.values[0], view.values[1]).into_iter().flatten() {
                    fx.watch.push(Watch::Spend(OutPoint { txid, vout }));
                }
            }
            self.mark_closed_if_settled(fx);
        }
        true
    }

    /// A transaction spending one of the confirmed leaf's channel outputs.
    fn on_leaf_spend(&mut self, tx: &Transaction, txid: Txid, fx: &mut Effects) -> bool {
        let Some((leaf_txid, _)) = self.chain.tree.get(self.terms.params.depth()).copied() else { return false };
        let Some(view) = self.leaf_view() else { return false };
        let vouts = tree::leaf_vouts(view.values[0], view.values[1]);
        let mut changed = false;
        for payer in [Role::Initiator, Role::Acceptor] {
            let Some(vout) = vouts[payer.index()] else { continue };
            let outpoint = OutPoint { txid: leaf_txid, vout };
            if self.chain.leaf_spent[payer.index()].is_some() || !tx.input.iter().any(|i| i.previous_output == outpoint)
            {
                continue;
            }
            self.chain.leaf_spent[payer.index()] = Some(txid);
            changed = true;
            // HTLC outputs of a payment: match the scripts of every HTLC we know in this channel.
            let Some(t) = self.leaf_template_of(&view, payer) else { continue };
            let mut known: Vec<PaymentHtlc> = view.states[payer.index()].htlcs.clone();
            // An unacknowledged payment of ours that we withdrew HTLCs from may be the one
            // published: its HTLC outputs are ours to take back after their expiry.
            let withdrawn = if payer == self.role { self.withdrawn.as_slice() } else { &[] };
            for h in self.channels[payer.index()].state.htlcs.iter().chain(withdrawn) {
                if !known.iter().any(|k| k.id == h.id) {
                    known.push(*h);
                }
            }
            for h in known {
                let spk = t.htlc_script(&h).to_p2wsh();
                let Some(pos) = tx.output.iter().position(|o| o.script_pubkey == spk && o.value == h.amount) else {
                    continue;
                };
                let preimage = match self.channels[payer.index()].status_of(h.id) {
                    Some(HtlcStatus::Fulfilled(p)) => Some(p),
                    _ => None,
                };
                let outpoint = OutPoint { txid, vout: pos as u32 };
                self.chain.htlcs.push(OnChainHtlc {
                    offerer: payer,
                    htlc: h,
                    outpoint,
                    preimage,
                    claim: None,
                    resolved: false,
                });
                fx.watch.push(Watch::Spend(outpoint));
            }
            // Our HTLCs that the published payment does not carry can no longer be claimed.
            if payer == self.role {
                for h in view.states[payer.index()].htlcs.iter().chain(&self.withdrawn) {
                    if !self.chain.htlcs.iter().any(|o| o.offerer == payer && o.htlc.id == h.id) {
                        fx.events.push(Event::HtlcFailIrrevocable { id: h.id });
                    }
                }
            }
        }
        if changed {
            self.mark_closed_if_settled(fx);
        }
        changed
    }

    /// Whether the confirmed leaf needs nothing more from the holder: its own channel output is
    /// spent (by the counterparty's payment or its refund), and the counterparty's is spent unless
    /// the holder has no stake in it (no payment held).
    fn leaf_settled(&self) -> bool {
        let Some(view) = self.leaf_view() else { return false };
        let vouts = tree::leaf_vouts(view.values[0], view.values[1]);
        [Role::Initiator, Role::Acceptor].iter().all(|&payer| {
            let i = payer.index();
            let stake = payer == self.role || view.their_sig.is_some();
            vouts[i].is_none() || self.chain.leaf_spent[i].is_some() || !stake
        })
    }

    fn mark_closed_if_settled(&mut self, fx: &mut Effects) {
        if self.leaf_confirmed().is_some() && self.phase != Phase::Closed && self.leaf_settled() {
            self.phase = Phase::Closed;
            fx.events.push(Event::Closed { kind: CloseKind::Unilateral });
        }
    }

    /// A transaction spending an HTLC output of a confirmed payment.
    fn on_htlc_spend(&mut self, tx: &Transaction, fx: &mut Effects) -> bool {
        let mut changed = false;
        for input in &tx.input {
            let Some(entry) = self.chain.htlcs.iter_mut().find(|h| h.outpoint == input.previous_output && !h.resolved)
            else {
                continue;
            };
            entry.resolved = true;
            changed = true;
            let (offerer, htlc) = (entry.offerer, entry.htlc);
            if offerer != self.role {
                continue;
            }
            match htlc.payment_hash.find_preimage_in(&input.witness) {
                Some(preimage) if entry.preimage.is_none() => {
                    entry.preimage = Some(preimage);
                    fx.events.push(Event::HtlcFulfilled { id: htlc.id, payment_hash: htlc.payment_hash, preimage });
                }
                Some(_) => {}
                // Our timeout confirmed after the peer showed the preimage in a spend that did
                // not (`ChainEvent::Seen`): reported fulfilled then, and it stays so.
                None if entry.preimage.is_some() => {}
                None => fx.events.push(Event::HtlcFailIrrevocable { id: htlc.id }),
            }
        }
        changed
    }

    fn on_unconfirmed<S: Signer + ?Sized>(&mut self, txid: Txid, signer: &S) -> Effects {
        let mut changed = false;
        if self.funding.is_some_and(|f| f.txid == txid) && self.funding_height.is_some() {
            self.funding_height = None;
            changed = true;
        }
        if let Some(pos) = self.chain.tree.iter().position(|t| t.0 == txid) {
            self.chain.tree.truncate(pos);
            self.chain.broadcast = self.chain.broadcast.min(pos);
            if pos <= self.terms.params.depth() {
                self.chain.leaf_spent = [None, None];
                self.chain.payment_sent = false;
                self.chain.refund_sent = false;
                self.chain.htlcs.clear();
            }
            // Back on the shared part of both branches (a reorg removed the pending branch's
            // changed node): follow the current branch again until a pending node confirms.
            let pending_level = self.branches().pending.map(|(_, lvl)| lvl);
            if self.chain.tree.is_empty() || pending_level.is_some_and(|lvl| self.chain.tree.len() <= lvl) {
                self.chain.on_pending = false;
            }
            if self.phase == Phase::Closed {
                self.phase = Phase::ForceClosing;
            }
            changed = true;
        }
        if self.chain.stale.is_some_and(|s| s.1 == txid) {
            self.chain.stale = None;
            changed = true;
        }
        for i in 0..2 {
            if self.chain.leaf_spent[i] == Some(txid) {
                self.chain.leaf_spent[i] = None;
                self.chain.htlcs.retain(|h| h.outpoint.txid != txid);
                if self.phase == Phase::Closed {
                    self.phase = Phase::ForceClosing;
                }
                changed = true;
            }
        }
        if let Some(h) = self.chain.htlcs.iter_mut().find(|h| h.claim == Some(txid)) {
            h.claim = None;
            h.resolved = false;
            changed = true;
        }
        if self.coop.is_some_and(|c| c.txid == txid) && self.phase == Phase::Closed {
            self.phase = Phase::CoopClosing;
            changed = true;
        }
        if !changed {
            return Effects::none();
        }
        self.finish_chain(true, Effects::none(), signer)
    }
}
