//! The payee's receive path (`network::receive`) on a real channel: a hostile payer (or prober)
//! picks the onion, the payment secret and the expiry; the payee settles only an HTLC that
//! matches its invoice and fails every other one back in the form BOLT #4 asks, attributed to it
//! at the origin. Balances are checked to the millisatoshi.

mod common;

use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use common::ln::Pair;
use paychan::core::commitment::ChannelType;
use paychan::core::{MilliSats, PaymentHash, PaymentPreimage};
use paychan::lightning::{Event, Msg, OnionPacket, Side};
use paychan::network::onion::{build_onion, failure, read_failure};
use paychan::network::payload::HopPayload;
use paychan::network::receive::{receive_final, receive_keysend, receive_part, FailBack, ReceivedHtlc};

const SECRET: [u8; 32] = [0x5e; 32];
const DELTA: u32 = 40;
const AMOUNT: u64 = 7_000_000;

fn payee_key() -> SecretKey {
    SecretKey::from_slice(&[0x77; 32]).unwrap()
}

fn node_id(k: &SecretKey) -> PublicKey {
    PublicKey::from_secret_key(&Secp256k1::new(), k)
}

fn final_payload(secret: [u8; 32], cltv: u32) -> Vec<u8> {
    HopPayload::Final {
        amt_to_forward: AMOUNT,
        outgoing_cltv_value: cltv,
        payment_data: Some((secret, AMOUNT)),
        payment_metadata: None,
        keysend_preimage: None,
    }
    .encode()
}

/// a offers b an HTLC with `onion`; returns b's HTLC as reported.
fn offer(p: &mut Pair, onion: OnionPacket, hash: PaymentHash, cltv: u32) -> (u64, OnionPacket) {
    offer_msat(p, onion, hash, cltv, AMOUNT)
}

/// As [`offer`], for `amount` msat.
fn offer_msat(p: &mut Pair, onion: OnionPacket, hash: PaymentHash, cltv: u32, amount: u64) -> (u64, OnionPacket) {
    let (_, fx) = p.a.ch.add_htlc(MilliSats::from_msat(amount), hash, cltv, onion).unwrap();
    p.a.absorb_pub(fx, &mut p.to_b);
    p.settle();
    p.b.take_events()
        .into_iter()
        .find_map(|e| match e {
            Event::HtlcReceived { id, onion, .. } => Some((id, onion.unwrap())),
            _ => None,
        })
        .expect("received")
}

/// b fails the HTLC with `answer`; returns the message that carried it to a, after settling.
fn fail_back(p: &mut Pair, id: u64, answer: FailBack) -> Msg {
    let fx = answer.apply(&mut p.b.ch, id).unwrap();
    p.b.absorb_pub(fx, &mut p.to_a);
    let msg = p.to_a.front().cloned().expect("the failure message");
    p.settle();
    assert!(p.a.take_events().iter().any(|e| matches!(e, Event::HtlcFailed { .. })));
    assert!(p.a.ch.htlcs().is_empty() && p.b.ch.htlcs().is_empty());
    msg
}

fn balances(p: &Pair) -> (u64, u64) {
    let b = p.b.ch.balances(Side::Holder);
    (b.holder.to_msat(), b.counterparty.to_msat())
}

#[test]
fn an_htlc_matching_the_invoice_is_settled() {
    let mut p = Pair::open(ChannelType::StaticRemoteKey, 1_000_000, 200_000_000);
    let before = balances(&p);
    let pre = PaymentPreimage([3; 32]);
    let cltv = p.tip + DELTA + 2;
    let (onion, _) = build_onion(
        &Secp256k1::signing_only(),
        &[node_id(&payee_key())],
        &[final_payload(SECRET, cltv)],
        &SecretKey::from_slice(&[9; 32]).unwrap(),
        &pre.hash().0,
    )
    .unwrap();
    let (id, onion) = offer(&mut p, onion, pre.hash(), cltv);
    let htlc = ReceivedHtlc {
        onion: &onion,
        payment_hash: pre.hash(),
        amount: MilliSats::from_msat(AMOUNT),
        cltv_expiry: cltv,
    };
    receive_final(&htlc, &payee_key(), &SECRET, DELTA, p.tip).expect("the invoice's payment");
    let fx = p.b.ch.fulfill_htlc(id, pre).unwrap();
    p.b.absorb_pub(fx, &mut p.to_a);
    p.settle();
    assert_eq!(balances(&p), (before.0 + AMOUNT, before.1 - AMOUNT));
}

