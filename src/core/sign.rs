//! Signatures: BIP-0143 sighashes, deterministic RFC6979 ECDSA, verification with typed errors,
//! and the [`Signer`] seam through which every channel layer signs.
//!
//! Signing uses plain RFC6979 nonces with no extra entropy and **no low-R grinding**: the BOLT #3
//! test vectors are made that way, and grinding costs about 1.8× the signing time for a one-byte
//! saving. Verification rejects high-S signatures (BIP-0146 `LOW_S` is standard policy) and any
//! sighash type other than the one the protocol step prescribes.

use alloc::vec::Vec;
use core::fmt;

use bitcoin::secp256k1::{self, All, Message, PublicKey, Secp256k1, SecretKey, Verification};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{ecdsa, Amount, Script, Transaction};

use super::commitment::CommitmentNumber;
use super::keys::{
    derive_privkey_with_basepoint, derive_revocation_privkey_with_basepoint, ChannelPubkeys, ChannelSecrets,
    DerivationError, PerCommitmentPoint, PerCommitmentSecret,
};

/// Proof that a signature was checked: only [`verify`] makes one, and the steps that need a
/// checked signature take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct SignatureValid(());

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signature does not verify for this key and transaction.
    Invalid,
    /// The signature's S value is in the upper half of the curve order (non-standard).
    HighS,
    /// The signature commits to another sighash type than the protocol prescribes.
    WrongSighashType {
        /// The type the protocol step requires.
        expected: EcdsaSighashType,
        /// The type the signature carries.
        got: EcdsaSighashType,
    },
    /// The sighash could not be computed (input index out of range).
    Sighash,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureError::Invalid => f.write_str("signature does not verify"),
            SignatureError::HighS => f.write_str("signature has a high S value"),
            SignatureError::WrongSighashType { expected, got } => {
                write!(f, "sighash type {got} where {expected} is required")
            }
            SignatureError::Sighash => f.write_str("sighash could not be computed"),
        }
    }
}

impl core::error::Error for SignatureError {}

/// The BIP-0143 digest of input `input` spending a P2WSH output with `witness_script` and
/// `value`.
///
/// # Errors
/// [`SignatureError::Sighash`] if `input` is out of range.
pub fn p2wsh_sighash(
    tx: &Transaction,
    input: usize,
    witness_script: &Script,
    value: Amount,
    sighash_type: EcdsaSighashType,
) -> Result<Message, SignatureError> {
    super::bip143::segwit_v0_sighash(tx, input, witness_script.as_bytes(), value, sighash_type)
        .map(Message::from_digest)
        .ok_or(SignatureError::Sighash)
}

/// The BIP-0143 digest of input `input` spending a P2WPKH output with `script_pubkey`.
///
/// # Errors
/// [`SignatureError::Sighash`] if `input` is out of range or the script is not P2WPKH.
pub fn p2wpkh_sighash(
    tx: &Transaction,
    input: usize,
    script_pubkey: &Script,
    value: Amount,
    sighash_type: EcdsaSighashType,
) -> Result<Message, SignatureError> {
    let hash = SighashCache::new(tx)
        .p2wpkh_signature_hash(input, script_pubkey, value, sighash_type)
        .map_err(|_| SignatureError::Sighash)?;
    Ok(Message::from_digest(hash.to_raw_hash().to_byte_array()))
}

use bitcoin::hashes::Hash as _;

/// Signs a digest with deterministic RFC6979 nonces (no grinding) and attaches the sighash type.
pub fn sign(secp: &Secp256k1<All>, msg: &Message, key: &SecretKey, sighash_type: EcdsaSighashType) -> ecdsa::Signature {
    ecdsa::Signature { signature: secp.sign_ecdsa(msg, key), sighash_type }
}

