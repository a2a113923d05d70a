//! BOLT #8: the `Noise_XK_secp256k1_ChaChaPoly_SHA256` handshake and the encrypted message
//! stream, as sans-I/O state machines (bytes in, bytes out).
//!
//! The primitives come from maintained crates: ChaCha20-Poly1305 from the rust-bitcoin project's
//! `chacha20-poly1305`, SHA-256 and HMAC from `bitcoin::hashes` (HKDF is RFC 5869's two HMAC
//! steps over them), ECDH from `bitcoin::secp256k1` (SHA-256 of the compressed shared point, as
//! BOLT #8 specifies), through the [`NodeSigner`] seam for the node key.
//!
//! ```
//! use paychan::bitcoin::secp256k1::{Secp256k1, SecretKey};
//! use paychan::network::noise::{Handshake, InMemoryNodeSigner, NodeSigner};
//!
//! let alice = InMemoryNodeSigner::new(SecretKey::from_slice(&[1; 32]).unwrap());
//! let bob = InMemoryNodeSigner::new(SecretKey::from_slice(&[2; 32]).unwrap());
//! // Ephemeral keys come from the embedder's randomness (the crate draws none).
//! // One context for the node's lifetime, shared by all its handshakes.
//! let secp = Secp256k1::signing_only();
//! let (mut a, act1) =
//!     Handshake::initiator(&secp, &alice, bob.node_id(), SecretKey::from_slice(&[3; 32]).unwrap()).unwrap();
//! let mut b = Handshake::responder(&secp, SecretKey::from_slice(&[4; 32]).unwrap());
//! let act2 = b.read_act_one(&act1, &bob).unwrap();
//! let (mut a_stream, act3) = a.read_act_two(&act2, &alice).unwrap();
//! let (mut b_stream, remote) = b.read_act_three(&act3, &bob).unwrap();
//! assert_eq!(remote, alice.node_id());
//!
//! let wire = a_stream.encrypt(b"hello").unwrap();
//! let mut got = Vec::new();
//! b_stream.read(&wire, |m| got.push(m.to_vec())).unwrap();
//! assert_eq!(got, [b"hello".to_vec()]);
//! ```

use alloc::vec::Vec;
use core::fmt;

use bitcoin::hashes::hmac::{Hmac, HmacEngine};
use bitcoin::hashes::{sha256, Hash, HashEngine};
use bitcoin::secp256k1::ecdh::SharedSecret;
use bitcoin::secp256k1::ecdsa::RecoverableSignature;
use bitcoin::secp256k1::{Message, PublicKey, Secp256k1, SecretKey, SignOnly, Signing};
use chacha20_poly1305::{ChaCha20Poly1305, Key, Nonce};

const PROTOCOL_NAME: &[u8] = b"Noise_XK_secp256k1_ChaChaPoly_SHA256";
const PROLOGUE: &[u8] = b"lightning";
/// Length of act one and act two.
pub const ACT_ONE_LEN: usize = 50;
/// Length of act two.
pub const ACT_TWO_LEN: usize = 50;
/// Length of act three.
pub const ACT_THREE_LEN: usize = 66;
const TAG: usize = 16;
/// Keys rotate after this many uses.
const ROTATE_AFTER: u64 = 1000;
/// The largest message the length prefix can carry.
pub const MAX_MESSAGE_LEN: usize = 65_535;

/// The node key, behind a seam: ECDH with the node secret may happen in a hardware signer.
pub trait NodeSigner {
    /// The node's public key (its id).
    fn node_id(&self) -> PublicKey;

    /// `SHA256(compressed(secret · point))`, BOLT #8's ECDH.
    ///
    /// # Errors
    /// [`NoiseError::Signer`] if the signer cannot answer.
    fn ecdh(&self, point: &PublicKey) -> Result<[u8; 32], NoiseError>;

    /// A recoverable signature over a BOLT #11 invoice's hash with the node key.
    ///
    /// # Errors
    /// [`NoiseError::Signer`] if the signer cannot answer.
    fn sign_invoice(&self, hash: &Message) -> Result<RecoverableSignature, NoiseError>;
}

/// A node key held in memory, with its own signing context (created once, not per signature).
pub struct InMemoryNodeSigner {
    secret: SecretKey,
    public: PublicKey,
    secp: Secp256k1<SignOnly>,
}

