#include "reflect.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "utf8.h"

/* v1 and v1alpha have the same messages, field for field: the v1 code reads
 * and writes both. */
typedef Grpc__Reflection__V1__ServerReflectionRequest reflect_request;
typedef Grpc__Reflection__V1__ServerReflectionResponse reflect_response;

static const char *const reflect_paths[] = {
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
};
#define REFLECT_N_METHODS (sizeof reflect_paths / sizeof reflect_paths[0])

typedef struct reflect_file {
    char *name;
    uint8_t *bytes; /* the serialized FileDescriptorProto */
    size_t len;
    size_t *deps; /* indexes of the files it imports */
    size_t n_deps;
} reflect_file;

typedef enum { SYMBOL_MESSAGE, SYMBOL_SERVICE, SYMBOL_OTHER } symbol_kind;

typedef struct reflect_symbol {
    char *name; /* full name, no leading dot */
    symbol_kind kind;
    size_t file;
} reflect_symbol;

typedef struct reflect_extension {
    char *extendee; /* full name of the extended message, no leading dot */
    int32_t number;
    size_t file;
} reflect_extension;

struct reflect {
    reflect_file *files;
    size_t n_files;
    reflect_symbol *symbols; /* sorted by name once built */
    size_t n_symbols, cap_symbols;
    reflect_extension *extensions;
    size_t n_extensions, cap_extensions;
    char **services; /* full names, in the order first served */
    size_t n_services;
    rpc_method methods[REFLECT_N_METHODS];
};

/* --- building the index ------------------------------------------------------ */

/* "scope.name", or name when scope is empty; malloc'ed, NULL when out of memory. */
static char *full_name(const char *scope, const char *name) {
    size_t a = strlen(scope), b = strlen(name);
    char *s = malloc(a + b + 2);
    if (!s) return NULL;
    if (a) {
        memcpy(s, scope, a);
        s[a++] = '.';
    }
    memcpy(s + a, name, b + 1);
    return s;
}

/* Takes name (malloc'ed, may be NULL after a failed allocation) into the
 * symbol table. */
static int add_symbol(reflect *r, char *name, symbol_kind kind, size_t file) {
    if (!name) return ERR_NOMEM;
    if (r->n_symbols == r->cap_symbols) {
        size_t cap = r->cap_symbols ? 2 * r->cap_symbols : 256;
        reflect_symbol *grown = realloc(r->symbols, cap * sizeof *grown);
        if (!grown) {
            free(name);
            return ERR_NOMEM;
        }
        r->symbols = grown;
        r->cap_symbols = cap;
    }
    r->symbols[r->n_symbols++] = (reflect_symbol){name, kind, file};
    return ERR_OK;
}

static int add_extensions(reflect *r, const char *scope,
                          Google__Protobuf__FieldDescriptorProto **ext, size_t n, size_t file) {
    for (size_t i = 0; i < n; i++) {
        int rc = add_symbol(r, full_name(scope, ext[i]->name), SYMBOL_OTHER, file);
        if (rc) return rc;
        if (!ext[i]->extendee) continue;
        if (r->n_extensions == r->cap_extensions) {
            size_t cap = r->cap_extensions ? 2 * r->cap_extensions : 16;
            reflect_extension *grown = realloc(r->extensions, cap * sizeof *grown);
            if (!grown) return ERR_NOMEM;
            r->extensions = grown;
            r->cap_extensions = cap;
        }
        const char *extendee = ext[i]->extendee + (ext[i]->extendee[0] == '.');
        char *copy = strdup(extendee);
        if (!copy) return ERR_NOMEM;
        r->extensions[r->n_extensions++] = (reflect_extension){copy, ext[i]->number, file};
    }
    return ERR_OK;
}

/* An enum and its values: the values belong to the scope that holds the
 * enum, not to the enum (protobuf's C++ scoping). */
static int add_enums(reflect *r, const char *scope, Google__Protobuf__EnumDescriptorProto **enums,
                     size_t n, size_t file) {
    for (size_t i = 0; i < n; i++) {
        int rc = add_symbol(r, full_name(scope, enums[i]->name), SYMBOL_OTHER, file);
        for (size_t v = 0; !rc && v < enums[i]->n_value; v++)
            rc = add_symbol(r, full_name(scope, enums[i]->value[v]->name), SYMBOL_OTHER, file);
        if (rc) return rc;
    }
    return ERR_OK;
}

