"""Generated gRPC stubs of the Open Inference Protocol (``inference.GRPCInferenceService``).

``inference.proto`` is ours, written from the specification; ``inference_pb2*.py`` are what
grpcio-tools generates from it (never edit them; regenerate with the command at the top of
the .proto, and ``tests/serve_app/ingress/test_oip_grpc.py`` checks that they match it).
"""
