//! Hostile input to both sides of a Lightning channel, both channel types: every refused peer
//! message, `open_channel`, local command, snapshot or encoding gets a typed error, and the
//! refusing side's live state is byte-identical before and after (its snapshot bytes).
//!
//! Hostile messages are built from real ones (a live two-peer run) with one field changed, so
//! each is refused for the reason under test and not for an earlier one. The last part feeds
//! ~2,000 single-byte mutations of every message kind, whatever decodes, to the peer that received
//! the original, in the state it was in.

mod common;

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

// ---------------------------------------------------------------------------------------------
// commitment_signed
// ---------------------------------------------------------------------------------------------

#[test]
fn commitment_signed_with_bad_signatures_is_refused() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        for n in 1..=2u8 {
            let (_, fx) =
                p.a.ch
                    .add_htlc(MilliSats::from_msat(40_000_000), PaymentPreimage([n; 32]).hash(), 2_000, onion())
                    .unwrap();
            p.a.absorb_pub(fx, &mut p.to_b);
        }
        let fx = p.a.ch.commit(&p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        assert!(p.deliver_to_b() && p.deliver_to_b(), "both adds delivered");
        let Some(Msg::CommitmentSigned { channel_id, signature, htlc_signatures }) = p.to_b.pop_front() else {
            panic!("commitment_signed")
        };
        assert_eq!(htlc_signatures.len(), 2, "two untrimmed HTLCs");
        let cs = |signature: Signature, htlc_signatures: Vec<Signature>| Msg::CommitmentSigned {
            channel_id,
            signature,
            htlc_signatures,
        };
        let bad = Misbehaviour::BadSignature;
        let (b, sb) = (&mut p.b.ch, &p.b.signer);
        // A valid signature of something else, in each place.
        refuse(
            b,
            sb,
            cs(htlc_signatures[0], htlc_signatures.clone()),
            bad(CommitmentSigError::Commitment(SignatureError::Invalid)),
        );
        refuse(
            b,
            sb,
            cs(junk_sig(3), htlc_signatures.clone()),
            bad(CommitmentSigError::Commitment(SignatureError::Invalid)),
        );
        refuse(
            b,
            sb,
            cs(high_s(&signature), htlc_signatures.clone()),
            bad(CommitmentSigError::Commitment(SignatureError::HighS)),
        );
        let swapped = vec![htlc_signatures[1], htlc_signatures[0]];
        let htlc_error = |position| bad(CommitmentSigError::Htlc { position, error: SignatureError::Invalid });
        refuse(b, sb, cs(signature, swapped), htlc_error(0));
        refuse(b, sb, cs(signature, vec![htlc_signatures[0], signature]), htlc_error(1));
        refuse(
            b,
            sb,
            cs(signature, vec![htlc_signatures[0], high_s(&htlc_signatures[1])]),
            bad(CommitmentSigError::Htlc { position: 1, error: SignatureError::HighS }),
        );
        // One too few, one too many, none.
        for n in [0usize, 1, 3] {
            let mut sigs = htlc_signatures.clone();
            sigs.resize(n, signature);
            refuse(b, sb, cs(signature, sigs), bad(CommitmentSigError::HtlcCount { expected: 2, got: n }));
        }
        let err = refuse(b, sb, elsewhere(&cs(signature, htlc_signatures.clone())), Misbehaviour::WrongChannel);
        assert_eq!(err.action, Action::Warn);
        // The genuine one still goes through, and the channel completes its dance.
        let fx = b.handle_message(cs(signature, htlc_signatures.clone()), sb, tip()).expect("genuine signature");
        p.b.absorb_pub(fx, &mut p.to_a);
        p.settle();
        p.verify_commitments();
        // Replaying it now signs nothing new.
        refuse(&p.b.ch, &p.b.signer, cs(signature, htlc_signatures), Misbehaviour::NoChanges);
    }
}

#[test]
fn commitment_signed_without_changes_or_out_of_turn_is_refused() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        let id = p.a.ch.channel_id();
        let cs = Msg::CommitmentSigned { channel_id: id, signature: junk_sig(1), htlc_signatures: vec![] };
        // Nothing happened at all.
        // A slip that puts nothing at risk: warning and disconnection, not a force close.
        let err = refuse(&p.a.ch, &p.a.signer, cs.clone(), Misbehaviour::NoChanges);
        assert_eq!(err.action, Action::Warn);
        refuse(&p.b.ch, &p.b.signer, cs.clone(), Misbehaviour::NoChanges);
        // Only the receiver's own update is pending: the sender may not sign it into the
        // receiver's commitment before the receiver signed it into the sender's.
        let (_, fx) =
            p.a.ch.add_htlc(MilliSats::from_msat(5_000_000), PaymentPreimage([1; 32]).hash(), 2_000, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        refuse(&p.a.ch, &p.a.signer, cs.clone(), Misbehaviour::NoChanges);
        // a signed; b revoked and signed back; the same signature again before b's answer
        // arrives covers nothing new.
        p.deliver_to_b();
        let fx = p.a.ch.commit(&p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        let genuine = p.to_b.front().cloned().expect("commitment_signed");
        p.deliver_to_b();
        refuse(&p.b.ch, &p.b.signer, genuine, Misbehaviour::NoChanges);
        p.settle();
        refuse(&p.a.ch, &p.a.signer, cs.clone(), Misbehaviour::NoChanges);
        refuse(&p.b.ch, &p.b.signer, cs, Misbehaviour::NoChanges);
    }
}

// ---------------------------------------------------------------------------------------------
// update_add_htlc
// ---------------------------------------------------------------------------------------------

#[test]
fn update_add_htlc_ids_amounts_expiry_and_limits() {
    for ct in TYPES {
        let cfg_b = ChannelConfig {
            max_accepted_htlcs: 2,
            htlc_minimum: MilliSats::from_msat(1_000),
            max_htlc_value_in_flight: MilliSats::from_msat(60_000_000),
            ..config(ct)
        };
        let mut p = open_logged(config(ct), cfg_b, CAPACITY, PUSH, &mut Vec::new());
        let cid = p.b.ch.channel_id();
        let (b, sb) = (&mut p.b.ch, &p.b.signer);
        refuse(b, sb, add_msg(cid, 1, 10_000_000, 2_000), Misbehaviour::HtlcId);
        refuse(b, sb, add_msg(cid, u64::MAX, 10_000_000, 2_000), Misbehaviour::HtlcId);
        refuse(b, sb, add_msg(cid, 0, 0, 2_000), Misbehaviour::HtlcBelowMinimum);
        refuse(b, sb, add_msg(cid, 0, 999, 2_000), Misbehaviour::HtlcBelowMinimum);
        refuse(b, sb, add_msg(cid, 0, 10_000_000, 500_000_000), Misbehaviour::BadExpiry);
        refuse(b, sb, add_msg(cid, 0, 10_000_000, u32::MAX), Misbehaviour::BadExpiry);
        refuse(b, sb, add_msg(cid, 0, 60_000_001, 2_000), Misbehaviour::HtlcLimits);
        refuse(b, sb, add_msg(OTHER_ID, 0, 10_000_000, 2_000), Misbehaviour::WrongChannel);
        // The smallest acceptable HTLC, at the highest block-height expiry.
        let fx = b.handle_message(add_msg(cid, 0, 1_000, 499_999_999), sb, tip()).expect("id 0");
        assert!(fx.update.is_none(), "an add no signature covers is kept in memory, not written");
        refuse(b, sb, add_msg(cid, 0, 10_000_000, 2_000), Misbehaviour::HtlcId);
        refuse(b, sb, add_msg(cid, 2, 10_000_000, 2_000), Misbehaviour::HtlcId);
        // In flight: 1_000 + 59_999_001 > 60_000_000.
        refuse(b, sb, add_msg(cid, 1, 59_999_001, 2_000), Misbehaviour::HtlcLimits);
        let mut exact = b.clone();
        let _ = exact.handle_message(add_msg(cid, 1, 59_999_000, 2_000), sb, tip()).expect("exactly the in-flight cap");
        let _ = b.handle_message(add_msg(cid, 1, 10_000_000, 2_000), sb, tip()).expect("id 1");
        refuse(b, sb, add_msg(cid, 1, 10_000, 2_000), Misbehaviour::HtlcId);
        // A third HTLC breaks max_accepted_htlcs = 2 (even a tiny one, well inside the value cap).
        refuse(b, sb, add_msg(cid, 2, 1_000, 2_000), Misbehaviour::HtlcLimits);
        // a's own command knows b's limits too.
        let pre = PaymentPreimage([9; 32]);
        refuse_cmd(&mut p.a.ch, CommandError::Amount, |c| {
            c.add_htlc(MilliSats::from_msat(999), pre.hash(), 2_000, onion())
        });
        refuse_cmd(&mut p.a.ch, CommandError::Amount, |c| c.add_htlc(MilliSats::ZERO, pre.hash(), 2_000, onion()));
        refuse_cmd(&mut p.a.ch, CommandError::BadExpiry, |c| {
            c.add_htlc(MilliSats::from_msat(5_000), pre.hash(), 500_000_000, onion())
        });
        refuse_cmd(&mut p.a.ch, CommandError::Limits, |c| {
            c.add_htlc(MilliSats::from_msat(60_000_001), pre.hash(), 2_000, onion())
        });
    }
}

