//! Poon–Dryja Lightning channels (BOLT #2/#3): revocable commitments plus HTLCs, speaking BOLT #2
//! semantics in the BOLT #1/#2 wire format ([`Msg`]).
//!
//! # Driving
//! A [`Channel`] is a plain value, driven as described in [`crate::driving`]:
//!
//! * **commands**: [`Channel::open`] / [`Channel::accept`], [`Channel::fund`],
//!   [`Channel::add_htlc`], [`Channel::fulfill_htlc`], [`Channel::fail_htlc`],
//!   [`Channel::update_fee`], [`Channel::commit`] (send `commitment_signed` for everything
//!   pending), [`Channel::shutdown`];
//! * **peer input**: [`Channel::handle_message`]; [`Channel::handle_disconnect`] when the
//!   connection drops and [`Channel::reestablish`] when it is back;
//! * **chain input**: [`Channel::handle_chain`].
//!
//! Each returns [`Effects`](crate::driving::Effects): persist `update` (append `records`, then
//! replace the snapshot if it carries one), then send, then broadcast. Updates you make are sent
//! at once (and written only with the next signature: see *Persistence*) but only signed when
//! you call [`Channel::commit`] (so several can share one signature); the answers to the peer's
//! `commitment_signed` (our `revoke_and_ack`, and our own `commitment_signed` if the peer's
//! updates need one) are produced automatically.
//!
//! # Funding
//! The crate's one funding flow ([`crate::core::funding`]): once `accept_channel` arrives, the
//! opener's effects ask its wallet for the funding output
//! ([`Effects::funding`](crate::driving::Effects::funding), also reported as
//! [`Event::FundingGenerationReady`]); the wallet hands the **signed** transaction (segwit inputs
//! only) to [`Channel::fund`] and does not broadcast it: the channel does, once `funding_signed`
//! gives it the acceptor's signature on its first commitment. `funding_created` carries only the
//! outpoint.
//!
//! # Example: open, pay, persist, restart, close
//! Two channels in one process, the wire, the chain, the wallet and the disks played by local
//! variables. Every [`Effects`] is persisted (snapshot replaced, records appended) before its
//! messages leave; Bob restarts from his stored bytes alone.
//!
//! ```
//! use std::collections::VecDeque;
//!
//! use paychan::bitcoin::hashes::Hash;
//! use paychan::bitcoin::{absolute, transaction, Amount, OutPoint, ScriptBuf, Sequence};
//! use paychan::bitcoin::{Transaction, TxIn, Txid, WPubkeyHash, Witness};
//! use paychan::core::commitment::ChannelType;
//! use paychan::core::funding::FundingRequest;
//! use paychan::core::keys::Seed;
//! use paychan::core::sign::InMemorySigner;
//! use paychan::core::{BlockHeight, MilliSats, PaymentPreimage};
//! use paychan::driving::{ChainEvent, ChainTip, ChannelId, RestoreCheck};
//! use paychan::lightning::{Channel, ChannelConfig, Effects, Event, Msg, OnionPacket, OpenParams};
//!
//! type Error = Box<dyn std::error::Error>;
//!
//! /// One node: its channel, its signer, its disk, the events it was told of and what its
//! /// wallet was asked to fund.
//! struct Node {
//!     channel: Channel,
//!     signer: InMemorySigner,
//!     update_id: u64,
//!     snapshot: Vec<u8>,
//!     records: Vec<Vec<u8>>,
//!     events: Vec<Event>,
//!     funding: Option<FundingRequest>,
//! }
//!
//! impl Node {
//!     fn new(channel: Channel, signer: InMemorySigner) -> Self {
//!         let (snapshot, records, events) = (Vec::new(), Vec::new(), Vec::new());
//!         Node { channel, signer, update_id: 0, snapshot, records, events, funding: None }
//!     }
//!
//!     /// Persists `fx` (always first: append the records, which may end with a delta of the
//!     /// state, and replace the snapshot if the update carries one), keeps its events, returns
//!     /// the messages to send and the transactions to broadcast.
//!     fn apply(&mut self, fx: Effects) -> (Vec<Msg>, Vec<Transaction>) {
//!         if let Some(update) = fx.update {
//!             self.update_id = update.update_id;
//!             self.records.extend(update.records);
//!             if let Some(snapshot) = update.snapshot {
//!                 self.snapshot = snapshot;
//!             }
//!         }
//!         self.events.extend(fx.events);
//!         self.funding = fx.funding.or(self.funding.take());
//!         (fx.send, fx.broadcast)
//!     }
//! }
//!
//! /// Applies `fx` of node `from` and carries every message (encoded) and answer until both
//! /// nodes are quiet; returns what was to be broadcast.
//! fn deliver(n: &mut [Node; 2], from: usize, fx: Effects, tip: ChainTip) -> Result<Vec<Transaction>, Error> {
//!     let mut broadcast = Vec::new();
//!     let mut queue = VecDeque::from([(from, fx)]);
//!     while let Some((from, fx)) = queue.pop_front() {
//!         let (send, txs) = n[from].apply(fx);
//!         broadcast.extend(txs);
//!         let to = 1 - from;
//!         for msg in send {
//!             let msg = Msg::decode(&msg.encode())?;
//!             let answer = n[to].channel.handle_message(msg, &n[to].signer, tip)?;
//!             queue.push_back((to, answer));
//!         }
//!     }
//!     Ok(broadcast)
//! }
//!
//! # fn main() -> Result<(), Error> {
//! let mut tip = ChainTip::at(800_000);
//! let script = |n| ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]));
//! // Each node's signer for its channel number 0 (the key index its snapshots record).
//! let signer = |n| InMemorySigner::from_seed(&Seed::from_bytes([n; 32]), 0);
//! let config = ChannelConfig { minimum_depth: 1, ..ChannelConfig::default_for([6; 32], ChannelType::StaticRemoteKey) };
//!
//! // Open: Alice proposes (with a temporary id of her choosing), Bob accepts.
//! let params = OpenParams {
//!     config: config.clone(),
//!     temporary_channel_id: ChannelId([9; 32]),
//!     funding: Amount::from_sat(500_000),
//!     push: MilliSats::from_msat(100_000_000),
//!     feerate_per_kw: 1_000,
//! };
//! let (alice_signer, bob_signer) = (signer(0xa1), signer(0xb1));
//! let (alice, fx) = Channel::open(params, &alice_signer, tip)?;
//! let mut alice = Node::new(alice, alice_signer);
//! let (open, _) = alice.apply(fx);
//! let Msg::OpenChannel(open) = &open[0] else { return Err("no open_channel".into()) };
//! let (bob, fx) = Channel::accept(open, config, &bob_signer, tip)?;
//! let mut n = [alice, Node::new(bob, bob_signer)];
//! deliver(&mut n, 1, fx, tip)?;
//!
//! // `accept_channel` asked Alice's wallet for the funding output (the crate's one funding flow,
//! // `core::funding`): it builds a transaction paying it from segwit inputs (the coin it spends
//! // is made up) and signs it; the channel broadcasts it once Bob signed Alice's first
//! // commitment, not before.
//! let request = n[0].funding.take().ok_or("no funding request")?;
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
//! let fx = n[0].channel.fund(funding_tx.clone(), &n[0].signer)?;
//! let broadcast = deliver(&mut n, 0, fx, tip)?;
//! assert_eq!(broadcast, [funding_tx.clone()]);
//!
//! // The funding transaction confirms; both sides send `channel_ready`.
//! tip = ChainTip { height: BlockHeight(800_001) };
//! for i in 0..2 {
//!     let confirmed = ChainEvent::Confirmed { tx: &funding_tx, height: tip.height };
//!     let fx = n[i].channel.handle_chain(confirmed, &n[i].signer);
//!     deliver(&mut n, i, fx, tip)?;
//! }
//!
//! // Pay: Alice offers an HTLC and signs; Bob reveals the preimage and signs.
//! let preimage = PaymentPreimage([42; 32]);
//! let amount = MilliSats::from_msat(20_000_000);
//! let (id, mut fx) = n[0].channel.add_htlc(amount, preimage.hash(), 800_100, OnionPacket::zeroed())?;
//! fx.merge(n[0].channel.commit(&n[0].signer)?);
//! deliver(&mut n, 0, fx, tip)?;
//! let mut fx = n[1].channel.fulfill_htlc(id, preimage)?;
//! fx.merge(n[1].channel.commit(&n[1].signer)?);
//! deliver(&mut n, 1, fx, tip)?;
//! assert_eq!(n[1].channel.balances(paychan::lightning::Side::Holder).holder, MilliSats::from_msat(120_000_000));
//!
//! // Bob's process stops: the connection drops, and he restarts from his disk alone.
//! let fx = n[0].channel.handle_disconnect();
//! n[0].apply(fx);
//! let check = RestoreCheck { channel_id: Some(n[1].channel.channel_id()), min_update_id: n[1].update_id };
//! n[1].channel = Channel::restore_with_signer(&n[1].snapshot, &n[1].records, check, &n[1].signer)?;
//!
//! // On the new connection both send `channel_reestablish` first.
//! for i in 0..2 {
//!     let msg = n[i].channel.reestablish(&n[i].signer)?;
//!     let fx = n[1 - i].channel.handle_message(msg, &n[1 - i].signer, tip)?;
//!     deliver(&mut n, 1 - i, fx, tip)?;
//! }
//!
//! // Close cooperatively: Alice sends `shutdown`, Bob answers with his own (as
//! // `Event::ShutdownReceived` asks), and they agree on a fee that Alice, the funder, pays.
//! let fee_range = (Amount::from_sat(200), Amount::from_sat(5_000));
//! let fx = n[0].channel.shutdown(script(0xa1), fee_range, &n[0].signer)?;
//! deliver(&mut n, 0, fx, tip)?;
//! assert!(n[1].events.contains(&Event::ShutdownReceived));
//! let fx = n[1].channel.shutdown(script(0xb1), fee_range, &n[1].signer)?;
//! let broadcast = deliver(&mut n, 1, fx, tip)?;
//! let close = broadcast.first().ok_or("no closing transaction")?;
//! assert_eq!(close.input[0].previous_output, n[0].channel.funding_outpoint().ok_or("unfunded")?);
//! let paid = |n| close.output.iter().filter(|o| o.script_pubkey == script(n)).map(|o| o.value).sum::<Amount>();
//! assert_eq!(paid(0xb1), Amount::from_sat(120_000));
//! assert!(paid(0xa1) < Amount::from_sat(380_000)); // Alice's 380,000 sat minus the fee
//! # Ok(())
//! # }
//! ```
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
//! # Against a hostile peer: what the channel enforces, what you must do
//! The threat model is a peer that sends only well-formed, validly signed messages but picks
//! hostile values. The channel enforces by itself, with [`ChannelConfig`] as the policy:
//!
//! * **parameters at open**: a standard dust limit (354 to 546 sat), a bounded reserve
//!   ([`ChannelConfig::max_peer_reserve_ppm`]), delays, HTLC counts, the chain and channel type;
//!   an invalid funding output fails the channel before `channel_ready` ([`Event::InvalidFunding`]);
//! * **every update**, on both commitments: the receiver's count and in-flight limits, the
//!   offerer's reserve, the funder's ability to pay the commitment fee whoever offers (never an
//!   underpaid commitment), and our dust exposure ([`ChannelConfig::max_dust_exposure`]); an HTLC
//!   offered to us that breaks our own policy (dust exposure, the fee-spike buffer we keep as
//!   funder, too little time left) is failed back once committed ([`Event::HtlcRefused`]), never
//!   reported for forwarding;
//! * **fee rates**: the peer's `update_fee` within [`ChannelConfig::min_feerate`]..=
//!   [`ChannelConfig::max_feerate`] and, once you feed estimates, within a share and a multiple of
//!   your estimate; as funder the channel follows the estimate by itself;
//! * **payout scripts**: `shutdown` scripts must be standard ([`ChannelConfig::shutdown_policy`]);
//! * **deadlines** (below) and **signers**: a signer that is not the channel's is refused
//!   ([`CommandError::WrongSigner`]) before anything changes.
//!
//! A refused peer input leaves the state byte-identical and says what to do
//! ([`PeerError::action`](crate::driving::PeerError::action)): protocol slips that put no money
//! at risk get a BOLT #1 `warning` and a disconnection (a peer must not be able to make us pay for
//! a force close at will); only what endangers money (a bad revocation or commitment signature)
//! asks for a force close.
//!
//! What remains the embedder's job: feed every block ([`Channel::handle_chain`]) and call back by
//! [`Effects::next_deadline`](crate::driving::Effects::next_deadline) at the latest; feed fee
//! estimates ([`Channel::handle_fee_estimate`]) at start, after every restore and when they move;
//! persist before sending or broadcasting; broadcast (and fee-bump) what the channel asks, and
//! keep a watchtower or stay online within `to_self_delay` blocks to punish a revoked commitment.
//!
//! # Persistence
//! The contract is [`driving`'s](crate::driving#persistence). The channel writes only where the
//! protocol needs it: before it sends `commitment_signed` or `revoke_and_ack` (and the funding,
//! `shutdown` and closing messages), before a broadcast, and after it receives a
//! `commitment_signed`, a `revoke_and_ack` or a chain event that changes it. An update no
//! `commitment_signed` covers yet (`update_add_htlc`, `update_fulfill_htlc`, `update_fail_htlc`,
//! `update_fee`, ours or the peer's) is kept in memory and goes with the next write; a crash loses
//! it, and the reconnection (BOLT #2) or the embedder (a fulfilment again, a payment again or
//! failed upstream) makes up for it. A 1-HTLC payment is 10 writes for both sides
//! (`benches/persist.rs` prints the bytes).
//!
//! A write is a **delta** ([`crate::core::delta`]) against the state the storage holds, and a
//! full snapshot on the first write, every [`Channel::set_full_snapshot_interval`] deltas and on
//! [`Channel::compact`]. The snapshot holds the live state: parameters, keys, the peer's
//! revocation secrets in the constant-size shachain store, the HTLCs in flight (≈ 100 bytes each)
//! and our latest commitment's signatures. What is written once and never changes goes into
//! append-only [`records`] in [`StateUpdate::records`](crate::driving::StateUpdate::records): an
//! HTLC's 1,366-byte onion with the first write that includes the HTLC ([`OnionRecord`]), and what
//! penalties need about an HTLC once it is gone ([`PenaltyRecord`]). So the bytes persisted per
//! update grow neither with the channel's history nor with the HTLCs that did not change. Restore
//! with [`Channel::restore_with_records`] (it replays the deltas after the snapshot);
//! [`Channel::keeps_record`] tells which records a compaction of the log may drop.

