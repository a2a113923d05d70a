//! Spilman channels end to end, both variants: setup, 1,000 payments, conditional payments
//! (fulfilled, timed out, resolved on chain), close by the payee, refund by the payer. Every
//! transaction either party broadcasts goes through a simulated chain that enforces lock times
//! and checks scripts with Bitcoin Core's interpreter.

mod common;

use bitcoin::hashes::Hash;
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, TxOut, Txid, WPubkeyHash};
use common::chain::{Chain, Reject};
use paychan::core::keys::{ChannelSecrets, Seed};
use paychan::core::sign::InMemorySigner;
use paychan::core::{BlockHeight, PaymentPreimage};
use paychan::driving::{ChainEvent, ChainTip, RestoreCheck};
use paychan::spilman::{CloseKind, Effects, Event, Msg, Payee, PayeeConfig, Payer, PayerConfig, Variant};

const START: u32 = 100;
const EXPIRY: u32 = 1_000;
const CAPACITY: Amount = Amount::from_sat(1_000_000);
const FEE: Amount = Amount::from_sat(500);

fn p2wpkh(n: u8) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]))
}

struct Harness {
    chain: Chain,
    payer: Payer,
    payee: Payee,
    payer_signer: InMemorySigner,
    payee_signer: InMemorySigner,
    /// Every effect list seen, for checks.
    payer_events: Vec<Event>,
    payee_events: Vec<Event>,
    broadcasts: Vec<Transaction>,
}

fn tip(chain: &Chain) -> ChainTip {
    ChainTip::at(chain.height)
}

/// Every message crosses the wire encoding.
fn wire(m: &Msg) -> Msg {
    let bytes = m.encode();
    let back = Msg::decode(&bytes).expect("own encoding decodes");
    assert_eq!(&back, m);
    back
}

impl Harness {
    fn new(variant: Variant) -> Self {
        let payer_signer = InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([1; 32]), 0));
        let payee_signer = InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([2; 32]), 0));
        let chain = Chain::at(START);
        let (payee, fx) = Payee::new(
            PayeeConfig {
                variant,
                payee_script: p2wpkh(2),
                expiry: BlockHeight(EXPIRY),
                min_first_payment: Amount::from_sat(10_000),
                dust_limit: Amount::from_sat(546),
                payment_fee: FEE,
                close_margin: 6,
                htlc_min_blocks: 12,
                min_depth: 1,
                claim_fee: Amount::from_sat(300),
            },
            &payee_signer,
        );
        let Some(Msg::Offer(offer)) = fx.send.first().map(wire) else { panic!("payee sends its offer") };
        let payer = Payer::new(
            offer,
            PayerConfig {
                capacity: CAPACITY,
                payer_script: p2wpkh(1),
                refund_fee: FEE,
                claim_fee: Amount::from_sat(300),
                first_payment: Amount::from_sat(10_000),
                max_lifetime: 10_000,
            },
            &payer_signer,
            tip(&chain),
        )
        .expect("offer acceptable");
        let mut h = Harness {
            chain,
            payer,
            payee,
            payer_signer,
            payee_signer,
            payer_events: vec![],
            payee_events: vec![],
            broadcasts: vec![],
        };
        let funding = common::wallet::unsigned_funding(
            OutPoint { txid: Txid::from_byte_array([9; 32]), vout: 0 },
            vec![TxOut { value: Amount::from_sat(5_000_000), script_pubkey: p2wpkh(1) }, h.payer.funding_output()],
        );
        let fx = h.payer.fund(funding.clone(), &h.payer_signer).unwrap();
        h.deliver_from_payer(fx);
        // The funding transaction is broadcast only once the payer holds its refund.
        assert!(h.broadcasts.iter().any(|t| t.compute_txid() == funding.compute_txid()));
        h.chain.credit(&funding);
        let height = BlockHeight(h.chain.height);
        let fx = h.payee.handle_chain(ChainEvent::Confirmed { tx: &funding, height }, &h.payee_signer);
        h.payee_events.extend(fx.events);
        h
    }

    fn check_update<M, E>(fx: &Effects2<M, E>) {
        if !fx.send.is_empty() || !fx.broadcast.is_empty() {
            assert!(fx.update.is_some(), "anything sent or broadcast is persisted first");
        }
    }

    /// Delivers the payer's effects to the payee, and so on until quiet.
    fn deliver_from_payer(&mut self, fx: Effects) {
        Self::check_update(&fx);
        self.payer_events.extend(fx.events);
        self.broadcasts.extend(fx.broadcast);
        for m in fx.send {
            let out = self.payee.handle_message(wire(&m), &self.payee_signer, tip(&self.chain)).expect("payee accepts");
            self.deliver_from_payee(out);
        }
    }

    fn deliver_from_payee(&mut self, fx: Effects) {
        Self::check_update(&fx);
        self.payee_events.extend(fx.events);
        self.broadcasts.extend(fx.broadcast);
        for m in fx.send {
            let out = self.payer.handle_message(wire(&m), &self.payer_signer, tip(&self.chain)).expect("payer accepts");
            self.deliver_from_payer(out);
        }
    }

    fn pay(&mut self, sats: u64) {
        let fx = self.payer.pay(Amount::from_sat(sats), &self.payer_signer).unwrap();
        self.deliver_from_payer(fx);
    }

    /// Mines a transaction and tells both parties.
    fn mine(&mut self, tx: &Transaction) {
        self.chain.mine(tx).unwrap_or_else(|e| panic!("chain rejected {}: {e:?}", tx.compute_txid()));
        let height = BlockHeight(self.chain.height);
        for _ in 0..2 {
            // Delivered twice: the second delivery must change nothing.
            let before = (self.payer.snapshot(), self.payee.snapshot());
            let a = self.payer.handle_chain(ChainEvent::Confirmed { tx, height }, &self.payer_signer);
            let b = self.payee.handle_chain(ChainEvent::Confirmed { tx, height }, &self.payee_signer);
            if before != (self.payer.snapshot(), self.payee.snapshot()) {
                self.payer_events.extend(a.events);
                self.payee_events.extend(b.events);
                self.broadcasts.extend(a.broadcast);
                self.broadcasts.extend(b.broadcast);
            } else {
                assert!(a.broadcast.is_empty() && b.broadcast.is_empty());
            }
        }
    }

    fn advance_to(&mut self, height: u32) {
        while self.chain.height < height {
            self.chain.advance(1);
            let t = tip(&self.chain);
            let a = self.payer.handle_chain(ChainEvent::Tip(t), &self.payer_signer);
            let b = self.payee.handle_chain(ChainEvent::Tip(t), &self.payee_signer);
            self.payer_events.extend(a.events);
            self.payee_events.extend(b.events);
            self.broadcasts.extend(a.broadcast);
            self.broadcasts.extend(b.broadcast);
            for m in b.send {
                let _ = self.payer.handle_message(m, &self.payer_signer, t);
            }
        }
    }

    fn take_broadcasts(&mut self) -> Vec<Transaction> {
        std::mem::take(&mut self.broadcasts)
    }
}

