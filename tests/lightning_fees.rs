//! Lightning's unilateral paths under a fee market that spikes 10× then 100×, driven through the
//! channel's bump requests (`Effects::bumps`), a `Bumper` and a wallet of fee coins.
//!
//! The market: each block has a minimum feerate; a transaction is mined only if it pays it (a
//! child with its parent: the package's feerate). The estimates handed to `Bumper::bump` are
//! the current block's rate, so a spike starting in the next block is missed once, and the
//! bumper must follow. Every transaction mined goes through the simulated chain, which runs
//! Bitcoin Core's interpreter on it.

mod common;

use std::collections::{HashMap, HashSet};

use bitcoin::{Amount, OutPoint, Transaction, Txid};
use common::chain::Chain;
use common::ln::{onion, Pair};
use common::wallet::{FeeCoins, Wallet};
use paychan::core::commitment::{ChannelType, FeeratePerKw};
use paychan::core::feebump::{BumpEvent, BumpMethod, BumpRequest, Bumper, FeeEstimates};
use paychan::core::script;
use paychan::core::sign::Signer;
use paychan::core::{BlockHeight, MilliSats, PaymentPreimage};
use paychan::driving::{ChainEvent, ChainTip};
use paychan::lightning::{Effects, PenaltyRecord};
use paychan::testing::invariants::Settlement;

/// The block minimum feerate at height `h`: 1× until `spike`, 10× for two blocks, 100× until
/// `calm`, 1× after.
fn market(h: u32, spike: u32, calm: u32) -> FeeratePerKw {
    if h <= spike {
        FeeratePerKw(1_000)
    } else if h <= spike + 2 {
        FeeratePerKw(10_000)
    } else if h <= calm {
        FeeratePerKw(100_000)
    } else {
        FeeratePerKw(1_000)
    }
}

const COIN: u64 = 500_000;

/// One party's embedder: its bumper (or none: fixed-fee transactions only), wallet and what it
/// broadcast.
struct Party {
    bumper: Option<Bumper>,
    wallet: FeeCoins,
    wallet_start: Amount,
    requests: HashMap<Txid, BumpRequest>,
    /// Broadcasts without a request (or every broadcast, without a bumper).
    fixed: Vec<Transaction>,
    /// Every txid it broadcast.
    ours: HashSet<Txid>,
    /// The wallet coins of each request's first attempt.
    first_coins: HashMap<Txid, Vec<OutPoint>>,
    /// `(request, height, deadline)` of each resolution.
    resolved: Vec<(Txid, u32, BlockHeight)>,
    /// Bump attempts made.
    attempts: u32,
}

impl Party {
    fn new(chain: &mut Chain, seed: u8, bump: bool) -> Party {
        let mut wallet = FeeCoins::new(Wallet::new(seed));
        for _ in 0..4 {
            wallet.add_coin(chain, Amount::from_sat(COIN));
        }
        Party {
            bumper: bump.then(Bumper::new),
            wallet_start: wallet.balance(),
            wallet,
            requests: HashMap::new(),
            fixed: Vec::new(),
            ours: HashSet::new(),
            first_coins: HashMap::new(),
            resolved: Vec::new(),
            attempts: 0,
        }
    }
}

/// Which transactions are evicted.
type Evict = Box<dyn Fn(&Transaction) -> bool>;

struct World {
    p: Pair,
    chain: Chain,
    parties: [Party; 2],
    /// Which parties' embedders run (a silent peer does nothing).
    active: [bool; 2],
    spike: u32,
    calm: u32,
    /// Transactions the test refuses to mine (evicted from every mempool) until that height.
    evict_until: Option<(u32, Evict)>,
    /// Every transaction mined, with its height.
    mined: Vec<(Transaction, u32)>,
}

fn records(p: &Pair, i: usize) -> Vec<PenaltyRecord> {
    let peer = if i == 0 { &p.a } else { &p.b };
    paychan::lightning::records::penalty_records(&peer.records).expect("records")
}

impl World {
    fn new(p: Pair, height: u32, bump: [bool; 2], active: [bool; 2], spike: u32, calm: u32) -> World {
        let mut chain = Chain::at(height);
        chain.credit(&p.funding);
        let parties = [Party::new(&mut chain, 0x51, bump[0]), Party::new(&mut chain, 0x52, bump[1])];
        let mut w = World { p, chain, parties, active, spike, calm, evict_until: None, mined: Vec::new() };
        for i in 0..2 {
            if w.active[i] {
                let fx = w.channel(i, ChainEvent::Tip(ChainTip::at(height)));
                w.absorb(i, fx);
            }
        }
        w
    }

