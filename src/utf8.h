/* UTF-8 validation, for text that must stay valid in JSON and safe on a terminal. */
#ifndef EMOTE_UTF8_H
#define EMOTE_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Length (1..4) of the well-formed UTF-8 sequence at s (no overlongs, surrogates or
 * code points past U+10FFFF), storing its code point in *cp; 0 when s does not start one.
 * s must be NUL-terminated. */
size_t utf8_sequence(const unsigned char *s, uint32_t *cp);
/* True when all of s is well-formed UTF-8. */
bool utf8_valid(const char *s);
/* True for the C0 and C1 control characters and DEL (U+0000-U+001F, U+007F-U+009F). */
bool is_control_code_point(uint32_t cp);

#endif
