"""The exact core: counter deltas, step integrals and coverage, on hand-made samples whose
answers are known exactly."""

from __future__ import annotations

from decimal import Decimal

from metering.compute import Series, counter_delta, counter_usage, time_usage, weighted

H = 3_600_000  # one hour in ms
M = 60_000
GAP, HOLD = 5 * M, M


def series(*samples: tuple[int, int | str], **labels: str) -> Series:
    return Series(tuple(sorted(labels.items())), tuple((t, Decimal(str(v))) for t, v in samples))


def gauge(s: list[Series], start: int = 0, end: int = H) -> Decimal:
    return time_usage(s, start, end, GAP, HOLD, lambda _s, v: v).quantity


def test_counter_carries_the_last_sample_in_and_partitions_exactly() -> None:
    s = series((-M, 100), (0, 150), (30 * M, 400), (H - 1, 500), (H, 520), (H + M, 600))
    first = counter_delta(s, 0, H, 40 * M)
    second = counter_delta(s, H, 2 * H, 40 * M)
    assert first.quantity == 400  # 100 carried in -> 500; the sample at H is the next hour's
    assert second.quantity == 100
    assert first.quantity + second.quantity == 600 - 100
    assert first.coverage.samples == 3 and first.coverage.resets == 0


def test_a_reset_counts_the_new_value_from_zero() -> None:
    s = series((0, 1000), (M, 1500), (2 * M, 20), (3 * M, 70))  # QEMU restarted
    usage = counter_delta(s, 0, H, GAP)
    assert usage.quantity == 500 + 20 + 50
    assert usage.coverage.resets == 1


def test_a_gap_longer_than_max_gap_is_not_bridged_and_is_flagged() -> None:
    s = series((0, 0), (M, 10), (20 * M, 1010), (21 * M, 1020))
    usage = counter_delta(s, 0, H, GAP)
    assert usage.quantity == 10 + 10  # the 1000 across the 19-minute gap is not billed
    assert usage.coverage.unbilled_ms == 19 * M
    assert usage.coverage.longest_gap_ms == H - 21 * M  # to the end of the hour


def test_exact_decimals_and_huge_counters() -> None:
    s = series((0, "9007199254740993"), (M, "9007199254740999.5"))
    assert counter_delta(s, 0, H, GAP).quantity == Decimal("6.5")


def test_migration_overlap_is_counted_once_per_process() -> None:
    # the old host's QEMU sent 300 until the switch-over, the new one 50 after it; while both
    # are scraped the series overlap
    old = series((0, 1000), (M, 1200), (2 * M, 1300), host="kvm1")
    new = series((90_000, 0), (2 * M, 20), (3 * M, 50), host="kvm2")
    assert counter_usage([old, new], 0, H, GAP).quantity == 300 + 50


def test_gauge_integral_with_a_resize_mid_hour() -> None:
    gib = 2**30
    s = series(*((t * M, 10 * gib) for t in range(30)), *((t * M, 20 * gib) for t in range(30, 61)))
    # 30 min at 10 GiB + 30 min at 20 GiB = 15 GiB-hours, in byte-seconds
    assert gauge([s]) == Decimal(15 * gib * 3600)


def test_a_sample_on_the_edge_belongs_to_the_hour_it_starts() -> None:
    s = series((0, 1), (H, 2), (2 * H - M, 2))
    # at 0 the value 1 holds for one hold (no sample within max_gap after it), then nothing
    # until H: 60 s; the sample at H opens the next hour
    assert gauge([s], 0, H) == 60
    assert gauge([s], H, 2 * H) == 60 * 2 + 60 * 2  # held one minute, then the last one


def test_two_series_of_one_resource_are_combined_by_their_maximum() -> None:
    a = series(*((t * M, 1) for t in range(0, 40)), host="kvm1")
    b = series(*((t * M, 1) for t in range(30, 61)), host="kvm2")  # overlap 30..40
    assert time_usage([a, b], 0, H, GAP, HOLD, lambda _s, v: v).quantity == 3600


