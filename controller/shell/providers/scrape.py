"""Scraping one pod's ``/metrics`` over HTTP, for the direct provider: the target, one fetch.

A fetch is all or nothing, as in Prometheus: an HTTP status other than 200, a body over the
limit, a timeout or a connection error is :class:`ScrapeFailed` with a message that says which.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp

ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class PodTarget:
    """A pod to scrape: ``http://ip:port/path``; `labels` are extra target labels."""

    name: str
    ip: str
    port: int
    path: str = "/metrics"
    labels: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def url(self) -> str:
        """The scrape URL (IPv6 addresses in brackets)."""
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        path = self.path if self.path.startswith("/") else f"/{self.path}"
        return f"http://{host}:{self.port}{path}"

    @property
    def instance(self) -> str:
        """``ip:port``, Prometheus' ``instance`` label."""
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{host}:{self.port}"


class ScrapeFailed(Exception):
    """One scrape of one pod failed; the message says why."""


async def fetch_exposition(
    session: aiohttp.ClientSession, target: PodTarget, timeout: float, max_body_bytes: int
) -> str:
    """The body of ``GET target.url``; ScrapeFailed for anything but a valid 200."""
    url = target.url
    try:
        async with session.get(
            url,
            headers={"Accept": ACCEPT},
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as response:
            if response.status != 200:
                raise ScrapeFailed(f"{url}: HTTP {response.status}")
            if (response.content_length or 0) > max_body_bytes:
                raise ScrapeFailed(f"{url}: body over {max_body_bytes} bytes")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > max_body_bytes:
                    raise ScrapeFailed(f"{url}: body over {max_body_bytes} bytes")
                chunks.append(chunk)
        text = b"".join(chunks).decode("utf-8", errors="replace")
        return text
    except TimeoutError:
        raise ScrapeFailed(f"{url}: no complete answer within {timeout:g}s") from None
    except aiohttp.ClientConnectorError as exc:
        reason = exc.os_error.strerror or str(exc.os_error)
        raise ScrapeFailed(f"{url}: cannot connect: {reason}") from None
    except aiohttp.ClientError as exc:
        raise ScrapeFailed(f"{url}: {type(exc).__name__}: {exc}") from None
    except RuntimeError as exc:  # the session was closed under us by close()
        raise ScrapeFailed(f"{url}: {exc}") from None
