//! BOLT #9 feature bits: the table, a bit vector in the wire's byte order, and the negotiation
//! rules of BOLT #1 (even = required, odd = optional; an unknown even bit ends the connection).
//!
//! ```
//! use paychan::network::features::{Feature, Features};
//!
//! let ours = Features::ours();
//! assert!(ours.supports(Feature::StaticRemoteKey));
//! let mut theirs = Features::empty();
//! theirs.set_required(Feature::VarOnionOptin);
//! theirs.set_optional(Feature::AnchorsZeroFeeHtlc);
//! assert_eq!(theirs.unknown_required(), None);
//! theirs.set_bit(100); // an even bit nobody knows
//! assert_eq!(theirs.unknown_required(), Some(100));
//! ```

use alloc::vec::Vec;

/// Every feature of the BOLT #9 table, by name. The bit of [`Feature::even_bit`] means
/// "required", the next odd bit "optional".
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Feature {
    /// `option_data_loss_protect` (0/1, assumed).
    DataLossProtect,
    /// `option_upfront_shutdown_script` (4/5).
    UpfrontShutdownScript,
    /// `gossip_queries` (6/7).
    GossipQueries,
    /// `var_onion_optin` (8/9, assumed).
    VarOnionOptin,
    /// `gossip_queries_ex` (10/11).
    GossipQueriesEx,
    /// `option_static_remotekey` (12/13, assumed).
    StaticRemoteKey,
    /// `payment_secret` (14/15, assumed).
    PaymentSecret,
    /// `basic_mpp` (16/17), needs `payment_secret`.
    BasicMpp,
    /// `option_support_large_channel` (18/19).
    LargeChannel,
    /// `option_anchors` (22/23): anchor outputs with zero-fee HTLC transactions.
    AnchorsZeroFeeHtlc,
    /// `option_route_blinding` (24/25).
    RouteBlinding,
    /// `option_shutdown_anysegwit` (26/27).
    ShutdownAnySegwit,
    /// `option_dual_fund` (28/29).
    DualFund,
    /// `option_quiesce` (34/35).
    Quiesce,
    /// `option_attribution_data` (36/37).
    AttributionData,
    /// `option_onion_messages` (38/39).
    OnionMessages,
    /// `option_provide_storage` (42/43).
    ProvideStorage,
    /// `option_channel_type` (44/45, assumed).
    ChannelType,
    /// `option_scid_alias` (46/47).
    ScidAlias,
    /// `option_payment_metadata` (48/49).
    PaymentMetadata,
    /// `option_zeroconf` (50/51), needs `option_scid_alias`.
    ZeroConf,
    /// `option_simple_close` (60/61), needs `option_shutdown_anysegwit`.
    SimpleClose,
    /// `option_splice` (62/63).
    Splice,
}

impl Feature {
    /// The whole table, in BOLT #9's order.
    pub const ALL: [Feature; 23] = [
        Feature::DataLossProtect,
        Feature::UpfrontShutdownScript,
        Feature::GossipQueries,
        Feature::VarOnionOptin,
        Feature::GossipQueriesEx,
        Feature::StaticRemoteKey,
        Feature::PaymentSecret,
        Feature::BasicMpp,
        Feature::LargeChannel,
        Feature::AnchorsZeroFeeHtlc,
        Feature::RouteBlinding,
        Feature::ShutdownAnySegwit,
        Feature::DualFund,
        Feature::Quiesce,
        Feature::AttributionData,
        Feature::OnionMessages,
        Feature::ProvideStorage,
        Feature::ChannelType,
        Feature::ScidAlias,
        Feature::PaymentMetadata,
        Feature::ZeroConf,
        Feature::SimpleClose,
        Feature::Splice,
    ];

    /// The even (required) bit.
    pub const fn even_bit(self) -> usize {
        match self {
            Feature::DataLossProtect => 0,
            Feature::UpfrontShutdownScript => 4,
            Feature::GossipQueries => 6,
            Feature::VarOnionOptin => 8,
            Feature::GossipQueriesEx => 10,
            Feature::StaticRemoteKey => 12,
            Feature::PaymentSecret => 14,
            Feature::BasicMpp => 16,
            Feature::LargeChannel => 18,
            Feature::AnchorsZeroFeeHtlc => 22,
            Feature::RouteBlinding => 24,
            Feature::ShutdownAnySegwit => 26,
            Feature::DualFund => 28,
            Feature::Quiesce => 34,
            Feature::AttributionData => 36,
            Feature::OnionMessages => 38,
            Feature::ProvideStorage => 42,
            Feature::ChannelType => 44,
            Feature::ScidAlias => 46,
            Feature::PaymentMetadata => 48,
            Feature::ZeroConf => 50,
            Feature::SimpleClose => 60,
            Feature::Splice => 62,
        }
    }

