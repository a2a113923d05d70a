//! Channel establishment: `open_channel`, `accept_channel`, `funding_created`, `funding_signed`,
//! `channel_ready` (BOLT #2 "Channel Establishment"), with its parameter checks.

use alloc::boxed::Box;
use alloc::vec::Vec;

use bitcoin::secp256k1::{ecdsa::Signature, PublicKey, Secp256k1};
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::{ecdsa, Amount, OutPoint, ScriptBuf, Transaction, TxOut, Txid};

use super::channel::{Channel, Phase, Shutdown, SideParams};
use super::htlc::Side;
use super::msgs::{AcceptChannel, Msg, OpenChannel, OpenTlvs, FEATURE_ANCHORS_ZERO_FEE_HTLC, FEATURE_STATIC_REMOTEKEY};
use super::{peer_error, ChannelConfig, CommandError, Effects, Event, Misbehaviour, OpenError, OpenParams, PeerError};
use crate::core::commitment::fees::{MAX_DUST_LIMIT, MIN_DUST_LIMIT};
use crate::core::commitment::signatures::{
    sign_counterparty_commitment, verify_holder_commitment, CommitmentSignatures,
};
use crate::core::commitment::{ChannelType, CommitmentNumber};
use crate::core::funding::FundingRequest;
use crate::core::keys::{
    ChannelPubkeys, DelayedPaymentBasepoint, FundingPubkey, HtlcBasepoint, PaymentBasepoint, RevocationBasepoint,
};
use crate::core::shachain::SecretStore;
use crate::core::sign::{KeyIdentity, Signer};
use crate::core::units::{BlockHeight, MilliSats};
use crate::driving::{ChainTip, ChannelId};

/// BOLT #2's cap on `max_accepted_htlcs`.
pub const MAX_ACCEPTED_HTLCS: u16 = 483;

/// The `channel_type` feature vector of a channel type.
pub fn channel_type_bits(t: ChannelType) -> Vec<u8> {
    let mut bits = alloc::vec![FEATURE_STATIC_REMOTEKEY];
    if t.has_anchors() {
        bits.push(FEATURE_ANCHORS_ZERO_FEE_HTLC);
    }
    let len = usize::from(bits.iter().max().copied().unwrap_or(0) / 8) + 1;
    let mut out = alloc::vec![0u8; len];
    for b in bits {
        let idx = len - 1 - usize::from(b / 8);
        if let Some(byte) = out.get_mut(idx) {
            *byte |= 1 << (b % 8);
        }
    }
    out
}

fn pubkeys_of(
    funding: &PublicKey,
    revocation: &PublicKey,
    payment: &PublicKey,
    delayed: &PublicKey,
    htlc: &PublicKey,
) -> ChannelPubkeys {
    ChannelPubkeys {
        funding: FundingPubkey::from_public_key(*funding),
        revocation_basepoint: RevocationBasepoint::from_public_key(*revocation),
        payment_basepoint: PaymentBasepoint::from_public_key(*payment),
        delayed_payment_basepoint: DelayedPaymentBasepoint::from_public_key(*delayed),
        htlc_basepoint: HtlcBasepoint::from_public_key(*htlc),
    }
}

/// A peer's `upfront_shutdown_script`, if it sends a non-empty one, binds its later `shutdown`
/// (BOLT #2): one we would refuse there is refused now, before any money is committed.
fn check_upfront_shutdown_script(config: &ChannelConfig, tlvs: &OpenTlvs) -> Result<(), Misbehaviour> {
    match &tlvs.upfront_shutdown_script {
        Some(s) if !s.is_empty() && !config.shutdown_policy().allows(s) => Err(Misbehaviour::NonStandardScript),
        _ => Ok(()),
    }
}

/// Checks what the peer announced about itself against our policy. `acceptor_reserve` is the
/// reserve `open_channel` asks of the acceptor: the dust limits must not exceed it (BOLT #2).
///
/// The peer's dust limit must be a standard one (354 to 546 sat): outputs of its commitment below
/// it are dropped into fees, so a peer announcing a huge dust limit (allowed by BOLT #2 as long as
/// it is below the reserve) would burn our balance on its commitment and in the cooperative close.
/// The reserve it asks of us is bounded by [`ChannelConfig::max_peer_reserve_ppm`].
fn check_peer_side(
    config: &ChannelConfig,
    p: &SideParams,
    funding: Amount,
    our_dust: Amount,
    acceptor_reserve: Amount,
) -> Result<(), Misbehaviour> {
    let ok = p.dust_limit >= MIN_DUST_LIMIT
        && p.dust_limit <= MAX_DUST_LIMIT
        && p.dust_limit <= acceptor_reserve
        && p.channel_reserve <= config.max_peer_reserve(funding)
        && p.to_self_delay <= config.max_to_self_delay
        && p.max_accepted_htlcs >= 1
        && p.max_accepted_htlcs <= MAX_ACCEPTED_HTLCS
        && p.channel_reserve <= funding
        && p.channel_reserve >= our_dust;
    if ok {
        Ok(())
    } else {
        Err(Misbehaviour::BadParameters)
    }
}

