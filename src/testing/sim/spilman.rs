//! The Spilman simulation: a payer streams payments to a payee over a network that drops,
//! duplicates, reorders and delays messages (each payment carries the whole state, so a lost one
//! is superseded by the next and a replay is refused); either side crashes and restores; the
//! payee closes with its best payment before the channel's deadline, or the payer refunds after
//! expiry.

use std::format;
use std::string::String;
use std::vec;

use bitcoin::hashes::Hash;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, WPubkeyHash, Witness};

use crate::core::keys::{ChannelSecrets, Seed};
use crate::core::sign::InMemorySigner;
use crate::core::BlockHeight;
use crate::driving::{ChainEvent, ChainTip, RestoreCheck, RestoreError, StateUpdate};
use crate::spilman::{Effects, Msg, Payee, PayeeConfig, Payer, PayerConfig, Variant};
use crate::testing::chain::Chain;
use crate::testing::invariants::{check_broadcast, check_not_robbed, BroadcastCheck, Settlement};
use crate::testing::net::{Faults, Network};
use crate::testing::rng::Rng;

use super::Outcome;

const START: u32 = 500;

fn p2wpkh(n: u8) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]))
}

fn wire(m: &Msg) -> Result<Msg, String> {
    Msg::decode(&m.encode()).map_err(|e| format!("own message does not decode: {e:?}"))
}

struct Sim {
    rng: Rng,
    payer: Payer,
    payee: Payee,
    signers: [InMemorySigner; 2],
    /// Persisted updates of (payer, payee).
    stored: [std::vec::Vec<StateUpdate>; 2],
    net: Network<Msg>,
    chain: Chain,
    funding: OutPoint,
    capacity: u64,
    deferred: std::vec::Vec<Transaction>,
    out: Outcome,
}

/// Runs one seeded simulation.
///
/// # Errors
/// The first invariant violated.
pub fn run(seed: u64) -> Result<Outcome, String> {
    let mut rng = Rng::new(seed);
    let variant = if rng.chance(500) { Variant::Cltv } else { Variant::PresignedRefund };
    let capacity = rng.range(50_000, 2_000_000);
    let expiry = START + rng.range(60, 400) as u32;
    let signers = [
        InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes(rng.bytes32()), 0)),
        InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes(rng.bytes32()), 0)),
    ];
    let tip = ChainTip::at(START);
    let (payee, fx) = Payee::new(
        PayeeConfig {
            variant,
            payee_script: p2wpkh(2),
            expiry: BlockHeight(expiry),
            min_first_payment: Amount::from_sat(1_000),
            dust_limit: Amount::from_sat(546),
            payment_fee: Amount::from_sat(300),
            close_margin: rng.range(6, 30) as u32,
            htlc_min_blocks: 12,
            min_depth: rng.below(2) as u32,
            claim_fee: Amount::from_sat(300),
        },
        &signers[1],
    );
    let Some(Msg::Offer(offer)) = fx.send.first().map(wire).transpose()? else {
        return Err("the payee sends no offer".into());
    };
    let payer = Payer::new(
        offer,
        PayerConfig {
            capacity: Amount::from_sat(capacity),
            payer_script: p2wpkh(1),
            refund_fee: Amount::from_sat(300),
            claim_fee: Amount::from_sat(300),
            first_payment: Amount::from_sat(rng.range(1_000, 5_000)),
            max_lifetime: 10_000,
        },
        &signers[0],
        tip,
    )
    .map_err(|e| format!("offer refused: {e:?}"))?;
    let faults = Faults::random(&mut rng, 150);
    let mut sim = Sim {
        rng,
        payer,
        payee,
        signers,
        stored: [vec![], vec![]],
        net: Network::new(Faults::NONE),
        chain: Chain::at(START),
        funding: OutPoint::null(),
        capacity,
        deferred: vec![],
        out: Outcome::default(),
    };
    if let Some(u) = fx.update {
        sim.stored[1].push(u);
    }
    let funding = Transaction {
        version: Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid: Txid::from_byte_array([9; 32]), vout: 0 },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![
            TxOut { value: Amount::from_sat(9_000_000), script_pubkey: p2wpkh(0x55) },
            sim.payer.funding_output(),
        ],
    };
    sim.funding = OutPoint { txid: funding.compute_txid(), vout: 1 };
    let fx = sim.payer.fund(funding.clone(), &sim.signers[0]).map_err(|e| format!("fund: {e:?}"))?;
    sim.absorb(0, fx)?;
    sim.drain()?;
    sim.chain.credit(&funding);
    sim.chain.advance(1);
    sim.notify_all(&funding, BlockHeight(START))?;
    sim.net.faults = faults;
    let steps = sim.rng.range(10, 80);
    for _ in 0..steps {
        sim.step()?;
    }
    sim.finish()?;
    sim.out.net = sim.net.stats;
    Ok(sim.out)
}

