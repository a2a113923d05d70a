//! A hostile duplex peer that sends only well-formed, validly signed messages: the honest party
//! stays whole to the satoshi, on the transactions it can broadcast.

mod common;

use common::duplex::{signer, terms, Pair, CLAIM_FEE, PAYMENT_FEE, REFUND_FEE};
use paychan::core::{BlockHeight, PaymentPreimage};
use paychan::driving::RestoreCheck;
use paychan::duplex::{tree, Channel, CommandError, Event, Misbehaviour, Msg, PendingReset, Phase, Role};
use paychan::spilman::payment::{PaymentHtlc, PaymentState, UpdateError};
use paychan::spilman::Payment;

use bitcoin::{Amount, OutPoint};

const A: Role = Role::Initiator;
const B: Role = Role::Acceptor;

/// Takes the next message in flight and hands it to its recipient, who must take it.
fn deliver_next(p: &mut Pair) -> Msg {
    let (to, m) = p.queue.pop_front().expect("a message in flight");
    let tip = p.tip();
    let party = &mut p.parties[to.index()];
    let fx = party.ch.handle_message(m.clone(), &party.signer, tip).unwrap_or_else(|e| panic!("{to:?}: {e}"));
    p.absorb(to, fx);
    m
}

/// Issue item 11. The proposer receives the responder's step (2), withholds step (3), restores
/// its own older snapshot (its proposal still unanswered there), cancels, and sends a newer valid
/// proposal. Had the responder accepted it, it would have forgotten the branch it signed; the
/// proposer then publishes that branch (its changed node has the shorter lock, so it wins) and
/// refunds its whole leaf channel, HTLC included, although the responder revealed the HTLC's
/// preimage. The responder refuses the new proposal, keeps the branch, follows it on chain, and
/// ends with exactly its balance in that branch plus the HTLC, less the fees of what it broadcast.
#[test]
fn reproposal_after_step_two_does_not_strand_the_responder() {
    let mut p = Pair::open(terms(vec![3, 3, 3]));
    p.pay(A, 30_000);
    p.pay(B, 10_000);
    let preimage = PaymentPreimage([0x5e; 32]);
    let htlc_sats = 50_000;
    let id = p.add_htlc(A, htlc_sats, preimage, 300);
    let b_balance = p.b().balances().holder.to_sat();

    // (1) A proposes; it keeps a copy of its state with the proposal unanswered.
    let tip = p.tip();
    let fx = p.parties[0].ch.reset(&signer(A), tip).expect("A proposes");
    p.absorb(A, fx);
    let unanswered = p.a().snapshot();
    assert!(matches!(deliver_next(&mut p), Msg::ResetPropose(_)));
    // (2) B accepts; A takes it (A now holds the whole new branch) and withholds step (3).
    assert!(matches!(deliver_next(&mut p), Msg::ResetAccept(_)));
    assert!(matches!(p.queue.pop_front(), Some((B, Msg::ResetFinish(_)))));
    p.queue.clear();
    assert!(p.b().is_resetting(), "B waits for step (3)");
    let holds_new_branch = p.a().clone();
    assert_ne!(holds_new_branch.digits(), p.b().digits());

    // B reveals the HTLC's preimage (it may have claimed upstream already).
    let fx = p.parties[1].ch.fulfill_htlc(id, preimage, &signer(B)).expect("B fulfils");
    assert!(fx.send.iter().any(|m| matches!(m, Msg::Fulfill { .. })), "the preimage goes out");
    p.absorb(B, fx);
    p.queue.clear();

    // A restores its older snapshot, cancels the proposal and proposes again, validly signed.
    let mut a_old = Channel::restore(&unanswered, RestoreCheck::default()).expect("restores");
    let _ = a_old.cancel_reset().expect("cancel");
    let tip = p.tip();
    let fx = a_old.reset(&signer(A), tip).expect("A proposes again");
    let Some(Msg::ResetPropose(again)) = fx.send.into_iter().next() else { panic!("a proposal") };
    let before = p.b().snapshot();
    let answer = p.parties[1].ch.handle_message(Msg::ResetPropose(again), &signer(B), tip);
    let refused = match answer {
        Ok(fx) => {
            // (The unsafe behaviour: B signs the newer branch and forgets the one it signed.)
            p.absorb(B, fx);
            p.queue.clear();
            None
        }
        Err(e) => Some((e.kind, p.b().snapshot() == before)),
    };

    // A publishes the branch B signed in step (2), and settles its side of it.
    p.parties[0].ch = holds_new_branch.clone();
    let fx = p.parties[0].ch.force_close(&signer(A));
    p.absorb(A, fx);
    for _ in 0..80 {
        p.mine();
    }

    // What B got on chain, and what it could still take by hand: its own leaf channel of the
    // published leaf, if unspent, refunded (less the refund fee).
    let leaf = holds_new_branch.current_branch().expect("branch").pop().expect("leaf");
    let leaf_txid = leaf.compute_txid();
    assert!(p.chain.confirmation(&leaf_txid).is_some(), "the branch B signed in step (2) confirmed");
    let [_, b_vout] = tree::leaf_vouts(holds_new_branch.leaf_value(A), holds_new_branch.leaf_value(B));
    let by_hand = b_vout
        .map(|vout| OutPoint { txid: leaf_txid, vout })
        .filter(|o| p.chain.is_unspent(o))
        .and_then(|o| p.chain.utxo(&o))
        .map_or(0, |out| out.value.to_sat() - REFUND_FEE);
    let received = p.paid_to(B) + by_hand;
    // Owed: B's balance in the newest branch both signed (the netting moves no value), plus the
    // HTLC whose preimage it revealed, less the fees of A's payment, the claim and its refund.
    let owed = b_balance + htlc_sats - PAYMENT_FEE - CLAIM_FEE - REFUND_FEE;
    assert_eq!(received, owed, "B short by {} sat", owed as i64 - received as i64);
    assert_eq!(by_hand, 0, "nothing left for B to do by hand");
    assert_eq!(p.b().phase(), Phase::Closed);
    assert!(!p.parties[1].events.iter().any(|e| matches!(e, Event::StaleBranchConfirmed { .. })));
    assert!(p.parties[1].events.iter().any(|e| matches!(e, Event::HtlcClaimBroadcast { id: i, .. } if *i == id)));
    assert_eq!(refused, Some((Misbehaviour::NotQuiescent, true)), "refused, B's state byte-identical");
}

