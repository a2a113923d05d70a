//! The two unidirectional channels of a leaf: per-direction payment state, the payment templates
//! (the Spilman [`PaymentTemplate`] with `ChannelLock::Csv(T_r)`), and the netting a reset does.

use alloc::vec::Vec;

use bitcoin::secp256k1::PublicKey;
use bitcoin::{ecdsa, Amount, OutPoint, ScriptBuf, Txid};

use super::msgs::{HtlcRemoval, Removal};
use super::params::Terms;
use super::Role;
use crate::core::hashlock::PaymentPreimage;
use crate::core::script;
use crate::core::units::BlockHeight;
use crate::spilman::payment::{ChannelLock, PaymentHtlc, PaymentState, PaymentTemplate};

/// A party's public channel data.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct PartyKeys {
    /// The funding key: tree nodes' 2-of-2 and its leaf channel keys.
    pub funding: PublicKey,
    /// The HTLC key.
    pub htlc: PublicKey,
    /// Where its money goes.
    pub payout: ScriptBuf,
}

/// What a party knows about one HTLC of a leaf channel.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum HtlcStatus {
    /// Outstanding.
    Live,
    /// The preimage is known (revealed by the receiver).
    Fulfilled(PaymentPreimage),
    /// The receiver gave it up; the next reset drops it.
    Failed,
}

/// One direction's leaf channel, as both of its parties see it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct LeafChannel {
    /// Number of the newest payment (signed, for the payer; held, for the payee). Increases across
    /// resets; each reset's first payment takes the next number.
    pub number: u64,
    /// The newest payment state.
    pub state: PaymentState,
    /// The payer's signature on `state` (kept by the payee; `None` for an empty state, which
    /// needs no transaction, and always `None` on the payer's side).
    pub signature: Option<ecdsa::Signature>,
    /// (Payer) the newest number the payee acknowledged.
    pub acked: u64,
    /// The smallest id a new HTLC may carry.
    pub next_htlc_id: u64,
    /// Status of every HTLC of `state`, by id.
    pub status: Vec<(u64, HtlcStatus)>,
}

impl LeafChannel {
    pub fn new() -> Self {
        LeafChannel {
            number: 0,
            state: PaymentState::default(),
            signature: None,
            acked: 0,
            next_htlc_id: 0,
            status: Vec::new(),
        }
    }

    pub fn status_of(&self, id: u64) -> Option<HtlcStatus> {
        self.status.iter().find(|(i, _)| *i == id).map(|(_, s)| *s)
    }

    pub fn set_status(&mut self, id: u64, status: HtlcStatus) {
        if let Some(entry) = self.status.iter_mut().find(|(i, _)| *i == id) {
            entry.1 = status;
        }
    }

    /// Drops the status of HTLCs no longer in `state`, and adds `Live` for new ones.
    pub fn sync_status(&mut self) {
        let state = &self.state;
        self.status.retain(|(id, _)| state.htlcs.iter().any(|h| h.id == *id));
        for h in &state.htlcs {
            if !self.status.iter().any(|(id, _)| *id == h.id) {
                self.status.push((h.id, HtlcStatus::Live));
            }
        }
        // Ids without a successor are refused (`check_update`, `Channel::add_htlc`), so every
        // id held has one.
        if let Some(next) = state.htlcs.iter().map(|h| h.id).max().and_then(|max| max.checked_add(1)) {
            self.next_htlc_id = self.next_htlc_id.max(next);
        }
    }

    pub fn htlc(&self, id: u64) -> Option<&PaymentHtlc> {
        self.state.htlcs.iter().find(|h| h.id == id)
    }
}

/// The leaf channel script of the channel paid by `payer`.
pub(crate) fn channel_spk(keys: &[PartyKeys; 2], payer: Role, refund_delay: u16) -> ScriptBuf {
    let (p, q) = (&keys[payer.index()], &keys[(!payer).index()]);
    script::spilman_csv(&p.funding, &q.funding, refund_delay).to_p2wsh()
}

/// The payment template of the leaf channel paid by `payer`, at `outpoint` with `capacity`.
pub(crate) fn template(
    terms: &Terms,
    keys: &[PartyKeys; 2],
    payer: Role,
    outpoint: OutPoint,
    capacity: Amount,
) -> PaymentTemplate {
    let (p, q) = (&keys[payer.index()], &keys[(!payer).index()]);
    PaymentTemplate {
        outpoint,
        capacity,
        lock: ChannelLock::Csv(terms.params.refund_delay()),
        payer_key: p.funding,
        payee_key: q.funding,
        payer_htlc_key: p.htlc,
        payee_htlc_key: q.htlc,
        payer_script: p.payout.clone(),
        payee_script: q.payout.clone(),
        fee: terms.payment_fee,
        dust_limit: terms.dust_limit,
    }
}

