"""How a pump reaches the repository: a directory, an in-memory mirror, or HTTPS with mutual TLS.

All of them are python-tuf ``FetcherInterface`` implementations, so the one client code path
(and every check it makes) is the same in virtual time, in tests and in the lab as over the
network. A missing file is an HTTP 404 whatever the transport: ngclient relies on that to know
when it has seen the newest root.
"""

from __future__ import annotations

import http.client
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

from tuf.api.exceptions import DownloadError, DownloadHTTPError
from tuf.ngclient.fetcher import FetcherInterface

from pumpguard.clock import Clock
from pumpguard.pki.events import tls_failure_event
from pumpguard.security_events import Component, SecurityEventSink

__all__ = [
    "LOCAL_BASE_URL",
    "DirectorySource",
    "HttpsFetcher",
    "MemorySource",
    "RepositorySource",
    "SourceFetcher",
]

LOCAL_BASE_URL = "local://updates/"
"""The base URL a ``SourceFetcher`` answers for when none is given."""

_CHUNK = 64 * 1024


@runtime_checkable
class RepositorySource(Protocol):
    """Files of a published repository by relative path (``metadata/1.root.json``)."""

    def read(self, relative_path: str) -> bytes | None: ...


def _safe_relative(relative_path: str) -> PurePosixPath | None:
    path = PurePosixPath(relative_path)
    if path.is_absolute() or not path.parts or any(p in ("..", ".", "") for p in path.parts):
        return None
    return path


class DirectorySource:
    """A published directory on disk (``UpdateRepository.published_dir`` or a copy of it)."""

    def __init__(self, directory: Path) -> None:
        self._dir = Path(directory)

    def read(self, relative_path: str) -> bytes | None:
        path = _safe_relative(relative_path)
        if path is None:
            return None
        try:
            return (self._dir / path).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None


class MemorySource:
    """A mirror held in memory: what the lab serves to thousands of pumps, and what an attacker
    who controls the mirror rewrites (``put``, ``delete``)."""

    def __init__(self, files: Mapping[str, bytes] | None = None) -> None:
        self._files = dict(files or {})

    @classmethod
    def from_directory(cls, directory: Path) -> MemorySource:
        """A frozen copy of a published directory as it is now."""
        root = Path(directory)
        files = {
            path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*"))
            if path.is_file()
        }
        return cls(files)

    def read(self, relative_path: str) -> bytes | None:
        return self._files.get(relative_path)

    def put(self, relative_path: str, data: bytes) -> None:
        self._files[relative_path] = data

    def delete(self, relative_path: str) -> None:
        self._files.pop(relative_path, None)

    def paths(self) -> tuple[str, ...]:
        return tuple(sorted(self._files))

    def copy(self) -> MemorySource:
        return MemorySource(self._files)


class SourceFetcher(FetcherInterface):
    """Serves URLs under ``base_url`` from a ``RepositorySource``; anything else is a 404."""

    def __init__(self, source: RepositorySource, base_url: str = LOCAL_BASE_URL) -> None:
        self._source = source
        self._base = base_url if base_url.endswith("/") else f"{base_url}/"

    def _fetch(self, url: str) -> Iterator[bytes]:
        if not url.startswith(self._base):
            raise DownloadHTTPError(f"{url} is outside {self._base}", 404)
        data = self._source.read(unquote(url[len(self._base) :]))
        if data is None:
            raise DownloadHTTPError(f"{url} not found", 404)
        return iter((data,))


class HttpsFetcher(FetcherInterface):
    """HTTPS with the caller's ``ssl.SSLContext`` (``pki.client_tls_context`` for mutual TLS).

    Only ``https://`` URLs are fetched: a repository reached in clear would let anyone on the
    path learn which pump runs which version, even though TUF would still refuse tampering.
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        timeout_s: float = 30.0,
        clock: Clock | None = None,
        events: SecurityEventSink | None = None,
        device_id: str | None = None,
    ) -> None:
        if context.verify_mode != ssl.CERT_REQUIRED:
            raise ValueError("the update fetcher needs a context that verifies the server")
        self._context = context
        self._timeout = timeout_s
        self._clock = clock
        self._events = events
        self._device_id = device_id

    def _tls_failure(self, url: str, exc: object) -> None:
        """A refused handshake is also a PKI event (which check refused), like every TLS user."""
        if self._events is None or self._clock is None or not isinstance(exc, ssl.SSLError):
            return
        self._events.emit(
            tls_failure_event(
                exc,
                time_ms=self._clock.now_ms(),
                component=Component.UPDATES,
                peer=urlsplit(url).netloc,
                device_id=self._device_id,
            )
        )

    def _fetch(self, url: str) -> Iterator[bytes]:
        if not url.startswith("https://"):
            raise DownloadError(f"refusing to fetch {url}: updates travel over HTTPS only")
        request = urllib.request.Request(url, method="GET")
        try:
            response = urllib.request.urlopen(request, timeout=self._timeout, context=self._context)
        except urllib.error.HTTPError as exc:
            raise DownloadHTTPError(f"{url}: HTTP {exc.code}", exc.code) from None
        except urllib.error.URLError as exc:
            self._tls_failure(url, exc.reason)
            raise DownloadError(f"{url}: {exc.reason}") from exc
        except (OSError, http.client.HTTPException) as exc:
            self._tls_failure(url, exc)
            raise DownloadError(f"{url}: {exc}") from exc
        return self._chunks(url, response)

    def _chunks(self, url: str, response: http.client.HTTPResponse) -> Iterator[bytes]:
        with response:
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    self._tls_failure(url, exc)
                    raise DownloadError(f"download of {url} interrupted: {exc}") from exc
                if not chunk:
                    return
                yield chunk
