//! The payee side of a Spilman channel.

use alloc::vec::Vec;

use bitcoin::secp256k1::{PublicKey, Secp256k1, VerifyOnly};
use bitcoin::{ecdsa, Amount, OutPoint, ScriptBuf, Transaction, TxOut, Txid};

use super::msgs::{Msg, Offer, Open, Payment, RefundRequest, RefundSigned, Variant};
use super::payment::{
    ChannelLock, PaymentHtlc, PaymentState, PaymentTemplate, UpdateError, UpdateRules, PAYOUT_POLICY,
};
use super::{peer_error, CloseKind, CommandError, Effects, Event, Misbehaviour, PeerError};
use crate::core::funding::{FundingError, FundingRequest};
use crate::core::hashlock::PaymentPreimage;
use crate::core::sign::{self, KeyId, KeyIdentity, Signer, WrongSigner};
use crate::core::units::BlockHeight;
use crate::driving::{ChainEvent, ChainTip, ChannelId, RestoreCheck, RestoreError, StateUpdate, Watch};

/// The payee's terms and policy.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PayeeConfig {
    /// Refund construction.
    pub variant: Variant,
    /// Where the payee's output goes. For the close to be bumpable (CPFP through this output,
    /// see [the module docs](super#fee-bumping)) it must be a P2WPKH or P2TR script of the wallet
    /// the embedder gives the payee's [`Bumper`](crate::core::feebump::Bumper) as its
    /// [`FeeWallet`](crate::core::feebump::FeeWallet).
    pub payee_script: ScriptBuf,
    /// Height from which the payer may refund.
    pub expiry: BlockHeight,
    /// Smallest first payment accepted (guarantees a settleable, above-dust state exists).
    pub min_first_payment: Amount,
    /// Dust limit for every output.
    pub dust_limit: Amount,
    /// Fee of every payment transaction (paid by the payee).
    pub payment_fee: Amount,
    /// Stop accepting payments and close this many blocks before `expiry`.
    pub close_margin: u32,
    /// A new HTLC must expire at least this many blocks after the current tip.
    pub htlc_min_blocks: u32,
    /// Confirmations of the funding transaction required before payments after the first count.
    pub min_depth: u32,
    /// Fee of an on-chain HTLC claim.
    pub claim_fee: Amount,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum PayeePhase {
    Offered,
    RefundSigned,
    Open,
    Closing,
    Closed,
}

/// The best payment the payee holds.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(super) struct Held {
    pub number: u64,
    pub state: PaymentState,
    pub signature: ecdsa::Signature,
}

/// The payee of a Spilman channel: accepts payments and closes with the best one.
///
/// # Driving
/// [`Payee::new`] gives the [`Offer`] to send; then feed every payer message to
/// [`Payee::handle_message`] and every chain event to [`Payee::handle_chain`]. Call
/// [`Payee::close`] to settle early; the payee closes by itself at [`Payee::close_by`].
#[derive(Clone, Debug)]
pub struct Payee {
    pub(super) config: PayeeConfig,
    pub(super) payee_key: PublicKey,
    pub(super) payee_htlc_key: PublicKey,
    pub(super) phase: PayeePhase,
    pub(super) template: Option<PaymentTemplate>,
    pub(super) refund_fee: Amount,
    pub(super) funding_tx: Option<Transaction>,
    pub(super) funding_height: Option<BlockHeight>,
    pub(super) best: Option<Held>,
    /// Preimages the payee revealed, by HTLC id (dropped once folded).
    pub(super) preimages: Vec<(u64, PaymentPreimage)>,
    /// HTLC ids the payee gave up (dropped once removed).
    pub(super) failed: Vec<u64>,
    /// The smallest id a new HTLC may carry.
    pub(super) next_htlc_id: u64,
    /// The payment transaction broadcast to close, if any.
    pub(super) closing_txid: Option<Txid>,
    /// HTLC claims broadcast after close: (id, claim txid).
    pub(super) claims: Vec<(u64, Txid)>,
    pub(super) update_id: u64,
    /// What identifies the payee's keys (`None` if restored from a version-1 snapshot).
    pub(super) key_identity: Option<KeyIdentity>,
    pub(super) secp: Secp256k1<VerifyOnly>,
}

