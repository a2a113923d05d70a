//! Duplex unilateral closes under a fee market that spikes 100× (issue 15, items 4 and 5): every
//! tree transaction (kickoff, nodes, leaf) is a zero-fee version-3 transaction with one
//! pay-to-anchor output, and the channel hands each to the party's [`Bumper`] as a
//! [`BumpMethod::Child`] request through that anchor; the leaf payment goes as a CPFP request
//! through the payee's output and the leaf refund as a replaceable one.
//!
//! The chain runs Bitcoin Core 29's relay policy ([`Policy::CORE_29`]: minimum relay feerate,
//! TRUC limits, ephemeral dust, 1-parent-1-child packages, replacement rules) on top of the
//! consensus interpreter, and a fee market whose blocks mine only packages paying their minimum.
//! Every transaction reaches a block only through [`Chain::submit`] or [`Chain::submit_package`],
//! so every one passed both. The bumpers get the market's estimates each block.
//!
//! With the bumper, every tree transaction confirms by its deadline and the honest party ends
//! with exactly what it is owed less the fees of what it broadcast; without it, the zero-fee tree
//! never confirms (a lone close) or the stale branch wins the race (a cheater with a bumper).

mod common;

use std::collections::HashSet;

use bitcoin::{Amount, FeeRate, Transaction, Txid};
use common::chain::Chain;
use common::duplex::{signer, terms, Pair, Party, START};
use common::wallet::{FeeCoins, Wallet};
use paychan::core::commitment::FeeratePerKw;
use paychan::core::feebump::{BumpEvent, BumpMethod, BumpRequest, Bumper, FeeEstimates, Protects};
use paychan::core::script::{is_p2a, TRUC_VERSION};
use paychan::core::BlockHeight;
use paychan::driving::{ChainEvent, RestoreCheck};
use paychan::duplex::{Channel, Event, Phase, Role};
use paychan::testing::market::{FeeCurve, FeeMarket};
use paychan::testing::policy::Policy;

const A: Role = Role::Initiator;
const B: Role = Role::Acceptor;
/// 1 sat/vB, in sat per 1,000 weight units.
const BASE: u64 = 250;
/// Each wallet's one coin.
const COIN: u64 = 400_000;

/// What the market's estimator says now, for the targets an embedder would ask.
fn estimates(chain: &Chain) -> FeeEstimates {
    let points: Vec<(u32, FeeratePerKw)> = [1u32, 2, 3, 4, 6, 12, 24, 144]
        .iter()
        .map(|&t| {
            let rate = chain.fee_estimate(t).expect("a market").to_sat_per_kwu();
            (t, FeeratePerKw(u32::try_from(rate).expect("fits")))
        })
        .collect();
    FeeEstimates::new(&points)
}

/// A chain with Core 29's policy and a market at 1 sat/vB that rises 100-fold over 3 blocks from
/// `spike` and stays there 300 blocks.
fn spiking_chain(spike: u32) -> Chain {
    let curve = FeeCurve::spike(FeeRate::from_sat_per_kwu(BASE), 100, spike, 3, 300);
    Chain::at(START).with_policy(Policy::CORE_29).with_market(FeeMarket::new(curve))
}

fn fee_of(chain: &Chain, tx: &Transaction) -> u64 {
    let ins: u64 = tx
        .input
        .iter()
        .map(|i| chain.tx(&i.previous_output.txid).expect("input known").output[i.previous_output.vout as usize].value)
        .map(Amount::to_sat)
        .sum();
    ins - tx.output.iter().map(|o| o.value.to_sat()).sum::<u64>()
}

/// A party's embedder: its fee wallet (which also owns its payout script) and, if it bumps, its
/// bumper.
struct Side {
    wallet: FeeCoins,
    bumper: Option<Bumper>,
    /// Every request the channel handed over.
    requests: Vec<BumpRequest>,
    /// Every transaction the embedder gave the network (the channel's and the bumper's).
    sent: HashSet<Txid>,
    missed: Vec<Txid>,
}

