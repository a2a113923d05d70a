//! A forwarding node that takes its next hop from the onion (BOLT 4): A –Lightning→ B
//! –Lightning→ C, A the origin building the onion with `network::onion`, B a
//! `multihop::Forwarder` with `with_onions`, C the payee on `network::receive`.
//!
//! Each rule of B is shown with the attack it stops: the origin (or a hostile upstream) asks for
//! more than it pays, less time than B needs, an amount that overflows, an expiry years away, a
//! channel B does not have, or sends an onion B cannot read; B refuses with the BOLT 4 code,
//! wrapped so that A reads it and finds B as the failing hop, and every party's balance is back
//! to the msat. On the way back, C's failures reach A unread by B, and C's
//! `update_fail_malformed_htlc` becomes B's `update_fail_htlc` naming C's complaint.

use std::collections::VecDeque;
use std::sync::Arc;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use paychan::core::commitment::ChannelType;
use paychan::core::sign::InMemorySigner;
use paychan::core::{MilliSats, PaymentHash, PaymentPreimage};
use paychan::driving::ChainTip;
use paychan::lightning::{Channel, Event, HtlcFailure, HtlcRefusal, Msg, OnionPacket, Side};
use paychan::multihop::{
    FeePolicy, ForwardError, ForwardEvent, ForwardState, Forwarder, ForwarderConfig, NodeEffects, RefuseReason,
    SafetyMargins, MAX_OUTGOING_EXPIRY_DELTA,
};
use paychan::network::noise::InMemoryNodeSigner;
use paychan::network::onion::{build_onion, failure, read_failure, Failure};
use paychan::network::payload::HopPayload;
use paychan::network::receive::{answer_refusal, receive_final, FailBack, ReceivedHtlc};
use paychan::testing::lightning::{Pair, Peer};

type B = Forwarder<Channel, Channel>;

/// The short channel id of B → C, as the origin names it.
const SCID: u64 = (700_000 << 40) | (5 << 16) | 1;
const AMOUNT: u64 = 50_000_000;
/// B's fee for `AMOUNT`: 1,000 msat + 100 ppm.
const FEE: u64 = 1_000 + AMOUNT / 10_000;
const SECRET: [u8; 32] = [0x5a; 32];

fn key(b: u8) -> SecretKey {
    SecretKey::from_slice(&[b; 32]).unwrap()
}

fn node_id(b: u8) -> PublicKey {
    PublicKey::from_secret_key(&Secp256k1::new(), &key(b))
}

const B_NODE: u8 = 0xb1;
const C_NODE: u8 = 0xc1;

fn wire(m: Msg) -> Msg {
    Msg::decode(&m.encode()).expect("wire")
}

/// What A sends: the HTLC it offers B and the two hop payloads.
struct Send {
    amount: u64,
    cltv: u32,
    to_c: HopPayload,
    at_c: HopPayload,
    /// The route's node keys (C's may be wrong on purpose).
    route: [PublicKey; 2],
}

struct Net {
    a: Peer,
    c: Peer,
    b: B,
    b_in: InMemorySigner,
    b_out: InMemorySigner,
    tip: ChainTip,
    to_a: VecDeque<Msg>,
    to_b_in: VecDeque<Msg>,
    to_b_out: VecDeque<Msg>,
    to_c: VecDeque<Msg>,
    events: Vec<ForwardEvent>,
    /// B's forwarder state as last persisted.
    b_state: Vec<u8>,
}

impl Net {
    fn new(ct: ChannelType) -> Net {
        // A funds A–B; B funds B–C. Neither pushes: each side's balance starts where the funder's is.
        let ab = Pair::open(ct, 1_000_000, 0);
        let bc = Pair::open(ct, 1_000_000, 0);
        let tip = ChainTip::at(ab.tip.max(bc.tip));
        let config = ForwarderConfig {
            margins: SafetyMargins::default(),
            fee: FeePolicy { base: MilliSats::from_msat(1_000), proportional_millionths: 100 },
            cltv_expiry_delta: 40,
        };
        let b = Forwarder::new(ab.b.ch, bc.a.ch, config, tip)
            .with_onions(Arc::new(InMemoryNodeSigner::new(key(B_NODE))), SCID);
        let b_state = b.snapshot();
        Net {
            a: ab.a,
            c: bc.b,
            b,
            b_in: ab.b.signer,
            b_out: bc.a.signer,
            tip,
            to_a: VecDeque::new(),
            to_b_in: VecDeque::new(),
            to_b_out: VecDeque::new(),
            to_c: VecDeque::new(),
            events: Vec::new(),
            b_state,
        }
    }

