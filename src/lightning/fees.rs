//! Fee bumping of the channel's on-chain transactions: every time-critical transaction the
//! channel broadcasts comes with a [`BumpRequest`] in [`Effects::bumps`](crate::driving::Effects::bumps),
//! for the embedder's [`Bumper`](crate::core::feebump::Bumper).
//!
//! | transaction | channel type | request | deadline | at stake |
//! |---|---|---|---|---|
//! | our commitment ([`Channel::force_close`], a re-broadcast after a reorg) | anchors | [`BumpMethod::Child`] through our anchor | the earliest deadline of its HTLCs, less one block (their second stage needs one more block); [`COMMITMENT_DEADLINE`] blocks from now without HTLC; made again with each block until the commitment confirms, so a preimage given after the broadcast ([`Channel::provide_preimage`]) brings the deadline forward (the bumper keeps the earlier one) | the HTLCs at risk (ours not yet fulfilled, theirs whose preimage we know); our `to_local` without such HTLC |
//! | our commitment | `static_remotekey` | none: its fee is fixed when it is signed and it has no output the channel could spend before it confirms (no anchor, every output of ours is delayed) | | |
//! | our HTLC-success / HTLC-timeout | anchors (zero fee, peer signature `SINGLE\|ANYONECANPAY`) | [`BumpMethod::AddInputs`]: the bumper aggregates those with the same `nLockTime` with one fee input | success: the HTLC's `cltv_expiry` (the peer's timeout is valid in the next block); timeout: `cltv_expiry + claim_margin` | the HTLC's value |
//! | our HTLC-success / HTLC-timeout | `static_remotekey` | none: the peer signed them `SIGHASH_ALL` at the commitment's feerate | | |
//! | sweeps of our `to_local` and second-stage outputs, of our `to_remote` | both | [`BumpMethod::Replace`] | [`SWEEP_DEADLINE`] blocks after they become valid (nobody else can take them) | their value |
//! | claims from the peer's commitment: preimage claims, timeout claims | both | [`BumpMethod::Replace`] | preimage: the HTLC's `cltv_expiry`; timeout: `cltv_expiry + claim_margin` | the HTLC's value |
//! | penalties | both | [`BumpMethod::Replace`], revocation key | see below | the value swept |
//!
//! Our own signature on an HTLC-success/timeout is `SIGHASH_ALL` (BOLT #3: only the
//! countersignatory's signature is `SINGLE|ANYONECANPAY` with anchors), which is what the engine
//! makes: the aggregate is signed again, whole, at every bump.
//!
//! # Penalties (BOLT #5)
//! Everything on a revoked commitment is claimed in one transaction, due before the cheater's
//! `to_local` unlocks: confirmation height + `to_self_delay` − 1 (the cheater's sweep is valid in
//! the block after). An HTLC output the cheater could take with its own second-stage transaction
//! before that deadline is split off into its own penalty, so that losing that race invalidates
//! only that claim, never the whole penalty (which would have to be rebuilt and bumped again from
//! scratch, and could be pinned that way):
//!
//! * an HTLC the cheater offered whose `cltv_expiry` comes before the deadline (its
//!   HTLC-timeout is valid from then): due by its `cltv_expiry`;
//! * an HTLC we offered whose preimage we know (the cheater knows it too: its HTLC-success is
//!   valid at once);
//!
//! unless the output is too small to pay for a transaction of its own at the sweep feerate
//! (it then rides with the rest).
//!
//! If the cheater's second stage confirms first anyway, its output (revocable for another
//! `to_self_delay`) is claimed by a second-stage penalty due before that delay runs out.

use alloc::vec::Vec;

use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction};

use super::channel::Channel;
use super::htlc::Side;
use super::onchain::Claim;
use super::penalty::{PenaltyInput, SweptOutput};
use super::records::PenaltyRecord;
use crate::core::commitment::signatures::VerifiedCommitment;
use crate::core::commitment::{CommitmentNumber, FeeratePerKw, HtlcDirection};
use crate::core::feebump::{self, BumpMethod, BumpRequest, InputTemplate, Protects, WitnessPart};
use crate::core::hashlock::PaymentPreimage;
use crate::core::keys::PerCommitmentPoint;
use crate::core::script::{self, WitnessScript};
use crate::core::sign::{KeyId, Signer, Tweak};
use crate::core::units::BlockHeight;

/// Blocks within which an anchors commitment without HTLCs at risk should confirm (one day):
/// nothing is lost by waiting, our `to_local` is only locked longer.
pub const COMMITMENT_DEADLINE: u32 = 144;

/// Blocks within which a sweep of an output only we can spend should confirm once valid (one
/// day): nothing is lost by waiting.
pub const SWEEP_DEADLINE: u32 = 144;

