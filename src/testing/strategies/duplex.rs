//! Strategies for every duplex message with random field values (each one encodes and decodes; a
//! channel refuses most of them, which is what hostile-input tests want).

use std::vec;
use std::vec::Vec;

use bitcoin::ecdsa;
use proptest::prelude::*;
use proptest::strategy::Union;

use super::lightning::{pubkey, sats, script};
use super::spilman::{bitcoin_signature, outpoint, payment};
use crate::core::PaymentPreimage;
use crate::duplex::params::MAX_DEPTH;
use crate::duplex::{
    Accept, AcceptedTerms, CloseProposal, CloseSigned, FundingCreated, FundingSigned, HtlcRemoval, Msg, Open, Params,
    PendingReset, Reestablish, Removal, ResetAccept, ResetFinish, ResetPropose, Role, Terms,
};

/// Tree parameters the decoder accepts: 1 to 6 levels of radix 1 to 8, `Δ` and `T_r` non-zero.
pub fn params() -> impl Strategy<Value = Params> {
    (prop::collection::vec(1u32..=8, 1..=6), 1u16..=1_000, 1u16..=u16::MAX)
        .prop_filter_map("valid parameters", |(radix, step, refund)| Params::new(radix, step, refund).ok())
}

/// Channel terms with random amounts and margins (not necessarily acceptable to a channel).
pub fn terms() -> impl Strategy<Value = Terms> {
    (
        params(),
        (sats(), sats(), sats()),
        (sats(), sats(), sats()),
        (any::<u16>(), any::<u16>(), any::<u16>()),
        (any::<u32>(), any::<u64>(), any::<u16>()),
    )
        .prop_map(
            |(
                params,
                (capacity, push, payment_fee),
                (refund_fee, claim_fee, dust_limit),
                (confirm_blocks, reorg_blocks, htlc_grace_blocks),
                (max_htlc_expiry_delta, reset_warning, funding_depth),
            )| Terms {
                params,
                capacity,
                push,
                payment_fee,
                refund_fee,
                claim_fee,
                dust_limit,
                confirm_blocks,
                reorg_blocks,
                htlc_grace_blocks,
                max_htlc_expiry_delta,
                reset_warning,
                funding_depth,
            },
        )
}

fn node_sigs() -> impl Strategy<Value = Vec<ecdsa::Signature>> {
    prop::collection::vec(bitcoin_signature(), 0..=4.min(MAX_DEPTH + 1))
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Initiator), Just(Role::Acceptor)]
}

/// A reset proposal with random digits, numbers, removals, values and signatures.
pub fn reset_propose() -> impl Strategy<Value = ResetPropose> {
    let removal = (role(), any::<u64>(), prop_oneof![Just(Removal::Folded), Just(Removal::Dropped)])
        .prop_map(|(offerer, id, how)| HtlcRemoval { offerer, id, how });
    (
        prop::collection::vec(any::<u16>(), 0..=6),
        any::<[u64; 2]>(),
        prop::collection::vec(removal, 0..4),
        (sats(), sats()),
        prop::option::of(bitcoin_signature()),
        node_sigs(),
    )
        .prop_map(|(digits, numbers, removed, (a, b), base_sig, node_sigs)| ResetPropose {
            digits,
            numbers,
            removed,
            values: [a, b],
            base_sig,
            node_sigs,
        })
}

/// Every duplex message type, with random field values.
pub fn any_msg() -> impl Strategy<Value = Msg> {
    Union::new(vec![
        (terms(), pubkey(), pubkey(), script())
            .prop_map(|(terms, funding_key, htlc_key, payout_script)| {
                Msg::Open(Open { terms, funding_key, htlc_key, payout_script })
            })
            .boxed(),
        (pubkey(), pubkey(), script())
            .prop_map(|(funding_key, htlc_key, payout_script)| {
                Msg::Accept(Accept { funding_key, htlc_key, payout_script })
            })
            .boxed(),
        (outpoint(), node_sigs(), bitcoin_signature())
            .prop_map(|(funding_outpoint, node_sigs, kickoff_sig)| {
                Msg::FundingCreated(FundingCreated { funding_outpoint, node_sigs, kickoff_sig })
            })
            .boxed(),
        (node_sigs(), bitcoin_signature())
            .prop_map(|(node_sigs, kickoff_sig)| Msg::FundingSigned(FundingSigned { node_sigs, kickoff_sig }))
            .boxed(),
        payment(4).prop_map(Msg::Payment).boxed(),
        any::<u64>().prop_map(|number| Msg::Ack { number }).boxed(),
        (any::<u64>(), any::<[u8; 32]>()).prop_map(|(id, p)| Msg::Fulfill { id, preimage: PaymentPreimage(p) }).boxed(),
        any::<u64>().prop_map(|id| Msg::Fail { id }).boxed(),
        reset_propose().prop_map(Msg::ResetPropose).boxed(),
        (node_sigs(), prop::option::of(bitcoin_signature()))
            .prop_map(|(node_sigs, base_sig)| Msg::ResetAccept(ResetAccept { node_sigs, base_sig }))
            .boxed(),
        bitcoin_signature().prop_map(|node_sig| Msg::ResetFinish(ResetFinish { node_sig })).boxed(),
        (any::<u8>(), bitcoin_signature())
            .prop_map(|(spend, signature)| Msg::CloseProposal(CloseProposal { spend, signature }))
            .boxed(),
        bitcoin_signature().prop_map(|signature| Msg::CloseSigned(CloseSigned { signature })).boxed(),
        reestablish().prop_map(Msg::Reestablish).boxed(),
    ])
}

/// A reestablish with random digits, numbers, pending reset and resolved ids.
pub fn reestablish() -> impl Strategy<Value = Reestablish> {
    let digits = || prop::collection::vec(any::<u16>(), 0..=6);
    let pending = prop::option::of(prop_oneof![
        digits().prop_map(PendingReset::Proposed),
        digits().prop_map(PendingReset::Accepted),
    ]);
    let accepted = prop::option::of(reset_propose().prop_map(|p| AcceptedTerms {
        numbers: p.numbers,
        removed: p.removed,
        values: p.values,
    }));
    (
        (digits(), any::<[u64; 2]>(), pending, prop::collection::vec(any::<u64>(), 0..5)),
        (sats(), sats(), node_sigs(), prop::option::of(payment(3))),
        accepted,
    )
        .prop_map(
            |((digits, numbers, pending, resolved), (a, b, your_branch_sigs, your_payment), accepted_terms)| {
                Reestablish {
                    digits,
                    numbers,
                    pending,
                    resolved,
                    branch_values: [a, b],
                    your_branch_sigs,
                    your_payment,
                    accepted_terms,
                }
            },
        )
}

/// Hostile encodings: a random message truncated, extended or with bytes changed.
pub fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    any_msg().prop_flat_map(|m| super::mutated(m.encode()))
}
