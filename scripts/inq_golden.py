#!/usr/bin/env python3
"""Independent reference for INQ's codebook and Eq. 4 projection (Zhou et al., ICLR 2017).

Written from the paper's formulas with plain Python floats (no torch, no frexp trick):
  n1 = floor(log2(4s/3)), n2 = n1 + 1 - 2^(b-2)
  levels P = {0, 2^n2, ..., 2^n1}; with adjacent levels a < c, |w| in [(a+c)/2, 3c/2) -> c*sgn(w),
  |w| < 2^(n2-1) -> 0; |w| >= 3*2^n1/2 saturates at 2^n1 (see inner/inq/inq.h).
Writes tests/data/inq_golden.json, which tests/inner/test_inq.cpp compares against.
"""
import json, math, random, struct

def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]

def below_f32(x):
    """The float32 just below |x| toward zero, with x's sign."""
    bits = struct.unpack("I", struct.pack("f", abs(x)))[0]
    return math.copysign(struct.unpack("f", struct.pack("I", bits - 1))[0], x)

def codebook(s, b):
    n1 = math.floor(math.log2(4.0 * s / 3.0))
    n2 = n1 + 1 - 2 ** (b - 2)
    return n1, n2

def project(w, n1, n2):
    a = abs(w)
    mags = [0.0] + [2.0 ** k for k in range(n2, n1 + 1)]
    q = 0.0
    for lo, hi in zip(mags, mags[1:]):
        if (lo + hi) / 2 <= a < 1.5 * hi:
            q = hi
    if a >= 1.5 * mags[-1]:
        q = mags[-1]
    return math.copysign(q, w) if q else 0.0

rng = random.Random(20170213)
cases = []
for b in range(2, 9):
    for s in (0.05, 0.3, 0.75, 1.0, 2.9):
        n1, n2 = codebook(s, b)
        mags = [2.0 ** k for k in range(n2, n1 + 1)]
        ws = [rng.uniform(-s, s) for _ in range(40)]
        # boundaries exactly: midpoints (ties go up), just below, and the zero threshold
        for lo, hi in zip([0.0] + mags, mags):
            mid = (lo + hi) / 2
            ws += [mid, -mid, below_f32(mid), below_f32(-mid)]
        ws += [0.0, 1.5 * mags[-1], 3.0 * mags[-1]]
        ws = [f32(w) for w in ws]
        cases.append({"bits": b, "s": s, "n1": n1, "n2": n2, "levels": 2 * len(mags) + 1,
                      "w": ws, "q": [project(w, n1, n2) for w in ws]})
with open("tests/data/inq_golden.json", "w") as f:
    json.dump({"source": "scripts/inq_golden.py", "cases": cases}, f)
print(len(cases), "cases")
