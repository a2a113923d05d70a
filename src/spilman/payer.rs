//! The payer side of a Spilman channel.

use alloc::vec::Vec;

use bitcoin::secp256k1::{PublicKey, Secp256k1, VerifyOnly};
use bitcoin::{ecdsa, Amount, OutPoint, ScriptBuf, Transaction, TxOut, Txid};

use super::msgs::{Msg, Offer, Open, Payment, RefundRequest, Variant};
use super::payment::{ChannelLock, PaymentHtlc, PaymentState, PaymentTemplate, PAYOUT_POLICY};
use super::{peer_error, CloseKind, CommandError, Effects, Event, Misbehaviour, PeerError};
use crate::core::funding::FundingRequest;
use crate::core::hashlock::{PaymentHash, PaymentPreimage};
use crate::core::sign::{self, KeyId, KeyIdentity, Signer, WrongSigner};
use crate::core::units::BlockHeight;
use crate::driving::{ChainEvent, ChainTip, ChannelId, RestoreCheck, RestoreError, StateUpdate, Watch};

/// The payer's own choices.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PayerConfig {
    /// Value of the channel output.
    pub capacity: Amount,
    /// Where change and the refund go. With [`Variant::PresignedRefund`] the refund is bumped
    /// through this output (CPFP, see [the module docs](super#fee-bumping)): it must then be a
    /// P2WPKH or P2TR script of the wallet the embedder gives the payer's
    /// [`Bumper`](crate::core::feebump::Bumper) as its
    /// [`FeeWallet`](crate::core::feebump::FeeWallet).
    pub payer_script: ScriptBuf,
    /// Fee of the refund transaction.
    pub refund_fee: Amount,
    /// Fee of an on-chain HTLC timeout claim.
    pub claim_fee: Amount,
    /// The first payment, sent with the funding (at least the payee's minimum).
    pub first_payment: Amount,
    /// Refuse offers whose expiry is more than this many blocks away.
    pub max_lifetime: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum PayerPhase {
    AwaitingFunding,
    AwaitingRefundSignature,
    Open,
    Closed,
}

/// What the payer knows about one HTLC it offered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum HtlcStatus {
    /// In the newest payment.
    Live,
    /// Preimage known (folded into the payee's output, or to be).
    Fulfilled(PaymentPreimage),
    /// Removed without preimage; `dominated_at` is what the payee must be paid for the removal to
    /// be final: the highest `to_payee` of any payment that carried the HTLC, plus its amount.
    Removed { dominated_at: Amount },
    /// Removed and final.
    FailedFinal,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct PayerHtlc {
    pub htlc: PaymentHtlc,
    pub status: HtlcStatus,
    /// The most any payment carrying this HTLC could give the payee (its `to_payee` plus all its
    /// HTLCs, were the payee to learn every preimage): the bound a later payment must reach for
    /// this HTLC's failure to be final.
    pub max_exposure: Amount,
}

/// An HTLC output of the payment transaction that closed the channel.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct OnChainHtlc {
    pub outpoint: OutPoint,
    pub id: u64,
    /// The txid of our timeout claim, once broadcast.
    pub claim: Option<Txid>,
    /// Spent by someone (the payee with the preimage, or our claim confirmed).
    pub resolved: bool,
}

/// The payer of a Spilman channel.
///
/// # Driving
/// [`Payer::open`] checks the payee's [`Offer`] and asks the wallet for the funding output
/// ([`Effects::funding`](crate::driving::Effects::funding)); [`Payer::fund`] takes the signed
/// funding transaction (the crate's one funding flow, [`crate::core::funding`]). Then [`Payer::pay`], [`Payer::add_htlc`],
/// [`Payer::timeout_htlc`] make payments; [`Payer::handle_message`] and [`Payer::handle_chain`]
/// take the payee's messages and chain events. After expiry the payer refunds by itself.
#[derive(Clone, Debug)]
pub struct Payer {
    pub(super) offer: Offer,
    pub(super) config: PayerConfig,
    pub(super) payer_key: PublicKey,
    pub(super) payer_htlc_key: PublicKey,
    pub(super) phase: PayerPhase,
    pub(super) template: Option<PaymentTemplate>,
    pub(super) funding_tx: Option<Transaction>,
    pub(super) refund_payee_sig: Option<ecdsa::Signature>,
    /// Number and state of the newest payment signed.
    pub(super) number: u64,
    pub(super) state: PaymentState,
    pub(super) acked: u64,
    pub(super) htlcs: Vec<PayerHtlc>,
    pub(super) next_htlc_id: u64,
    pub(super) tip: BlockHeight,
    pub(super) closing_txid: Option<Txid>,
    pub(super) onchain: Vec<OnChainHtlc>,
    pub(super) update_id: u64,
    /// A [`Reestablish`](super::Reestablish) proved our data older than what we signed.
    pub(super) lost_state: bool,
    /// What identifies the payer's keys (`None` if restored from a version-1 snapshot).
    pub(super) key_identity: Option<KeyIdentity>,
    pub(super) secp: Secp256k1<VerifyOnly>,
}

impl PartialEq for Payer {
    fn eq(&self, other: &Self) -> bool {
        self.snapshot() == other.snapshot()
    }
}

