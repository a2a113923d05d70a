//! Poon–Dryja Lightning channels (BOLT #2/#3): revocable commitments plus HTLCs, speaking BOLT #2
//! semantics in the BOLT #1/#2 wire format ([`Msg`]).
//!
//! # Driving
//! A [`Channel`] is a plain value, driven as described in [`crate::driving`]:
//!
//! * **commands**: [`Channel::open`] / [`Channel::accept`], [`Channel::funding_tx`],
//!   [`Channel::add_htlc`], [`Channel::fulfill_htlc`], [`Channel::fail_htlc`],
//!   [`Channel::update_fee`], [`Channel::commit`] (send `commitment_signed` for everything
//!   pending), [`Channel::shutdown`];
//! * **peer input**: [`Channel::handle_message`]; [`Channel::handle_disconnect`] when the
//!   connection drops and [`Channel::reestablish`] when it is back;
//! * **chain input**: [`Channel::handle_chain`].
//!
//! Each returns [`Effects`](crate::driving::Effects): persist `update` (snapshot + append
//! `records`), then send, then broadcast. Updates you make are sent at once but only signed when
//! you call [`Channel::commit`] (so several can share one signature); the answers to the peer's
//! `commitment_signed` (our `revoke_and_ack`, and our own `commitment_signed` if the peer's
//! updates need one) are produced automatically.
//!
//! # HTLC lifecycle
//! See [`htlc`] for the five stages each update passes. Events tell a forwarder exactly when to
//! act: [`Event::HtlcReceived`] only once an incoming HTLC is irrevocably committed (forward it
//! then, not before); [`Event::HtlcFulfilled`] as soon as the peer reveals a preimage (claim
//! upstream at once); [`Event::HtlcFailed`] only once the failure is irrevocably committed (fail
//! upstream then, not before).
//!
//! # Deadlines
//! The channel enforces its HTLCs' expiries by itself ([`HtlcDeadlines`]): it closes on chain
//! when the peer leaves an HTLC we offered in the commitments past its expiry, or one whose
//! preimage we revealed too close to its expiry; it fails back HTLCs offered with too little time
//! left, and refuses to offer or fulfil such HTLCs. Every [`Effects`] carries the next deadline.
//!
//! # Persistence
//! The snapshot holds the live state: parameters, keys, the peer's revocation secrets in the
//! constant-size shachain store, the HTLCs in flight (≈ 100 bytes each) and our latest
//! commitment's signatures. What is written once and never changes goes into append-only
//! [`records`] in [`StateUpdate::records`](crate::driving::StateUpdate::records): an HTLC's
//! 1,366-byte onion when it is added ([`OnionRecord`]), and what penalties need about an HTLC once
//! it is gone ([`PenaltyRecord`]). So the bytes persisted per update do not grow with the
//! channel's history, nor carry the onions again. Restore with
//! [`Channel::restore_with_records`]; [`Channel::keeps_record`] tells which records a compaction
//! of the log may drop.

mod channel;
mod close;
mod deadlines;
mod dot;
pub mod htlc;
pub mod msgs;
mod normal;
pub mod onchain;
mod open;
pub mod penalty;
pub mod records;
mod reestablish;
mod snapshot;

pub use channel::{Balances, Channel, Phase};
pub use htlc::{Resolution, Side};
pub use msgs::{Msg, OnionPacket};
pub use records::{OnionRecord, PenaltyRecord, Record};

use core::fmt;

use bitcoin::{Amount, ScriptBuf, Txid};

use crate::core::commitment::ChannelType;
use crate::core::hashlock::{PaymentHash, PaymentPreimage};
use crate::core::units::MilliSats;
use crate::driving::{self, Action, ChannelId};

/// Effects of a Lightning call.
pub type Effects = driving::Effects<Msg, Event>;

/// A refused peer input.
pub type PeerError = driving::PeerError<Misbehaviour>;

