//! The driving vocabulary shared by every channel layer (sans-I/O).
//!
//! A channel is a plain value. The embedder drives it with method calls: commands (`pay`,
//! `close`, …), peer messages (`handle_message`), chain events (`handle_chain`) and the current
//! [`ChainTip`]. Every call that changes something returns [`Effects`]: what the embedder MUST do,
//! **in field order**:
//!
//! 1. persist [`Effects::update`] durably (see *Persistence* below);
//! 2. send [`Effects::send`] to the peer, in order;
//! 3. broadcast [`Effects::broadcast`], and hand [`Effects::bumps`] to the channel's
//!    [`Bumper`](crate::core::feebump::Bumper) (which re-broadcasts them at rising fees until they
//!    confirm, see [`core::feebump`](crate::core::feebump));
//! 4. watch [`Effects::watch`] and report matching transactions with [`ChainEvent::Confirmed`]
//!    (and, as soon as it sees one in its mempool, with [`ChainEvent::Seen`]);
//! 5. handle [`Effects::events`];
//! 6. call `handle_chain` again by [`Effects::next_deadline`] at the latest;
//! 7. if [`Effects::funding`] asks for a funding transaction, have the wallet build and sign it
//!    and hand it to the layer's `fund` (the one funding flow of every layer:
//!    [`core::funding`](crate::core::funding); the channel broadcasts it when it is safe).
//!
//! A call that fails returns a typed error and leaves the channel exactly as it was.
//!
//! # Persistence
//!
//! The embedder keeps, per channel, **one snapshot** and **one append-only log of records**.
//! Each [`StateUpdate`] is one durable write:
//!
//! * **Order.** Append [`StateUpdate::records`] to the log, in order; then, if
//!   [`StateUpdate::snapshot`] is `Some`, replace the stored snapshot with it. Only then act on
//!   the rest of the [`Effects`]. A crash in the middle leaves the state of the previous update
//!   (nothing of the new one was sent yet): records appended without the rest are ignored or
//!   superseded on restore. (A write that merges several updates carries a delta for each; a
//!   crash after some of them leaves the state of the last one appended: the channel was in it
//!   and sent nothing of it either.)
//! * **Update ids** strictly increase (by one per update in every layer of this crate). A
//!   snapshot or delta record carries its update id; the embedder should keep the newest id it
//!   persisted in its own metadata and pass it to `restore` ([`RestoreCheck::min_update_id`]),
//!   which refuses an older state ([`RestoreError::Stale`]).
//! * **Deltas.** An update without a snapshot ends its records with a **delta record**
//!   ([`crate::core::delta`]): the patch from the state stored so far (the snapshot and every
//!   delta since, replayed) to the new state. A layer that writes deltas writes a full snapshot
//!   again every so many updates (Lightning: [`FULL_SNAPSHOT_INTERVAL`] by default) or when the
//!   embedder asks for one (`compact`). `restore_with_records` replays, in log order, the deltas
//!   of the updates after the snapshot's (older ones are skipped; a missing one is
//!   [`RestoreError::MissingDelta`]). Spilman and duplex write a full snapshot on every update
//!   (their states are a few hundred bytes).
//! * **Compaction** (the embedder's choice, at any time): restore the channel, replace the stored
//!   snapshot with its `snapshot()`, then drop the records its `keeps_record` refuses (deltas the
//!   snapshot includes, onions of HTLCs that are gone). Replace first, drop second: a crash in
//!   between leaves a snapshot and records that still restore.
//! * **What is written, and when** (Lightning): only where the protocol needs it. Before sending
//!   `commitment_signed` or `revoke_and_ack` (and the signatures and secrets they carry), a
//!   funding signature, `shutdown` or `closing_signed`, and before broadcasting; after receiving a
//!   `commitment_signed`, a `revoke_and_ack`, a chain event that changes the state, or the funding
//!   messages. An update not yet covered by a `commitment_signed` (`update_add_htlc`,
//!   `update_fulfill_htlc`, `update_fail_htlc`, `update_fee`, sent or received) is kept in memory
//!   and travels with the next durable write; its [`Effects`] carry messages but no update. After
//!   a crash it is simply gone: the peer drops what it received of it at the reconnection (BOLT
//!   #2), and what we received of the peer's it sends again. A fulfilment lost that way must be
//!   made again by the embedder after the restart (it knows the preimage: keep it until the HTLC
//!   is resolved); a payment it added must be added again or failed upstream.
//!
//! **Connections.** On every new connection (and after every restart) each side first sends its
//! channel's reestablish message (`reestablish()` of every layer: Spilman, duplex, Lightning's
//! `channel_reestablish`) and feeds the peer's to `handle_message`; the channel then sends again
//! whatever the peer missed. Each layer also learns there whether its own data is older than
//! what it signed (a restored backup) and reports it as a `LostState` event; its peer gets
//! told (`CounterpartyLostState` in Spilman and duplex, an `error` in Lightning).

