"""Runs syncs: the durable frontier, robots and politeness, credentials and login sessions, fetching,
extraction, document events."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import nats.js.errors
from nats.js.kv import KeyValue

from contracts import subjects, topology
from contracts.crawl import FrontierUrl
from contracts.envelope import EnvelopeMeta
from contracts.index import (
    DocumentAdded,
    DocumentDeleted,
    DocumentModified,
    IndexDropped,
    SourceDocument,
)
from documents.extract import ExtractedDocument
from documents.formats import extract_for
from runtime.bus import Bus
from runtime.cache import TtlCache
from runtime.errors import NotFound, ValidationFailed
from runtime.kv import ResourceStore, scan
from services.crawler.adapters.fetcher import (
    Access,
    Fetched,
    Fetcher,
    ProxyAccess,
    cookies_from_json,
    cookies_to_json,
)
from services.crawler.adapters.host_slots import SharedSlots
from services.crawler.adapters.secret_store import SecretStore
from services.crawler.domain.networks import NetworkPolicy
from services.crawler.domain.politeness import Politeness, missed
from services.crawler.domain.records import (
    DELETING,
    MAX_ERRORS,
    DataSourceRecord,
    KnownPage,
    LoginSession,
    SyncError,
    SyncJob,
)
from services.crawler.domain.robots import RobotsRules, parse_robots, robots_for_status
from services.crawler.domain.secrets import Credentials
from services.crawler.domain.settings import CrawlSettings, parse_data_source
from services.crawler.domain.sitemaps import lastmod_bound, parse_sitemap
from services.crawler.domain.sync import (
    SyncStatus,
    deletions_allowed,
    parse_schedule,
    transition,
)
from services.crawler.domain.urls import compile_filters, host_key, in_scope, normalize_url

log = logging.getLogger("trellis.crawler")
CONTENT_TYPES = {
    "text/html": "HTML",
    "application/xhtml+xml": "HTML",
    "text/plain": "PLAIN_TEXT",
    "text/markdown": "MD",
    "text/x-markdown": "MD",
    "application/json": "JSON",
    "text/csv": "CSV",
    "application/pdf": "PDF",
    "application/x-pdf": "PDF",
}
# Servers that do not know a file's type send one of these: the body's signature decides.
GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})
DELETION_THRESHOLD = 0.15
# A page's stored links stay well inside a NATS message; a page with more is always refetched.
MAX_STORED_LINK_CHARACTERS = 256 * 1024
# A login still pending after this long was left by a replica that died: another one retakes it.
LOGIN_STALE_S = 90.0
LOGIN_WAIT_S = 120.0
# How often a URL waiting for its host's turn looks whether its sync was stopped meanwhile.
STOP_CHECK_S = 1.0
# A URL woken too late for its slot (a busy event loop) claims another, this many times at most:
# then it starts anyway, so that a replica always late still makes progress.
LATE_CLAIMS = 2


def url_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:40]


class SyncStopped(Exception):
    """The sync was stopped while a URL of it was being handled."""


class LoginFailed(Exception):
    """The sync's form login did not give a session."""


@dataclass
class Outcome:
    """What processing one frontier URL found: counters, new links, an error."""

    counters: Counter[str]
    links: list[str]
    error: str | None = None
    sitemaps: list[str] = field(default_factory=list)  # from sitemap indexes and robots.txt
    from_sitemap: bool = False  # a sitemap's pages count as entry points (depth 1)
    lastmods: dict[str, datetime] = field(default_factory=dict)  # a sitemap's page -> lastmod


