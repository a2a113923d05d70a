//! Spilman payment cost against its floor, in one criterion run.
//!
//! * `floor`: one BIP-0143 sighash of a payment transaction, one ECDSA sign, one ECDSA verify:
//!   what any payment needs at the least (the payer signs, the payee verifies).
//! * `spilman`: the payer makes a payment (`Payer::pay`: build, sighash, sign, snapshot), the
//!   message crosses the wire encoding, the payee checks and accepts it (`handle_message`: rebuild,
//!   sighash, verify, snapshot, ack), and the payer takes the ack.
//!
//! Run with `cargo bench --bench spilman`; the README reports `spilman / floor`.

use std::hint::black_box;
use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, PublicKey, Secp256k1};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, Txid, WPubkeyHash, Witness};
use criterion::{criterion_group, criterion_main, Criterion};
use paychan::core::keys::{ChannelSecrets, Seed};
use paychan::core::sign::InMemorySigner;
use paychan::core::BlockHeight;
use paychan::driving::ChainTip;
use paychan::spilman::payment::PaymentState;
use paychan::spilman::{Msg, Payee, PayeeConfig, Payer, PayerConfig, Variant};

fn p2wpkh(n: u8) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]))
}

struct Pair {
    payer: Payer,
    payee: Payee,
    payer_signer: InMemorySigner,
    payee_signer: InMemorySigner,
    tip: ChainTip,
}

fn pair() -> Pair {
    let payer_signer = InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([1; 32]), 0));
    let payee_signer = InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([2; 32]), 0));
    let tip = ChainTip::at(800_000);
    let (mut payee, fx) = Payee::new(
        PayeeConfig {
            variant: Variant::Cltv,
            payee_script: p2wpkh(2),
            expiry: BlockHeight(900_000),
            min_first_payment: Amount::from_sat(1_000),
            dust_limit: Amount::from_sat(546),
            payment_fee: Amount::from_sat(300),
            close_margin: 36,
            htlc_min_blocks: 24,
            min_depth: 0,
            claim_fee: Amount::from_sat(300),
        },
        &payee_signer,
    );
    let Some(Msg::Offer(offer)) = fx.send.into_iter().next() else { panic!("offer") };
    let mut payer = Payer::new(
        offer,
        PayerConfig {
            capacity: Amount::from_sat(10_000_000_000),
            payer_script: p2wpkh(1),
            refund_fee: Amount::from_sat(300),
            claim_fee: Amount::from_sat(300),
            first_payment: Amount::from_sat(1_000),
            max_lifetime: 200_000,
        },
        &payer_signer,
        tip,
    )
    .expect("offer");
    let funding = Transaction {
        version: Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid: Txid::from_byte_array([5; 32]), vout: 1 },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![payer.funding_output()],
    };
    let fx = payer.fund(funding, &payer_signer).expect("fund");
    for m in fx.send {
        let back = payee.handle_message(m, &payee_signer, tip).expect("open");
        for a in back.send {
            let _ = payer.handle_message(a, &payer_signer, tip).expect("ack");
        }
    }
    Pair { payer, payee, payer_signer, payee_signer, tip }
}

fn floor(c: &mut Criterion) {
    let p = pair();
    let template = p.payer.template().expect("funded").clone();
    let built = template.build(&PaymentState { to_payee: Amount::from_sat(5_000), htlcs: vec![] }).expect("build");
    let script = template.channel_script();
    let secp = Secp256k1::new();
    let sk = *ChannelSecrets::from_seed(&Seed::from_bytes([1; 32]), 0).funding.secret_key();
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
    g.bench_function("ecdsa_sign", |b| b.iter(|| black_box(secp.sign_ecdsa(black_box(&msg), &sk))));
    g.bench_function("ecdsa_verify", |b| b.iter(|| black_box(secp.verify_ecdsa(black_box(&msg), &sig, &pk))));
    g.finish();
}

fn spilman(c: &mut Criterion) {
    let mut p = pair();
    let mut g = c.benchmark_group("spilman");
    g.bench_function("payment_make_verify_accept", |b| {
        b.iter(|| {
            let fx = p.payer.pay(Amount::from_sat(1), &p.payer_signer).expect("pay");
            for m in fx.send {
                let m = Msg::decode(&m.encode()).expect("decode");
                let back = p.payee.handle_message(m, &p.payee_signer, p.tip).expect("accept");
                for a in back.send {
                    let a = Msg::decode(&a.encode()).expect("decode");
                    let fx = p.payer.handle_message(a, &p.payer_signer, p.tip).expect("ack");
                    let _ = black_box(fx);
                }
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(40).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = floor, spilman
}
criterion_main!(benches);
