//! Witness scripts and witnesses for every spending path the crate uses.
//!
//! Every script-locked output the crate creates is P2WSH (or P2WPKH for the BOLT #3 `to_remote`
//! output without anchors); payouts go to the script each party chose. A [`WitnessScript`] is the
//! script that the witness reveals; [`WitnessScript::to_p2wsh`] gives the output's scriptPubKey.
//! Each builder has matching witness builders, one per spending path, that put the script last and
//! obey the MINIMALIF (`<>` / `0x01`) and NULLDUMMY rules.
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
//! | [`p2a`] (pay-to-anchor, not P2WSH: `OP_1 <0x4e73>`) | [`p2a_input`] (empty witness, anyone) |
//!
//! **Pay-to-anchor.** A zero-fee version-3 (TRUC, BIP 431) transaction carries one [`p2a_output`]
//! of value 0 (Bitcoin Core 29's ephemeral dust: relayed only in a package whose child spends
//! it); anyone confirms it by that child, a CPFP that spends the anchor with [`p2a_input`] and
//! brings its own coins and fee. Consensus treats the 2-byte witness v1 program as
//! anyone-can-spend; Bitcoin Core 28+ relays its spends when the witness is empty.

use bitcoin::hashes::{hash160, Hash};
use bitcoin::opcodes::all::{
    OP_CHECKMULTISIG, OP_CHECKSIG, OP_CHECKSIGVERIFY, OP_CLTV, OP_CSV, OP_DROP, OP_DUP, OP_ELSE, OP_ENDIF, OP_EQUAL,
    OP_EQUALVERIFY, OP_HASH160, OP_IF, OP_IFDUP, OP_NOTIF, OP_PUSHNUM_1, OP_PUSHNUM_16, OP_PUSHNUM_2, OP_SHA256,
    OP_SIZE, OP_SWAP,
};
use bitcoin::script::Builder;
use bitcoin::secp256k1::PublicKey;
use bitcoin::transaction::Version;
use bitcoin::{ecdsa, Amount, Opcode, OutPoint, Script, ScriptBuf, Sequence, TxIn, TxOut, WPubkeyHash, Witness};

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
        // `OP_0 <32-byte SHA256(script)>`, written directly (as `ScriptBuf::new_p2wsh`, without
        // the builder's growth steps).
        let mut spk = alloc::vec::Vec::with_capacity(34);
        spk.extend_from_slice(&[0x00, 0x20]);
        spk.extend_from_slice(self.0.wscript_hash().as_byte_array());
        ScriptBuf::from_bytes(spk)
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

/// The parts of the BOLT #3 HTLC scripts shared by every HTLC of one commitment: everything up
/// to the first branch on the preimage size (HASH160 of the revocation key, the remote HTLC key)
/// and the local HTLC key. Computed once per commitment, each HTLC script is then written as
/// bytes into a buffer of its exact size.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HtlcScriptKeys {
    prefix: [u8; HTLC_PREFIX_LEN],
    local_htlc: [u8; 33],
}

/// `OP_DUP OP_HASH160 <20> OP_EQUAL OP_IF OP_CHECKSIG OP_ELSE <33> OP_SWAP OP_SIZE 32 OP_EQUAL`.
const HTLC_PREFIX_LEN: usize = 66;
/// Length of the longest BOLT #3 HTLC script (received, anchors, 5-byte `cltv_expiry` push).
const HTLC_SCRIPT_MAX_LEN: usize = 144;

/// A script written byte by byte into a fixed buffer (the HTLC scripts' lengths are bounded).
struct ScriptBytes {
    buf: [u8; HTLC_SCRIPT_MAX_LEN],
    len: usize,
}

