#include "tlscert.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <time.h>

int tlscert_not_after(const char *pem, int64_t *not_after, err_t *e) {
    BIO *b = BIO_new_mem_buf(pem, -1);
    if (!b) return err_set(e, ERR_NOMEM, "tls: out of memory");
    int rc = ERR_OK, n = 0;
    int64_t first = INT64_MAX;
    X509 *x;
    while (rc == ERR_OK && (x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
        struct tm tm;
        if (!ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm)) {
            rc = err_set(e, ERR_FORMAT, "tls: certificate %d has an unreadable notAfter", n + 1);
        } else {
            int64_t t = (int64_t)timegm(&tm);
            if (t < first) first = t;
            n++;
        }
        X509_free(x);
    }
    /* The read that ends the loop leaves "no start line" (or worse) in
     * the thread's error queue, where gRPC's TLS would find it later. */
    unsigned long last = ERR_peek_last_error();
    ERR_clear_error();
    BIO_free(b);
    if (rc) return rc;
    if (n == 0) return err_set(e, ERR_FORMAT, "tls: no PEM certificate found");
    /* After the last certificate only the end of the text may follow. */
    if (ERR_GET_REASON(last) != PEM_R_NO_START_LINE)
        return err_set(e, ERR_FORMAT, "tls: certificate %d does not parse", n + 1);
    *not_after = first;
    return ERR_OK;
}
