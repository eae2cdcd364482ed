//! Sizes in bytes as operators write them: `"512KiB"`, `"1MiB"`, `"64B"`.
//!
//! The rule: a whole number and one unit, `B`, `KiB`, `MiB` or `GiB` (powers of 1024), with
//! optional space between. A bare number is refused with a hint to add a unit, and so are
//! the decimal-looking `KB`/`MB`/`GB`, which people read as either 1000 or 1024.

use std::fmt;

const UNITS: [(&str, u64); 4] = [
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("B", 1),
];

/// A number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(u64);

impl ByteSize {
    pub const fn from_bytes(bytes: u64) -> Self {
        Self(bytes)
    }

    pub const fn kib(n: u64) -> Self {
        Self(n << 10)
    }

    pub const fn mib(n: u64) -> Self {
        Self(n << 20)
    }

    pub const fn gib(n: u64) -> Self {
        Self(n << 30)
    }

    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// As a `usize` for buffer lengths, saturating on 32-bit targets.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

/// The largest unit that divides the size exactly: `1MiB`, `1536KiB`, `100B`.
impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, size) = UNITS
            .iter()
            .find(|(_, size)| self.0 != 0 && self.0.is_multiple_of(*size))
            .copied()
            .unwrap_or(("B", 1));
        write!(f, "{}{unit}", self.0 / size)
    }
}

/// Why a text is not a size in bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ByteSizeError {
    #[error("`{text}` has no unit: write \"{text}B\" for bytes, or use KiB, MiB or GiB")]
    NoUnit { text: String },
    #[error("`{text}` uses `{unit}`: write `{binary}` (capstan counts sizes in powers of 1024)")]
    Decimal {
        text: String,
        unit: String,
        binary: &'static str,
    },
    #[error("`{text}` has an unknown unit `{unit}`: use B, KiB, MiB or GiB")]
    UnknownUnit { text: String, unit: String },
    #[error("`{text}` is not a size like \"512KiB\" or \"1MiB\"")]
    Malformed { text: String },
    #[error("`{text}` is too large")]
    Overflow { text: String },
}

impl ByteSizeError {
    /// The error for a bare number written where a size belongs (a TOML integer).
    pub fn bare_number(n: impl std::fmt::Display) -> Self {
        ByteSizeError::NoUnit {
            text: n.to_string(),
        }
    }
}

/// Reads `text` by the rule in the module comment; surrounding whitespace is ignored.
///
/// # Errors
/// No unit, a decimal or unknown unit, anything but a whole number, or more than `u64`.
pub fn parse(text: &str) -> Result<ByteSize, ByteSizeError> {
    let text = text.trim();
    let owned = || text.to_owned();
    let digits = text.len() - text.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (number, unit) = text.split_at(digits);
    let unit = unit.trim_start();
    if digits == 0 || unit.contains(|c: char| !c.is_ascii_alphabetic()) {
        return Err(ByteSizeError::Malformed { text: owned() });
    }
    if unit.is_empty() {
        return Err(ByteSizeError::NoUnit { text: owned() });
    }
    let Some((_, size)) = UNITS.iter().find(|(u, _)| *u == unit) else {
        let binary = match unit.to_ascii_lowercase().as_str() {
            "k" | "kb" | "kib" => Some("KiB"),
            "m" | "mb" | "mib" => Some("MiB"),
            "g" | "gb" | "gib" => Some("GiB"),
            _ => None,
        };
        return Err(match binary {
            Some(binary) => ByteSizeError::Decimal {
                text: owned(),
                unit: unit.to_owned(),
                binary,
            },
            None => ByteSizeError::UnknownUnit {
                text: owned(),
                unit: unit.to_owned(),
            },
        });
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(*size))
        .map(ByteSize)
        .ok_or_else(|| ByteSizeError::Overflow { text: owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_binary_units() {
        for (text, bytes) in [
            ("1MiB", 1 << 20),
            ("512KiB", 512 << 10),
            (" 2 GiB ", 2 << 30),
            ("64B", 64),
            ("0B", 0),
        ] {
            assert_eq!(parse(text), Ok(ByteSize(bytes)), "{text:?}");
        }
    }

    #[test]
    fn refuses_everything_else_with_a_reason() {
        let msg = |text: &str| parse(text).map_or_else(|e| e.to_string(), |b| format!("{b:?}"));
        for (text, want) in [
            (
                "1048576",
                "`1048576` has no unit: write \"1048576B\" for bytes, or use KiB, MiB or GiB",
            ),
            (
                "1MB",
                "`1MB` uses `MB`: write `MiB` (capstan counts sizes in powers of 1024)",
            ),
            (
                "4k",
                "`4k` uses `k`: write `KiB` (capstan counts sizes in powers of 1024)",
            ),
            (
                "1mib",
                "`1mib` uses `mib`: write `MiB` (capstan counts sizes in powers of 1024)",
            ),
            (
                "3TiB",
                "`3TiB` has an unknown unit `TiB`: use B, KiB, MiB or GiB",
            ),
            ("lots", "`lots` is not a size like \"512KiB\" or \"1MiB\""),
            ("", "`` is not a size like \"512KiB\" or \"1MiB\""),
            (
                "1.5MiB",
                "`1.5MiB` is not a size like \"512KiB\" or \"1MiB\"",
            ),
            ("-1KiB", "`-1KiB` is not a size like \"512KiB\" or \"1MiB\""),
            ("17179869184GiB", "`17179869184GiB` is too large"),
        ] {
            assert_eq!(msg(text), want, "{text:?}");
        }
        assert_eq!(
            ByteSizeError::bare_number(4096).to_string(),
            "`4096` has no unit: write \"4096B\" for bytes, or use KiB, MiB or GiB"
        );
    }

    #[test]
    fn shows_the_largest_exact_unit() {
        for (size, shown) in [
            (ByteSize::mib(1), "1MiB"),
            (ByteSize::kib(1536), "1536KiB"),
            (ByteSize::gib(2), "2GiB"),
            (ByteSize::from_bytes(100), "100B"),
            (ByteSize::from_bytes(0), "0B"),
        ] {
            assert_eq!(size.to_string(), shown);
            assert_eq!(parse(shown), Ok(size), "{shown} reads back");
        }
    }
}
