"""The machinery every remote API miner shares (docs/miners-api.md).

DeepInterestGR (arXiv 2602.18907) asks a large model about every item of a
catalogue, so mining is many thousands of paid, rate-limited, failure-prone
calls. A backend subclasses :class:`RemoteMiner`, names its SDK and that
SDK's async client class, and provides one coroutine that sends one
conversation and returns the raw reply with its token counts
(:meth:`RemoteMiner._send`, raising the SDK's own exceptions). This module
does the rest, the same way for every backend:

- the question comes from the versioned prompt (:func:`~.prompts.prompt_for`);
- the answer cache (:mod:`.cache`) is read first, and every valid reply is
  stored the moment it returns, so a run killed halfway and started again
  never pays twice for an answer it already has;
- requests run concurrently under a cap, and under requests-per-minute and
  tokens-per-minute limits (:class:`TokenBucket`; a request's tokens are
  estimated before it is sent);
- 429, 5xx, timeouts and connection errors are retried with exponential
  backoff and jitter, waiting at least what ``Retry-After`` asks;
- replies are parsed by :func:`~.replies.to_result` (which repairs a reply cut
  off mid-JSON once); an invalid answer is asked again once, with the reason,
  then recorded as a failure;
- a dollar budget is never crossed: each send first reserves its worst case
  (an upper bound of its input tokens plus ``max_tokens``, at the model's
  prices, :mod:`.cost`) and settles to the real cost after; once a
  reservation cannot fit, the remaining requests fail with error ``"budget"``
  without being sent.

The API key is read from an environment variable when a run starts and goes
only to the SDK client: it is never part of the options, the cache key, a
result, an error message or a repr (error texts are scrubbed of it).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import mimetypes
import os
import random
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from ..progress import bar as tqdm

from ..errors import ConfigError, DeepInterestError, require
from ..secrets import check_env_name
from .base import MineRequest, MineResult, Task
from .cache import MiningCache, Reply, cache_key
from .cost import Price, price_for, warn_unpriced
from .limits import Budget, Throttle
from .prompts import Prompt, prompt_for
from .replies import failure, to_result
from .schema import json_schema

# Input the prompt text does not show: message framing, and the tool-use
# instructions some APIs add (a few hundred tokens); and a generous allowance
# per image. Both only enter estimates, which settle to the reported counts.
OVERHEAD_TOKENS = 500
IMAGE_TOKENS = 2000
RETRY_STATUS = frozenset({408, 409, 429})  # plus every 5xx
REASK = ("Your previous reply was not a valid answer ({problem}). Reply again with one JSON "
         "object only, exactly in the format the instructions give.")
_KEYLIKE = re.compile(r"\b(sk|key|api)[-_][A-Za-z0-9_\-]{8,}", re.IGNORECASE)


class RemoteOptions(BaseModel):
    """Settings every remote backend takes (a backend's ``Options`` adds its own)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="model id as the API names it")
    base_url: str | None = Field(None, description="another server speaking the same API")
    api_key_env: str | None = Field(None, description="env var holding the key, if not the "
                                    "backend's default")
    max_tokens: int = Field(1024, gt=0, description="reply length cap (also the budget's "
                            "worst case)")
    temperature: float = Field(0.0, ge=0.0)
    timeout: float = Field(60.0, gt=0, description="seconds per request")
    rpm: float | None = Field(None, gt=0, description="requests per minute, at most")
    tpm: float | None = Field(None, gt=0, description="tokens per minute, at most (estimated)")
    concurrency: int = Field(8, ge=1, description="requests in flight, at most")
    retries: int = Field(5, ge=0, description="resends after 429, 5xx, timeouts, lost "
                         "connections")
    reasks: int = Field(1, ge=0, description="asks again after an invalid answer")
    backoff: float = Field(1.0, ge=0, description="first retry's wait in seconds (doubles)")
    max_wait: float = Field(120.0, ge=0, description="longest single wait before a retry")
    budget_usd: float | None = Field(None, gt=0, description="dollars never to exceed")
    prices: Price | None = Field(None, description="$ per 1M tokens, overriding prices.toml")
    cache: str | None = Field(None, description="answer cache file (default "
                              "$DEEPINTEREST_CACHE or ~/.cache/deepinterest)")
    use_cache: bool = True
    progress: bool = True

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        return value if value is None else check_env_name(value)


def build_options(model: type[RemoteOptions], options: dict[str, Any], *,
                  backend: str, key_env_var: str) -> RemoteOptions:
    """Validate ``options``; a :class:`ConfigError` names the bad fields, never their values."""
    try:
        return model(**options)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}"
                             for e in exc.errors())
        hint = (f" (the key is read from the environment variable {key_env_var}; api_key_env "
                "names another)" if {"api_key", "key"} & set(options) else "")
        raise ConfigError(f"{backend} miner options: {problems}{hint}") from None


