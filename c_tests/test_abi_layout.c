// The layout of every public struct of ibstack.h, frozen: sizeof, _Alignof and, per
// field, offsetof and sizeof as this compiler sees them, against the numbers recorded
// in abi/ibstack_layout.h (IBSTACK_ABI_LAYOUT names another table). Run by
// scripts/abi-check, which also checks that the table covers every struct and field.
// Prints one "ok - <struct>" per struct and "not ok - ..." per mismatch.
#include <ibstack.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#ifndef IBSTACK_ABI_LAYOUT
#define IBSTACK_ABI_LAYOUT "../abi/ibstack_layout.h"
#endif

static int structs, failures, struct_failures;
static const char *current;

static void fail(void) { failures++; struct_failures++; }
static void end_struct(void) {
    if (current && struct_failures == 0) printf("ok - %s: size, alignment and field offsets as recorded\n", current);
    current = NULL;
}
static void check_struct(const char *name, size_t size, size_t align, size_t want_size, size_t want_align) {
    end_struct();
    current = name; struct_failures = 0; structs++;
    if (size != want_size) { printf("not ok - %s: sizeof %zu, recorded %zu\n", name, size, want_size); fail(); }
    if (align != want_align) { printf("not ok - %s: _Alignof %zu, recorded %zu\n", name, align, want_align); fail(); }
}
static void check_field(const char *s, const char *f, size_t off, size_t size, size_t want_off, size_t want_size) {
    if (!current || strcmp(current, s) != 0) { printf("not ok - %s.%s recorded outside its struct\n", s, f); fail(); }
    if (off != want_off) { printf("not ok - %s.%s: offsetof %zu, recorded %zu\n", s, f, off, want_off); fail(); }
    if (size != want_size) { printf("not ok - %s.%s: sizeof %zu, recorded %zu\n", s, f, size, want_size); fail(); }
}

#define IBSTACK_ABI_STRUCT(s, size, align) check_struct(#s, sizeof(s), _Alignof(s), size, align);
#define IBSTACK_ABI_FIELD(s, f, off, size) check_field(#s, #f, offsetof(s, f), sizeof(((s *)0)->f), off, size);

int main(void) {
#include IBSTACK_ABI_LAYOUT
    end_struct();
    if (structs == 0) { printf("not ok - the layout table records no struct\n"); return 1; }
    return failures ? 1 : 0;
}
