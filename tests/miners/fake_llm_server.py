"""A local stand-in for the OpenAI and Anthropic HTTP APIs, with scripted faults.

It listens on 127.0.0.1 only, speaks enough of each wire format for the real
SDKs (``POST /v1/chat/completions`` and ``POST /v1/messages``: JSON bodies,
usage token counts, the error bodies and headers of each API), and answers
every item with a valid interest (or, for a judge, a label per descriptor).
A request is named by its item: the ``title`` (else the first history entry)
of the evidence in the question. ``faults={"A": ["429", "ok"]}`` scripts the
successive replies for item A:

- ``ok``: a valid answer; ``429`` / ``429:S``: rate limited with
  ``Retry-After: S`` (default 1); ``429-date:S``: the same as an HTTP date;
  ``500``: a server error; ``slow:S``: a valid answer after S seconds;
  ``notjson``: prose with no JSON; ``truncated``: JSON cut off mid-answer;
  ``echo-key``: a 401 whose message repeats the key it was sent (as some
  providers do).

The batch APIs are there too, as far as the SDKs' batch calls go: OpenAI's
file upload and content, and batches create / retrieve / cancel; Anthropic's
message batches create / retrieve / results / cancel. A batch ends at its
first status check ``batch_delay`` seconds after it was created, each line
answered as a single request would be (the same faults; ``500``, ``429`` and
``echo-key`` become that line's error, and ``expired`` expires it);
``cancelled`` lists the batches cancelled.

``latency`` delays every answer, as a model's generation would. It stops by
itself after ``lifetime`` seconds or ``max_requests`` requests, and every
connection closes after ``idle`` seconds without a request. Run it by hand
for the examples of docs/miners-api.md::

    python tests/miners/fake_llm_server.py --port 8765 --lifetime 600
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import email.utils
import itertools
import json
import re
import threading
import time
from pathlib import Path
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"  # loopback only


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    path: str
    item: str
    task: str
    at: float  # time.monotonic() on arrival
    auth: str  # the credential header's value
    action: str
    structured: str  # response_format type, or the forced tool's name ("" for none)
    image: str  # the first image's URL or media type ("" for none)


def _question(body: dict[str, Any]) -> str:
    """The text of the first user message (a string or a list of parts)."""
    first = next(m for m in body["messages"] if m["role"] == "user")
    content = first["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def _structured(body: dict[str, Any]) -> str:
    return ((body.get("response_format") or {}).get("type")
            or (body.get("tool_choice") or {}).get("name", ""))


def _image(body: dict[str, Any]) -> str:
    for message in body["messages"]:
        for part in message["content"] if isinstance(message["content"], list) else []:
            if part.get("type") == "image_url":
                return part["image_url"]["url"][:40]
            if part.get("type") == "image":
                source = part["source"]
                return source.get("url") or source.get("media_type", "")
    return ""


def _evidence(question: str) -> dict[str, Any]:
    start = question.find("{")
    return json.JSONDecoder().raw_decode(question[start:])[0] if start >= 0 else {}


def _answer(question: str) -> tuple[str, dict[str, Any], str]:
    """(item, answer, task) for a question."""
    evidence = _evidence(question)
    item = str(evidence.get("title") or (evidence.get("history") or ["?"])[0])
    if "Descriptors:" in question:
        count = len(re.findall(r"^\d+\. ", question.split("Descriptors:")[1], re.MULTILINE))
        return item, {"reasoning": "", "labels": [1] * count}, "judge"
    descriptors = [{"text": f"enjoying {item.lower()} every day", "confidence": 0.8},
                   {"text": f"a thoughtful gift around {item.lower()}", "confidence": 0.6}]
    return item, {"reasoning": "", "descriptors": descriptors}, "item"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Many clients connect at once; the default backlog of 5 drops connections, which
    # then wait a second for the kernel to retry.
    request_queue_size = 256


class FakeLLMServer:
    """The server (module docstring); a context manager, or ``start`` / ``stop``."""

    def __init__(self, *, faults: dict[str, list[str]] | None = None, port: int = 0,
                 lifetime: float = 60.0, max_requests: int = 5000, idle: float = 5.0,
                 latency: float = 0.0, batch_delay: float = 0.0):
        self.batch_delay = batch_delay  # seconds a batch takes before it can end
        self.batches: dict[str, dict[str, Any]] = {}
        self.files: dict[str, bytes] = {}
        self.cancelled: list[str] = []
        self._ids = itertools.count(1)
        self.faults = {key: list(actions) for key, actions in (faults or {}).items()}
        self.latency = latency  # seconds every answer takes, as a model's would
        self.seen: list[Seen] = []
        self.max_requests = max_requests
        self._lock = threading.Lock()
        self._httpd = _Server((HOST, port), _handler(self, idle))
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def openai_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> FakeLLMServer:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        self._timer.cancel()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def counts(self) -> Counter[str]:
        """Requests received per item."""
        with self._lock:
            return Counter(s.item for s in self.seen)

    def _next(self, path: str, item: str, task: str, auth: str, body: dict[str, Any]) -> str:
        with self._lock:
            if len(self.seen) >= self.max_requests:
                threading.Thread(target=self.stop, daemon=True).start()
                return "500"
            queue = self.faults.get(item)
            action = queue.pop(0) if queue else "ok"
            self.seen.append(Seen(path, item, task, time.monotonic(), auth, action,
                                  _structured(body), _image(body)))
            return action


    # -- batches

    def new_id(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}{next(self._ids)}"

    def batch(self, batch_id: str) -> dict[str, Any] | None:
        """The batch, ended first if its time has come."""
        with self._lock:
            batch = self.batches.get(batch_id)
        if batch is not None and batch["results"] is None and not batch["cancelled"] and (
                time.monotonic() - batch["created"] >= self.batch_delay):
            batch["results"] = [self._line(batch, custom_id, body)
                                for custom_id, body in batch["lines"]]
        return batch

    def _line(self, batch: dict[str, Any], custom_id: str, body: dict[str, Any]) -> dict:
        """One line's result: (custom_id, HTTP status or 0 for expired, reply or error body)."""
        path = "/v1/chat/completions" if batch["api"] == "openai" else "/v1/messages"
        item, answer, task = _answer(_question(body))
        action = self._next("batch" + path, item, task, batch["auth"], body)
        name = action.partition(":")[0]
        if name == "expired":
            return {"custom_id": custom_id, "status": 0, "body": None}
        status = {"500": 500, "429": 429, "429-date": 429, "echo-key": 401}.get(name, 200)
        if status != 200:
            message = f"Incorrect API key: {batch['auth']}" if status == 401 else "line failed"
            return {"custom_id": custom_id, "status": status,
                    "body": _error(path, status, message)}
        tokens_in = len(json.dumps(body)) // 4
        return {"custom_id": custom_id, "status": 200,
                "body": _success(path, body, action, answer, tokens_in)}


