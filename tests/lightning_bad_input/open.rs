//! `open_channel`, `accept_channel`, `funding_created` and `funding_signed` with bad parameters or
//! signatures.

use super::*;

fn other_type(ct: ChannelType) -> ChannelType {
    match ct {
        ChannelType::StaticRemoteKey => ChannelType::AnchorsZeroFeeHtlc,
        _ => ChannelType::StaticRemoteKey,
    }
}

fn base_open(ct: ChannelType) -> OpenChannel {
    let params = OpenParams {
        config: config(ct),
        temporary_channel_id: ChannelId([7; 32]),
        funding: Amount::from_sat(CAPACITY),
        push: MilliSats::from_msat(PUSH),
        feerate_per_kw: 2_500,
    };
    let (_, fx) = Channel::open(params, &signer_a(), ChainTip::at(TIP)).unwrap();
    let Some(Msg::OpenChannel(open)) = fx.send.into_iter().next() else { panic!("open_channel") };
    *open
}

#[track_caller]
fn refuse_open(ct: ChannelType, change: impl FnOnce(&mut OpenChannel), kind: Misbehaviour) {
    let mut open = base_open(ct);
    change(&mut open);
    let got = Channel::accept(&open, config(ct), &signer_b(), ChainTip::at(TIP)).map(|_| ());
    assert_eq!(got, Err(OpenError(kind)), "{open:?}");
}

#[test]
fn open_channel_with_bad_parameters_is_refused() {
    for ct in TYPES {
        let other_bits = base_open(other_type(ct)).tlvs.channel_type;
        assert!(Channel::accept(&base_open(ct), config(ct), &signer_b(), ChainTip::at(TIP)).is_ok());
        use Misbehaviour::*;
        refuse_open(ct, |o| o.chain_hash = [0; 32], BadParameters);
        refuse_open(ct, |o| o.tlvs.channel_type = None, ChannelType);
        refuse_open(ct, |o| o.tlvs.channel_type = other_bits, ChannelType);
        refuse_open(ct, |o| o.tlvs.channel_type = Some(vec![]), ChannelType);
        refuse_open(ct, |o| o.tlvs.channel_type = Some(vec![0xff, 0xff, 0xff]), ChannelType);
        refuse_open(ct, |o| o.feerate_per_kw = 252, Feerate);
        refuse_open(ct, |o| o.feerate_per_kw = 100_001, Feerate);
        refuse_open(ct, |o| o.feerate_per_kw = 0, Feerate);
        refuse_open(ct, |o| o.to_self_delay = 2_017, BadParameters);
        refuse_open(ct, |o| o.to_self_delay = u16::MAX, BadParameters);
        refuse_open(ct, |o| o.max_accepted_htlcs = 484, BadParameters);
        refuse_open(ct, |o| o.max_accepted_htlcs = 0, BadParameters);
        refuse_open(ct, |o| o.dust_limit_satoshis = Amount::from_sat(353), BadParameters);
        refuse_open(ct, |o| o.channel_reserve_satoshis = Amount::from_sat(CAPACITY + 1), BadParameters);
        // The reserve the opener asks of us is below our dust limit.
        refuse_open(ct, |o| o.channel_reserve_satoshis = Amount::from_sat(353), BadParameters);
        refuse_open(ct, |o| o.funding_satoshis = Amount::ZERO, BadParameters);
        refuse_open(ct, |o| o.push_msat = MilliSats::from_msat(CAPACITY * 1_000 + 1), BadParameters);
        // The opener keeps 1,000 sat: not enough for the first commitment's fee at 2,500 sat/kw.
        refuse_open(ct, |o| o.push_msat = MilliSats::from_msat(CAPACITY * 1_000 - 1_000_000), CannotAfford);
        refuse_open(
            ct,
            |o| {
                o.funding_satoshis = Amount::from_sat(100_000);
                o.push_msat = MilliSats::from_msat(99_000_000);
            },
            CannotAfford,
        );
    }
}

#[test]
fn dust_limit_above_the_acceptors_reserve_is_refused() {
    for ct in TYPES {
        // open_channel: the opener's dust limit above the reserve it asks of us.
        refuse_open(
            ct,
            |o| {
                o.dust_limit_satoshis = Amount::from_sat(5_000);
                o.channel_reserve_satoshis = Amount::from_sat(1_000);
            },
            Misbehaviour::BadParameters,
        );
        // accept_channel: the acceptor's dust limit above the reserve our open_channel asked of it.
        let mut log = Vec::new();
        open_logged(config(ct), config(ct), CAPACITY, PUSH, &mut log);
        let d = logged(&log, types::ACCEPT_CHANNEL);
        let Msg::AcceptChannel(mut m) = d.msg.clone() else { unreachable!() };
        m.dust_limit_satoshis = Amount::from_sat(5_000);
        refuse(&d.receiver.clone().unwrap(), &signer_a(), Msg::AcceptChannel(m), Misbehaviour::BadParameters);
    }
}

