//! A Lightning peer that sends only well-formed, validly signed messages but picks hostile
//! values: each test is one attack (named for it), shows the channel refuses it with the state
//! byte-identical (or fails the HTLC back, where BOLT #2 says so), and checks the honest party's
//! money to the satoshi on the commitment it could broadcast.

use bitcoin::{Amount, Transaction};
use paychan::core::commitment::ChannelType;
use paychan::core::keys::{ChannelSecrets, Seed};
use paychan::core::sign::InMemorySigner;
use paychan::core::{MilliSats, PaymentPreimage};
use paychan::driving::{Action, ChainTip, ChannelId};
use paychan::lightning::msgs::OpenChannel;
use paychan::lightning::{
    Channel, ChannelConfig, CommandError, DustExposure, Event, HtlcRefusal, Misbehaviour, Msg, OpenError, OpenParams,
    Side,
};
use paychan::testing::lightning::{config, onion, Pair, CHAIN};

const TIP: u32 = 1_000;

fn signer(n: u8) -> InMemorySigner {
    InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([n; 32]), 0))
}

/// The policy every honest side here runs: the crate's defaults.
fn honest(ct: ChannelType) -> ChannelConfig {
    ChannelConfig { minimum_depth: 1, ..ChannelConfig::default_for(CHAIN, ct) }
}

/// An `open_channel` as a real opener would send it, for the hostile opener to edit.
fn open_msg(funding: u64, push_msat: u64) -> OpenChannel {
    let (_, fx) = Channel::open(
        OpenParams {
            config: config(ChannelType::AnchorsZeroFeeHtlc),
            temporary_channel_id: ChannelId([7; 32]),
            funding: Amount::from_sat(funding),
            push: MilliSats::from_msat(push_msat),
            feerate_per_kw: 2_500,
        },
        &signer(0xa0),
        ChainTip::at(TIP),
    )
    .unwrap();
    match fx.send.into_iter().next() {
        Some(Msg::OpenChannel(m)) => *m,
        other => panic!("expected open_channel, got {other:?}"),
    }
}

fn accept(open: &OpenChannel) -> Result<Channel, OpenError> {
    Channel::accept(open, honest(ChannelType::AnchorsZeroFeeHtlc), &signer(0xb0), ChainTip::at(TIP)).map(|(c, _)| c)
}

/// Sum of a transaction's outputs paying `script`-less roles is not needed: the value of every
/// output, in order.
fn values(tx: &Transaction) -> Vec<u64> {
    let mut v: Vec<u64> = tx.output.iter().map(|o| o.value.to_sat()).collect();
    v.sort_unstable();
    v
}

fn fee_of(tx: &Transaction, capacity: u64) -> u64 {
    capacity - tx.output.iter().map(|o| o.value.to_sat()).sum::<u64>()
}

// ---- 1. The peer's dust limit and the reserve it asks of us ----

/// The attack: an opener announcing a 400,000-sat dust limit (legal under BOLT #2 as long
/// as the reserve is larger) would make its commitment and the cooperative close drop our
/// 300,000-sat balance into fees.
#[test]
fn opener_with_a_400000_sat_dust_limit_is_refused() {
    let mut open = open_msg(1_000_000, 300_000_000);
    open.dust_limit_satoshis = Amount::from_sat(400_000);
    open.channel_reserve_satoshis = Amount::from_sat(500_000);
    assert_eq!(accept(&open).err(), Some(OpenError(Misbehaviour::BadParameters)));
}

#[test]
fn peer_dust_limit_must_be_between_354_and_546_sat() {
    for (dust, ok) in [(353, false), (354, true), (546, true), (547, false), (10_000, false)] {
        let mut open = open_msg(1_000_000, 300_000_000);
        open.dust_limit_satoshis = Amount::from_sat(dust);
        open.channel_reserve_satoshis = Amount::from_sat(10_000);
        assert_eq!(accept(&open).is_ok(), ok, "dust limit {dust}");
    }
}

