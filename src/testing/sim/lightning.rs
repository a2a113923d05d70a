//! The Lightning simulation: two honest peers over a faulty connection.
//!
//! Lightning runs over BOLT 8, which authenticates each message under its position in the
//! stream (the nonce): a dropped, duplicated or reordered message fails there and breaks the
//! connection, so a channel only ever receives, on each connection, a prefix of what its peer sent,
//! in order. Here every fault of the network breaks the connection likewise (the receiver takes
//! the messages before the fault, then nothing more): both peers are told of the disconnection
//! and exchange `channel_reestablish`. A peer that refuses a message acts on the refusal's
//! [`Action`] (a warning reconnects, a close fails the channel on chain).
//!
//! A unilateral close does not stop the connection: messages in flight still arrive, and the
//! peer goes on until the commitment confirms (the closer must refuse everything, and in
//! particular never revoke the commitment it broadcast). Either side may start a `shutdown` at
//! any step, so the closing negotiation runs through drops, crashes and reconnections; the
//! funder may try `update_fee` at any time (the channel refuses it once closing is under way).
//!
//! In some runs one peer misbehaves (the other is honest and must get what it was owed):
//! * a **cheater** keeps old signed commitments and, at the close, broadcasts one that was
//!   revoked, then goes silent: the honest peer's penalty must take the cheater's balance;
//! * a **lossy** peer restarts from an older snapshot it believes current (its storage lost the
//!   newer writes). It must never broadcast a revoked commitment: on reconnection the honest
//!   peer's `channel_reestablish` proves the loss ([`Event::LostState`]), after which the
//!   embedder (this simulation) never force-closes it and waits for the peer's commitment;
//! * a **hostile** peer sends only well-formed, validly signed messages but picks extreme
//!   values and refuses to cooperate when it likes (module `hostile`).

use std::collections::{HashMap, HashSet};
use std::format;
use std::string::String;
use std::vec;
use std::vec::Vec;

use bitcoin::{Amount, OutPoint, Transaction, Txid};

use crate::core::commitment::FeeratePerKw;
use crate::core::commitment::{BuiltCommitment, ChannelType, HtlcDirection, OutputRole};
use crate::core::feebump::Bumper;
use crate::core::{MilliSats, PaymentHash, PaymentPreimage};
use crate::driving::{Action, ChainEvent, ChainTip, RestoreCheck};
use crate::lightning::onchain::ClosingKind;
use crate::lightning::{Channel, Effects, Event, Msg, PenaltyRecord, Phase, Side};
use crate::testing::chain::Chain;
use crate::testing::invariants::{check_broadcast, check_cheater, check_owed, BroadcastCheck, Broadcasts, Settlement};
use crate::testing::lightning::{needs_write, onion, stored_state, Pair, Peer};
use crate::testing::net::{Faults, Network};
use crate::testing::rng::Rng;
use crate::testing::wallet::{FeeCoins, Wallet};

use super::{Config, Outcome, Sabotage};

mod hostile;
use hostile::Hostile;
mod tower;
use tower::TowerRun;
mod settle;

/// The sabotages this layer applies ([`Sabotage`]).
pub const SABOTAGES: &[Sabotage] = &[
    Sabotage::DropPenalties,
    Sabotage::DropSweeps,
    Sabotage::DropHtlcClaims,
    Sabotage::TowerLagging,
    Sabotage::TowerDisabled,
    Sabotage::DisableBumper,
];

/// An output of a party's own worth at most this (sat) may stay unswept: the channel does not
/// sweep an output its sweep would cost more than (`value < fee`, at the channel's default sweep
/// feerate of 1,000 sat/kW and at most 378 + 322 weight units for a one-input sweep). Such an
/// output counts as a fee of the party it belongs to, and only of that party.
const UNECONOMICAL: u64 = 700;

/// What an honest party's broadcast is, for the [`Sabotage`] knob.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum TxKind {
    /// A commitment or the closing transaction.
    Close,
    /// Spends a revoked commitment or a cheater's second-stage transaction.
    Penalty,
    /// Spends the party's own `to_local`, `to_remote` or second-stage output.
    Sweep,
    /// Spends an HTLC output of a commitment (second-stage transaction, or a claim of the peer's).
    HtlcClaim,
    /// Anything else (an anchor spend).
    Other,
}

/// How one peer misbehaves in a run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Bad {
    /// Broadcasts a revoked commitment at the close.
    Cheater(usize),
    /// Restarts from older snapshots.
    Lossy(usize),
    /// Picks hostile-but-valid values (module `hostile`).
    Hostile(usize),
}

struct Sim {
    bad: Option<Bad>,
    /// The hostile peer's strategy, in a run with one.
    hostile: Option<Hostile>,
    sabotage: Sabotage,
    /// Every commitment either peer signed for the other, by txid, with the index of the peer
    /// that can broadcast it (its owner).
    known: HashMap<Txid, (usize, BuiltCommitment)>,
    /// The counterparty commitment number last recorded into `known`, per peer.
    recorded: [Option<u64>; 2],
    /// Who broadcast what (fee attribution).
    broadcasts: Broadcasts,
    /// Payment hashes of the HTLCs each peer fulfilled (it knows the preimage and may claim).
    fulfilled: [HashSet<PaymentHash>; 2],
    /// Old signed commitments the cheater kept.
    kept: Vec<Transaction>,
    /// A peer told it lost state (it must not broadcast its commitment).
    lost_state: [bool; 2],
    /// A peer that went silent (the cheater, after cheating).
    offline: [bool; 2],
    rng: Rng,
    nodes: [Peer; 2],
    /// The length of each node's record log after each of its persisted updates (what lost
    /// writes take back together with the snapshot).
    records_at: [Vec<usize>; 2],
    /// For each persisted update of each node, the index of the update whose full snapshot is
    /// the stored one then (the storage holds that snapshot and the log; `persisted` keeps every
    /// state the log replays to, for the checks).
    full_at: [Vec<usize>; 2],
    /// A crash in the middle of a write is under way (no second one inside it).
    tearing: bool,
    /// Messages in flight, each with its position in its direction's stream on the current
    /// connection (the BOLT 8 nonce).
    net: Network<(u64, Msg)>,
    /// Per direction (by receiver): messages sent and messages received on this connection.
    stream_sent: [u64; 2],
    stream_received: [u64; 2],
    chain: Chain,
    funding: OutPoint,
    capacity: u64,
    /// Preimages by hash (both sides know every preimage: the receiver reveals it when the sim
    /// decides to fulfil).
    preimages: HashMap<PaymentHash, PaymentPreimage>,
    counter: u64,
    /// The connection broke (a dropped message or a warning): reconnect before going on.
    broken: bool,
    /// Who refused a message with `Action::Warn` last.
    warned_by: Option<usize>,
    /// A side closed unilaterally: no more messages.
    onchain: bool,
    /// Transactions broadcast whose parents were unconfirmed, to check again.
    deferred: Vec<Transaction>,
    /// Mempool transactions already reported to the parties ([`ChainEvent::Seen`]).
    seen: HashSet<Txid>,
    out: Outcome,
    reliable: bool,
    /// Each party's fee bumper, fed its channel's [`Effects::bumps`](crate::driving::Effects::bumps)
    /// and called each block with flat estimates.
    bumpers: [Bumper; 2],
    /// Each party's fee wallet.
    wallets: [FeeCoins; 2],
    /// The chain height at which each transaction was first broadcast (checked and recorded).
    broadcast_at: HashMap<Txid, u32>,
    /// What each bumper broadcast already (checked and recorded once).
    bumped: [HashSet<Txid>; 2],
    /// A tower run (module `tower`).
    tower: Option<TowerRun>,
    /// Bumper broadcasts a sabotage dropped or the hostile peer handled itself.
    bump_dropped: HashSet<Txid>,
    /// In a fee-spike run, the seed, until the spike is drawn again around the on-chain
    /// deadlines ([`super::respike`]) when a transaction spending the funding output first
    /// reaches the mempool.
    respike: Option<u64>,
}

