//! The update messages: `commitment_signed`, `update_add_htlc`, the HTLC removals,
//! `revoke_and_ack`, `update_fee`.

use super::*;

#[test]
fn commitment_signed_with_bad_signatures_is_refused() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        for n in 1..=2u8 {
            let (_, fx) =
                p.a.ch
                    .add_htlc(MilliSats::from_msat(40_000_000), PaymentPreimage([n; 32]).hash(), 2_000, onion())
                    .unwrap();
            p.a.absorb_pub(fx, &mut p.to_b);
        }
        let fx = p.a.ch.commit(&p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        assert!(p.deliver_to_b() && p.deliver_to_b(), "both adds delivered");
        let Some(Msg::CommitmentSigned { channel_id, signature, htlc_signatures }) = p.to_b.pop_front() else {
            panic!("commitment_signed")
        };
        assert_eq!(htlc_signatures.len(), 2, "two untrimmed HTLCs");
        let cs = |signature: Signature, htlc_signatures: Vec<Signature>| Msg::CommitmentSigned {
            channel_id,
            signature,
            htlc_signatures,
        };
        let bad = Misbehaviour::BadSignature;
        let (b, sb) = (&mut p.b.ch, &p.b.signer);
        // A valid signature of something else, in each place.
        refuse(
            b,
            sb,
            cs(htlc_signatures[0], htlc_signatures.clone()),
            bad(CommitmentSigError::Commitment(SignatureError::Invalid)),
        );
        refuse(
            b,
            sb,
            cs(junk_sig(3), htlc_signatures.clone()),
            bad(CommitmentSigError::Commitment(SignatureError::Invalid)),
        );
        refuse(
            b,
            sb,
            cs(high_s(&signature), htlc_signatures.clone()),
            bad(CommitmentSigError::Commitment(SignatureError::HighS)),
        );
        let swapped = vec![htlc_signatures[1], htlc_signatures[0]];
        let htlc_error = |position| bad(CommitmentSigError::Htlc { position, error: SignatureError::Invalid });
        refuse(b, sb, cs(signature, swapped), htlc_error(0));
        refuse(b, sb, cs(signature, vec![htlc_signatures[0], signature]), htlc_error(1));
        refuse(
            b,
            sb,
            cs(signature, vec![htlc_signatures[0], high_s(&htlc_signatures[1])]),
            bad(CommitmentSigError::Htlc { position: 1, error: SignatureError::HighS }),
        );
        // One too few, one too many, none.
        for n in [0usize, 1, 3] {
            let mut sigs = htlc_signatures.clone();
            sigs.resize(n, signature);
            refuse(b, sb, cs(signature, sigs), bad(CommitmentSigError::HtlcCount { expected: 2, got: n }));
        }
        let err = refuse(b, sb, elsewhere(&cs(signature, htlc_signatures.clone())), Misbehaviour::WrongChannel);
        assert_eq!(err.action, Action::Warn);
        // The genuine one still goes through, and the channel completes its dance.
        let fx = b.handle_message(cs(signature, htlc_signatures.clone()), sb, tip()).expect("genuine signature");
        p.b.absorb_pub(fx, &mut p.to_a);
        p.settle();
        p.verify_commitments();
        // Replaying it now signs nothing new.
        refuse(&p.b.ch, &p.b.signer, cs(signature, htlc_signatures), Misbehaviour::NoChanges);
    }
}