impl InMemoryNodeSigner {
    /// The signer of `secret`.
    pub fn new(secret: SecretKey) -> Self {
        let secp = Secp256k1::signing_only();
        let public = PublicKey::from_secret_key(&secp, &secret);
        InMemoryNodeSigner { secret, public, secp }
    }
}

impl fmt::Debug for InMemoryNodeSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryNodeSigner").field("node_id", &self.public).finish_non_exhaustive()
    }
}

impl NodeSigner for InMemoryNodeSigner {
    fn node_id(&self) -> PublicKey {
        self.public
    }

    fn ecdh(&self, point: &PublicKey) -> Result<[u8; 32], NoiseError> {
        Ok(SharedSecret::new(point, &self.secret).secret_bytes())
    }

    fn sign_invoice(&self, hash: &Message) -> Result<RecoverableSignature, NoiseError> {
        Ok(self.secp.sign_ecdsa_recoverable(hash, &self.secret))
    }
}

/// Why a handshake or a message was refused. Each ends the connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum NoiseError {
    /// An act of the wrong length (a short read).
    ActLength {
        /// Which act (1, 2 or 3).
        act: u8,
    },
    /// An act with a version byte other than 0.
    BadVersion {
        /// Which act.
        act: u8,
        /// The version received.
        version: u8,
    },
    /// An act carrying an invalid public key.
    BadPubkey {
        /// Which act.
        act: u8,
    },
    /// An act's authentication tag does not verify.
    BadTag {
        /// Which act.
        act: u8,
    },
    /// Act three's encrypted static key does not decrypt.
    BadCiphertext,
    /// A method called in the wrong state (e.g. act two read by a responder).
    WrongState,
    /// A message's length or body does not authenticate.
    BadMessage,
    /// A message longer than 65,535 bytes.
    TooLong,
    /// The node signer could not do ECDH.
    Signer,
}

impl fmt::Display for NoiseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoiseError::ActLength { act } => write!(f, "act {act} has the wrong length"),
            NoiseError::BadVersion { act, version } => write!(f, "act {act} has version {version}"),
            NoiseError::BadPubkey { act } => write!(f, "act {act} carries an invalid public key"),
            NoiseError::BadTag { act } => write!(f, "act {act} does not authenticate"),
            NoiseError::BadCiphertext => f.write_str("act 3's static key does not decrypt"),
            NoiseError::WrongState => f.write_str("handshake step out of order"),
            NoiseError::BadMessage => f.write_str("message does not authenticate"),
            NoiseError::TooLong => f.write_str("message longer than 65535 bytes"),
            NoiseError::Signer => f.write_str("node signer failed"),
        }
    }
}

impl core::error::Error for NoiseError {}

fn sha256_2(a: &[u8], b: &[u8]) -> [u8; 32] {
    let mut e = sha256::Hash::engine();
    e.input(a);
    e.input(b);
    sha256::Hash::from_engine(e).to_byte_array()
}

/// RFC 5869 HKDF-SHA256 with a 64-byte output split in two keys: BOLT #8's `HKDF(salt, ikm)`.
fn hkdf(salt: &[u8; 32], ikm: &[u8]) -> ([u8; 32], [u8; 32]) {
    let mut extract = HmacEngine::<sha256::Hash>::new(salt);
    extract.input(ikm);
    let prk = Hmac::<sha256::Hash>::from_engine(extract).to_byte_array();
    let mut t1 = HmacEngine::<sha256::Hash>::new(&prk);
    t1.input(&[1]);
    let t1 = Hmac::<sha256::Hash>::from_engine(t1).to_byte_array();
    let mut t2 = HmacEngine::<sha256::Hash>::new(&prk);
    t2.input(&t1);
    t2.input(&[2]);
    let t2 = Hmac::<sha256::Hash>::from_engine(t2).to_byte_array();
    (t1, t2)
}

fn nonce(n: u64) -> Nonce {
    let mut b = [0u8; 12];
    b[4..].copy_from_slice(&n.to_le_bytes());
    Nonce::new(b)
}

/// `encryptWithAD(k, n, ad, plaintext)`: ciphertext ‖ tag.
fn encrypt_with_ad(k: &[u8; 32], n: u64, ad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut buf = plaintext.to_vec();
    let tag = ChaCha20Poly1305::new(Key::new(*k), nonce(n)).encrypt(&mut buf, Some(ad));
    buf.extend_from_slice(&tag);
    buf
}

