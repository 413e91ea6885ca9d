#!/usr/bin/env python3
"""A small Python client of alibi-serve: complete, stream, score, health.

Needs Debian's python3-grpcio and python3-protobuf, and protoc
(protobuf-compiler). At start-up the message classes are generated from the
repository's .proto files with `protoc --python_out` into a temporary
directory, and the RPCs are made with grpc's generic channel API
(channel.unary_unary / unary_stream with the method's full name), so neither
grpc_tools nor checked-in generated code is needed.

    /usr/bin/python3 alibi_client.py complete "In the beginning" --max_tokens 16
    /usr/bin/python3 alibi_client.py stream "In the beginning" --max_tokens 16
    /usr/bin/python3 alibi_client.py score "In the beginning God created"
    /usr/bin/python3 alibi_client.py health

Exit codes: 0 success; 1 RPC error (or health not SERVING); 2 usage error.
"""

import argparse
import atexit
import importlib
import os
import shutil
import subprocess
import sys
import tempfile

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", "..", ".."))


def load_protos(proto_root):
    """Generates and imports inference_pb2 and the health messages."""
    protoc = shutil.which("protoc")
    if protoc is None:
        sys.exit("error: protoc not found (apt-get install protobuf-compiler)")
    out = tempfile.mkdtemp(prefix="alibi_pb2_")
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    # The health proto is copied under another file name: its package,
    # grpc.health.v1, would otherwise become the module path grpc/health/v1,
    # which the grpc package itself shadows. Message encoding does not depend
    # on file names.
    health_src = os.path.join(proto_root, "third_party", "proto", "grpc",
                              "health", "v1", "health.proto")
    shutil.copy(health_src, os.path.join(out, "alibi_health.proto"))
    args = [protoc, "--proto_path=" + os.path.join(proto_root, "proto"),
            "--proto_path=" + out, "--python_out=" + out]
    # Debian's protoc finds google/protobuf/*.proto in /usr/include.
    if os.path.exists("/usr/include/google/protobuf/duration.proto"):
        args.append("--proto_path=/usr/include")
    args += [os.path.join(proto_root, "proto", "alibi", "v1",
                          "inference.proto"),
             os.path.join(out, "alibi_health.proto")]
    subprocess.run(args, check=True)
    sys.path.insert(0, out)
    inference = importlib.import_module("alibi.v1.inference_pb2")
    health = importlib.import_module("alibi_health_pb2")
    return inference, health


def unary(channel, method, request_cls, response_cls):
    return channel.unary_unary(
        method, request_serializer=request_cls.SerializeToString,
        response_deserializer=response_cls.FromString)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--address", default="localhost:50051")
    parser.add_argument("--api_key", default="",
                        help="sent as 'authorization: Bearer <key>'")
    parser.add_argument("--tls_ca", default="",
                        help="PEM roots; connect with TLS")
    parser.add_argument("--deadline_s", type=float, default=60.0)
    parser.add_argument("--proto_root", default=REPO,
                        help="repository root holding proto/ and third_party/")
    parser.add_argument("command",
                        choices=["complete", "stream", "score", "health"])
    parser.add_argument("text", nargs="?", default="")
    parser.add_argument("--max_tokens", type=int, default=16)
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    if args.command != "health" and not args.text:
        parser.error(args.command + " needs a text argument")

    pb, health_pb = load_protos(args.proto_root)
    if args.tls_ca:
        with open(args.tls_ca, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        channel = grpc.secure_channel(args.address, creds)
    else:
        channel = grpc.insecure_channel(args.address)
    metadata = [("authorization", "Bearer " + args.api_key)] if args.api_key else []
    service = "/alibi.v1.InferenceService/"

    params = pb.CompletionParams(text=args.text, max_tokens=args.max_tokens)
    if args.temperature is not None:
        params.sampling.temperature = args.temperature
    if args.seed is not None:
        params.sampling.seed = args.seed

    try:
        if args.command == "complete":
            call = unary(channel, service + "Complete", pb.CompleteRequest,
                         pb.CompleteResponse)
            response = call(pb.CompleteRequest(params=params),
                            timeout=args.deadline_s, metadata=metadata)
            print(response.text)
            print("[finish_reason: %s, prompt_tokens: %d, completion_tokens: %d]"
                  % (pb.FinishReason.Name(response.finish_reason),
                     response.usage.prompt_tokens,
                     response.usage.completion_tokens), file=sys.stderr)
        elif args.command == "stream":
            call = channel.unary_stream(
                service + "CompleteStream",
                request_serializer=pb.CompleteStreamRequest.SerializeToString,
                response_deserializer=pb.CompleteStreamResponse.FromString)
            tokens = 0
            for message in call(pb.CompleteStreamRequest(params=params),
                                timeout=args.deadline_s, metadata=metadata):
                sys.stdout.write(message.text)
                sys.stdout.flush()
                tokens += len(message.token_ids)
            print()
            print("[%d tokens streamed]" % tokens, file=sys.stderr)
        elif args.command == "score":
            call = unary(channel, service + "Score", pb.ScoreRequest,
                         pb.ScoreResponse)
            response = call(pb.ScoreRequest(text=args.text),
                            timeout=args.deadline_s, metadata=metadata)
            for i, token in enumerate(response.tokens):
                logprob = ("%.4f" % response.token_logprobs[i - 1]) if i else "-"
                print("%5d %8d %10s  %r" % (i, response.token_ids[i], logprob,
                                            token))
            print("tokens: %d  sum_logprob: %.4f  perplexity: %.4f"
                  % (len(response.token_ids), response.sum_logprob,
                     response.perplexity))
        else:
            call = unary(channel, "/grpc.health.v1.Health/Check",
                         health_pb.HealthCheckRequest,
                         health_pb.HealthCheckResponse)
            response = call(health_pb.HealthCheckRequest(service=""),
                            timeout=min(args.deadline_s, 2.0),
                            metadata=metadata)
            name = health_pb.HealthCheckResponse.ServingStatus.Name(
                response.status)
            print(name)
            return 0 if name == "SERVING" else 1
    except grpc.RpcError as e:
        print("error: %s: %s" % (e.code().name, e.details()), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
