//! Every BOLT #3 test vector, byte for byte (Appendices B, C, D, E and F), loaded from the JSON
//! copies in `tests/vectors/bolt3/`. Every commitment and HTLC transaction is also run through
//! Bitcoin Core's script interpreter.

use bitcoin::consensus::encode::{deserialize, serialize_hex};
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, TxOut, Txid};
use paychan::core::commitment::signatures::{sign_counterparty_commitment, verify_holder_commitment};
use paychan::core::commitment::{
    build_commitment, build_commitment_capping_fee, ChannelType, CommitmentError, CommitmentHtlc, CommitmentKeys,
    CommitmentNumber, CommitmentParams, CommitmentState, FeeratePerKw, HtlcDirection, ObscuringFactor,
};
use paychan::core::keys::*;
use paychan::core::shachain::{generate_from_seed, SecretStore, ShachainError};
use paychan::core::sign::{InMemorySigner, Signer};
use paychan::core::{script, MilliSats, PaymentHash, PaymentPreimage};
use serde_json::Value;
use std::str::FromStr;

fn load(name: &str) -> Value {
    let text = match name {
        "key_derivation" => include_str!("vectors/bolt3/key_derivation.json"),
        "generation" => include_str!("vectors/bolt3/per_commitment_secret_generation.json"),
        "storage" => include_str!("vectors/bolt3/storage_tests.json"),
        "commitment" => include_str!("vectors/bolt3/commitment_and_htlc_txs.json"),
        "funding" => include_str!("vectors/bolt3/funding_tx.json"),
        _ => unreachable!(),
    };
    serde_json::from_str(text).unwrap()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("missing string {k}"))
}
fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("missing number {k}"))
}
fn bytes(h: &str) -> Vec<u8> {
    hex::decode(h).unwrap()
}
fn b32(h: &str) -> [u8; 32] {
    bytes(h).try_into().unwrap()
}
fn pk(h: &str) -> PublicKey {
    PublicKey::from_slice(&bytes(h)).unwrap()
}
/// Secret keys in Appendix C's hidden block carry the WIF `01` suffix.
fn sk(h: &str) -> SecretKey {
    SecretKey::from_slice(&bytes(h)[..32]).unwrap()
}

#[test]
fn appendix_e_key_derivation() {
    let secp = Secp256k1::new();
    let v = load("key_derivation");
    let i = &v["inputs"];
    let base_secret = SecretKey::from_slice(&bytes(s(i, "base_secret"))).unwrap();
    let pcs = PerCommitmentSecret::from_bytes(b32(s(i, "per_commitment_secret")));
    let base_point = pk(s(i, "base_point"));
    let pcp = PerCommitmentPoint::from_public_key(pk(s(i, "per_commitment_point")));
    assert_eq!(PublicKey::from_secret_key(&secp, &base_secret), base_point);
    assert_eq!(pcs.point(&secp).unwrap(), pcp);

    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for c in cases {
        let expected = s(c, "expected");
        let got = match s(c, "output_name") {
            "localpubkey" => hex::encode(derive_pubkey(&secp, &base_point, &pcp).unwrap().serialize()),
            "localprivkey" => hex::encode(derive_privkey(&secp, &base_secret, &pcp).unwrap().secret_bytes()),
            "revocationpubkey" => hex::encode(
                RevocationPubkey::derive(&secp, &RevocationBasepoint::from_public_key(base_point), &pcp)
                    .unwrap()
                    .serialize(),
            ),
            "revocationprivkey" => hex::encode(
                derive_revocation_privkey(&secp, &RevocationBaseSecret::from_secret_key(base_secret), &pcs)
                    .unwrap()
                    .secret_bytes(),
            ),
            other => panic!("unknown output {other}"),
        };
        assert_eq!(got, expected, "{}", s(c, "name"));
    }
}