impl ScriptBytes {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        // The HTLC scripts never exceed HTLC_SCRIPT_MAX_LEN (checked by the tests for the
        // longest case); a miss would truncate the script, which every signature check catches.
        debug_assert!(end <= HTLC_SCRIPT_MAX_LEN);
        if let Some(dst) = self.buf.get_mut(self.len..end) {
            dst.copy_from_slice(bytes);
            self.len = end;
        }
    }

    fn opcodes(&mut self, ops: &[Opcode]) {
        for op in ops {
            self.put(&[op.to_u8()]);
        }
    }

    /// `n` as the minimal push of `Builder::push_int`.
    fn int(&mut self, n: u32) {
        match n {
            0 => self.put(&[0]),
            1..=16 => self.put(&[OP_PUSHNUM_1.to_u8() + (n as u8 - 1)]),
            _ => {
                let mut num = [0u8; 8];
                let len = bitcoin::script::write_scriptint(&mut num, i64::from(n));
                self.put(&[len as u8]);
                self.put(num.get(..len).unwrap_or_default());
            }
        }
    }

    fn finish(mut self, anchors: bool) -> WitnessScript {
        if anchors {
            self.opcodes(&[OP_PUSHNUM_1, OP_CSV, OP_DROP]);
        }
        self.opcodes(&[OP_ENDIF]);
        WitnessScript(ScriptBuf::from_bytes(self.buf.get(..self.len).unwrap_or_default().to_vec()))
    }
}

impl HtlcScriptKeys {
    /// The shared parts for the commitment with these keys.
    pub fn new(revocation: &RevocationPubkey, local_htlc: &HtlcPubkey, remote_htlc: &HtlcPubkey) -> Self {
        let mut s = ScriptBytes { buf: [0; HTLC_SCRIPT_MAX_LEN], len: 0 };
        s.opcodes(&[OP_DUP, OP_HASH160]);
        s.put(&[20]);
        s.put(hash160::Hash::hash(&revocation.serialize()).as_byte_array());
        s.opcodes(&[OP_EQUAL, OP_IF, OP_CHECKSIG, OP_ELSE]);
        s.put(&[33]);
        s.put(&remote_htlc.serialize());
        s.opcodes(&[OP_SWAP, OP_SIZE]);
        s.int(32);
        s.opcodes(&[OP_EQUAL]);
        let mut prefix = [0; HTLC_PREFIX_LEN];
        prefix.copy_from_slice(s.buf.get(..HTLC_PREFIX_LEN).unwrap_or(&[0; HTLC_PREFIX_LEN]));
        HtlcScriptKeys { prefix, local_htlc: local_htlc.serialize() }
    }

    fn start(&self) -> ScriptBytes {
        let mut s = ScriptBytes { buf: [0; HTLC_SCRIPT_MAX_LEN], len: 0 };
        s.put(&self.prefix);
        s
    }

    /// The offered-HTLC script (see [`offered_htlc`]).
    pub fn offered(&self, payment_hash: &PaymentHash, anchors: bool) -> WitnessScript {
        self.offered_with(&payment_hash.ripemd160(), anchors)
    }

    /// [`HtlcScriptKeys::offered`] with `RIPEMD160(payment_hash)` already computed.
    pub(crate) fn offered_with(&self, payment_ripemd: &[u8; 20], anchors: bool) -> WitnessScript {
        let mut s = self.start();
        s.opcodes(&[OP_NOTIF, OP_DROP, OP_PUSHNUM_2, OP_SWAP]);
        s.put(&[33]);
        s.put(&self.local_htlc);
        s.opcodes(&[OP_PUSHNUM_2, OP_CHECKMULTISIG, OP_ELSE, OP_HASH160]);
        s.put(&[20]);
        s.put(payment_ripemd);
        s.opcodes(&[OP_EQUALVERIFY, OP_CHECKSIG, OP_ENDIF]);
        s.finish(anchors)
    }

    /// The received-HTLC script (see [`received_htlc`]).
    pub fn received(&self, payment_hash: &PaymentHash, cltv_expiry: u32, anchors: bool) -> WitnessScript {
        self.received_with(&payment_hash.ripemd160(), cltv_expiry, anchors)
    }

