"""Infrastructure: the executor LLM's client (the broker). It imports only the core."""
