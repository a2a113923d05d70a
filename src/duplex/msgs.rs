//! Duplex channel messages and their versioned binary encoding ([`crate::core::encode`]):
//! `kind ‖ version ‖ TLV stream`. Decoding rejects truncation, trailing bytes, unknown versions
//! and kinds, unknown even fields and invalid values with a typed [`DecodeError`].
//!
//! Tree signatures travel bottom-up (`N_d` first), as they are made: a party signs the deepest
//! node first and the node that invalidates an old subtree last.

use alloc::vec::Vec;

use bitcoin::secp256k1::PublicKey;
use bitcoin::{ecdsa, Amount, OutPoint, ScriptBuf};

use super::channel::Channel;
use super::params::{Params, Terms, MAX_DEPTH};
use super::{peer_error, Effects, Misbehaviour, PeerError, Role};
use crate::core::encode::{required, DecodeError, Reader, TlvReader, TlvWriter, Writer};
use crate::core::hashlock::PaymentPreimage;
use crate::core::sign::Signer;
use crate::core::wire::{
    read_list, read_message, read_single_record, single_record, temporary_channel_id, write_list, Addressed, LayerMsg,
};
use crate::driving::{ChainTip, ChannelId};
use crate::spilman::payment::PaymentHtlc;
use crate::spilman::Payment;

/// The initiator's proposal: terms and its keys.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Open {
    /// The channel terms.
    pub terms: Terms,
    /// The initiator's funding key (tree 2-of-2s and its leaf channel keys).
    pub funding_key: PublicKey,
    /// The initiator's HTLC key.
    pub htlc_key: PublicKey,
    /// Where the initiator's money goes.
    pub payout_script: ScriptBuf,
}

/// The acceptor's keys.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Accept {
    /// The acceptor's funding key.
    pub funding_key: PublicKey,
    /// The acceptor's HTLC key.
    pub htlc_key: PublicKey,
    /// Where the acceptor's money goes.
    pub payout_script: ScriptBuf,
}

/// The funding outpoint (of a transaction nobody has signed yet) and the initiator's signatures
/// on the first branch, bottom-up, and on the kickoff.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FundingCreated {
    /// The funding output.
    pub funding_outpoint: OutPoint,
    /// Signatures on `N_d, …, N_1`.
    pub node_sigs: Vec<ecdsa::Signature>,
    /// Signature on `K`.
    pub kickoff_sig: ecdsa::Signature,
}

/// The acceptor's signatures on the first branch, bottom-up, and on the kickoff.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FundingSigned {
    /// Signatures on `N_d, …, N_1`.
    pub node_sigs: Vec<ecdsa::Signature>,
    /// Signature on `K`.
    pub kickoff_sig: ecdsa::Signature,
}

/// How a reset removes an HTLC from the leaf.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Removal {
    /// Its preimage is known: the amount goes to the receiver.
    Folded,
    /// It failed or expired: the amount goes back to the offerer.
    Dropped,
}

/// An HTLC a reset removes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct HtlcRemoval {
    /// Who offered it (the payer of its leaf channel).
    pub offerer: Role,
    /// Its id in that channel.
    pub id: u64,
    /// How it is removed.
    pub how: Removal,
}

/// Reset step (1): the proposer's new counter value, what it nets, the resulting leaf, and its
/// signatures below the node that invalidates the old subtree.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ResetPropose {
    /// The new counter digits, level 1 first.
    pub digits: Vec<u16>,
    /// The payment numbers netted, by payer role (initiator's channel first).
    pub numbers: [u64; 2],
    /// HTLCs folded or dropped; every other pending HTLC is carried.
    pub removed: Vec<HtlcRemoval>,
    /// The new leaf's channel values, by payer role.
    pub values: [Amount; 2],
    /// The proposer's signature on the first payment of its own new leaf channel, when that
    /// payment carries HTLCs.
    pub base_sig: Option<ecdsa::Signature>,
    /// Signatures on `N_d', …, N_{i+1}'` (empty when the leaf itself is the changed level).
    pub node_sigs: Vec<ecdsa::Signature>,
}

/// Reset step (2): the responder's signatures on `N_d', …, N_{i+1}'` and on `N_i'`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ResetAccept {
    /// Signatures on `N_d', …, N_i'` (the last one invalidates the old subtree).
    pub node_sigs: Vec<ecdsa::Signature>,
    /// The responder's signature on the first payment of its own new leaf channel, when that
    /// payment carries HTLCs.
    pub base_sig: Option<ecdsa::Signature>,
}

