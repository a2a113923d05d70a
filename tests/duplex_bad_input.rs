//! Hostile input to a duplex channel: every refused message, command, encoding or snapshot gets a
//! typed error, and the refusing side's state is byte-identical before and after (its snapshot and
//! its full `Debug` rendering).

mod common;

use bitcoin::{Amount, ScriptBuf, Transaction};
use common::duplex::{signer, Pair};
use paychan::core::encode::DecodeError;
use paychan::core::{BlockHeight, PaymentPreimage};
use paychan::driving::{ChainTip, ChannelId, RestoreCheck, RestoreError};
use paychan::duplex::{
    Channel, CloseProposal, CommandError, HtlcRemoval, Misbehaviour, Msg, Removal, ResetAccept, ResetFinish,
    ResetPropose, Role, TermsError,
};
use paychan::spilman::payment::{PaymentError, PaymentHtlc, UpdateError};
use paychan::spilman::Payment;

const A: Role = Role::Initiator;
const B: Role = Role::Acceptor;

fn state(ch: &Channel) -> (Vec<u8>, String) {
    (ch.snapshot(), format!("{ch:?}"))
}

/// Delivers `msg` to `to`, expecting a refusal of kind `kind` and no change at all.
fn refuses(p: &mut Pair, to: Role, msg: Msg, kind: Misbehaviour) {
    let tip = p.tip();
    let party = &mut p.parties[to.index()];
    let before = state(&party.ch);
    let err = party.ch.handle_message(msg.clone(), &party.signer, tip).expect_err("refused");
    assert_eq!(err.kind, kind, "{to:?} refusing {msg:?}");
    assert_eq!(state(&party.ch), before, "state unchanged after refusing {msg:?}");
}

/// Runs a local command expecting `error` and no change.
fn command_fails<T: std::fmt::Debug>(
    p: &mut Pair,
    who: Role,
    error: CommandError,
    f: impl FnOnce(&mut Channel, &paychan::core::sign::InMemorySigner) -> Result<T, CommandError>,
) {
    let party = &mut p.parties[who.index()];
    let before = state(&party.ch);
    let got = f(&mut party.ch, &party.signer).expect_err("command refused");
    assert_eq!(got, error);
    assert_eq!(state(&party.ch), before, "state unchanged after a refused command");
}

fn open() -> Pair {
    let mut p = Pair::open(common::duplex::terms(vec![3, 3, 3]));
    p.pay(A, 20_000);
    p.pay(B, 5_000);
    p
}

/// `from` starts a reset; returns its proposal (not delivered).
fn propose(p: &mut Pair, from: Role) -> ResetPropose {
    let tip = p.tip();
    let party = &mut p.parties[from.index()];
    let fx = party.ch.reset(&party.signer, tip).expect("reset");
    assert!(fx.update.is_some());
    match fx.send.into_iter().next() {
        Some(Msg::ResetPropose(m)) => m,
        other => panic!("expected a proposal, got {other:?}"),
    }
}

/// Delivers a proposal to the responder; returns its accept (not delivered).
fn accept(p: &mut Pair, to: Role, m: ResetPropose) -> ResetAccept {
    let tip = p.tip();
    let party = &mut p.parties[to.index()];
    let fx = party.ch.handle_message(Msg::ResetPropose(m), &party.signer, tip).expect("accepted");
    match fx.send.into_iter().next() {
        Some(Msg::ResetAccept(a)) => a,
        other => panic!("expected an accept, got {other:?}"),
    }
}

fn finish(p: &mut Pair, to: Role, a: ResetAccept) -> ResetFinish {
    let tip = p.tip();
    let party = &mut p.parties[to.index()];
    let fx = party.ch.handle_message(Msg::ResetAccept(a), &party.signer, tip).expect("finished");
    match fx.send.into_iter().next() {
        Some(Msg::ResetFinish(f)) => f,
        other => panic!("expected a finish, got {other:?}"),
    }
}

