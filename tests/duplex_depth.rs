//! The funding depth of a duplex channel (docs/duplex.md §3, "Funding depth"): a party counts no
//! payment or HTLC until the funding transaction has `Terms::funding_depth` (`n`) confirmations
//! on its own view of the chain, and sends none before it sees `n + 1`.
//!
//! The attack it stops: a hostile funder pays the acceptor in the channel before the funding
//! confirms (the acceptor delivers goods for each payment), then double-spends the funding's
//! inputs. Every payment was in an output that never exists. Played on the simulated chain with
//! a real double spend; with the rule switched off ([`Channel::sabotage_funding_depth`]) the same
//! test shows the acceptor losing every satoshi it delivered for.

mod common;

use bitcoin::{Amount, OutPoint, Transaction, TxOut};
use common::chain::{Chain, Reject};
use common::duplex::{self as dx, START};
use common::wallet::{self, Wallet};
use paychan::core::encode::DecodeError;
use paychan::core::sign::InMemorySigner;
use paychan::core::{BlockHeight, PaymentPreimage};
use paychan::driving::{ChainEvent, ChainTip, RestoreCheck, RestoreError};
use paychan::duplex::{Channel, CommandError, Effects, Event, Misbehaviour, Msg, Phase, Role, Terms, TermsError};
use paychan::spilman::payment::PaymentState;
use paychan::spilman::Payment;

const A: Role = Role::Initiator;
const B: Role = Role::Acceptor;
/// The acceptor's balance at open (`dx::terms` pushes it).
const PUSH: u64 = 200_000;

/// Two parties, each with its own view of the tip, over a simulated chain; the funder's wallet
/// holds the coin the funding spends.
struct Duo {
    ch: [Channel; 2],
    signers: [InMemorySigner; 2],
    tips: [ChainTip; 2],
    chain: Chain,
    wallet: Wallet,
    coin: (OutPoint, TxOut),
    funding: Transaction,
}

impl Duo {
    /// Opens a channel and exchanges the signed tree; the funding transaction (spending the
    /// wallet's coin, signed) is what the initiator's channel asked to broadcast, and is not
    /// on chain yet.
    fn open(terms: Terms) -> Duo {
        let tip = ChainTip::at(START);
        let mut chain = Chain::at(START);
        let mut wallet = Wallet::new(0x77);
        let coin = wallet.fund(&mut chain, Amount::from_sat(4_000_000));
        let signers = [dx::signer(A), dx::signer(B)];
        let (mut a, fx) = Channel::open(terms, dx::payout(A), &signers[0], tip).expect("open");
        let Some(Msg::Open(open)) = fx.send.first().map(dx::wire) else { panic!("Open sent") };
        let (mut b, fx) = Channel::accept(open, dx::payout(B), &signers[1], tip).expect("accept");
        let _ = a.handle_message(dx::wire(&fx.send[0]), &signers[0], tip).expect("Accept");
        let change = Amount::from_sat(4_000_000 - dx::CAPACITY - 1_000);
        let mut funding = wallet::unsigned_funding(
            coin.0,
            vec![a.funding_output().expect("keys"), TxOut { value: change, script_pubkey: wallet.script() }],
        );
        wallet.sign_input(&mut funding, 0, &coin.1);
        let fx = a.fund(funding.clone(), &signers[0]).expect("fund");
        let fx = b.handle_message(dx::wire(&fx.send[0]), &signers[1], tip).expect("FundingCreated");
        let fx = a.handle_message(dx::wire(&fx.send[0]), &signers[0], tip).expect("FundingSigned");
        assert_eq!(fx.broadcast, [funding.clone()], "the channel broadcasts the funding now");
        assert_eq!((a.phase(), b.phase()), (Phase::Open, Phase::Open));
        Duo { ch: [a, b], signers, tips: [tip; 2], chain, wallet, coin, funding }
    }

    /// `role` handles `msg` at its own tip.
    fn handle(&mut self, role: Role, msg: &Msg) -> Result<Effects, paychan::duplex::PeerError> {
        let i = role.index();
        self.ch[i].handle_message(dx::wire(msg), &self.signers[i], self.tips[i])
    }

    /// Delivers `fx`'s messages from `from`, and the answers, until both are quiet; panics on
    /// a refusal. Returns every event of the receivers.
    fn deliver(&mut self, from: Role, fx: Effects) -> Vec<Event> {
        let mut events = Vec::new();
        let mut queue: Vec<(Role, Msg)> = fx.send.into_iter().map(|m| (!from, m)).collect();
        while !queue.is_empty() {
            let (to, m) = queue.remove(0);
            let fx = self.handle(to, &m).unwrap_or_else(|e| panic!("{to:?} refused {m:?}: {e}"));
            events.extend(fx.events);
            queue.extend(fx.send.into_iter().map(|m| (!to, m)));
        }
        events
    }

