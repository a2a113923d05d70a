//! BOLT #4 onions: building a Sphinx packet for a route, peeling one layer at a hop, and the
//! failure path (a failure message wrapped by the failing hop, obfuscated by every hop on the
//! way back, and attributed to its hop by the origin).
//!
//! The primitives: ECDH and the key blinding from `bitcoin::secp256k1`, HMAC-SHA256 from
//! `bitcoin::hashes`, the ChaCha20 stream from the `chacha20-poly1305` crate.
//!
//! ```
//! use paychan::bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
//! use paychan::network::onion::{build_onion, peel, Peeled};
//!
//! let secp = Secp256k1::new();
//! let keys: Vec<SecretKey> = (1..=3u8).map(|b| SecretKey::from_slice(&[b; 32]).unwrap()).collect();
//! let route: Vec<PublicKey> = keys.iter().map(|k| PublicKey::from_secret_key(&secp, k)).collect();
//! // Hop payloads: a BigSize length, then the TLV stream (here `amt_to_forward` = 0, 1, 2).
//! let payloads = vec![vec![3, 2, 1, 0], vec![3, 2, 1, 1], vec![3, 2, 1, 2]];
//! let session = SecretKey::from_slice(&[9; 32]).unwrap();
//! let (packet, _) = build_onion(&secp, &route, &payloads, &session, &[0x42; 32]).unwrap();
//! let Peeled::Forward { payload, next, .. } = peel(&packet, &keys[0], &[0x42; 32]).unwrap() else { panic!() };
//! assert_eq!(payload, [2, 1, 0]);
//! let Peeled::Forward { next, .. } = peel(&next, &keys[1], &[0x42; 32]).unwrap() else { panic!() };
//! assert!(matches!(peel(&next, &keys[2], &[0x42; 32]).unwrap(), Peeled::Final { .. }));
//! ```

use alloc::vec::Vec;
use core::fmt;

use bitcoin::hashes::hmac::{Hmac, HmacEngine};
use bitcoin::hashes::{sha256, Hash, HashEngine};
use bitcoin::secp256k1::ecdh::SharedSecret;
use bitcoin::secp256k1::ffi::types::AlignedType;
use bitcoin::secp256k1::{PublicKey, Scalar, Secp256k1, SecretKey, Signing};
use chacha20_poly1305::chacha20::ChaCha20;
use chacha20_poly1305::{Key, Nonce};

use super::noise::NodeSigner;
use crate::core::encode::{Reader, Writer};
use crate::lightning::msgs::{OnionPacket, ONION_PACKET_LEN};

/// Size of the routing information (the hop payloads and their HMACs).
pub const ROUTING_INFO_LEN: usize = 1300;
const HMAC_LEN: usize = 32;
/// The smallest failure message length a failing hop pads to (BOLT #4).
pub const FAILURE_PAD_TO: usize = 256;

/// Why an onion could not be built or peeled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum OnionError {
    /// The route is empty, longer than the payloads, or the payloads do not fit in 1,300 bytes.
    RouteTooLong,
    /// The packet's version is not 0 (`invalid_onion_version`).
    BadVersion,
    /// The packet's ephemeral key is not a valid point (`invalid_onion_key`).
    BadKey,
    /// The packet's HMAC does not verify (`invalid_onion_hmac`).
    BadHmac,
    /// The hop payload's length is invalid (zero, the legacy format, or past the packet).
    BadPayload,
    /// The node signer could not compute the shared secret (nothing was learnt of the packet).
    Signer,
}

impl fmt::Display for OnionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnionError::RouteTooLong => "route does not fit in an onion",
            OnionError::BadVersion => "unknown onion version",
            OnionError::BadKey => "invalid onion ephemeral key",
            OnionError::BadHmac => "onion HMAC does not verify",
            OnionError::BadPayload => "invalid hop payload",
            OnionError::Signer => "node signer unavailable",
        })
    }
}

impl core::error::Error for OnionError {}