/// Reset step (3): the proposer's signature on `N_i'`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ResetFinish {
    /// Signature on `N_i'`.
    pub node_sig: ecdsa::Signature,
}

/// A cooperative close: which output it spends, and the proposer's signature. The outputs are
/// the two balances, to each party's payout script.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CloseProposal {
    /// 0: the funding output; `l ≥ 1`: output 0 of the current branch's tree transaction at level
    /// `l − 1` (1 = kickoff).
    pub spend: u8,
    /// The proposer's signature.
    pub signature: ecdsa::Signature,
}

/// The responder's signature on the cooperative close.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CloseSigned {
    /// Its signature.
    pub signature: ecdsa::Signature,
}

/// A reset in progress, as a [`Reestablish`] reports it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum PendingReset {
    /// The sender proposed these digits (step 1 sent) and waits for step 2.
    Proposed(Vec<u16>),
    /// The sender accepted a proposal of these digits (step 2 sent) and waits for step 3.
    Accepted(Vec<u16>),
}

/// The terms of a reset the sender accepted (step 2 sent) and waits to finish: with the digits of
/// [`PendingReset::Accepted`], what lets a proposer that no longer holds its proposal (it
/// cancelled it after the answer left, or lost it) take it up again and finish it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AcceptedTerms {
    /// The payment numbers netted, by payer role (initiator's channel first).
    pub numbers: [u64; 2],
    /// HTLCs folded or dropped; every other pending HTLC is carried.
    pub removed: Vec<HtlcRemoval>,
    /// The new leaf's channel values, by payer role.
    pub values: [Amount; 2],
}

/// Sent by both parties first on every new connection: what each holds, so that each can send
/// again what the other missed, and tell whether it lost data itself.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Reestablish {
    /// The sender's committed counter digits.
    pub digits: Vec<u16>,
    /// The newest payment number the sender holds, by payer role (initiator's channel first):
    /// signed, in its own leaf channel; received, in the other.
    pub numbers: [u64; 2],
    /// The sender's reset in progress, if any.
    pub pending: Option<PendingReset>,
    /// The HTLCs the sender offered (ids in its own leaf channel) whose fulfilment or failure it
    /// has received: the other party sends the rest again.
    pub resolved: Vec<u64>,
    /// The leaf channel values of the sender's committed branch, by payer role: with
    /// `your_branch_sigs`, what lets the receiver rebuild that branch.
    pub branch_values: [Amount; 2],
    /// The receiver's signatures on the sender's committed branch, `N_1` first: a receiver behind
    /// that branch checks its own signature there before it believes it lost state.
    pub your_branch_sigs: Vec<ecdsa::Signature>,
    /// The receiver's newest payment the sender holds (its own signature on it): a receiver that
    /// does not remember signing it checks the signature before it believes it lost state.
    pub your_payment: Option<Payment>,
    /// With [`PendingReset::Accepted`], the terms of the accepted proposal (an optional field:
    /// older senders omit it).
    pub accepted_terms: Option<AcceptedTerms>,
}

/// A duplex message.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Msg {
    /// Terms and the initiator's keys.
    Open(Open),
    /// The acceptor's keys.
    Accept(Accept),
    /// Funding outpoint and the initiator's tree signatures.
    FundingCreated(FundingCreated),
    /// The acceptor's tree signatures.
    FundingSigned(FundingSigned),
    /// A payment in the sender's leaf channel (the Spilman payment message).
    Payment(Payment),
    /// The payee holds payment `number`.
    Ack {
        /// The payment number.
        number: u64,
    },
    /// The receiver reveals an HTLC's preimage.
    Fulfill {
        /// HTLC id (in the recipient's own leaf channel).
        id: u64,
        /// Its preimage.
        preimage: PaymentPreimage,
    },
    /// The receiver gives an HTLC up.
    Fail {
        /// HTLC id (in the recipient's own leaf channel).
        id: u64,
    },
    /// Reset step (1).
    ResetPropose(ResetPropose),
    /// Reset step (2).
    ResetAccept(ResetAccept),
    /// Reset step (3).
    ResetFinish(ResetFinish),
    /// Cooperative close proposal.
    CloseProposal(CloseProposal),
    /// Cooperative close signature.
    CloseSigned(CloseSigned),
    /// First message on a new connection.
    Reestablish(Reestablish),
}

