//! Hostile input to both sides of a Spilman channel, both variants: every refused payment, setup
//! message, reply, encoding or snapshot gets a typed error, and the refusing side's state is
//! byte-identical before and after (its snapshot, and its full `Debug` rendering).
//!
//! Hostile payments are signed with the payer's real key over the transaction the payee would
//! rebuild, so each one is refused for the reason under test and not for a bad signature.
//!
//! The last part feeds ~2,000 single-byte mutations of every message kind to both sides.

mod common;

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

// ------------------------------------------------------------------------------------------------
// Payments that do not fit.

#[test]
fn payment_with_lower_amount_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        s.pay(5_000);
        let mut state = s.state();
        state.to_payee -= Amount::from_sat(1);
        let p = s.signed(s.next_number(), state);
        payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::AmountDecreased);
    }
}

#[test]
fn payment_without_progress_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        s.pay(5_000);
        let tip = s.tip.height.0;
        s.add_htlc(2_000, preimage(1), tip + 50);
        let p = s.signed(s.next_number(), s.state());
        payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::NoProgress);
    }
}

#[test]
fn payment_above_capacity_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        for extra in [1, 1_000, 21_000_000 * 100_000_000 - CAPACITY.to_sat()] {
            let p = s.unbuildable(s.next_number(), CAPACITY + Amount::from_sat(extra), vec![]);
            payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Payment(PaymentError::ExceedsCapacity));
        }
        // An HTLC pushing the total over capacity.
        let tip = s.tip.height.0;
        let h = htlc(0, CAPACITY.to_sat() - FIRST.to_sat() + 1, preimage(1).hash(), tip + 50);
        let p = s.unbuildable(s.next_number(), FIRST, vec![h]);
        payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Payment(PaymentError::ExceedsCapacity));
        // The whole capacity is fine (no change output).
        payee_accepts(&s, Msg::Payment(s.signed(s.next_number(), PaymentState { to_payee: CAPACITY, htlcs: vec![] })));
    }
}

#[test]
fn payment_with_sub_dust_change_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        for change in [1, 2, DUST.to_sat() / 2, DUST.to_sat() - 1] {
            let p = s.unbuildable(s.next_number(), CAPACITY - Amount::from_sat(change), vec![]);
            payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Payment(PaymentError::ChangeBelowDust));
        }
        // Change exactly at the dust limit is fine.
        payee_accepts(
            &s,
            Msg::Payment(s.signed(s.next_number(), PaymentState { to_payee: CAPACITY - DUST, htlcs: vec![] })),
        );
    }
}

#[test]
fn htlc_below_dust_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        let tip = s.tip.height.0;
        for sats in [0, 1, DUST.to_sat() - 1] {
            let h = htlc(0, sats, preimage(1).hash(), tip + 50);
            let p = s.unbuildable(s.next_number(), FIRST, vec![h]);
            payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Payment(PaymentError::HtlcBelowDust));
        }
    }
}

#[test]
fn first_payment_too_small_or_below_dust_is_refused() {
    for v in VARIANTS {
        // The payee's minimum is below fee + dust, so the dust check is what stops the payment.
        let mut config = payee_config(v);
        config.min_first_payment = Amount::from_sat(600);
        let mut s = Setup::before_open_with(config, payer_config());
        let template = s.template();
        let mut open = s.open.clone().unwrap();
        for sats in [600, 700, FEE.to_sat() + DUST.to_sat() - 1] {
            open.first_payment.to_payee = Amount::from_sat(sats);
            assert!(template.build(&PaymentState { to_payee: open.first_payment.to_payee, htlcs: vec![] }).is_err());
            payee_refuses(&mut s, Msg::Open(open.clone()), Misbehaviour::Payment(PaymentError::PayeeBelowDust));
        }
        open.first_payment.to_payee = Amount::from_sat(599);
        payee_refuses(&mut s, Msg::Open(open.clone()), Misbehaviour::FirstPaymentTooSmall);
        open.first_payment.to_payee = Amount::ZERO;
        payee_refuses(&mut s, Msg::Open(open), Misbehaviour::FirstPaymentTooSmall);

        // With the default terms, below the minimum is refused even though it would be payable.
        let mut s = Setup::before_open(v);
        let mut open = s.open.clone().unwrap();
        let state = PaymentState { to_payee: FIRST - Amount::from_sat(1), htlcs: vec![] };
        open.first_payment = s.signed(1, state);
        payee_refuses(&mut s, Msg::Open(open), Misbehaviour::FirstPaymentTooSmall);
    }
}

// ------------------------------------------------------------------------------------------------
// Signatures.

#[test]
fn wrong_sighash_type_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        let mut state = s.state();
        state.to_payee += Amount::from_sat(1_000);
        let good = s.signed(s.next_number(), state.clone());
        // Re-signed over the same transaction with another sighash type: a valid signature for
        // that type, but not the one the protocol prescribes.
        for ty in [
            EcdsaSighashType::Single,
            EcdsaSighashType::None,
            EcdsaSighashType::AllPlusAnyoneCanPay,
            EcdsaSighashType::SinglePlusAnyoneCanPay,
        ] {
            let mut p = good.clone();
            p.signature = s.sign_with_sighash(&state, ty);
            let want = SignatureError::WrongSighashType { expected: EcdsaSighashType::All, got: ty };
            payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Signature(want));
        }
        // The ALL signature with only its sighash byte changed.
        let mut p = good.clone();
        p.signature.sighash_type = EcdsaSighashType::Single;
        let want = SignatureError::WrongSighashType { expected: EcdsaSighashType::All, got: EcdsaSighashType::Single };
        payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Signature(want));
        // A sighash byte that is not a standard type does not even decode.
        let mut bytes = Msg::Payment(good.clone()).encode();
        for byte in [0x00, 0x04, 0x41, 0x80, 0xff] {
            *bytes.last_mut().unwrap() = byte;
            assert_eq!(Msg::decode(&bytes), Err(DecodeError::InvalidValue("payment signature")), "sighash {byte:#x}");
        }
        payee_accepts(&s, Msg::Payment(good));
    }
}

#[test]
fn corrupted_signature_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        let mut state = s.state();
        state.to_payee += Amount::from_sat(1_000);
        let good = Msg::Payment(s.signed(s.next_number(), state));
        let bytes = good.encode();
        // The signature is the last record: 64 compact bytes and the sighash byte.
        let sig_start = bytes.len() - 65;
        let (mut undecodable, mut invalid) = (0, 0);
        for bit in 0..64 * 8 {
            let mut b = bytes.clone();
            b[sig_start + bit / 8] ^= 1 << (bit % 8);
            match Msg::decode(&b) {
                Err(e) => {
                    assert_eq!(e, DecodeError::InvalidValue("payment signature"));
                    undecodable += 1;
                }
                Ok(m) => {
                    let before = payee_fingerprint(&s.payee);
                    let err = match s.payee.handle_message(m, &s.payee_signer, s.tip) {
                        Ok(fx) => panic!("bit {bit}: {}", describe(&fx)),
                        Err(e) => e,
                    };
                    assert!(
                        matches!(err.kind, Misbehaviour::Signature(SignatureError::Invalid | SignatureError::HighS)),
                        "bit {bit}: {err:?}"
                    );
                    assert_eq!(payee_fingerprint(&s.payee), before);
                    invalid += 1;
                }
            }
        }
        assert!(invalid > 0, "most flips decode and fail verification ({undecodable} undecodable)");
        payee_accepts(&s, good);
    }
}

#[test]
fn high_s_signature_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        let mut state = s.state();
        state.to_payee += Amount::from_sat(1_000);
        let good = s.signed(s.next_number(), state);
        let mut p = good.clone();
        p.signature = high_s(&good.signature);
        payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Signature(SignatureError::HighS));
        // Also on the first payment.
        let mut s = Setup::before_open(v);
        let mut open = s.open.clone().unwrap();
        open.first_payment.signature = high_s(&open.first_payment.signature);
        payee_refuses(&mut s, Msg::Open(open), Misbehaviour::Signature(SignatureError::HighS));
    }
}

