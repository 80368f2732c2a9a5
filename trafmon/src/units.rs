//! How numbers are shown: IEC (KiB, MiB; the default), SI (kB, MB) or raw
//! bytes; rates in bit/s with SI prefixes, or B/s with raw bytes.

use std::fmt;

/// A unit mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Units {
    /// Powers of 1024: KiB, MiB, GiB, TiB.
    #[default]
    Iec,
    /// Powers of 1000: kB, MB, GB, TB.
    Si,
    /// Exact byte counts.
    Bytes,
}

impl fmt::Display for Units {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Iec => "iec",
            Self::Si => "si",
            Self::Bytes => "bytes",
        })
    }
}

fn scaled(value: f64, base: f64, names: &[&str]) -> String {
    let mut v = value;
    let mut i = 0;
    while v >= base && i + 1 < names.len() {
        v /= base;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} {}", names[0])
    } else {
        format!("{v:.2} {}", names[i])
    }
}

impl Units {
    /// A byte count.
    pub fn bytes(self, n: u64) -> String {
        match self {
            Self::Iec => scaled(
                n as f64,
                1024.0,
                &["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"],
            ),
            Self::Si => scaled(n as f64, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB", "EB"]),
            Self::Bytes => n.to_string(),
        }
    }

    /// An average rate of `n` bytes over `seconds`.
    pub fn rate(self, n: u64, seconds: f64) -> String {
        if seconds <= 0.0 {
            return "--".into();
        }
        match self {
            Self::Iec | Self::Si => scaled(
                n as f64 * 8.0 / seconds,
                1000.0,
                &["bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"],
            ),
            Self::Bytes => format!("{:.0} B/s", n as f64 / seconds),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode() {
        assert_eq!(Units::Iec.bytes(0), "0 B");
        assert_eq!(Units::Iec.bytes(1023), "1023 B");
        assert_eq!(Units::Iec.bytes(1536), "1.50 KiB");
        assert_eq!(Units::Iec.bytes(5 * 1024 * 1024 * 1024), "5.00 GiB");
        assert_eq!(Units::Si.bytes(1536), "1.54 kB");
        assert_eq!(Units::Si.bytes(999), "999 B");
        assert_eq!(Units::Bytes.bytes(1536), "1536");
        assert_eq!(Units::Iec.rate(125_000, 1.0), "1.00 Mbit/s");
        assert_eq!(Units::Si.rate(100, 8.0), "100 bit/s");
        assert_eq!(Units::Bytes.rate(1000, 4.0), "250 B/s");
        assert_eq!(Units::Iec.rate(1000, 0.0), "--");
    }
}
