/* recd inspect: prints what a published model holds, read straight from the
 * model store (no server needed): its metadata, one user's purchases, one
 * item's popularity rank, and the versions kept for rollback. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cmd.h"
#include "model.h"
#include "opts.h"
#include "utf8.h"

static const char inspect_usage[] =
    "usage: recd inspect --model DIR [--json] [--user ID] [--item ID] [--versions]\n"
    "Prints a published model's metadata, read directly from the model store.\n"
    "Options:\n"
    "  --model DIR   model directory (its current version), or one version folder\n"
    "  --json        print one JSON object instead of text\n"
    "  --user ID     also print that user's purchased items and factor vector norm\n"
    "  --item ID     also print that item's popularity rank and factor vector norm\n"
    "  --versions    list the versions in DIR, the current one marked; alone, it\n"
    "                prints only the list (it works when the current model is broken)\n";

/* Prints id bytes. Text: bytes that would garble a terminal as \xNN. JSON: a
 * string; bytes of an id that is not UTF-8 become \u00NN (such an id cannot be
 * represented exactly in JSON). */
static void print_id(const char *id, size_t len, int json) {
    int utf8 = utf8_valid(id, len);
    if (json) putchar('"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];
        if (json && (c == '"' || c == '\\'))
            printf("\\%c", c);
        else if (json && (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8)))
            printf("\\u%04x", c);
        else if (!json && (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8)))
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    if (json) putchar('"');
}

static float vector_norm(const float *v, uint32_t n) {
    double sum = 0;
    for (uint32_t i = 0; i < n; i++)
        sum += (double)v[i] * v[i];
    return (float)sqrt(sum);
}

/* Size of the data.mdb of the opened version; -1 when it cannot be found
 * (e.g. pruned since it was opened). */
static long long data_size(const char *dir, const char *version) {
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    if (stat(path, &st) == 0) return (long long)st.st_size;
    snprintf(path, sizeof path, "%s/versions/%s/data.mdb", dir, version);
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* The UTC date of unix time t in buf (32 bytes); returns buf. */
static const char *utc_date(char *buf, int64_t t) {
    time_t tt = (time_t)t;
    struct tm tm;
    strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&tt, &tm));
    return buf;
}

/* The SHOW rows of MODEL_META_MAP in its order, then the file size and,
 * by hand, the popularity blend (see the table). JSON: no braces, the
 * caller's object goes on. */
static void print_meta(const model_meta *m, long long size, int json) {
    char when[32];
    if (json) {
        const char *sep = "";
#define JSON_U32(label, v) printf("%s\"" label "\":%u", sep, v);
#define JSON_U64(label, v) printf("%s\"" label "\":%llu", sep, (unsigned long long)(v));
#define JSON_F32(label, v) printf("%s\"" label "\":%.9g", sep, (double)(v));
#define JSON_F64(label, v) printf("%s\"" label "\":%.17g", sep, v);
#define JSON_STR(label, v)                                                                         \
    printf("%s\"" label "\":", sep);                                                               \
    print_id(v, strlen(v), 1);
#define JSON_TIME(label, v)                                                                        \
    printf("%s\"" label "\":\"%s\",\"" label "_unix\":%lld", sep, utc_date(when, v),               \
           (long long)(v));
#define JSON_HIDE(kind, label, v)
#define JSON_HAND(kind, label, v)
#define JSON_SHOW(kind, label, v) JSON_##kind(label, v) sep = ",";
#define JSON_ROW(member, key, kind, opt, pb, pb_name, show, label, fmt)                            \
    JSON_##show(kind, label, m->member)
        MODEL_META_MAP(JSON_ROW)
#undef JSON_ROW
#undef JSON_SHOW
#undef JSON_HAND
#undef JSON_HIDE
#undef JSON_TIME
#undef JSON_STR
#undef JSON_F64
#undef JSON_F32
#undef JSON_U64
#undef JSON_U32
        printf(",\"file_size\":%lld", size);
        /* JSON has no infinity: popularity only is the string "inf". */
        if (isinf(m->popularity_blend))
            printf(",\"popularity_blend\":\"inf\"");
        else
            printf(",\"popularity_blend\":%.9g", m->popularity_blend);
        return;
    }
#define TEXT_U32(v) v
#define TEXT_U64(v) (unsigned long long)(v)
#define TEXT_F32(v) (double)(v)
#define TEXT_F64(v) v
#define TEXT_STR(v) v
#define TEXT_TIME(v) utc_date(when, v)
#define TEXT_HIDE(kind, label, fmt, v)
#define TEXT_HAND(kind, label, fmt, v)
#define TEXT_SHOW(kind, label, fmt, v) printf("%-20s" fmt "\n", label, TEXT_##kind(v));
#define TEXT_ROW(member, key, kind, opt, pb, pb_name, show, label, fmt)                            \
    TEXT_##show(kind, label, fmt, m->member)
    MODEL_META_MAP(TEXT_ROW)
#undef TEXT_ROW
#undef TEXT_SHOW
#undef TEXT_HAND
#undef TEXT_HIDE
#undef TEXT_TIME
#undef TEXT_STR
#undef TEXT_F64
#undef TEXT_F32
#undef TEXT_U64
#undef TEXT_U32
    printf("file_size           %lld bytes (%.1f MiB)\n", size, (double)size / (1 << 20));
    printf("popularity_blend    %g%s\n", m->popularity_blend,
           isinf(m->popularity_blend) ? " (popularity only)" : "");
}

