//! Penalties for revoked counterparty commitments (BOLT #5 "Revoked Transaction Close
//! Handling"), and the watchtower kit: everything needed to punish any revoked commitment of one
//! channel, without the channel's other keys.
//!
//! The kit is the *trusted* tower option: with the revocation base secret and the peer's
//! revealed secrets its holder can sign any penalty to any address (it can take the penalty
//! money) and it learns every commitment of the channel. A tower that must not be trusted gets
//! blind appointments instead ([`Channel::appointment`](super::Channel::appointment),
//! [`crate::core::tower`]): one per revoked state, opaque until that state is broadcast, paying
//! only the client.
//!
//! The kit holds the peer's revealed per-commitment secrets (the constant-size shachain store),
//! one [`PenaltyRecord`] per HTLC the channel ever carried, the basepoints needed to rebuild the
//! scripts, and the revocation base secret. Its size grows with the number of HTLCs, never with
//! the number of updates.

use alloc::vec::Vec;
use core::fmt;

use bitcoin::absolute::LockTime;
use bitcoin::secp256k1::Secp256k1;
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::transaction::Version;
use bitcoin::{ecdsa, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};

use super::htlc::Side;
use super::records::PenaltyRecord;
use crate::core::commitment::{ChannelType, FeeratePerKw, ObscuringFactor};
use crate::core::encode::{read_header, required, DecodeError, TlvWriter};
use crate::core::feebump::{InputTemplate, WitnessPart};
use crate::core::keys::{
    derive_revocation_privkey, DelayedPaymentBasepoint, DelayedPaymentPubkey, HtlcBasepoint, HtlcPubkey,
    PerCommitmentPoint, PerCommitmentSecret, RevocationBaseSecret, RevocationBasepoint, RevocationPubkey,
};
use crate::core::script::{self, WitnessScript};
use crate::core::shachain::{SecretStore, MAX_INDEX};
use crate::core::sign::{self, KeyId, Tweak};

/// Signs input `usize` of a penalty spending a revocable output (script, value) with the
/// revocation key of the commitment whose secret is given.
pub(crate) type RevocationSigner<'a> =
    &'a dyn Fn(&Transaction, usize, &WitnessScript, Amount, PerCommitmentSecret) -> Option<ecdsa::Signature>;

/// Which output of a revoked transaction a penalty input sweeps.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SweptOutput {
    /// The cheater's `to_local`.
    ToLocal,
    /// An HTLC output (offerer and id).
    Htlc(Side, u64),
    /// The output of the cheater's HTLC-timeout/-success transaction.
    SecondStage,
}

/// A penalty transaction and what it sweeps.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Penalty {
    /// The signed transaction.
    pub tx: Transaction,
    /// Each input's outpoint, value and kind.
    pub swept: Vec<(OutPoint, Amount, SweptOutput)>,
}

/// The per-channel data a penalty needs (see the module docs). `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct PenaltyKit {
    /// Channel type.
    pub channel_type: ChannelType,
    /// Obscures commitment numbers.
    pub obscuring_factor: ObscuringFactor,
    /// The funding output.
    pub funding_outpoint: OutPoint,
    /// Our revocation basepoint.
    pub revocation_basepoint: RevocationBasepoint,
    /// Our HTLC basepoint.
    pub holder_htlc_basepoint: HtlcBasepoint,
    /// The peer's delayed payment basepoint.
    pub counterparty_delayed_basepoint: DelayedPaymentBasepoint,
    /// The peer's HTLC basepoint.
    pub counterparty_htlc_basepoint: HtlcBasepoint,
    /// The delay on the peer's own outputs.
    pub counterparty_to_self_delay: u16,
    /// The peer's revealed per-commitment secrets.
    pub secrets: SecretStore,
    /// One record per HTLC, with the peer commitments it appeared in.
    pub htlcs: Vec<PenaltyRecord>,
    /// Where penalties pay.
    pub destination: ScriptBuf,
    /// The revocation base secret (absent in a kit used with a separate signer).
    pub revocation_base: Option<RevocationBaseSecret>,
}

impl fmt::Debug for PenaltyKit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PenaltyKit")
            .field("funding_outpoint", &self.funding_outpoint)
            .field("htlcs", &self.htlcs.len())
            .finish_non_exhaustive()
    }
}

/// One recognised output of a revoked commitment.
struct Found {
    outpoint: OutPoint,
    value: Amount,
    script: WitnessScript,
    kind: SweptOutput,
    /// For an HTLC output, its `cltv_expiry`.
    cltv_expiry: Option<u32>,
}