/// What [`Sim::admit`] made of a broadcast.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Admitted {
    /// A sabotage dropped it.
    Dropped,
    /// The hostile peer handled it (in the mempool only).
    Handled,
    /// Checked and recorded: it goes to the mempool.
    Yes,
}

/// The flat estimate the simulation's embedders feed their bumpers: above the channels' sweep
/// feerate (1,000 sat/kW) and commitment feerates, so that every request is bumped (children pay
/// for their commitments, replacements conflict with the channel's first versions; the chain
/// has no fee market yet: the first valid one submitted wins).
const ESTIMATE: FeeratePerKw = FeeratePerKw(5_000);

/// Runs one seeded simulation.
///
/// # Errors
/// The first invariant violated.
pub fn run(seed: u64) -> Result<Outcome, String> {
    run_with(seed, Config::default())
}

/// Runs one seeded simulation with `config` (a [`Sabotage`] of the honest peers' embedders).
///
/// # Errors
/// The first invariant violated.
pub fn run_with(seed: u64, config: Config) -> Result<Outcome, String> {
    let mut rng = Rng::new(seed);
    let ct = if rng.chance(500) { ChannelType::StaticRemoteKey } else { ChannelType::AnchorsZeroFeeHtlc };
    let capacity = rng.range(300_000, 5_000_000);
    let push = rng.below(capacity / 2) * 1_000;
    let hostile = super::hostile_rng(seed, config).map(|hrng| Hostile::draw(hrng, ct, capacity));
    let pair = match &hostile {
        Some(h) => h.open(capacity, push),
        None => Pair::open(ct, capacity, push),
    };
    let faults = Faults::random(&mut rng, 60);
    let start = pair.tip - 1;
    let mut chain = if config.fee_spikes {
        // HTLC expiries and the close fall within a couple of hundred blocks of the opening.
        super::fee_spike_chain(seed, start, &[start + 2, start + 20, start + 50, start + 100, start + 160])
    } else {
        Chain::at(start)
    };
    chain.credit(&pair.funding);
    chain.advance(1);
    let funding = OutPoint { txid: pair.funding.compute_txid(), vout: 0 };
    let mut wallets = [FeeCoins::new(Wallet::new(0xe0)), FeeCoins::new(Wallet::new(0xe1))];
    for w in &mut wallets {
        for _ in 0..3 {
            w.add_coin(&mut chain, Amount::from_sat(1_000_000));
        }
    }
    let Pair { a, b, .. } = pair;
    let bad = match rng.below(10) {
        _ if config.cheater => Some(Bad::Cheater(rng.below(2) as usize)),
        0..=1 => Some(Bad::Cheater(rng.below(2) as usize)),
        2..=3 => Some(Bad::Lossy(rng.below(2) as usize)),
        _ => None,
    };
    let bad = hostile.as_ref().map_or(bad, |h| Some(Bad::Hostile(h.idx)));
    let mut sim = Sim {
        bad,
        hostile,
        sabotage: config.sabotage,
        known: HashMap::new(),
        recorded: [None; 2],
        broadcasts: Broadcasts::default(),
        fulfilled: [HashSet::new(), HashSet::new()],
        kept: Vec::new(),
        lost_state: [false; 2],
        offline: [false; 2],
        rng,
        nodes: [a, b],
        records_at: [Vec::new(), Vec::new()],
        full_at: [Vec::new(), Vec::new()],
        tearing: false,
        net: Network::new(faults),
        stream_sent: [0; 2],
        stream_received: [0; 2],
        chain,
        funding,
        capacity,
        preimages: HashMap::new(),
        counter: seed << 20,
        broken: false,
        warned_by: None,
        onchain: false,
        deferred: Vec::new(),
        seen: HashSet::new(),
        out: Outcome::default(),
        reliable: false,
        bumpers: [Bumper::new(), Bumper::new()],
        wallets,
        bumped: [HashSet::new(), HashSet::new()],
        broadcast_at: HashMap::new(),
        tower: None,
        bump_dropped: HashSet::new(),
        respike: config.fee_spikes.then_some(seed),
    };
    if let (Some(Bad::Cheater(c)), None) = (sim.bad, &sim.hostile) {
        let h = 1 - c;
        sim.tower =
            super::tower_rng(seed, config).map(|rng| TowerRun::new(rng, h, sim.nodes[h].ch.sweep_destination()));
    }
    for i in 0..2 {
        // The storage after the opening, as one full snapshot and the log.
        let node = &mut sim.nodes[i];
        let stored = node.ch.durable.clone().ok_or("the channel never wrote")?;
        node.persisted = vec![(node.ch.update_id(), stored)];
        sim.records_at[i] = vec![node.records.len()];
        sim.full_at[i] = vec![0];
    }
    sim.record_commitments();
    sim.hostile_start()?;
    let steps = sim.rng.range(10, 60);
    let run = (0..steps).try_for_each(|_| sim.step()).and_then(|()| sim.finish());
    run.map_err(|e| format!("{e} (misbehaving peer: {:?})", sim.bad))?;
    sim.out.net = sim.net.stats;
    Ok(sim.out)
}

/// Whether `PAYCHAN_SIM_TRACE` asks for a trace (refusals, broadcasts, bump requests and the
/// bumpers' events, block by block, and the settlement at the end).
fn trace() -> bool {
    std::env::var_os("PAYCHAN_SIM_TRACE").is_some()
}

fn wire(m: &Msg) -> Result<Msg, String> {
    Msg::decode(&m.encode()).map_err(|e| format!("own message does not decode: {e:?}"))
}

impl Sim {
    fn tip(&self) -> ChainTip {
        ChainTip::at(self.chain.height)
    }

    fn records(&self, i: usize) -> Result<Vec<PenaltyRecord>, String> {
        crate::lightning::records::penalty_records(&self.nodes[i].records).map_err(|e| format!("record: {e:?}"))
    }

    /// Persists, queues messages, checks and submits broadcasts.
    fn is_honest(&self, i: usize) -> bool {
        !matches!(self.bad, Some(Bad::Cheater(b) | Bad::Lossy(b) | Bad::Hostile(b)) if b == i)
    }

    fn absorb(&mut self, i: usize, fx: Effects) -> Result<(), String> {
        if self.offline[i] {
            return Ok(());
        }
        if fx.events.iter().any(|e| matches!(e, Event::LostState)) {
            if self.is_honest(i) {
                return Err(format!("honest peer {i} was told it lost state"));
            }
            self.lost_state[i] = true;
            self.out.lost_state += 1;
        }
        if (fx.send.iter().any(needs_write) || !fx.broadcast.is_empty()) && fx.update.is_none() {
            return Err(format!("peer {i} sent or broadcast without persisting first"));
        }
        let mut fx = fx;
        self.hostile_filter(i, &mut fx);
        if let Some(u) = fx.update {
            let node = &self.nodes[i];
            if node.persisted.last().is_some_and(|(last, _)| u.update_id <= *last) {
                return Err(format!("peer {i}: update id {} does not increase", u.update_id));
            }
            if !self.tearing && !self.reliable && !u.records.is_empty() && self.rng.chance(30) {
                // The crash comes in the middle of this write, or right after it: some of its
                // records are appended (a delta, last, only with all the others), nothing is
                // sent or broadcast.
                // A commitment broadcast whose write was lost (the channel restored as not
                // closed) is decided again after the restart (the embedder's force close); once
                // written, the restored channel broadcasts it again itself on the next block.
                let closes = fx.broadcast.iter().any(|t| {
                    t.input.iter().any(|inp| inp.previous_output == self.funding)
                        && self.nodes[i].ch.closing_transaction() != Some(t)
                });
                self.torn_write(i, u)?;
                if closes && !self.nodes[i].ch.is_off_chain_over() {
                    self.tearing = true;
                    let result = self.force_close(i);
                    self.tearing = false;
                    result?;
                }
                return Ok(());
            }
            self.store(i, u)?;
        }
        let node = &mut self.nodes[i];
        for e in &fx.events {
            if let Event::HtlcFulfilled { preimage, .. } = e {
                self.preimages.insert(preimage.hash(), *preimage);
            }
        }
        node.events.extend(fx.events);
        for m in fx.send {
            let m = wire(&m)?;
            if self.onchain {
                continue;
            }
            self.transmit(i, m);
        }
        self.record_commitments();
        let mut dropped = HashSet::new();
        for tx in fx.broadcast {
            let txid = tx.compute_txid();
            if trace() {
                std::println!(
                    "h{} peer {i} broadcasts {} spending {}",
                    self.chain.height,
                    super::short(&txid),
                    super::inputs(&tx)
                );
            }
            if !self.broadcast(i, tx)? {
                dropped.insert(txid);
            }
        }
        // The embedder hands each request to its bumper (a sabotaged broadcast's with it).
        for r in fx.bumps {
            if trace() {
                std::println!("h{} peer {i} bump request {r:?}", self.chain.height);
            }
            if !dropped.contains(&r.id()) {
                let _ = self.bumpers[i].track(r);
            }
        }
        self.tower_absorbed(i)
    }