#[test]
fn signature_over_another_transaction_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        s.pay(1_000);
        let number = s.next_number();
        let mut signed_state = s.state();
        signed_state.to_payee += Amount::from_sat(1_000);
        let signed = s.signed(number, signed_state.clone());
        // The message claims more than what was signed.
        let mut p = signed.clone();
        p.to_payee += Amount::from_sat(1);
        payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Signature(SignatureError::Invalid));
        // Or an HTLC the signature does not cover.
        let mut p = signed.clone();
        p.htlcs = vec![htlc(0, 1_000, preimage(1).hash(), START + 50)];
        payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Signature(SignatureError::Invalid));
        // An old payment's signature under a new amount.
        let mut p = signed.clone();
        p.signature = s.payments.last().unwrap().signature;
        payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Signature(SignatureError::Invalid));
        // The payee's own key signing instead of the payer's.
        let t = s.template();
        let mut p = signed.clone();
        p.signature = t.sign(&s.payee_signer, &t.build(&signed_state).unwrap()).unwrap();
        payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Signature(SignatureError::Invalid));
        // A stranger's key.
        let mut p = signed.clone();
        p.signature = t.sign(&signer(3), &t.build(&signed_state).unwrap()).unwrap();
        payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Signature(SignatureError::Invalid));
        payee_accepts(&s, Msg::Payment(signed));
    }
}

// ------------------------------------------------------------------------------------------------
// Replays, order and timing.

#[test]
fn replayed_or_backward_payment_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        s.pay(1_000);
        s.pay(1_000);
        // The same message delivered twice.
        let last = s.payments.last().unwrap().clone();
        payee_refuses(&mut s, Msg::Payment(last.clone()), Misbehaviour::Replay);
        // Every older one too.
        for p in s.payments.clone() {
            payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Replay);
        }
        // A genuinely new, validly signed state whose number goes backwards or repeats.
        let mut state = s.state();
        state.to_payee += Amount::from_sat(1_000);
        for number in [0, 1, last.number - 1, last.number] {
            let p = s.signed(number, state.clone());
            payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Replay);
        }
        // Skipping numbers forward is allowed.
        payee_accepts(&s, Msg::Payment(s.signed(last.number + 10, state)));
    }
}

#[test]
fn payment_inside_close_margin_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        let close_by = s.payee.close_by().0;
        assert_eq!(close_by, EXPIRY - CLOSE_MARGIN);
        let mut state = s.state();
        state.to_payee += Amount::from_sat(1_000);
        let p = s.signed(s.next_number(), state);
        for tip in [close_by, close_by + 1, EXPIRY, u32::MAX / 2] {
            payee_refuses_at(&mut s, Msg::Payment(p.clone()), ChainTip::at(tip), Misbehaviour::NotAcceptingPayments);
        }
        let mut payee = s.payee.clone();
        let _ = payee
            .handle_message(Msg::Payment(p), &s.payee_signer, ChainTip::at(close_by - 1))
            .expect("one block before");

        // An Open inside the margin is refused too.
        let mut s = Setup::before_open(v);
        let open = s.open.clone().unwrap();
        payee_refuses_at(&mut s, Msg::Open(open), ChainTip::at(close_by), Misbehaviour::NotAcceptingPayments);
    }
}

#[test]
fn payment_before_funding_depth_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::before_open(v);
        let open = s.open.clone().unwrap();
        let fx = s.payee.handle_message(Msg::Open(open), &s.payee_signer, s.tip).unwrap();
        s.deliver_from_payee(fx);
        // The funding has not confirmed (min_depth 1): later payments wait.
        let mut state = s.state();
        state.to_payee += Amount::from_sat(1_000);
        let p = s.signed(s.next_number(), state);
        payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::NotAcceptingPayments);
    }
}

// ------------------------------------------------------------------------------------------------
// HTLCs.

#[test]
fn htlc_id_reuse_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        let tip = s.tip.height.0;
        let a = s.add_htlc(2_000, preimage(1), tip + 50);
        let fx = s.payee.fail_htlc(a).unwrap();
        s.deliver_from_payee(fx);
        assert!(s.state().htlcs.is_empty(), "the failed HTLC was removed");
        // A new HTLC reusing the removed id.
        let mut state = s.state();
        state.htlcs.push(htlc(a, 3_000, preimage(2).hash(), tip + 60));
        let p = s.signed(s.next_number(), state);
        payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::HtlcIdReused);

        // Two new HTLCs with the same id, or out of order.
        for ids in [[5, 5], [7, 6]] {
            let mut state = s.state();
            state.htlcs.push(htlc(ids[0], 3_000, preimage(2).hash(), tip + 60));
            state.htlcs.push(htlc(ids[1], 4_000, preimage(3).hash(), tip + 60));
            let p = s.signed(s.next_number(), state);
            payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::HtlcIdReused);
        }

        // A live HTLC whose terms change under the same id.
        let b = s.add_htlc(2_000, preimage(4), tip + 50);
        let live = s.state().htlcs[0];
        assert_eq!(live.id, b);
        for changed in [
            PaymentHtlc { amount: live.amount + Amount::from_sat(1), ..live },
            PaymentHtlc { amount: live.amount - Amount::from_sat(1), ..live },
            PaymentHtlc { payment_hash: preimage(5).hash(), ..live },
            PaymentHtlc { expiry: BlockHeight(live.expiry.0 + 1), ..live },
            PaymentHtlc { expiry: BlockHeight(live.expiry.0 - 1), ..live },
        ] {
            let mut state = s.state();
            state.htlcs = vec![changed];
            state.to_payee += Amount::from_sat(10);
            let p = s.signed(s.next_number(), state);
            payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::HtlcRemovedUnfairly);
        }
    }
}

#[test]
fn htlc_expiry_outside_window_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        let tip = s.tip.height.0;
        let close_by = s.payee.close_by().0;
        for expiry in [0, tip, tip + HTLC_MIN_BLOCKS - 1, close_by + 1, EXPIRY, EXPIRY + 100] {
            let mut state = s.state();
            state.htlcs.push(htlc(0, 2_000, preimage(1).hash(), expiry));
            let p = s.signed(s.next_number(), state);
            payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::HtlcExpiry);
        }
        for expiry in [tip + HTLC_MIN_BLOCKS, close_by] {
            let mut state = s.state();
            state.htlcs.push(htlc(0, 2_000, preimage(1).hash(), expiry));
            payee_accepts(&s, Msg::Payment(s.signed(s.next_number(), state)));
        }
    }
}

#[test]
fn unfair_htlc_removal_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        let tip = s.tip.height.0;
        let expiry = tip + 50;
        s.add_htlc(2_000, preimage(1), expiry);
        let b = s.add_htlc(3_000, preimage(2), expiry);
        // Live, not expired, not failed: removing it (even while paying more) is unfair.
        for (keep, extra) in [(vec![], 0), (vec![0], 0), (vec![], 4_999), (vec![1], 10_000)] {
            let mut state = s.state();
            state.htlcs = keep.iter().map(|i| state.htlcs[*i]).collect();
            state.to_payee += Amount::from_sat(extra);
            let p = s.signed(s.next_number(), state);
            payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::HtlcRemovedUnfairly);
        }
        // One block before expiry: still unfair. From expiry on, the payer may take it back.
        let mut state = s.state();
        state.htlcs.retain(|h| h.id != b);
        let p = s.signed(s.next_number(), state);
        payee_refuses_at(&mut s, Msg::Payment(p.clone()), ChainTip::at(expiry - 1), Misbehaviour::HtlcRemovedUnfairly);
        let mut payee = s.payee.clone();
        let _ = payee.handle_message(Msg::Payment(p.clone()), &s.payee_signer, ChainTip::at(expiry)).expect("expired");
        // Or once the payee failed it.
        let fx = s.payee.fail_htlc(b).unwrap();
        assert!(matches!(fx.send.as_slice(), [Msg::Fail { id }] if *id == b));
        payee_accepts(&s, Msg::Payment(p));
    }
}

