//! What a benchmark run found, as JSON and as the Markdown of
//! BENCHMARKS.md.

use std::fmt::Write as _;

use serde::Serialize;

use crate::{
    packet,
    profile::{Profile, Symbol},
};

/// The median of `samples` (the mean of the middle two for an even count).
pub fn median(samples: &[f64]) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A whole run.
#[derive(Debug, Default, Serialize)]
pub struct Results {
    pub date: String,
    pub kernel: String,
    pub cpu: String,
    pub cpus: usize,
    pub quick: bool,
    pub seconds: f64,
    pub targets: Vec<Target>,
    pub packet: Vec<PacketCost>,
    /// The programs without bpf_stats, in the kernel's test loop.
    pub loops: Vec<LoopCost>,
    pub throughput: Vec<Throughput>,
    pub flush: Vec<Flush>,
    pub walks: Vec<Walk>,
    /// The counting of the slot design in the test loop ([`crate::slots`]).
    pub slot_loops: Vec<LoopCost>,
    /// Max entries of its maps.
    pub slot_entries: u32,
    /// What mapping its arrays costs in resident memory, per map size.
    pub slot_mappings: Vec<SlotMapping>,
    /// The commit of one flush, the store's way and two appending ones
    /// ([`crate::commits`]).
    pub commits: Vec<CommitWay>,
    pub report: Vec<Latency>,
    pub memory: Option<Memory>,
    /// Where the time of the missed targets goes.
    pub profiles: Vec<Profile>,
    pub notes: Vec<String>,
}

/// What mapping one side's slot arrays costs the process that maps them
/// ([`crate::slots`]): the kernel maps a `BPF_F_MMAPABLE` array whole at
/// `mmap`, and its pages count in the resident set.
#[derive(Debug, Serialize)]
pub struct SlotMapping {
    pub max_entries: u32,
    pub cpus: usize,
    /// Size of the two arrays (keys, and the counters of every CPU).
    pub mapped_mib: f64,
    /// Growth of the resident set (VmRSS) from before the arrays were
    /// made to after they were mapped, before any access.
    pub resident_mib: f64,
}

/// A target of DESIGN.md and what this run measured for it.
#[derive(Debug, Serialize)]
pub struct Target {
    pub what: String,
    pub target: String,
    pub measured: String,
    pub met: bool,
}

/// Per-run cost of one program with `keys` live keys (bpf_stats).
#[derive(Debug, Serialize)]
pub struct PacketCost {
    pub keys: u32,
    /// The UID the traffic ran as.
    pub uid: u32,
    pub program: String,
    pub ns_per_run: f64,
    pub runs: u64,
    pub samples: Vec<f64>,
}

/// Per-run cost of one program in `BPF_PROG_TEST_RUN`'s loop, and of an
/// empty program of its type in the same loop ([`crate::testrun`]).
#[derive(Debug, Serialize)]
pub struct LoopCost {
    pub program: String,
    /// Which map the test frame is counted in.
    pub counted_in: String,
    pub keys: u32,
    /// Runs per sample.
    pub repeat: u32,
    pub ns_per_run: f64,
    pub empty_ns_per_run: f64,
    pub samples: Vec<f64>,
    pub empty_samples: Vec<f64>,
}

impl LoopCost {
    /// The medians of a program's samples and of the empty program's.
    pub fn new(
        program: &str,
        counted_in: &str,
        keys: u32,
        repeat: u32,
        samples: Vec<f64>,
        empty_samples: Vec<f64>,
    ) -> Self {
        Self {
            program: program.to_owned(),
            counted_in: counted_in.to_owned(),
            keys,
            repeat,
            ns_per_run: median(&samples),
            empty_ns_per_run: median(&empty_samples),
            samples,
            empty_samples,
        }
    }
}

/// A throughput variant: its median and its ratio to nothing attached.
#[derive(Debug, Serialize)]
pub struct Throughput {
    pub traffic: String,
    pub variant: String,
    pub unit: String,
    pub median: f64,
    pub ratio_to_bare: f64,
    pub samples: Vec<f64>,
}

