/* Unit tests of the server's pure parts: A/B assignment and request ids,
 * the error table against gRPC's own codes, handler replies. */
#include <criterion/criterion.h>
#include <grpc/status.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiment.h"
#include "model.h"
#include "recd/v1/recommender.pb-c.h"
#include "rpc.h"

Test(status, the_table_has_grpc_values) {
#define CHECK_STATUS(name, code, http) cr_assert_eq(ERR_STATUS_##name, (int)GRPC_STATUS_##name);
    ERR_STATUS_MAP(CHECK_STATUS)
#undef CHECK_STATUS
    cr_assert_eq(ERR_STATUSES, (int)GRPC_STATUS_UNAUTHENTICATED + 1, "the last code is 16");
}

Test(status, a_reply_error_keeps_a_long_message_and_marks_the_cut) {
    rpc_reply r = {.err.code = ERR_OK, .body = malloc(8), .len = 8};
    char detail[300];
    memset(detail, 'd', sizeof detail - 1);
    detail[sizeof detail - 1] = '\0';
    /* 300-odd bytes: more than the old 256-byte replies held, all kept. */
    rpc_reply_error(&r, ERR_NOTFOUND, "item '%s' is not in model", detail);
    cr_assert_eq(r.err.code, ERR_NOTFOUND);
    cr_assert_null(r.body);
    cr_assert_eq(r.len, 0);
    cr_assert_eq(strlen(r.err.msg), strlen(detail) + strlen("item '' is not in model"));
    rpc_reply_error(&r, ERR_NOMEM, "%s%s", detail, detail);
    cr_assert_eq(err_to_status(r.err.code), ERR_STATUS_RESOURCE_EXHAUSTED);
    cr_assert_str_eq(r.err.msg + sizeof r.err.msg - 4, "...");
}

static experiment three_variants(void) {
    experiment x = {.salt = "s1", .n = 3};
    strcpy(x.names[0], "control");
    strcpy(x.names[1], "b");
    strcpy(x.names[2], "c");
    double shares[] = {0.2, 0.3, 0.5};
    cr_assert_eq(exp_set_shares(&x, shares, 3, NULL), ERR_OK);
    return x;
}

Test(experiment, assignment_matches_the_shares_on_100k_users) {
    experiment x = three_variants();
    unsigned counts[3] = {0};
    char id[32];
    for (int u = 0; u < 100000; u++) {
        int n = snprintf(id, sizeof id, "member-%d", u);
        counts[exp_assign(&x, id, (size_t)n)]++;
    }
    /* Binomial sd at 100k is at most 158 (0.16%): 1% is over six of them. */
    cr_assert(counts[0] > 19000 && counts[0] < 21000, "%u", counts[0]);
    cr_assert(counts[1] > 29000 && counts[1] < 31000, "%u", counts[1]);
    cr_assert(counts[2] > 49000 && counts[2] < 51000, "%u", counts[2]);
}

Test(experiment, assignment_is_stable_and_moves_with_the_salt) {
    experiment x = three_variants(), y = x;
    strcpy(y.salt, "s2");
    unsigned moved = 0;
    char id[32];
    for (int u = 0; u < 10000; u++) {
        int n = snprintf(id, sizeof id, "m%d", u);
        uint32_t v = exp_assign(&x, id, (size_t)n);
        cr_assert_eq(exp_assign(&x, id, (size_t)n), v, "same member, same variant");
        moved += exp_assign(&y, id, (size_t)n) != v;
    }
    /* Independent draws agree with probability .2^2 + .3^2 + .5^2 = .38. */
    cr_assert(moved > 5800 && moved < 6600, "%u", moved);
    double all_b[] = {0, 1, 0};
    cr_assert_eq(exp_set_shares(&x, all_b, 3, NULL), ERR_OK);
    cr_assert_eq(exp_assign(&x, "anyone", 6), 1);
}

Test(experiment, shares_and_names_are_checked) {
    experiment x = three_variants();
    double bad_sum[] = {0.5, 0.5, 0.5}, negative[] = {-0.1, 0.6, 0.5};
    err_t e;
    cr_assert_eq(exp_set_shares(&x, bad_sum, 3, &e), ERR_INVALID);
    cr_assert(strstr(e.msg, "add up"));
    cr_assert_eq(exp_set_shares(&x, negative, 3, &e), ERR_INVALID);
    cr_assert_eq(exp_set_shares(&x, bad_sum, 2, &e), ERR_INVALID);
    cr_assert(exp_name_valid("new-ranker_2"));
    cr_assert_not(exp_name_valid(""));
    cr_assert_not(exp_name_valid("has space"));
    cr_assert_not(exp_name_valid("a:b"));
}

Test(experiment, request_ids_name_their_variant_and_are_unique) {
    experiment x = three_variants();
    char a[EXP_REQUEST_ID_MAX], b[EXP_REQUEST_ID_MAX];
    exp_request_id(&x, 2, a);
    exp_request_id(&x, 2, b);
    cr_assert_str_neq(a, b);
    cr_assert_eq(strncmp(a, "c:", 2), 0);
    cr_assert_eq(exp_variant_of_request(&x, a), 2);
    cr_assert_eq(exp_variant_of_request(&x, "control:0123"), 0);
    cr_assert_eq(exp_variant_of_request(&x, "d:0123"), -1);
    cr_assert_eq(exp_variant_of_request(&x, "no-colon"), -1);
}