#[test]
fn fulfilled_htlc_must_be_folded() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        let tip = s.tip.height.0;
        let a = s.add_htlc(2_000, preimage(1), tip + 50);
        let b = s.add_htlc(3_000, preimage(2), tip + 50);
        // The payee reveals both preimages; the payer does not hear of it (hostile or offline).
        let fx = s.payee.fulfill_htlc(a, preimage(1), &s.payee_signer).unwrap();
        assert!(matches!(fx.send.as_slice(), [Msg::Fulfill { .. }]));
        let _ = s.payee.fulfill_htlc(b, preimage(2), &s.payee_signer).unwrap();
        let base = s.state();
        let folded_a = PaymentState { to_payee: base.to_payee + Amount::from_sat(2_000), htlcs: vec![base.htlcs[1]] };
        let cases = [
            // Dropped without folding.
            PaymentState { to_payee: base.to_payee, htlcs: vec![base.htlcs[1]] },
            // Folded one satoshi short.
            PaymentState { to_payee: folded_a.to_payee - Amount::from_sat(1), htlcs: vec![base.htlcs[1]] },
            // Both dropped, only one folded.
            PaymentState { to_payee: base.to_payee + Amount::from_sat(3_000), htlcs: vec![] },
            PaymentState { to_payee: base.to_payee + Amount::from_sat(4_999), htlcs: vec![] },
        ];
        for state in cases {
            let p = s.signed(s.next_number(), state);
            payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::HtlcRemovedUnfairly);
        }
        // Even after expiry, a revealed preimage must be paid for.
        let p = s.signed(s.next_number(), PaymentState { to_payee: base.to_payee, htlcs: vec![base.htlcs[1]] });
        payee_refuses_at(&mut s, Msg::Payment(p), ChainTip::at(tip + 60), Misbehaviour::HtlcRemovedUnfairly);
        payee_accepts(&s, Msg::Payment(s.signed(s.next_number(), folded_a)));
        let all = PaymentState { to_payee: base.to_payee + Amount::from_sat(5_000), htlcs: vec![] };
        payee_accepts(&s, Msg::Payment(s.signed(s.next_number(), all)));
    }
}

// ------------------------------------------------------------------------------------------------
// Setup messages.

#[test]
fn open_with_wrong_funding_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::before_open(v);
        let open = s.open.clone().unwrap();
        let vout = open.funding_vout as usize;
        let t = s.template();

        // Another script in the channel output.
        let other_scripts = [
            p2wpkh(7),
            ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::from_byte_array([7; 32])),
            // The CLTV script for another expiry, the scripts of the other variant.
            spilman_cltv(&t.payer_key, &t.payee_key, BlockHeight(EXPIRY + 1)).to_p2wsh(),
            spilman_cltv(&t.payer_key, &t.payee_key, BlockHeight(EXPIRY)).to_p2wsh(),
            spilman_cltv(&t.payee_key, &t.payer_key, BlockHeight(EXPIRY)).to_p2wsh(),
            funding(&FundingPubkey::from_public_key(t.payer_key), &FundingPubkey::from_public_key(t.payee_key))
                .to_p2wsh(),
            // The right witness script, but as P2SH.
            ScriptBuf::new_p2sh(&t.channel_script().as_script().script_hash()),
        ];
        for script in other_scripts {
            if script == open.funding_tx.output[vout].script_pubkey {
                continue;
            }
            let mut o = open.clone();
            o.funding_tx.output[vout].script_pubkey = script;
            payee_refuses(&mut s, Msg::Open(o), Misbehaviour::WrongFunding);
        }
        // The output index pointing elsewhere or nowhere.
        for bad_vout in [0, 2, 1_000, u32::MAX] {
            let mut o = open.clone();
            o.funding_vout = bad_vout;
            payee_refuses(&mut s, Msg::Open(o), Misbehaviour::WrongFunding);
        }
        // Another value: the pre-signed payee knows the capacity it signed the refund for; the
        // CLTV payee learns it from the funding, and the first payment's signature (which commits
        // to the funding outpoint and value) no longer verifies.
        for value in [CAPACITY - Amount::from_sat(1), CAPACITY + Amount::from_sat(1), Amount::from_sat(20_000)] {
            let mut o = open.clone();
            o.funding_tx.output[vout].value = value;
            let want = match v {
                Variant::Cltv => Misbehaviour::Signature(SignatureError::Invalid),
                Variant::PresignedRefund => Misbehaviour::WrongFunding,
            };
            payee_refuses(&mut s, Msg::Open(o), want);
        }
        let mut o = open.clone();
        o.funding_tx.output[vout].value = Amount::from_sat(5_000);
        let want = match v {
            Variant::Cltv => Misbehaviour::Payment(PaymentError::ExceedsCapacity),
            Variant::PresignedRefund => Misbehaviour::WrongFunding,
        };
        payee_refuses(&mut s, Msg::Open(o), want);
        // No outputs at all.
        let mut o = open.clone();
        o.funding_tx.output.clear();
        payee_refuses(&mut s, Msg::Open(o), Misbehaviour::WrongFunding);
        // An unrelated input (another funding transaction).
        let mut o = open.clone();
        o.funding_tx.input[0].previous_output.vout = 1;
        let want = match v {
            Variant::Cltv => Misbehaviour::Signature(SignatureError::Invalid),
            Variant::PresignedRefund => Misbehaviour::WrongFunding,
        };
        payee_refuses(&mut s, Msg::Open(o), want);
        if v == Variant::PresignedRefund {
            // Keys or script other than those the refund was signed for.
            let other = signer(3);
            let mut o = open.clone();
            o.payer_key = *other.pubkeys().funding.public_key();
            payee_refuses(&mut s, Msg::Open(o), Misbehaviour::WrongFunding);
            let mut o = open.clone();
            o.payer_htlc_key = *other.pubkeys().htlc_basepoint.public_key();
            payee_refuses(&mut s, Msg::Open(o), Misbehaviour::WrongFunding);
            let mut o = open.clone();
            o.payer_script = p2wpkh(8);
            payee_refuses(&mut s, Msg::Open(o), Misbehaviour::WrongFunding);
        }
        payee_accepts(&s, Msg::Open(open));
    }
}

#[test]
fn setup_messages_in_the_wrong_state_are_refused() {
    // CLTV: no refund round trip.
    let mut s = Setup::funded(Variant::Cltv);
    let other = Setup::funded(Variant::PresignedRefund);
    let request = other.refund_request.clone().unwrap();
    payee_refuses(&mut s, Msg::RefundRequest(request.clone()), Misbehaviour::WrongVariant);

    // Pre-signed: Open before the refund is signed, a second RefundRequest after it is.
    let mut p = Setup::funded(Variant::PresignedRefund);
    let open = Setup::before_open(Variant::PresignedRefund).open.unwrap();
    payee_refuses(&mut p, Msg::Open(open.clone()), Misbehaviour::WrongVariant);
    let fx = p.payee.handle_message(Msg::RefundRequest(request.clone()), &p.payee_signer, p.tip).unwrap();
    assert!(matches!(fx.send.as_slice(), [Msg::RefundSigned(_)]));
    payee_refuses(&mut p, Msg::RefundRequest(request.clone()), Misbehaviour::UnexpectedMessage);

    for v in VARIANTS {
        // Payments before Open.
        let mut s = Setup::before_open(v);
        let first = s.open.clone().unwrap().first_payment;
        payee_refuses(&mut s, Msg::Payment(first.clone()), Misbehaviour::UnexpectedMessage);
        payee_refuses(&mut s, Msg::CloseRequest, Misbehaviour::UnexpectedMessage);
        // Open twice; RefundRequest once open.
        let mut s = Setup::open(v);
        let open = s.open.clone().unwrap();
        payee_refuses(&mut s, Msg::Open(open), Misbehaviour::UnexpectedMessage);
        payee_refuses(&mut s, Msg::RefundRequest(request.clone()), Misbehaviour::UnexpectedMessage);
        // Messages only the payee sends.
        let offer = s.offer.clone();
        for m in [
            Msg::Offer(offer),
            Msg::RefundSigned(Setup::before_open(Variant::PresignedRefund).refund_signed.unwrap()),
            Msg::Ack { number: 1 },
            Msg::Fulfill { id: 0, preimage: preimage(1) },
            Msg::Fail { id: 0 },
            Msg::Closed { txid: Txid::from_byte_array([1; 32]) },
        ] {
            payee_refuses(&mut s, m, Misbehaviour::UnexpectedMessage);
        }
        // Messages only the payer sends, and setup messages once open.
        let first = s.payments[0].clone();
        for m in [
            Msg::Offer(s.offer.clone()),
            Msg::RefundRequest(request.clone()),
            Msg::RefundSigned(Setup::before_open(Variant::PresignedRefund).refund_signed.unwrap()),
            Msg::Open(s.open.clone().unwrap()),
            Msg::Payment(first),
            Msg::CloseRequest,
        ] {
            payer_refuses(&mut s, m, Misbehaviour::UnexpectedMessage);
        }
        // A closed payee takes no CloseRequest, nor payments.
        let fx = s.payee.close(&s.payee_signer).unwrap();
        assert_eq!(fx.broadcast.len(), 1);
        payee_refuses(&mut s, Msg::CloseRequest, Misbehaviour::UnexpectedMessage);
        let mut state = s.state();
        state.to_payee += Amount::from_sat(1_000);
        let p = s.signed(s.next_number(), state);
        payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::UnexpectedMessage);
    }
}

