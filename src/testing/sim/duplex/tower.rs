//! Tower runs of the duplex simulation ([`Config::tower`](super::Config::tower), or one cheater
//! run in three).
//!
//! The honest party's embedder hands its tower ([`DuplexTower`], run by the simulation) a new
//! [`TowerPackage`](crate::duplex::tower::TowerPackage) whenever the one its persisted state
//! gives changed (a payment received or sent, a reset): the newest signed branch, its best
//! received payment and its refund. At a random step of the run where the channel is quiet
//! (both parties open on the same branch, no reset under way, no HTLC: a duplex tower does not
//! cover HTLCs, whose claims need preimages or timeouts chosen later) and the cheater kept a
//! branch a reset replaced, both parties stop: the honest one goes offline, for good or until the
//! cheater's whole stale branch could have confirmed; the cheater's software stops too and, at a
//! random later block, it publishes its stale branch (the newest replaced one with probability
//! one half, else any), each transaction as soon as it is valid, and nothing else. The tower is
//! shown every block and what it returns is broadcast, checked by Core's interpreter like every
//! other broadcast, and charged to the honest party.
//!
//! Who pays what is the simulation's rule: tree transactions pay no fee (zero-fee TRUC; on a
//! chain without a market and relay policy no CPFP child is needed; in a fee-spike run the tower
//! operator's bumper adds one through the pay-to-anchor output, paid from the client's fee coins,
//! and charged to the client); a leaf transaction's fee is the broadcaster's: the honest party pays the fee of its received payment and of its refund,
//! both broadcast by its tower. What it is owed is its balance in its own view when it went
//! offline. A party that comes back rescans the chain like after a restart and must find no
//! node of the stale branch confirmed (its channel would report
//! [`Event::StaleBranchConfirmed`](crate::duplex::Event::StaleBranchConfirmed), a failure).

use std::format;
use std::string::String;
use std::vec::Vec;

use bitcoin::Transaction;

use crate::core::feebump::{BumpEvent, BumpMethod, BumpRequest, Bumper, InputTemplate, Protects};
use crate::core::script::is_p2a;
use crate::core::BlockHeight;
use crate::duplex::tower::DuplexTower;
use crate::duplex::Phase;
use crate::testing::invariants::{check_broadcast, BroadcastCheck};
use crate::testing::rng::Rng;

use super::{Sabotage, Sim};

/// The state of a tower run.
pub(super) struct TowerRun {
    rng: Rng,
    /// The honest party (the tower's client).
    pub(super) honest: usize,
    tower: Option<DuplexTower>,
    /// The last package made (fed, or held back by [`Sabotage::TowerLagging`]).
    last: Option<Vec<u8>>,
    /// [`Sabotage::TowerLagging`]: the newest package, not yet handed over.
    held: Option<Vec<u8>>,
    /// Both parties stopped (the honest one offline).
    pub(super) offline: bool,
    cheat_at: u32,
    cheat_with: Vec<Transaction>,
    /// The height at which the stale kickoff confirmed.
    breach: Option<u32>,
    /// The sum of the stale branch's relative locks (blocks).
    locks: u32,
    /// The honest party comes back this many blocks after the stale branch's locks expired.
    returns: Option<u32>,
    returned: bool,
    /// In a fee-spike run ([`Config::fee_spikes`](super::super::Config::fee_spikes)), the tower
    /// operator's fee bumper: each zero-fee tree transaction the tower publishes goes out with
    /// a CPFP child through its pay-to-anchor output (the module docs of
    /// [`crate::duplex::tower`]), paid from the client's fee coins (the client delegated them
    /// to the tower, so the fees are the client's).
    bumper: Option<Bumper>,
}

impl TowerRun {
    pub(super) fn new(rng: Rng, honest: usize, spikes: bool) -> Self {
        TowerRun {
            rng,
            honest,
            tower: None,
            last: None,
            held: None,
            offline: false,
            cheat_at: 0,
            cheat_with: Vec::new(),
            breach: None,
            locks: 0,
            returns: None,
            returned: false,
            bumper: spikes.then(Bumper::new),
        }
    }
}

