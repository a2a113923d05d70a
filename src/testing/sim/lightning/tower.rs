//! Tower runs of the Lightning simulation ([`Config::tower`](super::Config::tower), or one cheater
//! run in three).
//!
//! The honest peer's embedder hands its tower ([`Tower`], run by the simulation) the blind
//! appointment of each commitment of the cheater as soon as it holds its revocation secret
//! ([`Channel::appointment`](crate::lightning::Channel::appointment), the default ladder over
//! 1,000 sat/kW), from its persisted state only. At a random step of the run (when the cheater
//! holds at least one commitment the honest peer can punish) both peers stop: the honest one goes
//! offline, for good or until the cheater's `to_self_delay` expired; the cheater's software stops
//! too (it neither closes nor polices its HTLCs) and, at a random later block, it publishes one
//! of its revoked commitments (the newest with probability one half, else any) and nothing
//! else. The tower is shown every block from then on and what it returns is broadcast, checked
//! by Core's interpreter like every other broadcast, and charged to the honest peer.
//!
//! Who pays what: the cheater's commitment pays its own fee (as funder, BOLT 3) or the honest
//! funder's, out of the balances as in every other close (the exact accounting of
//! the simulation's `check_money`); each rung of the tower's ladder that confirms is the
//! honest peer's fee (the penalty pays the honest peer's sweep destination, less that fee). An
//! honest peer offline for good keeps its own `to_remote` output unspent: it is in a script only
//! its key spends and counts as paid to it (its sweep, when it returns, is its own fee); an
//! anchor is nobody's. A peer that comes back rescans the chain like after a restart and
//! resolves the rest itself; it must find, when it comes back, every output the cheater could
//! take after its delay (its `to_local`, the HTLC outputs) already spent: otherwise the tower did
//! not defend it, a failure even if the returning peer could still punish by itself.

use std::collections::HashSet;
use std::format;
use std::string::String;
use std::vec::Vec;

use bitcoin::{OutPoint, Transaction, Txid};

use crate::core::commitment::{FeeratePerKw, OutputRole};
use crate::core::tower::{ClientId, Tower};
use crate::driving::ChainEvent;
use crate::lightning::tower::{default_ladder, AppointmentError};
use crate::testing::invariants::{check_broadcast, BroadcastCheck, Settlement};
use crate::testing::rng::Rng;

use super::{Sabotage, Sim, UNECONOMICAL};

/// The feerate the honest peer signs its penalty ladders over (1×, 2×, 4×, 8×).
const LADDER_BASE: FeeratePerKw = FeeratePerKw(1_000);

/// The state of a tower run.
pub(super) struct TowerRun {
    rng: Rng,
    /// The honest peer (the tower's client).
    pub(super) honest: usize,
    tower: Tower,
    client: ClientId,
    /// Commitments of the cheater the honest peer holds the revocation secret of, in the order
    /// it learned them (their appointment was handed over, or none could be built).
    revoked: Vec<Txid>,
    done: HashSet<Txid>,
    /// [`Sabotage::TowerLagging`]: the newest appointment, not yet handed over.
    held: Option<Vec<u8>>,
    /// The cheater's holder commitment number last kept.
    kept_number: Option<u64>,
    /// Both peers stopped (the honest one offline).
    pub(super) offline: bool,
    /// The block at which the cheater publishes, and what.
    cheat_at: u32,
    cheat_with: Option<Transaction>,
    /// The published breach.
    pub(super) breach: Option<Txid>,
    /// The honest peer comes back this many blocks after the cheater's delay expired.
    returns: Option<u32>,
    /// It came back.
    pub(super) returned: bool,
}

impl TowerRun {
    pub(super) fn new(rng: Rng, honest: usize, destination: bitcoin::ScriptBuf) -> Self {
        let mut tower = Tower::new();
        let client = tower.register(destination);
        TowerRun {
            rng,
            honest,
            tower,
            client,
            revoked: Vec::new(),
            done: HashSet::new(),
            held: None,
            kept_number: None,
            offline: false,
            cheat_at: 0,
            cheat_with: None,
            breach: None,
            returns: None,
            returned: false,
        }
    }
}

