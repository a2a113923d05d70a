//! Every Spilman and duplex message with random field values (the crate's own proptest
//! strategies, feature `proptest`) encodes and decodes to itself, an unknown odd record after it
//! changes nothing, and hostile variants of the encodings never panic the decoders. (Lightning's
//! messages have the same property in `lightning_wire`.)

use paychan::testing::strategies::{duplex as dx, spilman as sp};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn every_spilman_message_round_trips(m in sp::any_msg()) {
        let bytes = m.encode();
        prop_assert_eq!(paychan::spilman::Msg::decode(&bytes), Ok(m.clone()));
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0xfd, 0x03, 0x01, 0x02, 0xca, 0xfe]);
        prop_assert_eq!(paychan::spilman::Msg::decode(&longer), Ok(m));
    }

    #[test]
    fn hostile_spilman_encodings_are_typed_errors_or_messages(bytes in sp::hostile_bytes()) {
        if let Ok(m) = paychan::spilman::Msg::decode(&bytes) {
            // Whatever decodes is a message that encodes back to an equivalent one.
            prop_assert_eq!(paychan::spilman::Msg::decode(&m.encode()), Ok(m));
        }
    }

    #[test]
    fn every_duplex_message_round_trips(m in dx::any_msg()) {
        let bytes = m.encode();
        prop_assert_eq!(paychan::duplex::Msg::decode(&bytes), Ok(m.clone()));
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0xfd, 0x03, 0x01, 0x02, 0xca, 0xfe]);
        prop_assert_eq!(paychan::duplex::Msg::decode(&longer), Ok(m));
    }

    #[test]
    fn hostile_duplex_encodings_are_typed_errors_or_messages(bytes in dx::hostile_bytes()) {
        if let Ok(m) = paychan::duplex::Msg::decode(&bytes) {
            prop_assert_eq!(paychan::duplex::Msg::decode(&m.encode()), Ok(m));
        }
    }
}