/// A prober pays a hash with a guessed secret to learn whether the payee expects it: it learns
/// only "unknown payment details", the answer for an unknown hash too, attributed to the payee.
#[test]
fn a_prober_guessing_the_payment_secret_learns_only_unknown_payment() {
    let mut p = Pair::open(ChannelType::StaticRemoteKey, 1_000_000, 200_000_000);
    let before = balances(&p);
    let hash = PaymentPreimage([3; 32]).hash();
    let cltv = p.tip + DELTA + 2;
    let (onion, secrets) = build_onion(
        &Secp256k1::signing_only(),
        &[node_id(&payee_key())],
        &[final_payload([0xee; 32], cltv)],
        &SecretKey::from_slice(&[9; 32]).unwrap(),
        &hash.0,
    )
    .unwrap();
    let (id, onion) = offer(&mut p, onion, hash, cltv);
    let htlc =
        ReceivedHtlc { onion: &onion, payment_hash: hash, amount: MilliSats::from_msat(AMOUNT), cltv_expiry: cltv };
    let answer = receive_final(&htlc, &payee_key(), &SECRET, DELTA, p.tip).unwrap_err();
    assert_eq!(answer.code(), failure::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS);
    let Msg::UpdateFailHtlc { reason, .. } = fail_back(&mut p, id, answer) else { panic!("update_fail_htlc") };
    let got = read_failure(&secrets, &reason).expect("the origin reads it");
    assert_eq!(got.hop, 0);
    assert_eq!(got.code(), Some(failure::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS));
    let mut data = AMOUNT.to_be_bytes().to_vec();
    data.extend_from_slice(&p.tip.to_be_bytes());
    assert_eq!(&got.message[2..], &data[..], "htlc_msat and height");
    assert_eq!(balances(&p), before, "nothing moved");
}

/// A payer gives the final HTLC less time than the invoice's `min_final_cltv_expiry_delta` (but
/// enough for the channel's own margin): the payee could not be sure to claim it on chain in
/// time. `HopPayload::check_final` alone accepted it; the receive path fails it back.
#[test]
fn an_htlc_expiring_before_the_invoice_delta_is_failed_back() {
    let mut p = Pair::open(ChannelType::AnchorsZeroFeeHtlc, 1_000_000, 200_000_000);
    let before = balances(&p);
    let hash = PaymentPreimage([4; 32]).hash();
    let cltv = p.tip + DELTA - 1;
    let (onion, secrets) = build_onion(
        &Secp256k1::signing_only(),
        &[node_id(&payee_key())],
        &[final_payload(SECRET, cltv)],
        &SecretKey::from_slice(&[9; 32]).unwrap(),
        &hash.0,
    )
    .unwrap();
    let (id, onion) = offer(&mut p, onion, hash, cltv);
    let hop = HopPayload::decode(&final_payload(SECRET, cltv)[1..], true).unwrap();
    assert!(hop.check_final(AMOUNT, cltv, &SECRET, p.tip).is_ok(), "the old check let it through");
    let htlc =
        ReceivedHtlc { onion: &onion, payment_hash: hash, amount: MilliSats::from_msat(AMOUNT), cltv_expiry: cltv };
    let answer = receive_final(&htlc, &payee_key(), &SECRET, DELTA, p.tip).unwrap_err();
    let Msg::UpdateFailHtlc { reason, .. } = fail_back(&mut p, id, answer) else { panic!("update_fail_htlc") };
    assert_eq!(read_failure(&secrets, &reason).unwrap().code(), Some(failure::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS));
    assert_eq!(balances(&p), before);
}

/// The previous hop garbles the onion: the payee cannot wrap a failure the origin could read, so
/// it answers `update_fail_malformed_htlc` with the onion's hash and the BADONION code.
#[test]
fn a_garbled_onion_is_answered_with_fail_malformed() {
    let mut p = Pair::open(ChannelType::StaticRemoteKey, 1_000_000, 200_000_000);
    let before = balances(&p);
    let hash = PaymentPreimage([5; 32]).hash();
    let cltv = p.tip + DELTA + 2;
    let (mut onion, _) = build_onion(
        &Secp256k1::signing_only(),
        &[node_id(&payee_key())],
        &[final_payload(SECRET, cltv)],
        &SecretKey::from_slice(&[9; 32]).unwrap(),
        &hash.0,
    )
    .unwrap();
    onion.bytes_mut()[100] ^= 1;
    let (id, onion) = offer(&mut p, onion, hash, cltv);
    let htlc =
        ReceivedHtlc { onion: &onion, payment_hash: hash, amount: MilliSats::from_msat(AMOUNT), cltv_expiry: cltv };
    let answer = receive_final(&htlc, &payee_key(), &SECRET, DELTA, p.tip).unwrap_err();
    use bitcoin::hashes::{sha256, Hash};
    let expected = sha256::Hash::hash(onion.as_bytes()).to_byte_array();
    assert_eq!(answer, FailBack::Malformed { sha256_of_onion: expected, failure_code: failure::INVALID_ONION_HMAC });
    let msg = fail_back(&mut p, id, answer);
    assert!(matches!(msg, Msg::UpdateFailMalformedHtlc { failure_code, sha256_of_onion, .. }
        if failure_code == failure::INVALID_ONION_HMAC && sha256_of_onion == expected));
    assert_eq!(balances(&p), before);
}

