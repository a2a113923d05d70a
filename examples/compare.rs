//! The three channel constructions side by side on one workload:
//! `cargo run --release --example compare [-- PAYMENTS [SEED]]` (default 10,000 payments, seed 1).
//!
//! The same seeded list of payments (random sizes; random direction where the channel type
//! allows both) goes through a Spilman channel, a Decker–Wattenhofer duplex channel and a
//! Lightning channel of the same capacity, between two in-memory peers speaking the wire
//! encodings. When a channel cannot carry a payment, it does what its construction needs to go
//! on: Spilman closes and opens a new channel; duplex resets, or closes and opens a new channel
//! once no reset is left; Lightning turns the direction around (it never needs anything).
//! Afterwards each last channel is closed cooperatively, and — on a copy — unilaterally on a
//! simulated chain that enforces lock times and checks every script with Bitcoin Core's
//! interpreter. The table shows per payment: CPU time (both peers, wire encoding included),
//! messages and bytes on the wire, bytes handed over for persistence; then the on-chain
//! footprint of each close, the time to get funds back, and what the channel needs to keep going.

pub mod common;

use std::time::{Duration, Instant};

use bitcoin::{Amount, Transaction};
use common::chain::Chain;
use common::fees::{self, FeeClose};
use common::{vsize, DuplexPair, Error, LnPair, Meter, Rng, SpilmanPair};
use paychan::core::commitment::ChannelType;
use paychan::core::MilliSats;
use paychan::driving::{ChainEvent, ChainTip};
use paychan::duplex::{self, Role};

/// Channel capacity of every type.
pub const CAPACITY: Amount = Amount::from_sat(1_000_000);
/// Height at which the workload starts.
const START: u32 = 800_000;
/// Blocks the Spilman payer's refund is locked for (one week).
const SPILMAN_LIFETIME: u32 = 1_008;
/// Blocks to get a transaction confirmed, for the delay formulas.
const CONFIRM: u32 = 6;
/// The flat feerates (sat/vB) at which each unilateral close is paid for again, with fee bumps:
/// a quiet mempool and a fee spike.
pub const FEE_RATES: [u64; 2] = [2, 200];

/// One channel type's figures.
pub struct Report {
    pub name: &'static str,
    pub directions: &'static str,
    pub payments: usize,
    pub volume: Amount,
    pub cpu: Duration,
    pub meter: Meter,
    /// The larger of the two peers' final snapshots.
    pub live_state_bytes: usize,
    /// Channels opened to carry the workload.
    pub channels: usize,
    /// Duplex resets made.
    pub resets: u64,
    /// What the last channel needs to keep going.
    pub keep_going: String,
    /// Closes of channels retired during the workload (each confirmed on its own chain).
    pub retired_closes: Vec<Transaction>,
    /// The cooperative close of the last channel.
    pub coop_close: Vec<Transaction>,
    /// Every transaction of the last channel's unilateral close, in confirmation order.
    pub unilateral_close: Vec<Transaction>,
    /// Blocks from the unilateral close's start until its last transaction confirmed.
    pub unilateral_blocks: u32,
    /// Worst case blocks until the party waiting longest has its funds back.
    pub worst_delay: u32,
    pub worst_delay_note: &'static str,
    /// The funding transaction of the last channel, and the height it confirmed at.
    pub funding: Transaction,
    pub funding_height: u32,
    /// What each side (A, B) paid in the last channel: A is the Spilman payer, the duplex
    /// initiator and the Lightning funder.
    pub paid: [Amount; 2],
    /// The same unilateral close at each of [`FEE_RATES`], its requests bumped by the crate's
    /// `Bumper` on a chain mining only packages at that feerate. A closes in all three.
    pub fee_closes: Vec<FeeClose>,
}

fn vbytes(txs: &[Transaction]) -> u64 {
    txs.iter().map(vsize).sum()
}

/// The on-chain cell of the table: transactions and vbytes, from the transactions themselves.
pub fn onchain_cell(txs: &[Transaction]) -> String {
    format!("{} tx, {} vB", txs.len(), vbytes(txs))
}

