//! Strategies for every Lightning wire message with random field values (each one encodes and
//! decodes; a channel refuses most of them, which is what hostile-input tests want).

use std::boxed::Box;
use std::sync::OnceLock;
use std::vec;
use std::vec::Vec;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::ecdsa::Signature;
use bitcoin::secp256k1::{All, Message, PublicKey, Secp256k1, SecretKey};
use bitcoin::{Amount, ScriptBuf, Txid};
use proptest::prelude::*;
use proptest::strategy::Union;

use crate::core::keys::PerCommitmentSecret;
use crate::core::{MilliSats, PaymentHash, PaymentPreimage};
use crate::driving::ChannelId;
use crate::lightning::msgs::{AcceptChannel, OpenChannel, OpenTlvs, ONION_PACKET_LEN};
use crate::lightning::{Msg, OnionPacket};

fn secp() -> &'static Secp256k1<All> {
    static SECP: OnceLock<Secp256k1<All>> = OnceLock::new();
    SECP.get_or_init(Secp256k1::new)
}

/// A secret key from 32 random bytes (the rare invalid scalar replaced by 1).
pub fn secret(bytes: [u8; 32]) -> SecretKey {
    SecretKey::from_slice(&bytes).unwrap_or(SecretKey::from_slice(&[1; 32]).expect("valid"))
}

/// Any valid public key.
pub fn pubkey() -> impl Strategy<Value = PublicKey> {
    any::<[u8; 32]>().prop_map(|b| PublicKey::from_secret_key(secp(), &secret(b)))
}

/// A signature of a random digest by a random key (low S, as any signer produces).
pub fn signature() -> impl Strategy<Value = Signature> {
    (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(k, d)| secp().sign_ecdsa(&Message::from_digest(d), &secret(k)))
}

/// Any amount in satoshis.
pub fn sats() -> impl Strategy<Value = Amount> {
    prop_oneof![Just(0), Just(Amount::MAX_MONEY.to_sat()), 0..=Amount::MAX_MONEY.to_sat()].prop_map(Amount::from_sat)
}

/// Any amount in millisatoshis.
pub fn msat() -> impl Strategy<Value = MilliSats> {
    prop_oneof![Just(0), Just(u64::MAX), any::<u64>()].prop_map(MilliSats::from_msat)
}

/// Any channel id.
pub fn channel_id() -> impl Strategy<Value = ChannelId> {
    any::<[u8; 32]>().prop_map(ChannelId)
}

/// Up to `max` random bytes.
pub fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

/// A script of up to 80 random bytes.
pub fn script() -> impl Strategy<Value = ScriptBuf> {
    bytes(80).prop_map(ScriptBuf::from_bytes)
}

/// The TLV extensions of `open_channel`/`accept_channel`.
pub fn open_tlvs() -> impl Strategy<Value = OpenTlvs> {
    (prop::option::of(script()), prop::option::of(bytes(8)))
        .prop_map(|(upfront_shutdown_script, channel_type)| OpenTlvs { upfront_shutdown_script, channel_type })
}

/// Six public keys (the basepoints of `open_channel`/`accept_channel`).
pub fn six_keys() -> impl Strategy<Value = [PublicKey; 6]> {
    prop::array::uniform6(pubkey())
}

/// `open_channel` with random fields.
pub fn open_channel() -> impl Strategy<Value = Msg> {
    (
        (any::<[u8; 32]>(), channel_id(), sats(), msat(), sats(), msat(), sats(), msat()),
        (any::<u32>(), any::<u16>(), any::<u16>(), six_keys(), any::<u8>(), open_tlvs()),
    )
        .prop_map(
            |(
                (chain_hash, id, funding, push, dust, in_flight, reserve, min),
                (feerate, delay, max, k, flags, tlvs),
            )| {
                Msg::OpenChannel(Box::new(OpenChannel {
                    chain_hash,
                    temporary_channel_id: id,
                    funding_satoshis: funding,
                    push_msat: push,
                    dust_limit_satoshis: dust,
                    max_htlc_value_in_flight_msat: in_flight,
                    channel_reserve_satoshis: reserve,
                    htlc_minimum_msat: min,
                    feerate_per_kw: feerate,
                    to_self_delay: delay,
                    max_accepted_htlcs: max,
                    funding_pubkey: k[0],
                    revocation_basepoint: k[1],
                    payment_basepoint: k[2],
                    delayed_payment_basepoint: k[3],
                    htlc_basepoint: k[4],
                    first_per_commitment_point: k[5],
                    channel_flags: flags,
                    tlvs,
                }))
            },
        )
}

