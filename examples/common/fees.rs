//! Unilateral closes paid for at a flat feerate: the channels' fee-bump requests go to the
//! crate's [`Bumper`], one per party, with a fee wallet ([`FeeCoins`]) each, on a simulated chain
//! that applies Bitcoin Core's relay policy and mines only packages paying the feerate. What each
//! party paid is read from the confirmed transactions (inputs − outputs).

use std::collections::{HashMap, HashSet};

use bitcoin::hashes::Hash;
use bitcoin::transaction::Version;
use bitcoin::{Amount, FeeRate, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use paychan::core::commitment::FeeratePerKw;
use paychan::core::feebump::{BumpEvent, BumpRequest, Bumper, FeeEstimates};
use paychan::core::sign::InMemorySigner;
use paychan::core::BlockHeight;
use paychan::driving::{ChainEvent, ChainTip, Effects};
use paychan::testing::market::FeeMarket;
use paychan::testing::policy::Policy;
use paychan::testing::wallet::{FeeCoins, Wallet};

use super::chain::Chain;
use super::Error;

/// The fee wallets' seeds: party 0 (A: the Spilman payer, the duplex initiator, the Lightning
/// funder) and party 1 (B).
pub const WALLET_SEEDS: [u8; 2] = [0xa1, 0xb1];
/// Coins each fee wallet starts with, and their value.
const COINS: u32 = 4;
const COIN_VALUE: Amount = Amount::from_sat(1_000_000);

/// A party's payout script: its fee wallet's, so that a bump can spend a payout it receives (a
/// duplex leaf payment is bumped through the payee's output).
pub fn payout(seed: u8) -> ScriptBuf {
    Wallet::new(seed).script()
}

/// A chain at `height` with Bitcoin Core 29's relay policy and a flat fee market: each block
/// mines only packages paying at least `sat_per_vb`. Submit to it with [`submit_at`], which
/// keeps out of its mempool what pays less (a mempool full at that feerate).
pub fn market_chain(height: u32, sat_per_vb: u64) -> Chain {
    Chain::at(height)
        .with_policy(Policy::CORE_29)
        .with_market(FeeMarket::flat(FeeRate::from_sat_per_kwu(sat_per_vb * 250)))
}

/// The feerate of `sat_per_vb`, as the crate counts it (per 1,000 weight units).
pub fn feerate(sat_per_vb: u64) -> FeeratePerKw {
    FeeratePerKw(u32::try_from(sat_per_vb * 250).unwrap_or(u32::MAX))
}

/// What one party's channel asked for after an event.
pub struct Step {
    pub party: usize,
    pub broadcast: Vec<Transaction>,
    pub bumps: Vec<BumpRequest>,
}

/// A channel's effects as a [`Step`] of `party`.
pub fn step<M, E>(party: usize, fx: Effects<M, E>) -> Step {
    Step { party, broadcast: fx.broadcast, bumps: fx.bumps }
}

/// The value of the output `op`: confirmed, in the mempool or created by one of `group`.
fn prevout(chain: &Chain, group: &[Transaction], op: &OutPoint) -> Option<Amount> {
    let from = |t: &Transaction| t.output.get(op.vout as usize).map(|o| o.value);
    if let Some(t) = chain.tx(&op.txid) {
        return from(t);
    }
    group.iter().chain(chain.mempool()).find(|t| t.compute_txid() == op.txid).and_then(from)
}

/// Whether `group` (one transaction, or a parent and its child) pays `sat_per_vb` on its total
/// virtual size, as Bitcoin Core checks a transaction or a one-parent-one-child package against
/// the mempool's minimum feerate.
pub fn pays(chain: &Chain, group: &[Transaction], sat_per_vb: u64) -> bool {
    let mut fee = 0i128;
    let mut vsize = 0u64;
    for tx in group {
        for i in &tx.input {
            match prevout(chain, group, &i.previous_output) {
                Some(v) => fee += i128::from(v.to_sat()),
                None => return false,
            }
        }
        fee -= tx.output.iter().map(|o| i128::from(o.value.to_sat())).sum::<i128>();
        vsize += tx.vsize() as u64;
    }
    fee >= i128::from(sat_per_vb) * i128::from(vsize)
}

/// Submits broadcasts to a [`market_chain`] whose mempool is full at `sat_per_vb`: a
/// transaction followed by its child goes as a package (or the child alone if the parent is
/// already known), anything paying less than the feerate is left out (Bitcoin Core's dynamic
/// mempool minimum: otherwise a package that can never be mined would block, by the replacement
/// rules, a conflicting one that pays the feerate). Refusals are ignored (already confirmed,
/// replaced by a better attempt, not valid yet).
pub fn submit_at(chain: &mut Chain, txs: &[Transaction], sat_per_vb: u64) {
    let mut i = 0;
    while let Some(tx) = txs.get(i) {
        let txid = tx.compute_txid();
        let known = chain.confirmation(&txid).is_some() || chain.mempool().iter().any(|m| m.compute_txid() == txid);
        let group = match txs.get(i + 1).filter(|c| c.input.iter().any(|inp| inp.previous_output.txid == txid)) {
            Some(child) => {
                i += 2;
                if known {
                    vec![child.clone()]
                } else {
                    vec![tx.clone(), child.clone()]
                }
            }
            None => {
                i += 1;
                vec![tx.clone()]
            }
        };
        if !pays(chain, &group, sat_per_vb) {
            continue;
        }
        let _ = match group.as_slice() {
            [one] => chain.submit(one),
            pair => chain.submit_package(pair),
        };
    }
}

/// A confirmed transaction of a bumped close.
#[derive(Clone, Debug)]
pub struct Confirmed {
    pub tx: Transaction,
    pub height: u32,
    /// The party that broadcast it (the first one, if both did).
    pub party: usize,
    /// Made by the party's bumper (a child, a replacement or an aggregate), not by its channel.
    pub by_bumper: bool,
    /// A channel transaction with no bump request: its pre-signed fee is all it could pay.
    pub unbumpable: bool,
    /// Inputs − outputs.
    pub fee: Amount,
}

/// A unilateral close at a flat feerate.
#[derive(Clone, Debug)]
pub struct FeeClose {
    /// The target feerate, in sat/vB.
    pub sat_per_vb: u64,
    /// Height of the chain when the close started (before the first block it mined).
    pub start: u32,
    /// The transactions that created the parties' fee-wallet coins (out of thin air).
    pub credits: Vec<Transaction>,
    /// Every transaction confirmed, in order.
    pub confirmed: Vec<Confirmed>,
    /// What each party paid in fees.
    pub fees: [Amount; 2],
    /// Requests whose attempt was capped at the value they protect (`BumpEvent::Capped`):
    /// `(party, request)`.
    pub capped: Vec<(usize, Txid)>,
    /// Requests resolved by a conflicting transaction of the other party (what they protected
    /// went to it):
    /// `(party, request, the transaction that won)`.
    pub lost: Vec<(usize, Txid, Txid)>,
}

impl FeeClose {
    /// The confirmed transactions no request covered (their pre-signed fee counted).
    pub fn unbumpable(&self) -> impl Iterator<Item = &Confirmed> {
        self.confirmed.iter().filter(|c| c.unbumpable)
    }
}

/// The coins of party `i`'s fee wallet, out of thin air.
fn coins_tx(script: &ScriptBuf, i: usize) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid: Txid::from_byte_array([0x3c; 32]), vout: i as u32 },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: (0..COINS).map(|_| TxOut { value: COIN_VALUE, script_pubkey: script.clone() }).collect(),
    }
}