#[test]
fn refund_request_with_bad_terms_is_refused() {
    let mut s = Setup::funded(Variant::PresignedRefund);
    let request = s.refund_request.clone().unwrap();
    for (capacity, fee) in [
        (FIRST - Amount::from_sat(1), FEE),
        (Amount::MAX_MONEY + Amount::from_sat(1), FEE),
        (CAPACITY, CAPACITY + Amount::from_sat(1)),
        (CAPACITY, CAPACITY - DUST + Amount::from_sat(1)),
    ] {
        let r = RefundRequest { capacity, refund_fee: fee, ..request.clone() };
        let before = payee_fingerprint(&s.payee);
        // Capacities above 21M BTC do not even decode.
        let err = match Msg::decode(&Msg::RefundRequest(r.clone()).encode()) {
            Ok(m) => match s.payee.handle_message(m, &s.payee_signer, s.tip) {
                Ok(fx) => panic!("{capacity} {fee}: {}", describe(&fx)),
                Err(e) => e.kind,
            },
            Err(e) => {
                assert_eq!(e, DecodeError::InvalidValue("capacity"));
                continue;
            }
        };
        assert_eq!(err, Misbehaviour::BadTerms);
        assert_eq!(payee_fingerprint(&s.payee), before);
    }
}

#[test]
fn malleable_presigned_funding_is_refused() {
    let s = Setup::funded(Variant::PresignedRefund);
    let channel_out = s.payer.funding_output();
    let request = s.refund_request.clone().unwrap();
    let open_template = Setup::before_open(Variant::PresignedRefund).open.unwrap();
    // A hostile payer asks for a refund of a funding with a legacy or wrapped input (its
    // scriptSig is part of the txid, so re-encoding it would invalidate the signed refund), then
    // opens with it. A plain segwit input is the control.
    let legacy = ScriptBuf::from_bytes(vec![0x51]);
    let wrapped = ScriptBuf::from_bytes([0x16, 0x00, 0x14].into_iter().chain([3; 20]).collect());
    for script_sig in [legacy, wrapped, ScriptBuf::new()] {
        let mut funding = funding_tx(channel_out.clone());
        funding.input[0].script_sig = script_sig.clone();
        let outpoint = OutPoint { txid: funding.compute_txid(), vout: 1 };
        let mut payee = Payee::new(payee_config(Variant::PresignedRefund), &s.payee_signer).0;
        let r = RefundRequest { funding_outpoint: outpoint, ..request.clone() };
        // The payee does not see the funding yet: it signs the refund.
        let fx = payee.handle_message(wire(&Msg::RefundRequest(r)), &s.payee_signer, s.tip).unwrap();
        assert!(matches!(fx.send.as_slice(), [Msg::RefundSigned(_)]));
        let template = payee.template().unwrap().clone();
        let state = PaymentState { to_payee: FIRST, htlcs: vec![] };
        let signature = template.sign(&s.payer_signer, &template.build(&state).unwrap()).unwrap();
        let open = Open {
            funding_tx: funding,
            funding_vout: 1,
            first_payment: Payment { number: 1, to_payee: FIRST, htlcs: vec![], signature },
            ..open_template.clone()
        };
        if script_sig.is_empty() {
            let _ =
                payee.handle_message(wire(&Msg::Open(open)), &s.payee_signer, s.tip).expect("segwit funding is fine");
        } else {
            refuse(&mut payee, &s.payee_signer, Msg::Open(open), s.tip, Misbehaviour::MalleableFunding);
        }
    }
    // The payer refuses to fund that way in the first place.
    let mut fresh = Payer::new(s.offer.clone(), payer_config(), &s.payer_signer, s.tip).unwrap();
    let mut funding = funding_tx(channel_out);
    funding.input[0].script_sig = ScriptBuf::from_bytes(vec![0x51]);
    let before = payer_fingerprint(&fresh);
    assert_eq!(fresh.fund(funding, &s.payer_signer), Err(CommandError::MalleableFunding));
    assert_eq!(payer_fingerprint(&fresh), before);
}

// ------------------------------------------------------------------------------------------------
// The payer's side.

#[test]
fn payer_refuses_bad_fulfill_fail_and_ack() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        let tip = s.tip.height.0;
        let a = s.add_htlc(2_000, preimage(1), tip + 50);
        let b = s.add_htlc(3_000, preimage(2), tip + 50);

        // Fulfill: wrong preimage (another HTLC's, or garbage), unknown ids.
        for pre in [preimage(2), preimage(0), PaymentPreimage(preimage(1).hash().0)] {
            payer_refuses(&mut s, Msg::Fulfill { id: a, preimage: pre }, Misbehaviour::WrongPreimage);
        }
        for id in [b + 1, 1_000, u64::MAX] {
            payer_refuses(&mut s, Msg::Fulfill { id, preimage: preimage(1) }, Misbehaviour::UnknownHtlc);
            payer_refuses(&mut s, Msg::Fail { id }, Misbehaviour::UnknownHtlc);
        }

        // Ack: numbers never sent, replays.
        let n = s.payer.payment_number();
        assert_eq!(s.payer.acknowledged(), n);
        for number in [n + 1, n + 100, u64::MAX] {
            payer_refuses(&mut s, Msg::Ack { number }, Misbehaviour::UnexpectedMessage);
        }
        assert!(n >= 2);
        for number in [0, 1, n - 1] {
            payer_refuses(&mut s, Msg::Ack { number }, Misbehaviour::Replay);
        }
        // A real Ack delivered twice: the second changes nothing (after a reconnection the
        // payee acknowledges a payment sent again), and older ones are replays.
        let fx = s.payer.pay(Amount::from_sat(1_000), &s.payer_signer).unwrap();
        let Some(Msg::Payment(p)) = fx.send.first().cloned() else { panic!() };
        let fx = s.payee.handle_message(Msg::Payment(p), &s.payee_signer, s.tip).unwrap();
        let ack = fx.send[0].clone();
        assert_eq!(ack, Msg::Ack { number: n + 1 });
        let _ = s.payer.handle_message(ack.clone(), &s.payer_signer, s.tip).unwrap();
        let before = payer_fingerprint(&s.payer);
        let fx = s.payer.handle_message(ack, &s.payer_signer, s.tip).expect("a repeated acknowledgement");
        assert!(fx.update.is_none() && fx.send.is_empty() && fx.events.is_empty());
        assert_eq!(payer_fingerprint(&s.payer), before);
        payer_refuses(&mut s, Msg::Ack { number: n }, Misbehaviour::Replay);

        // Fulfill and Fail replays.
        let fx = s.payee.fulfill_htlc(a, preimage(1), &s.payee_signer).unwrap();
        let fulfill = fx.send[0].clone();
        s.deliver_from_payee(fx);
        payer_refuses(&mut s, fulfill, Misbehaviour::Replay);
        payer_refuses(&mut s, Msg::Fail { id: a }, Misbehaviour::UnknownHtlc);
        let fx = s.payee.fail_htlc(b).unwrap();
        let fail = fx.send[0].clone();
        s.deliver_from_payee(fx);
        payer_refuses(&mut s, fail, Misbehaviour::UnknownHtlc);
        assert!(s.state().htlcs.is_empty());
    }
}

