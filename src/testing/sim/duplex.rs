//! The duplex simulation: two parties pay each other, add, fulfil and fail HTLCs (or let them
//! expire) and reset the invalidation tree over a network that drops, duplicates, reorders and
//! delays messages; either crashes and restores; reorgs; at the end a cooperative close or a
//! unilateral one down the tree, resolved on chain (HTLCs still pending are claimed with their
//! preimage or timed out).
//!
//! In some runs one party misbehaves (the other is honest and must get what it was owed):
//! * a **cheater** keeps old signed branches and, at the close, publishes one that a reset
//!   replaced, then goes silent: the honest party's newer branch must win by its shorter locks;
//! * a **lossy** party restarts from an older snapshot it believes current (its storage lost the
//!   newer writes). On the reconnection that follows, the honest party sends again what the lossy
//!   one is missing (payments it received) or the `Reestablish` proves the loss (a reset or a
//!   payment it signed and forgot, [`Event::LostState`]); the honest party is then told
//!   ([`Event::CounterpartyLostState`]) and closes unilaterally. A lossy party that closes first
//!   publishes the branch it knows, which the honest party's newer one beats.
//!
//! * a **hostile** party signs everything validly but picks extreme values, proposes resets that
//!   try to move money it does not own, and refuses to cooperate when it likes (module `hostile`).
//!
//! Both parties reconnect (`Reestablish`) after every restart and at random other times (a new
//! connection drops the messages in flight); an honest party must never be told that it lost
//! state.

use std::collections::{HashMap, HashSet};
use std::format;
use std::string::String;
use std::vec;
use std::vec::Vec;

use bitcoin::{Amount, OutPoint, Transaction};

use crate::core::script::is_p2a;
use crate::core::{BlockHeight, PaymentHash, PaymentPreimage};
use crate::driving::{ChainEvent, ChainTip, RestoreCheck, RestoreError, StateUpdate};
use crate::duplex::{Channel, Effects, Event, Msg, Phase, Role};
use crate::testing::chain::Chain;
use crate::testing::duplex::{payout, terms, Pair, CAPACITY};
use crate::testing::invariants::{check_broadcast, check_cheater, check_owed, BroadcastCheck, Broadcasts, Settlement};
use crate::testing::net::{Faults, Network};
use crate::testing::rng::Rng;

use super::{Config, Outcome, Sabotage};

mod hostile;
use hostile::Hostile;

/// The sabotages this layer applies ([`Sabotage`]).
pub const SABOTAGES: &[Sabotage] =
    &[Sabotage::DropHtlcClaims, Sabotage::DropRefundOrClose, Sabotage::IgnoreNextDeadline];

const ROLES: [Role; 2] = [Role::Initiator, Role::Acceptor];

fn wire(m: &Msg) -> Result<Msg, String> {
    Msg::decode(&m.encode()).map_err(|e| format!("own message does not decode: {e:?}"))
}

/// A party's view of the channel: its balances and the pending HTLCs.
type View = (crate::duplex::Balances, Vec<(Role, crate::spilman::PaymentHtlc)>);

/// How one party misbehaves in a run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Bad {
    /// Publishes an old branch at the close.
    Cheater(usize),
    /// Restarts from older snapshots.
    Lossy(usize),
    /// Picks hostile-but-valid values (module `hostile`).
    Hostile(usize),
}