/// Verifies `sig` over `msg` for `key`, requiring low S and exactly `expected` as sighash type.
///
/// # Errors
/// [`SignatureError`] naming the first failed check.
pub fn verify<C: Verification>(
    secp: &Secp256k1<C>,
    msg: &Message,
    sig: &ecdsa::Signature,
    key: &PublicKey,
    expected: EcdsaSighashType,
) -> Result<SignatureValid, SignatureError> {
    if sig.sighash_type != expected {
        return Err(SignatureError::WrongSighashType { expected, got: sig.sighash_type });
    }
    let mut normalized = sig.signature;
    normalized.normalize_s();
    if normalized != sig.signature {
        return Err(SignatureError::HighS);
    }
    secp.verify_ecdsa(msg, &sig.signature, key).map_err(|_| SignatureError::Invalid)?;
    Ok(SignatureValid(()))
}

/// Which of a party's base keys signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyId {
    /// The funding key (also the Spilman and duplex channel keys).
    Funding,
    /// The revocation base key (only with a [`Tweak::Revocation`]).
    RevocationBase,
    /// The payment base key (`to_remote` with `option_static_remotekey`).
    Payment,
    /// The delayed payment base key (`to_local` and second-stage outputs).
    DelayedPayment,
    /// The HTLC base key.
    Htlc,
}

/// How the base key is tweaked before signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tweak {
    /// The base key itself.
    None,
    /// The BOLT #3 per-commitment derivation ([`derive_privkey`](crate::core::keys::derive_privkey)).
    PerCommitment(PerCommitmentPoint),
    /// The revocation private key for a commitment whose secret the peer revealed
    /// ([`derive_revocation_privkey`](crate::core::keys::derive_revocation_privkey)); only valid with [`KeyId::RevocationBase`].
    Revocation(PerCommitmentSecret),
}

/// What to sign: one input of one transaction, spending a known output.
#[derive(Debug, Clone, Copy)]
pub struct SignRequest<'a> {
    /// The spending transaction.
    pub tx: &'a Transaction,
    /// Index of the input to sign.
    pub input: usize,
    /// The witness script of the spent P2WSH output, or the P2WPKH scriptPubKey.
    pub script_code: &'a Script,
    /// Whether the spent output is P2WPKH (otherwise P2WSH).
    pub p2wpkh: bool,
    /// Value of the spent output.
    pub value: Amount,
    /// The sighash type to sign with.
    pub sighash_type: EcdsaSighashType,
    /// The signing key.
    pub key: KeyId,
    /// Its tweak.
    pub tweak: Tweak,
}

/// A batch of [`SignRequest`]s for [`Signer::sign_batch`], handed out one at a time. Each request
/// may borrow from the batch itself, so a batch can rewrite one transaction in place for every
/// request (as the HTLC transactions of a commitment are made) instead of holding all of them.
pub trait SignRequests {
    /// The next request, or `None` once the batch is exhausted.
    fn next_request(&mut self) -> Option<SignRequest<'_>>;

    /// How many requests are left, if known (only a capacity hint; 0 if unknown).
    fn remaining_hint(&self) -> usize {
        0
    }

    /// The next request, and whether its transaction is the previous request's, unchanged (the
    /// inputs of one transaction signed in turn). A signer may then reuse the transaction-wide
    /// parts of the BIP-0143 digest, so signing every input of an n-input transaction costs
    /// O(n) hashing instead of O(n²). The default says `false`: always safe.
    fn next_request_same_tx(&mut self) -> Option<(SignRequest<'_>, bool)> {
        self.next_request().map(|r| (r, false))
    }
}

/// Why a signer did not sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignerError {
    /// The signer will answer later (a remote or hardware signer); call the layer's
    /// `handle_signer_ready` when it can.
    Pending,
    /// The key/tweak combination is not one this signer supports.
    UnsupportedKey,
    /// A key could not be derived (invalid secret or tweak).
    Derivation,
    /// The sighash could not be computed.
    Sighash,
}