mod channel;
mod close;
mod deadlines;
mod dot;
pub mod fees;
pub mod htlc;
mod limits;
pub mod msgs;
mod normal;
pub mod onchain;
mod open;
pub mod penalty;
pub mod records;
mod reestablish;
mod snapshot;
pub mod tower;

pub use channel::{Balances, Channel, Phase};
pub use htlc::{Resolution, Side};
pub use msgs::{Msg, OnionPacket};
pub use records::{OnionRecord, PenaltyRecord, Record};

use core::fmt;

use bitcoin::{Amount, ScriptBuf, Txid};

use crate::core::commitment::ChannelType;
use crate::core::hashlock::{PaymentHash, PaymentPreimage};
use crate::core::standard::PayoutPolicy;
use crate::core::units::MilliSats;
use crate::driving::{self, Action, ChannelId};

/// Effects of a Lightning call.
pub type Effects = driving::Effects<Msg, Event>;

/// A refused peer input.
pub type PeerError = driving::PeerError<Misbehaviour>;

/// This node's channel policy: what it announces and what it accepts.
///
/// Every bound here is a defence against a peer that sends only well-formed, validly signed
/// messages but picks hostile values; each field names the attack it stops. Start from
/// [`ChannelConfig::default_for`] and change what you need.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ChannelConfig {
    /// Genesis block hash of the chain (`chain_hash`).
    pub chain_hash: [u8; 32],
    /// Commitment format (the opener proposes it, the acceptor must support it).
    pub channel_type: ChannelType,
    /// Our dust limit (outputs of our commitments below it are trimmed).
    pub dust_limit: Amount,
    /// Most value the peer may have in HTLCs offered to us at once (channel jamming by value).
    pub max_htlc_value_in_flight: MilliSats,
    /// Reserve the peer must keep on its side: what it loses if it publishes a revoked
    /// commitment, so that cheating always costs something.
    pub channel_reserve: Amount,
    /// Smallest HTLC we accept.
    pub htlc_minimum: MilliSats,
    /// Delay we impose on the peer's own outputs: our time to punish a revoked commitment.
    pub to_self_delay: u16,
    /// Most HTLCs the peer may offer us at once, at most 483 (channel jamming by count).
    pub max_accepted_htlcs: u16,
    /// Confirmations of the funding transaction before the channel is used (a funding
    /// transaction reorganised away after the channel was used loses what was paid to us).
    pub minimum_depth: u32,
    /// Largest delay we accept on our own outputs: a peer asking more would lock our money for
    /// that long after every unilateral close.
    pub max_to_self_delay: u16,
    /// Most reserve the peer may ask us to keep, in millionths of the capacity (never less than
    /// [`RESERVE_FLOOR`]). A peer asking for the whole capacity as reserve would make our balance
    /// unspendable, and a reserve that large is what lets a hostile dust limit pass BOLT #2's
    /// `dust_limit <= reserve` rule. Default 10,000 (1 %, as BOLT #2 recommends).
    pub max_peer_reserve_ppm: u32,
    /// Lowest fee rate (sat per 1000 weight) we accept in the peer's `open_channel` or
    /// `update_fee`, whatever the estimate: a commitment below it may never confirm.
    pub min_feerate: u32,
    /// Highest fee rate we accept, whatever the estimate: a funder paying absurd fees burns
    /// the channel's value (ours too, since our HTLCs are trimmed into fees as the rate rises).
    pub max_feerate: u32,
    /// Once the embedder gave a fee estimate ([`Channel::handle_fee_estimate`]): lowest fee rate
    /// we accept from the peer, in percent of the estimate (a commitment that cannot confirm in
    /// time cannot protect our HTLCs or punish a revoked state). Default 50.
    pub min_feerate_percent_of_estimate: u32,
    /// Once the embedder gave a fee estimate: highest fee rate we accept from the peer, as a
    /// multiple of the estimate (a funder inflating the rate siphons our HTLCs into fees when
    /// they become dust). Default 10.
    pub max_feerate_multiple_of_estimate: u32,
    /// (Funder) how far the estimate must move from the commitment's fee rate, in percent of that
    /// rate, before the channel sends `update_fee` by itself. Default 20.
    pub fee_update_margin_percent: u32,
    /// Most value in HTLCs trimmed to dust (so paid to miners if the channel goes on chain) on
    /// either commitment, counting HTLCs in both directions (BOLT #2
    /// `max_dust_htlc_exposure_msat`). Stops dust floods and fee updates that trim our HTLCs.
    pub max_dust_exposure: DustExposure,
    /// BOLT #2 `option_shutdown_anysegwit`: `shutdown` scripts (ours and the peer's) may be any
    /// witness program of versions 1..=16 with 2..=40 bytes, P2TR included. The crate does not
    /// negotiate `init` features: set it to what the peer's `init` offered (LDK, CLN and LND all
    /// offer it). Without it only P2PKH, P2SH, P2WPKH and P2WSH are accepted.
    pub shutdown_anysegwit: bool,
    /// When the channel acts by itself on its HTLCs' expiries (kept apart from the policy above).
    pub htlc_deadlines: HtlcDeadlines,
}