#[test]
fn update_add_htlc_the_sender_cannot_afford_is_refused() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        let cid = p.a.ch.channel_id();
        // a (funder) has 800,000 sat: it must keep b's 1,000-sat reserve and pay the fee.
        refuse(&p.b.ch, &p.b.signer, add_msg(cid, 0, 799_000_000, 2_000), Misbehaviour::CannotAfford);
        refuse(&p.b.ch, &p.b.signer, add_msg(cid, 0, 800_000_000, 2_000), Misbehaviour::CannotAfford);
        refuse(&p.b.ch, &p.b.signer, add_msg(cid, 0, u64::MAX, 2_000), Misbehaviour::CannotAfford);
        // b has 200,000 sat and must keep a's 1,000-sat reserve.
        refuse(&p.a.ch, &p.a.signer, add_msg(cid, 0, 199_000_001, 2_000), Misbehaviour::CannotAfford);
        refuse(&p.a.ch, &p.a.signer, add_msg(cid, 0, 200_000_000, 2_000), Misbehaviour::CannotAfford);
        let _ = p.a.ch.handle_message(add_msg(cid, 0, 199_000_000, 2_000), &p.a.signer, tip()).expect("to the reserve");
        refuse(&p.a.ch, &p.a.signer, add_msg(cid, 1, 1, 2_000), Misbehaviour::CannotAfford);
        // And the commands.
        let pre = PaymentPreimage([9; 32]);
        refuse_cmd(&mut p.a.ch, CommandError::CannotAfford, |c| {
            c.add_htlc(MilliSats::from_msat(799_000_000), pre.hash(), 2_000, onion())
        });
        refuse_cmd(&mut p.b.ch, CommandError::CannotAfford, |c| {
            c.add_htlc(MilliSats::from_msat(199_000_001), pre.hash(), 2_000, onion())
        });
    }
}

// ---------------------------------------------------------------------------------------------
// update_fulfill_htlc / update_fail_htlc / update_fail_malformed_htlc
// ---------------------------------------------------------------------------------------------

#[test]
fn removals_of_wrong_unknown_or_uncommitted_htlcs_are_refused() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        let cid = p.a.ch.channel_id();
        let pre0 = PaymentPreimage([1; 32]);
        let id0 = add_and_settle(&mut p, true, 20_000_000, pre0);
        let fulfill = |id, pre| Msg::UpdateFulfillHtlc { channel_id: cid, id, payment_preimage: pre };
        let fail = |id| Msg::UpdateFailHtlc { channel_id: cid, id, reason: vec![1, 2, 3] };
        let malformed = |id, failure_code| Msg::UpdateFailMalformedHtlc {
            channel_id: cid,
            id,
            sha256_of_onion: [0x5a; 32],
            failure_code,
        };
        let (a, sa) = (&mut p.a.ch, &p.a.signer);
        refuse(a, sa, fulfill(id0, PaymentPreimage([2; 32])), Misbehaviour::WrongPreimage);
        refuse(a, sa, fulfill(id0, PaymentPreimage(pre0.hash().0)), Misbehaviour::WrongPreimage);
        refuse(a, sa, fulfill(7, pre0), Misbehaviour::UnknownHtlc);
        refuse(a, sa, fail(7), Misbehaviour::UnknownHtlc);
        refuse(a, sa, malformed(7, 0xc005), Misbehaviour::UnknownHtlc);
        refuse(a, sa, fulfill(u64::MAX, pre0), Misbehaviour::UnknownHtlc);
        for code in [0x4005u16, 0x0000, 0x7fff, 0x400f] {
            refuse(a, sa, malformed(id0, code), Misbehaviour::MalformedWithoutBadOnion);
        }
        refuse(a, sa, elsewhere(&fulfill(id0, pre0)), Misbehaviour::WrongChannel);
        // a may not remove an id b never offered.
        let back = PaymentPreimage([3; 32]);
        let back_id = add_and_settle(&mut p, false, 10_000_000, back);
        assert_eq!(back_id, 0, "b's first HTLC has id 0 as well");
        let (b, sb) = (&mut p.b.ch, &p.b.signer);
        refuse(b, sb, fulfill(back_id + 1, back), Misbehaviour::UnknownHtlc);
        // a offers an HTLC not yet committed, then half-committed.
        let pre1 = PaymentPreimage([4; 32]);
        let (id1, fx) = p.a.ch.add_htlc(MilliSats::from_msat(20_000_000), pre1.hash(), 2_000, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        refuse(&p.a.ch, &p.a.signer, fulfill(id1, pre1), Misbehaviour::UnknownHtlc);
        refuse(&p.a.ch, &p.a.signer, fail(id1), Misbehaviour::UnknownHtlc);
        let fx = p.a.ch.commit(&p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.deliver_to_b();
        p.deliver_to_b();
        // b revoked its old commitment and signed a's new one; only the revocation arrives.
        assert!(matches!(p.to_a.front(), Some(Msg::RevokeAndAck { .. })));
        p.deliver_to_a();
        assert!(!p.a.ch.is_htlc_irrevocably_committed(Side::Holder, id1));
        refuse(&p.a.ch, &p.a.signer, fulfill(id1, pre1), Misbehaviour::UnknownHtlc);
        refuse(&p.a.ch, &p.a.signer, malformed(id1, 0xc005), Misbehaviour::UnknownHtlc);
        // b's command refuses the same.
        refuse_cmd(&mut p.b.ch, CommandError::UnknownHtlc, |c| c.fulfill_htlc(id1, pre1));
        refuse_cmd(&mut p.b.ch, CommandError::UnknownHtlc, |c| c.fail_htlc(id1, vec![]));
        p.settle();
        // A removal once; the second is refused.
        let fx = p.a.ch.handle_message(fulfill(id0, pre0), &p.a.signer, tip()).expect("genuine fulfil");
        assert!(fx.events.iter().any(|e| matches!(e, Event::HtlcFulfilled { id, .. } if *id == id0)));
        refuse(&p.a.ch, &p.a.signer, fulfill(id0, pre0), Misbehaviour::UnknownHtlc);
        refuse(&p.a.ch, &p.a.signer, fail(id0), Misbehaviour::UnknownHtlc);
    }
}

// ---------------------------------------------------------------------------------------------
// revoke_and_ack
// ---------------------------------------------------------------------------------------------

#[test]
fn revoke_and_ack_with_wrong_secret_or_out_of_turn_is_refused() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        let cid = p.a.ch.channel_id();
        let point = *signer_b().per_commitment_point(CommitmentNumber::new(2).unwrap()).unwrap().public_key();
        let raa = |secret: [u8; 32]| Msg::RevokeAndAck {
            channel_id: cid,
            per_commitment_secret: PerCommitmentSecret::from_bytes(secret),
            next_per_commitment_point: point,
        };
        let b0 = signer_b().release_per_commitment_secret(CommitmentNumber::ZERO).unwrap().to_bytes();
        // Nothing signed: no revocation is due, even a genuine-looking one.
        let err = refuse(&p.a.ch, &p.a.signer, raa(b0), Misbehaviour::BadRevocation);
        assert_eq!(err.action, Action::ForceClose);
        refuse(&p.b.ch, &p.b.signer, raa(b0), Misbehaviour::BadRevocation);
        let (_, fx) =
            p.a.ch.add_htlc(MilliSats::from_msat(20_000_000), PaymentPreimage([1; 32]).hash(), 2_000, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        let fx = p.a.ch.commit(&p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.deliver_to_b();
        p.deliver_to_b();
        let genuine = p.to_a.pop_front().expect("revoke_and_ack");
        let Msg::RevokeAndAck { per_commitment_secret, .. } = &genuine else { panic!("revoke_and_ack first") };
        assert_eq!(per_commitment_secret.to_bytes(), b0);
        let b1 = signer_b().release_per_commitment_secret(CommitmentNumber::new(1).unwrap()).unwrap().to_bytes();
        let mut flipped = b0;
        flipped[31] ^= 1;
        for secret in [[0x42; 32], b1, flipped, [0; 32], CURVE_ORDER, [0xff; 32]] {
            refuse(&p.a.ch, &p.a.signer, raa(secret), Misbehaviour::BadRevocation);
        }
        refuse(&p.a.ch, &p.a.signer, elsewhere(&genuine), Misbehaviour::WrongChannel);
        // a's own revocation is not b's.
        let a0 = signer_a().release_per_commitment_secret(CommitmentNumber::ZERO).unwrap().to_bytes();
        refuse(&p.a.ch, &p.a.signer, raa(a0), Misbehaviour::BadRevocation);
        let fx = p.a.ch.handle_message(genuine.clone(), &p.a.signer, tip()).expect("genuine revocation");
        p.a.absorb_pub(fx, &mut p.to_b);
        // Twice is out of turn.
        refuse(&p.a.ch, &p.a.signer, genuine, Misbehaviour::BadRevocation);
        p.settle();
        p.verify_commitments();
    }
}

/// A signer that gives commitment `forged` a per-commitment secret outside its shachain: the
/// point it announces matches the secret it later reveals, but the secret does not derive the
/// earlier ones.
struct ForgingSigner {
    inner: InMemorySigner,
    forged: u64,
    secret: PerCommitmentSecret,
}

impl Signer for ForgingSigner {
    fn pubkeys(&self) -> &ChannelPubkeys {
        self.inner.pubkeys()
    }

    fn sign(&self, request: &SignRequest<'_>) -> Result<bitcoin::ecdsa::Signature, SignerError> {
        self.inner.sign(request)
    }

    fn per_commitment_point(&self, n: CommitmentNumber) -> Result<PerCommitmentPoint, SignerError> {
        if n.to_u64() == self.forged {
            Ok(self.secret.point(self.inner.secp())?)
        } else {
            self.inner.per_commitment_point(n)
        }
    }

