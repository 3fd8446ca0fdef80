"""robots.txt parsing and matching (RFC 9309 plus crawl-delay and sitemap) for one user agent."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "ALLOW_ALL",
    "DISALLOW_ALL",
    "MAX_CRAWL_DELAY",
    "MAX_ROBOTS_BYTES",
    "RobotsRule",
    "RobotsRules",
    "parse_robots",
    "robots_for_status",
]

MAX_ROBOTS_BYTES: Final = 512 * 1024
MAX_CRAWL_DELAY: Final = 3600.0

# Misspellings that Google's parser also accepts; they are common in the wild.
_USER_AGENT_KEYS: Final = frozenset({"user-agent", "useragent", "user agent"})
_ALLOW_KEYS: Final = frozenset({"allow"})
_DISALLOW_KEYS: Final = frozenset(
    {"disallow", "dissallow", "dissalow", "disalow", "diasllow", "disallaw"}
)
_CRAWL_DELAY_KEYS: Final = frozenset({"crawl-delay", "crawldelay", "crawl delay"})
_SITEMAP_KEYS: Final = frozenset({"sitemap", "site-map"})

# An escape, or a character that the canonical form escapes: anything outside printable ASCII,
# a '%' that starts no escape, and literal '*' and '$' (so they cannot pass for wildcards).
_ESCAPE_OR_SPECIAL: Final = re.compile(r"%[0-9A-Fa-f]{2}|[^\x21-\x7e]|[%*$]")
_AGENT_TOKEN: Final = re.compile(r"[A-Za-z_-]+")
_SCHEME_AND_AUTHORITY: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")
_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class RobotsRule:
    """One Allow or Disallow line; `pattern` is percent-normalised, `length` counts the raw pattern."""

    allow: bool
    pattern: str
    length: int

    def matches(self, path: str) -> bool:
        pattern = self.pattern
        anchored = pattern.endswith("$")
        if anchored:
            pattern = pattern[:-1]
        pieces = pattern.split("*")
        if len(pieces) == 1:
            return path == pattern if anchored else path.startswith(pattern)
        # Leftmost greedy placement of each literal piece is exact for '*' globs and, unlike a
        # backtracking regex, stays linear on patterns such as /a*a*a*a*b.
        first, *middle, last = pieces
        if not path.startswith(first):
            return False
        position = len(first)
        for piece in middle:
            found = path.find(piece, position)
            if found < 0:
                return False
            position = found + len(piece)
        if anchored:
            return path.endswith(last) and len(path) - len(last) >= position
        return path.find(last, position) >= 0


@dataclass(frozen=True)
class RobotsRules:
    """The rules of the group that applies to our user agent, and the file's sitemaps."""

    rules: tuple[RobotsRule, ...] = ()
    crawl_delay: float | None = None
    sitemaps: tuple[str, ...] = ()

    def allowed(self, url_or_path: str) -> bool:
        """Whether an absolute URL, or a path with optional query, may be fetched."""
        path = _match_target(url_or_path)
        if path.partition("?")[0] == "/robots.txt":
            return True
        best: tuple[int, bool] | None = None
        for rule in self.rules:
            if rule.matches(path):
                # Longest pattern wins; on equal length True > False makes Allow win.
                key = (rule.length, rule.allow)
                if best is None or key > best:
                    best = key
        return best is None or best[1]


ALLOW_ALL: Final = RobotsRules()
DISALLOW_ALL: Final = RobotsRules(rules=(RobotsRule(allow=False, pattern="/", length=1),))


def robots_for_status(status: int) -> RobotsRules | None:
    """Rules implied by the status of the robots.txt fetch (RFC 9309 section 2.3.1).

    None for 2xx (parse the body). 4xx means "unavailable": allow all; so do 3xx statuses that
    reach us, since they mean the redirect chain was given up. 429 is a request to slow down,
    so like 5xx and network errors (any other status, 0 included) it disallows all.
    """
    if 200 <= status < 300:
        return None
    if 300 <= status < 500 and status != 429:
        return ALLOW_ALL
    return DISALLOW_ALL


def _canonical_char(match: re.Match[str]) -> str:
    token = match.group()
    if len(token) == 3:
        code = int(token[1:], 16)
        # RFC 9309 2.2.2 compares "%62%61%7A" equal to "baz" and "https%3A%2F%2F" equal to
        # "https://", so every printable ASCII escape is decoded.
        if 0x21 <= code <= 0x7E and chr(code) not in "%*$":
            return chr(code)
        return token.upper()
    return "".join(f"%{byte:02X}" for byte in token.encode("utf-8", "surrogatepass"))