struct H {
    p: Pair,
    sides: [Side; 2],
}

fn side(seed: u8, bumps: bool) -> Side {
    Side {
        wallet: FeeCoins::new(Wallet::new(seed)),
        bumper: bumps.then(Bumper::new),
        requests: Vec::new(),
        sent: HashSet::new(),
        missed: Vec::new(),
    }
}

/// Submits a bumper's broadcasts: a parent followed by its child as a package, the rest alone.
/// Children of version-3 parents are checked against the TRUC limits.
fn submit_all(chain: &mut Chain, txs: &[Transaction], sent: &mut HashSet<Txid>) {
    let mut i = 0;
    while i < txs.len() {
        let tx = &txs[i];
        sent.insert(tx.compute_txid());
        let next = txs.get(i + 1).filter(|c| c.input.iter().any(|inp| inp.previous_output.txid == tx.compute_txid()));
        match next {
            Some(child) => {
                sent.insert(child.compute_txid());
                if tx.version == TRUC_VERSION {
                    assert_eq!(child.version, TRUC_VERSION, "a TRUC parent's child is TRUC");
                    assert!(child.vsize() <= 1_000, "a TRUC child is at most 1,000 vB");
                }
                // Refused only when it is already mined or replaced by a better child.
                let _ = chain.submit_package(&[tx.clone(), child.clone()]);
                i += 2;
            }
            None => {
                let _ = chain.submit(tx);
                i += 1;
            }
        }
    }
}

impl H {
    fn new(p: Pair, bumps: [bool; 2]) -> H {
        let mut h = H { p, sides: [side(0x31, bumps[0]), side(0x32, bumps[1])] };
        for s in &mut h.sides {
            s.wallet.add_coin(&mut h.p.chain, Amount::from_sat(COIN));
        }
        h
    }

    /// One block: each online party's broadcasts and requests go to the network and its bumper,
    /// the bumpers bump with the market's estimates, a block is mined and everyone sees it.
    fn block(&mut self) -> Vec<Transaction> {
        let tip = BlockHeight(self.p.chain.height);
        let est = estimates(&self.p.chain);
        for role in [A, B] {
            let i = role.index();
            let pending = std::mem::take(&mut self.p.parties[i].pending);
            let bumps = std::mem::take(&mut self.p.parties[i].bumps);
            if self.p.parties[i].offline {
                continue;
            }
            let side = &mut self.sides[i];
            for r in bumps {
                if let Some(b) = side.bumper.as_mut() {
                    let _ = b.track(r.clone());
                }
                side.requests.push(r);
            }
            let tracked: Vec<Txid> = side.bumper.as_ref().map(|b| b.pending().collect()).unwrap_or_default();
            for tx in pending {
                if tracked.contains(&tx.compute_txid()) {
                    continue;
                }
                side.sent.insert(tx.compute_txid());
                // Alone: a zero-fee tree transaction is refused (below the minimum relay feerate).
                let _ = self.p.chain.submit(&tx);
            }
            if let Some(b) = side.bumper.as_mut() {
                let fx = b.bump(tip, &est, &mut side.wallet, &self.p.parties[i].signer);
                for e in &fx.events {
                    if let BumpEvent::DeadlineMissed { id } = e {
                        side.missed.push(*id);
                    }
                }
                submit_all(&mut self.p.chain, &fx.broadcast, &mut side.sent);
            }
        }
        let mined = self.p.mine();
        let height = BlockHeight(self.p.chain.height);
        for (i, s) in self.sides.iter_mut().enumerate() {
            if self.p.parties[i].offline {
                continue;
            }
            if let Some(b) = s.bumper.as_mut() {
                for tx in &mined {
                    let _ = b.handle_chain(&ChainEvent::Confirmed { tx, height });
                }
            }
            s.wallet.sync(&self.p.chain);
        }
        mined
    }

