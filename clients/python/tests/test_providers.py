"""Golden tests of the provider mappings: response bodies written from each
provider's documented schema (clients/testdata/providers, shared with the
TypeScript client), read as plain dicts, as attribute objects, and, when the
official SDKs are installed, as the SDKs' own pydantic models."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict

import pytest

from flagmeter import usage_from_anthropic, usage_from_openai, usage_from_response

GOLDEN = Path(__file__).resolve().parents[2] / "testdata" / "providers"
CASES = sorted(GOLDEN.glob("*.json"))
MAPPERS = {"openai": usage_from_openai, "anthropic": usage_from_anthropic}


def load(path: Path) -> Dict[str, Any]:
    return json.loads(path.read_text())


def as_object(value: Any) -> Any:
    """The body as nested attribute objects, as an SDK without pydantic would give it."""
    if isinstance(value, dict):
        return SimpleNamespace(**{key: as_object(item) for key, item in value.items()})
    if isinstance(value, list):
        return [as_object(item) for item in value]
    return value


def test_there_are_golden_bodies_for_both_providers() -> None:
    providers = {load(path)["provider"] for path in CASES}
    assert providers == {"openai", "anthropic"}
    assert len(CASES) >= 10


@pytest.mark.parametrize("path", CASES, ids=[path.stem for path in CASES])
def test_a_documented_body_maps_to_its_golden_classes(path: Path) -> None:
    case = load(path)
    mapper = MAPPERS[case["provider"]]
    assert mapper(case["response"]) == case["expected"]
    assert mapper(as_object(case["response"])) == case["expected"]
    # The usage object alone maps the same as the response around it.
    assert usage_from_response(case["response"]) == case["expected"]


@pytest.mark.parametrize("path", CASES, ids=[path.stem for path in CASES])
def test_the_classes_add_up_to_what_the_provider_bills(path: Path) -> None:
    case = load(path)
    usage = case["response"].get("usage") or case["response"]["response"]["usage"]
    total = sum(case["expected"].values())
    if "total_tokens" in usage:  # OpenAI: the total is prompt + completion
        assert total == usage["total_tokens"]
    else:  # Anthropic: the four fields are disjoint
        assert total == sum(
            usage.get(name) or 0
            for name in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
        )


def test_a_stream_chunk_without_usage_says_how_to_get_it() -> None:
    chunk = {"object": "chat.completion.chunk", "choices": [{"delta": {"content": "Hi"}}], "usage": None}
    with pytest.raises(ValueError, match="include_usage"):
        usage_from_openai(chunk)


def test_more_cached_than_prompt_tokens_is_refused() -> None:
    with pytest.raises(ValueError, match="exceed"):
        usage_from_openai({"prompt_tokens": 10, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 11}})


def test_a_negative_or_non_integer_count_is_refused() -> None:
    with pytest.raises(ValueError):
        usage_from_anthropic({"input_tokens": -1, "output_tokens": 3})
    with pytest.raises(ValueError):
        usage_from_anthropic({"input_tokens": "12", "output_tokens": 3})


def test_the_official_openai_sdk_objects_map_like_their_json() -> None:
    openai_types = pytest.importorskip("openai.types")
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    for name, model in (
        ("openai_chat_completion_cached", ChatCompletion),
        ("openai_chat_completion_reasoning", ChatCompletion),
        ("openai_chat_stream_final_chunk", ChatCompletionChunk),
        ("openai_responses", openai_types.responses.Response),
    ):
        case = load(GOLDEN / f"{name}.json")
        obj = model.model_validate(case["response"])
        assert usage_from_openai(obj) == case["expected"], name
        assert usage_from_response(obj) == case["expected"], name
        assert usage_from_openai(obj.usage) == case["expected"], name


def test_the_official_anthropic_sdk_objects_map_like_their_json() -> None:
    anthropic_types = pytest.importorskip("anthropic.types")

    for name in ("anthropic_message_cache_write", "anthropic_message_cache_read", "anthropic_message_no_cache"):
        case = load(GOLDEN / f"{name}.json")
        obj = anthropic_types.Message.model_validate(case["response"])
        assert usage_from_anthropic(obj) == case["expected"], name
        assert usage_from_response(obj) == case["expected"], name
    case = load(GOLDEN / "anthropic_stream_message_delta.json")
    event = anthropic_types.RawMessageDeltaEvent.model_validate(case["response"])
    assert usage_from_anthropic(event) == case["expected"]
