//! Regressions found by the duplex simulator (`tests/simulate.rs`), each replayed through the
//! public API with the [`paychan::testing::duplex`] harness.

mod common;

use bitcoin::Txid;
use common::duplex::Pair;
use paychan::core::BlockHeight;
use paychan::driving::ChainEvent;
use paychan::duplex::{Event, Msg, Phase, Role};

const A: Role = Role::Initiator;
const B: Role = Role::Acceptor;

/// Tells both parties that `gone` left the chain (newest first), as a node does on a reorg.
fn unconfirm(p: &mut Pair, gone: &[Txid]) {
    for txid in gone {
        for role in [A, B] {
            let party = &mut p.parties[role.index()];
            let fx = party.ch.handle_chain(ChainEvent::Unconfirmed(*txid), &party.signer);
            p.absorb(role, fx);
        }
    }
}

fn stale_reported(p: &Pair, role: Role) -> bool {
    p.parties[role.index()].events.iter().any(|e| matches!(e, Event::StaleBranchConfirmed { .. }))
}

/// Simulator seed 7567. B accepted a reset and waits for its finish (the `ResetFinish` is lost);
/// A, whose reset completed, force-closes on the new branch. B follows it once the reset's
/// changed node confirms. A reorg then takes that node *and the shared node below it* off the
/// chain: B is back on the part both branches share and must follow its current branch again.
/// Before the fix, B still believed it was on the pending branch, took the shared node's
/// re-confirmation for a node of an old branch (`StaleBranchConfirmed`) and stopped following
/// the close.
#[test]
fn reorg_below_the_pending_branchs_changed_node_follows_the_shared_part_again() {
    let mut p = Pair::open(common::duplex::terms(vec![3, 3]));
    p.pay(A, 40_000);
    p.pay(B, 15_000);

    // A resets; its ResetFinish to B is lost.
    let tip = p.tip();
    let fx = {
        let a = &mut p.parties[A.index()];
        a.ch.reset(&a.signer, tip).expect("reset")
    };
    p.absorb(A, fx);
    while let Some((to, m)) = p.queue.pop_front() {
        if to == B && matches!(m, Msg::ResetFinish(_)) {
            continue;
        }
        let tip = p.tip();
        let party = &mut p.parties[to.index()];
        let fx = party.ch.handle_message(common::duplex::wire(&m), &party.signer, tip).expect("accepted");
        p.absorb(to, fx);
    }
    assert!(!p.a().is_resetting(), "A completed its reset");
    assert!(p.b().is_resetting(), "B waits for the lost finish");
    let level = p.parties[A.index()]
        .events
        .iter()
        .rev()
        .find_map(|e| match *e {
            Event::ResetCompleted { level, .. } => Some(level),
            _ => None,
        })
        .expect("reset completed");
    assert!(level >= 2, "the changed node has a shared non-kickoff node below it (level {level})");
    let new_branch: Vec<Txid> = p.a().current_branch().expect("branch").iter().map(|t| t.compute_txid()).collect();
    let old_branch: Vec<Txid> = p.b().current_branch().expect("branch").iter().map(|t| t.compute_txid()).collect();
    assert_eq!(new_branch[..level], old_branch[..level], "levels below the reset are shared");
    assert_ne!(new_branch[level], old_branch[level]);

    // A force-closes on its new branch; mine until the changed node confirms.
    let fx = {
        let a = &mut p.parties[A.index()];
        a.ch.force_close(&a.signer)
    };
    p.absorb(A, fx);
    for _ in 0..200 {
        if p.chain.confirmation(&new_branch[level]).is_some() {
            break;
        }
        p.mine();
    }
    assert!(p.chain.confirmation(&new_branch[level]).is_some(), "the reset's changed node confirmed");
    assert!(!stale_reported(&p, B));

    // A reorg to a longer chain replaces every block from the shared node below the changed one
    // up to the tip; the replacement blocks mine the same transactions again (the shared node
    // first, the changed node once its lock allows).
    let shared_height = p.chain.confirmation(&new_branch[level - 1]).expect("shared node confirmed");
    let depth = p.chain.height - shared_height + 1;
    let (gone, mined) = p.chain.reorg_to_longer(depth);
    assert!(gone.contains(&new_branch[level - 1]) && gone.contains(&new_branch[level]));
    assert!(mined.iter().any(|(t, _)| t.compute_txid() == new_branch[level - 1]), "the shared node is mined again");
    unconfirm(&mut p, &gone);
    for (tx, h) in &mined {
        for role in [A, B] {
            let party = &mut p.parties[role.index()];
            let fx = party.ch.handle_chain(ChainEvent::Confirmed { tx, height: BlockHeight(*h) }, &party.signer);
            p.absorb(role, fx);
        }
        assert!(!stale_reported(&p, B), "B took its own branch's node {} for a stale one", tx.compute_txid());
    }
    let tip = p.tip();
    for role in [A, B] {
        let party = &mut p.parties[role.index()];
        let fx = party.ch.handle_chain(ChainEvent::Tip(tip), &party.signer);
        p.absorb(role, fx);
    }
    // What the parties rebroadcast while the blocks were disconnected may spend outputs the
    // reorg took away: their wallets resubmit it every block (the mempool refuses it until valid).
    let mut resubmit = Vec::new();
    for role in [A, B] {
        resubmit.append(&mut p.parties[role.index()].pending);
    }

    // B follows the close to the end.
    for _ in 0..200 {
        p.mine_with(&resubmit);
        assert!(!stale_reported(&p, B), "B took a node of its own branch for a stale one");
        if p.b().phase() == Phase::Closed && p.a().phase() == Phase::Closed && p.chain.mempool().is_empty() {
            break;
        }
    }
    assert!(p.chain.confirmation(&new_branch[level - 1]).is_some());
    assert_eq!(p.b().phase(), Phase::Closed, "B followed the close to the end");
    assert_eq!(p.a().phase(), Phase::Closed);
}
