//! Hostile input to both sides of a Spilman channel, both variants: every refused payment, setup
//! message, reply, encoding or snapshot gets a typed error, and the refusing side's state is
//! byte-identical before and after (its snapshot, and its full `Debug` rendering).
//!
//! Hostile payments are signed with the payer's real key over the transaction the payee would
//! rebuild, so each one is refused for the reason under test and not for a bad signature.
//!
//! The last part feeds ~2,000 single-byte mutations of every message kind to both sides.

mod accepted;
#[path = "../common/mod.rs"]
mod common;
mod encodings;
mod htlcs;
mod mutations;
mod order;
mod payer;
mod payments;
mod setup;
mod signatures;
mod snapshots;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1;
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::transaction::Version;
use bitcoin::{ecdsa, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, WPubkeyHash, Witness};
use paychan::core::encode::{DecodeError, Writer};
use paychan::core::keys::{ChannelSecrets, FundingPubkey, Seed};
use paychan::core::script::{funding, spilman_cltv};
use paychan::core::sign::{InMemorySigner, KeyId, SignRequest, SignatureError, Signer, Tweak};
use paychan::core::{BlockHeight, PaymentHash, PaymentPreimage};
use paychan::driving::{ChainEvent, ChainTip, ChannelId, RestoreCheck, RestoreError};
use paychan::spilman::payment::{PaymentError, PaymentTemplate};
use paychan::spilman::{
    CommandError, Effects, Misbehaviour, Msg, Offer, Open, Payee, PayeeConfig, Payer, PayerConfig, Payment,
    PaymentHtlc, PaymentState, RefundRequest, RefundSigned, Variant,
};

const START: u32 = 100;
const EXPIRY: u32 = 1_000;
const CLOSE_MARGIN: u32 = 6;
const HTLC_MIN_BLOCKS: u32 = 12;
const CAPACITY: Amount = Amount::from_sat(1_000_000);
const FEE: Amount = Amount::from_sat(500);
const DUST: Amount = Amount::from_sat(546);
const FIRST: Amount = Amount::from_sat(10_000);
const VARIANTS: [Variant; 2] = [Variant::Cltv, Variant::PresignedRefund];

/// The secp256k1 curve order.
const CURVE_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xba, 0xae, 0xdc,
    0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
];

fn p2wpkh(n: u8) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]))
}

fn signer(n: u8) -> InMemorySigner {
    InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([n; 32]), 0))
}

fn payee_config(variant: Variant) -> PayeeConfig {
    PayeeConfig {
        variant,
        payee_script: p2wpkh(2),
        expiry: BlockHeight(EXPIRY),
        min_first_payment: FIRST,
        dust_limit: DUST,
        payment_fee: FEE,
        close_margin: CLOSE_MARGIN,
        htlc_min_blocks: HTLC_MIN_BLOCKS,
        min_depth: 1,
        claim_fee: Amount::from_sat(300),
    }
}

fn payer_config() -> PayerConfig {
    PayerConfig {
        capacity: CAPACITY,
        payer_script: p2wpkh(1),
        refund_fee: FEE,
        claim_fee: Amount::from_sat(300),
        first_payment: FIRST,
        max_lifetime: 10_000,
    }
}

/// A funding transaction with one native segwit input, a change output and `channel` at vout 1.
fn funding_tx(channel: TxOut) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid: Txid::from_byte_array([9; 32]), vout: 0 },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::from_slice(&[[0x30u8; 71].as_slice(), [0x02u8; 33].as_slice()]),
        }],
        output: vec![TxOut { value: Amount::from_sat(5_000_000), script_pubkey: p2wpkh(1) }, channel],
    }
}

/// Every message crosses the wire encoding, as a hostile peer's bytes would.
fn wire(m: &Msg) -> Msg {
    let back = Msg::decode(&m.encode()).expect("encodable messages decode");
    assert_eq!(&back, m);
    back
}

fn preimage(n: u8) -> PaymentPreimage {
    PaymentPreimage([n; 32])
}

fn htlc(id: u64, sats: u64, hash: PaymentHash, expiry: u32) -> PaymentHtlc {
    PaymentHtlc { id, amount: Amount::from_sat(sats), payment_hash: hash, expiry: BlockHeight(expiry) }
}

/// A payer/payee pair at some stage of its life, with the messages it exchanged.
struct Setup {
    payer: Payer,
    payee: Payee,
    payer_signer: InMemorySigner,
    payee_signer: InMemorySigner,
    tip: ChainTip,
    funding: Transaction,
    offer: Offer,
    refund_request: Option<RefundRequest>,
    refund_signed: Option<RefundSigned>,
    open: Option<Open>,
    /// Every payment the payer sent, in order (the first one inside `open`).
    payments: Vec<Payment>,
    /// Every message the payee sent after setup, in order.
    payee_sent: Vec<Msg>,
}

