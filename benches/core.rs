//! Benchmarks of the shared core against the primitive operations it is built from.
//!
//! One criterion run, two groups:
//!
//! * `floor`: the primitives every core operation is made of (ECDSA sign and verify, public-key
//!   tweaks, `s·G`, one BIP-0143 P2WSH sighash of a 1-in-1-out transaction, SHA-256 of 32 B, 66 B
//!   and 1 KiB). Nothing can be faster than the sum of the primitives it must perform.
//! * `core`: commitment building, signing and verifying with 0–483 HTLCs, key derivations and
//!   the shachain.
//!
//! `benches/perf-core.md` divides each core time by the sum of the floor operations it needs
//! (`benches/ratios.py` computes it). The work counts this needs but criterion does not report
//! (SHA-256 blocks hashed by a commitment build, SHA-256 calls of the shachain) are printed to
//! stderr as `work:` lines.
//!
//! Run with `cargo bench --bench core`; the whole run takes about two minutes.

use std::hint::black_box;
use std::time::Duration;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{Message, PublicKey, Scalar, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{Amount, OutPoint, Txid};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use paychan::core::commitment::signatures::{sign_counterparty_commitment, verify_holder_commitment};
use paychan::core::commitment::{
    build_commitment, BuiltCommitment, ChannelType, CommitmentHtlc, CommitmentKeys, CommitmentNumber, CommitmentParams,
    CommitmentState, FeeratePerKw, HtlcDirection, ObscuringFactor,
};
use paychan::core::keys::{ChannelPubkeys, ChannelSecrets, RevocationPubkey, Seed};
use paychan::core::shachain::{self, SecretStore};
use paychan::core::sign::{InMemorySigner, KeyId, SignRequest, Signer, Tweak};
use paychan::core::{MilliSats, PaymentPreimage};

/// HTLC counts benchmarked; 483 is the BOLT #2 maximum per direction.
const HTLC_COUNTS: [usize; 4] = [0, 10, 100, 483];
/// Shachain secrets revealed before the measured inserts (so the low slots are occupied).
const SHACHAIN_PREFILL: u64 = 1024;
/// Shachain secrets inserted (and looked up) per measured iteration.
const SHACHAIN_BATCH: u64 = 1024;

/// Two parties of one channel: the holder broadcasts the commitment, the peer countersigns it.
struct Channel {
    holder: InMemorySigner,
    peer: InMemorySigner,
    holder_keys: ChannelPubkeys,
    peer_keys: ChannelPubkeys,
}

impl Channel {
    fn new() -> Self {
        let seed = Seed::from_bytes([0x5a; 32]);
        let holder = InMemorySigner::new(ChannelSecrets::from_seed(&seed, 0));
        let peer = InMemorySigner::new(ChannelSecrets::from_seed(&seed, 1));
        let (holder_keys, peer_keys) = (*holder.pubkeys(), *peer.pubkeys());
        Channel { holder, peer, holder_keys, peer_keys }
    }

    fn number() -> CommitmentNumber {
        CommitmentNumber::new(1000).expect("small number")
    }

    fn keys(&self) -> CommitmentKeys {
        let point = self.holder.per_commitment_point(Self::number()).expect("point");
        CommitmentKeys::derive(self.holder.secp(), &point, &self.holder_keys, &self.peer_keys).expect("keys")
    }

    fn params(&self, channel_type: ChannelType) -> CommitmentParams {
        CommitmentParams {
            channel_type,
            funding_outpoint: OutPoint { txid: Txid::from_byte_array([0x11; 32]), vout: 1 },
            funding_value: Amount::from_sat(10_000_000),
            broadcaster_is_funder: true,
            to_self_delay: 144,
            dust_limit: Amount::from_sat(546),
            obscuring_factor: ObscuringFactor::new(
                &self.holder_keys.payment_basepoint,
                &self.peer_keys.payment_basepoint,
            ),
            broadcaster: self.holder_keys,
            countersignatory: self.peer_keys,
        }
    }
}

/// `n` untrimmed HTLCs, alternately offered and received, with distinct hashes and expiries.
fn htlcs(n: usize) -> Vec<CommitmentHtlc> {
    (0..n)
        .map(|i| {
            let mut preimage = [0u8; 32];
            preimage[..8].copy_from_slice(&(i as u64).to_be_bytes());
            CommitmentHtlc::new(
                if i % 2 == 0 { HtlcDirection::Offered } else { HtlcDirection::Received },
                MilliSats::from_msat(5_000_000 + 1_000 * i as u64),
                PaymentPreimage(preimage).hash(),
                800_000 + (i as u32 % 50),
            )
        })
        .collect()
}

/// Builds the holder's commitment with `htlcs`; the rest of the capacity is split 60/40.
fn build(params: &CommitmentParams, keys: &CommitmentKeys, htlcs: &[CommitmentHtlc]) -> BuiltCommitment {
    let in_htlcs: u64 = htlcs.iter().map(|h| h.amount().to_msat()).sum();
    let rest = params.funding_value.to_sat() * 1000 - in_htlcs;
    let to_broadcaster = rest / 10 * 6;
    let state = CommitmentState {
        number: Channel::number(),
        to_broadcaster: MilliSats::from_msat(to_broadcaster),
        to_countersignatory: MilliSats::from_msat(rest - to_broadcaster),
        feerate: FeeratePerKw(2_500),
        htlcs,
    };
    build_commitment(params, keys, &state).expect("commitment")
}

/// SHA-256 compression-function calls to hash `len` bytes.
fn sha256_blocks(len: usize) -> usize {
    (len + 9).div_ceil(64)
}

/// SHA-256 blocks a commitment build cannot avoid: one hash of every witness script (for its
/// P2WSH output) and the double hash of the serialised transaction (its txid).
fn build_hash_blocks(c: &BuiltCommitment) -> usize {
    let scripts: usize =
        c.outputs().iter().filter_map(|o| o.witness_script.as_ref()).map(|s| sha256_blocks(s.as_bytes().len())).sum();
    let tx_len = bitcoin::consensus::encode::serialize(&{
        let mut tx = c.tx().clone();
        for input in &mut tx.input {
            input.witness.clear();
        }
        tx
    })
    .len();
    scripts + sha256_blocks(tx_len) + 1
}

/// SHA-256 calls made by [`SecretStore::insert`] and [`SecretStore::get`], counted on a model of
/// the 49 slots (same rules as BOLT #3 `insert_secret` / `derive_secret`).
struct ShachainModel {
    slots: [Option<u64>; 49],
}

impl ShachainModel {
    fn new() -> Self {
        ShachainModel { slots: [None; 49] }
    }

    fn slot(index: u64) -> usize {
        if index == 0 {
            48
        } else {
            (index.trailing_zeros() as usize).min(48)
        }
    }

    fn low_bits(value: u64, bits: usize) -> u64 {
        value & ((1u64 << bits) - 1)
    }

    /// Hashes done by inserting `index`.
    fn insert(&mut self, index: u64) -> u64 {
        let b = Self::slot(index);
        let hashes =
            self.slots[..b].iter().flatten().map(|&known| u64::from(Self::low_bits(known, b).count_ones())).sum();
        self.slots[b] = Some(index);
        hashes
    }

    /// Hashes done by looking up `index`.
    fn get(&self, index: u64) -> u64 {
        self.slots
            .iter()
            .enumerate()
            .find_map(|(b, slot)| {
                let known = (*slot)?;
                let mask = !((1u64 << b) - 1);
                (index & mask == known).then(|| u64::from(Self::low_bits(index, b).count_ones()))
            })
            .expect("revealed index")
    }
}

fn floor(c: &mut Criterion) {
    let secp = Secp256k1::new();
    let sk = SecretKey::from_slice(&[0x42; 32]).expect("key");
    let pk = PublicKey::from_secret_key(&secp, &sk);
    let other = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[0x43; 32]).unwrap());
    let tweak = Scalar::from_be_bytes(sha256::Hash::hash(b"tweak").to_byte_array()).unwrap();
    let msg = Message::from_digest(sha256::Hash::hash(b"message").to_byte_array());

    // A real 1-in-1-out P2WSH spend: the first HTLC transaction of a commitment.
    let channel = Channel::new();
    let commitment = build(&channel.params(ChannelType::StaticRemoteKey), &channel.keys(), &htlcs(1));
    let htlc_tx = commitment.htlc_txs().remove(0);

    let mut g = c.benchmark_group("floor");
    g.sample_size(50).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    g.bench_function("ecdsa_sign", |b| b.iter(|| secp.sign_ecdsa(black_box(&msg), black_box(&sk))));
    // Verification is variable-time: checking the same signature over and over lets the branch
    // predictor learn it. Cycle through distinct (message, signature, key) triples instead, as a
    // commitment's HTLC signatures are.
    let triples: Vec<_> = (0u8..64)
        .map(|i| {
            let sk = SecretKey::from_slice(&sha256::Hash::hash(&[i, 1]).to_byte_array()).unwrap();
            let msg = Message::from_digest(sha256::Hash::hash(&[i, 2]).to_byte_array());
            (msg, secp.sign_ecdsa(&msg, &sk), PublicKey::from_secret_key(&secp, &sk))
        })
        .collect();
    g.bench_function("ecdsa_verify", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % triples.len();
            let (msg, sig, pk) = &triples[i];
            secp.verify_ecdsa(black_box(msg), black_box(sig), black_box(pk))
        })
    });
    g.bench_function("pubkey_add_exp_tweak", |b| b.iter(|| black_box(pk).add_exp_tweak(&secp, black_box(&tweak))));
    g.bench_function("pubkey_mul_tweak", |b| b.iter(|| black_box(pk).mul_tweak(&secp, black_box(&tweak))));
    g.bench_function("pubkey_combine", |b| b.iter(|| black_box(pk).combine(black_box(&other))));
    g.bench_function("point_from_secret", |b| b.iter(|| PublicKey::from_secret_key(&secp, black_box(&sk))));
    g.bench_function("p2wsh_sighash_1in_1out", |b| {
        b.iter(|| {
            SighashCache::new(black_box(&htlc_tx.tx)).p2wsh_signature_hash(
                0,
                htlc_tx.htlc_script.as_script(),
                htlc_tx.input_value,
                EcdsaSighashType::All,
            )
        })
    });
    g.bench_function("sha256_32B", |b| b.iter(|| sha256::Hash::hash(black_box(&[0x5a; 32]))));
    g.bench_function("sha256_66B", |b| b.iter(|| sha256::Hash::hash(black_box(&[0x5a; 66]))));
    g.bench_function("sha256_1KiB", |b| b.iter(|| sha256::Hash::hash(black_box(&[0x5a; 1024]))));
    g.finish();
}