    /// Moves `role`'s view of the tip to `height`.
    fn tip(&mut self, role: Role, height: u32) {
        let i = role.index();
        self.tips[i] = ChainTip::at(height);
        let _ = self.ch[i].handle_chain(ChainEvent::Tip(self.tips[i]), &self.signers[i]);
    }

    /// Mines a block with `txs` (each must enter the mempool); both parties see it.
    fn mine(&mut self, txs: &[Transaction]) {
        for tx in txs {
            self.chain.submit(tx).expect("valid");
        }
        let block = self.chain.mine_block();
        let height = BlockHeight(self.chain.height);
        for i in 0..2 {
            for tx in &block {
                let _ = self.ch[i].handle_chain(ChainEvent::Confirmed { tx, height }, &self.signers[i]);
            }
        }
        for role in [A, B] {
            self.tip(role, height.0);
        }
    }

    /// A payment raising the payee's amount in `payer`'s leaf channel to `to_payee`, numbered
    /// `number`, signed by hand as a hostile payer does (its own channel would not send it).
    fn hand_made(&self, payer: Role, to_payee: u64, number: u64) -> Msg {
        let i = payer.index();
        let t = self.ch[i].template(payer).expect("the leaf");
        let state = PaymentState { to_payee: Amount::from_sat(to_payee), htlcs: vec![] };
        let signature = t.sign(&self.signers[i], &t.build(&state).expect("payable")).expect("signed");
        Msg::Payment(Payment { number, to_payee: state.to_payee, htlcs: vec![], signature })
    }
}

/// `role` refuses `msg` with `want`, its encoded state byte-identical.
#[track_caller]
fn refuses(duo: &mut Duo, role: Role, msg: &Msg, want: Misbehaviour) {
    let before = duo.ch[role.index()].snapshot();
    let err = duo.handle(role, msg).expect_err("refused");
    assert_eq!(err.kind, want);
    assert_eq!(duo.ch[role.index()].snapshot(), before, "a refused payment changed the state");
}

/// What the attack cost the acceptor: what it delivered goods for (the payments it counted)
/// and what it can still enforce of that on chain.
#[derive(Debug, PartialEq)]
struct Outcome {
    delivered_for: u64,
    enforceable: u64,
}

/// The hostile funder pays 50,000 then 120,000 sat in total before the funding confirms; the
/// acceptor delivers goods for every payment it counts. Then the funder double-spends its coin.
fn double_spend_attack(rule: bool) -> Outcome {
    let mut duo = Duo::open(dx::terms(vec![2, 2]));
    if !rule {
        duo.ch[B.index()].sabotage_funding_depth();
    }
    // The funder's own channel sends nothing this early: the payments are made by hand.
    let before = duo.ch[A.index()].snapshot();
    let early = duo.ch[A.index()].pay(Amount::from_sat(50_000), &duo.signers[0]).unwrap_err();
    assert_eq!(early, CommandError::FundingNotDeep);
    assert_eq!(duo.ch[A.index()].snapshot(), before);
    let mut delivered_for = 0;
    for (number, to_payee) in [(1, 50_000), (2, 120_000)] {
        let payment = duo.hand_made(A, to_payee, number);
        match duo.handle(B, &payment) {
            Ok(fx) => {
                for e in fx.events {
                    if let Event::PaymentReceived { to_holder, .. } = e {
                        delivered_for = to_holder.to_sat();
                    }
                }
            }
            Err(e) => assert_eq!(e.kind, Misbehaviour::FundingNotDeep { confirmations: 0 }),
        }
    }
    // The double spend: the coin goes back to the funder's wallet, and the funding can never
    // confirm.
    let mut theft = wallet::unsigned_funding(
        duo.coin.0,
        vec![TxOut { value: Amount::from_sat(4_000_000 - 2_000), script_pubkey: duo.wallet.script() }],
    );
    duo.wallet.sign_input(&mut theft, 0, &duo.coin.1);
    duo.mine(&[theft]);
    assert!(matches!(duo.chain.submit(&duo.funding), Err(Reject::MissingOrSpent(_))));
    for _ in 0..10 {
        duo.mine(&[]);
    }
    let b = &duo.ch[B.index()];
    assert_eq!(b.funding_confirmations(duo.tips[1]), 0);
    assert!(!duo.chain.is_unspent(&b.funding_outpoint().expect("funded")));
    // What B holds spends only the funding output, which does not exist: nothing of what it
    // counted is enforceable. (Its push was the funder's gift, never earned.)
    let counted = b.balances().holder.to_sat() - PUSH;
    assert_eq!(counted, delivered_for);
    Outcome { delivered_for, enforceable: 0 }
}

