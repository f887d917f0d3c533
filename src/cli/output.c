/* Output helpers shared by the commands. */
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#include "cli.h"
#include "util.h"
#include "utf8.h"

bool parse_format(const char *name, output_format *out) {
    static const struct {
        const char *name;
        output_format format;
    } formats[] = {{"table", FORMAT_TABLE}, {"tsv", FORMAT_TSV}, {"csv", FORMAT_CSV}, {"jsonl", FORMAT_JSONL},
                   {"json", FORMAT_JSON}, {"text", FORMAT_TABLE}};
    for (size_t i = 0; name && i < sizeof formats / sizeof formats[0]; i++) {
        if (strcmp(name, formats[i].name) == 0) {
            *out = formats[i].format;
            return true;
        }
    }
    return false;
}

bool parse_report_format(const option_parser *p, output_format *out) {
    if (parse_format(p->value, out) && (*out == FORMAT_TABLE || *out == FORMAT_JSON)) return true;
    fprintf(stderr, "emote: %s %s needs text or json\n", p->cmd->name, p->name);
    return false;
}

void json_write_string(FILE *f, const char *s) {
    fputc('"', f);
    const unsigned char *p = (const unsigned char *)s;
    uint32_t cp;
    for (size_t n; *p; p += n) {
        n = utf8_sequence(p, &cp);
        if (!n) {
            fputs("\\ufffd", f); /* a byte that is not UTF-8: REPLACEMENT CHARACTER */
            n = 1;
        } else if (cp == '"') fputs("\\\"", f);
        else if (cp == '\\') fputs("\\\\", f);
        else if (cp == '\n') fputs("\\n", f);
        else if (cp == '\r') fputs("\\r", f);
        else if (cp == '\t') fputs("\\t", f);
        else if (is_control_code_point(cp)) fprintf(f, "\\u%04x", (unsigned)cp);
        else fwrite(p, 1, n, f);
    }
    fputc('"', f);
}

void json_write_path(FILE *f, const char *key, const char *path) {
    fprintf(f, "\"%s\":", key);
    json_write_string(f, path);
    if (utf8_valid(path)) return;
    fprintf(f, ",\"%s_hex\":\"", key);
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) fprintf(f, "%02x", *p);
    fputc('"', f);
}

void text_write_escaped(FILE *f, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    uint32_t cp;
    for (size_t n; *p; p += n) {
        n = utf8_sequence(p, &cp);
        if (n && !is_control_code_point(cp)) {
            fwrite(p, 1, n, f);
            continue;
        }
        if (!n) n = 1;
        if (*p == '\n') fputs("\\n", f);
        else if (*p == '\t') fputs("\\t", f);
        else if (*p == '\r') fputs("\\r", f);
        else
            for (size_t i = 0; i < n; i++) fprintf(f, "\\x%02x", p[i]);
    }
}

void print_error(const char *message) {
    fputs("emote: ", stderr);
    text_write_escaped(stderr, message);
    fputc('\n', stderr);
}

void print_errorf(const char *format, ...) {
    char message[EMOTE_ERROR_MAX];
    va_list ap;
    va_start(ap, format);
    format_message_v(message, sizeof message, format, ap);
    va_end(ap);
    print_error(message);
}

void print_input_error(const char *path, const char *message) {
    fputs("emote: ", stderr);
    if (strncmp(message, path, strlen(path)) != 0) {
        text_write_escaped(stderr, path);
        fputs(": ", stderr);
    }
    text_write_escaped(stderr, message);
    fputc('\n', stderr);
}

void csv_write_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}