    /// The fees of the confirmed transactions `role`'s embedder broadcast.
    fn fees_paid(&self, role: Role) -> u64 {
        let chain = &self.p.chain;
        self.sides[role.index()].sent.iter().filter_map(|t| chain.tx(t)).map(|tx| fee_of(chain, tx)).sum()
    }

    /// The change in `role`'s wallet (its payouts and its fee coins).
    fn gained(&self, role: Role) -> i64 {
        self.sides[role.index()].wallet.balance().to_sat() as i64 - COIN as i64
    }

    /// Every tree request of `role` confirmed by its deadline, through a child spending its
    /// anchor in the same block (the tree transaction pays nothing itself).
    fn assert_tree_confirmed_in_time(&self, role: Role) -> usize {
        let chain = &self.p.chain;
        let side = &self.sides[role.index()];
        let mut n = 0;
        for r in side.requests.iter().filter(|r| r.protects == Protects::DuplexBranch) {
            let txid = r.id();
            let Some(h) = chain.confirmation(&txid) else { continue };
            n += 1;
            assert!(h <= r.deadline.0, "tree transaction {txid} confirmed at {h}, after its deadline {}", r.deadline.0);
            assert_eq!(fee_of(chain, &r.tx), 0, "tree transactions pay no fee");
            let BumpMethod::Child { anchor, .. } = &r.method else { panic!("tree transactions are bumped by a child") };
            assert!(is_p2a(&r.tx.output[anchor.outpoint.vout as usize].script_pubkey), "through the P2A output");
            let child = chain
                .confirmed_txs()
                .into_iter()
                .find(|t| t.input.iter().any(|i| i.previous_output == anchor.outpoint))
                .expect("a child spent the anchor");
            assert_eq!(chain.confirmation(&child.compute_txid()), Some(h), "mined with its parent");
            assert!(
                chain.market().expect("market").min_feerate(h).to_sat_per_kwu() >= 100 * BASE,
                "confirmed at the spike's peak"
            );
        }
        assert!(side.missed.is_empty(), "no deadline missed: {:?}", side.missed);
        n
    }
}

/// A channel with payments both ways and a reset, both payouts paid to the parties' fee wallets.
fn busy(spike: u32) -> Pair {
    let payouts = [Wallet::new(0x31).script(), Wallet::new(0x32).script()];
    let mut p = Pair::open_on(terms(vec![2, 2]), spiking_chain(spike), payouts);
    p.pay(A, 30_000);
    p.pay(B, 5_000);
    p.reset(A);
    p.pay(A, 7_000);
    // Worth more than a child at 100 sat/vB: a smaller payment is not worth claiming in the spike
    // (the bumper caps its child at what it protects).
    p.pay(B, 60_000);
    p.assert_views_agree();
    p
}

/// What `ch`'s holder gets when the counterparty stays silent: its own leaf channel back by
/// refund and its best payment in the other's.
fn owed_alone(ch: &Channel) -> u64 {
    let me = ch.role();
    ch.leaf_value(me).to_sat() + ch.leaf_state(!me).to_payee.to_sat()
}

/// A closes alone (B is gone) in a 100× spike. Returns the harness after 60 blocks.
fn lone_close(bumps: bool) -> H {
    let mut h = H::new(busy(START - 5), [bumps, false]);
    h.p.parties[B.index()].offline = true;
    let fx = h.p.parties[0].ch.force_close(&h.p.parties[0].signer);
    h.p.absorb(A, fx);
    for _ in 0..60 {
        h.block();
        if h.p.a().phase() == Phase::Closed && h.p.chain.mempool().is_empty() {
            break;
        }
    }
    h
}