fn ws_script(ws: &WitnessScript) -> ScriptBuf {
    ScriptBuf::from(ws.as_bytes().to_vec())
}

/// One claim transaction and its request.
pub(crate) struct Claimed {
    pub(crate) tx: Transaction,
    pub(crate) request: Option<BumpRequest>,
    /// The outputs it claims.
    pub(crate) outpoints: Vec<OutPoint>,
}

impl Channel {
    /// The deadline of an HTLC-timeout (ours, or the timeout claim on the peer's commitment):
    /// the incoming HTLC it pays back upstream expires later by at least `claim_margin` (BOLT #2's
    /// window for one on-chain claim), which is the budget the channel uses, not knowing it.
    pub(crate) fn timeout_deadline(&self, cltv_expiry: u32) -> BlockHeight {
        BlockHeight(cltv_expiry.saturating_add(self.config.htlc_deadlines.claim_margin))
    }

    /// The [`BumpMethod::Child`] request of our anchors commitment `tx` (`None` without anchors
    /// or without an anchor of ours).
    pub(crate) fn commitment_bump<S: Signer + ?Sized>(&self, tx: &Transaction, signer: &S) -> Option<BumpRequest> {
        if !self.channel_type.has_anchors() {
            return None;
        }
        let ws = script::anchor(&self.holder.pubkeys.funding);
        let spk = ws.to_p2wsh();
        let vout = tx.output.iter().position(|o| o.script_pubkey == spk)?;
        let value = tx.output.get(vout)?.value;
        let outputs = tx.output.iter().try_fold(Amount::ZERO, |a, o| a.checked_add(o.value))?;
        let parent_fee = self.capacity.checked_sub(outputs)?;
        let v = self.holder_commitment(signer).ok()?;
        let mut deadline: Option<u32> = None;
        let mut at_stake = Amount::ZERO;
        let view = self.view(Side::Holder);
        for h in v.htlc_txs() {
            let Some(&(offerer, id)) = view.ids.get(h.htlc_index) else { continue };
            let cltv = v.commitment().htlcs().get(h.htlc_index).map_or(0, |x| x.cltv_expiry());
            let due = match h.direction {
                // Fulfilled by the peer: we were paid, nothing of ours is at stake.
                HtlcDirection::Offered if self.known_preimage(offerer, id).is_some() => continue,
                HtlcDirection::Offered => self.timeout_deadline(cltv).0,
                HtlcDirection::Received if self.known_preimage(offerer, id).is_some() => cltv,
                HtlcDirection::Received => continue,
            };
            // The second stage needs one more block after the commitment.
            let due = due.saturating_sub(1);
            deadline = Some(deadline.map_or(due, |d| d.min(due)));
            at_stake = at_stake.checked_add(h.input_value)?;
        }
        let deadline = match deadline {
            Some(d) => d,
            None => {
                let local = v.commitment().tx().output.iter().zip(v.commitment().outputs()).find_map(|(o, info)| {
                    matches!(info.role, crate::core::commitment::OutputRole::ToBroadcaster).then_some(o.value)
                });
                at_stake = local.unwrap_or(Amount::ZERO);
                self.tip.0.saturating_add(COMMITMENT_DEADLINE)
            }
        };
        let anchor = InputTemplate {
            outpoint: OutPoint { txid: tx.compute_txid(), vout: vout as u32 },
            value,
            script_code: ws_script(&ws),
            p2wpkh: false,
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            key: Some((KeyId::Funding, crate::core::sign::Tweak::None)),
            witness: alloc::vec![WitnessPart::Signature, WitnessPart::WitnessScript],
            paired_output: None,
        };
        Some(BumpRequest {
            tx: tx.clone(),
            deadline: BlockHeight(deadline),
            at_stake,
            protects: Protects::Commitment,
            method: BumpMethod::Child { anchor, parent_fee },
        })
    }