#[test]
fn reset_with_wrong_balances_or_numbers() {
    let mut p = open();
    let m = propose(&mut p, A);
    for (da, db) in [(1_000i64, -1_000i64), (-1, 1), (1, 0), (0, -1)] {
        let mut bad = m.clone();
        bad.values[0] = Amount::from_sat((bad.values[0].to_sat() as i64 + da) as u64);
        bad.values[1] = Amount::from_sat((bad.values[1].to_sat() as i64 + db) as u64);
        refuses(&mut p, B, Msg::ResetPropose(bad), Misbehaviour::WrongBalances);
    }
    let mut bad = m.clone();
    bad.numbers[0] -= 1;
    refuses(&mut p, B, Msg::ResetPropose(bad), Misbehaviour::NotQuiescent);
    // The genuine proposal still goes through.
    let acc = accept(&mut p, B, m);
    let fin = finish(&mut p, A, acc);
    let tip = p.tip();
    let party = &mut p.parties[1].ch;
    let _ = party.handle_message(Msg::ResetFinish(fin), &signer(B), tip).expect("finish accepted");
    assert_eq!(p.a().digits(), p.b().digits());
}

#[test]
fn reset_dropping_or_folding_htlcs_unfairly() {
    let mut p = open();
    let pre = PaymentPreimage([7; 32]);
    let id = p.add_htlc(A, 4_000, pre, 100);
    // A proposes; a doctored proposal drops the HTLC offered to B (B neither failed it nor is it
    // expired) or folds it without the preimage being known to A.
    let m = propose(&mut p, A);
    assert!(m.removed.is_empty());
    let mut bad = m.clone();
    bad.removed.push(HtlcRemoval { offerer: A, id, how: Removal::Dropped });
    refuses(&mut p, B, Msg::ResetPropose(bad), Misbehaviour::HtlcRemovedUnfairly);
    let mut bad = m.clone();
    bad.removed.push(HtlcRemoval { offerer: A, id: 99, how: Removal::Folded });
    refuses(&mut p, B, Msg::ResetPropose(bad), Misbehaviour::UnknownHtlc);
    // B proposes folding A's HTLC without having revealed its preimage: A refuses.
    let cancel = p.parties[0].ch.cancel_reset().expect("cancel");
    assert!(cancel.update.is_some());
    let mut m = propose(&mut p, B);
    m.removed.push(HtlcRemoval { offerer: A, id, how: Removal::Folded });
    refuses(&mut p, A, Msg::ResetPropose(m), Misbehaviour::HtlcRemovedUnfairly);
}

#[test]
fn signature_on_the_wrong_node() {
    let mut p = open();
    // Advance to a state whose next reset changes level 2 (two nodes re-signed).
    p.reset(A);
    p.reset(B);
    let m = propose(&mut p, A);
    assert_eq!(m.node_sigs.len(), 1, "level-2 reset: A signs N_3' first");
    // The proposer's signature on the leaf swapped for one on another transaction.
    let mut bad = m.clone();
    let old = p.parties[0].ch.signed_branch(&p.parties[0].signer).unwrap();
    // The old leaf's witness holds two signatures on the *old* leaf.
    bad.node_sigs[0] = bitcoin::ecdsa::Signature::from_slice(old[3].input[0].witness.nth(1).unwrap()).unwrap();
    refuses(&mut p, B, Msg::ResetPropose(bad), Misbehaviour::NodeSignature { level: 3 });
    let mut bad = m.clone();
    bad.node_sigs.push(m.node_sigs[0]);
    refuses(&mut p, B, Msg::ResetPropose(bad), Misbehaviour::SignatureCount);
    let acc = accept(&mut p, B, m.clone());
    assert_eq!(acc.node_sigs.len(), 2, "B signs N_3' then N_2'");
    // Swapped: the signature on N_2' presented as N_3''s.
    let mut bad = acc.clone();
    bad.node_sigs.swap(0, 1);
    refuses(&mut p, A, Msg::ResetAccept(bad), Misbehaviour::NodeSignature { level: 3 });
    let mut bad = acc.clone();
    bad.node_sigs.truncate(1);
    refuses(&mut p, A, Msg::ResetAccept(bad), Misbehaviour::SignatureCount);
    let fin = finish(&mut p, A, acc);
    // A's signature on N_3' presented as its signature on N_2'.
    refuses(
        &mut p,
        B,
        Msg::ResetFinish(ResetFinish { node_sig: m.node_sigs[0] }),
        Misbehaviour::NodeSignature { level: 2 },
    );
    let tip = p.tip();
    let _ = p.parties[1].ch.handle_message(Msg::ResetFinish(fin), &signer(B), tip).expect("finish");
}

