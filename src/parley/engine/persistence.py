"""When a response is written to the store: one policy, decided from the request alone.

- ``store: false``: never.
- streamed (``stream: true``): an ``in_progress`` row before the first event (so the client, or anyone
  with its id, can poll it, and recovery can fail it after a crash), written while the run's first step
  calls the model (a tool waits for it; see :mod:`parley.engine.opening`), the items so far after each tool step
  that calls the model again, and the final state before the terminal event.
- background: a ``queued`` row when it is accepted, then as streamed once an instance runs it.
- not streamed: the final state only, before the answer is sent.  The client waits on the connection and
  learns of a crash from it; one write instead of three keeps the latency down.

The final write is an update of the row when one was written at the start, else an insert.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Persistence:
    """Which writes a response gets."""

    at_start: bool = False  # an ``in_progress`` row before the first event
    after_tool_steps: bool = False  # the items so far, after each tool step that calls the model again
    at_end: bool = False  # the final state, before the terminal event

    @classmethod
    def for_request(cls, *, store: bool, stream: bool, background: bool = False) -> Persistence:
        if not store:
            return NOT_STORED
        return STREAMED if stream or background else ANSWERED

    @property
    def needs_store(self) -> bool:
        """Whether the response cannot be made without the store (it is refused when the store is down)."""
        return self.at_start or self.at_end


NOT_STORED = Persistence()
STREAMED = Persistence(at_start=True, after_tool_steps=True, at_end=True)
ANSWERED = Persistence(at_end=True)