#[test]
fn appendix_d_secret_generation() {
    let v = load("generation");
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for c in cases {
        let seed = Seed::from_bytes(b32(s(c, "seed")));
        let out = generate_from_seed(&seed, u(c, "index"));
        assert_eq!(hex::encode(out.as_bytes()), s(c, "output"), "{}", s(c, "name"));
    }
}

#[test]
fn appendix_d_secret_storage() {
    let v = load("storage");
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 9);
    let mut inserts = 0;
    let mut rejections = 0;
    for c in cases {
        let mut store = SecretStore::new();
        let mut accepted = Vec::new();
        for step in c["steps"].as_array().unwrap() {
            let index = u(step, "index");
            let secret = PerCommitmentSecret::from_bytes(b32(s(step, "secret")));
            inserts += 1;
            let before = store.clone();
            match s(step, "expected") {
                "ok" => {
                    store.insert(index, &secret).unwrap();
                    accepted.push((index, secret));
                }
                "error" => {
                    assert_eq!(store.insert(index, &secret), Err(ShachainError::Inconsistent), "{}", s(c, "name"));
                    assert_eq!(store, before, "a rejected insert must leave the store unchanged");
                    rejections += 1;
                    break;
                }
                other => panic!("unknown expectation {other}"),
            }
        }
        for (index, secret) in accepted {
            assert_eq!(store.get(index), Some(secret));
        }
        assert_eq!(SecretStore::decode(&store.encode()).unwrap(), store);
    }
    assert_eq!((inserts, rejections), (56, 8));
}

/// A signer holding only the keys the vectors reveal (the others are unused by these tests).
fn signer(funding: SecretKey, htlc_base: SecretKey, revocation_base: SecretKey) -> InMemorySigner {
    let filler = SecretKey::from_slice(&[0x55; 32]).unwrap();
    InMemorySigner::new(ChannelSecrets {
        funding: FundingSecret::from_secret_key(funding),
        revocation_base: RevocationBaseSecret::from_secret_key(revocation_base),
        payment_base: PaymentBaseSecret::from_secret_key(htlc_base),
        delayed_payment_base: DelayedPaymentBaseSecret::from_secret_key(filler),
        htlc_base: HtlcBaseSecret::from_secret_key(htlc_base),
        commitment_seed: Seed::from_bytes([0x66; 32]),
    })
}

fn verify_with_core(tx: &Transaction, spent: &TxOut) {
    // `verify` uses libbitcoinconsensus' VERIFY_ALL: P2SH, DERSIG, NULLDUMMY, CLTV, CSV, WITNESS.
    tx.verify(|_| Some(spent.clone())).unwrap_or_else(|e| panic!("Bitcoin Core rejected {}: {e:?}", tx.compute_txid()));
}

