//! Normal operation (BOLT #2): HTLC additions and removals, fee updates, `commitment_signed` and
//! `revoke_and_ack`, with every limit of the receiving side enforced.

use alloc::vec::Vec;

use bitcoin::secp256k1::{ecdsa::Signature, PublicKey};
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::{ecdsa, Amount};

use super::channel::{Channel, Phase, View};
use super::htlc::{FeeUpdate, Htlc, Progress, Resolution, Side, Stage, Step};
use super::msgs::{Msg, OnionPacket};
use super::records::{OnionRecord, PenaltyRecord};
use super::{peer_error, CommandError, Effects, Event, Misbehaviour, PeerError};
use crate::core::commitment::fees::is_htlc_trimmed;
use crate::core::commitment::signatures::{
    sign_counterparty_commitment, verify_holder_signatures, CommitmentSignatures,
};
use crate::core::commitment::{CommitmentNumber, FeeratePerKw, HtlcDirection};
use crate::core::hashlock::{PaymentHash, PaymentPreimage};
use crate::core::keys::PerCommitmentSecret;
use crate::core::shachain::MAX_INDEX;
use crate::core::sign::Signer;
use crate::core::units::MilliSats;

/// A funder keeps enough to pay the commitment fee at this multiple of the current fee rate
/// (BOLT #2's "fee spike buffer"), so a fee rise cannot strand its HTLCs.
const FEE_SPIKE_MULTIPLE: u64 = 2;

impl Channel {
    /// Whether updates may still be offered or accepted: the channel is open, no closing fee was
    /// proposed yet (BOLT #2: no update once `closing_signed` is under way) and the channel is not
    /// being resolved on chain.
    fn is_open_for_updates(&self) -> bool {
        matches!(self.phase, Phase::Normal | Phase::ShuttingDown)
            && self.shutdown.last_fee_sent.is_none()
            && !self.is_off_chain_over()
    }

    /// The base fee plus anchors `owner`'s commitment in `view` charges its funder, and the total
    /// of HTLCs trimmed in it.
    fn fee_and_dust(&self, owner: Side, view: &View, feerate_multiple: u64) -> (MilliSats, MilliSats) {
        let Some(params) = self.commitment_params(owner) else { return (MilliSats::ZERO, MilliSats::ZERO) };
        let feerate = FeeratePerKw(view.feerate.saturating_mul(feerate_multiple as u32));
        let mut untrimmed = 0usize;
        let mut dust = MilliSats::ZERO;
        for h in &view.state_htlcs {
            let offered = h.direction() == HtlcDirection::Offered;
            if is_htlc_trimmed(self.channel_type, offered, h.amount(), params.dust_limit, FeeratePerKw(view.feerate)) {
                dust = dust.saturating_add(h.amount());
            } else {
                untrimmed += 1;
            }
        }
        let fee = feerate.fee_for_weight(self.channel_type.commitment_weight(untrimmed))
            + self.channel_type.anchor_value() * 2;
        (MilliSats::from_amount(fee).unwrap_or(MilliSats::from_msat(u64::MAX)), dust)
    }

    fn balance_in(view: &View, owner: Side, side: Side) -> MilliSats {
        if side == owner {
            view.to_owner
        } else {
            view.to_other
        }
    }