impl Setup {
    /// The payer has funded; its first message (`RefundRequest` or `Open`) is not delivered yet.
    fn funded(variant: Variant) -> Self {
        Self::funded_with(payee_config(variant), payer_config())
    }

    fn funded_with(config: PayeeConfig, payer: PayerConfig) -> Self {
        let (payer_signer, payee_signer) = (signer(1), signer(2));
        let tip = ChainTip::at(START);
        let (payee, fx) = Payee::new(config, &payee_signer);
        let Some(Msg::Offer(offer)) = fx.send.first().map(wire) else { panic!("the payee offers") };
        let mut payer = Payer::new(offer.clone(), payer, &payer_signer, tip).expect("offer acceptable");
        let funding = funding_tx(payer.funding_output());
        let fx = payer.fund(funding.clone(), &payer_signer).expect("funding accepted");
        let (mut refund_request, mut open) = (None, None);
        match fx.send.first().map(wire) {
            Some(Msg::RefundRequest(r)) => refund_request = Some(r),
            Some(Msg::Open(o)) => open = Some(o),
            other => panic!("unexpected first message {other:?}"),
        }
        Setup {
            payer,
            payee,
            payer_signer,
            payee_signer,
            tip,
            funding,
            offer,
            refund_request,
            refund_signed: None,
            open,
            payments: vec![],
            payee_sent: vec![],
        }
    }

    /// The payer's `Open` is ready but not delivered.
    fn before_open(variant: Variant) -> Self {
        Self::before_open_with(payee_config(variant), payer_config())
    }

    fn before_open_with(config: PayeeConfig, payer: PayerConfig) -> Self {
        let mut s = Self::funded_with(config, payer);
        if let Some(r) = s.refund_request.clone() {
            let fx = s.payee.handle_message(wire(&Msg::RefundRequest(r)), &s.payee_signer, s.tip).unwrap();
            let Some(Msg::RefundSigned(signed)) = fx.send.first().map(wire) else { panic!("refund signed") };
            s.refund_signed = Some(signed.clone());
            let fx = s.payer.handle_message(Msg::RefundSigned(signed), &s.payer_signer, s.tip).unwrap();
            let Some(Msg::Open(o)) = fx.send.first().map(wire) else { panic!("payer opens") };
            s.open = Some(o);
        }
        s
    }

    /// Open, acknowledged, funding confirmed one block deep.
    fn open(variant: Variant) -> Self {
        Self::open_with(payee_config(variant), payer_config())
    }

    fn open_with(config: PayeeConfig, payer: PayerConfig) -> Self {
        let mut s = Self::before_open_with(config, payer);
        let open = s.open.clone().unwrap();
        s.payments.push(open.first_payment.clone());
        let fx = s.payee.handle_message(wire(&Msg::Open(open)), &s.payee_signer, s.tip).expect("open accepted");
        s.deliver_from_payee(fx);
        let funding = s.funding.clone();
        let _ =
            s.payee.handle_chain(ChainEvent::Confirmed { tx: &funding, height: BlockHeight(START) }, &s.payee_signer);
        let _ =
            s.payer.handle_chain(ChainEvent::Confirmed { tx: &funding, height: BlockHeight(START) }, &s.payer_signer);
        assert_eq!(s.payer.acknowledged(), 1);
        s
    }

    /// Delivers the payer's effects to the payee, and so on until quiet.
    fn deliver_from_payer(&mut self, fx: Effects) {
        for m in fx.send {
            if let Msg::Payment(p) = &m {
                self.payments.push(p.clone());
            }
            let out = self.payee.handle_message(wire(&m), &self.payee_signer, self.tip).expect("payee accepts");
            self.deliver_from_payee(out);
        }
    }

    fn deliver_from_payee(&mut self, fx: Effects) {
        for m in fx.send {
            self.payee_sent.push(m.clone());
            let out = self.payer.handle_message(wire(&m), &self.payer_signer, self.tip).expect("payer accepts");
            self.deliver_from_payer(out);
        }
    }

    fn pay(&mut self, sats: u64) {
        let fx = self.payer.pay(Amount::from_sat(sats), &self.payer_signer).unwrap();
        self.deliver_from_payer(fx);
    }

    fn add_htlc(&mut self, sats: u64, pre: PaymentPreimage, expiry: u32) -> u64 {
        let (id, fx) = self
            .payer
            .add_htlc(Amount::from_sat(sats), pre.hash(), BlockHeight(expiry), &self.payer_signer, self.tip)
            .unwrap();
        self.deliver_from_payer(fx);
        id
    }

    fn template(&self) -> PaymentTemplate {
        self.payer.template().expect("funded").clone()
    }

    fn state(&self) -> PaymentState {
        self.payer.state().clone()
    }

    fn next_number(&self) -> u64 {
        self.payer.payment_number() + 1
    }

    /// A payment of `state` numbered `number`, signed by the payer's key exactly as an honest
    /// payer would sign it.
    fn signed(&self, number: u64, state: PaymentState) -> Payment {
        let t = self.template();
        let built = t.build(&state).expect("a buildable state");
        let signature = t.sign(&self.payer_signer, &built).unwrap();
        Payment { number, to_payee: state.to_payee, htlcs: state.htlcs, signature }
    }

