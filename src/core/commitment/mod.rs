//! BOLT #3 transactions: the commitment transaction, its HTLC-timeout and HTLC-success
//! transactions, and the cooperative closing transaction.
//!
//! The builders are pure: [`build_commitment`] takes the channel's static parameters
//! ([`CommitmentParams`]), the keys of one commitment ([`CommitmentKeys`]) and its balances and
//! HTLCs ([`CommitmentState`]), and returns a [`BuiltCommitment`] that knows every output's role
//! and witness script. Signing and verifying live in [`signatures`]; both sides of a channel
//! build the same bytes from the same inputs, so no transaction ever travels between peers.
//!
//! "Broadcaster" is the party that holds and can broadcast the commitment; "countersignatory" is
//! the peer that signed it for them.

pub mod closing;
pub mod fees;
pub mod number;
pub mod signatures;

use alloc::vec::Vec;
use core::fmt;

use bitcoin::absolute::LockTime;
use bitcoin::secp256k1::{Secp256k1, Signing, Verification};
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};

pub use fees::{ChannelType, FeeratePerKw};
pub use number::{CommitmentNumber, ObscuringFactor};

use super::hashlock::PaymentHash;
use super::keys::{
    ChannelPubkeys, DelayedPaymentPubkey, DerivationError, FundingPubkey, HtlcPubkey, PerCommitmentPoint,
    RevocationPubkey,
};
use super::script::{self, WitnessScript};
use super::units::MilliSats;

/// Which way an HTLC goes, seen from the commitment's broadcaster.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum HtlcDirection {
    /// The broadcaster offered it (pays the countersignatory on success); spent on timeout by
    /// an HTLC-timeout transaction.
    Offered,
    /// The broadcaster receives it; spent with the preimage by an HTLC-success transaction.
    Received,
}

/// An HTLC as it appears in one commitment.
///
/// It keeps `RIPEMD160(payment_hash)` (the 20 bytes its script compares against), computed once
/// in [`CommitmentHtlc::new`], so that building the many commitments an HTLC lives through does
/// not hash it again each time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct CommitmentHtlc {
    direction: HtlcDirection,
    amount: MilliSats,
    payment_hash: PaymentHash,
    cltv_expiry: u32,
    payment_ripemd: [u8; 20],
}

impl CommitmentHtlc {
    /// An HTLC of `amount` locked to `payment_hash` until block `cltv_expiry`, `direction` seen
    /// from the commitment's broadcaster.
    pub fn new(direction: HtlcDirection, amount: MilliSats, payment_hash: PaymentHash, cltv_expiry: u32) -> Self {
        Self::with_ripemd(direction, amount, payment_hash, payment_hash.ripemd160(), cltv_expiry)
    }

    /// As [`CommitmentHtlc::new`], with `payment_ripemd` = `payment_hash.ripemd160()` kept by the
    /// caller.
    pub(crate) fn with_ripemd(
        direction: HtlcDirection,
        amount: MilliSats,
        payment_hash: PaymentHash,
        payment_ripemd: [u8; 20],
        cltv_expiry: u32,
    ) -> Self {
        debug_assert_eq!(payment_ripemd, payment_hash.ripemd160());
        CommitmentHtlc { direction, amount, payment_hash, cltv_expiry, payment_ripemd }
    }

    /// Direction, from the broadcaster's point of view.
    pub fn direction(&self) -> HtlcDirection {
        self.direction
    }

    /// Amount (rounded down to whole satoshi on chain).
    pub fn amount(&self) -> MilliSats {
        self.amount
    }

    /// The payment hash.
    pub fn payment_hash(&self) -> PaymentHash {
        self.payment_hash
    }

    /// The absolute expiry height (`cltv_expiry`).
    pub fn cltv_expiry(&self) -> u32 {
        self.cltv_expiry
    }
}

