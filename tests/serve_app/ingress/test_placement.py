"""Warming an experiment's pooled versions: once per version and router, never on every new
revision (a pool replica holding fewer versions than an experiment has would reload them in a
cycle, each warm evicting what the one before it loaded)."""

from __future__ import annotations

import asyncio
from typing import Any

from serve_app.config import parse_config
from serve_app.ingress.placement import Placements, serving_uris

THREE = [{"name": f"a{i}", "model_uri": f"/m/{i}", "weight": 1 / 3} for i in range(3)]


class PoolHandle:
    """Records ``handle.options(multiplexed_model_id=uri).load.remote()`` as a Serve
    handle to the pool would send them."""

    deployment_name = "model-pool"

    def __init__(self, failing: set[str] | None = None) -> None:
        self.loads: list[str] = []
        self.failing = failing or set()

    def options(self, multiplexed_model_id: str) -> Any:
        pool = self

        class Load:
            def remote(self) -> Any:
                async def call() -> dict[str, str]:
                    pool.loads.append(multiplexed_model_id)
                    if multiplexed_model_id in pool.failing:
                        raise OSError(f"cannot load {multiplexed_model_id}")
                    return {"uri": multiplexed_model_id}

                return call()

        class Options:
            load = Load()

        return Options()


def test_a_new_revision_warms_only_versions_this_router_has_not_loaded(in_process, tmp_path):
    experiments = [{"name": "three", "policy": {"name": "fixed"}, "arms": THREE}]
    config = parse_config(in_process.state_args(str(tmp_path), experiments=experiments))
    pool = PoolHandle()
    placements = Placements(config, pool, {})
    experiment = config.experiments[0]
    assert {arm.placement for arm in experiment.arms} == {"pool"}

    asyncio.run(placements.warm(experiment))
    assert pool.loads == ["/m/0", "/m/1", "/m/2"]
    asyncio.run(placements.warm(experiment))  # a new revision of the same arms (a pause, a ramp)
    assert pool.loads == ["/m/0", "/m/1", "/m/2"]
    moved = experiment.model_copy(
        update={"arms": [experiment.arms[0].model_copy(update={"model_uri": "/m/3"})]}
    )
    asyncio.run(placements.warm(moved))  # an arm moved to a new version: only that one loads
    assert pool.loads == ["/m/0", "/m/1", "/m/2", "/m/3"]
    back = experiment.model_copy(update={"arms": experiment.arms[:1]})
    asyncio.run(placements.warm(back, again=serving_uris(back) - serving_uris(moved)))
    assert pool.loads[4:] == ["/m/0"]  # moved back to a version served before: loaded again


def test_a_warm_that_failed_is_tried_again(in_process, tmp_path):
    experiments = [{"name": "three", "policy": {"name": "fixed"}, "arms": THREE}]
    config = parse_config(in_process.state_args(str(tmp_path), experiments=experiments))
    pool = PoolHandle(failing={"/m/1"})
    placements = Placements(config, pool, {})
    asyncio.run(placements.warm(config.experiments[0]))  # logged, not raised
    pool.failing.clear()
    asyncio.run(placements.warm(config.experiments[0]))
    assert pool.loads == ["/m/0", "/m/1", "/m/2", "/m/1"]