/// Version 2: zero-fee TRUC tree transactions with a pay-to-anchor output; [`Terms`] without
/// the tree fee. Version 1 (fixed-fee version-2 tree transactions) is refused.
///
/// [`Open`] carries [`Terms::funding_depth`] in its record 1, added without a version change
/// (odd: a decoder of the previous release skips it, and does not enforce the depth, as
/// before): an `Open` without it (the previous release) is still read, with the smallest depth
/// its terms allow ([`Terms::min_funding_depth`]).
const VERSION: u8 = 2;
const K_OPEN: u8 = 0x60;
const K_ACCEPT: u8 = 0x61;
const K_FUNDING_CREATED: u8 = 0x62;
const K_FUNDING_SIGNED: u8 = 0x63;
const K_PAYMENT: u8 = 0x64;
const K_ACK: u8 = 0x65;
const K_FULFILL: u8 = 0x66;
const K_FAIL: u8 = 0x67;
const K_RESET_PROPOSE: u8 = 0x68;
const K_RESET_ACCEPT: u8 = 0x69;
const K_RESET_FINISH: u8 = 0x6a;
const K_CLOSE_PROPOSAL: u8 = 0x6b;
const K_CLOSE_SIGNED: u8 = 0x6c;
const K_REESTABLISH: u8 = 0x6d;

/// Size of an encoded signature with its sighash byte.
pub(crate) const SIG_LEN: usize = 65;

pub(crate) use crate::core::wire::read_count;
pub(crate) use crate::spilman::msgs::{read_htlc, read_htlcs, write_htlc, write_htlcs};

pub(crate) fn write_sigs(w: &mut Writer, sigs: &[ecdsa::Signature]) {
    write_list(w, sigs, |w, s| {
        w.bitcoin_signature(s);
    });
}

pub(crate) fn read_sigs(r: &mut Reader<'_>, field: &'static str) -> Result<Vec<ecdsa::Signature>, DecodeError> {
    read_list(r, SIG_LEN, MAX_DEPTH + 1, |r| r.bitcoin_signature(field))
}

pub(crate) fn write_digits(w: &mut Writer, digits: &[u16]) {
    write_list(w, digits, |w, d| {
        w.u16(*d);
    });
}

pub(crate) fn read_digits(r: &mut Reader<'_>) -> Result<Vec<u16>, DecodeError> {
    read_list(r, 2, MAX_DEPTH, |r| r.u16())
}

pub(crate) fn read_role(r: &mut Reader<'_>) -> Result<Role, DecodeError> {
    Role::from_index(r.u8()?).ok_or(DecodeError::InvalidValue("role"))
}

pub(crate) fn write_removals(w: &mut Writer, removed: &[HtlcRemoval]) {
    write_list(w, removed, |w, r| {
        w.u8(r.offerer.index() as u8).u64(r.id).u8(match r.how {
            Removal::Folded => 0,
            Removal::Dropped => 1,
        });
    });
}

pub(crate) fn read_removals(r: &mut Reader<'_>) -> Result<Vec<HtlcRemoval>, DecodeError> {
    read_list(r, 10, usize::MAX, |r| {
        let offerer = read_role(r)?;
        let id = r.u64()?;
        let how = match r.u8()? {
            0 => Removal::Folded,
            1 => Removal::Dropped,
            _ => return Err(DecodeError::InvalidValue("removal")),
        };
        Ok(HtlcRemoval { offerer, id, how })
    })
}

pub(crate) fn write_terms(w: &mut Writer, t: &Terms) {
    write_list(w, t.params.radix(), |w, k| {
        w.u32(*k);
    });
    w.u16(t.params.step()).u16(t.params.refund_delay());
    w.amount(t.capacity).amount(t.push).amount(t.payment_fee);
    w.amount(t.refund_fee).amount(t.claim_fee).amount(t.dust_limit);
    w.u16(t.confirm_blocks).u16(t.reorg_blocks).u16(t.htlc_grace_blocks);
    w.u32(t.max_htlc_expiry_delta).u64(t.reset_warning);
}

