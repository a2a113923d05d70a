//! A duplex tower: it holds only the newest signed branch, the client's best received payment
//! and its refund, replaced at each reset and payment. With the honest party offline for good,
//! a cheater publishes an old branch; the tower's broadcasts alone put the newest branch on
//! chain and pay the honest party its balance to the satoshi. A tower cannot redirect money: a
//! rewritten transaction fails Core's interpreter.

mod common;

use bitcoin::{OutPoint, Transaction};
use common::duplex::{payout, signer, Pair, Party, PAYMENT_FEE, REFUND_FEE};
use paychan::core::units::BlockHeight;
use paychan::driving::RestoreCheck;
use paychan::duplex::tower::{DuplexTower, PackageError, TowerPackage};
use paychan::duplex::{Channel, Role};

const A: Role = Role::Initiator;
const B: Role = Role::Acceptor;

/// What the honest party gets when the cheater stays silent after losing: its own leaf channel
/// back by the refund the tower holds, and its best received payment in the cheater's channel
/// (the payee pays each payment's fee).
fn honest_payout(ch: &Channel) -> u64 {
    let me = ch.role();
    let own = ch.leaf_value(me).to_sat() - REFUND_FEE;
    let theirs = ch.leaf_state(!me);
    let received = if theirs.to_payee.to_sat() > 0 { theirs.to_payee.to_sat() - PAYMENT_FEE } else { 0 };
    own + received
}

/// A channel through `states` states with payments both ways; A (the client) hands its tower a
/// new package after every payment and reset. Returns the pair, the tower, and B's signed branch
/// in every state.
fn history(states: u64) -> (Pair, DuplexTower, Vec<Vec<Transaction>>) {
    let mut p = Pair::open(common::duplex::terms(vec![3, 3, 3]));
    let package = |p: &Pair| p.a().tower_package(&signer(A)).expect("package").encode();
    let mut tower = DuplexTower::new(&package(&p)).expect("tower");
    let mut old = Vec::new();
    for n in 0..states {
        p.pay(A, 3_000 + 17 * n);
        p.pay(B, 5_000 + n);
        tower.replace(&package(&p)).expect("replaced");
        old.push(p.b().signed_branch(&signer(B)).expect("branch"));
        if n + 1 < states {
            p.reset(if n % 2 == 0 { A } else { B });
            tower.replace(&package(&p)).expect("replaced");
        }
    }
    (p, tower, old)
}

/// B publishes `stale` every block and nothing else; A is offline; the tower (if any) reacts. Returns the pair
/// after the run.
fn race(base: &Pair, mut tower: Option<DuplexTower>, stale: &[Transaction]) -> Pair {
    let party = |role: Role| Party {
        ch: Channel::restore(&base.ch(role).snapshot(), RestoreCheck::default()).expect("restores"),
        signer: signer(role),
        events: Vec::new(),
        pending: Vec::new(),
        bumps: Vec::new(),
        broadcast_log: Vec::new(),
        // A is gone for good; B's software is off too: B only publishes its stale branch.
        offline: true,
    };
    let mut p = Pair {
        parties: [party(A), party(B)],
        chain: base.chain.clone(),
        funding: base.funding.clone(),
        queue: Default::default(),
    };
    let mut from_tower: Vec<Transaction> = Vec::new();
    for _ in 0..150 {
        for tx in &from_tower {
            let _ = p.chain.submit(tx);
        }
        let mined = p.mine_with(stale);
        if let Some(t) = tower.as_mut() {
            from_tower = t.block(BlockHeight(p.chain.height), &mined);
        }
    }
    p
}

#[test]
fn duplex_tower_alone_defends_an_offline_client_against_every_stale_branch() {
    let (p, tower, old) = history(6);
    let current = p.a().current_branch().expect("branch");
    let current_ids: Vec<_> = current.iter().map(Transaction::compute_txid).collect();
    let is_current = |t: &Transaction| current_ids.contains(&t.compute_txid());
    let expected = honest_payout(p.a());
    let balance = p.a().balances().holder.to_sat();
    assert!(expected + REFUND_FEE + PAYMENT_FEE >= balance, "at least its balance less its fees");
    let package = tower.package().clone();
    assert_eq!(package.txs.len(), current.len() + 2, "branch, payment received, refund");
    for stale in &old[..old.len() - 1] {
        let after = race(&p, Some(tower.clone()), stale);
        for tx in &current {
            assert!(after.chain.confirmation(&tx.compute_txid()).is_some(), "the newest branch confirms");
        }
        for tx in stale.iter().filter(|t| !is_current(t)) {
            assert_eq!(after.chain.confirmation(&tx.compute_txid()), None, "a stale node confirmed");
        }
        assert_eq!(after.paid_to(A), expected, "the offline client is paid its balance to the satoshi");
        // Control: with no tower the same stale branch wins and the client is not paid so.
        let unwatched = race(&p, None, stale);
        assert!(stale.iter().any(|t| !is_current(t) && unwatched.chain.confirmation(&t.compute_txid()).is_some()));
        assert_ne!(unwatched.paid_to(A), expected);
    }
}

#[test]
fn duplex_tower_cannot_redirect_and_refuses_foreign_packages() {
    let (p, tower, _) = history(2);
    let package = tower.package().clone();
    // A hostile tower rewrites the client's received payment to pay itself: the signatures no
    // longer match, Core's interpreter rejects it.
    let mut chain = p.chain.clone();
    for tx in &package.txs[..package.txs.len() - 2] {
        let _ = chain.submit(tx);
        chain.mine_block();
        chain.advance(10);
    }
    let payment = &package.txs[package.txs.len() - 2];
    assert!(payment.output.iter().any(|o| o.script_pubkey == payout(A)));
    let mut stolen = payment.clone();
    for o in stolen.output.iter_mut().filter(|o| o.script_pubkey == payout(A)) {
        o.script_pubkey = common::duplex::p2wpkh(0x66);
    }
    assert!(chain.check(&stolen).is_err(), "a redirected payment is invalid");
    chain.check(payment).expect("the package's own payment is valid");
    // A package for another channel, a broken chain, garbage: refused, the tower unchanged.
    let mut t = tower.clone();
    let other = TowerPackage { funding: OutPoint { vout: 9, ..package.funding }, ..package.clone() };
    let mut other_bytes = other.encode();
    assert_eq!(DuplexTower::new(&other_bytes).err(), Some(PackageError::NotAChain));
    other_bytes.truncate(5);
    assert!(matches!(t.replace(&other_bytes), Err(PackageError::Decode(_))));
    let mut broken = package.clone();
    broken.txs.swap(0, 1);
    assert_eq!(t.replace(&broken.encode()), Err(PackageError::NotAChain));
    assert_eq!(t, tower);
    assert_eq!(TowerPackage::decode(&package.encode()), Ok(package.clone()));
    // Unrelated transactions, and a chain where the kickoff never confirms: silence.
    assert!(t.block(BlockHeight(5_000), std::slice::from_ref(&p.funding)).is_empty());
}
