//! The simulated chain's relay policy and fee market (`testing::policy`, `testing::market`):
//! every policy rule with a transaction it accepts and one it refuses, the replacement rules
//! one by one, TRUC limits, a zero-fee version 3 parent with a pay-to-anchor output confirmed
//! by its child, and blocks that only mine packages paying the fee curve's minimum. Every
//! transaction also goes through Bitcoin Core's interpreter, as the chain always does.

use bitcoin::hashes::Hash;
use bitcoin::transaction::Version;
use bitcoin::{
    absolute, Amount, FeeRate, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, WScriptHash, Witness,
};
use paychan::testing::chain::{Chain, Reject};
use paychan::testing::market::{Estimator, FeeCurve, FeeMarket};
use paychan::testing::policy::{
    self, check_standard, dust_threshold, vsize, PackageReject, Policy, PolicyReject, RbfReject, TrucViolation,
};
use paychan::testing::wallet::Wallet;

const START: u32 = 1_000;

fn sat_vb(n: u64) -> FeeRate {
    FeeRate::from_sat_per_kwu(250 * n)
}

/// How a coin is spent.
#[derive(Clone)]
enum Key {
    /// By the test's wallet (P2WPKH).
    Wallet,
    /// Pay-to-anchor: anyone, empty witness.
    Anchor,
    /// A P2WSH coin of `script`, spent with `stack` then the script.
    Script(ScriptBuf, Vec<Vec<u8>>),
    /// Whatever witness is given (for non-standard outputs).
    Raw(Witness),
}

#[derive(Clone)]
struct Coin {
    op: OutPoint,
    out: TxOut,
    key: Key,
}

struct T {
    chain: Chain,
    wallet: Wallet,
    credited: u8,
}

impl T {
    fn new(policy: Option<Policy>, market: Option<FeeMarket>) -> Self {
        let mut chain = Chain::at(START);
        if let Some(p) = policy {
            chain = chain.with_policy(p);
        }
        if let Some(m) = market {
            chain = chain.with_market(m);
        }
        T { chain, wallet: Wallet::new(7), credited: 0 }
    }

    fn policy() -> Self {
        T::new(Some(Policy::CORE_29), None)
    }

    fn fund(&mut self, sat: u64) -> Coin {
        let (op, out) = self.wallet.fund(&mut self.chain, Amount::from_sat(sat));
        Coin { op, out, key: Key::Wallet }
    }

    /// A confirmed output paying `script` (by a transaction out of thin air).
    fn credit(&mut self, script: ScriptBuf, sat: u64, key: Key) -> Coin {
        self.credited += 1;
        let tx = Transaction {
            version: Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint { txid: Txid::from_byte_array([self.credited; 32]), vout: 0 },
                ..TxIn::default()
            }],
            output: vec![TxOut { value: Amount::from_sat(sat), script_pubkey: script }],
        };
        self.chain.credit(&tx);
        Coin { op: OutPoint { txid: tx.compute_txid(), vout: 0 }, out: tx.output[0].clone(), key }
    }

    fn sign(&self, mut tx: Transaction, coins: &[&Coin]) -> Transaction {
        for (i, c) in coins.iter().enumerate() {
            match &c.key {
                Key::Wallet => self.wallet.sign_input(&mut tx, i, &c.out),
                Key::Anchor => {}
                Key::Script(script, stack) => {
                    let mut w = Witness::new();
                    for item in stack {
                        w.push(item);
                    }
                    w.push(script.as_bytes());
                    tx.input[i].witness = w;
                }
                Key::Raw(w) => tx.input[i].witness = w.clone(),
            }
        }
        tx
    }

    /// A transaction of `version` spending `coins` to `outs`, the last output taking the change
    /// so that the fee is `fee(vsize)` exactly (iterated: signature sizes vary by a byte).
    fn pay(&self, version: i32, coins: &[&Coin], mut outs: Vec<TxOut>, fee: impl Fn(u64) -> u64) -> Transaction {
        let total: u64 = coins.iter().map(|c| c.out.value.to_sat()).sum();
        let fixed: u64 = outs[..outs.len() - 1].iter().map(|o| o.value.to_sat()).sum();
        let mut want = 0;
        for round in 0..32 {
            let last = outs.len() - 1;
            outs[last].value = Amount::from_sat(total - fixed - want);
            let tx = self.sign(unsigned(version, coins, outs.clone()), coins);
            let f = fee(vsize(&tx));
            // Exact when it settles; with many signatures it may oscillate by a vbyte, then a
            // fee a few satoshi above the target is taken.
            if f == want || (round >= 8 && f < want) {
                return tx;
            }
            want = f;
        }
        panic!("fee did not settle");
    }

    fn out(&self, sat: u64) -> TxOut {
        TxOut { value: Amount::from_sat(sat), script_pubkey: self.wallet.script() }
    }
}

fn unsigned(version: i32, coins: &[&Coin], outs: Vec<TxOut>) -> Transaction {
    Transaction {
        version: Version(version),
        lock_time: absolute::LockTime::ZERO,
        input: coins
            .iter()
            .map(|c| TxIn { previous_output: c.op, sequence: Sequence::MAX, ..TxIn::default() })
            .collect(),
        output: outs,
    }
}

fn coin_of(tx: &Transaction, vout: u32, key: Key) -> Coin {
    Coin { op: OutPoint { txid: tx.compute_txid(), vout }, out: tx.output[vout as usize].clone(), key }
}

fn at_rate(n: u64) -> impl Fn(u64) -> u64 {
    move |v| v * n
}

fn refused(r: Result<(), Reject>) -> PolicyReject {
    match r {
        Err(Reject::Policy(p)) => p,
        other => panic!("expected a policy refusal, got {other:?}"),
    }
}

fn in_mempool(chain: &Chain, tx: &Transaction) -> bool {
    chain.mempool().iter().any(|m| m.compute_txid() == tx.compute_txid())
}

