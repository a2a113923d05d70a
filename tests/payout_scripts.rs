//! Payout scripts a hostile peer (or a careless embedder) picks so that no node relays the
//! transactions paying them: each layer refuses them with a typed error and its state unchanged
//! to the byte, through the one check in `core::standard`. The honest party's close then stays
//! standard and pays it to the satoshi.
//!
//! The scripts below are all consensus-valid outputs: a version 0 witness program of 2 or 40
//! bytes (unspendable, and non-standard for Core), `OP_TRUE`, and — where the layer's policy
//! excludes them — future witness versions.

use bitcoin::hashes::Hash;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use paychan::core::commitment::ChannelType;
use paychan::core::standard::{payout_kind, PayoutKind, PayoutPolicy};
use paychan::core::BlockHeight;
use paychan::driving::{Action, ChainEvent, ChainTip, ChannelId, RestoreCheck};
use paychan::testing::{duplex as dx, lightning as ln};
use paychan::{duplex, lightning, spilman};
use proptest::prelude::*;

// ------------------------------------------------------------------------------------------------
// Scripts

fn script(parts: &[&[u8]]) -> ScriptBuf {
    ScriptBuf::from_bytes(parts.concat())
}

fn p2pkh() -> ScriptBuf {
    script(&[&[0x76, 0xa9, 0x14], &[0x11; 20], &[0x88, 0xac]])
}

fn p2sh() -> ScriptBuf {
    script(&[&[0xa9, 0x14], &[0x22; 20], &[0x87]])
}

fn p2wpkh() -> ScriptBuf {
    script(&[&[0x00, 0x14], &[0x33; 20]])
}

fn p2wsh() -> ScriptBuf {
    script(&[&[0x00, 0x20], &[0x44; 32]])
}

/// A witness program of `version` with `len` bytes.
fn segwit(version: u8, len: usize) -> ScriptBuf {
    let op = if version == 0 { 0 } else { 0x50 + version };
    script(&[&[op, len as u8], &vec![0x55; len]])
}

fn p2tr() -> ScriptBuf {
    segwit(1, 32)
}

/// `OP_0 <40 bytes>`: a witness program to Core's `IsWitnessProgram`, but version 0 only knows
/// 20 and 32 bytes: non-standard (and unspendable).
fn v0_40() -> ScriptBuf {
    segwit(0, 40)
}

/// `OP_0 <2 bytes>`: likewise.
fn v0_2() -> ScriptBuf {
    segwit(0, 2)
}

fn op_true() -> ScriptBuf {
    ScriptBuf::from_bytes(vec![0x51])
}

/// The base templates every layer accepts.
fn base_templates() -> Vec<ScriptBuf> {
    vec![p2pkh(), p2sh(), p2wpkh(), p2wsh()]
}

/// P2TR and witness versions 1..=16 at both program-length bounds.
fn any_segwit_templates() -> Vec<ScriptBuf> {
    let mut v = vec![p2tr()];
    for version in 1..=16 {
        v.push(segwit(version, 2));
        v.push(segwit(version, 40));
    }
    v
}

/// Every output is a standard payout (Core relays the transaction's outputs).
#[track_caller]
fn assert_standard_outputs(tx: &Transaction) {
    for o in &tx.output {
        assert!(PayoutPolicy::RELAY.allows(&o.script_pubkey), "non-standard output {:?}", o.script_pubkey);
    }
}

fn funding_tx(outputs: Vec<TxOut>) -> Transaction {
    Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid: Txid::from_byte_array([9; 32]), vout: 0 },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::from_slice(&[[0x30u8; 71].as_slice(), [0x02u8; 33].as_slice()]),
        }],
        output: outputs,
    }
}

