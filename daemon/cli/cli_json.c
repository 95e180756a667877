/*
 * cli_json.c — protobuf-c message -> JSON by reflection over descriptors
 * (see cli_json.h for the mapping). Recursive over nested messages; the
 * depth is bounded by the message types, which have no recursion.
 */
#include "cli/cli_json.h"

#include "common/bg_strbuf.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

static void print_message(FILE *f, const ProtobufCMessage *m);

static void print_string(FILE *f, const char *s, size_t n)
{
    char mem[512];
    bg_strbuf b;
    bg_strbuf_init_on(&b, mem, sizeof mem);
    bg_strbuf_json_string(&b, s, n);
    fwrite(b.p, 1, b.len, f);
    bg_strbuf_close(&b);
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void bg_cli_base64_write(FILE *f, const ProtobufCBinaryData *b)
{
    for (size_t i = 0; i < b->len; i += 3) {
        uint32_t v = (uint32_t)b->data[i] << 16;
        if (i + 1 < b->len)
            v |= (uint32_t)b->data[i + 1] << 8;
        if (i + 2 < b->len)
            v |= b->data[i + 2];
        fputc(b64[(v >> 18) & 63], f);
        fputc(b64[(v >> 12) & 63], f);
        fputc(i + 1 < b->len ? b64[(v >> 6) & 63] : '=', f);
        fputc(i + 2 < b->len ? b64[v & 63] : '=', f);
    }
}

int bg_cli_base64_decode(const char *s, uint8_t *out, size_t cap, size_t *len)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    for (; *s && *s != '='; s++) {
        int v;
        if (*s == '-')
            v = 62; /* URL-safe alphabet too */
        else if (*s == '_')
            v = 63;
        else {
            const char *q = strchr(b64, *s);
            if (q == NULL || *s == '\0')
                return -1;
            v = (int)(q - b64);
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == cap)
                return -1;
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    for (; *s == '='; s++)
        ;
    if (*s)
        return -1;
    *len = n;
    return 0;
}

static void print_base64(FILE *f, const ProtobufCBinaryData *b)
{
    fputc('"', f);
    bg_cli_base64_write(f, b);
    fputc('"', f);
}

static void print_double(FILE *f, double v)
{
    if (isnan(v))
        fputs("\"NaN\"", f);
    else if (isinf(v))
        fputs(v > 0 ? "\"Infinity\"" : "\"-Infinity\"", f);
    else if (v == floor(v) && fabs(v) < 1e15)
        fprintf(f, "%.1f", v);
    else
        fprintf(f, "%.17g", v);
}

/* One value of field fd stored at p. */
static void print_value(FILE *f, const ProtobufCFieldDescriptor *fd, const void *p)
{
    switch (fd->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        fprintf(f, "%" PRId32, *(const int32_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        fprintf(f, "%" PRIu32, *(const uint32_t *)p);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        fprintf(f, "\"%" PRId64 "\"", *(const int64_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        fprintf(f, "\"%" PRIu64 "\"", *(const uint64_t *)p);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        print_double(f, *(const float *)p);
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        print_double(f, *(const double *)p);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        fputs(*(const protobuf_c_boolean *)p ? "true" : "false", f);
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumValue *ev =
            protobuf_c_enum_descriptor_get_value(fd->descriptor, *(const int *)p);
        if (ev != NULL)
            print_string(f, ev->name, strlen(ev->name));
        else
            fprintf(f, "%d", *(const int *)p);
        break;
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        print_string(f, s ? s : "", s ? strlen(s) : 0);
        break;
    }
    case PROTOBUF_C_TYPE_BYTES:
        print_base64(f, (const ProtobufCBinaryData *)p);
        break;
    case PROTOBUF_C_TYPE_MESSAGE:
        print_message(f, *(ProtobufCMessage *const *)p);
        break;
    }
}

static size_t value_size(const ProtobufCFieldDescriptor *fd)
{
    switch (fd->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    default:
        return 4;
    }
}

static int is_map_entry(const ProtobufCFieldDescriptor *fd)
{
    if (fd->type != PROTOBUF_C_TYPE_MESSAGE || fd->label != PROTOBUF_C_LABEL_REPEATED)
        return 0;
    const ProtobufCMessageDescriptor *md = fd->descriptor;
    size_t n = strlen(md->name);
    return n > 5 && strcmp(md->name + n - 5, "Entry") == 0 && md->n_fields == 2 &&
           strcmp(md->fields[0].name, "key") == 0 && strcmp(md->fields[1].name, "value") == 0;
}

static void print_message(FILE *f, const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;
    int first = 1;
    fputc('{', f);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[i];
        const void *p = base + fd->offset;
        if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            if (*(const uint32_t *)(base + fd->quantifier_offset) != fd->id)
                continue;
        } else if (fd->label != PROTOBUF_C_LABEL_REPEATED && fd->type == PROTOBUF_C_TYPE_MESSAGE &&
                   *(void *const *)p == NULL) {
            continue;
        }
        fprintf(f, "%s\"%s\":", first ? "" : ",", fd->name);
        first = 0;
        if (fd->label != PROTOBUF_C_LABEL_REPEATED) {
            print_value(f, fd, p);
            continue;
        }
        size_t n = *(const size_t *)(base + fd->quantifier_offset);
        const char *arr = *(const char *const *)p;
        int map = is_map_entry(fd);
        fputc(map ? '{' : '[', f);
        for (size_t k = 0; k < n; k++) {
            if (k)
                fputc(',', f);
            if (map) {
                const ProtobufCMessage *e = ((ProtobufCMessage *const *)arr)[k];
                const ProtobufCMessageDescriptor *ed = e->descriptor;
                const char *eb = (const char *)e;
                print_value(f, &ed->fields[0], eb + ed->fields[0].offset);
                fputc(':', f);
                print_value(f, &ed->fields[1], eb + ed->fields[1].offset);
            } else {
                print_value(f, fd, arr + k * value_size(fd));
            }
        }
        fputc(map ? '}' : ']', f);
    }
    fputc('}', f);
}

void bg_cli_json_print(FILE *f, const ProtobufCMessage *m)
{
    print_message(f, m);
    fputc('\n', f);
}
