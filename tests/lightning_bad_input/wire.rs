//! The wire format of every message kind, mutated byte by byte.

use super::*;

/// The message without its optional TLV records, and how many records it has.
fn without_tlvs(m: &Msg) -> (Msg, usize) {
    let mut m = m.clone();
    let n = match &mut m {
        Msg::OpenChannel(o) => {
            let n = usize::from(o.tlvs.upfront_shutdown_script.is_some()) + usize::from(o.tlvs.channel_type.is_some());
            o.tlvs = Default::default();
            n
        }
        Msg::AcceptChannel(a) => {
            let n = usize::from(a.tlvs.upfront_shutdown_script.is_some()) + usize::from(a.tlvs.channel_type.is_some());
            a.tlvs = Default::default();
            n
        }
        Msg::ClosingSigned { fee_range, .. } => usize::from(fee_range.take().is_some()),
        _ => 0,
    };
    (m, n)
}

#[test]
fn every_message_kind_rejects_truncation_unknown_even_tlvs_and_garbage() {
    for ct in TYPES {
        let log = scenario(ct);
        for ty in ALL_TYPES {
            // Every distinct message of this kind the run produced.
            let mut msgs: Vec<Msg> = log.iter().filter(|d| d.msg.type_number() == ty).map(|d| d.msg.clone()).collect();
            msgs.dedup();
            for m in msgs {
                let full = m.encode();
                assert_eq!(Msg::decode(&full).as_ref(), Ok(&m));
                let (bare, records) = without_tlvs(&m);
                let fixed = bare.encode().len();
                let mut boundaries = 0;
                for len in 0..full.len() {
                    match Msg::decode(&full[..len]) {
                        Err(DecodeError::Truncated) => {}
                        Ok(shorter) if len >= fixed => {
                            // Only where a whole TLV record was cut off.
                            assert_ne!(shorter, m);
                            boundaries += 1;
                        }
                        other => panic!("type {ty}: prefix {len}/{}: {other:?}", full.len()),
                    }
                }
                assert_eq!(boundaries, records, "type {ty}: Ok prefixes only at TLV record boundaries");
                let with = |extra: &[u8]| [&full[..], extra].concat();
                // Unknown TLVs: even ones are refused, odd ones skipped.
                for (even, odd) in [
                    (&[0x64u8, 0x01, 0x00][..], &[0x65u8, 0x01, 0x00][..]),
                    (&[0xfd, 0x01, 0x00, 0x00], &[0xfd, 0x01, 0x01, 0x02, 0xaa, 0xbb]),
                ] {
                    let expected_type = if even[0] == 0xfd { 256 } else { 100 };
                    assert_eq!(Msg::decode(&with(even)), Err(DecodeError::UnknownEvenType(expected_type)), "type {ty}");
                    assert_eq!(Msg::decode(&with(odd)), Ok(m.clone()), "type {ty}: odd TLV skipped");
                }
                // A non-minimal TLV type and out-of-order records.
                assert!(Msg::decode(&with(&[0xfd, 0x00, 0x65, 0x00])).is_err());
                assert!(Msg::decode(&with(&[0x67, 0x00, 0x65, 0x00])).is_err());
                // Every single trailing garbage byte.
                for b in 0..=255u8 {
                    assert!(Msg::decode(&with(&[b])).is_err(), "type {ty}: trailing {b:#04x} accepted");
                }
                // The same body under an unknown message type.
                // (Type 1 is BOLT #1's `warning`; the full type number is reported, not its low byte.)
                for unknown in [0u16, 2, 16, 18, 19, 31, 37, 40, 129, 137, 255, 256 + 17, 0x8000 | ty, 0xffff] {
                    let mut bytes = full.clone();
                    bytes[..2].copy_from_slice(&unknown.to_be_bytes());
                    assert_eq!(Msg::decode(&bytes), Err(DecodeError::UnknownMessageType(unknown)), "type {unknown}");
                }
            }
        }
    }
}

/// ~2,000 single-byte mutations per message kind (1,000 on each channel type), each fed, if it
/// decodes, to the peer that received the original, in the state it received it in.
fn mutated_messages_never_panic_and_refusals_change_nothing(ct: ChannelType, seed: u64) {
    const MUTATIONS: usize = 1_000;
    let log = scenario(ct);
    let mut rng = Rng(seed);
    for ty in ALL_TYPES {
        let d = logged(&log, ty);
        let signer = d.signer();
        let full = d.msg.encode();
        let (mut undecodable, mut accepted, mut refused) = (0, 0, 0);
        for _ in 0..MUTATIONS {
            let mut bytes = full.clone();
            let i = rng.below(bytes.len() as u64) as usize;
            bytes[i] ^= 1 + rng.below(255) as u8;
            let Ok(msg) = Msg::decode(&bytes) else {
                undecodable += 1;
                continue;
            };
            match (&d.receiver, msg) {
                (None, Msg::OpenChannel(open)) => {
                    match Channel::accept(&open, config(ct), &signer, ChainTip::at(TIP)) {
                        Ok(_) => accepted += 1,
                        Err(_) => refused += 1,
                    }
                }
                (Some(receiver), msg) => {
                    let mut ch = receiver.clone();
                    let before = ch.snapshot();
                    match ch.handle_message(msg, &signer, tip()) {
                        Ok(_) => accepted += 1,
                        Err(e) => {
                            assert!(ch.snapshot() == before, "type {ty}: refusal ({e:?}) changed the state");
                            refused += 1;
                        }
                    }
                }
                (None, _) => refused += 1,
            }
        }
        assert_eq!(undecodable + accepted + refused, MUTATIONS);
        assert!(refused > 0, "type {ty}: no mutation reached the channel and was refused");
    }
}

#[test]
fn mutated_messages_never_panic_static_remotekey() {
    mutated_messages_never_panic_and_refusals_change_nothing(ChannelType::StaticRemoteKey, 0x1234_5678_9abc_def1);
}

#[test]
fn mutated_messages_never_panic_anchors() {
    mutated_messages_never_panic_and_refusals_change_nothing(ChannelType::AnchorsZeroFeeHtlc, 0x0fed_cba9_8765_4321);
}