impl Sim {
    /// After peer `i` absorbed effects: the honest peer hands over new appointments; the cheater
    /// keeps a copy of its every signed commitment.
    pub(super) fn tower_absorbed(&mut self, i: usize) -> Result<(), String> {
        let Some(t) = self.tower.as_ref() else { return Ok(()) };
        let h = t.honest;
        if t.offline || self.onchain {
            return Ok(());
        }
        if i != h {
            let node = &self.nodes[i];
            let n = node.ch.holder_commitment_number();
            if t.kept_number != Some(n) {
                if let Ok(tx) = node.ch.holder_commitment_tx(&node.signer) {
                    if !self.kept.contains(&tx) {
                        self.kept.push(tx);
                    }
                }
                if let Some(t) = self.tower.as_mut() {
                    t.kept_number = Some(n);
                }
            }
            return Ok(());
        }
        let mut pending: Vec<_> = self
            .known
            .iter()
            .filter(|(id, (owner, _))| *owner != h && !t.done.contains(*id))
            .map(|(id, (_, b))| (b.number(), *id, b.tx().clone()))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        pending.sort_by_key(|p| p.0);
        let records = self.records(h)?;
        for (_, txid, tx) in pending {
            let node = &self.nodes[h];
            let made = match node.ch.appointment(&tx, &records, &default_ladder(LADDER_BASE), &node.signer) {
                Ok(a) => Some(a.encode()),
                Err(AppointmentError::NotRevoked) => continue,
                Err(AppointmentError::NoPenalty) => None,
                Err(e) => return Err(format!("peer {h}: appointment: {e}")),
            };
            let lagging = self.sabotage == Sabotage::TowerLagging;
            let Some(t) = self.tower.as_mut() else { return Ok(()) };
            t.done.insert(txid);
            t.revoked.push(txid);
            let Some(bytes) = made else { continue };
            let give = if lagging { t.held.replace(bytes) } else { Some(bytes) };
            if let Some(bytes) = give {
                t.tower.add_appointment(t.client, &bytes).map_err(|e| format!("the tower refused: {e}"))?;
                self.out.tower_fed += 1;
            }
        }
        Ok(())
    }

    /// At the start of a step: in a tower run, both peers may stop here (the honest one goes
    /// offline) if the cheater holds a commitment the honest peer can punish; once stopped,
    /// steps only mine. Returns whether the step is taken.
    pub(super) fn tower_step(&mut self, at_finish: bool) -> Result<bool, String> {
        let Some(t) = self.tower.as_ref() else { return Ok(false) };
        if t.offline {
            self.mine()?;
            return Ok(true);
        }
        if self.onchain || self.closing_on_chain() {
            return Ok(false);
        }
        let Some(t) = self.tower.as_mut() else { return Ok(false) };
        if !(at_finish || t.rng.chance(60)) {
            return Ok(false);
        }
        let candidates: Vec<&Transaction> =
            self.kept.iter().filter(|tx| t.revoked.contains(&tx.compute_txid())).collect();
        if candidates.is_empty() {
            return Ok(false);
        }
        // The newest revoked one half of the time (what a lagging tower lacks), else any.
        let newest = candidates.iter().max_by_key(|tx| t.revoked.iter().position(|r| *r == tx.compute_txid()));
        let pick =
            if t.rng.chance(500) { newest.copied() } else { t.rng.index(candidates.len()).map(|k| candidates[k]) };
        t.cheat_with = pick.cloned();
        t.cheat_at = self.chain.height + t.rng.range(1, 40) as u32;
        t.returns = t.rng.chance(500).then(|| t.rng.range(1, 12) as u32);
        t.offline = true;
        self.offline = [true; 2];
        self.net.clear();
        Ok(true)
    }

    /// Before a block is mined: the cheater publishes its revoked commitment when its time came.
    pub(super) fn tower_before_block(&mut self) -> Result<(), String> {
        let Some(t) = self.tower.as_mut() else { return Ok(()) };
        if !t.offline || t.breach.is_some() || self.chain.height < t.cheat_at {
            return Ok(());
        }
        let Some(tx) = t.cheat_with.take() else { return Ok(()) };
        self.chain.submit(&tx).map_err(|e| {
            format!(
                "the cheater's revoked commitment is refused: {e:?} (funding {} unspent {}, mempool {}, confirmed spenders {:?})",
                self.funding,
                self.chain.is_unspent(&self.funding),
                self.chain.mempool().len(),
                Settlement::of(&self.chain, self.funding).txs
            )
        })?;
        t.breach = Some(tx.compute_txid());
        self.out.cheats += 1;
        self.out.tower_breaches += 1;
        self.out.unilateral = true;
        self.onchain = false;
        self.stop_offchain();
        Ok(())
    }