/// A reserve as large as the capacity would lock our whole balance (and is what lets a huge dust
/// limit pass BOLT #2's `dust_limit <= reserve`): at most 1 % by default, never less than
/// 1,000 sat.
#[test]
fn opener_demanding_more_than_one_percent_reserve_is_refused() {
    for (funding, reserve, ok) in [
        (1_000_000, 10_000, true),
        (1_000_000, 10_001, false),
        (1_000_000, 1_000_000, false),
        (50_000, 1_000, true),
        (50_000, 1_001, false),
    ] {
        let mut open = open_msg(funding, 0);
        open.channel_reserve_satoshis = Amount::from_sat(reserve);
        assert_eq!(accept(&open).is_ok(), ok, "reserve {reserve} of {funding}");
    }
    // The bound is the embedder's to set.
    let mut open = open_msg(1_000_000, 0);
    open.channel_reserve_satoshis = Amount::from_sat(50_000);
    let lenient = ChannelConfig { max_peer_reserve_ppm: 50_000, ..honest(ChannelType::AnchorsZeroFeeHtlc) };
    assert!(Channel::accept(&open, lenient, &signer(0xb0), ChainTip::at(TIP)).is_ok());
}

/// The same bounds hold when we open and the acceptor answers: the opener refuses with its state
/// byte-identical.
#[test]
fn acceptor_with_a_hostile_dust_limit_or_reserve_is_refused() {
    let ct = ChannelType::AnchorsZeroFeeHtlc;
    let open = open_msg(1_000_000, 0);
    let (_, fx) = Channel::accept(&open, config(ct), &signer(0xb0), ChainTip::at(TIP)).unwrap();
    let Some(Msg::AcceptChannel(good)) = fx.send.into_iter().next() else { panic!("accept_channel") };
    for edit in [
        (|m: &mut paychan::lightning::msgs::AcceptChannel| m.dust_limit_satoshis = Amount::from_sat(547))
            as fn(&mut paychan::lightning::msgs::AcceptChannel),
        |m| m.channel_reserve_satoshis = Amount::from_sat(900_000),
    ] {
        let (mut opener, _) = Channel::open(
            OpenParams {
                config: honest(ct),
                temporary_channel_id: ChannelId([7; 32]),
                funding: Amount::from_sat(1_000_000),
                push: MilliSats::ZERO,
                feerate_per_kw: 2_500,
            },
            &signer(0xa0),
            ChainTip::at(TIP),
        )
        .unwrap();
        let before = opener.snapshot();
        let mut m = (*good).clone();
        edit(&mut m);
        let err = opener.handle_message(Msg::AcceptChannel(Box::new(m)), &signer(0xa0), ChainTip::at(TIP)).unwrap_err();
        assert_eq!(err.kind, Misbehaviour::BadParameters);
        assert_eq!(opener.snapshot(), before, "state byte-identical");
    }
}

// ---- 2. Dust exposure ----

