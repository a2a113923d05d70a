//! Decker–Wattenhofer duplex micropayment channels (docs/duplex.md): a bidirectional channel that
//! needs no revocation secrets, because every old state is invalidated by a newer one with a
//! shorter relative timelock.
//!
//! # The construction
//! The funding output (a 2-of-2) is spent by a kickoff transaction `K`, signed once at setup,
//! which starts an invalidation tree of depth `d`: nodes `N_1 … N_d`, each spending its parent's
//! output with a BIP-0068 relative lock `s_j = (k_j − 1 − v_j)·Δ` taken from a counter digit
//! `v_j` ([`tree`]). The deepest node, the *leaf*, funds two unidirectional Spilman channels, one
//! per direction (A→B paid by the initiator, B→A paid by the acceptor), each locked by the
//! `S_csv` script: payer and payee together, or the payer alone `T_r` blocks after the leaf
//! confirmed.
//!
//! * **Payments** are Spilman payments inside the leaf channel of their direction: one message,
//!   one signature, built, signed, checked and completed by
//!   [`spilman::payment::PaymentTemplate`](crate::spilman::payment::PaymentTemplate), the same
//!   code as the Spilman layer. They consume no tree state.
//! * **Resets** net both leaf channels into new balances and sign a new branch from the level the
//!   counter advanced at; the new node there has a lock `Δ` shorter than the one it replaces, so
//!   the old subtree can never confirm against a watching party ([`Channel::reset`]). The tree
//!   offers [`Params::resets`] of them; [`Event::ResetsRunningLow`] and [`Event::ResetsExhausted`]
//!   say when to close cooperatively (and re-open).
//! * **HTLCs** are conditional payments inside the leaf channels
//!   ([`core::script::hashlock_htlc`](crate::core::script::hashlock_htlc) outputs of the payment
//!   transactions). Fulfil: the receiver reveals the preimage, the offerer folds the HTLC into
//!   the receiver's amount with its next payment. Fail: the receiver gives the HTLC up, and the
//!   next reset drops it; the failure is irrevocable for the offerer once it holds the fully
//!   signed new branch ([`Event::HtlcFailIrrevocable`]). Pending HTLCs are carried into the new
//!   leaf by every reset. Expiries are checked against the channel's worst-case close delay
//!   (docs/duplex.md §3, [`Params::htlc_receive_blocks`]).
//! * **Close**: cooperatively with one transaction spending the funding output, or the output of
//!   the deepest confirmed tree node ([`Channel::close`]); unilaterally by publishing `K` and then
//!   each node of the current branch exactly when its lock matures ([`Channel::force_close`],
//!   [`Channel::close_schedule`]); then the payee of each leaf channel publishes its best
//!   payment, and the payer refunds after `T_r` if it does not.
//!
//! # Roles
//! Both parties run the same [`Channel`] type; the [`Role`] says which one opened it. The
//! initiator's wallet funds the channel and may push an initial balance to the acceptor.
//!
//! # Driving
//! As every layer of this crate ([`crate::driving`]): commands ([`Channel::pay`],
//! [`Channel::add_htlc`], [`Channel::fulfill_htlc`], [`Channel::fail_htlc`], [`Channel::reset`],
//! [`Channel::close`], [`Channel::force_close`]), the [`Channel::reestablish`] message of a new
//! connection, peer messages ([`Channel::handle_message`]) and
//! chain events ([`Channel::handle_chain`]) each return [`Effects`]: persist the update, then send,
//! then broadcast, watch, and call back by the deadline. A refused input returns a typed error and
//! leaves the channel byte-for-byte unchanged.
//!
//! ```text
//! initiator (A)                                acceptor (B)
//!   |------------------- Open ------------------->|  terms, keys, payout script
//!   |<------------------ Accept ------------------|  keys, payout script
//!   |   (wallet builds the unsigned funding tx)   |
//!   |-------------- FundingCreated -------------->|  outpoint, A's sigs N_d … N_1, K
//!   |<------------- FundingSigned ----------------|  B's sigs N_d … N_1, K
//!   |   (both hold the whole signed path: A's wallet now signs and broadcasts F)
//!   |------- Payment (A→B) -------> <--- Ack -----|  any number, either direction
//!   |------- ResetPropose --------->|             |  (1) digits, balances, A's sigs N_d' … N_{i+1}'
//!   |<------ ResetAccept -----------|             |  (2) B's sigs N_d' … N_{i+1}', N_i'
//!   |------- ResetFinish ---------->|             |  (3) A's sig N_i'
//!   |------- CloseProposal -------->|             |  cooperative close
//!   |<------ CloseSigned -----------|             |
//!   |<------ Reestablish ---------->|             |  first on every new connection, both ways
//! ```
//!
//! # Routing by channel id
//! A node with many channels to the same peer sends every message addressed
//! ([`Channel::address`]: a [`crate::core::wire::Addressed`] message, encoded with its channel
//! id) and routes what it receives by [`Addressed::channel_id`] alone, to
//! [`Channel::handle_addressed`]. [`Open`], [`Accept`] and [`FundingCreated`] go to the temporary
//! id ([`Channel::temporary_channel_id`], from the initiator's keys in its `Open`), the others to
//! the id of the funding outpoint ([`Channel::channel_id`]); a message addressed to another
//! channel is refused ([`Misbehaviour::WrongChannel`]) with the channel unchanged.
//!
//! [`Addressed::channel_id`]: crate::core::wire::Addressed::channel_id
//!
//! # Example: open, pay, persist, restart, close
//! Both parties in one process, the wire, the wallet and the disks played by local variables.
//! Every [`Effects`] is persisted before its messages leave; the acceptor restarts from its
//! stored bytes alone.
//!
//! ```
//! use paychan::bitcoin::hashes::Hash;
//! use paychan::bitcoin::{absolute, transaction, Amount, OutPoint, ScriptBuf, Sequence};
//! use paychan::bitcoin::{Transaction, TxIn, Txid, WPubkeyHash, Witness};
//! use paychan::core::funding::FundingRequest;
//! use paychan::core::keys::Seed;
//! use paychan::core::sign::InMemorySigner;
//! use paychan::core::units::BlockHeight;
//! use paychan::driving::{ChainEvent, ChainTip, RestoreCheck, StateUpdate};
//! use paychan::duplex::{Channel, Effects, Msg, Params, Role, Terms};
//!
//! type Error = Box<dyn std::error::Error>;
//!
//! /// One party: its channel, its signer, its disk (the newest snapshot and its update id) and
//! /// what its wallet was asked to fund.
//! struct Party {
//!     channel: Channel,
//!     signer: InMemorySigner,
//!     disk: (u64, Vec<u8>),
//!     funding: Option<FundingRequest>,
//! }
//!
//! impl Party {
//!     /// Persists `fx` (always first), keeps its funding request for the wallet, returns what
//!     /// it sends and what it must broadcast.
//!     fn apply(&mut self, fx: Effects) -> (Vec<Msg>, Vec<Transaction>) {
//!         // A duplex update always carries the full snapshot.
//!         if let Some(StateUpdate { update_id, snapshot: Some(snapshot), .. }) = fx.update {
//!             self.disk = (update_id, snapshot);
//!         }
//!         self.funding = fx.funding.or(self.funding.take());
//!         (fx.send, fx.broadcast)
//!     }
//! }
//!
//! /// Carries messages (encoded) back and forth until both sides are quiet; returns what was
//! /// to be broadcast.
//! fn deliver(p: &mut [Party; 2], mut to: Role, mut msgs: Vec<Msg>, tip: ChainTip) -> Result<Vec<Transaction>, Error> {
//!     let mut broadcast = Vec::new();
//!     while !msgs.is_empty() {
//!         let mut replies = Vec::new();
//!         for msg in msgs {
//!             let party = &mut p[to.index()];
//!             let fx = party.channel.handle_message(Msg::decode(&msg.encode())?, &party.signer, tip)?;
//!             let (send, txs) = party.apply(fx);
//!             replies.extend(send);
//!             broadcast.extend(txs);
//!         }
//!         msgs = replies;
//!         to = !to;
//!     }
//!     Ok(broadcast)
//! }
//!
//! # fn main() -> Result<(), Error> {
//! let tip = ChainTip::at(800_000);
//! let script = |n| ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]));
//! // Each party's signer for its channel number 0 (its key index, which the channel records).
//! let signer = |n| InMemorySigner::from_seed(&Seed::from_bytes([n; 32]), 0);
//! let terms = Terms {
//!     params: Params::uniform(3, 3, 144, 144)?, // depth 3, radix 3: 26 resets
//!     capacity: Amount::from_sat(1_000_000),
//!     push: Amount::from_sat(300_000), // the acceptor starts with this much
//!     payment_fee: Amount::from_sat(300),
//!     refund_fee: Amount::from_sat(300),
//!     claim_fee: Amount::from_sat(300),
//!     dust_limit: Amount::from_sat(546),
//!     confirm_blocks: 6,
//!     reorg_blocks: 6,
//!     htlc_grace_blocks: 6,
//!     max_htlc_expiry_delta: 2_016,
//!     reset_warning: 5,
//!     funding_depth: 7, // R + 1: payments count from 7 confirmations, are sent from 8
//! };
//!
//! // Open: the initiator proposes, the acceptor accepts.
//! let (alice_signer, bob_signer) = (signer(0xa1), signer(0xb1));
//! let (alice, fx) = Channel::open(terms, script(0xa1), &alice_signer, tip)?;
//! let mut alice = Party { channel: alice, signer: alice_signer, disk: (0, Vec::new()), funding: None };
//! let (open, _) = alice.apply(fx);
//! let Msg::Open(open) = open[0].clone() else { return Err("no open".into()) };
//! let (bob, fx) = Channel::accept(open, script(0xb1), &bob_signer, tip)?;
//! let mut bob = Party { channel: bob, signer: bob_signer, disk: (0, Vec::new()), funding: None };
//! let (accept, _) = bob.apply(fx);
//! let mut p = [alice, bob];
//! deliver(&mut p, Role::Initiator, accept, tip)?;
//!
//! // The `Accept` asked the initiator's wallet for the funding output (the crate's one funding
//! // flow, `core::funding`): it builds a transaction paying it from segwit inputs (the coin here
//! // is made up), signs it and hands it over. The channel broadcasts it itself once both sides
//! // hold the signed tree, not before.
//! let request = p[0].funding.take().ok_or("no funding request")?;
//! let funding_tx = Transaction {
//!     version: transaction::Version::TWO,
//!     lock_time: absolute::LockTime::ZERO,
//!     input: vec![TxIn {
//!         previous_output: OutPoint { txid: Txid::from_byte_array([9; 32]), vout: 0 },
//!         script_sig: ScriptBuf::new(),
//!         sequence: Sequence::MAX,
//!         witness: Witness::new(), // the wallet's signature goes here
//!     }],
//!     output: vec![request.output],
//! };
//! let fx = p[0].channel.fund(funding_tx.clone(), &p[0].signer)?;
//! let (created, broadcast) = p[0].apply(fx);
//! assert!(broadcast.is_empty());
//! let broadcast = deliver(&mut p, Role::Acceptor, created, tip)?;
//! assert_eq!(broadcast, [funding_tx.clone()]);
//!
//! // The funding confirms in the next block. Payments count once it is `funding_depth` (7)
//! // deep and are sent a block later, so that a peer one block behind counts them too.
//! for party in p.iter_mut() {
//!     let event = ChainEvent::Confirmed { tx: &funding_tx, height: BlockHeight(800_001) };
//!     let fx = party.channel.handle_chain(event, &party.signer);
//!     party.apply(fx);
//! }
//! assert!(p[0].channel.pay(Amount::from_sat(20_000), &p[0].signer).is_err(), "too early");
//! let tip = ChainTip::at(800_008); // 8 confirmations
//! assert_eq!(p[0].channel.sends_from(), Some(tip.height));
//! for party in p.iter_mut() {
//!     let fx = party.channel.handle_chain(ChainEvent::Tip(tip), &party.signer);
//!     party.apply(fx);
//! }
//!
//! // Pay, both ways.
//! let fx = p[0].channel.pay(Amount::from_sat(20_000), &p[0].signer)?;
//! let (send, _) = p[0].apply(fx);
//! deliver(&mut p, Role::Acceptor, send, tip)?;
//! let fx = p[1].channel.pay(Amount::from_sat(5_000), &p[1].signer)?;
//! let (send, _) = p[1].apply(fx);
//! deliver(&mut p, Role::Initiator, send, tip)?;
//! assert_eq!(p[1].channel.balances().holder, Amount::from_sat(315_000));
//!
//! // The acceptor's process stops; it restarts from its disk alone.
//! // Its snapshot names its keys: recreate the signer from the key index it records, and
//! // restore with it (another signer is refused).
//! let check = RestoreCheck { channel_id: p[1].channel.channel_id(), min_update_id: p[1].disk.0 };
//! let keys = Channel::restore(&p[1].disk.1, check)?.key_identity().ok_or("no key identity")?;
//! p[1].signer = InMemorySigner::from_seed(&Seed::from_bytes([0xb1; 32]), keys.index.ok_or("no index")?);
//! p[1].channel = Channel::restore_with_signer(&p[1].disk.1, check, &p[1].signer)?;
//! assert_eq!(p[1].channel.balances().holder, Amount::from_sat(315_000));
//!
//! // On the new connection both send `reestablish()` first.
//! let (from_alice, from_bob) = (p[0].channel.reestablish(), p[1].channel.reestablish());
//! deliver(&mut p, Role::Acceptor, vec![from_alice], tip)?;
//! deliver(&mut p, Role::Initiator, vec![from_bob], tip)?;
//!
//! // Close cooperatively: one zero-fee transaction spending the funding output, with a
//! // pay-to-anchor output through which its broadcaster pays the fee (CPFP).
//! let fx = p[0].channel.close(&p[0].signer)?;
//! let (send, _) = p[0].apply(fx);
//! let broadcast = deliver(&mut p, Role::Acceptor, send, tip)?;
//! let close = broadcast.first().ok_or("no close")?;
//! assert_eq!(close.input[0].previous_output, p[0].channel.funding_outpoint().ok_or("unfunded")?);
//! let paid = |n| close.output.iter().filter(|o| o.script_pubkey == script(n)).map(|o| o.value).sum::<Amount>();
//! assert_eq!(paid(0xa1), Amount::from_sat(685_000));
//! assert_eq!(paid(0xb1), Amount::from_sat(315_000));
//! # Ok(())
//! # }
//! ```
//!
//! # Storage
//! A snapshot holds the keys, the terms, the current counter digits, the counterparty's
//! signatures on `K` and on the current branch, the leaf balances, the newest payment of each
//! direction, the HTLCs, and an in-progress reset: O(d + #HTLC) bytes, however many resets
//! happened (docs/duplex.md §8). No revocation data exists.
//!
//! # Departures from the paper (docs/duplex.md §10)
//! * Tree transactions (and the cooperative close) follow sidepool's option (docs/duplex.md): version 3
//!   (TRUC), zero fee, one zero-value pay-to-anchor output each ([`tree`]); the publisher pays
//!   the fee by a CPFP child when it publishes, so the leaf carries the whole capacity and a
//!   node's confirmation within `Δ` does not depend on a fee guessed at signing. The channel
//!   asks the embedder to broadcast the parent; building and re-bumping the child is the
//!   embedder's (or a fee-bumping engine's) job. [`Terms::validate`] requires `Δ > S + R`.
//! * When a reset carries HTLCs in a direction, the new leaf's first payment in that direction
//!   keeps `payment_fee + dust_limit` with the payee (the smallest payable amount of the Spilman
//!   template, whose payee output is mandatory); the payee's own channel shrinks by the same
//!   amount, so balances are unchanged. For the same reason the first payment of a fresh leaf
//!   channel must be at least that amount.
//! * A failed HTLC stays in its leaf channel until the next reset drops it (the offerer does not
//!   sign a payment removing it: such a removal would not be irrevocable anyway).
//!
//! # Reconnection
//! Both parties send [`Channel::reestablish`]'s [`Reestablish`] first on every new connection (after
//! a restart too) and feed the other's to [`Channel::handle_message`]. Each then sends again what
//! the other missed: the newest payment of its leaf channel (the payee keeps the best), the
//! fulfilments and failures the offerer does not list as received, and the step of a reset in
//! progress that was lost (the same bytes: signing is deterministic). A party that holds a payment
//! as acknowledged by the other's numbers counts it as acknowledged. A party whose counterparty
//! shows a newer committed counter (other than the reset it is finishing), or a payment of its
//! own it does not remember signing, lost state: [`Event::LostState`], and it signs nothing new
//! after that ([`CommandError::LostState`]); the counterparty gets
//! [`Event::CounterpartyLostState`] and should close. A payee that lost received payments only is
//! made whole by the payer sending its newest payment again. A payment sent again whose HTLCs
//! the payee would now refuse (their expiry left its window while it was offline) is replaced:
//! the payer withdraws those HTLCs ([`Event::HtlcFailed`], final with
//! [`Event::HtlcFailIrrevocable`] once a reset supersedes the leaf, since the payee may hold the
//! payment after all; [`Channel::withdrawn_htlcs`]) and sends its newest state without them. A
//! later [`Reestablish`] showing the payee holding withdrawn HTLCs after all puts them back.
//!
//! # Limitations
//! * A responder that sent step (2) keeps the branch it signed, and everything it needs to follow
//!   it on chain (the proposer's signatures below the changed node and on its first leaf
//!   payment, the HTLC states and preimages), until that reset completes: it refuses every other
//!   proposal meanwhile ([`Misbehaviour::NotQuiescent`], nothing changed), because the proposer
//!   may hold the branch fully signed and publish it later (with its shorter lock it wins), and
//!   a responder that forgot it would lose its payment and the HTLCs there, even those whose
//!   preimage it revealed. A proposer that [`Channel::cancel_reset`]s (or loses) a proposal the
//!   responder had already answered takes it up again on the next connection: the responder's
//!   [`Reestablish`] carries its terms ([`AcceptedTerms`]) and step (2) is sent again. A
//!   proposer that proposed anew in between (a counter value above the answered one) cannot go
//!   back to it: that channel can only be closed ([`Channel::force_close`]; the responder
//!   follows whichever branch confirms).
//! * A cooperative close that the counterparty never signs leaves the channel closing: publish the
//!   tree with [`Channel::force_close`]. A payment or reset proposal of the counterparty that
//!   crossed it withdraws it ([`Event::CloseWithdrawn`]); the counterparty may still hold it, so
//!   from a party's first close proposal on, HTLCs offered to it are failed at once.
//! * A party that lost state does not follow a newer branch it never saw. When its counterparty's
//!   unilateral close puts that branch on chain, the party's own leaf channel there (its netted
//!   balance) must be refunded by hand after `T_r` (its script is the `S_csv` of the two funding
//!   keys), and the payments it received in the other leaf channel after its data ends are lost
//!   unless the embedder kept them elsewhere.

