"""Stored prompts: versioned templates of a create (``prompt: {id, version, variables}``)."""
