//! `examples/compare.rs` with a small workload: its table's on-chain figures are those of the
//! transactions actually built, every one of which confirms on a fresh simulated chain (lock
//! times enforced, scripts checked by Bitcoin Core's interpreter) within the blocks the table
//! states; and the cooperative closes pay each side what the workload left it, to the satoshi.

#[path = "../examples/compare.rs"]
#[allow(dead_code)]
mod compare;

use std::collections::HashMap;

use bitcoin::{Amount, Transaction, Txid};
use compare::common::chain::Chain;
use compare::common::fees::{self, FeeClose};
use compare::common::vsize;

/// Replays `txs` on a fresh chain holding the funding transaction; returns the blocks it took.
fn replay(funding: &Transaction, start: u32, txs: &[Transaction], max_blocks: u32) -> u32 {
    let mut chain = Chain::at(start);
    chain.credit(funding);
    let mut left: Vec<Transaction> = txs.to_vec();
    let mut last = start;
    while !left.is_empty() {
        assert!(
            chain.height - start <= max_blocks,
            "{} transaction(s) not confirmed in {max_blocks} blocks",
            left.len()
        );
        for tx in &left {
            let _ = chain.submit(tx);
        }
        let block = chain.mine_block();
        if !block.is_empty() {
            last = chain.height;
        }
        left.retain(|t| !block.contains(t));
    }
    last - start
}

fn output_to(tx: &Transaction, script: &bitcoin::ScriptBuf) -> Amount {
    tx.output.iter().filter(|o| o.script_pubkey == *script).map(|o| o.value).sum()
}

/// Inputs − outputs of `tx`, its inputs among `known`.
fn fee_of(known: &HashMap<Txid, Transaction>, tx: &Transaction) -> Amount {
    let inputs: Amount =
        tx.input.iter().map(|i| known[&i.previous_output.txid].output[i.previous_output.vout as usize].value).sum();
    inputs - tx.output.iter().map(|o| o.value).sum::<Amount>()
}

/// A bumped close of report `name`: its fees are those of the transactions, every transaction
/// confirmed in a package paying the target feerate, and the whole close replays on a fresh
/// chain mining only such packages.
fn check_fee_close(name: &str, funding: &Transaction, plain: &[Transaction], c: &FeeClose) {
    let rate = c.sat_per_vb;
    let mut known: HashMap<Txid, Transaction> = HashMap::new();
    for tx in std::iter::once(funding).chain(&c.credits) {
        known.insert(tx.compute_txid(), tx.clone());
    }
    for t in &c.confirmed {
        known.insert(t.tx.compute_txid(), t.tx.clone());
    }
    // Fees = inputs − outputs, summed by the party that broadcast each transaction.
    let mut by_party = [Amount::ZERO; 2];
    for t in &c.confirmed {
        let fee = fee_of(&known, &t.tx);
        assert_eq!(fee, t.fee, "{name} at {rate}: fee of {}", t.tx.compute_txid());
        by_party[t.party] += fee;
    }
    assert_eq!(by_party, c.fees, "{name} at {rate}: fees by party");
    // The same close: it starts with the same transaction spending the funding output
    let funding_txid = funding.compute_txid();
    let spends_funding = |tx: &Transaction| tx.input.iter().any(|i| i.previous_output.txid == funding_txid);
    let first = c.confirmed.iter().find(|t| spends_funding(&t.tx)).expect("the close spends the funding");
    // (or the bumper's replacement of it, spending the same outputs).
    let plain_first = plain.iter().find(|t| spends_funding(t)).expect("the plain close spends the funding");
    let outpoints = |tx: &Transaction| tx.input.iter().map(|i| i.previous_output).collect::<Vec<_>>();
    assert!(
        first.tx == *plain_first || (first.by_bumper && outpoints(&first.tx) == outpoints(plain_first)),
        "{name} at {rate}: another close"
    );
    assert_eq!(first.party, 0, "{name}: A closes");
    // Every transaction is in a package (with its parents confirmed in the same block, or with
    // a child confirmed with it) paying the feerate on its virtual size.
    let package_ok = |t: &fees::Confirmed| {
        let mut pkg: Vec<&Transaction> = vec![&t.tx];
        pkg.extend(
            c.confirmed
                .iter()
                .filter(|p| {
                    p.height == t.height && t.tx.input.iter().any(|i| i.previous_output.txid == p.tx.compute_txid())
                })
                .map(|p| &p.tx),
        );
        let fee: Amount = pkg.iter().map(|tx| fee_of(&known, tx)).sum();
        let size: u64 = pkg.iter().map(|tx| vsize(tx)).sum();
        fee.to_sat() >= rate * size
    };
    for t in &c.confirmed {
        let txid = t.tx.compute_txid();
        let child_pays = c.confirmed.iter().any(|ch| {
            ch.height == t.height && ch.tx.input.iter().any(|i| i.previous_output.txid == txid) && package_ok(ch)
        });
        assert!(package_ok(t) || child_pays, "{name} at {rate} sat/vB: {txid} confirmed below the feerate");
    }
    if rate >= 100 {
        assert!(c.confirmed.iter().any(|t| t.by_bumper), "{name} at {rate}: nothing was bumped");
    }
    // Replay on a fresh chain whose mempool and blocks take only packages paying the feerate.
    let mut chain = fees::market_chain(c.start, rate);
    chain.credit(funding);
    for tx in &c.credits {
        chain.credit(tx);
    }
    let mut heights: Vec<u32> = c.confirmed.iter().map(|t| t.height).collect();
    heights.dedup();
    for h in heights {
        chain.advance(h - 1 - chain.height);
        let group: Vec<&Transaction> = c.confirmed.iter().filter(|t| t.height == h).map(|t| &t.tx).collect();
        for tx in &group {
            let txid = tx.compute_txid();
            match group.iter().find(|ch| ch.input.iter().any(|i| i.previous_output.txid == txid)) {
                Some(child) => fees::submit_at(&mut chain, &[(*tx).clone(), (*child).clone()], rate),
                None => fees::submit_at(&mut chain, &[(*tx).clone()], rate),
            }
        }
        let mut block: Vec<Txid> = chain.mine_block().iter().map(Transaction::compute_txid).collect();
        let mut want: Vec<Txid> = group.iter().map(|t| t.compute_txid()).collect();
        block.sort();
        want.sort();
        assert_eq!(block, want, "{name} at {rate} sat/vB: block {h} replayed");
    }
}

