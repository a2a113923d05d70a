//! Property tests: random sequences of payments, HTLCs (added, fulfilled, failed), resets and
//! blocks conserve the channel value, keep both parties' views identical, and leave the state
//! untouched whenever a command is refused; a cooperative close then pays each party its balance
//! to the satoshi. Plus the counting formulas against a brute-force walk of the counter.

mod common;

use bitcoin::Amount;
use common::duplex::Pair;
use paychan::core::PaymentPreimage;
use paychan::duplex::{tree, Params, Phase, Role};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Pay(Role, u64),
    AddHtlc(Role, u64),
    Fulfill(Role, usize),
    Fail(Role, usize),
    Reset(Role),
    Mine(u8),
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Initiator), Just(Role::Acceptor)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (role(), 1u64..60_000).prop_map(|(r, a)| Op::Pay(r, a)),
        2 => (role(), 546u64..20_000).prop_map(|(r, a)| Op::AddHtlc(r, a)),
        2 => (role(), 0usize..4).prop_map(|(r, i)| Op::Fulfill(r, i)),
        1 => (role(), 0usize..4).prop_map(|(r, i)| Op::Fail(r, i)),
        2 => role().prop_map(Op::Reset),
        1 => (1u8..4).prop_map(Op::Mine),
    ]
}

fn preimage(offerer: Role, id: u64) -> PaymentPreimage {
    PaymentPreimage([(offerer.index() as u8) * 100 + id as u8 + 1; 32])
}

/// Runs a command on `who`; on refusal checks the state is unchanged.
fn attempt<T>(
    p: &mut Pair,
    who: Role,
    f: impl FnOnce(
        &mut paychan::duplex::Channel,
        &paychan::core::sign::InMemorySigner,
    ) -> Result<(T, paychan::duplex::Effects), paychan::duplex::CommandError>,
) -> Option<T> {
    let party = &mut p.parties[who.index()];
    let before = party.ch.snapshot();
    match f(&mut party.ch, &party.signer) {
        Ok((t, fx)) => {
            p.absorb(who, fx);
            p.run();
            Some(t)
        }
        Err(_) => {
            assert_eq!(p.parties[who.index()].ch.snapshot(), before, "a refused command changes nothing");
            None
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_conserve_value(ops in proptest::collection::vec(op(), 1..40)) {
        let mut p = Pair::open(common::duplex::terms(vec![4, 4, 4]));
        let value = p.a().terms().channel_value();
        for op in ops {
            let tip = p.tip();
            match op {
                Op::Pay(who, sats) => {
                    attempt(&mut p, who, |c, s| c.pay(Amount::from_sat(sats), s).map(|fx| ((), fx)));
                }
                Op::AddHtlc(who, sats) => {
                    let expiry = paychan::core::BlockHeight(tip.height.0 + 1_500);
                    let id = p.ch(who).next_htlc_id();
                    attempt(&mut p, who, |c, s| c.add_htlc(Amount::from_sat(sats), preimage(who, id).hash(), expiry, s, tip));
                }
                Op::Fulfill(who, i) => {
                    let offered: Vec<_> = p.ch(who).leaf_state(!who).htlcs.clone();
                    if let Some(h) = offered.get(i % offered.len().max(1)).copied() {
                        attempt(&mut p, who, |c, s| c.fulfill_htlc(h.id, preimage(!who, h.id), s).map(|fx| ((), fx)));
                    }
                }
                Op::Fail(who, i) => {
                    let offered: Vec<_> = p.ch(who).leaf_state(!who).htlcs.clone();
                    if let Some(h) = offered.get(i % offered.len().max(1)).copied() {
                        attempt(&mut p, who, |c, _| c.fail_htlc(h.id).map(|fx| ((), fx)));
                    }
                }
                Op::Reset(who) => {
                    attempt(&mut p, who, |c, s| c.reset(s, tip).map(|fx| ((), fx)));
                }
                Op::Mine(n) => {
                    for _ in 0..n {
                        p.mine();
                    }
                }
            }
            prop_assert!(p.queue.is_empty());
            prop_assert_eq!(p.a().phase(), Phase::Open);
            p.assert_views_agree();
            prop_assert_eq!(p.a().balances().total(), Some(value));
            prop_assert_eq!(p.a().digits(), p.b().digits());
        }
        // Settle: fulfil every HTLC, then close cooperatively; each party gets its balance.
        for who in [Role::Initiator, Role::Acceptor] {
            let offered: Vec<_> = p.ch(who).leaf_state(!who).htlcs.clone();
            for h in offered {
                attempt(&mut p, who, |c, s| c.fulfill_htlc(h.id, preimage(!who, h.id), s).map(|fx| ((), fx)));
            }
        }
        if p.a().htlcs().is_empty() {
            let (a, b) = (p.a().balances().holder.to_sat(), p.b().balances().holder.to_sat());
            let fx = p.parties[0].ch.close(&p.parties[0].signer).expect("close");
            p.absorb(Role::Initiator, fx);
            p.run();
            p.mine();
            let dust = common::duplex::DUST;
            prop_assert_eq!(p.paid_to(Role::Initiator), if a >= dust { a } else { 0 });
            prop_assert_eq!(p.paid_to(Role::Acceptor), if b >= dust { b } else { 0 });
            prop_assert_eq!(p.a().phase(), Phase::Closed);
        }
    }

    #[test]
    fn counting_formulas_match_the_counter(radix in proptest::collection::vec(1u32..5, 1..5), step in 1u16..50, s in 0u32..10) {
        let params = Params::new(radix.clone(), step, 10).unwrap();
        let mut digits = tree::first(&params);
        let mut states = 1u64;
        let worst = params.max_close_delay(s);
        while let Some((next, level)) = tree::successor(&params, &digits) {
            prop_assert_eq!(tree::first_difference(&digits, &next), Some(level));
            prop_assert!(params.close_delay(&next, s).unwrap() <= worst);
            digits = next;
            states += 1;
        }
        prop_assert_eq!(states, params.states());
        prop_assert_eq!(params.resets(), states - 1);
        prop_assert_eq!(params.close_delay(&tree::first(&params), s).unwrap(), params.max_close_delay(s));
        prop_assert_eq!(params.max_close_delay(s), (radix.len() as u32 + 1) * s + radix.iter().map(|k| (k - 1) * u32::from(step)).sum::<u32>());
        prop_assert_eq!(params.close_delay(&digits, s).unwrap(), (radix.len() as u32 + 1) * s);
    }
}