#[test]
fn a_lone_unilateral_close_under_a_100x_spike_confirms_every_tree_transaction_through_p2a_children() {
    let h = lone_close(true);
    assert_eq!(h.p.a().phase(), Phase::Closed, "the close completes");
    let depth = h.p.a().params().depth();
    assert_eq!(h.assert_tree_confirmed_in_time(A), depth + 1, "kickoff, nodes and leaf, each by its deadline");
    let owed = owed_alone(h.p.a());
    let fees = h.fees_paid(A);
    assert!(fees > 100 * 100, "the spike made the close expensive: {fees} sat");
    assert_eq!(h.gained(A), owed as i64 - fees as i64, "owed {owed} less the fees of what A broadcast, to the satoshi");
}

#[test]
fn without_a_bumper_the_zero_fee_tree_never_confirms() {
    let h = lone_close(false);
    let kickoff = h.p.a().current_branch().expect("branch")[0].compute_txid();
    assert_eq!(h.p.chain.confirmation(&kickoff), None, "a zero-fee transaction alone is refused");
    assert_ne!(h.p.a().phase(), Phase::Closed);
    assert_eq!(h.gained(A), 0, "A got nothing of the {} sat it is owed", owed_alone(h.p.a()));
}

fn restore(bytes: &[u8]) -> Channel {
    Channel::restore(bytes, RestoreCheck::default()).expect("snapshot restores")
}

/// B publishes the branch of an older state (where it had 100,000 sat more) with its own bumper
/// and stays silent afterwards; A, honest, watches with or without a bumper.
fn stale_race(honest_bumps: bool) -> (H, u64, Txid) {
    let payouts = [Wallet::new(0x31).script(), Wallet::new(0x32).script()];
    let mut p = Pair::open_on(terms(vec![2, 2]), spiking_chain(START - 5), payouts);
    p.pay(A, 30_000);
    p.reset(A);
    let old_b = p.b().snapshot();
    p.pay(B, 100_000);
    let level = p.reset(B);
    assert_eq!(level, 1, "the current branch leaves the stale one at the first node");
    let party = |ch: Channel, role: Role| Party {
        ch,
        signer: signer(role),
        events: Vec::new(),
        pending: Vec::new(),
        broadcast_log: Vec::new(),
        offline: false,
        bumps: Vec::new(),
    };
    let a_now = restore(&p.a().snapshot());
    let b_old = restore(&old_b);
    let stale_n1 = b_old.current_branch().expect("branch")[1].compute_txid();
    let owed = owed_alone(&a_now);
    let p = Pair {
        parties: [party(a_now, A), party(b_old, B)],
        chain: p.chain.clone(),
        funding: p.funding.clone(),
        queue: Default::default(),
    };
    let mut h = H::new(p, [honest_bumps, true]);
    let fx = h.p.parties[1].ch.force_close(&h.p.parties[1].signer);
    h.p.absorb(B, fx);
    for _ in 0..60 {
        h.block();
        if h.p.a().phase() == Phase::Closed && h.p.chain.mempool().is_empty() {
            break;
        }
    }
    (h, owed, stale_n1)
}

#[test]
fn a_stale_branch_published_in_a_100x_spike_loses_against_the_honest_bumper() {
    let (h, owed, stale_n1) = stale_race(true);
    assert_eq!(h.p.chain.confirmation(&stale_n1), None, "the stale node never confirms");
    assert_eq!(h.p.a().phase(), Phase::Closed);
    assert!(!h.p.parties[0].events.iter().any(|e| matches!(e, Event::StaleBranchConfirmed { .. })));
    // The kickoff was B's (its child paid for it); A's nodes and leaf each confirmed in time.
    assert_eq!(h.assert_tree_confirmed_in_time(A), h.p.a().params().depth());
    let fees = h.fees_paid(A);
    assert_eq!(h.gained(A), owed as i64 - fees as i64, "A gets all it is owed less its own fees, to the satoshi");
}

