"""Host-side LLM broker: the only holder of the executor LLM's client and API key.

Sandboxed operators send chat messages; the broker makes the call with ``openai.AsyncOpenAI``
over HTTP (bounded concurrency; the client retries 429, 5xx and timeouts with backoff).
"""
from __future__ import annotations

import asyncio


class LLMBroker:
    def __init__(self, base_url: str, api_key: str, model: str, *, temperature: float, max_tokens: int,
                 max_concurrency: int, timeout_s: float, max_retries: int):
        self.base_url = base_url
        self._api_key = api_key
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self._client = None  # built in the event loop that uses it
        self._semaphore = None

    def _ensure_client(self):
        if self._client is None:
            from openai import AsyncOpenAI

            self._client = AsyncOpenAI(base_url=self.base_url, api_key=self._api_key,
                                       timeout=self.timeout_s, max_retries=self.max_retries)
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
        return self._client

    async def complete(self, messages: list) -> dict:
        """One chat completion: ``{"content": str, "usage": {...}}``."""
        client = self._ensure_client()
        async with self._semaphore:
            response = await client.chat.completions.create(
                model=self.model, messages=messages, temperature=self.temperature,
                max_tokens=self.max_tokens)
        if not response.choices or response.choices[0].message.content is None:
            raise ValueError("malformed response: no message content")
        usage = response.usage
        return {"content": response.choices[0].message.content,
                "usage": {"prompt_tokens": getattr(usage, "prompt_tokens", 0) or 0,
                          "completion_tokens": getattr(usage, "completion_tokens", 0) or 0}}