impl Payer {
    /// Checks the payee's offer against the payer's own choices: [`Payer::open`] without its
    /// [`Effects`] (kept for callers that ask [`Payer::funding_output`] themselves; nothing is
    /// to be persisted or sent before [`Payer::fund`], whose effects carry the payer's first
    /// snapshot).
    ///
    /// # Errors
    /// [`CommandError::NonStandardScript`] if the offer's `payee_script` or our `payer_script` is
    /// not a standard payout script ([`PAYOUT_POLICY`](super::payment::PAYOUT_POLICY)): no node
    /// would relay a payment or refund paying it. [`CommandError::BadTerms`] if the offer is
    /// otherwise unusable: expiry in the past or too far, first payment below the payee's minimum
    /// or above capacity, dust or fee too large.
    pub fn new<S: Signer + ?Sized>(
        offer: Offer,
        config: PayerConfig,
        signer: &S,
        tip: ChainTip,
    ) -> Result<Self, CommandError> {
        let margin_end = tip.height.checked_add(offer.close_margin).and_then(|h| h.checked_add(offer.htlc_min_blocks));
        let ok = margin_end.is_some_and(|m| m < offer.expiry)
            && offer.expiry.to_locktime().is_some()
            && tip.height.checked_add(config.max_lifetime).is_some_and(|m| offer.expiry <= m)
            && config.first_payment >= offer.min_first_payment
            && config.capacity <= Amount::MAX_MONEY
            && config.first_payment <= config.capacity
            && offer.payment_fee.checked_add(offer.dust_limit).is_some_and(|m| m <= config.first_payment)
            && config.refund_fee.checked_add(offer.dust_limit).is_some_and(|m| m <= config.capacity);
        if !PAYOUT_POLICY.allows(&offer.payee_script) || !PAYOUT_POLICY.allows(&config.payer_script) {
            return Err(CommandError::NonStandardScript);
        }
        if !ok {
            return Err(CommandError::BadTerms);
        }
        let keys = signer.pubkeys();
        Ok(Payer {
            offer,
            config,
            payer_key: *keys.funding.public_key(),
            payer_htlc_key: *keys.htlc_basepoint.public_key(),
            phase: PayerPhase::AwaitingFunding,
            template: None,
            funding_tx: None,
            refund_payee_sig: None,
            number: 0,
            state: PaymentState::default(),
            acked: 0,
            htlcs: Vec::new(),
            next_htlc_id: 0,
            tip: tip.height,
            closing_txid: None,
            onchain: Vec::new(),
            update_id: 0,
            lost_state: false,
            key_identity: Some(KeyIdentity::of(signer)),
            secp: Secp256k1::verification_only(),
        })
    }

    /// Opens the channel as payer: checks the payee's offer against the payer's own choices, as
    /// every layer's `open` does, and returns the payer with its first [`Effects`]: its first
    /// snapshot and the [`FundingRequest`] (in [`Effects::funding`](crate::driving::Effects::funding))
    /// for the wallet. Answer it with [`Payer::fund`] (the crate's one funding flow,
    /// [`crate::core::funding`]).
    ///
    /// # Errors
    /// As [`Payer::new`].
    pub fn open<S: Signer + ?Sized>(
        offer: Offer,
        config: PayerConfig,
        signer: &S,
        tip: ChainTip,
    ) -> Result<(Self, Effects), CommandError> {
        let mut payer = Self::new(offer, config, signer, tip)?;
        let mut fx = payer.persist();
        fx.funding = payer.funding_request();
        Ok((payer, fx))
    }

    /// What the wallet must fund, while the payer waits for its funding transaction (`None`
    /// once [`Payer::fund`] took one).
    pub fn funding_request(&self) -> Option<FundingRequest> {
        (self.phase == PayerPhase::AwaitingFunding)
            .then(|| FundingRequest::new(self.funding_output(), self.temporary_channel_id()))
    }

    fn lock(&self) -> ChannelLock {
        match self.offer.variant {
            Variant::Cltv => ChannelLock::Cltv(self.offer.expiry),
            Variant::PresignedRefund => ChannelLock::Multisig,
        }
    }

    fn template_at(&self, outpoint: OutPoint) -> PaymentTemplate {
        PaymentTemplate {
            outpoint,
            capacity: self.config.capacity,
            lock: self.lock(),
            payer_key: self.payer_key,
            payee_key: self.offer.payee_key,
            payer_htlc_key: self.payer_htlc_key,
            payee_htlc_key: self.offer.payee_htlc_key,
            payer_script: self.config.payer_script.clone(),
            payee_script: self.offer.payee_script.clone(),
            fee: self.offer.payment_fee,
            dust_limit: self.offer.dust_limit,
        }
    }

    /// The output the wallet must create: P2WSH of the channel script, `capacity` sats.
    pub fn funding_output(&self) -> TxOut {
        let t = self.template_at(OutPoint::null());
        TxOut { value: self.config.capacity, script_pubkey: t.channel_script().to_p2wsh() }
    }

    /// The channel id, once funded.
    pub fn channel_id(&self) -> Option<ChannelId> {
        self.template.as_ref().map(|t| ChannelId::from_funding(&t.outpoint))
    }

    /// The payment template, once funded.
    pub fn template(&self) -> Option<&PaymentTemplate> {
        self.template.as_ref()
    }

    /// The newest payment state signed.
    pub fn state(&self) -> &PaymentState {
        &self.state
    }

    /// The number of the newest payment signed.
    pub fn payment_number(&self) -> u64 {
        self.number
    }

    /// The newest payment number the payee acknowledged.
    pub fn acknowledged(&self) -> u64 {
        self.acked
    }