/// Submits `tx` expecting a policy refusal, and checks the mempool is left exactly as it was.
fn refuse(t: &mut T, tx: &Transaction) -> PolicyReject {
    let before = t.chain.mempool().to_vec();
    let r = refused(t.chain.submit(tx));
    assert_eq!(t.chain.mempool(), &before[..], "a refused transaction changes nothing");
    r
}

fn p2wsh(script: &ScriptBuf) -> ScriptBuf {
    ScriptBuf::new_p2wsh(&WScriptHash::hash(script.as_bytes()))
}

fn op_return(data_len: usize) -> ScriptBuf {
    let mut b = vec![0x6a];
    if data_len <= 75 {
        b.push(data_len as u8);
    } else {
        b.extend([0x4c, data_len as u8]);
    }
    b.extend(vec![0xab; data_len]);
    ScriptBuf::from_bytes(b)
}

// ---------------------------------------------------------------- the default is unchanged

#[test]
fn without_policy_or_market_the_chain_behaves_as_before() {
    let mut t = T::new(None, None);
    let c = t.fund(100_000);
    // A zero-fee, dust-paying transaction is fine by consensus.
    let tx = t.pay(2, &[&c], vec![TxOut { value: Amount::ZERO, script_pubkey: ScriptBuf::new_p2a() }, t.out(0)], |_| 0);
    t.chain.submit(&tx).expect("no policy: consensus only");
    // A child of an unconfirmed transaction is not accepted (inputs must be confirmed).
    let child = t.pay(2, &[&coin_of(&tx, 1, Key::Wallet)], vec![t.out(0)], at_rate(2));
    assert!(matches!(t.chain.submit(&child), Err(Reject::MissingOrSpent(_))));
    // Versions other than 2 and 3 are refused by the chain's own rule.
    let c2 = t.fund(50_000);
    let v1 = t.pay(1, &[&c2], vec![t.out(0)], at_rate(2));
    assert_eq!(t.chain.submit(&v1), Err(Reject::Version));
    assert_eq!(t.chain.mine_block(), vec![tx]);
}

// ---------------------------------------------------------------- standardness

#[test]
fn every_standard_output_type_is_relayed() {
    let mut t = T::policy();
    let c = t.fund(1_000_000);
    let w = t.wallet.script();
    let script = ScriptBuf::from_bytes(vec![0x51]);
    let outs = vec![
        TxOut { value: Amount::from_sat(294), script_pubkey: w.clone() },
        TxOut { value: Amount::from_sat(330), script_pubkey: p2wsh(&script) },
        TxOut {
            value: Amount::from_sat(330),
            script_pubkey: ScriptBuf::from_bytes([&[0x51, 0x20][..], &[9; 32]].concat()),
        },
        TxOut {
            value: Amount::from_sat(546),
            script_pubkey: ScriptBuf::new_p2pkh(&bitcoin::PubkeyHash::from_byte_array([1; 20])),
        },
        TxOut {
            value: Amount::from_sat(540),
            script_pubkey: ScriptBuf::new_p2sh(&bitcoin::ScriptHash::from_byte_array([2; 20])),
        },
        TxOut { value: Amount::from_sat(240), script_pubkey: ScriptBuf::new_p2a() },
        TxOut { value: Amount::ZERO, script_pubkey: op_return(80) },
        t.out(0),
    ];
    assert_eq!(op_return(80).len(), 83);
    let tx = t.pay(2, &[&c], outs, at_rate(1));
    t.chain.submit(&tx).expect("all standard, none dust, 1 sat/vB");
}

#[test]
fn non_standard_outputs_are_refused() {
    let mut t = T::policy();
    for (i, (script, expected)) in [
        (ScriptBuf::from_bytes(vec![0x51]), PolicyReject::NonStandardOutput { output: 0 }),
        (op_return(81), PolicyReject::NonStandardOutput { output: 0 }),
        (ScriptBuf::from_bytes([&[0x00, 0x28][..], &[1; 40]].concat()), PolicyReject::NonStandardOutput { output: 0 }),
    ]
    .into_iter()
    .enumerate()
    {
        let c = t.fund(100_000 + i as u64);
        let tx = t.pay(
            2,
            &[&c],
            vec![TxOut { value: Amount::from_sat(1_000), script_pubkey: script }, t.out(0)],
            at_rate(1),
        );
        assert!(t.chain.check(&tx).is_ok(), "valid by consensus");
        assert_eq!(refuse(&mut t, &tx), expected);
    }
    let c = t.fund(100_000);
    let two = vec![
        TxOut { value: Amount::ZERO, script_pubkey: op_return(10) },
        TxOut { value: Amount::ZERO, script_pubkey: op_return(10) },
        t.out(0),
    ];
    let tx = t.pay(2, &[&c], two, at_rate(1));
    assert_eq!(refuse(&mut t, &tx), PolicyReject::MultiOpReturn);
}

#[test]
fn dust_thresholds_per_output_type() {
    let f = Policy::CORE_29.dust_relay_feerate;
    let w = Wallet::new(7).script();
    assert_eq!(dust_threshold(&w, f).to_sat(), 294);
    assert_eq!(dust_threshold(&p2wsh(&ScriptBuf::new()), f).to_sat(), 330);
    assert_eq!(dust_threshold(&ScriptBuf::new_p2a(), f).to_sat(), 240);
    assert_eq!(dust_threshold(&ScriptBuf::new_p2pkh(&bitcoin::PubkeyHash::all_zeros()), f).to_sat(), 546);
    assert_eq!(dust_threshold(&ScriptBuf::new_p2sh(&bitcoin::ScriptHash::all_zeros()), f).to_sat(), 540);
    assert_eq!(dust_threshold(&op_return(20), f).to_sat(), 0);
}

