//! The duplex `F_out` (docs/multihop.md §2): once the offerer of an HTLC gives up on its peer and closes,
//! how long until the HTLC is resolved on chain. The payee can hold its payment (which carries the
//! HTLC output) back until the offerer's refund, valid at `leaf + T_r`, is about to confirm, and
//! publish it first; the offerer's timeout claim of the HTLC output then needs `S` more blocks,
//! during which the payee claims with the preimage. The old `F_out = D + T_r + S` is one `S`
//! short: a forwarder whose expiry delta was derived from it learns the preimage too late to
//! claim its incoming HTLC and loses the amount. The fixed `D + T_r + 2S` covers the race.

mod common;

use bitcoin::{OutPoint, Transaction};
use common::duplex::{Pair, CLAIM_FEE};
use paychan::core::PaymentPreimage;
use paychan::duplex::{Params, Role};
use paychan::multihop::{e_in, HopKind, SafetyMargins};

const A: Role = Role::Initiator;
const B: Role = Role::Acceptor;
/// `S`: every transaction of the honest offerer confirms exactly `S` blocks after it is
/// broadcast (the worst case the terms assume).
const S: u32 = 3;
const HTLC: u64 = 50_000;

fn spends(tx: &Transaction) -> Vec<OutPoint> {
    tx.input.iter().map(|i| i.previous_output).collect()
}

#[test]
fn payee_wins_the_refund_race_and_claims_after_the_old_f_out() {
    let mut terms = common::duplex::terms(vec![2]);
    terms.params = Params::new(vec![2], 4, 6).expect("params");
    terms.confirm_blocks = S as u16;
    terms.reorg_blocks = 0;
    terms.htlc_grace_blocks = 0;
    let mut p = Pair::open(terms.clone());
    let preimage = PaymentPreimage([0x5a; 32]);
    p.pay(A, 10_000);
    let id = p.add_htlc(A, HTLC, preimage, 30);
    let e = p.chain.height + 30;
    // B learns the preimage (it is the payee, or colludes with it) but A never hears of it.
    {
        let party = &mut p.parties[B.index()];
        let fx = party.ch.fulfill_htlc(id, preimage, &party.signer).expect("fulfil");
        p.absorb(B, fx);
        p.queue.clear();
    }

    // What A broadcast so far (its funding transaction): the close comes after.
    let opened = p.parties[A.index()].broadcast_log.len();
    let mut delayed: Vec<(u32, Transaction)> = Vec::new();
    let mut held: Vec<Transaction> = Vec::new();
    let mut claim_height = None;
    for _ in 0..200 {
        let now = p.chain.height;
        for tx in std::mem::take(&mut p.parties[A.index()].pending) {
            delayed.push((now + S - 1, tx));
        }
        held.extend(std::mem::take(&mut p.parties[B.index()].pending));
        let (ready, later): (Vec<_>, Vec<_>) = delayed.into_iter().partition(|(due, _)| *due <= now);
        delayed = later;
        let ready: Vec<Transaction> = ready.into_iter().map(|(_, tx)| tx).collect();
        // B publishes a transaction of its own only to beat one of A's entering the mempool.
        let extra: Vec<Transaction> = held
            .iter()
            .filter(|b| {
                ready
                    .iter()
                    .any(|a| a.compute_txid() != b.compute_txid() && spends(a).iter().any(|o| spends(b).contains(o)))
            })
            .cloned()
            .collect();
        p.parties[A.index()].pending = ready;
        p.mine_with(&extra);
        let reveal = p.chain.confirmed_txs().into_iter().find_map(|tx| {
            tx.input
                .iter()
                .any(|i| preimage.hash().find_preimage_in(&i.witness).is_some())
                .then(|| (tx.clone(), p.chain.confirmation(&tx.compute_txid()).expect("confirmed")))
        });
        if let Some(r) = reveal {
            claim_height = Some(r);
            break;
        }
    }
    let (claim, r) = claim_height.expect("the HTLC output was claimed with the preimage");
    let g = p.parties[A.index()].broadcast_log.get(opened).expect("A closed").0;
    assert_eq!(g, e, "A gives up on B when the HTLC expires (G = 0)");
    assert_eq!(claim.output[0].script_pubkey, common::duplex::payout(B));
    assert_eq!(claim.output[0].value.to_sat(), HTLC - CLAIM_FEE, "B takes the HTLC");

    let params = p.a().params().clone();
    let d = params.max_close_delay(S);
    let t_r = u32::from(params.refund_delay());
    let old_f_out = d + t_r + S;
    let new_f_out = params.htlc_offer_blocks(S);
    assert_eq!(new_f_out, d + t_r + 2 * S);
    assert!(r - g > old_f_out, "resolved {} blocks after giving up, beyond the old F_out {old_f_out}", r - g);
    assert!(r - g <= new_f_out, "resolved within the new F_out {new_f_out}");

    // A forwarder (incoming over Lightning, E_in = S; R = G = 0) whose delta was derived from
    // the old F_out had its incoming HTLC expire at e + old delta; it learns the preimage at r and
    // needs S blocks to claim upstream: too late, the upstream offerer times it out and A loses
    // HTLC sat. With the new delta the claim confirms in time.
    let m = SafetyMargins { reorg_depth: 0, grace: 0, confirm: S };
    let e_up = e_in(HopKind::Lightning, m);
    let old_delta = old_f_out + e_up;
    let new_delta = params.forward_expiry_delta(S, 0, 0, e_up);
    assert_eq!(new_delta, new_f_out + e_up);
    assert!(r + S > e + old_delta, "old delta: the upstream HTLC expired before the forwarder's claim");
    assert!(r + S <= e + new_delta, "new delta: the forwarder claims upstream in time");
}
