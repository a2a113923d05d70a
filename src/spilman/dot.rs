//! Pictures of a Spilman channel's transactions as Graphviz DOT text ([`Payer::to_dot`],
//! [`Payee::to_dot`]): the funding output, the newest payment with its outputs, the HTLC claims
//! and timeouts, and the refund with its lock.
//!
//! The channel part ([`write_channel`]) is shared with the duplex leaf, whose two channels are
//! Spilman channels.

use alloc::format;
use alloc::string::String;
use core::fmt::{self, Write};

use bitcoin::{Amount, Transaction, Txid};

use super::payment::{ChannelLock, PaymentState, PaymentTemplate};
use super::{Payee, Payer};

/// The first 12 hex digits of a txid, enough to tell transactions apart in a picture.
pub(crate) fn short(txid: &Txid) -> String {
    let mut s = String::new();
    let _ = write!(s, "{txid}");
    s.truncate(12);
    s
}

/// The opening lines of a picture.
pub(crate) fn header(o: &mut String, name: &str, label: &str) -> fmt::Result {
    writeln!(o, "digraph {name} {{")?;
    writeln!(o, "  rankdir=LR;")?;
    writeln!(o, "  node [shape=box, fontname=\"monospace\", fontsize=10];")?;
    writeln!(o, "  edge [fontname=\"monospace\", fontsize=9];")?;
    writeln!(o, "  label=\"{label}\";")
}

/// One Spilman channel to draw.
pub(crate) struct ChannelDot<'a> {
    /// Suffix of the node names (unique within the picture).
    pub id: &'a str,
    /// The node of the transaction whose output the channel spends.
    pub parent: &'a str,
    /// Names of the payer and the payee in labels.
    pub payer: &'a str,
    /// See `payer`.
    pub payee: &'a str,
    /// The channel.
    pub template: &'a PaymentTemplate,
    /// Number of the newest payment (0: none yet).
    pub number: u64,
    /// Its state.
    pub state: &'a PaymentState,
    /// The refund transaction, if it is known.
    pub refund: Option<Transaction>,
}

fn lock_label(lock: ChannelLock) -> String {
    match lock {
        ChannelLock::Cltv(h) => format!("S_cltv: refund from height {}", h.0),
        ChannelLock::Csv(d) => format!("S_csv: refund {d} blocks after confirmation"),
        ChannelLock::Multisig => String::from("2-of-2, pre-signed refund"),
    }
}

