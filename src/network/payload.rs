//! BOLT #4 hop payloads (the TLV stream each hop finds in its onion layer) and the checks a
//! forwarding node and a final node make against the HTLC that carried them.
//!
//! ```
//! use paychan::network::payload::HopPayload;
//!
//! let hop = HopPayload::Forward { amt_to_forward: 1_000_000, outgoing_cltv_value: 800_040, short_channel_id: 42 };
//! let bytes = hop.encode(); // with its BigSize length prefix, ready for `onion::build_onion`
//! assert_eq!(HopPayload::decode(&bytes[1..], false).unwrap(), hop);
//! ```

use alloc::vec::Vec;
use core::fmt;

use super::onion::failure;
use crate::core::encode::{DecodeError, Reader, TlvReader, Writer};
use crate::core::hashlock::PaymentPreimage;

/// The TLV type of `keysend_preimage` (bLIP-3), carried in a spontaneous payment's final
/// payload. Even: a node that does not expect a keysend must refuse it.
pub const KEYSEND_TLV_TYPE: u64 = 5_482_373_484;

/// One hop's instructions.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum HopPayload {
    /// Forward over the channel `short_channel_id`.
    Forward {
        /// msat to send on (the hop keeps the difference as its fee).
        amt_to_forward: u64,
        /// `cltv_expiry` of the outgoing HTLC.
        outgoing_cltv_value: u32,
        /// The outgoing channel.
        short_channel_id: u64,
    },
    /// The recipient.
    Final {
        /// msat it must receive (at least).
        amt_to_forward: u64,
        /// The expiry it must see (at most the HTLC's).
        outgoing_cltv_value: u32,
        /// `payment_data`: the invoice's payment secret and the payment's total msat.
        payment_data: Option<([u8; 32], u64)>,
        /// `payment_metadata`, opaque.
        payment_metadata: Option<Vec<u8>>,
        /// `keysend_preimage` ([`KEYSEND_TLV_TYPE`]): the preimage of a spontaneous payment,
        /// chosen by the payer (no invoice). Only the final payload may carry it.
        keysend_preimage: Option<PaymentPreimage>,
    },
}

/// Why a payload or an HTLC was refused: the BOLT #4 failure code and its data.
#[derive(Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The failure code ([`failure`]).
    pub code: u16,
    /// The code's data (e.g. `htlc_msat` and `height` for `incorrect_or_unknown_payment_details`).
    pub data: Vec<u8>,
}

impl fmt::Debug for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Refusal({:#06x})", self.code)
    }
}

impl Refusal {
    fn code(code: u16) -> Self {
        Refusal { code, data: Vec::new() }
    }

    /// A refusal of the `UPDATE` kind: its `fields` (e.g. `htlc_msat` for `fee_insufficient`),
    /// then the `channel_update` with its `u16` length, here empty (this crate does not gossip;
    /// BOLT #4 lets a node leave it out, and a reader that counts the fields still finds the
    /// length where it expects it).
    pub fn with_update(code: u16, fields: &[u8]) -> Self {
        let mut w = Writer::new();
        w.bytes(fields).u16(0);
        Refusal { code, data: w.into_bytes() }
    }

    /// The failure message to wrap with [`super::onion::wrap_failure`]: code ‖ data.
    pub fn message(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u16(self.code).bytes(&self.data);
        w.into_bytes()
    }
}

impl HopPayload {
    /// The payload with its BigSize length prefix.
    pub fn encode(&self) -> Vec<u8> {
        let mut tlv = Writer::new();
        match self {
            HopPayload::Forward { amt_to_forward, outgoing_cltv_value, short_channel_id } => {
                let mut v = Writer::new();
                v.tu64(*amt_to_forward);
                tlv.bigsize(2).var_bytes(v.as_bytes());
                let mut v = Writer::new();
                v.tu64(u64::from(*outgoing_cltv_value));
                tlv.bigsize(4).var_bytes(v.as_bytes());
                tlv.bigsize(6).bigsize(8).u64(*short_channel_id);
            }
            HopPayload::Final {
                amt_to_forward,
                outgoing_cltv_value,
                payment_data,
                payment_metadata,
                keysend_preimage,
            } => {
                let mut v = Writer::new();
                v.tu64(*amt_to_forward);
                tlv.bigsize(2).var_bytes(v.as_bytes());
                let mut v = Writer::new();
                v.tu64(u64::from(*outgoing_cltv_value));
                tlv.bigsize(4).var_bytes(v.as_bytes());
                if let Some((secret, total)) = payment_data {
                    let mut v = Writer::new();
                    v.bytes(secret).tu64(*total);
                    tlv.bigsize(8).var_bytes(v.as_bytes());
                }
                if let Some(m) = payment_metadata {
                    tlv.bigsize(16).var_bytes(m);
                }
                if let Some(p) = keysend_preimage {
                    tlv.bigsize(KEYSEND_TLV_TYPE).var_bytes(&p.0);
                }
            }
        }
        let body = tlv.into_bytes();
        let mut out = Writer::new();
        out.var_bytes(&body);
        out.into_bytes()
    }