    /// Each party's bumper works at the tip with the estimates of the market (flat ones
    /// without); what it makes is broadcast (and its fees charged to the party), a child with
    /// its parent as a package, again each block until it confirms.
    fn bump(&mut self) -> Result<(), String> {
        let tip = crate::core::BlockHeight(self.chain.height);
        for i in 0..2 {
            if self.offline[i] {
                continue;
            }
            self.wallets[i].sync(&self.chain);
            if self.sabotage == Sabotage::DisableBumper && self.is_honest(i) {
                self.out.sabotaged += u32::from(self.bumpers[i].pending().next().is_some());
                continue;
            }
            let est = super::estimates(&self.chain, ESTIMATE);
            let fx = self.bumpers[i].bump(tip, &est, &mut self.wallets[i], &self.nodes[i].signer);
            if trace() {
                for e in &fx.events {
                    std::println!("h{} peer {i} bumper {e:?}", self.chain.height);
                }
            }
            if super::in_spike(&self.chain) {
                let bumped = fx.events.iter().filter(|e| matches!(e, crate::core::feebump::BumpEvent::Bumped { .. }));
                self.out.spike_bumps += bumped.count() as u32;
            }
            let mut out = Vec::new();
            for tx in fx.broadcast {
                let txid = tx.compute_txid();
                if self.chain.confirmation(&txid).is_some() {
                    continue;
                }
                if self.bumped[i].insert(txid) {
                    if self.admit(i, &tx)? != Admitted::Yes {
                        self.bump_dropped.insert(txid);
                        continue;
                    }
                } else if self.bump_dropped.contains(&txid) {
                    continue;
                }
                out.push(tx);
            }
            super::submit_bumps(&mut self.chain, &out);
        }
        Ok(())
    }

    /// Stores a complete write of node `i`.
    fn store(&mut self, i: usize, u: crate::driving::StateUpdate) -> Result<(), String> {
        let node = &mut self.nodes[i];
        let state = stored_state(node.persisted.last().map(|(id, s)| (*id, s.as_slice())), &u)
            .map_err(|e| format!("peer {i}: write {} does not apply to the stored state: {e}", u.update_id))?;
        let k = node.persisted.len();
        let full =
            if u.is_full() { k } else { self.full_at[i].last().copied().ok_or("a delta before any snapshot")? };
        node.persisted.push((u.update_id, state));
        node.records.extend(u.records);
        self.records_at[i].push(node.records.len());
        self.full_at[i].push(full);
        Ok(())
    }

    /// A crash during a write: the records appended so far are in the log, the rest (and the
    /// snapshot, which replaces the stored one last) is not; or the write completed and the crash
    /// came before anything was sent.
    fn torn_write(&mut self, i: usize, u: crate::driving::StateUpdate) -> Result<(), String> {
        self.out.torn_writes += 1;
        if trace() {
            std::eprintln!("LN torn write of peer {i}: update {} ({} records)", u.update_id, u.records.len());
        }
        let n = u.records.len();
        let complete = self.rng.chance(300);
        if complete {
            self.store(i, u)?;
        } else {
            // A delta is the last record: with it the write is complete. A write merging several
            // updates has a delta for each: the storage holds the state of the last one
            // appended (one the channel was in, nothing of it sent).
            let upto = if u.is_full() { n } else { n - 1 };
            let j = self.rng.below(upto as u64 + 1) as usize;
            let prefix: Vec<Vec<u8>> = u.records.into_iter().take(j).collect();
            let node = &mut self.nodes[i];
            let (id, previous) = node.persisted.last().cloned().ok_or("a write before any snapshot")?;
            let (state, reached) = crate::core::delta::replay(&previous, id, &prefix)
                .map_err(|e| format!("peer {i}: a torn write does not replay: {e}"))?;
            node.records.extend(prefix);
            if reached > id {
                node.persisted.push((reached, state));
                self.records_at[i].push(node.records.len());
                let full = self.full_at[i].last().copied().ok_or("no snapshot")?;
                self.full_at[i].push(full);
            }
        }
        self.tearing = true;
        let result = self.crash(i);
        self.tearing = false;
        result
    }

    /// Restores node `i` as its storage was after its write `k`: the full snapshot stored then
    /// and the log as it was then.
    pub(super) fn restore_write(
        &self,
        i: usize,
        k: usize,
        check: RestoreCheck,
    ) -> Result<Channel, crate::driving::RestoreError> {
        let node = &self.nodes[i];
        let base = self.full_at[i].get(k).and_then(|&f| node.persisted.get(f)).map_or(&[][..], |(_, s)| s);
        let len = self.records_at[i].get(k).copied().unwrap_or(0).min(node.records.len());
        Channel::restore_with_records(base, &node.records[..len], check)
    }

    /// Records the commitments each peer signed for the other (what either may broadcast).
    fn record_commitments(&mut self) {
        for i in 0..2 {
            let n = self.nodes[i].ch.counterparty_commitment_number();
            if self.recorded[i] == Some(n) {
                continue;
            }
            if let Some(built) = self.nodes[i].ch.counterparty_commitment() {
                self.recorded[i] = Some(n);
                self.known.entry(built.txid()).or_insert((1 - i, built));
            }
        }
    }

    /// Whether an HTLC output of commitment `built` (owned by `owner`) is `i`'s: offered to `i`
    /// and fulfilled by `i` (it knows the preimage), or offered by `i` and never fulfilled by
    /// the peer (it times out back to `i`).
    fn htlc_favours(&self, i: usize, owner: usize, built: &BuiltCommitment, k: usize) -> bool {
        let Some(h) = built.htlcs().get(k) else { return false };
        let offerer = match h.direction() {
            HtlcDirection::Offered => owner,
            HtlcDirection::Received => 1 - owner,
        };
        if offerer == i {
            !self.fulfilled[1 - i].contains(&h.payment_hash())
        } else {
            self.fulfilled[i].contains(&h.payment_hash())
        }
    }

    /// Whether output `vout` of the commitment `txid` belongs to peer `i` (by the protocol:
    /// its balance output, or an HTLC resolved in its favour; every output but the anchors of a
    /// revoked commitment goes to the peer that punishes it).
    fn commitment_output_of(&self, i: usize, txid: &Txid, vout: u32, revoked: bool) -> bool {
        let Some((owner, built)) = self.known.get(txid) else { return false };
        let Some(role) = built.outputs().get(vout as usize).map(|o| o.role) else { return false };
        match role {
            OutputRole::BroadcasterAnchor | OutputRole::CountersignatoryAnchor => false,
            _ if revoked => *owner != i,
            OutputRole::ToBroadcaster => *owner == i,
            OutputRole::ToCountersignatory => *owner != i,
            OutputRole::Htlc(k) => self.htlc_favours(i, *owner, built, k),
        }
    }

