//! The one funding flow of every layer (`core::funding`): the request in `Effects::funding`, the
//! same checks of the wallet's transaction (refused typed, state unchanged), the funding
//! broadcast by the channel only once the funder is safe; the key identity every snapshot
//! records (a wrong signer refused at restore, older versions still restored); a Spilman payer
//! that sends `Open` again to a payee that never got it.

use paychan::bitcoin::hashes::Hash;
use paychan::bitcoin::{absolute, transaction, Amount, OutPoint, ScriptBuf, Sequence};
use paychan::bitcoin::{Transaction, TxIn, TxOut, Txid, WPubkeyHash, Witness};
use paychan::core::commitment::ChannelType;
use paychan::core::funding::FundingRequest;
use paychan::core::keys::Seed;
use paychan::core::sign::{InMemorySigner, KeyFingerprint, KeyIdentity, Signer};
use paychan::core::{BlockHeight, MilliSats};
use paychan::driving::{ChainTip, ChannelId, RestoreCheck, RestoreError};
use paychan::{duplex, lightning, spilman};

const TIP: ChainTip = ChainTip::at(800_000);

fn script(n: u8) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]))
}

fn signer(seed: u8, index: u64) -> InMemorySigner {
    InMemorySigner::from_seed(&Seed::from_bytes([seed; 32]), index)
}

/// A wallet's transaction: one segwit input (its signature made up), `outputs`.
fn funding_tx(outputs: Vec<TxOut>) -> Transaction {
    Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid: Txid::from_byte_array([7; 32]), vout: 1 },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::from_slice(&[[0x30; 72].as_slice(), &[0x02; 33]]),
        }],
        output: outputs,
    }
}

/// The wallet's honest answer to `request`: the output and some change.
fn honest(request: &FundingRequest) -> Transaction {
    funding_tx(vec![TxOut { value: Amount::from_sat(12_345), script_pubkey: script(0xcc) }, request.output.clone()])
}

/// Transactions that do not follow the request, and whether each is refused as malleable (else
/// as paying no funding output exactly once).
fn hostile(request: &FundingRequest) -> Vec<(&'static str, Transaction, bool)> {
    let out = request.output.clone();
    let change = TxOut { value: Amount::from_sat(1_000), script_pubkey: script(0xcc) };
    let mut short = out.clone();
    short.value -= Amount::from_sat(1);
    let mut long = out.clone();
    long.value += Amount::from_sat(1);
    let mut other_script = out.clone();
    other_script.script_pubkey = script(0xdd);
    let mut legacy = honest(request);
    legacy.input[0].script_sig = ScriptBuf::from_bytes(vec![0x00]);
    vec![
        ("one sat short", funding_tx(vec![change.clone(), short]), false),
        ("one sat more", funding_tx(vec![long]), false),
        ("another script", funding_tx(vec![other_script, change.clone()]), false),
        ("the output twice", funding_tx(vec![out.clone(), out.clone()]), false),
        ("no output", funding_tx(vec![change]), false),
        ("a scriptSig", legacy, true),
    ]
}

/// Gives every hostile transaction to `fund` (which returns the result and the snapshot after):
/// each must be refused with the expected error and leave the snapshot as it was.
fn refuses_hostile<E: std::fmt::Debug + PartialEq>(
    request: &FundingRequest,
    before: &[u8],
    no_output: E,
    malleable: E,
    mut fund: impl FnMut(Transaction) -> (Result<(), E>, Vec<u8>),
) {
    for (what, tx, is_malleable) in hostile(request) {
        let (result, after) = fund(tx);
        let want = if is_malleable { &malleable } else { &no_output };
        assert_eq!(result.as_ref().err(), Some(want), "{what}");
        assert_eq!(after, before, "{what}: a refused funding changed the channel");
    }
}

// ---------------------------------------------------------------- Spilman

fn payee_config(variant: spilman::Variant) -> spilman::PayeeConfig {
    spilman::PayeeConfig {
        variant,
        payee_script: script(2),
        expiry: BlockHeight(800_000 + 1_008),
        min_first_payment: Amount::from_sat(1_000),
        dust_limit: Amount::from_sat(546),
        payment_fee: Amount::from_sat(300),
        close_margin: 36,
        htlc_min_blocks: 24,
        min_depth: 0,
        claim_fee: Amount::from_sat(300),
    }
}

