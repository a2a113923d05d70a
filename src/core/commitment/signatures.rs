//! Signing and verifying commitments and their HTLC transactions.
//!
//! The countersignatory signs the broadcaster's commitment (funding input, `SIGHASH_ALL`) and every
//! HTLC transaction (its HTLC key; `SIGHASH_ALL`, or `SINGLE|ANYONECANPAY` with anchors so the
//! broadcaster can attach fees). The broadcaster verifies them, obtaining a
//! [`VerifiedCommitment`], and only from that can it complete the transactions.

use alloc::vec::Vec;
use core::fmt;

use bitcoin::secp256k1::{Secp256k1, Verification};
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::{ecdsa, Amount, Transaction};

use super::{BuiltCommitment, HtlcDirection, HtlcTx, HtlcTxCursor};
use crate::core::hashlock::PaymentPreimage;
use crate::core::keys::{FundingPubkey, PerCommitmentPoint};
use crate::core::script::{self, WitnessScript};
use crate::core::sign::{self, KeyId, SignRequest, SignRequests, SignatureError, Signer, SignerError, Tweak};

/// The countersignatory's signatures on one commitment: the funding input and every HTLC
/// transaction in output order (the `commitment_signed` payload).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CommitmentSignatures {
    /// Signature of the funding input.
    pub commitment: ecdsa::Signature,
    /// Signatures of the HTLC transactions, in the order of the HTLC outputs.
    pub htlcs: Vec<ecdsa::Signature>,
}

/// Why the countersignatory's signatures were refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum CommitmentSigError {
    /// The commitment signature is bad.
    Commitment(SignatureError),
    /// The number of HTLC signatures differs from the number of untrimmed HTLCs.
    HtlcCount {
        /// Untrimmed HTLC outputs.
        expected: usize,
        /// Signatures received.
        got: usize,
    },
    /// The HTLC signature at this position (output order) is bad.
    Htlc {
        /// Position among the HTLC signatures.
        position: usize,
        /// What is wrong with it.
        error: SignatureError,
    },
}

impl fmt::Display for CommitmentSigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommitmentSigError::Commitment(e) => write!(f, "commitment signature: {e}"),
            CommitmentSigError::HtlcCount { expected, got } => {
                write!(f, "{got} HTLC signatures for {expected} HTLC outputs")
            }
            CommitmentSigError::Htlc { position, error } => write!(f, "HTLC signature {position}: {error}"),
        }
    }
}

impl core::error::Error for CommitmentSigError {}

/// The sighash type of the countersignatory's HTLC-transaction signatures for this channel type.
pub fn countersignatory_htlc_sighash(commitment: &BuiltCommitment) -> EcdsaSighashType {
    if commitment.channel_type().has_anchors() {
        EcdsaSighashType::SinglePlusAnyoneCanPay
    } else {
        EcdsaSighashType::All
    }
}

/// Signs the spend of a 2-of-2 funding output (input `input` of `tx`) with the funding key.
///
/// # Errors
/// [`SignerError`] from the signer.
pub fn sign_funding_spend<S: Signer + ?Sized>(
    signer: &S,
    tx: &Transaction,
    input: usize,
    funding_script: &WitnessScript,
    funding_value: Amount,
) -> Result<ecdsa::Signature, SignerError> {
    signer.sign(&SignRequest {
        tx,
        input,
        script_code: funding_script.as_script(),
        p2wpkh: false,
        value: funding_value,
        sighash_type: EcdsaSighashType::All,
        key: KeyId::Funding,
        tweak: Tweak::None,
    })
}

/// As countersignatory, signs the peer's commitment and all its HTLC transactions.
///
/// # Errors
/// [`SignerError`] from the signer.
pub fn sign_counterparty_commitment<S: Signer + ?Sized>(
    signer: &S,
    commitment: &BuiltCommitment,
) -> Result<CommitmentSignatures, SignerError> {
    let (funding_script, funding_value) = commitment.funding();
    let sig = sign_funding_spend(signer, commitment.tx(), 0, funding_script, funding_value)?;
    let htlcs = signer.sign_batch(&mut HtlcSignRequests {
        cursor: commitment.htlc_tx_cursor(),
        sighash_type: countersignatory_htlc_sighash(commitment),
        point: commitment.keys().per_commitment_point,
    })?;
    Ok(CommitmentSignatures { commitment: sig, htlcs })
}

