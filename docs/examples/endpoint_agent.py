"""An endpoint worker speaking mecha's worker contract, with the standard library only:
`POST /task {id, prompt, context}` answers `{"result": ..., "metadata": {"events": [...]}}` (events join the
task's trace), `GET /health` answers 200. Run it with `python endpoint_agent.py 9100`."""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Agent(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self._answer(200 if self.path == "/health" else 404, {"status": "ok"})

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/task":
            self._answer(404, {"error": "not found"})
            return
        task = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        reply = task["prompt"][::-1]
        events = [{"type": "llm_call", "payload": {"model": "gpt-4o-mini", "input_tokens": 7, "output_tokens": 7}}]
        self._answer(200, {"result": reply, "metadata": {"events": events}})

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 9100), Agent).serve_forever()
