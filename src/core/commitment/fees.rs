//! BOLT #3 weights, fees, dust thresholds and channel types.

use bitcoin::Amount;

use crate::core::units::MilliSats;

/// The commitment format of a Lightning channel.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ChannelType {
    /// `option_static_remotekey`: `to_remote` is P2WPKH of the payment basepoint.
    StaticRemoteKey,
    /// `option_anchors` with zero-fee HTLC transactions: anchor outputs, `to_remote` and HTLC
    /// outputs delayed by one block, HTLC transactions carry no fee and the peer signs them
    /// `SINGLE|ANYONECANPAY`.
    AnchorsZeroFeeHtlc,
}

impl ChannelType {
    /// Whether the channel type uses anchor outputs.
    pub const fn has_anchors(self) -> bool {
        matches!(self, ChannelType::AnchorsZeroFeeHtlc)
    }

    /// The weight of a commitment transaction with `htlcs` untrimmed HTLC outputs.
    pub const fn commitment_weight(self, htlcs: usize) -> u64 {
        let base = if self.has_anchors() { ANCHOR_COMMITMENT_WEIGHT } else { COMMITMENT_WEIGHT };
        base + HTLC_OUTPUT_WEIGHT * htlcs as u64
    }

    /// The fee an HTLC-timeout transaction pays at `feerate` (zero with zero-fee HTLC txs).
    pub const fn htlc_timeout_fee(self, feerate: FeeratePerKw) -> Amount {
        if self.has_anchors() {
            Amount::ZERO
        } else {
            feerate.fee_for_weight(HTLC_TIMEOUT_WEIGHT)
        }
    }

    /// The fee an HTLC-success transaction pays at `feerate` (zero with zero-fee HTLC txs).
    pub const fn htlc_success_fee(self, feerate: FeeratePerKw) -> Amount {
        if self.has_anchors() {
            Amount::ZERO
        } else {
            feerate.fee_for_weight(HTLC_SUCCESS_WEIGHT)
        }
    }

    /// The value of each anchor output, zero without anchors.
    pub const fn anchor_value(self) -> Amount {
        if self.has_anchors() {
            ANCHOR_OUTPUT_VALUE
        } else {
            Amount::ZERO
        }
    }
}

/// Weight of a commitment transaction without HTLCs (no anchors).
pub const COMMITMENT_WEIGHT: u64 = 724;
/// Weight of a commitment transaction without HTLCs (anchors).
pub const ANCHOR_COMMITMENT_WEIGHT: u64 = 1124;
/// Weight added per untrimmed HTLC output.
pub const HTLC_OUTPUT_WEIGHT: u64 = 172;
/// Weight of an HTLC-timeout transaction (no anchors).
pub const HTLC_TIMEOUT_WEIGHT: u64 = 663;
/// Weight of an HTLC-success transaction (no anchors).
pub const HTLC_SUCCESS_WEIGHT: u64 = 703;
/// Value of an anchor output.
pub const ANCHOR_OUTPUT_VALUE: Amount = Amount::from_sat(330);
/// The smallest dust limit BOLT #2 allows: Bitcoin Core's dust threshold at 3 sat/vB for an output
/// to a witness program of an unknown version (40 bytes), the largest of the segwit thresholds
/// (P2WSH and P2TR: 330 sat; P2WPKH: 294 sat).
pub const MIN_DUST_LIMIT: Amount = Amount::from_sat(354);
/// The largest dust limit a channel accepts from its peer: Bitcoin Core's largest standard dust
/// threshold (P2PKH at 3 sat/vB). Anything above it only lets the peer drop outputs into fees.
pub const MAX_DUST_LIMIT: Amount = Amount::from_sat(546);

/// A fee rate in satoshi per 1000 weight units (BOLT `feerate_per_kw`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct FeeratePerKw(pub u32);

impl FeeratePerKw {
    /// The minimum relay fee rate, 253 sat per 1000 weight units (≈ 1 sat/vB).
    pub const MIN_RELAY: FeeratePerKw = FeeratePerKw(253);

    /// `feerate · weight / 1000`, rounded down.
    pub const fn fee_for_weight(self, weight: u64) -> Amount {
        Amount::from_sat(self.0 as u64 * weight / 1000)
    }
}

/// Whether an HTLC output of `amount` is trimmed (BOLT #3 "Trimmed Outputs"): below the
/// broadcaster's dust limit plus the fee of the second-stage transaction that would spend it.
pub fn is_htlc_trimmed(
    channel_type: ChannelType,
    offered: bool,
    amount: MilliSats,
    dust_limit: Amount,
    feerate: FeeratePerKw,
) -> bool {
    let second_stage =
        if offered { channel_type.htlc_timeout_fee(feerate) } else { channel_type.htlc_success_fee(feerate) };
    match dust_limit.checked_add(second_stage) {
        Some(threshold) => amount.to_amount_floor() < threshold,
        None => true,
    }
}
