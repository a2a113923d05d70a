//! Strategies for a hostile-but-valid Lightning peer: well-formed messages whose values sit at
//! (or just past) the bounds an honest channel accepts, for embedders' own suites. The
//! simulator's hostile peer ([`crate::testing::sim::lightning`]) draws the same kinds of values.
//!
//! ```
//! use paychan::driving::ChannelId;
//! use paychan::testing::strategies::hostile;
//! use proptest::prelude::*;
//! use proptest::strategy::ValueTree;
//! use proptest::test_runner::TestRunner;
//!
//! let mut runner = TestRunner::deterministic();
//! let rate = hostile::hostile_feerate(2_500).new_tree(&mut runner).unwrap().current();
//! assert!(rate >= 252);
//! let flood = hostile::dust_flood(ChannelId([1; 32]), 0, 800_000, 30).new_tree(&mut runner).unwrap().current();
//! assert_eq!(flood.len(), 30);
//! ```

use std::vec;
use std::vec::Vec;

use bitcoin::hashes::Hash;
use bitcoin::ScriptBuf;
use proptest::prelude::*;

use crate::core::{MilliSats, PaymentHash};
use crate::driving::ChannelId;
use crate::lightning::{Msg, OnionPacket};

/// Fee rates (sat per 1000 weight) at the bounds of what a channel with the default policy and
/// fee estimate `estimate` accepts from its peer (`ChannelConfig::default_for`: 50 %..10× of the
/// estimate, 253..=100,000 absolute): just inside and just outside each bound, and any rate.
pub fn hostile_feerate(estimate: u32) -> impl Strategy<Value = u32> {
    let lo = estimate.div_ceil(2).max(253);
    let hi = estimate.saturating_mul(10).min(100_000);
    prop_oneof![
        3 => prop::sample::select(vec![
            lo - 1,
            lo,
            hi,
            hi.saturating_add(1),
            252,
            253,
            100_000,
            100_001,
            u32::MAX,
        ]),
        1 => any::<u32>(),
    ]
}

/// An `update_fee` at the bounds of [`hostile_feerate`].
pub fn hostile_update_fee(channel_id: ChannelId, estimate: u32) -> impl Strategy<Value = Msg> {
    hostile_feerate(estimate).prop_map(move |feerate_per_kw| Msg::UpdateFee { channel_id, feerate_per_kw })
}

/// HTLC expiries at the edges of the deadlines of a channel at height `tip` with the default
/// `HtlcDeadlines` (`claim_margin` 18): just inside and just outside the margin, the tip itself,
/// the past, and the largest block height (`cltv_expiry` at or above 500,000,000 is a time).
pub fn edge_expiry(tip: u32) -> impl Strategy<Value = u32> {
    prop::sample::select(vec![
        tip.saturating_sub(1),
        tip,
        tip + 1,
        tip + 16,
        tip + 17,
        tip + 18,
        tip + 19,
        499_999_999,
        500_000_000,
    ])
}

fn add(channel_id: ChannelId, id: u64, amount_msat: u64, hash: [u8; 32], cltv_expiry: u32) -> Msg {
    Msg::UpdateAddHtlc {
        channel_id,
        id,
        amount_msat: MilliSats::from_msat(amount_msat),
        payment_hash: PaymentHash(hash),
        cltv_expiry,
        onion_routing_packet: OnionPacket::zeroed(),
    }
}

/// `count` `update_add_htlc`s with consecutive ids from `first_id`, each below a 546-sat dust
/// limit (1 msat to 545,999 msat), expiring well after `tip`: a dust flood.
pub fn dust_flood(channel_id: ChannelId, first_id: u64, tip: u32, count: usize) -> impl Strategy<Value = Vec<Msg>> {
    prop::collection::vec((1u64..546_000, any::<[u8; 32]>(), 40u32..400), count).prop_map(move |xs| {
        xs.into_iter()
            .zip(first_id..)
            .map(|((amount, hash, delta), id)| add(channel_id, id, amount, hash, tip + delta))
            .collect()
    })
}

/// An `update_add_htlc` with id `id` expiring at an [`edge_expiry`] of `tip`, for 1 msat, a
/// dust amount or up to `max_msat`.
pub fn edge_add_htlc(channel_id: ChannelId, id: u64, tip: u32, max_msat: u64) -> impl Strategy<Value = Msg> {
    let amount = prop_oneof![Just(1u64), 1u64..546_000, 1u64..=max_msat.max(1)];
    (edge_expiry(tip), amount, any::<[u8; 32]>())
        .prop_map(move |(expiry, amount, hash)| add(channel_id, id, amount, hash, expiry))
}

/// A payout script at the edge of standardness, with whether Bitcoin Core relays a transaction
/// paying it (with `option_shutdown_anysegwit`): P2PKH, P2SH, P2WPKH, P2WSH, witness v1 with 2
/// bytes and v16 with 40 (standard); v0 with 40 bytes, v1 with 41, a bare `OP_TRUE`, an
/// `OP_RETURN` (not accepted as a `shutdown` script).
pub fn edge_payout_script() -> impl Strategy<Value = (ScriptBuf, bool)> {
    let program = |version: u8, len: usize| {
        let mut s = vec![version, len as u8];
        s.extend(core::iter::repeat_n(0x5a, len));
        ScriptBuf::from_bytes(s)
    };
    prop::sample::select(vec![
        (ScriptBuf::new_p2pkh(&bitcoin::PubkeyHash::from_byte_array([0x5a; 20])), true),
        (ScriptBuf::new_p2sh(&bitcoin::ScriptHash::from_byte_array([0x5a; 20])), true),
        (ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([0x5a; 20])), true),
        (ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::from_byte_array([0x5a; 32])), true),
        (program(0x51, 2), true),
        (program(0x60, 40), true),
        (program(0x00, 40), false),
        (program(0x51, 41), false),
        (ScriptBuf::from_bytes(vec![0x51]), false),
        (ScriptBuf::from_bytes(vec![0x6a, 1, 0x5a]), false),
    ])
}

/// A `shutdown` to an [`edge_payout_script`], with whether the script is standard.
pub fn edge_shutdown(channel_id: ChannelId) -> impl Strategy<Value = (Msg, bool)> {
    edge_payout_script().prop_map(move |(scriptpubkey, ok)| (Msg::Shutdown { channel_id, scriptpubkey }, ok))
}