#[test]
fn commitment_signed_without_changes_or_out_of_turn_is_refused() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        let id = p.a.ch.channel_id();
        let cs = Msg::CommitmentSigned { channel_id: id, signature: junk_sig(1), htlc_signatures: vec![] };
        // Nothing happened at all.
        // A slip that puts nothing at risk: warning and disconnection, not a force close.
        let err = refuse(&p.a.ch, &p.a.signer, cs.clone(), Misbehaviour::NoChanges);
        assert_eq!(err.action, Action::Warn);
        refuse(&p.b.ch, &p.b.signer, cs.clone(), Misbehaviour::NoChanges);
        // Only the receiver's own update is pending: the sender may not sign it into the
        // receiver's commitment before the receiver signed it into the sender's.
        let (_, fx) =
            p.a.ch.add_htlc(MilliSats::from_msat(5_000_000), PaymentPreimage([1; 32]).hash(), 2_000, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        refuse(&p.a.ch, &p.a.signer, cs.clone(), Misbehaviour::NoChanges);
        // a signed; b revoked and signed back; the same signature again before b's answer
        // arrives covers nothing new.
        p.deliver_to_b();
        let fx = p.a.ch.commit(&p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        let genuine = p.to_b.front().cloned().expect("commitment_signed");
        p.deliver_to_b();
        refuse(&p.b.ch, &p.b.signer, genuine, Misbehaviour::NoChanges);
        p.settle();
        refuse(&p.a.ch, &p.a.signer, cs.clone(), Misbehaviour::NoChanges);
        refuse(&p.b.ch, &p.b.signer, cs, Misbehaviour::NoChanges);
    }
}

// ---------------------------------------------------------------------------------------------
// update_add_htlc
// ---------------------------------------------------------------------------------------------

#[test]
fn update_add_htlc_ids_amounts_expiry_and_limits() {
    for ct in TYPES {
        let cfg_b = ChannelConfig {
            max_accepted_htlcs: 2,
            htlc_minimum: MilliSats::from_msat(1_000),
            max_htlc_value_in_flight: MilliSats::from_msat(60_000_000),
            ..config(ct)
        };
        let mut p = open_logged(config(ct), cfg_b, CAPACITY, PUSH, &mut Vec::new());
        let cid = p.b.ch.channel_id();
        let (b, sb) = (&mut p.b.ch, &p.b.signer);
        refuse(b, sb, add_msg(cid, 1, 10_000_000, 2_000), Misbehaviour::HtlcId);
        refuse(b, sb, add_msg(cid, u64::MAX, 10_000_000, 2_000), Misbehaviour::HtlcId);
        refuse(b, sb, add_msg(cid, 0, 0, 2_000), Misbehaviour::HtlcBelowMinimum);
        refuse(b, sb, add_msg(cid, 0, 999, 2_000), Misbehaviour::HtlcBelowMinimum);
        refuse(b, sb, add_msg(cid, 0, 10_000_000, 500_000_000), Misbehaviour::BadExpiry);
        refuse(b, sb, add_msg(cid, 0, 10_000_000, u32::MAX), Misbehaviour::BadExpiry);
        refuse(b, sb, add_msg(cid, 0, 60_000_001, 2_000), Misbehaviour::HtlcLimits);
        refuse(b, sb, add_msg(OTHER_ID, 0, 10_000_000, 2_000), Misbehaviour::WrongChannel);
        // The smallest acceptable HTLC, at the highest block-height expiry.
        let fx = b.handle_message(add_msg(cid, 0, 1_000, 499_999_999), sb, tip()).expect("id 0");
        assert!(fx.update.is_none(), "an add no signature covers is kept in memory, not written");
        refuse(b, sb, add_msg(cid, 0, 10_000_000, 2_000), Misbehaviour::HtlcId);
        refuse(b, sb, add_msg(cid, 2, 10_000_000, 2_000), Misbehaviour::HtlcId);
        // In flight: 1_000 + 59_999_001 > 60_000_000.
        refuse(b, sb, add_msg(cid, 1, 59_999_001, 2_000), Misbehaviour::HtlcLimits);
        let mut exact = b.clone();
        let _ = exact.handle_message(add_msg(cid, 1, 59_999_000, 2_000), sb, tip()).expect("exactly the in-flight cap");
        let _ = b.handle_message(add_msg(cid, 1, 10_000_000, 2_000), sb, tip()).expect("id 1");
        refuse(b, sb, add_msg(cid, 1, 10_000, 2_000), Misbehaviour::HtlcId);
        // A third HTLC breaks max_accepted_htlcs = 2 (even a tiny one, well inside the value cap).
        refuse(b, sb, add_msg(cid, 2, 1_000, 2_000), Misbehaviour::HtlcLimits);
        // a's own command knows b's limits too.
        let pre = PaymentPreimage([9; 32]);
        refuse_cmd(&mut p.a.ch, CommandError::Amount, |c| {
            c.add_htlc(MilliSats::from_msat(999), pre.hash(), 2_000, onion())
        });
        refuse_cmd(&mut p.a.ch, CommandError::Amount, |c| c.add_htlc(MilliSats::ZERO, pre.hash(), 2_000, onion()));
        refuse_cmd(&mut p.a.ch, CommandError::BadExpiry, |c| {
            c.add_htlc(MilliSats::from_msat(5_000), pre.hash(), 500_000_000, onion())
        });
        refuse_cmd(&mut p.a.ch, CommandError::Limits, |c| {
            c.add_htlc(MilliSats::from_msat(60_000_001), pre.hash(), 2_000, onion())
        });
    }
}