# ---------------------------------------------------------------- small helpers


@dataclass(frozen=True)
class Image:
    """An image as a URL, or as base64 data with its media type."""

    url: str | None = None
    media_type: str | None = None
    data: str | None = None

    @property
    def data_url(self) -> str:
        return self.url or f"data:{self.media_type};base64,{self.data}"


@dataclass(frozen=True)
class Conversation:
    """What one send asks: the system text and turns (role, text); the first turn,
    the user's question, carries the image if there is one."""

    task: Task
    system: str
    turns: tuple[tuple[str, str], ...]
    image: Image | None = None

    def texts(self) -> list[str]:
        return [self.system, *(text for _, text in self.turns),
                json.dumps(json_schema(self.task))]


def load_image(image: str) -> Image:
    """``image`` (http(s) URL, data URL or local file) ready to send."""
    if image.startswith(("http://", "https://")):
        return Image(url=image)
    if image.startswith("data:"):
        head, _, data = image.partition(",")
        return Image(media_type=head[5:].split(";")[0] or "image/png", data=data)
    path = Path(image).expanduser()
    if not path.is_file():
        raise DeepInterestError(f"image file not found: {path}")
    media_type = mimetypes.guess_type(path.name)[0] or "image/png"
    return Image(media_type=media_type, data=base64.b64encode(path.read_bytes()).decode("ascii"))


def token_estimates(conversation: Conversation) -> tuple[int, int]:
    """(typical, upper bound) input tokens: 4 characters a token, and 1 byte a token
    (no tokenizer's token is shorter than a byte), plus framing and images."""
    texts = conversation.texts()
    extra = OVERHEAD_TOKENS + (IMAGE_TOKENS if conversation.image else 0)
    return (sum(map(len, texts)) // 4 + extra,
            sum(len(t.encode("utf-8")) for t in texts) + extra)


def retry_after(headers: Any) -> float | None:
    """Seconds the server asks to wait: ``retry-after-ms``, or ``Retry-After`` as
    seconds or as an HTTP date; None when it says nothing usable."""
    if headers is None:
        return None
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def scrub(text: str, secret: str) -> str:
    """``text`` without the secret, nor anything shaped like an API key."""
    if secret and len(secret) >= 4:
        text = text.replace(secret, "[redacted]")
    return _KEYLIKE.sub("[redacted]", text)


