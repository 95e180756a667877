"""The one table of bayesguard.v1.Guard methods the client calls.

Debian's python3-grpcio has no grpc_tools, so there are no generated
service stubs: every call is a grpc.Channel.unary_unary / unary_stream
callable built from this table with the message modules' serializers.
Sync (bayesguard.client) and asyncio (bayesguard.aio) build their
callables from the same rows, so a method is named and typed once.
"""
from .v1 import guard_pb2 as pb

SERVICE = "/bayesguard.v1.Guard/"

UNARY = "unary_unary"
STREAM = "unary_stream"

# short name -> (callable kind, request type, reply type)
METHODS = {
    "Evaluate": (UNARY, pb.EvaluateRequest, pb.Verdict),
    "Observe": (UNARY, pb.ObserveRequest, pb.ObserveResponse),
    "Status": (UNARY, pb.StatusRequest, pb.StatusResponse),
    "Reload": (UNARY, pb.ReloadRequest, pb.ReloadResponse),
    "ListEscalations": (UNARY, pb.ListEscalationsRequest, pb.ListEscalationsResponse),
    "WatchEscalations": (STREAM, pb.WatchEscalationsRequest, pb.EscalationEvent),
    "ResolveEscalation": (UNARY, pb.ResolveEscalationRequest, pb.Escalation),
    "AwaitDecision": (UNARY, pb.AwaitDecisionRequest, pb.Verdict),
}


def callables(channel):
    """{short name: multicallable} over a grpc.Channel or grpc.aio.Channel."""
    out = {}
    for name, (kind, req_t, resp_t) in METHODS.items():
        make = getattr(channel, kind)
        out[name] = make(SERVICE + name, request_serializer=req_t.SerializeToString,
                         response_deserializer=resp_t.FromString)
    return out