#[test]
fn update_add_htlc_the_sender_cannot_afford_is_refused() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        let cid = p.a.ch.channel_id();
        // a (funder) has 800,000 sat: it must keep b's 1,000-sat reserve and pay the fee.
        refuse(&p.b.ch, &p.b.signer, add_msg(cid, 0, 799_000_000, 2_000), Misbehaviour::CannotAfford);
        refuse(&p.b.ch, &p.b.signer, add_msg(cid, 0, 800_000_000, 2_000), Misbehaviour::CannotAfford);
        refuse(&p.b.ch, &p.b.signer, add_msg(cid, 0, u64::MAX, 2_000), Misbehaviour::CannotAfford);
        // b has 200,000 sat and must keep a's 1,000-sat reserve.
        refuse(&p.a.ch, &p.a.signer, add_msg(cid, 0, 199_000_001, 2_000), Misbehaviour::CannotAfford);
        refuse(&p.a.ch, &p.a.signer, add_msg(cid, 0, 200_000_000, 2_000), Misbehaviour::CannotAfford);
        let _ = p.a.ch.handle_message(add_msg(cid, 0, 199_000_000, 2_000), &p.a.signer, tip()).expect("to the reserve");
        refuse(&p.a.ch, &p.a.signer, add_msg(cid, 1, 1, 2_000), Misbehaviour::CannotAfford);
        // And the commands.
        let pre = PaymentPreimage([9; 32]);
        refuse_cmd(&mut p.a.ch, CommandError::CannotAfford, |c| {
            c.add_htlc(MilliSats::from_msat(799_000_000), pre.hash(), 2_000, onion())
        });
        refuse_cmd(&mut p.b.ch, CommandError::CannotAfford, |c| {
            c.add_htlc(MilliSats::from_msat(199_000_001), pre.hash(), 2_000, onion())
        });
    }
}

// ---------------------------------------------------------------------------------------------
// update_fulfill_htlc / update_fail_htlc / update_fail_malformed_htlc
// ---------------------------------------------------------------------------------------------

