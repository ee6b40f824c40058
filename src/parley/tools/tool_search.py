"""``tool_search`` run by Parley (``execution: "server"``): the model searches the request's
deferred tools (``defer_loading``), the matches become callable for the rest of the response,
and the step leaves a ``tool_search_call`` and a ``tool_search_output`` item."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from openai.types.responses import (
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseToolSearchCall,
    ResponseToolSearchOutputItem,
)

from parley.engine.client_tools import TOOL_SEARCH, ClientTools, tool_search_function
from parley.ids import new_id
from parley.tools import CONTINUES


class ToolSearchKind:
    """The server-side tool kind of a ``tool_search`` tool (see :mod:`parley.tools`)."""

    def __init__(self, client: ClientTools) -> None:
        assert client.search is not None
        self.client = client

    def names(self) -> frozenset[str]:
        return frozenset({TOOL_SEARCH})

    def chat_tools(self) -> list[dict[str, Any]]:
        assert self.client.search is not None
        return [tool_search_function(self.client.search)]

    def start(self, call: Any, approved: bool) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            arguments = {"query": call.arguments}
        query = " ".join(str(v) for v in arguments.values()) if isinstance(arguments, dict) else str(arguments)
        future.set_result((arguments, self.client.find(query)))
        return future

    async def emit(self, call: Any, run: Any, index: int) -> AsyncIterator[Any]:
        arguments, found = await run
        search = ResponseToolSearchCall(id=new_id("tsc"), type="tool_search_call", call_id=call.call_id,
                                        arguments=arguments, execution="server", status="completed")
        output = ResponseToolSearchOutputItem.model_validate({
            "id": new_id("tso"), "type": "tool_search_output", "call_id": call.call_id, "execution": "server",
            "status": "completed", "tools": found})
        for item, at in ((search, index), (output, index + 1)):
            yield ResponseOutputItemAddedEvent(type="response.output_item.added",
                                               item=item.model_copy(update={"status": "in_progress"}),
                                               output_index=at, sequence_number=0)
            yield ResponseOutputItemDoneEvent(type="response.output_item.done", item=item, output_index=at,
                                              sequence_number=0)
        names = [tool.get("name") for tool in found]
        text = f"Loaded tools: {', '.join(str(n) for n in names)}." if names else "No tools matched."
        yield search, CONTINUES
        yield output, {"role": "tool", "tool_call_id": call.call_id, "content": text}

    async def aclose(self) -> None:
        return None