impl fmt::Display for SignerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignerError::Pending => "signer pending",
            SignerError::UnsupportedKey => "unsupported key for this signer",
            SignerError::Derivation => "key derivation failed",
            SignerError::Sighash => "sighash could not be computed",
        })
    }
}

impl core::error::Error for SignerError {}

impl From<DerivationError> for SignerError {
    fn from(_: DerivationError) -> Self {
        SignerError::Derivation
    }
}

/// The signing seam: everything the channel layers need from a party's private keys. A remote or
/// hardware signer implements this trait (returning [`SignerError::Pending`] while it waits);
/// [`InMemorySigner`] is the in-process implementation.
///
/// Implementations MUST sign deterministically with RFC6979 (no low-R grinding) if byte-exact
/// BOLT #3 transactions are expected, and MUST never release the per-commitment secret of a
/// commitment the layer has not asked to revoke.
///
/// Every channel call that takes a signer first compares [`Signer::pubkeys`] with the keys the
/// channel recorded for its own side ([`check_signer`]) and refuses another channel's signer with
/// [`WrongSigner`], changing nothing: as `WrongSigner` in the layer's command error, as a
/// `WrongSigner` misbehaviour with [`Action::Ignore`](crate::driving::Action::Ignore) from
/// `handle_message` (the peer is not blamed), and as a lone `WrongSigner` event from the calls
/// that return plain effects (`handle_chain`, duplex `force_close`). The per-commitment secrets
/// are not covered by the check: a signer with the channel's base keys but another commitment
/// seed is not detected.
pub trait Signer {
    /// The party's public channel keys.
    fn pubkeys(&self) -> &ChannelPubkeys;

    /// Signs one input.
    ///
    /// # Errors
    /// [`SignerError`] if the signer cannot sign now or at all.
    fn sign(&self, request: &SignRequest<'_>) -> Result<ecdsa::Signature, SignerError>;

    /// Signs every request of `requests`, in order, and returns the signatures in that order (how
    /// a commitment's HTLC transactions are signed: all with the same key and tweak). The default
    /// calls [`Signer::sign`] for each request; an implementation may share work between requests,
    /// as [`InMemorySigner`] does by deriving a tweaked key once for consecutive requests that
    /// use the same key and tweak. It must return the same signatures as `sign` would.
    ///
    /// # Errors
    /// The first [`SignerError`] (then no signature is returned).
    fn sign_batch(&self, requests: &mut dyn SignRequests) -> Result<Vec<ecdsa::Signature>, SignerError> {
        let mut signatures = Vec::with_capacity(requests.remaining_hint());
        while let Some(request) = requests.next_request() {
            signatures.push(self.sign(&request)?);
        }
        Ok(signatures)
    }

    /// The per-commitment point of the holder's commitment `n`.
    ///
    /// # Errors
    /// [`SignerError`] if the signer cannot answer now.
    fn per_commitment_point(&self, n: CommitmentNumber) -> Result<PerCommitmentPoint, SignerError>;

    /// Reveals the per-commitment secret of the holder's commitment `n`, revoking it.
    ///
    /// # Errors
    /// [`SignerError`] if the signer cannot answer now.
    fn release_per_commitment_secret(&self, n: CommitmentNumber) -> Result<PerCommitmentSecret, SignerError>;
}

/// The signer given to a channel is not the one the channel was opened with: one of the public
/// keys the channel recorded for its own side differs from the signer's. Signing with it would
/// produce signatures the peer and the chain refuse (invalid transactions, a peer that force
/// closes), so every layer refuses the call with this error and changes nothing. It is always the
/// embedder's mistake (it passed another channel's or another party's signer), never the peer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WrongSigner {
    /// The first recorded key that the signer does not have.
    pub key: KeyId,
}

impl fmt::Display for WrongSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the signer's {:?} public key is not the channel's: another channel's signer?", self.key)
    }
}

