//! Witness scripts and witnesses for every spending path the crate uses.
//!
//! Every output the crate creates is P2WSH (or P2WPKH for the BOLT #3 `to_remote` output without
//! anchors). A [`WitnessScript`] is the script that the witness reveals; [`WitnessScript::to_p2wsh`]
//! gives the output's scriptPubKey. Each builder has matching witness builders, one per spending
//! path, that put the script last and obey the MINIMALIF (`<>` / `0x01`) and NULLDUMMY rules.
//!
//! | script | paths |
//! |---|---|
//! | [`funding`] (2-of-2, sorted keys) | [`funding_witness`] |
//! | [`to_local`] (BOLT #3 revocable) | [`to_local_delayed_witness`], [`revocation_witness`] |
//! | [`to_remote_anchored`] (`<k> CHECKSIGVERIFY 1 CSV`) | [`to_remote_anchored_witness`] |
//! | [`anchor`] | [`anchor_owner_witness`], [`anchor_anyone_witness`] |
//! | [`offered_htlc`] | [`htlc_revocation_witness`], [`offered_htlc_timeout_witness`], [`offered_htlc_success_witness`] |
//! | [`received_htlc`] | [`htlc_revocation_witness`], [`received_htlc_success_witness`], [`received_htlc_timeout_witness`] |
//! | [`spilman_cltv`], [`spilman_csv`] (payer → payee channel) | [`spilman_payment_witness`], [`spilman_refund_witness`] |
//! | [`hashlock_htlc`] (non-revocable HTLC) | [`hashlock_success_witness`], [`hashlock_timeout_witness`] |

use bitcoin::hashes::{hash160, Hash};
use bitcoin::opcodes::all::{
    OP_CHECKMULTISIG, OP_CHECKSIG, OP_CHECKSIGVERIFY, OP_CLTV, OP_CSV, OP_DROP, OP_DUP, OP_ELSE, OP_ENDIF, OP_EQUAL,
    OP_EQUALVERIFY, OP_HASH160, OP_IF, OP_IFDUP, OP_NOTIF, OP_PUSHNUM_1, OP_PUSHNUM_16, OP_PUSHNUM_2, OP_SHA256,
    OP_SIZE, OP_SWAP,
};
use bitcoin::script::Builder;
use bitcoin::secp256k1::PublicKey;
use bitcoin::{ecdsa, Script, ScriptBuf, WPubkeyHash, Witness};

use super::hashlock::{PaymentHash, PaymentPreimage};
use super::keys::{DelayedPaymentPubkey, FundingPubkey, HtlcPubkey, RevocationPubkey};
use super::units::BlockHeight;

/// A witness script: the script a P2WSH output commits to and its witness reveals.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct WitnessScript(ScriptBuf);

impl WitnessScript {
    /// Wraps a script.
    pub fn from_script(script: ScriptBuf) -> Self {
        WitnessScript(script)
    }

    /// The script.
    pub fn as_script(&self) -> &Script {
        &self.0
    }

    /// The script's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The P2WSH scriptPubKey paying to this script.
    pub fn to_p2wsh(&self) -> ScriptBuf {
        ScriptBuf::new_p2wsh(&self.0.wscript_hash())
    }

    /// Unwraps the script.
    pub fn into_script(self) -> ScriptBuf {
        self.0
    }
}

impl AsRef<Script> for WitnessScript {
    fn as_ref(&self) -> &Script {
        &self.0
    }
}

fn push_key(b: Builder, pk: &PublicKey) -> Builder {
    b.push_slice(pk.serialize())
}

/// The BOLT #3 2-of-2 funding script `2 <pk_lo> <pk_hi> 2 OP_CHECKMULTISIG`, keys sorted by their
/// compressed serialisation.
pub fn funding(a: &FundingPubkey, b: &FundingPubkey) -> WitnessScript {
    let (lo, hi) = sorted(a.public_key(), b.public_key());
    let builder = push_key(push_key(Builder::new().push_opcode(OP_PUSHNUM_2), lo), hi);
    WitnessScript(builder.push_opcode(OP_PUSHNUM_2).push_opcode(OP_CHECKMULTISIG).into_script())
}

