//! The channel value: its fields, the commitment views both sides hold, and the dispatcher.

use alloc::vec::Vec;

use bitcoin::secp256k1::{All, PublicKey, Secp256k1};
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction};

use super::htlc::{FeeUpdate, Htlc, Resolution, Side};
use super::msgs::Msg;
use super::{peer_error, ChannelConfig, Effects, Event, Misbehaviour, PeerError};
use crate::core::commitment::signatures::CommitmentSignatures;
use crate::core::commitment::{
    build_commitment, BuiltCommitment, ChannelType, CommitmentHtlc, CommitmentKeys, CommitmentNumber, CommitmentParams,
    CommitmentState, FeeratePerKw, HtlcDirection, ObscuringFactor,
};
use crate::core::keys::{ChannelPubkeys, PerCommitmentPoint};
use crate::core::shachain::SecretStore;
use crate::core::units::{BlockHeight, MilliSats};
use crate::driving::{ChainEvent, ChainTip, ChannelId, RestoreCheck, RestoreError, StateUpdate, Watch};

/// Where the channel is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Phase {
    /// (Opener) `open_channel` sent.
    AwaitingAccept,
    /// (Opener) waiting for the wallet's funding transaction.
    AwaitingFundingTx,
    /// (Acceptor) `accept_channel` sent.
    AwaitingFundingCreated,
    /// (Opener) `funding_created` sent.
    AwaitingFundingSigned,
    /// Funding signed; waiting for confirmations and the peer's `channel_ready`.
    AwaitingChannelReady,
    /// Open: HTLCs flow.
    Normal,
    /// `shutdown` sent, held until our updates are signed, or received: no new HTLCs; closing
    /// once none remain.
    ShuttingDown,
    /// The cooperative closing transaction was agreed.
    Closed,
}

/// What one side announced about itself (and so about what it accepts from the other).
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct SideParams {
    pub dust_limit: Amount,
    pub max_htlc_value_in_flight: MilliSats,
    pub channel_reserve: Amount,
    pub htlc_minimum: MilliSats,
    pub to_self_delay: u16,
    pub max_accepted_htlcs: u16,
    pub pubkeys: ChannelPubkeys,
}

/// Both sides' balances in one commitment.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Balances {
    /// Ours, excluding HTLCs and before fees.
    pub holder: MilliSats,
    /// The peer's, excluding HTLCs and before fees.
    pub counterparty: MilliSats,
    /// In HTLCs we offered.
    pub offered: MilliSats,
    /// In HTLCs offered to us.
    pub received: MilliSats,
}

/// Cooperative close progress.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub(crate) struct Shutdown {
    pub holder_script: Option<ScriptBuf>,
    pub counterparty_script: Option<ScriptBuf>,
    /// Our `shutdown` went out; with `holder_script` set and this false it is held until our
    /// updates are signed (BOLT #2).
    pub holder_sent: bool,
    /// Our acceptable closing fee range.
    pub fee_range: Option<(Amount, Amount)>,
    pub last_fee_sent: Option<Amount>,
    pub closing_tx: Option<Transaction>,
}