/// An onion that asks the payee to forward, when it only receives: `unknown_next_peer`, read by
/// the origin at the payee's hop.
#[test]
fn an_onion_asking_the_payee_to_forward_is_failed_back() {
    let mut p = Pair::open(ChannelType::StaticRemoteKey, 1_000_000, 200_000_000);
    let before = balances(&p);
    let hash = PaymentPreimage([6; 32]).hash();
    let cltv = p.tip + DELTA + 2;
    let other = SecretKey::from_slice(&[0x88; 32]).unwrap();
    let forward =
        HopPayload::Forward { amt_to_forward: AMOUNT - 1_000, outgoing_cltv_value: cltv - 40, short_channel_id: 9 };
    let (onion, secrets) = build_onion(
        &Secp256k1::signing_only(),
        &[node_id(&payee_key()), node_id(&other)],
        &[forward.encode(), final_payload(SECRET, cltv - 40)],
        &SecretKey::from_slice(&[9; 32]).unwrap(),
        &hash.0,
    )
    .unwrap();
    let (id, onion) = offer(&mut p, onion, hash, cltv);
    let htlc =
        ReceivedHtlc { onion: &onion, payment_hash: hash, amount: MilliSats::from_msat(AMOUNT), cltv_expiry: cltv };
    let answer = receive_final(&htlc, &payee_key(), &SECRET, DELTA, p.tip).unwrap_err();
    let Msg::UpdateFailHtlc { reason, .. } = fail_back(&mut p, id, answer) else { panic!("update_fail_htlc") };
    let got = read_failure(&secrets, &reason).unwrap();
    assert_eq!((got.hop, got.code()), (0, Some(failure::UNKNOWN_NEXT_PEER)));
    assert_eq!(balances(&p), before);
}

fn keysend_payload(preimage: Option<PaymentPreimage>, amount: u64, cltv: u32) -> Vec<u8> {
    HopPayload::Final {
        amt_to_forward: amount,
        outgoing_cltv_value: cltv,
        payment_data: None,
        payment_metadata: None,
        keysend_preimage: preimage,
    }
    .encode()
}

/// A keysend onion to the payee for `hash`, with its shared secrets for the origin.
fn keysend_onion(payload: Vec<u8>, hash: PaymentHash) -> (OnionPacket, Vec<[u8; 32]>) {
    build_onion(
        &Secp256k1::signing_only(),
        &[node_id(&payee_key())],
        &[payload],
        &SecretKey::from_slice(&[9; 32]).unwrap(),
        &hash.0,
    )
    .unwrap()
}

/// A keysend (no invoice): the payee takes the preimage from the onion, checks it against the
/// hash, and settles with it; the payer's preimage round-trips through the BOLT #4 decoder
/// (its even type 5482373484 used to be refused as unknown).
#[test]
fn a_keysend_is_settled_with_the_payers_preimage() {
    let mut p = Pair::open(ChannelType::AnchorsZeroFeeHtlc, 1_000_000, 200_000_000);
    let before = balances(&p);
    let pre = PaymentPreimage([0x4b; 32]);
    let cltv = p.tip + DELTA;
    let payload = keysend_payload(Some(pre), AMOUNT, cltv);
    let decoded = HopPayload::decode(&payload[1..], true).expect("keysend decodes");
    assert!(matches!(decoded, HopPayload::Final { keysend_preimage: Some(k), .. } if k == pre));
    let (onion, _) = keysend_onion(payload, pre.hash());
    let (id, onion) = offer(&mut p, onion, pre.hash(), cltv);
    let htlc = ReceivedHtlc {
        onion: &onion,
        payment_hash: pre.hash(),
        amount: MilliSats::from_msat(AMOUNT),
        cltv_expiry: cltv,
    };
    let (hop, got) = receive_keysend(&htlc, &payee_key(), DELTA, p.tip).expect("a valid keysend");
    assert_eq!(got, pre);
    assert!(matches!(hop, HopPayload::Final { amt_to_forward: AMOUNT, .. }));
    // Without an invoice the receive path for invoices refuses it (no payment secret).
    assert_eq!(
        receive_final(&htlc, &payee_key(), &SECRET, DELTA, p.tip).unwrap_err().code(),
        failure::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS
    );
    let fx = p.b.ch.fulfill_htlc(id, got).unwrap();
    p.b.absorb_pub(fx, &mut p.to_a);
    p.settle();
    assert_eq!(balances(&p), (before.0 + AMOUNT, before.1 - AMOUNT));
}

