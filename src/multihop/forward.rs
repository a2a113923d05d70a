//! The forwarding node: one incoming and one outgoing channel, any types, and the docs/multihop.md §4
//! rules between them.

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::channel::{HtlcChannel, HtlcError, HtlcSignal, RefusedHtlc};
use super::{check_forward, e_in, FeePolicy, ForwardError, HtlcTerms, SafetyMargins};
use crate::core::hashlock::{PaymentHash, PaymentPreimage};
use crate::core::sign::{Signer, WrongSigner};
use crate::core::units::{BlockHeight, MilliSats};
use crate::driving::{ChainEvent, ChainTip, Effects};
use crate::lightning::{HtlcFailure, HtlcRefusal, OnionPacket};
use crate::network::noise::NodeSigner;
use crate::network::onion::failure;
use crate::network::payload::Refusal;
use crate::network::receive::{answer_refusal, plain_refusal, FailBack, ReceivedHtlc};
use crate::network::relay::{peel_relay, refuse, relay_failure, relay_malformed};

/// The farthest ahead of the tip an outgoing HTLC forwarded from an onion may expire
/// (`expiry_too_far` beyond): two weeks of blocks, as LDK. Farther, a sender could lock this
/// node's outgoing liquidity for as long as it likes at the price of one HTLC.
pub const MAX_OUTGOING_EXPIRY_DELTA: u32 = 2_016;

/// A forwarding node's policy.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ForwarderConfig {
    /// The chain assumptions (`R`, `G`, `S`).
    pub margins: SafetyMargins,
    /// The fee charged on the outgoing channel.
    pub fee: FeePolicy,
    /// The advertised `cltv_expiry_delta`; the node never uses less than the docs/multihop.md §2 minimum
    /// for its two channel types, whatever is configured here.
    pub cltv_expiry_delta: u32,
}

/// What the sender told this node to do with an HTLC of `payment_hash` (the BOLT 4 onion payload
/// `amt_to_forward` / `outgoing_cltv_value`; onion construction and decryption are not part of
/// this crate, so the embedder hands the decoded instructions over with
/// [`Forwarder::add_route`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Route {
    /// The payment hash the instructions are for.
    pub payment_hash: PaymentHash,
    /// The HTLC to offer on the outgoing channel.
    pub outgoing: HtlcTerms,
}

/// Where a forwarded HTLC stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ForwardState {
    /// Offered downstream as `outgoing_id`; waiting for a preimage or an irrevocable failure.
    Offered {
        /// The outgoing HTLC's id.
        outgoing_id: u64,
    },
    /// The preimage is known and the incoming HTLC was fulfilled with it.
    Fulfilled {
        /// The outgoing HTLC's id, if one was offered.
        outgoing_id: Option<u64>,
        /// The preimage.
        preimage: PaymentPreimage,
    },
    /// The incoming HTLC was failed: refused here, or failed downstream irrevocably.
    Failed,
}

/// One incoming HTLC the node handled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Tracked {
    /// Its hash.
    pub payment_hash: PaymentHash,
    /// Its id on the incoming channel.
    pub incoming_id: u64,
    /// Its amount and expiry.
    pub incoming: HtlcTerms,
    /// The outgoing HTLC's amount and expiry, if one was offered.
    pub outgoing: Option<HtlcTerms>,
    /// Where it stands.
    pub state: ForwardState,
}

/// Why an incoming HTLC was not forwarded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RefuseReason {
    /// No forwarding instructions for its hash (BOLT 4 `unknown_next_peer`).
    NoRoute,
    /// A check of docs/multihop.md §2 failed (fee, expiry delta, expiry too soon).
    Check(ForwardError),
    /// The outgoing channel refused the HTLC (capacity, its own expiry window, …).
    Channel(HtlcError),
    /// The onion refused it (BOLT 4 code): it does not peel (`BADONION` codes, answered with
    /// `update_fail_malformed_htlc`), its payload is invalid, it ends here, it names another
    /// outgoing channel (`unknown_next_peer`) or expires too far ahead (`expiry_too_far`).
    Onion(u16),
    /// The incoming channel refused it by itself once committed (dust exposure, fee-spike
    /// buffer, too little time left to settle it); with onions the failure is wrapped for the
    /// origin (`temporary_channel_failure` or `expiry_too_soon`).
    IncomingChannel(HtlcRefusal),
}