#[test]
fn double_spent_funding_after_early_payments_costs_the_acceptor_nothing() {
    let outcome = double_spend_attack(true);
    assert_eq!(outcome, Outcome { delivered_for: 0, enforceable: 0 }, "whole to the satoshi");
}

/// The same attack with the acceptor's rule switched off: it counts 120,000 sat, delivers for
/// them, and none of it exists. The test above would fail.
#[test]
fn without_the_rule_the_double_spend_steals_what_the_acceptor_delivered_for() {
    let outcome = double_spend_attack(false);
    assert_eq!(outcome, Outcome { delivered_for: 120_000, enforceable: 0 });
    assert_ne!(outcome.delivered_for, outcome.enforceable, "the acceptor lost 120,000 sat");
}

/// A funding confirmed but not `n` deep is not enough either: with `n = 2`, one confirmation is
/// refused; the honest sender waits for `n + 1` (3), the receiver counts from `n` (2).
#[test]
fn shallow_funding_counts_nothing_and_the_sender_waits_one_block_more() {
    let mut duo = Duo::open(dx::terms(vec![2]));
    let n = u32::from(duo.ch[0].terms().funding_depth);
    assert_eq!(n, 2);
    let funding = duo.funding.clone();
    duo.mine(&[funding]);
    let h = duo.chain.height;
    for ch in &duo.ch {
        assert_eq!(ch.receives_from(), Some(BlockHeight(h + n - 1)));
        assert_eq!(ch.sends_from(), Some(BlockHeight(h + n)));
    }
    let payment = duo.hand_made(A, 10_000, 1);
    refuses(&mut duo, B, &payment, Misbehaviour::FundingNotDeep { confirmations: 1 });
    // The sender, at n confirmations: neither a payment nor an HTLC yet.
    duo.mine(&[]);
    let before = duo.ch[0].snapshot();
    let (sa, tip) = (&duo.signers[0], duo.tips[0]);
    assert_eq!(duo.ch[0].pay(Amount::from_sat(10_000), sa).unwrap_err(), CommandError::FundingNotDeep);
    let (earliest, _) = duo.ch[0].htlc_expiry_window(tip);
    let hash = PaymentPreimage([7; 32]).hash();
    let err = duo.ch[0].add_htlc(Amount::from_sat(5_000), hash, earliest.unwrap(), sa, tip).unwrap_err();
    assert_eq!(err, CommandError::FundingNotDeep);
    assert_eq!(duo.ch[0].snapshot(), before);
    // The receiver would count it now (n deep on its view).
    let mut b = duo.ch[1].clone();
    let fx = b.handle_message(dx::wire(&payment), &duo.signers[1], duo.tips[1]).expect("n deep");
    assert!(fx.events.iter().any(|e| matches!(e, Event::PaymentReceived { .. })));
    // One block more: the honest sender pays.
    duo.mine(&[]);
    let fx = duo.ch[0].pay(Amount::from_sat(1_000), &duo.signers[0]).expect("n + 1 deep");
    let events = duo.deliver(A, fx);
    assert!(events.iter().any(|e| matches!(e, Event::PaymentAcknowledged { .. })));
    assert_eq!(duo.ch[1].balances().holder, Amount::from_sat(PUSH + 1_000));
}

