"""The contract between the engine and the tool kinds.

A tool kind (:class:`ToolKind`) is registered once, by the ``type`` values of the tools it
reads from a request.  It owns their request models, the checks that need no I/O
(:meth:`ToolKind.check`, at parse time) and the ones that do (:meth:`ToolKind.admit`, before the
model runs), and it binds a request's tools to one response (:meth:`ToolKind.bind`), which gives
a :class:`Binding`: the functions the model is offered, and how a call to one of them runs.

A call runs as a stream of protocol events, ended by one :class:`CallDone` (its output item and
the tool message the model gets back).  A call that makes several items (a tool search: its call
and its output) yields an :class:`ItemDone` for each item before the last.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from openai.types.chat import ChatCompletionToolMessageParam, ChatCompletionToolParam
from openai.types.responses import ResponseOutputItemAddedEvent, ResponseOutputItemDoneEvent, ResponseStreamEvent
from pydantic import AfterValidator, Field
from parley.errors import InvalidRequest
from parley.netpolicy import AddressPolicy
from parley.validation import StrictModel

Event = ResponseStreamEvent


def _direct_only(callers: list[str] | None) -> list[str] | None:
    if callers is not None and "programmatic" in callers:
        raise ValueError("programs call function and custom tools only (with a programmatic_tool_calling tool); "
                         "give only 'direct' here")
    return callers


def arguments_of(arguments: str) -> dict[str, Any]:
    """A call's JSON arguments as an object (``{}`` for what a model wrote that is not one)."""
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


# A tool's ``allowed_callers``: the model itself (``direct``); programs (``programmatic``) call only function and
# custom tools (``ProgramCallers``; see parley.tools.programs).
AllowedCallers = Annotated[list[Literal["direct", "programmatic"]] | None, AfterValidator(_direct_only)]
ProgramCallers = Annotated[list[Literal["direct", "programmatic"]] | None, Field(min_length=1)]


def offered_directly(tool: Any) -> bool:
    """Whether the model is offered a tool itself (not only programs it writes)."""
    callers = getattr(tool, "allowed_callers", None)
    return callers is None or "direct" in callers


class ToolModel(StrictModel):
    """A tool (or tool choice) of a request: unknown fields are errors (each a 400 naming the field)."""

    # Fields of the protocol that Parley refuses by name (400 unsupported_parameter), with the reason.
    UNSUPPORTED: ClassVar[dict[str, str]] = {}

    def echo(self) -> dict[str, Any]:
        """The tool as the Response object echoes it."""
        return self.model_dump(exclude_none=True)

    def reference(self) -> dict[str, str]:
        """How a ``tool_choice: allowed_tools`` entry names this tool (its type, and its name if it has one)."""
        return {"type": self.canonical_type(getattr(self, "type", ""))}

    @classmethod
    def canonical_type(cls, tool_type: str) -> str:
        """The one name of a type that has aliases (``web_search_preview`` is ``web_search``)."""
        return tool_type


@dataclass(frozen=True)
class ToolCall:
    """A call the model made to a function that Parley runs."""

    call_id: str
    name: str  # the function name the model called
    arguments: str
    approval_request_id: str | None = None  # set when the client approved it in an earlier turn


@dataclass(frozen=True)
class ItemDone:
    """An output item a call finished; the same call makes another item after it."""

    item: Any


@dataclass(frozen=True)
class CallDone:
    """A call's last output item and the tool message that answers it in the chat, or ``None`` when the
    call waits for the client (an approval request)."""

    item: Any
    message: ChatCompletionToolMessageParam | None
    started: float = 0.0  # when the call started and finished (``time.perf_counter``), set by the toolset
    ended: float = 0.0


@dataclass(frozen=True)
class ClientTool:
    """A function the client runs, by the name the backend sees: the item its call becomes."""

    kind: str  # "function", "custom" or "tool_search"
    name: str
    namespace: str | None = None


