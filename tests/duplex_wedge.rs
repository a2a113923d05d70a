//! Duplex off-chain wedges found by the `duplex_state` fuzz target (reproducers
//! `fuzz/artifacts-found/duplex_state-refused-resend-*`), and that they are gone: a refused update
//! that `Reestablish` only sent again, to be refused again, left the channel closable only by
//! publishing the tree. Each test replays the reproducer's scenario with the fuzz target's terms
//! (a 3×3 tree, push 200,000 sat) and shows the channel recovering off chain, both parties whole
//! to the satoshi.

mod common;

use bitcoin::Amount;
use common::duplex::{terms, wire, Pair};
use paychan::core::PaymentPreimage;
use paychan::driving::RestoreCheck;
use paychan::duplex::{Channel, Event, Misbehaviour, Msg, Role};

const A: Role = Role::Initiator;
const B: Role = Role::Acceptor;

fn open() -> Pair {
    Pair::open(terms(vec![3, 3]))
}

/// Delivers the first queued message; returns the refusal, if any (the channel is then
/// unchanged).
fn deliver_one(p: &mut Pair) -> Option<Misbehaviour> {
    let (to, m) = p.queue.pop_front().expect("a message in flight");
    let tip = p.tip();
    let party = &mut p.parties[to.index()];
    let before = party.ch.snapshot();
    match party.ch.handle_message(wire(&m), &party.signer, tip) {
        Ok(fx) => {
            p.absorb(to, fx);
            None
        }
        Err(e) => {
            assert_eq!(p.parties[to.index()].ch.snapshot(), before, "a refusal changes nothing");
            Some(e.kind)
        }
    }
}

/// B shows A a `Reestablish` from its older snapshot `stale` (hiding what came since); A takes it.
fn hide_behind(p: &mut Pair, stale: &[u8]) {
    let check = RestoreCheck { channel_id: p.b().channel_id(), min_update_id: 0 };
    let hidden = Channel::restore(stale, check).expect("B's older copy").reestablish();
    let tip = p.tip();
    let pa = &mut p.parties[0];
    let fx = pa.ch.handle_message(wire(&hidden), &pa.signer, tip).expect("A takes the Reestablish");
    p.absorb(A, fx);
    p.queue.clear();
}

fn events(p: &Pair, who: Role) -> &[Event] {
    &p.parties[who.index()].events
}

/// Mines blocks until the cooperative close in a party's broadcasts confirms; returns the payouts.
fn confirm_close(p: &mut Pair) -> (u64, u64) {
    for _ in 0..3 {
        p.mine();
    }
    assert!(events(p, A).iter().any(|e| matches!(e, Event::Closed { .. })), "A sees the close confirmed");
    assert!(events(p, B).iter().any(|e| matches!(e, Event::Closed { .. })), "B sees the close confirmed");
    (p.paid_to(A), p.paid_to(B))
}

/// `duplex_state-refused-resend-close-crossing-payment`: A proposes a cooperative close while B,
/// not having seen it, pays A its whole balance. Before the fix A refused the payment (a close was
/// pending) and B the proposal (its payment unacknowledged), and `Reestablish` only sent the
/// payment again: both refused each other forever. Now A takes the payment (it only raises A's
/// balance) and withdraws its proposal; the payment is lost here and comes again on the next
/// connection, as in the reproducer.
#[test]
fn close_proposal_crossing_a_payment_is_withdrawn() {
    let mut p = open();
    let value = p.a().terms().channel_value().to_sat();
    let b_before = p.b().balances().holder.to_sat();
    assert_eq!(b_before, 200_000);

    // A proposes to close; B pays A everything it holds, the two cross.
    let fx = p.parties[0].ch.close(&p.parties[0].signer).expect("A proposes a close");
    p.absorb(A, fx);
    let available = p.b().available();
    let fx = p.parties[1].ch.pay(available, &p.parties[1].signer).expect("B pays");
    p.absorb(B, fx);
    // B refuses the proposal (its payment is unacknowledged); the payment to A is lost.
    assert_eq!(deliver_one(&mut p), Some(Misbehaviour::CloseNotAllowed));
    let (to, lost) = p.queue.pop_front().expect("B's payment");
    assert!(to == A && matches!(lost, Msg::Payment(_)));

    // The next connection: B sends its payment again, and A takes it (before the fix: refused
    // again, for good).
    p.reconnect();
    p.run();
    assert!(events(&p, A).contains(&Event::CloseWithdrawn), "A withdrew its proposal");
    assert!(events(&p, B).iter().any(|e| matches!(e, Event::PaymentAcknowledged { .. })));
    p.assert_views_agree();
    assert_eq!(p.a().balances().holder.to_sat(), value - b_before + available.to_sat());
    assert_eq!(p.b().balances().holder.to_sat(), b_before - available.to_sat());

    // A proposes again, B signs: closed cooperatively, no tree published.
    let fx = p.parties[0].ch.close(&p.parties[0].signer).expect("A proposes again");
    p.absorb(A, fx);
    p.run();
    let (to_a, to_b) = confirm_close(&mut p);
    assert!(!events(&p, A).iter().any(|e| matches!(e, Event::TreeTxBroadcast { .. })), "no tree published");
    // Whole to the satoshi: A gets everything B paid it (B's 0 change is below dust).
    assert_eq!(to_a, value - b_before + available.to_sat());
    assert_eq!(to_b, b_before - available.to_sat());
}