use alloc::vec::Vec;
use core::fmt;

use bitcoin::hashes::Hash;
use bitcoin::{OutPoint, Transaction, Txid};

use crate::core::funding::FundingRequest;
use crate::core::sign::KeyIdentity;
use crate::core::units::BlockHeight;

/// The chain as the embedder sees it now.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ChainTip {
    /// Height of the best block.
    pub height: BlockHeight,
}

impl ChainTip {
    /// A tip at `height`.
    pub const fn at(height: u32) -> Self {
        ChainTip { height: BlockHeight(height) }
    }
}

/// Something that happened on chain. Delivering the same event twice, or events for unrelated
/// transactions, changes nothing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ChainEvent<'a> {
    /// A new best block.
    Tip(ChainTip),
    /// A transaction spending or creating something the channel watches confirmed at `height`.
    Confirmed {
        /// The transaction.
        tx: &'a Transaction,
        /// The height of its block.
        height: BlockHeight,
    },
    /// A previously confirmed transaction left the best chain (reorg).
    Unconfirmed(Txid),
    /// An unconfirmed transaction the embedder saw (in its mempool, or relayed to it) that
    /// spends something the channel watches ([`Watch::Spend`]).
    ///
    /// It changes none of the channel's on-chain state: nothing is taken as spent or confirmed,
    /// and the claims the channel broadcast stay due (they are broadcast again on every new tip
    /// until a spend of their output confirms). It only lets the channel learn what the witness
    /// reveals: the preimage of an HTLC the channel offered, spent through its success path,
    /// reported at once (the layer's `HtlcFulfilled` event) so that an upstream HTLC can be
    /// claimed even if this transaction never confirms (a peer that reveals a preimage in a
    /// transaction it then replaces, *replacement cycling*). Report every such transaction as
    /// soon as it is seen, including one that is replaced later; reporting one twice, or an
    /// unrelated one, changes nothing.
    Seen {
        /// The transaction.
        tx: &'a Transaction,
    },
}

/// Something the embedder must watch the chain for.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Watch {
    /// Report the transaction that spends this outpoint.
    Spend(OutPoint),
    /// Report this transaction when it confirms.
    Tx(Txid),
}

/// A state change to persist before acting on anything else (the contract is in the
/// [module docs](self#persistence)).
///
/// Either a **full snapshot** (`snapshot` is `Some`: replace the stored snapshot with it, after
/// appending `records`) or a **delta** (`snapshot` is `None`: `records` end with the delta record
/// of `update_id`, [`crate::core::delta`]). Records are appended to the channel's log in order;
/// besides deltas they carry what some layers write once instead of in every snapshot (the
/// Lightning layer appends an HTLC's onion with the first write that includes the HTLC and a
/// penalty record when it is gone).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateUpdate {
    /// Strictly increasing per channel; `restore` refuses a state older than one it is told of.
    pub update_id: u64,
    /// The channel's full state at `update_id` (the crate's versioned encoding), or `None` when
    /// the last of `records` is the delta bringing the stored state to `update_id`.
    pub snapshot: Option<Vec<u8>>,
    /// Records to append to the channel's log, each in the crate's versioned encoding.
    pub records: Vec<Vec<u8>>,
}