// ------------------------------------------------------------------------------------------------
// Core

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// Random bytes never panic, and the classification agrees with rust-bitcoin's own template
    /// predicates wherever those are exact.
    #[test]
    fn random_scripts_never_panic_and_match_the_templates(bytes in prop::collection::vec(any::<u8>(), 0..60)) {
        let s = ScriptBuf::from_bytes(bytes);
        let kind = payout_kind(&s);
        for policy in [PayoutPolicy::BASE, PayoutPolicy::RELAY, PayoutPolicy { any_segwit: true, op_return: true }] {
            let _ = policy.allows(&s);
        }
        prop_assert_eq!(kind == Some(PayoutKind::P2pkh), s.is_p2pkh());
        prop_assert_eq!(kind == Some(PayoutKind::P2sh), s.is_p2sh());
        prop_assert_eq!(kind == Some(PayoutKind::P2wpkh), s.is_p2wpkh());
        prop_assert_eq!(kind == Some(PayoutKind::P2wsh), s.is_p2wsh());
        prop_assert_eq!(kind == Some(PayoutKind::P2tr), s.is_p2tr());
        if PayoutPolicy::RELAY.allows(&s) && !PayoutPolicy::BASE.allows(&s) {
            prop_assert!(s.is_witness_program() && s.witness_version().is_some_and(|v| v.to_num() >= 1));
        }
        if kind.is_some() && kind != Some(PayoutKind::OpReturn) {
            prop_assert!(s.is_p2pkh() || s.is_p2sh() || s.is_witness_program());
        }
    }

    /// Every well-formed witness program is classified by its version and length alone.
    #[test]
    fn witness_programs_follow_version_and_length(version in 0u8..=16, len in 2usize..=40) {
        let s = segwit(version, len);
        let standard = version != 0 || len == 20 || len == 32;
        prop_assert_eq!(PayoutPolicy::RELAY.allows(&s), standard);
        prop_assert_eq!(PayoutPolicy::BASE.allows(&s), version == 0 && standard);
    }
}

// ------------------------------------------------------------------------------------------------
// Lightning

const LN_CAPACITY: u64 = 1_000_000;
const LN_PUSH_MSAT: u64 = 300_000_000;

fn ln_tip() -> ChainTip {
    ChainTip::at(1_001)
}

/// `shutdown` from the peer (b) carrying `spk`: a refuses it with `NonStandardScript` (a warning,
/// per BOLT #2), its snapshot unchanged; then, on a new connection, the honest close goes through.
#[track_caller]
fn ln_peer_shutdown_refused(mut p: ln::Pair, spk: ScriptBuf) {
    let cid = p.a.ch.channel_id();
    let before = p.a.ch.snapshot();
    let mut probe = p.a.ch.clone();
    let err = probe
        .handle_message(lightning::Msg::Shutdown { channel_id: cid, scriptpubkey: spk.clone() }, &p.a.signer, ln_tip())
        .expect_err("a non-standard shutdown script is refused");
    assert_eq!((err.kind, err.action), (lightning::Misbehaviour::NonStandardScript, Action::Warn));
    assert!(probe.snapshot() == before, "the refused shutdown changed the state");
    assert_eq!(probe.phase(), lightning::Phase::Normal);
    ln_honest_close(&mut p);
}

/// Both sides close cooperatively to P2WPKH: the closing transaction is standard and pays each
/// side its balance (the funder's less the fee) to the satoshi.
#[track_caller]
fn ln_honest_close(p: &mut ln::Pair) {
    ln_close_to(p, p2wpkh(), p2wsh());
}