/* The repurchase model's scalars (REBUY_PARAMS_MAP), or that there is
 * none: what mode BUY_AGAIN and include_purchased serve. */
static void print_rebuy(const model *m, int json) {
    const rebuy_model *rb = model_rebuy(m);
    if (json) {
        printf(",\"rebuy\":");
        if (!rb) {
            printf("null");
            return;
        }
        const char *sep = "{";
#define REBUY_JSON(name, index, str)                                                               \
    printf("%s\"" str "\":%.9g", sep, (double)rb->params[index]);                                  \
    sep = ",";
        REBUY_PARAMS_MAP(REBUY_JSON)
#undef REBUY_JSON
        printf(",\"new_item_rank_1\":%.9g}", (double)rb->curve[0]);
        return;
    }
    if (!rb) {
        printf("rebuy               none (mode BUY_AGAIN refused)\n");
        return;
    }
#define REBUY_TEXT(name, index, str) printf("rebuy.%-14s%g\n", str, (double)rb->params[index]);
    REBUY_PARAMS_MAP(REBUY_TEXT)
#undef REBUY_TEXT
    printf("rebuy.new_item_rank_1 %g\n", (double)rb->curve[0]);
}

static void print_user(const model *m, uint32_t u, int json) {
    uint32_t n;
    const uint32_t *items = model_user_items(m, u, &n);
    uint32_t k = model_info(m)->factors;
    float norm = vector_norm(model_user_factors(m) + (size_t)u * k, k);
    size_t len;
    const char *id = model_user_id(m, u, &len);
    if (json) {
        printf(",\"user\":{\"id\":");
        print_id(id, len, 1);
        printf(",\"index\":%u,\"norm\":%.9g,\"purchased\":[", u, norm);
    } else {
        printf("\nuser                ");
        print_id(id, len, 0);
        printf("\nindex               %u\nnorm                %g\npurchased           %u items\n",
               u, norm, n);
    }
    for (uint32_t i = 0; i < n; i++) {
        id = model_item_id(m, items[i], &len);
        if (json) {
            if (i) putchar(',');
            print_id(id, len, 1);
        } else {
            printf("  ");
            print_id(id, len, 0);
            putchar('\n');
        }
    }
    if (json) printf("]}");
}

static void print_item(const model *m, uint32_t item, int json) {
    const uint32_t *popular = model_popular_items(m);
    uint32_t n = model_info(m)->n_items, rank = 0;
    while (popular[rank] != item)
        rank++;
    size_t len;
    const char *id = model_item_id(m, item, &len);
    float norm = model_item_norms(m)[item];
    if (json) {
        printf(",\"item\":{\"id\":");
        print_id(id, len, 1);
        printf(",\"index\":%u,\"popularity_rank\":%u,\"norm\":%.9g", item, rank + 1, norm);
        const model_label_map *lm = model_label_map_of(m, MODEL_SIDE_ITEM);
        if (lm) printf(",\"model_item_labels\":%u", lm->n_labels);
        if (model_item_published(m))
            printf(",\"published_unix\":%lld", (long long)model_item_published(m)[item]);
        if (model_item_price(m) && !isnan(model_item_price(m)[item]))
            printf(",\"price\":%.9g", model_item_price(m)[item]);
        /* The vector itself: what a catalogue-only item got from its labels. */
        uint32_t k = model_info(m)->factors;
        const float *y = model_item_factors(m) + (size_t)item * k;
        printf(",\"factors\":[");
        for (uint32_t j = 0; j < k; j++)
            printf("%s%.9g", j ? "," : "", y[j]);
        printf("]}");
        return;
    }
    printf("\nitem                ");
    print_id(id, len, 0);
    printf("\nindex               %u\npopularity_rank     %u of %u\nnorm                %g\n", item,
           rank + 1, n, norm);
}