/// The countersignatory's signing requests for a commitment's HTLC transactions, in output order:
/// one [`Signer::sign_batch`] call, all with the HTLC key and the commitment's tweak.
struct HtlcSignRequests<'c> {
    cursor: HtlcTxCursor<'c>,
    sighash_type: EcdsaSighashType,
    point: PerCommitmentPoint,
}

impl SignRequests for HtlcSignRequests<'_> {
    fn next_request(&mut self) -> Option<SignRequest<'_>> {
        let (tx, htlc_script, value) = self.cursor.next_tx()?;
        Some(SignRequest {
            tx,
            input: 0,
            script_code: htlc_script.as_script(),
            p2wpkh: false,
            value,
            sighash_type: self.sighash_type,
            key: KeyId::Htlc,
            tweak: Tweak::PerCommitment(self.point),
        })
    }

    fn remaining_hint(&self) -> usize {
        self.cursor.remaining_hint()
    }
}

/// A holder commitment whose countersignatures were checked: the only thing the holder may
/// complete and broadcast.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VerifiedCommitment {
    commitment: BuiltCommitment,
    signatures: CommitmentSignatures,
    htlc_txs: Vec<HtlcTx>,
}

/// As broadcaster, checks the countersignatory's signatures on our commitment.
///
/// # Errors
/// [`CommitmentSigError`] naming the first bad signature.
pub fn verify_holder_commitment<C: Verification>(
    secp: &Secp256k1<C>,
    commitment: BuiltCommitment,
    countersignatory_funding: &FundingPubkey,
    signatures: CommitmentSignatures,
) -> Result<VerifiedCommitment, CommitmentSigError> {
    verify_holder_signatures(secp, &commitment, countersignatory_funding, &signatures)?;
    let htlc_txs = commitment.htlc_txs();
    Ok(VerifiedCommitment { commitment, signatures, htlc_txs })
}

/// The checks of [`verify_holder_commitment`], without building the [`VerifiedCommitment`]: for
/// a holder that only needs to know the signatures are good (and keeps them), this saves building
/// and keeping every HTLC transaction.
///
/// # Errors
/// [`CommitmentSigError`] naming the first bad signature.
pub fn verify_holder_signatures<C: Verification>(
    secp: &Secp256k1<C>,
    commitment: &BuiltCommitment,
    countersignatory_funding: &FundingPubkey,
    signatures: &CommitmentSignatures,
) -> Result<(), CommitmentSigError> {
    let (funding_script, funding_value) = commitment.funding();
    let msg = sign::p2wsh_sighash(commitment.tx(), 0, funding_script.as_script(), funding_value, EcdsaSighashType::All)
        .map_err(CommitmentSigError::Commitment)?;
    let _valid =
        sign::verify(secp, &msg, &signatures.commitment, countersignatory_funding.public_key(), EcdsaSighashType::All)
            .map_err(CommitmentSigError::Commitment)?;
    let ty = countersignatory_htlc_sighash(commitment);
    let key = commitment.keys().countersignatory_htlc;
    let expected = commitment.untrimmed_htlc_count();
    if expected != signatures.htlcs.len() {
        return Err(CommitmentSigError::HtlcCount { expected, got: signatures.htlcs.len() });
    }
    let mut sigs = signatures.htlcs.iter();
    let mut position = 0;
    commitment.try_for_each_htlc_tx(|tx, htlc_script, value| {
        let sig = sigs.next().ok_or(CommitmentSigError::HtlcCount { expected, got: signatures.htlcs.len() })?;
        let msg = sign::p2wsh_sighash(tx, 0, htlc_script.as_script(), value, ty)
            .map_err(|error| CommitmentSigError::Htlc { position, error })?;
        let _valid = sign::verify(secp, &msg, sig, key.public_key(), ty)
            .map_err(|error| CommitmentSigError::Htlc { position, error })?;
        position += 1;
        Ok(())
    })?;
    Ok(())
}

impl VerifiedCommitment {
    /// The commitment.
    pub fn commitment(&self) -> &BuiltCommitment {
        &self.commitment
    }

    /// The countersignatory's signatures.
    pub fn signatures(&self) -> &CommitmentSignatures {
        &self.signatures
    }

    /// The HTLC transactions (unsigned), in output order.
    pub fn htlc_txs(&self) -> &[HtlcTx] {
        &self.htlc_txs
    }