static int add_messages(reflect *r, const char *scope, Google__Protobuf__DescriptorProto **msgs,
                        size_t n, size_t file) {
    for (size_t i = 0; i < n; i++) {
        const Google__Protobuf__DescriptorProto *m = msgs[i];
        char *name = full_name(scope, m->name);
        int rc = add_symbol(r, name, SYMBOL_MESSAGE, file);
        if (rc) return rc;
        for (size_t f = 0; !rc && f < m->n_field; f++)
            rc = add_symbol(r, full_name(name, m->field[f]->name), SYMBOL_OTHER, file);
        for (size_t o = 0; !rc && o < m->n_oneof_decl; o++)
            rc = add_symbol(r, full_name(name, m->oneof_decl[o]->name), SYMBOL_OTHER, file);
        if (!rc) rc = add_enums(r, name, m->enum_type, m->n_enum_type, file);
        if (!rc) rc = add_extensions(r, name, m->extension, m->n_extension, file);
        if (!rc) rc = add_messages(r, name, m->nested_type, m->n_nested_type, file);
        if (rc) return rc;
    }
    return ERR_OK;
}

static int add_file_symbols(reflect *r, const Google__Protobuf__FileDescriptorProto *fd,
                            size_t file) {
    const char *pkg = fd->package ? fd->package : "";
    int rc = add_messages(r, pkg, fd->message_type, fd->n_message_type, file);
    if (!rc) rc = add_enums(r, pkg, fd->enum_type, fd->n_enum_type, file);
    if (!rc) rc = add_extensions(r, pkg, fd->extension, fd->n_extension, file);
    for (size_t i = 0; !rc && i < fd->n_service; i++) {
        const Google__Protobuf__ServiceDescriptorProto *sd = fd->service[i];
        char *name = full_name(pkg, sd->name);
        rc = add_symbol(r, name, SYMBOL_SERVICE, file);
        for (size_t m = 0; !rc && m < sd->n_method; m++)
            rc = add_symbol(r, full_name(name, sd->method[m]->name), SYMBOL_OTHER, file);
    }
    return rc;
}

static int compare_symbols(const void *a, const void *b) {
    return strcmp(((const reflect_symbol *)a)->name, ((const reflect_symbol *)b)->name);
}

static const reflect_symbol *find_symbol(const reflect *r, const char *name) {
    reflect_symbol key = {(char *)name, SYMBOL_OTHER, 0};
    return bsearch(&key, r->symbols, r->n_symbols, sizeof key, compare_symbols);
}

/* The index of the file called name, or -1. */
static long find_file(const reflect *r, const char *name) {
    for (size_t i = 0; i < r->n_files; i++)
        if (!strcmp(r->files[i].name, name)) return (long)i;
    return -1;
}

/* Copies file i of the set into r: its name, its bytes and its imports,
 * which must come before it in the set (protoc writes imports first). */
static int add_file(reflect *r, const Google__Protobuf__FileDescriptorProto *fd, size_t i,
                    err_t *e) {
    reflect_file *f = &r->files[i];
    if (!fd->name) return err_set(e, ERR_FORMAT, "reflect: a file of the set has no name");
    if (find_file(r, fd->name) >= 0)
        return err_set(e, ERR_FORMAT, "reflect: the set holds %s twice", fd->name);
    r->n_files = i + 1; /* from here on reflect_close frees what f holds */
    f->len = protobuf_c_message_get_packed_size(&fd->base);
    f->bytes = malloc(f->len ? f->len : 1);
    f->deps = calloc(fd->n_dependency ? fd->n_dependency : 1, sizeof *f->deps);
    if (!(f->name = strdup(fd->name)) || !f->bytes || !f->deps)
        return err_set(e, ERR_NOMEM, "reflect: out of memory");
    protobuf_c_message_pack(&fd->base, f->bytes);
    for (size_t d = 0; d < fd->n_dependency; d++) {
        long dep = find_file(r, fd->dependency[d]);
        if (dep < 0)
            return err_set(e, ERR_FORMAT, "reflect: %s imports %s, which the set does not hold",
                           fd->name, fd->dependency[d]);
        f->deps[f->n_deps++] = (size_t)dep;
    }
    if (add_file_symbols(r, fd, i)) return err_set(e, ERR_NOMEM, "reflect: out of memory");
    return ERR_OK;
}

