/* Unit tests of features/ingest: CSV dialects, timestamps, skip accounting
 * with line numbers, rejection of non-CSV input, and the UCI Online Retail
 * export read in place. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ingest.h"

static ev_set set;
static ingest_stats st;
static err_t err;

static void setup(void) {
    cr_assert_eq(ev_set_init(&set, &err), ERR_OK);
    memset(&err, 0, sizeof err);
}

static void teardown(void) {
    ev_set_free(&set);
}

TestSuite(ingest, .init = setup, .fini = teardown);

static int load_opts(const char *csv, const ingest_options *o) {
    return ingest_csv_buffer(csv, strlen(csv), o, &set, &st, &err);
}

static int load(const char *csv) {
    ingest_options o;
    ingest_options_init(&o);
    return load_opts(csv, &o);
}

/* The id string of event i's user / item, NUL-terminated in a static buffer. */
static const char *key(const idmap *m, uint32_t index) {
    static char buf[2][512];
    static int which;
    size_t len;
    const char *k = idmap_key(m, index, &len);
    char *b = buf[which ^= 1];
    memcpy(b, k, len);
    b[len] = '\0';
    return b;
}

static const char *user_of(size_t i) {
    return key(set.users, set.events[i].user);
}

static const char *item_of(size_t i) {
    return key(set.items, set.events[i].item);
}

static uint64_t total_skipped(void) {
    uint64_t n = 0;
    for (int r = 0; r < SKIP_REASONS; r++)
        n += st.skipped[r];
    return n;
}

Test(ingest, defaults_and_absent_optional_columns) {
    cr_assert_eq(load("user_id,item_id,timestamp\nu1,i1,1700000100\nu2,i2,1700000200\n"), ERR_OK,
                 "%s", err.msg);
    cr_assert_eq(st.rows, 2);
    cr_assert_eq(st.accepted, 2);
    cr_assert_eq(set.n, 2);
    cr_assert_str_eq(user_of(1), "u2");
    cr_assert_str_eq(item_of(1), "i2");
    cr_assert_eq(set.events[1].ts, 1700000200);
    cr_assert_float_eq(set.events[0].quantity, 1.0f, 0);
    cr_assert(isnan(set.events[0].price));
}

Test(ingest, last_row_without_newline_and_extra_columns) {
    cr_assert_eq(load("x,user_id,y,timestamp,item_id\n1,u1,2,1700000100,i1\n3,u2,4,1700000200,i2"),
                 ERR_OK);
    cr_assert_eq(set.n, 2);
    cr_assert_str_eq(user_of(1), "u2");
    cr_assert_str_eq(item_of(1), "i2");
    cr_assert_eq(set.events[1].ts, 1700000200);
}

Test(ingest, quoted_fields_keep_line_numbers) {
    const char *csv = "user_id,item_id,timestamp,note\n" /* 1 */
                      "u1,\"i,1\",1700000100,\"two\n"    /* 2 */
                      "lines\"\n"                        /* 3 */
                      "u2,i2,bad,\"say \"\"hi\"\"\"\n"   /* 4: bad time */
                      "\"u3\",i3,1700000300,x\n"         /* 5 */
                      "\"u\n"                            /* 6: user id with a newline */
                      "4\",i4,nope,x\n"                  /* 7 */
                      "u5,\"i\n"                         /* 8 */
                      "5\",,x\n";                        /* 9: bad time */
    cr_assert_eq(load(csv), ERR_OK, "%s", err.msg);
    cr_assert_eq(st.rows, 5);
    cr_assert_eq(st.accepted, 2);
    cr_assert_str_eq(item_of(0), "i,1");
    cr_assert_str_eq(user_of(1), "u3");
    cr_assert_eq(set.events[1].ts, 1700000300);
    cr_assert_eq(st.skipped[SKIP_BAD_TIME], 3);
    cr_assert_eq(st.first_lines[SKIP_BAD_TIME][0], 4);
    cr_assert_eq(st.first_lines[SKIP_BAD_TIME][1], 6);
    cr_assert_eq(st.first_lines[SKIP_BAD_TIME][2], 8);
    cr_assert_eq(st.first_lines[SKIP_BAD_TIME][3], 0);
}

