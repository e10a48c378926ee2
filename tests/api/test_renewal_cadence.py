"""A month of 6-day managed certificates on a `FixedClock`: each is renewed every four
days or a little more (two thirds of its lifetime, the jitter only later), never in a
loop, and is valid all along."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from certward.authorization import Principal
from certward.expiry import CertificateStatus
from certward.issuing.ca import BACKDATE
from certward.issuing.renewal import SAFETY_FRACTION
from certward.model import ManagedCertificate
from certward.services.inventory import CertificateKind, list_inventory
from certward.services.managed import renew_due
from certward.vocabulary import Role
from tests.api.conftest import Api

ADMIN = Principal(token_id=None, role=Role.ADMIN)
LIFETIME = timedelta(days=6)
MONTH = timedelta(days=30)
FOUR_DAYS = timedelta(days=4)
STEP = timedelta(hours=1)  # how often the worker passes (the real one: every minute)
ENVIRONMENTS = 8


@pytest.fixture
def api_environ() -> dict[str, str]:
    return {"CERTWARD_MANAGED_CERT_LIFETIME": "6d"}


def test_six_day_certificates_are_renewed_every_four_days_and_stay_valid(api: Api) -> None:
    """Over 30 days: at most one renewal per certificate per 4 days (7 at most, each at
    least 4 days after the one before), every certificate renewed once and only once,
    and the inventory says valid at every pass."""
    api.create_app("shop")
    for number in range(ENVIRONMENTS):
        api.create_environment("shop", f"env{number}")
    start = api.clock.now()
    while api.clock.now() < start + MONTH:
        api.clock.advance(STEP)
        renew_due(api.context, worker="w", limit=100)
        statuses = {
            item.status
            for item in list_inventory(api.context, ADMIN, kind=CertificateKind.MANAGED, limit=1000)
        }
        assert statuses == {CertificateStatus.VALID}, api.clock.now()
    issued: dict[str, list[datetime]] = defaultdict(list)
    with api.context.database.reading() as session:
        rows = session.scalars(select(ManagedCertificate).order_by(ManagedCertificate.not_before))
        for row in rows:
            # both ends counted: notAfter is a second short of notBefore + lifetime
            assert row.not_after - row.not_before == LIFETIME - timedelta(seconds=1)
            assert row.attempts == 0
            issued[row.environment_id].append(row.not_before + BACKDATE)
            active = row.state == "active"
            assert active or row.state == "superseded"
    assert len(issued) == ENVIRONMENTS
    for moments in issued.values():
        renewals = len(moments) - 1
        assert 6 <= renewals <= MONTH // FOUR_DAYS  # 30 days / 4, rounded down
        gaps = [later - earlier for earlier, later in itertools.pairwise(moments)]
        assert min(gaps) >= FOUR_DAYS
        assert max(gaps) <= LIFETIME * (1 - SAFETY_FRACTION) + STEP  # never later than the margin
