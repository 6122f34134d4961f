"""What may be written on a run after it was submitted: its name, tags, note and archive flag,
and the bulk actions over many runs. The schema only; `shared.store.history` writes it."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from shared.domain.params import INT32_MAX, check_name
from shared.domain.text import UNPRINTABLE

TAG_TEXT = re.compile(r"^[A-Za-z0-9\-_.:]{1,64}$")
MAX_TAGS = 20
MAX_NOTE = 10_000
TAG_RULE = "letters, digits and -_.: only, 1 to 64 characters"


def check_tag(tag: str) -> str:
    """A tag as written, or ValueError saying what a tag may hold."""
    if not TAG_TEXT.match(tag):
        raise ValueError(f"{tag[:70]!r} is not a tag: {TAG_RULE}")
    return tag


def check_note(value: str | None) -> str | None:
    """A note: any text a database can store (newlines and tabs welcome, NUL not)."""
    if value is None:
        return value
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def _distinct(tags: list[str]) -> list[str]:
    return list(dict.fromkeys(tags))  # repeated tags collapse, the order kept


NewName = Annotated[
    str,
    Field(min_length=1, max_length=200, json_schema_extra={"pattern": f"^[^{UNPRINTABLE}]*$"}),
    AfterValidator(check_name),
]
# The pattern is documented for clients; `check_tag` enforces it with a reason people can read.
Tag = Annotated[
    str,
    Field(json_schema_extra={"pattern": TAG_TEXT.pattern}),
    AfterValidator(check_tag),
]
TagList = Annotated[list[Tag], AfterValidator(_distinct)]


class RunPatch(BaseModel):
    """Body of PATCH /api/runs/{id}: any of the fields; those left out stay as they are."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: NewName | None = Field(None, description="A new name (1 to 200 characters).")
    tags: TagList | None = Field(
        None,
        max_length=MAX_TAGS,
        description=f"The run's tags, replacing the old ones: at most {MAX_TAGS}, each {TAG_RULE}.",
    )
    note: Annotated[str | None, AfterValidator(check_note)] = Field(
        None,
        max_length=MAX_NOTE,
        description=f"Plain text, at most {MAX_NOTE:,} characters; null clears it.",
        json_schema_extra={"pattern": "^[^\\x00]*$"},
    )
    archived: bool | None = Field(
        None, description="Archived runs leave the default lists; they stay readable by id."
    )

    def changes(self) -> dict[str, Any]:
        """The fields the request set (an explicit null clears the note)."""
        changes = self.model_dump(exclude_unset=True)
        for field in ("name", "tags", "archived"):
            if field in changes and changes[field] is None:
                changes.pop(field)
        return changes


class StudyPatch(BaseModel):
    """Body of PATCH /api/studies/{id}: archive or restore every run of the study."""

    model_config = ConfigDict(extra="forbid", strict=True)

    archived: bool


BulkAction = Literal["tag", "untag", "archive", "unarchive", "delete"]


class BulkRequest(BaseModel):
    """Body of POST /api/runs/bulk: the runs (by `ids` or by a `filter`, the query parameters of
    GET /api/runs) and what to do to them."""

    model_config = ConfigDict(extra="forbid", strict=True)

    action: BulkAction
    ids: list[Annotated[int, Field(ge=1, le=INT32_MAX)]] | None = Field(
        None, description="The runs, by id."
    )
    filter: dict[str, str] | None = Field(
        None,
        description="Every run GET /api/runs would list with these query parameters "
        "(sort, page, limit and cursor aside).",
    )
    tags: TagList | None = Field(
        None, max_length=MAX_TAGS, description="For `tag` and `untag`: the tags to add or remove."
    )

    def problems(self) -> dict[str, str]:
        """What is wrong with the request as a whole, by field (empty when nothing is)."""
        if (self.ids is None) == (self.filter is None):
            return {"ids": "give either ids or filter, not both or neither"}
        if self.action in ("tag", "untag") and not self.tags:
            return {"tags": f"{self.action} needs at least one tag"}
        return {}