mod channel;
mod close;
pub mod dot;
mod fees;
mod leaf;
mod msgs;
pub mod params;
mod reestablish;
mod reset;
mod snapshot;
pub mod tower;
pub mod tree;

pub use channel::{Balances, Channel, Phase};
pub use close::ScheduledTx;
pub use msgs::{
    Accept, AcceptedTerms, CloseProposal, CloseSigned, FundingCreated, FundingSigned, HtlcRemoval, Msg, Open,
    PendingReset, Reestablish, Removal, ResetAccept, ResetFinish, ResetPropose,
};
pub use params::{Params, ParamsError, Terms, TermsError};

use core::fmt;
use core::ops::Not;

use bitcoin::{Amount, Txid};

use crate::core::hashlock::{PaymentHash, PaymentPreimage};
use crate::core::units::BlockHeight;
use crate::driving;
use crate::spilman::payment::{PaymentError, PaymentHtlc, UpdateError};

/// Effects of a duplex call.
pub type Effects = driving::Effects<Msg, Event>;

/// A refused peer input.
pub type PeerError = driving::PeerError<Misbehaviour>;

/// Which side of the channel a party is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Role {
    /// Opened the channel and funded it ("A"); payer of the A→B leaf channel.
    Initiator,
    /// Accepted it ("B"); payer of the B→A leaf channel.
    Acceptor,
}

