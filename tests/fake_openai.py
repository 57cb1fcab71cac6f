"""A misbehaving OpenAI-compatible server on loopback, for the backend failure tests.

`FakeOpenAI.mode` picks how the next chat completion goes: ok, error500, malformed, cut, slow.
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
                    return self._ollama(json.loads(body or b"{}").get("stream", True))
                mode = server.mode
                if mode == "error500":
                    return self._json(500, {"error": {"message": "the model crashed", "type": "server_error"}})
                if mode == "slow":
                    time.sleep(5)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                chunks = ANSWER[:2] if mode == "cut" else ANSWER
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