impl OnionError {
    /// The BOLT #4 failure code to return in `update_fail_malformed_htlc` for a packet that
    /// could not be peeled (`BADONION | PERM | n`), if this error is one.
    pub const fn malformed_code(self) -> Option<u16> {
        match self {
            OnionError::BadVersion => Some(failure::BADONION | failure::PERM | 4),
            OnionError::BadHmac => Some(failure::BADONION | failure::PERM | 5),
            OnionError::BadKey => Some(failure::BADONION | failure::PERM | 6),
            _ => None,
        }
    }
}

/// BOLT #4 failure codes.
pub mod failure {
    #![allow(missing_docs)]
    pub const BADONION: u16 = 0x8000;
    pub const PERM: u16 = 0x4000;
    pub const NODE: u16 = 0x2000;
    pub const UPDATE: u16 = 0x1000;
    pub const INVALID_REALM: u16 = PERM | 1;
    pub const TEMPORARY_NODE_FAILURE: u16 = NODE | 2;
    pub const PERMANENT_NODE_FAILURE: u16 = PERM | NODE | 2;
    pub const INVALID_ONION_VERSION: u16 = BADONION | PERM | 4;
    pub const INVALID_ONION_HMAC: u16 = BADONION | PERM | 5;
    pub const INVALID_ONION_KEY: u16 = BADONION | PERM | 6;
    pub const TEMPORARY_CHANNEL_FAILURE: u16 = UPDATE | 7;
    pub const PERMANENT_CHANNEL_FAILURE: u16 = PERM | 8;
    pub const AMOUNT_BELOW_MINIMUM: u16 = UPDATE | 11;
    pub const FEE_INSUFFICIENT: u16 = UPDATE | 12;
    pub const INCORRECT_CLTV_EXPIRY: u16 = UPDATE | 13;
    pub const EXPIRY_TOO_SOON: u16 = UPDATE | 14;
    pub const INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS: u16 = PERM | 15;
    pub const FINAL_INCORRECT_CLTV_EXPIRY: u16 = 18;
    pub const FINAL_INCORRECT_HTLC_AMOUNT: u16 = 19;
    pub const UNKNOWN_NEXT_PEER: u16 = PERM | 10;
    pub const INVALID_ONION_PAYLOAD: u16 = PERM | 22;
    pub const EXPIRY_TOO_FAR: u16 = 21;
    pub const MPP_TIMEOUT: u16 = 23;
}

fn hmac(key: &[u8], data: &[&[u8]]) -> [u8; 32] {
    let mut e = HmacEngine::<sha256::Hash>::new(key);
    for d in data {
        e.input(d);
    }
    Hmac::<sha256::Hash>::from_engine(e).to_byte_array()
}

/// A key of BOLT #4's `generate_key(type, secret)`: HMAC-SHA256 keyed with the ASCII type.
fn key(kind: &[u8], secret: &[u8; 32]) -> [u8; 32] {
    hmac(kind, &[secret])
}

fn xor_stream(key: &[u8; 32], buf: &mut [u8]) {
    ChaCha20::new(Key::new(*key), Nonce::new([0; 12]), 0).apply_keystream(buf);
}

