//! Which output scripts a payout may use: the templates Bitcoin Core relays, byte for byte.
//!
//! Every channel layer pays each party to a script that party chose (a Lightning `shutdown`
//! script, a Spilman payer's or payee's script, a duplex payout script). If a party picks a script
//! that nodes do not relay, every transaction paying it — the cooperative close, a Spilman
//! payment, a duplex leaf — is stuck outside the mempool, and the *other* party cannot settle
//! either. [`PayoutPolicy::allows`] is the one check all layers use.
//!
//! | template | bytes | accepted |
//! |---|---|---|
//! | P2PKH | `OP_DUP OP_HASH160 <20> OP_EQUALVERIFY OP_CHECKSIG` (25 bytes) | always |
//! | P2SH | `OP_HASH160 <20> OP_EQUAL` (23 bytes) | always |
//! | P2WPKH | `OP_0 <20>` (22 bytes) | always |
//! | P2WSH | `OP_0 <32>` (34 bytes) | always |
//! | P2TR | `OP_1 <32>` (34 bytes) | with [`PayoutPolicy::any_segwit`] |
//! | other witness programs | `OP_1`..`OP_16`, one direct push of 2..=40 bytes | with [`PayoutPolicy::any_segwit`] |
//! | null data | `OP_RETURN`, one push of 6..=80 bytes (direct for 6..=75, `OP_PUSHDATA1` for 76..=80) | with [`PayoutPolicy::op_return`] |
//!
//! These are Bitcoin Core's `IsStandard` output types (`Solver` in `script/solver.cpp`), with the
//! same exact byte layouts: a witness program is the version opcode followed by a *direct* push
//! (opcode `0x02`..=`0x28`) that ends the script, so a non-minimal push (`OP_0 OP_PUSHDATA1 <20>`)
//! or a trailing byte is not one; a version 0 program must be exactly 20 or 32 bytes (Core calls
//! any other length non-standard, and it is unspendable). The null-data form is the one BOLT #2
//! allows in a closing transaction (a subset of Core's: a single push, at most 83 bytes in all).
//!
//! Not accepted, although Core relays them: bare multisig (`m <keys> n OP_CHECKMULTISIG`) and
//! pay-to-pubkey (`<key> OP_CHECKSIG`). BOLT #2 does not allow them in `shutdown`, no wallet pays
//! to them as an address, Core's `-permitbaremultisig=0` (and other node software) refuses
//! bare multisig, and the crate's own protocols follow the same rule so one list holds for all.
//!
//! Without [`PayoutPolicy::any_segwit`] the accepted set is exactly BOLT #2's base list for
//! `shutdown` (P2PKH, P2SH, P2WPKH, P2WSH); with it, BOLT #2's `option_shutdown_anysegwit` list
//! (which includes P2TR), which is also everything Core relays as a witness program.

use bitcoin::Script;

/// The standard template an output script matches ([`payout_kind`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum PayoutKind {
    /// Pay to public key hash (25 bytes).
    P2pkh,
    /// Pay to script hash (23 bytes).
    P2sh,
    /// Witness version 0, 20-byte program.
    P2wpkh,
    /// Witness version 0, 32-byte program.
    P2wsh,
    /// Witness version 1, 32-byte program.
    P2tr,
    /// Any other witness program: version 1 with a program of 2..=40 bytes other than 32, or
    /// versions 2..=16 with 2..=40 bytes (reserved for future soft forks; Core relays them).
    FutureSegwit {
        /// The witness version, 1..=16.
        version: u8,
        /// The program's length, 2..=40.
        program_len: u8,
    },
    /// `OP_RETURN` and one push of 6..=80 bytes: provably unspendable.
    OpReturn,
}

/// The template `script` matches exactly, if any (see the [module](self) table). The script is
/// only read; any bytes, including a malformed script, give an answer.
pub fn payout_kind(script: &Script) -> Option<PayoutKind> {
    let b = script.as_bytes();
    match b {
        [0x76, 0xa9, 0x14, hash @ .., 0x88, 0xac] if hash.len() == 20 => return Some(PayoutKind::P2pkh),
        [0xa9, 0x14, hash @ .., 0x87] if hash.len() == 20 => return Some(PayoutKind::P2sh),
        [0x6a, 6..=75, data @ ..] if data.len() == usize::from(b[1]) => return Some(PayoutKind::OpReturn),
        [0x6a, 0x4c, 76..=80, data @ ..] if data.len() == usize::from(b[2]) => return Some(PayoutKind::OpReturn),
        _ => {}
    }
    // A witness program: a version opcode, then one direct push of 2..=40 bytes that ends the
    // script (Core's `IsWitnessProgram`).
    let [version_op, push @ 2..=40, program @ ..] = b else { return None };
    if program.len() != usize::from(*push) {
        return None;
    }
    let version = match version_op {
        0x00 => 0,
        0x51..=0x60 => version_op - 0x50,
        _ => return None,
    };
    match (version, program.len()) {
        (0, 20) => Some(PayoutKind::P2wpkh),
        (0, 32) => Some(PayoutKind::P2wsh),
        (0, _) => None,
        (1, 32) => Some(PayoutKind::P2tr),
        (_, _) => Some(PayoutKind::FutureSegwit { version, program_len: *push }),
    }
}

