/* SHA-256 (FIPS 180-4), for naming the base model an adapted model was made from. */
#ifndef EMOTE_SHA256_H
#define EMOTE_SHA256_H

#include <stddef.h>
#include <stdint.h>

void sha256(const void *data, size_t size, uint8_t digest[32]);
/* The digest as 64 lowercase hex digits and a NUL. */
void sha256_hex(const void *data, size_t size, char hex[65]);

#endif
