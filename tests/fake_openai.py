"""A misbehaving OpenAI-compatible server on loopback, for the backend failure tests.

`FakeOpenAI.mode` picks how the next chat completion goes: ok, error500, malformed, cut, slow.
A non-streamed completion is a support check: one "yes" token, with top log-probabilities
unless `logprobs` is off.
It also speaks Ollama's native API (GET /api/tags, POST /api/chat as NDJSON), for the
ollama backend's streaming test.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = ["Deputy prime ministers ", "of Russia, Azerbaijan and Armenia ", "will meet ", "next week."]


class FakeOpenAI:
    def __init__(self) -> None:
        self.mode = "ok"
        self.requests = 0
        self.judged = 0  # non-streamed completions: the support checks
        self.logprobs = True  # False: a server that ignores `logprobs`
        self.yes_logprob = -0.1  # with "no" at -2.0: P(yes) 0.87
        self.doubted: set[str] = set()  # a judged sentence holding one of these words gets P(yes) 0.27
        self.answer = ANSWER
        self.limits: list[int | None] = []  # each streamed answer's output limit (max_tokens; Ollama's num_predict)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                if self.path.startswith("/api/tags"):
                    return self._json(200, {"models": [{"name": "fake:latest", "model": "fake:latest"}]})
                self._json(200, {"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "test"}]})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.requests += 1
                if self.path.startswith("/api/chat"):
                    request = json.loads(body or b"{}")
                    server.limits.append(request.get("options", {}).get("num_predict"))
                    return self._ollama(request.get("stream", True))
                mode = server.mode
                if mode == "error500":
                    return self._json(500, {"error": {"message": "the model crashed", "type": "server_error"}})
                if mode == "slow":
                    time.sleep(5)
                request = json.loads(body or b"{}")
                if not request.get("stream"):
                    return self._completion(request)
                server.limits.append(request.get("max_tokens"))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                chunks = server.answer[:2] if mode == "cut" else server.answer
                for i, text in enumerate(chunks):
                    if mode == "malformed" and i == 1:
                        self.wfile.write(b"data: {this is not json\n\n")
                        self.wfile.flush()
                        return
                    self._event({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})
                if mode == "cut":
                    return  # the connection closes without a final chunk
                self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                self.wfile.write(b"data: [DONE]\n\n")

            def _completion(self, request: dict) -> None:
                """A one-token yes/no judgement (with top log-probabilities when asked and `server.logprobs`)."""
                server.judged += 1
                judged = request["messages"][-1]["content"].rsplit("Statement:", 1)[-1].split("\n")[0].lower()
                yes = -3.0 if any(word in judged for word in server.doubted) else server.yes_logprob
                choice = {"index": 0, "message": {"role": "assistant", "content": "yes"}, "finish_reason": "length"}
                if request.get("logprobs") and server.logprobs:
                    top = [{"token": "yes", "logprob": yes, "bytes": None}, {"token": "no", "logprob": -2.0, "bytes": None}]
                    choice["logprobs"] = {"content": [{"token": "yes", "logprob": -0.1, "bytes": None, "top_logprobs": top}]}
                self._json(200, {"id": "c2", "object": "chat.completion", "created": 0, "model": "fake", "choices": [choice],
                                 "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

            def _ollama(self, stream: bool) -> None:
                if not stream:
                    return self._json(200, {"model": "fake:latest", "created_at": "2026-01-01T00:00:00Z", "done": True,
                                            "message": {"role": "assistant", "content": "".join(ANSWER)}, "done_reason": "stop"})
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.end_headers()
                for text in ANSWER:
                    line = {"model": "fake:latest", "created_at": "2026-01-01T00:00:00Z",
                            "message": {"role": "assistant", "content": text}, "done": False}
                    self.wfile.write((json.dumps(line) + "\n").encode())
                    self.wfile.flush()
                done = {"model": "fake:latest", "created_at": "2026-01-01T00:00:00Z", "message": {"role": "assistant", "content": ""},
                        "done": True, "done_reason": "stop", "prompt_eval_count": 10, "eval_count": 4}
                self.wfile.write((json.dumps(done) + "\n").encode())

            def _event(self, payload: dict) -> None:
                body = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "fake", **payload}
                self.wfile.write(f"data: {json.dumps(body)}\n\n".encode())
                self.wfile.flush()

            def _json(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
