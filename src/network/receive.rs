//! The payee's side of an HTLC: what to do with one the channel reported as received
//! ([`Event::HtlcReceived`](crate::lightning::Event::HtlcReceived)) for a payment to this node.
//!
//! [`receive_final`] peels the onion with the node key, decodes the final payload and checks it
//! against the HTLC and the invoice (payment secret, amount, expiry, the invoice's
//! `min_final_cltv_expiry_delta`). On success the embedder settles with
//! [`Channel::fulfill_htlc`]; otherwise [`FailBack::apply`] answers the way BOLT #4 requires:
//! `update_fail_malformed_htlc` for an onion that does not peel, or `update_fail_htlc` with the
//! failure wrapped for the origin (who finds the code and this hop with
//! [`read_failure`](super::onion::read_failure)).
//!
//! ```
//! use paychan::bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
//! use paychan::core::{MilliSats, PaymentHash};
//! use paychan::network::onion::{build_onion, failure, read_failure};
//! use paychan::network::payload::HopPayload;
//! use paychan::network::receive::{receive_final, FailBack, ReceivedHtlc};
//!
//! let payee = SecretKey::from_slice(&[7; 32]).unwrap();
//! let payee_id = PublicKey::from_secret_key(&Secp256k1::new(), &payee);
//! let (hash, secret) = (PaymentHash([1; 32]), [2; 32]);
//! let payload = HopPayload::Final {
//!     amt_to_forward: 5_000,
//!     outgoing_cltv_value: 840,
//!     payment_data: Some((secret, 5_000)),
//!     payment_metadata: None,
//! };
//! let session = SecretKey::from_slice(&[9; 32]).unwrap();
//! let (onion, secrets) = build_onion(&[payee_id], &[payload.encode()], &session, &hash.0).unwrap();
//! let htlc = ReceivedHtlc { onion: &onion, payment_hash: hash, amount: MilliSats::from_msat(5_000), cltv_expiry: 840 };
//! // At height 800 with an invoice asking 40 blocks: accepted.
//! assert!(receive_final(&htlc, &payee, &secret, 40, 800).is_ok());
//! // A prober guessing the secret learns only "unknown payment", attributed to the payee.
//! let Err(FailBack::Fail { reason, .. }) = receive_final(&htlc, &payee, &[0; 32], 40, 800) else { panic!() };
//! let got = read_failure(&secrets, &reason).unwrap();
//! assert_eq!((got.hop, got.code()), (0, Some(failure::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS)));
//! ```

use alloc::vec::Vec;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::ecdh::SharedSecret;
use bitcoin::secp256k1::{PublicKey, SecretKey};

use super::onion::{failure, peel, wrap_failure, OnionError, Peeled};
use super::payload::{HopPayload, Refusal};
use crate::core::encode::Writer;
use crate::core::hashlock::PaymentHash;
use crate::core::units::MilliSats;
use crate::lightning::{Channel, CommandError, Effects, OnionPacket};

/// The HTLC as the channel reported it.
#[derive(Clone, Copy, Debug)]
pub struct ReceivedHtlc<'a> {
    /// Its onion.
    pub onion: &'a OnionPacket,
    /// Its payment hash (the onion's associated data).
    pub payment_hash: PaymentHash,
    /// Its amount.
    pub amount: MilliSats,
    /// Its expiry height.
    pub cltv_expiry: u32,
}

/// How to refuse an HTLC (BOLT #4).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum FailBack {
    /// The onion does not peel (version, key or HMAC): `update_fail_malformed_htlc`, since no
    /// failure can be wrapped for the origin without a shared secret it agrees on.
    Malformed {
        /// SHA256 of the onion as received.
        sha256_of_onion: [u8; 32],
        /// `BADONION | PERM | n`.
        failure_code: u16,
    },
    /// `update_fail_htlc` with `reason`, the failure message wrapped with this hop's shared
    /// secret.
    Fail {
        /// The failure code, for the embedder's logs.
        code: u16,
        /// The wrapped failure.
        reason: Vec<u8>,
    },
}

