#include "bus.h"

#include <nats/nats.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define BUS_MAX_URLS 16
#define BUS_FETCH 256          /* messages one fetch takes */
#define BUS_FETCH_MS 500       /* how long a fetch waits for a message */
#define BUS_MONITOR_MS 200     /* how often the lag is measured */
#define BUS_PUBLISH_MS 5000    /* how long a write waits for JetStream's ack */
#define BUS_DUPLICATES_S 120   /* the stream's de-duplication window */
#define BUS_MAX_MSG (1u << 20) /* JetStream's default max payload */
#define BUS_READ_WAIT_MS 5000  /* bus_read: how long one fetch may wait */
#define BUS_READ_IDLE_S 60     /* bus_read: the server drops a dead reader's consumer */
#define BUS_KV_RETRY_MS 1000   /* a version not taken yet is offered again after this */
#define BUS_KV_WAIT_MS 5000    /* how long the watcher waits for an announcement at once */
#define BUS_KEY_ANNOUNCED "current"
#define BUS_KEY_SERVED "served."

struct bus {
    natsConnection *nc;
    jsCtx *js;
    char *stream, *subject, *durable, *replica;
    bus_apply_fn apply;
    bus_announced_fn announced;
    void *ctx;

    pthread_mutex_t kv_lock; /* guards kv's binding */
    kvStore *kv;             /* the models bucket, once bound */

    pthread_mutex_t lock; /* guards what follows */
    pthread_cond_t applied_cond;
    uint64_t applied, last, skipped;
    int64_t oldest_unapplied_ns; /* publication time of applied + 1, when last > applied */
    int64_t seen_ns;             /* when the monitor last read the stream's state */
    bool stopping;
    kvWatcher *watcher; /* the announcements' watcher, stopped by bus_close */

    pthread_t applier, monitor, follower;
    bool applier_running, monitor_running, follower_running;
};

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static bool bus_stopping(bus *b) {
    pthread_mutex_lock(&b->lock);
    bool s = b->stopping;
    pthread_mutex_unlock(&b->lock);
    return s;
}

/* Waits ms, or less when the bus stops. */
static void bus_pause(bus *b, int ms) {
    struct timespec until = clock_deadline(ms / 1000.0);
    pthread_mutex_lock(&b->lock);
    int rc = 0;
    while (!b->stopping && rc == 0)
        rc = pthread_cond_timedwait(&b->applied_cond, &b->lock, &until);
    pthread_mutex_unlock(&b->lock);
}

/* The NATS client's last error as text, for messages. */
static const char *bus_why(natsStatus s) {
    const char *t = nats_GetLastError(NULL);
    return t && t[0] ? t : natsStatus_GetText(s);
}

/* The options of b's pull consumer (b->durable on b->stream), each message
 * acknowledged by hand. */
static void bus_consumer(bus *b, jsSubOptions *so) {
    jsSubOptions_Init(so);
    so->Stream = b->stream;
    so->ManualAck = true;
    so->Config.Durable = b->durable;
    so->Config.AckPolicy = js_AckExplicit;
}

/* (Re)creates the durable consumer to deliver from sequence `from` (0 =
 * everything) and subscribes to it. The consumer is deleted first because a
 * durable consumer's start cannot be changed, and the local stores may be
 * behind what NATS remembers (restored from a backup) or ahead of it. */
static natsStatus bus_subscribe(bus *b, uint64_t from, natsSubscription **sub) {
    jsErrCode jerr = 0;
    js_DeleteConsumer(b->js, b->stream, b->durable, NULL, &jerr);
    jsSubOptions so;
    bus_consumer(b, &so);
    so.Config.DeliverPolicy = from ? js_DeliverByStartSequence : js_DeliverAll;
    so.Config.OptStartSeq = from;
    so.Config.AckWait = (int64_t)30 * 1000000000;
    so.Config.MaxAckPending = 4 * BUS_FETCH;
    return js_PullSubscribe(sub, b->js, b->subject, b->durable, NULL, &so, &jerr);
}

/* Applies one message, retrying a failure that may pass (a full disk, ...)
 * until it succeeds or the bus stops. */
