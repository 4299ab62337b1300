/*
 * amx_config.h — the AMX tile configuration (the 64-byte LDTILECFG
 * operand: palette 1, bytes per row and rows of each of the 8 tiles) and
 * its loader, shared by kern_amx.c and bench/amxmix.c. Include only from
 * files built with -mamx-tile. Reference: Intel SDM vol. 2, LDTILECFG.
 */
#ifndef MQ_AMX_CONFIG_H
#define MQ_AMX_CONFIG_H

#include <stdint.h>
#include <string.h>

typedef struct {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16]; /* bytes per row of tile i */
    uint8_t rows[16];   /* rows of tile i */
} mq_amx_config;

/* Load c (palette set to 1 here). Not _tile_loadconfig: GCC 12 treats its
 * argument as unread and drops the stores that fill it (only the palette
 * byte survived, and the first tile load raised SIGILL). */
static inline void mq_amx_load_config(mq_amx_config *c) {
    c->palette = 1;
    __asm__ volatile("ldtilecfg %0" : : "m"(*c));
}

#endif
