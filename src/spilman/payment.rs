//! The payment transaction template of a unidirectional channel (docs/spilman.md §2), shared by the
//! Spilman layer and the duplex leaf channels.
//!
//! Both parties build every payment transaction from the same [`PaymentTemplate`] and a
//! [`PaymentState`]; only the payer's signature travels. The payee never signs (or even looks at)
//! a transaction the payer supplies: it rebuilds it and checks the signature against its own
//! reconstruction.
//!
//! A payment transaction spends the channel output with `nSequence = 0xFFFFFFFD`, `nLockTime` 0,
//! and pays, in BIP-0069 order (HTLC ties broken by expiry):
//! * the payee `to_payee - fee` (the payee pays the fee; it can CPFP its own output),
//! * the payer its change `capacity - to_payee - Σ htlc`, omitted when zero,
//! * one [`hashlock_htlc`](crate::core::script::hashlock_htlc) output per conditional payment.
//!
//! The payer signs `SIGHASH_ALL`: with `SINGLE|ANYONECANPAY` (bitcoinj) the HTLC outputs would be
//! uncommitted and the payee could take their value.

use alloc::vec::Vec;
use core::fmt;

use bitcoin::absolute::LockTime;
use bitcoin::secp256k1::{PublicKey, Secp256k1, Verification};
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::transaction::Version;
use bitcoin::{ecdsa, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};

use crate::core::hashlock::{PaymentHash, PaymentPreimage};
use crate::core::keys::FundingPubkey;
use crate::core::script::{self, WitnessScript};
use crate::core::sign::{self, KeyId, SignRequest, SignatureError, Signer, SignerError, Tweak};
use crate::core::standard::PayoutPolicy;
use crate::core::units::BlockHeight;

/// How the channel output is locked, which decides the witness of a payment.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ChannelLock {
    /// The [`spilman_cltv`](script::spilman_cltv) script (refund after an absolute expiry).
    Cltv(BlockHeight),
    /// The [`spilman_csv`](script::spilman_csv) script (refund after a relative delay; duplex
    /// leaves).
    Csv(u16),
    /// A plain 2-of-2 ([`funding`](script::funding)) with a pre-signed refund.
    Multisig,
}

/// An HTLC carried by a payment transaction.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PaymentHtlc {
    /// Identifier, unique per channel and direction, increasing.
    pub id: u64,
    /// Value of the HTLC output.
    pub amount: Amount,
    /// Payment hash.
    pub payment_hash: PaymentHash,
    /// Height from which the payer may take it back.
    pub expiry: BlockHeight,
}

/// What a payment transaction pays, cumulatively.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct PaymentState {
    /// Total paid to the payee so far (before the fee the payee pays).
    pub to_payee: Amount,
    /// Outstanding HTLCs, ordered by id.
    pub htlcs: Vec<PaymentHtlc>,
}

impl PaymentState {
    /// The sum of the HTLC amounts, or `None` on overflow.
    pub fn htlc_total(&self) -> Option<Amount> {
        self.htlcs.iter().try_fold(Amount::ZERO, |acc, h| acc.checked_add(h.amount))
    }
}

/// Why a payment state cannot be turned into a valid transaction.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum PaymentError {
    /// Payee, HTLC and change amounts exceed the channel capacity.
    ExceedsCapacity,
    /// The payee's output, after the fee, would be below the dust limit.
    PayeeBelowDust,
    /// The payer's change is neither zero nor at least the dust limit.
    ChangeBelowDust,
    /// An HTLC output is below the dust limit.
    HtlcBelowDust,
    /// More than [`MAX_HTLCS`] HTLC outputs (the transaction would be too heavy to relay).
    TooManyHtlcs,
    /// The fixed payment fee is below the minimum relay feerate (1 sat/vB) for the transaction's
    /// size (each HTLC output adds 43 vB): Bitcoin Core would not relay it, not even with a
    /// child paying for it (a version-2 parent must pay the minimum alone), so the payee could
    /// not close with it.
    BelowMinRelay,
}

/// The most HTLC outputs one payment transaction may carry (as BOLT #2's per-direction limit);
/// keeps every payment transaction far below the 400,000-weight standardness limit.
pub const MAX_HTLCS: usize = 483;

/// The payout scripts a Spilman channel accepts for the payer and the payee: every template
/// Bitcoin Core relays as a payout ([`PayoutPolicy::RELAY`]: P2PKH, P2SH, P2WPKH, P2WSH, P2TR and
/// other witness programs of versions 1..=16), never `OP_RETURN`.
pub const PAYOUT_POLICY: PayoutPolicy = PayoutPolicy::RELAY;

