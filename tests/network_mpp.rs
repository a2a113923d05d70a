//! Receiving a multi-part payment (`network::mpp`) on a real channel: the payee holds every part
//! until their amounts reach the `total_msat` they all name, then settles them together; a
//! payment that does not add up in time, or whose parts disagree, is failed back whole, and the
//! payer is refunded to the millisatoshi. Hostile values the payer chooses (totals, secrets,
//! amounts overflowing a u64, parts after completion) are refused.

use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use paychan::core::commitment::ChannelType;
use paychan::core::{MilliSats, PaymentHash, PaymentPreimage};
use paychan::lightning::{Event, OnionPacket, Side};
use paychan::network::mpp::{Collected, MppCollector};
use paychan::network::onion::{build_onion, failure, read_failure};
use paychan::network::payload::HopPayload;
use paychan::network::receive::{receive_part, FailBack, FinalPart, ReceivedHtlc};
use paychan::testing::lightning::Pair;

const SECRET: [u8; 32] = [0x5e; 32];
const DELTA: u32 = 40;
const TIMEOUT: u32 = 6;
const TIP: u32 = 800_000;

fn payee_key() -> SecretKey {
    SecretKey::from_slice(&[0x77; 32]).unwrap()
}

fn node_id(k: &SecretKey) -> PublicKey {
    PublicKey::from_secret_key(&Secp256k1::new(), k)
}

/// One part's final payload.
fn payload(amt: u64, cltv: u32, data: Option<([u8; 32], u64)>, keysend: Option<PaymentPreimage>) -> HopPayload {
    HopPayload::Final {
        amt_to_forward: amt,
        outgoing_cltv_value: cltv,
        payment_data: data,
        payment_metadata: None,
        keysend_preimage: keysend,
    }
}

/// The onion for one part (session key `session`), with its shared secrets for the origin.
fn onion(hop: &HopPayload, hash: PaymentHash, session: u8) -> (OnionPacket, Vec<[u8; 32]>) {
    build_onion(
        &Secp256k1::signing_only(),
        &[node_id(&payee_key())],
        &[hop.encode()],
        &SecretKey::from_slice(&[session; 32]).unwrap(),
        &hash.0,
    )
    .unwrap()
}

/// A part checked by the payee, without a channel: `amount` msat carrying `hop`.
fn part(hop: &HopPayload, hash: PaymentHash, amount: u64, invoice: Option<&[u8; 32]>) -> FinalPart {
    let (onion, _) = onion(hop, hash, 9);
    let htlc = ReceivedHtlc {
        onion: &onion,
        payment_hash: hash,
        amount: MilliSats::from_msat(amount),
        cltv_expiry: TIP + DELTA,
    };
    receive_part(&htlc, &payee_key(), invoice, DELTA, TIP).expect("a valid part")
}

fn invoice_part(amount: u64, total: u64, hash: PaymentHash) -> FinalPart {
    part(&payload(amount, TIP + DELTA, Some((SECRET, total)), None), hash, amount, Some(&SECRET))
}

fn balances(p: &Pair) -> (u64, u64) {
    let b = p.b.ch.balances(Side::Holder);
    (b.holder.to_msat(), b.counterparty.to_msat())
}

/// A channel where a (the payer) offers b (the payee) the parts of a payment.
struct Payment {
    p: Pair,
    hash: PaymentHash,
    /// Per part: b's HTLC id and the origin's shared secrets.
    parts: Vec<(u64, Vec<[u8; 32]>)>,
}

impl Payment {
    fn new(preimage: PaymentPreimage) -> Self {
        Payment {
            p: Pair::open(ChannelType::AnchorsZeroFeeHtlc, 1_000_000, 200_000_000),
            hash: preimage.hash(),
            parts: Vec::new(),
        }
    }

    /// a sends a part of `amount` msat carrying `hop`; returns it as b checked it.
    fn send(&mut self, hop: &HopPayload, amount: u64, invoice: Option<&[u8; 32]>) -> FinalPart {
        let p = &mut self.p;
        let cltv = p.tip + DELTA;
        let (packet, secrets) = onion(hop, self.hash, 10 + self.parts.len() as u8);
        let (_, fx) = p.a.ch.add_htlc(MilliSats::from_msat(amount), self.hash, cltv, packet).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.settle();
        let (id, packet) =
            p.b.take_events()
                .into_iter()
                .find_map(|e| match e {
                    Event::HtlcReceived { id, onion, .. } => Some((id, onion.unwrap())),
                    _ => None,
                })
                .expect("received");
        self.parts.push((id, secrets));
        let htlc = ReceivedHtlc {
            onion: &packet,
            payment_hash: self.hash,
            amount: MilliSats::from_msat(amount),
            cltv_expiry: cltv,
        };
        receive_part(&htlc, &payee_key(), invoice, DELTA, p.tip).expect("a valid part")
    }