    /// What the payer can still spend (change of the newest payment).
    pub fn available(&self) -> Amount {
        self.template.as_ref().and_then(|t| t.check(&self.state).ok()).unwrap_or(Amount::ZERO)
    }

    /// Whether the channel output was spent on chain.
    pub fn is_closed(&self) -> bool {
        self.phase == PayerPhase::Closed
    }

    /// The height from which the refund is valid (its `nLockTime`).
    pub fn refund_height(&self) -> BlockHeight {
        self.offer.expiry
    }

    /// The last update id handed out.
    pub fn update_id(&self) -> u64 {
        self.update_id
    }

    /// Whether the failure of HTLC `id` is final: the payee can no longer claim it (dominated by a
    /// later payment, or the channel has ended without it). `None` if the HTLC is unknown or not
    /// failed.
    pub fn is_fail_irrevocable(&self, id: u64) -> Option<bool> {
        match self.htlcs.iter().find(|h| h.htlc.id == id)?.status {
            HtlcStatus::FailedFinal => Some(true),
            HtlcStatus::Removed { .. } => Some(false),
            _ => None,
        }
    }

    /// Checks that `signer` is the one this payer was created with: its funding and HTLC base
    /// public keys are the payer's keys in the channel. Every call that signs makes this check
    /// first and refuses a wrong signer with nothing changed.
    ///
    /// # Errors
    /// [`WrongSigner`] naming the first key that differs.
    pub fn check_signer<S: Signer + ?Sized>(&self, signer: &S) -> Result<(), WrongSigner> {
        sign::check_signer(signer, &[(KeyId::Funding, &self.payer_key), (KeyId::Htlc, &self.payer_htlc_key)])
    }

    /// Encodes the full state (see [`Payer::restore`]).
    pub fn snapshot(&self) -> Vec<u8> {
        super::snapshot::encode_payer(self)
    }

    /// Restores a payer from [`Payer::snapshot`] bytes.
    ///
    /// # Errors
    /// [`RestoreError`] if the bytes are invalid, of another channel, or stale.
    pub fn restore(bytes: &[u8], check: RestoreCheck) -> Result<Self, RestoreError> {
        let payer = super::snapshot::decode_payer(bytes)?;
        check.check(payer.channel_id(), payer.update_id)?;
        Ok(payer)
    }

    /// [`Payer::restore`], refusing a `signer` that does not hold the payer's keys (the one to
    /// recreate is named by [`Payer::key_identity`] of the restored payer).
    ///
    /// # Errors
    /// As [`Payer::restore`]; [`RestoreError::WrongSigner`] for another signer.
    pub fn restore_with_signer<S: Signer + ?Sized>(
        bytes: &[u8],
        check: RestoreCheck,
        signer: &S,
    ) -> Result<Self, RestoreError> {
        let payer = Self::restore(bytes, check)?;
        KeyIdentity::check_restored(payer.key_identity, payer.check_signer(signer), signer)?;
        Ok(payer)
    }

    /// What identifies the payer's keys, recorded in its snapshots: the key index its signer
    /// told ([`Signer::key_index`]) and the fingerprint of its public keys. `None` for a payer
    /// restored from a version-1 snapshot.
    pub fn key_identity(&self) -> Option<KeyIdentity> {
        self.key_identity
    }

    pub(super) fn persist(&mut self) -> Effects {
        self.update_id += 1;
        let mut fx = Effects::none();
        fx.update = Some(StateUpdate::snapshot(self.update_id, self.snapshot()));
        fx.next_deadline = self.next_deadline();
        fx
    }

    /// When to call [`Payer::handle_chain`] next: the refund height while open, HTLC expiries
    /// while claims are pending on chain.
    pub fn next_deadline(&self) -> Option<BlockHeight> {
        match self.phase {
            PayerPhase::Open => Some(self.offer.expiry),
            PayerPhase::Closed => self
                .onchain
                .iter()
                .filter(|o| !o.resolved && o.claim.is_none())
                .filter_map(|o| self.htlcs.iter().find(|h| h.htlc.id == o.id).map(|h| h.htlc.expiry))
                .min(),
            _ => None,
        }
    }

    /// Takes the wallet's **signed** funding transaction ([`crate::core::funding`]: the same call
    /// in every layer). With the CLTV variant the channel opens at once: the effects send `Open`
    /// (which carries the transaction, so that the payee can broadcast it too) and broadcast the
    /// funding. With the pre-signed variant the payer first asks for the refund signature and
    /// broadcasts nothing until it holds it (the payee sees only the outpoint until then).
    ///
    /// # Errors
    /// [`CommandError::NoFundingOutput`] unless exactly one output pays [`Payer::funding_output`];
    /// [`CommandError::MalleableFunding`] if an input has a `scriptSig`;
    /// [`CommandError::WrongSigner`] if `signer` is not the channel's ([`Payer::check_signer`]).
    /// The payer is unchanged.
    pub fn fund<S: Signer + ?Sized>(&mut self, funding_tx: Transaction, signer: &S) -> Result<Effects, CommandError> {
        self.check_signer(signer)?;
        let request = self.funding_request().ok_or(CommandError::WrongPhase)?;
        let outpoint = request.check(&funding_tx)?;
        let template = self.template_at(outpoint);
        match self.offer.variant {
            Variant::Cltv => {
                let (payment, state) = self.sign_state(&template, self.first_state(), 1, signer)?;
                self.install(template, funding_tx, 1, state);
                Ok(self.open_effects(payment))
            }
            Variant::PresignedRefund => {
                template.refund_tx(self.config.refund_fee, self.offer.expiry).ok_or(CommandError::BadTerms)?;
                self.template = Some(template);
                self.funding_tx = Some(funding_tx);
                self.phase = PayerPhase::AwaitingRefundSignature;
                let mut fx = self.persist();
                if let Some(request) = self.refund_request() {
                    fx.send.push(request);
                }
                Ok(fx)
            }
        }
    }

