//! Unsafe duplex terms (docs/duplex.md §3, §7). The invalidation tree is only safe if, once a
//! node's parent confirmed, the honest party gets the current node confirmed (and `R` blocks deep)
//! before any older sibling — whose lock is at least `Δ` longer — can be mined: `Δ > S + R`. A
//! peer proposing a shorter step is refused; the race below shows, on the simulated chain, what a
//! cheater gains when confirmation takes as long as such terms allow.

mod common;

use bitcoin::Transaction;
use common::duplex::{signer, Pair, Party, REFUND_FEE};
use paychan::driving::{ChainTip, RestoreCheck};
use paychan::duplex::{Channel, CommandError, Event, Misbehaviour, Msg, Open, Params, Phase, Role, Terms, TermsError};

const A: Role = Role::Initiator;
const B: Role = Role::Acceptor;

fn open_msg(terms: Terms) -> Open {
    let tip = ChainTip::at(common::duplex::START);
    let (_, fx) = Channel::open(terms, common::duplex::payout(A), &signer(A), tip).expect("valid terms");
    match fx.send.into_iter().next() {
        Some(Msg::Open(o)) => o,
        _ => panic!("Open sent"),
    }
}

/// The acceptor refuses `open` with `BadTerms(want)`; the initiator's own `Channel::open` refuses
/// the same terms.
fn refused(open: Open, want: TermsError) {
    let tip = ChainTip::at(common::duplex::START);
    assert_eq!(
        Channel::open(open.terms.clone(), common::duplex::payout(A), &signer(A), tip).unwrap_err(),
        CommandError::BadTerms(want)
    );
    let e = Channel::accept(open, common::duplex::payout(B), &signer(B), tip).unwrap_err();
    assert_eq!(e.kind, Misbehaviour::BadTerms(want));
}

#[test]
fn open_with_step_not_longer_than_confirm_plus_reorg_is_refused() {
    let base = common::duplex::terms(vec![2, 2]);
    // The example: Δ = 1 with S = R = 6 (T_r long enough not to be the first problem).
    let mut open = open_msg(base.clone());
    open.terms.params = Params::new(vec![2, 2], 1, 144).unwrap();
    open.terms.confirm_blocks = 6;
    open.terms.reorg_blocks = 6;
    refused(open, TermsError::StepTooShort);
    // The boundary Δ = S + R: a current node with lock 0 is only broadcast once its parent is
    // seen, and its stale sibling is valid in the block it may need (see the race below).
    let mut open = open_msg(base.clone());
    open.terms.confirm_blocks = 3;
    open.terms.reorg_blocks = 1;
    refused(open, TermsError::StepTooShort);
    let mut open = open_msg(base.clone());
    open.terms.confirm_blocks = 4;
    open.terms.reorg_blocks = 0;
    refused(open, TermsError::StepTooShort);
    // S = 0 would make every margin meaningless (Δ = 1, R = 0 would pass the step rule).
    let mut open = open_msg(base.clone());
    open.terms.params = Params::new(vec![2, 2], 1, 6).unwrap();
    open.terms.confirm_blocks = 0;
    open.terms.reorg_blocks = 0;
    refused(open, TermsError::ZeroConfirmBlocks);
    // One block more than S + R is accepted.
    let mut ok = base;
    ok.confirm_blocks = 2;
    ok.reorg_blocks = 1;
    assert_eq!(ok.validate(), Ok(()));
}

