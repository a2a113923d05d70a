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
//! let secp = Secp256k1::new();
//! let payee_id = PublicKey::from_secret_key(&secp, &payee);
//! let (hash, secret) = (PaymentHash([1; 32]), [2; 32]);
//! let payload = HopPayload::Final {
//!     amt_to_forward: 5_000,
//!     outgoing_cltv_value: 840,
//!     payment_data: Some((secret, 5_000)),
//!     payment_metadata: None,
//!     keysend_preimage: None,
//! };
//! let session = SecretKey::from_slice(&[9; 32]).unwrap();
//! let (onion, secrets) = build_onion(&secp, &[payee_id], &[payload.encode()], &session, &hash.0).unwrap();
//! let htlc = ReceivedHtlc { onion: &onion, payment_hash: hash, amount: MilliSats::from_msat(5_000), cltv_expiry: 840 };
//! // At height 800 with an invoice asking 40 blocks: accepted.
//! assert!(receive_final(&htlc, &payee, &secret, 40, 800).is_ok());
//! // A prober guessing the secret learns only "unknown payment", attributed to the payee.
//! let Err(FailBack::Fail { reason, .. }) = receive_final(&htlc, &payee, &[0; 32], 40, 800) else { panic!() };
//! let got = read_failure(&secrets, &reason).unwrap();
//! assert_eq!((got.hop, got.code()), (0, Some(failure::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS)));
//! ```

use alloc::vec::Vec;
use core::fmt;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::ecdh::SharedSecret;
use bitcoin::secp256k1::{PublicKey, SecretKey};

use super::noise::NodeSigner;
use super::onion::{failure, packet_shared_secret, peel, peel_with_signer, wrap_failure, OnionError, Peeled};
use super::payload::{unknown_payment, HopPayload, Refusal};
use crate::core::hashlock::{PaymentHash, PaymentPreimage};
use crate::core::units::MilliSats;
use crate::lightning::{Channel, CommandError, Effects, HtlcRefusal, OnionPacket};

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
        /// The failure code, for the embedder's logs (0 for a downstream failure relayed: only
        /// the origin can read it).
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

pub(super) fn fail(shared_secret: &[u8; 32], refusal: &Refusal) -> FailBack {
    FailBack::Fail { code: refusal.code, reason: wrap_failure(shared_secret, &refusal.message()) }
}

/// Checks an HTLC paying this node: peels `htlc.onion` with `node_key`, decodes the final
/// payload, and checks it against the HTLC, the invoice's `payment_secret` and
/// `min_final_cltv_expiry_delta`, at chain height `height`. Returns the payload (settle with
/// [`Channel::fulfill_htlc`]) or how to fail the HTLC back. A part of a multi-part payment is
/// refused here: see [`receive_part`].
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
    let (hop, ss) = peel_final(htlc, node_key)?;
    let amount = htlc.amount.to_msat();
    hop.check_final(amount, htlc.cltv_expiry, payment_secret, height).map_err(|r| fail(&ss, &r))?;
    check_final_delta(htlc, min_final_cltv_expiry_delta, height).map_err(|r| fail(&ss, &r))?;
    Ok(hop)
}

/// Checks an HTLC paying this node that may be one part of a multi-part payment (`basic_mpp`),
/// or a keysend: as [`receive_final`], but the payload's `total_msat` may exceed this part
/// (hand the part to an [`MppCollector`](super::mpp::MppCollector), which settles only when the
/// parts add up). `payment_secret` is the invoice's for the HTLC's payment hash, or `None` when
/// this node issued no invoice for it: then the payload must carry a `keysend_preimage` whose
/// SHA256 is the payment hash.
///
/// # Errors
/// As [`receive_final`]; a keysend without a preimage, or with one that does not match the
/// payment hash, gets `incorrect_or_unknown_payment_details`, the answer for an unknown hash,
/// before any amount or expiry check (a prober learns nothing, and nothing is revealed).
pub fn receive_part(
    htlc: &ReceivedHtlc<'_>,
    node_key: &SecretKey,
    payment_secret: Option<&[u8; 32]>,
    min_final_cltv_expiry_delta: u32,
    height: u32,
) -> Result<FinalPart, FailBack> {
    let (hop, ss) = peel_final(htlc, node_key)?;
    let amount = htlc.amount.to_msat();
    let keysend = match &hop {
        HopPayload::Final { keysend_preimage, .. } => *keysend_preimage,
        HopPayload::Forward { .. } => None,
    };
    if payment_secret.is_none() && !keysend.is_some_and(|p| htlc.payment_hash.is_unlocked_by(&p)) {
        return Err(fail(&ss, &unknown_payment(amount, height)));
    }
    let total = hop.check_final_part(amount, htlc.cltv_expiry, payment_secret, height).map_err(|r| fail(&ss, &r))?;
    check_final_delta(htlc, min_final_cltv_expiry_delta, height).map_err(|r| fail(&ss, &r))?;
    let set_secret = match &hop {
        HopPayload::Final { payment_data: Some((secret, _)), .. } => Some(*secret),
        _ => None,
    };
    Ok(FinalPart {
        payload: hop,
        payment_hash: htlc.payment_hash,
        amount_msat: amount,
        cltv_expiry: htlc.cltv_expiry,
        total_msat: total,
        set_secret,
        preimage: if payment_secret.is_none() { keysend } else { None },
        shared_secret: ss,
    })
}

