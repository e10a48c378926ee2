"""The renewal moment: the 2/3-of-lifetime rule, an ACME CA's suggested window (RFC 9773)
when it sends one, and when to ask for that window again."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from certward.issuing.renewal import (
    ARI_DEFAULT_RETRY,
    ARI_MAX_RETRY,
    ARI_MIN_RETRY,
    DEFAULT_JITTER,
    RENEWAL_FRACTION,
    SAFETY_FRACTION,
    RenewalWindow,
    ari_retry_at,
    renew_after,
    renewal_moment,
)

NOT_BEFORE = datetime(2026, 12, 1, tzinfo=UTC)
LIFETIME = timedelta(days=6)
NOT_AFTER = NOT_BEFORE + LIFETIME
LATEST = NOT_AFTER - LIFETIME * SAFETY_FRACTION
HOUR = timedelta(hours=1)


def moment(
    *, now: datetime = NOT_BEFORE, draw: float = 0.5, window: RenewalWindow | None = None
) -> datetime:
    return renewal_moment(NOT_BEFORE, NOT_AFTER, now=now, draw=draw, window=window)


@pytest.mark.parametrize("draw", [0.0, 0.25, 0.5, 1.0])
def test_without_a_window_renewal_is_two_thirds_in_plus_a_later_jitter(draw: float) -> None:
    """A draw of 0 is exactly two thirds of the lifetime, 1 is a tenth of it later."""
    expected = NOT_BEFORE + LIFETIME * (RENEWAL_FRACTION + DEFAULT_JITTER * draw)
    assert moment(draw=draw) == expected


def test_the_jitter_never_renews_before_two_thirds_nor_after_the_margin() -> None:
    """Whatever the draw and lifetime: never before two thirds (so never before half) of
    the lifetime, never after the safety margin."""
    rng = random.Random(11)
    for lifetime in (timedelta(minutes=5), timedelta(days=6), timedelta(days=47)):
        for _ in range(200):
            due = renew_after(NOT_BEFORE, NOT_BEFORE + lifetime, rng=rng)
            assert NOT_BEFORE + lifetime * RENEWAL_FRACTION <= due
            assert NOT_BEFORE + lifetime / 2 < due
            assert due <= NOT_BEFORE + lifetime * (1 - SAFETY_FRACTION)


def test_six_day_certificates_are_renewed_at_least_four_days_apart() -> None:
    """The earliest renewal of a 6-day certificate is 4 days after its notBefore."""
    assert moment(draw=0.0) == NOT_BEFORE + timedelta(days=4)


def test_a_window_in_the_future_gives_a_moment_inside_it() -> None:
    """The draw picks the moment uniformly between start and end."""
    window = RenewalWindow(start=NOT_BEFORE + timedelta(days=2), end=NOT_BEFORE + timedelta(days=3))
    assert moment(window=window, draw=0.0) == window.start
    assert moment(window=window, draw=1.0) == window.end
    assert moment(window=window, draw=0.5) == NOT_BEFORE + timedelta(days=2, hours=12)


def test_a_window_earlier_than_the_rule_is_honoured() -> None:
    """A CA asking for early renewal (say, before a revocation) is followed, even before
    two thirds of the lifetime."""
    window = RenewalWindow(start=NOT_BEFORE + HOUR, end=NOT_BEFORE + 2 * HOUR)
    assert moment(window=window, draw=0.5) == NOT_BEFORE + timedelta(minutes=90)


def test_a_window_in_the_past_means_now() -> None:
    """A window over already: renew now."""
    now = NOT_BEFORE + timedelta(days=3)
    window = RenewalWindow(start=NOT_BEFORE + HOUR, end=NOT_BEFORE + 2 * HOUR)
    assert moment(window=window, now=now, draw=0.3) == now


def test_a_moment_drawn_before_now_in_a_running_window_means_now() -> None:
    """Within a window that has begun, a drawn moment already past is now."""
    now = NOT_BEFORE + timedelta(days=2, hours=18)
    window = RenewalWindow(start=NOT_BEFORE + timedelta(days=2), end=NOT_BEFORE + timedelta(days=3))
    assert moment(window=window, now=now, draw=0.25) == now
    assert moment(window=window, now=now, draw=1.0) == window.end


def test_an_inverted_window_is_ignored() -> None:
    """A window whose end precedes its start: the 2/3 rule applies, as without one."""
    inverted = RenewalWindow(start=NOT_BEFORE + timedelta(days=3), end=NOT_BEFORE + HOUR)
    assert moment(window=inverted, draw=0.5) == moment(draw=0.5)


def test_an_empty_window_is_its_one_moment() -> None:
    """Start and end equal: that moment, whatever the draw."""
    at = NOT_BEFORE + timedelta(days=3)
    assert moment(window=RenewalWindow(start=at, end=at), draw=0.9) == at


def test_a_window_beyond_not_after_is_clipped_to_the_safety_margin() -> None:
    """Reaching past the safety margin, or entirely past notAfter: cut at the margin, so
    the certificate is renewed with time left for retries."""
    reaching = RenewalWindow(start=NOT_BEFORE + timedelta(days=4), end=NOT_AFTER + LIFETIME)
    assert moment(window=reaching, draw=1.0) == LATEST
    assert moment(window=reaching, draw=0.0) == NOT_BEFORE + timedelta(days=4)
    beyond = RenewalWindow(start=NOT_AFTER + HOUR, end=NOT_AFTER + 2 * HOUR)
    assert moment(window=beyond, draw=0.5) == LATEST


def test_earliest_wins_over_a_window_in_the_past() -> None:
    """A window over already does not make a certificate just issued due in a loop."""
    earliest = NOT_BEFORE + timedelta(minutes=6)
    window = RenewalWindow(start=NOT_BEFORE - 2 * HOUR, end=NOT_BEFORE - HOUR)
    due = renew_after(
        NOT_BEFORE,
        NOT_AFTER,
        rng=random.Random(12),
        window=window,
        now=NOT_BEFORE + timedelta(minutes=5),
        earliest=earliest,
    )
    assert due == earliest


@pytest.mark.parametrize("draw", [-0.01, 1.01])
def test_a_draw_outside_the_unit_interval_is_refused(draw: float) -> None:
    with pytest.raises(ValueError, match="draw"):
        moment(draw=draw)


def test_inverted_dates_are_refused_with_a_window_too() -> None:
    window = RenewalWindow(start=NOT_BEFORE, end=NOT_AFTER)
    with pytest.raises(ValueError, match="notAfter"):
        renewal_moment(NOT_AFTER, NOT_BEFORE, now=NOT_BEFORE, draw=0.5, window=window)


NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        (None, ARI_DEFAULT_RETRY),
        ("", ARI_DEFAULT_RETRY),
        ("soon", ARI_DEFAULT_RETRY),
        ("3600", HOUR),
        ("0", ARI_MIN_RETRY),
        ("999999999999", ARI_MAX_RETRY),
        ("Fri, 04 Dec 2026 15:00:00 GMT", timedelta(hours=3)),
        ("Fri, 04 Dec 2026 11:00:00 GMT", ARI_MIN_RETRY),  # a date past
        ("Sat, 12 Dec 2026 12:00:00 GMT", ARI_MAX_RETRY),
    ],
)
def test_ari_is_asked_again_after_retry_after_held_between_a_minute_and_a_day(
    header: str | None, wait: timedelta
) -> None:
    assert ari_retry_at(NOW, header) == NOW + wait
