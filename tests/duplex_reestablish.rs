//! Duplex reconnection: after a new connection both parties exchange `Reestablish`; what either
//! missed (a payment, its acknowledgement, a fulfilment or failure, any step of a reset) is sent
//! again and completes, and a party restored from an older snapshot learns that it lost state.

mod common;

use common::duplex::{wire, Pair};
use paychan::core::PaymentPreimage;
use paychan::driving::RestoreCheck;
use paychan::duplex::{Channel, CommandError, Event, Misbehaviour, Msg, PendingReset, Reestablish, Role};

const A: Role = Role::Initiator;
const B: Role = Role::Acceptor;

fn open() -> Pair {
    let mut p = Pair::open(common::duplex::terms(vec![3, 3, 3]));
    p.pay(A, 20_000);
    p.pay(B, 5_000);
    p
}

/// Delivers the first queued message only if `keep` says so; returns it.
fn step(p: &mut Pair, keep: bool) -> Msg {
    let (to, m) = p.queue.pop_front().expect("a message in flight");
    if keep {
        let tip = p.tip();
        let party = &mut p.parties[to.index()];
        let fx = party.ch.handle_message(wire(&m), &party.signer, tip).expect("delivered");
        p.absorb(to, fx);
    }
    m
}

fn events(p: &Pair, who: Role) -> &[Event] {
    &p.parties[who.index()].events
}

/// Restores `who` from `snapshot` as if it were its newest write (its later writes were lost).
fn lose_writes(p: &mut Pair, who: Role, snapshot: &[u8]) {
    let check = RestoreCheck { channel_id: p.ch(who).channel_id(), min_update_id: 0 };
    p.parties[who.index()].ch = Channel::restore(snapshot, check).expect("older snapshot restores");
}

#[test]
fn a_lost_payment_is_sent_again() {
    let mut p = open();
    let fx = p.parties[0].ch.pay(bitcoin::Amount::from_sat(7_000), &p.parties[0].signer).expect("pay");
    p.absorb(A, fx);
    let Msg::Payment(lost) = p.queue.pop_front().expect("payment").1 else { panic!("a payment") };
    p.reconnect();
    p.run();
    assert_eq!(p.b().leaf_state(A).to_payee, lost.to_payee, "B holds the payment sent again");
    assert!(events(&p, A).contains(&Event::PaymentAcknowledged { number: lost.number }));
    p.assert_views_agree();
    // Quiescent again: a reset works.
    p.reset(A);
    p.assert_views_agree();
}

#[test]
fn a_lost_acknowledgement_is_implied_by_the_reestablish() {
    let mut p = open();
    let fx = p.parties[0].ch.pay(bitcoin::Amount::from_sat(7_000), &p.parties[0].signer).expect("pay");
    p.absorb(A, fx);
    step(&mut p, true);
    let Msg::Ack { number } = step(&mut p, false) else { panic!("an ack") };
    assert!(matches!(p.parties[0].ch.reset(&p.parties[0].signer, p.tip()), Err(CommandError::NotQuiescent)));
    p.reconnect();
    assert!(p.queue.is_empty(), "nothing to send again: B holds the payment");
    assert!(events(&p, A).contains(&Event::PaymentAcknowledged { number }));
    p.reset(A);
    p.assert_views_agree();
}

#[test]
fn lost_fulfilments_and_failures_are_sent_again() {
    let mut p = open();
    let (x, y) = (PaymentPreimage([7; 32]), PaymentPreimage([8; 32]));
    let paid = p.add_htlc(A, 3_000, x, 200);
    let failed = p.add_htlc(A, 2_000, y, 200);
    let fx = p.parties[1].ch.fulfill_htlc(paid, x, &p.parties[1].signer).expect("fulfil");
    p.absorb(B, fx);
    let fx = p.parties[1].ch.fail_htlc(failed).expect("fail");
    p.absorb(B, fx);
    assert_eq!(p.queue.len(), 2);
    p.queue.clear();
    p.reconnect();
    p.run();
    assert!(events(&p, A).iter().any(|e| matches!(e, Event::HtlcFulfilled { id, .. } if *id == paid)));
    assert!(events(&p, A).contains(&Event::HtlcFailed { id: failed }));
    // A folded the fulfilled HTLC into B's amount; a reset drops the failed one.
    p.reset(A);
    assert!(p.a().htlcs().is_empty() && p.b().htlcs().is_empty());
    p.assert_views_agree();
    // Nothing is sent twice once both sides agree.
    p.reconnect();
    assert!(p.queue.is_empty());
}