/// One input of a penalty as the fee-bumping engine rebuilds it: its template (revocation key,
/// witness) and what it sweeps.
#[derive(Clone, Debug)]
pub(crate) struct PenaltyInput {
    pub(crate) template: InputTemplate,
    pub(crate) kind: SweptOutput,
    /// For an HTLC output, its `cltv_expiry`.
    pub(crate) cltv_expiry: Option<u32>,
}

/// The keys of a revoked commitment.
struct RevokedKeys {
    secret: PerCommitmentSecret,
    revocation: RevocationPubkey,
    delayed: DelayedPaymentPubkey,
    theirs: HtlcPubkey,
    ours: HtlcPubkey,
}

const KIND_KIT: u8 = 0x4e;
const VERSION: u8 = 1;

impl PenaltyKit {
    /// The commitment number of `tx` if it is a peer commitment we hold the revocation secret of.
    pub fn revoked_number(&self, tx: &Transaction) -> Option<u64> {
        let input = tx.input.first()?;
        if input.previous_output != self.funding_outpoint || tx.input.len() != 1 {
            return None;
        }
        let n = self.obscuring_factor.decode(tx.lock_time, input.sequence)?.to_u64();
        self.secrets.get(MAX_INDEX - n).map(|_| n)
    }

    fn keys(&self, n: u64) -> Option<RevokedKeys> {
        let secp = Secp256k1::new();
        let secret = self.secrets.get(MAX_INDEX - n)?;
        let point: PerCommitmentPoint = secret.point(&secp).ok()?;
        Some(RevokedKeys {
            secret,
            revocation: RevocationPubkey::derive(&secp, &self.revocation_basepoint, &point).ok()?,
            delayed: DelayedPaymentPubkey::derive(&secp, &self.counterparty_delayed_basepoint, &point).ok()?,
            theirs: HtlcPubkey::derive(&secp, &self.counterparty_htlc_basepoint, &point).ok()?,
            ours: HtlcPubkey::derive(&secp, &self.holder_htlc_basepoint, &point).ok()?,
        })
    }

    fn to_local_script(&self, k: &RevokedKeys) -> WitnessScript {
        script::to_local(&k.revocation, self.counterparty_to_self_delay, &k.delayed)
    }

    /// Finds every output of revoked commitment `n` the cheater could claim.
    fn find(&self, n: u64, tx: &Transaction, k: &RevokedKeys, live: &[PenaltyRecord]) -> Vec<Found> {
        let txid = tx.compute_txid();
        let mut used = alloc::vec![false; tx.output.len()];
        let mut out = Vec::new();
        let mut take = |script: WitnessScript,
                        value: Option<Amount>,
                        kind: SweptOutput,
                        cltv: Option<u32>,
                        used: &mut Vec<bool>| {
            let spk = script.to_p2wsh();
            let pos = tx
                .output
                .iter()
                .zip(used.iter())
                .position(|(o, u)| !*u && o.script_pubkey == spk && value.is_none_or(|v| v == o.value));
            if let (Some(vout), Some(o)) = (pos, pos.and_then(|p| tx.output.get(p))) {
                if let Some(u) = used.get_mut(vout) {
                    *u = true;
                }
                let cltv_expiry = match kind {
                    SweptOutput::Htlc(..) => cltv,
                    _ => None,
                };
                out.push(Found {
                    outpoint: OutPoint { txid, vout: vout as u32 },
                    value: o.value,
                    script,
                    kind,
                    cltv_expiry,
                });
            }
        };
        take(self.to_local_script(k), None, SweptOutput::ToLocal, None, &mut used);
        let anchors = self.channel_type.has_anchors();
        for r in self.htlcs.iter().chain(live) {
            if r.first_commitment > n || r.last_commitment < n {
                continue;
            }
            // In the peer's commitment, HTLCs it offered are "offered".
            let script = match r.offerer {
                Side::Counterparty => script::offered_htlc(&k.revocation, &k.theirs, &k.ours, &r.payment_hash, anchors),
                Side::Holder => {
                    script::received_htlc(&k.revocation, &k.theirs, &k.ours, &r.payment_hash, r.cltv_expiry, anchors)
                }
            };
            let kind = SweptOutput::Htlc(r.offerer, r.id);
            take(script, Some(r.amount.to_amount_floor()), kind, Some(r.cltv_expiry), &mut used);
        }
        out
    }

