//! Spilman reconnection: payer and payee exchange `Reestablish` on a new connection; a lost
//! payment, acknowledgement, fulfilment or failure is sent again, a lossy payee gets its payments
//! back, a lossy payer learns (with proof) that it lost state, and forged claims change nothing.

mod common;

use bitcoin::Amount;
use common::route::{open_spilman, spilman_payee_config, spilman_payer_config};
use paychan::core::{BlockHeight, PaymentPreimage};
use paychan::driving::{ChainTip, RestoreCheck};
use paychan::spilman::{CommandError, Effects, Event, Misbehaviour, Msg, Payee, Payer, Reestablish};
use paychan::testing::chain::Chain;

const START: u32 = 500;
const EXPIRY: u32 = 2_000;

struct Pair {
    payer: Payer,
    payee: Payee,
    keys: [paychan::core::sign::InMemorySigner; 2],
    /// Messages in flight: `true` for the payee.
    queue: Vec<(bool, Msg)>,
    events: [Vec<Event>; 2],
}

fn wire(m: &Msg) -> Msg {
    Msg::decode(&m.encode()).expect("own message decodes")
}

impl Pair {
    fn open() -> Pair {
        let keys = [
            common::duplex::signer(paychan::duplex::Role::Initiator),
            common::duplex::signer(paychan::duplex::Role::Acceptor),
        ];
        let (payer, payee, funding) = open_spilman(&keys[0], &keys[1], EXPIRY, ChainTip::at(START));
        let mut chain = Chain::at(START);
        chain.credit(&funding);
        let mut p = Pair { payer, payee, keys, queue: Vec::new(), events: [vec![], vec![]] };
        let height = BlockHeight(START);
        let ev = paychan::driving::ChainEvent::Confirmed { tx: &funding, height };
        let fx = p.payer.handle_chain(ev, &p.keys[0]);
        p.absorb(false, fx);
        let fx = p.payee.handle_chain(ev, &p.keys[1]);
        p.absorb(true, fx);
        p.run();
        p
    }

    fn tip(&self) -> ChainTip {
        ChainTip::at(START + 1)
    }

    /// `payee` says whose effects these are.
    fn absorb(&mut self, payee: bool, fx: Effects) {
        if !fx.send.is_empty() {
            assert!(fx.update.is_some(), "anything sent is persisted first");
        }
        self.events[usize::from(payee)].extend(fx.events);
        self.queue.extend(fx.send.into_iter().map(|m| (!payee, m)));
    }

    fn deliver(&mut self, to_payee: bool, m: &Msg) {
        let tip = self.tip();
        let fx = if to_payee {
            self.payee.handle_message(wire(m), &self.keys[1], tip)
        } else {
            self.payer.handle_message(wire(m), &self.keys[0], tip)
        };
        let fx = fx.unwrap_or_else(|e| panic!("refused {m:?}: {e:?}"));
        self.absorb(to_payee, fx);
    }

    fn run(&mut self) {
        while !self.queue.is_empty() {
            let (to, m) = self.queue.remove(0);
            self.deliver(to, &m);
        }
    }

    fn reconnect(&mut self) {
        self.queue.clear();
        let (to_payee, to_payer) = (self.payer.reestablish(), self.payee.reestablish());
        self.deliver(true, &to_payee);
        self.deliver(false, &to_payer);
    }

    fn pay(&mut self, sats: u64) -> Effects {
        self.payer.pay(Amount::from_sat(sats), &self.keys[0]).expect("pay")
    }
}

#[test]
fn a_lost_payment_is_sent_again_and_a_lost_ack_implied() {
    let mut p = Pair::open();
    let fx = p.pay(5_000);
    p.absorb(false, fx);
    p.queue.clear();
    p.reconnect();
    p.run();
    assert_eq!(p.payee.received(), p.payer.state().to_payee, "the payee holds the newest payment");
    assert_eq!(p.payer.acknowledged(), p.payer.payment_number());
    // Lost acknowledgement only.
    let fx = p.pay(1_000);
    p.absorb(false, fx);
    let (to, m) = p.queue.remove(0);
    p.deliver(to, &m);
    p.queue.clear();
    assert!(p.payer.acknowledged() < p.payer.payment_number());
    p.reconnect();
    assert!(p.queue.is_empty(), "nothing to send again");
    assert_eq!(p.payer.acknowledged(), p.payer.payment_number());
}

