/* Unit tests of evstore: real LMDB files in a fresh /tmp folder per test,
 * real fsyncs, real kill -9. */
#include <criterion/criterion.h>

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <lmdb.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "evstore.h"

static char root[] = "/tmp/recd-test-evstore-XXXXXX";

static void setup(void) {
    cr_assert_not_null(mkdtemp(root));
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void teardown(void) {
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(evstore, .init = setup, .fini = teardown);

/* The store folder of a test. */
static const char *store_dir(void) {
    static char buf[64];
    snprintf(buf, sizeof buf, "%s/events", root);
    return buf;
}

static evstore *open_store(const evstore_options *o) {
    evstore *s;
    err_t e = {0, ""};
    int rc = evstore_open(store_dir(), o, &s, &e);
    cr_assert_eq(rc, ERR_OK, "open: %s", e.msg);
    return s;
}

static evstore_event event(const char *user, const char *item, uint32_t type, int64_t ts) {
    return (evstore_event){user, strlen(user), item, strlen(item), type, ts, 1, 0};
}

static void append(evstore *s, const evstore_event *ev, size_t n, uint64_t *first) {
    err_t e = {0, ""};
    int rc = evstore_append(s, ev, n, first, &e);
    cr_assert_eq(rc, ERR_OK, "append: %s", e.msg);
}

/* A visitor that copies what it sees (ids as NUL-terminated copies; ids
 * with NUL bytes compare by the recorded length). */
#define MAX_SEEN 64
typedef struct seen {
    size_t n;
    uint64_t seq[MAX_SEEN];
    evstore_event ev[MAX_SEEN];
    char user[MAX_SEEN][EVSTORE_MAX_ID_LEN + 1], item[MAX_SEEN][EVSTORE_MAX_ID_LEN + 1];
    size_t stop_after; /* 0 = never stop */
} seen;

static int collect(void *ctx, uint64_t seq, const evstore_event *ev) {
    seen *c = ctx;
    cr_assert_lt(c->n, MAX_SEEN);
    c->seq[c->n] = seq;
    c->ev[c->n] = *ev;
    memcpy(c->user[c->n], ev->user_id, ev->user_len);
    memcpy(c->item[c->n], ev->item_id, ev->item_len);
    c->ev[c->n].user_id = c->user[c->n];
    c->ev[c->n].item_id = c->item[c->n];
    c->n++;
    return c->stop_after && c->n >= c->stop_after;
}

static void assert_same(const evstore_event *a, const evstore_event *b) {
    cr_assert_eq(a->user_len, b->user_len);
    cr_assert_eq(memcmp(a->user_id, b->user_id, a->user_len), 0);
    cr_assert_eq(a->item_len, b->item_len);
    cr_assert_eq(memcmp(a->item_id, b->item_id, a->item_len), 0);
    cr_assert_eq(a->type, b->type);
    cr_assert_eq(a->ts, b->ts);
    cr_assert_eq(a->quantity, b->quantity);
    cr_assert_eq(memcmp(&a->price, &b->price, sizeof a->price), 0);
}

Test(evstore, round_trip) {
    evstore *s = open_store(NULL);
    char long_id[EVSTORE_MAX_ID_LEN];
    memset(long_id, 'x', sizeof long_id);
    evstore_event ev[4] = {
        {"alice", 5, "apple", 5, EV_TYPE_VIEW, 1700000000, 0, 0},
        {"bob", 3, "pe,ar\"\n", 7, EV_TYPE_PURCHASE, INT64_MAX, UINT32_MAX, 1234.5678},
        {"a\0b", 3, "\xc3\xa9t\xc3\xa9", 5, EV_TYPE_FAVORITE, 0, 7, 1e-300},
        {long_id, sizeof long_id, long_id, sizeof long_id, EV_TYPE_ADD_TO_CART, 42, 3, 0.1},
    };
    uint64_t first, n, next;
    append(s, ev, 2, &first);
    cr_assert_eq(first, 1);
    append(s, ev + 2, 2, &first);
    cr_assert_eq(first, 3);
    cr_assert_eq(evstore_count(s, &n, &next, NULL), ERR_OK);
    cr_assert_eq(n, 4);
    cr_assert_eq(next, 5);

    seen c = {0};
    cr_assert_eq(evstore_scan(s, 0, collect, &c, NULL), ERR_OK);
    cr_assert_eq(c.n, 4);
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(c.seq[i], i + 1);
        assert_same(&c.ev[i], &ev[i]);
    }
    /* from_seq and stopping early */
    memset(&c, 0, sizeof c);
    c.stop_after = 1;
    cr_assert_eq(evstore_scan(s, 3, collect, &c, NULL), ERR_OK);
    cr_assert_eq(c.n, 1);
    cr_assert_eq(c.seq[0], 3);
    assert_same(&c.ev[0], &ev[2]);

    /* the same from the per-user index */
    for (size_t i = 0; i < 4; i++) {
        memset(&c, 0, sizeof c);
        cr_assert_eq(
            evstore_user_events(s, ev[i].user_id, ev[i].user_len, INT64_MIN, collect, &c, NULL),
            ERR_OK);
        cr_assert_eq(c.n, 1);
        cr_assert_eq(c.seq[0], i + 1);
        assert_same(&c.ev[0], &ev[i]);
    }
    evstore_close(s);

    /* and after reopening */
    s = open_store(NULL);
    memset(&c, 0, sizeof c);
    cr_assert_eq(evstore_scan(s, 0, collect, &c, NULL), ERR_OK);
    cr_assert_eq(c.n, 4);
    for (size_t i = 0; i < 4; i++)
        assert_same(&c.ev[i], &ev[i]);
    evstore_close(s);
}

Test(evstore, invalid_events_store_nothing) {
    evstore *s = open_store(NULL);
    char long_id[EVSTORE_MAX_ID_LEN + 1];
    memset(long_id, 'x', sizeof long_id);
    evstore_event good = event("u", "i", EV_TYPE_VIEW, 1), bad[8];
    for (int i = 0; i < 8; i++)
        bad[i] = good;
    bad[0].user_len = 0;
    bad[1].item_id = long_id;
    bad[1].item_len = sizeof long_id;
    bad[2].user_id = "\xff";
    bad[2].user_len = 1;
    bad[3].type = 0;
    bad[4].type = 5;
    bad[5].ts = -1;
    bad[6].price = NAN;
    bad[7].price = -1;
    for (int i = 0; i < 8; i++) {
        evstore_event two[2] = {good, bad[i]};
        err_t e = {0, ""};
        uint64_t first = 99;
        cr_assert_eq(evstore_append(s, two, 2, &first, &e), ERR_INVALID, "case %d", i);
        cr_assert_not_null(strstr(e.msg, "event 1"), "%s", e.msg);
        cr_assert_eq(first, 0);
    }
    uint64_t n, first = 99;
    cr_assert_eq(evstore_append(s, NULL, 0, &first, NULL), ERR_OK);
    cr_assert_eq(first, 0);
    cr_assert_eq(evstore_count(s, &n, NULL, NULL), ERR_OK);
    cr_assert_eq(n, 0);
    cr_assert_eq(evstore_user_events(s, "", 0, 0, collect, NULL, NULL), ERR_INVALID);
    evstore_close(s);
}

Test(evstore, user_range_since_and_order) {
    evstore *s = open_store(NULL);
    /* Users whose keys would interleave with a 0x00 terminator ("a" and
     * "a\0b") or share a prefix ("a" and "ab"); events out of ts order. */
    evstore_event ev[] = {
        {"a", 1, "i1", 2, EV_TYPE_VIEW, 300, 1, 0},
        {"ab", 2, "i2", 2, EV_TYPE_VIEW, 100, 1, 0},
        {"a\0b", 3, "i3", 2, EV_TYPE_VIEW, 100, 1, 0},
        {"a", 1, "i4", 2, EV_TYPE_PURCHASE, 100, 1, 0},
        {"b", 1, "i5", 2, EV_TYPE_VIEW, 500, 1, 0},
        {"a", 1, "i6", 2, EV_TYPE_FAVORITE, 200, 1, 0},
        {"a", 1, "i7", 2, EV_TYPE_ADD_TO_CART, 400, 1, 0},
    };
    size_t n = sizeof ev / sizeof ev[0];
    for (size_t i = 0; i < n; i++)
        append(s, &ev[i], 1, NULL);
    seen c = {0};
    cr_assert_eq(evstore_user_events(s, "a", 1, INT64_MIN, collect, &c, NULL), ERR_OK);
    cr_assert_eq(c.n, 4);
    const char *want[] = {"i1", "i4", "i6", "i7"};
    uint64_t want_seq[] = {1, 4, 6, 7};
    for (size_t i = 0; i < 4; i++) {
        cr_assert_str_eq(c.item[i], want[i]);
        cr_assert_eq(c.seq[i], want_seq[i]);
    }
    memset(&c, 0, sizeof c);
    cr_assert_eq(evstore_user_events(s, "a", 1, 200, collect, &c, NULL), ERR_OK);
    cr_assert_eq(c.n, 2);
    cr_assert_str_eq(c.item[0], "i1");
    cr_assert_str_eq(c.item[1], "i7");
    memset(&c, 0, sizeof c);
    cr_assert_eq(evstore_user_events(s, "a\0b", 3, 0, collect, &c, NULL), ERR_OK);
    cr_assert_eq(c.n, 1);
    cr_assert_str_eq(c.item[0], "i3");
    memset(&c, 0, sizeof c);
    cr_assert_eq(evstore_user_events(s, "nobody", 6, 0, collect, &c, NULL), ERR_OK);
    cr_assert_eq(c.n, 0);
    memset(&c, 0, sizeof c);
    cr_assert_eq(evstore_user_events(s, "b", 1, 500, collect, &c, NULL), ERR_OK);
    cr_assert_eq(c.n, 0);
    evstore_close(s);
}

/* --- concurrency ---------------------------------------------------------- */

#define CT_THREADS 8
#define CT_CALLS 150
#define CT_MAX_BATCH 5

typedef struct ct_arg {
    evstore *s;
    int thread;
    uint64_t first[CT_CALLS];
    size_t n[CT_CALLS];
} ct_arg;

Test(evstore, user_recent_reads_newest_first_and_at_most_max) {
    evstore *s = open_store(NULL);
    /* Keys sort by id length, then id: "a" < "b" < "ab", so the scan of "a"
     * starts at a key of "b", and that of "ab", the last, at the end. */
    char items[40][8];
    for (int i = 0; i < 40; i++) {
        snprintf(items[i], sizeof items[i], "i%d", i);
        evstore_event ev = event("a", items[i], EV_TYPE_VIEW, 100 + i);
        append(s, &ev, 1, NULL);
        evstore_event other = event(i % 2 ? "ab" : "b", "x", EV_TYPE_VIEW, 100);
        append(s, &other, 1, NULL);
    }
    seen c = {0};
    int truncated = 0;
    cr_assert_eq(evstore_user_recent(s, "a", 1, INT64_MIN, 10, collect, &c, &truncated, NULL),
                 ERR_OK);
    cr_assert_eq(c.n, 10, "at most max_read");
    cr_assert(truncated);
    for (size_t i = 0; i < 10; i++)
        cr_assert_str_eq(c.item[i], items[39 - i], "newest first");
    memset(&c, 0, sizeof c);
    cr_assert_eq(evstore_user_recent(s, "a", 1, 134, 10, collect, &c, &truncated, NULL), ERR_OK);
    cr_assert_eq(c.n, 5, "read 10, of which 5 are after since_ts");
    memset(&c, 0, sizeof c);
    cr_assert_eq(evstore_user_recent(s, "a", 1, INT64_MIN, 40, collect, &c, &truncated, NULL),
                 ERR_OK);
    cr_assert_eq(c.n, 40);
    cr_assert(!truncated, "all of them read");
    memset(&c, 0, sizeof c);
    cr_assert_eq(evstore_user_recent(s, "ab", 2, INT64_MIN, 100, collect, &c, NULL, NULL), ERR_OK);
    cr_assert_eq(c.n, 20);
    cr_assert_str_eq(c.user[0], "ab");
    memset(&c, 0, sizeof c);
    cr_assert_eq(evstore_user_recent(s, "zzz", 3, INT64_MIN, 100, collect, &c, NULL, NULL), ERR_OK);
    cr_assert_eq(c.n, 0, "after the last user");
    cr_assert_eq(evstore_user_recent(s, "0", 1, INT64_MIN, 100, collect, &c, NULL, NULL), ERR_OK);
    cr_assert_eq(c.n, 0, "before the first user");
    evstore_close(s);
}

/* Thread t's event j has item "t<t>-<j>" and quantity t * 100000 + j. */
static void *ct_main(void *p) {
    ct_arg *a = p;
    unsigned seed = (unsigned)a->thread;
    char items[CT_MAX_BATCH][32], user[16];
    snprintf(user, sizeof user, "user%d", a->thread % 3);
    uint32_t j = 0;
    for (int call = 0; call < CT_CALLS; call++) {
        evstore_event ev[CT_MAX_BATCH];
        size_t n = 1 + (size_t)rand_r(&seed) % CT_MAX_BATCH;
        for (size_t k = 0; k < n; k++, j++) {
            int len = snprintf(items[k], sizeof items[k], "t%d-%u", a->thread, j);
            ev[k] = (evstore_event){user,
                                    strlen(user),
                                    items[k],
                                    (size_t)len,
                                    EV_TYPE_VIEW,
                                    j,
                                    (uint32_t)a->thread * 100000 + j,
                                    0};
        }
        a->n[call] = n;
        if (evstore_append(a->s, ev, n, &a->first[call], NULL)) return "append failed";
    }
    return NULL;
}

typedef struct ct_check {
    uint8_t *hits; /* per seq */
    uint64_t max_seq;
    size_t events;
} ct_check;

static int ct_visit(void *ctx, uint64_t seq, const evstore_event *ev) {
    ct_check *c = ctx;
    cr_assert_leq(seq, c->max_seq);
    cr_assert_eq(c->hits[seq]++, 0, "seq %" PRIu64 " seen twice", seq);
    int t = (int)(ev->quantity / 100000);
    uint32_t j = ev->quantity % 100000;
    char want[32];
    int len = snprintf(want, sizeof want, "t%d-%u", t, j);
    cr_assert_eq(ev->item_len, (size_t)len);
    cr_assert_eq(memcmp(ev->item_id, want, (size_t)len), 0);
    c->events++;
    return 0;
}

Test(evstore, concurrent_appenders) {
    evstore *s = open_store(NULL);
    static ct_arg args[CT_THREADS];
    pthread_t tid[CT_THREADS];
    for (int t = 0; t < CT_THREADS; t++) {
        args[t] = (ct_arg){.s = s, .thread = t};
        cr_assert_eq(pthread_create(&tid[t], NULL, ct_main, &args[t]), 0);
    }
    size_t total = 0;
    for (int t = 0; t < CT_THREADS; t++) {
        void *res;
        pthread_join(tid[t], &res);
        cr_assert_null(res, "thread %d: %s", t, (const char *)res);
        for (int k = 0; k < CT_CALLS; k++)
            total += args[t].n[k];
    }
    uint64_t n, next;
    cr_assert_eq(evstore_count(s, &n, &next, NULL), ERR_OK);
    cr_assert_eq(n, total);
    cr_assert_eq(next, total + 1);
    /* Every call's range is its own and holds its own events. */
    ct_check c = {calloc(total + 1, 1), total, 0};
    cr_assert_eq(evstore_scan(s, 0, ct_visit, &c, NULL), ERR_OK);
    cr_assert_eq(c.events, total);
    for (int t = 0; t < CT_THREADS; t++)
        for (int k = 0; k < CT_CALLS; k++)
            for (size_t i = 0; i < args[t].n[k]; i++)
                cr_assert_eq(c.hits[args[t].first[k] + i], 1);
    free(c.hits);
    /* Group commit: fewer commits than calls, since 8 threads queue while a
     * commit is being fsynced. */
    uint64_t commits = evstore_commits(s);
    cr_assert_gt(commits, 0);
    cr_assert_lt(commits, CT_THREADS * CT_CALLS);
    evstore_close(s);
}

/* --- durability ----------------------------------------------------------- */

/* What the child reports after each acknowledged append (one write(2) of
 * less than PIPE_BUF bytes, so the two threads' records never interleave). */
typedef struct ack {
    uint64_t first_seq;
    uint32_t n, thread, counter;
} ack;

#define DUR_ROUNDS 4

static void dur_item(char *buf, size_t size, int round, uint32_t thread, uint32_t counter) {
    snprintf(buf, size, "r%d-t%u-c%u", round, thread, counter);
}

typedef struct dur_arg {
    evstore *s;
    int fd, round;
    uint32_t thread;
} dur_arg;

static void *dur_child_thread(void *p) {
    dur_arg *a = p;
    char items[8][48];
    uint32_t counter = 0;
    for (unsigned seed = a->thread;;) {
        uint32_t n = 1 + (uint32_t)rand_r(&seed) % 8;
        evstore_event ev[8];
        for (uint32_t k = 0; k < n; k++) {
            dur_item(items[k], sizeof items[k], a->round, a->thread, counter + k);
            ev[k] = event("durable", items[k], EV_TYPE_PURCHASE, counter + k);
        }
        ack r;
        memset(&r, 0, sizeof r); /* padding too: it goes through write(2) */
        r.n = n;
        r.thread = a->thread;
        r.counter = counter;
        if (evstore_append(a->s, ev, n, &r.first_seq, NULL)) _exit(3);
        if (write(a->fd, &r, sizeof r) != (ssize_t)sizeof r) _exit(4);
        counter += n;
    }
    return NULL;
}

/* The child: opens the store and appends from two threads until killed. */
static void dur_child(int fd, int round, pid_t parent) {
    /* Never outlive a test that failed before its kill. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != parent) _exit(6);
    evstore *s;
    if (evstore_open(store_dir(), NULL, &s, NULL)) _exit(2);
    dur_arg a[2] = {{s, fd, round, 0}, {s, fd, round, 1}};
    pthread_t t;
    if (pthread_create(&t, NULL, dur_child_thread, &a[1])) _exit(5);
    dur_child_thread(&a[0]);
}

typedef struct dur_find {
    uint64_t seq;
    char item[48];
    int found;
} dur_find;

static int dur_visit(void *ctx, uint64_t seq, const evstore_event *ev) {
    dur_find *f = ctx;
    f->found = seq == f->seq && ev->item_len == strlen(f->item) &&
               memcmp(ev->item_id, f->item, ev->item_len) == 0;
    return 1;
}

Test(evstore, acknowledged_events_survive_kill_9) {
    uint64_t last_max = 0;
    srand((unsigned)getpid());
    for (int round = 0; round < DUR_ROUNDS; round++) {
        int fds[2];
        cr_assert_eq(pipe(fds), 0);
        pid_t parent = getpid(), pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            close(fds[0]);
            dur_child(fds[1], round, parent);
        }
        close(fds[1]);
        /* Kill after a random number of acknowledgements, then a random
         * moment later, so that the kill lands inside commits too. */
        int want = 5 + rand() % 60;
        static ack acks[4096];
        int n_acks = 0;
        while (n_acks < want) {
            ssize_t r = read(fds[0], &acks[n_acks], sizeof acks[0]);
            cr_assert_eq(r, (ssize_t)sizeof acks[0], "child died early");
            n_acks++;
        }
        usleep((useconds_t)(rand() % 3000));
        kill(pid, SIGKILL);
        /* Acknowledgements written before the kill are acknowledged too. */
        ssize_t r;
        while (n_acks < 4096 && (r = read(fds[0], &acks[n_acks], sizeof acks[0])) > 0) {
            cr_assert_eq(r, (ssize_t)sizeof acks[0]);
            n_acks++;
        }
        close(fds[0]);
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %d", status);

        evstore *s = open_store(NULL);
        uint64_t max_seq = 0;
        for (int i = 0; i < n_acks; i++) {
            cr_assert_gt(acks[i].first_seq, last_max, "sequence numbers went back after reopen");
            for (uint32_t k = 0; k < acks[i].n; k++) {
                dur_find f = {.seq = acks[i].first_seq + k};
                dur_item(f.item, sizeof f.item, round, acks[i].thread, acks[i].counter + k);
                cr_assert_eq(evstore_scan(s, f.seq, dur_visit, &f, NULL), ERR_OK);
                cr_assert(f.found, "round %d: acknowledged seq %" PRIu64 " (%s) lost", round, f.seq,
                          f.item);
                if (f.seq > max_seq) max_seq = f.seq;
            }
        }
        /* The sequence continues after whatever the child committed. */
        uint64_t n, next, first;
        cr_assert_eq(evstore_count(s, &n, &next, NULL), ERR_OK);
        cr_assert_gt(next, max_seq);
        cr_assert_eq(n, next - 1); /* no holes: nothing half-committed */
        evstore_event ev = event("parent", "check", EV_TYPE_VIEW, 1);
        append(s, &ev, 1, &first);
        cr_assert_eq(first, next);
        last_max = first;
        evstore_close(s);
    }
}

