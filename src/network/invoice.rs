//! BOLT #11 invoices through LDK's `lightning-invoice` (parser, builder and signature checks),
//! with the checks a payer must add: the network and the expiry. An invoice is signed with the node key through the [`NodeSigner`] seam.
//!
//! ```
//! use core::time::Duration;
//! use paychan::bitcoin::secp256k1::SecretKey;
//! use paychan::network::invoice::{create_invoice, parse_invoice, Currency, InvoiceRequest};
//! use paychan::network::noise::{InMemoryNodeSigner, NodeSigner};
//!
//! let node = InMemoryNodeSigner::new(SecretKey::from_slice(&[7; 32]).unwrap());
//! let now = Duration::from_secs(1_800_000_000);
//! let request = InvoiceRequest {
//!     currency: Currency::Regtest,
//!     amount_msat: Some(250_000),
//!     payment_hash: [1; 32],
//!     payment_secret: [2; 32],
//!     description: "coffee".into(),
//!     created_at: now,
//!     expiry: Duration::from_secs(3_600),
//!     min_final_cltv_expiry_delta: 18,
//!     route_hints: vec![],
//! };
//! let text = create_invoice(&request, &node).unwrap().to_string();
//! let target = parse_invoice(&text, Currency::Regtest, now).unwrap();
//! assert_eq!(target.payee, node.node_id());
//! assert_eq!(target.amount_msat, Some(250_000));
//! assert_eq!(target.payment_secret, [2; 32]);
//! ```

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;
use core::time::Duration;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::PublicKey;
pub use lightning_invoice::{Bolt11Invoice, Currency, RouteHint, RouteHintHop, RoutingFees};
use lightning_invoice::{InvoiceBuilder, PaymentSecret};

use super::noise::NodeSigner;

/// What the payee puts in an invoice.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct InvoiceRequest {
    /// The chain.
    pub currency: Currency,
    /// The amount, or `None` for "any amount".
    pub amount_msat: Option<u64>,
    /// The payment hash.
    pub payment_hash: [u8; 32],
    /// The payment secret the final hop's onion must carry (random, from the embedder).
    pub payment_secret: [u8; 32],
    /// A short description.
    pub description: String,
    /// Creation time (seconds since the Unix epoch; the crate reads no clock).
    pub created_at: Duration,
    /// How long it stays payable.
    pub expiry: Duration,
    /// The `min_final_cltv_expiry_delta` the payee needs (its `E_in` + margin).
    pub min_final_cltv_expiry_delta: u64,
    /// Private routes to the payee (a wallet behind an LSP gives its channel here).
    pub route_hints: Vec<RouteHint>,
}

/// Why an invoice could not be made or must not be paid.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum InvoiceError {
    /// The builder refused the request (e.g. a description too long).
    Create,
    /// The node signer could not sign.
    Signer,
    /// The text is not a valid BOLT #11 invoice (bech32, fields, signature).
    Parse,
    /// It is for another chain.
    WrongCurrency,
    /// It has expired.
    Expired,
}

impl fmt::Display for InvoiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvoiceError::Create => "invoice could not be built",
            InvoiceError::Signer => "node signer could not sign the invoice",
            InvoiceError::Parse => "not a valid BOLT 11 invoice",
            InvoiceError::WrongCurrency => "invoice is for another chain",
            InvoiceError::Expired => "invoice expired",
        })
    }
}

impl core::error::Error for InvoiceError {}

/// Builds and signs an invoice with the node key.
///
/// # Errors
/// [`InvoiceError::Create`] if the builder refuses the fields, [`InvoiceError::Signer`] if the
/// signer cannot sign.
pub fn create_invoice<N: NodeSigner + ?Sized>(
    request: &InvoiceRequest,
    node: &N,
) -> Result<Bolt11Invoice, InvoiceError> {
    let mut b = InvoiceBuilder::new(request.currency.clone())
        .description(request.description.clone())
        .payment_hash(sha256::Hash::from_byte_array(request.payment_hash))
        .payment_secret(PaymentSecret(request.payment_secret))
        .duration_since_epoch(request.created_at)
        .expiry_time(request.expiry)
        .min_final_cltv_expiry_delta(request.min_final_cltv_expiry_delta)
        .basic_mpp();
    for hint in &request.route_hints {
        b = b.private_route(hint.clone());
    }
    let b = match request.amount_msat {
        Some(a) => b.amount_milli_satoshis(a),
        None => b,
    };
    b.try_build_signed(|msg| node.sign_invoice(msg)).map_err(|e| match e {
        lightning_invoice::SignOrCreationError::SignError(_) => InvoiceError::Signer,
        lightning_invoice::SignOrCreationError::CreationError(_) => InvoiceError::Create,
    })
}

/// What a payer needs from an invoice to build the onion and the final hop's payload.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PayTarget {
    /// The payee's node id (recovered from the signature, or the `n` field).
    pub payee: PublicKey,
    /// The payment hash.
    pub payment_hash: [u8; 32],
    /// The payment secret for the final hop's `payment_data`.
    pub payment_secret: [u8; 32],
    /// The amount, if the invoice states one.
    pub amount_msat: Option<u64>,
    /// The final hop's minimum CLTV delta.
    pub min_final_cltv_expiry_delta: u64,
    /// Private routes to the payee.
    pub route_hints: Vec<RouteHint>,
    /// When it stops being payable (seconds since the Unix epoch).
    pub expires_at: Duration,
}

/// Parses and checks an invoice for paying on `currency` at time `now`.
///
/// # Errors
/// [`InvoiceError`]: unparseable or badly signed text (LDK's checks, which include unknown
/// required features, a required payment secret and a low-S signature), another chain, expiry
/// (payable strictly before `timestamp + expiry`).
pub fn parse_invoice(text: &str, currency: Currency, now: Duration) -> Result<PayTarget, InvoiceError> {
    // LDK's parser refuses unknown required feature bits, a missing payment secret, and a
    // signature that does not recover or is high-S with an `n` field.
    let inv = Bolt11Invoice::from_str(text).map_err(|_| InvoiceError::Parse)?;
    if inv.currency() != currency {
        return Err(InvoiceError::WrongCurrency);
    }
    let expires_at = inv.duration_since_epoch().saturating_add(inv.expiry_time());
    if now >= expires_at {
        return Err(InvoiceError::Expired);
    }
    Ok(PayTarget {
        payee: inv.get_payee_pub_key(),
        payment_hash: inv.payment_hash().to_byte_array(),
        payment_secret: inv.payment_secret().0,
        amount_msat: inv.amount_milli_satoshis(),
        min_final_cltv_expiry_delta: inv.min_final_cltv_expiry_delta(),
        route_hints: inv.route_hints(),
        expires_at,
    })
}
