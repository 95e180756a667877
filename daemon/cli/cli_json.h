/*
 * cli_json.h — print any protobuf-c message as JSON (the CLI's --json).
 *
 * Follows the proto3 JSON mapping with original field names (what
 * Python's MessageToDict(preserving_proto_field_name=True,
 * including_default_value_fields=True) produces): every scalar field is
 * printed, defaults included; unset sub-messages and unset oneof members
 * are omitted; 64-bit integers are strings; enums are their names; bytes
 * are base64; maps are objects; NaN/Infinity are the strings "NaN",
 * "Infinity", "-Infinity". Any thread; no state.
 */
#ifndef BG_CLI_JSON_H
#define BG_CLI_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <protobuf-c/protobuf-c.h>

void bg_cli_json_print(FILE *f, const ProtobufCMessage *m);

/* Bytes as standard base64 with padding, no quotes (receipts in eval's
 * output), and back: standard or URL-safe alphabet, padding optional;
 * -1 on a bad character or more than cap bytes. */
void bg_cli_base64_write(FILE *f, const ProtobufCBinaryData *b);
int bg_cli_base64_decode(const char *s, uint8_t *out, size_t cap, size_t *len);

#endif