    /// What transaction `tx`, broadcast by peer `i`, is.
    fn classify(&self, i: usize, tx: &Transaction) -> TxKind {
        let Some(prev) = tx.input.first().map(|inp| inp.previous_output) else { return TxKind::Other };
        if prev == self.funding {
            return TxKind::Close;
        }
        let revoked = matches!(self.nodes[i].ch.closing_kind(), Some(ClosingKind::Revoked(_)));
        if let Some((owner, built)) = self.known.get(&prev.txid) {
            let role = built.outputs().get(prev.vout as usize).map(|o| o.role);
            return match role {
                Some(OutputRole::ToCountersignatory) if *owner != i => TxKind::Sweep,
                Some(OutputRole::BroadcasterAnchor | OutputRole::CountersignatoryAnchor) | None => TxKind::Other,
                Some(_) if revoked && *owner != i => TxKind::Penalty,
                Some(OutputRole::Htlc(_)) => TxKind::HtlcClaim,
                Some(_) => TxKind::Sweep,
            };
        }
        // The output of a second-stage transaction: ours after the delay, or the cheater's.
        let parent =
            self.chain.tx(&prev.txid).or_else(|| self.chain.mempool().iter().find(|t| t.compute_txid() == prev.txid));
        let grandparent = parent.and_then(|p| p.input.first()).map(|inp| inp.previous_output.txid);
        match grandparent.and_then(|g| self.known.get(&g)) {
            Some((owner, _)) if revoked && *owner != i => TxKind::Penalty,
            Some(_) => TxKind::Sweep,
            None => TxKind::Other,
        }
    }

    /// Broadcasts `tx` for peer `i`; `false` if a sabotage dropped it.
    fn broadcast(&mut self, i: usize, tx: Transaction) -> Result<bool, String> {
        match self.admit(i, &tx)? {
            Admitted::Dropped => Ok(false),
            Admitted::Handled => Ok(true),
            Admitted::Yes => {
                let _ = self.chain.submit(&tx);
                if !self.deferred.iter().any(|t| t == &tx) && self.chain.check(&tx).is_err() {
                    // Deferred or conflicted: the mempool takes it once its parent confirms.
                    self.deferred.push(tx);
                }
                Ok(true)
            }
        }
    }

    /// The checks and records of a broadcast of peer `i`, before it goes to the mempool.
    fn admit(&mut self, i: usize, tx: &Transaction) -> Result<Admitted, String> {
        let tx = tx.clone();
        if self.is_honest(i) {
            let dropped = matches!(
                (self.sabotage, self.classify(i, &tx)),
                (Sabotage::DropPenalties, TxKind::Penalty)
                    | (Sabotage::DropSweeps, TxKind::Sweep)
                    | (Sabotage::DropHtlcClaims, TxKind::HtlcClaim)
            );
            if dropped {
                self.out.sabotaged += 1;
                return Ok(Admitted::Dropped);
            }
        }
        if self.hostile_mempool_only(i, &tx)? {
            return Ok(Admitted::Handled);
        }
        self.broadcasts.record(i, &tx);
        self.broadcast_at.entry(tx.compute_txid()).or_insert(self.chain.height);
        if tx.input.iter().any(|inp| inp.previous_output == self.funding) {
            let closing = self.nodes[i].ch.closing_transaction().map(Transaction::compute_txid);
            if closing != Some(tx.compute_txid()) {
                // A commitment: it must be our latest one.
                let latest = self.nodes[i]
                    .ch
                    .holder_commitment_tx(&self.nodes[i].signer)
                    .map_err(|e| format!("peer {i} has no commitment: {e:?}"))?;
                if latest.compute_txid() != tx.compute_txid() {
                    return Err(format!("peer {i} broadcast a commitment that is not its latest"));
                }
            }
        }
        match check_broadcast(&self.chain, &tx).map_err(|e| format!("peer {i}: {e}"))? {
            BroadcastCheck::Deferred => self.deferred.push(tx.clone()),
            BroadcastCheck::Valid | BroadcastCheck::Conflicted => {}
        }
        Ok(Admitted::Yes)
    }

    /// Puts `m` from `from` on the connection, numbered in its stream (BOLT 8: a message lost
    /// breaks the connection).
    fn transmit(&mut self, from: usize, m: Msg) {
        let seq = self.stream_sent[1 - from];
        self.stream_sent[1 - from] += 1;
        let m = (seq, m);
        if self.reliable {
            self.net.send_reliably(1 - from, m);
        } else {
            let dropped = self.net.stats[1];
            self.net.send(1 - from, m, &mut self.rng);
            if self.net.stats[1] != dropped {
                self.broken = true;
            }
        }
    }

    fn deliver(&mut self, to: usize, m: Msg) -> Result<(), String> {
        if self.onchain || self.offline[to] || self.is_silent(to) {
            return Ok(());
        }
        let tip = self.tip();
        // A lossy or hostile peer may send what an honest one refuses as a bad signature.
        let lossy = matches!(self.bad, Some(Bad::Lossy(_) | Bad::Hostile(_)));
        let fee = matches!(m, Msg::UpdateFee { .. });
        let node = &mut self.nodes[to];
        let shown = trace().then(|| format!("{m:?}"));
        let result = node.ch.handle_message(m, &node.signer, tip);
        if result.is_err() && matches!(self.bad, Some(Bad::Hostile(h)) if h != to) {
            self.out.hostile_refused += 1;
            self.out.fees_refused += u32::from(fee);
        }
        let node = &self.nodes[to];
        match result {
            Ok(fx) => self.absorb(to, fx),
            Err(e) if !lossy && matches!(e.kind, crate::lightning::Misbehaviour::BadSignature(_)) => {
                // Peers that follow the protocol (the cheater does until it cheats, then goes
                // silent) never disagree on a commitment: a signature one refuses is a bug, which
                // the force close it leads to must not hide.
                Err(format!("peer {to} refused its peer's signature: {e}"))
            }
            Err(e) => match e.action {
                _ if shown.is_some() && {
                    std::eprintln!("peer {to} ({:?}) refused {:?}: {e:?}", node.ch.phase(), shown);
                    false
                } =>
                {
                    unreachable!()
                }
                Action::Ignore => Ok(()),
                Action::Warn => {
                    // Tell the peer with a BOLT #1 `warning` (which must change nothing there),
                    // then disconnect: what follows on this connection may build on the refused
                    // message.
                    let warning = e.warning(self.nodes[to].ch.channel_id());
                    let from = 1 - to;
                    if let (Some(w), false) = (warning, self.offline[from] || self.is_silent(from)) {
                        let peer = &mut self.nodes[from];
                        let before = peer.ch.snapshot();
                        let fx = peer
                            .ch
                            .handle_message(w, &peer.signer, tip)
                            .map_err(|e| format!("warning refused: {e}"))?;
                        if !fx.is_empty() || peer.ch.snapshot() != before {
                            return Err(format!("a warning changed peer {from}"));
                        }
                    }
                    self.net.clear();
                    self.broken = true;
                    self.warned_by = Some(to);
                    Ok(())
                }
                Action::Close | Action::ForceClose => self.force_close(to),
            },
        }
    }

    /// The next message the receiver's BOLT 8 transport hands its channel. The transport
    /// authenticates each message under its position in the stream (the nonce), so a lost,
    /// duplicated or reordered message fails there and drops the connection: the channel only
    /// ever sees, on each connection, a prefix of what the peer sent, in order.
    fn next_msg(&mut self) -> Option<(usize, Msg)> {
        let (to, (seq, m)) = self.net.next(&mut self.rng)?;
        if seq != self.stream_received[to] {
            self.net.clear();
            self.broken = true;
            return None;
        }
        self.stream_received[to] += 1;
        Some((to, m))
    }