impl StateUpdate {
    /// An update carrying a full snapshot and no records.
    pub fn snapshot(update_id: u64, snapshot: Vec<u8>) -> Self {
        StateUpdate { update_id, snapshot: Some(snapshot), records: Vec::new() }
    }

    /// An update carrying a full snapshot and records to append.
    pub fn with_records(update_id: u64, snapshot: Vec<u8>, records: Vec<Vec<u8>>) -> Self {
        StateUpdate { update_id, snapshot: Some(snapshot), records }
    }

    /// An update carrying no snapshot: `records` end with the delta record of `update_id`.
    pub fn delta(update_id: u64, records: Vec<Vec<u8>>) -> Self {
        StateUpdate { update_id, snapshot: None, records }
    }

    /// Whether it carries a full snapshot.
    pub fn is_full(&self) -> bool {
        self.snapshot.is_some()
    }

    /// The bytes it writes: the snapshot, if any, and every record.
    pub fn written_bytes(&self) -> usize {
        self.snapshot.as_ref().map_or(0, Vec::len) + self.records.iter().map(Vec::len).sum::<usize>()
    }

    /// `later` written after `self`, as one write. A delta after a full snapshot is applied to
    /// it (one full snapshot at the later id); deltas after deltas stay in order; a full
    /// snapshot supersedes the earlier update's delta (its other records are kept).
    fn then(self, later: StateUpdate) -> StateUpdate {
        let StateUpdate { snapshot: first_snapshot, records: mut first_records, .. } = self;
        match (first_snapshot, later.snapshot) {
            (first, Some(snapshot)) => {
                if first.is_none() {
                    first_records.retain(|r| !crate::core::delta::is_delta(r));
                }
                first_records.extend(later.records);
                StateUpdate { update_id: later.update_id, snapshot: Some(snapshot), records: first_records }
            }
            (Some(base), None) => {
                let mut records = later.records;
                let applied = records
                    .last()
                    .filter(|r| crate::core::delta::is_delta(r))
                    .and_then(|r| crate::core::delta::DeltaRecord::decode(r).ok())
                    .and_then(|d| d.apply(&base).ok());
                let snapshot = match applied {
                    Some(full) => {
                        records.pop();
                        full
                    }
                    // Not a delta of ours: keep both (restore replays it on `base`).
                    None => base,
                };
                first_records.extend(records);
                StateUpdate { update_id: later.update_id, snapshot: Some(snapshot), records: first_records }
            }
            (None, None) => {
                first_records.extend(later.records);
                StateUpdate { update_id: later.update_id, snapshot: None, records: first_records }
            }
        }
    }
}

impl fmt::Debug for StateUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateUpdate")
            .field("update_id", &self.update_id)
            .field("snapshot_len", &self.snapshot.as_ref().map(Vec::len))
            .field("records", &self.records.len())
            .finish()
    }
}

/// How many updates a Lightning channel writes as deltas before it writes a full snapshot again
/// (the default of [`Channel::set_full_snapshot_interval`](crate::lightning::Channel::set_full_snapshot_interval)).
pub const FULL_SNAPSHOT_INTERVAL: u32 = 1_000;

/// What the embedder must do after a call, in field order (see the [module docs](self)).
#[must_use = "persist `update` first, then send, broadcast, watch"]
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct Effects<M, E> {
    /// MUST be persisted durably before anything below is acted on.
    pub update: Option<StateUpdate>,
    /// Messages to send to the peer, in order.
    pub send: Vec<M>,
    /// Transactions to broadcast.
    pub broadcast: Vec<Transaction>,
    /// Time-critical transactions among them (or paid for through them), with their deadlines
    /// and how to bump their fees: give each to the channel's
    /// [`Bumper`](crate::core::feebump::Bumper).
    pub bumps: Vec<crate::core::feebump::BumpRequest>,
    /// Outpoints and transactions to watch.
    pub watch: Vec<Watch>,
    /// Things the embedder may want to know.
    pub events: Vec<E>,
    /// Call `handle_chain` again once the chain reaches this height.
    pub next_deadline: Option<BlockHeight>,
    /// The channel asks the funder's wallet for its funding transaction: build one paying
    /// [`FundingRequest::output`] exactly once from segwit inputs, sign it, and hand it to the
    /// layer's `fund`; do not broadcast it (see [`core::funding`](crate::core::funding)).
    pub funding: Option<FundingRequest>,
}

