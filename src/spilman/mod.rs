//! Spilman unidirectional payment channels (docs/spilman.md): a payer streams payments to a payee,
//! each one a payer-signed transaction the payee keeps; the payee closes with the best one before
//! the channel expires, or the payer takes everything back after expiry.
//!
//! Two refund constructions ([`Variant`]):
//! * **CLTV** (BIP-0065): the channel output is `IF <payee> CHECKSIGVERIFY ELSE <expiry> CLTV DROP
//!   ENDIF <payer> CHECKSIG`; the payer refunds alone from `expiry` on, no counterparty signature
//!   needed, so setup takes no round trip.
//! * **Pre-signed refund** (Spilman 2013, Hearn): the channel output is a plain 2-of-2 and the payee
//!   signs an `nLockTime = expiry` refund *before* the payer broadcasts the funding transaction.
//!   The refund commits to the funding txid; before segwit, anyone relaying the funding
//!   transaction could re-encode its signatures and change that txid, leaving the payer's coins
//!   stuck in a 2-of-2 the payee could ransom. A segwit txid excludes witnesses, so this is safe
//!   **as long as every input of the funding transaction is segwit** (native P2WPKH/P2WSH/P2TR):
//!   the payer's wallet must fund it that way. [`Payer::fund`] refuses funding transactions with a
//!   non-empty `scriptSig`, which catches legacy and wrapped inputs once signed.
//!
//! # Funding
//! The crate's one funding flow ([`crate::core::funding`]): [`Payer::open`]'s effects ask the
//! wallet for the funding output ([`Effects::funding`](crate::driving::Effects::funding)); the
//! wallet hands the **signed** transaction (segwit inputs only) to [`Payer::fund`] and does not
//! broadcast it: the payer does, at once with the CLTV refund (the payee may broadcast it too:
//! `Open` carries it), only after the payee's refund signature with the pre-signed one. A payer
//! that stopped before the payee got `Open` (or `RefundRequest`) sends it again on reconnection,
//! when the payee's `reestablish()` shows it holds no payment.
//!
//! # Driving
//! [`Payer`] and [`Payee`] are plain values driven as described in [`crate::driving`]: commands
//! (`pay`, `add_htlc`, `fulfill_htlc`, `close`), `handle_message` for peer messages,
//! `handle_chain` for chain events. Each returns [`Effects`](crate::driving::Effects): persist the
//! update, then send, then broadcast. A refused input returns a typed error and changes nothing.
//!
//! # Routing by channel id
//! A node with many channels to the same peer sends every message addressed
//! ([`Payer::address`], [`Payee::address`]: a [`crate::core::wire::Addressed`] message, encoded
//! with its channel id) and routes what it receives by [`Addressed::channel_id`] alone, to
//! [`Payer::handle_addressed`] or [`Payee::handle_addressed`]. The setup messages ([`Offer`],
//! [`RefundRequest`], [`RefundSigned`], [`Open`]) go to the temporary id
//! ([`Payee::temporary_channel_id`], from the payee's keys in the offer), the others to the id of
//! the funding outpoint ([`Payer::channel_id`]); a message addressed to another channel is refused
//! ([`Misbehaviour::WrongChannel`]) with the channel unchanged.
//!
//! [`Addressed::channel_id`]: crate::core::wire::Addressed::channel_id
//!
//! # Example: open, pay, persist, restart, close
//! Everything an embedder does, with the peer, the wallet and the disk played by local
//! variables. Each side keeps the newest [`StateUpdate`](crate::driving::StateUpdate) it was
//! given, written before its messages leave; the payee restarts from those stored bytes alone.
//!
//! ```
//! use paychan::bitcoin::hashes::Hash;
//! use paychan::bitcoin::{absolute, transaction, Amount, OutPoint, ScriptBuf, Sequence};
//! use paychan::bitcoin::{Transaction, TxIn, Txid, WPubkeyHash, Witness};
//! use paychan::core::keys::Seed;
//! use paychan::core::sign::InMemorySigner;
//! use paychan::core::BlockHeight;
//! use paychan::driving::{ChainTip, RestoreCheck, StateUpdate};
//! use paychan::spilman::{Effects, Msg, Payee, PayeeConfig, Payer, PayerConfig, Variant};
//!
//! type Error = Box<dyn std::error::Error>;
//!
//! /// The embedder's storage for one side: the newest snapshot and its update id.
//! #[derive(Default)]
//! struct Disk {
//!     update_id: u64,
//!     snapshot: Vec<u8>,
//! }
//!
//! impl Disk {
//!     /// Step 1 of every `Effects`: persist before sending anything.
//!     fn persist(&mut self, update: Option<StateUpdate>) {
//!         if let Some(u) = update {
//!             self.update_id = u.update_id;
//!             // Spilman writes a full snapshot every time.
//!             if let Some(snapshot) = u.snapshot {
//!                 self.snapshot = snapshot;
//!             }
//!         }
//!     }
//! }
//!
//! /// Step 2: the payer's messages go over the wire (encoded), the payee persists, then answers.
//! fn deliver(
//!     fx: Effects,
//!     payer: &mut Payer,
//!     payee: &mut Payee,
//!     disks: &mut [Disk; 2],
//!     signers: &[InMemorySigner; 2],
//!     tip: ChainTip,
//! ) -> Result<(), Error> {
//!     disks[0].persist(fx.update);
//!     for msg in fx.send {
//!         let bytes = msg.encode();
//!         let answer = payee.handle_message(Msg::decode(&bytes)?, &signers[1], tip)?;
//!         disks[1].persist(answer.update);
//!         for msg in answer.send {
//!             let back = payer.handle_message(Msg::decode(&msg.encode())?, &signers[0], tip)?;
//!             disks[0].persist(back.update);
//!         }
//!     }
//!     Ok(())
//! }
//!
//! # fn main() -> Result<(), Error> {
//! // Each side's signer for its channel number 0 (the key index its snapshots record).
//! let signers = [
//!     InMemorySigner::from_seed(&Seed::from_bytes([1; 32]), 0), // payer
//!     InMemorySigner::from_seed(&Seed::from_bytes([2; 32]), 0), // payee
//! ];
//! let mut disks = [Disk::default(), Disk::default()];
//! let tip = ChainTip::at(800_000);
//! let payee_script = ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([2; 20]));
//! let payer_script = ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([1; 20]));
//!
//! // Open: the payee states its terms, the payer accepts them...
//! let terms = PayeeConfig {
//!     variant: Variant::Cltv,
//!     payee_script: payee_script.clone(),
//!     expiry: BlockHeight(800_000 + 1_008),
//!     min_first_payment: Amount::from_sat(1_000),
//!     dust_limit: Amount::from_sat(546),
//!     payment_fee: Amount::from_sat(300),
//!     close_margin: 36,
//!     htlc_min_blocks: 24,
//!     min_depth: 0,
//!     claim_fee: Amount::from_sat(300),
//! };
//! let (mut payee, fx) = Payee::new(terms, &signers[1]);
//! disks[1].persist(fx.update);
//! let Msg::Offer(offer) = Msg::decode(&fx.send[0].encode())? else { return Err("no offer".into()) };
//! let config = PayerConfig {
//!     capacity: Amount::from_sat(100_000),
//!     payer_script,
//!     refund_fee: Amount::from_sat(300),
//!     claim_fee: Amount::from_sat(300),
//!     first_payment: Amount::from_sat(1_000),
//!     max_lifetime: 4_320,
//! };
//! let (mut payer, fx) = Payer::open(offer, config, &signers[0], tip)?;
//! disks[0].persist(fx.update);
//!
//! // ...and asks its wallet for the funding (the crate's one funding flow, `core::funding`):
//! // a transaction paying the requested output from segwit inputs, signed (the coin spent here
//! // is made up). The payer broadcasts it itself (with the CLTV refund, at once).
//! let request = fx.funding.ok_or("no funding request")?;
//! let funding_tx = Transaction {
//!     version: transaction::Version::TWO,
//!     lock_time: absolute::LockTime::ZERO,
//!     input: vec![TxIn {
//!         previous_output: OutPoint { txid: Txid::from_byte_array([7; 32]), vout: 0 },
//!         script_sig: ScriptBuf::new(),
//!         sequence: Sequence::MAX,
//!         witness: Witness::new(), // the wallet's signature goes here
//!     }],
//!     output: vec![request.output],
//! };
//! let fx = payer.fund(funding_tx.clone(), &signers[0])?; // carries the first payment (1,000 sat)
//! assert_eq!(fx.broadcast, [funding_tx]);
//! deliver(fx, &mut payer, &mut payee, &mut disks, &signers, tip)?;
//!
//! // Pay.
//! for _ in 0..5 {
//!     let fx = payer.pay(Amount::from_sat(2_000), &signers[0])?;
//!     deliver(fx, &mut payer, &mut payee, &mut disks, &signers, tip)?;
//! }
//! assert_eq!(payee.received(), Amount::from_sat(11_000));
//!
//! // The payee's process stops; all that is left of it is its disk.
//! let channel_id = payee.channel_id();
//! drop(payee);
//! let check = RestoreCheck { channel_id, min_update_id: disks[1].update_id };
//! let mut payee = Payee::restore_with_signer(&disks[1].snapshot, check, &signers[1])?;
//! assert_eq!(payee.received(), Amount::from_sat(11_000));
//!
//! // On the new connection both sides send their `reestablish()` first.
//! let from_payee = payee.reestablish();
//! let fx = payer.handle_message(from_payee, &signers[0], tip)?;
//! deliver(fx, &mut payer, &mut payee, &mut disks, &signers, tip)?;
//! let fx = payee.handle_message(payer.reestablish(), &signers[1], tip)?;
//! disks[1].persist(fx.update);
//! let fx = payer.pay(Amount::from_sat(500), &signers[0])?;
//! deliver(fx, &mut payer, &mut payee, &mut disks, &signers, tip)?;
//!
//! // Close: the payee broadcasts the best payment, minus its fee, before the expiry.
//! let fx = payee.close(&signers[1])?;
//! disks[1].persist(fx.update);
//! let close = &fx.broadcast[0];
//! let to_payee: Amount = close.output.iter().filter(|o| o.script_pubkey == payee_script).map(|o| o.value).sum();
//! assert_eq!(to_payee, Amount::from_sat(11_500 - 300));
//! # Ok(())
//! # }
//! ```
//!
//! # Conditional payments
//! A payment may carry HTLC outputs ([`crate::core::script::hashlock_htlc`]). The payee reveals
//! the preimage with [`Payee::fulfill_htlc`]; the payer then folds the HTLC into the payee's
//! output. **A failed HTLC is never irrevocably failed off-chain**: the payee keeps every payment
//! transaction it was given and may still publish one carrying the HTLC and claim it with the
//! preimage. The payer is safe only once the failure is *dominated* (the payee's newest payment
//! pays it at least the HTLC amount more than any transaction that carried the HTLC) or the channel
//! has ended; [`Payer::is_fail_irrevocable`] says which, and [`Event::HtlcFailIrrevocable`] reports
//! it.
//!
//! # Reconnection
//! Both sides send their `reestablish()` ([`Payer::reestablish`], [`Payee::reestablish`]) first
//! on every new connection and feed the other's to `handle_message`. The payer sends its newest
//! payment again if the payee holds an older one (a payee restored from an older snapshot gets
//! its payments back), and counts a payee holding its newest as the acknowledgement; the payee
//! sends again the fulfilments and failures the payer does not list as received. A payer shown a
//! newer payment of its own, with its own valid signature, lost state: [`Event::LostState`], and
//! it signs nothing new ([`CommandError::LostState`]); the payee gets
//! [`Event::CounterpartyLostState`] and closes with its best payment. A claim without a valid
//! signature is refused ([`Misbehaviour::UnprovenReestablish`]) and changes nothing.
//!
//! # Deadlines
//! The payee must get its payment confirmed before `expiry`: it stops accepting payments and
//! closes automatically at [`Payee::close_by`] = `expiry - close_margin`. The refund is valid from
//! `expiry` on (its `nLockTime`; it can be mined in block `expiry + 1`).
//!
//! # Fee bumping
//! Every time-critical transaction comes with a
//! [`BumpRequest`](crate::core::feebump::BumpRequest) in
//! [`Effects::bumps`](crate::driving::Effects::bumps): hand it to the party's
//! [`Bumper`](crate::core::feebump::Bumper), which re-bumps it each block until it confirms.
//!
//! | transaction | who | how it is bumped | deadline (must confirm by) | at stake |
//! |---|---|---|---|---|
//! | the payee's close (a payment, co-signed `SIGHASH_ALL`) | payee | CPFP: a child spends the payee's output, signed by the payee's wallet | the refund's `nLockTime` (`expiry`: the refund can be mined from `expiry + 1`); with a revealed HTLC, `htlc.expiry − ⌈close_margin / 2⌉` if sooner (the other half is the claim's) | the payee's output and the HTLCs it revealed |
//! | the CLTV refund (the payer signs alone) | payer | RBF: re-signed at any feerate, fee taken from the refund | `expiry + 1`, the first block it can be in | the most the payee could take with a payment it holds |
//! | the pre-signed refund (co-signed `SIGHASH_ALL`) | payer | CPFP through the payer's output, signed by the payer's wallet | `expiry + 1` | as above |
//! | an HTLC claim with the preimage | payee | RBF | `htlc.expiry` (the payer's timeout claim can be mined from `expiry + 1`) | the HTLC |
//! | an HTLC timeout claim | payer | RBF | `htlc.expiry + 1` (the payee may claim with the preimage at any time) | the HTLC |
//!
//! A payment and a pre-signed refund carry both parties' signatures, each `SIGHASH_ALL` (over
//! every output): neither party can re-sign them at another feerate alone, so the only way to pay
//! more is a child. A payment has no anchor; its child spends the payee's own output, and a pre-signed
//! refund's child the payer's. That output pays a script of the party's wallet (the payee's
//! `payee_script`, the payer's `payer_script`) which the channel's signer cannot sign: the child's
//! template is signed by the embedder's [`FeeWallet`](crate::core::feebump::FeeWallet)
//! ([`WitnessPart::Wallet`](crate::core::feebump::WitnessPart::Wallet)), which must therefore be
//! the wallet that owns that script.
//!
//! **What cannot be bumped**: a close or pre-signed refund whose party's script is not P2WPKH or
//! P2TR (P2PKH and P2SH need a `scriptSig`, a P2WSH witness is unknown to the bumper,
//! [`InputTemplate::wallet_output`](crate::core::feebump::InputTemplate::wallet_output)): it
//! carries no bump request and confirms only at the fee
//! it was signed with (`payment_fee`, `refund_fee`). The payer's own payouts in a close (its
//! change, the HTLC outputs) cannot pay for the payee's close either: only the payee's output is
//! the payee's. A close whose payee output is too small to cover a child's fee is bumped with
//! wallet coins, its fee never above its
//! [`at_stake`](crate::core::feebump::BumpRequest::at_stake).
//!
//! **What could not relay at all**: a payment is version 2, and Bitcoin Core relays a
//! non-TRUC parent only if it pays the minimum relay feerate (1 sat/vB) alone, child or not. So
//! the template refuses a payment whose fixed `payment_fee` is below 1 sat/vB for its
//! worst-case signed size (each HTLC output adds 43 vB):
//! [`PaymentError::BelowMinRelay`](payment::PaymentError::BelowMinRelay). The payer cannot sign
//! it and the payee refuses it; with `payment_fee` 300 sat a payment carries about three HTLCs.
//!
//! Deadlines carry no extra margin: the bumper's schedule aims to confirm within half the blocks
//! left and pays the next-block estimate in the last one. A deadline of `expiry + 1` means the
//! payer pays the next-block rate from the first block its refund or timeout claim is valid: any
//! block it misses is one in which the payee's payment (or preimage claim) could confirm
//! instead.

