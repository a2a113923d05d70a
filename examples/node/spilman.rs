//! The Spilman channel: Alice pays, Bob receives and closes with the last payment.
//!
//! Bob (the payee) listens and sends his `Offer` on every connection; Alice (the payer) funds
//! the channel from it and sends `Open` with the first payment, then pays one payment at a time.
//! One thing the channel alone cannot resend after a crash: the payer's `Open` (it carries the
//! funding transaction and the first payment). If Alice crashes after persisting her funded
//! state but before Bob received `Open`, a reestablish cannot help (Bob has no channel yet), so
//! she keeps the `Open` in her outbox, written in the same SQLite transaction as the snapshot
//! that goes with it, and sends it again on reconnection until Bob acknowledges a payment.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bitcoin::Amount;
use paychan::core::BlockHeight;
use paychan::driver::{Driver, Transport};
use paychan::driving::{Action, ChainTip, RestoreCheck};
use paychan::spilman::{self, Msg, Payee, PayeeConfig, Payer, PayerConfig, Variant};

use crate::chain::{poll, ChainClient};
use crate::store::Db;
use crate::transport::Wire;
use crate::{apply, idle, signer_for, write_addr, Error, Node, FAUCET, FUNDING_FEE};

const LAYER: &str = "spilman";
/// The channel keys' index (see [`Node::new_signer`]).
const KEY_INDEX: u64 = 0;
/// The channel's capacity.
const CAPACITY: Amount = Amount::from_sat(100_000);
/// The first payment, sent with `Open`.
const FIRST_PAYMENT: Amount = Amount::from_sat(2_000);
/// The fee of the payment transaction that closes the channel (paid by the payee).
const PAYMENT_FEE: Amount = Amount::from_sat(1_000);

type D = Driver<Db, Wire<Msg>, ChainClient>;

/// What this layer leaves each wallet: Alice her coin minus the funding fee and what she paid,
/// Bob what he was paid minus the close's fee.
pub fn owed(payments: u64, amount: Amount) -> (Amount, Amount) {
    let to_payee = FIRST_PAYMENT + amount * payments;
    (FAUCET - FUNDING_FEE - to_payee, to_payee - PAYMENT_FEE)
}

/// A refused peer message: ignored, or the connection dropped (the reestablish on the next one
/// resynchronises).
fn refused(d: &mut D, e: spilman::PeerError, who: &str) {
    eprintln!("{who}: spilman message refused: {e}");
    if e.action != Action::Ignore {
        d.transport_mut().disconnect();
    }
}