/// What the node did, for the embedder's logs and accounting.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum ForwardEvent {
    /// An irrevocably committed incoming HTLC was offered downstream.
    Forwarded {
        /// Its hash.
        payment_hash: PaymentHash,
        /// Incoming id.
        incoming_id: u64,
        /// Outgoing id.
        outgoing_id: u64,
    },
    /// An incoming HTLC was failed back at once.
    Refused {
        /// Its hash.
        payment_hash: PaymentHash,
        /// Incoming id.
        incoming_id: u64,
        /// Why.
        reason: RefuseReason,
    },
    /// The preimage came back: the incoming HTLC was fulfilled (off chain, or claimed on chain).
    Settled {
        /// Its hash.
        payment_hash: PaymentHash,
        /// Incoming id.
        incoming_id: u64,
        /// What the node earned: incoming minus outgoing amount.
        fee: MilliSats,
    },
    /// The downstream failure became irrevocable and the incoming HTLC was failed.
    FailedUpstream {
        /// Its hash.
        payment_hash: PaymentHash,
        /// Incoming id.
        incoming_id: u64,
    },
    /// The node started the on-chain resolution of a channel because an HTLC deadline came.
    WentOnChain {
        /// `true` for the incoming channel (to claim with the preimage before the upstream
        /// timeout), `false` for the outgoing one (to time the HTLC out).
        incoming: bool,
    },
    /// A chain event was refused, nothing changed: the signer given for one channel is not that
    /// channel's (the embedder's mistake). Deliver the event again with the right signers.
    WrongSigner {
        /// `true` for the incoming channel's signer, `false` for the outgoing one's.
        incoming: bool,
        /// Which key differs.
        error: WrongSigner,
    },
}

/// The effects of one call: each channel's own [`Effects`] plus what the forwarder did.
///
/// Obligations: persist **both** channel updates and [`NodeEffects::state`] before sending or
/// broadcasting anything of either; then send `incoming.send` to the upstream peer and
/// `outgoing.send` to the downstream peer; broadcast, watch and call back as each channel says.
#[must_use = "persist both updates, then send and broadcast"]
pub struct NodeEffects<I: HtlcChannel, O: HtlcChannel> {
    /// The incoming channel's effects.
    pub incoming: Effects<I::Msg, I::Event>,
    /// The outgoing channel's effects.
    pub outgoing: Effects<O::Msg, O::Event>,
    /// What the forwarder did.
    pub events: Vec<ForwardEvent>,
    /// The forwarder's own state ([`Forwarder::snapshot`]) if it changed: persist it, replacing
    /// the previous one, together with the channels' updates.
    pub state: Option<Vec<u8>>,
}

impl<I: HtlcChannel, O: HtlcChannel> NodeEffects<I, O> {
    fn none() -> Self {
        NodeEffects { incoming: Effects::default(), outgoing: Effects::default(), events: Vec::new(), state: None }
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.incoming.is_empty() && self.outgoing.is_empty() && self.events.is_empty() && self.state.is_none()
    }