    /// Checks the limits the receiver of `offerer`'s HTLCs set, on both projected commitments.
    fn check_offer_limits(&self, offerer: Side, fee_multiple: u64) -> Result<(), Misbehaviour> {
        let (Some(cp), holder) = (self.counterparty.as_ref(), &self.holder) else {
            return Err(Misbehaviour::UnexpectedMessage);
        };
        // The receiver's announced limits apply to what the offerer sends it.
        let receiver = if offerer == Side::Holder { cp } else { holder };
        let funder = if self.is_funder { Side::Holder } else { Side::Counterparty };
        let mut dust_total = MilliSats::ZERO;
        for owner in [Side::Holder, Side::Counterparty] {
            // As receiver, judge the peer by what it could know when it offered.
            let view = if offerer == Side::Counterparty {
                self.peer_projected_view(owner)
            } else {
                self.projected_view(owner)
            };
            let (count, value) = view
                .ids
                .iter()
                .zip(&view.state_htlcs)
                .filter(|((o, _), _)| *o == offerer)
                .fold((0usize, MilliSats::ZERO), |(c, v), (_, h)| (c + 1, v.saturating_add(h.amount())));
            if count > usize::from(receiver.max_accepted_htlcs) || value > receiver.max_htlc_value_in_flight {
                return Err(Misbehaviour::HtlcLimits);
            }
            let (fee, dust) = self.fee_and_dust(owner, &view, if offerer == funder { fee_multiple } else { 1 });
            dust_total = dust_total.max(dust);
            let mut balance = Self::balance_in(&view, owner, offerer);
            if offerer == funder {
                balance = balance.checked_sub(fee).ok_or(Misbehaviour::CannotAfford)?;
            }
            let reserve = MilliSats::from_amount(receiver.channel_reserve).unwrap_or(MilliSats::ZERO);
            if balance < reserve {
                return Err(Misbehaviour::CannotAfford);
            }
        }
        // Dust exposure is our own policy on what we offer; the peer's is not announced.
        if offerer == Side::Holder && dust_total > self.config.max_dust_exposure {
            return Err(Misbehaviour::HtlcLimits);
        }
        Ok(())
    }

    /// Offers an HTLC to the peer and sends `update_add_htlc`; call [`Channel::commit`] to sign it.
    /// Returns the HTLC's id.
    ///
    /// # Errors
    /// [`CommandError`] if the channel cannot take it now, the amount or expiry is invalid, or a
    /// limit of the peer (count, in flight, reserve, dust exposure) or our fee buffer would break.
    pub fn add_htlc(
        &mut self,
        amount: MilliSats,
        payment_hash: PaymentHash,
        cltv_expiry: u32,
        onion: OnionPacket,
    ) -> Result<(u64, Effects), CommandError> {
        if self.phase != Phase::Normal
            || self.shutdown.holder_sent
            || self.shutdown.counterparty_script.is_some()
            || self.is_off_chain_over()
        {
            return Err(CommandError::WrongPhase);
        }
        let cp = self.counterparty.as_ref().ok_or(CommandError::WrongPhase)?;
        if amount == MilliSats::ZERO || amount < cp.htlc_minimum {
            return Err(CommandError::Amount);
        }
        if cltv_expiry >= 500_000_000 {
            return Err(CommandError::BadExpiry);
        }
        let id = self.next_holder_htlc_id;
        let seq = self.next_seq + 1;
        let htlc = Htlc {
            id,
            offerer: Side::Holder,
            amount,
            payment_hash,
            cltv_expiry,
            onion: Some(onion.clone()),
            add: Progress::new(Side::Holder),
            remove: None,
            add_seq: seq,
            remove_seq: 0,
            first_remote_commitment: None,
            removed_from_remote: None,
            payment_ripemd: payment_hash.ripemd160(),
        };
        let mut next = self.clone();
        next.htlcs.push(htlc);
        next.check_offer_limits(Side::Holder, FEE_SPIKE_MULTIPLE).map_err(|e| match e {
            Misbehaviour::HtlcLimits => CommandError::Limits,
            _ => CommandError::CannotAfford,
        })?;
        next.next_seq = seq;
        next.next_holder_htlc_id += 1;
        *self = next;
        let record = OnionRecord { offerer: Side::Holder, id, onion: onion.clone() };
        let mut fx = self.persist_with(alloc::vec![record.encode()]);
        fx.send.push(Msg::UpdateAddHtlc {
            channel_id: self.channel_id,
            id,
            amount_msat: amount,
            payment_hash,
            cltv_expiry,
            onion_routing_packet: onion,
        });
        Ok((id, fx))
    }

    fn removable(&self, offerer: Side, id: u64) -> bool {
        self.find_htlc(offerer, id).is_some_and(|h| h.is_irrevocably_committed() && h.remove.is_none())
    }