/// The static parameters of one party's commitments: everything that does not change from one
/// commitment to the next.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CommitmentParams {
    /// Channel type.
    pub channel_type: ChannelType,
    /// The funding output.
    pub funding_outpoint: OutPoint,
    /// Its value (the channel capacity).
    pub funding_value: Amount,
    /// Whether the broadcaster opened (funded) the channel and so pays the fee and anchors.
    pub broadcaster_is_funder: bool,
    /// The delay on the broadcaster's own outputs (chosen by the countersignatory).
    pub to_self_delay: u16,
    /// The broadcaster's dust limit.
    pub dust_limit: Amount,
    /// Obscures commitment numbers on chain.
    pub obscuring_factor: ObscuringFactor,
    /// The broadcaster's public keys.
    pub broadcaster: ChannelPubkeys,
    /// The countersignatory's public keys.
    pub countersignatory: ChannelPubkeys,
}

impl CommitmentParams {
    /// The 2-of-2 funding witness script.
    pub fn funding_script(&self) -> WitnessScript {
        script::funding(&self.broadcaster.funding, &self.countersignatory.funding)
    }
}

/// The keys of one commitment, derived from its per-commitment point.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CommitmentKeys {
    /// The broadcaster's per-commitment point.
    pub per_commitment_point: PerCommitmentPoint,
    /// The revocation key (countersignatory's revocation basepoint + point).
    pub revocation: RevocationPubkey,
    /// The broadcaster's delayed payment key.
    pub broadcaster_delayed: DelayedPaymentPubkey,
    /// The broadcaster's HTLC key.
    pub broadcaster_htlc: HtlcPubkey,
    /// The countersignatory's HTLC key.
    pub countersignatory_htlc: HtlcPubkey,
}

impl CommitmentKeys {
    /// Derives the keys of the commitment with `per_commitment_point`.
    ///
    /// # Errors
    /// [`DerivationError`] with negligible probability (or for hostile points).
    pub fn derive<C: Signing + Verification>(
        secp: &Secp256k1<C>,
        per_commitment_point: &PerCommitmentPoint,
        broadcaster: &ChannelPubkeys,
        countersignatory: &ChannelPubkeys,
    ) -> Result<Self, DerivationError> {
        Ok(CommitmentKeys {
            per_commitment_point: *per_commitment_point,
            revocation: RevocationPubkey::derive(secp, &countersignatory.revocation_basepoint, per_commitment_point)?,
            broadcaster_delayed: DelayedPaymentPubkey::derive(
                secp,
                &broadcaster.delayed_payment_basepoint,
                per_commitment_point,
            )?,
            broadcaster_htlc: HtlcPubkey::derive(secp, &broadcaster.htlc_basepoint, per_commitment_point)?,
            countersignatory_htlc: HtlcPubkey::derive(secp, &countersignatory.htlc_basepoint, per_commitment_point)?,
        })
    }
}

/// The changing part of one commitment.
#[derive(Clone, Copy, Debug)]
pub struct CommitmentState<'a> {
    /// The commitment number.
    pub number: CommitmentNumber,
    /// The broadcaster's balance, before fees, excluding HTLCs.
    pub to_broadcaster: MilliSats,
    /// The countersignatory's balance, before fees, excluding HTLCs.
    pub to_countersignatory: MilliSats,
    /// The fee rate.
    pub feerate: FeeratePerKw,
    /// Every HTLC in the commitment, trimmed or not.
    pub htlcs: &'a [CommitmentHtlc],
}

/// Why a commitment could not be built.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum CommitmentError {
    /// Balances plus HTLCs do not add up to the funding value.
    ValueMismatch,
    /// An amount overflowed.
    Overflow,
    /// The funder's balance cannot pay the commitment fee and anchors. BOLT #3 would cap the fee
    /// at what the funder has ([`build_commitment_capping_fee`]); a channel must never sign such a
    /// commitment, since it would not pay the fee rate both sides agreed on.
    FunderCannotPayFee,
}

impl fmt::Display for CommitmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CommitmentError::ValueMismatch => "balances and HTLCs do not add up to the channel capacity",
            CommitmentError::Overflow => "amount overflow",
            CommitmentError::FunderCannotPayFee => "the funder cannot pay the commitment fee",
        })
    }
}

impl core::error::Error for CommitmentError {}

/// The role of one output of a commitment transaction.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum OutputRole {
    /// The broadcaster's delayed, revocable `to_local` output.
    ToBroadcaster,
    /// The countersignatory's `to_remote` output.
    ToCountersignatory,
    /// The broadcaster's anchor.
    BroadcasterAnchor,
    /// The countersignatory's anchor.
    CountersignatoryAnchor,
    /// An HTLC output; the index is into [`CommitmentState::htlcs`].
    Htlc(usize),
}

