/* What happens at idmap's id limit, built here as 3 ids (IDMAP_MAX_IDS, see
 * tests/CMakeLists.txt): a limit is reported as ERR_LIMIT by every layer
 * above, never as out of memory. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "events.h"
#include "idmap.h"

Test(limits, idmap_refuses_a_new_id_beyond_its_limit) {
    idmap *m = idmap_new();
    cr_assert_not_null(m);
    uint32_t idx;
    cr_assert_eq(idmap_intern(m, "a", 1, &idx), ERR_OK);
    cr_assert_eq(idmap_intern(m, "b", 1, &idx), ERR_OK);
    cr_assert_eq(idmap_intern(m, "c", 1, &idx), ERR_OK);
    cr_assert_eq(idmap_intern(m, "d", 1, &idx), ERR_LIMIT);
    /* Known ids are still found; the map is unchanged. */
    cr_assert_eq(idmap_intern(m, "b", 1, &idx), ERR_OK);
    cr_assert_eq(idx, 1);
    cr_assert_eq(idmap_size(m), 3);
    idmap_free(m);
}

Test(limits, ev_set_add_reports_the_limit_not_out_of_memory) {
    ev_set s;
    err_t e;
    cr_assert_eq(ev_set_init(&s, &e), ERR_OK);
    const char *users[] = {"u1", "u2", "u3", "u4"};
    for (int i = 0; i < 3; i++)
        cr_assert_eq(ev_set_add(&s, users[i], 2, "i1", 2, 100, 1.0f, NAN, &e), ERR_OK);
    cr_assert_eq(ev_set_add(&s, users[3], 2, "i1", 2, 100, 1.0f, NAN, &e), ERR_LIMIT);
    cr_assert_eq(e.code, ERR_LIMIT);
    cr_assert(strstr(e.msg, "limit exceeded"), "%s", e.msg);
    cr_assert_null(strstr(e.msg, "memory"), "%s", e.msg);
    cr_assert_eq(s.n, 3, "the refused event is not half-added");
    /* The same for items, and for categories. */
    cr_assert_eq(ev_set_add(&s, "u1", 2, "i2", 2, 100, 1.0f, NAN, &e), ERR_OK);
    cr_assert_eq(ev_set_add(&s, "u1", 2, "i3", 2, 100, 1.0f, NAN, &e), ERR_OK);
    cr_assert_eq(ev_set_add(&s, "u1", 2, "i4", 2, 100, 1.0f, NAN, &e), ERR_LIMIT);
    for (uint32_t item = 0; item < 3; item++) {
        char cat[2] = {(char)('a' + item), 0};
        cr_assert_eq(ev_set_set_category(&s, item, cat, 1, &e), ERR_OK);
    }
    cr_assert_eq(ev_set_set_category(&s, 0, "z", 1, &e), ERR_LIMIT);
    ev_set_free(&s);
}
