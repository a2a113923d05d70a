//! Blind appointments for a Lightning channel ([`crate::core::tower`]): after each revocation,
//! [`Channel::appointment`] signs the penalty for the peer's revoked commitment (its `to_local`
//! and every HTLC output) at a ladder of feerates and seals it for a tower. The tower learns
//! nothing before the breach and, after it, can only broadcast transactions paying our sweep
//! destination. Compare [`PenaltyKit`](super::penalty::PenaltyKit): a trusted tower holding our
//! revocation base secret, O(HTLCs) storage, able to sign any penalty to any address.
//!
//! Each appointment also carries a fallback ladder sweeping the delayed `to_local` alone: a
//! cheater that takes an HTLC output through its HTLC-success/-timeout transaction before the
//! penalty confirms makes the full penalty invalid, and the tower turns to the fallback.
//!
//! # Second-stage outputs
//! The output of such an HTLC transaction pays the revoked commitment's revocable `to_local`
//! script: the cheater takes it after `to_self_delay`, we can take it at once with the
//! revocation key. Whether a tower can be handed that penalty ahead of time depends on the
//! channel type:
//!
//! * **`static_remotekey` (no anchors): covered.** Our signature on the peer's HTLC
//!   transactions is `SIGHASH_ALL`, so the only second-stage transactions the peer can publish
//!   are the exact ones we signed, and their txids (segwit: without witnesses, so without the
//!   preimage) are known as soon as the commitment is.
//!   [`Channel::second_stage_appointments`] seals one more appointment per HTLC transaction,
//!   located by the first 16 bytes of *its* txid and keyed by `SHA256` of it, holding a ladder
//!   of penalties spending its output to our sweep destination. To the tower these are
//!   appointments like any other (same encoding, same checks: each penalty spends only outputs of
//!   the transaction that matched and pays only the client): it cannot tell a second-stage
//!   appointment from a commitment's, and learns nothing before that HTLC transaction appears.
//! * **Anchors (`option_anchors_zero_fee_htlc_tx`): not covered, by construction.** We sign the
//!   peer's HTLC transactions `SIGHASH_SINGLE|ANYONECANPAY` so that it can add inputs and outputs
//!   to pay their fee; their txid, hence the outpoint a penalty must spend, is unknown until
//!   they appear. Every signature (BIP 143, `ANYONECANPAY` included) commits to the outpoint it
//!   spends, so no penalty for that output can be signed in advance; only `SIGHASH_ANYPREVOUT`
//!   (BIP 118, not active) would allow it. Matching by spent outpoint instead of txid would let
//!   the tower *recognise* the escape (the outpoint of the revoked commitment's HTLC output is
//!   known once the commitment is) but not *spend* its output: that takes the revoked
//!   commitment's revocation private key, and a tower holding it could sign that breach's
//!   penalties to any address (a trusted tower for that breach, which is what the kit already
//!   offers). So with anchors the blind tower covers `to_local` and every HTLC output of the
//!   revoked commitment (the HTLC outputs carry a one-block CSV, so the cheater's HTLC
//!   transaction can confirm no sooner than the tower's first rung, broadcast as soon as the
//!   commitment confirms: an escape is a fee race the ladder climbs), and `to_local` alone if
//!   the cheater's HTLC transaction confirms first; the output of that HTLC transaction is left
//!   to the client (or a trusted kit), which has `to_self_delay` blocks from its confirmation to
//!   take it before the cheater can.
//!   [`Channel::second_stage_appointments`] refuses with
//!   [`AppointmentError::SecondStageUnpredictable`].
//!
//! The caller keeps the peer's commitment it signed ([`Channel::counterparty_commitment`])
//! until the peer revokes it, then asks for its appointment: the commitment's txid does not
//! depend on the peer's signature, so the unsigned copy locates the signed one.

use alloc::vec::Vec;
use core::fmt;

use bitcoin::sighash::EcdsaSighashType;
use bitcoin::{OutPoint, Transaction};

use super::channel::Channel;
use super::penalty::SweptOutput;
use super::records::PenaltyRecord;
use crate::core::commitment::{BuiltCommitment, FeeratePerKw};
use crate::core::keys::PerCommitmentSecret;
use crate::core::script::WitnessScript;
use crate::core::sign::{KeyId, SignRequest, Signer, Tweak};
use crate::core::tower::{Appointment, MAX_LADDER};

/// The default ladder over a feerate chosen at signing: 1×, 2×, 4× and 8× it.
pub fn default_ladder(base: FeeratePerKw) -> Vec<FeeratePerKw> {
    [1u32, 2, 4, 8].iter().map(|m| FeeratePerKw(base.0.saturating_mul(*m))).collect()
}

/// Why no appointment could be built.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum AppointmentError {
    /// The transaction is not a commitment of the peer that it revoked (or the channel has no
    /// funding yet).
    NotRevoked,
    /// The ladder is empty or longer than [`MAX_LADDER`].
    BadLadder,
    /// No rung could be built: nothing to sweep, every fee exceeds the swept value, or the
    /// signer refused.
    NoPenalty,
    /// Second-stage appointments were asked for an anchors channel, whose HTLC transactions'
    /// txids the peer can change (see the [module docs](self)).
    SecondStageUnpredictable,
}

impl fmt::Display for AppointmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AppointmentError::NotRevoked => "not a revoked commitment of the peer",
            AppointmentError::BadLadder => "the feerate ladder is empty or too long",
            AppointmentError::NoPenalty => "no penalty could be built at any feerate",
            AppointmentError::SecondStageUnpredictable => {
                "the peer's HTLC transactions have no predictable txid (anchors)"
            }
        })
    }
}

impl core::error::Error for AppointmentError {}

