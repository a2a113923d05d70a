//! Hostile input to both sides of a Lightning channel, both channel types: every refused peer
//! message, `open_channel`, local command, snapshot or encoding gets a typed error, and the
//! refusing side's live state is byte-identical before and after (its snapshot bytes).
//!
//! Hostile messages are built from real ones (a live two-peer run) with one field changed, so
//! each is refused for the reason under test and not for an earlier one. The last part feeds
//! ~2,000 single-byte mutations of every message kind, whatever decodes, to the peer that received
//! the original, in the state it was in.

#[path = "../common/mod.rs"]
mod common;
mod local;
mod open;
mod phases;
mod reestablish;
mod snapshots;
mod updates;
mod wire;

use std::collections::VecDeque;

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::ecdsa::Signature;
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, WPubkeyHash, Witness};
use common::ln::{config, onion, onion_records, Pair, Peer, Rng};
use paychan::core::commitment::signatures::CommitmentSigError;
use paychan::core::commitment::{ChannelType, CommitmentNumber};
use paychan::core::encode::DecodeError;
use paychan::core::keys::{ChannelPubkeys, ChannelSecrets, PerCommitmentPoint, PerCommitmentSecret, Seed};
use paychan::core::sign::{InMemorySigner, SignRequest, SignatureError, Signer, SignerError};
use paychan::core::{BlockHeight, MilliSats, PaymentPreimage};
use paychan::driving::{Action, ChainEvent, ChainTip, ChannelId, RestoreCheck, RestoreError};
use paychan::lightning::msgs::{types, OpenChannel};
use paychan::lightning::{
    Channel, ChannelConfig, CommandError, Event, Misbehaviour, Msg, OpenError, OpenParams, PeerError, PenaltyRecord,
    Phase, Record, Side,
};

const TYPES: [ChannelType; 2] = [ChannelType::StaticRemoteKey, ChannelType::AnchorsZeroFeeHtlc];
const TIP: u32 = 1_000;
const CAPACITY: u64 = 1_000_000;
const PUSH: u64 = 200_000_000;
/// A channel id no channel here has.
const OTHER_ID: ChannelId = ChannelId([0x99; 32]);

/// Every message type number of [`Msg`].
const ALL_TYPES: [u16; 15] = [
    types::OPEN_CHANNEL,
    types::ACCEPT_CHANNEL,
    types::FUNDING_CREATED,
    types::FUNDING_SIGNED,
    types::CHANNEL_READY,
    types::SHUTDOWN,
    types::CLOSING_SIGNED,
    types::UPDATE_ADD_HTLC,
    types::UPDATE_FULFILL_HTLC,
    types::UPDATE_FAIL_HTLC,
    types::COMMITMENT_SIGNED,
    types::REVOKE_AND_ACK,
    types::UPDATE_FEE,
    types::UPDATE_FAIL_MALFORMED_HTLC,
    types::CHANNEL_REESTABLISH,
];

// ---------------------------------------------------------------------------------------------
// Harness: an opening step by step, a logging delivery loop, refusal checks.
// ---------------------------------------------------------------------------------------------

fn signer_a() -> InMemorySigner {
    InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([0xa0; 32]), 0))
}

fn signer_b() -> InMemorySigner {
    InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([0xb0; 32]), 0))
}

fn p2wpkh(n: u8) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]))
}

fn tip() -> ChainTip {
    ChainTip::at(TIP + 1)
}

/// A message as it was delivered, with its receiver's state just before.
#[derive(Clone)]
struct Delivered {
    msg: Msg,
    /// Whether b received it.
    to_b: bool,
    /// The receiver's state before; `None` for `open_channel` (taken by [`Channel::accept`]).
    receiver: Option<Channel>,
}

impl Delivered {
    fn signer(&self) -> InMemorySigner {
        if self.to_b {
            signer_b()
        } else {
            signer_a()
        }
    }
}

/// Delivers everything in both directions until quiet, logging each message; returns broadcasts.
fn run_logged(p: &mut Pair, log: &mut Vec<Delivered>) -> Vec<Transaction> {
    let mut out = Vec::new();
    loop {
        let mut progressed = false;
        while let Some(m) = p.to_b.pop_front() {
            log.push(Delivered { msg: m.clone(), to_b: true, receiver: Some(p.b.ch.clone()) });
            let fx = p.b.ch.handle_message(m, &p.b.signer, tip()).unwrap_or_else(|e| panic!("b refused: {e:?}"));
            out.extend(p.b.absorb_pub(fx, &mut p.to_a));
            progressed = true;
        }
        while let Some(m) = p.to_a.pop_front() {
            log.push(Delivered { msg: m.clone(), to_b: false, receiver: Some(p.a.ch.clone()) });
            let fx = p.a.ch.handle_message(m, &p.a.signer, tip()).unwrap_or_else(|e| panic!("a refused: {e:?}"));
            out.extend(p.a.absorb_pub(fx, &mut p.to_b));
            progressed = true;
        }
        if !progressed {
            return out;
        }
    }
}

