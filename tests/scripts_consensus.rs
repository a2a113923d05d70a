//! Every spending path of every script builder in `paychan::core::script`, spent in a real
//! version-2 segwit transaction and run through Bitcoin Core's script interpreter
//! (libbitcoinconsensus with all pre-taproot flags), plus the negative cases each lock must refuse.
//!
//! Positive spends must also pass the policy checks of [`common::check_p2wsh_policy`]
//! (MINIMALIF, NULLFAIL, NULLDUMMY, LOW_S, clean stack), which libbitcoinconsensus cannot apply.

mod common;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{PublicKey, SecretKey};
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::transaction::Version;
use bitcoin::{ecdsa, Amount, Transaction, TxOut, Witness};
use common::{
    is_script_failure, outpoint, p2wsh_prevout, public_key, secp, secret_key, sign_p2wsh, spending_tx, verify_spend,
    verify_spend_standard, PREVOUT_VALUE,
};
use paychan::core::hashlock::{PaymentHash, PaymentPreimage};
use paychan::core::keys::{
    derive_privkey, derive_revocation_privkey, DelayedPaymentBasepoint, DelayedPaymentPubkey, FundingPubkey,
    HtlcBasepoint, HtlcPubkey, PerCommitmentSecret, RevocationBaseSecret, RevocationPubkey,
};
use paychan::core::script::{self, WitnessScript};
use paychan::core::units::BlockHeight;

/// nSequence: nLockTime enforced, BIP68 off, BIP125 RBF signalled.
const RBF: u32 = 0xFFFF_FFFD;
/// nSequence: nLockTime enforced, BIP68 off, no RBF signal (the bitcoinj refund value).
const LOCKTIME_ONLY: u32 = 0xFFFF_FFFE;
/// nSequence: final; nLockTime ignored and `OP_CHECKLOCKTIMEVERIFY` always fails.
const FINAL: u32 = 0xFFFF_FFFF;

/// BOLT #3 `to_self_delay` used by the `to_local` tests.
const TO_SELF_DELAY: u16 = 144;
/// `cltv_expiry` of the BOLT #3 HTLC tests.
const CLTV_EXPIRY: u32 = 800_144;
/// Expiry height of the Spilman CLTV channel and of the hashlock HTLC.
const EXPIRY: BlockHeight = BlockHeight(800_000);
/// Refund delay of the duplex leaf channel `S_csv`.
const REFUND_DELAY: u16 = 432;

// ------------------------------------------------------------------------------------------------
// A small spend builder: one P2WSH prevout, one v2 spending transaction, one witness.

/// One attempt to spend a P2WSH output paying `PREVOUT_VALUE` to `script`.
#[derive(Clone, Copy)]
struct Spend<'a> {
    script: &'a WitnessScript,
    lock_time: u32,
    sequence: u32,
    version: Version,
    /// The amount the signatures commit to (the prevout's value unless a test lies about it).
    signed_value: Amount,
}

/// What a witness closure gets: signatures over the transaction being built.
struct Sigs<'a> {
    tx: &'a Transaction,
    script: &'a WitnessScript,
    value: Amount,
}

impl Sigs<'_> {
    /// A `SIGHASH_ALL` signature by `key`.
    fn all(&self, key: &SecretKey) -> ecdsa::Signature {
        self.with(key, EcdsaSighashType::All)
    }

    /// A signature by `key` with the given sighash type.
    fn with(&self, key: &SecretKey, ty: EcdsaSighashType) -> ecdsa::Signature {
        sign_p2wsh(self.tx, 0, self.script, self.value, key, ty)
    }
}

/// A fully built spend and the output it spends.
struct Built {
    tx: Transaction,
    prevout: TxOut,
}

impl Built {
    /// Core's verdict with all pre-taproot consensus flags.
    fn consensus(&self) -> Result<(), String> {
        verify_spend(&self.tx, std::slice::from_ref(&self.prevout))
    }

    /// Consensus, then the segwit policy rules Core applies before relaying.
    fn standard(&self) -> Result<(), String> {
        verify_spend_standard(&self.tx, std::slice::from_ref(&self.prevout))
    }

    #[track_caller]
    fn assert_valid(&self, what: &str) {
        if let Err(e) = self.standard() {
            panic!("{what}: expected a valid spend, got {e}\n{:#?}", self.tx);
        }
    }

    #[track_caller]
    fn assert_rejected(&self, what: &str) {
        match self.consensus() {
            Ok(()) => panic!("{what}: Core accepted a spend it must refuse\n{:#?}", self.tx),
            Err(e) => assert!(is_script_failure(&e), "{what}: not a script failure: {e}"),
        }
    }
}

impl<'a> Spend<'a> {
    /// nLockTime 0, nSequence `RBF`, version 2, signatures over the true value.
    fn of(script: &'a WitnessScript) -> Self {
        Spend { script, lock_time: 0, sequence: RBF, version: Version::TWO, signed_value: PREVOUT_VALUE }
    }

    fn lock_time(self, lock_time: u32) -> Self {
        Spend { lock_time, ..self }
    }

    fn sequence(self, sequence: u32) -> Self {
        Spend { sequence, ..self }
    }

    fn version(self, version: i32) -> Self {
        Spend { version: Version(version), ..self }
    }

    fn signed_value(self, signed_value: Amount) -> Self {
        Spend { signed_value, ..self }
    }

