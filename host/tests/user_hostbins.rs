//! The host's own dynamic binaries (coreutils, dash, gzip, python3) under blockscope give
//! the same stdout, stderr and exit status as natively.

mod user_support;
use std::path::Path;
use user_support::*;

fn check(prog: &str, args: &[&str]) {
    let Ok(path) = which(prog) else {
        eprintln!("SKIP: {prog} not installed");
        return;
    };
    let nat = native(&path, args, &[]);
    let emu = emulated(&[], Path::new(prog), args, &[]);
    assert_same(&format!("{prog} {args:?}"), &nat, &emu);
}

fn which(prog: &str) -> Result<std::path::PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path).map(|d| d.join(prog)).find(|p| p.is_file()).ok_or(())
}

#[test]
fn true_and_false() {
    check("true", &[]);
    check("false", &[]);
}

#[test]
fn ls_la_root() {
    // /proc's link count is the number of processes: it changes while tests run.
    check("ls", &["-la", "--ignore=proc", "/"]);
}

#[test]
fn sh_loop_and_pipe() {
    check("sh", &["-c", "i=0; while [ $i -lt 20 ]; do echo line $i; i=$((i+1)); done | sort -r | head -5; exit 3"]);
}

#[test]
fn gzip_round_trip_sha256_sort() {
    let d = TempDir::new("hostbins");
    let f = d.join("data");
    let mut data = Vec::new();
    let mut x: u32 = 12345;
    for i in 0..200_000u32 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        data.push(if i % 7 == 0 { b'\n' } else { b'a' + (x >> 24) as u8 % 26 });
    }
    std::fs::write(&f, &data).unwrap();
    let f = f.to_str().unwrap();
    check("sh", &["-c", &format!("gzip -9 < {f} | gunzip | sha256sum; sha256sum < {f}")]);
    check("sha256sum", &[f]);
    check("sort", &[f]);
}

#[test]
fn python3_arith_json_threading() {
    check(
        "python3",
        &[
            "-c",
            "import json, threading\n\
             print(sum(i * i for i in range(20000)), 2 ** 100, 10 / 3)\n\
             print(json.dumps({'a': [1, 2.5, None], 'b': 'x'}, sort_keys=True))\n\
             out = []\n\
             ts = [threading.Thread(target=lambda k=k: out.append(k * k)) for k in range(4)]\n\
             [t.start() for t in ts]; [t.join() for t in ts]\n\
             print(sorted(out))",
        ],
    );
}