    fn force_close(&mut self, i: usize) -> Result<(), String> {
        if self.lost_state[i] || self.offline[i] {
            // Told it lost state: its commitment may be revoked; it waits for the peer's.
            return Ok(());
        }
        let node = &mut self.nodes[i];
        match node.ch.force_close(&node.signer) {
            Ok(fx) => {
                self.out.unilateral = true;
                self.absorb(i, fx)
            }
            Err(_) => Ok(()), // already closing on chain
        }
    }

    fn stop_offchain(&mut self) {
        if !self.onchain {
            let live = self.nodes.iter().map(|n| n.ch.htlcs().iter().filter(|h| !h.is_removed()).count());
            self.out.htlcs_on_chain += live.max().unwrap_or(0) as u32;
        }
        self.onchain = true;
        self.net.clear();
    }

    fn reconnect(&mut self) -> Result<(), String> {
        // No crash in the middle of a write during the reconnection itself: the embedder would
        // not go on with the exchange it started before the crash.
        let tearing = std::mem::replace(&mut self.tearing, true);
        let result = self.reconnect_now();
        self.tearing = tearing;
        result
    }

    fn reconnect_now(&mut self) -> Result<(), String> {
        self.broken = false;
        if self.onchain {
            return Ok(());
        }
        self.net.clear();
        // A new connection: a new BOLT 8 session.
        self.stream_sent = [0; 2];
        self.stream_received = [0; 2];
        for i in 0..2 {
            let fx = self.nodes[i].ch.handle_disconnect();
            self.absorb(i, fx)?;
        }
        let mut msgs = Vec::new();
        for i in 0..2 {
            let node = &self.nodes[i];
            let m = node.ch.reestablish(&node.signer).map_err(|e| format!("reestablish: {e:?}"))?;
            msgs.push(self.hostile_reestablish(i).unwrap_or(m));
        }
        for (i, m) in msgs.into_iter().enumerate() {
            if self.is_silent(i) {
                continue;
            }
            let m = wire(&m)?;
            self.deliver(1 - i, m)?;
        }
        Ok(())
    }

    fn crash(&mut self, i: usize) -> Result<(), String> {
        if self.offline[i] {
            return Ok(());
        }
        let lossy = self.bad == Some(Bad::Lossy(i)) && !self.closing_on_chain() && self.rng.chance(400);
        let n = self.nodes[i].persisted.len();
        // Any stored state under the channel's final id (from `funding_signed` on).
        let id = Some(self.nodes[i].ch.channel_id());
        let first =
            (0..n).find(|&k| self.restore_write(i, k, RestoreCheck { channel_id: id, min_update_id: 0 }).is_ok());
        match first {
            Some(f) if lossy && f + 1 < n => {
                // Restart from an older state, believing it current: the newer writes are lost,
                // with the records they appended and the snapshots they stored.
                let k = f + self.rng.below((n - 1 - f) as u64) as usize;
                self.nodes[i].persisted.truncate(k + 1);
                if let Some(&len) = self.records_at[i].get(k) {
                    self.nodes[i].records.truncate(len);
                }
                self.records_at[i].truncate(k + 1);
                self.full_at[i].truncate(k + 1);
                self.out.lost_data += 1;
            }
            _ => self.out.crashes += 1,
        }
        let node = &self.nodes[i];
        let Some((latest, bytes)) = node.persisted.last().cloned() else { return Ok(()) };
        let k = node.persisted.len() - 1;
        let check = RestoreCheck { channel_id: Some(node.ch.channel_id()), min_update_id: latest };
        let lost = self.out.lost_data > 0 && self.bad == Some(Bad::Lossy(i));
        let older = node.persisted.iter().rposition(|(id, _)| *id < latest).filter(|_| !lost);
        if let Some(old) = older {
            match self.restore_write(i, old, check) {
                Err(crate::driving::RestoreError::Stale { .. }) => self.out.stale_refused += 1,
                other => {
                    return Err(format!(
                        "peer {i}: stale state {} (latest {latest}) not refused: {:?}",
                        node.persisted[old].0,
                        other.err()
                    ))
                }
            }
        }
        // The storage now: the stored snapshot and the whole log (with what a write torn by the
        // crash appended).
        let base = self.full_at[i].get(k).and_then(|&f| node.persisted.get(f)).map(|(_, s)| s.clone());
        let restored = Channel::restore_with_records(base.as_deref().unwrap_or(&[]), &node.records, check)
            .map_err(|e| format!("peer {i}: restore failed: {e}"))?;
        if restored.snapshot() != bytes {
            let now = restored.snapshot();
            let at = now.iter().zip(&bytes).position(|(x, y)| x != y);
            return Err(format!(
                "peer {i}: restore is not byte-identical ({} / {} bytes, first difference at {at:?}, write {k}, base {:?}, tearing {})",
                now.len(),
                bytes.len(),
                self.full_at[i].get(k),
                self.tearing
            ));
        }
        if self.bad != Some(Bad::Lossy(i)) && self.rng.chance(500) {
            // The embedder compacts its storage against the state it restored: that state as
            // the stored snapshot, then the log without what the snapshot includes. (Not for a
            // lossy node: its older states, which it may fall back to, need the full log.) The
            // older states cannot be rebuilt any more.
            let node = &mut self.nodes[i];
            node.records.retain(|r| restored.keeps_record(r));
            node.persisted.drain(..k);
            self.records_at[i] = vec![node.records.len()];
            self.full_at[i] = vec![0];
            self.out.compactions += 1;
        }
        self.nodes[i].ch = restored;
        self.hostile_restored(i)?;
        self.fulfil_again(i)?;
        // The restarted node rescans the chain: the funding transaction, every channel
        // transaction and the tip.
        let txs: Vec<Transaction> = core::iter::once(self.funding.txid)
            .chain(Settlement::of(&self.chain, self.funding).txs)
            .filter_map(|t| self.chain.tx(&t).cloned())
            .collect();
        let records = self.records(i)?;
        for tx in &txs {
            let height = crate::core::BlockHeight(self.chain.confirmation(&tx.compute_txid()).unwrap_or(0));
            let node = &mut self.nodes[i];
            let fx = node.ch.handle_chain_with_history(ChainEvent::Confirmed { tx, height }, &records, &node.signer);
            self.absorb(i, fx)?;
        }
        let tip = self.tip();
        let node = &mut self.nodes[i];
        let fx = node.ch.handle_chain_with_history(ChainEvent::Tip(tip), &records, &node.signer);
        self.absorb(i, fx)?;
        self.reconnect()
    }

    /// The embedder's duty after a restart (driving: persistence): a fulfilment not yet covered
    /// by a `commitment_signed` is not in the stored state; it knows the preimage and fulfils
    /// again (or, too close to the expiry to reveal it off chain, hands it to the channel for
    /// the claim on chain).
    fn fulfil_again(&mut self, i: usize) -> Result<(), String> {
        if !self.is_honest(i) {
            return Ok(());
        }
        let lost: Vec<(u64, PaymentPreimage)> = self.nodes[i]
            .ch
            .htlcs()
            .iter()
            .filter(|h| h.offerer == Side::Counterparty && h.remove.is_none())
            .filter(|h| self.fulfilled[i].contains(&h.payment_hash))
            .filter_map(|h| Some((h.id, *self.preimages.get(&h.payment_hash)?)))
            .collect();
        for (id, pre) in lost {
            self.out.fulfilled_again += 1;
            if trace() {
                std::eprintln!("LN peer {i} fulfils {id} again");
            }
            let node = &mut self.nodes[i];
            let fx = match node.ch.fulfill_htlc(id, pre) {
                Ok(fx) => fx,
                Err(_) => node.ch.provide_preimage(id, pre),
            };
            self.absorb(i, fx)?;
        }
        Ok(())
    }