    fn remove_htlc(&mut self, id: u64, resolution: Resolution) -> Result<Effects, CommandError> {
        if !self.is_open_for_updates() {
            return Err(CommandError::WrongPhase);
        }
        if !self.removable(Side::Counterparty, id) {
            return Err(CommandError::UnknownHtlc);
        }
        let seq = self.next_seq();
        let msg = match &resolution {
            Resolution::Fulfill(p) => Msg::UpdateFulfillHtlc { channel_id: self.channel_id, id, payment_preimage: *p },
            Resolution::Fail(r) => Msg::UpdateFailHtlc { channel_id: self.channel_id, id, reason: r.clone() },
            Resolution::FailMalformed { sha256_of_onion, failure_code } => Msg::UpdateFailMalformedHtlc {
                channel_id: self.channel_id,
                id,
                sha256_of_onion: *sha256_of_onion,
                failure_code: *failure_code,
            },
        };
        if let Some(h) = self.find_htlc_mut(Side::Counterparty, id) {
            h.remove = Some((resolution, Progress::new(Side::Holder)));
            h.remove_seq = seq;
        }
        let mut fx = self.persist();
        fx.send.push(msg);
        Ok(fx)
    }

    /// Fulfils an HTLC offered to us (sends `update_fulfill_htlc`).
    ///
    /// # Errors
    /// [`CommandError::UnknownHtlc`] unless the HTLC is irrevocably committed and not yet removed;
    /// [`CommandError::WrongPreimage`].
    pub fn fulfill_htlc(&mut self, id: u64, preimage: PaymentPreimage) -> Result<Effects, CommandError> {
        let h = self.find_htlc(Side::Counterparty, id).ok_or(CommandError::UnknownHtlc)?;
        if !h.payment_hash.is_unlocked_by(&preimage) {
            return Err(CommandError::WrongPreimage);
        }
        self.remove_htlc(id, Resolution::Fulfill(preimage))
    }

    /// Fails an HTLC offered to us with an (onion-encrypted) reason.
    ///
    /// # Errors
    /// [`CommandError::UnknownHtlc`] unless the HTLC is irrevocably committed and not yet removed.
    pub fn fail_htlc(&mut self, id: u64, reason: Vec<u8>) -> Result<Effects, CommandError> {
        if reason.len() > usize::from(u16::MAX) {
            return Err(CommandError::Amount);
        }
        self.remove_htlc(id, Resolution::Fail(reason))
    }

    /// Fails an HTLC whose onion we could not parse.
    ///
    /// # Errors
    /// [`CommandError::UnknownHtlc`] as for [`Channel::fail_htlc`]; [`CommandError::Amount`] if
    /// `failure_code` lacks the BADONION bit.
    pub fn fail_malformed_htlc(
        &mut self,
        id: u64,
        sha256_of_onion: [u8; 32],
        failure_code: u16,
    ) -> Result<Effects, CommandError> {
        if failure_code & 0x8000 == 0 {
            return Err(CommandError::Amount);
        }
        self.remove_htlc(id, Resolution::FailMalformed { sha256_of_onion, failure_code })
    }

    /// (Funder) changes the commitment fee rate (sends `update_fee`).
    ///
    /// # Errors
    /// [`CommandError::Fee`] if we are not the funder or could not afford it.
    pub fn update_fee(&mut self, feerate_per_kw: u32) -> Result<Effects, CommandError> {
        if !self.is_funder || !self.is_open_for_updates() || feerate_per_kw < 253 {
            return Err(CommandError::Fee);
        }
        let seq = self.next_seq + 1;
        let mut next = self.clone();
        next.supersede_fee_updates(Side::Holder);
        next.fee_updates.push(FeeUpdate { feerate_per_kw, progress: Progress::new(Side::Holder), seq });
        next.check_offer_limits(Side::Holder, 1).map_err(|_| CommandError::Fee)?;
        next.next_seq = seq;
        *self = next;
        let mut fx = self.persist();
        fx.send.push(Msg::UpdateFee { channel_id: self.channel_id, feerate_per_kw });
        Ok(fx)
    }