impl Role {
    /// 0 for the initiator, 1 for the acceptor (the order of per-role pairs in this module).
    pub fn index(self) -> usize {
        match self {
            Role::Initiator => 0,
            Role::Acceptor => 1,
        }
    }

    pub(crate) fn from_index(i: u8) -> Option<Role> {
        match i {
            0 => Some(Role::Initiator),
            1 => Some(Role::Acceptor),
            _ => None,
        }
    }

    /// "A" or "B".
    pub fn letter(self) -> &'static str {
        match self {
            Role::Initiator => "A",
            Role::Acceptor => "B",
        }
    }
}

impl Not for Role {
    type Output = Role;
    fn not(self) -> Role {
        match self {
            Role::Initiator => Role::Acceptor,
            Role::Acceptor => Role::Initiator,
        }
    }
}

/// How a channel ended on chain.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum CloseKind {
    /// A cooperative close transaction confirmed.
    Cooperative,
    /// The tree was published and both leaf channels are settled.
    Unilateral,
}

/// Something the embedder may want to know.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Event {
    /// (Initiator) both parties hold the fully signed kickoff and branch: the funding
    /// transaction given to [`Channel::fund`] is in these effects'
    /// [`broadcast`](crate::driving::Effects::broadcast). (A wallet that handed it over unsigned,
    /// as this layer once asked, signs and broadcasts it now, not before.)
    FundingSignable {
        /// The funding txid.
        txid: Txid,
    },
    /// Both parties hold the signed path. Payments wait for the funding depth
    /// ([`Terms::funding_depth`]): the holder may pay from [`Channel::sends_from`].
    ChannelReady,
    /// The funding transaction confirmed.
    FundingConfirmed {
        /// Its height.
        height: BlockHeight,
    },
    /// The transaction with the agreed funding txid confirmed, but its output at the agreed
    /// index is missing or does not pay exactly the 2-of-2 P2WSH script and the capacity
    /// (CVE-2019-12999/13000 class). Every tree signature commits to that script and value, so
    /// the signed branch spends nothing that exists: the channel is failed ([`Phase::Closed`]),
    /// takes no payment, HTLC or reset and broadcasts nothing. What the counterparty paid in it
    /// was never real.
    InvalidFunding {
        /// The funding transaction.
        txid: Txid,
    },
    /// The counterparty paid: a payment in its leaf channel was checked and stored.
    PaymentReceived {
        /// The payment number.
        number: u64,
        /// What the counterparty has paid in the current leaf so far.
        to_holder: Amount,
    },
    /// The counterparty acknowledged one of our payments.
    PaymentAcknowledged {
        /// The payment number.
        number: u64,
    },
    /// (Receiver) the counterparty offered an HTLC; it is enforceable now.
    HtlcOffered(PaymentHtlc),
    /// (Offerer) the preimage of one of our HTLCs became known (off chain or from a witness, of
    /// a confirmed spend or of an unconfirmed one reported with
    /// [`ChainEvent::Seen`](crate::driving::ChainEvent::Seen)): claim upstream now.
    HtlcFulfilled {
        /// HTLC id.
        id: u64,
        /// Its hash.
        payment_hash: PaymentHash,
        /// Its preimage.
        preimage: PaymentPreimage,
    },
    /// (Offerer) the receiver gave one of our HTLCs up; it is dropped by the next reset and only
    /// final then.
    HtlcFailed {
        /// HTLC id.
        id: u64,
    },
    /// (Offerer) one of our HTLCs can no longer be claimed by the receiver: a reset dropped it and
    /// we hold the fully signed new branch, or it timed out on chain. Fail upstream now.
    HtlcFailIrrevocable {
        /// HTLC id.
        id: u64,
    },
    /// (Receiver) an HTLC offered to us left the channel without our preimage (dropped by a reset
    /// after we failed it or it expired).
    HtlcRemoved {
        /// HTLC id.
        id: u64,
    },
    /// A reset completed: a new branch is fully signed.
    ResetCompleted {
        /// The level (1-based) the counter advanced at.
        level: usize,
        /// Resets left.
        resets_left: u64,
    },
    /// Our cooperative close proposal ([`Channel::close`]), not signed by the counterparty yet,
    /// was withdrawn because a payment or a reset proposal of the counterparty crossed it (the
    /// counterparty refuses a close while its own update is unacknowledged). The channel is open
    /// again: call [`Channel::close`] again once it is quiescent. The counterparty may still hold
    /// our signature on the withdrawn close and publish it (it pays us what we held when we
    /// signed, [`Channel::released_close_floor`]: the payment is not final before the channel
    /// closes), so from now on HTLCs offered to us in this channel are failed at once (a close
    /// we signed does not pay them).
    CloseWithdrawn,
    /// A reset we proposed was abandoned (cancelled, or superseded by a payment or a proposal of
    /// the counterparty). Its counter value stays used.
    ResetAbandoned,
    /// Few resets are left ([`Terms::reset_warning`]): plan a cooperative close and re-open.
    ResetsRunningLow {
        /// Resets left.
        left: u64,
    },
    /// No reset is left: payments continue until a direction runs dry; then close cooperatively.
    ResetsExhausted,
    /// We start a unilateral close (asked, or forced by an HTLC deadline).
    ForceClosing {
        /// Why.
        reason: ForceCloseReason,
    },
    /// A tree transaction of the current branch was broadcast (level 0 = kickoff).
    TreeTxBroadcast {
        /// Its level.
        level: usize,
        /// Its txid.
        txid: Txid,
    },
    /// A tree transaction that is not of the current branch confirmed at `level`: a stale branch
    /// won a race (we were offline for longer than `Δ`). Nothing below it can be enforced.
    StaleBranchConfirmed {
        /// Its level.
        level: usize,
        /// Its txid.
        txid: Txid,
    },
    /// A leaf channel transaction (payment or refund) was broadcast.
    LeafTxBroadcast {
        /// Its txid.
        txid: Txid,
    },
    /// An on-chain HTLC claim was broadcast.
    HtlcClaimBroadcast {
        /// HTLC id.
        id: u64,
        /// The claim's txid.
        txid: Txid,
    },
    /// The cooperative close transaction was signed by both and broadcast.
    CloseBroadcast {
        /// Its txid.
        txid: Txid,
    },
    /// The channel is closed on chain (HTLC outputs may still be pending).
    Closed {
        /// How.
        kind: CloseKind,
    },
    /// The counterparty's [`Reestablish`] shows that our data is older than what we signed (a
    /// restored backup, lost writes). The channel signs nothing new from now on
    /// ([`CommandError::LostState`]); ask the counterparty to close, and keep feeding chain
    /// events.
    LostState,
    /// The counterparty's [`Reestablish`] shows that it lost data: it will sign nothing new.
    /// Close the channel ([`Channel::force_close`]; a cooperative close needs its signature).
    CounterpartyLostState,
    /// A chain event or [`Channel::force_close`] was refused because it was given a signer that
    /// is not the channel's: nothing changed (no update to persist). Call again with the
    /// channel's signer.
    WrongSigner(crate::core::sign::WrongSigner),
}