    /// The features this one needs.
    pub const fn dependencies(self) -> &'static [Feature] {
        match self {
            Feature::BasicMpp => &[Feature::PaymentSecret],
            Feature::ZeroConf => &[Feature::ScidAlias],
            Feature::SimpleClose => &[Feature::ShutdownAnySegwit],
            _ => &[],
        }
    }

    /// The feature whose bit pair contains `bit`, if any.
    pub fn from_bit(bit: usize) -> Option<Feature> {
        Feature::ALL.iter().copied().find(|f| f.even_bit() == bit & !1)
    }
}

/// A feature bit vector as on the wire: big-endian bytes, bit 0 the least significant bit of
/// the last byte.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct Features {
    /// Little-endian bytes internally (byte 0 holds bits 0..8).
    le: Vec<u8>,
}

impl Features {
    /// No bit set.
    pub fn empty() -> Self {
        Features::default()
    }

    /// What this crate's Lightning layer supports, as it sends it in `init`: the assumed
    /// features required (BOLT #9 says to set them), anchors and `option_shutdown_anysegwit`
    /// optional, `option_upfront_shutdown_script` optional.
    pub fn ours() -> Self {
        let mut f = Features::empty();
        for required in [
            Feature::DataLossProtect,
            Feature::VarOnionOptin,
            Feature::StaticRemoteKey,
            Feature::PaymentSecret,
            Feature::ChannelType,
        ] {
            f.set_required(required);
        }
        for optional in [Feature::UpfrontShutdownScript, Feature::AnchorsZeroFeeHtlc, Feature::ShutdownAnySegwit] {
            f.set_optional(optional);
        }
        f
    }

    /// From the wire's big-endian bytes (leading zero bytes allowed).
    pub fn from_wire(bytes: &[u8]) -> Self {
        let mut le: Vec<u8> = bytes.iter().rev().copied().collect();
        while le.last() == Some(&0) {
            le.pop();
        }
        Features { le }
    }

    /// The wire's big-endian bytes, without leading zero bytes.
    pub fn to_wire(&self) -> Vec<u8> {
        self.le.iter().rev().copied().collect()
    }

    /// Sets one bit.
    pub fn set_bit(&mut self, bit: usize) {
        let byte = bit / 8;
        if self.le.len() <= byte {
            self.le.resize(byte + 1, 0);
        }
        if let Some(b) = self.le.get_mut(byte) {
            *b |= 1 << (bit % 8);
        }
    }

    /// Whether a bit is set.
    pub fn has_bit(&self, bit: usize) -> bool {
        self.le.get(bit / 8).is_some_and(|b| b & (1 << (bit % 8)) != 0)
    }

    /// Sets `f`'s even (required) bit.
    pub fn set_required(&mut self, f: Feature) {
        self.set_bit(f.even_bit());
    }

    /// Sets `f`'s odd (optional) bit.
    pub fn set_optional(&mut self, f: Feature) {
        self.set_bit(f.even_bit() + 1);
    }

    /// Whether `f` is offered (either bit).
    pub fn supports(&self, f: Feature) -> bool {
        self.has_bit(f.even_bit()) || self.has_bit(f.even_bit() + 1)
    }

    /// Whether `f` is required (even bit).
    pub fn requires(&self, f: Feature) -> bool {
        self.has_bit(f.even_bit())
    }

    /// Every set bit, lowest first.
    pub fn bits(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.le.len() * 8).filter(|b| self.has_bit(*b))
    }

    /// The lowest even bit set that BOLT #9 does not define: a peer requiring it cannot be
    /// served (BOLT #1: fail the connection).
    pub fn unknown_required(&self) -> Option<usize> {
        self.bits().find(|b| b % 2 == 0 && Feature::from_bit(*b).is_none())
    }

    /// The lowest even bit set for a feature `supported` does not offer: a peer requiring it
    /// cannot be served by a node that does not implement it.
    pub fn required_unsupported(&self, supported: &Features) -> Option<usize> {
        self.bits().find(|b| b % 2 == 0 && !supported.has_bit(*b) && !supported.has_bit(b + 1))
    }

    /// The first feature offered without one it depends on (BOLT #9: such a vector is invalid).
    pub fn missing_dependency(&self) -> Option<(Feature, Feature)> {
        Feature::ALL
            .iter()
            .filter(|f| self.supports(**f))
            .find_map(|f| f.dependencies().iter().find(|d| !self.supports(**d)).map(|d| (*f, *d)))
    }

    /// The bitwise OR of two vectors (`init`'s `globalfeatures` and `features` are read as one).
    pub fn union(&self, other: &Features) -> Features {
        let n = self.le.len().max(other.le.len());
        let le = (0..n).map(|i| self.le.get(i).copied().unwrap_or(0) | other.le.get(i).copied().unwrap_or(0)).collect();
        Features { le }
    }

    /// Whether both sides offer `f` (negotiated).
    pub fn negotiated(&self, theirs: &Features, f: Feature) -> bool {
        self.supports(f) && theirs.supports(f)
    }
}
