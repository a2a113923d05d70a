//! Duplex channels end to end on a 27-state tree (d = 3, k = 3): payments both ways, HTLCs
//! fulfilled, failed and carried across resets, a reset at every level until the counter is
//! exhausted, snapshot restarts, a cooperative close; and unilateral closes from several states,
//! with every transaction mined through a simulated chain that checks scripts with Bitcoin Core's
//! interpreter and refuses anything before its BIP-0068/CLTV height.

mod common;

use bitcoin::Amount;
use common::duplex::{Pair, CLAIM_FEE, PAYMENT_FEE, REFUND_FEE};
use paychan::core::PaymentPreimage;
use paychan::driving::RestoreCheck;
use paychan::duplex::{tree, Channel, CloseKind, CommandError, Event, Phase, Role};

const A: Role = Role::Initiator;
const B: Role = Role::Acceptor;

fn radix() -> Vec<u32> {
    vec![3, 3, 3]
}

fn has(p: &Pair, who: Role, f: impl Fn(&Event) -> bool) -> bool {
    p.parties[who.index()].events.iter().any(f)
}

fn count(p: &Pair, who: Role, f: impl Fn(&Event) -> bool) -> usize {
    p.parties[who.index()].events.iter().filter(|e| f(e)).count()
}

/// The levels the odometer advances at, in order, for this radix.
fn odometer_levels(p: &Pair) -> Vec<usize> {
    let params = p.a().params().clone();
    let mut d = tree::first(&params);
    let mut out = Vec::new();
    while let Some((next, level)) = tree::successor(&params, &d) {
        out.push(level);
        d = next;
    }
    out
}

/// Replaces a party's channel by the one restored from its snapshot (a restart).
fn restart(p: &mut Pair, who: Role) {
    let ch = &p.parties[who.index()].ch;
    let bytes = ch.snapshot();
    let check = RestoreCheck { channel_id: ch.channel_id(), min_update_id: ch.update_id() };
    p.parties[who.index()].ch = Channel::restore(&bytes, check).expect("restore");
}