impl PartialEq for Payee {
    fn eq(&self, other: &Self) -> bool {
        self.snapshot() == other.snapshot()
    }
}

impl Payee {
    /// A payee with these terms; returns the [`Offer`] to send to the payer.
    pub fn new<S: Signer + ?Sized>(config: PayeeConfig, signer: &S) -> (Self, Effects) {
        let keys = signer.pubkeys();
        let mut payee = Payee {
            payee_key: *keys.funding.public_key(),
            payee_htlc_key: *keys.htlc_basepoint.public_key(),
            config,
            phase: PayeePhase::Offered,
            template: None,
            refund_fee: Amount::ZERO,
            funding_tx: None,
            funding_height: None,
            best: None,
            preimages: Vec::new(),
            failed: Vec::new(),
            next_htlc_id: 0,
            closing_txid: None,
            claims: Vec::new(),
            update_id: 0,
            key_identity: Some(KeyIdentity::of(signer)),
            secp: Secp256k1::verification_only(),
        };
        let mut fx = payee.persist();
        fx.send.push(Msg::Offer(payee.offer()));
        (payee, fx)
    }

    /// Checks that `signer` is the one this payee was created with: its funding and HTLC base
    /// public keys are the payee's keys in the channel. Every call that signs makes this check
    /// first and refuses a wrong signer with nothing changed.
    ///
    /// # Errors
    /// [`WrongSigner`] naming the first key that differs.
    pub fn check_signer<S: Signer + ?Sized>(&self, signer: &S) -> Result<(), WrongSigner> {
        sign::check_signer(signer, &[(KeyId::Funding, &self.payee_key), (KeyId::Htlc, &self.payee_htlc_key)])
    }

    /// The terms this payee offers.
    pub fn offer(&self) -> Offer {
        let c = &self.config;
        Offer {
            variant: c.variant,
            payee_key: self.payee_key,
            payee_htlc_key: self.payee_htlc_key,
            payee_script: c.payee_script.clone(),
            expiry: c.expiry,
            min_first_payment: c.min_first_payment,
            dust_limit: c.dust_limit,
            payment_fee: c.payment_fee,
            close_margin: c.close_margin,
            htlc_min_blocks: c.htlc_min_blocks,
        }
    }

    /// The height at which the payee stops accepting payments and closes: `expiry - close_margin`.
    pub fn close_by(&self) -> BlockHeight {
        self.config.expiry.saturating_sub(self.config.close_margin)
    }

    /// The height by which the payee's close must confirm (its fee-bump deadline, see
    /// [`core::feebump`](crate::core::feebump)): `expiry`, since the payer's refund can be mined
    /// from `expiry + 1`; or, if the payee revealed the preimage of an HTLC its best payment
    /// carries, that HTLC's expiry less half the close margin (rounded up) if sooner, leaving the
    /// other half to the claim, which must confirm by the HTLC's expiry.
    pub fn close_deadline(&self) -> BlockHeight {
        let half = self.config.close_margin.div_ceil(2);
        self.preimages
            .iter()
            .filter_map(|(id, _)| self.held_htlc(*id))
            .map(|h| h.expiry.saturating_sub(half))
            .fold(self.config.expiry, |a, b| a.min(b))
    }

    /// The channel id, once the funding outpoint is known.
    pub fn channel_id(&self) -> Option<ChannelId> {
        self.template.as_ref().map(|t| ChannelId::from_funding(&t.outpoint))
    }

    /// Total the payee holds a payer signature for (before the payment fee).
    pub fn received(&self) -> Amount {
        self.best.as_ref().map_or(Amount::ZERO, |b| b.state.to_payee)
    }

    /// The newest payment state held.
    pub fn state(&self) -> Option<&PaymentState> {
        self.best.as_ref().map(|b| &b.state)
    }

    /// The payment template, once the channel is set up.
    pub fn template(&self) -> Option<&PaymentTemplate> {
        self.template.as_ref()
    }

    /// Whether the channel output has been spent on chain.
    pub fn is_closed(&self) -> bool {
        self.phase == PayeePhase::Closed
    }

    /// The last update id handed out.
    pub fn update_id(&self) -> u64 {
        self.update_id
    }