    fn mine(&mut self) -> Result<(), String> {
        self.tower_before_block()?;
        self.respike();
        self.bump()?;
        for tx in self.deferred.clone() {
            let _ = self.chain.submit(&tx);
        }
        self.report_mempool()?;
        let mined = self.chain.mine_block();
        let height = crate::core::BlockHeight(self.chain.height);
        for tx in &mined {
            self.deferred.retain(|t| t != tx);
            self.notify(ChainEvent::Confirmed { tx, height })?;
        }
        self.notify(ChainEvent::Tip(self.tip()))?;
        self.tower_after_block(&mined)?;
        self.police_htlcs()
    }

    /// In a fee-spike run, the first time a transaction spending the funding output (a
    /// commitment, revoked or not, or a closing transaction) is in the mempool: the spike is
    /// drawn again around the deadlines that matter now, the commitment's next block and the
    /// expiries of the HTLCs still in the channel, so that bumping under a spike is exercised
    /// where it counts (a spike drawn at the opening mostly fell before or after them).
    fn respike(&mut self) {
        let Some(seed) = self.respike else { return };
        let funding = self.funding;
        if !self.chain.mempool().iter().any(|t| t.input.iter().any(|i| i.previous_output == funding)) {
            return;
        }
        self.respike = None;
        let mut around: Vec<u32> = self
            .nodes
            .iter()
            .flat_map(|n| n.ch.htlcs().iter().filter(|h| !h.is_removed()).map(|h| h.cltv_expiry))
            .collect();
        around.sort_unstable();
        around.dedup();
        super::respike(&mut self.chain, seed, &around);
        if trace() {
            std::println!("h{} respiked around {around:?}: {:?}", self.chain.height, self.chain.market());
        }
    }

    /// The embedders report what they see in the mempool ([`ChainEvent::Seen`]), each
    /// transaction once.
    fn report_mempool(&mut self) -> Result<(), String> {
        let fresh: Vec<Transaction> =
            self.chain.mempool().iter().filter(|t| !self.seen.contains(&t.compute_txid())).cloned().collect();
        for tx in &fresh {
            self.seen.insert(tx.compute_txid());
            self.notify(ChainEvent::Seen { tx })?;
        }
        Ok(())
    }

    fn notify(&mut self, ev: ChainEvent<'_>) -> Result<(), String> {
        for i in 0..2 {
            if self.offline[i] {
                continue;
            }
            let records = self.records(i)?;
            let _ = self.bumpers[i].handle_chain(&ev);
            let node = &mut self.nodes[i];
            let fx = node.ch.handle_chain_with_history(ev, &records, &node.signer);
            if let ChainEvent::Confirmed { tx, .. } = ev {
                if tx.input.iter().any(|inp| inp.previous_output == self.funding) {
                    self.stop_offchain();
                }
            }
            self.absorb(i, fx)?;
        }
        Ok(())
    }

    /// BOLT 2: a peer whose offered HTLC is about to expire (or who knows the preimage of a
    /// received HTLC about to expire) fails the channel.
    fn police_htlcs(&mut self) -> Result<(), String> {
        if self.onchain {
            return Ok(());
        }
        let h = self.chain.height;
        for i in 0..2 {
            // Against a hostile peer the channel's own deadlines (`HtlcDeadlines`) must do.
            if self.lost_state[i] || self.offline[i] || self.hostile.is_some() {
                continue;
            }
            let ch = &self.nodes[i].ch;
            let urgent = ch.htlcs().iter().any(|x| {
                !x.is_removed()
                    && match x.offerer {
                        Side::Holder => x.cltv_expiry <= h + 3,
                        Side::Counterparty => x.preimage().is_some() && x.cltv_expiry <= h + 12,
                    }
            });
            if urgent {
                return self.force_close(i);
            }
        }
        Ok(())
    }