Test(ingest, crlf_and_blank_lines) {
    cr_assert_eq(load("user_id,item_id,timestamp\r\nu1,i1,1700000100\r\n\r\nu2,,1700000200\r\nu3,"
                      "i3,1700000300\r\n"),
                 ERR_OK, "%s", err.msg);
    cr_assert_eq(st.rows, 3);
    cr_assert_eq(st.accepted, 2);
    cr_assert_eq(st.skipped[SKIP_MISSING_ITEM], 1);
    cr_assert_eq(st.first_lines[SKIP_MISSING_ITEM][0], 4);
    cr_assert_eq(set.events[1].ts, 1700000300);
    cr_assert_str_eq(item_of(1), "i3");
}

Test(ingest, missing_column_is_a_format_error) {
    cr_assert_eq(load("user,item_id,timestamp\nu1,i1,1700000100\n"), ERR_FORMAT);
    cr_assert(strstr(err.msg, "\"user_id\""), "%s", err.msg);
    cr_assert(strstr(err.msg, "user,item_id,timestamp"), "%s", err.msg);
    cr_assert(strstr(err.msg, "line 1"), "%s", err.msg);
}

Test(ingest, requested_optional_column_must_exist) {
    ingest_options o;
    ingest_options_init(&o);
    o.price_col = "UnitPrice";
    cr_assert_eq(load_opts("user_id,item_id,timestamp,price\nu1,i1,1700000100,1\n", &o),
                 ERR_FORMAT);
    cr_assert(strstr(err.msg, "UnitPrice"), "%s", err.msg);
}

Test(ingest, column_remapping) {
    ingest_options o;
    ingest_options_init(&o);
    o.user_col = "CustomerID";
    o.item_col = "StockCode";
    o.time_col = "InvoiceDate";
    o.quantity_col = "Quantity";
    o.price_col = "UnitPrice";
    const char *csv =
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        "536365,85123A,\"HEART, WHITE\",6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n"
        "C536379,D,Discount,-1,2010-12-01 09:41:00,27.5,14527.0,United Kingdom\n";
    cr_assert_eq(load_opts(csv, &o), ERR_OK, "%s", err.msg);
    cr_assert_eq(set.n, 1);
    cr_assert_str_eq(user_of(0), "17850.0");
    cr_assert_str_eq(item_of(0), "85123A");
    cr_assert_eq(set.events[0].ts, 1291191960);
    cr_assert_float_eq(set.events[0].quantity, 6.0f, 0);
    cr_assert_float_eq(set.events[0].price, 2.55f, 1e-6);
    cr_assert_eq(st.skipped[SKIP_NEGATIVE_QTY], 1);
    cr_assert_eq(st.first_lines[SKIP_NEGATIVE_QTY][0], 3);
}

Test(ingest, default_quantity_and_price_columns) {
    cr_assert_eq(load("user_id,item_id,timestamp,quantity,price\nu1,i1,1700000100,2.5,10\n"
                      "u1,i2,1700000100,3,\n"),
                 ERR_OK);
    cr_assert_float_eq(set.events[0].quantity, 2.5f, 0);
    cr_assert_float_eq(set.events[0].price, 10.0f, 0);
    cr_assert(isnan(set.events[1].price), "an empty price is an unknown price");
}

static int64_t t(const char *s, const char *format) {
    int64_t v = -1;
    cr_assert_eq(ingest_parse_time(s, strlen(s), format, &v), ERR_OK, "'%s' should parse", s);
    return v;
}

static void bad_time(const char *s, const char *format) {
    int64_t v;
    cr_assert_eq(ingest_parse_time(s, strlen(s), format, &v), ERR_INVALID, "'%s' should not parse",
                 s);
}

