//! Duplex channel costs against their floors, in one criterion run.
//!
//! * `floor`: one BIP-0143 sighash of a leaf payment transaction and of a tree node, one ECDSA
//!   sign, one ECDSA verify.
//! * `duplex/payment_*`: one payment in each direction, end to end: the payer makes it
//!   (`Channel::pay`: build, sighash, sign, snapshot), the message crosses the wire encoding, the
//!   payee checks and stores it (rebuild, sighash, verify, snapshot, ack), and the payer takes the
//!   ack. Floor: 1 sighash + 1 sign + 1 verify (as Spilman).
//! * `duplex/reset_level_i`: a whole 3-message reset that re-signs the `d − i + 1` nodes from level
//!   `i` down, on a depth-3 tree whose other levels have radix 1 (so every reset is at level `i`).
//!   Floor: per re-signed node, each party computes its sighash, signs it, and verifies the
//!   counterparty's signature: `(d − i + 1) · 2 · (sighash + sign + verify)`.
//!
//! Run with `cargo bench --bench duplex` (about two minutes).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, PublicKey, Secp256k1};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, Txid, WPubkeyHash, Witness};
use criterion::{criterion_group, criterion_main, Criterion};
use paychan::core::keys::{ChannelSecrets, Seed};
use paychan::core::sign::InMemorySigner;
use paychan::core::BlockHeight;
use paychan::driving::{ChainEvent, ChainTip};
use paychan::duplex::{Channel, Msg, Params, Role, Terms};
use paychan::spilman::payment::PaymentState;

fn p2wpkh(n: u8) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]))
}

fn secrets(n: u8) -> ChannelSecrets {
    ChannelSecrets::from_seed(&Seed::from_bytes([n; 32]), 0)
}

struct Pair {
    ch: [Channel; 2],
    signers: [InMemorySigner; 2],
    tip: ChainTip,
}

impl Pair {
    fn open(radix: Vec<u32>) -> Pair {
        let tip = ChainTip::at(800_000);
        let signers = [InMemorySigner::new(secrets(1)), InMemorySigner::new(secrets(2))];
        let terms = Terms {
            params: Params::new(radix, 2, 144).expect("params"),
            capacity: Amount::from_sat(10_000_000_000),
            push: Amount::from_sat(4_000_000_000),
            payment_fee: Amount::from_sat(300),
            refund_fee: Amount::from_sat(300),
            claim_fee: Amount::from_sat(300),
            dust_limit: Amount::from_sat(546),
            // Δ = 2 (to fit 32,768 locks in one level) is only safe with S + R < Δ.
            confirm_blocks: 1,
            reorg_blocks: 0,
            htlc_grace_blocks: 6,
            max_htlc_expiry_delta: 200_000,
            reset_warning: 0,
            funding_depth: 1,
        };
        let (mut a, fx) = Channel::open(terms, p2wpkh(1), &signers[0], tip).expect("open");
        let Some(Msg::Open(open)) = fx.send.into_iter().next() else { panic!("open") };
        let (b, fx) = Channel::accept(open, p2wpkh(2), &signers[1], tip).expect("accept");
        let _ = a.handle_message(fx.send[0].clone(), &signers[0], tip).expect("keys");
        let funding = Transaction {
            version: Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint { txid: Txid::from_byte_array([5; 32]), vout: 1 },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: vec![a.funding_output().expect("output")],
        };
        let fx = a.fund(funding.clone(), &signers[0]).expect("fund");
        let mut p = Pair { ch: [a, b], signers, tip };
        p.deliver(Role::Acceptor, fx.send);
        // The funding confirmed a block before the tip: deep enough to pay (`funding_depth` 1).
        for (c, s) in p.ch.iter_mut().zip(&p.signers) {
            let _ = c.handle_chain(ChainEvent::Confirmed { tx: &funding, height: BlockHeight(tip.height.0 - 1) }, s);
        }
        // A first payment each way (the payee's first amount covers the payment fee and dust).
        p.pay(Role::Initiator, 10_000);
        p.pay(Role::Acceptor, 10_000);
        p
    }

