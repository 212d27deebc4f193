"""One reconcile reads only its own rollout's objects, however many others share the namespace.

The caches are real informers over the in-memory cluster of :mod:`tests.unit.fake_cluster`;
every object handed to a reader is counted (``Informer.objects_read``), so the tests assert the
work a reconcile does, not how long it takes.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from controller.shell.kube import PodInfo
from controller.shell.preflight import check_world
from controller.shell.snapshot import (
    POD_BY_DEPLOYMENT,
    POD_BY_LABEL,
    SLICE_BY_SERVICE,
    Caches,
    preflight_pods,
    read_observed,
)
from tests.unit.fake_cluster import (
    FakeCluster,
    caches_for,
    deployment,
    endpoint_slice,
    pod,
    populate,
)
from tests.unit.rollout_model import make_spec

SPEC = make_spec(analysis={"interval": "10s", "metrics": []})
SHARED = {"app": "zai-proxy"}
KINDS = ("pods", "deployments", "services", "endpointslices")


def foreign_rollout(cluster: FakeCluster, i: int) -> None:
    """Another team's Deployment of one pod and its Service's slice, in the same namespace."""
    name = f"other-{i}"
    dep = deployment(name, "v1", 1)
    labels = {"app": name, "version": "v1"}
    dep["spec"]["selector"]["matchLabels"] = labels
    dep["spec"]["template"]["metadata"]["labels"] = labels
    cluster.commit("deployments", dep)
    p = pod(name, "v1", 0, f"10.9.{i // 250}.{i % 250 + 1}")
    p["metadata"]["labels"] = {**labels, "pod-template-hash": "abc"}
    cluster.commit("pods", p)
    slice_ = endpoint_slice([p])
    slice_["metadata"]["name"] = f"{name}-1"
    slice_["metadata"]["labels"] = {"kubernetes.io/service-name": name}
    cluster.commit("endpointslices", slice_)


@asynccontextmanager
async def namespace(foreign: int) -> AsyncIterator[tuple[FakeCluster, Caches]]:
    """zai-proxy (3 stable, 1 canary) beside ``foreign`` other rollouts' objects."""
    cluster = FakeCluster()
    populate(cluster, {}, stable=3, canary=1)
    for i in range(foreign):
        foreign_rollout(cluster, i)
    caches = await caches_for(cluster)
    try:
        yield cluster, caches
    finally:
        for kind in KINDS:
            await getattr(caches, kind).stop()


def reads(caches: Caches) -> int:
    return sum(getattr(caches, kind).objects_read for kind in KINDS)


async def reads_of_one_reconcile(foreign: int) -> tuple[int, object, list[str]]:
    async with namespace(foreign) as (_, caches):
        svc = caches.services.get("zai-proxy")
        assert svc is not None
        before = reads(caches)
        observed = read_observed(SPEC, caches, svc, {}, preflight=None, capacity=None, demand=None)
        judged = [p.name for p in preflight_pods(SPEC, caches, SHARED)]
        return reads(caches) - before, observed, judged


async def test_a_reconcile_reads_the_same_objects_beside_10_or_1000_foreign_rollouts() -> None:
    few, observed_few, judged_few = await reads_of_one_reconcile(10)
    many, observed_many, judged_many = await reads_of_one_reconcile(1000)
    assert observed_few == observed_many
    assert judged_few == judged_many
    assert len(judged_few) == 4
    assert few == many
    # its own objects only: 2 Deployments, 4 pods per view and per endpoint, 1 slice, 4+4 for
    # the preflight (by Deployment and by the shared selector)
    assert many <= 24


async def test_read_observed_counts_ready_pods_and_endpoints_of_its_own_deployments() -> None:
    async with namespace(50) as (_, caches):
        svc = caches.services.get("zai-proxy")
        assert svc is not None
        observed = read_observed(SPEC, caches, svc, {}, preflight=None, capacity=None, demand=None)
    assert (observed.stable.ready_replicas, observed.canary.ready_replicas) == (3, 1)
    assert (observed.endpoints.stable, observed.endpoints.canary, observed.endpoints.other) == (
        3,
        1,
        0,
    )