    /// After a block: the tower is shown it and what it returns is broadcast for the honest peer;
    /// a returning peer comes back once the cheater's delay expired.
    pub(super) fn tower_after_block(&mut self, mined: &[Transaction]) -> Result<(), String> {
        let Some(t) = self.tower.as_mut() else { return Ok(()) };
        if !t.offline {
            return Ok(());
        }
        let h = t.honest;
        let out = t.tower.block(mined);
        for tx in out {
            if self.sabotage == Sabotage::TowerDisabled {
                self.out.sabotaged += 1;
                continue;
            }
            self.out.tower_broadcasts += 1;
            self.broadcasts.record(h, &tx);
            if check_broadcast(&self.chain, &tx).map_err(|e| format!("the tower of peer {h}: {e}"))?
                == BroadcastCheck::Deferred
            {
                self.deferred.push(tx.clone());
            }
            let _ = self.chain.submit(&tx);
        }
        self.tower_return()
    }

    /// The honest peer comes back, if it does and its time came: it checks the tower defended it,
    /// then rescans the chain.
    fn tower_return(&mut self) -> Result<(), String> {
        let Some(t) = self.tower.as_ref() else { return Ok(()) };
        let (h, Some(after), Some(breach), false) = (t.honest, t.returns, t.breach, t.returned) else { return Ok(()) };
        let Some(confirmed) = self.chain.confirmation(&breach) else { return Ok(()) };
        let records = self.records(h)?;
        let kit = self.nodes[h].ch.watchtower_kit(None, &records).ok_or("no watchtower kit")?;
        if self.chain.height < confirmed + u32::from(kit.counterparty_to_self_delay) + after {
            return Ok(());
        }
        let (_, built) = self.known.get(&breach).ok_or("the breach is not a known commitment")?;
        for (vout, o) in built.outputs().iter().enumerate() {
            let op = OutPoint { txid: breach, vout: vout as u32 };
            let theirs = matches!(o.role, OutputRole::ToBroadcaster | OutputRole::Htlc(_));
            if theirs && o.value.to_sat() > UNECONOMICAL && self.chain.is_unspent(&op) {
                return Err(format!(
                    "peer {h} came back at height {} (breach confirmed at {confirmed}, delay {}) and found {:?} output {op} of the breach unspent: the tower did not defend it",
                    self.chain.height, kit.counterparty_to_self_delay, o.role
                ));
            }
        }
        if let Some(t) = self.tower.as_mut() {
            t.returned = true;
        }
        self.out.tower_returns += 1;
        self.offline[h] = false;
        let txs: Vec<Transaction> = core::iter::once(self.funding.txid)
            .chain(Settlement::of(&self.chain, self.funding).txs)
            .filter_map(|t| self.chain.tx(&t).cloned())
            .collect();
        for tx in &txs {
            let height = crate::core::BlockHeight(self.chain.confirmation(&tx.compute_txid()).unwrap_or(0));
            let node = &mut self.nodes[h];
            let fx = node.ch.handle_chain_with_history(ChainEvent::Confirmed { tx, height }, &records, &node.signer);
            self.absorb(h, fx)?;
        }
        let tip = self.tip();
        let node = &mut self.nodes[h];
        let fx = node.ch.handle_chain_with_history(ChainEvent::Tip(tip), &records, &node.signer);
        self.absorb(h, fx)
    }

    /// The honest peer of a tower run is offline for good and the tower is done (the breach
    /// answered, or confirmed 30 blocks ago: past the top of any ladder): nothing more will
    /// happen for it.
    pub(super) fn tower_done(&self, i: usize) -> bool {
        self.tower.as_ref().is_some_and(|t| {
            let confirmed = t.breach.and_then(|b| self.chain.confirmation(&b));
            t.honest == i
                && t.offline
                && t.returns.is_none()
                && confirmed.is_some_and(|c| t.tower.active_breaches().is_empty() || self.chain.height >= c + 30)
        })
    }

    /// The breach of a tower run whose honest peer `i` is still offline (for good).
    pub(super) fn tower_offline_breach(&self, i: usize) -> Option<Txid> {
        self.tower.as_ref().filter(|t| t.honest == i && t.offline && !t.returned).and_then(|t| t.breach)
    }

    /// The breach of a tower run against honest peer `i`, if the cheater published one.
    pub(super) fn tower_breach(&self, i: usize) -> Option<Txid> {
        self.tower.as_ref().filter(|t| t.honest == i).and_then(|t| t.breach)
    }
}