/// Checks a single-part keysend paying this node: [`receive_part`] without an invoice, the whole
/// payment in this HTLC. Returns the payload and the payer's preimage, checked against the
/// payment hash: settle with [`Channel::fulfill_htlc`].
///
/// # Errors
/// As [`receive_part`]; a part of a multi-part keysend (a `total_msat` above this HTLC's
/// `amt_to_forward`) gets `incorrect_or_unknown_payment_details` here: collect those with an
/// [`MppCollector`](super::mpp::MppCollector).
pub fn receive_keysend(
    htlc: &ReceivedHtlc<'_>,
    node_key: &SecretKey,
    min_final_cltv_expiry_delta: u32,
    height: u32,
) -> Result<(HopPayload, PaymentPreimage), FailBack> {
    let part = receive_part(htlc, node_key, None, min_final_cltv_expiry_delta, height)?;
    match (&part.payload, part.preimage) {
        (HopPayload::Final { amt_to_forward, .. }, Some(preimage)) if *amt_to_forward == part.total_msat => {
            Ok((part.payload, preimage))
        }
        _ => Err(part.fail(&unknown_payment(part.amount_msat, height))),
    }
}

/// One HTLC paying this node, checked by [`receive_part`]: what a multi-part collector needs,
/// including the shared secret to fail it back with (`Debug` leaves the secrets out).
#[derive(Clone, PartialEq, Eq)]
pub struct FinalPart {
    payload: HopPayload,
    payment_hash: PaymentHash,
    amount_msat: u64,
    cltv_expiry: u32,
    total_msat: u64,
    set_secret: Option<[u8; 32]>,
    preimage: Option<PaymentPreimage>,
    shared_secret: [u8; 32],
}

impl fmt::Debug for FinalPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FinalPart")
            .field("payment_hash", &self.payment_hash)
            .field("amount_msat", &self.amount_msat)
            .field("cltv_expiry", &self.cltv_expiry)
            .field("total_msat", &self.total_msat)
            .finish_non_exhaustive()
    }
}

impl FinalPart {
    /// The final payload.
    pub fn payload(&self) -> &HopPayload {
        &self.payload
    }

    /// The HTLC's payment hash.
    pub fn payment_hash(&self) -> PaymentHash {
        self.payment_hash
    }

    /// The HTLC's amount, msat (at least the payload's `amt_to_forward`).
    pub fn amount_msat(&self) -> u64 {
        self.amount_msat
    }

    /// The HTLC's expiry height.
    pub fn cltv_expiry(&self) -> u32 {
        self.cltv_expiry
    }

    /// The whole payment's `total_msat` (this part's `amt_to_forward` without `payment_data`).
    pub fn total_msat(&self) -> u64 {
        self.total_msat
    }

    /// The payment secret the payload carries, if any (the invoice's, checked, for an invoice
    /// payment; the payer's choice for a keysend).
    pub fn payment_secret(&self) -> Option<[u8; 32]> {
        self.set_secret
    }

    /// A keysend's preimage, checked against the payment hash (`None` for an invoice payment,
    /// whose preimage the payee already holds).
    pub fn preimage(&self) -> Option<PaymentPreimage> {
        self.preimage
    }

    /// How to fail this HTLC back with `refusal`, wrapped for its origin.
    pub fn fail(&self, refusal: &Refusal) -> FailBack {
        fail(&self.shared_secret, refusal)
    }
}

