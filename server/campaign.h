/* campaign: push-campaign targeting over a model's churn scores - the
 * factors that explain one member's score, members' affinity to an item or
 * category, and the ordered, filtered member list that StreamCampaignTargets
 * sends. The names of the churn codes are model.h's tables.
 *
 * Only members with a churn score (they bought before the model's scoring
 * time) are ever targets. */
#ifndef RECD_CAMPAIGN_H
#define RECD_CAMPAIGN_H

#include <stdint.h>

#include "err.h"
#include "model.h"

/* Fills feature[] and contribution[] with up to n of user u's churn-score
 * contributions, largest magnitude first; *n_out gets how many. Returns
 * ERR_OK, ERR_NOTFOUND (no churn model), ERR_NOMEM. */
int campaign_top_factors(const model *m, uint32_t u, uint32_t n, uint32_t *feature,
                         double *contribution, uint32_t *n_out, err_t *e);

/* Every member's predicted preference x_u . q into out (n_users floats): q is
 * an item's vector (factors floats: the model's factors of an item, or the
 * vector an upserted one got from its labels), or the mean of the factors
 * of the category's items. One sgemv over the user matrix. The category's
 * returns ERR_OK, ERR_NOTFOUND (a category with no items), ERR_NOMEM. */
void campaign_affinity_vector(const model *m, const float *q, float *out);
int campaign_affinity_category(const model *m, uint32_t category, float *out, err_t *e);

/* BY_EXPECTED_VALUE: CLV's expected spend within the horizon (needs a
 * model with CLV). */
typedef enum {
    CAMPAIGN_BY_PROBABILITY,
    CAMPAIGN_BY_VALUE,
    CAMPAIGN_BY_AFFINITY,
    CAMPAIGN_BY_EXPECTED_VALUE
} campaign_order;

typedef struct campaign_filter {
    float min_probability, max_probability; /* inclusive */
    uint32_t segments, tiers;               /* bit masks of accepted codes; 0 = any */
    const float *affinity;                  /* n_users or NULL (required by CAMPAIGN_BY_AFFINITY) */
    const uint8_t *eligible;                /* n_users or NULL: members not marked 1 are left out */
    uint32_t limit;                         /* 0 = all */
    campaign_order order;
} campaign_filter;

/* Called once per selected member, in order; return nonzero to stop. */
typedef int (*campaign_emit_fn)(void *ctx, uint32_t user);

/* Selects the members that pass f, orders them (highest key first, ties by
 * index) and emits them. Holds one float per member and the selected
 * indexes, never the messages. Returns ERR_OK (also when emit stopped it),
 * ERR_PRECONDITION (no churn model; no CLV for BY_EXPECTED_VALUE), ERR_INVALID,
 * ERR_NOMEM. */
int campaign_select(const model *m, const campaign_filter *f, campaign_emit_fn emit, void *ctx,
                    err_t *e);

#endif