fn sorted<'a>(a: &'a PublicKey, b: &'a PublicKey) -> (&'a PublicKey, &'a PublicKey) {
    if a.serialize() <= b.serialize() {
        (a, b)
    } else {
        (b, a)
    }
}

/// The BOLT #3 `to_local` script: the revocation key at once, or the delayed key after
/// `to_self_delay` blocks (also the output script of HTLC-timeout/-success transactions).
pub fn to_local(revocation: &RevocationPubkey, to_self_delay: u16, delayed: &DelayedPaymentPubkey) -> WitnessScript {
    let b = push_key(Builder::new().push_opcode(OP_IF), revocation.public_key())
        .push_opcode(OP_ELSE)
        .push_int(i64::from(to_self_delay))
        .push_opcode(OP_CSV)
        .push_opcode(OP_DROP);
    WitnessScript(push_key(b, delayed.public_key()).push_opcode(OP_ENDIF).push_opcode(OP_CHECKSIG).into_script())
}

/// The BOLT #3 `to_remote` output without anchors: P2WPKH of the remote payment key.
pub fn to_remote_p2wpkh(remote: &PublicKey) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array(hash160::Hash::hash(&remote.serialize()).to_byte_array()))
}

/// The BOLT #3 `to_remote` script with anchors: `<remotepubkey> OP_CHECKSIGVERIFY 1 OP_CSV`.
pub fn to_remote_anchored(remote: &PublicKey) -> WitnessScript {
    WitnessScript(
        push_key(Builder::new(), remote)
            .push_opcode(OP_CHECKSIGVERIFY)
            .push_opcode(OP_PUSHNUM_1)
            .push_opcode(OP_CSV)
            .into_script(),
    )
}

/// The BOLT #3 anchor script: its owner's funding key at once, anyone after 16 blocks.
pub fn anchor(funding_key: &FundingPubkey) -> WitnessScript {
    WitnessScript(
        push_key(Builder::new(), funding_key.public_key())
            .push_opcode(OP_CHECKSIG)
            .push_opcode(OP_IFDUP)
            .push_opcode(OP_NOTIF)
            .push_opcode(OP_PUSHNUM_16)
            .push_opcode(OP_CSV)
            .push_opcode(OP_ENDIF)
            .into_script(),
    )
}

/// The parts of the BOLT #3 HTLC scripts shared by every HTLC of one commitment: HASH160 of the
/// revocation key and both HTLC keys' serialisations. Computing them once per commitment instead
/// of once per HTLC output saves a HASH160 and three key serialisations per HTLC.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HtlcScriptKeys {
    revocation_hash: [u8; 20],
    local_htlc: [u8; 33],
    remote_htlc: [u8; 33],
}

/// Length of the longest BOLT #3 HTLC script (received, anchors, 5-byte `cltv_expiry` push).
const HTLC_SCRIPT_MAX_LEN: usize = 145;

impl HtlcScriptKeys {
    /// The shared parts for the commitment with these keys.
    pub fn new(revocation: &RevocationPubkey, local_htlc: &HtlcPubkey, remote_htlc: &HtlcPubkey) -> Self {
        HtlcScriptKeys {
            revocation_hash: hash160::Hash::hash(&revocation.serialize()).to_byte_array(),
            local_htlc: local_htlc.serialize(),
            remote_htlc: remote_htlc.serialize(),
        }
    }

    fn prefix(&self) -> Builder {
        Builder::from(alloc::vec::Vec::with_capacity(HTLC_SCRIPT_MAX_LEN))
            .push_opcode(OP_DUP)
            .push_opcode(OP_HASH160)
            .push_slice(self.revocation_hash)
            .push_opcode(OP_EQUAL)
            .push_opcode(OP_IF)
            .push_opcode(OP_CHECKSIG)
            .push_opcode(OP_ELSE)
            .push_slice(self.remote_htlc)
            .push_opcode(OP_SWAP)
            .push_opcode(OP_SIZE)
            .push_int(32)
            .push_opcode(OP_EQUAL)
    }

