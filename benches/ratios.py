#!/usr/bin/env python3
"""Ratios of the `core` benchmarks to the `floor` primitives they are built from.

Usage: python3 benches/ratios.py BENCH_LOG CRITERION_DIR [CRITERION_DIR ...]

BENCH_LOG is the output of `cargo bench --bench core 2>&1` (for the `work:` lines it prints);
each CRITERION_DIR is a copy of `target/criterion` from one run. For every benchmark the
smallest point estimate over the runs is used (the least disturbed run on a noisy machine).
Prints a markdown table.
"""
import json
import pathlib
import re
import sys


def load(dirs):
    best = {}
    for d in dirs:
        for est in pathlib.Path(d).glob("*/**/new/estimates.json"):
            bench = json.loads((est.parent / "benchmark.json").read_text())
            e = json.loads(est.read_text())
            ns = (e.get("slope") or e["mean"])["point_estimate"]
            name = bench["full_id"]
            best[name] = min(ns, best.get(name, float("inf")))
    return best


def fmt_time(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


def main():
    log = pathlib.Path(sys.argv[1]).read_text()
    t = load(sys.argv[2:])
    f = lambda name: t[f"floor/{name}"]
    sign, verify, sighash = f("ecdsa_sign"), f("ecdsa_verify"), f("p2wsh_sighash_1in_1out")
    add, mul, comb, pt = f("pubkey_add_exp_tweak"), f("pubkey_mul_tweak"), f("pubkey_combine"), f("point_from_secret")
    sha32, sha66, block = f("sha256_32B"), f("sha256_66B"), f("sha256_1KiB") / 17

    blocks = {m[0]: int(m[1]) for m in re.findall(r"work: (build_commitment/\S+): \d+ outputs, (\d+) SHA-256 blocks", log)}
    gen_calls = int(re.search(r"shachain_generate_from_seed: (\d+) SHA-256", log)[1])
    ins_calls = float(re.search(r"shachain_insert: ([\d.]+) SHA-256", log)[1])
    get_calls = float(re.search(r"shachain_get: ([\d.]+) SHA-256", log)[1])

    rows = []
    for key, ns in sorted(t.items()):
        if not key.startswith("core/"):
            continue
        op = key[len("core/"):]
        m = re.match(r"(build|sign|verify)_commitment/(\w+)/(\d+)$", op)
        if m:
            kind, ty, n = m[1], m[2], int(m[3])
            if kind == "build":
                k = blocks[op]
                rows.append((op, f"{k} SHA-256 blocks (one hash per witness script, txid)", k * block, ns))
            elif kind == "sign":
                rows.append((op, f"{n + 1} × (sighash + ECDSA sign)", (n + 1) * (sighash + sign), ns))
            else:
                rows.append((op, f"{n + 1} × (sighash + ECDSA verify)", (n + 1) * (sighash + verify), ns))
        elif op in ("signer_sign_htlc_tx", "signer_sign_revocation"):
            rows.append((op, "sighash + ECDSA sign", sighash + sign, ns))
        elif op == "revocation_pubkey_derive":
            rows.append((op, "2 × mul_tweak + combine + 2 × SHA-256(66 B)", 2 * mul + comb + 2 * sha66, ns))
        elif op == "commitment_keys_derive":
            rows.append((op, "revocation floor + 3 × (add_exp_tweak + SHA-256(66 B))",
                         2 * mul + comb + 2 * sha66 + 3 * (add + sha66), ns))
        elif op == "shachain_generate_from_seed":
            rows.append((op, f"{gen_calls} × SHA-256(32 B)", gen_calls * sha32, ns))
        elif op.startswith("shachain_insert_x"):
            per = int(op.split("_x")[1])
            rows.append((f"shachain_insert (per secret)", f"{ins_calls:.2f} × SHA-256(32 B) (average)", ins_calls * sha32, ns / per))
        elif op.startswith("shachain_get_x"):
            per = int(op.split("_x")[1])
            rows.append((f"shachain_get (per secret)", f"{get_calls:.2f} × SHA-256(32 B) (average)", get_calls * sha32, ns / per))

    print("| operation | floor it needs | ratio to floor | time (floor) |")
    print("|---|---|---:|---:|")
    for op, what, floor_ns, ns in rows:
        print(f"| `{op}` | {what} | **{ns / floor_ns:.2f}** | {fmt_time(ns)} ({fmt_time(floor_ns)}) |")
    print()
    print("| floor primitive | time |")
    print("|---|---:|")
    for key, ns in sorted(t.items()):
        if key.startswith("floor/"):
            print(f"| `{key[len('floor/'):]}` | {fmt_time(ns)} |")
    print(f"| SHA-256 per 64-byte block (`sha256_1KiB` / 17) | {fmt_time(block)} |")


main()
