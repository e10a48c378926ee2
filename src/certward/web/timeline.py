"""The expiry timeline of the certificate inventory: what expires or renews, and when.

Drawn on the server as inline SVG (no chart library, nothing to run in the browser):
one lane per kind of certificate, one mark per expiry (coloured by status) and per
scheduled renewal of a managed certificate, over the next 90 days. The geometry is
computed here; the template only writes it out, escaping every label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from certward.expiry import CertificateStatus
from certward.services.inventory import CertificateKind, InventoryItem

WINDOW = timedelta(days=90)
WIDTH = 1000
LEFT = 150  # room for the lane names
RIGHT = 20
TOP = 30
LANE_HEIGHT = 44
TICK_DAYS = 15

_LANES: tuple[tuple[CertificateKind, str], ...] = (
    (CertificateKind.MANAGED, "Managed"),
    (CertificateKind.CUSTOM_DOMAIN, "Custom domain"),
    (CertificateKind.CLIENT, "Client"),
    (CertificateKind.AUTHORITY, "Authority"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineMark:
    """One event: ``event`` is ``expires`` or ``renews``; ``label`` names the certificate."""

    x: float
    y: float
    event: str
    status: CertificateStatus
    at: datetime
    label: str
    kind: CertificateKind


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineTick:
    x: float
    label: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineLane:
    y: float
    label: str
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpiryTimeline:
    """Everything the template needs to draw the chart, in SVG user units."""

    width: int
    height: int
    left: int
    right: int
    top: int
    start: datetime
    end: datetime
    lanes: tuple[TimelineLane, ...]
    ticks: tuple[TimelineTick, ...]
    marks: tuple[TimelineMark, ...]
    expiring: int
    renewing: int

    @property
    def summary(self) -> str:
        """The chart in one sentence, for people who cannot see it."""
        return (
            f"{self.expiring} certificate expir{'y' if self.expiring == 1 else 'ies'} and "
            f"{self.renewing} scheduled renewal{'' if self.renewing == 1 else 's'} between "
            f"{self.start:%Y-%m-%d} and {self.end:%Y-%m-%d}."
        )


def expiry_timeline(items: Sequence[InventoryItem], *, start: datetime) -> ExpiryTimeline:
    """Place every expiry and renewal falling in ``[start, start + 90 days]``."""
    end = start + WINDOW
    span = WIDTH - LEFT - RIGHT
    lane_y = {
        kind: TOP + LANE_HEIGHT * index + LANE_HEIGHT / 2 for index, (kind, _) in enumerate(_LANES)
    }

    def x_of(at: datetime) -> float:
        return round(LEFT + span * ((at - start) / WINDOW), 1)

    marks: list[TimelineMark] = []
    counts = dict.fromkeys(lane_y, 0)  # certificates with an event in the window
    for item in items:
        label = _label(item)
        events = [("expires", item.not_after)]
        if item.renew_after is not None:
            events.append(("renews", item.renew_after))
        placed = False
        for event, at in events:
            if at is None or not start <= at <= end:
                continue
            placed = True
            offset = -8 if event == "renews" else 8
            marks.append(
                TimelineMark(
                    x=x_of(at),
                    y=lane_y[item.kind] + offset,
                    event=event,
                    status=item.status,
                    at=at,
                    label=label,
                    kind=item.kind,
                )
            )
        counts[item.kind] += placed
    ticks = tuple(
        TimelineTick(x=x_of(start + timedelta(days=d)), label=f"{start + timedelta(days=d):%b %d}")
        for d in range(0, WINDOW.days + 1, TICK_DAYS)
    )
    lanes = tuple(
        TimelineLane(y=lane_y[kind], label=name, count=counts[kind]) for kind, name in _LANES
    )
    return ExpiryTimeline(
        width=WIDTH,
        height=TOP + LANE_HEIGHT * len(_LANES) + 10,
        left=LEFT,
        right=RIGHT,
        top=TOP,
        start=start,
        end=end,
        lanes=lanes,
        ticks=ticks,
        marks=tuple(sorted(marks, key=lambda m: m.at)),
        expiring=sum(1 for m in marks if m.event == "expires"),
        renewing=sum(1 for m in marks if m.event == "renews"),
    )


def _label(item: InventoryItem) -> str:
    where = f"{item.app}/{item.environment}" if item.environment else item.app
    name = ", ".join(item.hostnames) if item.hostnames else (item.subject or item.id)
    return f"{name} ({item.kind.value}, {where})"