/// Peels a final onion and decodes its payload, or the answer for one that does not.
fn peel_final(htlc: &ReceivedHtlc<'_>, node_key: &SecretKey) -> Result<(HopPayload, [u8; 32]), FailBack> {
    let (payload, ss) = match peel(htlc.onion, node_key, &htlc.payment_hash.0) {
        Ok(Peeled::Final { payload, shared_secret }) => (payload, shared_secret),
        Ok(Peeled::Forward { shared_secret, .. }) => {
            return Err(fail(&shared_secret, &Refusal { code: failure::UNKNOWN_NEXT_PEER, data: Vec::new() }));
        }
        Err(e) => {
            let ss = PublicKey::from_slice(&htlc.onion.as_bytes()[1..34])
                .map(|k| SharedSecret::new(&k, node_key).secret_bytes())
                .map_err(|_| OnionError::BadKey);
            return Err(refuse_unpeelable(htlc.onion, ss, e));
        }
    };
    let hop = HopPayload::decode(&payload, true).map_err(|r| fail(&ss, &r))?;
    Ok((hop, ss))
}

/// BOLT #4: an HTLC expiring before `height + min_final_cltv_expiry_delta` is refused as an
/// unknown payment.
fn check_final_delta(htlc: &ReceivedHtlc<'_>, min_final_cltv_expiry_delta: u32, height: u32) -> Result<(), Refusal> {
    if htlc.cltv_expiry < height.saturating_add(min_final_cltv_expiry_delta) {
        return Err(unknown_payment(htlc.amount.to_msat(), height));
    }
    Ok(())
}

/// BOLT #4's answer to an HTLC that the channel itself refused
/// ([`Event::HtlcRefused`](crate::lightning::Event::HtlcRefused), with
/// [`Channel::defer_refusals`] on), for a forwarding node and a payee alike: the failure wrapped
/// with the onion's shared secret, so that the origin attributes it to this hop. The onion is
/// peeled with `node` first, as for any HTLC:
///
/// * an onion that does not peel gets [`FailBack::Malformed`] (or `invalid_onion_payload`), as
///   in [`receive_final`];
/// * at a forwarding hop, the channel's own code, with an (empty) `channel_update`:
///   `expiry_too_soon` for [`HtlcRefusal::ExpiryTooSoon`], `temporary_channel_failure` for the
///   others ([`HtlcRefusal::failure_code`]);
/// * at the final hop, `incorrect_or_unknown_payment_details` with `htlc_msat` and `height` for an
///   expiry too soon (BOLT #4's answer to a final expiry below what the payee needs, which tells a
///   prober nothing more), `temporary_channel_failure` for the others.
///
/// `height` is the chain tip.
pub fn answer_refusal<N: NodeSigner + ?Sized>(
    htlc: &ReceivedHtlc<'_>,
    reason: HtlcRefusal,
    node: &N,
    height: u32,
) -> FailBack {
    let channel_refusal = Refusal::with_update(reason.failure_code(), &[]);
    match peel_with_signer(htlc.onion, node, &htlc.payment_hash.0) {
        Ok(Peeled::Forward { shared_secret, .. }) => fail(&shared_secret, &channel_refusal),
        Ok(Peeled::Final { shared_secret, .. }) => {
            let refusal = if reason == HtlcRefusal::ExpiryTooSoon {
                unknown_payment(htlc.amount.to_msat(), height)
            } else {
                channel_refusal
            };
            fail(&shared_secret, &refusal)
        }
        Err(e) => refuse_unpeelable(htlc.onion, packet_shared_secret(htlc.onion, node), e),
    }
}

/// The plain answer the channel itself gives a refused HTLC (code and an empty
/// `channel_update`, not wrapped): for an HTLC without an onion, where nothing can be wrapped.
pub(crate) fn plain_refusal(reason: HtlcRefusal) -> FailBack {
    let code = reason.failure_code();
    FailBack::Fail { code, reason: Refusal::with_update(code, &[]).message() }
}

/// The answer to an onion that did not peel: `update_fail_malformed_htlc` with its code for a
/// bad version, key or HMAC; for a bad payload length (the HMAC verified, so the origin shares
/// `shared_secret`) an `invalid_onion_payload` wrapped for it.
pub(super) fn refuse_unpeelable(
    onion: &OnionPacket,
    shared_secret: Result<[u8; 32], OnionError>,
    e: OnionError,
) -> FailBack {
    let malformed = |failure_code| FailBack::Malformed {
        sha256_of_onion: sha256::Hash::hash(onion.as_bytes()).to_byte_array(),
        failure_code,
    };
    match (e.malformed_code(), shared_secret) {
        (Some(code), _) => malformed(code),
        (None, Ok(ss)) => fail(&ss, &Refusal { code: failure::INVALID_ONION_PAYLOAD, data: Vec::new() }),
        // No shared secret to wrap with (a key that does not parse, or a signer that cannot
        // answer): the only answer without one.
        (None, Err(_)) => malformed(failure::INVALID_ONION_KEY),
    }
}
