//! `examples/compare.rs` with a small workload: its table's on-chain figures are those of the
//! transactions actually built, every one of which confirms on a fresh simulated chain (lock
//! times enforced, scripts checked by Bitcoin Core's interpreter) within the blocks the table
//! states; and the cooperative closes pay each side what the workload left it, to the satoshi.

#[path = "../examples/compare.rs"]
#[allow(dead_code)]
mod compare;

use bitcoin::{Amount, Transaction};
use compare::common::chain::Chain;
use compare::common::{p2wpkh, vsize};

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

fn output_to(tx: &Transaction, n: u8) -> Amount {
    tx.output.iter().filter(|o| o.script_pubkey == p2wpkh(n)).map(|o| o.value).sum()
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
    assert_eq!(output_to(&s.coop_close[0], 2), Amount::from_sat(1_000) + s.paid[0] - Amount::from_sat(300));
    // Duplex and Lightning start at half each.
    for r in &reports[1..] {
        let coop = &r.coop_close[0];
        let (a, b) = (output_to(coop, 0xa1), output_to(coop, 0xb1));
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
