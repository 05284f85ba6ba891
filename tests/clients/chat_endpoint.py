"""A small OpenAI-compatible chat-completions endpoint on loopback, for prompt-expansion tests.

Usage: chat_endpoint.py PORT. Answers POST /v1/chat/completions with
"Expanded: <the user's text part>" after checking that the request has the shape the server
must send (model, a system message, a user message with a text part and a JPEG data-URI image
part, or the text part alone for the text-to-video apps); a request without that shape gets
HTTP 400, so the caller sees the difference.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        try:
            assert self.path == "/v1/chat/completions", self.path
            assert body["model"], "model"
            system, user = body["messages"]
            assert system["role"] == "system" and system["content"], "system message"
            text, *image = user["content"]
            assert text["type"] == "text", "text part"
            assert len(image) <= 1, "one image part at most"
            for part in image:
                assert part["type"] == "image_url", "image part"
                assert part["image_url"]["url"].startswith("data:image/jpeg;base64,"), "jpeg"
        except (AssertionError, KeyError, ValueError, TypeError) as e:
            self.answer(400, {"error": {"message": "unexpected request: %s" % e}})
            return
        self.answer(200, {"object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant",
                                     "content": "Expanded: " + text["text"]}}]})

    def answer(self, status, value):
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
