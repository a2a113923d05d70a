//! The bumper's versioned encoding (see [`crate::core::encode`]).

use alloc::vec::Vec;

use bitcoin::{ScriptBuf, Sequence, TxOut};

use super::bumper::{Attempt, Entry, Group, WalletCoin};
use super::{BumpMethod, BumpRequest, Bumper, InputTemplate, Protects, WitnessPart};
use crate::core::encode::{read_header, required, DecodeError, Reader, TlvReader, TlvWriter, Writer};
use crate::core::keys::{PerCommitmentPoint, PerCommitmentSecret};
use crate::core::sign::{KeyId, Tweak};
use crate::core::units::BlockHeight;

const KIND: u8 = crate::core::kinds::BUMPER;
/// Version 2 adds each entry's `child_pending` flag (version 1 decodes with it unset).
const VERSION: u8 = 2;

fn protects_code(p: Protects) -> u8 {
    match p {
        Protects::Commitment => 0,
        Protects::Penalty => 1,
        Protects::HtlcClaim => 2,
        Protects::Sweep => 3,
        Protects::SpilmanClose => 4,
        Protects::SpilmanRefund => 5,
        Protects::DuplexBranch => 6,
        Protects::DuplexLeaf => 7,
        Protects::CooperativeClose => 8,
    }
}

fn protects_from(c: u8) -> Result<Protects, DecodeError> {
    Ok(match c {
        0 => Protects::Commitment,
        1 => Protects::Penalty,
        2 => Protects::HtlcClaim,
        3 => Protects::Sweep,
        4 => Protects::SpilmanClose,
        5 => Protects::SpilmanRefund,
        6 => Protects::DuplexBranch,
        7 => Protects::DuplexLeaf,
        8 => Protects::CooperativeClose,
        _ => return Err(DecodeError::InvalidValue("protects")),
    })
}

fn key_code(k: KeyId) -> u8 {
    match k {
        KeyId::Funding => 0,
        KeyId::RevocationBase => 1,
        KeyId::Payment => 2,
        KeyId::DelayedPayment => 3,
        KeyId::Htlc => 4,
    }
}

fn key_from(c: u8) -> Result<KeyId, DecodeError> {
    Ok(match c {
        0 => KeyId::Funding,
        1 => KeyId::RevocationBase,
        2 => KeyId::Payment,
        3 => KeyId::DelayedPayment,
        4 => KeyId::Htlc,
        _ => return Err(DecodeError::InvalidValue("key id")),
    })
}

fn write_txout(w: &mut Writer, o: &TxOut) {
    w.amount(o.value).script(&o.script_pubkey);
}

fn read_txout(r: &mut Reader<'_>) -> Result<TxOut, DecodeError> {
    Ok(TxOut { value: r.amount("txout value")?, script_pubkey: r.script()? })
}

fn write_template(w: &mut Writer, t: &InputTemplate) {
    w.outpoint(&t.outpoint).amount(t.value).script(&t.script_code).bool(t.p2wpkh).u32(t.sequence.0);
    match t.key {
        None => {
            w.u8(0);
        }
        Some((k, Tweak::None)) => {
            w.u8(1).u8(key_code(k));
        }
        Some((k, Tweak::PerCommitment(p))) => {
            w.u8(2).u8(key_code(k)).pubkey(p.public_key());
        }
        Some((k, Tweak::Revocation(s))) => {
            w.u8(3).u8(key_code(k)).bytes(s.as_bytes());
        }
    }
    w.u16(t.witness.len() as u16);
    for part in &t.witness {
        match part {
            WitnessPart::Signature => {
                w.u8(0);
            }
            WitnessPart::Bytes(b) => {
                w.u8(1).var_bytes(b);
            }
            WitnessPart::WitnessScript => {
                w.u8(2);
            }
            WitnessPart::Wallet(size) => {
                w.u8(3).u64(*size);
            }
        }
    }
    match &t.paired_output {
        None => {
            w.u8(0);
        }
        Some(o) => {
            w.u8(1);
            write_txout(w, o);
        }
    }
}