/// Interrupts a reset by dropping its step `lost` (1, 2 or 3) and reconnects.
fn interrupted_reset(lost: usize) {
    let mut p = open();
    let before = p.a().digits().to_vec();
    let fx = p.parties[0].ch.reset(&p.parties[0].signer, p.tip()).expect("propose");
    p.absorb(A, fx);
    let mut sent = Vec::new();
    for k in 1..=3 {
        sent.push(step(&mut p, k < lost));
        if k == lost {
            break;
        }
    }
    p.queue.clear();
    assert!(p.a().is_resetting() || p.b().is_resetting(), "step {lost} lost: a reset is pending");
    p.reconnect();
    // What is sent again is the lost step, byte for byte (deterministic signatures).
    let again = p.queue.front().map(|(_, m)| m.clone()).expect("something sent again");
    assert_eq!(again.encode(), sent[lost - 1].encode(), "step {lost} sent again identically");
    p.run();
    assert!(!p.a().is_resetting() && !p.b().is_resetting(), "step {lost}: the reset completed");
    assert_eq!(p.a().digits(), p.b().digits());
    assert_ne!(p.a().digits(), &before[..]);
    assert!(events(&p, A).iter().any(|e| matches!(e, Event::ResetCompleted { .. })));
    assert!(events(&p, B).iter().any(|e| matches!(e, Event::ResetCompleted { .. })));
    p.assert_views_agree();
    // The channel goes on: payments both ways and another reset.
    p.pay(A, 1_000);
    p.pay(B, 1_000);
    p.reset(B);
    p.assert_views_agree();
}

#[test]
fn a_reset_interrupted_at_step_1_resumes() {
    interrupted_reset(1);
}

#[test]
fn a_reset_interrupted_at_step_2_resumes() {
    interrupted_reset(2);
}

#[test]
fn a_reset_interrupted_at_step_3_resumes() {
    interrupted_reset(3);
}

#[test]
fn a_party_behind_on_a_reset_learns_it_lost_state() {
    let mut p = open();
    let old = p.b().snapshot();
    p.reset(A);
    lose_writes(&mut p, B, &old);
    p.reconnect();
    assert!(events(&p, B).contains(&Event::LostState));
    assert!(events(&p, A).contains(&Event::CounterpartyLostState));
    assert!(p.b().has_lost_state());
    // It signs nothing new, and its snapshot remembers that.
    let b = &mut p.parties[1];
    assert_eq!(b.ch.pay(bitcoin::Amount::from_sat(1_000), &b.signer).unwrap_err(), CommandError::LostState);
    let tip = p.tip();
    let b = &mut p.parties[1];
    assert_eq!(b.ch.reset(&b.signer, tip).unwrap_err(), CommandError::LostState);
    assert_eq!(b.ch.close(&b.signer).unwrap_err(), CommandError::LostState);
    let restored = Channel::restore(&b.ch.snapshot(), RestoreCheck::default()).expect("restores");
    assert!(restored.has_lost_state());
    // Peer messages other than a reestablish are refused, state unchanged.
    let before = b.ch.snapshot();
    let err = b.ch.handle_message(Msg::Ack { number: 1 }, &b.signer, tip).expect_err("refused");
    assert_eq!(err.kind, Misbehaviour::UnexpectedMessage);
    assert_eq!(b.ch.snapshot(), before);
}

#[test]
fn a_payer_that_forgot_a_payment_learns_it_lost_state() {
    let mut p = open();
    let old = p.a().snapshot();
    p.pay(A, 3_000);
    lose_writes(&mut p, A, &old);
    p.reconnect();
    assert!(events(&p, A).contains(&Event::LostState));
    assert!(events(&p, B).contains(&Event::CounterpartyLostState));
}

#[test]
fn a_payee_that_forgot_payments_gets_them_again() {
    let mut p = open();
    let old = p.b().snapshot();
    p.pay(A, 3_000);
    p.pay(A, 4_000);
    let newest = p.a().leaf_state(A).clone();
    lose_writes(&mut p, B, &old);
    assert_ne!(p.b().leaf_state(A), &newest);
    p.reconnect();
    p.run();
    assert_eq!(p.b().leaf_state(A), &newest, "the payer sent its newest payment again");
    assert!(!p.b().has_lost_state(), "losing received payments only is recovered");
    p.assert_views_agree();
    p.reset(B);
    p.assert_views_agree();
}

