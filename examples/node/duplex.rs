//! The duplex (Decker–Wattenhofer) channel: Alice opens and funds it, pays Bob, resets the
//! tree (the leaf channels are re-balanced on a new branch), Bob pays back, and Bob proposes
//! the cooperative close (one transaction paying both balances to the satoshi, no fee: a
//! pay-to-anchor output lets whoever wants it confirmed add one by CPFP).
//!
//! Messages are addressed by channel id ([`paychan::core::wire::Addressed`]); a message for
//! another channel is dropped, as a node with many channels would route it elsewhere.
//!
//! After a restart: a channel still being set up (no fully signed branch yet) is forgotten and
//! opened again (the same keys give the same temporary id and, from the same coin, the same
//! funding transaction); Bob replaces his channel by a new `Open` unless its funding confirmed.
//! Alice keeps her signed funding transaction in her outbox and broadcasts it again while it
//! has not confirmed once the branch is signed (the channel broadcasts it once, then forgets it).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bitcoin::consensus::encode::{deserialize, serialize};
use bitcoin::{Amount, Transaction};
use paychan::driver::{Chain as _, Driver, Transport};
use paychan::driving::{Action, ChainTip, RestoreCheck};
use paychan::duplex::{self, Channel, CommandError, Msg, Params, Phase, Role, Terms};

use crate::chain::{poll, ChainClient};
use crate::store::Db;
use crate::transport::Wire;
use crate::{apply, idle, signer_for, write_addr, Error, Node, FAUCET, FUNDING_FEE};

const LAYER: &str = "duplex";
/// The channel keys' index (see [`Node::new_signer`]).
const KEY_INDEX: u64 = 1;
const CAPACITY: Amount = Amount::from_sat(400_000);
/// Bob's balance at the start (a gift from Alice).
const PUSH: Amount = Amount::from_sat(50_000);
/// Each of Alice's payments (the first in a fresh leaf must cover the payment fee plus dust).
const PAY: Amount = Amount::from_sat(1_000);
/// Each of Bob's payments back, after the reset.
const BACK: Amount = Amount::from_sat(900);

type D = Driver<Db, Wire<Msg>, ChainClient>;

/// How many times Bob pays back.
fn payments_back(payments: u64) -> u64 {
    payments / 2 + 1
}

/// What this layer leaves each wallet: the close pays both balances exactly (no fee), so Alice
/// gets her coin back minus the funding fee, the push and the net of the payments; Bob the rest.
pub fn owed(payments: u64) -> (Amount, Amount) {
    let to_bob = PUSH + PAY * payments - BACK * payments_back(payments);
    (FAUCET - FUNDING_FEE - to_bob, to_bob)
}

fn terms() -> Result<Terms, Error> {
    Ok(Terms {
        params: Params::uniform(3, 3, 144, 144)?,
        capacity: CAPACITY,
        push: PUSH,
        payment_fee: Amount::from_sat(300),
        refund_fee: Amount::from_sat(300),
        claim_fee: Amount::from_sat(300),
        dust_limit: Amount::from_sat(546),
        confirm_blocks: 6,
        reorg_blocks: 6,
        htlc_grace_blocks: 6,
        max_htlc_expiry_delta: 2_016,
        reset_warning: 2,
        funding_depth: 7,
    })
}

/// Whether the channel is still being set up: nothing is fully signed, it can be forgotten.
fn in_setup(ch: &Channel) -> bool {
    matches!(
        ch.phase(),
        Phase::AwaitingAccept | Phase::AwaitingFunding | Phase::AwaitingFundingCreated | Phase::AwaitingFundingSigned
    )
}

/// Whether a reset completed (or is under way): the tree's counter moved.
fn reset_done(ch: &Channel) -> bool {
    ch.resets_left() < ch.params().resets()
}

/// Sets the ids the transport addresses the channel's messages with, then applies `fx`.
fn apply_for(d: &mut D, ch: &Channel, fx: duplex::Effects, who: &str) -> Result<Vec<duplex::Event>, Error> {
    d.transport_mut().ids = Some((ch.temporary_channel_id(), ch.channel_id()));
    apply(d, fx, who)
}