    /// Builds the transaction, then its witness with `witness` (which signs the final
    /// transaction: version, locktime and sequence are set before any signature is made).
    fn build(self, witness: impl FnOnce(&Sigs<'_>) -> Witness) -> Built {
        let prevout = p2wsh_prevout(self.script, PREVOUT_VALUE);
        let mut tx = spending_tx(outpoint(0xaa, 0), PREVOUT_VALUE, self.lock_time, self.sequence);
        tx.version = self.version;
        let w = witness(&Sigs { tx: &tx, script: self.script, value: self.signed_value });
        tx.input[0].witness = w;
        Built { tx, prevout }
    }
}

/// A witness from raw items followed by the witness script (for malformed witnesses the crate's
/// builders cannot produce).
fn raw_witness(items: &[&[u8]], script: &WitnessScript) -> Witness {
    let mut w = Witness::from_slice(items);
    w.push(script.as_bytes());
    w
}

// ------------------------------------------------------------------------------------------------
// Keys

/// The BOLT #3 keys of one commitment, derived from base secrets and one per-commitment secret,
/// with the private keys that spend each path.
struct CommitmentKeys {
    revocation: RevocationPubkey,
    revocation_sk: SecretKey,
    revocation_base_sk: SecretKey,
    delayed: DelayedPaymentPubkey,
    delayed_sk: SecretKey,
    local_htlc: HtlcPubkey,
    local_htlc_sk: SecretKey,
    remote_htlc: HtlcPubkey,
    remote_htlc_sk: SecretKey,
}

fn commitment_keys() -> CommitmentKeys {
    let secp = secp();
    let per_commitment_secret = PerCommitmentSecret::from_bytes([0x21; 32]);
    let point = per_commitment_secret.point(&secp).unwrap();

    let revocation_base = RevocationBaseSecret::from_secret_key(secret_key(0x11));
    let revocation = RevocationPubkey::derive(&secp, &revocation_base.public_key(&secp), &point).unwrap();
    let revocation_sk = derive_revocation_privkey(&secp, &revocation_base, &per_commitment_secret).unwrap();

    let delayed_base = DelayedPaymentBasepoint::from_public_key(public_key(0x12));
    let delayed = DelayedPaymentPubkey::derive(&secp, &delayed_base, &point).unwrap();
    let delayed_sk = derive_privkey(&secp, &secret_key(0x12), &point).unwrap();

    let local_htlc = HtlcPubkey::derive(&secp, &HtlcBasepoint::from_public_key(public_key(0x13)), &point).unwrap();
    let local_htlc_sk = derive_privkey(&secp, &secret_key(0x13), &point).unwrap();
    let remote_htlc = HtlcPubkey::derive(&secp, &HtlcBasepoint::from_public_key(public_key(0x14)), &point).unwrap();
    let remote_htlc_sk = derive_privkey(&secp, &secret_key(0x14), &point).unwrap();

    CommitmentKeys {
        revocation,
        revocation_sk,
        revocation_base_sk: secret_key(0x11),
        delayed,
        delayed_sk,
        local_htlc,
        local_htlc_sk,
        remote_htlc,
        remote_htlc_sk,
    }
}

const PREIMAGE: PaymentPreimage = PaymentPreimage([0x42; 32]);
const WRONG_PREIMAGE: PaymentPreimage = PaymentPreimage([0x43; 32]);

/// Spilman / hashlock parties.
const PAYER: u8 = 0x31;
const PAYEE: u8 = 0x32;
/// A key that is no party to any script.
const STRANGER: u8 = 0x66;

#[test]
fn derived_private_keys_match_derived_public_keys() {
    let secp = secp();
    let k = commitment_keys();
    assert_eq!(PublicKey::from_secret_key(&secp, &k.revocation_sk), *k.revocation.public_key());
    assert_eq!(PublicKey::from_secret_key(&secp, &k.delayed_sk), *k.delayed.public_key());
    assert_eq!(PublicKey::from_secret_key(&secp, &k.local_htlc_sk), *k.local_htlc.public_key());
    assert_eq!(PublicKey::from_secret_key(&secp, &k.remote_htlc_sk), *k.remote_htlc.public_key());
}

// ------------------------------------------------------------------------------------------------
// funding (2-of-2)

fn funding_key(n: u8) -> FundingPubkey {
    FundingPubkey::from_public_key(public_key(n))
}

#[test]
fn funding_script_sorts_keys() {
    let (a, b) = (funding_key(1), funding_key(2));
    let ab = script::funding(&a, &b);
    assert_eq!(ab, script::funding(&b, &a));
    let (lo, hi) = if a.serialize() < b.serialize() { (a, b) } else { (b, a) };
    let mut expected = vec![0x52, 33];
    expected.extend_from_slice(&lo.serialize());
    expected.push(33);
    expected.extend_from_slice(&hi.serialize());
    expected.extend_from_slice(&[0x52, 0xae]);
    assert_eq!(ab.as_bytes(), &expected[..]);
}

#[test]
fn funding_2of2_spends_with_keys_and_signatures_in_either_order() {
    // Both argument orders of `funding`, and both argument orders of `funding_witness`.
    for (sa, sb) in [(1u8, 2u8), (2, 1)] {
        let (ka, kb) = (funding_key(sa), funding_key(sb));
        let s = script::funding(&ka, &kb);
        Spend::of(&s)
            .build(|k| script::funding_witness(&s, (&ka, &k.all(&secret_key(sa))), (&kb, &k.all(&secret_key(sb)))))
            .assert_valid(&format!("funding({sa}, {sb}), witness in argument order"));
        Spend::of(&s)
            .build(|k| script::funding_witness(&s, (&kb, &k.all(&secret_key(sb))), (&ka, &k.all(&secret_key(sa)))))
            .assert_valid(&format!("funding({sa}, {sb}), witness in reverse order"));
    }
}

#[test]
fn funding_rejects_signature_by_another_key() {
    let (a, b) = (funding_key(1), funding_key(2));
    let s = script::funding(&a, &b);
    Spend::of(&s)
        .build(|k| script::funding_witness(&s, (&a, &k.all(&secret_key(1))), (&b, &k.all(&secret_key(STRANGER)))))
        .assert_rejected("funding, second signature by a stranger");
}

#[test]
fn funding_rejects_signatures_in_wrong_order() {
    let (a, b) = (funding_key(1), funding_key(2));
    let s = script::funding(&a, &b);
    // Each signature labelled with the other key: the witness puts them in the wrong order.
    Spend::of(&s)
        .build(|k| script::funding_witness(&s, (&a, &k.all(&secret_key(2))), (&b, &k.all(&secret_key(1)))))
        .assert_rejected("funding, signatures swapped");
}

#[test]
fn funding_rejects_signature_over_wrong_amount() {
    let (a, b) = (funding_key(1), funding_key(2));
    let s = script::funding(&a, &b);
    Spend::of(&s)
        .signed_value(PREVOUT_VALUE + Amount::from_sat(1))
        .build(|k| script::funding_witness(&s, (&a, &k.all(&secret_key(1))), (&b, &k.all(&secret_key(2)))))
        .assert_rejected("funding, signed over another amount");
}

#[test]
fn funding_rejects_non_null_dummy() {
    let (a, b) = (funding_key(1), funding_key(2));
    let s = script::funding(&a, &b);
    Spend::of(&s)
        .build(|k| {
            let good = script::funding_witness(&s, (&a, &k.all(&secret_key(1))), (&b, &k.all(&secret_key(2))));
            let items: Vec<&[u8]> = good.iter().collect();
            raw_witness(&[&[0x00], items[1], items[2]], &s)
        })
        .assert_rejected("funding, dummy element 0x00 (NULLDUMMY)");
}

// ------------------------------------------------------------------------------------------------
// to_local

fn to_local_script(k: &CommitmentKeys) -> WitnessScript {
    script::to_local(&k.revocation, TO_SELF_DELAY, &k.delayed)
}

#[test]
fn to_local_delayed_path_after_to_self_delay() {
    let k = commitment_keys();
    let s = to_local_script(&k);
    for sequence in [u32::from(TO_SELF_DELAY), u32::from(TO_SELF_DELAY) + 100] {
        Spend::of(&s)
            .sequence(sequence)
            .build(|g| script::to_local_delayed_witness(&s, &g.all(&k.delayed_sk)))
            .assert_valid(&format!("to_local delayed, nSequence {sequence}"));
    }
}

#[test]
fn to_local_delayed_path_rejected_before_to_self_delay() {
    let k = commitment_keys();
    let s = to_local_script(&k);
    Spend::of(&s)
        .sequence(u32::from(TO_SELF_DELAY) - 1)
        .build(|g| script::to_local_delayed_witness(&s, &g.all(&k.delayed_sk)))
        .assert_rejected("to_local delayed, nSequence = to_self_delay - 1");
}

#[test]
fn to_local_delayed_path_rejected_with_bip68_disabled() {
    let k = commitment_keys();
    let s = to_local_script(&k);
    Spend::of(&s)
        .sequence(RBF)
        .build(|g| script::to_local_delayed_witness(&s, &g.all(&k.delayed_sk)))
        .assert_rejected("to_local delayed, nSequence with the disable bit");
}

#[test]
fn to_local_delayed_path_rejected_in_version_1_tx() {
    let k = commitment_keys();
    let s = to_local_script(&k);
    Spend::of(&s)
        .version(1)
        .sequence(u32::from(TO_SELF_DELAY))
        .build(|g| script::to_local_delayed_witness(&s, &g.all(&k.delayed_sk)))
        .assert_rejected("to_local delayed, version 1");
}

#[test]
fn to_local_delayed_path_rejects_other_key() {
    let k = commitment_keys();
    let s = to_local_script(&k);
    Spend::of(&s)
        .sequence(u32::from(TO_SELF_DELAY))
        .build(|g| script::to_local_delayed_witness(&s, &g.all(&k.revocation_sk)))
        .assert_rejected("to_local delayed path, revocation key");
}

#[test]
fn to_local_revocation_path() {
    let k = commitment_keys();
    let s = to_local_script(&k);
    for sequence in [0, RBF, FINAL] {
        Spend::of(&s)
            .sequence(sequence)
            .build(|g| script::revocation_witness(&s, &g.all(&k.revocation_sk)))
            .assert_valid(&format!("to_local revocation, nSequence {sequence:#x}"));
    }
}

#[test]
fn to_local_revocation_path_rejects_revocation_base_secret() {
    let k = commitment_keys();
    let s = to_local_script(&k);
    Spend::of(&s)
        .build(|g| script::revocation_witness(&s, &g.all(&k.revocation_base_sk)))
        .assert_rejected("to_local revocation, underived base secret");
    Spend::of(&s)
        .build(|g| script::revocation_witness(&s, &g.all(&k.delayed_sk)))
        .assert_rejected("to_local revocation path, delayed key");
}

#[test]
fn to_local_rejects_signature_over_wrong_amount() {
    let k = commitment_keys();
    let s = to_local_script(&k);
    Spend::of(&s)
        .signed_value(PREVOUT_VALUE - Amount::from_sat(1))
        .build(|g| script::revocation_witness(&s, &g.all(&k.revocation_sk)))
        .assert_rejected("to_local revocation, signed over another amount");
}

#[test]
fn to_local_non_minimal_if_selectors_are_nonstandard() {
    let k = commitment_keys();
    let s = to_local_script(&k);
    // False selector as the one-byte push 0x00 instead of <>.
    let delayed = Spend::of(&s)
        .sequence(u32::from(TO_SELF_DELAY))
        .build(|g| raw_witness(&[&g.all(&k.delayed_sk).serialize(), &[0x00]], &s));
    // True selector 0x02 instead of 0x01.
    let revocation = Spend::of(&s).build(|g| raw_witness(&[&g.all(&k.revocation_sk).serialize(), &[0x02]], &s));
    for (built, what) in [(delayed, "0x00 as false"), (revocation, "0x02 as true")] {
        // MINIMALIF is policy for segwit v0 (consensus only in tapscript), and libbitcoinconsensus
        // accepts consensus flags only: Core's interpreter in consensus mode takes the spend.
        assert_eq!(built.consensus(), Ok(()), "{what}: consensus");
        let err = built.standard().expect_err(what);
        assert!(err.contains("MINIMALIF"), "{what}: {err}");
    }
}

// ------------------------------------------------------------------------------------------------
// to_remote with anchors, and anchors

const REMOTE_PAYMENT: u8 = 0x15;

#[test]
fn to_remote_anchored_after_one_block() {
    let s = script::to_remote_anchored(&public_key(REMOTE_PAYMENT));
    for sequence in [1, 6] {
        Spend::of(&s)
            .sequence(sequence)
            .build(|g| script::to_remote_anchored_witness(&s, &g.all(&secret_key(REMOTE_PAYMENT))))
            .assert_valid(&format!("to_remote anchored, nSequence {sequence}"));
    }
}

#[test]
fn to_remote_anchored_rejected_at_sequence_0() {
    let s = script::to_remote_anchored(&public_key(REMOTE_PAYMENT));
    Spend::of(&s)
        .sequence(0)
        .build(|g| script::to_remote_anchored_witness(&s, &g.all(&secret_key(REMOTE_PAYMENT))))
        .assert_rejected("to_remote anchored, nSequence 0");
}

#[test]
fn to_remote_anchored_rejects_other_key() {
    let s = script::to_remote_anchored(&public_key(REMOTE_PAYMENT));
    Spend::of(&s)
        .sequence(1)
        .build(|g| script::to_remote_anchored_witness(&s, &g.all(&secret_key(STRANGER))))
        .assert_rejected("to_remote anchored, stranger's key");
}

const ANCHOR_OWNER: u8 = 0x16;

fn anchor_script() -> WitnessScript {
    script::anchor(&funding_key(ANCHOR_OWNER))
}

#[test]
fn anchor_owner_path() {
    let s = anchor_script();
    for sequence in [0, RBF, FINAL] {
        Spend::of(&s)
            .sequence(sequence)
            .build(|g| script::anchor_owner_witness(&s, &g.all(&secret_key(ANCHOR_OWNER))))
            .assert_valid(&format!("anchor owner, nSequence {sequence:#x}"));
    }
}

#[test]
fn anchor_owner_path_rejects_other_key() {
    let s = anchor_script();
    Spend::of(&s)
        .sequence(RBF)
        .build(|g| script::anchor_owner_witness(&s, &g.all(&secret_key(STRANGER))))
        .assert_rejected("anchor owner path, stranger's key");
}

#[test]
fn anchor_anyone_path_after_16_blocks() {
    let s = anchor_script();
    Spend::of(&s).sequence(16).build(|_| script::anchor_anyone_witness(&s)).assert_valid("anchor anyone, nSequence 16");
}

#[test]
fn anchor_anyone_path_rejected_before_16_blocks() {
    let s = anchor_script();
    for sequence in [0, 15, RBF] {
        Spend::of(&s)
            .sequence(sequence)
            .build(|_| script::anchor_anyone_witness(&s))
            .assert_rejected(&format!("anchor anyone, nSequence {sequence:#x}"));
    }
}

#[test]
fn anchor_invalid_signature_after_16_blocks_is_consensus_valid_but_nonstandard() {
    // A failed CHECKSIG falls through to the 16-block path: consensus accepts it, NULLFAIL does not.
    let s = anchor_script();
    let built = Spend::of(&s).sequence(16).build(|g| script::anchor_owner_witness(&s, &g.all(&secret_key(STRANGER))));
    assert_eq!(built.consensus(), Ok(()));
    assert!(built.standard().unwrap_err().contains("NULLFAIL"));
}

// ------------------------------------------------------------------------------------------------
// offered_htlc / received_htlc, each path with and without option_anchors

/// Generates `mod $name { without_anchors, with_anchors }` calling `$check(anchors)`.
macro_rules! with_and_without_anchors {
    ($($name:ident => $check:ident;)*) => {$(
        mod $name {
            #[test]
            fn without_anchors() {
                super::$check(false)
            }

            #[test]
            fn with_anchors() {
                super::$check(true)
            }
        }
    )*};
}

with_and_without_anchors! {
    offered_htlc_revocation_path => check_offered_revocation;
    offered_htlc_revocation_path_rejects_wrong_key => check_offered_revocation_wrong_key;
    offered_htlc_timeout_path => check_offered_timeout;
    offered_htlc_timeout_path_rejects_bad_signatures => check_offered_timeout_bad_signatures;
    offered_htlc_remote_preimage_path => check_offered_remote_preimage;
    offered_htlc_remote_preimage_path_rejects_bad_claims => check_offered_remote_preimage_bad;
    received_htlc_revocation_path => check_received_revocation;
    received_htlc_revocation_path_rejects_wrong_key => check_received_revocation_wrong_key;
    received_htlc_success_path => check_received_success;
    received_htlc_success_path_rejects_bad_claims => check_received_success_bad;
    received_htlc_remote_timeout_path => check_received_remote_timeout;
    received_htlc_remote_timeout_path_rejects_early_or_final => check_received_remote_timeout_bad;
}

fn offered(k: &CommitmentKeys, anchors: bool) -> WitnessScript {
    script::offered_htlc(&k.revocation, &k.local_htlc, &k.remote_htlc, &PREIMAGE.hash(), anchors)
}

fn received(k: &CommitmentKeys, anchors: bool) -> WitnessScript {
    script::received_htlc(&k.revocation, &k.local_htlc, &k.remote_htlc, &PREIMAGE.hash(), CLTV_EXPIRY, anchors)
}

/// nSequence of the non-revocation HTLC paths: BOLT #3 uses 0 without anchors and 1 with them.
fn htlc_sequence(anchors: bool) -> u32 {
    u32::from(anchors)
}

/// The remote signature's sighash type on second-stage HTLC transactions (BOLT #3).
fn remote_htlc_sighash(anchors: bool) -> EcdsaSighashType {
    if anchors {
        EcdsaSighashType::SinglePlusAnyoneCanPay
    } else {
        EcdsaSighashType::All
    }
}

fn check_offered_revocation(anchors: bool) {
    let k = commitment_keys();
    let s = offered(&k, anchors);
    for sequence in [0, RBF, FINAL] {
        Spend::of(&s)
            .sequence(sequence)
            .build(|g| script::htlc_revocation_witness(&s, &g.all(&k.revocation_sk), &k.revocation))
            .assert_valid(&format!("offered revocation, anchors={anchors}, nSequence {sequence:#x}"));
    }
}

fn check_offered_revocation_wrong_key(anchors: bool) {
    let k = commitment_keys();
    let s = offered(&k, anchors);
    Spend::of(&s)
        .build(|g| script::htlc_revocation_witness(&s, &g.all(&k.revocation_base_sk), &k.revocation))
        .assert_rejected(&format!("offered revocation with base secret, anchors={anchors}"));
    // A key that is not the revocation key takes the non-revocation branch, and fails there.
    let other = RevocationPubkey::from_public_key(public_key(STRANGER));
    Spend::of(&s)
        .sequence(1)
        .build(|g| script::htlc_revocation_witness(&s, &g.all(&secret_key(STRANGER)), &other))
        .assert_rejected(&format!("offered revocation with a stranger's key, anchors={anchors}"));
}

fn check_offered_timeout(anchors: bool) {
    let k = commitment_keys();
    let s = offered(&k, anchors);
    Spend::of(&s)
        .lock_time(CLTV_EXPIRY)
        .sequence(htlc_sequence(anchors))
        .build(|g| {
            let remote = g.with(&k.remote_htlc_sk, remote_htlc_sighash(anchors));
            script::offered_htlc_timeout_witness(&s, &remote, &g.all(&k.local_htlc_sk))
        })
        .assert_valid(&format!("offered HTLC-timeout, anchors={anchors}"));
}

fn check_offered_timeout_bad_signatures(anchors: bool) {
    let k = commitment_keys();
    let s = offered(&k, anchors);
    let spend = Spend::of(&s).lock_time(CLTV_EXPIRY).sequence(htlc_sequence(anchors));
    spend
        .build(|g| script::offered_htlc_timeout_witness(&s, &g.all(&k.local_htlc_sk), &g.all(&k.remote_htlc_sk)))
        .assert_rejected(&format!("offered HTLC-timeout, signatures swapped, anchors={anchors}"));
    spend
        .build(|g| script::offered_htlc_timeout_witness(&s, &g.all(&k.remote_htlc_sk), &g.all(&secret_key(STRANGER))))
        .assert_rejected(&format!("offered HTLC-timeout, stranger as local, anchors={anchors}"));
    spend
        .signed_value(PREVOUT_VALUE * 2)
        .build(|g| script::offered_htlc_timeout_witness(&s, &g.all(&k.remote_htlc_sk), &g.all(&k.local_htlc_sk)))
        .assert_rejected(&format!("offered HTLC-timeout, signed over another amount, anchors={anchors}"));
    if anchors {
        spend
            .sequence(0)
            .build(|g| script::offered_htlc_timeout_witness(&s, &g.all(&k.remote_htlc_sk), &g.all(&k.local_htlc_sk)))
            .assert_rejected("offered HTLC-timeout with anchors, nSequence 0");
    }
}

fn check_offered_remote_preimage(anchors: bool) {
    let k = commitment_keys();
    let s = offered(&k, anchors);
    Spend::of(&s)
        .sequence(if anchors { 1 } else { RBF })
        .build(|g| script::offered_htlc_success_witness(&s, &g.all(&k.remote_htlc_sk), &PREIMAGE))
        .assert_valid(&format!("offered, remote with preimage, anchors={anchors}"));
}

fn check_offered_remote_preimage_bad(anchors: bool) {
    let k = commitment_keys();
    let s = offered(&k, anchors);
    let spend = Spend::of(&s).sequence(if anchors { 1 } else { RBF });
    spend
        .build(|g| script::offered_htlc_success_witness(&s, &g.all(&k.remote_htlc_sk), &WRONG_PREIMAGE))
        .assert_rejected(&format!("offered, remote with wrong preimage, anchors={anchors}"));
    spend
        .build(|g| script::offered_htlc_success_witness(&s, &g.all(&k.local_htlc_sk), &PREIMAGE))
        .assert_rejected(&format!("offered, preimage path signed by local key, anchors={anchors}"));
    if anchors {
        spend
            .sequence(0)
            .build(|g| script::offered_htlc_success_witness(&s, &g.all(&k.remote_htlc_sk), &PREIMAGE))
            .assert_rejected("offered with anchors, remote with preimage, nSequence 0");
    }
}

fn check_received_revocation(anchors: bool) {
    let k = commitment_keys();
    let s = received(&k, anchors);
    for sequence in [0, RBF, FINAL] {
        Spend::of(&s)
            .sequence(sequence)
            .build(|g| script::htlc_revocation_witness(&s, &g.all(&k.revocation_sk), &k.revocation))
            .assert_valid(&format!("received revocation, anchors={anchors}, nSequence {sequence:#x}"));
    }
}

fn check_received_revocation_wrong_key(anchors: bool) {
    let k = commitment_keys();
    let s = received(&k, anchors);
    Spend::of(&s)
        .build(|g| script::htlc_revocation_witness(&s, &g.all(&k.remote_htlc_sk), &k.revocation))
        .assert_rejected(&format!("received revocation signed by remote HTLC key, anchors={anchors}"));
}

fn check_received_success(anchors: bool) {
    let k = commitment_keys();
    let s = received(&k, anchors);
    Spend::of(&s)
        .sequence(htlc_sequence(anchors))
        .build(|g| {
            let remote = g.with(&k.remote_htlc_sk, remote_htlc_sighash(anchors));
            script::received_htlc_success_witness(&s, &remote, &g.all(&k.local_htlc_sk), &PREIMAGE)
        })
        .assert_valid(&format!("received HTLC-success, anchors={anchors}"));
}

fn check_received_success_bad(anchors: bool) {
    let k = commitment_keys();
    let s = received(&k, anchors);
    let spend = Spend::of(&s).sequence(htlc_sequence(anchors));
    let sign_both = |g: &Sigs<'_>, preimage: &PaymentPreimage| {
        script::received_htlc_success_witness(&s, &g.all(&k.remote_htlc_sk), &g.all(&k.local_htlc_sk), preimage)
    };
    spend
        .build(|g| sign_both(g, &WRONG_PREIMAGE))
        .assert_rejected(&format!("received HTLC-success, wrong preimage, anchors={anchors}"));
    spend
        .build(|g| {
            script::received_htlc_success_witness(&s, &g.all(&k.local_htlc_sk), &g.all(&k.remote_htlc_sk), &PREIMAGE)
        })
        .assert_rejected(&format!("received HTLC-success, signatures swapped, anchors={anchors}"));
    spend
        .signed_value(Amount::from_sat(1))
        .build(|g| sign_both(g, &PREIMAGE))
        .assert_rejected(&format!("received HTLC-success, signed over another amount, anchors={anchors}"));
    if anchors {
        spend
            .sequence(0)
            .build(|g| sign_both(g, &PREIMAGE))
            .assert_rejected("received HTLC-success with anchors, nSequence 0");
    }
}