/// Inputs − outputs of `tx`, its inputs looked up among `chain`'s confirmed transactions.
pub fn fee_on(chain: &Chain, tx: &Transaction) -> Result<Amount, Error> {
    let mut inputs = Amount::ZERO;
    for i in &tx.input {
        let prev = chain.tx(&i.previous_output.txid).ok_or("an input from nowhere")?;
        inputs += prev.output.get(i.previous_output.vout as usize).ok_or("no such output")?.value;
    }
    let outputs: Amount = tx.output.iter().map(|o| o.value).sum();
    Ok(inputs.checked_sub(outputs).ok_or("outputs exceed inputs")?)
}

struct Run {
    bumpers: [Bumper; 2],
    owner: HashMap<Txid, (usize, bool)>,
    requested: HashSet<Txid>,
    pending: Vec<Transaction>,
    capped: Vec<(usize, Txid)>,
    resolved: Vec<(usize, Txid, Txid)>,
}

impl Run {
    fn absorb(&mut self, chain: &Chain, steps: Vec<Step>) {
        for s in steps {
            for tx in s.broadcast {
                let txid = tx.compute_txid();
                self.owner.entry(txid).or_insert((s.party, false));
                if !self.pending.contains(&tx) && chain.confirmation(&txid).is_none() {
                    self.pending.push(tx);
                }
            }
            for r in s.bumps {
                self.requested.insert(r.id());
                let _ = self.bumpers[s.party].track(r);
            }
        }
    }
}