fn core(c: &mut Criterion) {
    let channel = Channel::new();
    let secp = channel.holder.secp();
    let keys = channel.keys();
    let static_params = channel.params(ChannelType::StaticRemoteKey);
    let anchor_params = channel.params(ChannelType::AnchorsZeroFeeHtlc);

    let mut g = c.benchmark_group("core");
    g.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));

    for n in HTLC_COUNTS {
        let h = htlcs(n);
        for (name, params) in [("static_remotekey", &static_params), ("anchors", &anchor_params)] {
            let built = build(params, &keys, &h);
            assert_eq!(built.htlc_txs().len(), n, "every HTLC is untrimmed");
            eprintln!(
                "work: build_commitment/{name}/{n}: {} outputs, {} SHA-256 blocks (scripts + txid)",
                built.tx().output.len(),
                build_hash_blocks(&built)
            );
            g.bench_function(format!("build_commitment/{name}/{n}"), |b| {
                b.iter(|| build(black_box(params), black_box(&keys), black_box(&h)))
            });
        }
    }

    for n in HTLC_COUNTS {
        let h = htlcs(n);
        let mut cases = vec![("static_remotekey", &static_params)];
        if n == 483 {
            cases.push(("anchors", &anchor_params));
        }
        for (name, params) in cases {
            let built = build(params, &keys, &h);
            g.bench_function(format!("sign_commitment/{name}/{n}"), |b| {
                b.iter(|| sign_counterparty_commitment(&channel.peer, black_box(&built)).unwrap())
            });
        }
    }

    for n in [10, 100] {
        let built = build(&static_params, &keys, &htlcs(n));
        let sigs = sign_counterparty_commitment(&channel.peer, &built).unwrap();
        let peer_funding = channel.peer_keys.funding;
        verify_holder_commitment(secp, built.clone(), &peer_funding, sigs.clone()).expect("signatures verify");
        g.bench_function(format!("verify_commitment/static_remotekey/{n}"), |b| {
            b.iter_batched(
                || (built.clone(), sigs.clone()),
                |(built, sigs)| verify_holder_commitment(secp, built, &peer_funding, sigs).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }

    // One call of the signer as `sign_counterparty_commitment` makes it for each HTLC.
    let built = build(&static_params, &keys, &htlcs(1));
    let htlc_tx = built.htlc_txs().remove(0);
    let request = SignRequest {
        tx: &htlc_tx.tx,
        input: 0,
        script_code: htlc_tx.htlc_script.as_script(),
        p2wpkh: false,
        value: htlc_tx.input_value,
        sighash_type: EcdsaSighashType::All,
        key: KeyId::Htlc,
        tweak: Tweak::PerCommitment(keys.per_commitment_point),
    };
    g.bench_function("signer_sign_htlc_tx", |b| b.iter(|| channel.peer.sign(black_box(&request)).unwrap()));

    // One input of a penalty transaction: the revocation key of a revoked commitment.
    let revoked = channel.peer.release_per_commitment_secret(Channel::number()).unwrap();
    let penalty = SignRequest { key: KeyId::RevocationBase, tweak: Tweak::Revocation(revoked), ..request };
    g.bench_function("signer_sign_revocation", |b| b.iter(|| channel.holder.sign(black_box(&penalty)).unwrap()));

    let point = keys.per_commitment_point;
    g.bench_function("revocation_pubkey_derive", |b| {
        b.iter(|| RevocationPubkey::derive(secp, black_box(&channel.peer_keys.revocation_basepoint), black_box(&point)))
    });
    g.bench_function("commitment_keys_derive", |b| {
        b.iter(|| CommitmentKeys::derive(secp, black_box(&point), &channel.holder_keys, &channel.peer_keys))
    });

    // Shachain. Commitment 1000's secret index has 42 of its 48 bits set.
    let seed = Seed::from_bytes([0x77; 32]);
    let index = Channel::number().secret_index();
    eprintln!("work: shachain_generate_from_seed: {} SHA-256 calls", index.count_ones());
    g.bench_function("shachain_generate_from_seed", |b| {
        b.iter(|| shachain::generate_from_seed(black_box(&seed), black_box(index)))
    });

    let index_of = |n: u64| shachain::MAX_INDEX - n;
    let secrets: Vec<_> = (0..SHACHAIN_PREFILL + SHACHAIN_BATCH)
        .map(|n| (index_of(n), shachain::generate_from_seed(&seed, index_of(n))))
        .collect();
    let (prefill, batch) = secrets.split_at(SHACHAIN_PREFILL as usize);
    let mut prefilled = SecretStore::new();
    let mut model = ShachainModel::new();
    for (i, s) in prefill {
        prefilled.insert(*i, s).unwrap();
        model.insert(*i);
    }
    let insert_hashes: u64 = batch.iter().map(|(i, _)| model.insert(*i)).sum();
    eprintln!(
        "work: shachain_insert: {:.2} SHA-256 calls per insert (commitments {}..{})",
        insert_hashes as f64 / SHACHAIN_BATCH as f64,
        SHACHAIN_PREFILL,
        SHACHAIN_PREFILL + SHACHAIN_BATCH
    );
    g.throughput(Throughput::Elements(SHACHAIN_BATCH));
    g.bench_function(format!("shachain_insert_x{SHACHAIN_BATCH}"), |b| {
        b.iter_batched_ref(
            || prefilled.clone(),
            |store| {
                for (i, s) in batch {
                    store.insert(*i, s).unwrap();
                }
            },
            BatchSize::SmallInput,
        )
    });

    let mut full = prefilled.clone();
    for (i, s) in batch {
        full.insert(*i, s).unwrap();
    }
    let get_hashes: u64 = secrets.iter().map(|(i, _)| model.get(*i)).sum();
    let lookups = secrets.len() as u64;
    eprintln!(
        "work: shachain_get: {:.2} SHA-256 calls per get (all {lookups} revealed secrets)",
        get_hashes as f64 / lookups as f64
    );
    g.throughput(Throughput::Elements(lookups));
    g.bench_function(format!("shachain_get_x{lookups}"), |b| {
        b.iter(|| {
            for (i, _) in &secrets {
                black_box(full.get(black_box(*i)));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, floor, core);
criterion_main!(benches);