/// The blocks of relative lock of a transaction's inputs (the largest).
fn lock_of(tx: &Transaction) -> u32 {
    tx.input
        .iter()
        .filter_map(|i| match i.sequence.to_relative_lock_time() {
            Some(bitcoin::relative::LockTime::Blocks(h)) => Some(u32::from(h.value())),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

impl Sim {
    /// After party `i` absorbed effects: the honest party hands over its new package; the
    /// cheater keeps a copy of its every signed branch.
    pub(super) fn tower_absorbed(&mut self, i: usize) -> Result<(), String> {
        let Some(t) = self.tower.as_ref() else { return Ok(()) };
        if t.offline || self.frozen.is_some() {
            return Ok(());
        }
        if i != t.honest {
            self.keep_branch();
            return Ok(());
        }
        let p = &self.pair.parties[i];
        let Ok(package) = p.ch.tower_package(&p.signer) else { return Ok(()) };
        let bytes = package.encode();
        let lagging = self.sabotage == Sabotage::TowerLagging;
        let Some(t) = self.tower.as_mut() else { return Ok(()) };
        if t.last.as_ref() == Some(&bytes) {
            return Ok(());
        }
        t.last = Some(bytes.clone());
        let give = if lagging { t.held.replace(bytes) } else { Some(bytes) };
        let Some(bytes) = give else { return Ok(()) };
        match t.tower.as_mut() {
            Some(tower) => tower.replace(&bytes),
            None => DuplexTower::new(&bytes).map(|tower| t.tower = Some(tower)),
        }
        .map_err(|e| format!("the tower refused party {i}'s package: {e}"))?;
        self.out.tower_fed += 1;
        Ok(())
    }

    /// At the start of a step: in a tower run, both parties may stop here (the honest one goes
    /// offline) if the channel is quiet and the cheater kept a replaced branch; once stopped,
    /// steps only mine. Returns whether the step is taken.
    pub(super) fn tower_step(&mut self, at_finish: bool) -> Result<bool, String> {
        let Some(t) = self.tower.as_ref() else { return Ok(false) };
        if t.offline {
            self.mine()?;
            return Ok(true);
        }
        let h = t.honest;
        if at_finish {
            self.tower_prepare()?;
        }
        let quiet = self.frozen.is_none()
            && self.chain().is_unspent(&self.funding)
            && self.chain().mempool().is_empty()
            && self.pair.parties.iter().all(|p| p.ch.phase() == Phase::Open && !p.ch.is_resetting())
            && self.pair.parties.iter().all(|p| p.ch.htlcs().is_empty())
            && self.pair.parties[0].ch.current_branch() == self.pair.parties[1].ch.current_branch();
        if !quiet {
            return Ok(false);
        }
        let c = &self.pair.parties[1 - h];
        let Ok(current) = c.ch.signed_branch(&c.signer) else { return Ok(false) };
        let stale: Vec<Vec<Transaction>> = self.kept.iter().filter(|b| **b != current).cloned().collect();
        let Some(t) = self.tower.as_mut() else { return Ok(false) };
        if stale.is_empty() || !(at_finish || t.rng.chance(60)) {
            return Ok(false);
        }
        let pick = if t.rng.chance(500) { stale.len() - 1 } else { t.rng.index(stale.len()).unwrap_or(0) };
        t.cheat_with = stale[pick].clone();
        t.locks = t.cheat_with.iter().map(lock_of).sum();
        t.cheat_at = self.pair.chain.height + t.rng.range(1, 40) as u32;
        t.returns = t.rng.chance(500).then(|| t.rng.range(1, 12) as u32);
        t.offline = true;
        if std::env::var("PAYCHAN_SIM_TRACE").is_ok() {
            std::println!(
                "h{} tower run: both parties stop (honest {h}), the cheater publishes at {}, the honest party returns {:?}",
                self.pair.chain.height,
                t.cheat_at,
                t.returns
            );
        }
        self.offline = [true; 2];
        self.net.clear();
        self.stop_offchain();
        Ok(true)
    }

    /// At the end of a tower run whose honest party did not go offline yet: over the now perfect
    /// network, the messages in flight are delivered, a reset under way is cancelled and, if the
    /// cheater kept no replaced branch, a reset is made (by either party) and a payment each way,
    /// so that the cheater has an old branch to publish.
    fn tower_prepare(&mut self) -> Result<(), String> {
        self.drain()?;
        for i in 0..2 {
            if self.pair.parties[i].ch.is_resetting() {
                if let Ok(fx) = self.pair.parties[i].ch.cancel_reset() {
                    self.absorb(i, fx)?;
                }
            }
        }
        self.drain()?;
        // The HTLCs still pending are failed back by their receivers (a duplex tower does not
        // cover HTLCs).
        for i in 0..2 {
            let offered: Vec<u64> = self.pair.parties[i]
                .ch
                .htlcs()
                .into_iter()
                .filter(|(o, h)| o.index() != i && !self.revealed.contains(&(1 - i, h.id)))
                .map(|(_, h)| h.id)
                .collect();
            for id in offered {
                let p = &mut self.pair.parties[i];
                if let Ok(fx) = p.ch.fail_htlc(id) {
                    self.absorb(i, fx)?;
                }
            }
            self.drain()?;
        }
        let Some(t) = self.tower.as_mut() else { return Ok(()) };
        let c = 1 - t.honest;
        let first = usize::from(t.rng.chance(500));
        let amounts = [
            t.rng.range(1, crate::testing::duplex::CAPACITY / 40),
            t.rng.range(1, crate::testing::duplex::CAPACITY / 40),
        ];
        let p = &self.pair.parties[c];
        let current = p.ch.signed_branch(&p.signer).ok();
        if self.kept.iter().any(|b| Some(b) != current.as_ref()) {
            return Ok(());
        }
        let tip = self.tip();
        let p = &mut self.pair.parties[first];
        if let Ok(fx) = p.ch.reset(&p.signer, tip) {
            self.absorb(first, fx)?;
        }
        self.drain()?;
        for (i, amount) in amounts.into_iter().enumerate() {
            let p = &mut self.pair.parties[i];
            if let Ok(fx) = p.ch.pay(bitcoin::Amount::from_sat(amount), &p.signer) {
                self.out.payments += 1;
                self.absorb(i, fx)?;
            }
            self.drain()?;
        }
        Ok(())
    }

    /// Before a block: the cheater starts publishing its stale branch when its time came.
    pub(super) fn tower_before_block(&mut self) {
        let height = self.pair.chain.height;
        let Some(t) = self.tower.as_mut() else { return };
        if t.offline && !t.cheat_with.is_empty() && height >= t.cheat_at {
            self.cheat = core::mem::take(&mut t.cheat_with);
            self.out.tower_breaches += 1;
            self.out.unilateral = true;
        }
    }

    /// After a block: the tower is shown it and what it returns is broadcast for the honest
    /// party; a returning party comes back once the stale branch's locks expired.
    pub(super) fn tower_after_block(&mut self, mined: &[Transaction]) -> Result<(), String> {
        let height = self.pair.chain.height;
        let funding = self.funding;
        let Some(t) = self.tower.as_mut() else { return Ok(()) };
        if !t.offline {
            return Ok(());
        }
        if t.breach.is_none() && mined.iter().any(|tx| tx.input.iter().any(|i| i.previous_output == funding)) {
            t.breach = Some(height);
        }
        let h = t.honest;
        let out = t.tower.as_mut().map(|tower| tower.block(BlockHeight(height), mined)).unwrap_or_default();
        if let Some(b) = t.bumper.as_mut() {
            for tx in mined {
                let _ = b.handle_chain(&crate::driving::ChainEvent::Confirmed { tx, height: BlockHeight(height) });
            }
        }
        let mut tracked = Vec::new();
        for tx in out {
            if self.sabotage == Sabotage::TowerDisabled {
                self.out.sabotaged += 1;
                continue;
            }
            self.out.tower_broadcasts += 1;
            self.broadcasts.record(h, &tx);
            if check_broadcast(self.chain(), &tx).map_err(|e| format!("the tower of party {h}: {e}"))?
                == BroadcastCheck::Deferred
            {
                self.deferred.push(tx.clone());
            }
            let _ = self.pair.chain.submit(&tx);
            tracked.push(tx);
        }
        self.tower_bump(h, &tracked)?;
        let Some(t) = self.tower.as_mut() else { return Ok(()) };
        let (Some(after), Some(breach), false) = (t.returns, t.breach, t.returned) else { return Ok(()) };
        if height < breach + t.locks + after {
            return Ok(());
        }
        // Back after the locks: its rescan reports a stale node confirmed as an error.
        t.returned = true;
        self.out.tower_returns += 1;
        self.offline[h] = false;
        self.rescan(h)
    }

    /// The honest party of a tower run is offline for good and nothing more will happen for it:
    /// the stale branch was published (or failed) and every transaction of the tower's package
    /// confirmed or lost its input to another.
    pub(super) fn tower_done(&self) -> bool {
        self.tower.as_ref().is_some_and(|t| {
            let settled = t.tower.as_ref().is_none_or(|tower| {
                tower.package().txs.iter().all(|tx| {
                    self.chain().confirmation(&tx.compute_txid()).is_some()
                        || tx.input.iter().any(|i| {
                            let op = i.previous_output;
                            self.chain().confirmation(&op.txid).is_some() && !self.chain().is_unspent(&op)
                        })
                })
            });
            t.offline && t.returns.is_none() && t.breach.is_some() && t.cheat_with.is_empty() && settled
        })
    }

    /// Whether party `i` is the honest party of a tower run, offline (for good, or not back
    /// yet).
    pub(super) fn tower_offline(&self, i: usize) -> bool {
        self.tower.as_ref().is_some_and(|t| t.honest == i && t.offline && !t.returned)
    }

    /// For the honest party of a tower run still offline: whether nothing more will happen for
    /// it (it is offline for good and [`Sim::tower_done`]; one that will come back is not done).
    pub(super) fn tower_settled(&self, i: usize) -> Option<bool> {
        let t = self.tower.as_ref().filter(|_| self.tower_offline(i))?;
        Some(t.returns.is_none() && self.tower_done())
    }

    /// The tower operator's bumper (a fee-spike run): tracks each zero-fee tree transaction
    /// `published` now as a CPFP request through its pay-to-anchor output, with the deadline and
    /// the value at stake the client's own channel would give it (valid in the next block, so
    /// due `S` blocks later; the client's balance), then does its block work with the client's
    /// fee coins. [`Sabotage::DisableBumper`] switches it off like the client's own.
    fn tower_bump(&mut self, h: usize, published: &[Transaction]) -> Result<(), String> {
        let height = self.pair.chain.height;
        let s = u32::from(self.pair.parties[h].ch.terms().confirm_blocks);
        let at_stake = bitcoin::Amount::from_sat(self.owed_to(h));
        let Some(b) = self.tower.as_mut().and_then(|t| t.bumper.as_mut()) else { return Ok(()) };
        for tx in published {
            let Some(vout) = tx.output.iter().position(|o| is_p2a(&o.script_pubkey)) else { continue };
            let anchor = InputTemplate::pay_to_anchor(
                bitcoin::OutPoint { txid: tx.compute_txid(), vout: vout as u32 },
                tx.output[vout].value,
            );
            let _ = b.track(BumpRequest {
                tx: tx.clone(),
                deadline: BlockHeight(height + 1 + s),
                at_stake,
                protects: Protects::DuplexBranch,
                method: BumpMethod::Child { anchor, parent_fee: bitcoin::Amount::ZERO },
            });
        }
        if b.pending().next().is_none() {
            return Ok(());
        }
        if self.sabotage == Sabotage::DisableBumper {
            self.out.sabotaged += 1;
            return Ok(());
        }
        self.wallets[h].sync(&self.pair.chain);
        let est = super::super::estimates(&self.pair.chain, crate::core::commitment::FeeratePerKw(253));
        let Some(b) = self.tower.as_mut().and_then(|t| t.bumper.as_mut()) else { return Ok(()) };
        let fx = b.bump(BlockHeight(height), &est, &mut self.wallets[h], &self.pair.parties[h].signer);
        if super::super::in_spike(&self.pair.chain) {
            self.out.spike_bumps += fx.events.iter().filter(|e| matches!(e, BumpEvent::Bumped { .. })).count() as u32;
        }
        if std::env::var("PAYCHAN_SIM_TRACE").is_ok() && !fx.events.is_empty() {
            std::println!("h{height} tower bumper of party {h}: {:?}", fx.events);
        }
        let mut out = Vec::new();
        for tx in fx.broadcast {
            self.broadcasts.record(h, &tx);
            let check = check_broadcast(self.chain(), &tx).map_err(|e| format!("the tower of party {h} bump: {e}"))?;
            if check == BroadcastCheck::Deferred && !self.deferred.contains(&tx) {
                self.deferred.push(tx.clone());
            }
            out.push(tx);
        }
        super::super::submit_bumps(&mut self.pair.chain, &out);
        Ok(())
    }
}