#[test]
fn without_the_honest_bumper_the_stale_branch_wins_the_spike() {
    let (h, owed, stale_n1) = stale_race(false);
    assert!(h.p.chain.confirmation(&stale_n1).is_some(), "the cheater's old node confirms");
    assert!(h.p.parties[0].events.iter().any(|e| matches!(e, Event::StaleBranchConfirmed { .. })));
    assert!(h.gained(A) + 100_000 <= owed as i64, "A lost at least what B paid since the old state");
}

/// A payment whose fixed fee is below the minimum relay feerate for its size (each HTLC output
/// adds 43 vB; a payment is version 2, so no child can pay for it: Core 28 and 29 relay a
/// non-TRUC parent only if it pays the minimum alone) could never be published: the template
/// refuses to build it (`PaymentError::BelowMinRelay`), and a payee shown one signed anyway
/// refuses it with its state byte-identical. The largest payment it builds relays under Core
/// 29's policy. (Spilman's own payments are built by the same template.)
#[test]
fn a_payment_the_network_would_not_relay_is_refused() {
    use paychan::core::PaymentPreimage;
    use paychan::duplex::{Misbehaviour, Msg};
    use paychan::spilman::payment::{PaymentError, UpdateError};
    use paychan::spilman::{Payment, PaymentHtlc};
    let mut p = Pair::open_on(
        terms(vec![2, 2]),
        Chain::at(START).with_policy(Policy::CORE_29),
        [common::duplex::payout(A), common::duplex::payout(B)],
    );
    p.pay(A, 100_000);
    let (sa, sb) = (signer(A), signer(B));
    let t = p.a().template(A).expect("template");
    let (earliest, _) = p.b().htlc_expiry_window(p.tip());
    let expiry = BlockHeight(earliest.expect("window").0 + 10);
    let mut state = p.b().leaf_state(A).clone();
    let next = p.a().next_htlc_id();
    let mut largest = None;
    let refused = loop {
        let i = state.htlcs.len() as u64;
        let hash = PaymentPreimage([i as u8 + 1; 32]).hash();
        state.htlcs.push(PaymentHtlc { id: next + i, amount: Amount::from_sat(1_000), payment_hash: hash, expiry });
        match t.build(&state) {
            Ok(built) => largest = Some((state.clone(), built)),
            Err(e) => break e,
        }
    };
    assert_eq!(refused, PaymentError::BelowMinRelay);
    let (ok_state, built) = largest.expect("a payment with an HTLC or two relays at 300 sat");
    assert!(!ok_state.htlcs.is_empty() && ok_state.htlcs.len() < state.htlcs.len());
    // The largest one, signed by both, is standard and pays at least 1 sat/vB (the leaf is not
    // on chain here, so the mempool's own feerate check cannot run).
    let sig = t.sign(&sa, &built).expect("sign");
    let tx = t.complete(&sb, &built, &sig).expect("complete");
    assert!(common::duplex::PAYMENT_FEE >= tx.vsize() as u64, "{} vB at 300 sat", tx.vsize());
    assert_eq!(paychan::testing::policy::check_standard(&tx, &Policy::CORE_29), Ok(()), "standard");
    // One HTLC more: refused by the payee, whatever the signature.
    let mut b = p.b().clone();
    let before = b.snapshot();
    let jam = Payment { number: 1_000, to_payee: state.to_payee, htlcs: state.htlcs.clone(), signature: sig };
    let err = b.handle_message(Msg::Payment(jam), &sb, p.tip()).expect_err("refused");
    assert_eq!(err.kind, Misbehaviour::Payment(UpdateError::Payment(PaymentError::BelowMinRelay)));
    assert_eq!(b.snapshot(), before, "a refused payment changes nothing");
}