Test(ingest, time_formats) {
    cr_assert_eq(t("1323435000", NULL), 1323435000);
    cr_assert_eq(t("1323435000.75", NULL), 1323435000);
    cr_assert_eq(t("0", NULL), 0);
    cr_assert_eq(t("2011-12-09T12:50:00Z", NULL), 1323435000);
    cr_assert_eq(t("2011-12-09T12:50:00", NULL), 1323435000);
    cr_assert_eq(t("2011-12-09 12:50:00", NULL), 1323435000);
    cr_assert_eq(t("2011-12-09T12:50Z", NULL), 1323435000);
    cr_assert_eq(t("2011-12-09T12:50:00.250Z", NULL), 1323435000);
    cr_assert_eq(t("2011-12-09T13:50:00+01:00", NULL), 1323435000);
    cr_assert_eq(t("2011-12-09T07:50:00-0500", NULL), 1323435000);
    cr_assert_eq(t("2011-12-09T14:50:00+02", NULL), 1323435000);
    cr_assert_eq(t("1970-01-01T00:00:00Z", NULL), 0);
    cr_assert_eq(t("2000-02-29T00:00:00Z", NULL), 951782400);
    cr_assert_eq(t("1969-12-31T23:59:59Z", NULL), -1);
    cr_assert_eq(t("12/9/2011 12:50", "%m/%d/%Y %H:%M"), 1323435000);
    cr_assert_eq(t("09.12.2011 13:50 +0100", "%d.%m.%Y %H:%M %z"), 1323435000);
    bad_time("", NULL);
    bad_time("abc", NULL);
    bad_time("-5", NULL);
    bad_time("12:50", NULL);
    bad_time("1323435000x", NULL);
    bad_time("2011-12-09", NULL);
    bad_time("2011-13-09T12:50:00", NULL);
    bad_time("2011-02-29T12:50:00", NULL);
    bad_time("2011-12-09T24:00:00", NULL);
    bad_time("2011-12-09T12:50:00+1", NULL);
    bad_time("2011-12-09T12:50:00 ", NULL);
    bad_time("2011-12-09X12:50:00", NULL);
    bad_time("12/9/2011 12:50 extra", "%m/%d/%Y %H:%M");
    bad_time("2011-12-09 12:50", "%m/%d/%Y %H:%M");
}

Test(ingest, time_need_not_be_nul_terminated) {
    int64_t v;
    const char *s = "2011-12-09T12:50:00Z99";
    cr_assert_eq(ingest_parse_time(s, 20, NULL, &v), ERR_OK);
    cr_assert_eq(v, 1323435000);
    cr_assert_eq(ingest_parse_time("123456", 3, NULL, &v), ERR_OK);
    cr_assert_eq(v, 123);
    cr_assert_eq(ingest_parse_time("12/9/2011 12:50xx", 15, "%m/%d/%Y %H:%M", &v), ERR_OK);
    cr_assert_eq(v, 1323435000);
}

Test(ingest, custom_time_format_in_a_file) {
    ingest_options o;
    ingest_options_init(&o);
    o.time_format = "%m/%d/%Y %H:%M";
    cr_assert_eq(
        load_opts("user_id,item_id,timestamp\nu1,i1,12/9/2011 12:50\nu1,i1,1323435000\n", &o),
        ERR_OK);
    cr_assert_eq(set.n, 1);
    cr_assert_eq(set.events[0].ts, 1323435000);
    cr_assert_eq(st.first_lines[SKIP_BAD_TIME][0], 3);
}

Test(ingest, skips_counted_by_reason_with_lines) {
    const char *csv = "user_id,item_id,timestamp,quantity,price\n" /* 1 */
                      ",i1,1700000100,1,1\n"                       /* 2 missing user */
                      "u1,,1700000100,1,1\n"                       /* 3 missing item */
                      "u1,i1,yesterday,1,1\n"                      /* 4 bad time */
                      "u1,i1,1700000100,many,1\n"                  /* 5 bad quantity */
                      "u1,i1,1700000100,,1\n"                      /* 6 bad quantity */
                      "u1,i1,1700000100,0,1\n"                     /* 7 quantity <= 0 */
                      "u1,i1,1700000100,-3,1\n"                    /* 8 quantity <= 0 */
                      "u1,i1,1700000100,1,-0.5\n"                  /* 9 bad price */
                      "u1,i1,1700000100,1,cheap\n"                 /* 10 bad price */
                      "u1,i1,1700000100,1,nan\n"                   /* 11 bad price */
                      "u1,i1,1700000100\n"                         /* 12 short row */
                      ",i1,1700000100,1,1\n"                       /* 13 missing user */
                      "u1,i1,1700000100,1e1,1.5e1\n";              /* 14 accepted */
    cr_assert_eq(load(csv), ERR_OK, "%s", err.msg);
    cr_assert_eq(st.rows, 13);
    cr_assert_eq(st.accepted, 1);
    cr_assert_eq(total_skipped(), 12);
    cr_assert_float_eq(set.events[0].quantity, 10.0f, 0);
    cr_assert_float_eq(set.events[0].price, 15.0f, 0);
    static const struct {
        int reason;
        uint64_t n, lines[3];
    } want[] = {
        {SKIP_MISSING_USER, 2, {2, 13}}, {SKIP_MISSING_ITEM, 1, {3}},
        {SKIP_BAD_TIME, 1, {4}},         {SKIP_BAD_QUANTITY, 2, {5, 6}},
        {SKIP_NEGATIVE_QTY, 2, {7, 8}},  {SKIP_BAD_PRICE, 3, {9, 10, 11}},
        {SKIP_SHORT_ROW, 1, {12}},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int r = want[i].reason;
        cr_assert_eq(st.skipped[r], want[i].n, "%s", ingest_skip_name(r));
        for (int k = 0; k < 3; k++)
            cr_assert_eq(st.first_lines[r][k], want[i].lines[k], "%s #%d", ingest_skip_name(r), k);
    }
}