/// Why a channel closes unilaterally.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ForceCloseReason {
    /// The embedder asked ([`Channel::force_close`]).
    Requested,
    /// The counterparty published the kickoff.
    CounterpartyKickoff,
    /// We know the preimage of an HTLC offered to us that was not folded, and it would otherwise
    /// expire before the tree can be published (`expiry − E_in`).
    HtlcPreimageDeadline,
    /// An HTLC we offered expired unresolved (`expiry + G`).
    HtlcExpired,
}

/// What was wrong with a peer message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Misbehaviour {
    /// The message is not expected in the channel's current phase (or out of order).
    UnexpectedMessage,
    /// The proposed terms are invalid.
    BadTerms(TermsError),
    /// The funding output is not the expected script and value.
    WrongFunding,
    /// A signature on a tree transaction does not verify (level 0 = kickoff).
    NodeSignature {
        /// The level of the node.
        level: usize,
    },
    /// The number of tree signatures in the message is wrong.
    SignatureCount,
    /// A payment update was refused (Spilman checks, shared with the Spilman payee).
    Payment(UpdateError),
    /// The signature on a new leaf's first payment does not verify.
    BasePaymentSignature,
    /// A payment or reset came while the channel is not quiescent (a reset in progress, among
    /// them one whose step (2) we sent, or the proposal nets payment numbers other than ours).
    NotQuiescent,
    /// A reset proposes a counter value at or below one already used: its locks would repeat.
    LockReused,
    /// A reset's counter value does not fit the tree.
    BadDigits,
    /// A reset's balances are not the netting of the current leaf.
    WrongBalances,
    /// A reset folds or drops an HTLC it may not (dropping an HTLC offered to us that we did
    /// not fail and that has not expired, or folding ours without a preimage).
    HtlcRemovedUnfairly,
    /// Unknown HTLC id.
    UnknownHtlc,
    /// The preimage does not match the HTLC's hash.
    WrongPreimage,
    /// A cooperative close proposal spends an output that is not the funding output or a node of
    /// the current branch, or its signature is wrong.
    BadClose,
    /// A cooperative close while HTLCs are pending or a reset is in progress.
    CloseNotAllowed,
    /// The signer could not sign.
    Signer(crate::core::sign::SignerError),
    /// A [`Reestablish`] claims a newer state of ours than we hold without our signature on it.
    UnprovenReestablish,
    /// The peer's payout script (in [`Open`] or [`Accept`]) is not a standard payout script
    /// ([`PAYOUT_POLICY`](crate::spilman::payment::PAYOUT_POLICY)): no node would relay a leaf
    /// or a cooperative close paying it, and our own payout would be stuck with it.
    NonStandardScript,
    /// (Not the peer's doing) the payout script given to [`Channel::accept`] is not a standard
    /// payout script; nothing was sent.
    OwnNonStandardScript,
    /// The message is addressed to another channel ([`Channel::handle_addressed`]): neither
    /// this channel's temporary id nor its funded id. Nothing was looked at.
    WrongChannel,
    /// Not the peer's fault: `handle_message` was given a signer that is not the channel's. The
    /// message was not processed ([`driving::Action::Ignore`]: do not blame the peer); feed it
    /// again with the channel's signer.
    WrongSigner(crate::core::sign::WrongSigner),
    /// A payment (or HTLC) came before the funding transaction has [`Terms::funding_depth`]
    /// confirmations on our view of the chain (given to the call): it does not count yet.
    /// An honest peer waits for one block more, so this is a hostile funder paying with coins
    /// it may still double-spend, or a peer whose tip is more than a block ahead of ours
    /// ([`driving::Action::Ignore`]: its payment comes again on the next connection, or is
    /// superseded by its next one).
    FundingNotDeep {
        /// Confirmations of the funding on our view (0: unconfirmed).
        confirmations: u32,
    },
}