/* --- map growth ----------------------------------------------------------- */

typedef struct grow_reader {
    evstore *s;
    volatile int stop;
    uint64_t reads;
} grow_reader;

static int count_visit(void *ctx, uint64_t seq, const evstore_event *ev) {
    (void)seq;
    (void)ev;
    (*(size_t *)ctx)++;
    return 0;
}

/* Reads while the writer grows the map: every read must succeed and see a
 * consistent prefix. */
static void *grow_reader_main(void *p) {
    grow_reader *g = p;
    while (!g->stop) {
        size_t n = 0;
        if (evstore_user_events(g->s, "grower", 6, INT64_MIN, count_visit, &n, NULL))
            return "read failed";
        g->reads++;
    }
    return NULL;
}

static size_t file_size(const char *name) {
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", store_dir(), name);
    cr_assert_eq(stat(path, &st), 0);
    return (size_t)st.st_size;
}

Test(evstore, map_grows) {
    evstore_options o;
    evstore_options_init(&o);
    o.map_size = 64 << 10;
    evstore *s = open_store(&o);
    grow_reader g = {s, 0, 0};
    pthread_t tid;
    cr_assert_eq(pthread_create(&tid, NULL, grow_reader_main, &g), 0);
    char item[200];
    memset(item, 'i', sizeof item);
    evstore_event ev[50];
    for (int k = 0; k < 50; k++)
        ev[k] = (evstore_event){"grower", 6, item, sizeof item, EV_TYPE_VIEW, k, 1, 0};
    for (int b = 0; b < 60; b++)
        append(s, ev, 50, NULL); /* 3000 events, about 1.5 MB with both copies */
    g.stop = 1;
    void *res;
    pthread_join(tid, &res);
    cr_assert_null(res, "%s", (const char *)res);
    cr_assert_gt(g.reads, 0);
    uint64_t n;
    cr_assert_eq(evstore_count(s, &n, NULL, NULL), ERR_OK);
    cr_assert_eq(n, 3000);
    evstore_close(s);
    cr_assert_gt(file_size("data.mdb"), (size_t)1 << 20);

    /* Reopening with the same small map takes the data's size and grows
     * again from there. */
    s = open_store(&o);
    for (int b = 0; b < 20; b++)
        append(s, ev, 50, NULL);
    size_t seen = 0;
    cr_assert_eq(evstore_scan(s, 0, count_visit, &seen, NULL), ERR_OK);
    cr_assert_eq(seen, 4000);
    evstore_close(s);
}

