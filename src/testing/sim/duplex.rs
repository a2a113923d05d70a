//! The duplex simulation: two parties pay each other and reset the invalidation tree over a
//! network that drops, duplicates, reorders and delays messages; either crashes and restores;
//! reorgs; at the end a cooperative close or a unilateral one down the tree, resolved on chain.

use std::format;
use std::string::String;
use std::vec;
use std::vec::Vec;

use bitcoin::{Amount, OutPoint, Transaction};

use crate::core::BlockHeight;
use crate::driving::{ChainEvent, ChainTip, RestoreCheck, RestoreError, StateUpdate};
use crate::duplex::{Channel, Effects, Msg, Phase, Role};
use crate::testing::chain::Chain;
use crate::testing::duplex::{payout, terms, Pair, CAPACITY};
use crate::testing::invariants::{check_broadcast, check_not_robbed, BroadcastCheck, Settlement};
use crate::testing::net::{Faults, Network};
use crate::testing::rng::Rng;

use super::Outcome;

const ROLES: [Role; 2] = [Role::Initiator, Role::Acceptor];

fn wire(m: &Msg) -> Result<Msg, String> {
    Msg::decode(&m.encode()).map_err(|e| format!("own message does not decode: {e:?}"))
}

struct Sim {
    rng: Rng,
    pair: Pair,
    stored: [Vec<StateUpdate>; 2],
    net: Network<Msg>,
    funding: OutPoint,
    deferred: Vec<Transaction>,
    owed: Option<[u64; 2]>,
    out: Outcome,
}

/// Runs one seeded simulation.
///
/// # Errors
/// The first invariant violated.
pub fn run(seed: u64) -> Result<Outcome, String> {
    let mut rng = Rng::new(seed);
    let radix = match rng.below(3) {
        0 => vec![2, 2],
        1 => vec![3, 2],
        _ => vec![2, 2, 2],
    };
    let pair = Pair::open(terms(radix));
    let funding = pair.a().funding_outpoint().ok_or("no funding outpoint")?;
    let faults = Faults::random(&mut rng, 150);
    let mut sim = Sim {
        rng,
        pair,
        stored: [vec![], vec![]],
        net: Network::new(faults),
        funding,
        deferred: vec![],
        owed: None,
        out: Outcome::default(),
    };
    for i in 0..2 {
        let ch = &sim.pair.parties[i].ch;
        sim.stored[i].push(StateUpdate::snapshot(ch.update_id(), ch.snapshot()));
    }
    let steps = sim.rng.range(10, 60);
    for _ in 0..steps {
        sim.step()?;
    }
    sim.finish()?;
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

    fn absorb(&mut self, i: usize, fx: Effects) -> Result<(), String> {
        if (!fx.send.is_empty() || !fx.broadcast.is_empty()) && fx.update.is_none() {
            return Err(format!("party {i} sent or broadcast without persisting first"));
        }
        if let Some(u) = fx.update {
            if self.stored[i].last().is_some_and(|l| u.update_id <= l.update_id) {
                return Err(format!("party {i}: update id {} does not increase", u.update_id));
            }
            self.stored[i].push(u);
        }
        for m in fx.send {
            let m = wire(&m)?;
            self.net.send(1 - i, m, &mut self.rng);
        }
        for tx in fx.broadcast {
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

    fn deliver(&mut self, to: usize, m: Msg) -> Result<(), String> {
        let tip = self.tip();
        let p = &mut self.pair.parties[to];
        match p.ch.handle_message(m, &p.signer, tip) {
            Ok(fx) => self.absorb(to, fx),
            Err(_) => Ok(()),
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

    fn owed_to(&self, i: usize) -> u64 {
        let own = self.pair.parties[i].ch.balances().holder;
        let theirs = self.pair.parties[1 - i].ch.balances().counterparty;
        own.min(theirs).to_sat()
    }

    fn stop_offchain(&mut self) {
        if self.owed.is_none() {
            self.owed = Some([self.owed_to(0), self.owed_to(1)]);
        }
    }

    fn crash(&mut self, i: usize) -> Result<(), String> {
        self.out.crashes += 1;
        let Some(latest) = self.stored[i].last().cloned() else { return Ok(()) };
        let check = RestoreCheck { channel_id: self.pair.parties[i].ch.channel_id(), min_update_id: latest.update_id };
        if let Some(old) = self.stored[i].iter().rev().find(|u| u.update_id < latest.update_id) {
            if !matches!(Channel::restore(&old.snapshot, check), Err(RestoreError::Stale { .. })) {
                return Err(format!("party {i}: stale snapshot {} not refused", old.update_id));
            }
            self.out.stale_refused += 1;
        }
        let ch = Channel::restore(&latest.snapshot, check).map_err(|e| format!("party {i}: restore: {e}"))?;
        if ch.snapshot() != latest.snapshot {
            return Err(format!("party {i}: restore is not byte-identical"));
        }
        self.pair.parties[i].ch = ch;
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

    fn step(&mut self) -> Result<(), String> {
        self.out.steps += 1;
        let i = self.rng.below(2) as usize;
        match self.rng.below(100) {
            0..=34 => {
                let amount = Amount::from_sat(self.rng.range(1, CAPACITY / 40));
                let p = &mut self.pair.parties[i];
                if let Ok(fx) = p.ch.pay(amount, &p.signer) {
                    self.out.payments += 1;
                    self.absorb(i, fx)?;
                }
            }
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
            _ => {}
        }
        Ok(())
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
        let open = self.pair.parties.iter().all(|p| p.ch.phase() == Phase::Open);
        if open && self.rng.chance(500) {
            self.owed = Some([self.owed_to(0), self.owed_to(1)]);
            let p = &mut self.pair.parties[0];
            if let Ok(fx) = p.ch.close(&p.signer) {
                self.absorb(0, fx)?;
            }
            self.drain()?;
        }
        if Settlement::of(self.chain(), self.funding).txs.is_empty() && self.chain().mempool().is_empty() {
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
            let done =
                self.pair.parties.iter().all(|p| p.ch.phase() == Phase::Closed && p.ch.next_deadline().is_none());
            if done && self.chain().mempool().is_empty() {
                break;
            }
        }
        for (i, p) in self.pair.parties.iter().enumerate() {
            if p.ch.phase() != Phase::Closed {
                return Err(format!("party {i} not closed ({:?}) at height {}", p.ch.phase(), self.chain().height));
            }
        }
        let settled = Settlement::of(self.chain(), self.funding);
        let scripts = [payout(ROLES[0]), payout(ROLES[1])];
        let value = self.pair.a().terms().channel_value().map(|v| v.to_sat()).unwrap_or(0);
        let funding_value = self
            .chain()
            .tx(&self.funding.txid)
            .and_then(|t| t.output.get(self.funding.vout as usize))
            .map(|o| o.value.to_sat())
            .unwrap_or(0);
        settled.check_resolved(funding_value, &[&scripts[0], &scripts[1]], 0)?;
        let owed = self.owed.unwrap_or_default();
        for i in 0..2 {
            check_not_robbed(&format!("party {i}"), settled.paid_to(&scripts[i]), owed[i], settled.fees)?;
        }
        let _ = value;
        for tx in &self.deferred {
            if tx.input.iter().all(|i| self.chain().is_unspent(&i.previous_output)) {
                return Err(format!("broadcast {} never became valid", tx.compute_txid()));
            }
        }
        Ok(())
    }
}