/// The same crossing delivered at once: A takes the payment on its first delivery. The withdrawn
/// proposal stays a close B may publish (B holds A's signature on it): it pays A what A held
/// before the payment, so taking the payment costs A nothing; but it pays no HTLC, so an HTLC
/// offered to A while such a close exists is failed at once (A never forwards it). A reset then
/// drops it and the channel closes cooperatively, both whole to the satoshi.
#[test]
fn a_withdrawn_close_makes_later_htlcs_to_the_proposer_fail() {
    let mut p = open();
    let value = p.a().terms().channel_value().to_sat();
    let fx = p.parties[0].ch.close(&p.parties[0].signer).expect("A proposes a close");
    p.absorb(A, fx);
    let fx = p.parties[1].ch.pay(Amount::from_sat(50_000), &p.parties[1].signer).expect("B pays");
    p.absorb(B, fx);
    assert_eq!(deliver_one(&mut p), Some(Misbehaviour::CloseNotAllowed));
    assert_eq!(deliver_one(&mut p), None, "A takes the crossing payment");
    p.run();
    assert!(events(&p, A).contains(&Event::CloseWithdrawn));
    p.assert_views_agree();
    assert_eq!(p.a().balances().holder.to_sat(), value - 200_000 + 50_000);
    // B may still complete the withdrawn close: it pays A what A held when it signed, which is
    // all A counts on until the channel closes (the payment is not final).
    assert_eq!(p.a().released_close_floor(), Some(Amount::from_sat(value - 200_000)));

    // B offers an HTLC: A takes the payment carrying it but fails the HTLC at once.
    let before = events(&p, A).len();
    let id = p.add_htlc(B, 10_000, PaymentPreimage([9; 32]), 300);
    assert!(!events(&p, A)[before..].iter().any(|e| matches!(e, Event::HtlcOffered(_))), "never offered upstream");
    assert!(events(&p, B).contains(&Event::HtlcFailed { id }));
    p.assert_views_agree();
    // A restart keeps the rule (snapshot version 5).
    let check = RestoreCheck { channel_id: p.a().channel_id(), min_update_id: 0 };
    p.parties[0].ch = Channel::restore(&p.a().snapshot(), check).expect("restores");
    let id2 = p.add_htlc(B, 2_000, PaymentPreimage([8; 32]), 300);
    assert!(events(&p, B).contains(&Event::HtlcFailed { id: id2 }));

    // A reset drops the failed HTLCs; the channel closes cooperatively.
    p.reset(B);
    assert!(events(&p, B).contains(&Event::HtlcFailIrrevocable { id }));
    p.assert_views_agree();
    let fx = p.parties[1].ch.close(&p.parties[1].signer).expect("B proposes");
    p.absorb(B, fx);
    p.run();
    let (to_a, to_b) = confirm_close(&mut p);
    assert!(to_a >= p.a().released_close_floor().unwrap().to_sat());
    assert_eq!(to_a, value - 200_000 + 50_000);
    assert_eq!(to_b, 200_000 - 50_000);
}