    /// When to call [`Forwarder::handle_chain`] next at the latest.
    pub fn next_deadline(&self) -> Option<BlockHeight> {
        match (self.incoming.next_deadline, self.outgoing.next_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl<I: HtlcChannel, O: HtlcChannel> core::fmt::Debug for NodeEffects<I, O>
where
    Effects<I::Msg, I::Event>: core::fmt::Debug,
    Effects<O::Msg, O::Event>: core::fmt::Debug,
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NodeEffects")
            .field("incoming", &self.incoming)
            .field("outgoing", &self.outgoing)
            .field("events", &self.events)
            .field("state_len", &self.state.as_ref().map(Vec::len))
            .finish()
    }
}

/// A sans-I/O forwarding node between an incoming channel `I` and an outgoing channel `O`, of any
/// of the crate's channel types ([`HtlcChannel`]).
///
/// * It forwards an HTLC only once the incoming channel reports it irrevocably committed
///   ([`HtlcSignal::Received`]), only with forwarding instructions for its hash ([`Route`]), and
///   only if [`check_forward`] passes: fee, the docs/multihop.md §2 expiry delta for the two channel
///   types (or the Spilman absolute floor), and enough blocks left to claim the incoming HTLC on
///   chain. Otherwise it fails the incoming HTLC back at once.
/// * It fulfils the incoming HTLC as soon as the outgoing channel reports the preimage, whether
///   it came in a message or in a witness on chain.
/// * It fails the incoming HTLC only when the outgoing channel reports the downstream failure
///   irrevocable ([`HtlcSignal::FailedIrrevocably`]).
/// * On every tip it checks the deadlines: an incoming HTLC whose preimage it knows but that is
///   not settled goes on chain `E_in + R` blocks before its expiry; an outgoing HTLC still
///   unresolved `G` blocks after its expiry goes on chain to be timed out.
///
/// # Persistence
/// The forwarder's own state is its pending [`Route`]s, its [`Tracked`] HTLCs, the tip and which
/// channels it sent on chain; every call that changes it returns it in [`NodeEffects::state`] (and
/// [`Forwarder::snapshot`] gives it at any time). After a restart, restore each channel from its
/// own snapshot and the forwarder with [`Forwarder::restore`].
///
/// # Examples
/// B forwards from a Spilman channel it is paid on (A → B) to one it pays on (B → C):
/// ```
/// use paychan::bitcoin::{Amount, ScriptBuf, Transaction, TxIn, WPubkeyHash, hashes::Hash};
/// use paychan::core::keys::{ChannelSecrets, Seed};
/// use paychan::core::sign::InMemorySigner;
/// use paychan::core::{BlockHeight, MilliSats, PaymentPreimage};
/// use paychan::driving::ChainTip;
/// use paychan::multihop::{FeePolicy, ForwardEvent, Forwarder, ForwarderConfig, HtlcTerms};
/// use paychan::multihop::{Requirement, Route, SafetyMargins};
/// use paychan::spilman::{Event, Msg, Payee, PayeeConfig, Payer, PayerConfig, Variant};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keys = |n| InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([n; 32]), 0));
/// let (a_keys, b_in_keys, b_out_keys, c_keys) = (keys(1), keys(2), keys(3), keys(4));
/// let tip = ChainTip::at(800_000);
/// let script = |n| ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]));
/// // Opens a Spilman channel refundable at `expiry` (funding confirmed out of band).
/// let open = |payer_keys: &InMemorySigner, payee_keys: &InMemorySigner, expiry: u32| {
///     let config = PayeeConfig {
///         variant: Variant::Cltv, payee_script: script(9), expiry: BlockHeight(expiry),
///         min_first_payment: Amount::from_sat(1_000), dust_limit: Amount::from_sat(546),
///         payment_fee: Amount::from_sat(300), close_margin: 36, htlc_min_blocks: 24,
///         min_depth: 0, claim_fee: Amount::from_sat(300),
///     };
///     let (mut payee, fx) = Payee::new(config, payee_keys);
///     let Msg::Offer(offer) = fx.send[0].clone() else { unreachable!() };
///     let config = PayerConfig {
///         capacity: Amount::from_sat(1_000_000), payer_script: script(8),
///         refund_fee: Amount::from_sat(300), claim_fee: Amount::from_sat(300),
///         first_payment: Amount::from_sat(1_000), max_lifetime: 4_320,
///     };
///     let mut payer = Payer::new(offer, config, payer_keys, tip).unwrap();
///     let funding = Transaction {
///         version: paychan::bitcoin::transaction::Version::TWO,
///         lock_time: paychan::bitcoin::absolute::LockTime::ZERO,
///         input: vec![TxIn::default()],
///         output: vec![payer.funding_output()],
///     };
///     for m in payer.fund(funding, payer_keys).unwrap().send {
///         for ack in payee.handle_message(m, payee_keys, tip).unwrap().send {
///             let _ = payer.handle_message(ack, payer_keys, tip).unwrap();
///         }
///     }
///     (payer, payee)
/// };
/// let (mut a, b_in) = open(&a_keys, &b_in_keys, 802_016);
/// let (b_out, mut c) = open(&b_out_keys, &c_keys, 801_008);
///
/// let config = ForwarderConfig {
///     margins: SafetyMargins::default(),
///     fee: FeePolicy { base: MilliSats::from_msat(1_000), proportional_millionths: 0 },
///     cltv_expiry_delta: 40,
/// };
/// let mut b = Forwarder::new(b_in, b_out, config, tip);
/// // Paying out over Spilman, B's incoming HTLC must outlive the outgoing channel's refund.
/// let Requirement::AtLeast(floor) = b.requirement() else { unreachable!() };
/// assert_eq!(floor, BlockHeight(801_008 + 12 + 34));
///
/// // The sender's onion would tell B this; here the embedder hands it over.
/// let preimage = PaymentPreimage([7; 32]);
/// let out = HtlcTerms { amount: MilliSats::from_msat(50_000_000), expiry: BlockHeight(800_900) };
/// b.add_route(Route { payment_hash: preimage.hash(), outgoing: out });
///
/// // A offers 50,001 sat expiring at the floor; B forwards 50,000 sat to C.
/// let (_, fx) = a.add_htlc(Amount::from_sat(50_001), preimage.hash(), floor, &a_keys, tip)?;
/// let mut to_c = Vec::new();
/// for m in fx.send {
///     let node = b.handle_incoming_message(m, &b_in_keys, &b_out_keys, tip).unwrap();
///     // Persist both updates, then send: acks go back to A, the new payment on to C.
///     assert!(node.events.iter().any(|e| matches!(e, ForwardEvent::Forwarded { .. })));
///     to_c.extend(node.outgoing.send);
/// }
/// // C takes the payment carrying the HTLC and, being the recipient, fulfils it.
/// let mut to_b = Vec::new();
/// for m in to_c {
///     to_b.extend(c.handle_message(m, &c_keys, tip).unwrap().send);
/// }
/// to_b.extend(c.fulfill_htlc(0, preimage, &c_keys)?.send);
/// // B learns the preimage and fulfils upstream at once.
/// let mut to_a = Vec::new();
/// for m in to_b {
///     let node = b.handle_outgoing_message(m, &b_in_keys, &b_out_keys, tip).unwrap();
///     to_a.extend(node.incoming.send);
/// }
/// let mut learnt = false;
/// for m in to_a {
///     let fx = a.handle_message(m, &a_keys, tip).unwrap();
///     learnt |= fx.events.iter().any(|e| matches!(e, Event::HtlcFulfilled { .. }));
/// }
/// assert!(learnt);
/// # Ok(()) }
/// ```
/// A full route over all three channel types is driven in `examples/multihop.rs` and
/// `tests/multihop_route.rs`: build the channels, wrap each forwarding node's pair in
/// [`Forwarder::new`], and route each peer message to
/// [`Forwarder::handle_incoming_message`] or [`Forwarder::handle_outgoing_message`].
#[derive(Clone, Debug)]
pub struct Forwarder<I, O> {
    incoming: I,
    outgoing: O,
    config: ForwarderConfig,
    routes: Vec<Route>,
    tracked: Vec<Tracked>,
    tip: BlockHeight,
    on_chain: [bool; 2],
    onions: Option<OnionKey>,
    secrets: Vec<(u64, OnionSecret)>,
}

/// The node key that peels incoming onions and the outgoing channel's short channel id.
#[derive(Clone)]
struct OnionKey {
    node: Arc<dyn NodeSigner + Send + Sync>,
    short_channel_id: u64,
}

impl core::fmt::Debug for OnionKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OnionKey")
            .field("node_id", &self.node.node_id())
            .field("short_channel_id", &self.short_channel_id)
            .finish()
    }
}