#[track_caller]
fn ln_close_to(p: &mut ln::Pair, ours: ScriptBuf, theirs: ScriptBuf) -> Transaction {
    let holder = p.a.ch.balances(lightning::Side::Holder);
    let (a_msat, b_msat) = (holder.holder.to_msat(), holder.counterparty.to_msat());
    let range = (Amount::from_sat(200), Amount::from_sat(5_000));
    let fx = p.a.ch.shutdown(ours.clone(), range, &p.a.signer).expect("a shuts down");
    p.a.absorb_pub(fx, &mut p.to_b);
    let fx = p.b.ch.shutdown(theirs.clone(), range, &p.b.signer).expect("b shuts down");
    p.b.absorb_pub(fx, &mut p.to_a);
    let mut broadcast = p.run();
    broadcast.dedup();
    assert_eq!(broadcast.len(), 1, "one closing transaction");
    let close = broadcast.remove(0);
    assert_eq!(p.a.ch.closing_transaction(), Some(&close));
    assert_eq!(p.b.ch.closing_transaction(), Some(&close));
    assert_standard_outputs(&close);
    let paid = |spk: &ScriptBuf| close.output.iter().find(|o| &o.script_pubkey == spk).map(|o| o.value.to_sat());
    let fee = LN_CAPACITY - close.output.iter().map(|o| o.value.to_sat()).sum::<u64>();
    assert_eq!(paid(&ours), Some(a_msat / 1_000 - fee), "the funder gets its balance less the fee");
    assert_eq!(paid(&theirs), Some(b_msat / 1_000), "the other side gets its balance");
    close
}

fn ln_pair() -> ln::Pair {
    ln::Pair::open(ChannelType::AnchorsZeroFeeHtlc, LN_CAPACITY, LN_PUSH_MSAT)
}

/// A pair whose a does not take anysegwit shutdown scripts (as if the peer's `init` lacked
/// `option_shutdown_anysegwit`).
fn ln_pair_without_anysegwit() -> ln::Pair {
    let ct = ChannelType::AnchorsZeroFeeHtlc;
    let config_a = lightning::ChannelConfig { shutdown_anysegwit: false, ..ln::config(ct) };
    ln::Pair::open_with(config_a, ln::config(ct), LN_CAPACITY, LN_PUSH_MSAT, 2_500)
}

#[test]
fn lightning_peer_shutdown_with_40_byte_v0_program_is_refused() {
    ln_peer_shutdown_refused(ln_pair(), v0_40());
}

#[test]
fn lightning_peer_shutdown_with_2_byte_v0_program_is_refused() {
    ln_peer_shutdown_refused(ln_pair(), v0_2());
}

#[test]
fn lightning_peer_shutdown_with_op_true_is_refused() {
    ln_peer_shutdown_refused(ln_pair(), op_true());
}

#[test]
fn lightning_peer_shutdown_with_future_segwit_program_is_refused_without_anysegwit() {
    ln_peer_shutdown_refused(ln_pair_without_anysegwit(), segwit(2, 40));
}

#[test]
fn lightning_peer_shutdown_with_taproot_is_refused_without_anysegwit() {
    ln_peer_shutdown_refused(ln_pair_without_anysegwit(), p2tr());
}

#[test]
fn lightning_own_shutdown_command_with_40_byte_v0_program_is_refused() {
    let mut p = ln_pair();
    for bad in [v0_40(), v0_2(), op_true()] {
        let before = p.a.ch.snapshot();
        let err = p.a.ch.shutdown(bad, (Amount::from_sat(200), Amount::from_sat(5_000)), &p.a.signer).unwrap_err();
        assert_eq!(err, lightning::CommandError::NonStandardScript);
        assert!(p.a.ch.snapshot() == before, "a refused command changed the state");
    }
    ln_honest_close(&mut p);
}

/// An `open_channel` for `upfront`.
fn ln_open_msg(upfront: Option<ScriptBuf>) -> (lightning::Channel, paychan::lightning::msgs::OpenChannel, ln::Peer) {
    let p = ln_pair();
    let config = ln::config(ChannelType::AnchorsZeroFeeHtlc);
    let params = lightning::OpenParams {
        config,
        temporary_channel_id: ChannelId([8; 32]),
        funding: Amount::from_sat(LN_CAPACITY),
        push: paychan::core::MilliSats::from_msat(0),
        feerate_per_kw: 2_500,
    };
    let (opener, fx) = lightning::Channel::open(params, &p.a.signer, ln_tip()).expect("open");
    let Some(lightning::Msg::OpenChannel(mut open)) = fx.send.into_iter().next() else { panic!("open_channel") };
    open.tlvs.upfront_shutdown_script = upfront;
    (opener, *open, p.b)
}

