//! The fee-bumping engine's per-block work against the signing it needs, in one criterion run.
//!
//! * `floor/sign_483`: 483 × (one BIP-0143 sighash of a 1-input transaction + one ECDSA
//!   signature): the signatures a re-bump of 483 HTLC transactions cannot avoid.
//! * `feebump/rebump_483`: 483 pre-signed HTLC transactions (anchors channel, peer signature
//!   `SINGLE|ANYONECANPAY`) with one `nLockTime` are in flight in one aggregate; the market rises
//!   and the bumper replaces the aggregate: 483 signatures of ours, the wallet's one, the
//!   transaction built and encoded for persistence.
//! * `feebump/idle_483`: the same bumper on a block where nothing changes (re-broadcast only).
//!
//! Run with `cargo bench --bench feebump`; the ratio is `rebump_483 / sign_483`.

use std::hint::black_box;
use std::time::Duration;

use bitcoin::absolute::LockTime;
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use paychan::core::commitment::FeeratePerKw;
use paychan::core::feebump::{BumpMethod, BumpRequest, Bumper, FeeEstimates, InputTemplate, Protects, WitnessPart};
use paychan::core::keys::{ChannelSecrets, Seed};
use paychan::core::script;
use paychan::core::sign::{InMemorySigner, KeyId, SignRequest, Signer, Tweak};
use paychan::core::units::BlockHeight;
use paychan::testing::chain::Chain;
use paychan::testing::wallet::{FeeCoins, Wallet};

const N: u32 = 483;

struct Setup {
    us: InMemorySigner,
    requests: Vec<BumpRequest>,
    chain: Chain,
}

fn setup() -> Setup {
    let us = InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([0x31; 32]), 0));
    let peer = InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([0x32; 32]), 0));
    let ws = script::funding(&us.pubkeys().funding, &peer.pubkeys().funding);
    let ours_first = us.pubkeys().funding.serialize() <= peer.pubkeys().funding.serialize();
    let dest = Wallet::new(6).script();
    let mut requests = Vec::new();
    for i in 0..N {
        let value = Amount::from_sat(10_000 + u64::from(i));
        let op = OutPoint { txid: bitcoin::Txid::from_raw_hash(bitcoin::hashes::Hash::all_zeros()), vout: i };
        let paired = TxOut { value, script_pubkey: dest.clone() };
        let presigned = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: op,
                script_sig: ScriptBuf::new(),
                sequence: Sequence(1),
                witness: Witness::new(),
            }],
            output: vec![paired.clone()],
        };
        let peer_sig = peer
            .sign(&SignRequest {
                tx: &presigned,
                input: 0,
                script_code: ws.as_script(),
                p2wpkh: false,
                value,
                sighash_type: EcdsaSighashType::SinglePlusAnyoneCanPay,
                key: KeyId::Funding,
                tweak: Tweak::None,
            })
            .expect("sign");
        let peer_part = WitnessPart::Bytes(peer_sig.to_vec());
        let (a, b) = if ours_first { (WitnessPart::Signature, peer_part) } else { (peer_part, WitnessPart::Signature) };
        requests.push(BumpRequest {
            tx: presigned,
            deadline: BlockHeight(1_100),
            at_stake: value,
            protects: Protects::HtlcClaim,
            method: BumpMethod::AddInputs {
                inputs: vec![InputTemplate {
                    outpoint: op,
                    value,
                    script_code: ws.as_script().to_owned(),
                    p2wpkh: false,
                    sequence: Sequence(1),
                    key: Some((KeyId::Funding, Tweak::None)),
                    witness: vec![WitnessPart::Bytes(vec![]), a, b, WitnessPart::WitnessScript],
                    paired_output: Some(paired),
                }],
                lock_time: 0,
            },
        });
    }
    Setup { us, requests, chain: Chain::at(1_000) }
}

fn benches(c: &mut Criterion) {
    let s = setup();
    let mut g = c.benchmark_group("floor");
    g.measurement_time(Duration::from_secs(8));
    let one = &s.requests[0].tx;
    let ws = match &s.requests[0].method {
        BumpMethod::AddInputs { inputs, .. } => inputs[0].script_code.clone(),
        _ => unreachable!(),
    };
    g.bench_function("sign_483", |b| {
        b.iter(|| {
            for _ in 0..N {
                black_box(
                    s.us.sign(&SignRequest {
                        tx: one,
                        input: 0,
                        script_code: ws.as_script(),
                        p2wpkh: false,
                        value: Amount::from_sat(10_000),
                        sighash_type: EcdsaSighashType::All,
                        key: KeyId::Funding,
                        tweak: Tweak::None,
                    })
                    .expect("sign"),
                );
            }
        })
    });
    g.finish();

    // A bumper with the aggregate already out at a low rate.
    let mut chain = s.chain.clone();
    let mut wallet = FeeCoins::new(Wallet::new(9));
    wallet.add_coin(&mut chain, Amount::from_sat(5_000_000));
    let mut bumper = Bumper::new();
    for r in &s.requests {
        let _ = bumper.track(r.clone());
    }
    let low = FeeEstimates::flat(FeeratePerKw(300));
    let high = FeeEstimates::flat(FeeratePerKw(3_000));
    let fx = bumper.bump(BlockHeight(1_000), &low, &mut wallet, &s.us);
    assert_eq!(fx.broadcast.len(), 1);
    assert_eq!(fx.broadcast[0].input.len(), N as usize + 1);
    let mut g = c.benchmark_group("feebump");
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("rebump_483", |b| {
        b.iter_batched(
            || (bumper.clone(), FeeCoins::new(Wallet::new(9))),
            |(mut bumper, mut w)| {
                let fx = bumper.bump(BlockHeight(1_001), &high, &mut w, &s.us);
                assert_eq!(fx.broadcast.len(), 1);
                black_box(fx)
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("idle_483", |b| {
        b.iter_batched(
            || (bumper.clone(), FeeCoins::new(Wallet::new(9))),
            |(mut bumper, mut w)| black_box(bumper.bump(BlockHeight(1_001), &low, &mut w, &s.us)),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(feebump, benches);
criterion_main!(feebump);