/* Adds the service of path ("/pkg.Service/Method") to r->services unless it
 * is there already; it must be a service of the set. */
static int add_service(reflect *r, const char *path, err_t *e) {
    const char *slash = strrchr(path, '/');
    if (path[0] != '/' || !slash || slash == path)
        return err_set(e, ERR_NOTFOUND, "reflect: %s is not a /package.Service/Method path", path);
    char *name = strndup(path + 1, (size_t)(slash - path - 1));
    if (!name) return err_set(e, ERR_NOMEM, "reflect: out of memory");
    const reflect_symbol *sym = find_symbol(r, name);
    if (!sym || sym->kind != SYMBOL_SERVICE) {
        err_set(e, ERR_NOTFOUND, "reflect: service %s has no descriptor in the set", name);
        free(name);
        return ERR_NOTFOUND;
    }
    for (size_t i = 0; i < r->n_services; i++)
        if (!strcmp(r->services[i], name)) {
            free(name);
            return ERR_OK;
        }
    r->services[r->n_services++] = name;
    return ERR_OK;
}

int reflect_open(const uint8_t *set, size_t len, const rpc_method *served, size_t n, reflect **out,
                 err_t *e) {
    Google__Protobuf__FileDescriptorSet *fds =
        google__protobuf__file_descriptor_set__unpack(NULL, len, set);
    if (!fds) return err_set(e, ERR_FORMAT, "reflect: the descriptor set does not decode");
    reflect *r = calloc(1, sizeof *r);
    int rc = ERR_OK;
    if (r) {
        r->files = calloc(fds->n_file ? fds->n_file : 1, sizeof *r->files);
        r->services = calloc(n + REFLECT_N_METHODS, sizeof *r->services);
    }
    if (!r || !r->files || !r->services) rc = err_set(e, ERR_NOMEM, "reflect: out of memory");
    for (size_t i = 0; !rc && i < fds->n_file; i++)
        rc = add_file(r, fds->file[i], i, e);
    google__protobuf__file_descriptor_set__free_unpacked(fds, NULL);
    if (!rc) qsort(r->symbols, r->n_symbols, sizeof *r->symbols, compare_symbols);
    for (size_t i = 0; !rc && i < n; i++)
        rc = add_service(r, served[i].path, e);
    for (size_t i = 0; !rc && i < REFLECT_N_METHODS; i++) {
        rc = add_service(r, reflect_paths[i], e);
        r->methods[i] = (rpc_method){.path = reflect_paths[i], .ctx = r, .bidi = reflect_answer};
    }
    if (rc) {
        reflect_close(r);
        return rc;
    }
    *out = r;
    return ERR_OK;
}

void reflect_close(reflect *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_files; i++) {
        free(r->files[i].name);
        free(r->files[i].bytes);
        free(r->files[i].deps);
    }
    for (size_t i = 0; i < r->n_symbols; i++)
        free(r->symbols[i].name);
    for (size_t i = 0; i < r->n_extensions; i++)
        free(r->extensions[i].extendee);
    for (size_t i = 0; i < r->n_services; i++)
        free(r->services[i]);
    free(r->files);
    free(r->symbols);
    free(r->extensions);
    free(r->services);
    free(r);
}

const rpc_method *reflect_methods(reflect *r, size_t *n) {
    *n = REFLECT_N_METHODS;
    return r->methods;
}

/* --- answering ------------------------------------------------------------------ */

static bool request_strings_valid(const reflect_request *q) {
    const char *s = NULL;
    switch (q->message_request_case) {
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
        s = q->file_by_filename;
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
        s = q->file_containing_symbol;
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
        s = q->file_containing_extension->containing_type;
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
        s = q->all_extension_numbers_of_type;
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
        s = q->list_services;
        break;
    default:
        break;
    }
    return utf8_valid(q->host, strlen(q->host)) && (!s || utf8_valid(s, strlen(s)));
}

