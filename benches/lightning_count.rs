//! Instruction-count harness for the Lightning benchmarks (run it under callgrind; see
//! `benches/perf-channels.md`). Each measured operation is one `#[inline(never)]` function, so
//! `callgrind_annotate --inclusive=yes` gives its exact cost; the floor primitives are called
//! `FLOOR_N` times each in their own functions.
//!
//! ```sh
//! valgrind --tool=callgrind --callgrind-out-file=cg.out $BIN
//! callgrind_annotate --inclusive=yes --tree=caller cg.out
//! ```
use std::hint::black_box;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, PublicKey, Secp256k1};
use bitcoin::transaction::Version;
use bitcoin::{Amount, ScriptBuf, Transaction, TxIn, TxOut};
use paychan::core::commitment::{CommitmentKeys, CommitmentNumber};
use paychan::core::keys::{ChannelSecrets, Seed};
use paychan::core::{MilliSats, PaymentPreimage};
use paychan::lightning::{Effects, OnionPacket};

#[path = "common/ln_pair.rs"]
mod ln_pair;
use ln_pair::{deliver, lifecycle, open, with_announced, Pair};
const FLOOR_N: usize = 50;

#[inline(never)]
fn floor_sign(secp: &Secp256k1<bitcoin::secp256k1::All>, msg: &Message, sk: &bitcoin::secp256k1::SecretKey) {
    for _ in 0..FLOOR_N {
        black_box(secp.sign_ecdsa(black_box(msg), sk));
    }
}

#[inline(never)]
fn floor_verify(
    secp: &Secp256k1<bitcoin::secp256k1::All>,
    msg: &Message,
    sig: &bitcoin::secp256k1::ecdsa::Signature,
    pk: &PublicKey,
) {
    for _ in 0..FLOOR_N {
        let _ = black_box(secp.verify_ecdsa(black_box(msg), sig, pk));
    }
}

#[inline(never)]
fn floor_key_set(
    secp: &Secp256k1<bitcoin::secp256k1::All>,
    point: &paychan::core::keys::PerCommitmentPoint,
    k1: &paychan::core::keys::ChannelPubkeys,
    k2: &paychan::core::keys::ChannelPubkeys,
) {
    for _ in 0..FLOOR_N {
        let _ = black_box(CommitmentKeys::derive(secp, black_box(point), k1, k2));
    }
}

#[inline(never)]
fn floor_point(secp: &Secp256k1<bitcoin::secp256k1::All>, secrets: &ChannelSecrets) {
    for i in 0..FLOOR_N {
        let _ =
            black_box(secrets.per_commitment_point(secp, CommitmentNumber::new(black_box(77 + i as u64)).expect("n")));
    }
}

#[inline(never)]
fn floor_sighash(tx: &Transaction, ws: &paychan::core::script::WitnessScript) {
    for _ in 0..FLOOR_N {
        let _ = black_box(paychan::core::sign::p2wsh_sighash(
            black_box(tx),
            0,
            ws.as_script(),
            Amount::from_sat(2_000),
            bitcoin::EcdsaSighashType::All,
        ));
    }
}

/// One `lightning/htlc_lifecycle` iteration.
#[inline(never)]
fn measured_lifecycle(p: &mut Pair, n: u64) {
    lifecycle(p, n);
}

/// `lightning/commit_100_htlcs`, A's half: sign the commitment.
#[inline(never)]
fn measured_commit_a(p: &mut Pair) -> Effects {
    p.a.ch.commit(&p.a.signer).expect("commit")
}

/// `lightning/commit_100_htlcs`, B's half: decode, verify, revoke, persist (and counter-sign).
#[inline(never)]
fn measured_commit_b(fx: Effects, p: &mut Pair) -> Vec<Effects> {
    deliver(fx, &mut p.b)
}

/// One user action of the lifecycle: its effects, and whether A acted.
type Step = Box<dyn FnMut(&mut Pair) -> (Effects, bool)>;

fn persisted(fx: &Effects) -> usize {
    fx.update.as_ref().map_or(0, paychan::driving::StateUpdate::written_bytes)
}

