//! Disconnection and `channel_reestablish` (BOLT #2 "Message Retransmission").

use alloc::vec::Vec;

use super::channel::{Channel, Phase};
use super::htlc::{Resolution, Side, Stage};
use super::msgs::Msg;
use super::{peer_error, Effects, Event, Misbehaviour, PeerError};
use crate::core::commitment::CommitmentNumber;
use crate::core::keys::PerCommitmentSecret;
use crate::core::sign::Signer;

impl Channel {
    /// The connection dropped: forget the peer's updates that no `commitment_signed` covered
    /// (it will forget them too, BOLT #2). Ours are kept and sent again on reconnection.
    pub fn handle_disconnect(&mut self) -> Effects {
        self.refused_on_this_connection = false;
        let mut lowest_dropped = None;
        self.htlcs.retain(|h| {
            let drop = h.offerer == Side::Counterparty
                && h.add.sender == Side::Counterparty
                && h.add.stage == Stage::Announced;
            if drop {
                lowest_dropped = Some(lowest_dropped.map_or(h.id, |l: u64| l.min(h.id)));
            }
            !drop
        });
        if let Some(l) = lowest_dropped {
            self.next_counterparty_htlc_id = l;
        }
        for h in &mut self.htlcs {
            if h.remove.as_ref().is_some_and(|(_, p)| p.sender == Side::Counterparty && p.stage == Stage::Announced) {
                h.remove = None;
            }
        }
        self.fee_updates.retain(|f| !(f.progress.sender == Side::Counterparty && f.progress.stage == Stage::Announced));
        // Nothing to write: what was dropped was never covered by a `commitment_signed`, and a
        // restored channel drops it again at its first disconnection.
        Effects::none()
    }

    /// The `channel_reestablish` to send on reconnection.
    ///
    /// # Errors
    /// [`CommandError::Signer`](super::CommandError::Signer) if the signer cannot answer;
    /// [`CommandError::WrongSigner`](super::CommandError::WrongSigner) if `signer` is not the
    /// channel's ([`Channel::check_signer`]): its per-commitment point would make the peer think
    /// we lie about our state.
    pub fn reestablish<S: Signer + ?Sized>(&self, signer: &S) -> Result<Msg, super::CommandError> {
        self.check_signer(signer)?;
        let revocations_received = if self.awaiting_revoke {
            self.counterparty_commitment.saturating_sub(1)
        } else {
            self.counterparty_commitment
        };
        let last_secret = revocations_received
            .checked_sub(1)
            .and_then(|n| self.secrets.get(crate::core::shachain::MAX_INDEX - n))
            .unwrap_or(PerCommitmentSecret::from_bytes([0u8; 32]));
        let point = signer
            .per_commitment_point(CommitmentNumber::new(self.holder_commitment).unwrap_or(CommitmentNumber::ZERO))?;
        Ok(Msg::ChannelReestablish {
            channel_id: self.channel_id,
            next_commitment_number: self.holder_commitment + 1,
            next_revocation_number: revocations_received,
            your_last_per_commitment_secret: last_secret,
            my_current_per_commitment_point: *point.public_key(),
        })
    }

    /// Our data is stale: remember it (we must never broadcast our commitment), tell the embedder
    /// and ask the peer to fail the channel.
    fn lost(&mut self) -> Effects {
        self.lost_state = true;
        let mut fx = self.persist();
        fx.events.push(Event::LostState);
        fx.send.push(self.lost_state_error());
        fx
    }

    /// The `error` a channel that lost state sends: the peer should broadcast its commitment.
    pub(crate) fn lost_state_error(&self) -> Msg {
        Msg::Error { channel_id: self.channel_id, data: b"we lost state: please close the channel".to_vec() }
    }