impl fmt::Display for Misbehaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Misbehaviour::UnexpectedMessage => f.write_str("message not expected now"),
            Misbehaviour::BadTerms(e) => write!(f, "bad terms: {e}"),
            Misbehaviour::WrongFunding => f.write_str("wrong funding output or keys"),
            Misbehaviour::NodeSignature { level } => {
                write!(f, "bad signature on the tree transaction at level {level}")
            }
            Misbehaviour::SignatureCount => f.write_str("wrong number of tree signatures"),
            Misbehaviour::Payment(e) => write!(f, "payment: {e}"),
            Misbehaviour::BasePaymentSignature => f.write_str("bad signature on the new leaf's first payment"),
            Misbehaviour::NotQuiescent => f.write_str("channel not quiescent"),
            Misbehaviour::LockReused => f.write_str("reset reuses a counter value"),
            Misbehaviour::BadDigits => f.write_str("counter value does not fit the tree"),
            Misbehaviour::WrongBalances => f.write_str("reset balances are not the netting of the leaf"),
            Misbehaviour::HtlcRemovedUnfairly => f.write_str("HTLC removed unfairly"),
            Misbehaviour::UnknownHtlc => f.write_str("unknown HTLC"),
            Misbehaviour::WrongPreimage => f.write_str("preimage does not match"),
            Misbehaviour::BadClose => f.write_str("bad cooperative close"),
            Misbehaviour::CloseNotAllowed => f.write_str("cooperative close not allowed now"),
            Misbehaviour::Signer(e) => write!(f, "signer: {e}"),
            Misbehaviour::UnprovenReestablish => {
                f.write_str("reestablish claims a state of ours without our signature")
            }
            Misbehaviour::NonStandardScript => f.write_str("the peer's payout script is not standard"),
            Misbehaviour::OwnNonStandardScript => f.write_str("our payout script is not standard"),
            Misbehaviour::WrongChannel => f.write_str("message addressed to another channel"),
            Misbehaviour::WrongSigner(e) => write!(f, "{e}"),
            Misbehaviour::FundingNotDeep { confirmations } => {
                write!(f, "payment before the funding depth ({confirmations} confirmations)")
            }
        }
    }
}