fn main() {
    // Which part to run: `floor`, `lifecycle`, `commit100`, `bytes`, or all of them (no argument).
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let part = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if part("floor") {
        floor_part();
    }
    if part("lifecycle") {
        lifecycle_part();
    }
    if part("commit100") {
        commit100_part();
    }
    if part("commit1") {
        commit1_part();
    }
    if part("bytes") {
        bytes_part();
    }
}

fn floor_part() {
    let secp = Secp256k1::new();
    let secrets = ChannelSecrets::from_seed(&Seed::from_bytes([0xa0; 32]), 0);
    let sk = *secrets.funding.secret_key();
    let pk = PublicKey::from_secret_key(&secp, &sk);
    let msg = Message::from_digest([0x42; 32]);
    let sig = secp.sign_ecdsa(&msg, &sk);
    floor_sign(&secp, &msg, &sk);
    floor_verify(&secp, &msg, &sig, &pk);
    let other = ChannelSecrets::from_seed(&Seed::from_bytes([0xb0; 32]), 0);
    let (k1, k2) = (secrets.pubkeys(&secp), other.pubkeys(&secp));
    let point = secrets.per_commitment_point(&secp, CommitmentNumber::new(5).expect("n")).expect("point");
    floor_key_set(&secp, &point, &k1, &k2);
    floor_point(&secp, &secrets);
    let tx = Transaction {
        version: Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![TxIn::default()],
        output: vec![TxOut {
            value: Amount::from_sat(1_000),
            script_pubkey: ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::all_zeros()),
        }],
    };
    floor_sighash(&tx, &paychan::core::script::funding(&k1.funding, &k2.funding));
}

fn lifecycle_part() {
    let mut p = open();
    for n in 1..=2 {
        lifecycle(&mut p, n);
    }
    for n in 3..=5 {
        measured_lifecycle(&mut p, n);
    }
}

fn commit100_part() {
    let base = with_announced(100);
    for _ in 0..3 {
        let mut p = base.clone();
        let fx = measured_commit_a(&mut p);
        let a_bytes = persisted(&fx);
        let out = measured_commit_b(fx, &mut p);
        let b_bytes: usize = out.iter().map(persisted).sum();
        println!("commit_100_htlcs: persisted bytes A {a_bytes}, B {b_bytes}");
        black_box(p);
    }
}

/// The same dance with one HTLC (run on its own under callgrind, so the same measured functions
/// can be used): what `commit_100_htlcs` costs beyond this, ÷ 99, is the marginal cost of an HTLC
/// (the per-commitment work cancels out).
fn commit1_part() {
    let base = with_announced(1);
    for _ in 0..3 {
        let mut p = base.clone();
        let fx = measured_commit_a(&mut p);
        black_box(measured_commit_b(fx, &mut p));
        black_box(p);
    }
}

fn bytes_part() {
    // Persisted bytes of each update of one HTLC's life (both sides).
    let mut p = open();
    let pre = PaymentPreimage([9; 32]);
    let mut total = 0usize;
    let mut count = 0usize;
    let mut log = |fx: &Effects| {
        if fx.update.is_some() {
            total += persisted(fx);
            count += 1;
        }
    };
    let (id, fx) =
        p.a.ch.add_htlc(MilliSats::from_msat(5_000_000), pre.hash(), 2_000, OnionPacket::zeroed()).expect("add");
    log(&fx);
    let mut queue = vec![(fx, true)];
    let mut steps: Vec<Step> = vec![
        Box::new(|p: &mut Pair| (p.a.ch.commit(&p.a.signer).expect("commit"), true)),
        Box::new(move |p: &mut Pair| (p.b.ch.fulfill_htlc(id, pre).expect("fulfill"), false)),
        Box::new(|p: &mut Pair| (p.b.ch.commit(&p.b.signer).expect("commit"), false)),
    ];
    loop {
        while let Some((fx, from_a)) = queue.pop() {
            let to = if from_a { &mut p.b } else { &mut p.a };
            for answer in deliver(fx, to) {
                log(&answer);
                queue.push((answer, !from_a));
            }
        }
        if steps.is_empty() {
            break;
        }
        let (fx, from_a) = steps.remove(0)(&mut p);
        log(&fx);
        queue.push((fx, from_a));
    }
    println!("htlc_lifecycle: {count} updates, {total} persisted bytes, {} per update", total / count.max(1));
}