/// `duplex_state-refused-resend-htlc-expiry`: A offers an HTLC (and pays on top of it), B never
/// receives it, blocks pass, and B refuses the payment sent again on reconnection because the
/// HTLC's expiry is no longer inside the window it accepts. Before the fix nothing could withdraw
/// it. Now the `Reestablish` exchange shows A that B does not hold it: A withdraws the HTLC
/// (failed, final once a reset supersedes the leaf) and sends its newest state without it.
#[test]
fn a_resent_htlc_whose_expiry_left_the_window_is_withdrawn() {
    let mut p = open();
    let value = p.a().terms().channel_value().to_sat();
    p.pay(A, 20_000);
    p.assert_views_agree();
    // A offers an HTLC at the earliest expiry B accepts now, then pays 5,000 more; both lost.
    let tip = p.tip();
    let (earliest, _) = p.a().htlc_expiry_window(tip);
    let earliest = earliest.expect("a window");
    let preimage = PaymentPreimage([7; 32]);
    let pa = &mut p.parties[0];
    let (id, fx) = pa.ch.add_htlc(Amount::from_sat(1_500), preimage.hash(), earliest, &pa.signer, tip).expect("add");
    p.absorb(A, fx);
    let pa = &mut p.parties[0];
    let fx = pa.ch.pay(Amount::from_sat(5_000), &pa.signer).expect("pay on top");
    p.absorb(A, fx);
    p.queue.clear();
    // One block: the expiry leaves B's window.
    p.mine();
    let (now_earliest, _) = p.b().htlc_expiry_window(p.tip());
    assert!(earliest < now_earliest.expect("a window"));

    p.reconnect();
    p.run(); // panics on any refusal (before the fix: B refused A's payment, HtlcExpiry)
    p.assert_views_agree();
    assert!(events(&p, A).contains(&Event::HtlcFailed { id }), "A fails the HTLC (not yet final)");
    assert!(!events(&p, A).contains(&Event::HtlcFailIrrevocable { id }));
    assert_eq!(p.a().withdrawn_htlcs().len(), 1);
    assert_eq!(p.b().leaf_state(A).to_payee.to_sat(), p.a().leaf_state(A).to_payee.to_sat());
    assert!(p.b().htlcs().is_empty(), "B never holds the HTLC");
    // B might hold the payment carrying it after all: A does not pay that amount again.
    let before_reset = p.a().available();
    assert_eq!(
        before_reset.to_sat() + 1_500,
        p.a().leaf_value(A).to_sat() - p.a().leaf_state(A).to_payee.to_sat(),
        "the withdrawn amount stays out of what A may pay"
    );

    // A reset supersedes the leaf: the failure is final, the amount A's again.
    p.reset(A);
    assert!(events(&p, A).contains(&Event::HtlcFailIrrevocable { id }));
    assert!(p.a().withdrawn_htlcs().is_empty());
    p.assert_views_agree();

    // Close cooperatively: whole to the satoshi (A paid 25,000 in all; the HTLC went nowhere).
    let fx = p.parties[0].ch.close(&p.parties[0].signer).expect("close");
    p.absorb(A, fx);
    p.run();
    let (to_a, to_b) = confirm_close(&mut p);
    assert_eq!(to_a, value - 200_000 - 25_000);
    assert_eq!(to_b, 200_000 + 25_000);
}

/// The withdrawal survives a restart (snapshot version 5), and a withdrawn HTLC B never heard of
/// needs no payment when A's newest state without it is the one B holds: A goes back to B's
/// number.
#[test]
fn a_withdrawal_back_to_the_held_state_survives_a_restart() {
    let mut p = open();
    p.pay(A, 20_000);
    let tip = p.tip();
    let (earliest, _) = p.a().htlc_expiry_window(tip);
    let pa = &mut p.parties[0];
    let (id, fx) = pa
        .ch
        .add_htlc(Amount::from_sat(2_000), PaymentPreimage([3; 32]).hash(), earliest.unwrap(), &pa.signer, tip)
        .expect("add");
    p.absorb(A, fx);
    p.queue.clear();
    p.mine();
    p.reconnect();
    assert!(p.queue.iter().all(|(_, m)| !matches!(m, Msg::Payment(_))), "nothing to send: B holds A's state");
    p.run();
    p.assert_views_agree();
    assert!(events(&p, A).contains(&Event::HtlcFailed { id }));
    let snap = p.a().snapshot();
    let check = RestoreCheck { channel_id: p.a().channel_id(), min_update_id: 0 };
    let restored = Channel::restore(&snap, check).expect("restores");
    assert_eq!(restored.withdrawn_htlcs(), p.a().withdrawn_htlcs());
    // Quiescent: A pays again and resets.
    p.pay(A, 1_000);
    p.reset(B);
    assert!(events(&p, A).contains(&Event::HtlcFailIrrevocable { id }));
    p.assert_views_agree();
}