/// One output of a built commitment.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CommitmentOutput {
    /// What the output is.
    pub role: OutputRole,
    /// Its witness script (`None` for the P2WPKH `to_remote` of a non-anchor channel).
    pub witness_script: Option<WitnessScript>,
    /// Its value.
    pub value: Amount,
}

/// A commitment transaction with everything needed to sign it, verify it, and spend its outputs.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BuiltCommitment {
    tx: Transaction,
    txid: Txid,
    outputs: Vec<CommitmentOutput>,
    htlcs: Vec<CommitmentHtlc>,
    htlc_vouts: Vec<Option<u32>>,
    base_fee: Amount,
    number: CommitmentNumber,
    keys: CommitmentKeys,
    channel_type: ChannelType,
    feerate: FeeratePerKw,
    to_self_delay: u16,
    funding_script: WitnessScript,
    funding_value: Amount,
    broadcaster_funding: FundingPubkey,
    countersignatory_funding: FundingPubkey,
    /// The broadcaster's revocable `to_local` script, also the output of every HTLC transaction.
    to_local_script: WitnessScript,
    /// Its P2WSH scriptPubKey (hashed once, shared by every HTLC transaction).
    to_local_p2wsh: ScriptBuf,
}

/// An HTLC-timeout or HTLC-success transaction spending one HTLC output of a commitment.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct HtlcTx {
    /// The unsigned transaction.
    pub tx: Transaction,
    /// Index of the HTLC in [`CommitmentState::htlcs`].
    pub htlc_index: usize,
    /// The commitment output it spends.
    pub vout: u32,
    /// That output's witness script.
    pub htlc_script: WitnessScript,
    /// That output's value.
    pub input_value: Amount,
    /// Offered (HTLC-timeout) or received (HTLC-success).
    pub direction: HtlcDirection,
}

/// Builds the BOLT #3 commitment transaction.
///
/// Outputs below the broadcaster's dust limit are left out, HTLCs that would not pay for their
/// second-stage transaction are trimmed into the fee, the funder pays the fee and, with anchors,
/// two 330-sat anchors; outputs are in BIP-0069 order with HTLC ties broken by `cltv_expiry`.
///
/// # Errors
/// [`CommitmentError::ValueMismatch`] if balances plus HTLCs are not the funding value;
/// [`CommitmentError::FunderCannotPayFee`] if the funder's balance is below the fee plus anchors
/// (never silently underpaid).
pub fn build_commitment(
    params: &CommitmentParams,
    keys: &CommitmentKeys,
    state: &CommitmentState<'_>,
) -> Result<BuiltCommitment, CommitmentError> {
    build(params, keys, state, false)
}

/// [`build_commitment`] with BOLT #3's rule for a funder that cannot pay the whole fee: the fee
/// is capped at what the funder has (its output disappears). Only for reproducing BOLT #3's test
/// vectors and commitments built by others; a channel never signs such a commitment.
///
/// # Errors
/// [`CommitmentError::ValueMismatch`] if balances plus HTLCs are not the funding value.
pub fn build_commitment_capping_fee(
    params: &CommitmentParams,
    keys: &CommitmentKeys,
    state: &CommitmentState<'_>,
) -> Result<BuiltCommitment, CommitmentError> {
    build(params, keys, state, true)
}

