#include "privacy.h"

privacy_state privacy_get(idstate *store, const char *id, size_t len) {
    unsigned char v = PRIVACY_NONE;
    idstate_get(store, id, len, &v);
    return (privacy_state)v;
}

privacy_state privacy_of_value(const void *value) {
    return (privacy_state) * (const unsigned char *)value;
}