fn payer_config() -> spilman::PayerConfig {
    spilman::PayerConfig {
        capacity: Amount::from_sat(100_000),
        payer_script: script(1),
        refund_fee: Amount::from_sat(300),
        claim_fee: Amount::from_sat(300),
        first_payment: Amount::from_sat(1_000),
        max_lifetime: 4_320,
    }
}

struct Spilman {
    payer: spilman::Payer,
    payee: spilman::Payee,
    signers: [InMemorySigner; 2],
    request: FundingRequest,
    /// The payer's stored snapshot.
    payer_disk: Vec<u8>,
}

fn spilman_open(variant: spilman::Variant) -> Spilman {
    let signers = [signer(1, 3), signer(2, 4)];
    let (payee, fx) = spilman::Payee::new(payee_config(variant), &signers[1]);
    let Some(spilman::Msg::Offer(offer)) = fx.send.first().cloned() else { panic!("offer") };
    let (payer, fx) = spilman::Payer::open(offer, payer_config(), &signers[0], TIP).expect("offer acceptable");
    let request = fx.funding.clone().expect("the payer asks for its funding");
    assert_eq!(request.output, payer.funding_output());
    assert_eq!(request.temporary_channel_id, payee.temporary_channel_id());
    assert_eq!(payer.funding_request(), Some(request.clone()));
    let payer_disk = fx.update.and_then(|u| u.snapshot).expect("the payer's first snapshot");
    Spilman { payer, payee, signers, request, payer_disk }
}

impl Spilman {
    /// Persists the payer's effects, returns what it sends and broadcasts.
    fn payer_fx(&mut self, fx: spilman::Effects) -> (Vec<spilman::Msg>, Vec<Transaction>) {
        if let Some(s) = fx.update.and_then(|u| u.snapshot) {
            self.payer_disk = s;
        }
        (fx.send, fx.broadcast)
    }

    fn give_payee(&mut self, msg: spilman::Msg) -> spilman::Effects {
        let msg = spilman::Msg::decode(&msg.encode()).expect("decodes");
        self.payee.handle_message(msg, &self.signers[1], TIP).expect("the payee accepts")
    }

    fn give_payer(&mut self, msg: spilman::Msg) -> (Vec<spilman::Msg>, Vec<Transaction>) {
        let msg = spilman::Msg::decode(&msg.encode()).expect("decodes");
        let fx = self.payer.handle_message(msg, &self.signers[0], TIP).expect("the payer accepts");
        self.payer_fx(fx)
    }

    /// The payer crashes and restarts from its disk.
    fn restart_payer(&mut self) {
        let check = RestoreCheck { channel_id: self.payer.channel_id(), min_update_id: self.payer.update_id() };
        self.payer = spilman::Payer::restore_with_signer(&self.payer_disk, check, &self.signers[0]).expect("restores");
    }

    /// A new connection: both send `reestablish()`; returns what the payer sends and broadcasts
    /// in answer to the payee's.
    fn reconnect(&mut self) -> (Vec<spilman::Msg>, Vec<Transaction>) {
        let fx = self.give_payee(self.payer.reestablish());
        assert!(fx.send.is_empty());
        self.give_payer(self.payee.reestablish())
    }
}

#[test]
fn spilman_funding_follows_the_one_flow() {
    for variant in [spilman::Variant::Cltv, spilman::Variant::PresignedRefund] {
        let mut s = spilman_open(variant);
        let before = s.payer.snapshot();
        let (payer, sig) = (&mut s.payer, &s.signers[0]);
        refuses_hostile(
            &s.request,
            &before,
            spilman::CommandError::NoFundingOutput,
            spilman::CommandError::MalleableFunding,
            |tx| (payer.fund(tx, sig).map(drop), payer.snapshot()),
        );
        let tx = honest(&s.request);
        let fx = s.payer.fund(tx.clone(), &s.signers[0]).expect("the honest funding");
        assert_eq!(s.payer.funding_request(), None, "answered");
        let (send, broadcast) = s.payer_fx(fx);
        let open = match variant {
            spilman::Variant::Cltv => {
                assert_eq!(
                    broadcast,
                    std::slice::from_ref(&tx),
                    "CLTV: the refund needs no signature, broadcast at once"
                );
                send
            }
            spilman::Variant::PresignedRefund => {
                assert!(broadcast.is_empty(), "nothing before the payee signed the refund");
                let [spilman::Msg::RefundRequest(r)] = send.as_slice() else { panic!("{send:?}") };
                assert_eq!(r.funding_outpoint.txid, tx.compute_txid(), "the payee sees the outpoint only");
                let signed = s.give_payee(send[0].clone()).send;
                let (send, broadcast) = s.give_payer(signed[0].clone());
                assert_eq!(broadcast, std::slice::from_ref(&tx), "broadcast once the refund is signed");
                send
            }
        };
        let fx = s.give_payee(open[0].clone());
        assert_eq!(fx.broadcast, [tx], "the payee may broadcast it too");
        assert_eq!(s.payee.received(), Amount::from_sat(1_000));
    }
}

