/* targetcsv: the CSV of campaign targets - one header, one row per
 * recd.v1.CampaignTarget - that `recd query targets --csv` prints and the
 * HTTP front end's GET /v1/campaign-targets.csv serves, byte for byte the
 * same. No state: thread-safe. */
#ifndef RECD_TARGETCSV_H
#define RECD_TARGETCSV_H

#include <stddef.h>

#include "recd/v1/recommender.pb-c.h"

/* The header line, with its "\n" (static storage). */
const char *targetcsv_header(void);

/* Writes t's row (RFC 4180: ids and segments quoted when they need to be;
 * ends with "\n") into buf (cap bytes, NUL-terminated when cap > 0) and
 * returns its length, as snprintf does: a return >= cap means the row was
 * cut, and a buffer of return + 1 bytes holds it (TARGETCSV_ROW_MAX always
 * does for ids within the core's limits). */
size_t targetcsv_row(const Recd__V1__CampaignTarget *t, char *buf, size_t cap);

/* Bytes a row of ids up to 256 bytes needs at most, NUL included. */
#define TARGETCSV_ROW_MAX 1024

#endif