def is_local(url: str | None) -> bool:
    """True for a base_url on this machine or a private network (loopback, 10/8,
    192.168/16, ``*.local``...); None (the provider's own API) is remote."""
    if url is None:
        return False
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    if host in {"localhost", "0.0.0.0"} or host.endswith((".local", ".localhost")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a public host name
        return False
    return address.is_loopback or address.is_private


def public_url(url: str | None) -> str | None:
    """``url`` without credentials or query (which may hold a key), for cache keys."""
    if url is None:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


@dataclass
class Tally:
    """What one request has cost so far, over all its sends."""

    sends: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0

    def add(self, reply: Reply) -> None:
        self.tokens_in += reply.tokens_in
        self.tokens_out += reply.tokens_out
        self.cost_usd += reply.cost_usd
        self.latency_s += reply.latency_s

    def usage(self) -> dict[str, Any]:
        return dict(tokens_in=self.tokens_in, tokens_out=self.tokens_out,
                    cost_usd=self.cost_usd, latency_s=self.latency_s)


@dataclass
class _Run:
    """One ``amine`` call: the client, the key, the cap on requests in flight, the bar."""

    client: Any
    secret: str
    slots: asyncio.Semaphore
    bar: Any
    totals: Tally = field(default_factory=Tally)


# ---------------------------------------------------------------- the engine


class RemoteMiner:
    """Base of the remote API miners (module docstring); keyword-only options."""

    backend: ClassVar[str] = ""
    key_env_var: ClassVar[str] = ""
    sdk: ClassVar[str] = ""  # the SDK's module, also the pip extra that installs it
    client_class: ClassVar[str] = ""  # its async client, which takes base_url, api_key,
    # max_retries and timeout, and raises APIConnectionError for lost connections
    takes_images: ClassVar[bool] = True
    Options: ClassVar[type[RemoteOptions]] = RemoteOptions
    # Options that change an answer, hence part of the cache key (rates, retries,
    # budget and the key's variable do not).
    answer_options: ClassVar[tuple[str, ...]] = ("max_tokens", "temperature")

    def __init__(self, **options: Any):
        self._sdk = require(self.sdk, self.sdk, f"The {self.backend} miner")
        self._connection_errors = (self._sdk.APIConnectionError, ConnectionError)
        self.options = build_options(self.Options, options, backend=self.backend,
                                     key_env_var=self.key_env_var)
        self.model = self.options.model
        self.price = price_for(self.model, self.options.prices)
        if self.price is None and self.options.budget_usd is not None:
            raise ConfigError(f"{self.backend} miner: a budget needs the price of {self.model!r}, "
                              "which prices.toml does not list; set the prices option")
        self._warned_key = False
        self._api_key()  # fail now, not mid-run, when the key is missing
        self.cache = (MiningCache(self.options.cache) if self.options.use_cache else None)
        self.budget = Budget(self.options.budget_usd)
        self.throttle = Throttle(self.options.rpm, self.options.tpm)
        self._running = False

    def __repr__(self) -> str:
        where = f", base_url={public_url(self.options.base_url)!r}" if self.options.base_url else ""
        return f"{type(self).__name__}(model={self.model!r}{where})"

    def _client(self, api_key: str) -> Any:
        """The SDK's async client (its own retries off: the engine retries)."""
        return getattr(self._sdk, self.client_class)(
            base_url=self.options.base_url, api_key=api_key, max_retries=0,
            timeout=self.options.timeout)

    # -- what a backend provides

    async def _send(self, client: Any, conversation: Conversation) -> tuple[str, int | None,
                                                                            int | None]:
        """Send one conversation: (raw reply text, input tokens, output tokens); None
        for counts the server did not report. Raises the SDK's exceptions."""
        raise NotImplementedError

    # -- running

    def mine(self, requests: Sequence[MineRequest]) -> list[MineResult]:
        """Answer every request (one result each, in order); see :meth:`amine`."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.amine(requests))
        raise DeepInterestError(f"{type(self).__name__}.mine() was called inside a running "
                                "event loop; use `await miner.amine(requests)` there")

    async def amine(self, requests: Sequence[MineRequest]) -> list[MineResult]:
        """Answer every request concurrently; failures come back as results."""
        if not requests:
            return []
        if self._running:
            raise DeepInterestError(f"{self!r} is already mining; one run at a time per miner")
        secret = self._api_key()
        client = self._client(secret)
        bar = tqdm(total=len(requests), unit="item", desc=f"mining ({self.backend})",
                   disable=None if self.options.progress else True)
        run = _Run(client, secret, asyncio.Semaphore(self.options.concurrency), bar)
        self._running = True
        self.budget.start_run()
        try:
            return await self._mine_all(run, requests)
        finally:
            self._running = False
            bar.close()
            await run.client.close()

    def _api_key(self) -> str:
        """The key from its environment variable; unset is an error for a remote endpoint
        and, when named by ``api_key_env``, a warning for a local server (which often takes
        none). Messages name the variable, never a value."""
        name = self.options.api_key_env or self.key_env_var
        key = os.environ.get(name, "")
        if key:
            return key
        if not is_local(self.options.base_url):
            where = (f"the endpoint {public_url(self.options.base_url)}"
                     if self.options.base_url else f"the {self.backend} API")
            raise ConfigError(f"{self.backend} miner: the environment variable {name} is not "
                              f"set; {where} needs an API key: set {name} (or api_key_env to "
                              "the name of another variable)")
        if self.options.api_key_env and not self._warned_key:
            self._warned_key = True
            warnings.warn(f"{self.backend} miner: the environment variable {name} "
                          "(api_key_env) is not set; asking the local server without a key",
                          stacklevel=3)
        return "none"  # a local server that takes no key ignores it

    def _cache_options(self) -> dict[str, Any]:
        chosen = self.options.model_dump(include=set(self.answer_options))
        return {**chosen, "base_url": public_url(self.options.base_url)}

    async def _mine_all(self, run: _Run, requests: Sequence[MineRequest]) -> list[MineResult]:
        """One result per request, in order (the batch path, :mod:`.batches`, replaces this)."""
        return list(await asyncio.gather(*(self._one(run, q) for q in requests)))

    def _lookup(self, request: MineRequest) -> tuple[Prompt, dict[str, str], str,
                                                     MineResult | None]:
        """The prompt, result metadata and cache key of ``request``, and its cached result
        (None when the cache has no valid answer)."""
        prompt = prompt_for(request.task)
        meta = dict(backend=self.backend, model=self.model, prompt_version=prompt.version)
        key = cache_key(self.backend, self.model, prompt.version, self._cache_options(), request)
        hit = self.cache.get(key) if self.cache is not None else None
        result = to_result(request, hit, attempts=0, cached=True, **meta) if hit else None
        return prompt, meta, key, result if result is not None and result.ok else None

    def _conversation(self, request: MineRequest, prompt: Prompt) -> Conversation:
        """The first question about ``request``; raises for an image that cannot be read."""
        image = load_image(request.image) if request.image else None
        user = prompt.render(request.evidence, list(request.descriptors))
        return Conversation(request.task, prompt.system, (("user", user),), image)

    async def _one(self, run: _Run, request: MineRequest) -> MineResult:
        prompt, meta, key, result = self._lookup(request)
        if result is None:
            async with run.slots:
                result = await self._ask(run, request, prompt, key, meta)
        self._progress(run, result)
        return result

    async def _ask(self, run: _Run, request: MineRequest, prompt: Prompt, key: str,
                   meta: dict[str, str]) -> MineResult:
        """Ask, and ask again with the reason after an invalid answer."""
        try:
            first = self._conversation(request, prompt)
        except (DeepInterestError, OSError) as exc:
            return failure(request, str(exc), attempts=0, **meta)
        turns, image = first.turns, first.image
        tally, result = Tally(), None
        for _ in range(self.options.reasks + 1):
            conversation = Conversation(request.task, prompt.system, turns, image)
            reply = await self._call(run, conversation, tally)
            if isinstance(reply, str):  # no reply: why
                return failure(request, reply, attempts=tally.sends, **meta, **tally.usage())
            tally.add(reply)
            total = Reply(reply.raw, **tally.usage())
            result = to_result(request, total, attempts=tally.sends, **meta)
            if result.ok:
                if self.cache is not None:
                    self.cache.put(key, reply, request=request, **meta)
                return result
            problem = result.error or "invalid"
            turns = (*turns, ("assistant", reply.raw or "(empty reply)"),
                     ("user", REASK.format(problem=problem)))
        return result

    async def _call(self, run: _Run, conversation: Conversation, tally: Tally) -> Reply | str:
        """One answer from the server, resending after transient errors; a string says
        why there is none."""
        typical, bound = token_estimates(conversation)
        worst = self.price.cost(bound, self.options.max_tokens) if self.price else 0.0
        for retry in range(self.options.retries + 1):
            if not await self.budget.reserve(worst):
                return "budget"
            await self.throttle.acquire(typical + self.options.max_tokens)
            tally.sends += 1
            start = time.monotonic()
            try:
                raw, tokens_in, tokens_out = await asyncio.wait_for(
                    self._send(run.client, conversation), self.options.timeout)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a result
                wait = await self._after_error(exc, worst, typical, retry)
                if wait is None or retry == self.options.retries:
                    return self._describe(exc, run.secret)
                await asyncio.sleep(wait)
                continue
            reply = self._priced(raw, tokens_in, tokens_out, bound, time.monotonic() - start)
            await self.budget.settle(worst, reply.cost_usd)
            self.throttle.settle(typical + self.options.max_tokens,
                                 reply.tokens_in + reply.tokens_out)
            return reply
        raise AssertionError("unreachable: the last retry returns")

    def _priced(self, raw: str, tokens_in: int | None, tokens_out: int | None, bound: int,
                latency: float) -> Reply:
        """The reply with its cost; counts the server did not report are taken at
        their upper bound (bytes), so the budget still holds."""
        tokens_in = bound if tokens_in is None else tokens_in
        tokens_out = len(raw.encode("utf-8")) if tokens_out is None else tokens_out
        if self.price is None:
            warn_unpriced(self.model)
        cost = self.price.cost(tokens_in, tokens_out) if self.price else 0.0
        return Reply(raw, tokens_in, tokens_out, cost, latency)

    async def _after_error(self, exc: Exception, worst: float, typical: int,
                           retry: int) -> float | None:
        """Settle the failed send; the seconds to wait before resending, or None when
        the error is not worth a retry."""
        status = getattr(exc, "status_code", None)
        # With an HTTP status the server refused the request and charged nothing; a
        # timeout or a lost connection may have been charged, so the budget keeps
        # its worst case.
        await self.budget.settle(worst, 0.0 if isinstance(status, int) else worst)
        self.throttle.settle(typical + self.options.max_tokens, 0)
        if isinstance(status, int):
            if status not in RETRY_STATUS and status < 500:
                return None
            asked = retry_after(getattr(getattr(exc, "response", None), "headers", None))
        elif isinstance(exc, (asyncio.TimeoutError, *self._connection_errors)):
            asked = None
        else:
            return None
        return self._backoff(retry, asked)

    def _backoff(self, retry: int, asked: float | None) -> float:
        """Exponential with jitter; at least what the server asked (and everyone waits)."""
        if asked is not None:
            wait = min(asked, self.options.max_wait) * random.uniform(1.0, 1.1)
            self.throttle.pause(wait)
            return wait
        return min(self.options.backoff * 2 ** retry, self.options.max_wait) * random.uniform(
            0.5, 1.0)

    def _describe(self, exc: Exception, secret: str) -> str:
        if isinstance(exc, asyncio.TimeoutError):
            return f"timeout after {self.options.timeout:g} s"
        status = getattr(exc, "status_code", None)
        message = str(getattr(exc, "message", None) or exc)
        head = f"HTTP {status}" if isinstance(status, int) else type(exc).__name__
        return scrub(f"{head}: {message}", secret)[:300]

    def _progress(self, run: _Run, result: MineResult) -> None:
        if not result.cached:
            run.totals.add(Reply("", result.tokens_in, result.tokens_out, result.cost_usd))
        run.bar.update(1)
        run.bar.set_postfix(tokens=run.totals.tokens_in + run.totals.tokens_out,
                            usd=f"{run.totals.cost_usd:.4f}", refresh=False)

