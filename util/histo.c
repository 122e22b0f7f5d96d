#include "histo.h"

/* From 0.1 ms, a fast Recommend, to 5 s, a long deadline. */
static const double histo_bound_s[HISTO_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5};

void histo_observe(histo *h, double seconds) {
    int b = 0;
    while (b < HISTO_BUCKETS && seconds > histo_bound_s[b])
        b++;
    atomic_fetch_add(&h->count[b], 1);
    atomic_fetch_add(&h->sum_us, (unsigned long long)(seconds * 1e6));
}

void histo_write(const histo *h, FILE *out, const char *name, const char *transport,
                 const char *method) {
    unsigned long long cum = 0;
    for (int b = 0; b <= HISTO_BUCKETS; b++) {
        cum += atomic_load(&h->count[b]);
        if (b < HISTO_BUCKETS)
            fprintf(out, "%s_bucket{transport=\"%s\",method=\"%s\",le=\"%g\"} %llu\n", name,
                    transport, method, histo_bound_s[b], cum);
        else
            fprintf(out, "%s_bucket{transport=\"%s\",method=\"%s\",le=\"+Inf\"} %llu\n", name,
                    transport, method, cum);
    }
    fprintf(out, "%s_sum{transport=\"%s\",method=\"%s\"} %.6f\n", name, transport, method,
            (double)atomic_load(&h->sum_us) / 1e6);
    fprintf(out, "%s_count{transport=\"%s\",method=\"%s\"} %llu\n", name, transport, method, cum);
}