impl Sim {
    fn tip(&self) -> ChainTip {
        ChainTip::at(self.chain.height)
    }

    fn absorb(&mut self, i: usize, fx: Effects) -> Result<(), String> {
        if (!fx.send.is_empty() || !fx.broadcast.is_empty()) && fx.update.is_none() {
            return Err(format!("side {i} sent or broadcast without persisting first"));
        }
        if let Some(u) = fx.update {
            if self.stored[i].last().is_some_and(|l| u.update_id <= l.update_id) {
                return Err(format!("side {i}: update id {} does not increase", u.update_id));
            }
            self.stored[i].push(u);
        }
        for m in fx.send {
            let m = wire(&m)?;
            self.net.send(1 - i, m, &mut self.rng);
        }
        for tx in fx.broadcast {
            if tx.input.iter().any(|inp| inp.previous_output == self.funding) && i == 1 {
                // The payee closes with the best payment it holds.
                let best = self.payee.closing_tx(&self.signers[1]).map_err(|e| format!("payee: {e:?}"))?;
                if best.compute_txid() != tx.compute_txid() {
                    return Err("the payee broadcast a payment that is not its best".into());
                }
            }
            if check_broadcast(&self.chain, &tx).map_err(|e| format!("side {i}: {e}"))? == BroadcastCheck::Deferred {
                self.deferred.push(tx.clone());
            }
            let _ = self.chain.submit(&tx);
        }
        Ok(())
    }

    fn deliver(&mut self, to: usize, m: Msg) -> Result<(), String> {
        let tip = self.tip();
        let result = if to == 0 {
            self.payer.handle_message(m, &self.signers[0], tip)
        } else {
            self.payee.handle_message(m, &self.signers[1], tip)
        };
        match result {
            Ok(fx) => self.absorb(to, fx),
            Err(_) => Ok(()), // refused (a replay, a duplicate, too late): nothing changes
        }
    }

    fn drain(&mut self) -> Result<(), String> {
        while let Some((to, m)) = self.net.next(&mut self.rng) {
            self.deliver(to, m)?;
        }
        Ok(())
    }

    fn notify_all(&mut self, tx: &Transaction, height: BlockHeight) -> Result<(), String> {
        let fx = self.payer.handle_chain(ChainEvent::Confirmed { tx, height }, &self.signers[0]);
        self.absorb(0, fx)?;
        let fx = self.payee.handle_chain(ChainEvent::Confirmed { tx, height }, &self.signers[1]);
        self.absorb(1, fx)
    }

    fn mine(&mut self) -> Result<(), String> {
        for tx in self.deferred.clone() {
            let _ = self.chain.submit(&tx);
        }
        let mined = self.chain.mine_block();
        let height = BlockHeight(self.chain.height);
        for tx in &mined {
            self.deferred.retain(|t| t != tx);
            self.notify_all(tx, height)?;
        }
        let tip = self.tip();
        let fx = self.payer.handle_chain(ChainEvent::Tip(tip), &self.signers[0]);
        self.absorb(0, fx)?;
        let fx = self.payee.handle_chain(ChainEvent::Tip(tip), &self.signers[1]);
        self.absorb(1, fx)?;
        // The payer's wallet resubmits its refund once valid (the mempool refuses it before).
        if let Ok(refund) = self.payer.refund_tx(&self.signers[0]) {
            if self.chain.is_unspent(&self.funding) && self.chain.check(&refund).is_ok() {
                check_broadcast(&self.chain, &refund)?;
                let _ = self.chain.submit(&refund);
            }
        }
        Ok(())
    }

