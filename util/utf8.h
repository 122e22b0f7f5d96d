/* utf8: validation of client-supplied strings (protobuf-c does not check). */
#ifndef RECD_UTF8_H
#define RECD_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates, no
 * code points above U+10FFFF). */
bool utf8_valid(const char *s, size_t len);

#endif
