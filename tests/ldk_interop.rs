//! The acceptance test of the network layer: a paychan node and a live LDK 0.2.7 node
//! (`PeerManager` + `ChannelManager`) over a real TCP socket on 127.0.0.1.

mod ldk;

use bitcoin::secp256k1::SecretKey;
use ldk::{Ldk, Link};
use lightning::util::config::UserConfig;
use paychan::network::features::{Feature, Features};
use paychan::network::noise::{InMemoryNodeSigner, NodeSigner};
use paychan::network::peer::PeerEvent;

fn pc_node() -> InMemoryNodeSigner {
    InMemoryNodeSigner::new(SecretKey::from_slice(&[0x42; 32]).unwrap())
}

fn ready_features(link: &mut Link) -> Features {
    match link.events.pop_front() {
        Some(PeerEvent::Ready { features }) => features,
        other => panic!("expected LDK's init, got {other:?}"),
    }
}

/// LDK lists paychan as connected, with the features paychan's `init` carried.
fn ldk_sees_paychan(ldk: &Ldk, pc: &InMemoryNodeSigner) {
    let details = ldk.peers.peer_by_node_id(&pc.node_id()).expect("LDK lists paychan as a peer");
    assert!(details.init_features.supports_static_remote_key());
    assert!(details.init_features.supports_anchors_zero_fee_htlc_tx());
    assert!(details.init_features.supports_payment_secret());
}

#[test]
fn handshake_init_and_ping_with_paychan_as_initiator() {
    let ldk = Ldk::new(1, UserConfig::default());
    let mut link = Link::paychan_dials(&ldk, pc_node(), 3);
    let theirs = ready_features(&mut link);
    assert!(theirs.supports(Feature::StaticRemoteKey) && theirs.supports(Feature::PaymentSecret));
    ldk_sees_paychan(&ldk, &link.pc_node);
    // paychan pings, LDK pongs with exactly the bytes asked.
    let ping = link.peer().ping(12);
    link.deliver(&ldk, &ping);
    link.pump(&ldk);
    assert_eq!(link.events.pop_front(), Some(PeerEvent::Pong));
    // LDK pings on its timer; paychan answers and LDK keeps the connection.
    ldk.peers.timer_tick_occurred();
    assert!(link.pending_to_paychan() > 0, "LDK's ping");
    link.pump(&ldk);
    ldk.peers.timer_tick_occurred();
    link.pump(&ldk);
    assert_eq!(link.ldk_desc.disconnected.load(std::sync::atomic::Ordering::SeqCst), 0);
    ldk_sees_paychan(&ldk, &link.pc_node);
    assert!(link.events.is_empty(), "{:?}", link.events);
}