static void bus_apply_one(bus *b, natsMsg *m) {
    jsMsgMetaData *meta = NULL;
    if (natsMsg_GetMetaData(&meta, m) != NATS_OK) {
        log_error("msg=\"bus message without metadata skipped\"");
        return;
    }
    uint64_t seq = meta->Sequence.Stream;
    for (int tries = 0;; tries++) {
        err_t e = {0, ""};
        int rc = b->apply(b->ctx, seq, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &e);
        if (rc == ERR_INVALID || rc == ERR_FORMAT) {
            log_error("msg=\"bus message cannot be applied, skipped\" seq=%llu error=\"%s\"",
                      (unsigned long long)seq, e.msg);
            pthread_mutex_lock(&b->lock);
            b->skipped++;
            pthread_mutex_unlock(&b->lock);
            break;
        }
        if (!rc) break;
        if (!tries)
            log_error("msg=\"bus message not applied, retrying\" seq=%llu error=\"%s\"",
                      (unsigned long long)seq, e.msg);
        if (bus_stopping(b)) {
            jsMsgMetaData_Destroy(meta);
            return;
        }
        sleep_ms(500);
    }
    pthread_mutex_lock(&b->lock);
    if (seq > b->applied) b->applied = seq;
    if (meta->NumPending == 0 && b->last < b->applied) b->last = b->applied;
    pthread_cond_broadcast(&b->applied_cond);
    pthread_mutex_unlock(&b->lock);
    jsMsgMetaData_Destroy(meta);
    natsMsg_Ack(m, NULL);
}

/* The applier thread: fetches the stream in order and applies it. */
static void *bus_applier_main(void *arg) {
    bus *b = arg;
    natsSubscription *sub = NULL;
    while (!bus_stopping(b)) {
        if (!sub) {
            natsStatus s = bus_subscribe(b, bus_applied(b), &sub);
            if (s != NATS_OK) {
                sub = NULL;
                sleep_ms(BUS_FETCH_MS);
                continue;
            }
        }
        natsMsgList list = {0};
        natsStatus s = natsSubscription_Fetch(&list, sub, BUS_FETCH, BUS_FETCH_MS, NULL);
        for (int i = 0; i < list.Count; i++)
            bus_apply_one(b, list.Msgs[i]);
        natsMsgList_Destroy(&list);
        if (s == NATS_OK || s == NATS_TIMEOUT) continue;
        /* While NATS is away the subscription waits for the reconnection;
         * connected and failing, the consumer is gone (NATS lost its
         * state): subscribe again from what was applied. */
        if (natsConnection_Status(b->nc) == NATS_CONN_STATUS_CONNECTED) {
            log_warn("msg=\"bus subscription failed, subscribing again\" error=\"%s\"", bus_why(s));
            natsSubscription_Destroy(sub);
            sub = NULL;
        }
        sleep_ms(BUS_FETCH_MS);
    }
    natsSubscription_Destroy(sub);
    return NULL;
}

/* The lag monitor: every BUS_MONITOR_MS, the stream's last sequence and,
 * when this replica is behind, the publication time of the first message
 * it has not applied. seen_ns moves only when it could read them: cut off
 * from NATS (or its answers timing out), the replica cannot know what the
 * others wrote meanwhile, and bus_lag_seconds counts that time as lag. */
static void *bus_monitor_main(void *arg) {
    bus *b = arg;
    while (!bus_stopping(b)) {
        jsStreamInfo *si = NULL;
        jsErrCode jerr = 0;
        int64_t asked = now_ns();
        if (natsConnection_Status(b->nc) == NATS_CONN_STATUS_CONNECTED &&
            js_GetStreamInfo(&si, b->js, b->stream, NULL, &jerr) == NATS_OK) {
            uint64_t last = si->State.LastSeq, next = bus_applied(b) + 1;
            jsStreamInfo_Destroy(si);
            int64_t oldest = 0;
            natsMsg *m = NULL;
            if (next <= last && js_GetMsg(&m, b->js, b->stream, next, NULL, &jerr) == NATS_OK) {
                oldest = natsMsg_GetTime(m);
                natsMsg_Destroy(m);
            }
            pthread_mutex_lock(&b->lock);
            if (last > b->last) b->last = last;
            b->oldest_unapplied_ns = oldest;
            /* The state is the stream's as of the question, not the answer. */
            b->seen_ns = asked;
            pthread_mutex_unlock(&b->lock);
        }
        sleep_ms(BUS_MONITOR_MS);
    }
    return NULL;
}