#[test]
fn payer_refuses_bad_refund_signature() {
    let mut s = Setup::funded(Variant::PresignedRefund);
    let request = s.refund_request.clone().unwrap();
    let fx = s.payee.clone().handle_message(Msg::RefundRequest(request), &s.payee_signer, s.tip).unwrap();
    let Some(Msg::RefundSigned(good)) = fx.send.first().cloned() else { panic!() };
    let t = s.template();
    let refund = t.refund_tx(FEE, BlockHeight(EXPIRY)).unwrap();
    let ws = t.channel_script();
    let sign_refund = |signer: &InMemorySigner, tx: &Transaction, sighash_type| {
        signer
            .sign(&SignRequest {
                tx,
                input: 0,
                script_code: ws.as_script(),
                p2wpkh: false,
                value: t.capacity,
                sighash_type,
                key: KeyId::Funding,
                tweak: Tweak::None,
            })
            .unwrap()
    };
    let invalid = Misbehaviour::RefundSignature(SignatureError::Invalid);
    // The payer's own signature, a stranger's, the payee's over another refund.
    let cases = [
        (sign_refund(&s.payer_signer, &refund, EcdsaSighashType::All), invalid),
        (sign_refund(&signer(3), &refund, EcdsaSighashType::All), invalid),
        (
            sign_refund(
                &s.payee_signer,
                &t.refund_tx(FEE + Amount::from_sat(1), BlockHeight(EXPIRY)).unwrap(),
                EcdsaSighashType::All,
            ),
            invalid,
        ),
        (
            sign_refund(&s.payee_signer, &t.refund_tx(FEE, BlockHeight(EXPIRY - 1)).unwrap(), EcdsaSighashType::All),
            invalid,
        ),
        (
            sign_refund(&s.payee_signer, &refund, EcdsaSighashType::NonePlusAnyoneCanPay),
            Misbehaviour::RefundSignature(SignatureError::WrongSighashType {
                expected: EcdsaSighashType::All,
                got: EcdsaSighashType::NonePlusAnyoneCanPay,
            }),
        ),
        (high_s(&good.signature), Misbehaviour::RefundSignature(SignatureError::HighS)),
        (
            ecdsa::Signature { sighash_type: EcdsaSighashType::Single, ..good.signature },
            Misbehaviour::RefundSignature(SignatureError::WrongSighashType {
                expected: EcdsaSighashType::All,
                got: EcdsaSighashType::Single,
            }),
        ),
        // A payment signature (the payee never signs one, but it is a valid-looking signature).
        (s.signed(1, PaymentState { to_payee: FIRST, htlcs: vec![] }).signature, invalid),
    ];
    for (signature, want) in cases {
        payer_refuses(&mut s, Msg::RefundSigned(RefundSigned { signature }), want);
    }
    // Flipped bits in the compact signature.
    for bit in (0..512).step_by(7) {
        let mut compact = good.signature.signature.serialize_compact();
        compact[bit / 8] ^= 1 << (bit % 8);
        let Ok(signature) = secp256k1::ecdsa::Signature::from_compact(&compact) else { continue };
        let sig = ecdsa::Signature { signature, sighash_type: EcdsaSighashType::All };
        let before = payer_fingerprint(&s.payer);
        let err = s.payer.handle_message(Msg::RefundSigned(RefundSigned { signature: sig }), &s.payer_signer, s.tip);
        assert!(matches!(
            err.map_err(|e| e.kind),
            Err(Misbehaviour::RefundSignature(SignatureError::Invalid | SignatureError::HighS))
        ));
        assert_eq!(payer_fingerprint(&s.payer), before);
    }
    // Nothing was broadcast or sent on refusal; the genuine signature opens the channel.
    let fx = s.payer.handle_message(Msg::RefundSigned(good.clone()), &s.payer_signer, s.tip).unwrap();
    assert!(matches!(fx.send.as_slice(), [Msg::Open(_)]));
    assert_eq!(fx.broadcast.len(), 1);
    // A second RefundSigned, even the genuine one, is out of place.
    payer_refuses(&mut s, Msg::RefundSigned(good), Misbehaviour::UnexpectedMessage);
}

// ------------------------------------------------------------------------------------------------
// Message encodings.

/// One real message of every kind (and an `Open` of each variant).
fn sample_messages() -> Vec<Msg> {
    let p = Setup::before_open(Variant::PresignedRefund);
    let mut s = Setup::open(Variant::Cltv);
    let tip = s.tip.height.0;
    s.add_htlc(2_000, preimage(1), tip + 50);
    s.add_htlc(3_000, preimage(2), tip + 60);
    let fx = s.payee.fulfill_htlc(0, preimage(1), &s.payee_signer).unwrap();
    let fulfill = fx.send[0].clone();
    let fx = s.payee.fail_htlc(1).unwrap();
    let fail = fx.send[0].clone();
    let closed = s.payee.clone().close(&s.payee_signer).unwrap().send[0].clone();
    let msgs = vec![
        Msg::Offer(p.offer.clone()),
        Msg::RefundRequest(p.refund_request.clone().unwrap()),
        Msg::RefundSigned(p.refund_signed.clone().unwrap()),
        Msg::Open(p.open.clone().unwrap()),
        Msg::Open(s.open.clone().unwrap()),
        Msg::Payment(s.payments.last().unwrap().clone()),
        s.payee_sent.last().unwrap().clone(),
        fulfill,
        fail,
        s.payer.request_close().unwrap().send[0].clone(),
        closed,
    ];
    assert!(matches!(msgs[6], Msg::Ack { number: 3 }));
    assert!(matches!(msgs[7], Msg::Fulfill { .. }) && matches!(msgs[8], Msg::Fail { .. }));
    assert!(matches!(msgs[9], Msg::CloseRequest) && matches!(msgs[10], Msg::Closed { .. }));
    assert_eq!(s.payments.last().unwrap().htlcs.len(), 2);
    msgs
}

fn tlv_record(ty: u64, value: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    w.bigsize(ty).var_bytes(value);
    w.into_bytes()
}

#[test]
fn message_truncations_fail_to_decode() {
    for m in sample_messages() {
        let bytes = m.encode();
        assert_eq!(Msg::decode(&bytes).as_ref(), Ok(&m));
        for len in 0..bytes.len() {
            let err = Msg::decode(&bytes[..len]).expect_err("a strict prefix must not decode");
            if len < 2 {
                assert_eq!(err, DecodeError::Truncated);
            } else {
                assert!(
                    matches!(err, DecodeError::Truncated | DecodeError::MissingField(_)),
                    "{m:?} at {len}: {err:?}"
                );
            }
        }
    }
}

#[test]
fn message_trailing_bytes_fail_to_decode() {
    for m in sample_messages() {
        for extra in [[0x00].as_slice(), &[0x01], &[0xff], &[0x00, 0x00], &[0xfd, 0x00]] {
            let mut bytes = m.encode();
            bytes.extend_from_slice(extra);
            assert!(Msg::decode(&bytes).is_err(), "{m:?} + {extra:02x?} decoded");
        }
    }
}

#[test]
fn message_version_and_kind_are_checked() {
    for m in sample_messages() {
        for version in [0u8, 2, 0x7f, 0xff] {
            let mut bytes = m.encode();
            bytes[1] = version;
            assert_eq!(Msg::decode(&bytes), Err(DecodeError::UnknownVersion(version)));
        }
        for kind in [0u8, 0x4f, 0x50, 0x5c, 0xff] {
            let mut bytes = m.encode();
            bytes[0] = kind;
            assert!(matches!(Msg::decode(&bytes), Err(DecodeError::WrongKind { got, .. }) if got == kind));
        }
    }
}