impl core::error::Error for WrongSigner {}

/// The public key of `keys` that signs as `id`.
fn pubkey_of(keys: &ChannelPubkeys, id: KeyId) -> &PublicKey {
    match id {
        KeyId::Funding => keys.funding.public_key(),
        KeyId::RevocationBase => keys.revocation_basepoint.public_key(),
        KeyId::Payment => keys.payment_basepoint.public_key(),
        KeyId::DelayedPayment => keys.delayed_payment_basepoint.public_key(),
        KeyId::Htlc => keys.htlc_basepoint.public_key(),
    }
}

/// The one check every channel layer makes before a call that signs: the public keys the channel
/// recorded for its own side (`recorded`, each with the [`KeyId`] it signs as) must be the
/// signer's ([`Signer::pubkeys`], which a signer keeps; nothing is derived here). A layer passes
/// the subset it uses: the funding and HTLC keys for Spilman and duplex, all five for Lightning
/// ([`check_signer_pubkeys`]).
///
/// # Errors
/// [`WrongSigner`] naming the first key that differs.
pub fn check_signer<S: Signer + ?Sized>(signer: &S, recorded: &[(KeyId, &PublicKey)]) -> Result<(), WrongSigner> {
    let keys = signer.pubkeys();
    match recorded.iter().find(|(id, key)| pubkey_of(keys, *id) != *key) {
        Some((id, _)) => Err(WrongSigner { key: *id }),
        None => Ok(()),
    }
}

/// [`check_signer`] over all five of a party's recorded base keys (a Lightning channel's).
///
/// # Errors
/// [`WrongSigner`] naming the first key that differs.
pub fn check_signer_pubkeys<S: Signer + ?Sized>(signer: &S, recorded: &ChannelPubkeys) -> Result<(), WrongSigner> {
    let ids = [KeyId::Funding, KeyId::RevocationBase, KeyId::Payment, KeyId::DelayedPayment, KeyId::Htlc];
    let keys = signer.pubkeys();
    match ids.into_iter().find(|id| pubkey_of(keys, *id) != pubkey_of(recorded, *id)) {
        Some(key) => Err(WrongSigner { key }),
        None => Ok(()),
    }
}

/// A [`Signer`] holding [`ChannelSecrets`] in memory. `Debug` is redacted.
#[derive(Clone)]
pub struct InMemorySigner {
    secrets: ChannelSecrets,
    pubkeys: ChannelPubkeys,
    secp: Secp256k1<All>,
}

impl fmt::Debug for InMemorySigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemorySigner").field("pubkeys", &self.pubkeys).finish_non_exhaustive()
    }
}

impl InMemorySigner {
    /// A signer over these secrets.
    pub fn new(secrets: ChannelSecrets) -> Self {
        let secp = Secp256k1::new();
        let pubkeys = secrets.pubkeys(&secp);
        InMemorySigner { secrets, pubkeys, secp }
    }

    /// The secp256k1 context this signer uses.
    pub fn secp(&self) -> &Secp256k1<All> {
        &self.secp
    }

    /// Signs request `r` with `key` (already derived for `r.key` and `r.tweak`).
    fn sign_with(
        &self,
        key: &SecretKey,
        r: &SignRequest<'_>,
        digests: &mut super::bip143::TxDigests,
    ) -> Result<ecdsa::Signature, SignerError> {
        let msg = if r.p2wpkh {
            p2wpkh_sighash(r.tx, r.input, r.script_code, r.value, r.sighash_type).map_err(|_| SignerError::Sighash)?
        } else {
            super::bip143::segwit_v0_sighash_cached(
                r.tx,
                r.input,
                r.script_code.as_bytes(),
                r.value,
                r.sighash_type,
                digests,
            )
            .map(Message::from_digest)
            .ok_or(SignerError::Sighash)?
        };
        Ok(sign(&self.secp, &msg, key, r.sighash_type))
    }

