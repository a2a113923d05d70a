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

use crate::core::commitment::FeeratePerKw;
use crate::core::feebump::{BumpEvent, BumpMethod, BumpRequest, Bumper, InputTemplate, Protects};
use crate::core::script::is_p2a;
use crate::core::{BlockHeight, PaymentHash, PaymentPreimage};
use crate::driving::{ChainEvent, ChainTip, RestoreCheck, RestoreError, StateUpdate};
use crate::duplex::{Channel, Effects, Event, Msg, Phase, Role};
use crate::testing::chain::Chain;
use crate::testing::duplex::{terms, Pair, CAPACITY, START};
use crate::testing::invariants::{check_broadcast, check_cheater, check_owed, BroadcastCheck, Broadcasts, Settlement};
use crate::testing::net::{Faults, Network};
use crate::testing::rng::Rng;
use crate::testing::wallet::{FeeCoins, Wallet};

use super::{Config, Outcome, Sabotage};

mod hostile;
use hostile::Hostile;
mod tower;
use tower::TowerRun;

/// The sabotages this layer applies ([`Sabotage`]).
pub const SABOTAGES: &[Sabotage] = &[
    Sabotage::DropHtlcClaims,
    Sabotage::DropRefundOrClose,
    Sabotage::IgnoreNextDeadline,
    Sabotage::TowerLagging,
    Sabotage::TowerDisabled,
    Sabotage::DisableBumper,
];