/// The template of the channel paid by `payer` in a leaf with txid `leaf` and channel values
/// `values` (`None` when that channel is empty and has no output).
pub(crate) fn leaf_template(
    terms: &Terms,
    keys: &[PartyKeys; 2],
    payer: Role,
    leaf: Txid,
    values: [Amount; 2],
) -> Option<PaymentTemplate> {
    let vouts = super::tree::leaf_vouts(values[0], values[1]);
    let vout = (*vouts.get(payer.index())?)?;
    Some(template(terms, keys, payer, OutPoint { txid: leaf, vout }, *values.get(payer.index())?))
}

/// Balances in a leaf, from both channels' values and newest states.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) struct RawBalances {
    /// What each party owns outright, by role.
    pub own: [Amount; 2],
    /// Pending HTLC value offered by each party, by role.
    pub offered: [Amount; 2],
}

/// Splits the leaf value between the parties. `None` if a state overspends its channel.
pub(crate) fn balances(values: [Amount; 2], states: [&PaymentState; 2]) -> Option<RawBalances> {
    let mut b = RawBalances::default();
    for payer in [Role::Initiator, Role::Acceptor] {
        let i = payer.index();
        let state = states.get(i)?;
        let htlcs = state.htlc_total()?;
        let change = values.get(i)?.checked_sub(state.to_payee)?.checked_sub(htlcs)?;
        let own = b.own.get_mut(i)?;
        *own = own.checked_add(change)?;
        let other = b.own.get_mut((!payer).index())?;
        *other = other.checked_add(state.to_payee)?;
        *b.offered.get_mut(i)? = htlcs;
    }
    Some(b)
}

/// The new leaf a reset produces.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct Netted {
    /// Value of each channel, by payer role.
    pub values: [Amount; 2],
    /// The first payment state of each channel, by payer role: empty, or carrying the HTLCs with
    /// the smallest payable amount to the payee.
    pub bases: [PaymentState; 2],
}

/// Why a netting is impossible.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum NettingError {
    /// An amount overflowed or a state overspends its channel.
    Overflow,
    /// A removed HTLC is not in the state.
    UnknownHtlc,
    /// A channel value is non-zero and below dust.
    BelowDust,
    /// The payee cannot keep the smallest payable amount needed to carry HTLCs.
    CannotCarry,
}

/// Nets the two channels of the current leaf into a new leaf (docs/duplex.md §5): each party's
/// balance goes into its own channel; removed HTLCs are folded to the receiver or returned to the
/// offerer; pending ones are carried into the new channel's first payment, which keeps
/// `payment_fee + dust_limit` with the payee (taken from the payee's own channel).
pub(crate) fn net(
    terms: &Terms,
    values: [Amount; 2],
    states: [&PaymentState; 2],
    removed: &[HtlcRemoval],
) -> Result<Netted, NettingError> {
    let mut own = [Amount::ZERO; 2];
    let mut carried: [Vec<PaymentHtlc>; 2] = [Vec::new(), Vec::new()];
    for payer in [Role::Initiator, Role::Acceptor] {
        let (i, j) = (payer.index(), (!payer).index());
        let state = states[i];
        let htlcs = state.htlc_total().ok_or(NettingError::Overflow)?;
        let change =
            values[i].checked_sub(state.to_payee).and_then(|c| c.checked_sub(htlcs)).ok_or(NettingError::Overflow)?;
        own[i] = own[i].checked_add(change).ok_or(NettingError::Overflow)?;
        own[j] = own[j].checked_add(state.to_payee).ok_or(NettingError::Overflow)?;
        for h in &state.htlcs {
            let to = match removed.iter().find(|r| r.offerer == payer && r.id == h.id) {
                Some(r) if r.how == Removal::Folded => j,
                Some(_) => i,
                None => {
                    carried[i].push(*h);
                    continue;
                }
            };
            own[to] = own[to].checked_add(h.amount).ok_or(NettingError::Overflow)?;
        }
    }
    for r in removed {
        let state = states[r.offerer.index()];
        if !state.htlcs.iter().any(|h| h.id == r.id) {
            return Err(NettingError::UnknownHtlc);
        }
    }
    let q = terms.min_to_payee().ok_or(NettingError::Overflow)?;
    let mut keep = [Amount::ZERO; 2];
    for i in 0..2 {
        if !carried[i].is_empty() {
            keep[i] = q;
        }
    }
    let mut new_values = [Amount::ZERO; 2];
    let mut bases = [PaymentState::default(), PaymentState::default()];
    for i in 0..2 {
        let j = 1 - i;
        let carried_total =
            carried[i].iter().try_fold(Amount::ZERO, |a, h| a.checked_add(h.amount)).ok_or(NettingError::Overflow)?;
        let own_change = own[i].checked_sub(keep[j]).ok_or(NettingError::CannotCarry)?;
        let value =
            own_change.checked_add(keep[i]).and_then(|v| v.checked_add(carried_total)).ok_or(NettingError::Overflow)?;
        if value != Amount::ZERO && value < terms.dust_limit {
            return Err(NettingError::BelowDust);
        }
        new_values[i] = value;
        if !carried[i].is_empty() {
            bases[i] = PaymentState { to_payee: keep[i], htlcs: core::mem::take(&mut carried[i]) };
        }
    }
    Ok(Netted { values: new_values, bases })
}

