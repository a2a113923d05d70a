//! The attack catalogue: one test per published channel-level attack (or CVE class) that applies
//! to this crate's constructions and is not already shown, exactly, by a test elsewhere. Each is
//! played end to end through the public API by a peer that sends well-formed, validly signed
//! messages with hostile contents; each checks that the refused input leaves the honest party's
//! encoded state byte-identical and, where money is involved, what the honest party can still
//! broadcast, to the satoshi.
//!
//! The classes covered exactly by other suites (Lightning funding checks, dust, fee siphoning,
//! funder drain, force-close griefing, revoked commitments, stale duplex branches, lying
//! reestablish messages, HTLC count and value limits, high-S in Lightning and Spilman) are listed
//! with their tests in the README's attack table rather than repeated here.

mod common;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{self, SecretKey};
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::{ecdsa, Amount, OutPoint, ScriptBuf, Transaction, TxOut, Txid};
use common::{duplex as dx, wallet};
use paychan::core::keys::{ChannelSecrets, Seed};
use paychan::core::script::funding as funding_script;
use paychan::core::sign::{InMemorySigner, KeyId, SignRequest, Signer, Tweak};
use paychan::core::BlockHeight;
use paychan::driving::{ChainEvent, ChainTip, RestoreCheck};
use paychan::duplex::{self, Channel, Event, FundingCreated, Misbehaviour, Msg, Phase, Role};
use paychan::spilman;

const A: Role = Role::Initiator;
const B: Role = Role::Acceptor;

/// The same signature with S replaced by n − S (the negation of S as a scalar): valid to
/// libsecp256k1 once normalised and to consensus, but high-S, which BIP-0146 `LOW_S` makes
/// non-standard: a transaction carrying it does not relay.
fn negate_s(sig: &secp256k1::ecdsa::Signature) -> secp256k1::ecdsa::Signature {
    let mut bytes = sig.serialize_compact();
    let s = SecretKey::from_slice(&bytes[32..]).expect("S is a valid non-zero scalar").negate();
    bytes[32..].copy_from_slice(&s.secret_bytes());
    let high = secp256k1::ecdsa::Signature::from_compact(&bytes).expect("n - S is a valid scalar");
    let mut normalized = high;
    normalized.normalize_s();
    assert!(high != *sig && normalized == *sig, "the high-S twin of a low-S signature");
    high
}

/// [`negate_s`] on a signature with its sighash type.
fn high_s(sig: &ecdsa::Signature) -> ecdsa::Signature {
    ecdsa::Signature { signature: negate_s(&sig.signature), sighash_type: sig.sighash_type }
}

/// Hands `msg` to a copy of `ch`: it must be refused with `want`, and the copy's encoded state
/// must stay byte-identical.
#[track_caller]
fn duplex_refuses(ch: &Channel, signer: &InMemorySigner, msg: Msg, want: Misbehaviour) {
    let mut ch = ch.clone();
    let before = ch.snapshot();
    // At the tip from which an honest peer pays (the funding deep enough), if it confirmed.
    let tip = ChainTip::at(ch.sends_from().map_or(dx::START, |h| h.0.max(dx::START)));
    let err = ch.handle_message(msg, signer, tip).expect_err("refused");
    assert_eq!(err.kind, want);
    assert!(ch.snapshot() == before, "a refused message changed the state");
}

/// A duplex initiator `a` and acceptor `b` (honest) up to the funding: `a` waits for its funding
/// transaction, `b` for `FundingCreated`.
fn duplex_until_funding() -> (Channel, Channel) {
    let tip = ChainTip::at(dx::START);
    let (sa, sb) = (dx::signer(A), dx::signer(B));
    let (mut a, fx) = Channel::open(dx::terms(vec![2, 2]), dx::payout(A), &sa, tip).unwrap();
    let Some(Msg::Open(open)) = fx.send.first().map(dx::wire) else { panic!("Open") };
    let (b, fx) = Channel::accept(open, dx::payout(B), &sb, tip).unwrap();
    let _ = a.handle_message(dx::wire(&fx.send[0]), &sa, tip).unwrap();
    assert_eq!((a.phase(), b.phase()), (Phase::AwaitingFunding, Phase::AwaitingFundingCreated));
    (a, b)
}

