"""Unit tests for the allocator: one rule per test, a fake clock, no sleeps."""
from __future__ import annotations

import doctest
import math

import pytest

from substrate import allocator as allocator_module
from substrate import drf
from substrate.allocator import Allocator
from substrate.errors import InvalidRequest
from substrate.resources import Resources

SMALL = Resources(cpus=1, mem=64)
BIG = Resources(cpus=4, mem=1024)


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(100.0)


@pytest.fixture
def a(clock: Clock) -> Allocator:
    return Allocator(clock)


def given(alloc: Allocator) -> dict[str, list[str]]:
    """One allocation cycle, as {framework_id: [agent ids]}."""
    out: dict[str, list[str]] = {}
    for fid, aid, _ in alloc.allocate():
        out.setdefault(fid, []).append(aid)
    return out


def snapshot(alloc: Allocator) -> tuple:
    agents = list(alloc._agents)
    frameworks = list(alloc._frameworks)
    return (
        alloc.shares(), alloc.next_wakeup(),
        {aid: (alloc.available(aid), alloc.allocations(aid)) for aid in agents},
        {fid: alloc.allocated(fid) for fid in frameworks},
        {fid: (f.active, f.suppressed, dict(f.filters), f.weight, f.role.id)
         for fid, f in alloc._frameworks.items()},
        {r.id: (r.weight, r.quota) for r in alloc._roles.values()},
        {aid: g.active for aid, g in alloc._agents.items()},
    )


# ------------------------------------------------------------------------- basics

def test_one_framework_gets_the_whole_free_pool_once(a: Allocator) -> None:
    a.add_framework("f1", "*")
    a.add_agent("a1", BIG)
    assert a.allocate() == [("f1", "a1", BIG)]
    assert a.available("a1").is_empty()
    assert a.allocated("f1") == BIG
    assert a.allocate() == []


def test_nothing_is_offered_without_frameworks_and_agents_wait_for_one(a: Allocator) -> None:
    a.add_agent("a1", BIG)
    assert a.allocate() == []
    a.add_framework("f1", "*")
    assert given(a) == {"f1": ["a1"]}


def test_allocations_count_immediately_so_the_next_agent_goes_to_another(a: Allocator) -> None:
    for fid in ("f2", "f1", "f3"):
        a.add_framework(fid, "*")
    for i in range(6):
        a.add_agent(f"a{i}", SMALL)
    offers = a.allocate()
    # Ties broken by id: f1, f2, f3, then round again.
    assert [fid for fid, _, _ in offers] == ["f1", "f2", "f3", "f1", "f2", "f3"]


def test_dominant_share_decides_across_resource_kinds(a: Allocator) -> None:
    # Total: 10 cpus, 1000 mem. f1 holds 5 cpus (share .5), f2 holds 600 mem (share .6).
    a.add_framework("f1", "*")
    a.add_framework("f2", "*")
    a.add_agent("cpu", Resources(cpus=5, mem=100), used={"f1": Resources(cpus=5, mem=100)})
    a.add_agent("mem", Resources(cpus=1, mem=600), used={"f2": Resources(cpus=1, mem=600)})
    a.add_agent("free", Resources(cpus=4, mem=300))
    assert given(a) == {"f1": ["free"]}
    assert a.shares()["frameworks"] == {"f1": pytest.approx(0.9), "f2": pytest.approx(0.6)}


def test_framework_weights_divide_the_share(a: Allocator) -> None:
    a.add_framework("heavy", "*", weight=2.0)
    a.add_framework("light", "*")
    for i in range(9):
        a.add_agent(f"a{i:02d}", SMALL)
    got = given(a)
    assert (len(got["heavy"]), len(got["light"])) == (6, 3)