    pub(super) fn persist(&mut self) -> Effects {
        self.update_id += 1;
        let mut fx = Effects::none();
        fx.update = Some(StateUpdate::snapshot(self.update_id, self.snapshot()));
        fx.next_deadline = self.next_deadline();
        fx
    }

    /// When to call [`Payee::handle_chain`] next: the close margin, or earlier if the payee
    /// revealed the preimage of an HTLC the payer has not folded in yet (the payee must then get
    /// its claim confirmed before the HTLC's timeout path opens: it closes `close_margin` blocks
    /// before the HTLC's expiry).
    pub fn next_deadline(&self) -> Option<BlockHeight> {
        match self.phase {
            PayeePhase::Open => {
                let revealed = self
                    .preimages
                    .iter()
                    .filter_map(|(id, _)| self.held_htlc(*id))
                    .map(|h| h.expiry.saturating_sub(self.config.close_margin))
                    .min();
                Some(revealed.map_or(self.close_by(), |r| r.min(self.close_by())))
            }
            _ => None,
        }
    }

    /// Encodes the full state (see [`Payee::restore`]).
    pub fn snapshot(&self) -> Vec<u8> {
        super::snapshot::encode_payee(self)
    }

    /// Restores a payee from [`Payee::snapshot`] bytes, checking it against `check`.
    ///
    /// # Errors
    /// [`RestoreError`] if the bytes are invalid, of another channel, or stale.
    pub fn restore(bytes: &[u8], check: RestoreCheck) -> Result<Self, RestoreError> {
        let payee = super::snapshot::decode_payee(bytes)?;
        check.check(payee.channel_id(), payee.update_id)?;
        Ok(payee)
    }

    /// [`Payee::restore`], refusing a `signer` that does not hold the payee's keys (the one to
    /// recreate is named by [`Payee::key_identity`] of the restored payee).
    ///
    /// # Errors
    /// As [`Payee::restore`]; [`RestoreError::WrongSigner`] for another signer.
    pub fn restore_with_signer<S: Signer + ?Sized>(
        bytes: &[u8],
        check: RestoreCheck,
        signer: &S,
    ) -> Result<Self, RestoreError> {
        let payee = Self::restore(bytes, check)?;
        KeyIdentity::check_restored(payee.key_identity, payee.check_signer(signer), signer)?;
        Ok(payee)
    }

    /// What identifies the payee's keys, recorded in its snapshots: the key index its signer
    /// told ([`Signer::key_index`]) and the fingerprint of its public keys. `None` for a payee
    /// restored from a version-1 snapshot.
    pub fn key_identity(&self) -> Option<KeyIdentity> {
        self.key_identity
    }

    /// Handles a message from the payer. On error nothing changed.
    ///
    /// # Errors
    /// [`PeerError`] describing the misbehaviour and what to do about it;
    /// [`Misbehaviour::WrongSigner`] (not the peer's fault,
    /// [`Action::Ignore`](crate::driving::Action::Ignore)) if `signer` is not the channel's: feed
    /// the message again with the right one.
    pub fn handle_message<S: Signer + ?Sized>(
        &mut self,
        msg: Msg,
        signer: &S,
        tip: ChainTip,
    ) -> Result<Effects, PeerError> {
        self.check_signer(signer)?;
        match msg {
            Msg::RefundRequest(r) => self.on_refund_request(r, signer),
            Msg::Open(o) => self.on_open(o, tip),
            Msg::Payment(p) => self.on_payment(p, tip),
            Msg::CloseRequest => match self.phase {
                PayeePhase::Open => self.close(signer).map_err(|_| peer_error(Misbehaviour::UnexpectedMessage)),
                _ => Err(peer_error(Misbehaviour::UnexpectedMessage)),
            },
            Msg::Reestablish(r) => self.on_reestablish(r),
            _ => Err(peer_error(Misbehaviour::UnexpectedMessage)),
        }
    }