/// Whether an HTLC has expired at `tip` (its timeout path is valid from block `expiry + 1`; the
/// receiver can no longer safely claim it).
pub(crate) fn expired(h: &PaymentHtlc, tip: BlockHeight) -> bool {
    tip >= h.expiry
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::hashlock::PaymentHash;
    use crate::duplex::params::Params;

    fn terms() -> Terms {
        Terms {
            params: Params::uniform(2, 3, 2, 10).unwrap(),
            capacity: Amount::from_sat(1_000_000),
            push: Amount::ZERO,
            payment_fee: Amount::from_sat(300),
            refund_fee: Amount::from_sat(300),
            claim_fee: Amount::from_sat(300),
            dust_limit: Amount::from_sat(546),
            confirm_blocks: 1,
            reorg_blocks: 1,
            htlc_grace_blocks: 1,
            max_htlc_expiry_delta: 1_000,
            reset_warning: 2,
            funding_depth: 2,
        }
    }

    fn htlc(id: u64, sats: u64) -> PaymentHtlc {
        PaymentHtlc {
            id,
            amount: Amount::from_sat(sats),
            payment_hash: PaymentHash([id as u8; 32]),
            expiry: BlockHeight(500),
        }
    }

    #[test]
    fn netting_conserves_value_and_carries_htlcs() {
        let t = terms();
        let values = [Amount::from_sat(600_000), Amount::from_sat(398_500)];
        let ab =
            PaymentState { to_payee: Amount::from_sat(50_000), htlcs: alloc::vec![htlc(0, 5_000), htlc(1, 7_000)] };
        let ba = PaymentState { to_payee: Amount::from_sat(20_000), htlcs: alloc::vec![htlc(0, 3_000)] };
        let removed = [
            HtlcRemoval { offerer: Role::Initiator, id: 0, how: Removal::Folded },
            HtlcRemoval { offerer: Role::Acceptor, id: 0, how: Removal::Dropped },
        ];
        let n = net(&t, values, [&ab, &ba], &removed).unwrap();
        let total = n.values[0] + n.values[1];
        assert_eq!(total, values[0] + values[1]);
        assert_eq!(n.bases[0].htlcs, alloc::vec![htlc(1, 7_000)]);
        assert_eq!(n.bases[0].to_payee, Amount::from_sat(846));
        assert_eq!(n.bases[1], PaymentState::default());
        let before = balances(values, [&ab, &ba]).unwrap();
        let after = balances(n.values, [&n.bases[0], &n.bases[1]]).unwrap();
        // A: 600k-50k-12k + 20k = 558k; B: 398.5k-20k-3k + 50k = 425.5k, then + 5k folded to B and
        // + 3k dropped back to B.
        assert_eq!(before.own, [Amount::from_sat(558_000), Amount::from_sat(425_500)]);
        assert_eq!(after.own, [Amount::from_sat(558_000), Amount::from_sat(425_500 + 5_000 + 3_000)]);
        assert_eq!(after.offered, [Amount::from_sat(7_000), Amount::ZERO]);
    }
}
