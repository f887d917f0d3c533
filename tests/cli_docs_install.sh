#!/usr/bin/env bash
# The manual page documents every option each command's --help lists, and
# `make install` puts binary, library, header, pkg-config file and man page in place.
source tests/testlib.sh
MAN=$ROOT/src/cli/emote.1
sed 's/\\-/-/g' "$MAN" >"$TMP/man.txt"    # roff writes '-' as '\-'

for cmd in classify eval sort diff info adapt; do
    $EMOTE $cmd --help >"$TMP/help" 2>&1
    missing=""
    for opt in $(grep -oE -- '--[a-z0-9][a-z0-9-]*[a-z0-9]' "$TMP/help" | sort -u); do
        grep -qF -- "$opt" "$TMP/man.txt" || missing="$missing $opt"
    done
    expect "emote.1 documents every option of '$cmd --help'${missing:+ (missing:$missing)}" test -z "$missing"
done
$EMOTE --help >"$TMP/help"
expect "--help and emote.1 both list exit status 4" bash -c "grep -q '4 a check failed' '$TMP/help' && grep -q 'check failed' '$MAN'"

if [ "${EMOTE_SUITE:-}" = asan ]; then
    skip "make install" "the release suite checks it"
    finish; exit
fi
make -s install PREFIX=/usr DESTDIR="$TMP/root" >"$TMP/out" 2>&1
expect "make install: the face detector's BSD license and copyright" \
    grep -q "Copyright (c) 2018-2023, Shiqi Yu" "$TMP/root/usr/share/doc/emote/LICENSE.libfacedetection"
expect "make install: binary, library, header, pkg-config file and man page" bash -c "
    cd '$TMP/root/usr' && test -x bin/emote && test -f lib/libemote.a && test -f include/emote.h &&
    test -f lib/pkgconfig/emote.pc && test -f share/man/man1/emote.1"
cat >"$TMP/use.c" <<'C'
#include <emote.h>
#include <stdio.h>
int main(int argc, char **argv) {
    emote_error err;
    emote_model *m = emote_model_open(argv[argc - 1], &err);
    if (!m) { fprintf(stderr, "%s\n", err.message); return 1; }
    printf("%d\n", emote_model_num_classes(m));
    emote_model_close(m);
    return 0;
}
C
flags=$(PKG_CONFIG_SYSROOT_DIR="$TMP/root" PKG_CONFIG_PATH="$TMP/root/usr/lib/pkgconfig" pkg-config --cflags --libs --static emote)
expect "a program builds against the installed library with pkg-config" \
    cc -o "$TMP/use" "$TMP/use.c" $flags
expect "and runs" bash -c "[ \"\$('$TMP/use' '$TEST_MODEL')\" = 7 ]"
finish