/// `decryptWithAD(k, n, ad, ciphertext ‖ tag)`: the plaintext, or `None`.
fn decrypt_with_ad(k: &[u8; 32], n: u64, ad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let split = sealed.len().checked_sub(TAG)?;
    let (body, tag) = sealed.split_at(split);
    let mut buf = body.to_vec();
    let tag: [u8; 16] = tag.try_into().ok()?;
    ChaCha20Poly1305::new(Key::new(*k), nonce(n)).decrypt(&mut buf, tag, Some(ad)).ok()?;
    Some(buf)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Initiator: act one sent, waiting for act two.
    AwaitActTwo,
    /// Responder: waiting for act one.
    AwaitActOne,
    /// Responder: act two sent, waiting for act three.
    AwaitActThree,
    /// Finished or failed.
    Done,
}

/// The handshake of one connection. The initiator knows the responder's node id in advance;
/// the responder learns the initiator's from act three.
///
/// It holds no secp256k1 context: the one `s·G` each end computes (its ephemeral public key)
/// uses the caller's, so a node creates its context once rather than per connection (creating
/// one costs about an `s·G` more when `rust-secp256k1` randomizes new contexts).
pub struct Handshake {
    stage: Stage,
    h: [u8; 32],
    ck: [u8; 32],
    temp_k2: [u8; 32],
    ephemeral: SecretKey,
    /// `ephemeral · G`.
    ephemeral_public: PublicKey,
    remote_ephemeral: Option<PublicKey>,
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake").finish_non_exhaustive()
    }
}

fn initial_state(responder_static: &PublicKey) -> ([u8; 32], [u8; 32]) {
    let h0 = sha256::Hash::hash(PROTOCOL_NAME).to_byte_array();
    let ck = h0;
    let h = sha256_2(&h0, PROLOGUE);
    (sha256_2(&h, &responder_static.serialize()), ck)
}

fn parse_act(bytes: &[u8], act: u8, len: usize) -> Result<&[u8], NoiseError> {
    if bytes.len() != len {
        return Err(NoiseError::ActLength { act });
    }
    match bytes.first() {
        Some(0) => Ok(bytes.get(1..).unwrap_or_default()),
        Some(&version) => Err(NoiseError::BadVersion { act, version }),
        None => Err(NoiseError::ActLength { act }),
    }
}

impl Handshake {
    /// Starts a handshake to `remote` as initiator with `ephemeral` (fresh randomness from the
    /// embedder for every connection); returns act one to send. `secp` is the node's context
    /// (any with signing capability), used for `ephemeral`'s public key.
    ///
    /// # Errors
    /// [`NoiseError::Signer`] never here (the initiator's static key is used in act three); an
    /// ECDH failure of the ephemeral key cannot happen for a valid key.
    pub fn initiator<C: Signing, N: NodeSigner + ?Sized>(
        secp: &Secp256k1<C>,
        _local: &N,
        remote: PublicKey,
        ephemeral: SecretKey,
    ) -> Result<(Self, [u8; ACT_ONE_LEN]), NoiseError> {
        let (h, ck) = initial_state(&remote);
        let e_pub = PublicKey::from_secret_key(secp, &ephemeral);
        let h = sha256_2(&h, &e_pub.serialize());
        let es = SharedSecret::new(&remote, &ephemeral).secret_bytes();
        let (ck, temp_k1) = hkdf(&ck, &es);
        let c = encrypt_with_ad(&temp_k1, 0, &h, &[]);
        let h = sha256_2(&h, &c);
        let mut act = [0u8; ACT_ONE_LEN];
        act[1..34].copy_from_slice(&e_pub.serialize());
        act[34..].copy_from_slice(&c);
        let hs = Handshake {
            stage: Stage::AwaitActTwo,
            h,
            ck,
            temp_k2: [0; 32],
            ephemeral,
            ephemeral_public: e_pub,
            remote_ephemeral: None,
        };
        Ok((hs, act))
    }

    /// Waits for an initiator's act one, with `ephemeral` (fresh randomness); `secp` is the
    /// node's context (any with signing capability), used for `ephemeral`'s public key.
    pub fn responder<C: Signing>(secp: &Secp256k1<C>, ephemeral: SecretKey) -> Self {
        Handshake {
            stage: Stage::AwaitActOne,
            h: [0; 32],
            ck: [0; 32],
            temp_k2: [0; 32],
            ephemeral,
            ephemeral_public: PublicKey::from_secret_key(secp, &ephemeral),
            remote_ephemeral: None,
        }
    }

