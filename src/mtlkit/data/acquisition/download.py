"""Resumable HTTP(S) downloads with a progress bar."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

CONNECT_TIMEOUT_S = 10.0
"""Seconds to wait for a server to answer (and for each read) before giving up on it."""

_CHUNK = 1 << 16


class Unreachable(Exception):
    """A server could not be reached or would not serve the file; try another source."""


def download(url: str, part: Path, *, quiet: bool, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Download ``url`` into ``part``, resuming from what ``part`` already holds.

    A partial ``part`` is continued with an HTTP Range request; a server that ignores the range
    is read from the start. The caller checks the result and renames it into place.

    Raises:
        Unreachable: DNS, connection, timeout or HTTP errors. What was received stays in
            ``part`` for the next attempt.
    """
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # nothing left to send: the part is already whole
            return
        raise Unreachable(f"{url}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError) as error:
        raise Unreachable(f"{url}: {getattr(error, 'reason', error)}") from error
    with response:
        resumed = response.status == 206
        done = have if resumed else 0
        length = response.headers.get("Content-Length")
        bar = tqdm(
            total=done + int(length) if length else None,
            initial=done,
            unit="B",
            unit_scale=True,
            desc=part.name,
            disable=quiet,
            leave=False,
        )
        with bar, part.open("ab" if resumed else "wb") as out:
            try:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
            except (TimeoutError, ConnectionError, http.client.HTTPException) as error:
                raise Unreachable(f"{url}: interrupted ({error!r}); will resume") from error
