//! Property test over random event orders on the route A –Spilman→ B –duplex→ C –Lightning→ D:
//! messages delivered in random interleavings (each link in order), blocks mined at random
//! moments, links cut when D fulfils, D fulfilling or failing, and expiry deltas around each
//! hop's minimum. Whatever happens, a forwarder never forwards an HTLC whose incoming expiry
//! leaves less than the docs/multihop.md §2 delta, and never fails upstream before the downstream failure
//! is irrevocable (both checked by the harness after every step); every broadcast is valid on the
//! simulated chain (Core's interpreter, lock times enforced).

mod common;

use common::route::{Final, Link, Route};
use paychan::multihop::{ForwardError, ForwardEvent, RefuseReason};
use proptest::prelude::*;

#[derive(Clone, Copy, Debug)]
enum Step {
    Deliver(usize),
    Mine(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![6 => (0usize..6).prop_map(Step::Deliver), 1 => (1u8..6).prop_map(Step::Mine)]
}

fn cut() -> impl Strategy<Value = (Vec<Link>, bool)> {
    prop_oneof![
        Just((vec![], false)),
        Just((vec![Link::BA], false)),
        Just((vec![Link::CB], false)),
        Just((vec![], true)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn forwarders_respect_deltas_and_irrevocability(
        fail in any::<bool>(),
        c_slack in -2i32..3,
        b_slack in -2i32..3,
        (cut_on_fulfil, d_on_chain) in cut(),
        steps in proptest::collection::vec(step(), 0..60),
    ) {
        let mut r = Route::open(if fail { Final::Fail } else { Final::Fulfill });
        r.cut_on_fulfil = cut_on_fulfil;
        r.d_goes_on_chain = d_on_chain;
        let plan = r.plan_with(6, c_slack, b_slack);
        r.install(&plan);
        r.send(&plan);
        for s in steps {
            match s {
                Step::Deliver(q) => {
                    r.deliver(q);
                }
                Step::Mine(n) => {
                    for _ in 0..n {
                        r.mine();
                    }
                }
            }
            prop_assert!(r.violations.is_empty(), "{:?}\n{}", r.violations, r.log.join("\n"));
        }
        // Let everything play out.
        r.run();
        for _ in 0..90 {
            r.mine();
        }
        prop_assert!(r.violations.is_empty(), "{:?}\n{}", r.violations, r.log.join("\n"));
        // A hop whose delta was too small refused; nothing went past it.
        let refused_delta = |events: &[ForwardEvent]| events.iter().any(|e| matches!(
            e,
            ForwardEvent::Refused { reason: RefuseReason::Check(ForwardError::IncorrectCltvExpiry), .. }
        ));
        if b_slack < 0 {
            prop_assert!(refused_delta(&r.b_events));
            prop_assert!(r.c_events.is_empty() && r.d_events.is_empty());
        } else if c_slack < 0 {
            prop_assert!(refused_delta(&r.c_events));
            prop_assert!(r.d_events.is_empty());
        } else {
            prop_assert!(!refused_delta(&r.b_events) && !refused_delta(&r.c_events));
        }
        // The sender never both paid and got refunded.
        let removed = r.a_events.iter().any(|e| matches!(e, paychan::spilman::Event::HtlcRemoved { .. }));
        prop_assert!(!(removed && r.sender_has_preimage()), "{}", r.log.join("\n"));
    }
}
