/*
 * rpc_wire.h — what the server (daemon/rpc) and the clients (daemon/cli,
 * bench/rpc) share about the wire: gRPC status code names, and moving
 * protobuf-c messages in and out of gRPC byte buffers.
 *
 * Library bg_rpc_wire: no daemon state, safe from any thread.
 */
#ifndef BG_RPC_WIRE_H
#define BG_RPC_WIRE_H

#include <stddef.h>

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

/* X(code, NAME) — grpc_status_code values and their canonical names. */
#define BG_RPC_CODES(X)                                                                            \
    X(0, OK)                                                                                       \
    X(1, CANCELLED)                                                                                \
    X(2, UNKNOWN)                                                                                  \
    X(3, INVALID_ARGUMENT)                                                                         \
    X(4, DEADLINE_EXCEEDED)                                                                        \
    X(5, NOT_FOUND)                                                                                \
    X(6, ALREADY_EXISTS)                                                                           \
    X(7, PERMISSION_DENIED)                                                                        \
    X(8, RESOURCE_EXHAUSTED)                                                                       \
    X(9, FAILED_PRECONDITION)                                                                      \
    X(10, ABORTED)                                                                                 \
    X(11, OUT_OF_RANGE)                                                                            \
    X(12, UNIMPLEMENTED)                                                                           \
    X(13, INTERNAL)                                                                                \
    X(14, UNAVAILABLE)                                                                             \
    X(15, DATA_LOSS)                                                                               \
    X(16, UNAUTHENTICATED)

/* How many codes BG_RPC_CODES lists (0 .. BG_RPC_N_CODES-1). */
enum {
#define BG_RPC_CODE_PLUS_ONE(num, name) +1
    BG_RPC_N_CODES = 0 BG_RPC_CODES(BG_RPC_CODE_PLUS_ONE)
#undef BG_RPC_CODE_PLUS_ONE
};

/* "NOT_FOUND" for 5; "UNKNOWN_STATUS" when out of range. */
const char *bg_rpc_code_name(int code);

/* Serialize msg into a new byte buffer (caller destroys it with
 * grpc_byte_buffer_destroy). NULL only when out of memory. */
grpc_byte_buffer *bg_rpc_pack(const ProtobufCMessage *msg);

/* Flatten a received byte buffer into one slice (caller unrefs it). */
grpc_slice bg_rpc_flatten(grpc_byte_buffer *bb);

/* Decode bb (may be NULL = empty message) with `alloc` (NULL = malloc).
 * Returns NULL when the bytes are not a valid `desc` message. */
ProtobufCMessage *bg_rpc_unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb,
                                ProtobufCAllocator *alloc);

#endif
