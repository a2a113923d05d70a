/* Links libpaychan_no_std_check.a into a C program (no Rust std anywhere) and runs the core once.
 * Used by .ci/run: cc run.c <target>/release/libpaychan_no_std_check.a -o <out> && <out> */
#include <stdint.h>
#include <stdio.h>

uint32_t paychan_no_std_check(const uint8_t seed[32], uint8_t sig_out[64]);

int main(void) {
    uint8_t seed[32] = {7};
    uint8_t sig[64] = {0};
    uint32_t rc = paychan_no_std_check(seed, sig);
    if (rc != 0) {
        fprintf(stderr, "paychan_no_std_check failed at step %u\n", rc);
        return 1;
    }
    printf("no-std core ran: commitment signature r starts %02x%02x%02x%02x\n", sig[0], sig[1], sig[2], sig[3]);
    return 0;
}