    fn settle_all(&mut self, ids: &[u64], preimage: PaymentPreimage) {
        for id in ids {
            let fx = self.p.b.ch.fulfill_htlc(*id, preimage).unwrap();
            self.p.b.absorb_pub(fx, &mut self.p.to_a);
        }
        self.p.settle();
        assert!(self.p.b.ch.htlcs().is_empty());
    }

    /// b fails the parts back; the origin reads each failure at hop 0 with `code`.
    fn fail_all(&mut self, answers: Vec<(u64, FailBack)>, code: u16) {
        for (id, answer) in answers {
            assert_eq!(answer.code(), code);
            let FailBack::Fail { reason, .. } = &answer else { panic!("update_fail_htlc") };
            let secrets = &self.parts.iter().find(|(i, _)| *i == id).expect("a part sent").1;
            let got = read_failure(secrets, reason).expect("the origin reads it");
            assert_eq!((got.hop, got.code()), (0, Some(code)));
            let fx = answer.apply(&mut self.p.b.ch, id).unwrap();
            self.p.b.absorb_pub(fx, &mut self.p.to_a);
        }
        self.p.settle();
    }
}

/// Three parts of a 7,000,000 msat invoice (2,000,000 + 2,000,000 + 3,000,001: the payer
/// overpays by 1 msat, within BOLT #4's limit). Nothing is settled until the last arrives;
/// then all three are, and the payee gains exactly what the HTLCs carried.
#[test]
fn parts_adding_up_are_settled_together_to_the_msat() {
    let pre = PaymentPreimage([1; 32]);
    let mut pay = Payment::new(pre);
    let before = balances(&pay.p);
    let mut mpp = MppCollector::new(TIMEOUT);
    let tip = pay.p.tip;
    for (i, amount) in [2_000_000u64, 2_000_000].into_iter().enumerate() {
        let part = pay.send(&payload(amount, tip + DELTA, Some((SECRET, 7_000_000)), None), amount, Some(&SECRET));
        let id = pay.parts[i].0;
        let held = 2_000_000 * (i as u64 + 1);
        assert_eq!(
            mpp.offer(id, part, Some(7_000_000), tip),
            Collected::Held { received_msat: held, total_msat: 7_000_000 }
        );
        assert_eq!(mpp.held_msat(&pay.hash), held);
    }
    assert_eq!(pay.p.b.ch.htlcs().len(), 2, "held, not settled");
    assert!(mpp.expire(tip + TIMEOUT - 1).is_empty(), "not yet timed out");
    let last = pay.send(&payload(3_000_000, tip + DELTA, Some((SECRET, 7_000_000)), None), 3_000_001, Some(&SECRET));
    let ids: Vec<u64> = pay.parts.iter().map(|(id, _)| *id).collect();
    let Collected::Complete { parts, received_msat, preimage } = mpp.offer(ids[2], last, Some(7_000_000), tip + 1)
    else {
        panic!("complete")
    };
    assert_eq!((parts.as_slice(), received_msat, preimage), (&ids[..], 7_000_001, None));
    assert!(mpp.is_empty() && mpp.is_settled(&pay.hash));
    pay.settle_all(&parts, pre);
    assert_eq!(balances(&pay.p), (before.0 + 7_000_001, before.1 - 7_000_001));
}

/// A payment that never adds up: after `TIMEOUT` blocks every part is failed back with
/// `mpp_timeout` (23), read by the origin, and the payer is whole to the msat.
#[test]
fn an_incomplete_payment_is_failed_back_with_mpp_timeout() {
    let mut pay = Payment::new(PaymentPreimage([2; 32]));
    let before = balances(&pay.p);
    let mut mpp = MppCollector::new(TIMEOUT);
    let tip = pay.p.tip;
    for (i, amount) in [3_000_000u64, 3_999_999].into_iter().enumerate() {
        let part = pay.send(&payload(amount, tip + DELTA, Some((SECRET, 7_000_000)), None), amount, Some(&SECRET));
        assert!(matches!(mpp.offer(pay.parts[i].0, part, Some(7_000_000), tip + i as u32), Collected::Held { .. }));
    }
    assert_eq!(mpp.held_msat(&pay.hash), 6_999_999, "1 msat short");
    assert!(mpp.expire(tip + TIMEOUT - 1).is_empty());
    let failed = mpp.expire(tip + TIMEOUT);
    assert_eq!(failed.len(), 2);
    assert!(mpp.is_empty() && !mpp.is_settled(&pay.hash));
    pay.fail_all(failed, failure::MPP_TIMEOUT);
    assert!(pay.p.a.ch.htlcs().is_empty() && pay.p.b.ch.htlcs().is_empty());
    assert_eq!(balances(&pay.p), before);
}