    /// The offered-HTLC script (see [`offered_htlc`]).
    pub fn offered(&self, payment_hash: &PaymentHash, anchors: bool) -> WitnessScript {
        let b = self
            .prefix()
            .push_opcode(OP_NOTIF)
            .push_opcode(OP_DROP)
            .push_opcode(OP_PUSHNUM_2)
            .push_opcode(OP_SWAP)
            .push_slice(self.local_htlc)
            .push_opcode(OP_PUSHNUM_2)
            .push_opcode(OP_CHECKMULTISIG)
            .push_opcode(OP_ELSE)
            .push_opcode(OP_HASH160)
            .push_slice(payment_hash.ripemd160())
            .push_opcode(OP_EQUALVERIFY)
            .push_opcode(OP_CHECKSIG)
            .push_opcode(OP_ENDIF);
        htlc_suffix(b, anchors)
    }

    /// The received-HTLC script (see [`received_htlc`]).
    pub fn received(&self, payment_hash: &PaymentHash, cltv_expiry: u32, anchors: bool) -> WitnessScript {
        let b = self
            .prefix()
            .push_opcode(OP_IF)
            .push_opcode(OP_HASH160)
            .push_slice(payment_hash.ripemd160())
            .push_opcode(OP_EQUALVERIFY)
            .push_opcode(OP_PUSHNUM_2)
            .push_opcode(OP_SWAP)
            .push_slice(self.local_htlc)
            .push_opcode(OP_PUSHNUM_2)
            .push_opcode(OP_CHECKMULTISIG)
            .push_opcode(OP_ELSE)
            .push_opcode(OP_DROP)
            .push_int(i64::from(cltv_expiry))
            .push_opcode(OP_CLTV)
            .push_opcode(OP_DROP)
            .push_opcode(OP_CHECKSIG)
            .push_opcode(OP_ENDIF);
        htlc_suffix(b, anchors)
    }
}

fn htlc_suffix(b: Builder, anchors: bool) -> WitnessScript {
    let b = if anchors { b.push_opcode(OP_PUSHNUM_1).push_opcode(OP_CSV).push_opcode(OP_DROP) } else { b };
    WitnessScript(b.push_opcode(OP_ENDIF).into_script())
}

/// The BOLT #3 offered-HTLC script of the broadcaster's commitment. `anchors` adds the
/// `1 OP_CSV OP_DROP` of `option_anchors`. For many HTLCs of one commitment, build an
/// [`HtlcScriptKeys`] once and use [`HtlcScriptKeys::offered`].
pub fn offered_htlc(
    revocation: &RevocationPubkey,
    local_htlc: &HtlcPubkey,
    remote_htlc: &HtlcPubkey,
    payment_hash: &PaymentHash,
    anchors: bool,
) -> WitnessScript {
    HtlcScriptKeys::new(revocation, local_htlc, remote_htlc).offered(payment_hash, anchors)
}

/// The BOLT #3 received-HTLC script of the broadcaster's commitment (see also
/// [`HtlcScriptKeys::received`]).
pub fn received_htlc(
    revocation: &RevocationPubkey,
    local_htlc: &HtlcPubkey,
    remote_htlc: &HtlcPubkey,
    payment_hash: &PaymentHash,
    cltv_expiry: u32,
    anchors: bool,
) -> WitnessScript {
    HtlcScriptKeys::new(revocation, local_htlc, remote_htlc).received(payment_hash, cltv_expiry, anchors)
}

