"""The chat-completions protocol as the broker speaks it (pure functions): reading an answer,
telling a refused request from a failed one, how long to wait before a retry, and the cache key.
"""
from __future__ import annotations

import email.utils
import hashlib
import json
import random
import time
from dataclasses import dataclass

import openai

from flowpo.errors import RequestRejected


class MalformedResponse(Exception):
    """A 200 answer that is not a chat completion with message content (retried like a 5xx)."""


@dataclass(frozen=True)
class Reply:
    content: str
    prompt_tokens: int
    completion_tokens: int


def parse_completion(text: str) -> Reply:
    """The answer in a chat-completions body; MalformedResponse for anything else.

    Parsed here rather than by the client, which hands back a bare string or a half-built model
    for some bad bodies instead of raising.
    """
    try:
        data = json.loads(text)
    except ValueError:
        raise MalformedResponse(f"body is not JSON: {text[:80]!r}") from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices:
        raise MalformedResponse("no choices")
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise MalformedResponse("no message content")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return Reply(content, _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")))


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


CONTENT_REJECTIONS = (400, 413, 422)
ROLES = ("system", "user", "assistant")


def is_rejection(exc: Exception) -> bool:
    return isinstance(exc, openai.APIStatusError) and exc.status_code in CONTENT_REJECTIONS


def check_messages(messages: object) -> None:
    """RequestRejected unless ``messages`` is a non-empty list of {role, content: str}."""
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and set(m) == {"role", "content"} and m["role"] in ROLES
            and isinstance(m["content"], str) for m in messages):
        raise RequestRejected("malformed chat messages (a non-empty list of {role: system|user|assistant, "
                              "content: str} is required)")


def is_retryable(exc: Exception) -> bool:
    """429, 408, 5xx, timeouts, connection errors and malformed answers; other 4xx are our fault."""
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 429) or exc.status_code >= 500
    return isinstance(exc, (openai.APIConnectionError, openai.APIResponseValidationError, MalformedResponse))


def retry_after_s(headers) -> float | None:
    """Seconds a ``Retry-After`` (or ``retry-after-ms``) header asks for; None when absent or unreadable."""
    if headers is None:
        return None
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def backoff_s(attempt: int, base_s: float, cap_s: float) -> float:
    """Exponential backoff with equal jitter: half fixed, so a retry always waits; half random, so
    many sandboxes that failed together do not retry together."""
    delay = min(cap_s, base_s * 2 ** min(attempt, 30))
    return delay / 2 + random.uniform(0, delay / 2)


def retry_delay_s(exc: Exception, attempt: int, base_s: float, cap_s: float) -> float:
    response = getattr(exc, "response", None)
    asked = retry_after_s(getattr(response, "headers", None))
    return min(asked, cap_s) if asked is not None else backoff_s(attempt, base_s, cap_s)


def describe_error(exc: Exception) -> str:
    if isinstance(exc, openai.APIStatusError):
        reason = exc.response.reason_phrase or ""
        detail = exc.body.get("message") if isinstance(exc.body, dict) else None
        return f"{exc.status_code} {reason}".strip() + (f": {str(detail)[:200]}" if detail else "")
    if isinstance(exc, openai.APITimeoutError):
        return "request timed out"
    if isinstance(exc, openai.APIConnectionError):
        return f"connection error: {exc.__cause__ or exc}"
    if isinstance(exc, MalformedResponse):
        return f"malformed response: {exc}"
    return f"{type(exc).__name__}: {exc}"


def cache_key(model: str, messages: list, temperature: float, max_tokens: int) -> str:
    request = {"model": model, "messages": messages, "temperature": temperature, "max_tokens": max_tokens}
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