/// The secret an incoming HTLC's onion shares with its origin (wraps failures on the way back).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct OnionSecret(pub(super) [u8; 32]);

impl core::fmt::Debug for OnionSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("OnionSecret(..)")
    }
}

impl<I: HtlcChannel, O: HtlcChannel> Forwarder<I, O> {
    /// A node forwarding from `incoming` to `outgoing` (both open), with `config`, at `tip`.
    pub fn new(incoming: I, outgoing: O, config: ForwarderConfig, tip: ChainTip) -> Self {
        Forwarder {
            incoming,
            outgoing,
            config,
            routes: Vec::new(),
            tracked: Vec::new(),
            tip: tip.height,
            on_chain: [false; 2],
            onions: None,
            secrets: Vec::new(),
        }
    }

    /// Takes each incoming HTLC's forwarding instructions from its onion (BOLT 4) whenever it
    /// comes with one (Lightning incoming channels): `node` peels it, and the outgoing channel
    /// is the one the origin must name, `outgoing_short_channel_id`. The outgoing HTLC carries
    /// the peeled onion (dropped over Spilman and duplex, whose messages carry none); failures
    /// go back wrapped for the origin with the onion's shared secret, BOLT 4's codes for each
    /// refusal, and a downstream `update_fail_malformed_htlc` becomes an `update_fail_htlc`.
    /// HTLCs without an onion (Spilman, duplex incoming) still need [`Forwarder::add_route`].
    /// The HTLCs the incoming channel refuses by itself ([`HtlcChannel::defer_refusals`]: too
    /// little time left, dust exposure, fee-spike buffer) are failed back by the forwarder too,
    /// wrapped, so that the origin finds this hop
    /// ([`answer_refusal`](crate::network::receive::answer_refusal)).
    /// Call again after [`Forwarder::restore`]: the node key is never persisted.
    #[must_use]
    pub fn with_onions(mut self, node: Arc<dyn NodeSigner + Send + Sync>, outgoing_short_channel_id: u64) -> Self {
        self.onions = Some(OnionKey { node, short_channel_id: outgoing_short_channel_id });
        self.incoming.defer_refusals();
        self
    }

    /// Registers the forwarding instructions for `route.payment_hash` (see [`Route`]). A later
    /// route for the same hash replaces it. Persist [`Forwarder::snapshot`] afterwards.
    pub fn add_route(&mut self, route: Route) {
        self.routes.retain(|r| r.payment_hash != route.payment_hash);
        self.routes.push(route);
    }

    /// The forwarder's own state in the crate's versioned encoding (see [`Forwarder::restore`]).
    pub fn snapshot(&self) -> Vec<u8> {
        super::state::encode(self.tip, self.on_chain, &self.routes, &self.tracked, &self.secrets)
    }

    /// A forwarder from its [`Forwarder::snapshot`] and its two channels, restored from theirs.
    ///
    /// # Errors
    /// [`DecodeError`](crate::core::encode::DecodeError) if the bytes are not a forwarder state.
    pub fn restore(
        incoming: I,
        outgoing: O,
        config: ForwarderConfig,
        bytes: &[u8],
    ) -> Result<Self, crate::core::encode::DecodeError> {
        let s = super::state::decode(bytes)?;
        Ok(Forwarder {
            incoming,
            outgoing,
            config,
            routes: s.routes,
            tracked: s.tracked,
            tip: s.tip,
            on_chain: s.on_chain,
            onions: None,
            secrets: s.secrets,
        })
    }

