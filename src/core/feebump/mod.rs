//! Deadline-aware fee bumping, shared by the three channel layers (sans-I/O).
//!
//! A channel that must get a transaction confirmed by some height (a penalty before the peer's
//! `to_self_delay` runs out, an HTLC claim before its expiry, a Spilman close before the refund
//! becomes valid, a duplex branch before an older one's lock) does not know the fee market. It
//! describes the transaction as a [`BumpRequest`] — what must confirm, by when, what it protects,
//! and how it can be paid for — and the embedder hands the request to a [`Bumper`]. Each block,
//! the bumper is given the chain tip and the embedder's current [`FeeEstimates`] and returns the
//! transactions to (re-)broadcast, following a schedule that reaches the estimate for "confirm
//! within the blocks left" before the deadline.
//!
//! # The three ways to pay
//! [`BumpMethod`] says how a request is paid for, and every one is built from the same
//! [`InputTemplate`]s, so the bumper can rebuild and re-sign any of them at any feerate:
//!
//! | method | used for | how it is bumped |
//! |---|---|---|
//! | [`BumpMethod::Replace`] | sweeps, penalties, HTLC claims from the peer's commitment, a Spilman refund the payer signs alone | the transaction is rebuilt at a higher feerate, its fee taken from the value it claims (RBF) |
//! | [`BumpMethod::Child`] | Lightning anchor commitments, a co-signed Spilman close or refund (through the party's own output), duplex tree transactions (through their pay-to-anchor output) | a child spends the `anchor` output and wallet coins; the child is replaced at each bump (CPFP + RBF of the child) |
//! | [`BumpMethod::AddInputs`] | zero-fee HTLC-success/timeout transactions of anchors channels, whose peer signature is `SIGHASH_SINGLE\|ANYONECANPAY` | all ready ones are aggregated into one transaction with wallet coins and a change output; that transaction is replaced at each bump |
//!
//! # The rules every bump keeps
//! - **Bitcoin Core's replacement rules**: a replacement pays a higher absolute fee than the
//!   transaction it replaces plus the incremental relay fee (1 sat/vB) for its own size, and a
//!   higher feerate.
//! - **Inputs are conserved**: the wallet coins chosen the first time are spent again by every
//!   replacement (more are added only if they no longer cover the fee), so that each replacement
//!   conflicts with the one before and no coin is tied up twice.
//! - **Never more than what is at stake**: the fee of a bump never exceeds
//!   [`BumpRequest::at_stake`]; a request that would need more is paid up to it and reported
//!   ([`BumpEvent::Capped`]).
//! - **No key leaves the signer**: templates name keys by [`KeyId`] and
//!   [`Tweak`]; the channel's [`Signer`](crate::core::sign::Signer) signs. Wallet
//!   coins are signed by the embedder's [`FeeWallet`], and so is a template input spending an
//!   output that pays the wallet's own script ([`WitnessPart::Wallet`],
//!   [`InputTemplate::wallet_output`]: a Spilman close bumped through the payee's payout).
//!
//! The schedule itself is a pure function ([`schedule`]), so an embedder that bumps by other means
//! can reuse it.

mod build;
mod bumper;
mod encoding;
pub mod schedule;

use alloc::vec::Vec;
use core::fmt;

use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxOut, Txid};

use super::commitment::FeeratePerKw;
use super::sign::{KeyId, Tweak};
use super::units::BlockHeight;

pub use build::BuildError;
pub(crate) use build::{replace_tx, replace_weight};
pub use bumper::{BumpEvent, Bumper, FeeWallet, WalletCoin, WalletError};

