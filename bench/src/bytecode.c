/* CPU-bound: a switch-dispatched bytecode interpreter running a nested counting loop. */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
enum { PUSH, LOAD, STORE, ADD, SUB, MUL, JNZ, DUP, POP, XOR, HALT };
int main(int argc, char **argv) {
    int64_t outer = argc > 1 ? atoll(argv[1]) : 30000;
    /* r0 = outer; do { r1 = 1000; do { r2 = r2*3 ^ r1; r1--; } while (r1); r0--; } while (r0); */
    int64_t code[] = {PUSH, 0, STORE, 0,
        /* 4 */ PUSH, 1000, STORE, 1,
        /* 8 */ LOAD, 2, PUSH, 3, MUL, LOAD, 1, XOR, STORE, 2,
        LOAD, 1, PUSH, 1, SUB, DUP, STORE, 1, JNZ, 8,
        LOAD, 0, PUSH, 1, SUB, DUP, STORE, 0, JNZ, 4, HALT};
    code[1] = outer;
    int64_t stack[64], reg[4] = {0}, sp = 0, pc = 0;
    for (;;) {
        switch (code[pc]) {
        case PUSH: stack[sp++] = code[pc + 1]; pc += 2; break;
        case LOAD: stack[sp++] = reg[code[pc + 1]]; pc += 2; break;
        case STORE: reg[code[pc + 1]] = stack[--sp]; pc += 2; break;
        case ADD: sp--; stack[sp - 1] += stack[sp]; pc++; break;
        case SUB: sp--; stack[sp - 1] -= stack[sp]; pc++; break;
        case MUL: sp--; stack[sp - 1] *= stack[sp]; pc++; break;
        case XOR: sp--; stack[sp - 1] ^= stack[sp]; pc++; break;
        case DUP: stack[sp] = stack[sp - 1]; sp++; pc++; break;
        case POP: sp--; pc++; break;
        case JNZ: pc = stack[--sp] ? code[pc + 1] : pc + 2; break;
        case HALT: printf("%lld\n", (long long)reg[2]); return 0;
        default: return 2;
        }
    }
}