/// Honest parties whose tips differ by one block pay each other both ways: the sender waits
/// for `n + 1` on its view, so the receiver a block behind sees `n`. Two blocks behind, the
/// receiver refuses (nothing changes) and counts the payment once its view catches up (sent
/// again on the next connection).
#[test]
fn honest_parties_one_block_apart_still_pay() {
    let mut duo = Duo::open(dx::terms(vec![2, 2]));
    let funding = duo.funding.clone();
    duo.mine(&[funding]);
    let from = duo.ch[0].sends_from().expect("confirmed").0;
    // A ahead by one: A pays, B (one behind) counts it.
    duo.tip(A, from);
    duo.tip(B, from - 1);
    let fx = duo.ch[0].pay(Amount::from_sat(20_000), &duo.signers[0]).expect("A sees n + 1");
    duo.deliver(A, fx);
    assert_eq!(duo.ch[1].balances().holder, Amount::from_sat(PUSH + 20_000));
    // B cannot pay yet on its view (n): the honest sender waits.
    assert_eq!(duo.ch[1].pay(Amount::from_sat(5_000), &duo.signers[1]).unwrap_err(), CommandError::FundingNotDeep);
    // B ahead by one: B pays, A (one behind) counts it.
    duo.tip(B, from + 1);
    let fx = duo.ch[1].pay(Amount::from_sat(5_000), &duo.signers[1]).expect("B sees n + 2");
    duo.tips[A.index()] = ChainTip::at(from); // A's view: from (B's is from + 1)
    duo.deliver(B, fx);
    assert_eq!(duo.ch[0].balances().holder, Amount::from_sat(dx::CAPACITY - PUSH - 20_000 + 5_000));

    // Two blocks apart: the receiver refuses with nothing changed ...
    let mut duo = Duo::open(dx::terms(vec![2, 2]));
    let funding = duo.funding.clone();
    duo.mine(&[funding]);
    let from = duo.ch[0].sends_from().expect("confirmed").0;
    duo.tip(A, from);
    duo.tip(B, from - 2);
    let fx = duo.ch[0].pay(Amount::from_sat(20_000), &duo.signers[0]).expect("A sees n + 1");
    let n = u32::from(duo.ch[0].terms().funding_depth);
    refuses(&mut duo, B, &fx.send[0], Misbehaviour::FundingNotDeep { confirmations: n - 1 });
    // ... and counts the payment once its view caught up, sent again on the next connection.
    duo.tip(B, from);
    let (ra, rb) = (duo.ch[0].reestablish(), duo.ch[1].reestablish());
    let fx_a = duo.handle(A, &rb).expect("reestablish");
    duo.deliver(A, fx_a);
    let fx_b = duo.handle(B, &ra).expect("reestablish");
    duo.deliver(B, fx_b);
    assert_eq!(duo.ch[1].balances().holder, Amount::from_sat(PUSH + 20_000));
    assert_eq!(duo.ch[0].balances().counterparty, Amount::from_sat(PUSH + 20_000));
}

/// A reorg that un-confirms the funding stops payments again, both halves; they resume once
/// the funding is deep again at its new height.
#[test]
fn reorg_unconfirming_the_funding_stops_payments_until_deep_again() {
    let mut duo = Duo::open(dx::terms(vec![2, 2]));
    let funding = duo.funding.clone();
    duo.mine(std::slice::from_ref(&funding));
    let from = duo.ch[0].sends_from().expect("confirmed").0;
    while duo.chain.height < from {
        duo.mine(&[]);
    }
    let fx = duo.ch[0].pay(Amount::from_sat(20_000), &duo.signers[0]).expect("deep");
    duo.deliver(A, fx);
    // The block with the funding is reorganised away.
    let txid = funding.compute_txid();
    for i in 0..2 {
        let fx = duo.ch[i].handle_chain(ChainEvent::Unconfirmed(txid), &duo.signers[i]);
        assert!(fx.update.is_some(), "the lost confirmation is persisted");
        assert_eq!(duo.ch[i].funding_confirmations(duo.tips[i]), 0);
        assert_eq!(duo.ch[i].sends_from(), None);
    }
    assert_eq!(duo.ch[0].pay(Amount::from_sat(1_000), &duo.signers[0]).unwrap_err(), CommandError::FundingNotDeep);
    let payment = duo.hand_made(A, 30_000, 2);
    refuses(&mut duo, B, &payment, Misbehaviour::FundingNotDeep { confirmations: 0 });
    // It confirms again, later: payments wait for the depth at the new height.
    let again = BlockHeight(duo.chain.height + 1);
    for i in 0..2 {
        let _ = duo.ch[i].handle_chain(ChainEvent::Confirmed { tx: &funding, height: again }, &duo.signers[i]);
    }
    let n = u32::from(duo.ch[0].terms().funding_depth);
    assert_eq!(duo.ch[0].sends_from(), Some(BlockHeight(again.0 + n)));
    for role in [A, B] {
        duo.tip(role, again.0 + n - 2);
    }
    refuses(&mut duo, B, &payment, Misbehaviour::FundingNotDeep { confirmations: n - 1 });
    for role in [A, B] {
        duo.tip(role, again.0 + n);
    }
    let fx = duo.ch[0].pay(Amount::from_sat(1_000), &duo.signers[0]).expect("deep again");
    duo.deliver(A, fx);
    assert_eq!(duo.ch[1].balances().holder, Amount::from_sat(PUSH + 21_000));
    assert_eq!(duo.ch[0].balances().counterparty, Amount::from_sat(PUSH + 21_000));
}