#[test]
fn lifecycle_27_states_payments_htlcs_resets_coop_close() {
    let mut p = Pair::open(common::duplex::terms(radix()));
    let value = p.a().terms().channel_value().to_sat();
    assert_eq!(value, 1_000_000, "the leaf carries the whole capacity: tree transactions pay no fee");
    assert_eq!(p.a().params().states(), 27);
    assert_eq!(p.a().resets_left(), 26);
    assert_eq!(p.a().balances().holder.to_sat(), value - 200_000);
    assert_eq!(p.b().balances().holder.to_sat(), 200_000);
    p.assert_views_agree();

    // Payments both ways.
    let (mut a_bal, mut b_bal) = (value - 200_000, 200_000u64);
    for i in 0..10u64 {
        p.pay(A, 1_000 + i);
        a_bal -= 1_000 + i;
        b_bal += 1_000 + i;
    }
    for _ in 0..5 {
        p.pay(B, 2_000);
        a_bal += 2_000;
        b_bal -= 2_000;
    }
    assert_eq!(p.a().balances().holder.to_sat(), a_bal);
    assert_eq!(p.b().balances().holder.to_sat(), b_bal);
    assert!(has(&p, B, |e| matches!(e, Event::PaymentReceived { .. })));
    assert!(has(&p, A, |e| matches!(e, Event::PaymentAcknowledged { .. })));
    p.assert_views_agree();

    // An HTLC A→B, fulfilled: B reveals the preimage, A folds it in with its next payment.
    let pre1 = PaymentPreimage([0x11; 32]);
    let h1 = p.add_htlc(A, 5_000, pre1, 100);
    assert!(has(&p, B, |e| matches!(e, Event::HtlcOffered(h) if h.id == h1)));
    assert_eq!(p.a().balances().offered.to_sat(), 5_000);
    p.fulfill(B, h1, pre1);
    assert!(has(&p, A, |e| matches!(e, Event::HtlcFulfilled { id, preimage, .. } if *id == h1 && *preimage == pre1)));
    assert!(p.a().leaf_state(A).htlcs.is_empty(), "folded");
    a_bal -= 5_000;
    b_bal += 5_000;
    assert_eq!(p.b().balances().holder.to_sat(), b_bal);

    // An HTLC B→A that A fails: dropped by the next reset, final for B only then.
    let pre2 = PaymentPreimage([0x22; 32]);
    let h2 = p.add_htlc(B, 3_000, pre2, 100);
    b_bal -= 3_000;
    p.fail(A, h2);
    assert!(has(&p, B, |e| matches!(e, Event::HtlcFailed { id } if *id == h2)));
    assert!(!has(&p, B, |e| matches!(e, Event::HtlcFailIrrevocable { .. })));

    // An HTLC A→B left pending: carried across resets, fulfilled later.
    let pre3 = PaymentPreimage([0x33; 32]);
    let h3 = p.add_htlc(A, 4_000, pre3, 400);
    a_bal -= 4_000;

    // The direction B→A is nearly dry now: B cannot pay more than its leaf channel holds.
    let avail = p.b().available().to_sat();
    let before = p.b().snapshot();
    let e = p.parties[1].ch.pay(Amount::from_sat(avail + 10_000), &p.parties[1].signer).unwrap_err();
    assert_eq!(e, CommandError::ResetNeeded, "B has received more than its own channel holds");
    assert_eq!(before, p.b().snapshot());

    let expected_levels = odometer_levels(&p);
    assert_eq!(expected_levels.len(), 26);
    let mut levels = Vec::new();
    let mut snapshot_len_no_htlc = None;
    let mut who = A;
    for n in 0..26usize {
        let level = p.reset(who);
        levels.push(level);
        p.assert_views_agree();
        assert_eq!(p.a().resets_left(), 25 - n as u64);
        assert_eq!(p.a().balances().holder.to_sat(), a_bal, "a reset moves no value (reset {n})");
        if n == 0 {
            // The failed HTLC is gone; the pending one is carried with the smallest payable amount.
            assert!(has(&p, B, |e| matches!(e, Event::HtlcFailIrrevocable { id } if *id == h2)));
            assert!(has(&p, A, |e| matches!(e, Event::HtlcRemoved { id } if *id == h2)));
            b_bal += 3_000;
            assert_eq!(p.b().balances().holder.to_sat(), b_bal);
            assert_eq!(p.a().leaf_state(A).htlcs.len(), 1);
            assert_eq!(p.a().leaf_state(A).to_payee.to_sat(), PAYMENT_FEE + 546);
            assert!(p.b().leaf_state(B).htlcs.is_empty());
            // B's own channel was re-funded: it can pay again.
            p.pay(B, 10_000);
            a_bal += 10_000;
            b_bal -= 10_000;
        }
        if n == 4 {
            // The carried HTLC is fulfilled in the fifth leaf.
            assert!(p.a().leaf_state(A).htlcs.iter().any(|h| h.id == h3));
            p.fulfill(B, h3, pre3);
            assert!(p.a().leaf_state(A).htlcs.is_empty());
            b_bal += 4_000;
            assert_eq!(p.b().balances().holder.to_sat(), b_bal);
        }
        if n == 12 {
            restart(&mut p, A);
            restart(&mut p, B);
        }
        // Payments both ways in every leaf.
        p.pay(A, 1_000 + n as u64);
        p.pay(B, 900);
        a_bal = a_bal - (1_000 + n as u64) + 900;
        b_bal = b_bal + (1_000 + n as u64) - 900;
        if n == 5 {
            snapshot_len_no_htlc = Some(p.a().snapshot().len());
        }
        who = !who;
    }
    assert_eq!(levels, expected_levels, "one reset per odometer step: levels 3, 3, 2, …, 1, …");
    assert!(levels.contains(&1) && levels.contains(&2) && levels.contains(&3));
    assert_eq!(p.a().digits(), &[2, 2, 2]);
    assert_eq!(p.a().snapshot().len(), snapshot_len_no_htlc.unwrap(), "state size does not grow with resets");

    // Exhaustion was announced ahead of time, then reached.
    assert!(has(&p, A, |e| matches!(e, Event::ResetsRunningLow { left: 3 })));
    assert!(has(&p, B, |e| matches!(e, Event::ResetsRunningLow { left: 1 })));
    assert_eq!(count(&p, A, |e| matches!(e, Event::ResetsExhausted)), 1);
    let tip = p.tip();
    let before = p.a().snapshot();
    assert_eq!(p.parties[0].ch.reset(&p.parties[0].signer, tip).unwrap_err(), CommandError::Exhausted);
    assert_eq!(before, p.a().snapshot());
    // Payments go on in the last leaf.
    p.pay(A, 2_000);
    a_bal -= 2_000;
    b_bal += 2_000;
    assert_eq!(p.b().balances().holder.to_sat(), b_bal);

    // The picture.
    let dot = p.a().to_dot();
    for needle in
        ["digraph duplex", "F funding", "K kickoff", "N_1 node", "N_3 leaf", "A→B channel", "refund to B", "payment #"]
    {
        assert!(dot.contains(needle), "DOT lacks {needle}:\n{dot}");
    }

    // Cooperative close: one transaction from the funding output paying both balances exactly.
    let fx = p.parties[0].ch.close(&p.parties[0].signer).expect("close");
    p.absorb(A, fx);
    p.run();
    assert_eq!(p.a().phase(), Phase::CoopClosing);
    let mined = p.mine();
    assert_eq!(mined.len(), 1);
    assert_eq!(mined[0].input[0].previous_output, p.a().funding_outpoint().unwrap());
    assert_eq!(p.paid_to(A), a_bal);
    assert_eq!(p.paid_to(B), b_bal);
    assert_eq!(a_bal + b_bal, value);
    for who in [A, B] {
        assert_eq!(p.ch(who).phase(), Phase::Closed);
        assert!(has(&p, who, |e| matches!(e, Event::Closed { kind: CloseKind::Cooperative })));
    }
}