/// The attack: a keysend whose preimage does not hash to the HTLC's payment hash (a prober, or
/// a payer hoping the payee settles a hash it cannot unlock). It is refused with the answer for
/// an unknown payment, attributed to the payee, before any amount or expiry check (even an
/// underpaying HTLC gets the same answer), the failure carries only `htlc_msat` and `height`,
/// and the payer is refunded to the msat. A keysend without a preimage gets the same answer.
#[test]
fn a_keysend_whose_preimage_does_not_match_is_refused_revealing_nothing() {
    let mut p = Pair::open(ChannelType::StaticRemoteKey, 1_000_000, 200_000_000);
    let before = balances(&p);
    let hash = PaymentPreimage([0x11; 32]).hash();
    let wrong = PaymentPreimage([0x22; 32]);
    let cltv = p.tip + DELTA;
    for (payload, amount) in [
        (keysend_payload(Some(wrong), AMOUNT, cltv), AMOUNT),
        (keysend_payload(Some(wrong), AMOUNT, cltv), AMOUNT - 1),
        (keysend_payload(None, AMOUNT, cltv), AMOUNT),
    ] {
        let (onion, secrets) = keysend_onion(payload, hash);
        let (id, onion) = offer_msat(&mut p, onion, hash, cltv, amount);
        let htlc =
            ReceivedHtlc { onion: &onion, payment_hash: hash, amount: MilliSats::from_msat(amount), cltv_expiry: cltv };
        let answer = receive_keysend(&htlc, &payee_key(), DELTA, p.tip).unwrap_err();
        assert_eq!(answer, receive_part(&htlc, &payee_key(), None, DELTA, p.tip).unwrap_err());
        let Msg::UpdateFailHtlc { reason, .. } = fail_back(&mut p, id, answer) else { panic!("update_fail_htlc") };
        let got = read_failure(&secrets, &reason).expect("the origin reads it");
        assert_eq!((got.hop, got.code()), (0, Some(failure::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS)));
        let mut data = amount.to_be_bytes().to_vec();
        data.extend_from_slice(&p.tip.to_be_bytes());
        assert_eq!(&got.message[2..], &data[..], "htlc_msat and height, nothing else");
        assert!(!reason.windows(32).any(|w| w == wrong.0), "no preimage in the failure");
        assert_eq!(balances(&p), before, "refunded to the msat");
    }
}

/// A keysend with the right preimage is still held to the final-hop rules: less than the
/// payload's amount gets `final_incorrect_htlc_amount`, an expiry before the payee's delta gets
/// `incorrect_or_unknown_payment_details`; a part of a multi-part keysend is refused by the
/// single-part path (it belongs to a collector, see tests/network_mpp.rs).
#[test]
fn a_keysend_is_held_to_the_amount_and_expiry_rules() {
    let tip = 800_000;
    let pre = PaymentPreimage([0x33; 32]);
    let check = |payload: Vec<u8>, amount: u64, cltv: u32| {
        let (onion, _) = keysend_onion(payload, pre.hash());
        let htlc = ReceivedHtlc {
            onion: &onion,
            payment_hash: pre.hash(),
            amount: MilliSats::from_msat(amount),
            cltv_expiry: cltv,
        };
        receive_keysend(&htlc, &payee_key(), DELTA, tip).map(|(_, p)| p).map_err(|e| e.code())
    };
    assert_eq!(check(keysend_payload(Some(pre), AMOUNT, tip + DELTA), AMOUNT, tip + DELTA), Ok(pre));
    assert_eq!(
        check(keysend_payload(Some(pre), AMOUNT, tip + DELTA), AMOUNT - 1, tip + DELTA),
        Err(failure::FINAL_INCORRECT_HTLC_AMOUNT)
    );
    assert_eq!(
        check(keysend_payload(Some(pre), AMOUNT, tip + DELTA), AMOUNT, tip + DELTA - 1),
        Err(failure::FINAL_INCORRECT_CLTV_EXPIRY)
    );
    assert_eq!(
        check(keysend_payload(Some(pre), AMOUNT, tip + DELTA - 1), AMOUNT, tip + DELTA - 1),
        Err(failure::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS)
    );
    let part = HopPayload::Final {
        amt_to_forward: AMOUNT,
        outgoing_cltv_value: tip + DELTA,
        payment_data: Some(([0x99; 32], AMOUNT + 1)),
        payment_metadata: None,
        keysend_preimage: Some(pre),
    };
    assert_eq!(check(part.encode(), AMOUNT, tip + DELTA), Err(failure::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS));
}