    fn release_per_commitment_secret(&self, n: CommitmentNumber) -> Result<PerCommitmentSecret, SignerError> {
        if n.to_u64() == self.forged {
            Ok(self.secret)
        } else {
            self.inner.release_per_commitment_secret(n)
        }
    }
}

#[test]
fn revocation_secret_matching_its_point_but_not_the_shachain_is_refused() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        // b announces commitment 3's point from a secret of its own making (in the revocation of
        // commitment 1) and reveals that secret when revoking commitment 3: index 2^48-4 sits in
        // shachain slot 2, and does not derive the secrets of commitments 1 and 2.
        let forger =
            ForgingSigner { inner: p.b.signer.clone(), forged: 3, secret: PerCommitmentSecret::from_bytes([0x5e; 32]) };
        let forged_point = *forger.secret.point(forger.inner.secp()).unwrap().public_key();
        let mut announced = false;
        let mut refused = None;
        'payments: for n in 1..=3u8 {
            let pre = PaymentPreimage([n; 32]);
            let (id, fx) = p.a.ch.add_htlc(MilliSats::from_msat(10_000_000), pre.hash(), 2_000, onion()).unwrap();
            p.a.absorb_pub(fx, &mut p.to_b);
            let fx = p.a.ch.commit(&p.a.signer).unwrap();
            p.a.absorb_pub(fx, &mut p.to_b);
            let mut fulfilled = false;
            loop {
                while let Some(m) = p.to_b.pop_front() {
                    let fx = p.b.ch.handle_message(m, &forger, tip()).expect("b takes a's messages");
                    p.b.absorb_pub(fx, &mut p.to_a);
                }
                if !fulfilled && p.b.ch.is_htlc_irrevocably_committed(Side::Counterparty, id) {
                    let fx = p.b.ch.fulfill_htlc(id, pre).unwrap();
                    p.b.absorb_pub(fx, &mut p.to_a);
                    let fx = p.b.ch.commit(&forger).unwrap();
                    p.b.absorb_pub(fx, &mut p.to_a);
                    fulfilled = true;
                }
                let Some(m) = p.to_a.pop_front() else { break };
                let revoked_forged = matches!(&m, Msg::RevokeAndAck { per_commitment_secret, .. } if *per_commitment_secret == forger.secret);
                if let Msg::RevokeAndAck { next_per_commitment_point, .. } = &m {
                    announced |= *next_per_commitment_point == forged_point;
                }
                if revoked_forged {
                    // The secret matches the point a was told: only the shachain can tell.
                    assert!(announced, "a accepted the forged point earlier");
                    assert_eq!(p.a.ch.counterparty_commitment_number(), 4, "b revokes commitment 3 for 4");
                    refused = Some(refuse(&p.a.ch, &p.a.signer, m, Misbehaviour::BadRevocation));
                    break 'payments;
                }
                let fx = p.a.ch.handle_message(m, &p.a.signer, tip()).expect("a takes b's honest messages");
                p.a.absorb_pub(fx, &mut p.to_b);
            }
        }
        assert_eq!(refused.expect("the forged secret was revealed").action, Action::ForceClose);
    }
}

// ---------------------------------------------------------------------------------------------
// update_fee
// ---------------------------------------------------------------------------------------------

#[test]
fn update_fee_from_the_wrong_side_out_of_bounds_or_unaffordable_is_refused() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        let cid = p.a.ch.channel_id();
        let fee = |feerate_per_kw| Msg::UpdateFee { channel_id: cid, feerate_per_kw };
        refuse(&p.a.ch, &p.a.signer, fee(3_000), Misbehaviour::NotFunder);
        for rate in [0, 252, 100_001, u32::MAX] {
            refuse(&p.b.ch, &p.b.signer, fee(rate), Misbehaviour::Feerate);
        }
        refuse(&p.b.ch, &p.b.signer, elsewhere(&fee(3_000)), Misbehaviour::WrongChannel);
        let _ = p.b.ch.handle_message(fee(100_000), &p.b.signer, tip()).expect("the highest fee rate b accepts");
        refuse_cmd(&mut p.b.ch, CommandError::Fee, |c| c.update_fee(3_000));
        refuse_cmd(&mut p.a.ch, CommandError::Fee, |c| c.update_fee(252));

        // A funder left with 20,000 sat cannot pay a 30,000 sat/kw commitment fee.
        let mut p = Pair::open(ct, CAPACITY, 980_000_000);
        let cid = p.a.ch.channel_id();
        let fee = |feerate_per_kw| Msg::UpdateFee { channel_id: cid, feerate_per_kw };
        for rate in [30_000, 100_000] {
            refuse(&p.b.ch, &p.b.signer, fee(rate), Misbehaviour::Feerate);
            refuse_cmd(&mut p.a.ch, CommandError::Fee, |c| c.update_fee(rate));
        }
        let _ = p.b.ch.handle_message(fee(10_000), &p.b.signer, tip()).expect("affordable");
    }
}

// ---------------------------------------------------------------------------------------------
// Phases and channel ids
// ---------------------------------------------------------------------------------------------

#[test]
fn messages_in_the_wrong_phase_are_refused() {
    for ct in TYPES {
        let mut log = Vec::new();
        let p = open_logged(config(ct), config(ct), CAPACITY, PUSH, &mut log);
        let open = logged(&log, types::OPEN_CHANNEL);
        let accept = logged(&log, types::ACCEPT_CHANNEL);
        let created = logged(&log, types::FUNDING_CREATED);
        let signed = logged(&log, types::FUNDING_SIGNED);
        let ready_to_b = log.iter().find(|d| d.to_b && d.msg.type_number() == types::CHANNEL_READY).unwrap().clone();
        let ready_to_a = log.iter().find(|d| !d.to_b && d.msg.type_number() == types::CHANNEL_READY).unwrap().clone();
        let (sa, sb) = (signer_a(), signer_b());
        let state_of = |d: &Delivered| d.receiver.clone().expect("a receiver state");

        // open_channel is for Channel::accept only.
        refuse(&state_of(&accept), &sa, open.msg.clone(), Misbehaviour::UnexpectedMessage);
        refuse(&state_of(&created), &sb, open.msg.clone(), Misbehaviour::UnexpectedMessage);
        // funding_created to the opener, before and after it sent its own.
        refuse(&state_of(&accept), &sa, created.msg.clone(), Misbehaviour::UnexpectedMessage);
        refuse(&state_of(&signed), &sa, created.msg.clone(), Misbehaviour::UnexpectedMessage);
        // accept_channel twice.
        let mut a = state_of(&accept);
        let _ = a.handle_message(accept.msg.clone(), &sa, tip()).expect("first accept_channel");
        assert_eq!(a.phase(), Phase::AwaitingFundingTx);
        refuse(&a, &sa, accept.msg.clone(), Misbehaviour::UnexpectedMessage);
        refuse(&state_of(&signed), &sa, accept.msg.clone(), Misbehaviour::UnexpectedMessage);
        // accept_channel or funding_signed to the acceptor.
        refuse(&state_of(&created), &sb, accept.msg.clone(), Misbehaviour::UnexpectedMessage);
        refuse(&state_of(&created), &sb, signed.msg.clone(), Misbehaviour::UnexpectedMessage);
        // funding_signed before funding_created was sent.
        refuse(&state_of(&accept), &sa, signed.msg.clone(), Misbehaviour::UnexpectedMessage);
        // funding_created twice.
        let mut b = state_of(&created);
        let _ = b.handle_message(created.msg.clone(), &sb, tip()).expect("first funding_created");
        refuse(&b, &sb, created.msg.clone(), Misbehaviour::UnexpectedMessage);

        // Normal operation before channel_ready, in both directions.
        let cid = p.a.ch.channel_id();
        for (d, s) in [(&ready_to_b, &sb), (&ready_to_a, &sa)] {
            let ch = state_of(d);
            assert_eq!(ch.phase(), Phase::AwaitingChannelReady);
            refuse(&ch, s, add_msg(cid, 0, 10_000_000, 2_000), Misbehaviour::UnexpectedMessage);
            let cs = Msg::CommitmentSigned { channel_id: cid, signature: junk_sig(1), htlc_signatures: vec![] };
            refuse(&ch, s, cs, Misbehaviour::UnexpectedMessage);
            refuse(&ch, s, Msg::UpdateFee { channel_id: cid, feerate_per_kw: 3_000 }, Misbehaviour::UnexpectedMessage);
            let fulfill = Msg::UpdateFulfillHtlc { channel_id: cid, id: 0, payment_preimage: PaymentPreimage([1; 32]) };
            refuse(&ch, s, fulfill, Misbehaviour::UnexpectedMessage);
            let point = *sb.per_commitment_point(CommitmentNumber::new(2).unwrap()).unwrap().public_key();
            let raa = Msg::RevokeAndAck {
                channel_id: cid,
                per_commitment_secret: sb.release_per_commitment_secret(CommitmentNumber::ZERO).unwrap(),
                next_per_commitment_point: point,
            };
            refuse(&ch, s, raa, Misbehaviour::BadRevocation);
            let closing = Msg::ClosingSigned {
                channel_id: cid,
                fee_satoshis: Amount::from_sat(1_000),
                signature: junk_sig(2),
                fee_range: None,
            };
            refuse(&ch, s, closing, Misbehaviour::UnexpectedMessage);
        }

        // channel_ready again: harmless if it repeats the point, refused otherwise.
        let mut pair = p;
        let fx =
            pair.b.ch.handle_message(ready_to_b.msg.clone(), &pair.b.signer, tip()).expect("repeated channel_ready");
        assert!(fx.is_empty());
        let Msg::ChannelReady { channel_id, .. } = ready_to_b.msg else { unreachable!() };
        let other_point = *sa.per_commitment_point(CommitmentNumber::new(5).unwrap()).unwrap().public_key();
        let ready = Msg::ChannelReady { channel_id, second_per_commitment_point: other_point };
        refuse(&pair.b.ch, &pair.b.signer, ready, Misbehaviour::UnexpectedMessage);
        pay(&mut pair, 1_000_000, 1);
        refuse(&pair.b.ch, &pair.b.signer, ready_to_b.msg.clone(), Misbehaviour::UnexpectedMessage);
        // Funding messages once open.
        refuse(&pair.a.ch, &pair.a.signer, accept.msg.clone(), Misbehaviour::UnexpectedMessage);
        refuse(&pair.b.ch, &pair.b.signer, created.msg.clone(), Misbehaviour::UnexpectedMessage);
        refuse(&pair.a.ch, &pair.a.signer, signed.msg.clone(), Misbehaviour::UnexpectedMessage);
    }
}