pub(crate) fn read_terms(r: &mut Reader<'_>) -> Result<Terms, DecodeError> {
    let radix = read_list(r, 4, MAX_DEPTH, |r| r.u32())?;
    let (step, refund_delay) = (r.u16()?, r.u16()?);
    let params = Params::new(radix, step, refund_delay).map_err(|_| DecodeError::InvalidValue("params"))?;
    let mut terms = Terms {
        params,
        capacity: r.amount("capacity")?,
        push: r.amount("push")?,
        payment_fee: r.amount("payment_fee")?,
        refund_fee: r.amount("refund_fee")?,
        claim_fee: r.amount("claim_fee")?,
        dust_limit: r.amount("dust_limit")?,
        confirm_blocks: r.u16()?,
        reorg_blocks: r.u16()?,
        htlc_grace_blocks: r.u16()?,
        max_htlc_expiry_delta: r.u32()?,
        reset_warning: r.u64()?,
        funding_depth: 0,
    };
    // Not in this record (it predates the field): the `Open` and the snapshot carry it in a
    // record of their own, which overrides this; their encodings of the previous release,
    // without it, get the smallest depth the terms allow.
    terms.funding_depth = terms.min_funding_depth();
    Ok(terms)
}

fn single(kind: u8, f: impl FnOnce(&mut Writer)) -> Vec<u8> {
    single_record(kind, VERSION, f)
}

fn write_keys(t: &mut TlvWriter, funding: &PublicKey, htlc: &PublicKey, payout: &ScriptBuf, base: u64) {
    t.record(base, |w| {
        w.pubkey(funding).pubkey(htlc);
    })
    .record(base + 2, |w| {
        w.script(payout);
    });
}