/* Splits the comma-separated urls into servers (up to BUS_MAX_URLS); the
 * copies are in buf. Returns the count, 0 when there is none or too many. */
static int bus_split(const char *urls, char *buf, const char **servers) {
    strcpy(buf, urls);
    int n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n == BUS_MAX_URLS) return 0;
        servers[n++] = t;
    }
    return n;
}

static bool bus_name_ok(const char *s) {
    if (!s || !s[0] || strlen(s) > 64) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_'))
            return false;
    return true;
}

/* How many copies of the stream and the bucket NATS keeps: as many as the
 * cluster has nodes, up to 3. */
static int bus_replicas(bus *b) {
    char **known = NULL;
    int n_known = 0;
    if (natsConnection_GetServers(b->nc, &known, &n_known) == NATS_OK) {
        for (int i = 0; i < n_known; i++)
            free(known[i]);
        free(known);
    }
    return n_known >= 3 ? 3 : 1;
}

/* Creates the stream when it is missing. */
static int bus_stream(bus *b, err_t *e) {
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    if (js_GetStreamInfo(&si, b->js, b->stream, NULL, &jerr) == NATS_OK) {
        jsStreamInfo_Destroy(si);
        return ERR_OK;
    }
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char *subjects[1] = {b->subject};
    sc.Name = b->stream;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Replicas = bus_replicas(b);
    sc.Duplicates = (int64_t)BUS_DUPLICATES_S * 1000000000;
    natsStatus s = js_AddStream(&si, b->js, &sc, NULL, &jerr);
    if (s != NATS_OK)
        return err_set(e, ERR_IO, "bus: cannot create the stream %s (replicas %lld): %s (%d)",
                       b->stream, (long long)sc.Replicas, bus_why(s), (int)jerr);
    jsStreamInfo_Destroy(si);
    log_info("msg=\"bus stream created\" stream=%s replicas=%lld", b->stream,
             (long long)sc.Replicas);
    return ERR_OK;
}

/* Binds the models bucket into *kv (b's), creating it when create is set
 * and it is missing. */
static int bus_bucket(bus *b, bool create, kvStore **kv, err_t *e) {
    char name[80];
    snprintf(name, sizeof name, "%s-models", b->stream);
    pthread_mutex_lock(&b->kv_lock);
    natsStatus s = NATS_OK;
    if (!b->kv) s = js_KeyValue(&b->kv, b->js, name);
    if (s != NATS_OK && create) {
        kvConfig kc;
        kvConfig_Init(&kc);
        kc.Bucket = name;
        kc.History = 1;
        kc.Replicas = bus_replicas(b);
        s = js_CreateKeyValue(&b->kv, b->js, &kc);
    }
    if (s != NATS_OK) b->kv = NULL;
    *kv = b->kv;
    pthread_mutex_unlock(&b->kv_lock);
    if (s == NATS_OK) return ERR_OK;
    if (!create) return err_set(e, ERR_NOTFOUND, "bus: no model was announced on %s", b->stream);
    return err_set(e, ERR_IO, "bus: cannot open the bucket %s: %s", name, bus_why(s));
}

/* The announcements' follower thread: watches the bucket's "current" key
 * and tells the replica every version announced, again every
 * BUS_KV_RETRY_MS until it takes it. */