/* What one answer points to while it is packed; owns only its arrays. */
typedef struct answer {
    reflect_response resp;
    reflect_request echo; /* the request's known fields */
    Grpc__Reflection__V1__ExtensionRequest echo_extension;
    Grpc__Reflection__V1__FileDescriptorResponse files;
    Grpc__Reflection__V1__ListServiceResponse list;
    Grpc__Reflection__V1__ExtensionNumberResponse numbers;
    Grpc__Reflection__V1__ErrorResponse error;
    Grpc__Reflection__V1__ServiceResponse *service_msgs;
    char *error_message;
} answer;

/* Points a->echo (the response's original_request) at the fields of q that
 * were understood. Not q itself: protobuf-c keeps unknown fields, even ones
 * that stricter decoders refuse (field number 0), and would send them back. */
static void echo_request(const reflect_request *q, answer *a) {
    a->echo = (reflect_request)GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    a->echo.host = q->host;
    a->echo.message_request_case = q->message_request_case;
    switch (q->message_request_case) {
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
        a->echo.file_by_filename = q->file_by_filename;
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
        a->echo.file_containing_symbol = q->file_containing_symbol;
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
        a->echo_extension =
            (Grpc__Reflection__V1__ExtensionRequest)GRPC__REFLECTION__V1__EXTENSION_REQUEST__INIT;
        a->echo_extension.containing_type = q->file_containing_extension->containing_type;
        a->echo_extension.extension_number = q->file_containing_extension->extension_number;
        a->echo.file_containing_extension = &a->echo_extension;
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
        a->echo.all_extension_numbers_of_type = q->all_extension_numbers_of_type;
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
        a->echo.list_services = q->list_services;
        break;
    default:
        break;
    }
}

/* Makes a an error_response with code and "what: name". */
static int answer_error(answer *a, int code, const char *what, const char *name) {
    size_t n = strlen(what) + strlen(name) + 3;
    if (!(a->error_message = malloc(n))) return ERR_NOMEM;
    snprintf(a->error_message, n, "%s: %s", what, name);
    a->error.error_code = code;
    a->error.error_message = a->error_message;
    a->resp.message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
    a->resp.error_response = &a->error;
    return ERR_OK;
}

/* Makes a a file_descriptor_response with file and its transitive imports,
 * each once, file first. */
static int answer_file(const reflect *r, answer *a, size_t file) {
    bool *seen = calloc(r->n_files, sizeof *seen);
    a->files.file_descriptor_proto = malloc(r->n_files * sizeof *a->files.file_descriptor_proto);
    if (!seen || !a->files.file_descriptor_proto) {
        free(seen);
        return ERR_NOMEM;
    }
    /* The answer list doubles as the work list: each file's imports are
     * appended after it. */
    size_t *order = malloc(r->n_files * sizeof *order);
    if (!order) {
        free(seen);
        return ERR_NOMEM;
    }
    size_t n = 0;
    order[n++] = file;
    seen[file] = true;
    for (size_t i = 0; i < n; i++) {
        const reflect_file *f = &r->files[order[i]];
        a->files.file_descriptor_proto[i] = (ProtobufCBinaryData){f->len, f->bytes};
        for (size_t d = 0; d < f->n_deps; d++)
            if (!seen[f->deps[d]]) {
                seen[f->deps[d]] = true;
                order[n++] = f->deps[d];
            }
    }
    free(order);
    free(seen);
    a->files.n_file_descriptor_proto = n;
    a->resp.message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
    a->resp.file_descriptor_response = &a->files;
    return ERR_OK;
}

static int answer_list(const reflect *r, answer *a) {
    a->list.service = malloc(r->n_services * sizeof *a->list.service);
    a->service_msgs = malloc(r->n_services * sizeof *a->service_msgs);
    if (!a->list.service || !a->service_msgs) return ERR_NOMEM;
    for (size_t i = 0; i < r->n_services; i++) {
        a->service_msgs[i] =
            (Grpc__Reflection__V1__ServiceResponse)GRPC__REFLECTION__V1__SERVICE_RESPONSE__INIT;
        a->service_msgs[i].name = r->services[i];
        a->list.service[i] = &a->service_msgs[i];
    }
    a->list.n_service = r->n_services;
    a->resp.message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
    a->resp.list_services_response = &a->list;
    return ERR_OK;
}

