"""Who is calling and what they may touch: principals, tokens, API keys, roles, tenancy."""