#[test]
fn lightning_open_channel_with_non_standard_upfront_shutdown_script_is_refused() {
    let config = ln::config(ChannelType::AnchorsZeroFeeHtlc);
    for bad in [v0_40(), v0_2(), op_true()] {
        let (_, open, b) = ln_open_msg(Some(bad));
        let err = lightning::Channel::accept(&open, config.clone(), &b.signer, ln_tip()).unwrap_err();
        assert_eq!(err, lightning::OpenError(lightning::Misbehaviour::NonStandardScript));
    }
    // Empty (no commitment to a script) and standard ones open as before.
    for good in [ScriptBuf::new(), p2wpkh(), p2tr()] {
        let (_, open, b) = ln_open_msg(Some(good));
        let (_, fx) = lightning::Channel::accept(&open, config.clone(), &b.signer, ln_tip()).expect("accepted");
        assert!(matches!(fx.send.first(), Some(lightning::Msg::AcceptChannel(_))));
    }
}

#[test]
fn lightning_accept_channel_with_non_standard_upfront_shutdown_script_is_refused() {
    let config = ln::config(ChannelType::AnchorsZeroFeeHtlc);
    let (opener, open, b) = ln_open_msg(None);
    let (_, fx) = lightning::Channel::accept(&open, config, &b.signer, ln_tip()).expect("accepted");
    let Some(lightning::Msg::AcceptChannel(accept)) = fx.send.into_iter().next() else { panic!("accept_channel") };
    let signer = ln_pair().a.signer;
    for bad in [v0_40(), segwit(0, 21)] {
        let mut hostile = accept.clone();
        hostile.tlvs.upfront_shutdown_script = Some(bad);
        let before = opener.snapshot();
        let mut probe = opener.clone();
        let err = probe.handle_message(lightning::Msg::AcceptChannel(hostile), &signer, ln_tip()).expect_err("refused");
        assert_eq!(err.kind, lightning::Misbehaviour::NonStandardScript);
        assert!(probe.snapshot() == before, "the refused accept_channel changed the state");
    }
    let mut honest = opener.clone();
    let fx = honest.handle_message(lightning::Msg::AcceptChannel(accept), &signer, ln_tip()).expect("accepted");
    assert!(fx.events.iter().any(|e| matches!(e, lightning::Event::FundingGenerationReady { .. })));
}

#[test]
fn lightning_anysegwit_off_survives_a_snapshot_restore() {
    let p = ln_pair_without_anysegwit();
    let check = RestoreCheck { channel_id: Some(p.a.ch.channel_id()), min_update_id: 0 };
    let restored = lightning::Channel::restore(&p.a.ch.snapshot(), check).expect("restores");
    assert!(restored.snapshot() == p.a.ch.snapshot());
    let cid = p.a.ch.channel_id();
    let mut probe = restored.clone();
    let err = probe
        .handle_message(lightning::Msg::Shutdown { channel_id: cid, scriptpubkey: p2tr() }, &p.a.signer, ln_tip())
        .expect_err("still refused after the restore");
    assert_eq!(err.kind, lightning::Misbehaviour::NonStandardScript);
    // With the default policy (on; its snapshot carries no record) the same script is taken.
    let q = ln_pair();
    let mut probe = lightning::Channel::restore(&q.a.ch.snapshot(), check).expect("restores");
    let fx = probe
        .handle_message(lightning::Msg::Shutdown { channel_id: cid, scriptpubkey: p2tr() }, &q.a.signer, ln_tip())
        .expect("P2TR taken with anysegwit");
    assert!(fx.events.contains(&lightning::Event::ShutdownReceived));
}

