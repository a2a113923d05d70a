//! A payment over A –Spilman→ B –duplex→ C –Lightning→ D with one payment hash: success,
//! failure at each hop, the on-chain race at each hop, and a property test over event orders.

mod common;

use common::route::{Final, Link, Route, AMOUNT_D};
use paychan::multihop::{ForwardEvent, ForwardState};

fn gains(before: [i128; 4], after: [i128; 4]) -> [i128; 4] {
    [after[0] - before[0], after[1] - before[1], after[2] - before[2], after[3] - before[3]]
}

#[test]
fn success_conserves_value_and_pays_every_hop() {
    let mut r = Route::open(Final::Fulfill);
    let plan = r.plan(6, 0);
    r.install(&plan);
    let before = r.positions();
    r.send(&plan);
    r.run();
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert!(r.sender_has_preimage(), "A learnt the preimage\n{}", r.log.join("\n"));
    assert!(r.settled('B') && r.settled('C'));
    // Every HTLC is folded: nothing in flight anywhere.
    assert!(r.a.state().htlcs.is_empty());
    assert!(r.b.outgoing().htlcs().is_empty());
    assert!(r.c.outgoing().htlcs().iter().all(|h| r.c.outgoing().is_htlc_removed(h.offerer, h.id)));
    let g = gains(before, r.positions());
    let (ab, bc, cd) =
        (plan.ab.amount.to_msat() as i128, plan.bc.amount.to_msat() as i128, plan.cd.amount.to_msat() as i128);
    assert_eq!(g, [-ab, ab - bc, bc - cd, cd], "each hop gains exactly its fee\n{}", r.log.join("\n"));
    assert_eq!(g.iter().sum::<i128>(), 0, "value conserved");
    assert!(g[1] > 0 && g[2] > 0, "forwarders earn");
    assert_eq!(cd, AMOUNT_D as i128);
}

/// Runs a payment that fails somewhere; checks that A learns it, nobody's position moved, and no
/// forwarder failed upstream before the downstream failure was irrevocable.
fn failing(mut r: Route, plan: common::route::Plan) -> Route {
    let before = r.positions();
    r.send(&plan);
    r.run();
    assert!(r.violations.is_empty(), "{:?}\n{}", r.violations, r.log.join("\n"));
    assert!(
        r.a_events.iter().any(|e| matches!(e, paychan::spilman::Event::HtlcRemoved { id: 0 })),
        "A learns the failure\n{}",
        r.log.join("\n")
    );
    assert!(!r.sender_has_preimage());
    assert!(r.a.state().htlcs.is_empty(), "A's HTLC is out of its newest payment");
    assert_eq!(gains(before, r.positions()), [0; 4], "nobody gains or loses\n{}", r.log.join("\n"));
    for t in r.b.tracked().iter().chain(r.c.tracked()) {
        assert_eq!(t.state, ForwardState::Failed);
    }
    r
}

#[test]
fn failure_at_d_propagates_after_each_removal_is_irrevocable() {
    let mut r = Route::open(Final::Fail);
    let plan = r.plan(6, 0);
    r.install(&plan);
    let r = failing(r, plan);
    // C failed upstream only after its Lightning HTLC's removal was committed on both sides, B only
    // after the reset dropping its duplex HTLC completed.
    let pos = |needle: &str| r.log.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle} in log"));
    assert!(pos("C: FailedUpstream") < pos("B: FailedUpstream"));
    assert!(r.b_out_events.iter().any(|e| matches!(e, paychan::duplex::Event::HtlcFailIrrevocable { id: 0 })));
    assert!(r.c_out_events.iter().any(|e| matches!(e, paychan::lightning::Event::HtlcFailed { id: 0, .. })));
    assert!(!r.b.outgoing().has_failed_htlcs() && r.b.outgoing().htlcs().is_empty());
    assert!(r.c.outgoing().is_htlc_removed(paychan::lightning::Side::Holder, 0));
}

#[test]
fn failure_at_c_no_route() {
    let mut r = Route::open(Final::Fulfill);
    let plan = r.plan(6, 0);
    // Only B gets instructions: C has none for this hash.
    r.b.add_route(paychan::multihop::Route { payment_hash: r.hash(), outgoing: plan.bc });
    let r = failing(r, plan);
    assert!(r
        .c_events
        .iter()
        .any(|e| matches!(e, ForwardEvent::Refused { reason: paychan::multihop::RefuseReason::NoRoute, .. })));
    assert!(r.b_out_events.iter().any(|e| matches!(e, paychan::duplex::Event::HtlcFailIrrevocable { id: 0 })));
    assert!(r.d_events.is_empty(), "nothing reached D");
}