fn check_received_remote_timeout(anchors: bool) {
    let k = commitment_keys();
    let s = received(&k, anchors);
    let sequences: &[u32] = if anchors { &[1, 100] } else { &[0, RBF, LOCKTIME_ONLY] };
    for &sequence in sequences {
        for lock_time in [CLTV_EXPIRY, CLTV_EXPIRY + 1000] {
            Spend::of(&s)
                .lock_time(lock_time)
                .sequence(sequence)
                .build(|g| script::received_htlc_timeout_witness(&s, &g.all(&k.remote_htlc_sk)))
                .assert_valid(&format!(
                    "received, remote timeout, anchors={anchors}, nLockTime {lock_time}, nSequence {sequence:#x}"
                ));
        }
    }
}

fn check_received_remote_timeout_bad(anchors: bool) {
    let k = commitment_keys();
    let s = received(&k, anchors);
    let spend = Spend::of(&s).lock_time(CLTV_EXPIRY).sequence(if anchors { 1 } else { LOCKTIME_ONLY });
    let remote_sig = |g: &Sigs<'_>| script::received_htlc_timeout_witness(&s, &g.all(&k.remote_htlc_sk));
    spend
        .lock_time(CLTV_EXPIRY - 1)
        .build(remote_sig)
        .assert_rejected(&format!("received, remote timeout at cltv_expiry - 1, anchors={anchors}"));
    spend
        .sequence(FINAL)
        .build(remote_sig)
        .assert_rejected(&format!("received, remote timeout, final nSequence, anchors={anchors}"));
    spend
        .build(|g| script::received_htlc_timeout_witness(&s, &g.all(&k.local_htlc_sk)))
        .assert_rejected(&format!("received, remote timeout signed by local key, anchors={anchors}"));
    if anchors {
        spend.sequence(0).build(remote_sig).assert_rejected("received with anchors, remote timeout, nSequence 0");
    }
}