/// Expected on-chain payouts after a unilateral close from the leaf states before it: each payee
/// publishes its payment (or the payer refunds an untouched channel); HTLC outputs go to whoever
/// can claim them (`fulfilled_by_receiver` lists `(offerer, id)` whose receiver knows the
/// preimage; the others time out to their offerer).
fn expected_payouts(p: &Pair, fulfilled_by_receiver: &[(Role, u64)]) -> [u64; 2] {
    let mut out = [0u64; 2];
    for payer in [A, B] {
        let value = p.a().leaf_value(payer).to_sat();
        let state = p.a().leaf_state(payer);
        if value == 0 {
            continue;
        }
        if state.to_payee == Amount::ZERO && state.htlcs.is_empty() {
            out[payer.index()] += value - REFUND_FEE;
            continue;
        }
        let htlcs: u64 = state.htlcs.iter().map(|h| h.amount.to_sat()).sum();
        out[(!payer).index()] += state.to_payee.to_sat() - PAYMENT_FEE;
        out[payer.index()] += value - state.to_payee.to_sat() - htlcs;
        for h in &state.htlcs {
            let to = if fulfilled_by_receiver.contains(&(payer, h.id)) { !payer } else { payer };
            out[to.index()] += h.amount.to_sat() - CLAIM_FEE;
        }
    }
    out
}