fn new_peer(ch: Channel, signer: InMemorySigner) -> Peer {
    Peer { ch, signer, events: vec![], persisted: vec![], records: vec![] }
}

/// Opens a channel (a funds `capacity` sat and pushes `push_msat` to b) under the given
/// policies, logging every message of the opening; the channel ends `Normal`.
fn open_logged(
    cfg_a: ChannelConfig,
    cfg_b: ChannelConfig,
    capacity: u64,
    push_msat: u64,
    log: &mut Vec<Delivered>,
) -> Pair {
    let start = ChainTip::at(TIP);
    let params = OpenParams {
        config: cfg_a,
        temporary_channel_id: ChannelId([7; 32]),
        funding: Amount::from_sat(capacity),
        push: MilliSats::from_msat(push_msat),
        feerate_per_kw: 2_500,
    };
    let (cha, fx) = Channel::open(params, &signer_a(), start).expect("open");
    let Some(Msg::OpenChannel(open)) = fx.send.first().cloned() else { panic!("open_channel") };
    log.push(Delivered { msg: Msg::OpenChannel(open.clone()), to_b: true, receiver: None });
    let mut a = new_peer(cha, signer_a());
    a.absorb_pub(fx, &mut VecDeque::new());
    let (chb, fx) = Channel::accept(&open, cfg_b, &signer_b(), start).expect("accept");
    let mut b = new_peer(chb, signer_b());
    let mut to_a = VecDeque::new();
    b.absorb_pub(fx, &mut to_a);
    let placeholder = Transaction { version: Version::TWO, lock_time: LockTime::ZERO, input: vec![], output: vec![] };
    let mut p = Pair { a, b, to_b: VecDeque::new(), to_a, funding: placeholder, tip: TIP };
    run_logged(&mut p, log);
    let (script_pubkey, value) =
        p.a.take_events()
            .into_iter()
            .find_map(|e| match e {
                Event::FundingGenerationReady { script_pubkey, value } => Some((script_pubkey, value)),
                _ => None,
            })
            .expect("funding requested");
    let funding = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid: Txid::from_byte_array([3; 32]), vout: 0 },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut { value, script_pubkey }],
    };
    let fx = p.a.ch.funding_tx(funding.clone(), &p.a.signer).expect("funding tx");
    p.a.absorb_pub(fx, &mut p.to_b);
    assert_eq!(run_logged(&mut p, log), vec![funding.clone()], "funding broadcast after funding_signed");
    p.funding = funding.clone();
    p.tip += 1;
    let height = BlockHeight(p.tip);
    let fx = p.a.ch.handle_chain(ChainEvent::Confirmed { tx: &funding, height }, &p.a.signer);
    p.a.absorb_pub(fx, &mut p.to_b);
    let fx = p.b.ch.handle_chain(ChainEvent::Confirmed { tx: &funding, height }, &p.b.signer);
    p.b.absorb_pub(fx, &mut p.to_a);
    run_logged(&mut p, log);
    assert_eq!((p.a.ch.phase(), p.b.ch.phase()), (Phase::Normal, Phase::Normal));
    p.a.take_events();
    p.b.take_events();
    p
}

/// The first logged message of type `ty` (with its receiver).
fn logged(log: &[Delivered], ty: u16) -> Delivered {
    log.iter().find(|d| d.msg.type_number() == ty).unwrap_or_else(|| panic!("no message of type {ty}")).clone()
}

/// Feeds `msg` to a copy of `ch` and expects a refusal of `kind`, the channel unchanged to the
/// byte; then the connection is done: the next message is refused too, as `AfterRefusal`. `ch`
/// itself is left as it was, on a connection that refused nothing, so a test can go on with it.
#[track_caller]
fn refuse<S: Signer + ?Sized>(ch: &Channel, signer: &S, msg: Msg, kind: Misbehaviour) -> PeerError {
    let before = ch.snapshot();
    let shown = format!("{msg:?}");
    let mut probe = ch.clone();
    let err = match probe.handle_message(msg.clone(), signer, tip()) {
        Ok(fx) => panic!("accepted {shown}: {fx:?}"),
        Err(e) => e,
    };
    assert_eq!(err.kind, kind, "refusal of {shown}");
    assert!(probe.snapshot() == before, "refusing {shown} changed the state");
    if err.action != Action::Ignore && !matches!(msg, Msg::Error { .. }) {
        let again = probe.handle_message(msg, signer, tip()).expect_err("nothing after a refusal");
        assert_eq!((again.kind, again.action), (Misbehaviour::AfterRefusal, Action::Warn));
        assert!(probe.snapshot() == before);
    }
    err
}

