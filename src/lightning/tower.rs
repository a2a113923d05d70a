//! Blind appointments for a Lightning channel ([`crate::core::tower`]): after each revocation,
//! [`Channel::appointment`] signs the penalty for the peer's revoked commitment (its `to_local`
//! and every HTLC output) at a ladder of feerates and seals it for a tower. The tower learns
//! nothing before the breach and, after it, can only broadcast transactions paying our sweep
//! destination. Compare [`PenaltyKit`](super::penalty::PenaltyKit): a trusted tower holding our
//! revocation base secret, O(HTLCs) storage, able to sign any penalty to any address.
//!
//! Each appointment also carries a fallback ladder sweeping the delayed `to_local` alone: a
//! cheater that takes an HTLC output through its HTLC-success/-timeout transaction before the
//! penalty confirms makes the full penalty invalid, and the tower turns to the fallback. The
//! output of that HTLC transaction (revocable too) is not covered: with anchors its txid is not
//! known in advance (the cheater may add inputs), so no penalty for it can be signed ahead.
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
use crate::core::commitment::FeeratePerKw;
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
}

impl fmt::Display for AppointmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AppointmentError::NotRevoked => "not a revoked commitment of the peer",
            AppointmentError::BadLadder => "the feerate ladder is empty or too long",
            AppointmentError::NoPenalty => "no penalty could be built at any feerate",
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
        let sign = |t: &Transaction, i: usize, ws: &crate::core::script::WitnessScript, value, secret| {
            signer
                .sign(&SignRequest {
                    tx: t,
                    input: i,
                    script_code: ws.as_script(),
                    p2wpkh: false,
                    value,
                    sighash_type: EcdsaSighashType::All,
                    key: KeyId::RevocationBase,
                    tweak: Tweak::Revocation(secret),
                })
                .ok()
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
}