/// The embedder's fee estimates: for a number of blocks, the feerate that confirms within that
/// many blocks (as Bitcoin Core's `estimatesmartfee` answers for each `conf_target`).
///
/// # Example
/// ```
/// use paychan::core::commitment::FeeratePerKw;
/// use paychan::core::feebump::FeeEstimates;
///
/// let est = FeeEstimates::new(&[(1, FeeratePerKw(5_000)), (6, FeeratePerKw(2_000)), (144, FeeratePerKw(300))]);
/// assert_eq!(est.within(1), FeeratePerKw(5_000));
/// assert_eq!(est.within(3), FeeratePerKw(5_000)); // no estimate for 3: the one for fewer blocks
/// assert_eq!(est.within(6), FeeratePerKw(2_000));
/// assert_eq!(est.within(1_000), FeeratePerKw(300));
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FeeEstimates {
    /// `(blocks, feerate)`, blocks strictly increasing, feerates non-increasing.
    points: Vec<(u32, FeeratePerKw)>,
}

impl FeeEstimates {
    /// Estimates from `(blocks, feerate)` pairs in any order. Feerates are made non-increasing in
    /// the number of blocks (a later target never needs more than an earlier one) and never
    /// below [`FeeratePerKw::MIN_RELAY`]; an empty list means the minimum relay feerate.
    pub fn new(points: &[(u32, FeeratePerKw)]) -> Self {
        let mut p: Vec<(u32, FeeratePerKw)> = points.iter().map(|&(b, f)| (b.max(1), f)).collect();
        p.sort_by_key(|&(b, _)| b);
        p.dedup_by_key(|&mut (b, _)| b);
        // Going from the longest target down, a shorter target needs at least as much.
        let mut floor = FeeratePerKw::MIN_RELAY;
        for point in p.iter_mut().rev() {
            floor = FeeratePerKw(floor.0.max(point.1 .0));
            point.1 = floor;
        }
        FeeEstimates { points: p }
    }

    /// One feerate for every target.
    pub fn flat(feerate: FeeratePerKw) -> Self {
        Self::new(&[(1, feerate)])
    }

    /// The feerate to confirm within `blocks`: the estimate for the largest target not above
    /// `blocks` (the conservative side), or the shortest target's if `blocks` is below all of
    /// them.
    pub fn within(&self, blocks: u32) -> FeeratePerKw {
        let blocks = blocks.max(1);
        let mut best = self.points.first().map_or(FeeratePerKw::MIN_RELAY, |p| p.1);
        for &(b, f) in &self.points {
            if b <= blocks {
                best = f;
            } else {
                break;
            }
        }
        FeeratePerKw(best.0.max(FeeratePerKw::MIN_RELAY.0))
    }

    /// The `(blocks, feerate)` points, sorted by blocks.
    pub fn points(&self) -> &[(u32, FeeratePerKw)] {
        &self.points
    }
}

/// What a time-critical transaction protects (for the embedder's logs and for reports; the
/// bumper treats them alike).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Protects {
    /// A Lightning commitment (ours, or getting the peer's confirmed) that must confirm for
    /// HTLCs to be claimed in time.
    Commitment,
    /// A penalty claiming a revoked commitment's outputs.
    Penalty,
    /// An HTLC claim (success with a preimage, or timeout).
    HtlcClaim,
    /// A sweep of our own delayed or remote output (no one else can take it; least urgent).
    Sweep,
    /// A Spilman payee's close (must confirm before the payer's refund is valid).
    SpilmanClose,
    /// A Spilman payer's refund (must confirm before an old payment could).
    SpilmanRefund,
    /// A duplex tree transaction (kickoff, node or leaf) of the newest branch.
    DuplexBranch,
    /// A duplex leaf payment or refund.
    DuplexLeaf,
    /// A cooperative close paying no fee of its own (a duplex close: version 3 with a
    /// pay-to-anchor output). Nothing can be stolen while it waits (a kickoff conflicting with
    /// it starts the unilateral close, which protects both balances); its deadline only bounds
    /// how long the funds stay locked.
    CooperativeClose,
}

/// One element of an input's witness.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum WitnessPart {
    /// The channel's signature for this input, made with the input's key and `SIGHASH_ALL`.
    Signature,
    /// Fixed bytes (a peer's signature, a preimage, an empty element, `OP_TRUE`).
    Bytes(Vec<u8>),
    /// The input's witness script ([`InputTemplate::script_code`]).
    WitnessScript,
    /// The whole witness, made by the embedder's wallet ([`FeeWallet::sign_coins`], as for one of
    /// its coins): the input spends an output paying the wallet's own script (a Spilman close's
    /// payout to the payee, which the channel's signer cannot sign). It is the template's only
    /// part, the template's `key` is `None` and its `script_code` is the spent output's
    /// scriptPubKey; the number is the witness's largest serialized size, as
    /// [`WalletCoin::witness_weight`]. See [`InputTemplate::wallet_output`].
    Wallet(u64),
}

