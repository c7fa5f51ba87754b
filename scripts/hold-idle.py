#!/usr/bin/env python3
"""hold-idle.py HOST PORT COUNT TOKENS: opens COUNT keep-alive HTTP/1.1 connections, sends one
`GET /` on each, with `Authorization: Bearer` and the next token of the file TOKENS (one a line,
so the users' rate limits share the load), and reads its answer, then holds them all,
quiet, until killed. Prints "held COUNT" once every connection has had its answer, or exits 1
naming the first one that did not get a 200. Used by scripts/bench-gateway.sh for the RSS of
many idle connections; it runs on the load CPU, so its own cost does not matter."""

import signal
import socket
import sys


def read_answer(sock):
    """The status line of one answer, read whole (head plus Content-Length body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the answer's head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the answer's body")
        body += chunk
    return head.split(b"\r\n", 1)[0].decode()


def main():
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with open(sys.argv[4]) as tokens:
        tokens = [line.strip() for line in tokens if line.strip()]
    held = []
    for i in range(count):
        token = tokens[i % len(tokens)]
        request = f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
        sock = socket.create_connection((host, port))
        sock.sendall(request.encode())
        status = read_answer(sock)
        if " 200 " not in status + " ":
            print(f"connection {i}: {status}", file=sys.stderr)
            sys.exit(1)
        held.append(sock)
    print(f"held {len(held)}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.pause()


if __name__ == "__main__":
    main()
