//! Normal operation (BOLT #2): HTLC additions and removals, fee updates, `commitment_signed` and
//! `revoke_and_ack`, with every limit of the receiving side enforced.

use alloc::vec::Vec;

use bitcoin::secp256k1::{ecdsa::Signature, PublicKey};
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::{ecdsa, Amount};

use super::channel::{Channel, Phase};
use super::htlc::{FeeUpdate, Htlc, Progress, Resolution, Side, Stage, Step};
use super::limits::{Breach, FEE_SPIKE_MULTIPLE};
use super::msgs::{Msg, OnionPacket};
use super::records::PenaltyRecord;
use super::{peer_error, CommandError, Effects, Event, HtlcFailure, HtlcRefusal, Misbehaviour, PeerError};
use crate::core::commitment::signatures::{
    sign_counterparty_commitment, verify_holder_signatures, CommitmentSignatures,
};
use crate::core::commitment::CommitmentNumber;
use crate::core::hashlock::{PaymentHash, PaymentPreimage};
use crate::core::keys::PerCommitmentSecret;
use crate::core::shachain::MAX_INDEX;
use crate::core::sign::Signer;
use crate::core::units::MilliSats;

impl Channel {
    /// Whether updates may still be offered or accepted: the channel is open, no closing fee was
    /// proposed yet (BOLT #2: no update once `closing_signed` is under way) and the channel is not
    /// being resolved on chain.
    fn is_open_for_updates(&self) -> bool {
        matches!(self.phase, Phase::Normal | Phase::ShuttingDown)
            && self.shutdown.last_fee_sent.is_none()
            && !self.is_off_chain_over()
    }

    /// Offers an HTLC to the peer and sends `update_add_htlc`; call [`Channel::commit`] to sign it.
    /// Returns the HTLC's id.
    ///
    /// # Errors
    /// [`CommandError`] if the channel cannot take it now, the amount or expiry is invalid, or a
    /// limit of the peer (count, in flight, reserve, dust exposure) or our fee buffer would break;
    /// [`CommandError::HtlcExpiry`] if `cltv_expiry` is below the last tip given to
    /// [`Channel::handle_chain`] plus [`HtlcDeadlines::claim_margin`](super::HtlcDeadlines::claim_margin).
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
        if self.expires_too_soon(cltv_expiry, self.tip) {
            return Err(CommandError::HtlcExpiry);
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
            refusal: None,
        };
        let mut next = self.clone();
        next.htlcs.push(htlc);
        next.check_update(Side::Holder, FEE_SPIKE_MULTIPLE, self).map_err(|e| match e {
            Breach::HtlcLimits => CommandError::Limits,
            Breach::DustExposure => CommandError::DustExposure,
            Breach::OffererCannotAfford | Breach::FeeSpikeBuffer => CommandError::CannotAfford,
            Breach::FunderCannotPayFee => CommandError::PeerCannotPayFee,
        })?;
        next.next_seq = seq;
        next.next_holder_htlc_id += 1;
        *self = next;
        // Not covered by a `commitment_signed` yet: in memory only (the onion record goes with
        // the next write).
        self.pending_onions.push((Side::Holder, id));
        let mut fx = self.unpersisted();
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

