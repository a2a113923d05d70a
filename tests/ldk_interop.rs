//! The acceptance test of the network layer: a paychan node and a live LDK 0.2.7 node
//! (`PeerManager` + `ChannelManager`) over a real TCP socket on 127.0.0.1.

mod ldk;

use bitcoin::secp256k1::{Secp256k1, SecretKey};
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
    ldk_pays_paychan_with_hints(ldk, link, i, vec![]);
}

/// As [`ldk_pays_paychan`], the invoice carrying `route_hints`.
fn ldk_pays_paychan_with_hints(
    ldk: &mut Ldk,
    link: &mut Link,
    i: usize,
    route_hints: Vec<paychan::network::invoice::RouteHint>,
) {
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
        route_hints,
    };
    let invoice = create_invoice(&request, &link.pc_node).expect("invoice");
    // LDK reads the invoice from its text, as a wallet would.
    let invoice: lightning_invoice::Bolt11Invoice = invoice.to_string().parse().expect("LDK parses paychan's invoice");
    assert_eq!(invoice.route_hints(), request.route_hints, "the hints survive the encoding");
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
        keysend_preimage: None,
    };
    let session = SecretKey::from_slice(&[0x5e; 32]).unwrap();
    let (onion, _secrets) =
        build_onion(&Secp256k1::signing_only(), &[target.payee], &[payload.encode()], &session, &target.payment_hash)
            .expect("onion");
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
        keysend_preimage: None,
    };
    let session = SecretKey::from_slice(&[0x5f; 32]).unwrap();
    let (onion, secrets) =
        build_onion(&Secp256k1::signing_only(), &[target.payee], &[payload.encode()], &session, &target.payment_hash)
            .unwrap();
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
            keysend_preimage: None,
        };
        let session = SecretKey::from_slice(&[0x61; 32]).unwrap();
        let (onion, _) = build_onion(
            &Secp256k1::signing_only(),
            &[target.payee],
            &[payload.encode()],
            &session,
            &target.payment_hash,
        )
        .unwrap();
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

use bitcoin::{Amount, OutPoint};
use ldk::chain::{Sim, Who};
use lightning::sign::SpendableOutputDescriptor;
use paychan::core::commitment::FeeratePerKw;

/// LDK pays paychan's invoice and paychan holds the HTLC: it knows the preimage (its invoice) but
/// the connection drops before it fulfils. Returns paychan's HTLC id and the preimage.
fn ldk_pays_and_paychan_holds(ldk: &mut Ldk, link: &mut Link, i: usize, amount: u64, n: u8) -> (u64, PaymentPreimage) {
    let preimage = PaymentPreimage([n; 32]);
    let secret = [n ^ 0xff; 32];
    let request = InvoiceRequest {
        currency: Currency::Regtest,
        amount_msat: Some(amount),
        payment_hash: preimage.hash().0,
        payment_secret: secret,
        description: "held".into(),
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
            PaymentId([n; 32]),
            None,
            RouteParametersConfig::default(),
            Retry::Attempts(0),
        )
        .expect("LDK pays");
    link.pump(ldk);
    let got = received(link, i);
    let [(id, htlc_amount, hash, cltv_expiry, onion)] = &got[..] else { panic!("one HTLC: {got:?}") };
    let htlc = ReceivedHtlc { onion, payment_hash: *hash, amount: *htlc_amount, cltv_expiry: *cltv_expiry };
    receive_final(&htlc, &pc_secret(), &secret, 40, link.pc.tip).expect("final checks");
    (*id, preimage)
}

/// paychan offers an HTLC paying an invoice LDK made; the commitment dance completes. Returns
/// paychan's HTLC id.
fn paychan_offers(ldk: &mut Ldk, link: &mut Link, i: usize, amount: u64, session: u8) -> (u64, PaymentHash) {
    let params = Bolt11InvoiceParameters { amount_msats: Some(amount), ..Default::default() };
    let invoice = ldk.manager.create_bolt11_invoice(params).expect("LDK's invoice");
    let target = parse_invoice(&invoice.to_string(), Currency::Regtest, now()).expect("parse");
    let cltv = link.pc.tip + target.min_final_cltv_expiry_delta as u32 + 2;
    let payload = HopPayload::Final {
        amt_to_forward: amount,
        outgoing_cltv_value: cltv,
        payment_data: Some((target.payment_secret, amount)),
        payment_metadata: None,
        keysend_preimage: None,
    };
    let session = SecretKey::from_slice(&[session; 32]).unwrap();
    let (onion, _) =
        build_onion(&Secp256k1::signing_only(), &[target.payee], &[payload.encode()], &session, &target.payment_hash)
            .unwrap();
    let hash = PaymentHash(target.payment_hash);
    let mut id = 0;
    let msgs = link.pc.command(i, |ch, _| {
        let (got, fx) = ch.add_htlc(MilliSats::from_msat(amount), hash, cltv, onion).expect("add");
        id = got;
        fx
    });
    link.send_all(ldk, &msgs);
    let msgs = link.pc.command(i, |ch, s| ch.commit(s).expect("commit"));
    link.send_all(ldk, &msgs);
    link.pump(ldk);
    (id, hash)
}