#[test]
fn a_proposer_that_forgot_its_proposal_never_reuses_its_locks() {
    let mut p = open();
    let old = p.a().snapshot();
    let fx = p.parties[0].ch.reset(&p.parties[0].signer, p.tip()).expect("propose");
    p.absorb(A, fx);
    let Msg::ResetPropose(first) = step(&mut p, true) else { panic!("a proposal") };
    p.queue.clear();
    let accepted = p.b().snapshot();
    // B accepted (it released its signature on the new node); A lost the proposal. B keeps the
    // branch it signed until that reset completes (it takes no other proposal), and its
    // Reestablish carries the proposal's terms: A takes the very same proposal up again (the same
    // locks, nothing new signed below them) and B's step (2), sent again, completes it.
    lose_writes(&mut p, A, &old);
    p.reconnect();
    p.run();
    assert!(!p.a().is_resetting() && !p.b().is_resetting());
    assert_eq!(p.a().digits(), &first.digits[..]);
    assert_eq!(p.b().digits(), &first.digits[..]);
    p.assert_views_agree();
    p.reset(B);
    p.assert_views_agree();

    // From a B that does not send the terms (an older version), A only learns that the counter
    // value is used: its next proposal is above it, and B, still waiting for step (3) of the
    // first one, refuses it unchanged (it cannot tell a proposer that lost its proposal from one
    // that holds the branch and would publish it once B forgot it: duplex_hostile.rs).
    let mut p = open();
    let fx = p.parties[0].ch.reset(&p.parties[0].signer, p.tip()).expect("propose");
    p.absorb(A, fx);
    step(&mut p, true);
    p.queue.clear();
    assert_eq!(p.b().snapshot(), accepted);
    lose_writes(&mut p, A, &old);
    let Msg::Reestablish(mut from_b) = p.b().reestablish() else { panic!("reestablish") };
    assert!(from_b.accepted_terms.is_some());
    from_b.accepted_terms = None;
    let tip = p.tip();
    let fx = p.parties[0].ch.handle_message(Msg::Reestablish(from_b), &p.parties[0].signer, tip).expect("taken");
    p.absorb(A, fx);
    assert!(!p.a().is_resetting());
    let fx = p.parties[0].ch.reset(&p.parties[0].signer, p.tip()).expect("propose again");
    p.absorb(A, fx);
    let Some((_, Msg::ResetPropose(second))) = p.queue.pop_front() else { panic!("a proposal") };
    assert!(second.digits > first.digits, "{:?} after {:?}", second.digits, first.digits);
    let before = p.b().snapshot();
    let e = p.parties[1].ch.handle_message(Msg::ResetPropose(second), &p.parties[1].signer, tip).expect_err("refused");
    assert_eq!(e.kind, Misbehaviour::NotQuiescent);
    assert_eq!(p.b().snapshot(), before);
    assert!(p.b().is_resetting());
}

#[test]
fn a_bad_reestablish_is_refused_and_changes_nothing() {
    let mut p = open();
    let good = match p.a().reestablish() {
        Msg::Reestablish(r) => r,
        other => panic!("{other:?}"),
    };
    let mut newer = p.a().digits().to_vec();
    *newer.last_mut().expect("digits") += 1;
    let b_paid = p.b().leaf_state(B).to_payee;
    let mut forged_payment = good.your_payment.clone().expect("A holds B's payment");
    forged_payment.number += 5;
    forged_payment.to_payee = b_paid + bitcoin::Amount::from_sat(1_000);
    let numbers_ahead = |n: u64| {
        let mut numbers = good.numbers;
        numbers[B.index()] += n;
        numbers
    };
    let bad = [
        (Reestablish { digits: vec![9, 9, 9], ..good.clone() }, Misbehaviour::BadDigits),
        (Reestablish { digits: vec![0, 0], ..good.clone() }, Misbehaviour::BadDigits),
        (Reestablish { pending: Some(PendingReset::Proposed(vec![7, 0, 0])), ..good.clone() }, Misbehaviour::BadDigits),
        // A newer branch "proven" by signatures on the current one.
        (Reestablish { digits: newer.clone(), ..good.clone() }, Misbehaviour::UnprovenReestablish),
        (Reestablish { digits: newer, your_branch_sigs: vec![], ..good.clone() }, Misbehaviour::UnprovenReestablish),
        // A newer payment of B's with no payment, or with a signature B never made on it.
        (
            Reestablish { numbers: numbers_ahead(5), your_payment: None, ..good.clone() },
            Misbehaviour::UnprovenReestablish,
        ),
        (
            Reestablish { numbers: numbers_ahead(5), your_payment: Some(forged_payment), ..good.clone() },
            Misbehaviour::UnprovenReestablish,
        ),
    ];
    for (r, kind) in bad {
        let tip = p.tip();
        let b = &mut p.parties[1];
        let before = (b.ch.snapshot(), format!("{:?}", b.ch));
        let err = b.ch.handle_message(Msg::Reestablish(r.clone()), &b.signer, tip).expect_err("refused");
        assert_eq!(err.kind, kind, "{r:?}");
        assert_eq!((b.ch.snapshot(), format!("{:?}", b.ch)), before);
        assert!(!b.ch.has_lost_state());
    }
}

#[test]
fn a_claimed_acceptance_burns_at_most_the_next_counter_value() {
    let mut p = open();
    let honest = match p.b().reestablish() {
        Msg::Reestablish(r) => r,
        other => panic!("{other:?}"),
    };
    // B claims to have accepted a proposal of A's far ahead: A cannot have proposed it.
    let far = Reestablish { pending: Some(PendingReset::Accepted(vec![2, 2, 2])), ..honest };
    let tip = p.tip();
    let a = &mut p.parties[0];
    let before = a.ch.snapshot();
    let fx = a.ch.handle_message(Msg::Reestablish(far), &a.signer, tip).expect("taken");
    assert!(fx.update.is_none() && fx.send.is_empty());
    assert_eq!(a.ch.snapshot(), before, "no counter value reserved");
    assert_eq!(p.reset(A), 3, "the next reset still advances the deepest level");
}