/// Replaces every occurrence of `from` in `bytes` by `to`; returns how many.
fn replace_all(bytes: &mut [u8], from: &[u8], to: &[u8]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if bytes[i..].starts_with(from) {
            bytes[i..i + from.len()].copy_from_slice(to);
            n += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    n
}

/// The `FundingCreated` a hostile initiator sends for output 0 of `bad`, whatever that output
/// pays: its channel refuses to fund with a transaction that does not pay the channel, so it
/// signs the branch over `bad`'s outpoint by hand (the 2-of-2 script and the agreed capacity are
/// what every tree signature commits to). Returns the message and the initiator, now waiting for
/// `FundingSigned` as if it had funded with `bad`.
fn hostile_funding_created(mut a: Channel, bad: &Transaction) -> (FundingCreated, Channel) {
    let sa = dx::signer(A);
    let good = wallet::unsigned_funding(outpoint_of(0x42), vec![a.funding_output().unwrap()]);
    let _ = a.fund(good.clone(), &sa).expect("the initiator's own command checks its funding output");
    let mut snapshot = a.snapshot();
    let patched = replace_all(&mut snapshot, good.compute_txid().as_byte_array(), bad.compute_txid().as_byte_array());
    assert!(patched >= 1);
    let forged = Channel::restore(&snapshot, RestoreCheck { channel_id: None, min_update_id: 0 }).unwrap();
    let outpoint = OutPoint { txid: bad.compute_txid(), vout: 0 };
    assert_eq!(forged.funding_outpoint(), Some(outpoint));
    let branch = forged.current_branch().expect("the branch over the bad outpoint");
    assert_eq!(branch[0].input[0].previous_output, outpoint);
    let keys = [dx::signer(A).pubkeys().funding, dx::signer(B).pubkeys().funding];
    let script = funding_script(&keys[0], &keys[1]);
    let sign = |level: usize| {
        let value = if level == 0 { a.terms().capacity } else { branch[level - 1].output[0].value };
        sa.sign(&SignRequest {
            tx: &branch[level],
            input: 0,
            script_code: script.as_script(),
            p2wpkh: false,
            value,
            sighash_type: EcdsaSighashType::All,
            key: KeyId::Funding,
            tweak: Tweak::None,
        })
        .unwrap()
    };
    let node_sigs = (1..branch.len()).rev().map(sign).collect();
    (FundingCreated { funding_outpoint: outpoint, node_sigs, kickoff_sig: sign(0) }, forged)
}

/// A payment of `to_payee` in `ch`'s own leaf channel with number `number`, signed by hand as a
/// hostile payer does (its own channel sends nothing before the funding depth).
fn hand_made_payment(ch: &Channel, signer: &InMemorySigner, to_payee: Amount, number: u64) -> Msg {
    let t = ch.template(ch.role()).expect("the leaf is known");
    let state = spilman::payment::PaymentState { to_payee, htlcs: vec![] };
    let signature = t.sign(signer, &t.build(&state).expect("payable")).expect("signed");
    Msg::Payment(spilman::Payment { number, to_payee, htlcs: vec![], signature })
}

fn outpoint_of(n: u8) -> OutPoint {
    OutPoint { txid: Txid::from_byte_array([n; 32]), vout: 3 }
}

// ---------------------------------------------------------------------------------------------
// CVE-2019-12999 (LND) / CVE-2019-13000 (eclair): the funding output not checked
// ---------------------------------------------------------------------------------------------

/// A duplex acceptor learns the funding only as an outpoint (`FundingCreated`); a hostile
/// initiator names the output of a transaction that pays one satoshi less, one more, or another
/// script, and tries to pay the acceptor in the channel before it confirms (refused: the
/// funding depth). When the transaction with
/// that txid confirms, the acceptor sees the output does not pay exactly the 2-of-2 and the
/// capacity: the channel fails (`InvalidFunding`, persisted), takes no further payment and
/// broadcasts nothing; its branch, checked by Bitcoin Core's interpreter, spends only the agreed
/// output, which does not exist. Before the fix the acceptor reported `FundingConfirmed` and
/// carried on with a channel holding nothing.
#[test]
fn cve_2019_12999_13000_duplex_funding_output_not_paying_the_channel_is_never_used() {
    let (a, _) = duplex_until_funding();
    let agreed = a.funding_output().unwrap();
    let other_script = funding_script(
        &dx::signer(A).pubkeys().funding,
        &InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([9; 32]), 0)).pubkeys().funding,
    )
    .to_p2wsh();
    let wrong = [
        TxOut { value: agreed.value - Amount::from_sat(1), ..agreed.clone() },
        TxOut { value: agreed.value + Amount::from_sat(1), ..agreed.clone() },
        TxOut { value: agreed.value, script_pubkey: other_script },
        TxOut { value: agreed.value, script_pubkey: dx::p2wpkh(0xa2) },
    ];
    for (i, out) in wrong.into_iter().enumerate() {
        let (a, mut b) = duplex_until_funding();
        let (sa, sb) = (dx::signer(A), dx::signer(B));
        let tip = ChainTip::at(dx::START);
        let bad = wallet::unsigned_funding(outpoint_of(0x50 + i as u8), vec![out.clone()]);
        let (created, mut forged) = hostile_funding_created(a, &bad);
        // The acceptor cannot tell from the outpoint: the signatures are valid for it.
        let fx = b.handle_message(Msg::FundingCreated(created), &sb, tip).expect("valid signatures");
        assert!(fx.events.contains(&Event::ChannelReady));
        let _ = forged.handle_message(dx::wire(&fx.send[0]), &sa, tip).expect("the forged initiator is open");
        // The initiator pays 50,000 sat in the channel before the funding confirms: its own
        // channel refuses, and the acceptor does not count a payment made by hand either (the
        // funding depth, tests/duplex_depth.rs).
        let early = forged.pay(Amount::from_sat(50_000), &sa).unwrap_err();
        assert_eq!(early, duplex::CommandError::FundingNotDeep);
        let payment = hand_made_payment(&forged, &sa, Amount::from_sat(50_000), 1);
        duplex_refuses(&b, &sb, dx::wire(&payment), Misbehaviour::FundingNotDeep { confirmations: 0 });
        assert_eq!(b.balances().holder, Amount::from_sat(200_000), "b counts nothing");
        // What b holds spends only the agreed output: Core's interpreter refuses its signed
        // kickoff against what the outpoint really holds.
        let kickoff = b.signed_branch(&sb).expect("b holds the signed branch").remove(0);
        assert!(common::verify_spend(&kickoff, std::slice::from_ref(&out)).is_err());
        common::verify_spend(&kickoff, std::slice::from_ref(&agreed)).expect("valid on the agreed output");

        // The transaction with that txid confirms.
        let txid = bad.compute_txid();
        let fx = b.handle_chain(ChainEvent::Confirmed { tx: &bad, height: BlockHeight(dx::START + 1) }, &sb);
        assert_eq!(fx.events, vec![Event::InvalidFunding { txid }]);
        assert!(fx.update.is_some(), "the failure is persisted");
        assert!(fx.broadcast.is_empty() && fx.send.is_empty());
        let persisted = fx.update.unwrap().snapshot.expect("duplex writes full snapshots");
        assert_eq!(b.phase(), Phase::Closed);
        // Never used again: no payment, no broadcast, whatever the chain says again.
        let payment = hand_made_payment(&forged, &sa, Amount::from_sat(60_000), 2);
        duplex_refuses(&b, &sb, dx::wire(&payment), Misbehaviour::UnexpectedMessage);
        let fx = b.handle_chain(ChainEvent::Confirmed { tx: &bad, height: BlockHeight(dx::START + 1) }, &sb);
        assert!(fx.is_empty());
        for h in dx::START + 1..dx::START + 200 {
            let fx = b.handle_chain(ChainEvent::Tip(ChainTip::at(h)), &sb);
            assert!(fx.broadcast.is_empty());
        }
        assert!(b.force_close(&sb).broadcast.is_empty());
        assert!(b.close(&sb).is_err());
        let restored = Channel::restore(&persisted, RestoreCheck { channel_id: b.channel_id(), min_update_id: 0 });
        assert_eq!(restored.unwrap().phase(), Phase::Closed);
    }
}

