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

#include <stdio.h>

#include <protobuf-c/protobuf-c.h>

void bg_cli_json_print(FILE *f, const ProtobufCMessage *m);

#endif