/* Another process grows the map while this one has the store open: the next
 * transaction here meets MDB_MAP_RESIZED and must adopt the new size. */
Test(evstore, map_grown_by_another_process) {
    int go[2], done[2];
    cr_assert_eq(pipe(go), 0);
    cr_assert_eq(pipe(done), 0);
    char item[200];
    memset(item, 'j', sizeof item);
    evstore_event ev[50];
    for (int k = 0; k < 50; k++)
        ev[k] = (evstore_event){"other", 5, item, sizeof item, EV_TYPE_VIEW, k, 1, 0};
    evstore_options o;
    evstore_options_init(&o);
    o.map_size = 64 << 10;
    pid_t pid = fork(); /* before this process opens anything */
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        char c;
        evstore *s;
        if (read(go[0], &c, 1) != 1 || evstore_open(store_dir(), &o, &s, NULL)) _exit(2);
        for (int b = 0; b < 40; b++)
            if (evstore_append(s, ev, 50, NULL, NULL)) _exit(3);
        evstore_close(s);
        _exit(write(done[1], "x", 1) == 1 ? 0 : 4);
    }
    evstore *s = open_store(&o);
    append(s, ev, 1, NULL);
    char c;
    cr_assert_eq(write(go[1], "x", 1), 1);
    cr_assert_eq(read(done[0], &c, 1), 1);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    size_t seen = 0;
    cr_assert_eq(evstore_user_events(s, "other", 5, INT64_MIN, count_visit, &seen, NULL), ERR_OK);
    cr_assert_eq(seen, 2001);
    uint64_t first;
    append(s, ev, 50, &first);
    cr_assert_eq(first, 2002);
    evstore_close(s);
    for (int i = 0; i < 2; i++) {
        close(go[i]);
        close(done[i]);
    }
}