fn descriptor_outpoint(d: &SpendableOutputDescriptor) -> (OutPoint, Amount) {
    match d {
        SpendableOutputDescriptor::StaticOutput { outpoint, output, .. } => {
            (outpoint.into_bitcoin_outpoint(), output.value)
        }
        SpendableOutputDescriptor::DelayedPaymentOutput(d) => (d.outpoint.into_bitcoin_outpoint(), d.output.value),
        SpendableOutputDescriptor::StaticPaymentOutput(d) => (d.outpoint.into_bitcoin_outpoint(), d.output.value),
    }
}

const H_IN: u64 = 50_000;
const H_CLAIMED: u64 = 20_000;
const H_OUT: u64 = 30_000;

/// A force close with three HTLCs in flight, by `closer`, resolved on the simulated chain by both
/// nodes: LDK → paychan `H_IN` (paychan knows the preimage: claimed on chain), paychan → LDK
/// `H_CLAIMED` (LDK claims it on chain after the close: paychan learns the preimage from the
/// witness) and `H_OUT` (LDK never looks at it: it times out back to paychan). Every
/// transaction passes Core's interpreter; paychan's sweeps add up to what it is owed to the
/// satoshi, less the fees of its own claims.
fn force_close_resolved_on_chain(ct: ChannelType, paychan_closes: bool, seed: u8) {
    let (mut ldk, mut link) = connected(ct, seed);
    // LDK funds when paychan closes, paychan funds when LDK closes: both funders pay the
    // commitment fee once.
    let paychan_funds = !paychan_closes;
    let i = if paychan_funds { paychan_opens(&mut ldk, &mut link) } else { ldk_opens(&mut ldk, &mut link) };
    let _ = ldk.events();
    let funding = link.pc.channels[i].funding.clone().unwrap();
    let destination = payout_script(0xd1);
    let dest = destination.clone();
    link.pc.command(i, |ch, _| ch.set_sweep_policy(dest, FeeratePerKw(ldk::FEERATE)));

    let (in_id, in_pre) = ldk_pays_and_paychan_holds(&mut ldk, &mut link, i, H_IN * 1000, 0x90u8.wrapping_add(seed));
    let (claimed_id, claimed_hash) = paychan_offers(&mut ldk, &mut link, i, H_CLAIMED * 1000, 0x71);
    ldk.manager.process_pending_htlc_forwards();
    link.pump(&ldk);
    let claim_pre = ldk
        .events()
        .into_iter()
        .find_map(|e| match e {
            LdkEvent::PaymentClaimable { purpose, payment_hash, .. } if payment_hash.0 == claimed_hash.0 => {
                purpose.preimage()
            }
            _ => None,
        })
        .expect("LDK can claim");
    let (out_id, _) = paychan_offers(&mut ldk, &mut link, i, H_OUT * 1000, 0x72);
    assert_eq!(link.pc.channels[i].ch.htlcs().len(), 3);

    // The connection drops; paychan keeps the preimage of the HTLC it was paid.
    ldk.peers.socket_disconnected(&link.ldk_desc);
    link.pc.disconnected();
    link.pc.command(i, |ch, _| ch.provide_preimage(in_id, in_pre));
    let closer_side = if paychan_closes { Side::Holder } else { Side::Counterparty };
    let bal = link.pc.channels[i].ch.balances(closer_side);

    let mut sim = Sim::new(&ldk, &link, &funding, 5);
    let channel_id = lightning::ln::types::ChannelId(link.pc.channels[i].ch.channel_id().0);
    if paychan_closes {
        link.pc.command(i, |ch, s| ch.force_close(s).expect("force close"));
    } else {
        ldk.manager
            .force_close_broadcasting_latest_txn(&channel_id, &link.pc_node.node_id(), "test".into())
            .expect("LDK force-closes");
    }
    // LDK learns the preimage after the close: it claims on chain.
    ldk.manager.claim_funds(claim_pre);

    let funding_op = OutPoint { txid: funding.compute_txid(), vout: 0 };
    for _ in 0..800 {
        sim.block(&mut ldk, &mut link);
        let ldk_done = ldk.monitor.get_claimable_balances(&[]).is_empty();
        if link.pc.channels[i].ch.is_fully_resolved() && ldk_done {
            break;
        }
    }
    let c = &link.pc.channels[i];
    assert!(c.ch.is_fully_resolved(), "paychan left something unclaimed");
    assert!(
        ldk.monitor.get_claimable_balances(&[]).is_empty(),
        "LDK left something: {:?}",
        ldk.monitor.get_claimable_balances(&[])
    );
    let (who, commitment) = sim.spender(&funding_op).expect("the funding was spent");
    let commitment = commitment.clone();
    assert_eq!(who, if paychan_closes { Who::Paychan } else { Who::Ldk });
    match c.ch.closing_kind() {
        Some(paychan::lightning::onchain::ClosingKind::Holder(_)) => assert!(paychan_closes),
        Some(paychan::lightning::onchain::ClosingKind::Counterparty(_)) => assert!(!paychan_closes),
        other => panic!("{other:?}"),
    }

    // The commitment: paychan's balance, LDK's, three HTLCs (and two anchors).
    let ctxid = commitment.compute_txid();
    let fee = funding.output[0].value - commitment.output.iter().map(|o| o.value).sum::<Amount>();
    let anchors = if ct == ChannelType::AnchorsZeroFeeHtlc { Amount::from_sat(660) } else { Amount::ZERO };
    let funder_pays = fee + anchors;
    let pc_bal = bal.holder.to_amount_floor() - if paychan_funds { funder_pays } else { Amount::ZERO };
    let ldk_bal = bal.counterparty.to_amount_floor() - if paychan_funds { Amount::ZERO } else { funder_pays };
    let find = |v: Amount| {
        let at: Vec<u32> =
            (0..commitment.output.len() as u32).filter(|&n| commitment.output[n as usize].value == v).collect();
        assert_eq!(at.len(), 1, "one output of {v} in {commitment:?}");
        OutPoint { txid: ctxid, vout: at[0] }
    };
    let (pc_out, ldk_out) = (find(pc_bal), find(ldk_bal));
    let (h_in, h_claimed, h_out) =
        (find(Amount::from_sat(H_IN)), find(Amount::from_sat(H_CLAIMED)), find(Amount::from_sat(H_OUT)));

    // Who took each output.
    let taker = |op: &OutPoint| sim.spender(op).map(|(w, _)| w);
    assert_eq!(taker(&pc_out), Some(Who::Paychan), "paychan swept its balance");
    assert_eq!(taker(&h_in), Some(Who::Paychan), "paychan claimed H_IN with the preimage");
    assert_eq!(taker(&h_out), Some(Who::Paychan), "paychan took H_OUT back after its expiry");
    assert_eq!(taker(&h_claimed), Some(Who::Ldk), "LDK claimed H_CLAIMED with the preimage");

    // paychan's claims: they spend exactly its three outputs (and each other's), pay only the
    // sweep destination, and destination + fees = what it is owed, to the satoshi.
    let ours: Vec<&Transaction> =
        sim.mined_by(Who::Paychan).into_iter().filter(|t| t.compute_txid() != ctxid).collect();
    let txids: Vec<_> = ours.iter().map(|t| t.compute_txid()).collect();
    let mut external: Vec<OutPoint> = ours
        .iter()
        .flat_map(|t| t.input.iter().map(|i| i.previous_output))
        .filter(|op| !txids.contains(&op.txid))
        .collect();
    external.sort();
    let mut expected = vec![pc_out, h_in, h_out];
    expected.sort();
    assert_eq!(external, expected, "paychan's claims spend its outputs and nothing else");
    let owed = pc_bal + Amount::from_sat(H_IN + H_OUT);
    let mut swept = Amount::ZERO;
    let mut fees = Amount::ZERO;
    for t in &ours {
        let f = sim.fee(t);
        let floor = Amount::from_sat(t.weight().to_wu() * ldk::FEERATE as u64 / 1000);
        assert!(f <= floor * 12 / 10, "{} pays {f} for a floor of {floor}", t.compute_txid());
        fees += f;
        for (vout, o) in t.output.iter().enumerate() {
            let op = OutPoint { txid: t.compute_txid(), vout: vout as u32 };
            if o.script_pubkey == destination {
                assert!(sim.chain.is_unspent(&op));
                swept += o.value;
            } else {
                assert_eq!(taker(&op), Some(Who::Paychan), "an intermediate output paychan spends itself");
            }
        }
    }
    eprintln!(
        "{ct:?} closer={}: paychan owed {owed}, swept {swept}, fees {fees} over {} claims",
        if paychan_closes { "paychan" } else { "LDK" },
        ours.len()
    );
    assert_eq!(swept + fees, owed, "to the satoshi");

    // The HTLCs' outcomes as each side reports them.
    let ev = &c.events;
    assert!(
        ev.iter().any(|e| matches!(e, Event::HtlcFulfilled { id, preimage, .. }
        if *id == claimed_id && preimage.0 == claim_pre.0)),
        "paychan learnt LDK's preimage on chain: {ev:?}"
    );
    assert!(ev.iter().any(|e| matches!(e, Event::HtlcFailed { id, .. } if *id == out_id)), "{ev:?}");
    assert!(!ev.iter().any(|e| matches!(e, Event::HtlcFailed { id, .. } if *id == claimed_id)));
    let _ = in_id;
    assert!(
        sim.ldk_events.iter().any(|e| matches!(e, LdkEvent::PaymentSent { payment_preimage, .. }
            if payment_preimage.0 == in_pre.0)),
        "LDK learnt paychan's preimage on chain"
    );
    // LDK is told it may spend its balance and the HTLC it claimed (through its second stage or
    // directly).
    let spendable: Vec<(OutPoint, Amount)> = sim.ldk_spendable.iter().map(descriptor_outpoint).collect();
    assert!(spendable.contains(&(ldk_out, ldk_bal)), "LDK's balance {ldk_bal}: {spendable:?}");
    let claimed_by = sim.spender(&h_claimed).unwrap().1.compute_txid();
    assert!(
        spendable.iter().any(|(op, _)| op.txid == claimed_by || sim.spender(op).is_none()),
        "LDK's H_CLAIMED claim is spendable by LDK"
    );
}