/// Flushes of `keys` live keys, in milliseconds (medians).
#[derive(Debug, Serialize)]
pub struct Flush {
    pub keys: u32,
    /// The address maps' max entries (and so their buckets, rounded up
    /// to a power of two).
    pub max_entries: u32,
    pub total_ms: f64,
    pub flip_ms: f64,
    pub drain_ms: f64,
    pub commit_ms: f64,
    pub clear_ms: f64,
    /// Folding one flush's rows into the bucket tables (once per 5
    /// minutes, after a flush).
    pub fold_ms: f64,
    pub samples_ms: Vec<f64>,
}

/// One kind of kernel batch walk over a map of `keys` keys.
#[derive(Debug, Serialize)]
pub struct Walk {
    pub method: String,
    /// What the flush would use it for.
    pub purpose: String,
    pub keys: u32,
    /// The map's max entries (and so its buckets, rounded up to a power
    /// of two).
    pub max_entries: u32,
    pub median_ms: f64,
    pub ns_per_key: f64,
    pub samples_ms: Vec<f64>,
}

impl Walk {
    /// Its median and cost per key from the samples of a walk over `keys`.
    pub fn new(
        method: &str,
        purpose: &str,
        keys: u32,
        max_entries: u32,
        samples_ms: Vec<f64>,
    ) -> Self {
        let median_ms = median(&samples_ms);
        Self {
            method: method.into(),
            purpose: purpose.into(),
            keys,
            max_entries,
            median_ms,
            // A walk of an empty map has no per-key cost.
            ns_per_key: if keys == 0 {
                0.0
            } else {
                median_ms * 1e6 / f64::from(keys)
            },
            samples_ms,
        }
    }
}

/// One way to commit a flush of `keys` addresses into the store.
#[derive(Debug, Serialize)]
pub struct CommitWay {
    pub way: String,
    pub keys: u32,
    /// Size of the record, for a way that writes one.
    pub record_bytes: Option<usize>,
    pub median_ms: f64,
    /// The cost per flush over time: SQLite copies the WAL into the
    /// database in the commit that takes it past its checkpoint size,
    /// which a flush of many keys does every few commits, so their times
    /// come in two groups and the median is one of them.
    pub mean_ms: f64,
    /// From the mean.
    pub ns_per_key: f64,
    pub samples_ms: Vec<f64>,
    /// The fold of a 5-minute bucket of this way into the four tables,
    /// where it was timed: the median, and how many flushes the bucket
    /// held.
    pub fold_ms: Option<f64>,
    pub fold_flushes: usize,
    pub fold_samples_ms: Vec<f64>,
    /// A 5-minute bucket's cost at the default interval, which gives it
    /// `bucket_flushes` flushes: its commits at the mean, and its fold at
    /// the median.
    pub per_bucket_ms: Option<f64>,
    pub bucket_flushes: usize,
    /// A report's read of that bucket before its fold, where it was
    /// timed: the median.
    pub read_ms: Option<f64>,
    pub read_samples_ms: Vec<f64>,
}

impl CommitWay {
    /// Its median, mean and cost per key from the samples of commits of
    /// `keys`.
    pub fn new(way: &str, keys: u32, record_bytes: Option<usize>, samples_ms: Vec<f64>) -> Self {
        let mean_ms = samples_ms.iter().sum::<f64>() / samples_ms.len().max(1) as f64;
        Self {
            way: way.into(),
            keys,
            record_bytes,
            median_ms: median(&samples_ms),
            mean_ms,
            ns_per_key: mean_ms * 1e6 / f64::from(keys.max(1)),
            samples_ms,
            fold_ms: None,
            fold_flushes: 0,
            fold_samples_ms: Vec::new(),
            per_bucket_ms: None,
            bucket_flushes: 0,
            read_ms: None,
            read_samples_ms: Vec::new(),
        }
    }

    /// With the samples of its folds of buckets of `folded` flushes, and
    /// a bucket's cost at `bucket_flushes` flushes.
    pub fn with_folds(
        mut self,
        samples_ms: Vec<f64>,
        folded: usize,
        bucket_flushes: usize,
    ) -> Self {
        let fold = median(&samples_ms);
        self.fold_ms = Some(fold);
        self.fold_flushes = folded;
        self.bucket_flushes = bucket_flushes;
        self.per_bucket_ms = Some(bucket_flushes as f64 * self.mean_ms + fold);
        self.fold_samples_ms = samples_ms;
        self
    }

    /// With the samples of a report's reads of an unfolded bucket.
    pub fn with_reads(mut self, samples_ms: Vec<f64>) -> Self {
        self.read_ms = Some(median(&samples_ms));
        self.read_samples_ms = samples_ms;
        self
    }
}