/// Rewrites the `Open` a hostile payer sends: its funding transaction changed by `f`.
fn with_funding(open: &spilman::Msg, f: impl FnOnce(&mut Transaction, &mut u32)) -> spilman::Msg {
    let spilman::Msg::Open(mut o) = open.clone() else { panic!("an Open") };
    f(&mut o.funding_tx, &mut o.funding_vout);
    spilman::Msg::Open(o)
}

#[test]
fn spilman_payee_refuses_a_funding_that_does_not_pay_the_channel_exactly() {
    let mut s = spilman_open(spilman::Variant::Cltv);
    let fx = s.payer.fund(honest(&s.request), &s.signers[0]).unwrap();
    let open = fx.send[0].clone();
    let vout = 1;
    let cases: Vec<(&str, spilman::Msg, Option<spilman::Misbehaviour>)> = vec![
        (
            "the channel output twice",
            with_funding(&open, |tx, _| tx.output.push(tx.output[vout].clone())),
            Some(spilman::Misbehaviour::WrongFunding),
        ),
        (
            "a scriptSig",
            with_funding(&open, |tx, _| tx.input[0].script_sig = ScriptBuf::from_bytes(vec![0])),
            Some(spilman::Misbehaviour::MalleableFunding),
        ),
        ("another output named", with_funding(&open, |_, v| *v = 0), Some(spilman::Misbehaviour::WrongFunding)),
        // One sat less: a channel of another capacity, which the first payment does not sign.
        ("one sat short", with_funding(&open, |tx, _| tx.output[vout].value -= Amount::from_sat(1)), None),
    ];
    for (what, msg, want) in cases {
        let before = s.payee.snapshot();
        let err = s.payee.handle_message(msg, &s.signers[1], TIP).expect_err(what);
        if let Some(want) = want {
            assert_eq!(err.kind, want, "{what}");
        }
        assert_eq!(s.payee.snapshot(), before, "{what}: the payee changed");
        assert_eq!(s.payee.received(), Amount::ZERO);
    }
    let fx = s.give_payee(open);
    assert!(matches!(fx.send.as_slice(), [spilman::Msg::Ack { number: 1 }]));
}

#[test]
fn spilman_payer_sends_open_again_to_a_payee_that_never_got_it() {
    let mut s = spilman_open(spilman::Variant::Cltv);
    let tx = honest(&s.request);
    let fx = s.payer.fund(tx.clone(), &s.signers[0]).unwrap();
    let _lost = s.payer_fx(fx); // persisted, then the payer crashed: `Open` never left
    s.restart_payer();
    assert_eq!(s.payer.payment_number(), 1);
    let (send, broadcast) = s.reconnect();
    assert!(matches!(send.as_slice(), [spilman::Msg::Open(_)]), "{send:?}");
    assert_eq!(broadcast, [tx]);
    for m in send {
        let fx = s.give_payee(m);
        for ack in fx.send {
            s.give_payer(ack);
        }
    }
    assert_eq!(s.payee.received(), Amount::from_sat(1_000));
    assert_eq!(s.payer.acknowledged(), 1);

    // A payer that paid more before the payee got `Open` sends `Open`, then its newest payment.
    let mut s = spilman_open(spilman::Variant::Cltv);
    let fx = s.payer.fund(honest(&s.request), &s.signers[0]).unwrap();
    let _lost = s.payer_fx(fx);
    let fx = s.payer.pay(Amount::from_sat(500), &s.signers[0]).unwrap();
    let _lost = s.payer_fx(fx);
    let (send, _) = s.reconnect();
    assert!(matches!(send.as_slice(), [spilman::Msg::Open(_), spilman::Msg::Payment(p)] if p.number == 2));
    for m in send {
        let fx = s.give_payee(m);
        for ack in fx.send {
            s.give_payer(ack);
        }
    }
    assert_eq!(s.payee.received(), Amount::from_sat(1_500));
    assert_eq!(s.payer.acknowledged(), 2);
    // Once open, a reconnection sends nothing again.
    let (send, broadcast) = s.reconnect();
    assert!(send.is_empty() && broadcast.is_empty());
}