    /// A new fee update replaces the sender's earlier ones not yet signed: only the newest rate
    /// of a commitment counts, so both sides drop the same ones and keep the same view.
    fn supersede_fee_updates(&mut self, sender: Side) {
        self.fee_updates.retain(|f| !(f.progress.sender == sender && f.progress.stage == Stage::Announced));
    }

    fn has_pending_for(&self, owner: Side) -> bool {
        self.htlcs
            .iter()
            .any(|h| h.add.pending_for(owner) || h.remove.as_ref().is_some_and(|(_, p)| p.pending_for(owner)))
            || self.fee_updates.iter().any(|f| f.progress.pending_for(owner))
    }

    /// Whether there are updates the peer's commitment does not have yet.
    pub fn has_unsigned_changes(&self) -> bool {
        self.has_pending_for(Side::Counterparty)
    }

    /// Signs the peer's next commitment with every pending update (sends `commitment_signed`).
    ///
    /// # Errors
    /// [`CommandError::WrongPhase`] while waiting for the peer's revocation;
    /// [`CommandError::NothingToCommit`] if nothing changed.
    pub fn commit<S: Signer + ?Sized>(&mut self, signer: &S) -> Result<Effects, CommandError> {
        if !self.is_open_for_updates() || self.awaiting_revoke {
            return Err(CommandError::WrongPhase);
        }
        if !self.has_pending_for(Side::Counterparty) {
            return Err(CommandError::NothingToCommit);
        }
        let mut next = self.clone();
        let msg = next.sign_next_counterparty(signer)?;
        *self = next;
        let mut fx = self.persist();
        fx.send.push(msg);
        self.after_update(&mut fx, signer);
        Ok(fx)
    }

    /// Advances every update past our `commitment_signed` and signs the peer's new commitment.
    fn sign_next_counterparty<S: Signer + ?Sized>(&mut self, signer: &S) -> Result<Msg, CommandError> {
        let point = self.counterparty_next_point.ok_or(CommandError::WrongPhase)?;
        for h in &mut self.htlcs {
            h.advance(Step::SentCommit);
        }
        for f in &mut self.fee_updates {
            f.progress.advance(Step::SentCommit);
        }
        let number = self.counterparty_commitment + 1;
        for h in &mut self.htlcs {
            if h.add.in_commitment_of(Side::Counterparty) && h.first_remote_commitment.is_none() {
                h.first_remote_commitment = Some(number);
            }
            if h.remove.as_ref().is_some_and(|(_, p)| p.in_commitment_of(Side::Counterparty))
                && h.removed_from_remote.is_none()
            {
                h.removed_from_remote = Some(number);
            }
        }
        let view = self.view(Side::Counterparty);
        let built = self.build(Side::Counterparty, number, &point, &view).map_err(|_| CommandError::Keys)?;
        let sigs = sign_counterparty_commitment(signer, &built)?;
        self.counterparty_commitment = number;
        self.counterparty_prev_point = self.counterparty_point;
        self.counterparty_point = Some(point);
        self.counterparty_next_point = None;
        self.awaiting_revoke = true;
        self.revoke_sent_last = false;
        Ok(Msg::CommitmentSigned {
            channel_id: self.channel_id,
            signature: sigs.commitment.signature,
            htlc_signatures: sigs.htlcs.iter().map(|s| s.signature).collect(),
        })
    }

