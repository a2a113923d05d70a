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

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{Message, PublicKey, Scalar, Secp256k1};
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, TxIn, TxOut, Txid};
use paychan::core::commitment::signatures::{sign_counterparty_commitment, CommitmentSignatures};
use paychan::core::commitment::{
    build_commitment, BuiltCommitment, ChannelType, CommitmentHtlc, CommitmentKeys, CommitmentNumber, CommitmentParams,
    CommitmentState, FeeratePerKw, HtlcDirection, ObscuringFactor,
};
use paychan::core::keys::{ChannelSecrets, Seed};
use paychan::core::sign::{InMemorySigner, Signer};
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

/// A commitment key set from the raw secp256k1 calls of BOLT #3's formulas (revocation key: 2
/// `mul_tweak` + `combine`; three `add_exp_tweak`; five SHA-256 of 66 bytes): a fixed reference
/// that does not move when `CommitmentKeys::derive` changes how it computes the same keys.
#[inline(never)]
fn floor_key_set_raw(secp: &Secp256k1<bitcoin::secp256k1::All>, point: &PublicKey, bases: &[PublicKey; 4]) {
    let tweak = |a: &PublicKey, b: &PublicKey| {
        let mut both = [0u8; 66];
        both[..33].copy_from_slice(&a.serialize());
        both[33..].copy_from_slice(&b.serialize());
        Scalar::from_be_bytes(sha256::Hash::hash(&both).to_byte_array()).expect("tweak")
    };
    for _ in 0..FLOOR_N {
        let p = black_box(point);
        let r = &bases[0];
        let a = r.mul_tweak(secp, &tweak(r, p)).expect("a");
        let b = p.mul_tweak(secp, &tweak(p, r)).expect("b");
        black_box(a.combine(&b).expect("revocation"));
        for base in &bases[1..] {
            black_box(base.add_exp_tweak(secp, &tweak(p, base)).expect("tweaked"));
        }
    }
}