/// Draws the channel output, the newest payment (with its HTLC outputs and their two spending
/// paths) and the refund.
pub(crate) fn write_channel(o: &mut String, c: &ChannelDot<'_>) -> fmt::Result {
    let (id, t) = (c.id, c.template);
    let (payer, payee) = (c.payer, c.payee);
    writeln!(
        o,
        "  C{id} [label=\"{payer}→{payee} channel output\\n{}:{}\\n{}\\n{} sat\", shape=ellipse];",
        short(&t.outpoint.txid),
        t.outpoint.vout,
        lock_label(t.lock),
        t.capacity.to_sat()
    )?;
    writeln!(o, "  {} -> C{id};", c.parent)?;
    if c.number > 0 {
        match t.build(c.state) {
            Ok(built) => {
                let txid = built.tx.compute_txid();
                let change = t.check(c.state).unwrap_or(Amount::ZERO);
                writeln!(
                    o,
                    "  P{id} [label=\"payment #{} {}\\nto {payee}: {} sat (fee {} sat)\\nchange to {payer}: {} sat\\n{} HTLC output(s)\"];",
                    c.number,
                    short(&txid),
                    c.state.to_payee.to_sat().saturating_sub(t.fee.to_sat()),
                    t.fee.to_sat(),
                    change.to_sat(),
                    built.htlc_outputs.len(),
                )?;
                writeln!(o, "  C{id} -> P{id} [label=\"{payer}+{payee} sigs (held by {payee})\"];")?;
                for (h, (vout, _)) in c.state.htlcs.iter().zip(&built.htlc_outputs) {
                    let n = h.id;
                    writeln!(
                        o,
                        "  H{id}_{n} [label=\"HTLC #{n} output {vout}\\n{} sat, expiry {}\", shape=ellipse];",
                        h.amount.to_sat(),
                        h.expiry.0
                    )?;
                    writeln!(o, "  P{id} -> H{id}_{n};")?;
                    writeln!(o, "  S{id}_{n} [label=\"claim by {payee}\\npreimage\"];")?;
                    writeln!(o, "  T{id}_{n} [label=\"timeout to {payer}\\nnLockTime {}\"];", h.expiry.0)?;
                    writeln!(o, "  H{id}_{n} -> S{id}_{n} [label=\"{payee} sig + preimage\"];")?;
                    writeln!(
                        o,
                        "  H{id}_{n} -> T{id}_{n} [label=\"{payer} sig after {}\", style=dotted];",
                        h.expiry.0
                    )?;
                }
            }
            Err(e) => writeln!(o, "  P{id} [label=\"payment #{}: not buildable ({e:?})\", style=dashed];", c.number)?,
        }
    }
    match &c.refund {
        Some(r) => {
            let lock = match t.lock {
                ChannelLock::Csv(d) => format!("nSequence {d} blocks (BIP68)"),
                _ => format!("nLockTime {}", r.lock_time),
            };
            writeln!(
                o,
                "  R{id} [label=\"refund to {payer} {}\\n{lock}\\n{} sat\"];",
                short(&r.compute_txid()),
                r.output.iter().map(|x| x.value.to_sat()).sum::<u64>()
            )?;
            writeln!(o, "  C{id} -> R{id} [label=\"{payer} after the lock\", style=dotted];")
        }
        None => writeln!(o, "  R{id} [label=\"refund to {payer} (not built yet)\", style=dashed];"),
    }
}

fn picture(view: &str, funding: Option<&Transaction>, c: Option<ChannelDot<'_>>) -> String {
    let mut o = String::new();
    let _ = (|| -> fmt::Result {
        header(&mut o, "spilman", &format!("Spilman channel ({view} view)"))?;
        let Some(c) = c else {
            writeln!(o, "  F [label=\"funding (not yet known)\", style=dashed];")?;
            return writeln!(o, "}}");
        };
        let fid = funding.map_or(c.template.outpoint.txid, Transaction::compute_txid);
        writeln!(o, "  F [label=\"funding {}\", style=filled, fillcolor=\"#e8e8e8\"];", short(&fid))?;
        write_channel(&mut o, &c)?;
        writeln!(o, "}}")
    })();
    o
}

impl Payer {
    /// The channel's transactions as Graphviz DOT text (render with `dot -Tsvg`): funding, the
    /// newest payment the payer signed with its HTLC outputs and their claim/timeout paths, and
    /// the refund with its lock.
    pub fn to_dot(&self) -> String {
        let refund = self.template.as_ref().and_then(|t| t.refund_tx(self.config.refund_fee, self.offer.expiry));
        let c = self.template.as_ref().map(|template| ChannelDot {
            id: "",
            parent: "F",
            payer: "payer",
            payee: "payee",
            template,
            number: self.number,
            state: &self.state,
            refund,
        });
        picture("payer", self.funding_tx.as_ref(), c)
    }
}

impl Payee {
    /// The channel's transactions as Graphviz DOT text (render with `dot -Tsvg`): funding, the
    /// best payment the payee holds with its HTLC outputs and their claim/timeout paths, and the
    /// payer's refund with its lock.
    pub fn to_dot(&self) -> String {
        let empty = PaymentState::default();
        let (number, state) = self.best.as_ref().map_or((0, &empty), |b| (b.number, &b.state));
        let refund = self.template.as_ref().and_then(|t| t.refund_tx(self.refund_fee, self.config.expiry));
        let c = self.template.as_ref().map(|template| ChannelDot {
            id: "",
            parent: "F",
            payer: "payer",
            payee: "payee",
            template,
            number,
            state,
            refund,
        });
        picture("payee", self.funding_tx.as_ref(), c)
    }
}