#[test]
fn spilman_presigned_setup_survives_lost_messages_and_a_payer_restart() {
    let mut s = spilman_open(spilman::Variant::PresignedRefund);
    let tx = honest(&s.request);
    let fx = s.payer.fund(tx.clone(), &s.signers[0]).unwrap();
    let _lost = s.payer_fx(fx); // the `RefundRequest` is lost with the payer's process
    s.restart_payer();
    let (send, broadcast) = s.reconnect();
    assert!(matches!(send.as_slice(), [spilman::Msg::RefundRequest(_)]) && broadcast.is_empty());
    let _lost_signature = s.give_payee(send[0].clone()); // the payee signs; its answer is lost
    let (send, broadcast) = s.reconnect();
    assert!(matches!(send.as_slice(), [spilman::Msg::RefundRequest(_)]) && broadcast.is_empty());
    let signed = s.give_payee(send[0].clone()).send; // the same signature again
    let (open, broadcast) = s.give_payer(signed[0].clone());
    assert_eq!(broadcast, std::slice::from_ref(&tx));
    let _lost_open = open;
    s.restart_payer();
    let (send, broadcast) = s.reconnect();
    assert!(matches!(send.as_slice(), [spilman::Msg::Open(_)]));
    assert_eq!(broadcast, [tx]);
    let fx = s.give_payee(send[0].clone());
    assert!(matches!(fx.send.as_slice(), [spilman::Msg::Ack { number: 1 }]));
    assert_eq!(s.payee.received(), Amount::from_sat(1_000));
}

// ---------------------------------------------------------------- Lightning

struct Ln {
    ch: [lightning::Channel; 2],
    signers: [InMemorySigner; 2],
}

impl Ln {
    /// Delivers `msgs` from `from` and every answer; returns what each side broadcast.
    fn deliver(&mut self, from: usize, msgs: Vec<lightning::Msg>) -> [Vec<Transaction>; 2] {
        let mut out = [Vec::new(), Vec::new()];
        let mut queue: std::collections::VecDeque<_> = msgs.into_iter().map(|m| (1 - from, m)).collect();
        while let Some((to, m)) = queue.pop_front() {
            let m = lightning::Msg::decode(&m.encode()).expect("decodes");
            let fx = self.ch[to].handle_message(m, &self.signers[to], TIP).expect("accepted");
            out[to].extend(fx.broadcast);
            queue.extend(fx.send.into_iter().map(|m| (1 - to, m)));
        }
        out
    }
}

fn ln_open() -> (Ln, FundingRequest) {
    let config = lightning::ChannelConfig::default_for([6; 32], ChannelType::StaticRemoteKey);
    let params = lightning::OpenParams {
        config: config.clone(),
        temporary_channel_id: ChannelId([9; 32]),
        funding: Amount::from_sat(500_000),
        push: MilliSats::from_msat(0),
        feerate_per_kw: 1_000,
    };
    let signers = [signer(0xa1, 11), signer(0xb1, 12)];
    let (a, fx) = lightning::Channel::open(params, &signers[0], TIP).unwrap();
    let lightning::Msg::OpenChannel(open) = &fx.send[0] else { panic!("open_channel") };
    let (b, fx) = lightning::Channel::accept(open, config, &signers[1], TIP).unwrap();
    let mut ln = Ln { ch: [a, b], signers };
    let accept = lightning::Msg::decode(&fx.send[0].encode()).unwrap();
    let fx = ln.ch[0].handle_message(accept, &ln.signers[0], TIP).unwrap();
    let request = fx.funding.clone().expect("the opener asks for its funding");
    assert_eq!(request.temporary_channel_id, ChannelId([9; 32]));
    assert_eq!(request.output.value, Amount::from_sat(500_000));
    assert!(fx.events.iter().any(|e| matches!(e, lightning::Event::FundingGenerationReady { script_pubkey, value }
        if *script_pubkey == request.output.script_pubkey && *value == request.output.value)));
    assert_eq!(ln.ch[0].funding_request(), Some(request.clone()));
    assert_eq!(ln.ch[1].funding_request(), None, "the acceptor funds nothing");
    (ln, request)
}