/// The value of each wallet's spare coin (fee bumps pay from it).
const SPARE_COIN: u64 = 1_000_000;

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
    /// A tower run (module `tower`).
    tower: Option<TowerRun>,
    /// Each party's fee bumper, fed its channel's [`Effects::bumps`] in a
    /// [`Config::fee_spikes`] run (kept across restarts, as its own store would).
    bumpers: Option<[Bumper; 2]>,
    /// Each party's wallet: its payout script, and the coins a bump may add.
    wallets: [FeeCoins; 2],
    /// Every request each party's channel handed its bumper, with the height it was handed at.
    requests: [Vec<(BumpRequest, u32)>; 2],
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
    let wallets = [FeeCoins::new(Wallet::new(0xd1)), FeeCoins::new(Wallet::new(0xd2))];
    // The channel's deadlines fall within a few dozen blocks of the opening (the close starts
    // after the run's steps; the tree's relative locks are short).
    let chain = if config.fee_spikes {
        super::fee_spike_chain(seed, START, &[START + 2, START + 10, START + 25, START + 45])
    } else {
        Chain::at(START)
    };
    if std::env::var("PAYCHAN_SIM_TRACE").is_ok() {
        std::println!("market: {:?}", chain.market());
    }
    let pair = Pair::open_on(terms(radix), chain, [wallets[0].script(), wallets[1].script()]);
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
        tower: None,
        bumpers: config.fee_spikes.then(|| [Bumper::new(), Bumper::new()]),
        wallets,
        requests: [vec![], vec![]],
    };
    if let (Some(Bad::Cheater(c)), None) = (sim.bad, &sim.hostile) {
        sim.tower = super::tower_rng(seed, config).map(|rng| TowerRun::new(rng, 1 - c, config.fee_spikes));
    }
    if sim.bumpers.is_some() {
        for w in &mut sim.wallets {
            w.add_coin(&mut sim.pair.chain, Amount::from_sat(SPARE_COIN));
        }
    }
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
        let mut dropped = HashSet::new();
        for tx in fx.broadcast {
            if self.is_honest(i) && self.sabotaged(&tx) {
                self.out.sabotaged += 1;
                dropped.insert(tx.compute_txid());
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
        // The embedder hands each request to its bumper (not a sabotaged broadcast's).
        if let Some(bumpers) = self.bumpers.as_mut() {
            for r in fx.bumps {
                if !dropped.contains(&r.id()) {
                    self.requests[i].push((r.clone(), self.pair.chain.height));
                    let _ = bumpers[i].track(r);
                }
            }
        }
        self.tower_absorbed(i)
    }

    /// Party `i`'s bumper's block work at the market's estimates; its broadcasts go out as the
    /// party's own (a child with its parent, as a package; the sabotage applies to them too).
    fn bump(&mut self, i: usize) -> Result<(), String> {
        let publishing = self.bad == Some(Bad::Cheater(i)) && !self.cheat.is_empty();
        if (self.offline[i] && !publishing) || self.bumpers.is_none() {
            return Ok(());
        }
        self.wallets[i].sync(&self.pair.chain);
        let pending = self.bumpers.as_ref().is_some_and(|b| b[i].pending().next().is_some());
        if self.sabotage == Sabotage::DisableBumper && self.is_honest(i) {
            self.out.sabotaged += u32::from(pending);
            return Ok(());
        }
        let est = super::estimates(self.chain(), FeeratePerKw(253));
        let tip = BlockHeight(self.chain().height);
        let Some(bumpers) = self.bumpers.as_mut() else { return Ok(()) };
        let fx = bumpers[i].bump(tip, &est, &mut self.wallets[i], &self.pair.parties[i].signer);
        if let Some(u) = &fx.update {
            if u.snapshot.as_deref().map(Bumper::decode).as_ref().map(|r| r.as_ref()) != Some(Ok(&bumpers[i])) {
                return Err(format!("party {i}: the bumper does not restore from its update"));
            }
        }
        if std::env::var("PAYCHAN_SIM_TRACE").is_ok() && !fx.events.is_empty() {
            std::println!(
                "h{} bumper {i} (next block min {:?}): {:?}",
                self.chain().height,
                self.chain().next_block_min_feerate(),
                fx.events
            );
        }
        if super::in_spike(self.chain()) {
            self.out.spike_bumps += fx.events.iter().filter(|e| matches!(e, BumpEvent::Bumped { .. })).count() as u32;
        }
        let mut out = Vec::new();
        for tx in fx.broadcast {
            if self.is_honest(i) && self.sabotaged(&tx) {
                self.out.sabotaged += 1;
                continue;
            }
            self.broadcasts.record(i, &tx);
            let check = check_broadcast(self.chain(), &tx).map_err(|e| format!("party {i} bump: {e}"))?;
            if check == BroadcastCheck::Deferred && !self.deferred.contains(&tx) {
                self.deferred.push(tx.clone());
            }
            out.push(tx);
        }
        super::submit_bumps(&mut self.pair.chain, &out);
        Ok(())
    }

    /// The parties' payout scripts (their wallets'), by index.
    fn scripts(&self) -> [bitcoin::ScriptBuf; 2] {
        [self.wallets[0].script(), self.wallets[1].script()]
    }

    /// Whether a transaction pays a party's payout script (a leaf transaction or the
    /// cooperative close; tree transactions pay the next level's multisig).
    fn pays_out(&self, tx: &Transaction) -> bool {
        let scripts = self.scripts();
        tx.output.iter().any(|o| scripts.contains(&o.script_pubkey))
    }

    /// Whether spending `prev` claims an HTLC: an output of a leaf transaction not paying a
    /// party (the leaf's HTLC outputs).
    fn is_htlc_output(&self, prev: &OutPoint) -> bool {
        let parent = self
            .chain()
            .tx(&prev.txid)
            .or_else(|| self.chain().mempool().iter().find(|t| t.compute_txid() == prev.txid));
        let scripts = self.scripts();
        parent.is_some_and(|p| {
            prev.txid != self.funding.txid
                && self.pays_out(p)
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
            // A cheater gone silent still publishes its old branch through its bumper.
            if let (Some(b), false) = (self.bumpers.as_mut(), matches!(ev, ChainEvent::Tip(_))) {
                if !self.offline[i] || self.bad == Some(Bad::Cheater(i)) {
                    let _ = b[i].handle_chain(&ev);
                }
            }
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
        self.tower_before_block();
        for tx in self.deferred.clone() {
            let _ = self.pair.chain.submit(&tx);
        }
        // The cheater publishes the next transaction of its old branch as soon as it is valid
        // (in a fee-spike run, through its bumper: a zero-fee tree transaction relays only with
        // a child).
        if let Some(next) = self.cheat.first().cloned() {
            let txid = next.compute_txid();
            let published = self.pair.chain.confirmation(&txid).is_some()
                || self.pair.chain.mempool().iter().any(|t| t.compute_txid() == txid);
            if published || (self.bumpers.is_none() && self.pair.chain.submit(&next).is_ok()) {
                self.cheat.remove(0);
                self.out.cheats += 1;
            } else if next.input.iter().any(|i| {
                self.pair.chain.confirmation(&i.previous_output.txid).is_some()
                    && !self.pair.chain.is_unspent(&i.previous_output)
            }) {
                // Its parent's output went to the honest party's newer branch: the cheat failed.
                self.cheat.clear();
            } else if self.pair.chain.check(&next).is_ok() {
                self.cheat_bump(&next);
            }
        }
        self.bump(0)?;
        self.bump(1)?;
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
        self.notify(ChainEvent::Tip(self.tip()))?;
        self.tower_after_block(&mined)
    }

    /// What honest party `i` left unclaimed because claiming it by its deadline would have cost
    /// more than it holds ([`super::uneconomical`]): the value at stake of each request of
    /// its channel whose transaction neither confirmed nor was replaced by one of its own that
    /// confirmed (the largest per set of inputs), with the fee of a CPFP parent (the payee
    /// pays its payment's fee: it would have been charged that fee had it broadcast it).
    fn given_up(&self, i: usize, settled: &Settlement) -> u64 {
        let mut lost: HashMap<Vec<OutPoint>, u64> = HashMap::new();
        for (r, from) in &self.requests[i] {
            let inputs: Vec<OutPoint> = r.tx.input.iter().map(|inp| inp.previous_output).collect();
            let claimed = settled.txs.iter().any(|t| {
                self.broadcasts.did(i, t)
                    && self
                        .chain()
                        .tx(t)
                        .is_some_and(|tx| tx.input.iter().any(|inp| inputs.contains(&inp.previous_output)))
            });
            if !claimed && super::uneconomical(self.chain(), r, *from) {
                let v = lost.entry(inputs).or_default();
                let parent_fee = match &r.method {
                    BumpMethod::Child { parent_fee, .. } => parent_fee.to_sat(),
                    _ => 0,
                };
                *v = (*v).max(r.at_stake.to_sat() + parent_fee);
            }
        }
        lost.values().sum()
    }

    /// The value each party's wallet put into the channel's transactions (the inputs of a
    /// settled transaction that are neither the funding output nor an output of a settled
    /// transaction: the coins a bump added).
    fn external_inputs(&self, settled: &Settlement, scripts: &[bitcoin::ScriptBuf; 2]) -> Result<[u64; 2], String> {
        let mut external = [0u64; 2];
        for txid in &settled.txs {
            let Some(tx) = self.chain().tx(txid) else { continue };
            for input in &tx.input {
                let op = input.previous_output;
                if op == self.funding || settled.txs.contains(&op.txid) {
                    continue;
                }
                let prev = self.chain().tx(&op.txid).and_then(|t| t.output.get(op.vout as usize));
                let Some(prev) = prev else { return Err(format!("{txid} spends an unknown output {op}")) };
                match scripts.iter().position(|s| *s == prev.script_pubkey) {
                    Some(i) => external[i] += prev.value.to_sat(),
                    None => return Err(format!("{txid} spends {op}, which is no party's")),
                }
            }
        }
        Ok(external)
    }

    /// The cheater hands the next transaction of its old branch to its bumper (a fee-spike
    /// run) once it is valid: a child through its pay-to-anchor output, as soon as possible,
    /// paying up to the channel's value.
    fn cheat_bump(&mut self, next: &Transaction) {
        let Some(Bad::Cheater(c)) = self.bad else { return };
        let Some(bumpers) = self.bumpers.as_mut() else { return };
        let Some(vout) = next.output.iter().position(|o| is_p2a(&o.script_pubkey)) else { return };
        let anchor = InputTemplate::pay_to_anchor(
            OutPoint { txid: next.compute_txid(), vout: vout as u32 },
            next.output[vout].value,
        );
        let _ = bumpers[c].track(BumpRequest {
            tx: next.clone(),
            deadline: BlockHeight(self.pair.chain.height + 2),
            at_stake: Amount::from_sat(CAPACITY),
            protects: Protects::DuplexBranch,
            method: BumpMethod::Child { anchor, parent_fee: Amount::ZERO },
        });
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
        if self.tower_step(false)? {
            return Ok(());
        }
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
        if self.tower.is_some() {
            self.tower_step(true)?;
        }
        if !self.tower.as_ref().is_some_and(|t| t.offline) {
            // (In a tower run both parties stopped: nobody closes; the cheater publishes when
            // its time comes.)
            self.close_at_end()?;
        }
        self.settle_at_end()
    }

    /// The end of the off-chain phase: the network drained, a reset under way cancelled, the
    /// cheater's old branch, a cooperative close or a unilateral one.
    fn close_at_end(&mut self) -> Result<(), String> {
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
            // In a fee-spike run the zero-fee close relays only with a child: the bumpers make
            // one now (else the close would look refused and a party would go unilateral).
            self.bump(0)?;
            self.bump(1)?;
        }
        if !cheated && Settlement::of(self.chain(), self.funding).txs.is_empty() && self.chain().mempool().is_empty() {
            self.stop_offchain();
            let i = self.rng.below(2) as usize;
            self.out.unilateral = true;
            let p = &mut self.pair.parties[i];
            let fx = p.ch.force_close(&p.signer);
            self.absorb(i, fx)?;
        }
        Ok(())
    }

    /// Mines until everything is resolved, then checks the exact accounting.
    fn settle_at_end(&mut self) -> Result<(), String> {
        let start = self.chain().height;
        let limit = start + 600;
        while self.chain().height < limit {
            self.mine()?;
            // A day on and nothing of the channel confirmed: the peer's close never made it (a
            // hostile peer that stopped paying for its kickoff in a fee spike). An honest party
            // still open does what its wallet would: it closes itself, and its bumper pays.
            if self.chain().height == start + 144 && Settlement::of(self.chain(), self.funding).txs.is_empty() {
                if let Some(i) = (0..2)
                    .find(|&i| self.is_honest(i) && !self.offline[i] && self.pair.parties[i].ch.phase() == Phase::Open)
                {
                    self.out.gave_up += 1;
                    let p = &mut self.pair.parties[i];
                    let fx = p.ch.force_close(&p.signer);
                    self.absorb(i, fx)?;
                }
            }
            let done = self.pair.parties.iter().enumerate().all(|(i, p)| {
                self.tower_settled(i).unwrap_or_else(|| {
                    self.offline[i] || (p.ch.phase() == Phase::Closed && p.ch.next_deadline().is_none())
                })
            });
            if done && self.chain().mempool().is_empty() && self.cheat.is_empty() {
                break;
            }
        }
        for (i, p) in self.pair.parties.iter().enumerate() {
            // A party that lost data may not recognise the newer branch that closed the channel.
            // (A party offline for good never saw the close: its tower did.)
            if self.is_honest(i) && p.ch.phase() != Phase::Closed && !self.tower_offline(i) {
                return Err(format!("party {i} not closed ({:?}) at height {}", p.ch.phase(), self.chain().height));
            }
        }
        let settled = Settlement::of(self.chain(), self.funding);
        let scripts = self.scripts();
        let funding_value = self
            .chain()
            .tx(&self.funding.txid)
            .and_then(|t| t.output.get(self.funding.vout as usize))
            .map(|o| o.value.to_sat())
            .unwrap_or(0);
        // Wallet coins the bumps spent (inputs of the channel's transactions from outside them):
        // each party's own money, not the channel's.
        let external = self.external_inputs(&settled, &scripts)?;
        let unspent: u64 = settled.unspent.iter().map(|(_, o)| o.value.to_sat()).sum();
        if unspent + settled.fees != funding_value + external[0] + external[1] {
            return Err(format!(
                "value not conserved: {unspent} unspent + {} fees != {funding_value} + {external:?} from the wallets",
                settled.fees
            ));
        }
        // Tree transactions and the cooperative close pay no fee (version 3, a pay-to-anchor
        // output; a CPFP child pays for them, in a fee-spike run): the balances share the whole
        // capacity. Every other transaction's fee is charged to the party that broadcast it (the
        // payee of a payment, the payer of a refund, the claimant of an HTLC, the bumper of a
        // child or a replacement).
        let tree = |t: &bitcoin::Txid| {
            self.chain().tx(t).is_some_and(|tx| {
                tx.input.iter().any(|inp| inp.previous_output == self.funding)
                    || (tx.output.iter().any(|o| is_p2a(&o.script_pubkey)) && !self.pays_out(tx))
            })
        };
        for (i, script) in scripts.iter().enumerate() {
            if self.is_honest(i) {
                let owed = self.owed_to(i);
                let fees = self.broadcasts.fees_of(self.chain(), &settled, i, [&scripts[0], &scripts[1]], tree);
                let got = settled.paid_to(script).checked_sub(external[i]).ok_or("a wallet spent more than it got")?;
                check_owed(&format!("party {i}"), got, owed, fees + self.given_up(i, &settled))?;
                if self.bad == Some(Bad::Cheater(1 - i)) {
                    // An old branch loses against the newest: the cheater gets at most what the
                    // honest party's state leaves it.
                    check_cheater(
                        &format!("party {}", 1 - i),
                        settled.paid_to(&scripts[1 - i]).saturating_sub(external[1 - i]),
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