fn stream(key: &[u8; 32], len: usize) -> Vec<u8> {
    let mut v = alloc::vec![0u8; len];
    xor_stream(key, &mut v);
    v
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The shared secrets of a route, as the origin computes them from `session_key`, and the first
/// ephemeral public key. `secp` is the caller's context (any with signing capability: each hop
/// costs an `s·G`), kept across payments rather than created per onion.
///
/// # Errors
/// [`OnionError::BadKey`] in the negligible case of a blinding factor out of range.
pub fn shared_secrets<C: Signing>(
    secp: &Secp256k1<C>,
    route: &[PublicKey],
    session_key: &SecretKey,
) -> Result<(PublicKey, Vec<[u8; 32]>), OnionError> {
    let first = PublicKey::from_secret_key(secp, session_key);
    let mut e = *session_key;
    let mut out = Vec::with_capacity(route.len());
    for node in route {
        let ephemeral = PublicKey::from_secret_key(secp, &e);
        let ss = SharedSecret::new(node, &e).secret_bytes();
        out.push(ss);
        let blinding = sha256_pair(&ephemeral.serialize(), &ss);
        let tweak = Scalar::from_be_bytes(blinding).map_err(|_| OnionError::BadKey)?;
        e = e.mul_tweak(&tweak).map_err(|_| OnionError::BadKey)?;
    }
    Ok((first, out))
}

fn sha256_pair(a: &[u8], b: &[u8]) -> [u8; 32] {
    let mut e = sha256::Hash::engine();
    e.input(a);
    e.input(b);
    sha256::Hash::from_engine(e).to_byte_array()
}

/// Builds the onion packet (1,366 bytes: version, ephemeral key, routing info, HMAC) for `route`
/// with one hop payload per node (each a full BOLT #4 TLV payload with its BigSize length
/// prefix), bound to `associated_data` (the payment hash). Returns the packet and the shared
/// secrets, which the origin keeps to read a failure. `secp` is the caller's context, as for
/// [`shared_secrets`].
///
/// # Errors
/// [`OnionError::RouteTooLong`] if the route is empty, the counts differ, or the payloads do not
/// fit.
pub fn build_onion<C: Signing>(
    secp: &Secp256k1<C>,
    route: &[PublicKey],
    payloads: &[Vec<u8>],
    session_key: &SecretKey,
    associated_data: &[u8],
) -> Result<(OnionPacket, Vec<[u8; 32]>), OnionError> {
    if route.is_empty() || route.len() != payloads.len() {
        return Err(OnionError::RouteTooLong);
    }
    let sizes: Vec<usize> = payloads.iter().map(|p| p.len() + HMAC_LEN).collect();
    if sizes.iter().sum::<usize>() > ROUTING_INFO_LEN {
        return Err(OnionError::RouteTooLong);
    }
    let (first, secrets) = shared_secrets(secp, route, session_key)?;
    // The filler: what the earlier hops' shifts leave at the end, so the last HMAC covers it.
    let n = route.len();
    let filler_len: usize = sizes.iter().take(n - 1).sum();
    let mut filler = alloc::vec![0u8; filler_len];
    for i in 0..n - 1 {
        let start = ROUTING_INFO_LEN - sizes.iter().take(i).sum::<usize>();
        let end = ROUTING_INFO_LEN + sizes.get(i).copied().unwrap_or(0);
        let rho = key(b"rho", secrets.get(i).ok_or(OnionError::RouteTooLong)?);
        let s = stream(&rho, 2 * ROUTING_INFO_LEN);
        for (f, b) in filler.iter_mut().zip(s.get(start..end).unwrap_or_default()) {
            *f ^= b;
        }
    }
    let pad = key(b"pad", &session_key.secret_bytes());
    let mut info = stream(&pad, ROUTING_INFO_LEN);
    let mut next_hmac = [0u8; HMAC_LEN];
    for i in (0..n).rev() {
        let payload = payloads.get(i).ok_or(OnionError::RouteTooLong)?;
        let shift = payload.len() + HMAC_LEN;
        let mut shifted = Vec::with_capacity(ROUTING_INFO_LEN);
        shifted.extend_from_slice(payload);
        shifted.extend_from_slice(&next_hmac);
        shifted.extend_from_slice(info.get(..ROUTING_INFO_LEN - shift).unwrap_or_default());
        info = shifted;
        let ss = secrets.get(i).ok_or(OnionError::RouteTooLong)?;
        xor_stream(&key(b"rho", ss), &mut info);
        if i == n - 1 {
            if let Some(tail) = info.get_mut(ROUTING_INFO_LEN - filler_len..) {
                tail.copy_from_slice(&filler);
            }
        }
        next_hmac = hmac(&key(b"mu", ss), &[&info, associated_data]);
    }
    let mut packet = [0u8; ONION_PACKET_LEN];
    packet[1..34].copy_from_slice(&first.serialize());
    packet[34..34 + ROUTING_INFO_LEN].copy_from_slice(&info);
    packet[34 + ROUTING_INFO_LEN..].copy_from_slice(&next_hmac);
    Ok((OnionPacket::new(packet), secrets))
}

/// What a hop finds in its layer.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Peeled {
    /// Forward `next` to the next hop named in `payload`.
    Forward {
        /// This hop's payload (TLV stream, without its length prefix).
        payload: Vec<u8>,
        /// The packet for the next hop.
        next: OnionPacket,
        /// The shared secret (to wrap a failure on the way back).
        shared_secret: [u8; 32],
    },
    /// This hop is the recipient.
    Final {
        /// Its payload (TLV stream, without its length prefix).
        payload: Vec<u8>,
        /// The shared secret.
        shared_secret: [u8; 32],
    },
}