    fn template_for(
        &self,
        payer_key: PublicKey,
        payer_htlc_key: PublicKey,
        payer_script: ScriptBuf,
        outpoint: OutPoint,
        capacity: Amount,
    ) -> PaymentTemplate {
        let lock = match self.config.variant {
            Variant::Cltv => ChannelLock::Cltv(self.config.expiry),
            Variant::PresignedRefund => ChannelLock::Multisig,
        };
        PaymentTemplate {
            outpoint,
            capacity,
            lock,
            payer_key,
            payee_key: self.payee_key,
            payer_htlc_key,
            payee_htlc_key: self.payee_htlc_key,
            payer_script,
            payee_script: self.config.payee_script.clone(),
            fee: self.config.payment_fee,
            dust_limit: self.config.dust_limit,
        }
    }

    /// The channel's capacity is at most 21,000,000 BTC, for both variants: above it, no
    /// transaction spending the funding output could ever confirm.
    fn capacity_acceptable(capacity: Amount) -> bool {
        capacity <= Amount::MAX_MONEY
    }

    fn on_refund_request<S: Signer + ?Sized>(&mut self, r: RefundRequest, signer: &S) -> Result<Effects, PeerError> {
        // Once signed, only the same request again (a payer that did not get our signature
        // before a disconnection or a crash asks again): it gets the same signature.
        let again = self.phase == PayeePhase::RefundSigned
            && r.refund_fee == self.refund_fee
            && self.template.as_ref().is_some_and(|t| {
                *t == self.template_for(
                    r.payer_key,
                    r.payer_htlc_key,
                    r.payer_script.clone(),
                    r.funding_outpoint,
                    r.capacity,
                )
            });
        if self.phase != PayeePhase::Offered && !again {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        }
        if self.config.variant != Variant::PresignedRefund {
            return Err(peer_error(Misbehaviour::WrongVariant));
        }
        if !PAYOUT_POLICY.allows(&r.payer_script) {
            return Err(peer_error(Misbehaviour::NonStandardScript));
        }
        if r.capacity < self.config.min_first_payment || !Self::capacity_acceptable(r.capacity) {
            return Err(peer_error(Misbehaviour::BadTerms));
        }
        let template = self.template_for(r.payer_key, r.payer_htlc_key, r.payer_script, r.funding_outpoint, r.capacity);
        let refund = template
            .refund_tx(r.refund_fee, self.config.expiry)
            .filter(|t| t.output.iter().all(|o| o.value >= self.config.dust_limit))
            .ok_or(peer_error(Misbehaviour::BadTerms))?;
        let signature = template.sign_refund(signer, &refund).map_err(|e| peer_error(Misbehaviour::Signer(e)))?;
        self.template = Some(template);
        self.refund_fee = r.refund_fee;
        self.phase = PayeePhase::RefundSigned;
        let mut fx = self.persist();
        fx.send.push(Msg::RefundSigned(RefundSigned { signature }));
        Ok(fx)
    }

    fn on_open(&mut self, o: Open, tip: ChainTip) -> Result<Effects, PeerError> {
        let funding_outpoint = OutPoint { txid: o.funding_tx.compute_txid(), vout: o.funding_vout };
        let funding_out =
            o.funding_tx.output.get(o.funding_vout as usize).ok_or(peer_error(Misbehaviour::WrongFunding))?;
        let template = match (self.phase, &self.template) {
            (PayeePhase::Offered, _) if self.config.variant == Variant::Cltv => self.template_for(
                o.payer_key,
                o.payer_htlc_key,
                o.payer_script.clone(),
                funding_outpoint,
                funding_out.value,
            ),
            (PayeePhase::RefundSigned, Some(t)) => {
                if t.payer_key != o.payer_key
                    || t.payer_htlc_key != o.payer_htlc_key
                    || t.payer_script != o.payer_script
                    || t.outpoint != funding_outpoint
                {
                    return Err(peer_error(Misbehaviour::WrongFunding));
                }
                t.clone()
            }
            (PayeePhase::Offered, _) => return Err(peer_error(Misbehaviour::WrongVariant)),
            _ => return Err(peer_error(Misbehaviour::UnexpectedMessage)),
        };
        if !PAYOUT_POLICY.allows(&template.payer_script) {
            return Err(peer_error(Misbehaviour::NonStandardScript));
        }
        if !Self::capacity_acceptable(template.capacity) {
            return Err(peer_error(Misbehaviour::BadTerms));
        }
        if self.config.variant == Variant::PresignedRefund && o.refund_fee != self.refund_fee {
            return Err(peer_error(Misbehaviour::WrongFunding));
        }
        // The payer's funding must follow the one funding rule (`core::funding`): the channel
        // output exactly once, at the index the payer names, from segwit inputs only (the
        // payments we accept commit to its txid).
        let expected = TxOut { value: template.capacity, script_pubkey: template.channel_script().to_p2wsh() };
        match FundingRequest::new(expected, self.temporary_channel_id()).check(&o.funding_tx) {
            Ok(outpoint) if outpoint == funding_outpoint => {}
            Err(FundingError::NonSegwitInput { .. }) => return Err(peer_error(Misbehaviour::MalleableFunding)),
            _ => return Err(peer_error(Misbehaviour::WrongFunding)),
        }
        if tip.height >= self.close_by() {
            return Err(peer_error(Misbehaviour::NotAcceptingPayments));
        }
        if template.refund_tx(o.refund_fee, self.config.expiry).is_none() {
            return Err(peer_error(Misbehaviour::BadTerms));
        }
        let first = o.first_payment;
        if first.to_payee < self.config.min_first_payment {
            return Err(peer_error(Misbehaviour::FirstPaymentTooSmall));
        }
        let fresh = Held { number: 0, state: PaymentState::default(), signature: first.signature };
        let (held, new_htlcs) = self.check_payment(&template, &fresh, &[], &[], 0, first, tip)?;

        self.template = Some(template);
        self.refund_fee = o.refund_fee;
        self.funding_tx = Some(o.funding_tx.clone());
        self.phase = PayeePhase::Open;
        Ok(self.accept(held, new_htlcs, Some(o.funding_tx), funding_outpoint))
    }

