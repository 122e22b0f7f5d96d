#include <cblas.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "log.h"
#include "http.h"
#include "opts.h"
#include "reflect.h"
#include "rpc.h"
#include "svc.h"
#include "tlscert.h"

static const char serve_usage[] =
    "usage: recd serve --model DIR [options]\n"
    "Serves the current model of DIR over gRPC until SIGINT or SIGTERM; in-flight calls finish.\n"
    "  --model DIR              model directory written by `recd train`\n"
    "  --listen HOST:PORT       address to listen on (default 127.0.0.1:50051; port 0 = any free)\n"
    "  --threads N              worker threads (default: number of CPUs)\n"
    "  --max-message-bytes N    larger requests get RESOURCE_EXHAUSTED (default 4194304)\n"
    "  --reload-interval S      seconds between looks for a newly published model (default 1,\n"
    "                           0 = never)\n"
    "  --port-file FILE         write the bound port to FILE once serving (for scripts)\n"
    "  --events DIR             durable event store (RecordEvents, fold-in), item rules,\n"
    "                           privacy choices, feedback and experiment shares; without it\n"
    "                           every write RPC is refused (it would not last); one server\n"
    "                           per DIR (a second one exits 1)\n"
    "  --event-weights LIST     weight of each event type in purchases, default\n"
    "                           view=0.1,cart=0.3,purchase=1,favorite=0.5\n"
    "  --trending-half-life H   Recommend mode TRENDING ranks items by their recent events\n"
    "                           (each of the --event-weights), an event counting half\n"
    "                           after H hours (default 24; fractions allowed; needs --events)\n"
    "  --trending-personal W    share 0..1 of the shopper's own score in a TRENDING list\n"
    "                           (default 0: the same list for everyone)\n"
    "  --max-queue N            calls that may wait for a handler thread; more get\n"
    "                           RESOURCE_EXHAUSTED at once (default 1024)\n"
    "  --max-queue-ms N         a call that waited longer is answered RESOURCE_EXHAUSTED\n"
    "                           instead of run (default 1000)\n"
    "  --tls-cert FILE          serve TLS with this PEM certificate chain ...\n"
    "  --tls-key FILE           ... and its PEM private key\n"
    "  --tls-client-ca FILE     mutual TLS: clients need a certificate signed by this CA\n"
    "  --tls-refuse-expired     refuse to start when the --tls-cert chain has expired\n"
    "                           (without it: a warning naming the expiry date)\n"
    "  --http-listen H:P        HTTP on one port (port 0 = any free): the JSON API\n"
    "                           (POST /v1/<Method>), the dashboard (/), Prometheus /metrics\n"
    "                           and /healthz; the --tls-* files and the tokens apply as for\n"
    "                           gRPC\n"
    "  --http-port-file FILE    write the HTTP port to FILE once serving\n"
    "  --http-cors-origin O     let pages from origin O (https://shop.example, or *) call the\n"
    "                           JSON API from a browser (repeatable, or a comma list)\n"
    "  --http-timeout S         close an idle HTTP connection after S seconds (default 10)\n"
    "  --http-max-connections N HTTP connections at once, a thread each (default 256,\n"
    "                           at most 10000); more are closed on accept\n"
    "  --http-max-per-address N of them from one client address (default 64): raise it\n"
    "                           behind a proxy or for a few app servers\n"
    "  --metrics-listen H:P     the same as --http-listen (its old name)\n"
    "  --metrics-port-file FILE the same as --http-port-file\n"
    "  --log-format F           logfmt (default) or json: one line per start, model load, error\n"
    "  --reflection on|off      serve gRPC server reflection (grpc.reflection.v1 and v1alpha),\n"
    "                           so that grpcurl and other tools need no .proto (default on)\n"
    "  --variant NAME=DIR       A/B experiment: also serve the model in DIR as variant NAME\n"
    "                           (repeatable; --model is variant control; traffic splits evenly\n"
    "                           until SetExperiment changes it)\n"
    "  --experiment-salt S      seed of the assignment of members to variants (default recd)\n"
    "  --write-token-file FILE  the write RPCs (RecordEvents, RecordFeedback,\n"
    "                           SetItemAvailability, SetItemBoosts, ForgetUser,\n"
    "                           SetPersonalization, SetExperiment, UpsertItems) need\n"
    "                           'authorization: Bearer <token>' with the token in FILE (a\n"
    "                           file, not a flag: flags show in ps)\n"
    "  --read-token-file FILE   the member-data RPCs (GetChurnScore, StreamCampaignTargets,\n"
    "                           GetMemberOverview: churn, spend, segments) need\n"
    "                           'authorization: Bearer <token>' with the token in FILE, a\n"
    "                           marketing token apart from the write token; Recommend and\n"
    "                           the other reads stay open (default: open)\n"
    "  --idle-timeout S         close a connection without calls for S seconds (default 300,\n"
    "                           0 = never)\n"
    "  --stream-timeout S       a streaming call (StreamCampaignTargets, reflection) whose\n"
    "                           client takes nothing for S seconds is cancelled and its slot\n"
    "                           freed: stalled readers cannot hold the 4 slots (default 10,\n"
    "                           0 = wait for ever)\n"
    "  --self-check-interval S  every S seconds the server connects to its own port; when\n"
    "                           3 checks in a row get no answer (gRPC's listener stops for\n"
    "                           good after running out of descriptors) it stops and exits\n"
    "                           with status 3, for the supervisor to restart it (default 5,\n"
    "                           0 = no self-check)\n"
    "  --bus nats://H:P[,...]   run as one replica of a cluster: every write goes through this\n"
    "                           NATS JetStream event bus and is applied by every replica into\n"
    "                           its --events stores (needs --events; README, Running a cluster)\n"
    "  --bus-stream NAME        the JetStream stream of the cluster (default recd)\n"
    "  --replica-id NAME        this replica's durable consumer on the stream (default: the\n"
    "                           host name); unique per replica and kept across restarts\n"
    "  --max-lag S              gRPC health says NOT_SERVING while this replica is more than S\n"
    "                           seconds behind the bus, or cut off from it that long (default\n"
    "                           5, 0 = never)\n"
    "Exit status: 0 stopped by a signal, 1 error, 2 usage, 3 the listener died.\n";