#[test]
fn appendix_c_and_f_commitment_and_htlc_transactions() {
    let secp = Secp256k1::new();
    let v = load("commitment");
    let p = &v["common_parameters"];
    let hidden = &v["internal_derivation_values"];

    // Keys of both parties, re-derived from the hidden base secrets (Appendix C comment).
    let local_funding_sk = SecretKey::from_slice(&bytes(s(p, "local_funding_privkey"))).unwrap();
    let remote_funding_sk = sk(s(hidden, "remote_funding_privkey"));
    let local_payment_sk = sk(s(hidden, "local_payment_basepoint_secret"));
    let remote_payment_sk = sk(s(hidden, "remote_payment_basepoint_secret"));
    let remote_revocation_sk = sk(s(hidden, "remote_revocation_basepoint_secret"));
    let local_delayed_sk = sk(s(hidden, "local_delayed_payment_basepoint_secret"));
    let local_signer = signer(local_funding_sk, local_payment_sk, local_payment_sk);
    let remote_signer = signer(remote_funding_sk, remote_payment_sk, remote_revocation_sk);

    let local = ChannelPubkeys {
        funding: FundingPubkey::from_public_key(pk(s(p, "local_funding_pubkey"))),
        revocation_basepoint: RevocationBasepoint::from_public_key(pk(s(p, "local_payment_basepoint"))),
        payment_basepoint: PaymentBasepoint::from_public_key(pk(s(p, "local_payment_basepoint"))),
        delayed_payment_basepoint: DelayedPaymentBasepoint::from_public_key(PublicKey::from_secret_key(
            &secp,
            &local_delayed_sk,
        )),
        htlc_basepoint: HtlcBasepoint::from_public_key(pk(s(p, "local_htlc_basepoint"))),
    };
    let remote = ChannelPubkeys {
        funding: FundingPubkey::from_public_key(pk(s(p, "remote_funding_pubkey"))),
        revocation_basepoint: RevocationBasepoint::from_public_key(pk(s(hidden, "remote_revocation_basepoint"))),
        payment_basepoint: PaymentBasepoint::from_public_key(pk(s(p, "remote_payment_basepoint"))),
        delayed_payment_basepoint: DelayedPaymentBasepoint::from_public_key(pk(s(p, "remote_payment_basepoint"))),
        htlc_basepoint: HtlcBasepoint::from_public_key(pk(s(p, "remote_htlc_basepoint"))),
    };
    assert_eq!(local_signer.pubkeys().funding, local.funding);
    assert_eq!(remote_signer.pubkeys().funding, remote.funding);
    assert_eq!(remote_signer.pubkeys().revocation_basepoint, remote.revocation_basepoint);

    let pcp = PerCommitmentPoint::from_public_key(pk(s(hidden, "local_per_commitment_point")));
    let keys = CommitmentKeys::derive(&secp, &pcp, &local, &remote).unwrap();
    assert_eq!(hex::encode(keys.revocation.serialize()), s(p, "local_revocation_pubkey"));
    assert_eq!(hex::encode(keys.broadcaster_delayed.serialize()), s(p, "local_delayedpubkey"));
    assert_eq!(hex::encode(keys.broadcaster_htlc.serialize()), s(p, "local_htlcpubkey"));
    assert_eq!(hex::encode(keys.countersignatory_htlc.serialize()), s(p, "remote_htlcpubkey"));
    assert_eq!(derive_privkey(&secp, &local_payment_sk, &pcp).unwrap().secret_bytes(), b32(s(p, "local_privkey")));

    let factor = ObscuringFactor::new(&local.payment_basepoint, &remote.payment_basepoint);
    assert_eq!(format!("{:012x}", factor.to_u64()), s(p, "obscuring_factor"));
    assert_eq!(
        hex::encode(script::funding(&local.funding, &remote.funding).as_bytes()),
        s(p, "funding_witness_script")
    );

    let funding_value = Amount::from_sat(u(p, "funding_amount_satoshi"));
    let funding_script = script::funding(&local.funding, &remote.funding);
    let funding_txout = TxOut { value: funding_value, script_pubkey: funding_script.to_p2wsh() };
    let htlc_table: Vec<(CommitmentHtlc, PaymentPreimage)> = v["htlcs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let preimage = PaymentPreimage(b32(s(h, "payment_preimage")));
            assert_eq!(preimage.hash(), PaymentHash(b32(s(h, "payment_hash"))));
            let direction = match s(h, "kind_in_local_commitment") {
                "offered" => HtlcDirection::Offered,
                "received" => HtlcDirection::Received,
                other => panic!("unknown kind {other}"),
            };
            let htlc = CommitmentHtlc::new(
                direction,
                MilliSats::from_msat(u(h, "amount_msat")),
                preimage.hash(),
                u(h, "cltv_expiry") as u32,
            );
            (htlc, preimage)
        })
        .collect();

    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 25);
    let mut htlc_tx_count = 0;
    for c in cases {
        let name = format!("{} {}", s(c, "appendix"), s(c, "name"));
        let channel_type = if c["option_anchors"].as_bool().unwrap() {
            ChannelType::AnchorsZeroFeeHtlc
        } else {
            ChannelType::StaticRemoteKey
        };
        let params = CommitmentParams {
            channel_type,
            funding_outpoint: OutPoint { txid: Txid::from_str(s(p, "funding_tx_id")).unwrap(), vout: 0 },
            funding_value,
            broadcaster_is_funder: true,
            to_self_delay: u(p, "local_delay") as u16,
            dust_limit: Amount::from_sat(u(c, "dust_limit_satoshi")),
            obscuring_factor: factor,
            broadcaster: local,
            countersignatory: remote,
        };
        let ids: Vec<usize> =
            c["htlc_ids_in_channel"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
        let htlcs: Vec<CommitmentHtlc> = ids.iter().map(|&i| htlc_table[i].0).collect();
        let state = CommitmentState {
            number: CommitmentNumber::new(u(p, "commitment_number")).unwrap(),
            to_broadcaster: MilliSats::from_msat(u(c, "to_local_msat")),
            to_countersignatory: MilliSats::from_msat(u(c, "to_remote_msat")),
            feerate: FeeratePerKw(u(c, "local_feerate_per_kw") as u32),
            htlcs: &htlcs,
        };
        // BOLT #3 caps the fee at what the funder has; the crate's builder refuses that state
        // (a channel never signs it) and the capping builder reproduces the vector.
        let built = match build_commitment(&params, &keys, &state) {
            Ok(built) => built,
            Err(CommitmentError::FunderCannotPayFee) => {
                assert!(name.ends_with("commitment tx with fee greater than funder amount"), "{name}: fee unpaid");
                build_commitment_capping_fee(&params, &keys, &state).unwrap()
            }
            Err(e) => panic!("{name}: {e}"),
        };
        if let Some(fee) = c["expected_base_fee_sat"].as_u64() {
            assert_eq!(built.base_fee().to_sat(), fee, "{name}: base fee");
        }
        if let Some(fee) = c["expected_actual_fee_sat"].as_u64() {
            assert_eq!(built.actual_fee().to_sat(), fee, "{name}: actual fee");
        }
        if let Some(outputs) = c["expected_outputs"].as_array() {
            // The spec lists outputs by role, not in transaction order: match them as a set. (The
            // "same amount and preimage" cases list only their HTLC outputs.)
            let expected_count = c["derived_num_outputs"].as_u64().unwrap_or(outputs.len() as u64);
            assert_eq!(expected_count, built.outputs().len() as u64, "{name}: output count");
            for o in outputs {
                let script = o["witness_script"].as_str().map(str::to_owned);
                let found = built.outputs().iter().any(|got| {
                    got.value.to_sat() == u(o, "amount_sat")
                        && script == got.witness_script.as_ref().map(|w| hex::encode(w.as_bytes()))
                });
                assert!(
                    found,
                    "{name}: expected output {o} not built; built {:#?}",
                    built
                        .outputs()
                        .iter()
                        .map(|g| (g.value, g.witness_script.as_ref().map(|w| hex::encode(w.as_bytes()))))
                        .collect::<Vec<_>>()
                );
            }
        }

        // The remote party signs our commitment and HTLC transactions: byte-exact RFC6979.
        let sigs = sign_counterparty_commitment(&remote_signer, &built).unwrap();
        assert_eq!(hex::encode(sigs.commitment.signature.serialize_der()), s(c, "remote_signature"), "{name}");
        let htlc_txs = c["htlc_txs"].as_array().unwrap();
        assert_eq!(htlc_txs.len() as u64, u(c, "num_htlcs"), "{name}");
        assert_eq!(sigs.htlcs.len(), htlc_txs.len(), "{name}: HTLC signature count");
        for (sig, expected) in sigs.htlcs.iter().zip(htlc_txs) {
            assert_eq!(hex::encode(sig.signature.serialize_der()), s(expected, "remote_htlc_signature"), "{name}");
            assert_eq!(u64::from(sig.sighash_type.to_u32()), u(expected, "remote_htlc_sighash_type"), "{name}");
        }

        // We verify them and complete our commitment: byte-exact and accepted by Core.
        let verified = verify_holder_commitment(&secp, built, &remote.funding, sigs).unwrap();
        let commitment_tx = verified.finalize(&local_signer).unwrap();
        assert_eq!(serialize_hex(&commitment_tx), s(c, "output_commit_tx"), "{name}");
        let parsed: Transaction = deserialize(&bytes(s(c, "output_commit_tx"))).unwrap();
        assert_eq!(parsed, commitment_tx);
        verify_with_core(&commitment_tx, &funding_txout);

        for (position, expected) in htlc_txs.iter().enumerate() {
            let htlc_tx = &verified.htlc_txs()[position];
            assert_eq!(u64::from(htlc_tx.vout), u(expected, "commitment_output_index"), "{name}");
            assert_eq!(htlc_tx.input_value.to_sat(), u(expected, "derived_htlc_output_amount_sat"), "{name}");
            let htlc_index = htlc_tx.htlc_index;
            let id = ids[htlc_index];
            assert_eq!(id as u64, u(expected, "htlc_id"), "{name}");
            let kind = match htlc_tx.direction {
                HtlcDirection::Offered => "htlc-timeout",
                HtlcDirection::Received => "htlc-success",
            };
            assert_eq!(kind, s(expected, "kind"), "{name}");
            // A success transaction needs the preimage.
            if htlc_tx.direction == HtlcDirection::Received {
                assert_eq!(verified.finalize_htlc_tx(&local_signer, position, None).unwrap(), None);
            }
            let tx = verified.finalize_htlc_tx(&local_signer, position, Some(&htlc_table[id].1)).unwrap().unwrap();
            assert_eq!(serialize_hex(&tx), s(expected, "tx_hex"), "{name}: HTLC tx {position}");
            let spent = &commitment_tx.output[htlc_tx.vout as usize];
            verify_with_core(&tx, spent);
            htlc_tx_count += 1;
        }
    }
    assert_eq!(htlc_tx_count, 48);
}