    /// A payment the template cannot build, carrying the payer's signature of the current state
    /// (the payee must refuse it before looking at the signature).
    fn unbuildable(&self, number: u64, to_payee: Amount, htlcs: Vec<PaymentHtlc>) -> Payment {
        let state = PaymentState { to_payee, htlcs };
        assert!(self.template().build(&state).is_err());
        let signature = self.signed(number, self.state()).signature;
        Payment { number, to_payee: state.to_payee, htlcs: state.htlcs, signature }
    }

    /// A signature by the payer's channel key on `state`'s transaction with another sighash type.
    fn sign_with_sighash(&self, state: &PaymentState, sighash_type: EcdsaSighashType) -> ecdsa::Signature {
        let t = self.template();
        let built = t.build(state).unwrap();
        let ws = t.channel_script();
        self.payer_signer
            .sign(&SignRequest {
                tx: &built.tx,
                input: 0,
                script_code: ws.as_script(),
                p2wpkh: false,
                value: t.capacity,
                sighash_type,
                key: KeyId::Funding,
                tweak: Tweak::None,
            })
            .unwrap()
    }
}

/// The full state of a side, as bytes and as its `Debug` rendering.
fn payee_fingerprint(p: &Payee) -> (Vec<u8>, String) {
    (p.snapshot(), format!("{p:?}"))
}

fn payer_fingerprint(p: &Payer) -> (Vec<u8>, String) {
    (p.snapshot(), format!("{p:?}"))
}

/// Delivers `msg` (through the wire encoding) to the payee at `tip`; it must be refused with
/// `want` and change nothing.
fn payee_refuses_at(s: &mut Setup, msg: Msg, tip: ChainTip, want: Misbehaviour) {
    refuse(&mut s.payee, &s.payee_signer, msg, tip, want);
}

/// A short account of accepted effects, for failure messages.
fn describe(fx: &Effects) -> String {
    let sent: Vec<String> = fx.send.iter().map(|m| format!("{m:?}").chars().take(40).collect()).collect();
    format!("accepted: sent {sent:?}, {} broadcasts, {} events", fx.broadcast.len(), fx.events.len())
}

fn refuse(payee: &mut Payee, signer: &InMemorySigner, msg: Msg, tip: ChainTip, want: Misbehaviour) {
    let before = payee_fingerprint(payee);
    let err = match payee.handle_message(wire(&msg), signer, tip) {
        Ok(fx) => panic!("the payee must refuse with {want:?}, but {}", describe(&fx)),
        Err(e) => e,
    };
    assert_eq!(err.kind, want, "payee refused {msg:?} for the wrong reason");
    assert_eq!(payee_fingerprint(payee), before, "a refused message changed the payee");
}

fn payee_refuses(s: &mut Setup, msg: Msg, want: Misbehaviour) {
    let tip = s.tip;
    payee_refuses_at(s, msg, tip, want);
}

fn payer_refuses(s: &mut Setup, msg: Msg, want: Misbehaviour) {
    let before = payer_fingerprint(&s.payer);
    let err = match s.payer.handle_message(wire(&msg), &s.payer_signer, s.tip) {
        Ok(fx) => panic!("the payer must refuse with {want:?}, but {}", describe(&fx)),
        Err(e) => e,
    };
    assert_eq!(err.kind, want, "payer refused {msg:?} for the wrong reason");
    assert_eq!(payer_fingerprint(&s.payer), before, "a refused message changed the payer");
}

/// Checks that a clone of the payee accepts `msg` (boundary controls for the refusals).
fn payee_accepts(s: &Setup, msg: Msg) {
    let mut payee = s.payee.clone();
    let _ = payee.handle_message(wire(&msg), &s.payee_signer, s.tip).expect("payee accepts the boundary case");
}

/// `a - b` on 32-byte big-endian integers (`a >= b`).
fn sub_be(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = d as u8;
    }
    assert_eq!(borrow, 0, "a >= b");
    out
}

/// The same signature with S replaced by n - S: still valid for libsecp256k1 after
/// normalisation, but high-S (non-standard, BIP-0146).
fn high_s(sig: &ecdsa::Signature) -> ecdsa::Signature {
    let mut compact = sig.signature.serialize_compact();
    let s: [u8; 32] = compact[32..].try_into().unwrap();
    compact[32..].copy_from_slice(&sub_be(&CURVE_ORDER, &s));
    let signature = secp256k1::ecdsa::Signature::from_compact(&compact).expect("n - s is a valid scalar");
    assert_ne!(signature, sig.signature);
    let mut normalized = signature;
    normalized.normalize_s();
    assert_eq!(normalized, sig.signature, "n - s normalises back to s");
    ecdsa::Signature { signature, sighash_type: sig.sighash_type }
}