impl<M, E> Default for Effects<M, E> {
    fn default() -> Self {
        Effects {
            update: None,
            send: Vec::new(),
            broadcast: Vec::new(),
            bumps: Vec::new(),
            watch: Vec::new(),
            events: Vec::new(),
            next_deadline: None,
            funding: None,
        }
    }
}

impl<M, E> Effects<M, E> {
    /// No effects.
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether there is nothing to act on: no update, message, transaction, bump request, watch,
    /// event or funding request. [`Effects::next_deadline`] is not counted: a call that changes nothing may still
    /// return the channel's standing deadline (keep calling back by it whatever this says).
    pub fn is_empty(&self) -> bool {
        self.update.is_none()
            && self.send.is_empty()
            && self.broadcast.is_empty()
            && self.bumps.is_empty()
            && self.watch.is_empty()
            && self.events.is_empty()
            && self.funding.is_none()
    }

    /// Appends `other`'s obligations after this one's. Two updates become one write: a later
    /// full snapshot supersedes the earlier state, a later delta is applied to an earlier full
    /// snapshot, and deltas after deltas are kept in order, as are all other records.
    pub fn merge(&mut self, other: Effects<M, E>) {
        self.update = match (self.update.take(), other.update) {
            (Some(first), Some(later)) => Some(first.then(later)),
            (first, later) => later.or(first),
        };
        self.send.extend(other.send);
        self.broadcast.extend(other.broadcast);
        self.bumps.extend(other.bumps);
        self.watch.extend(other.watch);
        self.events.extend(other.events);
        self.keep_deadline(other.next_deadline);
        if other.funding.is_some() {
            self.funding = other.funding;
        }
    }

    /// Lowers [`Effects::next_deadline`] to `deadline` if that is earlier.
    pub(crate) fn keep_deadline(&mut self, deadline: Option<BlockHeight>) {
        self.next_deadline = match (self.next_deadline, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// Nothing to persist or do but report `event`, with the unchanged `next_deadline`: an input
    /// refused where the call has no error to return (a chain event with a wrong signer).
    pub(crate) fn only_event(event: E, next_deadline: Option<BlockHeight>) -> Self {
        let mut fx = Self::none();
        fx.events.push(event);
        fx.next_deadline = next_deadline;
        fx
    }
}

/// What the embedder should do about a misbehaving or confused peer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Action {
    /// Drop the message; nothing else.
    Ignore,
    /// Drop the message, tell the peer (a warning) and **disconnect**: the peer may be out of
    /// sync, and the messages that follow on this connection may build on the one refused (a
    /// Lightning `commitment_signed` covering a refused trimmed HTLC still verifies). Reconnecting
    /// (`channel_reestablish`) resynchronises both sides. The Lightning channel enforces it: it
    /// refuses everything after a refusal until it is told of the disconnection. If the same
    /// refusal comes back after every reconnection, the peer's state diverged from ours and the
    /// channel cannot progress: close it (unilaterally if the peer does not cooperate); the
    /// simulators do so after the fourth reconnection in a row that ends in a refusal.
    Warn,
    /// Stop using the channel and close it cooperatively if possible.
    Close,
    /// Close unilaterally now.
    ForceClose,
}

/// A peer input was refused. The channel state is unchanged.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PeerError<K> {
    /// What was wrong (for logs; callers should act on [`PeerError::action`]).
    pub kind: K,
    /// What to do about it.
    pub action: Action,
}