    /// Our signed HTLC transaction at `position` of `v`, and with anchors its
    /// [`BumpMethod::AddInputs`] request.
    pub(crate) fn holder_htlc_claim<S: Signer + ?Sized>(
        &self,
        v: &VerifiedCommitment,
        position: usize,
        preimage: Option<&PaymentPreimage>,
        cltv_expiry: u32,
        signer: &S,
    ) -> Option<(Transaction, Option<BumpRequest>)> {
        let tx = v.finalize_htlc_tx(signer, position, preimage).ok().flatten()?;
        let h = v.htlc_txs().get(position)?;
        let counter = v.signatures().htlcs.get(position)?;
        let single_acp = counter.sighash_type == bitcoin::sighash::EcdsaSighashType::SinglePlusAnyoneCanPay;
        if !self.channel_type.has_anchors() || !single_acp {
            return Some((tx, None));
        }
        let (last, deadline) = match (h.direction, preimage) {
            (HtlcDirection::Received, Some(p)) => (WitnessPart::Bytes(p.0.to_vec()), BlockHeight(cltv_expiry)),
            _ => (WitnessPart::Bytes(Vec::new()), self.timeout_deadline(cltv_expiry)),
        };
        let template = InputTemplate {
            outpoint: tx.input.first()?.previous_output,
            value: h.input_value,
            script_code: ws_script(&h.htlc_script),
            p2wpkh: false,
            sequence: tx.input.first()?.sequence,
            key: Some((KeyId::Htlc, Tweak::PerCommitment(v.commitment().keys().per_commitment_point))),
            witness: alloc::vec![
                WitnessPart::Bytes(Vec::new()),
                WitnessPart::Bytes(counter.to_vec()),
                WitnessPart::Signature,
                last,
                WitnessPart::WitnessScript,
            ],
            paired_output: tx.output.first().cloned(),
        };
        let request = BumpRequest {
            tx: tx.clone(),
            deadline,
            at_stake: h.input_value,
            protects: Protects::HtlcClaim,
            method: BumpMethod::AddInputs { inputs: alloc::vec![template], lock_time: tx.lock_time.to_consensus_u32() },
        };
        Some((tx, Some(request)))
    }

    /// A claim of `templates` to the sweep destination at the channel's sweep feerate, built as
    /// the bumper builds its replacements, with its [`BumpMethod::Replace`] request.
    fn replace_claim<S: Signer + ?Sized>(
        &self,
        templates: Vec<InputTemplate>,
        lock_time: u32,
        deadline: BlockHeight,
        protects: Protects,
        signer: &S,
    ) -> Option<Claimed> {
        let destination = self.sweep_destination();
        let refs: Vec<&InputTemplate> = templates.iter().collect();
        let weight = feebump::replace_weight(&refs, &destination, lock_time);
        let fee = FeeratePerKw(self.sweep_feerate).fee_for_weight(weight);
        let tx = feebump::replace_tx(&refs, &destination, lock_time, fee, signer).ok()?;
        let at_stake = templates.iter().try_fold(Amount::ZERO, |a, t| a.checked_add(t.value))?;
        let outpoints = templates.iter().map(|t| t.outpoint).collect();
        let request = BumpRequest {
            tx: tx.clone(),
            deadline,
            at_stake,
            protects,
            method: BumpMethod::Replace { inputs: templates, destination, lock_time },
        };
        Some(Claimed { tx, request: Some(request), outpoints })
    }

    /// The sweep of our delayed output `c` (our `to_local`, or a second-stage output) of our
    /// commitment `n`.
    pub(crate) fn sweep_delayed<S: Signer + ?Sized>(
        &self,
        c: &Claim,
        n: u64,
        ws: &WitnessScript,
        delay: u16,
        signer: &S,
    ) -> Option<Claimed> {
        let point = signer.per_commitment_point(CommitmentNumber::new(n)?).ok()?;
        let t = InputTemplate {
            outpoint: c.outpoint,
            value: c.value,
            script_code: ws_script(ws),
            p2wpkh: false,
            sequence: Sequence::from_height(delay),
            key: Some((KeyId::DelayedPayment, Tweak::PerCommitment(point))),
            witness: alloc::vec![WitnessPart::Signature, WitnessPart::Bytes(Vec::new()), WitnessPart::WitnessScript],
            paired_output: None,
        };
        let deadline = BlockHeight(self.tip.0.saturating_add(SWEEP_DEADLINE));
        self.replace_claim(alloc::vec![t], 0, deadline, Protects::Sweep, signer)
    }

    /// The sweep of our `to_remote` output `c` on a peer commitment.
    pub(crate) fn sweep_to_remote<S: Signer + ?Sized>(&self, c: &Claim, signer: &S) -> Option<Claimed> {
        let key = *self.holder.pubkeys.payment_basepoint.public_key();
        let t = if self.channel_type.has_anchors() {
            let ws = script::to_remote_anchored(&key);
            InputTemplate {
                outpoint: c.outpoint,
                value: c.value,
                script_code: ws_script(&ws),
                p2wpkh: false,
                sequence: Sequence(1),
                key: Some((KeyId::Payment, Tweak::None)),
                witness: alloc::vec![WitnessPart::Signature, WitnessPart::WitnessScript],
                paired_output: None,
            }
        } else {
            InputTemplate {
                outpoint: c.outpoint,
                value: c.value,
                script_code: script::to_remote_p2wpkh(&key),
                p2wpkh: true,
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                key: Some((KeyId::Payment, Tweak::None)),
                witness: alloc::vec![WitnessPart::Signature, WitnessPart::Bytes(key.serialize().to_vec())],
                paired_output: None,
            }
        };
        let deadline = BlockHeight(self.tip.0.saturating_add(SWEEP_DEADLINE));
        self.replace_claim(alloc::vec![t], 0, deadline, Protects::Sweep, signer)
    }