    pub(crate) fn on_update_add(
        &mut self,
        id: u64,
        amount: MilliSats,
        payment_hash: PaymentHash,
        cltv_expiry: u32,
        onion: OnionPacket,
    ) -> Result<Effects, PeerError> {
        // An add may cross our own `shutdown`; after the peer's it is a protocol violation.
        if !self.is_open_for_updates() || self.shutdown.counterparty_script.is_some() {
            return Err(peer_error(if self.shutdown.counterparty_script.is_some() {
                Misbehaviour::Shutdown
            } else {
                Misbehaviour::UnexpectedMessage
            }));
        }
        if id != self.next_counterparty_htlc_id {
            return Err(peer_error(Misbehaviour::HtlcId));
        }
        if amount == MilliSats::ZERO || amount < self.holder.htlc_minimum {
            return Err(peer_error(Misbehaviour::HtlcBelowMinimum));
        }
        if cltv_expiry >= 500_000_000 {
            return Err(peer_error(Misbehaviour::BadExpiry));
        }
        let seq = self.next_seq + 1;
        let mut next = self.clone();
        next.htlcs.push(Htlc {
            id,
            offerer: Side::Counterparty,
            amount,
            payment_hash,
            cltv_expiry,
            onion: Some(onion.clone()),
            add: Progress::new(Side::Counterparty),
            remove: None,
            add_seq: seq,
            remove_seq: 0,
            first_remote_commitment: None,
            removed_from_remote: None,
            payment_ripemd: payment_hash.ripemd160(),
        });
        next.check_offer_limits(Side::Counterparty, 1).map_err(peer_error)?;
        next.next_seq = seq;
        next.next_counterparty_htlc_id += 1;
        *self = next;
        let record = OnionRecord { offerer: Side::Counterparty, id, onion };
        Ok(self.persist_with(alloc::vec![record.encode()]))
    }

    pub(crate) fn on_remove(&mut self, id: u64, resolution: Resolution) -> Result<Effects, PeerError> {
        if !self.is_open_for_updates() {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        }
        if !self.removable(Side::Holder, id) {
            return Err(peer_error(Misbehaviour::UnknownHtlc));
        }
        let seq = self.next_seq + 1;
        let h = self.find_htlc(Side::Holder, id).ok_or(peer_error(Misbehaviour::UnknownHtlc))?;
        let payment_hash = h.payment_hash;
        let mut event = None;
        if let Resolution::Fulfill(p) = &resolution {
            if !payment_hash.is_unlocked_by(p) {
                return Err(peer_error(Misbehaviour::WrongPreimage));
            }
            event = Some(Event::HtlcFulfilled { id, payment_hash, preimage: *p });
        }
        self.next_seq = seq;
        if let Some(h) = self.find_htlc_mut(Side::Holder, id) {
            h.remove = Some((resolution, Progress::new(Side::Counterparty)));
            h.remove_seq = seq;
        }
        let mut fx = self.persist();
        fx.events.extend(event);
        Ok(fx)
    }

    pub(crate) fn on_update_fee(&mut self, feerate_per_kw: u32) -> Result<Effects, PeerError> {
        if !self.is_open_for_updates() {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        }
        if self.is_funder {
            return Err(peer_error(Misbehaviour::NotFunder));
        }
        if feerate_per_kw < self.config.min_feerate || feerate_per_kw > self.config.max_feerate {
            return Err(peer_error(Misbehaviour::Feerate));
        }
        let seq = self.next_seq + 1;
        let mut next = self.clone();
        next.supersede_fee_updates(Side::Counterparty);
        next.fee_updates.push(FeeUpdate { feerate_per_kw, progress: Progress::new(Side::Counterparty), seq });
        next.check_offer_limits(Side::Counterparty, 1).map_err(|_| peer_error(Misbehaviour::Feerate))?;
        next.next_seq = seq;
        *self = next;
        Ok(self.persist())
    }