    /// Responder: reads act one (50 bytes) and returns act two to send.
    ///
    /// # Errors
    /// [`NoiseError`] for a short act, a wrong version, an invalid key or a bad tag; the
    /// handshake is then over.
    pub fn read_act_one<N: NodeSigner + ?Sized>(
        &mut self,
        act: &[u8],
        local: &N,
    ) -> Result<[u8; ACT_TWO_LEN], NoiseError> {
        if self.stage != Stage::AwaitActOne {
            return Err(NoiseError::WrongState);
        }
        self.stage = Stage::Done;
        let body = parse_act(act, 1, ACT_ONE_LEN)?;
        let (h, ck) = initial_state(&local.node_id());
        let re =
            PublicKey::from_slice(body.get(..33).unwrap_or_default()).map_err(|_| NoiseError::BadPubkey { act: 1 })?;
        let h = sha256_2(&h, &re.serialize());
        let es = local.ecdh(&re)?;
        let (ck, temp_k1) = hkdf(&ck, &es);
        let c = body.get(33..).unwrap_or_default();
        decrypt_with_ad(&temp_k1, 0, &h, c).ok_or(NoiseError::BadTag { act: 1 })?;
        let h = sha256_2(&h, c);
        // Act two.
        let e_pub = self.ephemeral_public;
        let h = sha256_2(&h, &e_pub.serialize());
        let ee = SharedSecret::new(&re, &self.ephemeral).secret_bytes();
        let (ck, temp_k2) = hkdf(&ck, &ee);
        let c = encrypt_with_ad(&temp_k2, 0, &h, &[]);
        self.h = sha256_2(&h, &c);
        self.ck = ck;
        self.temp_k2 = temp_k2;
        self.remote_ephemeral = Some(re);
        self.stage = Stage::AwaitActThree;
        let mut out = [0u8; ACT_TWO_LEN];
        out[1..34].copy_from_slice(&e_pub.serialize());
        out[34..].copy_from_slice(&c);
        Ok(out)
    }

    /// Initiator: reads act two (50 bytes); returns the transport and act three to send.
    ///
    /// # Errors
    /// [`NoiseError`] for a short act, a wrong version, an invalid key or a bad tag.
    pub fn read_act_two<N: NodeSigner + ?Sized>(
        &mut self,
        act: &[u8],
        local: &N,
    ) -> Result<(Transport, [u8; ACT_THREE_LEN]), NoiseError> {
        if self.stage != Stage::AwaitActTwo {
            return Err(NoiseError::WrongState);
        }
        self.stage = Stage::Done;
        let body = parse_act(act, 2, ACT_TWO_LEN)?;
        let re =
            PublicKey::from_slice(body.get(..33).unwrap_or_default()).map_err(|_| NoiseError::BadPubkey { act: 2 })?;
        let h = sha256_2(&self.h, &re.serialize());
        let ee = SharedSecret::new(&re, &self.ephemeral).secret_bytes();
        let (ck, temp_k2) = hkdf(&self.ck, &ee);
        let c = body.get(33..).unwrap_or_default();
        decrypt_with_ad(&temp_k2, 0, &h, c).ok_or(NoiseError::BadTag { act: 2 })?;
        let h = sha256_2(&h, c);
        // Act three.
        let c = encrypt_with_ad(&temp_k2, 1, &h, &local.node_id().serialize());
        let h = sha256_2(&h, &c);
        let se = local.ecdh(&re)?;
        let (ck, temp_k3) = hkdf(&ck, &se);
        let t = encrypt_with_ad(&temp_k3, 0, &h, &[]);
        let (sk, rk) = hkdf(&ck, &[]);
        let mut out = [0u8; ACT_THREE_LEN];
        out[1..50].copy_from_slice(&c);
        out[50..].copy_from_slice(&t);
        Ok((Transport::new(ck, sk, rk), out))
    }

