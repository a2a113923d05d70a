//! A paychan node and a live LDK node over TCP on 127.0.0.1: the BOLT 8 handshake and `init`,
//! LDK opens a channel to paychan, pays a BOLT 11 invoice paychan made, and paychan settles it
//! after checking the onion. Run with `cargo run --example ldk_peer`.
//!
//! The LDK node (its `ChannelManager` and `PeerManager` with in-memory components) and the
//! socket plumbing are the test harness in `tests/ldk/mod.rs`; everything paychan does is here.

#[path = "../tests/ldk/mod.rs"]
mod ldk;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::secp256k1::SecretKey;
use ldk::{funding_tx, Ldk, Link};
use lightning::events::Event as LdkEvent;
use lightning::ln::channelmanager::{PaymentId, Retry};
use lightning::routing::router::RouteParametersConfig;
use paychan::core::commitment::ChannelType;
use paychan::core::PaymentPreimage;
use paychan::lightning::{Event, Side};
use paychan::network::features::Feature;
use paychan::network::invoice::{create_invoice, Currency, InvoiceRequest};
use paychan::network::mpp::{Collected, MppCollector};
use paychan::network::noise::{InMemoryNodeSigner, NodeSigner};
use paychan::network::peer::PeerEvent;
use paychan::network::receive::{receive_part, ReceivedHtlc};

fn main() {
    let node_secret = SecretKey::from_slice(&[0x42; 32]).unwrap();
    let mut ldk = Ldk::new(1, ldk::ldk_config(false));
    // paychan dials LDK: Handshake (acts one to three), then a Peer sends and checks `init`.
    let mut link = Link::paychan_dials(&ldk, InMemoryNodeSigner::new(node_secret), 3);
    link.pc.config = ldk::pc_config(ChannelType::StaticRemoteKey);
    let Some(PeerEvent::Ready { features }) = link.events.pop_front() else { panic!("no init") };
    let anchors = features.supports(Feature::AnchorsZeroFeeHtlc);
    println!("connected to LDK {} (anchors offered: {anchors})", ldk.node_id());

    // LDK opens 1,000,000 sat to paychan; paychan's Channel::accept answers its open_channel.
    let pc_id = link.pc_node.node_id();
    ldk.manager.create_channel(pc_id, 1_000_000, 0, 0, None, None).unwrap();
    link.pump(&ldk);
    let Some(LdkEvent::FundingGenerationReady { temporary_channel_id, output_script, .. }) = ldk.events().pop() else {
        panic!("LDK did not ask for funding")
    };
    let funding = funding_tx(output_script, bitcoin::Amount::from_sat(1_000_000), 1);
    ldk.manager.funding_transaction_generated(temporary_channel_id, pc_id, funding.clone()).unwrap();
    link.pump(&ldk);
    ldk.mine(std::slice::from_ref(&funding));
    let ready = link.pc.mine(std::slice::from_ref(&funding));
    link.send_all(&ldk, &ready);
    link.pump(&ldk);
    let _ = ldk.events();
    println!("channel {:?} ready", link.pc.channels[0].ch.channel_id());

    // paychan's invoice, signed with its node key; LDK pays it.
    let preimage = PaymentPreimage([0x99; 32]);
    let secret = [0x33; 32];
    let request = InvoiceRequest {
        currency: Currency::Regtest,
        amount_msat: Some(25_000_000),
        payment_hash: preimage.hash().0,
        payment_secret: secret,
        description: "coffee".into(),
        created_at: SystemTime::now().duration_since(UNIX_EPOCH).unwrap(),
        expiry: Duration::from_secs(3_600),
        min_final_cltv_expiry_delta: 40,
        route_hints: vec![],
    };
    let invoice = create_invoice(&request, &link.pc_node).unwrap();
    println!("invoice: {invoice}");
    let config = RouteParametersConfig::default();
    ldk.manager.pay_for_bolt11_invoice(&invoice, PaymentId([1; 32]), None, config, Retry::Attempts(0)).unwrap();
    link.pump(&ldk);

    // The channel reports each HTLC once committed; paychan checks its onion and hands it to a
    // collector, since the invoice advertises `basic_mpp` and LDK may split the payment. The parts
    // are settled together once they add up; anything refused is failed back as BOLT #4 says.
    let mut collector = MppCollector::new(20);
    for e in link.pc.events(0) {
        let Event::HtlcReceived { id, amount, payment_hash, cltv_expiry, onion: Some(onion) } = e else { continue };
        let htlc = ReceivedHtlc { onion: &onion, payment_hash, amount, cltv_expiry };
        let part = match receive_part(&htlc, &node_secret, Some(&secret), 40, link.pc.tip) {
            Ok(part) => part,
            Err(fail) => {
                let msgs = link.pc.command(0, |ch, _| fail.apply(ch, id).unwrap());
                link.send_all(&ldk, &msgs);
                continue;
            }
        };
        println!("received {amount:?} of a {} msat payment", part.total_msat());
        match collector.offer(id, part, request.amount_msat, link.pc.tip) {
            Collected::Complete { parts, received_msat, .. } => {
                println!("{} part(s), {received_msat} msat: settling", parts.len());
                for id in parts {
                    let msgs = link.pc.command(0, |ch, _| ch.fulfill_htlc(id, preimage).unwrap());
                    link.send_all(&ldk, &msgs);
                }
            }
            Collected::Refused(refused) => {
                for (id, fail) in refused {
                    let msgs = link.pc.command(0, |ch, _| fail.apply(ch, id).unwrap());
                    link.send_all(&ldk, &msgs);
                }
            }
            Collected::Held { .. } | Collected::AlreadyHeld => continue,
        }
        let msgs = link.pc.command(0, |ch, s| ch.commit(s).unwrap());
        link.send_all(&ldk, &msgs);
    }
    link.pump(&ldk);
    let paid = ldk.events().iter().any(|e| matches!(e, LdkEvent::PaymentSent { .. }));
    link.pump(&ldk);
    println!(
        "LDK sees the payment sent: {paid}; paychan's balance: {:?}",
        link.pc.channels[0].ch.balances(Side::Holder)
    );
    assert!(paid);
}
