/* Fuzz target: the CSV importer, ingest_csv_buffer, under several dialects.
 *
 * Input: byte 0 chooses the options (bits 0-1 the delimiter , ; tab |,
 * bit 2 the quote " or ', bit 3 a strptime format instead of unix / ISO 8601
 * times, bit 4 the column names of the UCI Online Retail export instead of
 * the canonical ones, bit 5 an explicit category column, bit 6 a progress
 * callback); the rest is the file.
 *
 * Besides ASan/UBSan findings, a run aborts when the importer's accounting
 * is off: on success every data row is accepted or skipped for exactly one
 * reason, every accepted row is one event with a positive finite quantity
 * and a price that is unknown (NaN) or >= 0, and ids are valid UTF-8 of 1..256
 * bytes; on failure the error has a message. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "idmap.h"
#include "ingest.h"
#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

__attribute__((noreturn)) static void fail(const char *what) {
    fprintf(stderr, "fuzz_ingest: %s\n", what);
    abort();
}

static void progress(void *ctx, uint64_t rows, uint64_t bytes, uint64_t total) {
    (void)ctx;
    if (bytes > total || rows == 0) fail("progress beyond the input");
}

static void check_id(const idmap *m, uint32_t index) {
    size_t len;
    const char *id = idmap_key(m, index, &len);
    if (len == 0 || len > INGEST_MAX_ID_LEN || !utf8_valid(id, len))
        fail("an accepted id is empty, too long or not UTF-8");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return -1;
    static const char delimiters[] = {',', ';', '\t', '|'};
    uint8_t how = data[0];
    ingest_options o;
    ingest_options_init(&o);
    o.delimiter = delimiters[how & 3];
    o.quote = how & 4 ? '\'' : '"';
    if (how & 8) o.time_format = "%m/%d/%Y %H:%M";
    if (how & 16) {
        o.user_col = "CustomerID";
        o.item_col = "StockCode";
        o.time_col = "InvoiceDate";
        o.quantity_col = "Quantity";
        o.price_col = "UnitPrice";
    }
    if (how & 32) o.category_col = "category";
    if (how & 64) o.progress = progress;

    ev_set set;
    err_t e = {0};
    if (ev_set_init(&set, &e)) fail(e.msg);
    ingest_stats st;
    int rc = ingest_csv_buffer((const char *)data + 1, size - 1, &o, &set, &st, &e);
    if (rc == ERR_OK) {
        uint64_t skipped = 0;
        for (int r = 0; r < SKIP_REASONS; r++)
            skipped += st.skipped[r];
        if (st.accepted + skipped != st.rows) fail("rows neither accepted nor skipped");
        if (st.accepted != set.n) fail("accepted rows and events differ");
        for (size_t i = 0; i < set.n; i++) {
            const ev_event *ev = &set.events[i];
            if (!(ev->quantity > 0) || !isfinite(ev->quantity))
                fail("an event with a quantity that is not positive and finite");
            if (!isnan(ev->price) && !(ev->price >= 0 && isfinite(ev->price)))
                fail("an event with a negative or infinite price");
            check_id(set.users, ev->user);
            check_id(set.items, ev->item);
        }
    } else if (!e.msg[0]) {
        fail("an error without a message");
    }
    ev_set_free(&set);
    return 0;
}
