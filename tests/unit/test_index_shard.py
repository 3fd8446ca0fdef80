"""One index shard on its own: passages, section headings, grouping, totals and ACL masks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from contracts.index import SourceDocument
from services.indexer.domain.text import chunk_passages
from services.indexer.shard import IndexShard, Tuning, _section_headings

INDEX = "0" * 36
AT = datetime(2026, 1, 1, tzinfo=UTC)


def _doc(doc_id: str, text: str, **extra: object) -> SourceDocument:
    return SourceDocument(index_id=INDEX, document_id=doc_id, title=doc_id, text=text, **extra)


def test_a_passage_is_indexed_with_the_headings_it_sits_under() -> None:
    text = (
        "Intro\n\nSome words here.\n\nCaching\n\nThe cache keeps results.\n\nFiles\n\nDelete trees."
    )
    passages = chunk_passages(text, max_tokens=8, overlap_sentences=0)
    sections = _section_headings(text, ["Intro", "Caching", "Files"], passages)
    # Each passage gets the heading it follows and the headings inside it, never later ones.
    assert [p.text.split()[0] for p in passages] == ["Intro", "The", "Delete"]
    assert sections == ["Intro Caching", "Caching Files", "Files"]


def test_grouping_totals_and_acl_restricted_counts(tmp_path: Path) -> None:
    shard = IndexShard(INDEX, tmp_path)
    many = " ".join(f"Zebra fact number {i} about stripes." for i in range(400))
    shard.put(_doc("zebras", many), AT)
    shard.put(_doc("horses", "A horse is not a zebra but has a mane."), AT)
    secret = [{"Name": "staff", "Type": "GROUP", "Access": "ALLOW"}]
    shard.put(_doc("secret", "Zebra breeding plans.", access_control_list=secret), AT)
    shard.commit()
    everything = shard.table.mask(None)
    found = shard.search(
        "zebra", None, everything, mode="KEYWORD", group_by_document=True, tuning=Tuning()
    )
    assert sorted(shard.document(h.ordinal).document_id for h in found.hits) == [
        "horses",
        "secret",
        "zebras",
    ]
    assert found.total == 3
    outsider = shard.visible_documents(None, None, True)
    hidden = shard.search(
        "zebra breeding plans",
        None,
        outsider,
        mode="KEYWORD",
        group_by_document=True,
        tuning=Tuning(),
    )
    assert "secret" not in [shard.document(h.ordinal).document_id for h in hidden.hits]
    assert hidden.total == 2
    assert shard.delete("zebras")
    shard.commit()
    after = shard.search(
        "zebra",
        None,
        shard.table.mask(None),
        mode="KEYWORD",
        group_by_document=True,
        tuning=Tuning(),
    )
    assert after.total == 2 and np.all(after.matched_ordinals >= 0)


def test_a_mask_made_before_new_documents_arrived_still_searches(tmp_path: Path) -> None:
    shard = IndexShard(INDEX, tmp_path)
    shard.put(_doc("first", "Otters hold hands while they sleep."), AT)
    shard.commit()
    earlier = shard.table.mask(None)
    for i in range(64):  # past the table's first capacity, so the old mask is too short
        shard.put(_doc(f"later-{i}", f"Otters number {i} float on their backs."), AT)
    shard.commit()
    found = shard.search(
        "otters", None, earlier, mode="KEYWORD", group_by_document=True, tuning=Tuning()
    )
    assert [shard.document(h.ordinal).document_id for h in found.hits] == ["first"]
