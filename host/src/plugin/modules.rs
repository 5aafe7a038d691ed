//! The modules (ELF files) mapped into the guest and their symbols, for plugin views
//! (`symbolize`) and module tables (drcov, profiles). User mode reports each file it maps
//! (`Plugins::on_module_load`); symbol tables (`.symtab`, else `.dynsym`) are read lazily
//! on the first lookup in a module. Strings are interned for the life of the process
//! because the ABI hands them out as `&'static`.

use object::{Object, ObjectSymbol, SymbolKind};
use std::sync::OnceLock;

/// A symbol at run-time addresses.
#[derive(Clone, Copy, Debug)]
pub struct Sym {
    /// Run-time address.
    pub addr: u64,
    /// Size (0 if unknown).
    pub size: u64,
    /// Name.
    pub name: &'static str,
}

/// One mapped module.
#[derive(Debug)]
pub struct Module {
    /// File path.
    pub path: &'static str,
    /// Lowest mapped address.
    pub start: u64,
    /// End of the highest mapping.
    pub end: u64,
    /// Run-time minus file address.
    pub bias: u64,
    /// Entry point (0 if unknown).
    pub entry: u64,
    syms: OnceLock<Vec<Sym>>,
}

impl Module {
    /// A module record.
    pub fn new(path: &str, start: u64, end: u64, bias: u64, entry: u64) -> Module {
        Module {
            path: Box::leak(path.to_string().into_boxed_str()),
            start,
            end,
            bias,
            entry,
            syms: OnceLock::new(),
        }
    }
    /// Symbols sorted by address.
    pub fn symbols(&self) -> &[Sym] {
        self.syms.get_or_init(|| read_symbols(self.path, self.bias))
    }
    /// The function symbol containing `pc`.
    pub fn symbol_at(&self, pc: u64) -> Option<Sym> {
        let syms = self.symbols();
        let i = syms.partition_point(|s| s.addr <= pc);
        let s = *syms.get(i.checked_sub(1)?)?;
        let end =
            if s.size > 0 { s.addr + s.size } else { syms.get(i).map_or(self.end, |n| n.addr) };
        (pc < end).then_some(s)
    }
}

fn read_symbols(path: &str, bias: u64) -> Vec<Sym> {
    let Ok(data) = std::fs::read(path) else { return Vec::new() };
    let Ok(file) = object::File::parse(&*data) else { return Vec::new() };
    fn take(out: &mut Vec<Sym>, bias: u64, it: &mut dyn Iterator<Item = object::Symbol<'_, '_>>) {
        for s in it {
            if s.kind() != SymbolKind::Text || s.address() == 0 || !s.is_definition() {
                continue;
            }
            let Ok(name) = s.name() else { continue };
            if name.is_empty() {
                continue;
            }
            out.push(Sym {
                addr: s.address().wrapping_add(bias),
                size: s.size(),
                name: Box::leak(name.to_string().into_boxed_str()),
            });
        }
    }
    let mut out: Vec<Sym> = Vec::new();
    take(&mut out, bias, &mut file.symbols());
    if out.is_empty() {
        take(&mut out, bias, &mut file.dynamic_symbols());
    }
    // Prefer sized, global-looking names when several symbols share an address.
    out.sort_by(|a, b| a.addr.cmp(&b.addr).then(b.size.cmp(&a.size)));
    out.dedup_by_key(|s| s.addr);
    out
}

/// The modules of one run, in load order.
#[derive(Default, Debug)]
pub struct ModuleMap {
    mods: Vec<std::sync::Arc<Module>>,
}

impl ModuleMap {
    /// Record a module (a later module covering the same range replaces the older one for
    /// lookups, as after `munmap` + `mmap`).
    pub fn add(&mut self, m: Module) {
        self.mods.push(std::sync::Arc::new(m));
    }
    /// Module `i` in load order.
    pub fn get(&self, i: usize) -> Option<&Module> {
        self.mods.get(i).map(|m| &**m)
    }
    /// The module containing `pc`.
    pub fn find(&self, pc: u64) -> Option<&Module> {
        self.mods.iter().rev().find(|m| m.start <= pc && pc < m.end).map(|m| &**m)
    }
}

/// The load segments of an ELF file: lowest address, end of the highest segment, entry
/// point and, per segment, `(file offset, address)` rounded down to pages (file addresses).
pub struct Extent {
    /// Lowest segment address.
    pub start: u64,
    /// End of the highest segment.
    pub end: u64,
    /// Entry point.
    pub entry: u64,
    /// `(page-aligned file offset, page-aligned address)` of each segment.
    pub segments: Vec<(u64, u64)>,
}

/// Read the load segments of the ELF file at `path`.
pub fn elf_extent(path: &str) -> Option<Extent> {
    use object::ObjectSegment;
    let data = std::fs::read(path).ok()?;
    let file = object::File::parse(&*data).ok()?;
    let (mut start, mut end, mut segments) = (u64::MAX, 0u64, Vec::new());
    for s in file.segments() {
        start = start.min(s.address());
        end = end.max(s.address() + s.size());
        segments.push((s.file_range().0 & !0xfff, s.address() & !0xfff));
    }
    (start < end).then_some(Extent { start, end, entry: file.entry(), segments })
}