    /// Reads a payload (without its length prefix) found by a hop; `is_final` when the onion
    /// said this hop is the last.
    ///
    /// # Errors
    /// [`Refusal`] `invalid_onion_payload` for a stream that does not decode, an unknown even
    /// type, or a missing or forbidden field (`short_channel_id` in a final payload,
    /// `keysend_preimage` in a forwarding one).
    pub fn decode(payload: &[u8], is_final: bool) -> Result<Self, Refusal> {
        let mut amt = None;
        let mut cltv = None;
        let mut scid = None;
        let mut data = None;
        let mut metadata = None;
        let mut keysend = None;
        let result = TlvReader::new(payload).for_each(|ty, r| {
            match ty {
                2 => amt = Some(r.truncated_int(8)?),
                4 => cltv = Some(r.truncated_int(4)?),
                6 => scid = Some(r.u64()?),
                8 => {
                    let secret: [u8; 32] = r.array()?;
                    data = Some((secret, r.truncated_int(8)?));
                }
                16 => metadata = Some(r.take(r.remaining())?.to_vec()),
                KEYSEND_TLV_TYPE => keysend = Some(PaymentPreimage(r.array()?)),
                _ => return Ok(false),
            }
            Ok(true)
        });
        let invalid = || {
            // BOLT #4: `invalid_onion_payload` carries the offending type and offset; 0/0 here.
            let mut w = Writer::new();
            w.bigsize(0).u16(0);
            Refusal { code: failure::INVALID_ONION_PAYLOAD, data: w.into_bytes() }
        };
        result.map_err(|_: DecodeError| invalid())?;
        let (amt, cltv) = (amt.ok_or_else(invalid)?, cltv.ok_or_else(invalid)?);
        let outgoing_cltv_value = u32::try_from(cltv).map_err(|_| invalid())?;
        if is_final {
            if scid.is_some() {
                return Err(invalid());
            }
            Ok(HopPayload::Final {
                amt_to_forward: amt,
                outgoing_cltv_value,
                payment_data: data,
                payment_metadata: metadata,
                keysend_preimage: keysend,
            })
        } else {
            if keysend.is_some() {
                return Err(invalid());
            }
            Ok(HopPayload::Forward {
                amt_to_forward: amt,
                outgoing_cltv_value,
                short_channel_id: scid.ok_or_else(invalid)?,
            })
        }
    }

    /// A forwarding node's checks of the incoming HTLC (`amount_msat`, `cltv_expiry`) against
    /// this payload and its own policy: the fee it asks (`base_fee_msat` + `fee_ppm` of the
    /// forwarded amount) and its `cltv_expiry_delta`.
    ///
    /// # Errors
    /// [`Refusal`] `fee_insufficient` (with `htlc_msat`) or `incorrect_cltv_expiry` (with
    /// `cltv_expiry`), each with an empty channel update ([`Refusal::with_update`]), or
    /// `invalid_onion_payload` on a final payload.
    pub fn check_forward(
        &self,
        amount_msat: u64,
        cltv_expiry: u32,
        base_fee_msat: u64,
        fee_ppm: u64,
        cltv_expiry_delta: u32,
    ) -> Result<(), Refusal> {
        let HopPayload::Forward { amt_to_forward, outgoing_cltv_value, .. } = self else {
            return Err(Refusal::code(failure::INVALID_ONION_PAYLOAD));
        };
        let fee = base_fee_msat.saturating_add(amt_to_forward.saturating_mul(fee_ppm) / 1_000_000);
        if amount_msat < amt_to_forward.saturating_add(fee) {
            return Err(Refusal::with_update(failure::FEE_INSUFFICIENT, &amount_msat.to_be_bytes()));
        }
        if cltv_expiry < outgoing_cltv_value.saturating_add(cltv_expiry_delta) {
            return Err(Refusal::with_update(failure::INCORRECT_CLTV_EXPIRY, &cltv_expiry.to_be_bytes()));
        }
        Ok(())
    }

