//! A picture of a Lightning channel's transactions as Graphviz DOT text ([`Channel::to_dot`]):
//! the funding output, both sides' latest commitments with every output, the second-stage
//! HTLC-timeout/-success transactions and their delayed outputs, and where a penalty would strike
//! once a commitment is revoked.

use alloc::format;
use alloc::string::String;
use core::fmt::{self, Write};

use crate::core::commitment::{BuiltCommitment, HtlcDirection, OutputRole};
use crate::core::sign::Signer;
use crate::spilman::dot::{header, short};

use super::channel::Channel;

/// Who broadcasts a commitment, for labels: (broadcaster, countersignatory).
type Names<'a> = (&'a str, &'a str);

fn write_commitment(o: &mut String, id: &str, title: &str, c: &BuiltCommitment, names: Names<'_>) -> fmt::Result {
    let (me, peer) = names;
    let delay = c.to_self_delay();
    writeln!(
        o,
        "  {id} [label=\"{title} #{} {}\\nfee {} sat at {} sat/kw\\n{} output(s)\", style=filled, fillcolor=\"#f4f4ff\"];",
        c.number().to_u64(),
        short(&c.txid()),
        c.actual_fee().to_sat(),
        c.feerate().0,
        c.outputs().len(),
    )?;
    writeln!(o, "  F -> {id} [label=\"{me}'s copy, {peer}'s signature\"];")?;
    for (vout, out) in c.outputs().iter().enumerate() {
        let node = format!("{id}_{vout}");
        let value = out.value.to_sat();
        match out.role {
            OutputRole::ToBroadcaster => {
                writeln!(o, "  {node} [label=\"to_local {me}\\n{value} sat\", shape=ellipse];")?;
                writeln!(o, "  {id} -> {node};")?;
                writeln!(o, "  {node}_d [label=\"{me} sweeps\\nnSequence {delay} blocks (CSV)\"];")?;
                writeln!(o, "  {node} -> {node}_d [label=\"after {delay} blocks\"];")?;
                writeln!(o, "  {node}_p [label=\"penalty by {peer}\\nrevocation key\", color=red, fontcolor=red];")?;
                writeln!(o, "  {node} -> {node}_p [label=\"once revoked\", style=dashed, color=red];")?;
            }
            OutputRole::ToCountersignatory => {
                writeln!(o, "  {node} [label=\"to_remote {peer}\\n{value} sat\", shape=ellipse];")?;
                writeln!(o, "  {id} -> {node};")?;
            }
            OutputRole::BroadcasterAnchor | OutputRole::CountersignatoryAnchor => {
                let who = if out.role == OutputRole::BroadcasterAnchor { me } else { peer };
                writeln!(o, "  {node} [label=\"anchor {who}\\n{value} sat (CPFP)\", shape=ellipse];")?;
                writeln!(o, "  {id} -> {node};")?;
            }
            OutputRole::Htlc(i) => {
                let Some(h) = c.htlcs().get(i) else { continue };
                let (kind, second, direct) = match h.direction() {
                    HtlcDirection::Offered => (
                        format!("offered by {me}"),
                        format!("HTLC-timeout\\nnLockTime {}", h.cltv_expiry()),
                        format!("{peer} claims\\npreimage"),
                    ),
                    HtlcDirection::Received => (
                        format!("offered to {me}"),
                        String::from("HTLC-success\\npreimage"),
                        format!("{peer} times out\\nnLockTime {}", h.cltv_expiry()),
                    ),
                };
                writeln!(
                    o,
                    "  {node} [label=\"HTLC {kind}\\n{value} sat, expiry {}\", shape=ellipse];",
                    h.cltv_expiry()
                )?;
                writeln!(o, "  {id} -> {node};")?;
                writeln!(o, "  {node}_s [label=\"{second}\\n→ delayed output\"];")?;
                writeln!(o, "  {node} -> {node}_s [label=\"{me} + {peer} sigs\"];")?;
                writeln!(o, "  {node}_s_d [label=\"{me} sweeps\\nnSequence {delay} blocks (CSV)\"];")?;
                writeln!(o, "  {node}_s -> {node}_s_d [label=\"after {delay} blocks\"];")?;
                writeln!(o, "  {node}_c [label=\"{direct}\"];")?;
                writeln!(o, "  {node} -> {node}_c [style=dotted];")?;
                writeln!(o, "  {node}_p [label=\"penalty by {peer}\\nrevocation key\", color=red, fontcolor=red];")?;
                writeln!(o, "  {node} -> {node}_p [label=\"once revoked\", style=dashed, color=red];")?;
                writeln!(o, "  {node}_s -> {node}_p [label=\"second stage, once revoked\", style=dashed, color=red];")?;
            }
        }
    }
    Ok(())
}

impl Channel {
    /// The channel's transactions as Graphviz DOT text (render with `dot -Tsvg`): the funding
    /// output, our latest commitment and the peer's (each with every output: `to_local` with its
    /// CSV delay, `to_remote`, anchors, HTLCs with their second-stage HTLC-timeout/-success
    /// transactions), the penalty paths a revocation opens, and how many revoked commitments
    /// we can punish. Our commitment needs the signer for its per-commitment point.
    pub fn to_dot<S: Signer + ?Sized>(&self, signer: &S) -> String {
        let mut o = String::new();
        let _ = self.write_dot(&mut o, signer);
        o
    }

    fn write_dot<S: Signer + ?Sized>(&self, o: &mut String, signer: &S) -> fmt::Result {
        let b = self.balances(super::Side::Holder);
        let label = format!(
            "Lightning channel ({} view, {:?}): capacity {} sat; us {} msat, peer {} msat; commitments ours #{} theirs #{}",
            if self.is_funder() { "funder" } else { "fundee" },
            self.channel_type(),
            self.capacity().to_sat(),
            b.holder.to_msat(),
            b.counterparty.to_msat(),
            self.holder_commitment_number(),
            self.counterparty_commitment_number(),
        );
        header(o, "lightning", &label)?;
        let Some(funding) = self.funding_outpoint() else {
            writeln!(o, "  F [label=\"funding (not yet known)\", style=dashed];")?;
            return writeln!(o, "}}");
        };
        writeln!(
            o,
            "  F [label=\"funding {}:{}\\n2-of-2\\n{} sat\", style=filled, fillcolor=\"#e8e8e8\"];",
            short(&funding.txid),
            funding.vout,
            self.capacity().to_sat()
        )?;
        if let Ok(ours) = self.holder_commitment(signer) {
            write_commitment(o, "L", "our commitment", ours.commitment(), ("us", "peer"))?;
        }
        if let Some(theirs) = self.counterparty_commitment() {
            write_commitment(o, "R", "the peer's commitment", &theirs, ("peer", "us"))?;
        }
        // The peer revoked every commitment before its current one, except the previous one while we
        // still wait for its revocation.
        let revoked = self.counterparty_commitment_number().saturating_sub(u64::from(self.is_awaiting_revoke()));
        if revoked > 0 {
            writeln!(
                o,
                "  X [label=\"{revoked} revoked commitment(s) of the peer\\nsecrets kept in the shachain store\\nany of them on chain → penalty takes all\", color=red, fontcolor=red];"
            )?;
            writeln!(o, "  F -> X [style=dashed, color=red];")?;
        }
        writeln!(o, "}}")
    }
}