/// The smallest reserve [`ChannelConfig::max_peer_reserve_ppm`] always allows (what LDK asks
/// of small channels).
pub const RESERVE_FLOOR: Amount = Amount::from_sat(1_000);

/// The limit on HTLC value trimmed to dust ([`ChannelConfig::max_dust_exposure`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DustExposure {
    /// A fixed limit.
    Fixed(MilliSats),
    /// This many msat per sat/kw of fee rate: the higher of the embedder's estimate and the
    /// channel's fee rate (as LDK's default: more HTLCs are dust when fees are high, so the limit
    /// follows the fee market).
    FeerateMultiplier(u64),
}

impl DustExposure {
    /// The limit at `feerate_per_kw`.
    pub fn limit_at(self, feerate_per_kw: u32) -> MilliSats {
        match self {
            DustExposure::Fixed(limit) => limit,
            DustExposure::FeerateMultiplier(m) => MilliSats::from_msat(m.saturating_mul(u64::from(feerate_per_kw))),
        }
    }
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
    /// ([`Event::HtlcRefused`] with [`HtlcRefusal::ExpiryTooSoon`]) instead of reported as received; our own
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
    /// A sensible policy for `chain_hash` and `channel_type`: 354-sat dust limit, a fixed 1,000-sat
    /// reserve asked of the peer (`channel_reserve`; not BOLT #2's suggested 1 % of the capacity),
    /// and at most 1 % of the capacity, or [`RESERVE_FLOOR`] if more, accepted from it, 144-block
    /// delays, 30 HTLCs, 3 confirmations, fee rates within 253..=100,000 sat/kw and within
    /// 50 %..10× of the estimate, dust exposure 10,000 msat per sat/kw, the default
    /// [`HtlcDeadlines`].
    ///
    /// ```
    /// use paychan::core::commitment::ChannelType;
    /// use paychan::lightning::{ChannelConfig, DustExposure};
    ///
    /// let config = ChannelConfig::default_for([0; 32], ChannelType::AnchorsZeroFeeHtlc);
    /// // The peer is asked to keep 1,000 sat; we keep at most 1 % of the capacity (or 1,000 sat).
    /// assert_eq!(config.channel_reserve.to_sat(), 1_000);
    /// assert_eq!(config.max_peer_reserve_ppm, 10_000);
    /// // At 2,500 sat/kw up to 25,000 sat may sit in dust HTLCs.
    /// assert_eq!(config.max_dust_exposure.limit_at(2_500).to_msat(), 25_000_000);
    /// assert_eq!(config.max_dust_exposure, DustExposure::FeerateMultiplier(10_000));
    /// ```
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
            max_peer_reserve_ppm: 10_000,
            min_feerate: 253,
            max_feerate: 100_000,
            min_feerate_percent_of_estimate: 50,
            max_feerate_multiple_of_estimate: 10,
            fee_update_margin_percent: 20,
            max_dust_exposure: DustExposure::FeerateMultiplier(10_000),
            shutdown_anysegwit: true,
            htlc_deadlines: HtlcDeadlines::default(),
        }
    }

    /// The payout scripts `shutdown` (and `upfront_shutdown_script`) may carry under this policy.
    pub fn shutdown_policy(&self) -> PayoutPolicy {
        PayoutPolicy { any_segwit: self.shutdown_anysegwit, op_return: false }
    }

    /// The most reserve we accept to keep in a channel of `capacity`.
    pub(crate) fn max_peer_reserve(&self, capacity: Amount) -> Amount {
        let share = u128::from(capacity.to_sat()) * u128::from(self.max_peer_reserve_ppm) / 1_000_000;
        Amount::from_sat(u64::try_from(share).unwrap_or(u64::MAX)).max(RESERVE_FLOOR)
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

/// How an HTLC we offered was failed ([`Event::HtlcFailed`]).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum HtlcFailure {
    /// The peer sent `update_fail_htlc` with this onion-encrypted reason: relay it upstream
    /// (obfuscated with the incoming HTLC's shared secret), or read it if we are the origin.
    Reason(alloc::vec::Vec<u8>),
    /// The peer sent `update_fail_malformed_htlc`: it could not parse the onion we sent.
    Malformed {
        /// SHA256 of the onion, as the peer received it.
        sha256_of_onion: [u8; 32],
        /// The BOLT #4 failure code (with the BADONION bit).
        failure_code: u16,
    },
    /// It was timed out on chain.
    OnChain,
}