struct Sim {
    sabotage: Sabotage,
    /// Who broadcast what (fee attribution).
    broadcasts: Broadcasts,
    rng: Rng,
    pair: Pair,
    stored: [Vec<StateUpdate>; 2],
    net: Network<Msg>,
    funding: OutPoint,
    deferred: Vec<Transaction>,
    /// Mempool transactions already reported to the parties ([`ChainEvent::Seen`]).
    seen: HashSet<bitcoin::Txid>,
    /// Each party's view (balances and pending HTLCs) when the channel stopped operating off
    /// chain; what each is owed is computed from it at the end, once every preimage revealed is
    /// known.
    frozen: Option<[View; 2]>,
    out: Outcome,
    counter: u64,
    preimages: HashMap<PaymentHash, PaymentPreimage>,
    /// HTLCs whose receiver revealed the preimage: (offerer index, id).
    revealed: HashSet<(usize, u64)>,
    bad: Option<Bad>,
    /// The hostile party's strategy, in a run with one.
    hostile: Option<Hostile>,
    /// Old signed branches the cheater kept.
    kept: Vec<Vec<Transaction>>,
    /// The old branch being published by the cheater, next transaction first.
    cheat: Vec<Transaction>,
    /// A party that went silent (the cheater, after cheating).
    offline: [bool; 2],
    /// An honest party learned that its counterparty lost state: it closes unilaterally.
    close_now: Option<usize>,
}

/// Runs one seeded simulation.
///
/// # Errors
/// The first invariant violated.
pub fn run(seed: u64) -> Result<Outcome, String> {
    run_with(seed, Config::default())
}

/// Runs one seeded simulation with `config` (a [`Sabotage`] of the honest parties' embedders).
///
/// # Errors
/// The first invariant violated.
pub fn run_with(seed: u64, config: Config) -> Result<Outcome, String> {
    let mut rng = Rng::new(seed);
    let radix = match rng.below(3) {
        0 => vec![2, 2],
        1 => vec![3, 2],
        _ => vec![2, 2, 2],
    };
    let pair = Pair::open(terms(radix));
    let funding = pair.a().funding_outpoint().ok_or("no funding outpoint")?;
    let faults = Faults::random(&mut rng, 150);
    let bad = match rng.below(10) {
        _ if config.cheater => Some(Bad::Cheater(rng.below(2) as usize)),
        0..=1 => Some(Bad::Cheater(rng.below(2) as usize)),
        2..=3 => Some(Bad::Lossy(rng.below(2) as usize)),
        _ => None,
    };
    let hostile = super::hostile_rng(seed, config).map(Hostile::draw);
    let bad = hostile.as_ref().map_or(bad, |h| Some(Bad::Hostile(h.idx)));
    let mut sim = Sim {
        sabotage: config.sabotage,
        broadcasts: Broadcasts::default(),
        rng,
        pair,
        stored: [vec![], vec![]],
        net: Network::new(faults),
        funding,
        deferred: vec![],
        seen: HashSet::new(),
        frozen: None,
        out: Outcome::default(),
        counter: seed << 20,
        preimages: HashMap::new(),
        revealed: HashSet::new(),
        bad,
        hostile,
        kept: vec![],
        cheat: vec![],
        offline: [false; 2],
        close_now: None,
    };
    for i in 0..2 {
        let ch = &sim.pair.parties[i].ch;
        sim.stored[i].push(StateUpdate::snapshot(ch.update_id(), ch.snapshot()));
    }
    sim.keep_branch();
    sim.out.hostile = u32::from(sim.hostile.is_some());
    let steps = sim.rng.range(10, 60);
    let run = (0..steps).try_for_each(|_| sim.step()).and_then(|()| sim.finish());
    run.map_err(|e| format!("{e} (misbehaving party: {:?})", sim.bad))?;
    sim.out.net = sim.net.stats;
    Ok(sim.out)
}

impl Sim {
    fn tip(&self) -> ChainTip {
        ChainTip::at(self.pair.chain.height)
    }

    fn chain(&self) -> &Chain {
        &self.pair.chain
    }

    fn is_honest(&self, i: usize) -> bool {
        !matches!(self.bad, Some(Bad::Cheater(b) | Bad::Lossy(b) | Bad::Hostile(b)) if b == i)
    }