static void *bus_follower_main(void *arg) {
    bus *b = arg;
    char pending[BUS_VERSION_MAX] = "", refused[BUS_VERSION_MAX] = "";
    kvWatcher *w = NULL;
    while (!bus_stopping(b)) {
        err_t e = {0, ""};
        if (!w) {
            kvStore *kv;
            if (bus_bucket(b, true, &kv, &e) ||
                kvStore_Watch(&w, kv, BUS_KEY_ANNOUNCED, NULL) != NATS_OK) {
                w = NULL;
                bus_pause(b, BUS_KV_RETRY_MS);
                continue;
            }
            pthread_mutex_lock(&b->lock);
            b->watcher = w;
            pthread_mutex_unlock(&b->lock);
        }
        kvEntry *entry = NULL;
        natsStatus s = kvWatcher_Next(&entry, w, pending[0] ? BUS_KV_RETRY_MS : BUS_KV_WAIT_MS);
        if (s == NATS_OK && entry) {
            size_t len = (size_t)kvEntry_ValueLen(entry);
            if (kvEntry_Operation(entry) == kvOp_Put && len && len < BUS_VERSION_MAX) {
                memcpy(pending, kvEntry_Value(entry), len);
                pending[len] = '\0';
            }
            kvEntry_Destroy(entry);
        } else if (s != NATS_OK && s != NATS_TIMEOUT) {
            /* Stopped, or the watch broke (NATS went away): watch again. */
            pthread_mutex_lock(&b->lock);
            b->watcher = NULL;
            pthread_mutex_unlock(&b->lock);
            kvWatcher_Destroy(w);
            w = NULL;
            continue;
        }
        if (!pending[0]) continue;
        if (!b->announced(b->ctx, pending, &e)) {
            log_info("msg=\"announced model version is current\" version=%s", pending);
            pending[0] = refused[0] = '\0';
        } else if (strcmp(refused, pending)) {
            log_error("msg=\"announced model version not taken yet, retrying\" version=%s "
                      "error=\"%s\"",
                      pending, e.msg);
            memcpy(refused, pending, sizeof refused);
        }
    }
    pthread_mutex_lock(&b->lock);
    b->watcher = NULL;
    pthread_mutex_unlock(&b->lock);
    kvWatcher_Destroy(w);
    return NULL;
}

/* A bus connected to NATS, with no threads yet: its stream, subject and
 * consumer ("recd-<name>") set. *out is owned by the caller (bus_close). */
static int bus_connect(const char *urls, const char *stream, const char *name, uint64_t start,
                       bus **out, err_t *e) {
    *out = NULL;
    if (!urls || strlen(urls) > 4096)
        return err_set(e, ERR_INVALID, "--bus needs nats://HOST:PORT[,...]");
    if (!bus_name_ok(stream))
        return err_set(e, ERR_INVALID, "--bus-stream must be 1 to 64 letters, digits, - or _");
    if (!bus_name_ok(name))
        return err_set(e, ERR_INVALID, "--replica-id must be 1 to 64 letters, digits, - or _");
    char buf[4097];
    const char *servers[BUS_MAX_URLS];
    int n = bus_split(urls, buf, servers);
    if (!n) return err_set(e, ERR_INVALID, "--bus: 1 to %d comma-separated URLs", BUS_MAX_URLS);
    bus *b = calloc(1, sizeof *b);
    if (!b) return err_set(e, ERR_NOMEM, "bus: out of memory");
    pthread_mutex_init(&b->lock, NULL);
    pthread_mutex_init(&b->kv_lock, NULL);
    clock_cond_init(&b->applied_cond);
    b->applied = start;
    b->seen_ns = now_ns();
    size_t sl = strlen(stream);
    b->stream = strdup(stream);
    b->subject = malloc(sl + 3);
    b->durable = malloc(strlen(name) + 6);
    b->replica = strdup(name);
    if (!b->stream || !b->subject || !b->durable || !b->replica) {
        bus_close(b);
        return err_set(e, ERR_NOMEM, "bus: out of memory");
    }
    snprintf(b->subject, sl + 3, "%s.>", stream);
    snprintf(b->durable, strlen(name) + 6, "recd-%s", name);
    natsOptions *no = NULL;
    natsStatus s = nats_Open(-1);
    if (s == NATS_OK) s = natsOptions_Create(&no);
    if (s == NATS_OK) s = natsOptions_SetServers(no, servers, n);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(no, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(no, 250);
    if (s == NATS_OK) s = natsOptions_SetName(no, b->durable);
    if (s == NATS_OK) s = natsConnection_Connect(&b->nc, no);
    natsOptions_Destroy(no);
    if (s == NATS_OK) s = natsConnection_JetStream(&b->js, b->nc, NULL);
    if (s != NATS_OK) {
        int rc = err_set(e, ERR_IO, "bus: cannot connect to %s: %s", urls, bus_why(s));
        bus_close(b);
        return rc;
    }
    *out = b;
    return ERR_OK;
}

int bus_open(const bus_options *o, bus **out, err_t *e) {
    bus *b;
    int rc = bus_connect(o->urls, o->stream, o->replica_id, o->start, &b, e);
    if (rc) return rc;
    b->apply = o->apply;
    b->ctx = o->ctx;
    rc = bus_stream(b, e);
    if (rc) {
        bus_close(b);
        return rc;
    }
    if (pthread_create(&b->applier, NULL, bus_applier_main, b)) {
        bus_close(b);
        return err_set(e, ERR_INTERNAL, "bus: cannot start the applier thread");
    }
    b->applier_running = true;
    if (pthread_create(&b->monitor, NULL, bus_monitor_main, b)) {
        bus_close(b);
        return err_set(e, ERR_INTERNAL, "bus: cannot start the lag monitor thread");
    }
    b->monitor_running = true;
    b->announced = o->announced;
    if (b->announced) {
        if (pthread_create(&b->follower, NULL, bus_follower_main, b)) {
            bus_close(b);
            return err_set(e, ERR_INTERNAL, "bus: cannot start the announcements' thread");
        }
        b->follower_running = true;
    }
    log_info("msg=\"bus connected\" urls=%s stream=%s consumer=%s from_seq=%llu", o->urls,
             b->stream, b->durable, (unsigned long long)o->start);
    *out = b;
    return ERR_OK;
}

/* Hands the messages of list up to sequence end to fn, in order; *seq gets
 * the last one seen. */
static int bus_read_list(bus *b, natsMsgList *list, uint64_t end, bus_apply_fn fn, void *ctx,
                         uint64_t *seq, uint64_t *skipped, err_t *e) {
    for (int i = 0; i < list->Count; i++) {
        natsMsg *m = list->Msgs[i];
        jsMsgMetaData *meta = NULL;
        if (natsMsg_GetMetaData(&meta, m) != NATS_OK)
            return err_set(e, ERR_IO, "bus: a message of %s came without its metadata", b->stream);
        *seq = meta->Sequence.Stream;
        jsMsgMetaData_Destroy(meta);
        natsMsg_Ack(m, NULL);
        if (*seq > end) return ERR_OK;
        int rc = fn(ctx, *seq, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), e);
        if (rc == ERR_INVALID || rc == ERR_FORMAT) {
            log_error("msg=\"bus message cannot be read, skipped\" seq=%llu error=\"%s\"",
                      (unsigned long long)*seq, e->msg);
            (*skipped)++;
        } else if (rc)
            return rc;
    }
    return ERR_OK;
}