    fn key(&self, id: KeyId, tweak: &Tweak) -> Result<SecretKey, SignerError> {
        let k = &self.pubkeys;
        let (base, basepoint) = match id {
            KeyId::Funding => (self.secrets.funding.secret_key(), k.funding.public_key()),
            KeyId::RevocationBase => (self.secrets.revocation_base.secret_key(), k.revocation_basepoint.public_key()),
            KeyId::Payment => (self.secrets.payment_base.secret_key(), k.payment_basepoint.public_key()),
            KeyId::DelayedPayment => {
                (self.secrets.delayed_payment_base.secret_key(), k.delayed_payment_basepoint.public_key())
            }
            KeyId::Htlc => (self.secrets.htlc_base.secret_key(), k.htlc_basepoint.public_key()),
        };
        match (id, tweak) {
            (_, Tweak::None) => Ok(*base),
            (KeyId::RevocationBase, Tweak::Revocation(secret)) => Ok(derive_revocation_privkey_with_basepoint(
                &self.secp,
                &self.secrets.revocation_base,
                &self.pubkeys.revocation_basepoint,
                secret,
            )?),
            (_, Tweak::Revocation(_)) => Err(SignerError::UnsupportedKey),
            (_, Tweak::PerCommitment(point)) => Ok(derive_privkey_with_basepoint(base, basepoint, point)?),
        }
    }
}

impl Signer for InMemorySigner {
    fn pubkeys(&self) -> &ChannelPubkeys {
        &self.pubkeys
    }

    fn sign(&self, r: &SignRequest<'_>) -> Result<ecdsa::Signature, SignerError> {
        let key = self.key(r.key, &r.tweak)?;
        self.sign_with(&key, r, &mut super::bip143::TxDigests::default())
    }

    /// As the default, but the tweaked key is derived once for a run of requests with the same
    /// key and tweak (one derivation for all the HTLC transactions of a commitment).
    fn sign_batch(&self, requests: &mut dyn SignRequests) -> Result<Vec<ecdsa::Signature>, SignerError> {
        let mut signatures = Vec::with_capacity(requests.remaining_hint());
        let mut last: Option<(KeyId, Tweak, SecretKey)> = None;
        let mut digests = super::bip143::TxDigests::default();
        while let Some((r, same_tx)) = requests.next_request_same_tx() {
            let key = match last {
                Some((id, tweak, key)) if id == r.key && tweak == r.tweak => key,
                _ => {
                    let key = self.key(r.key, &r.tweak)?;
                    last = Some((r.key, r.tweak, key));
                    key
                }
            };
            if !same_tx {
                digests = super::bip143::TxDigests::default();
            }
            signatures.push(self.sign_with(&key, &r, &mut digests)?);
        }
        Ok(signatures)
    }

    fn per_commitment_point(&self, n: CommitmentNumber) -> Result<PerCommitmentPoint, SignerError> {
        Ok(self.secrets.per_commitment_point(&self.secp, n)?)
    }

    fn release_per_commitment_secret(&self, n: CommitmentNumber) -> Result<PerCommitmentSecret, SignerError> {
        Ok(self.secrets.per_commitment_secret(n))
    }
}

