//! The one interface a forwarding node sees of a channel, whatever its type (docs/multihop.md
//! §3): offer, fulfil, fail, go on chain, and the HTLC facts the channel
//! reports through its own events, translated to [`HtlcSignal`]s.

use core::fmt;

use crate::core::hashlock::{PaymentHash, PaymentPreimage};
use crate::core::sign::{Signer, WrongSigner};
use crate::core::units::{BlockHeight, MilliSats};
use crate::driving::{ChainEvent, ChainTip, Effects};

use super::{HopKind, SafetyMargins};
use crate::lightning::{HtlcFailure, HtlcRefusal, OnionPacket};
use crate::network::receive::FailBack;

/// An HTLC fact a channel reported, in the forwarder's terms.
///
/// Each layer emits these only when they are safe to act on: `Received` once the incoming HTLC is
/// irrevocably committed (Lightning: added on both sides and revoked; Spilman and duplex: the
/// receiver holds a payer-signed payment carrying it), `Fulfilled` as soon as a preimage is known
/// (message or on-chain witness), `FailedIrrevocably` only once the offered HTLC can no longer be
/// claimed (Lightning: removal committed on both sides or timed out on chain; duplex: dropped by a
/// fully signed reset or timed out on chain; Spilman: dominated or the channel ended without it).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HtlcSignal {
    /// (Receiver) an HTLC offered to us is irrevocably committed.
    Received {
        /// Its id in the channel.
        id: u64,
        /// Its amount.
        amount: MilliSats,
        /// Its hash.
        payment_hash: PaymentHash,
        /// Its absolute expiry.
        expiry: BlockHeight,
    },
    /// (Offerer) the preimage of an HTLC we offered is known.
    Fulfilled {
        /// Its id in the channel.
        id: u64,
        /// The preimage.
        preimage: PaymentPreimage,
    },
    /// (Offerer) an HTLC we offered can no longer be claimed by the receiver.
    FailedIrrevocably {
        /// Its id in the channel.
        id: u64,
    },
}

/// An HTLC offered to us that the channel refused by itself and left for the forwarder to fail
/// back ([`HtlcChannel::defer_refusals`]; Lightning's
/// [`Event::HtlcRefused`](crate::lightning::Event::HtlcRefused)).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RefusedHtlc {
    /// Its id in the channel.
    pub id: u64,
    /// Its hash.
    pub payment_hash: PaymentHash,
    /// Its amount.
    pub amount: MilliSats,
    /// Its absolute expiry.
    pub expiry: BlockHeight,
    /// Its onion, if it came with one.
    pub onion: Option<OnionPacket>,
    /// Why the channel refused it.
    pub reason: HtlcRefusal,
}

/// Why a channel refused an HTLC command. The channel is unchanged.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum HtlcError {
    /// The channel cannot carry HTLCs in this direction (a Spilman payee cannot offer, a Spilman
    /// payer cannot receive).
    WrongDirection,
    /// The amount is not a whole number of satoshis on a channel whose HTLCs are on-chain outputs
    /// (Spilman, duplex), is zero, or is below the peer's `htlc_minimum_msat` (Lightning).
    Amount,
    /// The channel refused the command (its own error, flattened for logs).
    Refused(&'static str),
    /// The signer given is not the channel's (the embedder's mistake; nothing changed).
    WrongSigner(WrongSigner),
}

