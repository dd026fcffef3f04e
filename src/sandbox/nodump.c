/* Loaded into opencode (LD_PRELOAD) inside its jail: a non-dumpable process's
 * /proc/<pid>/environ, mem and root are closed to the agent's processes, which
 * share its user but have no capabilities, so opencode's server password and
 * provider keys stay out of their reach. */
#include <sys/prctl.h>

__attribute__((constructor)) static void kugetsu_nodump(void) {
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}