/// What happens when the cheater A publishes its state-0 branch (d = 1, radix 2, Δ = 4) after
/// A paid B 100,000 sat and a reset moved the leaf to state 1 (lock 0): every transaction the
/// honest B broadcasts confirms `lag` blocks later (a congested mempool), while the cheater's go
/// in as soon as they are valid. Returns B's channel at the end, the stale leaf's txid and the
/// amount B could have at best at the end, from the leaf that confirmed.
fn stale_race(lag: u32) -> (Channel, bool, u64, u64) {
    let mut p = Pair::open(common::duplex::terms(vec![2]));
    let old = [p.a().snapshot(), p.b().snapshot()];
    p.pay(A, 100_000);
    p.reset(A);
    assert_eq!(p.b().digits(), &[1], "the current leaf has lock 0");
    let restore = |b: &[u8]| Channel::restore(b, RestoreCheck::default()).expect("restores");
    let stale: Vec<Transaction> = restore(&old[0]).signed_branch(&signer(A)).expect("old branch");
    let old_b = restore(&old[1]).leaf_value(B).to_sat();
    let now_b = p.b().leaf_value(B).to_sat();
    assert_eq!(now_b, old_b + 100_000);

    // A is the cheater: it stops following its channel and publishes the old branch.
    let party = |ch: Channel, role: Role, offline: bool| Party {
        ch,
        signer: signer(role),
        events: Vec::new(),
        pending: Vec::new(),
        broadcast_log: Vec::new(),
        offline,
        bumps: Vec::new(),
    };
    let current = [p.a().snapshot(), p.b().snapshot()];
    let mut p = Pair {
        parties: [party(restore(&current[0]), A, true), party(restore(&current[1]), B, false)],
        chain: p.chain.clone(),
        funding: p.funding.clone(),
        queue: Default::default(),
    };
    let stale_leaf = stale[1].compute_txid();
    let mut delayed: Vec<(u32, Transaction)> = Vec::new();
    for _ in 0..40 {
        let now = p.chain.height;
        for tx in std::mem::take(&mut p.parties[1].pending) {
            delayed.push((now + lag - 1, tx));
        }
        let (ready, later): (Vec<_>, Vec<_>) = delayed.into_iter().partition(|(due, _)| *due <= now);
        delayed = later;
        p.parties[1].pending = ready.into_iter().map(|(_, tx)| tx).collect();
        p.mine_with(&stale);
        if p.ch(B).phase() == Phase::Closed || p.chain.confirmation(&stale_leaf).is_some() {
            break;
        }
    }
    let lost = p.chain.confirmation(&stale_leaf).is_some();
    if lost {
        assert!(p.parties[1].events.iter().any(|e| matches!(e, Event::StaleBranchConfirmed { .. })));
    }
    // At best, B refunds its own channel of the leaf that confirmed (it received nothing in A's
    // channel of either leaf: the 100,000 were netted into B's channel by the reset).
    let best = if lost { old_b - REFUND_FEE } else { now_b - REFUND_FEE };
    let paid = p.paid_to(B);
    (p.parties[1].ch.clone(), lost, best, paid)
}

/// Control: when the honest party's transactions confirm within `Δ − 1` blocks (accepted terms
/// have `S + R < Δ`), the current leaf wins and B gets its whole current balance.
#[test]
fn stale_branch_loses_when_confirmation_fits_the_step() {
    for lag in [1, 2, 3] {
        let (b, lost, best, paid) = stale_race(lag);
        assert!(!lost, "lag {lag}");
        assert_eq!(b.phase(), Phase::Closed);
        assert_eq!(paid, best, "lag {lag}: B refunds its whole current channel");
    }
}

/// The attack the step rule stops: with `S + R ≥ Δ` (here confirmation takes `Δ` = 4 blocks, what
/// terms with S = 4, R = 0 or S = 3, R = 1 allow, both refused now), the state-0 leaf matures in
/// the block the current one needed and confirms: B is left with its old balance and loses the
/// 100,000 sat it was paid, to the satoshi.
#[test]
fn stale_branch_wins_when_confirmation_takes_the_whole_step() {
    let (b, lost, best, paid) = stale_race(4);
    assert!(lost, "the stale leaf confirmed");
    assert_eq!(paid, 0, "B's channel cannot follow a stale leaf");
    let (_, _, whole, _) = stale_race(1);
    assert_eq!(whole - best, 100_000, "B loses exactly what it was paid since state 0");
    assert_ne!(b.phase(), Phase::Closed);
}