#[test]
fn funding_signatures_on_the_wrong_nodes() {
    // Re-run the setup by hand to tamper with FundingCreated.
    let tip = ChainTip::at(common::duplex::START);
    let (sa, sb) = (signer(A), signer(B));
    let terms = common::duplex::terms(vec![3, 3, 3]);
    let (mut a, fx) = Channel::open(terms, common::duplex::payout(A), &sa, tip).unwrap();
    let Some(Msg::Open(open)) = fx.send.into_iter().next() else { panic!() };
    let (mut b, fx) = Channel::accept(open, common::duplex::payout(B), &sb, tip).unwrap();
    let Some(accept) = fx.send.into_iter().next() else { panic!() };
    let _ = a.handle_message(accept, &sa, tip).unwrap();
    let funding = Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn::default()],
        output: vec![a.funding_output().unwrap()],
    };
    // Bad funding transactions are refused by the command.
    let before = state(&a);
    let mut no_output = funding.clone();
    no_output.output[0].value = Amount::from_sat(1);
    assert_eq!(a.fund(&no_output, &sa).unwrap_err(), CommandError::NoFundingOutput);
    let mut legacy = funding.clone();
    legacy.input[0].script_sig = ScriptBuf::from_bytes(vec![0x51]);
    assert_eq!(a.fund(&legacy, &sa).unwrap_err(), CommandError::MalleableFunding);
    assert_eq!(state(&a), before);
    let fx = a.fund(&funding, &sa).unwrap();
    let Some(Msg::FundingCreated(fc)) = fx.send.into_iter().next() else { panic!() };
    let before = state(&b);
    let mut bad = fc.clone();
    bad.node_sigs.swap(0, 2);
    assert_eq!(
        b.handle_message(Msg::FundingCreated(bad), &sb, tip).unwrap_err().kind,
        Misbehaviour::NodeSignature { level: 3 }
    );
    let mut bad = fc.clone();
    bad.kickoff_sig = fc.node_sigs[2];
    assert_eq!(
        b.handle_message(Msg::FundingCreated(bad), &sb, tip).unwrap_err().kind,
        Misbehaviour::NodeSignature { level: 0 }
    );
    let mut bad = fc.clone();
    bad.node_sigs.pop();
    assert_eq!(b.handle_message(Msg::FundingCreated(bad), &sb, tip).unwrap_err().kind, Misbehaviour::SignatureCount);
    assert_eq!(state(&b), before);
    let fx = b.handle_message(Msg::FundingCreated(fc), &sb, tip).unwrap();
    let Some(Msg::FundingSigned(fs)) = fx.send.into_iter().next() else { panic!() };
    let before = state(&a);
    let mut bad = fs.clone();
    bad.node_sigs.swap(1, 2);
    assert_eq!(
        a.handle_message(Msg::FundingSigned(bad), &sa, tip).unwrap_err().kind,
        Misbehaviour::NodeSignature { level: 2 }
    );
    assert_eq!(state(&a), before);
    let _ = a.handle_message(Msg::FundingSigned(fs), &sa, tip).unwrap();
}