    /// Delivers messages to `to`, and the replies back, through the wire encoding.
    fn deliver(&mut self, mut to: Role, mut msgs: Vec<Msg>) {
        while !msgs.is_empty() {
            let mut replies = Vec::new();
            for m in msgs {
                let m = Msg::decode(&m.encode()).expect("decode");
                let fx = self.ch[to.index()].handle_message(m, &self.signers[to.index()], self.tip).expect("accepted");
                replies.extend(black_box(fx).send);
            }
            msgs = replies;
            to = !to;
        }
    }

    fn pay(&mut self, from: Role, sats: u64) {
        let fx = self.ch[from.index()].pay(Amount::from_sat(sats), &self.signers[from.index()]).expect("pay");
        self.deliver(!from, fx.send);
    }

    fn reset(&mut self, from: Role) {
        let fx = self.ch[from.index()].reset(&self.signers[from.index()], self.tip).expect("reset");
        self.deliver(!from, fx.send);
    }
}

fn floor(c: &mut Criterion) {
    let p = Pair::open(vec![3, 3, 3]);
    let template = p.ch[0].template(Role::Initiator).expect("leaf").clone();
    let built = template.build(&PaymentState { to_payee: Amount::from_sat(20_000), htlcs: vec![] }).expect("build");
    let script = template.channel_script();
    let branch = p.ch[0].current_branch().expect("branch");
    let node = &branch[2];
    let node_script = paychan::core::script::funding(
        &paychan::core::keys::FundingPubkey::from_public_key(
            *secrets(1).pubkeys(&Secp256k1::new()).funding.public_key(),
        ),
        &paychan::core::keys::FundingPubkey::from_public_key(
            *secrets(2).pubkeys(&Secp256k1::new()).funding.public_key(),
        ),
    );
    let secp = Secp256k1::new();
    let sk = *secrets(1).funding.secret_key();
    let pk = PublicKey::from_secret_key(&secp, &sk);
    let sighash = || {
        SighashCache::new(&built.tx)
            .p2wsh_signature_hash(0, script.as_script(), template.capacity, EcdsaSighashType::All)
            .expect("sighash")
    };
    let msg = Message::from_digest(sighash().to_byte_array());
    let sig = secp.sign_ecdsa(&msg, &sk);
    let mut g = c.benchmark_group("floor");
    g.bench_function("sighash_payment_tx", |b| b.iter(|| black_box(sighash())));
    g.bench_function("sighash_node_tx", |b| {
        b.iter(|| {
            black_box(
                SighashCache::new(node)
                    .p2wsh_signature_hash(
                        0,
                        node_script.as_script(),
                        Amount::from_sat(9_999_998_500),
                        EcdsaSighashType::All,
                    )
                    .expect("sighash"),
            )
        })
    });
    g.bench_function("ecdsa_sign", |b| b.iter(|| black_box(secp.sign_ecdsa(black_box(&msg), &sk))));
    g.bench_function("ecdsa_verify", |b| b.iter(|| black_box(secp.verify_ecdsa(black_box(&msg), &sig, &pk))));
    g.finish();
}

fn duplex(c: &mut Criterion) {
    let mut g = c.benchmark_group("duplex");
    for (name, from) in [("payment_a_to_b", Role::Initiator), ("payment_b_to_a", Role::Acceptor)] {
        let mut p = Pair::open(vec![3, 3, 3]);
        g.bench_function(name, |b| b.iter(|| p.pay(from, 1)));
    }
    for level in 1..=3usize {
        let radix = |level: usize| (1..=3).map(|j| if j == level { 32_768 } else { 1 }).collect::<Vec<u32>>();
        let mut p = Pair::open(radix(level));
        let mut from = Role::Initiator;
        g.bench_function(format!("reset_level_{level}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    if p.ch[0].resets_left() == 0 {
                        p = Pair::open(radix(level));
                    }
                    let start = Instant::now();
                    p.reset(from);
                    total += start.elapsed();
                    from = !from;
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(40).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = floor, duplex
}
criterion_main!(benches);