/// Version-4 snapshots (before the two records) are still read; a version-5 snapshot without
/// either record is the version-4 encoding with the new version byte.
#[test]
fn version_4_snapshots_are_still_read() {
    let mut p = open();
    p.pay(A, 20_000);
    p.add_htlc(A, 3_000, PaymentPreimage([5; 32]), 300);
    let v5 = p.a().snapshot();
    assert_eq!(v5[1], 5);
    let mut v4 = v5.clone();
    v4[1] = 4;
    let check = RestoreCheck { channel_id: p.a().channel_id(), min_update_id: 0 };
    let restored = Channel::restore(&v4, check).expect("a version-4 snapshot restores");
    assert_eq!(restored.snapshot(), v5);
    // A version-5 record in a version-4 snapshot is refused (an even record it cannot hold).
    let fx = p.parties[0].ch.close(&p.parties[0].signer);
    assert!(fx.is_err(), "HTLC pending: no close");
    let mut q = open();
    let fx = q.parties[0].ch.close(&q.parties[0].signer).expect("close");
    q.absorb(A, fx);
    let released = q.a().snapshot();
    let mut old = released.clone();
    old[1] = 4;
    let check = RestoreCheck { channel_id: q.a().channel_id(), min_update_id: 0 };
    assert!(Channel::restore(&released, check).is_ok());
    assert!(Channel::restore(&old, check).is_err());
}

/// The hostile side of the HTLC withdrawal: B did receive the payment carrying the HTLC, hides it
/// with a `Reestablish` from an older copy of its state, and once A withdrew the HTLC, publishes
/// the tree and that payment. A kept the withdrawn HTLC: it claims the HTLC output back after its
/// expiry, reports the failure final only then, and ends with exactly what it is owed.
#[test]
fn a_payee_hiding_the_withdrawn_payment_gains_nothing_on_chain() {
    use common::duplex::{CLAIM_FEE, PAYMENT_FEE, REFUND_FEE};
    use paychan::duplex::Phase;
    let mut p = open();
    p.pay(A, 20_000);
    let stale = p.b().snapshot();
    let tip = p.tip();
    let (earliest, _) = p.a().htlc_expiry_window(tip);
    let pa = &mut p.parties[0];
    let (id, fx) = pa
        .ch
        .add_htlc(Amount::from_sat(1_500), PaymentPreimage([6; 32]).hash(), earliest.unwrap(), &pa.signer, tip)
        .expect("add");
    p.absorb(A, fx);
    assert_eq!(deliver_one(&mut p), None, "B takes the payment carrying the HTLC");
    p.queue.clear(); // its acknowledgement is lost
    assert_eq!(p.b().leaf_state(A).htlcs.len(), 1);
    p.mine();

    // B shows A a Reestablish from before that payment.
    hide_behind(&mut p, &stale);
    assert!(events(&p, A).contains(&Event::HtlcFailed { id }));
    assert_eq!(p.a().withdrawn_htlcs().len(), 1);

    // Expected payouts if B publishes the payment with the HTLC: B its 20,000 (less the payment
    // fee) and its own channel refunded; A its change and the HTLC back (less the claim fee).
    let value_a = p.a().leaf_value(A).to_sat();
    let value_b = p.a().leaf_value(B).to_sat();
    let expected_a = value_a - 20_000 - 1_500 + (1_500 - CLAIM_FEE);
    let expected_b = 20_000 - PAYMENT_FEE + value_b - REFUND_FEE;

    let fx = p.parties[1].ch.force_close(&p.parties[1].signer);
    p.absorb(B, fx);
    for _ in 0..400 {
        p.mine();
        let done = p.chain.mempool().is_empty()
            && p.parties.iter().all(|x| x.pending.is_empty() && x.ch.next_deadline().is_none());
        if p.a().phase() == Phase::Closed && p.b().phase() == Phase::Closed && done {
            break;
        }
    }
    assert!(events(&p, A).iter().any(|e| matches!(e, Event::HtlcClaimBroadcast { id: i, .. } if *i == id)));
    assert!(!events(&p, A).iter().any(|e| matches!(e, Event::HtlcFulfilled { .. })));
    assert_eq!([p.paid_to(A), p.paid_to(B)], [expected_a, expected_b], "both whole to the satoshi");
}