#[test]
fn a_dust_output_on_a_fee_paying_transaction_is_refused() {
    for policy in [Policy::CORE_28, Policy::CORE_29] {
        let mut t = T::new(Some(policy), None);
        let c = t.fund(100_000);
        let ok = t.pay(2, &[&c], vec![t.out(294), t.out(0)], at_rate(1));
        t.chain.submit(&ok).expect("294 sat to P2WPKH is not dust");
        let c = t.fund(100_000);
        let dust = t.pay(2, &[&c], vec![t.out(293), t.out(0)], at_rate(1));
        let expected = if policy.ephemeral_dust {
            PolicyReject::DustWithFee { fee: policy::fee_at(policy.min_relay_feerate, vsize(&dust)) }
        } else {
            PolicyReject::Dust { output: 0, value: 293, threshold: 294 }
        };
        assert_eq!(refuse(&mut t, &dust), expected);
        // Two dust outputs: never (Core 29 allows one, at zero fee).
        let c = t.fund(100_000);
        let two = t.pay(2, &[&c], vec![t.out(1), t.out(1), t.out(0)], at_rate(1));
        let r = refuse(&mut t, &two);
        assert!(matches!(r, PolicyReject::TooMuchDust | PolicyReject::Dust { output: 0, .. }), "{r:?}");
    }
}

#[test]
fn below_the_minimum_relay_feerate_is_refused() {
    let mut t = T::policy();
    let c = t.fund(100_000);
    let low = t.pay(2, &[&c], vec![t.out(0)], |v| v - 1);
    let r = refuse(&mut t, &low);
    let v = vsize(&low);
    assert_eq!(r, PolicyReject::BelowMinRelay { fee: v - 1, vsize: v, needed: v });
    let ok = t.pay(2, &[&c], vec![t.out(0)], at_rate(1));
    t.chain.submit(&ok).expect("exactly 1 sat/vB");
}

#[test]
fn versions_other_than_2_and_3_are_refused() {
    let mut t = T::policy();
    for version in [1, 4] {
        let c = t.fund(100_000 + version as u64);
        let tx = t.pay(version, &[&c], vec![t.out(0)], at_rate(1));
        assert_eq!(refuse(&mut t, &tx), PolicyReject::Version(version));
    }
    for version in [2, 3] {
        let c = t.fund(200_000 + version as u64);
        let tx = t.pay(version, &[&c], vec![t.out(0)], at_rate(1));
        t.chain.submit(&tx).expect("version 2 and 3 are standard");
    }
}

#[test]
fn a_transaction_smaller_than_65_bytes_is_refused() {
    let mut t = T::policy();
    let c = t.fund(100_000);
    // One input, one empty OP_RETURN: 61 bytes without witness.
    let tiny =
        t.pay(2, &[&c], vec![TxOut { value: Amount::ZERO, script_pubkey: ScriptBuf::from_bytes(vec![0x6a]) }], |_| {
            100_000
        });
    assert_eq!(refuse(&mut t, &tiny), PolicyReject::TooSmall { size: 61 });
    let c = t.fund(100_000);
    let small = t.pay(2, &[&c], vec![TxOut { value: Amount::ZERO, script_pubkey: op_return(4) }], |_| 100_000);
    t.chain.submit(&small).expect("65 bytes");
}

#[test]
fn a_non_push_script_sig_is_refused() {
    let t = T::policy();
    let mut tx = unsigned(2, &[], vec![t.out(1_000)]);
    tx.input.push(TxIn { script_sig: ScriptBuf::from_bytes(vec![0x01, 0x01]), ..TxIn::default() });
    assert_eq!(check_standard(&tx, &Policy::CORE_29), Ok(()));
    tx.input[0].script_sig = ScriptBuf::from_bytes(vec![0x61]); // OP_NOP
    assert_eq!(check_standard(&tx, &Policy::CORE_29), Err(PolicyReject::ScriptSig { input: 0 }));
    tx.input[0].script_sig = ScriptBuf::from_bytes([&[0x4d, 0x73, 0x06][..], &[0; 1_651]].concat());
    assert_eq!(check_standard(&tx, &Policy::CORE_29), Err(PolicyReject::ScriptSig { input: 0 }));
}

#[test]
fn spending_a_future_witness_version_is_refused_but_pay_to_anchor_is_not() {
    let mut t = T::policy();
    let v2 = t.credit(ScriptBuf::from_bytes([&[0x52, 0x02][..], &[1, 2]].concat()), 10_000, Key::Raw(Witness::new()));
    let fee = t.fund(10_000);
    let tx = t.pay(2, &[&v2, &fee], vec![t.out(0)], at_rate(1));
    assert!(t.chain.check(&tx).is_ok(), "anyone can spend it by consensus");
    assert_eq!(refuse(&mut t, &tx), PolicyReject::NonStandardInput { input: 0 });
    let p2a = t.credit(ScriptBuf::new_p2a(), 10_000, Key::Anchor);
    let tx = t.pay(2, &[&p2a, &fee], vec![t.out(0)], at_rate(1));
    t.chain.submit(&tx).expect("a P2A spend with an empty witness is standard");
}

#[test]
fn a_witness_stuffed_with_junk_is_refused() {
    let mut t = T::policy();
    // A pay-to-anchor spent with a witness: consensus ignores it, policy refuses it.
    let p2a = t.credit(ScriptBuf::new_p2a(), 10_000, Key::Raw(Witness::from_slice(&[[0u8; 100]])));
    let fee = t.fund(10_000);
    let tx = t.pay(2, &[&p2a, &fee], vec![t.out(0)], at_rate(1));
    assert!(t.chain.check(&tx).is_ok());
    assert_eq!(refuse(&mut t, &tx), PolicyReject::NonStandardWitness { input: 0 });
    // OP_DROP OP_TRUE: any one item satisfies it; 80 bytes is standard, 81 is not.
    let script = ScriptBuf::from_bytes(vec![0x75, 0x51]);
    for (len, ok) in [(80usize, true), (81, false)] {
        let c = t.credit(p2wsh(&script), 10_000, Key::Script(script.clone(), vec![vec![7; len]]));
        let tx = t.pay(2, &[&c], vec![t.out(0)], at_rate(1));
        assert!(t.chain.check(&tx).is_ok());
        if ok {
            t.chain.submit(&tx).expect("an 80-byte item");
        } else {
            assert_eq!(refuse(&mut t, &tx), PolicyReject::NonStandardWitness { input: 0 });
        }
    }
}