fn read_template(r: &mut Reader<'_>) -> Result<InputTemplate, DecodeError> {
    let outpoint = r.outpoint()?;
    let value = r.amount("template value")?;
    let script_code = r.script()?;
    let p2wpkh = r.bool("p2wpkh")?;
    let sequence = Sequence(r.u32()?);
    let key = match r.u8()? {
        0 => None,
        1 => Some((key_from(r.u8()?)?, Tweak::None)),
        2 => {
            let k = key_from(r.u8()?)?;
            Some((k, Tweak::PerCommitment(PerCommitmentPoint::from_public_key(r.pubkey("per-commitment point")?))))
        }
        3 => {
            let k = key_from(r.u8()?)?;
            Some((k, Tweak::Revocation(PerCommitmentSecret::from_bytes(r.array::<32>()?))))
        }
        _ => return Err(DecodeError::InvalidValue("template key")),
    };
    let n = r.u16()?;
    let mut witness = Vec::new();
    for _ in 0..n {
        witness.push(match r.u8()? {
            0 => WitnessPart::Signature,
            1 => WitnessPart::Bytes(r.var_bytes()?.to_vec()),
            2 => WitnessPart::WitnessScript,
            3 => WitnessPart::Wallet(r.u64()?),
            _ => return Err(DecodeError::InvalidValue("witness part")),
        });
    }
    let paired_output = match r.u8()? {
        0 => None,
        1 => Some(read_txout(r)?),
        _ => return Err(DecodeError::InvalidValue("paired output")),
    };
    Ok(InputTemplate { outpoint, value, script_code, p2wpkh, sequence, key, witness, paired_output })
}

fn write_templates(w: &mut Writer, ts: &[InputTemplate]) {
    w.u16(ts.len() as u16);
    for t in ts {
        write_template(w, t);
    }
}

fn read_templates(r: &mut Reader<'_>) -> Result<Vec<InputTemplate>, DecodeError> {
    let n = r.u16()?;
    (0..n).map(|_| read_template(r)).collect()
}

fn write_attempt(w: &mut Writer, a: &Option<Attempt>) {
    match a {
        None => {
            w.u8(0);
        }
        Some(a) => {
            w.u8(1).transaction(&a.tx).amount(a.fee).u64(a.weight);
        }
    }
}

fn read_attempt(r: &mut Reader<'_>) -> Result<Option<Attempt>, DecodeError> {
    Ok(match r.u8()? {
        0 => None,
        1 => Some(Attempt { tx: r.transaction("attempt")?, fee: r.amount("attempt fee")?, weight: r.u64()? }),
        _ => return Err(DecodeError::InvalidValue("attempt")),
    })
}

fn write_coins(w: &mut Writer, coins: &[WalletCoin], change: &Option<ScriptBuf>) {
    w.u16(coins.len() as u16);
    for c in coins {
        w.outpoint(&c.outpoint);
        write_txout(w, &c.txout);
        w.u64(c.witness_weight);
    }
    match change {
        None => {
            w.u8(0);
        }
        Some(s) => {
            w.u8(1).script(s);
        }
    }
}

fn read_coins(r: &mut Reader<'_>) -> Result<(Vec<WalletCoin>, Option<ScriptBuf>), DecodeError> {
    let n = r.u16()?;
    let mut coins = Vec::new();
    for _ in 0..n {
        coins.push(WalletCoin { outpoint: r.outpoint()?, txout: read_txout(r)?, witness_weight: r.u64()? });
    }
    let change = match r.u8()? {
        0 => None,
        1 => Some(r.script()?),
        _ => return Err(DecodeError::InvalidValue("change")),
    };
    Ok((coins, change))
}