#[test]
fn message_unknown_tlv_types_follow_the_even_odd_rule() {
    for m in sample_messages() {
        let bytes = m.encode();
        // Above every known type: even is refused, odd is skipped.
        for ty in [16u64, 1_000, 0x1_0000, 0x1_0000_0000, u64::MAX - 1] {
            let mut b = bytes.clone();
            b.extend(tlv_record(ty, &[1, 2, 3]));
            assert_eq!(Msg::decode(&b), Err(DecodeError::UnknownEvenType(ty)), "{m:?}");
            let mut b = bytes.clone();
            b.extend(tlv_record(ty + 1, &[1, 2, 3]));
            assert_eq!(Msg::decode(&b).as_ref(), Ok(&m), "odd type {} must be skipped", ty + 1);
            if ty + 1 < u64::MAX {
                // A second odd record, empty.
                b.extend(tlv_record(ty + 3, &[]));
                assert_eq!(Msg::decode(&b).as_ref(), Ok(&m));
            }
        }
        // Types must increase: a record not above the last one is refused even if odd.
        if bytes.len() > 2 {
            for ty in [0, 1] {
                let mut b = bytes.clone();
                b.extend(tlv_record(ty, &[]));
                if let Msg::Ack { .. }
                | Msg::Fail { .. }
                | Msg::Fulfill { .. }
                | Msg::RefundSigned(_)
                | Msg::Closed { .. } = m
                {
                    if ty == 1 {
                        // Their only record is type 0: type 1 is a new odd record.
                        assert_eq!(Msg::decode(&b).as_ref(), Ok(&m));
                        continue;
                    }
                }
                assert_eq!(Msg::decode(&b), Err(DecodeError::UnorderedTypes), "{m:?}");
            }
        }
        // A truncated odd record is still a truncation.
        let mut b = bytes.clone();
        b.extend(tlv_record(1_001, &[1, 2, 3]));
        b.pop();
        assert_eq!(Msg::decode(&b), Err(DecodeError::Truncated));
    }
}

// ------------------------------------------------------------------------------------------------
// Snapshots.

#[test]
fn snapshot_truncations_and_extensions_fail_to_restore() {
    let mut snapshots = vec![];
    for v in VARIANTS {
        let s = Setup::funded(v);
        snapshots.push((s.payer.snapshot(), s.payee.snapshot()));
        let mut s = Setup::open(v);
        let tip = s.tip.height.0;
        s.add_htlc(2_000, preimage(1), tip + 50);
        s.add_htlc(3_000, preimage(2), tip + 50);
        let _ = s.payee.fulfill_htlc(0, preimage(1), &s.payee_signer).unwrap();
        snapshots.push((s.payer.snapshot(), s.payee.snapshot()));
    }
    let any = RestoreCheck::default();
    for (payer, payee) in snapshots {
        assert_eq!(Payer::restore(&payer, any).unwrap().snapshot(), payer);
        assert_eq!(Payee::restore(&payee, any).unwrap().snapshot(), payee);
        for len in 0..payer.len() {
            assert!(matches!(Payer::restore(&payer[..len], any), Err(RestoreError::Decode(_))), "payer prefix {len}");
        }
        for len in 0..payee.len() {
            assert!(matches!(Payee::restore(&payee[..len], any), Err(RestoreError::Decode(_))), "payee prefix {len}");
        }
        for extra in [[0x00].as_slice(), &[0x01], &[0x14, 0x00], &[0xff, 0xff], &[0x1a, 0x00], &[0x17, 0x05, 0x00]] {
            let (mut a, mut b) = (payer.clone(), payee.clone());
            a.extend_from_slice(extra);
            b.extend_from_slice(extra);
            assert!(matches!(Payer::restore(&a, any), Err(RestoreError::Decode(_))), "payer + {extra:02x?}");
            assert!(matches!(Payee::restore(&b, any), Err(RestoreError::Decode(_))), "payee + {extra:02x?}");
        }
        // A complete unknown odd record after the last one is a newer writer's optional field:
        // skipped (even/odd rule), not an error.
        let (mut a, mut b) = (payer.clone(), payee.clone());
        a.extend_from_slice(&[0x17, 0x01, 0xaa]);
        b.extend_from_slice(&[0x17, 0x01, 0xaa]);
        assert_eq!(Payer::restore(&a, any).unwrap().snapshot(), payer);
        assert_eq!(Payee::restore(&b, any).unwrap().snapshot(), payee);
        // Version byte.
        let (mut a, mut b) = (payer.clone(), payee.clone());
        a[1] = 2;
        b[1] = 0;
        assert_eq!(Payer::restore(&a, any).err(), Some(RestoreError::Decode(DecodeError::UnknownVersion(2))));
        assert_eq!(Payee::restore(&b, any).err(), Some(RestoreError::Decode(DecodeError::UnknownVersion(0))));
        // One side's snapshot given to the other.
        assert!(matches!(
            Payer::restore(&payee, any),
            Err(RestoreError::Decode(DecodeError::WrongKind { expected: 0x50, got: 0x4f }))
        ));
        assert!(matches!(
            Payee::restore(&payer, any),
            Err(RestoreError::Decode(DecodeError::WrongKind { expected: 0x4f, got: 0x50 }))
        ));
        // A message is not a snapshot.
        let offer = Msg::Offer(Setup::funded(Variant::Cltv).offer).encode();
        assert!(matches!(Payer::restore(&offer, any), Err(RestoreError::Decode(DecodeError::WrongKind { .. }))));
        assert!(matches!(Payee::restore(&offer, any), Err(RestoreError::Decode(DecodeError::WrongKind { .. }))));
    }
}

#[test]
fn snapshot_of_another_channel_or_stale_fails_to_restore() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        let channel = s.payer.channel_id().unwrap();
        assert_eq!(s.payee.channel_id(), Some(channel));
        let other = ChannelId::from_funding(&OutPoint { txid: Txid::from_byte_array([5; 32]), vout: 1 });
        let mut neighbour = channel.0;
        neighbour[31] ^= 1;
        let payer_old = s.payer.snapshot();
        let payee_old = s.payee.snapshot();
        let (payer_old_id, payee_old_id) = (s.payer.update_id(), s.payee.update_id());
        s.pay(1_000);
        let payer_new = s.payer.snapshot();
        let payee_new = s.payee.snapshot();
        for wrong in [other, ChannelId(neighbour)] {
            let check = RestoreCheck { channel_id: Some(wrong), min_update_id: 0 };
            assert_eq!(Payer::restore(&payer_new, check).err(), Some(RestoreError::WrongChannel));
            assert_eq!(Payee::restore(&payee_new, check).err(), Some(RestoreError::WrongChannel));
        }
        // A snapshot from before funding has no channel id yet.
        let payee = Payee::new(payee_config(v), &s.payee_signer).0;
        let payer = Payer::new(s.offer.clone(), payer_config(), &s.payer_signer, s.tip).unwrap();
        assert_eq!((payer.channel_id(), payee.channel_id()), (None, None));
        let check = RestoreCheck { channel_id: Some(channel), min_update_id: 0 };
        assert_eq!(Payer::restore(&payer.snapshot(), check).err(), Some(RestoreError::WrongChannel));
        assert_eq!(Payee::restore(&payee.snapshot(), check).err(), Some(RestoreError::WrongChannel));
        // Stale: the embedder knows a newer update was persisted.
        let check = RestoreCheck { channel_id: Some(channel), min_update_id: s.payer.update_id() };
        assert_eq!(
            Payer::restore(&payer_old, check).err(),
            Some(RestoreError::Stale { snapshot: payer_old_id, expected_at_least: s.payer.update_id() })
        );
        assert_eq!(Payer::restore(&payer_new, check).unwrap().snapshot(), payer_new);
        let check = RestoreCheck { channel_id: Some(channel), min_update_id: s.payer.update_id() + 1 };
        assert!(matches!(Payer::restore(&payer_new, check), Err(RestoreError::Stale { .. })));
        let check = RestoreCheck { channel_id: Some(channel), min_update_id: s.payee.update_id() };
        assert_eq!(
            Payee::restore(&payee_old, check).err(),
            Some(RestoreError::Stale { snapshot: payee_old_id, expected_at_least: s.payee.update_id() })
        );
        assert_eq!(Payee::restore(&payee_new, check).unwrap().snapshot(), payee_new);
        let check = RestoreCheck { channel_id: None, min_update_id: u64::MAX };
        assert!(matches!(Payee::restore(&payee_new, check), Err(RestoreError::Stale { .. })));
    }
}

