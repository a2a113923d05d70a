//! The hostile-but-valid strategies of `paychan::testing::strategies::hostile` against an honest
//! channel with the default policy and a fee estimate: `update_fee` at the bounds of its
//! acceptance, dust floods, HTLCs at the edges of its deadlines and `shutdown` to payout scripts
//! at the edge of standardness, in any order. Every message is refused with the channel's encoded
//! state byte-identical, or accepted; an `update_fee` outside 50 %..10× of the estimate and a
//! non-standard `shutdown` script are always refused; and since the peer never signs any of it,
//! after a disconnection the honest party's commitment (what it could broadcast) and balance are
//! the same as before, to the satoshi.

use paychan::core::commitment::ChannelType;
use paychan::driving::{ChainTip, ChannelId};
use paychan::lightning::{ChannelConfig, Msg, Side};
use paychan::testing::lightning::{config, Pair, CHAIN};
use paychan::testing::strategies::hostile;
use proptest::prelude::*;

const ESTIMATE: u32 = 2_500;

fn honest_pair() -> Pair {
    let ct = ChannelType::AnchorsZeroFeeHtlc;
    let honest = ChannelConfig { minimum_depth: 1, ..ChannelConfig::default_for(CHAIN, ct) };
    let mut pair = Pair::open_with(config(ct), honest, 1_000_000, 300_000_000, 2_500);
    let fx = pair.b.ch.handle_fee_estimate(ESTIMATE);
    pair.b.absorb(fx, &mut pair.to_a);
    pair
}

/// What the hostile peer sends, with the outcome the honest side must have (`Some(false)`:
/// always refused).
fn hostile_msgs(cid: ChannelId, tip: u32) -> impl Strategy<Value = Vec<(Msg, Option<bool>)>> {
    let lo = ESTIMATE.div_ceil(2).max(253);
    let hi = (ESTIMATE * 10).min(100_000);
    (
        prop::collection::vec(hostile::hostile_feerate(ESTIMATE), 0..4),
        0usize..35,
        prop::collection::vec(hostile::edge_expiry(tip), 0..3),
        prop::option::of(hostile::edge_shutdown(cid)),
        any::<u64>(),
    )
        .prop_flat_map(move |(rates, dust, expiries, shutdown, order)| {
            (hostile::dust_flood(cid, 0, tip, dust), Just((rates.clone(), expiries.clone(), shutdown.clone(), order)))
        })
        .prop_map(move |(flood, (rates, expiries, shutdown, order))| {
            let mut msgs: Vec<(Msg, Option<bool>)> = rates
                .into_iter()
                .map(|r| {
                    let outside = r < lo || r > hi;
                    (Msg::UpdateFee { channel_id: cid, feerate_per_kw: r }, outside.then_some(false))
                })
                .collect();
            let first = flood.len() as u64;
            msgs.extend(flood.into_iter().map(|m| (m, None)));
            for (id, e) in (first..).zip(expiries) {
                let hash = paychan::core::PaymentHash([id as u8; 32]);
                let onion = paychan::lightning::OnionPacket::zeroed();
                let amount_msat = paychan::core::MilliSats::from_msat(1_000_000);
                let add = Msg::UpdateAddHtlc {
                    channel_id: cid,
                    id,
                    amount_msat,
                    payment_hash: hash,
                    cltv_expiry: e,
                    onion_routing_packet: onion,
                };
                msgs.push((add, None));
            }
            if let Some((m, ok)) = shutdown {
                msgs.push((m, (!ok).then_some(false)));
            }
            // Some interleaving: rotate by the drawn offset.
            let n = msgs.len().max(1);
            msgs.rotate_left((order % n as u64) as usize);
            msgs
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn honest_channel_refuses_or_survives_hostile_but_valid_messages(
        msgs in hostile_msgs(honest_pair().b.ch.channel_id(), 1_001)
    ) {
        let mut pair = honest_pair();
        prop_assert_eq!(pair.tip, 1_001);
        let tip = ChainTip::at(pair.tip);
        let commitment = pair.b.ch.holder_commitment_tx(&pair.b.signer).expect("commitment");
        let balance = pair.b.ch.balances(Side::Holder).holder;
        for (m, expect) in msgs {
            let before = pair.b.ch.snapshot();
            let shown = format!("{m:?}").chars().take(200).collect::<String>();
            match pair.b.ch.handle_message(m, &pair.b.signer, tip) {
                Ok(fx) => {
                    prop_assert_eq!(expect, None, "accepted a message it must refuse: {}", shown);
                    prop_assert!(fx.broadcast.is_empty());
                    pair.b.absorb(fx, &mut pair.to_a);
                }
                Err(_) => prop_assert!(pair.b.ch.snapshot() == before, "refusal changed the state: {}", shown),
            }
        }
        let fx = pair.b.ch.handle_disconnect();
        prop_assert!(fx.broadcast.is_empty());
        let after = pair.b.ch.holder_commitment_tx(&pair.b.signer).expect("commitment");
        prop_assert_eq!(after, commitment);
        prop_assert_eq!(pair.b.ch.balances(Side::Holder).holder, balance);
    }
}