/// Control: the honest funding transaction, with the same flow, confirms as usual.
#[test]
fn cve_2019_12999_13000_control_the_agreed_funding_output_confirms() {
    let (a, mut b) = duplex_until_funding();
    let sb = dx::signer(B);
    let good = wallet::unsigned_funding(outpoint_of(0x60), vec![a.funding_output().unwrap()]);
    let (created, _) = hostile_funding_created(a, &good);
    let _ = b.handle_message(Msg::FundingCreated(created), &sb, ChainTip::at(dx::START)).unwrap();
    let height = BlockHeight(dx::START + 1);
    let fx = b.handle_chain(ChainEvent::Confirmed { tx: &good, height }, &sb);
    assert_eq!(fx.events, vec![Event::FundingConfirmed { height }]);
    assert_eq!(b.phase(), Phase::Open);
}

// ---------------------------------------------------------------------------------------------
// CVE-2020-26895 (lnd): high-S signatures accepted
// ---------------------------------------------------------------------------------------------

/// A duplex peer sends each of its signatures in high-S form: the tree signatures of the
/// funding (`FundingCreated`, `FundingSigned`), a payment, a reset's node signatures and a
/// cooperative close. A high-S signature is valid to consensus, but a transaction carrying it
/// does not relay (BIP-0146): accepting one would leave us holding a branch, payment or close
/// we cannot get mined. Each is refused with the state byte-identical; the genuine low-S twin
/// (the same signature, normalised) is then taken.
#[test]
fn cve_2020_26895_high_s_duplex_signatures_are_refused() {
    let tip = ChainTip::at(dx::START);
    let (sa, sb) = (dx::signer(A), dx::signer(B));
    // The funding signatures.
    let (mut a, mut b) = duplex_until_funding();
    let funding = wallet::unsigned_funding(outpoint_of(0x42), vec![a.funding_output().unwrap()]);
    let Some(Msg::FundingCreated(fc)) = a.fund(funding.clone(), &sa).unwrap().send.pop() else { panic!() };
    for level in 0..=fc.node_sigs.len() {
        let mut hostile = fc.clone();
        match level {
            0 => hostile.kickoff_sig = high_s(&fc.kickoff_sig),
            l => hostile.node_sigs[fc.node_sigs.len() - l] = high_s(&fc.node_sigs[fc.node_sigs.len() - l]),
        }
        duplex_refuses(&b, &sb, Msg::FundingCreated(hostile), Misbehaviour::NodeSignature { level });
    }
    let Some(Msg::FundingSigned(fs)) = b.handle_message(Msg::FundingCreated(fc), &sb, tip).unwrap().send.pop() else {
        panic!()
    };
    let mut hostile = fs.clone();
    hostile.kickoff_sig = high_s(&fs.kickoff_sig);
    duplex_refuses(&a, &sa, Msg::FundingSigned(hostile), Misbehaviour::NodeSignature { level: 0 });
    let _ = a.handle_message(Msg::FundingSigned(fs), &sa, tip).unwrap();

    // A payment, a reset and a cooperative close, on an open channel.
    let mut p = dx::Pair::open(dx::terms(vec![2, 2]));
    let fx = p.parties[0].ch.pay(Amount::from_sat(10_000), &sa).unwrap();
    let Some(Msg::Payment(payment)) = fx.send.first().cloned() else { panic!() };
    p.absorb(A, fx);
    let hostile = spilman::Payment { signature: high_s(&payment.signature), ..payment };
    duplex_refuses(
        p.b(),
        &sb,
        Msg::Payment(hostile),
        Misbehaviour::Payment(paychan::spilman::payment::UpdateError::Signature(
            paychan::core::sign::SignatureError::HighS,
        )),
    );
    p.run();
    assert_eq!(p.b().balances().holder, Amount::from_sat(210_000));

    let fx = p.parties[0].ch.reset(&sa, p.tip()).unwrap();
    let Some(Msg::ResetPropose(propose)) = fx.send.first().cloned() else { panic!() };
    p.absorb(A, fx);
    for i in 0..propose.node_sigs.len() {
        let mut hostile = propose.clone();
        hostile.node_sigs[i] = high_s(&propose.node_sigs[i]);
        let err = p.b().clone().handle_message(Msg::ResetPropose(hostile.clone()), &sb, p.tip()).unwrap_err();
        assert!(matches!(err.kind, Misbehaviour::NodeSignature { .. }), "{err:?}");
        duplex_refuses(p.b(), &sb, Msg::ResetPropose(hostile), err.kind);
    }
    if let Some(base) = propose.base_sig {
        let hostile = duplex::ResetPropose { base_sig: Some(high_s(&base)), ..propose.clone() };
        let err = p.b().clone().handle_message(Msg::ResetPropose(hostile.clone()), &sb, p.tip()).unwrap_err();
        duplex_refuses(p.b(), &sb, Msg::ResetPropose(hostile), err.kind);
    }
    p.run();
    assert_eq!(p.a().digits(), p.b().digits());

    let fx = p.parties[0].ch.close(&sa).unwrap();
    let Some(Msg::CloseProposal(close)) = fx.send.first().cloned() else { panic!() };
    p.absorb(A, fx);
    let hostile = duplex::CloseProposal { signature: high_s(&close.signature), ..close };
    duplex_refuses(p.b(), &sb, Msg::CloseProposal(hostile), Misbehaviour::BadClose);
    p.run();
    assert!(p.parties[1].events.iter().any(|e| matches!(e, Event::CloseBroadcast { .. })));
}