/// Which standard templates a layer accepts as a payout script.
///
/// ```
/// use bitcoin::ScriptBuf;
/// use paychan::core::standard::PayoutPolicy;
///
/// let p2wsh = ScriptBuf::from_bytes([&[0x00, 0x20][..], &[7; 32]].concat());
/// let v0_40 = ScriptBuf::from_bytes([&[0x00, 0x28][..], &[7; 40]].concat());
/// let taproot = ScriptBuf::from_bytes([&[0x51, 0x20][..], &[7; 32]].concat());
/// assert!(PayoutPolicy::BASE.allows(&p2wsh));
/// assert!(!PayoutPolicy::RELAY.allows(&v0_40)); // version 0 must be 20 or 32 bytes
/// assert!(!PayoutPolicy::BASE.allows(&taproot) && PayoutPolicy::RELAY.allows(&taproot));
/// assert!(!PayoutPolicy::RELAY.allows(&ScriptBuf::from_bytes(vec![0x51]))); // OP_TRUE
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PayoutPolicy {
    /// Witness versions 1..=16 with programs of 2..=40 bytes (P2TR included): BOLT #2's
    /// `option_shutdown_anysegwit`. Without it only version 0 (P2WPKH, P2WSH) is accepted.
    pub any_segwit: bool,
    /// The null-data form (`OP_RETURN` and one push of 6..=80 bytes), for protocols that allow
    /// burning an output.
    pub op_return: bool,
}

impl PayoutPolicy {
    /// BOLT #2's base `shutdown` list: P2PKH, P2SH, P2WPKH, P2WSH.
    pub const BASE: PayoutPolicy = PayoutPolicy { any_segwit: false, op_return: false };

    /// Everything Core relays as a payout: [`BASE`](Self::BASE), P2TR and every other witness
    /// program of versions 1..=16 (no `OP_RETURN`). The Spilman and duplex layers use it.
    pub const RELAY: PayoutPolicy = PayoutPolicy { any_segwit: true, op_return: false };