/// The seeded payments: `(amount, from_a)`.
pub fn workload(payments: usize, seed: u64) -> Vec<(Amount, bool)> {
    let mut rng = Rng::new(seed);
    (0..payments).map(|_| (Amount::from_sat(rng.range(100, 10_000)), rng.next_u64() % 2 == 0)).collect()
}

fn confirm_alone(chain: &mut Chain, tx: &Transaction) -> Result<(), Error> {
    chain.mine(tx).map_err(|e| format!("chain refused {}: {e:?}", tx.compute_txid()))?;
    Ok(())
}

// ------------------------------------------------------------------------------------- Spilman

fn spilman(work: &[(Amount, bool)]) -> Result<Report, Error> {
    let mut meter = Meter::default();
    let mut retired = Vec::new();
    let mut channels = 1;
    let mut pair = SpilmanPair::open(CAPACITY, START, SPILMAN_LIFETIME, 0)?;
    let mut paid = Amount::ZERO;
    let started = Instant::now();
    for (amount, _) in work {
        paid += *amount;
        if !pair.pay(*amount)? {
            paid = *amount;
            // The payer's side is spent: the payee closes, and a new channel opens.
            let fx = pair.payee.close(&pair.payee_signer)?;
            let close = fx.broadcast.first().ok_or("the payee closes")?.clone();
            let mut chain = Chain::at(START);
            chain.credit(&pair.funding);
            confirm_alone(&mut chain, &close)?;
            retired.push(close);
            add(&mut meter, &pair.meter);
            pair = SpilmanPair::open(CAPACITY, START, SPILMAN_LIFETIME, channels as u32)?;
            channels += 1;
            if !pair.pay(*amount)? {
                return Err("a fresh channel cannot carry one payment".into());
            }
        }
    }
    let cpu = started.elapsed();
    add(&mut meter, &pair.meter);
    let live = pair.payer.snapshot().len().max(pair.payee.snapshot().len());

    // Cooperative close: the payee publishes its best payment.
    let mut coop = pair.payee.clone();
    let close = coop.close(&pair.payee_signer)?.broadcast.first().ok_or("no close")?.clone();
    let mut chain = Chain::at(START);
    chain.credit(&pair.funding);
    confirm_alone(&mut chain, &close)?;
    // Unilateral close: the payee vanished; the payer refunds at expiry.
    let refund = pair.payer.refund_tx(&pair.payer_signer)?;
    let mut chain = Chain::at(START);
    chain.credit(&pair.funding);
    let expiry = pair.payer.refund_height().0;
    if chain.check(&refund).is_ok() {
        return Err("the refund is valid before expiry".into());
    }
    chain.advance(expiry - START);
    confirm_alone(&mut chain, &refund)?;
    // The same refund, bumped: the payer's channel broadcasts it at expiry with its request.
    let mut fee_closes = Vec::new();
    for rate in FEE_RATES {
        let mut payer = pair.payer.clone();
        let mut fee_chain = fees::market_chain(START, rate);
        fee_chain.credit(&pair.funding);
        fee_chain.advance(expiry - START);
        let ps = &pair.payer_signer;
        let first = vec![fees::step(0, payer.handle_chain(ChainEvent::Tip(ChainTip::at(expiry)), ps))];
        let signers = [ps, &pair.payee_signer];
        let close = fees::settle_bumped(fee_chain, rate, signers, first, chain.height, 50, |event| {
            vec![fees::step(0, payer.handle_chain(event, ps))]
        })?;
        fee_closes.push(close);
    }
    Ok(Report {
        name: "Spilman",
        directions: "payer → payee",
        payments: work.len(),
        volume: work.iter().map(|w| w.0).sum(),
        cpu,
        meter,
        live_state_bytes: live,
        channels,
        resets: 0,
        keep_going: format!("a new channel once the payer's side is spent ({channels} opened)"),
        retired_closes: retired,
        coop_close: vec![close],
        unilateral_close: vec![refund],
        unilateral_blocks: chain.height - START,
        worst_delay: SPILMAN_LIFETIME,
        worst_delay_note: "payer, payee gone: refund at expiry",
        funding: pair.funding.clone(),
        funding_height: START,
        paid: [paid, Amount::ZERO],
        fee_closes,
    })
}

fn add(total: &mut Meter, m: &Meter) {
    total.messages += m.messages;
    total.wire_bytes += m.wire_bytes;
    total.persisted_bytes += m.persisted_bytes;
}

