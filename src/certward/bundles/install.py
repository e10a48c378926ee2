"""``certward bundle install``: fetch an environment's runtime bundle and put it in place.

The tarball is checked (regular files with plain relative paths only, every file
matching the manifest's digest) in a private directory beside the target, the
settings file is rewritten with absolute paths, and the directory then takes the
target's place, so a runtime never sees half a bundle.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import httpx

from certward.bundles.files import (
    MANIFEST,
    SETTINGS_FILE,
    installed_settings,
    manifest_with,
    verify_files,
)
from certward.errors import CertwardError

MAX_BUNDLE_BYTES = 64 * 1024 * 1024


class BundleInstallError(CertwardError):
    """The bundle could not be downloaded, or is not a sound bundle."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Installed:
    directory: Path
    app: str
    environment: str
    version: int
    client_certificates: int


def fetch(server: str, token: str, app: str, environment: str, version: int | None = None) -> bytes:
    """The gzipped tar of the bundle, from the certward API at ``server``."""
    url = f"{server.rstrip('/')}/api/v1/apps/{app}/environments/{environment}/runtime-bundle"
    params = {"version": str(version)} if version is not None else None
    try:
        response = httpx.get(
            url, params=params, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
    except httpx.HTTPError as exc:
        raise BundleInstallError(f"certward at {server} cannot be reached: {exc}") from exc
    if response.status_code != 200:
        try:
            detail = str(response.json().get("detail", ""))
        except ValueError:
            detail = response.text[:200]
        raise BundleInstallError(
            f"certward refused the bundle download ({response.status_code}): {detail}"
        )
    if len(response.content) > MAX_BUNDLE_BYTES:
        raise BundleInstallError("The bundle is larger than any certward bundle can be.")
    return response.content


def install(tarball: bytes, into: Path) -> Installed:
    """Unpack ``tarball`` into ``into`` (replacing what is there), paths made absolute."""
    target = into.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.incoming-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    try:
        _unpack(tarball, staging)
        manifest = json.loads((staging / MANIFEST).read_bytes())
        damaged = verify_files(manifest, lambda relative: (staging / relative).read_bytes())
        if damaged:
            raise BundleInstallError(f"The bundle is damaged: {', '.join(damaged)} do not match.")
        settings = installed_settings(manifest, str(target))
        _write(staging / SETTINGS_FILE, settings)
        _write(staging / MANIFEST, manifest_with(manifest, SETTINGS_FILE, settings))
        _swap_into_place(staging, target)
    except (OSError, ValueError, KeyError, tarfile.TarError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise BundleInstallError(f"The bundle cannot be installed: {exc}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Installed(
        directory=target,
        app=str(manifest["app"]),
        environment=str(manifest["environment"]),
        version=int(manifest["version"]),
        client_certificates=len(manifest.get("client_certificates", [])),
    )


def _unpack(tarball: bytes, directory: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        for member in archive.getmembers():
            name = PurePosixPath(member.name)
            if not member.isfile() or name.is_absolute() or ".." in name.parts or not name.parts:
                raise BundleInstallError(f"The bundle holds an unexpected entry {member.name!r}.")
            source = archive.extractfile(member)
            if source is None:
                raise BundleInstallError(f"The bundle entry {member.name!r} cannot be read.")
            path = directory.joinpath(*name.parts)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write(path, source.read())


def _write(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())


def _swap_into_place(staging: Path, target: Path) -> None:
    previous = target.parent / f".{target.name}.previous-{os.getpid()}"
    if target.exists():
        target.rename(previous)
    staging.rename(target)
    shutil.rmtree(previous, ignore_errors=True)