    /// Adds the holder's funding signature: the fully signed, broadcastable commitment.
    ///
    /// # Errors
    /// [`SignerError`] from the signer.
    pub fn finalize<S: Signer + ?Sized>(&self, signer: &S) -> Result<Transaction, SignerError> {
        let (funding_script, funding_value) = self.commitment.funding();
        let mut tx = self.commitment.tx().clone();
        let ours = sign_funding_spend(signer, &tx, 0, funding_script, funding_value)?;
        let (holder_key, counter_key) = self.commitment.funding_keys();
        if let Some(input) = tx.input.first_mut() {
            input.witness = script::funding_witness(
                funding_script,
                (&holder_key, &ours),
                (&counter_key, &self.signatures.commitment),
            );
        }
        Ok(tx)
    }

    /// The fully signed HTLC transaction at `position` (output order): HTLC-timeout for an
    /// offered HTLC (valid from its `cltv_expiry`), HTLC-success for a received one, which needs
    /// the preimage. `None` if the position is unknown or a success transaction lacks a preimage.
    ///
    /// # Errors
    /// [`SignerError`] from the signer.
    pub fn finalize_htlc_tx<S: Signer + ?Sized>(
        &self,
        signer: &S,
        position: usize,
        preimage: Option<&PaymentPreimage>,
    ) -> Result<Option<Transaction>, SignerError> {
        self.finalize_htlc_tx_with(signer, position, preimage, None)
    }

    /// As [`finalize_htlc_tx`](Self::finalize_htlc_tx), with one more input and output: how an
    /// anchors channel pays for its zero-fee HTLC transactions. The countersignatory signed input
    /// 0 `SIGHASH_SINGLE|ANYONECANPAY` (it covers only that input and output 0), so `input` and
    /// `output` can be appended; our own signature (`SIGHASH_ALL`) covers them. `input` is left
    /// as given (its owner signs it afterwards). `None` as for `finalize_htlc_tx`, and for a
    /// commitment without anchors (the countersignature would not survive the change).
    ///
    /// # Errors
    /// [`SignerError`] from the signer.
    pub fn finalize_htlc_tx_with_input<S: Signer + ?Sized>(
        &self,
        signer: &S,
        position: usize,
        preimage: Option<&PaymentPreimage>,
        input: bitcoin::TxIn,
        output: bitcoin::TxOut,
    ) -> Result<Option<Transaction>, SignerError> {
        let single_acp = self
            .signatures
            .htlcs
            .get(position)
            .is_some_and(|s| s.sighash_type == EcdsaSighashType::SinglePlusAnyoneCanPay);
        if !single_acp {
            return Ok(None);
        }
        self.finalize_htlc_tx_with(signer, position, preimage, Some((input, output)))
    }

    fn finalize_htlc_tx_with<S: Signer + ?Sized>(
        &self,
        signer: &S,
        position: usize,
        preimage: Option<&PaymentPreimage>,
        extra: Option<(bitcoin::TxIn, bitcoin::TxOut)>,
    ) -> Result<Option<Transaction>, SignerError> {
        let (Some(h), Some(counter_sig)) = (self.htlc_txs.get(position), self.signatures.htlcs.get(position)) else {
            return Ok(None);
        };
        // HTLC-success needs the preimage; HTLC-timeout takes none.
        let preimage = match (h.direction, preimage) {
            (HtlcDirection::Offered, _) => None,
            (HtlcDirection::Received, Some(p)) => Some(p),
            (HtlcDirection::Received, None) => return Ok(None),
        };
        let mut tx = h.tx.clone();
        if let Some((input, output)) = extra {
            tx.input.push(input);
            tx.output.push(output);
        }
        let ours = signer.sign(&SignRequest {
            tx: &tx,
            input: 0,
            script_code: h.htlc_script.as_script(),
            p2wpkh: false,
            value: h.input_value,
            sighash_type: EcdsaSighashType::All,
            key: KeyId::Htlc,
            tweak: Tweak::PerCommitment(self.commitment.keys().per_commitment_point),
        })?;
        let witness = match preimage {
            None => script::offered_htlc_timeout_witness(&h.htlc_script, counter_sig, &ours),
            Some(p) => script::received_htlc_success_witness(&h.htlc_script, counter_sig, &ours, p),
        };
        if let Some(input) = tx.input.first_mut() {
            input.witness = witness;
        }
        Ok(Some(tx))
    }
}