#[test]
fn lightning_funding_follows_the_one_flow() {
    let (mut ln, request) = ln_open();
    let before = ln.ch[0].snapshot();
    let (ch, sig) = (&mut ln.ch[0], &ln.signers[0]);
    refuses_hostile(
        &request,
        &before,
        lightning::CommandError::NoFundingOutput,
        lightning::CommandError::MalleableFunding,
        |tx| (ch.fund(tx, sig).map(drop), ch.snapshot()),
    );
    let tx = honest(&request);
    let fx = ln.ch[0].fund(tx.clone(), &ln.signers[0]).expect("the honest funding");
    assert!(fx.broadcast.is_empty(), "nothing before funding_signed");
    assert_eq!(ln.ch[0].funding_request(), None);
    let [a, b] = ln.deliver(0, fx.send);
    assert_eq!(a, std::slice::from_ref(&tx), "broadcast by the channel once the acceptor signed");
    assert!(b.is_empty());
    assert_eq!(ln.ch[0].funding_outpoint().map(|o| o.txid), Some(tx.compute_txid()));
}

/// The funding confirmed deep enough before `funding_signed` reached the opener (the wallet
/// broadcast it too, or the message was slow): the opener sends `channel_ready` as soon as
/// `funding_signed` arrives (it used to wait for the next block), and the channel opens.
#[test]
fn lightning_opener_is_ready_at_funding_signed_when_the_funding_already_confirmed() {
    use paychan::driving::ChainEvent;
    let (mut ln, request) = ln_open();
    let tx = honest(&request);
    let fx = ln.ch[0].fund(tx.clone(), &ln.signers[0]).unwrap();
    let created = lightning::Msg::decode(&fx.send[0].encode()).unwrap();
    let fx = ln.ch[1].handle_message(created, &ln.signers[1], TIP).unwrap();
    let [signed] = &fx.send[..] else { panic!("funding_signed") };
    // The funding confirms, three blocks deep (the acceptor's `minimum_depth`), on both sides:
    // the acceptor sends `channel_ready`, the opener cannot yet (no signed commitment).
    let h = BlockHeight(TIP.height.0 + 1);
    let deep = ChainTip::at(h.0 + 2);
    let mut sent: [Vec<lightning::Msg>; 2] = [Vec::new(), Vec::new()];
    for (i, out) in sent.iter_mut().enumerate() {
        let fx = ln.ch[i].handle_chain(ChainEvent::Confirmed { tx: &tx, height: h }, &ln.signers[i]);
        out.extend(fx.send);
        let fx = ln.ch[i].handle_chain(ChainEvent::Tip(deep), &ln.signers[i]);
        out.extend(fx.send);
    }
    assert!(sent[0].is_empty());
    assert!(matches!(sent[1][..], [lightning::Msg::ChannelReady { .. }]), "{:?}", sent[1]);
    let signed = lightning::Msg::decode(&signed.encode()).unwrap();
    let fx = ln.ch[0].handle_message(signed, &ln.signers[0], deep).unwrap();
    assert_eq!(fx.broadcast, vec![tx], "the funding (broadcast again: harmless)");
    assert!(
        matches!(fx.send[..], [lightning::Msg::ChannelReady { .. }]),
        "channel_ready at once, not a block later: {:?}",
        fx.send
    );
    let [a, b] = ln.deliver(0, fx.send);
    assert!(a.is_empty() && b.is_empty());
    let [a, b] = ln.deliver(1, std::mem::take(&mut sent[1]));
    assert!(a.is_empty() && b.is_empty());
    assert_eq!(ln.ch[0].phase(), lightning::Phase::Normal);
    assert_eq!(ln.ch[1].phase(), lightning::Phase::Normal);
}

// ---------------------------------------------------------------- duplex