int bus_read(const char *urls, const char *stream, bus_apply_fn fn, void *ctx, uint64_t *last,
             uint64_t *skipped, err_t *e) {
    *last = 0;
    *skipped = 0;
    char name[32];
    snprintf(name, sizeof name, "reader-%ld", (long)getpid());
    bus *b;
    int rc = bus_connect(urls, stream, name, 0, &b, e);
    if (rc) return rc;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, b->js, b->stream, NULL, &jerr);
    if (s != NATS_OK) {
        rc = err_set(e, ERR_IO, "bus: no stream %s on %s: %s (%d)", b->stream, urls, bus_why(s),
                     (int)jerr);
        bus_close(b);
        return rc;
    }
    uint64_t end = si->State.LastSeq, held = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    *last = end;
    if (!held) {
        bus_close(b);
        return ERR_OK;
    }
    /* A consumer of its own, gone when the reader is: deleted at the end,
     * and by the server after BUS_READ_IDLE_S should the reader die. */
    jsSubOptions so;
    bus_consumer(b, &so);
    so.Config.DeliverPolicy = js_DeliverAll;
    so.Config.InactiveThreshold = (int64_t)BUS_READ_IDLE_S * 1000000000;
    natsSubscription *sub = NULL;
    s = js_PullSubscribe(&sub, b->js, b->subject, b->durable, NULL, &so, &jerr);
    if (s != NATS_OK)
        rc = err_set(e, ERR_IO, "bus: cannot read the stream %s: %s (%d)", b->stream, bus_why(s),
                     (int)jerr);
    uint64_t seq = 0;
    while (!rc && seq < end) {
        natsMsgList list = {0};
        s = natsSubscription_Fetch(&list, sub, BUS_FETCH, BUS_READ_WAIT_MS, &jerr);
        if (s != NATS_OK)
            rc = err_set(e, ERR_IO, "bus: reading %s stopped after sequence %llu of %llu: %s",
                         b->stream, (unsigned long long)seq, (unsigned long long)end, bus_why(s));
        else
            rc = bus_read_list(b, &list, end, fn, ctx, &seq, skipped, e);
        natsMsgList_Destroy(&list);
    }
    if (sub) {
        js_DeleteConsumer(b->js, b->stream, b->durable, NULL, &jerr);
        natsSubscription_Destroy(sub);
    }
    bus_close(b);
    return rc;
}

