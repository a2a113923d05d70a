//! The values a hostile-but-valid peer picks, shared by the simulators' hostile peers
//! (`testing::sim::*::hostile`) and the fuzz state targets: each function turns a selector (a
//! random draw, or a fuzz byte) into one of the extreme-but-legal (or just-illegal) values of
//! one kind. What the honest side does with them is checked by the caller.

use std::vec;

use bitcoin::hashes::Hash;
use bitcoin::ScriptBuf;

use crate::lightning::ChannelConfig;

/// Payment amounts (sat) at the extremes of `available`: 1 sat, just under, at and just over the
/// dust limit (546), and just under, exactly and just over what is available.
pub fn edge_amounts(available: u64) -> [u64; 7] {
    [1, 545, 546, available.saturating_sub(546), available.saturating_sub(1), available, available.saturating_add(1)]
}

/// HTLC expiries at the edges of an expiry window `earliest..=latest`: one block outside, at,
/// and one block inside each end.
pub fn edge_expiries(earliest: u32, latest: u32) -> [u32; 6] {
    [
        earliest.saturating_sub(1),
        earliest,
        earliest.saturating_add(1),
        latest.saturating_sub(1),
        latest,
        latest.saturating_add(1),
    ]
}

/// Lightning `update_fee` rates at the bounds of what `honest` accepts with its fee `estimate`:
/// just outside and at the relative bounds (half the estimate, `max_feerate_multiple_of_estimate`
/// times it), the BOLT floor of 253 sat/kW and one under, the absolute maximum and one over, and
/// `u32::MAX`.
pub fn lightning_fee_edges(estimate: u32, honest: &ChannelConfig) -> [u32; 9] {
    let lo = honest.min_feerate.max(estimate.div_ceil(2));
    let hi = honest.max_feerate.min(estimate.saturating_mul(honest.max_feerate_multiple_of_estimate));
    [
        lo.saturating_sub(1),
        lo,
        hi,
        hi.saturating_add(1),
        252,
        253,
        honest.max_feerate,
        honest.max_feerate.saturating_add(1),
        u32::MAX,
    ]
}

/// HTLC expiry deltas at the edge of an honest side's `claim_margin`: none, one block, and
/// just inside, at and just outside the margin.
pub fn edge_expiry_deltas(claim_margin: u32) -> [u32; 6] {
    [0, 1, claim_margin.saturating_sub(2), claim_margin.saturating_sub(1), claim_margin, claim_margin.saturating_add(1)]
}

/// A payout script at the edge of standardness, picked by `k` (mod 10): just inside Bitcoin
/// Core's templates (P2PKH, P2SH, P2WPKH, P2WSH, witness v1 with 2 bytes, v16 with 40) and just
/// outside (v0 with 40 bytes, v1 with 41, a bare `OP_TRUE`, `OP_RETURN`).
pub fn edge_script(k: u64) -> ScriptBuf {
    let program = |version: u8, len: usize| {
        let mut s = vec![version, len as u8];
        s.extend(core::iter::repeat_n(0x5a, len));
        ScriptBuf::from_bytes(s)
    };
    match k % 10 {
        0 => ScriptBuf::new_p2pkh(&bitcoin::PubkeyHash::from_byte_array([0x5a; 20])),
        1 => ScriptBuf::new_p2sh(&bitcoin::ScriptHash::from_byte_array([0x5a; 20])),
        2 => ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([0x5a; 20])),
        3 => ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::from_byte_array([0x5a; 32])),
        4 => program(0x51, 2),
        5 => program(0x60, 40),
        6 => program(0x00, 40),
        7 => program(0x51, 41),
        8 => ScriptBuf::from_bytes(vec![0x51]),
        _ => ScriptBuf::from_bytes(vec![0x6a, 1, 0x5a]),
    }
}

/// A duplex reset proposal (in `send`, as the proposer's own channel made it) turned hostile
/// but still well formed: with `older`, it claims the peer's channel is one payment older than
/// it is; otherwise it moves `shift` sat of the peer's (index `peer`) value to the proposer's.
/// The proposer's signatures no longer match, or the values no longer do: the honest peer must
/// refuse it without a change. Returns whether a proposal was found.
pub fn duplex_hostile_reset(send: &mut [crate::duplex::Msg], peer: usize, shift: u64, older: bool) -> bool {
    let me = 1 - peer.min(1);
    let mut found = false;
    for m in send.iter_mut() {
        if let crate::duplex::Msg::ResetPropose(r) = m {
            found = true;
            if older {
                r.numbers[peer] = r.numbers[peer].saturating_sub(1);
            } else {
                let shift = bitcoin::Amount::from_sat(shift);
                r.values[me] += shift;
                r.values[peer] = r.values[peer].checked_sub(shift).unwrap_or(bitcoin::Amount::ZERO);
            }
        }
    }
    found
}