#[test]
fn lightning_every_standard_shutdown_script_is_accepted() {
    for theirs in base_templates().into_iter().chain(any_segwit_templates()) {
        let mut p = ln_pair();
        let close = ln_close_to(&mut p, script(&[&[0x00, 0x14], &[0x99; 20]]), theirs.clone());
        assert!(close.output.iter().any(|o| o.script_pubkey == theirs));
    }
    for theirs in base_templates() {
        let mut p = ln_pair_without_anysegwit();
        ln_close_to(&mut p, script(&[&[0x00, 0x14], &[0x99; 20]]), theirs);
    }
    // Our own P2TR without anysegwit would be refused by such a peer: we refuse to send it.
    let mut p = ln_pair_without_anysegwit();
    let err = p.a.ch.shutdown(p2tr(), (Amount::from_sat(200), Amount::from_sat(5_000)), &p.a.signer).unwrap_err();
    assert_eq!(err, lightning::CommandError::NonStandardScript);
}

// ------------------------------------------------------------------------------------------------
// Spilman

const SP_START: u32 = 100;
const SP_CAPACITY: Amount = Amount::from_sat(1_000_000);
const SP_FEE: Amount = Amount::from_sat(500);
const SP_FIRST: Amount = Amount::from_sat(10_000);

fn sp_signer(n: u8) -> paychan::core::sign::InMemorySigner {
    use paychan::core::keys::{ChannelSecrets, Seed};
    paychan::core::sign::InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([n; 32]), 0))
}

fn sp_payee_config(variant: spilman::Variant, payee_script: ScriptBuf) -> spilman::PayeeConfig {
    spilman::PayeeConfig {
        variant,
        payee_script,
        expiry: BlockHeight(1_000),
        min_first_payment: SP_FIRST,
        dust_limit: Amount::from_sat(546),
        payment_fee: SP_FEE,
        close_margin: 6,
        htlc_min_blocks: 12,
        min_depth: 1,
        claim_fee: Amount::from_sat(300),
    }
}

fn sp_payer_config(payer_script: ScriptBuf) -> spilman::PayerConfig {
    spilman::PayerConfig {
        capacity: SP_CAPACITY,
        payer_script,
        refund_fee: SP_FEE,
        claim_fee: Amount::from_sat(300),
        first_payment: SP_FIRST,
        max_lifetime: 10_000,
    }
}

struct Spilman {
    payer: spilman::Payer,
    payee: spilman::Payee,
    payer_signer: paychan::core::sign::InMemorySigner,
    payee_signer: paychan::core::sign::InMemorySigner,
    /// The payer's first message after funding (`RefundRequest` or `Open`), not delivered.
    first: spilman::Msg,
}

fn sp_tip() -> ChainTip {
    ChainTip::at(SP_START)
}

/// An honest pair, funded; the payer's first message is held back.
fn sp_funded(variant: spilman::Variant, payer_script: ScriptBuf, payee_script: ScriptBuf) -> Spilman {
    let (payer_signer, payee_signer) = (sp_signer(1), sp_signer(2));
    let (payee, fx) = spilman::Payee::new(sp_payee_config(variant, payee_script), &payee_signer);
    let Some(spilman::Msg::Offer(offer)) = fx.send.into_iter().next() else { panic!("offer") };
    let mut payer =
        spilman::Payer::new(offer, sp_payer_config(payer_script), &payer_signer, sp_tip()).expect("offer accepted");
    let funding = funding_tx(vec![payer.funding_output()]);
    let fx = payer.fund(funding, &payer_signer).expect("funded");
    let first = fx.send.into_iter().next().expect("first message");
    Spilman { payer, payee, payer_signer, payee_signer, first }
}

impl Spilman {
    /// Delivers `msg` to the payee and every reply both ways until quiet.
    fn deliver(&mut self, msg: spilman::Msg) {
        let mut to_payee = vec![msg];
        while let Some(m) = to_payee.pop() {
            let fx = self.payee.handle_message(m, &self.payee_signer, sp_tip()).expect("payee accepts");
            for r in fx.send {
                let fx = self.payer.handle_message(r, &self.payer_signer, sp_tip()).expect("payer accepts");
                to_payee.extend(fx.send);
            }
        }
    }

