//! A set-associative LRU cache simulator with cachegrind's structure: I1 and D1 in front
//! of a unified LL. An access that straddles a line boundary touches both lines and is
//! one access, a miss if either line misses (as cachegrind counts).

/// Geometry of one cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Total size in bytes.
    pub size: u64,
    /// Ways per set.
    pub assoc: u64,
    /// Line size in bytes.
    pub line: u64,
}

impl Geometry {
    /// Parse `SIZE:ASSOC:LINE`, or `SIZE,ASSOC,LINE` (cachegrind's `--I1=` syntax; on the
    /// command line commas separate plugin arguments, so `--plugin` needs the colons).
    pub fn parse(s: &str) -> Result<Geometry, String> {
        let v: Vec<u64> = s
            .split([':', ','])
            .map(|x| x.trim().parse::<u64>().map_err(|_| format!("bad cache geometry `{s}`")))
            .collect::<Result<_, _>>()?;
        let [size, assoc, line] = v[..] else {
            return Err(format!("cache geometry `{s}` is not SIZE:ASSOC:LINE"));
        };
        let g = Geometry { size, assoc, line };
        if line == 0 || !line.is_power_of_two() || assoc == 0 || size % (assoc * line) != 0 {
            return Err(format!("impossible cache geometry `{s}`"));
        }
        if !(size / (assoc * line)).is_power_of_two() {
            return Err(format!("cache geometry `{s}`: the number of sets must be a power of two"));
        }
        Ok(g)
    }
}

/// One cache level.
pub struct Cache {
    g: Geometry,
    sets: u64,
    /// Per set, tags in LRU order (most recent first); `u64::MAX` is empty.
    tags: Vec<u64>,
}

impl Cache {
    /// An empty cache.
    pub fn new(g: Geometry) -> Cache {
        let sets = g.size / (g.assoc * g.line);
        Cache { g, sets, tags: vec![u64::MAX; (sets * g.assoc) as usize] }
    }
    /// Access one line (by line number); true on a hit.
    fn line(&mut self, line: u64) -> bool {
        let set = (line & (self.sets - 1)) as usize;
        let ways = &mut self.tags[set * self.g.assoc as usize..(set + 1) * self.g.assoc as usize];
        match ways.iter().position(|&t| t == line) {
            Some(i) => {
                ways[..=i].rotate_right(1);
                true
            }
            None => {
                ways.rotate_right(1);
                ways[0] = line;
                false
            }
        }
    }
    /// Access `[addr, addr+size)`; returns the lines that missed (0, 1 or 2 entries used).
    fn access(&mut self, addr: u64, size: u64) -> ([u64; 2], usize) {
        let first = addr / self.g.line;
        let last = (addr + size.max(1) - 1) / self.g.line;
        let mut missed = ([0; 2], 0);
        for l in [first, last].into_iter().take(if last == first { 1 } else { 2 }) {
            if !self.line(l) {
                missed.0[missed.1] = l;
                missed.1 += 1;
            }
        }
        missed
    }
}

/// Counts in cachegrind's terms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Instruction fetches.
    pub ir: u64,
    /// I1 misses.
    pub i1mr: u64,
    /// LL misses from instruction fetches.
    pub ilmr: u64,
    /// Data reads.
    pub dr: u64,
    /// D1 read misses.
    pub d1mr: u64,
    /// LL read misses.
    pub dlmr: u64,
    /// Data writes.
    pub dw: u64,
    /// D1 write misses.
    pub d1mw: u64,
    /// LL write misses.
    pub dlmw: u64,
}

/// I1 + D1 + LL.
pub struct Hierarchy {
    i1: Cache,
    d1: Cache,
    ll: Cache,
    /// The counts so far.
    pub stats: Stats,
}

impl Hierarchy {
    /// A cold hierarchy.
    pub fn new(i1: Geometry, d1: Geometry, ll: Geometry) -> Hierarchy {
        Hierarchy {
            i1: Cache::new(i1),
            d1: Cache::new(d1),
            ll: Cache::new(ll),
            stats: Stats::default(),
        }
    }
    /// LL lookup of the L1 misses; true if any of them missed LL too.
    fn ll_misses(&mut self, missed: ([u64; 2], usize), l1_line: u64) -> bool {
        let mut miss = false;
        for &l in &missed.0[..missed.1] {
            let addr = l * l1_line;
            miss |= self.ll.access(addr, 1).1 > 0;
        }
        miss
    }
    /// An instruction fetch of `len` bytes at `pc`.
    pub fn fetch(&mut self, pc: u64, len: u64) {
        self.stats.ir += 1;
        let m = self.i1.access(pc, len);
        if m.1 > 0 {
            self.stats.i1mr += 1;
            if self.ll_misses(m, self.i1.g.line) {
                self.stats.ilmr += 1;
            }
        }
    }
    /// A data read.
    pub fn read(&mut self, addr: u64, size: u64) {
        self.stats.dr += 1;
        let m = self.d1.access(addr, size);
        if m.1 > 0 {
            self.stats.d1mr += 1;
            if self.ll_misses(m, self.d1.g.line) {
                self.stats.dlmr += 1;
            }
        }
    }
    /// A data write.
    pub fn write(&mut self, addr: u64, size: u64) {
        self.stats.dw += 1;
        let m = self.d1.access(addr, size);
        if m.1 > 0 {
            self.stats.d1mw += 1;
            if self.ll_misses(m, self.d1.g.line) {
                self.stats.dlmw += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_the_least_recent_way() {
        // 2 sets x 2 ways x 64-byte lines.
        let mut c = Cache::new(Geometry { size: 256, assoc: 2, line: 64 });
        let set0 = |k: u64| k * 128; // lines 0, 2, 4 map to set 0
        assert_eq!(c.access(set0(0), 8).1, 1);
        assert_eq!(c.access(set0(1), 8).1, 1);
        assert_eq!(c.access(set0(0), 8).1, 0, "hit");
        assert_eq!(c.access(set0(2), 8).1, 1, "evicts line 2 (least recent)");
        assert_eq!(c.access(set0(0), 8).1, 0, "line 0 was kept");
        assert_eq!(c.access(set0(1), 8).1, 1, "line 1 was evicted");
    }

    #[test]
    fn a_straddling_access_touches_two_lines_and_counts_once() {
        let g = Geometry { size: 1024, assoc: 2, line: 64 };
        let mut h = Hierarchy::new(g, g, Geometry { size: 4096, assoc: 4, line: 64 });
        h.read(60, 8);
        assert_eq!(h.stats, Stats { dr: 1, d1mr: 1, dlmr: 1, ..Stats::default() });
        h.read(64, 4);
        assert_eq!(h.stats.d1mr, 1, "the second line was loaded by the straddling read");
    }

    #[test]
    fn geometry_parses_like_cachegrind() {
        assert_eq!(
            Geometry::parse("32768,8,64").unwrap(),
            Geometry { size: 32768, assoc: 8, line: 64 }
        );
        assert_eq!(
            Geometry::parse("8388608:16:64").unwrap(),
            Geometry { size: 8388608, assoc: 16, line: 64 }
        );
        assert!(Geometry::parse("1000,3,64").is_err());
        assert!(Geometry::parse("32768,8").is_err());
    }
}