fn write_entry(w: &mut Writer, e: &Entry) {
    let q = &e.request;
    w.transaction(&q.tx).u32(q.deadline.0).amount(q.at_stake).u8(protects_code(q.protects));
    match &q.method {
        BumpMethod::Replace { inputs, destination, lock_time } => {
            w.u8(0);
            write_templates(w, inputs);
            w.script(destination).u32(*lock_time);
        }
        BumpMethod::Child { anchor, parent_fee } => {
            w.u8(1);
            write_template(w, anchor);
            w.amount(*parent_fee);
        }
        BumpMethod::AddInputs { inputs, lock_time } => {
            w.u8(2);
            write_templates(w, inputs);
            w.u32(*lock_time);
        }
    }
    write_attempt(w, &e.attempt);
    write_coins(w, &e.coins, &e.change);
    match e.resolved {
        None => {
            w.u8(0);
        }
        Some((by, h)) => {
            w.u8(1).txid(&by).u32(h.0);
        }
    }
    w.bool(e.missed);
    w.bool(e.child_pending);
}

fn read_entry(r: &mut Reader<'_>, version: u8) -> Result<Entry, DecodeError> {
    let tx = r.transaction("request tx")?;
    let deadline = BlockHeight(r.u32()?);
    let at_stake = r.amount("at stake")?;
    let protects = protects_from(r.u8()?)?;
    let method = match r.u8()? {
        0 => BumpMethod::Replace { inputs: read_templates(r)?, destination: r.script()?, lock_time: r.u32()? },
        1 => BumpMethod::Child { anchor: read_template(r)?, parent_fee: r.amount("parent fee")? },
        2 => BumpMethod::AddInputs { inputs: read_templates(r)?, lock_time: r.u32()? },
        _ => return Err(DecodeError::InvalidValue("bump method")),
    };
    let attempt = read_attempt(r)?;
    let (coins, change) = read_coins(r)?;
    let resolved = match r.u8()? {
        0 => None,
        1 => Some((r.txid()?, BlockHeight(r.u32()?))),
        _ => return Err(DecodeError::InvalidValue("resolved")),
    };
    let missed = r.bool("missed")?;
    let child_pending = if version >= 2 { r.bool("child pending")? } else { false };
    Ok(Entry {
        request: BumpRequest { tx, deadline, at_stake, protects, method },
        attempt,
        coins,
        change,
        resolved,
        missed,
        child_pending,
    })
}

impl Bumper {
    /// The bumper's versioned encoding (what [`Bumper::bump`] and friends return as a snapshot).
    pub fn encode(&self) -> Vec<u8> {
        let mut t = TlvWriter::new(KIND, VERSION);
        t.record(0, |w| {
            w.u64(self.update_id);
        });
        t.record(2, |w| {
            w.u32(self.entries.len() as u32);
            for e in &self.entries {
                write_entry(w, e);
            }
        });
        t.record(4, |w| {
            w.u32(self.groups.len() as u32);
            for g in &self.groups {
                w.u32(g.lock_time).u32(g.members.len() as u32);
                for m in &g.members {
                    w.txid(m);
                }
                write_attempt(w, &g.attempt);
                write_coins(w, &g.coins, &g.change);
            }
        });
        t.finish()
    }

