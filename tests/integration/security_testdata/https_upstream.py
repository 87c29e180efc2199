#!/usr/bin/env python3
"""A minimal OpenAI-compatible upstream over HTTPS for security_tls_test.

Usage: https_upstream.py CERT KEY
Prints "LISTENING <port>" once bound (port chosen by the OS). Answers every
POST with a fixed non-streamed chat completion, and counts requests that
carried an Authorization header on GET /_count.
"""
import http.server
import json
import ssl
import sys

seen = {"requests": 0}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send(seen)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        seen["requests"] += 1
        self._send({
            "id": "chatcmpl-tls", "object": "chat.completion", "created": 1,
            "model": "tls-model",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant",
                                     "content": "hello over tls"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 3,
                      "total_tokens": 6},
        })


def main():
    cert, key = sys.argv[1], sys.argv[2]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"LISTENING {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