def test_roles_come_first_then_frameworks_within_the_role(a: Allocator) -> None:
    a.add_framework("solo", "A")
    for fid in ("b1", "b2", "b3"):
        a.add_framework(fid, "B")
    for i in range(12):
        a.add_agent(f"a{i:02d}", SMALL)
    got = given(a)
    assert len(got["solo"]) == 6                       # role A gets half
    assert [len(got[f]) for f in ("b1", "b2", "b3")] == [2, 2, 2]


def test_role_weights(a: Allocator) -> None:
    a.set_weight("prod", 3.0)
    a.add_framework("p", "prod")
    a.add_framework("d", "dev")
    for i in range(8):
        a.add_agent(f"a{i}", SMALL)
    got = given(a)
    assert (len(got["p"]), len(got["d"])) == (6, 2)
    assert a.shares()["roles"] == {"prod": 0.75, "dev": 0.25}


def test_set_weight_reorders_existing_roles(a: Allocator) -> None:
    a.add_framework("p", "prod")
    a.add_framework("d", "dev")
    a.add_agent("a0", SMALL)
    a.add_agent("a1", SMALL)
    assert given(a) == {"d": ["a0"], "p": ["a1"]}
    a.set_weight("dev", 4.0)   # dev's 0.5 now counts as 0.125 < prod's 0.5
    a.add_agent("a2", SMALL)
    assert given(a) == {"d": ["a2"]}


def test_shares_are_against_active_agents_only(a: Allocator) -> None:
    a.add_framework("f1", "r")
    a.add_agent("a1", SMALL)
    a.add_agent("a2", SMALL)
    a.add_agent("a3", SMALL)
    a.deactivate_agent("a3")
    a.allocate()
    assert a.shares() == {"roles": {"r": 1.0}, "frameworks": {"f1": 1.0}}
    a.activate_agent("a3")
    assert a.shares()["frameworks"]["f1"] == pytest.approx(2 / 3)


def test_allocation_is_deterministic(clock: Clock) -> None:
    def run() -> list:
        alloc = Allocator(clock)
        for i in range(7):
            alloc.add_framework(f"f{i}", f"r{i % 3}", weight=1 + i % 2)
        for i in range(40):
            alloc.add_agent(f"a{i}", Resources(cpus=1 + i % 4, mem=64 * (1 + i % 3)))
        first = alloc.allocate()
        for fid, aid, res in first[::3]:
            alloc.recover(fid, aid, res)
        return first + alloc.allocate()
    assert run() == run()


# ------------------------------------------------------------ minimum allocatable

def test_cpu_only_and_memory_only_scraps_are_not_offered(a: Allocator) -> None:
    a.add_framework("f1", "*")
    a.add_agent("a1", BIG)
    a.allocate()
    a.recover("f1", "a1", Resources(cpus=2))           # cpus without memory
    assert a.allocate() == []
    a.recover("f1", "a1", Resources(mem=16))           # memory below the 32 MiB minimum
    assert a.allocate() == []
    a.recover("f1", "a1", Resources(mem=16))           # now 32 MiB: worth offering
    assert a.allocate() == [("f1", "a1", Resources(cpus=2, mem=32))]


def test_minimum_only_checks_dimensions_the_agent_has(a: Allocator) -> None:
    a.add_framework("f1", "*")
    a.add_agent("cpu-only", Resources(cpus=0.5))       # no memory at all: judged on cpus
    a.add_agent("tiny", Resources(cpus=0.005, mem=4096))
    assert given(a) == {"f1": ["cpu-only"]}


def test_a_gpu_alone_is_not_offered(a: Allocator) -> None:
    a.add_framework("f1", "*")
    a.add_agent("g", Resources(cpus=4, mem=1024, gpus=2))
    a.allocate()
    a.recover("f1", "g", Resources(gpus=1))
    assert a.allocate() == []


def test_custom_min_allocatable(clock: Clock) -> None:
    alloc = Allocator(clock, min_allocatable=Resources(cpus=1, mem=512, disk=100))
    alloc.add_framework("f1", "*")
    alloc.add_agent("no-disk-dim", Resources(cpus=1, mem=512))
    alloc.add_agent("small", Resources(cpus=0.5, mem=4096, disk=1000))
    alloc.add_agent("ok", Resources(cpus=1, mem=512, disk=100))
    assert given(alloc) == {"f1": ["no-disk-dim", "ok"]}


