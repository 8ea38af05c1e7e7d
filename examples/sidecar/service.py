#!/usr/bin/env python3
"""A tiny HTTP service for the `cairn sidecar` example (standard library only).

    python3 service.py PORT [FAIL_FILE]

GET /health answers 200 "ok pid=<pid>" while FAIL_FILE does not exist and 500
"failing: <FAIL_FILE> exists pid=<pid>" while it does; every other path answers
"hello from pid <pid>". SIGTERM and SIGINT end it cleanly (exit code 0); SIGHUP
is logged as a reload. It logs to stderr.
"""

import http.server
import os
import signal
import sys


def log(msg):
    print(f"service[{os.getpid()}]: {msg}", file=sys.stderr, flush=True)


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: service.py PORT [FAIL_FILE]")
    port = int(sys.argv[1])
    fail_file = sys.argv[2] if len(sys.argv) > 2 else None
    pid = os.getpid()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/health":
                if fail_file and os.path.exists(fail_file):
                    code, body = 500, f"failing: {fail_file} exists pid={pid}\n"
                else:
                    code, body = 200, f"ok pid={pid}\n"
            else:
                code, body = 200, f"hello from pid {pid}\n"
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)

    def stop(signum, _frame):
        log(f"received {signal.Signals(signum).name}, shutting down")
        # exit from the handler: serve_forever() is interrupted and the port released
        server.server_close()
        os._exit(0)

    def reload(_signum, _frame):
        log("received SIGHUP, reloading (nothing to do)")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    log(f"listening on 127.0.0.1:{port}")
    server.serve_forever()


if __name__ == "__main__":
    main()