impl fmt::Display for PaymentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PaymentError::ExceedsCapacity => "payment exceeds channel capacity",
            PaymentError::PayeeBelowDust => "payee output below dust after fee",
            PaymentError::ChangeBelowDust => "payer change below dust",
            PaymentError::HtlcBelowDust => "HTLC output below dust",
            PaymentError::TooManyHtlcs => "too many HTLC outputs",
            PaymentError::BelowMinRelay => "payment fee below the minimum relay feerate for its size",
        })
    }
}

impl core::error::Error for PaymentError {}

/// Why a payee refuses a new payment state (the docs/spilman.md §4 checks against the newest payment it
/// holds, [`PaymentTemplate::check_update`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum UpdateError {
    /// The payment number is not above the one held (a replay), or is zero.
    Replay,
    /// The payee's amount went down.
    AmountDecreased,
    /// HTLC ids are not strictly increasing, or a new HTLC reuses an id.
    HtlcIdReused,
    /// An HTLC was changed, removed without being fulfilled, failed or expired, or its fulfilment
    /// was not folded into the payee's output.
    HtlcRemovedUnfairly,
    /// A new HTLC's expiry is outside the payee's window.
    HtlcExpiry,
    /// Nothing changed: same amount and same HTLCs.
    NoProgress,
    /// The state is not payable (capacity, dust).
    Payment(PaymentError),
    /// The payer's signature is wrong.
    Signature(SignatureError),
    /// The payment number, or a new HTLC's id, is `u64::MAX`: nothing could follow it, so the
    /// rule that numbers and ids are never reused could not hold after it.
    Exhausted,
}

impl fmt::Display for UpdateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpdateError::Payment(e) => write!(f, "payment: {e}"),
            UpdateError::Signature(e) => write!(f, "payment signature: {e}"),
            other => fmt::Debug::fmt(other, f),
        }
    }
}

impl core::error::Error for UpdateError {}

/// What the payee allows when it checks a new payment state ([`PaymentTemplate::check_update`]).
pub struct UpdateRules<'a> {
    /// Whether the payee revealed the preimage of this HTLC id (the payer may then remove it,
    /// folding its amount into the payee's output).
    pub is_fulfilled: &'a dyn Fn(u64) -> bool,
    /// Whether the payee gave this HTLC id up (the payer may then remove it).
    pub is_failed: &'a dyn Fn(u64) -> bool,
    /// The smallest id a new HTLC may carry.
    pub next_htlc_id: u64,
    /// The chain tip: an HTLC whose expiry is reached may be removed.
    pub tip: BlockHeight,
    /// A new HTLC must expire at or after this height (`None`: no new HTLC is acceptable).
    pub earliest_expiry: Option<BlockHeight>,
    /// A new HTLC must expire at or before this height.
    pub latest_expiry: BlockHeight,
}

impl fmt::Debug for UpdateRules<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpdateRules")
            .field("next_htlc_id", &self.next_htlc_id)
            .field("tip", &self.tip)
            .field("earliest_expiry", &self.earliest_expiry)
            .field("latest_expiry", &self.latest_expiry)
            .finish_non_exhaustive()
    }
}

/// An output with, for HTLCs, its position in the state and script, and the expiry tie-break.
type SortableOutput = (TxOut, Option<(usize, WitnessScript)>, u32);

/// The fixed part of every payment transaction of one channel.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PaymentTemplate {
    /// The channel output spent by every payment.
    pub outpoint: OutPoint,
    /// Its value (the channel capacity).
    pub capacity: Amount,
    /// How it is locked.
    pub lock: ChannelLock,
    /// The payer's channel key.
    pub payer_key: PublicKey,
    /// The payee's channel key.
    pub payee_key: PublicKey,
    /// The payer's HTLC key (timeout path).
    pub payer_htlc_key: PublicKey,
    /// The payee's HTLC key (success path).
    pub payee_htlc_key: PublicKey,
    /// Where the payer's change goes.
    pub payer_script: ScriptBuf,
    /// Where the payee's output goes.
    pub payee_script: ScriptBuf,
    /// The fee of every payment transaction, paid by the payee.
    pub fee: Amount,
    /// No output may be below this.
    pub dust_limit: Amount,
}