    fn h(&self) -> u32 {
        self.tip.height.0
    }

    /// The honest payment: C's final layer asks `AMOUNT` at `h + 60`, B forwards it, A pays the fee
    /// and B's delta.
    fn honest(&self) -> Send {
        let out_cltv = self.h() + 60;
        Send {
            amount: AMOUNT + FEE,
            cltv: out_cltv + 40,
            to_c: HopPayload::Forward { amt_to_forward: AMOUNT, outgoing_cltv_value: out_cltv, short_channel_id: SCID },
            at_c: HopPayload::Final {
                amt_to_forward: AMOUNT,
                outgoing_cltv_value: out_cltv,
                payment_data: Some((SECRET, AMOUNT)),
                payment_metadata: None,
                keysend_preimage: None,
            },
            route: [node_id(B_NODE), node_id(C_NODE)],
        }
    }

    fn absorb_b(&mut self, n: NodeEffects<Channel, Channel>) {
        if !n.incoming.send.is_empty() || !n.outgoing.send.is_empty() {
            assert!(
                n.incoming.update.is_some() || n.outgoing.update.is_some() || n.state.is_some(),
                "B persists before it sends"
            );
        }
        if let Some(s) = n.state {
            self.b_state = s;
        }
        self.events.extend(n.events);
        self.to_a.extend(n.incoming.send.into_iter().map(wire));
        self.to_c.extend(n.outgoing.send.into_iter().map(wire));
    }

    /// Delivers every message until all three are quiet; A and C sign whatever they have pending.
    fn run(&mut self) {
        loop {
            if let Some(m) = self.to_b_in.pop_front() {
                let n = self.b.handle_incoming_message(m, &self.b_in, &self.b_out, self.tip).expect("B takes A's");
                self.absorb_b(n);
            } else if let Some(m) = self.to_b_out.pop_front() {
                let n = self.b.handle_outgoing_message(m, &self.b_in, &self.b_out, self.tip).expect("B takes C's");
                self.absorb_b(n);
            } else if let Some(m) = self.to_a.pop_front() {
                let fx = self.a.ch.handle_message(m, &self.a.signer, self.tip).expect("A takes B's");
                self.a.absorb(fx, &mut self.to_b_in);
                commit(&mut self.a, &mut self.to_b_in);
            } else if let Some(m) = self.to_c.pop_front() {
                let fx = self.c.ch.handle_message(m, &self.c.signer, self.tip).expect("C takes B's");
                self.c.absorb(fx, &mut self.to_b_out);
                commit(&mut self.c, &mut self.to_b_out);
            } else {
                return;
            }
        }
    }

    /// A builds the onion and offers the HTLC; returns the route's shared secrets and the onion.
    fn send(&mut self, s: &Send, hash: PaymentHash) -> (Vec<[u8; 32]>, OnionPacket) {
        let (onion, secrets) =
            build_onion(&Secp256k1::signing_only(), &s.route, &[s.to_c.encode(), s.at_c.encode()], &key(0x5e), &hash.0)
                .expect("onion");
        self.offer(s, hash, onion.clone());
        (secrets, onion)
    }

    fn offer(&mut self, s: &Send, hash: PaymentHash, onion: OnionPacket) {
        let (_, fx) = self.a.ch.add_htlc(MilliSats::from_msat(s.amount), hash, s.cltv, onion).expect("A offers");
        self.a.absorb(fx, &mut self.to_b_in);
        commit(&mut self.a, &mut self.to_b_in);
        self.run();
    }

    /// The HTLC C reported, checked by C's receive path.
    fn c_receives(&mut self) -> (u64, Result<HopPayload, FailBack>) {
        let got: Vec<_> = self
            .c
            .take_events()
            .into_iter()
            .filter_map(|e| match e {
                Event::HtlcReceived { id, amount, payment_hash, cltv_expiry, onion } => {
                    Some((id, amount, payment_hash, cltv_expiry, onion.expect("over the wire")))
                }
                _ => None,
            })
            .collect();
        let [(id, amount, payment_hash, cltv_expiry, onion)] = &got[..] else { panic!("one HTLC at C: {got:?}") };
        let htlc = ReceivedHtlc { onion, payment_hash: *payment_hash, amount: *amount, cltv_expiry: *cltv_expiry };
        (*id, receive_final(&htlc, &key(C_NODE), &SECRET, 18, self.h()))
    }

