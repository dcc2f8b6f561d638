#include "stateres.h"
#include <errno.h>
int hs_stateres(const hs_room_version_t *rv, const json_t *const *sets, size_t nsets,
                hs_event_fetch_fn fetch, void *ud, json_t **out, char *why, size_t whylen)
{
    (void)rv; (void)sets; (void)nsets; (void)fetch; (void)ud; (void)out; (void)why; (void)whylen;
    return -ENOSYS;
}