    fn crash(&mut self, i: usize) -> Result<(), String> {
        self.out.crashes += 1;
        let Some(latest) = self.stored[i].last().cloned() else { return Ok(()) };
        let channel_id = if i == 0 { self.payer.channel_id() } else { self.payee.channel_id() };
        let check = RestoreCheck { channel_id, min_update_id: latest.update_id };
        if let Some(old) = self.stored[i].iter().rev().find(|u| u.update_id < latest.update_id) {
            let refused = if i == 0 {
                matches!(Payer::restore(&old.snapshot, check), Err(RestoreError::Stale { .. }))
            } else {
                matches!(Payee::restore(&old.snapshot, check), Err(RestoreError::Stale { .. }))
            };
            if !refused {
                return Err(format!("side {i}: stale snapshot {} not refused", old.update_id));
            }
            self.out.stale_refused += 1;
        }
        let restored = if i == 0 {
            let p = Payer::restore(&latest.snapshot, check).map_err(|e| format!("payer restore: {e}"))?;
            let same = p.snapshot() == latest.snapshot;
            self.payer = p;
            same
        } else {
            let p = Payee::restore(&latest.snapshot, check).map_err(|e| format!("payee restore: {e}"))?;
            let same = p.snapshot() == latest.snapshot;
            self.payee = p;
            same
        };
        if !restored {
            return Err(format!("side {i}: restore is not byte-identical"));
        }
        // Rescan: the channel's transactions and the tip.
        let settled = Settlement::of(&self.chain, self.funding);
        for txid in &settled.txs {
            if let (Some(tx), Some(h)) = (self.chain.tx(txid).cloned(), self.chain.confirmation(txid)) {
                self.notify_all(&tx, BlockHeight(h))?;
            }
        }
        Ok(())
    }

    fn step(&mut self) -> Result<(), String> {
        self.out.steps += 1;
        match self.rng.below(100) {
            0..=34 => {
                let amount = Amount::from_sat(self.rng.range(1, self.capacity / 20));
                if let Ok(fx) = self.payer.pay(amount, &self.signers[0]) {
                    self.out.payments += 1;
                    self.absorb(0, fx)?;
                }
            }
            35..=69 => {
                for _ in 0..self.rng.range(1, 4) {
                    let Some((to, m)) = self.net.next(&mut self.rng) else { break };
                    self.deliver(to, m)?;
                }
            }
            70..=84 => self.mine()?,
            85..=91 => {
                let i = self.rng.below(2) as usize;
                self.crash(i)?;
            }
            92..=93 => {
                self.out.reorgs += 1;
                let depth = self.rng.range(1, 3) as u32;
                for tx in self.deferred.clone() {
                    let _ = self.chain.submit(&tx);
                }
                let (gone, mined) = self.chain.reorg_to_longer(depth);
                for txid in gone {
                    let fx = self.payer.handle_chain(ChainEvent::Unconfirmed(txid), &self.signers[0]);
                    self.absorb(0, fx)?;
                    let fx = self.payee.handle_chain(ChainEvent::Unconfirmed(txid), &self.signers[1]);
                    self.absorb(1, fx)?;
                }
                for (tx, h) in &mined {
                    self.deferred.retain(|t| t != tx);
                    self.notify_all(tx, BlockHeight(*h))?;
                }
                let tip = self.tip();
                let fx = self.payer.handle_chain(ChainEvent::Tip(tip), &self.signers[0]);
                self.absorb(0, fx)?;
                let fx = self.payee.handle_chain(ChainEvent::Tip(tip), &self.signers[1]);
                self.absorb(1, fx)?;
            }
            94 => {
                if let Ok(fx) = self.payee.close(&self.signers[1]) {
                    self.absorb(1, fx)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), String> {
        self.drain()?;
        let owed_payee = self.payee.received().to_sat();
        let sent = self.payer.state().to_payee.to_sat();
        let expiry = self.payer.refund_height().0;
        if self.rng.chance(700) {
            if let Ok(fx) = self.payee.close(&self.signers[1]) {
                self.absorb(1, fx)?;
            }
        }
        while self.chain.height < expiry + 20 || !self.chain.mempool().is_empty() {
            self.mine()?;
            if self.chain.height > expiry + 200 {
                break;
            }
        }
        let settled = Settlement::of(&self.chain, self.funding);
        if settled.txs.is_empty() {
            return Err("the channel never closed".into());
        }
        if !(self.payer.is_closed() && self.payee.is_closed()) {
            return Err("a side does not know the channel closed".into());
        }
        let (payer_script, payee_script) = (p2wpkh(1), p2wpkh(2));
        settled.check_resolved(self.capacity, &[&payer_script, &payee_script], 0)?;
        check_not_robbed("payee", settled.paid_to(&payee_script), owed_payee, settled.fees)?;
        check_not_robbed("payer", settled.paid_to(&payer_script), self.capacity.saturating_sub(sent), settled.fees)?;
        for tx in &self.deferred {
            if tx.input.iter().all(|i| self.chain.is_unspent(&i.previous_output)) {
                return Err(format!("broadcast {} never became valid", tx.compute_txid()));
            }
        }
        Ok(())
    }
}