type Effects2<M, E> = paychan::driving::Effects<M, E>;

fn lifecycle(variant: Variant) {
    let mut h = Harness::new(variant);
    assert!(h.take_broadcasts().len() == 2, "funding broadcast by the payer and by the payee");

    // 1,000 payments of varying sizes.
    let mut paid = 10_000u64;
    for i in 0..1_000u64 {
        let sats = 100 + (i * 37) % 250;
        h.pay(sats);
        paid += sats;
        assert_eq!(h.payee.received().to_sat(), paid);
        assert_eq!(h.payer.acknowledged(), h.payer.payment_number());
    }
    // The payee's best transaction is valid on chain right now.
    h.chain.check(&h.payee.closing_tx(&h.payee_signer).unwrap()).unwrap();

    // A conditional payment, fulfilled off chain and folded in.
    let pre_a = PaymentPreimage([0xaa; 32]);
    let (id_a, fx) = h
        .payer
        .add_htlc(
            Amount::from_sat(5_000),
            pre_a.hash(),
            BlockHeight(h.chain.height + 50),
            &h.payer_signer,
            tip(&h.chain),
        )
        .unwrap();
    h.deliver_from_payer(fx);
    assert!(h.payee_events.iter().any(|e| matches!(e, Event::HtlcOffered(x) if x.id == id_a)));
    let fx = h.payee.fulfill_htlc(id_a, pre_a, &h.payee_signer).unwrap();
    h.deliver_from_payee(fx);
    paid += 5_000;
    assert_eq!(h.payee.received().to_sat(), paid, "the fulfilled HTLC is folded into the payee's output");
    assert!(h
        .payer_events
        .iter()
        .any(|e| matches!(e, Event::HtlcFulfilled { id, preimage, .. } if *id == id_a && *preimage == pre_a)));

    // A conditional payment that times out: removed after expiry, final only once dominated.
    let pre_b = PaymentPreimage([0xbb; 32]);
    let expiry_b = h.chain.height + 20;
    let (id_b, fx) = h
        .payer
        .add_htlc(Amount::from_sat(7_000), pre_b.hash(), BlockHeight(expiry_b), &h.payer_signer, tip(&h.chain))
        .unwrap();
    h.deliver_from_payer(fx);
    assert_eq!(
        h.payer.timeout_htlc(id_b, &h.payer_signer, tip(&h.chain)),
        Err(paychan::spilman::CommandError::NotExpired)
    );
    h.advance_to(expiry_b);
    let fx = h.payer.timeout_htlc(id_b, &h.payer_signer, tip(&h.chain)).unwrap();
    h.deliver_from_payer(fx);
    assert_eq!(h.payer.is_fail_irrevocable(id_b), Some(false));
    h.pay(3_000);
    assert_eq!(h.payer.is_fail_irrevocable(id_b), Some(false));
    h.pay(4_000);
    paid += 7_000;
    assert_eq!(h.payer.is_fail_irrevocable(id_b), Some(true), "dominated once the payee got the HTLC amount more");
    assert!(h.payer_events.iter().any(|e| matches!(e, Event::HtlcFailIrrevocable { id } if *id == id_b)));

    // Two HTLCs left open when the payee closes: one it can fulfil on chain, one that times out.
    let pre_c = PaymentPreimage([0xcc; 32]);
    let pre_d = PaymentPreimage([0xdd; 32]);
    let expiry_cd = h.chain.height + 30;
    let (id_c, fx) = h
        .payer
        .add_htlc(Amount::from_sat(6_000), pre_c.hash(), BlockHeight(expiry_cd), &h.payer_signer, tip(&h.chain))
        .unwrap();
    h.deliver_from_payer(fx);
    let (id_d, fx) = h
        .payer
        .add_htlc(Amount::from_sat(8_000), pre_d.hash(), BlockHeight(expiry_cd), &h.payer_signer, tip(&h.chain))
        .unwrap();
    h.deliver_from_payer(fx);
    // The payee learns C's preimage but the payer is offline: the Fulfill is lost.
    let fx = h.payee.fulfill_htlc(id_c, pre_c, &h.payee_signer).unwrap();
    assert!(matches!(fx.send.as_slice(), [Msg::Fulfill { .. }]));

    // Restoring both parties from their snapshots changes nothing.
    let payer_bytes = h.payer.snapshot();
    let payee_bytes = h.payee.snapshot();
    let check = RestoreCheck { channel_id: h.payer.channel_id(), min_update_id: h.payer.update_id() };
    assert_eq!(Payer::restore(&payer_bytes, check).unwrap().snapshot(), payer_bytes);
    let check = RestoreCheck { channel_id: h.payee.channel_id(), min_update_id: h.payee.update_id() };
    assert_eq!(Payee::restore(&payee_bytes, check).unwrap().snapshot(), payee_bytes);

    // The payee closes.
    let fx = h.payee.close(&h.payee_signer).unwrap();
    let close_tx = fx.broadcast[0].clone();
    h.payee_events.extend(fx.events);
    h.take_broadcasts();
    assert_eq!(close_tx.output.len(), 4, "payee, payer change, two HTLCs");
    let to_payee: u64 = close_tx.output.iter().filter(|o| o.script_pubkey == p2wpkh(2)).map(|o| o.value.to_sat()).sum();
    let change: u64 = close_tx.output.iter().filter(|o| o.script_pubkey == p2wpkh(1)).map(|o| o.value.to_sat()).sum();
    assert_eq!(to_payee, paid - FEE.to_sat());
    assert_eq!(change, CAPACITY.to_sat() - paid - 14_000);
    let total: u64 = close_tx.output.iter().map(|o| o.value.to_sat()).sum();
    assert_eq!(total + FEE.to_sat(), CAPACITY.to_sat(), "channel value conserved to the satoshi");
    h.mine(&close_tx);
    assert!(h.payer_events.iter().any(|e| matches!(e, Event::Closed { kind: CloseKind::Payment, .. })));
    assert!(h.payee.is_closed() && h.payer.is_closed());

    // The payee claimed C with the preimage; the payer learns it from the witness.
    let claims = h.take_broadcasts();
    assert_eq!(claims.len(), 1, "the payee claims the HTLC it knows the preimage of");
    h.mine(&claims[0]);
    assert!(h
        .payer_events
        .iter()
        .any(|e| matches!(e, Event::HtlcFulfilled { id, preimage, .. } if *id == id_c && *preimage == pre_c)));

    // D times out: the payer's claim is offered at its expiry and not a block before.
    h.advance_to(expiry_cd - 1);
    assert!(h.take_broadcasts().is_empty());
    h.advance_to(expiry_cd);
    let claims = h.take_broadcasts();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].lock_time.to_consensus_u32(), expiry_cd);
    h.mine(&claims[0]);
    assert!(h.payer_events.iter().any(|e| matches!(e, Event::HtlcFailIrrevocable { id } if *id == id_d)));
}