#[test]
fn reset_proposal_reusing_a_lock() {
    let mut p = open();
    p.reset(A);
    let m = propose(&mut p, B);
    let current = p.a().digits().to_vec();
    // Same digits as the current branch: the new leaf would have the current leaf's lock.
    let mut bad = m.clone();
    bad.digits = current.clone();
    refuses(&mut p, A, Msg::ResetPropose(bad), Misbehaviour::LockReused);
    // An older counter value.
    let mut bad = m.clone();
    bad.digits = vec![0, 0, 0];
    refuses(&mut p, A, Msg::ResetPropose(bad), Misbehaviour::LockReused);
    // Digits that do not fit the tree.
    for digits in [vec![0, 0, 3], vec![0, 1], vec![0, 0, 1, 0]] {
        let mut bad = m.clone();
        bad.digits = digits;
        refuses(&mut p, A, Msg::ResetPropose(bad), Misbehaviour::BadDigits);
    }
    // The genuine proposal completes; replaying it afterwards is refused.
    let acc = accept(&mut p, A, m.clone());
    let fin = finish(&mut p, B, acc);
    let tip = p.tip();
    let _ = p.parties[0].ch.handle_message(Msg::ResetFinish(fin), &signer(A), tip).unwrap();
    refuses(&mut p, A, Msg::ResetPropose(m), Misbehaviour::NotQuiescent);
    // With the numbers fixed up it is still a reused lock.
    let mut replay2 = propose(&mut p, B);
    replay2.digits = p.a().digits().to_vec();
    refuses(&mut p, A, Msg::ResetPropose(replay2), Misbehaviour::LockReused);
}

#[test]
fn out_of_order_reset_messages() {
    let mut p = open();
    let m = propose(&mut p, A);
    // Nothing pending at B: an accept or a finish is out of order.
    let acc_like = ResetAccept { node_sigs: m.node_sigs.clone(), base_sig: None };
    refuses(&mut p, B, Msg::ResetAccept(acc_like), Misbehaviour::UnexpectedMessage);
    let fake_finish = ResetFinish {
        node_sig: p.parties[0].ch.signed_branch(&p.parties[0].signer).unwrap()[1].input[0]
            .witness
            .nth(1)
            .map(|s| bitcoin::ecdsa::Signature::from_slice(s).unwrap())
            .unwrap(),
    };
    refuses(&mut p, B, Msg::ResetFinish(fake_finish.clone()), Misbehaviour::UnexpectedMessage);
    // A is waiting for an accept: a finish is out of order.
    refuses(&mut p, A, Msg::ResetFinish(fake_finish.clone()), Misbehaviour::UnexpectedMessage);
    let acc = accept(&mut p, B, m.clone());
    // B is waiting for the finish: another accept, or a payment, is refused.
    refuses(&mut p, B, Msg::ResetAccept(acc.clone()), Misbehaviour::UnexpectedMessage);
    let pay =
        Payment { number: 99, to_payee: Amount::from_sat(30_000), htlcs: vec![], signature: fake_finish.node_sig };
    refuses(&mut p, B, Msg::Payment(pay), Misbehaviour::NotQuiescent);
    // B cannot pay or reset meanwhile.
    command_fails(&mut p, B, CommandError::ResetInProgress, |c, s| c.pay(Amount::from_sat(1_000), s));
    let tip = p.tip();
    command_fails(&mut p, B, CommandError::ResetInProgress, |c, s| c.reset(s, tip));
    let fin = finish(&mut p, A, acc.clone());
    // A committed: the accept again is out of order.
    refuses(&mut p, A, Msg::ResetAccept(acc), Misbehaviour::UnexpectedMessage);
    let tip = p.tip();
    let _ = p.parties[1].ch.handle_message(Msg::ResetFinish(fin.clone()), &signer(B), tip).unwrap();
    refuses(&mut p, B, Msg::ResetFinish(fin), Misbehaviour::UnexpectedMessage);
    // Setup messages in an open channel.
    refuses(&mut p, A, Msg::Open(open_msg()), Misbehaviour::UnexpectedMessage);
}

