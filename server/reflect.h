/* reflect: the standard gRPC server reflection service, so that grpcurl and
 * other tools can call recd without its .proto files.
 *
 * Serves grpc.reflection.v1.ServerReflection and its older twin
 * grpc.reflection.v1alpha.ServerReflection (same messages, other package)
 * from one implementation, answering from a serialized FileDescriptorSet:
 * normally reflect_descriptor_set, which the build compiles from
 * recommender.proto, health.proto and the reflection protos with
 * `protoc-c --include_imports --descriptor_set_out` and embeds. */
#ifndef RECD_REFLECT_H
#define RECD_REFLECT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "rpc.h"

/* The FileDescriptorSet of every service recd serves, with all their
 * imports; defined by a C file the build generates. */
extern const uint8_t reflect_descriptor_set[];
extern const size_t reflect_descriptor_set_len;

typedef struct reflect reflect;

/* Indexes the FileDescriptorSet set/len (copied; it need not outlive *out)
 * for reflection on the services of served (n methods, "/pkg.Service/Method"
 * paths) plus the two reflection services. *out is owned by the caller:
 * reflect_close, after the rpc server that uses it has stopped. Returns
 * ERR_OK; ERR_FORMAT when set is not a FileDescriptorSet, names a file
 * twice or imports a file it does not hold; ERR_NOTFOUND when a served
 * service has no descriptor in set (the message names it); ERR_NOMEM. */
int reflect_open(const uint8_t *set, size_t len, const rpc_method *served, size_t n, reflect **out,
                 err_t *e);

void reflect_close(reflect *r);

/* The reflection methods, v1 and v1alpha (bidirectional, rpc_method.bidi =
 * reflect_answer), valid while r lives; *n gets their number. */
const rpc_method *reflect_methods(reflect *r, size_t *n);

/* Answers one ServerReflectionRequest (req/len) with one
 * ServerReflectionResponse (an rpc_handler; ctx is the reflect). The
 * response echoes host and the request, and holds: for list_services, the
 * served services; for file_by_filename and file_containing_symbol, the
 * serialized FileDescriptorProto of that file followed by those of its
 * transitive imports; for file_containing_extension, the file declaring
 * that extension; for all_extension_numbers_of_type, the field numbers of
 * its known extensions. A file, symbol, extension or type that the set does
 * not hold gets error_response NOT_FOUND (5), a request that asks for none
 * of these error_response UNIMPLEMENTED (12), as grpc's own C++ service
 * answers; the stream goes on after both. Symbols are full names without
 * the leading dot: packages' messages, enums, services and extensions, and
 * their nested messages, enums and extensions, fields, oneofs, methods
 * ("pkg.Service.Method") and enum values (in the scope that holds their
 * enum, "pkg.VALUE", as protobuf scopes them). A request that does not
 * decode or carries a string that is not UTF-8 gets INVALID_ARGUMENT, which
 * ends the stream. Thread-safe: r is only read. */
void reflect_answer(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply);

#endif
