//! Keys: typed newtypes so that a funding key can never be passed where a revocation
//! basepoint is expected, the BOLT #3 key derivations, and channel keys derived from a seed.
//!
//! Public keys are `Copy` newtypes over [`PublicKey`]. Secret keys are newtypes whose `Debug`
//! output is redacted; they are never printed, and no error of this crate carries one.
//!
//! # BOLT #3 derivations
//! * `pubkey = basepoint + SHA256(per_commitment_point ‖ basepoint)·G` (localpubkey,
//!   local_htlcpubkey, remote_htlcpubkey, local_delayedpubkey, …), see [`derive_pubkey`];
//! * `revocationpubkey = R·SHA256(R ‖ P) + P·SHA256(P ‖ R)` with `R` the revocation
//!   basepoint and `P` the per-commitment point, see [`RevocationPubkey::derive`];
//! * the matching private keys, [`derive_privkey`] and [`derive_revocation_privkey`], the
//!   latter computable only once the owner has revealed its per-commitment secret.

use core::fmt;

use bitcoin::hashes::{sha256, Hash, HashEngine};
use bitcoin::secp256k1::{PublicKey, Scalar, Secp256k1, SecretKey, Signing, Verification};

use super::commitment::CommitmentNumber;
use super::shachain;

/// A key derivation failed: a tweak was not a valid scalar or the result was the point at
/// infinity. This happens with negligible probability for honest inputs; for hostile inputs it
/// is reported instead of panicking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DerivationError;

impl fmt::Display for DerivationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("key derivation produced an invalid key")
    }
}

impl core::error::Error for DerivationError {}

macro_rules! public_key_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
        pub struct $name(PublicKey);

        impl $name {
            /// Wraps a public key.
            pub const fn from_public_key(pk: PublicKey) -> Self {
                $name(pk)
            }

            /// The wrapped public key.
            pub const fn public_key(&self) -> &PublicKey {
                &self.0
            }

            /// The 33-byte compressed serialisation.
            pub fn serialize(&self) -> [u8; 33] {
                self.0.serialize()
            }

            /// Parses a 33-byte compressed key.
            ///
            /// # Errors
            /// If the bytes are not a valid compressed point.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, bitcoin::secp256k1::Error> {
                PublicKey::from_slice(bytes).map($name)
            }
        }

        impl From<$name> for PublicKey {
            fn from(k: $name) -> PublicKey {
                k.0
            }
        }
    };
}