    /// Whether `script` is a standard payout script under this policy.
    pub fn allows(&self, script: &Script) -> bool {
        match payout_kind(script) {
            Some(PayoutKind::P2pkh | PayoutKind::P2sh | PayoutKind::P2wpkh | PayoutKind::P2wsh) => true,
            Some(PayoutKind::P2tr | PayoutKind::FutureSegwit { .. }) => self.any_segwit,
            Some(PayoutKind::OpReturn) => self.op_return,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use bitcoin::hashes::Hash;
    use bitcoin::key::{Secp256k1, UntweakedPublicKey};
    use bitcoin::{PubkeyHash, ScriptBuf, ScriptHash, WPubkeyHash, WScriptHash};

    use super::*;

    const ALL: PayoutPolicy = PayoutPolicy { any_segwit: true, op_return: true };

    fn s(parts: &[&[u8]]) -> ScriptBuf {
        ScriptBuf::from_bytes(parts.concat())
    }

    #[test]
    fn the_library_builders_match_the_templates() {
        let cases = [
            (ScriptBuf::new_p2pkh(&PubkeyHash::from_byte_array([1; 20])), PayoutKind::P2pkh),
            (ScriptBuf::new_p2sh(&ScriptHash::from_byte_array([2; 20])), PayoutKind::P2sh),
            (ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([3; 20])), PayoutKind::P2wpkh),
            (ScriptBuf::new_p2wsh(&WScriptHash::from_byte_array([4; 32])), PayoutKind::P2wsh),
        ];
        for (script, kind) in cases {
            assert_eq!(payout_kind(&script), Some(kind), "{script}");
            assert!(PayoutPolicy::BASE.allows(&script));
        }
        let secp = Secp256k1::new();
        let keypair = bitcoin::secp256k1::Keypair::from_seckey_slice(&secp, &[1; 32]).expect("valid key");
        let key: UntweakedPublicKey = keypair.x_only_public_key().0;
        let p2tr = ScriptBuf::new_p2tr(&secp, key, None);
        assert_eq!(payout_kind(&p2tr), Some(PayoutKind::P2tr));
        assert!(PayoutPolicy::RELAY.allows(&p2tr) && !PayoutPolicy::BASE.allows(&p2tr));
    }

    #[test]
    fn witness_programs_by_version_and_length() {
        for version in 0u8..=16 {
            let op = if version == 0 { 0 } else { 0x50 + version };
            for len in 0u8..=45 {
                let script = s(&[&[op, len], &alloc::vec![9; usize::from(len)]]);
                let kind = payout_kind(&script);
                let expected = match (version, len) {
                    (_, 0..=1) | (_, 41..) => None,
                    (0, 20) => Some(PayoutKind::P2wpkh),
                    (0, 32) => Some(PayoutKind::P2wsh),
                    (0, _) => None,
                    (1, 32) => Some(PayoutKind::P2tr),
                    _ => Some(PayoutKind::FutureSegwit { version, program_len: len }),
                };
                assert_eq!(kind, expected, "version {version} length {len}");
                let base_ok = matches!(expected, Some(PayoutKind::P2wpkh | PayoutKind::P2wsh));
                assert_eq!(PayoutPolicy::BASE.allows(&script), base_ok);
                assert_eq!(PayoutPolicy::RELAY.allows(&script), expected.is_some());
            }
        }
    }

    #[test]
    fn near_misses_are_refused() {
        let h20 = [5u8; 20];
        let h32 = [5u8; 32];
        let refused: Vec<ScriptBuf> = alloc::vec![
            ScriptBuf::new(),
            s(&[&[0x51]]),                                     // OP_TRUE
            s(&[&[0x00]]),                                     // OP_0 alone
            s(&[&[0x00, 0x02], &[1, 2]]),                      // v0, 2-byte program
            s(&[&[0x00, 0x28], &[1; 40]]),                     // v0, 40-byte program
            s(&[&[0x00, 0x4c, 0x14], &h20]),                   // v0 with a PUSHDATA1 push
            s(&[&[0x00, 0x14], &h20, &[0x00]]),                // P2WPKH + trailing byte
            s(&[&[0x00, 0x20], &h32[..31]]),                   // P2WSH one byte short
            s(&[&[0x51, 0x20], &h32, &[0x51]]),                // P2TR + trailing byte
            s(&[&[0x51, 0x4c, 0x20], &h32]),                   // P2TR with a PUSHDATA1 push
            s(&[&[0x4f, 0x14], &h20]),                         // OP_1NEGATE is no version
            s(&[&[0x50, 0x14], &h20]),                         // OP_RESERVED is no version
            s(&[&[0x61, 0x14], &h20]),                         // OP_NOP is no version
            s(&[&[0x52, 0x29], &[3; 41]]),                     // v2, 41 bytes
            s(&[&[0x52, 0x01, 0x03]]),                         // v2, 1 byte
            s(&[&[0x76, 0xa9, 0x14], &h20, &[0x88]]),          // P2PKH missing OP_CHECKSIG
            s(&[&[0x76, 0xa9, 0x15], &h20, &[0, 0x88, 0xac]]), // P2PKH with 21 bytes
            s(&[&[0xa9, 0x14], &h20, &[0x87, 0x00]]),          // P2SH + trailing byte
            s(&[&[0xa9, 0x4c, 0x14], &h20, &[0x87]]),          // P2SH with a PUSHDATA1 push
            s(&[&[0x21], &[2; 33], &[0xac]]),                  // pay-to-pubkey
            s(&[&[0x51, 0x21], &[2; 33], &[0x51, 0xae]]),      // bare 1-of-1 multisig
            s(&[&[0x6a]]),                                     // OP_RETURN alone
            s(&[&[0x6a, 0x05], &[0; 5]]),                      // OP_RETURN, 5 bytes
            s(&[&[0x6a, 0x4c, 0x4b], &[0; 75]]),               // OP_RETURN, non-minimal push
            s(&[&[0x6a, 0x4c, 0x51], &[0; 81]]),               // OP_RETURN, 81 bytes
            s(&[&[0x6a, 0x06], &[0; 6], &[0x00]]),             // OP_RETURN + trailing push
        ];
        for script in refused {
            if script.as_bytes().first() == Some(&0x6a) {
                assert_eq!(payout_kind(&script), None, "{script:?}");
            }
            assert!(!ALL.allows(&script), "{script:?}");
        }
    }

    #[test]
    fn op_return_only_where_the_policy_says() {
        for len in [6usize, 75] {
            let script = s(&[&[0x6a, len as u8], &alloc::vec![1; len]]);
            assert_eq!(payout_kind(&script), Some(PayoutKind::OpReturn));
            assert!(ALL.allows(&script) && !PayoutPolicy::RELAY.allows(&script));
        }
        for len in [76usize, 80] {
            let script = s(&[&[0x6a, 0x4c, len as u8], &alloc::vec![1; len]]);
            assert_eq!(payout_kind(&script), Some(PayoutKind::OpReturn));
            assert!(ALL.allows(&script) && !PayoutPolicy::BASE.allows(&script));
        }
    }
}
