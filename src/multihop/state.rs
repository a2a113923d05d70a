//! The forwarder's own persistent state (its routes and tracked HTLCs) in the crate's versioned
//! TLV encoding. The channels persist theirs through their own effects.

use alloc::vec::Vec;

use super::forward::{ForwardState, OnionSecret, Route, Tracked};
use super::HtlcTerms;
use crate::core::encode::{read_header, required, DecodeError, Reader, TlvWriter, Writer};
use crate::core::hashlock::{PaymentHash, PaymentPreimage};
use crate::core::units::{BlockHeight, MilliSats};

const KIND_FORWARDER: u8 = crate::core::kinds::FORWARDER;
const VERSION: u8 = 1;

/// The decoded state.
pub(super) struct State {
    pub tip: BlockHeight,
    pub on_chain: [bool; 2],
    pub routes: Vec<Route>,
    pub tracked: Vec<Tracked>,
    pub secrets: Vec<(u64, OnionSecret)>,
}

fn write_terms(w: &mut Writer, t: &HtlcTerms) {
    w.u64(t.amount.to_msat()).u32(t.expiry.0);
}

fn read_terms(r: &mut Reader<'_>) -> Result<HtlcTerms, DecodeError> {
    Ok(HtlcTerms { amount: MilliSats::from_msat(r.u64()?), expiry: BlockHeight(r.u32()?) })
}

pub(super) fn encode(
    tip: BlockHeight,
    on_chain: [bool; 2],
    routes: &[Route],
    tracked: &[Tracked],
    secrets: &[(u64, OnionSecret)],
) -> Vec<u8> {
    let mut t = TlvWriter::new(KIND_FORWARDER, VERSION);
    t.record(0, |w| {
        w.u32(tip.0).bool(on_chain[0]).bool(on_chain[1]);
    })
    .record(2, |w| {
        w.bigsize(routes.len() as u64);
        for r in routes {
            w.bytes(&r.payment_hash.0);
            write_terms(w, &r.outgoing);
        }
    })
    .record(4, |w| {
        w.bigsize(tracked.len() as u64);
        for t in tracked {
            w.bytes(&t.payment_hash.0).u64(t.incoming_id);
            write_terms(w, &t.incoming);
            match &t.outgoing {
                Some(o) => {
                    w.u8(1);
                    write_terms(w, o);
                }
                None => {
                    w.u8(0);
                }
            }
            match t.state {
                ForwardState::Offered { outgoing_id } => {
                    w.u8(0).u64(outgoing_id);
                }
                ForwardState::Fulfilled { outgoing_id, preimage } => {
                    w.u8(1);
                    match outgoing_id {
                        Some(id) => w.u8(1).u64(id),
                        None => w.u8(0),
                    };
                    w.bytes(&preimage.0);
                }
                ForwardState::Failed => {
                    w.u8(2);
                }
            }
        }
    });
    // Odd: a reader without onion forwarding ignores it (and fails upstream in clear).
    if !secrets.is_empty() {
        t.record(5, |w| {
            w.bigsize(secrets.len() as u64);
            for (id, s) in secrets {
                w.u64(*id).bytes(&s.0);
            }
        });
    }
    t.finish()
}

fn read_tracked(r: &mut Reader<'_>) -> Result<Tracked, DecodeError> {
    let payment_hash = PaymentHash(r.array()?);
    let incoming_id = r.u64()?;
    let incoming = read_terms(r)?;
    let outgoing = match r.u8()? {
        0 => None,
        1 => Some(read_terms(r)?),
        _ => return Err(DecodeError::InvalidValue("outgoing")),
    };
    let state = match r.u8()? {
        0 => ForwardState::Offered { outgoing_id: r.u64()? },
        1 => {
            let outgoing_id = match r.u8()? {
                0 => None,
                1 => Some(r.u64()?),
                _ => return Err(DecodeError::InvalidValue("outgoing_id")),
            };
            let preimage = PaymentPreimage(r.array()?);
            if !payment_hash.is_unlocked_by(&preimage) {
                return Err(DecodeError::InvalidValue("preimage"));
            }
            ForwardState::Fulfilled { outgoing_id, preimage }
        }
        2 => ForwardState::Failed,
        _ => return Err(DecodeError::InvalidValue("state")),
    };
    Ok(Tracked { payment_hash, incoming_id, incoming, outgoing, state })
}