/// The one Lightning signature the high-S checks of the other suites leave out: `closing_signed`.
/// The funder's proposal with its signature in high-S form is refused with the state
/// byte-identical; the genuine one closes the channel, paying the acceptor its 200,000 sat.
#[test]
fn cve_2020_26895_high_s_lightning_closing_signed_is_refused() {
    use paychan::core::commitment::signatures::CommitmentSigError;
    use paychan::core::commitment::ChannelType;
    use paychan::core::sign::SignatureError;
    use paychan::lightning::{Misbehaviour as LnMisbehaviour, Msg as LnMsg};
    for ct in [ChannelType::StaticRemoteKey, ChannelType::AnchorsZeroFeeHtlc] {
        let mut p = common::ln::Pair::open(ct, 1_000_000, 200_000_000);
        let range = (Amount::from_sat(1_000), Amount::from_sat(5_000));
        let fx = p.a.ch.shutdown(dx::p2wpkh(0xaa), range, &p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.run();
        let fx = p.b.ch.shutdown(dx::p2wpkh(0xbb), range, &p.b.signer).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        p.deliver_to_a();
        let Some(LnMsg::ClosingSigned { channel_id, fee_satoshis, signature, fee_range }) = p.to_b.front().cloned()
        else {
            panic!("closing_signed")
        };
        let hostile = LnMsg::ClosingSigned { channel_id, fee_satoshis, signature: negate_s(&signature), fee_range };
        let mut b = p.b.ch.clone();
        let before = b.snapshot();
        let err = b.handle_message(hostile, &p.b.signer, ChainTip::at(1_000)).unwrap_err();
        assert_eq!(err.kind, LnMisbehaviour::BadSignature(CommitmentSigError::Commitment(SignatureError::HighS)));
        assert!(b.snapshot() == before && b.closing_transaction().is_none());
        p.run();
        let close = p.b.ch.closing_transaction().cloned().expect("closed with the genuine signature");
        let to_b = close.output.iter().find(|o| o.script_pubkey == dx::p2wpkh(0xbb)).map(|o| o.value);
        assert_eq!(to_b, Some(Amount::from_sat(200_000)));
    }
}

// ---------------------------------------------------------------------------------------------
// Stale-state publication: Spilman
// ---------------------------------------------------------------------------------------------

const SP_CAPACITY: Amount = Amount::from_sat(100_000);
const SP_FEE: Amount = Amount::from_sat(500);

fn sp_signer(n: u8) -> InMemorySigner {
    InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([n; 32]), 0))
}

