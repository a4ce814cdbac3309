"""The benchmark suite of bandit-serve (``make bench``, ``make bench-quick``).

Modules:

* :mod:`bench.bounds`: the Lai-Robbins lower bound on regret.
* :mod:`bench.regret`: cumulative regret through the real :mod:`bandits` policy objects.
* :mod:`bench.chapelle_li`: the delayed-feedback experiment of Chapelle & Li (2011), Table 1.
* :mod:`bench.loadgen`: an async HTTP load generator and latency summaries.
* :mod:`bench.deployments`: the hand-written baselines (random ingress, plain model,
  per-request state).
* :mod:`bench.serving`: router overhead, state sync and replica scaling on a local Ray Serve.
* :mod:`bench.report`: ``latest.json``, the markdown table and the PNG plots.

Every comparison runs both sides in the same run, interleaved, and reports ratios with their
min/median/max over repetitions: absolute times on shared machines are context only.
"""