impl fmt::Display for HtlcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HtlcError::WrongDirection => f.write_str("the channel carries no HTLC in this direction"),
            HtlcError::Amount => f.write_str("amount not representable on this channel"),
            HtlcError::Refused(why) => write!(f, "refused by the channel: {why}"),
            HtlcError::WrongSigner(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for HtlcError {}

/// A channel as a forwarding node drives it. Implemented for [`spilman::Payer`](crate::spilman::Payer)
/// (outgoing only), [`spilman::Payee`](crate::spilman::Payee) (incoming only),
/// [`duplex::Channel`](crate::duplex::Channel) and [`lightning::Channel`](crate::lightning::Channel)
/// by thin adapters that call the layers' own commands.
///
/// Every method returns the layer's own [`Effects`], with the same obligations (persist, then
/// send, then broadcast).
pub trait HtlcChannel {
    /// The layer's peer message.
    type Msg;
    /// The layer's event.
    type Event;
    /// The layer's refusal of a peer message (including its refusal of a wrong signer, which
    /// blames nobody but the embedder).
    type PeerError: fmt::Debug + From<WrongSigner>;

    /// The layer's own check that `signer` is the channel's (e.g.
    /// [`lightning::Channel::check_signer`](crate::lightning::Channel::check_signer)).
    ///
    /// # Errors
    /// [`WrongSigner`] if it is not.
    fn check_signer<S: Signer + ?Sized>(&self, signer: &S) -> Result<(), WrongSigner>;

    /// The channel's type and timing parameters, for the deltas of docs/multihop.md §2.
    fn hop_kind(&self, margins: SafetyMargins) -> HopKind;

    /// Hands a peer message to the channel (and does what the adapter must do next, e.g. sign
    /// pending Lightning updates).
    ///
    /// # Errors
    /// The layer's refusal; the channel is unchanged.
    fn handle_message<S: Signer + ?Sized>(
        &mut self,
        msg: Self::Msg,
        signer: &S,
        tip: ChainTip,
    ) -> Result<Effects<Self::Msg, Self::Event>, Self::PeerError>;

    /// Hands a chain event to the channel.
    fn handle_chain<S: Signer + ?Sized>(
        &mut self,
        event: ChainEvent<'_>,
        signer: &S,
    ) -> Effects<Self::Msg, Self::Event>;

    /// Offers an HTLC; returns its id.
    ///
    /// # Errors
    /// [`HtlcError`]; the channel is unchanged.
    #[allow(clippy::type_complexity)]
    fn offer_htlc<S: Signer + ?Sized>(
        &mut self,
        amount: MilliSats,
        payment_hash: PaymentHash,
        expiry: BlockHeight,
        signer: &S,
        tip: ChainTip,
    ) -> Result<(u64, Effects<Self::Msg, Self::Event>), HtlcError>;

    /// Fulfils an HTLC offered to us (off chain if the channel is open, on chain otherwise).
    ///
    /// # Errors
    /// [`HtlcError`]; the channel is unchanged.
    fn fulfill_htlc<S: Signer + ?Sized>(
        &mut self,
        id: u64,
        preimage: PaymentPreimage,
        signer: &S,
        tip: ChainTip,
    ) -> Result<Effects<Self::Msg, Self::Event>, HtlcError>;

    /// Fails an HTLC offered to us.
    ///
    /// # Errors
    /// [`HtlcError`]; the channel is unchanged.
    fn fail_htlc<S: Signer + ?Sized>(
        &mut self,
        id: u64,
        signer: &S,
    ) -> Result<Effects<Self::Msg, Self::Event>, HtlcError>;

    /// Whether an HTLC offered to us is irrevocably committed (the forwarder checks it again
    /// before forwarding on a [`HtlcSignal::Received`]).
    fn is_add_irrevocable(&self, id: u64) -> bool;

    /// Whether an HTLC offered to us is settled: gone from every state the offerer could still
    /// publish with it (so there is nothing left to claim on chain).
    fn is_incoming_settled(&self, id: u64) -> bool;

    /// Starts the on-chain resolution: force close (Lightning, duplex), publish the best payment
    /// (Spilman payee), or ask the payee to close (Spilman payer, which refunds by itself at the
    /// channel's expiry). Harmless if already closing.
    fn go_on_chain<S: Signer + ?Sized>(&mut self, signer: &S) -> Effects<Self::Msg, Self::Event>;

    /// Translates one of the layer's events.
    fn signal(event: &Self::Event) -> Option<HtlcSignal>;

    /// The onion an HTLC offered to us came with ([`HtlcSignal::Received`]'s event), if the
    /// layer carries onions (Lightning). Spilman and duplex messages carry none: their
    /// forwarding instructions come from [`Forwarder::add_route`](super::Forwarder::add_route).
    fn received_onion(_event: &Self::Event) -> Option<OnionPacket> {
        None
    }

    /// How the peer failed an HTLC we offered ([`HtlcSignal::FailedIrrevocably`]'s event), if
    /// the layer says (Lightning: the reason to relay upstream, or a malformed onion).
    fn failure(_event: &Self::Event) -> Option<HtlcFailure> {
        None
    }

    /// Leaves the HTLCs the channel refuses by itself to the forwarder, which fails them back
    /// wrapped for the origin ([`HtlcChannel::refused`]): Lightning's
    /// [`Channel::defer_refusals`](crate::lightning::Channel::defer_refusals). Layers that
    /// refuse nothing by themselves ignore it.
    fn defer_refusals(&mut self) {}

    /// An HTLC the channel refused and left to the forwarder ([`HtlcChannel::defer_refusals`]).
    fn refused(_event: &Self::Event) -> Option<RefusedHtlc> {
        None
    }

    /// As [`HtlcChannel::offer_htlc`], carrying `onion` for the next hop. Layers without onions
    /// (Spilman, duplex) drop it: their receiver is the payee or has its own route.
    ///
    /// # Errors
    /// [`HtlcError`]; the channel is unchanged.
    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn offer_htlc_with_onion<S: Signer + ?Sized>(
        &mut self,
        amount: MilliSats,
        payment_hash: PaymentHash,
        expiry: BlockHeight,
        onion: OnionPacket,
        signer: &S,
        tip: ChainTip,
    ) -> Result<(u64, Effects<Self::Msg, Self::Event>), HtlcError> {
        let _ = onion;
        self.offer_htlc(amount, payment_hash, expiry, signer, tip)
    }

    /// As [`HtlcChannel::fail_htlc`], with BOLT #4's answer for the origin
    /// (`update_fail_htlc` with the wrapped reason, or `update_fail_malformed_htlc`). Layers
    /// without failure messages (Spilman, duplex) fail the HTLC plainly.
    ///
    /// # Errors
    /// [`HtlcError`]; the channel is unchanged.
    fn fail_htlc_with<S: Signer + ?Sized>(
        &mut self,
        id: u64,
        answer: FailBack,
        signer: &S,
    ) -> Result<Effects<Self::Msg, Self::Event>, HtlcError> {
        let _ = answer;
        self.fail_htlc(id, signer)
    }
}