    fn absorb(&mut self, i: usize, fx: Effects) -> Result<(), String> {
        if self.offline[i] {
            return Ok(());
        }
        let mut fx = fx;
        self.hostile_filter(i, &mut fx);
        if (!fx.send.is_empty() || !fx.broadcast.is_empty()) && fx.update.is_none() {
            return Err(format!("party {i} sent or broadcast without persisting first"));
        }
        if let Some(u) = fx.update {
            if self.stored[i].last().is_some_and(|l| u.update_id <= l.update_id) {
                return Err(format!("party {i}: update id {} does not increase", u.update_id));
            }
            if !u.is_full() {
                // This layer writes a full snapshot on every update (driving: persistence).
                return Err(format!("party {i}: update {} carries no full snapshot", u.update_id));
            }
            self.stored[i].push(u);
        }
        if std::env::var("PAYCHAN_SIM_TRACE").is_ok() {
            std::println!("h{} party {i}: {:?}", self.pair.chain.height, fx.events);
        }
        if fx.events.contains(&Event::LostState) {
            if self.is_honest(i) {
                return Err(format!("honest party {i} was told it lost state"));
            }
            self.out.lost_state += 1;
        }
        if fx.events.contains(&Event::CounterpartyLostState) {
            // (A hostile party may claim a stale state: the honest one then closes, as it must.)
            if !matches!(self.bad, Some(Bad::Lossy(b) | Bad::Hostile(b)) if b == 1 - i) {
                return Err(format!("party {i} was told that party {} lost state", 1 - i));
            }
            self.close_now.get_or_insert(i);
        }
        if self.is_honest(i) {
            // An old branch must never beat the honest party's newer one.
            if let Some(Event::StaleBranchConfirmed { level, .. }) =
                fx.events.iter().find(|e| matches!(e, Event::StaleBranchConfirmed { .. }))
            {
                return Err(format!("an old branch's node at level {level} confirmed against honest party {i}"));
            }
        }
        for m in fx.send {
            let m = wire(&m)?;
            self.net.send(1 - i, m, &mut self.rng);
        }
        for tx in fx.broadcast {
            if self.is_honest(i) && self.sabotaged(&tx) {
                self.out.sabotaged += 1;
                continue;
            }
            self.broadcasts.record(i, &tx);
            if tx.input.iter().any(|inp| inp.previous_output == self.funding) {
                let ch = &self.pair.parties[i].ch;
                let in_branch =
                    ch.current_branch().is_some_and(|b| b.iter().any(|t| t.compute_txid() == tx.compute_txid()));
                if !in_branch && ch.phase() != Phase::CoopClosing && ch.phase() != Phase::Closed {
                    return Err(format!("party {i} broadcast a kickoff/tree transaction not of its current branch"));
                }
            }
            if check_broadcast(self.chain(), &tx).map_err(|e| format!("party {i}: {e}"))? == BroadcastCheck::Deferred {
                self.deferred.push(tx.clone());
            }
            let _ = self.pair.chain.submit(&tx);
        }
        Ok(())
    }

    /// Whether a transaction pays a party's payout script (a leaf transaction or the
    /// cooperative close; tree transactions pay the next level's multisig).
    fn pays_out(tx: &Transaction) -> bool {
        let scripts = [payout(ROLES[0]), payout(ROLES[1])];
        tx.output.iter().any(|o| scripts.contains(&o.script_pubkey))
    }

    /// Whether spending `prev` claims an HTLC: an output of a leaf transaction not paying a
    /// party (the leaf's HTLC outputs).
    fn is_htlc_output(&self, prev: &OutPoint) -> bool {
        let parent = self
            .chain()
            .tx(&prev.txid)
            .or_else(|| self.chain().mempool().iter().find(|t| t.compute_txid() == prev.txid));
        let scripts = [payout(ROLES[0]), payout(ROLES[1])];
        parent.is_some_and(|p| {
            prev.txid != self.funding.txid
                && Self::pays_out(p)
                && p.output.get(prev.vout as usize).is_some_and(|o| !scripts.contains(&o.script_pubkey))
        })
    }