/// This node's channel policy: what it announces and what it accepts.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ChannelConfig {
    /// Genesis block hash of the chain (`chain_hash`).
    pub chain_hash: [u8; 32],
    /// Commitment format (the opener proposes it, the acceptor must support it).
    pub channel_type: ChannelType,
    /// Our dust limit (outputs of our commitments below it are trimmed).
    pub dust_limit: Amount,
    /// Most value the peer may have in HTLCs offered to us at once.
    pub max_htlc_value_in_flight: MilliSats,
    /// Reserve the peer must keep on its side.
    pub channel_reserve: Amount,
    /// Smallest HTLC we accept.
    pub htlc_minimum: MilliSats,
    /// Delay we impose on the peer's own outputs.
    pub to_self_delay: u16,
    /// Most HTLCs the peer may offer us at once (at most 483).
    pub max_accepted_htlcs: u16,
    /// Confirmations of the funding transaction before the channel is used.
    pub minimum_depth: u32,
    /// Largest delay we accept on our own outputs.
    pub max_to_self_delay: u16,
    /// Lowest fee rate we accept in the peer's `open_channel`/`update_fee`.
    pub min_feerate: u32,
    /// Highest fee rate we accept.
    pub max_feerate: u32,
    /// Most value we accept in HTLCs that would be trimmed (dust) on either commitment.
    pub max_dust_exposure: MilliSats,
    /// When the channel acts by itself on its HTLCs' expiries (kept apart from the policy above).
    pub htlc_deadlines: HtlcDeadlines,
}

/// When a channel acts by itself on its HTLCs' expiries (BOLT #2 "`cltv_expiry_delta`
/// Selection"), so that a peer that stops answering cannot take an HTLC's value. The channel
/// checks them at every tip ([`Channel::handle_chain`]) and reports the next one in every
/// [`Effects::next_deadline`](crate::driving::Effects::next_deadline).
///
/// With `R` blocks of reorg to survive, `G` of grace and `S` to get a transaction confirmed
/// (BOLT #2's example `R = 2`, `G = 2`, `S = 12`), the defaults are `G` and `2R + G + S`. Neither
/// depends on `to_self_delay`: an HTLC output is claimed by a transaction spending the
/// commitment directly (its delay only locks the second-stage output, which is ours either way).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct HtlcDeadlines {
    /// `G`: blocks past an HTLC's `cltv_expiry` after which an HTLC **we offered**, still in
    /// either commitment, makes the channel close on chain and time it out there.
    ///
    /// Attack stopped: a peer that never fails nor fulfils our HTLC (never sends the removal, or
    /// never signs it) would keep it open past its expiry until the peer could claim it with a
    /// preimage learnt later, or until our own upstream HTLC timed out: we would pay upstream
    /// and never be refunded.
    pub offered_grace: u32,
    /// Blocks an HTLC **offered to us** must have left before its `cltv_expiry` to be settled
    /// off chain (BOLT #2's fulfilment deadline, and its minimum final expiry). Once fewer are
    /// left (`tip > cltv_expiry - claim_margin`):
    ///
    /// * if we know its preimage (we revealed it with [`Channel::fulfill_htlc`], or were given it
    ///   with [`Channel::provide_preimage`]) and it is still in either commitment, the channel
    ///   closes on chain and claims it with the preimage;
    /// * [`Channel::fulfill_htlc`] is refused: the preimage is not revealed off chain when the
    ///   peer could time the HTLC out before the fulfilment is signed.
    ///
    /// An HTLC offered to us that becomes irrevocably committed with fewer blocks left
    /// (`cltv_expiry < tip + claim_margin`) is failed back at once
    /// ([`Event::HtlcExpiryTooSoon`]) instead of reported as received; our own
    /// [`Channel::add_htlc`] refuses such expiries (a peer with our policy would fail them back).
    ///
    /// Attack stopped: a peer that takes our preimage but never removes the HTLC (never signs
    /// the fulfilment) waits until `cltv_expiry` and times the HTLC out on chain, taking back
    /// what it owed us while already knowing the preimage; or it offers an HTLC so close to its
    /// expiry that any fulfilment could be outrun that way.
    pub claim_margin: u32,
}

impl Default for HtlcDeadlines {
    /// `offered_grace = 2`, `claim_margin = 18` (BOLT #2's `G` and `2R + G + S`).
    fn default() -> Self {
        HtlcDeadlines { offered_grace: 2, claim_margin: 18 }
    }
}

impl ChannelConfig {
    /// A sensible policy for `chain_hash` and `channel_type`: 354-sat dust limit, 1% reserve is
    /// set per channel by the opener, 144-block delays, 30 HTLCs, 3 confirmations, the default
    /// [`HtlcDeadlines`].
    pub fn default_for(chain_hash: [u8; 32], channel_type: ChannelType) -> Self {
        ChannelConfig {
            chain_hash,
            channel_type,
            dust_limit: Amount::from_sat(354),
            max_htlc_value_in_flight: MilliSats::from_msat(u64::MAX),
            channel_reserve: Amount::from_sat(1_000),
            htlc_minimum: MilliSats::from_msat(1),
            to_self_delay: 144,
            max_accepted_htlcs: 30,
            minimum_depth: 3,
            max_to_self_delay: 2016,
            min_feerate: 253,
            max_feerate: 100_000,
            max_dust_exposure: MilliSats::from_msat(5_000_000),
            htlc_deadlines: HtlcDeadlines::default(),
        }
    }
}