impl Channel {
    /// The blind appointment for `revoked`, a commitment of the peer it revoked: the penalty
    /// sweeping its `to_local` and every HTLC output to the sweep destination, signed at each
    /// feerate of `ladder` (rising; a rung whose fee exceeds the swept value is left out), and
    /// when it has HTLC outputs the fallback sweeping `to_local` alone at the same feerates,
    /// sealed under `SHA256(txid)`. `records` are the channel's persisted penalty records (the HTLCs
    /// already removed); `signer` signs with the revocation key (it must be the channel's).
    ///
    /// # Errors
    /// [`AppointmentError`].
    pub fn appointment<S: Signer + ?Sized>(
        &self,
        revoked: &Transaction,
        records: &[PenaltyRecord],
        ladder: &[FeeratePerKw],
        signer: &S,
    ) -> Result<Appointment, AppointmentError> {
        if ladder.is_empty() || ladder.len() > MAX_LADDER {
            return Err(AppointmentError::BadLadder);
        }
        if self.check_signer(signer).is_err() {
            return Err(AppointmentError::NoPenalty);
        }
        let kit = self.watchtower_kit(None, records).ok_or(AppointmentError::NotRevoked)?;
        kit.revoked_number(revoked).ok_or(AppointmentError::NotRevoked)?;
        let sign = |t: &Transaction, i: usize, ws: &WitnessScript, value, secret| {
            revocation_sig(signer, t, i, ws, value, secret)
        };
        let rungs = |only: Option<&[OutPoint]>| -> Vec<Transaction> {
            ladder
                .iter()
                .filter_map(|f| kit.penalty_tx_with(revoked, *f, &[], only, Some(&sign)).map(|p| p.tx))
                .collect()
        };
        let txs = rungs(None);
        if txs.is_empty() {
            return Err(AppointmentError::NoPenalty);
        }
        // The fallback: the delayed to_local alone, for when the cheater takes an HTLC output
        // through its HTLC transaction before the penalty confirms.
        let outputs = kit.revoked_outputs(revoked, &[]);
        let to_local: Vec<OutPoint> = outputs.iter().filter(|o| o.2 == SweptOutput::ToLocal).map(|o| o.0).collect();
        let fallback = if outputs.len() > 1 && !to_local.is_empty() { rungs(Some(&to_local)) } else { Vec::new() };
        Ok(Appointment::seal(&revoked.compute_txid(), &txs, &fallback))
    }

    /// The blind appointments for the second-stage outputs of `revoked` (our copy of a
    /// commitment of the peer it revoked; see the [module docs](self)): one per HTLC transaction
    /// the peer could escape through (its HTLC-success and HTLC-timeout transactions of every
    /// untrimmed HTLC), located by that transaction's txid and sealed under `SHA256` of it,
    /// holding the penalty sweeping its output to the sweep destination signed at each feerate
    /// of `ladder` (a rung whose fee exceeds the output is left out, and an HTLC none of whose
    /// rungs pays gets no appointment). Empty when the commitment has no HTLC output. `records`
    /// and `signer` as for [`Channel::appointment`].
    ///
    /// # Errors
    /// [`AppointmentError::SecondStageUnpredictable`] for an anchors channel;
    /// [`AppointmentError::NotRevoked`], [`AppointmentError::BadLadder`] as for
    /// [`Channel::appointment`]; [`AppointmentError::NoPenalty`] if the signer is not the
    /// channel's.
    pub fn second_stage_appointments<S: Signer + ?Sized>(
        &self,
        revoked: &BuiltCommitment,
        records: &[PenaltyRecord],
        ladder: &[FeeratePerKw],
        signer: &S,
    ) -> Result<Vec<Appointment>, AppointmentError> {
        if revoked.channel_type().has_anchors() || self.channel_type.has_anchors() {
            return Err(AppointmentError::SecondStageUnpredictable);
        }
        if ladder.is_empty() || ladder.len() > MAX_LADDER {
            return Err(AppointmentError::BadLadder);
        }
        if self.check_signer(signer).is_err() {
            return Err(AppointmentError::NoPenalty);
        }
        let kit = self.watchtower_kit(None, records).ok_or(AppointmentError::NotRevoked)?;
        kit.revoked_number(revoked.tx()).ok_or(AppointmentError::NotRevoked)?;
        let sign = |t: &Transaction, i: usize, ws: &WitnessScript, value, secret| {
            revocation_sig(signer, t, i, ws, value, secret)
        };
        let mut out = Vec::new();
        for htlc in revoked.htlc_txs() {
            // Unsigned, but its txid is the one the peer's signed copy will have.
            let rungs: Vec<Transaction> = ladder
                .iter()
                .filter_map(|f| kit.second_stage_penalty_with(revoked.tx(), &htlc.tx, *f, Some(&sign)).map(|p| p.tx))
                .collect();
            if !rungs.is_empty() {
                out.push(Appointment::seal(&htlc.tx.compute_txid(), &rungs, &[]));
            }
        }
        Ok(out)
    }
}

/// A signature with the revocation key of the commitment whose secret is given (`SIGHASH_ALL`).
fn revocation_sig<S: Signer + ?Sized>(
    signer: &S,
    tx: &Transaction,
    input: usize,
    ws: &WitnessScript,
    value: bitcoin::Amount,
    secret: PerCommitmentSecret,
) -> Option<bitcoin::ecdsa::Signature> {
    signer
        .sign(&SignRequest {
            tx,
            input,
            script_code: ws.as_script(),
            p2wpkh: false,
            value,
            sighash_type: EcdsaSighashType::All,
            key: KeyId::RevocationBase,
            tweak: Tweak::Revocation(secret),
        })
        .ok()
}
