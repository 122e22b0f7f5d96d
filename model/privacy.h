/* privacy: a member's privacy choice, one byte per member id in an idstate
 * store in the PRIVACY_DIR folder of a server's events folder. The server
 * sets it (ForgetUser, SetPersonalization) and honours it on every request;
 * the trainer reads it to leave forgotten members out. */
#ifndef RECD_PRIVACY_H
#define RECD_PRIVACY_H

#include <stddef.h>

#include "idstate.h"

#define PRIVACY_DIR "privacy" /* the store's folder inside the events folder */

/* The states, one row each: XX(NAME, stored byte). The bytes are on disk:
 * add rows, never renumber. */
#define PRIVACY_MAP(XX)                                                                            \
    XX(NONE, 0)      /* personalized as usual */                                                   \
    XX(OPTED_OUT, 1) /* SetPersonalization: no personal answers; still trained on */               \
    XX(FORGOTTEN, 2) /* ForgetUser: nothing served, recorded or trained on any more */

typedef enum privacy_state {
#define PRIVACY_ENUM(name, byte) PRIVACY_##name = byte,
    PRIVACY_MAP(PRIVACY_ENUM)
#undef PRIVACY_ENUM
} privacy_state;

/* The state of member id[0..len) in store (an idstate of 1-byte values),
 * PRIVACY_NONE when none was set. Thread-safe as idstate_get. */
privacy_state privacy_get(idstate *store, const char *id, size_t len);

/* The state a stored value (as idstate_each hands it) holds. */
privacy_state privacy_of_value(const void *value);

#endif