def test_empty_min_allocatable_offers_anything_non_empty(clock: Clock) -> None:
    alloc = Allocator(clock, min_allocatable=Resources())
    alloc.add_framework("f1", "*")
    alloc.add_agent("a1", Resources(disk=1))
    alloc.add_agent("a2", Resources())
    assert given(alloc) == {"f1": ["a1"]}


# ------------------------------------------------------------------------ filters

def test_refuse_filter_expires_on_the_fake_clock(a: Allocator, clock: Clock) -> None:
    a.add_framework("f1", "*")
    a.add_agent("a1", BIG)
    a.allocate()
    a.recover("f1", "a1", BIG, refuse_seconds=5)
    assert a.next_wakeup() == 105.0
    assert a.allocate() == []
    clock.now = 104.999
    assert a.allocate() == []
    clock.now = 105.0
    assert a.allocate() == [("f1", "a1", BIG)]
    assert a.next_wakeup() is None


def test_filtered_agent_goes_to_another_framework(a: Allocator) -> None:
    a.add_framework("f1", "*")
    a.add_framework("f2", "*")
    a.add_agent("a1", BIG)
    assert given(a) == {"f1": ["a1"]}
    a.recover("f1", "a1", BIG, refuse_seconds=5)
    assert given(a) == {"f2": ["a1"]}


def test_filter_is_per_framework_and_agent(a: Allocator) -> None:
    a.add_framework("f1", "*")
    a.add_agent("a1", BIG)
    a.add_agent("a2", BIG)
    a.allocate()
    a.recover("f1", "a1", BIG, refuse_seconds=5)
    a.recover("f1", "a2", BIG)
    assert given(a) == {"f1": ["a2"]}


@pytest.mark.parametrize("refuse", [None, 0, 0.0])
def test_no_filter_means_offered_again_at_once(a: Allocator, refuse: float | None) -> None:
    a.add_framework("f1", "*")
    a.add_agent("a1", BIG)
    a.allocate()
    a.recover("f1", "a1", BIG, refuse_seconds=refuse)
    assert a.next_wakeup() is None
    assert given(a) == {"f1": ["a1"]}


def test_infinite_filter_lasts_until_revive(a: Allocator, clock: Clock) -> None:
    a.add_framework("f1", "*")
    a.add_agent("a1", BIG)
    a.allocate()
    a.recover("f1", "a1", BIG, refuse_seconds=math.inf)
    assert a.next_wakeup() is None
    clock.now += 1e9
    assert a.allocate() == []
    a.revive("f1")
    assert given(a) == {"f1": ["a1"]}


def test_a_second_filter_keeps_the_later_expiry(a: Allocator, clock: Clock) -> None:
    a.add_framework("f1", "*")
    a.add_agent("a1", BIG)
    a.allocate()
    a.recover("f1", "a1", BIG, refuse_seconds=10)
    a.recover("f1", "a1", Resources(), refuse_seconds=1)
    assert a.next_wakeup() == 110.0
    clock.now = 109.0
    assert a.allocate() == []
    clock.now = 110.0
    assert given(a) == {"f1": ["a1"]}


def test_filter_only_covers_what_was_refused(a: Allocator, clock: Clock) -> None:
    """Mesos semantics: a framework that launched a task and refused the rest is offered the
    agent again as soon as the task's resources come back, without waiting for the filter."""
    a.add_framework("f1", "*")
    a.add_agent("a1", Resources(cpus=2, mem=128))
    a.allocate()
    a.recover("f1", "a1", SMALL, refuse_seconds=60)   # launched on SMALL, refused the rest
    assert a.allocate() == []                         # the refused part alone is not offered
    a.recover("f1", "a1", SMALL)                      # the task ended: the pool outgrew it
    assert a.allocate() == [("f1", "a1", Resources(cpus=2, mem=128))]