fn build(
    params: &CommitmentParams,
    keys: &CommitmentKeys,
    state: &CommitmentState<'_>,
    cap_fee: bool,
) -> Result<BuiltCommitment, CommitmentError> {
    let ct = params.channel_type;
    let mut total = state.to_broadcaster.checked_add(state.to_countersignatory).ok_or(CommitmentError::Overflow)?;
    for h in state.htlcs {
        total = total.checked_add(h.amount).ok_or(CommitmentError::Overflow)?;
    }
    if Some(total) != MilliSats::from_amount(params.funding_value) {
        return Err(CommitmentError::ValueMismatch);
    }

    // The outputs, their roles and cltv tie-breaks, sorted in place at the end.
    let mut outs = Outputs::with_capacity(state.htlcs.len() + 4);
    let mut untrimmed = 0usize;
    let htlc_keys = script::HtlcScriptKeys::new(&keys.revocation, &keys.broadcaster_htlc, &keys.countersignatory_htlc);
    for (i, h) in state.htlcs.iter().enumerate() {
        let offered = h.direction == HtlcDirection::Offered;
        if fees::is_htlc_trimmed(ct, offered, h.amount, params.dust_limit, state.feerate) {
            continue;
        }
        untrimmed += 1;
        let ws = if offered {
            htlc_keys.offered_with(&h.payment_ripemd, ct.has_anchors())
        } else {
            htlc_keys.received_with(&h.payment_ripemd, h.cltv_expiry, ct.has_anchors())
        };
        let value = h.amount.to_amount_floor();
        outs.push(
            TxOut { value, script_pubkey: ws.to_p2wsh() },
            CommitmentOutput { role: OutputRole::Htlc(i), witness_script: Some(ws), value },
            h.cltv_expiry,
        );
    }

    let base_fee = state.feerate.fee_for_weight(ct.commitment_weight(untrimmed));
    let anchors_cost = ct.anchor_value().checked_mul(2).ok_or(CommitmentError::Overflow)?;
    let funder_cost = MilliSats::from_amount(base_fee.checked_add(anchors_cost).ok_or(CommitmentError::Overflow)?)
        .ok_or(CommitmentError::Overflow)?;
    let (mut to_b, mut to_c) = (state.to_broadcaster, state.to_countersignatory);
    let funder = if params.broadcaster_is_funder { &mut to_b } else { &mut to_c };
    *funder = match funder.checked_sub(funder_cost) {
        Some(left) => left,
        None if cap_fee => MilliSats::ZERO,
        None => return Err(CommitmentError::FunderCannotPayFee),
    };
    let (to_b, to_c) = (to_b.to_amount_floor(), to_c.to_amount_floor());

    let has_b = to_b >= params.dust_limit;
    let has_c = to_c >= params.dust_limit;
    let to_local_script = script::to_local(&keys.revocation, params.to_self_delay, &keys.broadcaster_delayed);
    let to_local_p2wsh = to_local_script.to_p2wsh();
    if has_b {
        outs.push(
            TxOut { value: to_b, script_pubkey: to_local_p2wsh.clone() },
            CommitmentOutput {
                role: OutputRole::ToBroadcaster,
                witness_script: Some(to_local_script.clone()),
                value: to_b,
            },
            0,
        );
    }
    if has_c {
        let remote = params.countersignatory.payment_basepoint.public_key();
        let (spk, ws) = if ct.has_anchors() {
            let ws = script::to_remote_anchored(remote);
            (ws.to_p2wsh(), Some(ws))
        } else {
            (script::to_remote_p2wpkh(remote), None)
        };
        outs.push(
            TxOut { value: to_c, script_pubkey: spk },
            CommitmentOutput { role: OutputRole::ToCountersignatory, witness_script: ws, value: to_c },
            0,
        );
    }
    if ct.has_anchors() {
        let v = ct.anchor_value();
        for (present, key, role) in [
            (has_b || untrimmed > 0, &params.broadcaster.funding, OutputRole::BroadcasterAnchor),
            (has_c || untrimmed > 0, &params.countersignatory.funding, OutputRole::CountersignatoryAnchor),
        ] {
            if present {
                let ws = script::anchor(key);
                outs.push(
                    TxOut { value: v, script_pubkey: ws.to_p2wsh() },
                    CommitmentOutput { role, witness_script: Some(ws), value: v },
                    0,
                );
            }
        }
    }

    // BOLT #3 order: value, then scriptPubKey, then cltv_expiry; equal outputs keep the order
    // they were added in. Small keys are sorted (not whole outputs), and the scripts are first
    // compared by their first 8 bytes as one integer: zero-padded, that order agrees with the
    // byte-wise order whenever it is strict, and only ties compare the whole scripts.
    let head8 = |spk: &[u8]| {
        let mut head = [0u8; 8];
        for (d, s) in head.iter_mut().zip(spk) {
            *d = *s;
        }
        u64::from_be_bytes(head)
    };
    let full_key = |i: usize| outs.tx.get(i).map(|o| (o.script_pubkey.as_bytes(), outs.cltv.get(i)));
    let mut order: Vec<(Amount, u64, usize)> =
        outs.tx.iter().enumerate().map(|(i, o)| (o.value, head8(o.script_pubkey.as_bytes()), i)).collect();
    order.sort_unstable_by(|a, b| {
        (a.0, a.1).cmp(&(b.0, b.1)).then_with(|| full_key(a.2).cmp(&full_key(b.2))).then(a.2.cmp(&b.2))
    });
    let Outputs { tx: mut tx_outs, info: mut outputs, .. } = outs;
    apply_order(&mut order, &mut tx_outs, &mut outputs);

    let (locktime, sequence) = params.obscuring_factor.encode(state.number);
    let mut htlc_vouts = alloc::vec![None; state.htlcs.len()];
    for (vout, info) in outputs.iter().enumerate() {
        if let OutputRole::Htlc(i) = info.role {
            if let Some(slot) = htlc_vouts.get_mut(i) {
                *slot = Some(vout as u32);
            }
        }
    }
    let tx = Transaction {
        version: Version::TWO,
        lock_time: locktime,
        input: alloc::vec![TxIn {
            previous_output: params.funding_outpoint,
            script_sig: ScriptBuf::new(),
            sequence,
            witness: Witness::new(),
        }],
        output: tx_outs,
    };
    Ok(BuiltCommitment {
        txid: tx.compute_txid(),
        tx,
        outputs,
        htlcs: state.htlcs.to_vec(),
        htlc_vouts,
        base_fee,
        number: state.number,
        keys: *keys,
        channel_type: ct,
        feerate: state.feerate,
        to_self_delay: params.to_self_delay,
        funding_script: params.funding_script(),
        funding_value: params.funding_value,
        broadcaster_funding: params.broadcaster.funding,
        countersignatory_funding: params.countersignatory.funding,
        to_local_script,
        to_local_p2wsh,
    })
}

