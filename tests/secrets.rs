//! No `Debug` or `Display` output of the crate, and no error, contains a secret: keys, seeds,
//! per-commitment secrets or preimages.

use bitcoin::secp256k1::Secp256k1;
use paychan::core::commitment::CommitmentNumber;
use paychan::core::keys::{ChannelSecrets, Seed};
use paychan::core::shachain::{generate_from_seed, SecretStore, MAX_INDEX};
use paychan::core::sign::InMemorySigner;
use paychan::core::PaymentPreimage;
use paychan::lightning::htlc::Resolution;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether `text` contains `secret` as hex (either case), as a byte-list `Debug`, or 8 bytes of it
/// in a row in hex.
fn leaks(text: &str, secret: &[u8]) -> bool {
    let h = hex(secret);
    let lower = text.to_lowercase();
    let list = format!("{secret:?}");
    lower.contains(&h) || text.contains(&list) || secret.windows(8).any(|w| lower.contains(&hex(w)))
}

#[test]
fn secrets_never_print() {
    let secp = Secp256k1::new();
    let seed_bytes = [0x3c; 32];
    let seed = Seed::from_bytes(seed_bytes);
    let secrets = ChannelSecrets::from_seed(&seed, 0);
    let signer = InMemorySigner::new(secrets.clone());
    let pcs = secrets.per_commitment_secret(CommitmentNumber::new(3).unwrap());
    let preimage = PaymentPreimage([0x5a; 32]);
    let mut store = SecretStore::new();
    store.insert(MAX_INDEX, &generate_from_seed(&seed, MAX_INDEX)).unwrap();

    let secret_bytes: Vec<[u8; 32]> = vec![
        seed_bytes,
        secrets.funding.secret_key().secret_bytes(),
        secrets.revocation_base.secret_key().secret_bytes(),
        secrets.payment_base.secret_key().secret_bytes(),
        secrets.delayed_payment_base.secret_key().secret_bytes(),
        secrets.htlc_base.secret_key().secret_bytes(),
        *secrets.commitment_seed.as_bytes(),
        pcs.to_bytes(),
        preimage.0,
        generate_from_seed(&seed, MAX_INDEX).to_bytes(),
    ];
    let texts = vec![
        format!("{seed:?}"),
        format!("{secrets:?}"),
        format!("{:?} {:?} {:?}", secrets.funding, secrets.revocation_base, secrets.htlc_base),
        format!("{signer:?}"),
        format!("{pcs:?}"),
        format!("{preimage:?}"),
        format!("{store:?}"),
        format!("{:?}", Resolution::Fulfill(preimage)),
        format!("{:?}", paychan::lightning::Event::HtlcFulfilled { id: 1, payment_hash: preimage.hash(), preimage }),
        format!("{:?}", paychan::spilman::Event::HtlcFulfilled { id: 1, payment_hash: preimage.hash(), preimage }),
        format!("{:?}", paychan::spilman::Msg::Fulfill { id: 1, preimage }),
        format!(
            "{:?}",
            paychan::lightning::Msg::UpdateFulfillHtlc {
                channel_id: paychan::driving::ChannelId([0; 32]),
                id: 1,
                payment_preimage: preimage
            }
        ),
        format!(
            "{:?}",
            paychan::lightning::Msg::RevokeAndAck {
                channel_id: paychan::driving::ChannelId([0; 32]),
                per_commitment_secret: pcs,
                next_per_commitment_point: pcs.point(&secp).unwrap().public_key().to_owned(),
            }
        ),
        format!(
            "{:?}",
            paychan::lightning::Msg::ChannelReestablish {
                channel_id: paychan::driving::ChannelId([0; 32]),
                next_commitment_number: 4,
                next_revocation_number: 3,
                your_last_per_commitment_secret: pcs,
                my_current_per_commitment_point: pcs.point(&secp).unwrap().public_key().to_owned(),
            }
        ),
    ];
    for t in &texts {
        for s in &secret_bytes {
            assert!(!leaks(t, s), "a secret leaks in {t}");
        }
    }
}