    /// Whether the [`Sabotage`] drops this broadcast of an honest party.
    fn sabotaged(&self, tx: &Transaction) -> bool {
        let claim = tx.input.iter().any(|inp| self.is_htlc_output(&inp.previous_output));
        match self.sabotage {
            Sabotage::DropHtlcClaims => claim,
            Sabotage::DropRefundOrClose => !claim,
            _ => false,
        }
    }

    fn deliver(&mut self, to: usize, m: Msg) -> Result<(), String> {
        if self.offline[to] || self.is_silent(to) {
            return Ok(());
        }
        let tip = self.tip();
        let reset = match &m {
            Msg::ResetPropose(_) => Some("ResetPropose"),
            Msg::ResetAccept(_) => Some("ResetAccept"),
            Msg::ResetFinish(_) => Some("ResetFinish"),
            _ => None,
        };
        let before = self.owed_in_view(to, to);
        let p = &mut self.pair.parties[to];
        match p.ch.handle_message(m, &p.signer, tip) {
            Ok(fx) => {
                if let (Some(kind), true) = (reset, self.hostile.is_some() && self.is_honest(to)) {
                    self.check_reset(to, before, kind)?;
                }
                self.absorb(to, fx)
            }
            Err(_) => {
                self.hostile_refused(to);
                Ok(())
            }
        }
    }

    fn drain(&mut self) -> Result<(), String> {
        while let Some((to, m)) = self.net.next(&mut self.rng) {
            self.deliver(to, m)?;
        }
        Ok(())
    }

    fn notify(&mut self, ev: ChainEvent<'_>) -> Result<(), String> {
        for i in 0..2 {
            if self.offline[i] {
                continue;
            }
            if matches!(ev, ChainEvent::Tip(_)) && self.sabotage == Sabotage::IgnoreNextDeadline && self.is_honest(i) {
                self.out.sabotaged += 1;
                continue;
            }
            let p = &mut self.pair.parties[i];
            let fx = p.ch.handle_chain(ev, &p.signer);
            self.absorb(i, fx)?;
        }
        Ok(())
    }

    fn mine(&mut self) -> Result<(), String> {
        for tx in self.deferred.clone() {
            let _ = self.pair.chain.submit(&tx);
        }
        // The cheater publishes the next transaction of its old branch as soon as it is valid.
        if let Some(next) = self.cheat.first().cloned() {
            if self.pair.chain.submit(&next).is_ok() {
                self.cheat.remove(0);
                self.out.cheats += 1;
            } else if next.input.iter().any(|i| {
                self.pair.chain.confirmation(&i.previous_output.txid).is_some()
                    && !self.pair.chain.is_unspent(&i.previous_output)
            }) {
                // Its parent's output went to the honest party's newer branch: the cheat failed.
                self.cheat.clear();
            }
        }
        // The embedders report what they see in the mempool, each transaction once.
        let fresh: Vec<Transaction> =
            self.pair.chain.mempool().iter().filter(|t| !self.seen.contains(&t.compute_txid())).cloned().collect();
        for tx in &fresh {
            self.seen.insert(tx.compute_txid());
            self.notify(ChainEvent::Seen { tx })?;
        }
        let mined = self.pair.chain.mine_block();
        let height = BlockHeight(self.pair.chain.height);
        for tx in &mined {
            self.deferred.retain(|t| t != tx);
            if tx.input.iter().any(|i| i.previous_output == self.funding) {
                self.stop_offchain();
            }
            self.notify(ChainEvent::Confirmed { tx, height })?;
        }
        self.notify(ChainEvent::Tip(self.tip()))
    }

    /// What `viewer`'s channel says party `i` is owed: its balance, the HTLCs it offered whose
    /// receiver never learned the preimage (refunded after expiry), and the HTLCs offered to it
    /// whose preimage it revealed.
    fn owed_in_view(&self, viewer: usize, i: usize) -> u64 {
        let ch = &self.pair.parties[viewer].ch;
        let (b, htlcs) = match &self.frozen {
            Some(views) => views[viewer].clone(),
            None => (ch.balances(), ch.htlcs()),
        };
        let mut owed = if viewer == i { b.holder } else { b.counterparty }.to_sat();
        for (offerer, h) in htlcs {
            let o = offerer.index();
            let revealed = self.revealed.contains(&(o, h.id));
            if (o == i) != revealed {
                owed += h.amount.to_sat();
            }
        }
        owed
    }

