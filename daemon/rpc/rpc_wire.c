/*
 * rpc_wire.c — gRPC status names and protobuf-c <-> byte buffer glue.
 *
 * Packing sizes the message first and packs straight into one slice, so a
 * response costs one allocation beyond gRPC's own. Unpacking reads the
 * buffer in place when it is a single slice (the common case for small
 * requests) and copies it into one slice otherwise. No state; any thread.
 */
#include "rpc/rpc_wire.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

const char *bg_rpc_code_name(int code)
{
    switch (code) {
#define BG_RPC_CODE_CASE(num, name)                                                                \
    case num:                                                                                      \
        return #name;
        BG_RPC_CODES(BG_RPC_CODE_CASE)
#undef BG_RPC_CODE_CASE
    default:
        return "UNKNOWN_STATUS";
    }
}

grpc_byte_buffer *bg_rpc_pack(const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

grpc_slice bg_rpc_flatten(grpc_byte_buffer *bb)
{
    if (bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE &&
        bb->data.raw.slice_buffer.count == 1)
        return grpc_slice_ref(bb->data.raw.slice_buffer.slices[0]);
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return grpc_empty_slice();
    grpc_slice s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    return s;
}

ProtobufCMessage *bg_rpc_unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb,
                                ProtobufCAllocator *alloc)
{
    if (bb == NULL)
        return protobuf_c_message_unpack(desc, alloc, 0, (const uint8_t *)"");
    grpc_slice s = bg_rpc_flatten(bb);
    ProtobufCMessage *m =
        protobuf_c_message_unpack(desc, alloc, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    return m;
}