#[test]
fn accept_channel_dust_limit_above_our_reserve_is_refused() {
    for ct in TYPES {
        let mut log = Vec::new();
        open_logged(config(ct), config(ct), CAPACITY, PUSH, &mut log);
        let d = logged(&log, types::ACCEPT_CHANNEL);
        let Msg::AcceptChannel(mut m) = d.msg.clone() else { unreachable!() };
        // Our open_channel asked the acceptor to keep 1,000 sat.
        m.dust_limit_satoshis = Amount::from_sat(5_000);
        m.channel_reserve_satoshis = Amount::from_sat(6_000);
        refuse(&d.receiver.clone().unwrap(), &signer_a(), Msg::AcceptChannel(m), Misbehaviour::BadParameters);
    }
}

/// One change to an `accept_channel`.
type AcceptChange = Box<dyn Fn(&mut paychan::lightning::msgs::AcceptChannel)>;

#[test]
fn accept_channel_with_bad_parameters_is_refused() {
    for ct in TYPES {
        let mut log = Vec::new();
        open_logged(config(ct), config(ct), CAPACITY, PUSH, &mut log);
        let d = logged(&log, types::ACCEPT_CHANNEL);
        let Msg::AcceptChannel(base) = d.msg.clone() else { unreachable!() };
        let other_bits = base_open(other_type(ct)).tlvs.channel_type;
        use Misbehaviour::*;
        let cases: Vec<(AcceptChange, Misbehaviour)> = vec![
            (Box::new(|m| m.temporary_channel_id = OTHER_ID), WrongChannel),
            (Box::new(|m| m.tlvs.channel_type = None), ChannelType),
            (Box::new(move |m| m.tlvs.channel_type = other_bits.clone()), ChannelType),
            (Box::new(|m| m.dust_limit_satoshis = Amount::from_sat(353)), BadParameters),
            (Box::new(|m| m.to_self_delay = 2_017), BadParameters),
            (Box::new(|m| m.max_accepted_htlcs = 484), BadParameters),
            (Box::new(|m| m.max_accepted_htlcs = 0), BadParameters),
            (Box::new(|m| m.channel_reserve_satoshis = Amount::from_sat(CAPACITY + 1)), BadParameters),
            (Box::new(|m| m.channel_reserve_satoshis = Amount::from_sat(353)), BadParameters),
            (Box::new(|m| m.minimum_depth = 1_009), BadParameters),
        ];
        for (change, kind) in cases {
            let mut m = base.clone();
            change(&mut m);
            refuse(&d.receiver.clone().unwrap(), &signer_a(), Msg::AcceptChannel(m), kind);
        }
    }
}

#[test]
fn funding_messages_with_invalid_signatures_are_refused() {
    for ct in TYPES {
        let mut log = Vec::new();
        open_logged(config(ct), config(ct), CAPACITY, PUSH, &mut log);
        let created = logged(&log, types::FUNDING_CREATED);
        let signed = logged(&log, types::FUNDING_SIGNED);
        let Msg::FundingCreated { temporary_channel_id, funding_txid, funding_output_index, signature: sig_c } =
            created.msg
        else {
            unreachable!()
        };
        let Msg::FundingSigned { channel_id, signature: sig_s } = signed.msg else { unreachable!() };
        let fc = |signature, funding_output_index| Msg::FundingCreated {
            temporary_channel_id,
            funding_txid,
            funding_output_index,
            signature,
        };
        let mut b = created.receiver.clone().unwrap();
        for sig in [sig_s, junk_sig(4), high_s(&sig_c)] {
            refuse(&b, &signer_b(), fc(sig, funding_output_index), Misbehaviour::BadFundingSignature);
        }
        // The signature is over the outpoint: another output index invalidates it.
        refuse(&b, &signer_b(), fc(sig_c, funding_output_index + 1), Misbehaviour::BadFundingSignature);
        let fx = b.handle_message(fc(sig_c, funding_output_index), &signer_b(), tip()).expect("genuine");
        assert!(fx.broadcast.is_empty());
        let mut a = signed.receiver.clone().unwrap();
        for sig in [sig_c, junk_sig(5), high_s(&sig_s)] {
            refuse(
                &a,
                &signer_a(),
                Msg::FundingSigned { channel_id, signature: sig },
                Misbehaviour::BadFundingSignature,
            );
        }
        refuse(
            &a,
            &signer_a(),
            Msg::FundingSigned { channel_id: OTHER_ID, signature: sig_s },
            Misbehaviour::WrongChannel,
        );
        let fx =
            a.handle_message(Msg::FundingSigned { channel_id, signature: sig_s }, &signer_a(), tip()).expect("genuine");
        assert_eq!(fx.broadcast.len(), 1, "the funding is broadcast only now");
    }
}
