"""Stdlib-only health probe for container health checks: `python -m runtime.probe URL`."""

from __future__ import annotations

import argparse
import http.client
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DEFAULT_TIMEOUT_S = 3.0


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Report a 3xx as it is: only a 200 from the probed URL itself counts as healthy."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.probe",
        description="GET a URL; exit 0 on HTTP 200, 1 otherwise.",
    )
    parser.add_argument("url", help="e.g. http://127.0.0.1:9000/readyz")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds (default %(default)s)"
    )
    return parser.parse_args(argv)


def probe(url: str, timeout: float = DEFAULT_TIMEOUT_S) -> str | None:
    """GET `url`; None when it answered 200, else a one-line reason."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        return f"unsupported URL {url!r}: use http:// or https://"
    # No proxies (a probe talks to its own container) and no redirects.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
    headers = {"User-Agent": "trellis-probe"}
    request = urllib.request.Request(url, method="GET", headers=headers)  # noqa: S310 (checked)
    try:
        with opener.open(request, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return f"{url}: HTTP {exc.code}"
    except urllib.error.URLError as exc:
        return f"{url}: {exc.reason}"
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return f"{url}: {type(exc).__name__}: {exc}"
    return None if status == 200 else f"{url}: HTTP {status}"


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parse_args(argv)
    except SystemExit as exc:  # Docker reserves exit status 2: report usage errors as 1.
        return 0 if exc.code in (0, None) else 1
    if not args.timeout > 0:
        print("probe: --timeout must be > 0", file=sys.stderr)
        return 1
    reason = probe(args.url, args.timeout)
    if reason is None:
        return 0
    print(f"unhealthy: {reason}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