    fn c_answers(&mut self, id: u64, answer: Result<PaymentPreimage, FailBack>) {
        let fx = match answer {
            Ok(p) => self.c.ch.fulfill_htlc(id, p).expect("C fulfils"),
            Err(f) => f.apply(&mut self.c.ch, id).expect("C fails"),
        };
        self.c.absorb(fx, &mut self.to_b_out);
        commit(&mut self.c, &mut self.to_b_out);
        self.run();
    }

    /// How A's HTLC failed.
    fn a_failure(&mut self) -> HtlcFailure {
        let failures: Vec<_> = self
            .a
            .take_events()
            .into_iter()
            .filter_map(|e| match e {
                Event::HtlcFailed { failure, .. } => Some(failure),
                _ => None,
            })
            .collect();
        let [f] = &failures[..] else { panic!("A's HTLC failed once: {failures:?}") };
        f.clone()
    }

    /// A reads the failure with the route's secrets.
    fn a_reads(&mut self, secrets: &[[u8; 32]]) -> Failure {
        let HtlcFailure::Reason(reason) = self.a_failure() else { panic!("update_fail_htlc expected") };
        read_failure(secrets, &reason).expect("A attributes the failure")
    }

    fn balances(&self) -> [u64; 4] {
        [
            self.a.ch.balances(Side::Holder).holder.to_msat(),
            self.b.incoming().balances(Side::Holder).holder.to_msat(),
            self.b.outgoing().balances(Side::Holder).holder.to_msat(),
            self.c.ch.balances(Side::Holder).holder.to_msat(),
        ]
    }

    /// Nothing in flight anywhere.
    fn quiet(&self) -> bool {
        self.a.ch.htlcs().is_empty()
            && self.b.incoming().htlcs().is_empty()
            && self.b.outgoing().htlcs().is_empty()
            && self.c.ch.htlcs().is_empty()
    }

    fn refused(&self) -> Vec<RefuseReason> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ForwardEvent::Refused { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect()
    }

    fn forwarded(&self) -> bool {
        self.events.iter().any(|e| matches!(e, ForwardEvent::Forwarded { .. }))
    }
}

fn commit(p: &mut Peer, out: &mut VecDeque<Msg>) {
    if p.ch.has_unsigned_changes() && !p.ch.is_awaiting_revoke() {
        let fx = p.ch.commit(&p.signer).expect("signs");
        p.absorb(fx, out);
    }
}

const TYPES: [ChannelType; 2] = [ChannelType::StaticRemoteKey, ChannelType::AnchorsZeroFeeHtlc];

#[test]
fn a_payment_forwarded_from_its_onion_settles_with_the_exact_fee() {
    for ct in TYPES {
        let mut n = Net::new(ct);
        let before = n.balances();
        let preimage = PaymentPreimage([0x11; 32]);
        let s = n.honest();
        n.send(&s, preimage.hash());
        assert!(n.forwarded(), "{:?}", n.events);
        // The outgoing HTLC carries the origin's terms for C and C's own layer of the onion.
        let (id, hop) = n.c_receives();
        let hop = hop.expect("C's layer passes the final checks: B forwarded the peeled onion");
        assert!(matches!(hop, HopPayload::Final { amt_to_forward: AMOUNT, .. }));
        n.c_answers(id, Ok(preimage));
        assert!(n.events.iter().any(|e| matches!(e, ForwardEvent::Settled { fee, .. } if fee.to_msat() == FEE)));
        assert!(n.quiet());
        let after = n.balances();
        assert_eq!(before[0] - after[0], AMOUNT + FEE, "A paid the amount and B's fee");
        assert_eq!(after[1] - before[1], AMOUNT + FEE, "B was paid upstream");
        assert_eq!(before[2] - after[2], AMOUNT, "B paid downstream");
        assert_eq!(after[3] - before[3], AMOUNT, "C got the amount");
    }
}

/// A's balance and B's both channels back where they were, nothing in flight, nothing offered
/// downstream.
fn whole(n: &Net, before: [u64; 4]) {
    assert!(n.quiet());
    assert_eq!(n.balances(), before, "every party whole to the msat");
}