/// The refused re-proposal does not block the honest way on: the proposer's step (3), sent
/// again after a reconnection, completes the reset B signed, and B takes proposals again.
#[test]
fn refused_reproposal_leaves_the_pending_reset_completable() {
    let mut p = Pair::open(terms(vec![3, 3, 3]));
    p.pay(A, 30_000);
    let tip = p.tip();
    let fx = p.parties[0].ch.reset(&signer(A), tip).expect("A proposes");
    p.absorb(A, fx);
    let unanswered = p.a().snapshot();
    deliver_next(&mut p);
    deliver_next(&mut p);
    p.queue.clear();
    let mut a_old = Channel::restore(&unanswered, RestoreCheck::default()).expect("restores");
    let _ = a_old.cancel_reset().expect("cancel");
    let fx = a_old.reset(&signer(A), tip).expect("A proposes again");
    let Some(Msg::ResetPropose(again)) = fx.send.into_iter().next() else { panic!("a proposal") };
    let before = p.b().snapshot();
    let e = p.parties[1].ch.handle_message(Msg::ResetPropose(again), &signer(B), tip).expect_err("refused");
    assert_eq!(e.kind, Misbehaviour::NotQuiescent);
    assert_eq!(p.b().snapshot(), before);
    // B, restored from its snapshot, still waits for the same step (3).
    let restored = Channel::restore(&before, RestoreCheck::default()).expect("restores");
    assert_eq!(restored.snapshot(), before);
    assert!(restored.is_resetting());
    // Payments and a cooperative close wait for it too.
    let mut b = p.b().clone();
    assert_eq!(b.pay(Amount::from_sat(1_000), &signer(B)).unwrap_err(), CommandError::ResetInProgress);
    assert_eq!(b.close(&signer(B)).unwrap_err(), CommandError::ResetInProgress);
    // A reconnects with the state that holds the branch: step (3) again, and the reset completes.
    p.reconnect();
    p.run();
    assert!(!p.b().is_resetting());
    assert_eq!(p.a().digits(), p.b().digits());
    p.reset(B);
    p.pay(A, 1_000);
}

/// A proposer that cancels while the responder's answer is on its way no longer holds the
/// proposal, and the late answer finds nothing to finish. The responder keeps the branch it
/// signed; on the next connection its `Reestablish` carries the proposal's terms, the proposer
/// takes the same proposal up again, and the answer sent again completes it.
#[test]
fn a_cancel_crossing_the_answer_is_resumed_on_reconnection() {
    let mut p = Pair::open(terms(vec![3, 3, 3]));
    p.pay(A, 30_000);
    p.pay(B, 8_000);
    let tip = p.tip();
    let fx = p.parties[0].ch.reset(&signer(A), tip).expect("A proposes");
    p.absorb(A, fx);
    let Msg::ResetPropose(first) = deliver_next(&mut p) else { panic!("a proposal") };
    let fx = p.parties[0].ch.cancel_reset().expect("cancel");
    p.absorb(A, fx);
    let Some((A, late)) = p.queue.pop_front() else { panic!("B's answer in flight") };
    let before = p.a().snapshot();
    let e = p.parties[0].ch.handle_message(late, &signer(A), tip).expect_err("nothing to finish");
    assert_eq!(e.kind, Misbehaviour::UnexpectedMessage);
    assert_eq!(p.a().snapshot(), before);
    assert!(p.b().is_resetting() && !p.a().is_resetting());
    // A claimed acceptance at a counter value A never proposed is not taken up: a hostile
    // counterparty cannot make A jump its counter (and burn its resets) this way.
    let left = p.a().resets_left();
    let Msg::Reestablish(mut forged) = p.b().reestablish() else { panic!("reestablish") };
    forged.pending = Some(PendingReset::Accepted(vec![2, 2, 2]));
    let mut a = p.a().clone();
    let _ = a.handle_message(Msg::Reestablish(forged), &signer(A), tip).expect("taken");
    assert!(!a.is_resetting());
    assert_eq!(a.resets_left(), left);
    p.reconnect();
    p.run();
    assert!(!p.a().is_resetting() && !p.b().is_resetting());
    assert_eq!(p.a().digits(), &first.digits[..]);
    assert_eq!(p.b().digits(), &first.digits[..]);
    p.assert_views_agree();
    p.pay(B, 1_000);
    p.reset(B);
    p.assert_views_agree();
}