/// In a Spilman channel only the payee can publish a payment (it holds the payer's signatures),
/// so the stale state a hostile payer can push is an older or smaller one: it sends an older
/// payment again, and a "newer" one, validly signed, that pays less. Both are refused with the
/// payee's state byte-identical, and the payee's close publishes the newest payment: the payee
/// gets everything it was paid less the fee, the payer the rest, to the satoshi.
#[test]
fn stale_state_spilman_older_or_smaller_payment_never_replaces_the_newest() {
    for variant in [spilman::Variant::Cltv, spilman::Variant::PresignedRefund] {
        let tip = ChainTip::at(500);
        let (payer_signer, payee_signer) = (sp_signer(1), sp_signer(2));
        let payee_config = spilman::PayeeConfig {
            variant,
            payee_script: dx::p2wpkh(2),
            expiry: BlockHeight(1_000),
            min_first_payment: Amount::from_sat(10_000),
            dust_limit: Amount::from_sat(546),
            payment_fee: SP_FEE,
            close_margin: 6,
            htlc_min_blocks: 12,
            min_depth: 1,
            claim_fee: Amount::from_sat(300),
        };
        let (mut payee, fx) = spilman::Payee::new(payee_config, &payee_signer);
        let Some(spilman::Msg::Offer(offer)) = fx.send.into_iter().next() else { panic!("offer") };
        let payer_config = spilman::PayerConfig {
            capacity: SP_CAPACITY,
            payer_script: dx::p2wpkh(1),
            refund_fee: SP_FEE,
            claim_fee: Amount::from_sat(300),
            first_payment: Amount::from_sat(10_000),
            max_lifetime: 10_000,
        };
        let mut payer = spilman::Payer::new(offer, payer_config, &payer_signer, tip).unwrap();
        let funding = wallet::unsigned_funding(outpoint_of(0x70), vec![payer.funding_output()]);
        let mut to_payee: Vec<spilman::Msg> = payer.fund(funding.clone(), &payer_signer).unwrap().send;
        let mut payments = Vec::new();
        let mut deliver = |payee: &mut spilman::Payee, payer: &mut spilman::Payer, msgs: Vec<spilman::Msg>| {
            let mut queue = msgs;
            while let Some(m) = queue.pop() {
                if let spilman::Msg::Payment(p) = &m {
                    payments.push(p.clone());
                }
                for r in payee.handle_message(m, &payee_signer, tip).expect("payee takes it").send {
                    queue.extend(payer.handle_message(r, &payer_signer, tip).expect("payer takes it").send);
                }
            }
        };
        deliver(&mut payee, &mut payer, std::mem::take(&mut to_payee));
        let confirmed = ChainEvent::Confirmed { tx: &funding, height: tip.height };
        let _ = payee.handle_chain(confirmed, &payee_signer);
        for sats in [5_000, 7_000, 11_000] {
            let msgs = payer.pay(Amount::from_sat(sats), &payer_signer).unwrap().send;
            deliver(&mut payee, &mut payer, msgs);
        }
        let newest = Amount::from_sat(10_000 + 5_000 + 7_000 + 11_000);
        assert_eq!(payee.received(), newest);
        assert!(payments.len() >= 3);
        let refused = |payee: &spilman::Payee, msg: spilman::Msg, want: spilman::Misbehaviour| {
            let mut copy = payee.clone();
            let before = copy.snapshot();
            assert_eq!(copy.handle_message(msg, &payee_signer, tip).unwrap_err().kind, want);
            assert!(copy.snapshot() == before);
        };
        // Every older payment sent again.
        for p in &payments {
            refused(&payee, spilman::Msg::Payment(p.clone()), spilman::Misbehaviour::Replay);
        }
        // A later number paying less, validly signed by the payer.
        let t = payer.template().unwrap().clone();
        let state = spilman::PaymentState { to_payee: Amount::from_sat(15_000), htlcs: vec![] };
        let signature = t.sign(&payer_signer, &t.build(&state).unwrap()).unwrap();
        let smaller =
            spilman::Payment { number: payer.payment_number() + 1, to_payee: state.to_payee, htlcs: vec![], signature };
        refused(&payee, spilman::Msg::Payment(smaller), spilman::Misbehaviour::AmountDecreased);
        // The payee publishes the newest payment.
        let close = payee.closing_tx(&payee_signer).unwrap();
        let paid = |spk: &ScriptBuf| close.output.iter().find(|o| &o.script_pubkey == spk).map(|o| o.value);
        assert_eq!(paid(&dx::p2wpkh(2)), Some(newest - SP_FEE));
        assert_eq!(paid(&dx::p2wpkh(1)), Some(SP_CAPACITY - newest));
        common::verify_spend(&close, &[payer.funding_output()]).expect("valid on the funding output");
    }
}

// ---------------------------------------------------------------------------------------------
// Channel jamming: HTLC count in a duplex leaf channel
// ---------------------------------------------------------------------------------------------

/// A duplex peer jams the channel with HTLCs: the leaf channels share the Spilman payment code,
/// whose hard limit is 483 HTLC outputs (what keeps the payment transaction relayable, as in
/// Lightning). A payment adding a 484th is refused, whatever its signature, with the receiver's
/// state byte-identical; one with exactly 483, validly signed, is taken, and the receiver's
/// newest payment then pays it its balance and holds each HTLC as an output of its own value.
/// (Lightning's configurable count and value limits: `lightning_bad_input::updates::
/// update_add_htlc_ids_amounts_expiry_and_limits`.)
#[test]
fn channel_jamming_duplex_payment_with_more_than_483_htlcs_is_refused() {
    use paychan::core::PaymentPreimage;
    use paychan::spilman::payment::{PaymentError, UpdateError, MAX_HTLCS};
    // A payment fee that relays 483 HTLC outputs (43 vB each) at 1 sat/vB: with less, the
    // payment would not relay and is refused (`PaymentError::BelowMinRelay`).
    let terms = paychan::duplex::Terms { payment_fee: Amount::from_sat(25_000), ..dx::terms(vec![2, 2]) };
    let mut p = dx::Pair::open(terms);
    p.pay(A, 30_000);
    let (sa, sb) = (dx::signer(A), dx::signer(B));
    let (earliest, _) = p.b().htlc_expiry_window(p.tip());
    let expiry = BlockHeight(earliest.unwrap().0 + 10);
    let held = p.b().leaf_state(A).clone();
    let with = |n: usize| {
        let mut state = held.clone();
        let next = p.a().next_htlc_id();
        for i in 0..n as u64 {
            let hash = PaymentPreimage([(i % 251) as u8 + 1; 32]).hash();
            let htlc =
                spilman::PaymentHtlc { id: next + i, amount: Amount::from_sat(1_000), payment_hash: hash, expiry };
            state.htlcs.push(htlc);
        }
        state
    };
    let t = p.a().template(A).unwrap();
    let full = with(MAX_HTLCS);
    let built = t.build(&full).expect("483 HTLCs is the most a payment carries");
    let signature = t.sign(&sa, &built).unwrap();
    let over = with(MAX_HTLCS + 1);
    assert_eq!(t.build(&over).unwrap_err(), PaymentError::TooManyHtlcs);
    let jam = spilman::Payment { number: 1_000, to_payee: over.to_payee, htlcs: over.htlcs, signature };
    duplex_refuses(
        p.b(),
        &sb,
        Msg::Payment(jam),
        Misbehaviour::Payment(UpdateError::Payment(PaymentError::TooManyHtlcs)),
    );
    // The largest legitimate set is taken.
    let mut b = p.b().clone();
    let ok = spilman::Payment { number: 1_000, to_payee: full.to_payee, htlcs: full.htlcs.clone(), signature };
    let _ = b.handle_message(Msg::Payment(ok), &sb, p.tip()).expect("483 HTLCs");
    assert_eq!(b.leaf_state(A).htlcs.len(), MAX_HTLCS);
    assert_eq!(b.balances().received, Amount::from_sat(1_000 * MAX_HTLCS as u64));
    assert_eq!(b.balances().holder, p.b().balances().holder);
}