/// A part naming another total than the parts held: the whole set is failed back (BOLT #4), as
/// an unknown payment, and nothing is settled. Same for a total below the invoice's amount or
/// above twice it.
#[test]
fn parts_disagreeing_on_the_total_fail_the_whole_set() {
    let mut pay = Payment::new(PaymentPreimage([3; 32]));
    let before = balances(&pay.p);
    let mut mpp = MppCollector::new(TIMEOUT);
    let tip = pay.p.tip;
    let a = pay.send(&payload(3_000_000, tip + DELTA, Some((SECRET, 7_000_000)), None), 3_000_000, Some(&SECRET));
    assert!(matches!(mpp.offer(pay.parts[0].0, a, Some(7_000_000), tip), Collected::Held { .. }));
    // The second part claims a smaller total, which it alone would complete.
    let b = pay.send(&payload(3_000_000, tip + DELTA, Some((SECRET, 6_000_000)), None), 3_000_000, Some(&SECRET));
    let Collected::Refused(failed) = mpp.offer(pay.parts[1].0, b, None, tip) else { panic!("refused") };
    assert_eq!(failed.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![pay.parts[0].0, pay.parts[1].0]);
    assert!(mpp.is_empty() && !mpp.is_settled(&pay.hash));
    pay.fail_all(failed, failure::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS);
    assert_eq!(balances(&pay.p), before, "the payer is whole");

    // Totals against the invoice's 7,000,000 msat: below it, and above twice it.
    let hash = PaymentPreimage([4; 32]).hash();
    for total in [6_999_999, 14_000_001] {
        let refused = mpp.offer(0u64, invoice_part(total, total, hash), Some(7_000_000), TIP);
        assert!(matches!(&refused, Collected::Refused(v) if v.len() == 1
            && v[0].1.code() == failure::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS));
    }
    assert!(matches!(
        mpp.offer(0u64, invoice_part(14_000_000, 14_000_000, hash), Some(7_000_000), TIP),
        Collected::Complete { .. }
    ));
}

/// A part arriving after its payment completed (the preimage is out) is refused, alone: the
/// payee keeps exactly the total, and the payer gets the late part back.
#[test]
fn a_part_after_completion_is_refused() {
    let pre = PaymentPreimage([5; 32]);
    let mut pay = Payment::new(pre);
    let before = balances(&pay.p);
    let mut mpp = MppCollector::new(TIMEOUT);
    let tip = pay.p.tip;
    let whole = pay.send(&payload(7_000_000, tip + DELTA, Some((SECRET, 7_000_000)), None), 7_000_000, Some(&SECRET));
    let Collected::Complete { parts, .. } = mpp.offer(pay.parts[0].0, whole, Some(7_000_000), tip) else { panic!() };
    pay.settle_all(&parts, pre);
    let late = pay.send(&payload(1_000_000, tip + DELTA, Some((SECRET, 7_000_000)), None), 1_000_000, Some(&SECRET));
    let Collected::Refused(failed) = mpp.offer(pay.parts[1].0, late, Some(7_000_000), tip) else { panic!("refused") };
    assert_eq!(failed.len(), 1);
    pay.fail_all(failed, failure::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS);
    assert_eq!(balances(&pay.p), (before.0 + 7_000_000, before.1 - 7_000_000));
}