/// Parses a signature in the BOLT wire format (64-byte compact) and attaches a sighash type.
///
/// # Errors
/// If the bytes are not a valid compact signature.
pub fn from_compact(bytes: &[u8; 64], sighash_type: EcdsaSighashType) -> Result<ecdsa::Signature, secp256k1::Error> {
    Ok(ecdsa::Signature { signature: secp256k1::ecdsa::Signature::from_compact(bytes)?, sighash_type })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::keys::Seed;
    use alloc::vec;
    use bitcoin::{ScriptBuf, TxIn, TxOut};

    /// The requests of a slice, one at a time (as the HTLC transactions of a commitment are).
    struct Listed<'a>(core::slice::Iter<'a, SignRequest<'a>>);

    impl SignRequests for Listed<'_> {
        fn next_request(&mut self) -> Option<SignRequest<'_>> {
            self.0.next().copied()
        }
    }

    /// A signer with only `sign`: it gets the default `sign_batch`.
    struct OneByOne(InMemorySigner);

    impl Signer for OneByOne {
        fn pubkeys(&self) -> &ChannelPubkeys {
            self.0.pubkeys()
        }
        fn sign(&self, request: &SignRequest<'_>) -> Result<ecdsa::Signature, SignerError> {
            self.0.sign(request)
        }
        fn per_commitment_point(&self, n: CommitmentNumber) -> Result<PerCommitmentPoint, SignerError> {
            self.0.per_commitment_point(n)
        }
        fn release_per_commitment_secret(&self, n: CommitmentNumber) -> Result<PerCommitmentSecret, SignerError> {
            self.0.release_per_commitment_secret(n)
        }
    }

    fn signer() -> InMemorySigner {
        InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([3; 32]), 0))
    }

    #[test]
    fn batch_reuses_a_key_only_while_key_and_tweak_stay_the_same() {
        let s = signer();
        let tx = Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![TxIn::default()],
            output: vec![TxOut { value: Amount::from_sat(1_000), script_pubkey: ScriptBuf::new() }],
        };
        let script = ScriptBuf::from_bytes(vec![0x51]);
        let n = |i| CommitmentNumber::new(i).unwrap();
        let (p1, p2) = (s.per_commitment_point(n(1)).unwrap(), s.per_commitment_point(n(2)).unwrap());
        let secret = s.release_per_commitment_secret(n(1)).unwrap();
        let request = |key, tweak, sats| SignRequest {
            tx: &tx,
            input: 0,
            script_code: &script,
            p2wpkh: false,
            value: Amount::from_sat(sats),
            sighash_type: EcdsaSighashType::All,
            key,
            tweak,
        };
        // Runs of the same key and tweak, then changes of tweak, of key, and back.
        let requests = [
            request(KeyId::Htlc, Tweak::PerCommitment(p1), 1),
            request(KeyId::Htlc, Tweak::PerCommitment(p1), 2),
            request(KeyId::Htlc, Tweak::PerCommitment(p2), 3),
            request(KeyId::DelayedPayment, Tweak::PerCommitment(p2), 4),
            request(KeyId::Funding, Tweak::None, 5),
            request(KeyId::RevocationBase, Tweak::Revocation(secret), 6),
            request(KeyId::Htlc, Tweak::PerCommitment(p1), 7),
        ];
        let one_by_one: Vec<_> = requests.iter().map(|r| s.sign(r).unwrap()).collect();
        assert_eq!(s.sign_batch(&mut Listed(requests.iter())).unwrap(), one_by_one);
        assert_eq!(OneByOne(s.clone()).sign_batch(&mut Listed(requests.iter())).unwrap(), one_by_one);
        // Each signature verifies under the key its own request names.
        let secp = Secp256k1::new();
        let key_of = |r: &SignRequest<'_>| s.key(r.key, &r.tweak).unwrap().public_key(&secp);
        for (r, sig) in requests.iter().zip(&one_by_one) {
            let msg = p2wsh_sighash(r.tx, 0, r.script_code, r.value, r.sighash_type).unwrap();
            assert!(verify(&secp, &msg, sig, &key_of(r), EcdsaSighashType::All).is_ok());
        }
        // A request the signer refuses fails the whole batch, with the same error as `sign`.
        let bad = [requests[0], request(KeyId::Payment, Tweak::Revocation(secret), 8)];
        assert_eq!(s.sign_batch(&mut Listed(bad.iter())), Err(SignerError::UnsupportedKey));
        assert_eq!(OneByOne(s).sign_batch(&mut Listed(bad.iter())), Err(SignerError::UnsupportedKey));
    }
}
