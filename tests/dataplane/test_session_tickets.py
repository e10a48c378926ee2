"""nginx's session-ticket keys: secret files, rotated on schedule, two kept."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

from certward.dataplane.session_tickets import KEY_BYTES, ticket_key_files
from certward.dataplane.tls_policy import NginxTls

ROTATION = timedelta(hours=12)


def test_keys_are_private_rotated_on_schedule_and_two_kept(tmp_path: Path) -> None:
    directory = tmp_path / "ticket-keys"
    now = 1_800_000_000.0
    first = ticket_key_files(directory, rotation=ROTATION, now=now)
    assert len(first) == 1
    key = Path(first[0])
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert len(key.read_bytes()) == KEY_BYTES
    os.utime(key, (now, now))

    assert ticket_key_files(directory, rotation=ROTATION, now=now + 3600) == first
    second = ticket_key_files(directory, rotation=ROTATION, now=now + ROTATION.total_seconds())
    assert second[1:] == first  # the old key still decrypts
    assert Path(second[0]).read_bytes() != key.read_bytes()
    os.utime(second[0], (now + 43200, now + 43200))

    third = ticket_key_files(directory, rotation=ROTATION, now=now + 2 * ROTATION.total_seconds())
    assert third[1:] == second[:1]
    assert not key.exists()  # two kept, the oldest removed
    assert sorted(p.name for p in directory.iterdir()) == sorted(Path(p).name for p in third)


def test_nginx_gets_the_key_files_newest_first() -> None:
    lines = NginxTls(ticket_key_files=("/k/2.key", "/k/1.key")).directives()
    assert "ssl_session_tickets on;" in lines
    keys = [line for line in lines if line.startswith("ssl_session_ticket_key")]
    assert keys == ['ssl_session_ticket_key "/k/2.key";', 'ssl_session_ticket_key "/k/1.key";']
    assert "ssl_session_tickets off;" in NginxTls().directives()