// -------------------------------------------------------------------------------------- duplex

/// The duplex terms of the comparison: a 4-level tree of radix 4 (256 states, 255 resets),
/// Δ = 144 blocks (a day to react to a stale branch, like Lightning's default `to_self_delay`;
/// safe needs only Δ > S + R = 12), T_r = 144 blocks. The price is the worst-case delay:
/// `5S + 4·3·Δ + T_r + S` = 1,908 blocks for the payer side.
pub fn duplex_terms() -> Result<duplex::Terms, Error> {
    Ok(duplex::Terms {
        params: duplex::Params::uniform(4, 4, 144, 144)?,
        capacity: CAPACITY,
        push: CAPACITY / 2,
        payment_fee: Amount::from_sat(300),
        refund_fee: Amount::from_sat(300),
        claim_fee: Amount::from_sat(300),
        dust_limit: Amount::from_sat(546),
        confirm_blocks: CONFIRM as u16,
        reorg_blocks: 6,
        htlc_grace_blocks: 6,
        max_htlc_expiry_delta: 2_016,
        reset_warning: 5,
        funding_depth: 7,
    })
}

fn duplex(work: &[(Amount, bool)]) -> Result<Report, Error> {
    let terms = duplex_terms()?;
    let mut meter = Meter::default();
    let mut retired = Vec::new();
    let mut channels = 1;
    let mut resets = 0;
    let mut pair = DuplexPair::open(terms.clone(), START, 0)?;
    let mut paid = [Amount::ZERO; 2];
    let started = Instant::now();
    for (amount, from_a) in work {
        let mut done = false;
        for from in [*from_a, !*from_a] {
            let role = if from { Role::Initiator } else { Role::Acceptor };
            let before = pair.ch[0].resets_left();
            match pair.pay(role, *amount)? {
                Some(true) => {
                    paid[role.index()] += *amount;
                    resets += before - pair.ch[0].resets_left();
                    done = true;
                    break;
                }
                Some(false) => {
                    // No reset left: close cooperatively and open a new channel.
                    let fx = pair.ch[0].close(&pair.signers[0])?;
                    let close = pair.deliver(fx, Role::Initiator)?.into_iter().next().ok_or("no close")?;
                    let mut chain = Chain::at(START);
                    chain.credit(&pair.funding);
                    confirm_alone(&mut chain, &close)?;
                    retired.push(close);
                    add(&mut meter, &pair.meter);
                    pair = DuplexPair::open(terms.clone(), START, channels as u32)?;
                    channels += 1;
                    paid = [Amount::ZERO; 2];
                    if pair.pay(role, *amount)? == Some(true) {
                        paid[role.index()] += *amount;
                        done = true;
                        break;
                    }
                }
                None => {} // this side cannot afford it: the other side pays
            }
        }
        if !done {
            return Err(format!("neither side can pay {amount}").into());
        }
    }
    let cpu = started.elapsed();
    add(&mut meter, &pair.meter);
    let live = pair.ch[0].snapshot().len().max(pair.ch[1].snapshot().len());
    let resets_left = pair.ch[0].resets_left();

    // Unilateral close on copies: A publishes the tree; each payee closes its leaf channel.
    let mut ch = pair.ch.clone();
    let mut chain = Chain::at(START);
    chain.credit(&pair.funding);
    let first = ch[0].force_close(&pair.signers[0]).broadcast;
    let signers = &pair.signers;
    let (unilateral, last) = common::settle_on_chain(&mut chain, first, 2_000, |event| {
        let mut out = Vec::new();
        for (c, s) in ch.iter_mut().zip(signers) {
            out.extend(c.handle_chain(event, s).broadcast);
        }
        out
    })?;
    // The same close, bumped: zero-fee tree transactions through their pay-to-anchor output.
    let mut fee_closes = Vec::new();
    for rate in FEE_RATES {
        let mut ch = pair.ch.clone();
        let mut fee_chain = fees::market_chain(START, rate);
        fee_chain.credit(&pair.funding);
        let first = vec![fees::step(0, ch[0].force_close(&signers[0]))];
        let close = fees::settle_bumped(fee_chain, rate, [&signers[0], &signers[1]], first, last, 2_000, |event| {
            ch.iter_mut().zip(signers).enumerate().map(|(i, (c, s))| fees::step(i, c.handle_chain(event, s))).collect()
        })?;
        fee_closes.push(close);
    }
    // Cooperative close.
    let fx = pair.ch[0].close(&pair.signers[0])?;
    let close = pair.deliver(fx, Role::Initiator)?.into_iter().next().ok_or("no close")?;
    let mut chain = Chain::at(START);
    chain.credit(&pair.funding);
    confirm_alone(&mut chain, &close)?;
    let p = &terms.params;
    Ok(Report {
        name: "duplex",
        directions: "both",
        payments: work.len(),
        volume: work.iter().map(|w| w.0).sum(),
        cpu,
        meter,
        live_state_bytes: live,
        channels,
        resets,
        keep_going: format!("resets: {resets} made, {resets_left} left in the last channel ({channels} opened)"),
        retired_closes: retired,
        coop_close: vec![close],
        unilateral_close: unilateral,
        unilateral_blocks: last - START,
        worst_delay: p.payee_funds_delay(CONFIRM).max(p.payer_funds_delay(CONFIRM)),
        worst_delay_note: "all tree locks at maximum, then T_r",
        funding: pair.funding.clone(),
        funding_height: START,
        paid,
        fee_closes,
    })
}