def test_unbilled_time_is_what_no_series_covers() -> None:
    a = series((0, 1), (M, 1), (30 * M, 1), (31 * M, 1))
    usage = time_usage([a], 0, 32 * M, GAP, HOLD, lambda _s, v: v)
    assert usage.quantity == (M + M + M + M) / 1000  # each sample holds one minute
    assert usage.coverage.unbilled_ms == 28 * M  # 2..30 min
    other = series(*((t * M, 1) for t in range(0, 32)), host="b")
    assert time_usage([a, other], 0, 32 * M, GAP, HOLD, lambda _s, v: v).coverage.unbilled_ms == 0


def test_running_time_weighted_by_vcpus() -> None:
    state = series((0, 1), (20 * M, 5), (40 * M, 1), *((t * M, 1) for t in range(41, 61)))
    vcpus = series((0, 2), (40 * M, 4))
    w = weighted(state, [vcpus], lambda v: v == 1)
    # running 0..20 min with 2 vCPUs (each 1 min hold... samples every 20 min exceed max_gap)
    usage = time_usage([w], 0, H, 25 * M, HOLD, lambda _s, v: v)
    assert usage.quantity == 2 * 20 * 60 + 0 * 20 * 60 + 4 * 20 * 60


def test_a_gap_across_an_hour_edge_is_flagged_on_both_sides() -> None:
    # 07:39 and 08:00 (hours 0 and 1 here): 21 minutes apart, more than max_gap
    s = series(*((t * M, 10 * t) for t in range(40)), (H, 40_390), (H + M, 40_400))
    before = counter_delta(s, 0, H, GAP, H)
    after = counter_delta(s, H, 2 * H, GAP, H)
    assert before.quantity == 390 and after.quantity == 10  # the 40,000 across: not billed
    assert before.coverage.unbilled_ms == 21 * M and after.coverage.unbilled_ms == 0
    assert before.coverage.longest_gap_ms == 21 * M
    # 07:50 and 08:10: ten minutes unbilled on each side
    s = series((50 * M, 0), (H + 10 * M, 5), (H + 11 * M, 7))
    assert counter_delta(s, 0, H, GAP, H).coverage.unbilled_ms == 10 * M
    later = counter_delta(s, H, 2 * H, GAP, H)
    assert later.quantity == 2 and later.coverage.unbilled_ms == 10 * M


def test_an_absence_longer_than_max_outage_is_an_end_and_a_new_start() -> None:
    s = series((10 * M, 100), (11 * M, 110), (H + 20 * M, 0), (H + 21 * M, 5))  # 69 min
    first = counter_delta(s, 0, H, GAP, H)
    assert first.quantity == 10 and first.coverage.unbilled_ms == 0
    assert first.coverage.longest_gap_ms == H - 11 * M  # to the hour's end: the series ended
    second = counter_delta(s, H, 2 * H, GAP, H)
    assert second.quantity == 5 and second.coverage.unbilled_ms == 0  # a new baseline
    # the same absence is a gap when max_outage allows it
    assert counter_delta(s, 0, H, GAP, 2 * H).coverage.unbilled_ms == H - 11 * M


def test_a_gauge_gap_across_an_hour_edge_is_unbilled_on_both_sides() -> None:
    # samples every minute to 00:49, then from 01:10: the hold covers 00:49-00:50
    s = series(*((t * M, 1) for t in range(0, 50)), *((t * M, 1) for t in range(70, 120)))
    first = time_usage([s], 0, H, GAP, HOLD, lambda _s, v: v, H)
    second = time_usage([s], H, 2 * H, GAP, HOLD, lambda _s, v: v, H)
    assert first.quantity == 50 * 60 and first.coverage.unbilled_ms == 10 * M
    assert second.quantity == 50 * 60 and second.coverage.unbilled_ms == 10 * M
    # a whole hour inside a gap (max_outage permitting) is unbilled entirely
    s = series((0, 1), (2 * H + M, 1))
    inside = time_usage([s], H, 2 * H, GAP, HOLD, lambda _s, v: v, 3 * H)
    assert inside.quantity == 0 and inside.coverage.unbilled_ms == H