#[test]
fn a_chain_of_more_than_25_unconfirmed_transactions_is_refused() {
    let mut t = T::policy();
    let mut coin = t.fund(1_000_000);
    for _ in 0..25 {
        let tx = t.pay(2, &[&coin], vec![t.out(0)], at_rate(1));
        t.chain.submit(&tx).expect("within the chain limit");
        coin = coin_of(&tx, 0, Key::Wallet);
    }
    let tx = t.pay(2, &[&coin], vec![t.out(0)], at_rate(1));
    assert_eq!(refuse(&mut t, &tx), PolicyReject::TooLongChain);
    t.chain.mine_block();
    t.chain.submit(&tx).expect("fine once its ancestors confirmed");
}

// ---------------------------------------------------------------- replacement (BIP125, full RBF)

struct Rbf {
    t: T,
    a: Coin,
    b: Coin,
    original: Transaction,
}

/// A mempool transaction spending two wallet coins at 5 sat/vB.
fn rbf_setup() -> Rbf {
    let mut t = T::policy();
    let a = t.fund(100_000);
    let b = t.fund(100_000);
    let original = t.pay(2, &[&a, &b], vec![t.out(0)], at_rate(5));
    t.chain.submit(&original).unwrap();
    Rbf { t, a, b, original }
}

#[test]
fn a_replacement_paying_more_evicts_the_original() {
    let Rbf { mut t, a, b, original } = rbf_setup();
    let old_fee = t.chain.fee(&original).unwrap().to_sat();
    let v = vsize(&original);
    // Same shape: the original's fee plus 1 sat/vB of its own size (and a higher feerate).
    let replacement = t.pay(2, &[&a, &b], vec![t.out(1_000), t.out(0)], |nv| old_fee + nv);
    assert!(vsize(&replacement) > v);
    t.chain.submit(&replacement).expect("rules 3, 4, 6 met");
    assert!(!in_mempool(&t.chain, &original) && in_mempool(&t.chain, &replacement));
    assert_eq!(t.chain.mine_block(), vec![replacement]);
}

#[test]
fn a_replacement_paying_less_than_it_evicts_is_refused() {
    let Rbf { mut t, a, original, .. } = rbf_setup();
    // Spends one of the two coins: smaller, a higher feerate, but less absolute fee.
    let old_fee = t.chain.fee(&original).unwrap().to_sat();
    let replacement = t.pay(2, &[&a], vec![t.out(0)], at_rate(8));
    let fee = t.chain.fee(&replacement).unwrap().to_sat();
    assert!(fee < old_fee);
    assert_eq!(
        refuse(&mut t, &replacement),
        PolicyReject::Rbf(RbfReject::LessFeeThanEvicted { fee, evicted_fee: old_fee })
    );
}

#[test]
fn a_replacement_without_the_incremental_relay_fee_is_refused() {
    let Rbf { mut t, a, b, original } = rbf_setup();
    let old_fee = t.chain.fee(&original).unwrap().to_sat();
    let replacement = t.pay(2, &[&a, &b], vec![t.out(0)], |nv| old_fee + nv - 1);
    let nv = vsize(&replacement);
    assert_eq!(
        refuse(&mut t, &replacement),
        PolicyReject::Rbf(RbfReject::IncrementTooSmall { additional: nv - 1, needed: nv })
    );
}

#[test]
fn a_larger_replacement_at_a_lower_feerate_is_refused() {
    let Rbf { mut t, a, b, original } = rbf_setup();
    let more: Vec<Coin> = (0..4).map(|i| t.fund(10_000 + i)).collect();
    let old_fee = t.chain.fee(&original).unwrap().to_sat();
    // Four more inputs: more absolute fee (with the increment) but at 4 sat/vB.
    let replacement = t.pay(2, &[&a, &b, &more[0], &more[1], &more[2], &more[3]], vec![t.out(0)], at_rate(4));
    let fee = t.chain.fee(&replacement).unwrap().to_sat();
    assert!(fee > old_fee + vsize(&replacement));
    let r = refuse(&mut t, &replacement);
    assert!(
        matches!(r, PolicyReject::Rbf(RbfReject::FeerateNotHigher { conflict, .. }) if conflict == original.compute_txid()),
        "{r:?}"
    );
}

#[test]
fn a_replacement_adding_an_unconfirmed_input_is_refused() {
    let Rbf { mut t, a, b, original } = rbf_setup();
    let c = t.fund(100_000);
    let other = t.pay(2, &[&c], vec![t.out(0)], at_rate(2));
    t.chain.submit(&other).unwrap();
    let old_fee = t.chain.fee(&original).unwrap().to_sat();
    let unconfirmed = coin_of(&other, 0, Key::Wallet);
    let replacement = t.pay(2, &[&a, &b, &unconfirmed], vec![t.out(0)], |nv| old_fee + 20 * nv);
    assert_eq!(refuse(&mut t, &replacement), PolicyReject::Rbf(RbfReject::AddsUnconfirmed { input: 2 }));
}

#[test]
fn a_replacement_spending_what_it_evicts_is_refused() {
    let Rbf { mut t, a, original, .. } = rbf_setup();
    let own = coin_of(&original, 0, Key::Wallet);
    let replacement = t.pay(2, &[&a, &own], vec![t.out(0)], at_rate(50));
    assert_eq!(
        refuse(&mut t, &replacement),
        PolicyReject::Rbf(RbfReject::SpendsConflicting { txid: original.compute_txid() })
    );
}