/// An input the bumper can sign again over any transaction: what it spends and how its witness
/// is made.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct InputTemplate {
    /// The output spent.
    pub outpoint: OutPoint,
    /// Its value.
    pub value: Amount,
    /// The witness script of the spent P2WSH output, or the P2WPKH scriptPubKey (when
    /// `p2wpkh`), or empty for an output spent without a script (pay-to-anchor).
    pub script_code: ScriptBuf,
    /// Whether the spent output is P2WPKH.
    pub p2wpkh: bool,
    /// The input's `nSequence` (a relative lock, or RBF-enabled).
    pub sequence: Sequence,
    /// The key that signs ([`WitnessPart::Signature`]), if any.
    pub key: Option<(KeyId, Tweak)>,
    /// The witness, in order.
    pub witness: Vec<WitnessPart>,
    /// An output that must sit at the same index as this input (a peer's
    /// `SIGHASH_SINGLE|ANYONECANPAY` signature commits to it).
    pub paired_output: Option<TxOut>,
}

impl InputTemplate {
    /// A template for an output that pays the embedder's wallet, signed by the wallet
    /// ([`WitnessPart::Wallet`]), for the scripts whose witness size is known: P2WPKH (at most
    /// 109 bytes: item count, a 73-byte signature, a 33-byte key, with their lengths) and P2TR
    /// spent by its key path (at most 67 bytes: a 65-byte signature with a sighash byte).
    /// `None` for any other script (P2PKH and P2SH need a `scriptSig`, a P2WSH witness depends on
    /// a script the bumper does not know): such an output cannot pay for a bump.
    ///
    /// # Example
    /// ```
    /// use bitcoin::{Amount, OutPoint, ScriptBuf, TxOut, WPubkeyHash};
    /// use bitcoin::hashes::Hash;
    /// use paychan::core::feebump::{InputTemplate, WitnessPart};
    ///
    /// let p2wpkh = ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([1; 20]));
    /// let out = TxOut { value: Amount::from_sat(10_000), script_pubkey: p2wpkh };
    /// let t = InputTemplate::wallet_output(OutPoint::null(), &out).unwrap();
    /// assert_eq!(t.witness, vec![WitnessPart::Wallet(109)]);
    /// assert!(t.key.is_none());
    /// let p2sh = ScriptBuf::new_p2sh(&bitcoin::ScriptHash::from_byte_array([1; 20]));
    /// assert!(InputTemplate::wallet_output(OutPoint::null(), &TxOut { script_pubkey: p2sh, ..out }).is_none());
    /// ```
    pub fn wallet_output(outpoint: OutPoint, output: &TxOut) -> Option<InputTemplate> {
        use super::standard::{payout_kind, PayoutKind};
        let (p2wpkh, size) = match payout_kind(&output.script_pubkey)? {
            PayoutKind::P2wpkh => (true, 109),
            PayoutKind::P2tr => (false, 67),
            _ => return None,
        };
        Some(InputTemplate {
            outpoint,
            value: output.value,
            script_code: output.script_pubkey.clone(),
            p2wpkh,
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            key: None,
            witness: alloc::vec![WitnessPart::Wallet(size)],
            paired_output: None,
        })
    }

