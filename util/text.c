#include "text.h"

#include <stdio.h>

void text_join_words(char *buf, size_t size, const char *const *words, size_t n) {
    size_t at = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && at < size; i++) {
        const char *sep = i == 0 ? "" : i + 1 == n ? " or " : ", ";
        int written = snprintf(buf + at, size - at, "%s%s", sep, words[i]);
        if (written < 0) break;
        at += (size_t)written;
    }
}