    /// The [`RefundRequest`] of a pre-signed channel waiting for the payee's signature.
    pub(super) fn refund_request(&self) -> Option<Msg> {
        let t = self.template.as_ref().filter(|_| self.phase == PayerPhase::AwaitingRefundSignature)?;
        Some(Msg::RefundRequest(RefundRequest {
            payer_key: self.payer_key,
            payer_htlc_key: self.payer_htlc_key,
            payer_script: self.config.payer_script.clone(),
            funding_outpoint: t.outpoint,
            capacity: self.config.capacity,
            refund_fee: self.config.refund_fee,
        }))
    }

    fn first_state(&self) -> PaymentState {
        PaymentState { to_payee: self.config.first_payment, htlcs: Vec::new() }
    }

    fn install(&mut self, template: PaymentTemplate, funding_tx: Transaction, number: u64, state: PaymentState) {
        self.template = Some(template);
        self.funding_tx = Some(funding_tx);
        self.number = number;
        self.state = state;
        self.phase = PayerPhase::Open;
    }

    /// The [`Open`] carrying `first_payment`, once funded.
    pub(super) fn open_msg(&self, first_payment: Payment) -> Option<Msg> {
        let (Some(t), Some(funding)) = (&self.template, &self.funding_tx) else { return None };
        Some(Msg::Open(Open {
            payer_key: self.payer_key,
            payer_htlc_key: self.payer_htlc_key,
            payer_script: self.config.payer_script.clone(),
            refund_fee: self.config.refund_fee,
            funding_tx: funding.clone(),
            funding_vout: t.outpoint.vout,
            first_payment,
        }))
    }

    fn open_effects(&mut self, first_payment: Payment) -> Effects {
        let mut fx = self.persist();
        let Some(open) = self.open_msg(first_payment) else { return fx };
        fx.send.push(open);
        let (Some(t), Some(funding)) = (&self.template, &self.funding_tx) else { return fx };
        fx.broadcast.push(funding.clone());
        fx.watch.push(Watch::Tx(t.outpoint.txid));
        fx.watch.push(Watch::Spend(t.outpoint));
        fx
    }

    fn sign_state<S: Signer + ?Sized>(
        &self,
        template: &PaymentTemplate,
        state: PaymentState,
        number: u64,
        signer: &S,
    ) -> Result<(Payment, PaymentState), CommandError> {
        let built = template.build(&state).map_err(CommandError::Payment)?;
        let signature = template.sign(signer, &built)?;
        Ok((Payment { number, to_payee: state.to_payee, htlcs: state.htlcs.clone(), signature }, state))
    }

    /// Signs the next payment with `state` and makes it the newest.
    fn commit<S: Signer + ?Sized>(
        &mut self,
        state: PaymentState,
        signer: &S,
    ) -> Result<(Payment, Effects), CommandError> {
        if self.phase != PayerPhase::Open {
            return Err(CommandError::WrongPhase);
        }
        if self.lost_state {
            return Err(CommandError::LostState);
        }
        let template = self.template.as_ref().ok_or(CommandError::WrongPhase)?;
        let number = self.number.checked_add(1).ok_or(CommandError::InvalidAmount)?;
        let (payment, state) = self.sign_state(template, state, number, signer)?;
        self.number = number;
        self.state = state;
        let exposure =
            self.state.htlc_total().and_then(|h| h.checked_add(self.state.to_payee)).unwrap_or(Amount::MAX_MONEY);
        for h in &mut self.htlcs {
            if self.state.htlcs.iter().any(|x| x.id == h.htlc.id) {
                h.max_exposure = h.max_exposure.max(exposure);
            }
        }
        let mut fx = Effects::none();
        for h in &mut self.htlcs {
            if let HtlcStatus::Removed { dominated_at } = h.status {
                if self.state.to_payee >= dominated_at {
                    h.status = HtlcStatus::FailedFinal;
                    fx.events.push(Event::HtlcFailIrrevocable { id: h.htlc.id });
                }
            }
        }
        Ok((payment, fx))
    }

    fn send_payment(&mut self, payment: Payment, mut events: Effects) -> Effects {
        let mut fx = self.persist();
        fx.send.push(Msg::Payment(payment));
        fx.events.append(&mut events.events);
        fx
    }

    /// Pays `amount` more to the payee.
    ///
    /// # Errors
    /// [`CommandError`] if the channel is not open, the amount is zero, or the resulting payment
    /// does not fit (capacity exceeded, or change left below dust: pay it all instead);
    /// [`CommandError::WrongSigner`] if `signer` is not the channel's ([`Payer::check_signer`]).
    pub fn pay<S: Signer + ?Sized>(&mut self, amount: Amount, signer: &S) -> Result<Effects, CommandError> {
        self.check_signer(signer)?;
        if amount == Amount::ZERO {
            return Err(CommandError::InvalidAmount);
        }
        let to_payee = self.state.to_payee.checked_add(amount).ok_or(CommandError::InvalidAmount)?;
        let state = PaymentState { to_payee, htlcs: self.state.htlcs.clone() };
        let (payment, fx) = self.commit(state, signer)?;
        Ok(self.send_payment(payment, fx))
    }

