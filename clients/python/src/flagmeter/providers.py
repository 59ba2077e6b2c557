"""Token classes read from a provider's response.

Each provider counts cached and reasoning tokens its own way; getting it
wrong bills a cached token twice or not at all. These functions map a
response's usage to FlagMeter's four classes, which never overlap (the
table is in the package's README):

- OpenAI (Chat Completions and Responses): the prompt count
  (``prompt_tokens`` / ``input_tokens``) *includes* its details'
  ``cached_tokens`` and ``cache_write_tokens``, so
  ``input = prompt - cached - cache_write``, ``cache_read = cached``,
  ``cache_write = cache_write_tokens`` (0 when absent), and
  ``output = completion_tokens`` / ``output_tokens``, reasoning tokens
  included (they are billed as output).
- Anthropic Messages: ``input_tokens`` *excludes* both cache classes, so
  each field maps as it is: ``cache_read_input_tokens`` → cache read,
  ``cache_creation_input_tokens`` → cache write.

Each accepts a plain dict (the JSON body) or an official SDK's object
(read with ``getattr``; the SDKs are never imported): a whole response, a
stream's final chunk (Chat Completions with
``stream_options={"include_usage": True}``), a Responses stream's
``response.completed`` event, Anthropic's ``message_start`` or
``message_delta`` event, or the usage object itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from .types import TokenUsage

__all__ = ["usage_from_openai", "usage_from_anthropic", "usage_from_response"]


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _has(obj: Any, name: str) -> bool:
    if isinstance(obj, Mapping):
        return name in obj
    return obj is not None and hasattr(obj, name)


def _int(usage: Any, name: str, default: Optional[int] = 0) -> int:
    value = _get(usage, name)
    if value is None:
        if default is None:
            raise ValueError(f"usage has no {name}")
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"usage {name} must be a non-negative integer, not {value!r}")
    return value


def _find_usage(response: Any, *fields: str) -> Any:
    """The usage object: the response's ``usage``, that of the response or
    message it wraps (stream events), or the response itself."""
    for holder in (response, _get(response, "response"), _get(response, "message")):
        usage = _get(holder, "usage")
        if usage is not None:
            return usage
    if any(_get(response, field) is not None for field in fields):
        return response
    raise ValueError(
        "no usage in this response: a stream carries it only in its last chunk "
        "(OpenAI: stream_options={'include_usage': True}; Anthropic: message_delta "
        "or the SDK's final message)"
    )


def _classes(input_tokens: int, output_tokens: int, cache_read: int, cache_write: int) -> TokenUsage:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
    }


def _openai(usage: Any) -> TokenUsage:
    if _get(usage, "prompt_tokens") is not None:  # Chat Completions
        prompt = _int(usage, "prompt_tokens", None)
        details = _get(usage, "prompt_tokens_details")
        output = _int(usage, "completion_tokens")
    else:  # Responses API
        prompt = _int(usage, "input_tokens", None)
        details = _get(usage, "input_tokens_details")
        output = _int(usage, "output_tokens")
    # Both cache counts are a breakdown of the prompt, not added to it.
    cached = _int(details, "cached_tokens")
    written = _int(details, "cache_write_tokens")
    if cached + written > prompt:
        raise ValueError(f"cached tokens ({cached} read, {written} written) exceed the prompt's ({prompt})")
    return _classes(prompt - cached - written, output, cached, written)


def _anthropic(usage: Any) -> TokenUsage:
    # input_tokens excludes both cache classes: the four are disjoint.
    return _classes(
        _int(usage, "input_tokens"),
        _int(usage, "output_tokens"),
        _int(usage, "cache_read_input_tokens"),
        _int(usage, "cache_creation_input_tokens"),
    )


def usage_from_openai(response: Any) -> TokenUsage:
    """Token classes of an OpenAI Chat Completions or Responses answer."""
    return _openai(_find_usage(response, "prompt_tokens", "input_tokens"))


def usage_from_anthropic(response: Any) -> TokenUsage:
    """Token classes of an Anthropic Messages answer."""
    return _anthropic(_find_usage(response, "input_tokens", "output_tokens"))


def usage_from_response(response: Any) -> TokenUsage:
    """Either provider's answer, told apart by its usage's fields.

    Chat Completions has ``prompt_tokens``; Anthropic has its
    ``cache_*_input_tokens`` fields; the Responses API has
    ``input_tokens_details``. A usage with none of them (plain
    ``input_tokens`` and ``output_tokens``) maps the same either way."""
    usage = _find_usage(response, "prompt_tokens", "input_tokens", "output_tokens")
    if _has(usage, "prompt_tokens") or _has(usage, "input_tokens_details"):
        return _openai(usage)
    return _anthropic(usage)