/// Bob: offers a channel, takes payments, closes with the best one when Alice asks (or when she
/// lost her state).
pub fn run_payee(node: &Node) -> Result<(), Error> {
    let mut d: D = node.driver(LAYER, Wire::new())?;
    let height = d.chain_mut().tip()?;
    let (mut payee, signer) = match d.storage().snapshot()? {
        Some((update_id, bytes)) => {
            let check = RestoreCheck { channel_id: None, min_update_id: update_id };
            let signer = signer_for(node, Payee::restore(&bytes, check)?.key_identity())?;
            (Payee::restore_with_signer(&bytes, check, &signer)?, signer)
        }
        None => {
            let signer = node.new_signer(KEY_INDEX);
            let config = PayeeConfig {
                variant: Variant::Cltv,
                payee_script: node.wallet().script(),
                expiry: BlockHeight(height + 144 * 7),
                min_first_payment: FIRST_PAYMENT,
                dust_limit: Amount::from_sat(546),
                payment_fee: PAYMENT_FEE,
                close_margin: 36,
                htlc_min_blocks: 24,
                min_depth: 0,
                claim_fee: Amount::from_sat(300),
            };
            let (payee, mut fx) = Payee::new(config, &signer);
            // Persist the payee before anyone sees its offer; the offer itself is sent on each
            // connection below.
            fx.send.clear();
            d.transport_mut().ids = Some((payee.temporary_channel_id(), None));
            apply(&mut d, fx, node.who)?;
            (payee, signer)
        }
    };
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    write_addr(&node.addr_file(LAYER), &listener)?;
    while !payee.is_closed() {
        d.transport_mut().ids = Some((payee.temporary_channel_id(), payee.channel_id()));
        poll(&mut d, &signer, node.wallet_seed(), node.who, |e| payee.handle_chain(e, &signer))?;
        let tip = ChainTip::at(d.chain().height);
        if let Ok((stream, _)) = listener.accept() {
            stream.set_nonblocking(false)?;
            d.transport_mut().connect(stream)?;
            let offer = payee.address(Msg::Offer(payee.offer()));
            let _ = d.transport_mut().send_to(offer.channel_id, offer.msg);
            if payee.channel_id().is_some() {
                let _ = d.transport_mut().send(&payee.reestablish());
            }
        }
        while let Some(m) = d.transport_mut().receive() {
            match payee.handle_addressed(m, &signer, tip) {
                Ok(fx) => {
                    d.transport_mut().ids = Some((payee.temporary_channel_id(), payee.channel_id()));
                    let events = apply(&mut d, fx, node.who)?;
                    if events.contains(&spilman::Event::CounterpartyLostState) {
                        // The payer lost state: it will sign nothing new. Close with the best
                        // payment we hold.
                        let fx = payee.close(&signer)?;
                        apply(&mut d, fx, node.who)?;
                    }
                }
                Err(e) => refused(&mut d, e, node.who),
            }
        }
        if !d.transport().is_connected() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    println!("{}: spilman closed, received {} sat", node.who, payee.received().to_sat());
    Ok(())
}

/// Alice: takes Bob's offer, funds the channel, pays `payments` times, asks Bob to close.
pub fn run_payer(node: &Node) -> Result<(), Error> {
    let config = PayerConfig {
        capacity: CAPACITY,
        payer_script: node.wallet().script(),
        refund_fee: Amount::from_sat(300),
        claim_fee: Amount::from_sat(300),
        first_payment: FIRST_PAYMENT,
        max_lifetime: 144 * 30,
    };
    let mut d: D = node.driver(LAYER, Wire::new())?;
    let (mut payer, signer) = match d.storage().snapshot()? {
        Some((update_id, bytes)) => {
            let check = RestoreCheck { channel_id: None, min_update_id: update_id };
            let signer = signer_for(node, Payer::restore(&bytes, check)?.key_identity())?;
            (Some(Payer::restore_with_signer(&bytes, check, &signer)?), signer)
        }
        None => (None, node.new_signer(KEY_INDEX)),
    };
    let mut open: Option<Msg> = d.storage().outbox()?.map(|b| Msg::decode(&b)).transpose()?;
    if let Some(Msg::Open(o)) = &open {
        // We may have crashed before broadcasting it: harmless if it is known.
        paychan::driver::Chain::broadcast(d.chain_mut(), &o.funding_tx);
    }
    let mut close_requested = false;
    let mut last_connect = Instant::now() - Duration::from_secs(1);
    loop {
        if let Some(p) = payer.as_mut() {
            d.transport_mut().ids = Some((p.temporary_channel_id(), p.channel_id()));
            poll(&mut d, &signer, node.wallet_seed(), node.who, |e| p.handle_chain(e, &signer))?;
            if p.is_closed() {
                break;
            }
        }
        let tip = ChainTip::at(if payer.is_some() { d.chain().height } else { d.chain_mut().tip()? });
        if !d.transport().is_connected() && last_connect.elapsed() > Duration::from_millis(20) {
            last_connect = Instant::now();
            let addr: Option<SocketAddr> =
                std::fs::read_to_string(node.addr_file(LAYER)).ok().and_then(|a| a.parse().ok());
            if let Some(stream) = addr.and_then(|a| TcpStream::connect_timeout(&a, Duration::from_millis(200)).ok()) {
                d.transport_mut().connect(stream)?;
                close_requested = false;
                if let Some(p) = &payer {
                    let _ = d.transport_mut().send(&p.reestablish());
                }
            }
        }
        while let Some(m) = d.transport_mut().receive() {
            match (m.msg, payer.as_mut()) {
                (Msg::Offer(offer), None) => {
                    // First contact: take the offer, fund the channel from the wallet. The
                    // payer's first effects ask the wallet for the funding output (the crate's
                    // one funding flow). Their snapshot (a payer waiting for funds, nothing sent
                    // yet) is not kept: after a crash here the node simply opens again.
                    let (mut p, opened) = Payer::open(offer, config.clone(), &signer, tip)?;
                    let request = opened.funding.ok_or("no funding request")?;
                    let funding = node.funding_tx(d.chain_mut(), LAYER, request.output)?;
                    let fx = p.fund(funding, &signer)?;
                    // Keep `Open` in the outbox, written with the funded snapshot.
                    let o = fx.send.iter().find(|m| matches!(m, Msg::Open(_))).cloned();
                    d.storage_mut().outbox = o.as_ref().map(Msg::encode);
                    open = o;
                    d.transport_mut().ids = Some((p.temporary_channel_id(), p.channel_id()));
                    apply(&mut d, fx, node.who)?;
                    payer = Some(p);
                }
                (Msg::Offer(_), Some(p)) => {
                    if p.acknowledged() == 0 {
                        if let Some(o) = &open {
                            let _ = d.transport_mut().send(o);
                        }
                    }
                }
                (msg, Some(p)) => {
                    let addressed = paychan::core::wire::Addressed { channel_id: m.channel_id, msg };
                    match p.handle_addressed(addressed, &signer, tip) {
                        Ok(fx) => {
                            apply(&mut d, fx, node.who)?;
                        }
                        Err(e) => refused(&mut d, e, node.who),
                    }
                }
                (_, None) => {}
            }
        }
        let Some(p) = payer.as_mut() else { continue };
        // A payer whose data proved older than what it signed (a restored backup) signs nothing
        // new: the payee closes with the newest payment it holds; wait for that close.
        if !d.transport().is_connected() || p.acknowledged() < p.payment_number() || p.has_lost_state() {
            idle();
            continue;
        }
        // One payment in flight at a time; the payment number says how many were made, so a
        // restarted payer never pays twice.
        if p.payment_number() <= node.payments {
            let fx = p.pay(node.amount, &signer)?;
            apply(&mut d, fx, node.who)?;
        } else if !close_requested {
            close_requested = true;
            let fx = p.request_close()?;
            apply(&mut d, fx, node.who)?;
        } else {
            idle();
        }
    }
    println!("{}: spilman closed, paid {} sat", node.who, payer.map_or(0, |p| p.state().to_payee.to_sat()));
    Ok(())
}