pub(crate) mod dot;
pub(crate) mod fees;
pub(crate) mod msgs;
mod payee;
mod payer;
pub mod payment;
mod reestablish;
mod snapshot;

pub use msgs::{Msg, Offer, Open, Payment, Reestablish, RefundRequest, RefundSigned, Variant};
pub use payee::{Payee, PayeeConfig};
pub use payer::{Payer, PayerConfig};
pub use payment::{PaymentHtlc, PaymentState};

use core::fmt;

use bitcoin::Txid;

use crate::core::hashlock::{PaymentHash, PaymentPreimage};
use crate::core::units::BlockHeight;
use crate::driving;

/// Effects of a Spilman call.
pub type Effects = driving::Effects<Msg, Event>;

/// A refused peer input.
pub type PeerError = driving::PeerError<Misbehaviour>;

/// How a channel ended.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum CloseKind {
    /// A payment transaction confirmed.
    Payment,
    /// The payer's refund confirmed.
    Refund,
}

/// Something the embedder may want to know.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Event {
    /// The funding transaction confirmed.
    FundingConfirmed {
        /// Its height.
        height: BlockHeight,
    },
    /// (Payee) a payment was accepted.
    PaymentReceived {
        /// Its number.
        number: u64,
        /// Total paid so far.
        to_payee: bitcoin::Amount,
    },
    /// (Payer) the payee acknowledged a payment.
    PaymentAcknowledged {
        /// The payment number.
        number: u64,
    },
    /// (Payee) the payer offered an HTLC; it is enforceable now (the payee holds a payer-signed
    /// transaction carrying it).
    HtlcOffered(PaymentHtlc),
    /// (Payer) the preimage of an HTLC became known, off chain or from a witness on chain
    /// (confirmed, or unconfirmed and reported with
    /// [`ChainEvent::Seen`](crate::driving::ChainEvent::Seen)): claim upstream now.
    HtlcFulfilled {
        /// HTLC id.
        id: u64,
        /// Its hash.
        payment_hash: PaymentHash,
        /// Its preimage.
        preimage: PaymentPreimage,
    },
    /// An HTLC was removed from the newest payment without a preimage. For the payer this is not
    /// yet irrevocable (see the module docs).
    HtlcRemoved {
        /// HTLC id.
        id: u64,
    },
    /// (Payer) a removed HTLC can no longer be claimed by the payee: fail upstream now.
    HtlcFailIrrevocable {
        /// HTLC id.
        id: u64,
    },
    /// A closing transaction (payment or refund) was broadcast.
    CloseBroadcast {
        /// Its txid.
        txid: Txid,
    },
    /// The channel is closed on chain.
    Closed {
        /// The transaction that spent the channel output.
        txid: Txid,
        /// Which kind it was.
        kind: CloseKind,
    },
    /// An on-chain HTLC claim was broadcast.
    HtlcClaimBroadcast {
        /// HTLC id.
        id: u64,
        /// The claim's txid.
        txid: Txid,
    },
    /// (Payer) the payee's [`Reestablish`] proves that our data is older than what we signed (a
    /// restored backup, lost writes): we sign nothing new ([`CommandError::LostState`]). The
    /// payee holds our newest payment and will close with it; the refund stays ours after
    /// expiry.
    LostState,
    /// (Payee) the payer's [`Reestablish`] shows that it lost state: close with the best payment
    /// ([`Payee::close`]).
    CounterpartyLostState,
    /// A chain event was refused because `handle_chain` was given a signer that is not the
    /// channel's: nothing changed (no update to persist). Deliver the same event again with the
    /// channel's signer.
    WrongSigner(crate::core::sign::WrongSigner),
}