macro_rules! secret_key_newtype {
    ($(#[$doc:meta])* $name:ident => $public:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(SecretKey);

        impl $name {
            /// Wraps a secret key.
            pub const fn from_secret_key(sk: SecretKey) -> Self {
                $name(sk)
            }

            /// The wrapped secret key.
            pub const fn secret_key(&self) -> &SecretKey {
                &self.0
            }

            /// The matching public key.
            pub fn public_key<C: Signing>(&self, secp: &Secp256k1<C>) -> $public {
                $public(PublicKey::from_secret_key(secp, &self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

public_key_newtype!(
    /// A party's key in the 2-of-2 funding output (BOLT #3 `funding_pubkey`).
    FundingPubkey
);
public_key_newtype!(
    /// The basepoint from which revocation public keys are derived.
    RevocationBasepoint
);
public_key_newtype!(
    /// The basepoint of the payment key; with `option_static_remotekey` it is the `to_remote`
    /// key itself.
    PaymentBasepoint
);
public_key_newtype!(
    /// The basepoint of the delayed payment key (the owner's `to_local` key).
    DelayedPaymentBasepoint
);
public_key_newtype!(
    /// The basepoint of HTLC keys.
    HtlcBasepoint
);
public_key_newtype!(
    /// The per-commitment point of one commitment (`per_commitment_secret·G`).
    PerCommitmentPoint
);
public_key_newtype!(
    /// A revocation public key of one commitment (`revocationpubkey`).
    RevocationPubkey
);
public_key_newtype!(
    /// A delayed payment public key of one commitment (`local_delayedpubkey`).
    DelayedPaymentPubkey
);
public_key_newtype!(
    /// An HTLC public key of one commitment (`local_htlcpubkey` / `remote_htlcpubkey`).
    HtlcPubkey
);

secret_key_newtype!(
    /// The secret of a [`FundingPubkey`].
    FundingSecret => FundingPubkey
);
secret_key_newtype!(
    /// The secret of a [`RevocationBasepoint`].
    RevocationBaseSecret => RevocationBasepoint
);
secret_key_newtype!(
    /// The secret of a [`PaymentBasepoint`].
    PaymentBaseSecret => PaymentBasepoint
);
secret_key_newtype!(
    /// The secret of a [`DelayedPaymentBasepoint`].
    DelayedPaymentBaseSecret => DelayedPaymentBasepoint
);
secret_key_newtype!(
    /// The secret of an [`HtlcBasepoint`].
    HtlcBaseSecret => HtlcBasepoint
);

/// A per-commitment secret (32 bytes), revealed to the peer to revoke a commitment.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PerCommitmentSecret([u8; 32]);

impl PerCommitmentSecret {
    /// Wraps 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        PerCommitmentSecret(bytes)
    }

    /// The 32 bytes.
    pub const fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// A reference to the 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The secret as a private key.
    ///
    /// # Errors
    /// If the bytes are zero or not below the curve order.
    pub fn to_secret_key(&self) -> Result<SecretKey, DerivationError> {
        SecretKey::from_slice(&self.0).map_err(|_| DerivationError)
    }

    /// The per-commitment point `secret·G`.
    ///
    /// # Errors
    /// If the secret is not a valid private key.
    pub fn point<C: Signing>(&self, secp: &Secp256k1<C>) -> Result<PerCommitmentPoint, DerivationError> {
        Ok(PerCommitmentPoint(PublicKey::from_secret_key(secp, &self.to_secret_key()?)))
    }
}

impl fmt::Debug for PerCommitmentSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PerCommitmentSecret(<redacted>)")
    }
}

/// A 32-byte seed supplied by the embedder, from which channel keys are derived.
#[derive(Clone, PartialEq, Eq)]
pub struct Seed([u8; 32]);

impl Seed {
    /// Wraps 32 bytes of entropy. The crate never generates entropy itself.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Seed(bytes)
    }

    /// The seed bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seed(<redacted>)")
    }
}

fn tweak_hash(first: &PublicKey, second: &PublicKey) -> Result<Scalar, DerivationError> {
    let mut both = [0u8; 66];
    both[..33].copy_from_slice(&first.serialize());
    both[33..].copy_from_slice(&second.serialize());
    Scalar::from_be_bytes(sha256::Hash::hash(&both).to_byte_array()).map_err(|_| DerivationError)
}

/// BOLT #3 `pubkey = basepoint + SHA256(per_commitment_point ‖ basepoint)·G`.
///
/// `tweak·G` is computed with the generator multiplication of a signing context
/// (`PublicKey::from_secret_key`) and then added to the basepoint, rather than with
/// `PublicKey::add_exp_tweak`: the same point, about 6 % fewer instructions per key.
///
/// # Errors
/// If the tweak is out of range or the sum is the point at infinity (negligible probability).
pub fn derive_pubkey<C: Signing>(
    secp: &Secp256k1<C>,
    basepoint: &PublicKey,
    per_commitment_point: &PerCommitmentPoint,
) -> Result<PublicKey, DerivationError> {
    add_exp_tweak_via_generator(secp, basepoint, &tweak_hash(&per_commitment_point.0, basepoint)?)
}

/// `point + tweak·G`, as `PublicKey::add_exp_tweak` computes it (the same result and the same
/// failure, the point at infinity), with `tweak·G` from the generator multiplication.
fn add_exp_tweak_via_generator<C: Signing>(
    secp: &Secp256k1<C>,
    point: &PublicKey,
    tweak: &Scalar,
) -> Result<PublicKey, DerivationError> {
    match SecretKey::from_slice(&tweak.to_be_bytes()) {
        Ok(t) => point.combine(&PublicKey::from_secret_key(secp, &t)).map_err(|_| DerivationError),
        // The only scalar that is not a valid secret key is zero: `point + 0·G = point`.
        Err(_) => Ok(*point),
    }
}

/// BOLT #3 `privkey = basepoint_secret + SHA256(per_commitment_point ‖ basepoint)`.
///
/// # Errors
/// If the tweak is out of range or the result is zero (negligible probability).
pub fn derive_privkey<C: Signing>(
    secp: &Secp256k1<C>,
    base_secret: &SecretKey,
    per_commitment_point: &PerCommitmentPoint,
) -> Result<SecretKey, DerivationError> {
    let basepoint = PublicKey::from_secret_key(secp, base_secret);
    derive_privkey_with_basepoint(base_secret, &basepoint, per_commitment_point)
}

/// As [`derive_privkey`], for a caller that already knows `basepoint = base_secret·G` (saves a
/// point multiplication). The basepoint MUST match the secret, or the key is wrong.
///
/// # Errors
/// If the tweak is out of range or the result is zero (negligible probability).
pub fn derive_privkey_with_basepoint(
    base_secret: &SecretKey,
    basepoint: &PublicKey,
    per_commitment_point: &PerCommitmentPoint,
) -> Result<SecretKey, DerivationError> {
    let tweak = tweak_hash(&per_commitment_point.0, basepoint)?;
    base_secret.add_tweak(&tweak).map_err(|_| DerivationError)
}

/// BOLT #3 `revocationprivkey = R_secret·SHA256(R ‖ P) + p·SHA256(P ‖ R)`: the key that spends
/// every revocation path of a commitment once its owner has revealed `per_commitment_secret`.
///
/// # Errors
/// If the secret is invalid or a tweak is out of range.
pub fn derive_revocation_privkey<C: Signing>(
    secp: &Secp256k1<C>,
    revocation_base_secret: &RevocationBaseSecret,
    per_commitment_secret: &PerCommitmentSecret,
) -> Result<SecretKey, DerivationError> {
    let base = RevocationBasepoint(PublicKey::from_secret_key(secp, &revocation_base_secret.0));
    derive_revocation_privkey_with_basepoint(secp, revocation_base_secret, &base, per_commitment_secret)
}

/// As [`derive_revocation_privkey`], for a caller that already knows the revocation basepoint
/// (saves a point multiplication). The basepoint MUST match the secret.
///
/// # Errors
/// If the secret is invalid or a tweak is out of range.
pub fn derive_revocation_privkey_with_basepoint<C: Signing>(
    secp: &Secp256k1<C>,
    revocation_base_secret: &RevocationBaseSecret,
    basepoint: &RevocationBasepoint,
    per_commitment_secret: &PerCommitmentSecret,
) -> Result<SecretKey, DerivationError> {
    let pcs = per_commitment_secret.to_secret_key()?;
    let base = basepoint.0;
    let point = PublicKey::from_secret_key(secp, &pcs);
    let a = revocation_base_secret.0.mul_tweak(&tweak_hash(&base, &point)?).map_err(|_| DerivationError)?;
    let b = pcs.mul_tweak(&tweak_hash(&point, &base)?).map_err(|_| DerivationError)?;
    a.add_tweak(&Scalar::from(b)).map_err(|_| DerivationError)
}

impl RevocationPubkey {
    /// BOLT #3 `revocationpubkey = R·SHA256(R ‖ P) + P·SHA256(P ‖ R)`.
    ///
    /// # Errors
    /// If a tweak is out of range or the sum is the point at infinity.
    pub fn derive<C: Verification>(
        secp: &Secp256k1<C>,
        basepoint: &RevocationBasepoint,
        per_commitment_point: &PerCommitmentPoint,
    ) -> Result<Self, DerivationError> {
        let r = &basepoint.0;
        let p = &per_commitment_point.0;
        let a = r.mul_tweak(secp, &tweak_hash(r, p)?).map_err(|_| DerivationError)?;
        let b = p.mul_tweak(secp, &tweak_hash(p, r)?).map_err(|_| DerivationError)?;
        a.combine(&b).map(RevocationPubkey).map_err(|_| DerivationError)
    }
}

impl DelayedPaymentPubkey {
    /// The delayed payment key of the commitment with this per-commitment point.
    ///
    /// # Errors
    /// See [`derive_pubkey`].
    pub fn derive<C: Signing>(
        secp: &Secp256k1<C>,
        basepoint: &DelayedPaymentBasepoint,
        per_commitment_point: &PerCommitmentPoint,
    ) -> Result<Self, DerivationError> {
        derive_pubkey(secp, &basepoint.0, per_commitment_point).map(DelayedPaymentPubkey)
    }
}

impl HtlcPubkey {
    /// The HTLC key of the commitment with this per-commitment point.
    ///
    /// # Errors
    /// See [`derive_pubkey`].
    pub fn derive<C: Signing>(
        secp: &Secp256k1<C>,
        basepoint: &HtlcBasepoint,
        per_commitment_point: &PerCommitmentPoint,
    ) -> Result<Self, DerivationError> {
        derive_pubkey(secp, &basepoint.0, per_commitment_point).map(HtlcPubkey)
    }
}

/// The public half of a party's channel keys: what it tells its peer when a channel opens.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ChannelPubkeys {
    /// Key in the 2-of-2 funding output.
    pub funding: FundingPubkey,
    /// Basepoint of revocation keys (used by the *peer's* commitments).
    pub revocation_basepoint: RevocationBasepoint,
    /// Payment basepoint (`to_remote` key with `option_static_remotekey`).
    pub payment_basepoint: PaymentBasepoint,
    /// Basepoint of the delayed `to_local` key.
    pub delayed_payment_basepoint: DelayedPaymentBasepoint,
    /// Basepoint of HTLC keys.
    pub htlc_basepoint: HtlcBasepoint,
}

/// A party's channel secrets: the funding key, four base secrets and the seed of its
/// per-commitment secrets. `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelSecrets {
    /// Funding key secret.
    pub funding: FundingSecret,
    /// Revocation base secret.
    pub revocation_base: RevocationBaseSecret,
    /// Payment base secret.
    pub payment_base: PaymentBaseSecret,
    /// Delayed payment base secret.
    pub delayed_payment_base: DelayedPaymentBaseSecret,
    /// HTLC base secret.
    pub htlc_base: HtlcBaseSecret,
    /// Seed of the per-commitment secret chain ([`shachain::generate_from_seed`]).
    pub commitment_seed: Seed,
}