    pub(crate) fn on_commitment_signed<S: Signer + ?Sized>(
        &mut self,
        signature: Signature,
        htlc_signatures: Vec<Signature>,
        signer: &S,
    ) -> Result<Effects, PeerError> {
        if !self.is_open_for_updates() {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        }
        if !self.has_pending_for(Side::Holder) {
            return Err(peer_error(Misbehaviour::NoChanges));
        }
        let mut next = self.clone();
        for h in &mut next.htlcs {
            h.advance(Step::RecvCommit);
        }
        for f in &mut next.fee_updates {
            f.progress.advance(Step::RecvCommit);
        }
        let number = next.holder_commitment + 1;
        let n = CommitmentNumber::new(number).ok_or(peer_error(Misbehaviour::UnexpectedMessage))?;
        let point = match self.holder_next_point {
            Some((m, point)) if m == number => point,
            _ => *signer.per_commitment_point(n).map_err(|e| peer_error(Misbehaviour::Signer(e)))?.public_key(),
        };
        let view = next.view(Side::Holder);
        let built = next.build(Side::Holder, number, &point, &view).map_err(peer_error)?;
        let htlc_type = if self.channel_type.has_anchors() {
            EcdsaSighashType::SinglePlusAnyoneCanPay
        } else {
            EcdsaSighashType::All
        };
        let sigs = CommitmentSignatures {
            commitment: ecdsa::Signature { signature, sighash_type: EcdsaSighashType::All },
            htlcs: htlc_signatures
                .into_iter()
                .map(|s| ecdsa::Signature { signature: s, sighash_type: htlc_type })
                .collect(),
        };
        let funding = next.counterparty_params()?.pubkeys.funding;
        verify_holder_signatures(&self.secp, &built, &funding, &sigs)
            .map_err(|e| peer_error(Misbehaviour::BadSignature(e)))?;
        next.holder_signatures = Some(sigs);
        next.holder_commitment = number;
        // Revoke the previous commitment.
        let raa = next.revoke_previous(signer).map_err(|e| peer_error(Misbehaviour::Signer(e)))?;
        let (records, events) = next.forget_resolved();
        let mut send = alloc::vec![raa];
        if next.has_pending_for(Side::Counterparty) && !next.awaiting_revoke {
            send.push(next.sign_next_counterparty(signer).map_err(|_| peer_error(Misbehaviour::Keys))?);
        }
        *self = next;
        let mut fx = self.persist_with(records);
        fx.send = send;
        fx.events = events;
        self.after_update(&mut fx, signer);
        Ok(fx)
    }

    /// Builds our `revoke_and_ack` for the commitment before our latest, advancing the updates.
    pub(crate) fn revoke_previous<S: Signer + ?Sized>(
        &mut self,
        signer: &S,
    ) -> Result<Msg, crate::core::sign::SignerError> {
        let revoked = CommitmentNumber::new(self.holder_commitment.saturating_sub(1)).unwrap_or(CommitmentNumber::ZERO);
        let next = CommitmentNumber::new(self.holder_commitment + 1).unwrap_or(CommitmentNumber::MAX);
        let secret = signer.release_per_commitment_secret(revoked)?;
        let point = signer.per_commitment_point(next)?;
        for h in &mut self.htlcs {
            h.advance(Step::SentRevoke);
        }
        for f in &mut self.fee_updates {
            f.progress.advance(Step::SentRevoke);
        }
        self.revoke_sent_last = true;
        self.holder_next_point = Some((next.to_u64(), *point.public_key()));
        Ok(Msg::RevokeAndAck {
            channel_id: self.channel_id,
            per_commitment_secret: secret,
            next_per_commitment_point: *point.public_key(),
        })
    }

    pub(crate) fn on_revoke_and_ack<S: Signer + ?Sized>(
        &mut self,
        secret: PerCommitmentSecret,
        next_point: PublicKey,
        signer: &S,
    ) -> Result<Effects, PeerError> {
        if !self.is_open_for_updates() || !self.awaiting_revoke {
            return Err(peer_error(Misbehaviour::BadRevocation));
        }
        let revoked = self.counterparty_commitment.saturating_sub(1);
        let expected = self.counterparty_prev_point.ok_or(peer_error(Misbehaviour::BadRevocation))?;
        let Ok(point) = secret.point(&self.secp) else {
            return Err(peer_error(Misbehaviour::BadRevocation));
        };
        if *point.public_key() != expected {
            return Err(peer_error(Misbehaviour::BadRevocation));
        }
        let mut next = self.clone();
        next.secrets.insert(MAX_INDEX - revoked, &secret).map_err(|_| peer_error(Misbehaviour::BadRevocation))?;
        next.awaiting_revoke = false;
        next.counterparty_prev_point = None;
        next.counterparty_next_point = Some(next_point);
        let mut events = Vec::new();
        for h in &mut next.htlcs {
            let was_committed = h.is_irrevocably_committed();
            let was_removed = h.is_removed();
            h.advance(Step::RecvRevoke);
            if h.offerer == Side::Counterparty && !was_committed && h.is_irrevocably_committed() {
                events.push(Event::HtlcReceived {
                    id: h.id,
                    amount: h.amount,
                    payment_hash: h.payment_hash,
                    cltv_expiry: h.cltv_expiry,
                    onion: h.onion.clone(),
                });
            }
            if h.offerer == Side::Holder && !was_removed && h.is_removed() {
                if let Some((Resolution::Fail(_) | Resolution::FailMalformed { .. }, _)) = h.remove {
                    events.push(Event::HtlcFailed { id: h.id, payment_hash: h.payment_hash });
                }
            }
        }
        for f in &mut next.fee_updates {
            f.progress.advance(Step::RecvRevoke);
        }
        let (records, more) = next.forget_resolved();
        events.extend(more);
        let mut send = Vec::new();
        if next.has_pending_for(Side::Counterparty) {
            send.push(next.sign_next_counterparty(signer).map_err(|_| peer_error(Misbehaviour::Keys))?);
        }
        *self = next;
        let mut fx = self.persist_with(records);
        fx.send = send;
        fx.events = events;
        self.after_update(&mut fx, signer);
        Ok(fx)
    }