#[test]
fn a_replacement_evicting_more_than_100_transactions_is_refused() {
    let mut t = T::policy();
    let coins: Vec<Coin> = (0..101).map(|i| t.fund(10_000 + i)).collect();
    for c in &coins {
        let tx = t.pay(2, &[c], vec![t.out(0)], at_rate(1));
        t.chain.submit(&tx).unwrap();
    }
    let fees: u64 = t.chain.mempool().iter().map(|m| t.chain.fee(m).unwrap().to_sat()).sum();
    let all: Vec<&Coin> = coins.iter().collect();
    let big = t.pay(2, &all, vec![t.out(0)], |nv| fees + 5 * nv);
    assert_eq!(refuse(&mut t, &big), PolicyReject::Rbf(RbfReject::TooManyReplacements { evicted: 101 }));
    // One coin fewer: 100 evictions is the limit, accepted.
    let fees100 = fees - t.chain.fee(&t.chain.mempool()[100]).unwrap().to_sat();
    let hundred = t.pay(2, &all[..100], vec![t.out(0)], |nv| fees100 + 5 * nv);
    t.chain.submit(&hundred).expect("100 evictions");
    assert_eq!(t.chain.mempool().len(), 2);
}

// ---------------------------------------------------------------- TRUC (version 3)

#[test]
fn truc_size_limits() {
    let mut t = T::policy();
    let c = t.fund(10_000_000);
    // 321 outputs of 330 sat: just over 10,000 vB.
    let big = t.pay(3, &[&c], (0..322).map(|_| t.out(330)).collect(), at_rate(1));
    assert!(vsize(&big) > 10_000);
    assert_eq!(refuse(&mut t, &big), PolicyReject::Truc(TrucViolation::TooLarge { vsize: vsize(&big) }));
    let fits = t.pay(3, &[&c], (0..300).map(|_| t.out(330)).collect(), at_rate(1));
    assert!(vsize(&fits) <= 10_000);
    t.chain.submit(&fits).expect("under 10,000 vB");
    // Its child: at most 1,000 vB.
    let parent_out = coin_of(&fits, 299, Key::Wallet);
    let large_child = t.pay(3, &[&parent_out], (0..31).map(|_| t.out(330)).collect(), at_rate(1));
    assert!(vsize(&large_child) > 1_000);
    assert_eq!(
        refuse(&mut t, &large_child),
        PolicyReject::Truc(TrucViolation::ChildTooLarge { vsize: vsize(&large_child) })
    );
    let child = t.pay(3, &[&parent_out], (0..28).map(|_| t.out(330)).collect(), at_rate(1));
    assert!(vsize(&child) <= 1_000);
    t.chain.submit(&child).expect("a small child");
}

#[test]
fn truc_allows_one_unconfirmed_parent_and_one_child() {
    let mut t = T::policy();
    let c = t.fund(1_000_000);
    let parent = t.pay(3, &[&c], vec![t.out(10_000), t.out(0)], at_rate(1));
    t.chain.submit(&parent).unwrap();
    let child = t.pay(3, &[&coin_of(&parent, 1, Key::Wallet)], vec![t.out(0)], at_rate(2));
    t.chain.submit(&child).unwrap();
    // A grandchild has two unconfirmed ancestors.
    let grandchild = t.pay(3, &[&coin_of(&child, 0, Key::Wallet)], vec![t.out(0)], at_rate(2));
    assert_eq!(refuse(&mut t, &grandchild), PolicyReject::Truc(TrucViolation::TooManyAncestors { ancestors: 2 }));
    // A second child competes with the first (sibling eviction): refused if it pays too little…
    let sibling_coin = coin_of(&parent, 0, Key::Wallet);
    let cheap = t.pay(3, &[&sibling_coin], vec![t.out(0)], at_rate(2));
    let r = refuse(&mut t, &cheap);
    assert!(
        matches!(r, PolicyReject::Rbf(RbfReject::FeerateNotHigher { conflict, .. }) if conflict == child.compute_txid()),
        "{r:?}"
    );
    // …and evicts it if it pays for the replacement.
    let child_fee = t.chain.fee(&child).unwrap().to_sat();
    let rich = t.pay(3, &[&sibling_coin], vec![t.out(0)], |v| (child_fee + v).max(3 * v));
    t.chain.submit(&rich).expect("sibling eviction");
    assert!(in_mempool(&t.chain, &rich) && !in_mempool(&t.chain, &child));
    // Once the parent confirms, its outputs are no longer TRUC-limited: the evicted child is
    // accepted again next to its former sibling.
    assert_eq!(t.chain.mine_block(), vec![parent, rich]);
    t.chain.submit(&child).expect("a confirmed parent may have any number of children");
}

#[test]
fn truc_and_non_truc_do_not_mix_unconfirmed() {
    let mut t = T::policy();
    let c = t.fund(1_000_000);
    let v2 = t.pay(2, &[&c], vec![t.out(0)], at_rate(1));
    t.chain.submit(&v2).unwrap();
    let v3_child = t.pay(3, &[&coin_of(&v2, 0, Key::Wallet)], vec![t.out(0)], at_rate(2));
    assert_eq!(
        refuse(&mut t, &v3_child),
        PolicyReject::Truc(TrucViolation::SpendsNonTruc { parent: v2.compute_txid() })
    );
    let c = t.fund(1_000_000);
    let v3 = t.pay(3, &[&c], vec![t.out(0)], at_rate(1));
    t.chain.submit(&v3).unwrap();
    let v2_child = t.pay(2, &[&coin_of(&v3, 0, Key::Wallet)], vec![t.out(0)], at_rate(2));
    assert_eq!(
        refuse(&mut t, &v2_child),
        PolicyReject::Truc(TrucViolation::NonTrucSpendsTruc { parent: v3.compute_txid() })
    );
    t.chain.mine_block();
    // Confirmed parents: any mix.
    t.chain.submit(&v3_child).expect("v3 spending a confirmed v2");
    t.chain.submit(&v2_child).expect("v2 spending a confirmed v3");
}

// ---------------------------------------------------------------- packages, P2A, ephemeral dust

struct Anchored {
    t: T,
    parent: Transaction,
    fee_coin: Coin,
}