enum {
    OPT_MODEL = OPT_FIRST_FREE,
    OPT_LISTEN,
    OPT_THREADS,
    OPT_MAX_MSG,
    OPT_RELOAD,
    OPT_PORT_FILE,
    OPT_EVENTS,
    OPT_EVENT_WEIGHTS,
    OPT_MAX_QUEUE,
    OPT_MAX_QUEUE_MS,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_TLS_CLIENT_CA,
    OPT_TLS_REFUSE_EXPIRED,
    OPT_WRITE_TOKEN_FILE,
    OPT_READ_TOKEN_FILE,
    OPT_VARIANT,
    OPT_IDLE_TIMEOUT,
    OPT_STREAM_TIMEOUT,
    OPT_SELF_CHECK,
    OPT_SALT,
    OPT_METRICS_LISTEN,
    OPT_METRICS_PORT_FILE,
    OPT_HTTP_CORS_ORIGIN,
    OPT_HTTP_TIMEOUT,
    OPT_HTTP_MAX_CONNECTIONS,
    OPT_HTTP_MAX_PER_ADDRESS,
    OPT_LOG_FORMAT,
    OPT_REFLECTION,
    OPT_BUS,
    OPT_BUS_STREAM,
    OPT_REPLICA_ID,
    OPT_MAX_LAG,
    OPT_TRENDING_HALF_LIFE,
    OPT_TRENDING_PERSONAL
};

/* The HTTP front end: where it listens (NULL = none), its port file, the
 * CORS origins (pointing into argv) and the idle timeout. */
