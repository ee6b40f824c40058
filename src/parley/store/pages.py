"""Pages of a list, as OpenAI's list endpoints return them, and the query that reads one page in creation
order (``created_ns``, then id) after or before a row named by its id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

Order = Literal["asc", "desc"]


@dataclass
class Page:
    data: list[dict[str, Any]]
    has_more: bool

    def body(self) -> dict[str, Any]:
        return {"object": "list", "data": self.data, "first_id": self.data[0]["id"] if self.data else None,
                "last_id": self.data[-1]["id"] if self.data else None, "has_more": self.has_more}


def page_query(query: sa.Select[Any], table: sa.Table, id_column: sa.Column[Any], scope: Any, after: str | None,
               before: str | None, order: Order, limit: int) -> sa.Select[Any]:
    """A page of ``query`` ordered by creation, after or before the row with that id (within ``scope``), one row
    more than ``limit`` (whether more follow)."""
    key = sa.tuple_(table.c.created_ns, id_column)

    def point(row_id: str) -> Any:
        return sa.tuple_(sa.select(table.c.created_ns).where(id_column == row_id, scope).scalar_subquery(),
                         sa.literal(row_id))

    if after is not None:
        query = query.where(key < point(after) if order == "desc" else key > point(after))
    if before is not None:
        query = query.where(key > point(before) if order == "desc" else key < point(before))
    ordering = (table.c.created_ns.desc(), id_column.desc()) if order == "desc" else (table.c.created_ns, id_column)
    return query.order_by(*ordering).limit(limit + 1)