/// A payment transaction built from a template and a state.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BuiltPayment {
    /// The unsigned transaction.
    pub tx: Transaction,
    /// For each HTLC of the state (same order), its output index and witness script.
    pub htlc_outputs: Vec<(u32, WitnessScript)>,
}

impl PaymentTemplate {
    /// The witness script of the channel output.
    pub fn channel_script(&self) -> WitnessScript {
        match self.lock {
            ChannelLock::Cltv(expiry) => script::spilman_cltv(&self.payer_key, &self.payee_key, expiry),
            ChannelLock::Csv(delay) => script::spilman_csv(&self.payer_key, &self.payee_key, delay),
            ChannelLock::Multisig => script::funding(
                &FundingPubkey::from_public_key(self.payer_key),
                &FundingPubkey::from_public_key(self.payee_key),
            ),
        }
    }

    /// The witness script of an HTLC output.
    pub fn htlc_script(&self, htlc: &PaymentHtlc) -> WitnessScript {
        script::hashlock_htlc(&self.payee_htlc_key, &self.payer_htlc_key, &htlc.payment_hash, htlc.expiry)
    }

    /// The payer's change in `state`, checking every amount.
    ///
    /// # Errors
    /// [`PaymentError`] if the state is not payable.
    pub fn check(&self, state: &PaymentState) -> Result<Amount, PaymentError> {
        if state.htlcs.len() > MAX_HTLCS {
            return Err(PaymentError::TooManyHtlcs);
        }
        let htlcs = state.htlc_total().ok_or(PaymentError::ExceedsCapacity)?;
        let change = self
            .capacity
            .checked_sub(state.to_payee)
            .and_then(|c| c.checked_sub(htlcs))
            .ok_or(PaymentError::ExceedsCapacity)?;
        let payee_out = state.to_payee.checked_sub(self.fee).ok_or(PaymentError::PayeeBelowDust)?;
        if payee_out < self.dust_limit {
            return Err(PaymentError::PayeeBelowDust);
        }
        if change != Amount::ZERO && change < self.dust_limit {
            return Err(PaymentError::ChangeBelowDust);
        }
        if state.htlcs.iter().any(|h| h.amount < self.dust_limit) {
            return Err(PaymentError::HtlcBelowDust);
        }
        Ok(change)
    }

