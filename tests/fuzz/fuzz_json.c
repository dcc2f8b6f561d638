/*
 * fuzz_json.c: libFuzzer target for the strict JSON parser and the
 * canonical JSON serializer (core/json.c), the code every request body and
 * every federation event goes through.
 *
 * Beyond "no crash, no leak, no undefined behaviour" it checks properties:
 * a failed parse always names M_NOT_JSON or M_BAD_JSON with a printable
 * message; canonical output parses again, to an equal value, and canonicalises
 * to the very same bytes; it holds no raw tab or line break.
 *
 * Build and run: see tests/fuzz/README.md (`make fuzz`).
 * fuzz-sources: core/json.c
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *code = NULL;
    char err[128];

    json_t *v = mx_json_parse((const char *)data, size, &code, err, sizeof(err));
    if (!v) {
        check(code && (!strcmp(code, "M_NOT_JSON") || !strcmp(code, "M_BAD_JSON")));
        check(err[0] != '\0' && strlen(err) < sizeof(err));
        for (const char *p = err; *p; p++)
            check(*p >= 0x20 && *p < 0x7f);
        return 0;
    }
    check(code == NULL);

    size_t len = 0;
    char *c = mx_json_canonical(v, &len);
    if (c) {
        check(strlen(c) == len);
        /* Canonical output is strict JSON and a fixed point. */
        json_t *w = mx_json_parse(c, len, &code, err, sizeof(err));
        check(w != NULL);
        size_t len2 = 0;
        char *c2 = mx_json_canonical(w, &len2);
        check(c2 && len2 == len && memcmp(c, c2, len) == 0);
        check(json_equal(v, w));
        free(c2);
        json_decref(w);
        /* No insignificant whitespace: raw tabs and line breaks can't
         * appear at all (inside strings they are escaped). */
        for (size_t i = 0; i < len; i++)
            check(c[i] != '\n' && c[i] != '\t' && c[i] != '\r');
        free(c);
    }
    json_decref(v);
    return 0;
}
