"""Contracts: every message matches its checked-in JSON Schema snapshot, and AsyncAPI is current."""

from __future__ import annotations

from contracts import catalog, export


def test_schema_snapshots_match_the_models() -> None:
    wanted = export.render_schemas()
    on_disk = {p.name: p.read_text() for p in export.SCHEMA_DIR.glob("*.json")}
    missing = sorted(set(wanted) - set(on_disk))
    stale = sorted(set(on_disk) - set(wanted))
    drifted = sorted(name for name in set(wanted) & set(on_disk) if wanted[name] != on_disk[name])
    assert not (missing or stale or drifted), (
        f"contracts drifted from contracts/schemas/v1 (missing {missing}, stale {stale}, changed {drifted}). "
        "Within v1 only add optional fields; then run `make contracts` and commit the snapshots."
    )


def test_asyncapi_document_is_current() -> None:
    assert export.ASYNCAPI_PATH.read_text() == export.render_asyncapi(), "run `make contracts`"


def test_message_types_are_unique_and_set() -> None:
    seen: dict[str, type] = {}
    for op in catalog.OPERATIONS:
        for model in (op.request, op.reply):
            assert model.message_type, model
            assert seen.setdefault(model.message_type, model) is model


def test_every_message_forbids_unknown_fields() -> None:
    for model in catalog.all_messages().values():
        assert model.model_config.get("extra") == "forbid", model