/// A zero-fee version 3 parent paying 50,000 sat to the wallet and 0 sat to a P2A output (the
/// shape of a deployable duplex tree transaction).
fn anchored(policy: Policy, market: Option<FeeMarket>) -> Anchored {
    let mut t = T::new(Some(policy), market);
    let c = t.fund(50_000);
    let anchor = TxOut { value: Amount::ZERO, script_pubkey: ScriptBuf::new_p2a() };
    let parent = t.pay(3, &[&c], vec![anchor, t.out(0)], |_| 0);
    let fee_coin = t.fund(100_000);
    Anchored { t, parent, fee_coin }
}

fn cpfp(t: &T, parent: &Transaction, fee_coin: &Coin, package_rate: u64) -> Transaction {
    let anchor = coin_of(parent, 0, Key::Anchor);
    let pv = vsize(parent);
    t.pay(3, &[&anchor, fee_coin], vec![t.out(0)], |cv| package_rate * (pv + cv))
}

#[test]
fn a_zero_fee_truc_parent_with_an_anchor_is_confirmed_by_its_child() {
    let market = FeeMarket::flat(sat_vb(10));
    let Anchored { mut t, parent, fee_coin } = anchored(Policy::CORE_29, Some(market));
    assert_eq!(t.chain.fee(&parent), Some(Amount::ZERO));
    // Alone: below the minimum relay feerate.
    let r = refuse(&mut t, &parent);
    assert!(matches!(r, PolicyReject::BelowMinRelay { fee: 0, .. }), "{r:?}");
    // With a child paying 10 sat/vB for both.
    let child = cpfp(&t, &parent, &fee_coin, 10);
    assert!(vsize(&child) <= 1_000);
    t.chain.submit_package(&[parent.clone(), child.clone()]).expect("1p1c package");
    assert_eq!(t.chain.mempool(), &[parent.clone(), child.clone()]);
    let block = t.chain.mine_block();
    assert_eq!(block, vec![parent.clone(), child.clone()], "mined together, parent first");
    assert_eq!(t.chain.confirmation(&parent.compute_txid()), Some(START + 1));
    // The wallet's 50,000 sat left the parent intact; the child paid the whole fee.
    assert_eq!(parent.output[1].value, Amount::from_sat(50_000));
    let fee = t.chain.fee(&child).map(|f| f.to_sat());
    assert_eq!(fee, None, "inputs spent now");
    assert_eq!(100_000 - child.output[0].value.to_sat(), 10 * (vsize(&parent) + vsize(&child)));
}

#[test]
fn a_package_below_the_minimum_relay_feerate_is_refused() {
    let Anchored { mut t, parent, fee_coin } = anchored(Policy::CORE_29, None);
    let anchor = coin_of(&parent, 0, Key::Anchor);
    let pv = vsize(&parent);
    let child = t.pay(3, &[&anchor, &fee_coin], vec![t.out(0)], |cv| pv + cv - 1);
    let before = t.chain.mempool().to_vec();
    let r = refused(t.chain.submit_package(&[parent.clone(), child.clone()]));
    assert!(matches!(r, PolicyReject::BelowMinRelay { .. }), "{r:?}");
    assert_eq!(t.chain.mempool(), &before[..]);
    let child = cpfp(&t, &parent, &fee_coin, 1);
    t.chain.submit_package(&[parent, child]).expect("exactly 1 sat/vB for the package");
}

#[test]
fn a_child_leaving_the_ephemeral_dust_unspent_is_refused() {
    let Anchored { mut t, parent, fee_coin } = anchored(Policy::CORE_29, None);
    // Spends the parent's 50,000 sat output, not its anchor: the dust would stay in the UTXO set.
    let other = coin_of(&parent, 1, Key::Wallet);
    let pv = vsize(&parent);
    let child = t.pay(3, &[&other, &fee_coin], vec![t.out(0)], |cv| 20 * (pv + cv));
    let r = refused(t.chain.submit_package(&[parent.clone(), child]));
    assert_eq!(r, PolicyReject::MissingEphemeralSpend { parent: parent.compute_txid(), vout: 0 });
    assert!(t.chain.mempool().is_empty());
}

#[test]
fn a_non_truc_zero_fee_parent_cannot_be_carried_by_its_child() {
    let mut t = T::policy();
    let c = t.fund(50_000);
    let anchor = TxOut { value: Amount::from_sat(240), script_pubkey: ScriptBuf::new_p2a() };
    let parent = t.pay(2, &[&c], vec![anchor, t.out(0)], |_| 0);
    let fee_coin = t.fund(100_000);
    let a = coin_of(&parent, 0, Key::Anchor);
    let pv = vsize(&parent);
    let child = t.pay(2, &[&a, &fee_coin], vec![t.out(0)], |cv| 50 * (pv + cv));
    let r = refused(t.chain.submit_package(&[parent, child]));
    assert!(matches!(r, PolicyReject::BelowMinRelay { fee: 0, .. }), "{r:?}");
}

#[test]
fn core_28_refuses_a_zero_value_anchor_and_takes_a_240_sat_one() {
    let Anchored { mut t, parent, .. } = anchored(Policy::CORE_28, None);
    let r = refused(t.chain.submit_package(std::slice::from_ref(&parent)));
    assert_eq!(r, PolicyReject::Dust { output: 0, value: 0, threshold: 240 });
    let c = t.fund(60_000);
    let anchor = TxOut { value: Amount::from_sat(240), script_pubkey: ScriptBuf::new_p2a() };
    let parent = t.pay(3, &[&c], vec![anchor, t.out(0)], |_| 0);
    let fee_coin = t.fund(100_000);
    let child = cpfp(&t, &parent, &fee_coin, 3);
    t.chain.submit_package(&[parent, child]).expect("a 240 sat P2A is not dust");
}

#[test]
fn malformed_packages_are_refused() {
    let Anchored { mut t, parent, fee_coin } = anchored(Policy::CORE_29, None);
    let unrelated = t.pay(3, &[&fee_coin], vec![t.out(0)], at_rate(5));
    let r = refused(t.chain.submit_package(&[parent.clone(), unrelated]));
    assert_eq!(r, PolicyReject::Package(PackageReject::NotChildWithParent));
    let child = cpfp(&t, &parent, &fee_coin, 5);
    let r = refused(t.chain.submit_package(&[child.clone(), parent.clone()]));
    assert_eq!(r, PolicyReject::Package(PackageReject::NotChildWithParent));
    let r = refused(t.chain.submit_package(&[parent.clone(), child.clone(), child]));
    assert_eq!(r, PolicyReject::Package(PackageReject::NotChildWithParent));
    assert!(t.chain.mempool().is_empty());
}