#[test]
fn handshake_init_and_ping_with_ldk_as_initiator() {
    let ldk = Ldk::new(2, UserConfig::default());
    let mut link = Link::ldk_dials(&ldk, pc_node(), 4);
    assert_eq!(link.learnt_initiator, Some(ldk.node_id()), "act three carries LDK's node id");
    let theirs = ready_features(&mut link);
    assert!(theirs.supports(Feature::VarOnionOptin));
    ldk_sees_paychan(&ldk, &link.pc_node);
    let ping = link.peer().ping(0);
    link.deliver(&ldk, &ping);
    link.pump(&ldk);
    assert_eq!(link.events.pop_front(), Some(PeerEvent::Pong));
    ldk.peers.timer_tick_occurred();
    assert!(link.pending_to_paychan() > 0, "LDK's ping");
    link.pump(&ldk);
    ldk.peers.timer_tick_occurred();
    link.pump(&ldk);
    assert_eq!(link.ldk_desc.disconnected.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(link.events.is_empty(), "{:?}", link.events);
}

use bitcoin::Transaction;
use ldk::{funding_tx, ldk_config, pc_config};
use lightning::events::Event as LdkEvent;
use paychan::core::commitment::ChannelType;
use paychan::lightning::{Event, Msg, Phase, Side};

const CAPACITY: u64 = 1_000_000;
const PUSH_MSAT: u64 = 200_000_000;

/// paychan and LDK connected (paychan dialing), paychan with `channel_type`'s policy.
fn connected(channel_type: ChannelType, seed: u8) -> (Ldk, Link) {
    let ldk = Ldk::new(seed, ldk_config(channel_type == ChannelType::AnchorsZeroFeeHtlc));
    let mut link = Link::paychan_dials(&ldk, pc_node(), seed.wrapping_add(100));
    link.pc.config = pc_config(channel_type);
    assert!(matches!(link.events.pop_front(), Some(PeerEvent::Ready { .. })));
    (ldk, link)
}

/// Accepts LDK's pending inbound channel requests (LDK asks for anchor channels).
fn ldk_accepts(ldk: &Ldk) {
    for e in ldk.events() {
        if let LdkEvent::OpenChannelRequest { temporary_channel_id, counterparty_node_id, .. } = e {
            ldk.manager
                .accept_inbound_channel(&temporary_channel_id, &counterparty_node_id, 0, None)
                .expect("LDK accepts");
        } else {
            panic!("unexpected LDK event {e:?}");
        }
    }
}

/// Mines the funding in one block seen by both nodes and runs the `channel_ready` exchange.
fn confirm(ldk: &mut Ldk, link: &mut Link, funding: &Transaction) {
    ldk.mine(std::slice::from_ref(funding));
    let msgs = link.pc.mine(std::slice::from_ref(funding));
    link.send_all(ldk, &msgs);
    link.pump(ldk);
}

/// LDK opens a channel of `CAPACITY` pushing `PUSH_MSAT` to paychan; returns paychan's channel index.
fn ldk_opens(ldk: &mut Ldk, link: &mut Link) -> usize {
    let pc_id = link.pc_node.node_id();
    ldk.manager.create_channel(pc_id, CAPACITY, PUSH_MSAT, 7, None, None).expect("LDK opens");
    link.pump(ldk);
    let i = link.pc.channels.len() - 1;
    let (temp, script) = ldk
        .events()
        .into_iter()
        .find_map(|e| match e {
            LdkEvent::FundingGenerationReady {
                temporary_channel_id, output_script, channel_value_satoshis, ..
            } => {
                assert_eq!(channel_value_satoshis, CAPACITY);
                Some((temporary_channel_id, output_script))
            }
            _ => None,
        })
        .expect("LDK asks for the funding after paychan's accept_channel");
    let funding = funding_tx(script, bitcoin::Amount::from_sat(CAPACITY), 0x11);
    ldk.manager.funding_transaction_generated(temp, pc_id, funding.clone()).expect("funding");
    link.pump(ldk);
    assert!(ldk.broadcast.0.lock().unwrap().contains(&funding), "LDK broadcasts after paychan's funding_signed");
    confirm(ldk, link, &funding);
    link.pc.channels[i].funding = Some(funding);
    i
}

/// paychan opens a channel of `CAPACITY` pushing `PUSH_MSAT` to LDK; returns its index.
fn paychan_opens(ldk: &mut Ldk, link: &mut Link) -> usize {
    let open = link.pc.open([0x77; 32], CAPACITY, PUSH_MSAT);
    link.send_all(ldk, &open);
    if link.pc.config.channel_type == ChannelType::AnchorsZeroFeeHtlc {
        ldk_accepts(ldk);
    }
    link.pump(ldk);
    let i = link.pc.channels.len() - 1;
    let (script, value) = link
        .pc
        .events(i)
        .into_iter()
        .find_map(|e| match e {
            Event::FundingGenerationReady { script_pubkey, value } => Some((script_pubkey, value)),
            _ => None,
        })
        .expect("paychan asks for the funding after LDK's accept_channel");
    let funding = funding_tx(script, value, 0x22);
    let msgs = link.pc.command(i, |ch, s| ch.funding_tx(funding.clone(), s).expect("funding_tx"));
    link.send_all(ldk, &msgs);
    link.pump(ldk);
    assert!(link.pc.broadcast.contains(&funding), "paychan broadcasts after LDK's funding_signed");
    confirm(ldk, link, &funding);
    link.pc.channels[i].funding = Some(funding);
    i
}

/// Both sides see the channel ready with the same balances.
fn check_ready(ldk: &Ldk, link: &mut Link, i: usize, paychan_is_funder: bool) {
    let c = &link.pc.channels[i];
    assert_eq!(c.ch.phase(), Phase::Normal);
    assert!(c.events.iter().any(|e| matches!(e, Event::ChannelReady { .. })));
    let id = c.ch.channel_id();
    let details = ldk
        .manager
        .list_channels()
        .into_iter()
        .find(|d| d.channel_id.0 == id.0)
        .expect("LDK knows the channel by the same id");
    assert!(details.is_channel_ready && details.is_usable, "{details:?}");
    assert_eq!(details.is_outbound, !paychan_is_funder);
    assert_eq!(details.channel_value_satoshis, CAPACITY);
    let anchors = c.ch.channel_type() == ChannelType::AnchorsZeroFeeHtlc;
    assert_eq!(details.channel_type.expect("negotiated").supports_anchors_zero_fee_htlc_tx(), anchors);
    let b = c.ch.balances(Side::Holder);
    let (pc_msat, ldk_msat) = if paychan_is_funder {
        (CAPACITY * 1000 - PUSH_MSAT, PUSH_MSAT)
    } else {
        (PUSH_MSAT, CAPACITY * 1000 - PUSH_MSAT)
    };
    assert_eq!((b.holder.to_msat(), b.counterparty.to_msat()), (pc_msat, ldk_msat));
    // LDK gives the private channel's forwarding terms in a `channel_update` to its peer.
    assert!(link.gossip.iter().any(|(t, _)| *t == 258), "LDK's channel_update");
    assert!(ldk.events().iter().any(|e| matches!(e, LdkEvent::ChannelReady { .. })));
}

#[test]
fn ldk_opens_a_static_remotekey_channel_to_paychan() {
    let (mut ldk, mut link) = connected(ChannelType::StaticRemoteKey, 11);
    let i = ldk_opens(&mut ldk, &mut link);
    check_ready(&ldk, &mut link, i, false);
}

#[test]
fn paychan_opens_a_static_remotekey_channel_to_ldk() {
    let (mut ldk, mut link) = connected(ChannelType::StaticRemoteKey, 12);
    let i = paychan_opens(&mut ldk, &mut link);
    check_ready(&ldk, &mut link, i, true);
}

#[test]
fn ldk_opens_an_anchors_channel_to_paychan() {
    let (mut ldk, mut link) = connected(ChannelType::AnchorsZeroFeeHtlc, 13);
    let i = ldk_opens(&mut ldk, &mut link);
    assert_eq!(link.pc.channels[i].ch.channel_type(), ChannelType::AnchorsZeroFeeHtlc);
    check_ready(&ldk, &mut link, i, false);
}

#[test]
fn paychan_opens_an_anchors_channel_to_ldk() {
    let (mut ldk, mut link) = connected(ChannelType::AnchorsZeroFeeHtlc, 14);
    let i = paychan_opens(&mut ldk, &mut link);
    check_ready(&ldk, &mut link, i, true);
}

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lightning::ln::channelmanager::Retry;
use lightning::ln::channelmanager::{Bolt11InvoiceParameters, PaymentId};
use lightning::routing::router::RouteParametersConfig;
use paychan::core::{MilliSats, PaymentHash, PaymentPreimage};
use paychan::network::invoice::{create_invoice, parse_invoice, Currency, InvoiceRequest};
use paychan::network::onion::{build_onion, failure, read_failure};
use paychan::network::payload::HopPayload;
use paychan::network::receive::{receive_final, ReceivedHtlc};

const PC_SECRET: [u8; 32] = [0x42; 32];

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// paychan's node secret (the onion's final layer is peeled with it).
fn pc_secret() -> SecretKey {
    SecretKey::from_slice(&PC_SECRET).unwrap()
}

/// The HTLCs paychan's channel `i` reported as received.
fn received(link: &mut Link, i: usize) -> Vec<(u64, MilliSats, PaymentHash, u32, paychan::lightning::OnionPacket)> {
    link.pc
        .events(i)
        .into_iter()
        .filter_map(|e| match e {
            Event::HtlcReceived { id, amount, payment_hash, cltv_expiry, onion } => {
                Some((id, amount, payment_hash, cltv_expiry, onion.expect("over the wire")))
            }
            _ => None,
        })
        .collect()
}

/// LDK pays a BOLT 11 invoice made by paychan's `create_invoice`; paychan peels LDK's onion with
/// `network::onion::peel`, checks the final hop and fulfils.
fn ldk_pays_paychan(ldk: &mut Ldk, link: &mut Link, i: usize) {
    // A fresh payment each call (LDK refuses a payment id or hash it already paid).
    static PAYMENTS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(100);
    let n = PAYMENTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let preimage = PaymentPreimage([n; 32]);
    let secret = [0x33; 32];
    let amount = 50_000_000;
    let request = InvoiceRequest {
        currency: Currency::Regtest,
        amount_msat: Some(amount),
        payment_hash: preimage.hash().0,
        payment_secret: secret,
        description: "paychan coffee".into(),
        created_at: now(),
        expiry: Duration::from_secs(3_600),
        min_final_cltv_expiry_delta: 40,
        route_hints: vec![],
    };
    let invoice = create_invoice(&request, &link.pc_node).expect("invoice");
    // LDK reads the invoice from its text, as a wallet would.
    let invoice: lightning_invoice::Bolt11Invoice = invoice.to_string().parse().expect("LDK parses paychan's invoice");
    ldk.manager
        .pay_for_bolt11_invoice(
            &invoice,
            PaymentId([n; 32]),
            None,
            RouteParametersConfig::default(),
            Retry::Attempts(0),
        )
        .expect("LDK pays");
    link.pump(ldk);
    let got = received(link, i);
    let [(id, htlc_amount, hash, cltv_expiry, onion)] = &got[..] else { panic!("one HTLC: {got:?}") };
    assert_eq!((htlc_amount.to_msat(), *hash), (amount, preimage.hash()));
    // paychan's receive path: peel with the node key, check against the invoice.
    let htlc = ReceivedHtlc { onion, payment_hash: *hash, amount: *htlc_amount, cltv_expiry: *cltv_expiry };
    let hop =
        receive_final(&htlc, &pc_secret(), &secret, 40, link.pc.tip).expect("LDK's onion passes the final checks");
    assert!(matches!(hop, HopPayload::Final { amt_to_forward, payment_data: Some((s, total)), .. }
        if amt_to_forward == amount && s == secret && total == amount));
    let id = *id;
    let msgs = link.pc.command(i, |ch, _| ch.fulfill_htlc(id, preimage).expect("fulfill"));
    link.send_all(ldk, &msgs);
    let msgs = link.pc.command(i, |ch, s| ch.commit(s).expect("commit"));
    link.send_all(ldk, &msgs);
    link.pump(ldk);
    let sent = ldk.events().into_iter().find_map(|e| match e {
        LdkEvent::PaymentSent { payment_preimage, fee_paid_msat, .. } => Some((payment_preimage, fee_paid_msat)),
        _ => None,
    });
    assert_eq!(sent, Some((lightning::types::payment::PaymentPreimage(preimage.0), Some(0))));
    link.pump(ldk);
    assert!(link.pc.channels[i].ch.htlcs().is_empty(), "{:?}", link.pc.channels[i].ch.htlcs());
}

/// paychan pays an invoice LDK made: `parse_invoice` gives the target, paychan builds the onion
/// with `network::onion::build_onion` and offers the HTLC; LDK claims it.
fn paychan_pays_ldk(ldk: &mut Ldk, link: &mut Link, i: usize) {
    let amount = 30_000_000;
    let params = Bolt11InvoiceParameters { amount_msats: Some(amount), ..Default::default() };
    let invoice = ldk.manager.create_bolt11_invoice(params).expect("LDK's invoice");
    let target = parse_invoice(&invoice.to_string(), Currency::Regtest, now()).expect("paychan parses LDK's invoice");
    assert_eq!(target.payee, ldk.node_id());
    assert_eq!(target.amount_msat, Some(amount));
    // LDK is the channel's peer: a one-hop route.
    let cltv = link.pc.tip + target.min_final_cltv_expiry_delta as u32 + 2;
    let payload = HopPayload::Final {
        amt_to_forward: amount,
        outgoing_cltv_value: cltv,
        payment_data: Some((target.payment_secret, amount)),
        payment_metadata: None,
    };
    let session = SecretKey::from_slice(&[0x5e; 32]).unwrap();
    let (onion, _secrets) =
        build_onion(&[target.payee], &[payload.encode()], &session, &target.payment_hash).expect("onion");
    let hash = PaymentHash(target.payment_hash);
    let msgs = link.pc.command(i, |ch, _| ch.add_htlc(MilliSats::from_msat(amount), hash, cltv, onion).expect("add").1);
    link.send_all(ldk, &msgs);
    let msgs = link.pc.command(i, |ch, s| ch.commit(s).expect("commit"));
    link.send_all(ldk, &msgs);
    link.pump(ldk);
    ldk.manager.process_pending_htlc_forwards();
    link.pump(ldk);
    let claimable = ldk.events().into_iter().find_map(|e| match e {
        LdkEvent::PaymentClaimable { payment_hash, amount_msat, purpose, .. } => {
            Some((payment_hash, amount_msat, purpose))
        }
        _ => None,
    });
    let (h, got, purpose) = claimable.expect("LDK found its payment in paychan's onion");
    assert_eq!((h.0, got), (target.payment_hash, amount));
    let preimage = purpose.preimage().expect("LDK knows its preimage");
    ldk.manager.claim_funds(preimage);
    link.pump(ldk);
    let fulfilled = link.pc.events(i).into_iter().find_map(|e| match e {
        Event::HtlcFulfilled { preimage, payment_hash, .. } => Some((preimage, payment_hash)),
        _ => None,
    });
    assert_eq!(fulfilled, Some((PaymentPreimage(preimage.0), hash)));
    // The fulfilment's commitment dance completes.
    link.pump(ldk);
    assert!(ldk
        .events()
        .iter()
        .any(|e| matches!(e, LdkEvent::PaymentClaimed { amount_msat, .. } if *amount_msat == amount)));
    // LDK holds its last revoke_and_ack until the claim's event was handled.
    link.pump(ldk);
    assert!(link.pc.channels[i].ch.htlcs().is_empty(), "{:?}", link.pc.channels[i].ch.htlcs());
}

/// One payment each way on channel `i`; paychan's balances move by exactly the amounts (the
/// payee is a direct peer: no fee).
fn a_payment_each_way(ldk: &mut Ldk, link: &mut Link, i: usize) {
    let before = link.pc.channels[i].ch.balances(Side::Holder);
    ldk_pays_paychan(ldk, link, i);
    paychan_pays_ldk(ldk, link, i);
    let after = link.pc.channels[i].ch.balances(Side::Holder);
    assert_eq!(after.holder.to_msat(), before.holder.to_msat() + 50_000_000 - 30_000_000);
    assert_eq!(after.counterparty.to_msat(), before.counterparty.to_msat() - 50_000_000 + 30_000_000);
    let details =
        ldk.manager.list_channels().into_iter().find(|d| d.channel_id.0 == link.pc.channels[i].ch.channel_id().0);
    assert!(details.expect("LDK's channel").is_usable);
    // paychan's latest commitment, with LDK's signature, spends the funding under Core's
    // interpreter: what a force close would broadcast is valid.
    let c = &link.pc.channels[i];
    let commitment = c.ch.holder_commitment_tx(&c.signer).expect("signed commitment");
    let funding = c.funding.as_ref().expect("funding");
    verify_spend(&commitment, &[funding.output[0].clone()]).expect("LDK's signature verifies under Core's interpreter");
}

#[test]
fn a_payment_each_way_over_a_static_remotekey_channel_ldk_opened() {
    let (mut ldk, mut link) = connected(ChannelType::StaticRemoteKey, 21);
    let i = ldk_opens(&mut ldk, &mut link);
    check_ready(&ldk, &mut link, i, false);
    a_payment_each_way(&mut ldk, &mut link, i);
}

#[test]
fn a_payment_each_way_over_an_anchors_channel_paychan_opened() {
    let (mut ldk, mut link) = connected(ChannelType::AnchorsZeroFeeHtlc, 22);
    let i = paychan_opens(&mut ldk, &mut link);
    check_ready(&ldk, &mut link, i, true);
    a_payment_each_way(&mut ldk, &mut link, i);
}

use bitcoin::hashes::Hash as _;
use paychan::testing::consensus::verify_spend;

/// A standard P2WPKH payout script.
fn payout_script(b: u8) -> bitcoin::ScriptBuf {
    bitcoin::ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([b; 20]))
}