/// `accept_channel` with random fields.
pub fn accept_channel() -> impl Strategy<Value = Msg> {
    (
        (channel_id(), sats(), msat(), sats(), msat(), any::<u32>()),
        (any::<u16>(), any::<u16>(), six_keys(), open_tlvs()),
    )
        .prop_map(|((id, dust, in_flight, reserve, min, depth), (delay, max, k, tlvs))| {
            Msg::AcceptChannel(Box::new(AcceptChannel {
                temporary_channel_id: id,
                dust_limit_satoshis: dust,
                max_htlc_value_in_flight_msat: in_flight,
                channel_reserve_satoshis: reserve,
                htlc_minimum_msat: min,
                minimum_depth: depth,
                to_self_delay: delay,
                max_accepted_htlcs: max,
                funding_pubkey: k[0],
                revocation_basepoint: k[1],
                payment_basepoint: k[2],
                delayed_payment_basepoint: k[3],
                htlc_basepoint: k[4],
                first_per_commitment_point: k[5],
                tlvs,
            }))
        })
}

/// A random 1,366-byte onion packet.
pub fn onion_packet() -> impl Strategy<Value = OnionPacket> {
    prop::collection::vec(any::<u8>(), ONION_PACKET_LEN)
        .prop_filter_map("a whole packet", |v| OnionPacket::from_slice(&v))
}

/// Every Lightning message type, with random field values (each encodes and decodes).
pub fn any_msg() -> impl Strategy<Value = Msg> {
    Union::new(vec![
        open_channel().boxed(),
        accept_channel().boxed(),
        (channel_id(), any::<[u8; 32]>(), any::<u16>(), signature())
            .prop_map(|(temporary_channel_id, txid, funding_output_index, signature)| Msg::FundingCreated {
                temporary_channel_id,
                funding_txid: Txid::from_byte_array(txid),
                funding_output_index,
                signature,
            })
            .boxed(),
        (channel_id(), signature())
            .prop_map(|(channel_id, signature)| Msg::FundingSigned { channel_id, signature })
            .boxed(),
        (channel_id(), pubkey())
            .prop_map(|(channel_id, second_per_commitment_point)| Msg::ChannelReady {
                channel_id,
                second_per_commitment_point,
            })
            .boxed(),
        (channel_id(), script())
            .prop_map(|(channel_id, scriptpubkey)| Msg::Shutdown { channel_id, scriptpubkey })
            .boxed(),
        (channel_id(), sats(), signature(), prop::option::of((sats(), sats())))
            .prop_map(|(channel_id, fee_satoshis, signature, range)| Msg::ClosingSigned {
                channel_id,
                fee_satoshis,
                signature,
                fee_range: range.map(|(x, y)| (x.min(y), x.max(y))),
            })
            .boxed(),
        (channel_id(), any::<u64>(), msat(), any::<[u8; 32]>(), any::<u32>(), onion_packet())
            .prop_map(|(channel_id, id, amount_msat, hash, cltv_expiry, onion_routing_packet)| Msg::UpdateAddHtlc {
                channel_id,
                id,
                amount_msat,
                payment_hash: PaymentHash(hash),
                cltv_expiry,
                onion_routing_packet,
            })
            .boxed(),
        (channel_id(), any::<u64>(), any::<[u8; 32]>())
            .prop_map(|(channel_id, id, p)| Msg::UpdateFulfillHtlc {
                channel_id,
                id,
                payment_preimage: PaymentPreimage(p),
            })
            .boxed(),
        (channel_id(), any::<u64>(), bytes(300))
            .prop_map(|(channel_id, id, reason)| Msg::UpdateFailHtlc { channel_id, id, reason })
            .boxed(),
        (channel_id(), signature(), prop::collection::vec(signature(), 0..5))
            .prop_map(|(channel_id, signature, htlc_signatures)| Msg::CommitmentSigned {
                channel_id,
                signature,
                htlc_signatures,
            })
            .boxed(),
        (channel_id(), any::<[u8; 32]>(), pubkey())
            .prop_map(|(channel_id, s, next_per_commitment_point)| Msg::RevokeAndAck {
                channel_id,
                per_commitment_secret: PerCommitmentSecret::from_bytes(s),
                next_per_commitment_point,
            })
            .boxed(),
        (channel_id(), any::<u32>())
            .prop_map(|(channel_id, feerate_per_kw)| Msg::UpdateFee { channel_id, feerate_per_kw })
            .boxed(),
        (channel_id(), any::<u64>(), any::<[u8; 32]>(), any::<u16>())
            .prop_map(|(channel_id, id, sha256_of_onion, failure_code)| Msg::UpdateFailMalformedHtlc {
                channel_id,
                id,
                sha256_of_onion,
                failure_code,
            })
            .boxed(),
        (channel_id(), any::<u64>(), any::<u64>(), any::<[u8; 32]>(), pubkey())
            .prop_map(|(channel_id, next_commitment_number, next_revocation_number, secret, point)| {
                Msg::ChannelReestablish {
                    channel_id,
                    next_commitment_number,
                    next_revocation_number,
                    your_last_per_commitment_secret: PerCommitmentSecret::from_bytes(secret),
                    my_current_per_commitment_point: point,
                }
            })
            .boxed(),
        (channel_id(), bytes(200)).prop_map(|(channel_id, data)| Msg::Error { channel_id, data }).boxed(),
        (channel_id(), bytes(200)).prop_map(|(channel_id, data)| Msg::Warning { channel_id, data }).boxed(),
    ])
}