fn dx_open() -> ([duplex::Channel; 2], [InMemorySigner; 2], FundingRequest) {
    use paychan::testing::duplex::{payout, terms};
    let signers = [signer(0xa0, 21), signer(0xb0, 22)];
    let (a, fx) = duplex::Channel::open(terms(vec![2, 2]), payout(duplex::Role::Initiator), &signers[0], TIP).unwrap();
    let duplex::Msg::Open(open) = fx.send[0].clone() else { panic!("open") };
    let (b, fx) = duplex::Channel::accept(open, payout(duplex::Role::Acceptor), &signers[1], TIP).unwrap();
    let mut ch = [a, b];
    let fx = ch[0].handle_message(fx.send[0].clone(), &signers[0], TIP).unwrap();
    let request = fx.funding.clone().expect("the initiator asks for its funding");
    assert_eq!(Some(request.output.clone()), ch[0].funding_output());
    assert_eq!(request.temporary_channel_id, ch[0].temporary_channel_id());
    assert_eq!(ch[1].funding_request(), None, "the acceptor funds nothing");
    (ch, signers, request)
}

#[test]
fn duplex_funding_follows_the_one_flow() {
    let (mut ch, signers, request) = dx_open();
    let before = ch[0].snapshot();
    let (a, sig) = (&mut ch[0], &signers[0]);
    refuses_hostile(
        &request,
        &before,
        duplex::CommandError::NoFundingOutput,
        duplex::CommandError::MalleableFunding,
        |tx| (a.fund(tx, sig).map(drop), a.snapshot()),
    );
    let tx = honest(&request);
    let fx = ch[0].fund(tx.clone(), &signers[0]).expect("the honest funding");
    assert!(fx.broadcast.is_empty(), "nothing before the tree is signed");
    let duplex::Msg::FundingCreated(created) = &fx.send[0] else { panic!("funding_created") };
    assert_eq!(created.funding_outpoint.txid, tx.compute_txid(), "the peer sees the outpoint only");
    // The initiator restarts before the acceptor answers: the transaction is in its snapshot.
    let stored = fx.update.and_then(|u| u.snapshot).unwrap();
    ch[0] = duplex::Channel::restore_with_signer(&stored, RestoreCheck::default(), &signers[0]).unwrap();
    let answer = ch[1].handle_message(fx.send[0].clone(), &signers[1], TIP).unwrap();
    assert!(answer.broadcast.is_empty());
    let fx = ch[0].handle_message(answer.send[0].clone(), &signers[0], TIP).unwrap();
    assert_eq!(fx.broadcast, std::slice::from_ref(&tx), "broadcast by the channel once both hold the signed tree");
    assert!(fx
        .events
        .iter()
        .any(|e| matches!(e, duplex::Event::FundingSignable { txid } if *txid == tx.compute_txid())));
}

// ---------------------------------------------------------------- key identity

/// The TLV records of a snapshot (`kind ‖ version ‖ records`), without record `drop`, under
/// `version`: the same state as an older writer wrote it.
fn as_older(snapshot: &[u8], drop: u64, version: u8) -> Vec<u8> {
    fn bigsize(b: &[u8], at: &mut usize) -> u64 {
        let first = b[*at];
        *at += 1;
        let n = match first {
            0xfd => 2,
            0xfe => 4,
            0xff => 8,
            v => return u64::from(v),
        };
        let v = b[*at..*at + n].iter().fold(0u64, |acc, x| acc << 8 | u64::from(*x));
        *at += n;
        v
    }
    let mut out = vec![snapshot[0], version];
    let mut at = 2;
    let mut dropped = false;
    while at < snapshot.len() {
        let start = at;
        let ty = bigsize(snapshot, &mut at);
        let len = bigsize(snapshot, &mut at) as usize;
        at += len;
        if ty == drop {
            dropped = true;
        } else {
            out.extend_from_slice(&snapshot[start..at]);
        }
    }
    assert!(dropped, "record {drop} present");
    out
}