@dataclass(frozen=True)
class Offered:
    """A function offered to the model; ``client`` is set when the client runs its calls."""

    function: ChatCompletionToolParam
    client: ClientTool | None = None
    # The request tool it comes from, as a ``tool_choice: allowed_tools`` entry names it: {"type": "function",
    # "name": …}, {"type": "mcp", "server_label": …, "name": …}, {"type": "web_search"}…
    source: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.function["function"]["name"]



@dataclass(frozen=True)
class Citation:
    """A span of an answer's text that cites a source, and the annotation it becomes (``url_citation``,
    ``file_citation``)."""

    start: int
    end: int
    annotation: dict[str, Any] = field(hash=False, compare=False)


T = TypeVar("T")
NUMBERED = re.compile(r"\[(\d+)\]")


def numbered(text: str, sources: dict[int, T]) -> list[tuple[int, int, T]]:
    """The ``[n]`` markers in ``text`` that name one of ``sources`` (by number): (start, end, source)."""
    found = [(m.start(), m.end(), sources.get(int(m.group(1)))) for m in NUMBERED.finditer(text)]
    return [(start, end, source) for start, end, source in found if source is not None]


@dataclass
class ToolEnv:
    """What the server gives every tool kind: its settings (``search``: the web search provider, if one is
    configured) and ``shared``, where a kind keeps what lives as long as the server (the MCP kind's connector)."""

    address_policy: AddressPolicy = field(default_factory=lambda: AddressPolicy(enforce=False))
    tool_timeout: float = 30.0
    search: Any = None
    mcp_require_approval: str = "never"  # what an MCP tool without require_approval gets
    retrieval: Any = None  # vector stores and their search (parley.retrieval.service.Retrieval), once started
    containers: Any = None  # where code runs (parley.containers.service.Containers), once started
    web_cache: Any = None  # what live web searches found (parley.tools.web_cache.SqlWebCache), once started
    images: Any = None  # the operator's images endpoint (parley.tools.images.ImagesEndpoint), if configured
    files: Any = None  # the Files API's store (parley.store.files.SqlFiles), once started
    cipher: Any = None  # the server's key (parley.reasoning.ReasoningCipher): sealed program fingerprints
    computer_confirm: Any = None  # computer actions that need the client's acknowledgement (a compiled pattern)
    shared: dict[str, Any] = field(default_factory=dict)


@dataclass
class BindContext:
    """What a binding may know of its response: the earlier response's output items and this request's input
    items (both typed: the SDK's output items, Parley's input items)."""

    env: ToolEnv
    previous_output: list[Any] = field(default_factory=list)
    input: list[Any] = field(default_factory=list)
    tenant: str = ""
    include: list[str] = field(default_factory=list)
    # The numbers of the sources given to the model, shared by the kinds that give sources ([1], [2]…), so that
    # one number names one source across web and file search.
    source_numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    request_tools: list[Any] = field(default_factory=list)  # all the request's tools (set by the registry)
    # Programs of earlier responses that go on now (parley.tools.program_replay.PendingProgram).
    programs: list[Any] = field(default_factory=list)


Produced = Event | ItemDone | CallDone