def test_next_wakeup_is_the_earliest_live_filter(a: Allocator) -> None:
    a.add_framework("f1", "*")
    a.add_framework("f2", "*")
    a.add_agent("a1", BIG)
    a.add_agent("a2", BIG)
    offers = a.allocate()
    for fid, aid, res in offers:
        a.recover(fid, aid, res, refuse_seconds=3 if fid == "f1" else 7)
    assert a.next_wakeup() == 103.0
    a.revive("f1")                                    # its filter is gone
    assert a.next_wakeup() == 107.0


def test_filters_on_a_removed_agent_are_dropped(a: Allocator, clock: Clock) -> None:
    a.add_framework("f1", "*")
    a.add_agent("a1", BIG)
    a.allocate()
    a.recover("f1", "a1", BIG, refuse_seconds=60)
    a.remove_agent("a1")
    assert a.next_wakeup() is None
    a.add_agent("a1", BIG)
    assert given(a) == {"f1": ["a1"]}


def test_time_comes_only_from_the_injected_clock(clock: Clock) -> None:
    alloc = Allocator(clock)
    alloc.add_framework("f1", "*")
    alloc.add_agent("a1", BIG)
    before = clock.calls
    alloc.allocate()
    assert clock.calls == before + 1


# --------------------------------------------------------------- suppress, revive

def test_suppressed_framework_gets_nothing_and_keeps_its_allocation(a: Allocator) -> None:
    a.add_framework("f1", "*")
    a.add_agent("a1", BIG)
    a.allocate()
    a.suppress("f1")
    a.recover("f1", "a1", SMALL)
    assert a.allocate() == []
    assert a.allocated("f1") == Resources(cpus=3, mem=960)
    a.revive("f1")
    assert a.allocate() == [("f1", "a1", SMALL)]


def test_framework_added_suppressed(a: Allocator) -> None:
    a.add_framework("f1", "*", suppressed=True)
    a.add_agent("a1", BIG)
    assert a.allocate() == []
    a.revive("f1")
    assert given(a) == {"f1": ["a1"]}


def test_revive_clears_filters(a: Allocator) -> None:
    a.add_framework("f1", "*")
    a.add_agent("a1", BIG)
    a.add_agent("a2", BIG)
    for fid, aid, res in a.allocate():
        a.recover(fid, aid, res, refuse_seconds=60)
    assert a.allocate() == []
    a.revive("f1")
    assert given(a) == {"f1": ["a1", "a2"]}


def test_suppressed_framework_does_not_block_others(a: Allocator) -> None:
    a.add_framework("a-first", "*", suppressed=True)
    a.add_framework("b", "*")
    a.add_agent("a1", BIG)
    assert given(a) == {"b": ["a1"]}


# ------------------------------------------------------------------------- quota

def test_quota_caps_the_offer_and_the_rest_goes_elsewhere(a: Allocator) -> None:
    a.set_quota("dev", Resources(cpus=2, mem=256))
    a.add_framework("d", "dev")
    a.add_framework("p", "prod")
    a.add_agent("a1", Resources(cpus=2, mem=512))
    a.add_agent("a2", Resources(cpus=8, mem=2048))
    assert a.allocate() == [("d", "a1", Resources(cpus=2, mem=256)),
                            ("p", "a2", Resources(cpus=8, mem=2048))]
    assert a.allocated("d") == Resources(cpus=2, mem=256)
    assert a.allocated("p") == Resources(cpus=8, mem=2048)
    assert a.available("a1") == Resources(mem=256)     # memory-only scrap, not offered