/// Checks a layer's key identity: recorded from the signer, a wrong signer refused at restore,
/// the right one recreated from the identity alone, an older snapshot restored without it.
fn check_identity<C: std::fmt::Debug>(
    seed: u8,
    index: u64,
    identity: Option<KeyIdentity>,
    snapshot: &[u8],
    older: (u64, u8),
    restore: impl Fn(&[u8], &InMemorySigner) -> Result<C, RestoreError>,
    identity_of: impl Fn(&C) -> Option<KeyIdentity>,
) {
    let own = signer(seed, index);
    let expected = KeyIdentity { index: Some(index), fingerprint: KeyFingerprint::of(own.pubkeys()) };
    assert_eq!(identity, Some(expected));
    // After a restart: the snapshot alone names the signer to recreate.
    let restored = restore(snapshot, &own).expect("the channel's signer");
    let id = identity_of(&restored).expect("recorded");
    let recreated = InMemorySigner::from_seed(&Seed::from_bytes([seed; 32]), id.index.expect("index"));
    assert!(restore(snapshot, &recreated).is_ok());
    // Another index of the same seed, another seed: refused, typed.
    for wrong in [signer(seed, index + 1), signer(seed.wrapping_add(1), index)] {
        let err = restore(snapshot, &wrong).expect_err("a wrong signer");
        assert_eq!(err, RestoreError::WrongSigner { recorded: Some(expected), given: KeyIdentity::of(&wrong) });
    }
    // A signer that does not know its index but holds the keys is the right one.
    let unindexed =
        InMemorySigner::new(paychan::core::keys::ChannelSecrets::from_seed(&Seed::from_bytes([seed; 32]), index));
    assert!(restore(snapshot, &unindexed).is_ok());
    // The older version, without the identity, still restores; the public-key check still
    // refuses a wrong signer.
    let old = as_older(snapshot, older.0, older.1);
    let restored = restore(&old, &own).expect("an older snapshot restores");
    assert_eq!(identity_of(&restored), None);
    let wrong = signer(seed, index + 1);
    assert_eq!(
        restore(&old, &wrong).expect_err("a wrong signer"),
        RestoreError::WrongSigner { recorded: None, given: KeyIdentity::of(&wrong) }
    );
}

#[test]
fn every_snapshot_records_its_key_identity() {
    let any = RestoreCheck::default();
    let s = spilman_open(spilman::Variant::Cltv);
    check_identity(
        1,
        3,
        s.payer.key_identity(),
        &s.payer.snapshot(),
        (24, 1),
        |b, g| spilman::Payer::restore_with_signer(b, any, g),
        spilman::Payer::key_identity,
    );
    check_identity(
        2,
        4,
        s.payee.key_identity(),
        &s.payee.snapshot(),
        (22, 1),
        |b, g| spilman::Payee::restore_with_signer(b, any, g),
        spilman::Payee::key_identity,
    );
    let (ln, _) = ln_open();
    for (i, (seed, index)) in [(0xa1, 11), (0xb1, 12)].into_iter().enumerate() {
        check_identity(
            seed,
            index,
            ln.ch[i].key_identity(),
            &ln.ch[i].snapshot(),
            (42, 2),
            |b, g| lightning::Channel::restore_with_signer(b, std::iter::empty::<&[u8]>(), any, g),
            lightning::Channel::key_identity,
        );
    }
    let (ch, _, _) = dx_open();
    for (i, (seed, index)) in [(0xa0, 21), (0xb0, 22)].into_iter().enumerate() {
        check_identity(
            seed,
            index,
            ch[i].key_identity(),
            &ch[i].snapshot(),
            (32, 2),
            |b, g| duplex::Channel::restore_with_signer(b, any, g),
            duplex::Channel::key_identity,
        );
    }
}

/// A channel restored from an older snapshot (no key identity) writes the current version
/// without one, and that restores too (the public-key check still refuses a wrong signer).
#[test]
fn a_channel_upgraded_from_an_older_snapshot_restores_again() {
    let any = RestoreCheck::default();
    let s = spilman_open(spilman::Variant::Cltv);
    let old = as_older(&s.payer.snapshot(), 24, 1);
    let upgraded = spilman::Payer::restore(&old, any).unwrap().snapshot();
    assert_eq!(upgraded[1], 2);
    assert!(spilman::Payer::restore_with_signer(&upgraded, any, &s.signers[0]).is_ok());
    assert!(spilman::Payer::restore_with_signer(&upgraded, any, &s.signers[1]).is_err());
    let (ch, signers, _) = dx_open();
    let old = as_older(&ch[0].snapshot(), 32, 2);
    let upgraded = duplex::Channel::restore(&old, any).unwrap().snapshot();
    assert_eq!(upgraded[1], 5);
    assert!(duplex::Channel::restore_with_signer(&upgraded, any, &signers[0]).is_ok());
    let (ln, _) = ln_open();
    let old = as_older(&ln.ch[1].snapshot(), 42, 2);
    let upgraded = lightning::Channel::restore(&old, any).unwrap().snapshot();
    assert_eq!(upgraded[1], 3);
    let none = std::iter::empty::<&[u8]>();
    assert!(lightning::Channel::restore_with_signer(&upgraded, none, any, &ln.signers[1]).is_ok());
}