/// Peels one layer of `packet` with the node's secret key. The same packet always gives the same
/// result: a replayed HTLC must be caught by the payment hash, not here.
///
/// # Errors
/// [`OnionError`] for a bad version, key, HMAC or payload (answer with
/// `update_fail_malformed_htlc` and [`OnionError::malformed_code`] for the first three).
pub fn peel(packet: &OnionPacket, node_key: &SecretKey, associated_data: &[u8]) -> Result<Peeled, OnionError> {
    peel_with(packet, |e| Ok(SharedSecret::new(e, node_key).secret_bytes()), associated_data)
}

/// As [`peel`], with the node key behind a [`NodeSigner`] (ECDH may happen in a hardware
/// signer).
///
/// # Errors
/// As [`peel`]; [`OnionError::Signer`] if the signer cannot answer.
pub fn peel_with_signer<N: NodeSigner + ?Sized>(
    packet: &OnionPacket,
    node: &N,
    associated_data: &[u8],
) -> Result<Peeled, OnionError> {
    peel_with(packet, |e| node.ecdh(e).map_err(|_| OnionError::Signer), associated_data)
}

/// The shared secret a node computes for `packet`'s ephemeral key, if the key is valid.
///
/// # Errors
/// [`OnionError::BadKey`] or [`OnionError::Signer`].
pub fn packet_shared_secret<N: NodeSigner + ?Sized>(packet: &OnionPacket, node: &N) -> Result<[u8; 32], OnionError> {
    let ephemeral = PublicKey::from_slice(&packet.as_bytes()[1..34]).map_err(|_| OnionError::BadKey)?;
    node.ecdh(&ephemeral).map_err(|_| OnionError::Signer)
}

fn peel_with(
    packet: &OnionPacket,
    ecdh: impl FnOnce(&PublicKey) -> Result<[u8; 32], OnionError>,
    associated_data: &[u8],
) -> Result<Peeled, OnionError> {
    let packet = packet.as_bytes();
    if packet[0] != 0 {
        return Err(OnionError::BadVersion);
    }
    let ephemeral = PublicKey::from_slice(&packet[1..34]).map_err(|_| OnionError::BadKey)?;
    let ss = ecdh(&ephemeral)?;
    let info = &packet[34..34 + ROUTING_INFO_LEN];
    let expected = hmac(&key(b"mu", &ss), &[info, associated_data]);
    if !ct_eq(&expected, &packet[34 + ROUTING_INFO_LEN..]) {
        return Err(OnionError::BadHmac);
    }
    let mut extended = alloc::vec![0u8; 2 * ROUTING_INFO_LEN];
    extended[..ROUTING_INFO_LEN].copy_from_slice(info);
    xor_stream(&key(b"rho", &ss), &mut extended);
    let mut r = Reader::new(&extended);
    let len = r.bigsize().map_err(|_| OnionError::BadPayload)?;
    // Zero is the legacy (realm 0) format, which BOLT #4 no longer allows.
    if len == 0 {
        return Err(OnionError::BadPayload);
    }
    let len = usize::try_from(len).map_err(|_| OnionError::BadPayload)?;
    if len > ROUTING_INFO_LEN {
        return Err(OnionError::BadPayload);
    }
    let payload = r.take(len).map_err(|_| OnionError::BadPayload)?.to_vec();
    let next_hmac = r.take(HMAC_LEN).map_err(|_| OnionError::BadPayload)?;
    if next_hmac.iter().all(|b| *b == 0) {
        return Ok(Peeled::Final { payload, shared_secret: ss });
    }
    let next_hmac: [u8; 32] = next_hmac.try_into().map_err(|_| OnionError::BadPayload)?;
    let next_info = r.take(ROUTING_INFO_LEN).map_err(|_| OnionError::BadPayload)?;
    let mut next = [0u8; ONION_PACKET_LEN];
    next[1..34].copy_from_slice(&blind(&ephemeral, &ss)?.serialize());
    next[34..34 + ROUTING_INFO_LEN].copy_from_slice(next_info);
    next[34 + ROUTING_INFO_LEN..].copy_from_slice(&next_hmac);
    Ok(Peeled::Forward { payload, next: OnionPacket::new(next), shared_secret: ss })
}

