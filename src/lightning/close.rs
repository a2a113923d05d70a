//! Cooperative close: `shutdown`, then fee negotiation with `closing_signed` and `fee_range`
//! (BOLT #2 "Channel Close"), once no HTLC remains.

use bitcoin::secp256k1::ecdsa::Signature;
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::{ecdsa, Amount, ScriptBuf, Transaction};

use super::channel::{Channel, Phase};
use super::htlc::Side;
use super::msgs::Msg;
use super::{peer_error, CommandError, Effects, Event, Misbehaviour, PeerError};
use crate::core::commitment::closing::closing_tx;
use crate::core::commitment::signatures::sign_funding_spend;
use crate::core::script;
use crate::core::sign::{self, Signer};

/// Weight of a closing transaction with two P2WSH-sized outputs (an upper bound used for the fee).
const CLOSING_WEIGHT: u64 = 4 * (4 + 1 + 36 + 1 + 4 + 1 + 2 * 43 + 4) + (1 + 1 + 1 + 73 + 73 + 72) + 2;

impl Channel {
    /// Starts (or answers) a cooperative close: sends `shutdown` with our payout script. From now
    /// on no new HTLCs are added; once none remain, the funder proposes a fee within
    /// `fee_range` (satoshi, inclusive) and the sides agree on a closing transaction.
    ///
    /// BOLT #2 forbids a `shutdown` while updates we sent are not yet covered by our
    /// `commitment_signed` (LDK fails the channel). So if some are, they are signed first (the
    /// `commitment_signed` goes out before the `shutdown`), or, while we wait for the peer's
    /// `revoke_and_ack`, the `shutdown` is held (persisted in the snapshot) and sent right after
    /// the `commitment_signed` that follows that revocation. Nothing more is needed from the
    /// caller.
    ///
    /// `script` must be a standard payout script under
    /// [`ChannelConfig::shutdown_policy`](super::ChannelConfig::shutdown_policy) (BOLT #2: P2PKH,
    /// P2SH, P2WPKH, P2WSH, and with `shutdown_anysegwit` every witness program of versions
    /// 1..=16, P2TR included).
    ///
    /// # Errors
    /// [`CommandError::WrongPhase`] if the channel is not open or our `shutdown` was already
    /// requested; [`CommandError::NonStandardScript`] for a script nodes would not relay (the
    /// close could never confirm); [`CommandError::Amount`] for an empty fee range;
    /// [`CommandError::Signer`] if signing our pending updates fails;
    /// [`CommandError::WrongSigner`] if `signer` is not the channel's ([`Channel::check_signer`]).
    pub fn shutdown<S: Signer + ?Sized>(
        &mut self,
        script: ScriptBuf,
        fee_range: (Amount, Amount),
        signer: &S,
    ) -> Result<Effects, CommandError> {
        self.check_signer(signer)?;
        if !matches!(self.phase, Phase::Normal | Phase::ShuttingDown)
            || self.shutdown.holder_script.is_some()
            || self.is_off_chain_over()
        {
            return Err(CommandError::WrongPhase);
        }
        if !self.config.shutdown_policy().allows(&script) {
            return Err(CommandError::NonStandardScript);
        }
        if fee_range.0 > fee_range.1 {
            return Err(CommandError::Amount);
        }
        let mut next = self.clone();
        // Held (`holder_sent` false) until none of our updates waits for our signature.
        next.shutdown.holder_script = Some(script);
        next.shutdown.fee_range = Some(fee_range);
        next.phase = Phase::ShuttingDown;
        let mut fx = if next.has_own_unsigned_updates() && !next.awaiting_revoke {
            next.commit(signer)?
        } else {
            next.persist()
        };
        next.after_update(&mut fx, signer);
        *self = next;
        Ok(fx)
    }

    /// Whether updates we sent wait for our `commitment_signed` (BOLT #2: "updates pending on the
    /// receiving node's commitment transaction").
    pub(crate) fn has_own_unsigned_updates(&self) -> bool {
        self.has_unsigned_updates_from(Side::Holder)
    }

    fn has_unsigned_updates_from(&self, sender: Side) -> bool {
        let announced = |p: &super::htlc::Progress| p.sender == sender && p.stage == super::htlc::Stage::Announced;
        self.htlcs.iter().any(|h| announced(&h.add) || h.remove.as_ref().is_some_and(|(_, p)| announced(p)))
            || self.fee_updates.iter().any(|f| announced(&f.progress))
    }

    /// Sends our held `shutdown` once every update we sent is signed.
    fn release_shutdown(&mut self) -> Effects {
        let Some(script) = self.shutdown.holder_script.clone() else { return Effects::none() };
        if self.shutdown.holder_sent || self.has_own_unsigned_updates() || self.is_off_chain_over() {
            return Effects::none();
        }
        self.shutdown.holder_sent = true;
        let mut fx = self.persist();
        fx.send.push(Msg::Shutdown { channel_id: self.channel_id, scriptpubkey: script });
        fx
    }