pub(crate) fn peer_error(kind: Misbehaviour) -> PeerError {
    let action = match kind {
        Misbehaviour::UnexpectedMessage
        | Misbehaviour::NotQuiescent
        | Misbehaviour::Signer(_)
        | Misbehaviour::OwnNonStandardScript
        | Misbehaviour::WrongSigner(_)
        | Misbehaviour::FundingNotDeep { .. } => driving::Action::Ignore,
        Misbehaviour::Payment(UpdateError::Replay) => driving::Action::Ignore,
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
    /// The terms are invalid.
    BadTerms(TermsError),
    /// A reset is in progress (payments and new resets wait for it).
    ResetInProgress,
    /// Our last payment is not acknowledged yet (a reset needs both directions quiescent).
    NotQuiescent,
    /// No counter value is left: close cooperatively (and re-open).
    Exhausted,
    /// The payment does not fit our leaf channel.
    Payment(PaymentError),
    /// Our leaf channel cannot carry this payment but our balance can: reset first.
    ResetNeeded,
    /// Our balance cannot carry this payment.
    InsufficientBalance,
    /// An amount is zero or overflowed, or no payment number or HTLC id is left (`u64::MAX`).
    InvalidAmount,
    /// Unknown HTLC id.
    UnknownHtlc,
    /// The preimage does not match.
    WrongPreimage,
    /// The HTLC expiry is outside the channel's window (docs/duplex.md §3).
    HtlcExpiry,
    /// HTLCs are pending: resolve them before closing cooperatively.
    HtlcsPending,
    /// The netting of a reset leaves an output below dust, or cannot carry the pending HTLCs
    /// (the payee's balance is below `payment_fee + dust_limit`).
    Netting,
    /// The funding transaction has no output paying the channel script and capacity.
    NoFundingOutput,
    /// The funding transaction has an input with a `scriptSig` (its txid could change).
    MalleableFunding,
    /// The signer could not sign.
    Signer(crate::core::sign::SignerError),
    /// The channel lost state ([`Event::LostState`]): it signs nothing new.
    LostState,
    /// Our payout script is not a standard payout script
    /// ([`PAYOUT_POLICY`](crate::spilman::payment::PAYOUT_POLICY)).
    NonStandardScript,
    /// The signer is not the channel's (its public keys are not the ones recorded at open).
    WrongSigner(crate::core::sign::WrongSigner),
    /// The funding transaction does not have [`Terms::funding_depth`]` + 1` confirmations on
    /// our view of the chain yet (or a reorg un-confirmed it): the counterparty would not count
    /// a payment now ([`Channel::sends_from`]).
    FundingNotDeep,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::WrongPhase => f.write_str("not possible in the channel's current phase"),
            CommandError::BadTerms(e) => write!(f, "bad terms: {e}"),
            CommandError::ResetInProgress => f.write_str("a reset is in progress"),
            CommandError::NotQuiescent => f.write_str("our last payment is not acknowledged yet"),
            CommandError::Exhausted => f.write_str("no reset left: close cooperatively"),
            CommandError::Payment(e) => write!(f, "payment: {e}"),
            CommandError::ResetNeeded => f.write_str("our leaf channel is dry: reset first"),
            CommandError::InsufficientBalance => f.write_str("balance too low"),
            CommandError::InvalidAmount => f.write_str("invalid amount"),
            CommandError::UnknownHtlc => f.write_str("unknown HTLC"),
            CommandError::WrongPreimage => f.write_str("preimage does not match"),
            CommandError::HtlcExpiry => f.write_str("HTLC expiry outside the channel's window"),
            CommandError::HtlcsPending => f.write_str("HTLCs are pending"),
            CommandError::Netting => f.write_str("the reset's new leaf would not be payable"),
            CommandError::NoFundingOutput => f.write_str("no funding output in the transaction"),
            CommandError::MalleableFunding => f.write_str("funding input with a scriptSig"),
            CommandError::Signer(e) => write!(f, "signer: {e}"),
            CommandError::LostState => f.write_str("the channel lost state"),
            CommandError::NonStandardScript => f.write_str("our payout script is not standard"),
            CommandError::WrongSigner(e) => write!(f, "{e}"),
            CommandError::FundingNotDeep => f.write_str("the funding transaction is not deep enough yet"),
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