/* Found by fuzz_ingest: 1e64 parsed fine as a double and became an infinite
 * float quantity. Numbers a float cannot hold are skipped instead. */
Test(ingest, quantity_and_price_beyond_float_range_are_skipped) {
    const char *csv = "user_id,item_id,timestamp,quantity,price\n"
                      "u1,i1,1700000100,1e64,1\n"
                      "u1,i1,1700000100,1,4e38\n"
                      "u1,i1,1700000100,3e38,3e38\n";
    cr_assert_eq(load(csv), ERR_OK, "%s", err.msg);
    cr_assert_eq(st.skipped[SKIP_BAD_QUANTITY], 1);
    cr_assert_eq(st.skipped[SKIP_BAD_PRICE], 1);
    cr_assert_eq(st.accepted, 1);
    cr_assert(isfinite(set.events[0].quantity) && isfinite(set.events[0].price));
}

Test(ingest, only_first_lines_are_kept) {
    char csv[4096] = "user_id,item_id,timestamp\n";
    for (int i = 0; i < 9; i++)
        strcat(csv, ",i,1\n");
    cr_assert_eq(load(csv), ERR_OK);
    cr_assert_eq(st.skipped[SKIP_MISSING_USER], 9);
    for (int k = 0; k < INGEST_FIRST_LINES; k++)
        cr_assert_eq(st.first_lines[SKIP_MISSING_USER][k], (uint64_t)k + 2);
}

Test(ingest, zero_accepted_is_not_an_error) {
    cr_assert_eq(load("user_id,item_id,timestamp\n,a,1\n,b,2\n,c,3\n"), ERR_OK);
    cr_assert_eq(st.rows, 3);
    cr_assert_eq(st.accepted, 0);
}

Test(ingest, header_only_is_empty_history) {
    cr_assert_eq(load("user_id,item_id,timestamp\n"), ERR_OK, "%s", err.msg);
    cr_assert_eq(st.rows, 0);
    cr_assert_eq(set.n, 0);
}

Test(ingest, empty_input_is_a_format_error) {
    cr_assert_eq(load(""), ERR_FORMAT);
    cr_assert_eq(load("\n\r\n  \n"), ERR_FORMAT);
}

Test(ingest, binary_input_is_a_format_error) {
    ingest_options o;
    ingest_options_init(&o);
    static const char gz[] = "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03user_id,item_id";
    cr_assert_eq(ingest_csv_buffer(gz, sizeof gz - 1, &o, &set, &st, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "line 1"), "%s", err.msg);
    static const char late[] = "user_id,item_id,timestamp\nu1,i1,1\nu2\0,i2,2\n";
    cr_assert_eq(ingest_csv_buffer(late, sizeof late - 1, &o, &set, &st, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "line 3"), "%s", err.msg);
}

