"""What the history writes answer: a deletion, and a bulk action's outcome."""

from __future__ import annotations

from pydantic import BaseModel, Field

from shared.domain.history import BulkAction


class DeletedOut(BaseModel):
    """What a DELETE removed."""

    runs: int = Field(description="Runs deleted, with their epochs, evaluations and models.")
    study_id: int | None = Field(None, description="The study deleted with them, if any.")


class Skipped(BaseModel):
    """A selected run the action left as it was, and why."""

    id: int
    reason: str


class BulkOut(BaseModel):
    """The outcome of POST /api/runs/bulk."""

    action: BulkAction
    matched: int = Field(description="Runs selected (ids given, or runs the filter matched).")
    affected: int = Field(description="Runs the action changed or deleted.")
    skipped: list[Skipped] = Field(description="The others, each with its reason.")


def bulk_out(action: BulkAction, matched: int, affected: int, skipped: dict[int, str]) -> BulkOut:
    """A bulk action's answer, its skipped runs in id order."""
    return BulkOut(
        action=action,
        matched=matched,
        affected=affected,
        skipped=[Skipped(id=run_id, reason=reason) for run_id, reason in sorted(skipped.items())],
    )