typedef struct serve_metrics {
    const char *listen, *port_file;
    const char *origins[HTTP_MAX_ORIGINS];
    size_t n_origins;
    uint32_t timeout_s;
    uint32_t max_connections, max_per_address; /* 0 = http.h's defaults */
} serve_metrics;

/* The PEM files and the token named on the command line, read. */
typedef struct serve_secrets {
    char *cert, *key, *client_ca, *token, *read_token;
} serve_secrets;

static void secrets_free(serve_secrets *x) {
    free(x->cert);
    free(x->key);
    free(x->client_ca);
    free(x->token);
    free(x->read_token);
}

/* Reads *path (when set) into *out. Returns 0 or -1 after printing why. */
static int read_secret(const char *flag, const char *path, int trim, char **out) {
    if (!path) return 0;
    return (*out = opts_read_file(flag, path, trim)) ? 0 : -1;
}

static int serve(const char *model_dir, const char *port_file, const serve_metrics *sm,
                 const rpc_options *ro_in, core_options *so_in, float reload, int reflection);

/* Warns when the certificate chain pem (read from path) has expired, and
 * refuses it with refuse set: clients would fail every handshake, with
 * nothing in the server's log. Returns 0, or -1 to refuse after logging. A
 * chain libcrypto cannot read is left to gRPC, which says why. */
static int check_cert_expiry(const char *path, const char *pem, int refuse) {
    int64_t not_after;
    err_t e;
    if (tlscert_not_after(pem, &not_after, &e)) {
        log_warn("msg=\"cannot read the TLS certificate's expiry\" path=%s reason=\"%s\"", path,
                 e.msg);
        return 0;
    }
    if (not_after >= (int64_t)time(NULL)) return 0;
    char when[32];
    time_t t = (time_t)not_after;
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
    if (refuse) {
        log_error("msg=\"the TLS certificate has expired: not starting (--tls-refuse-expired)\" "
                  "path=%s not_after=%s",
                  path, when);
        return -1;
    }
    log_warn("msg=\"the TLS certificate has expired: clients will refuse it\" path=%s "
             "not_after=%s",
             path, when);
    return 0;
}