    /// The outputs of `tx` a penalty would sweep (empty if `tx` is not a revoked commitment).
    pub fn revoked_outputs(&self, tx: &Transaction, live: &[PenaltyRecord]) -> Vec<(OutPoint, Amount, SweptOutput)> {
        let Some(n) = self.revoked_number(tx) else { return Vec::new() };
        let Some(k) = self.keys(n) else { return Vec::new() };
        self.find(n, tx, &k, live).into_iter().map(|f| (f.outpoint, f.value, f.kind)).collect()
    }

    /// Builds and signs a sweep of `found` to the destination at `feerate`.
    fn sweep(
        &self,
        found: &[Found],
        k: &RevokedKeys,
        feerate: FeeratePerKw,
        sign_input: &dyn Fn(&Transaction, usize, &WitnessScript, Amount) -> Option<ecdsa::Signature>,
    ) -> Option<Penalty> {
        if found.is_empty() {
            return None;
        }
        let total = found.iter().try_fold(Amount::ZERO, |a, f| a.checked_add(f.value))?;
        let build = |value: Amount| Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: found
                .iter()
                .map(|f| TxIn {
                    previous_output: f.outpoint,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                    witness: Witness::new(),
                })
                .collect(),
            output: alloc::vec![TxOut { value, script_pubkey: self.destination.clone() }],
        };
        let witness_for = |f: &Found, sig: &ecdsa::Signature| match f.kind {
            SweptOutput::Htlc(..) => script::htlc_revocation_witness(&f.script, sig, &k.revocation),
            _ => script::revocation_witness(&f.script, sig),
        };
        // Weight with maximum-size (73-byte) signatures.
        let witness_weight: u64 = found
            .iter()
            .map(|f| {
                let extra = match f.kind {
                    SweptOutput::Htlc(..) => 34,
                    _ => 2,
                };
                1 + 74 + extra + 3 + f.script.as_bytes().len() as u64
            })
            .sum();
        let base = 4 + 1 + found.len() as u64 * 41 + 1 + 8 + 1 + self.destination.len() as u64 + 4;
        let weight = base * 4 + 2 + witness_weight;
        let fee = feerate.fee_for_weight(weight);
        let mut tx = build(total.checked_sub(fee)?);
        for (i, f) in found.iter().enumerate() {
            let sig = sign_input(&tx, i, &f.script, f.value)?;
            if let Some(input) = tx.input.get_mut(i) {
                input.witness = witness_for(f, &sig);
            }
        }
        Some(Penalty { swept: found.iter().map(|f| (f.outpoint, f.value, f.kind)).collect(), tx })
    }

    fn own_signer(
        &self,
        secret: PerCommitmentSecret,
    ) -> impl Fn(&Transaction, usize, &WitnessScript, Amount) -> Option<ecdsa::Signature> + '_ {
        move |tx, i, ws, value| {
            let secp = Secp256k1::new();
            let key = derive_revocation_privkey(&secp, self.revocation_base.as_ref()?, &secret).ok()?;
            let msg = sign::p2wsh_sighash(tx, i, ws.as_script(), value, EcdsaSighashType::All).ok()?;
            Some(sign::sign(&secp, &msg, &key, EcdsaSighashType::All))
        }
    }

    /// The penalty transaction for a revoked peer commitment: sweeps its `to_local` and every
    /// HTLC output with the revocation key. `None` if `tx` is not a revoked commitment of this
    /// channel, or has nothing to sweep, or the kit holds no revocation secret.
    pub fn penalty_tx(&self, tx: &Transaction, feerate: FeeratePerKw) -> Option<Penalty> {
        self.penalty_tx_with(tx, feerate, &[], None, None)
    }

    /// As [`PenaltyKit::penalty_tx`], with HTLCs still live in the channel and an outside signer.
    pub(crate) fn penalty_tx_with(
        &self,
        tx: &Transaction,
        feerate: FeeratePerKw,
        live: &[PenaltyRecord],
        only: Option<&[OutPoint]>,
        signer: Option<RevocationSigner<'_>>,
    ) -> Option<Penalty> {
        let n = self.revoked_number(tx)?;
        let k = self.keys(n)?;
        let mut found = self.find(n, tx, &k, live);
        if let Some(only) = only {
            found.retain(|f| only.contains(&f.outpoint));
        }
        let secret = k.secret;
        match signer {
            Some(s) => self.sweep(&found, &k, feerate, &|t, i, w, v| s(t, i, w, v, secret)),
            None => self.sweep(&found, &k, feerate, &self.own_signer(secret)),
        }
    }

    /// The penalty for the output of an HTLC-timeout/-success transaction the cheater spent a
    /// revoked commitment's HTLC output with (it pays to the same revocable script).
    pub fn second_stage_penalty(
        &self,
        commitment: &Transaction,
        htlc_tx: &Transaction,
        feerate: FeeratePerKw,
    ) -> Option<Penalty> {
        self.second_stage_penalty_with(commitment, htlc_tx, feerate, None)
    }

    pub(crate) fn second_stage_penalty_with(
        &self,
        commitment: &Transaction,
        htlc_tx: &Transaction,
        feerate: FeeratePerKw,
        signer: Option<RevocationSigner<'_>>,
    ) -> Option<Penalty> {
        let n = self.revoked_number(commitment)?;
        let ctxid = commitment.compute_txid();
        if !htlc_tx.input.iter().any(|i| i.previous_output.txid == ctxid) {
            return None;
        }
        let k = self.keys(n)?;
        let script = self.to_local_script(&k);
        let spk = script.to_p2wsh();
        let txid = htlc_tx.compute_txid();
        let found: Vec<Found> = htlc_tx
            .output
            .iter()
            .enumerate()
            .filter(|(_, o)| o.script_pubkey == spk)
            .map(|(vout, o)| Found {
                outpoint: OutPoint { txid, vout: vout as u32 },
                value: o.value,
                script: script.clone(),
                kind: SweptOutput::SecondStage,
                cltv_expiry: None,
            })
            .collect();
        let secret = k.secret;
        match signer {
            Some(s) => self.sweep(&found, &k, feerate, &|t, i, w, v| s(t, i, w, v, secret)),
            None => self.sweep(&found, &k, feerate, &self.own_signer(secret)),
        }
    }

    /// The inputs of a penalty sweeping `outputs` (outpoint and value) of revoked commitment
    /// `commitment`, as templates the fee-bumping engine can re-sign at any feerate (key
    /// [`KeyId::RevocationBase`] with [`Tweak::Revocation`]): outputs of the commitment are
    /// recognised as in [`PenaltyKit::penalty_tx`]; any other output is taken for the output of
    /// the cheater's HTLC transaction (it pays the commitment's revocable `to_local` script).
    /// Outputs that cannot be recognised are left out.
    pub(crate) fn penalty_inputs(
        &self,
        commitment: &Transaction,
        live: &[PenaltyRecord],
        outputs: &[(OutPoint, Amount)],
    ) -> Vec<PenaltyInput> {
        let Some(n) = self.revoked_number(commitment) else { return Vec::new() };
        let Some(k) = self.keys(n) else { return Vec::new() };
        let ctxid = commitment.compute_txid();
        let found = self.find(n, commitment, &k, live);
        let to_local = self.to_local_script(&k);
        let mut inputs = Vec::new();
        for &(outpoint, value) in outputs {
            let f = if outpoint.txid == ctxid {
                match found.iter().find(|f| f.outpoint == outpoint) {
                    Some(f) => (f.script.clone(), f.kind, f.cltv_expiry),
                    None => continue,
                }
            } else {
                (to_local.clone(), SweptOutput::SecondStage, None)
            };
            let (script, kind, cltv_expiry) = f;
            let witness = match kind {
                SweptOutput::Htlc(..) => alloc::vec![
                    WitnessPart::Signature,
                    WitnessPart::Bytes(k.revocation.serialize().to_vec()),
                    WitnessPart::WitnessScript,
                ],
                _ => {
                    alloc::vec![WitnessPart::Signature, WitnessPart::Bytes(alloc::vec![1]), WitnessPart::WitnessScript]
                }
            };
            let template = InputTemplate {
                outpoint,
                value,
                script_code: ScriptBuf::from(script.as_bytes().to_vec()),
                p2wpkh: false,
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                key: Some((KeyId::RevocationBase, Tweak::Revocation(k.secret))),
                witness,
                paired_output: None,
            };
            inputs.push(PenaltyInput { template, kind, cltv_expiry });
        }
        inputs
    }

    /// The outputs of `htlc_tx` (the cheater's HTLC transaction spending revoked commitment
    /// `commitment`) that pay the revocable script: what a second-stage penalty sweeps.
    pub(crate) fn second_stage_outputs(
        &self,
        commitment: &Transaction,
        htlc_tx: &Transaction,
    ) -> Vec<(OutPoint, Amount)> {
        let Some(n) = self.revoked_number(commitment) else { return Vec::new() };
        let ctxid = commitment.compute_txid();
        if !htlc_tx.input.iter().any(|i| i.previous_output.txid == ctxid) {
            return Vec::new();
        }
        let Some(k) = self.keys(n) else { return Vec::new() };
        let spk = self.to_local_script(&k).to_p2wsh();
        let txid = htlc_tx.compute_txid();
        htlc_tx
            .output
            .iter()
            .enumerate()
            .filter(|(_, o)| o.script_pubkey == spk)
            .map(|(vout, o)| (OutPoint { txid, vout: vout as u32 }, o.value))
            .collect()
    }

    /// The versioned encoding of the kit (the watchtower blob).
    pub fn encode(&self) -> Vec<u8> {
        let mut t = TlvWriter::new(KIND_KIT, VERSION);
        t.record(0, |w| {
            w.bool(self.channel_type.has_anchors())
                .u64(self.obscuring_factor.to_u64())
                .outpoint(&self.funding_outpoint);
            w.pubkey(self.revocation_basepoint.public_key()).pubkey(self.holder_htlc_basepoint.public_key());
            w.pubkey(self.counterparty_delayed_basepoint.public_key())
                .pubkey(self.counterparty_htlc_basepoint.public_key());
            w.u16(self.counterparty_to_self_delay).script(&self.destination);
        })
        .record(2, |w| {
            w.bytes(&self.secrets.encode());
        })
        .record(4, |w| {
            w.bigsize(self.htlcs.len() as u64);
            for r in &self.htlcs {
                w.var_bytes(&r.encode());
            }
        })
        .optional(6, self.revocation_base.as_ref(), |w, s| {
            w.bytes(&s.secret_key().secret_bytes());
        });
        t.finish()
    }

    /// Decodes a kit.
    ///
    /// # Errors
    /// [`DecodeError`] for malformed bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (version, tlv) = read_header(bytes, KIND_KIT)?;
        if version != VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let (mut head, mut secrets, mut htlcs, mut rev) = (None, None, None, None);
        tlv.for_each(|ty, r| {
            match ty {
                0 => {
                    let anchors = r.bool("channel_type")?;
                    let factor = r.u64()?;
                    let outpoint = r.outpoint()?;
                    let keys = (r.pubkey("rev")?, r.pubkey("htlc")?, r.pubkey("delayed")?, r.pubkey("their htlc")?);
                    head = Some((anchors, factor, outpoint, keys, r.u16()?, r.script()?));
                }
                2 => {
                    let b: [u8; SecretStore::ENCODED_LEN] = r.array()?;
                    secrets = Some(SecretStore::decode(&b).map_err(|_| DecodeError::InvalidValue("secrets"))?);
                }
                4 => {
                    let n = r.bigsize()?;
                    if n > r.remaining() as u64 {
                        return Err(DecodeError::Truncated);
                    }
                    let mut v = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        v.push(PenaltyRecord::decode(r.var_bytes()?)?);
                    }
                    htlcs = Some(v);
                }
                6 => {
                    let b: [u8; 32] = r.array()?;
                    let sk = bitcoin::secp256k1::SecretKey::from_slice(&b)
                        .map_err(|_| DecodeError::InvalidValue("secret"))?;
                    rev = Some(RevocationBaseSecret::from_secret_key(sk));
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        let (anchors, factor, funding_outpoint, (rb, hb, cdb, chb), delay, destination) = required(head, "kit")?;
        Ok(PenaltyKit {
            channel_type: if anchors { ChannelType::AnchorsZeroFeeHtlc } else { ChannelType::StaticRemoteKey },
            obscuring_factor: ObscuringFactor::from_u64(factor),
            funding_outpoint,
            revocation_basepoint: RevocationBasepoint::from_public_key(rb),
            holder_htlc_basepoint: HtlcBasepoint::from_public_key(hb),
            counterparty_delayed_basepoint: DelayedPaymentBasepoint::from_public_key(cdb),
            counterparty_htlc_basepoint: HtlcBasepoint::from_public_key(chb),
            counterparty_to_self_delay: delay,
            secrets: required(secrets, "secrets")?,
            htlcs: required(htlcs, "htlcs")?,
            destination,
            revocation_base: rev,
        })
    }
}