fn open_msg() -> paychan::duplex::Open {
    let tip = ChainTip::at(common::duplex::START);
    let (_, fx) = Channel::open(common::duplex::terms(vec![2]), common::duplex::payout(A), &signer(A), tip).unwrap();
    match fx.send.into_iter().next() {
        Some(Msg::Open(o)) => o,
        _ => panic!(),
    }
}

#[test]
fn payments_with_too_little_balance() {
    let mut p = open();
    // B's whole balance is below the amount: no reset can help.
    let b_total = p.b().balances().holder.to_sat();
    command_fails(&mut p, B, CommandError::InsufficientBalance, |c, s| c.pay(Amount::from_sat(b_total + 1), s));
    // After A pays B a lot, B's balance could pay, but its own leaf channel cannot.
    p.pay(A, 400_000);
    let avail = p.b().available().to_sat();
    command_fails(&mut p, B, CommandError::ResetNeeded, |c, s| c.pay(Amount::from_sat(avail + 1), s));
    // Leaving change below dust is refused too.
    command_fails(&mut p, B, CommandError::Payment(PaymentError::ChangeBelowDust), |c, s| {
        c.pay(Amount::from_sat(avail - 100), s)
    });
    command_fails(&mut p, B, CommandError::InvalidAmount, |c, s| c.pay(Amount::ZERO, s));
    // A reset fixes it.
    p.reset(B);
    p.pay(B, avail + 1);

    // A payment message from A beyond its channel, or otherwise broken.
    p.pay(A, 1_000);
    let held = p.b().leaf_state(A).to_payee;
    let capture = {
        let party = &mut p.parties[0];
        let fx = party.ch.pay(Amount::from_sat(500), &party.signer).unwrap();
        let Some(Msg::Payment(pm)) = fx.send.into_iter().next() else { panic!() };
        pm
    };
    let value_a = p.b().leaf_value(A);
    let mut over = capture.clone();
    over.to_payee = value_a + Amount::from_sat(1);
    refuses(&mut p, B, Msg::Payment(over), Misbehaviour::Payment(UpdateError::Payment(PaymentError::ExceedsCapacity)));
    let mut down = capture.clone();
    down.to_payee = held - Amount::from_sat(1);
    refuses(&mut p, B, Msg::Payment(down), Misbehaviour::Payment(UpdateError::AmountDecreased));
    let mut replay = capture.clone();
    replay.number -= 1;
    refuses(&mut p, B, Msg::Payment(replay), Misbehaviour::Payment(UpdateError::Replay));
    let mut forged = capture.clone();
    forged.to_payee += Amount::from_sat(1);
    let tip = p.tip();
    let party = &mut p.parties[1];
    let before = state(&party.ch);
    let e = party.ch.handle_message(Msg::Payment(forged), &party.signer, tip).unwrap_err();
    assert!(matches!(e.kind, Misbehaviour::Payment(UpdateError::Signature(_))));
    assert_eq!(state(&party.ch), before);
    let mut early = capture.clone();
    early.htlcs.push(PaymentHtlc {
        id: 0,
        amount: Amount::from_sat(1_000),
        payment_hash: PaymentPreimage([1; 32]).hash(),
        expiry: BlockHeight(p.chain.height + 5),
    });
    refuses(&mut p, B, Msg::Payment(early), Misbehaviour::Payment(UpdateError::HtlcExpiry));
    // The genuine one is accepted.
    let tip = p.tip();
    let _ = p.parties[1].ch.handle_message(Msg::Payment(capture), &signer(B), tip).unwrap();
    // HTLCs too early or too late for the channel's close delay (docs/duplex.md §3).
    let min = p.a().terms().min_htlc_expiry_delta();
    let tip = p.tip();
    command_fails(&mut p, A, CommandError::HtlcExpiry, |c, s| {
        c.add_htlc(
            Amount::from_sat(1_000),
            PaymentPreimage([2; 32]).hash(),
            BlockHeight(tip.height.0 + min - 1),
            s,
            tip,
        )
    });
    command_fails(&mut p, A, CommandError::HtlcExpiry, |c, s| {
        c.add_htlc(Amount::from_sat(1_000), PaymentPreimage([2; 32]).hash(), BlockHeight(tip.height.0 + 2_001), s, tip)
    });
}