/// What was wrong with a peer message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Misbehaviour {
    /// The message is not expected in the channel's current phase.
    UnexpectedMessage,
    /// The message is for another variant than the channel's.
    WrongVariant,
    /// The payee's terms are unusable (expiry too close, fee or dust too large, …).
    BadTerms,
    /// The funding output is not the expected script and value.
    WrongFunding,
    /// The funding transaction has a non-segwit input (pre-signed refunds would be malleable).
    MalleableFunding,
    /// A payment number was not above the last one (a replay).
    Replay,
    /// The payee's amount went down.
    AmountDecreased,
    /// Nothing changed: same amount and same HTLCs.
    NoProgress,
    /// The payment does not fit the channel (capacity, dust).
    Payment(payment::PaymentError),
    /// The first payment is below the payee's minimum.
    FirstPaymentTooSmall,
    /// The payer's signature is wrong.
    Signature(crate::core::sign::SignatureError),
    /// The channel is inside its close margin (or funding is not confirmed deep enough).
    NotAcceptingPayments,
    /// An HTLC was changed, removed without being fulfilled, failed or expired, or its fulfilment
    /// was not folded into the payee's output.
    HtlcRemovedUnfairly,
    /// A new HTLC reuses an id or has an id below the next expected one.
    HtlcIdReused,
    /// The payment number, or a new HTLC's id, is `u64::MAX`: nothing could follow it, so
    /// numbers or ids would be reused after it.
    Exhausted,
    /// A new HTLC's expiry is too soon or too late for the channel.
    HtlcExpiry,
    /// Unknown HTLC id.
    UnknownHtlc,
    /// The preimage does not match the HTLC's hash.
    WrongPreimage,
    /// The peer's refund signature is wrong.
    RefundSignature(crate::core::sign::SignatureError),
    /// The signer could not sign.
    Signer(crate::core::sign::SignerError),
    /// A [`Reestablish`] claims a newer payment of ours without our signature on it.
    UnprovenReestablish,
    /// The payer's script (in [`Open`] or [`RefundRequest`]) is not a standard payout script
    /// ([`payment::PAYOUT_POLICY`]): no node would relay a payment transaction paying it.
    NonStandardScript,
    /// The message is addressed to another channel (`handle_addressed`): neither this
    /// channel's temporary id nor its funded id. Nothing was looked at.
    WrongChannel,
    /// Not the peer's fault: `handle_message` was given a signer that is not the channel's. The
    /// message was not processed ([`driving::Action::Ignore`]: do not blame the peer); feed it
    /// again with the channel's signer.
    WrongSigner(crate::core::sign::WrongSigner),
}