class CrawlEngine:
    def __init__(
        self,
        bus: Bus,
        sources: ResourceStore[DataSourceRecord],
        jobs: ResourceStore[SyncJob],
        pages: KeyValue,
        seen: KeyValue,
        policy: NetworkPolicy,
        secrets: SecretStore,
        sessions: KeyValue,
        rates: KeyValue,
    ) -> None:
        self.bus = bus
        self.sources = sources
        self.jobs = jobs
        self.pages = pages
        self.seen = seen
        self.policy = policy
        self.secrets = secrets
        self.sessions = sessions
        self.slots = SharedSlots(rates)
        self._fetchers: dict[tuple[str, ProxyAccess | None], Fetcher] = {}
        self._politeness: dict[str, Politeness] = {}
        self._robots: dict[tuple[str, str], RobotsRules] = {}
        self._job_cache = TtlCache(ttl_s=0.5)
        self._source_cache = TtlCache(ttl_s=2.0)
        # Unsealed credentials, briefly: a changed secret value applies within this bound.
        self._credentials = TtlCache(ttl_s=30.0)
        self._logins: dict[str, httpx.Cookies] = {}
        self._login_locks: dict[str, asyncio.Lock] = {}

    def fetcher(self, settings: CrawlSettings, proxy: ProxyAccess | None = None) -> Fetcher:
        """One HTTP client per user agent and proxy (a proxy is a client-wide setting)."""
        key = (settings.user_agent, proxy)
        fetcher = self._fetchers.get(key)
        if fetcher is None:
            fetcher = Fetcher(self.policy, user_agent=settings.user_agent, proxy=proxy)
            self._fetchers[key] = fetcher
        return fetcher

    # -- starting ----------------------------------------------------------------------------

    async def start(self, source: DataSourceRecord, mode: str) -> SyncJob:
        settings = parse_data_source(source.type, source.configuration)
        for existing in await self.jobs_of(source.id):
            if existing.status in (SyncStatus.SYNCING, SyncStatus.SYNCING_INDEXING):
                raise ValidationFailed(
                    f"data source {source.id} is already syncing ({existing.id})"
                )
        if source.status == DELETING:
            raise ValidationFailed(f"data source {source.id} is being deleted")
        job = SyncJob(
            id=uuid.uuid4().hex,
            source_id=source.id,
            index_id=source.index_id,
            source_updated_at=source.updated_at,
            mode=mode,
            started_at=datetime.now(UTC),
            updated_at=datetime.now(UTC),
        )
        entries = [(url, "page") for url in settings.seeds] + [
            (url, "sitemap") for url in settings.sitemaps
        ]
        entries = [(url, kind) for url, kind in entries if await self._claim(job.id, url)]
        job.queued = len(entries)
        await self.jobs.create(f"{source.id}.{job.id}", job)
        for url, kind in entries:
            await self._emit(job, url, 1, kind)
        if not entries:
            await self._finish(job.id, source.id)
        return job

    async def jobs_of(self, source_id: str) -> list[SyncJob]:
        store = ResourceStore(
            self.jobs.kv, SyncJob, "sync job", prefix=f"{self.jobs.prefix}{source_id}."
        )
        return [v.value for v in await store.list()]

    async def _claim(self, sync_id: str, url: str) -> bool:
        """True the first time any replica sees `url` in this sync (the seen-set lives in KV)."""
        try:
            await self.seen.create(f"{sync_id}.{url_key(url)}", b"1")
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        return True

    async def _emit(
        self, job: SyncJob, url: str, depth: int, kind: str, lastmod: datetime | None = None
    ) -> None:
        await self.bus.emit(
            subjects.CRAWL_FRONTIER_QUEUED,
            FrontierUrl(
                source_id=job.source_id,
                sync_id=job.id,
                url=url,
                depth=depth,
                kind="sitemap" if kind == "sitemap" else "page",
                queued_at=datetime.now(UTC),
                lastmod=lastmod,
            ),
        )

    # -- one frontier URL ------------------------------------------------------------------

    async def handle(self, item: FrontierUrl, _: EnvelopeMeta) -> None:
        key = f"{item.source_id}.{item.sync_id}"
        try:
            job: SyncJob = await self._job_cache.get(key, lambda: self._job(key))
            source: DataSourceRecord = await self._source_cache.get(
                item.source_id, lambda: self._source(item.source_id)
            )
            if job.source_updated_at is not None and source.updated_at < job.source_updated_at:
                source = await self._source(item.source_id)  # saved just before the sync began
        except NotFound:
            return  # the source or its job was deleted: drop what is left of its frontier
        if job.status != SyncStatus.SYNCING:
            self._forget(job.id)
            return  # stopped or finished: the rest of its frontier is dropped
        settings = parse_data_source(source.type, source.configuration)
        try:
            outcome = await self._process(item, job, source, settings)
        except SyncStopped:
            return
        fresh: list[tuple[str, int, str]] = []
        for sitemap in outcome.sitemaps:
            if await self._claim(job.id, sitemap):
                fresh.append((sitemap, 1, "sitemap"))
        if outcome.from_sitemap:
            pages = [(link, 1) for link in outcome.links]
        elif item.depth < max(settings.depth, 1):
            pages = [
                (link, item.depth + 1) for link in outcome.links[: settings.max_links_per_page]
            ]
        else:
            pages = []
        filters = compile_filters(settings.filters)
        entry_points = settings.seeds or settings.sitemaps
        skipped: Counter[str] = Counter()
        for link, depth in pages:
            # Judged before queueing: off-site links would otherwise cross the frontier for nothing.
            if not in_scope(link, entry_points, settings.scope):
                skipped["skipped_scope"] += 1
            elif not filters.may_crawl(link):
                skipped["skipped_pattern"] += 1
            elif await self._claim(job.id, link):
                fresh.append((link, depth, "page"))
        outcome.counters.update(skipped)
        if fresh:
            # Counted before they are queued: the sync must not look finished while they wait.
            await self.jobs.mutate(
                key,
                lambda j: j.model_copy(
                    update={"queued": j.queued + len(fresh), "updated_at": datetime.now(UTC)}
                ),
                attempts=50,
            )
            for link, depth, kind in fresh:
                lastmod = outcome.lastmods.get(link) if kind == "page" else None
                await self._emit(job, link, depth, kind, lastmod)
        await self._record(key, outcome, item.url)

    async def _still_syncing(self, job: SyncJob) -> None:
        key = f"{job.source_id}.{job.id}"
        current: SyncJob = await self._job_cache.get(key, lambda: self._job(key))
        if current.status != SyncStatus.SYNCING:
            raise SyncStopped(job.id)

    async def _job(self, key: str) -> SyncJob:
        return (await self.jobs.get(key)).value

    async def _source(self, source_id: str) -> DataSourceRecord:
        return (await self.sources.get(source_id)).value

    async def _robots_for(
        self, settings: CrawlSettings, url: str, job: SyncJob
    ) -> RobotsRules | str | None:
        """The host's robots rules; a string when the host may not be contacted at all."""
        if not settings.respect_robots:
            return None
        host = host_key(url)
        cached = self._robots.get((job.id, host))
        if cached is not None:
            return cached
        origin = url.split("/", 3)
        robots_url = f"{origin[0]}//{origin[2]}/robots.txt"
        fetched = await self._fetch(job, settings, robots_url, max_bytes=512 * 1024)
        if fetched.refused:
            return fetched.error or "refused"
        rules = robots_for_status(fetched.status if fetched.error is None else 0)
        if rules is None:
            rules = parse_robots(fetched.body, settings.user_agent)
        self._robots[(job.id, host)] = rules
        politeness = self._politeness_of(job, settings)
        politeness.set_crawl_delay(host, rules.crawl_delay)
        return rules

    def _politeness_of(self, job: SyncJob, settings: CrawlSettings) -> Politeness:
        politeness = self._politeness.get(job.id)
        if politeness is None:
            politeness = Politeness(settings.urls_per_minute)
            self._politeness[job.id] = politeness
        return politeness

    async def _polite_get(
        self, job: SyncJob, settings: CrawlSettings, url: str, known: KnownPage | None
    ) -> Fetched:
        """GET `url` when the host's politeness allows; conditional on `known`'s validators."""
        politeness = self._politeness_of(job, settings)
        host = host_key(url)
        # Without a rate limit a robots.txt Crawl-delay alone spaces the fetches; with neither,
        # nothing does and no slot is claimed.
        interval = politeness.interval_s(host)
        if interval > 0:
            await self._claim_turn(job, host, interval)
        while True:
            # This replica's own starts: a late wake-up must not bunch its next fetches together.
            wait = politeness.acquire(host, time.monotonic())
            if wait <= 0:
                break
            await self._pause(job, wait)
        await self._still_syncing(job)  # stopped while this URL waited for its turn
        return await self._fetch(
            job,
            settings,
            url,
            max_bytes=settings.max_bytes,
            headers=dict(settings.headers),
            etag=known.etag if known else None,
            last_modified=known.last_modified if known else None,
        )

    async def _claim_turn(self, job: SyncJob, host: str, interval: float) -> None:
        """Wait for a start slot of `host` from the schedule that every replica of the sync shares."""
        for _ in range(LATE_CLAIMS + 1):
            start = await self.slots.claim(job.id, host, interval)
            await self._pause(job, start - time.time())
            # Late, the start would crowd the next slot, which another replica may hold.
            if not missed(start, time.time(), interval):
                return

    async def _pause(self, job: SyncJob, seconds: float) -> None:
        """Sleep `seconds`; SyncStopped as soon as the sync is seen stopped meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, STOP_CHECK_S))
            if left > STOP_CHECK_S:
                await self._still_syncing(job)

    # -- credentials, proxy and login --------------------------------------------------------

    async def _fetch(
        self,
        job: SyncJob,
        settings: CrawlSettings,
        url: str,
        *,
        max_bytes: int,
        headers: dict[str, str] | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> Fetched:
        """GET through the source's proxy, with its credentials and its sync's login session."""
        try:
            proxy, basic = await self._credentials.get(
                (job.id, settings.proxy, settings.basic_auth),
                lambda: self._resolve_credentials(settings),
            )
            fetcher = self.fetcher(settings, proxy)
            access = Access(basic=basic)
            if settings.form_login is not None:
                cookies = await self._login_session(job, settings, fetcher, access)
                access = Access(basic=basic, cookies=cookies)
        except (NotFound, ValidationFailed) as exc:
            await self._fail_sync(job, f"credentials: {exc.message}")
            raise SyncStopped(job.id) from None
        except LoginFailed as exc:
            await self._fail_sync(job, f"form login failed: {exc}")
            raise SyncStopped(job.id) from None
        return await fetcher.get(
            url,
            max_bytes=max_bytes,
            headers=headers,
            etag=etag,
            last_modified=last_modified,
            access=access,
        )

    async def _resolve_credentials(
        self, settings: CrawlSettings
    ) -> tuple[ProxyAccess | None, dict[str, Credentials]]:
        proxy = None
        if settings.proxy is not None:
            reference = settings.proxy.credentials
            proxy = ProxyAccess(
                settings.proxy.host,
                settings.proxy.port,
                await self.secrets.credentials(reference) if reference else None,
            )
        basic = {
            b.host_port: await self.secrets.credentials(b.credentials) for b in settings.basic_auth
        }
        return proxy, basic

    async def _login_session(
        self, job: SyncJob, settings: CrawlSettings, fetcher: Fetcher, access: Access
    ) -> httpx.Cookies:
        """The sync's login cookies: logged in once per sync, whichever replica comes first."""
        cached = self._logins.get(job.id)
        if cached is not None:
            return cached
        async with self._login_locks.setdefault(job.id, asyncio.Lock()):
            cached = self._logins.get(job.id)
            if cached is None:
                cached = await self._shared_login(job, settings, fetcher, access)
                self._logins[job.id] = cached
        return cached

    async def _read_login(self, sync_id: str) -> tuple[LoginSession, int] | None:
        try:
            entry = await self.sessions.get(sync_id)
        except nats.js.errors.KeyNotFoundError:
            return None
        if not entry.value:
            return None  # deleted
        state = LoginSession.model_validate_json(self.secrets.unseal(entry.value))
        return state, int(entry.revision or 0)

    async def _write_login(
        self, sync_id: str, state: LoginSession, revision: int | None
    ) -> int | None:
        """Store `state`, created if `revision` is None, else only over that revision; the new
        revision, or None when another replica wrote first."""
        sealed = self.secrets.seal(state.model_dump_json().encode())
        try:
            if revision is None:
                return int(await self.sessions.create(sync_id, sealed))
            return int(await self.sessions.update(sync_id, sealed, last=revision))
        except nats.js.errors.KeyWrongLastSequenceError:
            return None

    async def _shared_login(
        self, job: SyncJob, settings: CrawlSettings, fetcher: Fetcher, access: Access
    ) -> httpx.Cookies:
        deadline = time.monotonic() + LOGIN_WAIT_S
        while True:
            stored = await self._read_login(job.id)
            pending = LoginSession(status="pending", started_at=time.time())
            claimed: int | None = None
            if stored is None:
                claimed = await self._write_login(job.id, pending, None)
            else:
                state, revision = stored
                if state.status == "ready":
                    return cookies_from_json(state.cookies)
                if state.status == "failed":
                    raise LoginFailed(state.error or "unknown error")
                if time.time() - state.started_at > LOGIN_STALE_S:
                    claimed = await self._write_login(job.id, pending, revision)
            if claimed is not None:
                return await self._login(job, settings, fetcher, access, claimed)
            if time.monotonic() > deadline:
                raise LoginFailed("another replica's login did not finish in time")
            await asyncio.sleep(0.1)

    async def _login(
        self,
        job: SyncJob,
        settings: CrawlSettings,
        fetcher: Fetcher,
        access: Access,
        claimed: int,
    ) -> httpx.Cookies:
        """Post the login form (this replica claimed it at revision `claimed`), share the outcome."""
        form = settings.form_login
        assert form is not None
        error: str | None = None
        cookies = httpx.Cookies()
        try:
            credentials = await self.secrets.credentials(form.credentials)
        except (NotFound, ValidationFailed) as exc:
            error = f"credentials: {exc.message}"
        else:
            fields = {
                **dict(form.extra_fields),
                form.username_field: credentials.username,
                form.password_field: credentials.password,
            }
            fetched, cookies = await fetcher.login(
                form.login_url, fields, access=access, secrets=[credentials.password]
            )
            if fetched.error is not None and not fetched.too_large:
                error = fetched.error
            elif fetched.status >= 400:
                error = f"HTTP {fetched.status} from {fetched.url}"
            elif not cookies.jar:
                error = f"the login at {form.login_url} set no cookie"
        state = LoginSession(
            status="failed" if error else "ready",
            started_at=time.time(),
            cookies=[] if error else cookies_to_json(cookies),
            error=error,
        )
        # Not written if another replica took the login over meanwhile: its outcome stands.
        await self._write_login(job.id, state, claimed)
        if error is not None:
            raise LoginFailed(error)
        return cookies

    async def _fail_sync(self, job: SyncJob, message: str) -> None:
        key = f"{job.source_id}.{job.id}"

        def failed(current: SyncJob) -> SyncJob:
            if current.status != SyncStatus.SYNCING:
                return current
            return _failed(current, message[:500])

        with contextlib.suppress(NotFound, ValidationFailed):
            await self.jobs.mutate(key, failed, attempts=50)
        self._job_cache.clear()
        self._forget(job.id)

    async def _drop_login(self, sync_id: str) -> None:
        """Delete an ended sync's session (a read first: most syncs have none to delete)."""
        with contextlib.suppress(nats.js.errors.KeyNotFoundError):
            await self.sessions.get(sync_id)
            await self.sessions.delete(sync_id)

    def _forget(self, sync_id: str) -> None:
        """Drop what this replica keeps for a sync that ended."""
        self._politeness.pop(sync_id, None)
        self.slots.forget(sync_id)
        self._logins.pop(sync_id, None)
        self._login_locks.pop(sync_id, None)
        for robots_key in [k for k in self._robots if k[0] == sync_id]:
            del self._robots[robots_key]

    async def _process(
        self, item: FrontierUrl, job: SyncJob, source: DataSourceRecord, settings: CrawlSettings
    ) -> Outcome:
        counters: Counter[str] = Counter()
        filters = compile_filters(settings.filters)
        url = item.url
        if item.kind == "page":
            if not in_scope(url, settings.seeds or settings.sitemaps, settings.scope):
                counters["skipped_scope"] += 1
                return Outcome(counters, [])
            if not filters.may_crawl(url):
                counters["skipped_pattern"] += 1
                return Outcome(counters, [])
        first_visit = (job.id, host_key(url)) not in self._robots
        robots = await self._robots_for(settings, url, job)
        tracking = settings.tracking_parameters
        robots_sitemaps = (
            [u for u in (normalize_url(x, tracking=tracking) for x in robots.sitemaps) if u]
            if first_visit and isinstance(robots, RobotsRules)
            else []
        )
        outcome = await self._visit(item, job, source, settings, robots, counters)
        outcome.sitemaps.extend(robots_sitemaps)
        return outcome

    async def _visit(
        self,
        item: FrontierUrl,
        job: SyncJob,
        source: DataSourceRecord,
        settings: CrawlSettings,
        robots: RobotsRules | str | None,
        counters: Counter[str],
    ) -> Outcome:
        url = item.url
        filters = compile_filters(settings.filters)
        if isinstance(robots, str):
            counters["failed"] += 1
            return Outcome(counters, [], robots)
        if robots is not None and not robots.allowed(url):
            counters["skipped_robots"] += 1
            return Outcome(counters, [])
        known = await self._known(source.id, url)
        reusable = known is not None and job.mode == "FULL_CRAWL" and _reusable(known, source)
        if (
            reusable
            and known is not None
            and known.fetched_at is not None
            and item.kind == "page"
            and item.lastmod is not None
            and item.lastmod <= known.fetched_at
            and filters.may_index(url)
        ):
            # The sitemap says the page has not changed since it was fetched: no request.
            return await self._unchanged(job, source, known, known.fetched_at, counters)
        fetched_at = datetime.now(UTC)
        fetched = await self._polite_get(job, settings, url, known if reusable else None)
        counters["scanned"] += 1
        if fetched.too_large:
            counters["skipped_size"] += 1
            return Outcome(counters, [])
        if fetched.error is not None:
            counters["failed"] += 1
            return Outcome(counters, [], fetched.error)
        if item.kind == "sitemap":
            return self._sitemap(fetched, counters, settings)
        if fetched.status == 304 and known is not None:
            return await self._unchanged(job, source, known, fetched_at, counters)
        if not fetched.ok:
            counters["failed"] += 1
            return Outcome(counters, [], f"HTTP {fetched.status}")
        content_type = _content_type(fetched)
        if content_type is None:
            counters["skipped_pattern"] += 1
            return Outcome(counters, [], f"unsupported content type {fetched.content_type!r}")
        if content_type != "HTML" and not settings.crawl_attachments:
            counters["skipped_pattern"] += 1
            return Outcome(counters, [])
        try:
            if content_type == "PDF":
                # Seconds of CPU for a large file: the bus connection's loop must keep running.
                extracted = await asyncio.to_thread(
                    extract_for, content_type, fetched.body, base_url=fetched.url
                )
            else:
                extracted = extract_for(content_type, fetched.body, base_url=fetched.url)
        except ValidationFailed as exc:
            counters["failed"] += 1
            return Outcome(counters, [], exc.message)
        links = self._links(extracted, settings)
        if not filters.may_index(url) or (content_type == "HTML" and extracted.robots_noindex):
            counters["skipped_pattern"] += 1
            return Outcome(counters, links)
        # Kept when a later sync may not read the body again (a 304, an unchanged lastmod), so
        # the pages reached only through this one are still reached.
        followed = links[: settings.max_links_per_page]
        revisitable = (
            item.lastmod is not None
            or "etag" in fetched.headers
            or "last-modified" in fetched.headers
        ) and sum(len(link) for link in followed) <= MAX_STORED_LINK_CHARACTERS
        page = KnownPage(
            url=url,
            content_hash="",
            etag=fetched.headers.get("etag"),
            last_modified=fetched.headers.get("last-modified"),
            last_sync=job.id,
            fetched_at=fetched_at,
            links=followed if revisitable else None,
        )
        await self._index(job, source, page, extracted, content_type, known, counters)
        return Outcome(counters, links)

    async def _unchanged(
        self,
        job: SyncJob,
        source: DataSourceRecord,
        known: KnownPage,
        fetched_at: datetime,
        counters: Counter[str],
    ) -> Outcome:
        """A known page whose body was not read again: still indexed, its stored links followed."""
        await self._still_syncing(job)
        if not await self._first_with(job, known.content_hash, known.url):
            counters["skipped_duplicate"] += 1
            return Outcome(counters, [])
        counters["unchanged"] += 1
        await self._remember(
            source.id, known.model_copy(update={"last_sync": job.id, "fetched_at": fetched_at})
        )
        return Outcome(counters, list(known.links or []))

    async def _first_with(self, job: SyncJob, digest: str, url: str) -> bool:
        """False when another URL with the same main text was indexed in this sync already."""
        try:
            await self.seen.create(f"{job.id}.c{digest[:40]}", url.encode())
        except nats.js.errors.KeyWrongLastSequenceError:
            entry = await self.seen.get(f"{job.id}.c{digest[:40]}")
            return (entry.value or b"").decode() == url
        return True

    def _links(self, extracted: ExtractedDocument, settings: CrawlSettings) -> list[str]:
        if extracted.robots_nofollow:
            return []
        out = []
        for link in extracted.links:
            normal = normalize_url(link, tracking=settings.tracking_parameters)
            if normal is not None:
                out.append(normal)
        return list(dict.fromkeys(out))

    def _sitemap(
        self, fetched: Fetched, counters: Counter[str], settings: CrawlSettings
    ) -> Outcome:
        if not fetched.ok:
            counters["failed"] += 1
            return Outcome(counters, [], f"sitemap: HTTP {fetched.status}")
        sitemap = parse_sitemap(fetched.body)
        tracking = settings.tracking_parameters
        lastmods: dict[str, datetime] = {}
        pages = []
        for entry in sitemap.urls:
            url = normalize_url(entry.url, tracking=tracking)
            if url is None:
                continue
            pages.append(url)
            if entry.lastmod is not None:
                lastmod = lastmod_bound(entry.lastmod)
                lastmods[url] = max(lastmod, lastmods.get(url, lastmod))
        children = [
            u for u in (normalize_url(e.url, tracking=tracking) for e in sitemap.sitemaps) if u
        ]
        return Outcome(counters, pages, sitemaps=children, from_sitemap=True, lastmods=lastmods)

    async def _index(
        self,
        job: SyncJob,
        source: DataSourceRecord,
        page: KnownPage,
        extracted: ExtractedDocument,
        content_type: str,
        known: KnownPage | None,
        counters: Counter[str],
    ) -> None:
        await self._still_syncing(job)  # stopped while this page was fetched: not indexed
        url = page.url
        digest = hashlib.sha256(extracted.text.encode()).hexdigest()
        # Identical main text under another URL in this sync: indexed once.
        if not await self._first_with(job, digest, url):
            counters["skipped_duplicate"] += 1
            return
        page = page.model_copy(update={"content_hash": digest})
        if known is not None and known.content_hash == digest and job.mode == "FULL_CRAWL":
            counters["unchanged"] += 1
            await self._remember(source.id, page)
            return
        document = SourceDocument(
            index_id=source.index_id,
            document_id=url,
            data_source_id=source.id,
            title=extracted.title,
            text=extracted.text,
            headings=[h.text for h in extracted.headings],
            uri=extracted.canonical_url or url,
            content_type=content_type,
            language=extracted.language or source.language_code,
            content_hash=digest,
        )
        if known is None:
            await self.bus.emit(subjects.CRAWL_DOCUMENT_ADDED, DocumentAdded(document=document))
            counters["added"] += 1
        else:
            await self.bus.emit(
                subjects.CRAWL_DOCUMENT_MODIFIED, DocumentModified(document=document)
            )
            counters["modified"] += 1
        await self._remember(source.id, page)

    async def _known(self, source_id: str, url: str) -> KnownPage | None:
        try:
            entry = await self.pages.get(f"{source_id}.{url_key(url)}")
        except nats.js.errors.KeyNotFoundError:
            return None
        return KnownPage.model_validate_json(entry.value or b"{}")

    async def _remember(self, source_id: str, page: KnownPage) -> None:
        await self.pages.put(f"{source_id}.{url_key(page.url)}", page.model_dump_json().encode())

    # -- bookkeeping -------------------------------------------------------------------------

    async def _record(self, key: str, outcome: Outcome, url: str) -> None:
        sync_id = key.rsplit(".", 1)[1]
        done_key = f"{sync_id}-done.{url_key(url)}"
        try:
            await self.seen.create(done_key, b"1")
        except nats.js.errors.KeyWrongLastSequenceError:
            # A replica that died before acknowledging already counted this URL.
            return

        def change(job: SyncJob) -> SyncJob:
            if job.status != SyncStatus.SYNCING:
                return job  # stopped or finished meanwhile: its counters stay as they were
            metrics = dict(job.metrics)
            for name, count in outcome.counters.items():
                metrics[name] = metrics.get(name, 0) + count
            errors = list(job.errors)
            if outcome.error and len(errors) < MAX_ERRORS:
                errors.append(SyncError(url=url, message=outcome.error[:500]))
            return job.model_copy(
                update={
                    "updated_at": datetime.now(UTC),
                    "done": job.done + 1,
                    "metrics": metrics,
                    "errors": errors,
                }
            )

        try:
            updated = await self.jobs.mutate(key, change, attempts=50)
        except Exception:
            # Not counted: let the redelivered message count it.
            await self.seen.delete(done_key)
            raise
        self._job_cache.clear()
        job = updated.value
        if job.status == SyncStatus.SYNCING and job.done >= job.queued:
            await self._finish(job.id, job.source_id)

    async def _finish(self, sync_id: str, source_id: str) -> None:
        """The frontier is empty: delete what this sync no longer reached, then succeed."""
        key = f"{source_id}.{sync_id}"
        try:
            await self.jobs.mutate(
                key,
                lambda j: _moved(j, "crawl_done").model_copy(
                    update={"updated_at": datetime.now(UTC)}
                ),
            )
        except ValidationFailed:
            return  # another replica finished it, or it was stopped
        await self._complete(sync_id, source_id)

    async def _complete(self, sync_id: str, source_id: str) -> None:
        """Crawl done (SYNCING_INDEXING): withdraw the pages not reached, then succeed.

        Safe to run again: the stalled-sync finisher does, for a replica that died in here.
        """
        key = f"{source_id}.{sync_id}"
        job = (await self.jobs.get(key)).value
        source = (await self.sources.get(source_id)).value
        stale: list[tuple[str, KnownPage]] = []
        live = 0
        for entry in await scan(self.pages, f"{source_id}.>"):
            page = KnownPage.model_validate_json(entry.value)
            if page.last_sync == sync_id:
                live += 1
            else:
                stale.append((entry.key, page))
        previous = max(source.documents, live + len(stale))
        if stale and not deletions_allowed(previous, len(stale), DELETION_THRESHOLD):
            message = (
                f"the sync would delete {len(stale)} of {previous} documents, more than "
                f"{DELETION_THRESHOLD:.0%}: nothing was deleted"
            )
            await self.jobs.mutate(key, lambda j: _failed(j, message))
            return
        for page_key, page in stale:
            await self.bus.emit(
                subjects.CRAWL_DOCUMENT_DELETED,
                DocumentDeleted(
                    index_id=job.index_id, document_id=page.url, data_source_id=source_id
                ),
            )
            await self.pages.delete(page_key)

        def succeeded(j: SyncJob) -> SyncJob:
            metrics = dict(j.metrics)
            metrics["deleted"] = metrics.get("deleted", 0) + len(stale)
            done = _moved(j, "indexing_done")
            return done.model_copy(update={"metrics": metrics, "ended_at": datetime.now(UTC)})

        try:
            await self.jobs.mutate(key, succeeded)
        except ValidationFailed:
            return  # another replica completed it meanwhile
        await self.sources.mutate(source_id, lambda s: s.model_copy(update={"documents": live}))
        self._forget(sync_id)
        await self._drop_login(sync_id)

    async def stop(self, source_id: str) -> SyncJob:
        running = [
            j
            for j in await self.jobs_of(source_id)
            if j.status in (SyncStatus.SYNCING, SyncStatus.SYNCING_INDEXING)
        ]
        if not running:
            raise ValidationFailed(f"data source {source_id} has no running sync")
        job = running[0]

        def stopped(j: SyncJob) -> SyncJob:
            stopping = _moved(j, "stop_requested")
            return _moved(stopping, "stopped").model_copy(update={"ended_at": datetime.now(UTC)})

        updated = await self.jobs.mutate(f"{source_id}.{job.id}", stopped)
        self._job_cache.clear()
        self._forget(job.id)
        await self._drop_login(job.id)
        return updated.value

    # -- schedules ---------------------------------------------------------------------------

    async def schedule_loop(self, interval_s: float, stall_after_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.run_due_schedules(datetime.now(UTC))
                await self.finish_stalled(datetime.now(UTC), stall_after_s)
                await self.purge_deleted()
            except Exception:  # a bad source must not stop the others' schedules
                log.exception("scheduled syncs could not be started")

    async def purge_deleted(self) -> list[str]:
        """Finish deleting the sources marked DELETING (a replica may have died mid-way)."""
        purged = []
        for stored in await self.sources.list():
            if stored.value.status == DELETING:
                await self.purge(stored.value)
                purged.append(stored.value.id)
        return purged

    async def on_index_dropped(self, event: IndexDropped, _: EnvelopeMeta) -> None:
        """DeleteIndex takes the index's data sources with it, as in Kendra."""
        for stored in await self.sources.list():
            source = stored.value
            if source.index_id != event.index_id:
                continue
            if any(
                j.status in (SyncStatus.SYNCING, SyncStatus.SYNCING_INDEXING)
                for j in await self.jobs_of(source.id)
            ):
                await self.stop(source.id)
            # The index and its documents are gone already: nothing to withdraw.
            await self.purge(source, withdraw_documents=False)

    async def purge(self, source: DataSourceRecord, *, withdraw_documents: bool = True) -> None:
        """As Kendra does: a deleted source's documents leave the index, then the source goes."""
        for entry in await scan(self.pages, f"{source.id}.>"):
            page = KnownPage.model_validate_json(entry.value)
            if withdraw_documents:
                await self.bus.emit(
                    subjects.CRAWL_DOCUMENT_DELETED,
                    DocumentDeleted(
                        index_id=source.index_id, document_id=page.url, data_source_id=source.id
                    ),
                )
            await self.pages.delete(entry.key)
        for job in await self.jobs_of(source.id):
            with contextlib.suppress(NotFound):
                await self.jobs.delete(f"{source.id}.{job.id}")
        with contextlib.suppress(NotFound):
            await self.sources.delete(source.id)
        self._source_cache.clear()
        log.info("data source %s deleted with its documents", source.id)

    async def finish_stalled(self, now: datetime, stall_after_s: float) -> list[str]:
        """Finish syncs whose counts never met although the frontier is empty.

        A replica killed between counting a page's links and queueing them, or after marking a
        page done but before counting it, leaves `done` short of `queued` for ever. When no URL
        waits or is in flight anywhere and a sync made no progress for `stall_after_s`, its
        crawl is over.
        """
        info = await self.bus.js.consumer_info(
            topology.CRAWL_FRONTIER.name, topology.CRAWL_FRONTIER_CONSUMER.durable
        )
        if (info.num_pending or 0) + (info.num_ack_pending or 0) > 0:
            return []
        finished = []
        for stored in await self.sources.list():
            for job in await self.jobs_of(stored.value.id):
                idle = (now - (job.updated_at or job.started_at)).total_seconds()
                if idle < stall_after_s:
                    continue
                if job.status == SyncStatus.SYNCING:
                    log.warning(
                        "sync %s stalled at %d of %d; finishing it", job.id, job.done, job.queued
                    )
                    await self._finish(job.id, job.source_id)
                    finished.append(job.id)
                elif job.status == SyncStatus.SYNCING_INDEXING:
                    log.warning("sync %s stopped while it finished; completing it", job.id)
                    await self._complete(job.id, job.source_id)
                    finished.append(job.id)
        return finished

    async def run_due_schedules(self, now: datetime) -> list[str]:
        """Start the syncs whose cron schedule fired since their last sync; returns their ids."""
        started = []
        for stored in await self.sources.list():
            source = stored.value
            if not source.schedule or source.status == DELETING:
                continue
            jobs = await self.jobs_of(source.id)
            last = max((j.started_at for j in jobs), default=source.created_at)
            due = parse_schedule(source.schedule).next_after(last)
            if due > now:
                continue
            # One replica starts it: the first to claim this firing.
            if not await self._claim(f"schedule-{source.id}", due.isoformat()):
                continue
            try:
                mode = parse_data_source(source.type, source.configuration).sync_mode
                job = await self.start(source, mode)
            except ValidationFailed as exc:
                log.warning("scheduled sync of %s not started: %s", source.id, exc.message)
                continue
            started.append(job.id)
        return started

    async def close(self) -> None:
        for fetcher in self._fetchers.values():
            await fetcher.close()


def _content_type(fetched: Fetched) -> str | None:
    """Kendra's ContentType of a fetched body, or None when it is not one the crawler reads."""
    if fetched.content_type in GENERIC_TYPES and fetched.body.startswith(b"%PDF-"):
        return "PDF"
    return CONTENT_TYPES.get(fetched.content_type)


def _reusable(known: KnownPage, source: DataSourceRecord) -> bool:
    """Whether what a page's last fetch stored stands in for its body (settings unchanged since)."""
    return (
        known.links is not None
        and known.fetched_at is not None
        and known.fetched_at >= source.updated_at
    )


def _moved(job: SyncJob, event: str) -> SyncJob:
    return job.model_copy(update={"status": transition(job.status, event)})  # type: ignore[arg-type]


def _failed(job: SyncJob, message: str) -> SyncJob:
    return job.model_copy(
        update={
            "status": transition(job.status, "failed"),
            "error_message": message,
            "ended_at": datetime.now(UTC),
        }
    )