/// What the opener chooses for one channel.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct OpenParams {
    /// The opener's policy.
    pub config: ChannelConfig,
    /// An id for the channel until it is funded; the embedder picks it (the crate draws no
    /// randomness): it must be unique among its pending channels.
    pub temporary_channel_id: ChannelId,
    /// Capacity.
    pub funding: Amount,
    /// Amount handed to the acceptor at open.
    pub push: MilliSats,
    /// Initial fee rate.
    pub feerate_per_kw: u32,
}

/// Something the embedder may want to know.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Event {
    /// (Opener) the wallet must now create a transaction paying `value` to `script_pubkey` and
    /// hand it to [`Channel::funding_tx`].
    FundingGenerationReady {
        /// The funding output's script.
        script_pubkey: ScriptBuf,
        /// Its value.
        value: Amount,
    },
    /// Both sides sent `channel_ready`: the channel can carry HTLCs.
    ChannelReady {
        /// The final channel id.
        channel_id: ChannelId,
    },
    /// An HTLC offered to us is irrevocably committed: forward it or settle it now.
    HtlcReceived {
        /// Its id.
        id: u64,
        /// Amount.
        amount: MilliSats,
        /// Payment hash.
        payment_hash: PaymentHash,
        /// Expiry height.
        cltv_expiry: u32,
        /// The onion it came with, to peel and forward (shared, not copied; always present for
        /// an HTLC received over the wire).
        onion: Option<OnionPacket>,
    },
    /// The peer revealed the preimage of an HTLC we offered: claim upstream now.
    HtlcFulfilled {
        /// Our HTLC id.
        id: u64,
        /// Payment hash.
        payment_hash: PaymentHash,
        /// The preimage.
        preimage: PaymentPreimage,
    },
    /// An HTLC we offered was failed, irrevocably: fail upstream now.
    HtlcFailed {
        /// Our HTLC id.
        id: u64,
        /// Payment hash.
        payment_hash: PaymentHash,
    },
    /// An HTLC is completely gone from both commitments.
    HtlcResolved {
        /// Who offered it.
        offerer: Side,
        /// Its id.
        id: u64,
    },
    /// The peer asked to close; no new HTLCs will be accepted.
    ShutdownReceived,
    /// The cooperative closing transaction was agreed and broadcast.
    ClosingBroadcast {
        /// Its txid.
        txid: Txid,
        /// The fee it pays.
        fee: Amount,
    },
    /// The peer proved it holds a newer state than ours: our data is stale. Do **not** broadcast
    /// our commitment; ask the peer to close and wait for its commitment on chain.
    LostState,
    /// An HTLC deadline came ([`HtlcDeadlines`]): the peer left an HTLC in the commitments too
    /// long, so the channel closes on chain (the force close is in the same effects) and
    /// resolves it there: times out an HTLC we offered, or claims one offered to us with its
    /// preimage. Reported before the close, once per HTLC due.
    HtlcDeadline {
        /// Who offered the HTLC.
        offerer: Side,
        /// Its id.
        id: u64,
        /// Its expiry.
        cltv_expiry: u32,
    },
    /// An HTLC offered to us became irrevocably committed with too little time left to be
    /// settled safely (`cltv_expiry < tip + claim_margin`, [`HtlcDeadlines::claim_margin`]). It
    /// is not reported as [`Event::HtlcReceived`]: the channel failed it back at once (BOLT #4
    /// `expiry_too_soon`, `0x100e`, in clear like every failure reason of the crate).
    HtlcExpiryTooSoon {
        /// Its id.
        id: u64,
        /// Payment hash.
        payment_hash: PaymentHash,
        /// Its expiry.
        cltv_expiry: u32,
    },
    /// The peer sent `error`: it failed the channel. We broadcast our latest commitment (unless
    /// our state is stale or the channel is already closing on chain); `data` is the peer's
    /// untrusted text.
    FailedByPeer {
        /// The peer's text.
        data: alloc::vec::Vec<u8>,
    },
}