void bus_close(bus *b) {
    if (!b) return;
    pthread_mutex_lock(&b->lock);
    b->stopping = true;
    if (b->watcher) kvWatcher_Stop(b->watcher);
    pthread_cond_broadcast(&b->applied_cond);
    pthread_mutex_unlock(&b->lock);
    if (b->applier_running) pthread_join(b->applier, NULL);
    if (b->monitor_running) pthread_join(b->monitor, NULL);
    if (b->follower_running) pthread_join(b->follower, NULL);
    kvStore_Destroy(b->kv);
    jsCtx_Destroy(b->js);
    natsConnection_Destroy(b->nc);
    free(b->stream);
    free(b->subject);
    free(b->durable);
    free(b->replica);
    pthread_cond_destroy(&b->applied_cond);
    pthread_mutex_destroy(&b->kv_lock);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

int bus_publish(bus *b, const void *data, size_t len, const char *msg_id, uint64_t *seq, err_t *e) {
    *seq = 0;
    if (len > BUS_MAX_MSG)
        return err_set(e, ERR_LIMIT, "the write is %zu bytes, more than the bus takes (%u)", len,
                       BUS_MAX_MSG);
    /* Never queue a write in the client's reconnect buffer: it would be
     * answered late or not at all, and the client must know now. */
    if (natsConnection_Status(b->nc) != NATS_CONN_STATUS_CONNECTED)
        return err_set(e, ERR_IO,
                       "the event bus (NATS) is down: nothing was stored, retry later (reads "
                       "still serve)");
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = msg_id;
    po.MaxWait = BUS_PUBLISH_MS;
    jsPubAck *ack = NULL;
    jsErrCode jerr = 0;
    char subject[80];
    snprintf(subject, sizeof subject, "%s.w", b->stream);
    natsStatus s = js_Publish(&ack, b->js, subject, data, (int)len, &po, &jerr);
    if (s != NATS_OK)
        return err_set(e, ERR_IO,
                       "the event bus (NATS) did not acknowledge the write (%s): it may be down; "
                       "retry (a retry of the same write is stored once)",
                       bus_why(s));
    *seq = ack->Sequence;
    jsPubAck_Destroy(ack);
    return ERR_OK;
}

int bus_wait_applied(bus *b, uint64_t seq, double timeout_s, err_t *e) {
    struct timespec until = clock_deadline(timeout_s);
    pthread_mutex_lock(&b->lock);
    int rc = 0;
    while (b->applied < seq && !b->stopping && rc == 0)
        rc = pthread_cond_timedwait(&b->applied_cond, &b->lock, &until);
    bool done = b->applied >= seq;
    pthread_mutex_unlock(&b->lock);
    if (done) return ERR_OK;
    return err_set(e, ERR_IO,
                   "the write is on the bus (sequence %llu) but this replica has not applied it "
                   "within %g s; it will",
                   (unsigned long long)seq, timeout_s);
}

uint64_t bus_applied(bus *b) {
    pthread_mutex_lock(&b->lock);
    uint64_t v = b->applied;
    pthread_mutex_unlock(&b->lock);
    return v;
}

uint64_t bus_last(bus *b) {
    pthread_mutex_lock(&b->lock);
    uint64_t v = b->last;
    pthread_mutex_unlock(&b->lock);
    return v;
}

uint64_t bus_skipped(bus *b) {
    pthread_mutex_lock(&b->lock);
    uint64_t v = b->skipped;
    pthread_mutex_unlock(&b->lock);
    return v;
}

double bus_lag_seconds(bus *b) {
    int64_t now = now_ns();
    pthread_mutex_lock(&b->lock);
    double lag = 0;
    if (b->applied < b->last && b->oldest_unapplied_ns)
        lag = (double)(now - b->oldest_unapplied_ns) / 1e9;
    /* Since the monitor last read the stream's state, messages may have
     * come that this replica knows nothing of: cut off from NATS, NATS not
     * answering, or the process stopped (SIGSTOP, a long pause). */
    double stale = (double)(now - b->seen_ns) / 1e9 - BUS_MONITOR_MS / 1000.0;
    pthread_mutex_unlock(&b->lock);
    if (stale > lag) lag = stale;
    return lag > 0 ? lag : 0;
}

int bus_connected(bus *b) {
    return natsConnection_Status(b->nc) == NATS_CONN_STATUS_CONNECTED;
}

/* --- model announcements ------------------------------------------------------ */

int bus_report_served(bus *b, const char *version, err_t *e) {
    if (strlen(version) >= BUS_VERSION_MAX)
        return err_set(e, ERR_INVALID, "bus: version %s is too long", version);
    kvStore *kv;
    int rc = bus_bucket(b, true, &kv, e);
    if (rc) return rc;
    char key[sizeof BUS_KEY_SERVED + 64];
    snprintf(key, sizeof key, BUS_KEY_SERVED "%s", b->replica);
    uint64_t rev;
    natsStatus s = kvStore_PutString(&rev, kv, key, version);
    if (s != NATS_OK)
        return err_set(e, ERR_IO, "bus: cannot report the served version: %s", bus_why(s));
    return ERR_OK;
}

int bus_announce(const char *urls, const char *stream, const char *version, uint64_t *revision,
                 err_t *e) {
    *revision = 0;
    if (!version[0] || strlen(version) >= BUS_VERSION_MAX)
        return err_set(e, ERR_INVALID, "bus: version '%s' is empty or too long", version);
    char name[32];
    snprintf(name, sizeof name, "announcer-%ld", (long)getpid());
    bus *b;
    int rc = bus_connect(urls, stream, name, 0, &b, e);
    kvStore *kv;
    if (!rc) rc = bus_bucket(b, true, &kv, e);
    if (!rc) {
        natsStatus s = kvStore_PutString(revision, kv, BUS_KEY_ANNOUNCED, version);
        if (s != NATS_OK)
            rc = err_set(e, ERR_IO, "bus: cannot announce %s: %s", version, bus_why(s));
    }
    bus_close(b);
    return rc;
}

/* Copies the value of key into out (cap bytes) and its time into *at. */
static natsStatus bus_kv_get(kvStore *kv, const char *key, char *out, size_t cap, int64_t *at) {
    kvEntry *entry = NULL;
    natsStatus s = kvStore_Get(&entry, kv, key);
    if (s != NATS_OK) return s;
    size_t len = (size_t)kvEntry_ValueLen(entry);
    if (len >= cap) len = cap - 1;
    memcpy(out, kvEntry_Value(entry), len);
    out[len] = '\0';
    *at = kvEntry_Created(entry) / 1000000000;
    kvEntry_Destroy(entry);
    return NATS_OK;
}

int bus_models_read(const char *urls, const char *stream, bus_models *out, err_t *e) {
    memset(out, 0, sizeof *out);
    char name[32];
    snprintf(name, sizeof name, "status-%ld", (long)getpid());
    bus *b;
    int rc = bus_connect(urls, stream, name, 0, &b, e);
    kvStore *kv;
    if (!rc) rc = bus_bucket(b, false, &kv, e);
    kvKeysList keys = {0};
    if (!rc) {
        natsStatus s = kvStore_Keys(&keys, kv, NULL);
        if (s != NATS_OK && s != NATS_NOT_FOUND)
            rc = err_set(e, ERR_IO, "bus: cannot list the bucket: %s", bus_why(s));
    }
    if (!rc && keys.Count && !(out->served = calloc((size_t)keys.Count, sizeof *out->served)))
        rc = err_set(e, ERR_NOMEM, "bus: out of memory");
    for (int i = 0; !rc && i < keys.Count; i++) {
        const char *key = keys.Keys[i];
        if (!strcmp(key, BUS_KEY_ANNOUNCED)) {
            bus_kv_get(kv, key, out->announced, sizeof out->announced, &out->announced_unix);
        } else if (!strncmp(key, BUS_KEY_SERVED, strlen(BUS_KEY_SERVED))) {
            bus_served *r = &out->served[out->n_served];
            snprintf(r->replica, sizeof r->replica, "%s", key + strlen(BUS_KEY_SERVED));
            if (bus_kv_get(kv, key, r->version, sizeof r->version, &r->at_unix) == NATS_OK)
                out->n_served++;
        }
    }
    kvKeysList_Destroy(&keys);
    bus_close(b);
    if (rc) bus_models_free(out);
    return rc;
}

void bus_models_free(bus_models *m) {
    free(m->served);
    m->served = NULL;
    m->n_served = 0;
}