    pub(crate) fn on_shutdown<S: Signer + ?Sized>(
        &mut self,
        script: ScriptBuf,
        signer: &S,
    ) -> Result<Effects, PeerError> {
        if self.shutdown.counterparty_script.as_ref() == Some(&script) {
            // The same `shutdown` again: the peer retransmits it after a reconnection (BOLT #2),
            // and the fee negotiation resumes.
            return Ok(self.resume_closing(signer));
        }
        if !matches!(self.phase, Phase::Normal | Phase::ShuttingDown) || self.shutdown.counterparty_script.is_some() {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        }
        if self.has_unsigned_updates_from(Side::Counterparty) {
            // BOLT #2: no `shutdown` while the sender's updates are not yet signed. Nothing is at
            // stake: refuse it (warning and disconnection); reconnecting forgets those updates
            // and the peer sends its `shutdown` again.
            return Err(peer_error(Misbehaviour::Shutdown));
        }
        if !self.config.shutdown_policy().allows(&script) {
            return Err(peer_error(Misbehaviour::NonStandardScript));
        }
        self.shutdown.counterparty_script = Some(script);
        self.phase = Phase::ShuttingDown;
        let mut fx = self.persist();
        if !self.shutdown.holder_sent {
            fx.events.push(Event::ShutdownReceived);
        }
        fx.merge(self.maybe_propose_closing(signer));
        Ok(fx)
    }

    /// After a reconnection: our last `closing_signed` again, if the negotiation had started (the
    /// proposal or counter-proposal is re-signed for the same fee, so the signature is the same),
    /// or our agreement if we already agreed and the peer may not have it.
    fn resume_closing<S: Signer + ?Sized>(&mut self, signer: &S) -> Effects {
        let negotiating = self.phase == Phase::ShuttingDown && self.is_quiescent();
        let agreed = self.phase == Phase::Closed && self.shutdown.closing_tx.is_some();
        let (Some(fee), Some((min, max))) = (self.shutdown.last_fee_sent, self.shutdown.fee_range) else {
            return Effects::none();
        };
        if !(negotiating || agreed) {
            return Effects::none();
        }
        let Some(tx) = self.closing_tx_with_fee(fee) else { return Effects::none() };
        let Some(sig) = self.sign_closing(&tx, signer) else { return Effects::none() };
        let mut fx = self.persist();
        fx.send.push(Msg::ClosingSigned {
            channel_id: self.channel_id,
            fee_satoshis: fee,
            signature: sig.signature,
            fee_range: Some((min, max)),
        });
        fx
    }

    /// Whether every HTLC and update is gone and nothing waits for a signature.
    fn is_quiescent(&self) -> bool {
        self.htlcs.is_empty() && self.fee_updates.is_empty() && !self.awaiting_revoke
    }

    /// The closing transaction paying `fee` (taken from the funder).
    pub(crate) fn closing_tx_with_fee(&self, fee: Amount) -> Option<Transaction> {
        let ours = self.shutdown.holder_script.clone()?;
        let theirs = self.shutdown.counterparty_script.clone()?;
        let funding = self.funding_outpoint?;
        let (mut h, mut c) = (self.settled_holder.to_amount_floor(), self.settled_counterparty.to_amount_floor());
        let funder = if self.is_funder { &mut h } else { &mut c };
        *funder = funder.checked_sub(fee)?;
        let dust = self.holder.dust_limit.max(self.counterparty.as_ref()?.dust_limit);
        Some(closing_tx(funding, &[(ours, h), (theirs, c)], dust))
    }

    fn sign_closing<S: Signer + ?Sized>(&self, tx: &Transaction, signer: &S) -> Option<ecdsa::Signature> {
        let p = self.commitment_params(Side::Holder)?;
        sign_funding_spend(signer, tx, 0, &p.funding_script(), self.capacity).ok()
    }

    /// (Funder) proposes a closing fee once both shutdowns are exchanged and no HTLC remains.
    pub(crate) fn maybe_propose_closing<S: Signer + ?Sized>(&mut self, signer: &S) -> Effects {
        let ready = self.is_funder
            && self.shutdown.holder_sent
            && self.shutdown.counterparty_script.is_some()
            && self.shutdown.last_fee_sent.is_none()
            && self.is_quiescent();
        let Some((min, max)) = self.shutdown.fee_range.filter(|_| ready) else { return Effects::none() };
        let fee = super::normal::closing_fee(self.feerate, CLOSING_WEIGHT).clamp(min, max);
        let Some(tx) = self.closing_tx_with_fee(fee) else { return Effects::none() };
        let Some(sig) = self.sign_closing(&tx, signer) else { return Effects::none() };
        self.shutdown.last_fee_sent = Some(fee);
        let mut fx = self.persist();
        fx.send.push(Msg::ClosingSigned {
            channel_id: self.channel_id,
            fee_satoshis: fee,
            signature: sig.signature,
            fee_range: Some((min, max)),
        });
        fx
    }

