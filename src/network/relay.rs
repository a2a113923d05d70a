//! A forwarding node's side of an HTLC: peel its onion layer with the node key and read where
//! to send it on, or how to fail it back (BOLT #4). The policy checks (fee, expiry delta) and
//! the outgoing offer are [`multihop::Forwarder`](crate::multihop::Forwarder)'s; this module
//! is the onion half.
//!
//! ```
//! use paychan::bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
//! use paychan::core::{MilliSats, PaymentHash};
//! use paychan::network::noise::InMemoryNodeSigner;
//! use paychan::network::onion::build_onion;
//! use paychan::network::payload::HopPayload;
//! use paychan::network::receive::ReceivedHtlc;
//! use paychan::network::relay::peel_relay;
//!
//! let secp = Secp256k1::new();
//! let (bob, carol) = (SecretKey::from_slice(&[7; 32]).unwrap(), SecretKey::from_slice(&[8; 32]).unwrap());
//! let route = [PublicKey::from_secret_key(&secp, &bob), PublicKey::from_secret_key(&secp, &carol)];
//! let to_carol = HopPayload::Forward { amt_to_forward: 5_000, outgoing_cltv_value: 840, short_channel_id: 42 };
//! let at_carol = HopPayload::Final {
//!     amt_to_forward: 5_000,
//!     outgoing_cltv_value: 840,
//!     payment_data: Some(([2; 32], 5_000)),
//!     payment_metadata: None,
//!     keysend_preimage: None,
//! };
//! let hash = PaymentHash([1; 32]);
//! let session = SecretKey::from_slice(&[9; 32]).unwrap();
//! let (onion, _) = build_onion(&secp, &route, &[to_carol.encode(), at_carol.encode()], &session, &hash.0).unwrap();
//! let htlc = ReceivedHtlc { onion: &onion, payment_hash: hash, amount: MilliSats::from_msat(6_000), cltv_expiry: 880 };
//! let relay = peel_relay(&htlc, &InMemoryNodeSigner::new(bob), 800).unwrap();
//! assert_eq!((relay.short_channel_id, relay.amt_to_forward, relay.outgoing_cltv_value), (42, 5_000, 840));
//! // `relay.next` is Carol's onion: the outgoing `update_add_htlc` carries it.
//! ```

use core::fmt;

use super::noise::NodeSigner;
use super::onion::{failure, packet_shared_secret, peel_with_signer, Peeled};
use super::payload::{HopPayload, Refusal};
use super::receive::{fail, refuse_unpeelable, FailBack, ReceivedHtlc};
use crate::core::encode::Writer;
use crate::lightning::OnionPacket;

/// What a forwarding node found in its layer: the next hop's instructions and onion.
#[derive(Clone, PartialEq, Eq)]
pub struct Relay {
    /// The outgoing channel the origin chose.
    pub short_channel_id: u64,
    /// msat to offer on it.
    pub amt_to_forward: u64,
    /// The outgoing HTLC's expiry.
    pub outgoing_cltv_value: u32,
    /// The onion for the next hop, to carry in the outgoing `update_add_htlc`.
    pub next: OnionPacket,
    /// The secret shared with the origin: wraps this node's failures and obfuscates the
    /// downstream ones on their way back. Keep it as long as the HTLC is in flight.
    pub shared_secret: [u8; 32],
}

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("short_channel_id", &self.short_channel_id)
            .field("amt_to_forward", &self.amt_to_forward)
            .field("outgoing_cltv_value", &self.outgoing_cltv_value)
            .finish_non_exhaustive()
    }
}

/// Peels the onion of an HTLC offered to a forwarding node and reads the next hop's
/// instructions; `height` is the chain tip (for the data of a final-hop refusal).
///
/// # Errors
/// [`FailBack::Malformed`] for an onion whose version, key or HMAC is bad (or a node signer
/// that cannot answer: no secret to wrap a failure with); [`FailBack::Fail`] wrapped for the
/// origin with `invalid_onion_payload` for a payload that does not decode or lacks a field, and
/// `incorrect_or_unknown_payment_details` for an onion that ends here: a forwarding node
/// receives no payments (the payee's path is [`super::receive`]).
pub fn peel_relay<N: NodeSigner + ?Sized>(htlc: &ReceivedHtlc<'_>, node: &N, height: u32) -> Result<Relay, FailBack> {
    match peel_with_signer(htlc.onion, node, &htlc.payment_hash.0) {
        Ok(Peeled::Forward { payload, next, shared_secret }) => match HopPayload::decode(&payload, false) {
            Ok(HopPayload::Forward { amt_to_forward, outgoing_cltv_value, short_channel_id }) => {
                Ok(Relay { short_channel_id, amt_to_forward, outgoing_cltv_value, next, shared_secret })
            }
            Ok(HopPayload::Final { .. }) => {
                Err(fail(&shared_secret, &Refusal { code: failure::INVALID_ONION_PAYLOAD, data: alloc::vec![] }))
            }
            Err(r) => Err(fail(&shared_secret, &r)),
        },
        Ok(Peeled::Final { shared_secret, .. }) => {
            let mut w = Writer::new();
            w.u64(htlc.amount.to_msat()).u32(height);
            let r = Refusal { code: failure::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS, data: w.into_bytes() };
            Err(fail(&shared_secret, &r))
        }
        Err(e) => Err(refuse_unpeelable(htlc.onion, packet_shared_secret(htlc.onion, node), e)),
    }
}

/// The failure a forwarding node sends upstream for `refusal`, wrapped with the HTLC's shared
/// secret.
pub fn refuse(shared_secret: &[u8; 32], refusal: &Refusal) -> FailBack {
    fail(shared_secret, refusal)
}

/// What a forwarding node sends upstream when the downstream peer failed the HTLC with
/// `update_fail_malformed_htlc` (BOLT #4): an `update_fail_htlc` whose message is the
/// downstream `failure_code` with `sha256_of_onion` as its data, wrapped as if this node were
/// the erring one (the origin, seeing a BADONION code from this hop, blames the next one).
pub fn relay_malformed(shared_secret: &[u8; 32], sha256_of_onion: &[u8; 32], failure_code: u16) -> FailBack {
    fail(shared_secret, &Refusal { code: failure_code, data: sha256_of_onion.to_vec() })
}

/// What a forwarding node sends upstream when the downstream peer failed the HTLC with
/// `update_fail_htlc`: the reason obfuscated with this hop's shared secret (BOLT #4: only the
/// origin can read it). `code` of the result is 0: this node cannot read it either.
pub fn relay_failure(shared_secret: &[u8; 32], mut reason: alloc::vec::Vec<u8>) -> FailBack {
    super::onion::obfuscate_failure(shared_secret, &mut reason);
    FailBack::Fail { code: 0, reason }
}
