//! Every BOLT #11 example (16 valid, 10 invalid), from `tests/vectors/bolt11/invoices.json`,
//! through `network::invoice::parse_invoice`; and an invoice made by the crate reads back.

use core::time::Duration;

use bitcoin::secp256k1::{PublicKey, SecretKey};
use paychan::network::invoice::{create_invoice, parse_invoice, Currency, InvoiceError, InvoiceRequest, RouteHint};
use paychan::network::noise::{InMemoryNodeSigner, NodeSigner};
use serde_json::Value;

fn load() -> Value {
    serde_json::from_str(include_str!("vectors/bolt11/invoices.json")).unwrap()
}

fn hex32(v: &Value) -> [u8; 32] {
    hex::decode(v.as_str().unwrap()).unwrap().try_into().unwrap()
}

#[test]
fn valid_invoices_parse_to_the_spec_fields() {
    let v = load();
    let valid = v["valid"].as_array().unwrap();
    assert_eq!(valid.len(), 16);
    for case in valid {
        let d = &case["derived_decoded"];
        let currency = match d["currency"].as_str().unwrap() {
            "bc" => Currency::Bitcoin,
            "tb" => Currency::BitcoinTestnet,
            other => panic!("{other}"),
        };
        let at = Duration::from_secs(d["timestamp"].as_u64().unwrap());
        let t = parse_invoice(case["invoice"].as_str().unwrap(), currency.clone(), at)
            .unwrap_or_else(|e| panic!("{}: {e}", case["title"]));
        assert_eq!(t.payment_hash, hex32(&d["payment_hash"]), "{}", case["title"]);
        assert_eq!(t.payment_secret, hex32(&d["payment_secret"]));
        assert_eq!(t.amount_msat, d["amount_msat"].as_u64());
        assert_eq!(t.min_final_cltv_expiry_delta, d["min_final_cltv_expiry_delta"].as_u64().unwrap_or(18));
        assert_eq!(t.expires_at, at + Duration::from_secs(d["expiry_seconds"].as_u64().unwrap_or(3_600)));
        assert_eq!(t.payee.serialize().to_vec(), hex::decode(d["recovered_node_id"].as_str().unwrap()).unwrap());
        let hints = d.get("route_hints").and_then(Value::as_array).map_or(0, Vec::len);
        assert_eq!(t.route_hints.len(), hints);
        // Another chain, or a moment after expiry, is refused.
        let other = if currency == Currency::Bitcoin { Currency::Regtest } else { Currency::Bitcoin };
        assert_eq!(parse_invoice(case["invoice"].as_str().unwrap(), other, at), Err(InvoiceError::WrongCurrency));
        assert_eq!(
            parse_invoice(case["invoice"].as_str().unwrap(), currency, t.expires_at),
            Err(InvoiceError::Expired)
        );
    }
}

#[test]
fn invalid_invoices_are_refused() {
    let v = load();
    let invalid = v["invalid"].as_array().unwrap();
    assert_eq!(invalid.len(), 10);
    for case in invalid {
        let got =
            parse_invoice(case["invoice"].as_str().unwrap(), Currency::Bitcoin, Duration::from_secs(1_496_314_658));
        // LDK's parser refuses each, the unknown even feature bit 100 included.
        assert_eq!(got.unwrap_err(), InvoiceError::Parse, "{}: {}", case["title"], case["derived_rejection"]);
    }
}

#[test]
fn an_invoice_with_a_private_route_reads_back() {
    let node = InMemoryNodeSigner::new(SecretKey::from_slice(&[3; 32]).unwrap());
    let lsp = PublicKey::from_slice(
        &hex::decode("02eec7245d6b7d2ccb30380bfbe2a3648cd7a942653f5aa340edcea1f283686619").unwrap(),
    )
    .unwrap();
    let hint = RouteHint(vec![paychan::network::invoice::RouteHintHop {
        src_node_id: lsp,
        short_channel_id: 700_000 << 40,
        fees: paychan::network::invoice::RoutingFees { base_msat: 1_000, proportional_millionths: 100 },
        cltv_expiry_delta: 40,
        htlc_minimum_msat: None,
        htlc_maximum_msat: None,
    }]);
    let now = Duration::from_secs(1_800_000_000);
    let req = InvoiceRequest {
        currency: Currency::Regtest,
        amount_msat: None,
        payment_hash: [9; 32],
        payment_secret: [8; 32],
        description: "tip".into(),
        created_at: now,
        expiry: Duration::from_secs(600),
        min_final_cltv_expiry_delta: 144,
        route_hints: vec![hint.clone()],
    };
    let text = create_invoice(&req, &node).unwrap().to_string();
    let t = parse_invoice(&text, Currency::Regtest, now).unwrap();
    assert_eq!(t.payee, node.node_id());
    assert_eq!(t.route_hints, vec![hint]);
    assert_eq!(t.min_final_cltv_expiry_delta, 144);
    assert_eq!(t.amount_msat, None);
    // A tampered invoice does not verify (one data character changed, checksum fixed by no one).
    let mut bad = text.clone().into_bytes();
    let i = bad.len() - 20;
    bad[i] = if bad[i] == b'q' { b'p' } else { b'q' };
    assert!(parse_invoice(core::str::from_utf8(&bad).unwrap(), Currency::Regtest, now).is_err());
}