fn spilman(payer: &PublicKey, payee: &PublicKey, lock: i64, lock_op: bitcoin::Opcode) -> WitnessScript {
    let b = push_key(Builder::new().push_opcode(OP_IF), payee)
        .push_opcode(OP_CHECKSIGVERIFY)
        .push_opcode(OP_ELSE)
        .push_int(lock)
        .push_opcode(lock_op)
        .push_opcode(OP_DROP)
        .push_opcode(OP_ENDIF);
    WitnessScript(push_key(b, payer).push_opcode(OP_CHECKSIG).into_script())
}

/// The Spilman CLTV channel script (PROTOCOLS §1b, bitcoinj
/// `createCLTVPaymentChannelOutput`): payer and payee together at any time, the payer alone from
/// block `expiry` on.
pub fn spilman_cltv(payer: &PublicKey, payee: &PublicKey, expiry: BlockHeight) -> WitnessScript {
    spilman(payer, payee, i64::from(expiry.0), OP_CLTV)
}

/// The duplex leaf channel script `S_csv` (PROTOCOLS §2.2): as [`spilman_cltv`], with a relative
/// lock of `refund_delay` blocks (`OP_CSV`) in place of the absolute expiry.
pub fn spilman_csv(payer: &PublicKey, payee: &PublicKey, refund_delay: u16) -> WitnessScript {
    spilman(payer, payee, i64::from(refund_delay), OP_CSV)
}

/// The non-revocable hashlock HTLC of the Spilman and duplex layers (PROTOCOLS §0): the payee with
/// the 32-byte preimage of `payment_hash`, or the payer from block `expiry` on.
pub fn hashlock_htlc(
    payee: &PublicKey,
    payer: &PublicKey,
    payment_hash: &PaymentHash,
    expiry: BlockHeight,
) -> WitnessScript {
    let b = Builder::new()
        .push_opcode(OP_IF)
        .push_opcode(OP_SIZE)
        .push_int(32)
        .push_opcode(OP_EQUALVERIFY)
        .push_opcode(OP_SHA256)
        .push_slice(payment_hash.0)
        .push_opcode(OP_EQUALVERIFY);
    let b =
        push_key(b, payee).push_opcode(OP_ELSE).push_int(i64::from(expiry.0)).push_opcode(OP_CLTV).push_opcode(OP_DROP);
    WitnessScript(push_key(b, payer).push_opcode(OP_ENDIF).push_opcode(OP_CHECKSIG).into_script())
}

fn witness<const N: usize>(items: [&[u8]; N], script: &WitnessScript) -> Witness {
    let mut w = Witness::new();
    for item in items {
        w.push(item);
    }
    w.push(script.as_bytes());
    w
}

const TRUE: &[u8] = &[1];
const FALSE: &[u8] = &[];

/// Spends the 2-of-2 [`funding`] output: `<> <sig_lo> <sig_hi> <script>`, signatures in the
/// order of their keys.
pub fn funding_witness(
    script: &WitnessScript,
    (key_a, sig_a): (&FundingPubkey, &ecdsa::Signature),
    (key_b, sig_b): (&FundingPubkey, &ecdsa::Signature),
) -> Witness {
    let (a, b) = (sig_a.serialize(), sig_b.serialize());
    if key_a.serialize() <= key_b.serialize() {
        witness([FALSE, &a, &b], script)
    } else {
        witness([FALSE, &b, &a], script)
    }
}

/// Spends [`to_local`] (or a second-stage HTLC output) by its owner after the delay:
/// `<delayed_sig> <>`; the input's nSequence must be at least `to_self_delay`.
pub fn to_local_delayed_witness(script: &WitnessScript, sig: &ecdsa::Signature) -> Witness {
    witness([&sig.serialize(), FALSE], script)
}

/// Spends [`to_local`] by the revocation key: `<revocation_sig> 1`.
pub fn revocation_witness(script: &WitnessScript, sig: &ecdsa::Signature) -> Witness {
    witness([&sig.serialize(), TRUE], script)
}

