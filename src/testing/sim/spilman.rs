//! The Spilman simulation: a payer streams payments to a payee over a network that drops,
//! duplicates, reorders and delays messages (each payment carries the whole state, so a lost one
//! is superseded by the next and a replay is refused); the payer offers HTLCs within the payee's
//! window, the payee fulfils some (reveals the preimage, only while it can still claim on chain
//! in time), fails some and lets some expire (the payer then times them out off chain); either
//! side crashes and restores; the payee closes with its best payment before the channel's
//! deadline, or the payer refunds after expiry. HTLCs still pending at the close are resolved on
//! chain: the payee claims with the preimage before expiry, the payer times out the rest.
//!
//! In some runs one side misbehaves (the other is honest and must get what it was owed):
//! * a **cheating payee** keeps older payments and, at the close, publishes one (valid, but
//!   paying it less), then goes silent: harmless to the payer;
//! * a **lossy** side restarts from an older snapshot it believes current (its storage lost the
//!   newer writes). On the reconnection that follows, the payer sends a lossy payee its newest
//!   payment again (a lossy payee may only hurt itself: it may close with an older payment when
//!   it cannot take the newest back); a lossy payer is shown its own newer payment and learns
//!   it lost state, after which it signs nothing; either way the payee keeps what it accepted.
//!
//! * a **hostile** side signs everything validly but picks extreme values and refuses to
//!   cooperate when it likes (module `hostile`).
//!
//! Both sides reconnect (`Reestablish`) after every restart and at random other times (a new
//! connection drops the messages in flight); an honest side must never be told it lost state.
//!
//! Each side's payout script is its own wallet's ([`FeeCoins`]), which also pays for fee bumps:
//! every [`BumpRequest`](crate::core::feebump::BumpRequest) a side's channel returns goes to its
//! [`Bumper`], which bumps each block at a flat estimate drawn for the run (a child of the
//! payee's close spends the payee's output, signed by its wallet, and wallet coins if the output
//! does not cover the fee). The accounting charges each side the fees of everything it broadcast,
//! bumps included, and does not count the wallet coins a bump spent as channel value.

use std::collections::{HashMap, HashSet};
use std::format;
use std::string::String;
use std::vec;
use std::vec::Vec;

use bitcoin::hashes::Hash;
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, TxOut, Txid, WPubkeyHash};

use crate::core::commitment::FeeratePerKw;
use crate::core::feebump::Bumper;
use crate::core::keys::{ChannelSecrets, Seed};
use crate::core::sign::InMemorySigner;
use crate::core::{BlockHeight, PaymentHash, PaymentPreimage};
use crate::driving::{ChainEvent, ChainTip, RestoreCheck, RestoreError, StateUpdate};
use crate::spilman::{Effects, Event, Msg, Payee, PayeeConfig, Payer, PayerConfig, PaymentHtlc, Variant};
use crate::testing::chain::Chain;
use crate::testing::invariants::{check_broadcast, check_cheater, check_owed, BroadcastCheck, Broadcasts, Settlement};
use crate::testing::net::{Faults, Network};
use crate::testing::rng::Rng;
use crate::testing::wallet::{FeeCoins, Wallet};

use super::{Config, Outcome, Sabotage};

mod hostile;
use hostile::Hostile;

/// The sabotages this layer applies ([`Sabotage`]).
pub const SABOTAGES: &[Sabotage] =
    &[Sabotage::DropHtlcClaims, Sabotage::DropRefundOrClose, Sabotage::IgnoreNextDeadline, Sabotage::DisableBumper];

const START: u32 = 500;
const PAYER: usize = 0;
const PAYEE: usize = 1;

/// How one side misbehaves in a run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Bad {
    /// The payee publishes an older payment at the close.
    Cheater,
    /// Side `i` restarts from older snapshots.
    Lossy(usize),
    /// Side `i` picks hostile-but-valid values (module `hostile`).
    Hostile(usize),
}

/// A side's view of the channel: the total paid to the payee and the pending HTLCs.
type View = (u64, Vec<PaymentHtlc>);

fn p2wpkh(n: u8) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]))
}

fn wire(m: &Msg) -> Result<Msg, String> {
    Msg::decode(&m.encode()).map_err(|e| format!("own message does not decode: {e:?}"))
}