/// A payment in `payer`'s leaf channel adding `ids` as HTLCs to its newest state, numbered
/// `number`, signed with the payer's key exactly as its channel signs (a hostile payer may pick
/// any id).
fn hostile_payment(p: &Pair, payer: Role, number: u64, state: &PaymentState, ids: &[u64]) -> Payment {
    let ch = p.ch(payer);
    let (earliest, _) = p.ch(!payer).htlc_expiry_window(p.tip());
    let expiry = BlockHeight(earliest.expect("window").0 + 10);
    let mut state = state.clone();
    for &id in ids {
        let hash = PaymentPreimage([id as u8; 32]).hash();
        state.htlcs.push(PaymentHtlc { id, amount: Amount::from_sat(5_000), payment_hash: hash, expiry });
    }
    let t = ch.template(payer).expect("leaf channel");
    let signature = t.sign(&signer(payer), &t.build(&state).expect("buildable")).expect("signs");
    Payment { number, to_payee: state.to_payee, htlcs: state.htlcs, signature }
}

fn refused_unchanged(p: &mut Pair, to: Role, m: Msg, want: Misbehaviour) {
    let before = p.ch(to).snapshot();
    let tip = p.tip();
    let party = &mut p.parties[to.index()];
    let e = party.ch.handle_message(m, &party.signer, tip).expect_err("refused");
    assert_eq!(e.kind, want);
    assert_eq!(p.ch(to).snapshot(), before, "a refused message changed the channel");
}

/// Issue item 12, duplex leaf channels. An HTLC at id `u64::MAX` left `next_htlc_id` saturated
/// at `u64::MAX`, so a later HTLC could carry the same id again (preimages, failures and upstream
/// links are keyed by id). Refused, as is a payment numbered `u64::MAX`; the largest id with a
/// successor is taken, and then no new HTLC can follow it.
#[test]
fn htlc_id_at_u64_max_is_refused_so_ids_are_never_reused() {
    let mut p = Pair::open(terms(vec![3, 3, 3]));
    p.pay(A, 30_000);
    let Msg::Reestablish(r) = p.a().reestablish() else { panic!("reestablish") };
    let n = r.numbers[A.index()] + 1;
    let held = p.a().leaf_state(A).clone();
    let exhausted = Misbehaviour::Payment(UpdateError::Exhausted);
    let at_max = hostile_payment(&p, A, n, &held, &[u64::MAX]);
    refused_unchanged(&mut p, B, Msg::Payment(at_max), exhausted);
    let both = hostile_payment(&p, A, n, &held, &[7, u64::MAX]);
    refused_unchanged(&mut p, B, Msg::Payment(both), exhausted);
    // The largest id that has a successor is taken.
    let below = hostile_payment(&p, A, n, &held, &[u64::MAX - 1]);
    let tip = p.tip();
    let fx = p.parties[1].ch.handle_message(Msg::Payment(below.clone()), &signer(B), tip).expect("u64::MAX - 1");
    assert!(fx.events.iter().any(|e| matches!(e, Event::HtlcOffered(h) if h.id == u64::MAX - 1)));
    p.absorb(B, fx);
    p.queue.clear();
    // Nothing may follow it.
    let state = PaymentState { to_payee: below.to_payee, htlcs: below.htlcs.clone() };
    let after = hostile_payment(&p, A, n + 1, &state, &[u64::MAX]);
    refused_unchanged(&mut p, B, Msg::Payment(after), exhausted);
    // A payment numbered u64::MAX leaves no next number (a reset takes the next one).
    let more = PaymentState { to_payee: state.to_payee + Amount::from_sat(1_000), ..state.clone() };
    let last = hostile_payment(&p, A, u64::MAX, &more, &[]);
    refused_unchanged(&mut p, B, Msg::Payment(last), exhausted);
    let tip = p.tip();
    let mut b = p.b().clone();
    let taken = b.handle_message(Msg::Payment(hostile_payment(&p, A, u64::MAX - 1, &more, &[])), &signer(B), tip);
    assert!(taken.is_ok(), "u64::MAX - 1 is a valid number");
}