/// The next hop's ephemeral key: `ephemeral · SHA256(ephemeral ‖ shared_secret)`.
///
/// The multiplication needs a verification context. `Secp256k1::verification_only()` would
/// create one per call and, with `rust-secp256k1`'s `rand` feature (common in wallets), randomize
/// it, which costs about an `s·G` per hop. Randomization only protects `s·G` with a secret scalar
/// (signing, key derivation); this variable-time multiplication of a point never uses it, so the
/// context here is built in a buffer of our own, which creates no randomness (well under a
/// microsecond).
fn blind(ephemeral: &PublicKey, shared_secret: &[u8; 32]) -> Result<PublicKey, OnionError> {
    let tweak =
        Scalar::from_be_bytes(sha256_pair(&ephemeral.serialize(), shared_secret)).map_err(|_| OnionError::BadKey)?;
    let mut buf = alloc::vec![AlignedType::zeroed(); Secp256k1::preallocate_verification_size()];
    let secp = Secp256k1::preallocated_verification_only(&mut buf).map_err(|_| OnionError::BadKey)?;
    ephemeral.mul_tweak(&secp, &tweak).map_err(|_| OnionError::BadKey)
}

/// The failing hop's error packet: `HMAC(um, body) ‖ body` with `body = len ‖ message ‖
/// pad_len ‖ zeros` (padded to at least 256 bytes of message and padding), obfuscated with the
/// hop's `ammag` stream.
pub fn wrap_failure(shared_secret: &[u8; 32], message: &[u8]) -> Vec<u8> {
    let pad = FAILURE_PAD_TO.saturating_sub(message.len());
    let mut body = Writer::new();
    body.u16(message.len() as u16).bytes(message).u16(pad as u16).bytes(&alloc::vec![0u8; pad]);
    let body = body.into_bytes();
    let mut packet = hmac(&key(b"um", shared_secret), &[&body]).to_vec();
    packet.extend_from_slice(&body);
    obfuscate_failure(shared_secret, &mut packet);
    packet
}

/// What every hop on the way back does to an error packet with its own shared secret.
pub fn obfuscate_failure(shared_secret: &[u8; 32], packet: &mut [u8]) {
    xor_stream(&key(b"ammag", shared_secret), packet);
}

/// A failure read by the origin.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Failure {
    /// Index in the route of the hop that failed.
    pub hop: usize,
    /// Its failure message (code and data).
    pub message: Vec<u8>,
}

impl Failure {
    /// The failure code (the message's first two bytes).
    pub fn code(&self) -> Option<u16> {
        Reader::new(&self.message).u16().ok()
    }
}

/// The origin peels an error packet with the route's shared secrets and finds the hop whose HMAC
/// verifies; `None` if none does (a hop garbled it: the origin may blame the route).
pub fn read_failure(shared_secrets: &[[u8; 32]], packet: &[u8]) -> Option<Failure> {
    let mut p = packet.to_vec();
    for (hop, ss) in shared_secrets.iter().enumerate() {
        obfuscate_failure(ss, &mut p);
        let (mac, body) = p.split_at(HMAC_LEN.min(p.len()));
        if ct_eq(mac, &hmac(&key(b"um", ss), &[body])) {
            let mut r = Reader::new(body);
            let len = usize::from(r.u16().ok()?);
            let message = r.take(len).ok()?.to_vec();
            return Some(Failure { hop, message });
        }
    }
    None
}