impl fmt::Debug for ChannelSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChannelSecrets(<redacted>)")
    }
}

/// Derives a valid secret key from `seed`, a domain label and a channel index:
/// `SHA256("paychan/key/v1" ‖ label ‖ seed ‖ index ‖ counter)`, with the counter stepped in the
/// (≈2⁻¹²⁸-probability) case that the hash is not a valid scalar.
fn derive_secret(seed: &Seed, label: &[u8], channel_index: u64) -> SecretKey {
    let mut counter: u32 = 0;
    loop {
        let mut engine = sha256::Hash::engine();
        engine.input(b"paychan/key/v1");
        engine.input(&[label.len() as u8]);
        engine.input(label);
        engine.input(&seed.0);
        engine.input(&channel_index.to_be_bytes());
        engine.input(&counter.to_be_bytes());
        let hash = sha256::Hash::from_engine(engine).to_byte_array();
        if let Ok(sk) = SecretKey::from_slice(&hash) {
            return sk;
        }
        counter = counter.wrapping_add(1);
    }
}

impl ChannelSecrets {
    /// Derives all channel secrets of channel number `channel_index` from the embedder's seed.
    /// The same seed and index always give the same keys; different indices give unrelated keys.
    pub fn from_seed(seed: &Seed, channel_index: u64) -> Self {
        let commitment_seed = derive_secret(seed, b"commitment-seed", channel_index).secret_bytes();
        ChannelSecrets {
            funding: FundingSecret(derive_secret(seed, b"funding", channel_index)),
            revocation_base: RevocationBaseSecret(derive_secret(seed, b"revocation", channel_index)),
            payment_base: PaymentBaseSecret(derive_secret(seed, b"payment", channel_index)),
            delayed_payment_base: DelayedPaymentBaseSecret(derive_secret(seed, b"delayed", channel_index)),
            htlc_base: HtlcBaseSecret(derive_secret(seed, b"htlc", channel_index)),
            commitment_seed: Seed(commitment_seed),
        }
    }