/// The closing fee range paychan offers.
const CLOSE_FEES: (bitcoin::Amount, bitcoin::Amount) =
    (bitcoin::Amount::from_sat(500), bitcoin::Amount::from_sat(20_000));

/// Runs the cooperative close to its end and checks both nodes broadcast the same closing
/// transaction, valid under Bitcoin Core's interpreter, paying each side its balance less its
/// share of the fee (the funder pays it).
fn finish_close(ldk: &mut Ldk, link: &mut Link, i: usize, paychan_is_funder: bool) {
    link.pump(ldk);
    let balances = link.pc.channels[i].ch.balances(Side::Holder);
    let closed = link.pc.events(i).into_iter().find_map(|e| match e {
        Event::ClosingBroadcast { txid, fee } => Some((txid, fee)),
        _ => None,
    });
    let (txid, fee) = closed.expect("paychan agreed on a closing transaction");
    let pc_tx = link.pc.broadcast.iter().find(|t| t.compute_txid() == txid).expect("paychan broadcast it").clone();
    assert!(ldk.broadcast.0.lock().unwrap().contains(&pc_tx), "LDK broadcast the identical closing transaction");
    let funding = link.pc.channels[i].funding.clone().expect("funding");
    verify_spend(&pc_tx, &[funding.output[0].clone()]).expect("the closing transaction passes Core's interpreter");
    let paid_to = |s: &bitcoin::ScriptBuf| {
        pc_tx.output.iter().filter(|o| o.script_pubkey == *s).map(|o| o.value).sum::<bitcoin::Amount>()
    };
    let ours = paid_to(&payout_script(0xc1));
    let holder = balances.holder.to_amount_floor();
    let theirs_total: bitcoin::Amount = pc_tx.output.iter().map(|o| o.value).sum::<bitcoin::Amount>() - ours;
    if paychan_is_funder {
        assert_eq!(ours, holder - fee, "paychan, the funder, pays the fee");
        assert_eq!(theirs_total, balances.counterparty.to_amount_floor());
    } else {
        assert_eq!(ours, holder, "paychan gets its whole balance");
        assert_eq!(theirs_total, balances.counterparty.to_amount_floor() - fee);
    }
    ldk.events(); // ChannelClosed (and anything else) handled
    let still =
        ldk.manager.list_channels().into_iter().any(|d| d.channel_id.0 == link.pc.channels[i].ch.channel_id().0);
    assert!(!still, "LDK forgot the closed channel");
    // The closing transaction confirms: paychan's channel is over, nothing left to watch.
    ldk.mine(std::slice::from_ref(&pc_tx));
    let msgs = link.pc.mine(std::slice::from_ref(&pc_tx));
    assert!(msgs.is_empty());
    assert!(link.pc.channels[i].ch.is_off_chain_over());
    assert_eq!(link.pc.channels[i].ch.phase(), Phase::Closed);
}