impl<K: fmt::Display> fmt::Display for PeerError<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer error ({:?}): {}", self.action, self.kind)
    }
}

impl<K: fmt::Debug + fmt::Display> core::error::Error for PeerError<K> {}

/// A channel identifier: the funding txid with the output index XORed into its last two bytes
/// (BOLT #2 `channel_id`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(pub [u8; 32]);

impl ChannelId {
    /// The id of the channel funded by `outpoint`.
    pub fn from_funding(outpoint: &OutPoint) -> Self {
        let mut id = outpoint.txid.to_byte_array();
        let vout = (outpoint.vout as u16).to_be_bytes();
        id[30] ^= vout[0];
        id[31] ^= vout[1];
        ChannelId(id)
    }
}

impl fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelId(")?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// Why a snapshot was not restored.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum RestoreError {
    /// The bytes are not a valid snapshot.
    Decode(crate::core::encode::DecodeError),
    /// The snapshot belongs to another channel.
    WrongChannel,
    /// The snapshot is older than the last update the embedder knows was persisted.
    Stale {
        /// The snapshot's update id.
        snapshot: u64,
        /// The minimum the embedder expected.
        expected_at_least: u64,
    },
    /// The snapshot refers to an append-only record (such as an HTLC's onion) that was not
    /// among the records given: the log is incomplete.
    MissingRecord,
    /// The log skips an update: after update `expected - 1` comes the delta of update `found`
    /// ([`crate::core::delta::replay`]).
    MissingDelta {
        /// The update id the next delta should have brought.
        expected: u64,
        /// The update id of the delta found instead.
        found: u64,
    },
    /// The signer given to `restore_with_signer` does not hold the channel's keys: recreate
    /// the one of `recorded` (its [`KeyIdentity::index`]).
    WrongSigner {
        /// What the snapshot recorded (`None` for a snapshot older than key identities).
        recorded: Option<KeyIdentity>,
        /// The identity of the signer given.
        given: KeyIdentity,
    },
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreError::Decode(e) => write!(f, "snapshot decode: {e}"),
            RestoreError::WrongChannel => f.write_str("snapshot of another channel"),
            RestoreError::Stale { snapshot, expected_at_least } => {
                write!(f, "stale snapshot: update {snapshot}, expected at least {expected_at_least}")
            }
            RestoreError::MissingRecord => f.write_str("a record the snapshot refers to is missing"),
            RestoreError::MissingDelta { expected, found } => {
                write!(f, "the log misses the delta of update {expected} (found {found})")
            }
            RestoreError::WrongSigner { recorded, given } => write!(
                f,
                "the signer (key index {:?}) does not hold the channel's keys (key index {:?})",
                given.index,
                recorded.and_then(|r| r.index)
            ),
        }
    }
}

impl core::error::Error for RestoreError {}

impl From<crate::core::delta::ReplayError> for RestoreError {
    fn from(e: crate::core::delta::ReplayError) -> Self {
        match e {
            crate::core::delta::ReplayError::Decode(e) => RestoreError::Decode(e),
            crate::core::delta::ReplayError::MissingDelta { expected, found } => {
                RestoreError::MissingDelta { expected, found }
            }
        }
    }
}

impl From<crate::core::encode::DecodeError> for RestoreError {
    fn from(e: crate::core::encode::DecodeError) -> Self {
        RestoreError::Decode(e)
    }
}

/// What `restore` checks a snapshot against: the channel it must belong to, and the newest
/// update id the embedder knows it persisted (from its own storage metadata).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct RestoreCheck {
    /// The channel the snapshot must be of, if known.
    pub channel_id: Option<ChannelId>,
    /// The snapshot's update id must be at least this.
    pub min_update_id: u64,
}

