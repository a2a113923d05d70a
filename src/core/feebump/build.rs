//! Building and signing a transaction from [`InputTemplate`]s and wallet coins.

use alloc::vec::Vec;
use core::fmt;

use bitcoin::absolute::LockTime;
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::transaction::Version;
use bitcoin::{Amount, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};

use super::bumper::{FeeWallet, WalletCoin, WalletError};
use super::{InputTemplate, WitnessPart};
use crate::core::sign::{SignRequest, SignRequests, Signer, SignerError};

/// Why a bump could not be built.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// The channel's signer refused a template input.
    Signer(SignerError),
    /// The wallet could not provide or sign coins.
    Wallet(WalletError),
    /// What is left for the destination or change would be dust or negative.
    Amount,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Signer(e) => write!(f, "signer: {e}"),
            BuildError::Wallet(e) => write!(f, "wallet: {e}"),
            BuildError::Amount => f.write_str("the fee leaves the output below dust"),
        }
    }
}

impl core::error::Error for BuildError {}

impl From<SignerError> for BuildError {
    fn from(e: SignerError) -> Self {
        BuildError::Signer(e)
    }
}

impl From<WalletError> for BuildError {
    fn from(e: WalletError) -> Self {
        BuildError::Wallet(e)
    }
}

/// The longest ECDSA signature with its sighash byte.
const MAX_SIG: u64 = 73;

const fn varint_len(n: u64) -> u64 {
    if n < 0xfd {
        1
    } else if n <= 0xffff {
        3
    } else if n <= 0xffff_ffff {
        5
    } else {
        9
    }
}

/// The largest serialized witness of `t` (item count, items, signatures at their longest).
pub(crate) fn witness_weight(t: &InputTemplate) -> u64 {
    if let Some(coin) = t.as_wallet_coin() {
        return coin.witness_weight;
    }
    let mut w = varint_len(t.witness.len() as u64);
    for part in &t.witness {
        let len = match part {
            WitnessPart::Signature => MAX_SIG,
            WitnessPart::Bytes(b) => b.len() as u64,
            WitnessPart::WitnessScript => t.script_code.len() as u64,
            // Only ever alone (handled above); counted as its size otherwise.
            WitnessPart::Wallet(size) => {
                w += size;
                continue;
            }
        };
        w += varint_len(len) + len;
    }
    w
}

/// Weight of `tx` once its inputs carry witnesses of the given sizes (segwit marker included).
pub(crate) fn weight_with(tx: &Transaction, witness_weights: impl Iterator<Item = u64>) -> u64 {
    4 * tx.base_size() as u64 + 2 + witness_weights.sum::<u64>()
}

/// A transaction spending `templates` (index-aligned with their paired outputs) then `coins`,
/// paying `outputs` after the paired ones; unsigned.
pub(crate) fn assemble(
    templates: &[&InputTemplate],
    coins: &[WalletCoin],
    outputs: Vec<TxOut>,
    lock_time: u32,
    version: Version,
) -> Transaction {
    let mut input: Vec<TxIn> = templates
        .iter()
        .map(|t| TxIn {
            previous_output: t.outpoint,
            script_sig: ScriptBuf::new(),
            sequence: t.sequence,
            witness: Witness::new(),
        })
        .collect();
    input.extend(coins.iter().map(|c| TxIn {
        previous_output: c.outpoint,
        script_sig: ScriptBuf::new(),
        sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
        witness: Witness::new(),
    }));
    let mut output: Vec<TxOut> = templates.iter().filter_map(|t| t.paired_output.clone()).collect();
    output.extend(outputs);
    Transaction { version, lock_time: LockTime::from_consensus(lock_time), input, output }
}

/// The weight `tx` (from [`assemble`]) will have once signed.
pub(crate) fn signed_weight(tx: &Transaction, templates: &[&InputTemplate], coins: &[WalletCoin]) -> u64 {
    weight_with(tx, templates.iter().map(|t| witness_weight(t)).chain(coins.iter().map(|c| c.witness_weight)))
}