/// A depth not above `R` is refused: by the initiator's own `open`, and by an acceptor given a
/// hostile `Open` (nothing is created).
#[test]
fn a_funding_depth_not_above_r_is_refused_at_open() {
    let tip = ChainTip::at(START);
    let mut terms = dx::terms(vec![2]);
    terms.reorg_blocks = 2;
    assert_eq!(terms.min_funding_depth(), 3);
    for depth in [0, 1, 2] {
        terms.funding_depth = depth;
        assert_eq!(terms.validate(), Err(TermsError::FundingDepthTooSmall));
        let err = Channel::open(terms.clone(), dx::payout(A), &dx::signer(A), tip).unwrap_err();
        assert_eq!(err, CommandError::BadTerms(TermsError::FundingDepthTooSmall));
    }
    terms.funding_depth = 3;
    let (_, fx) = Channel::open(terms, dx::payout(A), &dx::signer(A), tip).expect("R + 1 is enough");
    let Some(Msg::Open(mut open)) = fx.send.first().map(dx::wire) else { panic!("Open") };
    for depth in [0, 2] {
        open.terms.funding_depth = depth;
        let hostile = Msg::decode(&Msg::Open(open.clone()).encode()).expect("well-formed");
        let Msg::Open(hostile) = hostile else { panic!("Open") };
        let err = Channel::accept(hostile, dx::payout(B), &dx::signer(B), tip).unwrap_err();
        assert_eq!(err.kind, Misbehaviour::BadTerms(TermsError::FundingDepthTooSmall));
    }
}

/// `bytes` without its TLV record `ty` (after the two header bytes), with header version
/// `version`.
fn without_record(bytes: &[u8], ty: u8, version: u8) -> Vec<u8> {
    let mut out = vec![bytes[0], version];
    let mut at = 2;
    let mut found = false;
    while at < bytes.len() {
        // Every record type and length here is below 0xfd (one byte) except long values.
        let start = at;
        let t = bytes[at];
        at += 1;
        let len = match bytes[at] {
            0xfd => {
                let l = u16::from_be_bytes([bytes[at + 1], bytes[at + 2]]) as usize;
                at += 3;
                l
            }
            l => {
                assert!(l < 0xfd, "short lengths only");
                at += 1;
                l as usize
            }
        };
        at += len;
        if t == ty {
            found = true;
        } else {
            out.extend_from_slice(&bytes[start..at]);
        }
    }
    assert!(found, "record {ty} present");
    out
}

/// Encodings of the previous release still read: an `Open` without the depth record, a
/// version-3 snapshot without it, both with `R + 1`; a version-4 snapshot without it is cut
/// short and refused.
#[test]
fn older_encodings_read_with_the_smallest_depth() {
    let mut terms = dx::terms(vec![2, 2]);
    terms.funding_depth = 5;
    let tip = ChainTip::at(START);
    let (_, fx) = Channel::open(terms.clone(), dx::payout(A), &dx::signer(A), tip).unwrap();
    let bytes = fx.send[0].encode();
    let Ok(Msg::Open(open)) = Msg::decode(&bytes) else { panic!("Open") };
    assert_eq!(open.terms.funding_depth, 5);
    let old = without_record(&bytes, 1, bytes[1]);
    let Ok(Msg::Open(open)) = Msg::decode(&old) else { panic!("an old Open still reads") };
    assert_eq!(open.terms.funding_depth, terms.min_funding_depth());
    assert_eq!(open.terms, Terms { funding_depth: 2, ..terms.clone() });

    // Snapshots: record 36.
    let mut p = dx::Pair::open(terms);
    p.pay(A, 10_000);
    let snapshot = p.a().snapshot();
    assert_eq!(snapshot[1], 5);
    let any = RestoreCheck::default();
    assert_eq!(Channel::restore(&snapshot, any).unwrap().terms().funding_depth, 5);
    let v3 = without_record(&snapshot, 36, 3);
    let restored = Channel::restore(&v3, any).expect("a version-3 snapshot restores");
    assert_eq!(restored.terms().funding_depth, 2);
    assert_eq!(restored.balances(), p.a().balances());
    let cut = without_record(&snapshot, 36, 4);
    assert_eq!(
        Channel::restore(&cut, any).unwrap_err(),
        RestoreError::Decode(DecodeError::MissingField("funding depth"))
    );
}