#[test]
fn a_rebumped_anchor_child_replaces_the_previous_one() {
    let Anchored { mut t, parent, fee_coin } = anchored(Policy::CORE_29, None);
    let first = cpfp(&t, &parent, &fee_coin, 2);
    t.chain.submit_package(&[parent.clone(), first.clone()]).unwrap();
    // Same anchor, same fee coin: a plain replacement of the child (the parent stays).
    let same = cpfp(&t, &parent, &fee_coin, 2);
    assert_eq!(same, first);
    let second = cpfp(&t, &parent, &fee_coin, 6);
    t.chain.submit_package(&[parent.clone(), second.clone()]).expect("the child is replaced");
    assert_eq!(t.chain.mempool(), &[parent, second]);
}

// ---------------------------------------------------------------- the fee market

#[test]
fn blocks_mine_only_packages_paying_the_curve_minimum_and_count_cpfp() {
    let mut t = T::new(Some(Policy::CORE_29), Some(FeeMarket::flat(sat_vb(10))));
    let c = t.fund(100_000);
    let low = t.pay(2, &[&c], vec![t.out(0)], at_rate(2));
    t.chain.submit(&low).unwrap();
    assert!(t.chain.mine_block().is_empty(), "2 sat/vB waits under a 10 sat/vB market");
    assert!(in_mempool(&t.chain, &low));
    // A child paying for both (CPFP): mined together.
    let lv = vsize(&low);
    let child = t.pay(2, &[&coin_of(&low, 0, Key::Wallet)], vec![t.out(0)], |cv| 10 * (lv + cv) - 2 * lv);
    t.chain.submit(&child).unwrap();
    assert_eq!(t.chain.mine_block(), vec![low, child]);
}

#[test]
fn a_fixed_fee_transaction_confirms_in_a_flat_market_but_waits_forever_in_a_100x_spike() {
    let build = |market: FeeMarket| {
        let mut t = T::new(Some(Policy::CORE_29), Some(market));
        let c = t.fund(100_000);
        // Signed once at 5 sat/vB, as every pre-signed unilateral transaction is today.
        let tx = t.pay(2, &[&c], vec![t.out(0)], at_rate(5));
        (t, tx)
    };
    let (mut flat, tx) = build(FeeMarket::flat(sat_vb(5)));
    flat.chain.submit(&tx).unwrap();
    assert_eq!(flat.chain.mine_block(), vec![tx.clone()]);

    // The market is at 5 sat/vB when it is signed and broadcast; two blocks later it has risen
    // 100-fold (10× after one block) and stays there.
    let spike = FeeCurve::spike(sat_vb(5), 100, START + 1, 2, u32::MAX);
    assert_eq!(spike.rate_at(START + 1), sat_vb(50));
    let (mut spiked, tx) = build(FeeMarket::new(spike));
    spiked.chain.submit(&tx).unwrap();
    for _ in 0..500 {
        assert!(spiked.chain.mine_block().is_empty());
    }
    assert!(in_mempool(&spiked.chain, &tx) && spiked.chain.confirmation(&tx.compute_txid()).is_none());
    assert_eq!(spiked.chain.next_block_min_feerate(), Some(sat_vb(500)));
    assert_eq!(spiked.chain.fee_estimate(6), Some(sat_vb(500)));
}

#[test]
fn conflicting_transactions_without_policy_the_higher_feerate_wins_the_block() {
    let mut t = T::new(None, Some(FeeMarket::flat(sat_vb(1))));
    let c = t.fund(100_000);
    let low = t.pay(2, &[&c], vec![t.out(0)], at_rate(2));
    let high = t.pay(2, &[&c], vec![t.out(1_000), t.out(0)], at_rate(3));
    t.chain.submit(&low).unwrap();
    t.chain.submit(&high).unwrap();
    assert_eq!(t.chain.mempool().len(), 2, "no policy: side by side");
    assert_eq!(t.chain.mine_block(), vec![high]);
    assert!(t.chain.mempool().is_empty(), "the loser is evicted");
}

#[test]
fn estimates_follow_the_curve() {
    let base = sat_vb(2);
    let market = FeeMarket::new(FeeCurve::spike(base, 10, 2_000, 3, 10));
    // Before the spike, confirming next block is cheap; within 20 blocks too.
    assert_eq!(market.estimate(1_990, 1), base);
    // On the way up, the next block costs more and more.
    assert!(market.estimate(1_999, 1) > base);
    assert_eq!(market.estimate(2_002, 1), sat_vb(20));
    // Waiting it out: within 20 blocks the curve is back at the base.
    assert_eq!(market.estimate(2_002, 20), base);
    // A trailing estimator lags: at 2_003 it remembers the spike for its window.
    let trailing = market.clone().with_estimator(Estimator::Trailing { window: 30 });
    assert_eq!(trailing.estimate(2_020, 1), sat_vb(20));
    assert_eq!(trailing.estimate(2_050, 1), base);
}

// ---------------------------------------------------------------- more shapes

#[test]
fn a_transaction_over_400_000_weight_units_is_refused() {
    let t = T::policy();
    let c = Coin { op: OutPoint::null(), out: t.out(0), key: Key::Anchor };
    let fits = unsigned(2, &[&c], (0..3_200).map(|_| t.out(1_000)).collect());
    assert!(fits.weight().to_wu() <= 400_000);
    assert_eq!(check_standard(&fits, &Policy::CORE_29), Ok(()));
    let big = unsigned(2, &[&c], (0..3_300).map(|_| t.out(1_000)).collect());
    let weight = big.weight().to_wu();
    assert_eq!(check_standard(&big, &Policy::CORE_29), Err(PolicyReject::TooLarge { weight }));
}