// ----------------------------------------------------------------------------------- Lightning

fn lightning(work: &[(Amount, bool)]) -> Result<Report, Error> {
    let ct = ChannelType::AnchorsZeroFeeHtlc;
    let mut pair = LnPair::open(ct, CAPACITY, MilliSats::from_msat(CAPACITY.to_sat() * 500), START)?;
    let mut paid = [Amount::ZERO; 2];
    let started = Instant::now();
    for (amount, from_a) in work {
        let msat = MilliSats::from_msat(amount.to_sat() * 1_000);
        if pair.pay(*from_a, msat)? {
            paid[usize::from(!*from_a)] += *amount;
        } else if pair.pay(!*from_a, msat)? {
            paid[usize::from(*from_a)] += *amount;
        } else {
            return Err(format!("neither side can pay {amount}").into());
        }
    }
    let cpu = started.elapsed();
    let live = pair.a.snapshot().len().max(pair.b.snapshot().len());
    let meter = pair.meter;

    // Unilateral close on copies: A broadcasts its commitment; both sides claim what is theirs.
    let (mut a, mut b) = (pair.a.clone(), pair.b.clone());
    let mut chain = Chain::at(pair.tip.height.0);
    chain.credit(&pair.funding);
    let start = chain.height;
    let first = a.force_close(&pair.sa)?.broadcast;
    let (sa, sb) = (&pair.sa, &pair.sb);
    let (unilateral, last) = common::settle_on_chain(&mut chain, first, 400, |event| {
        let mut out = a.handle_chain(event, sa).broadcast;
        out.extend(b.handle_chain(event, sb).broadcast);
        out
    })?;
    // The same close, bumped: the commitment through A's anchor, the sweeps by replacement.
    let mut fee_closes = Vec::new();
    for rate in FEE_RATES {
        let (mut a, mut b) = (pair.a.clone(), pair.b.clone());
        let mut fee_chain = fees::market_chain(start, rate);
        fee_chain.credit(&pair.funding);
        let first = vec![fees::step(0, a.force_close(sa)?)];
        let close = fees::settle_bumped(fee_chain, rate, [sa, sb], first, last, 400, |event| {
            vec![fees::step(0, a.handle_chain(event, sa)), fees::step(1, b.handle_chain(event, sb))]
        })?;
        fee_closes.push(close);
    }
    // Cooperative close.
    let fx = pair.a.shutdown(fees::payout(0xa1), (Amount::from_sat(200), Amount::from_sat(2_000)), &pair.sa)?;
    pair.deliver(fx, true)?;
    let fx = pair.b.shutdown(fees::payout(0xb1), (Amount::from_sat(100), Amount::from_sat(2_000)), &pair.sb)?;
    pair.deliver(fx, false)?;
    let close = pair.a.closing_transaction().ok_or("no closing transaction")?.clone();
    let mut chain = Chain::at(pair.tip.height.0);
    chain.credit(&pair.funding);
    confirm_alone(&mut chain, &close)?;
    let delay = u32::from(lightning::ChannelConfig::default_for([0; 32], ct).to_self_delay);
    Ok(Report {
        name: "Lightning",
        directions: "both",
        payments: work.len(),
        volume: work.iter().map(|w| w.0).sum(),
        cpu,
        meter,
        live_state_bytes: live,
        channels: 1,
        resets: 0,
        keep_going: String::from("nothing (1 channel, no resets)"),
        retired_closes: Vec::new(),
        coop_close: vec![close],
        unilateral_close: unilateral,
        unilateral_blocks: last - start,
        worst_delay: delay + CONFIRM,
        worst_delay_note: "force-closer: to_self_delay after confirmation",
        funding: pair.funding.clone(),
        funding_height: start,
        paid,
        fee_closes,
    })
}