    fn channel(&mut self, i: usize, ev: ChainEvent<'_>) -> Effects {
        let recs = records(&self.p, i);
        let peer = if i == 0 { &mut self.p.a } else { &mut self.p.b };
        peer.ch.handle_chain_with_history(ev, &recs, &peer.signer)
    }

    /// Hands a channel's effects to party `i`'s embedder.
    fn absorb(&mut self, i: usize, fx: Effects) {
        let peer = if i == 0 { &mut self.p.a } else { &mut self.p.b };
        let (broadcast, bumps) = (fx.broadcast.clone(), fx.bumps.clone());
        let mut sink = std::collections::VecDeque::new();
        peer.absorb(fx, &mut sink);
        let party = &mut self.parties[i];
        let requested: HashSet<Txid> = bumps.iter().map(BumpRequest::id).collect();
        for tx in broadcast {
            party.ours.insert(tx.compute_txid());
            let unrequested = party.bumper.is_none() || !requested.contains(&tx.compute_txid());
            if unrequested && !party.fixed.contains(&tx) {
                party.fixed.push(tx);
            }
        }
        if let Some(b) = party.bumper.as_mut() {
            for r in bumps {
                party.requests.entry(r.id()).or_insert_with(|| r.clone());
                let _ = b.track(r);
            }
        }
    }

    fn fee(chain: &Chain, tx: &Transaction) -> Option<u64> {
        let ins: Option<u64> = tx.input.iter().map(|i| chain.utxo(&i.previous_output).map(|o| o.value.to_sat())).sum();
        Some(ins? - tx.output.iter().map(|o| o.value.to_sat()).sum::<u64>())
    }

    /// Mines `tx` into block `h` (the chain at `h - 1` or already at `h` with earlier
    /// transactions of the block).
    fn mine_into(chain: &mut Chain, tx: &Transaction, h: u32) {
        chain.height = h - 1;
        chain.submit(tx).unwrap_or_else(|e| panic!("{} rejected: {e:?}", tx.compute_txid()));
        let got = chain.mine_block();
        assert_eq!(got.len(), 1);
    }