// ------------------------------------------------------------------------------------------------
// Spilman CLTV channel

fn spilman_cltv_script() -> WitnessScript {
    script::spilman_cltv(&public_key(PAYER), &public_key(PAYEE), EXPIRY)
}

fn payment_witness(s: &WitnessScript, g: &Sigs<'_>, payer: u8, payee: u8) -> Witness {
    script::spilman_payment_witness(s, &g.all(&secret_key(payer)), &g.all(&secret_key(payee)))
}

#[test]
fn spilman_cltv_payment_path_at_any_locktime() {
    let s = spilman_cltv_script();
    for lock_time in [0, EXPIRY.0 - 1, EXPIRY.0 + 10] {
        for sequence in [RBF, FINAL] {
            Spend::of(&s)
                .lock_time(lock_time)
                .sequence(sequence)
                .build(|g| payment_witness(&s, g, PAYER, PAYEE))
                .assert_valid(&format!("spilman_cltv payment, nLockTime {lock_time}, nSequence {sequence:#x}"));
        }
    }
}

#[test]
fn spilman_cltv_payment_path_rejects_bad_signatures() {
    let s = spilman_cltv_script();
    Spend::of(&s)
        .build(|g| payment_witness(&s, g, PAYER, STRANGER))
        .assert_rejected("spilman_cltv payment, stranger as payee");
    Spend::of(&s)
        .build(|g| payment_witness(&s, g, STRANGER, PAYEE))
        .assert_rejected("spilman_cltv payment, stranger as payer");
    Spend::of(&s)
        .build(|g| payment_witness(&s, g, PAYEE, PAYER))
        .assert_rejected("spilman_cltv payment, signatures swapped");
    Spend::of(&s)
        .signed_value(PREVOUT_VALUE + Amount::from_sat(1000))
        .build(|g| payment_witness(&s, g, PAYER, PAYEE))
        .assert_rejected("spilman_cltv payment, signed over another amount");
}