#[test]
fn removals_of_wrong_unknown_or_uncommitted_htlcs_are_refused() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        let cid = p.a.ch.channel_id();
        let pre0 = PaymentPreimage([1; 32]);
        let id0 = add_and_settle(&mut p, true, 20_000_000, pre0);
        let fulfill = |id, pre| Msg::UpdateFulfillHtlc { channel_id: cid, id, payment_preimage: pre };
        let fail = |id| Msg::UpdateFailHtlc { channel_id: cid, id, reason: vec![1, 2, 3] };
        let malformed = |id, failure_code| Msg::UpdateFailMalformedHtlc {
            channel_id: cid,
            id,
            sha256_of_onion: [0x5a; 32],
            failure_code,
        };
        let (a, sa) = (&mut p.a.ch, &p.a.signer);
        refuse(a, sa, fulfill(id0, PaymentPreimage([2; 32])), Misbehaviour::WrongPreimage);
        refuse(a, sa, fulfill(id0, PaymentPreimage(pre0.hash().0)), Misbehaviour::WrongPreimage);
        refuse(a, sa, fulfill(7, pre0), Misbehaviour::UnknownHtlc);
        refuse(a, sa, fail(7), Misbehaviour::UnknownHtlc);
        refuse(a, sa, malformed(7, 0xc005), Misbehaviour::UnknownHtlc);
        refuse(a, sa, fulfill(u64::MAX, pre0), Misbehaviour::UnknownHtlc);
        for code in [0x4005u16, 0x0000, 0x7fff, 0x400f] {
            refuse(a, sa, malformed(id0, code), Misbehaviour::MalformedWithoutBadOnion);
        }
        refuse(a, sa, elsewhere(&fulfill(id0, pre0)), Misbehaviour::WrongChannel);
        // a may not remove an id b never offered.
        let back = PaymentPreimage([3; 32]);
        let back_id = add_and_settle(&mut p, false, 10_000_000, back);
        assert_eq!(back_id, 0, "b's first HTLC has id 0 as well");
        let (b, sb) = (&mut p.b.ch, &p.b.signer);
        refuse(b, sb, fulfill(back_id + 1, back), Misbehaviour::UnknownHtlc);
        // a offers an HTLC not yet committed, then half-committed.
        let pre1 = PaymentPreimage([4; 32]);
        let (id1, fx) = p.a.ch.add_htlc(MilliSats::from_msat(20_000_000), pre1.hash(), 2_000, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        refuse(&p.a.ch, &p.a.signer, fulfill(id1, pre1), Misbehaviour::UnknownHtlc);
        refuse(&p.a.ch, &p.a.signer, fail(id1), Misbehaviour::UnknownHtlc);
        let fx = p.a.ch.commit(&p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.deliver_to_b();
        p.deliver_to_b();
        // b revoked its old commitment and signed a's new one; only the revocation arrives.
        assert!(matches!(p.to_a.front(), Some(Msg::RevokeAndAck { .. })));
        p.deliver_to_a();
        assert!(!p.a.ch.is_htlc_irrevocably_committed(Side::Holder, id1));
        refuse(&p.a.ch, &p.a.signer, fulfill(id1, pre1), Misbehaviour::UnknownHtlc);
        refuse(&p.a.ch, &p.a.signer, malformed(id1, 0xc005), Misbehaviour::UnknownHtlc);
        // b's command refuses the same.
        refuse_cmd(&mut p.b.ch, CommandError::UnknownHtlc, |c| c.fulfill_htlc(id1, pre1));
        refuse_cmd(&mut p.b.ch, CommandError::UnknownHtlc, |c| c.fail_htlc(id1, vec![]));
        p.settle();
        // A removal once; the second is refused.
        let fx = p.a.ch.handle_message(fulfill(id0, pre0), &p.a.signer, tip()).expect("genuine fulfil");
        assert!(fx.events.iter().any(|e| matches!(e, Event::HtlcFulfilled { id, .. } if *id == id0)));
        refuse(&p.a.ch, &p.a.signer, fulfill(id0, pre0), Misbehaviour::UnknownHtlc);
        refuse(&p.a.ch, &p.a.signer, fail(id0), Misbehaviour::UnknownHtlc);
    }
}

// ---------------------------------------------------------------------------------------------
// revoke_and_ack
// ---------------------------------------------------------------------------------------------