int cmd_serve(int argc, char **argv) {
    static const struct option longopts[] = {
        {"model", required_argument, 0, OPT_MODEL},
        {"listen", required_argument, 0, OPT_LISTEN},
        {"threads", required_argument, 0, OPT_THREADS},
        {"max-message-bytes", required_argument, 0, OPT_MAX_MSG},
        {"reload-interval", required_argument, 0, OPT_RELOAD},
        {"port-file", required_argument, 0, OPT_PORT_FILE},
        {"events", required_argument, 0, OPT_EVENTS},
        {"event-weights", required_argument, 0, OPT_EVENT_WEIGHTS},
        {"max-queue", required_argument, 0, OPT_MAX_QUEUE},
        {"max-queue-ms", required_argument, 0, OPT_MAX_QUEUE_MS},
        {"tls-cert", required_argument, 0, OPT_TLS_CERT},
        {"tls-key", required_argument, 0, OPT_TLS_KEY},
        {"tls-client-ca", required_argument, 0, OPT_TLS_CLIENT_CA},
        {"tls-refuse-expired", no_argument, 0, OPT_TLS_REFUSE_EXPIRED},
        {"write-token-file", required_argument, 0, OPT_WRITE_TOKEN_FILE},
        {"read-token-file", required_argument, 0, OPT_READ_TOKEN_FILE},
        {"variant", required_argument, 0, OPT_VARIANT},
        {"experiment-salt", required_argument, 0, OPT_SALT},
        {"metrics-listen", required_argument, 0, OPT_METRICS_LISTEN},
        {"metrics-port-file", required_argument, 0, OPT_METRICS_PORT_FILE},
        {"http-listen", required_argument, 0, OPT_METRICS_LISTEN},
        {"http-port-file", required_argument, 0, OPT_METRICS_PORT_FILE},
        {"http-cors-origin", required_argument, 0, OPT_HTTP_CORS_ORIGIN},
        {"http-timeout", required_argument, 0, OPT_HTTP_TIMEOUT},
        {"http-max-connections", required_argument, 0, OPT_HTTP_MAX_CONNECTIONS},
        {"http-max-per-address", required_argument, 0, OPT_HTTP_MAX_PER_ADDRESS},
        {"log-format", required_argument, 0, OPT_LOG_FORMAT},
        {"reflection", required_argument, 0, OPT_REFLECTION},
        {"idle-timeout", required_argument, 0, OPT_IDLE_TIMEOUT},
        {"stream-timeout", required_argument, 0, OPT_STREAM_TIMEOUT},
        {"self-check-interval", required_argument, 0, OPT_SELF_CHECK},
        {"bus", required_argument, 0, OPT_BUS},
        {"bus-stream", required_argument, 0, OPT_BUS_STREAM},
        {"replica-id", required_argument, 0, OPT_REPLICA_ID},
        {"max-lag", required_argument, 0, OPT_MAX_LAG},
        {"trending-half-life", required_argument, 0, OPT_TRENDING_HALF_LIFE},
        {"trending-personal", required_argument, 0, OPT_TRENDING_PERSONAL},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *model_dir = NULL, *port_file = NULL;
    const char *cert_path = NULL, *key_path = NULL, *ca_path = NULL, *token_path = NULL;
    const char *read_token_path = NULL;
    int refuse_expired = 0;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    rpc_options ro = {.listen = "127.0.0.1:50051",
                      .max_message_bytes = 4u << 20,
                      .idle_timeout_ms = 300000,
                      .stream_progress_ms = 10000,
                      .self_check_ms = 5000};
    serve_secrets secrets = {0};
    serve_metrics sm = {.listen = NULL};
    int reflection = 1;
    float reload = 1.0f;
    core_options so;
    core_options_init(&so);
    so.threads = cpus > 0 ? (uint32_t)cpus : 2;
    so.max_lag_s = 5;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_MODEL:
            model_dir = optarg;
            break;
        case OPT_LISTEN:
            ro.listen = optarg;
            break;
        case OPT_THREADS:
            if (opts_u32("threads", optarg, 1, 256, &so.threads)) return 2;
            break;
        case OPT_MAX_MSG:
            if (opts_u32("max-message-bytes", optarg, 1024, 1u << 30, &ro.max_message_bytes))
                return 2;
            break;
        case OPT_RELOAD:
            if (opts_float("reload-interval", optarg, 0, 3600, &reload)) return 2;
            break;
        case OPT_PORT_FILE:
            port_file = optarg;
            break;
        case OPT_EVENTS:
            so.events_dir = optarg;
            break;
        case OPT_EVENT_WEIGHTS:
            if (opts_event_weights(optarg, so.event_weights)) return 2;
            break;
        case OPT_MAX_QUEUE:
            if (opts_u32("max-queue", optarg, 1, 1u << 20, &so.max_queue)) return 2;
            break;
        case OPT_MAX_QUEUE_MS:
            if (opts_u32("max-queue-ms", optarg, 1, 3600000, &so.max_queue_ms)) return 2;
            break;
        case OPT_TLS_CERT:
            cert_path = optarg;
            break;
        case OPT_TLS_KEY:
            key_path = optarg;
            break;
        case OPT_TLS_CLIENT_CA:
            ca_path = optarg;
            break;
        case OPT_TLS_REFUSE_EXPIRED:
            refuse_expired = 1;
            break;
        case OPT_WRITE_TOKEN_FILE:
            token_path = optarg;
            break;
        case OPT_READ_TOKEN_FILE:
            read_token_path = optarg;
            break;
        case OPT_VARIANT: {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || !eq[1] || so.n_variants == EXP_MAX_VARIANTS - 1) {
                fprintf(stderr, "recd: --variant takes NAME=DIR, at most %d times\n",
                        EXP_MAX_VARIANTS - 1);
                return 2;
            }
            *eq = '\0'; /* optarg points into argv, which is ours to split */
            so.variant_names[so.n_variants] = optarg;
            so.variant_dirs[so.n_variants++] = eq + 1;
            break;
        }
        case OPT_SALT:
            so.salt = optarg;
            break;
        case OPT_METRICS_LISTEN:
            if (sm.listen && strcmp(sm.listen, optarg)) {
                fprintf(stderr, "recd: --http-listen and --metrics-listen name one port (the same "
                                "server): give one\n");
                return 2;
            }
            sm.listen = optarg;
            break;
        case OPT_HTTP_CORS_ORIGIN:
            /* optarg points into argv, which is ours to split at the commas */
            for (char *save = NULL, *o = strtok_r(optarg, ",", &save); o;
                 o = strtok_r(NULL, ",", &save)) {
                if (sm.n_origins == HTTP_MAX_ORIGINS) {
                    fprintf(stderr, "recd: at most %d --http-cors-origin origins\n",
                            HTTP_MAX_ORIGINS);
                    return 2;
                }
                sm.origins[sm.n_origins++] = o;
            }
            break;
        case OPT_HTTP_TIMEOUT:
            if (opts_u32("http-timeout", optarg, 1, 3600, &sm.timeout_s)) return 2;
            break;
        case OPT_HTTP_MAX_CONNECTIONS:
            if (opts_u32("http-max-connections", optarg, 1, HTTP_CONNECTIONS_CAP,
                         &sm.max_connections))
                return 2;
            break;
        case OPT_HTTP_MAX_PER_ADDRESS:
            if (opts_u32("http-max-per-address", optarg, 1, HTTP_CONNECTIONS_CAP,
                         &sm.max_per_address))
                return 2;
            break;
        case OPT_METRICS_PORT_FILE:
            sm.port_file = optarg;
            break;
        case OPT_LOG_FORMAT:
            if (strcmp(optarg, "logfmt") && strcmp(optarg, "json")) {
                fprintf(stderr, "recd: --log-format is logfmt or json, not '%s'\n", optarg);
                return 2;
            }
            log_set_format(!strcmp(optarg, "json") ? LOG_FORMAT_JSON : LOG_FORMAT_LOGFMT);
            break;
        case OPT_REFLECTION:
            if (strcmp(optarg, "on") && strcmp(optarg, "off")) {
                fprintf(stderr, "recd: --reflection is on or off, not '%s'\n", optarg);
                return 2;
            }
            reflection = !strcmp(optarg, "on");
            break;
        case OPT_IDLE_TIMEOUT: {
            uint32_t seconds;
            if (opts_u32("idle-timeout", optarg, 0, 86400, &seconds)) return 2;
            ro.idle_timeout_ms = seconds * 1000;
            break;
        }
        case OPT_STREAM_TIMEOUT: {
            uint32_t seconds;
            if (opts_u32("stream-timeout", optarg, 0, 86400, &seconds)) return 2;
            ro.stream_progress_ms = seconds * 1000;
            break;
        }
        case OPT_SELF_CHECK: {
            uint32_t seconds;
            if (opts_u32("self-check-interval", optarg, 0, 3600, &seconds)) return 2;
            ro.self_check_ms = seconds * 1000;
            break;
        }
        case OPT_BUS:
            so.bus_urls = optarg;
            break;
        case OPT_BUS_STREAM:
            so.bus_stream = optarg;
            break;
        case OPT_REPLICA_ID:
            so.replica_id = optarg;
            break;
        case OPT_MAX_LAG: {
            float lag;
            if (opts_float("max-lag", optarg, 0, 86400, &lag)) return 2;
            so.max_lag_s = lag;
            break;
        }
        case OPT_TRENDING_HALF_LIFE: {
            float hours; /* from a second to a year */
            if (opts_float("trending-half-life", optarg, 1.0 / 3600, 8760, &hours)) return 2;
            so.trending_half_life_s = (double)hours * 3600.0;
            break;
        }
        case OPT_TRENDING_PERSONAL:
            if (opts_float("trending-personal", optarg, 0, 1, &so.trending_personal)) return 2;
            break;
        case 'h':
            fputs(serve_usage, stdout);
            return 0;
        default:
            fputs(serve_usage, stderr);
            return 2;
        }
    }
    if (!model_dir || optind != argc) {
        fputs(serve_usage, stderr);
        return 2;
    }
    static char host[65];
    if (so.bus_urls && !so.replica_id) {
        if (gethostname(host, sizeof host - 1)) strcpy(host, "replica");
        for (char *h = host; *h; h++) /* a consumer name: letters, digits, - and _ */
            if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') || (*h >= '0' && *h <= '9')))
                *h = '-';
        so.replica_id = host;
    }
    if (read_secret("tls-cert", cert_path, 0, &secrets.cert) ||
        read_secret("tls-key", key_path, 0, &secrets.key) ||
        read_secret("tls-client-ca", ca_path, 0, &secrets.client_ca) ||
        read_secret("write-token-file", token_path, 1, &secrets.token) ||
        read_secret("read-token-file", read_token_path, 1, &secrets.read_token)) {
        secrets_free(&secrets);
        return 2;
    }
    if (secrets.token && !secrets.token[0]) {
        fprintf(stderr, "recd: --write-token-file: %s is empty\n", token_path);
        secrets_free(&secrets);
        return 2;
    }
    if (secrets.read_token && !secrets.read_token[0]) {
        fprintf(stderr, "recd: --read-token-file: %s is empty\n", read_token_path);
        secrets_free(&secrets);
        return 2;
    }
    if (secrets.read_token && secrets.token && !strcmp(secrets.read_token, secrets.token)) {
        fprintf(stderr, "recd: --read-token-file and --write-token-file hold the same token: "
                        "one role each\n");
        secrets_free(&secrets);
        return 2;
    }
    if (secrets.cert && check_cert_expiry(cert_path, secrets.cert, refuse_expired)) {
        secrets_free(&secrets);
        return 1;
    }
    ro.tls_cert = secrets.cert;
    ro.tls_key = secrets.key;
    ro.tls_client_ca = secrets.client_ca;
    ro.write_token = secrets.token;
    ro.read_token = secrets.read_token;
    int status = serve(model_dir, port_file, &sm, &ro, &so, reload, reflection);
    secrets_free(&secrets);
    return status;
}

