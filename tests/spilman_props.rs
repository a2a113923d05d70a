//! Model-based properties of a Spilman payer/payee pair, both variants: random sequences of
//! payments, HTLC adds, fulfils, fails, timeouts and blocks, every message delivered through its
//! wire encoding. After every step:
//!
//! * (a) conservation: the payee's best closing transaction pays out exactly the capacity minus
//!   the payment fee, to the satoshi;
//! * (b) the payee's output is what it acknowledged (`received - fee`) and never shrinks;
//! * (c) both sides agree on the newest state, and the payer holds an acknowledgement for it.
//!
//! At the end of each case the closing transaction passes Bitcoin Core's script interpreter on
//! the simulated chain. Proptest runs with a fixed seed and no failure persistence, so the test
//! is deterministic.

mod common;

use bitcoin::hashes::Hash;
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, TxOut, Txid, WPubkeyHash};
use common::chain::Chain;
use paychan::core::keys::{ChannelSecrets, Seed};
use paychan::core::sign::InMemorySigner;
use paychan::core::{BlockHeight, PaymentPreimage};
use paychan::driving::{ChainEvent, ChainTip, RestoreCheck};
use paychan::spilman::{Effects, Event, Msg, Payee, PayeeConfig, Payer, PayerConfig, PaymentState, Variant};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngSeed};

const START: u32 = 100;
const EXPIRY: u32 = 1_000;
const HTLC_MIN_BLOCKS: u32 = 12;
const CAPACITY: Amount = Amount::from_sat(1_000_000);
const FEE: Amount = Amount::from_sat(500);
const DUST: Amount = Amount::from_sat(546);
const FIRST: Amount = Amount::from_sat(10_000);

fn p2wpkh(n: u8) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]))
}

fn payee_script() -> ScriptBuf {
    p2wpkh(2)
}

fn payer_script() -> ScriptBuf {
    p2wpkh(1)
}

fn wire(m: &Msg) -> Msg {
    let back = Msg::decode(&m.encode()).expect("own encoding decodes");
    assert_eq!(&back, m);
    back
}

/// A distinct preimage per HTLC.
fn preimage_for(n: u64) -> PaymentPreimage {
    let mut p = [0x5au8; 32];
    p[..8].copy_from_slice(&n.to_be_bytes());
    PaymentPreimage(p)
}

/// One step of a random run.
#[derive(Clone, Debug)]
enum Op {
    /// The payer pays this much more.
    Pay(u64),
    /// The payer pays everything it has left.
    PayAll,
    /// The payer offers an HTLC expiring `HTLC_MIN_BLOCKS + delta` blocks from now.
    AddHtlc { sats: u64, delta: u32 },
    /// The payee reveals the preimage of one of the HTLCs it holds.
    Fulfill(Index),
    /// The payee gives one of the HTLCs it holds up.
    Fail(Index),
    /// The payer takes back one of its HTLCs (refused before expiry).
    Timeout(Index),
    /// Blocks are mined (never reaching the payee's close margin).
    Advance(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (1u64..5_000).prop_map(Op::Pay),
        1 => (5_000u64..400_000).prop_map(Op::Pay),
        1 => Just(Op::PayAll),
        4 => (300u64..40_000, 0u32..40).prop_map(|(sats, delta)| Op::AddHtlc { sats, delta }),
        2 => any::<Index>().prop_map(Op::Fulfill),
        2 => any::<Index>().prop_map(Op::Fail),
        2 => any::<Index>().prop_map(Op::Timeout),
        3 => (1u32..40).prop_map(Op::Advance),
    ]
}

fn variant() -> impl Strategy<Value = Variant> {
    prop_oneof![Just(Variant::Cltv), Just(Variant::PresignedRefund)]
}

/// A payer and a payee connected by a lossless, in-order wire, on a simulated chain.
struct Sim {
    chain: Chain,
    payer: Payer,
    payee: Payee,
    payer_signer: InMemorySigner,
    payee_signer: InMemorySigner,
    /// HTLC id -> preimage, for every HTLC offered.
    preimages: Vec<(u64, PaymentPreimage)>,
    /// HTLC ids whose preimage the payer learnt.
    fulfilled: Vec<u64>,
    /// Every state the payee ever held (a payee may keep every payment transaction it got).
    held: Vec<PaymentState>,
    /// The payee's output in the best closing transaction at the previous step.
    payee_out: Amount,
    htlcs_added: u64,
}

