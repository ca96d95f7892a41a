"""The network model against the clock in a network lab (root; Linux): measured vs modelled seconds per
iteration of uncompressed all-reduce (QODA), QODA by ring all-gather and by scatter-reduce-allgather,
and Q-GenX (two oracles and two exchanges per iteration) by each.

For K ∈ {2, 4} nodes and link rates {1, 2.5, 5} Gbit/s (:class:`qodasim.netlab.Lab`), d = 4·10^6
float32 coordinates, 0.1 s of compute per oracle at K = 1 split over K (a sleep), layer-wise
``uniform:3`` levels (dense Elias-γ; 1.0 bits/coord), and at K = 4, 1 Gbit/s also ``uniform:1024``
(2.7 bits/coord) and ``uniform:24000`` (8.3): :func:`qodasim.netlab.clock.measure` fits α by a
ping-pong and β by a ring step of all ranks at once (β of the ping-pong printed beside it), and runs the
ranks; the model (:mod:`qodasim.netlab.model`) gets the fitted link, the
real message sizes and the codec and reduction seconds measured in the run on the critical path
(per exchange step the slowest rank's work before it), so its one unmeasured term is the
communication (columns: the slowest rank's codec and reduction seconds, the critical path's codec +
reduction, the slowest rank's exchange seconds and the model's communication).  Speed-ups are
uncompressed all-reduce seconds over compressed seconds, measured and modelled.

The machine's 2 vCPUs are shared by the K ranks (the codec runs at most two at a time) and by the
sockets' copies: at 2.5–5 Gbit/s with K = 4 the ranks are CPU-bound (``BENCHMARKS.md``, *netlab*).
``--quick``: K = 2, 1 Gbit/s, d = 10^6.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parser, report  # noqa: E402


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    from qodasim.netlab import unavailable
    from qodasim.netlab.clock import measure

    reason = unavailable()
    if reason is not None:
        print(f"SKIP: no network lab on this machine ({reason})")
        return
    grid = (
        [(2, 1.0, "uniform:3")]
        if args.quick
        else (
            [(K, r, "uniform:3") for K in (2, 4) for r in (1.0, 2.5, 5.0)]
            + [(4, 1.0, "uniform:1024"), (4, 1.0, "uniform:24000")]
        )
    )
    d = 10**6 if args.quick else 4 * 10**6
    rows, runs = [], []
    head = (f"{'levels':>13} {'b/coord':>7} {'K':>2} {'Gbit/s':>6} {'α µs':>6} {'β ring':>6} {'β pp':>5} | "
            f"{'mode':>15} {'measured s':>10} {'model s':>8} {'error':>6} {'codec s':>7} {'reduce s':>8} {'path s':>6} "
            f"{'comm s':>7} "
            f"{'model':>6} | {'speed-up meas.':>14} {'model':>6}")  # fmt: skip
    print(head)
    for K, rate, levels in grid:
        r = measure(K=K, rate_gbit=rate, d=d, iterations=args.repeats or 5, levels=(levels, levels))
        r["levels"] = levels
        bpc = r["modes"]["allgather"]["encoded_bytes"][0] * 8 / d
        runs.append(r)
        base = r["modes"]["allreduce"]
        for mode, m in r["modes"].items():
            su_meas, su_model = base["measured"] / m["measured"], base["modelled"] / m["modelled"]
            link = (f"{levels:>13} {bpc:>7.2f} {K:>2} {rate:>6g} {r['alpha'] * 1e6:>6.0f} {r['beta'] / 1e9:>6.3f} "
                    f"{r['beta_pingpong'] / 1e9:>5.2f}")  # fmt: skip
            print(f"{link} | {mode:>15} {m['measured']:>10.4f} {m['modelled']:>8.4f} {m['error'] * 100:>5.0f}% "
                  f"{m['codec']:>7.4f} {m['reduce']:>8.4f} {m['codec_path']:>6.4f} {m['comm']:>7.4f} "
                  f"{m['comm_modelled']:>6.4f} | "
                  f"{su_meas:>14.2f} {su_model:>6.2f}")  # fmt: skip
            key = f"K{K}_{rate:g}gbit_{levels.replace(':', '')}_{mode}"
            rows += [(f"{key}_measured_s", m["measured"], "s/iteration"),
                     (f"{key}_modelled_s", m["modelled"], "s/iteration"),
                     (f"{key}_model_error", m["error"], "modelled/measured - 1"),
                     (f"{key}_model_error_slowest_codec", m["error_slowest"], "modelled/measured - 1"),
                     (f"{key}_speedup_measured", su_meas, "x over all-reduce"),
                     (f"{key}_speedup_modelled", su_model, "x over all-reduce")]  # fmt: skip
    worst = max(abs(m["error"]) for r in runs for m in r["modes"].values())
    rows.append(("worst_model_error", worst, "|modelled/measured - 1|"))
    report("netlab", rows, {"runs": runs, "d": d})


if __name__ == "__main__":
    main()