# ---------------------------------------------------------------- wire formats


def _openai_reply(model: str, text: str, finish: str, tokens_in: int) -> dict[str, Any]:
    tokens_out = max(1, len(text) // 4)
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "finish_reason": finish, "logprobs": None,
                                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out,
                      "total_tokens": tokens_in + tokens_out}}


def _anthropic_reply(model: str, block: dict[str, Any], finish: str,
                     tokens_in: int) -> dict[str, Any]:
    tokens_out = max(1, len(json.dumps(block)) // 4)
    return {"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": [block], "stop_reason": finish, "stop_sequence": None,
            "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out}}


def _success(path: str, body: dict[str, Any], action: str, answer: dict[str, Any],
             tokens_in: int) -> dict[str, Any]:
    text, finish = json.dumps(answer), "stop"
    if action == "notjson":
        text = "I would rather describe this product in prose."
    elif action == "truncated":
        text, finish = text[: text.rfind('"confidence"') - 2], "length"
    model = body.get("model", "fake")
    if path.endswith("/chat/completions"):
        return _openai_reply(model, text, finish, tokens_in)
    if action == "ok" or action.startswith("slow"):
        block = {"type": "tool_use", "id": "toolu_fake", "name": "answer", "input": answer}
        return _anthropic_reply(model, block, "tool_use", tokens_in)
    return _anthropic_reply(model, {"type": "text", "text": text},
                            "max_tokens" if finish == "length" else "end_turn", tokens_in)


def _error(path: str, status: int, message: str) -> dict[str, Any]:
    if path.endswith("/messages"):
        kind = {429: "rate_limit_error", 401: "authentication_error"}.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": "server_error", "code": None}}


def _openai_batch(server: FakeLLMServer, batch: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI Batch object; its output and error files made when it ends."""
    status, files = "in_progress", {"output_file_id": None, "error_file_id": None}
    if batch["cancelled"]:
        status = "cancelled"
    elif batch["results"] is not None:
        status = "completed"
        if "files" not in batch:
            good, bad = [], []
            for line in batch["results"]:
                if line["status"] == 0:
                    entry = {"response": None, "error": {
                        "code": "batch_expired", "message": "This request could not be "
                        "executed before the completion window expired."}}
                else:
                    entry = {"response": {"status_code": line["status"], "request_id": "req",
                                          "body": line["body"]}, "error": None}
                entry = {"id": "batch_req", "custom_id": line["custom_id"], **entry}
                (good if line["status"] == 200 else bad).append(json.dumps(entry) + "\n")
            batch["files"] = {}
            for name, rows in (("output_file_id", good), ("error_file_id", bad)):
                if rows:
                    file_id = server.new_id("file-")
                    server.files[file_id] = "".join(rows).encode("utf-8")
                    batch["files"][name] = file_id
        files.update(batch["files"])
    return {"id": batch["id"], "object": "batch", "endpoint": "/v1/chat/completions",
            "errors": None, "input_file_id": batch["input_file_id"], "completion_window": "24h",
            "status": status, "created_at": int(batch["wall"]), **files,
            "request_counts": {"total": len(batch["lines"]), "completed": 0, "failed": 0}}


def _anthropic_batch(server: FakeLLMServer, batch: dict[str, Any]) -> dict[str, Any]:
    ended = batch["cancelled"] or batch["results"] is not None
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(batch["wall"]))
    return {"id": batch["id"], "type": "message_batch",
            "processing_status": "ended" if ended else "in_progress",
            "request_counts": {"processing": 0 if ended else len(batch["lines"]),
                               "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0},
            "created_at": stamp, "expires_at": stamp, "archived_at": None,
            "ended_at": stamp if ended else None,
            "cancel_initiated_at": stamp if batch["cancelled"] else None,
            "results_url": (f"{server.anthropic_url}/v1/messages/batches/{batch['id']}/results"
                            if ended else None)}


def _anthropic_results(batch: dict[str, Any]) -> bytes:
    rows = []
    for line in batch["results"] or [{"custom_id": c, "status": -1} for c, _ in batch["lines"]]:
        if line["status"] == 200:
            result = {"type": "succeeded", "message": line["body"]}
        elif line["status"] == 0:
            result = {"type": "expired"}
        elif line["status"] == -1:
            result = {"type": "canceled"}
        else:
            result = {"type": "errored", "error": line["body"]}
        rows.append(json.dumps({"custom_id": line["custom_id"], "result": result}) + "\n")
    return "".join(rows).encode("utf-8")


def _upload(content_type: str, raw: bytes) -> bytes:
    """The ``file`` part of a multipart/form-data upload."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            return part.get_payload(decode=True)
    return b""


def _handler(server: FakeLLMServer, idle: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs expect
        timeout = idle  # an idle connection's thread ends after this

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts[:2] == ["v1", "files"] and len(parts) == 4 and parts[3] == "content":
                data = server.files.get(parts[2])
                return self._send(200, data) if data is not None else self._missing()
            if parts[:2] == ["v1", "batches"] and len(parts) == 3:
                batch = server.batch(parts[2])
                return self._send(200, _openai_batch(server, batch)) if batch else self._missing()
            if parts[:3] == ["v1", "messages", "batches"] and len(parts) in (4, 5):
                batch = server.batch(parts[3])
                if batch is None:
                    return self._missing()
                if len(parts) == 5:
                    return self._send(200, _anthropic_results(batch))
                return self._send(200, _anthropic_batch(server, batch))
            return self._missing()

        def _missing(self) -> None:
            return self._send(404, _error(self.path, 404, "unknown path"))

        def _batch_post(self, raw: bytes, auth: str) -> None:
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts[-1] == "cancel":
                batch = server.batch(parts[-2])
                if batch is None:
                    return self._missing()
                batch["cancelled"] = True
                server.cancelled.append(batch["id"])
                api = _openai_batch if batch["api"] == "openai" else _anthropic_batch
                return self._send(200, api(server, batch))
            if parts == ["v1", "files"]:
                file_id = server.new_id("file-")
                server.files[file_id] = _upload(self.headers["Content-Type"], raw)
                return self._send(200, {"id": file_id, "object": "file", "purpose": "batch",
                                        "bytes": len(server.files[file_id]), "status": "processed",
                                        "created_at": int(time.time()), "filename": "input.jsonl"})
            body = json.loads(raw)
            batch = {"created": time.monotonic(), "wall": time.time(), "auth": auth,
                     "cancelled": False, "results": None, "input_file_id": None}
            if parts == ["v1", "batches"]:
                rows = server.files.get(body["input_file_id"], b"").decode().splitlines()
                lines = [json.loads(row) for row in rows if row.strip()]
                batch.update(id=server.new_id("batch_"), api="openai",
                             input_file_id=body["input_file_id"],
                             lines=[(line["custom_id"], line["body"]) for line in lines])
            else:
                batch.update(id=server.new_id("msgbatch_"), api="anthropic",
                             lines=[(r["custom_id"], r["params"]) for r in body["requests"]])
            server.batches[batch["id"]] = batch
            api = _openai_batch if batch["api"] == "openai" else _anthropic_batch
            self._send(200, api(server, batch))

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            auth = self.headers.get("Authorization") or self.headers.get("x-api-key") or ""
            if "/batches" in self.path or self.path.split("?")[0].endswith("/files"):
                return self._batch_post(raw, auth)
            if not self.path.endswith(("/chat/completions", "/messages")):
                return self._send(404, _error(self.path, 404, "unknown path"))
            body = json.loads(raw)
            item, answer, task = _answer(_question(body))
            action = server._next(self.path, item, task, auth, body)
            self._act(action, body, answer, len(raw) // 4, auth)

        def _act(self, action: str, body: dict[str, Any], answer: dict[str, Any],
                 tokens_in: int, auth: str) -> None:
            name, _, arg = action.partition(":")
            if name in ("429", "429-date"):
                wait = float(arg or 1)
                header = (str(arg or 1) if name == "429" else
                          email.utils.formatdate(time.time() + wait, usegmt=True))
                return self._send(429, _error(self.path, 429, "rate limited"),
                                  {"retry-after": header})
            if name == "500":
                return self._send(500, _error(self.path, 500, "internal error"))
            if name == "echo-key":
                return self._send(401, _error(self.path, 401, f"Incorrect API key: {auth}"))
            time.sleep(float(arg or 2) if name == "slow" else server.latency)
            self._send(200, _success(self.path, body, action, answer, tokens_in))

        def _send(self, status: int, payload: dict[str, Any] | bytes,
                  headers: dict[str, str] | None = None) -> None:
            binary = isinstance(payload, bytes)  # a file's content, or batch results
            data = payload if binary else json.dumps(payload).encode("utf-8")
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream" if binary
                                 else "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
                self.close_connection = True

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--lifetime", type=float, default=600.0, help="seconds, then it stops")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    args = parser.parse_args()
    server = FakeLLMServer(port=args.port, lifetime=args.lifetime, latency=args.latency).start()
    print(f"fake OpenAI API at {server.openai_url}, Anthropic API at {server.anthropic_url}; "
          f"stops in {args.lifetime:g} s", flush=True)
    server._thread.join()



# -- helpers the API miner tests share ------------------------------------------------


def api_miner(backend: str, server: FakeLLMServer, cache: Path, **options):
    """A registered remote miner pointed at ``server``, caching in ``cache``, no bar."""
    from deepinterest import registry

    url = server.openai_url if backend == "openai" else server.anthropic_url
    settings = dict(model="fake", base_url=url, cache=str(cache), progress=False)
    return registry.create("miners", backend, **{**settings, **options})


def item_requests(n: int, prefix: str = "I") -> list:
    from deepinterest.miners import MineRequest

    return [MineRequest("item", f"{prefix}{i}", {"title": f"{prefix}{i}"}) for i in range(n)]


def stored_keys(path: Path) -> set[str]:
    """The request keys in a mining cache file."""
    import sqlite3

    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT request_key FROM replies")}


def key_leaks(tmp_path: Path, monkeypatch, caplog, capsys, make_miner, check) -> list[str]:
    """Run both API miners with fresh secret keys (the server echoes the key back on item
    I1) and return every text the run produced that contains a key: results, reprs, logs,
    output and every file under ``tmp_path``. ``make_miner(backend, server)`` builds a
    miner; ``check(results)`` asserts what a backend's results must be."""
    import json
    import logging
    import uuid

    caplog.set_level(logging.DEBUG)
    keys = {backend: f"sk-test-{uuid.uuid4().hex}" for backend in ("openai", "anthropic")}
    monkeypatch.setenv("OPENAI_API_KEY", keys["openai"])
    monkeypatch.setenv("ANTHROPIC_API_KEY", keys["anthropic"])
    texts = []
    with FakeLLMServer(faults={"I1": ["echo-key"] * 2}) as server:
        for backend in keys:
            miner = make_miner(backend, server)
            results = miner.mine(item_requests(3))
            check(results)
            texts += [repr(miner), repr(miner.options), repr(results),
                      json.dumps([r.record() for r in results])]
        auths = [s.auth for s in server.seen]
    assert all(any(key in auth for auth in auths) for key in keys.values())  # keys were used
    out = capsys.readouterr()
    texts += [caplog.text, out.out, out.err]
    texts += [p.read_bytes().decode("latin-1") for p in tmp_path.rglob("*") if p.is_file()]
    return [t for t in texts for key in keys.values() if key in t]

if __name__ == "__main__":
    main()