    /// The payee's close: standard, paying the payee the first payment less the fee and the payer
    /// its change, to the satoshi.
    #[track_caller]
    fn check_close(&self, payer_script: &ScriptBuf, payee_script: &ScriptBuf) {
        let close = self.payee.closing_tx(&self.payee_signer).expect("the payee can close");
        assert_standard_outputs(&close);
        let paid = |spk: &ScriptBuf| close.output.iter().find(|o| &o.script_pubkey == spk).map(|o| o.value);
        assert_eq!(paid(payee_script), Some(SP_FIRST - SP_FEE));
        assert_eq!(paid(payer_script), Some(SP_CAPACITY - SP_FIRST));
        assert_eq!(close.output.len(), 2);
    }

    /// The payer's `Open` with another payer script and a first payment honestly signed over it
    /// (a hostile payer signs whatever it sends).
    fn open_with_payer_script(&self, spk: ScriptBuf) -> spilman::Msg {
        let spilman::Msg::Open(open) = self.first.clone() else { panic!("CLTV: Open first") };
        let mut t = self.payer.template().expect("funded").clone();
        t.payer_script = spk.clone();
        let state = spilman::PaymentState { to_payee: SP_FIRST, htlcs: vec![] };
        let signature = t.sign(&self.payer_signer, &t.build(&state).expect("buildable")).expect("signed");
        spilman::Msg::Open(spilman::Open {
            payer_script: spk,
            first_payment: spilman::Payment { signature, ..open.first_payment.clone() },
            ..open
        })
    }
}

#[track_caller]
fn sp_payee_refuses(s: &mut Spilman, msg: spilman::Msg) {
    let before = s.payee.snapshot();
    let err = s.payee.handle_message(msg, &s.payee_signer, sp_tip()).expect_err("refused");
    assert_eq!(err.kind, spilman::Misbehaviour::NonStandardScript);
    assert_eq!(s.payee.snapshot(), before, "the refused message changed the payee");
}

#[test]
fn spilman_payer_script_with_40_byte_v0_program_in_open_is_refused() {
    for bad in [v0_40(), v0_2()] {
        let mut s = sp_funded(spilman::Variant::Cltv, p2wpkh(), p2wsh());
        let hostile = s.open_with_payer_script(bad);
        sp_payee_refuses(&mut s, hostile);
        // The genuine Open still goes through, and the payee's close pays both to the satoshi.
        let genuine = s.first.clone();
        s.deliver(genuine);
        s.check_close(&p2wpkh(), &p2wsh());
    }
}

#[test]
fn spilman_payer_script_with_2_byte_v0_program_in_refund_request_is_refused() {
    for bad in [v0_2(), v0_40()] {
        let mut s = sp_funded(spilman::Variant::PresignedRefund, p2wpkh(), p2wsh());
        let spilman::Msg::RefundRequest(r) = s.first.clone() else { panic!("RefundRequest first") };
        sp_payee_refuses(&mut s, spilman::Msg::RefundRequest(spilman::RefundRequest { payer_script: bad, ..r }));
        let genuine = s.first.clone();
        s.deliver(genuine);
        s.check_close(&p2wpkh(), &p2wsh());
    }
}

#[test]
fn spilman_payee_script_with_40_byte_v0_program_is_refused_by_the_payer() {
    for bad in [v0_40(), v0_2(), op_true()] {
        let (payee, fx) = spilman::Payee::new(sp_payee_config(spilman::Variant::Cltv, bad), &sp_signer(2));
        drop(payee);
        let Some(spilman::Msg::Offer(offer)) = fx.send.into_iter().next() else { panic!("offer") };
        let err = spilman::Payer::new(offer, sp_payer_config(p2wpkh()), &sp_signer(1), sp_tip()).unwrap_err();
        assert_eq!(err, spilman::CommandError::NonStandardScript);
    }
}

#[test]
fn spilman_own_payer_script_with_2_byte_v0_program_is_refused() {
    for bad in [v0_2(), v0_40(), op_true()] {
        let (_, fx) = spilman::Payee::new(sp_payee_config(spilman::Variant::Cltv, p2wsh()), &sp_signer(2));
        let Some(spilman::Msg::Offer(offer)) = fx.send.into_iter().next() else { panic!("offer") };
        let err = spilman::Payer::new(offer, sp_payer_config(bad), &sp_signer(1), sp_tip()).unwrap_err();
        assert_eq!(err, spilman::CommandError::NonStandardScript);
    }
}