/// B refuses the HTLC without offering anything to C; A reads `code` from hop 0 (B).
fn refused_by_b(n: &mut Net, s: &Send, code: u16) -> Failure {
    let before = n.balances();
    let (secrets, _) = n.send(s, PaymentHash([0x22; 32]));
    assert!(!n.forwarded(), "B offered nothing downstream");
    assert!(n.b.outgoing().htlcs().is_empty());
    let f = n.a_reads(&secrets);
    assert_eq!((f.hop, f.code()), (0, Some(code)), "A finds B and its code");
    whole(n, before);
    f
}

#[test]
fn an_origin_asking_more_than_it_pays_gets_fee_insufficient() {
    let mut n = Net::new(ChannelType::StaticRemoteKey);
    // The attack: B would pay C 50,000,000 and be paid 1 msat short of its fee.
    let mut s = n.honest();
    s.amount -= 1;
    let f = refused_by_b(&mut n, &s, failure::FEE_INSUFFICIENT);
    // BOLT 4 data: htlc_msat, then the (empty) channel_update with its length.
    assert_eq!(&f.message[2..], [(AMOUNT + FEE - 1).to_be_bytes().as_slice(), &[0, 0]].concat());
    assert_eq!(n.refused(), [RefuseReason::Check(ForwardError::FeeInsufficient)]);
    // Worse: asking B to forward more than it receives.
    let mut n = Net::new(ChannelType::StaticRemoteKey);
    let mut s = n.honest();
    s.amount = AMOUNT / 2;
    refused_by_b(&mut n, &s, failure::FEE_INSUFFICIENT);
}

#[test]
fn an_amount_that_overflows_is_refused_not_wrapped_around() {
    let mut n = Net::new(ChannelType::StaticRemoteKey);
    // amt_to_forward + fee overflows u64: a saturating or wrapping sum would pass a naive check.
    let mut s = n.honest();
    s.to_c =
        HopPayload::Forward { amt_to_forward: u64::MAX - 500, outgoing_cltv_value: n.h() + 60, short_channel_id: SCID };
    refused_by_b(&mut n, &s, failure::FEE_INSUFFICIENT);
}

#[test]
fn an_origin_leaving_b_less_than_its_delta_gets_incorrect_cltv_expiry() {
    let mut n = Net::new(ChannelType::StaticRemoteKey);
    // The attack: one block short of B's delta of 40; C could time B out before B's incoming
    // HTLC can be claimed with the preimage.
    let mut s = n.honest();
    s.cltv -= 1;
    let f = refused_by_b(&mut n, &s, failure::INCORRECT_CLTV_EXPIRY);
    assert_eq!(&f.message[2..], [s.cltv.to_be_bytes().as_slice(), &[0, 0]].concat());
    // The outgoing expiry after the incoming one: B would lose the race outright.
    let mut n = Net::new(ChannelType::StaticRemoteKey);
    let mut s = n.honest();
    s.to_c = HopPayload::Forward { amt_to_forward: AMOUNT, outgoing_cltv_value: s.cltv + 1, short_channel_id: SCID };
    refused_by_b(&mut n, &s, failure::INCORRECT_CLTV_EXPIRY);
}

#[test]
fn an_outgoing_expiry_too_far_ahead_is_refused() {
    let mut n = Net::new(ChannelType::StaticRemoteKey);
    // The attack: lock B's outgoing liquidity for months at the price of one HTLC.
    let far = n.h() + MAX_OUTGOING_EXPIRY_DELTA + 1;
    let mut s = n.honest();
    s.to_c = HopPayload::Forward { amt_to_forward: AMOUNT, outgoing_cltv_value: far, short_channel_id: SCID };
    s.cltv = far + 40;
    refused_by_b(&mut n, &s, failure::EXPIRY_TOO_FAR);
    // At the limit it is forwarded.
    let mut n = Net::new(ChannelType::StaticRemoteKey);
    let mut s = n.honest();
    let limit = n.h() + MAX_OUTGOING_EXPIRY_DELTA;
    s.to_c = HopPayload::Forward { amt_to_forward: AMOUNT, outgoing_cltv_value: limit, short_channel_id: SCID };
    s.cltv = limit + 40;
    n.send(&s, PaymentHash([0x23; 32]));
    assert!(n.forwarded());
}