/// A command's latency, in milliseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub command: String,
    pub users: u32,
    pub history_rows: u64,
    pub output_lines: usize,
    pub median_ms: f64,
    pub samples_ms: Vec<f64>,
}

/// The agent's memory with `keys` live keys.
#[derive(Debug, Serialize)]
pub struct Memory {
    pub keys: u32,
    pub flushes: u32,
    /// VmHWM and VmRSS once the agent is counting, before any key.
    pub startup_peak_mib: f64,
    pub startup_rss_mib: f64,
    /// VmHWM from then on (reset after startup), with the live keys.
    pub peak_rss_mib: f64,
    /// The peak before the /metrics scrape: flushes only.
    pub peak_before_scrape_mib: f64,
    pub rss_mib: f64,
    pub agent_flush_ms: Vec<f64>,
}

pub fn keys(n: u32) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{} M", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{} k", n / 1000),
        n => n.to_string(),
    }
}

fn rate(value: f64, unit: &str) -> String {
    match unit {
        "packets/s" => format!("{:.0} kpps", value / 1000.0),
        "bit/s" => format!("{:.2} Gbit/s", value / 1e9),
        _ => format!("{value:.1} {unit}"),
    }
}

fn symbol_table(m: &mut String, symbols: &[Symbol]) {
    let _ = writeln!(m, "| Share | Place | Symbol |\n|---|---|---|");
    for s in symbols {
        let _ = writeln!(m, "| {:.1} % | {} | `{}` |", s.percent, s.place, s.name);
    }
}