/// A commitment's outputs while it is built: the transaction outputs, their roles and scripts, and
/// their cltv tie-breaks, in three parallel vectors (so that the first two become the
/// transaction's and the [`BuiltCommitment`]'s without being copied).
struct Outputs {
    tx: Vec<TxOut>,
    info: Vec<CommitmentOutput>,
    cltv: Vec<u32>,
}

impl Outputs {
    fn with_capacity(n: usize) -> Self {
        Outputs { tx: Vec::with_capacity(n), info: Vec::with_capacity(n), cltv: Vec::with_capacity(n) }
    }

    fn push(&mut self, tx: TxOut, info: CommitmentOutput, cltv: u32) {
        self.tx.push(tx);
        self.info.push(info);
        self.cltv.push(cltv);
    }
}

/// Puts `tx` and `info` in the sorted `order` in place: position `k` receives the element at
/// `order[k].2` (a permutation of the positions). Each cycle of the permutation is walked once
/// with swaps; `order`'s indices are overwritten on the way.
fn apply_order(order: &mut [(Amount, u64, usize)], tx: &mut [TxOut], info: &mut [CommitmentOutput]) {
    for start in 0..order.len() {
        let mut k = start;
        // Position `k` still needs its element; `start`'s original element travels along the cycle.
        while let Some(slot) = order.get_mut(k) {
            let src = core::mem::replace(&mut slot.2, k);
            if src == k || src == start {
                break;
            }
            tx.swap(k, src);
            info.swap(k, src);
            k = src;
        }
    }
}

impl BuiltCommitment {
    /// The unsigned transaction.
    pub fn tx(&self) -> &Transaction {
        &self.tx
    }

    /// Its txid (segwit: independent of the signatures).
    pub fn txid(&self) -> Txid {
        self.txid
    }

    /// Its commitment number.
    pub fn number(&self) -> CommitmentNumber {
        self.number
    }

    /// Its keys.
    pub fn keys(&self) -> &CommitmentKeys {
        &self.keys
    }

    /// Its channel type.
    pub fn channel_type(&self) -> ChannelType {
        self.channel_type
    }

    /// Its outputs' roles and scripts, in output order.
    pub fn outputs(&self) -> &[CommitmentOutput] {
        &self.outputs
    }

    /// The HTLCs it was built from (trimmed ones included).
    pub fn htlcs(&self) -> &[CommitmentHtlc] {
        &self.htlcs
    }

