//! Bit instructions against the host CPU: BT BTS BTR BTC (register, memory, LOCK),
//! BSF BSR POPCNT LZCNT TZCNT BSWAP and BMI1/BMI2 ANDN BEXTR BLSI BLSMSK BLSR BZHI PDEP
//! PEXT; every 64-bit form the host supports, ≥ 500 cases per form, interpreter and JIT
//! tiers. See `intops_native` for how cases are built and compared.

mod intops_native;

use iced_x86::{Instruction, Mnemonic, OpKind};
use intops_native::{Bench, Case, Opts, Rng, DATA_LEN, GPR64};

fn run(m: Mnemonic, opts: &Opts<'_>) -> Bench {
    let mut b = Bench::new(0xb17 ^ (m as u64) << 24);
    let forms = b.check(m, opts);
    assert!(forms > 0, "{m:?}: no form ran");
    eprintln!("{m:?}: {} forms, {} cases x 2 tiers", b.stats.0, b.stats.2);
    b
}

fn reg_index(i: &Instruction, n: u32) -> Option<usize> {
    (i.op_kind(n) == OpKind::Register)
        .then(|| GPR64.iter().position(|g| *g == i.op_register(n).full_register()))
        .flatten()
}

/// Memory forms with a register bit offset: the offset is signed and moves the access by
/// `offset / 8` bytes (rounded down to the operand size). Keep it inside the data area,
/// using both signs and every distance up to ~28 KiB; leave garbage in the bits above the
/// operand width (they must be ignored).
fn bt_hook(i: &Instruction, rng: &mut Rng, c: &mut Case) {
    if i.op0_kind() != OpKind::Memory {
        return;
    }
    let Some(r) = reg_index(i, 1) else { return };
    let bits = i.op_register(1).size() * 8;
    let reach = (DATA_LEN as i64 / 2 - 256) * 8;
    let off: i64 = match rng.below(3) {
        0 => rng.below(256) as i64 - 128,
        1 => rng.below(4096) as i64 - 2048,
        _ => (rng.next() % (2 * reach as u64)) as i64 - reach,
    };
    c.regs[r] = match bits {
        16 => (c.regs[r] & !0xffff) | (off as u64 & 0xffff),
        32 => (c.regs[r] & !0xffff_ffff) | (off as u64 & 0xffff_ffff),
        _ => off as u64,
    };
}

#[test]
fn bt() {
    run(Mnemonic::Bt, &Opts { hook: &bt_hook, ..Opts::default() });
}

#[test]
fn bts() {
    run(Mnemonic::Bts, &Opts { hook: &bt_hook, lock: true, ..Opts::default() });
}

#[test]
fn btr() {
    run(Mnemonic::Btr, &Opts { hook: &bt_hook, lock: true, ..Opts::default() });
}

#[test]
fn btc() {
    run(Mnemonic::Btc, &Opts { hook: &bt_hook, lock: true, ..Opts::default() });
}

/// Make the source operand 0 in a quarter of the cases (BSF/BSR keep the destination,
/// LZCNT/TZCNT return the width and set CF).
fn zero_src_hook(i: &Instruction, rng: &mut Rng, c: &mut Case) {
    if rng.below(4) != 0 {
        return;
    }
    let bytes = match i.op_kind(1) {
        OpKind::Register => i.op_register(1).size(),
        _ => i.memory_size().size(),
    };
    match reg_index(i, 1) {
        Some(r) => {
            let m = if bytes == 8 { u64::MAX } else { (1u64 << (8 * bytes)) - 1 };
            c.regs[r] &= !m;
        }
        None => {
            let a = c.regs[7].wrapping_add(i.memory_displacement64());
            if let Some(img) = c.mem.as_mut() {
                img.write(a, bytes, 0);
            }
        }
    }
}

#[test]
fn bsf() {
    run(Mnemonic::Bsf, &Opts { hook: &zero_src_hook, ..Opts::default() });
}

#[test]
fn bsr() {
    run(Mnemonic::Bsr, &Opts { hook: &zero_src_hook, ..Opts::default() });
}

#[test]
fn popcnt() {
    run(Mnemonic::Popcnt, &Opts { hook: &zero_src_hook, ..Opts::default() });
}

#[test]
fn lzcnt() {
    run(Mnemonic::Lzcnt, &Opts { hook: &zero_src_hook, ..Opts::default() });
}

#[test]
fn tzcnt() {
    run(Mnemonic::Tzcnt, &Opts { hook: &zero_src_hook, ..Opts::default() });
}

#[test]
fn bswap() {
    run(Mnemonic::Bswap, &Opts::default());
}

#[test]
fn andn() {
    run(Mnemonic::Andn, &Opts::default());
}

/// BEXTR's control and BZHI's index (operand 2): start/length/index bytes around the
/// width boundaries.
fn ctl_hook(i: &Instruction, rng: &mut Rng, c: &mut Case) {
    let Some(r) = reg_index(i, 2) else { return };
    if rng.below(4) != 0 {
        let start = rng.below(72);
        let len = rng.below(72);
        c.regs[r] = (c.regs[r] & !0xffff) | len << 8 | start;
    }
}

#[test]
fn bextr() {
    run(Mnemonic::Bextr, &Opts { hook: &ctl_hook, ..Opts::default() });
}

#[test]
fn bzhi() {
    run(Mnemonic::Bzhi, &Opts { hook: &ctl_hook, ..Opts::default() });
}

#[test]
fn blsi() {
    run(Mnemonic::Blsi, &Opts { hook: &zero_src_hook, ..Opts::default() });
}

#[test]
fn blsmsk() {
    run(Mnemonic::Blsmsk, &Opts { hook: &zero_src_hook, ..Opts::default() });
}

#[test]
fn blsr() {
    run(Mnemonic::Blsr, &Opts { hook: &zero_src_hook, ..Opts::default() });
}

#[test]
fn pdep() {
    run(Mnemonic::Pdep, &Opts::default());
}

#[test]
fn pext() {
    run(Mnemonic::Pext, &Opts::default());
}