/* --- forget, load, format ------------------------------------------------- */

Test(evstore, forget_user) {
    evstore *s = open_store(NULL);
    evstore_event ev[] = {event("a", "1", EV_TYPE_VIEW, 1), event("b", "2", EV_TYPE_VIEW, 2),
                          event("a", "3", EV_TYPE_VIEW, 3), event("ab", "4", EV_TYPE_VIEW, 4),
                          event("a", "5", EV_TYPE_VIEW, 5)};
    append(s, ev, 5, NULL);
    uint64_t deleted, n, next;
    cr_assert_eq(evstore_forget_user(s, "a", 1, &deleted, NULL), ERR_OK);
    cr_assert_eq(deleted, 3);
    cr_assert_eq(evstore_forget_user(s, "a", 1, &deleted, NULL), ERR_OK);
    cr_assert_eq(deleted, 0);
    cr_assert_eq(evstore_count(s, &n, &next, NULL), ERR_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(next, 6); /* sequence numbers are not reused */
    seen c = {0};
    cr_assert_eq(evstore_scan(s, 0, collect, &c, NULL), ERR_OK);
    cr_assert_eq(c.n, 2);
    cr_assert_str_eq(c.item[0], "2");
    cr_assert_str_eq(c.item[1], "4");
    memset(&c, 0, sizeof c);
    cr_assert_eq(evstore_user_events(s, "a", 1, INT64_MIN, collect, &c, NULL), ERR_OK);
    cr_assert_eq(c.n, 0);
    memset(&c, 0, sizeof c);
    cr_assert_eq(evstore_user_events(s, "ab", 2, INT64_MIN, collect, &c, NULL), ERR_OK);
    cr_assert_eq(c.n, 1);
    evstore_close(s);
}

/* An event dated far ahead (a recording server's clock ran ahead) would
 * become the model's data_until: the load leaves it out and counts it. */
Test(evstore, load_skips_events_dated_more_than_a_day_ahead) {
    evstore *s = open_store(NULL);
    int64_t now = (int64_t)time(NULL);
    evstore_event ev[] = {event("u1", "i1", EV_TYPE_PURCHASE, now),
                          event("u1", "i2", EV_TYPE_PURCHASE, now + 3600),
                          event("u2", "i1", EV_TYPE_PURCHASE, 4102444800), /* 2100 */
                          event("u2", "i3", EV_TYPE_VIEW, now + 2 * EVSTORE_MAX_AHEAD_S)};
    append(s, ev, 4, NULL);
    float w[EV_TYPE_END] = {0, 0.1f, 0.3f, 1.0f, 0};
    ev_set set;
    cr_assert_eq(ev_set_init(&set, NULL), ERR_OK);
    size_t added, future;
    cr_assert_eq(evstore_load(s, w, &set, &added, &future, NULL), ERR_OK);
    cr_assert_eq(added, 2);
    cr_assert_eq(future, 2);
    for (size_t i = 0; i < set.n; i++)
        cr_assert(set.events[i].ts <= now + 3600);
    ev_set_free(&set);
    evstore_close(s);
}

Test(evstore, load_with_weights) {
    evstore *s = open_store(NULL);
    evstore_event ev[] = {
        event("u1", "i1", EV_TYPE_VIEW, 10), event("u1", "i2", EV_TYPE_ADD_TO_CART, 20),
        event("u2", "i1", EV_TYPE_PURCHASE, 30), event("u2", "i3", EV_TYPE_FAVORITE, 40)};
    ev[2].price = 2.5;
    ev[1].quantity = 3;
    append(s, ev, 4, NULL);
    float w[EV_TYPE_END] = {0, 0.1f, 0.3f, 1.0f, 0};
    ev_set set;
    cr_assert_eq(ev_set_init(&set, NULL), ERR_OK);
    size_t added;
    cr_assert_eq(evstore_load(s, w, &set, &added, NULL, NULL), ERR_OK);
    cr_assert_eq(added, 3);
    cr_assert_eq(set.n, 3);
    float want_w[] = {0.1f, 0.3f, 1.0f};
    uint8_t want_type[] = {EV_TYPE_VIEW, EV_TYPE_ADD_TO_CART, EV_TYPE_PURCHASE};
    int64_t want_ts[] = {10, 20, 30};
    const char *want_user[] = {"u1", "u1", "u2"}, *want_item[] = {"i1", "i2", "i1"};
    for (size_t i = 0; i < 3; i++) {
        size_t len;
        const char *id = idmap_key(set.users, set.events[i].user, &len);
        cr_assert(len == 2 && memcmp(id, want_user[i], 2) == 0);
        id = idmap_key(set.items, set.events[i].item, &len);
        cr_assert(len == 2 && memcmp(id, want_item[i], 2) == 0);
        cr_assert_eq(set.events[i].weight, want_w[i]);
        cr_assert_eq(set.events[i].type, want_type[i]);
        cr_assert_eq(set.events[i].recorded, 1);
        cr_assert_eq(set.events[i].quantity, (float)ev[i].quantity);
        cr_assert_eq(set.events[i].ts, want_ts[i]);
    }
    cr_assert(isnan(set.events[0].price));
    cr_assert_eq(set.events[2].price, 2.5f);
    cr_assert_eq(idmap_size(set.items), 2); /* i3 (favorite, weight 0) never seen */
    w[EV_TYPE_FAVORITE] = -1;
    cr_assert_eq(evstore_load(s, w, &set, NULL, NULL, NULL), ERR_INVALID);
    ev_set_free(&set);
    evstore_close(s);
}

Test(evstore, refuses_other_files) {
    /* A plain LMDB environment with other keys, like a model version. */
    cr_assert_eq(mkdir(store_dir(), 0755), 0);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    cr_assert_eq(mdb_env_create(&env), 0);
    cr_assert_eq(mdb_env_open(env, store_dir(), 0, 0644), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
    MDB_val k = {7, "factors"}, v = {4, "abcd"};
    cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    evstore *s;
    err_t e = {0, ""};
    cr_assert_eq(evstore_open(store_dir(), NULL, &s, &e), ERR_FORMAT, "%s", e.msg);

    /* Not LMDB at all. */
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/data.mdb", store_dir());
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 4096; i++)
        fputc('z', f);
    fclose(f);
    cr_assert_eq(evstore_open(store_dir(), NULL, &s, &e), ERR_FORMAT, "%s", e.msg);
}

/* The event bus's replay: a position is recorded with the data, survives a
 * reopen, and a position at or before it writes nothing (appends and
 * forgets alike), so a replica replaying the stream applies each once. */
Test(evstore, append_at_applies_each_position_once) {
    evstore *s = open_store(NULL);
    evstore_event ev[2] = {event("u1", "a", EV_TYPE_VIEW, 10), event("u2", "b", EV_TYPE_VIEW, 11)};
    uint64_t at, n;
    int applied;
    cr_assert_eq(evstore_applied(s, &at, NULL), ERR_OK);
    cr_assert_eq(at, 0);
    cr_assert_eq(evstore_append_at(s, ev, 2, 7, &applied, NULL), ERR_OK);
    cr_assert_eq(applied, 1);
    cr_assert_eq(evstore_append_at(s, ev, 2, 7, &applied, NULL), ERR_OK);
    cr_assert_eq(applied, 0);
    cr_assert_eq(evstore_append_at(s, ev, 1, 3, &applied, NULL), ERR_OK);
    cr_assert_eq(applied, 0);
    cr_assert_eq(evstore_count(s, &n, NULL, NULL), ERR_OK);
    cr_assert_eq(n, 2);
    uint64_t deleted;
    cr_assert_eq(evstore_forget_user_at(s, "u1", 2, 5, &deleted, NULL), ERR_OK);
    cr_assert_eq(deleted, 0, "position 5 is before 7: nothing deleted");
    evstore_close(s);
    s = open_store(NULL);
    cr_assert_eq(evstore_applied(s, &at, NULL), ERR_OK);
    cr_assert_eq(at, 7);
    cr_assert_eq(evstore_forget_user_at(s, "u1", 2, 8, &deleted, NULL), ERR_OK);
    cr_assert_eq(deleted, 1);
    cr_assert_eq(evstore_applied(s, &at, NULL), ERR_OK);
    cr_assert_eq(at, 8);
    cr_assert_eq(evstore_count(s, &n, NULL, NULL), ERR_OK);
    cr_assert_eq(n, 1);
    evstore_close(s);
}
