#!/usr/bin/env python3
"""Native-profile ratio of `lightning/commit_100_htlcs` (see benches/perf-channels.md).

Usage:
    B=$(ls $CARGO_TARGET_DIR/release/deps/lightning-* | grep -v '\\.d$')
    perf record -e cpu-clock -F 997 --call-graph dwarf,32768 -o c100.data \\
        $B --bench --profile-time 15 'lightning/commit_100_htlcs'
    perf script -i c100.data -F tid,ip,sym | python3 benches/profile_ratio.py 100
    # likewise 'lightning/commit_1_htlc' | python3 benches/profile_ratio.py 1

A sample is in the operation if its stack holds the benchmark routine's closure (the batched
set-up, `Pair::clone`, is not); it is floor if it holds libsecp256k1's `ecdsa_sign` or
`ecdsa_verify`. The per-HTLC floor is sign/202 + verify/101 samples (the operation makes 202
signatures and 101 verifications); B's counter-signature (`sign_next_counterparty` called from
`on_commitment_signed`) is reported apart and left out of the per-HTLC ratio, as in
`count_ratios.sh`.

R = time in the operation (without the counter-signature) / time in its own N + 1 signatures and
N + 1 verifications. Per HTLC, against sign + verify, that is R (N + 1) / N. Both benchmarks'
R share the same primitives, so the marginal cost of one more HTLC, against sign + verify, is
(101 R_100 - 2 R_1) / 99, whatever the machine's speed during each profile.
"""
import re
import sys


def samples(stream):
    block = []
    for line in stream:
        if line.strip():
            block.append(line)
        elif block:
            yield block
            block = []
    if block:
        yield block


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    op = sign = verify = resign = resign_sign = 0
    parts = {}
    for block in samples(sys.stdin):
        frames = [l.strip() for l in block[1:]]
        text = "\n".join(frames)
        if "lightning::channel::{{closure}}::{{closure}}" not in text or "as core::clone::Clone>::clone" in text and "Pair" in text:
            continue
        op += 1
        is_sign = "ecdsa_sign" in text and "secp256k1" in text
        is_verify = "ecdsa_verify" in text and "secp256k1" in text
        sign += is_sign
        verify += is_verify
        # Counter-signature: sign_next_counterparty with on_commitment_signed further up.
        idx = [i for i, f in enumerate(frames) if "sign_next_counterparty" in f]
        if idx and any("on_commitment_signed" in f for f in frames[idx[0] + 1 :]):
            resign += 1
            resign_sign += is_sign
        if not (is_sign or is_verify):
            leaf = re.sub(r"^[0-9a-f]+\s+", "", frames[0]) if frames else "?"
            leaf = re.sub(r"\+0x[0-9a-f]+.*$", "", leaf)
            parts[leaf] = parts.get(leaf, 0) + 1
    own = (sign - resign_sign) + verify
    print(f"samples: operation {op}, sign {sign}, verify {verify}, counter-signature {resign}")
    if own:
        r = (op - resign) / own
        print(f"R (without B's counter-signature, / its own {n + 1} sign + {n + 1} verify): {r:.4f}")
        print(f"per HTLC, without B's counter-signature, / (sign + verify): {r * (n + 1) / n:.3f}")
        print(f"all of it / (its sign + verify): {op / (sign + verify):.3f}")
    print("top non-floor leaf functions (% of the operation):")
    for name, n in sorted(parts.items(), key=lambda kv: -kv[1])[:25]:
        print(f"  {100 * n / op:5.2f}  {name[:110]}")


if __name__ == "__main__":
    main()