#[test]
fn shutdown_and_closing_signed_out_of_order_are_refused() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        let cid = p.a.ch.channel_id();
        let closing = |fee| Msg::ClosingSigned {
            channel_id: cid,
            fee_satoshis: Amount::from_sat(fee),
            signature: junk_sig(7),
            fee_range: Some((Amount::from_sat(100), Amount::from_sat(5_000))),
        };
        // closing_signed before any shutdown.
        refuse(&p.a.ch, &p.a.signer, closing(1_000), Misbehaviour::UnexpectedMessage);
        refuse(&p.b.ch, &p.b.signer, closing(1_000), Misbehaviour::UnexpectedMessage);
        // A shutdown script nobody can relay.
        let op_return = ScriptBuf::new_op_return([1u8; 10]);
        let bad = Msg::Shutdown { channel_id: cid, scriptpubkey: op_return.clone() };
        refuse(&p.a.ch, &p.a.signer, bad.clone(), Misbehaviour::NonStandardScript);
        refuse(
            &p.a.ch,
            &p.a.signer,
            Msg::Shutdown { channel_id: cid, scriptpubkey: ScriptBuf::new() },
            Misbehaviour::NonStandardScript,
        );
        refuse_cmd(&mut p.b.ch, CommandError::NonStandardScript, |c| {
            c.shutdown(op_return, (Amount::from_sat(100), Amount::from_sat(1_000)), &signer_b())
        });
        // An HTLC is in flight when b starts closing.
        let pre = PaymentPreimage([1; 32]);
        let id = add_and_settle(&mut p, true, 20_000_000, pre);
        let fx = p.b.ch.shutdown(p2wpkh(0xbb), (Amount::from_sat(100), Amount::from_sat(5_000)), &p.b.signer).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        let shutdown = p.to_a.front().cloned().expect("shutdown");
        p.run();
        assert!(p.a.take_events().contains(&Event::ShutdownReceived));
        // No update_add_htlc from the side that sent shutdown, and no second shutdown with
        // another script; the same one again (a retransmission) changes nothing.
        refuse(&p.a.ch, &p.a.signer, add_msg(cid, 0, 10_000_000, 2_000), Misbehaviour::Shutdown);
        let other = Msg::Shutdown { channel_id: cid, scriptpubkey: p2wpkh(0xbc) };
        refuse(&p.a.ch, &p.a.signer, other, Misbehaviour::UnexpectedMessage);
        let before = p.a.ch.snapshot();
        let fx = p.a.ch.handle_message(shutdown.clone(), &p.a.signer, tip()).expect("a retransmitted shutdown");
        assert!(fx.is_empty() && p.a.ch.snapshot() == before, "{fx:?}");
        refuse(&p.a.ch, &p.a.signer, elsewhere(&shutdown), Misbehaviour::WrongChannel);
        // Local commands: no new HTLCs either way.
        for peer in [&mut p.a, &mut p.b] {
            refuse_cmd(&mut peer.ch, CommandError::WrongPhase, |c| {
                c.add_htlc(MilliSats::from_msat(1_000_000), pre.hash(), 2_000, onion())
            });
        }
        let fx = p.a.ch.shutdown(p2wpkh(0xaa), (Amount::from_sat(100), Amount::from_sat(5_000)), &p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.run();
        // Both shut down, but the HTLC is still there: no fee negotiation yet.
        assert!(p.to_a.is_empty() && p.to_b.is_empty());
        refuse(&p.a.ch, &p.a.signer, closing(1_000), Misbehaviour::UnexpectedMessage);
        refuse(&p.b.ch, &p.b.signer, closing(1_000), Misbehaviour::UnexpectedMessage);
        let fx = p.b.ch.fulfill_htlc(id, pre).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        p.settle();
        let closed = p.a.ch.closing_transaction().cloned().expect("closed");
        assert_eq!(p.b.ch.closing_transaction(), Some(&closed));
        // After the close: nothing more.
        refuse(&p.a.ch, &p.a.signer, closing(1_000), Misbehaviour::UnexpectedMessage);
        refuse(&p.b.ch, &p.b.signer, add_msg(cid, 1, 10_000_000, 2_000), Misbehaviour::Shutdown);
    }
}

#[test]
fn closing_signed_with_bad_signature_or_fee_is_refused() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        let cid = p.a.ch.channel_id();
        let fx =
            p.a.ch.shutdown(p2wpkh(0xaa), (Amount::from_sat(2_000), Amount::from_sat(3_000)), &p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.run();
        let fx = p.b.ch.shutdown(p2wpkh(0xbb), (Amount::from_sat(100), Amount::from_sat(1_000)), &p.b.signer).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        // b's shutdown reaches a, a proposes a fee in its range.
        p.deliver_to_a();
        let Some(Msg::ClosingSigned { fee_satoshis, signature, fee_range, .. }) = p.to_b.pop_front() else {
            panic!("closing_signed")
        };
        assert_eq!(fee_range, Some((Amount::from_sat(2_000), Amount::from_sat(3_000))));
        let closing =
            |fee, signature, fee_range| Msg::ClosingSigned { channel_id: cid, fee_satoshis: fee, signature, fee_range };
        let (b, sb) = (&mut p.b.ch, &p.b.signer);
        let bad = Misbehaviour::BadSignature(CommitmentSigError::Commitment(SignatureError::Invalid));
        refuse(b, sb, closing(fee_satoshis, junk_sig(3), fee_range), bad);
        refuse(b, sb, closing(fee_satoshis + Amount::from_sat(1), signature, fee_range), bad);
        // Signed but the ranges do not overlap.
        refuse(b, sb, closing(fee_satoshis, signature, fee_range), Misbehaviour::ClosingFee);
        refuse(b, sb, closing(fee_satoshis, signature, None), Misbehaviour::ClosingFee);
        // A fee larger than the funder's balance.
        refuse(b, sb, closing(Amount::from_sat(900_000), signature, fee_range), Misbehaviour::ClosingFee);
        assert!(b.closing_transaction().is_none());
    }
}