    /// The effects of an update not covered by a `commitment_signed`: kept in memory, it goes with
    /// the next durable write (the [persistence contract](crate::driving#persistence)).
    fn unpersisted(&self) -> Effects {
        let mut fx = Effects::none();
        fx.next_deadline = self.next_deadline();
        fx
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
        // A refused HTLC is only ever failed: its refusal is a safety rule (e.g. too little time
        // left to settle it), not a suggestion.
        let refused = self.find_htlc(Side::Counterparty, id).is_some_and(|h| h.refusal.is_some());
        if refused && matches!(resolution, Resolution::Fulfill(_)) {
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
        let mut fx = self.unpersisted();
        fx.send.push(msg);
        Ok(fx)
    }

    /// Fulfils an HTLC offered to us (sends `update_fulfill_htlc`). Until the peer has signed the
    /// removal away, the channel claims the HTLC on chain by itself once the tip passes
    /// `cltv_expiry - claim_margin` ([`HtlcDeadlines`](super::HtlcDeadlines)).
    ///
    /// # Errors
    /// [`CommandError::UnknownHtlc`] unless the HTLC is irrevocably committed and not yet removed;
    /// [`CommandError::WrongPreimage`]; [`CommandError::HtlcExpiry`] once the last tip given to
    /// [`Channel::handle_chain`] passed `cltv_expiry - claim_margin`: the peer could time the
    /// HTLC out before the fulfilment is signed, so the preimage is not revealed (fail the HTLC
    /// instead, or, having paid for the preimage downstream, hand it to
    /// [`Channel::provide_preimage`]: the channel then claims the HTLC on chain).
    pub fn fulfill_htlc(&mut self, id: u64, preimage: PaymentPreimage) -> Result<Effects, CommandError> {
        let h = self.find_htlc(Side::Counterparty, id).ok_or(CommandError::UnknownHtlc)?;
        if !h.payment_hash.is_unlocked_by(&preimage) {
            return Err(CommandError::WrongPreimage);
        }
        if self.removable(Side::Counterparty, id) && self.expires_too_soon(h.cltv_expiry, self.tip) {
            return Err(CommandError::HtlcExpiry);
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

    /// Leaves the HTLCs the channel refuses ([`Event::HtlcRefused`]) for the embedder to fail,
    /// instead of failing them back itself with a plain failure message the origin cannot
    /// attribute to this hop (it is not wrapped with the onion's shared secret, which needs the
    /// node key). With `on`, answer each refusal at once with [`Channel::fail_htlc`] or
    /// [`Channel::fail_malformed_htlc`] (then [`Channel::commit`]) as
    /// [`network::receive::answer_refusal`](crate::network::receive::answer_refusal) says;
    /// [`multihop::Forwarder::with_onions`](crate::multihop::Forwarder::with_onions) does it for
    /// its incoming channel. A refused HTLC is never settled either way ([`Channel::fulfill_htlc`]
    /// refuses it) and [`Channel::refused_htlcs`] lists those still to fail.
    ///
    /// Not persisted (like the node key it relies on): set it again after every restore.
    pub fn defer_refusals(&mut self, on: bool) {
        self.defer_refusals = on;
    }

    /// HTLCs offered to us that the channel refused ([`Event::HtlcRefused`]) and that are not
    /// yet being failed: with [`Channel::defer_refusals`], those the embedder still has to fail
    /// (e.g. after a crash between persisting and failing).
    pub fn refused_htlcs(&self) -> Vec<(u64, HtlcRefusal)> {
        self.htlcs
            .iter()
            .filter(|h| h.offerer == Side::Counterparty && h.remove.is_none() && h.is_irrevocably_committed())
            .filter_map(|h| h.refusal.map(|r| (h.id, r)))
            .collect()
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
        next.check_update(Side::Holder, 1, self).map_err(|e| match e {
            Breach::DustExposure => CommandError::DustExposure,
            _ => CommandError::Fee,
        })?;
        if !next.fee_update_leaves_room() {
            return Err(CommandError::Fee);
        }
        next.next_seq = seq;
        *self = next;
        let mut fx = self.unpersisted();
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
    /// [`CommandError::NothingToCommit`] if nothing changed;
    /// [`CommandError::WrongSigner`] if `signer` is not the channel's ([`Channel::check_signer`]).
    pub fn commit<S: Signer + ?Sized>(&mut self, signer: &S) -> Result<Effects, CommandError> {
        self.check_signer(signer)?;
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
            refusal: None,
        });
        // A hard limit broken is a protocol violation; our own policy (dust exposure, the fee
        // spike buffer we keep as funder) the peer could not know: the HTLC is taken and failed
        // back once irrevocably committed, never forwarded or settled.
        match next.check_update(Side::Counterparty, 1, self) {
            Ok(()) => {}
            Err(Breach::DustExposure) => next.mark_refused(id, HtlcRefusal::DustExposure),
            Err(Breach::FeeSpikeBuffer) => next.mark_refused(id, HtlcRefusal::FeeSpikeBuffer),
            Err(Breach::HtlcLimits) => return Err(peer_error(Misbehaviour::HtlcLimits)),
            Err(Breach::OffererCannotAfford | Breach::FunderCannotPayFee) => {
                return Err(peer_error(Misbehaviour::CannotAfford))
            }
        }
        next.next_seq = seq;
        next.next_counterparty_htlc_id += 1;
        *self = next;
        self.pending_onions.push((Side::Counterparty, id));
        Ok(self.unpersisted())
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
        let mut fx = self.unpersisted();
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
        if !self.acceptable_feerate(feerate_per_kw) {
            return Err(peer_error(Misbehaviour::Feerate));
        }
        let seq = self.next_seq + 1;
        let mut next = self.clone();
        next.supersede_fee_updates(Side::Counterparty);
        next.fee_updates.push(FeeUpdate { feerate_per_kw, progress: Progress::new(Side::Counterparty), seq });
        next.check_update(Side::Counterparty, 1, self).map_err(|e| {
            peer_error(match e {
                Breach::DustExposure => Misbehaviour::DustExposure,
                _ => Misbehaviour::Feerate,
            })
        })?;
        next.next_seq = seq;
        *self = next;
        Ok(self.unpersisted())
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
        tip: crate::core::units::BlockHeight,
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
        let mut refused = Vec::new();
        for h in &mut next.htlcs {
            let was_committed = h.is_irrevocably_committed();
            let was_removed = h.is_removed();
            h.advance(Step::RecvRevoke);
            if h.offerer == Side::Counterparty && !was_committed && h.is_irrevocably_committed() {
                if let Some(reason) = h
                    .refusal
                    .or_else(|| self.expires_too_soon(h.cltv_expiry, tip).then_some(HtlcRefusal::ExpiryTooSoon))
                {
                    if self.defer_refusals {
                        // Kept (and persisted) so that it is never settled: the embedder fails it.
                        h.refusal = Some(reason);
                    }
                    refused.push((h.id, reason));
                    continue;
                }
                events.push(Event::HtlcReceived {
                    id: h.id,
                    amount: h.amount,
                    payment_hash: h.payment_hash,
                    cltv_expiry: h.cltv_expiry,
                    onion: h.onion.clone(),
                });
            }
            if h.offerer == Side::Holder && !was_removed && h.is_removed() {
                let failure = match &h.remove {
                    Some((Resolution::Fail(reason), _)) => Some(HtlcFailure::Reason(reason.clone())),
                    Some((Resolution::FailMalformed { sha256_of_onion, failure_code }, _)) => {
                        Some(HtlcFailure::Malformed { sha256_of_onion: *sha256_of_onion, failure_code: *failure_code })
                    }
                    _ => None,
                };
                if let Some(failure) = failure {
                    events.push(Event::HtlcFailed { id: h.id, payment_hash: h.payment_hash, failure });
                }
            }
        }
        for f in &mut next.fee_updates {
            f.progress.advance(Step::RecvRevoke);
        }
        let (records, more) = next.forget_resolved();
        events.extend(more);
        let mut send = Vec::new();
        for (id, reason) in refused {
            if !next.defer_refusals {
                send.push(next.fail_back(id, reason));
            }
            if let Some(h) = next.find_htlc(Side::Counterparty, id) {
                let (amount, payment_hash, cltv_expiry, onion) =
                    (h.amount, h.payment_hash, h.cltv_expiry, h.onion.clone());
                events.push(Event::HtlcRefused { id, payment_hash, reason, amount, cltv_expiry, onion });
            }
        }
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

    /// Marks an HTLC offered to us to be failed back once committed.
    fn mark_refused(&mut self, id: u64, reason: HtlcRefusal) {
        if let Some(h) = self.find_htlc_mut(Side::Counterparty, id) {
            h.refusal = Some(reason);
        }
    }

    /// Starts failing back a refused HTLC offered to us (now irrevocably committed); returns the
    /// `update_fail_htlc` to send before the `commitment_signed` that covers it.
    fn fail_back(&mut self, id: u64, reason: HtlcRefusal) -> Msg {
        let seq = self.next_seq();
        let bytes = reason.reason();
        if let Some(h) = self.find_htlc_mut(Side::Counterparty, id) {
            h.remove = Some((Resolution::Fail(bytes.clone()), Progress::new(Side::Holder)));
            h.remove_seq = seq;
        }
        Msg::UpdateFailHtlc { channel_id: self.channel_id, id, reason: bytes }
    }

    /// Whether the peer's fee rate is acceptable: within the configured bounds and, once we have
    /// an estimate, within the configured share and multiple of it.
    pub(crate) fn acceptable_feerate(&self, feerate_per_kw: u32) -> bool {
        let c = &self.config;
        let absolute = feerate_per_kw >= c.min_feerate && feerate_per_kw <= c.max_feerate;
        absolute
            && self.fee_estimate.is_none_or(|e| {
                let (f, e) = (u64::from(feerate_per_kw), u64::from(e));
                f * 100 >= e * u64::from(c.min_feerate_percent_of_estimate)
                    && f <= e.saturating_mul(u64::from(c.max_feerate_multiple_of_estimate))
            })
    }

    /// Takes the embedder's current fee estimate for commitment transactions (sat per 1000
    /// weight): a sans-I/O input like the chain tip. Feed it when the channel is created, after
    /// every restore and whenever the estimate moves.
    ///
    /// The peer's `update_fee` is then judged against it
    /// ([`ChannelConfig::min_feerate_percent_of_estimate`](super::ChannelConfig::min_feerate_percent_of_estimate)
    /// and [`max_feerate_multiple_of_estimate`](super::ChannelConfig::max_feerate_multiple_of_estimate)),
    /// the dust-exposure limit follows it, and, as funder, the channel sends `update_fee` by itself
    /// (returned here; call [`Channel::commit`] to sign it) once the estimate, kept within
    /// `min_feerate..=max_feerate`, is more than
    /// [`fee_update_margin_percent`](super::ChannelConfig::fee_update_margin_percent) away from the
    /// rate of our latest fee update, if we can afford it.
    pub fn handle_fee_estimate(&mut self, feerate_per_kw: u32) -> Effects {
        self.fee_estimate = Some(feerate_per_kw);
        if !self.is_funder || !self.is_open_for_updates() {
            return Effects::none();
        }
        let target = feerate_per_kw.clamp(self.config.min_feerate.max(253), self.config.max_feerate.max(253));
        let current = u64::from(self.projected_view(Side::Counterparty).feerate);
        let margin = current * u64::from(self.config.fee_update_margin_percent) / 100;
        if u64::from(target).abs_diff(current) <= margin {
            return Effects::none();
        }
        self.update_fee(target).unwrap_or_else(|_| Effects::none())
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