/// Fee siphoning: the funder raises the fee rate until every HTLC we offered is trimmed, so our
/// commitment would pay them all to miners. 20 HTLCs of 10,000 sat on a static_remotekey channel:
/// at 50,000 sat/kw each would be dust (its HTLC-timeout would cost 33,150 sat), a 214,480-sat fee
/// on our own commitment.
#[test]
fn update_fee_that_trims_our_htlcs_into_fees_is_refused() {
    let ct = ChannelType::StaticRemoteKey;
    let capacity = 1_000_000;
    let mut p = Pair::open_with(config(ct), honest(ct), capacity, 400_000_000, 2_500);
    for n in 0..20u8 {
        let (_, fx) =
            p.b.ch.add_htlc(MilliSats::from_msat(10_000_000), PaymentPreimage([n; 32]).hash(), 2_000, onion()).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
    }
    p.settle();
    let ours = p.b.ch.holder_commitment_tx(&p.b.signer).unwrap();
    assert_eq!(ours.output.iter().filter(|o| o.value.to_sat() == 10_000).count(), 20, "20 HTLC outputs");
    let before = p.b.ch.snapshot();
    let err =
        p.b.ch
            .handle_message(
                Msg::UpdateFee { channel_id: p.b.ch.channel_id(), feerate_per_kw: 50_000 },
                &p.b.signer,
                ChainTip::at(p.tip),
            )
            .unwrap_err();
    assert_eq!(err.kind, Misbehaviour::DustExposure);
    assert_eq!(err.action, Action::Warn, "no money at risk: warn and disconnect, no force close");
    assert_eq!(p.b.ch.snapshot(), before, "state byte-identical");
    // Our commitment still pays every HTLC and our 200,000 sat balance, to the satoshi.
    let ours = p.b.ch.holder_commitment_tx(&p.b.signer).unwrap();
    assert_eq!(ours.output.iter().filter(|o| o.value.to_sat() == 10_000).count(), 20);
    assert!(ours.output.iter().any(|o| o.value.to_sat() == 200_000), "{:?}", values(&ours));
    // The same rate through our own command, as funder, is refused too.
    let mut q = Pair::open_with(honest(ct), config(ct), capacity, 400_000_000, 2_500);
    for n in 0..20u8 {
        let (_, fx) =
            q.a.ch.add_htlc(MilliSats::from_msat(10_000_000), PaymentPreimage([n; 32]).hash(), 2_000, onion()).unwrap();
        q.a.absorb_pub(fx, &mut q.to_b);
    }
    q.settle();
    assert_eq!(q.a.ch.update_fee(50_000).err(), Some(CommandError::DustExposure));
}

/// A dust flood: HTLCs below our dust limit pay miners, not us, if the channel goes on chain; a
/// forwarding node that accepted them all could lose what it paid downstream. Past the limit
/// (10,000 msat per sat/kw: 25,000 sat at 2,500 sat/kw) each HTLC is failed back once committed
/// (BOLT #2), never reported for forwarding.
#[test]
fn dust_htlc_flood_is_failed_back_past_the_exposure_limit() {
    let ct = ChannelType::AnchorsZeroFeeHtlc;
    let many = ChannelConfig { max_accepted_htlcs: 483, ..honest(ct) };
    let mut p = Pair::open_with(config(ct), many, 1_000_000, 0, 2_500);
    assert_eq!(p.b.ch.feerate(), 2_500);
    let start = p.b.ch.balances(Side::Holder);
    for n in 0..100u8 {
        // 350 sat: below the 354-sat dust limit, so trimmed on both commitments.
        let (_, fx) =
            p.a.ch.add_htlc(MilliSats::from_msat(350_000), PaymentPreimage([n; 32]).hash(), 2_000, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.settle();
    }
    let events = p.b.take_events();
    let received = events.iter().filter(|e| matches!(e, Event::HtlcReceived { .. })).count();
    let refused: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::HtlcRefused { id, reason, .. } => Some((*id, *reason)),
            _ => None,
        })
        .collect();
    // 71 × 350 = 24,850 sat fit under 25,000; the 72nd and every later one are failed back.
    assert_eq!(received, 71);
    assert_eq!(refused.len(), 29);
    assert!(refused.iter().all(|(id, why)| *id >= 71 && *why == HtlcRefusal::DustExposure));
    // The failures went through: only the accepted dust stays in flight, and our balance is
    // untouched.
    assert_eq!(p.b.ch.htlcs().len(), 71);
    assert_eq!(p.b.ch.balances(Side::Holder).holder, start.holder);
    let a_events = p.a.take_events();
    assert_eq!(a_events.iter().filter(|e| matches!(e, Event::HtlcFailed { .. })).count(), 29);
    p.verify_commitments();
}

