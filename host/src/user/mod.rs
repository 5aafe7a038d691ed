//! User mode: Linux x86-64 programs on the host kernel (ELF loading, stack, syscalls,
//! signals, threads).