pub(super) fn decode(bytes: &[u8]) -> Result<State, DecodeError> {
    let (version, tlv) = read_header(bytes, KIND_FORWARDER)?;
    if version != VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    let mut head = None;
    let mut routes = None;
    let mut tracked = None;
    let mut secrets = Vec::new();
    tlv.for_each(|ty, r| {
        match ty {
            0 => {
                let tip = BlockHeight(r.u32()?);
                head = Some((tip, [r.bool("on_chain")?, r.bool("on_chain")?]));
            }
            2 => {
                let n = r.bigsize()?;
                let mut v = Vec::new();
                for _ in 0..n {
                    let payment_hash = PaymentHash(r.array()?);
                    v.push(Route { payment_hash, outgoing: read_terms(r)? });
                }
                routes = Some(v);
            }
            4 => {
                let n = r.bigsize()?;
                let mut v = Vec::new();
                for _ in 0..n {
                    v.push(read_tracked(r)?);
                }
                tracked = Some(v);
            }
            5 => {
                let n = r.bigsize()?;
                for _ in 0..n {
                    secrets.push((r.u64()?, OnionSecret(r.array()?)));
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let (tip, on_chain) = required(head, "tip")?;
    let tracked = required(tracked, "tracked")?;
    // A secret only for an HTLC still offered downstream.
    if secrets
        .iter()
        .any(|(id, _)| !tracked.iter().any(|t| t.incoming_id == *id && matches!(t.state, ForwardState::Offered { .. })))
    {
        return Err(DecodeError::InvalidValue("secrets"));
    }
    Ok(State { tip, on_chain, routes: required(routes, "routes")?, tracked, secrets })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let p = PaymentPreimage([3; 32]);
        let terms = |a, e| HtlcTerms { amount: MilliSats::from_msat(a), expiry: BlockHeight(e) };
        let routes = [Route { payment_hash: PaymentHash([9; 32]), outgoing: terms(5_000, 700) }];
        let tracked = [
            Tracked {
                payment_hash: p.hash(),
                incoming_id: 4,
                incoming: terms(6_000, 740),
                outgoing: Some(terms(5_000, 700)),
                state: ForwardState::Fulfilled { outgoing_id: Some(2), preimage: p },
            },
            Tracked {
                payment_hash: PaymentHash([1; 32]),
                incoming_id: 5,
                incoming: terms(1, 2),
                outgoing: None,
                state: ForwardState::Failed,
            },
            Tracked {
                payment_hash: PaymentHash([2; 32]),
                incoming_id: 6,
                incoming: terms(7_000, 800),
                outgoing: Some(terms(6_000, 760)),
                state: ForwardState::Offered { outgoing_id: 3 },
            },
        ];
        encode(BlockHeight(650), [true, false], &routes, &tracked, &[(6, OnionSecret([0x77; 32]))])
    }

    #[test]
    fn roundtrip() {
        let bytes = sample();
        let s = decode(&bytes).unwrap();
        assert_eq!(encode(s.tip, s.on_chain, &s.routes, &s.tracked, &s.secrets), bytes);
        assert_eq!(s.secrets, [(6, OnionSecret([0x77; 32]))]);
        assert_eq!(s.tracked.len(), 3);
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        let bytes = sample();
        // Only the cut that drops the whole optional (odd) record of secrets decodes.
        let s = decode(&bytes).unwrap();
        let without_secrets = encode(s.tip, s.on_chain, &s.routes, &s.tracked, &[]).len();
        for n in 0..bytes.len() {
            if n == without_secrets {
                assert!(decode(&bytes[..n]).unwrap().secrets.is_empty());
                continue;
            }
            assert!(decode(&bytes[..n]).is_err(), "truncated at {n}");
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                let _ = decode(&b);
            }
        }
        // A preimage that does not match its hash is refused.
        let mut b = bytes.clone();
        let pos = b.windows(32).position(|w| w == [3; 32]).unwrap();
        b[pos] ^= 1;
        assert_eq!(decode(&b).err(), Some(DecodeError::InvalidValue("preimage")));
    }
}