/* Writes port and a newline to path. Returns 0, or -1 after logging why. */
static int write_port(const char *path, int port) {
    FILE *f = fopen(path, "w");
    if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f)) {
        log_error("msg=\"cannot write port file\" path=%s", path);
        return -1;
    }
    return 0;
}

/* Signals that must not end a server: SIGPIPE comes from a log pipe whose
 * reader died (`recd serve 2>&1 | tee log`, tee killed), and a failed log
 * write must not stop serving; SIGHUP and SIGUSR1/2 are sent by operators and
 * scripts that expect a daemon to survive them. */
static void ignore_stray_signals(void) {
    static const int ignored[] = {SIGPIPE, SIGHUP, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++)
        signal(ignored[i], SIG_IGN);
}

/* Raises the descriptor soft limit to the hard one: systemd and shells
 * start services with a soft limit of 1024, and every client connection is
 * a descriptor, so the soft limit is where the server stops accepting. */
static void raise_descriptor_limit(void) {
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim)) return;
    rlim_t was = lim.rlim_cur;
    /* An unlimited hard limit is still capped by the kernel's nr_open,
     * 2^20 by default. */
    rlim_t want = lim.rlim_max == RLIM_INFINITY ? (rlim_t)1 << 20 : lim.rlim_max;
    if (was >= want) return;
    lim.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &lim))
        log_warn("msg=\"cannot raise the descriptor limit\" soft=%llu wanted=%llu",
                 (unsigned long long)was, (unsigned long long)want);
    else
        log_info("msg=\"raised the descriptor limit\" from=%llu to=%llu", (unsigned long long)was,
                 (unsigned long long)want);
}

