"""Certificate status from dates and, for certificates certward renews, from the renewal."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from certward.expiry import (
    NO_RENEWAL_ATTEMPTED,
    CertificateStatus,
    Renewal,
    certificate_status,
    renewal_overdue_at,
    standing,
)
from certward.issuing.renewal import renew_after

START = datetime(2026, 12, 1, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.mark.parametrize("lifetime_days", [6, 7, 47, 100, 200])
def test_a_certificate_certward_renews_is_valid_until_its_renewal_is_overdue(
    lifetime_days: int,
) -> None:
    """Fresh, near its end but with the renewal not yet late: valid, whatever its lifetime."""
    lifetime = lifetime_days * DAY
    due = renew_after(START, START + lifetime, rng=random.Random(lifetime_days))
    renewal = Renewal(renew_after=due)
    overdue = renewal_overdue_at(START, START + lifetime, due)
    for at in (START, due, overdue):
        result = standing(START, START + lifetime, at=at, renewal=renewal)
        assert (result.status, result.reason) == (CertificateStatus.VALID, None)
    late = standing(START, START + lifetime, at=overdue + timedelta(seconds=1), renewal=renewal)
    assert late.status is CertificateStatus.EXPIRES_SOON
    assert late.reason == f"renewal overdue: {NO_RENEWAL_ATTEMPTED}"
    assert overdue < START + lifetime  # told before it expires


def test_the_grace_is_a_tenth_of_the_lifetime_and_at_least_an_hour() -> None:
    """A 7-day certificate is overdue 16.8 hours after renew_after, a 5-hour one after 1 hour."""
    week_due = START + 4 * DAY
    assert renewal_overdue_at(START, START + 7 * DAY, week_due) == week_due + timedelta(hours=16.8)
    short_due = START + timedelta(hours=3)
    assert renewal_overdue_at(START, START + timedelta(hours=5), short_due) == short_due + (
        timedelta(hours=1)
    )


def test_an_overdue_renewal_names_its_last_failure() -> None:
    """The reason carries the failures so far and the last error recorded."""
    renewal = Renewal(renew_after=START + 4 * DAY, attempts=3, last_error="ACME renewal failed: x")
    result = standing(START, START + 7 * DAY, at=START + 6 * DAY, renewal=renewal)
    assert result.status is CertificateStatus.EXPIRES_SOON
    assert result.reason == "renewal overdue: 3 failed attempt(s), last: ACME renewal failed: x"


def test_expired_and_upcoming_do_not_depend_on_the_renewal() -> None:
    """Past notAfter it is expired, before notBefore upcoming, renewed by certward or not."""
    renewal = Renewal(renew_after=START + 4 * DAY)
    end = START + 7 * DAY
    assert certificate_status(START, end, at=end + DAY, renewal=renewal) is (
        CertificateStatus.EXPIRED
    )
    assert certificate_status(START, end, at=START - DAY, renewal=renewal) is (
        CertificateStatus.UPCOMING
    )
    assert certificate_status(None, None, at=START, renewal=renewal) is CertificateStatus.PENDING


def test_an_uploaded_certificate_follows_its_window() -> None:
    """30 days by default, with the window in the reason; a configured window moves it."""
    end = START + 365 * DAY
    assert certificate_status(START, end, at=end - 31 * DAY) is CertificateStatus.VALID
    result = standing(START, end, at=end - 20 * DAY)
    assert result.status is CertificateStatus.EXPIRES_SOON
    assert result.reason == "expires within 30 days and is not renewed by certward"
    assert certificate_status(START, end, at=end - 20 * DAY, soon=14 * DAY) is (
        CertificateStatus.VALID
    )
    assert standing(START, end, at=end - DAY, soon=timedelta(hours=36)).reason == (
        "expires within 36 hours and is not renewed by certward"
    )


def test_a_short_uploaded_certificate_is_expires_soon_all_its_life() -> None:
    """A 7-day uploaded certificate is inside a 30-day window from its first minute: nobody
    but a person replaces it, so it is news (a shorter window for its kind changes that)."""
    end = START + 7 * DAY
    assert certificate_status(START, end, at=START) is CertificateStatus.EXPIRES_SOON
    assert certificate_status(START, end, at=START, soon=2 * DAY) is CertificateStatus.VALID
    assert certificate_status(START, end, at=end - DAY, soon=2 * DAY) is (
        CertificateStatus.EXPIRES_SOON
    )