/// A blind appointment carries no secret key: neither its encoding, nor the penalties inside
/// once opened, nor the tower's state or `Debug` output contain the client's keys, seed, the
/// peer's revealed per-commitment secret or the HTLC's preimage. The same for the second-stage
/// appointments (`static_remotekey`), opened with the txids of the peer's HTLC transactions.
#[test]
fn appointments_never_carry_a_secret() {
    use paychan::core::commitment::{ChannelType, FeeratePerKw};
    use paychan::core::tower::{Appointment, Tower};
    use paychan::core::MilliSats;
    use paychan::testing::lightning::{onion, Pair};
    for ct in [ChannelType::AnchorsZeroFeeHtlc, ChannelType::StaticRemoteKey] {
        let mut p = Pair::open(ct, 10_000_000, 4_000_000_000);
        let preimage = PaymentPreimage([9; 32]);
        let (_, fx) = p.a.ch.add_htlc(MilliSats::from_msat(5_000_000), preimage.hash(), 1_100, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.settle();
        // B's commitment with the HTLC, revoked by the next update.
        let revoked = p.a.ch.counterparty_commitment().expect("B's commitment");
        assert_eq!(revoked.htlc_txs().len(), 1);
        let number = p.a.ch.counterparty_commitment_number();
        let (_, fx) =
            p.a.ch.add_htlc(MilliSats::from_msat(6_000_000), PaymentPreimage([8; 32]).hash(), 1_100, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.settle();
        let records = paychan::lightning::records::penalty_records(&p.a.records).unwrap();
        let ladder = [FeeratePerKw(1_000), FeeratePerKw(4_000)];
        let a = p.a.ch.appointment(revoked.tx(), &records, &ladder, &p.a.signer).unwrap();
        let mut sealed = vec![(a.clone(), revoked.txid())];
        if !ct.has_anchors() {
            let second = p.a.ch.second_stage_appointments(&revoked, &records, &ladder, &p.a.signer).unwrap();
            assert_eq!(second.len(), 1, "one per HTLC transaction");
            sealed.push((second[0].clone(), revoked.htlc_txs()[0].tx.compute_txid()));
        }
        let mut tower = Tower::new();
        let c = tower.register(p.a.ch.sweep_destination());
        let mut blobs: Vec<Vec<u8>> = Vec::new();
        let mut texts = Vec::new();
        for (a, txid) in &sealed {
            let bytes = a.encode();
            assert_eq!(&Appointment::decode(&bytes).unwrap(), a);
            tower.add_appointment(c, &bytes).unwrap();
            let opened = a.open(txid).expect("opens with its txid");
            let txs: Vec<bitcoin::Transaction> = opened.ladder.iter().chain(&opened.fallback).cloned().collect();
            assert!(!txs.is_empty());
            blobs.push(bytes);
            blobs.extend(txs.iter().map(bitcoin::consensus::serialize));
            texts.push(format!("{a:?}"));
            texts.push(format!("{txs:?}"));
        }
        blobs.push(tower.encode());
        texts.push(format!("{tower:?}"));
        let seed_bytes = [0xa0; 32];
        let ours = ChannelSecrets::from_seed(&Seed::from_bytes(seed_bytes), 0);
        let theirs = ChannelSecrets::from_seed(&Seed::from_bytes([0xb0; 32]), 0);
        let revealed = theirs.per_commitment_secret(CommitmentNumber::new(number).unwrap());
        let secrets: Vec<[u8; 32]> = vec![
            seed_bytes,
            ours.funding.secret_key().secret_bytes(),
            ours.revocation_base.secret_key().secret_bytes(),
            ours.payment_base.secret_key().secret_bytes(),
            ours.delayed_payment_base.secret_key().secret_bytes(),
            ours.htlc_base.secret_key().secret_bytes(),
            *ours.commitment_seed.as_bytes(),
            revealed.to_bytes(),
            preimage.0,
        ];
        for s in &secrets {
            for b in &blobs {
                assert!(!b.windows(8).any(|w| s.windows(8).any(|x| x == w)), "a secret in an appointment's bytes");
            }
            for t in &texts {
                assert!(!leaks(t, s), "a secret leaks in {t}");
            }
        }
    }
}