/// paychan sends `shutdown` first.
fn paychan_closes(ldk: &mut Ldk, link: &mut Link, i: usize, paychan_is_funder: bool) {
    let msgs = link.pc.command(i, |ch, s| ch.shutdown(payout_script(0xc1), CLOSE_FEES, s).expect("shutdown"));
    link.send_all(ldk, &msgs);
    finish_close(ldk, link, i, paychan_is_funder);
}

/// LDK sends `shutdown` first; paychan answers with its own.
fn ldk_closes(ldk: &mut Ldk, link: &mut Link, i: usize, paychan_is_funder: bool) {
    let id = lightning::ln::types::ChannelId(link.pc.channels[i].ch.channel_id().0);
    ldk.manager.close_channel(&id, &link.pc_node.node_id()).expect("LDK closes");
    link.pump(ldk);
    let asked = link.pc.channels[i].events.iter().any(|e| matches!(e, Event::ShutdownReceived));
    assert!(asked, "paychan saw LDK's shutdown");
    let msgs = link.pc.command(i, |ch, s| ch.shutdown(payout_script(0xc1), CLOSE_FEES, s).expect("shutdown"));
    link.send_all(ldk, &msgs);
    finish_close(ldk, link, i, paychan_is_funder);
}

#[test]
fn cooperative_closes_with_ldk_either_side_first() {
    for (ct, seed) in [(ChannelType::StaticRemoteKey, 31), (ChannelType::AnchorsZeroFeeHtlc, 32)] {
        // LDK funds, paychan closes.
        let (mut ldk, mut link) = connected(ct, seed);
        let i = ldk_opens(&mut ldk, &mut link);
        a_payment_each_way(&mut ldk, &mut link, i);
        paychan_closes(&mut ldk, &mut link, i, false);
        // paychan funds, LDK closes.
        let (mut ldk, mut link) = connected(ct, seed + 10);
        let i = paychan_opens(&mut ldk, &mut link);
        a_payment_each_way(&mut ldk, &mut link, i);
        ldk_closes(&mut ldk, &mut link, i, true);
    }
}

