//! Lightning channel costs against their secp256k1 floor, in one criterion run.
//!
//! * `floor`: ECDSA sign, ECDSA verify, one BIP-0143 sighash, one commitment key set
//!   (revocation key + three per-commitment tweaks), one per-commitment point from the seed.
//! * `lightning/htlc_lifecycle`: one HTLC's full life between two in-memory peers: add,
//!   commit/revoke both ways, fulfil, commit/revoke both ways (every message through the wire
//!   encoding, every state change persisted). Its floor: 6 signatures, 6 verifications, 8
//!   commitment key sets (each side derives the keys of each of the 4 commitments) and 8
//!   per-commitment points or secrets.
//! * `lightning/commit_100_htlcs`: A signs a commitment carrying 100 new HTLCs and B verifies it
//!   (`commitment_signed` with 100 HTLC signatures). Its floor: 101 × (sign + verify).

use std::hint::black_box;
use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, PublicKey, Secp256k1};
use bitcoin::transaction::Version;
use bitcoin::{Amount, ScriptBuf, Transaction, TxIn, TxOut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use paychan::core::commitment::{CommitmentKeys, CommitmentNumber};
use paychan::core::keys::{ChannelSecrets, Seed};
use paychan::core::sign::Signer;

#[path = "common/ln_pair.rs"]
mod ln_pair;
use ln_pair::{deliver, lifecycle, open, with_announced};
fn floor(c: &mut Criterion) {
    let secp = Secp256k1::new();
    let secrets = ChannelSecrets::from_seed(&Seed::from_bytes([0xa0; 32]), 0);
    let other = ChannelSecrets::from_seed(&Seed::from_bytes([0xb0; 32]), 0);
    let (k1, k2) = (secrets.pubkeys(&secp), other.pubkeys(&secp));
    let sk = *secrets.funding.secret_key();
    let pk = PublicKey::from_secret_key(&secp, &sk);
    let msg = Message::from_digest([0x42; 32]);
    let sig = secp.sign_ecdsa(&msg, &sk);
    let point = secrets.per_commitment_point(&secp, CommitmentNumber::new(5).expect("n")).expect("point");
    let tx = Transaction {
        version: Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![TxIn::default()],
        output: vec![TxOut {
            value: Amount::from_sat(1_000),
            script_pubkey: ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::all_zeros()),
        }],
    };
    let ws = paychan::core::script::funding(&k1.funding, &k2.funding);
    let mut g = c.benchmark_group("floor");
    g.bench_function("ecdsa_sign", |b| b.iter(|| black_box(secp.sign_ecdsa(black_box(&msg), &sk))));
    g.bench_function("ecdsa_verify", |b| b.iter(|| black_box(secp.verify_ecdsa(black_box(&msg), &sig, &pk))));
    g.bench_function("sighash", |b| {
        b.iter(|| {
            black_box(paychan::core::sign::p2wsh_sighash(
                &tx,
                0,
                ws.as_script(),
                Amount::from_sat(2_000),
                bitcoin::EcdsaSighashType::All,
            ))
        })
    });
    g.bench_function("commitment_key_set", |b| b.iter(|| black_box(CommitmentKeys::derive(&secp, &point, &k1, &k2))));
    g.bench_function("per_commitment_point", |b| {
        b.iter(|| black_box(secrets.per_commitment_point(&secp, CommitmentNumber::new(black_box(77)).expect("n"))))
    });
    g.finish();
}

fn channel(c: &mut Criterion) {
    let mut g = c.benchmark_group("lightning");
    let mut p = open();
    let mut n = 0u64;
    g.bench_function("htlc_lifecycle", |b| {
        b.iter(|| {
            n += 1;
            lifecycle(&mut p, n);
        })
    });
    // A signs `n` announced HTLCs; B verifies, revokes and counter-signs. With one HTLC too:
    // (commit_100_htlcs - commit_1_htlc) / 99 is what one more HTLC in a commitment costs.
    for (name, n) in [("commit_1_htlc", 1), ("commit_100_htlcs", 100)] {
        let base = with_announced(n);
        g.bench_function(name, |b| {
            b.iter_batched(
                || base.clone(),
                |mut p| {
                    let fx = p.a.ch.commit(&p.a.signer).expect("commit");
                    black_box(deliver(fx, &mut p.b));
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
    let _ = Signer::pubkeys(&p.a.signer);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = floor, channel
}
criterion_main!(benches);
