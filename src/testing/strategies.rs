//! Proptest strategies for the crate's public inputs (feature `proptest`), valid and hostile.
//!
//! Valid values come from the crate's own constructors; hostile byte strings are valid
//! encodings mutated (truncated, extended, bytes flipped), which is what a decoder must survive.

pub mod duplex;
pub mod hostile;
pub mod lightning;
pub mod spilman;

use std::vec::Vec;

use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bitcoin::Amount;
use proptest::collection::vec;
use proptest::prelude::*;

use crate::core::keys::{ChannelSecrets, Seed};
use crate::core::sign::InMemorySigner;
use crate::core::{BlockHeight, MilliSats, PaymentPreimage};

/// A 32-byte seed.
pub fn seed() -> impl Strategy<Value = Seed> {
    any::<[u8; 32]>().prop_map(Seed::from_bytes)
}

/// A signer of channel `0` of a random seed.
pub fn signer() -> impl Strategy<Value = InMemorySigner> {
    seed().prop_map(|s| InMemorySigner::new(ChannelSecrets::from_seed(&s, 0)))
}

/// A valid secret key (bytes below the curve order, not zero).
pub fn secret_key() -> impl Strategy<Value = SecretKey> {
    any::<[u8; 32]>().prop_filter_map("not a valid secret key", |b| SecretKey::from_slice(&b).ok())
}

/// A valid public key.
pub fn public_key() -> impl Strategy<Value = PublicKey> {
    secret_key().prop_map(|k| PublicKey::from_secret_key(&Secp256k1::signing_only(), &k))
}

/// An amount in `min..=max` satoshi.
pub fn amount(min: u64, max: u64) -> impl Strategy<Value = Amount> {
    (min..=max).prop_map(Amount::from_sat)
}

/// Any amount a peer could write on the wire, including absurd ones (above 21M BTC, zero).
pub fn hostile_amount() -> impl Strategy<Value = Amount> {
    prop_oneof![Just(Amount::ZERO), Just(Amount::MAX), Just(Amount::MAX_MONEY), any::<u64>().prop_map(Amount::from_sat)]
}

/// An amount in `min..=max` millisatoshi.
pub fn msat(min: u64, max: u64) -> impl Strategy<Value = MilliSats> {
    (min..=max).prop_map(MilliSats::from_msat)
}

/// A payment preimage.
pub fn preimage() -> impl Strategy<Value = PaymentPreimage> {
    any::<[u8; 32]>().prop_map(PaymentPreimage)
}

/// A block height in `min..=max`.
pub fn height(min: u32, max: u32) -> impl Strategy<Value = BlockHeight> {
    (min..=max).prop_map(BlockHeight)
}

/// An HTLC to offer: its amount (sat), preimage and expiry delta (blocks after the tip).
#[derive(Clone, Debug)]
pub struct HtlcSpec {
    /// The amount in satoshi.
    pub amount: u64,
    /// The preimage (its hash goes into the HTLC).
    pub preimage: PaymentPreimage,
    /// Blocks from the tip to the expiry.
    pub expiry_delta: u32,
}

/// A set of up to `max` HTLCs of `min_sat..=max_sat` each, expiring `min_delta..=max_delta`
/// blocks after the tip.
pub fn htlc_set(
    max: usize,
    min_sat: u64,
    max_sat: u64,
    min_delta: u32,
    max_delta: u32,
) -> impl Strategy<Value = Vec<HtlcSpec>> {
    vec(
        ((min_sat..=max_sat), preimage(), (min_delta..=max_delta))
            .prop_map(|(amount, preimage, expiry_delta)| HtlcSpec { amount, preimage, expiry_delta }),
        0..=max,
    )
}

/// Duplex tree radices: 1 to 3 levels of 2 to 4 states each.
pub fn duplex_radix() -> impl Strategy<Value = Vec<u32>> {
    vec(2u32..=4, 1..=3)
}

/// A hostile variant of a valid encoding: truncated, extended with junk, or with bytes flipped.
pub fn mutated(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = valid.len();
    let (a, b, c) = (valid.clone(), valid.clone(), valid);
    prop_oneof![
        (0..=len).prop_map(move |n| a[..n].to_vec()),
        vec(any::<u8>(), 1..64).prop_map(move |junk| {
            let mut v = b.clone();
            v.extend(junk);
            v
        }),
        vec((any::<usize>(), 1u8..=255), 1..8).prop_map(move |flips| {
            let mut v = c.clone();
            for (at, x) in flips {
                if !v.is_empty() {
                    let i = at % v.len();
                    v[i] ^= x;
                }
            }
            v
        }),
    ]
}

/// Any message of any layer as bytes: a valid encoding from `valid` or a mutation of one.
pub fn message_bytes(valid: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let pick = valid.clone();
    (0..valid.len().max(1)).prop_flat_map(move |i| {
        let v = pick.get(i).cloned().unwrap_or_default();
        prop_oneof![Just(v.clone()), mutated(v)]
    })
}