/// The same wedge with a reset: A's reset proposal was accepted by B (whose answer was lost), A
/// cancelled it and proposed a close, which B refuses (it keeps the branch it signed until that
/// reset completes). On the next connection A takes the reset up again (B's `Reestablish` carries
/// its terms) and withdraws its close; B's answer, sent again, completes the reset, and the close
/// goes through.
#[test]
fn close_proposal_after_a_cancelled_reset_gives_way_to_it() {
    let mut p = open();
    let value = p.a().terms().channel_value().to_sat();
    p.pay(A, 30_000);
    let tip = p.tip();
    let fx = p.parties[0].ch.reset(&p.parties[0].signer, tip).expect("A proposes a reset");
    p.absorb(A, fx);
    assert_eq!(deliver_one(&mut p), None, "B accepts");
    p.queue.clear(); // its step (2) is lost
    let fx = p.parties[0].ch.cancel_reset().expect("A cancels");
    p.absorb(A, fx);
    let fx = p.parties[0].ch.close(&p.parties[0].signer).expect("A proposes a close");
    p.absorb(A, fx);
    assert_eq!(deliver_one(&mut p), Some(Misbehaviour::CloseNotAllowed), "B keeps the reset it signed");
    p.reconnect();
    p.run(); // before the fix: A refused B's step (2) sent again, on every connection
    assert!(events(&p, A).contains(&Event::CloseWithdrawn));
    assert!(events(&p, A).iter().any(|e| matches!(e, Event::ResetCompleted { .. })));
    assert!(!p.a().is_resetting() && !p.b().is_resetting());
    p.assert_views_agree();
    let fx = p.parties[0].ch.close(&p.parties[0].signer).expect("A proposes again");
    p.absorb(A, fx);
    p.run();
    let (to_a, to_b) = confirm_close(&mut p);
    assert_eq!((to_a, to_b), (value - 200_000 - 30_000, 200_000 + 30_000));
}

/// A hostile B completes the close A withdrew (from an older copy of its state, before its
/// payment) and publishes it after A paid on and offered an HTLC: A recognises its own close
/// confirming, gets exactly the floor it was told to count on, and its HTLC is returned to it.
#[test]
fn a_withdrawn_close_published_later_pays_the_floor() {
    let mut p = open();
    let value = p.a().terms().channel_value().to_sat();
    let mut b_old = p.b().clone();
    let fx = p.parties[0].ch.close(&p.parties[0].signer).expect("A proposes a close");
    p.absorb(A, fx);
    let (_, proposal) = p.queue.front().cloned().expect("the proposal");
    let fx = p.parties[1].ch.pay(Amount::from_sat(50_000), &p.parties[1].signer).expect("B pays");
    p.absorb(B, fx);
    assert_eq!(deliver_one(&mut p), Some(Misbehaviour::CloseNotAllowed));
    p.run();
    assert!(events(&p, A).contains(&Event::CloseWithdrawn));
    let floor = p.a().released_close_floor().expect("a released close").to_sat();
    assert_eq!(floor, value - 200_000);
    p.pay(A, 10_000);
    let id = p.add_htlc(A, 5_000, PaymentPreimage([4; 32]), 300);
    p.assert_views_agree();

    // B's older copy signs the withdrawn proposal and broadcasts the close.
    let tip = p.tip();
    let fx = b_old.handle_message(wire(&proposal), &p.parties[1].signer, tip).expect("the old copy signs");
    let close = fx.broadcast.first().cloned().expect("a signed close");
    p.mine_with(&[close]);
    for _ in 0..3 {
        p.mine();
    }
    assert!(events(&p, A).iter().any(|e| matches!(e, Event::Closed { .. })), "A sees its close confirmed");
    assert!(events(&p, A).contains(&Event::HtlcFailIrrevocable { id }));
    assert_eq!((p.paid_to(A), p.paid_to(B)), (floor, 200_000), "to the satoshi");
}

/// Found by the fuzzer once the withdrawal existed: B hides the payment carrying an HTLC with a
/// `Reestablish` from an older copy of its state, so A withdraws the HTLC; on the next honest
/// connection B shows the payment it holds, and A puts the HTLC back (B would refuse a payment
/// dropping it) instead of sending, forever, a payment B refuses — and does not mistake the
/// payment for a lost state of its own.
#[test]
fn a_withdrawn_htlc_the_payee_does_hold_is_put_back() {
    put_back(true);
}

