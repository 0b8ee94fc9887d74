#!/usr/bin/env python3
"""`nn privacy` (the RDP accountant of DP-FedAvg) against Google's dp-accounting: its RdpAccountant with the
Poisson-sampled Gaussian event, over a grid of sampling rates q, noise multipliers z, rounds T and δ; every ε must
agree to 1% (relative).

usage: dp_accountant.py NN_BINARY
"""
import json
import subprocess
import sys

import dp_accounting
from absl import logging as absl_logging

absl_logging.set_verbosity(absl_logging.ERROR)  # its notes on orders it leaves out; ours leaves out the same

nn = sys.argv[1]
rounds = [1, 10, 100, 1000, 10000]
worst, count = 0.0, 0
for delta in (1e-5, 1e-6):
    for q in (0.001, 0.01, 0.1, 0.5, 1.0):
        for z in (0.5, 0.8, 1.0, 1.5, 3.0):
            out = subprocess.run([nn, "privacy", "--sampling-rate", str(q), "--noise", str(z), "--delta", str(delta), "--json",
                                  "--rounds", *map(str, rounds)], check=True, capture_output=True, text=True).stdout
            ours = {row["rounds"]: row["epsilon"] for row in map(json.loads, out.splitlines())}
            for t in rounds:
                accountant = dp_accounting.rdp.RdpAccountant()
                accountant.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), t)
                reference = accountant.get_epsilon(delta)
                difference = abs(ours[t] - reference) / max(reference, 1e-12)
                assert difference <= 0.01, f"q {q}, z {z}, T {t}, δ {delta}: nn {ours[t]}, dp-accounting {reference}"
                worst = max(worst, difference)
                count += 1
print(f"privacy: ε of {count} (q, z, T, δ) cells agrees with dp-accounting's RDP accountant; largest relative difference {worst:.2e}")