/// A payment the payee does not recognise, each way: paychan fails LDK's HTLC back through the
/// receive path (LDK reads the wrapped failure as the recipient's rejection), and LDK fails
/// paychan's HTLC carrying a wrong payment secret (paychan reads LDK's failure at hop 0). Nothing
/// moves.
#[test]
fn refused_payments_each_way_reach_the_origin() {
    let (mut ldk, mut link) = connected(ChannelType::StaticRemoteKey, 41);
    let i = ldk_opens(&mut ldk, &mut link);
    let _ = ldk.events();
    let before = link.pc.channels[i].ch.balances(Side::Holder);
    // LDK pays an invoice whose secret paychan does not hold (a forgotten or forged invoice).
    let preimage = PaymentPreimage([0x98; 32]);
    let request = InvoiceRequest {
        currency: Currency::Regtest,
        amount_msat: Some(20_000_000),
        payment_hash: preimage.hash().0,
        payment_secret: [0x34; 32],
        description: "unknown".into(),
        created_at: now(),
        expiry: Duration::from_secs(3_600),
        min_final_cltv_expiry_delta: 40,
        route_hints: vec![],
    };
    let invoice: lightning_invoice::Bolt11Invoice =
        create_invoice(&request, &link.pc_node).unwrap().to_string().parse().unwrap();
    ldk.manager
        .pay_for_bolt11_invoice(
            &invoice,
            PaymentId([2; 32]),
            None,
            RouteParametersConfig::default(),
            Retry::Attempts(0),
        )
        .expect("LDK pays");
    link.pump(&ldk);
    let got = received(&mut link, i);
    let [(id, amount, hash, cltv_expiry, onion)] = &got[..] else { panic!("one HTLC") };
    let htlc = ReceivedHtlc { onion, payment_hash: *hash, amount: *amount, cltv_expiry: *cltv_expiry };
    let answer = receive_final(&htlc, &pc_secret(), &[0x35; 32], 40, link.pc.tip).unwrap_err();
    assert_eq!(answer.code(), failure::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS);
    let id = *id;
    let msgs = link.pc.command(i, |ch, _| answer.apply(ch, id).expect("fail"));
    link.send_all(&ldk, &msgs);
    let msgs = link.pc.command(i, |ch, s| ch.commit(s).expect("commit"));
    link.send_all(&ldk, &msgs);
    link.pump(&ldk);
    let failed = ldk.events().into_iter().find_map(|e| match e {
        LdkEvent::PaymentFailed { reason, .. } => Some(reason),
        _ => None,
    });
    assert_eq!(failed, Some(Some(lightning::events::PaymentFailureReason::RecipientRejected)));
    link.pump(&ldk);

    // paychan pays LDK's invoice with a wrong payment secret.
    let amount = 10_000_000;
    let params = Bolt11InvoiceParameters { amount_msats: Some(amount), ..Default::default() };
    let invoice = ldk.manager.create_bolt11_invoice(params).unwrap();
    let target = parse_invoice(&invoice.to_string(), Currency::Regtest, now()).unwrap();
    let cltv = link.pc.tip + target.min_final_cltv_expiry_delta as u32 + 2;
    let payload = HopPayload::Final {
        amt_to_forward: amount,
        outgoing_cltv_value: cltv,
        payment_data: Some(([0xab; 32], amount)),
        payment_metadata: None,
    };
    let session = SecretKey::from_slice(&[0x5f; 32]).unwrap();
    let (onion, secrets) = build_onion(&[target.payee], &[payload.encode()], &session, &target.payment_hash).unwrap();
    let hash = PaymentHash(target.payment_hash);
    let msgs = link.pc.command(i, |ch, _| ch.add_htlc(MilliSats::from_msat(amount), hash, cltv, onion).unwrap().1);
    link.send_all(&ldk, &msgs);
    let msgs = link.pc.command(i, |ch, s| ch.commit(s).unwrap());
    link.send_all(&ldk, &msgs);
    link.pump(&ldk);
    // LDK decodes the HTLC on one forwarding pass and fails it back on the next.
    for _ in 0..2 {
        ldk.manager.process_pending_htlc_forwards();
        link.pump(&ldk);
    }
    assert!(link
        .pc
        .events(i)
        .iter()
        .any(|e| matches!(e, Event::HtlcFailed { payment_hash, .. } if *payment_hash == hash)));
    let Some(Msg::UpdateFailHtlc { reason, .. }) = link.pc.fails.last() else { panic!("LDK's update_fail_htlc") };
    let got = read_failure(&secrets, reason).expect("paychan reads LDK's failure");
    assert_eq!((got.hop, got.code()), (0, Some(failure::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS)));
    link.pump(&ldk);
    assert!(link.pc.channels[i].ch.htlcs().is_empty());
    let after = link.pc.channels[i].ch.balances(Side::Holder);
    assert_eq!((after.holder, after.counterparty), (before.holder, before.counterparty), "nothing moved");
}

