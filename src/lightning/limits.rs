//! The limits every update must keep (BOLT #2), checked on both commitments an update lands in:
//! the receiver's HTLC count and in-flight value, the reserves, the funder's ability to pay the
//! commitment fee whoever offered the HTLC, the fee-spike buffer, and our dust exposure.

use super::channel::{Channel, View};
use super::htlc::Side;
use crate::core::commitment::fees::is_htlc_trimmed;
use crate::core::commitment::{FeeratePerKw, HtlcDirection};
use crate::core::units::MilliSats;

/// The fee-spike buffer (BOLT #2): the funder must be able to pay the commitment fee at this
/// multiple of the fee rate (with one more HTLC) so that a fee rise cannot strand the channel.
pub(crate) const FEE_SPIKE_MULTIPLE: u64 = 2;

/// HTLCs the peer may be adding while our fee update is in flight, which the new fee must still
/// cover (LDK's `CONCURRENT_INBOUND_HTLC_FEE_BUFFER`).
pub(crate) const CONCURRENT_HTLCS: usize = 4;

/// Which limit an update would break. The first three are hard limits (a peer breaking them
/// breaks the protocol; a command breaking them is refused); the last two are our own policy on
/// what the peer could not know (an HTLC offered to us that breaks them is failed back once
/// committed).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Breach {
    /// The receiver's count or in-flight value limit.
    HtlcLimits,
    /// The offerer would go below its reserve (or, as funder, below its fee and buffer).
    OffererCannotAfford,
    /// The funder could not pay the commitment fee while keeping its reserve.
    FunderCannotPayFee,
    /// More value in dust HTLCs than our limit, and more than before the update.
    DustExposure,
    /// We, the funder, could pay the fee but not the fee-spike buffer.
    FeeSpikeBuffer,
}

/// Fee-related figures of one commitment view.
struct Costs {
    /// Base fee plus anchors the funder pays, at the multiple asked for.
    fee: MilliSats,
    /// Value in trimmed HTLCs (both directions).
    dust: MilliSats,
}

impl Channel {
    /// The fee plus anchors `owner`'s commitment in `view` charges its funder at `multiple` times
    /// its fee rate with `extra` more untrimmed HTLCs, and the value trimmed to dust in it.
    fn costs(&self, owner: Side, view: &View, multiple: u64, extra: usize) -> Costs {
        let Some(params) = self.commitment_params(owner) else {
            return Costs { fee: MilliSats::ZERO, dust: MilliSats::ZERO };
        };
        let feerate = FeeratePerKw(u32::try_from(u64::from(view.feerate) * multiple).unwrap_or(u32::MAX));
        let mut untrimmed = extra;
        let mut dust = MilliSats::ZERO;
        for h in &view.state_htlcs {
            let offered = h.direction() == HtlcDirection::Offered;
            if is_htlc_trimmed(self.channel_type, offered, h.amount(), params.dust_limit, FeeratePerKw(view.feerate)) {
                dust = dust.saturating_add(h.amount());
            } else {
                untrimmed += 1;
            }
        }
        let fee = feerate.fee_for_weight(self.channel_type.commitment_weight(untrimmed))
            + self.channel_type.anchor_value() * 2;
        Costs { fee: MilliSats::from_amount(fee).unwrap_or(MilliSats::from_msat(u64::MAX)), dust }
    }

    /// `side`'s balance in `view` (of `owner`'s commitment), before fees and HTLCs.
    fn balance_in(view: &View, owner: Side, side: Side) -> MilliSats {
        if side == owner {
            view.to_owner
        } else {
            view.to_other
        }
    }

    fn funder(&self) -> Side {
        if self.is_funder {
            Side::Holder
        } else {
            Side::Counterparty
        }
    }

    /// The reserve `side` must keep: what the other side announced.
    fn reserve_of(&self, side: Side) -> MilliSats {
        let announced = match side {
            Side::Holder => self.counterparty.as_ref().map(|c| c.channel_reserve),
            Side::Counterparty => Some(self.holder.channel_reserve),
        };
        announced.and_then(MilliSats::from_amount).unwrap_or(MilliSats::ZERO)
    }

    /// The view limits are judged on: as receiver of the peer's update, what the peer could know
    /// when it sent it; otherwise every live update.
    fn limit_view(&self, owner: Side, sender: Side) -> View {
        if sender == Side::Counterparty {
            self.peer_projected_view(owner)
        } else {
            self.projected_view(owner)
        }
    }

    /// The dust-exposure limit now: the policy at our fee estimate, or without one at the fee
    /// rate both commitments already have (never at a rate the peer is only proposing).
    pub(crate) fn dust_exposure_limit(&self) -> MilliSats {
        self.config.max_dust_exposure.limit_at(self.fee_estimate.unwrap_or(self.feerate))
    }