/// Something the embedder may want to know.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Event {
    /// (Opener) the wallet must now create a transaction paying `value` to `script_pubkey` and
    /// hand it to [`Channel::fund`]: the same request as the
    /// [`Effects::funding`](crate::driving::Effects::funding) it comes with (the crate's one
    /// funding flow, [`crate::core::funding`]), kept as an event for existing callers.
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
    /// The peer revealed the preimage of an HTLC we offered (off chain, in a confirmed spend, or
    /// in an unconfirmed one reported with [`ChainEvent::Seen`](crate::driving::ChainEvent::Seen)):
    /// claim upstream now.
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
        /// How: the peer's reason (to relay upstream, BOLT #4) or a timeout on chain.
        failure: HtlcFailure,
    },
    /// An HTLC is completely gone from both commitments.
    HtlcResolved {
        /// Who offered it.
        offerer: Side,
        /// Its id.
        id: u64,
    },
    /// An HTLC offered to us is irrevocably committed but breaks our policy in a way the peer
    /// could not know when it offered it. It is never reported as [`Event::HtlcReceived`]: do not
    /// forward or settle it ([`Channel::fulfill_htlc`] refuses it). The channel fails it back by
    /// itself (the `update_fail_htlc` is in the same [`Effects`], with the plain failure message,
    /// which the origin cannot attribute), unless [`Channel::defer_refusals`] is on: then fail it
    /// with [`Channel::fail_htlc`] or [`Channel::fail_malformed_htlc`], the answer wrapped for
    /// the origin with the onion's shared secret
    /// ([`network::receive::answer_refusal`](crate::network::receive::answer_refusal)).
    HtlcRefused {
        /// Its id.
        id: u64,
        /// Payment hash.
        payment_hash: PaymentHash,
        /// Why.
        reason: HtlcRefusal,
        /// Amount.
        amount: MilliSats,
        /// Expiry height.
        cltv_expiry: u32,
        /// The onion it came with (to wrap the failure for the origin).
        onion: Option<OnionPacket>,
    },
    /// The peer sent `shutdown`: no new HTLCs will be accepted. Answer with
    /// [`Channel::shutdown`] (our payout script and fee range), as BOLT #2 requires: the closing
    /// fee negotiation starts only once both sides have sent `shutdown`. Not raised when our own
    /// `shutdown` went first.
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
    /// A chain event was refused because `handle_chain` was given a signer that is not the
    /// channel's: nothing changed (no update to persist). Deliver the same event again with the
    /// channel's signer.
    WrongSigner(crate::core::sign::WrongSigner),
}