impl Msg {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Msg::Open(o) => {
                let mut t = TlvWriter::new(K_OPEN, VERSION);
                t.record(0, |w| write_terms(w, &o.terms));
                // Before the required keys, so a truncated `Open` never reads as one of the
                // previous release; odd, so an acceptor of that release still reads it.
                t.record(1, |w| {
                    w.u16(o.terms.funding_depth);
                });
                write_keys(&mut t, &o.funding_key, &o.htlc_key, &o.payout_script, 2);
                t.finish()
            }
            Msg::Accept(a) => {
                let mut t = TlvWriter::new(K_ACCEPT, VERSION);
                write_keys(&mut t, &a.funding_key, &a.htlc_key, &a.payout_script, 0);
                t.finish()
            }
            Msg::FundingCreated(f) => {
                let mut t = TlvWriter::new(K_FUNDING_CREATED, VERSION);
                t.record(0, |w| {
                    w.outpoint(&f.funding_outpoint);
                })
                .record(2, |w| write_sigs(w, &f.node_sigs))
                .record(4, |w| {
                    w.bitcoin_signature(&f.kickoff_sig);
                });
                t.finish()
            }
            Msg::FundingSigned(f) => {
                let mut t = TlvWriter::new(K_FUNDING_SIGNED, VERSION);
                t.record(0, |w| write_sigs(w, &f.node_sigs)).record(2, |w| {
                    w.bitcoin_signature(&f.kickoff_sig);
                });
                t.finish()
            }
            Msg::Payment(p) => {
                let mut t = TlvWriter::new(K_PAYMENT, VERSION);
                t.record(0, |w| {
                    w.u64(p.number).amount(p.to_payee);
                })
                .record(2, |w| write_htlcs(w, &p.htlcs))
                .record(4, |w| {
                    w.bitcoin_signature(&p.signature);
                });
                t.finish()
            }
            Msg::Ack { number } => single(K_ACK, |w| {
                w.u64(*number);
            }),
            Msg::Fulfill { id, preimage } => single(K_FULFILL, |w| {
                w.u64(*id).bytes(&preimage.0);
            }),
            Msg::Fail { id } => single(K_FAIL, |w| {
                w.u64(*id);
            }),
            Msg::ResetPropose(p) => {
                let mut t = TlvWriter::new(K_RESET_PROPOSE, VERSION);
                t.record(0, |w| write_digits(w, &p.digits))
                    .record(2, |w| {
                        w.u64(p.numbers[0]).u64(p.numbers[1]);
                    })
                    .record(4, |w| write_removals(w, &p.removed))
                    .record(6, |w| {
                        w.amount(p.values[0]).amount(p.values[1]);
                    })
                    .optional(8, p.base_sig.as_ref(), |w, s| {
                        w.bitcoin_signature(s);
                    })
                    .record(10, |w| write_sigs(w, &p.node_sigs));
                t.finish()
            }
            Msg::ResetAccept(a) => {
                let mut t = TlvWriter::new(K_RESET_ACCEPT, VERSION);
                t.record(0, |w| write_sigs(w, &a.node_sigs)).optional(2, a.base_sig.as_ref(), |w, s| {
                    w.bitcoin_signature(s);
                });
                t.finish()
            }
            Msg::ResetFinish(f) => single(K_RESET_FINISH, |w| {
                w.bitcoin_signature(&f.node_sig);
            }),
            Msg::CloseProposal(c) => single(K_CLOSE_PROPOSAL, |w| {
                w.u8(c.spend).bitcoin_signature(&c.signature);
            }),
            Msg::CloseSigned(c) => single(K_CLOSE_SIGNED, |w| {
                w.bitcoin_signature(&c.signature);
            }),
            Msg::Reestablish(r) => {
                let mut t = TlvWriter::new(K_REESTABLISH, VERSION);
                t.record(0, |w| write_digits(w, &r.digits))
                    .record(2, |w| {
                        w.u64(r.numbers[0]).u64(r.numbers[1]);
                    })
                    .optional(4, r.pending.as_ref(), |w, p| {
                        let (stage, digits) = match p {
                            PendingReset::Proposed(d) => (1, d),
                            PendingReset::Accepted(d) => (2, d),
                        };
                        w.u8(stage);
                        write_digits(w, digits);
                    })
                    .record(6, |w| {
                        w.u64_list(&r.resolved);
                    })
                    .record(8, |w| {
                        w.amount(r.branch_values[0]).amount(r.branch_values[1]);
                    })
                    .record(10, |w| write_sigs(w, &r.your_branch_sigs))
                    .optional(12, r.your_payment.as_ref(), |w, p| {
                        w.u64(p.number).amount(p.to_payee);
                        write_htlcs(w, &p.htlcs);
                        w.bitcoin_signature(&p.signature);
                    })
                    .optional(13, r.accepted_terms.as_ref(), |w, a| {
                        w.u64(a.numbers[0]).u64(a.numbers[1]);
                        write_removals(w, &a.removed);
                        w.amount(a.values[0]).amount(a.values[1]);
                    });
                t.finish()
            }
        }
    }

    /// Decodes a message.
    ///
    /// # Errors
    /// [`DecodeError`] for truncation, trailing bytes, an unknown kind or version, an unknown even
    /// field, a missing field or an invalid value.
    pub fn decode(bytes: &[u8]) -> Result<Msg, DecodeError> {
        let (kind, tlv) = read_message(bytes, VERSION)?;
        Msg::decode_records(kind, tlv)
    }

    fn decode_records(kind: u8, tlv: TlvReader<'_>) -> Result<Msg, DecodeError> {
        let mut f = Fields::default();
        match kind {
            K_OPEN => {
                tlv.for_each(|ty, r| {
                    match ty {
                        0 => f.terms = Some(read_terms(r)?),
                        2 => f.keys = Some((r.pubkey("funding_key")?, r.pubkey("htlc_key")?)),
                        4 => f.script = Some(r.script()?),
                        1 => f.depth = Some(r.u16()?),
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                let (funding_key, htlc_key) = required(f.keys, "keys")?;
                let mut terms = required(f.terms, "terms")?;
                // An `Open` of the previous release has no record 1: the smallest depth its
                // terms allow (`R + 1`).
                if let Some(depth) = f.depth {
                    terms.funding_depth = depth;
                }
                Ok(Msg::Open(Open {
                    terms,
                    funding_key,
                    htlc_key,
                    payout_script: required(f.script, "payout_script")?,
                }))
            }
            K_ACCEPT => {
                tlv.for_each(|ty, r| {
                    match ty {
                        0 => f.keys = Some((r.pubkey("funding_key")?, r.pubkey("htlc_key")?)),
                        2 => f.script = Some(r.script()?),
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                let (funding_key, htlc_key) = required(f.keys, "keys")?;
                Ok(Msg::Accept(Accept { funding_key, htlc_key, payout_script: required(f.script, "payout_script")? }))
            }
            K_FUNDING_CREATED => {
                tlv.for_each(|ty, r| {
                    match ty {
                        0 => f.outpoint = Some(r.outpoint()?),
                        2 => f.sigs = Some(read_sigs(r, "node signature")?),
                        4 => f.sig = Some(r.bitcoin_signature("kickoff signature")?),
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                Ok(Msg::FundingCreated(FundingCreated {
                    funding_outpoint: required(f.outpoint, "funding_outpoint")?,
                    node_sigs: required(f.sigs, "node_sigs")?,
                    kickoff_sig: required(f.sig, "kickoff_sig")?,
                }))
            }
            K_FUNDING_SIGNED => {
                tlv.for_each(|ty, r| {
                    match ty {
                        0 => f.sigs = Some(read_sigs(r, "node signature")?),
                        2 => f.sig = Some(r.bitcoin_signature("kickoff signature")?),
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                Ok(Msg::FundingSigned(FundingSigned {
                    node_sigs: required(f.sigs, "node_sigs")?,
                    kickoff_sig: required(f.sig, "kickoff_sig")?,
                }))
            }
            K_PAYMENT => {
                tlv.for_each(|ty, r| {
                    match ty {
                        0 => f.number_amount = Some((r.u64()?, r.amount("to_payee")?)),
                        2 => f.htlcs = Some(read_htlcs(r)?),
                        4 => f.sig = Some(r.bitcoin_signature("payment signature")?),
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                let (number, to_payee) = required(f.number_amount, "number")?;
                Ok(Msg::Payment(Payment {
                    number,
                    to_payee,
                    htlcs: required(f.htlcs, "htlcs")?,
                    signature: required(f.sig, "signature")?,
                }))
            }
            K_ACK => Ok(Msg::Ack { number: read_single_record(tlv, "number", |r| r.u64())? }),
            K_FULFILL => {
                let (id, preimage) =
                    read_single_record(tlv, "fulfill", |r| Ok((r.u64()?, PaymentPreimage(r.array()?))))?;
                Ok(Msg::Fulfill { id, preimage })
            }
            K_FAIL => Ok(Msg::Fail { id: read_single_record(tlv, "id", |r| r.u64())? }),
            K_RESET_PROPOSE => {
                let (mut digits, mut numbers, mut removed, mut values) = (None, None, None, None);
                tlv.for_each(|ty, r| {
                    match ty {
                        0 => digits = Some(read_digits(r)?),
                        2 => numbers = Some([r.u64()?, r.u64()?]),
                        4 => removed = Some(read_removals(r)?),
                        6 => values = Some([r.amount("value")?, r.amount("value")?]),
                        8 => f.sig = Some(r.bitcoin_signature("base signature")?),
                        10 => f.sigs = Some(read_sigs(r, "node signature")?),
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                Ok(Msg::ResetPropose(ResetPropose {
                    digits: required(digits, "digits")?,
                    numbers: required(numbers, "numbers")?,
                    removed: required(removed, "removed")?,
                    values: required(values, "values")?,
                    base_sig: f.sig,
                    node_sigs: required(f.sigs, "node_sigs")?,
                }))
            }
            K_RESET_ACCEPT => {
                tlv.for_each(|ty, r| {
                    match ty {
                        0 => f.sigs = Some(read_sigs(r, "node signature")?),
                        2 => f.sig = Some(r.bitcoin_signature("base signature")?),
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                Ok(Msg::ResetAccept(ResetAccept { node_sigs: required(f.sigs, "node_sigs")?, base_sig: f.sig }))
            }
            K_RESET_FINISH => {
                let node_sig = read_single_record(tlv, "node_sig", |r| r.bitcoin_signature("node signature"))?;
                Ok(Msg::ResetFinish(ResetFinish { node_sig }))
            }
            K_CLOSE_PROPOSAL => {
                let (spend, signature) =
                    read_single_record(tlv, "close", |r| Ok((r.u8()?, r.bitcoin_signature("close signature")?)))?;
                Ok(Msg::CloseProposal(CloseProposal { spend, signature }))
            }
            K_CLOSE_SIGNED => {
                let signature = read_single_record(tlv, "signature", |r| r.bitcoin_signature("close signature"))?;
                Ok(Msg::CloseSigned(CloseSigned { signature }))
            }
            K_REESTABLISH => {
                let (mut digits, mut numbers, mut pending, mut resolved) = (None, None, None, None);
                let (mut values, mut payment, mut accepted_terms) = (None, None, None);
                tlv.for_each(|ty, r| {
                    match ty {
                        0 => digits = Some(read_digits(r)?),
                        2 => numbers = Some([r.u64()?, r.u64()?]),
                        4 => {
                            pending = Some(match r.u8()? {
                                1 => PendingReset::Proposed(read_digits(r)?),
                                2 => PendingReset::Accepted(read_digits(r)?),
                                _ => return Err(DecodeError::InvalidValue("pending reset")),
                            })
                        }
                        6 => resolved = Some(r.u64_list()?),
                        8 => values = Some([r.amount("value")?, r.amount("value")?]),
                        10 => f.sigs = Some(read_sigs(r, "branch signature")?),
                        12 => {
                            let (number, to_payee) = (r.u64()?, r.amount("to_payee")?);
                            let htlcs = read_htlcs(r)?;
                            let signature = r.bitcoin_signature("payment signature")?;
                            payment = Some(Payment { number, to_payee, htlcs, signature });
                        }
                        13 => {
                            let numbers = [r.u64()?, r.u64()?];
                            let removed = read_removals(r)?;
                            let values = [r.amount("value")?, r.amount("value")?];
                            accepted_terms = Some(AcceptedTerms { numbers, removed, values });
                        }
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                Ok(Msg::Reestablish(Reestablish {
                    digits: required(digits, "digits")?,
                    numbers: required(numbers, "numbers")?,
                    pending,
                    resolved: required(resolved, "resolved")?,
                    branch_values: required(values, "branch_values")?,
                    your_branch_sigs: required(f.sigs, "your_branch_sigs")?,
                    your_payment: payment,
                    accepted_terms,
                }))
            }
            other => Err(DecodeError::WrongKind { expected: K_OPEN, got: other }),
        }
    }
}

impl crate::core::wire::sealed::Sealed for Msg {}

impl LayerMsg for Msg {
    /// Version 2 with the channel id after the header.
    const ADDRESSED_VERSION: u8 = 3;

    fn encode(&self) -> Vec<u8> {
        Msg::encode(self)
    }

    fn decode_records(kind: u8, tlv: TlvReader<'_>) -> Result<Self, DecodeError> {
        Msg::decode_records(kind, tlv)
    }

    fn is_setup(&self) -> bool {
        matches!(self, Msg::Open(_) | Msg::Accept(_) | Msg::FundingCreated(_))
    }
}

impl Channel {
    /// The channel's temporary id, used by the setup messages ([`Open`], [`Accept`],
    /// [`FundingCreated`]): from the initiator's keys in its [`Open`]. [`Channel::channel_id`]
    /// once the funding outpoint is known.
    pub fn temporary_channel_id(&self) -> ChannelId {
        let initiator = match (self.role, &self.keys) {
            (Role::Acceptor, Some(keys)) => &keys[Role::Initiator.index()],
            _ => &self.holder_keys,
        };
        temporary_channel_id("duplex", &[&initiator.funding, &initiator.htlc])
    }

    /// Addresses a message this party sends (from [`Effects::send`](crate::driving::Effects::send))
    /// to its channel, for a peer that may share several channels: the temporary id for the
    /// setup messages, the funding outpoint's afterwards.
    pub fn address(&self, msg: Msg) -> Addressed<Msg> {
        Addressed::new(msg, self.temporary_channel_id(), self.channel_id())
    }

    /// [`Channel::handle_message`] for an addressed message: one addressed to another channel
    /// is refused before anything else.
    ///
    /// # Errors
    /// [`Misbehaviour::WrongChannel`] (the channel unchanged) if `msg` is addressed to neither
    /// this channel's temporary id nor its funded id; otherwise as [`Channel::handle_message`].
    pub fn handle_addressed<S: Signer + ?Sized>(
        &mut self,
        msg: Addressed<Msg>,
        signer: &S,
        tip: ChainTip,
    ) -> Result<Effects, PeerError> {
        if !msg.is_for(self.temporary_channel_id(), self.channel_id()) {
            return Err(peer_error(Misbehaviour::WrongChannel));
        }
        self.handle_message(msg.msg, signer, tip)
    }
}

#[derive(Default)]
struct Fields {
    terms: Option<Terms>,
    keys: Option<(PublicKey, PublicKey)>,
    script: Option<ScriptBuf>,
    outpoint: Option<OutPoint>,
    sigs: Option<Vec<ecdsa::Signature>>,
    sig: Option<ecdsa::Signature>,
    number_amount: Option<(u64, Amount)>,
    htlcs: Option<Vec<PaymentHtlc>>,
    depth: Option<u16>,
}
