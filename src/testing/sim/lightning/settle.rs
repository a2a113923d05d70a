//! The Lightning simulation's settlement helpers: the HTLCs a channel without anchors cannot
//! claim through a fee spike (an allowance of the exact accounting), and the settlement's trace.

use std::format;
use std::string::String;
use std::vec::Vec;

use bitcoin::{OutPoint, Transaction};

use crate::core::commitment::{ChannelType, HtlcDirection, OutputRole};
use crate::testing::invariants::Settlement;

use super::{trace, Sim};

impl Sim {
    /// The HTLC outputs of honest peer `i`'s own commitment `c_tx` (the funding spender) that no
    /// strategy of `i` could have claimed, which the peer then took: `c_tx` has no anchors (a
    /// `static_remotekey` commitment: neither it nor its HTLC-success transactions, pre-signed
    /// by the peer with `SIGHASH_ALL` at the commitment's feerate, can be bumped), and every block
    /// from the one after `i` had to broadcast it (its HTLC deadline, `claim_margin` blocks
    /// before the expiry, or its actual broadcast if earlier) up to the HTLC's expiry required
    /// more than the feerate the funder set for it. The HTLC offered to `i` (whose preimage `i`
    /// knows) then cannot confirm before the peer's timeout becomes valid: the exposure of a
    /// channel without anchors to a fee spike (what `option_anchors` is for), not a fault of the
    /// honest side. Such an output counts as a fee of `i`.
    ///
    /// Returns how many such outputs, and their value.
    pub(super) fn stranded(&self, i: usize, settled: &Settlement, c_tx: &Transaction) -> (u32, u64) {
        let c = c_tx.compute_txid();
        let (Some((owner, built)), Some(market)) = (self.known.get(&c), self.chain.market()) else { return (0, 0) };
        if *owner != i || built.channel_type() != ChannelType::StaticRemoteKey {
            return (0, 0);
        }
        let Some(&fee) = settled.tx_fees.get(&c) else { return (0, 0) };
        let weight = c_tx.weight().to_wu();
        let broadcast = self.broadcast_at.get(&c).copied().unwrap_or(u32::MAX);
        let margin = self.nodes[i].ch.config.htlc_deadlines.claim_margin;
        let taken_by_peer = |vout: u32| {
            let op = OutPoint { txid: c, vout };
            settled.txs.iter().filter_map(|t| self.chain.tx(t)).any(|tx| {
                tx.input.iter().any(|inp| inp.previous_output == op) && !self.broadcasts.did(i, &tx.compute_txid())
            })
        };
        (0..c_tx.output.len() as u32)
            .filter(|&vout| {
                let Some(OutputRole::Htlc(k)) = built.outputs().get(vout as usize).map(|o| o.role) else { return false };
                let Some(h) = built.htlcs().get(k) else { return false };
                if h.direction() != HtlcDirection::Received || !self.htlc_favours(i, i, built, k) || !taken_by_peer(vout)
                {
                    return false;
                }
                let expiry = h.cltv_expiry();
                let deadline = expiry.saturating_add(1).saturating_sub(margin);
                let first = broadcast.min(deadline).saturating_add(1);
                if trace() {
                    std::println!(
                        "STRANDED? vout {vout} expiry {expiry} broadcast {broadcast} first {first} commitment {} sat/kW, block minimums {:?}",
                        fee * 1_000 / weight,
                        (first..=expiry).map(|b| market.min_feerate(b).to_sat_per_kwu()).collect::<Vec<_>>()
                    );
                }
                // No block from `first` to the expiry took the commitment's feerate.
                first <= expiry
                    && (first..=expiry).all(|b| {
                        market.min_feerate(b).to_sat_per_kwu().saturating_mul(weight)
                            > fee.saturating_mul(1_000)
                    })
            })
            .filter_map(|vout| c_tx.output.get(vout as usize))
            .fold((0, 0), |(n, v), o| (n + 1, v + o.value.to_sat()))
    }

    /// Prints the settlement (`PAYCHAN_SIM_TRACE`): each confirmed transaction with its height,
    /// broadcaster, inputs and outputs, and the closing commitment's outputs by role.
    pub(super) fn dump_settlement(&self, settled: &Settlement, scripts: &[bitcoin::ScriptBuf; 2]) {
        let name = |s: &bitcoin::ScriptBuf| -> String {
            (0..2)
                .find(|&i| &scripts[i] == s)
                .map(|i| format!("dest{i}"))
                .or_else(|| (0..2).find(|&i| self.wallets[i].script() == *s).map(|i| format!("wallet{i}")))
                .unwrap_or_else(|| s.to_hex_string().chars().take(8).collect())
        };
        for t in &settled.txs {
            let Some(tx) = self.chain.tx(t) else { continue };
            let by: Vec<usize> = (0..2).filter(|&i| self.broadcasts.did(i, t)).collect();
            std::println!(
                "SETTLE {} h{:?} by {by:?} fee {:?}",
                super::super::short(t),
                self.chain.confirmation(t),
                settled.tx_fees.get(t)
            );
            for inp in &tx.input {
                let v = self
                    .chain
                    .tx(&inp.previous_output.txid)
                    .and_then(|p| p.output.get(inp.previous_output.vout as usize))
                    .map(|o| o.value.to_sat());
                std::println!(
                    "   in {}:{} {:?} seq {} lock {}",
                    super::super::short(&inp.previous_output.txid),
                    inp.previous_output.vout,
                    v,
                    inp.sequence.0,
                    tx.lock_time
                );
            }
            for (k, o) in tx.output.iter().enumerate() {
                std::println!("   out {k} {} -> {}", o.value.to_sat(), name(&o.script_pubkey));
            }
            if let Some((owner, built)) = self.known.get(t) {
                std::println!("   commitment of {owner}");
                for (k, o) in built.outputs().iter().enumerate() {
                    let extra = match o.role {
                        OutputRole::Htlc(j) => built
                            .htlcs()
                            .get(j)
                            .map(|h| {
                                format!(
                                    "{:?} expiry {} hash {} fulfilled {:?}",
                                    h.direction(),
                                    h.cltv_expiry(),
                                    format!("{:?}", h.payment_hash()).chars().take(20).collect::<String>(),
                                    (0..2)
                                        .filter(|&i| self.fulfilled[i].contains(&h.payment_hash()))
                                        .collect::<Vec<_>>()
                                )
                            })
                            .unwrap_or_default(),
                        _ => String::new(),
                    };
                    std::println!("     vout {k} {:?} {extra}", o.role);
                }
            }
        }
        for (op, o) in &settled.unspent {
            std::println!(
                "UNSPENT {}:{} {} -> {}",
                super::super::short(&op.txid),
                op.vout,
                o.value.to_sat(),
                name(&o.script_pubkey)
            );
        }
    }
}