def _normalize_path(path: str) -> str:
    """Canonical form of literal path text, so that equivalent encodings compare equal."""
    return _ESCAPE_OR_SPECIAL.sub(_canonical_char, path)


def _match_target(url_or_path: str) -> str:
    target = url_or_path.strip()
    scheme_and_authority = _SCHEME_AND_AUTHORITY.match(target)
    if scheme_and_authority:
        target = target[scheme_and_authority.end() :]
    target = target.partition("#")[0]
    if not target.startswith("/"):
        target = "/" + target
    return _normalize_path(target)


def _rule(allow: bool, raw: str) -> RobotsRule:
    anchored = raw.endswith("$")
    body = raw[:-1] if anchored else raw
    if not body.startswith(("/", "*")):
        body = "/" + body
    pattern = "*".join(_normalize_path(piece) for piece in body.split("*"))
    return RobotsRule(allow=allow, pattern=pattern + ("$" if anchored else ""), length=len(raw))


def _parse_delay(value: str) -> float | None:
    try:
        delay = float(value)
    except ValueError:
        return None
    if math.isnan(delay) or delay < 0:
        return None
    return min(delay, MAX_CRAWL_DELAY)


def _agent_token(value: str) -> str | None:
    value = value.strip()
    if value.startswith("*"):
        return "*"
    token = _AGENT_TOKEN.match(value)
    return token.group().lower() if token else None


def _split_line(line: str) -> tuple[str, str] | None:
    key, colon, value = line.partition(":")
    if colon:
        return key.strip().lower(), value.strip()
    # "Disallow /private" without the colon is a frequent mistake that Google also tolerates.
    words = line.split()
    if len(words) == 2:
        return words[0].lower(), words[1]
    return None


def _decode(text: str | bytes) -> str:
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if len(data) > MAX_ROBOTS_BYTES:
        # Drop the line cut in half: a truncated path could widen or narrow a rule.
        data = data[:MAX_ROBOTS_BYTES]
        data = data[: data.rfind(b"\n") + 1]
    return data.decode("utf-8", "replace").removeprefix("\ufeff")


@dataclass
class _Group:
    agents: list[str]
    rules: list[RobotsRule]
    delays: list[float]


def parse_robots(text: str | bytes, user_agent: str) -> RobotsRules:
    """The rules robots.txt `text` sets for `user_agent` (its product token is the part before "/").

    The group whose user-agent token is the longest case-insensitive prefix of our product token
    applies, else the "*" group; groups naming that same token are merged. Crawl-delay is the
    largest given in the merged groups, capped at MAX_CRAWL_DELAY. Only the first
    MAX_ROBOTS_BYTES are read.
    """
    product = user_agent.split("/", 1)[0].strip().lower()
    groups: list[_Group] = []
    sitemaps: dict[str, None] = {}
    current: _Group | None = None
    reading_agents = False
    for raw_line in _LINE_BREAK.split(_decode(text)):
        line = raw_line.partition("#")[0].strip()
        if not line:
            continue
        split = _split_line(line)
        if split is None:
            continue
        key, value = split
        if key in _USER_AGENT_KEYS:
            if current is None or not reading_agents:
                current = _Group(agents=[], rules=[], delays=[])
                groups.append(current)
            token = _agent_token(value)
            if token is not None:
                current.agents.append(token)
            reading_agents = True
        elif key in _SITEMAP_KEYS:
            if value:
                sitemaps[value] = None
        elif current is None:
            continue
        elif key in _ALLOW_KEYS or key in _DISALLOW_KEYS:
            reading_agents = False
            if value:
                current.rules.append(_rule(key in _ALLOW_KEYS, value))
        elif key in _CRAWL_DELAY_KEYS:
            reading_agents = False
            delay = _parse_delay(value)
            if delay is not None:
                current.delays.append(delay)

    chosen = _choose_token(groups, product)
    selected = [group for group in groups if chosen is not None and chosen in group.agents]
    delays = [delay for group in selected for delay in group.delays]
    return RobotsRules(
        rules=tuple(rule for group in selected for rule in group.rules),
        crawl_delay=max(delays) if delays else None,
        sitemaps=tuple(sitemaps),
    )


def _choose_token(groups: list[_Group], product: str) -> str | None:
    best: str | None = None
    for group in groups:
        for agent in group.agents:
            if (
                agent != "*"
                and product.startswith(agent)
                and (best is None or len(agent) > len(best))
            ):
                best = agent
    if best is not None:
        return best
    return "*" if any("*" in group.agents for group in groups) else None