/// A cooperative close in a 100× spike (issue 15): the close is a zero-fee version-3 transaction
/// with a pay-to-anchor output, so it relays only with a child. Each party's channel hands its
/// bumper a `CooperativeClose` request through that anchor (deadline `Δ` blocks on, at stake what
/// the close pays the holder). Returns the harness after at most 30 blocks, and the close.
fn coop_close_in_spike(bumps: [bool; 2]) -> (H, Transaction) {
    let mut h = H::new(busy(START - 5), bumps);
    let fx = h.p.parties[0].ch.close(&h.p.parties[0].signer).expect("close allowed");
    h.p.absorb(A, fx);
    h.p.run();
    let close = h.p.parties[A.index()]
        .bumps
        .iter()
        .chain(&h.p.parties[B.index()].bumps)
        .find(|r| r.protects == Protects::CooperativeClose)
        .map(|r| r.tx.clone())
        .expect("a cooperative close request");
    for role in [A, B] {
        let reqs = &h.p.parties[role.index()].bumps;
        let r = reqs.iter().find(|r| r.protects == Protects::CooperativeClose).expect("each party asks");
        assert_eq!(r.id(), close.compute_txid(), "the same close");
        let step = u32::from(h.p.ch(role).params().step());
        assert_eq!(r.deadline.0, h.p.chain.height + step, "deadline: Δ blocks after the broadcast");
        let ours = h.p.ch(role).balances().holder;
        assert_eq!(r.at_stake, ours, "at stake: what the close pays the holder");
        assert!(
            matches!(&r.method, BumpMethod::Child { anchor, .. } if is_p2a(&close.output[anchor.outpoint.vout as usize].script_pubkey))
        );
    }
    assert_eq!(fee_of(&h.p.chain, &close), 0, "the close pays no fee");
    for _ in 0..30 {
        h.block();
        if h.p.chain.confirmation(&close.compute_txid()).is_some() {
            break;
        }
    }
    (h, close)
}

#[test]
fn a_cooperative_close_in_a_100x_spike_confirms_through_a_p2a_child_by_its_deadline() {
    let (h, close) = coop_close_in_spike([true, true]);
    let txid = close.compute_txid();
    let at = h.p.chain.confirmation(&txid).expect("the close confirmed");
    let step = u32::from(h.p.a().params().step());
    assert!(
        h.p.chain.market().expect("market").min_feerate(at).to_sat_per_kwu() >= 100 * BASE,
        "confirmed at the spike's peak"
    );
    let anchor = close.output.iter().position(|o| is_p2a(&o.script_pubkey)).expect("a P2A output");
    let child = h
        .p
        .chain
        .confirmed_txs()
        .into_iter()
        .find(|t| t.input.iter().any(|i| i.previous_output.txid == txid && i.previous_output.vout as usize == anchor))
        .expect("a child spent the anchor");
    assert_eq!(h.p.chain.confirmation(&child.compute_txid()), Some(at), "mined with its child");
    for role in [A, B] {
        assert!(h.sides[role.index()].missed.is_empty(), "no deadline missed");
        let r = h.sides[role.index()].requests.iter().find(|r| r.protects == Protects::CooperativeClose).unwrap();
        assert!(at <= r.deadline.0 && r.deadline.0 <= at + step);
        // Each party ends with its balance, less the fee of its child if its child confirmed.
        let owed = h.p.ch(role).balances().holder.to_sat() as i64;
        assert_eq!(h.gained(role), owed - h.fees_paid(role) as i64, "party {role:?} whole less its own fees");
    }
    assert!(h.fees_paid(A) + h.fees_paid(B) > 100 * 100, "the spike made the close expensive");
}

#[test]
fn without_a_bumper_the_zero_fee_cooperative_close_never_confirms() {
    let (h, close) = coop_close_in_spike([false, false]);
    assert_eq!(h.p.chain.confirmation(&close.compute_txid()), None, "a zero-fee transaction alone is refused");
    assert!(h.p.chain.is_unspent(&close.input[0].previous_output), "the funding output is still unspent");
    assert_eq!(h.gained(A) + h.gained(B), 0, "nobody was paid");
}