#[test]
fn failure_at_b_fee_and_expiry() {
    use paychan::multihop::{ForwardError, RefuseReason};
    for (fee_short, expiry_short, why) in
        [(1_000, 0, ForwardError::FeeInsufficient), (0, 1, ForwardError::IncorrectCltvExpiry)]
    {
        let mut r = Route::open(Final::Fulfill);
        let mut plan = r.plan(6, 0);
        r.install(&plan);
        plan.ab.amount = paychan::core::MilliSats::from_msat(plan.ab.amount.to_msat() - fee_short);
        plan.ab.expiry = paychan::core::BlockHeight(plan.ab.expiry.0 - expiry_short);
        let r = failing(r, plan);
        assert!(
            r.b_events
                .iter()
                .any(|e| matches!(e, ForwardEvent::Refused { reason: RefuseReason::Check(w), .. } if *w == why)),
            "{:?}",
            r.b_events
        );
        assert!(r.c_events.is_empty() && r.b.outgoing().htlcs().is_empty(), "nothing forwarded");
    }
}

/// The confirmed transaction whose witness reveals the preimage, with its height.
fn witness_reveal(r: &Route) -> Option<(bitcoin::Txid, u32)> {
    let hash = r.hash();
    r.chain.confirmed_txs().into_iter().find_map(|tx| {
        tx.input
            .iter()
            .any(|i| hash.find_preimage_in(&i.witness).is_some())
            .then(|| (tx.compute_txid(), r.chain.confirmation(&tx.compute_txid()).expect("confirmed")))
    })
}

#[test]
fn onchain_race_at_cd_lightning() {
    let mut r = Route::open(Final::Fulfill);
    r.d_goes_on_chain = true;
    let plan = r.plan(6, 0);
    r.install(&plan);
    let before = r.positions();
    let c_duplex_before = r.c.incoming().balances().holder.to_sat() as i128 * 1_000;
    r.send(&plan);
    r.run();
    assert!(!r.settled('C'), "C has not heard of the preimage off chain");
    r.mine_until(40, "C learns the preimage from D's on-chain claim", |r| r.settled('C'));
    let (txid, height) = witness_reveal(&r).expect("the preimage is in a confirmed witness");
    assert!(height <= plan.cd.expiry.0, "D's claim {txid} confirmed by the HTLC's expiry");
    assert!(r.chain.height < plan.bc.expiry.0, "C claims upstream before its incoming HTLC expires");
    r.run();
    assert!(r.settled('B') && r.sender_has_preimage(), "{}", r.log.join("\n"));
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    // Off chain upstream of C: A paid, B and C earned exactly their fees there.
    let g = gains(before, r.positions());
    let (ab, bc) = (plan.ab.amount.to_msat() as i128, plan.bc.amount.to_msat() as i128);
    assert_eq!([g[0], g[1]], [-ab, ab - bc]);
    // C received bc on its duplex channel; its Lightning HTLC went to D on chain.
    let c_duplex = r.c.incoming().balances().holder.to_sat() as i128 * 1_000;
    assert_eq!(c_duplex - c_duplex_before, bc);
    let d_claim = r.chain.confirmed_txs().into_iter().find(|t| t.compute_txid() == txid).expect("claim");
    assert_eq!(d_claim.input.len(), 1);
    assert!(r.c.outgoing().closing_kind().is_some());
}

#[test]
fn onchain_race_at_bc_duplex() {
    let mut r = Route::open(Final::Fulfill);
    // C learns the preimage off chain, but its fulfil never reaches B.
    r.cut_on_fulfil = vec![Link::CB];
    let plan = r.plan(6, 0);
    r.install(&plan);
    let before = r.positions();
    r.send(&plan);
    r.run();
    assert!(r.settled('C') && !r.settled('B'));
    r.mine_until(80, "B learns the preimage from C's on-chain claim", |r| r.settled('B'));
    let (txid, height) = witness_reveal(&r).expect("the preimage is in a confirmed witness");
    assert!(height < plan.bc.expiry.0, "C's claim {txid} confirmed before B could time the HTLC out");
    assert!(r.chain.height < plan.ab.expiry.0, "B claims upstream before its incoming HTLC expires");
    assert!(
        r.c_events.iter().any(|e| matches!(e, ForwardEvent::WentOnChain { incoming: true }))
            || r.c.incoming().phase() != paychan::duplex::Phase::Open,
        "C went on chain"
    );
    r.run();
    assert!(r.sender_has_preimage(), "{}", r.log.join("\n"));
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    // Upstream of B everything stayed off chain: A paid ab, B's Spilman side received it.
    let g = gains(before, r.positions());
    let ab = plan.ab.amount.to_msat() as i128;
    assert_eq!(g[0], -ab);
    // C's claim pays C's duplex payout script the HTLC minus the claim fee.
    let claim = r.chain.confirmed_txs().into_iter().find(|t| t.compute_txid() == txid).expect("claim");
    let c_payout = common::duplex::payout(paychan::duplex::Role::Acceptor);
    assert_eq!(claim.output[0].script_pubkey, c_payout);
    assert_eq!(
        claim.output[0].value.to_sat(),
        plan.bc.amount.to_msat() / 1_000 - common::duplex::CLAIM_FEE,
        "C gets the HTLC on chain"
    );
}

