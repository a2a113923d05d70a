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
    let (ab, bc, cd) = (plan.ab.amount.to_msat() as i128, plan.bc.amount.to_msat() as i128, plan.cd.amount.to_msat() as i128);
    assert_eq!(g, [-ab, ab - bc, bc - cd, cd], "each hop gains exactly its fee\n{}", r.log.join("\n"));
    assert_eq!(g.iter().sum::<i128>(), 0, "value conserved");
    assert!(g[1] > 0 && g[2] > 0, "forwarders earn");
    assert_eq!(cd, AMOUNT_D as i128);
}