    /// Accepts a checked payment: the one place the held state changes.
    fn accept(
        &mut self,
        held: Held,
        new_htlcs: Vec<PaymentHtlc>,
        funding_tx: Option<Transaction>,
        funding_outpoint: OutPoint,
    ) -> Effects {
        let number = held.number;
        let to_payee = held.state.to_payee;
        // `check_update` refuses an id without a successor: every held id has one.
        if let Some(next) = held.state.htlcs.iter().map(|h| h.id).max().and_then(|max| max.checked_add(1)) {
            self.next_htlc_id = self.next_htlc_id.max(next);
        }
        let old_ids: Vec<u64> = self.best.iter().flat_map(|b| b.state.htlcs.iter().map(|h| h.id)).collect();
        let removed: Vec<u64> =
            old_ids.into_iter().filter(|id| !held.state.htlcs.iter().any(|h| h.id == *id)).collect();
        self.preimages.retain(|(id, _)| held.state.htlcs.iter().any(|h| h.id == *id));
        self.failed.retain(|id| held.state.htlcs.iter().any(|h| h.id == *id));
        self.best = Some(held);
        let mut fx = self.persist();
        fx.send.push(Msg::Ack { number });
        if let Some(tx) = funding_tx {
            fx.watch.push(Watch::Tx(tx.compute_txid()));
            fx.watch.push(Watch::Spend(funding_outpoint));
            fx.broadcast.push(tx);
        }
        fx.events.push(Event::PaymentReceived { number, to_payee });
        fx.events.extend(new_htlcs.into_iter().map(Event::HtlcOffered));
        fx.events.extend(removed.into_iter().map(|id| Event::HtlcRemoved { id }));
        fx
    }

    fn on_payment(&mut self, p: Payment, tip: ChainTip) -> Result<Effects, PeerError> {
        if self.phase != PayeePhase::Open {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        }
        let (Some(template), Some(best)) = (&self.template, &self.best) else {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        };
        if tip.height >= self.close_by() {
            return Err(peer_error(Misbehaviour::NotAcceptingPayments));
        }
        let deep_enough = self.config.min_depth == 0
            || self.funding_height.is_some_and(|h| tip.height.0.saturating_sub(h.0) + 1 >= self.config.min_depth);
        if !deep_enough {
            return Err(peer_error(Misbehaviour::NotAcceptingPayments));
        }
        let (held, new_htlcs) =
            self.check_payment(template, best, &self.preimages, &self.failed, self.next_htlc_id, p, tip)?;
        let outpoint = template.outpoint;
        Ok(self.accept(held, new_htlcs, None, outpoint))
    }

