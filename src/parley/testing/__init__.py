"""Fakes that Parley ships for what cannot be had offline, each a real server on loopback (and the scripted
model also in process, without a socket, for engine tests)."""

from parley.testing.scripted import Reply, ScriptedBackend, ScriptedChat, ToolCall, echo_responder, last_user_text
from parley.testing.server import ParleyProcess, free_port

__all__ = ["ParleyProcess", "Reply", "ScriptedBackend", "ScriptedChat", "ToolCall", "echo_responder", "free_port",
           "last_user_text"]