#[test]
fn a_channel_b_does_not_have_gets_unknown_next_peer() {
    let mut n = Net::new(ChannelType::StaticRemoteKey);
    let mut s = n.honest();
    s.to_c =
        HopPayload::Forward { amt_to_forward: AMOUNT, outgoing_cltv_value: n.h() + 60, short_channel_id: SCID + 1 };
    refused_by_b(&mut n, &s, failure::UNKNOWN_NEXT_PEER);
}

#[test]
fn an_amount_below_the_outgoing_minimum_gets_amount_below_minimum() {
    let mut n = Net::new(ChannelType::StaticRemoteKey);
    let mut s = n.honest();
    // Zero msat: the outgoing channel cannot carry it.
    s.to_c = HopPayload::Forward { amt_to_forward: 0, outgoing_cltv_value: n.h() + 60, short_channel_id: SCID };
    refused_by_b(&mut n, &s, failure::AMOUNT_BELOW_MINIMUM);
}

#[test]
fn an_onion_ending_at_b_or_with_a_bad_payload_is_refused_with_its_code() {
    // B is a forwarder: an onion whose last layer is B's pays nobody B knows.
    let mut n = Net::new(ChannelType::StaticRemoteKey);
    let before = n.balances();
    let hash = PaymentHash([0x24; 32]);
    let s = n.honest();
    let (onion, secrets) =
        build_onion(&Secp256k1::signing_only(), &s.route[..1], &[s.at_c.encode()], &key(0x5e), &hash.0).unwrap();
    n.offer(&s, hash, onion);
    let f = n.a_reads(&secrets);
    assert_eq!((f.hop, f.code()), (0, Some(failure::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS)));
    whole(&n, before);
    // A forward layer without its short channel id.
    let mut n = Net::new(ChannelType::StaticRemoteKey);
    let s = n.honest();
    // B's layer says "forward" (C's layer follows) but carries a final payload: no channel.
    let payloads = [s.at_c.encode(), s.at_c.encode()];
    let (onion, secrets) = build_onion(&Secp256k1::signing_only(), &s.route, &payloads, &key(0x5e), &hash.0).unwrap();
    n.offer(&s, hash, onion);
    let f = n.a_reads(&secrets);
    assert_eq!((f.hop, f.code()), (0, Some(failure::INVALID_ONION_PAYLOAD)));
}

#[test]
fn an_onion_b_cannot_read_gets_update_fail_malformed_htlc() {
    for (what, corrupt, code) in [
        ("version", 0usize, failure::INVALID_ONION_VERSION),
        ("hmac", 100, failure::INVALID_ONION_HMAC),
        ("key", 1, failure::INVALID_ONION_KEY),
    ] {
        let mut n = Net::new(ChannelType::StaticRemoteKey);
        let before = n.balances();
        let hash = PaymentHash([0x25; 32]);
        let s = n.honest();
        let (onion, _) =
            build_onion(&Secp256k1::signing_only(), &s.route, &[s.to_c.encode(), s.at_c.encode()], &key(0x5e), &hash.0)
                .unwrap();
        let mut bytes = *onion.as_bytes();
        // A key prefix other than 02/03 is no point; a flipped bit anywhere else breaks the HMAC.
        bytes[corrupt] = if corrupt == 1 { 0x05 } else { bytes[corrupt] ^ 1 };
        let sent = OnionPacket::new(bytes);
        n.offer(&s, hash, sent.clone());
        let expected = sha256::Hash::hash(sent.as_bytes()).to_byte_array();
        assert_eq!(
            n.a_failure(),
            HtlcFailure::Malformed { sha256_of_onion: expected, failure_code: code },
            "bad {what}: malformed with BADONION, over the onion as B received it"
        );
        assert_eq!(n.refused(), [RefuseReason::Onion(code)]);
        whole(&n, before);
    }
}

#[test]
fn the_payees_failure_reaches_the_origin_through_b_unread() {
    for ct in TYPES {
        let mut n = Net::new(ct);
        let before = n.balances();
        let mut s = n.honest();
        // C's invoice secret differs from the one A put in: C refuses as for an unknown payment.
        s.at_c = HopPayload::Final {
            amt_to_forward: AMOUNT,
            outgoing_cltv_value: n.h() + 60,
            payment_data: Some(([0x77; 32], AMOUNT)),
            payment_metadata: None,
            keysend_preimage: None,
        };
        let (secrets, _) = n.send(&s, PaymentHash([0x26; 32]));
        assert!(n.forwarded());
        let (id, got) = n.c_receives();
        let answer = got.expect_err("C refuses");
        n.c_answers(id, Err(answer));
        assert!(n.events.iter().any(|e| matches!(e, ForwardEvent::FailedUpstream { .. })));
        let f = n.a_reads(&secrets);
        assert_eq!((f.hop, f.code()), (1, Some(failure::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS)), "C is the failing hop");
        whole(&n, before);
    }
}