/// SHA-256 of 1 KiB: 17 compressions (16 blocks and the padding block).
#[inline(never)]
fn floor_sha256_1k() {
    let data = [0x5au8; 1024];
    for _ in 0..FLOOR_N {
        black_box(sha256::Hash::hash(black_box(&data)));
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

/// `build_commitment` of a 483-HTLC commitment (the BOLT #2 maximum per direction).
#[inline(never)]
fn measured_build(params: &CommitmentParams, keys: &CommitmentKeys, state: &CommitmentState<'_>) -> BuiltCommitment {
    build_commitment(params, keys, state).expect("commitment")
}

/// The 483 HTLC-timeout/-success transactions of that commitment (`BuiltCommitment::htlc_txs`,
/// what `verify_holder_commitment` keeps for a force close).
#[inline(never)]
fn measured_htlc_txs(built: &BuiltCommitment) -> usize {
    black_box(built.htlc_txs()).len()
}

/// `sign_counterparty_commitment` of that commitment: the funding signature and 483 HTLC
/// signatures.
#[inline(never)]
fn measured_sign(signer: &InMemorySigner, built: &BuiltCommitment) -> CommitmentSignatures {
    sign_counterparty_commitment(signer, built).expect("signatures")
}

/// One user action of the lifecycle: its effects, and whether A acted.
type Step = Box<dyn FnMut(&mut Pair) -> (Effects, bool)>;

fn persisted(fx: &Effects) -> usize {
    fx.update.as_ref().map_or(0, paychan::driving::StateUpdate::written_bytes)
}

fn main() {
    // Which part to run: `floor`, `lifecycle`, `commit100`, `commit1`, `commit0`, `core483`,
    // `bytes`, `blocks483`, or all of them (no argument).
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
    if part("commit0") {
        commit0_part();
    }
    if part("core483") {
        core483_part();
    }
    if part("bytes") {
        bytes_part();
    }
    if part("blocks483") {
        blocks483_part();
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
    let bases = [
        *k2.revocation_basepoint.public_key(),
        *k1.delayed_payment_basepoint.public_key(),
        *k1.htlc_basepoint.public_key(),
        *k2.htlc_basepoint.public_key(),
    ];
    floor_key_set_raw(&secp, point.public_key(), &bases);
    floor_sha256_1k();
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

/// A commitment with no HTLC: A (the funder) changes the fee rate, then signs (`measured_commit_a`)
/// and B receives it (`measured_commit_b`: verify, revoke, counter-sign).
fn commit0_part() {
    let mut base = open();
    let fx = base.a.ch.update_fee(2_000).expect("update_fee");
    let _ = deliver(fx, &mut base.b);
    for _ in 0..3 {
        let mut p = base.clone();
        let fx = measured_commit_a(&mut p);
        black_box(measured_commit_b(fx, &mut p));
        black_box(p);
    }
}

/// The parties, keys and 483 HTLCs of the `core483` part (as `benches/core.rs`:
/// static_remotekey, alternately offered and received, every HTLC untrimmed).
fn core483_setup() -> (InMemorySigner, CommitmentParams, CommitmentKeys, Vec<CommitmentHtlc>) {
    let seed = Seed::from_bytes([0x5a; 32]);
    let holder = InMemorySigner::new(ChannelSecrets::from_seed(&seed, 0));
    let peer = InMemorySigner::new(ChannelSecrets::from_seed(&seed, 1));
    let (hk, pk) = (*holder.pubkeys(), *peer.pubkeys());
    let number = CommitmentNumber::new(1000).expect("n");
    let point = holder.per_commitment_point(number).expect("point");
    let keys = CommitmentKeys::derive(holder.secp(), &point, &hk, &pk).expect("keys");
    let params = CommitmentParams {
        channel_type: ChannelType::StaticRemoteKey,
        funding_outpoint: OutPoint { txid: Txid::from_byte_array([0x11; 32]), vout: 1 },
        funding_value: Amount::from_sat(10_000_000),
        broadcaster_is_funder: true,
        to_self_delay: 144,
        dust_limit: Amount::from_sat(546),
        obscuring_factor: ObscuringFactor::new(&hk.payment_basepoint, &pk.payment_basepoint),
        broadcaster: hk,
        countersignatory: pk,
    };
    let htlcs = (0..483u64)
        .map(|i| {
            let mut preimage = [0u8; 32];
            preimage[..8].copy_from_slice(&i.to_be_bytes());
            CommitmentHtlc::new(
                if i % 2 == 0 { HtlcDirection::Offered } else { HtlcDirection::Received },
                MilliSats::from_msat(5_000_000 + 1_000 * i),
                PaymentPreimage(preimage).hash(),
                800_000 + (i as u32 % 50),
            )
        })
        .collect();
    (peer, params, keys, htlcs)
}

fn core483_state(htlcs: &[CommitmentHtlc]) -> CommitmentState<'_> {
    let in_htlcs: u64 = htlcs.iter().map(|h| h.amount().to_msat()).sum();
    let rest = 10_000_000_000 - in_htlcs;
    CommitmentState {
        number: CommitmentNumber::new(1000).expect("n"),
        to_broadcaster: MilliSats::from_msat(rest / 10 * 6),
        to_countersignatory: MilliSats::from_msat(rest - rest / 10 * 6),
        feerate: FeeratePerKw(2_500),
        htlcs,
    }
}

/// `build_commitment` with 483 HTLCs three times, its HTLC transactions three times, then signing its 483 HTLC transactions twice.
fn core483_part() {
    let (peer, params, keys, htlcs) = core483_setup();
    let state = core483_state(&htlcs);
    let mut built = None;
    for _ in 0..3 {
        built = Some(measured_build(&params, &keys, &state));
    }
    let built = built.expect("built");
    for _ in 0..3 {
        assert_eq!(measured_htlc_txs(&built), 483, "every HTLC is untrimmed");
    }
    for _ in 0..2 {
        black_box(measured_sign(&peer, &built));
    }
}

/// The SHA-256 compressions the 483-HTLC build cannot avoid: one hash of each witness script (its
/// P2WSH output) and the double hash of the transaction (its txid).
fn blocks483_part() {
    let blocks = |len: usize| (len + 9).div_ceil(64);
    let (_, params, keys, htlcs) = core483_setup();
    let built = build_commitment(&params, &keys, &core483_state(&htlcs)).expect("commitment");
    let scripts: usize =
        built.outputs().iter().filter_map(|o| o.witness_script.as_ref()).map(|s| blocks(s.as_bytes().len())).sum();
    let tx_len = bitcoin::consensus::encode::serialize(built.tx()).len();
    println!("core483: {} SHA-256 blocks", scripts + blocks(tx_len) + 1);
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