    /// The value in dust HTLCs on `owner`'s commitment as `sender` sees it.
    fn dust_exposure(&self, owner: Side, sender: Side) -> MilliSats {
        self.costs(owner, &self.limit_view(owner, sender), 1, 0).dust
    }

    /// Checks the state after an update by `sender` (an HTLC it offered, or its fee update)
    /// against every limit, on both commitments; `prior` is the state before the update (the
    /// dust limit only refuses an update that adds dust). `offerer_fee_multiple` is the fee
    /// multiple a funder must afford on its own updates.
    pub(crate) fn check_update(&self, sender: Side, offerer_fee_multiple: u64, prior: &Channel) -> Result<(), Breach> {
        let cp = self.counterparty.as_ref().ok_or(Breach::HtlcLimits)?;
        // The receiver's announced limits apply to what the sender offers it.
        let receiver = if sender == Side::Holder { cp } else { &self.holder };
        let funder = self.funder();
        let mut soft = None;
        for owner in [Side::Holder, Side::Counterparty] {
            let view = self.limit_view(owner, sender);
            let (count, value) = view
                .ids
                .iter()
                .zip(&view.state_htlcs)
                .filter(|((o, _), _)| *o == sender)
                .fold((0usize, MilliSats::ZERO), |(c, v), (_, h)| (c + 1, v.saturating_add(h.amount())));
            if count > usize::from(receiver.max_accepted_htlcs) || value > receiver.max_htlc_value_in_flight {
                return Err(Breach::HtlcLimits);
            }
            let multiple = if sender == funder { offerer_fee_multiple } else { 1 };
            let costs = self.costs(owner, &view, multiple, 0);
            let mut balance = Self::balance_in(&view, owner, sender);
            if sender == funder {
                balance = balance.checked_sub(costs.fee).ok_or(Breach::OffererCannotAfford)?;
            }
            if balance < self.reserve_of(sender) {
                return Err(Breach::OffererCannotAfford);
            }
            if sender != funder {
                // Whoever offers, the funder pays the fee the HTLC adds: it must still afford it
                // at the current rate while keeping its reserve (BOLT #2), or the commitment
                // would underpay its fee. When we offer, we leave it the fee-spike buffer too
                // (as LDK does): a fee update crossing our HTLC must not make it unaffordable,
                // or two honest sides would refuse each other's signed updates at every
                // reconnection.
                let funder_balance = Self::balance_in(&view, owner, funder);
                let fee = if sender == Side::Holder {
                    self.costs(owner, &view, FEE_SPIKE_MULTIPLE, 1).fee
                } else {
                    costs.fee
                };
                let enough = fee.checked_add(self.reserve_of(funder));
                if enough.is_none_or(|e| funder_balance < e) {
                    return Err(Breach::FunderCannotPayFee);
                }
                // We fund and the peer offers: keep the fee-spike buffer too (one more HTLC at
                // twice the rate), or fail the HTLC back.
                if funder == Side::Holder {
                    let spike = self.costs(owner, &view, FEE_SPIKE_MULTIPLE, 1);
                    let enough = spike.fee.checked_add(self.reserve_of(funder));
                    if enough.is_none_or(|e| funder_balance < e) {
                        soft = soft.or(Some(Breach::FeeSpikeBuffer));
                    }
                }
            }
            // Only over the limit is the exposure before the update worth computing.
            if costs.dust > self.dust_exposure_limit() && costs.dust > prior.dust_exposure(owner, sender) {
                soft = Some(Breach::DustExposure);
            }
        }
        soft.map_or(Ok(()), Err)
    }

    /// (Funder, after our own fee update) whether we could still pay the new fee with
    /// [`CONCURRENT_HTLCS`] more HTLCs offered to us, on both commitments: HTLCs the peer is
    /// adding while our `update_fee` is in flight must not become unaffordable (each side would
    /// refuse the other's signed updates at every reconnection). LDK keeps the same room.
    pub(crate) fn fee_update_leaves_room(&self) -> bool {
        [Side::Holder, Side::Counterparty].into_iter().all(|owner| {
            let view = self.projected_view(owner);
            let fee = self.costs(owner, &view, 1, CONCURRENT_HTLCS).fee;
            fee.checked_add(self.reserve_of(Side::Holder))
                .is_some_and(|need| Self::balance_in(&view, owner, Side::Holder) >= need)
        })
    }

    /// Our balance we could still offer now (after reserve and, as funder, fees), an estimate.
    pub fn available_to_send(&self) -> MilliSats {
        let view = self.projected_view(Side::Counterparty);
        let fee = self.costs(Side::Counterparty, &view, FEE_SPIKE_MULTIPLE, 0).fee;
        let mut b = view.to_other.saturating_sub(self.reserve_of(Side::Holder));
        if self.is_funder {
            b = b.saturating_sub(fee);
        }
        b
    }
}