/// Why the channel fails back an HTLC offered to it ([`Event::HtlcRefused`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum HtlcRefusal {
    /// Taking it would put more value in dust HTLCs than
    /// [`ChannelConfig::max_dust_exposure`] allows: on chain, that value goes to miners, so a
    /// peer flooding us with dust HTLCs could make us lose what we forwarded downstream.
    DustExposure,
    /// We fund the channel and, with it, could no longer pay the commitment fee at twice the fee
    /// rate (BOLT #2's fee-spike buffer): a fee rise would leave the channel stuck.
    FeeSpikeBuffer,
    /// It became irrevocably committed with too little time left to be settled safely
    /// (`cltv_expiry < tip + claim_margin`, [`HtlcDeadlines::claim_margin`]): the peer could time
    /// it out on chain before a fulfilment is signed.
    ExpiryTooSoon,
}

impl HtlcRefusal {
    /// The BOLT #4 failure code the channel fails the HTLC with.
    pub fn failure_code(self) -> u16 {
        match self {
            // temporary_channel_failure (UPDATE | 7)
            HtlcRefusal::DustExposure | HtlcRefusal::FeeSpikeBuffer => 0x1007,
            // expiry_too_soon (UPDATE | 14)
            HtlcRefusal::ExpiryTooSoon => 0x100e,
        }
    }