fn unilateral_close_from(resets: usize, closer: Role, with_htlcs: bool) {
    let mut p = Pair::open(common::duplex::terms(radix()));
    p.pay(A, 30_000);
    p.pay(B, 20_000);
    let mut who = B;
    for n in 0..resets {
        p.reset(who);
        who = !who;
        p.pay(A, 1_000 + n as u64);
        if n % 3 == 0 {
            p.pay(B, 5_000);
        }
    }
    let mut fulfilled = Vec::new();
    if with_htlcs {
        // A leaf payment carries the payee's output, so a fresh leaf channel takes a payment of at
        // least `payment_fee + dust` before an HTLC.
        p.pay(B, 2_000);
        // A→B whose preimage B knows but whose Fulfill never reaches A; B→A that times out.
        let pre = PaymentPreimage([0x44; 32]);
        let id = p.add_htlc(A, 7_000, pre, 120);
        let fx = p.parties[1].ch.fulfill_htlc(id, pre, &p.parties[1].signer).unwrap();
        p.absorb(B, fx);
        p.queue.clear();
        fulfilled.push((A, id));
        p.add_htlc(B, 6_000, PaymentPreimage([0x55; 32]), 60);
    }
    let expected = expected_payouts(&p, &fulfilled);
    let digits = p.a().digits().to_vec();
    let start = p.chain.height;
    let fx = p.parties[closer.index()].ch.force_close(&p.parties[closer.index()].signer);
    assert!(fx.broadcast.len() == 1, "the kickoff goes out at once");
    p.absorb(closer, fx);
    let d = p.a().params().depth();
    let mut leaf_height = None;
    for _ in 0..400 {
        p.mine();
        if leaf_height.is_none() {
            leaf_height = p.a().close_schedule().get(d).and_then(|s| s.confirmed);
        }
        let htlcs_done = p.chain.mempool().is_empty()
            && p.parties.iter().all(|x| x.pending.is_empty() && x.ch.next_deadline().is_none());
        if p.a().phase() == Phase::Closed && p.b().phase() == Phase::Closed && htlcs_done {
            break;
        }
    }
    for w in [A, B] {
        assert_eq!(p.ch(w).phase(), Phase::Closed, "{w:?} closed (resets {resets}, closer {closer:?})");
        assert!(has(&p, w, |e| matches!(e, Event::Closed { kind: CloseKind::Unilateral })));
    }
    // The leaf confirmed within the state's close delay: S + Σ (s_j + S) with S = 1.
    let leaf_height = leaf_height.expect("leaf confirmed").0;
    let delay = p.a().params().close_delay(&digits, 1).unwrap();
    assert!(leaf_height - start <= delay, "leaf at +{} > D_tree {delay}", leaf_height - start);
    assert!(delay <= p.a().params().max_close_delay(1));
    // Every node was broadcast exactly when its lock matured: at tip `valid_from - 1`, or when its
    // parent confirmed if its lock is 0 (nothing can be known earlier).
    let schedule = p.a().close_schedule();
    for party in &p.parties {
        for (tip, tx) in &party.broadcast_log {
            if let Some(s) = schedule.iter().find(|s| s.txid == tx.compute_txid() && s.level > 0) {
                let parent = schedule[s.level - 1].confirmed.unwrap().0;
                let mature = (s.valid_from.unwrap().0 - 1).max(parent);
                assert_eq!(*tip, mature, "level {} (lock {}) broadcast at {tip}, mature at {mature}", s.level, s.lock);
            }
        }
    }
    if [p.paid_to(A), p.paid_to(B)] != expected {
        eprintln!("A events: {:#?}", p.parties[0].events.iter().rev().take(12).collect::<Vec<_>>());
        eprintln!("B events: {:#?}", p.parties[1].events.iter().rev().take(12).collect::<Vec<_>>());
        eprintln!("height {}, B deadline {:?}", p.chain.height, p.b().next_deadline());
    }
    assert_eq!([p.paid_to(A), p.paid_to(B)], expected, "resets {resets}, closer {closer:?}, htlcs {with_htlcs}");
    if with_htlcs {
        assert!(has(&p, A, |e| matches!(e, Event::HtlcFulfilled { .. })), "A learns the preimage from B's claim");
        assert!(has(&p, B, |e| matches!(e, Event::HtlcFailIrrevocable { .. })), "B's HTLC timed out");
    }
}

#[test]
fn unilateral_close_from_several_states() {
    for (resets, closer, htlcs) in
        [(0, A, true), (0, B, false), (4, B, true), (13, A, false), (13, B, true), (26, A, true)]
    {
        unilateral_close_from(resets, closer, htlcs);
    }
}

