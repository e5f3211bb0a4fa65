"""Which outgoing HTTP requests are LLM provider calls, and of which kind.

By host and path, decided once per (host, path) and remembered (bounded):

- ``api.openai.com`` and Azure OpenAI (``*.openai.azure.com``): ``/chat/completions``,
  ``/completions``, ``/responses``, ``/embeddings``;
- ``api.anthropic.com``: ``/v1/messages``;
- every base URL in ``ANALYTICS_LLM_HOSTS`` (``http://127.0.0.1:8000/v1``, an OpenAI-compatible
  server): the same paths under it;
- on any host, a path ending in ``/chat/completions`` or ``/v1/messages`` (vLLM, Ollama,
  OpenRouter, Groq, Together, LiteLLM proxies speak those).

Only ``POST`` requests are calls; ``/v1/messages/count_tokens``, batches and the like are not.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit

# Path ending -> gen_ai.operation.name.
_OPERATIONS = (
    ("/chat/completions", "chat"),
    ("/completions", "text_completion"),
    ("/responses", "chat"),
    ("/embeddings", "embeddings"),
    ("/v1/messages", "chat"),
)
_ANY_HOST = ("/chat/completions", "/v1/messages")
# Hosts whose provider is known (gen_ai.provider.name); elsewhere the model's name says.
_PROVIDERS = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "openrouter.ai": "openrouter",
    "api.groq.com": "groq",
    "api.together.xyz": "together_ai",
    "api.deepseek.com": "deepseek",
    "api.mistral.ai": "mistral_ai",
    "api.x.ai": "x_ai",
    "api.perplexity.ai": "perplexity",
    "api.fireworks.ai": "fireworks_ai",
}
_AZURE_SUFFIXES = (".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com")


class Endpoint(NamedTuple):
    """What a recognised call is."""

    operation: str
    """``chat``, ``text_completion`` or ``embeddings``."""
    provider: str | None
    """``gen_ai.provider.name`` when the host says; ``None``: the model's name says."""


def _operation(path: str) -> str | None:
    for ending, operation in _OPERATIONS:
        if path.endswith(ending):
            return operation
    return None


class Endpoints:
    """The rules above, with the user's base URLs."""

    def __init__(self, base_urls: tuple[str, ...] = ()) -> None:
        self._bases: list[tuple[str, str]] = []
        for url in base_urls:
            parts = urlsplit(url if "://" in url else f"http://{url}")
            host = (parts.hostname or "").lower()
            if parts.port:
                host = f"{host}:{parts.port}"
            self._bases.append((host, parts.path.rstrip("/")))
        self._known: dict[tuple[str, str], Endpoint | None] = {}

    def match(self, method: str, host: str, path: str) -> Endpoint | None:
        """The endpoint a request goes to, or ``None`` (not an LLM call). ``host`` is
        ``name[:port]`` as the URL writes it (port only when not the scheme's default)."""
        if method != "POST":
            return None
        key = (host, path)
        try:
            return self._known[key]
        except KeyError:
            pass
        found = self._decide(host.lower(), path.rstrip("/"))
        if len(self._known) >= 1024:  # bounded: paths can carry ids
            self._known.clear()
        self._known[key] = found
        return found

    def _decide(self, host: str, path: str) -> Endpoint | None:
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host
        provider = _PROVIDERS.get(name)
        if provider is None and name.endswith(_AZURE_SUFFIXES):
            provider = "azure.ai.openai"
        listed = any(host == base_host and path.startswith(base_path) for base_host, base_path in self._bases)
        if name in ("api.openai.com", "api.anthropic.com") or provider == "azure.ai.openai" or listed:
            operation = _operation(path)
            if operation is not None and not (name == "api.anthropic.com" and not path.endswith("/v1/messages")):
                return Endpoint(operation, provider)
            return None
        if path.endswith(_ANY_HOST):
            return Endpoint("chat", provider)
        return None