    /// The failure reason sent in `update_fail_htlc`: the BOLT #4 failure message (code and an
    /// empty `channel_update`), not yet wrapped in the onion's failure encryption.
    pub(crate) fn reason(self) -> alloc::vec::Vec<u8> {
        let code = self.failure_code().to_be_bytes();
        alloc::vec![code[0], code[1], 0, 0]
    }

    pub(crate) fn to_byte(self) -> u8 {
        match self {
            HtlcRefusal::DustExposure => 1,
            HtlcRefusal::FeeSpikeBuffer => 2,
            HtlcRefusal::ExpiryTooSoon => 3,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(HtlcRefusal::DustExposure),
            2 => Some(HtlcRefusal::FeeSpikeBuffer),
            3 => Some(HtlcRefusal::ExpiryTooSoon),
            _ => None,
        }
    }
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
    /// Too many HTLCs or too much in flight.
    HtlcLimits,
    /// A fee update that would put more value in dust HTLCs than our limit
    /// ([`ChannelConfig::max_dust_exposure`]).
    DustExposure,
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
    /// An add after the peer's `shutdown`, or a `shutdown` sent while the peer's own updates are
    /// not yet signed (BOLT #2 forbids it).
    Shutdown,
    /// A `shutdown` or `upfront_shutdown_script` that is not a standard payout script under
    /// [`ChannelConfig::shutdown_policy`]: a closing transaction paying it would not relay.
    NonStandardScript,
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
    /// Not the peer's fault: `handle_message` was given a signer that is not the channel's. The
    /// message was not processed ([`Action::Ignore`]: the peer is not blamed and the connection
    /// stays usable); feed it again with the channel's signer.
    WrongSigner(crate::core::sign::WrongSigner),
}