impl fmt::Display for Misbehaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Misbehaviour::Payment(e) => write!(f, "payment: {e}"),
            Misbehaviour::Signature(e) => write!(f, "payment signature: {e}"),
            Misbehaviour::RefundSignature(e) => write!(f, "refund signature: {e}"),
            Misbehaviour::Signer(e) => write!(f, "signer: {e}"),
            Misbehaviour::WrongSigner(e) => write!(f, "{e}"),
            other => fmt::Debug::fmt(other, f),
        }
    }
}

fn peer_error(kind: Misbehaviour) -> PeerError {
    let action = match kind {
        Misbehaviour::UnexpectedMessage | Misbehaviour::Replay | Misbehaviour::NotAcceptingPayments => {
            driving::Action::Ignore
        }
        Misbehaviour::Signer(_) | Misbehaviour::WrongSigner(_) => driving::Action::Ignore,
        _ => driving::Action::Warn,
    };
    driving::PeerError { kind, action }
}

/// Why a local command was refused. The channel is unchanged.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum CommandError {
    /// The channel is not in a phase where this command applies.
    WrongPhase,
    /// The payment does not fit the channel.
    Payment(payment::PaymentError),
    /// An amount overflowed or is zero, or no payment number or HTLC id is left (`u64::MAX`).
    InvalidAmount,
    /// Unknown HTLC id.
    UnknownHtlc,
    /// The preimage does not match.
    WrongPreimage,
    /// The HTLC expiry is outside what the channel allows.
    HtlcExpiry,
    /// The HTLC has not expired yet.
    NotExpired,
    /// The funding transaction has no output paying the channel script and capacity, or more
    /// than one ([`FundingError`](crate::core::funding::FundingError)).
    NoFundingOutput,
    /// The funding transaction has an input with a `scriptSig` (its txid is malleable).
    MalleableFunding,
    /// The payee's terms are unusable.
    BadTerms,
    /// The signer could not sign.
    Signer(crate::core::sign::SignerError),
    /// The payer lost state ([`Event::LostState`]): it signs nothing new.
    LostState,
    /// The payee's or our script is not a standard payout script ([`payment::PAYOUT_POLICY`]).
    NonStandardScript,
    /// The signer is not the channel's (its public keys are not the ones recorded at setup).
    WrongSigner(crate::core::sign::WrongSigner),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Payment(e) => write!(f, "payment: {e}"),
            CommandError::Signer(e) => write!(f, "signer: {e}"),
            CommandError::WrongSigner(e) => write!(f, "{e}"),
            other => fmt::Debug::fmt(other, f),
        }
    }
}

impl core::error::Error for CommandError {}

impl From<crate::core::sign::SignerError> for CommandError {
    fn from(e: crate::core::sign::SignerError) -> Self {
        CommandError::Signer(e)
    }
}

impl From<crate::core::funding::FundingError> for CommandError {
    fn from(e: crate::core::funding::FundingError) -> Self {
        match e {
            crate::core::funding::FundingError::NonSegwitInput { .. } => CommandError::MalleableFunding,
            _ => CommandError::NoFundingOutput,
        }
    }
}

impl From<crate::core::sign::WrongSigner> for CommandError {
    fn from(e: crate::core::sign::WrongSigner) -> Self {
        CommandError::WrongSigner(e)
    }
}

impl From<crate::core::sign::WrongSigner> for PeerError {
    fn from(e: crate::core::sign::WrongSigner) -> Self {
        peer_error(Misbehaviour::WrongSigner(e))
    }
}