use paychan::lightning;

/// Runs the workload through the three channel types.
pub fn run(payments: usize, seed: u64) -> Result<Vec<Report>, Error> {
    let work = workload(payments, seed);
    Ok(vec![spilman(&work)?, duplex(&work)?, lightning(&work)?])
}

/// How one row of the table shows a report.
type Cell = Box<dyn Fn(&Report) -> String>;

/// The label of the fee row at `sat_per_vb`.
pub fn fee_row_label(sat_per_vb: u64) -> String {
    format!("unilateral close fees at {sat_per_vb} sat/vB")
}

/// A fee cell: what A (the closing party) paid, bumps included; what B paid for its own claims;
/// a `*` when a transaction of the close had no bump request (see [`fee_notes`]).
pub fn fee_cell(c: &FeeClose) -> String {
    let mark = if c.unbumpable().next().is_some() { "*" } else { "" };
    format!("A {} sat{mark} (B {} sat)", c.fees[0].to_sat(), c.fees[1].to_sat())
}

/// The footnotes of the fee rows: how they were made, and every transaction that could not be
/// bumped (its pre-signed fee is what it paid).
pub fn fee_notes(reports: &[Report]) -> String {
    let mut out = String::from(
        "Fees: the unilateral close above, again on a chain mining only packages paying the feerate \
         (Bitcoin Core 29's relay policy), every fee-bump request the channels emit handed to the \
         crate's Bumper at that flat estimate; inputs − outputs of every confirmed transaction, \
         pre-signed fees included, by the party that broadcast it (A closes; B's are its own claims).\n",
    );
    for r in reports {
        for c in &r.fee_closes {
            let fixed: Vec<String> = c
                .unbumpable()
                .map(|t| format!("{} ({} sat, {} vB)", t.tx.compute_txid(), t.fee.to_sat(), vsize(&t.tx)))
                .collect();
            let party = |p: usize| if p == 0 { "A" } else { "B" };
            for (p, id) in &c.capped {
                let how = match c.lost.iter().find(|(q, r, _)| q == p && r == id) {
                    Some((_, _, by)) => format!("lost to {}'s {by}", party(1 - p)),
                    None => String::from("confirmed"),
                };
                out.push_str(&format!(
                    "  {} at {} sat/vB: {}'s bump of {id} capped at the value it protects ({how})\n",
                    r.name,
                    c.sat_per_vb,
                    party(*p)
                ));
            }
            for (p, id, by) in c.lost.iter().filter(|(p, id, _)| !c.capped.contains(&(*p, *id))) {
                out.push_str(&format!(
                    "  {} at {} sat/vB: {}'s {id} lost to {}'s {by}\n",
                    r.name,
                    c.sat_per_vb,
                    party(*p),
                    party(1 - p)
                ));
            }
            if !fixed.is_empty() {
                out.push_str(&format!(
                    "* {} at {} sat/vB: no bump request, pre-signed fee counted: {}\n",
                    r.name,
                    c.sat_per_vb,
                    fixed.join(", ")
                ));
            }
        }
    }
    out
}