/// The dust limit follows the fee market: with an estimate of 10,000 sat/kw it is 100,000 sat.
#[test]
fn dust_exposure_limit_scales_with_the_fee_estimate() {
    let ct = ChannelType::AnchorsZeroFeeHtlc;
    let many = ChannelConfig { max_accepted_htlcs: 483, ..honest(ct) };
    let mut p = Pair::open_with(config(ct), many, 1_000_000, 0, 2_500);
    assert!(p.b.ch.handle_fee_estimate(10_000).send.is_empty(), "the fundee sends no update_fee");
    for n in 0..100u8 {
        let (_, fx) =
            p.a.ch.add_htlc(MilliSats::from_msat(350_000), PaymentPreimage([n; 32]).hash(), 2_000, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.settle();
    }
    let events = p.b.take_events();
    assert_eq!(events.iter().filter(|e| matches!(e, Event::HtlcReceived { .. })).count(), 100);
    assert!(!events.iter().any(|e| matches!(e, Event::HtlcRefused { .. })));
    let fixed = ChannelConfig { max_dust_exposure: DustExposure::Fixed(MilliSats::from_msat(1_000_000)), ..honest(ct) };
    assert_eq!(fixed.max_dust_exposure.limit_at(10_000), MilliSats::from_msat(1_000_000));
}

/// Our own dust HTLCs count against the limit too: a wallet cannot be talked into offering more
/// dust than it would lose on chain.
#[test]
fn offering_dust_past_our_limit_is_refused() {
    let ct = ChannelType::AnchorsZeroFeeHtlc;
    let many = ChannelConfig { max_accepted_htlcs: 483, ..honest(ct) };
    let mut p = Pair::open_with(many, config(ct), 1_000_000, 0, 2_500);
    let mut refused = None;
    for n in 0..100u8 {
        match p.a.ch.add_htlc(MilliSats::from_msat(350_000), PaymentPreimage([n; 32]).hash(), 2_000, onion()) {
            Ok((_, fx)) => {
                p.a.absorb_pub(fx, &mut p.to_b);
                p.settle();
            }
            Err(e) => {
                refused = Some((n, e));
                break;
            }
        }
    }
    assert_eq!(refused, Some((71, CommandError::DustExposure)));
    // A non-dust HTLC is still fine.
    assert!(p
        .a
        .ch
        .add_htlc(MilliSats::from_msat(50_000_000), PaymentPreimage([0xee; 32]).hash(), 2_000, onion())
        .is_ok());
}

// ---- 3. The funder's fee, whoever offers ----

/// The non-funder offers HTLCs until the funder cannot pay the commitment fee they add: on
/// c0c12c3 the commitment silently underpaid its fee (the funder's output, then its reserve, went
/// into fees). Now a hostile non-funder's add past that point is refused by the funder with its
/// state byte-identical; the ones before it that break the funder's fee-spike buffer are taken
/// (BOLT #2: the peer could not know our buffer) and failed back once committed.
#[test]
fn non_funder_cannot_drain_the_funders_fee_and_reserve() {
    let ct = ChannelType::AnchorsZeroFeeHtlc;
    let many = ChannelConfig { max_accepted_htlcs: 483, ..honest(ct) };
    // The funder keeps 12,000 sat. At 2,500 sat/kw the fee with k HTLCs is 2,810 + 430·k sat, plus
    // 660 sat of anchors and its 1,000-sat reserve: k ≤ 17.
    let mut p = Pair::open_with(many.clone(), many, 1_000_000, 988_000_000, 2_500);
    let channel_id = p.a.ch.channel_id();
    let add = |id: u64| Msg::UpdateAddHtlc {
        channel_id,
        id,
        amount_msat: MilliSats::from_msat(20_000_000),
        payment_hash: PaymentPreimage([id as u8; 32]).hash(),
        cltv_expiry: 2_000,
        onion_routing_packet: onion(),
    };
    for id in 0..17 {
        let fx = p.a.ch.handle_message(add(id), &p.a.signer, ChainTip::at(p.tip)).unwrap();
        assert!(fx.send.is_empty());
    }
    let before = p.a.ch.snapshot();
    let err = p.a.ch.handle_message(add(17), &p.a.signer, ChainTip::at(p.tip)).unwrap_err();
    assert_eq!(err.kind, Misbehaviour::CannotAfford);
    assert_eq!(p.a.ch.snapshot(), before, "state byte-identical");
}

/// An honest non-funder stops before the funder's fee-spike buffer (twice the fee rate, one more
/// HTLC: 6,480 + 860·k sat with anchors and reserve, so k ≤ 4), so a fee update crossing its HTLCs
/// cannot make them unaffordable; every HTLC it offers is received, and the funder's commitment
/// pays the full fee, to the satoshi.
#[test]
fn non_funder_leaves_the_funder_its_fee_spike_buffer() {
    let ct = ChannelType::AnchorsZeroFeeHtlc;
    let capacity = 1_000_000;
    let many = ChannelConfig { max_accepted_htlcs: 483, ..honest(ct) };
    let mut p = Pair::open_with(many.clone(), many, capacity, 988_000_000, 2_500);
    let mut offered = 0u64;
    let refusal = loop {
        let hash = PaymentPreimage([offered as u8; 32]).hash();
        match p.b.ch.add_htlc(MilliSats::from_msat(20_000_000), hash, 2_000, onion()) {
            Ok((_, fx)) => {
                p.b.absorb_pub(fx, &mut p.to_a);
                offered += 1;
            }
            Err(e) => break e,
        }
    };
    assert_eq!((offered, refusal), (4, CommandError::PeerCannotPayFee));
    p.settle();
    let events = p.a.take_events();
    assert_eq!(events.iter().filter(|e| matches!(e, Event::HtlcReceived { .. })).count(), 4);
    assert!(!events.iter().any(|e| matches!(e, Event::HtlcRefused { .. })));
    // Four HTLCs: fee 2,810 + 4 × 430 = 4,530 sat, anchors 660, the funder's output the rest.
    let tx = p.a.ch.holder_commitment_tx(&p.a.signer).unwrap();
    assert_eq!(fee_of(&tx, capacity), 4_530);
    assert!(tx.output.iter().any(|o| o.value.to_sat() == 12_000 - 4_530 - 660), "{:?}", values(&tx));
    p.verify_commitments();
}

// ---- 4. Fee rates against the embedder's estimate ----

#[test]
fn update_fee_far_from_our_estimate_is_refused() {
    let ct = ChannelType::AnchorsZeroFeeHtlc;
    let mut p = Pair::open_with(config(ct), honest(ct), 1_000_000, 300_000_000, 2_500);
    assert!(p.b.ch.handle_fee_estimate(2_500).send.is_empty(), "the fundee sends no update_fee");
    let channel_id = p.b.ch.channel_id();
    for (rate, ok) in [(1_249, false), (1_250, true), (25_000, true), (25_001, false)] {
        let before = p.b.ch.snapshot();
        let r = p.b.ch.handle_message(
            Msg::UpdateFee { channel_id, feerate_per_kw: rate },
            &p.b.signer,
            ChainTip::at(p.tip),
        );
        assert_eq!(r.is_ok(), ok, "rate {rate}");
        if let Err(e) = r {
            assert_eq!(e.kind, Misbehaviour::Feerate);
            assert_eq!(p.b.ch.snapshot(), before, "state byte-identical");
        }
        let _ = p.b.ch.handle_disconnect();
    }
}

/// As funder, the channel follows the estimate by itself once it moves past the margin.
#[test]
fn funder_sends_update_fee_when_the_estimate_moves() {
    let ct = ChannelType::AnchorsZeroFeeHtlc;
    let mut p = Pair::open_with(honest(ct), honest(ct), 1_000_000, 0, 2_500);
    // Within 20 %: nothing.
    let fx = p.a.ch.handle_fee_estimate(2_900);
    assert!(fx.send.is_empty());
    // Fees double: update_fee, then commit.
    let fx = p.a.ch.handle_fee_estimate(5_000);
    assert!(matches!(fx.send.as_slice(), [Msg::UpdateFee { feerate_per_kw: 5_000, .. }]));
    p.a.absorb_pub(fx, &mut p.to_b);
    p.settle();
    assert_eq!((p.a.ch.feerate(), p.b.ch.feerate()), (5_000, 5_000));
    // The fundee never sends one.
    assert!(p.b.ch.handle_fee_estimate(20_000).send.is_empty());
    // Fees fall by half: down again.
    let fx = p.a.ch.handle_fee_estimate(2_500);
    assert!(matches!(fx.send.as_slice(), [Msg::UpdateFee { feerate_per_kw: 2_500, .. }]));
}
