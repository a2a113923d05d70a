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