def brute_force(caches: Caches) -> dict[str, dict[str, list[str]]]:
    """Every index as a walk of the whole cache would compute it."""
    pods: list[PodInfo] = caches.pods.items()
    slices = caches.endpointslices.items()
    return {
        "deployment": {
            d: [p.name for p in pods if p.deployment == d]
            for d in {p.deployment for p in pods if p.deployment}
        },
        "label": {
            f"{k}={v}": [p.name for p in pods if p.labels.get(k) == v]
            for p0 in pods
            for k, v in p0.labels.items()
        },
        "service": {s.service: [x.name for x in slices if x.service == s.service] for s in slices},
    }


def indexed(
    caches: Caches, expected: dict[str, dict[str, list[str]]]
) -> dict[str, dict[str, list[str]]]:
    lookups = (
        ("deployment", caches.pods, POD_BY_DEPLOYMENT),
        ("label", caches.pods, POD_BY_LABEL),
        ("service", caches.endpointslices, SLICE_BY_SERVICE),
    )
    return {
        what: {key: [o.name for o in informer.by_index(index, key)] for key in expected[what]}
        for what, informer, index in lookups
    }


async def test_indexes_follow_adds_changes_deletes_and_relists() -> None:
    async with namespace(3) as (cluster, caches):
        moved = copy.deepcopy(cluster.objects["pods"]["zai-proxy-abc-0"])
        moved["metadata"]["labels"] = {"app": "elsewhere"}
        moved["metadata"]["ownerReferences"][0]["name"] = "other-0-abc"
        cluster.commit("pods", moved)
        cluster.commit("pods", cluster.objects["pods"]["zai-proxy-abc-1"], "DELETED")
        cluster.commit("endpointslices", cluster.objects["endpointslices"]["other-1-1"], "DELETED")
        cluster.commit("pods", pod("zai-proxy-v2", "v2", 7, "10.0.1.8"))
        await cluster.settle()
        expected = brute_force(caches)
        assert indexed(caches, expected) == expected
        assert [p.name for p in caches.pods_of("zai-proxy")] == ["zai-proxy-abc-2"]
        assert caches.pods.index_size(POD_BY_LABEL, "app=elsewhere") == 1
        # buckets emptied by a change are gone, not left as empty keys
        assert caches.endpointslices.index_size(SLICE_BY_SERVICE, "other-1") == 0

        # while disconnected: a pod deleted and one added; the relist files them afresh
        cluster.hold = True
        cluster.commit("pods", cluster.objects["pods"]["zai-proxy-abc-2"], "DELETED")
        cluster.commit("pods", pod("zai-proxy", "v1", 9, "10.0.0.10"))
        await cluster.expire_history(caches.pods)
        expected = brute_force(caches)
        assert indexed(caches, expected) == expected
        assert [p.name for p in caches.pods_of("zai-proxy")] == ["zai-proxy-abc-9"]


async def test_preflight_on_indexed_pods_finds_what_it_finds_on_all_pods() -> None:
    async with namespace(20) as (cluster, caches):
        stray = pod("intruder", "v1", 0, "10.5.0.1")  # matches the shared selector, not ours
        cluster.commit("pods", stray)
        leaving = pod("leaver", "v1", 0, "10.5.0.2")
        leaving["metadata"]["deletionTimestamp"] = "2026-11-27T12:00:00Z"
        cluster.commit("pods", leaving)
        partial = pod("lookalike", "v1", 0, "10.5.0.3")
        partial["metadata"]["labels"] = {"app": "zai-proxy-not"}
        cluster.commit("pods", partial)
        await cluster.settle()
        args = (
            SPEC,
            SHARED,
            caches.deployments.get("zai-proxy"),
            caches.deployments.get("zai-proxy-v2"),
        )
        on_all = check_world(*args, caches.pods.items())
        on_index = check_world(*args, preflight_pods(SPEC, caches, SHARED))
    assert on_index == on_all
    assert any("intruder-abc-0" in p for p in on_all.problems)
    assert any("leaver-abc-0" in w for w in on_all.waiting)
    assert not any("lookalike" in p for p in on_all.problems)