// ---------------------------------------------------------------------------------------------
// Replacement cycling / late preimage (Riard, 2023): the preimage shown only unconfirmed
// ---------------------------------------------------------------------------------------------

/// The route A –Spilman→ B –duplex→ C –Lightning→ D, D silent once it holds the HTLC, C closes
/// on chain at its deadline and times the HTLC out.
fn silent_route() -> (common::route::Route, common::route::Plan) {
    let mut r = common::route::Route::open(common::route::Final::Silent);
    let plan = r.plan(6, 0);
    r.install(&plan);
    r.send(&plan);
    r.run();
    (r, plan)
}

/// Whether `tx` spends `op`.
fn spends(tx: &Transaction, op: OutPoint) -> bool {
    tx.input.iter().any(|i| i.previous_output == op)
}

/// The attacker of the replacement-cycling tests: a node of the route that holds the preimage,
/// keeps its spends that reveal it off the honest broadcast path, and cycles them through the
/// mempool against its peer's timeout.
struct Cycler {
    /// The attacking node ('B', 'C' or 'D').
    attacker: char,
    hash: paychan::core::PaymentHash,
    preimage: paychan::core::PaymentPreimage,
    /// Cycles still to play (none: it does nothing, the control run).
    cycles: u32,
    played: u32,
    /// Its latest spend revealing the preimage, kept from the mempool.
    reveal: Option<Transaction>,
    first_seen_at: Option<u32>,
}

impl Cycler {
    fn new(attacker: char, preimage: paychan::core::PaymentPreimage, cycles: u32) -> Cycler {
        Cycler { attacker, hash: preimage.hash(), preimage, cycles, played: 0, reveal: None, first_seen_at: None }
    }

    fn reveals(&self, tx: &Transaction) -> bool {
        tx.input.iter().any(|i| self.hash.find_preimage_in(&i.witness).is_some())
    }

    /// Before a block: the attacker's claims are taken off the honest broadcast path. D (which
    /// never fulfils) has its channel given the preimage once C's commitment confirmed, so that
    /// it builds its claim.
    fn before_submit(&mut self, r: &mut common::route::Route) {
        if self.cycles == 0 {
            return;
        }
        if self.attacker == 'D' && self.reveal.is_none() && r.d.closing_kind().is_some() {
            let id = r.d.htlcs().iter().find(|h| h.offerer == paychan::lightning::Side::Counterparty).map(|h| h.id);
            if let Some(id) = id {
                let _ = r.d.provide_preimage(id, self.preimage);
                // D's embedder has its channel build the claim at once.
                let tip = r.tip();
                let fx = paychan::multihop::HtlcChannel::handle_chain(&mut r.d, ChainEvent::Tip(tip), &r.sd);
                r.pending.extend(fx.broadcast.into_iter().map(|t| ('D', t)));
            }
        }
        let attacker = self.attacker;
        let (held, rest): (Vec<_>, Vec<_>) =
            std::mem::take(&mut r.pending).into_iter().partition(|(w, t)| *w == attacker && self.reveals(t));
        r.pending = rest;
        if let Some((_, t)) = held.into_iter().last() {
            self.reveal = Some(t);
        }
    }

    /// Once the broadcasts reached the mempool: if the victim's timeout waits there, the
    /// attacker replaces it with its preimage spend (every embedder sees it), then replaces
    /// that with a spend of its own other input (modelled as an eviction): the HTLC output
    /// stays unspent.
    fn before_block(&mut self, r: &mut common::route::Route) {
        let Some(reveal) = self.reveal.clone() else { return };
        let htlc_output = reveal.input[0].previous_output;
        let timeout_waiting = r.chain.mempool().iter().any(|t| spends(t, htlc_output) && !self.reveals(t));
        if self.played >= self.cycles || !timeout_waiting {
            return;
        }
        self.played += 1;
        let evicted = r.chain.replace(&reveal).expect("the preimage spend is valid");
        assert!(!evicted.is_empty(), "the preimage spend evicted the timeout");
        let before = snapshots(r);
        r.seen(&reveal);
        if self.played > 1 {
            // The same spend seen again (the attacker's next cycle): nothing changes anywhere.
            assert!(snapshots(r) == before, "a spend seen again changed a node");
        }
        self.first_seen_at.get_or_insert(r.chain.height);
        assert_eq!(r.chain.evict(&reveal.compute_txid()).len(), 1, "the attacker replaces its own spend in turn");
    }