    /// Called after each update so a pending shutdown proceeds: our held `shutdown` goes out once
    /// our updates are signed, the fee negotiation once the channel is empty.
    pub(crate) fn after_update<S: Signer + ?Sized>(&mut self, fx: &mut Effects, signer: &S) {
        if self.phase == Phase::ShuttingDown {
            let released = self.release_shutdown();
            fx.merge(released);
            let more = self.maybe_propose_closing(signer);
            fx.merge(more);
        }
    }

    pub(crate) fn on_closing_signed<S: Signer + ?Sized>(
        &mut self,
        fee: Amount,
        signature: Signature,
        their_range: Option<(Amount, Amount)>,
        signer: &S,
    ) -> Result<Effects, PeerError> {
        if self.phase == Phase::Closed
            && self.closing_tx_with_fee(fee).map(|t| t.compute_txid())
                == self.shutdown.closing_tx.as_ref().map(Transaction::compute_txid)
        {
            // The agreement again (resent after a reconnection): nothing left to do.
            return Ok(Effects::none());
        }
        if self.phase != Phase::ShuttingDown
            || self.shutdown.counterparty_script.is_none()
            || !self.shutdown.holder_sent
            || !self.is_quiescent()
        {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        }
        let (min, max) = self.shutdown.fee_range.ok_or(peer_error(Misbehaviour::UnexpectedMessage))?;
        let tx = self.closing_tx_with_fee(fee).ok_or(peer_error(Misbehaviour::ClosingFee))?;
        let p = self.commitment_params(Side::Holder).ok_or(peer_error(Misbehaviour::UnexpectedMessage))?;
        let ws = p.funding_script();
        let msg = sign::p2wsh_sighash(&tx, 0, ws.as_script(), self.capacity, EcdsaSighashType::All)
            .map_err(|_| peer_error(Misbehaviour::ClosingFee))?;
        let theirs = ecdsa::Signature { signature, sighash_type: EcdsaSighashType::All };
        let cp_funding = self.counterparty_params()?.pubkeys.funding;
        let _valid =
            sign::verify(&self.secp, &msg, &theirs, cp_funding.public_key(), EcdsaSighashType::All).map_err(|e| {
                peer_error(Misbehaviour::BadSignature(
                    crate::core::commitment::signatures::CommitmentSigError::Commitment(e),
                ))
            })?;

        let agreed = self.shutdown.last_fee_sent == Some(fee) || (min..=max).contains(&fee);
        if agreed {
            let ours = self
                .sign_closing(&tx, signer)
                .ok_or(peer_error(Misbehaviour::Signer(crate::core::sign::SignerError::Sighash)))?;
            let mut signed = tx;
            if let Some(input) = signed.input.first_mut() {
                input.witness =
                    script::funding_witness(&ws, (&self.holder.pubkeys.funding, &ours), (&cp_funding, &theirs));
            }
            let reply = (self.shutdown.last_fee_sent != Some(fee)).then_some(Msg::ClosingSigned {
                channel_id: self.channel_id,
                fee_satoshis: fee,
                signature: ours.signature,
                fee_range: Some((min, max)),
            });
            self.shutdown.last_fee_sent = Some(fee);
            self.shutdown.closing_tx = Some(signed.clone());
            self.phase = Phase::Closed;
            let txid = signed.compute_txid();
            let mut fx = self.persist();
            fx.send.extend(reply);
            fx.broadcast.push(signed);
            fx.events.push(Event::ClosingBroadcast { txid, fee });
            return Ok(fx);
        }
        // Counter-propose inside the overlap of both ranges.
        let (their_min, their_max) = their_range.ok_or(peer_error(Misbehaviour::ClosingFee))?;
        let (lo, hi) = (min.max(their_min), max.min(their_max));
        if lo > hi || self.is_funder {
            return Err(peer_error(Misbehaviour::ClosingFee));
        }
        let counter = fee.clamp(lo, hi);
        let tx = self.closing_tx_with_fee(counter).ok_or(peer_error(Misbehaviour::ClosingFee))?;
        let ours = self.sign_closing(&tx, signer).ok_or(peer_error(Misbehaviour::ClosingFee))?;
        self.shutdown.last_fee_sent = Some(counter);
        let mut fx = self.persist();
        fx.send.push(Msg::ClosingSigned {
            channel_id: self.channel_id,
            fee_satoshis: counter,
            signature: ours.signature,
            fee_range: Some((lo, hi)),
        });
        Ok(fx)
    }

    /// The agreed closing transaction, once broadcast.
    pub fn closing_transaction(&self) -> Option<&Transaction> {
        self.shutdown.closing_tx.as_ref()
    }
}