def test_role_at_its_limit_waits_until_it_frees_something(a: Allocator) -> None:
    a.set_quota("dev", Resources(cpus=1))               # zero mem: memory is unlimited
    a.add_framework("d", "dev")
    a.add_agent("a1", SMALL)
    a.add_agent("a2", SMALL)
    assert given(a) == {"d": ["a1"]}
    assert a.available("a2") == SMALL
    a.recover("d", "a1", SMALL)
    assert given(a) == {"d": ["a2"]}                   # one of the two, never both
    assert a.available("a1") == SMALL


def test_quota_release_wakes_up_agents_blocked_by_quota(a: Allocator) -> None:
    a.set_quota("dev", Resources(cpus=1))
    a.add_framework("d", "dev")
    a.add_agent("a1", SMALL)
    a.add_agent("a2", SMALL)
    a.allocate()
    a.recover("d", "a1", SMALL, refuse_seconds=60)      # a1 filtered; a2 must now be offered
    assert given(a) == {"d": ["a2"]}


def test_removing_or_raising_quota_wakes_blocked_agents(a: Allocator) -> None:
    a.set_quota("dev", Resources(cpus=1))
    a.add_framework("d", "dev")
    a.add_agent("a1", SMALL)
    a.add_agent("a2", SMALL)
    a.add_agent("a3", SMALL)
    assert len(a.allocate()) == 1
    a.set_quota("dev", Resources(cpus=2))
    assert len(a.allocate()) == 1
    a.set_quota("dev", None)
    assert len(a.allocate()) == 1


def test_lowering_quota_does_not_revoke(a: Allocator) -> None:
    a.add_framework("d", "dev")
    a.add_agent("a1", BIG)
    a.allocate()
    a.set_quota("dev", Resources(cpus=1))
    assert a.allocated("d") == BIG
    a.add_agent("a2", BIG)
    assert a.allocate() == []


# -------------------------------------------------------------------- deactivation

def test_deactivated_framework_gets_nothing_and_keeps_its_allocation(a: Allocator) -> None:
    a.add_framework("f1", "*")
    a.add_agent("a1", BIG)
    a.allocate()
    a.deactivate_framework("f1")
    a.add_agent("a2", BIG)
    assert a.allocate() == []
    assert a.allocated("f1") == BIG
    a.activate_framework("f1")
    assert given(a) == {"f1": ["a2"]}


def test_deactivated_agent_is_never_offered_and_keeps_allocations(a: Allocator) -> None:
    a.add_framework("f1", "*")
    a.add_agent("a1", BIG)
    a.allocate()
    a.deactivate_agent("a1")
    a.recover("f1", "a1", SMALL)
    assert a.allocate() == []
    assert a.allocated("f1") == Resources(cpus=3, mem=960)
    a.activate_agent("a1")
    assert a.allocate() == [("f1", "a1", SMALL)]


def test_remove_framework_frees_its_allocation_for_others(a: Allocator) -> None:
    a.add_framework("f1", "*")
    a.add_agent("a1", BIG)
    a.allocate()
    a.add_framework("f2", "*")
    assert a.allocate() == []
    a.remove_framework("f1")
    assert a.allocate() == [("f2", "a1", BIG)]
    assert set(a.shares()["frameworks"]) == {"f2"}


def test_remove_agent_drops_allocations_on_it(a: Allocator) -> None:
    a.add_framework("f1", "*")
    a.add_agent("a1", BIG)
    a.add_agent("a2", SMALL)
    a.allocate()
    a.remove_agent("a1")
    assert a.allocated("f1") == SMALL
    assert a.shares()["frameworks"]["f1"] == 1.0
    with pytest.raises(InvalidRequest):
        a.available("a1")


# --------------------------------------------------------------- re-registration