    /// What honest party `i` is owed: what its own view says (the newest state it holds the
    /// peer's signatures for, or signed away itself), whatever the peer's view says.
    fn owed_to(&self, i: usize) -> u64 {
        self.owed_in_view(i, i)
    }

    fn stop_offchain(&mut self) {
        if self.frozen.is_none() {
            let view = |p: &crate::testing::duplex::Party| (p.ch.balances(), p.ch.htlcs());
            self.frozen = Some([view(&self.pair.parties[0]), view(&self.pair.parties[1])]);
            let live = self.pair.parties.iter().map(|p| p.ch.htlcs().len()).max().unwrap_or(0);
            self.out.htlcs_on_chain += live as u32;
        }
    }

    /// The cheater keeps a copy of its current signed branch.
    fn keep_branch(&mut self) {
        let Some(Bad::Cheater(c)) = self.bad else { return };
        let p = &self.pair.parties[c];
        if let Ok(branch) = p.ch.signed_branch(&p.signer) {
            if self.kept.last() != Some(&branch) {
                self.kept.push(branch);
            }
        }
    }

    /// Rescans the chain for party `i` after a restart.
    fn rescan(&mut self, i: usize) -> Result<(), String> {
        let settled = Settlement::of(self.chain(), self.funding);
        for txid in settled.txs {
            if let (Some(tx), Some(h)) = (self.chain().tx(&txid).cloned(), self.chain().confirmation(&txid)) {
                let p = &mut self.pair.parties[i];
                let fx = p.ch.handle_chain(ChainEvent::Confirmed { tx: &tx, height: BlockHeight(h) }, &p.signer);
                self.absorb(i, fx)?;
            }
        }
        let tip = self.tip();
        let p = &mut self.pair.parties[i];
        let fx = p.ch.handle_chain(ChainEvent::Tip(tip), &p.signer);
        self.absorb(i, fx)
    }

    fn crash(&mut self, i: usize) -> Result<(), String> {
        if self.offline[i] {
            return Ok(());
        }
        if self.bad == Some(Bad::Lossy(i)) && self.rng.chance(400) {
            return self.lose_data(i);
        }
        self.out.crashes += 1;
        let Some(latest) = self.stored[i].last().cloned() else { return Ok(()) };
        let check = RestoreCheck { channel_id: self.pair.parties[i].ch.channel_id(), min_update_id: latest.update_id };
        if let Some(old) = self.stored[i].iter().rev().find(|u| u.update_id < latest.update_id) {
            if !matches!(
                Channel::restore(old.snapshot.as_deref().unwrap_or(&[]), check),
                Err(RestoreError::Stale { .. })
            ) {
                return Err(format!("party {i}: stale snapshot {} not refused", old.update_id));
            }
            self.out.stale_refused += 1;
        }
        let ch = Channel::restore(latest.snapshot.as_deref().unwrap_or(&[]), check)
            .map_err(|e| format!("party {i}: restore: {e}"))?;
        if Some(ch.snapshot()) != latest.snapshot {
            return Err(format!("party {i}: restore is not byte-identical"));
        }
        self.pair.parties[i].ch = ch;
        self.rescan(i)?;
        self.reconnect()
    }

