"""A real SMTP server for amrelay's tests and benchmarks: aiosmtpd (Debian's
python3-aiosmtpd) with a handler whose answer to each message is set from outside.

    /usr/bin/python3 tests/smtp/relay.py --maildir DIR --control FILE [--port N]

Binds 127.0.0.1 (port 0 unless --port), prints "listening PORT" on stdout, then serves
until killed. Each accepted message is added to the Maildir DIR, with an
"X-Relay-Accepted-At: <unix seconds>" header in front. For each message, after the body
(DATA), the relay reads FILE (re-read every time; missing means "ok"):

    ok            accept: 250
    delay SECS    wait SECS, then accept (a throttling relay)
    451           "451 4.3.0 try again later" after the body (transient)
    421           "421 4.7.0 too busy" after the body (transient, closing)
    550           "550 5.7.1 rejected" after the body (permanent)

Every answer is appended to DIR/../relay.log as "<code> <message-id>", so a test can
count what the relay said.
"""

import argparse
import asyncio
import mailbox
import os
import sys
import time

from aiosmtpd.smtp import SMTP


class Handler:
    def __init__(self, maildir, control, log):
        os.makedirs(os.path.dirname(os.path.abspath(maildir)), exist_ok=True)
        self.maildir = mailbox.Maildir(maildir, create=True)
        self.control = control
        self.log = log

    def mode(self):
        try:
            with open(self.control) as f:
                return f.read().strip() or "ok"
        except FileNotFoundError:
            return "ok"

    def record(self, code, content):
        message_id = "-"
        for line in content.split(b"\r\n"):
            if not line:
                break
            if line.lower().startswith(b"message-id:"):
                message_id = line.split(b":", 1)[1].strip().decode("ascii", "replace")
        with open(self.log, "a") as f:
            f.write(f"{code} {message_id}\n")

    async def handle_DATA(self, server, session, envelope):
        mode = self.mode()
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        if mode.startswith("delay"):
            await asyncio.sleep(float(mode.split()[1]))
            mode = "ok"
        if mode == "451":
            self.record(451, content)
            return "451 4.3.0 try again later"
        if mode == "421":
            self.record(421, content)
            return "421 4.7.0 too busy, closing"
        if mode == "550":
            self.record(550, content)
            return "550 5.7.1 rejected"
        stamp = f"X-Relay-Accepted-At: {time.time():.6f}\r\n".encode("ascii")
        self.maildir.add(stamp + content)
        self.record(250, content)
        return "250 2.0.0 accepted"


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--maildir", required=True)
    p.add_argument("--control", required=True)
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    log = os.path.join(os.path.dirname(os.path.abspath(args.maildir)), "relay.log")
    handler = Handler(args.maildir, args.control, log)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="relay.test"), "127.0.0.1", args.port
    )
    port = server.sockets[0].getsockname()[1]
    print(f"listening {port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