struct Sim {
    sabotage: Sabotage,
    /// Who broadcast what (fee attribution).
    broadcasts: Broadcasts,
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
    /// Mempool transactions already reported to the parties ([`ChainEvent::Seen`]).
    seen: HashSet<bitcoin::Txid>,
    out: Outcome,
    /// The payee's close margin (it reveals a preimage only well before that margin).
    close_margin: u32,
    counter: u64,
    preimages: HashMap<PaymentHash, PaymentPreimage>,
    /// HTLC ids whose preimage the payee revealed (off chain or in an on-chain claim).
    revealed: HashSet<u64>,
    /// HTLCs pending at the close whose on-chain fate the payee already decided.
    decided: HashSet<u64>,
    /// Each side's view when the channel left the off-chain phase (payer, payee).
    frozen: Option<[View; 2]>,
    /// Every payment the payer signed (by payment number): the payee may close with any.
    signed: Vec<(u64, View)>,
    bad: Option<Bad>,
    /// The hostile side's strategy, in a run with one.
    hostile: Option<Hostile>,
    /// Older signed payments the cheating payee kept.
    kept: Vec<Transaction>,
    /// A side that went silent (the cheater, after cheating).
    offline: [bool; 2],
    /// The payee learned that the payer lost state: it closes with its best payment.
    close_now: bool,
    /// Each side's fee bumper (kept across restarts, as its own store would).
    bumpers: [Bumper; 2],
    /// Each side's wallet: its payout script, and the coins a bump may add.
    wallets: [FeeCoins; 2],
    /// The flat feerate estimate of the run (253 to 20,000 sat/kw: above the channel's fixed
    /// fees, so closes get children and claims replacements).
    estimate: FeeratePerKw,
}