    /// A new connection: the messages in flight are lost, and both parties send `Reestablish`.
    fn reconnect(&mut self) -> Result<(), String> {
        self.out.reconnections += 1;
        self.net.clear();
        let msgs = [
            self.hostile_reestablish(0).unwrap_or_else(|| self.pair.parties[0].ch.reestablish()),
            self.hostile_reestablish(1).unwrap_or_else(|| self.pair.parties[1].ch.reestablish()),
        ];
        if std::env::var("PAYCHAN_SIM_TRACE").is_ok() {
            std::println!("h{} reconnect: {msgs:?}", self.pair.chain.height);
        }
        for (i, m) in msgs.iter().enumerate() {
            if self.is_silent(i) {
                continue;
            }
            let m = wire(m)?;
            self.deliver(1 - i, m)?;
        }
        Ok(())
    }

    /// Party `i` restarts from an older snapshot, believing it current: the newer writes are lost.
    fn lose_data(&mut self, i: usize) -> Result<(), String> {
        let n = self.stored[i].len();
        if n < 2 {
            return Ok(());
        }
        let k = self.rng.below(n as u64 - 1) as usize;
        let Some(old) = self.stored[i].get(k).cloned() else { return Ok(()) };
        let check = RestoreCheck { channel_id: self.pair.parties[i].ch.channel_id(), min_update_id: old.update_id };
        let ch = Channel::restore(old.snapshot.as_deref().unwrap_or(&[]), check)
            .map_err(|e| format!("party {i}: lost-data restore: {e}"))?;
        self.out.lost_data += 1;
        self.stored[i].truncate(k + 1);
        self.pair.parties[i].ch = ch;
        self.rescan(i)?;
        self.reconnect()
    }