// ------------------------------------------------------------------------------------------------
// Random single-byte mutations of every message kind, fed to both sides.

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Feeds `msg` to `payee`. On refusal its state must be unchanged; an acceptance that changes
/// the state must hand out that state as its update (and it must restore); one without an update
/// must change nothing. Returns whether the state changed.
fn fuzz_payee(payee: &mut Payee, msg: &Msg, signer: &InMemorySigner, tip: ChainTip) -> bool {
    let before = payee.snapshot();
    let Ok(fx) = payee.handle_message(msg.clone(), signer, tip) else {
        assert_eq!(payee.snapshot(), before, "a refused {msg:?} changed the payee");
        return false;
    };
    let after = payee.snapshot();
    let Some(update) = fx.update else {
        assert_eq!(after, before, "{msg:?} changed the payee without an update to persist");
        return false;
    };
    assert_eq!(update.snapshot.as_ref(), Some(&after));
    let restored = Payee::restore(&after, RestoreCheck::default()).expect("own snapshot restores");
    assert_eq!(restored.snapshot(), after);
    if payee.state().is_some() && payee.template().is_some() {
        payee.closing_tx(signer).expect("an accepted payment can close");
    }
    true
}

fn fuzz_payer(payer: &mut Payer, msg: &Msg, signer: &InMemorySigner, tip: ChainTip) -> bool {
    let before = payer.snapshot();
    let Ok(fx) = payer.handle_message(msg.clone(), signer, tip) else {
        assert_eq!(payer.snapshot(), before, "a refused {msg:?} changed the payer");
        return false;
    };
    let after = payer.snapshot();
    let Some(update) = fx.update else {
        assert_eq!(after, before, "{msg:?} changed the payer without an update to persist");
        return false;
    };
    assert_eq!(update.snapshot.as_ref(), Some(&after));
    let restored = Payer::restore(&after, RestoreCheck::default()).expect("own snapshot restores");
    assert_eq!(restored.snapshot(), after);
    true
}