/// The value of each wallet's spare coin.
const SPARE_COIN: u64 = 100_000;

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
    let variant = if rng.chance(500) { Variant::Cltv } else { Variant::PresignedRefund };
    let capacity = rng.range(50_000, 2_000_000);
    let expiry = START + rng.range(60, 400) as u32;
    let signers = [
        InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes(rng.bytes32()), 0)),
        InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes(rng.bytes32()), 0)),
    ];
    let tip = ChainTip::at(START);
    let close_margin = rng.range(6, 30) as u32;
    let wallets = [FeeCoins::new(Wallet::new(0x71)), FeeCoins::new(Wallet::new(0x72))];
    let estimate = FeeratePerKw(rng.range(253, 20_000) as u32);
    let (payee, fx) = Payee::new(
        PayeeConfig {
            variant,
            payee_script: wallets[PAYEE].script(),
            expiry: BlockHeight(expiry),
            min_first_payment: Amount::from_sat(1_000),
            dust_limit: Amount::from_sat(546),
            payment_fee: Amount::from_sat(300),
            close_margin,
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
            payer_script: wallets[PAYER].script(),
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
    let bad = match rng.below(10) {
        _ if config.cheater => Some(Bad::Cheater),
        0..=1 => Some(Bad::Cheater),
        2..=3 => Some(Bad::Lossy(rng.below(2) as usize)),
        _ => None,
    };
    let hostile = super::hostile_rng(seed, config).map(Hostile::draw);
    let bad = hostile.as_ref().map_or(bad, |h| Some(Bad::Hostile(h.idx)));
    let mut sim = Sim {
        sabotage: config.sabotage,
        broadcasts: Broadcasts::default(),
        rng,
        payer,
        payee,
        signers,
        stored: [vec![], vec![]],
        net: Network::new(Faults::NONE),
        chain: if config.fee_spikes {
            super::fee_spike_chain(seed, START, &[START + 2, expiry.saturating_sub(close_margin), expiry])
        } else {
            Chain::at(START)
        },
        funding: OutPoint::null(),
        capacity,
        deferred: vec![],
        seen: HashSet::new(),
        out: Outcome::default(),
        close_margin,
        counter: seed << 20,
        preimages: HashMap::new(),
        revealed: HashSet::new(),
        decided: HashSet::new(),
        frozen: None,
        signed: vec![],
        bad,
        hostile,
        kept: vec![],
        offline: [false; 2],
        close_now: false,
        bumpers: [Bumper::new(), Bumper::new()],
        wallets,
        estimate,
    };
    for w in &mut sim.wallets {
        w.add_coin(&mut sim.chain, Amount::from_sat(SPARE_COIN));
    }
    if let Some(u) = fx.update {
        sim.stored[1].push(u);
    }
    let funding = crate::testing::wallet::unsigned_funding(
        OutPoint { txid: Txid::from_byte_array([9; 32]), vout: 0 },
        vec![TxOut { value: Amount::from_sat(9_000_000), script_pubkey: p2wpkh(0x55) }, sim.payer.funding_output()],
    );
    sim.funding = OutPoint { txid: funding.compute_txid(), vout: 1 };
    let fx = sim.payer.fund(funding.clone(), &sim.signers[0]).map_err(|e| format!("fund: {e:?}"))?;
    sim.absorb(0, fx)?;
    sim.drain()?;
    sim.chain.credit(&funding);
    sim.chain.advance(1);
    sim.notify_all(&funding, BlockHeight(START))?;
    sim.net.faults = faults;
    sim.out.hostile = u32::from(sim.hostile.is_some());
    let steps = sim.rng.range(10, 80);
    let run = (0..steps).try_for_each(|_| sim.step()).and_then(|()| sim.finish());
    run.map_err(|e| format!("{e} (misbehaving side: {:?})", sim.bad))?;
    sim.out.net = sim.net.stats;
    Ok(sim.out)
}

impl Sim {
    fn tip(&self) -> ChainTip {
        ChainTip::at(self.chain.height)
    }

    fn is_honest(&self, i: usize) -> bool {
        match self.bad {
            Some(Bad::Cheater) => i != PAYEE,
            Some(Bad::Lossy(b) | Bad::Hostile(b)) => i != b,
            None => true,
        }
    }

    fn absorb(&mut self, i: usize, fx: Effects) -> Result<(), String> {
        if self.offline[i] {
            return Ok(());
        }
        let mut fx = fx;
        self.hostile_filter(i, &mut fx);
        if (!fx.send.is_empty() || !fx.broadcast.is_empty()) && fx.update.is_none() {
            return Err(format!("side {i} sent or broadcast without persisting first"));
        }
        if let Some(u) = fx.update {
            if self.stored[i].last().is_some_and(|l| u.update_id <= l.update_id) {
                return Err(format!("side {i}: update id {} does not increase", u.update_id));
            }
            if !u.is_full() {
                // This layer writes a full snapshot on every update (driving: persistence).
                return Err(format!("side {i}: update {} carries no full snapshot", u.update_id));
            }
            self.stored[i].push(u);
        }
        if i == PAYER && self.frozen.is_none() {
            let n = self.payer.payment_number();
            if self.signed.last().is_none_or(|(m, _)| *m != n) {
                self.signed.push((n, (self.payer.state().to_payee.to_sat(), self.payer.state().htlcs.clone())));
            }
        }
        if fx.events.contains(&Event::LostState) {
            if self.is_honest(i) {
                return Err(format!("honest side {i} was told it lost state"));
            }
            self.out.lost_state += 1;
        }
        if fx.events.contains(&Event::CounterpartyLostState) {
            // (A hostile payer may claim a stale state: the payee then closes, as it must.)
            if !matches!(self.bad, Some(Bad::Lossy(PAYER) | Bad::Hostile(PAYER))) {
                return Err("the payee was told that an honest payer lost state".into());
            }
            self.close_now = true;
        }
        for m in fx.send {
            let m = wire(&m)?;
            self.net.send(1 - i, m, &mut self.rng);
        }
        let fx_broadcast_ids: Vec<Txid> = fx.broadcast.iter().map(Transaction::compute_txid).collect();
        for tx in fx.broadcast {
            if self.is_honest(i) && self.sabotaged(&tx) {
                self.out.sabotaged += 1;
                continue;
            }
            self.broadcasts.record(i, &tx);
            if tx.input.iter().any(|inp| inp.previous_output == self.funding) && i == PAYEE {
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
        for r in fx.bumps {
            if !fx_broadcast_ids.contains(&r.id()) {
                return Err(format!("side {i}: a bump request for a transaction it did not broadcast"));
            }
            let _ = self.bumpers[i].track(r);
        }
        Ok(())
    }

    /// Side `i`'s bumper's block work at the run's flat estimate; its broadcasts go out as the
    /// side's own (the sabotage applies to them too).
    fn bump(&mut self, i: usize) -> Result<(), String> {
        if self.offline[i] {
            return Ok(());
        }
        self.wallets[i].sync(&self.chain);
        if self.sabotage == Sabotage::DisableBumper && self.is_honest(i) {
            self.out.sabotaged += u32::from(self.bumpers[i].pending().next().is_some());
            return Ok(());
        }
        let est = super::estimates(&self.chain, self.estimate);
        let tip = BlockHeight(self.chain.height);
        let fx = self.bumpers[i].bump(tip, &est, &mut self.wallets[i], &self.signers[i]);
        if super::in_spike(&self.chain) {
            let bumped = fx.events.iter().filter(|e| matches!(e, crate::core::feebump::BumpEvent::Bumped { .. }));
            self.out.spike_bumps += bumped.count() as u32;
        }
        if let Some(u) = &fx.update {
            if u.snapshot.as_deref().map(Bumper::decode).as_ref().map(|r| r.as_ref()) != Some(Ok(&self.bumpers[i])) {
                return Err(format!("side {i}: the bumper does not restore from its update"));
            }
        }
        let mut out = Vec::new();
        for tx in fx.broadcast {
            if self.is_honest(i) && self.sabotaged(&tx) {
                self.out.sabotaged += 1;
                continue;
            }
            self.broadcasts.record(i, &tx);
            let check = check_broadcast(&self.chain, &tx).map_err(|e| format!("side {i} bump: {e}"))?;
            if check == BroadcastCheck::Deferred && !self.deferred.contains(&tx) {
                self.deferred.push(tx.clone());
            }
            out.push(tx);
        }
        // A child goes out with its parent (a parent below a block's minimum needs it).
        super::submit_bumps(&mut self.chain, &out);
        Ok(())
    }

    /// Whether the [`Sabotage`] drops this broadcast of an honest side: the close or the
    /// refund spends the channel output; everything else claims an HTLC output of the close.
    fn sabotaged(&self, tx: &Transaction) -> bool {
        let close = tx.input.iter().any(|inp| inp.previous_output == self.funding);
        match self.sabotage {
            Sabotage::DropHtlcClaims => !close,
            Sabotage::DropRefundOrClose => close,
            _ => false,
        }
    }

    fn deliver(&mut self, to: usize, m: Msg) -> Result<(), String> {
        if self.offline[to] || self.is_silent(to) {
            return Ok(());
        }
        let tip = self.tip();
        let result = if to == PAYER {
            self.payer.handle_message(m, &self.signers[0], tip)
        } else {
            self.payee.handle_message(m, &self.signers[1], tip)
        };
        match result {
            Ok(fx) => self.absorb(to, fx),
            Err(_) => {
                // Refused (a replay, a duplicate, too late): nothing changes.
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

    fn notify(&mut self, i: usize, ev: ChainEvent<'_>) -> Result<(), String> {
        if self.offline[i] {
            return Ok(());
        }
        if matches!(ev, ChainEvent::Tip(_)) && self.sabotage == Sabotage::IgnoreNextDeadline && self.is_honest(i) {
            self.out.sabotaged += 1;
            return Ok(());
        }
        if !matches!(ev, ChainEvent::Tip(_)) {
            let _ = self.bumpers[i].handle_chain(&ev);
        }
        let fx = if i == PAYER {
            self.payer.handle_chain(ev, &self.signers[0])
        } else {
            self.payee.handle_chain(ev, &self.signers[1])
        };
        self.absorb(i, fx)
    }

    fn notify_all(&mut self, tx: &Transaction, height: BlockHeight) -> Result<(), String> {
        if tx.input.iter().any(|i| i.previous_output == self.funding) {
            self.stop_offchain();
        }
        self.notify(PAYER, ChainEvent::Confirmed { tx, height })?;
        self.notify(PAYEE, ChainEvent::Confirmed { tx, height })
    }

    fn notify_tip(&mut self) -> Result<(), String> {
        let tip = self.tip();
        self.notify(PAYER, ChainEvent::Tip(tip))?;
        self.notify(PAYEE, ChainEvent::Tip(tip))
    }

    /// Records each side's view the first time the channel output is spent.
    fn stop_offchain(&mut self) {
        if self.frozen.is_none() {
            let payer = (self.payer.state().to_payee.to_sat(), self.payer.state().htlcs.clone());
            let payee = self.payee.state().map(|s| (s.to_payee.to_sat(), s.htlcs.clone())).unwrap_or_default();
            self.out.htlcs_on_chain += payer.1.len().max(payee.1.len()) as u32;
            self.frozen = Some([payer, payee]);
        }
    }

    fn view(&self, viewer: usize) -> View {
        match &self.frozen {
            Some(views) => views[viewer].clone(),
            None if viewer == PAYER => (self.payer.state().to_payee.to_sat(), self.payer.state().htlcs.clone()),
            None => self.payee.state().map(|s| (s.to_payee.to_sat(), s.htlcs.clone())).unwrap_or_default(),
        }
    }

    /// What `viewer`'s state says the payee is owed: the total paid plus the pending HTLCs whose
    /// preimage it revealed. The payer is owed the rest of the capacity.
    fn payee_owed_in_view(&self, viewer: usize) -> u64 {
        let (to_payee, htlcs) = self.view(viewer);
        let revealed: u64 = htlcs.iter().filter(|h| self.revealed.contains(&h.id)).map(|h| h.amount.to_sat()).sum();
        to_payee + revealed
    }

    /// The payee is owed what its own state says: its best payment and the HTLCs it revealed
    /// (payments it accepted stay accepted whatever the payer forgets). The payer is owed its
    /// capacity less the most the payee can take: the payee may close with any payment the
    /// payer signed, and claim each of its HTLCs whose preimage it revealed (a `Fail` the payee
    /// sent does not bind it while it holds an older payment carrying the HTLC).
    fn owed(&self) -> [u64; 2] {
        let worst = self
            .signed
            .iter()
            .map(|(_, (to_payee, htlcs))| {
                to_payee
                    + htlcs.iter().filter(|h| self.revealed.contains(&h.id)).map(|h| h.amount.to_sat()).sum::<u64>()
            })
            .chain([self.payee_owed_in_view(PAYER)])
            .max()
            .unwrap_or(0);
        [self.capacity.saturating_sub(worst), self.payee_owed_in_view(PAYEE)]
    }

    fn mine(&mut self) -> Result<(), String> {
        for tx in self.deferred.clone() {
            let _ = self.chain.submit(&tx);
        }
        // The embedders report what they see in the mempool, each transaction once.
        let fresh: Vec<Transaction> =
            self.chain.mempool().iter().filter(|t| !self.seen.contains(&t.compute_txid())).cloned().collect();
        for tx in &fresh {
            self.seen.insert(tx.compute_txid());
            self.notify(PAYER, ChainEvent::Seen { tx })?;
            self.notify(PAYEE, ChainEvent::Seen { tx })?;
        }
        let mined = self.chain.mine_block();
        let height = BlockHeight(self.chain.height);
        for tx in &mined {
            self.deferred.retain(|t| t != tx);
            self.notify_all(tx, height)?;
        }
        self.notify_tip()?;
        // The payer's wallet resubmits its refund once valid (the mempool refuses it before).
        if !self.offline[PAYER] {
            if let Ok(refund) = self.payer.refund_tx(&self.signers[0]) {
                if self.chain.is_unspent(&self.funding) && self.chain.check(&refund).is_ok() {
                    check_broadcast(&self.chain, &refund)?;
                    if self.is_honest(PAYER) && self.sabotaged(&refund) {
                        self.out.sabotaged += 1;
                    } else {
                        self.broadcasts.record(PAYER, &refund);
                        let _ = self.chain.submit(&refund);
                    }
                }
            }
        }
        self.timeout_htlcs()?;
        self.claim_on_chain()?;
        self.bump(PAYER)?;
        self.bump(PAYEE)
    }

    /// The payer takes expired HTLCs out of its next payment.
    fn timeout_htlcs(&mut self) -> Result<(), String> {
        let tip = self.tip();
        if self.keeps_expired() {
            return Ok(());
        }
        let expired: Vec<u64> =
            self.payer.state().htlcs.iter().filter(|h| h.expiry.0 <= tip.height.0).map(|h| h.id).collect();
        for id in expired {
            if let Ok(fx) = self.payer.timeout_htlc(id, &self.signers[0], tip) {
                self.absorb(PAYER, fx)?;
            }
        }
        Ok(())
    }

    /// Once its own payment closed the channel, the payee decides once per HTLC still pending
    /// whether to claim it with the preimage (only while the claim can confirm before expiry) or
    /// to let the payer time it out.
    fn claim_on_chain(&mut self) -> Result<(), String> {
        if self.offline[PAYEE] || !self.payee.is_closed() {
            return Ok(());
        }
        let Ok(own) = self.payee.closing_tx(&self.signers[1]) else { return Ok(()) };
        if self.chain.confirmation(&own.compute_txid()).is_none() {
            return Ok(());
        }
        let pending: Vec<PaymentHtlc> = self.payee.state().map(|s| s.htlcs.clone()).unwrap_or_default();
        for h in pending {
            if self.revealed.contains(&h.id) || !self.decided.insert(h.id) {
                continue;
            }
            let in_time = self.chain.height.saturating_add(2) < h.expiry.0;
            let Some(preimage) = self.preimages.get(&h.payment_hash).copied() else { continue };
            if in_time && self.rng.chance(600) {
                let fx =
                    self.payee.fulfill_htlc(h.id, preimage, &self.signers[1]).map_err(|e| format!("claim: {e:?}"))?;
                self.revealed.insert(h.id);
                self.absorb(PAYEE, fx)?;
            }
        }
        Ok(())
    }

    fn rescan(&mut self, i: usize) -> Result<(), String> {
        let settled = Settlement::of(&self.chain, self.funding);
        let mut txs = vec![self.funding.txid];
        txs.extend(settled.txs);
        for txid in &txs {
            if let (Some(tx), Some(h)) = (self.chain.tx(txid).cloned(), self.chain.confirmation(txid)) {
                let height = BlockHeight(h);
                self.notify(i, ChainEvent::Confirmed { tx: &tx, height })?;
            }
        }
        let tip = self.tip();
        self.notify(i, ChainEvent::Tip(tip))
    }

    fn channel_id(&self, i: usize) -> Option<crate::driving::ChannelId> {
        if i == PAYER {
            self.payer.channel_id()
        } else {
            self.payee.channel_id()
        }
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
        let check = RestoreCheck { channel_id: self.channel_id(i), min_update_id: latest.update_id };
        if let Some(old) = self.stored[i].iter().rev().find(|u| u.update_id < latest.update_id) {
            let refused = if i == PAYER {
                matches!(Payer::restore(old.snapshot.as_deref().unwrap_or(&[]), check), Err(RestoreError::Stale { .. }))
            } else {
                matches!(Payee::restore(old.snapshot.as_deref().unwrap_or(&[]), check), Err(RestoreError::Stale { .. }))
            };
            if !refused {
                return Err(format!("side {i}: stale snapshot {} not refused", old.update_id));
            }
            self.out.stale_refused += 1;
        }
        self.restore(i, latest.snapshot.as_deref().unwrap_or(&[]), check)?;
        self.rescan(i)?;
        self.reconnect()
    }

    /// A new connection: the messages in flight are lost, and both sides send `Reestablish`.
    fn reconnect(&mut self) -> Result<(), String> {
        self.out.reconnections += 1;
        self.net.clear();
        let to_payee = self.hostile_reestablish(PAYER).unwrap_or_else(|| self.payer.reestablish());
        let to_payer = self.hostile_reestablish(PAYEE).unwrap_or_else(|| self.payee.reestablish());
        let (to_payee, to_payer) = (wire(&to_payee)?, wire(&to_payer)?);
        if !self.is_silent(PAYER) {
            self.deliver(PAYEE, to_payee)?;
        }
        if !self.is_silent(PAYEE) {
            self.deliver(PAYER, to_payer)?;
        }
        Ok(())
    }

    fn restore(&mut self, i: usize, snapshot: &[u8], check: RestoreCheck) -> Result<(), String> {
        let same = if i == PAYER {
            let p = Payer::restore(snapshot, check).map_err(|e| format!("payer restore: {e}"))?;
            let same = p.snapshot() == snapshot;
            self.payer = p;
            same
        } else {
            let p = Payee::restore(snapshot, check).map_err(|e| format!("payee restore: {e}"))?;
            let same = p.snapshot() == snapshot;
            self.payee = p;
            same
        };
        if !same {
            return Err(format!("side {i}: restore is not byte-identical"));
        }
        Ok(())
    }

    /// Side `i` restarts from an older snapshot, believing it current: the newer writes are lost.
    fn lose_data(&mut self, i: usize) -> Result<(), String> {
        let n = self.stored[i].len();
        if n < 2 {
            return Ok(());
        }
        let k = self.rng.below(n as u64 - 1) as usize;
        let Some(old) = self.stored[i].get(k).cloned() else { return Ok(()) };
        // The snapshot's own update id: the embedder believes it is the newest.
        let check = RestoreCheck { channel_id: None, min_update_id: old.update_id };
        self.restore(i, old.snapshot.as_deref().unwrap_or(&[]), check)?;
        self.out.lost_data += 1;
        self.stored[i].truncate(k + 1);
        self.rescan(i)?;
        self.reconnect()
    }

    /// The payer offers an HTLC expiring somewhere in the payee's window.
    fn add_htlc(&mut self) -> Result<(), String> {
        let tip = self.tip();
        self.counter += 1;
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&self.counter.to_be_bytes());
        let preimage = PaymentPreimage(bytes);
        self.preimages.insert(preimage.hash(), preimage);
        let amount = Amount::from_sat(self.rng.range(1_000, (self.capacity / 30).max(1_001)));
        let earliest = tip.height.0.saturating_add(12);
        let latest = self.payer.refund_height().0.saturating_sub(self.close_margin);
        let expiry = BlockHeight(earliest.saturating_add(self.rng.below(80) as u32).min(latest));
        if let Ok((_, fx)) = self.payer.add_htlc(amount, preimage.hash(), expiry, &self.signers[0], tip) {
            self.out.htlcs += 1;
            self.absorb(PAYER, fx)?;
        }
        Ok(())
    }

    /// The payee settles an HTLC it holds: reveals the preimage (only while, if the payer never
    /// folds it in, it can still close and claim before expiry, as an honest payee must) or fails
    /// it.
    fn settle_htlc(&mut self) -> Result<(), String> {
        let held: Vec<PaymentHtlc> = self.payee.state().map(|s| s.htlcs.clone()).unwrap_or_default();
        let Some(h) = self.rng.index(held.len()).and_then(|k| held.get(k).copied()) else { return Ok(()) };
        let in_time = self.chain.height.saturating_add(2) < h.expiry.0.saturating_sub(self.close_margin);
        let preimage = self.preimages.get(&h.payment_hash).copied();
        let fx = match preimage {
            Some(pre) if in_time && self.rng.chance(650) => {
                let fx = self.payee.fulfill_htlc(h.id, pre, &self.signers[1]);
                if fx.is_ok() {
                    self.revealed.insert(h.id);
                    self.out.payments += 1;
                }
                fx
            }
            _ if self.revealed.contains(&h.id) => return Ok(()),
            _ => self.payee.fail_htlc(h.id),
        };
        if let Ok(fx) = fx {
            self.absorb(PAYEE, fx)?;
        }
        Ok(())
    }

    /// The cheating payee keeps a copy of its best signed payment.
    fn keep_payment(&mut self) {
        if self.bad != Some(Bad::Cheater) {
            return;
        }
        if let Ok(tx) = self.payee.closing_tx(&self.signers[1]) {
            if self.kept.last() != Some(&tx) {
                self.kept.push(tx);
            }
        }
    }

    fn step(&mut self) -> Result<(), String> {
        self.out.steps += 1;
        if std::mem::take(&mut self.close_now) {
            if let Ok(fx) = self.payee.close(&self.signers[1]) {
                self.absorb(PAYEE, fx)?;
            }
            return Ok(());
        }
        if self.hostile_turn() {
            return self.hostile_step();
        }
        match self.rng.below(100) {
            0..=27 => {
                let amount = Amount::from_sat(self.rng.range(1, self.capacity / 20));
                if let Ok(fx) = self.payer.pay(amount, &self.signers[0]) {
                    self.out.payments += 1;
                    self.absorb(PAYER, fx)?;
                }
            }
            28..=31 => self.add_htlc()?,
            32..=34 => self.settle_htlc()?,
            35..=66 => {
                for _ in 0..self.rng.range(1, 4) {
                    let Some((to, m)) = self.net.next(&mut self.rng) else { break };
                    self.deliver(to, m)?;
                }
            }
            67..=81 => self.mine()?,
            82..=88 => {
                let i = self.rng.below(2) as usize;
                self.crash(i)?;
            }
            89..=90 => {
                self.out.reorgs += 1;
                let depth = self.rng.range(1, 3) as u32;
                for tx in self.deferred.clone() {
                    let _ = self.chain.submit(&tx);
                }
                let (gone, mined) = self.chain.reorg_to_longer(depth);
                for txid in gone {
                    self.notify(PAYER, ChainEvent::Unconfirmed(txid))?;
                    self.notify(PAYEE, ChainEvent::Unconfirmed(txid))?;
                }
                for (tx, h) in &mined {
                    self.deferred.retain(|t| t != tx);
                    self.notify_all(tx, BlockHeight(*h))?;
                }
                self.notify_tip()?;
            }
            91 => {
                if let Ok(fx) = self.payee.close(&self.signers[1]) {
                    self.absorb(PAYEE, fx)?;
                }
            }
            92..=95 => self.keep_payment(),
            96 => self.reconnect()?,
            _ => {}
        }
        Ok(())
    }

    /// The cheating payee publishes the oldest payment it kept that pays it less than its best,
    /// and goes silent.
    fn cheat(&mut self) -> Result<bool, String> {
        let best = self.payee.closing_tx(&self.signers[1]).ok();
        let Some(old) = self.kept.iter().find(|t| Some(*t) != best.as_ref()).cloned() else { return Ok(false) };
        check_broadcast(&self.chain, &old).map_err(|e| format!("cheater: {e}"))?;
        if self.chain.submit(&old).is_err() {
            return Ok(false);
        }
        self.stop_offchain();
        self.out.cheats += 1;
        self.out.unilateral = true;
        self.offline[PAYEE] = true;
        Ok(true)
    }

    /// The value each side's wallet put into the channel's transactions (the inputs of a
    /// settled transaction that are neither the funding output nor an output of a settled
    /// transaction: the coins a bump added).
    fn external_inputs(&self, settled: &Settlement, scripts: &[ScriptBuf; 2]) -> Result<[u64; 2], String> {
        let mut external = [0u64; 2];
        for txid in &settled.txs {
            let Some(tx) = self.chain.tx(txid) else { continue };
            for input in &tx.input {
                let op = input.previous_output;
                if op == self.funding || settled.txs.contains(&op.txid) {
                    continue;
                }
                let prev = self.chain.tx(&op.txid).and_then(|t| t.output.get(op.vout as usize));
                let Some(prev) = prev else { return Err(format!("{txid} spends an unknown output {op}")) };
                match scripts.iter().position(|s| *s == prev.script_pubkey) {
                    Some(i) => external[i] += prev.value.to_sat(),
                    None => return Err(format!("{txid} spends {op}, which is no side's")),
                }
            }
        }
        Ok(external)
    }

    fn finish(&mut self) -> Result<(), String> {
        self.net.faults = Faults::NONE;
        self.drain()?;
        let unspent = self.chain.is_unspent(&self.funding) && self.chain.mempool().is_empty();
        let cheated = self.bad == Some(Bad::Cheater) && unspent && self.cheat()?;
        let expiry = self.payer.refund_height().0;
        if !cheated && !self.withholds_close() && self.rng.chance(700) {
            if let Ok(fx) = self.payee.close(&self.signers[1]) {
                self.absorb(PAYEE, fx)?;
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
        for (i, closed) in [self.payer.is_closed(), self.payee.is_closed()].into_iter().enumerate() {
            // A side that lost data may have forgotten the channel.
            if self.is_honest(i) && !closed {
                return Err(format!("side {i} does not know the channel closed"));
            }
        }
        let scripts = [self.wallets[PAYER].script(), self.wallets[PAYEE].script()];
        // Wallet coins a bump spent (inputs of the channel's transactions from outside them):
        // each side's own money, not the channel's.
        let external = self.external_inputs(&settled, &scripts)?;
        let unspent: u64 = settled.unspent.iter().map(|(_, o)| o.value.to_sat()).sum();
        if unspent + settled.fees != self.capacity + external[0] + external[1] {
            return Err(format!(
                "value not conserved: {unspent} unspent + {} fees != {} + {external:?} from the wallets",
                settled.fees, self.capacity
            ));
        }
        let got = |i: usize| settled.paid_to(&scripts[i]).saturating_sub(external[i]);
        let owed = self.owed();
        for i in [PAYER, PAYEE] {
            if self.is_honest(i) {
                let who = if i == PAYER { "payer" } else { "payee" };
                // Each transaction's fee is charged to the side that broadcast it (the payee's
                // closing payment, the payer's refund, each side's HTLC claims).
                // Fee bumps are charged the same way: a child or a replacement is the side's own
                // broadcast.
                let fees = self.broadcasts.fees_of(&self.chain, &settled, i, [&scripts[0], &scripts[1]], |_| false);
                check_owed(who, got(i), owed[i], fees)?;
            }
        }
        if self.bad == Some(Bad::Cheater) {
            // An older payment loses against the newest: the cheater gets at most the best
            // payment the payer signed (with the HTLCs whose preimage it revealed).
            check_cheater("payee", got(PAYEE), self.capacity - owed[PAYER])?;
        }
        for (op, o) in &settled.unspent {
            // A misbehaving side may leave an HTLC output of the close unclaimed (an honest
            // side's own loss is counted by its check below).
            if !scripts.contains(&o.script_pubkey) && (self.bad.is_none() || op.txid != settled.txs[0]) {
                return Err(format!("{} sat at {op} left in a script no side owns", o.value.to_sat()));
            }
        }
        for tx in &self.deferred {
            if tx.input.iter().all(|i| self.chain.is_unspent(&i.previous_output)) {
                return Err(format!("broadcast {} never became valid", tx.compute_txid()));
            }
        }
        Ok(())
    }
}
