"""``parley verify``: Parley's conformance scenarios against any Responses endpoint."""

from parley.verify.runner import Outcome, run_verify

__all__ = ["Outcome", "run_verify"]
