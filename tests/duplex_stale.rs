//! Stale branches lose. On the 27-state tree (d = 3, k = 3, Δ = 4 blocks), for every old state a
//! cheater restores its old backup and publishes that branch — kickoff first, then every node the
//! moment the chain would take it, always ahead of the honest party in the mempool. The honest
//! party only watches the chain and reacts as its state machine says; the simulated chain enforces
//! BIP-0068 relative locks, CLTV, CSV and double-spends, and runs every script through Bitcoin
//! Core's interpreter. In every case the current branch confirms, no stale node does, and the
//! honest party ends with its current balance (less the fees of its own payment and refund).

mod common;

use bitcoin::Transaction;
use common::duplex::{signer, Pair, Party, PAYMENT_FEE, REFUND_FEE};
use paychan::driving::RestoreCheck;
use paychan::duplex::{tree, Channel, CloseKind, Event, Phase, Role};

const A: Role = Role::Initiator;
const B: Role = Role::Acceptor;

fn restore(bytes: &[u8]) -> Channel {
    Channel::restore(bytes, RestoreCheck::default()).expect("snapshot restores")
}

/// Walks the channel through all 27 states, with payments both ways in each; returns the pair at
/// the end and both parties' snapshots at every state.
fn history() -> (Pair, Vec<[Vec<u8>; 2]>) {
    let mut p = Pair::open(common::duplex::terms(vec![3, 3, 3]));
    let mut states = Vec::new();
    let mut who = A;
    for n in 0..27u64 {
        p.pay(A, 3_000 + 17 * n);
        if n % 2 == 0 {
            p.pay(B, 1_500 + n);
        }
        states.push([p.a().snapshot(), p.b().snapshot()]);
        if n < 26 {
            p.reset(who);
            who = !who;
        }
    }
    assert_eq!(p.a().resets_left(), 0);
    (p, states)
}

/// What the honest party gets when the cheater stays silent after losing: its own channel back by
/// refund, and its payment in the cheater's channel.
fn honest_payout(ch: &Channel) -> u64 {
    let me = ch.role();
    let own = ch.leaf_value(me).to_sat().saturating_sub(REFUND_FEE);
    let theirs = ch.leaf_state(!me);
    let received = if theirs.to_payee.to_sat() > 0 { theirs.to_payee.to_sat() - PAYMENT_FEE } else { 0 };
    own + received
}

fn race(base: &Pair, current: &[Vec<u8>; 2], old: &[Vec<u8>; 2], cheater: Role) {
    let honest = !cheater;
    let cheater_old = restore(&old[cheater.index()]);
    let honest_now = restore(&current[honest.index()]);
    let stale: Vec<Transaction> = cheater_old.signed_branch(&signer(cheater)).expect("old branch");
    let current_branch = honest_now.current_branch().expect("branch");
    assert_eq!(stale[0].compute_txid(), current_branch[0].compute_txid(), "the kickoff is signed once");
    let differs_from = tree::first_difference(cheater_old.digits(), honest_now.digits()).expect("an older state");

    let party = |ch: Channel, role: Role, offline: bool| Party {
        ch,
        signer: signer(role),
        events: Vec::new(),
        pending: Vec::new(),
        broadcast_log: Vec::new(),
        offline,
        bumps: Vec::new(),
    };
    let mut parties = [party(restore(&current[0]), A, cheater == A), party(restore(&current[1]), B, cheater == B)];
    parties[honest.index()].ch = honest_now;
    let mut p = Pair { parties, chain: base.chain.clone(), funding: base.funding.clone(), queue: Default::default() };
    let expected = honest_payout(p.ch(honest));
    let balance = p.ch(honest).balances().holder.to_sat();

    let d = p.ch(honest).params().depth();
    for _ in 0..120 {
        p.mine_with(&stale);
        if p.ch(honest).phase() == Phase::Closed
            && p.parties[honest.index()].pending.is_empty()
            && p.chain.mempool().is_empty()
        {
            break;
        }
    }
    let h = p.ch(honest);
    assert_eq!(h.phase(), Phase::Closed, "cheater {cheater:?}, old {:?}", cheater_old.digits());
    assert!(p.parties[honest.index()]
        .events
        .iter()
        .any(|e| matches!(e, Event::Closed { kind: CloseKind::Unilateral })));
    assert!(!p.parties[honest.index()].events.iter().any(|e| matches!(e, Event::StaleBranchConfirmed { .. })));
    for (level, s) in h.close_schedule().iter().enumerate() {
        assert_eq!(s.txid, current_branch[level].compute_txid());
        assert!(s.confirmed.is_some(), "current level {level} confirmed");
    }
    for tx in &stale[differs_from..=d] {
        assert_eq!(p.chain.confirmation(&tx.compute_txid()), None, "a stale node confirmed");
    }
    assert_eq!(p.paid_to(honest), expected, "cheater {cheater:?}, old {:?}", cheater_old.digits());
    assert!(expected + REFUND_FEE + PAYMENT_FEE >= balance, "the honest party keeps its balance less its fees");
}

/// Control: with nobody watching, the same old branches are valid and confirm — the honest
/// party's reaction is what makes them lose.
#[test]
fn unwatched_stale_branches_confirm() {
    let (p, states) = history();
    for (old, cheater) in [(0usize, A), (8, B), (25, A)] {
        let stale = restore(&states[old][cheater.index()]).signed_branch(&signer(cheater)).expect("old branch");
        let mut chain = p.chain.clone();
        for _ in 0..60 {
            for tx in &stale {
                let _ = chain.submit(tx);
            }
            chain.mine_block();
        }
        for tx in &stale {
            assert!(chain.confirmation(&tx.compute_txid()).is_some(), "old state {old}: stale branch valid");
        }
    }
}

#[test]
fn every_stale_branch_of_the_27_state_tree_loses() {
    let (p, states) = history();
    let last = states.last().expect("27 states").clone();
    let mut runs = 0;
    for cheater in [A, B] {
        // Against the final state, every one of the 26 older states.
        for old in &states[..26] {
            race(&p, &last, old, cheater);
            runs += 1;
        }
        // Against a state in the middle, every state before it.
        for old in &states[..13] {
            race(&p, &states[13], old, cheater);
            runs += 1;
        }
    }
    assert_eq!(runs, 2 * (26 + 13));
}