def completed(value: Any) -> asyncio.Future[Any]:
    """A call's run that is already done (a call that needs no I/O)."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


class Binding:
    """One kind's tools bound to one response.  Every method has a default, so a kind implements what it
    uses: a kind whose calls Parley runs implements :meth:`offered`, :meth:`start` and :meth:`emit`."""

    async def setup(self, first_index: int) -> AsyncIterator[Event | ItemDone]:
        """Work before the first model call (listing an MCP server's tools): its events and items."""
        return
        yield

    def offered(self) -> list[Offered]:
        return []

    def forced(self, choice: ToolModel) -> Any:
        """The Chat Completions ``tool_choice`` for a request ``tool_choice`` of this kind (first step)."""
        return "required"

    def start(self, call: ToolCall, approved: bool) -> Awaitable[Any] | None:
        """Start a call (so the calls of one step run together); ``None`` when it waits for approval."""
        return completed(None)

    async def emit(self, call: ToolCall, run: Awaitable[Any] | None, index: int) -> AsyncIterator[Produced]:
        """The call's events and items, its first item at output ``index``; last, its :class:`CallDone`."""
        raise NotImplementedError
        yield

    def approval(self, call: ToolCall) -> dict[str, str] | None:
        """For a call that needs the client's approval first: ``server_label`` and ``name`` of the
        ``mcp_approval_request`` that asks for it; ``None`` when it runs without approval."""
        return None

    def resumed(self) -> list[ToolCall]:
        """Calls of earlier turns that this binding goes on with now, before the model is called (a program
        whose tool calls the client has answered)."""
        return []

    def function_for(self, server_label: str, name: str) -> str | None:
        """The function that now runs an approved call of an earlier turn (named by its approval request)."""
        return None

    def cite(self, text: str) -> list[Citation]:
        """The citations of sources this binding gave the model that ``text`` holds."""
        return []

    def cites(self) -> bool:
        """Whether :meth:`cite` may find anything now (it has given the model sources)."""
        return False

    async def aclose(self) -> None:
        return None


class ToolKind:
    """A kind of tool, registered by the ``type`` values it reads (see :mod:`parley.tools.registry`)."""

    models: ClassVar[dict[str, type[ToolModel]]] = {}  # tool type -> request model
    choices: ClassVar[dict[str, type[ToolModel]]] = {}  # tool_choice type -> model

    def precheck(self, raw: dict[str, Any], where: str) -> None:
        """Checks of a tool's raw JSON before it is validated (after its model's ``UNSUPPORTED`` fields)."""

    def check(self, tools: list[Any], choice: ToolModel | None) -> None:
        """Checks across a request's tools of this kind, and of its ``tool_choice`` when it is of this kind."""

    def check_request(self, tools: list[Any]) -> None:
        """Checks of how the request's other tools use this kind (all of ``tools``, of every kind)."""

    def check_turn(self, previous_output: list[Any], items: list[Any]) -> None:
        """Checks of the request's input items against the previous response's output (typed), before the model
        runs: what this kind's earlier calls ask of the client's answers."""

    async def admit(self, tools: list[tuple[str, Any]], env: ToolEnv, tenant: str = "") -> None:
        """Checks that need the server, of this kind's tools (each with its place, ``tools[i]``) for the caller's
        ``tenant``: raise :class:`~parley.errors.InvalidRequest` (or ``NotFound``) before the model runs."""

    def bind(self, tools: list[Any], context: BindContext) -> Binding | None:
        """The binding of a request's tools of this kind to one response (``tools`` may be empty)."""
        return None


class SingleToolKind(ToolKind):
    """A kind of which a request gives at most one tool, and whose ``tool_choice`` needs it in ``tools``."""

    label: ClassVar[str] = ""  # how its errors name it

    def check(self, tools: list[Any], choice: ToolModel | None) -> None:
        if len(tools) > 1:
            raise InvalidRequest(f"Give at most one {self.label} tool.", param="tools")
        if choice is not None and not tools:
            raise InvalidRequest(f"tool_choice names {self.label}, but 'tools' has no {self.label} tool.",
                                 param="tool_choice")


def search_opening(item: Any, index: int, in_progress: type, searching: type) -> list[Event]:
    """A search call's first events (web or file search): the item added, ``in_progress``, ``searching``."""
    common = {"item_id": item.id, "output_index": index, "sequence_number": 0}
    return [ResponseOutputItemAddedEvent(type="response.output_item.added", item=item.model_copy(deep=True),
                                         output_index=index, sequence_number=0),
            in_progress(type=f"response.{item.type}.in_progress", **common),
            searching(type=f"response.{item.type}.searching", **common)]


def search_closing(item: Any, index: int, completed: type, call_id: str, text: str) -> list[Produced]:
    """A search call's last events: ``completed`` (when it completed), the item done, and its tool message."""
    events: list[Produced] = []
    if item.status == "completed":
        events.append(completed(type=f"response.{item.type}.completed", item_id=item.id, output_index=index,
                                sequence_number=0))
    events.append(ResponseOutputItemDoneEvent(type="response.output_item.done", item=item.model_copy(deep=True),
                                              output_index=index, sequence_number=0))
    events.append(CallDone(item, {"role": "tool", "tool_call_id": call_id, "content": text}))
    return events