#[test]
fn paychan_force_closes_static_remotekey_and_both_resolve_on_chain() {
    force_close_resolved_on_chain(ChannelType::StaticRemoteKey, true, 111);
}

#[test]
fn ldk_force_closes_static_remotekey_and_both_resolve_on_chain() {
    force_close_resolved_on_chain(ChannelType::StaticRemoteKey, false, 112);
}

#[test]
fn paychan_force_closes_anchors_and_both_resolve_on_chain() {
    force_close_resolved_on_chain(ChannelType::AnchorsZeroFeeHtlc, true, 113);
}

#[test]
fn ldk_force_closes_anchors_and_both_resolve_on_chain() {
    force_close_resolved_on_chain(ChannelType::AnchorsZeroFeeHtlc, false, 114);
}

use paychan::network::invoice::{InvoiceError, RouteHint, RouteHintHop, RoutingFees};

/// For both channel types: LDK pays a paychan invoice carrying a route hint for the private
/// channel (LDK's node → paychan over the channel's short channel id, as a wallet behind an LSP
/// gives it), and paychan's `parse_invoice` refuses LDK invoices it must not pay (expired,
/// another chain, a tampered signature) before an HTLC is offered; the channel then carries a
/// payment each way.
#[test]
fn route_hinted_invoices_and_refused_invoices_for_both_channel_types() {
    for (ct, seed) in [(ChannelType::StaticRemoteKey, 121), (ChannelType::AnchorsZeroFeeHtlc, 122)] {
        let (mut ldk, mut link) = connected(ct, seed);
        let i = ldk_opens(&mut ldk, &mut link);
        let _ = ldk.events();
        let id = link.pc.channels[i].ch.channel_id();
        let details = ldk.manager.list_channels().into_iter().find(|d| d.channel_id.0 == id.0).expect("channel");
        let scid = details.short_channel_id.expect("confirmed: a real short channel id");
        let hint = RouteHint(vec![RouteHintHop {
            src_node_id: ldk.node_id(),
            short_channel_id: scid,
            fees: RoutingFees { base_msat: 0, proportional_millionths: 0 },
            cltv_expiry_delta: 40,
            htlc_minimum_msat: None,
            htlc_maximum_msat: None,
        }]);
        let before = link.pc.channels[i].ch.balances(Side::Holder);
        ldk_pays_paychan_with_hints(&mut ldk, &mut link, i, vec![hint]);
        let after = link.pc.channels[i].ch.balances(Side::Holder);
        assert_eq!(after.holder.to_msat(), before.holder.to_msat() + 50_000_000, "{ct:?}");

        // LDK's invoices paychan must not pay.
        let params = Bolt11InvoiceParameters {
            amount_msats: Some(10_000_000),
            invoice_expiry_delta_secs: Some(600),
            ..Default::default()
        };
        let text = ldk.manager.create_bolt11_invoice(params).unwrap().to_string();
        let later = now() + Duration::from_secs(601);
        assert_eq!(parse_invoice(&text, Currency::Regtest, later), Err(InvoiceError::Expired));
        assert_eq!(parse_invoice(&text, Currency::Bitcoin, now()), Err(InvoiceError::WrongCurrency));
        // One character of the signature changed (before the checksum): the checksum or the
        // signature fails; either way it is refused.
        let mut tampered = text.clone().into_bytes();
        let at = tampered.len() - 10;
        tampered[at] = if tampered[at] == b'q' { b'p' } else { b'q' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(parse_invoice(&tampered, Currency::Regtest, now()), Err(InvoiceError::Parse));
        // Refused before anything was offered: the channel carries no HTLC.
        assert!(link.pc.channels[i].ch.htlcs().is_empty());
        a_payment_each_way(&mut ldk, &mut link, i);
    }
}

use lightning::events::PathFailure;
use lightning::ln::channelmanager::FailureCode;
use lightning::ln::channelmanager::RecipientOnionFields;
use lightning::routing::gossip::NetworkUpdate;
use lightning::routing::router::{Path, Route as LdkRoute, RouteHop};
use lightning::types::features::{ChannelFeatures, NodeFeatures};
use paychan::multihop::{FeePolicy, ForwardEvent, Forwarder, ForwarderConfig, SafetyMargins};

/// paychan's forwarding policy toward LDK B.
const FWD_BASE_MSAT: u64 = 1_000;
const FWD_PPM: u32 = 100;
const FWD_DELTA: u32 = 40;
/// What LDK B asks of its final hop (blocks).
const FINAL_DELTA: u32 = 80;

/// LDK A → paychan → LDK B: A opened to paychan, paychan opened to B, paychan forwards with a
/// `multihop::Forwarder` that reads its next hop from A's onion.
struct Triangle {
    a: Ldk,
    link_a: Link,
    b: Ldk,
    link_b: Link,
    fwd: Forwarder<paychan::lightning::Channel, paychan::lightning::Channel>,
    in_signer: paychan::core::sign::InMemorySigner,
    out_signer: paychan::core::sign::InMemorySigner,
    /// A's channel to paychan and paychan's to B, by LDK's short channel ids.
    scid_a: u64,
    scid_b: u64,
    events: Vec<ForwardEvent>,
}

impl Triangle {
    fn new(seed: u8) -> Triangle {
        let (mut a, mut link_a) = connected(ChannelType::StaticRemoteKey, seed);
        let i = ldk_opens(&mut a, &mut link_a);
        let (mut b, mut link_b) = connected(ChannelType::StaticRemoteKey, seed + 1);
        // A block first, so the two fundings confirm at different heights (distinct short ids).
        b.mine(&[]);
        let _ = link_b.pc.mine(&[]);
        let j = paychan_opens(&mut b, &mut link_b);
        a.mine(&[]);
        let msgs = link_a.pc.mine(&[]);
        link_a.send_all(&a, &msgs);
        link_a.pump(&a);
        let _ = (a.events(), b.events());
        // The two chains are at the same height: paychan's forwarder sees one tip.
        assert_eq!((link_a.pc.tip, a.headers.len()), (link_b.pc.tip, b.headers.len()));
        let scid = |ldk: &Ldk, id: [u8; 32]| {
            let d = ldk.manager.list_channels().into_iter().find(|d| d.channel_id.0 == id).expect("LDK's channel");
            d.short_channel_id.expect("confirmed")
        };
        let scid_a = scid(&a, link_a.pc.channels[i].ch.channel_id().0);
        let scid_b = scid(&b, link_b.pc.channels[j].ch.channel_id().0);
        // The forwarder takes both channels; the links hand it their channel messages.
        let incoming = link_a.pc.channels.remove(i);
        let outgoing = link_b.pc.channels.remove(j);
        link_a.divert = true;
        link_b.divert = true;
        let config = ForwarderConfig {
            margins: SafetyMargins::default(),
            fee: FeePolicy { base: MilliSats::from_msat(FWD_BASE_MSAT), proportional_millionths: FWD_PPM },
            cltv_expiry_delta: FWD_DELTA,
        };
        let tip = paychan::driving::ChainTip::at(link_a.pc.tip);
        let fwd =
            Forwarder::new(incoming.ch, outgoing.ch, config, tip).with_onions(std::sync::Arc::new(pc_node()), scid_b);
        Triangle {
            a,
            link_a,
            b,
            link_b,
            fwd,
            in_signer: incoming.signer,
            out_signer: outgoing.signer,
            scid_a,
            scid_b,
            events: vec![],
        }
    }

    /// Moves every message between the three nodes until all are quiet; both LDK nodes run their
    /// HTLC forwarding passes.
    fn run(&mut self) {
        let tip = paychan::driving::ChainTip::at(self.link_a.pc.tip);
        loop {
            self.a.manager.process_pending_htlc_forwards();
            self.b.manager.process_pending_htlc_forwards();
            self.link_a.pump(&self.a);
            self.link_b.pump(&self.b);
            if self.link_a.diverted.is_empty() && self.link_b.diverted.is_empty() {
                return;
            }
            while let Some(m) = self.link_a.diverted.pop_front() {
                let n = self.fwd.handle_incoming_message(m, &self.in_signer, &self.out_signer, tip).expect("from A");
                self.events.extend(n.events);
                self.link_a.send_all(&self.a, &n.incoming.send);
                self.link_b.send_all(&self.b, &n.outgoing.send);
            }
            while let Some(m) = self.link_b.diverted.pop_front() {
                let n = self.fwd.handle_outgoing_message(m, &self.in_signer, &self.out_signer, tip).expect("from B");
                self.events.extend(n.events);
                self.link_a.send_all(&self.a, &n.incoming.send);
                self.link_b.send_all(&self.b, &n.outgoing.send);
            }
        }
    }

    /// A pays `amount` to B over the fixed route A → paychan → B, giving paychan `fee`.
    fn pay(&mut self, amount: u64, fee: u64, id: u8) -> lightning::types::payment::PaymentHash {
        let (hash, secret) =
            self.b.manager.create_inbound_payment(Some(amount), 3_600, Some(FINAL_DELTA as u16)).expect("B's payment");
        let hop = |pubkey, node_features, short_channel_id, fee_msat, cltv_expiry_delta| RouteHop {
            pubkey,
            node_features,
            short_channel_id,
            channel_features: ChannelFeatures::empty(),
            fee_msat,
            cltv_expiry_delta,
            maybe_announced_channel: false,
        };
        let route = LdkRoute {
            paths: vec![Path {
                hops: vec![
                    hop(self.link_a.pc_node.node_id(), NodeFeatures::empty(), self.scid_a, fee, FWD_DELTA),
                    hop(self.b.node_id(), self.b.manager.node_features(), self.scid_b, amount, FINAL_DELTA),
                ],
                blinded_tail: None,
            }],
            route_params: None,
        };
        self.a
            .manager
            .send_payment_with_route(route, hash, RecipientOnionFields::secret_only(secret), PaymentId([id; 32]))
            .expect("A sends");
        self.run();
        hash
    }

    /// Each channel's balance as its holder sees it: A's, paychan's two, B's.
    fn balances(&self) -> [u64; 4] {
        let ldk_balance = |ldk: &Ldk, scid| {
            let d = ldk.manager.list_channels().into_iter().find(|d| d.short_channel_id == Some(scid)).unwrap();
            assert!(d.pending_outbound_htlcs.is_empty() && d.pending_inbound_htlcs.is_empty(), "{d:?}");
            d.outbound_capacity_msat + d.unspendable_punishment_reserve.unwrap_or(0) * 1_000
        };
        [
            ldk_balance(&self.a, self.scid_a),
            self.fwd.incoming().balances(Side::Holder).holder.to_msat(),
            self.fwd.outgoing().balances(Side::Holder).holder.to_msat(),
            ldk_balance(&self.b, self.scid_b),
        ]
    }
}

fn fee(amount: u64) -> u64 {
    FWD_BASE_MSAT + amount * u64::from(FWD_PPM) / 1_000_000
}

/// LDK pays LDK through paychan: the payment settles with paychan's exact fee; then B fails a
/// payment and A reads the failure as B's, through paychan's relay; then A pays
/// paychan one msat too little and reads `fee_insufficient` as paychan's, on paychan's channel
/// to B.
#[test]
fn ldk_pays_ldk_through_a_paychan_forwarder_from_the_onion() {
    let mut t = Triangle::new(71);
    let amount = 10_000_000;
    let (pc_in, pc_out) = (t.balances()[1], t.balances()[2]);

    // Success.
    let hash = t.pay(amount, fee(amount), 1);
    assert!(t.events.iter().any(|e| matches!(e, ForwardEvent::Forwarded { .. })), "{:?}", t.events);
    let claimable = t.b.events().into_iter().find_map(|e| match e {
        LdkEvent::PaymentClaimable { payment_hash, amount_msat, purpose, .. } => {
            Some((payment_hash, amount_msat, purpose))
        }
        _ => None,
    });
    let (h, got, purpose) = claimable.expect("B found its payment in the onion paychan peeled");
    assert_eq!((h, got), (hash, amount));
    t.b.manager.claim_funds(purpose.preimage().expect("B's preimage"));
    t.run();
    let fee_paid = t.a.events().into_iter().find_map(|e| match e {
        LdkEvent::PaymentSent { payment_hash, fee_paid_msat, .. } if payment_hash == hash => Some(fee_paid_msat),
        _ => None,
    });
    assert_eq!(fee_paid, Some(Some(fee(amount))), "A: sent, paying paychan's fee");
    assert!(t
        .b
        .events()
        .iter()
        .any(|e| matches!(e, LdkEvent::PaymentClaimed { amount_msat, .. } if *amount_msat == amount)));
    t.run();
    assert!(t.events.iter().any(|e| matches!(e, ForwardEvent::Settled { fee: f, .. } if f.to_msat() == fee(amount))));
    let [_, now_in, now_out, _] = t.balances();
    assert_eq!((now_in - pc_in, pc_out - now_out), (amount + fee(amount), amount), "paychan earned the fee exactly");
    let before = t.balances();

    // The recipient fails it (a temporary node failure): the failure reaches A through paychan,
    // which cannot read it, and A attributes it to B. (A failure no hop's HMAC verifies would
    // leave LDK nothing to blame: no network update, no channel.)
    let hash = t.pay(amount, fee(amount), 2);
    assert!(t.b.events().iter().any(|e| matches!(e, LdkEvent::PaymentClaimable { .. })));
    t.b.manager.fail_htlc_backwards_with_reason(&hash, FailureCode::TemporaryNodeFailure);
    t.run();
    // B reports the HTLC it failed back.
    assert!(t.b.events().iter().any(|e| matches!(e, LdkEvent::HTLCHandlingFailed { .. })));
    let events = t.a.events();
    let path_failed = events.iter().find_map(|e| match e {
        LdkEvent::PaymentPathFailed {
            payment_hash,
            payment_failed_permanently,
            short_channel_id,
            failure: PathFailure::OnPath { network_update },
            ..
        } if *payment_hash == hash => Some((*payment_failed_permanently, *short_channel_id, network_update.clone())),
        _ => None,
    });
    let update = Some(NetworkUpdate::NodeFailure { node_id: t.b.node_id(), is_permanent: false });
    assert_eq!(path_failed, Some((false, Some(t.scid_b), update)), "{events:?}");
    assert!(events.iter().any(|e| matches!(e, LdkEvent::PaymentFailed { payment_hash: Some(h), .. } if *h == hash)));
    assert!(t.events.iter().any(|e| matches!(e, ForwardEvent::FailedUpstream { .. })));
    t.run();
    assert_eq!(t.balances(), before, "nothing moved");

    // paychan refuses a fee one msat short: A reads `fee_insufficient` from paychan's hop.
    let hash = t.pay(amount, fee(amount) - 1, 3);
    assert!(!t.b.events().iter().any(|e| matches!(e, LdkEvent::PaymentClaimable { .. })), "nothing reached B");
    t.run();
    let events = t.a.events();
    let path_failed = events.iter().find_map(|e| match e {
        LdkEvent::PaymentPathFailed {
            payment_hash,
            payment_failed_permanently,
            short_channel_id,
            failure: PathFailure::OnPath { network_update },
            ..
        } if *payment_hash == hash => Some((*payment_failed_permanently, *short_channel_id, network_update.clone())),
        _ => None,
    });
    // An UPDATE failure from paychan: LDK blames paychan's outgoing channel, temporarily (with a
    // malformed failure it would have banned paychan's node instead).
    let update = Some(NetworkUpdate::ChannelFailure { short_channel_id: t.scid_b, is_permanent: false });
    assert_eq!(path_failed, Some((false, Some(t.scid_b), update)), "{events:?}");
    t.run();
    assert_eq!(t.balances(), before, "nothing moved");
}

use lightning::routing::router::{PaymentParameters, RouteParameters};
use paychan::network::receive::receive_keysend;

/// LDK sends a keysend (`send_spontaneous_payment`: no invoice, the preimage in the final
/// payload's TLV 5482373484); paychan decodes it, checks the preimage against the HTLC's hash
/// with `receive_keysend` and settles with it. LDK sees the payment sent with its own preimage,
/// and the balances move by the amount to the msat.
#[test]
fn ldk_sends_a_keysend_to_paychan() {
    let (mut ldk, mut link) = connected(ChannelType::AnchorsZeroFeeHtlc, 61);
    let i = ldk_opens(&mut ldk, &mut link);
    let _ = ldk.events();
    let before = link.pc.channels[i].ch.balances(Side::Holder);
    let amount = 25_000_000;
    let preimage = lightning::types::payment::PaymentPreimage([0x61; 32]);
    let params = PaymentParameters::for_keysend(link.pc_node.node_id(), 40, false);
    let hash = ldk
        .manager
        .send_spontaneous_payment(
            Some(preimage),
            RecipientOnionFields::spontaneous_empty(),
            PaymentId([0x61; 32]),
            RouteParameters::from_payment_params_and_value(params, amount),
            Retry::Attempts(0),
        )
        .expect("LDK sends the keysend");
    link.pump(&ldk);
    let got = received(&mut link, i);
    let [(id, htlc_amount, payment_hash, cltv_expiry, onion)] = &got[..] else { panic!("one HTLC: {got:?}") };
    assert_eq!((htlc_amount.to_msat(), payment_hash.0), (amount, hash.0));
    let htlc = ReceivedHtlc { onion, payment_hash: *payment_hash, amount: *htlc_amount, cltv_expiry: *cltv_expiry };
    let (hop, got_preimage) =
        receive_keysend(&htlc, &pc_secret(), 40, link.pc.tip).expect("LDK's keysend passes the final checks");
    assert_eq!(got_preimage, PaymentPreimage(preimage.0));
    assert!(matches!(hop, HopPayload::Final { amt_to_forward, .. } if amt_to_forward == amount));
    // The invoice path refuses it: paychan issued no invoice for this hash.
    assert!(receive_final(&htlc, &pc_secret(), &[0x33; 32], 40, link.pc.tip).is_err());
    let id = *id;
    let msgs = link.pc.command(i, |ch, _| ch.fulfill_htlc(id, got_preimage).expect("fulfill"));
    link.send_all(&ldk, &msgs);
    let msgs = link.pc.command(i, |ch, s| ch.commit(s).expect("commit"));
    link.send_all(&ldk, &msgs);
    link.pump(&ldk);
    let sent = ldk.events().into_iter().find_map(|e| match e {
        LdkEvent::PaymentSent { payment_preimage, fee_paid_msat, .. } => Some((payment_preimage, fee_paid_msat)),
        _ => None,
    });
    assert_eq!(sent, Some((preimage, Some(0))));
    link.pump(&ldk);
    assert!(link.pc.channels[i].ch.htlcs().is_empty());
    let after = link.pc.channels[i].ch.balances(Side::Holder);
    assert_eq!(after.holder.to_msat(), before.holder.to_msat() + amount);
    assert_eq!(after.counterparty.to_msat(), before.counterparty.to_msat() - amount);
}

use paychan::network::mpp::{Collected, MppCollector};
use paychan::network::receive::receive_part;

/// LDK pays a paychan invoice (which advertises `basic_mpp`) too large for either of its two
/// channels to paychan (paychan caps each at 100,000,000 msat in flight), so LDK splits it;
/// paychan checks each part with `receive_part`, holds the first in an `MppCollector` without
/// settling it, and settles both parts once they reach the invoice's total. LDK sees one
/// payment sent; paychan's two channels gain the total to the msat.
#[test]
fn ldk_pays_a_multi_part_payment_to_paychan_over_two_channels() {
    let (mut ldk, mut link) = connected(ChannelType::StaticRemoteKey, 62);
    link.pc.config.max_htlc_value_in_flight = MilliSats::from_msat(100_000_000);
    let channels = [ldk_opens(&mut ldk, &mut link), ldk_opens(&mut ldk, &mut link)];
    let _ = ldk.events();
    let holder = |link: &Link| -> u64 {
        channels.iter().map(|i| link.pc.channels[*i].ch.balances(Side::Holder).holder.to_msat()).sum()
    };
    let before = holder(&link);
    let preimage = PaymentPreimage([0x62; 32]);
    let secret = [0x36; 32];
    let amount = 150_000_000;
    let request = InvoiceRequest {
        currency: Currency::Regtest,
        amount_msat: Some(amount),
        payment_hash: preimage.hash().0,
        payment_secret: secret,
        description: "paychan in parts".into(),
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
            PaymentId([0x62; 32]),
            None,
            RouteParametersConfig::default(),
            Retry::Attempts(0),
        )
        .expect("LDK pays");
    link.pump(&ldk);
    let mut mpp = MppCollector::new(20);
    let mut complete = None;
    let mut parts = 0;
    for i in channels {
        for (id, htlc_amount, hash, cltv_expiry, onion) in received(&mut link, i) {
            assert!(htlc_amount.to_msat() <= 100_000_000, "LDK split the payment");
            parts += 1;
            let htlc = ReceivedHtlc { onion: &onion, payment_hash: hash, amount: htlc_amount, cltv_expiry };
            // The single-part path refuses a part; the multi-part path accepts it.
            assert!(receive_final(&htlc, &pc_secret(), &secret, 40, link.pc.tip).is_err());
            let part = receive_part(&htlc, &pc_secret(), Some(&secret), 40, link.pc.tip).expect("a valid part");
            assert_eq!(part.total_msat(), amount);
            match mpp.offer((i, id), part, Some(amount), link.pc.tip) {
                Collected::Held { .. } => assert!(complete.is_none()),
                Collected::Complete { parts, received_msat, .. } => complete = Some((parts, received_msat)),
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(parts, 2, "one part over each channel");
    let (to_settle, received_msat) = complete.expect("the parts add up");
    assert_eq!(received_msat, amount);
    for (i, id) in to_settle {
        let msgs = link.pc.command(i, |ch, _| ch.fulfill_htlc(id, preimage).expect("fulfill"));
        link.send_all(&ldk, &msgs);
        let msgs = link.pc.command(i, |ch, s| ch.commit(s).expect("commit"));
        link.send_all(&ldk, &msgs);
        link.pump(&ldk);
    }
    link.pump(&ldk);
    let sent = ldk.events().into_iter().find_map(|e| match e {
        LdkEvent::PaymentSent { payment_preimage, fee_paid_msat, .. } => Some((payment_preimage, fee_paid_msat)),
        _ => None,
    });
    assert_eq!(sent, Some((lightning::types::payment::PaymentPreimage(preimage.0), Some(0))));
    assert!(channels.iter().all(|i| link.pc.channels[*i].ch.htlcs().is_empty()));
    assert_eq!(holder(&link), before + amount);
}