#[test]
fn htlc_and_close_misuse() {
    let mut p = open();
    let pre = PaymentPreimage([9; 32]);
    let id = p.add_htlc(A, 3_000, pre, 100);
    refuses(&mut p, A, Msg::Fulfill { id, preimage: PaymentPreimage([8; 32]) }, Misbehaviour::WrongPreimage);
    refuses(&mut p, A, Msg::Fulfill { id: 5, preimage: pre }, Misbehaviour::UnknownHtlc);
    refuses(&mut p, A, Msg::Fail { id: 5 }, Misbehaviour::UnknownHtlc);
    command_fails(&mut p, B, CommandError::WrongPreimage, |c, s| c.fulfill_htlc(id, PaymentPreimage([8; 32]), s));
    command_fails(&mut p, B, CommandError::UnknownHtlc, |c, s| c.fulfill_htlc(7, pre, s));
    command_fails(&mut p, B, CommandError::UnknownHtlc, |c, _| c.fail_htlc(7));
    // No cooperative close while an HTLC is pending.
    command_fails(&mut p, A, CommandError::HtlcsPending, |c, s| c.close(s));
    let some_sig =
        p.parties[0].ch.signed_branch(&p.parties[0].signer).unwrap()[0].input[0].witness.nth(1).unwrap().to_vec();
    let sig = bitcoin::ecdsa::Signature::from_slice(&some_sig).unwrap();
    refuses(&mut p, B, Msg::CloseProposal(CloseProposal { spend: 0, signature: sig }), Misbehaviour::CloseNotAllowed);
    p.fulfill(B, id, pre);
    // A close proposal spending a level that does not exist, or with a wrong signature.
    refuses(&mut p, B, Msg::CloseProposal(CloseProposal { spend: 9, signature: sig }), Misbehaviour::BadClose);
    refuses(&mut p, B, Msg::CloseProposal(CloseProposal { spend: 0, signature: sig }), Misbehaviour::BadClose);
    refuses(
        &mut p,
        B,
        Msg::CloseSigned(paychan::duplex::CloseSigned { signature: sig }),
        Misbehaviour::UnexpectedMessage,
    );
}

#[test]
fn bad_terms_are_refused() {
    let tip = ChainTip::at(1);
    let mut terms = common::duplex::terms(vec![3, 3]);
    terms.push = Amount::from_sat(100);
    assert_eq!(
        Channel::open(terms.clone(), ScriptBuf::new(), &signer(A), tip).unwrap_err(),
        CommandError::BadTerms(TermsError::Push)
    );
    let mut open = open_msg();
    open.terms.capacity = Amount::from_sat(500);
    let e = Channel::accept(open, ScriptBuf::new(), &signer(B), tip).unwrap_err();
    assert_eq!(e.kind, Misbehaviour::BadTerms(TermsError::Capacity));
    let mut open = open_msg();
    open.terms.max_htlc_expiry_delta = 3;
    let e = Channel::accept(open, ScriptBuf::new(), &signer(B), tip).unwrap_err();
    assert_eq!(e.kind, Misbehaviour::BadTerms(TermsError::HtlcWindow));
}