    /// Responder: reads act three (66 bytes); returns the transport and the initiator's node
    /// id.
    ///
    /// # Errors
    /// [`NoiseError`] for a short act, a wrong version, an undecryptable or invalid static key,
    /// or a bad tag.
    pub fn read_act_three<N: NodeSigner + ?Sized>(
        &mut self,
        act: &[u8],
        _local: &N,
    ) -> Result<(Transport, PublicKey), NoiseError> {
        if self.stage != Stage::AwaitActThree {
            return Err(NoiseError::WrongState);
        }
        self.stage = Stage::Done;
        let body = parse_act(act, 3, ACT_THREE_LEN)?;
        let c = body.get(..49).unwrap_or_default();
        let t = body.get(49..).unwrap_or_default();
        let rs = decrypt_with_ad(&self.temp_k2, 1, &self.h, c).ok_or(NoiseError::BadCiphertext)?;
        let rs = PublicKey::from_slice(&rs).map_err(|_| NoiseError::BadPubkey { act: 3 })?;
        let h = sha256_2(&self.h, c);
        let se = SharedSecret::new(&rs, &self.ephemeral).secret_bytes();
        let (ck, temp_k3) = hkdf(&self.ck, &se);
        decrypt_with_ad(&temp_k3, 0, &h, t).ok_or(NoiseError::BadTag { act: 3 })?;
        let (rk, sk) = hkdf(&ck, &[]);
        Ok((Transport::new(ck, sk, rk), rs))
    }
}

/// One direction's cipher state: key, nonce, chaining key for rotation.
#[derive(Clone)]
struct CipherState {
    k: [u8; 32],
    n: u64,
    ck: [u8; 32],
}

impl CipherState {
    fn next_nonce(&mut self) -> u64 {
        let n = self.n;
        self.n += 1;
        if self.n == ROTATE_AFTER {
            let (ck, k) = hkdf(&self.ck, &self.k);
            self.ck = ck;
            self.k = k;
            self.n = 0;
        }
        n
    }
}

/// The encrypted message stream after a handshake: [`Transport::encrypt`] frames outgoing
/// messages; [`Transport::read`] takes bytes as they arrive, in chunks of any size, and yields
/// every complete message.
#[derive(Clone)]
pub struct Transport {
    send: CipherState,
    recv: CipherState,
    /// Bytes received but not yet a whole message.
    buffer: Vec<u8>,
    /// The length of the message being received, once its header decrypted.
    pending_len: Option<usize>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("sent", &self.send.n)
            .field("received", &self.recv.n)
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

impl Transport {
    fn new(ck: [u8; 32], sk: [u8; 32], rk: [u8; 32]) -> Self {
        Transport {
            send: CipherState { k: sk, n: 0, ck },
            recv: CipherState { k: rk, n: 0, ck },
            buffer: Vec::new(),
            pending_len: None,
        }
    }

    /// The current sending and receiving keys (for the test vectors).
    #[doc(hidden)]
    pub fn keys(&self) -> ([u8; 32], [u8; 32]) {
        (self.send.k, self.recv.k)
    }

    /// Frames `message`: encrypted 2-byte length and its tag, then the encrypted body and its
    /// tag.
    ///
    /// # Errors
    /// [`NoiseError::TooLong`] for a message over 65,535 bytes.
    pub fn encrypt(&mut self, message: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let len = u16::try_from(message.len()).map_err(|_| NoiseError::TooLong)?;
        let n = self.send.next_nonce();
        let mut out = encrypt_with_ad(&self.send.k, n, &[], &len.to_be_bytes());
        let n = self.send.next_nonce();
        out.extend(encrypt_with_ad(&self.send.k, n, &[], message));
        Ok(out)
    }

    /// Feeds received bytes; calls `on_message` with every complete message, in order.
    ///
    /// # Errors
    /// [`NoiseError::BadMessage`] if a length or a body does not authenticate: the connection
    /// must be closed (the stream cannot resynchronise).
    pub fn read(&mut self, bytes: &[u8], mut on_message: impl FnMut(&[u8])) -> Result<(), NoiseError> {
        self.buffer.extend_from_slice(bytes);
        let mut at = 0;
        loop {
            let rest = self.buffer.get(at..).unwrap_or_default();
            match self.pending_len {
                None => {
                    let Some(header) = rest.get(..2 + TAG) else { break };
                    let n = self.recv.next_nonce();
                    let len = decrypt_with_ad(&self.recv.k, n, &[], header).ok_or(NoiseError::BadMessage)?;
                    let len = len.get(..2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])));
                    self.pending_len = Some(len.ok_or(NoiseError::BadMessage)?);
                    at += 2 + TAG;
                }
                Some(len) => {
                    let Some(body) = rest.get(..len + TAG) else { break };
                    let n = self.recv.next_nonce();
                    let message = decrypt_with_ad(&self.recv.k, n, &[], body).ok_or(NoiseError::BadMessage)?;
                    on_message(&message);
                    self.pending_len = None;
                    at += len + TAG;
                }
            }
        }
        self.buffer.drain(..at);
        Ok(())
    }
}