    /// The output index of HTLC `i`, or `None` if it was trimmed.
    pub fn htlc_vout(&self, i: usize) -> Option<u32> {
        self.htlc_vouts.get(i).copied().flatten()
    }

    /// The fee computed from the weight (capped by nothing): `feerate · weight / 1000`.
    pub fn base_fee(&self) -> Amount {
        self.base_fee
    }

    /// What the transaction actually pays in fees: capacity minus outputs (includes trimmed HTLCs,
    /// dust balances and rounding).
    pub fn actual_fee(&self) -> Amount {
        let out: u64 = self.tx.output.iter().map(|o| o.value.to_sat()).sum();
        self.funding_value.checked_sub(Amount::from_sat(out)).unwrap_or(Amount::ZERO)
    }

    /// The funding witness script and value it spends.
    pub fn funding(&self) -> (&WitnessScript, Amount) {
        (&self.funding_script, self.funding_value)
    }

    /// The broadcaster's revocable `to_local` witness script (also the output script of every
    /// second-stage HTLC transaction of this commitment).
    pub fn to_local_script(&self) -> &WitnessScript {
        &self.to_local_script
    }

    /// The funding keys of the broadcaster and of the countersignatory.
    pub fn funding_keys(&self) -> (FundingPubkey, FundingPubkey) {
        (self.broadcaster_funding, self.countersignatory_funding)
    }

    /// The fee rate it was built with.
    pub fn feerate(&self) -> FeeratePerKw {
        self.feerate
    }

    /// The delay on the broadcaster's outputs.
    pub fn to_self_delay(&self) -> u16 {
        self.to_self_delay
    }

    /// The HTLC-timeout/-success transactions of every untrimmed HTLC, in output order (the order
    /// of `commitment_signed`'s HTLC signatures). Their output script is the commitment's
    /// [`to_local_script`](Self::to_local_script).
    pub fn htlc_txs(&self) -> Vec<HtlcTx> {
        let template = self.htlc_tx_template();
        let mut txs = Vec::with_capacity(self.outputs.len());
        for o in &self.outputs {
            if let OutputRole::Htlc(i) = o.role {
                txs.extend(self.htlc_tx_from(i, template.clone()));
            }
        }
        txs
    }

    /// The second-stage transaction of HTLC `i`, or `None` if it is trimmed or unknown.
    pub fn htlc_tx(&self, i: usize) -> Option<HtlcTx> {
        self.htlc_tx_from(i, self.htlc_tx_template())
    }

    /// [`BuiltCommitment::htlc_tx`] from a copy of the template.
    fn htlc_tx_from(&self, i: usize, mut tx: Transaction) -> Option<HtlcTx> {
        let (vout, out) = self.fill_htlc_tx(i, &mut tx)?;
        Some(HtlcTx {
            tx,
            htlc_index: i,
            vout,
            htlc_script: out.witness_script.clone()?,
            input_value: out.value,
            direction: self.htlcs.get(i)?.direction,
        })
    }