Test(ingest, bad_quoting_is_a_format_error) {
    cr_assert_eq(load("user_id,item_id,timestamp\nu1,\"i1,1700000100\nu2,i2,1700000200\n"),
                 ERR_FORMAT);
    cr_assert(strstr(err.msg, "line 2: a quoted field is never closed"), "%s", err.msg);
    cr_assert_eq(load("user_id,item_id,timestamp\nu1,i1,1700000100\n\"u2,i2,1700000200\n"),
                 ERR_FORMAT);
    cr_assert(strstr(err.msg, "after line 2: a quoted field is never closed"), "%s", err.msg);
    cr_assert_eq(load("user_id,item_id,timestamp\nu1,i\"1,1700000100\n"), ERR_FORMAT);
    cr_assert(strstr(err.msg, "line 2"), "%s", err.msg);
    cr_assert_eq(load("user_id,item_id,timestamp\nu1,\"i1\"x,1700000100\n"), ERR_FORMAT);
}

Test(ingest, id_length_and_utf8) {
    char csv[2048] = "user_id,item_id,timestamp\n";
    char id[300];
    memset(id, 'a', 257);
    id[257] = '\0';
    strcat(csv, "u1,");
    strcat(csv, id); /* 257 bytes: too long */
    strcat(csv, ",1700000001\n");
    id[256] = '\0';
    strcat(csv, "u1,");
    strcat(csv, id); /* 256 bytes: the limit */
    strcat(csv, ",1700000001\n");
    strcat(csv, "u\xff,i1,1700000001\n"
                "u1,i\xc3\x28,1700000001\n"            /* truncated sequence */
                "u\xc3\xa9,caf\xc3\xa9,1700000001\n"); /* é */
    cr_assert_eq(load(csv), ERR_OK, "%s", err.msg);
    cr_assert_eq(st.skipped[SKIP_ID_TOO_LONG], 1);
    cr_assert_eq(st.first_lines[SKIP_ID_TOO_LONG][0], 2);
    cr_assert_eq(st.skipped[SKIP_BAD_UTF8], 2);
    cr_assert_eq(st.first_lines[SKIP_BAD_UTF8][0], 4);
    cr_assert_eq(st.first_lines[SKIP_BAD_UTF8][1], 5);
    cr_assert_eq(set.n, 2);
    cr_assert_eq(strlen(item_of(0)), 256);
    cr_assert_str_eq(item_of(1), "caf\xc3\xa9");
}

Test(ingest, repeated_purchases_are_separate_events) {
    cr_assert_eq(
        load("user_id,item_id,timestamp\nu1,i1,1700000100\nu1,i1,1700000100\nu1,i1,1700000200\n"),
        ERR_OK);
    cr_assert_eq(set.n, 3);
    cr_assert_eq(idmap_size(set.users), 1);
    cr_assert_eq(idmap_size(set.items), 1);
}

Test(ingest, semicolon_and_tab_delimiters) {
    ingest_options o;
    ingest_options_init(&o);
    o.delimiter = ';';
    cr_assert_eq(
        load_opts("user_id;item_id;timestamp\nu1;\"i;1\";1700000100\nu2;i,2;1700000200\n", &o),
        ERR_OK);
    cr_assert_eq(set.n, 2);
    cr_assert_str_eq(item_of(0), "i;1");
    cr_assert_str_eq(item_of(1), "i,2");

    ev_set_free(&set);
    setup();
    o.delimiter = '\t';
    cr_assert_eq(
        load_opts("user_id\titem_id\ttimestamp\nu1\ti 1\t1700000100\nu2\t\t1700000200\n", &o),
        ERR_OK);
    cr_assert_eq(set.n, 1);
    cr_assert_str_eq(item_of(0), "i 1");
    cr_assert_eq(st.skipped[SKIP_MISSING_ITEM], 1, "an empty field between tabs stays empty");
}

Test(ingest, byte_order_mark_is_ignored) {
    cr_assert_eq(load("\xef\xbb\xbfuser_id,item_id,timestamp\nu1,i1,1700000001\n"), ERR_OK, "%s",
                 err.msg);
    cr_assert_eq(set.n, 1);
}

Test(ingest, byte_order_mark_before_a_quoted_header) {
    cr_assert_eq(load("\xef\xbb\xbf\"user_id\",\"item_id\",\"timestamp\"\nu1,i1,1700000001\n"),
                 ERR_OK, "%s", err.msg);
    cr_assert_eq(set.n, 1);
    /* Only at the very start: elsewhere the bytes are data. */
    cr_assert_eq(load("user_id,item_id,timestamp\n\xef\xbb\xbfu1,i1,1700000001\n"), ERR_OK);
    cr_assert_str_eq(user_of(1), "\xef\xbb\xbfu1");
}