#[test]
fn payer_refunds_when_the_payee_stays_silent() {
    let mut p = Pair::open(common::duplex::terms(radix()));
    p.pay(A, 50_000);
    p.reset(A);
    p.pay(A, 2_000);
    // B disappears; A closes. A publishes the tree and, T_r after the leaf, refunds its own
    // channel (B never publishes A's payment); B's channel is refunded by nobody but B.
    p.parties[1].offline = true;
    let fx = p.parties[0].ch.force_close(&p.parties[0].signer);
    p.absorb(A, fx);
    let value_a = p.a().leaf_value(A).to_sat();
    for _ in 0..100 {
        p.mine();
    }
    assert_eq!(p.paid_to(A), value_a - REFUND_FEE, "A refunds its whole channel");
    let refund_from = p.a().refund_valid_from().unwrap().0;
    let (tip, _) =
        p.parties[0].broadcast_log.iter().find(|(_, t)| t.input[0].sequence.0 == 6).expect("refund broadcast");
    assert_eq!(*tip, refund_from - 1, "refund broadcast exactly when valid");
}

#[test]
fn cooperative_close_from_the_deepest_confirmed_node() {
    let mut p = Pair::open(common::duplex::terms(radix()));
    p.pay(A, 30_000);
    p.pay(B, 5_000);
    let (a_bal, b_bal) = (p.a().balances().holder.to_sat(), p.b().balances().holder.to_sat());
    // A starts a unilateral close; the kickoff confirms; N_1 waits for its 8-block lock.
    let fx = p.parties[0].ch.force_close(&p.parties[0].signer);
    p.absorb(A, fx);
    p.mine();
    let kickoff = p.a().close_schedule()[0];
    assert!(kickoff.confirmed.is_some());
    assert_eq!(p.b().phase(), Phase::ForceClosing, "B saw the kickoff and joined");
    // Both agree to settle at once from the kickoff's output instead.
    let fx = p.parties[0].ch.close(&p.parties[0].signer).expect("close from K");
    p.absorb(A, fx);
    p.run();
    let mined = p.mine();
    assert_eq!(mined.len(), 1);
    assert_eq!(mined[0].input[0].previous_output, bitcoin::OutPoint { txid: kickoff.txid, vout: 0 });
    assert_eq!(p.paid_to(A), a_bal);
    assert_eq!(p.paid_to(B), b_bal);
    for _ in 0..20 {
        p.mine();
    }
    assert!(p.a().close_schedule()[1].confirmed.is_none(), "no node follows the cooperative close");
    for who in [A, B] {
        assert_eq!(p.ch(who).phase(), Phase::Closed);
        assert!(has(&p, who, |e| matches!(e, Event::Closed { kind: CloseKind::Cooperative })));
    }
}