    /// `my_current_per_commitment_point` is not an argument: every channel type of this crate is
    /// `option_static_remotekey` (or anchors), where BOLT #2 has the receiver ignore it (LDK sends
    /// a fixed dummy point). Lost state is proven by `your_last_per_commitment_secret` alone.
    pub(crate) fn on_reestablish<S: Signer + ?Sized>(
        &mut self,
        next_commitment_number: u64,
        next_revocation_number: u64,
        your_last_secret: PerCommitmentSecret,
        signer: &S,
    ) -> Result<Effects, PeerError> {
        if matches!(self.phase, Phase::AwaitingAccept | Phase::AwaitingFundingTx | Phase::AwaitingFundingCreated) {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        }
        if self.phase == Phase::AwaitingFundingSigned {
            // The peer speaks as of an established channel, so it sent `funding_signed`, which we
            // do not have: our data is stale. We have no commitment to broadcast; ask the peer to
            // close.
            return Ok(self.lost());
        }
        // Does the peer prove it holds a newer state of ours than we do?
        if next_revocation_number > self.holder_commitment {
            let claimed = next_revocation_number - 1;
            let ours = CommitmentNumber::new(claimed).map(|n| signer.release_per_commitment_secret(n));
            if let Some(Ok(secret)) = ours {
                if secret == your_last_secret {
                    return Ok(self.lost());
                }
            }
            return Err(peer_error(Misbehaviour::ReestablishMismatch));
        }
        if next_revocation_number > 0 {
            let n = CommitmentNumber::new(next_revocation_number - 1)
                .ok_or(peer_error(Misbehaviour::ReestablishMismatch))?;
            let ours = signer.release_per_commitment_secret(n).map_err(|e| peer_error(Misbehaviour::Signer(e)))?;
            if ours != your_last_secret {
                return Err(peer_error(Misbehaviour::ReestablishMismatch));
            }
        }
        let resend_revoke = match self.holder_commitment - next_revocation_number {
            0 => false,
            1 => true,
            _ => return Err(peer_error(Misbehaviour::ReestablishMismatch)),
        };
        let resend_commit = if next_commitment_number == self.counterparty_commitment + 1 {
            false
        } else if next_commitment_number == self.counterparty_commitment && self.awaiting_revoke {
            true
        } else {
            // Claiming commitments we never signed proves nothing (only a revealed secret of
            // ours would, checked above): the peer lies or lost state.
            return Err(peer_error(Misbehaviour::ReestablishMismatch));
        };

        let mut send = Vec::new();
        // BOLT #2: `channel_ready` again when both sides' `next_commitment_number` is 1.
        if self.holder_commitment == 0 && next_commitment_number == 1 && self.channel_ready_sent {
            let point = signer
                .per_commitment_point(CommitmentNumber::new(1).unwrap_or(CommitmentNumber::ZERO))
                .map_err(|e| peer_error(Misbehaviour::Signer(e)))?;
            send.push(Msg::ChannelReady {
                channel_id: self.channel_id,
                second_per_commitment_point: *point.public_key(),
            });
        }
        let revoke = if resend_revoke { Some(self.regenerate_revoke(signer)?) } else { None };
        let commit = if resend_commit { Some(self.regenerate_commit(signer)?) } else { None };
        match (revoke, commit) {
            (Some(r), Some(c)) if self.revoke_sent_last => {
                send.extend(c);
                send.push(r);
            }
            (r, c) => {
                send.extend(r);
                send.extend(c.into_iter().flatten());
            }
        }
        // Our `shutdown` went out when none of our updates was unsigned, so those unsigned now
        // (removals and fee updates only: no add follows a shutdown) came after it: it goes first,
        // as BOLT #2 allows no `shutdown` after unsigned updates. A held one waits for them.
        if self.shutdown.holder_sent {
            if let Some(script) = &self.shutdown.holder_script {
                send.push(Msg::Shutdown { channel_id: self.channel_id, scriptpubkey: script.clone() });
            }
        }
        // Updates we announced but never signed: the peer forgot them; send them again.
        send.extend(self.updates_at(Stage::Announced));
        // Everything resent is derived from the persisted state. A `commitment_signed` or
        // `revoke_and_ack` (or anything but an uncommitted update) resent comes with a write, as
        // when it was first sent; our uncommitted updates alone need none.
        let uncommitted_only = send.iter().all(|m| {
            matches!(
                m,
                Msg::UpdateAddHtlc { .. }
                    | Msg::UpdateFulfillHtlc { .. }
                    | Msg::UpdateFailHtlc { .. }
                    | Msg::UpdateFailMalformedHtlc { .. }
                    | Msg::UpdateFee { .. }
            )
        });
        let mut fx = if uncommitted_only { Effects::none() } else { self.persist() };
        fx.send = send;
        Ok(fx)
    }