impl Sim {
    fn new(variant: Variant) -> Self {
        let payer_signer = InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([1; 32]), 0));
        let payee_signer = InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([2; 32]), 0));
        let mut chain = Chain::at(START);
        let (payee, fx) = Payee::new(
            PayeeConfig {
                variant,
                payee_script: payee_script(),
                expiry: BlockHeight(EXPIRY),
                min_first_payment: FIRST,
                dust_limit: DUST,
                payment_fee: FEE,
                close_margin: 6,
                htlc_min_blocks: HTLC_MIN_BLOCKS,
                min_depth: 1,
                claim_fee: Amount::from_sat(300),
            },
            &payee_signer,
        );
        let Some(Msg::Offer(offer)) = fx.send.first().map(wire) else { panic!("the payee offers") };
        let payer = Payer::new(
            offer,
            PayerConfig {
                capacity: CAPACITY,
                payer_script: payer_script(),
                refund_fee: FEE,
                claim_fee: Amount::from_sat(300),
                first_payment: FIRST,
                max_lifetime: 10_000,
            },
            &payer_signer,
            ChainTip::at(START),
        )
        .expect("offer acceptable");
        let funding = common::wallet::unsigned_funding(
            OutPoint { txid: Txid::from_byte_array([9; 32]), vout: 0 },
            vec![TxOut { value: Amount::from_sat(5_000_000), script_pubkey: p2wpkh(9) }, payer.funding_output()],
        );
        let mut sim = Sim {
            chain: Chain::default(),
            payer,
            payee,
            payer_signer,
            payee_signer,
            preimages: vec![],
            fulfilled: vec![],
            held: vec![],
            payee_out: Amount::ZERO,
            htlcs_added: 0,
        };
        let fx = sim.payer.fund(funding.clone(), &sim.payer_signer).expect("funding accepted");
        sim.deliver_from_payer(fx);
        chain.credit(&funding);
        let height = BlockHeight(chain.height);
        let _ = sim.payee.handle_chain(ChainEvent::Confirmed { tx: &funding, height }, &sim.payee_signer);
        let _ = sim.payer.handle_chain(ChainEvent::Confirmed { tx: &funding, height }, &sim.payer_signer);
        sim.chain = chain;
        sim
    }

    fn tip(&self) -> ChainTip {
        ChainTip::at(self.chain.height)
    }

    /// Delivers the payer's messages; an honest payer's messages must all be accepted.
    fn deliver_from_payer(&mut self, fx: Effects) {
        for m in fx.send {
            let out = match self.payee.handle_message(wire(&m), &self.payee_signer, self.tip()) {
                Ok(out) => out,
                Err(e) => panic!("the payee refused an honest {m:?}: {e}"),
            };
            if let Msg::Payment(_) | Msg::Open(_) = m {
                self.held.push(self.payee.state().expect("holds a payment").clone());
            }
            self.deliver_from_payee(out);
        }
    }

    fn deliver_from_payee(&mut self, fx: Effects) {
        for m in fx.send {
            let out = match self.payer.handle_message(wire(&m), &self.payer_signer, self.tip()) {
                Ok(out) => out,
                Err(e) => panic!("the payer refused an honest {m:?}: {e}"),
            };
            for e in &out.events {
                if let Event::HtlcFulfilled { id, .. } = e {
                    self.fulfilled.push(*id);
                }
            }
            self.deliver_from_payer(out);
        }
    }

    fn preimage(&self, id: u64) -> PaymentPreimage {
        self.preimages.iter().find(|(i, _)| *i == id).map(|(_, p)| *p).expect("known HTLC")
    }

    /// Applies `op`; a command the channel legitimately refuses is skipped.
    fn apply(&mut self, op: &Op) {
        let tip = self.tip();
        match *op {
            Op::Pay(sats) => {
                if let Ok(fx) = self.payer.pay(Amount::from_sat(sats), &self.payer_signer) {
                    self.deliver_from_payer(fx);
                }
            }
            Op::PayAll => {
                let all = self.payer.available();
                if let Ok(fx) = self.payer.pay(all, &self.payer_signer) {
                    self.deliver_from_payer(fx);
                    assert_eq!(self.payer.available(), Amount::ZERO);
                }
            }
            Op::AddHtlc { sats, delta } => {
                let preimage = preimage_for(self.htlcs_added);
                let expiry = BlockHeight(tip.height.0 + HTLC_MIN_BLOCKS + delta);
                let added =
                    self.payer.add_htlc(Amount::from_sat(sats), preimage.hash(), expiry, &self.payer_signer, tip);
                if let Ok((id, fx)) = added {
                    self.htlcs_added += 1;
                    self.preimages.push((id, preimage));
                    self.deliver_from_payer(fx);
                }
            }
            Op::Fulfill(i) => {
                let held: Vec<u64> =
                    self.payee.state().map(|s| s.htlcs.iter().map(|h| h.id).collect()).unwrap_or_default();
                if !held.is_empty() {
                    let id = held[i.index(held.len())];
                    let preimage = self.preimage(id);
                    if let Ok(fx) = self.payee.fulfill_htlc(id, preimage, &self.payee_signer) {
                        self.deliver_from_payee(fx);
                    }
                }
            }
            Op::Fail(i) => {
                let held: Vec<u64> =
                    self.payee.state().map(|s| s.htlcs.iter().map(|h| h.id).collect()).unwrap_or_default();
                if !held.is_empty() {
                    if let Ok(fx) = self.payee.fail_htlc(held[i.index(held.len())]) {
                        self.deliver_from_payee(fx);
                    }
                }
            }
            Op::Timeout(i) => {
                let ids: Vec<u64> = self.payer.state().htlcs.iter().map(|h| h.id).collect();
                if !ids.is_empty() {
                    if let Ok(fx) = self.payer.timeout_htlc(ids[i.index(ids.len())], &self.payer_signer, tip) {
                        self.deliver_from_payer(fx);
                    }
                }
            }
            Op::Advance(n) => {
                let room = self.payee.close_by().0 - 1 - tip.height.0;
                for _ in 0..n.min(room) {
                    self.chain.advance(1);
                    let t = self.tip();
                    let a = self.payer.handle_chain(ChainEvent::Tip(t), &self.payer_signer);
                    let b = self.payee.handle_chain(ChainEvent::Tip(t), &self.payee_signer);
                    assert!(a.send.is_empty() && a.broadcast.is_empty(), "the payer acts only at expiry");
                    assert!(b.send.is_empty() && b.broadcast.is_empty(), "the payee acts only at its close margin");
                }
            }
        }
    }

    /// Properties (a), (b), (c); returns the best closing transaction.
    fn check(&mut self) -> Transaction {
        // (c) Agreement, and the newest payment is acknowledged.
        assert_eq!(self.payee.state(), Some(self.payer.state()), "the two sides disagree");
        assert_eq!(self.payer.acknowledged(), self.payer.payment_number());
        let state = self.payer.state().clone();

        // (a) Conservation to the satoshi.
        let tx = self.payee.closing_tx(&self.payee_signer).expect("the payee can always close");
        let total: Amount = tx.output.iter().map(|o| o.value).sum();
        assert_eq!(total + FEE, CAPACITY, "outputs + fee must be the capacity");

        // (b) The payee's output is what it acknowledged, and never shrinks.
        let to_payee: Amount = tx.output.iter().filter(|o| o.script_pubkey == payee_script()).map(|o| o.value).sum();
        assert_eq!(to_payee, self.payee.received() - FEE);
        assert_eq!(self.payee.received(), state.to_payee, "the payee holds what the payer had acknowledged");
        assert!(to_payee >= self.payee_out, "the payee's output shrank from {} to {}", self.payee_out, to_payee);
        assert!(to_payee >= DUST);
        self.payee_out = to_payee;

        // The rest: the payer's change (zero or above dust) and one output per HTLC.
        let change: Amount = tx.output.iter().filter(|o| o.script_pubkey == payer_script()).map(|o| o.value).sum();
        assert_eq!(change, self.payer.available());
        assert!(change == Amount::ZERO || change >= DUST);
        let htlc_outputs = tx.output.len() - 1 - usize::from(change > Amount::ZERO);
        assert_eq!(htlc_outputs, state.htlcs.len());
        assert_eq!(total, to_payee + change + state.htlc_total().unwrap());
        tx
    }

    /// (d) A failure the payer calls irrevocable is one the payee cannot profit from: no payment
    /// the payee ever held costs the payer more, net of what it can still claim upstream (HTLCs
    /// neither fulfilled nor irrevocably failed), than the newest one.
    fn check_irrevocable(&self) {
        let newest = self.payer.state().to_payee;
        for held in &self.held {
            let lost: Amount = held
                .htlcs
                .iter()
                .filter(|h| self.fulfilled.contains(&h.id) || self.payer.is_fail_irrevocable(h.id) == Some(true))
                .map(|h| h.amount)
                .sum();
            let carries_final = held.htlcs.iter().any(|h| self.payer.is_fail_irrevocable(h.id) == Some(true));
            assert!(
                !carries_final || held.to_payee + lost <= newest,
                "a payment carrying HTLCs the payer failed irrevocably costs it {} > {} (held {held:?})",
                held.to_payee + lost,
                newest
            );
        }
    }

    fn finish(&mut self) {
        let tx = self.check();
        self.chain.check(&tx).unwrap_or_else(|e| panic!("the best closing transaction is invalid: {e:?}"));
        // Both sides survive a restart.
        let payer = Payer::restore(&self.payer.snapshot(), RestoreCheck::default()).unwrap();
        assert_eq!(payer.snapshot(), self.payer.snapshot());
        let payee = Payee::restore(&self.payee.snapshot(), RestoreCheck::default()).unwrap();
        assert_eq!(payee.closing_tx(&self.payee_signer).unwrap(), tx);
    }
}