#[test]
fn spilman_cltv_refund_path_from_expiry() {
    let s = spilman_cltv_script();
    for (lock_time, sequence) in
        [(EXPIRY.0, LOCKTIME_ONLY), (EXPIRY.0 + 1, LOCKTIME_ONLY), (EXPIRY.0, RBF), (EXPIRY.0, 0)]
    {
        Spend::of(&s)
            .lock_time(lock_time)
            .sequence(sequence)
            .build(|g| script::spilman_refund_witness(&s, &g.all(&secret_key(PAYER))))
            .assert_valid(&format!("spilman_cltv refund, nLockTime {lock_time}, nSequence {sequence:#x}"));
    }
}

#[test]
fn spilman_cltv_refund_path_rejected_before_expiry() {
    let s = spilman_cltv_script();
    Spend::of(&s)
        .lock_time(EXPIRY.0 - 1)
        .sequence(LOCKTIME_ONLY)
        .build(|g| script::spilman_refund_witness(&s, &g.all(&secret_key(PAYER))))
        .assert_rejected("spilman_cltv refund, nLockTime = expiry - 1");
}

#[test]
fn spilman_cltv_refund_path_rejected_with_final_sequence() {
    let s = spilman_cltv_script();
    Spend::of(&s)
        .lock_time(EXPIRY.0)
        .sequence(FINAL)
        .build(|g| script::spilman_refund_witness(&s, &g.all(&secret_key(PAYER))))
        .assert_rejected("spilman_cltv refund, final nSequence");
}