    /// Our updates at `stage`, in the order they were first sent.
    fn updates_at(&self, stage: Stage) -> Vec<Msg> {
        let mut out: Vec<(u64, Msg)> = Vec::new();
        for h in &self.htlcs {
            if h.offerer == Side::Holder && h.add.stage == stage {
                if let Some(onion) = &h.onion {
                    out.push((
                        h.add_seq,
                        Msg::UpdateAddHtlc {
                            channel_id: self.channel_id,
                            id: h.id,
                            amount_msat: h.amount,
                            payment_hash: h.payment_hash,
                            cltv_expiry: h.cltv_expiry,
                            onion_routing_packet: onion.clone(),
                        },
                    ));
                }
            }
            if let Some((res, p)) = &h.remove {
                if p.sender == Side::Holder && p.stage == stage {
                    let msg = match res {
                        Resolution::Fulfill(preimage) => Msg::UpdateFulfillHtlc {
                            channel_id: self.channel_id,
                            id: h.id,
                            payment_preimage: *preimage,
                        },
                        Resolution::Fail(reason) => {
                            Msg::UpdateFailHtlc { channel_id: self.channel_id, id: h.id, reason: reason.clone() }
                        }
                        Resolution::FailMalformed { sha256_of_onion, failure_code } => Msg::UpdateFailMalformedHtlc {
                            channel_id: self.channel_id,
                            id: h.id,
                            sha256_of_onion: *sha256_of_onion,
                            failure_code: *failure_code,
                        },
                    };
                    out.push((h.remove_seq, msg));
                }
            }
        }
        for f in &self.fee_updates {
            if f.progress.sender == Side::Holder && f.progress.stage == stage {
                out.push((f.seq, Msg::UpdateFee { channel_id: self.channel_id, feerate_per_kw: f.feerate_per_kw }));
            }
        }
        out.sort_by_key(|(seq, _)| *seq);
        out.into_iter().map(|(_, m)| m).collect()
    }

    fn regenerate_revoke<S: Signer + ?Sized>(&self, signer: &S) -> Result<Msg, PeerError> {
        let revoked = CommitmentNumber::new(self.holder_commitment.saturating_sub(1)).unwrap_or(CommitmentNumber::ZERO);
        let next = CommitmentNumber::new(self.holder_commitment + 1).unwrap_or(CommitmentNumber::MAX);
        let secret = signer.release_per_commitment_secret(revoked).map_err(|e| peer_error(Misbehaviour::Signer(e)))?;
        let point = signer.per_commitment_point(next).map_err(|e| peer_error(Misbehaviour::Signer(e)))?;
        Ok(Msg::RevokeAndAck {
            channel_id: self.channel_id,
            per_commitment_secret: secret,
            next_per_commitment_point: *point.public_key(),
        })
    }

    /// Our last `commitment_signed` again, preceded by the updates it was the first to cover.
    /// RFC6979 makes the signatures identical to the first time.
    fn regenerate_commit<S: Signer + ?Sized>(&self, signer: &S) -> Result<Vec<Msg>, PeerError> {
        let point = self.counterparty_point.ok_or(peer_error(Misbehaviour::ReestablishMismatch))?;
        let view = self.view(Side::Counterparty);
        let built = self.build(Side::Counterparty, self.counterparty_commitment, &point, &view).map_err(peer_error)?;
        let sigs = crate::core::commitment::signatures::sign_counterparty_commitment(signer, &built)
            .map_err(|e| peer_error(Misbehaviour::Signer(e)))?;
        let mut out = self.updates_at(Stage::InReceiver);
        out.push(Msg::CommitmentSigned {
            channel_id: self.channel_id,
            signature: sigs.commitment.signature,
            htlc_signatures: sigs.htlcs.iter().map(|s| s.signature).collect(),
        });
        Ok(out)
    }
}