/// The connection drops after the channel is ready and again after a payment; each time the
/// channel is reestablished with LDK on a new TCP connection and carries the next payment.
#[test]
fn reconnections_reestablish_the_channel_with_ldk() {
    for (ct, seed) in [(ChannelType::StaticRemoteKey, 51), (ChannelType::AnchorsZeroFeeHtlc, 52)] {
        let (mut ldk, mut link) = connected(ct, seed);
        let i = paychan_opens(&mut ldk, &mut link);
        check_ready(&ldk, &mut link, i, true);
        let mut link = link.reconnect(&ldk, 60);
        assert!(matches!(link.events.pop_front(), Some(PeerEvent::Ready { .. })));
        assert!(link.pc.unrouted.is_empty(), "{:?}", link.pc.unrouted);
        a_payment_each_way(&mut ldk, &mut link, i);
        let mut link = link.reconnect(&ldk, 61);
        assert!(matches!(link.events.pop_front(), Some(PeerEvent::Ready { .. })));
        a_payment_each_way(&mut ldk, &mut link, i);
        paychan_closes(&mut ldk, &mut link, i, true);
    }
}

/// The connection drops at each step of the commitment dances of a payment paychan → LDK (the
/// add, then the fulfilment): after `k` messages crossed, the rest are lost. paychan reconnects,
/// both sides reestablish and retransmit, and the payment completes exactly once, with balances
/// to the millisatoshi.
#[test]
fn a_disconnection_at_each_step_of_the_dances_and_a_reconnection() {
    // add, commitment_signed, revoke_and_ack, commitment_signed, revoke_and_ack, then the
    // fulfilment's five: ten messages.
    for k in 0..=10 {
        let (mut ldk, mut link) = connected(ChannelType::AnchorsZeroFeeHtlc, 70 + k as u8);
        let i = paychan_opens(&mut ldk, &mut link);
        let _ = ldk.events();
        let before = link.pc.channels[i].ch.balances(Side::Holder);
        let amount = 40_000_000;
        let invoice = ldk
            .manager
            .create_bolt11_invoice(Bolt11InvoiceParameters { amount_msats: Some(amount), ..Default::default() })
            .unwrap();
        let target = parse_invoice(&invoice.to_string(), Currency::Regtest, now()).unwrap();
        let cltv = link.pc.tip + target.min_final_cltv_expiry_delta as u32 + 2;
        let payload = HopPayload::Final {
            amt_to_forward: amount,
            outgoing_cltv_value: cltv,
            payment_data: Some((target.payment_secret, amount)),
            payment_metadata: None,
        };
        let session = SecretKey::from_slice(&[0x61; 32]).unwrap();
        let (onion, _) = build_onion(&[target.payee], &[payload.encode()], &session, &target.payment_hash).unwrap();
        let hash = PaymentHash(target.payment_hash);
        link.budget = Some(k);
        let msgs = link.pc.command(i, |ch, _| ch.add_htlc(MilliSats::from_msat(amount), hash, cltv, onion).unwrap().1);
        link.send_all(&ldk, &msgs);
        let msgs = link.pc.command(i, |ch, s| ch.commit(s).unwrap());
        link.send_all(&ldk, &msgs);
        link.pump(&ldk);
        let mut claimed = false;
        let mut reconnected = false;
        // Drive both nodes; reconnect once the budget is spent.
        for round in 0..6 {
            ldk.manager.process_pending_htlc_forwards();
            link.pump(&ldk);
            for e in ldk.events() {
                if let LdkEvent::PaymentClaimable { purpose, .. } = e {
                    assert!(!claimed, "claimable once");
                    claimed = true;
                    ldk.manager.claim_funds(purpose.preimage().unwrap());
                }
            }
            link.pump(&ldk);
            if link.budget == Some(0) && !reconnected {
                link = link.reconnect(&ldk, 90 + round);
                assert!(matches!(link.events.pop_front(), Some(PeerEvent::Ready { .. })));
                reconnected = true;
            }
        }
        let _ = ldk.events();
        link.pump(&ldk);
        assert!(claimed, "k = {k}: LDK got the payment");
        assert!(link.pc.channels[i].ch.htlcs().is_empty(), "k = {k}: {:?}", link.pc.channels[i].ch.htlcs());
        let after = link.pc.channels[i].ch.balances(Side::Holder);
        assert_eq!(after.holder.to_msat(), before.holder.to_msat() - amount, "k = {k}");
        assert_eq!(after.counterparty.to_msat(), before.counterparty.to_msat() + amount, "k = {k}");
        // The preimage is reported (twice when the connection drops after LDK's
        // update_fulfill_htlc but before its commitment_signed: BOLT 2 makes paychan forget the
        // unsigned fulfilment, and LDK's retransmission reports it again; a forwarder's upstream
        // claim must be idempotent).
        let fulfilled = link.pc.channels[i].events.iter().filter(|e| matches!(e, Event::HtlcFulfilled { .. })).count();
        assert!(fulfilled >= 1, "k = {k}");
        // And the channel goes on: a payment each way.
        a_payment_each_way(&mut ldk, &mut link, i);
    }
}
