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
}

impl ChannelConfig {
    /// A sensible policy for `chain_hash` and `channel_type`: 354-sat dust limit, 1% reserve is
    /// set per channel by the opener, 144-block delays, 30 HTLCs, 3 confirmations.
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
    /// The transaction with the agreed funding txid confirmed, but its output at the agreed
    /// index is missing or does not pay exactly the channel's 2-of-2 P2WSH script and capacity
    /// (CVE-2019-12998). The channel is failed: we never sent `channel_ready`, it takes no update
    /// and broadcasts nothing; an `error` tells the peer. As acceptor we put nothing in, and the
    /// opener's `push` was never real. [`Channel::has_invalid_funding`] stays true.
    InvalidFunding {
        /// The funding transaction.
        txid: Txid,
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
    /// An add after the peer's `shutdown`; a `shutdown` sent while the peer's own updates are
    /// not yet signed (BOLT #2 forbids it); or an unacceptable shutdown script.
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

/// What to do about each refusal. A refused message changes nothing, so most slips put no money
/// at risk: a `warning` and a disconnection (BOLT #2 allows it for them) resynchronise both sides
/// at `channel_reestablish`, where the peer's unsigned updates are forgotten; the HTLC deadlines
/// still take the channel on chain if the peer never makes progress. Closing at the peer's whim
/// would make us pay the fees and wait out our delay, so only what reconnecting cannot mend
/// closes it on chain: a revocation we cannot trust, keys we cannot derive, and a commitment
/// signature that does not verify (the sides disagree on signed state, and the same signature
/// comes back after every reconnection, RFC6979).
pub(crate) fn peer_error(kind: Misbehaviour) -> PeerError {
    use Misbehaviour::*;
    let action = match kind {
        UnexpectedMessage | WrongChannel | Decode(_) | AfterRefusal => Action::Warn,
        Feerate
        | NotFunder
        | HtlcId
        | HtlcBelowMinimum
        | HtlcLimits
        | CannotAfford
        | BadExpiry
        | UnknownHtlc
        | WrongPreimage
        | MalformedWithoutBadOnion
        | NoChanges
        | Shutdown
        | ClosingFee => Action::Warn,
        Signer(_) => Action::Ignore,
        // Before the funding is broadcast (or where the peer contradicts what we hold) there is
        // nothing to broadcast: stop using the channel.
        ReestablishMismatch | BadParameters | Misbehaviour::ChannelType | BadFundingSignature => Action::Close,
        BadRevocation | Keys | BadSignature(_) => Action::ForceClose,
    };
    driving::PeerError { kind, action }
}

impl driving::PeerError<Misbehaviour> {
    /// The BOLT #1 `warning` to send the peer for a refusal whose action is
    /// [`Action::Warn`] (then disconnect), or `None` for other actions. `channel_id` is the
    /// channel's id ([`Channel::channel_id`]), or [`ChannelId::ZERO`] for a problem with the
    /// connection rather than one channel. The text names the problem and carries no secret.
    ///
    /// ```
    /// use paychan::driving::{Action, ChannelId, PeerError};
    /// use paychan::lightning::{Misbehaviour, Msg};
    /// let refusal = PeerError { kind: Misbehaviour::HtlcId, action: Action::Warn };
    /// let Some(Msg::Warning { channel_id, data }) = refusal.warning(ChannelId::ZERO) else { panic!() };
    /// assert_eq!((channel_id, &data[..]), (ChannelId::ZERO, &b"HtlcId"[..]));
    /// ```
    pub fn warning(&self, channel_id: ChannelId) -> Option<Msg> {
        if self.action != Action::Warn {
            return None;
        }
        Some(Msg::Warning { channel_id, data: alloc::format!("{}", self.kind).into_bytes() })
    }
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