    /// Our claim of HTLC output `c` of peer commitment `n`: with the preimage (an HTLC the
    /// peer offered), or after `cltv_expiry` (one we offered).
    pub(crate) fn sweep_remote_htlc<S: Signer + ?Sized>(
        &self,
        c: &Claim,
        n: u64,
        ws: &WitnessScript,
        preimage: Option<&PaymentPreimage>,
        cltv_expiry: u32,
        signer: &S,
    ) -> Option<Claimed> {
        let point =
            if n == self.counterparty_commitment { self.counterparty_point } else { self.counterparty_prev_point }?;
        let anchors = self.channel_type.has_anchors();
        let sequence = if anchors { Sequence(1) } else { Sequence::ENABLE_RBF_NO_LOCKTIME };
        let (lock_time, last, deadline) = match preimage {
            Some(p) => (0, WitnessPart::Bytes(p.0.to_vec()), BlockHeight(cltv_expiry)),
            None => (cltv_expiry, WitnessPart::Bytes(Vec::new()), self.timeout_deadline(cltv_expiry)),
        };
        let t = InputTemplate {
            outpoint: c.outpoint,
            value: c.value,
            script_code: ws_script(ws),
            p2wpkh: false,
            sequence,
            key: Some((KeyId::Htlc, Tweak::PerCommitment(PerCommitmentPoint::from_public_key(point)))),
            witness: alloc::vec![WitnessPart::Signature, last, WitnessPart::WitnessScript],
            paired_output: None,
        };
        self.replace_claim(alloc::vec![t], lock_time, deadline, Protects::HtlcClaim, signer)
    }

    /// The penalties for the `open` outputs of revoked commitment `commitment` (and of the
    /// cheater's second-stage transactions), grouped as the [module docs](self) say.
    pub(crate) fn penalty_claims_due<S: Signer + ?Sized>(
        &self,
        commitment: &Transaction,
        commitment_height: BlockHeight,
        open: &[&Claim],
        records: &[PenaltyRecord],
        signer: &S,
    ) -> Vec<Claimed> {
        let Some(kit) = self.watchtower_kit(None, records) else { return Vec::new() };
        let outputs: Vec<(OutPoint, Amount)> = open.iter().map(|c| (c.outpoint, c.value)).collect();
        let inputs = kit.penalty_inputs(commitment, &[], &outputs);
        let delay = u32::from(kit.counterparty_to_self_delay);
        // Before the cheater's delayed outputs unlock (valid in the block `delay` after theirs).
        let unlock = |created: BlockHeight| BlockHeight(created.0.saturating_add(delay).saturating_sub(1));
        let main_deadline = unlock(commitment_height);
        let mut main: Vec<(InputTemplate, BlockHeight)> = Vec::new();
        let mut split: Vec<(InputTemplate, BlockHeight)> = Vec::new();
        for PenaltyInput { template, kind, cltv_expiry } in inputs {
            let created =
                open.iter().find(|c| c.outpoint == template.outpoint).map_or(commitment_height, |c| c.created);
            let own = unlock(created);
            match kind {
                SweptOutput::Htlc(Side::Counterparty, _) => {
                    let expiry = cltv_expiry.map_or(own, BlockHeight);
                    if expiry < main_deadline {
                        split.push((template, expiry.min(own)));
                    } else {
                        main.push((template, own));
                    }
                }
                SweptOutput::Htlc(Side::Holder, id) if self.known_preimage(Side::Holder, id).is_some() => {
                    split.push((template, own));
                }
                _ => main.push((template, own)),
            }
        }
        let mut claims = Vec::new();
        for (t, deadline) in split {
            match self.replace_claim(alloc::vec![t.clone()], 0, deadline, Protects::Penalty, signer) {
                Some(c) => claims.push(c),
                // Too small to pay for a transaction of its own: it rides with the rest.
                None => main.push((t, deadline)),
            }
        }
        if let Some(deadline) = main.iter().map(|(_, d)| *d).min() {
            let templates = main.into_iter().map(|(t, _)| t).collect();
            claims.extend(self.replace_claim(templates, 0, deadline, Protects::Penalty, signer));
        }
        claims
    }
}