    /// The checks (docs/spilman.md §4) of a payment against the best one held
    /// ([`PaymentTemplate::check_update`], shared with the duplex leaf channels). Pure.
    #[allow(clippy::too_many_arguments)]
    fn check_payment(
        &self,
        template: &PaymentTemplate,
        best: &Held,
        preimages: &[(u64, PaymentPreimage)],
        failed: &[u64],
        next_htlc_id: u64,
        p: Payment,
        tip: ChainTip,
    ) -> Result<(Held, Vec<PaymentHtlc>), PeerError> {
        let state = PaymentState { to_payee: p.to_payee, htlcs: p.htlcs };
        let rules = UpdateRules {
            is_fulfilled: &|id| preimages.iter().any(|(i, _)| *i == id),
            is_failed: &|id| failed.contains(&id),
            next_htlc_id,
            tip: tip.height,
            earliest_expiry: tip.height.checked_add(self.config.htlc_min_blocks),
            latest_expiry: self.close_by(),
        };
        let new_htlcs = template
            .check_update(&self.secp, (best.number, &best.state), (p.number, &state, &p.signature), &rules)
            .map_err(|e| {
                peer_error(match e {
                    UpdateError::Replay => Misbehaviour::Replay,
                    UpdateError::AmountDecreased => Misbehaviour::AmountDecreased,
                    UpdateError::HtlcIdReused => Misbehaviour::HtlcIdReused,
                    UpdateError::HtlcExpiry => Misbehaviour::HtlcExpiry,
                    UpdateError::NoProgress => Misbehaviour::NoProgress,
                    UpdateError::Payment(e) => Misbehaviour::Payment(e),
                    UpdateError::Signature(e) => Misbehaviour::Signature(e),
                    UpdateError::HtlcRemovedUnfairly => Misbehaviour::HtlcRemovedUnfairly,
                    UpdateError::Exhausted => Misbehaviour::Exhausted,
                })
            })?;
        Ok((Held { number: p.number, state, signature: p.signature }, new_htlcs))
    }

    /// Reveals the preimage of an HTLC the payee holds (it can already claim it on chain); the
    /// payer is expected to fold the HTLC into the payee's output with its next payment. After
    /// close, claims the HTLC on chain instead.
    ///
    /// # Errors
    /// [`CommandError`] if the HTLC is unknown or the preimage wrong;
    /// [`CommandError::WrongPhase`] if the channel closed by a transaction that does not carry
    /// the HTLC (the payer's refund): there is nothing left to claim;
    /// [`CommandError::WrongSigner`] if `signer` is not the channel's ([`Payee::check_signer`]).
    pub fn fulfill_htlc<S: Signer + ?Sized>(
        &mut self,
        id: u64,
        preimage: PaymentPreimage,
        signer: &S,
    ) -> Result<Effects, CommandError> {
        self.check_signer(signer)?;
        let htlc = self.held_htlc(id).ok_or(CommandError::UnknownHtlc)?;
        if !htlc.payment_hash.is_unlocked_by(&preimage) {
            return Err(CommandError::WrongPreimage);
        }
        if self.preimages.iter().any(|(i, _)| *i == id) {
            return Ok(Effects::none());
        }
        let claim = match (self.phase, self.closing_txid) {
            (PayeePhase::Closed, Some(txid)) => {
                // Only our own payment carries the HTLC output; after a refund there is nothing.
                if self.closing_tx(signer).ok().map(|c| c.compute_txid()) != Some(txid) {
                    return Err(CommandError::WrongPhase);
                }
                Some(self.claim_tx(txid, &htlc, &preimage, signer)?)
            }
            _ => None,
        };
        self.preimages.push((id, preimage));
        self.failed.retain(|f| *f != id);
        if let Some((_, claim, _)) = &claim {
            self.claims.push((id, claim.compute_txid()));
        }
        let mut fx = self.persist();
        fx.next_deadline = self.next_deadline();
        match claim {
            Some((_, tx, bump)) => {
                fx.events.push(Event::HtlcClaimBroadcast { id, txid: tx.compute_txid() });
                fx.broadcast.push(tx);
                fx.bumps.extend(bump);
            }
            None => fx.send.push(Msg::Fulfill { id, preimage }),
        }
        Ok(fx)
    }