/// Spends [`to_remote_anchored`]: `<sig>`, input nSequence at least 1.
pub fn to_remote_anchored_witness(script: &WitnessScript, sig: &ecdsa::Signature) -> Witness {
    witness([&sig.serialize()], script)
}

/// Spends an [`anchor`] by its owner: `<sig>`.
pub fn anchor_owner_witness(script: &WitnessScript, sig: &ecdsa::Signature) -> Witness {
    witness([&sig.serialize()], script)
}

/// Spends an [`anchor`] by anyone after 16 blocks: `<>`.
pub fn anchor_anyone_witness(script: &WitnessScript) -> Witness {
    witness([FALSE], script)
}

/// Spends an [`offered_htlc`] or [`received_htlc`] output by the revocation key:
/// `<revocation_sig> <revocationpubkey>`.
pub fn htlc_revocation_witness(
    script: &WitnessScript,
    sig: &ecdsa::Signature,
    revocation: &RevocationPubkey,
) -> Witness {
    witness([&sig.serialize(), &revocation.serialize()], script)
}

/// Spends an [`offered_htlc`] through the HTLC-timeout transaction:
/// `<> <remote_htlc_sig> <local_htlc_sig> <>`.
pub fn offered_htlc_timeout_witness(
    script: &WitnessScript,
    remote_sig: &ecdsa::Signature,
    local_sig: &ecdsa::Signature,
) -> Witness {
    witness([FALSE, &remote_sig.serialize(), &local_sig.serialize(), FALSE], script)
}

/// Spends an [`offered_htlc`] by the remote party with the preimage: `<remote_htlc_sig> <preimage>`.
pub fn offered_htlc_success_witness(
    script: &WitnessScript,
    remote_sig: &ecdsa::Signature,
    preimage: &PaymentPreimage,
) -> Witness {
    witness([&remote_sig.serialize(), &preimage.0], script)
}

/// Spends a [`received_htlc`] through the HTLC-success transaction:
/// `<> <remote_htlc_sig> <local_htlc_sig> <preimage>`.
pub fn received_htlc_success_witness(
    script: &WitnessScript,
    remote_sig: &ecdsa::Signature,
    local_sig: &ecdsa::Signature,
    preimage: &PaymentPreimage,
) -> Witness {
    witness([FALSE, &remote_sig.serialize(), &local_sig.serialize(), &preimage.0], script)
}

/// Spends a [`received_htlc`] by the remote party after its expiry: `<remote_htlc_sig> <>`.
pub fn received_htlc_timeout_witness(script: &WitnessScript, remote_sig: &ecdsa::Signature) -> Witness {
    witness([&remote_sig.serialize(), FALSE], script)
}

/// Spends a Spilman channel output cooperatively (a payment): `<payer_sig> <payee_sig> 1`.
pub fn spilman_payment_witness(
    script: &WitnessScript,
    payer_sig: &ecdsa::Signature,
    payee_sig: &ecdsa::Signature,
) -> Witness {
    witness([&payer_sig.serialize(), &payee_sig.serialize(), TRUE], script)
}

/// Spends a Spilman channel output by the payer's refund path: `<payer_sig> <>`.
pub fn spilman_refund_witness(script: &WitnessScript, payer_sig: &ecdsa::Signature) -> Witness {
    witness([&payer_sig.serialize(), FALSE], script)
}

/// Spends a [`hashlock_htlc`] by the payee: `<payee_sig> <preimage> 1`.
pub fn hashlock_success_witness(
    script: &WitnessScript,
    payee_sig: &ecdsa::Signature,
    preimage: &PaymentPreimage,
) -> Witness {
    witness([&payee_sig.serialize(), &preimage.0, TRUE], script)
}

/// Spends a [`hashlock_htlc`] by the payer after expiry: `<payer_sig> <>`.
pub fn hashlock_timeout_witness(script: &WitnessScript, payer_sig: &ecdsa::Signature) -> Witness {
    witness([&payer_sig.serialize(), FALSE], script)
}