    /// Sets [`NodeEffects::state`] if the forwarder's state differs from `before`.
    fn note_state(&self, before: &[u8], nfx: &mut NodeEffects<I, O>) {
        let now = self.snapshot();
        if now != before {
            nfx.state = Some(now);
        }
    }

    /// The incoming channel.
    pub fn incoming(&self) -> &I {
        &self.incoming
    }

    /// The outgoing channel.
    pub fn outgoing(&self) -> &O {
        &self.outgoing
    }

    /// The policy.
    pub fn config(&self) -> &ForwarderConfig {
        &self.config
    }

    /// Every incoming HTLC handled so far.
    pub fn tracked(&self) -> &[Tracked] {
        &self.tracked
    }

    /// The smallest expiry delta this node accepts between its two channels (docs/multihop.md §2), or
    /// the absolute floor on the incoming expiry for a Spilman outgoing channel.
    pub fn requirement(&self) -> super::Requirement {
        let m = self.config.margins;
        super::min_cltv_expiry_delta(self.incoming.hop_kind(m), self.outgoing.hop_kind(m), m)
    }

    /// A message from the upstream peer (on the incoming channel).
    ///
    /// # Errors
    /// The channel's refusal; nothing changed. Either signer not its channel's: the incoming
    /// layer's wrong-signer refusal (which blames nobody but the embedder).
    pub fn handle_incoming_message<SI: Signer + ?Sized, SO: Signer + ?Sized>(
        &mut self,
        msg: I::Msg,
        in_signer: &SI,
        out_signer: &SO,
        tip: ChainTip,
    ) -> Result<NodeEffects<I, O>, I::PeerError> {
        self.check_signers(in_signer, out_signer).map_err(|(_, e)| I::PeerError::from(e))?;
        let before = self.snapshot();
        let fx = self.incoming.handle_message(msg, in_signer, tip)?;
        self.tip = self.tip.max(tip.height);
        let mut nfx = NodeEffects::none();
        nfx.incoming = fx;
        self.react(&mut nfx, in_signer, out_signer);
        self.note_state(&before, &mut nfx);
        Ok(nfx)
    }

    /// A message from the downstream peer (on the outgoing channel).
    ///
    /// # Errors
    /// The channel's refusal; nothing changed. Either signer not its channel's: the outgoing
    /// layer's wrong-signer refusal (which blames nobody but the embedder).
    pub fn handle_outgoing_message<SI: Signer + ?Sized, SO: Signer + ?Sized>(
        &mut self,
        msg: O::Msg,
        in_signer: &SI,
        out_signer: &SO,
        tip: ChainTip,
    ) -> Result<NodeEffects<I, O>, O::PeerError> {
        self.check_signers(in_signer, out_signer).map_err(|(_, e)| O::PeerError::from(e))?;
        let before = self.snapshot();
        let fx = self.outgoing.handle_message(msg, out_signer, tip)?;
        self.tip = self.tip.max(tip.height);
        let mut nfx = NodeEffects::none();
        nfx.outgoing = fx;
        self.react(&mut nfx, in_signer, out_signer);
        self.note_state(&before, &mut nfx);
        Ok(nfx)
    }

    /// A chain event, for both channels; on a new tip, the HTLC deadlines are checked.
    ///
    /// If either signer is not its channel's, nothing changes and the only effect is
    /// [`ForwardEvent::WrongSigner`]: deliver the event again with the right signers.
    pub fn handle_chain<SI: Signer + ?Sized, SO: Signer + ?Sized>(
        &mut self,
        event: ChainEvent<'_>,
        in_signer: &SI,
        out_signer: &SO,
    ) -> NodeEffects<I, O> {
        if let Err((incoming, error)) = self.check_signers(in_signer, out_signer) {
            let mut nfx = NodeEffects::none();
            nfx.events.push(ForwardEvent::WrongSigner { incoming, error });
            return nfx;
        }
        let before = self.snapshot();
        let mut nfx = NodeEffects::none();
        nfx.incoming = self.incoming.handle_chain(event, in_signer);
        nfx.outgoing = self.outgoing.handle_chain(event, out_signer);
        match event {
            ChainEvent::Tip(t) => self.tip = self.tip.max(t.height),
            ChainEvent::Confirmed { height, .. } => self.tip = self.tip.max(height),
            ChainEvent::Unconfirmed(_) | ChainEvent::Seen { .. } => {}
        }
        self.react(&mut nfx, in_signer, out_signer);
        if let ChainEvent::Tip(_) = event {
            self.check_deadlines(&mut nfx, in_signer, out_signer);
            self.react(&mut nfx, in_signer, out_signer);
        }
        self.note_state(&before, &mut nfx);
        nfx
    }

    /// Both channels' signer checks, before anything changes: `(true, _)` if the incoming
    /// channel's signer is wrong, `(false, _)` if the outgoing one's.
    fn check_signers<SI: Signer + ?Sized, SO: Signer + ?Sized>(
        &self,
        in_signer: &SI,
        out_signer: &SO,
    ) -> Result<(), (bool, WrongSigner)> {
        self.incoming.check_signer(in_signer).map_err(|e| (true, e))?;
        self.outgoing.check_signer(out_signer).map_err(|e| (false, e))
    }