/* A stored state brings back shares and salt for the same variant names in
 * any order (shares follow the names); other names, another count or a
 * damaged state leave the experiment as it was. */
Test(experiment, stored_state_restores_shares_for_the_same_names) {
    experiment set = three_variants();
    double shares[] = {0.1, 0.0, 0.9};
    cr_assert_eq(exp_set_shares(&set, shares, 3, NULL), ERR_OK);
    strcpy(set.salt, "spring");
    unsigned char state[EXP_STATE_BYTES];
    exp_encode(&set, state);

    /* Restarted with the variants listed as c, control, b and the flags'
     * even split and salt. */
    experiment boot = {.salt = "recd", .n = 3};
    strcpy(boot.names[0], "c");
    strcpy(boot.names[1], "control");
    strcpy(boot.names[2], "b");
    double even[] = {1.0 / 3, 1.0 / 3, 1.0 / 3};
    cr_assert_eq(exp_set_shares(&boot, even, 3, NULL), ERR_OK);
    experiment x = boot;
    err_t e;
    cr_assert_eq(exp_restore(&x, state, &e), ERR_OK, "%s", e.msg);
    cr_expect_str_eq(x.salt, "spring");
    cr_expect(x.shares[0] == 0.9 && x.shares[1] == 0.1 && x.shares[2] == 0.0);
    cr_expect_str_eq(x.names[0], "c", "names and their order stay the boot's");

    experiment other = boot;
    strcpy(other.names[2], "d");
    cr_assert_eq(exp_restore(&other, state, &e), ERR_INVALID);
    cr_expect(strstr(e.msg, "variant b"), "%s", e.msg);
    cr_expect(memcmp(&other.shares, &boot.shares, sizeof boot.shares) == 0, "unchanged");
    cr_expect_str_eq(other.salt, "recd");
    experiment two = boot;
    two.n = 2;
    cr_assert_eq(exp_restore(&two, state, &e), ERR_INVALID);

    unsigned char damaged[EXP_STATE_BYTES];
    memcpy(damaged, state, sizeof state);
    memcpy(damaged + 1 + (EXP_MAX_NAME + 1), "control", 8); /* b -> control twice */
    x = boot;
    cr_assert_eq(exp_restore(&x, damaged, &e), ERR_INVALID);
    cr_expect(strstr(e.msg, "twice"), "%s", e.msg);
    memcpy(damaged, state, sizeof state);
    memset(damaged + EXP_STATE_BYTES - (EXP_MAX_SALT + 1), 'x', EXP_MAX_SALT + 1);
    cr_assert_eq(exp_restore(&x, damaged, &e), ERR_INVALID);
    cr_expect(strstr(e.msg, "salt"), "%s", e.msg);
}

Test(experiment, feedback_type_table) {
    cr_assert_eq(exp_feedback_of_word("conversion"), EXP_FEEDBACK_CONVERSION);
    cr_assert_eq(exp_feedback_of_word("view"), 0);
    cr_assert_str_eq(exp_feedback_word(EXP_FEEDBACK_CART), "cart");
    cr_assert_null(exp_feedback_word(0));
    cr_assert_null(exp_feedback_word(EXP_FEEDBACK_END));
    char words[64];
    exp_feedback_words(words, sizeof words);
    cr_assert_str_eq(words, "impression, click, cart or conversion");
}

/* The metadata table (model.h) names a row for every ModelInfo field: the
 * compile-time checks catch a row without its field, this a field without
 * its row. */
Test(model_info, every_proto_field_has_a_table_row) {
    const ProtobufCMessageDescriptor *d = &recd__v1__model_info__descriptor;
#define COUNT_PB_ROW_PB(pb_name) +1
#define COUNT_PB_ROW_NO(pb_name)
#define COUNT_PB_ROW(member, key, kind, opt, pb, pb_name, show, label, fmt)                        \
    COUNT_PB_ROW_##pb(pb_name)
    unsigned rows = 0 MODEL_META_MAP(COUNT_PB_ROW);
#undef COUNT_PB_ROW
#undef COUNT_PB_ROW_NO
#undef COUNT_PB_ROW_PB
    cr_assert_eq(rows, d->n_fields, "%u table rows for %u ModelInfo fields", rows, d->n_fields);
#define FIND_FIELD_PB(pb_name)                                                                     \
    cr_expect_not_null(protobuf_c_message_descriptor_get_field_by_name(d, #pb_name),               \
                       "ModelInfo has no field " #pb_name);
#define FIND_FIELD_NO(pb_name)
#define FIND_FIELD(member, key, kind, opt, pb, pb_name, show, label, fmt) FIND_FIELD_##pb(pb_name)
    MODEL_META_MAP(FIND_FIELD)
#undef FIND_FIELD
#undef FIND_FIELD_NO
#undef FIND_FIELD_PB
}