/// Runs a local command and expects `expected`, the channel unchanged to the byte.
#[track_caller]
fn refuse_cmd<T: std::fmt::Debug>(
    ch: &mut Channel,
    expected: CommandError,
    f: impl FnOnce(&mut Channel) -> Result<T, CommandError>,
) {
    let before = ch.snapshot();
    let got = f(ch);
    assert_eq!(got.unwrap_err(), expected);
    assert!(ch.snapshot() == before, "a refused command changed the state");
}

/// A well-formed signature over an unrelated digest.
fn junk_sig(n: u8) -> Signature {
    let key = SecretKey::from_slice(&[n.max(1); 32]).expect("valid key");
    Secp256k1::signing_only().sign_ecdsa(&Message::from_digest([n; 32]), &key)
}

/// The secp256k1 curve order.
const CURVE_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xba, 0xae, 0xdc,
    0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
];

/// The same signature with `s` replaced by `n - s` (valid for libsecp256k1 only once normalised).
fn high_s(sig: &Signature) -> Signature {
    let mut compact = sig.serialize_compact();
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(CURVE_ORDER[i]) - i16::from(compact[32 + i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        compact[32 + i] = d as u8;
    }
    Signature::from_compact(&compact).expect("n - s is below n")
}

fn add_msg(channel_id: ChannelId, id: u64, amount_msat: u64, cltv_expiry: u32) -> Msg {
    Msg::UpdateAddHtlc {
        channel_id,
        id,
        amount_msat: MilliSats::from_msat(amount_msat),
        payment_hash: PaymentPreimage([id as u8 ^ 0x5a; 32]).hash(),
        cltv_expiry,
        onion_routing_packet: onion(),
    }
}

/// `from` offers `amount_msat` to the other side and the pair settles; returns the HTLC id.
fn add_and_settle(p: &mut Pair, from_a: bool, amount_msat: u64, pre: PaymentPreimage) -> u64 {
    let (peer, out) = if from_a { (&mut p.a, &mut p.to_b) } else { (&mut p.b, &mut p.to_a) };
    let (id, fx) = peer.ch.add_htlc(MilliSats::from_msat(amount_msat), pre.hash(), 2_000, onion()).expect("add");
    peer.absorb_pub(fx, out);
    p.settle();
    id
}

/// One payment a -> b, settled.
fn pay(p: &mut Pair, amount_msat: u64, n: u8) {
    let pre = PaymentPreimage([n; 32]);
    let id = add_and_settle(p, true, amount_msat, pre);
    let fx = p.b.ch.fulfill_htlc(id, pre).expect("fulfill");
    p.b.absorb_pub(fx, &mut p.to_a);
    p.settle();
}

/// The message for another channel.
fn elsewhere(msg: &Msg) -> Msg {
    with_channel_id(msg, OTHER_ID).expect("a message with a channel id")
}

fn with_channel_id(msg: &Msg, id: ChannelId) -> Option<Msg> {
    let mut m = msg.clone();
    match &mut m {
        Msg::OpenChannel(_) => return None,
        Msg::AcceptChannel(a) => a.temporary_channel_id = id,
        Msg::FundingCreated { temporary_channel_id, .. } => *temporary_channel_id = id,
        Msg::FundingSigned { channel_id, .. }
        | Msg::ChannelReady { channel_id, .. }
        | Msg::Shutdown { channel_id, .. }
        | Msg::ClosingSigned { channel_id, .. }
        | Msg::UpdateAddHtlc { channel_id, .. }
        | Msg::UpdateFulfillHtlc { channel_id, .. }
        | Msg::UpdateFailHtlc { channel_id, .. }
        | Msg::CommitmentSigned { channel_id, .. }
        | Msg::RevokeAndAck { channel_id, .. }
        | Msg::UpdateFee { channel_id, .. }
        | Msg::UpdateFailMalformedHtlc { channel_id, .. }
        | Msg::ChannelReestablish { channel_id, .. }
        | Msg::Error { channel_id, .. }
        | Msg::Warning { channel_id, .. } => *channel_id = id,
    }
    Some(m)
}

/// A live run producing every message kind: open, HTLCs both ways removed by fulfil, fail and
/// fail-malformed, a fee update, a reconnection with a signature in flight, and a cooperative
/// close. Each message is logged with its receiver's state before.
fn scenario(ct: ChannelType) -> Vec<Delivered> {
    let mut log = Vec::new();
    let mut p = open_logged(config(ct), config(ct), CAPACITY, PUSH, &mut log);
    let pres: Vec<PaymentPreimage> = (1..=3).map(|i| PaymentPreimage([i; 32])).collect();
    let mut ids = Vec::new();
    for pre in &pres {
        let (id, fx) = p.a.ch.add_htlc(MilliSats::from_msat(30_000_000), pre.hash(), 2_000, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        ids.push(id);
    }
    let fx = p.a.ch.commit(&p.a.signer).unwrap();
    p.a.absorb_pub(fx, &mut p.to_b);
    run_logged(&mut p, &mut log);
    let back = PaymentPreimage([4; 32]);
    let (back_id, fx) = p.b.ch.add_htlc(MilliSats::from_msat(10_000_000), back.hash(), 2_000, onion()).unwrap();
    p.b.absorb_pub(fx, &mut p.to_a);
    let fx = p.b.ch.commit(&p.b.signer).unwrap();
    p.b.absorb_pub(fx, &mut p.to_a);
    run_logged(&mut p, &mut log);
    let fx = p.a.ch.update_fee(3_000).unwrap();
    p.a.absorb_pub(fx, &mut p.to_b);
    let fx = p.a.ch.commit(&p.a.signer).unwrap();
    p.a.absorb_pub(fx, &mut p.to_b);
    run_logged(&mut p, &mut log);
    let fx = p.b.ch.fulfill_htlc(ids[0], pres[0]).unwrap();
    p.b.absorb_pub(fx, &mut p.to_a);
    let fx = p.b.ch.fail_htlc(ids[1], vec![0xaa; 40]).unwrap();
    p.b.absorb_pub(fx, &mut p.to_a);
    let fx = p.b.ch.fail_malformed_htlc(ids[2], [0x5a; 32], 0xc005).unwrap();
    p.b.absorb_pub(fx, &mut p.to_a);
    let fx = p.b.ch.commit(&p.b.signer).unwrap();
    p.b.absorb_pub(fx, &mut p.to_a);
    run_logged(&mut p, &mut log);
    let fx = p.a.ch.fulfill_htlc(back_id, back).unwrap();
    p.a.absorb_pub(fx, &mut p.to_b);
    let fx = p.a.ch.commit(&p.a.signer).unwrap();
    p.a.absorb_pub(fx, &mut p.to_b);
    run_logged(&mut p, &mut log);
    // Reconnect with a signature lost in flight.
    let fifth = PaymentPreimage([5; 32]);
    let (fifth_id, fx) = p.a.ch.add_htlc(MilliSats::from_msat(7_000_000), fifth.hash(), 2_000, onion()).unwrap();
    p.a.absorb_pub(fx, &mut p.to_b);
    let fx = p.a.ch.commit(&p.a.signer).unwrap();
    p.a.absorb_pub(fx, &mut p.to_b);
    p.to_b.clear();
    let fx = p.a.ch.handle_disconnect();
    p.a.absorb_pub(fx, &mut VecDeque::new());
    let fx = p.b.ch.handle_disconnect();
    p.b.absorb_pub(fx, &mut VecDeque::new());
    let ra = p.a.ch.reestablish(&p.a.signer).unwrap();
    let rb = p.b.ch.reestablish(&p.b.signer).unwrap();
    p.to_b.push_back(ra);
    p.to_a.push_back(rb);
    run_logged(&mut p, &mut log);
    p.settle();
    let fx = p.b.ch.fulfill_htlc(fifth_id, fifth).unwrap();
    p.b.absorb_pub(fx, &mut p.to_a);
    let fx = p.b.ch.commit(&p.b.signer).unwrap();
    p.b.absorb_pub(fx, &mut p.to_a);
    run_logged(&mut p, &mut log);
    // Cooperative close, with a counter-proposal.
    let fx = p.a.ch.shutdown(p2wpkh(0xaa), (Amount::from_sat(1_000), Amount::from_sat(9_000)), &p.a.signer).unwrap();
    p.a.absorb_pub(fx, &mut p.to_b);
    run_logged(&mut p, &mut log);
    let fx = p.b.ch.shutdown(p2wpkh(0xbb), (Amount::from_sat(100), Amount::from_sat(1_500)), &p.b.signer).unwrap();
    p.b.absorb_pub(fx, &mut p.to_a);
    let fx = p.b.ch.shutdown(p2wpkh(0xbb), (Amount::from_sat(100), Amount::from_sat(1_500)), &p.b.signer);
    assert_eq!(fx.unwrap_err(), CommandError::WrongPhase, "one shutdown only");
    run_logged(&mut p, &mut log);
    assert!(p.a.ch.closing_transaction().is_some() && p.b.ch.closing_transaction().is_some(), "closed");
    let kinds: Vec<u16> =
        ALL_TYPES.iter().copied().filter(|t| !log.iter().any(|d| d.msg.type_number() == *t)).collect();
    assert!(kinds.is_empty(), "message types never sent: {kinds:?}");
    log
}