/// Sums computed without wrapping: with `total_msat` = u64::MAX, a part that would carry the
/// sum past u64::MAX is refused alone and the held sum is unchanged; the part that reaches it
/// exactly completes the payment. A part bringing the sum above twice the total is refused
/// (BOLT #4's overpayment limit), one reaching exactly twice completes it.
#[test]
fn sums_are_bounded_by_u64_and_twice_the_total() {
    let mut mpp = MppCollector::new(TIMEOUT);
    let hash = PaymentPreimage([6; 32]).hash();
    assert!(matches!(mpp.offer(1u64, invoice_part(u64::MAX - 1, u64::MAX, hash), None, TIP), Collected::Held { .. }));
    let over = mpp.offer(2, invoice_part(2, u64::MAX, hash), None, TIP);
    assert!(matches!(&over, Collected::Refused(v) if v.len() == 1 && v[0].0 == 2));
    assert_eq!(mpp.held_msat(&hash), u64::MAX - 1);
    let Collected::Complete { parts, received_msat, .. } = mpp.offer(3, invoice_part(1, u64::MAX, hash), None, TIP)
    else {
        panic!("complete")
    };
    assert_eq!((parts, received_msat), (vec![1, 3], u64::MAX));

    let hash = PaymentPreimage([7; 32]).hash();
    assert!(matches!(mpp.offer(1u64, invoice_part(999, 1_000, hash), None, TIP), Collected::Held { .. }));
    // The payer overpays in the HTLC amount (the payload asks for 1 msat).
    let overpaying = |amount| part(&payload(1, TIP + DELTA, Some((SECRET, 1_000)), None), hash, amount, Some(&SECRET));
    let over = mpp.offer(2, overpaying(1_002), None, TIP);
    assert!(matches!(&over, Collected::Refused(v) if v.len() == 1 && v[0].0 == 2));
    // The same key offered twice is not counted twice.
    assert_eq!(mpp.offer(1, invoice_part(999, 1_000, hash), None, TIP), Collected::AlreadyHeld);
    assert_eq!(mpp.held_msat(&hash), 999);
    let Collected::Complete { received_msat, .. } = mpp.offer(3, overpaying(1_001), None, TIP) else {
        panic!("complete")
    };
    assert_eq!(received_msat, 2_000);
}

/// A multi-part keysend: each part carries the payer's preimage and a secret of the payer's
/// choosing; the collector completes with the preimage. Parts disagreeing on the secret fail the
/// set whole. A part whose preimage does not match never reaches the collector.
#[test]
fn a_multi_part_keysend_completes_with_the_payers_preimage() {
    let pre = PaymentPreimage([8; 32]);
    let mut pay = Payment::new(pre);
    let before = balances(&pay.p);
    let mut mpp = MppCollector::new(TIMEOUT);
    let tip = pay.p.tip;
    let ks = |amt, secret| payload(amt, tip + DELTA, Some((secret, 5_000_000)), Some(pre));
    let a = pay.send(&ks(2_500_000, [0xaa; 32]), 2_500_000, None);
    assert_eq!(a.preimage(), Some(pre));
    assert!(matches!(mpp.offer(pay.parts[0].0, a, None, tip), Collected::Held { .. }));
    let b = pay.send(&ks(2_500_000, [0xaa; 32]), 2_500_000, None);
    let Collected::Complete { parts, received_msat, preimage } = mpp.offer(pay.parts[1].0, b, None, tip) else {
        panic!("complete")
    };
    assert_eq!((received_msat, preimage), (5_000_000, Some(pre)));
    pay.settle_all(&parts, preimage.unwrap());
    assert_eq!(balances(&pay.p), (before.0 + 5_000_000, before.1 - 5_000_000));

    let hash = PaymentPreimage([9; 32]).hash();
    let other = PaymentPreimage([9; 32]);
    let ks = |amt, secret| payload(amt, TIP + DELTA, Some((secret, 5_000)), Some(other));
    assert!(matches!(mpp.offer(1u64, part(&ks(2_500, [1; 32]), hash, 2_500, None), None, TIP), Collected::Held { .. }));
    let mixed = mpp.offer(2, part(&ks(2_500, [2; 32]), hash, 2_500, None), None, TIP);
    assert!(matches!(&mixed, Collected::Refused(v) if v.len() == 2));
    assert!(mpp.is_empty());
    // A wrong preimage is refused by receive_part, before any collector.
    let (packet, _) = onion(&payload(2_500, TIP + DELTA, Some(([1; 32], 5_000)), Some(pre)), hash, 9);
    let htlc = ReceivedHtlc {
        onion: &packet,
        payment_hash: hash,
        amount: MilliSats::from_msat(2_500),
        cltv_expiry: TIP + DELTA,
    };
    assert_eq!(
        receive_part(&htlc, &payee_key(), None, DELTA, TIP).unwrap_err().code(),
        failure::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS
    );
}
