//! The one funding flow every channel layer follows (docs/persistence.md, *Funding*).
//!
//! 1. **Ask.** When the funder's channel knows its funding output (the Spilman payer at
//!    [`Payer::open`](crate::spilman::Payer::open), the duplex initiator and the Lightning opener
//!    once the peer's keys arrive), the [`Effects`](crate::driving::Effects) of that call carry a
//!    [`FundingRequest`] in [`Effects::funding`](crate::driving::Effects::funding).
//! 2. **Build and sign.** The wallet builds a transaction with **exactly one** output equal to
//!    [`FundingRequest::output`] (script and value; any other outputs are the wallet's: change),
//!    spending **native segwit inputs only** (P2WPKH, P2WSH, P2TR: a `scriptSig` would let a
//!    relaying node change the txid the channel's first signatures commit to), and **signs it**.
//! 3. **Hand over.** The wallet gives the signed transaction to the layer's `fund` (same name and
//!    meaning in every layer: [`Payer::fund`](crate::spilman::Payer::fund),
//!    [`duplex::Channel::fund`](crate::duplex::Channel::fund),
//!    [`lightning::Channel::fund`](crate::lightning::Channel::fund)). A transaction that does not
//!    pay the requested output exactly once, or has an input with a `scriptSig`, is refused with a
//!    typed error ([`FundingError`], surfaced as the layer's `CommandError`) and the channel is
//!    unchanged.
//! 4. **Do not broadcast it yourself.** The channel puts the funding transaction in
//!    [`Effects::broadcast`](crate::driving::Effects::broadcast) exactly when the funder holds
//!    what gives its money back without the peer: at once for a Spilman CLTV channel (the refund
//!    needs no signature of the payee); after the payee's refund signature for a Spilman
//!    pre-signed refund; after `funding_signed` in Lightning; after `FundingSigned` (the whole
//!    signed tree) in duplex. Until then the peer sees only the funding outpoint. Broadcasting it
//!    again later (after a restart, from the wallet) is harmless. If the channel is abandoned
//!    before that point, nothing was published: the wallet may spend the coins elsewhere.
//!
//! Every layer checks the transaction with the same function, [`FundingRequest::check`].

use core::fmt;

use bitcoin::{OutPoint, Transaction, TxOut};

use crate::driving::ChannelId;

/// What a channel asks the funder's wallet to create (see the [module docs](self)).
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct FundingRequest {
    /// The output the funding transaction must contain exactly once: the channel's script and
    /// its capacity.
    pub output: TxOut,
    /// The id the channel goes by until it is funded (route the wallet's answer with it when
    /// several channels are being opened).
    pub temporary_channel_id: ChannelId,
}

/// Why a funding transaction was refused. The channel is unchanged.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum FundingError {
    /// No output pays exactly [`FundingRequest::output`] (script and value).
    NoOutput,
    /// More than one output pays it: the channel would track one, the others would be locked
    /// in the channel's script with no transaction spending them.
    SeveralOutputs,
    /// Input `input` has a `scriptSig` (a legacy or wrapped input): its txid is malleable.
    NonSegwitInput {
        /// The input's index.
        input: usize,
    },
}

impl fmt::Display for FundingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FundingError::NoOutput => f.write_str("no output pays the requested funding output"),
            FundingError::SeveralOutputs => f.write_str("several outputs pay the requested funding output"),
            FundingError::NonSegwitInput { input } => write!(f, "input {input} has a scriptSig (malleable txid)"),
        }
    }
}

impl core::error::Error for FundingError {}

impl FundingRequest {
    /// A request for `output` from the channel known as `temporary_channel_id`.
    pub fn new(output: TxOut, temporary_channel_id: ChannelId) -> Self {
        FundingRequest { output, temporary_channel_id }
    }

    /// Checks a funding transaction against the request: exactly one output pays
    /// [`FundingRequest::output`], and no input has a `scriptSig`. Returns the funding
    /// outpoint.
    ///
    /// # Errors
    /// [`FundingError`] naming the first failed check.
    pub fn check(&self, tx: &Transaction) -> Result<OutPoint, FundingError> {
        let mut paying = tx.output.iter().enumerate().filter(|(_, o)| **o == self.output).map(|(i, _)| i);
        let vout = paying.next().ok_or(FundingError::NoOutput)?;
        if paying.next().is_some() {
            return Err(FundingError::SeveralOutputs);
        }
        if let Some(input) = tx.input.iter().position(|i| !i.script_sig.is_empty()) {
            return Err(FundingError::NonSegwitInput { input });
        }
        let vout = u32::try_from(vout).map_err(|_| FundingError::NoOutput)?;
        Ok(OutPoint { txid: tx.compute_txid(), vout })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use bitcoin::{absolute, transaction, Amount, ScriptBuf, TxIn};

    fn request() -> FundingRequest {
        let output = TxOut { value: Amount::from_sat(100_000), script_pubkey: ScriptBuf::from_bytes(vec![0x51]) };
        FundingRequest::new(output, ChannelId([1; 32]))
    }

    fn tx(outputs: Vec<TxOut>) -> Transaction {
        Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn::default()],
            output: outputs,
        }
    }

    #[test]
    fn the_exact_output_once_and_segwit_inputs_only() {
        let r = request();
        let change = TxOut { value: Amount::from_sat(5), script_pubkey: ScriptBuf::new() };
        let good = tx(vec![change.clone(), r.output.clone()]);
        assert_eq!(r.check(&good), Ok(OutPoint { txid: good.compute_txid(), vout: 1 }));
        let mut short = r.output.clone();
        short.value = Amount::from_sat(99_999);
        assert_eq!(r.check(&tx(vec![short, change.clone()])), Err(FundingError::NoOutput));
        let mut other_script = r.output.clone();
        other_script.script_pubkey = ScriptBuf::from_bytes(vec![0x52]);
        assert_eq!(r.check(&tx(vec![other_script])), Err(FundingError::NoOutput));
        assert_eq!(r.check(&tx(vec![r.output.clone(), r.output.clone()])), Err(FundingError::SeveralOutputs));
        let mut legacy = good.clone();
        legacy.input.push(TxIn { script_sig: ScriptBuf::from_bytes(vec![0x00]), ..TxIn::default() });
        assert_eq!(r.check(&legacy), Err(FundingError::NonSegwitInput { input: 1 }));
    }
}