    /// Restores a bumper from [`Bumper::encode`]'s bytes.
    ///
    /// # Errors
    /// [`DecodeError`] for anything that is not such an encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        // Bumpers written before the kind registry carry its legacy byte.
        let kind = if bytes.first() == Some(&crate::core::kinds::BUMPER_LEGACY) {
            crate::core::kinds::BUMPER_LEGACY
        } else {
            KIND
        };
        let (version, records) = read_header(bytes, kind)?;
        if !(1..=VERSION).contains(&version) {
            return Err(DecodeError::UnknownVersion(version));
        }
        let mut update_id = None;
        let mut entries = None;
        let mut groups = None;
        TlvReader::for_each(records, |ty, r| {
            match ty {
                0 => update_id = Some(r.u64()?),
                2 => {
                    let n = r.u32()?;
                    let mut v = Vec::new();
                    for _ in 0..n {
                        v.push(read_entry(r, version)?);
                    }
                    entries = Some(v);
                }
                4 => {
                    let n = r.u32()?;
                    let mut v = Vec::new();
                    for _ in 0..n {
                        let lock_time = r.u32()?;
                        let m = r.u32()?;
                        let mut members = Vec::new();
                        for _ in 0..m {
                            members.push(r.txid()?);
                        }
                        let attempt = read_attempt(r)?;
                        let (coins, change) = read_coins(r)?;
                        v.push(Group { lock_time, members, attempt, coins, change });
                    }
                    groups = Some(v);
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Bumper {
            update_id: required(update_id, "update id")?,
            entries: required(entries, "entries")?,
            groups: required(groups, "groups")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_roundtrip_and_refusals() {
        let b = Bumper::new();
        let bytes = b.encode();
        assert_eq!(Bumper::decode(&bytes), Ok(b));
        for cut in 0..bytes.len() {
            assert!(Bumper::decode(&bytes[..cut]).is_err());
        }
        let mut wrong = bytes.clone();
        wrong[1] = 9;
        assert_eq!(Bumper::decode(&wrong), Err(DecodeError::UnknownVersion(9)));
    }

    /// Version 1 (before `child_pending`) still decodes, with the flag unset.
    #[test]
    fn a_version_1_bumper_decodes_without_the_child_pending_flag() {
        use bitcoin::absolute::LockTime;
        use bitcoin::transaction::Version;
        use bitcoin::{Amount, OutPoint, Transaction};
        let tx =
            Transaction { version: Version::TWO, lock_time: LockTime::ZERO, input: Vec::new(), output: Vec::new() };
        let entry = Entry {
            request: BumpRequest {
                tx,
                deadline: BlockHeight(10),
                at_stake: Amount::from_sat(1_000),
                protects: Protects::Commitment,
                method: BumpMethod::Child {
                    anchor: InputTemplate::pay_to_anchor(OutPoint::null(), Amount::ZERO),
                    parent_fee: Amount::from_sat(5),
                },
            },
            attempt: None,
            coins: Vec::new(),
            change: None,
            resolved: Some((bitcoin::Txid::from_raw_hash(bitcoin::hashes::Hash::all_zeros()), BlockHeight(9))),
            missed: false,
            child_pending: false,
        };
        let b = Bumper { update_id: 3, entries: alloc::vec![entry.clone()], groups: Vec::new() };
        // Version 1 wrote each entry without the trailing flag.
        let mut w = Writer::new();
        write_entry(&mut w, &entry);
        let mut v1_entry = w.into_bytes();
        assert_eq!(v1_entry.pop(), Some(0));
        let mut t = TlvWriter::new(KIND, 1);
        t.record(0, |w| {
            w.u64(3);
        });
        t.record(2, |w| {
            w.u32(1).bytes(&v1_entry);
        });
        t.record(4, |w| {
            w.u32(0);
        });
        assert_eq!(Bumper::decode(&t.finish()), Ok(b.clone()));
        // The current version keeps the flag.
        let mut pending = b;
        pending.entries[0].child_pending = true;
        assert_eq!(Bumper::decode(&pending.encode()), Ok(pending));
    }

    #[test]
    fn a_bumper_written_with_the_legacy_kind_byte_still_decodes() {
        let b = Bumper::new();
        let mut bytes = b.encode();
        assert_eq!(bytes[0], crate::core::kinds::BUMPER);
        bytes[0] = crate::core::kinds::BUMPER_LEGACY;
        assert_eq!(Bumper::decode(&bytes), Ok(b));
        bytes[0] = crate::core::kinds::ONION_RECORD;
        assert!(matches!(Bumper::decode(&bytes), Err(DecodeError::WrongKind { .. })));
    }
}