#[test]
fn a_malformed_failure_downstream_becomes_a_failure_from_b_naming_it() {
    let mut n = Net::new(ChannelType::StaticRemoteKey);
    let before = n.balances();
    let mut s = n.honest();
    // A builds C's layer for the wrong key: C cannot verify its HMAC.
    s.route[1] = node_id(0xee);
    let (secrets, _) = n.send(&s, PaymentHash([0x27; 32]));
    assert!(n.forwarded());
    let (id, got) = n.c_receives();
    let Err(answer @ FailBack::Malformed { sha256_of_onion, failure_code: failure::INVALID_ONION_HMAC }) = got else {
        panic!("C cannot read its layer: {got:?}")
    };
    n.c_answers(id, Err(answer));
    // B cannot send `update_fail_malformed_htlc` upstream (A would read nothing): an
    // `update_fail_htlc` from B, whose message is C's code with the onion's hash.
    let f = n.a_reads(&secrets);
    assert_eq!((f.hop, f.code()), (0, Some(failure::INVALID_ONION_HMAC)), "from B, BADONION: A blames B → C");
    assert_eq!(&f.message[2..], sha256_of_onion.as_slice());
    whole(&n, before);
}

#[test]
fn the_shared_secret_survives_a_restart_of_b() {
    let mut n = Net::new(ChannelType::StaticRemoteKey);
    let before = n.balances();
    let mut s = n.honest();
    s.at_c = HopPayload::Final {
        amt_to_forward: AMOUNT,
        outgoing_cltv_value: n.h() + 60,
        payment_data: Some(([0x78; 32], AMOUNT)),
        payment_metadata: None,
        keysend_preimage: None,
    };
    let (secrets, _) = n.send(&s, PaymentHash([0x28; 32]));
    assert!(matches!(n.b.tracked()[0].state, ForwardState::Offered { .. }));
    // B restarts from its persisted state (its channels as they are in memory, which the
    // channel tests restore on their own); its node key is handed back.
    let (incoming, outgoing, config) = (n.b.incoming().clone(), n.b.outgoing().clone(), *n.b.config());
    n.b = Forwarder::restore(incoming, outgoing, config, &n.b_state)
        .expect("restores")
        .with_onions(Arc::new(InMemoryNodeSigner::new(key(B_NODE))), SCID);
    let (id, got) = n.c_receives();
    n.c_answers(id, Err(got.expect_err("C refuses")));
    let f = n.a_reads(&secrets);
    assert_eq!((f.hop, f.code()), (1, Some(failure::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS)));
    whole(&n, before);
}

/// A offers B an HTLC with 20 blocks left at A's tip (A's own channel allows it: 18 are enough);
/// B has seen 5 more blocks, so B's incoming channel refuses it once committed (fewer than its
/// `claim_margin` of 18 blocks to settle it), before the forwarder would look at the onion.
#[test]
fn a_refusal_by_bs_incoming_channel_is_wrapped_so_the_origin_finds_b() {
    for ct in TYPES {
        let mut n = Net::new(ct);
        let before = n.balances();
        let mut s = n.honest();
        s.cltv = n.h() + 20;
        s.to_c =
            HopPayload::Forward { amt_to_forward: AMOUNT, outgoing_cltv_value: n.h() + 10, short_channel_id: SCID };
        let hash = PaymentHash([0x26; 32]);
        let secp = Secp256k1::signing_only();
        let (onion, secrets) =
            build_onion(&secp, &s.route, &[s.to_c.encode(), s.at_c.encode()], &key(0x5e), &hash.0).unwrap();
        let (_, fx) = n.a.ch.add_htlc(MilliSats::from_msat(s.amount), hash, s.cltv, onion).expect("A offers");
        n.a.absorb(fx, &mut n.to_b_in);
        commit(&mut n.a, &mut n.to_b_in);
        n.tip = ChainTip::at(n.h() + 5);
        n.run();
        assert!(!n.forwarded(), "B offered nothing downstream");
        assert_eq!(n.refused(), [RefuseReason::IncomingChannel(HtlcRefusal::ExpiryTooSoon)]);
        let f = n.a_reads(&secrets);
        // expiry_too_soon from hop 0 (B), with its (empty) channel_update.
        assert_eq!((f.hop, f.code()), (0, Some(failure::EXPIRY_TOO_SOON)));
        assert_eq!(&f.message[2..], [0, 0]);
        whole(&n, before);
    }
}