#[test]
fn cltv_variant_lifecycle() {
    lifecycle(Variant::Cltv);
}

#[test]
fn presigned_refund_variant_lifecycle() {
    lifecycle(Variant::PresignedRefund);
}

fn refund(variant: Variant) {
    let mut h = Harness::new(variant);
    h.take_broadcasts();
    for _ in 0..10 {
        h.pay(1_000);
    }
    // The payee vanishes. Its close margin and the expiry pass; the payer refunds.
    let refund = h.payer.refund_tx(&h.payer_signer).unwrap();
    h.chain.height = EXPIRY - 2;
    assert!(matches!(h.chain.check(&refund), Err(Reject::NonFinal { .. })), "a refund one block early is rejected");
    let fx = h.payer.handle_chain(ChainEvent::Tip(ChainTip::at(EXPIRY - 1)), &h.payer_signer);
    assert!(fx.broadcast.is_empty(), "no refund before its height");
    h.chain.height = EXPIRY - 1;
    assert!(matches!(h.chain.check(&refund), Err(Reject::NonFinal { .. })));
    h.chain.height = EXPIRY;
    let fx = h.payer.handle_chain(ChainEvent::Tip(ChainTip::at(EXPIRY)), &h.payer_signer);
    assert_eq!(fx.broadcast, vec![refund.clone()], "refund broadcast at its height");
    assert_eq!(h.payer.refund_height(), BlockHeight(EXPIRY));
    h.mine(&refund);
    assert_eq!(refund.output[0].value, CAPACITY - FEE);
    assert!(h.payer_events.iter().any(|e| matches!(e, Event::Closed { kind: CloseKind::Refund, .. })));
    assert!(h.payee.is_closed());
}

