//! The first byte of every object in the crate's own encoding ([`crate::core::encode`]): one
//! registry, so that no two kinds of object share a byte and a stored or received object can never
//! be read as another kind.
//!
//! Messages of the Spilman and duplex layers have their own ranges (`0x51..=0x5b` and
//! `0x60..=0x6d`); the values here are the stored objects. Two bytes were once shared and are
//! still accepted when decoding: the watchtower kit was written as `0x4e` (also the onion record)
//! and the bumper as `0x62` (also the duplex `funding_created` message).
//!
//! ```
//! use paychan::core::kinds;
//! assert_ne!(kinds::PENALTY_KIT, kinds::ONION_RECORD);
//! ```

/// A record of an applied change ([`crate::core::delta`]).
pub const DELTA: u8 = 0x44;
/// The watchtower kit of the trusted tower option (`lightning::penalty::PenaltyKit`).
pub const PENALTY_KIT: u8 = 0x4b;
/// The watchtower kit's byte before it had its own.
pub const PENALTY_KIT_LEGACY: u8 = 0x4e;
/// A Lightning channel snapshot.
pub const LIGHTNING_CHANNEL: u8 = 0x4c;
/// A Lightning penalty record.
pub const PENALTY_RECORD: u8 = 0x4d;
/// A Lightning onion record.
pub const ONION_RECORD: u8 = 0x4e;
/// A Spilman payee snapshot.
pub const SPILMAN_PAYEE: u8 = 0x4f;
/// A Spilman payer snapshot.
pub const SPILMAN_PAYER: u8 = 0x50;
/// A duplex channel snapshot.
pub const DUPLEX_CHANNEL: u8 = 0x5f;
/// A multi-hop forwarder snapshot.
pub const FORWARDER: u8 = 0x70;
/// A watchtower appointment.
pub const APPOINTMENT: u8 = 0x74;
/// The sealed content of an appointment.
pub const APPOINTMENT_BLOB: u8 = 0x75;
/// A watchtower's state.
pub const TOWER: u8 = 0x76;
/// A duplex tower package.
pub const DUPLEX_TOWER_PACKAGE: u8 = 0x77;
/// A fee bumper's state.
pub const BUMPER: u8 = 0x7a;
/// The fee bumper's byte before it had its own.
pub const BUMPER_LEGACY: u8 = 0x62;

/// The ranges of the layers' message kinds.
pub const MESSAGE_RANGES: [core::ops::RangeInclusive<u8>; 2] = [0x51..=0x5b, 0x60..=0x6d];

/// Every current object kind (legacy bytes excluded).
pub const ALL: [u8; 14] = [
    DELTA,
    PENALTY_KIT,
    LIGHTNING_CHANNEL,
    PENALTY_RECORD,
    ONION_RECORD,
    SPILMAN_PAYEE,
    SPILMAN_PAYER,
    DUPLEX_CHANNEL,
    FORWARDER,
    APPOINTMENT,
    APPOINTMENT_BLOB,
    TOWER,
    DUPLEX_TOWER_PACKAGE,
    BUMPER,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_byte_outside_the_message_ranges() {
        for (i, a) in ALL.iter().enumerate() {
            for b in &ALL[i + 1..] {
                assert_ne!(a, b, "two kinds share {a:#x}");
            }
            assert!(MESSAGE_RANGES.iter().all(|r| !r.contains(a)), "{a:#x} is a message kind");
        }
    }
}
