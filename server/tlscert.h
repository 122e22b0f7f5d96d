/* tlscert: when a PEM certificate chain stops being valid, read with
 * OpenSSL's libcrypto (the library gRPC's TLS runs on), so that a server
 * started with an expired certificate can say so instead of failing every
 * handshake in silence. */
#ifndef RECD_TLSCERT_H
#define RECD_TLSCERT_H

#include <stdint.h>

#include "err.h"

/* Fills *not_after with the earliest notAfter (unix s) of the certificates
 * in the PEM text pem (NUL-terminated): the chain stops being valid when
 * the first of them expires. Returns ERR_OK, ERR_FORMAT (no certificate, or
 * one that does not parse), ERR_NOMEM. */
int tlscert_not_after(const char *pem, int64_t *not_after, err_t *e);

#endif