#[test]
fn lost_fulfilments_and_failures_are_sent_again() {
    let mut p = Pair::open();
    let (x, y) = (PaymentPreimage([3; 32]), PaymentPreimage([4; 32]));
    let tip = p.tip();
    let (paid, fx) =
        p.payer.add_htlc(Amount::from_sat(3_000), x.hash(), BlockHeight(START + 100), &p.keys[0], tip).expect("add");
    p.absorb(false, fx);
    let (failed, fx) =
        p.payer.add_htlc(Amount::from_sat(2_000), y.hash(), BlockHeight(START + 100), &p.keys[0], tip).expect("add");
    p.absorb(false, fx);
    p.run();
    let fx = p.payee.fulfill_htlc(paid, x, &p.keys[1]).expect("fulfil");
    p.absorb(true, fx);
    let fx = p.payee.fail_htlc(failed).expect("fail");
    p.absorb(true, fx);
    p.queue.clear();
    p.reconnect();
    p.run();
    assert!(p.events[0].iter().any(|e| matches!(e, Event::HtlcFulfilled { id, .. } if *id == paid)));
    assert!(p.events[0].contains(&Event::HtlcRemoved { id: failed }));
    assert!(p.payee.state().is_some_and(|s| s.htlcs.is_empty()), "folded and removed");
    p.reconnect();
    assert!(p.queue.is_empty(), "nothing sent twice once both agree");
}

#[test]
fn a_lossy_payee_gets_its_payments_back() {
    let mut p = Pair::open();
    let old = p.payee.snapshot();
    for sats in [2_000, 3_000, 4_000] {
        let fx = p.pay(sats);
        p.absorb(false, fx);
        p.run();
    }
    let newest = p.payee.received();
    p.payee = Payee::restore(&old, RestoreCheck::default()).expect("older snapshot restores");
    assert!(p.payee.received() < newest);
    p.reconnect();
    p.run();
    assert_eq!(p.payee.received(), newest);
    assert!(!p.events[0].contains(&Event::LostState));
}

#[test]
fn a_lossy_payer_learns_it_lost_state_and_signs_nothing() {
    let mut p = Pair::open();
    let old = p.payer.snapshot();
    let fx = p.pay(2_000);
    p.absorb(false, fx);
    p.run();
    p.payer = Payer::restore(&old, RestoreCheck::default()).expect("older snapshot restores");
    p.reconnect();
    assert!(p.events[0].contains(&Event::LostState));
    assert!(p.events[1].contains(&Event::CounterpartyLostState));
    assert!(p.payer.has_lost_state());
    assert_eq!(p.payer.pay(Amount::from_sat(1), &p.keys[0]).unwrap_err(), CommandError::LostState);
    let restored = Payer::restore(&p.payer.snapshot(), RestoreCheck::default()).expect("restores");
    assert!(restored.has_lost_state());
}

#[test]
fn a_forged_newer_payment_is_refused_and_changes_nothing() {
    let mut p = Pair::open();
    let fx = p.pay(2_000);
    p.absorb(false, fx);
    p.run();
    let Msg::Reestablish(honest) = p.payee.reestablish() else { panic!("reestablish") };
    let mut forged = honest.your_payment.clone().expect("the payee holds a payment");
    forged.number += 3;
    forged.to_payee += Amount::from_sat(50_000);
    let bad = [
        Reestablish { number: honest.number + 3, your_payment: None, ..honest.clone() },
        Reestablish { number: honest.number + 3, your_payment: Some(forged), ..honest.clone() },
    ];
    for r in bad {
        let before = p.payer.snapshot();
        let err = p.payer.handle_message(Msg::Reestablish(r), &p.keys[0], p.tip()).expect_err("refused");
        assert_eq!(err.kind, Misbehaviour::UnprovenReestablish);
        assert_eq!(p.payer.snapshot(), before);
        assert!(!p.payer.has_lost_state());
    }
}

#[test]
fn a_reestablish_before_the_channel_is_open_changes_nothing() {
    let keys = [
        common::duplex::signer(paychan::duplex::Role::Initiator),
        common::duplex::signer(paychan::duplex::Role::Acceptor),
    ];
    let (open_payer, open_payee, _) = open_spilman(&keys[0], &keys[1], EXPIRY, ChainTip::at(START));
    let (Msg::Reestablish(from_payer), Msg::Reestablish(from_payee)) =
        (open_payer.reestablish(), open_payee.reestablish())
    else {
        panic!("reestablish messages")
    };
    // A payee that only made its offer, and a payer that has not funded yet.
    let (mut payee, fx) = Payee::new(spilman_payee_config(EXPIRY), &keys[1]);
    let Some(Msg::Offer(offer)) = fx.send.first().cloned() else { panic!("offer") };
    // The payee, not open yet, answers nothing (its own reestablish tells a funded payer to send
    // `Open` again) and changes nothing.
    let before = payee.snapshot();
    let fx = payee.handle_message(Msg::Reestablish(from_payer), &keys[1], ChainTip::at(START)).expect("nothing to do");
    assert!(fx.is_empty());
    assert_eq!(payee.snapshot(), before);
    let mut payer = Payer::new(offer, spilman_payer_config(), &keys[0], ChainTip::at(START)).expect("offer acceptable");
    let before = payer.snapshot();
    let err = payer.handle_message(Msg::Reestablish(from_payee), &keys[0], ChainTip::at(START)).expect_err("refused");
    assert_eq!(err.kind, Misbehaviour::UnexpectedMessage);
    assert_eq!(payer.snapshot(), before);
}