    /// An HTLC transaction with the parts all of this commitment's share (version, sequence,
    /// input txid, output script); [`BuiltCommitment::fill_htlc_tx`] sets the rest.
    fn htlc_tx_template(&self) -> Transaction {
        let sequence = if self.channel_type.has_anchors() { Sequence(1) } else { Sequence(0) };
        Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: alloc::vec![TxIn {
                previous_output: OutPoint { txid: self.txid, vout: 0 },
                script_sig: ScriptBuf::new(),
                sequence,
                witness: Witness::new(),
            }],
            output: alloc::vec![TxOut { value: Amount::ZERO, script_pubkey: self.to_local_p2wsh.clone() }],
        }
    }

    /// Makes the template `tx` HTLC `i`'s second-stage transaction; returns the commitment output
    /// it spends, or `None` if the HTLC is trimmed, unknown, or cannot pay its fee.
    fn fill_htlc_tx(&self, i: usize, tx: &mut Transaction) -> Option<(u32, &CommitmentOutput)> {
        let h = self.htlcs.get(i)?;
        let vout = self.htlc_vout(i)?;
        let out = self.outputs.get(vout as usize)?;
        let (fee, lock_time) = match h.direction {
            HtlcDirection::Offered => {
                (self.channel_type.htlc_timeout_fee(self.feerate), LockTime::from_consensus(h.cltv_expiry))
            }
            HtlcDirection::Received => (self.channel_type.htlc_success_fee(self.feerate), LockTime::ZERO),
        };
        let value = out.value.checked_sub(fee)?;
        tx.lock_time = lock_time;
        tx.input.first_mut()?.previous_output.vout = vout;
        tx.output.first_mut()?.value = value;
        Some((vout, out))
    }

    /// How many HTLC transactions the commitment has (the length of [`BuiltCommitment::htlc_txs`]).
    pub(crate) fn untrimmed_htlc_count(&self) -> usize {
        self.try_for_each_htlc_tx(|_, _, _| Ok::<(), core::convert::Infallible>(())).unwrap_or(0)
    }

    /// Calls `f` with each untrimmed HTLC's second-stage transaction, its witness script and
    /// input value, in output order (as [`BuiltCommitment::htlc_txs`], without allocating a
    /// transaction per HTLC: one is rewritten in place). Returns how many there were.
    pub(crate) fn try_for_each_htlc_tx<E>(
        &self,
        mut f: impl FnMut(&Transaction, &WitnessScript, Amount) -> Result<(), E>,
    ) -> Result<usize, E> {
        let mut cursor = self.htlc_tx_cursor();
        let mut count = 0;
        while let Some((tx, script, value)) = cursor.next_tx() {
            f(tx, script, value)?;
            count += 1;
        }
        Ok(count)
    }

    /// The untrimmed HTLCs' second-stage transactions one at a time, in output order, in one
    /// transaction rewritten in place.
    pub(crate) fn htlc_tx_cursor(&self) -> HtlcTxCursor<'_> {
        HtlcTxCursor { commitment: self, outputs: self.outputs.iter(), tx: self.htlc_tx_template() }
    }
}

/// See [`BuiltCommitment::htlc_tx_cursor`].
pub(crate) struct HtlcTxCursor<'c> {
    commitment: &'c BuiltCommitment,
    outputs: core::slice::Iter<'c, CommitmentOutput>,
    tx: Transaction,
}

impl<'c> HtlcTxCursor<'c> {
    /// The next HTLC transaction, with the witness script and value of the output it spends.
    pub(crate) fn next_tx(&mut self) -> Option<(&Transaction, &'c WitnessScript, Amount)> {
        let commitment: &'c BuiltCommitment = self.commitment;
        for o in self.outputs.by_ref() {
            let OutputRole::Htlc(i) = o.role else { continue };
            let Some((_, out)) = commitment.fill_htlc_tx(i, &mut self.tx) else { continue };
            let Some(script) = out.witness_script.as_ref() else { continue };
            return Some((&self.tx, script, out.value));
        }
        None
    }

    /// At most this many transactions are left (the outputs not yet looked at).
    pub(crate) fn remaining_hint(&self) -> usize {
        self.outputs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The in-place reordering gives what collecting the elements in `order` would.
        #[test]
        fn apply_order_is_the_permutation(keys in proptest::collection::vec(0u64..8, 0..40)) {
            let tx: Vec<TxOut> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| TxOut { value: Amount::from_sat(*k), script_pubkey: ScriptBuf::from_bytes(alloc::vec![i as u8]) })
                .collect();
            let info: Vec<CommitmentOutput> = (0..keys.len())
                .map(|i| CommitmentOutput { role: OutputRole::Htlc(i), witness_script: None, value: Amount::from_sat(i as u64) })
                .collect();
            let mut order: Vec<(Amount, u64, usize)> = keys.iter().enumerate().map(|(i, k)| (Amount::from_sat(*k), 0, i)).collect();
            order.sort();
            let expected_tx: Vec<TxOut> = order.iter().map(|o| tx[o.2].clone()).collect();
            let expected_info: Vec<CommitmentOutput> = order.iter().map(|o| info[o.2].clone()).collect();
            let (mut tx, mut info) = (tx, info);
            apply_order(&mut order, &mut tx, &mut info);
            proptest::prop_assert_eq!(tx, expected_tx);
            proptest::prop_assert_eq!(info, expected_info);
        }
    }
}
