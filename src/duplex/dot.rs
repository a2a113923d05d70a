//! A picture of the channel's current transaction tree as Graphviz DOT text
//! ([`Channel::to_dot`]): funding, kickoff, the current branch with its locks, the leaf's two
//! channels, and for each the newest payment and the refund.

use alloc::string::String;
use core::fmt::Write;

use bitcoin::Amount;

use super::channel::Channel;
use super::tree;
use super::Role;
use crate::spilman::dot::{self as spilman_dot, short};
use crate::spilman::payment::PaymentState;

fn sat(a: Amount) -> u64 {
    a.to_sat()
}

impl Channel {
    /// The current transaction tree as Graphviz DOT text (`dot -Tsvg`): funding `F`, kickoff `K`,
    /// nodes `N_1 … N_d` with their counter digits and BIP-0068 locks, the leaf's two Spilman
    /// channels, and each channel's newest payment and refund with their locks. Edges carry the
    /// relative lock of the spending transaction.
    pub fn to_dot(&self) -> String {
        let mut out = String::new();
        let _ = self.write_dot(&mut out);
        out
    }

    fn write_dot(&self, o: &mut String) -> core::fmt::Result {
        let p = &self.terms.params;
        let b = self.balances();
        let label = alloc::format!(
            "duplex channel ({} view): d={} k={:?} Δ={} T_r={}; state {}/{}; balances {}={} {}={} sat\";",
            self.role.letter(),
            p.depth(),
            p.radix(),
            p.step(),
            p.refund_delay(),
            tree::index(p, &self.digits) + 1,
            p.states(),
            self.role.letter(),
            sat(b.holder),
            (!self.role).letter(),
            sat(b.counterparty),
        );
        spilman_dot::header(o, "duplex", &label)?;
        let Some(funding) = self.funding else {
            writeln!(o, "  F [label=\"F funding (not yet built)\"];")?;
            return writeln!(o, "}}");
        };
        writeln!(
            o,
            "  F [label=\"F funding\\n{}:{}\\n2-of-2 A,B\\n{} sat\", style=filled, fillcolor=\"#e8e8e8\"];",
            short(&funding.txid),
            funding.vout,
            sat(self.terms.capacity)
        )?;
        let Some(path) = self.current_branch() else { return writeln!(o, "}}") };
        let d = p.depth();
        let mut prev = String::from("F");
        for (level, tx) in path.iter().enumerate() {
            let name = if level == 0 { String::from("K") } else { alloc::format!("N{level}") };
            let txid = tx.compute_txid();
            let seq = tx.input.first().map_or(0, |i| i.sequence.0);
            let confirmed = self.chain.tree.get(level).map(|t| t.1 .0);
            let conf = confirmed.map_or(String::new(), |h| alloc::format!("\\nconfirmed at {h}"));
            if level == 0 {
                writeln!(
                    o,
                    "  K [label=\"K kickoff {}\\nnSequence 0x{seq:08x} (no lock)\\nsigned once\\nout0 2-of-2 {} sat{conf}\"];",
                    short(&txid),
                    tx.output.first().map_or(0, |x| sat(x.value)),
                )?;
                writeln!(o, "  F -> K [label=\"spend F:{}\"];", funding.vout)?;
            } else {
                let v = self.digits.get(level - 1).copied().unwrap_or(0);
                let k = p.radix().get(level - 1).copied().unwrap_or(0);
                let lock = p.lock(level, u32::from(v)).unwrap_or(0);
                let kind = if level == d { "leaf" } else { "node" };
                let out = if level == d {
                    String::from("2 Spilman channels")
                } else {
                    alloc::format!("out0 2-of-2 {} sat", tx.output.first().map_or(0, |x| sat(x.value)))
                };
                writeln!(
                    o,
                    "  {name} [label=\"N_{level} {kind} {}\\ndigit {v} of {k}\\nnSequence {lock} blocks (BIP68)\\n{out}{conf}\"];",
                    short(&txid),
                )?;
                writeln!(o, "  {prev} -> {name} [label=\"after {lock} blocks\"];")?;
            }
            prev = name;
        }
        // The leaf's channels, payments and refunds.
        for payer in [Role::Initiator, Role::Acceptor] {
            let (pl, ql) = (payer.letter(), (!payer).letter());
            let value = self.values[payer.index()];
            let cname = alloc::format!("C{pl}{ql}");
            if value == Amount::ZERO {
                writeln!(o, "  {cname} [label=\"{pl}→{ql} channel: empty (no output)\", style=dashed];")?;
                writeln!(o, "  {prev} -> {cname} [style=dashed];")?;
                continue;
            }
            let ch = &self.channels[payer.index()];
            let Some(template) = self.template(payer) else { continue };
            let refund = template.refund_tx(self.terms.refund_fee, crate::core::units::BlockHeight(0));
            let id = alloc::format!("{pl}{ql}");
            spilman_dot::write_channel(
                o,
                &spilman_dot::ChannelDot {
                    id: &id,
                    parent: &prev,
                    payer: pl,
                    payee: ql,
                    template: &template,
                    number: if ch.state == PaymentState::default() { 0 } else { ch.number },
                    state: &ch.state,
                    refund,
                },
            )?;
        }
        writeln!(o, "}}")
    }
}