#[test]
fn revoke_and_ack_with_wrong_secret_or_out_of_turn_is_refused() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        let cid = p.a.ch.channel_id();
        let point = *signer_b().per_commitment_point(CommitmentNumber::new(2).unwrap()).unwrap().public_key();
        let raa = |secret: [u8; 32]| Msg::RevokeAndAck {
            channel_id: cid,
            per_commitment_secret: PerCommitmentSecret::from_bytes(secret),
            next_per_commitment_point: point,
        };
        let b0 = signer_b().release_per_commitment_secret(CommitmentNumber::ZERO).unwrap().to_bytes();
        // Nothing signed: no revocation is due, even a genuine-looking one.
        let err = refuse(&p.a.ch, &p.a.signer, raa(b0), Misbehaviour::BadRevocation);
        assert_eq!(err.action, Action::ForceClose);
        refuse(&p.b.ch, &p.b.signer, raa(b0), Misbehaviour::BadRevocation);
        let (_, fx) =
            p.a.ch.add_htlc(MilliSats::from_msat(20_000_000), PaymentPreimage([1; 32]).hash(), 2_000, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        let fx = p.a.ch.commit(&p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.deliver_to_b();
        p.deliver_to_b();
        let genuine = p.to_a.pop_front().expect("revoke_and_ack");
        let Msg::RevokeAndAck { per_commitment_secret, .. } = &genuine else { panic!("revoke_and_ack first") };
        assert_eq!(per_commitment_secret.to_bytes(), b0);
        let b1 = signer_b().release_per_commitment_secret(CommitmentNumber::new(1).unwrap()).unwrap().to_bytes();
        let mut flipped = b0;
        flipped[31] ^= 1;
        for secret in [[0x42; 32], b1, flipped, [0; 32], CURVE_ORDER, [0xff; 32]] {
            refuse(&p.a.ch, &p.a.signer, raa(secret), Misbehaviour::BadRevocation);
        }
        refuse(&p.a.ch, &p.a.signer, elsewhere(&genuine), Misbehaviour::WrongChannel);
        // a's own revocation is not b's.
        let a0 = signer_a().release_per_commitment_secret(CommitmentNumber::ZERO).unwrap().to_bytes();
        refuse(&p.a.ch, &p.a.signer, raa(a0), Misbehaviour::BadRevocation);
        let fx = p.a.ch.handle_message(genuine.clone(), &p.a.signer, tip()).expect("genuine revocation");
        p.a.absorb_pub(fx, &mut p.to_b);
        // Twice is out of turn.
        refuse(&p.a.ch, &p.a.signer, genuine, Misbehaviour::BadRevocation);
        p.settle();
        p.verify_commitments();
    }
}

/// A signer that gives commitment `forged` a per-commitment secret outside its shachain: the
/// point it announces matches the secret it later reveals, but the secret does not derive the
/// earlier ones.
struct ForgingSigner {
    inner: InMemorySigner,
    forged: u64,
    secret: PerCommitmentSecret,
}

impl Signer for ForgingSigner {
    fn pubkeys(&self) -> &ChannelPubkeys {
        self.inner.pubkeys()
    }

    fn sign(&self, request: &SignRequest<'_>) -> Result<bitcoin::ecdsa::Signature, SignerError> {
        self.inner.sign(request)
    }

    fn per_commitment_point(&self, n: CommitmentNumber) -> Result<PerCommitmentPoint, SignerError> {
        if n.to_u64() == self.forged {
            Ok(self.secret.point(self.inner.secp())?)
        } else {
            self.inner.per_commitment_point(n)
        }
    }

    fn release_per_commitment_secret(&self, n: CommitmentNumber) -> Result<PerCommitmentSecret, SignerError> {
        if n.to_u64() == self.forged {
            Ok(self.secret)
        } else {
            self.inner.release_per_commitment_secret(n)
        }
    }
}

