"""Tools: the contract between the engine and a tool kind (:mod:`parley.tools.base`), the registry of kinds
(:mod:`parley.tools.registry`), and the built-in kinds, one module each: client-side tools
(:mod:`parley.tools.client`), MCP servers (:mod:`parley.tools.mcp_tools`, speaking MCP through
:mod:`parley.tools.mcp`) and web search (:mod:`parley.tools.web_search`).  Approval is a wrapper any
kind's binding can be put in (:mod:`parley.tools.approval`)."""