static int answer_extension_numbers(const reflect *r, answer *a, const char *type) {
    a->numbers.extension_number =
        malloc((r->n_extensions ? r->n_extensions : 1) * sizeof *a->numbers.extension_number);
    if (!a->numbers.extension_number) return ERR_NOMEM;
    for (size_t i = 0; i < r->n_extensions; i++)
        if (!strcmp(r->extensions[i].extendee, type))
            a->numbers.extension_number[a->numbers.n_extension_number++] = r->extensions[i].number;
    a->numbers.base_type_name = (char *)type;
    a->resp.message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
    a->resp.all_extension_numbers_response = &a->numbers;
    return ERR_OK;
}

/* Fills a with the answer to q. Returns ERR_OK or ERR_NOMEM. */
static int answer_request(const reflect *r, const reflect_request *q, answer *a) {
    const reflect_symbol *sym;
    long file;
    switch (q->message_request_case) {
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
        return answer_list(r, a);
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
        file = find_file(r, q->file_by_filename);
        return file >= 0
                   ? answer_file(r, a, (size_t)file)
                   : answer_error(a, ERR_STATUS_NOT_FOUND, "file not found", q->file_by_filename);
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
        sym = find_symbol(r, q->file_containing_symbol);
        return sym ? answer_file(r, a, sym->file)
                   : answer_error(a, ERR_STATUS_NOT_FOUND, "symbol not found",
                                  q->file_containing_symbol);
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION: {
        const Grpc__Reflection__V1__ExtensionRequest *x = q->file_containing_extension;
        sym = find_symbol(r, x->containing_type);
        if (!sym || sym->kind != SYMBOL_MESSAGE)
            return answer_error(a, ERR_STATUS_NOT_FOUND, "type not found", x->containing_type);
        for (size_t i = 0; i < r->n_extensions; i++)
            if (r->extensions[i].number == x->extension_number &&
                !strcmp(r->extensions[i].extendee, x->containing_type))
                return answer_file(r, a, r->extensions[i].file);
        return answer_error(a, ERR_STATUS_NOT_FOUND, "extension not found", x->containing_type);
    }
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
        sym = find_symbol(r, q->all_extension_numbers_of_type);
        return sym && sym->kind == SYMBOL_MESSAGE
                   ? answer_extension_numbers(r, a, q->all_extension_numbers_of_type)
                   : answer_error(a, ERR_STATUS_NOT_FOUND, "type not found",
                                  q->all_extension_numbers_of_type);
    default:
        return answer_error(a, ERR_STATUS_UNIMPLEMENTED, "unsupported request",
                            "it asks for none of the reflection requests this server knows");
    }
}

void reflect_answer(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    const reflect *r = ctx;
    reflect_request *q = grpc__reflection__v1__server_reflection_request__unpack(NULL, len, req);
    if (!q) {
        rpc_reply_error(reply, ERR_INVALID,
                        "the request is not a valid ServerReflectionRequest message");
        return;
    }
    if (!request_strings_valid(q)) {
        rpc_reply_error(reply, ERR_INVALID, "a string of the request is not UTF-8");
        grpc__reflection__v1__server_reflection_request__free_unpacked(q, NULL);
        return;
    }
    answer a = {.resp = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT,
                .files = GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT,
                .list = GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT,
                .numbers = GRPC__REFLECTION__V1__EXTENSION_NUMBER_RESPONSE__INIT,
                .error = GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT};
    echo_request(q, &a);
    a.resp.valid_host = q->host;
    a.resp.original_request = &a.echo;
    if (answer_request(r, q, &a) == ERR_OK) {
        reply->len = protobuf_c_message_get_packed_size(&a.resp.base);
        reply->body = malloc(reply->len ? reply->len : 1);
        if (reply->body) protobuf_c_message_pack(&a.resp.base, reply->body);
    }
    if (!reply->body) rpc_reply_error(reply, ERR_NOMEM, "reflect: out of memory");
    free(a.files.file_descriptor_proto);
    free(a.list.service);
    free(a.service_msgs);
    free(a.numbers.extension_number);
    free(a.error_message);
    grpc__reflection__v1__server_reflection_request__free_unpacked(q, NULL);
}