    /// One block: each active party's bumper works with the current estimates, and the block
    /// takes what pays its minimum.
    fn block(&mut self) {
        let tip = self.chain.height;
        let est = FeeEstimates::flat(market(tip, self.spike, self.calm));
        let min = u64::from(market(tip + 1, self.spike, self.calm).0);
        let mut candidates: Vec<Transaction> = Vec::new();
        for i in 0..2 {
            if !self.active[i] {
                continue;
            }
            let signer = if i == 0 { self.p.a.signer.clone() } else { self.p.b.signer.clone() };
            let party = &mut self.parties[i];
            if let Some(b) = party.bumper.as_mut() {
                let fx = b.bump(BlockHeight(tip), &est, &mut party.wallet, &signer);
                let mut by_txid: HashMap<Txid, (Amount, Amount)> = HashMap::new();
                for e in &fx.events {
                    match e {
                        BumpEvent::Bumped { id, txid, fee } => {
                            party.attempts += 1;
                            let stake = party.requests[id].at_stake;
                            let entry = by_txid.entry(*txid).or_insert((*fee, Amount::ZERO));
                            entry.1 += stake;
                            let tx = fx.broadcast.iter().find(|t| t.compute_txid() == *txid).expect("broadcast");
                            let wallet_script = party.wallet.script();
                            let coins: Vec<OutPoint> = tx
                                .input
                                .iter()
                                .map(|i| i.previous_output)
                                .filter(|op| self.chain.utxo(op).is_some_and(|o| o.script_pubkey == wallet_script))
                                .collect();
                            let first = party.first_coins.entry(*id).or_insert_with(|| coins.clone());
                            assert!(
                                first.iter().all(|c| coins.contains(c)),
                                "a replacement spends the same wallet coins again"
                            );
                        }
                        BumpEvent::DeadlineMissed { id } if i == 0 => panic!("A missed the deadline of {id}"),
                        BumpEvent::Failed { error, .. } if i == 0 => panic!("A: a bump failed: {error}"),
                        _ => {}
                    }
                }
                for (txid, (fee, stake)) in by_txid {
                    assert!(fee <= stake, "{txid}: a bump of {fee} above the {stake} at stake");
                }
                for tx in fx.broadcast {
                    party.ours.insert(tx.compute_txid());
                    candidates.push(tx);
                }
            }
            candidates.extend(party.fixed.iter().cloned());
        }
        // Build the block: what pays the minimum (alone, or as a package with its child).
        let h = tip + 1;
        let mut included: Vec<Transaction> = Vec::new();
        let evicted =
            |w: &World, tx: &Transaction| w.evict_until.as_ref().is_some_and(|(until, f)| h <= *until && f(tx));
        loop {
            let mut progress = false;
            for (k, tx) in candidates.iter().enumerate() {
                let txid = tx.compute_txid();
                if self.chain.confirmation(&txid).is_some() || evicted(self, tx) {
                    continue;
                }
                let mut at = self.chain.clone();
                at.height = h - 1;
                if at.check(tx).is_err() {
                    continue;
                }
                let fee = Self::fee(&at, tx).expect("inputs known");
                let weight = tx.weight().to_wu();
                if fee * 1000 >= min * weight {
                    Self::mine_into(&mut self.chain, tx, h);
                    included.push(tx.clone());
                    progress = true;
                    continue;
                }
                // A parent paid for by a child among the candidates.
                for child in candidates.iter().skip(k + 1).chain(candidates.iter().take(k)) {
                    if !child.input.iter().any(|i| i.previous_output.txid == txid) {
                        continue;
                    }
                    let mut with = at.clone();
                    Self::mine_into(&mut with, tx, h);
                    with.height = h - 1;
                    if with.check(child).is_err() {
                        continue;
                    }
                    let cfee = Self::fee(&with, child).expect("inputs known");
                    if (fee + cfee) * 1000 >= min * (weight + child.weight().to_wu()) {
                        Self::mine_into(&mut self.chain, tx, h);
                        Self::mine_into(&mut self.chain, child, h);
                        included.push(tx.clone());
                        included.push(child.clone());
                        progress = true;
                        break;
                    }
                }
            }
            if !progress {
                break;
            }
        }
        self.chain.height = h;
        for tx in &included {
            self.mined.push((tx.clone(), h));
        }
        // Tell the embedders.
        for i in 0..2 {
            if !self.active[i] {
                continue;
            }
            for tx in &included {
                let fx = self.channel(i, ChainEvent::Confirmed { tx, height: BlockHeight(h) });
                self.absorb(i, fx);
                let party = &mut self.parties[i];
                if let Some(b) = party.bumper.as_mut() {
                    let fx = b.handle_chain(&ChainEvent::Confirmed { tx, height: BlockHeight(h) });
                    for e in fx.events {
                        if let BumpEvent::Resolved { id, by } = e {
                            let deadline = party.requests[&id].deadline;
                            // The honest party (A) wins every race it bumps for.
                            assert!(i != 0 || party.ours.contains(&by), "A's request {id} resolved by the peer's {by}");
                            party.resolved.push((id, h, deadline));
                        }
                    }
                }
            }
            let fx = self.channel(i, ChainEvent::Tip(ChainTip::at(h)));
            self.absorb(i, fx);
            let chain = &self.chain;
            let party = &mut self.parties[i];
            party.fixed.retain(|t| t.input.iter().all(|i| chain.is_unspent(&i.previous_output)));
            party.wallet.sync(chain);
        }
    }

    fn run_until(&mut self, max: u32, done: impl Fn(&World) -> bool) {
        while self.chain.height < max {
            if done(self) {
                return;
            }
            self.block();
        }
        assert!(done(self), "not done by {max}");
    }

    fn settled(&self, i: usize) -> bool {
        let ch = if i == 0 { &self.p.a.ch } else { &self.p.b.ch };
        ch.is_fully_resolved() && self.parties[i].bumper.as_ref().is_none_or(|b| b.pending().count() == 0)
    }

    /// Checks every request of party `i` confirmed by its deadline.
    fn assert_deadlines_met(&self, i: usize) {
        let party = &self.parties[i];
        assert!(!party.resolved.is_empty());
        for (id, h, deadline) in &party.resolved {
            assert!(BlockHeight(*h) <= *deadline, "request {id} confirmed at {h}, after its deadline {deadline:?}");
        }
    }