/* The mark split over reads of a pipe, and a start that only looks like one. */
Test(ingest, byte_order_mark_split_over_reads) {
    static const char *const parts[][2] = {
        {"\xef", "\xbb\xbf\"user_id\",item_id,timestamp\nu1,i1,1700000001\n"},
        {"\xef\xbb", "user_id,item_id,timestamp\nu1,i1,1700000001\n"}};
    for (int t = 0; t < 2; t++) {
        int fds[2];
        cr_assert_eq(pipe(fds), 0);
        pid_t pid = fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            ssize_t w = write(fds[1], parts[t][0], strlen(parts[t][0]));
            usleep(100000); /* so that the reader gets the first part alone */
            w += write(fds[1], parts[t][1], strlen(parts[t][1]));
            _exit(w > 0 ? 0 : 1);
        }
        close(fds[1]);
        cr_assert(dup2(fds[0], STDIN_FILENO) == STDIN_FILENO);
        close(fds[0]);
        ingest_options o;
        ingest_options_init(&o);
        int rc = ingest_csv_file("-", &o, &set, &st, &err);
        waitpid(pid, NULL, 0);
        if (t == 0) {
            cr_assert_eq(rc, ERR_OK, "%s", err.msg);
            cr_assert_eq(set.n, 1);
        } else {
            /* Not a mark: the bytes stay in the first header name. */
            cr_assert_eq(rc, ERR_FORMAT);
            cr_assert(strstr(err.msg, "\"user_id\""), "%s", err.msg);
        }
    }
}

Test(ingest, a_mapped_column_named_twice_is_refused) {
    cr_assert_eq(load("user_id,item_id,timestamp,item_id\nu1,i1,1700000001,i2\n"), ERR_FORMAT);
    cr_assert(strstr(err.msg, "\"item_id\" appears twice") && strstr(err.msg, "columns 2 and 4"),
              "%s", err.msg);
    cr_assert(strstr(err.msg, "line 1"), "%s", err.msg);
    /* An optional column found by its default name counts too. */
    cr_assert_eq(load("user_id,item_id,timestamp,price,price\nu1,i1,1700000001,1,2\n"), ERR_FORMAT);
    /* Columns that are not read may repeat (exports often have several blank names). */
    cr_assert_eq(load("user_id,,note,item_id,timestamp,note,\nu1,,a,i1,1700000001,b,\n"), ERR_OK,
                 "%s", err.msg);
    cr_assert_eq(set.n, 1);
}

Test(ingest, timestamps_out_of_range_are_skipped) {
    ingest_options o;
    ingest_options_init(&o);
    o.now = 1700000000;
    const char *csv = "user_id,item_id,timestamp\n"        /* 1 */
                      "u1,i1,1700086400\n"                 /* 2 now + 1 day: kept */
                      "u1,i1,1700086401\n"                 /* 3 future */
                      "u1,i1,2100-01-01T00:00:00Z\n"       /* 4 future */
                      "u1,i1,9999-12-31 23:59\n"           /* 5 future */
                      "u1,i1,0\n"                          /* 6 old */
                      "u1,i1,1970-01-01T20:00:00\n"        /* 7 old */
                      "u1,i1,1970-01-02T00:00:00Z\n"       /* 8 the floor: kept */
                      "u1,i1,1900-01-01T00:00:00Z\n"       /* 9 old */
                      "u1,i1,0000-01-01T00:00:00Z\n"       /* 10 old */
                      "u1,i1,1970-01-01T00:00:00-14:00\n"; /* 11 old: midnight in UTC-14 */
    cr_assert_eq(load_opts(csv, &o), ERR_OK, "%s", err.msg);
    cr_assert_eq(set.n, 2);
    cr_assert_eq(set.events[0].ts, 1700086400);
    cr_assert_eq(set.events[1].ts, INGEST_MIN_TS);
    cr_assert_eq(st.skipped[SKIP_FUTURE_TIME], 3);
    cr_assert_eq(st.first_lines[SKIP_FUTURE_TIME][0], 3);
    cr_assert_eq(st.first_lines[SKIP_FUTURE_TIME][2], 5);
    cr_assert_eq(st.skipped[SKIP_OLD_TIME], 5);
    cr_assert_eq(st.first_lines[SKIP_OLD_TIME][0], 6);
    cr_assert_eq(st.first_lines[SKIP_OLD_TIME][4], 11);
    cr_assert_eq(total_skipped(), 8);
    char *text;
    size_t len;
    FILE *f = open_memstream(&text, &len);
    ingest_print_summary(f, "x.csv", &st);
    fclose(f);
    cr_assert(strstr(text, "timestamp more than a day after the import 3 [lines 3, 4, 5]") &&
                  strstr(text, "timestamp before 1970-01-02 5 [lines 6, 7, 9, 10, 11]"),
              "%s", text);
    free(text);

    /* strptime formats obey the same bounds. */
    ev_set_free(&set);
    setup();
    o.time_format = "%d/%m/%Y";
    cr_assert_eq(load_opts("user_id,item_id,timestamp\nu1,i1,01/01/2100\nu1,i1,01/01/1900\n"
                           "u1,i1,01/01/2020\n",
                           &o),
                 ERR_OK, "%s", err.msg);
    cr_assert_eq(set.n, 1);
    cr_assert_eq(st.skipped[SKIP_FUTURE_TIME], 1);
    cr_assert_eq(st.skipped[SKIP_OLD_TIME], 1);
}