#[test]
fn spilman_cltv_refund_path_rejected_with_time_locktime() {
    // nLockTime in Unix-time units never satisfies a height expiry.
    let s = spilman_cltv_script();
    Spend::of(&s)
        .lock_time(1_700_000_000)
        .sequence(LOCKTIME_ONLY)
        .build(|g| script::spilman_refund_witness(&s, &g.all(&secret_key(PAYER))))
        .assert_rejected("spilman_cltv refund, time-based nLockTime");
}

#[test]
fn spilman_cltv_refund_path_rejects_bad_signatures() {
    let s = spilman_cltv_script();
    let spend = Spend::of(&s).lock_time(EXPIRY.0).sequence(LOCKTIME_ONLY);
    spend
        .build(|g| script::spilman_refund_witness(&s, &g.all(&secret_key(PAYEE))))
        .assert_rejected("spilman_cltv refund signed by payee");
    spend
        .signed_value(PREVOUT_VALUE - Amount::from_sat(1000))
        .build(|g| script::spilman_refund_witness(&s, &g.all(&secret_key(PAYER))))
        .assert_rejected("spilman_cltv refund, signed over another amount");
}

#[test]
fn spilman_cltv_refund_with_bitcoinj_0x00_selector_is_nonstandard() {
    // bitcoinj's P2SH refund pushes 0x00 as the false selector; under P2WSH that breaks MINIMALIF.
    let s = spilman_cltv_script();
    let built = Spend::of(&s)
        .lock_time(EXPIRY.0)
        .sequence(LOCKTIME_ONLY)
        .build(|g| raw_witness(&[&g.all(&secret_key(PAYER)).serialize(), &[0x00]], &s));
    assert_eq!(built.consensus(), Ok(()), "MINIMALIF is not a consensus rule for segwit v0");
    assert!(built.standard().unwrap_err().contains("MINIMALIF"));
}