    /// The confirmed spend of the cycled output, if any.
    fn timeout_confirmed_opt(&self, r: &common::route::Route) -> Option<Transaction> {
        let op = self.reveal.as_ref()?.input[0].previous_output;
        r.chain.confirmed_txs().into_iter().find(|t| spends(t, op)).cloned()
    }

    /// The victim's timeout claim that confirmed: the confirmed spend of the cycled output,
    /// which does not reveal the preimage.
    fn timeout_confirmed(&self, r: &common::route::Route) -> Transaction {
        let tx = self.timeout_confirmed_opt(r).expect("the HTLC output was claimed");
        assert!(!self.reveals(&tx), "the preimage never confirmed");
        tx
    }
}

/// Every encoded state of the route: A, B and C (each forwarder and both its channels), D.
fn snapshots(r: &common::route::Route) -> Vec<Vec<u8>> {
    vec![
        r.a.snapshot(),
        r.b.snapshot(),
        r.b.incoming().snapshot(),
        r.b.outgoing().snapshot(),
        r.c.snapshot(),
        r.c.incoming().snapshot(),
        r.c.outgoing().snapshot(),
        r.d.snapshot(),
    ]
}

/// Mines until `done` (and nothing waits to be broadcast or mined), the attacker playing.
fn resolve_until(r: &mut common::route::Route, d: &mut Cycler, done: impl Fn(&common::route::Route, &Cycler) -> bool) {
    for _ in 0..400 {
        d.before_submit(r);
        if done(r, d) && r.pending.is_empty() && r.chain.mempool().is_empty() {
            return;
        }
        r.mine_with(|r| d.before_block(r));
    }
    panic!("not resolved:\n{}", r.log.join("\n"));
}

/// Mines until C's Lightning channel has nothing left to claim.
fn resolve(r: &mut common::route::Route, d: &mut Cycler) {
    resolve_until(r, d, |r, _| r.c.outgoing().is_fully_resolved());
}

/// The attacker D (downstream of the honest forwarder C) holds the preimage but never fulfils.
/// C closes on chain at its deadline and broadcasts its HTLC-timeout after the expiry; D evicts
/// it from the mempool with a spend of the same HTLC output through the success path (its
/// witness carries the preimage), then evicts that one in turn with a transaction spending only
/// an output of its own: the HTLC output is unspent again, and neither spend confirms. D
/// repeats this against C's rebroadcasts for three blocks, hoping C's incoming HTLC expires
/// first (then B, an accomplice upstream, would take it back by timeout and D could still claim
/// downstream). C's embedder reports each unconfirmed spend it saw (`ChainEvent::Seen`): C
/// learns the preimage from the first one and fulfils upstream at once, off chain; its channel
/// broadcasts its HTLC-timeout again on every block while the output is unspent, and it
/// confirms once D stops. C ends whole to the satoshi across both channels: on chain exactly
/// what the same close pays it when D reveals nothing, and upstream the whole incoming HTLC.
/// Before the fix C could not hear of an unconfirmed spend, and never broadcast its timeout
/// again once it was evicted.
#[test]
fn replacement_cycling_preimage_shown_only_unconfirmed_is_claimed_upstream_and_the_timeout_still_confirms() {
    let preimage = silent_route().0.preimage;
    let cycler = |cycles| Cycler::new('D', preimage, cycles);
    // The same close without the attack: C times the HTLC out, D reveals nothing.
    let (mut base, plan) = silent_route();
    resolve(&mut base, &mut cycler(0));
    let c_script = base.c.outgoing().sweep_destination();
    let d_script = base.d.sweep_destination();
    let (c_base, d_base) = (base.paid_on_chain(&c_script), base.paid_on_chain(&d_script));
    assert!(c_base > 0 && !base.settled('C') && !base.sender_has_preimage());

    let (mut r, plan2) = silent_route();
    assert_eq!(plan, plan2);
    // An unconfirmed transaction that spends nothing a node watches changes nothing.
    let unrelated = r.chain.confirmed_txs()[0].clone();
    let before = snapshots(&r);
    r.seen(&unrelated);
    assert!(snapshots(&r) == before && r.pending.is_empty());
    let c_duplex_before = i128::from(r.c.incoming().balances().holder.to_sat()) * 1_000;
    let b_before = r.positions()[1];
    let mut d = cycler(3);
    resolve(&mut r, &mut d);
    assert_eq!(d.played, 3, "D cycled C's HTLC-timeout out of the mempool three times:\n{}", r.log.join("\n"));
    let first_seen_at = d.first_seen_at.expect("seen");

    // C learnt the preimage from the unconfirmed spend and fulfilled upstream before its
    // incoming HTLC expired; the preimage reached the sender; nothing that reveals it confirmed.
    assert!(r.settled('C') && r.settled('B') && r.sender_has_preimage(), "{}", r.log.join("\n"));
    assert!(first_seen_at < plan.bc.expiry.0);
    assert!(r.chain.confirmed_txs().iter().all(|t| !d.reveals(t)), "the preimage never confirmed");
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    let learnt = |e: &paychan::lightning::Event| matches!(e, paychan::lightning::Event::HtlcFulfilled { preimage: p, .. } if *p == preimage);
    assert_eq!(r.c_out_events.iter().filter(|e| learnt(e)).count(), 1);
    assert!(!r.c_out_events.iter().any(|e| matches!(e, paychan::lightning::Event::HtlcFailed { .. })));
    // C's HTLC-timeout confirmed after the cycles (C broadcast it again on each block).
    let timeout = r
        .chain
        .confirmed_txs()
        .into_iter()
        .find(|t| t.lock_time.to_consensus_u32() == plan.cd.expiry.0)
        .expect("C's HTLC-timeout confirmed")
        .clone();
    assert!(r.chain.confirmation(&timeout.compute_txid()).expect("confirmed") > first_seen_at + 2);
    // Whole to the satoshi: on chain, C and D get exactly what the close without the attack
    // pays them; upstream, C's duplex balance grew by the whole incoming HTLC, B earned its fee.
    assert_eq!(r.paid_on_chain(&c_script), c_base);
    assert_eq!(r.paid_on_chain(&d_script), d_base);
    let c_duplex = i128::from(r.c.incoming().balances().holder.to_sat()) * 1_000;
    assert_eq!(c_duplex - c_duplex_before, i128::from(plan.bc.amount.to_msat()));
    assert_eq!(r.positions()[1] - b_before, i128::from(plan.ab.amount.to_msat() - plan.bc.amount.to_msat()));
}