/// Real messages of every kind, and sides waiting for each of them.
struct Fixtures {
    samples: Vec<(&'static str, Msg)>,
    payees: Vec<Payee>,
    payers: Vec<Payer>,
}

/// An open channel with two live HTLCs and an unacknowledged payment in flight: the payee before
/// that payment, the payer after it, and the channel messages of that moment.
fn open_fixture(variant: Variant) -> (Payee, Payer, [Msg; 6]) {
    let tip = ChainTip::at(START);
    let mut open = Setup::open(variant);
    let h = open.tip.height.0;
    open.add_htlc(2_000, preimage(1), h + 50);
    open.add_htlc(3_000, preimage(2), h + 60);
    let payee = open.payee.clone();
    let fx = open.payer.pay(Amount::from_sat(1_000), &open.payer_signer).unwrap();
    let payment = fx.send[0].clone();
    let ack = open.payee.handle_message(payment.clone(), &open.payee_signer, tip).unwrap().send[0].clone();
    let fulfill = open.payee.fulfill_htlc(0, preimage(1), &open.payee_signer).unwrap().send[0].clone();
    let fail = open.payee.fail_htlc(1).unwrap().send[0].clone();
    let closed = open.payee.clone().close(&open.payee_signer).unwrap().send[0].clone();
    let close_request = open.payer.request_close().unwrap().send[0].clone();
    (payee, open.payer, [payment, ack, fulfill, fail, close_request, closed])
}

fn fixtures() -> Fixtures {
    let tip = ChainTip::at(START);
    let cltv = Setup::before_open(Variant::Cltv);
    let presigned_funded = Setup::funded(Variant::PresignedRefund);
    let presigned = Setup::before_open(Variant::PresignedRefund);
    let (cltv_payee, cltv_payer, [payment, ack, fulfill, fail, close_request, closed]) = open_fixture(Variant::Cltv);
    let (presigned_payee, presigned_payer, [presigned_payment, ..]) = open_fixture(Variant::PresignedRefund);
    let f = Fixtures {
        samples: vec![
            ("offer", Msg::Offer(cltv.offer.clone())),
            ("refund_request", Msg::RefundRequest(presigned_funded.refund_request.clone().unwrap())),
            ("refund_signed", Msg::RefundSigned(presigned.refund_signed.clone().unwrap())),
            ("open_cltv", Msg::Open(cltv.open.clone().unwrap())),
            ("open_presigned", Msg::Open(presigned.open.clone().unwrap())),
            ("payment_cltv", payment),
            ("payment_presigned", presigned_payment),
            ("ack", ack),
            ("fulfill", fulfill),
            ("fail", fail),
            ("close_request", close_request),
            ("closed", closed),
        ],
        payees: vec![
            cltv.payee.clone(),
            presigned_funded.payee.clone(),
            presigned.payee.clone(),
            cltv_payee,
            presigned_payee,
        ],
        payers: vec![presigned_funded.payer.clone(), cltv_payer, presigned_payer],
    };
    // Unmutated, every message but Offer (taken by `Payer::new`) and Closed (informational) is
    // accepted by a side waiting for it.
    for (name, m) in &f.samples {
        let changed = f.payees.iter().filter(|p| fuzz_payee(&mut (*p).clone(), m, &signer(2), tip)).count()
            + f.payers.iter().filter(|p| fuzz_payer(&mut (*p).clone(), m, &signer(1), tip)).count();
        assert_eq!(changed > 0, !matches!(m, Msg::Offer(_) | Msg::Closed { .. }), "{name}");
    }
    f
}

/// ~2,000 random single-byte changes of each named sample, fed to every waiting side.
fn fuzz(names: &[&str], seed: u64) {
    const MUTATIONS: usize = 2_000;
    let tip = ChainTip::at(START);
    let (payer_signer, payee_signer) = (signer(1), signer(2));
    let f = fixtures();
    let (mut payees, mut payers) = (f.payees.clone(), f.payers.clone());
    let mut rng = XorShift(seed);
    for (name, m) in f.samples.iter().filter(|(n, _)| names.contains(n)) {
        let bytes = m.encode();
        let (mut decoded, mut accepted) = (0, 0);
        for _ in 0..MUTATIONS {
            let mut b = bytes.clone();
            let i = (rng.next() % b.len() as u64) as usize;
            b[i] ^= (rng.next() % 255 + 1) as u8;
            let Ok(mutated) = Msg::decode(&b) else { continue };
            decoded += 1;
            // Whatever decodes re-encodes to the same bytes (no malleable encodings).
            assert_eq!(mutated.encode(), b, "{name}: byte {i} decodes but re-encodes differently");
            if let Msg::Offer(o) = &mutated {
                if let Ok(p) = Payer::new(o.clone(), payer_config(), &payer_signer, tip) {
                    let _ = p.funding_output();
                }
            }
            for (p, base) in payees.iter_mut().zip(&f.payees) {
                if fuzz_payee(p, &mutated, &payee_signer, tip) {
                    accepted += 1;
                    *p = base.clone();
                }
            }
            for (p, base) in payers.iter_mut().zip(&f.payers) {
                if fuzz_payer(p, &mutated, &payer_signer, tip) {
                    accepted += 1;
                    *p = base.clone();
                }
            }
        }
        // (A two-byte CloseRequest has only its kind and version to mutate.)
        assert!(decoded > 0 || bytes.len() == 2, "{name}: some mutations decode");
        eprintln!("{name}: {decoded} of {MUTATIONS} mutations decode, {accepted} accepted");
    }
}

#[test]
fn mutated_setup_messages_never_panic_nor_change_state_on_refusal() {
    fuzz(&["offer", "refund_request", "refund_signed"], 0x9e37_79b9_7f4a_7c15);
}

#[test]
fn mutated_open_messages_never_panic_nor_change_state_on_refusal() {
    fuzz(&["open_cltv", "open_presigned"], 0xd1b5_4a32_d192_ed03);
}

#[test]
fn mutated_channel_messages_never_panic_nor_change_state_on_refusal() {
    fuzz(
        &["payment_cltv", "payment_presigned", "ack", "fulfill", "fail", "close_request", "closed"],
        0x8cb9_2ba7_2f3d_8dd7,
    );
}

#[test]
fn mutated_snapshots_never_panic() {
    let mut s = Setup::open(Variant::PresignedRefund);
    let h = s.tip.height.0;
    s.add_htlc(2_000, preimage(1), h + 50);
    let _ = s.payee.fulfill_htlc(0, preimage(1), &s.payee_signer).unwrap();
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    for bytes in [s.payer.snapshot(), s.payee.snapshot()] {
        for _ in 0..2_000 {
            let mut b = bytes.clone();
            let i = (rng.next() % b.len() as u64) as usize;
            b[i] ^= (rng.next() % 255 + 1) as u8;
            if let Ok(p) = Payer::restore(&b, RestoreCheck::default()) {
                let _ = (p.snapshot(), p.available(), p.next_deadline(), p.refund_tx(&s.payer_signer));
            }
            if let Ok(p) = Payee::restore(&b, RestoreCheck::default()) {
                let _ = (p.snapshot(), p.received(), p.next_deadline(), p.closing_tx(&s.payee_signer));
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Hostile inputs that are currently accepted (bugs in src/, see the ignore reasons).

/// `OP_TRUE` as the payer's change script: consensus-valid, but not a standard output type, so no
/// node relays a transaction paying it.
fn non_standard_script() -> ScriptBuf {
    ScriptBuf::from_bytes(vec![0x51])
}

fn is_standard_output(script: &ScriptBuf) -> bool {
    script.is_p2pkh() || script.is_p2sh() || script.is_witness_program() || script.is_op_return()
}

#[test]
fn non_standard_payer_script_is_refused() {
    // CLTV: the script arrives in Open, with a first payment signed over it.
    let mut s = Setup::before_open(Variant::Cltv);
    let mut t = s.template();
    t.payer_script = non_standard_script();
    let state = PaymentState { to_payee: FIRST, htlcs: vec![] };
    let signature = t.sign(&s.payer_signer, &t.build(&state).unwrap()).unwrap();
    let open = Open {
        payer_script: non_standard_script(),
        first_payment: Payment { number: 1, to_payee: FIRST, htlcs: vec![], signature },
        ..s.open.clone().unwrap()
    };
    let mut accepted = s.payee.clone();
    if accepted.handle_message(wire(&Msg::Open(open.clone())), &s.payee_signer, s.tip).is_ok() {
        let close = accepted.closing_tx(&s.payee_signer).unwrap();
        assert!(!close.output.iter().all(|o| is_standard_output(&o.script_pubkey)), "the only close is non-standard");
    }
    payee_refuses(&mut s, Msg::Open(open), Misbehaviour::NonStandardScript);

    // Pre-signed: the script arrives in RefundRequest.
    let mut s = Setup::funded(Variant::PresignedRefund);
    let r = RefundRequest { payer_script: non_standard_script(), ..s.refund_request.clone().unwrap() };
    payee_refuses(&mut s, Msg::RefundRequest(r), Misbehaviour::NonStandardScript);
}

#[test]
fn payment_too_heavy_to_relay_is_refused() {
    let capacity = Amount::from_sat(10_000_000);
    let mut s = Setup::open_with(payee_config(Variant::Cltv), PayerConfig { capacity, ..payer_config() });
    let tip = s.tip.height.0;
    let mut state = s.state();
    state.htlcs = (0..2_400u64)
        .map(|id| {
            let mut p = [0u8; 32];
            p[..8].copy_from_slice(&id.to_be_bytes());
            htlc(id, 1_000, PaymentPreimage(p).hash(), tip + 50)
        })
        .collect();
    // No payer can even sign such a state: the template refuses to build it.
    assert_eq!(s.template().build(&state).unwrap_err(), PaymentError::TooManyHtlcs);
    let p = s.unbuildable(s.next_number(), state.to_payee, state.htlcs);
    let before = payee_fingerprint(&s.payee);
    let err = match s.payee.handle_message(Msg::Payment(p), &s.payee_signer, s.tip) {
        Ok(fx) => panic!("a payment with 2,400 HTLCs must be refused, but {}", describe(&fx)),
        Err(e) => e,
    };
    assert_eq!(err.kind, Misbehaviour::Payment(PaymentError::TooManyHtlcs));
    assert_eq!(payee_fingerprint(&s.payee), before);
}

#[test]
fn payee_goes_on_chain_before_a_revealed_htlc_expires() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        let expiry = START + 40;
        let id = s.add_htlc(5_000, preimage(1), expiry);
        assert!(expiry < s.payee.close_by().0);
        // The payee reveals the preimage; the payer never folds the HTLC in.
        let fx = s.payee.fulfill_htlc(id, preimage(1), &s.payee_signer).unwrap();
        assert!(matches!(fx.send.as_slice(), [Msg::Fulfill { .. }]));
        let mut closed_at = None;
        for height in START + 1..expiry {
            let fx = s.payee.handle_chain(ChainEvent::Tip(ChainTip::at(height)), &s.payee_signer);
            if !fx.broadcast.is_empty() {
                closed_at = Some(height);
                break;
            }
        }
        assert!(
            closed_at.is_some(),
            "no close before the HTLC's timeout path opens at {expiry}; next deadline {:?}",
            s.payee.next_deadline()
        );
    }
}

#[test]
fn presigned_open_must_restate_the_signed_refund_fee() {
    let mut s = Setup::before_open(Variant::PresignedRefund);
    for refund_fee in [Amount::ZERO, FEE + Amount::from_sat(1), Amount::from_sat(100_000)] {
        let open = Open { refund_fee, ..s.open.clone().unwrap() };
        payee_refuses(&mut s, Msg::Open(open), Misbehaviour::WrongFunding);
    }
}

/// Issue item 12. A validly signed payment of a hostile payer may carry any HTLC id. An HTLC at
/// `u64::MAX` would leave no next id to require, so a later HTLC could take the same id again
/// (preimages, failures and upstream links are keyed by id), and a payee built with overflow
/// checks panicked on it (`max + 1`). It is refused, as is a payment numbered `u64::MAX`; the
/// largest id with a successor is taken, and then no new HTLC can follow it.
#[test]
fn htlc_id_at_u64_max_is_refused_so_ids_are_never_reused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        let expiry = s.tip.height.0 + 50;
        let n = s.next_number();
        let with = |state: &PaymentState, id: u64| {
            let mut state = state.clone();
            state.htlcs.push(htlc(id, 20_000, preimage(3).hash(), expiry));
            state
        };
        let held = s.state();
        let at_max = s.signed(n, with(&held, u64::MAX));
        payee_refuses(&mut s, Msg::Payment(at_max), Misbehaviour::Exhausted);
        // The largest id that has a successor is taken.
        let below = with(&held, u64::MAX - 1);
        let p = s.signed(n, below.clone());
        let fx = s.payee.handle_message(wire(&Msg::Payment(p)), &s.payee_signer, s.tip).expect("id u64::MAX - 1");
        assert!(fx.events.iter().any(|e| matches!(e, paychan::spilman::Event::HtlcOffered(h) if h.id == u64::MAX - 1)));
        // Nothing may follow it.
        let after = s.signed(n + 1, with(&below, u64::MAX));
        payee_refuses(&mut s, Msg::Payment(after), Misbehaviour::Exhausted);
        // A payment numbered u64::MAX leaves no next number either.
        let mut more = below.clone();
        more.to_payee += Amount::from_sat(1_000);
        let last = s.signed(u64::MAX, more.clone());
        payee_refuses(&mut s, Msg::Payment(last), Misbehaviour::Exhausted);
        payee_accepts(&s, Msg::Payment(s.signed(u64::MAX - 1, more)));
    }
}

/// Issue item 13. The CLTV-variant payee took a funding output above 21,000,000 BTC (the
/// pre-signed variant refused it): its first payment could never confirm. Refused now, by the
/// same check for both variants; 21,000,000 BTC exactly is the boundary.
#[test]
fn cltv_funding_above_21m_btc_is_refused() {
    let mut s = Setup::funded(Variant::Cltv);
    let open = s.open.clone().expect("the CLTV payer opens at once");
    let hostile = |capacity: Amount| {
        let mut funding_tx = open.funding_tx.clone();
        funding_tx.output[open.funding_vout as usize].value = capacity;
        let mut t = s.template();
        t.capacity = capacity;
        t.outpoint = OutPoint { txid: funding_tx.compute_txid(), vout: open.funding_vout };
        let state = PaymentState { to_payee: open.first_payment.to_payee, htlcs: vec![] };
        let signature = t.sign(&s.payer_signer, &t.build(&state).expect("buildable")).unwrap();
        Open { funding_tx, first_payment: Payment { signature, ..open.first_payment.clone() }, ..open.clone() }
    };
    let above = hostile(Amount::MAX_MONEY + Amount::from_sat(1));
    payee_accepts(&s, Msg::Open(hostile(Amount::MAX_MONEY)));
    payee_refuses(&mut s, Msg::Open(above), Misbehaviour::BadTerms);
}