// ------------------------------------------------------------------------------------------------
// Duplex leaf channel S_csv

fn spilman_csv_script() -> WitnessScript {
    script::spilman_csv(&public_key(PAYER), &public_key(PAYEE), REFUND_DELAY)
}

#[test]
fn spilman_csv_payment_path() {
    let s = spilman_csv_script();
    for sequence in [0, RBF, FINAL] {
        Spend::of(&s)
            .sequence(sequence)
            .build(|g| payment_witness(&s, g, PAYER, PAYEE))
            .assert_valid(&format!("spilman_csv payment, nSequence {sequence:#x}"));
    }
}

#[test]
fn spilman_csv_payment_path_rejects_bad_signatures() {
    let s = spilman_csv_script();
    Spend::of(&s)
        .build(|g| payment_witness(&s, g, PAYER, STRANGER))
        .assert_rejected("spilman_csv payment, stranger as payee");
    Spend::of(&s)
        .build(|g| payment_witness(&s, g, PAYEE, PAYER))
        .assert_rejected("spilman_csv payment, signatures swapped");
}

#[test]
fn spilman_csv_refund_path_after_refund_delay() {
    let s = spilman_csv_script();
    for sequence in [u32::from(REFUND_DELAY), u32::from(REFUND_DELAY) + 1] {
        Spend::of(&s)
            .sequence(sequence)
            .build(|g| script::spilman_refund_witness(&s, &g.all(&secret_key(PAYER))))
            .assert_valid(&format!("spilman_csv refund, nSequence {sequence}"));
    }
}