    /// What party `i` holds at the end: its wallet and what its sweeps paid it.
    fn holdings(&self, i: usize, funding: OutPoint) -> (u64, u64) {
        let ch = if i == 0 { &self.p.a.ch } else { &self.p.b.ch };
        let settled = Settlement::of(&self.chain, funding);
        let dest = settled.paid_to(&ch.sweep_destination());
        let fees: u64 = settled
            .txs
            .iter()
            .filter(|t| self.parties[i].ours.contains(*t) && !self.is_commitment(t, funding))
            .map(|t| settled.tx_fees[t])
            .sum();
        (self.parties[i].wallet.balance().to_sat() + dest, fees)
    }

    fn is_commitment(&self, txid: &Txid, funding: OutPoint) -> bool {
        self.chain.tx(txid).is_some_and(|t| t.input.iter().any(|i| i.previous_output == funding))
    }
}

fn funding_outpoint(p: &Pair) -> OutPoint {
    OutPoint { txid: p.funding.compute_txid(), vout: 0 }
}

fn preimage(n: u8) -> PaymentPreimage {
    PaymentPreimage([n; 32])
}

const HTLC: u64 = 1_000_000;

/// A channel (A funds 10,000,000 sat, 4,000,000 pushed to B) with HTLCs of 1,000,000 sat: A offers
/// `a_offers` (expiries), B offers `b_offers`; all committed.
fn channel_with_htlcs(a_offers: &[u32], b_offers: &[u32]) -> (Pair, Vec<u64>, Vec<u64>) {
    let mut p = Pair::open(ChannelType::AnchorsZeroFeeHtlc, 10_000_000, 4_000_000_000);
    let amount = MilliSats::from_msat(HTLC * 1_000);
    let mut a_ids = Vec::new();
    for (k, e) in a_offers.iter().enumerate() {
        let (id, fx) = p.a.ch.add_htlc(amount, preimage(0x10 + k as u8).hash(), *e, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        a_ids.push(id);
    }
    let mut b_ids = Vec::new();
    for (k, e) in b_offers.iter().enumerate() {
        let (id, fx) = p.b.ch.add_htlc(amount, preimage(0x20 + k as u8).hash(), *e, onion()).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        b_ids.push(id);
    }
    p.settle();
    (p, a_ids, b_ids)
}

/// A fulfils B's HTLCs; B never hears of it.
fn a_fulfils_unheard(p: &mut Pair, b_ids: &[u64]) {
    for (k, id) in b_ids.iter().enumerate() {
        let fx = p.a.ch.fulfill_htlc(*id, preimage(0x20 + k as u8)).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
    }
    p.to_b.clear();
}

/// A's outputs on a commitment of A: everything but B's `to_remote` and B's anchor.
fn a_owed_on_own_commitment(p: &Pair, commitment: &Transaction) -> u64 {
    let b = p.b.signer.pubkeys();
    let to_remote = script::to_remote_anchored(b.payment_basepoint.public_key()).to_p2wsh();
    let b_anchor = script::anchor(&b.funding).to_p2wsh();
    commitment
        .output
        .iter()
        .filter(|o| o.script_pubkey != to_remote && o.script_pubkey != b_anchor)
        .map(|o| o.value.to_sat())
        .sum()
}

/// A goes on chain by itself (its HTLC deadlines) with two HTLCs it offered and two it was
/// offered and fulfilled; B is silent. The market spikes as A closes.
fn own_commitment_world(evict: bool) -> World {
    let (mut p, _, b_ids) = channel_with_htlcs(&[1_040, 1_040], &[1_060, 1_060]);
    a_fulfils_unheard(&mut p, &b_ids);
    let mut w = World::new(p, 1_030, [true, false], [true, false], 1_042, 1_120);
    if evict {
        // Every HTLC-timeout aggregate is dropped from the mempools for a while.
        w.evict_until = Some((1_055, Box::new(|t: &Transaction| t.lock_time.to_consensus_u32() == 1_040)));
    }
    w
}

#[test]
fn our_anchor_commitment_and_its_htlc_transactions_confirm_under_a_100x_spike() {
    let mut w = own_commitment_world(false);
    let funding = funding_outpoint(&w.p);
    w.run_until(1_400, |w| w.settled(0));
    let commitment = w
        .mined
        .iter()
        .find(|(t, _)| t.input.iter().any(|i| i.previous_output == funding))
        .map(|(t, h)| (t.clone(), *h))
        .expect("A's commitment confirmed");
    assert!(commitment.1 > 1_043, "it needed a bump: mined at {}", commitment.1);
    assert!(w.parties[0].ours.contains(&commitment.0.compute_txid()), "A's own commitment");
    // The HTLC transactions were aggregated: one transaction with both HTLC-timeouts (same
    // nLockTime) and a wallet coin, one with both HTLC-successes.
    let ctxid = commitment.0.compute_txid();
    let aggregates: Vec<_> = w
        .mined
        .iter()
        .filter(|(t, _)| t.input.iter().filter(|i| i.previous_output.txid == ctxid).count() == 2)
        .collect();
    assert_eq!(aggregates.len(), 2, "one aggregate per nLockTime");
    for (t, h) in &aggregates {
        assert!(t.input.len() >= 3, "two HTLC inputs and at least one fee input");
        assert_eq!(market(*h, 1_042, 1_120), FeeratePerKw(100_000), "mined in the 100× spike");
    }
    w.assert_deadlines_met(0);
    // To the satoshi: A holds its wallet and everything it was owed on its commitment, less the
    // fees of what it broadcast besides the commitment (whose fee BOLT 3 takes from its balance).
    let owed = a_owed_on_own_commitment(&w.p, &commitment.0);
    let (held, fees) = w.holdings(0, funding);
    assert!(fees > 0);
    assert_eq!(held, w.parties[0].wallet_start.to_sat() + owed - fees, "owed {owed}, fees {fees}");
    assert!(w.parties[0].attempts >= 4, "re-bumped as the market rose");
}

#[test]
fn an_evicted_htlc_timeout_is_broadcast_again_until_it_confirms() {
    let mut w = own_commitment_world(true);
    let funding = funding_outpoint(&w.p);
    // Until the eviction ends, each block's bumper output carries the timeouts again.
    let mut seen = 0;
    while w.chain.height < 1_055 {
        w.block();
        let pending = w.parties[0].bumper.as_ref().unwrap().pending().count();
        let commitment_in = w.mined.iter().any(|(t, _)| t.input.iter().any(|i| i.previous_output == funding));
        if commitment_in && w.chain.height >= 1_041 {
            let b = w.parties[0].bumper.as_ref().unwrap();
            let timeouts: Vec<_> =
                b.pending().flat_map(|id| b.current(&id)).filter(|t| t.lock_time.to_consensus_u32() == 1_040).collect();
            assert!(pending > 0);
            if !timeouts.is_empty() {
                seen += 1;
            }
        }
    }
    assert!(seen >= 5, "re-broadcast every block while evicted ({seen})");
    assert!(
        !w.mined.iter().any(|(t, _)| t.lock_time.to_consensus_u32() == 1_040),
        "nothing of it confirmed while evicted"
    );
    w.run_until(1_400, |w| w.settled(0));
    let (t, h) = w.mined.iter().find(|(t, _)| t.lock_time.to_consensus_u32() == 1_040).expect("it confirmed");
    assert!(*h <= 1_040 + 18, "before its deadline ({h})");
    assert!(t.input.len() >= 3, "both timeouts and a fee input");
    w.assert_deadlines_met(0);
}

/// B broadcasts a revoked commitment with three HTLCs and goes silent; A punishes under the
/// spike: one penalty for B's `to_local` and the HTLCs B cannot race, one for the HTLC B could
/// time out before the penalty's deadline, and A's `to_remote` sweep.
#[test]
fn a_penalty_on_a_revoked_commitment_with_htlcs_confirms_under_a_100x_spike() {
    let (mut p, _, _) = channel_with_htlcs(&[1_100], &[1_040, 1_200]);
    let revoked = p.b.ch.holder_commitment_tx(&p.b.signer).unwrap();
    // One more update revokes it.
    let (_, fx) = p.a.ch.add_htlc(MilliSats::from_msat(5_000_000), preimage(0x40).hash(), 1_100, onion()).unwrap();
    p.a.absorb_pub(fx, &mut p.to_b);
    p.settle();
    assert_ne!(p.b.ch.holder_commitment_tx(&p.b.signer).unwrap(), revoked);
    let funding = funding_outpoint(&p);
    let mut w = World::new(p, 1_030, [true, false], [true, false], 1_029, 1_150);
    // The cheater gets its commitment mined (by whatever means).
    let h = w.chain.height + 1;
    World::mine_into(&mut w.chain, &revoked, h);
    w.mined.push((revoked.clone(), h));
    let fx = w.channel(0, ChainEvent::Confirmed { tx: &revoked, height: BlockHeight(h) });
    let requests = fx.bumps.clone();
    w.absorb(0, fx);
    let penalties: Vec<_> =
        requests.iter().filter(|r| r.protects == paychan::core::feebump::Protects::Penalty).collect();
    assert_eq!(penalties.len(), 2, "the main penalty and the split-off HTLC");
    let main = penalties.iter().find(|r| r.tx.input.len() == 3).expect("to_local and two HTLCs together");
    assert_eq!(main.deadline, BlockHeight(h + 144 - 1), "before the cheater's to_local unlocks");
    let split = penalties.iter().find(|r| r.tx.input.len() == 1).expect("split");
    assert_eq!(split.deadline, BlockHeight(1_040), "before the cheater's HTLC-timeout is valid");
    for r in &requests {
        assert!(matches!(r.method, BumpMethod::Replace { .. }));
    }
    w.chain.height = h;
    w.run_until(1_300, |w| w.settled(0));
    w.assert_deadlines_met(0);
    // To the satoshi: everything but the anchors, less A's fees.
    let owed: u64 = revoked.output.iter().filter(|o| o.value.to_sat() != 330).map(|o| o.value.to_sat()).sum();
    let (held, fees) = w.holdings(0, funding);
    assert_eq!(held, w.parties[0].wallet_start.to_sat() + owed - fees, "owed {owed}, fees {fees}");
    let a_txs: Vec<_> = w.mined.iter().filter(|(t, _)| w.parties[0].ours.contains(&t.compute_txid())).collect();
    assert_eq!(a_txs.len(), 3, "two penalties and the to_remote sweep");
    for (_, mh) in a_txs {
        assert_eq!(market(*mh, 1_029, 1_150), FeeratePerKw(100_000), "mined in the 100× spike");
    }
}

/// B closes with its commitment carrying an HTLC A fulfilled (B never heard of it); A must claim
/// it with the preimage before its expiry, when B's HTLC-timeout becomes valid. Returns what A
/// holds less what it was owed less its fees (zero when A is whole).
fn preimage_claim_race(a_bumps: bool) -> i64 {
    let (mut p, _, b_ids) = channel_with_htlcs(&[], &[1_060]);
    a_fulfils_unheard(&mut p, &b_ids);
    let funding = funding_outpoint(&p);
    let commitment = {
        let fx = p.b.ch.force_close(&p.b.signer).unwrap();
        let tx = fx.broadcast[0].clone();
        // B's storage takes the write (its later writes are deltas on it).
        p.b.absorb_pub(fx, &mut p.to_a);
        tx
    };
    let mut w = World::new(p, 1_030, [a_bumps, true], [true, true], 1_029, 1_200);
    let h = w.chain.height + 1;
    World::mine_into(&mut w.chain, &commitment, h);
    w.mined.push((commitment.clone(), h));
    for i in 0..2 {
        let fx = w.channel(i, ChainEvent::Confirmed { tx: &commitment, height: BlockHeight(h) });
        w.absorb(i, fx);
    }
    w.parties[1].ours.insert(commitment.compute_txid());
    let htlc_out = commitment.output.iter().position(|o| o.value.to_sat() == HTLC).expect("the HTLC output");
    let htlc_op = OutPoint { txid: commitment.compute_txid(), vout: htlc_out as u32 };
    w.run_until(1_200, |w| !w.chain.is_unspent(&htlc_op) && w.chain.height > 1_070);
    let a = w.p.a.signer.pubkeys();
    let to_remote = script::to_remote_anchored(a.payment_basepoint.public_key()).to_p2wsh();
    let owed: u64 = commitment
        .output
        .iter()
        .filter(|o| o.script_pubkey == to_remote || o.value.to_sat() == HTLC)
        .map(|o| o.value.to_sat())
        .sum();
    // Sweep what is left for A (its to_remote) and count.
    w.run_until(1_300, |w| w.p.a.ch.is_fully_resolved() || w.chain.height >= 1_299);
    let (held, fees) = w.holdings(0, funding);
    if a_bumps {
        w.assert_deadlines_met(0);
    }
    held as i64 - (w.parties[0].wallet_start.to_sat() + owed - fees) as i64
}

#[test]
fn a_preimage_claim_on_the_peers_commitment_wins_the_race_under_a_100x_spike() {
    assert_eq!(preimage_claim_race(true), 0, "A is whole, to the satoshi");
}

/// The same race with fixed-fee transactions only: A's claim never pays the spiked market, B's
/// HTLC-timeout (bumped) takes the HTLC at its expiry, and A loses it.
#[test]
fn without_the_bumper_a_100x_spike_loses_the_htlc() {
    let lost = -preimage_claim_race(false);
    assert!(lost >= HTLC as i64 - 50_000, "A lost the HTLC: {lost}");
}

/// BOLT 5's split, the attack it stops: the cheater's HTLC-timeout of a revoked commitment
/// becomes valid before the penalty's deadline and confirms first (here the test keeps A's claim
/// on that output out of the blocks until then). Only the split-off claim is lost to it; the main
/// penalty, already bumped, confirms unchanged, and the HTLC-timeout's output is punished in turn:
/// A still gets every non-anchor output of the revoked commitment, less its fees, to the satoshi.
#[test]
fn a_cheaters_htlc_timeout_racing_the_penalty_invalidates_only_its_split_claim() {
    let (mut p, _, _) = channel_with_htlcs(&[1_100], &[1_040, 1_200]);
    let v = p.b.ch.holder_commitment(&p.b.signer).unwrap();
    let revoked = v.finalize(&p.b.signer).unwrap();
    let position = v
        .htlc_txs()
        .iter()
        .position(|h| h.tx.lock_time.to_consensus_u32() == 1_040)
        .expect("B's HTLC-timeout of the HTLC expiring at 1,040");
    let cheat_timeout = v.finalize_htlc_tx(&p.b.signer, position, None).unwrap().unwrap();
    let raced = cheat_timeout.input[0].previous_output;
    let (_, fx) = p.a.ch.add_htlc(MilliSats::from_msat(5_000_000), preimage(0x40).hash(), 1_100, onion()).unwrap();
    p.a.absorb_pub(fx, &mut p.to_b);
    p.settle();
    let funding = funding_outpoint(&p);
    let mut w = World::new(p, 1_030, [true, false], [true, false], 1_029, 1_150);
    w.evict_until = Some((1_041, Box::new(move |t: &Transaction| t.input.iter().any(|i| i.previous_output == raced))));
    let h = w.chain.height + 1;
    World::mine_into(&mut w.chain, &revoked, h);
    w.mined.push((revoked.clone(), h));
    let fx = w.channel(0, ChainEvent::Confirmed { tx: &revoked, height: BlockHeight(h) });
    let main_id = fx.bumps.iter().find(|r| r.tx.input.len() == 3).expect("the main penalty").id();
    w.absorb(0, fx);
    while w.chain.height < 1_040 {
        w.block();
    }
    // The cheater's HTLC-timeout is valid in block 1,041 and confirms there.
    World::mine_into(&mut w.chain, &cheat_timeout, 1_041);
    w.mined.push((cheat_timeout.clone(), 1_041));
    let fx = w.channel(0, ChainEvent::Confirmed { tx: &cheat_timeout, height: BlockHeight(1_041) });
    let second = fx.bumps.clone();
    w.absorb(0, fx);
    let fx = w.parties[0]
        .bumper
        .as_mut()
        .unwrap()
        .handle_chain(&ChainEvent::Confirmed { tx: &cheat_timeout, height: BlockHeight(1_041) });
    assert!(
        fx.events.iter().all(|e| !matches!(e, BumpEvent::Resolved { id, .. } if *id == main_id)),
        "the main penalty is not touched by the race"
    );
    let main = w.parties[0]
        .resolved
        .iter()
        .find(|(id, _, _)| *id == main_id)
        .copied()
        .expect("the main penalty confirmed before the race");
    assert!(main.1 <= 1_040);
    assert_eq!(second.len(), 1, "the second-stage penalty");
    assert_eq!(second[0].deadline, BlockHeight(1_041 + 144 - 1), "before the cheater's delayed output unlocks");
    w.run_until(1_300, |w| w.settled(0));
    let owed: u64 = revoked.output.iter().filter(|o| o.value.to_sat() != 330).map(|o| o.value.to_sat()).sum();
    let (held, fees) = w.holdings(0, funding);
    assert_eq!(held, w.parties[0].wallet_start.to_sat() + owed - fees, "owed {owed}, fees {fees}");
    assert!(w.chain.confirmation(&cheat_timeout.compute_txid()).is_some());
}

/// A preimage learnt after our commitment went out (B's HTLC, whose preimage reaches A only
/// once A has closed) makes the commitment as urgent as the HTLC: the channel asks for its bump
/// again at the next tip with the HTLC's deadline and value, the bumper takes the earlier
/// deadline, and pays the next-blocks rate instead of the day-long one. Without it the
/// commitment would wait for a cheap day-long rate while the peer's timeout comes at 1,060.
#[test]
fn a_preimage_learnt_after_the_close_makes_the_commitment_as_urgent_as_the_htlc() {
    use paychan::core::feebump::schedule::fee_for_vsize;
    use paychan::lightning::fees::COMMITMENT_DEADLINE;

    let (mut p, _, b_ids) = channel_with_htlcs(&[], &[1_060]);
    let tip = 1_030;
    let fx = p.a.ch.handle_chain(ChainEvent::Tip(ChainTip::at(tip)), &p.a.signer);
    assert!(fx.broadcast.is_empty(), "no deadline yet: A does not know the preimage");
    let fx = p.a.ch.force_close(&p.a.signer).unwrap();
    let first = fx.bumps.first().cloned().expect("the anchor commitment's request");
    let commitment = fx.broadcast.iter().find(|t| t.compute_txid() == first.id()).cloned().expect("broadcast");
    assert_eq!(first.deadline, BlockHeight(tip + COMMITMENT_DEADLINE), "only A's to_local at stake: a day");
    let mut bumper = Bumper::new();
    let _ = bumper.track(first.clone());

    // The preimage arrives (from downstream) while the commitment is in the mempool.
    let fx = p.a.ch.provide_preimage(b_ids[0], preimage(0x20));
    assert!(fx.broadcast.is_empty() && fx.bumps.is_empty(), "no signer here: the request comes with the next tip");
    let fx = p.a.ch.handle_chain(ChainEvent::Tip(ChainTip::at(tip + 1)), &p.a.signer);
    let again = fx.bumps.iter().find(|r| r.id() == first.id()).cloned().expect("the commitment's request again");
    assert_eq!(again.deadline, BlockHeight(1_059), "the HTLC's expiry, less the block its HTLC-success needs");
    assert!(again.at_stake >= Amount::from_sat(HTLC), "the HTLC is at stake now");
    assert!(bumper.track(again.clone()).update.is_some(), "the tighter request is persisted");
    assert!(bumper.track(again).update.is_none(), "the same request again changes nothing");
    // The same tip once more asks for nothing new.
    let fx = p.a.ch.handle_chain(ChainEvent::Tip(ChainTip::at(tip + 1)), &p.a.signer);
    assert!(fx.bumps.is_empty());

    // The market: 100× for the next blocks, calm within a day.
    let est = FeeEstimates::new(&[(1, FeeratePerKw(100_000)), (72, FeeratePerKw(1_000))]);
    let mut chain = Chain::at(tip + 1);
    let mut wallet = FeeCoins::new(Wallet::new(0x51));
    wallet.add_coin(&mut chain, Amount::from_sat(COIN));
    let fx = bumper.bump(BlockHeight(tip + 1), &est, &mut wallet, &p.a.signer);
    let (fee, txid) = fx
        .events
        .iter()
        .find_map(|e| match e {
            BumpEvent::Bumped { id, txid, fee } if *id == first.id() => Some((*fee, *txid)),
            _ => None,
        })
        .expect("the commitment bumped");
    let child = fx.broadcast.iter().find(|t| t.compute_txid() == txid).expect("the child");
    let BumpMethod::Child { parent_fee, .. } = first.method else { panic!("a CPFP request") };
    let package = commitment.weight().to_wu() + child.weight().to_wu();
    // 28 blocks left: the schedule aims at 14, for which only the next-block estimate applies.
    assert!(fee + parent_fee >= fee_for_vsize(FeeratePerKw(100_000), package), "package pays the 100× rate");
}
