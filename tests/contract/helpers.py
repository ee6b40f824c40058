"""Re-exported for the tests: strict parsing lives in :mod:`parley.testing.strict`."""

from parley.testing.strict import ValidatingTransport, create_raw, parse_sse, stream_raw

__all__ = ["ValidatingTransport", "create_raw", "parse_sse", "stream_raw"]