/// The proposer of a reset holds the whole new branch before the responder gets the last
/// signature. If step (3) is lost, the responder follows whichever branch appears on chain; the
/// netting moved no value, and an HTLC carried into the new leaf stays enforceable through the
/// first payment signed in step (1).
fn lost_reset_finish(closer: Role) {
    let mut p = Pair::open(common::duplex::terms(radix()));
    p.pay(A, 30_000);
    p.pay(B, 5_000);
    let pre = PaymentPreimage([0x66; 32]);
    let id = p.add_htlc(A, 9_000, pre, 200);
    // Reset by A; B's step (2) reaches A, A's step (3) is lost.
    let tip = p.tip();
    let fx = p.parties[0].ch.reset(&p.parties[0].signer, tip).unwrap();
    p.absorb(A, fx);
    let (to, m) = p.queue.pop_front().unwrap();
    let fx = p.parties[to.index()].ch.handle_message(m, &p.parties[to.index()].signer, tip).unwrap();
    p.absorb(B, fx);
    let (_, m) = p.queue.pop_front().unwrap();
    let fx = p.parties[0].ch.handle_message(m, &p.parties[0].signer, tip).unwrap();
    p.absorb(A, fx);
    p.queue.clear();
    assert_ne!(p.a().digits(), p.b().digits());
    assert!(p.b().is_resetting());
    // B learns the preimage (its Fulfill is lost too).
    let fx = p.parties[1].ch.fulfill_htlc(id, pre, &p.parties[1].signer).unwrap();
    p.absorb(B, fx);
    p.queue.clear();
    // Expected: the new leaf; B publishes the first payment of A's new channel (the smallest
    // payable amount plus the carried HTLC), claims the HTLC; each refunds its own channel
    // otherwise.
    let value_a = p.a().leaf_value(A).to_sat();
    let value_b = p.a().leaf_value(B).to_sat();
    let base = p.a().leaf_state(A).clone();
    assert_eq!(base.htlcs.len(), 1);
    let q = base.to_payee.to_sat();
    let expected_a = value_a - q - 9_000;
    let expected_b = (q - PAYMENT_FEE) + (9_000 - CLAIM_FEE) + (value_b - REFUND_FEE);
    let fx = p.parties[closer.index()].ch.force_close(&p.parties[closer.index()].signer);
    p.absorb(closer, fx);
    for _ in 0..80 {
        p.mine();
    }
    let leaf = p.a().current_branch().unwrap()[3].compute_txid();
    assert!(p.chain.confirmation(&leaf).is_some(), "the new leaf confirmed (closer {closer:?})");
    assert!(!has(&p, B, |e| matches!(e, Event::StaleBranchConfirmed { .. })));
    assert_eq!(p.paid_to(A), expected_a, "closer {closer:?}");
    assert_eq!(p.paid_to(B), expected_b, "closer {closer:?}");
    assert!(has(&p, A, |e| matches!(e, Event::HtlcFulfilled { id: i, .. } if *i == id)));
}

#[test]
fn responder_follows_the_new_branch_when_the_last_signature_is_lost() {
    lost_reset_finish(A);
    lost_reset_finish(B);
}

/// docs/duplex.md §6: the receiver of an HTLC whose preimage it revealed, but that the offerer never
/// folded, goes on chain by itself at `expiry − E_in` and gets the HTLC claimed before the
/// offerer's timeout path opens; the offerer learns the preimage from the chain.
#[test]
fn receiver_goes_on_chain_in_time_for_an_unfolded_htlc() {
    let mut p = Pair::open(common::duplex::terms(radix()));
    p.pay(A, 30_000);
    let pre = PaymentPreimage([0x77; 32]);
    let min = p.a().terms().min_htlc_expiry_delta();
    let id = p.add_htlc(A, 8_000, pre, min);
    let expiry = p.chain.height + min;
    // B reveals the preimage; A never gets it (offline).
    let fx = p.parties[1].ch.fulfill_htlc(id, pre, &p.parties[1].signer).unwrap();
    p.absorb(B, fx);
    p.queue.clear();
    p.parties[0].offline = true;
    let e_in = p.b().params().htlc_receive_blocks(1);
    assert_eq!(p.b().next_deadline().map(|h| h.0), Some(expiry - e_in));
    let deadline = expiry - e_in;
    while p.chain.height < deadline - 1 {
        p.mine();
    }
    assert_eq!(p.b().phase(), Phase::Open);
    p.mine();
    assert!(has(&p, B, |e| matches!(
        e,
        Event::ForceClosing { reason: paychan::duplex::ForceCloseReason::HtlcPreimageDeadline }
    )));
    // A comes back online (it only watches the chain).
    p.parties[0].offline = false;
    let mut claim_height = None;
    for _ in 0..60 {
        let mined = p.mine();
        if let Some(tx) = mined.iter().find(|t| t.input[0].witness.iter().any(|w| w == pre.0)) {
            claim_height = Some(p.chain.height);
            let _ = tx;
        }
    }
    let claim_height = claim_height.expect("B claimed the HTLC with its preimage");
    assert!(claim_height <= expiry, "claimed at {claim_height}, before the timeout path opens at {}", expiry + 1);
    assert!(has(&p, A, |e| matches!(e, Event::HtlcFulfilled { id: i, .. } if *i == id)));
}