#[test]
fn spilman_csv_refund_path_rejected_before_refund_delay() {
    let s = spilman_csv_script();
    Spend::of(&s)
        .sequence(u32::from(REFUND_DELAY) - 1)
        .build(|g| script::spilman_refund_witness(&s, &g.all(&secret_key(PAYER))))
        .assert_rejected("spilman_csv refund, nSequence = refund_delay - 1");
}

#[test]
fn spilman_csv_refund_path_rejected_in_version_1_tx() {
    let s = spilman_csv_script();
    Spend::of(&s)
        .version(1)
        .sequence(u32::from(REFUND_DELAY))
        .build(|g| script::spilman_refund_witness(&s, &g.all(&secret_key(PAYER))))
        .assert_rejected("spilman_csv refund, version 1");
}

#[test]
fn spilman_csv_refund_path_rejects_payee_signature() {
    let s = spilman_csv_script();
    Spend::of(&s)
        .sequence(u32::from(REFUND_DELAY))
        .build(|g| script::spilman_refund_witness(&s, &g.all(&secret_key(PAYEE))))
        .assert_rejected("spilman_csv refund signed by payee");
}

// ------------------------------------------------------------------------------------------------
// Non-revocable hashlock HTLC

fn hashlock_script(hash: &PaymentHash) -> WitnessScript {
    script::hashlock_htlc(&public_key(PAYEE), &public_key(PAYER), hash, EXPIRY)
}

#[test]
fn hashlock_htlc_success_path() {
    let s = hashlock_script(&PREIMAGE.hash());
    for lock_time in [0, EXPIRY.0 + 5] {
        Spend::of(&s)
            .lock_time(lock_time)
            .build(|g| script::hashlock_success_witness(&s, &g.all(&secret_key(PAYEE)), &PREIMAGE))
            .assert_valid(&format!("hashlock success, nLockTime {lock_time}"));
    }
}

#[test]
fn hashlock_htlc_success_path_rejects_wrong_preimage_or_key() {
    let s = hashlock_script(&PREIMAGE.hash());
    Spend::of(&s)
        .build(|g| script::hashlock_success_witness(&s, &g.all(&secret_key(PAYEE)), &WRONG_PREIMAGE))
        .assert_rejected("hashlock success, wrong preimage");
    Spend::of(&s)
        .build(|g| script::hashlock_success_witness(&s, &g.all(&secret_key(PAYER)), &PREIMAGE))
        .assert_rejected("hashlock success signed by payer");
    Spend::of(&s)
        .signed_value(PREVOUT_VALUE + Amount::from_sat(1))
        .build(|g| script::hashlock_success_witness(&s, &g.all(&secret_key(PAYEE)), &PREIMAGE))
        .assert_rejected("hashlock success, signed over another amount");
}

#[test]
fn hashlock_htlc_success_path_rejects_preimage_of_wrong_size() {
    // The script's hash is SHA256 of the odd-sized "preimage" itself: only the size check stops it.
    for len in [31usize, 33] {
        let bad = vec![0x42u8; len];
        let hash = PaymentHash(bitcoin::hashes::sha256::Hash::hash(&bad).to_byte_array());
        let s = hashlock_script(&hash);
        Spend::of(&s)
            .build(|g| raw_witness(&[&g.all(&secret_key(PAYEE)).serialize(), &bad, &[1]], &s))
            .assert_rejected(&format!("hashlock success with a {len}-byte preimage"));
    }
}

#[test]
fn hashlock_htlc_timeout_path_from_expiry() {
    let s = hashlock_script(&PREIMAGE.hash());
    for (lock_time, sequence) in [(EXPIRY.0, LOCKTIME_ONLY), (EXPIRY.0, RBF), (EXPIRY.0 + 1, 0)] {
        Spend::of(&s)
            .lock_time(lock_time)
            .sequence(sequence)
            .build(|g| script::hashlock_timeout_witness(&s, &g.all(&secret_key(PAYER))))
            .assert_valid(&format!("hashlock timeout, nLockTime {lock_time}, nSequence {sequence:#x}"));
    }
}

#[test]
fn hashlock_htlc_timeout_path_rejected_before_expiry_or_with_final_sequence() {
    let s = hashlock_script(&PREIMAGE.hash());
    let refund = |g: &Sigs<'_>| script::hashlock_timeout_witness(&s, &g.all(&secret_key(PAYER)));
    Spend::of(&s)
        .lock_time(EXPIRY.0 - 1)
        .sequence(LOCKTIME_ONLY)
        .build(refund)
        .assert_rejected("hashlock timeout, nLockTime = expiry - 1");
    Spend::of(&s)
        .lock_time(EXPIRY.0)
        .sequence(FINAL)
        .build(refund)
        .assert_rejected("hashlock timeout, final nSequence");
}

#[test]
fn hashlock_htlc_timeout_path_rejects_payee_signature() {
    let s = hashlock_script(&PREIMAGE.hash());
    Spend::of(&s)
        .lock_time(EXPIRY.0)
        .sequence(LOCKTIME_ONLY)
        .build(|g| script::hashlock_timeout_witness(&s, &g.all(&secret_key(PAYEE))))
        .assert_rejected("hashlock timeout signed by payee");
}