Test(ingest, the_future_bound_defaults_to_the_clock) {
    char csv[256];
    int64_t now = (int64_t)time(NULL);
    snprintf(csv, sizeof csv,
             "user_id,item_id,timestamp\nu1,i1,%lld\nu1,i1,%lld\nu1,i1,2100-01-01 00:00\n",
             (long long)now, (long long)(now + 2 * 86400));
    cr_assert_eq(load(csv), ERR_OK, "%s", err.msg);
    cr_assert_eq(set.n, 1);
    cr_assert_eq(st.skipped[SKIP_FUTURE_TIME], 2);
}

Test(ingest, delimiter_equal_to_quote_is_invalid) {
    ingest_options o;
    ingest_options_init(&o);
    o.delimiter = '"';
    cr_assert_eq(load_opts("user_id,item_id,timestamp\n", &o), ERR_INVALID);
}

static void count_progress(void *ctx, uint64_t rows, uint64_t bytes, uint64_t total) {
    uint64_t *calls = ctx;
    cr_assert_eq(rows % 500000, 0);
    cr_assert(bytes > 0 && bytes <= total);
    (*calls)++;
}

Test(ingest, progress_every_half_million_rows) {
    size_t n = 1200000, len = 0;
    static const char row[] = "u,i,1700000001\n";
    char *csv = malloc(26 + n * (sizeof row - 1));
    len += (size_t)sprintf(csv, "user_id,item_id,timestamp\n");
    for (size_t i = 0; i < n; i++)
        memcpy(csv + len + i * (sizeof row - 1), row, sizeof row - 1);
    len += n * (sizeof row - 1);
    uint64_t calls = 0;
    ingest_options o;
    ingest_options_init(&o);
    o.progress = count_progress;
    o.progress_ctx = &calls;
    cr_assert_eq(ingest_csv_buffer(csv, len, &o, &set, &st, &err), ERR_OK);
    cr_assert_eq(st.accepted, n);
    cr_assert_eq(calls, 2);
    free(csv);
}

