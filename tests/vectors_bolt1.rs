//! Every BOLT #1 test vector (Appendices A–D) and the BOLT #9 feature table, from the JSON copies
//! in `tests/vectors/bolt1/` and `tests/vectors/bolt9/`: BigSize, TLV streams through the
//! crate's TLV reader with the spec's two test namespaces, `init` extensions through
//! `network::peer::Init`, signed integers, and the feature bits and dependencies.

use bitcoin::secp256k1::PublicKey;
use paychan::core::encode::{DecodeError, Reader, TlvReader, Writer};
use paychan::network::features::{Feature, Features};
use paychan::network::peer::{Init, INIT};
use serde_json::{json, Map, Value};

fn load(name: &str) -> Value {
    let text = match name {
        "bigsize" => include_str!("vectors/bolt1/bigsize.json"),
        "tlv" => include_str!("vectors/bolt1/tlv.json"),
        "init" => include_str!("vectors/bolt1/init_extension.json"),
        "signed" => include_str!("vectors/bolt1/signed_integers.json"),
        "features" => include_str!("vectors/bolt9/features.json"),
        _ => unreachable!(),
    };
    serde_json::from_str(text).unwrap()
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

#[test]
fn bigsize_vectors() {
    let v = load("bigsize");
    for case in v["decoding"].as_array().unwrap() {
        let b = bytes(&case["bytes"]);
        let mut r = Reader::new(&b);
        let got = r.bigsize();
        match case.get("exp_error") {
            Some(e) => {
                let e = e.as_str().unwrap();
                let expected = match e {
                    "decoded bigsize is not canonical" => DecodeError::InvalidValue("bigsize"),
                    _ => DecodeError::Truncated,
                };
                assert_eq!(got, Err(expected), "{}", case["name"]);
            }
            None => {
                assert_eq!(got, Ok(case["value"].as_u64().unwrap()), "{}", case["name"]);
                assert_eq!(r.remaining(), 0);
            }
        }
    }
    for case in v["encoding"].as_array().unwrap() {
        let mut w = Writer::new();
        w.bigsize(case["value"].as_u64().unwrap());
        assert_eq!(w.into_bytes(), bytes(&case["bytes"]), "{}", case["name"]);
    }
}

/// The spec's test namespaces `n1` and `n2`, read with the crate's TLV reader and field readers:
/// the decoded records as JSON, or the error.
fn decode_stream(ns: &str, stream: &[u8]) -> Result<Map<String, Value>, DecodeError> {
    let mut out = Map::new();
    TlvReader::new(stream).for_each(|ty, r| {
        let (name, value) = match (ns, ty) {
            ("n1", 1) => ("tlv1", json!({ "amount_msat": r.truncated_int(8)? })),
            ("n1", 2) => {
                let scid = r.u64()?;
                ("tlv2", json!({ "scid": format!("{}x{}x{}", scid >> 40, (scid >> 16) & 0xff_ffff, scid & 0xffff) }))
            }
            ("n1", 3) => {
                let node_id: PublicKey = r.pubkey("node_id")?;
                let (a, b) = (r.u64()?, r.u64()?);
                ("tlv3", json!({ "node_id": hex::encode(node_id.serialize()), "amount_msat_1": a, "amount_msat_2": b }))
            }
            ("n1", 254) => ("tlv4", json!({ "cltv_delta": r.u16()? })),
            ("n2", 0) => ("tlv1", json!({ "amount_msat": r.truncated_int(8)? })),
            ("n2", 11) => ("tlv2", json!({ "cltv_expiry": r.truncated_int(4)? })),
            _ => return Ok(false),
        };
        out.insert(name.into(), value);
        Ok(true)
    })?;
    Ok(out)
}

#[test]
fn tlv_vectors() {
    let v = load("tlv");
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 57);
    let mut valid_streams = Vec::new();
    for case in cases {
        let stream = bytes(&case["stream"]);
        for ns in case["namespaces"].as_array().unwrap() {
            let ns = ns.as_str().unwrap();
            let got = decode_stream(ns, &stream);
            match case["kind"].as_str().unwrap() {
                "decoding_failure" | "stream_decoding_failure" => {
                    assert!(got.is_err(), "{ns} {}: must fail ({})", case["stream_as_written"], case["reason"]);
                }
                "decoding_success_ignored" => {
                    assert_eq!(got, Ok(Map::new()), "{ns} {}", case["stream_as_written"]);
                    valid_streams.push((ns.to_string(), stream.clone()));
                }
                "decoding_success" => {
                    let expected = case["expected_values"].as_object().unwrap().clone();
                    assert_eq!(got, Ok(expected), "{ns} {}", case["stream_as_written"]);
                    valid_streams.push((ns.to_string(), stream.clone()));
                }
                other => panic!("unknown kind {other}"),
            }
        }
    }
    // The spec's rule on concatenation: a valid stream followed by an invalid one fails.
    for case in cases.iter().filter(|c| c["kind"] == "decoding_failure") {
        let bad = bytes(&case["stream"]);
        for (ns, good) in &valid_streams {
            if !case["namespaces"].as_array().unwrap().iter().any(|n| n == ns.as_str()) {
                continue;
            }
            let mut joined = good.clone();
            joined.extend(&bad);
            assert!(decode_stream(ns, &joined).is_err(), "{ns}: valid ++ {}", case["stream_as_written"]);
        }
    }
}

