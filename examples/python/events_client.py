#!/usr/bin/env python3
"""Publish to and subscribe to the event service over gRPC from Python.

The client code is generated from the service's own contract (../../proto) with grpcio-tools when
this script starts, so it always matches the server:

    pip install -r requirements.txt
    python3 events_client.py --target 127.0.0.1:8080 --project demo --topic py-demo --count 5

It subscribes to the topic (server-streaming Subscribe), publishes --count events with unary
Publish, prints every event it receives as a JSON line, and exits 0 once all of them arrived in
sequence order (non-zero on a timeout or an out-of-order delivery).
"""
import argparse
import importlib
import json
import os
import sys
import tempfile
import threading

import grpc
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))


def generate(out_dir):
    """Generates Python modules for events.v1 into out_dir and makes them importable."""
    well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    files = ["events/v1/options.proto", "events/v1/events.proto"]
    args = ["protoc", f"-I{PROTO_ROOT}", f"-I{well_known}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", *files]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed to generate the client code")
    sys.path.insert(0, out_dir)
    return importlib.import_module("events.v1.events_pb2"), importlib.import_module("events.v1.events_pb2_grpc")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="127.0.0.1:8080", help="host:port of the service (h2c)")
    parser.add_argument("--project", default="demo", help="project (x-project-id) when the service runs without API keys")
    parser.add_argument("--key", default=os.environ.get("EVENTS_API_KEY"), help="API key (or EVENTS_API_KEY)")
    parser.add_argument("--topic", default="py-demo")
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for every event")
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="events-py-") as out:
        pb, pb_grpc = generate(out)
        metadata = [("x-project-id", opts.project)]
        if opts.key:
            metadata = [("authorization", f"Bearer {opts.key}")]
        stream = pb.StreamRef(kind=pb.STREAM_KIND_TOPIC, key=opts.topic)

        with grpc.insecure_channel(opts.target) as channel:
            stub = pb_grpc.StreamServiceStub(channel)
            head = stub.ListEvents(pb.ListEventsRequest(stream=stream, after_sequence=0, limit=1000), metadata=metadata, timeout=10)
            start_after = head.next_after_sequence

            received = []
            done = threading.Event()
            live = threading.Event()
            errors = []

            def follow():
                try:
                    call = stub.Subscribe(pb.SubscribeRequest(stream=stream, after_sequence=start_after), metadata=metadata)
                    for response in call:
                        live.set()  # the first (empty) response: the subscription is live
                        for event in response.events:
                            received.append(event)
                            print(json.dumps({"sequence": event.sequence, "id": event.id, "event_type": event.event_type, "data": event.data.string_value}), flush=True)
                        if len(received) >= opts.count:
                            done.set()
                            call.cancel()
                            return
                except grpc.RpcError as err:
                    if err.code() != grpc.StatusCode.CANCELLED:
                        errors.append(err)
                        done.set()

            threading.Thread(target=follow, daemon=True).start()
            if not live.wait(10):
                raise SystemExit("the subscription did not start")

            acked = []
            for i in range(opts.count):
                event = pb.EventInput(event_type="python.demo", data={"string_value": f"hello {i}"})
                reply = stub.Publish(pb.PublishRequest(stream=stream, events=[event]), metadata=metadata, timeout=10)
                acked.extend(reply.sequences)

            if not done.wait(opts.timeout):
                raise SystemExit(f"timed out: {len(received)} of {opts.count} events arrived")
            if errors:
                raise SystemExit(f"subscription failed: {errors[0]}")
            got = [e.sequence for e in received[: opts.count]]
            if got != sorted(got) or got != list(acked):
                raise SystemExit(f"out of order: acked {list(acked)}, received {got}")
            print(json.dumps({"published": len(acked), "received": len(got), "in_order": True}), flush=True)


if __name__ == "__main__":
    main()