/// What was wrong with a peer message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Misbehaviour {
    /// Not expected in the current phase.
    UnexpectedMessage,
    /// For another channel.
    WrongChannel,
    /// Channel parameters out of bounds (dust limit, reserve, delays, HTLC limits, chain).
    BadParameters,
    /// Unsupported or mismatched `channel_type`.
    ChannelType,
    /// Fee rate out of bounds or unaffordable.
    Feerate,
    /// Only the funder may send `update_fee`.
    NotFunder,
    /// An HTLC id is reused or skips ahead.
    HtlcId,
    /// An HTLC is below our minimum or zero.
    HtlcBelowMinimum,
    /// Too many HTLCs, too much in flight, or too much dust exposure.
    HtlcLimits,
    /// The sender cannot afford the HTLC (reserve, fee).
    CannotAfford,
    /// `cltv_expiry` is not a block height.
    BadExpiry,
    /// Unknown HTLC id, or one not yet irrevocably committed, or already removed.
    UnknownHtlc,
    /// The preimage does not match.
    WrongPreimage,
    /// `update_fail_malformed_htlc` without the BADONION bit.
    MalformedWithoutBadOnion,
    /// `commitment_signed` that changes nothing.
    NoChanges,
    /// A commitment or HTLC signature is wrong, or the number of HTLC signatures is.
    BadSignature(crate::core::commitment::signatures::CommitmentSigError),
    /// A funding signature is wrong.
    BadFundingSignature,
    /// `revoke_and_ack` with a secret that does not match, or when none is due.
    BadRevocation,
    /// No new adds after `shutdown`; or an unacceptable shutdown script.
    Shutdown,
    /// Closing fee unacceptable or ranges do not overlap.
    ClosingFee,
    /// `channel_reestablish` numbers that show the peer lost state, or lies.
    ReestablishMismatch,
    /// The signer could not sign.
    Signer(crate::core::sign::SignerError),
    /// A key could not be derived from the peer's points.
    Keys,
    /// The message could not be decoded (when fed as bytes).
    Decode(crate::core::encode::DecodeError),
    /// A message after one we refused on the same connection: disconnect and reconnect first.
    AfterRefusal,
}

impl fmt::Display for Misbehaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Misbehaviour::BadSignature(e) => write!(f, "bad signature: {e}"),
            Misbehaviour::Signer(e) => write!(f, "signer: {e}"),
            Misbehaviour::Decode(e) => write!(f, "decode: {e}"),
            other => fmt::Debug::fmt(other, f),
        }
    }
}

pub(crate) fn peer_error(kind: Misbehaviour) -> PeerError {
    use Misbehaviour::*;
    let action = match kind {
        UnexpectedMessage | WrongChannel | Decode(_) | AfterRefusal => Action::Warn,
        Signer(_) => Action::Ignore,
        ReestablishMismatch => Action::Close,
        _ => Action::ForceClose,
    };
    driving::PeerError { kind, action }
}

/// Why a local command was refused. The channel is unchanged.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum CommandError {
    /// Not possible in the current phase (not open yet, shutting down, closed, or waiting for
    /// the peer's revocation before signing again).
    WrongPhase,
    /// Below the peer's `htlc_minimum_msat`, zero, or above what we can send.
    Amount,
    /// The peer's HTLC count, in-flight or dust-exposure limits would be exceeded.
    Limits,
    /// We could not afford it while keeping the reserve (and, as funder, the fee buffer).
    CannotAfford,
    /// The expiry is not a block height.
    BadExpiry,
    /// Unknown HTLC id, not irrevocably committed yet, or already being removed.
    UnknownHtlc,
    /// The preimage does not match.
    WrongPreimage,
    /// Only the funder may change the fee, within bounds it can afford.
    Fee,
    /// Nothing to sign.
    NothingToCommit,
    /// The funding transaction has no output paying the channel.
    NoFundingOutput,
    /// The signer could not sign.
    Signer(crate::core::sign::SignerError),
    /// A key derivation failed.
    Keys,
    /// Our state is stale ([`Channel::has_lost_state`]): our commitment must not be broadcast.
    StateLost,
    /// The HTLC's expiry is too close to the tip ([`HtlcDeadlines::claim_margin`]): an HTLC we
    /// would offer expiring before `tip + claim_margin`, or a fulfilment once the tip passed
    /// `cltv_expiry - claim_margin` (the peer could time the HTLC out before the fulfilment is
    /// settled; the preimage is not revealed).
    HtlcExpiry,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl core::error::Error for CommandError {}

impl From<crate::core::sign::SignerError> for CommandError {
    fn from(e: crate::core::sign::SignerError) -> Self {
        CommandError::Signer(e)
    }
}

/// Why an `open_channel` was not accepted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct OpenError(pub Misbehaviour);

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "open_channel refused: {}", self.0)
    }
}

impl core::error::Error for OpenError {}