/// A Lightning channel (see the [module docs](super)).
#[derive(Clone, Debug)]
pub struct Channel {
    pub(crate) is_funder: bool,
    pub(crate) config: ChannelConfig,
    pub(crate) channel_type: ChannelType,
    pub(crate) temporary_channel_id: ChannelId,
    pub(crate) channel_id: ChannelId,
    pub(crate) capacity: Amount,
    pub(crate) push: MilliSats,
    pub(crate) funding_outpoint: Option<OutPoint>,
    /// The opener keeps its funding transaction until `funding_signed` lets it broadcast.
    pub(crate) funding_tx: Option<Transaction>,
    pub(crate) holder: SideParams,
    pub(crate) counterparty: Option<SideParams>,
    pub(crate) phase: Phase,
    /// Our latest commitment's number (the peer signed it).
    pub(crate) holder_commitment: u64,
    /// The peer's latest commitment's number (we signed it).
    pub(crate) counterparty_commitment: u64,
    /// We signed a new peer commitment and wait for the revocation of the previous one.
    pub(crate) awaiting_revoke: bool,
    /// Whether, of our latest `commitment_signed` and `revoke_and_ack`, the revocation went last.
    pub(crate) revoke_sent_last: bool,
    /// The peer's per-commitment point of its latest commitment, and of the next.
    pub(crate) counterparty_point: Option<PublicKey>,
    pub(crate) counterparty_next_point: Option<PublicKey>,
    /// The peer's previous point while we wait for its revocation.
    pub(crate) counterparty_prev_point: Option<PublicKey>,
    pub(crate) secrets: SecretStore,
    /// The peer's signatures on our latest commitment.
    pub(crate) holder_signatures: Option<CommitmentSignatures>,
    pub(crate) settled_holder: MilliSats,
    pub(crate) settled_counterparty: MilliSats,
    pub(crate) feerate: u32,
    pub(crate) fee_updates: Vec<FeeUpdate>,
    pub(crate) htlcs: Vec<Htlc>,
    pub(crate) next_holder_htlc_id: u64,
    pub(crate) next_counterparty_htlc_id: u64,
    pub(crate) next_seq: u64,
    pub(crate) shutdown: Shutdown,
    pub(crate) funding_height: Option<BlockHeight>,
    pub(crate) tip: BlockHeight,
    pub(crate) channel_ready_sent: bool,
    /// Confirmations required before `channel_ready` (the acceptor's choice).
    pub(crate) minimum_depth: u32,
    pub(crate) channel_ready_received: bool,
    pub(crate) update_id: u64,
    /// Where on-chain sweeps pay (default: P2WPKH of our payment basepoint).
    pub(crate) sweep_destination: Option<ScriptBuf>,
    /// Fee rate of sweeps and penalties.
    pub(crate) sweep_feerate: u32,
    /// We broadcast our commitment.
    pub(crate) force_closed: bool,
    /// The peer proved a newer state than ours (`channel_reestablish`): our commitment is revoked,
    /// so we must never broadcast it; we wait for the peer's.
    pub(crate) lost_state: bool,
    /// What identifies the holder's keys (`None` if restored from a snapshot before version 3).
    pub(crate) key_identity: Option<crate::core::sign::KeyIdentity>,
    /// Preimages learnt for HTLCs (on chain, or given by the embedder after removal).
    pub(crate) preimages: Vec<(Side, u64, crate::core::hashlock::PaymentPreimage)>,
    /// The on-chain state once the funding output is spent.
    pub(crate) onchain: Option<super::onchain::OnChain>,
    /// One context for the channel's life (creating one costs about a point multiplication).
    pub(crate) secp: Secp256k1<All>,
    /// The per-commitment point we last sent for our next commitment, with its number, so that
    /// `commitment_signed` need not ask the signer again. A cache: not in the snapshot (a
    /// restored channel asks the signer).
    pub(crate) holder_next_point: Option<(u64, PublicKey)>,
    /// We refused a peer message since the last [`Channel::handle_disconnect`]: nothing more is
    /// taken on this connection (what follows may build on the refused message). Connection
    /// state, not channel state: not in the snapshot.
    pub(crate) refused_on_this_connection: bool,
    /// Refused HTLCs are left for the embedder to fail ([`Channel::defer_refusals`]); not persisted.
    pub(crate) defer_refusals: bool,
    /// The embedder's latest fee estimate for commitments ([`Channel::handle_fee_estimate`]). An
    /// input like the connection: not in the snapshot (feed it again after a restore).
    pub(crate) fee_estimate: Option<u32>,
    /// The funding transaction confirmed without paying the channel at the agreed outpoint
    /// (wrong script or amount, or no such output): the channel is failed and never used.
    pub(crate) funding_invalid: bool,
    /// Restored from a version-1 snapshot, whose onions were inline: the next update appends
    /// them as records (the version-2 snapshot it persists refers to them). Not in the snapshot.
    pub(crate) onions_to_append: bool,
    /// The state the embedder's storage holds (its snapshot with every delta since, replayed):
    /// the base of the next delta. `None` until the first write, which is a full snapshot. Not
    /// in the snapshot.
    pub(crate) durable: Option<Vec<u8>>,
    /// Deltas written since the last full snapshot. Not in the snapshot.
    pub(crate) deltas_since_full: u32,
    /// Deltas written between full snapshots ([`Channel::set_full_snapshot_interval`]). An
    /// embedder's setting: not in the snapshot.
    pub(crate) full_snapshot_interval: u32,
    /// HTLCs added (sent or received) since the last write whose onions the log does not hold
    /// yet: their onion records go with the next write. Not in the snapshot.
    pub(crate) pending_onions: Vec<(Side, u64)>,
}

impl PartialEq for Channel {
    fn eq(&self, other: &Self) -> bool {
        self.snapshot() == other.snapshot()
    }
}

/// A commitment view: the inputs of [`build_commitment`] for one side's commitment.
pub(crate) struct View {
    pub state_htlcs: Vec<CommitmentHtlc>,
    /// (offerer, id) of each entry of `state_htlcs`.
    pub ids: Vec<(Side, u64)>,
    pub to_owner: MilliSats,
    pub to_other: MilliSats,
    pub feerate: u32,
}