impl Channel {
    fn new_side(config: &ChannelConfig, pubkeys: ChannelPubkeys) -> SideParams {
        SideParams {
            dust_limit: config.dust_limit,
            max_htlc_value_in_flight: config.max_htlc_value_in_flight,
            channel_reserve: config.channel_reserve,
            htlc_minimum: config.htlc_minimum,
            to_self_delay: config.to_self_delay,
            max_accepted_htlcs: config.max_accepted_htlcs.min(MAX_ACCEPTED_HTLCS),
            pubkeys,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn blank(
        is_funder: bool,
        config: ChannelConfig,
        temporary_channel_id: ChannelId,
        capacity: Amount,
        push: MilliSats,
        feerate: u32,
        pubkeys: ChannelPubkeys,
        key_identity: KeyIdentity,
        tip: ChainTip,
    ) -> Option<Self> {
        let funding_msat = MilliSats::from_amount(capacity)?;
        let funder_msat = funding_msat.checked_sub(push)?;
        let (settled_holder, settled_counterparty) = if is_funder { (funder_msat, push) } else { (push, funder_msat) };
        Some(Channel {
            is_funder,
            channel_type: config.channel_type,
            holder: Self::new_side(&config, pubkeys),
            minimum_depth: config.minimum_depth,
            config,
            temporary_channel_id,
            channel_id: temporary_channel_id,
            capacity,
            push,
            funding_outpoint: None,
            funding_tx: None,
            counterparty: None,
            phase: Phase::AwaitingAccept,
            holder_commitment: 0,
            counterparty_commitment: 0,
            awaiting_revoke: false,
            revoke_sent_last: false,
            counterparty_point: None,
            counterparty_next_point: None,
            counterparty_prev_point: None,
            secrets: SecretStore::new(),
            holder_signatures: None,
            settled_holder,
            settled_counterparty,
            feerate,
            fee_updates: Vec::new(),
            htlcs: Vec::new(),
            next_holder_htlc_id: 0,
            next_counterparty_htlc_id: 0,
            next_seq: 0,
            shutdown: Shutdown::default(),
            funding_height: None,
            tip: tip.height,
            channel_ready_sent: false,
            channel_ready_received: false,
            update_id: 0,
            sweep_destination: None,
            sweep_feerate: 1_000,
            force_closed: false,
            lost_state: false,
            key_identity: Some(key_identity),
            preimages: Vec::new(),
            onchain: None,
            secp: Secp256k1::new(),
            holder_next_point: None,
            refused_on_this_connection: false,
            defer_refusals: false,
            funding_invalid: false,
            onions_to_append: false,
            fee_estimate: None,
            durable: None,
            deltas_since_full: 0,
            full_snapshot_interval: crate::driving::FULL_SNAPSHOT_INTERVAL,
            pending_onions: Vec::new(),
        })
    }

    /// Opens a channel as funder: returns the channel and the `open_channel` to send.
    ///
    /// # Errors
    /// [`CommandError::Amount`] if `push` exceeds the funding or the funder could not pay the first
    /// commitment's fee; [`CommandError::Signer`] if the signer cannot give the first point.
    pub fn open<S: Signer + ?Sized>(
        params: OpenParams,
        signer: &S,
        tip: ChainTip,
    ) -> Result<(Self, Effects), CommandError> {
        let first_point = signer.per_commitment_point(CommitmentNumber::ZERO)?;
        let c = &params.config;
        let fee =
            bitcoin::Amount::from_sat(u64::from(params.feerate_per_kw) * c.channel_type.commitment_weight(0) / 1000)
                + c.channel_type.anchor_value() * 2;
        let funder_keeps = MilliSats::from_amount(params.funding)
            .and_then(|f| f.checked_sub(params.push))
            .ok_or(CommandError::Amount)?;
        if funder_keeps.to_amount_floor() < fee || params.funding > Amount::MAX_MONEY {
            return Err(CommandError::Amount);
        }
        let mut ch = Self::blank(
            true,
            params.config.clone(),
            params.temporary_channel_id,
            params.funding,
            params.push,
            params.feerate_per_kw,
            *signer.pubkeys(),
            KeyIdentity::of(signer),
            tip,
        )
        .ok_or(CommandError::Amount)?;
        let k = ch.holder.pubkeys;
        let msg = OpenChannel {
            chain_hash: c.chain_hash,
            temporary_channel_id: params.temporary_channel_id,
            funding_satoshis: params.funding,
            push_msat: params.push,
            dust_limit_satoshis: ch.holder.dust_limit,
            max_htlc_value_in_flight_msat: ch.holder.max_htlc_value_in_flight,
            channel_reserve_satoshis: ch.holder.channel_reserve,
            htlc_minimum_msat: ch.holder.htlc_minimum,
            feerate_per_kw: params.feerate_per_kw,
            to_self_delay: ch.holder.to_self_delay,
            max_accepted_htlcs: ch.holder.max_accepted_htlcs,
            funding_pubkey: *k.funding.public_key(),
            revocation_basepoint: *k.revocation_basepoint.public_key(),
            payment_basepoint: *k.payment_basepoint.public_key(),
            delayed_payment_basepoint: *k.delayed_payment_basepoint.public_key(),
            htlc_basepoint: *k.htlc_basepoint.public_key(),
            first_per_commitment_point: *first_point.public_key(),
            channel_flags: 0,
            // The `init` we send offers `option_upfront_shutdown_script`, so BOLT #2 requires the
            // field: empty, we commit to no script (LDK refuses an `open_channel` without it).
            tlvs: OpenTlvs {
                upfront_shutdown_script: Some(ScriptBuf::new()),
                channel_type: Some(channel_type_bits(ch.channel_type)),
            },
        };
        let mut fx = ch.persist();
        fx.send.push(Msg::OpenChannel(Box::new(msg)));
        Ok((ch, fx))
    }

    /// Accepts a peer's `open_channel` under our `config`: checks every parameter (BOLT #2) and
    /// returns the channel and the `accept_channel` to send.
    ///
    /// # Errors
    /// [`OpenError`] naming the refused parameter.
    pub fn accept<S: Signer + ?Sized>(
        open: &OpenChannel,
        config: ChannelConfig,
        signer: &S,
        tip: ChainTip,
    ) -> Result<(Self, Effects), OpenError> {
        if open.chain_hash != config.chain_hash {
            return Err(OpenError(Misbehaviour::BadParameters));
        }
        if open.tlvs.channel_type.as_deref() != Some(&channel_type_bits(config.channel_type)[..]) {
            return Err(OpenError(Misbehaviour::ChannelType));
        }
        check_upfront_shutdown_script(&config, &open.tlvs).map_err(OpenError)?;
        if open.feerate_per_kw < config.min_feerate || open.feerate_per_kw > config.max_feerate {
            return Err(OpenError(Misbehaviour::Feerate));
        }
        let funding = open.funding_satoshis;
        if funding == Amount::ZERO || funding > Amount::MAX_MONEY {
            return Err(OpenError(Misbehaviour::BadParameters));
        }
        let theirs = SideParams {
            dust_limit: open.dust_limit_satoshis,
            max_htlc_value_in_flight: open.max_htlc_value_in_flight_msat,
            channel_reserve: open.channel_reserve_satoshis,
            htlc_minimum: open.htlc_minimum_msat,
            to_self_delay: open.to_self_delay,
            max_accepted_htlcs: open.max_accepted_htlcs,
            pubkeys: pubkeys_of(
                &open.funding_pubkey,
                &open.revocation_basepoint,
                &open.payment_basepoint,
                &open.delayed_payment_basepoint,
                &open.htlc_basepoint,
            ),
        };
        check_peer_side(&config, &theirs, funding, config.dust_limit, open.channel_reserve_satoshis)
            .map_err(OpenError)?;
        if config.channel_reserve > funding {
            return Err(OpenError(Misbehaviour::BadParameters));
        }
        let first_point =
            signer.per_commitment_point(CommitmentNumber::ZERO).map_err(|e| OpenError(Misbehaviour::Signer(e)))?;
        let mut ch = Self::blank(
            false,
            config,
            open.temporary_channel_id,
            funding,
            open.push_msat,
            open.feerate_per_kw,
            *signer.pubkeys(),
            KeyIdentity::of(signer),
            tip,
        )
        .ok_or(OpenError(Misbehaviour::BadParameters))?;
        ch.counterparty = Some(theirs);
        ch.counterparty_point = Some(open.first_per_commitment_point);
        // The funder must afford the first commitment.
        let fee = ch.commitment_fee(Side::Holder, ch.feerate, 0) + ch.channel_type.anchor_value() * 2;
        if ch.settled_counterparty.to_amount_floor() < fee {
            return Err(OpenError(Misbehaviour::CannotAfford));
        }
        ch.phase = Phase::AwaitingFundingCreated;
        let k = ch.holder.pubkeys;
        let msg = AcceptChannel {
            temporary_channel_id: open.temporary_channel_id,
            dust_limit_satoshis: ch.holder.dust_limit,
            max_htlc_value_in_flight_msat: ch.holder.max_htlc_value_in_flight,
            channel_reserve_satoshis: ch.holder.channel_reserve,
            htlc_minimum_msat: ch.holder.htlc_minimum,
            minimum_depth: ch.minimum_depth,
            to_self_delay: ch.holder.to_self_delay,
            max_accepted_htlcs: ch.holder.max_accepted_htlcs,
            funding_pubkey: *k.funding.public_key(),
            revocation_basepoint: *k.revocation_basepoint.public_key(),
            payment_basepoint: *k.payment_basepoint.public_key(),
            delayed_payment_basepoint: *k.delayed_payment_basepoint.public_key(),
            htlc_basepoint: *k.htlc_basepoint.public_key(),
            first_per_commitment_point: *first_point.public_key(),
            // Required once both `init`s offer `option_upfront_shutdown_script`: empty, no commitment.
            tlvs: OpenTlvs {
                upfront_shutdown_script: Some(ScriptBuf::new()),
                channel_type: open.tlvs.channel_type.clone(),
            },
        };
        let mut fx = ch.persist();
        fx.send.push(Msg::AcceptChannel(Box::new(msg)));
        Ok((ch, fx))
    }

    /// The weight-based fee of `owner`'s commitment with `htlcs` untrimmed HTLCs.
    pub(crate) fn commitment_fee(&self, _owner: Side, feerate: u32, htlcs: usize) -> Amount {
        Amount::from_sat(u64::from(feerate) * self.channel_type.commitment_weight(htlcs) / 1000)
    }

    pub(crate) fn on_accept_channel(&mut self, m: AcceptChannel) -> Result<Effects, PeerError> {
        if self.phase != Phase::AwaitingAccept || !self.is_funder {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        }
        if m.temporary_channel_id != self.temporary_channel_id {
            return Err(peer_error(Misbehaviour::WrongChannel));
        }
        if m.tlvs.channel_type.as_deref() != Some(&channel_type_bits(self.channel_type)[..]) {
            return Err(peer_error(Misbehaviour::ChannelType));
        }
        check_upfront_shutdown_script(&self.config, &m.tlvs).map_err(peer_error)?;
        let theirs = SideParams {
            dust_limit: m.dust_limit_satoshis,
            max_htlc_value_in_flight: m.max_htlc_value_in_flight_msat,
            channel_reserve: m.channel_reserve_satoshis,
            htlc_minimum: m.htlc_minimum_msat,
            to_self_delay: m.to_self_delay,
            max_accepted_htlcs: m.max_accepted_htlcs,
            pubkeys: pubkeys_of(
                &m.funding_pubkey,
                &m.revocation_basepoint,
                &m.payment_basepoint,
                &m.delayed_payment_basepoint,
                &m.htlc_basepoint,
            ),
        };
        check_peer_side(&self.config, &theirs, self.capacity, self.holder.dust_limit, self.holder.channel_reserve)
            .map_err(peer_error)?;
        if m.minimum_depth > 6 * 24 * 7 {
            return Err(peer_error(Misbehaviour::BadParameters));
        }
        self.counterparty = Some(theirs);
        self.counterparty_point = Some(m.first_per_commitment_point);
        self.minimum_depth = m.minimum_depth;
        self.phase = Phase::AwaitingFundingTx;
        let mut fx = self.persist();
        fx.funding = self.funding_request();
        if let Some(request) = &fx.funding {
            let (script_pubkey, value) = (request.output.script_pubkey.clone(), request.output.value);
            fx.events.push(Event::FundingGenerationReady { script_pubkey, value });
        }
        Ok(fx)
    }

    /// (Opener) what the wallet must fund, while the channel waits for its funding transaction
    /// (after `accept_channel`; `None` before and once [`Channel::fund`] took one).
    pub fn funding_request(&self) -> Option<FundingRequest> {
        if self.phase != Phase::AwaitingFundingTx || !self.is_funder {
            return None;
        }
        let cp = self.counterparty.as_ref()?;
        let script_pubkey = crate::core::script::funding(&self.holder.pubkeys.funding, &cp.pubkeys.funding).to_p2wsh();
        Some(FundingRequest::new(TxOut { script_pubkey, value: self.capacity }, self.temporary_channel_id))
    }

    /// (Opener) takes the wallet's **signed** funding transaction (the crate's one funding flow,
    /// [`crate::core::funding`]: the same call in every layer): signs the acceptor's first
    /// commitment and sends `funding_created`, which carries only the outpoint. The funding
    /// transaction is broadcast by the channel (in [`Effects::broadcast`](crate::driving::Effects::broadcast))
    /// once the acceptor's signature on our first commitment arrives (`funding_signed`), not
    /// before: do not broadcast it yourself.
    ///
    /// # Errors
    /// [`CommandError::WrongPhase`] unless [`Channel::funding_request`] asks for one;
    /// [`CommandError::NoFundingOutput`] unless exactly one output pays it;
    /// [`CommandError::MalleableFunding`] if an input has a `scriptSig`;
    /// [`CommandError::WrongSigner`] if `signer` is not the channel's ([`Channel::check_signer`]).
    /// The channel is unchanged.
    pub fn fund<S: Signer + ?Sized>(&mut self, tx: Transaction, signer: &S) -> Result<Effects, CommandError> {
        self.check_signer(signer)?;
        let request = self.funding_request().ok_or(CommandError::WrongPhase)?;
        let outpoint = request.check(&tx)?;
        let vout = u16::try_from(outpoint.vout).map_err(|_| CommandError::NoFundingOutput)?;
        let mut next = self.clone();
        next.funding_outpoint = Some(outpoint);
        let signature = next.sign_counterparty_initial(signer)?;
        next.channel_id = ChannelId::from_funding(&outpoint);
        next.funding_tx = Some(tx);
        next.phase = Phase::AwaitingFundingSigned;
        *self = next;
        let mut fx = self.persist();
        fx.send.push(Msg::FundingCreated {
            temporary_channel_id: self.temporary_channel_id,
            funding_txid: outpoint.txid,
            funding_output_index: vout,
            signature,
        });
        Ok(fx)
    }

    /// [`Channel::fund`] under its former name, kept for existing callers.
    ///
    /// # Errors
    /// As [`Channel::fund`].
    pub fn funding_tx<S: Signer + ?Sized>(&mut self, tx: Transaction, signer: &S) -> Result<Effects, CommandError> {
        self.fund(tx, signer)
    }

    fn sign_counterparty_initial<S: Signer + ?Sized>(&self, signer: &S) -> Result<Signature, CommandError> {
        let point = self.counterparty_point.ok_or(CommandError::WrongPhase)?;
        let view = self.view(Side::Counterparty);
        let built = self.build(Side::Counterparty, 0, &point, &view).map_err(|_| CommandError::Keys)?;
        Ok(sign_counterparty_commitment(signer, &built)?.commitment.signature)
    }

    fn verify_holder_initial<S: Signer + ?Sized>(
        &self,
        signature: Signature,
        signer: &S,
    ) -> Result<CommitmentSignatures, PeerError> {
        let point =
            signer.per_commitment_point(CommitmentNumber::ZERO).map_err(|e| peer_error(Misbehaviour::Signer(e)))?;
        let view = self.view(Side::Holder);
        let built = self.build(Side::Holder, 0, point.public_key(), &view).map_err(peer_error)?;
        let sigs = CommitmentSignatures {
            commitment: ecdsa::Signature { signature, sighash_type: EcdsaSighashType::All },
            htlcs: Vec::new(),
        };
        let cp = self.counterparty_params()?;
        let verified = verify_holder_commitment(&self.secp, built, &cp.pubkeys.funding, sigs)
            .map_err(|_| peer_error(Misbehaviour::BadFundingSignature))?;
        Ok(verified.signatures().clone())
    }

    pub(crate) fn on_funding_created<S: Signer + ?Sized>(
        &mut self,
        temporary_channel_id: ChannelId,
        funding_txid: Txid,
        funding_output_index: u16,
        signature: Signature,
        signer: &S,
    ) -> Result<Effects, PeerError> {
        if self.phase != Phase::AwaitingFundingCreated || self.is_funder {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        }
        if temporary_channel_id != self.temporary_channel_id {
            return Err(peer_error(Misbehaviour::WrongChannel));
        }
        let mut next = self.clone();
        let outpoint = OutPoint { txid: funding_txid, vout: u32::from(funding_output_index) };
        next.funding_outpoint = Some(outpoint);
        next.holder_signatures = Some(next.verify_holder_initial(signature, signer)?);
        let ours = next.sign_counterparty_initial(signer).map_err(|_| peer_error(Misbehaviour::Keys))?;
        next.channel_id = ChannelId::from_funding(&outpoint);
        next.phase = Phase::AwaitingChannelReady;
        *self = next;
        let mut fx = self.persist();
        fx.send.push(Msg::FundingSigned { channel_id: self.channel_id, signature: ours });
        self.watch_funding(&mut fx);
        Ok(fx)
    }

    pub(crate) fn on_funding_signed<S: Signer + ?Sized>(
        &mut self,
        channel_id: ChannelId,
        signature: Signature,
        signer: &S,
    ) -> Result<Effects, PeerError> {
        if self.phase != Phase::AwaitingFundingSigned {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        }
        self.check_channel(channel_id)?;
        let sigs = self.verify_holder_initial(signature, signer)?;
        self.holder_signatures = Some(sigs);
        self.phase = Phase::AwaitingChannelReady;
        let funding = self.funding_tx.take();
        // The funding may be deep enough already (the wallet broadcast it too, or this message
        // was slow): `channel_ready` now, not at the next block.
        let mut fx = self.maybe_channel_ready(signer);
        if fx.update.is_none() {
            fx.merge(self.persist());
        }
        fx.broadcast.extend(funding);
        self.watch_funding(&mut fx);
        Ok(fx)
    }

    /// Sends `channel_ready` once the funding is deep enough, and opens the channel once both
    /// sides did.
    pub(crate) fn maybe_channel_ready<S: Signer + ?Sized>(&mut self, signer: &S) -> Effects {
        if self.phase != Phase::AwaitingChannelReady || self.channel_ready_sent {
            return Effects::none();
        }
        let deep = self.funding_height.is_some_and(|h| self.tip.0.saturating_sub(h.0) + 1 >= self.minimum_depth.max(1));
        if !deep {
            return Effects::none();
        }
        let Ok(point) = signer.per_commitment_point(CommitmentNumber::new(1).unwrap_or(CommitmentNumber::ZERO)) else {
            return Effects::none();
        };
        self.channel_ready_sent = true;
        self.holder_next_point = Some((1, *point.public_key()));
        let ready = self.channel_ready_received;
        if ready {
            self.phase = Phase::Normal;
        }
        let mut fx = self.persist();
        fx.send
            .push(Msg::ChannelReady { channel_id: self.channel_id, second_per_commitment_point: *point.public_key() });
        if ready {
            fx.events.push(self.ready_event());
        }
        fx
    }

    pub(crate) fn on_channel_ready(&mut self, channel_id: ChannelId, point: PublicKey) -> Result<Effects, PeerError> {
        self.check_channel(channel_id)?;
        match self.phase {
            Phase::AwaitingChannelReady => {}
            // A retransmission after reconnection (BOLT #2: sent while both sides'
            // `next_commitment_number` is 1, so while we hold no commitment beyond the first):
            // harmless if it repeats what we know.
            Phase::Normal | Phase::ShuttingDown | Phase::Closed
                if self.holder_commitment == 0 || self.counterparty_commitment == 0 =>
            {
                return if self.counterparty_next_point == Some(point) || self.counterparty_point == Some(point) {
                    Ok(Effects::none())
                } else {
                    Err(peer_error(Misbehaviour::UnexpectedMessage))
                };
            }
            _ => return Err(peer_error(Misbehaviour::UnexpectedMessage)),
        }
        if self.channel_ready_received {
            return Ok(Effects::none());
        }
        self.channel_ready_received = true;
        self.counterparty_next_point = Some(point);
        let ready = self.channel_ready_sent;
        if ready {
            self.phase = Phase::Normal;
        }
        let mut fx = self.persist();
        if ready {
            fx.events.push(self.ready_event());
        }
        Ok(fx)
    }

    /// The funding transaction's height, once confirmed.
    pub fn funding_height(&self) -> Option<BlockHeight> {
        self.funding_height
    }
}
