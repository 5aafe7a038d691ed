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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Regs;

    fn done(f: impl FnOnce(&mut Regs, &mut Vec<u8>)) -> Outcome {
        let mut r = Regs::default();
        let mut m = vec![0u8; 64];
        f(&mut r, &mut m);
        Outcome::Done { regs: Box::new(r), mem: m, marker: 0 }
    }

    #[test]
    fn reports_each_differing_field_and_honours_the_flag_mask() {
        let a = done(|r, m| {
            r.gpr[3] = 1;
            r.rflags = 0x801;
            m[5] = 9;
        });
        let b = done(|r, _| {
            r.gpr[3] = 2;
            r.rflags = 0x001;
        });
        let d = diff(&a, &b, 0xcd5);
        assert_eq!(d.len(), 3, "{d:#?}");
        assert!(d[0].starts_with("rbx:"));
        assert!(d[1].contains("differ in [OF]"));
        assert!(d[2].starts_with("scratch[0x5..0x6]"));
        // OF masked off (undefined): only rbx and memory differ.
        assert_eq!(diff(&a, &b, 0xcd5 & !0x800).len(), 2);
        assert!(diff(&a, &a, 0xcd5).is_empty());
        let f = Outcome::Fault(crate::state::FaultKind::DivideError);
        assert_eq!(diff(&f, &a, 0).len(), 1);
    }
}