/// A pays C directly; C's channel sees 5 more blocks than A's and refuses the HTLC (too little
/// time left). Without deferral the channel fails it with the plain code, which A cannot read
/// (no hop's HMAC verifies); with it, C's receive path answers with `answer_refusal`, wrapped:
/// A finds C and `incorrect_or_unknown_payment_details`. Either way the refused HTLC can never
/// be settled and both balances are back to the msat.
#[test]
fn a_payees_channel_refusal_is_attributed_only_when_wrapped() {
    for defer in [false, true] {
        let mut p = Pair::open(ChannelType::StaticRemoteKey, 1_000_000, 0);
        p.b.ch.defer_refusals(defer);
        let before = [p.a.ch.balances(Side::Holder).holder, p.b.ch.balances(Side::Holder).holder];
        let h = p.tip;
        let preimage = PaymentPreimage([0x27; 32]);
        let hash = preimage.hash();
        let payload = HopPayload::Final {
            amt_to_forward: AMOUNT,
            outgoing_cltv_value: h + 20,
            payment_data: Some((SECRET, AMOUNT)),
            payment_metadata: None,
            keysend_preimage: None,
        };
        let (onion, secrets) =
            build_onion(&Secp256k1::signing_only(), &[node_id(C_NODE)], &[payload.encode()], &key(0x5e), &hash.0)
                .unwrap();
        let (_, fx) = p.a.ch.add_htlc(MilliSats::from_msat(AMOUNT), hash, h + 20, onion).expect("A offers");
        p.a.absorb_pub(fx, &mut p.to_b);
        p.tip = h + 5;
        p.settle();
        let refused: Vec<_> =
            p.b.take_events()
                .into_iter()
                .filter_map(|e| match e {
                    Event::HtlcRefused { id, reason, amount, cltv_expiry, onion, .. } => {
                        Some((id, reason, amount, cltv_expiry, onion.expect("over the wire")))
                    }
                    _ => None,
                })
                .collect();
        let [(id, reason, amount, cltv_expiry, onion)] = &refused[..] else { panic!("one refusal: {refused:?}") };
        assert_eq!(*reason, HtlcRefusal::ExpiryTooSoon);
        if defer {
            assert_eq!(p.b.ch.refused_htlcs(), [(*id, HtlcRefusal::ExpiryTooSoon)]);
            // The refusal is a safety rule: the payee cannot settle the HTLC anyway.
            assert!(p.b.ch.fulfill_htlc(*id, preimage).is_err());
            let htlc = ReceivedHtlc { onion, payment_hash: hash, amount: *amount, cltv_expiry: *cltv_expiry };
            let answer = answer_refusal(&htlc, *reason, &InMemoryNodeSigner::new(key(C_NODE)), p.tip);
            let fx = answer.apply(&mut p.b.ch, *id).expect("C fails it");
            p.b.absorb_pub(fx, &mut p.to_a);
            p.settle();
            assert!(p.b.ch.refused_htlcs().is_empty());
        }
        let failures: Vec<_> =
            p.a.take_events()
                .into_iter()
                .filter_map(|e| match e {
                    Event::HtlcFailed { failure: HtlcFailure::Reason(r), .. } => Some(r),
                    _ => None,
                })
                .collect();
        let [reason] = &failures[..] else { panic!("A's HTLC failed once: {failures:?}") };
        let read = read_failure(&secrets, reason);
        if defer {
            let f = read.expect("A attributes the wrapped failure");
            assert_eq!((f.hop, f.code()), (0, Some(failure::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS)));
            assert_eq!(&f.message[2..], [AMOUNT.to_be_bytes().as_slice(), &(h + 5).to_be_bytes()].concat());
        } else {
            assert_eq!(read, None, "the plain code names no hop");
        }
        assert!(p.a.ch.htlcs().is_empty() && p.b.ch.htlcs().is_empty());
        assert_eq!([p.a.ch.balances(Side::Holder).holder, p.b.ch.balances(Side::Holder).holder], before);
    }
}