#[test]
fn init_extension_vectors() {
    let v = load("init");
    for case in v["cases"].as_array().unwrap() {
        let m = bytes(&case["message"]);
        let mut r = Reader::new(&m);
        assert_eq!(r.u16().unwrap(), INIT);
        let got = Init::decode_body(&mut r);
        assert_eq!(got.is_ok(), case["valid"].as_bool().unwrap(), "{}", case["explanation"]);
    }
    // And our own encoding reads back.
    let ours = Init { features: Features::ours(), networks: Some(vec![[0x6f; 32]]), remote_addr: None };
    let bytes = ours.encode();
    let mut r = Reader::new(&bytes);
    assert_eq!(r.u16().unwrap(), INIT);
    assert_eq!(Init::decode_body(&mut r).unwrap(), ours);
}

#[test]
fn signed_integer_vectors() {
    // BOLT #1 signed integers are big-endian two's complement of 1, 2, 4 or 8 bytes.
    let v = load("signed");
    for case in v["cases"].as_array().unwrap() {
        let b = bytes(&case["bytes"]);
        let value = case["value"].as_i64().unwrap();
        let encoded = match b.len() {
            1 => (value as i8).to_be_bytes().to_vec(),
            2 => (value as i16).to_be_bytes().to_vec(),
            4 => (value as i32).to_be_bytes().to_vec(),
            8 => value.to_be_bytes().to_vec(),
            n => panic!("width {n}"),
        };
        assert_eq!(encoded, b, "{value}");
        let mut r = Reader::new(&b);
        let decoded = match b.len() {
            1 => i64::from(r.u8().unwrap() as i8),
            2 => i64::from(r.u16().unwrap() as i16),
            4 => i64::from(r.u32().unwrap() as i32),
            _ => r.u64().unwrap() as i64,
        };
        assert_eq!(decoded, value);
    }
}

#[test]
fn bolt9_feature_table() {
    let v = load("features");
    let rows = v["features"].as_array().unwrap();
    assert_eq!(rows.len(), Feature::ALL.len());
    for (row, f) in rows.iter().zip(Feature::ALL) {
        assert_eq!(row["even_bit"].as_u64().unwrap() as usize, f.even_bit(), "{}", row["name"]);
        assert_eq!(Feature::from_bit(f.even_bit() + 1), Some(f));
        let deps: Vec<usize> = f.dependencies().iter().map(|d| d.even_bit()).collect();
        let expected: Vec<usize> = row["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| rows.iter().find(|r| r["name"] == *n).unwrap()["even_bit"].as_u64().unwrap() as usize)
            .collect();
        assert_eq!(deps, expected, "{}", row["name"]);
        // Offering a feature without its dependency is caught.
        if let Some(dep) = f.dependencies().first() {
            let mut bad = Features::empty();
            bad.set_optional(f);
            assert_eq!(bad.missing_dependency(), Some((f, *dep)));
            bad.set_optional(*dep);
            assert_eq!(bad.missing_dependency(), None);
        }
    }
    // Wire order: bit 0 is the last byte's lowest bit.
    let mut f = Features::empty();
    f.set_bit(0);
    f.set_bit(9);
    assert_eq!(f.to_wire(), vec![0x02, 0x01]);
    assert_eq!(Features::from_wire(&[0, 0x02, 0x01]), f);
}