/// A command refused for a passing reason (a reset or a close under way, a payment not yet
/// acknowledged): try again on a later turn. Anything else is an error.
fn later(r: Result<duplex::Effects, CommandError>) -> Result<Option<duplex::Effects>, Error> {
    match r {
        Ok(fx) => Ok(Some(fx)),
        Err(
            CommandError::ResetInProgress
            | CommandError::NotQuiescent
            | CommandError::WrongPhase
            | CommandError::FundingNotDeep,
        ) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Either side: Alice dials and opens, Bob listens and accepts.
pub fn run(node: &Node, role: Role) -> Result<(), Error> {
    let alice = role == Role::Initiator;
    let mut d: D = node.driver(LAYER, Wire::new())?;
    let (mut ch, signer) = match d.storage().snapshot()? {
        Some((update_id, bytes)) => {
            let check = RestoreCheck { channel_id: None, min_update_id: update_id };
            let signer = signer_for(node, Channel::restore(&bytes, check)?.key_identity())?;
            let ch = Channel::restore_with_signer(&bytes, check, &signer)?;
            (Some(ch).filter(|c| !in_setup(c)), signer)
        }
        None => (None, node.new_signer(KEY_INDEX)),
    };
    let mut funding: Option<Transaction> = d.storage().outbox()?.map(|b| deserialize(&b)).transpose()?;
    let mut funding_checked = false;
    let listener = if alice {
        None
    } else {
        let l = TcpListener::bind("127.0.0.1:0")?;
        l.set_nonblocking(true)?;
        write_addr(&node.addr_file(LAYER), &l)?;
        Some(l)
    };
    let mut last_connect = Instant::now() - Duration::from_secs(1);
    loop {
        let tip = match ch.as_mut() {
            Some(c) => {
                d.transport_mut().ids = Some((c.temporary_channel_id(), c.channel_id()));
                poll(&mut d, &signer, node.wallet_seed(), node.who, |e| c.handle_chain(e, &signer))?;
                if c.phase() == Phase::Closed {
                    break;
                }
                ChainTip::at(d.chain().height)
            }
            None => ChainTip::at(d.chain_mut().tip()?),
        };
        // Alice's funding transaction, again, if the branch is signed but it never confirmed.
        if let (Some(c), Some(tx), false) = (&ch, &funding, funding_checked) {
            if !in_setup(c) && Some(tx.compute_txid()) == c.funding_outpoint().map(|o| o.txid) {
                funding_checked = true;
                if !d.chain().seen.contains(&tx.compute_txid()) {
                    d.chain_mut().broadcast(tx);
                }
            }
        }
        // Connections: on each new one, the channel's reestablish first (or a new `Open`).
        if let Some(l) = &listener {
            if let Ok((stream, _)) = l.accept() {
                stream.set_nonblocking(false)?;
                d.transport_mut().connect(stream)?;
                // A channel still being set up is forgotten on a new connection: opened again.
                if ch.as_ref().is_some_and(in_setup) {
                    ch = None;
                }
                if let Some(c) = &ch {
                    let _ = d.transport_mut().send(&c.reestablish());
                }
            }
        } else if !d.transport().is_connected() && last_connect.elapsed() > Duration::from_millis(20) {
            last_connect = Instant::now();
            let addr: Option<SocketAddr> =
                std::fs::read_to_string(node.addr_file(LAYER)).ok().and_then(|a| a.parse().ok());
            if let Some(stream) = addr.and_then(|a| TcpStream::connect_timeout(&a, Duration::from_millis(200)).ok()) {
                d.transport_mut().connect(stream)?;
                if ch.as_ref().is_some_and(in_setup) {
                    ch = None;
                }
                match &ch {
                    Some(c) => {
                        let _ = d.transport_mut().send(&c.reestablish());
                    }
                    None => {
                        let (c, fx) = Channel::open(terms()?, node.wallet().script(), &signer, tip)?;
                        apply_for(&mut d, &c, fx, node.who)?;
                        ch = Some(c);
                    }
                }
            }
        }
        while let Some(m) = d.transport_mut().receive() {
            if let (Msg::Open(open), false) = (&m.msg, alice) {
                let replaceable = ch.as_ref().is_none_or(|c| {
                    in_setup(c) || c.funding_outpoint().is_some_and(|o| !d.chain().seen.contains(&o.txid))
                });
                if replaceable {
                    match Channel::accept(open.clone(), node.wallet().script(), &signer, tip) {
                        Ok((c, fx)) => {
                            apply_for(&mut d, &c, fx, node.who)?;
                            ch = Some(c);
                        }
                        Err(e) => eprintln!("{}: open refused: {e}", node.who),
                    }
                    continue;
                }
            }
            let Some(c) = ch.as_mut() else { continue };
            if !m.is_for(c.temporary_channel_id(), c.channel_id()) {
                continue; // For a channel we do not have (a forgotten setup): dropped.
            }
            match c.handle_addressed(m, &signer, tip) {
                Ok(fx) => {
                    let events = apply_for(&mut d, c, fx, node.who)?;
                    if events.contains(&duplex::Event::CounterpartyLostState) {
                        let fx = c.force_close(&signer);
                        apply_for(&mut d, c, fx, node.who)?;
                    }
                }
                Err(e) => {
                    eprintln!("{}: duplex message refused: {e}", node.who);
                    if e.action != Action::Ignore {
                        d.transport_mut().disconnect();
                    }
                }
            }
        }
        let Some(c) = ch.as_mut() else {
            idle();
            continue;
        };
        // Alice funds the channel when it asks (the crate's one funding flow); the wallet keeps
        // the signed transaction in its outbox, written with the channel's next update.
        if let Some(request) = c.funding_request() {
            let tx = node.funding_tx(d.chain_mut(), LAYER, request.output)?;
            d.storage_mut().outbox = Some(serialize(&tx));
            let fx = c.fund(tx.clone(), &signer)?;
            apply_for(&mut d, c, fx, node.who)?;
            funding = Some(tx);
            continue;
        }
        if !d.transport().is_connected() || c.phase() != Phase::Open || c.is_resetting() {
            idle();
            continue;
        }
        // The payments. Each side counts its own from its leaf channel: what it paid there.
        let paid = c.leaf_state(role).to_payee;
        let fx = if alice && !reset_done(c) {
            if paid < PAY * node.payments {
                later(c.pay(PAY, &signer))?
            } else {
                later(c.reset(&signer, tip))?
            }
        } else if !alice && reset_done(c) {
            if paid < BACK * payments_back(node.payments) {
                later(c.pay(BACK, &signer))?
            } else {
                later(c.close(&signer))?
            }
        } else {
            None
        };
        match fx {
            Some(fx) => {
                apply_for(&mut d, c, fx, node.who)?;
            }
            None => idle(),
        }
    }
    println!("{}: duplex closed", node.who);
    Ok(())
}