    /// Offers an HTLC of `amount` locked to `payment_hash`, refundable from `expiry`. Returns its id.
    ///
    /// # Errors
    /// [`CommandError`] if the channel is not open, the expiry is outside the payee's window
    /// (`tip + htlc_min_blocks ..= expiry - close_margin`), or the payment does not fit;
    /// [`CommandError::WrongSigner`] if `signer` is not the channel's ([`Payer::check_signer`]).
    pub fn add_htlc<S: Signer + ?Sized>(
        &mut self,
        amount: Amount,
        payment_hash: PaymentHash,
        expiry: BlockHeight,
        signer: &S,
        tip: ChainTip,
    ) -> Result<(u64, Effects), CommandError> {
        self.check_signer(signer)?;
        let earliest = tip.height.checked_add(self.offer.htlc_min_blocks).ok_or(CommandError::HtlcExpiry)?;
        if expiry < earliest || expiry > self.offer.expiry.saturating_sub(self.offer.close_margin) {
            return Err(CommandError::HtlcExpiry);
        }
        // An id without a successor is never used: the payee would refuse it.
        let next_id = self.next_htlc_id.checked_add(1).ok_or(CommandError::InvalidAmount)?;
        let htlc = PaymentHtlc { id: self.next_htlc_id, amount, payment_hash, expiry };
        let mut state = self.state.clone();
        state.htlcs.push(htlc);
        let (payment, fx) = self.commit(state, signer)?;
        self.next_htlc_id = next_id;
        let max_exposure =
            self.state.htlc_total().and_then(|h| h.checked_add(self.state.to_payee)).unwrap_or(Amount::MAX_MONEY);
        self.htlcs.push(PayerHtlc { htlc, status: HtlcStatus::Live, max_exposure });
        Ok((htlc.id, self.send_payment(payment, fx)))
    }

    /// Removes an HTLC whose expiry has passed (or that the payee failed) from the newest
    /// payment, returning its value to the payer's change. The failure is not final until
    /// [`Payer::is_fail_irrevocable`] says so.
    ///
    /// # Errors
    /// [`CommandError::NotExpired`] if neither expired nor failed by the payee;
    /// [`CommandError::WrongSigner`] if `signer` is not the channel's ([`Payer::check_signer`]).
    pub fn timeout_htlc<S: Signer + ?Sized>(
        &mut self,
        id: u64,
        signer: &S,
        tip: ChainTip,
    ) -> Result<Effects, CommandError> {
        self.check_signer(signer)?;
        let h = self
            .htlcs
            .iter()
            .find(|h| h.htlc.id == id && h.status == HtlcStatus::Live)
            .ok_or(CommandError::UnknownHtlc)?;
        if tip.height < h.htlc.expiry {
            return Err(CommandError::NotExpired);
        }
        self.remove_live(id, signer)
    }

    fn remove_live<S: Signer + ?Sized>(&mut self, id: u64, signer: &S) -> Result<Effects, CommandError> {
        let mut state = self.state.clone();
        state.htlcs.retain(|h| h.id != id);
        let (payment, mut fx) = self.commit(state, signer)?;
        if let Some(h) = self.htlcs.iter_mut().find(|h| h.htlc.id == id) {
            h.status = HtlcStatus::Removed { dominated_at: h.max_exposure };
        }
        fx.events.push(Event::HtlcRemoved { id });
        Ok(self.send_payment(payment, fx))
    }

    /// Asks the payee to close now with the newest payment.
    ///
    /// # Errors
    /// [`CommandError::WrongPhase`] unless open.
    pub fn request_close(&self) -> Result<Effects, CommandError> {
        if self.phase != PayerPhase::Open {
            return Err(CommandError::WrongPhase);
        }
        let mut fx = Effects::none();
        fx.send.push(Msg::CloseRequest);
        Ok(fx)
    }

    /// The fully signed refund: valid from [`Payer::refund_height`] on.
    ///
    /// # Errors
    /// [`CommandError`] if not funded yet (or, pre-signed, before the payee's signature);
    /// [`CommandError::WrongSigner`] if `signer` is not the channel's ([`Payer::check_signer`]).
    pub fn refund_tx<S: Signer + ?Sized>(&self, signer: &S) -> Result<Transaction, CommandError> {
        self.check_signer(signer)?;
        let t = self.template.as_ref().ok_or(CommandError::WrongPhase)?;
        let refund = t.refund_tx(self.config.refund_fee, self.offer.expiry).ok_or(CommandError::BadTerms)?;
        let ours = t.sign_refund(signer, &refund)?;
        t.complete_refund(refund, &ours, self.refund_payee_sig.as_ref()).ok_or(CommandError::WrongPhase)
    }