    /// Drops HTLCs whose removal is irrevocable on both sides (settling their value) and fee
    /// updates in force on both sides; returns the penalty records to append and the events.
    pub(crate) fn forget_resolved(&mut self) -> (Vec<Vec<u8>>, Vec<Event>) {
        let mut records = Vec::new();
        let mut events = Vec::new();
        let mut kept = Vec::with_capacity(self.htlcs.len());
        for h in core::mem::take(&mut self.htlcs) {
            if !h.is_removed() {
                kept.push(h);
                continue;
            }
            let fulfilled = h.preimage().is_some();
            let (from, to) = match h.offerer {
                Side::Holder => (&mut self.settled_holder, &mut self.settled_counterparty),
                Side::Counterparty => (&mut self.settled_counterparty, &mut self.settled_holder),
            };
            if fulfilled {
                *from = from.saturating_sub(h.amount);
                *to = to.saturating_add(h.amount);
            }
            if let (Some(first), Some(gone)) = (h.first_remote_commitment, h.removed_from_remote) {
                let record = PenaltyRecord {
                    offerer: h.offerer,
                    id: h.id,
                    amount: h.amount,
                    payment_hash: h.payment_hash,
                    cltv_expiry: h.cltv_expiry,
                    first_commitment: first,
                    last_commitment: gone.saturating_sub(1),
                };
                records.push(record.encode());
            }
            events.push(Event::HtlcResolved { offerer: h.offerer, id: h.id });
        }
        self.htlcs = kept;
        if let Some(latest) =
            self.fee_updates.iter().filter(|f| f.progress.stage == Stage::Committed).max_by_key(|f| f.seq)
        {
            let (feerate, seq) = (latest.feerate_per_kw, latest.seq);
            self.feerate = feerate;
            self.fee_updates.retain(|f| f.seq > seq);
        }
        (records, events)
    }

    /// Our balance we could still offer now (after reserve and, as funder, fees), an estimate.
    pub fn available_to_send(&self) -> MilliSats {
        let view = self.projected_view(Side::Counterparty);
        let (fee, _) = self.fee_and_dust(Side::Counterparty, &view, FEE_SPIKE_MULTIPLE);
        let reserve = self
            .counterparty
            .as_ref()
            .and_then(|c| MilliSats::from_amount(c.channel_reserve))
            .unwrap_or(MilliSats::ZERO);
        let mut b = view.to_other.saturating_sub(reserve);
        if self.is_funder {
            b = b.saturating_sub(fee);
        }
        b
    }

    /// The fee rate of our latest commitment.
    pub fn feerate(&self) -> u32 {
        self.view(Side::Holder).feerate
    }
}

/// The fee of a closing transaction paying both scripts at `feerate`.
pub(crate) fn closing_fee(feerate: u32, weight: u64) -> Amount {
    Amount::from_sat(u64::from(feerate) * weight / 1000)
}