#[test]
fn spilman_every_standard_payout_script_is_accepted() {
    let all: Vec<ScriptBuf> = base_templates().into_iter().chain(any_segwit_templates()).collect();
    for (i, spk) in all.iter().enumerate() {
        let other = &all[(i + 1) % all.len()];
        for variant in [spilman::Variant::Cltv, spilman::Variant::PresignedRefund] {
            let mut s = sp_funded(variant, spk.clone(), other.clone());
            let first = s.first.clone();
            s.deliver(first);
            s.check_close(spk, other);
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Duplex

fn dx_terms() -> duplex::Terms {
    dx::terms(vec![2, 2])
}

struct Duplex {
    a: duplex::Channel,
    b: duplex::Channel,
    sa: paychan::core::sign::InMemorySigner,
    sb: paychan::core::sign::InMemorySigner,
}

fn dx_tip() -> ChainTip {
    ChainTip::at(dx::START)
}

impl Duplex {
    /// Delivers messages both ways until quiet, starting with `to_b` for b.
    fn run(&mut self, mut to_b: Vec<duplex::Msg>) -> Vec<Transaction> {
        let mut broadcast = Vec::new();
        while !to_b.is_empty() {
            let mut to_a = Vec::new();
            for m in to_b.drain(..) {
                let fx = self.b.handle_message(dx::wire(&m), &self.sb, dx_tip()).expect("b accepts");
                broadcast.extend(fx.broadcast);
                to_a.extend(fx.send);
            }
            for m in to_a {
                let fx = self.a.handle_message(dx::wire(&m), &self.sa, dx_tip()).expect("a accepts");
                broadcast.extend(fx.broadcast);
                to_b.extend(fx.send);
            }
        }
        broadcast
    }

    /// Funds, confirms and closes cooperatively: the close is standard and pays each side its
    /// balance to the satoshi.
    #[track_caller]
    fn fund_and_close(&mut self, payout_a: &ScriptBuf, payout_b: &ScriptBuf) {
        let funding = funding_tx(vec![self.a.funding_output().expect("keys known")]);
        let fx = self.a.fund(funding.clone(), &self.sa).expect("fund");
        self.run(fx.send);
        assert_eq!(self.a.phase(), duplex::Phase::Open);
        assert_eq!(self.b.phase(), duplex::Phase::Open);
        let height = BlockHeight(dx::START);
        let fx = self.a.handle_chain(ChainEvent::Confirmed { tx: &funding, height }, &self.sa);
        assert!(fx.send.is_empty());
        let fx = self.b.handle_chain(ChainEvent::Confirmed { tx: &funding, height }, &self.sb);
        assert!(fx.send.is_empty());
        let balances = self.a.balances();
        let fx = self.a.close(&self.sa).expect("close");
        let mut broadcast = self.run(fx.send);
        broadcast.dedup();
        assert_eq!(broadcast.len(), 1, "one cooperative close");
        let close = &broadcast[0];
        assert_standard_outputs(close);
        assert_eq!(
            close.output,
            vec![
                TxOut { value: balances.holder, script_pubkey: payout_a.clone() },
                TxOut { value: balances.counterparty, script_pubkey: payout_b.clone() },
                // Zero fee: the anchor a CPFP child spends.
                paychan::core::script::p2a_output(),
            ]
        );
        assert_eq!(balances.counterparty, Amount::from_sat(200_000), "the push, whole");
    }
}

/// a's `Open` paying a to `payout_a`.
fn dx_open(payout_a: ScriptBuf) -> (duplex::Channel, duplex::Open, paychan::core::sign::InMemorySigner) {
    let sa = dx::signer(duplex::Role::Initiator);
    let (a, fx) = duplex::Channel::open(dx_terms(), payout_a, &sa, dx_tip()).expect("open");
    let Some(duplex::Msg::Open(open)) = fx.send.into_iter().next() else { panic!("Open") };
    (a, open, sa)
}

fn dx_pair(payout_a: ScriptBuf, payout_b: ScriptBuf) -> Duplex {
    let (mut a, open, sa) = dx_open(payout_a);
    let sb = dx::signer(duplex::Role::Acceptor);
    let (b, fx) = duplex::Channel::accept(open, payout_b, &sb, dx_tip()).expect("accept");
    for m in fx.send {
        let fx = a.handle_message(dx::wire(&m), &sa, dx_tip()).expect("a takes the Accept");
        assert!(fx.send.is_empty());
    }
    Duplex { a, b, sa, sb }
}

#[test]
fn duplex_peer_payout_op_true_in_open_is_refused() {
    for bad in [op_true(), v0_40(), v0_2()] {
        let (_, mut open, _) = dx_open(p2wpkh());
        open.payout_script = bad;
        let err = duplex::Channel::accept(open, p2wsh(), &dx::signer(duplex::Role::Acceptor), dx_tip()).unwrap_err();
        assert_eq!((err.kind, err.action), (duplex::Misbehaviour::NonStandardScript, Action::Warn));
    }
}

#[test]
fn duplex_peer_payout_40_byte_v0_program_in_accept_is_refused() {
    for bad in [v0_40(), op_true(), v0_2()] {
        let (a, open, sa) = dx_open(p2wpkh());
        let sb = dx::signer(duplex::Role::Acceptor);
        let (b, fx) = duplex::Channel::accept(open, p2wsh(), &sb, dx_tip()).expect("accept");
        let Some(duplex::Msg::Accept(accept)) = fx.send.into_iter().next() else { panic!("Accept") };
        let before = a.snapshot();
        let mut probe = a.clone();
        let hostile = duplex::Msg::Accept(duplex::Accept { payout_script: bad, ..accept.clone() });
        let err = probe.handle_message(dx::wire(&hostile), &sa, dx_tip()).expect_err("refused");
        assert_eq!(err.kind, duplex::Misbehaviour::NonStandardScript);
        assert!(probe.snapshot() == before, "the refused Accept changed the state");
        // The genuine Accept: the channel opens and closes with both payouts whole.
        let mut d = Duplex { a, b, sa, sb };
        let fx = d.a.handle_message(dx::wire(&duplex::Msg::Accept(accept)), &d.sa, dx_tip()).expect("genuine Accept");
        assert!(fx.send.is_empty());
        d.fund_and_close(&p2wpkh(), &p2wsh());
    }
}

#[test]
fn duplex_own_payout_op_true_is_refused() {
    for bad in [op_true(), v0_40()] {
        let err =
            duplex::Channel::open(dx_terms(), bad.clone(), &dx::signer(duplex::Role::Initiator), dx_tip()).unwrap_err();
        assert_eq!(err, duplex::CommandError::NonStandardScript);
        let (_, open, _) = dx_open(p2wpkh());
        let err = duplex::Channel::accept(open, bad, &dx::signer(duplex::Role::Acceptor), dx_tip()).unwrap_err();
        assert_eq!((err.kind, err.action), (duplex::Misbehaviour::OwnNonStandardScript, Action::Ignore));
    }
}

#[test]
fn duplex_every_standard_payout_script_is_accepted() {
    let all: Vec<ScriptBuf> = base_templates().into_iter().chain(any_segwit_templates()).collect();
    for (i, spk) in all.iter().enumerate() {
        let other = &all[(i + 1) % all.len()];
        let mut d = dx_pair(spk.clone(), other.clone());
        d.fund_and_close(spk, other);
    }
}

#[test]
fn the_layers_share_one_policy() {
    assert_eq!(spilman::payment::PAYOUT_POLICY, PayoutPolicy::RELAY);
    let config = lightning::ChannelConfig::default_for([0; 32], ChannelType::AnchorsZeroFeeHtlc);
    assert!(config.shutdown_anysegwit);
    assert_eq!(config.shutdown_policy(), PayoutPolicy::RELAY);
}