/// The same without a payment on top: the withdrawal takes A back to B's older number, and the
/// payment B then shows is numbered above A's newest; A recognises it as the one it withdrew
/// from (its HTLCs are A's, or withdrawn) rather than a sign that A lost state.
#[test]
fn a_withdrawn_htlc_hidden_above_our_number_is_put_back() {
    put_back(false);
}

/// Fuzz find (`duplex_state-withdrawn-htlc-change-below-dust`): after withdrawing an HTLC, A paid
/// so much that the state with the HTLC put back left a change below the dust limit; when B's
/// next `Reestablish` showed it held the HTLC, A could not sign that state and refused B's
/// `Reestablish` on every connection (the channel wedged off chain). A payment now must stay
/// payable with the withdrawn HTLCs put back: that one is refused, state unchanged, and the
/// HTLC comes back live.
#[test]
fn a_payment_leaving_no_room_to_put_a_withdrawn_htlc_back_is_refused() {
    let mut p = open();
    let id = offer_then_hide(&mut p, PaymentPreimage([3; 32]), false);
    assert_eq!(p.a().withdrawn_htlcs().len(), 1);
    // All but 100 sat of what A may pay: payable alone, but with the HTLC back the change would
    // be 100 sat, below the dust limit.
    let before = p.a().snapshot();
    let amount = p.a().available() - Amount::from_sat(100);
    let pa = &mut p.parties[0];
    assert!(pa.ch.pay(amount, &pa.signer).is_err(), "no room left to put the HTLC back");
    assert_eq!(p.a().snapshot(), before, "state unchanged");
    p.reconnect();
    p.run();
    assert!(p.a().withdrawn_htlcs().is_empty(), "the HTLC is live again");
    assert_eq!(p.a().htlcs().iter().map(|(_, h)| h.id).collect::<Vec<_>>(), [id]);
    p.assert_views_agree();
}

/// A pays B 20,000 sat, then offers an HTLC of 4,000 sat (preimage `pre`) that B holds and
/// acknowledges (and, `on_top`, 1,000 sat more); B then shows A its `Reestablish` from before
/// the HTLC, so A withdraws it. Returns the HTLC's id.
fn offer_then_hide(p: &mut Pair, pre: PaymentPreimage, on_top: bool) -> u64 {
    p.pay(A, 20_000);
    let stale = p.b().snapshot();
    let tip = p.tip();
    let (earliest, _) = p.a().htlc_expiry_window(tip);
    let pa = &mut p.parties[0];
    let (id, fx) =
        pa.ch.add_htlc(Amount::from_sat(4_000), pre.hash(), earliest.unwrap(), &pa.signer, tip).expect("add");
    p.absorb(A, fx);
    p.run(); // B holds it and acknowledges it
    if on_top {
        p.pay(A, 1_000); // and a payment on top
    }
    p.mine();
    hide_behind(p, &stale);
    id
}

fn put_back(on_top: bool) {
    let mut p = open();
    let pre = PaymentPreimage([2; 32]);
    let id = offer_then_hide(&mut p, pre, on_top);
    assert!(events(&p, A).contains(&Event::HtlcFailed { id }));

    p.reconnect();
    p.run(); // before: B refused A's payment without the HTLC on every connection
    assert!(!p.a().has_lost_state(), "A recognises its own payment");
    assert!(p.a().withdrawn_htlcs().is_empty(), "the HTLC is live again");
    assert_eq!(p.a().htlcs().len(), 1);
    p.assert_views_agree();
    // B fulfils it: A folds it, both agree; a reset and a close follow, whole to the satoshi.
    p.fulfill(B, id, pre);
    assert!(events(&p, A).iter().any(|e| matches!(e, Event::HtlcFulfilled { id: i, .. } if *i == id)));
    p.assert_views_agree();
    p.reset(A);
    let value = p.a().terms().channel_value().to_sat();
    let fx = p.parties[0].ch.close(&p.parties[0].signer).expect("close");
    p.absorb(A, fx);
    p.run();
    let (to_a, to_b) = confirm_close(&mut p);
    let paid = if on_top { 25_000 } else { 24_000 };
    assert_eq!((to_a, to_b), (value - 200_000 - paid, 200_000 + paid));
}