fn run(variant: Variant, ops: &[Op], irrevocable: bool) {
    let mut sim = Sim::new(variant);
    sim.check();
    for op in ops {
        sim.apply(op);
        sim.check();
        if irrevocable {
            sim.check_irrevocable();
        }
    }
    sim.finish();
}

fn config() -> Config {
    Config { cases: 64, rng_seed: RngSeed::Fixed(0x5b11_3a4e), failure_persistence: None, ..Config::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_operations_conserve_value_and_keep_both_sides_in_sync(
        variant in variant(),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        run(variant, &ops, false);
    }

    #[test]
    fn irrevocable_failures_cannot_be_undone_by_an_old_payment(
        variant in variant(),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        run(variant, &ops, true);
    }
}

/// The operations of each case are drawn so that refused commands stay rare; check that the
/// interesting paths are all reached by the fixed seed.
#[test]
fn the_generated_runs_reach_every_path() {
    let mut runner = proptest::test_runner::TestRunner::new(config());
    let strategy = (variant(), prop::collection::vec(op(), 1..40));
    let (mut fulfilled, mut failed, mut timed_out, mut paid_all, mut variants) = (0, 0, 0, 0, [0; 2]);
    for _ in 0..64 {
        let (variant, ops) = strategy.new_tree(&mut runner).unwrap().current();
        variants[usize::from(variant == Variant::PresignedRefund)] += 1;
        let mut sim = Sim::new(variant);
        for op in &ops {
            let before = sim.payer.payment_number();
            sim.apply(op);
            if sim.payer.payment_number() > before {
                match op {
                    Op::Fulfill(_) => fulfilled += 1,
                    Op::Fail(_) => failed += 1,
                    Op::Timeout(_) => timed_out += 1,
                    Op::PayAll => paid_all += 1,
                    _ => {}
                }
            }
        }
    }
    eprintln!(
        "variants {variants:?}: fulfilled {fulfilled}, failed {failed}, timed out {timed_out}, paid all {paid_all}"
    );
    assert!(variants.iter().all(|n| *n > 10), "{variants:?}");
    assert!(
        fulfilled > 10 && failed > 10 && timed_out > 3 && paid_all > 3,
        "{fulfilled} {failed} {timed_out} {paid_all}"
    );
}

/// HTLCs A (5,000) and B (4,000) are carried by one payment P on top of 10,000. B is failed;
/// then either A is failed too and the payer pays 5,000 more, or A is fulfilled and folded in.
/// Either way the newest payment gives the payee 15,000, the payer reports B's failure (and in the
/// first case A's) irrevocable and fails it upstream, but P is still valid on chain and gives a
/// payee that knows the preimages 19,000: the payer loses 4,000.
#[test]
fn htlcs_failed_alongside_others_are_not_irrevocable_too_early() {
    for variant in [Variant::Cltv, Variant::PresignedRefund] {
        for fulfil_a in [false, true] {
            let mut sim = Sim::new(variant);
            let tip = sim.tip();
            let expiry = BlockHeight(tip.height.0 + 50);
            let mut ids = vec![];
            for (n, sats) in [(0, 5_000), (1, 4_000)] {
                let (id, fx) = sim
                    .payer
                    .add_htlc(Amount::from_sat(sats), preimage_for(n).hash(), expiry, &sim.payer_signer, tip)
                    .unwrap();
                sim.preimages.push((id, preimage_for(n)));
                sim.deliver_from_payer(fx);
                ids.push(id);
            }
            let (a, b) = (ids[0], ids[1]);
            // The payee holds P, a valid transaction it can publish at any time.
            let carrying = sim.payee.state().unwrap().clone();
            let carrying_tx = sim.payee.closing_tx(&sim.payee_signer).unwrap();
            assert_eq!(carrying.htlcs.len(), 2);

            let fx = sim.payee.fail_htlc(b).unwrap();
            sim.deliver_from_payee(fx);
            if fulfil_a {
                let fx = sim.payee.fulfill_htlc(a, preimage_for(0), &sim.payee_signer).unwrap();
                sim.deliver_from_payee(fx);
            } else {
                let fx = sim.payee.fail_htlc(a).unwrap();
                sim.deliver_from_payee(fx);
                let fx = sim.payer.pay(Amount::from_sat(5_000), &sim.payer_signer).unwrap();
                sim.deliver_from_payer(fx);
            }
            sim.check();
            let newest = sim.payer.state().to_payee;
            assert_eq!(newest, carrying.to_payee + Amount::from_sat(5_000));
            assert!(sim.payer.state().htlcs.is_empty());

            sim.chain.check(&carrying_tx).unwrap();
            let old_value = carrying.to_payee + carrying.htlc_total().unwrap();
            assert_eq!(old_value, newest + Amount::from_sat(4_000));
            assert_ne!(
                sim.payer.is_fail_irrevocable(b),
                Some(true),
                "B reported irrevocably failed at {newest} (fulfil A: {fulfil_a}), but P is worth {old_value} to the payee"
            );
            sim.check_irrevocable();
        }
    }
}

/// Two HTLCs with the same hash, amount and expiry (two parts of one payment, say) have identical
/// outputs. When the payee closes with both outstanding, the payer must take back both.
#[test]
fn identical_htlcs_are_both_timed_out_on_chain() {
    for variant in [Variant::Cltv, Variant::PresignedRefund] {
        let mut sim = Sim::new(variant);
        let tip = sim.tip();
        let expiry = BlockHeight(tip.height.0 + 30);
        let hash = preimage_for(7).hash();
        for _ in 0..2 {
            let (id, fx) = sim.payer.add_htlc(Amount::from_sat(6_000), hash, expiry, &sim.payer_signer, tip).unwrap();
            sim.preimages.push((id, preimage_for(7)));
            sim.deliver_from_payer(fx);
        }
        sim.check();
        let close = sim.payee.close(&sim.payee_signer).unwrap();
        let close_tx = close.broadcast[0].clone();
        sim.chain.mine(&close_tx).unwrap();
        let height = BlockHeight(sim.chain.height);
        let _ = sim.payer.handle_chain(ChainEvent::Confirmed { tx: &close_tx, height }, &sim.payer_signer);
        let _ = sim.payee.handle_chain(ChainEvent::Confirmed { tx: &close_tx, height }, &sim.payee_signer);
        // The payee never learns the preimage; at expiry the payer claims its HTLC outputs.
        let mut claims = vec![];
        while sim.chain.height < expiry.0 {
            sim.chain.advance(1);
            let fx = sim.payer.handle_chain(ChainEvent::Tip(sim.tip()), &sim.payer_signer);
            claims.extend(fx.broadcast);
        }
        let htlc_outpoints: Vec<OutPoint> = (0..close_tx.output.len() as u32)
            .filter(|v| close_tx.output[*v as usize].value == Amount::from_sat(6_000))
            .map(|vout| OutPoint { txid: close_tx.compute_txid(), vout })
            .collect();
        assert_eq!(htlc_outpoints.len(), 2);
        let mut spent: Vec<OutPoint> = claims.iter().flat_map(|c| c.input.iter().map(|i| i.previous_output)).collect();
        spent.sort();
        spent.dedup();
        for claim in &claims {
            let _ = sim.chain.mine(claim);
        }
        let unclaimed: Vec<&OutPoint> = htlc_outpoints.iter().filter(|o| sim.chain.is_unspent(o)).collect();
        assert!(
            unclaimed.is_empty(),
            "{} claims spend {} distinct outputs; HTLC outputs left unclaimed: {unclaimed:?}",
            claims.len(),
            spent.len()
        );
    }
}