static char *write_temp(const char *content) {
    static char path[] = "/tmp/test_ingest_XXXXXX";
    strcpy(path, "/tmp/test_ingest_XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
    return path;
}

Test(ingest, file_and_stdin) {
    const char *csv = "user_id,item_id,timestamp\nu1,i1,1700000001\n,i2,2\n";
    char *path = write_temp(csv);
    ingest_options o;
    ingest_options_init(&o);
    cr_assert_eq(ingest_csv_file(path, &o, &set, &st, &err), ERR_OK, "%s", err.msg);
    cr_assert_eq(set.n, 1);
    cr_assert_eq(st.first_lines[SKIP_MISSING_USER][0], 3);

    /* Criterion runs each test in its own process, so stdin is ours. */
    int fd = open(path, O_RDONLY);
    cr_assert(fd >= 0 && dup2(fd, STDIN_FILENO) == STDIN_FILENO);
    close(fd);
    cr_assert_eq(ingest_csv_file("-", &o, &set, &st, &err), ERR_OK, "%s", err.msg);
    cr_assert_eq(set.n, 2);
    unlink(path);

    cr_assert_eq(ingest_csv_file("/nonexistent/recd.csv", &o, &set, &st, &err), ERR_IO);
    cr_assert(strstr(err.msg, "/nonexistent/recd.csv"), "%s", err.msg);

    path = write_temp("user_id,item_id\n");
    cr_assert_eq(ingest_csv_file(path, &o, &set, &st, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "timestamp"), "%s", err.msg);
    unlink(path);
}

Test(ingest, summary_lists_reasons_and_lines) {
    cr_assert_eq(load("user_id,item_id,timestamp\nu,i,1700000001\n,i,2\nu,,3\n,i,4\n"), ERR_OK);
    char *text;
    size_t len;
    FILE *f = open_memstream(&text, &len);
    ingest_print_summary(f, "x.csv", &st);
    fclose(f);
    cr_assert_str_eq(text, "import: x.csv: 4 rows, 1 accepted, 3 skipped (missing user 2 [lines "
                           "3, 5], missing item 1 [line 4])\n");
    free(text);
}

Test(ingest, online_retail_uci) {
    const char *dir = getenv("RECD_SHARED_DATA");
    char path[4096];
    if (!dir) cr_skip_test("RECD_SHARED_DATA is not set: the UCI Online Retail test needs it");
    snprintf(path, sizeof path, "%s/online_retail_uci/online_retail.csv", dir);
    if (access(path, R_OK) != 0) cr_skip_test("%s is not readable: test skipped", path);
    ingest_options o;
    ingest_options_init(&o);
    o.user_col = "CustomerID";
    o.item_col = "StockCode";
    o.time_col = "InvoiceDate";
    o.quantity_col = "Quantity";
    o.price_col = "UnitPrice";
    cr_assert_eq(ingest_csv_file(path, &o, &set, &st, &err), ERR_OK, "%s", err.msg);
    cr_assert_eq(st.rows, 541909);
    cr_assert_eq(st.skipped[SKIP_MISSING_USER], 135080);
    cr_assert_eq(st.first_lines[SKIP_MISSING_USER][0], 624);
    /* Rows with a customer but quantity <= 0: the cancellations and
     * adjustments (10,624 negative rows in all, most without a customer). */
    cr_assert_eq(st.skipped[SKIP_NEGATIVE_QTY], 8905);
    cr_assert_eq(st.first_lines[SKIP_NEGATIVE_QTY][0], 143);
    cr_assert_eq(total_skipped(), 135080 + 8905);
    /* Independently: python csv, CustomerID non-empty and Quantity > 0. */
    cr_assert_eq(st.accepted, 397924);
    cr_assert_eq(set.n, 397924);
    /* 4,372 customers appear in the file; 33 of them only ever cancelled. */
    cr_assert_eq(idmap_size(set.users), 4339);
    cr_assert_eq(idmap_size(set.items), 3665);
    cr_assert_eq(set.events[0].ts, 1291191960); /* 2010-12-01 08:26:00 */
}

Test(ingest, item_categories) {
    cr_assert_eq(load("user_id,item_id,timestamp,category\n"
                      "u1,i1,1700000100,tools\n"
                      "u1,i2,1700000101,\n"
                      "u2,i3,1700000102,toys\n"
                      "u2,i1,1700000103,garden\n"),
                 ERR_OK, "%s", err.msg);
    cr_assert_eq(idmap_size(set.categories), 3);
    uint32_t i1, i2, garden;
    cr_assert_eq(idmap_find(set.items, "i1", 2, &i1), ERR_OK);
    cr_assert_eq(idmap_find(set.items, "i2", 2, &i2), ERR_OK);
    cr_assert_eq(idmap_find(set.categories, "garden", 6, &garden), ERR_OK);
    cr_assert_eq(ev_set_item_category(&set, i1), garden, "the latest row wins");
    cr_assert_eq(ev_set_item_category(&set, i2), UINT32_MAX, "an empty category is none");
    cr_assert_eq(ev_set_item_category(&set, 999), UINT32_MAX);
}