/// Runs a unilateral close on `chain` (a [`market_chain`] holding the funding output) until
/// height `until` at least and until everything broadcast has confirmed and no bump request is
/// pending: `first` is what the closing party's channel asked for, `feed` hands each chain event
/// to the channels. Each block, each party's bumper does its work at the flat feerate with its
/// fee wallet and its channel's signer, and its broadcasts go out (a child with its parent, as a
/// package).
pub fn settle_bumped(
    mut chain: Chain,
    sat_per_vb: u64,
    signers: [&InMemorySigner; 2],
    first: Vec<Step>,
    until: u32,
    max_blocks: u32,
    mut feed: impl FnMut(ChainEvent<'_>) -> Vec<Step>,
) -> Result<FeeClose, Error> {
    let estimates = FeeEstimates::flat(feerate(sat_per_vb));
    let mut wallets = WALLET_SEEDS.map(|s| FeeCoins::new(Wallet::new(s)));
    let mut credits = Vec::new();
    for (i, w) in wallets.iter_mut().enumerate() {
        let tx = coins_tx(&w.script(), i);
        chain.credit(&tx);
        credits.push(tx);
    }
    let start = chain.height;
    let mut run = Run {
        bumpers: [Bumper::new(), Bumper::new()],
        owner: HashMap::new(),
        requested: HashSet::new(),
        pending: Vec::new(),
        capped: Vec::new(),
        resolved: Vec::new(),
    };
    run.absorb(&chain, first);
    let mut confirmed = Vec::new();
    for _ in 0..max_blocks {
        for tx in &run.pending {
            submit_at(&mut chain, std::slice::from_ref(tx), sat_per_vb);
        }
        let tip = BlockHeight(chain.height);
        for (p, (wallet, signer)) in wallets.iter_mut().zip(signers).enumerate() {
            wallet.sync(&chain);
            let fx = run.bumpers[p].bump(tip, &estimates, wallet, signer);
            for tx in &fx.broadcast {
                let txid = tx.compute_txid();
                if run.requested.contains(&txid) {
                    run.owner.entry(txid).or_insert((p, false));
                } else {
                    run.owner.insert(txid, (p, true));
                }
            }
            for e in &fx.events {
                if let BumpEvent::Capped { id } = e {
                    if !run.capped.contains(&(p, *id)) {
                        run.capped.push((p, *id));
                    }
                }
            }
            submit_at(&mut chain, &fx.broadcast, sat_per_vb);
        }
        let block = chain.mine_block();
        let height = BlockHeight(chain.height);
        for tx in &block {
            let event = ChainEvent::Confirmed { tx, height };
            for (p, b) in run.bumpers.iter_mut().enumerate() {
                for e in b.handle_chain(&event).events {
                    if let BumpEvent::Resolved { id, by } = e {
                        run.resolved.push((p, id, by));
                    }
                }
            }
            let steps = feed(event);
            run.absorb(&chain, steps);
        }
        let steps = feed(ChainEvent::Tip(ChainTip { height }));
        run.absorb(&chain, steps);
        let mined: Vec<Txid> = block.iter().map(Transaction::compute_txid).collect();
        run.pending.retain(|t| !mined.contains(&t.compute_txid()));
        run.pending.retain(|t| {
            t.input
                .iter()
                .all(|i| chain.is_unspent(&i.previous_output) || chain.confirmation(&i.previous_output.txid).is_none())
        });
        for tx in block {
            let txid = tx.compute_txid();
            let &(party, by_bumper) = run.owner.get(&txid).ok_or("a transaction nobody broadcast confirmed")?;
            let fee = fee_on(&chain, &tx)?;
            let unbumpable = !by_bumper && !run.requested.contains(&txid);
            confirmed.push(Confirmed { tx, height: height.0, party, by_bumper, unbumpable, fee });
        }
        let quiet = run.pending.is_empty() && run.bumpers.iter().all(|b| b.pending().next().is_none());
        if chain.height >= until && quiet {
            let mut fees = [Amount::ZERO; 2];
            for c in &confirmed {
                fees[c.party] += c.fee;
            }
            let lost = run
                .resolved
                .iter()
                .filter(|(p, id, by)| by != id && run.owner.get(by).is_some_and(|(q, _)| q != p))
                .copied()
                .collect();
            return Ok(FeeClose { sat_per_vb, start, credits, confirmed, fees, capped: run.capped, lost });
        }
    }
    let waiting: Vec<Txid> = run.bumpers.iter().flat_map(|b| b.pending().collect::<Vec<_>>()).collect();
    Err(format!(
        "at {sat_per_vb} sat/vB: {} transaction(s) and {} bump request(s) still pending after {max_blocks} blocks",
        run.pending.len(),
        waiting.len()
    )
    .into())
}