impl FailBack {
    /// Fails HTLC `id` on `channel` with this answer (then [`Channel::commit`]).
    ///
    /// # Errors
    /// As [`Channel::fail_htlc`] and [`Channel::fail_malformed_htlc`].
    pub fn apply(self, channel: &mut Channel, id: u64) -> Result<Effects, CommandError> {
        match self {
            FailBack::Malformed { sha256_of_onion, failure_code } => {
                channel.fail_malformed_htlc(id, sha256_of_onion, failure_code)
            }
            FailBack::Fail { reason, .. } => channel.fail_htlc(id, reason),
        }
    }

    /// The BOLT #4 failure code.
    pub fn code(&self) -> u16 {
        match self {
            FailBack::Malformed { failure_code, .. } => *failure_code,
            FailBack::Fail { code, .. } => *code,
        }
    }
}

fn fail(shared_secret: &[u8; 32], refusal: &Refusal) -> FailBack {
    FailBack::Fail { code: refusal.code, reason: wrap_failure(shared_secret, &refusal.message()) }
}

/// Checks an HTLC paying this node: peels `htlc.onion` with `node_key`, decodes the final
/// payload, and checks it against the HTLC, the invoice's `payment_secret` and
/// `min_final_cltv_expiry_delta`, at chain height `height`. Returns the payload (settle with
/// [`Channel::fulfill_htlc`]) or how to fail the HTLC back.
///
/// # Errors
/// [`FailBack::Malformed`] for an onion whose version, key or HMAC is bad; [`FailBack::Fail`]
/// with `invalid_onion_payload` for a payload that does not decode, `unknown_next_peer` for an
/// onion asking this node to forward (this function only receives), and the final-hop codes of
/// [`HopPayload::check_final`]; an HTLC expiring before `height + min_final_cltv_expiry_delta`
/// gets `incorrect_or_unknown_payment_details`, as BOLT #4 requires (the payee would otherwise
/// have less time than its invoice asked to claim on chain).
pub fn receive_final(
    htlc: &ReceivedHtlc<'_>,
    node_key: &SecretKey,
    payment_secret: &[u8; 32],
    min_final_cltv_expiry_delta: u32,
    height: u32,
) -> Result<HopPayload, FailBack> {
    let (payload, ss) = match peel(htlc.onion, node_key, &htlc.payment_hash.0) {
        Ok(Peeled::Final { payload, shared_secret }) => (payload, shared_secret),
        Ok(Peeled::Forward { shared_secret, .. }) => {
            return Err(fail(&shared_secret, &Refusal { code: failure::UNKNOWN_NEXT_PEER, data: Vec::new() }));
        }
        Err(e) => return Err(refuse_unpeelable(htlc.onion, node_key, e)),
    };
    let hop = HopPayload::decode(&payload, true).map_err(|r| fail(&ss, &r))?;
    let amount = htlc.amount.to_msat();
    hop.check_final(amount, htlc.cltv_expiry, payment_secret, height).map_err(|r| fail(&ss, &r))?;
    if htlc.cltv_expiry < height.saturating_add(min_final_cltv_expiry_delta) {
        let mut w = Writer::new();
        w.u64(amount).u32(height);
        let r = Refusal { code: failure::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS, data: w.into_bytes() };
        return Err(fail(&ss, &r));
    }
    Ok(hop)
}

fn refuse_unpeelable(onion: &OnionPacket, node_key: &SecretKey, e: OnionError) -> FailBack {
    let bytes = onion.as_bytes();
    match e.malformed_code() {
        Some(failure_code) => {
            FailBack::Malformed { sha256_of_onion: sha256::Hash::hash(bytes).to_byte_array(), failure_code }
        }
        // The HMAC verified, so the key is valid and the origin shares the secret: a bad payload
        // length is an `invalid_onion_payload` it can read.
        None => {
            let ss = PublicKey::from_slice(&bytes[1..34]).map(|e| SharedSecret::new(&e, node_key).secret_bytes());
            match ss {
                Ok(ss) => fail(&ss, &Refusal { code: failure::INVALID_ONION_PAYLOAD, data: Vec::new() }),
                Err(_) => FailBack::Malformed {
                    sha256_of_onion: sha256::Hash::hash(bytes).to_byte_array(),
                    failure_code: failure::INVALID_ONION_KEY,
                },
            }
        }
    }
}