#[test]
fn appendix_b_funding_transaction() {
    let v = load("funding");
    let f = &v["vector"];
    let local = FundingPubkey::from_public_key(pk(s(f, "local_funding_pubkey")));
    let remote = FundingPubkey::from_public_key(pk(s(f, "remote_funding_pubkey")));
    let ws = script::funding(&local, &remote);
    assert_eq!(hex::encode(ws.as_bytes()), s(f, "funding_witness_script"));
    // Either order of the keys gives the same script.
    assert_eq!(script::funding(&remote, &local), ws);

    let tx: Transaction = deserialize(&bytes(s(f, "funding_tx_hex"))).unwrap();
    assert_eq!(tx.compute_txid().to_string(), s(f, "funding_txid"));
    let input = &tx.input[0];
    assert_eq!(input.previous_output.txid.to_string(), s(f, "input_txid"));
    assert_eq!(u64::from(input.previous_output.vout), u(f, "input_index"));
    let out = &tx.output[u(f, "funding_output_index") as usize];
    assert_eq!(out.script_pubkey, ws.to_p2wsh());
    assert_eq!(out.value.to_sat(), u(f, "funding_satoshis"));
    assert_eq!(tx.output[1].value.to_sat(), u(f, "change_satoshis"));

    // The block-1 coinbase it spends, and Core accepts the spend.
    let coinbase: Transaction = deserialize(&bytes(s(f, "block1_coinbase_tx_hex"))).unwrap();
    assert_eq!(coinbase.compute_txid(), input.previous_output.txid);
    verify_with_core(&tx, &coinbase.output[0]);
    let _ = (ScriptBuf::new(), bitcoin::hashes::sha256::Hash::all_zeros());
}
