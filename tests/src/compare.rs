//! Field-by-field comparison of two `Outcome`s, with readable differences.

use crate::state::{flag_names, Outcome, GPR_NAMES};

/// Differences between `want` (the host CPU) and `got` (the emulator), one line each.
/// `flag_mask` selects the RFLAGS bits that are compared (defined flags plus DF).
pub fn diff(want: &Outcome, got: &Outcome, flag_mask: u64) -> Vec<String> {
    let mut d = Vec::new();
    match (want, got) {
        (Outcome::Fault(a), Outcome::Fault(b)) => {
            if a != b {
                d.push(format!("fault: host {a:?}, emulator {b:?}"));
            }
        }
        (Outcome::Fault(a), Outcome::Done { .. }) => {
            d.push(format!("fault: host {a:?}, emulator completed"));
        }
        (Outcome::Done { .. }, Outcome::Fault(b)) => {
            d.push(format!("fault: host completed, emulator {b:?}"));
        }
        (
            Outcome::Done { regs: a, mem: ma, marker: ka },
            Outcome::Done { regs: b, mem: mb, marker: kb },
        ) => {
            for ((name, x), y) in GPR_NAMES.iter().zip(a.gpr).zip(b.gpr) {
                if x != y {
                    d.push(format!("{name}: host {x:#018x}, emulator {y:#018x}"));
                }
            }
            let (fa, fb) = (a.rflags & flag_mask, b.rflags & flag_mask);
            if fa != fb {
                d.push(format!(
                    "rflags (mask {flag_mask:#x}): host {fa:#x} [{}], emulator {fb:#x} [{}], differ in [{}]",
                    flag_names(fa),
                    flag_names(fb),
                    flag_names(fa ^ fb)
                ));
            }
            for n in 0..16 {
                if a.xmm[n] != b.xmm[n] {
                    let (x, y) = (a.xmm[n], b.xmm[n]);
                    d.push(format!("xmm{n}: host {x:032x}, emulator {y:032x}"));
                }
            }
            if a.mxcsr != b.mxcsr {
                d.push(format!("mxcsr: host {:#x}, emulator {:#x}", a.mxcsr, b.mxcsr));
            }
            if ka != kb {
                d.push(format!(
                    "branch marker: host {ka}, emulator {kb} (1 = fallthrough, 2 = taken)"
                ));
            }
            d.extend(mem_diff(ma, mb));
        }
    }
    d
}

/// Differing scratch bytes as ranges (at most 4 listed).
fn mem_diff(a: &[u8], b: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut ranges = 0;
    while i < a.len().min(b.len()) {
        if a[i] == b[i] {
            i += 1;
            continue;
        }
        let start = i;
        while i < a.len() && a[i] != b[i] && i - start < 32 {
            i += 1;
        }
        ranges += 1;
        if ranges <= 4 {
            out.push(format!(
                "scratch[{start:#x}..{i:#x}]: host {}, emulator {}",
                hex(&a[start..i]),
                hex(&b[start..i])
            ));
        }
    }
    if ranges > 4 {
        out.push(format!("... {} more differing scratch ranges", ranges - 4));
    }
    out
}

/// Bytes as lowercase hex without separators.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