#[test]
fn onchain_race_at_ab_spilman() {
    let mut r = Route::open(Final::Fulfill);
    // B learns the preimage, but its fulfil never reaches A: B must claim on chain.
    r.cut_on_fulfil = vec![Link::BA];
    let plan = r.plan(6, 0);
    r.install(&plan);
    r.send(&plan);
    r.run();
    assert!(r.settled('B') && !r.sender_has_preimage());
    r.mine_until(80, "A learns the preimage from B's on-chain claim", |r| r.sender_has_preimage());
    let (txid, height) = witness_reveal(&r).expect("the preimage is in a confirmed witness");
    assert!(height < plan.ab.expiry.0, "B's claim {txid} confirmed before A could time the HTLC out");
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    let claim = r.chain.confirmed_txs().into_iter().find(|t| t.compute_txid() == txid).expect("claim");
    assert_eq!(claim.output[0].script_pubkey, common::route::spilman_script(false));
    assert_eq!(claim.output[0].value.to_sat(), plan.ab.amount.to_msat() / 1_000 - 300, "B gets the HTLC on chain");
    // Downstream, B and C settled off chain: C and D were paid.
    assert!(r.settled('C'));
}

#[test]
fn forwarders_restart_between_every_message() {
    let mut r = Route::open(Final::Fulfill);
    let plan = r.plan(6, 0);
    r.install(&plan);
    let before = r.positions();
    r.send(&plan);
    let mut steps = 0;
    loop {
        r.restart_forwarders();
        if !(0..6).any(|q| r.deliver(q)) {
            break;
        }
        steps += 1;
    }
    assert!(steps > 10, "the payment took {steps} deliveries");
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert!(r.sender_has_preimage(), "{}", r.log.join("\n"));
    let g = gains(before, r.positions());
    let (ab, bc, cd) =
        (plan.ab.amount.to_msat() as i128, plan.bc.amount.to_msat() as i128, plan.cd.amount.to_msat() as i128);
    assert_eq!(g, [-ab, ab - bc, bc - cd, cd]);
}

#[test]
fn silent_downstream_is_timed_out_on_chain_then_failed_back() {
    let mut r = Route::open(Final::Silent);
    let plan = r.plan(6, 0);
    r.install(&plan);
    let before = r.positions();
    r.send(&plan);
    r.run();
    r.mine_until(60, "A learns the failure", |r| {
        r.a_events.iter().any(|e| matches!(e, paychan::spilman::Event::HtlcRemoved { id: 0 }))
    });
    assert!(r.chain.height < plan.ab.expiry.0, "failed back before A's HTLC expired");
    assert!(r.c_events.iter().any(|e| matches!(e, ForwardEvent::WentOnChain { incoming: false })), "C went on chain");
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert!(!r.sender_has_preimage());
    // C's timeout claim: valid only after the HTLC's expiry, and it confirmed.
    let timeout = r
        .chain
        .confirmed_txs()
        .into_iter()
        .find(|t| t.lock_time.to_consensus_u32() == plan.cd.expiry.0)
        .expect("C's HTLC-timeout transaction confirmed");
    assert!(r.chain.confirmation(&timeout.compute_txid()).unwrap() > plan.cd.expiry.0);
    // Upstream of C nothing moved off chain.
    let g = gains(before, r.positions());
    assert_eq!([g[0], g[1]], [0, 0]);
    assert_eq!(r.c.incoming().balances().holder, {
        let fresh = Route::open(Final::Fulfill);
        fresh.c.incoming().balances().holder
    });
}
