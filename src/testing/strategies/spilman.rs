//! Strategies for every Spilman message with random field values (each one encodes and decodes;
//! a payer or payee refuses most of them, which is what hostile-input tests want).

use std::vec;
use std::vec::Vec;

use bitcoin::hashes::Hash;
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::transaction::Version;
use bitcoin::{absolute, ecdsa, OutPoint, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use proptest::prelude::*;
use proptest::strategy::Union;

use super::lightning::{pubkey, sats, script, signature};
use crate::core::{BlockHeight, PaymentHash, PaymentPreimage};
use crate::spilman::{Msg, Offer, Open, Payment, PaymentHtlc, RefundRequest, RefundSigned, Variant};

/// A transaction signature with a standard sighash type.
pub fn bitcoin_signature() -> impl Strategy<Value = ecdsa::Signature> {
    let types = prop_oneof![
        Just(EcdsaSighashType::All),
        Just(EcdsaSighashType::None),
        Just(EcdsaSighashType::Single),
        Just(EcdsaSighashType::AllPlusAnyoneCanPay),
    ];
    (signature(), types).prop_map(|(signature, sighash_type)| ecdsa::Signature { signature, sighash_type })
}

/// Any outpoint.
pub fn outpoint() -> impl Strategy<Value = OutPoint> {
    (any::<[u8; 32]>(), any::<u32>()).prop_map(|(t, vout)| OutPoint { txid: Txid::from_byte_array(t), vout })
}

/// A version-2 transaction with one to three inputs and one to three outputs of random values
/// and scripts (the shape of a wallet's funding transaction).
pub fn transaction() -> impl Strategy<Value = Transaction> {
    let input = (outpoint(), any::<u32>(), prop::collection::vec(prop::collection::vec(any::<u8>(), 0..73), 0..3))
        .prop_map(|(previous_output, seq, w)| TxIn {
            previous_output,
            script_sig: bitcoin::ScriptBuf::new(),
            sequence: Sequence(seq),
            witness: Witness::from_slice(&w),
        });
    let output = (sats(), script()).prop_map(|(value, script_pubkey)| TxOut { value, script_pubkey });
    (prop::collection::vec(input, 1..4), prop::collection::vec(output, 1..4), any::<u32>()).prop_map(
        |(input, output, lock)| Transaction {
            version: Version::TWO,
            lock_time: absolute::LockTime::from_consensus(lock),
            input,
            output,
        },
    )
}

/// An HTLC of a payment.
pub fn payment_htlc() -> impl Strategy<Value = PaymentHtlc> {
    (any::<u64>(), sats(), any::<[u8; 32]>(), any::<u32>()).prop_map(|(id, amount, hash, expiry)| PaymentHtlc {
        id,
        amount,
        payment_hash: PaymentHash(hash),
        expiry: BlockHeight(expiry),
    })
}

/// A payment with up to `max_htlcs` HTLCs.
pub fn payment(max_htlcs: usize) -> impl Strategy<Value = Payment> {
    (any::<u64>(), sats(), prop::collection::vec(payment_htlc(), 0..=max_htlcs), bitcoin_signature())
        .prop_map(|(number, to_payee, htlcs, signature)| Payment { number, to_payee, htlcs, signature })
}

/// The payee's offer.
pub fn offer() -> impl Strategy<Value = Offer> {
    (
        prop_oneof![Just(Variant::Cltv), Just(Variant::PresignedRefund)],
        (pubkey(), pubkey(), script()),
        any::<u32>(),
        (sats(), sats(), sats()),
        (any::<u32>(), any::<u32>()),
    )
        .prop_map(
            |(
                variant,
                (payee_key, payee_htlc_key, payee_script),
                expiry,
                (min_first_payment, dust_limit, payment_fee),
                (close_margin, htlc_min_blocks),
            )| Offer {
                variant,
                payee_key,
                payee_htlc_key,
                payee_script,
                expiry: BlockHeight(expiry),
                min_first_payment,
                dust_limit,
                payment_fee,
                close_margin,
                htlc_min_blocks,
            },
        )
}

/// Every Spilman message type, with random field values.
pub fn any_msg() -> impl Strategy<Value = Msg> {
    Union::new(vec![
        offer().prop_map(Msg::Offer).boxed(),
        (pubkey(), pubkey(), script(), outpoint(), sats(), sats())
            .prop_map(|(payer_key, payer_htlc_key, payer_script, funding_outpoint, capacity, refund_fee)| {
                Msg::RefundRequest(RefundRequest {
                    payer_key,
                    payer_htlc_key,
                    payer_script,
                    funding_outpoint,
                    capacity,
                    refund_fee,
                })
            })
            .boxed(),
        bitcoin_signature().prop_map(|signature| Msg::RefundSigned(RefundSigned { signature })).boxed(),
        ((pubkey(), pubkey(), script()), sats(), transaction(), any::<u32>(), payment(3))
            .prop_map(|((payer_key, payer_htlc_key, payer_script), refund_fee, funding_tx, funding_vout, first)| {
                Msg::Open(Open {
                    payer_key,
                    payer_htlc_key,
                    payer_script,
                    refund_fee,
                    funding_tx,
                    funding_vout,
                    first_payment: first,
                })
            })
            .boxed(),
        payment(6).prop_map(Msg::Payment).boxed(),
        any::<u64>().prop_map(|number| Msg::Ack { number }).boxed(),
        (any::<u64>(), any::<[u8; 32]>()).prop_map(|(id, p)| Msg::Fulfill { id, preimage: PaymentPreimage(p) }).boxed(),
        any::<u64>().prop_map(|id| Msg::Fail { id }).boxed(),
        Just(Msg::CloseRequest).boxed(),
        any::<[u8; 32]>().prop_map(|t| Msg::Closed { txid: Txid::from_byte_array(t) }).boxed(),
        (any::<u64>(), prop::collection::vec(any::<u64>(), 0..5), prop::option::of(payment(3)))
            .prop_map(|(number, resolved, your_payment)| {
                Msg::Reestablish(crate::spilman::Reestablish { number, resolved, your_payment })
            })
            .boxed(),
    ])
}

/// Hostile encodings: a random message truncated, extended or with bytes changed.
pub fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    any_msg().prop_flat_map(|m| super::mutated(m.encode()))
}