/* Prints the versions of dir, oldest first, the current one marked. In JSON
 * it opens the object, or continues the one of the metadata when lead is 1;
 * the caller closes it. Returns 0, or 1 after printing the error (and before
 * printing anything else). */
static int print_versions(const char *dir, int json, int lead) {
    char(*list)[MODEL_VERSION_MAX];
    size_t n;
    char cur[MODEL_VERSION_MAX] = "";
    err_t e;
    if (model_versions(dir, &list, &n, &e)) {
        fprintf(stderr, "recd: %s\n", e.msg);
        return 1;
    }
    /* No current link is a state worth showing, not an error: the list is
     * what one looks at to repair it. */
    model_current_version(dir, cur, NULL);
    if (json) printf("%s\"versions\":[", lead ? "," : "{");
    if (!json) printf("%sversions (oldest first, * = current)\n", lead ? "\n" : "");
    for (size_t i = 0; i < n; i++) {
        int is_cur = strcmp(list[i], cur) == 0;
        if (json)
            printf("%s{\"version\":\"%s\",\"current\":%s}", i ? "," : "", list[i],
                   is_cur ? "true" : "false");
        else
            printf("%c %s\n", is_cur ? '*' : ' ', list[i]);
    }
    if (json) printf("]");
    free(list);
    return 0;
}

enum { OPT_MODEL = OPT_FIRST_FREE, OPT_JSON, OPT_USER, OPT_ITEM, OPT_VERSIONS };

int cmd_inspect(int argc, char **argv) {
    static const struct option longopts[] = {{"model", required_argument, 0, OPT_MODEL},
                                             {"json", no_argument, 0, OPT_JSON},
                                             {"user", required_argument, 0, OPT_USER},
                                             {"item", required_argument, 0, OPT_ITEM},
                                             {"versions", no_argument, 0, OPT_VERSIONS},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    const char *dir = NULL, *user = NULL, *item = NULL;
    int json = 0, versions = 0, opt;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_MODEL:
            dir = optarg;
            break;
        case OPT_JSON:
            json = 1;
            break;
        case OPT_USER:
            user = optarg;
            break;
        case OPT_ITEM:
            item = optarg;
            break;
        case OPT_VERSIONS:
            versions = 1;
            break;
        case 'h':
            fputs(inspect_usage, stdout);
            return 0;
        default:
            fputs(inspect_usage, stderr);
            return 2;
        }
    }
    if (!dir || optind != argc) {
        fprintf(stderr, "recd: inspect: %s\n%s",
                dir ? "unexpected argument" : "--model is required", inspect_usage);
        return 2;
    }
    if (versions && !user && !item) {
        int rc = print_versions(dir, json, 0);
        if (json && !rc) printf("}\n");
        return rc;
    }

    model *m;
    err_t e;
    if (model_open(dir, &m, &e)) {
        fprintf(stderr, "recd: %s\n", e.msg);
        return 1;
    }
    /* Look ids up before printing anything, so an unknown id fails cleanly. */
    uint32_t u = 0, it = 0;
    const char *version = model_info(m)->version;
    if (user && model_user_index(m, user, strlen(user), &u)) {
        fprintf(stderr, "recd: user '%s' is not in model %s\n", user, version);
        model_close(m);
        return 1;
    }
    if (item && model_item_index(m, item, strlen(item), &it)) {
        fprintf(stderr, "recd: item '%s' is not in model %s\n", item, version);
        model_close(m);
        return 1;
    }
    if (json) putchar('{');
    print_meta(model_info(m), data_size(dir, version), json);
    print_rebuy(m, json);
    if (user) print_user(m, u, json);
    if (item) print_item(m, it, json);
    int rc = versions ? print_versions(dir, json, 1) : 0;
    if (json) printf("}\n");
    model_close(m);
    return rc;
}