impl Results {
    /// BENCHMARKS.md.
    pub fn markdown(&self) -> String {
        let mut m = String::new();
        let _ = writeln!(m, "# trafmon benchmarks\n");
        let _ = writeln!(
            m,
            "Written by `cargo xtask bench{}` on {}: Linux {}, {} ({} CPUs); the run took {:.0} s. \
             Every comparison ran its variants alternately in the same run; figures are medians. \
             The raw samples are in [benchmarks.json](benchmarks.json).\n",
            if self.quick { " --quick" } else { "" },
            self.date,
            self.kernel,
            self.cpu,
            self.cpus,
            self.seconds
        );
        let _ = writeln!(m, "## Targets (from DESIGN.md)\n");
        let _ = writeln!(m, "| What | Target | Measured | Met |\n|---|---|---|---|");
        for t in &self.targets {
            let met = if t.met { "yes" } else { "**no**" };
            let _ = writeln!(m, "| {} | {} | {} | {met} |", t.what, t.target, t.measured);
        }
        self.packet_section(&mut m);
        self.loops_section(&mut m);
        self.throughput_section(&mut m);
        self.flush_section(&mut m);
        self.walks_section(&mut m);
        self.slots_section(&mut m);
        self.commits_section(&mut m);
        self.report_section(&mut m);
        if let Some(mem) = &self.memory {
            let _ = writeln!(m, "\n## Agent memory\n");
            let _ = writeln!(
                m,
                "The real agent, flushing {} live keys {} times (and serving one /metrics scrape): \
                 peak resident set (VmHWM) **{:.1} MiB** ({:.1} MiB before the scrape), resident at the end {:.1} MiB. \
                 That peak is measured from the moment the agent counts, before any key: loading the programs \
                 peaked at {:.1} MiB (aya's loader parses the kernel's whole BTF) and left {:.1} MiB resident; \
                 the peak is reset there (`5` into `/proc/PID/clear_refs`). \
                 Its own flush durations: {} ms.",
                keys(mem.keys),
                mem.flushes,
                mem.peak_rss_mib,
                mem.peak_before_scrape_mib,
                mem.rss_mib,
                mem.startup_peak_mib,
                mem.startup_rss_mib,
                mem.agent_flush_ms
                    .iter()
                    .map(|v| format!("{v:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        self.profiles_section(&mut m);
        if !self.notes.is_empty() {
            let _ = writeln!(m, "\n## Notes\n");
            for n in &self.notes {
                let _ = writeln!(m, "- {n}");
            }
        }
        m
    }

    fn packet_section(&self, m: &mut String) {
        let _ = writeln!(
            m,
            "\n## Per-packet cost (kernel bpf_stats: run time / run count)\n"
        );
        let mut programs: Vec<&str> = self.packet.iter().map(|p| p.program.as_str()).collect();
        programs.sort_unstable();
        programs.dedup();
        let _ = write!(m, "| Live keys | Traffic UID |");
        for p in &programs {
            let _ = write!(m, " {p} (ns) |");
        }
        let _ = write!(m, "\n|---|---|");
        for _ in &programs {
            let _ = write!(m, "---|");
        }
        let _ = writeln!(m);
        let mut cases: Vec<(u32, u32)> = self.packet.iter().map(|p| (p.keys, p.uid)).collect();
        // By keys, the hash-map UID first.
        cases.sort_unstable_by_key(|&(n, uid)| (n, std::cmp::Reverse(uid)));
        cases.dedup();
        for (n, uid) in cases {
            let _ = write!(m, "| {} | {uid} ({}) |", keys(n), packet::uid_path(uid));
            for p in &programs {
                let found = self
                    .packet
                    .iter()
                    .find(|c| c.keys == n && c.uid == uid && c.program == *p);
                match found {
                    Some(c) => {
                        let _ = write!(m, " {:.1} |", c.ns_per_run);
                    }
                    None => m.push_str(" – |"),
                }
            }
            let _ = writeln!(m);
        }
    }

    fn loops_section(&self, m: &mut String) {
        let Some(first) = self.loops.first() else {
            return;
        };
        let _ = writeln!(
            m,
            "\n### The same programs without bpf_stats: the kernel's test loop\n"
        );
        let _ = writeln!(
            m,
            "Each program run {} times per sample by `BPF_PROG_TEST_RUN` on one 60-byte UDP frame, \
             with {} live keys, and an empty program of the same type run the same way \
             (its figure is the loop's own cost). The loop reads the clock when it starts and ends (and when it yields the CPU), \
             where bpf_stats reads it twice per run; the same frame every time keeps the caches warm, \
             so the difference is a lower bound of what a program adds to a packet. \
             The kernel reports whole nanoseconds.\n",
            first.repeat,
            keys(first.keys)
        );
        loop_table(m, &self.loops);
    }

    fn throughput_section(&self, m: &mut String) {
        let _ = writeln!(
            m,
            "\n## Throughput over a veth pair between two namespaces\n"
        );
        let _ = writeln!(
            m,
            "| Traffic | Variant | Median | Ratio to nothing attached |"
        );
        let _ = writeln!(m, "|---|---|---|---|");
        for t in &self.throughput {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {:.1} % |",
                t.traffic,
                t.variant,
                rate(t.median, &t.unit),
                t.ratio_to_bare * 100.0
            );
        }
    }

    fn flush_section(&self, m: &mut String) {
        let _ = writeln!(m, "\n## Flush (flip, grace period, drain, commit, clear)\n");
        let _ = writeln!(
            m,
            "| Live keys | Map max entries | Total (ms) | Flip + grace | Drain | Commit | Clear | Fold, once per 5 min (ms) |\n|---|---|---|---|---|---|---|---|"
        );
        for f in &self.flush {
            let _ = writeln!(
                m,
                "| {} | {} | **{:.1}** | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} |",
                keys(f.keys),
                f.max_entries,
                f.total_ms,
                f.flip_ms,
                f.drain_ms,
                f.commit_ms,
                f.clear_ms,
                f.fold_ms
            );
        }
    }

    fn walks_section(&self, m: &mut String) {
        let Some(first) = self.walks.first() else {
            return;
        };
        let _ = writeln!(
            m,
            "\n## Kernel batch walks over {} keys (the floor under drain and clear)\n",
            keys(first.keys)
        );
        let _ = writeln!(
            m,
            "| Map max entries | Walk | For | Median (ms) | Per key (ns) |\n|---|---|---|---|---|"
        );
        for w in &self.walks {
            let per_key = if w.keys == 0 {
                "–".to_owned()
            } else {
                format!("{:.0}", w.ns_per_key)
            };
            let _ = writeln!(
                m,
                "| {} | {} | {} | {:.1} | {per_key} |",
                w.max_entries, w.method, w.purpose, w.median_ms
            );
        }
        // Of each map size, the first walk is the drain's and the third the
        // delete of the drained keys that the clear starts with.
        let mut floors = Vec::new();
        for per_size in self.walks.chunk_by(|a, b| a.max_entries == b.max_entries) {
            if let [drain, _, clear, ..] = per_size {
                floors.push(format!(
                    "{:.1} ms with {} max entries",
                    drain.median_ms + clear.median_ms,
                    drain.max_entries
                ));
            }
        }
        let _ = writeln!(
            m,
            "\nA flush walks its map to drain it, and deletes the drained keys to clear it (then walks what is left, nothing in a steady state): {} at {} keys, in the kernel, before any store work.",
            floors.join(", "),
            keys(first.keys)
        );
    }

    fn slots_section(&self, m: &mut String) {
        let Some(first) = self.slot_loops.first() else {
            return;
        };
        let _ = writeln!(m, "\n### Counters by slot (a design not built)\n");
        let _ = writeln!(
            m,
            "The slot rows above and the table below measure a design that would take both walks out of the flush. \
             The agent gives each live key a slot; the counters live in a memory-mapped array \
             (`BPF_F_MMAPABLE`) at (side × CPUs + CPU) × max entries + slot. A program finds the key's slot in \
             its side's slot hash (a key without one is counted in the side's per-CPU hash, as today). \
             The flush reads the idle side's slots through the mapping and zeroes them, with no system call per key, \
             and walks only the keys new since the last flush (the empty-map rows above: those walks when there are none). Only the agent writes a slot hash, only while its side \
             is idle: it gives new keys slots and takes back those of idle keys (the slot hash rows above, every key \
             at once; the other side's hash gets the same at the next flush), because the kernel reuses a deleted \
             or replaced hash element at once, and a program still holding it could read another key's slot. \
             Below, tc programs that differ only in the counting \
             (a lookup in a per-CPU hash; the same with the IPv4 address alone as a 4-byte key, as a map of IPv4 \
             addresses of their own would hold it, also not built; or a slot lookup and then the array element of this CPU; \
             or, with no lookup of the key at all, the address's place in a configured prefix (the address as a number \
             minus the prefix's first, which is also the test whether it lies inside) and then that element of a per-CPU \
             array as large as the prefix, the smallest aligned block around the test frame's address that holds the \
             keys, a design not built either; \
             then two atomic adds each) in the kernel's test loop, {} runs per sample, {} live keys in maps of {} entries, \
             beside an empty tc program; the key is built on the stack, as each design would after parsing the frame.\n",
            first.repeat,
            keys(first.keys),
            self.slot_entries
        );
        if !self.slot_mappings.is_empty() {
            let sizes: Vec<String> = self
                .slot_mappings
                .iter()
                .map(|s| {
                    format!(
                        "{:.1} MiB for {} slots on {} CPUs ({:.1} MiB mapped)",
                        s.resident_mib, s.max_entries, s.cpus, s.mapped_mib
                    )
                })
                .collect();
            let _ = writeln!(
                m,
                "The mapping costs memory, though: the kernel maps such an array whole at `mmap`, and all of it \
                 counts in the mapping process's resident set at once (as file pages), before any access. Mapping \
                 one side's arrays raised this process's resident set by {}. In the agent that would come on top \
                 of the peak the memory target judges. The rows \"`BPF_MAP_LOOKUP_BATCH` of a per-CPU slot array\" \
                 and \"`BPF_MAP_UPDATE_BATCH` of zeroes into it\" drain and clear the same slots with system calls \
                 instead, a few thousand slots per call, without a mapping.\n",
                sizes.join(", ")
            );
        }
        loop_table(m, &self.slot_loops);
    }

    fn commits_section(&self, m: &mut String) {
        let Some(first) = self.commits.first() else {
            return;
        };
        let _ = writeln!(
            m,
            "\n## Commits that append instead of upserting (designs not built)\n"
        );
        let _ = writeln!(
            m,
            "The commit of one flush of {} addresses into a 5-minute bucket that already holds them (a steady state), \
             three ways, each first in turn, each into a scratch store of its own made by the store's code: the store's commit \
             (an upsert per address into `recent`, with the flush record); one that writes the flush's deltas as one \
             record (entity id and four counters per address) with the flush record, which the 5-minute fold would then \
             spread into the tables (readers would add up the records not yet folded); and one that appends them as rows, \
             one per address, to a log with `recent`'s columns and references (plain inserts, 64 rows per statement as the \
             upserts; readers and the fold would sum them as they sum `recent`). All commit with `synchronous = FULL`, \
             as the agent does. SQLite copies the write-ahead log into the database in the commit that takes the log past \
             1 000 pages, which one flush of many keys does every few commits, so the times come in two groups: the mean \
             is the cost per flush over time. A record spares the upserts only if folding it costs less than they do, so \
             the store's fold of a 5-minute bucket (`recent` into the four tables, once per 5 minutes after a flush) is \
             timed too, in turn with the fold the record way would need (the bucket's records summed per entity and added \
             into the same tables), each after {} flushes of the same addresses in a bucket of their own; the last column \
             is a bucket's cost at the default interval of {} s: {} commits at the mean and one fold. Before each fold, \
             a report's read of the bucket (its rows per address, as `trafmon report` reads 5-minute rows) is timed \
             both ways, in turn: the store's `rows`, which adds `recent`'s rows to the table's, and the same plus the \
             bucket's records decoded, summed per entity and named from the entity table; both must return the same \
             rows. A reader of the record way pays this on every read that reaches the bucket, until it is folded.\n",
            keys(first.keys),
            first.fold_flushes,
            300 / first.bucket_flushes.max(1),
            first.bucket_flushes
        );
        let _ = writeln!(
            m,
            "| Commit | Record (bytes) | Median (ms) | Mean (ms) | Per key (ns, mean) | Fold of a bucket (ms) | Per 5 minutes (ms) | Read of an unfolded bucket (ms) |\n|---|---|---|---|---|---|---|---|"
        );
        let ms = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.1}"));
        for c in &self.commits {
            let bytes = c.record_bytes.map_or("–".to_owned(), |b| b.to_string());
            let _ = writeln!(
                m,
                "| {} | {bytes} | {:.1} | {:.1} | {:.0} | {} | {} | {} |",
                c.way,
                c.median_ms,
                c.mean_ms,
                c.ns_per_key,
                ms(c.fold_ms),
                ms(c.per_bucket_ms),
                ms(c.read_ms)
            );
        }
    }

    fn profiles_section(&self, m: &mut String) {
        if self.profiles.is_empty() {
            return;
        }
        let _ = writeln!(m, "\n## Profiles: where the time goes\n");
        let _ = writeln!(
            m,
            "Flat profiles taken by `perf record` (no call graphs) during extra runs of the benchmarks above, \
             sampling only while those runs ran. A symbol's share is of the profile's samples: \
             `eBPF program` is the JIT-compiled programs themselves, `kernel: BPF hooks, helpers and maps` \
             the kernel functions they call or are called from (by name: `bpf_*`, `htab_*`, `__cgroup_bpf_*`, `tcx_*` ...), \
             `kernel` the rest of the kernel (the network stack, the scheduler, system calls)."
        );
        if self.profiles.iter().any(|p| p.event == "cpu-clock") {
            let _ = writeln!(
                m,
                "\nThis machine's CPU counters are out of perf's reach, so it samples on a timer interrupt (`cpu-clock`): \
                 time spent with interrupts off is charged to where they come back on \
                 (`_raw_spin_unlock_irqrestore`, `finish_task_switch`)."
            );
        }
        for p in &self.profiles {
            let whose = match &p.comm {
                Some(c) => format!("samples of `{c}` processes and the softirqs that ran in them"),
                None => "samples of the benchmark process".to_owned(),
            };
            let _ = writeln!(m, "\n### {}\n", p.what);
            let places: Vec<String> = p
                .places
                .iter()
                .map(|(place, pct)| format!("{place} {pct:.1} %"))
                .collect();
            let _ = writeln!(
                m,
                "{} {whose}, on `{}` at {} Hz per CPU. By place: {}.\n",
                p.samples,
                p.event,
                p.hz,
                places.join(", ")
            );
            symbol_table(m, &p.symbols);
            if !p.bpf_symbols.is_empty() {
                let _ = writeln!(m, "\nIts hottest symbols of BPF code:\n");
                symbol_table(m, &p.bpf_symbols);
            }
        }
    }

    fn report_section(&self, m: &mut String) {
        let _ = writeln!(m, "\n## Report latency over a year of history\n");
        let _ = writeln!(
            m,
            "| Command | Users | History rows | Output lines | Median (ms) |"
        );
        let _ = writeln!(m, "|---|---|---|---|---|");
        for r in &self.report {
            let _ = writeln!(
                m,
                "| `{}` | {} | {} | {} | {:.1} |",
                r.command, r.users, r.history_rows, r.output_lines, r.median_ms
            );
        }
    }
}

/// Programs in the test loop beside the empty one.
fn loop_table(m: &mut String, loops: &[LoopCost]) {
    let _ = writeln!(
        m,
        "| Program | Test frame counted in | Program (ns) | Empty program (ns) | Difference (ns) |"
    );
    let _ = writeln!(m, "|---|---|---|---|---|");
    for l in loops {
        let _ = writeln!(
            m,
            "| {} | {} | {:.1} | {:.1} | {:.1} |",
            l.program,
            l.counted_in,
            l.ns_per_run,
            l.empty_ns_per_run,
            l.ns_per_run - l.empty_ns_per_run
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn the_walk_floor_adds_the_drain_and_the_delete_per_map_size() {
        let walk = |max_entries, method: &str, median_ms| Walk {
            method: method.into(),
            purpose: String::new(),
            keys: 100_000,
            max_entries,
            median_ms,
            ns_per_key: 0.0,
            samples_ms: vec![median_ms],
        };
        let results = Results {
            walks: vec![
                walk(131_072, "lookup", 30.0),
                walk(131_072, "lookup and delete", 35.0),
                walk(131_072, "delete", 1.0),
                walk(1_048_576, "lookup", 40.0),
                walk(1_048_576, "lookup and delete", 42.5),
                walk(1_048_576, "delete", 2.5),
            ],
            ..Results::default()
        };
        let md = results.markdown();
        assert!(md.contains("## Kernel batch walks over 100 k keys"), "{md}");
        assert!(
            md.contains("31.0 ms with 131072 max entries, 42.5 ms with 1048576 max entries"),
            "{md}"
        );
    }

    #[test]
    fn a_walk_of_an_empty_map_has_no_cost_per_key() {
        let empty = Walk::new("lookup, empty", "steady state", 0, 131_072, vec![1.5, 2.5]);
        assert_eq!(empty.ns_per_key, 0.0);
        let full = Walk::new("lookup", "drain", 100_000, 131_072, vec![30.0]);
        assert_eq!(full.ns_per_key, 300.0);
        let md = Results {
            walks: vec![full, empty],
            ..Results::default()
        }
        .markdown();
        assert!(
            md.contains("| 131072 | lookup, empty | steady state | 2.0 | – |"),
            "{md}"
        );
        assert!(
            md.contains("| 131072 | lookup | drain | 30.0 | 300 |"),
            "{md}"
        );
    }

    #[test]
    fn a_profile_shows_its_places_its_hottest_and_its_bpf_symbols() {
        let symbol = |place: &str, name: &str, percent| Symbol {
            place: place.into(),
            name: name.into(),
            samples: 1,
            percent,
        };
        let bpf = symbol("eBPF program", "bpf_prog_1_cgroup_egress", 2.5);
        let results = Results {
            profiles: vec![Profile {
                what: "UDP".into(),
                comm: Some("trafgen".into()),
                hz: 1999,
                event: "cpu-clock".into(),
                samples: 40,
                places: vec![("kernel".into(), 97.5), ("eBPF program".into(), 2.5)],
                symbols: vec![symbol("kernel", "veth_xmit", 97.5), bpf.clone()],
                bpf_symbols: vec![bpf],
            }],
            ..Results::default()
        };
        let md = results.markdown();
        assert!(md.contains("## Profiles: where the time goes"), "{md}");
        assert!(md.contains("samples on a timer interrupt"), "{md}");
        assert!(
            md.contains("40 samples of `trafgen` processes and the softirqs that ran in them, on `cpu-clock` at 1999 Hz per CPU. By place: kernel 97.5 %, eBPF program 2.5 %."),
            "{md}"
        );
        assert!(md.contains("| 97.5 % | kernel | `veth_xmit` |"), "{md}");
        assert_eq!(
            md.matches("| 2.5 % | eBPF program | `bpf_prog_1_cgroup_egress` |")
                .count(),
            2,
            "{md}"
        );
    }

    #[test]
    fn the_test_loop_shows_each_program_beside_the_empty_one() {
        assert!(!Results::default().markdown().contains("test loop"));
        let results = Results {
            loops: vec![LoopCost {
                program: "tc_eth_ingress".into(),
                counted_in: "hash".into(),
                keys: 10_000,
                repeat: 2_000_000,
                ns_per_run: 75.5,
                empty_ns_per_run: 35.0,
                samples: vec![75.0, 76.0],
                empty_samples: vec![35.0, 35.0],
            }],
            ..Results::default()
        };
        let md = results.markdown();
        assert!(
            md.contains("Each program run 2000000 times per sample by `BPF_PROG_TEST_RUN`"),
            "{md}"
        );
        assert!(md.contains("with 10 k live keys"), "{md}");
        assert!(
            md.contains("| tc_eth_ingress | hash | 75.5 | 35.0 | 40.5 |"),
            "{md}"
        );
    }

    #[test]
    fn the_slot_design_shows_both_ways_of_counting_with_its_map_size() {
        assert!(!Results::default().markdown().contains("Counters by slot"));
        let cost = |program: &str, ns_per_run| LoopCost {
            program: program.into(),
            counted_in: "its destination address".into(),
            keys: 10_000,
            repeat: 2_000_000,
            ns_per_run,
            empty_ns_per_run: 35.0,
            samples: vec![ns_per_run],
            empty_samples: vec![35.0],
        };
        let results = Results {
            slot_loops: vec![cost("hash", 68.0), cost("slot", 70.5)],
            slot_entries: 1 << 20,
            ..Results::default()
        };
        let md = results.markdown();
        assert!(
            md.contains("### Counters by slot (a design not built)"),
            "{md}"
        );
        assert!(
            md.contains("2000000 runs per sample, 10 k live keys in maps of 1048576 entries"),
            "{md}"
        );
        assert!(
            md.contains("| slot | its destination address | 70.5 | 35.0 | 35.5 |"),
            "{md}"
        );
        assert!(!md.contains("The mapping costs memory"), "{md}");
    }

    #[test]
    fn the_slot_design_says_what_its_mapping_costs_in_memory() {
        let results = Results {
            slot_loops: vec![LoopCost {
                program: "slot".into(),
                counted_in: "its destination address".into(),
                keys: 10_000,
                repeat: 2_000_000,
                ns_per_run: 30.0,
                empty_ns_per_run: 9.0,
                samples: vec![30.0],
                empty_samples: vec![9.0],
            }],
            slot_mappings: vec![SlotMapping {
                max_entries: 131_072,
                cpus: 2,
                mapped_mib: 11.0,
                resident_mib: 11.04,
            }],
            ..Results::default()
        };
        let md = results.markdown();
        assert!(
            md.contains("raised this process's resident set by 11.0 MiB for 131072 slots on 2 CPUs (11.0 MiB mapped)."),
            "{md}"
        );
    }

    #[test]
    fn the_commit_ways_show_their_record_size_and_cost_per_key() {
        let md = Results {
            commits: vec![
                CommitWay::new("upserts", 100_000, None, vec![30.0, 40.0, 35.0, 35.0])
                    .with_folds(vec![300.0, 320.0, 310.0], 30, 30)
                    .with_reads(vec![90.0, 80.0, 85.0]),
                CommitWay::new("one record", 100_000, Some(3_600_000), vec![6.0, 6.0, 15.0])
                    .with_folds(vec![400.0], 30, 30)
                    .with_reads(vec![600.0]),
                CommitWay::new("rows", 100_000, None, vec![50.0]),
            ],
            ..Results::default()
        }
        .markdown();
        assert!(md.contains("one flush of 100 k addresses"), "{md}");
        assert!(md.contains("each after 30 flushes"), "{md}");
        // 30 commits at the mean and the fold's median.
        assert!(
            md.contains("| upserts | – | 35.0 | 35.0 | 350 | 310.0 | 1360.0 | 85.0 |"),
            "{md}"
        );
        assert!(
            md.contains("| one record | 3600000 | 6.0 | 9.0 | 90 | 400.0 | 670.0 | 600.0 |"),
            "{md}"
        );
        assert!(
            md.contains("| rows | – | 50.0 | 50.0 | 500 | – | – | – |"),
            "{md}"
        );
    }

    #[test]
    fn key_counts_read_as_people_write_them() {
        assert_eq!(keys(1), "1");
        assert_eq!(keys(10_000), "10 k");
        assert_eq!(keys(1_000_000), "1 M");
        assert_eq!(keys(1_500), "1500");
    }
}
