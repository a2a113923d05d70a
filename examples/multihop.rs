//! One payment over three channel types: A –Spilman→ B –duplex→ C –Lightning→ D, narrated.
//!
//! B and C are `paychan::multihop::Forwarder`s; A is a Spilman payer, D a Lightning channel. The
//! channels, the wire and the simulated chain (UTXO set, lock times, Bitcoin Core's script
//! interpreter) come from the integration-test harness in `tests/common/`, which this example
//! borrows so that every transaction it prints is checked the way the tests check them.
//!
//! Three runs: the payment succeeds off chain; D fails it and the failure travels back only as
//! each removal becomes irrevocable; C's fulfil to B is lost and the preimage reaches B through a
//! witness on chain, in time for B to claim from A.
//!
//! Run with `cargo run --example multihop`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::route::{Final, Link, Route, MARGINS};
use paychan::multihop::{e_in, f_out, Requirement};

fn show(r: &mut Route, from: usize) -> usize {
    let hash = format!("{:?}", r.hash());
    for line in &r.log[from..] {
        println!("   {}", line.replace(&hash, "H"));
    }
    r.log.len()
}

fn delta(req: Requirement) -> String {
    match req {
        Requirement::Delta(d) => format!("{d} blocks"),
        Requirement::AtLeast(h) => format!("incoming expiry at least {h}"),
    }
}

pub fn main() {
    println!(
        "== The route and its expiry deltas (docs/multihop.md §2, R={}, G={}, S={})",
        MARGINS.reorg_depth, MARGINS.grace, MARGINS.confirm
    );
    let mut r = Route::open(Final::Fulfill);
    let dx = {
        use paychan::multihop::HtlcChannel;
        r.b.outgoing().hop_kind(MARGINS)
    };
    println!("   duplex B–C: {dx:?}; E_in = {}, F_out = {:?}", e_in(dx, MARGINS), f_out(dx, MARGINS));
    println!("   B (Spilman in, duplex out) needs {}", delta(r.b.requirement()));
    println!("   C (duplex in, Lightning out) needs {}", delta(r.c.requirement()));
    let plan = r.plan(6, 0);
    println!(
        "   tip {}: A→B {} until {}; B→C {} until {}; C→D {} until {}",
        r.chain.height, plan.ab.amount, plan.ab.expiry, plan.bc.amount, plan.bc.expiry, plan.cd.amount, plan.cd.expiry
    );

    println!("\n== 1. Success, all off chain");
    r.install(&plan);
    let before = r.positions();
    r.send(&plan);
    r.run();
    show(&mut r, 0);
    let after = r.positions();
    let gains: Vec<i128> = before.iter().zip(after).map(|(b, a)| a - b).collect();
    println!(
        "   gains in msat: A {} B {} C {} D {} (sum {})",
        gains[0],
        gains[1],
        gains[2],
        gains[3],
        gains.iter().sum::<i128>()
    );
    assert!(r.sender_has_preimage() && gains.iter().sum::<i128>() == 0);

    println!("\n== 2. D fails the HTLC");
    let mut r = Route::open(Final::Fail);
    let plan = r.plan(6, 0);
    r.install(&plan);
    r.send(&plan);
    r.run();
    show(&mut r, 0);
    println!("   (C failed upstream once the Lightning removal was committed both ways; B once a reset dropped its duplex HTLC)");
    assert!(r.violations.is_empty());

    println!("\n== 3. C's fulfil to B is lost: C claims on chain, B learns the preimage from the witness");
    let mut r = Route::open(Final::Fulfill);
    r.cut_on_fulfil = vec![Link::CB];
    let plan = r.plan(6, 0);
    r.install(&plan);
    r.send(&plan);
    r.run();
    let mut seen = show(&mut r, 0);
    while !r.sender_has_preimage() {
        assert!(r.chain.height < plan.ab.expiry.0, "B must claim before A's HTLC expires");
        r.mine();
        seen = show(&mut r, seen);
    }
    println!("   (C published the duplex tree: kickoff, node, leaf with the two leaf channels; then its best");
    println!("    payment from B, with the HTLC output, and claimed that output with the preimage)");
    println!("   A has the preimage at height {}, before its HTLC's expiry {}", r.chain.height, plan.ab.expiry);
    assert!(r.violations.is_empty());
}