#[test]
fn cltv_variant_refund_after_expiry() {
    refund(Variant::Cltv);
}

#[test]
fn presigned_variant_refund_after_expiry() {
    refund(Variant::PresignedRefund);
}

#[test]
fn payee_closes_by_itself_at_its_margin() {
    let mut h = Harness::new(Variant::Cltv);
    h.take_broadcasts();
    h.pay(5_000);
    let close_by = h.payee.close_by().0;
    assert_eq!(close_by, EXPIRY - 6);
    h.advance_to(close_by - 1);
    assert!(h.take_broadcasts().is_empty());
    // Payments inside the margin are refused.
    h.advance_to(close_by);
    let closes = h.take_broadcasts();
    assert_eq!(closes.len(), 1);
    h.mine(&closes[0]);
    assert!(h.chain.confirmation(&closes[0].compute_txid()).unwrap() < EXPIRY);
}

/// The DOT pictures name the transactions each side really holds: the payment the payee would
/// close with (by txid), its HTLC output and both spending paths, and the refund with its lock.
#[test]
fn pictures_show_the_held_transactions() {
    for variant in [Variant::Cltv, Variant::PresignedRefund] {
        let mut h = Harness::new(variant);
        let fx = h.payer.pay(Amount::from_sat(20_000), &h.payer_signer).unwrap();
        h.deliver_from_payer(fx);
        let pre = PaymentPreimage([0x5a; 32]);
        let expiry = h.chain.height + 60;
        let (id, fx) = h
            .payer
            .add_htlc(Amount::from_sat(7_000), pre.hash(), BlockHeight(expiry), &h.payer_signer, tip(&h.chain))
            .unwrap();
        h.deliver_from_payer(fx);
        let best = h.payee.closing_tx(&h.payee_signer).unwrap().compute_txid().to_string();
        let refund = h.payer.refund_tx(&h.payer_signer).unwrap();
        for dot in [h.payer.to_dot(), h.payee.to_dot()] {
            assert!(dot.starts_with("digraph spilman {") && dot.trim_end().ends_with('}'), "{dot}");
            for needle in [
                format!("payment #{} {}", h.payer.payment_number(), &best[..12]),
                format!("HTLC #{id} output"),
                format!("expiry {expiry}"),
                format!("timeout to payer\\nnLockTime {expiry}"),
                format!("refund to payer {}", &refund.compute_txid().to_string()[..12]),
                format!("nLockTime {EXPIRY}"),
            ] {
                assert!(dot.contains(&needle), "DOT lacks {needle}:\n{dot}");
            }
            assert_eq!(dot.matches('"').count() % 2, 0, "quotes balanced");
        }
    }
}