/// The same attack one hop up, on the duplex channel B → C: C learnt the preimage off chain but
/// its fulfil never reaches B, so C claims B's HTLC on chain; C (here the attacker) shows that
/// claim only in the mempool, each time in place of B's timeout, and evicts it, three times. B
/// learns the preimage from the first unconfirmed spend and settles upstream (the sender gets
/// it) at once; its duplex channel broadcasts the timeout again on each block, and it confirms,
/// paying B the whole HTLC less the claim fee. Before the fix B learnt nothing until a spend
/// confirmed, and once its timeout was evicted it was never broadcast again.
#[test]
fn replacement_cycling_duplex_preimage_shown_only_unconfirmed_is_learnt_and_the_timeout_still_confirms() {
    let mut r = common::route::Route::open(common::route::Final::Fulfill);
    r.cut_on_fulfil = vec![common::route::Link::CB];
    let plan = r.plan(6, 0);
    r.install(&plan);
    r.send(&plan);
    r.run();
    assert!(r.settled('C') && !r.settled('B'));
    let mut c = Cycler::new('C', r.preimage, 3);
    resolve_until(&mut r, &mut c, |r, c| r.settled('B') && c.timeout_confirmed_opt(r).is_some());
    assert_eq!(c.played, 3, "{}", r.log.join("\n"));
    let first_seen_at = c.first_seen_at.expect("seen");
    assert!(r.settled('B') && r.sender_has_preimage(), "{}", r.log.join("\n"));
    assert!(first_seen_at < plan.ab.expiry.0, "B settled upstream before its incoming HTLC expired");
    assert!(!r.b_out_events.iter().any(|e| matches!(e, duplex::Event::HtlcFailIrrevocable { .. })));
    let timeout = c.timeout_confirmed(&r);
    assert!(r.chain.confirmation(&timeout.compute_txid()).expect("confirmed") > first_seen_at + 2);
    assert_eq!(timeout.output[0].script_pubkey, dx::payout(Role::Initiator));
    assert_eq!(timeout.output[0].value.to_sat(), plan.bc.amount.to_msat() / 1_000 - dx::CLAIM_FEE);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
}

/// The same attack on the Spilman channel A → B: B learnt the preimage but its fulfil never
/// reaches A, so B claims A's HTLC on chain; B shows that claim only in the mempool, each time in
/// place of A's timeout, and evicts it, three times. A (the sender) learns the preimage, its
/// proof of payment, from the first unconfirmed spend; its timeout is broadcast again on each
/// block and confirms, paying A the whole HTLC less the claim fee. Before the fix A learnt
/// nothing, and an A that already knew the preimage never timed the HTLC out at all.
#[test]
fn replacement_cycling_spilman_preimage_shown_only_unconfirmed_is_learnt_and_the_timeout_still_confirms() {
    let mut r = common::route::Route::open(common::route::Final::Fulfill);
    r.cut_on_fulfil = vec![common::route::Link::BA];
    let plan = r.plan(6, 0);
    r.install(&plan);
    r.send(&plan);
    r.run();
    assert!(r.settled('B') && !r.sender_has_preimage());
    let mut b = Cycler::new('B', r.preimage, 3);
    resolve_until(&mut r, &mut b, |r, b| r.sender_has_preimage() && b.timeout_confirmed_opt(r).is_some());
    assert_eq!(b.played, 3, "{}", r.log.join("\n"));
    let first_seen_at = b.first_seen_at.expect("seen");
    assert!(r.sender_has_preimage());
    assert!(first_seen_at <= plan.ab.expiry.0 + 1);
    let timeout = b.timeout_confirmed(&r);
    assert!(r.chain.confirmation(&timeout.compute_txid()).expect("confirmed") > first_seen_at + 2);
    assert_eq!(timeout.output[0].script_pubkey, common::route::spilman_script(true));
    assert_eq!(
        timeout.output[0].value.to_sat(),
        plan.ab.amount.to_msat() / 1_000 - common::route::spilman_payer_config().claim_fee.to_sat()
    );
    assert!(!r.a_events.iter().any(|e| matches!(e, spilman::Event::HtlcFailIrrevocable { .. })));
}