/* The exit status after the listener self-check found the listener dead. */
#define SERVE_EXIT_LISTENER_DEAD 3

static atomic_int listener_dead;

/* rpc's self-check calls this from its thread: the stop then goes the way
 * of an operator's SIGTERM (sigwait in serve), with another exit status. */
static void stop_listener_dead(void *ctx) {
    (void)ctx;
    atomic_store(&listener_dead, 1);
    kill(getpid(), SIGTERM);
}

/* Caps glibc's malloc arenas at one per core (unless MALLOC_ARENA_MAX says
 * otherwise). Its default, 8 per core, gives most short-lived threads - one
 * per HTTP connection, gRPC's and the workers' - an arena of their own, and
 * each keeps up to a few hundred kB of freed memory (a /metrics page is
 * ~80 kB): resident memory then climbs by ~5 MB over the first minutes
 * under load and stays there. With one arena per core it stays within
 * ~0.5 MB (scripts/soak.sh), and calls/s did not move measurably. */
static void cap_malloc_arenas(void) {
#ifdef M_ARENA_MAX
    if (getenv("MALLOC_ARENA_MAX")) return;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    mallopt(M_ARENA_MAX, cores > 2 ? (int)cores : 2);
#endif
}

/* Runs the server (with server reflection when reflection is set) until
 * SIGINT or SIGTERM, or until the listener dies; returns the exit code. */
