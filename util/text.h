/* text: small pieces of human-readable text that several modules write. */
#ifndef RECD_TEXT_H
#define RECD_TEXT_H

#include <stddef.h>

/* Writes words[0..n) as a sentence, "a, b, c or d" ("a" for one word, ""
 * for none), into buf, truncated to size - 1 bytes and NUL-terminated
 * (size >= 1). For messages that list the choices of a table. */
void text_join_words(char *buf, size_t size, const char *const *words, size_t n);

#endif