    /// Handles a message from the payee. On error nothing changed.
    ///
    /// # Errors
    /// [`PeerError`] describing the misbehaviour; [`Misbehaviour::WrongSigner`] (not the peer's
    /// fault, [`Action::Ignore`](crate::driving::Action::Ignore)) if `signer` is not the
    /// channel's: feed the message again with the right one.
    pub fn handle_message<S: Signer + ?Sized>(
        &mut self,
        msg: Msg,
        signer: &S,
        _tip: ChainTip,
    ) -> Result<Effects, PeerError> {
        self.check_signer(signer)?;
        match msg {
            Msg::RefundSigned(r) => {
                if self.phase != PayerPhase::AwaitingRefundSignature {
                    return Err(peer_error(Misbehaviour::UnexpectedMessage));
                }
                let (Some(t), Some(funding)) = (self.template.clone(), self.funding_tx.clone()) else {
                    return Err(peer_error(Misbehaviour::UnexpectedMessage));
                };
                let refund =
                    t.refund_tx(self.config.refund_fee, self.offer.expiry).ok_or(peer_error(Misbehaviour::BadTerms))?;
                let _valid = t
                    .verify_refund_sig(&self.secp, &refund, &r.signature)
                    .map_err(|e| peer_error(Misbehaviour::RefundSignature(e)))?;
                let (payment, state) = self
                    .sign_state(&t, self.first_state(), 1, signer)
                    .map_err(|_| peer_error(Misbehaviour::BadTerms))?;
                self.refund_payee_sig = Some(r.signature);
                self.install(t, funding, 1, state);
                Ok(self.open_effects(payment))
            }
            Msg::Ack { number } => {
                if self.phase == PayerPhase::AwaitingFunding || number > self.number {
                    return Err(peer_error(Misbehaviour::UnexpectedMessage));
                }
                if number == self.acked && number == self.number {
                    // Our newest payment, acknowledged again (it was sent again on reconnection).
                    return Ok(Effects::none());
                }
                if number <= self.acked {
                    return Err(peer_error(Misbehaviour::Replay));
                }
                self.acked = number;
                let mut fx = self.persist();
                fx.events.push(Event::PaymentAcknowledged { number });
                Ok(fx)
            }
            Msg::Fulfill { id, preimage } => self.on_fulfill(id, preimage, signer),
            Msg::Fail { id } => {
                let live = self.htlcs.iter().any(|h| h.htlc.id == id && h.status == HtlcStatus::Live);
                if !live {
                    return Err(peer_error(Misbehaviour::UnknownHtlc));
                }
                self.remove_live(id, signer).map_err(|e| match e {
                    CommandError::Signer(s) => peer_error(Misbehaviour::Signer(s)),
                    _ => peer_error(Misbehaviour::UnexpectedMessage),
                })
            }
            Msg::Closed { .. } => Ok(Effects::none()),
            Msg::Reestablish(r) => self.on_reestablish(r, signer),
            _ => Err(peer_error(Misbehaviour::UnexpectedMessage)),
        }
    }

    fn on_fulfill<S: Signer + ?Sized>(
        &mut self,
        id: u64,
        preimage: PaymentPreimage,
        signer: &S,
    ) -> Result<Effects, PeerError> {
        let h = self.htlcs.iter().find(|h| h.htlc.id == id).copied().ok_or(peer_error(Misbehaviour::UnknownHtlc))?;
        if !h.htlc.payment_hash.is_unlocked_by(&preimage) {
            return Err(peer_error(Misbehaviour::WrongPreimage));
        }
        if matches!(h.status, HtlcStatus::Fulfilled(_)) {
            return Err(peer_error(Misbehaviour::Replay));
        }
        let event = Event::HtlcFulfilled { id, payment_hash: h.htlc.payment_hash, preimage };
        let in_state = self.state.htlcs.iter().any(|x| x.id == id);
        if self.phase == PayerPhase::Open && in_state && !self.lost_state {
            // Fold the HTLC into the payee's output.
            let mut state = self.state.clone();
            state.htlcs.retain(|x| x.id != id);
            state.to_payee = state.to_payee.checked_add(h.htlc.amount).ok_or(peer_error(Misbehaviour::BadTerms))?;
            let (payment, fx) = self.commit(state, signer).map_err(|e| match e {
                CommandError::Signer(s) => peer_error(Misbehaviour::Signer(s)),
                CommandError::Payment(p) => peer_error(Misbehaviour::Payment(p)),
                _ => peer_error(Misbehaviour::UnexpectedMessage),
            })?;
            self.set_status(id, HtlcStatus::Fulfilled(preimage));
            let mut fx = self.send_payment(payment, fx);
            fx.events.insert(0, event);
            return Ok(fx);
        }
        // Already removed (or channel closed): a preimage is still proof of payment.
        self.set_status(id, HtlcStatus::Fulfilled(preimage));
        let mut fx = self.persist();
        fx.events.push(event);
        Ok(fx)
    }