impl Channel {
    /// The channel id (the temporary one until funding is known).
    pub fn channel_id(&self) -> ChannelId {
        self.channel_id
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether we opened (and fund) the channel.
    pub fn is_funder(&self) -> bool {
        self.is_funder
    }

    /// The channel type.
    pub fn channel_type(&self) -> ChannelType {
        self.channel_type
    }

    /// The capacity.
    pub fn capacity(&self) -> Amount {
        self.capacity
    }

    /// The funding outpoint, once known.
    pub fn funding_outpoint(&self) -> Option<OutPoint> {
        self.funding_outpoint
    }

    /// The last update id handed out.
    pub fn update_id(&self) -> u64 {
        self.update_id
    }

    /// The HTLCs in flight.
    pub fn htlcs(&self) -> &[Htlc] {
        &self.htlcs
    }

    /// Our latest commitment's number.
    pub fn holder_commitment_number(&self) -> u64 {
        self.holder_commitment
    }

    /// The peer's latest commitment's number.
    pub fn counterparty_commitment_number(&self) -> u64 {
        self.counterparty_commitment
    }

    /// Whether we wait for the peer's `revoke_and_ack` before we may sign again.
    pub fn is_awaiting_revoke(&self) -> bool {
        self.awaiting_revoke
    }

    /// Whether the HTLC `id` offered by `offerer` is irrevocably committed on both sides (a
    /// forwarder may forward it only then).
    pub fn is_htlc_irrevocably_committed(&self, offerer: Side, id: u64) -> bool {
        self.find_htlc(offerer, id).is_some_and(Htlc::is_irrevocably_committed)
    }

    /// Whether the HTLC `id` offered by `offerer` has been irrevocably removed (or was never known).
    pub fn is_htlc_removed(&self, offerer: Side, id: u64) -> bool {
        let next = match offerer {
            Side::Holder => self.next_holder_htlc_id,
            Side::Counterparty => self.next_counterparty_htlc_id,
        };
        id < next && self.find_htlc(offerer, id).is_none_or(Htlc::is_removed)
    }

    pub(crate) fn find_htlc(&self, offerer: Side, id: u64) -> Option<&Htlc> {
        self.htlcs.iter().find(|h| h.offerer == offerer && h.id == id)
    }

    pub(crate) fn find_htlc_mut(&mut self, offerer: Side, id: u64) -> Option<&mut Htlc> {
        self.htlcs.iter_mut().find(|h| h.offerer == offerer && h.id == id)
    }

    pub(crate) fn counterparty_params(&self) -> Result<&SideParams, PeerError> {
        self.counterparty.as_ref().ok_or(peer_error(Misbehaviour::UnexpectedMessage))
    }

    /// The balances of `owner`'s latest commitment (after every update it includes).
    pub fn balances(&self, owner: Side) -> Balances {
        let v = self.view(owner);
        let (holder, counterparty) = match owner {
            Side::Holder => (v.to_owner, v.to_other),
            Side::Counterparty => (v.to_other, v.to_owner),
        };
        let mut b = Balances { holder, counterparty, ..Balances::default() };
        for (h, (offerer, _)) in v.state_htlcs.iter().zip(&v.ids) {
            match offerer {
                Side::Holder => b.offered = b.offered.saturating_add(h.amount()),
                Side::Counterparty => b.received = b.received.saturating_add(h.amount()),
            }
        }
        b
    }

    /// The view of `owner`'s latest commitment.
    pub(crate) fn view(&self, owner: Side) -> View {
        self.view_with(owner, false, false)
    }

    /// The view of `owner`'s next commitment if every HTLC still live were in it (the worst case
    /// for limit checks: a removal only counts once irrevocable, and then the HTLC is gone).
    pub(crate) fn projected_view(&self, owner: Side) -> View {
        self.view_with(owner, true, false)
    }

    /// As [`Channel::projected_view`], without our own additions the peer may not have received
    /// yet: what the peer saw when it offered its latest HTLC.
    pub(crate) fn peer_projected_view(&self, owner: Side) -> View {
        self.view_with(owner, true, true)
    }

    fn view_with(&self, owner: Side, projected: bool, skip_own_announced: bool) -> View {
        let (mut holder, mut counterparty) = (self.settled_holder, self.settled_counterparty);
        let mut state_htlcs = Vec::new();
        let mut ids = Vec::new();
        for h in &self.htlcs {
            if !(projected || h.add.in_commitment_of(owner)) {
                continue;
            }
            if skip_own_announced && h.offerer == Side::Holder && h.add.stage == super::htlc::Stage::Announced {
                continue;
            }
            let (from, to) = match h.offerer {
                Side::Holder => (&mut holder, &mut counterparty),
                Side::Counterparty => (&mut counterparty, &mut holder),
            };
            *from = from.saturating_sub(h.amount);
            let removed = h.remove.as_ref().is_some_and(|(_, p)| {
                if projected {
                    p.stage == super::htlc::Stage::Committed
                } else {
                    p.in_commitment_of(owner)
                }
            });
            match &h.remove {
                Some((res, _)) if removed => match res {
                    Resolution::Fulfill(_) => *to = to.saturating_add(h.amount),
                    _ => *from = from.saturating_add(h.amount),
                },
                _ => {
                    let direction = if h.offerer == owner { HtlcDirection::Offered } else { HtlcDirection::Received };
                    state_htlcs.push(CommitmentHtlc::with_ripemd(
                        direction,
                        h.amount,
                        h.payment_hash,
                        h.payment_ripemd,
                        h.cltv_expiry,
                    ));
                    ids.push((h.offerer, h.id));
                }
            }
        }
        let feerate = self
            .fee_updates
            .iter()
            .filter(|f| projected || f.progress.in_commitment_of(owner))
            .max_by_key(|f| f.seq)
            .map_or(self.feerate, |f| f.feerate_per_kw);
        let (to_owner, to_other) = match owner {
            Side::Holder => (holder, counterparty),
            Side::Counterparty => (counterparty, holder),
        };
        View { state_htlcs, ids, to_owner, to_other, feerate }
    }

    pub(crate) fn commitment_params(&self, owner: Side) -> Option<CommitmentParams> {
        let cp = self.counterparty.as_ref()?;
        let (ours, theirs) = (&self.holder, cp);
        let (broadcaster, countersignatory) = match owner {
            Side::Holder => (ours, theirs),
            Side::Counterparty => (theirs, ours),
        };
        let (opener, accepter) = if self.is_funder { (ours, theirs) } else { (theirs, ours) };
        Some(CommitmentParams {
            channel_type: self.channel_type,
            funding_outpoint: self.funding_outpoint?,
            funding_value: self.capacity,
            broadcaster_is_funder: (owner == Side::Holder) == self.is_funder,
            // The delay on the broadcaster's outputs is the one its peer asked for.
            to_self_delay: countersignatory.to_self_delay,
            dust_limit: broadcaster.dust_limit,
            obscuring_factor: ObscuringFactor::new(
                &opener.pubkeys.payment_basepoint,
                &accepter.pubkeys.payment_basepoint,
            ),
            broadcaster: broadcaster.pubkeys,
            countersignatory: countersignatory.pubkeys,
        })
    }

    /// Builds `owner`'s commitment number `number` with per-commitment point `point`, from the
    /// given view.
    pub(crate) fn build(
        &self,
        owner: Side,
        number: u64,
        point: &PublicKey,
        view: &View,
    ) -> Result<BuiltCommitment, Misbehaviour> {
        let params = self.commitment_params(owner).ok_or(Misbehaviour::UnexpectedMessage)?;
        let point = PerCommitmentPoint::from_public_key(*point);
        let keys = CommitmentKeys::derive(&self.secp, &point, &params.broadcaster, &params.countersignatory)
            .map_err(|_| Misbehaviour::Keys)?;
        let state = CommitmentState {
            number: CommitmentNumber::new(number).ok_or(Misbehaviour::UnexpectedMessage)?,
            to_broadcaster: view.to_owner,
            to_countersignatory: view.to_other,
            feerate: FeeratePerKw(view.feerate),
            htlcs: &view.state_htlcs,
        };
        build_commitment(&params, &keys, &state).map_err(|_| Misbehaviour::CannotAfford)
    }

    pub(crate) fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// A durable write of the live state, plus `records` to append: a delta against the state
    /// the storage holds, or a full snapshot on the first write and every
    /// [`Channel::set_full_snapshot_interval`] deltas. The onion records of the HTLCs added since
    /// the last write go first.
    pub(crate) fn persist_with(&mut self, extra: Vec<Vec<u8>>) -> Effects {
        let mut records = Vec::new();
        if core::mem::take(&mut self.onions_to_append) {
            self.pending_onions.extend(self.htlcs.iter().map(|h| (h.offerer, h.id)));
        }
        let pending = core::mem::take(&mut self.pending_onions);
        for (k, &(offerer, id)) in pending.iter().enumerate() {
            if pending[..k].contains(&(offerer, id)) {
                continue;
            }
            if let Some(onion) = self.find_htlc(offerer, id).and_then(|h| h.onion.clone()) {
                records.push(super::OnionRecord { offerer, id, onion }.encode());
            }
        }
        records.extend(extra);
        self.update_id += 1;
        let bytes = self.snapshot();
        let update = match self.durable.take() {
            Some(old) if self.deltas_since_full < self.full_snapshot_interval => {
                self.deltas_since_full += 1;
                records.push(crate::core::delta::DeltaRecord::between(self.update_id, &old, &bytes).encode());
                StateUpdate::delta(self.update_id, records)
            }
            _ => {
                self.deltas_since_full = 0;
                StateUpdate::with_records(self.update_id, bytes.clone(), records)
            }
        };
        self.durable = Some(bytes);
        let mut fx = Effects::none();
        fx.update = Some(update);
        fx.next_deadline = self.next_deadline();
        fx
    }

    pub(crate) fn persist(&mut self) -> Effects {
        self.persist_with(Vec::new())
    }

    /// Writes the whole state as a full snapshot now (a new update id), whatever the interval:
    /// after persisting it the embedder may drop every delta record of its log (see
    /// [`Channel::keeps_record`]). Any update not yet covered by a `commitment_signed` becomes
    /// durable with it.
    pub fn compact(&mut self) -> Effects {
        self.durable = None;
        self.persist()
    }

    /// How many delta records the channel writes before a full snapshot again (default
    /// [`FULL_SNAPSHOT_INTERVAL`](crate::driving::FULL_SNAPSHOT_INTERVAL); `0`: a full snapshot
    /// on every write, as before deltas; `u32::MAX`: only on [`Channel::compact`]). An embedder's
    /// setting, not persisted: set it again after a restore. A longer interval writes fewer
    /// bytes and lets the log grow longer between snapshots (a restore replays it).
    pub fn set_full_snapshot_interval(&mut self, deltas: u32) {
        self.full_snapshot_interval = deltas;
    }

    /// Encodes the live state (see [`Channel::restore`]). Its size is bounded by the HTLCs in
    /// flight, not by the channel's history.
    pub fn snapshot(&self) -> Vec<u8> {
        super::snapshot::encode_channel(self)
    }

    /// Restores a channel from a full snapshot alone (a [`StateUpdate::snapshot`] or
    /// [`Channel::snapshot`] bytes): enough when no delta followed it and no HTLC is in flight
    /// (the onions of HTLCs in flight are in [`records`](super::records); use
    /// [`Channel::restore_with_records`] then).
    ///
    /// # Errors
    /// [`RestoreError`] if the bytes are invalid, of another channel, older than
    /// `check.min_update_id`, or refer to an onion record ([`RestoreError::MissingRecord`]).
    pub fn restore(bytes: &[u8], check: RestoreCheck) -> Result<Self, RestoreError> {
        Self::restore_with_records(bytes, core::iter::empty::<&[u8]>(), check)
    }

    /// Restores a channel from the stored snapshot and the log appended so far (every
    /// [`StateUpdate::records`](crate::driving::StateUpdate::records) entry, in order, of any
    /// kind): the delta records of the updates after the snapshot's are replayed on it, in order
    /// ([`crate::core::delta::replay`]), and the onions of the HTLCs in flight are taken from the
    /// [`OnionRecord`]s (the last one wins if an HTLC was added twice, as after a reconnection).
    /// The restored channel writes its next delta against the replayed state.
    ///
    /// # Errors
    /// [`RestoreError::Decode`] if the snapshot, a record or the replayed state is malformed or a
    /// delta does not apply, [`RestoreError::MissingDelta`] if the log skips an update,
    /// [`RestoreError::WrongChannel`] / [`RestoreError::Stale`] as [`RestoreCheck`] says of the
    /// replayed state, and [`RestoreError::MissingRecord`] if an HTLC's onion is not among the
    /// records.
    ///
    /// # Examples
    /// What an embedder keeps, and how it comes back after a restart:
    /// ```
    /// use paychan::core::{commitment::ChannelType, MilliSats, PaymentPreimage};
    /// use paychan::driving::{RestoreCheck, RestoreError};
    /// use paychan::lightning::Channel;
    /// use paychan::testing::lightning::{onion, Pair};
    /// let mut p = Pair::open(ChannelType::StaticRemoteKey, 1_000_000, 0);
    /// // The embedder's storage: the last full snapshot and the log of records since.
    /// let (mut snapshot, mut log) = (p.a.persisted.last().expect("a snapshot").1.clone(), Vec::new());
    /// let hash = PaymentPreimage([1; 32]).hash();
    /// let (_, fx) = p.a.ch.add_htlc(MilliSats::from_msat(5_000_000), hash, 2_000, onion())?;
    /// // An update not yet signed is not written: it goes with the next write.
    /// assert!(fx.update.is_none());
    /// let fx = p.a.ch.commit(&p.a.signer)?;
    /// let update = fx.update.clone().expect("a write before `commitment_signed`");
    /// // Persist first: append the records (the HTLC's onion, then the delta), replace the
    /// // snapshot if the update carries one.
    /// log.extend(update.records);
    /// if let Some(full) = update.snapshot {
    ///     snapshot = full;
    /// }
    /// let check = RestoreCheck { channel_id: Some(p.a.ch.channel_id()), min_update_id: update.update_id };
    /// // The snapshot alone is stale; with the log it is the latest state.
    /// assert!(matches!(Channel::restore(&snapshot, check), Err(RestoreError::Stale { .. })));
    /// let restored = Channel::restore_with_records(&snapshot, &log, check)?;
    /// assert_eq!(restored.htlcs()[0].onion, Some(onion()));
    /// // A compaction: the restored state as the new snapshot, and the records it still needs.
    /// let compacted: Vec<_> = log.iter().filter(|r| restored.keeps_record(r)).cloned().collect();
    /// assert!(compacted.len() < log.len());
    /// assert_eq!(Channel::restore_with_records(&restored.snapshot(), &compacted, check)?, restored);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// [`OnionRecord`]: super::OnionRecord
    pub fn restore_with_records<I>(bytes: &[u8], records: I, check: RestoreCheck) -> Result<Self, RestoreError>
    where
        I: IntoIterator,
        I::IntoIter: Clone,
        I::Item: AsRef<[u8]>,
    {
        let records = records.into_iter();
        let base_id = super::snapshot::snapshot_update_id(bytes)?;
        let (state, replayed_id) = crate::core::delta::replay(bytes, base_id, records.clone())?;
        let (mut c, mut wanted) = super::snapshot::decode_channel(&state)?;
        if c.update_id != replayed_id {
            return Err(RestoreError::Decode(crate::core::encode::DecodeError::InvalidValue("delta update id")));
        }
        check.check(Some(c.channel_id), c.update_id)?;
        let key = |side: Side, id: u64| (side == Side::Counterparty, id);
        let mut found: alloc::collections::BTreeMap<(bool, u64), Option<super::OnionPacket>> =
            wanted.drain(..).map(|(side, id)| (key(side, id), None)).collect();
        for r in records {
            if crate::core::delta::is_delta(r.as_ref()) {
                continue;
            }
            if let super::Record::Onion(o) = super::Record::decode(r.as_ref())? {
                if let Some(slot) = found.get_mut(&key(o.offerer, o.id)) {
                    *slot = Some(o.onion);
                }
            }
        }
        for h in &mut c.htlcs {
            if let Some(slot) = found.get_mut(&key(h.offerer, h.id)) {
                h.onion = Some(slot.take().ok_or(RestoreError::MissingRecord)?);
            }
        }
        c.durable = Some(state);
        Ok(c)
    }

    /// Whether the channel still needs a record of its log (bytes of a
    /// [`StateUpdate::records`](crate::driving::StateUpdate::records) entry) beside its
    /// [`Channel::snapshot`] as the stored snapshot. A compaction may drop the records for which
    /// this is `false`: a delta the snapshot includes, the onion of an HTLC that is gone or that
    /// the peer has irrevocably received from us. Penalty records, and records this version
    /// cannot decode, are always kept. Compact against a channel just restored from the storage
    /// (or after [`Channel::compact`]): a live channel's snapshot also holds updates not yet
    /// written, whose onions the log does not have yet.
    pub fn keeps_record(&self, record: &[u8]) -> bool {
        if crate::core::delta::is_delta(record) {
            return crate::core::delta::DeltaRecord::decode(record).map_or(true, |d| d.update_id() > self.update_id);
        }
        match super::Record::decode(record) {
            Ok(super::Record::Onion(o)) => self.find_htlc(o.offerer, o.id).is_some_and(|h| h.onion.is_some()),
            _ => true,
        }
    }

    /// Handles a message from the peer. On error the channel state is unchanged; for a refusal
    /// whose action is [`Action::Warn`], send the peer [`PeerError::warning`] and disconnect. A
    /// peer's `warning` changes nothing and closes nothing.
    ///
    /// Once a message is refused (with any action but [`Action::Ignore`]), the connection is
    /// done: every later message except `error` is refused with
    /// [`Misbehaviour::AfterRefusal`] until [`Channel::handle_disconnect`], because the peer's
    /// next messages may build on the refused one (a `commitment_signed` covering a refused
    /// trimmed HTLC still verifies). Reconnecting resynchronises both sides.
    ///
    /// # Errors
    /// [`PeerError`] with what was wrong and what to do about it;
    /// [`Misbehaviour::WrongSigner`] (not the peer's fault, [`Action::Ignore`]: the connection
    /// stays usable) if `signer` is not the channel's: feed the message again with the right one.
    ///
    /// [`Action::Ignore`]: crate::driving::Action::Ignore
    /// [`Action::Warn`]: crate::driving::Action::Warn
    /// [`PeerError::warning`]: crate::driving::PeerError::warning
    /// [`Misbehaviour::AfterRefusal`]: super::Misbehaviour::AfterRefusal
    /// [`Misbehaviour::WrongSigner`]: super::Misbehaviour::WrongSigner
    pub fn handle_message<S: crate::core::sign::Signer + ?Sized>(
        &mut self,
        msg: Msg,
        signer: &S,
        tip: ChainTip,
    ) -> Result<Effects, PeerError> {
        self.check_signer(signer)?;
        if let Msg::Warning { .. } = msg {
            // BOLT #1: a warning fails nothing. Its text is the peer's, for the logs.
            return Ok(Effects::none());
        }
        if self.refused_on_this_connection && !matches!(msg, Msg::Error { .. }) {
            return Err(peer_error(Misbehaviour::AfterRefusal));
        }
        let mut result = self.handle_message_on_connection(msg, signer, tip);
        if result.as_ref().is_err_and(|e| e.action != crate::driving::Action::Ignore) {
            self.refused_on_this_connection = true;
        }
        if let Ok(fx) = &mut result {
            fx.keep_deadline(self.next_deadline());
        }
        result
    }

    fn handle_message_on_connection<S: crate::core::sign::Signer + ?Sized>(
        &mut self,
        msg: Msg,
        signer: &S,
        tip: ChainTip,
    ) -> Result<Effects, PeerError> {
        // The tip as the embedder sees it now, if it is ahead of the last one we were given.
        let tip = self.tip.max(tip.height);
        if let Msg::Error { channel_id, data } = msg {
            if channel_id != self.channel_id && channel_id != ChannelId::ZERO && channel_id != self.temporary_channel_id
            {
                return Err(peer_error(Misbehaviour::WrongChannel));
            }
            return Ok(self.on_error(data, signer));
        }
        if self.lost_state && self.onchain.is_none() && matches!(msg, Msg::ChannelReestablish { .. }) {
            // After each reconnection, ask again: the first `error` may have been lost.
            let mut fx = self.persist();
            fx.send.push(self.lost_state_error());
            return Ok(fx);
        }
        if self.funding_invalid && matches!(msg, Msg::ChannelReestablish { .. }) {
            // The opener may have missed our `error`: tell it again on each reconnection.
            let mut fx = self.persist();
            fx.send.push(self.invalid_funding_error());
            return Ok(fx);
        }
        // Once we broadcast a commitment (or the funding output is spent) the off-chain protocol
        // is over: revoking, signing or agreeing to anything now could only hurt us.
        if self.is_off_chain_over() {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        }
        match msg {
            Msg::AcceptChannel(m) => self.on_accept_channel(*m),
            Msg::FundingCreated { temporary_channel_id, funding_txid, funding_output_index, signature } => {
                self.on_funding_created(temporary_channel_id, funding_txid, funding_output_index, signature, signer)
            }
            Msg::FundingSigned { channel_id, signature } => self.on_funding_signed(channel_id, signature, signer),
            Msg::ChannelReady { channel_id, second_per_commitment_point } => {
                self.on_channel_ready(channel_id, second_per_commitment_point)
            }
            Msg::UpdateAddHtlc { channel_id, id, amount_msat, payment_hash, cltv_expiry, onion_routing_packet } => {
                self.check_channel(channel_id)?;
                self.on_update_add(id, amount_msat, payment_hash, cltv_expiry, onion_routing_packet)
            }
            Msg::UpdateFulfillHtlc { channel_id, id, payment_preimage } => {
                self.check_channel(channel_id)?;
                self.on_remove(id, Resolution::Fulfill(payment_preimage))
            }
            Msg::UpdateFailHtlc { channel_id, id, reason } => {
                self.check_channel(channel_id)?;
                self.on_remove(id, Resolution::Fail(reason))
            }
            Msg::UpdateFailMalformedHtlc { channel_id, id, sha256_of_onion, failure_code } => {
                self.check_channel(channel_id)?;
                if failure_code & 0x8000 == 0 {
                    return Err(peer_error(Misbehaviour::MalformedWithoutBadOnion));
                }
                self.on_remove(id, Resolution::FailMalformed { sha256_of_onion, failure_code })
            }
            Msg::UpdateFee { channel_id, feerate_per_kw } => {
                self.check_channel(channel_id)?;
                self.on_update_fee(feerate_per_kw)
            }
            Msg::CommitmentSigned { channel_id, signature, htlc_signatures } => {
                self.check_channel(channel_id)?;
                self.on_commitment_signed(signature, htlc_signatures, signer)
            }
            Msg::RevokeAndAck { channel_id, per_commitment_secret, next_per_commitment_point } => {
                self.check_channel(channel_id)?;
                self.on_revoke_and_ack(per_commitment_secret, next_per_commitment_point, signer, tip)
            }
            Msg::ChannelReestablish {
                channel_id,
                next_commitment_number,
                next_revocation_number,
                your_last_per_commitment_secret,
                my_current_per_commitment_point: _,
            } => {
                self.check_channel(channel_id)?;
                self.on_reestablish(
                    next_commitment_number,
                    next_revocation_number,
                    your_last_per_commitment_secret,
                    signer,
                )
            }
            Msg::Shutdown { channel_id, scriptpubkey } => {
                self.check_channel(channel_id)?;
                self.on_shutdown(scriptpubkey, signer)
            }
            Msg::ClosingSigned { channel_id, fee_satoshis, signature, fee_range } => {
                self.check_channel(channel_id)?;
                self.on_closing_signed(fee_satoshis, signature, fee_range, signer)
            }
            Msg::OpenChannel(_) | Msg::Error { .. } | Msg::Warning { .. } => {
                Err(peer_error(Misbehaviour::UnexpectedMessage))
            }
        }
    }

    /// Whether the off-chain protocol is over: we broadcast our commitment
    /// ([`Channel::force_close`]), the funding output was spent, or the funding transaction does
    /// not pay the channel ([`Channel::has_invalid_funding`]).
    pub fn is_off_chain_over(&self) -> bool {
        self.force_closed || self.lost_state || self.onchain.is_some() || self.funding_invalid
    }

    /// Whether the funding transaction confirmed without paying the channel at the agreed
    /// outpoint ([`Event::InvalidFunding`](super::Event::InvalidFunding)): the channel is failed
    /// and is never used (no `channel_ready`, no update, no commitment broadcast).
    pub fn has_invalid_funding(&self) -> bool {
        self.funding_invalid
    }

    /// Whether we learnt that our state is stale (the peer proved a newer one in
    /// `channel_reestablish`, [`Event::LostState`](super::Event::LostState)). Such a channel takes
    /// no more updates and refuses [`Channel::force_close`]: our latest commitment is revoked, and
    /// broadcasting it would hand the peer everything. Wait for the peer to close; the chain
    /// events then pay us our `to_remote` output.
    pub fn has_lost_state(&self) -> bool {
        self.lost_state
    }

    /// The peer failed the channel: close on chain with our latest commitment if we may.
    fn on_error<S: crate::core::sign::Signer + ?Sized>(&mut self, data: Vec<u8>, signer: &S) -> Effects {
        let event = Event::FailedByPeer { data };
        if self.is_off_chain_over() {
            let mut fx = Effects::none();
            fx.events.push(event);
            return fx;
        }
        match self.force_close(signer) {
            Ok(mut fx) => {
                fx.events.push(event);
                fx
            }
            Err(_) => {
                // No commitment of ours is signed yet (before `funding_signed`): the funding was
                // never broadcast by us, so the channel is simply over.
                self.phase = Phase::Closed;
                let mut fx = self.persist();
                fx.events.push(event);
                fx
            }
        }
    }

    pub(crate) fn check_channel(&self, id: ChannelId) -> Result<(), PeerError> {
        if id != self.channel_id {
            return Err(peer_error(Misbehaviour::WrongChannel));
        }
        Ok(())
    }

    /// Handles a chain event: funding confirmations lead to `channel_ready`; a spend of the
    /// funding output starts the on-chain resolution ([`super::onchain`]); at every tip the HTLC
    /// deadlines are checked ([`HtlcDeadlines`](super::HtlcDeadlines)): one that came makes the
    /// channel report it ([`Event::HtlcDeadline`](super::Event::HtlcDeadline)) and close on
    /// chain. Give it every new tip, and at the latest the one at
    /// [`Effects::next_deadline`](crate::driving::Effects::next_deadline). Idempotent; events for
    /// unrelated transactions change nothing.
    ///
    /// Punishing a revoked commitment that carried HTLCs which are gone from the channel needs
    /// their [`PenaltyRecord`](super::PenaltyRecord)s: use [`Channel::handle_chain_with_history`].
    pub fn handle_chain<S: crate::core::sign::Signer + ?Sized>(
        &mut self,
        event: ChainEvent<'_>,
        signer: &S,
    ) -> Effects {
        self.handle_chain_with_history(event, &[], signer)
    }

    /// As [`Channel::handle_chain`], with the penalty records the embedder appended so far.
    ///
    /// With a signer that is not the channel's the event is refused: nothing changes, and the
    /// effects carry only [`Event::WrongSigner`] (deliver the event again with the right signer).
    pub fn handle_chain_with_history<S: crate::core::sign::Signer + ?Sized>(
        &mut self,
        event: ChainEvent<'_>,
        history: &[super::PenaltyRecord],
        signer: &S,
    ) -> Effects {
        if let Err(e) = self.check_signer(signer) {
            return Effects::only_event(Event::WrongSigner(e), self.next_deadline());
        }
        let mut fx = self.handle_chain_event(event, history, signer);
        if matches!(event, ChainEvent::Tip(_) | ChainEvent::Confirmed { .. }) {
            fx.merge(self.check_htlc_deadlines(signer));
        }
        fx.keep_deadline(self.next_deadline());
        fx
    }

    fn handle_chain_event<S: crate::core::sign::Signer + ?Sized>(
        &mut self,
        event: ChainEvent<'_>,
        history: &[super::PenaltyRecord],
        signer: &S,
    ) -> Effects {
        if let Some(fx) = self.handle_onchain(event, history, signer) {
            return fx;
        }
        match event {
            ChainEvent::Tip(t) => {
                if t.height <= self.tip {
                    return Effects::none();
                }
                self.tip = t.height;
                if self.force_closed {
                    // Nothing spent the funding output yet (`handle_onchain` takes it from there).
                    return self.rebroadcast_commitment(signer);
                }
                self.maybe_channel_ready(signer)
            }
            ChainEvent::Confirmed { tx, height } => {
                let Some(op) = self.funding_outpoint else { return Effects::none() };
                if tx.compute_txid() != op.txid || self.funding_invalid {
                    return Effects::none();
                }
                let pays = tx.output.get(op.vout as usize).is_some_and(|o| {
                    self.commitment_params(Side::Holder)
                        .is_some_and(|p| o.value == self.capacity && o.script_pubkey == p.funding_script().to_p2wsh())
                });
                if !pays {
                    return self.fail_invalid_funding(op.txid);
                }
                if self.funding_height == Some(height) {
                    return Effects::none();
                }
                self.funding_height = Some(height);
                self.tip = self.tip.max(height);
                let mut fx = self.maybe_channel_ready(signer);
                if fx.update.is_none() {
                    fx.merge(self.persist());
                }
                fx
            }
            // Before the close nothing of ours can be spent by an unconfirmed transaction.
            ChainEvent::Seen { .. } => Effects::none(),
            ChainEvent::Unconfirmed(txid) => {
                if self.funding_outpoint.is_some_and(|o| o.txid == txid) && self.funding_height.is_some() {
                    self.funding_height = None;
                    return self.persist();
                }
                Effects::none()
            }
        }
    }

    /// The transaction with the agreed funding txid does not pay the channel (CVE-2019-12998):
    /// no `channel_ready` is ever sent, nothing is signed or taken from now on, and the peer is
    /// told with an `error`. The signatures we gave commit to the agreed script and amount, so
    /// they spend nothing that exists; the opener's `push` was never real.
    fn fail_invalid_funding(&mut self, txid: bitcoin::Txid) -> Effects {
        self.funding_invalid = true;
        self.phase = Phase::Closed;
        let mut fx = self.persist();
        fx.send.push(self.invalid_funding_error());
        fx.events.push(Event::InvalidFunding { txid });
        fx
    }

    fn invalid_funding_error(&self) -> Msg {
        Msg::Error { channel_id: self.channel_id, data: b"funding transaction does not pay the channel".to_vec() }
    }

    /// Our latest commitment, verified against the peer's signatures we hold.
    ///
    /// # Errors
    /// [`CommandError`](super::CommandError) before the first commitment is signed, or if the signer fails;
    /// [`CommandError::WrongSigner`](super::CommandError::WrongSigner) if `signer` is not the
    /// channel's ([`Channel::check_signer`]).
    pub fn holder_commitment<S: crate::core::sign::Signer + ?Sized>(
        &self,
        signer: &S,
    ) -> Result<crate::core::commitment::signatures::VerifiedCommitment, super::CommandError> {
        self.check_signer(signer)?;
        let sigs = self.holder_signatures.clone().ok_or(super::CommandError::WrongPhase)?;
        let n = CommitmentNumber::new(self.holder_commitment).ok_or(super::CommandError::WrongPhase)?;
        let point = signer.per_commitment_point(n)?;
        let view = self.view(Side::Holder);
        let built = self
            .build(Side::Holder, self.holder_commitment, point.public_key(), &view)
            .map_err(|_| super::CommandError::Keys)?;
        let funding = self.counterparty.as_ref().ok_or(super::CommandError::WrongPhase)?.pubkeys.funding;
        crate::core::commitment::signatures::verify_holder_commitment(&self.secp, built, &funding, sigs)
            .map_err(|_| super::CommandError::Keys)
    }

    /// Our latest commitment transaction, fully signed (what a force close broadcasts).
    ///
    /// # Errors
    /// As [`Channel::holder_commitment`].
    pub fn holder_commitment_tx<S: crate::core::sign::Signer + ?Sized>(
        &self,
        signer: &S,
    ) -> Result<Transaction, super::CommandError> {
        Ok(self.holder_commitment(signer)?.finalize(signer)?)
    }

    /// Checks that `signer` is the one this channel was opened or accepted with: its five base
    /// public keys ([`Signer::pubkeys`](crate::core::sign::Signer::pubkeys)) are the ones the
    /// channel announced and recorded. Every call that signs makes this check first and refuses a
    /// wrong signer with nothing changed.
    ///
    /// # Errors
    /// [`WrongSigner`](crate::core::sign::WrongSigner) naming the first key that differs.
    pub fn check_signer<S: crate::core::sign::Signer + ?Sized>(
        &self,
        signer: &S,
    ) -> Result<(), crate::core::sign::WrongSigner> {
        crate::core::sign::check_signer_pubkeys(signer, &self.holder.pubkeys)
    }

    /// What identifies the holder's keys, recorded in its snapshots: the key index its signer
    /// told ([`Signer::key_index`](crate::core::sign::Signer::key_index)) and the fingerprint of
    /// its public keys. `None` for a channel restored from a snapshot older than version 3.
    pub fn key_identity(&self) -> Option<crate::core::sign::KeyIdentity> {
        self.key_identity
    }

    /// [`Channel::restore_with_records`], refusing a `signer` that does not hold the holder's
    /// keys (the one to recreate is named by [`Channel::key_identity`] of the restored channel).
    ///
    /// # Errors
    /// As [`Channel::restore_with_records`]; [`RestoreError::WrongSigner`] for another signer.
    pub fn restore_with_signer<I, S>(
        bytes: &[u8],
        records: I,
        check: RestoreCheck,
        signer: &S,
    ) -> Result<Self, RestoreError>
    where
        I: IntoIterator,
        I::IntoIter: Clone,
        I::Item: AsRef<[u8]>,
        S: crate::core::sign::Signer + ?Sized,
    {
        let c = Self::restore_with_records(bytes, records, check)?;
        crate::core::sign::KeyIdentity::check_restored(c.key_identity, c.check_signer(signer), signer)?;
        Ok(c)
    }

    /// The peer's latest commitment as we signed it (unsigned by the peer).
    pub fn counterparty_commitment(&self) -> Option<BuiltCommitment> {
        let point = self.counterparty_point?;
        let view = self.view(Side::Counterparty);
        self.build(Side::Counterparty, self.counterparty_commitment, &point, &view).ok()
    }

    pub(crate) fn watch_funding(&self, fx: &mut Effects) {
        if let Some(op) = self.funding_outpoint {
            fx.watch.push(Watch::Tx(op.txid));
            fx.watch.push(Watch::Spend(op));
        }
    }

    pub(crate) fn ready_event(&self) -> Event {
        Event::ChannelReady { channel_id: self.channel_id }
    }
}
