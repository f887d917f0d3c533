/* emote info [MODEL]: the model card as the model file records it: labels, input spec,
 * parameters, MACs/FLOPs per image, the op list, provenance and validation metrics. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"

static const char usage[] =
    "usage: emote info [options] [MODEL]\n"
    "\n"
    "Prints what a model file records: name, labels in output order, input (channels,\n"
    "height x width, mean/std, preprocessing), parameter count, multiply-adds and FLOPs\n"
    "per image (FLOPs = 2 x MACs), the op list, provenance and validation metrics.\n"
    "Without MODEL (or -m FILE): $EMOTE_MODEL, else the built-in model.\n"
    "\n"
    "  -m, --model FILE     the model file (same as giving MODEL)\n"
    "  -f, --format F       text | json (default text)\n"
    "  -h, --help           this help\n"
    "\n"
    "Exit status: 0 ok; 2 usage error; 3 the model cannot be opened (the message says why).\n"
    "\n"
    "Examples:\n"
    "  emote info\n"
    "  emote info -f json models/emote-fer2013.safetensors | jq .metrics\n";

/* A metadata value parsed as JSON; NULL when absent or not JSON. */
static cJSON *metadata_json(const emote_model *model, const char *key) {
    const char *text = emote_model_metadata(model, key);
    return text ? cJSON_Parse(text) : NULL;
}

/* The "preprocess" name from the "input" metadata (the loader insists on it). */
static const char *preprocess_name(const cJSON *input) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(input, "preprocess");
    return cJSON_IsString(p) ? p->valuestring : "unspecified";
}

/* "12.3 M" style rendering of a count, for people. */
static void human_count(uint64_t n, char *out, size_t size) {
    static const char *const units[] = {"", " K", " M", " G", " T"};
    double v = (double)n;
    int u = 0;
    while (v >= 1000 && u < 4) {
        v /= 1000;
        u++;
    }
    snprintf(out, size, u ? "%.3g%s" : "%.0f%s", v, units[u]);
}

static void print_count(const char *name, uint64_t n, const char *note) {
    char human[32];
    human_count(n, human, sizeof human);
    printf("%-12s %" PRIu64 " (%s%s)\n", name, n, human, note);
}

static void print_floats(const float *v, int n) {
    for (int c = 0; c < n; c++) printf("%s%g", c ? ", " : "", (double)v[c]);
}

/* ---- text ----------------------------------------------------------------------- */

static int widest_key(const cJSON *object) {
    int widest = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, object) {
        int len = (int)strlen(item->string);
        if (len > widest) widest = len;
    }
    return widest;
}

/* Prints the keys of a JSON object one per line, nested objects indented below their key. */
static void print_json_tree(const cJSON *object, int indent) {
    int width = widest_key(object);
    const cJSON *item;
    cJSON_ArrayForEach(item, object) {
        printf("%*s%-*s", indent, "", width, item->string);
        if (cJSON_IsObject(item)) {
            putchar('\n');
            print_json_tree(item, indent + 2);
        } else if (cJSON_IsString(item)) {
            fputs("  ", stdout);
            text_write_escaped(stdout, item->valuestring);
            putchar('\n');
        } else if (cJSON_IsNumber(item)) {
            printf("  %.6g\n", item->valuedouble); /* for people; -f json keeps every digit */
        } else {
            char *text = cJSON_PrintUnformatted(item);
            printf("  %s\n", text ? text : "?");
            free(text);
        }
    }
}

static void print_metadata_text(const emote_model *model, const char *key) {
    cJSON *json = metadata_json(model, key);
    const char *raw = emote_model_metadata(model, key);
    if (cJSON_IsObject(json) && cJSON_GetArraySize(json) > 0) {
        printf("%s\n", key);
        print_json_tree(json, 2);
    } else {
        printf("%-12s ", key);
        text_write_escaped(stdout, raw && *raw && strcmp(raw, "{}") ? raw : "(not recorded)");
        putchar('\n');
    }
    cJSON_Delete(json);
}

static void print_text(const emote_model *model) {
    const emote_input_spec *in = emote_model_input(model);
    const char *format = emote_model_metadata(model, "format");
    cJSON *input = metadata_json(model, "input");
    printf("%-12s %s\n%-12s %s\n%-12s ", "model", emote_model_name(model), "format", format ? format : "?", "labels");
    for (int k = 0; k < emote_model_num_classes(model); k++) printf("%s%s", k ? ", " : "", emote_model_label(model, k));
    printf(" (%d, in output order)\n", emote_model_num_classes(model));
    printf("%-12s %d x %d x %d (channels x height x width), preprocessing %s\n", "input", in->channels, in->height,
           in->width, preprocess_name(input));
    printf("%-12s (pixel / 255 - mean) / std, mean ", "normalise");
    print_floats(in->mean, in->channels);
    printf(", std ");
    print_floats(in->std, in->channels);
    putchar('\n');
    print_count("parameters", emote_model_param_count(model), "");
    print_count("MACs/image", emote_model_macs(model), "");
    print_count("FLOPs/image", 2 * emote_model_macs(model), ", 2 x MACs");
    printf("%-12s %d\n", "ops", emote_model_num_ops(model));
    for (int i = 0; i < emote_model_num_ops(model); i++) printf("  %3d  %s\n", i + 1, emote_model_op_kind(model, i));
    print_metadata_text(model, "provenance");
    print_metadata_text(model, "metrics");
    cJSON_Delete(input);
}