def test_re_registration_with_used_resources(a: Allocator) -> None:
    a.add_framework("f1", "*")
    a.add_framework("f2", "*")
    a.deactivate_framework("f1")        # known from the agent, not re-subscribed yet
    used = {"f1": Resources(cpus=1, mem=256, ports=((31000, 31001),)),
            "f2": Resources(cpus=1, mem=256)}
    a.add_agent("a1", Resources(cpus=4, mem=1024, ports=((31000, 31009),)), used=used)
    assert a.allocated("f1") == used["f1"]
    assert a.available("a1") == Resources(cpus=2, mem=512, ports=((31002, 31009),))
    assert given(a) == {"f2": ["a1"]}
    a.recover("f1", "a1", used["f1"])
    assert a.allocated("f1").is_empty()


def test_re_registration_errors_leave_no_trace(a: Allocator) -> None:
    a.add_framework("f1", "*")
    before = snapshot(a)
    with pytest.raises(InvalidRequest, match="unknown framework"):
        a.add_agent("a1", BIG, used={"ghost": SMALL})
    with pytest.raises(InvalidRequest, match="exceeds"):
        a.add_agent("a1", SMALL, used={"f1": BIG})
    assert snapshot(a) == before


# -------------------------------------------------------------------- recovering

def test_partial_recover_and_ports(a: Allocator) -> None:
    a.add_framework("f1", "*")
    agent = Resources(cpus=4, mem=1024, ports=((31000, 31009),))
    a.add_agent("a1", agent)
    a.allocate()
    part = Resources(cpus=1, mem=512, ports=((31005, 31009),))
    a.recover("f1", "a1", part)
    assert a.available("a1") == part
    assert a.allocated("f1") + a.available("a1") == agent
    assert a.allocate() == [("f1", "a1", part)]
    assert a.allocated("f1") == agent


def test_shares_return_to_zero_without_float_dust(a: Allocator) -> None:
    a.add_framework("f1", "*")
    a.add_agent("a1", Resources(cpus=0.3, mem=100.1))
    a.allocate()
    for _ in range(3):
        a.recover("f1", "a1", Resources(cpus=0.1, mem=33.3))
    rest = a.allocated("f1")
    assert rest.cpus == 0.0 and rest.mem == pytest.approx(0.2)
    a.recover("f1", "a1", rest)
    assert a.allocated("f1").is_empty()
    assert a.shares() == {"roles": {"*": 0.0}, "frameworks": {"f1": 0.0}}
    assert a.available("a1") == Resources(cpus=0.3, mem=100.1)


# ------------------------------------------------------------------ invalid calls

@pytest.mark.parametrize("call", [
    lambda a: a.remove_framework("ghost"),
    lambda a: a.deactivate_framework("ghost"),
    lambda a: a.activate_framework("ghost"),
    lambda a: a.suppress("ghost"),
    lambda a: a.revive("ghost"),
    lambda a: a.allocated("ghost"),
    lambda a: a.remove_agent("ghost"),
    lambda a: a.deactivate_agent("ghost"),
    lambda a: a.activate_agent("ghost"),
    lambda a: a.available("ghost"),
    lambda a: a.allocations("ghost"),
    lambda a: a.recover("ghost", "a1", SMALL),
    lambda a: a.recover("f1", "ghost", SMALL),
    lambda a: a.recover("f1", "a1", BIG),                  # more than held
    lambda a: a.recover("f2", "a1", SMALL),                # holds nothing there
    lambda a: a.recover("f1", "a1", Resources(cpus=1, ports=((1, 1),))),
    lambda a: a.recover("f1", "a1", SMALL, refuse_seconds=-1),
    lambda a: a.recover("f1", "a1", SMALL, refuse_seconds=math.nan),
    lambda a: a.recover("f1", "a1", SMALL, refuse_seconds="soon"),
    lambda a: a.recover("f1", "a1", {"cpus": 1}),
    lambda a: a.add_framework("f1", "*"),                  # duplicate
    lambda a: a.add_framework("", "*"),
    lambda a: a.add_framework("f9", ""),
    lambda a: a.add_framework(7, "*"),
    lambda a: a.add_framework("f9", "*", weight=-1),
    lambda a: a.add_framework("f9", "*", weight=0),
    lambda a: a.add_framework("f9", "*", weight=math.nan),
    lambda a: a.add_framework("f9", "*", weight=math.inf),
    lambda a: a.add_framework("f9", "*", weight="heavy"),
    lambda a: a.set_weight("r", -2.0),
    lambda a: a.set_weight("r", math.nan),
    lambda a: a.set_weight("", 1.0),
    lambda a: a.set_quota("r", {"cpus": 1}),
    lambda a: a.add_agent("a1", SMALL),                    # duplicate
    lambda a: a.add_agent("a9", {"cpus": 1}),
    lambda a: a.add_agent(None, SMALL),
    lambda a: a.add_agent("a9", SMALL, used=[("f1", SMALL)]),
    lambda a: a.add_agent("a9", SMALL, used={"f1": {"cpus": 1}}),
])
def test_invalid_calls_raise_and_change_nothing(a: Allocator, clock: Clock, call) -> None:
    a.add_framework("f1", "*")
    a.add_framework("f2", "*")
    a.add_agent("a1", Resources(cpus=2, mem=128, ports=((31000, 31001),)))
    a.add_agent("a2", Resources(cpus=2, mem=128))
    a.allocate()
    a.recover("f2", "a2", SMALL, refuse_seconds=5)
    before = snapshot(a)
    with pytest.raises(InvalidRequest):
        call(a)
    assert snapshot(a) == before