    /// Gives an HTLC up: the payer may then remove it from its next payment.
    ///
    /// # Errors
    /// [`CommandError::UnknownHtlc`] if the payee holds no such HTLC.
    pub fn fail_htlc(&mut self, id: u64) -> Result<Effects, CommandError> {
        if self.held_htlc(id).is_none() || self.preimages.iter().any(|(i, _)| *i == id) {
            return Err(CommandError::UnknownHtlc);
        }
        if self.failed.contains(&id) {
            return Ok(Effects::none());
        }
        self.failed.push(id);
        let mut fx = self.persist();
        fx.send.push(Msg::Fail { id });
        Ok(fx)
    }

    fn held_htlc(&self, id: u64) -> Option<PaymentHtlc> {
        self.best.as_ref()?.state.htlcs.iter().find(|h| h.id == id).copied()
    }

    /// The fully signed best payment transaction (what [`Payee::close`] broadcasts).
    ///
    /// # Errors
    /// [`CommandError`] if there is no payment yet or the signer fails;
    /// [`CommandError::WrongSigner`] if `signer` is not the channel's ([`Payee::check_signer`]).
    pub fn closing_tx<S: Signer + ?Sized>(&self, signer: &S) -> Result<Transaction, CommandError> {
        self.check_signer(signer)?;
        let (Some(t), Some(best)) = (&self.template, &self.best) else {
            return Err(CommandError::WrongPhase);
        };
        let built = t.build(&best.state).map_err(CommandError::Payment)?;
        Ok(t.complete(signer, &built, &best.signature)?)
    }

    /// Closes the channel now: completes and broadcasts the best payment transaction, with its
    /// fee-bump request in [`Effects::bumps`](crate::driving::Effects::bumps) (deadline
    /// [`Payee::close_deadline`]; none if `payee_script` cannot pay for a child).
    ///
    /// # Errors
    /// [`CommandError`] if the channel is not open or the signer fails;
    /// [`CommandError::WrongSigner`] if `signer` is not the channel's ([`Payee::check_signer`]).
    pub fn close<S: Signer + ?Sized>(&mut self, signer: &S) -> Result<Effects, CommandError> {
        self.check_signer(signer)?;
        if !matches!(self.phase, PayeePhase::Open | PayeePhase::Closing) {
            return Err(CommandError::WrongPhase);
        }
        let tx = self.closing_tx(signer)?;
        let txid = tx.compute_txid();
        let bump = self.close_bump(&tx);
        self.phase = PayeePhase::Closing;
        self.closing_txid = Some(txid);
        let mut fx = self.persist();
        fx.send.push(Msg::Closed { txid });
        fx.broadcast.push(tx);
        fx.bumps.extend(bump);
        fx.watch.push(Watch::Tx(txid));
        fx.events.push(Event::CloseBroadcast { txid });
        Ok(fx)
    }

    /// The fee-bump request of the close `tx` (the best payment): CPFP through the payee's
    /// output, if its script is one the wallet can sign in a child (see the `fees` module).
    fn close_bump(&self, tx: &Transaction) -> Option<crate::core::feebump::BumpRequest> {
        let (t, best) = (self.template.as_ref()?, self.best.as_ref()?);
        let revealed = self
            .preimages
            .iter()
            .filter_map(|(id, _)| self.held_htlc(*id))
            .try_fold(Amount::ZERO, |a, h| a.checked_add(h.amount))?;
        super::fees::close_request(t, tx, best.state.to_payee, self.close_deadline(), revealed)
    }

    /// The claim of `htlc` with `preimage` from the payment `payment_txid`, and its fee-bump
    /// request.
    fn claim_tx<S: Signer + ?Sized>(
        &self,
        payment_txid: Txid,
        htlc: &PaymentHtlc,
        preimage: &PaymentPreimage,
        signer: &S,
    ) -> Result<(u64, Transaction, Option<crate::core::feebump::BumpRequest>), CommandError> {
        let (Some(t), Some(best)) = (&self.template, &self.best) else {
            return Err(CommandError::WrongPhase);
        };
        let built = t.build(&best.state).map_err(CommandError::Payment)?;
        let pos = best.state.htlcs.iter().position(|h| h.id == htlc.id).ok_or(CommandError::UnknownHtlc)?;
        let (vout, _) = built.htlc_outputs.get(pos).ok_or(CommandError::UnknownHtlc)?;
        let claim = t
            .htlc_claim_tx(payment_txid, *vout, htlc, true, t.payee_script.clone(), self.config.claim_fee)
            .ok_or(CommandError::InvalidAmount)?;
        let claim = t.complete_htlc_claim(signer, claim, htlc, Some(preimage))?;
        let outpoint = OutPoint { txid: payment_txid, vout: *vout };
        let bump = super::fees::claim_request(t, &claim, outpoint, htlc, Some(preimage), t.payee_script.clone());
        Ok((htlc.id, claim, bump))
    }