    /// The final node's checks of a single-part HTLC against this payload and the invoice it
    /// issued (`expected_secret`), at chain height `height`.
    ///
    /// # Errors
    /// [`Refusal`]: `final_incorrect_htlc_amount` if the HTLC carries less than the payload says,
    /// `final_incorrect_cltv_expiry` if it expires before the payload's expiry, and
    /// `incorrect_or_unknown_payment_details` (with `htlc_msat` and `height`) for a missing or
    /// wrong payment secret, or a total other than this part (a part of a multi-part payment
    /// goes through [`HopPayload::check_final_part`] instead) — the same answer as for an
    /// unknown payment hash, so a prober learns nothing.
    pub fn check_final(
        &self,
        amount_msat: u64,
        cltv_expiry: u32,
        expected_secret: &[u8; 32],
        height: u32,
    ) -> Result<(), Refusal> {
        // Multi-part totals first, as the wrong secret: one answer, before the amount checks.
        if let HopPayload::Final { amt_to_forward, payment_data: Some((_, total)), .. } = self {
            if total != amt_to_forward {
                return Err(unknown_payment(amount_msat, height));
            }
        }
        self.check_final_part(amount_msat, cltv_expiry, Some(expected_secret), height).map(|_| ())
    }

    /// The final node's checks of one HTLC, perhaps one part of a multi-part payment, against
    /// this payload: the payment secret is `expected_secret` (the invoice's), or anything or
    /// nothing for a keysend (`None`: the payer chose the preimage; its check against the
    /// payment hash is the caller's). Returns the payment's `total_msat` (this part's
    /// `amt_to_forward` when the payload carries no `payment_data`).
    ///
    /// # Errors
    /// As [`HopPayload::check_final`], with `incorrect_or_unknown_payment_details` for a total
    /// below this part's `amt_to_forward`.
    pub fn check_final_part(
        &self,
        amount_msat: u64,
        cltv_expiry: u32,
        expected_secret: Option<&[u8; 32]>,
        height: u32,
    ) -> Result<u64, Refusal> {
        let HopPayload::Final { amt_to_forward, outgoing_cltv_value, payment_data, .. } = self else {
            return Err(Refusal::code(failure::INVALID_ONION_PAYLOAD));
        };
        let total = match (payment_data, expected_secret) {
            (Some((secret, total)), Some(expected)) if secret == expected => *total,
            (Some((_, total)), None) => *total,
            (None, None) => *amt_to_forward,
            _ => return Err(unknown_payment(amount_msat, height)),
        };
        if total < *amt_to_forward {
            return Err(unknown_payment(amount_msat, height));
        }
        if amount_msat < *amt_to_forward {
            let mut w = Writer::new();
            w.u64(amount_msat);
            return Err(Refusal { code: failure::FINAL_INCORRECT_HTLC_AMOUNT, data: w.into_bytes() });
        }
        if cltv_expiry < *outgoing_cltv_value {
            let mut w = Writer::new();
            w.u32(cltv_expiry);
            return Err(Refusal { code: failure::FINAL_INCORRECT_CLTV_EXPIRY, data: w.into_bytes() });
        }
        Ok(total)
    }
}

/// `incorrect_or_unknown_payment_details` with `htlc_msat` and `height`: BOLT #4's answer to an
/// unknown hash, a wrong secret or preimage, or an amount or expiry the payee does not accept.
pub(crate) fn unknown_payment(amount_msat: u64, height: u32) -> Refusal {
    let mut w = Writer::new();
    w.u64(amount_msat).u32(height);
    Refusal { code: failure::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS, data: w.into_bytes() }
}

/// Reads the `update_fail_htlc` failure message's code and data.
pub fn split_message(message: &[u8]) -> Option<(u16, &[u8])> {
    let mut r = Reader::new(message);
    let code = r.u16().ok()?;
    Some((code, r.take_rest()))
}