def test_invalid_constructor_arguments(clock: Clock) -> None:
    with pytest.raises(InvalidRequest):
        Allocator(clock, default_refuse_seconds=-1)
    with pytest.raises(InvalidRequest):
        Allocator(clock, min_allocatable={"cpus": 1})
    with pytest.raises(InvalidRequest):
        Allocator(42)  # type: ignore[arg-type]
    assert Allocator(clock, default_refuse_seconds=2).default_refuse_seconds == 2.0


# ------------------------------------------------------------------ incrementality

def test_a_cycle_never_re_sorts_all_frameworks_per_agent(a: Allocator, monkeypatch) -> None:
    calls = 0
    real = drf.dominant_share

    def counting(vec, inv):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return real(vec, inv)

    monkeypatch.setattr(drf, "dominant_share", counting)
    frameworks, agents = 300, 600
    for i in range(frameworks):
        a.add_framework(f"f{i:03d}", f"r{i % 3}")
    for i in range(agents):
        a.add_agent(f"a{i:03d}", SMALL)
    calls = 0
    offers = a.allocate()
    assert len(offers) == agents
    # One re-key after the agents joined, then O(1) moves per allocation.
    assert calls <= (frameworks + 3) + 4 * agents
    calls = 0
    fid, aid, res = offers[17]
    a.recover(fid, aid, res, refuse_seconds=5)
    assert len(a.allocate()) == 1
    assert calls <= 8


class CountingDict(dict):
    lookups = 0

    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        self.lookups += 1
        return super().__getitem__(key)


def test_a_cycle_looks_only_at_agents_that_changed(a: Allocator) -> None:
    a.add_framework("f1", "*")
    for i in range(200):
        a.add_agent(f"a{i}", SMALL)
    a.allocate()
    a._agents = agents = CountingDict(a._agents)
    a.recover("f1", "a7", SMALL, refuse_seconds=5)      # stuck: its only framework refused it
    a.recover("f1", "a8", SMALL)
    agents.lookups = 0
    assert a.allocate() == [("f1", "a8", SMALL)]
    assert agents.lookups <= 2
    agents.lookups = 0
    assert a.allocate() == []
    assert agents.lookups == 0
    a.add_framework("f2", "*")                          # may take the stuck agent
    assert a.allocate() == [("f2", "a7", SMALL)]
    assert agents.lookups <= 1


# ------------------------------------------------------------------------ docs

@pytest.mark.parametrize("module", [allocator_module, drf])
def test_docstring_examples_run(module) -> None:  # type: ignore[no-untyped-def]
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