/// A counterparty fills the descendant limit of a shared unconfirmed transaction with its own
/// children (pinning): the CPFP carve-out still lets one more small child in, and no more.
#[test]
fn a_parent_with_its_descendant_limit_full_takes_one_carve_out_child() {
    let mut t = T::policy();
    let c = t.fund(1_000_000);
    let parent = t.pay(2, &[&c], (0..27).map(|_| t.out(10_000)).collect(), at_rate(1));
    t.chain.submit(&parent).unwrap();
    let mut children = Vec::new();
    for vout in 0..24 {
        let child = t.pay(2, &[&coin_of(&parent, vout, Key::Wallet)], vec![t.out(0)], at_rate(1));
        t.chain.submit(&child).expect("25 in the parent's family");
        children.push(child);
    }
    // A grandchild has two ancestors: no carve-out for it.
    let grandchild = t.pay(2, &[&coin_of(&children[0], 0, Key::Wallet)], vec![t.out(0)], at_rate(1));
    assert_eq!(refuse(&mut t, &grandchild), PolicyReject::TooLongChain);
    let carve_out = t.pay(2, &[&coin_of(&parent, 24, Key::Wallet)], vec![t.out(0)], at_rate(1));
    t.chain.submit(&carve_out).expect("the carve-out child");
    let child = t.pay(2, &[&coin_of(&parent, 25, Key::Wallet)], vec![t.out(0)], at_rate(1));
    assert_eq!(refuse(&mut t, &child), PolicyReject::TooLongChain);
}

#[test]
fn a_package_child_with_another_unconfirmed_parent_or_a_conflict_is_refused() {
    let Anchored { mut t, parent, fee_coin } = anchored(Policy::CORE_29, None);
    let c = t.fund(100_000);
    let other = t.pay(3, &[&c], vec![t.out(0)], at_rate(2));
    t.chain.submit(&other).unwrap();
    let anchor = coin_of(&parent, 0, Key::Anchor);
    let child = t.pay(3, &[&anchor, &coin_of(&other, 0, Key::Wallet)], vec![t.out(0)], at_rate(20));
    let r = refused(t.chain.submit_package(&[parent.clone(), child]));
    assert_eq!(r, PolicyReject::Package(PackageReject::ChildHasOtherUnconfirmedParent { input: 1 }));
    // A child spending the parent's own input as well.
    let parent_input = Coin { op: parent.input[0].previous_output, out: t.out(50_000), key: Key::Wallet };
    let child = t.pay(3, &[&anchor, &parent_input, &fee_coin], vec![t.out(0)], at_rate(20));
    let r = refused(t.chain.submit_package(&[parent, child]));
    assert_eq!(r, PolicyReject::Package(PackageReject::Conflicting));
    assert_eq!(t.chain.mempool(), &[other]);
}

/// Two zero-fee version 3 transactions spending the same coin (two parties' versions of one
/// unilateral close), each with an anchor child: the one whose package pays more replaces the
/// other by package RBF, and one paying no more is refused.
#[test]
fn a_competing_anchored_package_replaces_the_first_only_if_it_pays_more() {
    let mut t = T::new(Some(Policy::CORE_29), None);
    let c = t.fund(50_000);
    let anchor = TxOut { value: Amount::ZERO, script_pubkey: ScriptBuf::new_p2a() };
    let theirs = t.pay(3, &[&c], vec![anchor.clone(), t.out(0)], |_| 0);
    let ours = t.pay(3, &[&c], vec![anchor, t.out(20_000), t.out(0)], |_| 0);
    let (f1, f2) = (t.fund(100_000), t.fund(100_000));
    let their_child = cpfp(&t, &theirs, &f1, 5);
    t.chain.submit_package(&[theirs.clone(), their_child.clone()]).unwrap();
    // At the same package feerate: not better than what it evicts.
    let same = cpfp(&t, &ours, &f2, 5);
    let before = t.chain.mempool().to_vec();
    let r = refused(t.chain.submit_package(&[ours.clone(), same]));
    assert!(matches!(r, PolicyReject::Rbf(_)), "{r:?}");
    assert_eq!(t.chain.mempool(), &before[..]);
    // Paying more: both of theirs are evicted.
    let better = cpfp(&t, &ours, &f2, 12);
    t.chain.submit_package(&[ours.clone(), better.clone()]).expect("package RBF");
    assert_eq!(t.chain.mempool(), &[ours, better]);
}

#[test]
fn a_stepped_curve_and_its_estimates() {
    // Given out of order; the later entry for one height wins.
    let curve = FeeCurve::steps(sat_vb(1), [(120, sat_vb(3)), (100, sat_vb(50)), (110, sat_vb(8)), (120, sat_vb(2))]);
    let rates: Vec<FeeRate> = [99, 100, 109, 110, 119, 120, 1_000].iter().map(|h| curve.rate_at(*h)).collect();
    let expected = [1, 50, 50, 8, 8, 2, 2].map(sat_vb);
    assert_eq!(rates, expected);
    assert_eq!(curve.lowest_in(100, 109), sat_vb(50));
    assert_eq!(curve.lowest_in(100, 110), sat_vb(8));
    let market = FeeMarket::new(curve);
    assert_eq!(market.estimate(99, 1), sat_vb(50), "the next block is 100");
    assert_eq!(market.estimate(99, 0), sat_vb(50), "a target of 0 is read as 1");
    assert_eq!(market.estimate(99, 21), sat_vb(2));
    // Trailing, window shorter than the target: the current block's minimum.
    let short = market.clone().with_estimator(Estimator::Trailing { window: 3 });
    assert_eq!(short.estimate(115, 6), sat_vb(8));
    // Trailing over 20 blocks at 125: confirming within 6 blocks from 100..=119 cost up to 8.
    let long = market.with_estimator(Estimator::Trailing { window: 20 });
    assert_eq!(long.estimate(125, 6), sat_vb(8));
    assert_eq!(long.estimate(125, 1), sat_vb(50));
}