    fn set_status(&mut self, id: u64, status: HtlcStatus) {
        if let Some(h) = self.htlcs.iter_mut().find(|h| h.htlc.id == id) {
            h.status = status;
        }
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
            ChainEvent::Tip(tip) => self.on_tip(tip.height, signer),
            ChainEvent::Confirmed { tx, height } => self.on_confirmed(tx, height, signer),
            ChainEvent::Unconfirmed(txid) => self.on_unconfirmed(txid, signer),
            ChainEvent::Seen { tx } => self.on_seen(tx),
        }
    }

    /// An unconfirmed spend of one of our on-chain HTLC outputs: a preimage in its witness is
    /// learnt at once ([`Event::HtlcFulfilled`]); the output is not taken as spent, and our
    /// timeout claim stays due (broadcast again on each block until a spend confirms).
    fn on_seen(&mut self, tx: &Transaction) -> Effects {
        let mut events = Vec::new();
        for input in &tx.input {
            let Some(o) = self.onchain.iter().find(|o| o.outpoint == input.previous_output && !o.resolved) else {
                continue;
            };
            let id = o.id;
            let Some(h) = self.htlcs.iter().find(|h| h.htlc.id == id).copied() else { continue };
            if matches!(h.status, HtlcStatus::Fulfilled(_)) {
                continue;
            }
            if let Some(preimage) = h.htlc.payment_hash.find_preimage_in(&input.witness) {
                self.set_status(id, HtlcStatus::Fulfilled(preimage));
                events.push(Event::HtlcFulfilled { id, payment_hash: h.htlc.payment_hash, preimage });
            }
        }
        if events.is_empty() {
            return Effects::none();
        }
        let mut fx = self.persist();
        fx.events = events;
        fx
    }

    fn on_tip<S: Signer + ?Sized>(&mut self, height: BlockHeight, signer: &S) -> Effects {
        let mut fx = Effects::none();
        if self.tip_actions(height, signer, &mut fx) {
            let mut persisted = self.persist();
            persisted.merge(fx);
            return persisted;
        }
        fx
    }

    /// Updates the tip and does what it makes due: the refund at expiry, HTLC timeout claims
    /// after their expiry. Returns whether the state changed.
    fn tip_actions<S: Signer + ?Sized>(&mut self, height: BlockHeight, signer: &S, fx: &mut Effects) -> bool {
        let mut changed = height > self.tip;
        self.tip = self.tip.max(height);
        if self.phase == PayerPhase::Open && self.tip >= self.offer.expiry && self.closing_txid.is_none() {
            if let Ok(refund) = self.refund_tx(signer) {
                let txid = refund.compute_txid();
                self.closing_txid = Some(txid);
                fx.events.push(Event::CloseBroadcast { txid });
                fx.watch.push(Watch::Tx(txid));
                if let Some(t) = &self.template {
                    fx.bumps.extend(super::fees::refund_request(t, &refund, self.config.refund_fee, self.exposure()));
                }
                fx.broadcast.push(refund);
                changed = true;
            }
        }
        if self.phase == PayerPhase::Closed {
            if changed {
                // A new block: our timeout claims not confirmed yet are broadcast again while
                // their output is unspent (a conflicting spend may have evicted them).
                let again = self.timeout_claims_again(self.tip, signer);
                if !again.is_empty() {
                    fx.broadcast.extend(again);
                }
            }
            for (id, tx, bump) in self.timeout_claims(self.tip, signer) {
                let txid = tx.compute_txid();
                if let Some(o) = self.onchain.iter_mut().find(|o| o.id == id) {
                    o.claim = Some(txid);
                }
                fx.events.push(Event::HtlcClaimBroadcast { id, txid });
                fx.watch.push(Watch::Tx(txid));
                fx.broadcast.push(tx);
                fx.bumps.extend(bump);
                changed = true;
            }
        }
        changed
    }

    /// Our timeout claims already broadcast whose output is still unspent on chain, built again
    /// (the same transactions).
    fn timeout_claims_again<S: Signer + ?Sized>(&self, height: BlockHeight, signer: &S) -> Vec<Transaction> {
        let pending: Vec<OnChainHtlc> =
            self.onchain.iter().filter(|o| !o.resolved && o.claim.is_some()).copied().collect();
        self.build_timeouts(&pending, height, signer)
            .into_iter()
            .filter(|(id, tx, _)| pending.iter().any(|o| o.id == *id && o.claim == Some(tx.compute_txid())))
            .map(|(_, tx, _)| tx)
            .collect()
    }

    /// Timeout claims of the expired HTLC outputs not claimed yet, with their fee-bump requests.
    fn timeout_claims<S: Signer + ?Sized>(
        &self,
        height: BlockHeight,
        signer: &S,
    ) -> Vec<(u64, Transaction, Option<crate::core::feebump::BumpRequest>)> {
        let open: Vec<OnChainHtlc> =
            self.onchain.iter().filter(|o| !o.resolved && o.claim.is_none()).copied().collect();
        self.build_timeouts(&open, height, signer)
    }

    /// The most a payment the payee holds could give it, were it to learn every preimage: what
    /// the refund protects (its fee-bump [`at_stake`](crate::core::feebump::BumpRequest::at_stake)).
    fn exposure(&self) -> Amount {
        let newest = self.state.htlc_total().and_then(|h| h.checked_add(self.state.to_payee));
        self.htlcs
            .iter()
            .map(|h| h.max_exposure)
            .fold(newest.unwrap_or(self.config.capacity), Amount::max)
            .min(self.config.capacity)
    }

    /// Timeout claims of `outputs` valid at `height`, with their fee-bump requests. An HTLC whose
    /// preimage we know is timed out too once it expired: the output is still ours to take if the
    /// payee never claimed it (it may have shown the preimage only in a spend that never
    /// confirmed).
    fn build_timeouts<S: Signer + ?Sized>(
        &self,
        outputs: &[OnChainHtlc],
        height: BlockHeight,
        signer: &S,
    ) -> Vec<(u64, Transaction, Option<crate::core::feebump::BumpRequest>)> {
        let Some(t) = &self.template else { return Vec::new() };
        let mut out = Vec::new();
        for o in outputs {
            let Some(h) = self.htlcs.iter().find(|h| h.htlc.id == o.id) else { continue };
            if height < h.htlc.expiry {
                continue;
            }
            let claim = t.htlc_claim_tx(
                o.outpoint.txid,
                o.outpoint.vout,
                &h.htlc,
                false,
                t.payer_script.clone(),
                self.config.claim_fee,
            );
            if let Some(claim) = claim {
                if let Ok(tx) = t.complete_htlc_claim(signer, claim, &h.htlc, None) {
                    let bump = super::fees::claim_request(t, &tx, o.outpoint, &h.htlc, None, t.payer_script.clone());
                    out.push((o.id, tx, bump));
                }
            }
        }
        out
    }

    fn on_confirmed<S: Signer + ?Sized>(&mut self, tx: &Transaction, height: BlockHeight, signer: &S) -> Effects {
        let Some(t) = self.template.clone() else { return Effects::none() };
        let txid = tx.compute_txid();
        if tx.input.iter().any(|i| i.previous_output == t.outpoint) {
            if self.phase == PayerPhase::Closed {
                return Effects::none();
            }
            let refund = self.refund_tx(signer).ok().map(|r| r.compute_txid());
            let kind = if refund == Some(txid) || Self::is_refund_spend(&t, tx) {
                CloseKind::Refund
            } else {
                CloseKind::Payment
            };
            self.phase = PayerPhase::Closed;
            self.closing_txid = Some(txid);
            let mut fx = Effects::none();
            fx.events.push(Event::Closed { txid, kind });
            // Find our HTLC outputs among the payment's outputs; identical HTLCs get distinct ones.
            let mut used = alloc::vec![false; tx.output.len()];
            for h in &mut self.htlcs {
                let spk = t.htlc_script(&h.htlc).to_p2wsh();
                let found = tx
                    .output
                    .iter()
                    .zip(used.iter())
                    .position(|(o, taken)| !*taken && o.script_pubkey == spk && o.value == h.htlc.amount);
                match found {
                    Some(vout) => {
                        if let Some(u) = used.get_mut(vout) {
                            *u = true;
                        }
                        let outpoint = OutPoint { txid, vout: vout as u32 };
                        self.onchain.push(OnChainHtlc { outpoint, id: h.htlc.id, claim: None, resolved: false });
                        fx.watch.push(Watch::Spend(outpoint));
                    }
                    None => {
                        if let HtlcStatus::Removed { .. } | HtlcStatus::Live = h.status {
                            h.status = HtlcStatus::FailedFinal;
                            fx.events.push(Event::HtlcFailIrrevocable { id: h.htlc.id });
                        }
                    }
                }
            }
            self.tip_actions(height, signer, &mut fx);
            let mut persisted = self.persist();
            persisted.merge(fx);
            return persisted;
        }
        // A spend of one of our on-chain HTLC outputs.
        let mut fx = Effects::none();
        for input in &tx.input {
            let Some(pos) = self.onchain.iter().position(|o| o.outpoint == input.previous_output && !o.resolved) else {
                continue;
            };
            let id = self.onchain.get(pos).map(|o| o.id).unwrap_or_default();
            if let Some(o) = self.onchain.get_mut(pos) {
                o.resolved = true;
            }
            let Some(h) = self.htlcs.iter().find(|h| h.htlc.id == id).copied() else { continue };
            if let Some(preimage) = h.htlc.payment_hash.find_preimage_in(&input.witness) {
                if !matches!(h.status, HtlcStatus::Fulfilled(_)) {
                    self.set_status(id, HtlcStatus::Fulfilled(preimage));
                    fx.events.push(Event::HtlcFulfilled { id, payment_hash: h.htlc.payment_hash, preimage });
                }
            } else if let HtlcStatus::Removed { .. } | HtlcStatus::Live = h.status {
                self.set_status(id, HtlcStatus::FailedFinal);
                fx.events.push(Event::HtlcFailIrrevocable { id });
            }
        }
        if fx.events.is_empty() && !self.onchain.iter().any(|o| o.outpoint.txid == txid) {
            let touched = tx.input.iter().any(|i| self.onchain.iter().any(|o| o.outpoint == i.previous_output));
            if !touched {
                return Effects::none();
            }
        }
        let events = core::mem::take(&mut fx.events);
        let mut fx = self.persist();
        fx.events = events;
        fx
    }

    /// Whether `tx` spends the channel output by the payer's refund branch of a script lock
    /// (`<payer_sig> <>`): the refund as signed, or a fee-bumping replacement of it.
    fn is_refund_spend(t: &PaymentTemplate, tx: &Transaction) -> bool {
        if t.lock == ChannelLock::Multisig {
            return false;
        }
        tx.input.iter().any(|i| {
            i.previous_output == t.outpoint && i.witness.len() == 3 && i.witness.nth(1).is_some_and(<[u8]>::is_empty)
        })
    }

    fn on_unconfirmed<S: Signer + ?Sized>(&mut self, txid: Txid, signer: &S) -> Effects {
        if self.phase == PayerPhase::Closed && self.closing_txid == Some(txid) {
            // The spend of the channel output left the chain: back to open; if it was our refund
            // it is broadcast again at once.
            self.phase = PayerPhase::Open;
            self.closing_txid = None;
            self.onchain.clear();
        } else if let Some(o) = self.onchain.iter_mut().find(|o| o.claim == Some(txid)) {
            o.claim = None;
            o.resolved = false;
        } else {
            return Effects::none();
        }
        let mut fx = Effects::none();
        let tip = self.tip;
        self.tip_actions(tip, signer, &mut fx);
        let mut persisted = self.persist();
        persisted.merge(fx);
        persisted
    }
}