/// The comparison table, one column per channel type.
pub fn table(reports: &[Report]) -> String {
    let per = |r: &Report, x: usize| x as f64 / r.payments.max(1) as f64;
    let mut rows: Vec<(&str, Cell)> = vec![
        ("payments (direction)", Box::new(|r: &Report| format!("{} ({})", r.payments, r.directions))),
        ("volume", Box::new(|r: &Report| format!("{} sat", r.volume.to_sat()))),
        (
            "CPU per payment",
            Box::new(|r: &Report| format!("{:.1} µs", r.cpu.as_secs_f64() * 1e6 / r.payments.max(1) as f64)),
        ),
        ("messages per payment", Box::new(move |r: &Report| format!("{:.2}", per(r, r.meter.messages)))),
        ("wire bytes per payment", Box::new(move |r: &Report| format!("{:.0}", per(r, r.meter.wire_bytes)))),
        ("persisted bytes per payment", Box::new(move |r: &Report| format!("{:.0}", per(r, r.meter.persisted_bytes)))),
        ("live state (largest snapshot)", Box::new(|r: &Report| format!("{} B", r.live_state_bytes))),
        ("channels opened", Box::new(|r: &Report| r.channels.to_string())),
        ("closes of retired channels", Box::new(|r: &Report| onchain_cell(&r.retired_closes))),
        ("cooperative close", Box::new(|r: &Report| onchain_cell(&r.coop_close))),
        ("unilateral close", Box::new(|r: &Report| onchain_cell(&r.unilateral_close))),
        ("  … blocks until settled", Box::new(|r: &Report| r.unilateral_blocks.to_string())),
    ];
    let labels: Vec<String> = FEE_RATES.iter().map(|rate| fee_row_label(*rate)).collect();
    for (k, label) in labels.iter().enumerate() {
        rows.push((label, Box::new(move |r: &Report| r.fee_closes.get(k).map_or_else(String::new, fee_cell))));
    }
    rows.extend::<[(&str, Cell); 3]>([
        ("worst delay to get funds back", Box::new(|r: &Report| format!("{} blocks", r.worst_delay))),
        ("  … case", Box::new(|r: &Report| r.worst_delay_note.to_string())),
        ("to keep going", Box::new(|r: &Report| r.keep_going.clone())),
    ]);
    let widths: Vec<usize> = reports
        .iter()
        .map(|r| rows.iter().map(|(_, f)| f(r).chars().count()).max().unwrap_or(0).max(r.name.len()))
        .collect();
    let label = rows.iter().map(|(l, _)| l.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        out.push_str(&format!("| {:<label$} |", cells[0]));
        for (c, w) in cells[1..].iter().zip(&widths) {
            out.push_str(&format!(" {:<w$} |", c, w = *w));
        }
        out.push('\n');
    };
    let mut head = vec![String::new()];
    head.extend(reports.iter().map(|r| r.name.to_string()));
    line(head, &mut out);
    let mut sep = String::from("|");
    sep.push_str(&"-".repeat(label + 2));
    sep.push('|');
    for w in &widths {
        sep.push_str(&"-".repeat(w + 2));
        sep.push('|');
    }
    out.push_str(&sep);
    out.push('\n');
    for (name, f) in &rows {
        let mut cells = vec![name.to_string()];
        cells.extend(reports.iter().map(f));
        line(cells, &mut out);
    }
    out
}

#[allow(dead_code)] // the test suite includes this file for `run` and `table`
fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let payments = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10_000usize);
    let seed = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1u64);
    if cfg!(debug_assertions) && std::env::args().count() == 1 {
        // A debug build (as CI runs every example) takes a smaller workload.
        return report(500, seed);
    }
    report(payments, seed)
}

fn report(payments: usize, seed: u64) -> Result<(), Error> {
    println!(
        "paychan compare: {payments} payments of 100..=10,000 sat, seed {seed}, capacity {} sat each\n",
        CAPACITY.to_sat()
    );
    let reports = run(payments, seed)?;
    print!("{}", table(&reports));
    print!("\n{}", fee_notes(&reports));
    println!(
        "\nCPU: both peers, signatures, verification, wire encoding and snapshots{}.",
        if cfg!(debug_assertions) { " (debug build: run with --release for meaningful times)" } else { "" }
    );
    println!("Lightning pays with HTLCs (add, commit/revoke both ways, fulfil, commit/revoke both ways);");
    println!("Spilman and duplex with plain payments. Every close was confirmed on a simulated chain");
    println!("that enforces lock times and checks each script with Bitcoin Core's interpreter.");
    Ok(())
}