#[test]
fn compare_table_matches_the_transactions() {
    let reports = compare::run(150, 7).expect("the comparison runs");
    let table = compare::table(&reports);
    assert_eq!(reports.iter().map(|r| r.name).collect::<Vec<_>>(), ["Spilman", "duplex", "Lightning"]);
    let capacity = compare::CAPACITY;
    for r in &reports {
        let row = |label: &str| {
            table
                .lines()
                .find(|l| l.starts_with(&format!("| {label}")))
                .unwrap_or_else(|| panic!("row {label}"))
                .to_string()
        };
        let col = reports.iter().position(|x| x.name == r.name).unwrap() + 2;
        let cell = |label: &str| row(label).split('|').nth(col).unwrap().trim().to_string();
        // The on-chain figures are those of the transactions.
        for (label, txs) in [
            ("cooperative close", &r.coop_close),
            ("unilateral close", &r.unilateral_close),
            ("closes of retired channels", &r.retired_closes),
        ] {
            let expected = format!("{} tx, {} vB", txs.len(), txs.iter().map(vsize).sum::<u64>());
            assert_eq!(cell(label), expected, "{} {label}", r.name);
        }
        assert_eq!(cell("channels opened"), r.channels.to_string());
        // The fee rows: one per feerate, each that of a bumped close checked against its
        // transactions.
        assert_eq!(r.fee_closes.len(), compare::FEE_RATES.len());
        for (c, rate) in r.fee_closes.iter().zip(compare::FEE_RATES) {
            assert_eq!(c.sat_per_vb, rate);
            let label = compare::fee_row_label(rate);
            assert_eq!(cell(&label), compare::fee_cell(c), "{} {label}", r.name);
            assert!(cell(&label).starts_with(&format!("A {} sat", c.fees[0].to_sat())));
            check_fee_close(r.name, &r.funding, &r.unilateral_close, c);
            // A transaction no request covered is named in the notes.
            let notes = compare::fee_notes(&reports);
            for t in c.unbumpable() {
                assert!(notes.contains(&t.tx.compute_txid().to_string()), "{}: unbumpable not noted", r.name);
            }
        }
        assert!(r.fee_closes[1].fees[0] > r.fee_closes[0].fees[0], "{}: a spike costs A more", r.name);
        // Every close confirms from the funding output; the unilateral one within the stated blocks.
        let start = r.funding_height;
        assert_eq!(replay(&r.funding, start, &r.coop_close, 1), 1);
        let took = replay(&r.funding, start, &r.unilateral_close, r.unilateral_blocks + 1);
        assert!(took <= r.unilateral_blocks, "{}: {took} > {} blocks", r.name, r.unilateral_blocks);
        assert!(r.unilateral_blocks <= r.worst_delay + 1, "{}: settled later than the worst case", r.name);
        let coop = &r.coop_close[0];
        assert_eq!(coop.input[0].previous_output.txid, r.funding.compute_txid());
        let fee = capacity - coop.output.iter().map(|o| o.value).sum::<Amount>();
        assert!(fee <= Amount::from_sat(5_000), "{} close fee {fee}", r.name);
        assert!(r.meter.messages >= r.payments, "at least one message per payment");
    }
    // Balances to the satoshi. Spilman: the payee holds its first payment plus what was paid in
    // the last channel, minus the payment fee it pays.
    let s = &reports[0];
    assert_eq!(
        output_to(&s.coop_close[0], &compare::common::p2wpkh(2)),
        Amount::from_sat(1_000) + s.paid[0] - Amount::from_sat(300)
    );
    // Duplex and Lightning start at half each.
    for r in &reports[1..] {
        let coop = &r.coop_close[0];
        let (a, b) = (output_to(coop, &fees::payout(0xa1)), output_to(coop, &fees::payout(0xb1)));
        let half = capacity / 2;
        let b_expected = (half + r.paid[0]).checked_sub(r.paid[1]).unwrap();
        assert_eq!(b, b_expected, "{}: B's balance", r.name);
        let fee = capacity - a - b;
        assert_eq!(
            a + fee,
            (half + r.paid[1]).checked_sub(r.paid[0]).unwrap(),
            "{}: A's balance (A pays the fee)",
            r.name
        );
    }
}