static int serve(const char *model_dir, const char *port_file, const serve_metrics *sm,
                 const rpc_options *ro_in, core_options *so_in, float reload, int reflection) {
    rpc_options ro = *ro_in;
    core_options so = *so_in;
    /* Each worker scores its own requests; BLAS threads on top would fight
     * them for the same cores. */
    openblas_set_num_threads(1);
    cap_malloc_arenas();
    /* Block the stop signals before any thread starts, so that every thread
     * inherits the mask and only sigwait below receives them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    ignore_stray_signals();
    raise_descriptor_limit();

    err_t e;
    core *service_core;
    svc *service;
    so.model_dir = model_dir;
    so.reload_interval_s = reload;
    if (core_open(&so, &service_core, &e)) {
        log_error("msg=\"cannot open the service\" model=%s error=\"%s\"", model_dir, e.msg);
        return 1;
    }
    if (svc_open(service_core, &service, &e)) {
        log_error("msg=\"cannot start the service\" error=\"%s\"", e.msg);
        core_close(service_core);
        return 1;
    }
    /* The pollers do the HTTP/2 work; one per two worker threads keeps the
     * cores for the workers, which is where the time goes. */
    ro.pollers = so.threads > 1 ? so.threads / 2 : 1;
    ro.dispatch = svc_dispatch;
    ro.admit_stream = svc_admit_stream;
    ro.stream_done = svc_stream_done;
    ro.dispatch_ctx = service;
    size_t n_svc;
    const rpc_method *svc_list = svc_methods(service, &n_svc);
    reflect *reflector = NULL;
    if (reflection && reflect_open(reflect_descriptor_set, reflect_descriptor_set_len, svc_list,
                                   n_svc, &reflector, &e)) {
        log_error("msg=\"cannot start reflection\" error=\"%s\"", e.msg);
        svc_close(service);
        core_close(service_core);
        return 1;
    }
    size_t n_reflect = 0;
    const rpc_method *reflect_list = reflector ? reflect_methods(reflector, &n_reflect) : NULL;
    size_t n_methods = n_svc + n_reflect;
    rpc_method *methods = malloc(n_methods * sizeof *methods); /* svc's, then reflection's */
    if (!methods) {
        log_error("msg=\"cannot start server\" error=\"out of memory\"");
        reflect_close(reflector);
        svc_close(service);
        core_close(service_core);
        return 1;
    }
    memcpy(methods, svc_list, n_svc * sizeof *methods);
    if (n_reflect) memcpy(methods + n_svc, reflect_list, n_reflect * sizeof *methods);
    ro.on_listener_dead = stop_listener_dead;
    rpc_server *server;
    if (rpc_server_start(&ro, methods, n_methods, &server, &e)) {
        log_error("msg=\"cannot start server\" error=\"%s\"", e.msg);
        free(methods);
        reflect_close(reflector);
        svc_close(service);
        core_close(service_core);
        return 1;
    }
    log_info("msg=\"serving\" listen=%s port=%d threads=%u model=%s tls=%s write_token=%s "
             "read_token=%s "
             "reflection=%s idle_timeout_s=%u stream_timeout_s=%u self_check_s=%u",
             ro.listen, rpc_server_port(server), so.threads, model_dir,
             ro.tls_client_ca ? "mutual"
             : ro.tls_cert    ? "on"
                              : "off",
             ro.write_token ? "required" : "off", ro.read_token ? "required" : "off",
             reflector ? "on" : "off", ro.idle_timeout_ms / 1000, ro.stream_progress_ms / 1000,
             ro.self_check_ms / 1000);
    http_server *http = NULL;
    int status = 0;
    if (sm->listen) {
        http_options ho = {.listen = sm->listen,
                           .max_body_bytes = ro.max_message_bytes,
                           .timeout_s = sm->timeout_s,
                           .max_connections = sm->max_connections,
                           .max_per_address = sm->max_per_address,
                           .write_token = ro.write_token,
                           .read_token = ro.read_token,
                           .tls_cert = ro.tls_cert,
                           .tls_key = ro.tls_key,
                           .tls_client_ca = ro.tls_client_ca,
                           .n_origins = sm->n_origins,
                           .writers = {core_write_metrics},
                           .writer_ctxs = {service_core},
                           .n_writers = 1,
                           .call_counts = rpc_write_call_counts,
                           .call_latency = rpc_write_call_latency,
                           .calls_ctx = server};
        memcpy(ho.origins, sm->origins, sm->n_origins * sizeof *sm->origins);
        if (http_start(&ho, service_core, service, &http, &e)) {
            log_error("msg=\"cannot start HTTP\" error=\"%s\"", e.msg);
            status = 1;
        } else {
            log_info("msg=\"http\" listen=%s port=%d tls=%s cors_origins=%zu", sm->listen,
                     http_port(http), ro.tls_cert ? "on" : "off", sm->n_origins);
            if (sm->port_file && write_port(sm->port_file, http_port(http))) status = 1;
        }
    }
    /* The gRPC port file comes last: scripts wait for it to know all is up. */
    if (!status && port_file && write_port(port_file, rpc_server_port(server))) status = 1;
    if (!status) {
        int sig;
        sigwait(&stop, &sig);
        if (atomic_load(&listener_dead)) {
            log_error("msg=\"stopping: the listener died\" exit=%d", SERVE_EXIT_LISTENER_DEAD);
            status = SERVE_EXIT_LISTENER_DEAD;
        } else {
            log_info("msg=\"stopping\" signal=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
        }
    }
    /* HTTP first: its calls run on the core's scheduler, which the gRPC
     * server's stop keeps going until its own calls are answered. */
    http_stop(http);
    rpc_server_stop(server);
    free(methods);
    reflect_close(reflector);
    svc_close(service);
    core_close(service_core);
    log_info("msg=\"stopped\"");
    return status;
}
