#!/usr/bin/env python3
"""An OTLP/HTTP sink for the benchmark: answers every export with 200 and an empty
ExportTraceServiceResponse (zero bytes is a valid empty protobuf message), keeping nothing but
counts, so `./deploy/bench.sh` can measure what exporting costs the fleet without a tracing
backend. Not a collector: for real traces run Jaeger or Tempo (docs/observability.md).

    otlp-sink.py PORT COUNTS_FILE    # counts: requests and bytes, rewritten every export
"""
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, counts_file = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()
totals = {"requests": 0, "bytes": 0}


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        with lock:
            totals["requests"] += 1
            totals["bytes"] += length
            with open(counts_file, "w") as out:
                out.write(f"requests {totals['requests']}\nbytes {totals['bytes']}\n")
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Sink).serve_forever()