    fn add_htlc(&mut self, i: usize) -> Result<(), String> {
        let tip = self.tip();
        self.counter += 1;
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&self.counter.to_be_bytes());
        let preimage = PaymentPreimage(bytes);
        self.preimages.insert(preimage.hash(), preimage);
        let amount = Amount::from_sat(self.rng.range(1_000, CAPACITY / 50));
        let p = &mut self.pair.parties[i];
        let (Some(earliest), latest) = p.ch.htlc_expiry_window(tip) else { return Ok(()) };
        let expiry = BlockHeight(earliest.0.saturating_add(self.rng.below(80) as u32).min(latest.0));
        if let Ok((_, fx)) = p.ch.add_htlc(amount, preimage.hash(), expiry, &p.signer, tip) {
            self.out.htlcs += 1;
            self.absorb(i, fx)?;
        }
        Ok(())
    }

    /// Party `i` settles an HTLC offered to it: reveals the preimage (only while it can still
    /// claim on chain in time, as an honest receiver must) or fails it.
    fn settle_htlc(&mut self, i: usize) -> Result<(), String> {
        if self.hostile_settle(i) {
            return Ok(());
        }
        let offerer = ROLES[1 - i];
        let tip = self.pair.chain.height;
        let p = &self.pair.parties[i];
        let e_in = p.ch.params().htlc_receive_blocks(u32::from(p.ch.terms().confirm_blocks));
        let offered: Vec<_> = p.ch.htlcs().into_iter().filter(|(o, _)| *o == offerer).map(|(_, h)| h).collect();
        let Some(h) = self.rng.index(offered.len()).and_then(|k| offered.get(k).copied()) else { return Ok(()) };
        let preimage = self.preimages.get(&h.payment_hash).copied();
        let in_time = tip.saturating_add(e_in).saturating_add(2) < h.expiry.0;
        let p = &mut self.pair.parties[i];
        let fx = match preimage {
            Some(pre) if in_time && self.rng.chance(700) => {
                let fx = p.ch.fulfill_htlc(h.id, pre, &p.signer);
                if fx.is_ok() {
                    self.revealed.insert((1 - i, h.id));
                    self.out.payments += 1;
                }
                fx
            }
            _ if self.revealed.contains(&(1 - i, h.id)) => return Ok(()),
            _ => p.ch.fail_htlc(h.id),
        };
        if let Ok(fx) = fx {
            self.absorb(i, fx)?;
        }
        Ok(())
    }

    fn step(&mut self) -> Result<(), String> {
        self.out.steps += 1;
        if let Some(i) = self.close_now.take() {
            self.stop_offchain();
            self.out.unilateral = true;
            let p = &mut self.pair.parties[i];
            let fx = p.ch.force_close(&p.signer);
            return self.absorb(i, fx);
        }
        let i = self.rng.below(2) as usize;
        if self.hostile_turn(i) {
            return self.hostile_step(i);
        }
        match self.rng.below(100) {
            0..=27 => {
                let amount = Amount::from_sat(self.rng.range(1, CAPACITY / 40));
                let p = &mut self.pair.parties[i];
                if let Ok(fx) = p.ch.pay(amount, &p.signer) {
                    self.out.payments += 1;
                    self.absorb(i, fx)?;
                }
            }
            28..=31 => self.add_htlc(i)?,
            32..=34 => self.settle_htlc(i)?,
            35..=69 => {
                for _ in 0..self.rng.range(1, 5) {
                    let Some((to, m)) = self.net.next(&mut self.rng) else { break };
                    self.deliver(to, m)?;
                }
            }
            70..=79 => self.mine()?,
            80..=84 => {
                let tip = self.tip();
                let p = &mut self.pair.parties[i];
                if let Ok(fx) = p.ch.reset(&p.signer, tip) {
                    self.absorb(i, fx)?;
                }
            }
            85..=90 => self.crash(i)?,
            91..=92 => {
                self.out.reorgs += 1;
                let depth = self.rng.range(1, 3) as u32;
                for tx in self.deferred.clone() {
                    let _ = self.pair.chain.submit(&tx);
                }
                let (gone, mined) = self.pair.chain.reorg_to_longer(depth);
                for txid in gone {
                    self.notify(ChainEvent::Unconfirmed(txid))?;
                }
                for (tx, h) in &mined {
                    self.deferred.retain(|t| t != tx);
                    if tx.input.iter().any(|i| i.previous_output == self.funding) {
                        self.stop_offchain();
                    }
                    self.notify(ChainEvent::Confirmed { tx, height: BlockHeight(*h) })?;
                }
                self.notify(ChainEvent::Tip(self.tip()))?;
            }
            93 if self.rng.chance(300) => {
                let p = &mut self.pair.parties[i];
                self.out.unilateral = true;
                let fx = p.ch.force_close(&p.signer);
                self.absorb(i, fx)?;
            }
            94..=97 => self.keep_branch(),
            98 => self.reconnect()?,
            _ => {}
        }
        Ok(())
    }

    /// The cheater publishes the oldest branch it kept that a reset replaced, and goes silent.
    fn cheat(&mut self, c: usize) -> Result<bool, String> {
        let p = &self.pair.parties[c];
        let current = p.ch.signed_branch(&p.signer).ok();
        let Some(old) = self.kept.iter().find(|b| Some(*b) != current.as_ref()).cloned() else { return Ok(false) };
        self.stop_offchain();
        self.out.unilateral = true;
        self.offline[c] = true;
        self.cheat = old;
        Ok(true)
    }

    fn finish(&mut self) -> Result<(), String> {
        self.net.faults = Faults::NONE;
        self.drain()?;
        // A reset the network starved is cancelled by both.
        for i in 0..2 {
            if self.pair.parties[i].ch.is_resetting() {
                if let Ok(fx) = self.pair.parties[i].ch.cancel_reset() {
                    self.absorb(i, fx)?;
                }
            }
        }
        self.drain()?;
        let unspent = Settlement::of(self.chain(), self.funding).txs.is_empty() && self.chain().mempool().is_empty();
        let cheated = match self.bad {
            Some(Bad::Cheater(c)) if unspent => self.cheat(c)?,
            _ => false,
        };
        let open = self.pair.parties.iter().all(|p| p.ch.phase() == Phase::Open);
        if !cheated && open && self.rng.chance(500) {
            self.stop_offchain();
            let p = &mut self.pair.parties[0];
            if let Ok(fx) = p.ch.close(&p.signer) {
                self.absorb(0, fx)?;
            }
            self.drain()?;
        }
        if !cheated && Settlement::of(self.chain(), self.funding).txs.is_empty() && self.chain().mempool().is_empty() {
            self.stop_offchain();
            let i = self.rng.below(2) as usize;
            self.out.unilateral = true;
            let p = &mut self.pair.parties[i];
            let fx = p.ch.force_close(&p.signer);
            self.absorb(i, fx)?;
        }
        let limit = self.chain().height + 600;
        while self.chain().height < limit {
            self.mine()?;
            let done = self
                .pair
                .parties
                .iter()
                .enumerate()
                .all(|(i, p)| self.offline[i] || (p.ch.phase() == Phase::Closed && p.ch.next_deadline().is_none()));
            if done && self.chain().mempool().is_empty() && self.cheat.is_empty() {
                break;
            }
        }
        for (i, p) in self.pair.parties.iter().enumerate() {
            // A party that lost data may not recognise the newer branch that closed the channel.
            if self.is_honest(i) && p.ch.phase() != Phase::Closed {
                return Err(format!("party {i} not closed ({:?}) at height {}", p.ch.phase(), self.chain().height));
            }
        }
        let settled = Settlement::of(self.chain(), self.funding);
        let scripts = [payout(ROLES[0]), payout(ROLES[1])];
        let funding_value = self
            .chain()
            .tx(&self.funding.txid)
            .and_then(|t| t.output.get(self.funding.vout as usize))
            .map(|o| o.value.to_sat())
            .unwrap_or(0);
        let unspent: u64 = settled.unspent.iter().map(|(_, o)| o.value.to_sat()).sum();
        if unspent + settled.fees != funding_value {
            return Err(format!("value not conserved: {unspent} unspent + {} fees != {funding_value}", settled.fees));
        }
        // Tree transactions and the cooperative close pay no fee (version 3, a zero-value
        // pay-to-anchor output; the simulated chain has no fee market yet, so they confirm
        // without a CPFP child): the balances share the whole capacity. A leaf transaction's fee
        // is charged to the party that broadcast it (the payee of a payment, the payer of a
        // refund, the claimant of an HTLC).
        let leaf = |t: &bitcoin::Txid| {
            self.chain()
                .tx(t)
                .is_some_and(|tx| Self::pays_out(tx) && !tx.input.iter().any(|inp| inp.previous_output == self.funding))
        };
        for (i, script) in scripts.iter().enumerate() {
            if self.is_honest(i) {
                let owed = self.owed_to(i);
                let fees = self.broadcasts.fees_of(self.chain(), &settled, i, [&scripts[0], &scripts[1]], |t| !leaf(t));
                check_owed(&format!("party {i}"), settled.paid_to(script), owed, fees)?;
                if self.bad == Some(Bad::Cheater(1 - i)) {
                    // An old branch loses against the newest: the cheater gets at most what the
                    // honest party's state leaves it.
                    check_cheater(
                        &format!("party {}", 1 - i),
                        settled.paid_to(&scripts[1 - i]),
                        self.owed_in_view(i, 1 - i),
                    )?;
                }
            }
        }
        for (op, o) in &settled.unspent {
            // Nothing may stay in a channel script, except what a misbehaving party leaves
            // unclaimed of its own (its leaf outputs and HTLC outputs): an honest party's
            // unclaimed output is a loss its exact check above counts.
            // An anchor is nobody's: it holds nothing, or the balances below dust that the
            // cooperative close leaves out (what a fee would have taken).
            if !scripts.contains(&o.script_pubkey) && !is_p2a(&o.script_pubkey) && self.bad.is_none() {
                return Err(format!("{} sat at {op} left in a script no party owns", o.value.to_sat()));
            }
        }
        for tx in &self.deferred {
            if tx.input.iter().all(|i| self.chain().is_unspent(&i.previous_output)) {
                return Err(format!("broadcast {} never became valid", tx.compute_txid()));
            }
        }
        Ok(())
    }
}
