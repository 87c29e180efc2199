#!/usr/bin/python3
"""Echelon from Python: Execute, Stream and GetPoolStatus over echelon.v1.

Needs Debian's python3-grpcio and python3-protobuf, and stubs made by
gen.sh (which this script runs when they are missing).

    tools/clients/python/echelon_client.py --address 127.0.0.1:50051 \
        --target fast-pool --prompt 'Hello'

Exits non-zero when a call fails or its answer is malformed, so tests can
run it as a check.
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def load_stubs(gen_dir):
    if not os.path.exists(os.path.join(gen_dir, "echelon", "v1", "gateway_pb2.py")):
        subprocess.run([os.path.join(HERE, "gen.sh"), gen_dir], check=True)
    sys.path.insert(0, gen_dir)
    from echelon.v1 import gateway_pb2, gateway_pb2_grpc  # noqa: E402

    return gateway_pb2, gateway_pb2_grpc


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1:50051")
    parser.add_argument("--target", default="fast-pool")
    parser.add_argument("--prompt", default="Hello from Python")
    parser.add_argument("--gen_dir", default=os.path.join(HERE, "gen"))
    args = parser.parse_args()

    import grpc

    pb, pb_grpc = load_stubs(args.gen_dir)
    with grpc.insecure_channel(args.address) as channel:
        stub = pb_grpc.GatewayStub(channel)
        request = pb.ExecuteRequest(
            target=args.target,
            messages=[pb.Message(role=pb.ROLE_USER, content=args.prompt)],
            metadata={"client": "python"},
        )

        response = stub.Execute(request, timeout=30)
        print(f"Execute: {response.message.content!r} from {response.instance} "
              f"({response.usage.total_tokens} tokens, "
              f"{len(response.attempts)} attempt(s))")
        if not response.message.content or not response.instance:
            sys.exit("Execute returned no content or no instance")

        pieces = []
        summary = None
        for chunk in stub.Stream(request, timeout=30):
            kind = chunk.WhichOneof("chunk")
            if kind == "content_delta":
                pieces.append(chunk.content_delta)
            elif kind == "summary":
                summary = chunk.summary
        text = "".join(pieces)
        print(f"Stream: {len(pieces)} chunks, {text!r}")
        if summary is None or text != response.message.content:
            sys.exit("Stream did not match Execute or had no summary")

        status = stub.GetPoolStatus(pb.GetPoolStatusRequest(), timeout=10)
        for pool in status.pools:
            states = ", ".join(
                f"{i.id}={pb.InstanceState.Name(i.state)}" for i in pool.instances)
            print(f"Pool {pool.name} [{pool.strategy}]: {states}")
        if not status.pools:
            sys.exit("GetPoolStatus returned no pools")

        try:
            stub.Execute(pb.ExecuteRequest(target="no-such-target",
                                           messages=request.messages), timeout=10)
            sys.exit("unknown target did not fail")
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                sys.exit(f"unknown target gave {e.code()}, want NOT_FOUND")
            print(f"Unknown target: {e.code().name} ({e.details()})")
    print("python client: OK")


if __name__ == "__main__":
    main()
