"""User-facing errors: the CLI prints their message alone, without a traceback."""


class FlowPOError(Exception):
    """Something the user can fix (bad config, missing model, no Docker engine)."""


class ConfigError(FlowPOError):
    """A config file or override names an unknown key or holds a value of the wrong type."""


# The executor LLM's failures, raised by its broker (flowpo/llm) and judged by the sandbox pool.


class LLMCallError(Exception):
    """The executor LLM failed: a non-retryable error, or every retry failed (infrastructure)."""


class RequestRejected(Exception):
    """The API refused the request for its own content (400, 413, 422: invalid messages, context
    length exceeded), or the messages were malformed before any call: the workflow's failure, never
    infrastructure. 401, 403 and 404 say nothing about the content (key, permission, model name)
    and stay LLMCallError."""


class BudgetExceeded(Exception):
    """A workflow used up its LLM calls or tokens."""