    /// Handles a chain event. Idempotent; unrelated or garbage transactions change nothing.
    ///
    /// With a signer that is not the channel's the event is refused: nothing changes, and the
    /// effects carry only [`Event::WrongSigner`] (deliver the event again with the right signer).
    pub fn handle_chain<S: Signer + ?Sized>(&mut self, event: ChainEvent<'_>, signer: &S) -> Effects {
        if let Err(e) = self.check_signer(signer) {
            return Effects::only_event(Event::WrongSigner(e), self.next_deadline());
        }
        match event {
            ChainEvent::Tip(tip) => {
                let due = self.next_deadline().is_some_and(|d| tip.height >= d);
                if self.phase == PayeePhase::Open && due && self.best.is_some() {
                    return self.close(signer).unwrap_or_default();
                }
                Effects::none()
            }
            ChainEvent::Confirmed { tx, height } => self.on_confirmed(tx, height, signer),
            ChainEvent::Unconfirmed(txid) => self.on_unconfirmed(txid, signer),
            // The payee offers no HTLC: an unconfirmed spend has no preimage to teach it.
            ChainEvent::Seen { .. } => Effects::none(),
        }
    }

    fn on_confirmed<S: Signer + ?Sized>(&mut self, tx: &Transaction, height: BlockHeight, signer: &S) -> Effects {
        let Some(t) = &self.template else { return Effects::none() };
        let txid = tx.compute_txid();
        if txid == t.outpoint.txid {
            if self.funding_height == Some(height) {
                return Effects::none();
            }
            self.funding_height = Some(height);
            let mut fx = self.persist();
            fx.events.push(Event::FundingConfirmed { height });
            return fx;
        }
        let spends_channel = tx.input.iter().any(|i| i.previous_output == t.outpoint);
        if !spends_channel || self.phase == PayeePhase::Closed {
            return Effects::none();
        }
        let ours = self.closing_tx(signer).ok().map(|c| c.compute_txid()) == Some(txid);
        self.phase = PayeePhase::Closed;
        self.closing_txid = Some(txid);
        let kind = if ours { CloseKind::Payment } else { CloseKind::Refund };
        // Claim every HTLC we know the preimage of.
        let mut claims = Vec::new();
        if ours {
            for (id, preimage) in self.preimages.clone() {
                if let Some(h) = self.held_htlc(id) {
                    if let Ok(claim) = self.claim_tx(txid, &h, &preimage, signer) {
                        claims.push(claim);
                    }
                }
            }
        }
        self.claims.extend(claims.iter().map(|(id, tx, _)| (*id, tx.compute_txid())));
        let mut fx = self.persist();
        fx.events.push(Event::Closed { txid, kind });
        for (id, claim, bump) in claims {
            fx.events.push(Event::HtlcClaimBroadcast { id, txid: claim.compute_txid() });
            fx.broadcast.push(claim);
            fx.bumps.extend(bump);
        }
        fx
    }

    fn on_unconfirmed<S: Signer + ?Sized>(&mut self, txid: Txid, signer: &S) -> Effects {
        if self.template.as_ref().is_some_and(|t| t.outpoint.txid == txid) && self.funding_height.is_some() {
            self.funding_height = None;
            return self.persist();
        }
        if self.phase == PayeePhase::Closed && self.closing_txid == Some(txid) {
            // Our close left the chain: put the channel back and broadcast again.
            self.phase = PayeePhase::Open;
            self.claims.clear();
            return self.close(signer).unwrap_or_default();
        }
        Effects::none()
    }
}