    fn step(&mut self) -> Result<(), String> {
        self.out.steps += 1;
        if self.tower_step(false)? {
            return Ok(());
        }
        if self.broken {
            self.reconnect()?;
        }
        let i = self.rng.below(2) as usize;
        if self.hostile_turn(i) {
            return self.hostile_step();
        }
        match self.rng.below(100) {
            0..=19 if !self.onchain => {
                let tip = self.chain.height;
                self.counter += 1;
                let mut bytes = [0u8; 32];
                bytes[..8].copy_from_slice(&self.counter.to_be_bytes());
                let pre = PaymentPreimage(bytes);
                self.preimages.insert(pre.hash(), pre);
                let amount = MilliSats::from_msat(self.rng.range(1_000, self.capacity * 200));
                let expiry = tip + self.expiry_delta() as u32;
                if let Ok((_, fx)) = self.nodes[i].ch.add_htlc(amount, pre.hash(), expiry, onion()) {
                    self.out.htlcs += 1;
                    self.absorb(i, fx)?;
                }
            }
            20..=34 if !self.onchain => {
                let node = &mut self.nodes[i];
                if node.ch.has_unsigned_changes() && !node.ch.is_awaiting_revoke() {
                    if let Ok(fx) = node.ch.commit(&node.signer) {
                        self.absorb(i, fx)?;
                    }
                }
            }
            35..=44 if !self.onchain => self.settle_some(i, false)?,
            45..=74 => {
                for _ in 0..self.rng.range(1, 6) {
                    let Some((to, m)) = self.next_msg() else { break };
                    self.deliver(to, m)?;
                }
            }
            75..=84 => self.mine()?,
            85..=87 if !self.onchain => {
                let node = &mut self.nodes[0];
                let rate = self.rng.range(253, 10_000) as u32;
                if let Ok(fx) = node.ch.update_fee(rate) {
                    self.absorb(0, fx)?;
                }
            }
            88..=90 => self.crash(i)?,
            91 if self.bad == Some(Bad::Cheater(i)) => {
                let node = &self.nodes[i];
                if let Ok(tx) = node.ch.holder_commitment_tx(&node.signer) {
                    if !self.kept.contains(&tx) {
                        self.kept.push(tx);
                    }
                }
            }
            92..=93 => self.broken = true,
            94 => {
                let depth = self.rng.range(1, 3) as u32;
                self.reorg(depth)?;
            }
            95 if !self.onchain && self.rng.chance(300) => self.force_close(i)?,
            96 if !self.onchain && self.rng.chance(300) => {
                let node = &mut self.nodes[i];
                let script = node.ch.sweep_destination();
                let fee_range = (Amount::from_sat(1_000), Amount::from_sat(20_000));
                if let Ok(fx) = node.ch.shutdown(script, fee_range, &node.signer) {
                    self.out.shutdowns += 1;
                    self.absorb(i, fx)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn reorg(&mut self, depth: u32) -> Result<(), String> {
        self.out.reorgs += 1;
        for tx in self.deferred.clone() {
            let _ = self.chain.submit(&tx);
        }
        let (gone, mined) = self.chain.reorg_to_longer(depth);
        for txid in gone {
            self.notify(ChainEvent::Unconfirmed(txid))?;
        }
        for (tx, h) in &mined {
            self.deferred.retain(|t| t != tx);
            self.notify(ChainEvent::Confirmed { tx, height: crate::core::BlockHeight(*h) })?;
        }
        self.notify(ChainEvent::Tip(self.tip()))?;
        self.police_htlcs()
    }

    /// Fulfils or fails HTLCs offered to `i` that are irrevocably committed.
    fn settle_some(&mut self, i: usize, all: bool) -> Result<(), String> {
        if self.hostile.as_ref().is_some_and(|h| h.idx == i) {
            return self.hostile_settle();
        }
        let ready: Vec<(u64, PaymentHash)> = self.nodes[i]
            .ch
            .htlcs()
            .iter()
            .filter(|h| h.offerer == Side::Counterparty && h.is_irrevocably_committed() && h.remove.is_none())
            .map(|h| (h.id, h.payment_hash))
            .collect();
        for (id, hash) in ready {
            if !all && self.rng.chance(400) {
                continue;
            }
            let fx = match self.preimages.get(&hash) {
                Some(pre) if self.rng.chance(800) => {
                    self.out.payments += 1;
                    let fx = self.nodes[i].ch.fulfill_htlc(id, *pre);
                    if fx.is_ok() {
                        self.fulfilled[i].insert(hash);
                    }
                    fx
                }
                _ => self.nodes[i].ch.fail_htlc(id, vec![1; 8]),
            };
            if let Ok(fx) = fx {
                self.absorb(i, fx)?;
            }
        }
        Ok(())
    }

    /// Whether the channel is being closed on chain (broadcast or confirmed).
    /// (A side that only lost state is not closing: it waits for the other side, which its
    /// `error` asks to close.)
    fn closing_on_chain(&self) -> bool {
        self.onchain || self.nodes.iter().any(|n| n.ch.is_off_chain_over() && !n.ch.has_lost_state())
    }

    fn quiesce(&mut self) -> Result<(), String> {
        let mut refused_again = 0;
        for _ in 0..200 {
            if self.closing_on_chain() {
                return Ok(());
            }
            if self.broken {
                // Embedder policy (`Action::Warn`): a peer whose messages are refused again after
                // every reconnection has a state that diverged from ours; the channel cannot
                // progress, so the refusing side closes it on chain.
                refused_again += 1;
                if refused_again > 3 && self.bad.is_none() {
                    return Err(
                        "peers following the protocol refuse each other's messages at every reconnection".into()
                    );
                }
                if refused_again > 3 {
                    if let Some(i) = self.warned_by.take() {
                        self.out.unilateral = true;
                        self.force_close(i)?;
                        continue;
                    }
                }
                self.reconnect()?;
            }
            while let Some((to, m)) = self.next_msg() {
                self.deliver(to, m)?;
            }
            let mut acted = false;
            for i in 0..2 {
                self.settle_some(i, true)?;
                let node = &mut self.nodes[i];
                if node.ch.has_unsigned_changes() && !node.ch.is_awaiting_revoke() {
                    if let Ok(fx) = node.ch.commit(&node.signer) {
                        self.absorb(i, fx)?;
                        acted = true;
                    }
                }
            }
            let live = self.nodes.iter().any(|n| n.ch.htlcs().iter().any(|h| !h.is_removed()));
            if !acted && self.net.is_empty() && !self.broken && !live {
                return Ok(());
            }
        }
        Err(format!(
            "the channel did not quiesce over a reliable connection: phases {:?}, broken {}, in flight {}, htlcs {:?}, unsigned {:?}, awaiting revoke {:?}",
            self.nodes.iter().map(|n| n.ch.phase()).collect::<Vec<_>>(),
            self.broken,
            !self.net.is_empty(),
            self.nodes.iter().map(|n| n.ch.htlcs().len()).collect::<Vec<_>>(),
            self.nodes.iter().map(|n| n.ch.has_unsigned_changes()).collect::<Vec<_>>(),
            self.nodes.iter().map(|n| n.ch.is_awaiting_revoke()).collect::<Vec<_>>(),
        ))
    }

    /// The end of the off-chain phase: a reconnection over a perfect connection, the cheater's
    /// revoked commitment, a cooperative close or a unilateral one.
    fn close_at_end(&mut self) -> Result<(), String> {
        if !self.closing_on_chain() {
            self.reconnect()?;
            if let Err(e) = self.quiesce() {
                self.give_up(e)?;
            }
        }
        if let Some(Bad::Cheater(c)) = self.bad {
            if !self.closing_on_chain() {
                self.cheat(c)?;
            }
        }
        if !self.closing_on_chain() && self.rng.chance(600) {
            let fee_range = (Amount::from_sat(1_000), Amount::from_sat(20_000));
            for i in 0..2 {
                let node = &mut self.nodes[i];
                let script = node.ch.sweep_destination();
                if let Ok(fx) = node.ch.shutdown(script, fee_range, &node.signer) {
                    self.absorb(i, fx)?;
                }
                while let Some((to, m)) = self.next_msg() {
                    self.deliver(to, m)?;
                }
            }
        }
        if !self.closing_on_chain() && self.nodes.iter().all(|n| n.ch.phase() != Phase::Closed) {
            let i = self.rng.below(2) as usize;
            let i = if self.lost_state[i] { 1 - i } else { i };
            self.force_close(i)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), String> {
        // The rest runs over a perfect connection.
        self.net.faults = Faults::NONE;
        self.reliable = true;
        if self.tower.is_some() {
            self.tower_step(true)?;
        }
        if !self.tower.as_ref().is_some_and(|t| t.offline) {
            // (In a tower run both peers stopped: nobody closes; the cheater publishes when its
            // time comes.)
            self.close_at_end()?;
        }
        self.onchain = true;
        // (A hostile peer may impose the longest `to_self_delay` the honest peer accepts: 2,016.)
        for _ in 0..4_500 {
            self.mine()?;
            let settled = Settlement::of(&self.chain, self.funding);
            let coop = self.nodes.iter().any(|n| n.ch.closing_kind() == Some(ClosingKind::Cooperative));
            let resolved = (0..2)
                .all(|i| !self.is_honest(i) || self.nodes[i].ch.is_fully_resolved() || self.tower_done(i))
                || (coop && !settled.txs.is_empty() && self.chain.mempool().is_empty());
            if resolved && self.chain.mempool().is_empty() {
                break;
            }
        }
        self.check_end()
    }

    /// The cheater broadcasts a revoked commitment it kept, and goes silent.
    fn cheat(&mut self, c: usize) -> Result<(), String> {
        let node = &self.nodes[c];
        let current = node.ch.holder_commitment_tx(&node.signer).ok();
        let Some(old) = self.kept.iter().find(|t| Some(*t) != current.as_ref()).cloned() else { return Ok(()) };
        if self.chain.submit(&old).is_err() {
            return Ok(());
        }
        self.out.cheats += 1;
        self.out.unilateral = true;
        self.offline[c] = true;
        self.onchain = true;
        self.net.clear();
        Ok(())
    }

    fn check_end(&mut self) -> Result<(), String> {
        for (i, n) in self.nodes.iter().enumerate() {
            if !self.is_honest(i) || self.tower_offline_breach(i).is_some() {
                // The cheater went silent; a peer that lost data may not recognise the close; a
                // peer offline for good never saw it (its tower did).
                continue;
            }
            match n.ch.closing_kind() {
                // The penalty case: what the cheater is there for.
                Some(ClosingKind::Revoked(_)) if self.bad == Some(Bad::Cheater(1 - i)) => {}
                Some(ClosingKind::Revoked(k)) => {
                    return Err(format!("peer {i} saw the other peer's revoked commitment {k}"))
                }
                Some(ClosingKind::Unknown) => return Err(format!("peer {i} cannot interpret the close")),
                None => return Err(format!("peer {i} never saw the channel close")),
                _ => {}
            }
        }
        for tx in &self.deferred {
            let conflicted = tx.input.iter().any(|i| !self.chain.is_unspent(&i.previous_output));
            if !conflicted {
                return Err(format!("broadcast {} never became valid: {:?}", tx.compute_txid(), self.chain.check(tx)));
            }
        }
        self.out.stranded_htlcs = self.check_money()?;
        Ok(())
    }

    /// The exact accounting: each honest peer ends with at least what it was owed less the fees
    /// of the transactions it broadcast; a cheater with at most what the protocol leaves it.
    ///
    /// What a peer is owed depends on what closed the channel (the funding output's spender `C`):
    /// * the cooperative close: its balance (sat, rounded down), less the closing fee if it is
    ///   the funder (BOLT 2), or nothing if that is below the dust limit (the output is left out);
    /// * a commitment that was not revoked (its own latest, or one of the peer's it signed and
    ///   the peer did not revoke): its balance output of `C` and every HTLC output of `C`
    ///   resolved in its favour (offered to it and fulfilled by it, or offered by it and never
    ///   fulfilled by the peer). The funder pays `C`'s fee and the anchors out of its balance
    ///   (BOLT 3); an HTLC or balance below the dust limit is trimmed into `C`'s fee, a loss
    ///   for the peer it would have gone to; `C`'s outputs (built by the channel, checked
    ///   against the BOLT 3 vectors elsewhere) are the state's amounts after those rules;
    /// * a revoked commitment of the peer (the cheater): every output of `C` but the anchors.
    ///
    /// The fees of every other transaction are charged to the peer that broadcast it
    /// ([`Broadcasts`]). An output of the peer's own that it does not claim because claiming it
    /// would cost more than it holds ([`UNECONOMICAL`]: left unspent, or taken by the peer
    /// once its timeout passed) counts as its fee, and so does an HTLC output of its own
    /// commitment without anchors that a fee spike kept from confirming in time at the feerate
    /// the funder set ([`Sim::stranded`]).
    ///
    /// Returns how many HTLCs it counted as stranded.
    fn check_money(&self) -> Result<u32, String> {
        let settled = Settlement::of(&self.chain, self.funding);
        let scripts = [self.nodes[0].ch.sweep_destination(), self.nodes[1].ch.sweep_destination()];
        let c = *settled.txs.first().ok_or("the funding output was never spent")?;
        let c_tx = self.chain.tx(&c).ok_or("the funding spender is not confirmed")?;
        if trace() {
            self.dump_settlement(&settled, &scripts);
        }
        let revoked = |i: usize| {
            self.bad == Some(Bad::Cheater(1 - i))
                && (matches!(self.nodes[i].ch.closing_kind(), Some(ClosingKind::Revoked(_)))
                    || self.tower_breach(i) == Some(c))
        };
        // Who each unspent output belongs to (by the rules above), for the unswept outputs.
        let owner_of = |op: &OutPoint| -> Option<usize> {
            if op.txid == c {
                let owns = |i: usize| self.commitment_output_of(i, &c, op.vout, revoked(i));
                (0..2).find(|&i| self.is_honest(i) && owns(i)).or_else(|| (0..2).find(|&i| owns(i)))
            } else {
                self.broadcasts.payer_of(&self.chain, &op.txid, [&scripts[0], &scripts[1]])
            }
        };
        // Fee inputs of the bumps (wallet coins) came from outside the channel.
        let conserved: u64 = settled.unspent.iter().map(|(_, o)| o.value.to_sat()).sum::<u64>() + settled.fees;
        if conserved != self.capacity + settled.external {
            return Err(format!("value not conserved: {conserved} != {} + {}", self.capacity, settled.external));
        }
        for (op, o) in &settled.unspent {
            let v = o.value.to_sat();
            // Left unclaimed: an anchor or an uneconomical output; or a peer's own (an honest
            // peer's loss is counted below; a misbehaving peer may leave its own unclaimed).
            let hostiles = self.hostile.as_ref().map_or(&[][..], |h| &h.scripts[..]);
            if !scripts.contains(&o.script_pubkey)
                && !hostiles.contains(&o.script_pubkey)
                && v > UNECONOMICAL
                && owner_of(op).is_none()
            {
                return Err(format!("{v} sat at {op} left in a script no party owns"));
            }
        }
        let mut stranded_htlcs = 0;
        for i in 0..2 {
            if !self.is_honest(i) {
                continue;
            }
            let ch = &self.nodes[i].ch;
            let owed = match ch.closing_kind() {
                Some(ClosingKind::Cooperative) => {
                    let balance = ch.balances(Side::Holder).holder.to_msat() / 1_000;
                    let fee = settled.tx_fees.get(&c).copied().unwrap_or(0);
                    let owed = if ch.is_funder() { balance.saturating_sub(fee) } else { balance };
                    if owed
                        < crate::lightning::ChannelConfig::default_for([0; 32], ch.channel_type()).dust_limit.to_sat()
                    {
                        0
                    } else {
                        owed
                    }
                }
                _ if self.tower_offline_breach(i) == Some(c) && self.known.contains_key(&c) => (0..c_tx.output.len()
                    as u32)
                    .filter(|&vout| self.commitment_output_of(i, &c, vout, true))
                    .filter_map(|vout| c_tx.output.get(vout as usize))
                    .map(|o| o.value.to_sat())
                    .sum(),
                Some(_) if self.known.contains_key(&c) => (0..c_tx.output.len() as u32)
                    .filter(|&vout| self.commitment_output_of(i, &c, vout, revoked(i)))
                    .filter_map(|vout| c_tx.output.get(vout as usize))
                    .map(|o| o.value.to_sat())
                    .sum(),
                kind => return Err(format!("peer {i}: the channel closed by {c}, which no peer signed ({kind:?})")),
            };
            let fees = self.broadcasts.fees_of(&self.chain, &settled, i, [&scripts[0], &scripts[1]], |t| *t == c);
            // Outputs of its own it did not claim because the claim would cost more than they
            // hold: outputs of `C` it left to the peer or unspent, and unspent outputs of its
            // own transactions.
            let claimed_by_i = |op: OutPoint| {
                settled.txs.iter().any(|t| {
                    self.broadcasts.did(i, t)
                        && self.chain.tx(t).is_some_and(|tx| tx.input.iter().any(|inp| inp.previous_output == op))
                })
            };
            let given_up: u64 = (0..c_tx.output.len() as u32)
                .filter(|&vout| self.commitment_output_of(i, &c, vout, revoked(i)))
                .filter_map(|vout| Some((vout, c_tx.output.get(vout as usize)?.value.to_sat())))
                .filter(|&(vout, v)| v <= UNECONOMICAL && !claimed_by_i(OutPoint { txid: c, vout }))
                .map(|(_, v)| v)
                .sum();
            let unswept: u64 = settled
                .unspent
                .iter()
                .filter(|(op, o)| {
                    op.txid != c
                        && o.script_pubkey != scripts[i]
                        && o.value.to_sat() <= UNECONOMICAL
                        && owner_of(op) == Some(i)
                })
                .map(|(_, o)| o.value.to_sat())
                .sum();
            // Its wallet's coins spent by its bumps are owed back to it (less the bumps' fees,
            // charged above); the change they left is part of what it got.
            let wallet = self.wallets[i].script();
            let coins_in: u64 = settled
                .txs
                .iter()
                .filter_map(|t| self.chain.tx(t))
                .flat_map(|tx| tx.input.iter())
                .filter(|inp| !settled.txs.contains(&inp.previous_output.txid))
                .filter_map(|inp| {
                    self.chain.tx(&inp.previous_output.txid)?.output.get(inp.previous_output.vout as usize)
                })
                .filter(|o| o.script_pubkey == wallet)
                .map(|o| o.value.to_sat())
                .sum();
            // A peer offline for good (its tower defended it) has not swept its own `to_remote`
            // yet: in a script only its key spends, it is paid to it (an uneconomical one is
            // counted with `given_up` above).
            let held: u64 = match self.tower_offline_breach(i) {
                Some(b) if b == c => settled
                    .unspent
                    .iter()
                    .filter(|(op, o)| op.txid == c && o.script_pubkey != scripts[i] && o.value.to_sat() > UNECONOMICAL)
                    .filter(|(op, _)| {
                        self.known.get(&c).and_then(|(_, b)| b.outputs().get(op.vout as usize)).map(|o| o.role)
                            == Some(OutputRole::ToCountersignatory)
                    })
                    .map(|(_, o)| o.value.to_sat())
                    .sum(),
                _ => 0,
            };
            let got = settled.paid_to(&scripts[i]) + settled.paid_to(&wallet) + held;
            let (n, stranded) = self.stranded(i, &settled, c_tx);
            stranded_htlcs += n;
            check_owed(&format!("peer {i}"), got, owed + coins_in, fees + given_up + unswept + stranded)?;
            if let Some(Bad::Cheater(k)) = self.bad {
                if revoked(i) {
                    // The penalty leaves the cheater nothing from its revoked commitment.
                    check_cheater(&format!("peer {k}"), settled.paid_to(&scripts[k]), 0)?;
                }
            }
        }
        Ok(stranded_htlcs)
    }
}
