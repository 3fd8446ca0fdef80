"""The indexer end to end: real NATS, the indexer service with real tantivy / usearch / ONNX Runtime
embeddings, the gateway, and boto3's kendra client unchanged."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.exceptions
import httpx
import pytest

from runtime.bus import Bus
from runtime.errors import NotFound
from runtime.service import Service
from runtime.settings import SharedSettings
from services.gateway.adapters.bootstrap import load_or_create_credentials
from services.gateway.config import BootstrapSettings
from services.indexer.adapters.embedder import LocalEmbedder
from services.indexer.app import build as build_indexer
from services.indexer.config import Settings as IndexerSettings
from tests.conftest import gateway_client, serving_gateway
from tests.pdf import make_pdf

DOCS = [
    {
        "Id": "cache",
        "Title": "functools: caching",
        "Text": "The lru_cache decorator wraps a function with a memoizing callable that saves up "
        "to the maxsize most recent calls. It can save time when an expensive or I/O bound "
        "function is periodically called with the same arguments.",
        "Attributes": [
            {"Key": "_category", "Value": {"StringValue": "library"}},
            {"Key": "level", "Value": {"LongValue": 3}},
            {"Key": "tags", "Value": {"StringListValue": ["functions", "performance"]}},
        ],
    },
    {
        "Id": "shutil",
        "Title": "shutil: high-level file operations",
        "Text": "Use rmtree to delete an entire directory tree; path must point to a directory. "
        "The copytree function recursively copies a directory tree and returns the destination.",
        "Attributes": [
            {"Key": "_category", "Value": {"StringValue": "library"}},
            {"Key": "level", "Value": {"LongValue": 1}},
            {"Key": "tags", "Value": {"StringListValue": ["files"]}},
        ],
    },
    {
        "Id": "tutorial-loops",
        "Title": "Control flow tools",
        "Text": "The for statement iterates over the items of any sequence, such as a list or a "
        "string, in the order that they appear in the sequence. The break statement breaks "
        "out of the innermost enclosing loop.",
        "Attributes": [
            {"Key": "_category", "Value": {"StringValue": "tutorial"}},
            {"Key": "level", "Value": {"LongValue": 1}},
        ],
    },
    {
        "Id": "secret-plan",
        "Title": "Board secret: acquisition plan",
        "Text": "The acquisition of the directory company closes next quarter. Only the board may "
        "read this plan about the directory tree merger.",
        "AccessControlList": [
            {"Name": "board", "Type": "GROUP", "Access": "ALLOW"},
            {"Name": "mallory", "Type": "USER", "Access": "DENY"},
        ],
        "Attributes": [
            {"Key": "_category", "Value": {"StringValue": "confidential"}},
            {"Key": "level", "Value": {"LongValue": 9}},
        ],
    },
]


@pytest.fixture(scope="module")
def embedder() -> Iterator[LocalEmbedder]:
    yield LocalEmbedder(intra_op_threads=1)


@dataclass
class Search:
    http: httpx.AsyncClient
    key: str
    url: str
    indexer: Service
    access_key: str
    secret_key: str

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def post(self, path: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
        response = await self.http.post(path, json=body, headers=self.auth())
        assert response.status_code == status, response.text
        data: dict[str, Any] = response.json()
        return data

    async def index(self, name: str, **extra: Any) -> str:
        created = await self.post("/v1/indexes", {"Name": name, **extra}, 201)
        index_id: str = created["Id"]
        return index_id

    async def describe(self, index_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/v1/indexes/{index_id}", headers=self.auth())
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    async def put(self, index_id: str, docs: list[dict[str, Any]]) -> None:
        for start in range(0, len(docs), 10):
            out = await self.post(
                f"/v1/indexes/{index_id}/documents", {"Documents": docs[start : start + 10]}
            )
            assert out["FailedDocuments"] == []

    async def settle(self, index_id: str, documents: int, *, embedded: bool = True) -> None:
        for _ in range(300):
            described = await self.describe(index_id)
            stats = described["IndexStatistics"]["TextDocumentStatistics"]
            pending = described["EmbeddingStatistics"]["PendingPassages"]
            if stats["IndexedTextDocumentsCount"] == documents and (not embedded or pending == 0):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"index never reached {documents} documents: {described}")

    async def query(self, index_id: str, text: str, **extra: Any) -> dict[str, Any]:
        return await self.post(f"/v1/indexes/{index_id}/query", {"QueryText": text, **extra})

    def kendra(self) -> Any:
        return gateway_client("kendra", self.url, self.access_key, self.secret_key)


@pytest.fixture
async def search(nats_url: str, data_dir: Path, embedder: LocalEmbedder) -> AsyncIterator[Search]:
    shared = SharedSettings(data_dir=data_dir)
    buses = [await Bus.connect(nats_url, source=name) for name in ("indexer", "gateway")]
    indexer = await build_indexer(
        buses[0], IndexerSettings(commit_interval_s=0.05), shared, embedder=embedder
    )
    await indexer.start()
    credentials = load_or_create_credentials(data_dir, BootstrapSettings())
    async with serving_gateway(buses[1], shared, request_timeout_s=20) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            yield Search(
                http,
                credentials.api_key,
                url,
                indexer,
                credentials.access_key_id,
                credentials.secret_access_key,
            )
    await indexer.stop()
    for bus in buses:
        await bus.close()


def ids(result: dict[str, Any], kind: str = "DOCUMENT") -> list[str]:
    return [item["DocumentId"] for item in result["ResultItems"] if item["Type"] == kind]


async def test_put_query_answer_and_highlights(search: Search, unique: str) -> None:
    index_id = await search.index(f"docs-{unique}")
    await search.put(index_id, DOCS)
    await search.settle(index_id, len(DOCS))
    described = await search.describe(index_id)
    assert described["Status"] == "ACTIVE"
    assert described["IndexStatistics"]["TextDocumentStatistics"]["IndexedTextBytes"] > 300

    result = await search.query(index_id, "how can I delete a whole directory tree")
    assert ids(result)[0] == "shutil"
    top = next(item for item in result["ResultItems"] if item["Type"] == "DOCUMENT")
    excerpt = top["DocumentExcerpt"]
    highlighted = [
        excerpt["Text"][h["BeginOffset"] : h["EndOffset"]].lower() for h in excerpt["Highlights"]
    ]
    assert any("directory" in h or "tree" in h for h in highlighted)
    assert top["ScoreAttributes"]["ScoreConfidence"] in ("VERY_HIGH", "HIGH", "MEDIUM", "LOW")
    answers = [item for item in result["ResultItems"] if item["Type"] == "ANSWER"]
    assert answers and answers[0]["DocumentId"] == "shutil"
    answer = answers[0]["AdditionalAttributes"][0]["Value"]["TextWithHighlightsValue"]
    assert "rmtree" in answer["Text"] and answer["Highlights"][0]["TopAnswer"] is True
    # Without a user context (ATTRIBUTE_FILTER policy) Kendra shows everything; with one, ACLs hold.
    assert result["TotalNumberOfResults"] >= 2

    # No word of this question is in the documents: only the embeddings can find the answer.
    question = "remember earlier outputs so repeated invocations are quick"
    assert ids(await search.query(index_id, question, RankingMode="KEYWORD")) == []
    assert ids(await search.query(index_id, question, RankingMode="SEMANTIC"))[0] == "cache"
    assert ids(await search.query(index_id, question))[0] == "cache"


async def test_filters_facets_sorting_and_pagination(search: Search, unique: str) -> None:
    index_id = await search.index(f"filters-{unique}")
    await search.put(index_id, DOCS)
    await search.settle(index_id, len(DOCS), embedded=False)
    tutorial = await search.query(
        index_id,
        "sequence directory function",
        AttributeFilter={"EqualsTo": {"Key": "_category", "Value": {"StringValue": "tutorial"}}},
        RankingMode="KEYWORD",
    )
    assert ids(tutorial) == ["tutorial-loops"]
    low = await search.query(
        index_id,
        "directory function sequence",
        AttributeFilter={
            "AndAllFilters": [
                {"LessThanOrEquals": {"Key": "level", "Value": {"LongValue": 3}}},
                {
                    "NotFilter": {
                        "ContainsAny": {"Key": "tags", "Value": {"StringListValue": ["files"]}}
                    }
                },
            ]
        },
        RankingMode="KEYWORD",
        Facets=[{"DocumentAttributeKey": "_category"}],
        SortingConfiguration={"DocumentAttributeKey": "level", "SortOrder": "DESC"},
    )
    assert ids(low) == ["cache", "tutorial-loops"]
    facets = {
        pair["DocumentAttributeValue"]["StringValue"]: pair["Count"]
        for pair in low["FacetResults"][0]["DocumentAttributeValueCountPairs"]
    }
    assert facets == {"library": 1, "tutorial": 1}
    first = await search.query(
        index_id, "directory sequence function", PageSize=1, RankingMode="KEYWORD"
    )
    second = await search.query(
        index_id, "directory sequence function", PageSize=1, PageNumber=2, RankingMode="KEYWORD"
    )
    assert ids(first) and ids(second) and ids(first) != ids(second)

    for body, problem in (
        ({"QueryText": "x" * 1001}, "1000"),
        (
            {
                "QueryText": "x",
                "AttributeFilter": {"EqualsTo": {"Key": "colour", "Value": {"StringValue": "red"}}},
            },
            "colour",
        ),
        (
            {
                "QueryText": "x",
                "AttributeFilter": {"GreaterThan": {"Key": "level", "Value": {"StringValue": "3"}}},
            },
            "level",
        ),
        (
            {"QueryText": "x", "AttributeFilter": {"EqualsTo": {}, "NotFilter": {}}},
            "AttributeFilter",
        ),
        ({"QueryText": "x", "Facets": [{"DocumentAttributeKey": "nope"}]}, "nope"),
    ):
        response = await search.http.post(
            f"/v1/indexes/{index_id}/query", json=body, headers=search.auth()
        )
        assert response.status_code == 400, response.text
        assert problem in response.text


async def test_acl_never_leaks(search: Search, unique: str) -> None:
    index_id = await search.index(f"acl-{unique}", UserContextPolicy="USER_TOKEN")
    await search.put(index_id, DOCS)
    await search.settle(index_id, len(DOCS))
    text = "directory tree acquisition plan"
    board = {"UserId": "alice", "Groups": ["board"]}
    mallory = {"UserId": "mallory", "Groups": ["board"]}
    outsider = {"UserId": "bob", "Groups": ["staff"]}
    facets = [{"DocumentAttributeKey": "_category"}]
    allowed = await search.query(index_id, text, UserContext=board, Facets=facets)
    assert "secret-plan" in ids(allowed)
    for user in (mallory, outsider, None):
        extra = {"UserContext": user} if user else {}
        for mode in ("KEYWORD", "SEMANTIC", "HYBRID_RRF", "HYBRID_NORMALIZED"):
            result = await search.query(index_id, text, Facets=facets, RankingMode=mode, **extra)
            assert "secret-plan" not in str(result), (user, mode)
            assert "confidential" not in str(result["FacetResults"])
            assert result["TotalNumberOfResults"] <= 3
        retrieved = await search.post(
            f"/v1/indexes/{index_id}/retrieve", {"QueryText": text, **extra}
        )
        assert all(item["DocumentId"] != "secret-plan" for item in retrieved["ResultItems"])
        suggested = await search.post(
            f"/v1/indexes/{index_id}/suggestions",
            {
                "QueryText": "Board",
                "SuggestionTypes": ["DOCUMENT_ATTRIBUTES"],
                "AttributeSuggestionsConfig": {"UserContext": user} if user else {},
            },
        )
        assert suggested["Suggestions"] == []
    board_suggestions = await search.post(
        f"/v1/indexes/{index_id}/suggestions",
        {
            "QueryText": "Board",
            "SuggestionTypes": ["DOCUMENT_ATTRIBUTES"],
            "AttributeSuggestionsConfig": {"UserContext": board},
        },
    )
    assert [s["Value"]["Text"]["Text"] for s in board_suggestions["Suggestions"]] == [
        "Board secret: acquisition plan"
    ]


async def test_updates_deletes_faq_feedback_and_suggestions(search: Search, unique: str) -> None:
    index_id = await search.index(f"life-{unique}")
    await search.put(index_id, DOCS[:2])
    await search.settle(index_id, 2, embedded=False)
    changed = {**DOCS[1], "Text": "Nothing here about folders any more: only zebras and giraffes."}
    await search.put(index_id, [changed])
    await search.post(f"/v1/indexes/{index_id}/documents/delete", {"DocumentIdList": ["cache"]})
    await search.settle(index_id, 1, embedded=False)
    assert ids(await search.query(index_id, "rmtree directory", RankingMode="KEYWORD")) == []
    assert ids(await search.query(index_id, "zebras", RankingMode="KEYWORD")) == ["shutil"]

    upload = await search.http.put(
        f"/v1/index-uploads/faq-{unique}.csv",
        content=b"How do I reset my password?,Open Settings and choose Reset password.,https://help.example/reset\n"
        b"Where is the office?,At 1 Main Street.\n",
        headers=search.auth(),
    )
    assert upload.status_code == 200, upload.text
    faq = await search.post(
        f"/v1/indexes/{index_id}/faqs", {"Name": "help", "S3Path": upload.json()["S3Path"]}, 201
    )
    listed = (await search.http.get(f"/v1/indexes/{index_id}/faqs", headers=search.auth())).json()
    assert [f["Id"] for f in listed["FaqSummaryItems"]] == [faq["Id"]]
    for _ in range(100):
        described = await search.describe(index_id)
        if described["IndexStatistics"]["FaqStatistics"]["IndexedQuestionAnswersCount"] == 2:
            break
        await asyncio.sleep(0.05)
    answered = await search.query(index_id, "how can I reset my password")
    qa = [item for item in answered["ResultItems"] if item["Type"] == "QUESTION_ANSWER"]
    assert (
        qa
        and "Reset password"
        in qa[0]["AdditionalAttributes"][1]["Value"]["TextWithHighlightsValue"]["Text"]
    )

    for user in ("u1", "u2", "u3"):
        await search.query(
            index_id, "zebras in the savanna", VisitorId=user, UserContext={"UserId": user}
        )
    result = await search.query(index_id, "zebras", UserContext={"UserId": "u1"})
    doc_item = next(item for item in result["ResultItems"] if item["Type"] == "DOCUMENT")
    await search.post(
        f"/v1/indexes/{index_id}/feedback",
        {
            "QueryId": result["QueryId"],
            "ClickFeedbackItems": [{"ResultId": doc_item["Id"], "ClickTime": 1_700_000_000}],
            "RelevanceFeedbackItems": [{"ResultId": doc_item["Id"], "RelevanceValue": "RELEVANT"}],
        },
    )
    for _ in range(100):
        report = (
            await search.http.get(f"/v1/indexes/{index_id}/feedback", headers=search.auth())
        ).json()
        if report["Documents"]:
            break
        await asyncio.sleep(0.05)
    assert report["Documents"] == [
        {"DocumentId": "shutil", "Clicks": 1, "Relevant": 1, "NotRelevant": 0}
    ]
    bad = await search.http.post(
        f"/v1/indexes/{index_id}/feedback",
        json={
            "QueryId": result["QueryId"],
            "ClickFeedbackItems": [{"ResultId": "forged", "ClickTime": 1}],
        },
        headers=search.auth(),
    )
    assert bad.status_code == 400

    await search.http.put(
        f"/v1/indexes/{index_id}/suggestions/config",
        json={"MinimumNumberOfQueryingUsers": 3, "BlockList": ["giraffes"]},
        headers=search.auth(),
    )
    for _ in range(100):
        suggested = await search.post(f"/v1/indexes/{index_id}/suggestions", {"QueryText": "zeb"})
        if suggested["Suggestions"]:
            break
        await asyncio.sleep(0.05)
    texts = [s["Value"]["Text"]["Text"] for s in suggested["Suggestions"]]
    assert texts == ["zebras in the savanna"]
    assert suggested["Suggestions"][0]["Value"]["Text"]["Highlights"] == [
        {"BeginOffset": 0, "EndOffset": 3}
    ]


async def test_boto3_kendra_client(search: Search, unique: str) -> None:
    # boto3 blocks: it runs on a thread while the services answer on this event loop.
    await asyncio.to_thread(_exercise_kendra, search, unique)


def _exercise_kendra(search: Search, unique: str) -> None:
    kendra = search.kendra()
    created = kendra.create_index(Name=f"boto-{unique}", RoleArn="arn:aws:iam::000000000000:role/k")
    index_id = created["Id"]
    token = f"token-{unique}"
    first = kendra.create_index(
        Name=f"retry-{unique}", RoleArn="arn:aws:iam::0:role/k", ClientToken=token
    )
    again = kendra.create_index(
        Name=f"retry-{unique}", RoleArn="arn:aws:iam::0:role/k", ClientToken=token
    )
    assert first["Id"] == again["Id"]  # a retry with the same token is the same index
    with pytest.raises(botocore.exceptions.ClientError) as taken:
        kendra.create_index(Name=f"retry-{unique}", RoleArn="arn:aws:iam::0:role/k")
    assert taken.value.response["Error"]["Code"] == "ConflictException"
    kendra.delete_index(Id=first["Id"])
    described = kendra.describe_index(Id=index_id)
    assert described["Status"] == "ACTIVE" and described["Name"] == f"boto-{unique}"
    assert index_id in [i["Id"] for i in kendra.list_indices()["IndexConfigurationSummaryItems"]]
    put = kendra.batch_put_document(
        IndexId=index_id,
        Documents=[
            {
                "Id": "html-1",
                "Title": "Gardening",
                "Blob": b"<html><body><main><h1>Tomatoes</h1><p>Water tomatoes deeply twice a week.</p></main></body></html>",
                "ContentType": "HTML",
                "Attributes": [
                    {
                        "Key": "_source_uri",
                        "Value": {"StringValue": "https://garden.example/tomatoes"},
                    }
                ],
            },
            {
                "Id": "pdf-1",
                "Blob": make_pdf(["Prune climbing roses in late winter."]),
                "ContentType": "PDF",
                "Attributes": [
                    {
                        "Key": "_source_uri",
                        "Value": {"StringValue": "https://garden.example/files/roses.pdf"},
                    }
                ],
            },
            {
                "Id": "pdf-locked",
                "Blob": make_pdf(["Secret compost recipe."], user_password="pw"),
                "ContentType": "PDF",
            },
        ],
    )
    assert [f["Id"] for f in put["FailedDocuments"]] == ["pdf-locked"]
    assert "encrypted" in put["FailedDocuments"][0]["ErrorMessage"]
    for _ in range(200):
        stats = kendra.describe_index(Id=index_id)["IndexStatistics"]["TextDocumentStatistics"]
        if stats["IndexedTextDocumentsCount"] == 2:
            break
        time.sleep(0.05)
    roses = kendra.query(IndexId=index_id, QueryText="prune climbing roses")["ResultItems"]
    pdf = next(item for item in roses if item["Type"] == "DOCUMENT")
    # No title in its metadata: named after its file.
    assert pdf["DocumentId"] == "pdf-1" and pdf["DocumentTitle"]["Text"] == "roses"
    result = kendra.query(IndexId=index_id, QueryText="how often to water tomatoes")
    documents = [item for item in result["ResultItems"] if item["Type"] == "DOCUMENT"]
    assert documents[0]["DocumentId"] == "html-1"
    assert documents[0]["DocumentURI"] == "https://garden.example/tomatoes"
    retrieved = kendra.retrieve(IndexId=index_id, QueryText="water tomatoes")
    assert "twice a week" in retrieved["ResultItems"][0]["Content"]
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        kendra.query(IndexId=index_id, QueryText="x" * 1001)
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(botocore.exceptions.ClientError) as missing:
        kendra.describe_index(Id="0" * 36)
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
    kendra.batch_delete_document(IndexId=index_id, DocumentIdList=["html-1", "pdf-1"])
    kendra.delete_index(Id=index_id)
    with pytest.raises(botocore.exceptions.ClientError):
        kendra.describe_index(Id=index_id)


async def test_cli_search(
    search: Search, unique: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from trellis import cli

    index_id = await search.index(f"cli-{unique}")
    await search.put(index_id, DOCS)
    await search.settle(index_id, len(DOCS), embedded=False)
    monkeypatch.setenv("TRELLIS_GATEWAY_URL", search.url)
    monkeypatch.setenv("TRELLIS_API_KEY", search.key)
    code = await asyncio.to_thread(
        cli.main,
        ["search", "delete a directory tree", "--index", f"cli-{unique}", "--mode", "KEYWORD"],
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.index("shutil: high-level file operations") < out.index("matching documents")
    assert "Board secret" in out  # no user context on an ATTRIBUTE_FILTER index: Kendra shows all
    code = await asyncio.to_thread(
        cli.main,
        ["search", "acquisition plan", "--index", index_id, "--user", "bob", "--mode", "KEYWORD"],
    )
    assert code == 0 and "Board secret" not in capsys.readouterr().out
    assert await asyncio.to_thread(cli.main, ["search", "x", "--index", "no-such-index"]) == 2


class CountingEmbedder:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self, inner: LocalEmbedder) -> None:
        self.inner = inner
        self.texts: list[str] = []

    async def embed(self, texts: Any) -> Any:
        self.texts.extend(texts)
        return await self.inner.embed(texts)


async def test_new_replica_restores_the_snapshot_and_replays_the_tail(
    nats_url: str, tmp_path: Path, embedder: LocalEmbedder, unique: str
) -> None:
    from contracts import subjects, topology
    from contracts.index import DocumentAdded, SourceDocument
    from runtime.kv import ResourceStore
    from runtime.topology import ensure_bucket
    from services.indexer.domain.indexes import SnapshotManifest

    shared = SharedSettings(data_dir=tmp_path / "a")
    bus = await Bus.connect(nats_url, source="indexer")
    bucket = await ensure_bucket(bus.js, topology.INDEX_INDEXES)
    snapshots = ResourceStore(bucket, SnapshotManifest, "snapshot", prefix="snapshot.")
    first = await build_indexer(
        bus,
        IndexerSettings(commit_interval_s=0.05, snapshot_interval_s=0.2, snapshot_min_messages=1),
        shared,
        embedder=embedder,
    )
    await first.start()
    credentials = load_or_create_credentials(shared.data_dir, BootstrapSettings())
    gateway_bus = await Bus.connect(nats_url, source="gateway")
    async with serving_gateway(gateway_bus, shared, request_timeout_s=20) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            search = Search(http, credentials.api_key, url, first, "", "")
            index_id = await search.index(f"snap-{unique}")
            # A marker in every text: other tests put the same documents into other indexes.
            marker = f"marker{unique}"
            await search.put(index_id, [{**d, "Text": f"{d['Text']} {marker}"} for d in DOCS[:3]])
            await search.settle(index_id, 3)
            covered: list[str] = []
            pending = -1
            for _ in range(400):
                with contextlib.suppress(NotFound):
                    latest = (await snapshots.get("latest")).value
                    covered = latest.indexes
                    pending = latest.pending_passages.get(index_id, -1)
                if index_id in covered and pending == 0:
                    break
                await asyncio.sleep(0.05)
            assert index_id in covered and pending == 0
            await first.stop()
            # The tail: a page the crawler found while no replica ran (straight onto the log).
            await bus.emit(
                subjects.CRAWL_DOCUMENT_ADDED,
                DocumentAdded(
                    document=SourceDocument(
                        index_id=index_id,
                        document_id="tail",
                        title="Rottnest",
                        text="Quokkas are small marsupials of Rottnest.",
                        uri="https://rottnest.example/",
                    )
                ),
            )

            counting = CountingEmbedder(embedder)
            second = await build_indexer(
                bus,
                IndexerSettings(commit_interval_s=0.05),
                SharedSettings(data_dir=tmp_path / "b"),
                embedder=counting,
            )
            await second.start()
            search.indexer = second
            await search.settle(index_id, 4)
            # The tail was embedded; this index's snapshotted passages were not embedded again.
            # (Other tests' documents share the log and may still have been pending.)
            assert any("Quokkas" in t for t in counting.texts)
            assert not any(marker in t for t in counting.texts)
            assert ids(await search.query(index_id, "marsupials", RankingMode="KEYWORD")) == [
                "tail"
            ]
            assert (
                ids(
                    await search.query(
                        index_id,
                        "remember earlier outputs so repeated invocations are quick",
                        RankingMode="SEMANTIC",
                    )
                )[0]
                == "cache"
            )
            await second.stop()
    # Later tests' replicas would restore this snapshot (every index of the session) at start.
    await snapshots.delete("latest")
    await gateway_bus.close()
    await bus.close()


async def test_relevance_tuning_per_index_and_per_query(search: Search, unique: str) -> None:
    index_id = await search.index(f"tuning-{unique}")
    now = time.time()
    text = "Quokka feeding guide: quokkas eat leaves, grasses and stems."

    def doc(doc_id: str, category: str, updated: float) -> dict[str, Any]:
        return {
            "Id": doc_id,
            "Title": "Quokka feeding",
            "Text": text,
            "Attributes": [
                {"Key": "_category", "Value": {"StringValue": category}},
                {"Key": "_last_updated_at", "Value": {"DateValue": updated}},
            ],
        }

    await search.put(
        index_id,
        [
            doc("old-tutorial", "tutorial", now - 800 * 86400),
            doc("new-library", "library", now - 3600),
        ],
    )
    await search.settle(index_id, 2, embedded=False)

    async def order(**extra: Any) -> list[str]:
        return ids(await search.query(index_id, "quokka feeding", RankingMode="KEYWORD", **extra))

    def boost(category: str) -> list[dict[str, Any]]:
        return [
            {
                "Name": "_category",
                "Type": "STRING_VALUE",
                "Relevance": {"ValueImportanceMap": {category: 10}},
            }
        ]

    # Per query: the boosted category wins, whichever it is.
    assert (await order(DocumentRelevanceOverrideConfigurations=boost("tutorial")))[
        0
    ] == "old-tutorial"
    assert (await order(DocumentRelevanceOverrideConfigurations=boost("library")))[
        0
    ] == "new-library"
    # Per index: freshness on _last_updated_at puts the recent page first...
    response = await search.http.patch(
        f"/v1/indexes/{index_id}",
        json={
            "DocumentMetadataConfigurationUpdates": [
                {
                    "Name": "_last_updated_at",
                    "Type": "DATE_VALUE",
                    "Relevance": {"Freshness": True, "Importance": 10, "Duration": "2592000s"},
                }
            ]
        },
        headers=search.auth(),
    )
    assert response.status_code == 200, response.text
    assert (await order())[0] == "new-library"
    # ...and a query override can still outweigh it.
    assert (await order(DocumentRelevanceOverrideConfigurations=boost("tutorial")))[
        0
    ] == "old-tutorial"
    bad = await search.http.post(
        f"/v1/indexes/{index_id}/query",
        json={
            "QueryText": "quokka",
            "DocumentRelevanceOverrideConfigurations": [
                {"Name": "_category", "Type": "STRING_VALUE", "Relevance": {"Freshness": True}}
            ],
        },
        headers=search.auth(),
    )
    assert bad.status_code == 400 and "Freshness" in bad.text