/// Signs the template inputs (indices `0..templates.len()`) with `signer`, except those the
/// wallet signs ([`WitnessPart::Wallet`]), and the coins after them with `wallet`.
pub(crate) fn sign<S: Signer + ?Sized, W: FeeWallet + ?Sized>(
    tx: &mut Transaction,
    templates: &[&InputTemplate],
    coins: &[WalletCoin],
    signer: &S,
    wallet: &W,
) -> Result<(), BuildError> {
    // One batch for every keyed input: the signer may reuse the transaction's digests.
    let mut signatures =
        signer.sign_batch(&mut TemplateRequests { tx, templates, next: 0, started: false })?.into_iter();
    let mut witnesses = Vec::with_capacity(templates.len());
    for t in templates {
        let sig = match t.key {
            Some(_) => Some(signatures.next().ok_or(BuildError::Signer(SignerError::UnsupportedKey))?),
            None => None,
        };
        let mut w = Witness::new();
        for part in &t.witness {
            match part {
                WitnessPart::Signature => w.push(sig.ok_or(BuildError::Signer(SignerError::UnsupportedKey))?.to_vec()),
                WitnessPart::Bytes(b) => w.push(b),
                WitnessPart::WitnessScript => w.push(t.script_code.as_bytes()),
                // Made by the wallet below (a template of its own output).
                WitnessPart::Wallet(_) => {}
            }
        }
        witnesses.push(w);
    }
    for (input, w) in tx.input.iter_mut().zip(witnesses) {
        input.witness = w;
    }
    for (i, t) in templates.iter().enumerate() {
        if let Some(coin) = t.as_wallet_coin() {
            wallet.sign_coins(tx, i, core::slice::from_ref(&coin))?;
        }
    }
    if !coins.is_empty() {
        let start = templates.len();
        wallet.sign_coins(tx, start, coins)?;
    }
    Ok(())
}

/// The keyed template inputs of one unchanged transaction, as one signing batch.
struct TemplateRequests<'a> {
    tx: &'a Transaction,
    templates: &'a [&'a InputTemplate],
    next: usize,
    started: bool,
}

impl SignRequests for TemplateRequests<'_> {
    fn next_request(&mut self) -> Option<SignRequest<'_>> {
        self.next_request_same_tx().map(|(r, _)| r)
    }

    fn remaining_hint(&self) -> usize {
        self.templates.len().saturating_sub(self.next)
    }

    fn next_request_same_tx(&mut self) -> Option<(SignRequest<'_>, bool)> {
        while let Some(t) = self.templates.get(self.next) {
            let input = self.next;
            self.next += 1;
            if let Some((key, tweak)) = t.key {
                let same_tx = self.started;
                self.started = true;
                let request = SignRequest {
                    tx: self.tx,
                    input,
                    script_code: t.script_code.as_script(),
                    p2wpkh: t.p2wpkh,
                    value: t.value,
                    sighash_type: EcdsaSighashType::All,
                    key,
                    tweak,
                };
                return Some((request, same_tx));
            }
        }
        None
    }
}

/// Sum of the template values and coin values.
pub(crate) fn input_value(templates: &[&InputTemplate], coins: &[WalletCoin]) -> Option<Amount> {
    let mut total = Amount::ZERO;
    for v in templates.iter().map(|t| t.value).chain(coins.iter().map(|c| c.txout.value)) {
        total = total.checked_add(v)?;
    }
    Some(total)
}

/// A wallet with no coins, for transactions that spend templates only.
struct NoCoins;

impl FeeWallet for NoCoins {
    fn select_coins(&mut self, _: Amount, _: &[bitcoin::OutPoint]) -> Result<Vec<WalletCoin>, WalletError> {
        Err(WalletError::InsufficientFunds)
    }
    fn change_script(&mut self) -> ScriptBuf {
        ScriptBuf::new()
    }
    fn sign_coins(&self, _: &mut Transaction, _: usize, _: &[WalletCoin]) -> Result<(), WalletError> {
        Err(WalletError::Signing)
    }
    fn release_coins(&mut self, _: &[bitcoin::OutPoint]) {}
}

/// The signed weight of a [`BumpMethod::Replace`](super::BumpMethod::Replace) transaction
/// spending `templates` to `destination` (signatures at their longest).
pub(crate) fn replace_weight(templates: &[&InputTemplate], destination: &ScriptBuf, lock_time: u32) -> u64 {
    let out = TxOut { value: Amount::ZERO, script_pubkey: destination.clone() };
    let tx = assemble(templates, &[], alloc::vec![out], lock_time, Version::TWO);
    signed_weight(&tx, templates, &[])
}

/// The signed [`BumpMethod::Replace`](super::BumpMethod::Replace) transaction spending
/// `templates` to `destination` and paying `fee`: how a channel builds the first version of a
/// request, exactly as the [`Bumper`](super::Bumper) builds every replacement.
///
/// # Errors
/// [`BuildError::Amount`] if what the fee leaves is below the destination's dust limit;
/// [`BuildError::Signer`] if the signer refuses.
pub(crate) fn replace_tx<S: Signer + ?Sized>(
    templates: &[&InputTemplate],
    destination: &ScriptBuf,
    lock_time: u32,
    fee: Amount,
    signer: &S,
) -> Result<Transaction, BuildError> {
    let total = input_value(templates, &[]).ok_or(BuildError::Amount)?;
    let value = total.checked_sub(fee).filter(|v| *v >= destination.minimal_non_dust()).ok_or(BuildError::Amount)?;
    let out = TxOut { value, script_pubkey: destination.clone() };
    let mut tx = assemble(templates, &[], alloc::vec![out], lock_time, Version::TWO);
    sign(&mut tx, templates, &[], signer, &NoCoins)?;
    Ok(tx)
}