    /// A template for a pay-to-anchor output ([`p2a`](crate::core::script::p2a), `OP_1 <4e73>`)
    /// of `value` at `outpoint`: anyone spends it with an empty witness and no key, so the
    /// bumper's child needs no signature for it (the anchor of a zero-fee version-3 duplex tree
    /// transaction). `nSequence` `0xFFFFFFFD`, as
    /// [`p2a_input`](crate::core::script::p2a_input).
    ///
    /// # Example
    /// ```
    /// use bitcoin::{Amount, OutPoint};
    /// use paychan::core::feebump::InputTemplate;
    ///
    /// let t = InputTemplate::pay_to_anchor(OutPoint::null(), Amount::ZERO);
    /// assert!(t.key.is_none() && t.witness.is_empty() && t.script_code.is_empty());
    /// ```
    pub fn pay_to_anchor(outpoint: OutPoint, value: Amount) -> InputTemplate {
        InputTemplate {
            outpoint,
            value,
            script_code: ScriptBuf::new(),
            p2wpkh: false,
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            key: None,
            witness: Vec::new(),
            paired_output: None,
        }
    }

    /// The wallet coin this template stands for, if it is signed by the wallet.
    pub(crate) fn as_wallet_coin(&self) -> Option<WalletCoin> {
        match self.witness.as_slice() {
            [WitnessPart::Wallet(size)] => Some(WalletCoin {
                outpoint: self.outpoint,
                txout: TxOut { value: self.value, script_pubkey: self.script_code.clone() },
                witness_weight: *size,
            }),
            _ => None,
        }
    }
}

/// How a request is paid for (see the [module docs](self)).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum BumpMethod {
    /// Rebuild the transaction at a higher feerate: `inputs` are all ours, `destination`
    /// receives what the fee leaves.
    Replace {
        /// The inputs.
        inputs: Vec<InputTemplate>,
        /// Where the value goes.
        destination: ScriptBuf,
        /// The transaction's `nLockTime` (an HTLC timeout claim's expiry, or 0).
        lock_time: u32,
    },
    /// A child spending `anchor` (an output of [`BumpRequest::tx`]) and wallet coins pays for
    /// the parent.
    Child {
        /// The parent's output the child spends.
        anchor: InputTemplate,
        /// What the parent pays itself (inputs − outputs), counted towards the package.
        parent_fee: Amount,
    },
    /// The transaction is `inputs` (each with its paired output) plus wallet coins and change;
    /// ready ones are aggregated into one transaction.
    AddInputs {
        /// The pre-signed inputs.
        inputs: Vec<InputTemplate>,
        /// The transaction's `nLockTime` (an HTLC-timeout's expiry, or 0).
        lock_time: u32,
    },
}

/// A transaction that must confirm by a deadline, as a channel hands it to the [`Bumper`].
#[derive(Clone, PartialEq, Eq)]
pub struct BumpRequest {
    /// The transaction as the channel broadcast it (for [`BumpMethod::Child`], the parent; for the
    /// others, the first version, which the bumper replaces).
    pub tx: Transaction,
    /// The height by which it must confirm for nobody to lose money.
    pub deadline: BlockHeight,
    /// The value it protects: no bump ever pays more than this in fees.
    pub at_stake: Amount,
    /// What it protects.
    pub protects: Protects,
    /// How it is paid for.
    pub method: BumpMethod,
}

impl BumpRequest {
    /// The request's identity: the txid of [`BumpRequest::tx`] as first broadcast.
    pub fn id(&self) -> Txid {
        self.tx.compute_txid()
    }

    /// The outpoints whose spend resolves the request: the parent's inputs for a child (the
    /// parent or a conflicting transaction confirmed), the template inputs otherwise.
    pub(crate) fn resolving_outpoints(&self) -> Vec<OutPoint> {
        match &self.method {
            BumpMethod::Child { .. } => self.tx.input.iter().map(|i| i.previous_output).collect(),
            BumpMethod::Replace { inputs, .. } | BumpMethod::AddInputs { inputs, .. } => {
                inputs.iter().map(|i| i.outpoint).collect()
            }
        }
    }
}

impl fmt::Debug for BumpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Templates may carry a revocation tweak (a per-commitment secret): keep it out.
        f.debug_struct("BumpRequest")
            .field("id", &self.id())
            .field("deadline", &self.deadline)
            .field("at_stake", &self.at_stake)
            .field("protects", &self.protects)
            .finish_non_exhaustive()
    }
}