    /// The public keys to tell the peer.
    pub fn pubkeys<C: Signing>(&self, secp: &Secp256k1<C>) -> ChannelPubkeys {
        ChannelPubkeys {
            funding: self.funding.public_key(secp),
            revocation_basepoint: self.revocation_base.public_key(secp),
            payment_basepoint: self.payment_base.public_key(secp),
            delayed_payment_basepoint: self.delayed_payment_base.public_key(secp),
            htlc_basepoint: self.htlc_base.public_key(secp),
        }
    }

    /// The per-commitment secret of commitment `n` (BOLT #3 index `2^48 - 1 - n`).
    pub fn per_commitment_secret(&self, n: CommitmentNumber) -> PerCommitmentSecret {
        shachain::generate_from_seed(&self.commitment_seed, n.secret_index())
    }

    /// The per-commitment point of commitment `n`.
    ///
    /// # Errors
    /// If the generated secret is not a valid private key (negligible probability).
    pub fn per_commitment_point<C: Signing>(
        &self,
        secp: &Secp256k1<C>,
        n: CommitmentNumber,
    ) -> Result<PerCommitmentPoint, DerivationError> {
        self.per_commitment_secret(n).point(secp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn secrets_are_redacted() {
        let s = ChannelSecrets::from_seed(&Seed::from_bytes([7; 32]), 1);
        let text = format!("{:?} {:?} {:?}", s, s.funding, s.commitment_seed);
        assert!(text.contains("redacted"));
        assert!(!text.contains(&format!("{}", s.funding.secret_key().display_secret())));
    }

    /// What `derive_pubkey` computed before it used the generator multiplication.
    fn derive_pubkey_with_add_exp_tweak(
        secp: &Secp256k1<bitcoin::secp256k1::All>,
        basepoint: &PublicKey,
        point: &PerCommitmentPoint,
    ) -> Result<PublicKey, DerivationError> {
        basepoint.add_exp_tweak(secp, &tweak_hash(&point.0, basepoint)?).map_err(|_| DerivationError)
    }

    proptest::proptest! {
        #[test]
        fn derive_pubkey_matches_add_exp_tweak(base in proptest::array::uniform32(1u8..), pcs in proptest::array::uniform32(1u8..)) {
            let secp = Secp256k1::new();
            let (Ok(base), Ok(pcs)) = (SecretKey::from_slice(&base), SecretKey::from_slice(&pcs)) else { return Ok(()) };
            let basepoint = PublicKey::from_secret_key(&secp, &base);
            let point = PerCommitmentPoint(PublicKey::from_secret_key(&secp, &pcs));
            let new = derive_pubkey(&secp, &basepoint, &point).map(|k| k.serialize());
            let old = derive_pubkey_with_add_exp_tweak(&secp, &basepoint, &point).map(|k| k.serialize());
            proptest::prop_assert_eq!(new, old);
            // and the private key still matches the public one
            let sk = derive_privkey_with_basepoint(&base, &basepoint, &point).unwrap();
            proptest::prop_assert_eq!(Ok(PublicKey::from_secret_key(&secp, &sk).serialize()), new);
        }

        #[test]
        fn generator_tweak_matches_add_exp_tweak(base in proptest::array::uniform32(1u8..), tweak in proptest::array::uniform32(0u8..)) {
            let secp = Secp256k1::new();
            let Ok(base) = SecretKey::from_slice(&base) else { return Ok(()) };
            let Ok(tweak) = Scalar::from_be_bytes(tweak) else { return Ok(()) };
            let point = PublicKey::from_secret_key(&secp, &base);
            proptest::prop_assert_eq!(
                add_exp_tweak_via_generator(&secp, &point, &tweak),
                point.add_exp_tweak(&secp, &tweak).map_err(|_| DerivationError)
            );
        }
    }

    #[test]
    fn generator_tweak_edge_cases_match_add_exp_tweak() {
        let secp = Secp256k1::new();
        let base = SecretKey::from_slice(&[0x42; 32]).unwrap();
        let point = PublicKey::from_secret_key(&secp, &base);
        // A zero tweak leaves the point unchanged.
        assert_eq!(add_exp_tweak_via_generator(&secp, &point, &Scalar::ZERO), Ok(point));
        assert_eq!(point.add_exp_tweak(&secp, &Scalar::ZERO), Ok(point));
        // A tweak of minus the point's secret gives the point at infinity: both refuse it.
        let minus = Scalar::from(base.negate());
        assert_eq!(add_exp_tweak_via_generator(&secp, &point, &minus), Err(DerivationError));
        assert!(point.add_exp_tweak(&secp, &minus).is_err());
        // The largest scalar (n - 1) still works and agrees.
        let max = Scalar::MAX;
        assert_eq!(
            add_exp_tweak_via_generator(&secp, &point, &max),
            point.add_exp_tweak(&secp, &max).map_err(|_| DerivationError)
        );
    }

    #[test]
    fn channel_index_separates_keys() {
        let seed = Seed::from_bytes([1; 32]);
        let a = ChannelSecrets::from_seed(&seed, 0);
        let b = ChannelSecrets::from_seed(&seed, 1);
        assert_ne!(a.funding, b.funding);
        assert_ne!(a.htlc_base.secret_key(), a.payment_base.secret_key());
    }
}
