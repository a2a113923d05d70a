//! Property tests of the core: the shachain store against a naive map, every key derivation
//! against `privkey·G`, and conservation of value in BOLT #3 commitments.

use std::collections::HashMap;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bitcoin::{Amount, OutPoint, Txid};
use paychan::core::commitment::fees::{is_htlc_trimmed, ANCHOR_OUTPUT_VALUE};
use paychan::core::commitment::{
    build_commitment, build_commitment_capping_fee, ChannelType, CommitmentError, CommitmentHtlc, CommitmentKeys,
    CommitmentNumber, CommitmentParams, CommitmentState, FeeratePerKw, HtlcDirection, ObscuringFactor, OutputRole,
};
use paychan::core::keys::*;
use paychan::core::shachain::{generate_from_seed, SecretStore, ShachainError, MAX_INDEX};
use paychan::core::{MilliSats, PaymentHash};
use paychan::testing::strategies;
use proptest::prelude::*;

fn secret(bytes: [u8; 32]) -> Option<SecretKey> {
    SecretKey::from_slice(&bytes).ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The compact store answers exactly like a map of every secret inserted, for any number of
    /// inserts, and rejects any corrupted secret without changing.
    #[test]
    fn shachain_store_matches_naive_map(seed in strategies::seed(), n in 1usize..600, corrupt_at in any::<prop::sample::Index>()) {
        let mut store = SecretStore::new();
        let mut naive = HashMap::new();
        let corrupt = corrupt_at.index(n);
        for i in 0..n as u64 {
            let index = MAX_INDEX - i;
            let secret = generate_from_seed(&seed, index);
            if i as usize == corrupt && i > 0 {
                let mut bad = secret.to_bytes();
                bad[0] ^= 1;
                let before = store.clone();
                let r = store.insert(index, &PerCommitmentSecret::from_bytes(bad));
                // A corrupted secret is caught as soon as it must derive an earlier one.
                if index.trailing_zeros() > 0 {
                    prop_assert_eq!(r, Err(ShachainError::Inconsistent));
                    prop_assert_eq!(&store, &before);
                } else {
                    // An odd index derives nothing; a later insert exposes it instead.
                    prop_assert!(r.is_ok());
                    store = before;
                }
            }
            if store.next_index() == index {
                store.insert(index, &secret).unwrap();
                naive.insert(index, secret);
            }
        }
        for (index, secret) in &naive {
            prop_assert_eq!(store.get(*index), Some(*secret));
        }
        let lowest = naive.keys().min().copied().unwrap_or(MAX_INDEX);
        if lowest > 0 {
            prop_assert_eq!(store.get(lowest - 1), None);
        }
        prop_assert_eq!(SecretStore::decode(&store.encode()).unwrap(), store.clone());
        prop_assert_eq!(store.encode().len(), SecretStore::ENCODED_LEN);
    }

    /// Every derived private key matches its derived public key.
    #[test]
    fn derived_privkeys_match_pubkeys(base_sk in strategies::secret_key(), pcs in any::<[u8; 32]>()) {
        let secp = Secp256k1::new();
        let Some(_) = secret(pcs) else { return Ok(()) };
        let pcs = PerCommitmentSecret::from_bytes(pcs);
        let pcp = pcs.point(&secp).unwrap();
        let base_pk = PublicKey::from_secret_key(&secp, &base_sk);

        let priv_key = derive_privkey(&secp, &base_sk, &pcp).unwrap();
        prop_assert_eq!(PublicKey::from_secret_key(&secp, &priv_key), derive_pubkey(&secp, &base_pk, &pcp).unwrap());

        let rev_base = RevocationBaseSecret::from_secret_key(base_sk);
        let rev_priv = derive_revocation_privkey(&secp, &rev_base, &pcs).unwrap();
        let rev_pub = RevocationPubkey::derive(&secp, &rev_base.public_key(&secp), &pcp).unwrap();
        prop_assert_eq!(&PublicKey::from_secret_key(&secp, &rev_priv), rev_pub.public_key());

        let htlc = HtlcPubkey::derive(&secp, &HtlcBasepoint::from_public_key(base_pk), &pcp).unwrap();
        prop_assert_eq!(htlc.public_key(), &PublicKey::from_secret_key(&secp, &priv_key));
        let delayed = DelayedPaymentPubkey::derive(&secp, &DelayedPaymentBasepoint::from_public_key(base_pk), &pcp).unwrap();
        prop_assert_eq!(delayed.public_key(), &PublicKey::from_secret_key(&secp, &priv_key));
    }

    /// Commitment conservation, checked against an independent model of BOLT #3: every msat of
    /// the channel is in an output, the base fee, a trimmed HTLC, a dust balance, or a sub-satoshi
    /// remainder, and nothing else.
    #[test]
    fn commitment_conserves_value(
        capacity_sat in 20_000u64..5_000_000,
        local_share in 0u64..=1000,
        htlcs in prop::collection::vec((any::<bool>(), 1u64..3_000_000, 100u32..1000, any::<u8>()), 0..30),
        feerate in prop_oneof![Just(0u32), 253u32..20_000, 20_000u32..200_000],
        dust in 354u64..5_000,
        anchors in any::<bool>(),
        local_is_funder in any::<bool>(),
    ) {
        let secp = Secp256k1::new();
        let local = ChannelSecrets::from_seed(&Seed::from_bytes([3; 32]), 0).pubkeys(&secp);
        let remote = ChannelSecrets::from_seed(&Seed::from_bytes([4; 32]), 0).pubkeys(&secp);
        let capacity_msat = capacity_sat * 1000;
        // HTLCs take what fits; the rest is split between the balances.
        let mut list = Vec::new();
        let mut left = capacity_msat;
        for (offered, amount, expiry, hash) in htlcs {
            if amount <= left {
                left -= amount;
                let direction = if offered { HtlcDirection::Offered } else { HtlcDirection::Received };
                list.push(CommitmentHtlc::new(direction, MilliSats::from_msat(amount), PaymentHash([hash; 32]), expiry));
            }
        }
        let to_local = left * local_share / 1000;
        let to_remote = left - to_local;
        let channel_type = if anchors { ChannelType::AnchorsZeroFeeHtlc } else { ChannelType::StaticRemoteKey };
        let params = CommitmentParams {
            channel_type,
            funding_outpoint: OutPoint { txid: Txid::from_byte_array([1; 32]), vout: 0 },
            funding_value: Amount::from_sat(capacity_sat),
            broadcaster_is_funder: local_is_funder,
            to_self_delay: 144,
            dust_limit: Amount::from_sat(dust),
            obscuring_factor: ObscuringFactor::new(&local.payment_basepoint, &remote.payment_basepoint),
            broadcaster: local,
            countersignatory: remote,
        };
        let pcp = ChannelSecrets::from_seed(&Seed::from_bytes([3; 32]), 0).per_commitment_point(&secp, CommitmentNumber::ZERO).unwrap();
        let keys = CommitmentKeys::derive(&secp, &pcp, &local, &remote).unwrap();
        let feerate = FeeratePerKw(feerate);
        let state = CommitmentState {
            number: CommitmentNumber::new(7).unwrap(),
            to_broadcaster: MilliSats::from_msat(to_local),
            to_countersignatory: MilliSats::from_msat(to_remote),
            feerate,
            htlcs: &list,
        };
        // The model.
        let dust_amt = Amount::from_sat(dust);
        let untrimmed: Vec<&CommitmentHtlc> = list.iter().filter(|h| !is_htlc_trimmed(channel_type, h.direction() == HtlcDirection::Offered, h.amount(), dust_amt, feerate)).collect();
        let weight = if anchors { 1124 } else { 724 } + 172 * untrimmed.len() as u64;
        let base_fee = u64::from(feerate.0) * weight / 1000;
        let anchor_cost = if anchors { 2 * ANCHOR_OUTPUT_VALUE.to_sat() } else { 0 };
        let (funder, other) = if local_is_funder { (to_local, to_remote) } else { (to_remote, to_local) };
        // A funder that cannot pay the fee is refused (typed error), never silently capped; BOLT
        // #3's capped rule is the other builder.
        let pays = funder >= (base_fee + anchor_cost) * 1000;
        let built = match build_commitment(&params, &keys, &state) {
            Ok(built) => {
                prop_assert!(pays);
                built
            }
            Err(CommitmentError::FunderCannotPayFee) => {
                prop_assert!(!pays);
                build_commitment_capping_fee(&params, &keys, &state).unwrap()
            }
            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
        };
        let funder_after = funder.saturating_sub((base_fee + anchor_cost) * 1000) / 1000;
        let other_after = other / 1000;
        let funder_out = if funder_after >= dust { funder_after } else { 0 };
        let other_out = if other_after >= dust { other_after } else { 0 };
        let htlc_out: u64 = untrimmed.iter().map(|h| h.amount().to_sat_floor()).sum();
        let n_anchors = if anchors { u64::from(funder_out > 0 || !untrimmed.is_empty()) + u64::from(other_out > 0 || !untrimmed.is_empty()) } else { 0 };
        let expected_outputs = funder_out + other_out + htlc_out + n_anchors * ANCHOR_OUTPUT_VALUE.to_sat();

        let outputs: u64 = built.tx().output.iter().map(|o| o.value.to_sat()).sum();
        prop_assert_eq!(outputs, expected_outputs);
        prop_assert_eq!(outputs + built.actual_fee().to_sat(), capacity_sat);
        prop_assert_eq!(built.base_fee().to_sat(), base_fee);
        prop_assert_eq!(built.htlc_txs().len(), untrimmed.len());
        // When the funder can pay, the fee is exactly the base fee plus what was trimmed.
        if funder >= (base_fee + anchor_cost) * 1000 {
            let trimmed: u64 = list.iter().map(|h| h.amount().to_msat()).sum::<u64>() - htlc_out * 1000;
            let dropped = (funder - (base_fee + anchor_cost) * 1000 - funder_out * 1000) + (other - other_out * 1000);
            let paid_msat = capacity_msat - outputs * 1000;
            // The funder pays for two anchors even when fewer appear; an absent anchor's value
            // goes to the fee.
            let absent_anchors = anchor_cost - n_anchors * ANCHOR_OUTPUT_VALUE.to_sat();
            prop_assert_eq!(paid_msat, (base_fee + absent_anchors) * 1000 + trimmed + dropped);
        }
        // BIP-0069 order with the cltv tie-break.
        let outs = &built.tx().output;
        for (i, pair) in outs.windows(2).enumerate() {
            let key = |o: &bitcoin::TxOut, role: &OutputRole| (o.value, o.script_pubkey.as_bytes().to_vec(), match role { OutputRole::Htlc(h) => list[*h].cltv_expiry(), _ => 0 });
            prop_assert!(key(&pair[0], &built.outputs()[i].role) <= key(&pair[1], &built.outputs()[i + 1].role));
        }
    }
}