/* ---- json ------------------------------------------------------------------------ */

static void json_write_floats(const char *key, const float *v, int n) {
    printf(",\"%s\":[", key);
    for (int c = 0; c < n; c++) printf("%s%.9g", c ? "," : "", (double)v[c]);
    putchar(']');
}

/* Writes ,"key":<the metadata value as JSON>; a value that is not JSON becomes a string, a missing one null. */
static void json_write_metadata(const emote_model *model, const char *key) {
    cJSON *json = metadata_json(model, key);
    const char *raw = emote_model_metadata(model, key);
    char *text = json ? cJSON_PrintUnformatted(json) : NULL;
    printf(",\"%s\":", key);
    if (text) fputs(text, stdout);
    else if (raw) json_write_string(stdout, raw);
    else fputs("null", stdout);
    free(text);
    cJSON_Delete(json);
}

static void print_json(const emote_model *model) {
    const emote_input_spec *in = emote_model_input(model);
    const char *format = emote_model_metadata(model, "format");
    cJSON *input = metadata_json(model, "input");
    printf("{\"model\":");
    json_write_string(stdout, emote_model_name(model));
    printf(",\"format\":");
    json_write_string(stdout, format ? format : "");
    printf(",\"labels\":[");
    for (int k = 0; k < emote_model_num_classes(model); k++) {
        if (k) putchar(',');
        json_write_string(stdout, emote_model_label(model, k));
    }
    printf("],\"input\":{\"channels\":%d,\"height\":%d,\"width\":%d", in->channels, in->height, in->width);
    json_write_floats("mean", in->mean, in->channels);
    json_write_floats("std", in->std, in->channels);
    printf(",\"preprocess\":");
    json_write_string(stdout, preprocess_name(input));
    printf("},\"params\":%" PRIu64 ",\"macs\":%" PRIu64 ",\"flops\":%" PRIu64 ",\"ops\":[",
           emote_model_param_count(model), emote_model_macs(model), 2 * emote_model_macs(model));
    for (int i = 0; i < emote_model_num_ops(model); i++) {
        if (i) putchar(',');
        json_write_string(stdout, emote_model_op_kind(model, i));
    }
    putchar(']');
    json_write_metadata(model, "provenance");
    json_write_metadata(model, "metrics");
    printf("}\n");
    cJSON_Delete(input);
}

/* ---- command line ---------------------------------------------------------------- */

static bool set_model(const char **model, const option_parser *p, int code) {
    if (*model) {
        fputs("emote: info takes one model (got '", stderr);
        text_write_escaped(stderr, *model);
        fputs("' and '", stderr);
        text_write_escaped(stderr, p->value);
        fputs("')\n", stderr);
        return false;
    }
    return parse_model_option(code == 'm' ? p->name : "info MODEL", p->value, model);
}

static const struct option option_table[] = {
    {"model", required_argument, NULL, 'm'}, {"format", required_argument, NULL, 'f'}, HELP_OPTION, {0}};

static int cmd_info(int argc, char **argv);
const command info_command = {"info", cmd_info, option_table};

static int cmd_info(int argc, char **argv) {
    const char *model_path = NULL;
    output_format format = FORMAT_TABLE;
    option_parser p;
    options_start(&p, &info_command, argc, argv);
    for (int code; (code = options_next(&p)) != OPTIONS_END;) {
        switch (code) {
        case 'h': fputs(usage, stdout); return EXIT_ALL_OK;
        case 'f':
            if (!parse_report_format(&p, &format)) return EXIT_USAGE;
            break;
        case 'm':
        case OPTIONS_OPERAND:
            if (!set_model(&model_path, &p, code)) return EXIT_USAGE;
            break;
        default: return EXIT_USAGE; /* OPTIONS_ERROR: reported */
        }
    }
    /* opened like every other command: -m / MODEL, $EMOTE_MODEL, built-in; no session, so
     * that a detector's card shows too */
    emote_error err;
    emote_model *model = emote_model_open_any(model_path ? model_path : getenv("EMOTE_MODEL"), &err);
    if (!model) {
        print_error(err.message);
        return EXIT_FATAL;
    }
    if (format == FORMAT_JSON) print_json(model);
    else print_text(model);
    emote_model_close(model);
    return EXIT_ALL_OK; /* main checks that stdout took it all */
}