impl fmt::Display for Misbehaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Misbehaviour::BadSignature(e) => write!(f, "bad signature: {e}"),
            Misbehaviour::Signer(e) => write!(f, "signer: {e}"),
            Misbehaviour::Decode(e) => write!(f, "decode: {e}"),
            Misbehaviour::WrongSigner(e) => write!(f, "{e}"),
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
        // No money at risk: the update is refused and our commitment unchanged, so warn and
        // disconnect (BOLT #2 allows it) rather than pay for a force close the peer provoked.
        // A refused fee update keeps the old rate; a non-standard `shutdown` script gets a
        // warning (BOLT #2).
        UnexpectedMessage | WrongChannel | Decode(_) | AfterRefusal => Action::Warn,
        Feerate
        | NotFunder
        | HtlcId
        | HtlcBelowMinimum
        | HtlcLimits
        | DustExposure
        | CannotAfford
        | BadExpiry
        | UnknownHtlc
        | WrongPreimage
        | MalformedWithoutBadOnion
        | NoChanges
        | Shutdown
        | NonStandardScript
        | ClosingFee => Action::Warn,
        // Our own problem (or the embedder's): never the peer's fault.
        Signer(_) | WrongSigner(_) => Action::Ignore,
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
    /// The peer's HTLC count or in-flight limits would be exceeded.
    Limits,
    /// Our dust exposure limit ([`ChannelConfig::max_dust_exposure`]) would be exceeded.
    DustExposure,
    /// We could not afford it while keeping the reserve (and, as funder, the fee buffer).
    CannotAfford,
    /// The peer funds the channel and could not pay the commitment fee our HTLC adds while
    /// keeping its reserve (BOLT #2: the peer would have to fail the channel).
    PeerCannotPayFee,
    /// The expiry is not a block height.
    BadExpiry,
    /// Unknown HTLC id, not irrevocably committed yet, already being removed, or (to fulfil)
    /// refused by the channel ([`Event::HtlcRefused`]).
    UnknownHtlc,
    /// The preimage does not match.
    WrongPreimage,
    /// Only the funder may change the fee, within bounds it can afford.
    Fee,
    /// Nothing to sign.
    NothingToCommit,
    /// The funding transaction has no output paying the channel, or more than one
    /// ([`FundingError`](crate::core::funding::FundingError)).
    NoFundingOutput,
    /// The funding transaction has an input with a `scriptSig`: its txid, which our first
    /// commitment signatures commit to, is malleable.
    MalleableFunding,
    /// The signer could not sign.
    Signer(crate::core::sign::SignerError),
    /// A key derivation failed.
    Keys,
    /// Our state is stale ([`Channel::has_lost_state`]): our commitment must not be broadcast.
    StateLost,
    /// The `shutdown` script is not a standard payout script under
    /// [`ChannelConfig::shutdown_policy`]: no node would relay the closing transaction.
    NonStandardScript,
    /// The signer is not the channel's (its public keys are not the ones recorded at open).
    WrongSigner(crate::core::sign::WrongSigner),
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