/// Every message kind a lifecycle produces, as bytes.
fn all_message_bytes() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut p = Pair::open(common::duplex::terms(vec![3, 3, 3]));
    // Setup messages, re-created by hand.
    out.push(Msg::Open(open_msg()).encode());
    let tip = ChainTip::at(common::duplex::START);
    let (_, fx) = Channel::accept(open_msg(), common::duplex::payout(B), &signer(B), tip).unwrap();
    out.push(fx.send[0].encode());
    let tip = p.tip();
    let mut record = |p: &mut Pair| {
        while let Some((to, m)) = p.queue.pop_front() {
            out.push(m.encode());
            let fx = p.parties[to.index()].ch.handle_message(m, &signer(to), tip).unwrap();
            p.absorb(to, fx);
        }
    };
    let fx = p.parties[0].ch.pay(Amount::from_sat(5_000), &p.parties[0].signer).unwrap();
    p.absorb(A, fx);
    record(&mut p);
    let pre = PaymentPreimage([3; 32]);
    let (id, fx) = p.parties[0]
        .ch
        .add_htlc(Amount::from_sat(2_000), pre.hash(), BlockHeight(tip.height.0 + 100), &signer(A), tip)
        .unwrap();
    p.absorb(A, fx);
    record(&mut p);
    let fx = p.parties[1].ch.fulfill_htlc(id, pre, &signer(B)).unwrap();
    p.absorb(B, fx);
    record(&mut p);
    let (id2, fx) = p.parties[0]
        .ch
        .add_htlc(Amount::from_sat(2_000), pre.hash(), BlockHeight(tip.height.0 + 100), &signer(A), tip)
        .unwrap();
    p.absorb(A, fx);
    record(&mut p);
    let fx = p.parties[1].ch.fail_htlc(id2).unwrap();
    p.absorb(B, fx);
    record(&mut p);
    let fx = p.parties[0].ch.reset(&signer(A), tip).unwrap();
    p.absorb(A, fx);
    record(&mut p);
    let fx = p.parties[0].ch.close(&signer(A)).unwrap();
    p.absorb(A, fx);
    record(&mut p);
    // Funding messages from a fresh setup.
    let (mut a, fx) =
        Channel::open(common::duplex::terms(vec![2, 2]), common::duplex::payout(A), &signer(A), tip).unwrap();
    let Some(Msg::Open(o)) = fx.send.into_iter().next() else { panic!() };
    let (mut b, fx) = Channel::accept(o, common::duplex::payout(B), &signer(B), tip).unwrap();
    let _ = a.handle_message(fx.send[0].clone(), &signer(A), tip).unwrap();
    let funding = Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn::default()],
        output: vec![a.funding_output().unwrap()],
    };
    let fx = a.fund(&funding, &signer(A)).unwrap();
    out.push(fx.send[0].encode());
    let fx = b.handle_message(fx.send[0].clone(), &signer(B), tip).unwrap();
    out.push(fx.send[0].encode());
    out
}