#[test]
fn wrong_channel_id_is_refused_for_every_message_kind() {
    for ct in TYPES {
        let log = scenario(ct);
        let mut seen = std::collections::BTreeSet::new();
        for d in &log {
            let (Some(receiver), Some(msg)) = (&d.receiver, with_channel_id(&d.msg, OTHER_ID)) else { continue };
            let err = refuse(&receiver.clone(), &d.signer(), msg, Misbehaviour::WrongChannel);
            assert_eq!(err.action, Action::Warn);
            seen.insert(d.msg.type_number());
        }
        assert_eq!(seen.len(), ALL_TYPES.len() - 1, "every kind but open_channel: {seen:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Opening
// ---------------------------------------------------------------------------------------------

fn other_type(ct: ChannelType) -> ChannelType {
    match ct {
        ChannelType::StaticRemoteKey => ChannelType::AnchorsZeroFeeHtlc,
        _ => ChannelType::StaticRemoteKey,
    }
}

fn base_open(ct: ChannelType) -> OpenChannel {
    let params = OpenParams {
        config: config(ct),
        temporary_channel_id: ChannelId([7; 32]),
        funding: Amount::from_sat(CAPACITY),
        push: MilliSats::from_msat(PUSH),
        feerate_per_kw: 2_500,
    };
    let (_, fx) = Channel::open(params, &signer_a(), ChainTip::at(TIP)).unwrap();
    let Some(Msg::OpenChannel(open)) = fx.send.into_iter().next() else { panic!("open_channel") };
    *open
}

#[track_caller]
fn refuse_open(ct: ChannelType, change: impl FnOnce(&mut OpenChannel), kind: Misbehaviour) {
    let mut open = base_open(ct);
    change(&mut open);
    let got = Channel::accept(&open, config(ct), &signer_b(), ChainTip::at(TIP)).map(|_| ());
    assert_eq!(got, Err(OpenError(kind)), "{open:?}");
}

#[test]
fn open_channel_with_bad_parameters_is_refused() {
    for ct in TYPES {
        let other_bits = base_open(other_type(ct)).tlvs.channel_type;
        assert!(Channel::accept(&base_open(ct), config(ct), &signer_b(), ChainTip::at(TIP)).is_ok());
        use Misbehaviour::*;
        refuse_open(ct, |o| o.chain_hash = [0; 32], BadParameters);
        refuse_open(ct, |o| o.tlvs.channel_type = None, ChannelType);
        refuse_open(ct, |o| o.tlvs.channel_type = other_bits, ChannelType);
        refuse_open(ct, |o| o.tlvs.channel_type = Some(vec![]), ChannelType);
        refuse_open(ct, |o| o.tlvs.channel_type = Some(vec![0xff, 0xff, 0xff]), ChannelType);
        refuse_open(ct, |o| o.feerate_per_kw = 252, Feerate);
        refuse_open(ct, |o| o.feerate_per_kw = 100_001, Feerate);
        refuse_open(ct, |o| o.feerate_per_kw = 0, Feerate);
        refuse_open(ct, |o| o.to_self_delay = 2_017, BadParameters);
        refuse_open(ct, |o| o.to_self_delay = u16::MAX, BadParameters);
        refuse_open(ct, |o| o.max_accepted_htlcs = 484, BadParameters);
        refuse_open(ct, |o| o.max_accepted_htlcs = 0, BadParameters);
        refuse_open(ct, |o| o.dust_limit_satoshis = Amount::from_sat(353), BadParameters);
        refuse_open(ct, |o| o.channel_reserve_satoshis = Amount::from_sat(CAPACITY + 1), BadParameters);
        // The reserve the opener asks of us is below our dust limit.
        refuse_open(ct, |o| o.channel_reserve_satoshis = Amount::from_sat(353), BadParameters);
        refuse_open(ct, |o| o.funding_satoshis = Amount::ZERO, BadParameters);
        refuse_open(ct, |o| o.push_msat = MilliSats::from_msat(CAPACITY * 1_000 + 1), BadParameters);
        // The opener keeps 1,000 sat: not enough for the first commitment's fee at 2,500 sat/kw.
        refuse_open(ct, |o| o.push_msat = MilliSats::from_msat(CAPACITY * 1_000 - 1_000_000), CannotAfford);
        refuse_open(
            ct,
            |o| {
                o.funding_satoshis = Amount::from_sat(100_000);
                o.push_msat = MilliSats::from_msat(99_000_000);
            },
            CannotAfford,
        );
    }
}

#[test]
fn dust_limit_above_the_acceptors_reserve_is_refused() {
    for ct in TYPES {
        // open_channel: the opener's dust limit above the reserve it asks of us.
        refuse_open(
            ct,
            |o| {
                o.dust_limit_satoshis = Amount::from_sat(5_000);
                o.channel_reserve_satoshis = Amount::from_sat(1_000);
            },
            Misbehaviour::BadParameters,
        );
        // accept_channel: the acceptor's dust limit above the reserve our open_channel asked of it.
        let mut log = Vec::new();
        open_logged(config(ct), config(ct), CAPACITY, PUSH, &mut log);
        let d = logged(&log, types::ACCEPT_CHANNEL);
        let Msg::AcceptChannel(mut m) = d.msg.clone() else { unreachable!() };
        m.dust_limit_satoshis = Amount::from_sat(5_000);
        refuse(&d.receiver.clone().unwrap(), &signer_a(), Msg::AcceptChannel(m), Misbehaviour::BadParameters);
    }
}

#[test]
fn accept_channel_dust_limit_above_our_reserve_is_refused() {
    for ct in TYPES {
        let mut log = Vec::new();
        open_logged(config(ct), config(ct), CAPACITY, PUSH, &mut log);
        let d = logged(&log, types::ACCEPT_CHANNEL);
        let Msg::AcceptChannel(mut m) = d.msg.clone() else { unreachable!() };
        // Our open_channel asked the acceptor to keep 1,000 sat.
        m.dust_limit_satoshis = Amount::from_sat(5_000);
        m.channel_reserve_satoshis = Amount::from_sat(6_000);
        refuse(&d.receiver.clone().unwrap(), &signer_a(), Msg::AcceptChannel(m), Misbehaviour::BadParameters);
    }
}

/// One change to an `accept_channel`.
type AcceptChange = Box<dyn Fn(&mut paychan::lightning::msgs::AcceptChannel)>;

#[test]
fn accept_channel_with_bad_parameters_is_refused() {
    for ct in TYPES {
        let mut log = Vec::new();
        open_logged(config(ct), config(ct), CAPACITY, PUSH, &mut log);
        let d = logged(&log, types::ACCEPT_CHANNEL);
        let Msg::AcceptChannel(base) = d.msg.clone() else { unreachable!() };
        let other_bits = base_open(other_type(ct)).tlvs.channel_type;
        use Misbehaviour::*;
        let cases: Vec<(AcceptChange, Misbehaviour)> = vec![
            (Box::new(|m| m.temporary_channel_id = OTHER_ID), WrongChannel),
            (Box::new(|m| m.tlvs.channel_type = None), ChannelType),
            (Box::new(move |m| m.tlvs.channel_type = other_bits.clone()), ChannelType),
            (Box::new(|m| m.dust_limit_satoshis = Amount::from_sat(353)), BadParameters),
            (Box::new(|m| m.to_self_delay = 2_017), BadParameters),
            (Box::new(|m| m.max_accepted_htlcs = 484), BadParameters),
            (Box::new(|m| m.max_accepted_htlcs = 0), BadParameters),
            (Box::new(|m| m.channel_reserve_satoshis = Amount::from_sat(CAPACITY + 1)), BadParameters),
            (Box::new(|m| m.channel_reserve_satoshis = Amount::from_sat(353)), BadParameters),
            (Box::new(|m| m.minimum_depth = 1_009), BadParameters),
        ];
        for (change, kind) in cases {
            let mut m = base.clone();
            change(&mut m);
            refuse(&d.receiver.clone().unwrap(), &signer_a(), Msg::AcceptChannel(m), kind);
        }
    }
}

#[test]
fn funding_messages_with_invalid_signatures_are_refused() {
    for ct in TYPES {
        let mut log = Vec::new();
        open_logged(config(ct), config(ct), CAPACITY, PUSH, &mut log);
        let created = logged(&log, types::FUNDING_CREATED);
        let signed = logged(&log, types::FUNDING_SIGNED);
        let Msg::FundingCreated { temporary_channel_id, funding_txid, funding_output_index, signature: sig_c } =
            created.msg
        else {
            unreachable!()
        };
        let Msg::FundingSigned { channel_id, signature: sig_s } = signed.msg else { unreachable!() };
        let fc = |signature, funding_output_index| Msg::FundingCreated {
            temporary_channel_id,
            funding_txid,
            funding_output_index,
            signature,
        };
        let mut b = created.receiver.clone().unwrap();
        for sig in [sig_s, junk_sig(4), high_s(&sig_c)] {
            refuse(&b, &signer_b(), fc(sig, funding_output_index), Misbehaviour::BadFundingSignature);
        }
        // The signature is over the outpoint: another output index invalidates it.
        refuse(&b, &signer_b(), fc(sig_c, funding_output_index + 1), Misbehaviour::BadFundingSignature);
        let fx = b.handle_message(fc(sig_c, funding_output_index), &signer_b(), tip()).expect("genuine");
        assert!(fx.broadcast.is_empty());
        let mut a = signed.receiver.clone().unwrap();
        for sig in [sig_c, junk_sig(5), high_s(&sig_s)] {
            refuse(
                &a,
                &signer_a(),
                Msg::FundingSigned { channel_id, signature: sig },
                Misbehaviour::BadFundingSignature,
            );
        }
        refuse(
            &a,
            &signer_a(),
            Msg::FundingSigned { channel_id: OTHER_ID, signature: sig_s },
            Misbehaviour::WrongChannel,
        );
        let fx =
            a.handle_message(Msg::FundingSigned { channel_id, signature: sig_s }, &signer_a(), tip()).expect("genuine");
        assert_eq!(fx.broadcast.len(), 1, "the funding is broadcast only now");
    }
}

// ---------------------------------------------------------------------------------------------
// channel_reestablish
// ---------------------------------------------------------------------------------------------

struct Reestablish {
    channel_id: ChannelId,
    next_commitment_number: u64,
    next_revocation_number: u64,
    your_last_per_commitment_secret: [u8; 32],
    my_current_per_commitment_point: bitcoin::secp256k1::PublicKey,
}

impl Reestablish {
    fn of(m: &Msg) -> Self {
        let Msg::ChannelReestablish {
            channel_id,
            next_commitment_number,
            next_revocation_number,
            your_last_per_commitment_secret,
            my_current_per_commitment_point,
        } = m.clone()
        else {
            panic!("channel_reestablish")
        };
        Reestablish {
            channel_id,
            next_commitment_number,
            next_revocation_number,
            your_last_per_commitment_secret: your_last_per_commitment_secret.to_bytes(),
            my_current_per_commitment_point,
        }
    }

    fn msg(&self) -> Msg {
        Msg::ChannelReestablish {
            channel_id: self.channel_id,
            next_commitment_number: self.next_commitment_number,
            next_revocation_number: self.next_revocation_number,
            your_last_per_commitment_secret: PerCommitmentSecret::from_bytes(self.your_last_per_commitment_secret),
            my_current_per_commitment_point: self.my_current_per_commitment_point,
        }
    }
}

/// A pair after three payments, with a's fourth HTLC signed and b's revocation in flight, then
/// disconnected; returns the reestablish messages a and b would send.
fn disconnected_pair(ct: ChannelType) -> (Pair, Msg, Msg) {
    let mut p = Pair::open(ct, CAPACITY, PUSH);
    for n in 1..=3 {
        pay(&mut p, 5_000_000, n);
    }
    let (_, fx) =
        p.a.ch.add_htlc(MilliSats::from_msat(5_000_000), PaymentPreimage([9; 32]).hash(), 2_000, onion()).unwrap();
    p.a.absorb_pub(fx, &mut p.to_b);
    let fx = p.a.ch.commit(&p.a.signer).unwrap();
    p.a.absorb_pub(fx, &mut p.to_b);
    p.deliver_to_b();
    p.deliver_to_b();
    p.to_a.clear();
    let fx = p.a.ch.handle_disconnect();
    p.a.absorb_pub(fx, &mut VecDeque::new());
    let fx = p.b.ch.handle_disconnect();
    p.b.absorb_pub(fx, &mut VecDeque::new());
    let ra = p.a.ch.reestablish(&p.a.signer).unwrap();
    let rb = p.b.ch.reestablish(&p.b.signer).unwrap();
    (p, ra, rb)
}

#[test]
fn channel_reestablish_with_impossible_numbers_is_refused() {
    for ct in TYPES {
        let (mut p, ra, rb) = disconnected_pair(ct);
        let mismatch = Misbehaviour::ReestablishMismatch;
        for (genuine, to_b) in [(&ra, true), (&rb, false)] {
            let base = Reestablish::of(genuine);
            let mut variants: Vec<Reestablish> = Vec::new();
            // One fewer is legitimate for a, which waits for b's revocation: b may have lost a's
            // last `commitment_signed`, which a then sends again (BOLT #2 ignores
            // `my_current_per_commitment_point`, which no longer tells the two cases apart).
            let receiver_awaits_revoke = if to_b { p.b.ch.is_awaiting_revoke() } else { p.a.ch.is_awaiting_revoke() };
            let mut fewer = vec![0, base.next_commitment_number - 2];
            if !receiver_awaits_revoke {
                fewer.push(base.next_commitment_number - 1);
            }
            for n in fewer {
                variants.push(Reestablish { next_commitment_number: n, ..Reestablish::of(genuine) });
            }
            for n in [
                base.next_revocation_number + 1,
                base.next_revocation_number + 2,
                base.next_revocation_number.wrapping_sub(1),
                u64::MAX,
                1 << 48,
            ] {
                variants.push(Reestablish { next_revocation_number: n, ..Reestablish::of(genuine) });
            }
            let mut secret = base.your_last_per_commitment_secret;
            secret[0] ^= 0x80;
            variants.push(Reestablish { your_last_per_commitment_secret: secret, ..Reestablish::of(genuine) });
            variants.push(Reestablish { your_last_per_commitment_secret: [0; 32], ..Reestablish::of(genuine) });
            let peer = if to_b { &mut p.b } else { &mut p.a };
            for v in variants {
                let err = refuse(&peer.ch, &peer.signer, v.msg(), mismatch);
                assert_eq!(err.action, Action::Close);
            }
            refuse(&peer.ch, &peer.signer, elsewhere(genuine), Misbehaviour::WrongChannel);
        }
        // The genuine messages still reconnect the channel.
        let fx = p.b.ch.handle_message(ra, &p.b.signer, tip()).expect("genuine");
        p.b.absorb_pub(fx, &mut p.to_a);
        let fx = p.a.ch.handle_message(rb, &p.a.signer, tip()).expect("genuine");
        p.a.absorb_pub(fx, &mut p.to_b);
        p.settle();
        p.verify_commitments();
    }
}

#[test]
fn channel_reestablish_claiming_unsigned_commitments_without_proof_is_refused() {
    for ct in TYPES {
        let (p, ra, _) = disconnected_pair(ct);
        let base = Reestablish::of(&ra);
        for extra in [2, 5, 1 << 40] {
            let lie =
                Reestablish { next_commitment_number: base.next_commitment_number + extra, ..Reestablish::of(&ra) };
            refuse(&p.b.ch, &p.b.signer, lie.msg(), Misbehaviour::ReestablishMismatch);
        }
    }
}

#[test]
fn stale_snapshot_learns_it_lost_state_and_broadcasts_nothing() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        pay(&mut p, 10_000_000, 1);
        let stale = p.b.ch.snapshot();
        let stale_commitment = p.b.ch.holder_commitment_number();
        pay(&mut p, 10_000_000, 2);
        pay(&mut p, 10_000_000, 3);
        assert!(p.b.ch.holder_commitment_number() >= stale_commitment + 2);
        let check = RestoreCheck { channel_id: Some(p.b.ch.channel_id()), min_update_id: 0 };
        let mut old_b = Channel::restore(&stale, check).expect("the stale snapshot is a valid snapshot");
        let fx = p.a.ch.handle_disconnect();
        p.a.absorb_pub(fx, &mut VecDeque::new());
        let fx = old_b.handle_disconnect();
        assert!(fx.is_empty(), "nothing unsigned to forget");
        let ra = p.a.ch.reestablish(&p.a.signer).unwrap();
        let rb = old_b.reestablish(&p.b.signer).unwrap();
        // The stale side sees a's proof (its own secret of a commitment it does not know it revoked).
        let fx = old_b.handle_message(ra, &p.b.signer, tip()).expect("a proof is not an error");
        assert_eq!(fx.events, vec![Event::LostState]);
        assert!(fx.broadcast.is_empty(), "the stale side must not broadcast its old state: {fx:?}");
        let [error @ Msg::Error { .. }] = &fx.send[..] else { panic!("an error asks the peer to close: {fx:?}") };
        let error = error.clone();
        // It remembers (persisted) that it must never broadcast its commitment, even restored.
        let update = fx.update.expect("the loss is persisted");
        assert!(old_b.has_lost_state());
        let check = RestoreCheck { channel_id: Some(p.b.ch.channel_id()), min_update_id: update.update_id };
        let mut old_b = Channel::restore_with_records(&stale, &update.records, check).expect("restores");
        assert!(old_b.has_lost_state());
        refuse_cmd(&mut old_b, CommandError::StateLost, |c| c.force_close(&signer_b()));
        refuse_cmd(&mut old_b, CommandError::WrongPhase, |c| {
            c.add_htlc(MilliSats::from_msat(1_000_000), paychan::core::PaymentHash([1; 32]), 2_000, onion())
        });
        // A reestablish after the loss gets the `error` again (the first may have been lost).
        let fx = old_b.handle_message(rb.clone(), &p.b.signer, tip()).unwrap();
        assert!(fx.broadcast.is_empty() && matches!(&fx.send[..], [Msg::Error { .. }]), "{fx:?}");
        refuse(
            &old_b,
            &p.b.signer,
            Msg::UpdateFee { channel_id: p.b.ch.channel_id(), feerate_per_kw: 3_000 },
            Misbehaviour::UnexpectedMessage,
        );
        // The up-to-date side refuses the stale numbers and closes.
        let err = refuse(&p.a.ch, &p.a.signer, rb, Misbehaviour::ReestablishMismatch);
        assert_eq!(err.action, Action::Close);
        // The stale side's `error` makes the peer fail the channel: it broadcasts its commitment.
        let fx = p.a.ch.handle_message(Msg::decode(&error.encode()).unwrap(), &p.a.signer, tip()).unwrap();
        assert!(matches!(fx.events.last(), Some(Event::FailedByPeer { .. })));
        let commitment = fx.broadcast[0].clone();
        assert_eq!(commitment, p.a.ch.holder_commitment_tx(&p.a.signer).unwrap());
        // An `error` to the stale side changes nothing and broadcasts nothing.
        let fx = old_b.handle_message(error, &p.b.signer, tip()).unwrap();
        assert!(fx.broadcast.is_empty() && fx.update.is_none());
        // The stale side still gets its own output of the peer's commitment.
        let h = paychan::core::BlockHeight(tip().height.0 + 1);
        let mut swept = old_b.handle_chain(ChainEvent::Confirmed { tx: &commitment, height: h }, &p.b.signer).broadcast;
        for k in 1..=3 {
            let at = ChainTip { height: paychan::core::BlockHeight(h.0 + k) };
            swept.extend(old_b.handle_chain(ChainEvent::Tip(at), &p.b.signer).broadcast);
        }
        assert!(swept.iter().all(|t| t.input.iter().all(|i| i.previous_output.txid == commitment.compute_txid())));
        let b_balance = p.b.ch.balances(Side::Holder).holder.to_sat_floor();
        // Its to_remote output (after its one-block CSV with anchors) goes to its sweep script.
        let claim = swept.iter().find(|t| t.input.len() == 1).expect("to_remote swept");
        let spent = commitment.output[claim.input[0].previous_output.vout as usize].clone();
        assert_eq!(spent.value.to_sat(), b_balance);
        common::verify_spend(claim, &[spent]).expect("Core accepts the sweep");
    }
}

// ---------------------------------------------------------------------------------------------
// Local commands
// ---------------------------------------------------------------------------------------------

#[test]
fn local_commands_refused_leave_the_channel_unchanged() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        let pre = PaymentPreimage([1; 32]);
        refuse_cmd(&mut p.a.ch, CommandError::NothingToCommit, |c| c.commit(&signer_a()));
        refuse_cmd(&mut p.b.ch, CommandError::NothingToCommit, |c| c.commit(&signer_b()));
        refuse_cmd(&mut p.b.ch, CommandError::Fee, |c| c.update_fee(5_000));
        refuse_cmd(&mut p.a.ch, CommandError::UnknownHtlc, |c| c.fulfill_htlc(0, pre));
        refuse_cmd(&mut p.a.ch, CommandError::UnknownHtlc, |c| c.fail_htlc(0, vec![]));
        let (id, fx) = p.a.ch.add_htlc(MilliSats::from_msat(20_000_000), pre.hash(), 2_000, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        let fx = p.a.ch.commit(&p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        let (_, fx) = p.a.ch.add_htlc(MilliSats::from_msat(20_000_000), pre.hash(), 2_000, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        refuse_cmd(&mut p.a.ch, CommandError::WrongPhase, |c| c.commit(&signer_a()));
        // The received HTLC is not irrevocably committed yet.
        p.deliver_to_b();
        refuse_cmd(&mut p.b.ch, CommandError::UnknownHtlc, |c| c.fulfill_htlc(id, pre));
        p.settle();
        refuse_cmd(&mut p.b.ch, CommandError::WrongPreimage, |c| c.fulfill_htlc(id, PaymentPreimage([2; 32])));
        refuse_cmd(&mut p.b.ch, CommandError::Amount, |c| c.fail_malformed_htlc(id, [0; 32], 0x4005));
        refuse_cmd(&mut p.b.ch, CommandError::Amount, |c| c.fail_htlc(id, vec![0; 65_536]));
        // b cannot remove what it did not receive; a cannot remove its own offer.
        refuse_cmd(&mut p.b.ch, CommandError::UnknownHtlc, |c| c.fulfill_htlc(id + 5, pre));
        refuse_cmd(&mut p.a.ch, CommandError::UnknownHtlc, |c| c.fulfill_htlc(id, pre));
        let fx = p.b.ch.fulfill_htlc(id, pre).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        refuse_cmd(&mut p.b.ch, CommandError::UnknownHtlc, |c| c.fulfill_htlc(id, pre));
        refuse_cmd(&mut p.b.ch, CommandError::UnknownHtlc, |c| c.fail_htlc(id, vec![]));
        p.settle();
        let fx = p.a.ch.shutdown(p2wpkh(0xaa), (Amount::from_sat(100), Amount::from_sat(5_000)), &p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        refuse_cmd(&mut p.a.ch, CommandError::WrongPhase, |c| {
            c.add_htlc(MilliSats::from_msat(1_000_000), pre.hash(), 2_000, onion())
        });
        refuse_cmd(&mut p.a.ch, CommandError::WrongPhase, |c| {
            c.shutdown(p2wpkh(0xaa), (Amount::from_sat(100), Amount::from_sat(5_000)), &signer_a())
        });
        refuse_cmd(&mut p.b.ch, CommandError::Amount, |c| {
            c.shutdown(p2wpkh(0xbb), (Amount::from_sat(5_000), Amount::from_sat(100)), &signer_b())
        });
        refuse_cmd(&mut p.a.ch, CommandError::WrongPhase, |c| c.funding_tx(p.funding.clone(), &signer_a()));
    }
}

#[test]
fn peer_add_crossing_our_shutdown_is_accepted() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        let pre = PaymentPreimage([1; 32]);
        let (id, fx) = p.b.ch.add_htlc(MilliSats::from_msat(10_000_000), pre.hash(), 2_000, onion()).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        let fx = p.b.ch.commit(&p.b.signer).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        let fx = p.a.ch.shutdown(p2wpkh(0xaa), (Amount::from_sat(100), Amount::from_sat(5_000)), &p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        // b's add and signature were on the wire before b saw a's shutdown.
        p.settle();
        assert!(p.a.ch.is_htlc_irrevocably_committed(Side::Counterparty, id));
        let fx = p.a.ch.fail_htlc(id, vec![0x40, 0x08]).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.settle();
        let fx = p.b.ch.shutdown(p2wpkh(0xbb), (Amount::from_sat(100), Amount::from_sat(5_000)), &p.b.signer).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        p.settle();
        assert!(p.a.ch.closing_transaction().is_some() && p.b.ch.closing_transaction().is_some());
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshots and penalty records
// ---------------------------------------------------------------------------------------------

/// Where each TLV record of a snapshot starts and ends (after the kind and version bytes).
fn record_bounds(snap: &[u8]) -> Vec<usize> {
    fn bigsize(b: &[u8], at: &mut usize) -> usize {
        let first = b[*at];
        let (n, width) = match first {
            0xfd => (u64::from(u16::from_be_bytes([b[*at + 1], b[*at + 2]])), 3),
            0xfe => (u64::from(u32::from_be_bytes(b[*at + 1..*at + 5].try_into().unwrap())), 5),
            0xff => (u64::from_be_bytes(b[*at + 1..*at + 9].try_into().unwrap()), 9),
            n => (u64::from(n), 1),
        };
        *at += width;
        n as usize
    }
    let mut at = 2;
    let mut bounds = vec![at];
    while at < snap.len() {
        bigsize(snap, &mut at);
        let len = bigsize(snap, &mut at);
        at += len;
        bounds.push(at);
    }
    assert_eq!(at, snap.len());
    bounds
}

#[track_caller]
fn assert_prefix_refused(snap: &[u8], len: usize) {
    match Channel::restore(&snap[..len], RestoreCheck::default()) {
        Err(RestoreError::Decode(_)) => {}
        other => panic!("prefix of {len}/{} bytes: {:?}", snap.len(), other.map(|c| c.update_id())),
    }
}

/// Truncated, extended, foreign and stale snapshots; truncated records.
///
/// Decoding parses a dozen public keys, which libsecp256k1 does slowly in a debug build
/// (~0.1 ms each): every prefix length is tried on two snapshots (a quiescent channel and one
/// with an HTLC in flight), and on every other snapshot of the run the prefixes within 3 bytes
/// of each TLV record boundary (a cut anywhere inside a record fails at that record's header).
fn damaged_snapshots_and_records_are_refused(ct: ChannelType) {
    let log = scenario(ct);
    // Each snapshot with the onion records its HTLCs in flight refer to.
    let mut snapshots: Vec<(Vec<u8>, Vec<Vec<u8>>)> =
        log.iter().filter_map(|d| d.receiver.as_ref().map(|c| (c.snapshot(), onion_records(c)))).collect();
    snapshots.sort();
    snapshots.dedup();
    assert!(snapshots.iter().any(|(_, r)| !r.is_empty()), "some snapshots refer to onion records");
    assert!(snapshots.len() >= 20, "{}", snapshots.len());
    let normal = |r: &&Delivered| r.receiver.as_ref().is_some_and(|c| c.phase() == Phase::Normal);
    let quiescent = log.iter().filter(normal).find(|d| d.receiver.as_ref().unwrap().htlcs().is_empty()).unwrap();
    let one_htlc = log.iter().filter(normal).find(|d| d.receiver.as_ref().unwrap().htlcs().len() == 1).unwrap();
    for d in [quiescent, one_htlc] {
        let snap = d.receiver.as_ref().unwrap().snapshot();
        for len in 0..snap.len() {
            assert_prefix_refused(&snap, len);
        }
    }
    for (snap, records) in &snapshots {
        let restored = Channel::restore_with_records(snap, records, RestoreCheck::default()).expect("valid snapshot");
        assert!(restored.snapshot() == *snap, "restore is exact");
        if let Some(last) = records.last() {
            // An incomplete or damaged log is refused, not restored without the onion.
            let all_but_one = &records[..records.len() - 1];
            assert_eq!(
                Channel::restore_with_records(snap, all_but_one, RestoreCheck::default()).err(),
                Some(RestoreError::MissingRecord)
            );
            assert_eq!(Channel::restore(snap, RestoreCheck::default()).err(), Some(RestoreError::MissingRecord));
            let damaged: Vec<Vec<u8>> = all_but_one.iter().cloned().chain([last[..last.len() - 1].to_vec()]).collect();
            assert!(matches!(
                Channel::restore_with_records(snap, &damaged, RestoreCheck::default()),
                Err(RestoreError::Decode(_))
            ));
        }
        for bound in record_bounds(snap) {
            for len in bound.saturating_sub(3)..(bound + 4).min(snap.len()) {
                assert_prefix_refused(snap, len);
            }
        }
        // One more byte is a truncated record (or an out-of-order type), whatever the byte.
        for b in [0x00, 0x01, 0x18, 0x19, 0x1a, 0x7f, 0xfc, 0xfd, 0xfe, 0xff] {
            let mut longer = snap.clone();
            longer.push(b);
            assert!(
                matches!(Channel::restore(&longer, RestoreCheck::default()), Err(RestoreError::Decode(_))),
                "+{b:#04x}"
            );
        }
        // Identity and freshness.
        let id = restored.channel_id();
        let update_id = restored.update_id();
        let wrong = RestoreCheck { channel_id: Some(OTHER_ID), min_update_id: 0 };
        assert_eq!(Channel::restore_with_records(snap, records, wrong).err(), Some(RestoreError::WrongChannel));
        let newer = RestoreCheck { channel_id: Some(id), min_update_id: update_id + 1 };
        assert_eq!(
            Channel::restore_with_records(snap, records, newer).err(),
            Some(RestoreError::Stale { snapshot: update_id, expected_at_least: update_id + 1 })
        );
        let exact = RestoreCheck { channel_id: Some(id), min_update_id: update_id };
        assert!(Channel::restore_with_records(snap, records, exact).is_ok());
    }
    // Every byte value appended to one snapshot.
    let snap = quiescent.receiver.as_ref().unwrap().snapshot();
    for b in 0..=255u8 {
        let mut longer = snap.clone();
        longer.push(b);
        assert!(
            matches!(Channel::restore(&longer, RestoreCheck::default()), Err(RestoreError::Decode(_))),
            "+{b:#04x}"
        );
    }
    // Records: per HTLC one onion record and one penalty record (besides the deltas), refused
    // when truncated or extended.
    let mut p = Pair::open(ct, CAPACITY, PUSH);
    pay(&mut p, 10_000_000, 1);
    let not_deltas =
        |r: &[Vec<u8>]| -> Vec<Vec<u8>> { r.iter().filter(|r| !paychan::core::delta::is_delta(r)).cloned().collect() };
    let (records_a, records_b) = (not_deltas(&p.a.records), not_deltas(&p.b.records));
    assert_eq!((records_a.len(), records_b.len()), (2, 2));
    let onion_record = records_a[0].clone();
    assert!(matches!(Record::decode(&onion_record), Ok(Record::Onion(_))));
    for len in 0..onion_record.len() {
        assert!(Record::decode(&onion_record[..len]).is_err(), "onion record prefix {len}");
    }
    for b in [0x00, 0x01, 0x7f, 0xff] {
        let mut longer = onion_record.clone();
        longer.push(b);
        assert!(Record::decode(&longer).is_err(), "onion record +{b:#04x}");
    }
    let record = records_a[1].clone();
    assert!(matches!(
        Channel::restore(&record, RestoreCheck::default()),
        Err(RestoreError::Decode(DecodeError::WrongKind { .. }))
    ));
    let decoded = PenaltyRecord::decode(&record).expect("record decodes");
    assert_eq!(decoded.encode(), record);
    assert_eq!((decoded.offerer, decoded.amount), (Side::Holder, MilliSats::from_msat(10_000_000)));
    for len in 0..record.len() {
        assert!(PenaltyRecord::decode(&record[..len]).is_err(), "record prefix {len}");
    }
    for b in 0..=255u8 {
        let mut longer = record.clone();
        longer.push(b);
        assert!(PenaltyRecord::decode(&longer).is_err(), "record +{b:#04x}");
    }
    assert!(matches!(PenaltyRecord::decode(&p.a.ch.snapshot()), Err(DecodeError::WrongKind { .. })));
}

#[test]
fn damaged_snapshots_and_records_are_refused_static_remotekey() {
    damaged_snapshots_and_records_are_refused(ChannelType::StaticRemoteKey);
}

#[test]
fn damaged_snapshots_and_records_are_refused_anchors() {
    damaged_snapshots_and_records_are_refused(ChannelType::AnchorsZeroFeeHtlc);
}

#[test]
fn mutated_snapshots_never_panic() {
    let log = scenario(ChannelType::AnchorsZeroFeeHtlc);
    let ch = log.iter().rev().find_map(|d| d.receiver.as_ref().filter(|r| r.htlcs().len() >= 2)).unwrap();
    let (snap, records) = (ch.snapshot(), onion_records(ch));
    let mut rng = Rng(0x05ee_d5a9);
    let mut restored = 0;
    for _ in 0..500 {
        let mut bytes = snap.clone();
        let i = rng.below(bytes.len() as u64) as usize;
        bytes[i] ^= 1 + rng.below(255) as u8;
        if let Ok(ch) = Channel::restore_with_records(&bytes, &records, RestoreCheck::default()) {
            // Whatever restores, re-encodes and answers questions without panicking.
            let _ = ch.snapshot();
            let _ = ch.balances(Side::Holder);
            let _ = ch.counterparty_commitment();
            restored += 1;
        }
    }
    assert!(restored > 0);
}

// ---------------------------------------------------------------------------------------------
// Wire format of every message kind
// ---------------------------------------------------------------------------------------------

/// The message without its optional TLV records, and how many records it has.
fn without_tlvs(m: &Msg) -> (Msg, usize) {
    let mut m = m.clone();
    let n = match &mut m {
        Msg::OpenChannel(o) => {
            let n = usize::from(o.tlvs.upfront_shutdown_script.is_some()) + usize::from(o.tlvs.channel_type.is_some());
            o.tlvs = Default::default();
            n
        }
        Msg::AcceptChannel(a) => {
            let n = usize::from(a.tlvs.upfront_shutdown_script.is_some()) + usize::from(a.tlvs.channel_type.is_some());
            a.tlvs = Default::default();
            n
        }
        Msg::ClosingSigned { fee_range, .. } => usize::from(fee_range.take().is_some()),
        _ => 0,
    };
    (m, n)
}

#[test]
fn every_message_kind_rejects_truncation_unknown_even_tlvs_and_garbage() {
    for ct in TYPES {
        let log = scenario(ct);
        for ty in ALL_TYPES {
            // Every distinct message of this kind the run produced.
            let mut msgs: Vec<Msg> = log.iter().filter(|d| d.msg.type_number() == ty).map(|d| d.msg.clone()).collect();
            msgs.dedup();
            for m in msgs {
                let full = m.encode();
                assert_eq!(Msg::decode(&full).as_ref(), Ok(&m));
                let (bare, records) = without_tlvs(&m);
                let fixed = bare.encode().len();
                let mut boundaries = 0;
                for len in 0..full.len() {
                    match Msg::decode(&full[..len]) {
                        Err(DecodeError::Truncated) => {}
                        Ok(shorter) if len >= fixed => {
                            // Only where a whole TLV record was cut off.
                            assert_ne!(shorter, m);
                            boundaries += 1;
                        }
                        other => panic!("type {ty}: prefix {len}/{}: {other:?}", full.len()),
                    }
                }
                assert_eq!(boundaries, records, "type {ty}: Ok prefixes only at TLV record boundaries");
                let with = |extra: &[u8]| [&full[..], extra].concat();
                // Unknown TLVs: even ones are refused, odd ones skipped.
                for (even, odd) in [
                    (&[0x64u8, 0x01, 0x00][..], &[0x65u8, 0x01, 0x00][..]),
                    (&[0xfd, 0x01, 0x00, 0x00], &[0xfd, 0x01, 0x01, 0x02, 0xaa, 0xbb]),
                ] {
                    let expected_type = if even[0] == 0xfd { 256 } else { 100 };
                    assert_eq!(Msg::decode(&with(even)), Err(DecodeError::UnknownEvenType(expected_type)), "type {ty}");
                    assert_eq!(Msg::decode(&with(odd)), Ok(m.clone()), "type {ty}: odd TLV skipped");
                }
                // A non-minimal TLV type and out-of-order records.
                assert!(Msg::decode(&with(&[0xfd, 0x00, 0x65, 0x00])).is_err());
                assert!(Msg::decode(&with(&[0x67, 0x00, 0x65, 0x00])).is_err());
                // Every single trailing garbage byte.
                for b in 0..=255u8 {
                    assert!(Msg::decode(&with(&[b])).is_err(), "type {ty}: trailing {b:#04x} accepted");
                }
                // The same body under an unknown message type.
                // (Type 1 is BOLT #1's `warning`; the full type number is reported, not its low byte.)
                for unknown in [0u16, 2, 16, 18, 19, 31, 37, 40, 129, 137, 255, 256 + 17, 0x8000 | ty, 0xffff] {
                    let mut bytes = full.clone();
                    bytes[..2].copy_from_slice(&unknown.to_be_bytes());
                    assert_eq!(Msg::decode(&bytes), Err(DecodeError::UnknownMessageType(unknown)), "type {unknown}");
                }
            }
        }
    }
}

/// ~2,000 single-byte mutations per message kind (1,000 on each channel type), each fed, if it
/// decodes, to the peer that received the original, in the state it received it in.
fn mutated_messages_never_panic_and_refusals_change_nothing(ct: ChannelType, seed: u64) {
    const MUTATIONS: usize = 1_000;
    let log = scenario(ct);
    let mut rng = Rng(seed);
    for ty in ALL_TYPES {
        let d = logged(&log, ty);
        let signer = d.signer();
        let full = d.msg.encode();
        let (mut undecodable, mut accepted, mut refused) = (0, 0, 0);
        for _ in 0..MUTATIONS {
            let mut bytes = full.clone();
            let i = rng.below(bytes.len() as u64) as usize;
            bytes[i] ^= 1 + rng.below(255) as u8;
            let Ok(msg) = Msg::decode(&bytes) else {
                undecodable += 1;
                continue;
            };
            match (&d.receiver, msg) {
                (None, Msg::OpenChannel(open)) => {
                    match Channel::accept(&open, config(ct), &signer, ChainTip::at(TIP)) {
                        Ok(_) => accepted += 1,
                        Err(_) => refused += 1,
                    }
                }
                (Some(receiver), msg) => {
                    let mut ch = receiver.clone();
                    let before = ch.snapshot();
                    match ch.handle_message(msg, &signer, tip()) {
                        Ok(_) => accepted += 1,
                        Err(e) => {
                            assert!(ch.snapshot() == before, "type {ty}: refusal ({e:?}) changed the state");
                            refused += 1;
                        }
                    }
                }
                (None, _) => refused += 1,
            }
        }
        assert_eq!(undecodable + accepted + refused, MUTATIONS);
        assert!(refused > 0, "type {ty}: no mutation reached the channel and was refused");
    }
}

#[test]
fn mutated_messages_never_panic_static_remotekey() {
    mutated_messages_never_panic_and_refusals_change_nothing(ChannelType::StaticRemoteKey, 0x1234_5678_9abc_def1);
}

#[test]
fn mutated_messages_never_panic_anchors() {
    mutated_messages_never_panic_and_refusals_change_nothing(ChannelType::AnchorsZeroFeeHtlc, 0x0fed_cba9_8765_4321);
}