impl RestoreCheck {
    /// Checks a decoded snapshot's identity and freshness.
    ///
    /// A snapshot that names no channel yet (written before the channel had an id, such as a
    /// Spilman party's before funding) and is older than `min_update_id` is [`RestoreError::Stale`]:
    /// it is the channel's own earlier state, and the storage lost the writes since.
    ///
    /// # Errors
    /// [`RestoreError::WrongChannel`] or [`RestoreError::Stale`].
    pub fn check(&self, channel_id: Option<ChannelId>, update_id: u64) -> Result<(), RestoreError> {
        let stale = update_id < self.min_update_id;
        if let Some(expected) = self.channel_id {
            if channel_id != Some(expected) && !(channel_id.is_none() && stale) {
                return Err(RestoreError::WrongChannel);
            }
        }
        if stale {
            return Err(RestoreError::Stale { snapshot: update_id, expected_at_least: self.min_update_id });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn an_older_snapshot_from_before_the_channel_had_an_id_is_stale() {
        let id = ChannelId([7; 32]);
        let check = RestoreCheck { channel_id: Some(id), min_update_id: 2 };
        assert_eq!(check.check(None, 1), Err(RestoreError::Stale { snapshot: 1, expected_at_least: 2 }));
        // Not older: it cannot be this channel's state (which has the id from then on).
        assert_eq!(check.check(None, 2), Err(RestoreError::WrongChannel));
        assert_eq!(check.check(Some(ChannelId([8; 32])), 1), Err(RestoreError::WrongChannel));
        assert_eq!(check.check(Some(id), 1), Err(RestoreError::Stale { snapshot: 1, expected_at_least: 2 }));
        assert_eq!(check.check(Some(id), 2), Ok(()));
    }

    #[test]
    fn merge_keeps_the_later_snapshot_and_every_record() {
        let mut a: Effects<u8, u8> = Effects::none();
        a.update = Some(StateUpdate::with_records(1, vec![1], vec![vec![10]]));
        a.send.push(1);
        let mut b: Effects<u8, u8> = Effects::none();
        b.update = Some(StateUpdate::with_records(2, vec![2], vec![vec![20], vec![21]]));
        b.send.push(2);
        a.merge(b);
        assert_eq!(a.update, Some(StateUpdate::with_records(2, vec![2], vec![vec![10], vec![20], vec![21]])));
        assert_eq!(a.send, vec![1, 2]);
        let mut c: Effects<u8, u8> = Effects::none();
        c.merge(a.clone());
        assert_eq!(c.update, a.update);
        let mut d = a.clone();
        d.merge(Effects::none());
        assert_eq!(d.update, a.update);
    }

    #[test]
    fn merge_applies_a_delta_to_an_earlier_snapshot_and_chains_deltas() {
        use crate::core::delta::DeltaRecord;
        let (s1, s2, s3) = (b"state one".to_vec(), b"state two!".to_vec(), b"state three".to_vec());
        let d2 = DeltaRecord::between(2, &s1, &s2).encode();
        let d3 = DeltaRecord::between(3, &s2, &s3).encode();
        let full = |id, s: &Vec<u8>, r: Vec<Vec<u8>>| Some(StateUpdate::with_records(id, s.clone(), r));
        let with = |u: Option<StateUpdate>| {
            let mut fx: Effects<u8, u8> = Effects::none();
            fx.update = u;
            fx
        };
        // Full, then delta: one full snapshot of the later state.
        let mut fx = with(full(1, &s1, vec![vec![9]]));
        fx.merge(with(Some(StateUpdate::delta(2, vec![vec![8], d2.clone()]))));
        assert_eq!(fx.update, full(2, &s2, vec![vec![9], vec![8]]));
        // Delta, then delta: both, in order.
        let mut fx = with(Some(StateUpdate::delta(2, vec![d2.clone()])));
        fx.merge(with(Some(StateUpdate::delta(3, vec![d3.clone()]))));
        assert_eq!(fx.update, Some(StateUpdate::delta(3, vec![d2.clone(), d3.clone()])));
        // Delta, then full: the delta is superseded, other records kept.
        let mut fx = with(Some(StateUpdate::delta(2, vec![vec![7], d2])));
        fx.merge(with(full(3, &s3, vec![])));
        assert_eq!(fx.update, full(3, &s3, vec![vec![7]]));
    }
}
