#!/bin/sh
# Instruction-count ratios of the Lightning benchmarks (see benches/perf-channels.md).
# Usage: benches/count_ratios.sh OUT_DIR   (builds benches/lightning_count.rs, runs it under
# callgrind once per part, prints the ratios). Needs valgrind; deterministic up to the
# randomised secp256k1 contexts (a few hundred instructions). PARTS="floor commit0" re-runs
# only those parts (the others' trees in OUT_DIR are reused).
set -eu
out=${1:?out dir}
mkdir -p "$out"
cargo bench --bench lightning_count --no-run >/dev/null 2>&1
bin=$(ls -t "${CARGO_TARGET_DIR:-target}"/release/deps/lightning_count-* | grep -v '\.d$' | head -1)
for part in ${PARTS:-floor lifecycle commit100 commit1 commit0 core483}; do
    valgrind --tool=callgrind --callgrind-out-file="$out/cg.$part" "$bin" "$part" >/dev/null 2>&1
    callgrind_annotate --inclusive=yes --tree=caller --threshold=100 "$out/cg.$part" >"$out/tree.$part" 2>/dev/null
done
"$bin" bytes
"$bin" blocks483 >"$out/blocks483"
python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
def incl(part, pattern, caller=None):
    """Inclusive Ir of the function matching `pattern` (its `*` line), or of its calls from `caller`."""
    text = open(f"{out}/tree.{part}").read()
    total = 0
    for block in text.split("\n\n"):
        lines = block.strip().splitlines()
        star = [l for l in lines if re.match(r"\s*[\d,]+ \([\s\d.]+%\)\s+\*", l)]
        if not star or not re.search(pattern, star[0]):
            continue
        if caller is None:
            return int(star[0].split()[0].replace(",", ""))
        for l in lines:
            if re.match(r"\s*[\d,]+ \([\s\d.]+%\)\s+<", l) and re.search(caller, l):
                total += int(l.split()[0].replace(",", ""))
        return total
    return total
N = 50
sign = incl("floor", r"lightning_count::floor_sign \[") / N
verify = incl("floor", r"lightning_count::floor_verify \[") / N
life = incl("lifecycle", r"lightning_count::measured_lifecycle \[") / 3
a = incl("commit100", r"lightning_count::measured_commit_a \[") / 3
b = incl("commit100", r"lightning_count::measured_commit_b \[") / 3
resign = incl("commit100", r"sign_next_counterparty \[", r"Channel::handle_message|on_commitment_signed") / 3
a1 = incl("commit1", r"lightning_count::measured_commit_a \[") / 3
b1 = incl("commit1", r"lightning_count::measured_commit_b \[") / 3
resign1 = incl("commit1", r"sign_next_counterparty \[", r"Channel::handle_message|on_commitment_signed") / 3
keys = incl("floor", r"lightning_count::floor_key_set \[") / N
point = incl("floor", r"lightning_count::floor_point \[") / N
sighash = incl("floor", r"lightning_count::floor_sighash \[") / N
sv = sign + verify
print(f"floor: sign {sign:,.0f} Ir, verify {verify:,.0f} Ir, key set {keys:,.0f} Ir, point {point:,.0f} Ir, sighash {sighash:,.0f} Ir")
print(f"commit_100_htlcs: A commit {a:,.0f}, B receive {b:,.0f} (of which counter-signature {resign:,.0f})")
print(f"  per HTLC, all of it, against sign+verify: {(a + b) / 100 / sv:.3f}")
print(f"  per HTLC, without B's counter-signature, against sign+verify: {(a + b - resign) / 100 / sv:.3f}")
print(f"  against 101 x (sign+verify) (commitment signature too): {(a + b - resign) / 101 / sv:.3f}")
print(f"  all of it against 202 sign + 101 verify: {(a + b) / (202 * sign + 101 * verify):.3f}")
marginal = ((a + b - resign) - (a1 + b1 - resign1)) / 99
print(f"commit_1_htlc: A commit {a1:,.0f}, B receive {b1:,.0f} (of which counter-signature {resign1:,.0f})")
print(f"  marginal per HTLC ((100 HTLCs - 1 HTLC) / 99), without B's counter-signature, against sign+verify: {marginal / sv:.3f}")
life_floor = 6 * sv + 8 * keys + 8 * point + 12 * sighash
print(f"htlc_lifecycle: {life:,.0f} Ir = {life / life_floor:.3f} x its floor (6 sign + 6 verify + 8 key sets + 8 points + 12 sighashes)")
keys_raw = incl("floor", r"lightning_count::floor_key_set_raw \[") / N
block = incl("floor", r"lightning_count::floor_sha256_1k \[") / N / 17
print(f"floor: key set from the raw add_exp_tweak formulas {keys_raw:,.0f} Ir (CommitmentKeys::derive: {keys / keys_raw:.3f} of it), SHA-256 block {block:,.0f} Ir")
life_raw = 6 * sv + 8 * keys_raw + 8 * point + 12 * sighash
print(f"  htlc_lifecycle against the same floor with raw key sets: {life / life_raw:.3f}")
a0 = incl("commit0", r"lightning_count::measured_commit_a \[") / 3
b0 = incl("commit0", r"lightning_count::measured_commit_b \[") / 3
resign0 = incl("commit0", r"sign_next_counterparty \[", r"Channel::handle_message|on_commitment_signed") / 3
fa0 = keys_raw + sign + sighash
fb0 = keys_raw + verify + sighash + point
print(f"commit_0_htlcs: A commit {a0:,.0f} = {a0 / fa0:.3f} x (raw key set + sign + sighash)")
print(f"  B receive without its counter-signature {b0 - resign0:,.0f} = {(b0 - resign0) / fb0:.3f} x (raw key set + verify + sighash + point); counter-signature {resign0:,.0f} = {resign0 / fa0:.3f} x A's floor")
build = incl("core483", r"lightning_count::measured_build \[") / 3
signs = incl("core483", r"lightning_count::measured_sign \[") / 2
htlc_txs = incl("core483", r"lightning_count::measured_htlc_txs \[") / 3
blocks = int(open(f"{out}/blocks483").read().split()[1])
print(f"core 483 HTLCs: build_commitment {build:,.0f} Ir = {build / (blocks * block):.3f} x its hashing floor ({blocks} SHA-256 blocks)")
print(f"  htlc_txs (483 HTLC transactions) {htlc_txs:,.0f} Ir = {htlc_txs / 483:,.0f} per HTLC transaction")
print(f"  sign_counterparty_commitment {signs:,.0f} Ir = {signs / (484 * (sign + sighash)):.4f} x 484 (sign + sighash), {signs / (484 * sign):.4f} x 484 sign")
PY