    /// Acts on every signal in `nfx`'s channel events, including those its own actions add.
    fn react<SI: Signer + ?Sized, SO: Signer + ?Sized>(
        &mut self,
        nfx: &mut NodeEffects<I, O>,
        in_signer: &SI,
        out_signer: &SO,
    ) {
        let (mut seen_in, mut seen_out) = (0, 0);
        loop {
            if let Some(e) = nfx.incoming.events.get(seen_in) {
                seen_in += 1;
                if let Some(HtlcSignal::Received { id, amount, payment_hash, expiry }) = I::signal(e) {
                    let terms = HtlcTerms { amount, expiry };
                    let onion = I::received_onion(e);
                    self.on_received(nfx, id, payment_hash, terms, onion, in_signer, out_signer);
                } else if let Some(r) = I::refused(e) {
                    self.on_refused(nfx, r, in_signer);
                }
                continue;
            }
            if let Some(e) = nfx.outgoing.events.get(seen_out) {
                seen_out += 1;
                match O::signal(e) {
                    Some(HtlcSignal::Fulfilled { id, preimage }) => self.on_fulfilled(nfx, id, preimage, in_signer),
                    Some(HtlcSignal::FailedIrrevocably { id }) => {
                        let failure = O::failure(e);
                        self.on_failed(nfx, id, failure, in_signer);
                    }
                    _ => {}
                }
                continue;
            }
            break;
        }
    }