    /// Builds the unsigned payment transaction for `state`.
    ///
    /// # Errors
    /// [`PaymentError`] if the state is not payable.
    pub fn build(&self, state: &PaymentState) -> Result<BuiltPayment, PaymentError> {
        let change = self.check(state)?;
        let mut outs: Vec<SortableOutput> = Vec::with_capacity(state.htlcs.len() + 2);
        outs.push((TxOut { value: state.to_payee - self.fee, script_pubkey: self.payee_script.clone() }, None, 0));
        if change > Amount::ZERO {
            outs.push((TxOut { value: change, script_pubkey: self.payer_script.clone() }, None, 0));
        }
        for (i, h) in state.htlcs.iter().enumerate() {
            let ws = self.htlc_script(h);
            outs.push((TxOut { value: h.amount, script_pubkey: ws.to_p2wsh() }, Some((i, ws)), h.expiry.0));
        }
        outs.sort_by(|a, b| {
            (a.0.value, a.0.script_pubkey.as_bytes(), a.2).cmp(&(b.0.value, b.0.script_pubkey.as_bytes(), b.2))
        });
        let mut htlc_outputs: Vec<Option<(u32, WitnessScript)>> = alloc::vec![None; state.htlcs.len()];
        let mut output = Vec::with_capacity(outs.len());
        for (vout, (txout, htlc, _)) in outs.into_iter().enumerate() {
            if let Some((i, ws)) = htlc {
                if let Some(slot) = htlc_outputs.get_mut(i) {
                    *slot = Some((vout as u32, ws));
                }
            }
            output.push(txout);
        }
        let tx = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: alloc::vec![TxIn {
                previous_output: self.outpoint,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            }],
            output,
        };
        if self.fee.to_sat() < self.max_signed_vsize(&tx) {
            return Err(PaymentError::BelowMinRelay);
        }
        Ok(BuiltPayment { tx, htlc_outputs: htlc_outputs.into_iter().flatten().collect() })
    }

    /// The largest virtual size `tx` (a payment, unsigned) has once signed: two signatures of
    /// at most 73 bytes, the empty element of a 2-of-2, and the channel script.
    fn max_signed_vsize(&self, tx: &Transaction) -> u64 {
        let ws = self.channel_script().as_bytes().len() as u64;
        let ws_len = if ws < 0xfd { 1 } else { 3 };
        let witness = 1 + 2 * (1 + 73) + 1 + ws_len + ws;
        (4 * tx.base_size() as u64 + 2 + witness).div_ceil(4)
    }

    fn sign_channel_input<S: Signer + ?Sized>(
        &self,
        signer: &S,
        tx: &Transaction,
    ) -> Result<ecdsa::Signature, SignerError> {
        let ws = self.channel_script();
        signer.sign(&SignRequest {
            tx,
            input: 0,
            script_code: ws.as_script(),
            p2wpkh: false,
            value: self.capacity,
            sighash_type: EcdsaSighashType::All,
            key: KeyId::Funding,
            tweak: Tweak::None,
        })
    }

    /// The payer's signature on a built payment.
    ///
    /// # Errors
    /// [`SignerError`] from the signer.
    pub fn sign<S: Signer + ?Sized>(&self, signer: &S, built: &BuiltPayment) -> Result<ecdsa::Signature, SignerError> {
        self.sign_channel_input(signer, &built.tx)
    }

    /// `state` signed as payment `number` — on reconnection, the newest payment sent again (the
    /// same signature as the first time: RFC6979). `None` if `state` is not a payment (a fresh
    /// channel's empty state).
    ///
    /// # Errors
    /// [`SignerError`] from the signer.
    pub fn resend<S: Signer + ?Sized>(
        &self,
        signer: &S,
        number: u64,
        state: &PaymentState,
    ) -> Result<Option<super::Payment>, SignerError> {
        let Ok(built) = self.build(state) else { return Ok(None) };
        let signature = self.sign(signer, &built)?;
        Ok(Some(super::Payment { number, to_payee: state.to_payee, htlcs: state.htlcs.clone(), signature }))
    }

    /// Whether `payment` carries a valid payer signature over its state (on reconnection, a payer
    /// checks that a payment the payee holds and the payer does not remember is its own).
    pub fn is_signed<C: Verification>(&self, secp: &Secp256k1<C>, payment: &super::Payment) -> bool {
        let state = PaymentState { to_payee: payment.to_payee, htlcs: payment.htlcs.clone() };
        self.build(&state).is_ok_and(|built| self.verify(secp, &built, &payment.signature).is_ok())
    }

    /// Checks the payer's signature on `built` (exactly `SIGHASH_ALL`, low S, valid for the payer
    /// key over the payee's own reconstruction).
    ///
    /// # Errors
    /// [`SignatureError`] naming the failed check.
    pub fn verify<C: Verification>(
        &self,
        secp: &Secp256k1<C>,
        built: &BuiltPayment,
        payer_sig: &ecdsa::Signature,
    ) -> Result<sign::SignatureValid, SignatureError> {
        let ws = self.channel_script();
        let msg = sign::p2wsh_sighash(&built.tx, 0, ws.as_script(), self.capacity, EcdsaSighashType::All)?;
        sign::verify(secp, &msg, payer_sig, &self.payer_key, EcdsaSighashType::All)
    }

    /// The payee's checks of a new payment state against the one it holds (docs/spilman.md
    /// §4): the number goes up, the payee's amount never goes down, every held HTLC is kept
    /// unchanged or removed fairly (a fulfilled one folded into the payee's amount, a failed or
    /// expired one dropped), new HTLCs have fresh increasing ids and an expiry inside the window,
    /// something changed, the state is payable, and the payer's signature verifies over the
    /// payee's own reconstruction of the transaction. Pure; returns the new HTLCs.
    ///
    /// `held` is `(number, state)` of the newest payment held (`(0, empty)` before the first one);
    /// `update` is `(number, state, payer signature)` of the new one.
    ///
    /// # Errors
    /// [`UpdateError`] naming the first failed check.
    pub fn check_update<C: Verification>(
        &self,
        secp: &Secp256k1<C>,
        held: (u64, &PaymentState),
        update: (u64, &PaymentState, &ecdsa::Signature),
        rules: &UpdateRules<'_>,
    ) -> Result<Vec<PaymentHtlc>, UpdateError> {
        let (held_number, best) = held;
        let (number, state, signature) = update;
        if number <= held_number && held_number != 0 || number == 0 {
            return Err(UpdateError::Replay);
        }
        if number.checked_add(1).is_none() {
            return Err(UpdateError::Exhausted);
        }
        if state.to_payee < best.to_payee {
            return Err(UpdateError::AmountDecreased);
        }
        // HTLC ids strictly increasing in the new state.
        if state.htlcs.windows(2).any(|w| w.first().map(|a| a.id) >= w.get(1).map(|b| b.id)) {
            return Err(UpdateError::HtlcIdReused);
        }
        // Every held HTLC is kept unchanged or removed fairly.
        let mut folded = Amount::ZERO;
        for old in &best.htlcs {
            match state.htlcs.iter().find(|h| h.id == old.id) {
                Some(new) if new == old => {}
                Some(_) => return Err(UpdateError::HtlcRemovedUnfairly),
                None => {
                    if (rules.is_fulfilled)(old.id) {
                        folded = folded.checked_add(old.amount).ok_or(UpdateError::HtlcRemovedUnfairly)?;
                    } else if !((rules.is_failed)(old.id) || rules.tip >= old.expiry) {
                        return Err(UpdateError::HtlcRemovedUnfairly);
                    }
                }
            }
        }
        let required = best.to_payee.checked_add(folded).ok_or(UpdateError::HtlcRemovedUnfairly)?;
        if state.to_payee < required {
            return Err(UpdateError::HtlcRemovedUnfairly);
        }
        // New HTLCs: fresh ids, expiry inside the window.
        let mut new_htlcs = Vec::new();
        for h in &state.htlcs {
            if best.htlcs.iter().any(|o| o.id == h.id) {
                continue;
            }
            if h.id < rules.next_htlc_id {
                return Err(UpdateError::HtlcIdReused);
            }
            if h.id.checked_add(1).is_none() {
                return Err(UpdateError::Exhausted);
            }
            if rules.earliest_expiry.is_none_or(|e| h.expiry < e) || h.expiry > rules.latest_expiry {
                return Err(UpdateError::HtlcExpiry);
            }
            new_htlcs.push(*h);
        }
        if state.to_payee == best.to_payee && state.htlcs == best.htlcs && held_number != 0 {
            return Err(UpdateError::NoProgress);
        }
        let built = self.build(state).map_err(UpdateError::Payment)?;
        let _valid = self.verify(secp, &built, signature).map_err(UpdateError::Signature)?;
        Ok(new_htlcs)
    }

    /// Completes a payment with the payee's signature: the broadcastable transaction.
    ///
    /// # Errors
    /// [`SignerError`] from the signer.
    pub fn complete<S: Signer + ?Sized>(
        &self,
        payee: &S,
        built: &BuiltPayment,
        payer_sig: &ecdsa::Signature,
    ) -> Result<Transaction, SignerError> {
        let mut tx = built.tx.clone();
        let payee_sig = self.sign_channel_input(payee, &tx)?;
        let ws = self.channel_script();
        let witness = match self.lock {
            ChannelLock::Cltv(_) | ChannelLock::Csv(_) => script::spilman_payment_witness(&ws, payer_sig, &payee_sig),
            ChannelLock::Multisig => script::funding_witness(
                &ws,
                (&FundingPubkey::from_public_key(self.payer_key), payer_sig),
                (&FundingPubkey::from_public_key(self.payee_key), &payee_sig),
            ),
        };
        if let Some(input) = tx.input.first_mut() {
            input.witness = witness;
        }
        Ok(tx)
    }

    /// The unsigned refund transaction: the whole capacity minus `fee` back to the payer.
    /// With a CLTV lock its `nLockTime` is the expiry (`nSequence` `0xFFFFFFFE`); with a CSV lock
    /// its `nSequence` is the delay; with a 2-of-2 `nLockTime` is `expiry`.
    pub fn refund_tx(&self, fee: Amount, multisig_expiry: BlockHeight) -> Option<Transaction> {
        let (lock_time, sequence) = match self.lock {
            ChannelLock::Cltv(expiry) => (expiry.to_locktime()?, Sequence::ENABLE_LOCKTIME_NO_RBF),
            ChannelLock::Csv(delay) => (LockTime::ZERO, Sequence::from_height(delay)),
            ChannelLock::Multisig => (multisig_expiry.to_locktime()?, Sequence::ENABLE_LOCKTIME_NO_RBF),
        };
        Some(Transaction {
            version: Version::TWO,
            lock_time,
            input: alloc::vec![TxIn {
                previous_output: self.outpoint,
                script_sig: ScriptBuf::new(),
                sequence,
                witness: Witness::new(),
            }],
            output: alloc::vec![TxOut {
                value: self.capacity.checked_sub(fee)?,
                script_pubkey: self.payer_script.clone()
            }],
        })
    }

    /// Signs the refund for its payer (script locks) or as one of the 2-of-2 (multisig).
    ///
    /// # Errors
    /// [`SignerError`] from the signer.
    pub fn sign_refund<S: Signer + ?Sized>(
        &self,
        signer: &S,
        refund: &Transaction,
    ) -> Result<ecdsa::Signature, SignerError> {
        self.sign_channel_input(signer, refund)
    }

    /// Checks the payee's signature on a multisig refund.
    ///
    /// # Errors
    /// [`SignatureError`] naming the failed check.
    pub fn verify_refund_sig<C: Verification>(
        &self,
        secp: &Secp256k1<C>,
        refund: &Transaction,
        payee_sig: &ecdsa::Signature,
    ) -> Result<sign::SignatureValid, SignatureError> {
        let ws = self.channel_script();
        let msg = sign::p2wsh_sighash(refund, 0, ws.as_script(), self.capacity, EcdsaSighashType::All)?;
        sign::verify(secp, &msg, payee_sig, &self.payee_key, EcdsaSighashType::All)
    }

    /// Completes a refund: the payer's signature alone for script locks; both for a 2-of-2.
    pub fn complete_refund(
        &self,
        mut refund: Transaction,
        payer_sig: &ecdsa::Signature,
        payee_sig: Option<&ecdsa::Signature>,
    ) -> Option<Transaction> {
        let ws = self.channel_script();
        let witness = match (self.lock, payee_sig) {
            (ChannelLock::Multisig, Some(p)) => script::funding_witness(
                &ws,
                (&FundingPubkey::from_public_key(self.payer_key), payer_sig),
                (&FundingPubkey::from_public_key(self.payee_key), p),
            ),
            (ChannelLock::Multisig, None) => return None,
            _ => script::spilman_refund_witness(&ws, payer_sig),
        };
        refund.input.first_mut()?.witness = witness;
        Some(refund)
    }

    /// A transaction claiming HTLC output `vout` of a confirmed payment `payment_txid`: by the
    /// payee with the preimage (any time) or by the payer after the expiry (`nLockTime` = expiry).
    /// Pays `value - fee` to `destination`. Unsigned.
    pub fn htlc_claim_tx(
        &self,
        payment_txid: bitcoin::Txid,
        vout: u32,
        htlc: &PaymentHtlc,
        by_payee: bool,
        destination: ScriptBuf,
        fee: Amount,
    ) -> Option<Transaction> {
        let (lock_time, sequence) = if by_payee {
            (LockTime::ZERO, Sequence::ENABLE_RBF_NO_LOCKTIME)
        } else {
            (htlc.expiry.to_locktime()?, Sequence::ENABLE_LOCKTIME_NO_RBF)
        };
        Some(Transaction {
            version: Version::TWO,
            lock_time,
            input: alloc::vec![TxIn {
                previous_output: OutPoint { txid: payment_txid, vout },
                script_sig: ScriptBuf::new(),
                sequence,
                witness: Witness::new(),
            }],
            output: alloc::vec![TxOut { value: htlc.amount.checked_sub(fee)?, script_pubkey: destination }],
        })
    }

    /// Signs and completes an HTLC claim built by [`PaymentTemplate::htlc_claim_tx`]: the payee's
    /// success path needs `preimage`; without one the payer's timeout path is used.
    ///
    /// # Errors
    /// [`SignerError`] from the signer.
    pub fn complete_htlc_claim<S: Signer + ?Sized>(
        &self,
        signer: &S,
        mut claim: Transaction,
        htlc: &PaymentHtlc,
        preimage: Option<&PaymentPreimage>,
    ) -> Result<Transaction, SignerError> {
        let ws = self.htlc_script(htlc);
        let sig = signer.sign(&SignRequest {
            tx: &claim,
            input: 0,
            script_code: ws.as_script(),
            p2wpkh: false,
            value: htlc.amount,
            sighash_type: EcdsaSighashType::All,
            key: KeyId::Htlc,
            tweak: Tweak::None,
        })?;
        let witness = match preimage {
            Some(p) => script::hashlock_success_witness(&ws, &sig, p),
            None => script::hashlock_timeout_witness(&ws, &sig),
        };
        if let Some(input) = claim.input.first_mut() {
            input.witness = witness;
        }
        Ok(claim)
    }
}