#[test]
fn revocation_secret_matching_its_point_but_not_the_shachain_is_refused() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        // b announces commitment 3's point from a secret of its own making (in the revocation of
        // commitment 1) and reveals that secret when revoking commitment 3: index 2^48-4 sits in
        // shachain slot 2, and does not derive the secrets of commitments 1 and 2.
        let forger =
            ForgingSigner { inner: p.b.signer.clone(), forged: 3, secret: PerCommitmentSecret::from_bytes([0x5e; 32]) };
        let forged_point = *forger.secret.point(forger.inner.secp()).unwrap().public_key();
        let mut announced = false;
        let mut refused = None;
        'payments: for n in 1..=3u8 {
            let pre = PaymentPreimage([n; 32]);
            let (id, fx) = p.a.ch.add_htlc(MilliSats::from_msat(10_000_000), pre.hash(), 2_000, onion()).unwrap();
            p.a.absorb_pub(fx, &mut p.to_b);
            let fx = p.a.ch.commit(&p.a.signer).unwrap();
            p.a.absorb_pub(fx, &mut p.to_b);
            let mut fulfilled = false;
            loop {
                while let Some(m) = p.to_b.pop_front() {
                    let fx = p.b.ch.handle_message(m, &forger, tip()).expect("b takes a's messages");
                    p.b.absorb_pub(fx, &mut p.to_a);
                }
                if !fulfilled && p.b.ch.is_htlc_irrevocably_committed(Side::Counterparty, id) {
                    let fx = p.b.ch.fulfill_htlc(id, pre).unwrap();
                    p.b.absorb_pub(fx, &mut p.to_a);
                    let fx = p.b.ch.commit(&forger).unwrap();
                    p.b.absorb_pub(fx, &mut p.to_a);
                    fulfilled = true;
                }
                let Some(m) = p.to_a.pop_front() else { break };
                let revoked_forged = matches!(&m, Msg::RevokeAndAck { per_commitment_secret, .. } if *per_commitment_secret == forger.secret);
                if let Msg::RevokeAndAck { next_per_commitment_point, .. } = &m {
                    announced |= *next_per_commitment_point == forged_point;
                }
                if revoked_forged {
                    // The secret matches the point a was told: only the shachain can tell.
                    assert!(announced, "a accepted the forged point earlier");
                    assert_eq!(p.a.ch.counterparty_commitment_number(), 4, "b revokes commitment 3 for 4");
                    refused = Some(refuse(&p.a.ch, &p.a.signer, m, Misbehaviour::BadRevocation));
                    break 'payments;
                }
                let fx = p.a.ch.handle_message(m, &p.a.signer, tip()).expect("a takes b's honest messages");
                p.a.absorb_pub(fx, &mut p.to_b);
            }
        }
        assert_eq!(refused.expect("the forged secret was revealed").action, Action::ForceClose);
    }
}

// ---------------------------------------------------------------------------------------------
// update_fee
// ---------------------------------------------------------------------------------------------

#[test]
fn update_fee_from_the_wrong_side_out_of_bounds_or_unaffordable_is_refused() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        let cid = p.a.ch.channel_id();
        let fee = |feerate_per_kw| Msg::UpdateFee { channel_id: cid, feerate_per_kw };
        refuse(&p.a.ch, &p.a.signer, fee(3_000), Misbehaviour::NotFunder);
        for rate in [0, 252, 100_001, u32::MAX] {
            refuse(&p.b.ch, &p.b.signer, fee(rate), Misbehaviour::Feerate);
        }
        refuse(&p.b.ch, &p.b.signer, elsewhere(&fee(3_000)), Misbehaviour::WrongChannel);
        let _ = p.b.ch.handle_message(fee(100_000), &p.b.signer, tip()).expect("the highest fee rate b accepts");
        refuse_cmd(&mut p.b.ch, CommandError::Fee, |c| c.update_fee(3_000));
        refuse_cmd(&mut p.a.ch, CommandError::Fee, |c| c.update_fee(252));

        // A funder left with 20,000 sat cannot pay a 30,000 sat/kw commitment fee.
        let mut p = Pair::open(ct, CAPACITY, 980_000_000);
        let cid = p.a.ch.channel_id();
        let fee = |feerate_per_kw| Msg::UpdateFee { channel_id: cid, feerate_per_kw };
        for rate in [30_000, 100_000] {
            refuse(&p.b.ch, &p.b.signer, fee(rate), Misbehaviour::Feerate);
            refuse_cmd(&mut p.a.ch, CommandError::Fee, |c| c.update_fee(rate));
        }
        let _ = p.b.ch.handle_message(fee(10_000), &p.b.signer, tip()).expect("affordable");
    }
}