#[test]
fn truncated_and_extended_encodings() {
    let messages = all_message_bytes();
    let kinds: std::collections::BTreeSet<u8> = messages.iter().map(|m| m[0]).collect();
    assert_eq!(kinds.len(), 13, "every message kind is covered: {kinds:x?}");
    for bytes in &messages {
        let msg = Msg::decode(bytes).expect("valid");
        assert_eq!(&msg.encode(), bytes);
        for n in 0..bytes.len() {
            assert!(Msg::decode(&bytes[..n]).is_err(), "truncated to {n} of {} accepted", bytes.len());
        }
        for extra in [0x00u8, 0x01, 0x02, 0x41, 0xfd, 0xff] {
            let mut long = bytes.clone();
            long.push(extra);
            assert!(Msg::decode(&long).is_err(), "extended by {extra:#x} accepted");
        }
        let mut v = bytes.clone();
        v[1] = 3;
        assert_eq!(Msg::decode(&v), Err(DecodeError::UnknownVersion(3)));
        let mut k = bytes.clone();
        k[0] = 0x7f;
        assert!(Msg::decode(&k).is_err());
    }
    // Snapshots: the same rules, through `restore`.
    let p = open();
    for ch in [p.a(), p.b()] {
        let bytes = ch.snapshot();
        let check = RestoreCheck::default();
        assert_eq!(Channel::restore(&bytes, check).unwrap().snapshot(), bytes);
        for n in 0..bytes.len() {
            assert!(
                matches!(Channel::restore(&bytes[..n], check), Err(RestoreError::Decode(_))),
                "snapshot truncated to {n}"
            );
        }
        for extra in [0x00u8, 0x01, 0x03, 0xfe] {
            let mut long = bytes.clone();
            long.push(extra);
            assert!(matches!(Channel::restore(&long, check), Err(RestoreError::Decode(_))));
        }
        let mut v = bytes.clone();
        v[1] = 9;
        assert_eq!(Channel::restore(&v, check).unwrap_err(), RestoreError::Decode(DecodeError::UnknownVersion(9)));
        let wrong = RestoreCheck { channel_id: Some(ChannelId([0; 32])), min_update_id: 0 };
        assert_eq!(Channel::restore(&bytes, wrong).unwrap_err(), RestoreError::WrongChannel);
        let stale = RestoreCheck { channel_id: ch.channel_id(), min_update_id: ch.update_id() + 1 };
        assert!(matches!(Channel::restore(&bytes, stale), Err(RestoreError::Stale { .. })));
    }
}

/// Unknown TLV records: an odd one is skipped, an even one refused (the even/odd rule).
#[test]
fn unknown_tlv_records_follow_the_even_odd_rule() {
    for bytes in all_message_bytes() {
        let msg = Msg::decode(&bytes).expect("valid");
        let mut odd = bytes.clone();
        odd.extend_from_slice(&[0xfd, 0x03, 0x01, 0x02, 0xca, 0xfe]);
        assert_eq!(Msg::decode(&odd), Ok(msg), "an unknown odd record is skipped");
        let mut even = bytes.clone();
        even.extend_from_slice(&[0xfd, 0x03, 0x00, 0x02, 0xca, 0xfe]);
        assert_eq!(Msg::decode(&even), Err(DecodeError::UnknownEvenType(0x0300)));
    }
}

/// Random single-byte mutations of every message kind, fed to both parties of an open channel
/// with payments both ways: a mutation either fails to decode (typed error), is refused with the
/// state byte-identical, or is accepted with its new state handed out for persistence first.
#[test]
fn random_single_byte_mutations() {
    let messages = all_message_bytes();
    let mut p = open();
    p.pay(A, 20_000);
    p.pay(B, 10_000);
    let mut rng = paychan::testing::rng::Rng::new(0xd0_0b1e);
    let (mut undecodable, mut refused, mut accepted) = (0, 0, 0);
    for round in 0..2_000 {
        let bytes = &messages[round % messages.len()];
        let mut m = bytes.clone();
        let at = rng.below(m.len() as u64) as usize;
        m[at] ^= 1 << rng.below(8);
        let Ok(msg) = Msg::decode(&m) else {
            undecodable += 1;
            continue;
        };
        for to in [A, B] {
            let mut ch = p.parties[to.index()].ch.clone();
            let before = state(&ch);
            match ch.handle_message(msg.clone(), &signer(to), p.tip()) {
                Err(_) => {
                    refused += 1;
                    assert_eq!(state(&ch), before, "a refusal changed the state ({round}, byte {at})");
                }
                Ok(fx) => {
                    accepted += 1;
                    if state(&ch) != before {
                        let update = fx.update.expect("a changed state is handed out for persistence");
                        assert_eq!(update.snapshot, Some(ch.snapshot()));
                    }
                }
            }
        }
    }
    assert!(undecodable > 0 && refused > 0, "{undecodable} undecodable, {refused} refused, {accepted} accepted");
}
