"""FlagMeter client: meter AI-token usage per tenant.

from flagmeter import Client
with Client("http://127.0.0.1:3000", api_key="fmk_...") as fm:
    fm.record("acme-corp", "gpt-4o", input_tokens=1200, output_tokens=300)
"""

from ._core import RetryPolicy, Stats, uuid7
from .aio import AsyncCall, AsyncClient
from .client import UNSET, Call, Client
from .errors import ApiError, DeadlineExceeded, FlagMeterError, FlushError, LimitExceeded, QueueFull
from .providers import usage_from_anthropic, usage_from_openai, usage_from_response

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "AsyncCall",
    "AsyncClient",
    "Call",
    "Client",
    "DeadlineExceeded",
    "FlagMeterError",
    "FlushError",
    "LimitExceeded",
    "QueueFull",
    "RetryPolicy",
    "Stats",
    "UNSET",
    "usage_from_anthropic",
    "usage_from_openai",
    "usage_from_response",
    "uuid7",
]