    /// [`HtlcScriptKeys::received`] with `RIPEMD160(payment_hash)` already computed.
    pub(crate) fn received_with(&self, payment_ripemd: &[u8; 20], cltv_expiry: u32, anchors: bool) -> WitnessScript {
        let mut s = self.start();
        s.opcodes(&[OP_IF, OP_HASH160]);
        s.put(&[20]);
        s.put(payment_ripemd);
        s.opcodes(&[OP_EQUALVERIFY, OP_PUSHNUM_2, OP_SWAP]);
        s.put(&[33]);
        s.put(&self.local_htlc);
        s.opcodes(&[OP_PUSHNUM_2, OP_CHECKMULTISIG, OP_ELSE, OP_DROP]);
        s.int(cltv_expiry);
        s.opcodes(&[OP_CLTV, OP_DROP, OP_CHECKSIG, OP_ENDIF]);
        s.finish(anchors)
    }
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

/// The Spilman CLTV channel script (docs/core.md §2.2, bitcoinj
/// `createCLTVPaymentChannelOutput`): payer and payee together at any time, the payer alone from
/// block `expiry` on.
pub fn spilman_cltv(payer: &PublicKey, payee: &PublicKey, expiry: BlockHeight) -> WitnessScript {
    spilman(payer, payee, i64::from(expiry.0), OP_CLTV)
}

/// The duplex leaf channel script `S_csv` (docs/core.md §2.2): as [`spilman_cltv`], with a relative
/// lock of `refund_delay` blocks (`OP_CSV`) in place of the absolute expiry.
pub fn spilman_csv(payer: &PublicKey, payee: &PublicKey, refund_delay: u16) -> WitnessScript {
    spilman(payer, payee, i64::from(refund_delay), OP_CSV)
}

/// The non-revocable hashlock HTLC of the Spilman and duplex layers (docs/core.md §2.3): the payee with
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

/// The transaction version of zero-fee transactions bumped through a [`p2a`] output: 3 (TRUC,
/// BIP 431), which Bitcoin Core 28+ relays in a one-parent-one-child package.
pub const TRUC_VERSION: Version = Version(3);

/// The pay-to-anchor scriptPubKey `OP_1 <0x4e73>` (a witness v1 program of 2 bytes).
pub fn p2a() -> ScriptBuf {
    ScriptBuf::new_p2a()
}

/// Whether `script` is the [`p2a`] scriptPubKey.
pub fn is_p2a(script: &Script) -> bool {
    script.as_bytes() == [0x51, 0x02, 0x4e, 0x73]
}

/// The zero-value [`p2a`] output of a zero-fee TRUC transaction.
pub fn p2a_output() -> TxOut {
    TxOut { value: Amount::ZERO, script_pubkey: p2a() }
}

/// The input of a child spending the [`p2a`] output at `anchor`: empty scriptSig, empty witness
/// (anyone can spend it), nSequence `0xFFFFFFFD` (no lock; replaceable, as every TRUC
/// transaction is anyway).
pub fn p2a_input(anchor: OutPoint) -> TxIn {
    TxIn {
        previous_output: anchor,
        script_sig: ScriptBuf::new(),
        sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
        witness: Witness::new(),
    }
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

#[cfg(test)]
mod tests {
    use bitcoin::secp256k1::{Secp256k1, SecretKey};

    use super::*;

    #[test]
    fn p2a_is_op_1_push_4e73() {
        assert_eq!(p2a().as_bytes(), &[0x51, 0x02, 0x4e, 0x73]);
        assert!(is_p2a(&p2a()) && p2a().is_witness_program());
        assert!(!is_p2a(&ScriptBuf::new_op_return([0x4e, 0x73])));
        assert_eq!(p2a_output().value, Amount::ZERO);
        assert!(p2a_input(OutPoint::null()).witness.is_empty());
    }

    /// The HTLC scripts as `Builder` pushes, as BOLT #3 writes them: the reference for the
    /// byte-template writer.
    fn reference(
        keys: (&RevocationPubkey, &HtlcPubkey, &HtlcPubkey),
        hash: &PaymentHash,
        cltv: Option<u32>,
        anchors: bool,
    ) -> ScriptBuf {
        let (rev, local, remote) = keys;
        let b = Builder::new()
            .push_opcode(OP_DUP)
            .push_opcode(OP_HASH160)
            .push_slice(hash160::Hash::hash(&rev.serialize()).to_byte_array())
            .push_opcode(OP_EQUAL)
            .push_opcode(OP_IF)
            .push_opcode(OP_CHECKSIG)
            .push_opcode(OP_ELSE)
            .push_slice(remote.serialize())
            .push_opcode(OP_SWAP)
            .push_opcode(OP_SIZE)
            .push_int(32)
            .push_opcode(OP_EQUAL);
        let b = match cltv {
            None => b
                .push_opcode(OP_NOTIF)
                .push_opcode(OP_DROP)
                .push_opcode(OP_PUSHNUM_2)
                .push_opcode(OP_SWAP)
                .push_slice(local.serialize())
                .push_opcode(OP_PUSHNUM_2)
                .push_opcode(OP_CHECKMULTISIG)
                .push_opcode(OP_ELSE)
                .push_opcode(OP_HASH160)
                .push_slice(hash.ripemd160())
                .push_opcode(OP_EQUALVERIFY)
                .push_opcode(OP_CHECKSIG)
                .push_opcode(OP_ENDIF),
            Some(cltv) => b
                .push_opcode(OP_IF)
                .push_opcode(OP_HASH160)
                .push_slice(hash.ripemd160())
                .push_opcode(OP_EQUALVERIFY)
                .push_opcode(OP_PUSHNUM_2)
                .push_opcode(OP_SWAP)
                .push_slice(local.serialize())
                .push_opcode(OP_PUSHNUM_2)
                .push_opcode(OP_CHECKMULTISIG)
                .push_opcode(OP_ELSE)
                .push_opcode(OP_DROP)
                .push_int(i64::from(cltv))
                .push_opcode(OP_CLTV)
                .push_opcode(OP_DROP)
                .push_opcode(OP_CHECKSIG)
                .push_opcode(OP_ENDIF),
        };
        let b = if anchors { b.push_opcode(OP_PUSHNUM_1).push_opcode(OP_CSV).push_opcode(OP_DROP) } else { b };
        b.push_opcode(OP_ENDIF).into_script()
    }

    #[test]
    fn htlc_scripts_match_the_builder_for_every_push_size() {
        let secp = Secp256k1::new();
        let pk = |b: u8| PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[b; 32]).expect("valid key"));
        let rev = RevocationPubkey::from_public_key(pk(1));
        let local = HtlcPubkey::from_public_key(pk(2));
        let remote = HtlcPubkey::from_public_key(pk(3));
        let keys = HtlcScriptKeys::new(&rev, &local, &remote);
        let hash = PaymentHash([7; 32]);
        let mut longest = 0;
        for anchors in [false, true] {
            let offered = keys.offered(&hash, anchors);
            assert_eq!(offered.as_script(), reference((&rev, &local, &remote), &hash, None, anchors).as_script());
            assert_eq!(offered, offered_htlc(&rev, &local, &remote, &hash, anchors));
            for cltv in [0, 1, 16, 17, 127, 128, 255, 256, 32_767, 32_768, 500_000, 8_388_607, 8_388_608]
                .into_iter()
                .chain([i32::MAX as u32, i32::MAX as u32 + 1, u32::MAX])
            {
                let received = keys.received(&hash, cltv, anchors);
                let want = reference((&rev, &local, &remote), &hash, Some(cltv), anchors);
                assert_eq!(received.as_script(), want.as_script(), "cltv {cltv}, anchors {anchors}");
                longest = longest.max(received.as_bytes().len());
            }
        }
        assert_eq!(longest, HTLC_SCRIPT_MAX_LEN);
    }

    #[test]
    fn p2wsh_matches_the_library() {
        let ws = WitnessScript::from_script(ScriptBuf::from_bytes(alloc::vec![0x51; 40]));
        assert_eq!(ws.to_p2wsh(), ScriptBuf::new_p2wsh(&ws.as_script().wscript_hash()));
    }
}