    fn tip(&self) -> ChainTip {
        ChainTip { height: self.tip }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_received<SI: Signer + ?Sized, SO: Signer + ?Sized>(
        &mut self,
        nfx: &mut NodeEffects<I, O>,
        id: u64,
        payment_hash: PaymentHash,
        incoming: HtlcTerms,
        onion: Option<OnionPacket>,
        in_signer: &SI,
        out_signer: &SO,
    ) {
        if self.tracked.iter().any(|t| t.incoming_id == id) || !self.incoming.is_add_irrevocable(id) {
            return;
        }
        if let (Some(key), Some(onion)) = (self.onions.clone(), onion) {
            return self.on_received_onion(nfx, id, payment_hash, incoming, &onion, &key, in_signer, out_signer);
        }
        let route = self.routes.iter().position(|r| r.payment_hash == payment_hash);
        let outcome = match route.and_then(|i| self.routes.get(i).copied()) {
            None => Err(RefuseReason::NoRoute),
            Some(r) => self
                .check(incoming, r.outgoing)
                .map_err(RefuseReason::Check)
                .and_then(|()| {
                    self.outgoing
                        .offer_htlc(r.outgoing.amount, payment_hash, r.outgoing.expiry, out_signer, self.tip())
                        .map_err(RefuseReason::Channel)
                })
                .map(|(oid, fx)| (oid, fx, r.outgoing)),
        };
        match outcome {
            Ok((outgoing_id, fx, out)) => {
                self.routes.retain(|r| r.payment_hash != payment_hash);
                self.offered(nfx, id, payment_hash, incoming, out, outgoing_id, fx);
            }
            Err(reason) => {
                if let Ok(fx) = self.incoming.fail_htlc(id, in_signer) {
                    nfx.incoming.merge(fx);
                }
                self.refused(nfx, id, payment_hash, incoming, reason);
            }
        }
    }

    /// An incoming HTLC the channel refused by itself and left to us: failed back at once, wrapped
    /// for the origin when it came with an onion and we hold the node key.
    fn on_refused<SI: Signer + ?Sized>(&mut self, nfx: &mut NodeEffects<I, O>, r: RefusedHtlc, in_signer: &SI) {
        if self.tracked.iter().any(|t| t.incoming_id == r.id) {
            return;
        }
        let answer = match (&self.onions, &r.onion) {
            (Some(key), Some(onion)) => {
                let htlc =
                    ReceivedHtlc { onion, payment_hash: r.payment_hash, amount: r.amount, cltv_expiry: r.expiry.0 };
                answer_refusal(&htlc, r.reason, &*key.node, self.tip.0)
            }
            _ => plain_refusal(r.reason),
        };
        let incoming = HtlcTerms { amount: r.amount, expiry: r.expiry };
        let reason = RefuseReason::IncomingChannel(r.reason);
        self.refuse_with(nfx, r.id, r.payment_hash, incoming, answer, reason, in_signer);
    }

    /// The docs/multihop.md §2 checks of `outgoing` against `incoming` with this node's policy.
    fn check(&self, incoming: HtlcTerms, outgoing: HtlcTerms) -> Result<(), ForwardError> {
        let m = self.config.margins;
        check_forward(
            incoming,
            self.incoming.hop_kind(m),
            outgoing,
            self.outgoing.hop_kind(m),
            self.config.fee,
            self.config.cltv_expiry_delta,
            self.tip,
            m,
        )
    }

    /// An incoming HTLC whose instructions are in its onion: peel, check the origin's choices
    /// against this node's channel and policy, offer with the next onion, or fail back wrapped.
    #[allow(clippy::too_many_arguments)]
    fn on_received_onion<SI: Signer + ?Sized, SO: Signer + ?Sized>(
        &mut self,
        nfx: &mut NodeEffects<I, O>,
        id: u64,
        payment_hash: PaymentHash,
        incoming: HtlcTerms,
        onion: &OnionPacket,
        key: &OnionKey,
        in_signer: &SI,
        out_signer: &SO,
    ) {
        let htlc = ReceivedHtlc { onion, payment_hash, amount: incoming.amount, cltv_expiry: incoming.expiry.0 };
        let relay = match peel_relay(&htlc, &*key.node, self.tip.0) {
            Ok(r) => r,
            Err(answer) => {
                let code = answer.code();
                return self.refuse_with(nfx, id, payment_hash, incoming, answer, RefuseReason::Onion(code), in_signer);
            }
        };
        let ss = relay.shared_secret;
        let out = HtlcTerms {
            amount: MilliSats::from_msat(relay.amt_to_forward),
            expiry: BlockHeight(relay.outgoing_cltv_value),
        };
        let htlc_msat = incoming.amount.to_msat().to_be_bytes();
        let outcome = if relay.short_channel_id != key.short_channel_id {
            Err((
                Refusal { code: failure::UNKNOWN_NEXT_PEER, data: Vec::new() },
                RefuseReason::Onion(failure::UNKNOWN_NEXT_PEER),
            ))
        } else if self.tip.0.checked_add(MAX_OUTGOING_EXPIRY_DELTA).is_none_or(|far| relay.outgoing_cltv_value > far) {
            Err((
                Refusal { code: failure::EXPIRY_TOO_FAR, data: Vec::new() },
                RefuseReason::Onion(failure::EXPIRY_TOO_FAR),
            ))
        } else {
            self.check(incoming, out)
                .map_err(|e| {
                    let refusal = match e {
                        ForwardError::FeeInsufficient => Refusal::with_update(failure::FEE_INSUFFICIENT, &htlc_msat),
                        ForwardError::IncorrectCltvExpiry => {
                            Refusal::with_update(failure::INCORRECT_CLTV_EXPIRY, &incoming.expiry.0.to_be_bytes())
                        }
                        ForwardError::ExpiryTooSoon => Refusal::with_update(failure::EXPIRY_TOO_SOON, &[]),
                    };
                    (refusal, RefuseReason::Check(e))
                })
                .and_then(|()| {
                    self.outgoing
                        .offer_htlc_with_onion(out.amount, payment_hash, out.expiry, relay.next, out_signer, self.tip())
                        .map_err(|e| {
                            let refusal = match e {
                                HtlcError::Amount => Refusal::with_update(failure::AMOUNT_BELOW_MINIMUM, &htlc_msat),
                                _ => Refusal::with_update(failure::TEMPORARY_CHANNEL_FAILURE, &[]),
                            };
                            (refusal, RefuseReason::Channel(e))
                        })
                })
        };
        match outcome {
            Ok((outgoing_id, fx)) => {
                self.secrets.push((id, OnionSecret(ss)));
                self.offered(nfx, id, payment_hash, incoming, out, outgoing_id, fx);
            }
            Err((refusal, reason)) => {
                self.refuse_with(nfx, id, payment_hash, incoming, refuse(&ss, &refusal), reason, in_signer);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn offered(
        &mut self,
        nfx: &mut NodeEffects<I, O>,
        id: u64,
        payment_hash: PaymentHash,
        incoming: HtlcTerms,
        out: HtlcTerms,
        outgoing_id: u64,
        fx: Effects<O::Msg, O::Event>,
    ) {
        nfx.outgoing.merge(fx);
        self.tracked.push(Tracked {
            payment_hash,
            incoming_id: id,
            incoming,
            outgoing: Some(out),
            state: ForwardState::Offered { outgoing_id },
        });
        nfx.events.push(ForwardEvent::Forwarded { payment_hash, incoming_id: id, outgoing_id });
    }

    #[allow(clippy::too_many_arguments)]
    fn refuse_with<SI: Signer + ?Sized>(
        &mut self,
        nfx: &mut NodeEffects<I, O>,
        id: u64,
        payment_hash: PaymentHash,
        incoming: HtlcTerms,
        answer: FailBack,
        reason: RefuseReason,
        in_signer: &SI,
    ) {
        if let Ok(fx) = self.incoming.fail_htlc_with(id, answer, in_signer) {
            nfx.incoming.merge(fx);
        }
        self.refused(nfx, id, payment_hash, incoming, reason);
    }

    fn refused(
        &mut self,
        nfx: &mut NodeEffects<I, O>,
        id: u64,
        payment_hash: PaymentHash,
        incoming: HtlcTerms,
        reason: RefuseReason,
    ) {
        self.tracked.push(Tracked {
            payment_hash,
            incoming_id: id,
            incoming,
            outgoing: None,
            state: ForwardState::Failed,
        });
        nfx.events.push(ForwardEvent::Refused { payment_hash, incoming_id: id, reason });
    }

    fn find_offered(&self, outgoing_id: u64) -> Option<usize> {
        self.tracked.iter().position(|t| t.state == ForwardState::Offered { outgoing_id })
    }

    fn on_fulfilled<SI: Signer + ?Sized>(
        &mut self,
        nfx: &mut NodeEffects<I, O>,
        outgoing_id: u64,
        preimage: PaymentPreimage,
        in_signer: &SI,
    ) {
        let Some(i) = self.find_offered(outgoing_id) else { return };
        let Some(t) = self.tracked.get(i).copied() else { return };
        if !t.payment_hash.is_unlocked_by(&preimage) {
            return;
        }
        if let Ok(fx) = self.incoming.fulfill_htlc(t.incoming_id, preimage, in_signer, self.tip()) {
            nfx.incoming.merge(fx);
        }
        self.secrets.retain(|(id, _)| *id != t.incoming_id);
        if let Some(t) = self.tracked.get_mut(i) {
            t.state = ForwardState::Fulfilled { outgoing_id: Some(outgoing_id), preimage };
        }
        let fee = t.outgoing.map_or(MilliSats::ZERO, |o| t.incoming.amount.saturating_sub(o.amount));
        nfx.events.push(ForwardEvent::Settled { payment_hash: t.payment_hash, incoming_id: t.incoming_id, fee });
    }

    fn on_failed<SI: Signer + ?Sized>(
        &mut self,
        nfx: &mut NodeEffects<I, O>,
        outgoing_id: u64,
        failure: Option<HtlcFailure>,
        in_signer: &SI,
    ) {
        let Some(i) = self.find_offered(outgoing_id) else { return };
        let Some(t) = self.tracked.get(i).copied() else { return };
        let secret = self.secrets.iter().find(|(id, _)| *id == t.incoming_id).map(|(_, s)| s.0);
        let fx = match secret {
            // Forwarded from its onion: the origin reads what happened downstream.
            Some(ss) => {
                let answer = match failure {
                    Some(HtlcFailure::Reason(reason)) => relay_failure(&ss, reason),
                    Some(HtlcFailure::Malformed { sha256_of_onion, failure_code }) => {
                        relay_malformed(&ss, &sha256_of_onion, failure_code)
                    }
                    Some(HtlcFailure::OnChain) => {
                        refuse(&ss, &Refusal { code: failure::PERMANENT_CHANNEL_FAILURE, data: Vec::new() })
                    }
                    // Spilman and duplex say no more than that it failed.
                    None => refuse(&ss, &Refusal::with_update(failure::TEMPORARY_CHANNEL_FAILURE, &[])),
                };
                self.incoming.fail_htlc_with(t.incoming_id, answer, in_signer)
            }
            None => self.incoming.fail_htlc(t.incoming_id, in_signer),
        };
        if let Ok(fx) = fx {
            nfx.incoming.merge(fx);
        }
        self.secrets.retain(|(id, _)| *id != t.incoming_id);
        if let Some(t) = self.tracked.get_mut(i) {
            t.state = ForwardState::Failed;
        }
        nfx.events.push(ForwardEvent::FailedUpstream { payment_hash: t.payment_hash, incoming_id: t.incoming_id });
    }

    fn check_deadlines<SI: Signer + ?Sized, SO: Signer + ?Sized>(
        &mut self,
        nfx: &mut NodeEffects<I, O>,
        in_signer: &SI,
        out_signer: &SO,
    ) {
        let m = self.config.margins;
        let claim_window = e_in(self.incoming.hop_kind(m), m).saturating_add(m.reorg_depth);
        let claim_due = self.tracked.iter().any(|t| {
            matches!(t.state, ForwardState::Fulfilled { .. })
                && !self.incoming.is_incoming_settled(t.incoming_id)
                && self.tip.checked_add(claim_window).is_none_or(|h| h >= t.incoming.expiry)
        });
        if claim_due && !self.on_chain[0] {
            self.on_chain[0] = true;
            nfx.incoming.merge(self.incoming.go_on_chain(in_signer));
            nfx.events.push(ForwardEvent::WentOnChain { incoming: true });
        }
        let timeout_due = self.tracked.iter().any(|t| {
            matches!(t.state, ForwardState::Offered { .. })
                && t.outgoing.is_some_and(|o| o.expiry.checked_add(m.grace).is_none_or(|h| self.tip >= h))
        });
        if timeout_due && !self.on_chain[1] {
            self.on_chain[1] = true;
            nfx.outgoing.merge(self.outgoing.go_on_chain(out_signer));
            nfx.events.push(ForwardEvent::WentOnChain { incoming: false });
        }
    }
}
